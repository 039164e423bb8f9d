/* The codec as a task model (e2e/model.h): open, copy, train, evaluate, and coding in a session. */
#include <stdlib.h>
#include <string.h>

#include "e2e/image.h"
#include "internal.h"
#include "task.h"

static codec_model *impl_new(void) {
  codec_model *c = calloc(1, sizeof *c);
  if (!c) nn_set_error("out of memory for a codec model");
  return c;
}

static void destroy(void *impl) {
  codec_free(impl);
  free(impl);
}

static void *load(const nn_st_file *f, const char *path) {
  codec_model *c = impl_new();
  if (c && codec_load_file(c, f, path) && codec_prepare_inference(c)) return c;
  if (c) destroy(c);
  return NULL;
}

static void *copy(const void *impl, bool training) {
  const codec_model *src = impl;
  codec_model *c = impl_new();
  if (!c || !codec_init(c, &src->cfg, 0)) {
    free(c);
    return NULL;
  }
  e2e_params_copy(&c->p, &src->p);
  codec_tables_from_buffers(c);
  c->model_id = e2e_params_hash(&c->p);
  if (!training && !codec_prepare_inference(c)) {
    destroy(c);
    return NULL;
  }
  return c;
}

static nn_params *params(void *impl) { return &((codec_model *)impl)->p; }

static void describe(void *impl, e2e_model_info *info) { info->id = ((codec_model *)impl)->model_id; }

static bool save(void *impl, const char *path, const nn_kv *meta, int n_meta) { return codec_save(impl, path, meta, n_meta); }

/* A grey picture through the encoder fills the session's arena at the size that will be coded. */
static bool warm_up(void *impl, int w, int h) {
  if (w < 1 || h < 1) return true;
  uint8_t *grey = malloc((size_t)w * h * 3), *stream = NULL;
  size_t len = 0;
  bool ok = grey && (memset(grey, 128, (size_t)w * h * 3), codec_compress(impl, NULL, CODEC_DEFAULT_QUALITY, grey, w, h,
                                                                          w * 3, &stream, &len, NULL));
  free(grey);
  free(stream);
  return ok;
}

static bool batch_valid(const e2e_batch *b) {
  const nn_tensor *x = b->images;
  if (x->ndim != 4 || x->shape[0] != b->n || x->shape[1] != 3 || !b->quality) {
    nn_set_error("codec batch: need images [%d, 3, H, W] and a quality per patch", b->n);
    return false;
  }
  for (int i = 0; i < b->n; i++)
    if (!codec_quality_valid(b->quality[i])) return false;
  return true;
}

static nn_tensor *loss(void *impl, const e2e_batch *b, nn_rng *rng, e2e_metric *out) {
  if (!batch_valid(b)) return NULL;
  codec_stats st;
  nn_tensor *l = codec_train_forward(impl, b->images, b->quality, rng, &st);
  if (l) *out = (e2e_metric){.name = "rd-loss", .value = st.loss, .n_parts = 3, .part_names = {"bpp", "bpp-z", "psnr"},
                              .parts = {st.bpp, st.bpp_z, st.psnr}};
  return l;
}

