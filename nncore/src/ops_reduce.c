/* Reductions over one axis, and matmul through cblas_sgemm. */
#include "internal.h"

typedef struct {
  const float *x;
  float *out;
  int64_t *arg;
  int64_t outer, len, inner;
  int kind; /* 0 sum, 1 max */
} red_ctx;

/* Each output is summed in a fixed order, whatever the split. */
static void red_outer(void *p, int64_t o0, int64_t o1) {
  red_ctx *c = p;
  for (int64_t o = o0; o < o1; o++) {
    const float *x = c->x + o * c->len * c->inner;
    float *y = c->out + o * c->inner;
    if (c->kind == 0) {
      if (c->inner == 1) {
        double s = 0;
        for (int64_t k = 0; k < c->len; k++) s += x[k];
        y[0] = (float)s;
      } else {
        for (int64_t i = 0; i < c->inner; i++) y[i] = 0;
        for (int64_t k = 0; k < c->len; k++)
          for (int64_t i = 0; i < c->inner; i++) y[i] += x[k * c->inner + i];
      }
    } else {
      int64_t *a = c->arg + o * c->inner;
      for (int64_t i = 0; i < c->inner; i++) {
        y[i] = x[i];
        a[i] = 0;
      }
      for (int64_t k = 1; k < c->len; k++)
        for (int64_t i = 0; i < c->inner; i++)
          if (x[k * c->inner + i] > y[i]) {
            y[i] = x[k * c->inner + i];
            a[i] = k;
          }
    }
  }
}

/* For few outer rows: split the inner range instead. */
static void red_inner(void *p, int64_t i0, int64_t i1) {
  red_ctx *c = p;
  for (int64_t o = 0; o < c->outer; o++) {
    const float *x = c->x + o * c->len * c->inner;
    float *y = c->out + o * c->inner;
    for (int64_t i = i0; i < i1; i++) y[i] = 0;
    for (int64_t k = 0; k < c->len; k++)
      for (int64_t i = i0; i < i1; i++) y[i] += x[k * c->inner + i];
  }
}

static nn_tensor *reduce_impl(nn_tensor *a, int axis, bool keepdim, int kind, nn_tensor **argout,
                              const char *name) {
  NN_CHECK_F32(a, name);
  int ax = nn_norm_axis(axis, a->ndim);
  if (ax < 0 || a->ndim == 0) NN_FAIL("%s: axis %d out of range for %d dims", name, axis, a->ndim);
  if (kind == 1 && a->shape[ax] == 0) NN_FAIL("%s: empty axis", name);
  int64_t sh[NN_MAX_DIMS];
  int nd = 0;
  for (int d = 0; d < a->ndim; d++) {
    if (d == ax) {
      if (keepdim) sh[nd++] = 1;
    } else {
      sh[nd++] = a->shape[d];
    }
  }
  red_ctx c = {.x = nn_dense_f32(a), .outer = 1, .len = a->shape[ax], .inner = 1, .kind = kind};
  for (int d = 0; d < ax; d++) c.outer *= a->shape[d];
  for (int d = ax + 1; d < a->ndim; d++) c.inner *= a->shape[d];
  nn_tensor *out = nn_empty(NN_F32, nd, sh);
  if (!out || !c.x) return NULL;
  c.out = nn_f32(out);
  if (kind == 1) {
    *argout = nn_empty(NN_I64, nd, sh);
    if (!*argout) return NULL;
    c.arg = nn_data(*argout);
  }
  int64_t work = c.len * c.inner;
  if (kind == 0 && c.outer < nn_get_num_threads() && c.inner >= 1024)
    nn_parallel_for(c.inner, 512, red_inner, &c);
  else
    nn_parallel_for(c.outer, (1 << 14) / (work + 1) + 1, red_outer, &c);
  return out;
}

static void sum_bw(nn_node *n, nn_tensor *g) {
  nn_tensor *x = n->in[0];
  if (!nn_needs_grad(x)) return;
  int64_t sh[NN_MAX_DIMS];
  for (int d = 0; d < x->ndim; d++) sh[d] = x->shape[d];
  sh[n->i[0]] = 1;
  nn_tensor *gk = nn_reshape(g, x->ndim, sh);
  if (n->f[0] != 1.0f) gk = nn_mul_scalar(gk, n->f[0]);
  nn_accum_grad(x, nn_expand(gk, x->ndim, x->shape));
}

nn_tensor *nn_sum(nn_tensor *a, int axis, bool keepdim) {
  if (!a) return NULL;
  nn_tensor *out = reduce_impl(a, axis, keepdim, 0, NULL, "sum");
  nn_node *n = nn_record(out, "sum", sum_bw, 1, a);
  if (n) {
    n->i[0] = nn_norm_axis(axis, a->ndim);
    n->f[0] = 1.0f;
  }
  return out;
}

