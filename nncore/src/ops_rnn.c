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

/* --------------------------------------------------- whole-sequence LSTM/GRU */
/* The recurrence of one layer and direction over all T steps as one op. The
 * forward runs one small GEMM per step (h @ W_hh^T); the backward runs BPTT
 * with one GEMM per step for dh and a single large GEMM for dW_hh over all
 * steps, instead of T separate weight-gradient products. */

typedef struct {
  bool gru;
  int64_t T, N, H, G;
  float *act;   /* [T, N, G] LSTM: i,f,g,o after activation; GRU: r,z,n and hn (pre-gate) */
  float *cnew;  /* LSTM: [T, N, H] cell before the mask */
  float *hs;    /* [T+1, N, H] state after each step (hs[0] = 0) */
  float *cs;    /* LSTM: [T+1, N, H] */
  float *hn;    /* GRU: [T, N, H] W_hn h + b_hn */
  const float *mask; /* [T, N] or NULL */
} seq_state;

/* One batch row's gate gradients for a step (restrict pointers: vectorised). dh holds the carry from
 * step t + 1 on entry and the carry to step t - 1 (before the W_hh product) on return. */
static void gru_gates_bw(int64_t H, const float *restrict a, const float *restrict dout, const float *restrict hp,
                         const float *restrict hnv, float m, float *restrict dg, float *restrict dhg,
                         float *restrict dh) {
  for (int64_t j = 0; j < H; j++) {
    float dcarry = dh[j], dhn = m * (dout[j] + dcarry);
    float r = a[j], z = a[H + j], n = a[2 * H + j];
    float dn = dhn * (1 - z), dz = dhn * (hp[j] - n);
    float dnp = dn * (1 - n * n), drp = dnp * hnv[j] * r * (1 - r), dzp = dz * z * (1 - z);
    dg[j] = drp;
    dg[H + j] = dzp;
    dg[2 * H + j] = dnp;
    dhg[j] = drp;
    dhg[H + j] = dzp;
    dhg[2 * H + j] = dnp * r;
    dh[j] = dhn * z + (1 - m) * dcarry;
  }
}

static void lstm_gates_bw(int64_t H, const float *restrict a, const float *restrict dout, const float *restrict cnew,
                          const float *restrict cp, float m, float *restrict dg, float *restrict dc,
                          float *restrict dh) {
  for (int64_t j = 0; j < H; j++) {
    float dcarry = dh[j], dhn = m * (dout[j] + dcarry);
    float i = a[j], f = a[H + j], g = a[2 * H + j], o = a[3 * H + j];
    float tc = nn_tanh_fast(cnew[j]);
    float dcn = m * dc[j] + dhn * o * (1 - tc * tc);
    dg[j] = dcn * g * i * (1 - i);
    dg[H + j] = dcn * cp[j] * f * (1 - f);
    dg[2 * H + j] = dcn * i * (1 - g * g);
    dg[3 * H + j] = dhn * tc * o * (1 - o);
    dc[j] = (1 - m) * dc[j] + dcn * f;
    dh[j] = (1 - m) * dcarry;
  }
}

