/* Losses: MSE, cross-entropy, BCE-with-logits, smooth L1 and CTC. */
#include "internal.h"

#include <stdlib.h>

nn_tensor *nn_mse_loss(nn_tensor *pred, nn_tensor *target) {
  if (!pred || !target) return NULL;
  if (!nn_same_shape(pred, target)) NN_FAIL("mse_loss: prediction and target shapes differ");
  nn_tensor *d = nn_sub(pred, target);
  return nn_mean_all(nn_mul(d, d));
}

/* --------------------------------------------------------- cross-entropy */

static void ce_bw(nn_node *n, nn_tensor *g) {
  nn_tensor *x = n->in[0];
  if (!nn_needs_grad(x)) return;
  int64_t M = n->i[0], C = n->i[1], ignore = n->i[2];
  float eps = n->f[0], scale = n->f[1] * nn_item(g);
  const float *lp = nn_f32(n->saved[0]);
  nn_tensor *tg = n->saved[1];
  nn_tensor *gx = nn_empty(NN_F32, 2, (int64_t[]){M, C});
  if (!gx) return;
  for (int64_t r = 0; r < M; r++) {
    int64_t t = nn_index_at(tg, r);
    float *d = nn_f32(gx) + r * C;
    if (t == ignore) {
      memset(d, 0, (size_t)C * 4);
      continue;
    }
    for (int64_t c = 0; c < C; c++) {
      float q = eps / (float)C + (c == t ? 1.0f - eps : 0.0f);
      d[c] = (expf(lp[r * C + c]) - q) * scale;
    }
  }
  nn_accum_grad(x, gx);
}

static nn_tensor *ce_rows(nn_tensor *logits, nn_tensor *target, int64_t ignore, float eps) {
  int64_t M = logits->shape[0], C = logits->shape[1];
  nn_tensor *lp;
  nn_no_grad_begin();
  lp = nn_log_softmax(nn_detach(logits), 1);
  nn_no_grad_end();
  if (!lp) return NULL;
  double total = 0;
  int64_t count = 0;
  for (int64_t r = 0; r < M; r++) {
    int64_t t = nn_index_at(target, r);
    if (t == ignore) continue;
    if (t < 0 || t >= C) NN_FAIL("cross_entropy: target %lld out of range [0, %lld)", (long long)t, (long long)C);
    const float *row = nn_f32(lp) + r * C;
    double smooth = 0;
    for (int64_t c = 0; c < C; c++) smooth += row[c];
    total += -(1.0 - eps) * row[t] - eps / (double)C * smooth;
    count++;
  }
  nn_tensor *out = nn_scalar(count ? (float)(total / (double)count) : NAN);
  nn_node *n = nn_record(out, "cross_entropy", ce_bw, 1, logits);
  if (n) {
    n->i[0] = M;
    n->i[1] = C;
    n->i[2] = ignore;
    n->f[0] = eps;
    n->f[1] = count ? 1.0f / (float)count : 0.0f;
    n->saved[0] = lp;
    n->saved[1] = target;
  }
  return out;
}

nn_tensor *nn_cross_entropy(nn_tensor *logits, nn_tensor *target, int64_t ignore_index, float label_smoothing) {
  if (!logits || !target) return NULL;
  NN_CHECK_F32(logits, "cross_entropy");
  if (target->dtype == NN_F32) NN_FAIL("cross_entropy: target must be an integer tensor");
  if (!(label_smoothing >= 0.0f && label_smoothing <= 1.0f)) NN_FAIL("cross_entropy: label_smoothing must be in [0, 1]");
  if (logits->ndim < 2 || target->ndim != logits->ndim - 1 || target->shape[0] != logits->shape[0])
    NN_FAIL("cross_entropy: need logits[N, C, ...] and target[N, ...]");
  for (int d = 2; d < logits->ndim; d++)
    if (target->shape[d - 1] != logits->shape[d]) NN_FAIL("cross_entropy: target spatial dims differ from logits");
  nn_tensor *rows = logits;
  if (logits->ndim > 2) {
    /* move classes last: [N, C, d...] -> [N*d..., C] */
    int perm[NN_MAX_DIMS], nd = logits->ndim;
    perm[0] = 0;
    for (int d = 2; d < nd; d++) perm[d - 1] = d;
    perm[nd - 1] = 1;
    rows = nn_reshape(nn_permute(logits, perm), 2, (int64_t[]){-1, logits->shape[1]});
  }
  if (!rows) return NULL;
  /* target in row order */
  int64_t M = nn_numel(target);
  nn_tensor *tflat = nn_empty(NN_I64, 1, &M);
  if (!tflat) return NULL;
  for (int64_t i = 0; i < M; i++) ((int64_t *)nn_data(tflat))[i] = nn_index_at(target, i);
  return ce_rows(rows, tflat, ignore_index, label_smoothing);
}

