/* Live recognition: log-mel frames from a stream, voice activity from frame energy against a running noise
 * floor, segments with a pre-roll, partial results while a segment grows and a final one when it ends.
 *
 * The rule: memory is bounded by max_segment_ms whatever arrives (silence, noise, a stream that never
 * pauses), and a final result's delay after the last speech frame is the hangover plus one decode. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

e2e_asr_stream_opts e2e_asr_stream_defaults(void) {
  return (e2e_asr_stream_opts){.vad_threshold_db = 10.0f, .min_speech_ms = 60, .hangover_ms = 200,
                               .preroll_ms = 250, .max_segment_ms = 15000, .partial_interval_ms = 500};
}

bool e2e_asr_stream_opts_check(const e2e_asr_stream_opts *o) {
  if (!(o->vad_threshold_db >= 0.0f && o->vad_threshold_db <= 80.0f) || o->min_speech_ms < 0 ||
      o->min_speech_ms > 5000 || o->hangover_ms < 10 || o->hangover_ms > 10000 || o->preroll_ms < 0 ||
      o->preroll_ms > 5000 || o->max_segment_ms < 500 || o->max_segment_ms > 120000 || o->partial_interval_ms < 0) {
    nn_set_error("speech stream settings out of range (threshold 0-80 dB, min speech 0-5000 ms, hangover 10-10000 ms, "
                 "pre-roll 0-5000 ms, max segment 500-120000 ms)");
    return false;
  }
  return true;
}

struct e2e_asr_stream {
  e2e_session *session;
  e2e_asr_stream_opts o;
  e2e_asr_decode_opts d;
  e2e_mel_config mel;
  e2e_mel_stream *ms;
  int M;
  int hangover, min_speech, preroll, max_frames, partial_every; /* in frames */
  float *frames;     /* the open segment's frames (or the pre-roll ring when none is open), [max_frames][M] */
  int n_frames;
  int64_t seg_first; /* frame index of frames[0] */
  int64_t next_frame; /* index of the next frame from the mel stream */
  bool open;
  int loud_run, quiet_run, since_partial;
  float floor_db;
  bool floor_set;
  float *tmp;
};

e2e_asr_stream *e2e_asr_stream_new(e2e_session *s, const e2e_asr_stream_opts *o, const e2e_asr_decode_opts *d) {
  e2e_mel_config mel;
  if (!e2e_asr_stream_opts_check(o) || !e2e_asr_session_mel(s, &mel)) return NULL;
  e2e_asr_stream *st = calloc(1, sizeof *st);
  st->session = s;
  st->o = *o;
  st->d = *d;
  st->mel = mel;
  st->M = mel.n_mels;
  double fps = (double)mel.sample_rate / mel.hop;
  st->hangover = (int)ceil(o->hangover_ms * fps / 1000.0);
  st->min_speech = (int)ceil(o->min_speech_ms * fps / 1000.0);
  st->preroll = (int)ceil(o->preroll_ms * fps / 1000.0);
  st->max_frames = (int)ceil(o->max_segment_ms * fps / 1000.0);
  if (st->preroll >= st->max_frames / 2) st->preroll = st->max_frames / 2;
  st->partial_every = o->partial_interval_ms > 0 ? (int)ceil(o->partial_interval_ms * fps / 1000.0) : 0;
  st->ms = e2e_mel_stream_new(&mel);
  st->frames = malloc(sizeof(float) * (size_t)st->max_frames * st->M);
  st->tmp = malloc(sizeof(float) * 64 * st->M);
  if (!st->ms || !st->frames || !st->tmp) {
    e2e_asr_stream_free(st);
    nn_set_error("speech stream: out of memory");
    return NULL;
  }
  return st;
}

void e2e_asr_stream_free(e2e_asr_stream *st) {
  if (!st) return;
  e2e_mel_stream_free(st->ms);
  free(st->frames);
  free(st->tmp);
  free(st);
}

void e2e_asr_stream_set_decode(e2e_asr_stream *st, const e2e_asr_decode_opts *d) { st->d = *d; }
int e2e_asr_stream_rate(const e2e_asr_stream *st) { return st->mel.sample_rate; }
bool e2e_asr_stream_in_speech(const e2e_asr_stream *st) { return st->open; }

