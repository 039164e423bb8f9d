/* STFT, its inverse and log-mel features on kissfft. The window is applied in float, the FFT is kissfft's
 * real transform, the mel sums run in a fixed order: the same samples give the same features anywhere. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <kiss_fftr.h>

#include "e2e/audio.h"
#include "nncore/nncore.h"

struct e2e_audio_fe {
  e2e_mel_config c;
  int bins;
  float *window;       /* n_fft: the Hann window centred, zeros around it */
  float *fb;           /* n_mels x bins */
  int *fb_lo, *fb_hi;  /* each mel's non-zero bins [lo, hi) */
  kiss_fftr_cfg fwd, inv;
  float *frame;        /* scratch: n_fft samples */
  kiss_fft_cpx *spec;  /* scratch: bins */
  float *power;        /* scratch: bins */
};

e2e_mel_config e2e_mel_default(void) {
  return (e2e_mel_config){.sample_rate = 16000, .n_fft = 512, .win_length = 400, .hop = 160, .n_mels = 80,
                          .f_min = 20.0f, .f_max = 7600.0f};
}

bool e2e_mel_config_check(const e2e_mel_config *c) {
  if (c->sample_rate < 4000 || c->sample_rate > 192000) {
    nn_set_error("audio front end: sample rate %d outside [4000, 192000]", c->sample_rate);
    return false;
  }
  if (c->n_fft < 16 || c->n_fft > 65536 || c->n_fft % 2) {
    nn_set_error("audio front end: n_fft %d must be even, in [16, 65536]", c->n_fft);
    return false;
  }
  if (c->win_length < 2 || c->win_length > c->n_fft) {
    nn_set_error("audio front end: window length %d outside [2, n_fft = %d]", c->win_length, c->n_fft);
    return false;
  }
  if (c->hop < 1 || c->hop > c->n_fft) {
    nn_set_error("audio front end: hop %d outside [1, n_fft = %d]", c->hop, c->n_fft);
    return false;
  }
  if (c->n_mels < 1 || c->n_mels > c->n_fft / 2 + 1) {
    nn_set_error("audio front end: %d mels for %d FFT bins", c->n_mels, c->n_fft / 2 + 1);
    return false;
  }
  if (!(c->f_min >= 0.0f) || !(c->f_max > c->f_min) || c->f_max > c->sample_rate / 2.0f) {
    nn_set_error("audio front end: mel band %g-%g Hz not inside 0-%d Hz", c->f_min, c->f_max, c->sample_rate / 2);
    return false;
  }
  return true;
}

double e2e_hz_to_mel(double f) { return 2595.0 * log10(1.0 + f / 700.0); }
double e2e_mel_to_hz(double m) { return 700.0 * (pow(10.0, m / 2595.0) - 1.0); }

/* torchaudio's melscale_fbanks(norm=None, mel_scale="htk"): triangles between mel-spaced points, peak 1. */
static void make_filterbank(e2e_audio_fe *fe) {
  const e2e_mel_config *c = &fe->c;
  int M = c->n_mels, B = fe->bins;
  double mlo = e2e_hz_to_mel(c->f_min), mhi = e2e_hz_to_mel(c->f_max);
  double *f = malloc(sizeof(double) * (M + 2));
  for (int i = 0; i < M + 2; i++) f[i] = e2e_mel_to_hz(mlo + (mhi - mlo) * i / (M + 1));
  for (int m = 0; m < M; m++) {
    fe->fb_lo[m] = B;
    fe->fb_hi[m] = 0;
    for (int b = 0; b < B; b++) {
      double hz = (double)c->sample_rate / 2.0 * b / (B - 1);
      double down = (hz - f[m]) / (f[m + 1] - f[m]);
      double up = (f[m + 2] - hz) / (f[m + 2] - f[m + 1]);
      double w = fmax(0.0, fmin(down, up));
      fe->fb[(size_t)m * B + b] = (float)w;
      if (w > 0.0) {
        if (b < fe->fb_lo[m]) fe->fb_lo[m] = b;
        fe->fb_hi[m] = b + 1;
      }
    }
    if (fe->fb_hi[m] == 0) fe->fb_lo[m] = 0; /* an empty triangle (more mels than bins in its band) */
  }
  free(f);
}