static void seq_bw(nn_node *node, nn_tensor *gout) {
  seq_state *s = node->extra;
  nn_tensor *xg = node->in[0], *w = node->in[1], *b = node->in[2];
  int64_t T = s->T, N = s->N, H = s->H, G = s->G;
  const float *go = nn_dense_f32(gout), *wd = nn_f32(node->saved[0]);
  nn_tensor *dG = nn_empty(NN_F32, 3, (int64_t[]){T, N, G});   /* gradient of the x-side gates */
  nn_tensor *dHG = s->gru ? nn_empty(NN_F32, 3, (int64_t[]){T, N, G}) : dG; /* of the h-side gates */
  float *dh = nn_arena_alloc(nn_arena_current(), (size_t)(N * H) * 4);
  float *dc = nn_arena_alloc(nn_arena_current(), (size_t)(N * H) * 4);
  if (!dG || !dHG || !dh || !dc || !go) return;
  memset(dh, 0, (size_t)(N * H) * 4);
  memset(dc, 0, (size_t)(N * H) * 4);
  for (int64_t t = T - 1; t >= 0; t--) {
    const float *a = s->act + t * N * G, *hp = s->hs + t * N * H, *dout = go + t * N * H;
    float *dg = nn_f32(dG) + t * N * G, *dhg = nn_f32(dHG) + t * N * G;
    for (int64_t bi = 0; bi < N; bi++) {
      float m = s->mask ? s->mask[t * N + bi] : 1.0f;
      const float *ar = a + bi * G, *dor = dout + bi * H, *hpr = hp + bi * H;
      float *dgr = dg + bi * G, *dhgr = dhg + bi * G, *dhr = dh + bi * H, *dcr = dc + bi * H;
      if (s->gru)
        gru_gates_bw(H, ar, dor, hpr, s->hn + (t * N + bi) * H, m, dgr, dhgr, dhr);
      else
        lstm_gates_bw(H, ar, dor, s->cnew + t * N * H + bi * H, s->cs + t * N * H + bi * H, m, dgr, dcr, dhr);
    }
    /* dh_{t-1} += dHG_t @ W_hh */
    nn_sgemm(false, false, N, H, G, 1.0f, dhg, G, wd, H, 1.0f, dh, H);
  }
  if (nn_needs_grad(xg)) nn_accum_grad(xg, dG);
  if (nn_needs_grad(w)) {
    /* dW_hh = sum_t dHG_t^T @ h_{t-1}: one GEMM over all steps */
    nn_tensor *dw = nn_empty(NN_F32, 2, (int64_t[]){G, H});
    if (!dw) return;
    nn_sgemm(true, false, G, H, T * N, 1.0f, nn_f32(dHG), G, s->hs, H, 0.0f, nn_f32(dw), H);
    nn_accum_grad(w, dw);
  }
  if (b && nn_needs_grad(b)) nn_accum_grad(b, nn_sum(nn_reshape(dHG, 2, (int64_t[]){T * N, G}), 0, false));
}

/* One batch row's gates for a step; restrict pointers and straight-line math, so GCC vectorises
 * over j. xr: x-side pre-activations, hr: h-side, hp: h_{t-1}; writes the activations a, the new state
 * (hn, masked) and the output o. */
static void gru_gates(int64_t H, const float *restrict xr, const float *restrict hr, const float *restrict bd,
                      const float *restrict hp, float m, float *restrict a, float *restrict hnv_out,
                      float *restrict hn, float *restrict o) {
  for (int64_t j = 0; j < H; j++) {
    float hnv = hr[2 * H + j] + bd[2 * H + j];
    float r = nn_sigmoid_fast(xr[j] + hr[j] + bd[j]), z = nn_sigmoid_fast(xr[H + j] + hr[H + j] + bd[H + j]);
    float n = nn_tanh_fast(xr[2 * H + j] + r * hnv);
    a[j] = r;
    a[H + j] = z;
    a[2 * H + j] = n;
    hnv_out[j] = hnv;
    float hnew = (1 - z) * n + z * hp[j];
    hn[j] = m * hnew + (1 - m) * hp[j];
    o[j] = m * hnew;
  }
}

static void lstm_gates(int64_t H, const float *restrict xr, const float *restrict hr, const float *restrict cp,
                       const float *restrict hp, float m, float *restrict a, float *restrict cnew,
                       float *restrict cs, float *restrict hn, float *restrict o) {
  for (int64_t j = 0; j < H; j++) {
    float i = nn_sigmoid_fast(xr[j] + hr[j]), f = nn_sigmoid_fast(xr[H + j] + hr[H + j]);
    float g = nn_tanh_fast(xr[2 * H + j] + hr[2 * H + j]), og = nn_sigmoid_fast(xr[3 * H + j] + hr[3 * H + j]);
    a[j] = i;
    a[H + j] = f;
    a[2 * H + j] = g;
    a[3 * H + j] = og;
    float c = f * cp[j] + i * g;
    cnew[j] = c;
    cs[j] = m * c + (1 - m) * cp[j];
    float hnew = og * nn_tanh_fast(c);
    hn[j] = m * hnew + (1 - m) * hp[j];
    o[j] = m * hnew;
  }
}

