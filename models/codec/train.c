/* Training: the forward pass that training minimises, and model surgery (growing a trained model while
 * keeping what it computes, so that training goes on from it). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"
#include "task.h"

static nn_tensor *uniform_noise(const nn_tensor *like, nn_rng *rng) {
  nn_tensor *u = nn_empty(NN_F32, like->ndim, like->shape);
  if (!u) return NULL;
  float *d = nn_f32(u);
  for (int64_t i = 0, n = nn_numel(u); i < n; i++) d[i] = nn_rng_uniform(rng) - 0.5f;
  return u;
}

/* round(v) - v as a constant: adding it is rounding with an identity gradient */
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
    if (!codec_quality_valid(quality[i])) return NULL;
    nn_f32(lam)[i] = codec_lambda(&c->cfg, quality[i]) * 255.0f * 255.0f;
  }
  nn_tensor *y = nn_mul(codec_analysis(c, x, quality, false), codec_gains_for(c->gain_enc, quality, nb));
  nn_tensor *z = codec_hyper_analysis(c, y, false);
  if (!z) return NULL;
  int64_t ms[4] = {1, c->cfg.n, 1, 1};
  nn_tensor *z_tilde = nn_add(z, uniform_noise(z, rng));
  nn_tensor *bits_z = nn_gaussian_bits(nn_sub(z_tilde, nn_reshape(nn_params_find(&c->p, "z.mean"), 4, ms)),
                                       z_scales(c, z), CODEC_SCALE_MIN);
  nn_tensor *means = NULL;
  nn_tensor *scales = codec_hyper_synthesis(c, z_tilde, &means);
  codec_context_params(c, y, &means, &scales);
  /* the residual from the predicted mean is what gets coded: y_hat = round(y - mean) + mean */
  nn_tensor *r = means ? nn_sub(y, means) : y;
  nn_tensor *bits_y = nn_gaussian_bits(nn_add(r, uniform_noise(r, rng)), scales, CODEC_SCALE_MIN);
  nn_tensor *y_hat = nn_add(y, codec_rounding_offset(r));
  nn_tensor *x_hat = codec_synthesis_levels(c, nn_mul(y_hat, codec_gains_for(c->gain_dec, quality, nb)), quality);
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
  codec_tables_from_buffers(&w);
  w.model_id = e2e_params_hash(&w.p);
  codec_free(c);
  *c = w;
  return true;
}

/* Turns on the mean head (whose new layer starts at zero: it predicts 0, as the scale-only model assumed) or
 * level modulation (whose scales keep their initial 1s): either way the model computes what it did. */
static bool add_part(codec_model *c, bool mean_head, uint64_t seed) {
  if (mean_head ? c->cfg.mean_scale : c->cfg.level_mod) {
    nn_set_error(mean_head ? "codec: the model already predicts means" : "codec: the model already has level modulation");
    return false;
  }
  codec_config cfg = c->cfg;
  *(mean_head ? &cfg.mean_scale : &cfg.level_mod) = true;
  return regrow(c, &cfg, seed, mean_head);
}

bool codec_add_mean_head(codec_model *c, uint64_t seed) { return add_part(c, true, seed); }
bool codec_add_level_mod(codec_model *c, uint64_t seed) { return add_part(c, false, seed); }

/* The new layers keep their initialisation: corrections of zero, so the model computes what it did (the
 * stream's symbol order changes, not its symbols). */
static bool add_context_model(codec_model *c, int channels, uint64_t seed, bool anchors) {
  if (anchors ? !c->cfg.context || c->cfg.anchor_context : c->cfg.context != 0) {
    nn_set_error(anchors ? "codec: an anchors' context needs a model with a context model and none for its anchors yet"
                         : "codec: the model already has a context model");
    return false;
  }
  if (channels < 1) {
    nn_set_error("codec: a context model needs at least one channel");
    return false;
  }
  codec_config cfg = c->cfg;
  *(anchors ? &cfg.anchor_context : &cfg.context) = channels;
  return regrow(c, &cfg, seed, false);
}

bool codec_add_context(codec_model *c, int channels, uint64_t seed) { return add_context_model(c, channels, seed, false); }

bool codec_add_anchor_context(codec_model *c, int channels, uint64_t seed) {
  return add_context_model(c, channels, seed, true);
}

bool codec_set_lambdas(codec_model *c, const float *lambda) {
  if (!codec_lambdas_valid(lambda)) return false;
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

