/* Winograd F(m x m, 3x3) for 3x3 stride-1 convolutions (Lavin & Gray, 2016), m = 2 or 4.
 *
 * Each m x m block of outputs comes from an (m+2) x (m+2) input patch d: Y = A^T [ (G g G^T) .* (B^T d B) ] A.
 * F(2x2): 16 multiplications replace 36 (2.25x); F(4x4, points 0, +-1, +-2, infinity): 36 replace 144
 * (4x). Over C channels the elementwise products become (m+2)^2 independent GEMMs
 * M[xi] = U[xi] (OC x C) * V[xi] (C x tiles), run on the direct kernel's register tile.
 *
 * Plain 3x3 layers (the detector's: 64-256 channels on maps of 10-80 pixels) use F(2x2): there F(4x4)
 * measured no faster, its edge tiles waste more and its filters cost 2.25x more to pack. The
 * space-to-depth problems of 5x5 stride-2 layers take either (the caller chooses): F(4x4) where the
 * filters are packed once (inference copies: the codec's encoder, 15-30 % faster there), F(2x2) where
 * they are packed on every call (training: with F(4x4) the codec trained about 12 % slower).
 *
 * Work goes in chunks of consecutive tiles, sized so that a chunk's V and M slices stay in L2; each chunk is
 * transformed, multiplied and transformed back by one thread, in a fixed order, so the result does
 * not depend on the thread count. */
#include <stdlib.h>

#include "conv_direct.h"

#include "internal.h"

enum { OCB = NN_DIRECT_OCB, TILE = NN_DIRECT_TILE };

typedef struct {
  int m, nxi;         /* output tile side (2 or 4) and transformed points per tile, (m + 2)^2 */
  int64_t th, tw;     /* output tiles (m x m each) down and across; tile q = i * tw + j */
  int64_t chunks;     /* chunk ch covers tiles [chunk_start(ch), chunk_start(ch + 1)) */
  int64_t pc;         /* the longest chunk, rounded up to the register tile: scratch stride */
  int64_t ocp;        /* output channels rounded up to OCB */
} wino_geom;

/* Long chunks start on a register tile; short ones (a small image split between threads) do not, or
 * rounding would leave one thread empty-handed (64 tiles in chunks of 0, 24 and 40). */
static int64_t chunk_start(const wino_geom *w, int64_t ch) {
  int64_t tiles = w->th * w->tw;
  if (ch >= w->chunks) return tiles;
  int64_t s = tiles * ch / w->chunks;
  return tiles >= 4 * TILE * w->chunks ? s / TILE * TILE : s;
}

/* Chunking changes no result (every output is computed the same way in any chunk), so it may follow the
 * thread count: a multiple of it, at least two per thread, of near-equal size, each chunk's per-xi
 * slices of V and M within ~64 KB. */
static wino_geom wino_of(const nn_direct_geom *g, int m) {
  wino_geom w;
  w.m = m;
  w.nxi = (m + 2) * (m + 2);
  w.th = (g->OH + m - 1) / m;
  w.tw = (g->OW + m - 1) / m;
  w.ocp = (g->OC + OCB - 1) / OCB * OCB;
  int64_t tiles = w.th * w.tw, nt = nn_get_num_threads();
  int64_t limit = 16384 / (g->C + w.ocp) / TILE * TILE;
  if (limit < TILE) limit = TILE;
  int64_t chunks = (tiles + limit - 1) / limit;
  if (nt > 1) {
    if (chunks < 2 * nt) chunks = 2 * nt;
    chunks = (chunks + nt - 1) / nt * nt;
  }
  w.chunks = chunks < tiles ? chunks : tiles;
  w.pc = TILE;
  for (int64_t ch = 0; ch < w.chunks; ch++) {
    int64_t len = chunk_start(&w, ch + 1) - chunk_start(&w, ch);
    if (len > w.pc) w.pc = len;
  }
  w.pc = (w.pc + TILE - 1) / TILE * TILE;
  return w;
}

bool nn_winograd_fits(const nn_direct_geom *g) {
  return g->KH == 3 && g->KW == 3 && g->sh == 1 && g->sw == 1 && g->OH >= 2 && g->OW >= 2 &&
         nn_conv_winograd_available();
}

