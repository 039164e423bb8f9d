/* The importers' shared value table and layout-carrying ops (builder.h). */
#include "builder.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void value_free(gpointer p) {
  imp_value *v = p;
  g_free(v->name);
  free(v->data);
  free(v);
}

void imp_init(imp_ctx *c, nn_graph *g, const char *what) {
  c->g = g;
  c->values = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, value_free);
  c->what = what;
  c->n_made = 0;
}

void imp_free(imp_ctx *c) {
  if (c->values) g_hash_table_destroy(c->values);
  c->values = NULL;
}

bool imp_fail(imp_ctx *c, const char *node, const char *op, const char *fmt, ...) {
  char msg[400];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  nn_set_error("%s: node \"%s\" (%s): %s", c->what, node ? node : "?", op ? op : "?", msg);
  return false;
}

imp_value *imp_get(imp_ctx *c, const char *name) { return name ? g_hash_table_lookup(c->values, name) : NULL; }

static imp_value *put(imp_ctx *c, const char *name, imp_value *v) {
  v->name = g_strdup(name);
  g_hash_table_replace(c->values, g_strdup(name), v);
  return v;
}

int64_t imp_numel(const imp_value *v) {
  int64_t n = 1;
  for (int d = 0; d < v->ndim; d++) n *= v->shape[d];
  return n;
}

imp_value *imp_const(imp_ctx *c, const char *name, nn_dtype dt, int ndim, const int64_t *shape, const void *data) {
  if (ndim < 0 || ndim > NN_MAX_DIMS) {
    nn_set_error("%s: constant \"%s\" has %d dimensions", c->what, name, ndim);
    return NULL;
  }
  int64_t n = 1;
  for (int d = 0; d < ndim; d++) {
    if (shape[d] < 0 || shape[d] > ((int64_t)1 << 31) || (n *= shape[d]) > ((int64_t)1 << 31)) {
      nn_set_error("%s: constant \"%s\" has an absurd shape", c->what, name);
      return NULL;
    }
  }
  imp_value *v = calloc(1, sizeof *v);
  size_t es = dt == NN_F32 ? sizeof(float) : sizeof(int64_t);
  if (!v || !(v->data = malloc(es * (size_t)(n ? n : 1)))) {
    free(v);
    nn_set_error("%s: out of memory for \"%s\"", c->what, name);
    return NULL;
  }
  v->is_const = true;
  v->dtype = dt;
  v->ndim = ndim;
  if (ndim) memcpy(v->shape, shape, sizeof *shape * (size_t)ndim);
  if (n) memcpy(v->data, data, es * (size_t)n);
  v->id = -1;
  return put(c, name, v);
}

imp_value *imp_graph(imp_ctx *c, const char *name, int id, const int *perm) {
  imp_value *v = calloc(1, sizeof *v);
  if (!v || id < 0) {
    free(v);
    return NULL;
  }
  const nn_graph_value *gv = &c->g->values[id];
  v->id = id;
  v->ndim = gv->ndim;
  for (int d = 0; d < gv->ndim; d++) {
    v->perm[d] = perm ? perm[d] : d;
    v->shape[d] = gv->shape[v->perm[d]];
  }
  return put(c, name, v);
}

bool imp_ints(const imp_value *v, int64_t *out, int max, int *n) {
  if (!v || !v->is_const || imp_numel(v) > max) return false;
  *n = (int)imp_numel(v);
  for (int k = 0; k < *n; k++)
    out[k] = v->dtype == NN_I64 ? ((const int64_t *)v->data)[k] : (int64_t)((const float *)v->data)[k];
  return true;
}

float imp_float_at(const imp_value *v, int64_t k) {
  return v->dtype == NN_F32 ? ((const float *)v->data)[k] : (float)((const int64_t *)v->data)[k];
}

char *imp_name(imp_ctx *c, const char *base, const char *suffix) {
  return g_strdup_printf("%s/%s_%d", base, suffix, c->n_made++);
}

static bool is_identity(const int *p, int n) {
  for (int d = 0; d < n; d++)
    if (p[d] != d) return false;
  return true;
}

