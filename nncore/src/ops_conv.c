/* conv2d / conv_transpose2d (fast CPU kernels from conv_direct.c and conv_winograd.c where the shape
 * allows, im2col + sgemm otherwise), pooling and resampling. NCHW. */
#include "internal.h"

#include "conv_direct.h"

#include <stdlib.h>

nn_conv_params nn_conv_defaults(void) {
  return (nn_conv_params){.stride_h = 1, .stride_w = 1, .dilation_h = 1, .dilation_w = 1, .groups = 1};
}

typedef struct {
  int64_t C, H, W, KH, KW, OH, OW;
  int sh, sw, ph, pw, dh, dw;
} geom;

/* im2col: col[(c*KH+kh)*KW+kw][oh*OW+ow] = img[c][oh*sh-ph+kh*dh][ow*sw-pw+kw*dw] */
typedef struct {
  const geom *g;
  const float *img;
  float *col;
  int64_t oh0, oh1; /* the output rows it covers; col rows are (oh1 - oh0) * OW wide */
} i2c_ctx;

static void im2col_rows(void *p, int64_t r0, int64_t r1) {
  i2c_ctx *c = p;
  const geom *g = c->g;
  int64_t width = (c->oh1 - c->oh0) * g->OW;
  for (int64_t r = r0; r < r1; r++) {
    int64_t kw = r % g->KW, kh = (r / g->KW) % g->KH, ch = r / (g->KW * g->KH);
    const float *src = c->img + ch * g->H * g->W;
    float *dst = c->col + r * width;
    int64_t woff = kw * g->dw - g->pw;
    for (int64_t oh = c->oh0; oh < c->oh1; oh++) {
      int64_t ih = oh * g->sh - g->ph + kh * g->dh;
      float *d = dst + (oh - c->oh0) * g->OW;
      if (ih < 0 || ih >= g->H) {
        memset(d, 0, (size_t)g->OW * 4);
        continue;
      }
      const float *s = src + ih * g->W;
      if (g->sw == 1) {
        /* contiguous run with zero borders */
        int64_t lo = woff < 0 ? -woff : 0;
        int64_t hi = g->W - woff;
        if (hi > g->OW) hi = g->OW;
        if (lo > g->OW) lo = g->OW;
        for (int64_t ow = 0; ow < lo; ow++) d[ow] = 0;
        if (hi > lo) memcpy(d + lo, s + lo + woff, (size_t)(hi - lo) * 4);
        for (int64_t ow = hi > lo ? hi : lo; ow < g->OW; ow++) d[ow] = 0;
      } else {
        for (int64_t ow = 0; ow < g->OW; ow++) {
          int64_t iw = ow * g->sw + woff;
          d[ow] = (iw >= 0 && iw < g->W) ? s[iw] : 0;
        }
      }
    }
  }
}

static void im2col_part(const geom *g, const float *img, float *col, int64_t oh0, int64_t oh1) {
  i2c_ctx c = {g, img, col, oh0, oh1};
  nn_parallel_for(g->C * g->KH * g->KW, 4, im2col_rows, &c);
}

static void im2col(const geom *g, const float *img, float *col) { im2col_part(g, img, col, 0, g->OH); }

/* Output rows per slice of a weight gradient: its im2col slice stays near 2 MB, in cache, instead of a
 * full image's columns (26 MB for a 64-channel 5x5 layer at 64x64) going through memory twice. */
static int64_t weight_grad_rows(const geom *g) {
  int64_t kk = g->C * g->KH * g->KW, rows = (1 << 19) / (kk * g->OW);
  return rows < 1 ? 1 : rows > g->OH ? g->OH : rows;
}

/* dw[M, KK] += a[M, OH*OW] col(img)^T, one slice of output rows at a time (col: room for
 * weight_grad_rows(g) * OW columns) */
static void weight_grad(const geom *g, const float *img, const float *a, int64_t M, float *col, float *dw) {
  int64_t KK = g->C * g->KH * g->KW, OHW = g->OH * g->OW, step = weight_grad_rows(g);
  for (int64_t oh0 = 0; oh0 < g->OH; oh0 += step) {
    int64_t oh1 = oh0 + step < g->OH ? oh0 + step : g->OH, n = (oh1 - oh0) * g->OW;
    im2col_part(g, img, col, oh0, oh1);
    nn_sgemm(false, true, M, KK, n, 1.0f, a + oh0 * g->OW, OHW, col, n, 1.0f, dw, KK);
  }
}

/* col2im: img += scatter of col; split by channel so no two threads write one pixel. */
static void col2im_channels(void *p, int64_t c0, int64_t c1) {
  i2c_ctx *c = p;
  const geom *g = c->g;
  int64_t OHW = g->OH * g->OW;
  float *img = (float *)c->img;
  for (int64_t ch = c0; ch < c1; ch++) {
    float *dst = img + ch * g->H * g->W;
    for (int64_t kh = 0; kh < g->KH; kh++)
      for (int64_t kw = 0; kw < g->KW; kw++) {
        const float *src = c->col + ((ch * g->KH + kh) * g->KW + kw) * OHW;
        for (int64_t oh = 0; oh < g->OH; oh++) {
          int64_t ih = oh * g->sh - g->ph + kh * g->dh;
          if (ih < 0 || ih >= g->H) continue;
          float *d = dst + ih * g->W;
          const float *s = src + oh * g->OW;
          if (g->sw == 1) {
            /* iw = ow + off over the valid range: a branch-free, vectorisable add */
            int64_t off = kw * g->dw - g->pw;
            int64_t lo = off < 0 ? -off : 0, hi = g->W - off < g->OW ? g->W - off : g->OW;
            float *dd = d + off;
            for (int64_t ow = lo; ow < hi; ow++) dd[ow] += s[ow];
          } else {
            for (int64_t ow = 0; ow < g->OW; ow++) {
              int64_t iw = ow * g->sw - g->pw + kw * g->dw;
              if (iw >= 0 && iw < g->W) d[iw] += s[ow];
            }
          }
        }
      }
  }
}

static void col2im_add(const geom *g, const float *col, float *img) {
  i2c_ctx c = {g, img, (float *)col};
  nn_parallel_for(g->C, 1, col2im_channels, &c);
}

static bool is_pointwise(const geom *g) {
  return g->KH == 1 && g->KW == 1 && g->sh == 1 && g->sw == 1 && g->ph == 0 && g->pw == 0;
}

static bool check_params(nn_conv_params p, const char *name) {
  if (p.stride_h < 1 || p.stride_w < 1 || p.dilation_h < 1 || p.dilation_w < 1 || p.groups < 1 ||
      p.pad_h < 0 || p.pad_w < 0 || p.output_pad_h < 0 || p.output_pad_w < 0) {
    nn_set_error("%s: stride, dilation and groups must be >= 1 and padding >= 0", name);
    return false;
  }
  return true;
}

/* Adds bias[c] to every pixel of channel c of out[N, C, HW]. */
static void add_bias(float *out, const float *bias, int64_t N, int64_t C, int64_t HW) {
  for (int64_t n = 0; n < N; n++)
    for (int64_t c = 0; c < C; c++) {
      float b = bias[c];
      float *o = out + (n * C + c) * HW;
      for (int64_t i = 0; i < HW; i++) o[i] += b;
    }
}

static void bias_grad(nn_tensor *b, const float *g, int64_t N, int64_t C, int64_t HW) {
  nn_tensor *gb = nn_zeros(NN_F32, 1, &C);
  if (!gb) return;
  for (int64_t n = 0; n < N; n++)
    for (int64_t c = 0; c < C; c++) nn_f32(gb)[c] += (float)nn_lane_sum(g + (n * C + c) * HW, HW);
  nn_accum_grad(b, gb);
}

/* ------------------------------------------------------- fast CPU paths */
/* The direct kernel covers plain convolutions with more than one tap or a stride (1x1 stride-1 ones
 * are a GEMM as they are, except in inference copies, where the kernel also fuses a residual add).
 * Winograd pays for its transforms from 64 channels in and out on (AVX2; with AVX-512 only when the
 * filters are packed once). The path depends only on the shape, the CPU and whether the filters are
 * packed once (an inference copy), never on the thread count. PATH_WINOGRAD_S2_F4: the space-to-depth
 * path with F(4x4) tiles, for inference copies only (its filters cost 2.25x more to pack, which only pays
 * when packed once). */
typedef enum { PATH_GEMM, PATH_DIRECT, PATH_WINOGRAD, PATH_WINOGRAD_S2, PATH_WINOGRAD_S2_F4 } conv_path;

static bool is_winograd(conv_path p) { return p == PATH_WINOGRAD || p == PATH_WINOGRAD_S2 || p == PATH_WINOGRAD_S2_F4; }
static int s2_tile(conv_path p) { return p == PATH_WINOGRAD_S2_F4 ? 4 : 2; }

static nn_direct_geom direct_geom(const geom *g, int64_t OC) {
  return (nn_direct_geom){.C = g->C, .H = g->H, .W = g->W, .OC = OC, .KH = g->KH, .KW = g->KW, .OH = g->OH,
                          .OW = g->OW, .sh = g->sh, .sw = g->sw, .ph = g->ph, .pw = g->pw};
}

