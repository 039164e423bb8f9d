/* Batch norm, layer norm, dropout and GDN. */
#include <stdlib.h>

#include "internal.h"

/* ------------------------------------------------------------- batch norm */

typedef struct {
  const float *x, *g;
  float *y;
  const float *scale, *shift; /* per channel */
  int64_t N, C, S;
  bool relu;
} bn_ctx;

static void bn_apply(void *p, int64_t c0, int64_t c1) {
  bn_ctx *c = p;
  for (int64_t ch = c0; ch < c1; ch++)
    for (int64_t n = 0; n < c->N; n++) {
      const float *x = c->x + (n * c->C + ch) * c->S;
      float *y = c->y + (n * c->C + ch) * c->S;
      float a = c->scale[ch], b = c->shift[ch];
      if (c->relu)
        for (int64_t i = 0; i < c->S; i++) {
          float v = x[i] * a + b;
          y[i] = v > 0.0f ? v : 0.0f;
        }
      else
        for (int64_t i = 0; i < c->S; i++) y[i] = x[i] * a + b;
    }
}

/* Sums over one row of a channel in 16 float lanes (as nn_lane_sum), each row's total then added in
 * double. */
enum { BN_LANES = 16 };

static double row_sq_dev(const float *x, int64_t n, float m) {
  float acc[BN_LANES] = {0};
  int64_t i = 0;
  for (; i + BN_LANES <= n; i += BN_LANES)
    for (int j = 0; j < BN_LANES; j++) acc[j] += (x[i + j] - m) * (x[i + j] - m);
  double s = 0;
  for (; i < n; i++) s += (double)(x[i] - m) * (x[i] - m);
  for (int j = 0; j < BN_LANES; j++) s += acc[j];
  return s;
}

/* sum of g, and of g * (x - m); with y (a fused ReLU's output) g counts only where y > 0 */
static void row_grad_sums(const float *g, const float *x, const float *y, int64_t n, float m, double *sg, double *sgx) {
  float a[BN_LANES] = {0}, b[BN_LANES] = {0};
  int64_t i = 0;
  if (y)
    for (; i + BN_LANES <= n; i += BN_LANES)
      for (int j = 0; j < BN_LANES; j++) { /* a select of constants: GCC if-converts and vectorises it */
        float gv = g[i + j] * (y[i + j] > 0.0f ? 1.0f : 0.0f);
        a[j] += gv, b[j] += gv * (x[i + j] - m);
      }
  else
    for (; i + BN_LANES <= n; i += BN_LANES)
      for (int j = 0; j < BN_LANES; j++) a[j] += g[i + j], b[j] += g[i + j] * (x[i + j] - m);
  double s = 0, t = 0;
  for (; i < n; i++) {
    float gv = !y || y[i] > 0.0f ? g[i] : 0.0f;
    s += gv, t += (double)gv * (x[i] - m);
  }
  for (int j = 0; j < BN_LANES; j++) s += a[j], t += b[j];
  *sg += s, *sgx += t;
}

typedef struct {
  const float *xd, *gd, *mean, *invstd, *gam;
  const float *yd; /* a fused ReLU's output, or NULL */
  float *gx, *gg, *gb;
  int64_t N, C, S;
  bool training;
} bn_bw_ctx;

/* Each channel's sums and gradients are computed by one thread: no cross-thread reductions. */
static void bn_bw_channels(void *p, int64_t c0, int64_t c1) {
  bn_bw_ctx *k = p;
  int64_t N = k->N, C = k->C, S = k->S;
  double M = (double)(N * S);
  for (int64_t c = c0; c < c1; c++) {
    double sg = 0, sgx = 0;
    float mc = k->mean[c], ic = k->invstd[c];
    for (int64_t b = 0; b < N; b++)
      row_grad_sums(k->gd + (b * C + c) * S, k->xd + (b * C + c) * S, k->yd ? k->yd + (b * C + c) * S : NULL, S, mc,
                    &sg, &sgx);
    sgx *= ic;
    if (k->gg) k->gg[c] = (float)sgx;
    if (k->gb) k->gb[c] = (float)sg;
    if (!k->gx) continue;
    float kk = (k->gam ? k->gam[c] : 1.0f) * ic;
    float a = (float)(sg / M), bcoef = (float)(sgx / M);
    for (int64_t b = 0; b < N; b++) {
      const float *xp = k->xd + (b * C + c) * S, *gp = k->gd + (b * C + c) * S;
      float *dx = k->gx + (b * C + c) * S;
      const float *yp = k->yd ? k->yd + (b * C + c) * S : NULL;
      if (k->training && yp)
        for (int64_t i = 0; i < S; i++) dx[i] = kk * (gp[i] * (yp[i] > 0.0f ? 1.0f : 0.0f) - a - (xp[i] - mc) * ic * bcoef);
      else if (k->training)
        for (int64_t i = 0; i < S; i++) dx[i] = kk * (gp[i] - a - (xp[i] - mc) * ic * bcoef);
      else if (yp)
        for (int64_t i = 0; i < S; i++) dx[i] = yp[i] > 0.0f ? kk * gp[i] : 0.0f;
      else
        for (int64_t i = 0; i < S; i++) dx[i] = kk * gp[i];
    }
  }
}

