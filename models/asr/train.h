/* Training batches and the loss of the recogniser. Private to models/asr/ and the e2e tool. */
#ifndef E2E_ASR_TRAIN_H
#define E2E_ASR_TRAIN_H

#include "internal.h"

typedef struct {
  int n;
  nn_tensor *x;        /* [n, 1, mels, T], normalised, zero past each utterance's frames (arena) */
  int64_t *frames;     /* [n] */
  nn_tensor *targets;  /* [n, S] i64 labels (arena) */
  int64_t *text_len;   /* [n] */
} asr_batch;

/* Builds a batch of the utterances idx[0..n) of set, augmented when aug is given. The tensors come from
 * the current arena; the arrays are malloc'ed (asr_batch_free). */
bool asr_batch_make(asr_batch *b, const e2e_asr_set *set, const int *idx, int n, const e2e_mel_config *mel,
                    const asr_augment_opts *aug, nn_rng *rng);
void asr_batch_free(asr_batch *b);
/* CTC loss (PyTorch's 'mean': per target length, then over the batch), recorded for backward. */
nn_tensor *asr_batch_loss(const asr_model *m, const asr_batch *b, double *loss_value);

#endif
