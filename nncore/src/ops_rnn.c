/* Fused LSTM / GRU cells (the per-step pointwise part) and attention. */
#include "internal.h"

static inline float sigm(float x) { return 1.0f / (1.0f + expf(-x)); }

static bool cell_inputs_ok(nn_tensor *a, int64_t N, int64_t W, const char *what, const char *op) {
  if (a->ndim != 2 || a->shape[0] != N || a->shape[1] != W || a->dtype != NN_F32) {
    char s[96];
    nn_set_error("%s: %s is %s, expected [%lld, %lld]", op, what, nn_shape_str(a, s, sizeof s),
                 (long long)N, (long long)W);
    return false;
  }
  return true;
}

static const float *mask_of(nn_tensor *mask, int64_t N) {
  if (!mask) return NULL;
  if (mask->ndim != 1 || mask->shape[0] != N) return NULL;
  nn_tensor *m = nn_empty(NN_F32, 1, &N);
  if (!m) return NULL;
  for (int64_t i = 0; i < N; i++) nn_f32(m)[i] = nn_index_at(mask, i) != 0 ? 1.0f : 0.0f;
  return nn_f32(m);
}

/* ------------------------------------------------------------------- LSTM */

static void lstm_bw(nn_node *n, nn_tensor *gout) {
  nn_tensor *gates = n->in[0], *cprev = n->in[1], *hprev = n->in[2];
  int64_t N = n->i[0], H = n->i[1];
  const float *gt = nn_f32(n->saved[0]), *cp = nn_f32(n->saved[1]);
  const float *m = n->extra;
  const float *go = nn_dense_f32(gout);
  nn_tensor *dg = nn_empty(NN_F32, 2, (int64_t[]){N, 4 * H});
  nn_tensor *dc = nn_empty(NN_F32, 2, (int64_t[]){N, H});
  nn_tensor *dh = nn_empty(NN_F32, 2, (int64_t[]){N, H});
  if (!dg || !dc || !dh) return;
  for (int64_t b = 0; b < N; b++) {
    float mb = m ? m[b] : 1.0f;
    const float *g = gt + b * 4 * H;
    for (int64_t j = 0; j < H; j++) {
      float dh_out = go[b * 2 * H + j], dc_out = go[b * 2 * H + H + j];
      float i = sigm(g[j]), f = sigm(g[H + j]), gg = tanhf(g[2 * H + j]), o = sigm(g[3 * H + j]);
      float c = f * cp[b * H + j] + i * gg, tc = tanhf(c);
      float dhn = mb * dh_out, dcn = mb * dc_out + dhn * o * (1 - tc * tc);
      float *d = nn_f32(dg) + b * 4 * H;
      d[j] = dcn * gg * i * (1 - i);
      d[H + j] = dcn * cp[b * H + j] * f * (1 - f);
      d[2 * H + j] = dcn * i * (1 - gg * gg);
      d[3 * H + j] = dhn * tc * o * (1 - o);
      nn_f32(dc)[b * H + j] = dcn * f + (1 - mb) * dc_out;
      nn_f32(dh)[b * H + j] = (1 - mb) * dh_out;
    }
  }
  nn_accum_grad(gates, dg);
  nn_accum_grad(cprev, dc);
  nn_accum_grad(hprev, dh);
}

nn_tensor *nn_lstm_cell(nn_tensor *gates, nn_tensor *c_prev, nn_tensor *h_prev, nn_tensor *mask) {
  if (!gates || !c_prev || !h_prev) return NULL;
  if (gates->ndim != 2 || gates->shape[1] % 4) NN_FAIL("lstm_cell: gates must be [N, 4H]");
  int64_t N = gates->shape[0], H = gates->shape[1] / 4;
  if (!cell_inputs_ok(c_prev, N, H, "c_prev", "lstm_cell") || !cell_inputs_ok(h_prev, N, H, "h_prev", "lstm_cell"))
    return NULL;
  if (mask && (mask->ndim != 1 || mask->shape[0] != N)) NN_FAIL("lstm_cell: mask must be [%lld]", (long long)N);
  const float *m = mask_of(mask, N);
  nn_tensor *gc = nn_contiguous(nn_detach(gates)), *cc = nn_contiguous(nn_detach(c_prev));
  const float *hp = nn_dense_f32(h_prev);
  nn_tensor *out = nn_empty(NN_F32, 2, (int64_t[]){N, 2 * H});
  if (!gc || !cc || !hp || !out || (mask && !m)) return NULL;
  const float *gt = nn_f32(gc), *cp = nn_f32(cc);
  for (int64_t b = 0; b < N; b++) {
    float mb = m ? m[b] : 1.0f;
    const float *g = gt + b * 4 * H;
    float *ho = nn_f32(out) + b * 2 * H, *co = ho + H;
    for (int64_t j = 0; j < H; j++) {
      float i = sigm(g[j]), f = sigm(g[H + j]), gg = tanhf(g[2 * H + j]), o = sigm(g[3 * H + j]);
      float c = f * cp[b * H + j] + i * gg;
      float h = o * tanhf(c);
      co[j] = mb * c + (1 - mb) * cp[b * H + j];
      ho[j] = mb * h + (1 - mb) * hp[b * H + j];
    }
  }
  nn_node *n = nn_record(out, "lstm_cell", lstm_bw, 3, gates, c_prev, h_prev);
  if (n) {
    n->i[0] = N;
    n->i[1] = H;
    n->saved[0] = gc;
    n->saved[1] = cc;
    n->extra = (void *)m;
  }
  return out;
}

