/* Shape ops: views where the layout allows, copies otherwise. */
#include "internal.h"

/* ------------------------------------------------------------ contiguous */

static void identity_bw(nn_node *n, nn_tensor *g) { nn_accum_grad(n->in[0], g); }

nn_tensor *nn_contiguous(nn_tensor *a) {
  if (!a) return NULL;
  if (nn_is_contiguous(a)) return a;
  nn_tensor *out = nn_empty(a->dtype, a->ndim, a->shape);
  if (!out) return NULL;
  nn_copy_(out, a);
  nn_record(out, "contiguous", identity_bw, 1, a);
  return out;
}

/* ---------------------------------------------------------------- reshape */

static void reshape_bw(nn_node *n, nn_tensor *g) {
  nn_tensor *x = n->in[0];
  if (nn_needs_grad(x)) nn_accum_grad(x, nn_reshape(g, x->ndim, x->shape));
}

nn_tensor *nn_reshape(nn_tensor *a, int ndim, const int64_t *shape) {
  if (!a) return NULL;
  if (ndim < 0 || ndim > NN_MAX_DIMS) NN_FAIL("reshape: %d dims", ndim);
  int64_t sh[NN_MAX_DIMS], known = 1;
  int infer = -1;
  for (int i = 0; i < ndim; i++) {
    sh[i] = shape[i];
    if (shape[i] == -1) {
      if (infer >= 0) NN_FAIL("reshape: more than one -1");
      infer = i;
    } else if (shape[i] < 0) {
      NN_FAIL("reshape: negative size %lld", (long long)shape[i]);
    } else {
      known *= shape[i];
    }
  }
  int64_t n = nn_numel(a);
  if (infer >= 0) {
    if (known == 0 || n % known) NN_FAIL("reshape: cannot infer -1 for %lld elements", (long long)n);
    sh[infer] = n / known;
    known *= sh[infer];
  }
  if (known != n) {
    char s[96];
    NN_FAIL("reshape: %s has %lld elements, target has %lld", nn_shape_str(a, s, sizeof s),
            (long long)n, (long long)known);
  }
  nn_tensor *src = a;
  if (!nn_is_contiguous(a)) {
    src = nn_empty(a->dtype, a->ndim, a->shape);
    if (!src) return NULL;
    nn_copy_(src, a);
  }
  nn_tensor tmp = {.ndim = ndim};
  for (int i = 0; i < ndim; i++) tmp.shape[i] = sh[i];
  nn_set_contiguous_strides(&tmp);
  nn_tensor *out = nn_view_of(src, ndim, sh, tmp.strides, src->offset);
  nn_record(out, "reshape", reshape_bw, 1, a);
  return out;
}

/* ---------------------------------------------------------------- permute */

static void permute_bw(nn_node *n, nn_tensor *g) {
  int inv[NN_MAX_DIMS];
  for (int i = 0; i < n->out->ndim; i++) inv[n->i[i]] = i;
  nn_accum_grad(n->in[0], nn_permute(g, inv));
}

nn_tensor *nn_permute(nn_tensor *a, const int *perm) {
  if (!a) return NULL;
  int64_t sh[NN_MAX_DIMS], st[NN_MAX_DIMS];
  bool seen[NN_MAX_DIMS] = {0};
  for (int i = 0; i < a->ndim; i++) {
    int p = perm[i];
    if (p < 0 || p >= a->ndim || seen[p]) NN_FAIL("permute: invalid permutation for %d dims", a->ndim);
    seen[p] = true;
    sh[i] = a->shape[p];
    st[i] = a->strides[p];
  }
  nn_tensor *out = nn_view_of(a, a->ndim, sh, st, a->offset);
  nn_node *n = nn_record(out, "permute", permute_bw, 1, a);
  if (n)
    for (int i = 0; i < a->ndim; i++) n->i[i] = perm[i];
  return out;
}

