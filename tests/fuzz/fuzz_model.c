/* A model file as every element opens it (e2e_model_open): the architecture in the metadata picks the
 * task's loader (detector, imported graph, codec, recogniser), which validates the config, every shape,
 * the codec's CDF tables and the weights' values. An accepted model is also described, so that what the
 * loader let through is read once and, for a small model, run once. */
#include "e2e/model.h"
#include "fuzz.h"

int LLVMFuzzerInitialize(int *argc, char ***argv) { return 0; }

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  e2e_model *m = e2e_model_open_memory(data, size, "fuzz.safetensors", E2E_TASK_ANY);
  if (!m) return 0;
  const e2e_model_info *info = e2e_model_describe(m);
  if (!info->architecture || info->n_params < 0 || (info->n_labels > 0 && !info->labels)) __builtin_trap();
  /* a small accepted model also runs once: a config the loader let through must not break inference */
  if (info->n_params <= 200000 && (info->task != E2E_TASK_DETECT || info->input_size <= 128)) {
    e2e_slot *slot = e2e_slot_new(m);
    e2e_session *s = e2e_session_new(slot, 1);
    e2e_session_warm_up(s, info->task == E2E_TASK_DETECT ? 0 : 64, 64);
    e2e_session_free(s);
    e2e_slot_unref(slot);
  }
  e2e_model_unref(m);
  return 0;
}
