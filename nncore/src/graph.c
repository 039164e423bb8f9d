/* The graph runtime (graph.h): building with shape inference, running on nncore ops, simplifying,
 * and saving to / loading from safetensors. Every check happens when a node is added; run assumes a
 * graph that was built (or loaded) through nn_graph_add_node. */
#include "nncore/graph.h"

#include <json-glib/json-glib.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "graph_fuse.h"
#include "internal.h"
#include "nncore/autograd.h"
#include "nncore/threads.h"

static const char *const OP_NAMES[NN_OP_COUNT] = {
#define NN_GRAPH_NAME(id, name) name,
    NN_GRAPH_OPS(NN_GRAPH_NAME)
#undef NN_GRAPH_NAME
};

const char *nn_graph_op_name(nn_graph_op op) { return op >= 0 && op < NN_OP_COUNT ? OP_NAMES[op] : "?"; }

/* Largest value a graph may make: 2^31 elements (8 GiB of floats) is far past any real model. */
#define MAX_ELEMENTS ((int64_t)1 << 31)

void nn_graph_init(nn_graph *g) {
  memset(g, 0, sizeof *g);
  nn_params_init(&g->params);
}

static void plan_free(struct nn_graph_plan *p);
static int count_uses(const nn_graph *g, int *uses);
static int sole_reader(const nn_graph *g, const int *uses, int v);

void nn_graph_free(nn_graph *g) {
  plan_free(g->plan);
  for (int i = 0; i < g->n_values; i++) free(g->values[i].name);
  for (int i = 0; i < g->n_nodes; i++) free(g->nodes[i].name), free(g->nodes[i].in);
  free(g->values);
  free(g->nodes);
  nn_params_free(&g->params);
  memset(g, 0, sizeof *g);
}

int nn_graph_find(const nn_graph *g, const char *name) {
  for (int i = g->n_values - 1; i >= 0; i--)
    if (!strcmp(g->values[i].name, name)) return i;
  return -1;
}

static int add_value(nn_graph *g, const char *name, int ndim, const int64_t *shape) {
  if (nn_graph_find(g, name) >= 0) {
    nn_set_error("graph: the value \"%s\" is defined twice", name);
    return -1;
  }
  if (ndim < 0 || ndim > NN_MAX_DIMS) {
    nn_set_error("graph: \"%s\" has %d dimensions (at most %d)", name, ndim, NN_MAX_DIMS);
    return -1;
  }
  int64_t n = 1;
  for (int d = 0; d < ndim; d++) {
    if (shape[d] < 1 || shape[d] > MAX_ELEMENTS || (n *= shape[d]) > MAX_ELEMENTS) {
      nn_set_error("graph: \"%s\" would have an absurd or empty shape (dimension %d is %lld)", name, d,
                   (long long)shape[d]);
      return -1;
    }
  }
  if (g->n_values >= NN_GRAPH_MAX_VALUES) {
    nn_set_error("graph: more than %d values", NN_GRAPH_MAX_VALUES);
    return -1;
  }
  if (g->n_values == g->cap_values) {
    int cap = g->cap_values ? 2 * g->cap_values : 64;
    nn_graph_value *v = realloc(g->values, sizeof *v * (size_t)cap);
    if (!v) {
      nn_set_error("graph: out of memory");
      return -1;
    }
    g->values = v, g->cap_values = cap;
  }
  nn_graph_value *v = &g->values[g->n_values];
  v->name = strdup(name);
  v->ndim = ndim;
  if (ndim) memcpy(v->shape, shape, sizeof *shape * (size_t)ndim);
  v->param = v->node = -1;
  return g->n_values++;
}

int nn_graph_add_input(nn_graph *g, const char *name, int ndim, const int64_t *shape) {
  if (g->n_inputs == (int)(sizeof g->inputs / sizeof g->inputs[0])) {
    nn_set_error("graph: too many inputs");
    return -1;
  }
  int v = add_value(g, name, ndim, shape);
  if (v >= 0) g->inputs[g->n_inputs++] = v;
  return v;
}

int nn_graph_add_const(nn_graph *g, const char *name, nn_tensor *t, bool trainable) {
  if (!t || t->dtype != NN_F32) {
    nn_set_error("graph: the initialiser \"%s\" is not a float tensor", name);
    nn_tensor_free(t);
    return -1;
  }
  int v = add_value(g, name, t->ndim, t->shape);
  if (v < 0 || !nn_params_add(&g->params, name, t, trainable)) {
    if (v >= 0) g->n_values--, free(g->values[v].name);
    else nn_tensor_free(t);
    return -1;
  }
  g->values[v].param = g->params.n - 1;
  return v;
}

/* ---------------------------------------------------------------- shape inference */

typedef struct {
  const nn_graph *g;
  const char *name;
  nn_graph_op op;
  int n_in;
  const int *in;
  int n_i, n_f;
  const int64_t *i;
  const float *f;
} node_ctx;

#define FAIL(c, ...)                                                                           \
  do {                                                                                         \
    char why_[256];                                                                            \
    snprintf(why_, sizeof why_, __VA_ARGS__);                                                  \
    nn_set_error("graph: node \"%s\" (%s): %s", (c)->name, nn_graph_op_name((c)->op), why_); \
    return false;                                                                              \
  } while (0)

static const nn_graph_value *in_value(const node_ctx *c, int k) { return &c->g->values[c->in[k]]; }

static bool need(const node_ctx *c, int lo, int hi, int n_i, int n_f) {
  if (c->n_in < lo || c->n_in > hi) FAIL(c, "takes %d to %d inputs, has %d", lo, hi, c->n_in);
  if (n_i >= 0 && c->n_i != n_i) FAIL(c, "takes %d int attributes, has %d", n_i, c->n_i);
  if (n_f >= 0 && c->n_f != n_f) FAIL(c, "takes %d float attributes, has %d", n_f, c->n_f);
  return true;
}

static bool broadcast(const node_ctx *c, int *ndim, int64_t *shape) {
  const nn_graph_value *a = in_value(c, 0), *b = in_value(c, 1);
  int n = a->ndim > b->ndim ? a->ndim : b->ndim;
  for (int d = 0; d < n; d++) {
    int da = d - (n - a->ndim), db = d - (n - b->ndim);
    int64_t x = da >= 0 ? a->shape[da] : 1, y = db >= 0 ? b->shape[db] : 1;
    if (x != y && x != 1 && y != 1) FAIL(c, "shapes of \"%s\" and \"%s\" do not broadcast (dimension %d: %lld vs %lld)", a->name, b->name, d, (long long)x, (long long)y);
    shape[d] = x == 1 ? y : x;
  }
  *ndim = n;
  return true;
}

static bool window_out(const node_ctx *c, int64_t size, int64_t k, int64_t stride, int64_t pads, int64_t dil, int64_t *out) {
  if (k < 1 || stride < 1 || dil < 1 || pads < 0 || k > 4096 || stride > 4096 || dil > 4096 || pads > 8192)
    FAIL(c, "kernel %lld, stride %lld, dilation %lld, padding %lld are out of range", (long long)k, (long long)stride,
         (long long)dil, (long long)pads);
  int64_t span = dil * (k - 1) + 1;
  if (size + pads < span) FAIL(c, "the window (%lld) is larger than the padded input (%lld)", (long long)span, (long long)(size + pads));
  *out = (size + pads - span) / stride + 1;
  return true;
}

