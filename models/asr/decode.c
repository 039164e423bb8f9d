/* Decoding the recogniser's CTC output, and word/character error counts. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

e2e_asr_decode_opts e2e_asr_decode_defaults(void) {
  return (e2e_asr_decode_opts){.beam = 1, .lm = NULL, .lm_weight = 0.8f, .word_bonus = 1.0f};
}

static void greedy_path(const float *logp, int64_t T, asr_path *out) {
  int prev = E2E_ASR_BLANK;
  out->n = 0;
  for (int64_t t = 0; t < T; t++) {
    const float *row = logp + t * E2E_ASR_CLASSES;
    int best = 0;
    for (int c = 1; c < E2E_ASR_CLASSES; c++)
      if (row[c] > row[best]) best = c;
    if (best != prev && best != E2E_ASR_BLANK && out->n < ASR_MAX_LABELS) {
      /* no leading or doubled space */
      bool space = best == 1;
      if (!(space && (out->n == 0 || out->label[out->n - 1] == 1))) {
        out->label[out->n] = (uint8_t)best;
        out->frame[out->n] = (int)t;
        out->prob[out->n] = expf(row[best]);
        out->n++;
      }
    }
    prev = best;
  }
  while (out->n > 0 && out->label[out->n - 1] == 1) out->n--;
}

bool asr_decode_path(const float *logp, int64_t T, const e2e_asr_decode_opts *o, asr_path *out) {
  if (o && o->beam > 1) return asr_beam_search(logp, T, o, out);
  greedy_path(logp, T, out);
  return true;
}

size_t e2e_asr_greedy(const float *logp, int64_t T, char *out, size_t cap) {
  if (cap == 0) return 0;
  asr_path *p = malloc(sizeof *p);
  size_t n = 0;
  if (p) {
    greedy_path(logp, T, p);
    for (; n < (size_t)p->n && n + 1 < cap; n++) out[n] = e2e_asr_char(p->label[n]);
    free(p);
  }
  out[n] = '\0';
  return n;
}

/* Levenshtein distance between two token sequences (tokens compared with eq). */
static int64_t edit_distance(const void *a, int64_t na, const void *b, int64_t nb,
                             int (*eq)(const void *, int64_t, const void *, int64_t)) {
  int64_t *row = malloc(sizeof(int64_t) * (size_t)(nb + 1));
  for (int64_t j = 0; j <= nb; j++) row[j] = j;
  for (int64_t i = 1; i <= na; i++) {
    int64_t diag = row[0];
    row[0] = i;
    for (int64_t j = 1; j <= nb; j++) {
      int64_t up = row[j];
      int64_t best = diag + (eq(a, i - 1, b, j - 1) ? 0 : 1);
      if (up + 1 < best) best = up + 1;
      if (row[j - 1] + 1 < best) best = row[j - 1] + 1;
      row[j] = best;
      diag = up;
    }
  }
  int64_t d = row[nb];
  free(row);
  return d;
}

static int char_eq(const void *a, int64_t i, const void *b, int64_t j) {
  return ((const char *)a)[i] == ((const char *)b)[j];
}
static int word_eq(const void *a, int64_t i, const void *b, int64_t j) {
  return !strcmp(((char *const *)a)[i], ((char *const *)b)[j]);
}

static char **split_words(const char *s, int64_t *n, char **buf) {
  *buf = strdup(s);
  int64_t cap = 1;
  for (const char *p = s; *p; p++) cap += *p == ' ';
  char **w = malloc(sizeof(char *) * (size_t)cap);
  *n = 0;
  char *save = NULL;
  for (char *t = strtok_r(*buf, " ", &save); t; t = strtok_r(NULL, " ", &save)) w[(*n)++] = t;
  return w;
}

void e2e_asr_score_add(e2e_asr_score *s, const char *ref, const char *hyp) {
  char *rb, *hb;
  int64_t nr, nh;
  char **rw = split_words(ref, &nr, &rb), **hw = split_words(hyp, &nh, &hb);
  s->ref_words += nr;
  s->word_errors += edit_distance(rw, nr, hw, nh, word_eq);
  s->ref_chars += (int64_t)strlen(ref);
  s->char_errors += edit_distance(ref, (int64_t)strlen(ref), hyp, (int64_t)strlen(hyp), char_eq);
  free(rw), free(hw), free(rb), free(hb);
}
