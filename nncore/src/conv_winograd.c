/* Winograd F(2x2, 3x3) for 3x3 stride-1 convolutions (Lavin & Gray, 2016).
 *
 * Each 2x2 block of outputs comes from a 4x4 input patch d: Y = A^T [ (G g G^T) .* (B^T d B) ] A, so
 * 16 multiplications replace 36. Over C channels the elementwise products become 16 independent
 * GEMMs M[xi] = U[xi] (OC x C) * V[xi] (C x tiles), run on the direct kernel's register tile.
 *
 * Work goes in chunks of consecutive tiles, sized so that a chunk's V and M slices stay in L2; each chunk is
 * transformed, multiplied and transformed back by one thread, in a fixed order, so the result does
 * not depend on the thread count. */
#include <stdlib.h>

#include "conv_direct.h"

#include "internal.h"

enum { OCB = NN_DIRECT_OCB, TILE = NN_DIRECT_TILE };

typedef struct {
  int64_t th, tw;     /* output tiles (2x2 each) down and across; tile q = i * tw + j */
  int64_t chunks;     /* chunk ch covers tiles [chunk_start(ch), chunk_start(ch + 1)) */
  int64_t pc;         /* the longest chunk, rounded up to the register tile: scratch stride */
  int64_t ocp;        /* output channels rounded up to OCB */
} wino_geom;

static int64_t chunk_start(const wino_geom *w, int64_t ch) {
  int64_t tiles = w->th * w->tw;
  return ch >= w->chunks ? tiles : tiles * ch / w->chunks / TILE * TILE;
}

/* Chunking changes no result (every output is computed the same way in any chunk), so it may follow the
 * thread count: a multiple of it, at least two per thread, of near-equal size, each chunk's per-xi
 * slices of V and M within ~64 KB. */
static wino_geom wino_of(const nn_direct_geom *g) {
  wino_geom w;
  w.th = (g->OH + 1) / 2;
  w.tw = (g->OW + 1) / 2;
  w.ocp = (g->OC + OCB - 1) / OCB * OCB;
  int64_t tiles = w.th * w.tw, nt = nn_get_num_threads(), blocks = (tiles + TILE - 1) / TILE;
  int64_t limit = 16384 / (g->C + w.ocp) / TILE * TILE;
  if (limit < TILE) limit = TILE;
  int64_t chunks = (tiles + limit - 1) / limit;
  if (nt > 1) {
    if (chunks < 2 * nt) chunks = 2 * nt;
    chunks = (chunks + nt - 1) / nt * nt;
  }
  w.chunks = chunks < blocks ? chunks : blocks;
  w.pc = TILE;
  for (int64_t ch = 0; ch < w.chunks; ch++) {
    int64_t len = chunk_start(&w, ch + 1) - chunk_start(&w, ch);
    if (len > w.pc) w.pc = len;
  }
  w.pc = (w.pc + TILE - 1) / TILE * TILE;
  return w;
}

bool nn_winograd_fits(const nn_direct_geom *g) {
  /* a row of tiles of the output transform lives on the stack: keep it under ~200 KB */
  return g->KH == 3 && g->KW == 3 && g->sh == 1 && g->sw == 1 && g->OH >= 2 && g->OW >= 2 && g->OW <= 8192 &&
         nn_conv_winograd_available();
}

size_t nn_winograd_packed_floats(const nn_direct_geom *g) {
  return (size_t)(16 * wino_of(g).ocp * g->C);
}

/* Per chunk: V[16][pc / 24][C][24] and M[16][ocp][pc]. */
size_t nn_winograd_scratch_floats(const nn_direct_geom *g) {
  wino_geom w = wino_of(g);
  return (size_t)(w.chunks * 16 * (g->C + w.ocp) * w.pc);
}

/* U = G g G^T with G = [1 0 0; .5 .5 .5; .5 -.5 .5; 0 0 1], packed per xi like the direct kernel's
 * weights: [xi][oc block][c][OCB]. */
