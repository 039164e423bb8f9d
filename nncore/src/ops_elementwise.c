/* Broadcasting binary ops, unary math and activations. */
#include "internal.h"

bool nn_broadcast_shape(const nn_tensor *a, const nn_tensor *b, int *ndim, int64_t *shape) {
  int nd = a->ndim > b->ndim ? a->ndim : b->ndim;
  for (int i = 0; i < nd; i++) {
    int ia = a->ndim - nd + i, ib = b->ndim - nd + i;
    int64_t da = ia >= 0 ? a->shape[ia] : 1, db = ib >= 0 ? b->shape[ib] : 1;
    if (da != db && da != 1 && db != 1) return false;
    shape[i] = da == 1 ? db : da;
  }
  *ndim = nd;
  return true;
}

/* Strides of t seen with `nd` dims of `shape`: 0 where t is broadcast. */
static void broadcast_strides(const nn_tensor *t, int nd, const int64_t *shape, int64_t *st) {
  for (int i = 0; i < nd; i++) {
    int it = t->ndim - nd + i;
    st[i] = (it >= 0 && t->shape[it] == shape[i]) ? t->strides[it] : 0;
  }
}

typedef enum { OP_ADD, OP_SUB, OP_MUL, OP_DIV } binop;

typedef struct {
  binop op;
  int nd;
  int64_t shape[NN_MAX_DIMS], sa[NN_MAX_DIMS], sb[NN_MAX_DIMS];
  const float *a, *b;
  float *out;
  int64_t inner;
} bin_ctx;

static inline void bin_row(binop op, float *o, const float *a, int64_t sa, const float *b, int64_t sb,
                           int64_t n) {
  if (sa == 1 && sb == 1) {
    switch (op) {
    case OP_ADD: for (int64_t j = 0; j < n; j++) o[j] = a[j] + b[j]; break;
    case OP_SUB: for (int64_t j = 0; j < n; j++) o[j] = a[j] - b[j]; break;
    case OP_MUL: for (int64_t j = 0; j < n; j++) o[j] = a[j] * b[j]; break;
    case OP_DIV: for (int64_t j = 0; j < n; j++) o[j] = a[j] / b[j]; break;
    }
  } else if (sa == 1 && sb == 0) {
    float v = b[0];
    switch (op) {
    case OP_ADD: for (int64_t j = 0; j < n; j++) o[j] = a[j] + v; break;
    case OP_SUB: for (int64_t j = 0; j < n; j++) o[j] = a[j] - v; break;
    case OP_MUL: for (int64_t j = 0; j < n; j++) o[j] = a[j] * v; break;
    case OP_DIV: for (int64_t j = 0; j < n; j++) o[j] = a[j] / v; break;
    }
  } else {
    switch (op) {
    case OP_ADD: for (int64_t j = 0; j < n; j++) o[j] = a[j * sa] + b[j * sb]; break;
    case OP_SUB: for (int64_t j = 0; j < n; j++) o[j] = a[j * sa] - b[j * sb]; break;
    case OP_MUL: for (int64_t j = 0; j < n; j++) o[j] = a[j * sa] * b[j * sb]; break;
    case OP_DIV: for (int64_t j = 0; j < n; j++) o[j] = a[j * sa] / b[j * sb]; break;
    }
  }
}

static void bin_rows(void *p, int64_t r0, int64_t r1) {
  bin_ctx *c = p;
  int nd = c->nd;
  int64_t inner = c->inner;
  for (int64_t r = r0; r < r1; r++) {
    /* row r -> offsets over the outer nd-1 dims */
    int64_t rem = r, oa = 0, ob = 0;
    for (int d = nd - 2; d >= 0; d--) {
      int64_t idx = rem % c->shape[d];
      rem /= c->shape[d];
      oa += idx * c->sa[d];
      ob += idx * c->sb[d];
    }
    int64_t sa = nd ? c->sa[nd - 1] : 0, sb = nd ? c->sb[nd - 1] : 0;
    bin_row(c->op, c->out + r * inner, c->a + oa, sa, c->b + ob, sb, inner);
  }
}