void e2e_asr_stream_reset(e2e_asr_stream *st) {
  e2e_mel_stream_reset(st->ms);
  st->n_frames = 0;
  st->seg_first = 0;
  st->next_frame = 0;
  st->open = false;
  st->loud_run = st->quiet_run = st->since_partial = 0;
  st->floor_set = false;
}

/* Frame energy in dB (of the mel power sum). */
static float frame_db(const float *f, int M) {
  float mx = f[0];
  for (int j = 1; j < M; j++) mx = f[j] > mx ? f[j] : mx;
  double s = 0;
  for (int j = 0; j < M; j++) s += exp(f[j] - mx);
  return (float)((mx + log(s)) * 4.3429448); /* 10 / ln 10 */
}

static bool decode(e2e_asr_stream *st, e2e_asr_event_kind kind, int n, e2e_asr_event_cb cb, void *user) {
  e2e_asr_result r;
  if (!e2e_asr_recognize(st->session, st->frames, n, &st->d, &r)) return false;
  int64_t start = st->seg_first * st->mel.hop;
  e2e_asr_event ev = {.kind = kind, .start = start, .end = start + (int64_t)(n - 1) * st->mel.hop + st->mel.n_fft,
                      .result = &r};
  if (cb) cb(user, &ev);
  e2e_asr_result_clear(&r);
  return true;
}

static bool finalise(e2e_asr_stream *st, e2e_asr_event_cb cb, void *user) {
  bool ok = decode(st, E2E_ASR_FINAL, st->n_frames, cb, user);
  st->open = false;
  st->n_frames = 0;
  st->seg_first = st->next_frame;
  st->quiet_run = st->since_partial = 0;
  st->loud_run = 0;
  return ok;
}

static bool on_frame(e2e_asr_stream *st, const float *f, e2e_asr_event_cb cb, void *user) {
  int M = st->M;
  float db = frame_db(f, M);
  /* the noise floor follows quiet frames down quickly and drifts up slowly, so speech does not raise it */
  if (!st->floor_set) st->floor_db = db, st->floor_set = true;
  else if (db < st->floor_db) st->floor_db = 0.8f * st->floor_db + 0.2f * db;
  else st->floor_db += 0.002f * (db - st->floor_db);
  bool loud = db > st->floor_db + st->o.vad_threshold_db;
  st->loud_run = loud ? st->loud_run + 1 : 0;
  if (!st->open) {
    /* the pre-roll ring: the last preroll + min_speech frames */
    int keep = st->preroll + st->min_speech + 1;
    if (st->n_frames == keep) {
      memmove(st->frames, st->frames + M, sizeof(float) * (size_t)(keep - 1) * M);
      st->n_frames--;
      st->seg_first++;
    }
    memcpy(st->frames + (size_t)st->n_frames * M, f, sizeof(float) * M);
    st->n_frames++;
    st->next_frame++;
    if (st->loud_run >= (st->min_speech > 0 ? st->min_speech : 1)) {
      st->open = true;
      st->quiet_run = 0;
      st->since_partial = 0;
    }
    return true;
  }
  memcpy(st->frames + (size_t)st->n_frames * M, f, sizeof(float) * M);
  st->n_frames++;
  st->next_frame++;
  st->quiet_run = loud ? 0 : st->quiet_run + 1;
  st->since_partial++;
  if (st->quiet_run >= st->hangover || st->n_frames >= st->max_frames) return finalise(st, cb, user);
  if (st->partial_every && st->since_partial >= st->partial_every) {
    st->since_partial = 0;
    return decode(st, E2E_ASR_PARTIAL, st->n_frames, cb, user);
  }
  return true;
}

bool e2e_asr_stream_push(e2e_asr_stream *st, const float *x, int n, e2e_asr_event_cb cb, void *user) {
  while (n > 0) {
    int k = n < 4096 ? n : 4096;
    e2e_mel_stream_push(st->ms, x, k);
    x += k, n -= k;
    int got;
    while ((got = e2e_mel_stream_take(st->ms, st->tmp, 64)) > 0)
      for (int i = 0; i < got; i++)
        if (!on_frame(st, st->tmp + (size_t)i * st->M, cb, user)) return false;
  }
  return true;
}

bool e2e_asr_stream_flush(e2e_asr_stream *st, e2e_asr_event_cb cb, void *user) {
  if (!st->open) return true;
  return finalise(st, cb, user);
}