static conv_path pick_path(const geom *g, int groups, int64_t OC, bool packed_once) {
  if (groups != 1 || g->dh != 1 || g->dw != 1 || (is_pointwise(g) && !packed_once) || g->KH * g->KW > 64 ||
      !nn_conv_direct_available())
    return PATH_GEMM;
  nn_direct_geom dg = direct_geom(g, OC);
  /* with AVX-512 the direct kernel runs at twice AVX2's width while Winograd's transforms do not, and
   * Winograd no longer pays, filters packed once or not: the codec's training step ran 13 % faster
   * without it, and inference too (codec encode 1.10 -> 0.92 s, NanoDet and a YOLOv8-style export a few
   * per cent, docs/import.md) */
  if (strcmp(nn_conv_isa(), "avx512") == 0) return PATH_DIRECT;
  if (nn_winograd_fits(&dg) && g->C >= 64 && OC >= 64) return PATH_WINOGRAD;
  if (nn_winograd_s2_fits(&dg) && 4 * g->C >= 64 && OC >= 64) return packed_once ? PATH_WINOGRAD_S2_F4 : PATH_WINOGRAD_S2;
  return PATH_DIRECT;
}

static size_t packed_floats(conv_path path, const nn_direct_geom *dg) {
  return path == PATH_WINOGRAD      ? nn_winograd_packed_floats(dg)
         : is_winograd(path)        ? nn_winograd_s2_packed_floats(dg, s2_tile(path))
                                    : nn_conv_direct_packed_floats(dg);
}

static bool pack_weights(conv_path path, const nn_direct_geom *dg, const float *w, float *packed) {
  if (path == PATH_WINOGRAD_S2 || path == PATH_WINOGRAD_S2_F4) {
    if (!nn_winograd_s2_pack(dg, w, packed, s2_tile(path))) {
      nn_set_error("conv2d: out of memory packing filters");
      return false;
    }
  } else if (path == PATH_WINOGRAD) {
    nn_winograd_pack(dg, w, packed);
  } else {
    nn_conv_direct_pack(dg, w, packed);
  }
  return true;
}

static size_t run_scratch_floats(conv_path path, const nn_direct_geom *dg) {
  return path == PATH_WINOGRAD ? nn_winograd_scratch_floats(dg)
         : is_winograd(path)   ? nn_winograd_s2_scratch_floats(dg, s2_tile(path))
                               : nn_conv_direct_input_floats(dg);
}

typedef struct {
  conv_path path;
  const nn_direct_geom *dg;
  const float *x, *packed, *bias;
  int flags;
  float *out, *scratch;
  size_t scratch_floats;
} packed_run;

static void run_images(void *p, int part, int64_t n0, int64_t n1) {
  packed_run *r = p;
  const nn_direct_geom *dg = r->dg;
  float *scratch = r->scratch + (size_t)part * r->scratch_floats;
  for (int64_t n = n0; n < n1; n++) {
    const float *xn = r->x + n * dg->C * dg->H * dg->W;
    float *on = r->out + n * dg->OC * dg->OH * dg->OW;
    if (r->path == PATH_WINOGRAD)
      nn_winograd(dg, xn, r->packed, r->bias, r->flags & (NN_DIRECT_RELU | NN_DIRECT_SILU), scratch, on);
    else if (is_winograd(r->path))
      nn_winograd_s2(dg, s2_tile(r->path), xn, r->packed, r->bias, r->flags & (NN_DIRECT_RELU | NN_DIRECT_SILU), scratch, on);
    else
      nn_conv_direct(dg, xn, r->packed, r->bias, r->flags, scratch, on);
  }
}

/* out = bias + conv(x) (+ out, with accumulate) (then ReLU) over N images with weights packed for `path`
 * (accumulate: direct path only). A batch is split by images between the threads (one synchronisation
 * instead of a few per image, and no idle thread on small images); a single image is split inside. Each
 * output is computed the same way either way. */
static bool run_packed(conv_path path, const nn_direct_geom *dg, int64_t N, const float *x, const float *packed,
                       const float *bias, int act, bool accumulate, float *out) {
  int parts = N > 1 ? nn_batch_parts(N) : 1;
  packed_run r = {.path = path, .dg = dg, .x = x, .packed = packed, .bias = bias,
                  .flags = act | (accumulate ? NN_DIRECT_ACCUMULATE : 0), .out = out};
  /* Winograd sizes its scratch by the thread count: per part, that is the budget of 1 the parts run with */
  int prev = parts > 1 ? nn_set_thread_budget(1) : 0;
  r.scratch_floats = run_scratch_floats(path, dg);
  if (parts > 1) nn_set_thread_budget(prev);
  r.scratch_floats = (r.scratch_floats + 15) / 16 * 16; /* each part's scratch on its own cache lines */
  r.scratch = nn_arena_alloc(nn_arena_current(), (size_t)parts * r.scratch_floats * sizeof(float));
  if (!r.scratch) return false;
  if (parts > 1)
    nn_parallel_parts(N, parts, run_images, &r);
  else
    run_images(&r, 0, 0, N);
  return true;
}

static bool run_fast(conv_path path, const geom *g, int64_t N, int64_t OC, const float *x, const float *w,
                     const float *bias, bool relu, float *out) {
  nn_direct_geom dg = direct_geom(g, OC);
  float *packed = nn_arena_alloc(nn_arena_current(), packed_floats(path, &dg) * sizeof(float));
  if (!packed) return false;
  if (!pack_weights(path, &dg, w, packed)) return false;
  return run_packed(path, &dg, N, x, packed, bias, relu ? NN_DIRECT_RELU : 0, false, out);
}

/* Output geometry of a conv; NULL (with the error set) when it does not fit. */
static bool conv_geom(const nn_tensor *x, const nn_tensor *w, nn_conv_params p, geom *g) {
  *g = (geom){.C = x->shape[1] / p.groups, .H = x->shape[2], .W = x->shape[3], .KH = w->shape[2], .KW = w->shape[3],
              .sh = p.stride_h, .sw = p.stride_w, .ph = p.pad_h, .pw = p.pad_w, .dh = p.dilation_h,
              .dw = p.dilation_w};
  if (g->H + 2 * g->ph < g->dh * (g->KH - 1) + 1 || g->W + 2 * g->pw < g->dw * (g->KW - 1) + 1) {
    nn_set_error("conv2d: kernel larger than the padded input");
    return false;
  }
  g->OH = (g->H + 2 * g->ph - g->dh * (g->KH - 1) - 1) / g->sh + 1;
  g->OW = (g->W + 2 * g->pw - g->dw * (g->KW - 1) - 1) / g->sw + 1;
  return true;
}

/* ------------------------------------------------------------------ conv2d */

typedef struct {
  geom g;      /* per-group input geometry */
  int64_t N, OC, groups, Cg, OCg;
} conv_info;

/* Puts a conv or transposed conv on the tape with what its backward needs. */
static nn_tensor *record_conv(nn_tensor *out, const char *name, nn_backward_fn bw, nn_tensor *x, nn_tensor *w,
                              nn_tensor *b, const geom *g, int64_t N, int64_t OC, int groups, int64_t Cg, int64_t OCg,
                              nn_tensor *xc, nn_tensor *wc) {
  nn_node *node = nn_record(out, name, bw, 3, x, w, b);
  if (node) {
    conv_info *ci = nn_arena_alloc(nn_arena_current(), sizeof *ci);
    if (!ci) return NULL;
    *ci = (conv_info){.g = *g, .N = N, .OC = OC, .groups = groups, .Cg = Cg, .OCg = OCg};
    node->extra = ci;
    node->saved[0] = xc;
    node->saved[1] = wc;
  }
  return out;
}


static float *scratch_col(const geom *g) {
  return nn_arena_alloc(nn_arena_current(), (size_t)(g->C * g->KH * g->KW * g->OH * g->OW) * 4);
}

/* Weight gradients of a batch: the batch is cut into WG_CHUNKS fixed slices (by N alone, never by the
 * thread count), each slice's gradient is summed on one thread into its own buffer, and the buffers
 * are added in slice order: the bits are the same for any thread count, and two threads share the
 * work evenly instead of splitting small GEMMs into unequal panels. */
enum { WG_CHUNKS = 8 };

typedef struct {
  const geom *g;     /* the convolution whose input `src` is im2col'd */
  int64_t N, groups, M; /* M: rows of the gradient per group */
  const float *src, *a; /* dw[g][M, KK] += a[n][g][M, OH*OW] col(src[n][g])^T */
  int64_t src_img, src_grp, a_img, a_grp;
  float *partial, *col; /* WG_CHUNKS partial gradients; per-part scratch (im2col or the direct layout) */
  size_t col_floats;
  int64_t chunks, wsize;
  bool pw;
  bool direct;          /* on the direct kernel: partials are [C * KH * KW][ocp], transposed at the end */
  nn_direct_geom dg;
  int64_t ocp;
} wgrad_ctx;

