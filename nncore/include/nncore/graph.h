/* A static graph of nncore ops: what importers (ONNX, TensorFlow.js) build and what a graph model runs.
 *
 * The rule the graph keeps: every value's shape is known when the node that makes it is added, so a
 * graph that loads runs; a bad graph is refused while it is built (or loaded), with a message naming
 * the node and its op, never when it runs. Nodes run the ordinary nncore ops (the same conv paths,
 * arenas and thread pool as hand-written models), so a graph can also be trained: its float
 * initialisers are parameters in an nn_params list under their own names (freeze by prefix).
 *
 * Values are numbered: graph inputs, initialisers and node outputs. Attributes are plain numbers;
 * importers fold everything that is constant (shapes, indices, pads) into them. The graph is saved as
 * safetensors: weights as tensors and the graph itself as JSON under the metadata key "graph". */
#ifndef NNCORE_GRAPH_H
#define NNCORE_GRAPH_H

#include "io.h"

#ifdef __cplusplus
extern "C" {
#endif

/* op, its JSON name, inputs, and the meaning of its int attributes i[] and float attributes f[] */
#define NN_GRAPH_OPS(X)                                                                             \
  X(CONV, "conv")                     /* x, w[, b]; i: stride h w, pad h w, dilation h w, groups */ \
  X(CONV_TRANSPOSE, "conv_transpose") /* x, w[, b]; i: as conv, then output_pad h w */              \
  X(BATCH_NORM, "batch_norm")         /* x, scale, bias, mean, var; f: eps */                       \
  X(RELU, "relu")                                                                                   \
  X(LEAKY_RELU, "leaky_relu")         /* f: slope */                                                \
  X(SIGMOID, "sigmoid")                                                                             \
  X(TANH, "tanh")                                                                                   \
  X(HARD_SIGMOID, "hard_sigmoid")     /* f: alpha, beta: clamp(alpha x + beta, 0, 1) */             \
  X(HARD_SWISH, "hard_swish")         /* x * clamp(x/6 + 1/2, 0, 1) */                              \
  X(CLIP, "clip")                     /* f: lo, hi */                                               \
  X(EXP, "exp")                                                                                     \
  X(LOG, "log")                                                                                     \
  X(SQRT, "sqrt")                                                                                   \
  X(NEG, "neg")                                                                                     \
  X(ABS, "abs")                                                                                     \
  X(IDENTITY, "identity")                                                                           \
  X(ADD, "add")                       /* a, b (NumPy broadcasting) */                               \
  X(SUB, "sub")                                                                                     \
  X(MUL, "mul")                                                                                     \
  X(DIV, "div")                                                                                     \
  X(MAX_POOL, "max_pool")             /* i: kernel, stride, pad top left bottom right (NCHW) */     \
  X(AVG_POOL, "avg_pool")             /* i: as max_pool, then count_include_pad */                  \
  X(MEAN, "mean")                     /* i: keepdim, axes... */                                     \
  X(RESIZE, "resize")                 /* i: out h, out w, mode (0 nearest floor, 1 linear half-pixel) */ \
  X(CONCAT, "concat")                 /* any number of inputs; i: axis */                           \
  X(SLICE, "slice")                   /* i: axis, start, end, step (step > 0) */                    \
  X(RESHAPE, "reshape")               /* i: the new shape (no -1: importers resolve it) */          \
  X(TRANSPOSE, "transpose")           /* i: permutation */                                          \
  X(MATMUL, "matmul")                 /* a, b */                                                    \
  X(SOFTMAX, "softmax")               /* i: axis */                                                 \
  X(PAD, "pad")                       /* i: before/after per dimension; f: value */                 \
  X(GATHER, "gather")                 /* i: axis, then the indices (a 1-D selection) */

typedef enum {
#define NN_GRAPH_ENUM(id, name) NN_OP_##id,
  NN_GRAPH_OPS(NN_GRAPH_ENUM)
#undef NN_GRAPH_ENUM
  NN_OP_COUNT
} nn_graph_op;

#define NN_GRAPH_MAX_ATTRS 16
#define NN_GRAPH_MAX_VALUES (1 << 20)

typedef struct {
  nn_graph_op op;
  char *name;
  int n_in;
  int *in;   /* value ids */
  int out;   /* its one output's value id */
  int n_i, n_f;
  int64_t i[NN_GRAPH_MAX_ATTRS];
  float f[4];
} nn_graph_node;

typedef struct {
  char *name;
  int ndim;
  int64_t shape[NN_MAX_DIMS];
  int param;  /* index in the graph's params for an initialiser, else -1 */
  int node;   /* the node that makes it, else -1 (an input or an initialiser) */
} nn_graph_value;

struct nn_graph_plan;

typedef struct nn_graph {
  int n_values, cap_values;
  nn_graph_value *values;
  int n_nodes, cap_nodes;
  nn_graph_node *nodes;
  int n_inputs, n_outputs;
  int inputs[8], outputs[16];
  nn_params params;  /* initialisers: float ones trainable, the rest (batch-norm statistics) buffers */
  struct nn_graph_plan *plan; /* inference copies (nn_graph_prepare), or NULL */
} nn_graph;

const char *nn_graph_op_name(nn_graph_op op);

void nn_graph_init(nn_graph *g);
void nn_graph_free(nn_graph *g);
/* The value id, or -1. */
int nn_graph_find(const nn_graph *g, const char *name);
/* A graph input of a fixed shape (batch included). */
int nn_graph_add_input(nn_graph *g, const char *name, int ndim, const int64_t *shape);
/* An initialiser (takes t over, a persistent f32 tensor). */
int nn_graph_add_const(nn_graph *g, const char *name, nn_tensor *t, bool trainable);
/* A node with one output called name; its shape is inferred now. -1 with a message naming the node on a
 * bad input, attribute or shape. */
int nn_graph_add_node(nn_graph *g, nn_graph_op op, const char *name, int n_in, const int *in, int n_i,
                      const int64_t *i, int n_f, const float *f);
bool nn_graph_set_outputs(nn_graph *g, int n, const int *values);

/* A deep copy (weights included), rebuilt node by node. */
bool nn_graph_copy(nn_graph *dst, const nn_graph *src);

/* Builds inference copies of the convolutions (filters packed once for the fast kernels, a following
 * ReLU or leaky ReLU fused into the same pass), used by every later run with grad mode off. It is a
 * snapshot of the weights, like nn_conv_infer: prepare a graph that will not be trained (a copy made
 * for training is not prepared), or prepare again after changing its weights. Runs of element-wise
 * nodes (Add/Sub/Mul/Div with constants, per-channel or earlier values; Clip, ReLU, sigmoids,
 * hard-swish) after a conv, an add or a concat are applied in one pass over that node's output. */
bool nn_graph_prepare(nn_graph *g);
/* How many nodes the prepared plan applies inside another node's pass (0 when not prepared). */
int nn_graph_fused_nodes(const nn_graph *g);

/* Runs the graph on inputs (one per graph input, of its shape; several calls may run one graph at
 * once) and writes the outputs (arena tensors). Records for backward when grad mode is on. */
bool nn_graph_run(const nn_graph *g, nn_tensor *const *inputs, nn_tensor **outputs);
/* The same, adding each node's wall time in seconds to seconds[node] (n_nodes entries; a fused node's
 * time counts in the node that applied it): where a graph's time goes. */
bool nn_graph_run_timed(const nn_graph *g, nn_tensor *const *inputs, nn_tensor **outputs, double *seconds);

/* Drops nodes and initialisers no output needs, and folds a batch norm into the conv before it when
 * nothing else reads the conv (a graph made for inference; training keeps separate statistics). */
bool nn_graph_simplify(nn_graph *g, bool fold_batch_norm);

/* The graph as JSON (for the metadata; g_free() it), and back: params is the file's tensors. */
char *nn_graph_to_json(const nn_graph *g);
bool nn_graph_from_file(nn_graph *g, const nn_st_file *f, const char *what);
/* Saves weights and graph (metadata "graph") with meta after it, atomically. */
bool nn_graph_save(const nn_graph *g, const char *path, const nn_kv *meta, int n_meta);

#ifdef __cplusplus
}
#endif
#endif
