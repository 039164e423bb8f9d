/* Streaming synthesis: sentences decoded step by step, their frames refined by the postnet as soon as
 * it has its right context (POST_BATCH frames at a time: each window recomputes its edges), vocoded in
 * short chunks as soon as enough frames (and a few of right context) exist, each chunk's start
 * cross-faded with the previous chunk's overhang. The speaking rate stretches the frame sequence in time
 * (linear interpolation between frames) before the vocoder, so the pitch stays. */
#include <glib.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "../task.h"
#include "synth.h"

#define CHUNK 16       /* frames emitted per chunk: 0.2 s at a 12.5 ms hop */
#define LEFT 8         /* frames of context vocoded before a chunk ... */
#define RIGHT 6        /* ... and after it (a window spans about five hops) */
#define XFADE 256      /* samples cross-faded between chunks */
#define PAUSE_S 0.25   /* silence between sentences */
#define POST_BATCH 16  /* frames refined together */

e2e_tts_opts e2e_tts_opts_default(void) {
  return (e2e_tts_opts){.rate = 1.0f, .volume = 1.0f, .iterations = 32, .max_chars = 300};
}

struct e2e_tts_stream {
  e2e_session *session;
  e2e_tts_opts o;
  GQueue sentences;            /* normalised sentences (g_free'd) */
  /* the sentence in progress */
  e2e_model *model;            /* held while its decoder runs: a swap takes effect at the next sentence */
  const tts_model *tm;         /* its network, valid while model is held */
  float contrast;
  tts_synth *synth;
  int *word_start, n_words, next_word;
  char **words;
  int M, r, hop, rate_hz;
  GArray *norm;                /* the decoder's normalised frames [n][M] */
  GArray *raw;                 /* frames as heard (after the postnet and contrast) [n][M]: a prefix of norm */
  bool decoded;                /* the decoder has finished this sentence */
  int64_t emitted;             /* stretched frames whose samples are out */
  int64_t sentence_start;      /* the stream sample where the sentence's first frame starts */
  bool guard;
  /* output */
  tts_vocoder *voc;
  e2e_mel_config mel;
  float *overhang;             /* XFADE samples past the last chunk, to fade into the next */
  bool have_overhang;
  GArray *fifo;                /* samples made but not yet read */
  int64_t fifo_start;          /* stream sample of fifo[0] */
  GArray *pending_words;       /* e2e_tts_word, in order */
  int64_t samples;             /* samples read so far */
};

e2e_tts_stream *e2e_tts_stream_new(e2e_session *s, const e2e_tts_opts *o) {
  nn_scope scope;
  tts_model *m = e2e_session_enter(s, E2E_TASK_TTS, &scope);
  if (!m) return NULL;
  e2e_mel_config mel = m->mel;
  e2e_session_leave(s, &scope);
  e2e_tts_stream *st = calloc(1, sizeof *st);
  if (!st) return NULL;
  st->session = s;
  st->mel = mel;
  e2e_tts_stream_set_opts(st, o);
  g_queue_init(&st->sentences);
  st->voc = tts_vocoder_new(&mel);
  st->overhang = calloc(XFADE, sizeof(float));
  st->raw = g_array_new(FALSE, FALSE, sizeof(float));
  st->norm = g_array_new(FALSE, FALSE, sizeof(float));
  st->fifo = g_array_new(FALSE, FALSE, sizeof(float));
  st->pending_words = g_array_new(FALSE, FALSE, sizeof(e2e_tts_word));
  st->hop = mel.hop;
  st->rate_hz = mel.sample_rate;
  if (!st->voc || !st->overhang) {
    e2e_tts_stream_free(st);
    return NULL;
  }
  return st;
}

static void end_sentence(e2e_tts_stream *st) {
  tts_synth_free(st->synth);
  st->synth = NULL;
  e2e_model_unref(st->model);
  st->model = NULL;
  st->tm = NULL;
  free(st->word_start);
  st->word_start = NULL;
  g_strfreev(st->words);
  st->words = NULL;
  st->n_words = st->next_word = 0;
  if (st->raw) g_array_set_size(st->raw, 0);
  if (st->norm) g_array_set_size(st->norm, 0);
  st->decoded = false;
  st->emitted = 0;
}

