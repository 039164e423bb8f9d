/* Training batches for the recogniser: utterances from a feature set, augmented, normalised, padded; and
 * the CTC loss of a batch. */
#include <stdlib.h>
#include <string.h>

#include "internal.h"
#include "train.h"

bool asr_batch_make(asr_batch *b, const e2e_asr_set *set, const int *idx, int n, const e2e_mel_config *mel,
                    const asr_augment_opts *aug, nn_rng *rng) {
  memset(b, 0, sizeof *b);
  int M = set->n_mels;
  if (M != mel->n_mels) {
    nn_set_error("ASR batch: the set has %d mels, the model %d", M, mel->n_mels);
    return false;
  }
  b->n = n;
  b->frames = malloc(sizeof(int64_t) * n);
  b->text_len = malloc(sizeof(int64_t) * n);
  float **utt = calloc(n, sizeof(float *));
  int64_t Tmax = 1, Smax = 1;
  for (int i = 0; i < n; i++) {
    int u = idx[i];
    int64_t T = set->feat_off[u + 1] - set->feat_off[u];
    const uint8_t *q = set->feats + set->feat_off[u] * M;
    float *raw = malloc(sizeof(float) * (size_t)(T * M));
    for (int64_t k = 0; k < T * M; k++) raw[k] = e2e_asr_feat_value(q[k]);
    if (aug) {
      int64_t To = 0;
      utt[i] = malloc(sizeof(float) * (size_t)(asr_augment_max_frames(aug, T) * M));
      asr_augment(aug, mel, raw, T, utt[i], &To, rng);
      free(raw);
      T = To;
    } else {
      utt[i] = raw;
    }
    asr_normalize(utt[i], T, M);
    if (aug) asr_spec_mask(aug, utt[i], T, M, rng);
    b->frames[i] = T;
    b->text_len[i] = set->text_off[u + 1] - set->text_off[u];
    if (T > Tmax) Tmax = T;
    if (b->text_len[i] > Smax) Smax = b->text_len[i];
  }
  /* x [N, 1, M, T]: mels as rows, time along them (the convs see a spectrogram picture) */
  b->x = nn_zeros(NN_F32, 4, (int64_t[]){n, 1, M, Tmax});
  b->targets = nn_zeros(NN_I64, 2, (int64_t[]){n, Smax});
  float *xd = nn_f32(b->x);
  int64_t *td = nn_data(b->targets);
  for (int i = 0; i < n; i++) {
    for (int64_t t = 0; t < b->frames[i]; t++)
      for (int j = 0; j < M; j++) xd[((size_t)i * M + j) * Tmax + t] = utt[i][t * M + j];
    const uint8_t *tx = set->text + set->text_off[idx[i]];
    for (int64_t s = 0; s < b->text_len[i]; s++) td[i * Smax + s] = tx[s];
    free(utt[i]);
  }
  free(utt);
  return true;
}

void asr_batch_free(asr_batch *b) {
  free(b->frames);
  free(b->text_len);
  memset(b, 0, sizeof *b);
}

nn_tensor *asr_batch_loss(const asr_model *m, const asr_batch *b, double *loss_value) {
  int64_t *il = nn_arena_alloc(nn_arena_current(), sizeof(int64_t) * b->n);
  nn_tensor *lp = asr_forward(m, b->x, b->frames, il);
  if (!lp) return NULL;
  /* an utterance too fast for its transcript (fewer frames than CTC needs) counts zero, not infinity */
  nn_tensor *loss = nn_ctc_loss(lp, b->targets, il, b->text_len, E2E_ASR_BLANK, true, true);
  if (loss && loss_value) *loss_value = nn_item(loss);
  return loss;
}
