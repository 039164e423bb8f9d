/* Rate-distortion arithmetic: MS-SSIM, Bjøntegaard delta rate, published curves. */
#include "rd.h"

#include <json-glib/json-glib.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- MS-SSIM (Wang et al. 2003): 11-tap Gaussian (sigma 1.5), 5 scales,
 * 2x2 average pooling between scales, per RGB channel then averaged. */
static const double MS_W[5] = {0.0448, 0.2856, 0.3001, 0.2363, 0.1333};

static void blur(const double *in, int w, int h, const double *k, double *tmp, double *out) {
  for (int y = 0; y < h; y++)
    for (int x = 0; x + 10 < w; x++) {
      double s = 0;
      for (int i = 0; i < 11; i++) s += k[i] * in[(size_t)y * w + x + i];
      tmp[(size_t)y * w + x] = s;
    }
  for (int y = 0; y + 10 < h; y++)
    for (int x = 0; x + 10 < w; x++) {
      double s = 0;
      for (int i = 0; i < 11; i++) s += k[i] * tmp[(size_t)(y + i) * w + x];
      out[(size_t)y * w + x] = s;
    }
}

/* mean SSIM and mean contrast-structure term over the valid window positions */
static void ssim_cs(const double *a, const double *b, int w, int h, double *ssim, double *cs) {
  double k[11], ks = 0;
  for (int i = 0; i < 11; i++) ks += k[i] = exp(-(i - 5) * (i - 5) / (2 * 1.5 * 1.5));
  for (int i = 0; i < 11; i++) k[i] /= ks;
  size_t n = (size_t)w * h;
  double *buf = malloc(sizeof(double) * n * 9);
  if (!buf) {
    *ssim = *cs = NAN;
    return;
  }
  double *aa = buf, *bb = buf + n, *ab = buf + 2 * n, *ma = buf + 3 * n, *mb = buf + 4 * n, *saa = buf + 5 * n,
         *sbb = buf + 6 * n, *sab = buf + 7 * n, *tmp = buf + 8 * n;
  for (size_t i = 0; i < n; i++) aa[i] = a[i] * a[i], bb[i] = b[i] * b[i], ab[i] = a[i] * b[i];
  blur(a, w, h, k, tmp, ma);
  blur(b, w, h, k, tmp, mb);
  blur(aa, w, h, k, tmp, saa);
  blur(bb, w, h, k, tmp, sbb);
  blur(ab, w, h, k, tmp, sab);
  const double c1 = (0.01 * 255) * (0.01 * 255), c2 = (0.03 * 255) * (0.03 * 255);
  double s = 0, c = 0;
  long cnt = 0;
  for (int y = 0; y + 10 < h; y++)
    for (int x = 0; x + 10 < w; x++) {
      size_t i = (size_t)y * w + x;
      double va = saa[i] - ma[i] * ma[i], vb = sbb[i] - mb[i] * mb[i], cov = sab[i] - ma[i] * mb[i];
      double csv = (2 * cov + c2) / (va + vb + c2);
      s += (2 * ma[i] * mb[i] + c1) / (ma[i] * ma[i] + mb[i] * mb[i] + c1) * csv;
      c += csv;
      cnt++;
    }
  *ssim = cnt ? s / cnt : NAN;
  *cs = cnt ? c / cnt : NAN;
  free(buf);
}

double rd_ms_ssim(const uint8_t *x, const uint8_t *y, int w, int h) {
  double total = 0;
  for (int ch = 0; ch < 3; ch++) {
    int cw = w, chh = h;
    double *a = malloc(sizeof(double) * (size_t)w * h), *b = malloc(sizeof(double) * (size_t)w * h);
    if (!a || !b) {
      free(a);
      free(b);
      return NAN;
    }
    for (size_t i = 0; i < (size_t)w * h; i++) a[i] = x[i * 3 + ch], b[i] = y[i * 3 + ch];
    double v = 1;
    for (int s = 0; s < 5; s++) {
      double ss, cs;
      if (cw < 11 || chh < 11) {
        v = NAN; /* too small for five scales */
        break;
      }
      ssim_cs(a, b, cw, chh, &ss, &cs);
      double t = s == 4 ? ss : cs;
      v *= pow(t > 0 ? t : 0, MS_W[s]);
      int nw = cw / 2, nh = chh / 2;
      for (int yy = 0; yy < nh; yy++)
        for (int xx = 0; xx < nw; xx++) {
          size_t i0 = (size_t)(2 * yy) * cw + 2 * xx;
          a[(size_t)yy * nw + xx] = (a[i0] + a[i0 + 1] + a[i0 + cw] + a[i0 + cw + 1]) / 4;
          b[(size_t)yy * nw + xx] = (b[i0] + b[i0 + 1] + b[i0 + cw] + b[i0 + cw + 1]) / 4;
        }
      cw = nw;
      chh = nh;
    }
    free(a);
    free(b);
    total += v / 3;
  }
  return total;
}

/* ---- Bjøntegaard delta rate: cubic fits of log(rate) against PSNR,
 * integrated over the PSNR range both curves cover. */
