/* safetensors reading (validated) and atomic writing, plus checkpoints. */
#include "internal.h"

#include <errno.h>
#include <fcntl.h>
#include <json-glib/json-glib.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

_Static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "safetensors data is little-endian");

typedef struct {
  char *name;
  nn_dtype dtype;
  int ndim;
  int64_t shape[NN_MAX_DIMS];
  uint64_t begin, end;
} st_entry;

struct nn_st_file {
  char *what;          /* file name for messages */
  uint8_t *bytes;
  size_t size;
  const uint8_t *data; /* start of the data section */
  size_t data_size;
  st_entry *e;
  int n;
  char **meta_k, **meta_v;
  int n_meta;
};

static const char *st_dtype_name(nn_dtype dt) {
  switch (dt) {
  case NN_F32: return "F32";
  case NN_I32: return "I32";
  case NN_I64: return "I64";
  case NN_U8: return "U8";
  }
  return "?";
}

static bool st_dtype_parse(const char *s, nn_dtype *dt) {
  static const struct { const char *n; nn_dtype d; } m[] = {{"F32", NN_F32}, {"I32", NN_I32}, {"I64", NN_I64}, {"U8", NN_U8}};
  for (size_t i = 0; i < sizeof m / sizeof m[0]; i++)
    if (strcmp(s, m[i].n) == 0) {
      *dt = m[i].d;
      return true;
    }
  return false;
}

void nn_st_close(nn_st_file *f) {
  if (!f) return;
  for (int i = 0; i < f->n; i++) free(f->e[i].name);
  for (int i = 0; i < f->n_meta; i++) {
    free(f->meta_k[i]);
    free(f->meta_v[i]);
  }
  free(f->e);
  free(f->meta_k);
  free(f->meta_v);
  free(f->bytes);
  free(f->what);
  free(f);
}

/* json-glib's parser recurses; a header of a million '[' must not reach it. */
bool nn_json_nesting_ok(const char *s, size_t n, int max_depth) {
  int depth = 0;
  bool in_str = false;
  for (size_t i = 0; i < n; i++) {
    char c = s[i];
    if (in_str) {
      if (c == '\\') i++;
      else if (c == '"') in_str = false;
    } else if (c == '"') {
      in_str = true;
    } else if (c == '{' || c == '[') {
      if (++depth > max_depth) return false;
    } else if (c == '}' || c == ']') {
      depth--;
    }
  }
  return true;
}

static int cmp_range(const void *a, const void *b) {
  const st_entry *x = *(st_entry *const *)a, *y = *(st_entry *const *)b;
  return x->begin < y->begin ? -1 : x->begin > y->begin;
}

#define ST_FAIL(...)                              \
  do {                                            \
    char _m[400];                                 \
    snprintf(_m, sizeof _m, __VA_ARGS__);         \
    nn_set_error("%s: %s", f->what, _m);          \
    goto fail;                                    \
  } while (0)