static bool infer(const node_ctx *c, int *ndim, int64_t *shape) {
  const nn_graph_value *x = c->n_in > 0 ? in_value(c, 0) : NULL;
  if (c->op < 0 || c->op >= NN_OP_COUNT) FAIL(c, "unknown op");
  if (c->op != NN_OP_CONCAT && c->n_in > 5) FAIL(c, "too many inputs");
  if (!x) FAIL(c, "no input");
  *ndim = x->ndim;
  memcpy(shape, x->shape, sizeof *shape * (size_t)x->ndim);
  switch (c->op) {
  case NN_OP_CONV:
  case NN_OP_CONV_TRANSPOSE: {
    bool tr = c->op == NN_OP_CONV_TRANSPOSE;
    if (!need(c, 2, 3, tr ? 9 : 7, 0)) return false;
    const nn_graph_value *w = in_value(c, 1);
    if (x->ndim != 4 || w->ndim != 4) FAIL(c, "input and filters must be 4-D (NCHW; 1-D and 3-D convolutions are not supported)");
    int64_t groups = c->i[6];
    if (groups < 1 || x->shape[1] % groups) FAIL(c, "%lld groups do not divide %lld channels", (long long)groups, (long long)x->shape[1]);
    int64_t in_per = tr ? w->shape[0] : w->shape[1] * groups, oc = tr ? w->shape[1] * groups : w->shape[0];
    if (in_per != x->shape[1] || (!tr && oc % groups)) FAIL(c, "filters %s-shaped [%lld, %lld, ...] do not fit %lld input channels in %lld groups",
                                                            tr ? "transposed" : "", (long long)w->shape[0], (long long)w->shape[1], (long long)x->shape[1], (long long)groups);
    if (c->n_in == 3 && (in_value(c, 2)->ndim != 1 || in_value(c, 2)->shape[0] != oc)) FAIL(c, "the bias must be [%lld]", (long long)oc);
    shape[1] = oc;
    for (int d = 0; d < 2; d++) {
      int64_t k = w->shape[2 + d], s = c->i[d], p = c->i[2 + d], dil = c->i[4 + d];
      if (!tr) {
        if (!window_out(c, x->shape[2 + d], k, s, 2 * p, dil, &shape[2 + d])) return false;
      } else {
        int64_t op = c->i[7 + d];
        if (k < 1 || s < 1 || s > 64 || dil < 1 || dil > 64 || p < 0 || op < 0 || (op >= s && op >= dil))
          FAIL(c, "stride, dilation, padding or output padding out of range");
        shape[2 + d] = (x->shape[2 + d] - 1) * s - 2 * p + dil * (k - 1) + op + 1;
        if (shape[2 + d] < 1) FAIL(c, "the output would be empty");
      }
    }
    return true;
  }
  case NN_OP_BATCH_NORM:
    if (!need(c, 5, 5, 0, 1)) return false;
    if (x->ndim < 2) FAIL(c, "the input needs a channel dimension");
    for (int k = 1; k < 5; k++)
      if (in_value(c, k)->ndim != 1 || in_value(c, k)->shape[0] != x->shape[1]) FAIL(c, "\"%s\" must be [%lld]", in_value(c, k)->name, (long long)x->shape[1]);
    return true;
  case NN_OP_LEAKY_RELU:
    return need(c, 1, 1, 0, 1);
  case NN_OP_HARD_SIGMOID:
  case NN_OP_CLIP:
    if (!need(c, 1, 1, 0, 2)) return false;
    if (c->op == NN_OP_CLIP && !(c->f[0] <= c->f[1])) FAIL(c, "min %g is above max %g", c->f[0], c->f[1]);
    return true;
  case NN_OP_RELU: case NN_OP_SIGMOID: case NN_OP_TANH: case NN_OP_HARD_SWISH: case NN_OP_EXP: case NN_OP_LOG:
  case NN_OP_SQRT: case NN_OP_NEG: case NN_OP_ABS: case NN_OP_IDENTITY:
    return need(c, 1, 1, 0, 0);
  case NN_OP_ADD: case NN_OP_SUB: case NN_OP_MUL: case NN_OP_DIV:
    return need(c, 2, 2, 0, 0) && broadcast(c, ndim, shape);
  case NN_OP_MAX_POOL:
  case NN_OP_AVG_POOL: {
    bool avg = c->op == NN_OP_AVG_POOL;
    if (!need(c, 1, 1, avg ? 9 : 8, 0)) return false;
    if (x->ndim != 4) FAIL(c, "the input must be 4-D (NCHW; 1-D and 3-D pooling are not supported)");
    const int64_t *k = c->i, *s = c->i + 2, *p = c->i + 4;
    if (k[0] != k[1] || s[0] != s[1]) FAIL(c, "only square kernels and strides are supported (%lldx%lld, stride %lldx%lld)", (long long)k[0], (long long)k[1], (long long)s[0], (long long)s[1]);
    if (p[0] >= k[0] || p[1] >= k[1] || p[2] >= k[0] || p[3] >= k[1]) FAIL(c, "padding must be smaller than the kernel");
    return window_out(c, x->shape[2], k[0], s[0], p[0] + p[2], 1, &shape[2]) &&
           window_out(c, x->shape[3], k[1], s[1], p[1] + p[3], 1, &shape[3]);
  }
  case NN_OP_MEAN: {
    if (!need(c, 1, 1, -1, 0)) return false;
    if (c->n_i < 2) FAIL(c, "needs keepdim and at least one axis");
    bool drop[NN_MAX_DIMS] = {0};
    for (int k = 1; k < c->n_i; k++) {
      if (c->i[k] < 0 || c->i[k] >= x->ndim || drop[c->i[k]]) FAIL(c, "axis %lld is out of range or repeated", (long long)c->i[k]);
      drop[c->i[k]] = true;
    }
    int n = 0;
    for (int d = 0; d < x->ndim; d++) {
      if (!drop[d]) shape[n++] = x->shape[d];
      else if (c->i[0]) shape[n++] = 1;
    }
    if (n == 0) shape[n++] = 1;
    *ndim = n;
    return true;
  }
  case NN_OP_RESIZE:
    if (!need(c, 1, 1, 3, 0)) return false;
    if (x->ndim != 4) FAIL(c, "only 4-D (NCHW) inputs are resized");
    if (c->i[2] != 0 && c->i[2] != 1) FAIL(c, "mode %lld is neither nearest (0) nor linear (1)", (long long)c->i[2]);
    if (c->i[0] < 1 || c->i[1] < 1 || c->i[0] > 65536 || c->i[1] > 65536) FAIL(c, "output size %lldx%lld out of range", (long long)c->i[0], (long long)c->i[1]);
    shape[2] = c->i[0], shape[3] = c->i[1];
    return true;
  case NN_OP_CONCAT: {
    if (!need(c, 1, 1 << 16, 1, 0)) return false;
    int64_t axis = c->i[0];
    if (axis < 0 || axis >= x->ndim) FAIL(c, "axis %lld is out of range", (long long)axis);
    shape[axis] = 0;
    for (int k = 0; k < c->n_in; k++) {
      const nn_graph_value *v = in_value(c, k);
      if (v->ndim != x->ndim) FAIL(c, "\"%s\" has %d dimensions, \"%s\" %d", v->name, v->ndim, x->name, x->ndim);
      for (int d = 0; d < x->ndim; d++)
        if (d != axis && v->shape[d] != x->shape[d]) FAIL(c, "\"%s\" differs from \"%s\" in dimension %d", v->name, x->name, d);
      shape[axis] += v->shape[axis];
    }
    return true;
  }
  case NN_OP_SLICE: {
    if (!need(c, 1, 1, 4, 0)) return false;
    int64_t axis = c->i[0], start = c->i[1], end = c->i[2], step = c->i[3];
    if (axis < 0 || axis >= x->ndim) FAIL(c, "axis %lld is out of range", (long long)axis);
    if (step < 1) FAIL(c, "step %lld (only positive steps are supported)", (long long)step);
    if (start < 0 || end > x->shape[axis] || start >= end) FAIL(c, "range %lld..%lld is empty or outside 0..%lld", (long long)start, (long long)end, (long long)x->shape[axis]);
    shape[axis] = (end - start + step - 1) / step;
    return true;
  }
  case NN_OP_RESHAPE: {
    if (!need(c, 1, 1, -1, 0)) return false;
    if (c->n_i < 1 || c->n_i > NN_MAX_DIMS) FAIL(c, "the new shape has %d dimensions", c->n_i);
    int64_t n = 1, m = 1;
    for (int d = 0; d < x->ndim; d++) n *= x->shape[d];
    for (int d = 0; d < c->n_i; d++) {
      if (c->i[d] < 1 || c->i[d] > MAX_ELEMENTS) FAIL(c, "dimension %d of the new shape is %lld", d, (long long)c->i[d]);
      m *= c->i[d];
      if (m > MAX_ELEMENTS) FAIL(c, "the new shape is absurd");
      shape[d] = c->i[d];
    }
    if (n != m) FAIL(c, "%lld elements cannot take a shape of %lld", (long long)n, (long long)m);
    *ndim = c->n_i;
    return true;
  }
  case NN_OP_TRANSPOSE: {
    if (!need(c, 1, 1, x->ndim, 0)) return false;
    bool seen[NN_MAX_DIMS] = {0};
    for (int d = 0; d < x->ndim; d++) {
      if (c->i[d] < 0 || c->i[d] >= x->ndim || seen[c->i[d]]) FAIL(c, "the permutation is not one of %d dimensions", x->ndim);
      seen[c->i[d]] = true;
      shape[d] = x->shape[c->i[d]];
    }
    return true;
  }
  case NN_OP_MATMUL: {
    if (!need(c, 2, 2, 0, 0)) return false;
    const nn_graph_value *b = in_value(c, 1);
    if (x->ndim < 2 || b->ndim < 2) FAIL(c, "both operands must have at least 2 dimensions");
    if (x->shape[x->ndim - 1] != b->shape[b->ndim - 2]) FAIL(c, "[.., %lld] @ [%lld, ..] do not fit", (long long)x->shape[x->ndim - 1], (long long)b->shape[b->ndim - 2]);
    int n = x->ndim > b->ndim ? x->ndim : b->ndim;
    for (int d = 0; d < n - 2; d++) {
      int da = d - (n - x->ndim), db = d - (n - b->ndim);
      int64_t p = da >= 0 ? x->shape[da] : 1, q = db >= 0 ? b->shape[db] : 1;
      if (p != q && p != 1 && q != 1) FAIL(c, "batch dimensions do not broadcast");
      shape[d] = p == 1 ? q : p;
    }
    shape[n - 2] = x->shape[x->ndim - 2], shape[n - 1] = b->shape[b->ndim - 1];
    *ndim = n;
    return true;
  }
  case NN_OP_SOFTMAX:
    if (!need(c, 1, 1, 1, 0)) return false;
    if (c->i[0] < 0 || c->i[0] >= x->ndim) FAIL(c, "axis %lld is out of range", (long long)c->i[0]);
    return true;
  case NN_OP_PAD:
    if (!need(c, 1, 1, 2 * x->ndim, 1)) return false;
    for (int d = 0; d < x->ndim; d++) {
      if (c->i[2 * d] < 0 || c->i[2 * d + 1] < 0 || c->i[2 * d] > 65536 || c->i[2 * d + 1] > 65536)
        FAIL(c, "padding of dimension %d out of range (negative pads are not supported)", d);
      shape[d] += c->i[2 * d] + c->i[2 * d + 1];
    }
    return true;
  case NN_OP_GATHER: {
    if (!need(c, 1, 1, -1, 0)) return false;
    if (c->n_i < 2) FAIL(c, "needs an axis and at least one index");
    int64_t axis = c->i[0];
    if (axis < 0 || axis >= x->ndim) FAIL(c, "axis %lld is out of range", (long long)axis);
    for (int k = 1; k < c->n_i; k++)
      if (c->i[k] < 0 || c->i[k] >= x->shape[axis]) FAIL(c, "index %lld is outside 0..%lld", (long long)c->i[k], (long long)x->shape[axis] - 1);
    shape[axis] = c->n_i - 1;
    return true;
  }
  default:
    FAIL(c, "unknown op");
  }
}