static void bn_bw(nn_node *n, nn_tensor *g) {
  nn_tensor *x = n->in[0], *gamma = n->in[1], *beta = n->in[2];
  int64_t C = n->i[1];
  nn_tensor *gx = nn_needs_grad(x) ? nn_empty(NN_F32, x->ndim, x->shape) : NULL;
  nn_tensor *gg = nn_needs_grad(gamma) ? nn_empty(NN_F32, 1, &C) : NULL;
  nn_tensor *gb = nn_needs_grad(beta) ? nn_empty(NN_F32, 1, &C) : NULL;
  bn_bw_ctx k = {.xd = nn_f32(n->saved[0]), .gd = nn_dense_f32(g), .mean = nn_f32(n->saved[1]),
                 .invstd = nn_f32(n->saved[2]), .gam = gamma ? nn_f32(n->saved[3]) : NULL,
                 .gx = gx ? nn_f32(gx) : NULL, .gg = gg ? nn_f32(gg) : NULL, .gb = gb ? nn_f32(gb) : NULL,
                 .N = n->i[0], .C = C, .S = n->i[2], .training = n->i[3], .yd = n->i[4] ? nn_f32(n->out) : NULL};
  nn_parallel_for(C, 1, bn_bw_channels, &k);
  if (gx) nn_accum_grad_owned(x, gx);
  if (gg) nn_accum_grad(gamma, gg);
  if (gb) nn_accum_grad(beta, gb);
}

typedef struct {
  const float *xd;
  float *mean, *var;
  int64_t N, C, S;
} bn_stats_ctx;

static void bn_stats_channels(void *p, int64_t c0, int64_t c1) {
  bn_stats_ctx *k = p;
  for (int64_t c = c0; c < c1; c++) {
    double s = 0, s2 = 0;
    for (int64_t b = 0; b < k->N; b++) s += nn_lane_sum(k->xd + (b * k->C + c) * k->S, k->S);
    double m = s / (double)(k->N * k->S);
    for (int64_t b = 0; b < k->N; b++) s2 += row_sq_dev(k->xd + (b * k->C + c) * k->S, k->S, (float)m);
    k->mean[c] = (float)m;
    k->var[c] = (float)(s2 / (double)(k->N * k->S));
  }
}

