/* Writes the fuzzers' seed corpora: small valid inputs made by the project's own code, one folder per
 * harness. Run from the source root after a build (the corpora are committed; rerun after a format
 * changes):  build/tests/fuzz/fuzz-make-seeds tests/fuzz/corpus */
#include <cairo.h>
#include <glib.h>
#include <glib/gstdio.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jpeglib.h> /* after stdio.h, which it needs */
#include <sndfile.h>

#include "asr/internal.h"
#include "e2e/asr.h"
#include "e2e/audio.h"
#include "e2e/codec.h"
#include "e2e/detect.h"
#include "nncore/nncore.h"

bool fuzz_codec_model(codec_model *c);

static const char *root;

static char *path_in(const char *harness, const char *name) {
  char *dir = g_build_filename(root, harness, NULL);
  g_mkdir_with_parents(dir, 0755);
  char *p = g_build_filename(dir, name, NULL);
  g_free(dir);
  return p;
}

static void write_bytes(const char *harness, const char *name, const void *data, size_t n) {
  char *p = path_in(harness, name);
  if (!g_file_set_contents(p, data, (gssize)n, NULL)) {
    fprintf(stderr, "cannot write %s\n", p);
    exit(1);
  }
  g_free(p);
}

/* A file made by a saver (at its path), copied into another harness's folder as well. */
static void copy_to(const char *from, const char *harness, const char *name) {
  char *data = NULL;
  gsize n = 0;
  if (!g_file_get_contents(from, &data, &n, NULL)) exit(1);
  write_bytes(harness, name, data, n);
  g_free(data);
}

/* "<selector byte><text>" */
static void write_tagged(const char *harness, const char *name, uint8_t tag, const char *text) {
  size_t n = strlen(text);
  uint8_t *b = malloc(n + 1);
  b[0] = tag;
  memcpy(b + 1, text, n);
  write_bytes(harness, name, b, n + 1);
  free(b);
}

static void checkpoints(void) {
  nn_params p;
  nn_params_init(&p);
  nn_tensor *w1 = nn_params_add(&p, "fc1.weight", nn_tensor_new(NN_F32, 2, (int64_t[]){8, 4}), true);
  nn_params_add(&p, "fc1.bias", nn_tensor_new(NN_F32, 1, (int64_t[]){8}), true);
  nn_params_add(&p, "fc2.weight", nn_tensor_new(NN_F32, 2, (int64_t[]){3, 8}), true);
  for (int64_t k = 0; k < nn_numel(w1); k++) nn_f32(w1)[k] = 0.5f - 0.01f * (float)k;
  nn_optim *opt = nn_optim_new(&p, nn_optim_defaults(NN_ADAM, 1e-3f));
  opt->step = 42;
  nn_kv meta[] = {{"note", "fuzz seed"}};
  char *ck = path_in("checkpoint", "adam.safetensors");
  if (!nn_checkpoint_save(ck, &p, opt, meta, 1)) exit(1);
  copy_to(ck, "safetensors", "checkpoint.safetensors");
  char *plain = path_in("safetensors", "params.safetensors");
  if (!nn_safetensors_save(plain, &p, meta, 1)) exit(1);
  g_free(ck);
  g_free(plain);
  nn_optim_free(opt);
  nn_params_free(&p);
}

static void models(void) {
  det_config dc = det_config_default(2, 64);
  dc.width = 4;
  snprintf(dc.labels[0], DET_LABEL_LEN, "cat");
  snprintf(dc.labels[1], DET_LABEL_LEN, "dog");
  e2e_model *det = e2e_detect_model_new(&dc, 1);
  codec_config cc = codec_config_default();
  cc.n = 8, cc.m = 8;
  e2e_model *codec = e2e_codec_model_new(&cc, 1);
  e2e_model *all[] = {det, codec};
  const char *names[] = {"detect.safetensors", "codec.safetensors"};
  for (int i = 0; i < 2; i++) {
    char *p = path_in("model", names[i]);
    if (!all[i] || !e2e_model_save(all[i], p, NULL, 0)) {
      fprintf(stderr, "%s: %s\n", names[i], nn_last_error());
      exit(1);
    }
    g_free(p);
    e2e_model_unref(all[i]);
  }
  /* a recogniser far smaller than e2e_asr_model_new makes: the loader's checks are the same */
  asr_model asr;
  asr_config ac = asr_config_default();
  ac.conv_channels = 4, ac.dim = 16, ac.hidden = 8, ac.layers = 1;
  e2e_mel_config mel = e2e_mel_default();
  char *p = path_in("model", "asr.safetensors");
  if (!asr_init(&asr, &ac, &mel, 1) || !asr_save(&asr, p, NULL, 0)) {
    fprintf(stderr, "asr: %s\n", nn_last_error());
    exit(1);
  }
  asr_free(&asr);
  g_free(p);
}