/* -------------------------------------------------------------------- GRU */

static void gru_bw(nn_node *n, nn_tensor *gout) {
  int64_t N = n->i[0], H = n->i[1];
  const float *xg = nn_f32(n->saved[0]), *hg = nn_f32(n->saved[1]), *hp = nn_f32(n->saved[2]);
  const float *m = n->extra;
  const float *go = nn_dense_f32(gout);
  nn_tensor *dx = nn_empty(NN_F32, 2, (int64_t[]){N, 3 * H});
  nn_tensor *dhg = nn_empty(NN_F32, 2, (int64_t[]){N, 3 * H});
  nn_tensor *dh = nn_empty(NN_F32, 2, (int64_t[]){N, H});
  if (!dx || !dhg || !dh) return;
  for (int64_t b = 0; b < N; b++) {
    float mb = m ? m[b] : 1.0f;
    const float *x = xg + b * 3 * H, *h = hg + b * 3 * H;
    float *ddx = nn_f32(dx) + b * 3 * H, *ddh = nn_f32(dhg) + b * 3 * H;
    for (int64_t j = 0; j < H; j++) {
      float r = sigm(x[j] + h[j]), z = sigm(x[H + j] + h[H + j]);
      float nn_ = tanhf(x[2 * H + j] + r * h[2 * H + j]);
      float g = go[b * H + j], gm = mb * g;
      float dn = gm * (1 - z), dz = gm * (hp[b * H + j] - nn_);
      float dnp = dn * (1 - nn_ * nn_);
      float dr = dnp * h[2 * H + j];
      float drp = dr * r * (1 - r), dzp = dz * z * (1 - z);
      ddx[j] = drp;
      ddx[H + j] = dzp;
      ddx[2 * H + j] = dnp;
      ddh[j] = drp;
      ddh[H + j] = dzp;
      ddh[2 * H + j] = dnp * r;
      nn_f32(dh)[b * H + j] = gm * z + (1 - mb) * g;
    }
  }
  nn_accum_grad(n->in[0], dx);
  nn_accum_grad(n->in[1], dhg);
  nn_accum_grad(n->in[2], dh);
}

nn_tensor *nn_gru_cell(nn_tensor *xg, nn_tensor *hg, nn_tensor *h_prev, nn_tensor *mask) {
  if (!xg || !hg || !h_prev) return NULL;
  if (xg->ndim != 2 || xg->shape[1] % 3) NN_FAIL("gru_cell: xg must be [N, 3H]");
  int64_t N = xg->shape[0], H = xg->shape[1] / 3;
  if (!cell_inputs_ok(hg, N, 3 * H, "hg", "gru_cell") || !cell_inputs_ok(h_prev, N, H, "h_prev", "gru_cell"))
    return NULL;
  if (mask && (mask->ndim != 1 || mask->shape[0] != N)) NN_FAIL("gru_cell: mask must be [%lld]", (long long)N);
  const float *m = mask_of(mask, N);
  nn_tensor *xc = nn_contiguous(nn_detach(xg)), *hc = nn_contiguous(nn_detach(hg));
  nn_tensor *pc = nn_contiguous(nn_detach(h_prev));
  nn_tensor *out = nn_empty(NN_F32, 2, (int64_t[]){N, H});
  if (!xc || !hc || !pc || !out || (mask && !m)) return NULL;
  for (int64_t b = 0; b < N; b++) {
    float mb = m ? m[b] : 1.0f;
    const float *x = nn_f32(xc) + b * 3 * H, *h = nn_f32(hc) + b * 3 * H, *hp = nn_f32(pc) + b * H;
    for (int64_t j = 0; j < H; j++) {
      float r = sigm(x[j] + h[j]), z = sigm(x[H + j] + h[H + j]);
      float nn_ = tanhf(x[2 * H + j] + r * h[2 * H + j]);
      float hn = (1 - z) * nn_ + z * hp[j];
      nn_f32(out)[b * H + j] = mb * hn + (1 - mb) * hp[j];
    }
  }
  nn_node *n = nn_record(out, "gru_cell", gru_bw, 3, xg, hg, h_prev);
  if (n) {
    n->i[0] = N;
    n->i[1] = H;
    n->saved[0] = xc;
    n->saved[1] = hc;
    n->saved[2] = pc;
    n->extra = (void *)m;
  }
  return out;
}

/* --------------------------------------------------------------- attention */

nn_tensor *nn_scaled_dot_product_attention(nn_tensor *q, nn_tensor *k, nn_tensor *v, nn_tensor *mask) {
  if (!q || !k || !v) return NULL;
  if (q->ndim < 2 || k->ndim < 2 || v->ndim < 2) NN_FAIL("attention: q, k, v need at least 2 dims");
  int64_t D = q->shape[q->ndim - 1];
  if (k->shape[k->ndim - 1] != D) NN_FAIL("attention: q and k have different feature sizes");
  if (k->shape[k->ndim - 2] != v->shape[v->ndim - 2]) NN_FAIL("attention: k and v have different lengths");
  nn_tensor *scores = nn_mul_scalar(nn_matmul(q, nn_transpose(k, -1, -2)), 1.0f / sqrtf((float)D));
  if (mask) scores = nn_masked_fill(scores, mask, -1e9f);
  return nn_matmul(nn_softmax(scores, -1), v);
}
