/* The hyper-synthesis (z_hat -> scales of y) with one fixed summation order.
 *
 * Entropy decoding needs the decoder to pick exactly the probability tables
 * the encoder picked. GEMM libraries sum in an order that depends on the CPU's
 * kernel and on blocking, so this path uses plain loops instead: every output
 * starts from its bias and adds input channel by input channel, tap by tap,
 * in ascending order, one rounded multiply and one rounded add per tap. The
 * project compiles with -ffp-contract=off (no fused multiply-add), so the
 * result is the same IEEE float on any x86-64 build, at any vector width and
 * any thread count.
 *
 * Speed comes from keeping that order while vectorising across output pixels:
 * a block of four output channels by sixteen pixels stays in registers while
 * the input channels and taps stream past (AVX2 where the CPU has it, chosen
 * at load time; plain SSE pairs otherwise, same results), and blocks of output
 * channels are split across nncore's threads. Inputs are zero-padded, so a tap
 * outside the picture adds w * 0: the sum is unchanged (at most a zero's sign,
 * which the ReLUs remove; a mean of -0 instead of +0 codes and decodes the
 * same values). */
#include <stdlib.h>
#include <string.h>

#include "internal.h"

/* not under a sanitizer: the clones' resolver runs before the sanitizer's runtime is up, and crashes */
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && !defined(__SANITIZE_ADDRESS__) && \
    !defined(__SANITIZE_THREAD__)
#define VECTOR_CLONES __attribute__((target_clones("avx2", "default")))
#else
#define VECTOR_CLONES
#endif

typedef float v8 __attribute__((vector_size(32)));

#define OCB 4   /* output channels per block */
#define XB 16   /* output pixels per block: two vectors */
#define SLACK 24 /* floats past a padded row that a block's loads may touch (their outputs are dropped) */
#define MAX_TAPS 13 /* a 5x5 window has at most 13 taps on one colour (the second half's context uses 12, the anchors' 4) */

static inline v8 load8(const float *p) {
  v8 v;
  memcpy(&v, p, sizeof v);
  return v;
}

/* One correlation: out[oc][y][x] = relu(b[oc] + sum over ic, then taps t, of w * in[ic][y + ry_t][x + rx_t]),
 * the input zero-padded and the taps in the reference order (no ReLU for the mean head). */
typedef struct {
  const float *in;
  int64_t in_chan, in_row;
  int C, OC, H, W, T;
  int64_t roff[MAX_TAPS]; /* ry * in_row + rx per tap */
  const float *wpk;       /* [OC / OCB][C][T][OCB], zero for channels past OC */
  const float *b;         /* NULL: no bias */
  float *out;
  int64_t out_chan, out_row, out_col;
  bool relu;
} corr_job;

VECTOR_CLONES static void corr_blocks(void *ctx, int64_t g0, int64_t g1) {
  const corr_job *J = ctx;
  for (int64_t g = g0; g < g1; g++) {
    int oc0 = (int)g * OCB;
    float bias[OCB];
    for (int j = 0; j < OCB; j++) bias[j] = J->b && oc0 + j < J->OC ? J->b[oc0 + j] : 0;
    for (int y = 0; y < J->H; y++)
      for (int x0 = 0; x0 < J->W; x0 += XB) {
        v8 a00 = {0}, a01, a10, a11, a20, a21, a30, a31;
        a00 = a00 + bias[0], a01 = a00;
        a10 = (v8){0} + bias[1], a11 = a10;
        a20 = (v8){0} + bias[2], a21 = a20;
        a30 = (v8){0} + bias[3], a31 = a30;
        const float *wv = J->wpk + (size_t)g * J->C * J->T * OCB;
        for (int ic = 0; ic < J->C; ic++) {
          const float *base = J->in + ic * J->in_chan + y * J->in_row + x0;
          for (int t = 0; t < J->T; t++, wv += OCB) {
            v8 xa = load8(base + J->roff[t]), xb = load8(base + J->roff[t] + 8);
            a00 = a00 + xa * wv[0], a01 = a01 + xb * wv[0];
            a10 = a10 + xa * wv[1], a11 = a11 + xb * wv[1];
            a20 = a20 + xa * wv[2], a21 = a21 + xb * wv[2];
            a30 = a30 + xa * wv[3], a31 = a31 + xb * wv[3];
          }
        }
        float res[OCB][XB];
        memcpy(res[0], &a00, 32), memcpy(res[0] + 8, &a01, 32);
        memcpy(res[1], &a10, 32), memcpy(res[1] + 8, &a11, 32);
        memcpy(res[2], &a20, 32), memcpy(res[2] + 8, &a21, 32);
        memcpy(res[3], &a30, 32), memcpy(res[3] + 8, &a31, 32);
        int nx = J->W - x0 < XB ? J->W - x0 : XB;
        for (int j = 0; j < OCB && oc0 + j < J->OC; j++) {
          float *o = J->out + (oc0 + j) * J->out_chan + y * J->out_row + x0 * J->out_col;
          if (J->relu)
            for (int x = 0; x < nx; x++) o[x * J->out_col] = res[j][x] > 0 ? res[j][x] : 0;
          else
            for (int x = 0; x < nx; x++) o[x * J->out_col] = res[j][x];
        }
      }
  }
}