nn_tensor *nn_transpose(nn_tensor *a, int d0, int d1) {
  if (!a) return NULL;
  int x = nn_norm_axis(d0, a->ndim), y = nn_norm_axis(d1, a->ndim);
  if (x < 0 || y < 0) NN_FAIL("transpose: dims %d,%d out of range for %d dims", d0, d1, a->ndim);
  int perm[NN_MAX_DIMS];
  for (int i = 0; i < a->ndim; i++) perm[i] = i;
  perm[x] = y;
  perm[y] = x;
  return nn_permute(a, perm);
}

/* ------------------------------------------------------------------ slice */

static void slice_bw(nn_node *n, nn_tensor *g) {
  nn_tensor *x = n->in[0];
  if (!nn_needs_grad(x)) return;
  nn_tensor *gx = nn_zeros(NN_F32, x->ndim, x->shape);
  if (!gx) return;
  nn_tensor *v = nn_slice(gx, (int)n->i[0], n->i[1], n->i[2], n->i[3]);
  if (!v) return;
  nn_copy_(v, g);
  nn_accum_grad(x, gx);
}

nn_tensor *nn_slice(nn_tensor *a, int axis, int64_t start, int64_t end, int64_t step) {
  if (!a) return NULL;
  int ax = nn_norm_axis(axis, a->ndim);
  if (ax < 0 || a->ndim == 0) NN_FAIL("slice: axis %d out of range for %d dims", axis, a->ndim);
  if (step < 1) NN_FAIL("slice: step must be >= 1 (got %lld)", (long long)step);
  int64_t len = a->shape[ax];
  if (start < 0) start += len;
  if (end < 0) end += len;
  if (start < 0) start = 0;
  if (end > len) end = len;
  if (start > len) start = len;
  if (end < start) end = start;
  int64_t sh[NN_MAX_DIMS], st[NN_MAX_DIMS];
  for (int i = 0; i < a->ndim; i++) {
    sh[i] = a->shape[i];
    st[i] = a->strides[i];
  }
  sh[ax] = (end - start + step - 1) / step;
  st[ax] = a->strides[ax] * step;
  nn_tensor *out = nn_view_of(a, a->ndim, sh, st, a->offset + start * a->strides[ax]);
  nn_node *n = nn_record(out, "slice", slice_bw, 1, a);
  if (n) {
    n->i[0] = ax;
    n->i[1] = start;
    n->i[2] = end;
    n->i[3] = step;
  }
  return out;
}

bool nn_split(nn_tensor *a, int n, int axis, nn_tensor **out) {
  if (!a) return false;
  int ax = nn_norm_axis(axis, a->ndim);
  if (ax < 0 || n < 1 || a->shape[ax] % n) {
    nn_set_error("split: cannot split axis %d into %d equal parts", axis, n);
    return false;
  }
  int64_t part = a->shape[ax] / n;
  for (int i = 0; i < n; i++) {
    out[i] = nn_slice(a, ax, i * part, (i + 1) * part, 1);
    if (!out[i]) return false;
  }
  return true;
}

/* ----------------------------------------------------------------- expand */

nn_tensor *nn_expand(nn_tensor *a, int ndim, const int64_t *shape) {
  if (!a) return NULL;
  if (ndim < a->ndim || ndim > NN_MAX_DIMS) NN_FAIL("expand: cannot expand %d dims to %d", a->ndim, ndim);
  int64_t st[NN_MAX_DIMS];
  for (int i = 0; i < ndim; i++) {
    int ia = a->ndim - ndim + i;
    if (ia < 0) {
      st[i] = 0;
    } else if (a->shape[ia] == shape[i]) {
      st[i] = a->strides[ia];
    } else if (a->shape[ia] == 1) {
      st[i] = 0;
    } else {
      NN_FAIL("expand: dim %d has size %lld, cannot expand to %lld", ia, (long long)a->shape[ia],
              (long long)shape[i]);
    }
  }
  nn_tensor *out = nn_view_of(a, ndim, shape, st, a->offset);
  /* accum_grad sums the broadcast dims back */
  nn_record(out, "expand", identity_bw, 1, a);
  return out;
}

/* ----------------------------------------------------------------- concat */

