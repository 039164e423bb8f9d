/* Direct convolution, register-tiled for AVX2 + FMA.
 *
 * Why not im2col + GEMM: for one image the column matrix is KH*KW times the input, and the GEMM that
 * reads it back has a short M (the output channels), so half the time goes to memory traffic.
 *
 * Layout: the zero-padded input is split into sh*sw "phase planes" of Hq x Wq per channel, so tap
 * (kh, kw) of output (oh, ow) is plane[kh % sh][kw % sw][oh + kh / sh][ow + kw / sw]. Outputs are
 * numbered p = oh * Wq + ow (the Wq - OW columns past each row are computed and dropped); then every tap
 * of a run of consecutive p is a contiguous run of one plane at a fixed offset. A tile is 4 output
 * channels x 48 consecutive p. With AVX-512 that is 12 accumulators, and each (channel, tap) step is
 * 3 loads, 4 broadcasts and 12 FMAs; with AVX2 the same tile runs as two halves of 24 in the same
 * shape. Every output is the same chain of single-precision FMAs on either ISA, so the two give the
 * same bits. The forward pass lays the planes out a band of tiles at a time, in L2, just before the
 * output-channel blocks pass over them; a tile that spans row ends stores each row's lanes straight to
 * their place with masked stores. */
#include "conv_direct.h"

#include "internal.h"

#include <stdlib.h>

#if defined(__x86_64__)
#include <immintrin.h>
#define NN_DIRECT_X86 1
#endif


enum { OCB = NN_DIRECT_OCB, TILE = NN_DIRECT_TILE };

/* NNCORE_CONV=gemm (im2col + GEMM only) or =direct (no Winograd) picks a path by hand, for
 * benchmarks and for telling the paths apart; unset, every path the CPU runs is used.
 * NNCORE_ISA=generic|avx2|avx512 caps the instruction set of the kernels (generic: im2col + GEMM), so
 * one machine can test every path; a level the CPU lacks falls back to the best one it has. */
static int g_isa = -1;  /* 0 generic, 1 AVX2 + FMA, 2 AVX-512 */
static int g_mode = -1; /* 0 GEMM only, 1 direct, 2 direct and Winograd */

static int cpu_isa(void) {
  int isa = 0;
#ifdef NN_DIRECT_X86
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) isa = 1;
  if (isa && __builtin_cpu_supports("avx512f")) isa = 2;
#endif
  return isa;
}

static int isa_level(const char *name) {
  return !name ? 3 : !strcmp(name, "generic") ? 0 : !strcmp(name, "avx2") ? 1 : !strcmp(name, "avx512") ? 2 : -1;
}

static void choose(int cap) {
  int isa = cpu_isa();
  if (cap >= 0 && cap < isa) isa = cap;
  int mode = isa ? 2 : 0;
  const char *e = getenv("NNCORE_CONV");
  if (e && strcmp(e, "gemm") == 0) mode = 0;
  if (e && strcmp(e, "direct") == 0 && mode) mode = 1;
  g_isa = isa;
  g_mode = mode;
}

static int conv_mode(void) {
  if (g_mode < 0) choose(isa_level(getenv("NNCORE_ISA")));
  return g_mode;
}

const char *nn_conv_isa(void) {
  conv_mode();
  return g_isa == 2 ? "avx512" : g_isa == 1 ? "avx2" : "generic";
}

bool nn_set_conv_isa(const char *isa) {
  int cap = isa_level(isa);
  if (cap < 0 || cap > 2) return false;
  choose(cap);
  return true;
}

bool nn_conv_direct_available(void) { return conv_mode() >= 1; }
bool nn_conv_winograd_available(void) { return conv_mode() >= 2; }

typedef struct {
  int64_t Hq, Wq, plane, chan; /* plane size, and one channel's sh*sw planes */
  int64_t L;                   /* outputs p = 0 .. L-1 cover every valid (oh, ow) */
} planes_geom;

static planes_geom planes_of(const nn_direct_geom *g) {
  planes_geom q;
  q.Hq = g->OH + (g->KH - 1) / g->sh;
  q.Wq = g->OW + (g->KW - 1) / g->sw;
  q.plane = q.Hq * q.Wq;
  q.chan = q.plane * g->sh * g->sw;
  q.L = (g->OH - 1) * q.Wq + g->OW;
  return q;
}

static int64_t oc_blocks(const nn_direct_geom *g) { return (g->OC + OCB - 1) / OCB; }

size_t nn_conv_direct_packed_floats(const nn_direct_geom *g) {
  return (size_t)(oc_blocks(g) * OCB * g->C * g->KH * g->KW);
}

/* The last tile of the last channel reads up to TILE - 1 floats past the planes. */
static size_t full_planes_floats(const nn_direct_geom *g) {
  planes_geom q = planes_of(g);
  return (size_t)(g->C * q.chan + TILE + 8);
}

/* The forward pass lays the input out one band of tiles at a time, just before the kernel reads it, so
 * the planes are written and read in L2 instead of making a round trip through memory (for a stride-2
 * conv on a large map that round trip cost as much as the arithmetic). A band is a run of whole tiles
 * (bands of whole rows left a part-empty tile at each band's end) and its planes, the plane rows those
 * tiles read, take about BAND_BYTES; rows two bands share are laid out twice. */
enum { BAND_BYTES = 256 * 1024, WEIGHTS_IN_L2 = 512 * 1024 };

typedef struct {
  int64_t tiles, n;   /* tiles per band, bands */
  int64_t rows;       /* the most plane rows a band reads */
  size_t floats;      /* one band's planes, with the kernel's overrun */
} band_geom;

/* plane rows read by the tiles [t0, t1): the rows their outputs are on, and (KH - 1) / sh below */
static int64_t band_rows(const nn_direct_geom *g, const planes_geom *q, int64_t t0, int64_t t1, int64_t *first) {
  int64_t end = t1 * TILE < q->L ? t1 * TILE : q->L;
  *first = t0 * TILE / q->Wq;
  return (end - 1) / q->Wq - *first + 1 + (g->KH - 1) / g->sh;
}

static band_geom bands_of(const nn_direct_geom *g) {
  planes_geom q = planes_of(g);
  int64_t ex = (g->KH - 1) / g->sh, per_row = g->C * g->sh * g->sw * q.Wq, ntiles = (q.L + TILE - 1) / TILE;
  int64_t rows = (int64_t)(BAND_BYTES / sizeof(float)) / (per_row > 0 ? per_row : 1) - ex - 1; /* output rows */
  band_geom b;
  b.tiles = rows > 0 ? rows * q.Wq / TILE : 1;
  if (b.tiles < 1) b.tiles = 1;
  if (b.tiles > ntiles) b.tiles = ntiles;
  b.n = (ntiles + b.tiles - 1) / b.tiles;
  b.tiles = (ntiles + b.n - 1) / b.n; /* bands of near-equal size */
  b.n = (ntiles + b.tiles - 1) / b.tiles;
  b.rows = (b.tiles * TILE - 1) / q.Wq + 2 + ex; /* a run of tiles * TILE outputs touches at most this many */
  if (b.rows > q.Hq) b.rows = q.Hq;
  b.floats = (size_t)((g->C * g->sh * g->sw * b.rows * q.Wq + TILE + 8 + 15) / 16 * 16);
  return b;
}