static nn_tensor *binary_forward(binop op, nn_tensor *a, nn_tensor *b, const char *name) {
  if (!a || !b) return NULL;
  NN_CHECK_F32(a, name);
  NN_CHECK_F32(b, name);
  int nd;
  int64_t shape[NN_MAX_DIMS];
  if (!nn_broadcast_shape(a, b, &nd, shape)) {
    char s1[96], s2[96];
    NN_FAIL("%s: shapes %s and %s do not broadcast", name, nn_shape_str(a, s1, sizeof s1),
            nn_shape_str(b, s2, sizeof s2));
  }
  nn_tensor *out = nn_empty(NN_F32, nd, shape);
  if (!out) return NULL;
  int64_t n = nn_numel(out);
  if (n == 0) return out;
  bin_ctx c = {.op = op, .nd = nd, .a = nn_f32(a), .b = nn_f32(b), .out = nn_f32(out)};
  for (int i = 0; i < nd; i++) c.shape[i] = shape[i];
  broadcast_strides(a, nd, shape, c.sa);
  broadcast_strides(b, nd, shape, c.sb);
  /* swap so the broadcast scalar is on the right for the fast path */
  if (op == OP_ADD || op == OP_MUL) {
    if (nd && c.sa[nd - 1] == 0 && c.sb[nd - 1] == 1) {
      const float *t = c.a; c.a = c.b; c.b = t;
      for (int i = 0; i < nd; i++) { int64_t s = c.sa[i]; c.sa[i] = c.sb[i]; c.sb[i] = s; }
    }
  }
  /* merge the innermost dims into one long row when both are dense there */
  c.inner = nd ? shape[nd - 1] : 1;
  while (c.nd >= 2) {
    int d = c.nd - 1;
    bool a_ok = c.sa[d - 1] == c.sa[d] * c.shape[d] || (c.sa[d - 1] == 0 && c.sa[d] == 0);
    bool b_ok = c.sb[d - 1] == c.sb[d] * c.shape[d] || (c.sb[d - 1] == 0 && c.sb[d] == 0);
    if (!a_ok || !b_ok) break;
    c.shape[d - 1] *= c.shape[d];
    c.sa[d - 1] = c.sa[d];
    c.sb[d - 1] = c.sb[d];
    c.nd--;
    c.inner = c.shape[c.nd - 1];
  }
  int64_t rows = n / c.inner;
  nn_parallel_for(rows, (1 << 15) / (c.inner + 1) + 1, bin_rows, &c);
  return out;
}

static void add_bw(nn_node *n, nn_tensor *g) {
  nn_accum_grad(n->in[0], g);
  nn_accum_grad(n->in[1], g);
}
static void sub_bw(nn_node *n, nn_tensor *g) {
  nn_accum_grad(n->in[0], g);
  if (nn_needs_grad(n->in[1])) nn_accum_grad(n->in[1], nn_neg(g));
}
static void mul_bw(nn_node *n, nn_tensor *g) {
  if (nn_needs_grad(n->in[0])) nn_accum_grad(n->in[0], nn_mul(g, n->in[1]));
  if (nn_needs_grad(n->in[1])) nn_accum_grad(n->in[1], nn_mul(g, n->in[0]));
}
static void div_bw(nn_node *n, nn_tensor *g) {
  nn_tensor *gb = nn_div(g, n->in[1]);
  if (nn_needs_grad(n->in[0])) nn_accum_grad(n->in[0], gb);
  if (nn_needs_grad(n->in[1])) nn_accum_grad(n->in[1], nn_neg(nn_mul(gb, n->out)));
}

