/* The codec model: configuration, entropy tables, layers and the transforms that coding and training
 * share (see internal.h for the other files). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"
#include "task.h"

#define TAIL_SIGMAS 6.0 /* table half-width in scales: mass outside is ~2e-9, sent as escapes */

/* Spaced by about 3x (the top one 4x) so that the shipped model's five levels reach past both ends of
 * 0.25..1.0 bpp on Kodak (the range the comparison with JPEG is made over). */
static const float DEFAULT_LAMBDA[CODEC_MAX_QUALITY] = {0.0015f, 0.0046f, 0.014f, 0.0427f, 0.18f};

float codec_lambda(const codec_config *cfg, int q) {
  return cfg->lambda[(q < 1 ? 1 : q > CODEC_MAX_QUALITY ? CODEC_MAX_QUALITY : q) - 1];
}

/* m 192: a linear code with 96 latents per 16x16 RGB block stops near 30 dB on BSDS500; 192 near 36.5 */
bool codec_quality_valid(int q) {
  if (q >= CODEC_MIN_QUALITY && q <= CODEC_MAX_QUALITY) return true;
  nn_set_error("e2ecodec: quality %d out of %d..%d", q, CODEC_MIN_QUALITY, CODEC_MAX_QUALITY);
  return false;
}

codec_config codec_config_default(void) {
  codec_config c = {.n = 64, .m = 192, .mean_scale = true};
  memcpy(c.lambda, DEFAULT_LAMBDA, sizeof c.lambda);
  return c;
}

bool codec_lambdas_valid(const float *lambda) {
  for (int q = 0; q < CODEC_MAX_QUALITY; q++)
    if (!(lambda[q] > 0 && lambda[q] < 1e3f) || (q && !(lambda[q] > lambda[q - 1]))) {
      nn_set_error("codec lambdas must be positive and strictly rising (level %d: %g)", q + 1, (double)lambda[q]);
      return false;
    }
  return true;
}

bool codec_config_valid(const codec_config *c) {
  if (c->n < 8 || c->n > 512 || c->m < 8 || c->m > 1024 || c->context < 0 || c->context > 512) {
    nn_set_error("codec config out of range (n %d, m %d, context %d)", c->n, c->m, c->context);
    return false;
  }
  if (c->context && !c->mean_scale) {
    nn_set_error("codec: the context model corrects predicted means: it needs a mean-scale model");
    return false;
  }
  if (c->anchor_context < 0 || c->anchor_context > 512 || (c->anchor_context && !c->context)) {
    nn_set_error("codec: anchor context %d out of range (0..512, and only with a context model)", c->anchor_context);
    return false;
  }
  return codec_lambdas_valid(c->lambda);
}

/* ------------------------------------------------------------ CDF tables */

static double phi(double t) { return 0.5 * erfc(-t * 0.70710678118654752440); }

static bool tables_build(codec_tables *t) {
  double lo = log(CODEC_SCALE_MIN), hi = log(256.0);
  t->max_len = 0;
  for (int i = 0; i < CODEC_NUM_SCALES; i++) {
    t->scales[i] = (float)exp(lo + (hi - lo) * i / (CODEC_NUM_SCALES - 1));
    int tail = (int)ceil(t->scales[i] * TAIL_SIGMAS);
    t->offset[i] = tail;
    t->len[i] = 2 * tail + 2; /* values -tail..tail, then the escape */
    if (t->len[i] > t->max_len) t->max_len = t->len[i];
  }
  t->cdf = calloc((size_t)CODEC_NUM_SCALES * (size_t)(t->max_len + 1), sizeof(int32_t));
  double *pmf = malloc(sizeof(double) * (size_t)t->max_len);
  if (!t->cdf || !pmf) {
    free(pmf);
    nn_set_error("codec: out of memory for CDF tables");
    return false;
  }
  for (int i = 0; i < CODEC_NUM_SCALES; i++) {
    double s = t->scales[i];
    int tail = t->offset[i], n = t->len[i];
    for (int k = -tail; k <= tail; k++) pmf[k + tail] = phi((k + 0.5) / s) - phi((k - 0.5) / s);
    pmf[n - 1] = 2 * phi((-tail - 0.5) / s);
    int32_t *cdf = t->cdf + (size_t)i * (size_t)(t->max_len + 1);
    if (!rans_cdf_from_pmf(pmf, n, cdf)) {
      free(pmf);
      nn_set_error("codec: could not quantise CDF table %d", i);
      return false;
    }
    for (int k = n + 1; k <= t->max_len; k++) cdf[k] = (int32_t)RANS_TOTAL;
  }
  free(pmf);
  return true;
}

