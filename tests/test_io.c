/* safetensors: round trips, and refusal of every kind of broken file with a
 * message that names the problem, never a crash. */
#include "harness.h"

#include <signal.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#define SH(...) (int64_t[]){__VA_ARGS__}

typedef struct { uint8_t *b; size_t n; } blob;

static blob make_file(void) {
  nn_params p;
  nn_params_init(&p);
  nn_rng r;
  nn_rng_seed(&r, 5);
  nn_tensor *w = nn_params_add(&p, "layer.weight", nn_tensor_new(NN_F32, 2, SH(3, 4)), true);
  nn_fill_normal_(w, &r, 0, 1);
  nn_tensor *ids = nn_params_add(&p, "vocab.ids", nn_tensor_new(NN_I64, 1, SH(5)), false);
  for (int i = 0; i < 5; i++) ((int64_t *)nn_data(ids))[i] = i * 7;
  char path[] = "/tmp/nncore_io_XXXXXX";
  close(mkstemp(path));
  nn_kv meta[] = {{"architecture", "unit"}};
  nn_safetensors_save(path, &p, meta, 1);
  FILE *f = fopen(path, "rb");
  blob bl = {0};
  fseek(f, 0, SEEK_END);
  bl.n = (size_t)ftell(f);
  fseek(f, 0, SEEK_SET);
  bl.b = malloc(bl.n);
  if (fread(bl.b, 1, bl.n, f) != bl.n) bl.n = 0;
  fclose(f);
  unlink(path);
  nn_params_free(&p);
  return bl;
}

static void model_params(nn_params *p) {
  nn_params_init(p);
  nn_params_add(p, "layer.weight", nn_tensor_new(NN_F32, 2, SH(3, 4)), true);
  nn_params_add(p, "vocab.ids", nn_tensor_new(NN_I64, 1, SH(5)), false);
}

/* Builds a file from a header string and `data` bytes of data. */
static blob raw_file(const char *header, size_t data) {
  blob b;
  uint64_t h = strlen(header);
  b.n = 8 + h + data;
  b.b = calloc(1, b.n);
  memcpy(b.b, &h, 8);
  memcpy(b.b + 8, header, h);
  return b;
}

static void expect_refused(blob b, const char *needle, const char *what) {
  nn_clear_error();
  nn_st_file *f = nn_st_open_memory(b.b, b.n, "test.safetensors");
  bool ok = f != NULL;
  if (f) {
    nn_params p;
    model_params(&p);
    ok = nn_st_load_params(f, &p, NULL, true);
    nn_params_free(&p);
    nn_st_close(f);
  }
  CHECK(!ok, "%s was accepted", what);
  CHECK(strstr(nn_last_error(), needle) != NULL, "%s: message '%s' lacks '%s'", what, nn_last_error(), needle);
}

TEST(io_round_trip_with_metadata) {
  blob b = make_file();
  nn_st_file *f = nn_st_open_memory(b.b, b.n, "mem");
  CHECK(f != NULL, "valid file refused");
  if (f) {
    CHECK(nn_st_count(f) == 2, "two tensors");
    CHECK(nn_st_meta(f, "architecture") && strcmp(nn_st_meta(f, "architecture"), "unit") == 0, "metadata");
    nn_params p;
    model_params(&p);
    CHECK(nn_st_load_params(f, &p, NULL, true), "load");
    CHECK(((int64_t *)nn_data(p.t[1]))[4] == 28, "i64 data");
    nn_params_free(&p);
    nn_st_close(f);
  }
  /* the data section starts 8-byte aligned */
  uint64_t h;
  memcpy(&h, b.b, 8);
  CHECK(h % 8 == 0, "header length %llu not aligned", (unsigned long long)h);
  free(b.b);
}

TEST(io_refuses_truncated_files) {
  blob b = make_file();
  size_t cuts[] = {0, 4, 7, 8, 20, b.n / 2, b.n - 1};
  for (size_t i = 0; i < sizeof cuts / sizeof cuts[0]; i++) {
    blob t = {b.b, cuts[i]};
    const char *needle = cuts[i] < 8 ? "too short" : (cuts[i] < 8 + 100 ? "truncated" : "");
    expect_refused(t, needle, "truncated file");
  }
  free(b.b);
}