void e2e_tts_stream_free(e2e_tts_stream *st) {
  if (!st) return;
  end_sentence(st);
  g_queue_clear_full(&st->sentences, g_free);
  tts_vocoder_free(st->voc);
  free(st->overhang);
  if (st->raw) g_array_free(st->raw, TRUE);
  if (st->norm) g_array_free(st->norm, TRUE);
  if (st->fifo) g_array_free(st->fifo, TRUE);
  if (st->pending_words) g_array_free(st->pending_words, TRUE);
  free(st);
}

void e2e_tts_stream_set_opts(e2e_tts_stream *st, const e2e_tts_opts *o) {
  st->o = o ? *o : e2e_tts_opts_default();
  st->o.rate = fminf(fmaxf(st->o.rate, 0.25f), 4.0f);
  st->o.volume = fminf(fmaxf(st->o.volume, 0.0f), 4.0f);
  st->o.iterations = st->o.iterations < 1 ? 1 : st->o.iterations > 256 ? 256 : st->o.iterations;
  st->o.max_chars = st->o.max_chars < 16 ? 16 : st->o.max_chars > 1000 ? 1000 : st->o.max_chars;
  if (!(st->o.contrast <= 0.0f)) st->o.contrast = fminf(fmaxf(st->o.contrast, TTS_CONTRAST_MIN), TTS_CONTRAST_MAX);
  else st->o.contrast = 0.0f;
}

int e2e_tts_stream_sample_rate(const e2e_tts_stream *st) { return st->rate_hz; }
int64_t e2e_tts_stream_samples(const e2e_tts_stream *st) { return st->samples; }

size_t e2e_tts_stream_say(e2e_tts_stream *st, const char *utf8, size_t len, void (*dropped)(const char *, void *),
                          void *ctx) {
  char *norm = e2e_tts_normalize(utf8, len, dropped, ctx);
  size_t n = strlen(norm);
  char **sentences = e2e_tts_sentences(norm, st->o.max_chars);
  for (char **p = sentences; *p; p++) g_queue_push_tail(&st->sentences, g_strdup(*p));
  g_strfreev(sentences);
  g_free(norm);
  return n;
}

void e2e_tts_stream_reset(e2e_tts_stream *st) {
  end_sentence(st);
  g_queue_clear_full(&st->sentences, g_free);
  g_queue_init(&st->sentences);
  g_array_set_size(st->fifo, 0);
  st->fifo_start = st->samples;
  g_array_set_size(st->pending_words, 0);
  st->have_overhang = false;
}

/* Starts the next queued sentence; false when none is left (or with a message when it cannot start). */
static bool start_sentence(e2e_tts_stream *st, bool *failed) {
  *failed = false;
  char *text = g_queue_pop_head(&st->sentences);
  if (!text) return false;
  size_t n = strlen(text);
  uint8_t *labels = malloc(n + 1);
  st->word_start = malloc(sizeof(int) * (n + 1));
  st->words = g_strsplit_set(text, " ", -1);
  int k = 0;
  bool word_begins = true;
  for (size_t i = 0; i < n; i++) {
    int l = e2e_tts_label((unsigned char)text[i]);
    if (l < 0) continue;
    if (text[i] == ' ') word_begins = true;
    else if (word_begins) st->word_start[st->n_words++] = k, word_begins = false;
    labels[k++] = (uint8_t)l;
  }
  nn_scope scope;
  tts_model *m = e2e_session_enter(st->session, E2E_TASK_TTS, &scope);
  if (m) {
    st->model = e2e_model_ref((e2e_model *)e2e_session_model(st->session));
    st->tm = m;
    st->M = m->cfg.n_mels, st->r = m->cfg.reduction;
    st->contrast = st->o.contrast > 0.0f ? st->o.contrast : m->contrast;
    /* the guard: three steps a character is twice the slowest speech a voice makes */
    st->synth = tts_synth_new(m, labels, k, 20 + 3 * (k + 1), st->o.prenet_dropout ? TTS_SYNTH_PRENET_DROPOUT : 0);
    e2e_session_leave(st->session, &scope);
  }
  free(labels);
  g_free(text);
  if (!st->synth) {
    end_sentence(st);
    *failed = true;
    return false;
  }
  st->sentence_start = st->fifo_start + (int64_t)st->fifo->len;
  return true;
}