static size_t packed_floats_m(const nn_direct_geom *g, int m) {
  wino_geom w = wino_of(g, m);
  return (size_t)(w.nxi * w.ocp * g->C);
}

/* Per chunk: V[nxi][pc / 24][C][24] and M[nxi][ocp][pc]. */
static size_t scratch_floats_m(const nn_direct_geom *g, int m) {
  wino_geom w = wino_of(g, m);
  return (size_t)(w.chunks * w.nxi * (g->C + w.ocp) * w.pc);
}

size_t nn_winograd_packed_floats(const nn_direct_geom *g) { return packed_floats_m(g, 2); }
size_t nn_winograd_scratch_floats(const nn_direct_geom *g) { return scratch_floats_m(g, 2); }

/* G k for one column k of the filter. F(2x2): G rows (1 0 0) (.5 .5 .5) (.5 -.5 .5) (0 0 1).
 * F(4x4): (1/4 0 0) (-1/6 -1/6 -1/6) (-1/6 1/6 -1/6) (1/24 1/12 1/6) (1/24 -1/12 1/6) (0 0 1). */
static void g_times(int m, const double k[3], double out[6]) {
  if (m == 2) {
    out[0] = k[0];
    out[1] = 0.5 * (k[0] + k[1] + k[2]);
    out[2] = 0.5 * (k[0] - k[1] + k[2]);
    out[3] = k[2];
    return;
  }
  out[0] = k[0] / 4;
  out[1] = -(k[0] + k[1] + k[2]) / 6;
  out[2] = -(k[0] - k[1] + k[2]) / 6;
  out[3] = k[0] / 24 + k[1] / 12 + k[2] / 6;
  out[4] = k[0] / 24 - k[1] / 12 + k[2] / 6;
  out[5] = k[2];
}

typedef struct {
  const nn_direct_geom *g;
  const float *w;
  float *packed;
  int m;
} pack_ctx;

/* U = G g G^T (in double, rounded once) for output channels [oc0, oc1), packed per xi like the direct
 * kernel's weights: [xi][oc block][c][OCB]. */
static void pack_range(void *p, int64_t oc0, int64_t oc1) {
  const pack_ctx *k = p;
  const nn_direct_geom *g = k->g;
  int m = k->m, a = m + 2;
  wino_geom wg = wino_of(g, m);
  int64_t C = g->C, nob = wg.ocp / OCB;
  for (int64_t oc = oc0; oc < oc1; oc++)
    for (int64_t c = 0; c < C; c++) {
      double u[6][6] = {{0}};
      if (oc < g->OC) {
        const float *kf = k->w + (oc * C + c) * 9;
        double t[6][3]; /* G k, column by column */
        for (int j = 0; j < 3; j++) {
          double col[3] = {kf[j], kf[3 + j], kf[6 + j]}, gc[6];
          g_times(m, col, gc);
          for (int i = 0; i < a; i++) t[i][j] = gc[i];
        }
        for (int i = 0; i < a; i++) g_times(m, t[i], u[i]); /* (G k) G^T, row by row */
      }
      int64_t ob = oc / OCB, j = oc % OCB;
      for (int xi = 0; xi < wg.nxi; xi++) k->packed[((xi * nob + ob) * C + c) * OCB + j] = (float)u[xi / a][xi % a];
    }
}

/* Across threads: training repacks every layer on every step. */
static void pack_m(const nn_direct_geom *g, const float *w, float *packed, int m) {
  pack_ctx k = {g, w, packed, m};
  nn_parallel_for(wino_of(g, m).ocp, OCB, pack_range, &k);
}

void nn_winograd_pack(const nn_direct_geom *g, const float *w, float *packed) { pack_m(g, w, packed, 2); }

typedef struct {
  const nn_direct_geom *g;
  wino_geom w;
  const float *x, *packed, *bias;
  int act; /* NN_DIRECT_RELU or NN_DIRECT_SILU, or 0 */
  float *scratch, *out;
  const nn_direct_geom *s2; /* set: x is the input of this 5x5 stride-2 layer, read as its space-to-depth */
} wino_ctx;

