/* The hyper-synthesis (z_hat -> scales of y) with one fixed summation order.
 *
 * Entropy decoding needs the decoder to pick exactly the probability tables
 * the encoder picked. GEMM libraries sum in an order that depends on the CPU's
 * kernel and on blocking, so this path uses plain loops instead: every output
 * starts from its bias and adds input channel by input channel, tap by tap,
 * in ascending order. Vectorising across output pixels keeps that order per
 * element, and the project compiles with -ffp-contract=off (no fused
 * multiply-add), so the result is the same IEEE float on any x86-64 build
 * and any thread count. It is small: it runs at 1/16 and 1/4 of y's size. */
#include <stdlib.h>

#include "codec.h"

/* Transposed conv, kernel 5, stride 2, padding 2, output padding 1:
 * in[C][H][W] -> out[OC][2H][2W], then ReLU. Each output phase (py, px) is a
 * plain correlation over the taps ky = py (mod 2), kx = px (mod 2). */
static void deconv5s2_relu(const float *in, int C, int H, int W, const float *w, const float *b, int OC, float *out,
                           float *plane) {
  for (int oc = 0; oc < OC; oc++)
    for (int py = 0; py < 2; py++)
      for (int px = 0; px < 2; px++) {
        for (int i = 0; i < H * W; i++) plane[i] = b[oc];
        for (int ic = 0; ic < C; ic++)
          for (int ky = py; ky < 5; ky += 2)
            for (int kx = px; kx < 5; kx += 2) {
              float wv = w[(((size_t)ic * OC + oc) * 5 + ky) * 5 + kx];
              int dy = (py + 2 - ky) / 2, dx = (px + 2 - kx) / 2;
              int x0 = dx < 0 ? -dx : 0, x1 = dx > 0 ? W - dx : W;
              for (int qy = 0; qy < H; qy++) {
                int iy = qy + dy;
                if (iy < 0 || iy >= H) continue;
                const float *row = in + ((size_t)ic * H + iy) * W + dx;
                float *o = plane + (size_t)qy * W;
                for (int qx = x0; qx < x1; qx++) o[qx] = o[qx] + wv * row[qx];
              }
            }
        float *dst = out + (size_t)oc * 4 * H * W;
        for (int qy = 0; qy < H; qy++)
          for (int qx = 0; qx < W; qx++) {
            float v = plane[(size_t)qy * W + qx];
            dst[(size_t)(2 * qy + py) * 2 * W + 2 * qx + px] = v > 0 ? v : 0;
          }
      }
}

/* Conv 3x3, stride 1, padding 1, then ReLU: in[C][H][W] -> out[OC][H][W]. */
static void conv3_relu(const float *in, int C, int H, int W, const float *w, const float *b, int OC, float *out) {
  for (int oc = 0; oc < OC; oc++) {
    float *o = out + (size_t)oc * H * W;
    for (int i = 0; i < H * W; i++) o[i] = b[oc];
    for (int ic = 0; ic < C; ic++)
      for (int ky = 0; ky < 3; ky++)
        for (int kx = 0; kx < 3; kx++) {
          float wv = w[(((size_t)oc * C + ic) * 3 + ky) * 3 + kx];
          int dy = ky - 1, dx = kx - 1;
          int x0 = dx < 0 ? -dx : 0, x1 = dx > 0 ? W - dx : W;
          for (int y = 0; y < H; y++) {
            int iy = y + dy;
            if (iy < 0 || iy >= H) continue;
            const float *row = in + ((size_t)ic * H + iy) * W + dx;
            float *orow = o + (size_t)y * W;
            for (int x = x0; x < x1; x++) orow[x] = orow[x] + wv * row[x];
          }
        }
    for (int i = 0; i < H * W; i++) o[i] = o[i] > 0 ? o[i] : 0;
  }
}

bool codec_hyper_scales_exact(const codec_model *c, const float *z_hat, int zh, int zw, float *out) {
  int n = c->cfg.n, m = c->cfg.m;
  float *h1 = malloc(sizeof(float) * (size_t)n * 4 * zh * zw);
  float *h2 = malloc(sizeof(float) * (size_t)n * 16 * zh * zw);
  float *plane = malloc(sizeof(float) * (size_t)4 * zh * zw);
  bool ok = h1 && h2 && plane;
  if (ok) {
    deconv5s2_relu(z_hat, n, zh, zw, nn_f32(c->hs[0].weight), nn_f32(c->hs[0].bias), n, h1, plane);
    deconv5s2_relu(h1, n, 2 * zh, 2 * zw, nn_f32(c->hs[1].weight), nn_f32(c->hs[1].bias), n, h2, plane);
    conv3_relu(h2, n, 4 * zh, 4 * zw, nn_f32(c->hs_out.weight), nn_f32(c->hs_out.bias), m, out);
  }
  free(h1);
  free(h2);
  free(plane);
  if (!ok) nn_set_error("e2ecodec: out of memory for the hyper-synthesis");
  return ok;
}