static bool parse_entry(nn_st_file *f, const char *name, JsonNode *node, st_entry *e) {
  if (!JSON_NODE_HOLDS_OBJECT(node)) {
    nn_set_error("%s: tensor '%s' is not a JSON object", f->what, name);
    return false;
  }
  JsonObject *o = json_node_get_object(node);
  JsonNode *dt = json_object_get_member(o, "dtype"), *sh = json_object_get_member(o, "shape"),
           *off = json_object_get_member(o, "data_offsets");
  if (!dt || json_node_get_value_type(dt) != G_TYPE_STRING) {
    nn_set_error("%s: tensor '%s' has no dtype string", f->what, name);
    return false;
  }
  if (!st_dtype_parse(json_node_get_string(dt), &e->dtype)) {
    nn_set_error("%s: tensor '%s' has unsupported dtype '%s' (nncore reads F32, I32, I64, U8)", f->what, name,
                 json_node_get_string(dt));
    return false;
  }
  if (!sh || !JSON_NODE_HOLDS_ARRAY(sh) || json_array_get_length(json_node_get_array(sh)) > NN_MAX_DIMS) {
    nn_set_error("%s: tensor '%s' has no shape array of at most %d dims", f->what, name, NN_MAX_DIMS);
    return false;
  }
  JsonArray *sa = json_node_get_array(sh);
  e->ndim = (int)json_array_get_length(sa);
  uint64_t numel = 1;
  for (int d = 0; d < e->ndim; d++) {
    JsonNode *v = json_array_get_element(sa, (guint)d);
    if (json_node_get_value_type(v) != G_TYPE_INT64 || json_node_get_int(v) < 0 ||
        json_node_get_int(v) > (int64_t)1 << 40) {
      nn_set_error("%s: tensor '%s' has an invalid size in dim %d", f->what, name, d);
      return false;
    }
    e->shape[d] = json_node_get_int(v);
    if (e->shape[d] && numel > ((uint64_t)1 << 50) / (uint64_t)e->shape[d]) {
      nn_set_error("%s: tensor '%s' is impossibly large", f->what, name);
      return false;
    }
    numel *= (uint64_t)e->shape[d];
  }
  if (!off || !JSON_NODE_HOLDS_ARRAY(off) || json_array_get_length(json_node_get_array(off)) != 2) {
    nn_set_error("%s: tensor '%s' has no data_offsets pair", f->what, name);
    return false;
  }
  JsonArray *oa = json_node_get_array(off);
  JsonNode *b = json_array_get_element(oa, 0), *en = json_array_get_element(oa, 1);
  if (json_node_get_value_type(b) != G_TYPE_INT64 || json_node_get_value_type(en) != G_TYPE_INT64 ||
      json_node_get_int(b) < 0 || json_node_get_int(en) < json_node_get_int(b)) {
    nn_set_error("%s: tensor '%s' has invalid data_offsets", f->what, name);
    return false;
  }
  e->begin = (uint64_t)json_node_get_int(b);
  e->end = (uint64_t)json_node_get_int(en);
  if (e->end > f->data_size) {
    nn_set_error("%s: tensor '%s' ends at byte %llu but the data section has %zu bytes (truncated file?)", f->what,
                 name, (unsigned long long)e->end, f->data_size);
    return false;
  }
  if (e->end - e->begin != numel * nn_dtype_size(e->dtype)) {
    nn_set_error("%s: tensor '%s' has %llu data bytes, its shape and dtype need %llu", f->what, name,
                 (unsigned long long)(e->end - e->begin), (unsigned long long)(numel * nn_dtype_size(e->dtype)));
    return false;
  }
  e->name = strdup(name);
  return e->name != NULL;
}