static void wgrad_chunks(void *p, int part, int64_t c0, int64_t c1) {
  wgrad_ctx *k = p;
  const geom *g = k->g;
  int64_t OHW = g->OH * g->OW, KK = g->C * g->KH * g->KW;
  float *col = k->col ? k->col + (size_t)part * k->col_floats : NULL;
  for (int64_t ch = c0; ch < c1; ch++) {
    float *dw = k->partial + ch * k->wsize;
    memset(dw, 0, (size_t)k->wsize * sizeof(float));
    for (int64_t bn = k->N * ch / k->chunks; bn < k->N * (ch + 1) / k->chunks; bn++) {
      if (k->direct) {
        nn_conv_wgrad_direct(&k->dg, k->src + bn * k->src_img, k->a + bn * k->a_img, col, dw);
        continue;
      }
      for (int64_t gi = 0; gi < k->groups; gi++) {
        const float *img = k->src + bn * k->src_img + gi * k->src_grp;
        const float *a = k->a + bn * k->a_img + gi * k->a_grp;
        if (k->pw)
          nn_sgemm(false, true, k->M, KK, OHW, 1.0f, a, OHW, img, OHW, 1.0f, dw + gi * k->M * KK, KK);
        else
          weight_grad(g, img, a, k->M, col, dw + gi * k->M * KK);
      }
    }
  }
}

typedef struct { const float *partial; float *out; int64_t chunks, wsize, KK, ocp; bool direct; } wsum_ctx;

/* out[m][ct] = the chunks' partials, added in chunk order (read transposed from the direct layout) */
static void wgrad_sum(void *p, int64_t i0, int64_t i1) {
  wsum_ctx *k = p;
  for (int64_t i = i0; i < i1; i++) {
    int64_t at = k->direct ? i % k->KK * k->ocp + i / k->KK : i;
    float s = k->partial[at];
    for (int64_t c = 1; c < k->chunks; c++) s += k->partial[c * k->wsize + at];
    k->out[i] = s;
  }
}

/* Fills k's chunking and scratch, runs the chunks and writes their sum to gw; false: out of memory */
static bool batch_weight_grad(wgrad_ctx *k, float *gw) {
  const geom *g = k->g;
  int64_t KK = g->C * g->KH * g->KW;
  k->chunks = k->N < WG_CHUNKS ? k->N : WG_CHUNKS;
  k->wsize = k->groups * k->M * KK;
  k->pw = is_pointwise(g);
  k->direct = k->groups == 1 && !k->pw && pick_path(g, 1, k->M, false) != PATH_GEMM;
  int parts = nn_batch_parts(k->chunks);
  k->col_floats = k->pw ? 0 : ((size_t)(KK * weight_grad_rows(g) * g->OW) + 15) / 16 * 16;
  if (k->direct) {
    k->dg = direct_geom(g, k->M);
    k->ocp = nn_conv_wgrad_ocp(&k->dg);
    k->wsize = KK * k->ocp;
    k->col_floats = (nn_conv_wgrad_scratch_floats(&k->dg) + 15) / 16 * 16;
  }
  k->partial = nn_arena_alloc(nn_arena_current(), (size_t)(k->chunks * k->wsize) * sizeof(float));
  k->col = k->pw ? NULL : nn_arena_alloc(nn_arena_current(), (size_t)parts * k->col_floats * sizeof(float));
  if (!k->partial || (!k->pw && !k->col)) return false;
  if (parts > 1)
    nn_parallel_parts(k->chunks, parts, wgrad_chunks, k);
  else
    wgrad_chunks(k, 0, 0, k->chunks);
  wsum_ctx sc = {k->partial, gw, k->chunks, k->wsize, KK, k->ocp, k->direct};
  nn_parallel_for(k->groups * k->M * KK, 4096, wgrad_sum, &sc);
  return true;
}

static void conv2d_bw(nn_node *n, nn_tensor *gout) {
  nn_tensor *x = n->in[0], *w = n->in[1], *b = n->in[2];
  conv_info *ci = n->extra;
  const geom *g = &ci->g;
  const float *xd = nn_f32(n->saved[0]), *wd = nn_f32(n->saved[1]);
  const float *gd = nn_dense_f32(gout);
  int64_t HW = g->H * g->W, OHW = g->OH * g->OW, KK = g->C * g->KH * g->KW;
  bool pw = is_pointwise(g);
  nn_tensor *gw = nn_needs_grad(w) ? nn_empty(NN_F32, w->ndim, w->shape) : NULL;
  if (gw) {
    wgrad_ctx k = {.g = g, .N = ci->N, .groups = ci->groups, .M = ci->OCg, .src = xd, .a = gd,
                   .src_img = ci->groups * g->C * HW, .src_grp = g->C * HW, .a_img = ci->OC * OHW, .a_grp = ci->OCg * OHW};
    if (!batch_weight_grad(&k, nn_f32(gw))) return;
  }
  nn_tensor *gx = NULL;
  if (nn_needs_grad(x) && pick_path(g, (int)ci->groups, ci->OC, false) != PATH_GEMM) {
    /* the data gradient is the transposed convolution of gout with the same filters: direct kernel,
     * which writes every element (no zero fill) */
    nn_tensor *dx = nn_empty(NN_F32, x->ndim, x->shape);
    nn_direct_geom tg = {.C = ci->OC, .H = g->OH, .W = g->OW, .OC = g->C, .KH = g->KH, .KW = g->KW, .OH = g->H,
                         .OW = g->W, .sh = g->sh, .sw = g->sw, .ph = g->ph, .pw = g->pw};
    float *scratch = nn_arena_alloc(nn_arena_current(), nn_conv_transpose_direct_scratch_floats(&tg, ci->N) * sizeof(float));
    if (!dx || !scratch) return;
    nn_conv_transpose_direct(&tg, ci->N, gd, wd, NULL, scratch, nn_f32(dx));
    nn_accum_grad_owned(x, dx);
  } else if (nn_needs_grad(x)) {
    gx = nn_zeros(NN_F32, x->ndim, x->shape);
  }
  float *dcol = gx && !pw ? scratch_col(g) : NULL;
  for (int64_t bn = 0; gx && bn < ci->N; bn++)
    for (int64_t gi = 0; gi < ci->groups; gi++) {
      const float *go = gd + (bn * ci->OC + gi * ci->OCg) * OHW;
      const float *wg = wd + gi * ci->OCg * KK;
      float *dimg = nn_f32(gx) + (bn * ci->groups + gi) * g->C * HW;
      if (pw) {
        nn_sgemm(true, false, KK, OHW, ci->OCg, 1.0f, wg, KK, go, OHW, 1.0f, dimg, OHW);
      } else {
        nn_sgemm(true, false, KK, OHW, ci->OCg, 1.0f, wg, KK, go, OHW, 0.0f, dcol, OHW);
        col2im_add(g, dcol, dimg);
      }
    }
  if (gx) nn_accum_grad_owned(x, gx);
  if (gw) nn_accum_grad(w, gw);
  if (nn_needs_grad(b)) bias_grad(b, gd, ci->N, ci->OC, OHW);
}

nn_tensor *nn_conv2d(nn_tensor *x, nn_tensor *w, nn_tensor *b, nn_conv_params p) {
  if (!x || !w) return NULL;
  NN_CHECK_F32(x, "conv2d");
  NN_CHECK_F32(w, "conv2d");
  if (!check_params(p, "conv2d")) return NULL;
  if (x->ndim != 4 || w->ndim != 4) NN_FAIL("conv2d: need x[N,C,H,W] and w[OC,C/groups,KH,KW]");
  int64_t N = x->shape[0], C = x->shape[1], OC = w->shape[0];
  if (C % p.groups || OC % p.groups || w->shape[1] != C / p.groups) {
    char s1[96], s2[96];
    NN_FAIL("conv2d: input %s and weight %s do not fit groups=%d", nn_shape_str(x, s1, sizeof s1),
            nn_shape_str(w, s2, sizeof s2), p.groups);
  }
  if (b && (b->ndim != 1 || b->shape[0] != OC)) NN_FAIL("conv2d: bias must be [%lld]", (long long)OC);
  geom g;
  if (!conv_geom(x, w, p, &g)) return NULL;
  nn_tensor *xc = nn_contiguous(nn_detach(x)), *wc = nn_contiguous(nn_detach(w));
  int64_t osh[4] = {N, OC, g.OH, g.OW};
  nn_tensor *out = nn_empty(NN_F32, 4, osh);
  if (!out || !xc || !wc) return NULL;
  int64_t HW = g.H * g.W, OHW = g.OH * g.OW, KK = g.C * g.KH * g.KW, OCg = OC / p.groups;
  bool pw = is_pointwise(&g);
  conv_path path = pick_path(&g, p.groups, OC, false);
  if (path != PATH_GEMM) {
    if (!run_fast(path, &g, N, OC, nn_f32(xc), nn_f32(wc), b ? nn_dense_f32(b) : NULL, false, nn_f32(out)))
      return NULL;
    return record_conv(out, "conv2d", conv2d_bw, x, w, b, &g, N, OC, p.groups, g.C, OCg, xc, wc);
  }
  float *col = pw ? NULL : scratch_col(&g);
  if (!pw && !col) return NULL;
  for (int64_t n = 0; n < N; n++)
    for (int64_t gi = 0; gi < p.groups; gi++) {
      const float *img = nn_f32(xc) + (n * p.groups + gi) * g.C * HW;
      const float *src = img;
      if (!pw) {
        im2col(&g, img, col);
        src = col;
      }
      nn_sgemm(false, false, OCg, OHW, KK, 1.0f, nn_f32(wc) + gi * OCg * KK, KK, src, OHW, 0.0f,
               nn_f32(out) + (n * OC + gi * OCg) * OHW, OHW);
    }
  if (b) add_bias(nn_f32(out), nn_dense_f32(b), N, OC, OHW);
  return record_conv(out, "conv2d", conv2d_bw, x, w, b, &g, N, OC, p.groups, g.C, OCg, xc, wc);
}