static bool fit_cubic(const double *x, const double *y, int n, double c[4]) {
  double A[4][5] = {{0}};
  for (int i = 0; i < n; i++) {
    double p[4] = {1, x[i], x[i] * x[i], x[i] * x[i] * x[i]};
    for (int r = 0; r < 4; r++) {
      for (int k = 0; k < 4; k++) A[r][k] += p[r] * p[k];
      A[r][4] += p[r] * y[i];
    }
  }
  for (int col = 0; col < 4; col++) {
    int piv = col;
    for (int r = col + 1; r < 4; r++)
      if (fabs(A[r][col]) > fabs(A[piv][col])) piv = r;
    if (fabs(A[piv][col]) < 1e-300) return false;
    for (int k = 0; k < 5; k++) {
      double t = A[col][k];
      A[col][k] = A[piv][k];
      A[piv][k] = t;
    }
    for (int r = 0; r < 4; r++) {
      if (r == col) continue;
      double f = A[r][col] / A[col][col];
      for (int k = col; k < 5; k++) A[r][k] -= f * A[col][k];
    }
  }
  for (int r = 0; r < 4; r++) c[r] = A[r][4] / A[r][r];
  return true;
}

static double integral(const double c[4], double a, double b) {
  double F = 0, G = 0;
  for (int k = 0; k < 4; k++) {
    F += c[k] * pow(b, k + 1) / (k + 1);
    G += c[k] * pow(a, k + 1) / (k + 1);
  }
  return F - G;
}

/* The mean gap between curve b and curve a: y fitted as a cubic in x for each, integrated over the x range
 * both cover. x and y are already on the axes the delta is taken on (log rate or PSNR). */
static double bd_mean_gap(const double *xa, const double *ya, int na, const double *xb, const double *yb, int nb) {
  double ca[4], cb[4], lo_a = INFINITY, hi_a = -INFINITY, lo_b = INFINITY, hi_b = -INFINITY;
  for (int i = 0; i < na; i++) lo_a = fmin(lo_a, xa[i]), hi_a = fmax(hi_a, xa[i]);
  for (int i = 0; i < nb; i++) lo_b = fmin(lo_b, xb[i]), hi_b = fmax(hi_b, xb[i]);
  double lo = fmax(lo_a, lo_b), hi = fmin(hi_a, hi_b);
  if (!(hi > lo) || !fit_cubic(xa, ya, na, ca) || !fit_cubic(xb, yb, nb, cb)) return NAN;
  return (integral(cb, lo, hi) - integral(ca, lo, hi)) / (hi - lo);
}

/* log(rate) of n points (at most 64) into out; false when there are too few or too many */
static bool log_rates(const double *rate, int n, double *out) {
  if (n < 4 || n > 64) return false;
  for (int i = 0; i < n; i++) out[i] = log(rate[i]);
  return true;
}

double rd_bd_rate(const double *rate_a, const double *psnr_a, int na, const double *rate_b, const double *psnr_b, int nb) {
  double la[64], lb[64];
  if (!log_rates(rate_a, na, la) || !log_rates(rate_b, nb, lb)) return NAN;
  return (exp(bd_mean_gap(psnr_a, la, na, psnr_b, lb, nb)) - 1) * 100;
}

double rd_bd_psnr(const double *rate_a, const double *psnr_a, int na, const double *rate_b, const double *psnr_b, int nb) {
  double la[64], lb[64];
  if (!log_rates(rate_a, na, la) || !log_rates(rate_b, nb, lb)) return NAN;
  return bd_mean_gap(la, psnr_a, na, lb, psnr_b, nb);
}

/* ---- CompressAI result files: {"name": ..., "results": {"bpp": [...], "psnr-rgb": [...]}} */
bool rd_load_curve(const char *path, rd_curve *c) {
  memset(c, 0, sizeof *c);
  JsonParser *p = json_parser_new();
  bool ok = false;
  if (json_parser_load_from_file(p, path, NULL) && JSON_NODE_HOLDS_OBJECT(json_parser_get_root(p))) {
    JsonObject *o = json_node_get_object(json_parser_get_root(p));
    const char *name = json_object_get_string_member_with_default(o, "name", "?");
    JsonNode *rn = json_object_get_member(o, "results");
    JsonObject *r = rn && JSON_NODE_HOLDS_OBJECT(rn) ? json_node_get_object(rn) : NULL;
    JsonNode *bn = r ? json_object_get_member(r, "bpp") : NULL, *pn = r ? json_object_get_member(r, "psnr-rgb") : NULL;
    if (bn && pn && JSON_NODE_HOLDS_ARRAY(bn) && JSON_NODE_HOLDS_ARRAY(pn)) {
      JsonArray *ba = json_node_get_array(bn), *pa = json_node_get_array(pn);
      int n = (int)json_array_get_length(ba);
      if (n == (int)json_array_get_length(pa) && n > 0 && n <= RD_MAX_POINTS) {
        for (int i = 0; i < n; i++) {
          c->bpp[i] = json_array_get_double_element(ba, (guint)i);
          c->psnr[i] = json_array_get_double_element(pa, (guint)i);
        }
        c->n = n;
        snprintf(c->name, sizeof c->name, "%s", name);
        ok = true;
      }
    }
  }
  g_object_unref(p);
  return ok;
}
