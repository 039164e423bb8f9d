/* Feature-domain augmentation for training the recogniser on synthetic voices: every effect is applied to
 * log-mel frames (or their mel powers), so a stored shard yields a new variant each epoch at a tiny cost.
 * The effects stand in for what separates synthetic from real speech: tempo and vocal-tract length (speed
 * and pitch perturbation), microphone and channel colour, telephone band limits, room reverberation
 * (exponentially decaying late energy), and background noise at 5-30 dB SNR. A faint noise floor is
 * always added: synthesisers write digital silence, which no microphone does. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

asr_augment_opts asr_augment_defaults(void) {
  return (asr_augment_opts){.p_tempo = 0.8f, .tempo_range = 0.15f, .p_warp = 0.8f, .warp_range = 0.12f,
                            .p_eq = 0.6f, .eq_db = 6.0f, .p_phone = 0.2f, .p_reverb = 0.3f,
                            .p_noise = 0.6f, .snr_lo = 5.0f, .snr_hi = 30.0f,
                            .freq_masks = 2, .freq_mask_width = 10, .time_masks = 4, .time_mask_width = 20};
}

int64_t asr_augment_max_frames(const asr_augment_opts *o, int64_t T) {
  return (int64_t)ceil(T / (1.0 - o->tempo_range)) + 2;
}

static float uniform(nn_rng *r, float lo, float hi) { return lo + (hi - lo) * nn_rng_uniform(r); }
static bool chance(nn_rng *r, float p) { return nn_rng_uniform(r) < p; }

/* Centre frequency of each mel band, and its width in FFT bins (what white noise scales with). */
static void band_geometry(const e2e_mel_config *c, double *centre, double *width) {
  int M = c->n_mels;
  double lo = e2e_hz_to_mel(c->f_min), hi = e2e_hz_to_mel(c->f_max), bin_hz = (double)c->sample_rate / c->n_fft;
  for (int j = 0; j < M; j++) {
    double f0 = e2e_mel_to_hz(lo + (hi - lo) * j / (M + 1)), f2 = e2e_mel_to_hz(lo + (hi - lo) * (j + 2) / (M + 1));
    centre[j] = e2e_mel_to_hz(lo + (hi - lo) * (j + 1) / (M + 1));
    width[j] = (f2 - f0) / 2.0 / bin_hz;
  }
}