/* ---------------------------------------------------- inference copies */

bool nn_conv_infer_init(nn_conv_infer *ci, const nn_conv2d_layer *conv, const nn_batchnorm *bn, bool relu) {
  memset(ci, 0, sizeof *ci);
  nn_tensor *w = conv->weight;
  if (!w || w->ndim != 4 || w->dtype != NN_F32) {
    nn_set_error("conv_infer: the conv layer has no f32 [OC, C, KH, KW] weight");
    return false;
  }
  int64_t OC = w->shape[0], per = nn_numel(w) / OC;
  float *scale = malloc((size_t)OC * sizeof(float)), *bias = calloc((size_t)OC, sizeof(float));
  float *wd = malloc((size_t)nn_numel(w) * sizeof(float));
  bool ok = scale && bias && wd;
  if (ok) {
    nn_to_float_array(w, wd);
    if (conv->bias) nn_to_float_array(conv->bias, bias);
    for (int64_t oc = 0; oc < OC; oc++) {
      scale[oc] = 1.0f;
      if (bn) { /* y = (x - mean) / sqrt(var + eps) * gamma + beta, folded into w and b */
        float s = nn_f32(bn->weight)[oc] / sqrtf(nn_f32(bn->running_var)[oc] + bn->eps);
        bias[oc] = (bias[oc] - nn_f32(bn->running_mean)[oc]) * s + nn_f32(bn->bias)[oc];
        scale[oc] = s;
      }
      for (int64_t i = 0; i < per; i++) wd[oc * per + i] *= scale[oc];
    }
    ci->weight = nn_tensor_from_data(NN_F32, 4, w->shape, wd);
    ci->bias = conv->bias || bn ? nn_tensor_from_data(NN_F32, 1, &OC, bias) : NULL;
    ok = ci->weight && (ci->bias || !(conv->bias || bn));
  }
  ci->p = conv->p;
  ci->relu = relu;
  /* pack for the kernels this layer can take; the image size picks between them at run time */
  geom g = {.C = w->shape[1], .H = 8, .W = 8, .KH = w->shape[2], .KW = w->shape[3], .OH = 8, .OW = 8,
            .sh = ci->p.stride_h, .sw = ci->p.stride_w, .ph = ci->p.pad_h, .pw = ci->p.pad_w,
            .dh = ci->p.dilation_h, .dw = ci->p.dilation_w};
  nn_direct_geom dg = direct_geom(&g, OC);
  conv_path path = ok ? pick_path(&g, ci->p.groups, OC, true) : PATH_GEMM;
  if (path != PATH_GEMM) {
    ci->packed_direct = malloc(packed_floats(PATH_DIRECT, &dg) * sizeof(float));
    if ((ok = ci->packed_direct != NULL)) pack_weights(PATH_DIRECT, &dg, wd, ci->packed_direct);
  }
  if (ok && is_winograd(path)) { /* a layer is 3x3 stride 1 or 5x5 stride 2, never both: one slot */
    ci->packed_winograd = malloc(packed_floats(path, &dg) * sizeof(float));
    ok = ci->packed_winograd != NULL && pack_weights(path, &dg, wd, ci->packed_winograd);
  }
  free(scale);
  free(bias);
  free(wd);
  if (!ok) {
    nn_conv_infer_free(ci);
    nn_set_error("conv_infer: out of memory");
  }
  return ok;
}

void nn_conv_infer_free(nn_conv_infer *ci) {
  nn_tensor_free(ci->weight);
  nn_tensor_free(ci->bias);
  free(ci->packed_direct);
  free(ci->packed_winograd);
  memset(ci, 0, sizeof *ci);
}

/* Depthwise convolution (groups = C = OC), inference only: one KxK filter per channel, no GEMM. Each
 * channel's rows are first copied zero-padded and split into their column phases (stride 2: even and
 * odd columns), so every tap of a block of DW_BLOCK outputs is one contiguous load; the block's sums stay
 * in registers over all taps and are stored once. Channels are split between the pool's threads; each
 * output is summed in one fixed order (bias, then taps row by row). */
#define DW_BLOCK 16
#define DW_MAX_K 16 /* larger filters take the plain form */
typedef float dw_vec __attribute__((vector_size(DW_BLOCK * sizeof(float)))); /* lowered to the machine's width */

typedef struct {
  const geom *g;
  const float *x, *w, *b;
  bool relu;
  float *out;
} dw_ctx;

/* The plain form, for when the padded copy cannot be allocated: same sums, same order. */
static void depthwise_plain(const dw_ctx *k, int64_t c) {
  const geom *g = k->g;
  const float *xc = k->x + c * g->H * g->W, *wc = k->w + c * g->KH * g->KW;
  float *oc = k->out + c * g->OH * g->OW, bias = k->b ? k->b[c] : 0.0f;
  for (int64_t oh = 0; oh < g->OH; oh++)
    for (int64_t ow = 0; ow < g->OW; ow++) {
      float acc = bias;
      for (int64_t i = 0; i < g->KH; i++) {
        int64_t ih = oh * g->sh - g->ph + i * g->dh;
        for (int64_t j = 0; ih >= 0 && ih < g->H && j < g->KW; j++) {
          int64_t iw = ow * g->sw - g->pw + j * g->dw;
          acc += wc[i * g->KW + j] * (iw >= 0 && iw < g->W ? xc[ih * g->W + iw] : 0.0f);
        }
      }
      oc[oh * g->OW + ow] = k->relu && acc < 0.0f ? 0.0f : acc;
    }
}

static void depthwise_range(void *ctx, int64_t c0, int64_t c1) {
  const dw_ctx *k = ctx;
  const geom *g = k->g;
  const int64_t sw = g->sw, L = (g->W + 2 * g->pw + sw - 1) / sw + DW_BLOCK; /* a phase row, with slack */
  float *pad = g->KH <= DW_MAX_K && g->KW <= DW_MAX_K ? malloc(sizeof *pad * (size_t)(g->H * sw * L)) : NULL;
  int64_t toff[DW_MAX_K]; /* tap j's place in a padded row: its column phase's row, then its column there */
  for (int64_t j = 0; pad && j < g->KW; j++) toff[j] = j * g->dw % sw * L + j * g->dw / sw;
  for (int64_t c = c0; c < c1; c++) {
    if (!pad) {
      depthwise_plain(k, c);
      continue;
    }
    const float *xc = k->x + c * g->H * g->W, *wc = k->w + c * g->KH * g->KW;
    float *oc = k->out + c * g->OH * g->OW, bias = k->b ? k->b[c] : 0.0f;
    for (int64_t ih = 0; ih < g->H; ih++) /* phase p of padded row ih: pad[(ih sw + p) L + m] = x[ih][m sw + p - pw] */
      for (int64_t p = 0; p < sw; p++) {
        float *d = pad + (ih * sw + p) * L;
        const float *row = xc + ih * g->W + p - g->pw;
        int64_t lo = g->pw > p ? (g->pw - p + sw - 1) / sw : 0, hi = (g->W - 1 + g->pw - p) / sw + 1; /* m with x inside */
        hi = hi < L ? hi : L;
        memset(d, 0, sizeof *d * (size_t)L);
        if (sw == 1) memcpy(d + lo, row + lo, sizeof *d * (size_t)(hi > lo ? hi - lo : 0));
        else
          for (int64_t m = lo; m < hi; m++) d[m] = row[m * sw];
      }
    for (int64_t oh = 0; oh < g->OH; oh++) {
      float *o = oc + oh * g->OW;
      const float *rows[DW_MAX_K], *wrow[DW_MAX_K]; /* the taps' rows inside the input, and their weights */
      int nr = 0;
      for (int64_t i = 0; i < g->KH; i++) {
        int64_t ih = oh * g->sh - g->ph + i * g->dh;
        if (ih >= 0 && ih < g->H) rows[nr] = pad + ih * sw * L, wrow[nr++] = wc + i * g->KW;
      }
      for (int64_t ow0 = 0; ow0 < g->OW; ow0 += DW_BLOCK) {
        dw_vec acc, t;
        for (int l = 0; l < DW_BLOCK; l++) acc[l] = bias;
        for (int r = 0; r < nr; r++)
          for (int64_t j = 0; j < g->KW; j++) {
            memcpy(&t, rows[r] + toff[j] + ow0, sizeof t);
            acc += wrow[r][j] * t;
          }
        if (k->relu)
          for (int l = 0; l < DW_BLOCK; l++) acc[l] = acc[l] < 0.0f ? 0.0f : acc[l];
        int64_t n = g->OW - ow0 < DW_BLOCK ? g->OW - ow0 : DW_BLOCK;
        memcpy(o + ow0, &acc, sizeof(float) * (size_t)n);
      }
    }
  }
  free(pad);
}

