/* Speech synthesis: the text front end (normalisation to the synthesiser's characters, sentence splitting)
 * and the synthesiser's character set. */
#ifndef E2E_TTS_H
#define E2E_TTS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "e2e/model.h"

/* The characters the synthesiser reads: lower-case letters, apostrophe, space and the pause marks
 * , . ? ! -- label 0 is padding, 1 ends the text. */
#define E2E_TTS_PAD 0
#define E2E_TTS_END 1
#define E2E_TTS_SYMBOLS 38
/* The label of a normalised character, or -1. */
int e2e_tts_label(int c);
char e2e_tts_char(int label);

/* Writes text out as the words a reader says: numbers, ordinals, years, dates, times, currency, percent,
 * abbreviations and symbols become words; accented Latin letters lose their accents; other characters
 * (emoji, control characters, invalid UTF-8) are dropped, each kind reported once through
 * `dropped` when given. The result is lower case, single-spaced, with only ", . ? !" as punctuation,
 * each attached to the word before it. Never fails; g_free the result. */
char *e2e_tts_normalize(const char *utf8, size_t len, void (*dropped)(const char *what, void *ctx), void *ctx);

/* Splits normalised text into sentences of at most max_chars characters: at . ? !, then where a sentence
 * is still too long at commas, then at spaces. Returns a NULL-terminated array (g_strfreev). */
char **e2e_tts_sentences(const char *normalised, int max_chars);

/* ---- synthesis through a session (e2e/model.h) ---- */

/* A tiny synthesiser with fresh weights (tests; it never learnt to stop, so the length guard ends it). */
e2e_model *e2e_tts_model_new_tiny(uint64_t seed);

typedef struct {
  float rate;       /* speaking rate: 1 normal, 2 twice as fast (0.25..4) */
  float volume;     /* gain on the samples (0..4) */
  int iterations;   /* Griffin-Lim iterations per chunk */
  int max_chars;    /* longest sentence given to the network at once */
  bool prenet_dropout; /* keep the prenet's training dropout while speaking (Tacotron's choice; fixed seed) */
  float contrast;   /* how far the spectrogram is stretched from the voice's mean (0.5..2); 0: the model's own */
} e2e_tts_opts;
e2e_tts_opts e2e_tts_opts_default(void);

/* A word and where it starts, in samples from the start of the stream. */
typedef struct {
  char word[64];
  int64_t sample;
} e2e_tts_word;

/* Text in, audio out as it is made: sentences are decoded step by step and their audio comes out in
 * chunks of about a fifth of a second (vocoded with a little context on either side and cross-faded), so
 * the first samples of a long sentence are ready long before the sentence is done. One thread at a time;
 * the session may be another thread's too only if that thread uses its own stream. */
typedef struct e2e_tts_stream e2e_tts_stream;
/* NULL with a message when the session does not run a synthesiser. */
e2e_tts_stream *e2e_tts_stream_new(e2e_session *s, const e2e_tts_opts *o);
void e2e_tts_stream_free(e2e_tts_stream *st);
void e2e_tts_stream_set_opts(e2e_tts_stream *st, const e2e_tts_opts *o);
int e2e_tts_stream_sample_rate(const e2e_tts_stream *st);
/* Queues text (any UTF-8; normalised here, cut into sentences). Returns the characters queued after
 * normalisation (0: nothing to say). dropped, when given, hears what normalisation dropped. */
size_t e2e_tts_stream_say(e2e_tts_stream *st, const char *utf8, size_t len,
                          void (*dropped)(const char *what, void *ctx), void *ctx);
/* The next chunk: up to max samples (floats in [-1, 1]) into out, words that start in them into words
 * (up to max_words; *n_words set). Returns the samples written, 0 when everything queued has been said,
 * -1 with a message on a failure. guard_fired, when given, is set when the length guard ended a
 * sentence in this chunk. */
int64_t e2e_tts_stream_next(e2e_tts_stream *st, float *out, int64_t max, e2e_tts_word *words, int max_words,
                            int *n_words, bool *guard_fired);
/* Forgets queued text and the sentence in progress (a flush). The sample count goes on. */
void e2e_tts_stream_reset(e2e_tts_stream *st);
/* Samples produced so far. */
int64_t e2e_tts_stream_samples(const e2e_tts_stream *st);

#endif