static bool reads_in_place(const nn_direct_geom *g) {
  return g->KH == 1 && g->KW == 1 && g->sh == 1 && g->sw == 1 && !g->ph && !g->pw && planes_of(g).plane >= TILE;
}

static int band_parts(const nn_direct_geom *g) {
  int64_t items = bands_of(g).n * oc_blocks(g), nt = nn_get_num_threads();
  return (int)(items < nt ? items : nt);
}

static int cols_parts(const nn_direct_geom *g, int64_t items) {
  (void)g;
  int64_t nt = nn_get_num_threads();
  return (int)(items < nt ? items : nt);
}

size_t nn_conv_direct_input_floats(const nn_direct_geom *g) {
  /* the last tile's columns, zero-padded; then a tile's columns per thread */
  if (reads_in_place(g)) return (size_t)((g->C * TILE + 15) / 16 * 16 + nn_get_num_threads() * g->C * TILE);
  return (size_t)band_parts(g) * bands_of(g).floats;
}

void nn_conv_direct_pack(const nn_direct_geom *g, const float *w, float *packed) {
  int64_t T = g->KH * g->KW, C = g->C;
  for (int64_t ob = 0; ob < oc_blocks(g); ob++)
    for (int64_t c = 0; c < C; c++)
      for (int64_t t = 0; t < T; t++)
        for (int j = 0; j < OCB; j++) {
          int64_t oc = ob * OCB + j;
          float v = 0.0f;
          if (oc < g->OC) v = w[(oc * C + c) * T + t];
          packed[((ob * C + c) * T + t) * OCB + j] = v;
        }
}

/* ------------------------------------------------------------ phase planes */

typedef struct {
  const nn_direct_geom *g;
  planes_geom q;     /* of the planes written: all of them, or a band's */
  int64_t i0, rows;  /* plane rows i0 .. i0 + rows - 1 of every (channel, row phase) */
  const float *x;
  float *planes;
} prep_ctx;

/* Floats ahead of the read to prefetch: a conv's input comes from memory, and the hardware prefetcher
 * alone left the layout waiting on it (a third of a stride-2 conv's time). */
enum { PREFETCH_AHEAD = 1024 };
static inline void nn_prefetch(const float *p) { __builtin_prefetch(p, 0, 3); }

#ifdef NN_DIRECT_X86
__attribute__((target("avx2"))) static int64_t split_pairs_avx2(const float *src, int64_t n, float *ev, float *od) {
  int64_t k = 0;
  for (; 2 * k + 16 <= n; k += 8) {
    nn_prefetch(src + 2 * k + PREFETCH_AHEAD);
    __m256 a = _mm256_loadu_ps(src + 2 * k), b = _mm256_loadu_ps(src + 2 * k + 8);
    __m256 e = _mm256_shuffle_ps(a, b, _MM_SHUFFLE(2, 0, 2, 0)); /* a0 a2 b0 b2 | a4 a6 b4 b6 */
    __m256 o = _mm256_shuffle_ps(a, b, _MM_SHUFFLE(3, 1, 3, 1));
    _mm256_storeu_ps(ev + k, _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(e), 0xd8)));
    _mm256_storeu_ps(od + k, _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(o), 0xd8)));
  }
  return k;
}
#endif

/* Splits a row of n floats into its sw column phases: phase[k][m] = src[m * sw + k]. */
static void split_columns(const float *src, int64_t n, int sw, int64_t stride, float *phase) {
  int64_t m0 = 0;
#ifdef NN_DIRECT_X86
  if (sw == 2 && nn_conv_direct_available()) m0 = split_pairs_avx2(src, n, phase, phase + stride);
#endif
  for (int k = 0; k < sw; k++)
    for (int64_t m = m0; m * sw + k < n; m++) phase[k * stride + m] = src[m * sw + k];
}

/* Each input row is read once: split into its column phases, then each phase lands, shifted by the
 * padding and zero-filled, in the plane row it belongs to. Work items are the plane rows (channel,
 * row, row phase: the input's rows in memory order), so that even a 3-channel input splits evenly over
 * the threads. Rows too wide for the split buffer on the stack are gathered with a stride instead. */
static void prep_rows(void *p, int64_t r0, int64_t r1) {
  prep_ctx *pc = p;
  const nn_direct_geom *g = pc->g;
  const planes_geom *q = &pc->q;
  int sw = g->sw;
  int64_t stride = (g->W + sw - 1) / sw; /* longest column phase */
  float phase[4096];
  bool split = sw > 1 && sw * stride <= 4096;
  for (int64_t r = r0; r < r1; r++) {
    /* (channel, plane row, row phase): input rows in the order they lie in memory */
    int64_t c = r / (g->sh * pc->rows), a = r % g->sh, i = pc->i0 + r / g->sh % pc->rows;
    int64_t ih = i * g->sh + a - g->ph;
    bool in = ih >= 0 && ih < g->H;
    const float *row = pc->x + c * g->H * g->W + ih * g->W;
    if (in && !split) /* (the split prefetches as it goes) */
      for (int64_t j = 0; j < g->W; j += 16) nn_prefetch(row + j + PREFETCH_AHEAD);
    if (in && split) split_columns(row, g->W, sw, stride, phase);
    for (int b = 0; b < sw; b++) {
      float *dst = pc->planes + c * q->chan + (a * sw + b) * q->plane + (i - pc->i0) * q->Wq;
      if (!in) {
        memset(dst, 0, (size_t)q->Wq * sizeof *dst);
        continue;
      }
      /* plane column j holds input column j*sw + b - pw = (j + shift)*sw + k */
      int64_t off = b - g->pw, k = ((off % sw) + sw) % sw, shift = (off - k) / sw;
      int64_t len = (g->W - k + sw - 1) / sw; /* entries of phase k */
      int64_t lo = shift < 0 ? -shift : 0, hi = len - shift;
      if (lo > q->Wq) lo = q->Wq;
      if (hi > q->Wq) hi = q->Wq;
      if (hi < lo) hi = lo;
      memset(dst, 0, (size_t)lo * sizeof *dst);
      if (sw == 1)
        memcpy(dst + lo, row + lo + shift, (size_t)(hi - lo) * sizeof *dst);
      else if (split)
        memcpy(dst + lo, phase + k * stride + lo + shift, (size_t)(hi - lo) * sizeof *dst);
      else
        for (int64_t j = lo; j < hi; j++) dst[j] = row[(j + shift) * sw + k];
      memset(dst + hi, 0, (size_t)(q->Wq - hi) * sizeof *dst);
    }
  }
}

static void prep_planes(const nn_direct_geom *g, planes_geom q, const float *x, float *planes) {
  prep_ctx pc = {g, q, 0, q.Hq, x, planes};
  nn_parallel_for(g->C * g->sh * q.Hq, 8, prep_rows, &pc);
  memset(planes + g->C * q.chan, 0, (TILE + 8) * sizeof(float));
}