static nn_tensor *batch_norm(nn_tensor *x, nn_tensor *gamma, nn_tensor *beta, nn_tensor *rmean, nn_tensor *rvar,
                             bool training, float momentum, float eps, bool relu) {
  if (!x) return NULL;
  NN_CHECK_F32(x, "batch_norm");
  if (x->ndim < 2) NN_FAIL("batch_norm: need x[N, C, ...]");
  int64_t N = x->shape[0], C = x->shape[1], S = 1;
  for (int d = 2; d < x->ndim; d++) S *= x->shape[d];
  nn_tensor *ps[4] = {gamma, beta, rmean, rvar};
  for (int i = 0; i < 4; i++)
    if (ps[i] && (ps[i]->ndim != 1 || ps[i]->shape[0] != C || ps[i]->dtype != NN_F32))
      NN_FAIL("batch_norm: parameters and running stats must be f32 [%lld]", (long long)C);
  if (!training && (!rmean || !rvar)) NN_FAIL("batch_norm: eval mode needs running mean and variance");
  if (training && N * S < 2) NN_FAIL("batch_norm: training needs more than one value per channel");
  const float *xd = nn_dense_f32(x);
  nn_tensor *mean = nn_empty(NN_F32, 1, &C), *invstd = nn_empty(NN_F32, 1, &C);
  nn_tensor *scale = nn_empty(NN_F32, 1, &C), *shift = nn_empty(NN_F32, 1, &C);
  nn_tensor *out = nn_empty(NN_F32, x->ndim, x->shape);
  nn_tensor *gam = gamma ? nn_contiguous(nn_detach(gamma)) : NULL;
  if (!xd || !mean || !invstd || !scale || !shift || !out) return NULL;
  if (training) {
    bn_stats_ctx k = {.xd = xd, .mean = nn_f32(mean), .var = nn_f32(invstd), .N = N, .C = C, .S = S};
    nn_parallel_for(C, 1, bn_stats_channels, &k);
  }
  for (int64_t c = 0; c < C; c++) {
    double m, v;
    if (training) {
      m = nn_f32(mean)[c];
      v = nn_f32(invstd)[c]; /* holds the batch variance until overwritten below */
      if (rmean) nn_f32(rmean)[c] = (float)((1 - momentum) * nn_f32(rmean)[c] + momentum * m);
      if (rvar) nn_f32(rvar)[c] = (float)((1 - momentum) * nn_f32(rvar)[c] + momentum * v * (double)(N * S) / (double)(N * S - 1));
    } else {
      m = nn_f32(rmean)[c];
      v = nn_f32(rvar)[c];
    }
    float is = (float)(1.0 / sqrt(v + eps));
    nn_f32(mean)[c] = (float)m;
    nn_f32(invstd)[c] = is;
    float gm = gam ? nn_f32(gam)[c] : 1.0f, bt = beta ? nn_get(beta, &c) : 0.0f;
    nn_f32(scale)[c] = gm * is;
    nn_f32(shift)[c] = bt - (float)m * gm * is;
  }
  bn_ctx ctx = {.x = xd, .y = nn_f32(out), .scale = nn_f32(scale), .shift = nn_f32(shift), .N = N, .C = C, .S = S,
                .relu = relu};
  nn_parallel_for(C, 1, bn_apply, &ctx);
  nn_node *n = nn_record(out, relu ? "batch_norm_relu" : "batch_norm", bn_bw, 3, x, gamma, beta);
  if (n) {
    n->i[0] = N;
    n->i[1] = C;
    n->i[2] = S;
    n->i[3] = training;
    n->i[4] = relu;
    n->saved[0] = nn_is_contiguous(x) ? x : NULL;
    if (!n->saved[0]) {
      n->saved[0] = nn_empty(NN_F32, x->ndim, x->shape);
      if (n->saved[0]) memcpy(nn_f32(n->saved[0]), xd, (size_t)nn_numel(x) * 4);
    }
    n->saved[1] = mean;
    n->saved[2] = invstd;
    n->saved[3] = gam;
  }
  return out;
}

nn_tensor *nn_batch_norm(nn_tensor *x, nn_tensor *gamma, nn_tensor *beta, nn_tensor *rmean, nn_tensor *rvar,
                         bool training, float momentum, float eps) {
  return batch_norm(x, gamma, beta, rmean, rvar, training, momentum, eps, false);
}

/* One pass over the activations instead of two, forward and backward: the ReLU's mask is its output. */
nn_tensor *nn_batch_norm_relu(nn_tensor *x, nn_tensor *gamma, nn_tensor *beta, nn_tensor *rmean, nn_tensor *rvar,
                              bool training, float momentum, float eps) {
  return batch_norm(x, gamma, beta, rmean, rvar, training, momentum, eps, true);
}

/* ------------------------------------------------------------- layer norm */

typedef struct {
  const float *x, *gamma, *beta, *g;
  float *y, *mean, *invstd, *dx;
  int64_t D;
  float eps;
} ln_ctx;

static void ln_rows(void *p, int64_t r0, int64_t r1) {
  ln_ctx *c = p;
  for (int64_t r = r0; r < r1; r++) {
    const float *x = c->x + r * c->D;
    float *y = c->y + r * c->D;
    double s = 0, s2 = 0;
    for (int64_t i = 0; i < c->D; i++) s += x[i];
    double m = s / (double)c->D;
    for (int64_t i = 0; i < c->D; i++) s2 += (x[i] - m) * (x[i] - m);
    float is = (float)(1.0 / sqrt(s2 / (double)c->D + c->eps));
    c->mean[r] = (float)m;
    c->invstd[r] = is;
    for (int64_t i = 0; i < c->D; i++) {
      float xh = (x[i] - (float)m) * is;
      y[i] = xh * (c->gamma ? c->gamma[i] : 1.0f) + (c->beta ? c->beta[i] : 0.0f);
    }
  }
}