nn_tensor *nn_mean(nn_tensor *a, int axis, bool keepdim) {
  if (!a) return NULL;
  nn_tensor *out = reduce_impl(a, axis, keepdim, 0, NULL, "mean");
  if (!out) return NULL;
  int ax = nn_norm_axis(axis, a->ndim);
  float inv = a->shape[ax] ? 1.0f / (float)a->shape[ax] : NAN;
  int64_t m = nn_numel(out);
  for (int64_t i = 0; i < m; i++) nn_f32(out)[i] *= inv;
  nn_node *n = nn_record(out, "mean", sum_bw, 1, a);
  if (n) {
    n->i[0] = ax;
    n->f[0] = inv;
  }
  return out;
}

static void max_bw(nn_node *n, nn_tensor *g) {
  nn_tensor *x = n->in[0];
  if (!nn_needs_grad(x)) return;
  nn_tensor *gx = nn_zeros(NN_F32, x->ndim, x->shape);
  if (!gx) return;
  const int64_t *arg = nn_data(n->saved[0]);
  const float *gd = nn_dense_f32(g);
  int64_t outer = n->i[1], len = n->i[2], inner = n->i[3];
  for (int64_t o = 0; o < outer; o++)
    for (int64_t i = 0; i < inner; i++)
      nn_f32(gx)[(o * len + arg[o * inner + i]) * inner + i] += gd[o * inner + i];
  nn_accum_grad(x, gx);
}

nn_tensor *nn_max(nn_tensor *a, int axis, bool keepdim) {
  if (!a) return NULL;
  nn_tensor *arg = NULL;
  nn_tensor *out = reduce_impl(a, axis, keepdim, 1, &arg, "max");
  if (!out) return NULL;
  nn_node *n = nn_record(out, "max", max_bw, 1, a);
  if (n) {
    int ax = nn_norm_axis(axis, a->ndim);
    n->saved[0] = arg;
    n->i[1] = 1;
    n->i[2] = a->shape[ax];
    n->i[3] = 1;
    for (int d = 0; d < ax; d++) n->i[1] *= a->shape[d];
    for (int d = ax + 1; d < a->ndim; d++) n->i[3] *= a->shape[d];
  }
  return out;
}

nn_tensor *nn_argmax(nn_tensor *a, int axis, bool keepdim) {
  if (!a) return NULL;
  nn_tensor *arg = NULL;
  nn_no_grad_begin();
  nn_tensor *out = reduce_impl(a, axis, keepdim, 1, &arg, "argmax");
  nn_no_grad_end();
  return out ? arg : NULL;
}

nn_tensor *nn_sum_all(nn_tensor *a) {
  if (!a) return NULL;
  int64_t n = nn_numel(a);
  nn_tensor *flat = nn_reshape(a, 1, &n);
  return nn_reshape(nn_sum(flat, 0, false), 0, NULL);
}

nn_tensor *nn_mean_all(nn_tensor *a) {
  if (!a) return NULL;
  int64_t n = nn_numel(a);
  return nn_mul_scalar(nn_sum_all(a), n ? 1.0f / (float)n : NAN);
}

nn_tensor *nn_sum_to(nn_tensor *a, int ndim, const int64_t *shape) {
  if (!a) return NULL;
  if (ndim > a->ndim) NN_FAIL("sum_to: target has more dims than the input");
  nn_tensor *r = a;
  while (r && r->ndim > ndim) r = nn_sum(r, 0, false);
  for (int d = 0; r && d < ndim; d++) {
    if (shape[d] == r->shape[d]) continue;
    if (shape[d] != 1) NN_FAIL("sum_to: dim %d is %lld, cannot reduce to %lld", d, (long long)r->shape[d], (long long)shape[d]);
    r = nn_sum(r, d, true);
  }
  return r;
}

/* ------------------------------------------------------------------ matmul */

/* How an operand's last two dims map onto BLAS: transposed flag and lead dim. */
static bool blas_layout(const nn_tensor *t, bool *trans, int64_t *ld) {
  int nd = t->ndim;
  int64_t rows = t->shape[nd - 2], cols = t->shape[nd - 1];
  int64_t sr = t->strides[nd - 2], sc = t->strides[nd - 1];
  if ((sc == 1 || cols == 1) && sr >= cols && sr >= 1) {
    *trans = false;
    *ld = sr;
    return true;
  }
  if ((sr == 1 || rows == 1) && sc >= rows && sc >= 1) {
    *trans = true;
    *ld = sc;
    return true;
  }
  return false;
}

static void matmul_bw(nn_node *n, nn_tensor *g) {
  nn_tensor *a = n->in[0], *b = n->in[1];
  /* dA = g @ B^T, dB = A^T @ g (summed over broadcast batch dims by accum) */
  if (nn_needs_grad(a)) nn_accum_grad(a, nn_matmul(g, nn_transpose(b, -1, -2)));
  if (nn_needs_grad(b)) nn_accum_grad(b, nn_matmul(nn_transpose(a, -1, -2), g));
}