e2e_audio_fe *e2e_audio_fe_new(const e2e_mel_config *c) {
  if (!e2e_mel_config_check(c)) return NULL;
  e2e_audio_fe *fe = calloc(1, sizeof *fe);
  if (!fe) goto oom;
  fe->c = *c;
  fe->bins = c->n_fft / 2 + 1;
  fe->window = calloc(c->n_fft, sizeof(float));
  fe->fb = calloc((size_t)c->n_mels * fe->bins, sizeof(float));
  fe->fb_lo = calloc(c->n_mels, sizeof(int));
  fe->fb_hi = calloc(c->n_mels, sizeof(int));
  fe->frame = calloc(c->n_fft, sizeof(float));
  fe->spec = calloc(fe->bins, sizeof(kiss_fft_cpx));
  fe->power = calloc(fe->bins, sizeof(float));
  fe->fwd = kiss_fftr_alloc(c->n_fft, 0, NULL, NULL);
  fe->inv = kiss_fftr_alloc(c->n_fft, 1, NULL, NULL);
  if (!fe->window || !fe->fb || !fe->fb_lo || !fe->fb_hi || !fe->frame || !fe->spec || !fe->power || !fe->fwd ||
      !fe->inv)
    goto oom;
  /* torch.hann_window(win_length, periodic=True), padded to n_fft on both sides like torch.stft */
  int off = (c->n_fft - c->win_length) / 2;
  for (int i = 0; i < c->win_length; i++)
    fe->window[off + i] = (float)(0.5 - 0.5 * cos(2.0 * M_PI * i / c->win_length));
  make_filterbank(fe);
  return fe;
oom:
  e2e_audio_fe_free(fe);
  nn_set_error("audio front end: out of memory");
  return NULL;
}

void e2e_audio_fe_free(e2e_audio_fe *fe) {
  if (!fe) return;
  free(fe->window);
  free(fe->fb);
  free(fe->fb_lo);
  free(fe->fb_hi);
  free(fe->frame);
  free(fe->spec);
  free(fe->power);
  kiss_fftr_free(fe->fwd);
  kiss_fftr_free(fe->inv);
  free(fe);
}

const e2e_mel_config *e2e_audio_fe_config(const e2e_audio_fe *fe) { return &fe->c; }
const float *e2e_audio_fe_filterbank(const e2e_audio_fe *fe) { return fe->fb; }

int64_t e2e_audio_frames(const e2e_mel_config *c, int64_t n) {
  return n < c->n_fft ? 0 : 1 + (n - c->n_fft) / c->hop;
}

static void frame_fft(e2e_audio_fe *fe, const float *samples) {
  int N = fe->c.n_fft;
  for (int i = 0; i < N; i++) fe->frame[i] = samples[i] * fe->window[i];
  kiss_fftr(fe->fwd, fe->frame, fe->spec);
}

void e2e_audio_fe_spectrum(e2e_audio_fe *fe, const float *samples, float *bins) {
  frame_fft(fe, samples);
  for (int b = 0; b < fe->bins; b++) {
    bins[2 * b] = fe->spec[b].r;
    bins[2 * b + 1] = fe->spec[b].i;
  }
}

static void frame_power(e2e_audio_fe *fe, const float *samples, float *power) {
  frame_fft(fe, samples);
  for (int b = 0; b < fe->bins; b++) power[b] = fe->spec[b].r * fe->spec[b].r + fe->spec[b].i * fe->spec[b].i;
}

void e2e_stft_power(e2e_audio_fe *fe, const float *x, int64_t n, float *out) {
  int64_t T = e2e_audio_frames(&fe->c, n);
  for (int64_t t = 0; t < T; t++) frame_power(fe, x + t * fe->c.hop, out + t * fe->bins);
}

void e2e_stft(e2e_audio_fe *fe, const float *x, int64_t n, float *out) {
  int64_t T = e2e_audio_frames(&fe->c, n);
  for (int64_t t = 0; t < T; t++) e2e_audio_fe_spectrum(fe, x + t * fe->c.hop, out + t * fe->bins * 2);
}

void e2e_istft(e2e_audio_fe *fe, const float *spec, int64_t frames, float *y) {
  int N = fe->c.n_fft, H = fe->c.hop;
  int64_t len = frames > 0 ? (frames - 1) * H + N : 0;
  float *env = calloc(len > 0 ? len : 1, sizeof(float));
  memset(y, 0, sizeof(float) * len);
  for (int64_t t = 0; t < frames; t++) {
    for (int b = 0; b < fe->bins; b++) {
      fe->spec[b].r = spec[(t * fe->bins + b) * 2];
      fe->spec[b].i = spec[(t * fe->bins + b) * 2 + 1];
    }
    kiss_fftri(fe->inv, fe->spec, fe->frame); /* unnormalised: N times the signal */
    float *yt = y + t * H, *et = env + t * H;
    for (int i = 0; i < N; i++) {
      yt[i] += fe->frame[i] * fe->window[i] / N;
      et[i] += fe->window[i] * fe->window[i];
    }
  }
  for (int64_t i = 0; env && i < len; i++)
    if (env[i] > 1e-3f) y[i] /= env[i];
  free(env);
}

