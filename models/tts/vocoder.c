/* The vocoder: log-mel back to a waveform. The mel power goes back to linear frequencies through the
 * filterbank's ridge-regularised least-squares inverse (computed once), its magnitude is sharpened a
 * little (Griffin-Lim smears what the mel bands averaged), and the phase is found by fast Griffin-Lim
 * (Perraudin et al. 2013: plain Griffin-Lim with momentum), all on the shared front end's STFT. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "nncore/nncore.h"
#include "synth.h"

#define SHARPEN 1.0f
#define MOMENTUM 0.9f
#define NNLS_ITERATIONS 24

struct tts_vocoder {
  e2e_audio_fe *fe;
  e2e_mel_config c;
  int bins;
  float *pinv;              /* [bins][n_mels] */
  int *lo, *hi;             /* each band's non-zero bins [lo, hi) */
  int *band_lo, *band_hi;   /* each bin's bands [lo, hi) */
  float *lin, *mel;         /* scratch: bins, n_mels */
};

/* Solves A X = B in place for symmetric positive definite A [n][n] (Cholesky), B [n][k]. */
static bool cholesky_solve(double *A, double *B, int n, int k) {
  for (int j = 0; j < n; j++) {
    double d = A[j * n + j];
    for (int p = 0; p < j; p++) d -= A[j * n + p] * A[j * n + p];
    if (!(d > 0)) return false;
    A[j * n + j] = sqrt(d);
    for (int i = j + 1; i < n; i++) {
      double v = A[i * n + j];
      for (int p = 0; p < j; p++) v -= A[i * n + p] * A[j * n + p];
      A[i * n + j] = v / A[j * n + j];
    }
  }
  for (int col = 0; col < k; col++) {
    for (int i = 0; i < n; i++) { /* L y = b */
      double v = B[i * k + col];
      for (int p = 0; p < i; p++) v -= A[i * n + p] * B[p * k + col];
      B[i * k + col] = v / A[i * n + i];
    }
    for (int i = n - 1; i >= 0; i--) { /* L^T x = y */
      double v = B[i * k + col];
      for (int p = i + 1; p < n; p++) v -= A[p * n + i] * B[p * k + col];
      B[i * k + col] = v / A[i * n + i];
    }
  }
  return true;
}

tts_vocoder *tts_vocoder_new(const e2e_mel_config *mel) {
  tts_vocoder *v = calloc(1, sizeof *v);
  if (!v) return NULL;
  v->c = *mel;
  v->fe = e2e_audio_fe_new(mel);
  if (!v->fe) {
    free(v);
    return NULL;
  }
  int M = mel->n_mels, B = mel->n_fft / 2 + 1;
  v->bins = B;
  const float *fb = e2e_audio_fe_filterbank(v->fe);
  double *G = calloc((size_t)M * M, sizeof(double)), *X = malloc(sizeof(double) * (size_t)M * B);
  v->pinv = malloc(sizeof(float) * (size_t)B * M);
  if (!G || !X || !v->pinv) goto fail;
  double trace = 0;
  for (int i = 0; i < M; i++)
    for (int j = 0; j < M; j++) {
      double s = 0;
      for (int b = 0; b < B; b++) s += (double)fb[i * B + b] * fb[j * B + b];
      G[i * M + j] = s;
      if (i == j) trace += s;
    }
  /* the ridge relative to each band's own weight: the narrow low bands hold few bins */
  for (int i = 0; i < M; i++) G[i * M + i] *= 1.0 + 1e-3;
  (void)trace;
  for (int i = 0; i < M * B; i++) X[i] = fb[i];
  if (!cholesky_solve(G, X, M, B)) goto fail;
  for (int b = 0; b < B; b++)
    for (int m = 0; m < M; m++) v->pinv[b * M + m] = (float)X[m * B + b];
  free(G), free(X);
  v->lo = malloc(sizeof(int) * M), v->hi = malloc(sizeof(int) * M);
  v->band_lo = malloc(sizeof(int) * B), v->band_hi = malloc(sizeof(int) * B);
  v->lin = malloc(sizeof(float) * B), v->mel = malloc(sizeof(float) * M);
  if (!v->lo || !v->hi || !v->band_lo || !v->band_hi || !v->lin || !v->mel) {
    tts_vocoder_free(v);
    nn_set_error("TTS vocoder: out of memory");
    return NULL;
  }
  for (int m = 0; m < M; m++) {
    v->lo[m] = B, v->hi[m] = 0;
    for (int b = 0; b < B; b++)
      if (fb[m * B + b] > 0.0f) v->lo[m] = b < v->lo[m] ? b : v->lo[m], v->hi[m] = b + 1;
    if (v->hi[m] == 0) v->lo[m] = 0;
  }
  for (int b = 0; b < B; b++) {
    v->band_lo[b] = M, v->band_hi[b] = 0;
    for (int m = 0; m < M; m++)
      if (fb[m * B + b] > 0.0f) v->band_lo[b] = m < v->band_lo[b] ? m : v->band_lo[b], v->band_hi[b] = m + 1;
    if (v->band_hi[b] == 0) v->band_lo[b] = 0;
  }
  return v;
fail:
  free(G), free(X);
  tts_vocoder_free(v);
  nn_set_error("TTS vocoder: cannot invert the mel filterbank");
  return NULL;
}