static void silu_range(void *ctx, int64_t i0, int64_t i1) {
  float *d = ctx;
  for (int64_t i = i0; i < i1; i++) d[i] = nn_silu_fast(d[i]);
}

/* For the paths whose kernels do not apply it: a pass of its own, split between the threads. */
static nn_tensor *silu_in_place(nn_tensor *y) {
  if (y) nn_parallel_for(nn_numel(y), 16384, silu_range, nn_f32(y));
  return y;
}

static nn_tensor *conv_infer(const nn_conv_infer *ci, nn_tensor *x, nn_tensor *addend, nn_tensor *into) {
  if (!x) return NULL;
  if (!ci->weight) NN_FAIL("conv_infer: not initialised");
  NN_CHECK_F32(x, "conv_infer");
  nn_tensor *w = ci->weight;
  int64_t OC = w->shape[0];
  if (x->ndim != 4 || x->shape[1] != w->shape[1] * ci->p.groups) {
    char s1[96], s2[96];
    NN_FAIL("conv_infer: input %s does not fit weight %s", nn_shape_str(x, s1, sizeof s1), nn_shape_str(w, s2, sizeof s2));
  }
  geom g;
  if (!conv_geom(x, w, ci->p, &g)) return NULL;
  int64_t osh[4] = {x->shape[0], OC, g.OH, g.OW};
  if (addend) {
    NN_CHECK_F32(addend, "conv_infer");
    if (addend->ndim != 4 || memcmp(addend->shape, osh, sizeof osh) != 0) {
      char s1[96];
      NN_FAIL("conv_infer: addend %s must have the output's shape [%lld, %lld, %lld, %lld]",
              nn_shape_str(addend, s1, sizeof s1), (long long)osh[0], (long long)osh[1], (long long)osh[2],
              (long long)osh[3]);
    }
  }
  if (into && (into->dtype != NN_F32 || into->ndim != 4 || memcmp(into->shape, osh, sizeof osh) != 0 || !nn_is_contiguous(into)))
    NN_FAIL("conv_infer: the output given is not a contiguous [%lld, %lld, %lld, %lld] tensor", (long long)osh[0],
            (long long)osh[1], (long long)osh[2], (long long)osh[3]);
  if (!addend && ci->p.groups > 1 && ci->p.groups == x->shape[1] && OC == x->shape[1] && w->shape[1] == 1) {
    nn_tensor *xc = nn_contiguous(nn_detach(x)), *out = into ? into : nn_empty(NN_F32, 4, osh);
    if (!xc || !out) return NULL;
    for (int64_t n = 0; n < x->shape[0]; n++) {
      dw_ctx k = {&g, nn_f32(xc) + n * OC * g.H * g.W, nn_f32(w), ci->bias ? nn_f32(ci->bias) : NULL, ci->relu,
                  nn_f32(out) + n * OC * g.OH * g.OW};
      nn_parallel_for(OC, 1, depthwise_range, &k);
    }
    return ci->silu ? silu_in_place(out) : out;
  }
  conv_path path = pick_path(&g, ci->p.groups, OC, true);
  if (addend && is_winograd(path)) path = PATH_DIRECT;
  const float *packed = is_winograd(path) ? ci->packed_winograd : path == PATH_DIRECT ? ci->packed_direct : NULL;
  if (!packed) { /* GEMM, with the add and ReLU as passes of their own */
    nn_tensor *y = nn_conv2d(nn_detach(x), w, ci->bias, ci->p);
    if (addend) y = nn_add(y, nn_detach(addend));
    y = ci->relu ? nn_relu(y) : ci->silu && y ? silu_in_place(nn_contiguous(y)) : y;
    if (into && y) nn_copy_(into, y);
    return into && y ? into : y;
  }
  nn_tensor *xc = nn_contiguous(nn_detach(x));
  nn_tensor *out = into ? into : nn_empty(NN_F32, 4, osh);
  if (!xc || !out) return NULL;
  if (addend) nn_to_float_array(addend, nn_f32(out));
  nn_direct_geom dg = direct_geom(&g, OC);
  if (!run_packed(path, &dg, x->shape[0], nn_f32(xc), packed, ci->bias ? nn_f32(ci->bias) : NULL,
                  ci->relu ? NN_DIRECT_RELU : ci->silu ? NN_DIRECT_SILU : 0,
                  addend != NULL, nn_f32(out)))
    return NULL;
  return out;
}

nn_tensor *nn_conv_infer_forward(const nn_conv_infer *ci, nn_tensor *x) { return conv_infer(ci, x, NULL, NULL); }

nn_tensor *nn_conv_infer_forward_into(const nn_conv_infer *ci, nn_tensor *x, nn_tensor *out) {
  if (!out) NN_FAIL("conv_infer: no output tensor");
  return conv_infer(ci, x, NULL, out);
}

nn_tensor *nn_conv_infer_forward_add(const nn_conv_infer *ci, nn_tensor *x, nn_tensor *addend) {
  if (!addend) NN_FAIL("conv_infer: no addend");
  return conv_infer(ci, x, addend, NULL);
}

/* -------------------------------------------------------- conv_transpose2d */
/* Geometry `g` describes the equivalent forward conv: its input is our output
 * (C = OCg channels of size OH x OW here named H x W) and its output is ours. */

static void convt_bw(nn_node *n, nn_tensor *gout) {
  nn_tensor *x = n->in[0], *w = n->in[1], *b = n->in[2];
  conv_info *ci = n->extra;
  const geom *g = &ci->g;
  const float *xd = nn_f32(n->saved[0]), *wd = nn_f32(n->saved[1]);
  const float *gd = nn_dense_f32(gout);
  int64_t inHW = g->OH * g->OW, outHW = g->H * g->W, KK = g->C * g->KH * g->KW;
  int64_t Cin = x->shape[1];
  nn_tensor *gx = NULL;
  conv_path path = nn_needs_grad(x) ? pick_path(g, (int)ci->groups, Cin, false) : PATH_GEMM;
  /* with the data gradient on the GEMM path, the weight gradient shares its columns of gout (below) */
  bool gemm_dx = nn_needs_grad(x) && path == PATH_GEMM;
  nn_tensor *gw = nn_needs_grad(w) ? (gemm_dx ? nn_zeros : nn_empty)(NN_F32, w->ndim, w->shape) : NULL;
  if (gw && !gemm_dx) {
    wgrad_ctx k = {.g = g, .N = ci->N, .groups = ci->groups, .M = ci->Cg, .src = gd, .a = xd,
                   .src_img = ci->OC * outHW, .src_grp = ci->OCg * outHW, .a_img = Cin * inHW, .a_grp = ci->Cg * inHW};
    if (!batch_weight_grad(&k, nn_f32(gw))) return;
  }
  if (nn_needs_grad(x) && path != PATH_GEMM) {
    /* the data gradient is the plain convolution of gout with the same filters (every element written) */
    nn_tensor *dx = nn_empty(NN_F32, x->ndim, x->shape);
    if (!dx || !run_fast(path, g, ci->N, Cin, gd, wd, NULL, false, nn_f32(dx))) return;
    nn_accum_grad_owned(x, dx);
  } else if (nn_needs_grad(x)) {
    gx = nn_zeros(NN_F32, x->ndim, x->shape);
  }
  if (!gx) {
    if (gw) nn_accum_grad(w, gw);
    if (nn_needs_grad(b)) bias_grad(b, gd, ci->N, ci->OC, outHW);
    return;
  }
  float *col = scratch_col(g);
  if (!col) return;
  for (int64_t bn = 0; bn < ci->N; bn++)
    for (int64_t gi = 0; gi < ci->groups; gi++) {
      const float *go = gd + (bn * ci->OC + gi * ci->OCg) * outHW;
      const float *xin = xd + (bn * Cin + gi * ci->Cg) * inHW;
      im2col(g, go, col);
      nn_sgemm(false, false, ci->Cg, inHW, KK, 1.0f, wd + gi * ci->Cg * KK, KK, col, inHW, 1.0f,
               nn_f32(gx) + (bn * Cin + gi * ci->Cg) * inHW, inHW);
      if (gw)
        nn_sgemm(false, true, ci->Cg, KK, inHW, 1.0f, xin, inHW, col, inHW, 1.0f,
                 nn_f32(gw) + gi * ci->Cg * KK, KK);
    }
  if (gx) nn_accum_grad_owned(x, gx);
  if (gw) nn_accum_grad(w, gw);
  if (nn_needs_grad(b)) bias_grad(b, gd, ci->N, ci->OC, outHW);
}

