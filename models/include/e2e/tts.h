/* Speech synthesis: the text front end (normalisation to the synthesiser's characters, sentence splitting)
 * and the synthesiser's character set. */
#ifndef E2E_TTS_H
#define E2E_TTS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

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

#endif