/* Columns c0 .. c0 + ncol - 1 of row ih of channel c (both in g's unpadded coordinates, so either may
 * fall in the padding), zero outside the input. With s2 set, channel c = 4 ci + 2 py + px and row ih
 * of the space-to-depth input read x[ci][2 ih + py - ph][2 j + px - pw] in place. */
static void fetch_row(const wino_ctx *k, int64_t c, int64_t ih, int64_t c0, int64_t ncol, float *prow) {
  const nn_direct_geom *g = k->g;
  const float *row = NULL;
  int64_t step = 1, base = c0, lo = 0, hi = 0; /* prow[m] = row[base + step * m] for lo <= m < hi */
  if (ih >= 0 && ih < g->H) {
    if (!k->s2) {
      row = k->x + (c * g->H + ih) * g->W;
      lo = -c0, hi = g->W - c0;
    } else {
      const nn_direct_geom *s = k->s2;
      int64_t ci = c / 4, py = (c / 2) % 2, px = c % 2, y = 2 * ih + py - s->ph;
      if (y >= 0 && y < s->H) {
        row = k->x + (ci * s->H + y) * s->W;
        step = 2, base = 2 * c0 + px - s->pw;
        lo = base < 0 ? (-base + 1) / 2 : 0;  /* first m with base + 2m >= 0 */
        hi = (s->W - base + 1) / 2;            /* first m with base + 2m >= W */
        if (hi > g->W - c0) hi = g->W - c0;   /* and within the space-to-depth plane */
        if (lo < -c0) lo = -c0;
      }
    }
  }
  if (lo < 0) lo = 0;
  if (hi > ncol) hi = ncol;
  if (!row || hi < lo) lo = hi = 0;
  for (int64_t m = 0; m < lo; m++) prow[m] = 0.0f;
  if (step == 1)
    for (int64_t m = lo; m < hi; m++) prow[m] = row[base + m];
  else
    for (int64_t m = lo; m < hi; m++) prow[m] = row[base + 2 * m];
  for (int64_t m = hi; m < ncol; m++) prow[m] = 0.0f;
}

/* Eight floats for the transforms' explicit vector loops (GCC vector extensions: AVX with -march=native,
 * two SSE halves without); memcpy makes the unaligned loads and stores legal. */
typedef float v8 __attribute__((vector_size(32)));
static inline v8 load8(const float *p) {
  v8 v;
  memcpy(&v, p, sizeof v);
  return v;
}
static inline void store8(float *p, v8 v) { memcpy(p, &v, sizeof v); }

/* B^T applied to 6 values (any stride): rows (4 0 -5 0 1 0) (0 -4 -4 1 1 0) (0 4 -4 -1 1 0)
 * (0 -2 -1 2 1 0) (0 2 -1 -2 1 0) (0 4 0 -5 0 1). */
#define BT6(d0, d1, d2, d3, d4, d5, o0, o1, o2, o3, o4, o5) \
  do {                                                      \
    __typeof__((d0) + 0.0f) a_ = (d4) - 4.0f * (d2), b_ = (d3) - 4.0f * (d1); \
    __typeof__((d0) + 0.0f) c_ = (d4) - (d2), e_ = 2.0f * ((d3) - (d1));      \
    o0 = 4.0f * (d0) - 5.0f * (d2) + (d4);                  \
    o1 = a_ + b_;                                           \
    o2 = a_ - b_;                                           \
    o3 = c_ + e_;                                           \
    o4 = c_ - e_;                                           \
    o5 = 4.0f * (d1) - 5.0f * (d3) + (d5);                  \
  } while (0)

/* F(4x4): B^T d B for the tiles [qs, qe) (at most 24, one block of V) of channel c, stored as 36 contiguous runs
 * of 24: V[xi][block][c][0..24), so that the GEMM reads a block as one run over the channels. The block
 * may span rows of tiles; each row segment is transformed across its tiles. */