nn_tensor *nn_conv_transpose2d(nn_tensor *x, nn_tensor *w, nn_tensor *b, nn_conv_params p) {
  if (!x || !w) return NULL;
  NN_CHECK_F32(x, "conv_transpose2d");
  NN_CHECK_F32(w, "conv_transpose2d");
  if (!check_params(p, "conv_transpose2d")) return NULL;
  if (x->ndim != 4 || w->ndim != 4) NN_FAIL("conv_transpose2d: need x[N,C,H,W] and w[C,OC/groups,KH,KW]");
  int64_t N = x->shape[0], C = x->shape[1];
  if (w->shape[0] != C || C % p.groups) NN_FAIL("conv_transpose2d: weight dim 0 must equal input channels, divisible by groups");
  int64_t OCg = w->shape[1], OC = OCg * p.groups, Cg = C / p.groups;
  if (b && (b->ndim != 1 || b->shape[0] != OC)) NN_FAIL("conv_transpose2d: bias must be [%lld]", (long long)OC);
  if (p.output_pad_h >= p.stride_h && p.output_pad_h >= p.dilation_h) NN_FAIL("conv_transpose2d: output padding too large");
  if (p.output_pad_w >= p.stride_w && p.output_pad_w >= p.dilation_w) NN_FAIL("conv_transpose2d: output padding too large");
  int64_t H = x->shape[2], W = x->shape[3], KH = w->shape[2], KW = w->shape[3];
  int64_t OH = (H - 1) * p.stride_h - 2 * p.pad_h + p.dilation_h * (KH - 1) + p.output_pad_h + 1;
  int64_t OW = (W - 1) * p.stride_w - 2 * p.pad_w + p.dilation_w * (KW - 1) + p.output_pad_w + 1;
  if (OH < 1 || OW < 1) NN_FAIL("conv_transpose2d: padding leaves an empty output");
  geom g = {.C = OCg, .H = OH, .W = OW, .KH = KH, .KW = KW, .OH = H, .OW = W, .sh = p.stride_h,
            .sw = p.stride_w, .ph = p.pad_h, .pw = p.pad_w, .dh = p.dilation_h, .dw = p.dilation_w};
  nn_tensor *xc = nn_contiguous(nn_detach(x)), *wc = nn_contiguous(nn_detach(w));
  int64_t osh[4] = {N, OC, OH, OW};
  if (p.groups == 1 && p.dilation_h == 1 && p.dilation_w == 1 && KH * KW <= 64 && nn_conv_direct_available()) {
    /* one stride-1 convolution per output phase on the direct kernel (conv_direct.c) */
    nn_direct_geom dg = {.C = C, .H = H, .W = W, .OC = OC, .KH = KH, .KW = KW, .OH = OH, .OW = OW,
                         .sh = p.stride_h, .sw = p.stride_w, .ph = p.pad_h, .pw = p.pad_w};
    nn_tensor *out = nn_empty(NN_F32, 4, osh);
    float *scratch = nn_arena_alloc(nn_arena_current(), nn_conv_transpose_direct_scratch_floats(&dg, N) * sizeof(float));
    if (!out || !xc || !wc || !scratch) return NULL;
    const float *bd = b ? nn_dense_f32(b) : NULL;
    nn_conv_transpose_direct(&dg, N, nn_f32(xc), nn_f32(wc), bd, scratch, nn_f32(out));
    return record_conv(out, "conv_transpose2d", convt_bw, x, w, b, &g, N, OC, p.groups, Cg, OCg, xc, wc);
  }
  nn_tensor *out = nn_zeros(NN_F32, 4, osh);
  float *col = scratch_col(&g);
  if (!out || !xc || !wc || !col) return NULL;
  int64_t inHW = H * W, KK = OCg * KH * KW;
  for (int64_t n = 0; n < N; n++)
    for (int64_t gi = 0; gi < p.groups; gi++) {
      /* col[KK, inHW] = W_g^T @ x[n, g] */
      nn_sgemm(true, false, KK, inHW, Cg, 1.0f, nn_f32(wc) + gi * Cg * KK, KK,
               nn_f32(xc) + (n * C + gi * Cg) * inHW, inHW, 0.0f, col, inHW);
      col2im_add(&g, col, nn_f32(out) + (n * OC + gi * OCg) * OH * OW);
    }
  if (b) add_bias(nn_f32(out), nn_dense_f32(b), N, OC, OH * OW);
  return record_conv(out, "conv_transpose2d", convt_bw, x, w, b, &g, N, OC, p.groups, Cg, OCg, xc, wc);
}

/* ----------------------------------------------------------------- pooling */
/* Max pooling saves, per output, the tap (kh * k + kw) of its window that won (the first maximum), as
 * int32: 4 bytes instead of an 8-byte plane offset, and the backward can write a non-overlapping
 * window straight through instead of zeroing the gradient and scattering into it. 2x2 stride-2
 * windows without padding (nearly every max pool) have branch-free loops: the generic loop's
 * "is it larger" branch mispredicts half the time on real activations. */

typedef struct {
  const float *x;
  float *y;
  int32_t *arg;
  int64_t H, W, OH, OW;
  int k, s, p;
  bool is_max;
} pool_ctx;

static bool pool_is_2x2(const pool_ctx *c) { return c->k == 2 && c->s == 2 && c->p == 0; }

#if defined(__x86_64__)
#include <immintrin.h>
/* 8 outputs of a 2x2 window row: the even and odd columns of 16 floats of each input row. */
__attribute__((target("avx2"))) static inline void even_odd8(const float *r, __m256 *ev, __m256 *od) {
  __m256 a = _mm256_loadu_ps(r), b = _mm256_loadu_ps(r + 8);
  __m256 e = _mm256_shuffle_ps(a, b, _MM_SHUFFLE(2, 0, 2, 0)), o = _mm256_shuffle_ps(a, b, _MM_SHUFFLE(3, 1, 3, 1));
  *ev = _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(e), 0xd8));
  *od = _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(o), 0xd8));
}

/* The scalar loop's order, 8 outputs at a time: a later tap wins only when strictly larger. */
__attribute__((target("avx2"))) static int64_t max_pool_2x2_row_avx2(const float *r0, const float *r1, int64_t OW,
                                                                     float *y, int32_t *a) {
  int64_t ow = 0;
  for (; ow + 8 <= OW; ow += 8) {
    __m256 v0, v1, v2, v3;
    even_odd8(r0 + 2 * ow, &v0, &v1);
    even_odd8(r1 + 2 * ow, &v2, &v3);
    __m256 best = v0;
    __m256i bi = _mm256_setzero_si256();
    __m256 gt = _mm256_cmp_ps(v1, best, _CMP_GT_OQ);
    best = _mm256_blendv_ps(best, v1, gt), bi = _mm256_blendv_epi8(bi, _mm256_set1_epi32(1), _mm256_castps_si256(gt));
    gt = _mm256_cmp_ps(v2, best, _CMP_GT_OQ);
    best = _mm256_blendv_ps(best, v2, gt), bi = _mm256_blendv_epi8(bi, _mm256_set1_epi32(2), _mm256_castps_si256(gt));
    gt = _mm256_cmp_ps(v3, best, _CMP_GT_OQ);
    best = _mm256_blendv_ps(best, v3, gt), bi = _mm256_blendv_epi8(bi, _mm256_set1_epi32(3), _mm256_castps_si256(gt));
    _mm256_storeu_ps(y + ow, best);
    _mm256_storeu_si256((__m256i *)(a + ow), bi);
  }
  return ow;
}

/* The gradient of 8 windows: each output's value to the tap that won, zeros to the other three. */
__attribute__((target("avx2"))) static int64_t max_pool_2x2_bw_row_avx2(const float *g, const int32_t *a, int64_t OW,
                                                                        float *r0, float *r1) {
  int64_t ow = 0;
  for (; ow + 8 <= OW; ow += 8) {
    __m256 v = _mm256_loadu_ps(g + ow);
    __m256i t = _mm256_loadu_si256((const __m256i *)(a + ow));
    __m256 m[4];
    for (int j = 0; j < 4; j++) m[j] = _mm256_and_ps(v, _mm256_castsi256_ps(_mm256_cmpeq_epi32(t, _mm256_set1_epi32(j))));
    for (int r = 0; r < 2; r++) { /* interleave (tap 2r, tap 2r + 1) into 16 consecutive floats */
      __m256 lo = _mm256_unpacklo_ps(m[2 * r], m[2 * r + 1]), hi = _mm256_unpackhi_ps(m[2 * r], m[2 * r + 1]);
      float *d = (r ? r1 : r0) + 2 * ow;
      _mm256_storeu_ps(d, _mm256_permute2f128_ps(lo, hi, 0x20));
      _mm256_storeu_ps(d + 8, _mm256_permute2f128_ps(lo, hi, 0x31));
    }
  }
  return ow;
}
#endif

