/* Speech recognition: the character set, transcripts, feature shards for training, and decoding of the
 * CTC recogniser's output (greedy; prefix beam search with a word list, a word bigram model or a grammar). */
#ifndef E2E_ASR_H
#define E2E_ASR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "e2e/audio.h"
#include "e2e/model.h"
#include "nncore/nncore.h"

/* Labels: 0 blank, 1 space, 2 apostrophe, 3..28 a..z. */
#define E2E_ASR_BLANK 0
#define E2E_ASR_CLASSES 29
/* The label of a character of a normalised transcript, or -1. */
int e2e_asr_label(int c);
/* The character of a label (' ' for space, '\0' for blank or out of range). */
char e2e_asr_char(int label);
/* A transcript as the recogniser writes it: ASCII letters lower-cased, apostrophes kept inside words,
 * everything else a word break, single spaces, no leading or trailing space. Returns the length written
 * (always NUL-terminated, truncated at a word boundary to fit cap). */
size_t e2e_asr_normalize_text(const char *in, char *out, size_t cap);

/* ---- training data: shards of log-mel features with their transcripts ----
 * A shard is a safetensors file: "feats" u8 [frames, n_mels] (log-mel quantised as q / 8 - 16),
 * "frames" i32 [n], "text" u8 [chars] (labels, transcripts back to back), "text_len" i32 [n],
 * "group" i32 [n] (an index into the metadata "groups", comma-separated: the voice or speaker), with the
 * front end's configuration in the metadata "mel". */
#define E2E_ASR_FEAT_SCALE 8.0f
#define E2E_ASR_FEAT_OFFSET 16.0f
static inline uint8_t e2e_asr_feat_quantise(float v) {
  float q = (v + E2E_ASR_FEAT_OFFSET) * E2E_ASR_FEAT_SCALE + 0.5f;
  return q <= 0.0f ? 0 : q >= 255.0f ? 255 : (uint8_t)q;
}
static inline float e2e_asr_feat_value(uint8_t q) { return q / E2E_ASR_FEAT_SCALE - E2E_ASR_FEAT_OFFSET; }

typedef struct {
  int n;                 /* utterances */
  int n_mels;
  int64_t *feat_off;     /* [n + 1] frame offsets into feats */
  int64_t *text_off;     /* [n + 1] offsets into text */
  int *group;            /* [n] */
  uint8_t *feats;        /* [frames][n_mels] */
  uint8_t *text;         /* labels */
  int n_groups;
  char **groups;
} e2e_asr_set;

/* Appends a shard to set (made empty with {0}); groups are merged by name. False with a message naming
 * the file. */
bool e2e_asr_set_load(e2e_asr_set *set, const char *path);
void e2e_asr_set_free(e2e_asr_set *set);
/* Group index of a name, or -1. */
int e2e_asr_set_group(const e2e_asr_set *set, const char *name);

/* Writes a shard from per-utterance features (float log-mel, quantised here). */
typedef struct e2e_asr_shard_writer e2e_asr_shard_writer;
e2e_asr_shard_writer *e2e_asr_shard_writer_new(int n_mels);
/* False (with a message) for a transcript with no label or characters outside the set after
 * normalisation... the text is normalised here. */
bool e2e_asr_shard_add(e2e_asr_shard_writer *w, const float *feats, int64_t frames, const char *text,
                       const char *group);
int e2e_asr_shard_count(const e2e_asr_shard_writer *w);
bool e2e_asr_shard_save(e2e_asr_shard_writer *w, const char *path, const char *mel_json);
void e2e_asr_shard_writer_free(e2e_asr_shard_writer *w);

/* ---- decoding and scoring ---- */

/* Best path: the most likely label per frame, repeats merged, blanks dropped. logp [T][E2E_ASR_CLASSES].
 * Returns the length of the text written to out (NUL-terminated, cut to cap). */
size_t e2e_asr_greedy(const float *logp, int64_t T, char *out, size_t cap);

/* Word and character edit distances of a hypothesis against a reference (both normalised transcripts). */
typedef struct {
  int64_t ref_words, word_errors, ref_chars, char_errors;
} e2e_asr_score;
void e2e_asr_score_add(e2e_asr_score *s, const char *ref, const char *hyp);
static inline double e2e_asr_wer(const e2e_asr_score *s) {
  return s->ref_words ? (double)s->word_errors / (double)s->ref_words : 0.0;
}
static inline double e2e_asr_cer(const e2e_asr_score *s) {
  return s->ref_chars ? (double)s->char_errors / (double)s->ref_chars : 0.0;
}

/* ---- recognition through a session (e2e/model.h) ---- */

/* A word language model for the beam search. From text (one sentence per line, normalised here): unigram
 * and bigram counts with absolute discounting; closed: only its words can be recognised (a word list),
 * open: other words pass with a penalty. NULL with a message naming the file. */