static void input_block4(const wino_ctx *k, int64_t c, int64_t qs, int64_t qe, float *dst, int64_t xi_stride) {
  const nn_direct_geom *g = k->g;
  int64_t tw = k->w.tw;
  float prow[4 * TILE + 4], e[4][TILE + 1], h[6][6][TILE];
  int n = (int)(qe - qs);
  for (int64_t q = qs; q < qe;) {
    int64_t i = q / tw, ja = q - i * tw, jb = ja + (qe - q) < tw ? ja + (qe - q) : tw;
    int len = (int)(jb - ja), t0 = (int)(q - qs);
    for (int r = 0; r < 6; r++) { /* padded columns 4ja .. 4jb+1 */
      fetch_row(k, c, 4 * i + r - g->ph, 4 * ja - g->pw, 4 * len + 2, prow);
      prow[4 * len + 2] = prow[4 * len + 3] = 0.0f;
      for (int j = 0; j <= len; j++) /* column 4j + p in e[p][j]: the pass below then runs at unit stride */
        e[0][j] = prow[4 * j], e[1][j] = prow[4 * j + 1], e[2][j] = prow[4 * j + 2], e[3][j] = prow[4 * j + 3];
      for (int j = 0; j < len; j++) /* d B across columns 4j .. 4j+5 */
        BT6(e[0][j], e[1][j], e[2][j], e[3][j], e[0][j + 1], e[1][j + 1], h[r][0][j], h[r][1][j], h[r][2][j],
            h[r][3][j], h[r][4][j], h[r][5][j]);
    }
    for (int b = 0; b < 6; b++) { /* B^T (d B) down the rows, straight into V */
      float *restrict v0 = dst + (0 * 6 + b) * xi_stride + t0, *restrict v1 = dst + (1 * 6 + b) * xi_stride + t0;
      float *restrict v2 = dst + (2 * 6 + b) * xi_stride + t0, *restrict v3 = dst + (3 * 6 + b) * xi_stride + t0;
      float *restrict v4 = dst + (4 * 6 + b) * xi_stride + t0, *restrict v5 = dst + (5 * 6 + b) * xi_stride + t0;
      const float *h0 = h[0][b], *h1 = h[1][b], *h2 = h[2][b], *h3 = h[3][b], *h4 = h[4][b], *h5 = h[5][b];
      int j = 0;
      for (; j + 8 <= len; j += 8) { /* GCC leaves this loop scalar on its own ("complicated access pattern") */
        v8 o0, o1, o2, o3, o4, o5;
        BT6(load8(h0 + j), load8(h1 + j), load8(h2 + j), load8(h3 + j), load8(h4 + j), load8(h5 + j), o0, o1, o2,
            o3, o4, o5);
        store8(v0 + j, o0), store8(v1 + j, o1), store8(v2 + j, o2), store8(v3 + j, o3), store8(v4 + j, o4),
            store8(v5 + j, o5);
      }
      for (; j < len; j++) BT6(h0[j], h1[j], h2[j], h3[j], h4[j], h5[j], v0[j], v1[j], v2[j], v3[j], v4[j], v5[j]);
    }
    q += len;
  }
  for (int xi = 0; xi < 36; xi++) /* tiles past the chunk's end feed only dropped outputs: zeros */
    for (int t = n; t < TILE; t++) dst[xi * xi_stride + t] = 0.0f;
}

