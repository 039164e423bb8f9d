/* Text the speech recogniser takes from users: a language-model or word-list file (lm-file) normalised
 * and counted into a bigram model, then a CTC prefix beam search over a fixed posteriorgram with it, open
 * and closed. (e2etts's text input joins here when it lands.) */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "asr/internal.h"
#include "e2e/asr.h"
#include "fuzz.h"

#define T 40
static float logp[T][E2E_ASR_CLASSES];

int LLVMFuzzerInitialize(int *argc, char ***argv) {
  /* a posteriorgram that spells "one two" with some doubt, blanks between */
  const char *spell = "o ne  tw o";
  for (int t = 0; t < T; t++) {
    int want = t % 4 == 0 && t / 4 < (int)strlen(spell) ? e2e_asr_label(spell[t / 4]) : 0;
    for (int c = 0; c < E2E_ASR_CLASSES; c++) logp[t][c] = logf(c == want ? 0.7f : 0.3f / (E2E_ASR_CLASSES - 1));
  }
  return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  char norm[512];
  char *s = strndup((const char *)data, size);
  size_t n = e2e_asr_normalize_text(s, norm, sizeof norm);
  if (n >= sizeof norm || strlen(norm) != n) __builtin_trap();
  free(s);
  for (int closed = 0; closed < 2; closed++) {
    e2e_asr_lm *lm = e2e_asr_lm_from_text((const char *)data, size, closed, "fuzz.txt");
    if (!lm) continue;
    e2e_asr_decode_opts o = e2e_asr_decode_defaults();
    o.beam = 8, o.lm = lm, o.lm_weight = 0.8f, o.word_bonus = 1.0f;
    asr_path path;
    asr_beam_search(&logp[0][0], T, &o, &path);
    e2e_asr_lm_free(lm);
  }
  return 0;
}
