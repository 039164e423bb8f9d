/* Synthesis one decoder step at a time. Every convolution of the decoder is causal, so a step needs only
 * each layer's inputs at t - 2d, t - d and t: a ring of the last 2d + 1 inputs per layer holds them, and a
 * step costs a few matrix-vector products (the same weights and arithmetic as tts_decode on the whole
 * sequence; tests compare the two). Attention is kept monotonic: each step may look only from the
 * previous peak to a few characters past it, so the voice can neither skip ahead nor go back, and a
 * length guard ends a decode that never reaches the end of its text. */
#include <cblas.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "synth.h"

#define WINDOW_BACK 1
#define WINDOW_AHEAD 3
#define RING 55 /* 2 * 27 + 1: the widest layer's taps */

struct tts_synth {
  const tts_model *m;
  int D, rm, L;
  float *keys, *values;      /* [L][D] */
  float *ring[2 * TTS_MAX_LAYERS];
  int64_t t;                 /* steps done */
  int peak;                  /* the attention's position */
  int back, ahead;           /* the window around it */
  int at_end;                /* steps the attention has spent on the end mark */
  bool finished;
  bool dropout;              /* the prenet's dropout, as in training */
  nn_rng rng;
  float *prev, *h, *z, *cat, *scores, *ctx, *out;
  int max_steps;
  float *attention;          /* [max_steps][L] when recorded */
};

static void linear(const nn_linear *l, const float *x, float *y) {
  int64_t in = l->in, out = l->out;
  if (l->bias) memcpy(y, nn_f32(l->bias), sizeof(float) * (size_t)out);
  else memset(y, 0, sizeof(float) * (size_t)out);
  cblas_sgemv(CblasRowMajor, CblasNoTrans, (int)out, (int)in, 1.0f, nn_f32(l->weight), (int)in, x, 1, 1.0f, y, 1);
}

static void relu(float *x, int n) {
  for (int i = 0; i < n; i++) x[i] = x[i] > 0.0f ? x[i] : 0.0f;
}

tts_synth *tts_synth_new(const tts_model *m, const uint8_t *labels, int n, int max_steps, int flags) {
  bool record_attention = flags & TTS_SYNTH_RECORD_ATTENTION;
  tts_synth *s = calloc(1, sizeof *s);
  if (!s) return NULL;
  s->m = m;
  s->D = m->cfg.dim;
  s->rm = m->cfg.reduction * m->cfg.n_mels;
  s->L = n + 1;
  int D = s->D;
  s->max_steps = max_steps;
  s->back = flags & TTS_SYNTH_FULL_ATTENTION ? s->L : WINDOW_BACK;
  s->ahead = flags & TTS_SYNTH_FULL_ATTENTION ? s->L : WINDOW_AHEAD;
  s->dropout = (flags & TTS_SYNTH_PRENET_DROPOUT) && m->cfg.prenet_dropout > 0.0f;
  nn_rng_seed(&s->rng, 20261207);
  /* keys and values through the training graph, once per utterance */
  nn_no_grad_begin();
  nn_tensor *text = nn_empty(NN_I64, 2, (int64_t[]){1, s->L});
  bool ok = text != NULL;
  if (ok) {
    int64_t *td = nn_data(text);
    for (int i = 0; i < n; i++) td[i] = labels[i];
    td[n] = E2E_TTS_END;
    int64_t len = s->L;
    nn_tensor *k = NULL, *v = NULL;
    tts_encode_text(m, text, &len, &k, &v);
    s->keys = malloc(sizeof(float) * (size_t)s->L * D);
    s->values = malloc(sizeof(float) * (size_t)s->L * D);
    ok = k && v && s->keys && s->values;
    if (ok) {
      nn_to_float_array(k, s->keys);
      nn_to_float_array(v, s->values);
    }
  }
  nn_arena_reset(nn_arena_current());
  nn_no_grad_end();
  for (int i = 0; ok && i < m->cfg.audio_layers + m->cfg.dec_layers; i++) ok = (s->ring[i] = calloc((size_t)RING * D, sizeof(float))) != NULL;
  s->prev = calloc((size_t)s->rm, sizeof(float));
  s->h = calloc((size_t)D, sizeof(float));
  s->z = calloc((size_t)2 * D, sizeof(float));
  s->cat = calloc((size_t)TTS_TAPS * D, sizeof(float));
  s->scores = calloc((size_t)s->L, sizeof(float));
  s->ctx = calloc((size_t)2 * D, sizeof(float));
  s->out = calloc((size_t)s->rm + 1, sizeof(float));
  if (record_attention) s->attention = calloc((size_t)max_steps * s->L, sizeof(float));
  if (!ok || !s->prev || !s->h || !s->z || !s->cat || !s->scores || !s->ctx || !s->out || (record_attention && !s->attention)) {
    if (ok) nn_set_error("TTS: out of memory for a %d-character text", n);
    tts_synth_free(s);
    return NULL;
  }
  return s;
}