/* F(2x2): as input_block4 with 4x4 patches and 16 runs. B^T rows (1 0 -1 0) (0 1 1 0) (0 -1 1 0) (0 1 0 -1). */
static void input_block2(const wino_ctx *k, int64_t c, int64_t qs, int64_t qe, float *dst, int64_t xi_stride) {
  const nn_direct_geom *g = k->g;
  int64_t tw = k->w.tw;
  float prow[2 * TILE + 2], ev[TILE + 1], od[TILE + 1], h[4][4][TILE];
  int n = (int)(qe - qs);
  for (int64_t q = qs; q < qe;) {
    int64_t i = q / tw, ja = q - i * tw, jb = ja + (qe - q) < tw ? ja + (qe - q) : tw;
    int len = (int)(jb - ja), t0 = (int)(q - qs);
    for (int r = 0; r < 4; r++) { /* padded columns 2ja .. 2jb+1 */
      fetch_row(k, c, 2 * i + r - g->ph, 2 * ja - g->pw, 2 * len + 2, prow);
      for (int m = 0; m <= len; m++) ev[m] = prow[2 * m], od[m] = prow[2 * m + 1];
      for (int j = 0; j < len; j++) { /* d B across columns 2j .. 2j+3 */
        h[r][0][j] = ev[j] - ev[j + 1];
        h[r][1][j] = od[j] + ev[j + 1];
        h[r][2][j] = ev[j + 1] - od[j];
        h[r][3][j] = od[j] - od[j + 1];
      }
    }
    for (int b = 0; b < 4; b++) { /* B^T (d B) down the rows, straight into V */
      float *restrict v0 = dst + (0 * 4 + b) * xi_stride + t0, *restrict v1 = dst + (1 * 4 + b) * xi_stride + t0;
      float *restrict v2 = dst + (2 * 4 + b) * xi_stride + t0, *restrict v3 = dst + (3 * 4 + b) * xi_stride + t0;
      const float *h0 = h[0][b], *h1 = h[1][b], *h2 = h[2][b], *h3 = h[3][b];
      for (int j = 0; j < len; j++) {
        v0[j] = h0[j] - h2[j];
        v1[j] = h1[j] + h2[j];
        v2[j] = h2[j] - h1[j];
        v3[j] = h1[j] - h3[j];
      }
    }
    q += len;
  }
  for (int xi = 0; xi < 16; xi++)
    for (int t = n; t < TILE; t++) dst[xi * xi_stride + t] = 0.0f;
}

/* A^T applied to 6 values: rows (1 1 1 1 1 0) (0 1 -1 2 -2 0) (0 1 1 4 4 0) (0 1 -1 8 -8 1). */
#define AT6(m0, m1, m2, m3, m4, m5, o0, o1, o2, o3) \
  do {                                              \
    float p_ = (m1) + (m2), q_ = (m1) - (m2);       \
    float r_ = (m3) + (m4), s_ = (m3) - (m4);       \
    o0 = (m0) + p_ + r_;                            \
    o1 = q_ + 2.0f * s_;                            \
    o2 = p_ + 4.0f * r_;                            \
    o3 = q_ + 8.0f * s_ + (m5);                     \
  } while (0)

enum { OUT_RUN = 16 }; /* tiles transformed back together: small enough for the stack, long enough to vectorise */

/* F(4x4): A^T m A, plus bias and ReLU, for a run of len tiles whose 36 points lie xs apart from m. */
static void back4(const float *m, int64_t xs, int len, float bias, bool relu, float y[4][4][OUT_RUN]) {
  float s[4][6][OUT_RUN];
  for (int b = 0; b < 6; b++) {
    const float *m0 = m + (0 * 6 + b) * xs, *m1 = m + (1 * 6 + b) * xs, *m2 = m + (2 * 6 + b) * xs;
    const float *m3 = m + (3 * 6 + b) * xs, *m4 = m + (4 * 6 + b) * xs, *m5 = m + (5 * 6 + b) * xs;
    for (int j = 0; j < len; j++) AT6(m0[j], m1[j], m2[j], m3[j], m4[j], m5[j], s[0][b][j], s[1][b][j], s[2][b][j], s[3][b][j]);
  }
  for (int r = 0; r < 4; r++)
    for (int j = 0; j < len; j++) {
      float a[4];
      AT6(s[r][0][j], s[r][1][j], s[r][2][j], s[r][3][j], s[r][4][j], s[r][5][j], a[0], a[1], a[2], a[3]);
      for (int c = 0; c < 4; c++) {
        a[c] += bias;
        y[r][c][j] = relu && a[c] < 0.0f ? 0.0f : a[c];
      }
    }
}