/* follows the kernels' instruction set, NNCORE_ISA and nn_set_conv_isa included */
static bool pool_avx2(void) {
#if defined(__x86_64__)
  return strcmp(nn_conv_isa(), "generic") != 0;
#else
  return false;
#endif
}

static void max_pool_2x2_plane(const float *x, int64_t W, int64_t OH, int64_t OW, float *y, int32_t *a) {
  bool vec = pool_avx2();
  for (int64_t oh = 0; oh < OH; oh++) {
    const float *r0 = x + 2 * oh * W, *r1 = r0 + W;
    float *yo = y + oh * OW;
    int32_t *ao = a + oh * OW;
    int64_t ow = 0;
#if defined(__x86_64__)
    if (vec) ow = max_pool_2x2_row_avx2(r0, r1, OW, yo, ao);
#endif
    for (; ow < OW; ow++) {
      float best = r0[2 * ow], v;
      int32_t bi = 0;
      v = r0[2 * ow + 1], bi = v > best ? 1 : bi, best = v > best ? v : best;
      v = r1[2 * ow], bi = v > best ? 2 : bi, best = v > best ? v : best;
      v = r1[2 * ow + 1], bi = v > best ? 3 : bi, best = v > best ? v : best;
      yo[ow] = best;
      ao[ow] = bi;
    }
  }
}

/* Max over a row's windows (k taps, stride s, padding p: taps outside the row are left out). */
static void max_row(const float *x, int64_t W, int64_t OW, int k, int s, int p, float *out) {
  /* windows wholly inside the row: ow in [lo, hi) */
  int64_t lo = (p + s - 1) / s, hi = W - k + p >= 0 ? (W - k + p) / s + 1 : 0;
  if (hi > OW) hi = OW;
  if (lo > hi) lo = hi;
  for (int64_t ow = lo; ow < hi; ow++) out[ow] = x[ow * s - p];
  for (int kw = 1; kw < k; kw++)
    for (int64_t ow = lo; ow < hi; ow++) {
      float v = x[ow * s - p + kw];
      out[ow] = v > out[ow] ? v : out[ow];
    }
  for (int64_t ow = 0; ow < OW; ow++) {
    if (ow == lo) ow = hi;
    if (ow >= OW) break;
    float best = -INFINITY;
    bool any = false;
    for (int kw = 0; kw < k; kw++) {
      int64_t iw = ow * s - p + kw;
      if (iw >= 0 && iw < W && (!any || x[iw] > best)) best = x[iw], any = true;
    }
    out[ow] = best;
  }
}

/* Max pooling when no gradient will be taken (no argmax to keep): rows first, then columns, so a k x k
 * window costs 2k comparisons instead of k^2 (YOLO's SPPF pools 5 x 5 three times over a map). */
static bool max_pool_plane_separable(const pool_ctx *c, const float *x, float *y) {
  float *rows = malloc(sizeof *rows * (size_t)(c->H * c->OW));
  if (!rows) return false;
  for (int64_t ih = 0; ih < c->H; ih++) max_row(x + ih * c->W, c->W, c->OW, c->k, c->s, c->p, rows + ih * c->OW);
  for (int64_t oh = 0; oh < c->OH; oh++) {
    float *o = y + oh * c->OW;
    bool any = false;
    for (int kh = 0; kh < c->k; kh++) {
      int64_t ih = oh * c->s - c->p + kh;
      if (ih < 0 || ih >= c->H) continue;
      const float *r = rows + ih * c->OW;
      if (!any) memcpy(o, r, sizeof *o * (size_t)c->OW);
      else
        for (int64_t ow = 0; ow < c->OW; ow++) o[ow] = r[ow] > o[ow] ? r[ow] : o[ow];
      any = true;
    }
  }
  free(rows);
  return true;
}

static void pool_planes(void *pp, int64_t p0, int64_t p1) {
  pool_ctx *c = pp;
  float inv = 1.0f / (float)(c->k * c->k);
  for (int64_t pl = p0; pl < p1; pl++) {
    const float *x = c->x + pl * c->H * c->W;
    float *y = c->y + pl * c->OH * c->OW;
    int32_t *a = c->arg ? c->arg + pl * c->OH * c->OW : NULL;
    if (c->is_max && pool_is_2x2(c)) {
      max_pool_2x2_plane(x, c->W, c->OH, c->OW, y, a);
      continue;
    }
    if (c->is_max && !a && max_pool_plane_separable(c, x, y)) continue;
    for (int64_t oh = 0; oh < c->OH; oh++)
      for (int64_t ow = 0; ow < c->OW; ow++) {
        float best = -INFINITY, sum = 0;
        int32_t bi = -1;
        for (int kh = 0; kh < c->k; kh++) {
          int64_t ih = oh * c->s - c->p + kh;
          if (ih < 0 || ih >= c->H) continue;
          for (int kw = 0; kw < c->k; kw++) {
            int64_t iw = ow * c->s - c->p + kw;
            if (iw < 0 || iw >= c->W) continue;
            float v = x[ih * c->W + iw];
            sum += v;
            if (v > best || bi < 0) {
              best = v;
              bi = kh * c->k + kw;
            }
          }
        }
        if (c->is_max) {
          y[oh * c->OW + ow] = best;
          if (a) a[oh * c->OW + ow] = bi;
        } else {
          y[oh * c->OW + ow] = sum * inv;
        }
      }
  }
}

typedef struct {
  const float *go;
  const int32_t *arg; /* NULL: average pooling */
  float *dx;
  int64_t H, W, OH, OW;
  int k, s, p;
} pool_bw_ctx;

/* The gradient of a 2x2 max window goes whole to its winner; the rows and the column that no window
 * covers (odd sizes) get zeros. */
static void max_pool_2x2_bw_plane(const float *go, const int32_t *a, int64_t H, int64_t W, int64_t OH,
                                  int64_t OW, float *dx) {
  bool vec = pool_avx2();
  for (int64_t oh = 0; oh < OH; oh++) {
    float *r0 = dx + 2 * oh * W, *r1 = r0 + W;
    const float *g = go + oh * OW;
    const int32_t *ai = a + oh * OW;
    int64_t ow = 0;
#if defined(__x86_64__)
    if (vec) ow = max_pool_2x2_bw_row_avx2(g, ai, OW, r0, r1);
#endif
    for (; ow < OW; ow++) {
      float v = g[ow];
      int32_t t = ai[ow];
      r0[2 * ow] = t == 0 ? v : 0.0f;
      r0[2 * ow + 1] = t == 1 ? v : 0.0f;
      r1[2 * ow] = t == 2 ? v : 0.0f;
      r1[2 * ow + 1] = t == 3 ? v : 0.0f;
    }
    if (W > 2 * OW) r0[W - 1] = r1[W - 1] = 0.0f;
  }
  if (H > 2 * OH) memset(dx + 2 * OH * W, 0, (size_t)((H - 2 * OH) * W) * sizeof(float));
}

static void pool_bw_planes(void *pp, int64_t p0, int64_t p1) {
  pool_bw_ctx *c = pp;
  int64_t H = c->H, W = c->W, OH = c->OH, OW = c->OW;
  int k = c->k, s = c->s, p = c->p;
  for (int64_t pl = p0; pl < p1; pl++) {
    float *dx = c->dx + pl * H * W;
    const float *go = c->go + pl * OH * OW;
    const int32_t *a = c->arg ? c->arg + pl * OH * OW : NULL;
    if (a && k == 2 && s == 2 && p == 0) {
      max_pool_2x2_bw_plane(go, a, H, W, OH, OW, dx);
      continue;
    }
    memset(dx, 0, (size_t)(H * W) * sizeof(float));
    float inv = 1.0f / (float)(k * k);
    for (int64_t oh = 0; oh < OH; oh++)
      for (int64_t ow = 0; ow < OW; ow++) {
        if (a) {
          int32_t t = a[oh * OW + ow];
          dx[(oh * s - p + t / k) * W + ow * s - p + t % k] += go[oh * OW + ow];
          continue;
        }
        for (int kh = 0; kh < k; kh++) {
          int64_t ih = oh * s - p + kh;
          if (ih < 0 || ih >= H) continue;
          for (int kw = 0; kw < k; kw++) {
            int64_t iw = ow * s - p + kw;
            if (iw >= 0 && iw < W) dx[ih * W + iw] += go[oh * OW + ow] * inv;
          }
        }
      }
  }
}

static void pool_bw(nn_node *n, nn_tensor *g) {
  nn_tensor *x = n->in[0];
  if (!nn_needs_grad(x)) return;
  nn_tensor *gx = nn_empty(NN_F32, 4, x->shape);
  const float *gd = nn_dense_f32(g);
  if (!gx || !gd) return;
  pool_bw_ctx c = {.go = gd, .arg = n->i[3] ? nn_data(n->saved[0]) : NULL, .dx = nn_f32(gx), .H = x->shape[2],
                   .W = x->shape[3], .OH = n->out->shape[2], .OW = n->out->shape[3], .k = (int)n->i[0],
                   .s = (int)n->i[1], .p = (int)n->i[2]};
  nn_parallel_for(x->shape[0] * x->shape[1], 1, pool_bw_planes, &c);
  nn_accum_grad_owned(x, gx);
}