void nn_winograd_pack(const nn_direct_geom *g, const float *w, float *packed) {
  wino_geom wg = wino_of(g);
  int64_t C = g->C, nob = wg.ocp / OCB;
  for (int64_t oc = 0; oc < wg.ocp; oc++)
    for (int64_t c = 0; c < C; c++) {
      float u[4][4] = {{0}};
      if (oc < g->OC) {
        const float *k = w + (oc * C + c) * 9;
        float t[4][3];
        for (int j = 0; j < 3; j++) { /* G k: rows */
          t[0][j] = k[j];
          t[1][j] = 0.5f * (k[j] + k[3 + j] + k[6 + j]);
          t[2][j] = 0.5f * (k[j] - k[3 + j] + k[6 + j]);
          t[3][j] = k[6 + j];
        }
        for (int i = 0; i < 4; i++) { /* (G k) G^T: columns */
          u[i][0] = t[i][0];
          u[i][1] = 0.5f * (t[i][0] + t[i][1] + t[i][2]);
          u[i][2] = 0.5f * (t[i][0] - t[i][1] + t[i][2]);
          u[i][3] = t[i][2];
        }
      }
      int64_t ob = oc / OCB, j = oc % OCB;
      for (int xi = 0; xi < 16; xi++) packed[((xi * nob + ob) * C + c) * OCB + j] = u[xi / 4][xi % 4];
    }
}

typedef struct {
  const nn_direct_geom *g;
  wino_geom w;
  const float *x, *packed, *bias;
  bool relu;
  float *scratch, *out;
} wino_ctx;

/* B^T d B for the tiles [qs, qe) (at most 24, one block of V) of channel c, stored as 16 contiguous runs
 * of 24: V[xi][block][c][0..24), so that the GEMM reads a block as one run over the channels. B^T rows: (1 0 -1 0) (0 1 1 0) (0 -1 1 0) (0 1 0 -1). The block may
 * span rows of tiles; each row segment is transformed across its tiles. */
static void input_block(const wino_ctx *k, int64_t c, int64_t qs, int64_t qe, float *dst, int64_t xi_stride) {
  const nn_direct_geom *g = k->g;
  int64_t tw = k->w.tw;
  const float *xc = k->x + c * g->H * g->W;
  float v[16][TILE], prow[2 * TILE + 2], ev[TILE + 1], od[TILE + 1], h[4][4][TILE];
  int n = (int)(qe - qs);
  for (int64_t q = qs; q < qe;) {
    int64_t i = q / tw, ja = q - i * tw, jb = ja + (qe - q) < tw ? ja + (qe - q) : tw;
    int len = (int)(jb - ja), t0 = (int)(q - qs);
    /* padded columns 2ja .. 2jb+1, i.e. input columns c0 .. c0 + 2len + 1 */
    int64_t c0 = 2 * ja - g->pw, ncol = 2 * len + 2;
    int64_t lo = c0 < 0 ? -c0 : 0, hi = g->W - c0 < ncol ? g->W - c0 : ncol;
    if (lo > ncol) lo = ncol;
    if (hi < lo) hi = lo;
    for (int r = 0; r < 4; r++) {
      int64_t ih = 2 * i + r - g->ph;
      if (ih >= 0 && ih < g->H) {
        const float *src = xc + ih * g->W + c0;
        for (int64_t m = 0; m < lo; m++) prow[m] = 0.0f;
        for (int64_t m = lo; m < hi; m++) prow[m] = src[m];
        for (int64_t m = hi; m < ncol; m++) prow[m] = 0.0f;
      } else {
        for (int64_t m = 0; m < ncol; m++) prow[m] = 0.0f;
      }
      for (int m = 0; m <= len; m++) {
        ev[m] = prow[2 * m];
        od[m] = prow[2 * m + 1];
      }
      for (int j = 0; j < len; j++) { /* d B across columns 2j .. 2j+3 */
        h[r][0][j] = ev[j] - ev[j + 1];
        h[r][1][j] = od[j] + ev[j + 1];
        h[r][2][j] = ev[j + 1] - od[j];
        h[r][3][j] = od[j] - od[j + 1];
      }
    }
    for (int b = 0; b < 4; b++) /* B^T (d B) down the rows */
      for (int j = 0; j < len; j++) {
        v[0 * 4 + b][t0 + j] = h[0][b][j] - h[2][b][j];
        v[1 * 4 + b][t0 + j] = h[1][b][j] + h[2][b][j];
        v[2 * 4 + b][t0 + j] = h[2][b][j] - h[1][b][j];
        v[3 * 4 + b][t0 + j] = h[1][b][j] - h[3][b][j];
      }
    q += len;
  }
  for (int xi = 0; xi < 16; xi++) { /* tiles past the chunk's end feed only dropped outputs: zeros */
    for (int t = n; t < TILE; t++) v[xi][t] = 0.0f;
    memcpy(dst + xi * xi_stride, v[xi], sizeof v[xi]);
  }
}