static void codec_streams(void) {
  codec_model c;
  if (!fuzz_codec_model(&c)) exit(1);
  GByteArray *joined = g_byte_array_new();
  uint8_t chunk = 15;
  g_byte_array_append(joined, &chunk, 1);
  int sizes[][2] = {{64, 64}, {96, 40}, {33, 17}};
  for (int i = 0; i < 3; i++) {
    int w = sizes[i][0], h = sizes[i][1];
    uint8_t *rgb = malloc((size_t)w * h * 3);
    for (int y = 0; y < h; y++)
      for (int x = 0; x < w; x++)
        for (int k = 0; k < 3; k++) rgb[(y * w + x) * 3 + k] = (uint8_t)(x * 4 + y * 2 * k + (x / 8 + y / 8) % 2 * 60);
    for (int q = CODEC_MIN_QUALITY; q <= CODEC_MAX_QUALITY; q += 2) {
      uint8_t *s = NULL;
      size_t n = 0;
      if (!codec_compress(&c, NULL, q, rgb, w, h, w * 3, &s, &n, NULL)) exit(1);
      codec_set_frame_rate(s, 30, 1);
      char name[64];
      snprintf(name, sizeof name, "%dx%d-q%d.e2el", w, h, q);
      write_bytes("codec_stream", name, s, n);
      g_byte_array_append(joined, s, (guint)n);
      if (i == 0 && q == CODEC_MIN_QUALITY) g_byte_array_append(joined, (const guint8 *)"garbage E2E", 11);
      free(s);
    }
    /* a predicted picture: the pattern again with a block changed, after it */
    codec_reference *ref = codec_reference_new();
    uint8_t *s = NULL;
    size_t n = 0;
    if (!ref || !codec_compress_video(&c, NULL, 3, true, rgb, w, h, w * 3, ref, &s, &n, NULL)) exit(1);
    free(s);
    for (int y = 0; y < h / 2; y++)
      for (int x = 0; x < w / 2; x++) rgb[(y * w + x) * 3] = 250;
    if (!codec_compress_video(&c, NULL, 3, false, rgb, w, h, w * 3, ref, &s, &n, NULL) || !s[6]) exit(1);
    codec_set_frame_rate(s, 30, 1);
    char name[64];
    snprintf(name, sizeof name, "%dx%d-q3-predicted.e2el", w, h);
    write_bytes("codec_stream", name, s, n);
    g_byte_array_append(joined, s, (guint)n);
    free(s);
    /* an intra picture with a region of interest (its top-left blocks at another level) */
    int cols, rows;
    codec_block_grid(w, h, &cols, &rows);
    uint8_t *inside = calloc((size_t)cols * rows, 1);
    if (!inside) exit(1);
    inside[0] = 1;
    codec_options o = {.roi_blocks = inside, .roi_quality = 5};
    if (!codec_compress_video(&c, &o, 2, true, rgb, w, h, w * 3, ref, &s, &n, NULL) || !(s[6] & CODEC_FLAG_REGIONS)) exit(1);
    codec_set_frame_rate(s, 30, 1);
    snprintf(name, sizeof name, "%dx%d-q2-regions.e2el", w, h);
    write_bytes("codec_stream", name, s, n);
    g_byte_array_append(joined, s, (guint)n);
    free(s);
    free(inside);
    codec_reference_free(ref);
    free(rgb);
  }
  write_bytes("codec_parse", "pictures-in-15-byte-chunks", joined->data, joined->len);
  joined->data[0] = 255;
  write_bytes("codec_parse", "pictures-in-256-byte-chunks", joined->data, joined->len);
  g_byte_array_free(joined, TRUE);
  codec_free(&c);
}