/* Parses and validates `bytes`, which the returned file owns (freed on failure too). */
static nn_st_file *st_parse(uint8_t *bytes, size_t size, const char *what) {
  nn_st_file *f = calloc(1, sizeof *f);
  if (!f) {
    free(bytes);
    return NULL;
  }
  f->what = strdup(what ? what : "safetensors");
  f->bytes = bytes;
  JsonParser *parser = NULL;
  st_entry **sorted = NULL;
  if (!f->what || !f->bytes) ST_FAIL("out of memory");
  f->size = size;
  if (size < 8) ST_FAIL("file is %zu bytes, too short for a safetensors header", size);
  uint64_t hlen = 0;
  memcpy(&hlen, f->bytes, 8);
  if (hlen > NN_ST_MAX_HEADER) ST_FAIL("header length %llu exceeds the %u-byte limit", (unsigned long long)hlen, NN_ST_MAX_HEADER);
  if (hlen < 2 || 8 + hlen > size) ST_FAIL("header length %llu does not fit in a %zu-byte file (truncated?)", (unsigned long long)hlen, size);
  const char *hdr = (const char *)f->bytes + 8;
  if (hdr[0] != '{') ST_FAIL("header does not start with '{'");
  if (!nn_json_nesting_ok(hdr, hlen, 8)) ST_FAIL("header JSON is nested too deeply");
  f->data = f->bytes + 8 + hlen;
  f->data_size = size - 8 - hlen;
  parser = json_parser_new();
  GError *err = NULL;
  if (!json_parser_load_from_data(parser, hdr, (gssize)hlen, &err)) {
    char m[256];
    snprintf(m, sizeof m, "%s", err ? err->message : "?");
    g_clear_error(&err);
    ST_FAIL("header is not valid JSON: %s", m);
  }
  JsonNode *root = json_parser_get_root(parser);
  if (!root || !JSON_NODE_HOLDS_OBJECT(root)) ST_FAIL("header is not a JSON object");
  JsonObject *ro = json_node_get_object(root);
  GList *members = json_object_get_members(ro);
  guint count = json_object_get_size(ro);
  f->e = calloc(count ? count : 1, sizeof *f->e);
  if (!f->e) {
    g_list_free(members);
    ST_FAIL("out of memory");
  }
  for (GList *l = members; l; l = l->next) {
    const char *name = l->data;
    JsonNode *node = json_object_get_member(ro, name);
    if (strcmp(name, "__metadata__") == 0) {
      if (!JSON_NODE_HOLDS_OBJECT(node)) {
        g_list_free(members);
        ST_FAIL("__metadata__ is not an object");
      }
      JsonObject *mo = json_node_get_object(node);
      guint mn = json_object_get_size(mo);
      f->meta_k = calloc(mn ? mn : 1, sizeof(char *));
      f->meta_v = calloc(mn ? mn : 1, sizeof(char *));
      GList *mm = json_object_get_members(mo);
      for (GList *k = mm; k; k = k->next) {
        JsonNode *v = json_object_get_member(mo, k->data);
        if (json_node_get_value_type(v) != G_TYPE_STRING) {
          g_list_free(mm);
          g_list_free(members);
          ST_FAIL("__metadata__ value of '%s' is not a string", (const char *)k->data);
        }
        f->meta_k[f->n_meta] = strdup(k->data);
        f->meta_v[f->n_meta] = strdup(json_node_get_string(v));
        f->n_meta++;
      }
      g_list_free(mm);
      continue;
    }
    if (!parse_entry(f, name, node, &f->e[f->n])) {
      g_list_free(members);
      goto fail;
    }
    f->n++;
  }
  g_list_free(members);
  /* tensors must tile the data section: no overlap, no hole */
  sorted = malloc((size_t)(f->n ? f->n : 1) * sizeof *sorted);
  if (!sorted) ST_FAIL("out of memory");
  for (int i = 0; i < f->n; i++) sorted[i] = &f->e[i];
  qsort(sorted, (size_t)f->n, sizeof *sorted, cmp_range);
  uint64_t pos = 0;
  for (int i = 0; i < f->n; i++) {
    if (sorted[i]->begin != pos)
      ST_FAIL("tensor '%s' starts at byte %llu, expected %llu (overlap or hole)", sorted[i]->name,
              (unsigned long long)sorted[i]->begin, (unsigned long long)pos);
    pos = sorted[i]->end;
  }
  if (pos != f->data_size)
    ST_FAIL("data section has %zu bytes but the tensors cover %llu (trailing garbage or truncation)", f->data_size,
            (unsigned long long)pos);
  free(sorted);
  g_object_unref(parser);
  return f;
fail:
  free(sorted);
  if (parser) g_object_unref(parser);
  nn_st_close(f);
  return NULL;
}

nn_st_file *nn_st_open_memory(const void *data, size_t size, const char *what) {
  uint8_t *copy = malloc(size ? size : 1);
  if (copy) memcpy(copy, data, size);
  return st_parse(copy, size, what);
}