/* A^T m A with A^T = (1 1 1 0) (0 1 -1 -1), plus bias and ReLU, for tiles [q0, q1) of channel oc. */
static void output_transform(const wino_ctx *k, int64_t oc, int64_t q0, int64_t q1, const float *M) {
  const nn_direct_geom *g = k->g;
  int64_t tw = k->w.tw, pc = k->w.pc, ocp = k->w.ocp;
  float bias = k->bias ? k->bias[oc] : 0.0f;
  float *o = k->out + oc * g->OH * g->OW;
  float s[2][4][tw], y[2][2][tw];
  for (int64_t i = q0 / tw; i * tw < q1; i++) {
    int64_t ja = q0 > i * tw ? q0 - i * tw : 0, jb = q1 < (i + 1) * tw ? q1 - i * tw : tw;
    const float *m = M + oc * pc + i * tw - q0;
    for (int b = 0; b < 4; b++) {
      const float *m0 = m + (0 * 4 + b) * ocp * pc, *m1 = m + (1 * 4 + b) * ocp * pc;
      const float *m2 = m + (2 * 4 + b) * ocp * pc, *m3 = m + (3 * 4 + b) * ocp * pc;
      for (int64_t j = ja; j < jb; j++) {
        s[0][b][j] = m0[j] + m1[j] + m2[j];
        s[1][b][j] = m1[j] - m2[j] - m3[j];
      }
    }
    for (int r = 0; r < 2; r++)
      for (int64_t j = ja; j < jb; j++) {
        float a = bias + (s[r][0][j] + s[r][1][j] + s[r][2][j]);
        float b = bias + (s[r][1][j] - s[r][2][j] - s[r][3][j]);
        y[r][0][j] = k->relu && a < 0.0f ? 0.0f : a;
        y[r][1][j] = k->relu && b < 0.0f ? 0.0f : b;
      }
    for (int r = 0; r < 2 && 2 * i + r < g->OH; r++) {
      float *row = o + (2 * i + r) * g->OW;
      for (int64_t j = ja; j < jb; j++) {
        row[2 * j] = y[r][0][j];
        if (2 * j + 1 < g->OW) row[2 * j + 1] = y[r][1][j];
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
    float *V = k->scratch + ch * 16 * (C + w->ocp) * w->pc, *M = V + 16 * C * w->pc;
    int64_t q0 = chunk_start(w, ch), q1 = chunk_start(w, ch + 1);
    int64_t used = q1 - q0;
    int64_t nqb = w->pc / TILE;
    for (int64_t qb = 0; qb * TILE < used; qb++)
      for (int64_t c = 0; c < C; c++) {
        int64_t qs = q0 + qb * TILE, qe = qs + TILE < q1 ? qs + TILE : q1;
        input_block(k, c, qs, qe, V + (qb * C + c) * TILE, nqb * C * TILE);
      }
    static const float zero[OCB] = {0};
    for (int xi = 0; xi < 16; xi++) /* a block of V stays in L1 while every filter block passes */
      for (int64_t qb = 0; qb * TILE < used; qb++)
        for (int64_t ob = 0; ob < nob; ob++)
          nn_direct_tile(V + (xi * nqb + qb) * C * TILE, TILE, C, toff0, 1, k->packed + (xi * nob + ob) * C * OCB,
                         zero, 0, M + (xi * w->ocp + ob * OCB) * w->pc + qb * TILE, w->pc);
    for (int64_t oc = 0; oc < g->OC; oc++) output_transform(k, oc, q0, q1, M);
  }
}

void nn_winograd(const nn_direct_geom *g, const float *x, const float *packed, const float *bias, bool relu,
                 float *scratch, float *out) {
  wino_ctx k = {.g = g, .w = wino_of(g), .x = x, .packed = packed, .bias = bias, .relu = relu,
                .scratch = scratch, .out = out};
  nn_parallel_for(k.w.chunks, 1, run_chunks, &k);
}

/* ------------------------------------------- 5x5 stride 2 via space-to-depth */
/* A 5x5 stride-2 convolution is a 3x3 stride-1 one over the 2x2 space-to-depth of its padded input:
 * with kh = 2a + p and kw = 2b + q, xpad[2oh + kh][2ow + kw] = S[c, p, q][oh + a][ow + b], so
 * out = bias + sum over (c, p, q), a, b < 3 of W'[c, p, q][a][b] * S[c, p, q][oh + a][ow + b], where W'
 * takes W[c][2a + p][2b + q] and zero where 2a + p or 2b + q reaches 5. On that 4C-channel 3x3 problem
 * Winograd needs 16 multiplications per 2x2 outputs and channel instead of 4 x 25 = 100 directly:
 * 1.56x fewer, zero taps included. */

static nn_direct_geom s2_geom(const nn_direct_geom *g) {
  return (nn_direct_geom){.C = 4 * g->C, .H = g->OH + 2, .W = g->OW + 2, .OC = g->OC, .KH = 3, .KW = 3,
                          .OH = g->OH, .OW = g->OW, .sh = 1, .sw = 1, .ph = 0, .pw = 0};
}

bool nn_winograd_s2_fits(const nn_direct_geom *g) {
  if (g->KH != 5 || g->KW != 5 || g->sh != 2 || g->sw != 2) return false;
  nn_direct_geom s = s2_geom(g);
  return nn_winograd_fits(&s);
}

size_t nn_winograd_s2_packed_floats(const nn_direct_geom *g) {
  nn_direct_geom s = s2_geom(g);
  return nn_winograd_packed_floats(&s);
}

size_t nn_winograd_s2_scratch_floats(const nn_direct_geom *g) {
  nn_direct_geom s = s2_geom(g);
  return (size_t)(s.C * s.H * s.W) + nn_winograd_scratch_floats(&s);
}

bool nn_winograd_s2_pack(const nn_direct_geom *g, const float *w, float *packed) {
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
  nn_winograd_pack(&s, w2, packed);
  free(w2);
  return true;
}

typedef struct {
  const nn_direct_geom *g, *s;
  const float *x;
  float *S;
} s2d_ctx;

/* Rows r of S (all of its 4C channels, each Hs rows): S[c, p, q][i][j] = x[2i + p - ph][2j + q - pw], 0 outside. */
static void s2d_rows(void *p, int64_t r0, int64_t r1) {
  const s2d_ctx *k = p;
  const nn_direct_geom *g = k->g, *s = k->s;
  for (int64_t r = r0; r < r1; r++) {
    int64_t c2 = r / s->H, i = r % s->H, c = c2 / 4, py = (c2 / 2) % 2, px = c2 % 2;
    float *dst = k->S + r * s->W;
    int64_t y = 2 * i + py - g->ph;
    if (y < 0 || y >= g->H) {
      memset(dst, 0, sizeof(float) * (size_t)s->W);
      continue;
    }
    const float *row = k->x + (c * g->H + y) * g->W;
    for (int64_t j = 0; j < s->W; j++) {
      int64_t xx = 2 * j + px - g->pw;
      dst[j] = xx >= 0 && xx < g->W ? row[xx] : 0.0f;
    }
  }
}

void nn_winograd_s2(const nn_direct_geom *g, const float *x, const float *packed, const float *bias, bool relu,
                    float *scratch, float *out) {
  nn_direct_geom s = s2_geom(g);
  s2d_ctx k = {g, &s, x, scratch};
  nn_parallel_for(s.C * s.H, 8, s2d_rows, &k);
  nn_winograd(&s, scratch, packed, bias, relu, scratch + s.C * s.H * s.W, out);
}