int nn_graph_add_node(nn_graph *g, nn_graph_op op, const char *name, int n_in, const int *in, int n_i,
                      const int64_t *i, int n_f, const float *f) {
  node_ctx c = {g, name, op, n_in, in, n_i, n_f, i, f};
  if (n_i < 0 || n_i > NN_GRAPH_MAX_ATTRS || n_f < 0 || n_f > 4 || n_in < 1) {
    nn_set_error("graph: node \"%s\" (%s): %d inputs, %d int and %d float attributes are out of range", name,
                 nn_graph_op_name(op), n_in, n_i, n_f);
    return -1;
  }
  for (int k = 0; k < n_in; k++)
    if (in[k] < 0 || in[k] >= g->n_values) {
      nn_set_error("graph: node \"%s\" (%s): input %d is not defined before it", name, nn_graph_op_name(op), k);
      return -1;
    }
  int ndim;
  int64_t shape[NN_MAX_DIMS];
  if (!infer(&c, &ndim, shape)) return -1;
  if (g->n_nodes == g->cap_nodes) {
    int cap = g->cap_nodes ? 2 * g->cap_nodes : 64;
    nn_graph_node *nn = realloc(g->nodes, sizeof *nn * (size_t)cap);
    if (!nn) {
      nn_set_error("graph: out of memory");
      return -1;
    }
    g->nodes = nn, g->cap_nodes = cap;
  }
  int v = add_value(g, name, ndim, shape);
  if (v < 0) return -1;
  nn_graph_node *node = &g->nodes[g->n_nodes];
  memset(node, 0, sizeof *node);
  node->op = op;
  node->name = strdup(name);
  node->in = malloc(sizeof *in * (size_t)n_in);
  node->n_in = n_in;
  memcpy(node->in, in, sizeof *in * (size_t)n_in);
  node->n_i = n_i, node->n_f = n_f;
  if (n_i) memcpy(node->i, i, sizeof *i * (size_t)n_i);
  if (n_f) memcpy(node->f, f, sizeof *f * (size_t)n_f);
  node->out = v;
  g->values[v].node = g->n_nodes++;
  return v;
}

bool nn_graph_set_outputs(nn_graph *g, int n, const int *values) {
  if (n < 1 || n > (int)(sizeof g->outputs / sizeof g->outputs[0])) {
    nn_set_error("graph: %d outputs (1 to %d)", n, (int)(sizeof g->outputs / sizeof g->outputs[0]));
    return false;
  }
  for (int k = 0; k < n; k++)
    if (values[k] < 0 || values[k] >= g->n_values) {
      nn_set_error("graph: output %d is never produced", k);
      return false;
    }
  memcpy(g->outputs, values, sizeof *values * (size_t)n);
  g->n_outputs = n;
  return true;
}

bool nn_graph_copy(nn_graph *dst, const nn_graph *src) {
  nn_graph_init(dst);
  bool ok = true;
  for (int k = 0; ok && k < src->n_inputs; k++) {
    const nn_graph_value *v = &src->values[src->inputs[k]];
    ok = nn_graph_add_input(dst, v->name, v->ndim, v->shape) >= 0;
  }
  for (int k = 0; ok && k < src->params.n; k++)
    ok = nn_graph_add_const(dst, src->params.names[k], nn_tensor_persist(src->params.t[k]), src->params.t[k]->requires_grad) >= 0;
  for (int k = 0; ok && k < src->n_nodes; k++) {
    const nn_graph_node *n = &src->nodes[k];
    int *in = malloc(sizeof *in * (size_t)n->n_in);
    for (int j = 0; in && j < n->n_in; j++) in[j] = nn_graph_find(dst, src->values[n->in[j]].name);
    ok = in && nn_graph_add_node(dst, n->op, n->name, n->n_in, in, n->n_i, n->i, n->n_f, n->f) >= 0;
    free(in);
  }
  int outs[16];
  for (int k = 0; ok && k < src->n_outputs; k++) outs[k] = nn_graph_find(dst, src->values[src->outputs[k]].name);
  ok = ok && nn_graph_set_outputs(dst, src->n_outputs, outs);
  if (!ok) nn_graph_free(dst);
  return ok;
}

/* ---------------------------------------------------------------- inference plan */

struct nn_graph_plan {
  int n_nodes;
  nn_conv_infer **conv; /* per node: its packed copy, or NULL */
  float *slope;         /* per conv node: a fused leaky ReLU's slope (1: none; 0 is fused in the kernel) */
  bool *silu;           /* per conv node: x * sigmoid(x) applied by its kernel (Sigmoid and Mul fused) */
  int *into;            /* per conv or resize node: the channel concat it writes its place of, or -1 */
  int64_t *at;          /* per such node: its first channel there */
  bool *fused;          /* per node: applied by an earlier node (a conv's activation, or in a chain) */
  int *same;            /* per fused node: the value whose tensor its output is */
  nn_eltwise_chain **chain; /* per node: the element-wise nodes after it, run over its output in one pass */
};

static void plan_free(struct nn_graph_plan *p) {
  if (!p) return;
  for (int k = 0; k < p->n_nodes; k++)
    if (p->conv) {
      if (p->conv[k]) nn_conv_infer_free(p->conv[k]), free(p->conv[k]);
      nn_eltwise_free(p->chain ? p->chain[k] : NULL);
    }
  free(p->conv), free(p->slope), free(p->silu), free(p->fused), free(p->same), free(p->chain), free(p->into), free(p->at);
  free(p);
}

/* The planned conv whose output value v is, through what is fused into it; -1 when v is not. */
static int conv_behind(const nn_graph *g, const struct nn_graph_plan *p, int v) {
  int k = g->values[v].node;
  if (k >= 0 && p->fused[k]) k = g->values[p->same[k]].node;
  return k >= 0 && p->conv[k] ? k : -1;
}