static void labels(void) {
  write_tagged("labels", "yolo.txt", 0, "0 0.5 0.5 0.25 0.5\n2 0.1 0.2 0.05 0.1\n# a comment\n1 0.9 0.9 0.1 0.1\n");
  write_tagged("labels", "raccoon.csv", 1,
               "filename,width,height,class,xmin,ymin,xmax,ymax\nraccoon-1.jpg,650,417,raccoon,81,88,522,408\n"
               "raccoon-2.jpg,800,600,raccoon,10,20,300,400\n");
  write_tagged("labels", "coco.json", 2,
               "{\"images\": [{\"id\": 1, \"file_name\": \"a.jpg\", \"width\": 640, \"height\": 480}],"
               " \"annotations\": [{\"id\": 7, \"image_id\": 1, \"category_id\": 3, \"bbox\": [10, 20, 100.5, 200]},"
               " {\"id\": 8, \"image_id\": 1, \"category_id\": 1, \"bbox\": [0, 0, 640, 480]}],"
               " \"categories\": [{\"id\": 1, \"name\": \"person\"}, {\"id\": 3, \"name\": \"car\"}]}");
  write_tagged("labels", "detections.jsonl", 3,
               "{\"pts\": 0, \"frame\": 0, \"width\": 768, \"height\": 576, \"fresh\": true, \"objects\": [{\"label\": "
               "\"person\", \"class_id\": 0, \"confidence\": 0.41, \"x\": 255.2, \"y\": 221.0, \"w\": 29.0, \"h\": 80.7}]}\n"
               "{\"pts\": 100000000, \"frame\": 1, \"width\": 768, \"height\": 576, \"objects\": [{\"class_id\": 1, "
               "\"x\": 1, \"y\": 2, \"w\": 3, \"h\": 4}]}\n");
}

static const char *TFJS_MODEL =
    "{\"format\": \"graph-model\", \"modelTopology\": {\"node\": ["
    "{\"name\": \"x\", \"op\": \"Placeholder\", \"attr\": {\"shape\": {\"shape\": {\"dim\": [{\"size\": \"1\"}, "
    "{\"size\": \"8\"}, {\"size\": \"8\"}, {\"size\": \"2\"}]}}}},"
    "{\"name\": \"w\", \"op\": \"Const\"}, {\"name\": \"b\", \"op\": \"Const\"},"
    "{\"name\": \"c\", \"op\": \"Conv2D\", \"input\": [\"x\", \"w\"], \"attr\": {\"padding\": {\"s\": \"U0FNRQ==\"}, "
    "\"strides\": {\"list\": {\"i\": [\"1\", \"1\", \"1\", \"1\"]}}}},"
    "{\"name\": \"y\", \"op\": \"BiasAdd\", \"input\": [\"c\", \"b\"]},"
    "{\"name\": \"p\", \"op\": \"MaxPool\", \"input\": [\"y\"], \"attr\": {\"padding\": {\"s\": \"VkFMSUQ=\"}, "
    "\"ksize\": {\"list\": {\"i\": [\"1\", \"2\", \"2\", \"1\"]}}, \"strides\": {\"list\": {\"i\": [\"1\", \"2\", \"2\", \"1\"]}}}},"
    "{\"name\": \"out\", \"op\": \"Relu\", \"input\": [\"p\"]}"
    "]}, \"weightsManifest\": [{\"paths\": [\"w.bin\"], \"weights\": ["
    "{\"name\": \"w\", \"shape\": [3, 3, 2, 4], \"dtype\": \"float32\"},"
    "{\"name\": \"b\", \"shape\": [4], \"dtype\": \"float32\"}]}]}";

static void tfjs(void) {
  size_t json = strlen(TFJS_MODEL), floats = 3 * 3 * 2 * 4 + 4;
  uint8_t *b = malloc(json + 1 + floats * 4);
  memcpy(b, TFJS_MODEL, json + 1); /* with its NUL: the separator */
  for (size_t i = 0; i < floats; i++) {
    float v = 0.01f * (float)(i % 5) - 0.02f;
    memcpy(b + json + 1 + i * 4, &v, 4);
  }
  write_bytes("tfjs", "conv-pool.json+bin", b, json + 1 + floats * 4);
  free(b);
}

/* Small node models from Debian's libonnx-testdata (Apache-2.0, the ONNX project's own tests). */
static void onnx(void) {
  static const char *const nodes[] = {"test_conv_with_strides_padding", "test_relu", "test_add_bcast", "test_maxpool_2d_pads",
                                      "test_averagepool_2d_default", "test_globalaveragepool", "test_batchnorm_example",
                                      "test_concat_2d_axis_0", "test_reshape_reordered_all_dims", "test_transpose_default",
                                      "test_resize_upsample_scales_nearest", "test_sigmoid", "test_matmul_2d",
                                      "test_gemm_default_single_elem_vector_bias", "test_softmax_axis_1", "test_slice",
                                      "test_convtranspose", "test_leakyrelu", "test_clip", "test_constant_pad"};
  for (size_t i = 0; i < G_N_ELEMENTS(nodes); i++) {
    char *src = g_strdup_printf("/usr/share/libonnx-testdata/data/node/%s/model.onnx", nodes[i]);
    char *name = g_strdup_printf("%s.onnx", nodes[i] + 5);
    if (g_file_test(src, G_FILE_TEST_EXISTS)) copy_to(src, "onnx", name);
    else fprintf(stderr, "no %s (libonnx-testdata)\n", src);
    g_free(src);
    g_free(name);
  }
}