nn_st_file *nn_st_open(const char *path) {
  FILE *fp = fopen(path, "rb");
  if (!fp) {
    nn_set_error("%s: cannot open: %s", path, strerror(errno));
    return NULL;
  }
  struct stat st;
  if (fstat(fileno(fp), &st) != 0 || !S_ISREG(st.st_mode)) {
    fclose(fp);
    nn_set_error("%s: not a regular file", path);
    return NULL;
  }
  size_t size = (size_t)st.st_size;
  uint8_t *buf = malloc(size ? size : 1);
  if (!buf) {
    fclose(fp);
    nn_set_error("%s: out of memory reading %zu bytes", path, size);
    return NULL;
  }
  size_t got = fread(buf, 1, size, fp);
  fclose(fp);
  if (got != size) {
    free(buf);
    nn_set_error("%s: short read", path);
    return NULL;
  }
  return st_parse(buf, size, path);
}

int nn_st_count(const nn_st_file *f) { return f->n; }
const char *nn_st_name(const nn_st_file *f, int i) { return i >= 0 && i < f->n ? f->e[i].name : NULL; }

const char *nn_st_meta(const nn_st_file *f, const char *key) {
  for (int i = 0; i < f->n_meta; i++)
    if (strcmp(f->meta_k[i], key) == 0) return f->meta_v[i];
  return NULL;
}

int nn_st_meta_count(const nn_st_file *f) { return f->n_meta; }

const char *nn_st_meta_at(const nn_st_file *f, int i, const char **key) {
  if (i < 0 || i >= f->n_meta) return NULL;
  if (key) *key = f->meta_k[i];
  return f->meta_v[i];
}

static const st_entry *find(const nn_st_file *f, const char *name) {
  for (int i = 0; i < f->n; i++)
    if (strcmp(f->e[i].name, name) == 0) return &f->e[i];
  return NULL;
}

nn_tensor *nn_st_get(const nn_st_file *f, const char *name) {
  const st_entry *e = find(f, name);
  if (!e) {
    nn_set_error("%s: no tensor '%s'", f->what, name);
    return NULL;
  }
  return nn_tensor_from_data(e->dtype, e->ndim, e->shape, f->data + e->begin);
}

/* Checks (copy = false) or copies (copy = true) every tensor of p from the file. */
static bool load_params(const nn_st_file *f, nn_params *p, const char *prefix, bool strict, bool copy) {
  size_t plen = prefix ? strlen(prefix) : 0;
  char name[512];
  for (int i = 0; i < p->n; i++) {
    snprintf(name, sizeof name, "%s%s", prefix ? prefix : "", p->names[i]);
    const st_entry *e = find(f, name);
    nn_tensor *t = p->t[i];
    if (copy) {
      memcpy(nn_data(t), f->data + e->begin, e->end - e->begin);
      continue;
    }
    if (!e) {
      nn_set_error("%s: missing tensor '%s'", f->what, name);
      return false;
    }
    if (e->dtype != t->dtype) {
      nn_set_error("%s: tensor '%s' is %s, expected %s", f->what, name, st_dtype_name(e->dtype), st_dtype_name(t->dtype));
      return false;
    }
    bool same = e->ndim == t->ndim;
    for (int d = 0; same && d < t->ndim; d++) same = e->shape[d] == t->shape[d];
    if (!same) {
      char s1[96], s2[96];
      nn_tensor tmp = {.ndim = e->ndim};
      for (int d = 0; d < e->ndim; d++) tmp.shape[d] = e->shape[d];
      nn_set_error("%s: tensor '%s' has shape %s, the model expects %s", f->what, name,
                   nn_shape_str(&tmp, s1, sizeof s1), nn_shape_str(t, s2, sizeof s2));
      return false;
    }
  }
  if (strict && !copy)
    for (int i = 0; i < f->n; i++) {
      if (plen && strncmp(f->e[i].name, prefix, plen) != 0) continue;
      if (!nn_params_find(p, f->e[i].name + plen)) {
        nn_set_error("%s: unexpected tensor '%s' (not in the model)", f->what, f->e[i].name);
        return false;
      }
    }
  return true;
}