/* ------------------------------------------------------------------ kernel */

#ifdef NN_DIRECT_X86
/* x sigmoid(x) on a register: nn_silu_fast's method (e = exp(-|x|) by nn_exp_nonpositive's range
 * reduction and polynomial, then (x < 0 ? x e : x) / (1 + e), chosen by x's sign bit), with its
 * polynomial in fused multiply-adds: a fused SiLU is the conv's epilogue, and on a small conv (a 1x1 on
 * 32 channels, a stem on 3) the epilogue cost as much as the sums. Both widths run the same operations,
 * so AVX2 and AVX-512 give the same bits; against the scalar pass the difference is rounding (< 1e-6
 * relative). */
#define SILU_VEC(BITS, TARGET)                                                                                 \
  __attribute__((target(TARGET))) static inline __m##BITS silu##BITS(__m##BITS x) {                              \
    const __m##BITS##i sign = _mm##BITS##_set1_epi32(INT32_MIN);                                                  \
    __m##BITS##i xi = _mm##BITS##_castps_si##BITS(x);                                                           \
    __m##BITS v = _mm##BITS##_castsi##BITS##_ps(_mm##BITS##_or_si##BITS(xi, sign)); /* -|x| */                  \
    v = _mm##BITS##_max_ps(v, _mm##BITS##_set1_ps(-87.0f));                                                     \
    __m##BITS big = _mm##BITS##_set1_ps(12582912.0f);                                                           \
    __m##BITS n = _mm##BITS##_sub_ps(_mm##BITS##_fmadd_ps(v, _mm##BITS##_set1_ps(1.44269504088896341f), big), big); \
    __m##BITS r = _mm##BITS##_fnmadd_ps(n, _mm##BITS##_set1_ps(0.693359375f), v);                               \
    r = _mm##BITS##_fmadd_ps(n, _mm##BITS##_set1_ps(2.12194440e-4f), r);                                       \
    __m##BITS p = _mm##BITS##_set1_ps(1.9875691500e-4f);                                                        \
    p = _mm##BITS##_fmadd_ps(p, r, _mm##BITS##_set1_ps(1.3981999507e-3f));                                     \
    p = _mm##BITS##_fmadd_ps(p, r, _mm##BITS##_set1_ps(8.3334519073e-3f));                                     \
    p = _mm##BITS##_fmadd_ps(p, r, _mm##BITS##_set1_ps(4.1665795894e-2f));                                     \
    p = _mm##BITS##_fmadd_ps(p, r, _mm##BITS##_set1_ps(1.6666665459e-1f));                                     \
    p = _mm##BITS##_fmadd_ps(p, r, _mm##BITS##_set1_ps(5.0000001201e-1f));                                     \
    __m##BITS one = _mm##BITS##_set1_ps(1.0f);                                                                   \
    p = _mm##BITS##_add_ps(_mm##BITS##_fmadd_ps(_mm##BITS##_mul_ps(p, r), r, r), one);                         \
    __m##BITS##i bits = _mm##BITS##_slli_epi32(_mm##BITS##_add_epi32(_mm##BITS##_cvttps_epi32(n), _mm##BITS##_set1_epi32(127)), 23); \
    __m##BITS e = _mm##BITS##_mul_ps(p, _mm##BITS##_castsi##BITS##_ps(bits));                                   \
    __m##BITS##i neg = _mm##BITS##_srai_epi32(xi, 31); /* all ones where x's sign bit is set */                  \
    __m##BITS pick = _mm##BITS##_castsi##BITS##_ps(_mm##BITS##_or_si##BITS(                                     \
        _mm##BITS##_and_si##BITS(neg, _mm##BITS##_castps_si##BITS(e)), _mm##BITS##_andnot_si##BITS(neg, _mm##BITS##_castps_si##BITS(one)))); \
    return _mm##BITS##_div_ps(_mm##BITS##_mul_ps(x, pick), _mm##BITS##_add_ps(one, e));                          \
  }
SILU_VEC(256, "avx2,fma")
SILU_VEC(512, "avx512f")

/* The register tile at one vector width: BITS 256 (AVX2, 8 lanes, a tile of 4 x 24) or 512 (AVX-512, 16
 * lanes, 4 x 48). One definition for both, so the two widths run the same chain per output. */
#define DIRECT_TILE(NAME, BITS, L, TARGET)                                                                     \
  __attribute__((target(TARGET))) static void NAME(const float *xs, int64_t chan, int64_t C, const int64_t *toff, \
                                                   int T, const float *wp, const float *bias, int flags, float *o, \
                                                   int64_t ldo, const nn_tile_seg *seg, int nseg, int lane0) {  \
    __m##BITS a[OCB][3];                                                                                         \
    for (int j = 0; j < OCB; j++) {                                                                              \
      a[j][0] = a[j][1] = a[j][2] = _mm##BITS##_set1_ps(bias[j]);                                                \
      if (flags & NN_DIRECT_ACCUMULATE)                                                                          \
        for (int v = 0; v < 3; v++) a[j][v] = _mm##BITS##_add_ps(_mm##BITS##_loadu_ps(o + j * ldo + v * L), a[j][v]); \
    }                                                                                                            \
    for (int64_t c = 0; c < C; c++, xs += chan)                                                                  \
      for (int t = 0; t < T; t++, wp += OCB) {                                                                   \
        const float *s = xs + toff[t];                                                                           \
        __m##BITS x0 = _mm##BITS##_loadu_ps(s), x1 = _mm##BITS##_loadu_ps(s + L), x2 = _mm##BITS##_loadu_ps(s + 2 * L); \
        _Pragma("GCC unroll 4") for (int j = 0; j < OCB; j++) {                                                  \
          __m##BITS w = _mm##BITS##_set1_ps(wp[j]);                                                              \
          a[j][0] = _mm##BITS##_fmadd_ps(w, x0, a[j][0]);                                                        \
          a[j][1] = _mm##BITS##_fmadd_ps(w, x1, a[j][1]);                                                        \
          a[j][2] = _mm##BITS##_fmadd_ps(w, x2, a[j][2]);                                                        \
        }                                                                                                        \
      }                                                                                                          \
    /* the activation over the whole tile first, so the twelve chains overlap */                              \
    if (flags & NN_DIRECT_RELU)                                                                                  \
      _Pragma("GCC unroll 4") for (int j = 0; j < OCB; j++)                                                      \
        for (int v = 0; v < 3; v++) a[j][v] = _mm##BITS##_max_ps(a[j][v], _mm##BITS##_setzero_ps());            \
    if (flags & NN_DIRECT_SILU)                                                                                  \
      _Pragma("GCC unroll 4") for (int j = 0; j < OCB; j++)                                                      \
        for (int v = 0; v < 3; v++) a[j][v] = silu##BITS(a[j][v]);                                              \
    for (int j = 0; j < OCB; j++)                                                                                \
      for (int v = 0; v < 3; v++) {                                                                              \
        __m##BITS r = a[j][v];                                                                                   \
        if (!nseg) {                                                                                             \
          _mm##BITS##_storeu_ps(o + j * ldo + v * L, r);                                                         \
          continue;                                                                                              \
        }                                                                                                        \
        for (int s = 0; s < nseg; s++) {                                                                         \
          unsigned m = (unsigned)(seg[s].lanes >> (lane0 + v * L)) & ((1u << L) - 1);                           \
          float *dst = o + j * ldo + seg[s].delta + lane0 + v * L;                                               \
          if (m == (1u << L) - 1)                                                                                \
            _mm##BITS##_storeu_ps(dst, r);                                                                       \
          else if (m)                                                                                            \
            STORE_MASKED_##BITS(dst, m, r);                                                                      \
        }                                                                                                        \
      }                                                                                                          \
  }