/* Packs w into [OC / OCB][C][T][OCB]; weight(ic, oc, t) reads the layer's own layout. */
static float *pack_weights(int C, int OC, int T, const float *w, int64_t s_ic, int64_t s_oc, const int64_t *t_off) {
  int nb = (OC + OCB - 1) / OCB;
  float *p = codec_scratch((size_t)nb * C * T * OCB, true);
  if (!p) return NULL;
  for (int g = 0; g < nb; g++)
    for (int ic = 0; ic < C; ic++)
      for (int t = 0; t < T; t++)
        for (int j = 0; j < OCB && g * OCB + j < OC; j++)
          p[(((size_t)g * C + ic) * T + t) * OCB + j] = w[ic * s_ic + (g * OCB + j) * s_oc + t_off[t]];
  return p;
}

/* A zero-padded copy layout: one row and column of zeros around, SLACK floats after each row. */
static int64_t padded_row(int W) { return W + 2 + SLACK; }
static size_t padded_size(int C, int H, int W) { return (size_t)C * (H + 2) * padded_row(W) + SLACK; }

/* Transposed conv, kernel 5, stride 2, padding 2, output padding 1, then ReLU: in (padded) [C][H][W] ->
 * out (padded) [OC][2H][2W]. Output phase (py, px) is a correlation over the taps ky = py (mod 2),
 * kx = px (mod 2), ascending; weights are [C][OC][5][5]. */
static bool deconv5s2_relu(const float *in, int C, int H, int W, const float *w, const float *b, int OC, float *out) {
  for (int py = 0; py < 2; py++)
    for (int px = 0; px < 2; px++) {
      corr_job J = {.in = in, .in_chan = (int64_t)(H + 2) * padded_row(W), .in_row = padded_row(W), .C = C, .OC = OC,
                    .H = H, .W = W, .b = b, .relu = true};
      int64_t t_off[MAX_TAPS];
      for (int ky = py; ky < 5; ky += 2)
        for (int kx = px; kx < 5; kx += 2) {
          int dy = (py + 2 - ky) / 2, dx = (px + 2 - kx) / 2;
          J.roff[J.T] = (dy + 1) * J.in_row + dx + 1;
          t_off[J.T++] = ky * 5 + kx;
        }
      float *wpk = pack_weights(C, OC, J.T, w, (int64_t)OC * 25, 25, t_off);
      if (!wpk) return false;
      J.wpk = wpk;
      int64_t orow = padded_row(2 * W);
      J.out = out + (1 + py) * orow + 1 + px;
      J.out_chan = (int64_t)(2 * H + 2) * orow, J.out_row = 2 * orow, J.out_col = 2;
      nn_parallel_for((OC + OCB - 1) / OCB, 1, corr_blocks, &J);
    }
  return true;
}

/* Conv 3x3, stride 1, padding 1, then ReLU if asked: in (padded) [C][H][W] -> out [OC][H][W]; weights [OC][C][3][3]. */
static bool conv3(const float *in, int C, int H, int W, const float *w, const float *b, int OC, bool relu, float *out) {
  corr_job J = {.in = in, .in_chan = (int64_t)(H + 2) * padded_row(W), .in_row = padded_row(W), .C = C, .OC = OC,
                .H = H, .W = W, .T = 9, .b = b, .out = out, .out_chan = (int64_t)H * W, .out_row = W, .out_col = 1,
                .relu = relu};
  int64_t t_off[MAX_TAPS];
  for (int t = 0; t < 9; t++) J.roff[t] = (t / 3) * J.in_row + t % 3, t_off[t] = t;
  float *wpk = pack_weights(C, OC, 9, w, 9, (int64_t)C * 9, t_off);
  if (!wpk) return false;
  J.wpk = wpk;
  nn_parallel_for((OC + OCB - 1) / OCB, 1, corr_blocks, &J);
  return true;
}