TEST(io_refuses_bad_headers) {
  blob b;
  b = raw_file("{\"a\": {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [0, 8]", 8);
  expect_refused(b, "not valid JSON", "unterminated JSON");
  free(b.b);
  b = raw_file("[1, 2, 3]", 0);
  expect_refused(b, "does not start with '{'", "array header");
  free(b.b);
  b = raw_file("{\"a\": 5}", 0);
  expect_refused(b, "not a JSON object", "tensor entry not an object");
  free(b.b);
  char deep[4096] = "{\"x\":";
  for (int i = 0; i < 2000; i++) strcat(deep, "[");
  b = raw_file(deep, 0);
  expect_refused(b, "nested too deeply", "deep nesting");
  free(b.b);
  /* header length field larger than the limit or the file */
  b = raw_file("{}", 0);
  uint64_t huge = (uint64_t)1 << 40;
  memcpy(b.b, &huge, 8);
  expect_refused(b, "exceeds", "oversized header length");
  uint64_t past = 1000;
  memcpy(b.b, &past, 8);
  expect_refused(b, "does not fit", "header length past the end");
  free(b.b);
  b = raw_file("{\"__metadata__\": {\"k\": 5}}", 0);
  expect_refused(b, "not a string", "non-string metadata");
  free(b.b);
}

TEST(io_refuses_wrong_sizes_dtypes_and_layouts) {
  static const struct { const char *header; size_t data; const char *needle, *what; } cases[] = {
      {"{\"layer.weight\": {\"dtype\": \"F32\", \"shape\": [3, 4], \"data_offsets\": [0, 40]}}", 40,
       "shape and dtype need 48", "size mismatch"},
      {"{\"layer.weight\": {\"dtype\": \"F32\", \"shape\": [3, 4], \"data_offsets\": [0, 48]}}", 20, "truncated",
       "data past the end"},
      {"{\"layer.weight\": {\"dtype\": \"BF16\", \"shape\": [3, 4], \"data_offsets\": [0, 24]}}", 24,
       "unsupported dtype", "unknown dtype"},
      {"{\"a\": {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [0, 8]},"
       " \"b\": {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [4, 12]}}", 12, "overlap or hole",
       "overlapping tensors"},
      {"{\"a\": {\"dtype\": \"F32\", \"shape\": [-2], \"data_offsets\": [0, 8]}}", 8, "invalid size", "negative dim"},
      {"{\"a\": {\"dtype\": \"F32\", \"shape\": [1099511627776, 1099511627776], \"data_offsets\": [0, 8]}}", 8,
       "impossibly large", "overflowing shape"},
      /* well-formed files whose tensors do not fit the model */
      {"{\"layer.weight\": {\"dtype\": \"F32\", \"shape\": [4, 3], \"data_offsets\": [0, 48]},"
       " \"vocab.ids\": {\"dtype\": \"I64\", \"shape\": [5], \"data_offsets\": [48, 88]}}", 88,
       "has shape [4, 3], the model expects [3, 4]", "shape mismatch"},
      {"{\"layer.weight\": {\"dtype\": \"I32\", \"shape\": [3, 4], \"data_offsets\": [0, 48]},"
       " \"vocab.ids\": {\"dtype\": \"I64\", \"shape\": [5], \"data_offsets\": [48, 88]}}", 88,
       "is I32, expected F32", "dtype mismatch"},
      {"{\"layer.weight\": {\"dtype\": \"F32\", \"shape\": [3, 4], \"data_offsets\": [0, 48]}}", 48,
       "missing tensor 'vocab.ids'", "missing tensor"},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    blob b = raw_file(cases[i].header, cases[i].data);
    expect_refused(b, cases[i].needle, cases[i].what);
    free(b.b);
  }
}

TEST(io_refused_load_leaves_model_untouched) {
  nn_params p;
  model_params(&p);
  nn_fill_(p.t[0], 7.0f);
  blob b = raw_file("{\"layer.weight\": {\"dtype\": \"F32\", \"shape\": [3, 4], \"data_offsets\": [0, 48]}}", 48);
  nn_st_file *f = nn_st_open_memory(b.b, b.n, "partial");
  CHECK(f && !nn_st_load_params(f, &p, NULL, true), "partial file refused");
  CHECK(nn_f32(p.t[0])[0] == 7.0f, "weights were overwritten by a refused file");
  nn_st_close(f);
  free(b.b);
  nn_params_free(&p);
}