#define STORE_MASKED_512(dst, m, r) _mm512_mask_storeu_ps(dst, (__mmask16)(m), r)
#define STORE_MASKED_256(dst, m, r)                                                                            \
  _mm256_maskstore_ps(dst,                                                                                     \
                      _mm256_cmpeq_epi32(_mm256_and_si256(_mm256_set1_epi32((int)(m)), _mm256_setr_epi32(1, 2, 4, 8, 16, 32, 64, 128)), \
                                         _mm256_setr_epi32(1, 2, 4, 8, 16, 32, 64, 128)),                         \
                      r)
DIRECT_TILE(tile_avx2, 256, 8, "avx2,fma")
DIRECT_TILE(tile_avx512, 512, 16, "avx512f")
#endif

void nn_direct_tile(const float *xs, int64_t chan, int64_t C, const int64_t *toff, int T, const float *wp,
                    const float *bias, int flags, float *out, int64_t ldo) {
#ifdef NN_DIRECT_X86
  if (g_isa < 0) conv_mode();
  if (g_isa == 2) {
    tile_avx512(xs, chan, C, toff, T, wp, bias, flags, out, ldo, NULL, 0, 0);
    return;
  }
  /* the two halves of the tile, each the AVX2 kernel's 4 x 24 */
  tile_avx2(xs, chan, C, toff, T, wp, bias, flags, out, ldo, NULL, 0, 0);
  tile_avx2(xs + TILE / 2, chan, C, toff, T, wp, bias, flags, out + TILE / 2, ldo, NULL, 0, 0);
#else
  (void)xs, (void)chan, (void)C, (void)toff, (void)T, (void)wp, (void)bias, (void)flags, (void)out, (void)ldo;
#endif
}

void nn_direct_tile_segs(const float *xs, int64_t chan, int64_t C, const int64_t *toff, int T, const float *wp,
                         const float *bias, int flags, float *out, int64_t ldo, const nn_tile_seg *seg, int n) {
#ifdef NN_DIRECT_X86
  if (g_isa < 0) conv_mode();
  flags &= ~NN_DIRECT_ACCUMULATE;
  if (g_isa == 2) {
    tile_avx512(xs, chan, C, toff, T, wp, bias, flags, out, ldo, seg, n, 0);
    return;
  }
  tile_avx2(xs, chan, C, toff, T, wp, bias, flags, out, ldo, seg, n, 0);
  tile_avx2(xs + TILE / 2, chan, C, toff, T, wp, bias, flags, out, ldo, seg, n, TILE / 2);
#else
  (void)xs, (void)chan, (void)C, (void)toff, (void)T, (void)wp, (void)bias, (void)flags, (void)out, (void)ldo, (void)seg, (void)n;
#endif
}

typedef struct {
  const nn_direct_geom *g;
  planes_geom q;
  const float *planes, *packed, *bias;
  int flags;
  int64_t toff[64];
  int T;
  int64_t nob, group; /* output-channel blocks; tiles per group */
  /* where flat output p = row * Wq + col (col < valid_w) goes: out + oc * o_chan + row * o_row + col * o_col
   * (a transposed convolution's phase lands every stride-th element) */
  float *out;
  int64_t OC, valid_w, o_chan, o_row, o_col;
  /* with tail set, tiles from tail_p0 on read it (channels tail_chan apart) instead of the planes */
  const float *tail;
  int64_t tail_p0, tail_chan;
  int64_t p_base; /* the planes hold outputs from p_base on (a band's) */
  /* reading x in place (a 1x1 conv): each tile's columns are first copied here, C x TILE floats, so
   * that the output-channel blocks read them from L1 (planes a multiple of 4 KB apart map every
   * channel's columns to the same L1 sets, and each block read them again from L2) */
  float *cols;
} kern_ctx;

/* Moves the valid outputs of a tile (columns < valid_w of p in [p0, p0 + TILE) ∩ [0, L)) between the tile
 * buffer and the output: out of the buffer after the kernel, into it first when accumulating. */
static void copy_tile(const kern_ctx *k, int64_t ob, int64_t p0, float buf[OCB][TILE], bool to_out) {
  int64_t end = p0 + TILE < k->q.L ? p0 + TILE : k->q.L;
  for (int j = 0; j < OCB; j++) {
    int64_t oc = ob * OCB + j;
    if (oc >= k->OC) break;
    float *o = k->out + oc * k->o_chan;
    int64_t row = p0 / k->q.Wq, col = p0 % k->q.Wq;
    for (int64_t p = p0; p < end;) {
      /* one row segment at a time */
      int64_t run = k->q.Wq - col < end - p ? k->q.Wq - col : end - p;
      int64_t valid = col < k->valid_w ? (k->valid_w - col < run ? k->valid_w - col : run) : 0;
      float *dst = o + row * k->o_row + col * k->o_col, *b = &buf[j][p - p0];
      if (k->o_col == 1 && valid > 0) {
        if (to_out)
          memcpy(dst, b, (size_t)valid * sizeof(float));
        else
          memcpy(b, dst, (size_t)valid * sizeof(float));
      } else {
        for (int64_t t = 0; t < valid; t++) {
          if (to_out)
            dst[t * k->o_col] = b[t];
          else
            b[t] = dst[t * k->o_col];
        }
      }
      p += run;
      row++;
      col = 0;
    }
  }
}

/* The row segments of the tile at p0: lane i of segment s is output delta + i of each channel. */
static int tile_segments(const kern_ctx *k, int64_t p0, nn_tile_seg *seg) {
  int64_t end = p0 + TILE < k->q.L ? p0 + TILE : k->q.L;
  int64_t row = p0 / k->q.Wq, col = p0 % k->q.Wq;
  int n = 0;
  for (int64_t p = p0; p < end; row++, col = 0) {
    int64_t run = k->q.Wq - col < end - p ? k->q.Wq - col : end - p;
    int64_t valid = col < k->valid_w ? (k->valid_w - col < run ? k->valid_w - col : run) : 0;
    if (valid > 0) {
      seg[n].delta = row * k->o_row + col - (p - p0);
      seg[n].lanes = (valid >= 64 ? ~0ull : (1ull << valid) - 1) << (p - p0);
      n++;
    }
    p += run;
  }
  return n;
}

/* Items are (group, output-channel block), group-major. A thread walks its items one group at a time,
 * tiles outer and blocks inner, so a tile's input stays in L1 while the packed weights stream from L2. */