/* ---------------------------------------------------- BCE with logits */

static void bce_bw(nn_node *n, nn_tensor *g) {
  nn_tensor *x = n->in[0], *t = n->in[1];
  float s = nn_item(g) / (float)nn_numel(x);
  const float *xd = nn_f32(n->saved[0]), *td = nn_f32(n->saved[1]);
  int64_t cnt = nn_numel(x);
  if (nn_needs_grad(x)) {
    nn_tensor *gx = nn_empty(NN_F32, x->ndim, x->shape);
    if (!gx) return;
    for (int64_t i = 0; i < cnt; i++) nn_f32(gx)[i] = (1.0f / (1.0f + expf(-xd[i])) - td[i]) * s;
    nn_accum_grad(x, gx);
  }
  if (nn_needs_grad(t)) {
    nn_tensor *gt = nn_empty(NN_F32, t->ndim, t->shape);
    if (!gt) return;
    for (int64_t i = 0; i < cnt; i++) nn_f32(gt)[i] = -xd[i] * s;
    nn_accum_grad(t, gt);
  }
}

nn_tensor *nn_bce_with_logits(nn_tensor *logits, nn_tensor *target) {
  if (!logits || !target) return NULL;
  NN_CHECK_F32(logits, "bce_with_logits");
  NN_CHECK_F32(target, "bce_with_logits");
  if (!nn_same_shape(logits, target)) NN_FAIL("bce_with_logits: logits and target shapes differ");
  nn_tensor *xc = nn_contiguous(nn_detach(logits)), *tc = nn_contiguous(nn_detach(target));
  if (!xc || !tc) return NULL;
  int64_t n = nn_numel(xc);
  double s = 0;
  for (int64_t i = 0; i < n; i++) {
    float x = nn_f32(xc)[i], t = nn_f32(tc)[i];
    s += (x > 0 ? x : 0) - x * t + log1pf(expf(-fabsf(x)));
  }
  nn_tensor *out = nn_scalar(n ? (float)(s / (double)n) : NAN);
  nn_node *node = nn_record(out, "bce_with_logits", bce_bw, 2, logits, target);
  if (node) {
    node->saved[0] = xc;
    node->saved[1] = tc;
  }
  return out;
}

/* ------------------------------------------------------------ smooth L1 */

static void sl1_bw(nn_node *n, nn_tensor *g) {
  nn_tensor *p = n->in[0], *t = n->in[1];
  const float *d = nn_f32(n->saved[0]);
  int64_t cnt = nn_numel(p);
  float beta = n->f[0], s = nn_item(g) / (float)cnt;
  nn_tensor *gp = nn_empty(NN_F32, p->ndim, p->shape);
  if (!gp) return;
  for (int64_t i = 0; i < cnt; i++) {
    float v = d[i];
    nn_f32(gp)[i] = s * (fabsf(v) < beta ? v / beta : (v > 0 ? 1.0f : -1.0f));
  }
  nn_accum_grad(p, gp);
  if (nn_needs_grad(t)) nn_accum_grad(t, nn_neg(gp));
}

nn_tensor *nn_smooth_l1_loss(nn_tensor *pred, nn_tensor *target, float beta) {
  if (!pred || !target) return NULL;
  if (!nn_same_shape(pred, target)) NN_FAIL("smooth_l1_loss: prediction and target shapes differ");
  if (!(beta > 0.0f)) NN_FAIL("smooth_l1_loss: beta must be > 0");
  nn_tensor *d;
  nn_no_grad_begin();
  d = nn_sub(nn_detach(pred), nn_detach(target));
  nn_no_grad_end();
  if (!d) return NULL;
  int64_t cnt = nn_numel(d);
  double s = 0;
  for (int64_t i = 0; i < cnt; i++) {
    float v = fabsf(nn_f32(d)[i]);
    s += v < beta ? 0.5 * v * v / beta : v - 0.5 * beta;
  }
  nn_tensor *out = nn_scalar(cnt ? (float)(s / (double)cnt) : NAN);
  nn_node *n = nn_record(out, "smooth_l1_loss", sl1_bw, 2, pred, target);
  if (n) {
    n->saved[0] = d;
    n->f[0] = beta;
  }
  return out;
}