/* Real streams: each patch coded at its level, its bits and its decoded picture measured. */
static bool evaluate(void *impl, const e2e_batch *b, e2e_metric *out) {
  codec_model *c = impl;
  if (!batch_valid(b)) return false;
  nn_tensor *x = nn_contiguous(b->images);
  int h = (int)b->images->shape[2], w = (int)b->images->shape[3];
  size_t px = (size_t)w * h;
  uint8_t *rgb = malloc(px * 3), *rec = malloc(px * 3);
  bool ok = x && rgb && rec;
  double rd = 0, bpp = 0, psnr = 0;
  for (int i = 0; i < b->n && ok; i++) {
    const float *src = nn_f32(x) + (size_t)i * 3 * px;
    for (size_t k = 0; k < px; k++)
      for (int ch = 0; ch < 3; ch++) {
        float v = src[ch * px + k] * 255.0f + 0.5f;
        rgb[k * 3 + ch] = (uint8_t)(v < 0 ? 0 : v > 255 ? 255 : v);
      }
    uint8_t *stream = NULL;
    size_t len = 0;
    ok = codec_compress(c, NULL, b->quality[i], rgb, w, h, w * 3, &stream, &len, rec);
    free(stream);
    double mse = 0;
    for (size_t k = 0; ok && k < px * 3; k++) mse += ((double)rgb[k] - rec[k]) * ((double)rgb[k] - rec[k]) / (double)(px * 3);
    double bits = 8.0 * (double)len / (double)px;
    rd += bits + codec_lambda(&c->cfg, b->quality[i]) * mse;
    bpp += bits;
    psnr += e2e_image_psnr(rgb, rec, px * 3);
  }
  free(rgb);
  free(rec);
  if (ok) *out = (e2e_metric){.name = "rd-loss", .value = rd / b->n, .n_parts = 2, .part_names = {"bpp", "psnr"},
                               .parts = {bpp / b->n, psnr / b->n}};
  return ok;
}

const e2e_task_ops e2e_codec_ops = {
    .task = E2E_TASK_CODEC, .architecture = CODEC_ARCH, .input_align = CODEC_STRIDE, .load = load, .copy = copy,
    .destroy = destroy, .params = params, .describe = describe, .save = save, .warm_up = warm_up, .loss = loss,
    .evaluate = evaluate};

e2e_model *e2e_codec_model_new(const codec_config *cfg, uint64_t seed) {
  codec_model *c = impl_new();
  if (!c || !codec_init(c, cfg, seed) || !codec_prepare_inference(c)) {
    if (c) destroy(c);
    return NULL;
  }
  return e2e_model_wrap(&e2e_codec_ops, c, NULL, "");
}

bool e2e_codec_encode(e2e_session *s, const codec_options *o, int quality, const uint8_t *rgb, int w, int h, int stride,
                      uint8_t **out, size_t *out_len, uint8_t *recon) {
  nn_scope scope;
  codec_model *c = e2e_session_enter(s, E2E_TASK_CODEC, &scope);
  bool ok = c && codec_compress(c, o, quality, rgb, w, h, stride, out, out_len, recon);
  if (c) e2e_session_leave(s, &scope);
  return ok;
}

bool e2e_codec_decode(e2e_session *s, const codec_options *o, const uint8_t *data, size_t len, uint8_t *rgb, int w, int h) {
  nn_scope scope;
  codec_model *c = e2e_session_enter(s, E2E_TASK_CODEC, &scope);
  bool ok = c && codec_decompress(c, o, data, len, rgb, w, h);
  if (c) e2e_session_leave(s, &scope);
  return ok;
}

bool e2e_codec_encode_video(e2e_session *s, const codec_options *o, int quality, bool key, const uint8_t *rgb, int w,
                            int h, int stride, codec_reference *ref, uint8_t **out, size_t *out_len, uint8_t *recon) {
  nn_scope scope;
  codec_model *c = e2e_session_enter(s, E2E_TASK_CODEC, &scope);
  bool ok = c && codec_compress_video(c, o, quality, key, rgb, w, h, stride, ref, out, out_len, recon);
  if (c) e2e_session_leave(s, &scope);
  return ok;
}

bool e2e_codec_decode_video(e2e_session *s, const codec_options *o, const uint8_t *data, size_t len, uint8_t *rgb,
                            int w, int h, codec_reference *ref) {
  nn_scope scope;
  codec_model *c = e2e_session_enter(s, E2E_TASK_CODEC, &scope);
  bool ok = c && codec_decompress_video(c, o, data, len, rgb, w, h, ref);
  if (c) e2e_session_leave(s, &scope);
  return ok;
}

bool e2e_codec_check_memory(e2e_session *s, const codec_options *o, int w, int h, bool encoding) {
  nn_scope scope;
  codec_model *c = e2e_session_enter(s, E2E_TASK_CODEC, &scope);
  bool ok = c && codec_check_memory(c, o, w, h, encoding);
  if (c) e2e_session_leave(s, &scope);
  return ok;
}