static void run_items(void *p, int64_t i0, int64_t i1) {
  kern_ctx *k = p;
  const nn_direct_geom *g = k->g;
  int64_t ntiles = (k->q.L + TILE - 1) / TILE, wblock = g->C * k->T * OCB;
  float buf[OCB][TILE];
  for (int64_t it = i0; it < i1;) {
    int64_t grp = it / k->nob, ob0 = it % k->nob;
    int64_t ob1 = (grp + 1) * k->nob < i1 ? k->nob : i1 - grp * k->nob;
    int64_t t0 = grp * k->group, t1 = (grp + 1) * k->group < ntiles ? (grp + 1) * k->group : ntiles;
    /* Tiles outer keep a tile's input in L1 while the weights stream from L2; when the weights are
     * larger than L2 can hold beside the planes, blocks go outer instead and the planes stream from L2. */
    bool blocks_outer = (ob1 - ob0) * wblock * (int64_t)sizeof(float) > WEIGHTS_IN_L2;
    int64_t n_inner = blocks_outer ? t1 - t0 : ob1 - ob0;
    for (int64_t outer = 0; outer < (blocks_outer ? ob1 - ob0 : t1 - t0) * n_inner; outer++) {
      int64_t tile = t0 + (blocks_outer ? outer % n_inner : outer / n_inner);
      int64_t ob = ob0 + (blocks_outer ? outer / n_inner : outer % n_inner);
      int64_t p0 = tile * TILE;
      bool copied = k->cols && !blocks_outer && !(k->tail && p0 >= k->tail_p0);
      if (copied && ob == ob0) /* the tile's columns, once for all its blocks; the next tile's prefetched */
        for (int64_t c = 0; c < g->C; c++) {
          const float *src = k->planes + c * k->q.chan + p0;
          for (int l = 0; l < TILE; l += 16) nn_prefetch(src + 2 * TILE + l);
          memcpy(k->cols + c * TILE, src, TILE * sizeof(float));
        }
      {
        float bias[OCB] = {0};
        for (int j = 0; j < OCB; j++)
          if (k->bias && ob * OCB + j < k->OC) bias[j] = k->bias[ob * OCB + j];
        int64_t col = p0 % k->q.Wq;
        bool in_tail = k->tail && p0 >= k->tail_p0;
        const float *in = in_tail ? k->tail + (p0 - k->tail_p0) : copied ? k->cols : k->planes + (p0 - k->p_base);
        int64_t chan = in_tail ? k->tail_chan : copied ? TILE : k->q.chan;
        /* rows without a gap between them (1x1 convs) take whole tiles across row ends too */
        bool dense = k->q.Wq == k->valid_w && k->o_row == k->q.Wq && p0 + TILE <= k->q.L;
        if (k->o_col == 1 && (col + TILE <= k->valid_w || dense) && (ob + 1) * OCB <= k->OC) { /* straight to the output */
          float *o = k->out + ob * OCB * k->o_chan + p0 / k->q.Wq * k->o_row + col;
          nn_direct_tile(in, chan, g->C, k->toff, k->T, k->packed + ob * wblock, bias, k->flags, o, k->o_chan);
          continue;
        }
        if (k->o_col == 1 && !(k->flags & NN_DIRECT_ACCUMULATE) && (ob + 1) * OCB <= k->OC) {
          /* a tile across row ends: each row's valid lanes stored straight to their place */
          nn_tile_seg seg[TILE];
          int n = tile_segments(k, p0, seg);
          nn_direct_tile_segs(in, chan, g->C, k->toff, k->T, k->packed + ob * wblock, bias, k->flags,
                              k->out + ob * OCB * k->o_chan, k->o_chan, seg, n);
          continue;
        }
        if (k->flags & NN_DIRECT_ACCUMULATE) {
          memset(buf, 0, sizeof buf); /* lanes that are no output stay finite */
          copy_tile(k, ob, p0, buf, false);
        }
        nn_direct_tile(in, chan, g->C, k->toff, k->T, k->packed + ob * wblock, bias, k->flags, buf[0], TILE);
        copy_tile(k, ob, p0, buf, true);
      }
    }
    it = grp * k->nob + ob1;
  }
}

/* Groups tiles so that a group's slice of the planes (C * phases runs of group * TILE floats) fits in
 * ~128 KB, then runs (group, output-channel block) items on the pool. */
/* Sets k's output-channel blocks and tiles per group; returns the number of groups. */
static int64_t plan_groups(kern_ctx *k, int phases) {
  k->nob = (k->OC + OCB - 1) / OCB;
  int64_t ntiles = (k->q.L + TILE - 1) / TILE;
  int64_t per_tile = k->g->C * phases * TILE * (int64_t)sizeof(float);
  int64_t most = 131072 / (per_tile > 0 ? per_tile : 1);
  if (most < 1) most = 1;
  /* groups of near-equal size: the pool splits items evenly, so a short last group would leave one
   * thread idle (46 tiles as 42 + 4 ran 10:1 between two threads) */
  int64_t groups = (ntiles + most - 1) / most;
  k->group = (ntiles + groups - 1) / groups;
  return (ntiles + k->group - 1) / k->group;
}

static void run_kernel(kern_ctx *k, int phases) {
  int64_t groups = plan_groups(k, phases);
  nn_parallel_for(groups * k->nob, 1, run_items, k);
}

typedef struct {
  const kern_ctx *k;
  float *bufs; /* a tile's input columns per part */
} cols_run;

static void run_items_part(void *p, int part, int64_t i0, int64_t i1) {
  const cols_run *cr = p;
  kern_ctx kb = *cr->k;
  kb.cols = cr->bufs + (size_t)part * (size_t)(kb.g->C * TILE);
  run_items(&kb, i0, i1);
}

static void set_taps(kern_ctx *k) {
  const nn_direct_geom *g = k->g;
  k->T = (int)(g->KH * g->KW);
  for (int kh = 0, t = 0; kh < g->KH; kh++)
    for (int kw = 0; kw < g->KW; kw++, t++)
      k->toff[t] = ((kh % g->sh) * g->sw + kw % g->sw) * k->q.plane + (kh / g->sh) * k->q.Wq + kw / g->sw;
}

typedef struct {
  const kern_ctx *k; /* the whole output's */
  band_geom b;
  const float *x;
  float *scratch;    /* one band's planes per part */
} band_run;

/* Items are (band, output-channel block), band-major; a part lays out each band it starts, in its own
 * scratch, and runs its blocks over it. */