nn_tensor *nn_add(nn_tensor *a, nn_tensor *b) {
  nn_tensor *o = binary_forward(OP_ADD, a, b, "add");
  nn_record(o, "add", add_bw, 2, a, b);
  return o;
}
nn_tensor *nn_sub(nn_tensor *a, nn_tensor *b) {
  nn_tensor *o = binary_forward(OP_SUB, a, b, "sub");
  nn_record(o, "sub", sub_bw, 2, a, b);
  return o;
}
nn_tensor *nn_mul(nn_tensor *a, nn_tensor *b) {
  nn_tensor *o = binary_forward(OP_MUL, a, b, "mul");
  nn_record(o, "mul", mul_bw, 2, a, b);
  return o;
}
nn_tensor *nn_div(nn_tensor *a, nn_tensor *b) {
  nn_tensor *o = binary_forward(OP_DIV, a, b, "div");
  nn_record(o, "div", div_bw, 2, a, b);
  return o;
}

/* ------------------------------------------------------------ unary ops */

typedef enum {
  U_NEG, U_EXP, U_LOG, U_SQRT, U_POW, U_ABS, U_CLAMP, U_RELU, U_LEAKY, U_SIGMOID, U_TANH, U_GELU,
  U_ADDS, U_MULS, U_LOWER_BOUND
} unop;

typedef struct {
  unop op;
  float p0, p1;
  const float *x, *y, *g;
  float *out;
} un_ctx;

#define GELU_K 0.7978845608028654f /* sqrt(2/pi) */

static void un_fwd_range(void *p, int64_t i0, int64_t i1) {
  un_ctx *c = p;
  const float *x = c->x;
  float *o = c->out;
  float p0 = c->p0, p1 = c->p1;
  switch (c->op) {
  case U_NEG: for (int64_t i = i0; i < i1; i++) o[i] = -x[i]; break;
  case U_EXP: for (int64_t i = i0; i < i1; i++) o[i] = expf(x[i]); break;
  case U_LOG: for (int64_t i = i0; i < i1; i++) o[i] = logf(x[i]); break;
  case U_SQRT: for (int64_t i = i0; i < i1; i++) o[i] = sqrtf(x[i]); break;
  case U_POW: for (int64_t i = i0; i < i1; i++) o[i] = powf(x[i], p0); break;
  case U_ABS: for (int64_t i = i0; i < i1; i++) o[i] = fabsf(x[i]); break;
  case U_CLAMP: for (int64_t i = i0; i < i1; i++) o[i] = x[i] < p0 ? p0 : (x[i] > p1 ? p1 : x[i]); break;
  case U_RELU: for (int64_t i = i0; i < i1; i++) o[i] = x[i] > 0 ? x[i] : 0; break;
  case U_LEAKY: for (int64_t i = i0; i < i1; i++) o[i] = x[i] > 0 ? x[i] : p0 * x[i]; break;
  case U_SIGMOID: for (int64_t i = i0; i < i1; i++) o[i] = 1.0f / (1.0f + expf(-x[i])); break;
  case U_TANH: for (int64_t i = i0; i < i1; i++) o[i] = tanhf(x[i]); break;
  case U_GELU:
    for (int64_t i = i0; i < i1; i++) {
      float v = x[i];
      o[i] = 0.5f * v * (1.0f + tanhf(GELU_K * (v + 0.044715f * v * v * v)));
    }
    break;
  case U_ADDS: for (int64_t i = i0; i < i1; i++) o[i] = x[i] + p0; break;
  case U_MULS: for (int64_t i = i0; i < i1; i++) o[i] = x[i] * p0; break;
  case U_LOWER_BOUND: for (int64_t i = i0; i < i1; i++) o[i] = x[i] < p0 ? p0 : x[i]; break;
  }
}

