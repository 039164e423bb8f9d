#include "e2e/codec.h"

#include <json-glib/json-glib.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "e2e/rans.h"

#define ARCH "e2e-hyperprior-v1"
#define TAIL_SIGMAS 6.0 /* table half-width in scales: mass outside is ~2e-9, sent as escapes */

/* Spaced by about 3x (the top one 4x) so that the shipped model's five levels reach past both ends of
 * 0.25..1.0 bpp on Kodak (the range the comparison with JPEG is made over); the top one rose from 0.13
 * when the mean head brought that level's rate down to 1.0 bpp. Files made before lambdas were stored
 * used CompressAI's bmshj2018 qualities 2..6, LEGACY_LAMBDA. */
static const float DEFAULT_LAMBDA[CODEC_MAX_QUALITY] = {0.0015f, 0.0046f, 0.014f, 0.0427f, 0.18f};
static const float LEGACY_LAMBDA[CODEC_MAX_QUALITY] = {0.0035f, 0.0067f, 0.0130f, 0.0250f, 0.0483f};

float codec_lambda(const codec_config *cfg, int q) {
  return cfg->lambda[(q < 1 ? 1 : q > CODEC_MAX_QUALITY ? CODEC_MAX_QUALITY : q) - 1];
}

/* m 192: a linear code with 96 latents per 16x16 RGB block stops near 30 dB on BSDS500; 192 near 36.5 */
codec_config codec_config_default(void) {
  codec_config c = {.n = 64, .m = 192, .mean_scale = true};
  memcpy(c.lambda, DEFAULT_LAMBDA, sizeof c.lambda);
  return c;
}

static bool lambdas_valid(const float *lambda) {
  for (int q = 0; q < CODEC_MAX_QUALITY; q++)
    if (!(lambda[q] > 0 && lambda[q] < 1e3f) || (q && !(lambda[q] > lambda[q - 1]))) {
      nn_set_error("codec lambdas must be positive and strictly rising (level %d: %g)", q + 1, (double)lambda[q]);
      return false;
    }
  return true;
}