int codec_scale_index(const codec_tables *t, float s) {
  /* first quantised scale >= s (never under-estimates the spread), else the last; the table is
   * strictly increasing (checked on load), so a binary search finds the same index as a scan */
  int lo = 0, hi = CODEC_NUM_SCALES - 1;
  while (lo < hi) {
    int mid = (lo + hi) / 2;
    if (t->scales[mid] < s) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

/* ------------------------------------------------------------ the model */

/* A context network of k channels (see codec_model): a 5x5 conv over the decoded latents, a 1x1 spread of the
 * scale index, and 1x1 heads for the mean and scale corrections, which start at zero so that the model codes
 * as it did without it. Of the 5x5 taps only those on decoded positions are kept (the others only ever see
 * zeros, and the file says what the decoder computes): the other checkerboard colour, or, for the
 * anchors' context, the four diagonal neighbours. */
static bool add_context_layers(codec_model *c, const char *prefix, int k, nn_conv2d_layer *conv, nn_conv2d_layer *spread,
                               nn_conv2d_layer *mean, nn_conv2d_layer *scale, bool diagonal_only, nn_rng *rng) {
  int m = c->cfg.m;
  char name[4][48];
  const char *leaf[4] = {"0", "spread", "mean", "scale"};
  for (int i = 0; i < 4; i++) snprintf(name[i], sizeof name[i], "%s.%s", prefix, leaf[i]);
  if (!nn_conv2d_init(conv, &c->p, name[0], m, k, 5, 1, 2, 1, true, rng) ||
      !nn_conv2d_init(spread, &c->p, name[1], m, k, 1, 1, 0, 1, false, rng) ||
      !nn_conv2d_init(mean, &c->p, name[2], k, m, 1, 1, 0, 1, true, rng) ||
      !nn_conv2d_init(scale, &c->p, name[3], k, m, 1, 1, 0, 1, true, rng))
    return false;
  float *w = nn_f32(conv->weight);
  for (int64_t i = 0; i < (int64_t)k * m; i++)
    for (int t = 0; t < 25; t++) {
      int dy = t / 5, dx = t % 5;
      bool decoded = diagonal_only ? dy % 2 == 1 && dx % 2 == 1 : (dy + dx) % 2 == 1;
      if (!decoded) w[i * 25 + t] = 0;
    }
  nn_fill_(mean->weight, 0.0f), nn_fill_(mean->bias, 0.0f);
  nn_fill_(scale->weight, 0.0f), nn_fill_(scale->bias, 0.0f);
  return true;
}

static bool add_layers(codec_model *c, nn_rng *rng) {
  int n = c->cfg.n, m = c->cfg.m;
  bool ok = nn_conv2d_init(&c->ga[0], &c->p, "g_a.0", 3, n, 5, 2, 2, 1, true, rng) &&
            nn_gdn_init(&c->ga_gdn[0], &c->p, "g_a.gdn0", n, false) &&
            nn_conv2d_init(&c->ga[1], &c->p, "g_a.1", n, n, 5, 2, 2, 1, true, rng) &&
            nn_gdn_init(&c->ga_gdn[1], &c->p, "g_a.gdn1", n, false) &&
            nn_conv2d_init(&c->ga[2], &c->p, "g_a.2", n, n, 5, 2, 2, 1, true, rng) &&
            nn_gdn_init(&c->ga_gdn[2], &c->p, "g_a.gdn2", n, false) &&
            nn_conv2d_init(&c->ga[3], &c->p, "g_a.3", n, m, 5, 2, 2, 1, true, rng) &&
            nn_conv2d_init(&c->ha[0], &c->p, "h_a.0", m, n, 3, 1, 1, 1, true, rng) &&
            nn_conv2d_init(&c->ha[1], &c->p, "h_a.1", n, n, 5, 2, 2, 1, true, rng) &&
            nn_conv2d_init(&c->ha[2], &c->p, "h_a.2", n, n, 5, 2, 2, 1, true, rng) &&
            nn_conv_transpose2d_init(&c->hs[0], &c->p, "h_s.0", n, n, 5, 2, 2, 1, true, rng) &&
            nn_conv_transpose2d_init(&c->hs[1], &c->p, "h_s.1", n, n, 5, 2, 2, 1, true, rng) &&
            nn_conv2d_init(&c->hs_out, &c->p, "h_s.2", n, m, 3, 1, 1, 1, true, rng) &&
            (!c->cfg.mean_scale || nn_conv2d_init(&c->hs_mean, &c->p, "h_s.mean", n, m, 3, 1, 1, 1, true, rng)) &&
            nn_conv_transpose2d_init(&c->gs[0], &c->p, "g_s.0", m, n, 5, 2, 2, 1, true, rng) &&
            nn_gdn_init(&c->gs_igdn[0], &c->p, "g_s.igdn0", n, true) &&
            nn_conv_transpose2d_init(&c->gs[1], &c->p, "g_s.1", n, n, 5, 2, 2, 1, true, rng) &&
            nn_gdn_init(&c->gs_igdn[1], &c->p, "g_s.igdn1", n, true) &&
            nn_conv_transpose2d_init(&c->gs[2], &c->p, "g_s.2", n, n, 5, 2, 2, 1, true, rng) &&
            nn_gdn_init(&c->gs_igdn[2], &c->p, "g_s.igdn2", n, true) &&
            nn_conv_transpose2d_init(&c->gs[3], &c->p, "g_s.3", n, 3, 5, 2, 2, 1, true, rng);
  if (ok && c->cfg.context)
    ok = add_context_layers(c, "context", c->cfg.context, &c->ctx_conv, &c->ctx_spread, &c->ctx_mean, &c->ctx_scale,
                            false, rng);
  if (ok && c->cfg.anchor_context)
    ok = add_context_layers(c, "anchor_context", c->cfg.anchor_context, &c->actx_conv, &c->actx_spread, &c->actx_mean,
                            &c->actx_scale, true, rng);
  if (!ok) return false;
  nn_fill_(c->gs[3].bias, 0.45f); /* mean grey: training starts from a sensible image, not black */
  if (c->cfg.level_mod)
    for (int i = 0; i < 3; i++) {
      char na[32], ns[32];
      snprintf(na, sizeof na, "g_a.gdn%d.level_scale", i);
      snprintf(ns, sizeof ns, "g_s.igdn%d.level_scale", i);
      c->mod_a[i] = nn_params_add(&c->p, na, nn_tensor_new(NN_F32, 2, (int64_t[]){CODEC_MAX_QUALITY, n}), true);
      c->mod_s[i] = nn_params_add(&c->p, ns, nn_tensor_new(NN_F32, 2, (int64_t[]){CODEC_MAX_QUALITY, n}), true);
      if (!c->mod_a[i] || !c->mod_s[i]) return false;
      nn_fill_(c->mod_a[i], 1.0f); /* every level starts with the shared transforms */
      nn_fill_(c->mod_s[i], 1.0f);
    }
  nn_tensor *zs = nn_params_add(&c->p, "z.log_scale", nn_tensor_new(NN_F32, 1, (int64_t[]){n}), true);
  nn_tensor *zm = nn_params_add(&c->p, "z.mean", nn_tensor_new(NN_F32, 1, (int64_t[]){n}), true);
  if (!zs || !zm) return false;
  nn_fill_(zs, logf(4.0f));
  c->z_scale_raw = zs;
  int64_t gs[2] = {CODEC_MAX_QUALITY, m};
  c->gain_enc = nn_params_add(&c->p, "gain.enc", nn_tensor_new(NN_F32, 2, gs), true);
  c->gain_dec = nn_params_add(&c->p, "gain.dec", nn_tensor_new(NN_F32, 2, gs), true);
  if (!c->gain_enc || !c->gain_dec) return false;
  /* start from quantiser steps spaced by sqrt(2) per level; training refines them per channel */
  for (int q = 0; q < CODEC_MAX_QUALITY; q++)
    for (int k = 0; k < m; k++) {
      float g = powf(2.0f, 0.5f * (float)(q - CODEC_MAX_QUALITY / 2));
      nn_f32(c->gain_enc)[q * m + k] = g;
      nn_f32(c->gain_dec)[q * m + k] = 1.0f / g;
    }
  return true;
}

/* The tables ride along as buffers so that files carry the exact integers. */
static bool add_table_buffers(codec_model *c) {
  codec_tables *t = &c->tables;
  nn_tensor *sc = nn_params_add(&c->p, "entropy.scales", nn_tensor_new(NN_F32, 1, (int64_t[]){CODEC_NUM_SCALES}), false);
  nn_tensor *ln = nn_params_add(&c->p, "entropy.len", nn_tensor_new(NN_I32, 1, (int64_t[]){CODEC_NUM_SCALES}), false);
  nn_tensor *of = nn_params_add(&c->p, "entropy.offset", nn_tensor_new(NN_I32, 1, (int64_t[]){CODEC_NUM_SCALES}), false);
  nn_tensor *cd = nn_params_add(&c->p, "entropy.cdf",
                                nn_tensor_new(NN_I32, 2, (int64_t[]){CODEC_NUM_SCALES, t->max_len + 1}), false);
  if (!sc || !ln || !of || !cd) return false;
  memcpy(nn_data(sc), t->scales, sizeof t->scales);
  memcpy(nn_data(ln), t->len, sizeof t->len);
  memcpy(nn_data(of), t->offset, sizeof t->offset);
  memcpy(nn_data(cd), t->cdf, sizeof(int32_t) * CODEC_NUM_SCALES * (size_t)(t->max_len + 1));
  return true;
}

void codec_tables_from_buffers(codec_model *c) {
  codec_tables *t = &c->tables;
  memcpy(t->scales, nn_data(nn_params_find(&c->p, "entropy.scales")), sizeof t->scales);
  memcpy(t->len, nn_data(nn_params_find(&c->p, "entropy.len")), sizeof t->len);
  memcpy(t->offset, nn_data(nn_params_find(&c->p, "entropy.offset")), sizeof t->offset);
  memcpy(t->cdf, nn_data(nn_params_find(&c->p, "entropy.cdf")),
         sizeof(int32_t) * CODEC_NUM_SCALES * (size_t)(t->max_len + 1));
}

bool codec_init(codec_model *c, const codec_config *cfg, uint64_t seed) {
  memset(c, 0, sizeof *c);
  if (!codec_config_valid(cfg)) return false;
  c->cfg = *cfg;
  nn_params_init(&c->p);
  nn_rng rng;
  nn_rng_seed(&rng, seed);
  if (!add_layers(c, &rng) || !tables_build(&c->tables) || !add_table_buffers(c)) {
    codec_free(c);
    return false;
  }
  c->model_id = e2e_params_hash(&c->p);
  return true;
}

static void release_inference(codec_model *c) {
  for (size_t i = 0; i < sizeof c->enc_infer / sizeof c->enc_infer[0]; i++) nn_conv_infer_free(&c->enc_infer[i]);
  c->enc_infer_ready = false;
}

void codec_free(codec_model *c) {
  release_inference(c);
  nn_arena_free(c->scratch[0]), nn_arena_free(c->scratch[1]);
  nn_params_free(&c->p);
  free(c->tables.cdf);
  memset(c, 0, sizeof *c);
}

bool codec_prepare_inference(codec_model *c) {
  release_inference(c);
  bool ok = true;
  for (int i = 0; i < 4 && ok; i++) ok = nn_conv_infer_init(&c->enc_infer[i], &c->ga[i], NULL, false);
  for (int i = 0; i < 3 && ok; i++) ok = nn_conv_infer_init(&c->enc_infer[4 + i], &c->ha[i], NULL, i < 2);
  if (!ok) release_inference(c);
  c->enc_infer_ready = ok;
  return ok;
}

nn_tensor *codec_gains_for(nn_tensor *table, const int *quality, int64_t n) {
  nn_tensor *idx = nn_empty(NN_I64, 1, &n);
  if (!idx) return NULL;
  for (int64_t i = 0; i < n; i++) ((int64_t *)nn_data(idx))[i] = quality[i] - 1;
  return nn_reshape(nn_index_select(table, 0, idx), 4, (int64_t[]){n, table->shape[1], 1, 1});
}

/* x scaled in place by table's row for each position's level in a block map (coding one picture, no
 * gradient): the map's blocks cover x's plane evenly, at any of the transforms' resolutions. */
static nn_tensor *scaled_by_map(nn_tensor *table, nn_tensor *x, const codec_levels *lv) {
  if (nn_grad_enabled() || !nn_is_contiguous(x) || x->dtype != NN_F32 || x->shape[0] != 1 || x->shape[2] % lv->map_h ||
      x->shape[3] % lv->map_w) {
    nn_set_error("e2ecodec: a level map needs one picture coded without a gradient, its blocks covering the plane");
    return NULL;
  }
  int64_t ch = x->shape[1], h = x->shape[2], w = x->shape[3];
  float *d = nn_f32(x);
  const float *t = nn_f32(table);
  for (int64_t k = 0; k < ch; k++)
    for (int64_t yy = 0; yy < h; yy++) {
      const uint8_t *levels = lv->map + yy * lv->map_h / h * lv->map_w;
      float *row = d + (k * h + yy) * w;
      for (int64_t xx = 0; xx < w; xx++) row[xx] *= t[(levels[xx * lv->map_w / w] - 1) * ch + k];
    }
  return x;
}

/* A (inverse) GDN's input through its per-level scales, when the model has them. x is always a layer's
 * fresh output: without a gradient to keep, it is scaled in place (the same products nn_mul would make)
 * instead of taking a second copy of the largest tensors a picture has. */
static nn_tensor *modulated(nn_tensor *table, nn_tensor *x, const codec_levels *lv) {
  if (!table || !x) return x;
  if (lv->map) return scaled_by_map(table, x, lv);
  const int *quality = lv->quality;
  if (nn_grad_enabled() || !nn_is_contiguous(x) || x->dtype != NN_F32)
    return nn_mul(x, codec_gains_for(table, quality, x->shape[0]));
  int64_t nb = x->shape[0], ch = x->shape[1], plane = x->shape[2] * x->shape[3];
  float *d = nn_f32(x);
  for (int64_t b = 0; b < nb; b++)
    for (int64_t k = 0; k < ch; k++) {
      float g = nn_f32(table)[(quality[b] - 1) * ch + k];
      for (float *v = d + (b * ch + k) * plane, *end = v + plane; v < end; v++) *v *= g;
    }
  return x;
}

nn_tensor *codec_gains_at(nn_tensor *table, nn_tensor *y, const codec_levels *lv) {
  if (!y || !lv->map) return nn_mul(y, codec_gains_for(table, lv->quality, y ? y->shape[0] : 1));
  nn_tensor *out = nn_contiguous(y);
  if (out == y) out = nn_mul_scalar(y, 1.0f); /* a copy: y may be the caller's */
  return out ? scaled_by_map(table, out, lv) : NULL;
}

/* A (inverse) GDN; without a gradient, over its input (a layer's fresh output, like modulated's). */
static nn_tensor *gdn(const nn_gdn_layer *l, nn_tensor *x) {
  return nn_grad_enabled() ? nn_gdn_forward(l, x) : nn_gdn_forward_(l, x);
}

/* Layer i (0..3) of the analysis; copies: through the packed snapshots of codec_prepare_inference
 * (coding only, never training). */
static nn_tensor *analysis_layer(codec_model *c, int i, nn_tensor *x, const codec_levels *lv, bool copies) {
  nn_tensor *t = copies ? nn_conv_infer_forward(&c->enc_infer[i], x) : nn_conv2d_forward(&c->ga[i], x);
  return i < 3 ? gdn(&c->ga_gdn[i], modulated(c->mod_a[i], t, lv)) : t;
}

static nn_tensor *synthesis_layer(codec_model *c, int i, nn_tensor *y, const codec_levels *lv, bool copies) {
  (void)copies;
  nn_tensor *t = nn_conv_transpose2d_forward(&c->gs[i], y);
  return i < 3 ? gdn(&c->gs_igdn[i], modulated(c->mod_s[i], t, lv)) : t;
}

typedef nn_tensor *(*layer_fn)(codec_model *c, int i, nn_tensor *x, const codec_levels *lv, bool copies);

/* The four layers of a transform. Without a gradient (coding), each layer computes in one of the model's
 * two scratch arenas, and the other, holding its input and the last layer's temporaries, is emptied once
 * it is done: a picture then needs the memory of its largest layer instead of all of its layers' at once.
 * The result lands in the caller's arena. With a gradient (training, the latent search) every
 * intermediate must stay for the backward pass, and the layers run in the current arena; so do they in a
 * second thread coding with the same model while the first holds the scratch arenas. */
static nn_tensor *run_layers(codec_model *c, layer_fn layer, nn_tensor *x, const codec_levels *lv, bool copies) {
  bool staged = !nn_grad_enabled() && !atomic_flag_test_and_set(&c->scratch_busy);
  for (int k = 0; k < 2 && staged; k++)
    if (!c->scratch[k]) c->scratch[k] = nn_arena_new(0);
  if (!staged || !c->scratch[0] || !c->scratch[1]) {
    if (staged) atomic_flag_clear(&c->scratch_busy);
    for (int i = 0; i < 4; i++) x = layer(c, i, x, lv, copies);
    return x;
  }
  nn_arena *home = nn_arena_current();
  for (int i = 0; i < 4 && x; i++) {
    nn_arena_set_current(i == 3 ? home : c->scratch[i % 2]);
    nn_tensor *out = layer(c, i, x, lv, copies);
    if (i > 0) nn_arena_reset(c->scratch[(i - 1) % 2]); /* x and the last layer's temporaries */
    x = out;
  }
  nn_arena_set_current(home);
  nn_arena_reset(c->scratch[0]), nn_arena_reset(c->scratch[1]); /* after a failure, what it left */
  atomic_flag_clear(&c->scratch_busy);
  return x;
}

nn_arena *codec_scratch_borrow(codec_model *c) {
  if (atomic_flag_test_and_set(&c->scratch_busy)) return NULL;
  if (!c->scratch[0]) c->scratch[0] = nn_arena_new(0);
  if (!c->scratch[0]) {
    atomic_flag_clear(&c->scratch_busy);
    return NULL;
  }
  nn_arena *home = nn_arena_current();
  nn_arena_set_current(c->scratch[0]);
  return home;
}

void codec_scratch_return(codec_model *c, nn_arena *home) {
  if (!home) return;
  nn_arena_set_current(home);
  nn_arena_reset(c->scratch[0]);
  atomic_flag_clear(&c->scratch_busy);
}

nn_tensor *codec_analysis(codec_model *c, nn_tensor *x, const int *quality, bool copies) {
  return run_layers(c, analysis_layer, x, &(codec_levels){.quality = quality}, copies);
}

nn_tensor *codec_analysis_at(codec_model *c, nn_tensor *x, const codec_levels *lv, bool copies) {
  return run_layers(c, analysis_layer, x, lv, copies);
}

nn_tensor *codec_hyper_analysis(codec_model *c, nn_tensor *y, bool copies) {
  if (copies) {
    nn_tensor *h = nn_conv_infer_forward(&c->enc_infer[5], nn_conv_infer_forward(&c->enc_infer[4], nn_abs(y)));
    return nn_conv_infer_forward(&c->enc_infer[6], h);
  }
  nn_tensor *h = nn_relu(nn_conv2d_forward(&c->ha[0], nn_abs(y)));
  h = nn_relu(nn_conv2d_forward(&c->ha[1], h));
  return nn_conv2d_forward(&c->ha[2], h);
}

nn_tensor *codec_hyper_synthesis(codec_model *c, nn_tensor *z, nn_tensor **means) {
  nn_tensor *h = nn_relu(nn_conv_transpose2d_forward(&c->hs[0], z));
  h = nn_relu(nn_conv_transpose2d_forward(&c->hs[1], h));
  *means = c->cfg.mean_scale ? nn_conv2d_forward(&c->hs_mean, h) : NULL;
  return nn_relu(nn_conv2d_forward(&c->hs_out, h));
}

nn_tensor *codec_synthesis_levels(codec_model *c, nn_tensor *y, const int *quality) {
  return run_layers(c, synthesis_layer, y, &(codec_levels){.quality = quality}, false);
}

nn_tensor *codec_synthesis_at(codec_model *c, nn_tensor *y, const codec_levels *lv) {
  return run_layers(c, synthesis_layer, y, lv, false);
}

nn_tensor *codec_synthesis(codec_model *c, nn_tensor *y, int quality) {
  if (!y || y->ndim != 4 || y->shape[0] != 1 || y->shape[1] != c->cfg.m || quality < 1 || quality > CODEC_MAX_QUALITY) {
    nn_set_error("codec_synthesis: need y[1,%d,h,w] and a quality in 1..%d", c->cfg.m, CODEC_MAX_QUALITY);
    return NULL;
  }
  return codec_synthesis_levels(c, y, &quality);
}

nn_tensor *codec_rounding_offset(nn_tensor *v) {
  nn_tensor *vc = nn_contiguous(nn_detach(v));
  nn_tensor *r = vc ? nn_empty(NN_F32, vc->ndim, vc->shape) : NULL;
  if (!r) return NULL;
  const float *s = nn_f32(vc);
  float *d = nn_f32(r);
  for (int64_t i = 0, n = nn_numel(r); i < n; i++) d[i] = nearbyintf(s[i]) - s[i];
  return r;
}

/* [1, 1, h, w]: 1 on the anchors ((y + x) even) or, with odd, on the other half */
static nn_tensor *checkerboard(int64_t h, int64_t w, bool odd) {
  nn_tensor *t = nn_empty(NN_F32, 4, (int64_t[]){1, 1, h, w});
  if (!t) return NULL;
  for (int64_t i = 0; i < h * w; i++) nn_f32(t)[i] = (float)(((i / w + i % w) % 2 == 1) == odd);
  return t;
}

/* Each latent's quantised scale as the decoder picks it, as a fraction of the table (a constant input). */
static nn_tensor *spread_feature(const codec_model *c, nn_tensor *scales) {
  nn_tensor *s = nn_contiguous(nn_detach(scales));
  nn_tensor *f = s ? nn_empty(NN_F32, s->ndim, s->shape) : NULL;
  if (!f) return NULL;
  for (int64_t i = 0, n = nn_numel(f); i < n; i++)
    nn_f32(f)[i] = (float)codec_scale_index(&c->tables, nn_f32(s)[i]) * (1.0f / (CODEC_NUM_SCALES - 1));
  return f;
}

/* The corrections a context network makes where `where` is 1: e = relu(conv(u) + spread(scale index / 63)),
 * mean += s * mean_head(e), scale = s * (1 + scale_head(e)), with s = max(scale, CODEC_SCALE_MIN). */
static void context_correct(const nn_conv2d_layer *conv, const nn_conv2d_layer *spread, const nn_conv2d_layer *mean_head,
                            const nn_conv2d_layer *scale_head, const codec_model *c, nn_tensor *u, nn_tensor *where,
                            nn_tensor **means, nn_tensor **scales) {
  nn_tensor *s = nn_lower_bound(*scales, CODEC_SCALE_MIN);
  nn_tensor *e = nn_relu(nn_add(nn_conv2d_forward(conv, u), nn_conv2d_forward(spread, spread_feature(c, *scales))));
  *means = nn_add(*means, nn_mul(nn_mul(nn_conv2d_forward(mean_head, e), s), where));
  *scales = nn_add(*scales, nn_mul(nn_sub(nn_mul(s, nn_add_scalar(nn_conv2d_forward(scale_head, e), 1.0f)), *scales), where));
}

/* [1, 1, h, w]: 1 on the anchors of odd (or even) rows */
static nn_tensor *anchor_rows(int64_t h, int64_t w, bool odd) {
  nn_tensor *t = nn_empty(NN_F32, 4, (int64_t[]){1, 1, h, w});
  if (!t) return NULL;
  for (int64_t i = 0; i < h * w; i++) nn_f32(t)[i] = (float)((i / w + i % w) % 2 == 0 && i / w % 2 == odd);
  return t;
}

/* With a context model, the means and scales of the second half corrected from the anchors as the decoder
 * will have them (straight through: the coded integer, plus what the anchors' context moved the mean by),
 * each in units of its own hyperprior scale s = max(scale, CODEC_SCALE_MIN): the same network then
 * serves every level, whose latents differ in size by 100x. With an anchors' context, the anchors on odd
 * rows are corrected first, the same way, from those on even rows. Without a context model, means and
 * scales stay as they are. */
void codec_context_params(codec_model *c, nn_tensor *y, nn_tensor **means, nn_tensor **scales) {
  if (!c->cfg.context || !y || !*means || !*scales) return;
  nn_tensor *mh = *means, *sh = *scales, *s = nn_lower_bound(sh, CODEC_SCALE_MIN);
  int64_t h = y->shape[2], w = y->shape[3];
  nn_tensor *m_a = mh, *s_a = sh; /* the anchors' final means and scales */
  if (c->cfg.anchor_context) {
    nn_tensor *r0 = nn_sub(y, mh);
    nn_tensor *u = nn_mul(nn_div(nn_add(r0, codec_rounding_offset(r0)), s), anchor_rows(h, w, false));
    context_correct(&c->actx_conv, &c->actx_spread, &c->actx_mean, &c->actx_scale, c, u, anchor_rows(h, w, true), &m_a, &s_a);
  }
  nn_tensor *r = nn_sub(y, m_a);
  nn_tensor *v = nn_add(r, codec_rounding_offset(r));
  nn_tensor *u = nn_mul(nn_div(c->cfg.anchor_context ? nn_add(v, nn_sub(m_a, mh)) : v, s), checkerboard(h, w, false));
  /* the second half's corrections read the hyperprior's scales (m_a and s_a equal mh and sh there) */
  context_correct(&c->ctx_conv, &c->ctx_spread, &c->ctx_mean, &c->ctx_scale, c, u, checkerboard(h, w, true), &m_a, &s_a);
  *means = m_a, *scales = s_a;
}
