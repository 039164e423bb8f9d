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
 * Speed comes from keeping that order while vectorising across the pixels of
 * an output row (AVX2 where the CPU has it, chosen at load time), computing
 * four output channels per pass over an input row, and splitting output
 * channels across nncore's threads. The inputs are zero-padded, so a tap
 * outside the picture adds w * 0: the sum is unchanged (at most a zero's sign,
 * which the ReLU after every layer removes). */
#include <stdlib.h>
#include <string.h>

#include "codec.h"

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && !defined(__SANITIZE_ADDRESS__)
#define VECTOR_CLONES __attribute__((target_clones("avx2", "default")))
#else
#define VECTOR_CLONES
#endif

#define OC_BLOCK 4
#define MAX_ROW (CODEC_MAX_DIM / 16) /* widest row: y's width */

typedef struct {
  const float *in; /* [C][H + 2][W + 2], zero border */
  int C, H, W, OC;
  const float *w, *b;
  float *out;
  int out_pad; /* 1: out is [OC][oh + 2][ow + 2] with a zero border (the next layer's input) */
} hs_layer;

/* acc_j[x] = acc_j[x] + w_j * row[x] for four channels; the order per element is the caller's. */
static inline void taps4(float *restrict a0, float *restrict a1, float *restrict a2, float *restrict a3,
                         const float *restrict row, const float *wv, int n) {
  float w0 = wv[0], w1 = wv[1], w2 = wv[2], w3 = wv[3];
  for (int x = 0; x < n; x++) {
    float r = row[x];
    a0[x] = a0[x] + w0 * r;
    a1[x] = a1[x] + w1 * r;
    a2[x] = a2[x] + w2 * r;
    a3[x] = a3[x] + w3 * r;
  }
}

static inline void store_relu(float *restrict dst, int step, const float *restrict acc, int n) {
  for (int x = 0; x < n; x++) dst[(size_t)x * step] = acc[x] > 0 ? acc[x] : 0;
}

/* Transposed conv, kernel 5, stride 2, padding 2, output padding 1, then ReLU:
 * in[C][H][W] -> out[OC][2H][2W]. Output phase (py, px) is a correlation over
 * the taps ky = py (mod 2), kx = px (mod 2); weights are [C][OC][5][5]. */
VECTOR_CLONES static void deconv5s2_relu(void *ctx, int64_t g0, int64_t g1) {
  const hs_layer *L = ctx;
  int H = L->H, W = L->W, Wp = W + 2, C = L->C, OC = L->OC;
  int oh = 2 * H, ow = 2 * W, op = L->out_pad, ostride = ow + 2 * op;
  float acc[OC_BLOCK][MAX_ROW];
  for (int64_t g = g0; g < g1; g++) {
    int oc0 = (int)g * OC_BLOCK;
    for (int py = 0; py < 2; py++)
      for (int px = 0; px < 2; px++)
        for (int qy = 0; qy < H; qy++) {
          for (int j = 0; j < OC_BLOCK; j++)
            for (int x = 0; x < W; x++) acc[j][x] = oc0 + j < OC ? L->b[oc0 + j] : 0;
          for (int ic = 0; ic < C; ic++)
            for (int ky = py; ky < 5; ky += 2) {
              int dy = (py + 2 - ky) / 2;
              const float *row = L->in + ((size_t)ic * (H + 2) + qy + dy + 1) * Wp + 1;
              for (int kx = px; kx < 5; kx += 2) {
                int dx = (px + 2 - kx) / 2;
                float wv[OC_BLOCK];
                for (int j = 0; j < OC_BLOCK; j++)
                  wv[j] = oc0 + j < OC ? L->w[(((size_t)ic * OC + oc0 + j) * 5 + ky) * 5 + kx] : 0;
                taps4(acc[0], acc[1], acc[2], acc[3], row + dx, wv, W);
              }
            }
          for (int j = 0; j < OC_BLOCK && oc0 + j < OC; j++) {
            float *dst = L->out + ((size_t)(oc0 + j) * (oh + 2 * op) + 2 * qy + py + op) * ostride + px + op;
            store_relu(dst, 2, acc[j], W);
          }
        }
  }
}

