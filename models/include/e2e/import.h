/* Importers: pretrained graphs from other frameworks onto nncore's graph runtime (nncore/graph.h).
 *
 * An importer reads the file, folds everything constant (shapes, indices, pads, the weights' own
 * arithmetic), turns the framework's ops into nncore graph ops and refuses, when it loads, any op,
 * attribute or shape it cannot run exactly, naming the op, the node and (ONNX) the opset. What it
 * builds is then simplified (batch norms and biases folded into convs, dead nodes dropped). */
#ifndef E2E_IMPORT_H
#define E2E_IMPORT_H

#include "nncore/nncore.h"

/* A TensorFlow.js graph model: model.json and the weight shards next to it. Inputs of unknown size
 * (-1) take input_size (0: refuse them). */
bool e2e_import_tfjs(const char *model_json, int input_size, nn_graph *g);

/* An ONNX model (opsets 11..17). Inputs of unknown size take input_size for H and W and 1 for the
 * batch. Tensors in external data files must lie in the model's own folder. */
bool e2e_import_onnx(const char *path, int input_size, nn_graph *g);
/* The same, also giving the model's metadata_props (free with e2e_import_free_meta); an "input_size"
 * entry there stands in for input_size 0. */
bool e2e_import_onnx_described(const char *path, int input_size, nn_graph *g, nn_kv **meta, int *n_meta);
void e2e_import_free_meta(nn_kv *meta, int n);
/* The same from memory (name is used in messages; external data is refused). */
bool e2e_import_onnx_memory(const void *data, size_t size, const char *name, int input_size, nn_graph *g);

/* Graph inputs bound to values at load (their TensorProto bytes): they become constants, as shape and
 * index inputs are in a model whose shapes are all known. The conformance tests bind their integer
 * inputs this way. */
typedef struct {
  const char *name;
  const void *tensor_pb;
  size_t size;
} e2e_onnx_binding;
bool e2e_import_onnx_bound(const void *data, size_t size, const char *name, int input_size, const e2e_onnx_binding *bind,
                           int n_bind, nn_graph *g);

/* A TensorProto (the ONNX tests' data files) as a persistent f32 tensor (integers converted);
 * *is_float says whether it held floats, *name gets its name (g_free it; name may be NULL). */
nn_tensor *e2e_onnx_tensor(const void *pb, size_t size, char **name, bool *is_float);

#endif