bool nn_st_load_params(const nn_st_file *f, nn_params *p, const char *prefix, bool strict) {
  /* check everything first so a refused file leaves the model untouched */
  return load_params(f, p, prefix, strict, false) && load_params(f, p, prefix, strict, true);
}

/* ----------------------------------------------------------------- writing */

static bool write_all(int fd, const void *buf, size_t n) {
  const char *p = buf;
  while (n) {
    ssize_t w = write(fd, p, n);
    if (w < 0) {
      if (errno == EINTR) continue;
      return false;
    }
    p += w;
    n -= (size_t)w;
  }
  return true;
}

typedef struct {
  const nn_params *ps[2];
  const char *prefixes[2];
  int n_sets;
} st_sources;

static bool save_sources(const char *path, const st_sources *src, const nn_kv *meta, int n_meta) {
  JsonBuilder *b = json_builder_new();
  json_builder_begin_object(b);
  if (n_meta > 0) {
    json_builder_set_member_name(b, "__metadata__");
    json_builder_begin_object(b);
    for (int i = 0; i < n_meta; i++) {
      json_builder_set_member_name(b, meta[i].key);
      json_builder_add_string_value(b, meta[i].value ? meta[i].value : "");
    }
    json_builder_end_object(b);
  }
  uint64_t off = 0;
  char name[512];
  for (int s = 0; s < src->n_sets; s++)
    for (int i = 0; i < src->ps[s]->n; i++) {
      nn_tensor *t = src->ps[s]->t[i];
      snprintf(name, sizeof name, "%s%s", src->prefixes[s], src->ps[s]->names[i]);
      json_builder_set_member_name(b, name);
      json_builder_begin_object(b);
      json_builder_set_member_name(b, "dtype");
      json_builder_add_string_value(b, st_dtype_name(t->dtype));
      json_builder_set_member_name(b, "shape");
      json_builder_begin_array(b);
      for (int d = 0; d < t->ndim; d++) json_builder_add_int_value(b, t->shape[d]);
      json_builder_end_array(b);
      uint64_t sz = (uint64_t)nn_numel(t) * nn_dtype_size(t->dtype);
      json_builder_set_member_name(b, "data_offsets");
      json_builder_begin_array(b);
      json_builder_add_int_value(b, (gint64)off);
      json_builder_add_int_value(b, (gint64)(off + sz));
      json_builder_end_array(b);
      json_builder_end_object(b);
      off += sz;
    }
  json_builder_end_object(b);
  JsonGenerator *gen = json_generator_new();
  JsonNode *root = json_builder_get_root(b);
  json_generator_set_root(gen, root);
  gsize hlen = 0;
  gchar *hdr = json_generator_to_data(gen, &hlen);
  json_node_unref(root);
  g_object_unref(gen);
  g_object_unref(b);
  /* pad the header with spaces so the data starts 8-byte aligned */
  uint64_t padded = (hlen + 7) & ~(uint64_t)7;

  char *dir_copy = strdup(path), *tmpl = malloc(strlen(path) + 16);
  bool ok = false;
  int fd = -1;
  if (!dir_copy || !tmpl) goto out;
  sprintf(tmpl, "%s.tmp.XXXXXX", path);
  fd = mkstemp(tmpl);
  if (fd < 0) {
    nn_set_error("%s: cannot create a temporary file next to it: %s", path, strerror(errno));
    goto out;
  }
  /* mkstemp makes 0600 files; give the checkpoint the usual umask-based mode */
  mode_t um = umask(0);
  umask(um);
  fchmod(fd, 0666 & ~um);
  ok = write_all(fd, &padded, 8) && write_all(fd, hdr, hlen);
  for (uint64_t i = hlen; ok && i < padded; i++) ok = write_all(fd, " ", 1);
  for (int s = 0; ok && s < src->n_sets; s++)
    for (int i = 0; ok && i < src->ps[s]->n; i++) {
      nn_tensor *t = src->ps[s]->t[i];
      size_t sz = (size_t)nn_numel(t) * nn_dtype_size(t->dtype);
      if (nn_is_contiguous(t)) {
        ok = write_all(fd, nn_data(t), sz);
      } else {
        nn_tensor *c = nn_tensor_persist(t);
        ok = c && write_all(fd, nn_data(c), sz);
        nn_tensor_free(c);
      }
    }
  ok = ok && fsync(fd) == 0;
  if (close(fd) != 0) ok = false;
  fd = -1;
  if (!ok) {
    nn_set_error("%s: write failed: %s", path, strerror(errno));
    unlink(tmpl);
    goto out;
  }
  if (rename(tmpl, path) != 0) {
    nn_set_error("%s: rename failed: %s", path, strerror(errno));
    unlink(tmpl);
    ok = false;
    goto out;
  }
  /* make the rename itself durable */
  int dfd = open(dirname(dir_copy), O_RDONLY | O_DIRECTORY);
  if (dfd >= 0) {
    fsync(dfd);
    close(dfd);
  }
out:
  if (fd >= 0) close(fd);
  g_free(hdr);
  free(dir_copy);
  free(tmpl);
  return ok;
}