void tts_vocoder_free(tts_vocoder *v) {
  if (!v) return;
  e2e_audio_fe_free(v->fe);
  free(v->pinv), free(v->lo), free(v->hi), free(v->band_lo), free(v->band_hi), free(v->lin), free(v->mel);
  free(v);
}

bool tts_vocoder_run(tts_vocoder *v, const float *log_mel, int64_t T, int iterations, float **out, int64_t *n_out) {
  *out = NULL;
  *n_out = 0;
  if (T < 1) {
    nn_set_error("TTS vocoder: no frames");
    return false;
  }
  int M = v->c.n_mels, B = v->bins;
  const float *fb = e2e_audio_fe_filterbank(v->fe);
  int64_t n = (T - 1) * v->c.hop + v->c.n_fft;
  float *mag = malloc(sizeof(float) * (size_t)T * B), *spec = malloc(sizeof(float) * (size_t)T * B * 2),
        *prev = calloc((size_t)T * B * 2, sizeof(float)), *y = malloc(sizeof(float) * (size_t)n),
        *power = malloc(sizeof(float) * (size_t)M);
  if (!mag || !spec || !prev || !y || !power) {
    free(mag), free(spec), free(prev), free(y), free(power);
    nn_set_error("TTS vocoder: out of memory for %lld frames", (long long)T);
    return false;
  }
  for (int64_t t = 0; t < T; t++) {
    for (int m = 0; m < M; m++) {
      float p = expf(fminf(log_mel[t * M + m], 30.0f)) - E2E_LOG_MEL_FLOOR;
      power[m] = p > 0.0f ? p : 0.0f;
    }
    /* the least-squares inverse, clipped at zero, then non-negative least squares by multiplicative
     * updates (lin <- lin * fb'p / fb'fb lin): the clipping alone loses most of a peaky band's power */
    float *lin = v->lin, *mel = v->mel;
    for (int b = 0; b < B; b++) {
      float s = 0.0f;
      for (int m = 0; m < M; m++) s += v->pinv[b * M + m] * power[m];
      lin[b] = s > 1e-10f ? s : 1e-10f;
    }
    for (int it = 0; it < NNLS_ITERATIONS; it++) {
      for (int m = 0; m < M; m++) {
        double s = 0.0;
        for (int b = v->lo[m]; b < v->hi[m]; b++) s += (double)fb[m * B + b] * lin[b];
        mel[m] = (float)s;
      }
      for (int b = 0; b < B; b++) {
        float num = 0.0f, den = 0.0f;
        for (int m = v->band_lo[b]; m < v->band_hi[b]; m++) num += fb[m * B + b] * power[m], den += fb[m * B + b] * mel[m];
        if (den > 0.0f) lin[b] *= num / den;
      }
    }
    /* sharpened, then scaled back to the frame's energy */
    double e0 = 0.0, e1 = 0.0;
    for (int b = 0; b < B; b++) {
      float s = lin[b] > 1e-10f ? lin[b] : 1e-10f;
      mag[t * B + b] = powf(s, 0.5f * SHARPEN);
      e0 += s, e1 += (double)mag[t * B + b] * mag[t * B + b];
    }
    float k = e1 > 0 ? (float)sqrt(e0 / e1) : 0.0f;
    for (int b = 0; b < B; b++) mag[t * B + b] *= k;
  }
  /* a fixed pseudo-random start phase: the same frames give the same samples */
  nn_rng rng;
  nn_rng_seed(&rng, 12345);
  for (int64_t i = 0; i < T * B; i++) {
    float ph = 6.2831853f * nn_rng_uniform(&rng);
    spec[2 * i] = mag[i] * cosf(ph), spec[2 * i + 1] = mag[i] * sinf(ph);
  }
  for (int it = 0; it < iterations; it++) {
    e2e_istft(v->fe, spec, T, y);
    e2e_stft(v->fe, y, n, spec); /* the consistent spectrogram nearest the estimate */
    for (int64_t i = 0; i < T * B; i++) {
      float re = spec[2 * i], im = spec[2 * i + 1];
      float ar = re + MOMENTUM * (re - prev[2 * i]), ai = im + MOMENTUM * (im - prev[2 * i + 1]);
      prev[2 * i] = re, prev[2 * i + 1] = im;
      float r = sqrtf(ar * ar + ai * ai);
      float k = r > 1e-12f ? mag[i] / r : 0.0f;
      spec[2 * i] = ar * k, spec[2 * i + 1] = ai * k;
    }
  }
  e2e_istft(v->fe, spec, T, y);
  float peak = 0.0f;
  for (int64_t i = 0; i < n; i++) peak = fmaxf(peak, fabsf(y[i]));
  if (peak > 0.99f)
    for (int64_t i = 0; i < n; i++) y[i] *= 0.99f / peak;
  free(mag), free(spec), free(prev), free(power);
  *out = y;
  *n_out = n;
  return true;
}