/* out = permute(in, q) on host data of element size es: out.shape[d] = in.shape[q[d]]. */
static void host_permute(const void *in, const int64_t *shape, int n, const int *q, size_t es, void *out) {
  int64_t istride[NN_MAX_DIMS], oshape[NN_MAX_DIMS], idx[NN_MAX_DIMS] = {0}, total = 1;
  for (int d = n - 1, s = 1; d >= 0; d--) istride[d] = s, s *= (int)shape[d];
  for (int d = 0; d < n; d++) oshape[d] = shape[q[d]], total *= oshape[d];
  for (int64_t k = 0; k < total; k++) {
    int64_t src = 0;
    for (int d = 0; d < n; d++) src += idx[d] * istride[q[d]];
    memcpy((char *)out + (size_t)k * es, (const char *)in + (size_t)src * es, es);
    for (int d = n - 1; d >= 0 && ++idx[d] == oshape[d]; d--) idx[d] = 0;
  }
}

int imp_as(imp_ctx *c, imp_value *v, const int *perm) {
  int id_perm[NN_MAX_DIMS], inv[NN_MAX_DIMS], q[NN_MAX_DIMS];
  for (int d = 0; d < NN_MAX_DIMS; d++) id_perm[d] = d;
  if (!perm) perm = id_perm;
  for (int d = 0; d < v->ndim; d++) inv[perm[d]] = d;
  if (v->is_const) {
    /* stored = permute(source, inv(perm)) */
    int64_t n = imp_numel(v);
    if (n == 0) {
      nn_set_error("%s: an empty constant cannot be a graph value", c->what);
      return -1;
    }
    float *src = malloc(sizeof *src * (size_t)n);
    if (!src) {
      nn_set_error("%s: out of memory", c->what);
      return -1;
    }
    for (int64_t k = 0; k < n; k++) src[k] = imp_float_at(v, k);
    int64_t shape[NN_MAX_DIMS];
    for (int d = 0; d < v->ndim; d++) shape[d] = v->shape[inv[d]];
    nn_tensor *t = nn_tensor_new(NN_F32, v->ndim, shape);
    if (t) host_permute(src, v->shape, v->ndim, inv, sizeof(float), nn_f32(t));
    free(src);
    if (!t) return -1;
    /* a name of its own: the same constant may be needed in two layouts */
    char *name = is_identity(perm, v->ndim) && nn_graph_find(c->g, v->name) < 0 ? g_strdup(v->name) : imp_name(c, v->name, "layout");
    int id = nn_graph_add_const(c->g, name, t, true);
    g_free(name);
    return id;
  }
  for (int d = 0; d < v->ndim; d++) q[d] = v->perm[inv[d]];
  if (is_identity(q, v->ndim)) return v->id;
  int64_t attrs[NN_MAX_DIMS];
  for (int d = 0; d < v->ndim; d++) attrs[d] = q[d];
  char *name = imp_name(c, c->g->values[v->id].name, "transpose");
  int id = nn_graph_add_node(c->g, NN_OP_TRANSPOSE, name, 1, &v->id, v->ndim, attrs, 0, NULL);
  g_free(name);
  return id;
}

static bool broadcast_shape(const imp_value *a, const imp_value *b, int *n, int64_t *shape) {
  *n = a->ndim > b->ndim ? a->ndim : b->ndim;
  for (int d = 0; d < *n; d++) {
    int da = d - (*n - a->ndim), db = d - (*n - b->ndim);
    int64_t x = da >= 0 ? a->shape[da] : 1, y = db >= 0 ? b->shape[db] : 1;
    if (x != y && x != 1 && y != 1) return false;
    shape[d] = x == 1 ? y : x;
  }
  return true;
}

static double apply(nn_graph_op op, double x, double y, bool ints) {
  switch (op) {
  case NN_OP_ADD: return x + y;
  case NN_OP_SUB: return x - y;
  case NN_OP_MUL: return x * y;
  default: return ints ? (y != 0 ? (double)((int64_t)x / (int64_t)y) : 0) : x / y;
  }
}