/* Random byte flips, truncations and length-field rewrites: each result is
 * either refused with a message or loads cleanly; nothing crashes. */
TEST(io_survives_random_mutations) {
  blob good = make_file();
  nn_rng r;
  nn_rng_seed(&r, 77);
  int refused = 0, loaded = 0;
  uint8_t *buf = malloc(good.n + 64);
  for (int it = 0; it < 3000; it++) {
    memcpy(buf, good.b, good.n);
    size_t n = good.n;
    int kind = (int)(nn_rng_u64(&r) % 4);
    int flips = 1 + (int)(nn_rng_u64(&r) % 8);
    if (kind == 0 || kind == 3)
      for (int k = 0; k < flips; k++) buf[nn_rng_u64(&r) % n] = (uint8_t)nn_rng_u64(&r);
    if (kind == 1) n = nn_rng_u64(&r) % n;
    if (kind == 2) {
      uint64_t h = nn_rng_u64(&r) % (good.n + 64);
      memcpy(buf, &h, 8);
    }
    nn_st_file *f = nn_st_open_memory(buf, n, "mutant");
    if (!f) {
      refused++;
      CHECK(strlen(nn_last_error()) > 10, "refusal without a message");
      continue;
    }
    nn_params p;
    model_params(&p);
    if (nn_st_load_params(f, &p, NULL, true)) loaded++;
    else refused++;
    nn_params_free(&p);
    nn_st_close(f);
  }
  printf("    3000 mutants: %d refused, %d loaded (byte flips inside tensor data are legal)\n", refused, loaded);
  CHECK(refused > 1000, "most mutants must be refused");
  free(buf);
  free(good.b);
}

TEST(io_save_is_atomic_and_reports_errors) {
  nn_params p;
  model_params(&p);
  CHECK(!nn_safetensors_save("/nonexistent-dir/x.safetensors", &p, NULL, 0), "save into a missing folder fails");
  CHECK(strstr(nn_last_error(), "/nonexistent-dir/x.safetensors") != NULL, "message names the file");
  char dir[] = "/tmp/nncore_atomic_XXXXXX";
  CHECK(mkdtemp(dir) != NULL, "tmpdir");
  char path[256];
  snprintf(path, sizeof path, "%s/model.safetensors", dir);
  CHECK(nn_safetensors_save(path, &p, NULL, 0), "save");
  CHECK(nn_safetensors_save(path, &p, NULL, 0), "overwrite");
  /* only the final file remains: no temporary left behind */
  char cmd[512];
  snprintf(cmd, sizeof cmd, "test $(ls %s | wc -l) -eq 1", dir);
  CHECK(system(cmd) == 0, "temporary files left in %s", dir);
  snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
  CHECK(system(cmd) == 0, "cleanup");
  nn_st_file *f = nn_st_open("/nonexistent.safetensors");
  CHECK(!f && strstr(nn_last_error(), "cannot open"), "missing file message");
  nn_params_free(&p);
}

/* A save that runs out of room (the file-size limit stands in for a full disk) or meets a folder it may
 * not write fails with a message naming the file, and the previous file is still there, whole. */
