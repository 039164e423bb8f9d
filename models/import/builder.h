/* What the importers share: a table of the source graph's values, each either a constant held on the
 * host (folded into attributes or added as an initialiser when an op needs it) or a value of the nncore
 * graph being built, stored in some permutation of its source layout (TensorFlow's NHWC ops become
 * NCHW convs without a transpose per op: the layout travels with the value until an op needs it). */
#ifndef E2E_IMPORT_BUILDER_H
#define E2E_IMPORT_BUILDER_H

#include <glib.h>

#include "nncore/nncore.h"

typedef struct {
  char *name;                 /* its name in the source graph */
  bool is_const;
  int ndim;
  int64_t shape[NN_MAX_DIMS]; /* the source's (logical) shape */
  /* a constant: float or int64 data */
  nn_dtype dtype;             /* NN_F32 or NN_I64 */
  void *data;
  /* a graph value: source = permute(stored, perm) */
  int id;
  int perm[NN_MAX_DIMS];
} imp_value;

typedef struct {
  nn_graph *g;
  GHashTable *values;  /* name -> imp_value* */
  const char *what;    /* the file, for messages */
  int n_made;          /* names made up for helper nodes */
} imp_ctx;

void imp_init(imp_ctx *c, nn_graph *g, const char *what);
void imp_free(imp_ctx *c);
/* Sets nn_last_error to "what: node (op): message" and returns false. */
bool imp_fail(imp_ctx *c, const char *node, const char *op, const char *fmt, ...) __attribute__((format(printf, 4, 5)));

imp_value *imp_get(imp_ctx *c, const char *name);
/* A constant (data copied; float data for NN_F32, int64 for NN_I64). */
imp_value *imp_const(imp_ctx *c, const char *name, nn_dtype dt, int ndim, const int64_t *shape, const void *data);
/* A graph value in the source's own layout, or permuted (perm NULL: identity). */
imp_value *imp_graph(imp_ctx *c, const char *name, int id, const int *perm);
int64_t imp_numel(const imp_value *v);
/* Constant values as int64 / float (count checked against numel). */
bool imp_ints(const imp_value *v, int64_t *out, int max, int *n);
float imp_float_at(const imp_value *v, int64_t k);

/* The graph id of v stored so that source = permute(stored, perm) (NULL: the source layout itself):
 * adds a transpose, or for a constant an initialiser, when needed. -1 on error. */
int imp_as(imp_ctx *c, imp_value *v, const int *perm);
/* A fresh name for a helper node derived from base. */
char *imp_name(imp_ctx *c, const char *base, const char *suffix);

/* Elementwise binary op on two values in the source's broadcasting (NumPy) semantics: constants are
 * folded, a constant operand is laid out like the other one. */
imp_value *imp_binary(imp_ctx *c, const char *name, nn_graph_op op, imp_value *a, imp_value *b);
/* Unary op keeping the layout. */
imp_value *imp_unary(imp_ctx *c, const char *name, nn_graph_op op, imp_value *x, int n_f, const float *f);
/* Reshape in source (row-major) order: the value is first brought to its source layout. */
imp_value *imp_reshape(imp_ctx *c, const char *name, imp_value *x, int ndim, const int64_t *shape);
/* Transpose in source terms (no node: the permutation is recorded). */
imp_value *imp_transpose(imp_ctx *c, const char *name, imp_value *x, const int *perm);
/* Concatenation along a source axis. */
imp_value *imp_concat(imp_ctx *c, const char *name, imp_value **xs, int n, int axis);
/* x[start:end:step] along a source axis. */
imp_value *imp_slice(imp_ctx *c, const char *name, imp_value *x, int axis, int64_t start, int64_t end, int64_t step);
/* Constant padding of the source dimensions (pads: before/after per dimension). */
imp_value *imp_pad(imp_ctx *c, const char *name, imp_value *x, const int64_t *pads, float value);

float imp_half_to_float(uint16_t h);

#endif