/* A resize whose output value v is (a tensor of its own that it can write anywhere); -1 otherwise. */
static int resize_behind(const nn_graph *g, const struct nn_graph_plan *p, int v) {
  int k = g->values[v].node;
  return k >= 0 && !p->fused[k] && g->nodes[k].op == NN_OP_RESIZE ? k : -1;
}

/* Where value v already lies in concat k's output when its producer wrote it there: a planned conv
 * placed at `off`, or a dimension-1 slice [a, b) of one placed at off - a. -1 when v is not placed. */
static int64_t placed_at(const nn_graph *g, const struct nn_graph_plan *p, int k, int v) {
  int c = conv_behind(g, p, v);
  if (c < 0) c = resize_behind(g, p, v);
  if (c >= 0) return p->into[c] == k ? p->at[c] : -1;
  int s = g->values[v].node;
  if (s < 0 || p->fused[s] || g->nodes[s].op != NN_OP_SLICE || g->nodes[s].i[0] != 1 || g->nodes[s].i[3] != 1) return -1;
  c = conv_behind(g, p, g->nodes[s].in[0]);
  return c >= 0 && p->into[c] == k ? p->at[c] + g->nodes[s].i[1] : -1;
}

/* The conv whose whole output concat input j and the ones after it are, as dimension-1 slices that tile
 * it in order (a C2f block's chunk(2) followed by a concat); -1 otherwise. *n: how many inputs. */
static int conv_sliced_into(const nn_graph *g, const struct nn_graph_plan *p, const nn_graph_node *cat, int j, int *n) {
  int src = -1;
  int64_t next = 0;
  for (int q = j; q < cat->n_in; q++) {
    int s = g->values[cat->in[q]].node;
    if (s < 0 || p->fused[s] || g->nodes[s].op != NN_OP_SLICE || g->nodes[s].i[0] != 1 || g->nodes[s].i[3] != 1) break;
    if (src >= 0 && g->nodes[s].in[0] != src) break;
    src = g->nodes[s].in[0];
    if (g->nodes[s].i[1] != next) break;
    next = g->nodes[s].i[2];
    if (next == g->values[src].shape[1]) {
      *n = q - j + 1;
      return conv_behind(g, p, src);
    }
  }
  return -1;
}

/* Roots whose output is a tensor of their own (never a view of an input): a chain may overwrite it. */
static bool fresh_output(const struct nn_graph_plan *p, const nn_graph_node *n, int k) {
  switch (n->op) {
  case NN_OP_CONV: return p->conv[k] != NULL;
  case NN_OP_CONV_TRANSPOSE:
  case NN_OP_ADD:
  case NN_OP_SUB:
  case NN_OP_MUL:
  case NN_OP_DIV:
  case NN_OP_CONCAT: return true;
  default: return false;
  }
}

bool nn_graph_prepare(nn_graph *g) {
  plan_free(g->plan);
  g->plan = NULL;
  struct nn_graph_plan *p = calloc(1, sizeof *p);
  int *uses = calloc((size_t)(g->n_values ? g->n_values : 1), sizeof *uses);
  int nn = g->n_nodes ? g->n_nodes : 1;
  if (p) p->n_nodes = g->n_nodes, p->conv = calloc((size_t)nn, sizeof *p->conv), p->slope = malloc(sizeof *p->slope * (size_t)nn),
         p->fused = calloc((size_t)nn, sizeof *p->fused), p->silu = calloc((size_t)nn, sizeof *p->silu),
         p->same = malloc(sizeof *p->same * (size_t)nn), p->chain = calloc((size_t)nn, sizeof *p->chain),
         p->into = malloc(sizeof *p->into * (size_t)nn), p->at = calloc((size_t)nn, sizeof *p->at);
  int *root = malloc(sizeof *root * (size_t)nn); /* per node: the value a chain after it would start from */
  bool ok = p && uses && root && p->conv && p->slope && p->fused && p->silu && p->same && p->chain && p->into && p->at;
  for (int k = 0; ok && k < g->n_nodes; k++) p->into[k] = -1, p->same[k] = -1, root[k] = g->nodes[k].out;
  if (ok) count_uses(g, uses);
  for (int k = 0; ok && k < g->n_nodes; k++) {
    const nn_graph_node *n = &g->nodes[k];
    p->slope[k] = 1.0f;
    if (n->op != NN_OP_CONV || g->values[n->in[1]].param < 0 || (n->n_in > 2 && g->values[n->in[2]].param < 0)) continue;
    int r = sole_reader(g, uses, n->out);
    bool relu = r > k && g->nodes[r].op == NN_OP_RELU, leaky = r > k && g->nodes[r].op == NN_OP_LEAKY_RELU;
    /* SiLU as exporters write it: Sigmoid(c) read only by Mul(c, Sigmoid(c)), c read by nothing else */
    int sig = -1, mul = -1;
    if (uses[n->out] == 2)
      for (int j = k + 1; j < g->n_nodes; j++) {
        const nn_graph_node *q = &g->nodes[j];
        if (q->op == NN_OP_SIGMOID && q->in[0] == n->out && uses[q->out] == 1) sig = j;
        else if (q->op == NN_OP_MUL && sig >= 0 && ((q->in[0] == n->out && q->in[1] == g->nodes[sig].out) ||
                                                   (q->in[1] == n->out && q->in[0] == g->nodes[sig].out)))
          mul = j;
      }
    if (sig >= 0 && mul >= 0) {
      p->silu[k] = p->fused[sig] = p->fused[mul] = true;
      p->same[sig] = p->same[mul] = n->out, root[k] = g->nodes[mul].out;
    }
    nn_conv2d_layer layer = {.weight = g->params.t[g->values[n->in[1]].param],
                             .bias = n->n_in > 2 ? g->params.t[g->values[n->in[2]].param] : NULL,
                             .p = {(int)n->i[0], (int)n->i[1], (int)n->i[2], (int)n->i[3], (int)n->i[4], (int)n->i[5], (int)n->i[6], 0, 0}};
    p->conv[k] = calloc(1, sizeof *p->conv[k]);
    ok = p->conv[k] && nn_conv_infer_init(p->conv[k], &layer, NULL, relu);
    if (ok) p->conv[k]->silu = p->silu[k];
    if (relu || leaky) p->fused[r] = true, p->same[r] = n->out, root[k] = g->nodes[r].out;
    if (leaky) p->slope[k] = g->nodes[r].f[0];
  }
  for (int k = 0; ok && k < g->n_nodes; k++) {
    if (p->fused[k] || !fresh_output(p, &g->nodes[k], k)) continue;
    p->chain[k] = nn_eltwise_plan(g, k, root[k], uses, p->fused);
    for (int j = k + 1; p->chain[k] && j < g->n_nodes; j++) /* the nodes it took stand for k's tensor */
      if (p->fused[j] && p->same[j] < 0) p->same[j] = g->nodes[k].out;
  }
  /* batch-1 channel concats of conv outputs: each conv writes straight into its place */
  for (int k = 0; ok && k < g->n_nodes; k++) {
    const nn_graph_node *n = &g->nodes[k];
    const nn_graph_value *out = &g->values[n->out];
    if (n->op != NN_OP_CONCAT || n->i[0] != 1 || out->ndim != 4 || out->shape[0] != 1) continue;
    int64_t off = 0;
    for (int j = 0; j < n->n_in; off += g->values[n->in[j]].shape[1], j++) {
      int c = conv_behind(g, p, n->in[j]), m = 1;
      if (c < 0) c = resize_behind(g, p, n->in[j]);
      if (c < 0) c = conv_sliced_into(g, p, n, j, &m);
      bool twice = false;
      for (int q = 0; q < j; q++)
        for (int r = j; r < j + m; r++) twice = twice || n->in[q] == n->in[r];
      if (c >= 0 && p->into[c] < 0 && !twice) p->into[c] = k, p->at[c] = off;
      for (int r = 1; r < m; r++) off += g->values[n->in[j + r]].shape[1];
      j += m - 1;
    }
  }
  free(uses), free(root);
  if (!ok) {
    plan_free(p);
    nn_set_error("graph: out of memory preparing inference");
    return false;
  }
  g->plan = p;
  return true;
}

/* A conv output's leaky ReLU, in place (nothing else has seen the output yet), split between the pool's
 * threads: these passes sit between two parallel convs, and a serial pass leaves a core waiting. */
typedef struct {
  float *d;
  float slope;
} act_ctx;