void e2e_log_mel_of_power(const e2e_audio_fe *fe, const float *power, float *out) {
  int B = fe->bins;
  for (int m = 0; m < fe->c.n_mels; m++) {
    const float *w = fe->fb + (size_t)m * B;
    double s = 0.0;
    for (int b = fe->fb_lo[m]; b < fe->fb_hi[m]; b++) s += (double)w[b] * power[b];
    out[m] = logf((float)s + E2E_LOG_MEL_FLOOR);
  }
}

void e2e_log_mel(e2e_audio_fe *fe, const float *x, int64_t n, float *out) {
  int64_t T = e2e_audio_frames(&fe->c, n);
  for (int64_t t = 0; t < T; t++) {
    frame_power(fe, x + t * fe->c.hop, fe->power);
    e2e_log_mel_of_power(fe, fe->power, out + t * fe->c.n_mels);
  }
}

/* ------------------------------------------------------------ streaming */

struct e2e_mel_stream {
  e2e_audio_fe *fe;
  float *pending;   /* samples not yet consumed by a frame start, capacity cap */
  int n_pending, cap;
  float *ready;     /* frames computed, not yet taken */
  int n_ready, ready_cap;
  int64_t pushed;
};

e2e_mel_stream *e2e_mel_stream_new(const e2e_mel_config *c) {
  e2e_audio_fe *fe = e2e_audio_fe_new(c);
  if (!fe) return NULL;
  e2e_mel_stream *s = calloc(1, sizeof *s);
  if (!s) {
    e2e_audio_fe_free(fe);
    nn_set_error("audio front end: out of memory");
    return NULL;
  }
  s->fe = fe;
  return s;
}

void e2e_mel_stream_free(e2e_mel_stream *s) {
  if (!s) return;
  e2e_audio_fe_free(s->fe);
  free(s->pending);
  free(s->ready);
  free(s);
}

void e2e_mel_stream_reset(e2e_mel_stream *s) {
  s->n_pending = 0;
  s->n_ready = 0;
  s->pushed = 0;
}

int64_t e2e_mel_stream_samples(const e2e_mel_stream *s) { return s->pushed; }

int e2e_mel_stream_push(e2e_mel_stream *s, const float *x, int n) {
  const e2e_mel_config *c = &s->fe->c;
  int M = c->n_mels;
  while (n > 0) {
    /* take at most what completes the frames a bounded buffer can hold */
    int room = c->n_fft + 64 * c->hop - s->n_pending;
    int k = n < room ? n : room;
    if (s->cap < s->n_pending + k) {
      int cap = c->n_fft + 64 * c->hop;
      float *p = realloc(s->pending, sizeof(float) * cap);
      if (!p) return s->n_ready;
      s->pending = p;
      s->cap = cap;
    }
    memcpy(s->pending + s->n_pending, x, sizeof(float) * k);
    s->n_pending += k;
    s->pushed += k;
    x += k;
    n -= k;
    int start = 0;
    while (s->n_pending - start >= c->n_fft) {
      if (s->n_ready == s->ready_cap) {
        int cap = s->ready_cap ? s->ready_cap * 2 : 64;
        float *r = realloc(s->ready, sizeof(float) * (size_t)cap * M);
        if (!r) break;
        s->ready = r;
        s->ready_cap = cap;
      }
      frame_power(s->fe, s->pending + start, s->fe->power);
      e2e_log_mel_of_power(s->fe, s->fe->power, s->ready + (size_t)s->n_ready * M);
      s->n_ready++;
      start += c->hop;
    }
    memmove(s->pending, s->pending + start, sizeof(float) * (s->n_pending - start));
    s->n_pending -= start;
  }
  return s->n_ready;
}

int e2e_mel_stream_take(e2e_mel_stream *s, float *out, int max) {
  int M = s->fe->c.n_mels;
  int k = s->n_ready < max ? s->n_ready : max;
  if (k <= 0) return 0;
  memcpy(out, s->ready, sizeof(float) * (size_t)k * M);
  memmove(s->ready, s->ready + (size_t)k * M, sizeof(float) * (size_t)(s->n_ready - k) * M);
  s->n_ready -= k;
  return k;
}