/* ------------------------------------------------------------------- CTC */

static inline double lse2(double a, double b) {
  if (a == -INFINITY) return b;
  if (b == -INFINITY) return a;
  return a > b ? a + log1p(exp(b - a)) : b + log1p(exp(a - b));
}

typedef struct {
  const float *lp;      /* [T, N, C] */
  const int64_t *labels; /* [N, S], resolved once from the targets tensor */
  const int64_t *il, *tl;
  int64_t T, N, C, S;
  int blank;
  bool want_grad, zero_inf, mean;
  double *nll;          /* [N] */
  float *grad;          /* [T, N, C] or NULL */
  double *work;         /* per sample: alpha, beta (T*L each) + C */
} ctc_ctx;

static void ctc_samples(void *p, int64_t n0, int64_t n1) {
  ctc_ctx *c = p;
  int64_t Lmax = 2 * c->S + 1;
  for (int64_t n = n0; n < n1; n++) {
    int64_t Tn = c->il[n], Sn = c->tl[n], L = 2 * Sn + 1;
    double *la = c->work + n * (2 * c->T * Lmax + c->C), *lb = la + c->T * Lmax, *lcab = lb + c->T * Lmax;
#define LP(t, k) ((double)c->lp[((t) * c->N + n) * c->C + (k)])
#define LAB(s) ((s) % 2 == 0 ? (int64_t)c->blank : c->labels[n * c->S + (s) / 2])
    for (int64_t i = 0; i < c->T * Lmax; i++) la[i] = lb[i] = -INFINITY;
    double logp = -INFINITY;
    if (Tn > 0) {
      la[0] = LP(0, c->blank);
      if (L > 1) la[1] = LP(0, LAB(1));
      for (int64_t t = 1; t < Tn; t++)
        for (int64_t s = 0; s < L; s++) {
          double v = la[(t - 1) * Lmax + s];
          if (s > 0) v = lse2(v, la[(t - 1) * Lmax + s - 1]);
          if (s > 1 && s % 2 == 1 && LAB(s) != LAB(s - 2)) v = lse2(v, la[(t - 1) * Lmax + s - 2]);
          la[t * Lmax + s] = v == -INFINITY ? v : v + LP(t, LAB(s));
        }
      logp = la[(Tn - 1) * Lmax + L - 1];
      if (L > 1) logp = lse2(logp, la[(Tn - 1) * Lmax + L - 2]);
    }
    bool inf = logp == -INFINITY;
    c->nll[n] = inf && c->zero_inf ? 0.0 : -logp;
    if (!c->grad) continue;
    double scale = c->mean ? 1.0 / ((double)(Sn > 0 ? Sn : 1) * (double)c->N) : 1.0;
    for (int64_t t = 0; t < c->T; t++)
      for (int64_t k = 0; k < c->C; k++) c->grad[(t * c->N + n) * c->C + k] = 0;
    if (inf) continue; /* infinite loss: gradient is zero (zero_infinity) or meaningless */
    lb[(Tn - 1) * Lmax + L - 1] = LP(Tn - 1, c->blank);
    if (L > 1) lb[(Tn - 1) * Lmax + L - 2] = LP(Tn - 1, LAB(L - 2));
    for (int64_t t = Tn - 2; t >= 0; t--)
      for (int64_t s = 0; s < L; s++) {
        double v = lb[(t + 1) * Lmax + s];
        if (s + 1 < L) v = lse2(v, lb[(t + 1) * Lmax + s + 1]);
        if (s + 2 < L && s % 2 == 1 && LAB(s) != LAB(s + 2)) v = lse2(v, lb[(t + 1) * Lmax + s + 2]);
        lb[t * Lmax + s] = v == -INFINITY ? v : v + LP(t, LAB(s));
      }
    for (int64_t t = 0; t < Tn; t++) {
      for (int64_t k = 0; k < c->C; k++) lcab[k] = -INFINITY;
      for (int64_t s = 0; s < L; s++) {
        int64_t k = LAB(s);
        lcab[k] = lse2(lcab[k], la[t * Lmax + s] + lb[t * Lmax + s]);
      }
      for (int64_t k = 0; k < c->C; k++)
        if (lcab[k] != -INFINITY)
          c->grad[(t * c->N + n) * c->C + k] = (float)(-exp(lcab[k] - LP(t, k) - logp) * scale);
    }
#undef LP
#undef LAB
  }
}