static imp_value *fold_binary(imp_ctx *c, const char *name, nn_graph_op op, imp_value *a, imp_value *b, int n,
                              const int64_t *shape) {
  int64_t total = 1, idx[NN_MAX_DIMS] = {0}, sa[NN_MAX_DIMS], sb[NN_MAX_DIMS];
  for (int d = 0; d < n; d++) total *= shape[d];
  for (int d = n - 1, s1 = 1, s2 = 1; d >= 0; d--) {
    int da = d - (n - a->ndim), db = d - (n - b->ndim);
    int64_t x = da >= 0 ? a->shape[da] : 1, y = db >= 0 ? b->shape[db] : 1;
    sa[d] = x == 1 ? 0 : s1, sb[d] = y == 1 ? 0 : s2;
    s1 *= (int)x, s2 *= (int)y;
  }
  bool ints = a->dtype == NN_I64 && b->dtype == NN_I64;
  void *out = malloc((ints ? sizeof(int64_t) : sizeof(float)) * (size_t)(total ? total : 1));
  if (!out) return NULL;
  for (int64_t k = 0; k < total; k++) {
    int64_t ia = 0, ib = 0;
    for (int d = 0; d < n; d++) ia += idx[d] * sa[d], ib += idx[d] * sb[d];
    double r = apply(op, a->dtype == NN_I64 ? (double)((int64_t *)a->data)[ia] : imp_float_at(a, ia),
                     b->dtype == NN_I64 ? (double)((int64_t *)b->data)[ib] : imp_float_at(b, ib), ints);
    if (ints) ((int64_t *)out)[k] = (int64_t)r;
    else ((float *)out)[k] = (float)r;
    for (int d = n - 1; d >= 0 && ++idx[d] == shape[d]; d--) idx[d] = 0;
  }
  imp_value *v = imp_const(c, name, ints ? NN_I64 : NN_F32, n, shape, out);
  free(out);
  return v;
}

imp_value *imp_binary(imp_ctx *c, const char *name, nn_graph_op op, imp_value *a, imp_value *b) {
  int n;
  int64_t shape[NN_MAX_DIMS];
  if (!a || !b) return NULL;
  if (!broadcast_shape(a, b, &n, shape)) {
    imp_fail(c, name, nn_graph_op_name(op), "operand shapes do not broadcast");
    return NULL;
  }
  if (a->is_const && b->is_const) return fold_binary(c, name, op, a, b, n, shape);
  /* a graph operand of the full rank sets the layout; anything else goes to the source layout */
  imp_value *ref = !a->is_const && a->ndim == n ? a : !b->is_const && b->ndim == n ? b : NULL;
  const int *perm = ref ? ref->perm : NULL;
  int ids[2];
  imp_value *ops[2] = {a, b};
  for (int k = 0; k < 2; k++) {
    imp_value *x = ops[k];
    if (x->ndim != n) {
      /* rank-expand in source terms first (leading ones) */
      int64_t s[NN_MAX_DIMS];
      for (int d = 0; d < n; d++) s[d] = d < n - x->ndim ? 1 : x->shape[d - (n - x->ndim)];
      char *nm = imp_name(c, name, "expand");
      x = imp_reshape(c, nm, x, n, s);
      g_free(nm);
      if (!x) return NULL;
    }
    if ((ids[k] = imp_as(c, x, perm)) < 0) return NULL;
  }
  int id = nn_graph_add_node(c->g, op, name, 2, ids, 0, NULL, 0, NULL);
  return id < 0 ? NULL : imp_graph(c, name, id, perm);
}

imp_value *imp_unary(imp_ctx *c, const char *name, nn_graph_op op, imp_value *x, int n_f, const float *f) {
  if (!x) return NULL;
  int in = imp_as(c, x, x->is_const ? NULL : x->perm);
  int id = in < 0 ? -1 : nn_graph_add_node(c->g, op, name, 1, &in, 0, NULL, n_f, f);
  return id < 0 ? NULL : imp_graph(c, name, id, x->is_const ? NULL : x->perm);
}

