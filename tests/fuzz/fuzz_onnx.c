/* The ONNX importer (models/import/onnx.c) from memory: protobuf decoding (protobuf-c), opset checks,
 * constant folding, shape inference and the conversion to nncore's graph. An imported graph with a
 * small input is also prepared and run once on zeros. */
#include <stdlib.h>

#include "e2e/import.h"
#include "fuzz.h"
#include "nncore/nncore.h"

void fuzz_run_small_graph(nn_graph *g);

int LLVMFuzzerInitialize(int *argc, char ***argv) { return 0; }

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  nn_graph g;
  if (!e2e_import_onnx_memory(data, size, "fuzz.onnx", 32, &g)) return 0;
  fuzz_run_small_graph(&g);
  nn_graph_free(&g);
  return 0;
}