/* out = g * f'(x) (y = f(x) is available for ops whose derivative uses it). */
static void un_bwd_range(void *p, int64_t i0, int64_t i1) {
  un_ctx *c = p;
  const float *x = c->x, *y = c->y, *g = c->g;
  float *o = c->out;
  float p0 = c->p0, p1 = c->p1;
  switch (c->op) {
  case U_NEG: for (int64_t i = i0; i < i1; i++) o[i] = -g[i]; break;
  case U_EXP: for (int64_t i = i0; i < i1; i++) o[i] = g[i] * y[i]; break;
  case U_LOG: for (int64_t i = i0; i < i1; i++) o[i] = g[i] / x[i]; break;
  case U_SQRT: for (int64_t i = i0; i < i1; i++) o[i] = g[i] * 0.5f / y[i]; break;
  case U_POW: for (int64_t i = i0; i < i1; i++) o[i] = g[i] * p0 * powf(x[i], p0 - 1.0f); break;
  case U_ABS: for (int64_t i = i0; i < i1; i++) o[i] = x[i] > 0 ? g[i] : (x[i] < 0 ? -g[i] : 0); break;
  case U_CLAMP: for (int64_t i = i0; i < i1; i++) o[i] = (x[i] >= p0 && x[i] <= p1) ? g[i] : 0; break;
  case U_RELU: for (int64_t i = i0; i < i1; i++) o[i] = x[i] > 0 ? g[i] : 0; break;
  case U_LEAKY: for (int64_t i = i0; i < i1; i++) o[i] = x[i] > 0 ? g[i] : p0 * g[i]; break;
  case U_SIGMOID: for (int64_t i = i0; i < i1; i++) o[i] = g[i] * y[i] * (1.0f - y[i]); break;
  case U_TANH: for (int64_t i = i0; i < i1; i++) o[i] = g[i] * (1.0f - y[i] * y[i]); break;
  case U_GELU:
    for (int64_t i = i0; i < i1; i++) {
      float v = x[i];
      float u = GELU_K * (v + 0.044715f * v * v * v);
      float t = tanhf(u);
      float du = GELU_K * (1.0f + 3.0f * 0.044715f * v * v);
      o[i] = g[i] * (0.5f * (1.0f + t) + 0.5f * v * (1.0f - t * t) * du);
    }
    break;
  case U_ADDS: for (int64_t i = i0; i < i1; i++) o[i] = g[i]; break;
  case U_MULS: for (int64_t i = i0; i < i1; i++) o[i] = g[i] * p0; break;
  /* below the bound, pass only gradients that would move x back up (descent goes along -g) */
  case U_LOWER_BOUND: for (int64_t i = i0; i < i1; i++) o[i] = (x[i] >= p0 || g[i] < 0) ? g[i] : 0; break;
  }
  (void)p1;
}

static void unary_bw(nn_node *n, nn_tensor *g) {
  nn_tensor *x = n->in[0];
  if (!nn_needs_grad(x)) return;
  nn_tensor *gx = nn_empty(NN_F32, x->ndim, x->shape);
  if (!gx) return;
  un_ctx c = {.op = (unop)n->i[0], .p0 = n->f[0], .p1 = n->f[1], .x = n->saved[0] ? nn_f32(n->saved[0]) : NULL,
              .y = nn_f32(n->out), .g = nn_dense_f32(g), .out = nn_f32(gx)};
  nn_parallel_for(nn_numel(gx), 1 << 14, un_bwd_range, &c);
  nn_accum_grad_owned(x, gx);
}

static nn_tensor *unary(unop op, nn_tensor *x, float p0, float p1, const char *name) {
  if (!x) return NULL;
  NN_CHECK_F32(x, name);
  nn_tensor *xd = nn_is_contiguous(x) ? x : nn_contiguous(nn_detach(x));
  if (!xd) return NULL;
  nn_tensor *out = nn_empty(NN_F32, x->ndim, x->shape);
  if (!out) return NULL;
  un_ctx c = {.op = op, .p0 = p0, .p1 = p1, .x = nn_f32(xd), .out = nn_f32(out)};
  nn_parallel_for(nn_numel(out), 1 << 14, un_fwd_range, &c);
  nn_node *n = nn_record(out, name, unary_bw, 1, x);
  if (n) {
    n->i[0] = op;
    n->f[0] = p0;
    n->f[1] = p1;
    n->saved[0] = xd;
  }
  return out;
}