void tts_synth_free(tts_synth *s) {
  if (!s) return;
  free(s->keys), free(s->values);
  for (int i = 0; i < 2 * TTS_MAX_LAYERS; i++) free(s->ring[i]);
  free(s->prev), free(s->h), free(s->z), free(s->cat), free(s->scores), free(s->ctx), free(s->out), free(s->attention);
  free(s);
}

/* One highway layer on h (in place), its inputs remembered in ring. */
static void highway_step(tts_synth *s, const nn_linear *l, float *ring, int d) {
  int D = s->D;
  memcpy(ring + (s->t % RING) * D, s->h, sizeof(float) * D);
  for (int k = 0; k < TTS_TAPS; k++) {
    int64_t back = (int64_t)(TTS_TAPS - 1 - k) * d, t = s->t - back;
    if (t < 0) memset(s->cat + k * D, 0, sizeof(float) * D);
    else memcpy(s->cat + k * D, ring + (t % RING) * D, sizeof(float) * D);
  }
  linear(l, s->cat, s->z);
  for (int i = 0; i < D; i++) {
    float g = 1.0f / (1.0f + expf(-s->z[i]));
    s->h[i] += g * (s->z[D + i] - s->h[i]);
  }
}

static void prenet_dropout(tts_synth *s, float *x) {
  if (!s->dropout) return;
  float p = s->m->cfg.prenet_dropout, keep = 1.0f / (1.0f - p);
  for (int i = 0; i < s->D; i++) x[i] = nn_rng_uniform(&s->rng) < p ? 0.0f : x[i] * keep;
}

int tts_synth_step(tts_synth *s, float *frames, float *stop_prob) {
  const tts_model *m = s->m;
  const tts_config *c = &m->cfg;
  int D = s->D;
  if (s->t >= s->max_steps) return -1;
  /* prenet; without its dropout the (inverted) dropout's expected scale is what training saw */
  linear(&m->pre1, s->prev, s->z);
  relu(s->z, D);
  prenet_dropout(s, s->z);
  linear(&m->pre2, s->z, s->h);
  relu(s->h, D);
  prenet_dropout(s, s->h);
  for (int i = 0; i < c->audio_layers; i++) highway_step(s, &m->audio[i], s->ring[i], tts_dilation(i));
  /* attention, inside the window around the last peak */
  int lo = s->peak - s->back < 0 ? 0 : s->peak - s->back;
  int hi = s->peak + s->ahead >= s->L ? s->L - 1 : s->peak + s->ahead;
  float mx = -INFINITY, scale = 1.0f / sqrtf((float)D);
  for (int l = lo; l <= hi; l++) {
    s->scores[l] = cblas_sdot(D, s->h, 1, s->keys + (size_t)l * D, 1) * scale;
    if (s->scores[l] > mx) mx = s->scores[l];
  }
  float sum = 0.0f;
  int best = lo;
  for (int l = lo; l <= hi; l++) {
    s->scores[l] = expf(s->scores[l] - mx);
    sum += s->scores[l];
    if (s->scores[l] > s->scores[best]) best = l;
  }
  memset(s->ctx, 0, sizeof(float) * D);
  for (int l = lo; l <= hi; l++) {
    float a = s->scores[l] / sum;
    if (s->attention) s->attention[s->t * s->L + l] = a;
    cblas_saxpy(D, a, s->values + (size_t)l * D, 1, s->ctx, 1);
  }
  if (best > s->peak) s->peak = best;
  memcpy(s->ctx + D, s->h, sizeof(float) * D);
  linear(&m->dec_in, s->ctx, s->h);
  for (int i = 0; i < c->dec_layers; i++) highway_step(s, &m->dec[i], s->ring[c->audio_layers + i], tts_dilation(i));
  linear(&m->fc1, s->h, s->z);
  relu(s->z, D);
  linear(&m->fc2, s->z, s->h);
  relu(s->h, D);
  linear(&m->out, s->h, s->out);
  memcpy(s->prev, s->out, sizeof(float) * s->rm);
  memcpy(frames, s->out, sizeof(float) * s->rm);
  *stop_prob = 1.0f / (1.0f + expf(-s->out[s->rm]));
  s->at_end += s->peak >= s->L - 1;
  s->finished = (*stop_prob > 0.5f && s->peak >= s->L - 3) || s->at_end > 8;
  s->t++;
  return s->peak;
}

bool tts_synth_finished(const tts_synth *s) { return s->finished; }

void tts_heard_frames(const tts_model *m, float contrast, const float *norm, int64_t n, float *log_mel) {
  int M = m->cfg.n_mels;
  const float *mean = nn_f32(m->mel_mean), *sd = nn_f32(m->mel_std);
  for (int64_t t = 0; t < n; t++)
    for (int j = 0; j < M; j++) log_mel[t * M + j] = contrast * norm[t * M + j] * sd[j] + mean[j];
}
int tts_synth_text_len(const tts_synth *s) { return s->L; }
const float *tts_synth_attention(const tts_synth *s) { return s->attention; }
int64_t tts_synth_steps(const tts_synth *s) { return s->t; }