imp_value *imp_reshape(imp_ctx *c, const char *name, imp_value *x, int ndim, const int64_t *shape) {
  if (!x) return NULL;
  int64_t n = 1;
  for (int d = 0; d < ndim; d++) n *= shape[d];
  if (ndim > NN_MAX_DIMS || n != imp_numel(x)) {
    imp_fail(c, name, "reshape", "%lld elements cannot take the new shape", (long long)imp_numel(x));
    return NULL;
  }
  if (x->is_const) return imp_const(c, name, x->dtype, ndim, shape, x->data);
  int in = imp_as(c, x, NULL);
  int id = in < 0 ? -1 : nn_graph_add_node(c->g, NN_OP_RESHAPE, name, 1, &in, ndim, shape, 0, NULL);
  return id < 0 ? NULL : imp_graph(c, name, id, NULL);
}

imp_value *imp_transpose(imp_ctx *c, const char *name, imp_value *x, const int *t) {
  if (!x) return NULL;
  bool seen[NN_MAX_DIMS] = {0};
  for (int d = 0; d < x->ndim; d++) {
    if (t[d] < 0 || t[d] >= x->ndim || seen[t[d]]) {
      imp_fail(c, name, "transpose", "the permutation is not one of %d dimensions", x->ndim);
      return NULL;
    }
    seen[t[d]] = true;
  }
  if (x->is_const) {
    int64_t n = imp_numel(x), shape[NN_MAX_DIMS];
    size_t es = x->dtype == NN_F32 ? sizeof(float) : sizeof(int64_t);
    void *out = malloc(es * (size_t)(n ? n : 1));
    if (!out) return NULL;
    host_permute(x->data, x->shape, x->ndim, t, es, out);
    for (int d = 0; d < x->ndim; d++) shape[d] = x->shape[t[d]];
    imp_value *v = imp_const(c, name, x->dtype, x->ndim, shape, out);
    free(out);
    return v;
  }
  int p[NN_MAX_DIMS];
  for (int d = 0; d < x->ndim; d++) p[d] = x->perm[t[d]];
  return imp_graph(c, name, x->id, p);
}

imp_value *imp_concat(imp_ctx *c, const char *name, imp_value **xs, int n, int axis) {
  if (n < 1 || !xs[0]) return NULL;
  int r = xs[0]->ndim;
  if (axis < 0) axis += r;
  bool all_const = true;
  for (int k = 0; k < n; k++) {
    if (!xs[k] || xs[k]->ndim != r) {
      imp_fail(c, name, "concat", "input %d is missing or of another rank", k);
      return NULL;
    }
    all_const = all_const && xs[k]->is_const;
  }
  if (axis < 0 || axis >= r) {
    imp_fail(c, name, "concat", "axis out of range");
    return NULL;
  }
  if (all_const) {
    /* shapes and other small constants: concatenate on the host */
    int64_t shape[NN_MAX_DIMS], outer = 1, total = 0;
    memcpy(shape, xs[0]->shape, sizeof shape);
    shape[axis] = 0;
    bool ints = true;
    for (int k = 0; k < n; k++) shape[axis] += xs[k]->shape[axis], ints = ints && xs[k]->dtype == NN_I64;
    for (int d = 0; d < axis; d++) outer *= shape[d];
    int64_t inner = 1;
    for (int d = axis + 1; d < r; d++) inner *= shape[d];
    for (int d = 0; d < r; d++) total = d ? total * shape[d] : shape[d];
    if (r == 0) total = 1;
    size_t es = ints ? sizeof(int64_t) : sizeof(float);
    char *out = malloc(es * (size_t)(total ? total : 1)), *o = out;
    if (!out) return NULL;
    for (int64_t i = 0; i < outer; i++)
      for (int k = 0; k < n; k++) {
        int64_t len = xs[k]->shape[axis] * inner;
        for (int64_t j = 0; j < len; j++, o += es) {
          int64_t src = i * len + j;
          if (ints) *(int64_t *)o = ((int64_t *)xs[k]->data)[src];
          else *(float *)o = imp_float_at(xs[k], src);
        }
      }
    imp_value *v = imp_const(c, name, ints ? NN_I64 : NN_F32, r, shape, out);
    free(out);
    return v;
  }
  const int *perm = NULL;
  for (int k = 0; k < n && !perm; k++)
    if (!xs[k]->is_const) perm = xs[k]->perm;
  int ids[64], *pi = n <= 64 ? ids : malloc(sizeof *pi * (size_t)n);
  if (!pi) return NULL;
  bool ok = true;
  for (int k = 0; k < n && ok; k++) ok = (pi[k] = imp_as(c, xs[k], perm)) >= 0;
  int64_t ax = perm[axis];
  int id = ok ? nn_graph_add_node(c->g, NN_OP_CONCAT, name, n, pi, 1, &ax, 0, NULL) : -1;
  int p[NN_MAX_DIMS];
  memcpy(p, perm, sizeof p);
  if (pi != ids) free(pi);
  return id < 0 ? NULL : imp_graph(c, name, id, p);
}