bool codec_hyper_scales_exact(const codec_model *c, const float *z_hat, int zh, int zw, float *scales, float *means) {
  int n = c->cfg.n, m = c->cfg.m;
  if (c->cfg.mean_scale && !means) {
    nn_set_error("e2ecodec: a mean-scale model needs somewhere to put the means");
    return false;
  }
  float *z_pad = codec_scratch(padded_size(n, zh, zw), true);
  float *h1 = codec_scratch(padded_size(n, 2 * zh, 2 * zw), true);
  float *h2 = codec_scratch(padded_size(n, 4 * zh, 4 * zw), true);
  bool ok = z_pad && h1 && h2;
  if (ok) {
    for (int ch = 0; ch < n; ch++)
      for (int y = 0; y < zh; y++)
        memcpy(z_pad + ((size_t)ch * (zh + 2) + y + 1) * padded_row(zw) + 1, z_hat + ((size_t)ch * zh + y) * zw,
               sizeof(float) * (size_t)zw);
    ok = deconv5s2_relu(z_pad, n, zh, zw, nn_f32(c->hs[0].weight), nn_f32(c->hs[0].bias), n, h1) &&
         deconv5s2_relu(h1, n, 2 * zh, 2 * zw, nn_f32(c->hs[1].weight), nn_f32(c->hs[1].bias), n, h2) &&
         conv3(h2, n, 4 * zh, 4 * zw, nn_f32(c->hs_out.weight), nn_f32(c->hs_out.bias), m, true, scales) &&
         (!c->cfg.mean_scale ||
          conv3(h2, n, 4 * zh, 4 * zw, nn_f32(c->hs_mean.weight), nn_f32(c->hs_mean.bias), m, false, means));
  }
  if (!ok) nn_set_error("e2ecodec: out of memory for the hyper-synthesis");
  return ok;
}

/* ---- checkerboard context ---- */

/* 1x1 correlation over rows of W + SLACK floats (and SLACK more at the end): out [OC][H][W] (no ReLU); weights
 * [OC][C][1][1]; b may be NULL */
static bool conv1(const float *in, int C, int H, int W, const float *w, const float *b, int OC, float *out) {
  corr_job J = {.in = in, .in_chan = (int64_t)H * (W + SLACK), .in_row = W + SLACK, .C = C, .OC = OC, .H = H,
                .W = W, .T = 1, .b = b, .out = out, .out_chan = (int64_t)H * W, .out_row = W, .out_col = 1};
  int64_t t_off[1] = {0};
  float *wpk = pack_weights(C, OC, 1, w, 1, C, t_off);
  if (!wpk) return false;
  J.wpk = wpk;
  nn_parallel_for((OC + OCB - 1) / OCB, 1, corr_blocks, &J);
  return true;
}

/* A context network's corrections for the positions of one checkerboard colour (target: 1 for the
 * second half, 0 for the anchors; with odd_rows, only those on odd rows) from the decoded anchors (their
 * values from the hyperprior mean, zero where not decoded yet), in units of the hyperprior's scales.
 * Everything runs on half-width planes: row y keeps its anchors (x = 2k + y % 2) in u and its target
 * positions (x = 2k + (y + target) % 2) in e. A tap (dy, dx) then lands at column k + d in u, where d depends on the
 * row's parity: even and odd rows run as two correlations, each stepping over every other row. Half the
 * work of the full-width window, the same sums. */