bool nn_safetensors_save(const char *path, const nn_params *tensors, const nn_kv *meta, int n_meta) {
  st_sources s = {.ps = {tensors}, .prefixes = {""}, .n_sets = 1};
  return save_sources(path, &s, meta, n_meta);
}

bool nn_checkpoint_save(const char *path, const nn_params *model, const nn_optim *opt, const nn_kv *meta, int n_meta) {
  nn_kv *all = calloc((size_t)n_meta + 3, sizeof *all);
  if (!all) return false;
  char step[32], lr[32];
  snprintf(step, sizeof step, "%lld", (long long)(opt ? opt->step : 0));
  snprintf(lr, sizeof lr, "%.9g", opt ? opt->cfg.lr : 0.0);
  int n = 0;
  for (int i = 0; i < n_meta; i++) all[n++] = meta[i];
  all[n++] = (nn_kv){"step", step};
  if (opt) {
    all[n++] = (nn_kv){"optimizer", nn_optim_kind_name(opt->cfg.kind)};
    all[n++] = (nn_kv){"lr", lr};
  }
  st_sources s = {.ps = {model, opt ? &opt->state : NULL}, .prefixes = {"model.", "optim."}, .n_sets = opt ? 2 : 1};
  bool ok = save_sources(path, &s, all, n);
  free(all);
  return ok;
}

bool nn_checkpoint_load_file(const nn_st_file *f, const char *path, nn_params *model, nn_optim *opt) {
  bool ok = true;
  if (opt) {
    const char *kind = nn_st_meta(f, "optimizer");
    if (!kind || strcmp(kind, nn_optim_kind_name(opt->cfg.kind)) != 0) {
      nn_set_error("%s: checkpoint optimizer is '%s', not '%s'", path, kind ? kind : "none", nn_optim_kind_name(opt->cfg.kind));
      ok = false;
    }
  }
  int64_t step = 0;
  const char *st = opt ? nn_st_meta(f, "step") : NULL;
  if (ok && st) {
    char *end = NULL;
    errno = 0;
    step = strtoll(st, &end, 10);
    if (errno || end == st || *end || step < 0) {
      nn_set_error("%s: checkpoint step \"%.40s\" is not a count of steps", path, st);
      ok = false;
    }
  }
  /* model and optimizer state are both checked before either is overwritten */
  ok = ok && load_params(f, model, "model.", true, false) && (!opt || load_params(f, &opt->state, "optim.", true, false));
  if (ok) {
    load_params(f, model, "model.", true, true);
    if (opt) {
      load_params(f, &opt->state, "optim.", true, true);
      if (st) opt->step = step;
    }
  }
  return ok;
}

bool nn_checkpoint_load(const char *path, nn_params *model, nn_optim *opt) {
  nn_st_file *f = nn_st_open(path);
  if (!f) return false;
  bool ok = nn_checkpoint_load_file(f, path, model, opt);
  nn_st_close(f);
  return ok;
}
