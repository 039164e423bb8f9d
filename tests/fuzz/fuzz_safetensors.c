/* The safetensors reader (nncore/src/safetensors.c): header length, JSON header, dtypes, shapes and
 * offsets, metadata; every tensor it accepts is then read in full. */
#include <string.h>

#include "fuzz.h"
#include "nncore/nncore.h"

int LLVMFuzzerInitialize(int *argc, char ***argv) { return 0; }

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  nn_st_file *f = nn_st_open_memory(data, size, "fuzz.safetensors");
  if (!f) return 0;
  for (int i = 0; i < nn_st_meta_count(f); i++) {
    const char *key = NULL, *value = nn_st_meta_at(f, i, &key);
    if (!key || !value || strlen(value) > size) __builtin_trap();
  }
  for (int i = 0; i < nn_st_count(f); i++) {
    nn_tensor *t = nn_st_get(f, nn_st_name(f, i));
    if (!t) continue;
    const uint8_t *bytes = nn_data(t);
    volatile uint8_t x = 0;
    for (size_t k = 0; k < (size_t)nn_numel(t) * nn_dtype_size(t->dtype); k++) x ^= bytes[k];
    (void)x;
    nn_tensor_free(t);
  }
  nn_st_close(f);
  return 0;
}