static void ln_bw_rows(void *p, int64_t r0, int64_t r1) {
  ln_ctx *c = p;
  for (int64_t r = r0; r < r1; r++) {
    const float *x = c->x + r * c->D, *g = c->g + r * c->D;
    float *dx = c->dx + r * c->D;
    float m = c->mean[r], is = c->invstd[r];
    double s1 = 0, s2 = 0;
    for (int64_t i = 0; i < c->D; i++) {
      float dxh = g[i] * (c->gamma ? c->gamma[i] : 1.0f);
      float xh = (x[i] - m) * is;
      s1 += dxh;
      s2 += dxh * xh;
    }
    float a = (float)(s1 / (double)c->D), b = (float)(s2 / (double)c->D);
    for (int64_t i = 0; i < c->D; i++) {
      float dxh = g[i] * (c->gamma ? c->gamma[i] : 1.0f);
      float xh = (x[i] - m) * is;
      dx[i] = is * (dxh - a - xh * b);
    }
  }
}

static void ln_bw(nn_node *n, nn_tensor *g) {
  nn_tensor *x = n->in[0], *gamma = n->in[1], *beta = n->in[2];
  int64_t D = n->i[0], rows = n->i[1];
  ln_ctx c = {.x = nn_f32(n->saved[0]), .gamma = n->saved[3] ? nn_f32(n->saved[3]) : NULL,
              .g = nn_dense_f32(g), .mean = nn_f32(n->saved[1]), .invstd = nn_f32(n->saved[2]), .D = D};
  if (nn_needs_grad(x)) {
    nn_tensor *gx = nn_empty(NN_F32, x->ndim, x->shape);
    if (!gx) return;
    c.dx = nn_f32(gx);
    nn_parallel_for(rows, 16, ln_bw_rows, &c);
    nn_accum_grad(x, gx);
  }
  if (nn_needs_grad(gamma) || nn_needs_grad(beta)) {
    nn_tensor *gg = nn_zeros(NN_F32, 1, &D), *gb = nn_zeros(NN_F32, 1, &D);
    if (!gg || !gb) return;
    for (int64_t r = 0; r < rows; r++)
      for (int64_t i = 0; i < D; i++) {
        float xh = (c.x[r * D + i] - c.mean[r]) * c.invstd[r];
        nn_f32(gg)[i] += c.g[r * D + i] * xh;
        nn_f32(gb)[i] += c.g[r * D + i];
      }
    nn_accum_grad(gamma, gg);
    nn_accum_grad(beta, gb);
  }
}

nn_tensor *nn_layer_norm(nn_tensor *x, nn_tensor *gamma, nn_tensor *beta, float eps) {
  if (!x) return NULL;
  NN_CHECK_F32(x, "layer_norm");
  if (x->ndim < 1) NN_FAIL("layer_norm: need at least one dim");
  int64_t D = x->shape[x->ndim - 1], rows = D ? nn_numel(x) / D : 0;
  if ((gamma && (gamma->ndim != 1 || gamma->shape[0] != D)) || (beta && (beta->ndim != 1 || beta->shape[0] != D)))
    NN_FAIL("layer_norm: gamma/beta must be [%lld]", (long long)D);
  nn_tensor *xc = nn_contiguous(nn_detach(x));
  nn_tensor *gc = gamma ? nn_contiguous(nn_detach(gamma)) : NULL;
  nn_tensor *bc = beta ? nn_contiguous(nn_detach(beta)) : NULL;
  nn_tensor *out = nn_empty(NN_F32, x->ndim, x->shape);
  nn_tensor *mean = nn_empty(NN_F32, 1, &rows), *invstd = nn_empty(NN_F32, 1, &rows);
  if (!xc || !out || !mean || !invstd) return NULL;
  ln_ctx c = {.x = nn_f32(xc), .gamma = gc ? nn_f32(gc) : NULL, .beta = bc ? nn_f32(bc) : NULL,
              .y = nn_f32(out), .mean = nn_f32(mean), .invstd = nn_f32(invstd), .D = D, .eps = eps};
  nn_parallel_for(rows, 16, ln_rows, &c);
  nn_node *n = nn_record(out, "layer_norm", ln_bw, 3, x, gamma, beta);
  if (n) {
    n->i[0] = D;
    n->i[1] = rows;
    n->saved[0] = xc;
    n->saved[1] = mean;
    n->saved[2] = invstd;
    n->saved[3] = gc;
  }
  return out;
}