static void run_bands(void *p, int part, int64_t i0, int64_t i1) {
  const band_run *br = p;
  const kern_ctx *k = br->k;
  const nn_direct_geom *g = k->g;
  int64_t ntiles = (k->q.L + TILE - 1) / TILE;
  float *planes = br->scratch + (size_t)part * br->b.floats;
  for (int64_t it = i0; it < i1;) {
    int64_t band = it / k->nob;
    int64_t ob1 = i1 - band * k->nob < k->nob ? i1 - band * k->nob : k->nob;
    int64_t t0 = band * br->b.tiles, t1 = t0 + br->b.tiles < ntiles ? t0 + br->b.tiles : ntiles, first;
    kern_ctx kb = *k;
    kb.q.Hq = band_rows(g, &k->q, t0, t1, &first);
    kb.q.plane = kb.q.Hq * kb.q.Wq;
    kb.q.chan = kb.q.plane * g->sh * g->sw;
    prep_ctx pc = {g, kb.q, first, kb.q.Hq, br->x, planes};
    prep_rows(&pc, 0, g->C * g->sh * kb.q.Hq);
    memset(planes + g->C * kb.q.chan, 0, (TILE + 8) * sizeof(float));
    kb.planes = planes;
    kb.p_base = first * kb.q.Wq; /* output p reads the band from p - p_base */
    kb.q.L = k->q.L;
    kb.group = br->b.tiles;
    set_taps(&kb);
    run_items(&kb, it, band * k->nob + ob1);
    it = band * k->nob + ob1;
  }
}

void nn_conv_direct(const nn_direct_geom *g, const float *x, const float *packed, const float *bias,
                    int flags, float *scratch, float *out) {
  planes_geom q = planes_of(g);
  kern_ctx k = {.g = g, .q = q, .planes = scratch, .packed = packed, .bias = bias, .flags = flags, .out = out,
                .OC = g->OC, .valid_w = g->OW, .o_chan = g->OH * g->OW, .o_row = g->OW, .o_col = 1};
  if (reads_in_place(g)) {
    /* a 1x1 conv's plane is its input: read x itself, but the last tile (which would read past x's end)
     * from a zero-padded copy of its columns */
    int64_t last = (q.L - 1) / TILE * TILE;
    float *tail = scratch;
    for (int64_t c = 0; c < g->C; c++) {
      int64_t n = q.L - last;
      memcpy(tail + c * TILE, x + c * q.plane + last, (size_t)n * sizeof *tail);
      memset(tail + c * TILE + n, 0, (size_t)(TILE - n) * sizeof *tail);
    }
    k.planes = x, k.tail = tail, k.tail_p0 = last, k.tail_chan = TILE;
    set_taps(&k);
    int64_t items = plan_groups(&k, 1) * k.nob;
    cols_run cr = {&k, scratch + (g->C * TILE + 15) / 16 * 16};
    nn_parallel_parts(items, cols_parts(g, items), run_items_part, &cr);
    return;
  }
  k.nob = oc_blocks(g);
  band_run br = {.k = &k, .b = bands_of(g), .x = x, .scratch = scratch};
  nn_parallel_parts(br.b.n * k.nob, band_parts(g), run_bands, &br);
}

/* ------------------------------------------------------ transposed conv */
/* Output phase (a, b) = the outputs (sh*m + a, sw*n + b). Its taps are the kh = a + ph (mod sh) (and the
 * same for kw), and output row m reads input row m + (a + ph - kh) / sh: a stride-1 convolution over the
 * input with a sub-kernel, so each phase runs on the same kernel, with no multiplications by the zeros a
 * scatter formulation inserts. */

typedef struct {
  int64_t pt, pl, Hq, Wq; /* the input padded by pt rows on top and pl columns on the left */
} tplanes;

static int64_t phase_len(int64_t total, int s, int a) { return total > a ? (total - a + s - 1) / s : 0; }
/* e = (a + p - k) / s for the taps of phase a: k = (a + p) mod s, then every s-th */
static int64_t tap0(int a, int p, int s) { return ((a + p) % s + s) % s; }

static tplanes tplanes_of(const nn_direct_geom *g) {
  /* rows read: m + e over the phases, m < M_a, e = (a + ph - kh) / sh */
  int64_t lo_r = 0, hi_r = g->H - 1, lo_c = 0, hi_c = g->W - 1;
  for (int a = 0; a < g->sh; a++)
    for (int64_t kh = tap0(a, g->ph, g->sh); kh < g->KH; kh += g->sh) {
      int64_t e = (a + g->ph - kh) / g->sh, M = phase_len(g->OH, g->sh, a);
      if (M == 0) continue;
      if (e < lo_r) lo_r = e;
      if (M - 1 + e > hi_r) hi_r = M - 1 + e;
    }
  for (int b = 0; b < g->sw; b++)
    for (int64_t kw = tap0(b, g->pw, g->sw); kw < g->KW; kw += g->sw) {
      int64_t e = (b + g->pw - kw) / g->sw, M = phase_len(g->OW, g->sw, b);
      if (M == 0) continue;
      if (e < lo_c) lo_c = e;
      if (M - 1 + e > hi_c) hi_c = M - 1 + e;
    }
  return (tplanes){.pt = -lo_r, .pl = -lo_c, .Hq = hi_r - lo_r + 1, .Wq = hi_c - lo_c + 1};
}

static size_t tplanes_floats(const nn_direct_geom *g) {
  tplanes t = tplanes_of(g);
  return (size_t)(g->C * t.Hq * t.Wq + TILE + 8 + 15) / 16 * 16;
}

/* the packed filters, then one set of planes per part of the batch */
size_t nn_conv_transpose_direct_scratch_floats(const nn_direct_geom *g, int64_t N) {
  return (size_t)(oc_blocks(g) * OCB * g->C * g->KH * g->KW) + (size_t)nn_batch_parts(N) * tplanes_floats(g);
}

/* Output phases hold disjoint sets of taps, so all of them pack into one filter-sized block, once per
 * call; then each image is laid out once and every phase runs over it. A batch is split by images
 * between the threads. */
typedef struct {
  int64_t Mh, Mw;
  int T;
  int64_t toff[64];
  float *packed;
} tphase;

typedef struct {
  const nn_direct_geom *g;
  tplanes t;
  const tphase *ph;
  const float *x, *bias;
  float *out, *planes;
} tconv_ctx;

static void tconv_images(void *p, int part, int64_t n0, int64_t n1) {
  tconv_ctx *c = p;
  const nn_direct_geom *g = c->g;
  tplanes t = c->t;
  nn_direct_geom pg = {.C = g->C, .H = g->H, .W = g->W, .sh = 1, .sw = 1, .ph = (int)t.pt, .pw = (int)t.pl};
  planes_geom q = {.Hq = t.Hq, .Wq = t.Wq, .plane = t.Hq * t.Wq, .chan = t.Hq * t.Wq};
  float *planes = c->planes + (size_t)part * tplanes_floats(g);
  for (int64_t n = n0; n < n1; n++) {
    float *on = c->out + n * g->OC * g->OH * g->OW;
    prep_planes(&pg, q, c->x + n * g->C * g->H * g->W, planes);
    for (int a = 0, i = 0; a < g->sh; a++)
      for (int b = 0; b < g->sw; b++, i++) {
        const tphase *f = &c->ph[i];
        if (f->Mh == 0 || f->Mw == 0) continue;
        kern_ctx k = {.g = &pg, .q = q, .planes = planes, .packed = f->packed, .bias = c->bias, .flags = 0,
                      .out = on + a * g->OW + b, .OC = g->OC, .valid_w = f->Mw, .o_chan = g->OH * g->OW,
                      .o_row = g->sh * g->OW, .o_col = g->sw};
        k.q.L = (f->Mh - 1) * t.Wq + f->Mw;
        memcpy(k.toff, f->toff, sizeof k.toff);
        k.T = f->T;
        if (k.T == 0) { /* no tap reaches this phase: the bias alone */
          for (int64_t oc = 0; oc < g->OC; oc++)
            for (int64_t m = 0; m < f->Mh; m++)
              for (int64_t j = 0; j < f->Mw; j++)
                k.out[oc * k.o_chan + m * k.o_row + j * k.o_col] = c->bias ? c->bias[oc] : 0.0f;
          continue;
        }
        run_kernel(&k, 1);
      }
  }
}