static bool config_valid(const codec_config *c) {
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
  return lambdas_valid(c->lambda);
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

/* Tables from a file are checked as hostile input: the coder relies on them. */
static bool tables_valid(const codec_tables *t, const char *path) {
  for (int i = 0; i < CODEC_NUM_SCALES; i++) {
    if (!(t->scales[i] >= CODEC_SCALE_MIN * 0.999f && t->scales[i] < 1e4f) ||
        (i && !(t->scales[i] > t->scales[i - 1])) || t->len[i] < 2 || t->len[i] > t->max_len ||
        t->offset[i] < 0 || t->offset[i] > t->len[i] - 2) {
      nn_set_error("%s: entropy table %d is malformed", path, i);
      return false;
    }
    const int32_t *cdf = t->cdf + (size_t)i * (size_t)(t->max_len + 1);
    if (cdf[0] != 0 || cdf[t->len[i]] != (int32_t)RANS_TOTAL) {
      nn_set_error("%s: entropy table %d does not span [0, 2^16]", path, i);
      return false;
    }
    for (int k = 0; k < t->len[i]; k++)
      if (cdf[k + 1] <= cdf[k]) {
        nn_set_error("%s: entropy table %d has a zero-probability symbol at %d", path, i, k);
        return false;
      }
  }
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
  if (ok && c->cfg.context) {
    int k = c->cfg.context;
    ok = nn_conv2d_init(&c->ctx_conv, &c->p, "context.0", m, k, 5, 1, 2, 1, true, rng) &&
         nn_conv2d_init(&c->ctx_spread, &c->p, "context.spread", m, k, 1, 1, 0, 1, false, rng) &&
         nn_conv2d_init(&c->ctx_mean, &c->p, "context.mean", k, m, 1, 1, 0, 1, true, rng) &&
         nn_conv2d_init(&c->ctx_scale, &c->p, "context.scale", k, m, 1, 1, 0, 1, true, rng);
    if (ok) {
      /* the taps on a position's own colour only ever see zeros (the other half is not decoded yet):
       * zero them so the file says what the decoder computes */
      float *w = nn_f32(c->ctx_conv.weight);
      for (int64_t i = 0; i < (int64_t)k * m; i++)
        for (int t = 0; t < 25; t++)
          if ((t / 5 + t % 5) % 2 == 0) w[i * 25 + t] = 0;
      /* corrections start at zero: the model codes as the hyperprior alone would */
      nn_fill_(c->ctx_mean.weight, 0.0f), nn_fill_(c->ctx_mean.bias, 0.0f);
      nn_fill_(c->ctx_scale.weight, 0.0f), nn_fill_(c->ctx_scale.bias, 0.0f);
    }
  }
  if (ok && c->cfg.anchor_context) {
    int k = c->cfg.anchor_context;
    ok = nn_conv2d_init(&c->actx_conv, &c->p, "anchor_context.0", m, k, 5, 1, 2, 1, true, rng) &&
         nn_conv2d_init(&c->actx_spread, &c->p, "anchor_context.spread", m, k, 1, 1, 0, 1, false, rng) &&
         nn_conv2d_init(&c->actx_mean, &c->p, "anchor_context.mean", k, m, 1, 1, 0, 1, true, rng) &&
         nn_conv2d_init(&c->actx_scale, &c->p, "anchor_context.scale", k, m, 1, 1, 0, 1, true, rng);
    if (ok) { /* only the diagonal neighbours (odd dy and dx) are anchors on even rows; the corrections start at zero */
      float *w = nn_f32(c->actx_conv.weight);
      for (int64_t i = 0; i < (int64_t)k * m; i++)
        for (int t = 0; t < 25; t++)
          if (t / 5 % 2 == 0 || t % 5 % 2 == 0) w[i * 25 + t] = 0;
      nn_fill_(c->actx_mean.weight, 0.0f), nn_fill_(c->actx_mean.bias, 0.0f);
      nn_fill_(c->actx_scale.weight, 0.0f), nn_fill_(c->actx_scale.bias, 0.0f);
    }
  }
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

/* Points the table struct at the (possibly just loaded) buffers. */
static void tables_from_buffers(codec_model *c) {
  codec_tables *t = &c->tables;
  memcpy(t->scales, nn_data(nn_params_find(&c->p, "entropy.scales")), sizeof t->scales);
  memcpy(t->len, nn_data(nn_params_find(&c->p, "entropy.len")), sizeof t->len);
  memcpy(t->offset, nn_data(nn_params_find(&c->p, "entropy.offset")), sizeof t->offset);
  memcpy(t->cdf, nn_data(nn_params_find(&c->p, "entropy.cdf")),
         sizeof(int32_t) * CODEC_NUM_SCALES * (size_t)(t->max_len + 1));
}

static uint32_t weights_hash(const nn_params *p) {
  uint32_t h = 2166136261u; /* FNV-1a over names and bytes, in list order */
  for (int i = 0; i < p->n; i++) {
    for (const char *s = p->names[i]; *s; s++) h = (h ^ (uint8_t)*s) * 16777619u;
    const uint8_t *b = nn_data(p->t[i]);
    size_t nb = (size_t)nn_numel(p->t[i]) * nn_dtype_size(p->t[i]->dtype);
    for (size_t k = 0; k < nb; k++) h = (h ^ b[k]) * 16777619u;
  }
  return h;
}

bool codec_init(codec_model *c, const codec_config *cfg, uint64_t seed) {
  memset(c, 0, sizeof *c);
  if (!config_valid(cfg)) return false;
  c->cfg = *cfg;
  nn_params_init(&c->p);
  nn_rng rng;
  nn_rng_seed(&rng, seed);
  if (!add_layers(c, &rng) || !tables_build(&c->tables) || !add_table_buffers(c)) {
    codec_free(c);
    return false;
  }
  c->model_id = weights_hash(&c->p);
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

/* Rows of a [levels, channels] table for each patch, as [N, channels, 1, 1]. */
static nn_tensor *gains_for(nn_tensor *table, const int *quality, int64_t n) {
  nn_tensor *idx = nn_empty(NN_I64, 1, &n);
  if (!idx) return NULL;
  for (int64_t i = 0; i < n; i++) ((int64_t *)nn_data(idx))[i] = quality[i] - 1;
  return nn_reshape(nn_index_select(table, 0, idx), 4, (int64_t[]){n, table->shape[1], 1, 1});
}

/* A (inverse) GDN's input through its per-level scales, when the model has them. x is always a layer's
 * fresh output: without a gradient to keep, it is scaled in place (the same products nn_mul would make)
 * instead of taking a second copy of the largest tensors a picture has. */
static nn_tensor *modulated(nn_tensor *table, nn_tensor *x, const int *quality) {
  if (!table || !x) return x;
  if (nn_grad_enabled() || !nn_is_contiguous(x) || x->dtype != NN_F32)
    return nn_mul(x, gains_for(table, quality, x->shape[0]));
  int64_t nb = x->shape[0], ch = x->shape[1], plane = x->shape[2] * x->shape[3];
  float *d = nn_f32(x);
  for (int64_t b = 0; b < nb; b++)
    for (int64_t k = 0; k < ch; k++) {
      float g = nn_f32(table)[(quality[b] - 1) * ch + k];
      for (float *v = d + (b * ch + k) * plane, *end = v + plane; v < end; v++) *v *= g;
    }
  return x;
}

/* A (inverse) GDN; without a gradient, over its input (a layer's fresh output, like modulated's). */
static nn_tensor *gdn(const nn_gdn_layer *l, nn_tensor *x) {
  return nn_grad_enabled() ? nn_gdn_forward(l, x) : nn_gdn_forward_(l, x);
}

/* Layer i (0..3) of the analysis; copies: through the packed snapshots of codec_prepare_inference
 * (coding only, never training). */
static nn_tensor *analysis_layer(codec_model *c, int i, nn_tensor *x, const int *quality, bool copies) {
  nn_tensor *t = copies ? nn_conv_infer_forward(&c->enc_infer[i], x) : nn_conv2d_forward(&c->ga[i], x);
  return i < 3 ? gdn(&c->ga_gdn[i], modulated(c->mod_a[i], t, quality)) : t;
}

static nn_tensor *synthesis_layer(codec_model *c, int i, nn_tensor *y, const int *quality, bool copies) {
  (void)copies;
  nn_tensor *t = nn_conv_transpose2d_forward(&c->gs[i], y);
  return i < 3 ? gdn(&c->gs_igdn[i], modulated(c->mod_s[i], t, quality)) : t;
}

typedef nn_tensor *(*layer_fn)(codec_model *c, int i, nn_tensor *x, const int *quality, bool copies);

/* The four layers of a transform. Without a gradient (coding), each layer computes in one of the model's
 * two scratch arenas, and the other, holding its input and the last layer's temporaries, is emptied once
 * it is done: a picture then needs the memory of its largest layer instead of all of its layers' at once.
 * The result lands in the caller's arena. With a gradient (training, the latent search) every
 * intermediate must stay for the backward pass, and the layers run in the current arena; so do they in a
 * second thread coding with the same model while the first holds the scratch arenas. */
static nn_tensor *run_layers(codec_model *c, layer_fn layer, nn_tensor *x, const int *quality, bool copies) {
  bool staged = !nn_grad_enabled() && !atomic_flag_test_and_set(&c->scratch_busy);
  for (int k = 0; k < 2 && staged; k++)
    if (!c->scratch[k]) c->scratch[k] = nn_arena_new(0);
  if (!staged || !c->scratch[0] || !c->scratch[1]) {
    if (staged) atomic_flag_clear(&c->scratch_busy);
    for (int i = 0; i < 4; i++) x = layer(c, i, x, quality, copies);
    return x;
  }
  nn_arena *home = nn_arena_current();
  for (int i = 0; i < 4 && x; i++) {
    nn_arena_set_current(i == 3 ? home : c->scratch[i % 2]);
    nn_tensor *out = layer(c, i, x, quality, copies);
    if (i > 0) nn_arena_reset(c->scratch[(i - 1) % 2]); /* x and the last layer's temporaries */
    x = out;
  }
  nn_arena_set_current(home);
  nn_arena_reset(c->scratch[0]), nn_arena_reset(c->scratch[1]); /* after a failure, what it left */
  atomic_flag_clear(&c->scratch_busy);
  return x;
}

static nn_tensor *analysis(codec_model *c, nn_tensor *x, const int *quality, bool copies) {
  return run_layers(c, analysis_layer, x, quality, copies);
}

static nn_tensor *hyper_analysis(codec_model *c, nn_tensor *y, bool copies) {
  if (copies) {
    nn_tensor *h = nn_conv_infer_forward(&c->enc_infer[5], nn_conv_infer_forward(&c->enc_infer[4], nn_abs(y)));
    return nn_conv_infer_forward(&c->enc_infer[6], h);
  }
  nn_tensor *h = nn_relu(nn_conv2d_forward(&c->ha[0], nn_abs(y)));
  h = nn_relu(nn_conv2d_forward(&c->ha[1], h));
  return nn_conv2d_forward(&c->ha[2], h);
}

/* z -> scales of y, and their means when the model has a mean head (else *means = NULL) */
static nn_tensor *hyper_synthesis(codec_model *c, nn_tensor *z, nn_tensor **means) {
  nn_tensor *h = nn_relu(nn_conv_transpose2d_forward(&c->hs[0], z));
  h = nn_relu(nn_conv_transpose2d_forward(&c->hs[1], h));
  *means = c->cfg.mean_scale ? nn_conv2d_forward(&c->hs_mean, h) : NULL;
  return nn_relu(nn_conv2d_forward(&c->hs_out, h));
}

static nn_tensor *synthesis(codec_model *c, nn_tensor *y, const int *quality) {
  return run_layers(c, synthesis_layer, y, quality, false);
}

nn_tensor *codec_synthesis(codec_model *c, nn_tensor *y, int quality) {
  if (!y || y->ndim != 4 || y->shape[0] != 1 || y->shape[1] != c->cfg.m || quality < 1 || quality > CODEC_MAX_QUALITY) {
    nn_set_error("codec_synthesis: need y[1,%d,h,w] and a quality in 1..%d", c->cfg.m, CODEC_MAX_QUALITY);
    return NULL;
  }
  return synthesis(c, y, &quality);
}

static nn_tensor *uniform_noise(const nn_tensor *like, nn_rng *rng) {
  nn_tensor *u = nn_empty(NN_F32, like->ndim, like->shape);
  if (!u) return NULL;
  float *d = nn_f32(u);
  for (int64_t i = 0, n = nn_numel(u); i < n; i++) d[i] = nn_rng_uniform(rng) - 0.5f;
  return u;
}

/* round(v) - v as a constant: adding it is rounding with an identity gradient */
static nn_tensor *rounding_offset(nn_tensor *v) {
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
static void context_params(codec_model *c, nn_tensor *y, nn_tensor **means, nn_tensor **scales) {
  if (!c->cfg.context || !y || !*means || !*scales) return;
  nn_tensor *mh = *means, *sh = *scales, *s = nn_lower_bound(sh, CODEC_SCALE_MIN);
  int64_t h = y->shape[2], w = y->shape[3];
  nn_tensor *m_a = mh, *s_a = sh; /* the anchors' final means and scales */
  if (c->cfg.anchor_context) {
    nn_tensor *r0 = nn_sub(y, mh);
    nn_tensor *u = nn_mul(nn_div(nn_add(r0, rounding_offset(r0)), s), anchor_rows(h, w, false));
    context_correct(&c->actx_conv, &c->actx_spread, &c->actx_mean, &c->actx_scale, c, u, anchor_rows(h, w, true), &m_a, &s_a);
  }
  nn_tensor *r = nn_sub(y, m_a);
  nn_tensor *v = nn_add(r, rounding_offset(r));
  nn_tensor *u = nn_mul(nn_div(c->cfg.anchor_context ? nn_add(v, nn_sub(m_a, mh)) : v, s), checkerboard(h, w, false));
  /* the second half's corrections read the hyperprior's scales (m_a and s_a equal mh and sh there) */
  context_correct(&c->ctx_conv, &c->ctx_spread, &c->ctx_mean, &c->ctx_scale, c, u, checkerboard(h, w, true), &m_a, &s_a);
  *means = m_a, *scales = s_a;
}

static nn_tensor *z_scales(codec_model *c, nn_tensor *z) {
  int64_t cs[4] = {1, c->cfg.n, 1, 1};
  return nn_contiguous(nn_expand(nn_reshape(nn_exp(c->z_scale_raw), 4, cs), 4, z->shape));
}


nn_tensor *codec_train_forward(codec_model *c, nn_tensor *x, const int *quality, nn_rng *rng, codec_stats *st) {
  if (!x) return NULL;
  if (x->ndim != 4 || x->shape[1] != 3 || x->shape[2] % CODEC_STRIDE || x->shape[3] % CODEC_STRIDE) {
    nn_set_error("codec: training input must be [N,3,H,W] with H, W multiples of %d", CODEC_STRIDE);
    return NULL;
  }
  int64_t nb = x->shape[0], pixels = nb * x->shape[2] * x->shape[3];
  nn_tensor *lam = nn_empty(NN_F32, 1, &nb);
  if (!lam) return NULL;
  for (int64_t i = 0; i < nb; i++) {
    if (quality[i] < 1 || quality[i] > CODEC_MAX_QUALITY) {
      nn_set_error("codec: quality %d out of 1..%d", quality[i], CODEC_MAX_QUALITY);
      return NULL;
    }
    nn_f32(lam)[i] = codec_lambda(&c->cfg, quality[i]) * 255.0f * 255.0f;
  }
  nn_tensor *y = nn_mul(analysis(c, x, quality, false), gains_for(c->gain_enc, quality, nb));
  nn_tensor *z = hyper_analysis(c, y, false);
  if (!z) return NULL;
  int64_t ms[4] = {1, c->cfg.n, 1, 1};
  nn_tensor *z_tilde = nn_add(z, uniform_noise(z, rng));
  nn_tensor *bits_z = nn_gaussian_bits(nn_sub(z_tilde, nn_reshape(nn_params_find(&c->p, "z.mean"), 4, ms)),
                                       z_scales(c, z), CODEC_SCALE_MIN);
  nn_tensor *means = NULL;
  nn_tensor *scales = hyper_synthesis(c, z_tilde, &means);
  context_params(c, y, &means, &scales);
  /* the residual from the predicted mean is what gets coded: y_hat = round(y - mean) + mean */
  nn_tensor *r = means ? nn_sub(y, means) : y;
  nn_tensor *bits_y = nn_gaussian_bits(nn_add(r, uniform_noise(r, rng)), scales, CODEC_SCALE_MIN);
  nn_tensor *y_hat = nn_add(y, rounding_offset(r));
  nn_tensor *x_hat = synthesis(c, nn_mul(y_hat, gains_for(c->gain_dec, quality, nb)), quality);
  nn_tensor *d = nn_sub(x_hat, x);
  /* per-patch MSE [N], weighted by its level's lambda */
  nn_tensor *mse_i = nn_mean(nn_reshape(nn_mul(d, d), 2, (int64_t[]){nb, -1}), 1, false);
  nn_tensor *mse = nn_mean_all(mse_i);
  nn_tensor *bpp = nn_mul_scalar(nn_add(bits_y, bits_z), 1.0f / (float)pixels);
  nn_tensor *loss = nn_add(nn_mean_all(nn_mul(mse_i, lam)), bpp);
  if (loss && st) {
    st->loss = nn_item(loss);
    st->bpp = nn_item(bpp);
    st->bpp_z = nn_item(bits_z) / (float)pixels;
    st->mse = nn_item(mse);
    st->psnr = st->mse > 0 ? 10.0f * log10f(1.0f / st->mse) : 99.0f;
  }
  return loss;
}

/* Every tensor keeps its old entries; the new analysis rows and hyper-synthesis rows start from a
 * fresh initialisation (so the new latents carry something and gradients reach them), the synthesis
 * and hyper-analysis read the new channels through weights ten times smaller than a fresh start, and
 * the new gains start at each level's mean gain. */
bool codec_widen_latents(codec_model *c, int m, uint64_t seed) {
  codec_config cfg = c->cfg;
  int m_old = cfg.m;
  if (m <= m_old) {
    nn_set_error("codec: widening needs more than the model's %d latent channels (asked %d)", m_old, m);
    return false;
  }
  cfg.m = m;
  codec_model w;
  if (!codec_init(&w, &cfg, seed)) return false;
  for (int i = 0; i < w.p.n; i++) {
    nn_tensor *dst = w.p.t[i], *src = nn_params_find(&c->p, w.p.names[i]);
    if (!src || src->dtype != NN_F32 || src->ndim != dst->ndim || !strncmp(w.p.names[i], "entropy.", 8)) continue;
    bool gain = !strncmp(w.p.names[i], "gain.", 5);
    bool quiet = !strcmp(w.p.names[i], "g_s.0.weight") || !strcmp(w.p.names[i], "h_a.0.weight");
    bool silent = !strncmp(w.p.names[i], "h_s.mean.", 9); /* new latents start with mean 0 */
    float *dd = nn_f32(dst);
    const float *sd = nn_f32(src);
    for (int64_t e = 0; e < nn_numel(dst); e++) { /* the overlap keeps the old entries */
      int64_t rem = e, se = 0, stride_s = nn_numel(src);
      bool inside = true;
      for (int d = 0; d < dst->ndim; d++) {
        int64_t block_d = 1;
        for (int k = d + 1; k < dst->ndim; k++) block_d *= dst->shape[k];
        int64_t idx = rem / block_d;
        rem %= block_d;
        stride_s /= src->shape[d];
        if (idx >= src->shape[d]) inside = false;
        se += idx * stride_s;
      }
      if (inside) dd[e] = sd[se];
      else if (silent) dd[e] = 0.0f;
      else if (quiet) dd[e] *= 0.1f;
      else if (gain) { /* row = level: its mean over the old channels */
        int64_t level = e / dst->shape[1];
        double mean = 0;
        for (int k = 0; k < m_old; k++) mean += sd[level * m_old + k];
        dd[e] = (float)(mean / m_old);
      }
    }
  }
  codec_free(c);
  *c = w;
  return true;
}

/* Replaces c by a model of cfg that holds c's tensors; those c lacks are zeroed (zero_new) or keep their
 * initial values. */
static bool regrow(codec_model *c, const codec_config *cfg, uint64_t seed, bool zero_new) {
  codec_model w;
  if (!codec_init(&w, cfg, seed)) return false;
  for (int i = 0; i < w.p.n; i++) {
    nn_tensor *dst = w.p.t[i], *src = nn_params_find(&c->p, w.p.names[i]);
    if (src) memcpy(nn_data(dst), nn_data(src), (size_t)nn_numel(dst) * nn_dtype_size(dst->dtype));
    else if (zero_new) nn_fill_(dst, 0.0f);
  }
  tables_from_buffers(&w);
  w.model_id = weights_hash(&w.p);
  codec_free(c);
  *c = w;
  return true;
}

bool codec_add_mean_head(codec_model *c, uint64_t seed) {
  if (c->cfg.mean_scale) {
    nn_set_error("codec: the model already predicts means");
    return false;
  }
  codec_config cfg = c->cfg;
  cfg.mean_scale = true;
  return regrow(c, &cfg, seed, true); /* the mean head predicts 0, as the scale-only model assumed */
}

bool codec_add_level_mod(codec_model *c, uint64_t seed) {
  if (c->cfg.level_mod) {
    nn_set_error("codec: the model already has level modulation");
    return false;
  }
  codec_config cfg = c->cfg;
  cfg.level_mod = true;
  return regrow(c, &cfg, seed, false); /* the new scales keep their initial 1s */
}

bool codec_add_context(codec_model *c, int channels, uint64_t seed) {
  if (c->cfg.context) {
    nn_set_error("codec: the model already has a context model");
    return false;
  }
  if (channels < 1) {
    nn_set_error("codec: a context model needs at least one channel");
    return false;
  }
  codec_config cfg = c->cfg;
  cfg.context = channels;
  return regrow(c, &cfg, seed, false); /* the new layers keep their initialisation: corrections of zero */
}

bool codec_add_anchor_context(codec_model *c, int channels, uint64_t seed) {
  if (!c->cfg.context || c->cfg.anchor_context) {
    nn_set_error("codec: an anchors' context needs a model with a context model and none for its anchors yet");
    return false;
  }
  if (channels < 1) {
    nn_set_error("codec: an anchors' context model needs at least one channel");
    return false;
  }
  codec_config cfg = c->cfg;
  cfg.anchor_context = channels;
  return regrow(c, &cfg, seed, false); /* corrections of zero, as with codec_add_context */
}

bool codec_set_lambdas(codec_model *c, const float *lambda) {
  if (!lambdas_valid(lambda)) return false;
  double lo[CODEC_MAX_QUALITY];
  for (int q = 0; q < CODEC_MAX_QUALITY; q++) lo[q] = log(c->cfg.lambda[q]);
  /* the gains, and the level scales of a modulated model, follow the same rule */
  nn_tensor *tables[8] = {c->gain_enc, c->gain_dec, c->mod_a[0], c->mod_a[1], c->mod_a[2], c->mod_s[0], c->mod_s[1], c->mod_s[2]};
  for (int t = 0; t < 8 && tables[t]; t++) {
    int m = (int)tables[t]->shape[1];
    float *g = nn_f32(tables[t]);
    float *old = malloc(sizeof(float) * (size_t)CODEC_MAX_QUALITY * (size_t)m);
    if (!old) {
      nn_set_error("codec: out of memory");
      return false;
    }
    memcpy(old, g, sizeof(float) * (size_t)CODEC_MAX_QUALITY * (size_t)m);
    for (int q = 0; q < CODEC_MAX_QUALITY; q++) {
      double x = log(lambda[q]);
      int s = 0; /* segment [s, s+1] holding x, or the end segment beyond it */
      while (s < CODEC_MAX_QUALITY - 2 && x > lo[s + 1]) s++;
      double w = (x - lo[s]) / (lo[s + 1] - lo[s]);
      for (int k = 0; k < m; k++) { /* gains of either sign keep their sign; log of the magnitude */
        float a = old[s * m + k], b = old[(s + 1) * m + k];
        if ((a > 0) != (b > 0) || a == 0 || b == 0) g[q * m + k] = (float)((1 - w) * a + w * b);
        else g[q * m + k] = copysignf((float)exp((1 - w) * log(fabs(a)) + w * log(fabs(b))), a);
      }
    }
    free(old);
  }
  memcpy(c->cfg.lambda, lambda, sizeof c->cfg.lambda);
  return true;
}

/* ------------------------------------------------------------ save / load */

static char *config_json(const codec_config *c) {
  GString *s = g_string_new(NULL);
  g_string_append_printf(s, "{\"n\": %d, \"m\": %d, \"stride\": %d, \"qualities\": %d, \"lambdas\": [", c->n, c->m,
                         CODEC_STRIDE, CODEC_MAX_QUALITY);
  for (int q = 1; q <= CODEC_MAX_QUALITY; q++) g_string_append_printf(s, "%s%.9g", q > 1 ? ", " : "", (double)codec_lambda(c, q));
  g_string_append_printf(s, "], \"mean_scale\": %s, \"level_mod\": %s, \"context\": %d", c->mean_scale ? "true" : "false",
                         c->level_mod ? "true" : "false", c->context);
  if (c->anchor_context) g_string_append_printf(s, ", \"anchor_context\": %d", c->anchor_context); /* files without one keep their text */
  g_string_append(s, "}");
  return g_string_free(s, FALSE);
}

bool codec_save(codec_model *c, const char *path, const nn_kv *extra, int n_extra) {
  c->model_id = weights_hash(&c->p);
  char *cfg = config_json(&c->cfg);
  char id[16];
  snprintf(id, sizeof id, "%08x", c->model_id);
  nn_kv *meta = calloc((size_t)n_extra + 3, sizeof *meta);
  if (!meta) {
    g_free(cfg);
    return false;
  }
  meta[0] = (nn_kv){"architecture", ARCH};
  meta[1] = (nn_kv){"config", cfg};
  meta[2] = (nn_kv){"model_id", id};
  for (int i = 0; i < n_extra; i++) meta[3 + i] = extra[i];
  bool ok = nn_safetensors_save(path, &c->p, meta, n_extra + 3);
  free(meta);
  g_free(cfg);
  return ok;
}

static bool parse_config(const char *json, codec_config *c, const char *path) {
  JsonParser *p = json_parser_new();
  bool ok = false;
  if (!json || !json_parser_load_from_data(p, json, -1, NULL) || !JSON_NODE_HOLDS_OBJECT(json_parser_get_root(p))) {
    nn_set_error("%s: metadata 'config' is missing or not a JSON object", path);
  } else {
    JsonObject *o = json_node_get_object(json_parser_get_root(p));
    c->n = (int)json_object_get_int_member_with_default(o, "n", 0);
    c->m = (int)json_object_get_int_member_with_default(o, "m", 0);
    memcpy(c->lambda, LEGACY_LAMBDA, sizeof c->lambda);
    JsonArray *lam = json_object_has_member(o, "lambdas") ? json_object_get_array_member(o, "lambdas") : NULL;
    if (lam && json_array_get_length(lam) == CODEC_MAX_QUALITY)
      for (int q = 0; q < CODEC_MAX_QUALITY; q++) c->lambda[q] = (float)json_array_get_double_element(lam, q);
    c->mean_scale = json_object_get_boolean_member_with_default(o, "mean_scale", FALSE);
    c->level_mod = json_object_get_boolean_member_with_default(o, "level_mod", FALSE);
    c->context = (int)json_object_get_int_member_with_default(o, "context", 0);
    c->anchor_context = (int)json_object_get_int_member_with_default(o, "anchor_context", 0);
    if (json_object_get_int_member_with_default(o, "qualities", 0) != CODEC_MAX_QUALITY) {
      nn_set_error("%s: the model must have %d quality levels", path, CODEC_MAX_QUALITY);
    } else if (json_object_get_int_member_with_default(o, "stride", CODEC_STRIDE) != CODEC_STRIDE) {
      nn_set_error("%s: stride other than %d is not supported", path, CODEC_STRIDE);
    } else if (!config_valid(c)) {
      char msg[256];
      snprintf(msg, sizeof msg, "%s: %s", path, nn_last_error());
      nn_set_error("%s", msg);
    } else {
      ok = true;
    }
  }
  g_object_unref(p);
  return ok;
}

bool codec_load(codec_model *c, const char *path) {
  nn_st_file *f = nn_st_open(path);
  if (!f) return false;
  const char *arch = nn_st_meta(f, "architecture");
  codec_config cfg;
  codec_model tmp;
  bool ok = false;
  if (!arch || strcmp(arch, ARCH) != 0) {
    nn_set_error("%s: not an e2ecodec model (architecture '%s', expected '%s')", path, arch ? arch : "none", ARCH);
  } else if (parse_config(nn_st_meta(f, "config"), &cfg, path) && codec_init(&tmp, &cfg, 0)) {
    ok = nn_st_load_params(f, &tmp.p, NULL, true);
    if (ok) {
      tables_from_buffers(&tmp);
      ok = tables_valid(&tmp.tables, path);
    }
    if (ok) {
      for (int i = 0; i < tmp.p.n && ok; i++) {
        if (tmp.p.t[i]->dtype != NN_F32) continue;
        const float *d = nn_f32(tmp.p.t[i]);
        for (int64_t k = 0, n = nn_numel(tmp.p.t[i]); k < n; k++)
          if (!isfinite(d[k])) {
            nn_set_error("%s: tensor '%s' holds a non-finite value", path, tmp.p.names[i]);
            ok = false;
            break;
          }
      }
    }
    if (ok) {
      tmp.model_id = weights_hash(&tmp.p);
      codec_free(c);
      *c = tmp;
    } else {
      codec_free(&tmp);
    }
  }
  nn_st_close(f);
  return ok;
}

/* ------------------------------------------------------------ stream */

uint32_t codec_crc32(const uint8_t *data, size_t len) {
  uint32_t crc = 0xffffffffu; /* IEEE 802.3, bitwise: streams are small next to the network */
  for (size_t i = 0; i < len; i++) {
    crc ^= data[i];
    for (int k = 0; k < 8; k++) crc = (crc >> 1) ^ (0xedb88320u & (uint32_t)-(int32_t)(crc & 1));
  }
  return ~crc;
}

double codec_psnr(const uint8_t *a, const uint8_t *b, size_t n) {
  double se = 0;
  for (size_t i = 0; i < n; i++) {
    double d = (double)a[i] - b[i];
    se += d * d;
  }
  return se > 0 ? 10 * log10(255.0 * 255.0 * (double)n / se) : 99.0;
}

static void put_u32(uint8_t *p, uint32_t v) {
  p[0] = (uint8_t)(v >> 24);
  p[1] = (uint8_t)(v >> 16);
  p[2] = (uint8_t)(v >> 8);
  p[3] = (uint8_t)v;
}
static uint32_t get_u32(const uint8_t *p) { return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3]; }
static uint32_t get_u16(const uint8_t *p) { return (uint32_t)p[0] << 8 | p[1]; }

bool codec_parse_header(const uint8_t *d, size_t len, codec_header *h) {
  if (len < CODEC_HEADER_BYTES) {
    nn_set_error("e2ecodec stream too short for a header (%zu bytes, need %d)", len, CODEC_HEADER_BYTES);
    return false;
  }
  if (memcmp(d, CODEC_MAGIC, 4) != 0) {
    nn_set_error("not an e2ecodec stream (bad magic)");
    return false;
  }
  h->version = d[4];
  h->quality = d[5];
  if (h->version < 1 || h->version > CODEC_VERSION) {
    nn_set_error("e2ecodec stream version %d is not supported (this decoder reads 1..%d)", h->version, CODEC_VERSION);
    return false;
  }
  if (d[6] != 0 || d[7] != 0) {
    nn_set_error("e2ecodec stream has unknown flags 0x%02x%02x", d[6], d[7]);
    return false;
  }
  h->model_id = get_u32(d + 8);
  h->width = (int)get_u16(d + 12);
  h->height = (int)get_u16(d + 14);
  h->fps_n = (int)get_u16(d + 16);
  h->fps_d = (int)get_u16(d + 18);
  h->z_bytes = get_u32(d + 20);
  h->y_bytes = get_u32(d + 24);
  h->crc = get_u32(d + 28);
  if (h->quality < 1 || h->quality > CODEC_MAX_QUALITY || h->width < 1 || h->height < 1 ||
      h->width > CODEC_MAX_DIM || h->height > CODEC_MAX_DIM || (h->fps_n != 0 && h->fps_d == 0)) {
    nn_set_error("e2ecodec header out of range (quality %d, %dx%d)", h->quality, h->width, h->height);
    return false;
  }
  if ((uint64_t)h->z_bytes + h->y_bytes + CODEC_HEADER_BYTES != len) {
    nn_set_error("e2ecodec stream is %zu bytes but its header says %llu (truncated or padded)", len,
                 (unsigned long long)h->z_bytes + h->y_bytes + CODEC_HEADER_BYTES);
    return false;
  }
  return true;
}

void codec_set_frame_rate(uint8_t *s, int n, int d) {
  if (n < 0 || n > 65535 || d < 1 || d > 65535) n = d = 0; /* not representable: unknown */
  s[16] = (uint8_t)(n >> 8), s[17] = (uint8_t)n, s[18] = (uint8_t)(d >> 8), s[19] = (uint8_t)d;
}

static int pad_to(int v) { return (v + CODEC_STRIDE - 1) / CODEC_STRIDE * CODEC_STRIDE; }

/* Per padded pixel, with some headroom over what a 3072x2048 picture took on 2026-12-06 (peak resident
 * memory of `e2e codec decode|encode`, model included): decoding 168 bytes, encoding 292, encoding with
 * the latent search 1950 (its gradient graph over the synthesis). */
enum { DECODE_BYTES_PER_PIXEL = 200, ENCODE_BYTES_PER_PIXEL = 340, REFINE_BYTES_PER_PIXEL = 2300 };

uint64_t codec_working_bytes(const codec_model *c, int w, int h, bool encoding) {
  uint64_t px = (uint64_t)pad_to(w) * (uint64_t)pad_to(h);
  uint64_t per_px = !encoding ? DECODE_BYTES_PER_PIXEL : c->refine_steps > 0 ? REFINE_BYTES_PER_PIXEL : ENCODE_BYTES_PER_PIXEL;
  /* measured with N 64; the largest tensors, at half resolution, grow with N */
  return px * per_px * (uint64_t)(c->cfg.n > 64 ? c->cfg.n : 64) / 64;
}

bool codec_check_memory(const codec_model *c, int w, int h, bool encoding) {
  uint64_t limit = c->memory_limit;
  if (!limit) {
    long pages = sysconf(_SC_PHYS_PAGES), page = sysconf(_SC_PAGE_SIZE);
    limit = pages > 0 && page > 0 ? (uint64_t)pages * (uint64_t)page : UINT64_MAX;
  }
  uint64_t need = codec_working_bytes(c, w, h, encoding);
  if (need <= limit) return true;
  nn_set_error("e2ecodec: %s a %dx%d picture%s takes about %.1f GB of working memory; the limit is %.1f GB (%s)",
               encoding ? "encoding" : "decoding", w, h, encoding && c->refine_steps > 0 ? " with the latent search" : "",
               need / 1e9, limit / 1e9, c->memory_limit ? "set by the application" : "this machine's memory");
  return false;
}

/* Planar 0..1 floats, edges replicated into the padding (cheaper to code than black). */
static void rgb_to_padded(const uint8_t *rgb, int w, int h, int stride, int pw, int ph, float *dst) {
  for (int c = 0; c < 3; c++)
    for (int y = 0; y < ph; y++) {
      const uint8_t *row = rgb + (size_t)(y < h ? y : h - 1) * (size_t)stride;
      float *o = dst + ((size_t)c * ph + y) * pw;
      for (int x = 0; x < pw; x++) o[x] = row[(x < w ? x : w - 1) * 3 + c] * (1.0f / 255.0f);
    }
}

static void padded_to_rgb(const float *src, int pw, int ph, int w, int h, uint8_t *rgb) {
  for (int y = 0; y < h; y++)
    for (int x = 0; x < w; x++)
      for (int c = 0; c < 3; c++) {
        float v = src[((size_t)c * ph + y) * pw + x] * 255.0f;
        /* !(v > 0) also catches NaN, which a hostile stream's huge values can lead to */
        rgb[((size_t)y * w + x) * 3 + c] = (uint8_t)(!(v > 0) ? 0 : v >= 255 ? 255 : (int)(v + 0.5f));
      }
}

/* The integer a latent is coded as: rounded, saturated (a float past int32 has no defined conversion),
 * 0 for what is not a number. */
static int32_t to_symbol(float v) {
  return !isfinite(v) ? 0 : v > 1e9f ? 1000000000 : v < -1e9f ? -1000000000 : (int32_t)nearbyintf(v);
}

/* Integer y values above the table go out as the escape then 32 raw bits (zig-zag). */
static void put_value(rans_writer *w, const codec_tables *t, int ti, int32_t v) {
  const int32_t *cdf = t->cdf + (size_t)ti * (size_t)(t->max_len + 1);
  int32_t k = v + t->offset[ti];
  if (k >= 0 && k < t->len[ti] - 1) {
    rans_put(w, cdf, k);
    return;
  }
  rans_put(w, cdf, t->len[ti] - 1);
  uint32_t u = (uint32_t)v; /* zig-zag in unsigned arithmetic: shifting a negative int is undefined */
  uint32_t zz = (u << 1) ^ (0u - (u >> 31));
  rans_put_raw16(w, zz >> 16);
  rans_put_raw16(w, zz & 0xffff);
}

static int32_t get_value(rans_reader *r, const codec_tables *t, int ti) {
  const int32_t *cdf = t->cdf + (size_t)ti * (size_t)(t->max_len + 1);
  int k = rans_get(r, cdf, t->len[ti]);
  if (k < t->len[ti] - 1) return k - t->offset[ti];
  uint32_t hi = rans_get_raw16(r), lo = rans_get_raw16(r);
  uint32_t zz = hi << 16 | lo;
  return (int32_t)(zz >> 1) ^ -(int32_t)(zz & 1);
}

/* Which latents a pass codes: all of them, a checkerboard colour, or the anchors of even or odd rows. */
typedef enum { LATENTS_ALL, LATENTS_ANCHORS, LATENTS_SECOND_HALF, LATENTS_ANCHORS_EVEN_ROWS, LATENTS_ANCHORS_ODD_ROWS } latent_set;

/* One pass over one set of y's latents, in the stream's order: channel by channel, raster order, each under
 * the table of its quantised scale. Encoding (y set) writes y's residuals from the means to w; decoding
 * reads them from r. Either way y_hat receives residual + mean, and coded (if set) the integer. False when
 * decoding ran past the end of the payload: the stream is corrupt (a whole one never does), and stopping
 * there keeps a few garbage bytes that claim a large picture from costing all of its symbols. */
static bool code_pass(const codec_model *c, int H, int W, latent_set set, const float *means, const float *scales,
                      const float *y, rans_writer *w, rans_reader *r, float *y_hat, float *coded) {
  int row0 = set == LATENTS_ANCHORS_ODD_ROWS, row_step = set >= LATENTS_ANCHORS_EVEN_ROWS ? 2 : 1;
  for (size_t ch = 0; ch < (size_t)c->cfg.m; ch++) {
    if (r && r->overrun) {
      nn_set_error("e2ecodec: latent payload is corrupt (it ends before its latents do)");
      return false;
    }
    for (int py = row0; py < H; py += row_step)
      for (int px = 0; px < W; px++) {
        if (set != LATENTS_ALL && (py + px) % 2 != (set == LATENTS_SECOND_HALF)) continue;
        size_t i = (ch * H + py) * W + px;
        int32_t q, table = codec_scale_index(&c->tables, scales[i]);
        if (y) put_value(w, &c->tables, table, q = to_symbol(y[i] - means[i]));
        else q = get_value(r, &c->tables, table);
        y_hat[i] = (float)q + means[i];
        if (coded) coded[i] = (float)q;
      }
  }
  return true;
}

/* The latents in both directions, so that encoder and decoder cannot disagree on the order or on a
 * probability: z_hat -> means and scales (fixed-order float path) -> tables; with a context model
 * the anchors first (with an anchors' context, those on even rows, then those on odd rows under means and
 * scales corrected from them), then the other half under means and scales corrected from the decoded
 * anchors. Encoding: y is the analysis output, w the writer. Decoding: y is NULL, r the reader. */
static bool code_latents(const codec_model *c, const float *z_hat, int zh, int zw, const float *y, rans_writer *w,
                         rans_reader *r, float *y_hat) {
  int H = 4 * zh, W = 4 * zw;
  size_t ny = (size_t)c->cfg.m * (size_t)H * (size_t)W;
  float *means = calloc(ny, sizeof(float)), *scales = malloc(sizeof(float) * ny);
  float *anchors = NULL, *cm = NULL, *cs = NULL;
  bool ok = means && scales;
  if (!ok) nn_set_error("e2ecodec: out of memory for the latents");
  ok = ok && codec_hyper_scales_exact(c, z_hat, zh, zw, scales, c->cfg.mean_scale ? means : NULL);
  if (ok && !c->cfg.context) ok = code_pass(c, H, W, LATENTS_ALL, means, scales, y, w, r, y_hat, NULL);
  if (ok && c->cfg.context) {
    anchors = calloc(ny, sizeof(float)), cm = calloc(ny, sizeof(float)), cs = calloc(ny, sizeof(float));
    ok = anchors && cm && cs;
    if (!ok) nn_set_error("e2ecodec: out of memory for the context model");
    if (ok && !c->cfg.anchor_context) /* the anchors' integers, zero elsewhere */
      ok = code_pass(c, H, W, LATENTS_ANCHORS, means, scales, y, w, r, y_hat, anchors);
    if (ok && c->cfg.anchor_context) {
      ok = code_pass(c, H, W, LATENTS_ANCHORS_EVEN_ROWS, means, scales, y, w, r, y_hat, anchors) &&
           codec_anchor_context_exact(c, anchors, means, scales, H, W, cm, cs) &&
           code_pass(c, H, W, LATENTS_ANCHORS_ODD_ROWS, cm, cs, y, w, r, y_hat, anchors);
      if (ok) {
        /* the second half's context reads each anchor's value from its hyperprior mean */
        for (size_t ch = 0; ch < (size_t)c->cfg.m; ch++)
          for (int py = 1; py < H; py += 2)
            for (int px = 1; px < W; px += 2) {
              size_t i = (ch * H + py) * W + px;
              anchors[i] += cm[i] - means[i];
            }
      }
    }
    ok = ok && codec_context_exact(c, anchors, means, scales, H, W, cm, cs);
    ok = ok && code_pass(c, H, W, LATENTS_SECOND_HALF, cm, cs, y, w, r, y_hat, NULL);
  }
  free(means), free(scales), free(anchors), free(cm), free(cs);
  return ok;
}

static int z_table(const codec_model *c, int ch) {
  return codec_scale_index(&c->tables, expf(nn_f32(c->z_scale_raw)[ch]));
}

/* g_s(y_hat) -> 8-bit RGB: the reconstruction both sides compute. */
static bool reconstruct(codec_model *c, int quality, nn_tensor *y_hat, int pw, int ph, int w, int h, uint8_t *rgb) {
  nn_tensor *x_hat = synthesis(c, nn_mul(y_hat, gains_for(c->gain_dec, &quality, 1)), &quality);
  if (!x_hat) return false;
  padded_to_rgb(nn_f32(x_hat), pw, ph, w, h, rgb);
  return true;
}

/* This picture's loss for latents y under the (fixed) means and scales its coded z gives, y rounded as
 * the coder will round it (straight through): lambda * 255^2 * MSE + bits per pixel of y. */
static nn_tensor *coded_loss(codec_model *c, nn_tensor *x, nn_tensor *y, nn_tensor *means, nn_tensor *scales, int quality) {
  context_params(c, y, &means, &scales); /* the second half's follow the anchors as they move */
  nn_tensor *r = means ? nn_sub(y, means) : y;
  r = nn_add(r, rounding_offset(r));
  nn_tensor *bits_y = nn_gaussian_bits(r, scales, CODEC_SCALE_MIN);
  nn_tensor *x_hat = synthesis(c, nn_mul(means ? nn_add(r, means) : r, gains_for(c->gain_dec, &quality, 1)), &quality);
  nn_tensor *d = nn_sub(x_hat, x);
  float pixels = (float)(x->shape[2] * x->shape[3]);
  return nn_add(nn_mul_scalar(nn_mean_all(nn_mul(d, d)), codec_lambda(&c->cfg, quality) * 255.0f * 255.0f),
                nn_mul_scalar(nn_sum_all(bits_y), 1.0f / pixels));
}

/* Replaces y (in place) by the best latents found in `steps` gradient steps on coded_loss. The model's
 * weights are frozen meanwhile, so no gradient reaches them (nor clears one a trainer holds). */
static bool refine_latents(codec_model *c, nn_tensor *x, nn_tensor *y, nn_tensor *z_hat, int quality, int steps) {
  bool *was = malloc(sizeof(bool) * (size_t)(c->p.n ? c->p.n : 1));
  nn_params v;
  nn_params_init(&v);
  nn_tensor *yv = nn_params_add(&v, "y", nn_tensor_new(NN_F32, y->ndim, y->shape), true);
  float *best = malloc(sizeof(float) * (size_t)nn_numel(y));
  /* Plain gradient steps: Adam's per-element normalisation moves every latent by the same amount and
   * pushes many across a rounding boundary at once (its loss rose within 10 steps). The step grows
   * with lambda above level 3, where the distortion's gradient is flatter relative to the rate's.
   * Tuned on two 256x256 crops of BSDS500 val (Kodak stays for evaluation): 40 steps lower the real
   * rate + lambda * distortion by about 4 % at levels 1 and 3 and 5 % at level 5. */
  float lr = 40.0f * fmaxf(1.0f, powf(codec_lambda(&c->cfg, quality) / 0.014f, 0.75f));
  nn_optim *opt = yv ? nn_optim_new(&v, nn_optim_defaults(NN_SGD, lr)) : NULL;
  nn_arena *work = nn_arena_new(0), *prev = NULL;
  bool ok = was && best && opt && work;
  if (!ok) nn_set_error("e2ecodec: out of memory for the latent search");
  if (ok) {
    for (int i = 0; i < c->p.n; i++) was[i] = c->p.t[i]->requires_grad, c->p.t[i]->requires_grad = false;
    memcpy(nn_f32(yv), nn_f32(y), sizeof(float) * (size_t)nn_numel(y));
    memcpy(best, nn_f32(y), sizeof(float) * (size_t)nn_numel(y));
    nn_tensor *means = NULL, *scales = hyper_synthesis(c, z_hat, &means); /* no gradient: z stays as coded */
    ok = scales != NULL;
    prev = nn_arena_set_current(work);
    int no_grad_depth = 0; /* the caller's no-grad scopes, closed for the search and reopened after */
    for (; !nn_grad_enabled() && no_grad_depth < 64; no_grad_depth++) nn_no_grad_end();
    float best_loss = INFINITY;
    for (int s = 0; s <= steps && ok; s++) {
      nn_optim_zero_grad(opt);
      nn_tensor *loss = coded_loss(c, x, yv, means, scales, quality);
      ok = loss && (s == steps || nn_backward(loss));
      if (!ok) break;
      float l = nn_item(loss);
      if (l < best_loss) { /* the loss of the y it was computed on, before the step */
        best_loss = l;
        memcpy(best, nn_f32(yv), sizeof(float) * (size_t)nn_numel(y));
      }
      if (s < steps) { /* linear decay: large steps to leave the plain encoder's latents, small ones to settle */
        opt->cfg.lr = lr * (1.0f - (float)s / (float)steps);
        nn_optim_step(opt);
      }
      nn_arena_reset(work);
    }
    while (no_grad_depth-- > 0) nn_no_grad_begin();
    nn_arena_set_current(prev);
    for (int i = 0; i < c->p.n; i++) c->p.t[i]->requires_grad = was[i];
    if (ok) memcpy(nn_f32(y), best, sizeof(float) * (size_t)nn_numel(y));
  }
  if (work) nn_arena_free(work);
  nn_optim_free(opt);
  nn_params_free(&v);
  free(best);
  free(was);
  return ok;
}

bool codec_compress(codec_model *c, int quality, const uint8_t *rgb, int w, int h, int stride, uint8_t **out,
                    size_t *out_len, uint8_t *recon) {
  if (quality < 1 || quality > CODEC_MAX_QUALITY) {
    nn_set_error("e2ecodec: quality %d out of 1..%d", quality, CODEC_MAX_QUALITY);
    return false;
  }
  if (w < 1 || h < 1 || w > CODEC_MAX_DIM || h > CODEC_MAX_DIM) {
    nn_set_error("e2ecodec: image size %dx%d out of range (1..%d)", w, h, CODEC_MAX_DIM);
    return false;
  }
  if (!codec_check_memory(c, w, h, true)) return false;
  int pw = pad_to(w), ph = pad_to(h), zh = ph / CODEC_STRIDE, zw = pw / CODEC_STRIDE;
  int n = c->cfg.n, m = c->cfg.m;
  bool ok = false;
  uint8_t *zb = NULL, *yb = NULL;
  rans_writer wz, wy;
  rans_writer_init(&wz);
  rans_writer_init(&wy);
  nn_no_grad_begin();
  nn_tensor *x = nn_empty(NN_F32, 4, (int64_t[]){1, 3, ph, pw});
  if (!x) goto done;
  rgb_to_padded(rgb, w, h, stride, pw, ph, nn_f32(x));
  nn_tensor *y = nn_contiguous(nn_mul(analysis(c, x, &quality, c->enc_infer_ready), gains_for(c->gain_enc, &quality, 1)));
  nn_tensor *z = hyper_analysis(c, y, c->enc_infer_ready);
  if (!z) goto done;
  /* z: per-channel Gaussian around its learned mean */
  const float *zm = nn_f32(nn_params_find(&c->p, "z.mean"));
  nn_tensor *z_hat = nn_empty(NN_F32, 4, (int64_t[]){1, n, zh, zw});
  if (!z_hat) goto done;
  for (int ch = 0; ch < n; ch++) {
    int ti = z_table(c, ch);
    for (int i = 0; i < zh * zw; i++) {
      size_t k = (size_t)ch * zh * zw + i;
      int32_t q = to_symbol(nn_f32(z)[k] - zm[ch]);
      put_value(&wz, &c->tables, ti, q);
      nn_f32(z_hat)[k] = (float)q + zm[ch];
    }
  }
  /* the latent search keeps z (already coded) and its means and scales, and moves y under them */
  if (c->refine_steps > 0 && !refine_latents(c, x, y, z_hat, quality, c->refine_steps)) goto done;
  nn_tensor *y_hat = nn_empty(NN_F32, 4, (int64_t[]){1, m, 4 * zh, 4 * zw});
  if (!y_hat || !code_latents(c, nn_f32(z_hat), zh, zw, nn_f32(y), &wy, NULL, nn_f32(y_hat))) goto done;
  size_t zl = 0, yl = 0;
  zb = rans_writer_finish(&wz, &zl);
  yb = rans_writer_finish(&wy, &yl);
  if (!zb || !yb) {
    nn_set_error("e2ecodec: out of memory while coding");
    goto done;
  }
  if (recon && !reconstruct(c, quality, y_hat, pw, ph, w, h, recon)) goto done;
  size_t len = CODEC_HEADER_BYTES + zl + yl;
  uint8_t *s = malloc(len);
  if (!s) goto done;
  memcpy(s, CODEC_MAGIC, 4);
  s[4] = CODEC_VERSION;
  s[5] = (uint8_t)quality;
  s[6] = s[7] = 0;
  put_u32(s + 8, c->model_id);
  s[12] = (uint8_t)(w >> 8), s[13] = (uint8_t)w, s[14] = (uint8_t)(h >> 8), s[15] = (uint8_t)h;
  s[16] = s[17] = s[18] = s[19] = 0;
  put_u32(s + 20, (uint32_t)zl);
  put_u32(s + 24, (uint32_t)yl);
  memcpy(s + CODEC_HEADER_BYTES, zb, zl);
  memcpy(s + CODEC_HEADER_BYTES + zl, yb, yl);
  put_u32(s + 28, codec_crc32(s + CODEC_HEADER_BYTES, zl + yl));
  *out = s;
  *out_len = len;
  ok = true;
done:
  nn_no_grad_end();
  nn_arena_reset(nn_arena_current());
  rans_writer_free(&wz);
  rans_writer_free(&wy);
  free(zb);
  free(yb);
  return ok;
}

bool codec_decompress(codec_model *c, const uint8_t *data, size_t len, uint8_t *rgb, int w, int h) {
  codec_header hd;
  if (!codec_parse_header(data, len, &hd)) return false;
  if (hd.width != w || hd.height != h) {
    nn_set_error("e2ecodec: stream is %dx%d, caller expected %dx%d", hd.width, hd.height, w, h);
    return false;
  }
  if (hd.model_id != c->model_id) {
    nn_set_error("e2ecodec: stream was made by model %08x, this decoder holds model %08x (load the encoder's model)",
                 hd.model_id, c->model_id);
    return false;
  }
  if (codec_crc32(data + CODEC_HEADER_BYTES, hd.z_bytes + (size_t)hd.y_bytes) != hd.crc) {
    nn_set_error("e2ecodec: stream checksum mismatch (corrupted data)");
    return false;
  }
  if (!codec_check_memory(c, w, h, false)) return false;
  int pw = pad_to(w), ph = pad_to(h), zh = ph / CODEC_STRIDE, zw = pw / CODEC_STRIDE;
  int n = c->cfg.n, m = c->cfg.m;
  bool ok = false;
  nn_no_grad_begin();
  const float *zm = nn_f32(nn_params_find(&c->p, "z.mean"));
  nn_tensor *z_hat = nn_empty(NN_F32, 4, (int64_t[]){1, n, zh, zw});
  nn_tensor *y_hat = nn_zeros(NN_F32, 4, (int64_t[]){1, m, 4 * zh, 4 * zw});
  if (!z_hat || !y_hat) goto done;
  rans_reader rz, ry;
  rans_reader_init(&rz, data + CODEC_HEADER_BYTES, hd.z_bytes);
  for (int ch = 0; ch < n; ch++) {
    int ti = z_table(c, ch);
    for (int i = 0; i < zh * zw; i++) nn_f32(z_hat)[(size_t)ch * zh * zw + i] = (float)get_value(&rz, &c->tables, ti) + zm[ch];
  }
  if (!rans_reader_done(&rz)) {
    nn_set_error("e2ecodec: hyper-latent payload is corrupt (does not decode to its exact length)");
    goto done;
  }
  rans_reader_init(&ry, data + CODEC_HEADER_BYTES + hd.z_bytes, hd.y_bytes);
  if (!code_latents(c, nn_f32(z_hat), zh, zw, NULL, NULL, &ry, nn_f32(y_hat))) goto done;
  if (!rans_reader_done(&ry)) {
    nn_set_error("e2ecodec: latent payload is corrupt (does not decode to its exact length)");
    goto done;
  }
  ok = reconstruct(c, hd.quality, y_hat, pw, ph, w, h, rgb);
done:
  nn_no_grad_end();
  nn_arena_reset(nn_arena_current());
  return ok;
}
