/* The TensorFlow.js importer (models/import/tfjs.c): model.json (topology and weights manifest) and its
 * weight shard. The input is the JSON, a NUL byte, then the shard's bytes; they are written to a folder
 * of this process as model.json and w.bin, the names the seeds' manifests use. A graph that imports is
 * run once, as for ONNX. */
#include <glib.h>
#include <glib/gstdio.h>
#include <stdlib.h>
#include <string.h>

#include "e2e/import.h"
#include "fuzz.h"

void fuzz_run_small_graph(nn_graph *g);

static char *json_path, *shard_path;

int LLVMFuzzerInitialize(int *argc, char ***argv) {
  char *dir = g_dir_make_tmp("e2e-fuzz-tfjs-XXXXXX", NULL);
  if (!dir) abort();
  json_path = g_build_filename(dir, "model.json", NULL);
  shard_path = g_build_filename(dir, "w.bin", NULL);
  g_free(dir);
  return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  const uint8_t *nul = memchr(data, 0, size);
  size_t json_len = nul ? (size_t)(nul - data) : size;
  const uint8_t *shard = nul ? nul + 1 : data + size;
  if (!g_file_set_contents(json_path, (const char *)data, (gssize)json_len, NULL) ||
      !g_file_set_contents(shard_path, (const char *)shard, (gssize)(data + size - shard), NULL))
    abort();
  nn_graph g;
  if (!e2e_import_tfjs(json_path, 32, &g)) return 0;
  fuzz_run_small_graph(&g);
  nn_graph_free(&g);
  return 0;
}