void nn_conv_transpose_direct(const nn_direct_geom *g, int64_t N, const float *x, const float *w, const float *bias,
                              float *scratch, float *out) {
  tplanes t = tplanes_of(g);
  float *packed = scratch;
  int64_t nob = oc_blocks(g), C = g->C;
  tphase *ph = nn_arena_alloc(nn_arena_current(), (size_t)(g->sh * g->sw) * sizeof *ph);
  if (!ph) return;
  int nph = 0;
  for (int a = 0; a < g->sh; a++)
    for (int b = 0; b < g->sw; b++, nph++) {
      tphase *f = &ph[nph];
      f->Mh = phase_len(g->OH, g->sh, a), f->Mw = phase_len(g->OW, g->sw, b);
      f->packed = packed;
      int T = 0;
      int64_t khs[64], kws[64];
      for (int64_t kh = tap0(a, g->ph, g->sh); kh < g->KH; kh += g->sh)
        for (int64_t kw = tap0(b, g->pw, g->sw); kw < g->KW; kw += g->sw, T++) {
          khs[T] = kh, kws[T] = kw;
          f->toff[T] = ((a + g->ph - kh) / g->sh + t.pt) * t.Wq + (b + g->pw - kw) / g->sw + t.pl;
        }
      f->T = T;
      /* packed[ob][c][t][j] = w[c][oc][kh][kw], the conv_transpose layout */
      for (int64_t ob = 0; ob < nob; ob++)
        for (int64_t c = 0; c < C; c++)
          for (int tt = 0; tt < T; tt++)
            for (int j = 0; j < OCB; j++) {
              int64_t oc = ob * OCB + j;
              packed[((ob * C + c) * T + tt) * OCB + j] =
                  oc < g->OC ? w[((c * g->OC + oc) * g->KH + khs[tt]) * g->KW + kws[tt]] : 0.0f;
            }
      packed += nob * C * T * OCB;
    }
  tconv_ctx c = {.g = g, .t = t, .ph = ph, .x = x, .bias = bias, .out = out,
                 .planes = scratch + nob * OCB * C * g->KH * g->KW};
  int parts = nn_batch_parts(N);
  if (parts > 1)
    nn_parallel_parts(N, parts, tconv_images, &c);
  else
    tconv_images(&c, 0, 0, N);
}

/* ------------------------------------------------------ weight gradient */
/* dW[oc][c][t] = sum over p of gy[oc][p] * x_t[c][p], the same phase planes and output numbering as
 * the forward kernel (x_t[c][p] = planes[c * chan + toff[t] + p]). No im2col: the planes are read in
 * place. Lanes run over output channels: gy is transposed once per image to gyT[p][OCP], and a tile is
 * WG_OCB output channels x up to WG_TAPS taps of one input channel, each step one or two vector loads
 * of gyT, one broadcast per tap and an FMA per (tap, vector). Every accumulator lane sums its positions
 * in order p = 0, 1, ... (through memory at block edges), so AVX2 (16 channels per tile) and AVX-512
 * (32) give the same bits. Positions go in blocks that keep gyT and the planes' block in L2. */
enum { WG_OCB = 32, WG_PB = 256, WG_TAPS = 9 };

int64_t nn_conv_wgrad_ocp(const nn_direct_geom *g) { return (g->OC + WG_OCB - 1) / WG_OCB * WG_OCB; }

static size_t wgrad_planes_floats(const nn_direct_geom *g) { return (full_planes_floats(g) + 15) / 16 * 16; }

size_t nn_conv_wgrad_scratch_floats(const nn_direct_geom *g) {
  planes_geom q = planes_of(g);
  return wgrad_planes_floats(g) + (size_t)(q.L * nn_conv_wgrad_ocp(g));
}

#ifdef NN_DIRECT_X86
/* A tile of one weight-gradient step, M taps x two vectors of output channels, at one width (as
 * DIRECT_TILE: one definition, so both widths sum each lane in the same order). */
#define WG_KERNEL(BITS, L, TARGET, M)                                                                          \
  __attribute__((target(TARGET))) static void wg##BITS##_##M(const float *gyT, int64_t ocp, const float *xc,    \
                                                            const int64_t *toff, int64_t p0, int64_t p1,        \
                                                            float *acc) {                                       \
    __m##BITS a[M][2];                                                                                          \
    for (int j = 0; j < M; j++) a[j][0] = _mm##BITS##_loadu_ps(acc + j * ocp), a[j][1] = _mm##BITS##_loadu_ps(acc + j * ocp + L); \
    for (int64_t p = p0; p < p1; p++) {                                                                         \
      __m##BITS y0 = _mm##BITS##_loadu_ps(gyT + p * ocp), y1 = _mm##BITS##_loadu_ps(gyT + p * ocp + L);          \
      _Pragma("GCC unroll 9") for (int j = 0; j < M; j++) {                                                     \
        __m##BITS b = _mm##BITS##_set1_ps(xc[toff[j] + p]);                                                     \
        a[j][0] = _mm##BITS##_fmadd_ps(b, y0, a[j][0]);                                                         \
        a[j][1] = _mm##BITS##_fmadd_ps(b, y1, a[j][1]);                                                         \
      }                                                                                                         \
    }                                                                                                           \
    for (int j = 0; j < M; j++) _mm##BITS##_storeu_ps(acc + j * ocp, a[j][0]), _mm##BITS##_storeu_ps(acc + j * ocp + L, a[j][1]); \
  }
#define WG512(M) WG_KERNEL(512, 16, "avx512f", M)
#define WG256(M) WG_KERNEL(256, 8, "avx2,fma", M)
WG512(1) WG512(2) WG512(3) WG512(4) WG512(5) WG512(6) WG512(7) WG512(8) WG512(9)
WG256(1) WG256(2) WG256(3) WG256(4) WG256(5) WG256(6)

typedef void (*wg_fn)(const float *, int64_t, const float *, const int64_t *, int64_t, int64_t, float *);
static const wg_fn wg512[WG_TAPS + 1] = {NULL,    wg512_1, wg512_2, wg512_3, wg512_4,
                                         wg512_5, wg512_6, wg512_7, wg512_8, wg512_9};
static const wg_fn wg256[7] = {NULL, wg256_1, wg256_2, wg256_3, wg256_4, wg256_5, wg256_6};
#endif

typedef struct {
  const nn_direct_geom *g;
  planes_geom q;
  const float *planes, *gyT;
  float *dwT;
  int64_t ocp, toff[64];
  int T;
} wg_ctx;