TEST(io_save_on_a_full_disk_or_read_only_folder_keeps_the_previous_file) {
  char dir[] = "/tmp/nncore_full_XXXXXX";
  CHECK(mkdtemp(dir) != NULL, "tmpdir");
  char path[256];
  snprintf(path, sizeof path, "%s/model.safetensors", dir);
  nn_params small, big;
  model_params(&small);
  nn_fill_(small.t[0], 0.25f);
  CHECK(nn_safetensors_save(path, &small, NULL, 0), "the previous version");
  nn_params_init(&big);
  nn_params_add(&big, "layer.weight", nn_tensor_new(NN_F32, 2, SH(256, 256)), true); /* 256 kB */
  fflush(stdout);
  pid_t pid = fork();
  if (pid == 0) {
    struct rlimit lim = {64 * 1024, 64 * 1024};
    signal(SIGXFSZ, SIG_IGN); /* write() then fails with EFBIG, as on a full disk it fails with ENOSPC */
    setrlimit(RLIMIT_FSIZE, &lim);
    bool saved = nn_safetensors_save(path, &big, NULL, 0);
    bool named = strstr(nn_last_error(), path) != NULL && strstr(nn_last_error(), "write failed") != NULL;
    if (!saved) printf("    refused as it should be: %s\n", nn_last_error());
    fflush(stdout);
    _exit(saved ? 1 : named ? 0 : 2);
  }
  int status = -1;
  waitpid(pid, &status, 0);
  CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0, "the save past the limit fails with a message naming the file "
        "(child status %d)", status);
  nn_params back;
  model_params(&back);
  nn_st_file *f = nn_st_open(path);
  CHECK(f && nn_st_load_params(f, &back, NULL, true) && nn_f32(back.t[0])[5] == 0.25f, "the previous file is intact");
  nn_st_close(f);
  char cmd[512];
  snprintf(cmd, sizeof cmd, "test $(ls %s | wc -l) -eq 1", dir);
  CHECK(system(cmd) == 0, "no temporary file is left in %s", dir);
  if (geteuid() != 0) { /* root writes anywhere: the folder test needs an ordinary user */
    chmod(dir, 0500);
    CHECK(!nn_safetensors_save(path, &small, NULL, 0) && strstr(nn_last_error(), path), "a read-only folder: %s",
          nn_last_error());
    chmod(dir, 0700);
    f = nn_st_open(path);
    CHECK(f != NULL, "the previous file is still readable");
    nn_st_close(f);
  } else {
    printf("    (running as root: the read-only folder case is skipped)\n");
  }
  snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
  CHECK(system(cmd) == 0, "cleanup");
  nn_params_free(&small), nn_params_free(&big), nn_params_free(&back);
}

TEST(ops_refuse_bad_arguments_without_crashing) {
  nn_tensor *a = nn_zeros(NN_F32, 2, SH(2, 3)), *b = nn_zeros(NN_F32, 2, SH(4, 5));
  CHECK(nn_add(a, b) == NULL && strstr(nn_last_error(), "do not broadcast"), "broadcast error");
  CHECK(nn_matmul(a, b) == NULL && strstr(nn_last_error(), "inner dims"), "matmul error");
  CHECK(nn_relu(NULL) == NULL, "NULL propagates");
  CHECK(nn_reshape(a, 2, SH(4, 2)) == NULL, "reshape size error");
  nn_tensor *x = nn_zeros(NN_F32, 4, SH(1, 3, 4, 4)), *w = nn_zeros(NN_F32, 4, SH(2, 2, 3, 3));
  CHECK(nn_conv2d(x, w, NULL, nn_conv_defaults()) == NULL && strstr(nn_last_error(), "groups"), "conv channels");
  nn_conv_params p = nn_conv_defaults();
  p.stride_h = 0;
  CHECK(nn_conv2d(x, w, NULL, p) == NULL, "zero stride");
  CHECK(nn_max_pool2d(x, 9, 1, 0) == NULL, "kernel larger than input");
  CHECK(nn_upsample_bilinear(x, 0, 4) == NULL, "empty output size");
  nn_tensor *idx = nn_tensor_from_data(NN_I64, 1, SH(1), (int64_t[]){9});
  CHECK(nn_index_select(a, 0, idx) == NULL && strstr(nn_last_error(), "out of range"), "index range");
  nn_tensor *wemb = nn_zeros(NN_F32, 2, SH(4, 2));
  CHECK(nn_embedding(wemb, idx) == NULL, "embedding index range");
  CHECK(nn_dropout(a, 1.5f, true, NULL) == NULL, "dropout p");
  nn_tensor *tg = nn_tensor_from_data(NN_I64, 1, SH(2), (int64_t[]){0, 7});
  CHECK(nn_cross_entropy(a, tg, -100, 0) == NULL && strstr(nn_last_error(), "out of range"), "CE target range");
  nn_tensor_free(idx);
  nn_tensor_free(tg);
}
