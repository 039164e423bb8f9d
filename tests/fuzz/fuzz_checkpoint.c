/* nn_checkpoint_load on a model: a training checkpoint (weights under "model.", Adam's state under
 * "optim.", the step count) is checked against a small network before anything is overwritten; on
 * failure the network and the optimizer must be exactly as they were. */
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"
#include "nncore/nncore.h"

static nn_params model;
static nn_optim *opt;
static nn_tensor *w1, *b1, *w2;
static float *snapshot;
static int64_t total;

/* The weights and the optimizer's state, one after the other. */
static int64_t copy_out(float *dst) {
  int64_t n = 0;
  const nn_params *lists[2] = {&model, &opt->state};
  for (int l = 0; l < 2; l++)
    for (int i = 0; i < lists[l]->n; i++) {
      nn_tensor *t = lists[l]->t[i];
      if (dst) memcpy(dst + n, nn_f32(t), sizeof(float) * (size_t)nn_numel(t));
      n += nn_numel(t);
    }
  return n;
}

int LLVMFuzzerInitialize(int *argc, char ***argv) {
  nn_params_init(&model);
  w1 = nn_params_add(&model, "fc1.weight", nn_tensor_new(NN_F32, 2, (int64_t[]){8, 4}), true);
  b1 = nn_params_add(&model, "fc1.bias", nn_tensor_new(NN_F32, 1, (int64_t[]){8}), true);
  w2 = nn_params_add(&model, "fc2.weight", nn_tensor_new(NN_F32, 2, (int64_t[]){3, 8}), true);
  for (int64_t k = 0; k < nn_numel(w1); k++) nn_f32(w1)[k] = 0.01f * (float)k;
  opt = nn_optim_new(&model, nn_optim_defaults(NN_ADAM, 1e-3f));
  total = copy_out(NULL);
  snapshot = malloc(sizeof(float) * (size_t)total);
  return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  copy_out(snapshot);
  int64_t step = opt->step;
  nn_st_file *f = nn_st_open_memory(data, size, "fuzz.ckpt");
  bool ok = f && nn_checkpoint_load_file(f, "fuzz.ckpt", &model, opt);
  nn_st_close(f);
  if (!ok) { /* refused: untouched */
    float *now = malloc(sizeof(float) * (size_t)total);
    copy_out(now);
    if (memcmp(now, snapshot, sizeof(float) * (size_t)total) != 0 || opt->step != step) __builtin_trap();
    free(now);
  }
  return 0;
}