typedef struct e2e_asr_lm e2e_asr_lm;
e2e_asr_lm *e2e_asr_lm_from_text_file(const char *path, bool closed);
/* The same from text in memory (what names it in messages). */
e2e_asr_lm *e2e_asr_lm_from_text(const char *text, size_t len, bool closed, const char *what);
/* The digit grammar: any sequence of zero..nine and "oh", nothing else. */
e2e_asr_lm *e2e_asr_lm_digits(void);
int e2e_asr_lm_words(const e2e_asr_lm *lm);
void e2e_asr_lm_free(e2e_asr_lm *lm);

typedef struct {
  int beam;                /* 1: best path (greedy); more: CTC prefix beam search */
  const e2e_asr_lm *lm;    /* word list, bigram model or grammar for the beam search (NULL: none) */
  float lm_weight;         /* weight of the language model's log10-probability per word */
  float word_bonus;        /* added per word (balances the LM's preference for few words) */
} e2e_asr_decode_opts;
/* Greedy, no language model. */
e2e_asr_decode_opts e2e_asr_decode_defaults(void);

typedef struct {
  char word[64];
  double start, end;       /* seconds from the first feature frame */
  float confidence;        /* mean posterior of the word's characters, 0..1 */
} e2e_asr_word;

typedef struct {
  char *text;              /* normalised transcript ("" for none); malloc'ed */
  float confidence;        /* mean over words (1 for no words) */
  int n_words;
  e2e_asr_word *words;
  int64_t frames;          /* feature frames decoded */
} e2e_asr_result;
void e2e_asr_result_clear(e2e_asr_result *r);

/* The front end the session's model was trained with. */
bool e2e_asr_session_mel(e2e_session *s, e2e_mel_config *out);
/* Recognises one segment of log-mel frames [T][n_mels] (e2e_log_mel or e2e_mel_stream; normalised
 * inside, per segment). False with a message on a bad call; a segment too short to hold speech gives an
 * empty result. */
bool e2e_asr_recognize(e2e_session *s, const float *log_mel, int64_t T, const e2e_asr_decode_opts *o,
                       e2e_asr_result *r);
/* ---- live recognition: voice activity, segments, partial and final results ---- */

typedef struct {
  float vad_threshold_db;   /* frame energy above the running noise floor that counts as speech */
  int min_speech_ms;        /* a louder burst shorter than this is not speech */
  int hangover_ms;          /* silence after speech that ends a segment (part of the final result's delay) */
  int preroll_ms;           /* audio kept before the detected onset */
  int max_segment_ms;       /* a longer segment is cut and finalised here */
  int partial_interval_ms;  /* speech between partial results (0: none) */
} e2e_asr_stream_opts;
e2e_asr_stream_opts e2e_asr_stream_defaults(void);
bool e2e_asr_stream_opts_check(const e2e_asr_stream_opts *o);

typedef enum { E2E_ASR_PARTIAL, E2E_ASR_FINAL } e2e_asr_event_kind;
typedef struct {
  e2e_asr_event_kind kind;
  int64_t start, end;        /* the segment's samples [start, end) since the stream's last reset */
  const e2e_asr_result *result; /* word times are seconds from the segment's start */
} e2e_asr_event;
typedef void (*e2e_asr_event_cb)(void *user, const e2e_asr_event *ev);

typedef struct e2e_asr_stream e2e_asr_stream;
/* Recognises a stream of mono samples at the session model's rate. NULL with a message. */
e2e_asr_stream *e2e_asr_stream_new(e2e_session *s, const e2e_asr_stream_opts *o, const e2e_asr_decode_opts *d);
void e2e_asr_stream_free(e2e_asr_stream *st);
/* Feeds samples; results arrive through cb as segments are decoded. False with a message on failure. */
bool e2e_asr_stream_push(e2e_asr_stream *st, const float *x, int n, e2e_asr_event_cb cb, void *user);
/* End of stream (or before a reset): the open segment, if any, is finalised. */
bool e2e_asr_stream_flush(e2e_asr_stream *st, e2e_asr_event_cb cb, void *user);
/* Forgets everything (a discontinuity or flush): positions restart at 0. */
void e2e_asr_stream_reset(e2e_asr_stream *st);
void e2e_asr_stream_set_decode(e2e_asr_stream *st, const e2e_asr_decode_opts *d);
int e2e_asr_stream_rate(const e2e_asr_stream *st);
/* True while a segment is open (speech heard, not yet finalised). */
bool e2e_asr_stream_in_speech(const e2e_asr_stream *st);

/* A model with fresh weights (tests, and the start of training). */
e2e_model *e2e_asr_model_new(int hidden, int layers, uint64_t seed);

#endif