static bool context_exact(const codec_model *c, const nn_conv2d_layer *conv, const nn_conv2d_layer *spread,
                          const nn_conv2d_layer *mean_head, const nn_conv2d_layer *scale_head, int hidden, int target,
                          bool odd_rows, const float *anchors, const float *hyper_means, const float *hyper_scales, int H,
                          int W, float *means, float *scales) {
  int m = c->cfg.m, C = hidden, W2 = (W + 1) / 2;
  int64_t row_u = W2 + 4 + SLACK, row_e = W2 + SLACK;
  float *u = codec_scratch((size_t)m * (H + 4) * row_u + SLACK, true);
  float *e = codec_scratch((size_t)C * H * row_e + SLACK, true);
  float *f = codec_scratch((size_t)m * H * row_e + SLACK, true), *e2 = codec_scratch((size_t)C * H * W2, false);
  float *dm = codec_scratch((size_t)m * H * W2, false), *ds = codec_scratch((size_t)m * H * W2, false);
  bool ok = u && e && f && e2 && dm && ds;
  if (ok) {
    /* the anchors' values in units of their scale, zero-padded by 2 rows and 2 columns */
    for (size_t ch = 0; ch < (size_t)m; ch++)
      for (int y = 0; y < H; y++)
        for (int x = y % 2; x < W; x += 2) {
          size_t i = (ch * H + y) * W + x;
          float s = hyper_scales[i] > CODEC_SCALE_MIN ? hyper_scales[i] : CODEC_SCALE_MIN;
          u[(ch * (H + 4) + y + 2) * row_u + x / 2 + 2] = anchors[i] / s;
        }
    /* the target positions' own quantised scales, as a fraction of the table */
    for (size_t ch = 0; ch < (size_t)m; ch++)
      for (int y = 0; y < H; y++)
        for (int x = (y + target) % 2; x < W; x += 2)
          f[(ch * H + y) * row_e + x / 2] =
              (float)codec_scale_index(&c->tables, hyper_scales[(ch * H + y) * W + x]) * (1.0f / (CODEC_NUM_SCALES - 1));
    const float *w = nn_f32(conv->weight);
    for (int py = odd_rows; py < 2 && ok; py++) {
      corr_job J = {.in = u + (py + 2) * row_u + 2, .in_chan = (int64_t)(H + 4) * row_u, .in_row = 2 * row_u, .C = m,
                    .OC = C, .H = (H - py + 1) / 2, .W = W2, .b = nn_f32(conv->bias), .out = e + py * row_e,
                    .out_chan = (int64_t)H * row_e, .out_row = 2 * row_e, .out_col = 1};
      int64_t t_off[MAX_TAPS];
      /* the window's taps on the anchors' colour, in raster order (the others only ever see zeros) */
      for (int ky = 0; ky < 5; ky++)
        for (int kx = 0; kx < 5; kx++) {
          int dy = ky - 2, dx = kx - 2;
          if ((dy + dx + target) & 1) continue;
          if (odd_rows && !(dy & dx & 1)) continue; /* the anchors of even rows are the diagonal ones */
          int d = (((py + target) & 1) + dx - ((py + dy) & 1)) / 2; /* exact: the numerator is even */
          J.roff[J.T] = dy * row_u + d, t_off[J.T++] = ky * 5 + kx;
        }
      float *wpk = pack_weights(m, C, J.T, w, 25, (int64_t)m * 25, t_off);
      ok = wpk != NULL;
      if (ok) {
        J.wpk = wpk;
        nn_parallel_for((C + OCB - 1) / OCB, 1, corr_blocks, &J);
        }
    }
    ok = ok && conv1(f, m, H, W2, nn_f32(spread->weight), NULL, C, e2);
    if (ok) /* e = relu(window + spread) */
      for (size_t r = 0; r < (size_t)C * H; r++)
        for (int k = 0; k < W2; k++) {
          float v = e[r * row_e + k] + e2[r * W2 + k];
          e[r * row_e + k] = v > 0 ? v : 0;
        }
    ok = ok && conv1(e, C, H, W2, nn_f32(mean_head->weight), nn_f32(mean_head->bias), m, dm) &&
         conv1(e, C, H, W2, nn_f32(scale_head->weight), nn_f32(scale_head->bias), m, ds);
  }
  if (ok)
    for (size_t ch = 0; ch < (size_t)m; ch++)
      for (int y = odd_rows; y < H; y += 1 + odd_rows)
        for (int x = (y + target) % 2; x < W; x += 2) {
          size_t i = (ch * H + y) * W + x, k = (ch * H + y) * W2 + x / 2;
          float s = hyper_scales[i] > CODEC_SCALE_MIN ? hyper_scales[i] : CODEC_SCALE_MIN;
          means[i] = hyper_means[i] + s * dm[k];
          scales[i] = s * (1.0f + ds[k]);
        }
  if (!ok) nn_set_error("e2ecodec: out of memory for the context model");
  return ok;
}

bool codec_context_exact(const codec_model *c, const float *anchor_q, const float *hyper_means,
                         const float *hyper_scales, int H, int W, float *means, float *scales) {
  return context_exact(c, &c->ctx_conv, &c->ctx_spread, &c->ctx_mean, &c->ctx_scale, c->cfg.context, 1, false, anchor_q,
                       hyper_means, hyper_scales, H, W, means, scales);
}

bool codec_anchor_context_exact(const codec_model *c, const float *anchor_q, const float *hyper_means,
                                const float *hyper_scales, int H, int W, float *means, float *scales) {
  return context_exact(c, &c->actx_conv, &c->actx_spread, &c->actx_mean, &c->actx_scale, c->cfg.anchor_context, 0, true,
                       anchor_q, hyper_means, hyper_scales, H, W, means, scales);
}