/* F(2x2): the same with A^T = (1 1 1 0) (0 1 -1 -1) and 16 points. */
static void back2(const float *m, int64_t xs, int len, float bias, bool relu, float y[4][4][OUT_RUN]) {
  float s[2][4][OUT_RUN];
  for (int b = 0; b < 4; b++) {
    const float *m0 = m + (0 * 4 + b) * xs, *m1 = m + (1 * 4 + b) * xs;
    const float *m2 = m + (2 * 4 + b) * xs, *m3 = m + (3 * 4 + b) * xs;
    for (int j = 0; j < len; j++) {
      s[0][b][j] = m0[j] + m1[j] + m2[j];
      s[1][b][j] = m1[j] - m2[j] - m3[j];
    }
  }
  for (int r = 0; r < 2; r++)
    for (int j = 0; j < len; j++) {
      float a = bias + (s[r][0][j] + s[r][1][j] + s[r][2][j]);
      float b = bias + (s[r][1][j] - s[r][2][j] - s[r][3][j]);
      y[r][0][j] = relu && a < 0.0f ? 0.0f : a;
      y[r][1][j] = relu && b < 0.0f ? 0.0f : b;
    }
}

/* Outputs of channel oc for tiles [q0, q1), a run of tiles at a time. */
static void output_transform(const wino_ctx *k, int64_t oc, int64_t q0, int64_t q1, const float *M) {
  const nn_direct_geom *g = k->g;
  int64_t tw = k->w.tw, pc = k->w.pc, ocp = k->w.ocp;
  int mt = k->w.m;
  float bias = k->bias ? k->bias[oc] : 0.0f;
  float *o = k->out + oc * g->OH * g->OW;
  float y[4][4][OUT_RUN];
  for (int64_t i = q0 / tw; i * tw < q1; i++) {
    int64_t ja = q0 > i * tw ? q0 - i * tw : 0, jb = q1 < (i + 1) * tw ? q1 - i * tw : tw;
    for (int64_t jr = ja; jr < jb; jr += OUT_RUN) {
      int len = (int)(jb - jr < OUT_RUN ? jb - jr : OUT_RUN);
      (mt == 4 ? back4 : back2)(M + oc * pc + i * tw + jr - q0, ocp * pc, len, bias, k->act & NN_DIRECT_RELU, y);
      if (k->act & NN_DIRECT_SILU)
        for (int r = 0; r < mt; r++)
          for (int cx = 0; cx < mt; cx++)
            for (int j = 0; j < len; j++) y[r][cx][j] = nn_silu_fast(y[r][cx][j]);
      for (int r = 0; r < mt && mt * i + r < g->OH; r++) {
        float *row = o + (mt * i + r) * g->OW;
        for (int j = 0; j < len; j++)
          for (int cx = 0; cx < mt; cx++) {
            int64_t col = mt * (jr + j) + cx;
            if (col < g->OW) row[col] = y[r][cx][j];
          }
      }
    }
  }
}

static void run_chunks(void *p, int64_t c0, int64_t c1) {
  wino_ctx *k = p;
  const nn_direct_geom *g = k->g;
  const wino_geom *w = &k->w;
  int64_t C = g->C, nob = w->ocp / OCB;
  static const int64_t toff0[1] = {0};
  for (int64_t ch = c0; ch < c1; ch++) {
    float *V = k->scratch + ch * w->nxi * (C + w->ocp) * w->pc, *M = V + w->nxi * C * w->pc;
    int64_t q0 = chunk_start(w, ch), q1 = chunk_start(w, ch + 1);
    int64_t used = q1 - q0;
    int64_t nqb = w->pc / TILE;
    for (int64_t qb = 0; qb * TILE < used; qb++)
      for (int64_t c = 0; c < C; c++) {
        int64_t qs = q0 + qb * TILE, qe = qs + TILE < q1 ? qs + TILE : q1;
        (w->m == 4 ? input_block4 : input_block2)(k, c, qs, qe, V + (qb * C + c) * TILE, nqb * C * TILE);
      }
    static const float zero[OCB] = {0};
    for (int xi = 0; xi < w->nxi; xi++) /* a block of V stays in L1 while every filter block passes */
      for (int64_t qb = 0; qb * TILE < used; qb++)
        for (int64_t ob = 0; ob < nob; ob++)
          nn_direct_tile(V + (xi * nqb + qb) * C * TILE, TILE, C, toff0, 1, k->packed + (xi * nob + ob) * C * OCB,
                         zero, 0, M + (xi * w->ocp + ob * OCB) * w->pc + qb * TILE, w->pc);
    for (int64_t oc = 0; oc < g->OC; oc++) output_transform(k, oc, q0, q1, M);
  }
}