/* ---------------------------------------------------------------- dropout */

nn_tensor *nn_dropout(nn_tensor *x, float p, bool training, nn_rng *rng) {
  if (!x) return NULL;
  if (!(p >= 0.0f && p < 1.0f)) NN_FAIL("dropout: p must be in [0, 1), got %g", p);
  if (!training || p == 0.0f) return x;
  if (!rng) NN_FAIL("dropout: training mode needs an rng");
  nn_tensor *mask = nn_empty(NN_F32, x->ndim, x->shape);
  if (!mask) return NULL;
  float keep = 1.0f / (1.0f - p);
  int64_t n = nn_numel(mask);
  for (int64_t i = 0; i < n; i++) nn_f32(mask)[i] = nn_rng_uniform(rng) < p ? 0.0f : keep;
  return nn_mul(x, mask);
}

/* -------------------------------------------------------------------- GDN */

/* GDN fused over tiles of pixels (inference, and training's forward pass): square,
 * 1x1 "convolution" with gamma, square root and divide all happen while a tile is
 * in cache. The unfused graph streams four full-size tensors through memory
 * instead, which costs about as much as the GEMM itself on a codec's large early
 * layers. Tiles are fixed, whatever the thread count, so results do not depend on it. */
#define GDN_TILE 256

typedef struct {
  const float *x, *beta, *gamma;
  float *out, *r; /* r: sqrt of the norm, kept for the backward pass (NULL in inference) */
  int64_t C, HW, tiles;
  bool inverse;
  bool oom;
} gdn_ctx;

static void gdn_tiles(void *p, int64_t t0, int64_t t1) {
  gdn_ctx *c = p;
  int64_t C = c->C, HW = c->HW;
  float *sq = malloc(sizeof(float) * (size_t)(2 * C * GDN_TILE));
  if (!sq) {
    c->oom = true; /* the caller reports it */
    return;
  }
  float *nrm = sq + C * GDN_TILE;
  for (int64_t t = t0; t < t1; t++) {
    int64_t img = t / c->tiles, p0 = (t % c->tiles) * GDN_TILE, np = HW - p0 < GDN_TILE ? HW - p0 : GDN_TILE;
    const float *x = c->x + img * C * HW + p0;
    float *o = c->out + img * C * HW + p0;
    for (int64_t k = 0; k < C; k++)
      for (int64_t j = 0; j < np; j++) {
        float v = x[k * HW + j];
        sq[k * np + j] = v * v;
        nrm[k * np + j] = c->beta[k];
      }
    nn_sgemm(false, false, C, np, C, 1.0f, c->gamma, C, sq, np, 1.0f, nrm, np);
    for (int64_t k = 0; k < C; k++)
      for (int64_t j = 0; j < np; j++) {
        float r = sqrtf(nrm[k * np + j]);
        o[k * HW + j] = c->inverse ? x[k * HW + j] * r : x[k * HW + j] / r;
        if (c->r) c->r[img * C * HW + p0 + k * HW + j] = r;
      }
  }
  free(sq);
}

/* out may be x itself: a tile's outputs are written only after its whole norm is computed. With r,
 * the square roots of the norm are kept there too. */
static nn_tensor *gdn_tiled(nn_tensor *x, nn_tensor *beta, nn_tensor *gamma, bool inverse, nn_tensor *out, float *r) {
  int64_t N = x->shape[0], C = x->shape[1], HW = x->shape[2] * x->shape[3];
  const float *xd = nn_dense_f32(x), *bd = nn_dense_f32(beta), *gd = nn_dense_f32(gamma);
  if (!out || !xd || !bd || !gd) return NULL;
  gdn_ctx c = {.x = xd, .beta = bd, .gamma = gd, .out = nn_f32(out), .r = r, .C = C, .HW = HW,
               .tiles = (HW + GDN_TILE - 1) / GDN_TILE, .inverse = inverse};
  nn_parallel_for(N * c.tiles, 1, gdn_tiles, &c);
  if (c.oom) NN_FAIL("gdn: out of memory for a tile");
  return out;
}