/* Stretched frames available from the raw ones (all of them once decoding is done). */
static int64_t stretched_frames(const e2e_tts_stream *st) {
  int64_t n = st->raw->len / st->M;
  if (n == 0) return 0;
  double rate = st->o.rate;
  if (st->decoded) return (int64_t)floor((double)(n - 1) / rate) + 1;
  return n >= 2 ? (int64_t)floor((double)(n - 2) / rate) + 1 : 0; /* frame j needs raw frames up to j*rate + 1 */
}

static void stretched_frame(const e2e_tts_stream *st, int64_t j, float *out) {
  int M = st->M;
  int64_t n = st->raw->len / M;
  double pos = j * (double)st->o.rate;
  int64_t i0 = (int64_t)floor(pos);
  if (i0 >= n - 1) {
    memcpy(out, (float *)st->raw->data + (n - 1) * M, sizeof(float) * M);
    return;
  }
  float f = (float)(pos - (double)i0);
  const float *a = (float *)st->raw->data + i0 * M, *b = a + M;
  for (int k = 0; k < M; k++) out[k] = a[k] + f * (b[k] - a[k]);
}

/* Frames the postnet can finish go to raw, as heard: all of them once decoding is done. */
static bool refine(e2e_tts_stream *st) {
  int M = st->M;
  int64_t n = st->norm->len / M, done = st->raw->len / M;
  int64_t ready = st->decoded ? n : n - tts_postnet_reach(&st->tm->cfg);
  if (ready <= done || (!st->decoded && ready - done < POST_BATCH)) return true;
  float *post = malloc(sizeof(float) * (size_t)(ready - done) * M);
  bool ok = post && tts_postnet_frames(st->tm, (float *)st->norm->data, n, done, ready, post);
  if (ok) {
    tts_heard_frames(st->tm, st->contrast, post, ready - done, post);
    g_array_append_vals(st->raw, post, (guint)((ready - done) * M));
  }
  free(post);
  return ok;
}

/* One decoder step; notes the words whose first character the attention reached. */
static bool decode_step(e2e_tts_stream *st) {
  int rm = st->r * st->M;
  float *frames = g_alloca(sizeof(float) * (size_t)rm), stop = 0.0f;
  int64_t step = tts_synth_steps(st->synth);
  int peak = tts_synth_step(st->synth, frames, &stop);
  if (peak < 0) {
    st->decoded = true;
    st->guard = true;
    return refine(st);
  }
  g_array_append_vals(st->norm, frames, (guint)rm);
  while (st->next_word < st->n_words && peak >= st->word_start[st->next_word]) {
    e2e_tts_word w = {.sample = st->sentence_start + (int64_t)((double)step * st->r / st->o.rate * st->hop)};
    g_strlcpy(w.word, st->words[st->next_word] ? st->words[st->next_word] : "", sizeof w.word);
    /* the pause marks belong to the text, not the word */
    size_t l = strlen(w.word);
    while (l && strchr(",.?!", w.word[l - 1])) w.word[--l] = '\0';
    g_array_append_val(st->pending_words, w);
    st->next_word++;
  }
  if (tts_synth_finished(st->synth)) st->decoded = true;
  return refine(st);
}

/* Vocodes stretched frames [a, b) with context, cross-fades, appends to the fifo. last: the sentence's
 * final chunk, whose overhang is kept whole (faded out). */