void nn_winograd(const nn_direct_geom *g, const float *x, const float *packed, const float *bias, int act,
                 float *scratch, float *out) {
  wino_ctx k = {.g = g, .w = wino_of(g, 2), .x = x, .packed = packed, .bias = bias, .act = act,
                .scratch = scratch, .out = out};
  nn_parallel_for(k.w.chunks, 1, run_chunks, &k);
}

/* ------------------------------------------- 5x5 stride 2 via space-to-depth */
/* A 5x5 stride-2 convolution is a 3x3 stride-1 one over the 2x2 space-to-depth of its padded input:
 * with kh = 2a + p and kw = 2b + q, xpad[2oh + kh][2ow + kw] = S[c, p, q][oh + a][ow + b], so
 * out = bias + sum over (c, p, q), a, b < 3 of W'[c, p, q][a][b] * S[c, p, q][oh + a][ow + b], where W'
 * takes W[c][2a + p][2b + q] and zero where 2a + p or 2b + q reaches 5. On that 4C-channel 3x3 problem
 * Winograd needs, per output and input channel (4 space-to-depth channels), 4 x 4 = 16 multiplications
 * with F(2x2) or 4 x 2.25 = 9 with F(4x4), against 25 directly: 1.56x or 2.8x fewer, zero taps included. */

static nn_direct_geom s2_geom(const nn_direct_geom *g) {
  return (nn_direct_geom){.C = 4 * g->C, .H = g->OH + 2, .W = g->OW + 2, .OC = g->OC, .KH = 3, .KW = 3,
                          .OH = g->OH, .OW = g->OW, .sh = 1, .sw = 1, .ph = 0, .pw = 0};
}

bool nn_winograd_s2_fits(const nn_direct_geom *g) {
  if (g->KH != 5 || g->KW != 5 || g->sh != 2 || g->sw != 2) return false;
  nn_direct_geom s = s2_geom(g);
  return nn_winograd_fits(&s);
}

size_t nn_winograd_s2_packed_floats(const nn_direct_geom *g, int tile) {
  nn_direct_geom s = s2_geom(g);
  return packed_floats_m(&s, tile);
}

size_t nn_winograd_s2_scratch_floats(const nn_direct_geom *g, int tile) {
  nn_direct_geom s = s2_geom(g);
  return scratch_floats_m(&s, tile);
}

bool nn_winograd_s2_pack(const nn_direct_geom *g, const float *w, float *packed, int tile) {
  nn_direct_geom s = s2_geom(g);
  float *w2 = calloc((size_t)(g->OC * s.C * 9), sizeof(float));
  if (!w2) return false;
  for (int64_t oc = 0; oc < g->OC; oc++)
    for (int64_t c = 0; c < g->C; c++)
      for (int kh = 0; kh < 5; kh++)
        for (int kw = 0; kw < 5; kw++) {
          int64_t c2 = c * 4 + (kh % 2) * 2 + kw % 2;
          w2[((oc * s.C + c2) * 3 + kh / 2) * 3 + kw / 2] = w[((oc * g->C + c) * 5 + kh) * 5 + kw];
        }
  pack_m(&s, w2, packed, tile);
  free(w2);
  return true;
}

/* The space-to-depth input is never stored: the input transform reads x through it (fetch_row). */
void nn_winograd_s2(const nn_direct_geom *g, int tile, const float *x, const float *packed, const float *bias,
                    int act, float *scratch, float *out) {
  nn_direct_geom s = s2_geom(g);
  wino_ctx k = {.g = &s, .w = wino_of(&s, tile), .x = x, .packed = packed, .bias = bias, .act = act,
                .scratch = scratch, .out = out, .s2 = g};
  nn_parallel_for(k.w.chunks, 1, run_chunks, &k);
}