static bool gdn_args_ok(const nn_tensor *x, const nn_tensor *beta, const nn_tensor *gamma, const char *who) {
  if (!x || !beta || !gamma) return false;
  if (x->ndim != 4) {
    nn_set_error("%s: need x[N,C,H,W]", who);
    return false;
  }
  int64_t C = x->shape[1];
  if (beta->ndim != 1 || beta->shape[0] != C || gamma->ndim != 2 || gamma->shape[0] != C || gamma->shape[1] != C) {
    nn_set_error("%s: need beta[%lld] and gamma[%lld,%lld]", who, (long long)C, (long long)C, (long long)C);
    return false;
  }
  if (x->dtype != NN_F32) {
    nn_set_error("%s: expected f32 tensor, got %s", who, nn_dtype_name(x->dtype));
    return false;
  }
  return true;
}

static bool gdn_needs_graph(const nn_tensor *x, const nn_tensor *beta, const nn_tensor *gamma) {
  return nn_grad_enabled() && (nn_needs_grad(x) || nn_needs_grad(beta) || nn_needs_grad(gamma));
}

nn_tensor *nn_gdn_(nn_tensor *x, nn_tensor *beta, nn_tensor *gamma, bool inverse) {
  if (!gdn_args_ok(x, beta, gamma, "gdn_")) return NULL;
  if (gdn_needs_graph(x, beta, gamma)) NN_FAIL("gdn_: in place only where no gradient is needed");
  if (!nn_is_contiguous(x)) NN_FAIL("gdn_: x must be contiguous");
  return gdn_tiled(x, beta, gamma, inverse, x, NULL);
}

/* The backward pass, over the forward's tiles. With n = beta + gamma x^2 and r = sqrt(n), the gradient
 * reaching the norm is u = -g x / (2 r^3) (y = x / r) or g x / (2 r) (y = x r); then
 * dx = g / r (or g r) + 2 x (gamma^T u), dbeta = sum of u over pixels, dgamma = u (x^2)^T. The
 * parameters' sums are kept per block of GDN_BW_BLOCK tiles and added in block order, so that they do
 * not depend on the thread count either. */
#define GDN_BW_BLOCK 16

typedef struct {
  const float *x, *r, *g, *gamma;
  float *dx, *dbeta, *dgamma; /* dbeta [blocks][C], dgamma [blocks][C][C]; NULL when not needed */
  int64_t C, HW, tiles, blocks_per_image;
  bool inverse, oom;
} gdn_bw_ctx;

static void gdn_bw_blocks(void *p, int64_t b0, int64_t b1) {
  gdn_bw_ctx *c = p;
  int64_t C = c->C, HW = c->HW;
  float *u = malloc(sizeof(float) * (size_t)(3 * C * GDN_TILE)), *sq = u + C * GDN_TILE, *s = sq + C * GDN_TILE;
  if (!u) {
    c->oom = true;
    return;
  }
  for (int64_t b = b0; b < b1; b++) {
    int64_t img = b / c->blocks_per_image, t0 = (b % c->blocks_per_image) * GDN_BW_BLOCK;
    float *db = c->dbeta ? c->dbeta + b * C : NULL, *dg = c->dgamma ? c->dgamma + b * C * C : NULL;
    if (db) memset(db, 0, sizeof(float) * (size_t)C);
    if (dg) memset(dg, 0, sizeof(float) * (size_t)(C * C));
    for (int64_t t = t0; t < t0 + GDN_BW_BLOCK && t < c->tiles; t++) {
      int64_t p0 = t * GDN_TILE, np = HW - p0 < GDN_TILE ? HW - p0 : GDN_TILE, off = img * C * HW + p0;
      const float *x = c->x + off, *r = c->r + off, *g = c->g + off;
      for (int64_t k = 0; k < C; k++)
        for (int64_t j = 0; j < np; j++) {
          float xv = x[k * HW + j], rv = r[k * HW + j], gv = g[k * HW + j];
          u[k * np + j] = c->inverse ? 0.5f * gv * xv / rv : -0.5f * gv * xv / (rv * rv * rv);
          sq[k * np + j] = xv * xv;
        }
      if (c->dx) {
        nn_sgemm(true, false, C, np, C, 1.0f, c->gamma, C, u, np, 0.0f, s, np);
        float *dx = c->dx + off;
        for (int64_t k = 0; k < C; k++)
          for (int64_t j = 0; j < np; j++) {
            float xv = x[k * HW + j], rv = r[k * HW + j], gv = g[k * HW + j];
            dx[k * HW + j] = (c->inverse ? gv * rv : gv / rv) + 2.0f * xv * s[k * np + j];
          }
      }
      if (db)
        for (int64_t k = 0; k < C; k++)
          for (int64_t j = 0; j < np; j++) db[k] += u[k * np + j];
      if (dg) nn_sgemm(false, true, C, C, np, 1.0f, u, np, sq, np, 1.0f, dg, C);
    }
  }
  free(u);
}