static void ctc_bw(nn_node *n, nn_tensor *g) {
  nn_accum_grad(n->in[0], nn_mul(n->saved[0], g));
}

nn_tensor *nn_ctc_loss(nn_tensor *log_probs, nn_tensor *targets, const int64_t *il, const int64_t *tl,
                       int blank, bool mean, bool zero_infinity) {
  if (!log_probs || !targets) return NULL;
  NN_CHECK_F32(log_probs, "ctc_loss");
  if (log_probs->ndim != 3) NN_FAIL("ctc_loss: log_probs must be [T, N, C]");
  int64_t T = log_probs->shape[0], N = log_probs->shape[1], C = log_probs->shape[2];
  if (targets->dtype == NN_F32 || targets->ndim != 2 || targets->shape[0] != N)
    NN_FAIL("ctc_loss: targets must be an integer [N, S] tensor");
  if (blank < 0 || blank >= C) NN_FAIL("ctc_loss: blank %d outside [0, %lld)", blank, (long long)C);
  int64_t S = targets->shape[1];
  /* the recursions look labels up O(T * S) times: resolve dtype and strides once */
  int64_t *labels = nn_arena_alloc(nn_arena_current(), (size_t)(N * S > 0 ? N * S : 1) * sizeof *labels);
  if (!labels) return NULL;
  for (int64_t i = 0; i < N * S; i++) labels[i] = nn_index_at(targets, i);
  for (int64_t n = 0; n < N; n++) {
    if (il[n] < 0 || il[n] > T) NN_FAIL("ctc_loss: input length %lld of sample %lld outside [0, %lld]", (long long)il[n], (long long)n, (long long)T);
    if (tl[n] < 0 || tl[n] > S) NN_FAIL("ctc_loss: target length %lld of sample %lld outside [0, %lld]", (long long)tl[n], (long long)n, (long long)S);
    for (int64_t s = 0; s < tl[n]; s++) {
      int64_t v = labels[n * S + s];
      if (v < 0 || v >= C || v == blank) NN_FAIL("ctc_loss: target label %lld of sample %lld invalid (blank or out of range)", (long long)v, (long long)n);
    }
  }
  const float *lp = nn_dense_f32(log_probs);
  int64_t Lmax = 2 * S + 1;
  bool want_grad = nn_needs_grad(log_probs) && nn_grad_enabled();
  nn_tensor *grad = want_grad ? nn_empty(NN_F32, 3, log_probs->shape) : NULL;
  double *work = nn_arena_alloc(nn_arena_current(), (size_t)(N * (2 * T * Lmax + C) + N) * sizeof(double));
  if (!lp || !work || (want_grad && !grad)) return NULL;
  ctc_ctx c = {.lp = lp, .labels = labels, .il = il, .tl = tl, .T = T, .N = N, .C = C, .S = S, .blank = blank,
               .want_grad = want_grad, .zero_inf = zero_infinity, .mean = mean,
               .nll = work + N * (2 * T * Lmax + C), .grad = grad ? nn_f32(grad) : NULL, .work = work};
  nn_parallel_for(N, 1, ctc_samples, &c);
  double total = 0;
  for (int64_t n = 0; n < N; n++) total += mean ? c.nll[n] / (double)(tl[n] > 0 ? tl[n] : 1) : c.nll[n];
  if (mean) total /= (double)(N ? N : 1);
  nn_tensor *out = nn_scalar((float)total);
  nn_node *node = nn_record(out, "ctc_loss", ctc_bw, 1, log_probs);
  if (node) node->saved[0] = grad;
  return out;
}

/* ---------------------------------------------------- Gaussian rate (bits) */

/* Bits of integer-quantised y under a zero-mean Gaussian of scale s:
 * p = Phi((0.5 - |y|) / s) - Phi((-0.5 - |y|) / s), with s held at scale_min
 * or above (a lower bound in the sense of nn_lower_bound). Both terms are taken in the
 * lower tail through erfc, which keeps relative precision where p is tiny. */
#define RATE_P_MIN 1e-9

typedef struct {
  const float *y, *s, *g;
  float smin, gscale;
  double *bits;
  float *gy, *gs;
} rate_ctx;