static void concat_bw(nn_node *n, nn_tensor *g) {
  int ax = (int)n->i[0];
  int64_t off = 0;
  nn_tensor **ts = n->extra;
  for (int i = 0; i < n->i[1]; i++) {
    int64_t len = ts[i]->shape[ax];
    if (nn_needs_grad(ts[i])) nn_accum_grad(ts[i], nn_slice(g, ax, off, off + len, 1));
    off += len;
  }
}

nn_tensor *nn_concat(nn_tensor **ts, int n, int axis) {
  if (n < 1) NN_FAIL("concat: no tensors");
  for (int i = 0; i < n; i++)
    if (!ts[i]) return NULL;
  int nd = ts[0]->ndim;
  int ax = nn_norm_axis(axis, nd);
  if (ax < 0 || nd == 0) NN_FAIL("concat: axis %d out of range", axis);
  int64_t sh[NN_MAX_DIMS];
  for (int d = 0; d < nd; d++) sh[d] = ts[0]->shape[d];
  sh[ax] = 0;
  bool need = false;
  for (int i = 0; i < n; i++) {
    if (ts[i]->ndim != nd || ts[i]->dtype != ts[0]->dtype) NN_FAIL("concat: tensor %d has another rank or dtype", i);
    for (int d = 0; d < nd; d++)
      if (d != ax && ts[i]->shape[d] != ts[0]->shape[d]) {
        char s1[96], s2[96];
        NN_FAIL("concat: tensor %d %s does not match %s outside axis %d", i,
                nn_shape_str(ts[i], s1, sizeof s1), nn_shape_str(ts[0], s2, sizeof s2), ax);
      }
    sh[ax] += ts[i]->shape[ax];
    need |= nn_needs_grad(ts[i]);
  }
  nn_tensor *out = nn_empty(ts[0]->dtype, nd, sh);
  if (!out) return NULL;
  int64_t off = 0;
  nn_no_grad_begin();
  for (int i = 0; i < n; i++) {
    nn_tensor *v = nn_slice(out, ax, off, off + ts[i]->shape[ax], 1);
    if (v) nn_copy_(v, ts[i]);
    off += ts[i]->shape[ax];
  }
  nn_no_grad_end();
  if (need && nn_grad_enabled()) {
    /* the node keeps the whole input list; one input is enough to mark it */
    nn_tensor **keep = nn_arena_alloc(nn_arena_current(), (size_t)n * sizeof *keep);
    if (!keep) return NULL;
    memcpy(keep, ts, (size_t)n * sizeof *keep);
    nn_tensor *first = NULL;
    for (int i = 0; i < n && !first; i++)
      if (nn_needs_grad(ts[i])) first = ts[i];
    nn_node *node = nn_record(out, "concat", concat_bw, 1, first);
    if (node) {
      node->extra = keep;
      node->i[0] = ax;
      node->i[1] = n;
    }
  }
  return out;
}

/* -------------------------------------------------------------------- pad */

static void pad_bw(nn_node *n, nn_tensor *g) {
  nn_tensor *x = n->in[0];
  if (!nn_needs_grad(x)) return;
  nn_tensor *v = g;
  for (int d = 0; d < x->ndim && v; d++) v = nn_slice(v, d, n->i[d], n->i[d] + x->shape[d], 1);
  nn_accum_grad(x, v);
}

nn_tensor *nn_pad(nn_tensor *a, const int64_t *pads, float value) {
  if (!a) return NULL;
  int64_t sh[NN_MAX_DIMS];
  for (int d = 0; d < a->ndim; d++) {
    if (pads[2 * d] < 0 || pads[2 * d + 1] < 0) NN_FAIL("pad: negative padding in dim %d", d);
    sh[d] = a->shape[d] + pads[2 * d] + pads[2 * d + 1];
  }
  nn_tensor *out = nn_empty(a->dtype, a->ndim, sh);
  if (!out) return NULL;
  nn_fill_(out, value);
  nn_no_grad_begin();
  nn_tensor *v = out;
  for (int d = 0; d < a->ndim && v; d++) v = nn_slice(v, d, pads[2 * d], pads[2 * d] + a->shape[d], 1);
  nn_no_grad_end();
  if (!v) return NULL;
  nn_copy_(v, a);
  nn_node *n = nn_record(out, "pad", pad_bw, 1, a);
  if (n)
    for (int d = 0; d < a->ndim; d++) n->i[d] = pads[2 * d];
  return out;
}