static void act_range(void *ctx, int64_t i0, int64_t i1) {
  const act_ctx *a = ctx;
  float *d = a->d;
  for (int64_t i = i0; i < i1; i++) d[i] = d[i] < 0.0f ? d[i] * a->slope : d[i];
}

static nn_tensor *activate_in_place(nn_tensor *y, float slope) {
  if (!y) return NULL;
  act_ctx a = {nn_f32(y), slope};
  nn_parallel_for(nn_numel(y), 16384, act_range, &a);
  return y;
}

int nn_graph_fused_nodes(const nn_graph *g) {
  int n = 0;
  for (int k = 0; g->plan && k < g->n_nodes; k++) n += g->plan->fused[k];
  return n;
}

/* ---------------------------------------------------------------- running */

static nn_tensor *pool(const nn_graph_node *n, nn_tensor *x) {
  const int64_t *k = n->i, *s = n->i + 2, *p = n->i + 4;
  bool max = n->op == NN_OP_MAX_POOL, symmetric = p[0] == p[1] && p[1] == p[2] && p[2] == p[3] && 2 * p[0] <= k[0];
  if (max && symmetric) return nn_max_pool2d(x, (int)k[0], (int)s[0], (int)p[0]);
  bool any_pad = p[0] || p[1] || p[2] || p[3];
  if (!max && (!any_pad || (symmetric && n->i[8]))) return nn_avg_pool2d(x, (int)k[0], (int)s[0], (int)p[0]);
  const int64_t pads[8] = {0, 0, 0, 0, p[0], p[2], p[1], p[3]};
  nn_tensor *y = max ? nn_max_pool2d(nn_pad(x, pads, -INFINITY), (int)k[0], (int)s[0], 0)
                     : nn_avg_pool2d(nn_pad(x, pads, 0), (int)k[0], (int)s[0], 0);
  if (max || n->i[8]) return y;
  /* ONNX's count_include_pad = 0: divide by the window's count of real pixels */
  nn_tensor *ones = nn_full(4, (int64_t[]){1, 1, x->shape[2], x->shape[3]}, 1.0f);
  return nn_div(y, nn_avg_pool2d(nn_pad(ones, pads, 0), (int)k[0], (int)s[0], 0));
}

static nn_tensor *run_node(const nn_graph *g, const nn_graph_node *n, nn_tensor **v) {
  nn_tensor *x = v[n->in[0]], *b = n->n_in > 1 ? v[n->in[1]] : NULL;
  const int64_t *i = n->i;
  const float *f = n->f;
  switch (n->op) {
  case NN_OP_CONV:
  case NN_OP_CONV_TRANSPOSE: {
    nn_conv_params p = {(int)i[0], (int)i[1], (int)i[2], (int)i[3], (int)i[4], (int)i[5], (int)i[6], 0, 0};
    nn_tensor *bias = n->n_in > 2 ? v[n->in[2]] : NULL;
    if (n->op == NN_OP_CONV) return nn_conv2d(x, b, bias, p);
    p.output_pad_h = (int)i[7], p.output_pad_w = (int)i[8];
    return nn_conv_transpose2d(x, b, bias, p);
  }
  case NN_OP_BATCH_NORM:
    return nn_batch_norm(x, b, v[n->in[2]], v[n->in[3]], v[n->in[4]], false, 0.1f, f[0]);
  case NN_OP_RELU: return nn_relu(x);
  case NN_OP_LEAKY_RELU: return nn_leaky_relu(x, f[0]);
  case NN_OP_SIGMOID: return nn_sigmoid(x);
  case NN_OP_TANH: return nn_tanh(x);
  case NN_OP_HARD_SIGMOID: return nn_clamp(nn_add_scalar(nn_mul_scalar(x, f[0]), f[1]), 0.0f, 1.0f);
  case NN_OP_HARD_SWISH: return nn_mul(x, nn_clamp(nn_add_scalar(nn_mul_scalar(x, 1.0f / 6.0f), 0.5f), 0.0f, 1.0f));
  case NN_OP_CLIP: return nn_clamp(x, f[0], f[1]);
  case NN_OP_EXP: return nn_exp(x);
  case NN_OP_LOG: return nn_log(x);
  case NN_OP_SQRT: return nn_sqrt(x);
  case NN_OP_NEG: return nn_neg(x);
  case NN_OP_ABS: return nn_abs(x);
  case NN_OP_IDENTITY: return x;
  case NN_OP_ADD: return nn_add(x, b);
  case NN_OP_SUB: return nn_sub(x, b);
  case NN_OP_MUL: return nn_mul(x, b);
  case NN_OP_DIV: return nn_div(x, b);
  case NN_OP_MAX_POOL:
  case NN_OP_AVG_POOL: return pool(n, x);
  case NN_OP_MEAN: {
    nn_tensor *y = x;
    for (int k = n->n_i - 1; k >= 1 && y; k--) y = nn_mean(y, (int)i[k], true); /* keep positions until the end */
    return y ? nn_reshape(y, g->values[n->out].ndim, g->values[n->out].shape) : NULL;
  }
  case NN_OP_RESIZE:
    return i[2] ? nn_upsample_bilinear(x, i[0], i[1]) : nn_upsample_nearest(x, i[0], i[1]);
  case NN_OP_CONCAT: {
    nn_tensor *parts[64], **ps = n->n_in <= 64 ? parts : malloc(sizeof *ps * (size_t)n->n_in);
    if (!ps) return NULL;
    for (int k = 0; k < n->n_in; k++) ps[k] = v[n->in[k]];
    nn_tensor *y = nn_concat(ps, n->n_in, (int)i[0]);
    if (ps != parts) free(ps);
    return y;
  }
  case NN_OP_SLICE: return nn_slice(x, (int)i[0], i[1], i[2], i[3]);
  case NN_OP_RESHAPE: return nn_reshape(x, n->n_i, i);
  case NN_OP_TRANSPOSE: {
    int perm[NN_MAX_DIMS];
    for (int d = 0; d < n->n_i; d++) perm[d] = (int)i[d];
    return nn_permute(x, perm);
  }
  case NN_OP_MATMUL: return nn_matmul(x, b);
  case NN_OP_SOFTMAX: return nn_softmax(x, (int)i[0]);
  case NN_OP_PAD: return nn_pad(x, i, f[0]);
  case NN_OP_GATHER: {
    nn_tensor *idx = nn_empty(NN_I64, 1, (int64_t[]){n->n_i - 1});
    if (!idx) return NULL;
    memcpy(nn_data(idx), i + 1, sizeof *i * (size_t)(n->n_i - 1));
    return nn_index_select(x, (int)i[0], idx);
  }
  default:
    nn_set_error("graph: unknown op %d", n->op);
    return NULL;
  }
}