static bool emit_chunk(e2e_tts_stream *st, int64_t a, int64_t b, bool last) {
  int M = st->M, hop = st->hop;
  int64_t total = stretched_frames(st);
  int64_t s0 = a - LEFT > 0 ? a - LEFT : 0, e0 = last ? total : (b + RIGHT < total ? b + RIGHT : total);
  float *lm = malloc(sizeof(float) * (size_t)(e0 - s0) * M), *y = NULL;
  if (!lm) return false;
  for (int64_t j = s0; j < e0; j++) stretched_frame(st, j, lm + (j - s0) * M);
  int64_t ny = 0;
  bool ok = tts_vocoder_run(st->voc, lm, e0 - s0, st->o.iterations, &y, &ny);
  free(lm);
  if (!ok) return false;
  int64_t from = (a - s0) * hop, to = last ? ny : (b - s0) * hop;
  if (to > ny) to = ny;
  int64_t n = to - from;
  float *out = y + from;
  if (st->have_overhang)
    for (int64_t i = 0; i < XFADE && i < n; i++) {
      float w = (float)(i + 1) / (XFADE + 1);
      out[i] = st->overhang[i] * (1.0f - w) + out[i] * w;
    }
  if (last) {
    for (int64_t i = 0; i < XFADE && i < n; i++) out[n - 1 - i] *= (float)i / XFADE; /* fade to silence */
    st->have_overhang = false;
  } else {
    for (int64_t i = 0; i < XFADE; i++) st->overhang[i] = to + i < ny ? y[to + i] : 0.0f;
    st->have_overhang = true;
  }
  for (int64_t i = 0; i < n; i++) out[i] = fmaxf(-1.0f, fminf(1.0f, out[i] * st->o.volume));
  g_array_append_vals(st->fifo, out, (guint)n);
  free(y);
  return true;
}

/* Makes at least one more chunk of samples; false when there is nothing left to say, or on a failure. */
static bool produce(e2e_tts_stream *st, bool *failed) {
  *failed = false;
  for (;;) {
    if (!st->synth) {
      if (!start_sentence(st, failed)) return false;
    }
    while (!st->decoded && stretched_frames(st) < st->emitted + CHUNK + RIGHT)
      if (!decode_step(st)) {
        *failed = true;
        return false;
      }
    int64_t total = stretched_frames(st);
    if (!st->decoded || total - st->emitted > CHUNK + RIGHT) {
      if (!emit_chunk(st, st->emitted, st->emitted + CHUNK, false)) {
        *failed = true;
        return false;
      }
      st->emitted += CHUNK;
      return true;
    }
    bool ok = total <= st->emitted || emit_chunk(st, st->emitted, total, true);
    end_sentence(st);
    if (!ok) {
      *failed = true;
      return false;
    }
    if (!g_queue_is_empty(&st->sentences)) { /* a pause before the next sentence */
      guint pause = (guint)(PAUSE_S * st->rate_hz / st->o.rate);
      g_array_set_size(st->fifo, st->fifo->len + pause);
      memset((float *)st->fifo->data + st->fifo->len - pause, 0, sizeof(float) * pause);
    }
    return true;
  }
}

int64_t e2e_tts_stream_next(e2e_tts_stream *st, float *out, int64_t max, e2e_tts_word *words, int max_words,
                            int *n_words, bool *guard_fired) {
  if (n_words) *n_words = 0;
  st->guard = false;
  if (st->fifo->len == 0) {
    bool failed;
    while (st->fifo->len == 0 && produce(st, &failed)) {
    }
    if (st->fifo->len == 0) return failed ? -1 : 0;
  }
  int64_t n = (int64_t)st->fifo->len < max ? (int64_t)st->fifo->len : max;
  memcpy(out, st->fifo->data, sizeof(float) * (size_t)n);
  g_array_remove_range(st->fifo, 0, (guint)n);
  st->fifo_start += n;
  int64_t end = st->samples + n;
  guint taken = 0;
  while (taken < st->pending_words->len && g_array_index(st->pending_words, e2e_tts_word, taken).sample < end) {
    if (words && n_words && *n_words < max_words) words[(*n_words)++] = g_array_index(st->pending_words, e2e_tts_word, taken);
    taken++;
  }
  g_array_remove_range(st->pending_words, 0, taken);
  st->samples = end;
  if (guard_fired) *guard_fired = st->guard;
  return n;
}