/* ----------------------------------------------------------------- gather */

/* Walks all positions of `index` and maps each to an element of a. */
static bool gather_offsets(nn_tensor *a, int ax, nn_tensor *index, int64_t *offs) {
  int64_t n = nn_numel(index);
  for (int64_t i = 0; i < n; i++) {
    int64_t rem = i, off = 0;
    int64_t idx = nn_index_at(index, i);
    if (idx < 0 || idx >= a->shape[ax]) {
      nn_set_error("gather: index %lld out of range [0, %lld) on axis %d", (long long)idx,
                   (long long)a->shape[ax], ax);
      return false;
    }
    for (int d = index->ndim - 1; d >= 0; d--) {
      int64_t c = rem % index->shape[d];
      rem /= index->shape[d];
      off += (d == ax ? idx : c) * a->strides[d];
    }
    offs[i] = off;
  }
  return true;
}

static void scatter_bw(nn_node *n, nn_tensor *g) {
  nn_tensor *x = n->in[0];
  if (!nn_needs_grad(x)) return;
  nn_tensor *gx = nn_zeros(NN_F32, x->ndim, x->shape);
  if (!gx) return;
  const int64_t *offs = n->extra;
  const float *gd = nn_dense_f32(g);
  int64_t cnt = n->i[0];
  for (int64_t i = 0; i < cnt; i++) nn_f32(gx)[offs[i]] += gd[i];
  nn_accum_grad(x, gx);
}

/* Output element i = a[offs[i]] where offs index a's contiguous layout. */
static nn_tensor *gather_by_offsets(nn_tensor *a, int ndim, const int64_t *shape, int64_t *offs,
                                    const char *name) {
  nn_tensor *ad = nn_is_contiguous(a) ? a : NULL;
  if (!ad) {
    ad = nn_empty(a->dtype, a->ndim, a->shape);
    if (!ad) return NULL;
    nn_copy_(ad, a);
  }
  nn_tensor *out = nn_empty(a->dtype, ndim, shape);
  if (!out) return NULL;
  int64_t n = nn_numel(out);
  size_t es = nn_dtype_size(a->dtype);
  const char *src = nn_data(ad);
  char *dst = nn_data(out);
  for (int64_t i = 0; i < n; i++) memcpy(dst + i * es, src + offs[i] * es, es);
  nn_node *node = nn_record(out, name, scatter_bw, 1, a);
  if (node) {
    node->extra = offs;
    node->i[0] = n;
  }
  return out;
}

nn_tensor *nn_gather(nn_tensor *a, int axis, nn_tensor *index) {
  if (!a || !index) return NULL;
  int ax = nn_norm_axis(axis, a->ndim);
  if (ax < 0 || index->ndim != a->ndim) NN_FAIL("gather: index must have the input's rank and a valid axis");
  if (index->dtype == NN_F32) NN_FAIL("gather: index must be an integer tensor");
  for (int d = 0; d < a->ndim; d++)
    if (d != ax && index->shape[d] > a->shape[d]) NN_FAIL("gather: index dim %d larger than input", d);
  int64_t n = nn_numel(index);
  int64_t *offs = nn_arena_alloc(nn_arena_current(), (size_t)(n ? n : 1) * sizeof *offs);
  nn_tensor tmp = *a; /* offsets in a contiguous copy of a */
  nn_set_contiguous_strides(&tmp);
  if (!offs || !gather_offsets(&tmp, ax, index, offs)) return NULL;
  return gather_by_offsets(a, index->ndim, index->shape, offs, "gather");
}