static inline double phi_lower(double t) { return 0.5 * erfc(-t * 0.70710678118654752440); }
static inline double gauss_pdf(double t) { return 0.39894228040143267794 * exp(-0.5 * t * t); }

static void rate_fwd_range(void *p, int64_t i0, int64_t i1) {
  rate_ctx *c = p;
  for (int64_t i = i0; i < i1; i++) {
    double v = fabs((double)c->y[i]), s = c->s[i] > c->smin ? c->s[i] : c->smin;
    double pr = phi_lower((0.5 - v) / s) - phi_lower((-0.5 - v) / s);
    c->bits[i] = -log2(pr > RATE_P_MIN ? pr : RATE_P_MIN);
  }
}

static void rate_bwd_range(void *p, int64_t i0, int64_t i1) {
  rate_ctx *c = p;
  for (int64_t i = i0; i < i1; i++) {
    double y = c->y[i], v = fabs(y), sr = c->s[i], s = sr > c->smin ? sr : c->smin;
    double au = (0.5 - v) / s, al = (-0.5 - v) / s;
    double pr = phi_lower(au) - phi_lower(al);
    double gy = 0, gs = 0;
    if (pr > RATE_P_MIN) {
      double k = -c->gscale / (pr * 0.69314718055994530942); /* d(-log2 p)/dp */
      double pu = gauss_pdf(au), pl = gauss_pdf(al);
      gy = k * (-(pu - pl) / s) * (y > 0 ? 1.0 : (y < 0 ? -1.0 : 0.0));
      gs = k * (-(au * pu - al * pl) / s);
      /* Below the bound only a gradient that raises the scale passes: a plain
       * clamp leaves a predictor whose outputs all start under the bound (a
       * freshly initialised hyper-synthesis) with no gradient, for good. */
      if (sr <= c->smin && gs > 0) gs = 0.0;
    }
    if (c->gy) c->gy[i] = (float)gy;
    if (c->gs) c->gs[i] = (float)gs;
  }
}

static void rate_bw(nn_node *n, nn_tensor *g) {
  nn_tensor *y = n->in[0], *s = n->in[1];
  nn_tensor *gy = nn_needs_grad(y) ? nn_empty(NN_F32, y->ndim, y->shape) : NULL;
  nn_tensor *gs = nn_needs_grad(s) ? nn_empty(NN_F32, s->ndim, s->shape) : NULL;
  rate_ctx c = {.y = nn_f32(n->saved[0]), .s = nn_f32(n->saved[1]), .smin = n->f[0], .gscale = nn_item(g),
                .gy = gy ? nn_f32(gy) : NULL, .gs = gs ? nn_f32(gs) : NULL};
  nn_parallel_for(nn_numel(n->saved[0]), 1 << 12, rate_bwd_range, &c);
  if (gy) nn_accum_grad(y, gy);
  if (gs) nn_accum_grad(s, gs);
}

nn_tensor *nn_gaussian_bits(nn_tensor *y, nn_tensor *scale, float scale_min) {
  if (!y || !scale) return NULL;
  NN_CHECK_F32(y, "gaussian_bits");
  NN_CHECK_F32(scale, "gaussian_bits");
  if (!nn_same_shape(y, scale)) NN_FAIL("gaussian_bits: y and scale shapes differ");
  if (!(scale_min > 0)) NN_FAIL("gaussian_bits: scale_min must be > 0 (got %g)", scale_min);
  nn_tensor *yc = nn_contiguous(nn_detach(y)), *sc = nn_contiguous(nn_detach(scale));
  if (!yc || !sc) return NULL;
  int64_t n = nn_numel(yc);
  double *bits = malloc(sizeof(double) * (size_t)(n ? n : 1));
  if (!bits) NN_FAIL("gaussian_bits: out of memory");
  rate_ctx c = {.y = nn_f32(yc), .s = nn_f32(sc), .smin = scale_min, .bits = bits};
  nn_parallel_for(n, 1 << 12, rate_fwd_range, &c);
  double total = 0; /* summed in index order: the same for any thread count */
  for (int64_t i = 0; i < n; i++) total += bits[i];
  free(bits);
  nn_tensor *out = nn_scalar((float)total);
  nn_node *node = nn_record(out, "gaussian_bits", rate_bw, 2, y, scale);
  if (node) {
    node->saved[0] = yc;
    node->saved[1] = sc;
    node->f[0] = scale_min;
  }
  return out;
}