nn_tensor *nn_neg(nn_tensor *a) { return unary(U_NEG, a, 0, 0, "neg"); }
nn_tensor *nn_exp(nn_tensor *a) { return unary(U_EXP, a, 0, 0, "exp"); }
nn_tensor *nn_log(nn_tensor *a) { return unary(U_LOG, a, 0, 0, "log"); }
nn_tensor *nn_sqrt(nn_tensor *a) { return unary(U_SQRT, a, 0, 0, "sqrt"); }
nn_tensor *nn_pow(nn_tensor *a, float e) { return unary(U_POW, a, e, 0, "pow"); }
nn_tensor *nn_abs(nn_tensor *a) { return unary(U_ABS, a, 0, 0, "abs"); }
nn_tensor *nn_clamp(nn_tensor *a, float lo, float hi) {
  if (lo > hi) NN_FAIL("clamp: lo %g > hi %g", lo, hi);
  return unary(U_CLAMP, a, lo, hi, "clamp");
}
nn_tensor *nn_lower_bound(nn_tensor *a, float bound) { return unary(U_LOWER_BOUND, a, bound, 0, "lower_bound"); }
nn_tensor *nn_relu(nn_tensor *a) { return unary(U_RELU, a, 0, 0, "relu"); }
nn_tensor *nn_leaky_relu(nn_tensor *a, float s) { return unary(U_LEAKY, a, s, 0, "leaky_relu"); }
nn_tensor *nn_sigmoid(nn_tensor *a) { return unary(U_SIGMOID, a, 0, 0, "sigmoid"); }
nn_tensor *nn_tanh(nn_tensor *a) { return unary(U_TANH, a, 0, 0, "tanh"); }
nn_tensor *nn_gelu(nn_tensor *a) { return unary(U_GELU, a, 0, 0, "gelu"); }
nn_tensor *nn_add_scalar(nn_tensor *a, float s) { return unary(U_ADDS, a, s, 0, "add_scalar"); }
nn_tensor *nn_mul_scalar(nn_tensor *a, float s) { return unary(U_MULS, a, s, 0, "mul_scalar"); }

/* --------------------------------------------------- softmax / log_softmax */

typedef struct {
  const float *x, *y, *g;
  float *out;
  int64_t outer, len, inner;
  bool log;
} sm_ctx;

/* A contiguous row (softmax over the last axis: attention, CTC, cross-entropy): the max and the sum in
 * 16 lanes and one polynomial exp per element (x - max <= 0), all of which vectorise. */
static void sm_row(const float *x, int64_t len, bool log_sm, float *y) {
  enum { L = 16 };
  float mx[L];
  for (int j = 0; j < L; j++) mx[j] = -INFINITY;
  int64_t k = 0;
  for (; k + L <= len; k += L)
    for (int j = 0; j < L; j++) mx[j] = x[k + j] > mx[j] ? x[k + j] : mx[j];
  float m = -INFINITY;
  for (; k < len; k++) m = x[k] > m ? x[k] : m;
  for (int j = 0; j < L; j++) m = mx[j] > m ? mx[j] : m;
  float acc[L] = {0};
  for (k = 0; k + L <= len; k += L)
    for (int j = 0; j < L; j++) {
      float e = nn_exp_nonpositive(x[k + j] - m);
      acc[j] += e;
      if (!log_sm) y[k + j] = e;
    }
  double sum = 0;
  for (; k < len; k++) {
    float e = nn_exp_nonpositive(x[k] - m);
    sum += e;
    if (!log_sm) y[k] = e;
  }
  for (int j = 0; j < L; j++) sum += acc[j];
  if (log_sm) {
    float lse = m + (float)log(sum);
    for (k = 0; k < len; k++) y[k] = x[k] - lse;
  } else {
    float inv = (float)(1.0 / sum);
    for (k = 0; k < len; k++) y[k] *= inv;
  }
}

