/* The recogniser's character set and transcript normalisation. */
#include <ctype.h>
#include <string.h>

#include "e2e/asr.h"

int e2e_asr_label(int c) {
  if (c == ' ') return 1;
  if (c == '\'') return 2;
  if (c >= 'a' && c <= 'z') return 3 + (c - 'a');
  return -1;
}

char e2e_asr_char(int label) {
  if (label == 1) return ' ';
  if (label == 2) return '\'';
  if (label >= 3 && label < E2E_ASR_CLASSES) return (char)('a' + label - 3);
  return '\0';
}

size_t e2e_asr_normalize_text(const char *in, char *out, size_t cap) {
  size_t n = 0, word_start = 0;
  bool pending_space = false;
  if (cap == 0) return 0;
  for (const unsigned char *p = (const unsigned char *)in; *p; p++) {
    int c = tolower(*p < 128 ? *p : ' ');
    /* an apostrophe is kept only between letters ("don't", "james's"), not as a quote mark */
    bool apostrophe_inside = c == '\'' && n > word_start && !pending_space && isalpha(p[1]);
    if ((c >= 'a' && c <= 'z') || apostrophe_inside) {
      if (pending_space && n > 0) {
        if (n + 1 >= cap) break;
        out[n++] = ' ';
        word_start = n;
      }
      pending_space = false;
      if (n + 1 >= cap) {
        n = word_start > 0 ? word_start - 1 : 0; /* drop the cut word and its space */
        break;
      }
      out[n++] = (char)c;
    } else {
      pending_space = true;
    }
  }
  out[n] = '\0';
  return n;
}