nn_tensor *nn_index_select(nn_tensor *a, int axis, nn_tensor *index) {
  if (!a || !index) return NULL;
  int ax = nn_norm_axis(axis, a->ndim);
  if (ax < 0 || index->ndim != 1 || index->dtype == NN_F32)
    NN_FAIL("index_select: need a valid axis and a 1-D integer index");
  int64_t sh[NN_MAX_DIMS];
  for (int d = 0; d < a->ndim; d++) sh[d] = a->shape[d];
  sh[ax] = index->shape[0];
  nn_tensor tmp = {.ndim = a->ndim};
  for (int d = 0; d < a->ndim; d++) tmp.shape[d] = sh[d];
  nn_set_contiguous_strides(&tmp);
  nn_tensor src = *a;
  nn_set_contiguous_strides(&src);
  int64_t n = nn_numel(&tmp);
  int64_t *offs = nn_arena_alloc(nn_arena_current(), (size_t)(n ? n : 1) * sizeof *offs);
  if (!offs) return NULL;
  for (int64_t i = 0; i < index->shape[0]; i++) {
    int64_t v = nn_index_at(index, i);
    if (v < 0 || v >= a->shape[ax])
      NN_FAIL("index_select: index %lld out of range [0, %lld)", (long long)v, (long long)a->shape[ax]);
  }
  for (int64_t i = 0; i < n; i++) {
    int64_t rem = i, off = 0;
    for (int d = a->ndim - 1; d >= 0; d--) {
      int64_t c = rem % sh[d];
      rem /= sh[d];
      off += (d == ax ? nn_index_at(index, c) : c) * src.strides[d];
    }
    offs[i] = off;
  }
  return gather_by_offsets(a, a->ndim, sh, offs, "index_select");
}

nn_tensor *nn_embedding(nn_tensor *weight, nn_tensor *index) {
  if (!weight || !index) return NULL;
  if (weight->ndim != 2) NN_FAIL("embedding: weight must be [V, D]");
  if (index->dtype == NN_F32) NN_FAIL("embedding: index must be an integer tensor");
  if (index->ndim + 1 > NN_MAX_DIMS) NN_FAIL("embedding: index has too many dims");
  int64_t flat = nn_numel(index);
  nn_tensor *idx1 = nn_empty(NN_I64, 1, &flat);
  if (!idx1) return NULL;
  for (int64_t i = 0; i < flat; i++) ((int64_t *)nn_data(idx1))[i] = nn_index_at(index, i);
  nn_tensor *rows = nn_index_select(weight, 0, idx1);
  int64_t sh[NN_MAX_DIMS];
  for (int d = 0; d < index->ndim; d++) sh[d] = index->shape[d];
  sh[index->ndim] = weight->shape[1];
  return nn_reshape(rows, index->ndim + 1, sh);
}

nn_tensor *nn_reverse_padded(nn_tensor *x, nn_tensor *lengths) {
  if (!x || !lengths) return NULL;
  if (x->ndim < 2 || lengths->ndim != 1 || lengths->shape[0] != x->shape[1])
    NN_FAIL("reverse_padded: need x[T, N, ...] and lengths[N]");
  int64_t T = x->shape[0], N = x->shape[1], inner = 1;
  for (int d = 2; d < x->ndim; d++) inner *= x->shape[d];
  int64_t n = nn_numel(x);
  int64_t *offs = nn_arena_alloc(nn_arena_current(), (size_t)(n ? n : 1) * sizeof *offs);
  if (!offs) return NULL;
  for (int64_t b = 0; b < N; b++) {
    int64_t L = nn_index_at(lengths, b);
    if (L < 0 || L > T) NN_FAIL("reverse_padded: length %lld outside [0, %lld]", (long long)L, (long long)T);
  }
  for (int64_t t = 0; t < T; t++)
    for (int64_t b = 0; b < N; b++) {
      int64_t L = nn_index_at(lengths, b);
      int64_t src_t = t < L ? L - 1 - t : t;
      for (int64_t k = 0; k < inner; k++) offs[(t * N + b) * inner + k] = (src_t * N + b) * inner + k;
    }
  return gather_by_offsets(x, x->ndim, x->shape, offs, "reverse_padded");
}

nn_tensor *nn_to_dtype(nn_tensor *a, nn_dtype dt) {
  if (!a) return NULL;
  nn_tensor *out = nn_empty(dt, a->ndim, a->shape);
  if (out) nn_copy_(out, a);
  return out;
}