nn_tensor *nn_matmul(nn_tensor *a, nn_tensor *b) {
  if (!a || !b) return NULL;
  NN_CHECK_F32(a, "matmul");
  NN_CHECK_F32(b, "matmul");
  if (a->ndim < 1 || b->ndim < 1) NN_FAIL("matmul: scalars are not matrices");
  if (a->ndim == 1 || b->ndim == 1) {
    /* promote vectors to matrices, multiply, and drop the added dim */
    bool va = a->ndim == 1, vb = b->ndim == 1;
    int64_t sa[NN_MAX_DIMS], sb[NN_MAX_DIMS];
    int nda = a->ndim + va, ndb = b->ndim + vb;
    if (va) { sa[0] = 1; sa[1] = a->shape[0]; } else for (int d = 0; d < a->ndim; d++) sa[d] = a->shape[d];
    if (vb) { sb[0] = b->shape[0]; sb[1] = 1; } else for (int d = 0; d < b->ndim; d++) sb[d] = b->shape[d];
    nn_tensor *r = nn_matmul(nn_reshape(a, nda, sa), nn_reshape(b, ndb, sb));
    if (!r) return NULL;
    int64_t so[NN_MAX_DIMS];
    int nd = 0;
    for (int d = 0; d < r->ndim; d++) {
      if (va && d == r->ndim - 2) continue;
      if (vb && d == r->ndim - 1) continue;
      so[nd++] = r->shape[d];
    }
    return nn_reshape(r, nd, so);
  }
  int64_t M = a->shape[a->ndim - 2], K = a->shape[a->ndim - 1];
  int64_t K2 = b->shape[b->ndim - 2], N = b->shape[b->ndim - 1];
  if (K != K2) {
    char s1[96], s2[96];
    NN_FAIL("matmul: inner dims differ: %s @ %s", nn_shape_str(a, s1, sizeof s1), nn_shape_str(b, s2, sizeof s2));
  }
  /* broadcast batch dims */
  nn_tensor ba = {.ndim = a->ndim - 2}, bb = {.ndim = b->ndim - 2};
  for (int d = 0; d < ba.ndim; d++) ba.shape[d] = a->shape[d];
  for (int d = 0; d < bb.ndim; d++) bb.shape[d] = b->shape[d];
  int bnd;
  int64_t bsh[NN_MAX_DIMS + 2];
  if (!nn_broadcast_shape(&ba, &bb, &bnd, bsh)) NN_FAIL("matmul: batch dims do not broadcast");
  if (bnd + 2 > NN_MAX_DIMS) NN_FAIL("matmul: too many dims");
  bool ta = false, tb = false;
  int64_t lda = 0, ldb = 0;
  nn_tensor *ad = a, *bd = b;
  if (!blas_layout(a, &ta, &lda)) {
    ad = nn_empty(NN_F32, a->ndim, a->shape);
    if (!ad) return NULL;
    nn_copy_(ad, a);
    blas_layout(ad, &ta, &lda);
  }
  if (!blas_layout(b, &tb, &ldb)) {
    bd = nn_empty(NN_F32, b->ndim, b->shape);
    if (!bd) return NULL;
    nn_copy_(bd, b);
    blas_layout(bd, &tb, &ldb);
  }
  int64_t osh[NN_MAX_DIMS];
  for (int d = 0; d < bnd; d++) osh[d] = bsh[d];
  osh[bnd] = M;
  osh[bnd + 1] = N;
  nn_tensor *out = nn_empty(NN_F32, bnd + 2, osh);
  if (!out) return NULL;
  int64_t batch = 1;
  for (int d = 0; d < bnd; d++) batch *= bsh[d];
  for (int64_t bi = 0; bi < batch; bi++) {
    int64_t rem = bi, oa = 0, ob = 0;
    for (int d = bnd - 1; d >= 0; d--) {
      int64_t idx = rem % bsh[d];
      rem /= bsh[d];
      int da = ad->ndim - 2 - bnd + d, db = bd->ndim - 2 - bnd + d;
      if (da >= 0 && ad->shape[da] != 1) oa += idx * ad->strides[da];
      if (db >= 0 && bd->shape[db] != 1) ob += idx * bd->strides[db];
    }
    nn_sgemm(ta, tb, M, N, K, 1.0f, nn_f32(ad) + oa, lda, nn_f32(bd) + ob, ldb, 0.0f,
             nn_f32(out) + bi * M * N, N);
  }
  nn_record(out, "matmul", matmul_bw, 2, a, b);
  return out;
}

/* ------------------------------------------------------------ lane sums */

enum { LANES = 16 };

double nn_lane_sum(const float *x, int64_t n) {
  float acc[LANES] = {0};
  int64_t i = 0;
  for (; i + LANES <= n; i += LANES)
    for (int j = 0; j < LANES; j++) acc[j] += x[i + j];
  double s = 0;
  for (; i < n; i++) s += x[i];
  for (int j = 0; j < LANES; j++) s += acc[j];
  return s;
}

double nn_lane_sum_sq(const float *x, int64_t n) {
  float acc[LANES] = {0};
  int64_t i = 0;
  for (; i + LANES <= n; i += LANES)
    for (int j = 0; j < LANES; j++) acc[j] += x[i + j] * x[i + j];
  double s = 0;
  for (; i < n; i++) s += (double)x[i] * x[i];
  for (int j = 0; j < LANES; j++) s += acc[j];
  return s;
}