/* Conv 3x3, stride 1, padding 1, then ReLU: in[C][H][W] -> out[OC][H][W]; weights [OC][C][3][3]. */
VECTOR_CLONES static void conv3_relu(void *ctx, int64_t g0, int64_t g1) {
  const hs_layer *L = ctx;
  int H = L->H, W = L->W, Wp = W + 2, C = L->C, OC = L->OC;
  float acc[OC_BLOCK][MAX_ROW];
  for (int64_t g = g0; g < g1; g++) {
    int oc0 = (int)g * OC_BLOCK;
    for (int y = 0; y < H; y++) {
      for (int j = 0; j < OC_BLOCK; j++)
        for (int x = 0; x < W; x++) acc[j][x] = oc0 + j < OC ? L->b[oc0 + j] : 0;
      for (int ic = 0; ic < C; ic++)
        for (int ky = 0; ky < 3; ky++) {
          const float *row = L->in + ((size_t)ic * (H + 2) + y + ky) * Wp;
          for (int kx = 0; kx < 3; kx++) {
            float wv[OC_BLOCK];
            for (int j = 0; j < OC_BLOCK; j++)
              wv[j] = oc0 + j < OC ? L->w[(((size_t)(oc0 + j) * C + ic) * 3 + ky) * 3 + kx] : 0;
            taps4(acc[0], acc[1], acc[2], acc[3], row + kx, wv, W);
          }
        }
      for (int j = 0; j < OC_BLOCK && oc0 + j < OC; j++) store_relu(L->out + ((size_t)(oc0 + j) * H + y) * W, 1, acc[j], W);
    }
  }
}

static void run_layer(nn_range_fn fn, hs_layer *L) {
  nn_parallel_for((L->OC + OC_BLOCK - 1) / OC_BLOCK, 1, fn, L);
}

bool codec_hyper_scales_exact(const codec_model *c, const float *z_hat, int zh, int zw, float *out) {
  int n = c->cfg.n, m = c->cfg.m;
  if (4 * zw > MAX_ROW) {
    nn_set_error("e2ecodec: picture too wide for the hyper-synthesis (%d latent columns)", 4 * zw);
    return false;
  }
  /* every layer's input with a one-pixel zero border */
  float *z_pad = calloc((size_t)n * (zh + 2) * (zw + 2), sizeof(float));
  float *h1 = calloc((size_t)n * (2 * zh + 2) * (2 * zw + 2), sizeof(float));
  float *h2 = calloc((size_t)n * (4 * zh + 2) * (4 * zw + 2), sizeof(float));
  bool ok = z_pad && h1 && h2;
  if (ok) {
    for (int ch = 0; ch < n; ch++)
      for (int y = 0; y < zh; y++)
        memcpy(z_pad + ((size_t)ch * (zh + 2) + y + 1) * (zw + 2) + 1, z_hat + ((size_t)ch * zh + y) * zw,
               sizeof(float) * (size_t)zw);
    hs_layer l0 = {z_pad, n, zh, zw, n, nn_f32(c->hs[0].weight), nn_f32(c->hs[0].bias), h1, 1};
    hs_layer l1 = {h1, n, 2 * zh, 2 * zw, n, nn_f32(c->hs[1].weight), nn_f32(c->hs[1].bias), h2, 1};
    hs_layer l2 = {h2, n, 4 * zh, 4 * zw, m, nn_f32(c->hs_out.weight), nn_f32(c->hs_out.bias), out, 0};
    run_layer(deconv5s2_relu, &l0);
    run_layer(deconv5s2_relu, &l1);
    run_layer(conv3_relu, &l2);
  }
  free(z_pad);
  free(h1);
  free(h2);
  if (!ok) nn_set_error("e2ecodec: out of memory for the hyper-synthesis");
  return ok;
}