nn_tensor *nn_rnn_sequence(nn_tensor *xg, nn_tensor *w_hh, nn_tensor *b_hh, nn_tensor *mask, bool gru) {
  if (!xg || !w_hh) return NULL;
  NN_CHECK_F32(xg, "rnn_sequence");
  if (xg->ndim != 3 || w_hh->ndim != 2) NN_FAIL("rnn_sequence: need xg[T, N, G] and w_hh[G, H]");
  int64_t T = xg->shape[0], N = xg->shape[1], G = xg->shape[2], H = w_hh->shape[1];
  if (G != (gru ? 3 : 4) * H || w_hh->shape[0] != G)
    NN_FAIL("rnn_sequence: gates %lld do not match w_hh [%lld, %lld] for %s", (long long)G,
            (long long)w_hh->shape[0], (long long)H, gru ? "GRU" : "LSTM");
  if (gru && (!b_hh || b_hh->ndim != 1 || b_hh->shape[0] != G)) NN_FAIL("rnn_sequence: GRU needs b_hh[%lld]", (long long)G);
  if (mask && (mask->ndim != 2 || mask->shape[0] != T || mask->shape[1] != N))
    NN_FAIL("rnn_sequence: mask must be [%lld, %lld]", (long long)T, (long long)N);
  nn_arena *ar = nn_arena_current();
  nn_tensor *xc = nn_contiguous(nn_detach(xg)), *wc = nn_contiguous(nn_detach(w_hh));
  const float *bd = gru ? nn_dense_f32(b_hh) : NULL;
  const float *md = mask ? nn_dense_f32(mask) : NULL;
  seq_state *s = nn_arena_alloc(ar, sizeof *s);
  nn_tensor *out = nn_empty(NN_F32, 3, (int64_t[]){T, N, H});
  if (!xc || !wc || !s || !out || (mask && !md) || (gru && !bd)) return NULL;
  *s = (seq_state){.gru = gru, .T = T, .N = N, .H = H, .G = G, .mask = md};
  s->act = nn_arena_alloc(ar, (size_t)(T * N * G) * 4);
  s->hs = nn_arena_alloc(ar, (size_t)((T + 1) * N * H) * 4);
  float *hgate = nn_arena_alloc(ar, (size_t)(N * G) * 4);
  if (gru) s->hn = nn_arena_alloc(ar, (size_t)(T * N * H) * 4);
  else {
    s->cnew = nn_arena_alloc(ar, (size_t)(T * N * H) * 4);
    s->cs = nn_arena_alloc(ar, (size_t)((T + 1) * N * H) * 4);
  }
  if (!s->act || !s->hs || !hgate || (gru ? !s->hn : (!s->cnew || !s->cs))) return NULL;
  memset(s->hs, 0, (size_t)(N * H) * 4);
  if (!gru) memset(s->cs, 0, (size_t)(N * H) * 4);
  const float *w = nn_f32(wc);
  for (int64_t t = 0; t < T; t++) {
    const float *x = nn_f32(xc) + t * N * G, *hp = s->hs + t * N * H;
    float *hn = s->hs + (t + 1) * N * H, *a = s->act + t * N * G, *o = nn_f32(out) + t * N * H;
    /* h-side gates: h_{t-1} @ W_hh^T */
    nn_sgemm(false, true, N, G, H, 1.0f, hp, H, w, H, 0.0f, hgate, G);
    /* the gates, one row of the batch at a time */
    for (int64_t bi = 0; bi < N; bi++) {
      float m = md ? md[t * N + bi] : 1.0f;
      if (gru)
        gru_gates(H, x + bi * G, hgate + bi * G, bd, hp + bi * H, m, a + bi * G, s->hn + t * N * H + bi * H,
                  hn + bi * H, o + bi * H);
      else
        lstm_gates(H, x + bi * G, hgate + bi * G, s->cs + t * N * H + bi * H, hp + bi * H, m, a + bi * G,
                   s->cnew + t * N * H + bi * H, s->cs + (t + 1) * N * H + bi * H, hn + bi * H, o + bi * H);
    }
  }
  nn_node *node = nn_record(out, gru ? "gru_sequence" : "lstm_sequence", seq_bw, 3, xg, w_hh, gru ? b_hh : NULL);
  if (node) {
    node->extra = s;
    node->saved[0] = wc;
  }
  return out;
}