imp_value *imp_slice(imp_ctx *c, const char *name, imp_value *x, int axis, int64_t start, int64_t end, int64_t step) {
  if (!x) return NULL;
  if (axis < 0) axis += x->ndim;
  if (axis < 0 || axis >= x->ndim || step < 1) {
    imp_fail(c, name, "slice", "axis %d or step %lld is not supported", axis, (long long)step);
    return NULL;
  }
  int64_t dim = x->shape[axis];
  if (start < 0) start += dim;
  if (end < 0) end += dim;
  start = start < 0 ? 0 : start > dim ? dim : start;
  end = end < 0 ? 0 : end > dim ? dim : end;
  if (x->is_const) {
    int64_t shape[NN_MAX_DIMS], outer = 1, inner = 1;
    memcpy(shape, x->shape, sizeof shape);
    shape[axis] = end > start ? (end - start + step - 1) / step : 0;
    for (int d = 0; d < axis; d++) outer *= x->shape[d];
    for (int d = axis + 1; d < x->ndim; d++) inner *= x->shape[d];
    size_t es = x->dtype == NN_F32 ? sizeof(float) : sizeof(int64_t);
    char *out = malloc(es * (size_t)(outer * shape[axis] * inner + 1)), *o = out;
    if (!out) return NULL;
    for (int64_t i = 0; i < outer; i++)
      for (int64_t j = 0; j < shape[axis]; j++, o += es * (size_t)inner)
        memcpy(o, (char *)x->data + es * (size_t)((i * dim + start + j * step) * inner), es * (size_t)inner);
    imp_value *v = imp_const(c, name, x->dtype, x->ndim, shape, out);
    free(out);
    return v;
  }
  if (start == 0 && end == dim && step == 1) return imp_graph(c, name, x->id, x->perm);
  int64_t a[4] = {x->perm[axis], start, end, step};
  int id = nn_graph_add_node(c->g, NN_OP_SLICE, name, 1, &x->id, 4, a, 0, NULL);
  return id < 0 ? NULL : imp_graph(c, name, id, x->perm);
}

imp_value *imp_pad(imp_ctx *c, const char *name, imp_value *x, const int64_t *pads, float value) {
  if (!x) return NULL;
  int in = imp_as(c, x, x->is_const ? NULL : x->perm);
  const int *perm = x->is_const ? NULL : x->perm;
  int64_t p[2 * NN_MAX_DIMS];
  for (int d = 0; d < x->ndim; d++) {
    int j = perm ? perm[d] : d;
    p[2 * j] = pads[2 * d], p[2 * j + 1] = pads[2 * d + 1];
  }
  bool any = false;
  for (int d = 0; d < 2 * x->ndim; d++) any = any || p[d];
  if (!any) return in < 0 ? NULL : imp_graph(c, name, in, perm);
  int id = in < 0 ? -1 : nn_graph_add_node(c->g, NN_OP_PAD, name, 1, &in, 2 * x->ndim, p, 1, &value);
  return id < 0 ? NULL : imp_graph(c, name, id, perm);
}

float imp_half_to_float(uint16_t h) {
  uint32_t sign = (uint32_t)(h >> 15) << 31, exp = (h >> 10) & 0x1f, mant = h & 0x3ff, bits;
  if (exp == 0) return (sign ? -1.0f : 1.0f) * ldexpf((float)mant, -24); /* zero or subnormal */
  bits = exp == 31 ? sign | 0x7f800000u | mant << 13 : sign | (exp + 112) << 23 | mant << 13;
  float f;
  memcpy(&f, &bits, sizeof f);
  return f;
}