static nn_tensor *pool2d(nn_tensor *x, int k, int s, int p, bool is_max, const char *name) {
  if (!x) return NULL;
  NN_CHECK_F32(x, name);
  if (x->ndim != 4) NN_FAIL("%s: need x[N,C,H,W]", name);
  if (k < 1 || s < 1 || p < 0 || p > k / 2) NN_FAIL("%s: need kernel >= 1, stride >= 1, 0 <= pad <= kernel/2", name);
  int64_t H = x->shape[2], W = x->shape[3];
  if (H + 2 * p < k || W + 2 * p < k) NN_FAIL("%s: kernel larger than the padded input", name);
  int64_t OH = (H + 2 * p - k) / s + 1, OW = (W + 2 * p - k) / s + 1;
  int64_t osh[4] = {x->shape[0], x->shape[1], OH, OW};
  nn_tensor *out = nn_empty(NN_F32, 4, osh);
  pool_ctx c = {.H = H, .W = W, .OH = OH, .OW = OW, .k = k, .s = s, .p = p, .is_max = is_max};
  /* the argmax is for the backward pass (and the 2x2 kernel writes it anyway) */
  bool keep_arg = is_max && ((nn_grad_enabled() && nn_needs_grad(x)) || pool_is_2x2(&c));
  nn_tensor *arg = keep_arg ? nn_empty(NN_I32, 4, osh) : NULL;
  const float *xd = nn_dense_f32(x);
  if (!out || !xd || (keep_arg && !arg)) return NULL;
  c.x = xd, c.y = nn_f32(out), c.arg = arg ? nn_data(arg) : NULL;
  nn_parallel_for(x->shape[0] * x->shape[1], 1, pool_planes, &c);
  nn_node *n = nn_record(out, name, pool_bw, 1, x);
  if (n) {
    n->i[0] = k;
    n->i[1] = s;
    n->i[2] = p;
    n->i[3] = is_max;
    n->saved[0] = arg;
  }
  return out;
}

nn_tensor *nn_max_pool2d(nn_tensor *x, int k, int s, int p) { return pool2d(x, k, s, p, true, "max_pool2d"); }
nn_tensor *nn_avg_pool2d(nn_tensor *x, int k, int s, int p) { return pool2d(x, k, s, p, false, "avg_pool2d"); }

/* -------------------------------------------------------------- upsampling */

/* Source coordinates and weights for one output axis (bilinear, half-pixel). */
static void bilinear_axis(int64_t in, int64_t out, int64_t o, int64_t *i0, int64_t *i1, float *w1) {
  float scale = (float)in / (float)out;
  float src = ((float)o + 0.5f) * scale - 0.5f;
  if (src < 0) src = 0;
  int64_t lo = (int64_t)src;
  if (lo > in - 1) lo = in - 1;
  *i0 = lo;
  *i1 = lo + 1 < in ? lo + 1 : in - 1;
  *w1 = src - (float)lo;
}

static int64_t nearest_src(int64_t in, int64_t out, int64_t o) {
  int64_t s = (int64_t)floorf((float)o * ((float)in / (float)out));
  return s < in ? s : in - 1;
}

static void upsample_bw(nn_node *n, nn_tensor *g) {
  nn_tensor *x = n->in[0];
  if (!nn_needs_grad(x)) return;
  nn_tensor *gx = nn_zeros(NN_F32, 4, x->shape);
  if (!gx) return;
  const float *gd = nn_dense_f32(g);
  int64_t planes = x->shape[0] * x->shape[1], H = x->shape[2], W = x->shape[3];
  int64_t OH = n->out->shape[2], OW = n->out->shape[3];
  for (int64_t pl = 0; pl < planes; pl++) {
    float *dx = nn_f32(gx) + pl * H * W;
    const float *go = gd + pl * OH * OW;
    for (int64_t oh = 0; oh < OH; oh++)
      for (int64_t ow = 0; ow < OW; ow++) {
        float v = go[oh * OW + ow];
        if (n->i[0]) {
          int64_t h0, h1, w0, w1;
          float ah, aw;
          bilinear_axis(H, OH, oh, &h0, &h1, &ah);
          bilinear_axis(W, OW, ow, &w0, &w1, &aw);
          dx[h0 * W + w0] += v * (1 - ah) * (1 - aw);
          dx[h0 * W + w1] += v * (1 - ah) * aw;
          dx[h1 * W + w0] += v * ah * (1 - aw);
          dx[h1 * W + w1] += v * ah * aw;
        } else {
          dx[nearest_src(H, OH, oh) * W + nearest_src(W, OW, ow)] += v;
        }
      }
  }
  nn_accum_grad_owned(x, gx);
}

typedef struct {
  const float *x;
  float *y;
  int64_t H, W, OH, OW;
  bool bilinear;
  const int64_t *src_col; /* nearest: source column of each output column */
} up_ctx;

static void up_planes(void *p, int64_t p0, int64_t p1) {
  up_ctx *c = p;
  for (int64_t pl = p0; pl < p1; pl++) {
    const float *x = c->x + pl * c->H * c->W;
    float *y = c->y + pl * c->OH * c->OW;
    for (int64_t oh = 0; oh < c->OH; oh++)
      for (int64_t ow = 0; ow < c->OW; ow++) {
        if (c->bilinear) {
          int64_t h0, h1, w0, w1;
          float ah, aw;
          bilinear_axis(c->H, c->OH, oh, &h0, &h1, &ah);
          bilinear_axis(c->W, c->OW, ow, &w0, &w1, &aw);
          y[oh * c->OW + ow] = (1 - ah) * ((1 - aw) * x[h0 * c->W + w0] + aw * x[h0 * c->W + w1]) +
                               ah * ((1 - aw) * x[h1 * c->W + w0] + aw * x[h1 * c->W + w1]);
        } else {
          int64_t src = nearest_src(c->H, c->OH, oh);
          float *out = y + oh * c->OW;
          if (oh > 0 && src == nearest_src(c->H, c->OH, oh - 1)) { /* the row above, again */
            memcpy(out, out - c->OW, (size_t)c->OW * sizeof *out);
            break;
          }
          const float *row = x + src * c->W;
          if (c->OW == 2 * c->W) /* the common 2x: each value twice */
            for (int64_t j = 0; j < c->W; j++) out[2 * j] = out[2 * j + 1] = row[j];
          else
            for (; ow < c->OW; ow++) out[ow] = row[c->src_col[ow]];
          break;
        }
      }
  }
}

/* into: a contiguous [N, C, oh, ow] tensor to write (inference: nothing is recorded), or NULL */
static nn_tensor *upsample(nn_tensor *x, int64_t oh, int64_t ow, bool bilinear, const char *name, nn_tensor *into) {
  if (!x) return NULL;
  NN_CHECK_F32(x, name);
  if (x->ndim != 4) NN_FAIL("%s: need x[N,C,H,W]", name);
  if (oh < 1 || ow < 1 || oh > (1 << 16) || ow > (1 << 16)) NN_FAIL("%s: output size %lldx%lld out of range", name, (long long)oh, (long long)ow);
  if (x->shape[2] < 1 || x->shape[3] < 1) NN_FAIL("%s: empty input", name);
  int64_t osh[4] = {x->shape[0], x->shape[1], oh, ow};
  if (into && (into->ndim != 4 || !nn_is_contiguous(into) || memcmp(into->shape, osh, sizeof osh) != 0))
    NN_FAIL("%s: the output it is to write is not a contiguous [N,C,%lld,%lld]", name, (long long)oh, (long long)ow);
  nn_tensor *out = into ? into : nn_empty(NN_F32, 4, osh);
  const float *xd = nn_dense_f32(x);
  if (!out || !xd) return NULL;
  int64_t *cols = nn_arena_alloc(nn_arena_current(), (size_t)ow * sizeof(int64_t));
  if (!cols) return NULL;
  for (int64_t j = 0; j < ow; j++) cols[j] = nearest_src(x->shape[3], ow, j);
  up_ctx c = {xd, nn_f32(out), x->shape[2], x->shape[3], oh, ow, bilinear, cols};
  nn_parallel_for(x->shape[0] * x->shape[1], 1, up_planes, &c);
  if (into) return out;
  nn_node *n = nn_record(out, name, upsample_bw, 1, x);
  if (n) n->i[0] = bilinear;
  return out;
}

nn_tensor *nn_upsample_nearest(nn_tensor *x, int64_t oh, int64_t ow) { return upsample(x, oh, ow, false, "upsample_nearest", NULL); }
nn_tensor *nn_upsample_bilinear(nn_tensor *x, int64_t oh, int64_t ow) { return upsample(x, oh, ow, true, "upsample_bilinear", NULL); }
nn_tensor *nn_upsample_into(nn_tensor *x, bool bilinear, nn_tensor *out) {
  if (!out) return NULL;
  return upsample(x, out->ndim == 4 ? out->shape[2] : 0, out->ndim == 4 ? out->shape[3] : 0, bilinear,
                  bilinear ? "upsample_bilinear" : "upsample_nearest", out);
}