static void asr_text(void) {
  const char *texts[][2] = {
      {"sentences.txt", "The quick brown fox jumps over the lazy dog.\nIt's 5 o'clock, Mr. Smith!\n\nturn the lights on\n"},
      {"digits.txt", "zero one two three four five six seven eight nine oh\none two\n"},
      {"unicode.txt", "na\xc3\xafve caf\xc3\xa9 \xe2\x80\x94 r\xc3\xa9sum\xc3\xa9's don't 'quoted'\n"},
  };
  for (size_t i = 0; i < G_N_ELEMENTS(texts); i++) write_bytes("asr_text", texts[i][0], texts[i][1], strlen(texts[i][1]));
}

/* "<selector><file>" inputs for the media harness: a PNG and a JPEG picture (selector 0), a WAV and a
 * FLAC sound (selector 1). */
static void media(void) {
  char *tmp = g_dir_make_tmp("e2e-seeds-XXXXXX", NULL), *file = g_build_filename(tmp, "f", NULL);
  uint8_t px[12 * 8 * 3];
  for (int i = 0; i < 12 * 8 * 3; i++) px[i] = (uint8_t)(i * 7);
  /* PNG through cairo */
  cairo_surface_t *surf = cairo_image_surface_create(CAIRO_FORMAT_RGB24, 12, 8);
  uint32_t *row = (uint32_t *)(void *)cairo_image_surface_get_data(surf);
  for (int i = 0; i < 12 * 8; i++) row[i] = (uint32_t)px[3 * i] << 16 | (uint32_t)px[3 * i + 1] << 8 | px[3 * i + 2];
  cairo_surface_mark_dirty(surf);
  cairo_surface_write_to_png(surf, file);
  cairo_surface_destroy(surf);
  char *data = NULL;
  gsize n = 0;
  g_file_get_contents(file, &data, &n, NULL);
  uint8_t *b = malloc(n + 1);
  b[0] = 0, memcpy(b + 1, data, n);
  write_bytes("media", "picture.png", b, n + 1);
  free(b), g_free(data);
  /* JPEG through libjpeg */
  struct jpeg_compress_struct c;
  struct jpeg_error_mgr err;
  c.err = jpeg_std_error(&err);
  jpeg_create_compress(&c);
  unsigned char *jbuf = NULL;
  unsigned long jlen = 0;
  jpeg_mem_dest(&c, &jbuf, &jlen);
  c.image_width = 12, c.image_height = 8, c.input_components = 3, c.in_color_space = JCS_RGB;
  jpeg_set_defaults(&c);
  jpeg_start_compress(&c, TRUE);
  while (c.next_scanline < c.image_height) {
    JSAMPROW r = px + c.next_scanline * 12 * 3;
    jpeg_write_scanlines(&c, &r, 1);
  }
  jpeg_finish_compress(&c);
  jpeg_destroy_compress(&c);
  b = malloc(jlen + 1);
  b[0] = 0, memcpy(b + 1, jbuf, jlen);
  write_bytes("media", "picture.jpg", b, jlen + 1);
  free(b), free(jbuf);
  /* a WAV (our writer) and a FLAC (libsndfile) of a short chirp */
  float wave[800];
  for (int i = 0; i < 800; i++) wave[i] = 0.5f * sinf(0.05f * (float)i + 0.0001f * (float)i * (float)i);
  const char *names[2] = {"sound.wav", "sound.flac"};
  for (int k = 0; k < 2; k++) {
    bool ok = false;
    if (k == 0) {
      ok = e2e_wav_write(file, wave, 800, 8000);
    } else {
      SF_INFO info = {.samplerate = 8000, .channels = 1, .format = SF_FORMAT_FLAC | SF_FORMAT_PCM_16};
      SNDFILE *f = sf_open(file, SFM_WRITE, &info);
      ok = f && sf_writef_float(f, wave, 800) == 800;
      if (f) sf_close(f);
    }
    if (!ok || !g_file_get_contents(file, &data, &n, NULL)) exit(1);
    b = malloc(n + 1);
    b[0] = 1, memcpy(b + 1, data, n);
    write_bytes("media", names[k], b, n + 1);
    free(b), g_free(data);
  }
  g_unlink(file), g_rmdir(tmp);
  g_free(file), g_free(tmp);
}

int main(int argc, char **argv) {
  if (argc != 2) {
    fprintf(stderr, "usage: %s CORPUS-DIR\n", argv[0]);
    return 2;
  }
  root = argv[1];
  checkpoints();
  models();
  codec_streams();
  labels();
  tfjs();
  onnx();
  asr_text();
  media();
  printf("seeds written under %s\n", root);
  return 0;
}
