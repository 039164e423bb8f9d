/* The postnet on plain arrays, for synthesis: a window of frames at a time, so the element can hear a frame
 * as soon as postnet_reach frames after it are decoded. Each layer's output shrinks the window by two rows
 * a side; rows outside the sequence are zeros at every layer, as tts_postnet's masks and padding make them
 * in training (tests compare the two). */
#include <cblas.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

bool tts_postnet_frames(const tts_model *m, const float *in, int64_t n, int64_t a, int64_t b, float *out) {
  const tts_config *c = &m->cfg;
  int M = c->n_mels, K = c->postnet_layers, reach = tts_postnet_reach(c);
  if (b <= a) return true;
  for (int64_t t = a; t < b; t++) {
    if (t >= 0 && t < n) memcpy(out + (t - a) * M, in + t * M, sizeof(float) * M);
    else memset(out + (t - a) * M, 0, sizeof(float) * M);
  }
  if (!K) return true;
  int64_t w0 = a - reach, W = b - a + 2 * (int64_t)reach;
  int P = c->postnet_dim > M ? c->postnet_dim : M;
  float *x = calloc((size_t)W * P, sizeof(float)), *y = calloc((size_t)W * P, sizeof(float));
  if (!x || !y) {
    free(x), free(y);
    nn_set_error("TTS postnet: out of memory for %lld frames", (long long)(b - a));
    return false;
  }
  for (int64_t t = w0 > 0 ? w0 : 0; t < w0 + W && t < n; t++) memcpy(x + (t - w0) * M, in + t * M, sizeof(float) * M);
  int64_t lo = 0, hi = W; /* rows of x that hold this layer's input */
  int C = M;
  for (int i = 0; i < K; i++) {
    const nn_linear *l = &m->post[i];
    int O = (int)l->out;
    int64_t rows = hi - lo - 4;
    for (int64_t r = 0; r < rows; r++) memcpy(y + (lo + 2 + r) * O, nn_f32(l->bias), sizeof(float) * O);
    /* tap k of output row t reads input row t - 2 + k: five products on shifted row ranges */
    for (int k = 0; k < 5; k++)
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)rows, O, C, 1.0f, x + (lo + k) * C, C,
                  nn_f32(l->weight) + k * C, 5 * C, 1.0f, y + (lo + 2) * O, O);
    lo += 2, hi -= 2;
    if (i < K - 1)
      for (int64_t r = lo; r < hi; r++) {
        int64_t t = w0 + r;
        float *row = y + r * O;
        if (t < 0 || t >= n) memset(row, 0, sizeof(float) * O);
        else
          for (int j = 0; j < O; j++) row[j] = tanhf(row[j]);
      }
    float *swap = x;
    x = y, y = swap;
    C = O;
  }
  for (int64_t t = a; t < b; t++)
    for (int j = 0; j < M; j++) out[(t - a) * M + j] += x[(t - w0) * M + j];
  free(x), free(y);
  return true;
}