static void sm_fwd_range(void *p, int64_t r0, int64_t r1) {
  sm_ctx *c = p;
  if (c->inner == 1) {
    for (int64_t r = r0; r < r1; r++) sm_row(c->x + r * c->len, c->len, c->log, c->out + r * c->len);
    return;
  }
  for (int64_t r = r0; r < r1; r++) {
    int64_t o = r / c->inner, i = r % c->inner;
    const float *x = c->x + o * c->len * c->inner + i;
    float *y = c->out + o * c->len * c->inner + i;
    int64_t s = c->inner;
    float m = -INFINITY;
    for (int64_t k = 0; k < c->len; k++) m = x[k * s] > m ? x[k * s] : m;
    double sum = 0;
    for (int64_t k = 0; k < c->len; k++) sum += expf(x[k * s] - m);
    if (c->log) {
      float lse = m + (float)log(sum);
      for (int64_t k = 0; k < c->len; k++) y[k * s] = x[k * s] - lse;
    } else {
      float inv = (float)(1.0 / sum);
      for (int64_t k = 0; k < c->len; k++) y[k * s] = expf(x[k * s] - m) * inv;
    }
  }
}

/* the same for the backward of a contiguous row: sums in 16 lanes */
static void sm_bwd_row(const float *y, const float *g, int64_t len, bool log_sm, float *gx) {
  enum { L = 16 };
  float acc[L] = {0};
  int64_t k = 0;
  for (; k + L <= len; k += L)
    for (int j = 0; j < L; j++) acc[j] += log_sm ? g[k + j] : g[k + j] * y[k + j];
  double dot = 0;
  for (; k < len; k++) dot += log_sm ? g[k] : g[k] * y[k];
  for (int j = 0; j < L; j++) dot += acc[j];
  float d = (float)dot;
  if (log_sm) /* y = log p <= 0 */
    for (k = 0; k < len; k++) gx[k] = g[k] - nn_exp_nonpositive(y[k]) * d;
  else
    for (k = 0; k < len; k++) gx[k] = y[k] * (g[k] - d);
}

static void sm_bwd_range(void *p, int64_t r0, int64_t r1) {
  sm_ctx *c = p;
  if (c->inner == 1) {
    for (int64_t r = r0; r < r1; r++)
      sm_bwd_row(c->y + r * c->len, c->g + r * c->len, c->len, c->log, c->out + r * c->len);
    return;
  }
  for (int64_t r = r0; r < r1; r++) {
    int64_t o = r / c->inner, i = r % c->inner;
    int64_t base = o * c->len * c->inner + i, s = c->inner;
    const float *y = c->y + base, *g = c->g + base;
    float *gx = c->out + base;
    double dot = 0;
    if (c->log) {
      for (int64_t k = 0; k < c->len; k++) dot += g[k * s];
      for (int64_t k = 0; k < c->len; k++) gx[k * s] = g[k * s] - expf(y[k * s]) * (float)dot;
    } else {
      for (int64_t k = 0; k < c->len; k++) dot += g[k * s] * y[k * s];
      for (int64_t k = 0; k < c->len; k++) gx[k * s] = y[k * s] * (g[k * s] - (float)dot);
    }
  }
}

static void softmax_bw(nn_node *n, nn_tensor *g) {
  nn_tensor *x = n->in[0];
  if (!nn_needs_grad(x)) return;
  nn_tensor *gx = nn_empty(NN_F32, x->ndim, x->shape);
  if (!gx) return;
  sm_ctx c = {.y = nn_f32(n->out), .g = nn_dense_f32(g), .out = nn_f32(gx), .outer = n->i[0],
              .len = n->i[1], .inner = n->i[2], .log = n->i[3]};
  nn_parallel_for(c.outer * c.inner, 256, sm_bwd_range, &c);
  nn_accum_grad(x, gx);
}