/* sums per block -> [C] or [C, C], in block order */
static nn_tensor *gdn_block_sum(const float *parts, int64_t blocks, int ndim, const int64_t *shape, int64_t len) {
  nn_tensor *t = nn_zeros(NN_F32, ndim, shape);
  if (!t) return NULL;
  for (int64_t b = 0; b < blocks; b++)
    for (int64_t i = 0; i < len; i++) nn_f32(t)[i] += parts[b * len + i];
  return t;
}

static void gdn_bw(nn_node *n, nn_tensor *gout) {
  nn_tensor *x = n->in[0], *beta = n->in[1], *gamma = n->in[2];
  int64_t N = n->i[0], C = n->i[1], HW = n->i[2], tiles = (HW + GDN_TILE - 1) / GDN_TILE;
  int64_t bpi = (tiles + GDN_BW_BLOCK - 1) / GDN_BW_BLOCK, blocks = N * bpi;
  nn_tensor *dx = nn_needs_grad(x) ? nn_empty(NN_F32, x->ndim, x->shape) : NULL;
  float *db = nn_needs_grad(beta) ? malloc(sizeof(float) * (size_t)(blocks * C)) : NULL;
  float *dg = nn_needs_grad(gamma) ? malloc(sizeof(float) * (size_t)(blocks * C * C)) : NULL;
  const float *gd = nn_dense_f32(gout), *gam = nn_dense_f32(gamma);
  gdn_bw_ctx c = {.x = nn_f32(n->saved[0]), .r = nn_f32(n->saved[1]), .g = gd, .gamma = gam,
                  .dx = dx ? nn_f32(dx) : NULL, .dbeta = db, .dgamma = dg, .C = C, .HW = HW, .tiles = tiles,
                  .blocks_per_image = bpi, .inverse = n->i[3] != 0};
  bool ok = gd && gam && (dx || !nn_needs_grad(x)) && (db || !nn_needs_grad(beta)) && (dg || !nn_needs_grad(gamma));
  if (ok) nn_parallel_for(blocks, 1, gdn_bw_blocks, &c);
  if (!ok || c.oom) {
    nn_set_error("gdn: out of memory in the backward pass");
  } else {
    nn_accum_grad(x, dx);
    if (db) nn_accum_grad(beta, gdn_block_sum(db, blocks, 1, &C, C));
    if (dg) nn_accum_grad(gamma, gdn_block_sum(dg, blocks, 2, (int64_t[]){C, C}, C * C));
  }
  free(db);
  free(dg);
}

nn_tensor *nn_gdn(nn_tensor *x, nn_tensor *beta, nn_tensor *gamma, bool inverse) {
  if (!gdn_args_ok(x, beta, gamma, "gdn")) return NULL;
  if (!gdn_needs_graph(x, beta, gamma)) return gdn_tiled(x, beta, gamma, inverse, nn_empty(NN_F32, 4, x->shape), NULL);
  /* training: the same tiles, keeping r = sqrt(beta + gamma x^2) for the backward pass */
  nn_tensor *xc = nn_contiguous(x), *r = nn_empty(NN_F32, 4, x->shape);
  nn_tensor *out = xc && r ? gdn_tiled(xc, beta, gamma, inverse, nn_empty(NN_F32, 4, x->shape), nn_f32(r)) : NULL;
  nn_node *n = out ? nn_record(out, "gdn", gdn_bw, 3, x, beta, gamma) : NULL;
  if (n) {
    n->i[0] = x->shape[0];
    n->i[1] = x->shape[1];
    n->i[2] = x->shape[2] * x->shape[3];
    n->i[3] = inverse;
    n->saved[0] = xc;
    n->saved[1] = r;
  }
  return out;
}