/* Items are (output-channel block, input channel) pairs; a thread walks its items once per position
 * block. Taps go in groups of at most 9 (AVX-512) or 6 (AVX2), split evenly. */
static void wg_items(void *p, int64_t i0, int64_t i1) {
  wg_ctx *k = p;
  int64_t C = k->g->C, L = k->q.L;
#ifdef NN_DIRECT_X86
  int most = g_isa == 2 ? WG_TAPS : 6, ocb = g_isa == 2 ? 32 : 16;
  int groups = (k->T + most - 1) / most;
  for (int64_t p0 = 0; p0 < L; p0 += WG_PB) {
    int64_t p1 = p0 + WG_PB < L ? p0 + WG_PB : L;
    for (int64_t it = i0; it < i1; it++) {
      int64_t ob = it / C, c = it % C;
      const float *xc = k->planes + c * k->q.chan;
      for (int gi = 0, t0 = 0; gi < groups; gi++) {
        int t1 = k->T * (gi + 1) / groups, m = t1 - t0;
        for (int64_t o = ob * WG_OCB; o < (ob + 1) * WG_OCB; o += ocb) {
          float *acc = k->dwT + (c * k->T + t0) * k->ocp + o;
          (g_isa == 2 ? wg512[m] : wg256[m])(k->gyT + o, k->ocp, xc, k->toff + t0, p0, p1, acc);
        }
        t0 = t1;
      }
    }
  }
#else
  (void)i0, (void)i1, (void)C, (void)L;
#endif
}

typedef struct { const nn_direct_geom *g; planes_geom q; const float *gy; float *gyT; int64_t ocp; } gyT_ctx;

#ifdef NN_DIRECT_X86
/* d[j * ld + i] = s[i * ls + j] for an 8 x 8 block */
__attribute__((target("avx2"))) static void transpose8(const float *s, int64_t ls, float *d, int64_t ld) {
  __m256 r0 = _mm256_loadu_ps(s), r1 = _mm256_loadu_ps(s + ls), r2 = _mm256_loadu_ps(s + 2 * ls);
  __m256 r3 = _mm256_loadu_ps(s + 3 * ls), r4 = _mm256_loadu_ps(s + 4 * ls), r5 = _mm256_loadu_ps(s + 5 * ls);
  __m256 r6 = _mm256_loadu_ps(s + 6 * ls), r7 = _mm256_loadu_ps(s + 7 * ls);
  __m256 t0 = _mm256_unpacklo_ps(r0, r1), t1 = _mm256_unpackhi_ps(r0, r1), t2 = _mm256_unpacklo_ps(r2, r3);
  __m256 t3 = _mm256_unpackhi_ps(r2, r3), t4 = _mm256_unpacklo_ps(r4, r5), t5 = _mm256_unpackhi_ps(r4, r5);
  __m256 t6 = _mm256_unpacklo_ps(r6, r7), t7 = _mm256_unpackhi_ps(r6, r7);
  __m256 u0 = _mm256_shuffle_ps(t0, t2, 0x44), u1 = _mm256_shuffle_ps(t0, t2, 0xee);
  __m256 u2 = _mm256_shuffle_ps(t1, t3, 0x44), u3 = _mm256_shuffle_ps(t1, t3, 0xee);
  __m256 u4 = _mm256_shuffle_ps(t4, t6, 0x44), u5 = _mm256_shuffle_ps(t4, t6, 0xee);
  __m256 u6 = _mm256_shuffle_ps(t5, t7, 0x44), u7 = _mm256_shuffle_ps(t5, t7, 0xee);
  _mm256_storeu_ps(d, _mm256_permute2f128_ps(u0, u4, 0x20));
  _mm256_storeu_ps(d + ld, _mm256_permute2f128_ps(u1, u5, 0x20));
  _mm256_storeu_ps(d + 2 * ld, _mm256_permute2f128_ps(u2, u6, 0x20));
  _mm256_storeu_ps(d + 3 * ld, _mm256_permute2f128_ps(u3, u7, 0x20));
  _mm256_storeu_ps(d + 4 * ld, _mm256_permute2f128_ps(u0, u4, 0x31));
  _mm256_storeu_ps(d + 5 * ld, _mm256_permute2f128_ps(u1, u5, 0x31));
  _mm256_storeu_ps(d + 6 * ld, _mm256_permute2f128_ps(u2, u6, 0x31));
  _mm256_storeu_ps(d + 7 * ld, _mm256_permute2f128_ps(u3, u7, 0x31));
}
#endif

/* gyT[p][oc] = gy[oc][row][col] for p = row * Wq + col, zero past each row's OW and past OC: 8 x 8
 * blocks, the edges one by one. */
static void transpose_rows(void *p, int64_t r0, int64_t r1) {
  gyT_ctx *c = p;
  const nn_direct_geom *g = c->g;
  int64_t ocp = c->ocp, OHW = g->OH * g->OW;
  for (int64_t row = r0; row < r1; row++) {
    float *d = c->gyT + row * c->q.Wq * ocp;
    const float *s = c->gy + row * g->OW;
    int64_t pend = row == g->OH - 1 ? g->OW : c->q.Wq; /* the planes' numbering ends at the last valid output */
    int64_t oc8 = 0, col8 = 0;
#ifdef NN_DIRECT_X86
    oc8 = g->OC / 8 * 8, col8 = g->OW / 8 * 8;
    for (int64_t oc = 0; oc < oc8; oc += 8)
      for (int64_t col = 0; col < col8; col += 8) transpose8(s + oc * OHW + col, OHW, d + col * ocp + oc, ocp);
#endif
    for (int64_t oc = 0; oc < g->OC; oc++)
      for (int64_t col = oc < oc8 ? col8 : 0; col < g->OW; col++) d[col * ocp + oc] = s[oc * OHW + col];
    if (ocp > g->OC)
      for (int64_t col = 0; col < g->OW; col++) memset(d + col * ocp + g->OC, 0, (size_t)(ocp - g->OC) * sizeof(float));
    if (pend > g->OW) memset(d + g->OW * ocp, 0, (size_t)((pend - g->OW) * ocp) * sizeof(float));
  }
}

void nn_conv_wgrad_direct(const nn_direct_geom *g, const float *x, const float *gy, float *scratch, float *dwT) {
  wg_ctx k = {.g = g, .q = planes_of(g), .planes = scratch, .ocp = nn_conv_wgrad_ocp(g), .dwT = dwT};
  k.gyT = scratch + wgrad_planes_floats(g);
  prep_planes(g, k.q, x, scratch);
  gyT_ctx tc = {g, k.q, gy, (float *)k.gyT, k.ocp};
  nn_parallel_for(g->OH, 4, transpose_rows, &tc);
  k.T = (int)(g->KH * g->KW);
  for (int kh = 0, t = 0; kh < g->KH; kh++)
    for (int kw = 0; kw < g->KW; kw++, t++)
      k.toff[t] = ((kh % g->sh) * g->sw + kw % g->sw) * k.q.plane + (kh / g->sh) * k.q.Wq + kw / g->sw;
  nn_parallel_for(k.ocp / WG_OCB * g->C, 1, wg_items, &k);
}