void asr_augment(const asr_augment_opts *o, const e2e_mel_config *mel, const float *in, int64_t T, float *out,
                 int64_t *out_T, nn_rng *rng) {
  int M = mel->n_mels;
  double *centre = malloc(sizeof(double) * M), *width = malloc(sizeof(double) * M);
  float *gain = malloc(sizeof(float) * M);
  int *src0 = malloc(sizeof(int) * M);
  float *srcw = malloc(sizeof(float) * M);
  band_geometry(mel, centre, width);

  /* tempo: frames resampled by linear interpolation */
  float beta = chance(rng, o->p_tempo) ? uniform(rng, 1.0f - o->tempo_range, 1.0f + o->tempo_range) : 1.0f;
  int64_t To = (int64_t)((double)T / beta);
  if (To < 1) To = 1;
  if (To > asr_augment_max_frames(o, T)) To = asr_augment_max_frames(o, T);
  /* vocal-tract warp: band j reads the band at its centre frequency divided by alpha */
  float alpha = chance(rng, o->p_warp) ? uniform(rng, 1.0f - o->warp_range, 1.0f + o->warp_range) : 1.0f;
  double mlo = e2e_hz_to_mel(mel->f_min), mhi = e2e_hz_to_mel(mel->f_max);
  for (int j = 0; j < M; j++) {
    double pos = (e2e_hz_to_mel(centre[j] / alpha) - mlo) / (mhi - mlo) * (M + 1) - 1.0;
    if (pos < 0) pos = 0;
    if (pos > M - 1) pos = M - 1;
    src0[j] = (int)pos < M - 1 ? (int)pos : M - 2;
    if (M == 1) src0[j] = 0;
    srcw[j] = M == 1 ? 0.0f : (float)(pos - src0[j]);
  }
  for (int64_t t = 0; t < To; t++) {
    double p = t * (double)beta;
    int64_t a = (int64_t)p < T - 1 ? (int64_t)p : T - 1, b = a + 1 < T ? a + 1 : T - 1;
    float w = (float)(p - a);
    if (w > 1.0f) w = 1.0f;
    const float *ra = in + a * M, *rb = in + b * M;
    float *ro = out + t * M;
    for (int j = 0; j < M; j++) {
      int k = src0[j], k1 = M == 1 ? 0 : k + 1;
      float va = ra[k] + srcw[j] * (ra[k1] - ra[k]), vb = rb[k] + srcw[j] * (rb[k1] - rb[k]);
      ro[j] = va + w * (vb - va);
    }
  }

  /* channel colour and telephone band: per-band power gains */
  for (int j = 0; j < M; j++) gain[j] = 1.0f;
  if (chance(rng, o->p_eq)) {
    for (int k = 1; k <= 3; k++) {
      float a = uniform(rng, -o->eq_db, o->eq_db) / k, ph = uniform(rng, 0.0f, 6.2831853f);
      for (int j = 0; j < M; j++) gain[j] *= powf(10.0f, a * cosf(3.14159265f * k * j / (M > 1 ? M - 1 : 1) + ph) / 10.0f);
    }
  }
  if (chance(rng, o->p_phone)) {
    float lo = uniform(rng, 200.0f, 400.0f), hi = uniform(rng, 3000.0f, 3800.0f);
    for (int j = 0; j < M; j++) { /* 24 dB per octave outside the band */
      if (centre[j] > hi) gain[j] *= powf((float)(hi / centre[j]), 8.0f);
      if (centre[j] < lo) gain[j] *= powf((float)(centre[j] / lo), 8.0f);
    }
  }
  int64_t n = To * M;
  for (int64_t i = 0; i < n; i++) out[i] = expf(out[i]) * gain[i % M];

  /* late reverberation: each band's energy decays by 60 dB over RT60 */
  if (chance(rng, o->p_reverb)) {
    float rt60 = uniform(rng, 0.2f, 0.9f), wet = uniform(rng, 0.1f, 0.8f);
    float fps = (float)mel->sample_rate / mel->hop, d = powf(10.0f, -6.0f / (rt60 * fps));
    for (int j = 0; j < M; j++) {
      float tail = 0.0f, prev = 0.0f;
      for (int64_t t = 0; t < To; t++) {
        tail = d * (tail + wet * (1.0f - d) * prev);
        prev = out[t * M + j];
        out[t * M + j] = prev + tail;
      }
    }
  }

  /* speech power: the mean over the louder half of the frames */
  float *fp = malloc(sizeof(float) * (size_t)To);
  for (int64_t t = 0; t < To; t++) {
    double s = 0.0;
    for (int j = 0; j < M; j++) s += out[t * M + j];
    fp[t] = (float)s;
  }
  double speech = 0.0;
  int64_t cnt = 0;
  {
    double mean = 0.0;
    for (int64_t t = 0; t < To; t++) mean += fp[t];
    mean /= To;
    for (int64_t t = 0; t < To; t++)
      if (fp[t] >= mean * 0.5) speech += fp[t], cnt++;
    speech = cnt ? speech / cnt : mean;
  }
  free(fp);
  float snr = chance(rng, o->p_noise) ? uniform(rng, o->snr_lo, o->snr_hi) : uniform(rng, 45.0f, 65.0f);
  float colour = uniform(rng, -1.5f, 0.5f); /* power slope per decade around 1 kHz: brown .. slightly blue */
  double shape_sum = 0.0;
  for (int j = 0; j < M; j++) {
    gain[j] = (float)(width[j] * pow(centre[j] / 1000.0, colour));
    shape_sum += gain[j];
  }
  double level = speech / pow(10.0, snr / 10.0) / (shape_sum > 0 ? shape_sum : 1.0);
  float mod = 0.0f;
  for (int64_t t = 0; t < To; t++) {
    mod = 0.95f * mod + 0.05f * nn_rng_normal(rng); /* slow level wander */
    float lt = (float)level * expf(1.5f * mod);
    for (int j = 0; j < M; j++) {
      float v = out[t * M + j] + lt * gain[j] * expf(0.35f * nn_rng_normal(rng));
      out[t * M + j] = logf(v + E2E_LOG_MEL_FLOOR);
    }
  }
  *out_T = To;
  free(centre);
  free(width);
  free(gain);
  free(src0);
  free(srcw);
}

void asr_spec_mask(const asr_augment_opts *o, float *feats, int64_t T, int M, nn_rng *rng) {
  for (int k = 0; k < o->freq_masks; k++) {
    int w = (int)(nn_rng_u64(rng) % (uint64_t)(o->freq_mask_width + 1));
    if (w >= M) continue;
    int f0 = (int)(nn_rng_u64(rng) % (uint64_t)(M - w + 1));
    for (int64_t t = 0; t < T; t++) memset(feats + t * M + f0, 0, sizeof(float) * w);
  }
  /* masks cover at most a tenth of the utterance each, so short ones keep their words */
  int64_t maxw = T / 10 < o->time_mask_width ? T / 10 : o->time_mask_width;
  for (int k = 0; k < o->time_masks && maxw > 0; k++) {
    int64_t w = (int64_t)(nn_rng_u64(rng) % (uint64_t)(maxw + 1));
    int64_t t0 = (int64_t)(nn_rng_u64(rng) % (uint64_t)(T - w + 1));
    memset(feats + t0 * M, 0, sizeof(float) * (size_t)(w * M));
  }
}