static double now_s(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

bool nn_graph_run(const nn_graph *g, nn_tensor *const *inputs, nn_tensor **outputs) {
  return nn_graph_run_timed(g, inputs, outputs, NULL);
}

bool nn_graph_run_timed(const nn_graph *g, nn_tensor *const *inputs, nn_tensor **outputs, double *seconds) {
  nn_tensor **v = calloc((size_t)(g->n_values ? g->n_values : 1), sizeof *v);
  if (!v) {
    nn_set_error("graph: out of memory");
    return false;
  }
  bool ok = true;
  for (int k = 0; k < g->n_inputs && ok; k++) {
    const nn_graph_value *gv = &g->values[g->inputs[k]];
    nn_tensor *t = inputs[k];
    bool fits = t && t->dtype == NN_F32 && t->ndim == gv->ndim;
    for (int d = 0; fits && d < gv->ndim; d++) fits = t->shape[d] == gv->shape[d];
    if (!fits) {
      char want[96], got[96] = "none";
      nn_tensor w = {.ndim = gv->ndim};
      memcpy(w.shape, gv->shape, sizeof w.shape);
      nn_set_error("graph: input \"%s\" must be f32 %s, got %s", gv->name, nn_shape_str(&w, want, sizeof want),
                   t ? nn_shape_str(t, got, sizeof got) : got);
      ok = false;
    }
    v[g->inputs[k]] = t;
  }
  for (int k = 0; k < g->n_values && ok; k++)
    if (g->values[k].param >= 0) v[k] = g->params.t[g->values[k].param];
  const struct nn_graph_plan *plan = nn_grad_enabled() ? NULL : g->plan;
  for (int k = 0; k < g->n_nodes && ok; k++) {
    const nn_graph_node *n = &g->nodes[k];
    if (plan && plan->fused[k]) { /* an earlier node applied it, to that node's tensor */
      v[n->out] = v[plan->same[k]];
      continue;
    }
    double t0 = seconds ? now_s() : 0;
    if (plan && plan->conv[k]) {
      nn_tensor *y;
      int cat = plan->into[k];
      if (cat >= 0) { /* its place in a concat's output, which the first of its producers allocates */
        int co = g->nodes[cat].out;
        if (!v[co]) v[co] = nn_empty(NN_F32, g->values[co].ndim, g->values[co].shape);
        const nn_graph_value *me = &g->values[n->out];
        y = v[co] ? nn_conv_infer_forward_into(plan->conv[k], v[n->in[0]], nn_slice(v[co], 1, plan->at[k], plan->at[k] + me->shape[1], 1))
                  : NULL;
      } else {
        y = nn_conv_infer_forward(plan->conv[k], v[n->in[0]]);
      }
      v[n->out] = plan->slope[k] != 1.0f ? activate_in_place(y, plan->slope[k]) : y; /* SiLU: the conv applied it */
    } else if (plan && n->op == NN_OP_RESIZE && plan->into[k] >= 0) {
      int co = g->nodes[plan->into[k]].out;
      if (!v[co]) v[co] = nn_empty(NN_F32, g->values[co].ndim, g->values[co].shape);
      const nn_graph_value *me = &g->values[n->out];
      v[n->out] = v[co] ? nn_upsample_into(v[n->in[0]], n->i[2] != 0, nn_slice(v[co], 1, plan->at[k], plan->at[k] + me->shape[1], 1)) : NULL;
    } else if (plan && n->op == NN_OP_CONCAT && v[n->out]) {
      /* some inputs were written in place; copy the others into theirs */
      int64_t off = 0;
      for (int j = 0; j < n->n_in; off += g->values[n->in[j]].shape[1], j++) {
        if (placed_at(g, plan, k, n->in[j]) == off) continue;
        nn_tensor *dst = nn_slice(v[n->out], 1, off, off + g->values[n->in[j]].shape[1], 1);
        if (dst) nn_copy_(dst, v[n->in[j]]);
      }
    } else {
      v[n->out] = run_node(g, n, v);
    }
    if (plan && plan->chain[k] && v[n->out]) {
      if (!nn_is_contiguous(v[n->out])) v[n->out] = nn_contiguous(v[n->out]); /* never a concat's place: that is dense */
      if (!nn_eltwise_run(plan->chain[k], v[n->out], v)) v[n->out] = NULL;
    }
    if (seconds) seconds[k] += now_s() - t0;
    if (!v[n->out]) {
      char why[256];
      snprintf(why, sizeof why, "%s", nn_last_error());
      nn_set_error("graph: node \"%s\" (%s): %s", n->name, nn_graph_op_name(n->op), why);
      ok = false;
    }
  }
  for (int k = 0; k < g->n_outputs && ok; k++) outputs[k] = v[g->outputs[k]];
  free(v);
  return ok;
}

/* ---------------------------------------------------------------- simplifying */

/* What a conv takes over from the nodes after (or before) it. */
typedef struct {
  int bn;        /* a batch norm folded into it, or -1 */
  int add;       /* a per-channel constant added after it, or -1 */
} conv_fold;

static int count_uses(const nn_graph *g, int *uses) {
  memset(uses, 0, sizeof *uses * (size_t)g->n_values);
  for (int k = 0; k < g->n_nodes; k++)
    for (int j = 0; j < g->nodes[k].n_in; j++) uses[g->nodes[k].in[j]]++;
  for (int k = 0; k < g->n_outputs; k++) uses[g->outputs[k]] += 2; /* an output is never folded away */
  return 0;
}

/* The only node reading value v (uses[v] == 1), or -1. */
static int sole_reader(const nn_graph *g, const int *uses, int v) {
  if (uses[v] != 1) return -1;
  for (int k = 0; k < g->n_nodes; k++)
    for (int j = 0; j < g->nodes[k].n_in; j++)
      if (g->nodes[k].in[j] == v) return k;
  return -1;
}

/* A constant of C elements laid out along dimension 1 of a 4-D result ([C,1,1], [1,C,1,1]). */
static bool per_channel_const(const nn_graph *g, int v, int64_t channels) {
  const nn_graph_value *c = &g->values[v];
  if (c->param < 0 || c->ndim > 4 || c->ndim < 3) return false;
  int64_t n = 1;
  for (int d = 0; d < c->ndim; d++) n *= c->shape[d];
  return n == channels && c->shape[c->ndim - 1] == 1 && c->shape[c->ndim - 2] == 1;
}

static char *unique_name(const nn_graph *g, const char *base) {
  char *s = g_strdup(base);
  for (int k = 2; nn_graph_find(g, s) >= 0; k++) {
    g_free(s);
    s = g_strdup_printf("%s_%d", base, k);
  }
  char *out = strdup(s);
  g_free(s);
  return out;
}

/* The conv's weight and bias with its folds applied, as new constants of out. */
static bool fold_conv(const nn_graph *g, const nn_graph_node *n, const conv_fold *cf, nn_graph *out, int *w_id, int *b_id) {
  const nn_graph_value *wv = &g->values[n->in[1]];
  if (wv->param < 0 || (n->n_in > 2 && g->values[n->in[2]].param < 0)) {
    nn_set_error("graph: node \"%s\": a folded conv needs constant filters and bias", n->name);
    return false;
  }
  nn_tensor *w = nn_tensor_persist(g->params.t[wv->param]);
  int64_t oc = w->shape[0], per = nn_numel(w) / oc;
  nn_tensor *b = n->n_in > 2 ? nn_tensor_persist(g->params.t[g->values[n->in[2]].param]) : nn_tensor_new(NN_F32, 1, &oc);
  float *wd = nn_f32(w), *bd = nn_f32(b);
  if (cf->bn >= 0) {
    const nn_graph_node *bn = &g->nodes[cf->bn];
    const float *gamma = nn_f32(g->params.t[g->values[bn->in[1]].param]), *beta = nn_f32(g->params.t[g->values[bn->in[2]].param]),
                *mean = nn_f32(g->params.t[g->values[bn->in[3]].param]), *var = nn_f32(g->params.t[g->values[bn->in[4]].param]);
    for (int64_t o = 0; o < oc; o++) {
      float s = gamma[o] / sqrtf(var[o] + bn->f[0]);
      for (int64_t k = 0; k < per; k++) wd[o * per + k] *= s;
      bd[o] = (bd[o] - mean[o]) * s + beta[o];
    }
  }
  if (cf->add >= 0) {
    const nn_graph_node *add = &g->nodes[cf->add];
    int from = cf->bn >= 0 ? g->nodes[cf->bn].out : n->out, c = add->in[0] == from ? add->in[1] : add->in[0];
    const float *cd = nn_f32(g->params.t[g->values[c].param]);
    for (int64_t o = 0; o < oc; o++) bd[o] += cd[o];
  }
  char *wn = unique_name(out, wv->name), *bn_name;
  if (n->n_in > 2) {
    bn_name = unique_name(out, g->values[n->in[2]].name);
  } else {
    char *base = g_str_has_suffix(wv->name, "weight") ? g_strdup_printf("%.*sbias", (int)strlen(wv->name) - 6, wv->name)
                                                       : g_strdup_printf("%s.bias", wv->name);
    bn_name = unique_name(out, base);
    g_free(base);
  }
  bool tw = g->params.t[wv->param]->requires_grad;
  *w_id = nn_graph_add_const(out, wn, w, tw);
  *b_id = *w_id < 0 ? -1 : nn_graph_add_const(out, bn_name, b, tw);
  if (*w_id < 0) nn_tensor_free(b);
  free(wn), free(bn_name);
  return *b_id >= 0;
}

bool nn_graph_simplify(nn_graph *g, bool fold_batch_norm) {
  int nv = g->n_values, nn = g->n_nodes;
  int *uses = calloc((size_t)nv, sizeof *uses), *alias = malloc(sizeof *alias * (size_t)nv),
      *map = malloc(sizeof *map * (size_t)nv);
  bool *dead = calloc((size_t)(nn ? nn : 1), sizeof *dead), *live = calloc((size_t)nv, sizeof *live);
  conv_fold *cf = malloc(sizeof *cf * (size_t)(nn ? nn : 1));
  nn_graph_node *work = calloc((size_t)(nn ? nn : 1), sizeof *work);
  nn_graph out;
  nn_graph_init(&out);
  bool ok = uses && alias && map && dead && live && cf && work;
  if (!ok) nn_set_error("graph: out of memory");
  for (int v = 0; ok && v < nv; v++) alias[v] = v, map[v] = -1;
  for (int k = 0; ok && k < nn; k++) {
    cf[k] = (conv_fold){-1, -1};
    work[k] = g->nodes[k];
    work[k].in = malloc(sizeof *work[k].in * (size_t)g->nodes[k].n_in);
    if (!work[k].in) ok = false;
    else memcpy(work[k].in, g->nodes[k].in, sizeof *work[k].in * (size_t)g->nodes[k].n_in);
  }
  if (ok) count_uses(g, uses);
  for (int k = 0; ok && k < nn; k++) {
    nn_graph_node *n = &work[k];
    if (n->op == NN_OP_IDENTITY && uses[n->out] == 1) {
      dead[k] = true, alias[n->out] = alias[n->in[0]];
      continue;
    }
    if (n->op != NN_OP_CONV || g->values[n->in[1]].param < 0 || (n->n_in > 2 && g->values[n->in[2]].param < 0)) continue;
    /* a zero pad of H and W only, equal on both sides, read by this conv alone, becomes its padding */
    int src = alias[n->in[0]];
    const nn_graph_node *pad = g->values[src].node >= 0 ? &g->nodes[g->values[src].node] : NULL;
    if (pad && pad->op == NN_OP_PAD && uses[src] == 1 && pad->f[0] == 0.0f && pad->n_i == 8 && !pad->i[0] && !pad->i[1] &&
        !pad->i[2] && !pad->i[3] && pad->i[4] == pad->i[5] && pad->i[6] == pad->i[7]) {
      dead[g->values[src].node] = true;
      n->in[0] = alias[pad->in[0]];
      n->i[2] += pad->i[4], n->i[3] += pad->i[6];
    }
    int64_t oc = g->values[n->out].shape[1];
    int r = sole_reader(g, uses, n->out);
    if (fold_batch_norm && r >= 0 && g->nodes[r].op == NN_OP_BATCH_NORM) {
      bool consts = true;
      for (int j = 1; j < 5; j++) consts = consts && g->values[g->nodes[r].in[j]].param >= 0;
      if (consts) {
        cf[k].bn = r, dead[r] = true, alias[g->nodes[r].out] = n->out;
        r = sole_reader(g, uses, g->nodes[r].out);
      }
    }
    if (r >= 0 && g->nodes[r].op == NN_OP_ADD) {
      const nn_graph_node *a = &g->nodes[r];
      int from = cf[k].bn >= 0 ? g->nodes[cf[k].bn].out : n->out;
      int c = a->in[0] == from ? a->in[1] : a->in[0];
      if (c != from && per_channel_const(g, c, oc)) cf[k].add = r, dead[r] = true, alias[a->out] = n->out;
    }
  }
  /* keep what the outputs need */
  for (int k = 0; ok && k < g->n_outputs; k++) live[alias[g->outputs[k]]] = true;
  for (int k = nn - 1; ok && k >= 0; k--) {
    if (dead[k] || !live[work[k].out]) {
      dead[k] = true;
      continue;
    }
    for (int j = 0; j < work[k].n_in; j++) live[alias[work[k].in[j]]] = true;
  }
  for (int k = 0; ok && k < g->n_inputs; k++) {
    const nn_graph_value *v = &g->values[g->inputs[k]];
    ok = (map[g->inputs[k]] = nn_graph_add_input(&out, v->name, v->ndim, v->shape)) >= 0;
  }
  for (int k = 0; ok && k < nn; k++) {
    nn_graph_node *n = &work[k];
    if (dead[k]) continue;
    int in[64], *ins = n->n_in <= 64 ? in : malloc(sizeof *ins * (size_t)n->n_in);
    if (!ins) {
      ok = false;
      break;
    }
    int n_in = n->n_in;
    for (int j = 0; ok && j < n_in; j++) {
      int v = alias[n->in[j]];
      if (map[v] < 0 && g->values[v].param >= 0) {
        if (n->op == NN_OP_CONV && j >= 1 && (cf[k].bn >= 0 || cf[k].add >= 0)) continue;
        nn_tensor *t = nn_tensor_persist(g->params.t[g->values[v].param]);
        ok = (map[v] = nn_graph_add_const(&out, g->values[v].name, t, g->params.t[g->values[v].param]->requires_grad)) >= 0;
      }
      ins[j] = map[v];
    }
    if (ok && n->op == NN_OP_CONV && (cf[k].bn >= 0 || cf[k].add >= 0)) {
      ok = fold_conv(g, &g->nodes[k], &cf[k], &out, &ins[1], &ins[2]);
      n_in = 3;
    }
    if (ok) ok = (map[n->out] = nn_graph_add_node(&out, n->op, g->values[n->out].name, n_in, ins, n->n_i, n->i, n->n_f, n->f)) >= 0;
    if (ins != in) free(ins);
  }
  int outs[16];
  for (int k = 0; ok && k < g->n_outputs; k++) outs[k] = map[alias[g->outputs[k]]];
  if (ok) ok = nn_graph_set_outputs(&out, g->n_outputs, outs);
  for (int k = 0; work && k < nn; k++) free(work[k].in);
  free(uses), free(alias), free(map), free(dead), free(live), free(cf), free(work);
  if (!ok) {
    nn_graph_free(&out);
    return false;
  }
  nn_graph_free(g);
  *g = out;
  return true;
}

/* ---------------------------------------------------------------- saving and loading */

static void add_shape(JsonBuilder *b, int ndim, const int64_t *shape) {
  json_builder_begin_array(b);
  for (int d = 0; d < ndim; d++) json_builder_add_int_value(b, shape[d]);
  json_builder_end_array(b);
}

char *nn_graph_to_json(const nn_graph *g) {
  JsonBuilder *b = json_builder_new();
  json_builder_begin_object(b);
  json_builder_set_member_name(b, "version");
  json_builder_add_int_value(b, 1);
  json_builder_set_member_name(b, "inputs");
  json_builder_begin_array(b);
  for (int k = 0; k < g->n_inputs; k++) {
    const nn_graph_value *v = &g->values[g->inputs[k]];
    json_builder_begin_object(b);
    json_builder_set_member_name(b, "name");
    json_builder_add_string_value(b, v->name);
    json_builder_set_member_name(b, "shape");
    add_shape(b, v->ndim, v->shape);
    json_builder_end_object(b);
  }
  json_builder_end_array(b);
  json_builder_set_member_name(b, "consts");
  json_builder_begin_array(b);
  for (int k = 0; k < g->params.n; k++) {
    json_builder_begin_object(b);
    json_builder_set_member_name(b, "name");
    json_builder_add_string_value(b, g->params.names[k]);
    json_builder_set_member_name(b, "trainable");
    json_builder_add_boolean_value(b, g->params.t[k]->requires_grad);
    json_builder_end_object(b);
  }
  json_builder_end_array(b);
  json_builder_set_member_name(b, "nodes");
  json_builder_begin_array(b);
  for (int k = 0; k < g->n_nodes; k++) {
    const nn_graph_node *n = &g->nodes[k];
    json_builder_begin_object(b);
    json_builder_set_member_name(b, "op");
    json_builder_add_string_value(b, nn_graph_op_name(n->op));
    json_builder_set_member_name(b, "name");
    json_builder_add_string_value(b, n->name);
    json_builder_set_member_name(b, "in");
    json_builder_begin_array(b);
    for (int j = 0; j < n->n_in; j++) json_builder_add_string_value(b, g->values[n->in[j]].name);
    json_builder_end_array(b);
    json_builder_set_member_name(b, "i");
    add_shape(b, n->n_i, n->i);
    json_builder_set_member_name(b, "f");
    json_builder_begin_array(b);
    for (int j = 0; j < n->n_f; j++) {
      if (isfinite(n->f[j])) json_builder_add_double_value(b, n->f[j]);
      else json_builder_add_string_value(b, isnan(n->f[j]) ? "nan" : n->f[j] > 0 ? "inf" : "-inf");
    }
    json_builder_end_array(b);
    json_builder_end_object(b);
  }
  json_builder_end_array(b);
  json_builder_set_member_name(b, "outputs");
  json_builder_begin_array(b);
  for (int k = 0; k < g->n_outputs; k++) json_builder_add_string_value(b, g->values[g->outputs[k]].name);
  json_builder_end_array(b);
  json_builder_end_object(b);
  JsonNode *root = json_builder_get_root(b);
  char *s = json_to_string(root, FALSE);
  json_node_unref(root);
  g_object_unref(b);
  return s;
}

bool nn_graph_save(const nn_graph *g, const char *path, const nn_kv *meta, int n_meta) {
  nn_kv *all = calloc((size_t)n_meta + 1, sizeof *all);
  char *json = nn_graph_to_json(g);
  bool ok = all && json;
  if (ok) {
    all[0] = (nn_kv){"graph", json};
    for (int k = 0; k < n_meta; k++) all[k + 1] = meta[k];
    ok = nn_safetensors_save(path, &g->params, all, n_meta + 1);
  } else {
    nn_set_error("%s: out of memory", path);
  }
  free(all);
  g_free(json);
  return ok;
}

#define LOAD_FAIL(...)                             \
  do {                                             \
    char m_[300];                                  \
    snprintf(m_, sizeof m_, __VA_ARGS__);          \
    nn_set_error("%s: graph: %s", what, m_);       \
    goto done;                                     \
  } while (0)

static bool read_ints(JsonArray *a, int max, int64_t *out, int *n) {
  guint len = a ? json_array_get_length(a) : 0;
  if ((int)len > max) return false;
  for (guint k = 0; k < len; k++) {
    JsonNode *e = json_array_get_element(a, k);
    if (!JSON_NODE_HOLDS_VALUE(e) || json_node_get_value_type(e) != G_TYPE_INT64) return false;
    out[k] = json_node_get_int(e);
  }
  *n = (int)len;
  return true;
}

static JsonArray *member_array(JsonObject *o, const char *key) {
  JsonNode *n = o ? json_object_get_member(o, key) : NULL;
  return n && JSON_NODE_HOLDS_ARRAY(n) ? json_node_get_array(n) : NULL;
}

static const char *member_string(JsonObject *o, const char *key) {
  JsonNode *n = o ? json_object_get_member(o, key) : NULL;
  return n && JSON_NODE_HOLDS_VALUE(n) && json_node_get_value_type(n) == G_TYPE_STRING ? json_node_get_string(n) : NULL;
}

bool nn_graph_from_file(nn_graph *g, const nn_st_file *f, const char *what) {
  const char *text = nn_st_meta(f, "graph");
  nn_graph_init(g);
  bool ok = false;
  JsonParser *p = NULL;
  if (!text) LOAD_FAIL("no \"graph\" metadata (not a graph model)");
  if (!nn_json_nesting_ok(text, strlen(text), 8)) LOAD_FAIL("the graph JSON is nested too deeply");
  p = json_parser_new();
  if (!json_parser_load_from_data(p, text, -1, NULL) || !JSON_NODE_HOLDS_OBJECT(json_parser_get_root(p)))
    LOAD_FAIL("the graph is not a JSON object");
  JsonObject *root = json_node_get_object(json_parser_get_root(p));
  JsonArray *inputs = member_array(root, "inputs"), *consts = member_array(root, "consts"), *nodes = member_array(root, "nodes"),
            *outputs = member_array(root, "outputs");
  if (!inputs || !consts || !nodes || !outputs) LOAD_FAIL("inputs, consts, nodes or outputs missing");
  for (guint k = 0; k < json_array_get_length(inputs); k++) {
    JsonNode *e = json_array_get_element(inputs, k);
    JsonObject *o = JSON_NODE_HOLDS_OBJECT(e) ? json_node_get_object(e) : NULL;
    const char *name = member_string(o, "name");
    int64_t shape[NN_MAX_DIMS];
    int nd;
    if (!name || !read_ints(member_array(o, "shape"), NN_MAX_DIMS, shape, &nd)) LOAD_FAIL("input %u is malformed", k);
    if (nn_graph_add_input(g, name, nd, shape) < 0) {
      char m[300];
      snprintf(m, sizeof m, "%s", nn_last_error());
      LOAD_FAIL("%s", m);
    }
  }
  for (guint k = 0; k < json_array_get_length(consts); k++) {
    JsonNode *e = json_array_get_element(consts, k);
    JsonObject *o = JSON_NODE_HOLDS_OBJECT(e) ? json_node_get_object(e) : NULL;
    const char *name = member_string(o, "name");
    JsonNode *tr = o ? json_object_get_member(o, "trainable") : NULL;
    if (!name || !tr || !JSON_NODE_HOLDS_VALUE(tr) || json_node_get_value_type(tr) != G_TYPE_BOOLEAN) LOAD_FAIL("constant %u is malformed", k);
    nn_tensor *t = nn_st_get(f, name);
    if (!t) LOAD_FAIL("the constant \"%s\" is not in the file", name);
    if (nn_graph_add_const(g, name, t, json_node_get_boolean(tr)) < 0) goto done;
  }
  if (g->params.n != nn_st_count(f)) LOAD_FAIL("the file holds %d tensors, the graph names %d", nn_st_count(f), g->params.n);
  for (guint k = 0; k < json_array_get_length(nodes); k++) {
    JsonNode *e = json_array_get_element(nodes, k);
    JsonObject *o = JSON_NODE_HOLDS_OBJECT(e) ? json_node_get_object(e) : NULL;
    const char *op_name = member_string(o, "op"), *name = member_string(o, "name");
    JsonArray *in = member_array(o, "in"), *fa = member_array(o, "f");
    int64_t attrs[NN_GRAPH_MAX_ATTRS];
    float fl[4];
    int n_i, op = -1;
    if (!op_name || !name || !in || !fa || !read_ints(member_array(o, "i"), NN_GRAPH_MAX_ATTRS, attrs, &n_i) || json_array_get_length(fa) > 4)
      LOAD_FAIL("node %u is malformed", k);
    for (int j = 0; j < NN_OP_COUNT; j++)
      if (!strcmp(op_name, OP_NAMES[j])) op = j;
    if (op < 0) LOAD_FAIL("node \"%s\": unknown op \"%s\"", name, op_name);
    for (guint j = 0; j < json_array_get_length(fa); j++) {
      JsonNode *x = json_array_get_element(fa, j);
      GType t = JSON_NODE_HOLDS_VALUE(x) ? json_node_get_value_type(x) : G_TYPE_INVALID;
      const char *s = t == G_TYPE_STRING ? json_node_get_string(x) : NULL;
      if (t == G_TYPE_DOUBLE || t == G_TYPE_INT64) fl[j] = (float)json_node_get_double(x);
      else if (s && (!strcmp(s, "inf") || !strcmp(s, "-inf") || !strcmp(s, "nan"))) fl[j] = s[0] == 'n' ? NAN : s[0] == '-' ? -INFINITY : INFINITY;
      else LOAD_FAIL("node \"%s\": a float attribute is malformed", name);
    }
    guint n_in = json_array_get_length(in);
    if (n_in < 1 || n_in > 4096) LOAD_FAIL("node \"%s\" has %u inputs", name, n_in);
    int *ids = malloc(sizeof *ids * n_in);
    if (!ids) LOAD_FAIL("out of memory");
    bool found = true;
    for (guint j = 0; j < n_in && found; j++) {
      JsonNode *x = json_array_get_element(in, j);
      const char *s = JSON_NODE_HOLDS_VALUE(x) && json_node_get_value_type(x) == G_TYPE_STRING ? json_node_get_string(x) : NULL;
      found = s && (ids[j] = nn_graph_find(g, s)) >= 0;
    }
    int v = found ? nn_graph_add_node(g, (nn_graph_op)op, name, (int)n_in, ids, n_i, attrs, (int)json_array_get_length(fa), fl) : -1;
    free(ids);
    if (!found) LOAD_FAIL("node \"%s\" reads a value that is not defined before it", name);
    if (v < 0) {
      char m[300];
      snprintf(m, sizeof m, "%s", nn_last_error());
      LOAD_FAIL("%s", m);
    }
  }
  int outs[16];
  guint n_out = json_array_get_length(outputs);
  if (n_out < 1 || n_out > 16) LOAD_FAIL("%u outputs (1 to 16)", n_out);
  for (guint k = 0; k < n_out; k++) {
    JsonNode *x = json_array_get_element(outputs, k);
    const char *s = JSON_NODE_HOLDS_VALUE(x) && json_node_get_value_type(x) == G_TYPE_STRING ? json_node_get_string(x) : NULL;
    if (!s || (outs[k] = nn_graph_find(g, s)) < 0) LOAD_FAIL("output %u is never produced", k);
  }
  ok = nn_graph_set_outputs(g, (int)n_out, outs);
done:
  if (p) g_object_unref(p);
  if (!ok) nn_graph_free(g);
  return ok;
}