static nn_tensor *softmax_impl(nn_tensor *x, int axis, bool log, const char *name) {
  if (!x) return NULL;
  NN_CHECK_F32(x, name);
  int ax = nn_norm_axis(axis, x->ndim);
  if (ax < 0 || x->ndim == 0) NN_FAIL("%s: axis %d out of range for %d dims", name, axis, x->ndim);
  const float *xd = nn_dense_f32(x);
  nn_tensor *out = nn_empty(NN_F32, x->ndim, x->shape);
  if (!out || !xd) return NULL;
  sm_ctx c = {.x = xd, .out = nn_f32(out), .outer = 1, .len = x->shape[ax], .inner = 1, .log = log};
  for (int i = 0; i < ax; i++) c.outer *= x->shape[i];
  for (int i = ax + 1; i < x->ndim; i++) c.inner *= x->shape[i];
  nn_parallel_for(c.outer * c.inner, 256, sm_fwd_range, &c);
  nn_node *n = nn_record(out, name, softmax_bw, 1, x);
  if (n) {
    n->i[0] = c.outer;
    n->i[1] = c.len;
    n->i[2] = c.inner;
    n->i[3] = log;
  }
  return out;
}

nn_tensor *nn_softmax(nn_tensor *a, int axis) { return softmax_impl(a, axis, false, "softmax"); }
nn_tensor *nn_log_softmax(nn_tensor *a, int axis) { return softmax_impl(a, axis, true, "log_softmax"); }

/* ------------------------------------------------------------ masked fill */

static void masked_fill_bw(nn_node *n, nn_tensor *g) {
  if (!nn_needs_grad(n->in[0])) return;
  /* gradient passes where the mask kept the value: g * (mask != 0) */
  nn_accum_grad(n->in[0], nn_mul(g, n->saved[0]));
}

nn_tensor *nn_masked_fill(nn_tensor *a, nn_tensor *mask, float value) {
  if (!a || !mask) return NULL;
  NN_CHECK_F32(a, "masked_fill");
  int nd;
  int64_t shape[NN_MAX_DIMS], ms[NN_MAX_DIMS];
  bool ok = nn_broadcast_shape(a, mask, &nd, shape) && nd == a->ndim;
  for (int d = 0; ok && d < nd; d++) ok = shape[d] == a->shape[d];
  if (!ok)
    NN_FAIL("masked_fill: mask does not broadcast to the input's shape");
  /* the mask as dense floats once (any dtype, any strides), then read by broadcast strides */
  nn_tensor *md = nn_empty(NN_F32, mask->ndim, mask->shape);
  const float *x = nn_dense_f32(a);
  nn_tensor *out = nn_empty(NN_F32, a->ndim, a->shape);
  nn_tensor *keep = nn_empty(NN_F32, a->ndim, a->shape);
  if (!md || !x || !out || !keep) return NULL;
  nn_to_float_array(mask, nn_f32(md));
  broadcast_strides(md, nd, shape, ms);
  int64_t n = nn_numel(out);
  for (int64_t i = 0; i < n; i++) {
    int64_t rem = i, moff = 0;
    for (int d = nd - 1; d >= 0; d--) {
      moff += (rem % shape[d]) * ms[d];
      rem /= shape[d];
    }
    bool k = nn_f32(md)[moff] != 0.0f;
    nn_f32(keep)[i] = k ? 1.0f : 0.0f;
    nn_f32(out)[i] = k ? x[i] : value;
  }
  nn_node *node = nn_record(out, "masked_fill", masked_fill_bw, 1, a);
  if (node) node->saved[0] = keep;
  return out;
}
