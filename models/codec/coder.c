/* Coding: the entropy passes over z and y, the latent search, compress/decompress and the memory a
 * picture needs. Encoder and decoder run the same passes (code_latents), so they cannot disagree on an
 * order or a probability. */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "internal.h"

static const codec_options DEFAULT_OPTIONS = {0};

static int pad_to(int v) { return (v + CODEC_STRIDE - 1) / CODEC_STRIDE * CODEC_STRIDE; }

void codec_block_grid(int w, int h, int *cols, int *rows) {
  *cols = pad_to(w) / 16;
  *rows = pad_to(h) / 16;
}

/* Per padded pixel, with some headroom over the peak resident memory of `e2e codec decode|encode` on a
 * 3072x2048 picture, model included (docs/codec.md): decoding 195 bytes, encoding 219, encoding with the
 * latent search 1950 (its gradient graph over the synthesis). */
enum { DECODE_BYTES_PER_PIXEL = 240, ENCODE_BYTES_PER_PIXEL = 340, REFINE_BYTES_PER_PIXEL = 2300 };

uint64_t codec_working_bytes(const codec_model *c, const codec_options *o, int w, int h, bool encoding) {
  if (!o) o = &DEFAULT_OPTIONS;
  uint64_t px = (uint64_t)pad_to(w) * (uint64_t)pad_to(h);
  uint64_t per_px = !encoding ? DECODE_BYTES_PER_PIXEL : o->refine_steps > 0 ? REFINE_BYTES_PER_PIXEL : ENCODE_BYTES_PER_PIXEL;
  /* measured with N 64; the largest tensors, at half resolution, grow with N */
  return px * per_px * (uint64_t)(c->cfg.n > 64 ? c->cfg.n : 64) / 64;
}

bool codec_check_memory(const codec_model *c, const codec_options *o, int w, int h, bool encoding) {
  if (!o) o = &DEFAULT_OPTIONS;
  uint64_t limit = o->memory_limit;
  if (!limit) {
    long pages = sysconf(_SC_PHYS_PAGES), page = sysconf(_SC_PAGE_SIZE);
    limit = pages > 0 && page > 0 ? (uint64_t)pages * (uint64_t)page : UINT64_MAX;
  }
  uint64_t need = codec_working_bytes(c, o, w, h, encoding);
  if (need <= limit) return true;
  nn_set_error("e2ecodec: %s a %dx%d picture%s takes about %.1f GB of working memory; the limit is %.1f GB (%s)",
               encoding ? "encoding" : "decoding", w, h, encoding && o->refine_steps > 0 ? " with the latent search" : "",
               need / 1e9, limit / 1e9, o->memory_limit ? "set by the application" : "this machine's memory");
  return false;
}

/* Planar 0..1 floats, edges replicated into the padding (cheaper to code than black). */
static void rgb_to_padded(const uint8_t *rgb, int w, int h, int stride, int pw, int ph, float *dst) {
  for (int c = 0; c < 3; c++)
    for (int y = 0; y < ph; y++) {
      const uint8_t *row = rgb + (size_t)(y < h ? y : h - 1) * (size_t)stride;
      float *o = dst + ((size_t)c * ph + y) * pw;
      for (int x = 0; x < pw; x++) o[x] = row[(x < w ? x : w - 1) * 3 + c] * (1.0f / 255.0f);
    }
}

static void padded_to_rgb(const float *src, int pw, int ph, int w, int h, uint8_t *rgb) {
  for (int y = 0; y < h; y++)
    for (int x = 0; x < w; x++)
      for (int c = 0; c < 3; c++) {
        float v = src[((size_t)c * ph + y) * pw + x] * 255.0f;
        /* !(v > 0) also catches NaN, which a hostile stream's huge values can lead to */
        rgb[((size_t)y * w + x) * 3 + c] = (uint8_t)(!(v > 0) ? 0 : v >= 255 ? 255 : (int)(v + 0.5f));
      }
}

/* The integer a latent is coded as: rounded, saturated (a float past int32 has no defined conversion),
 * 0 for what is not a number. */
static int32_t to_symbol(float v) {
  return !isfinite(v) ? 0 : v > 1e9f ? 1000000000 : v < -1e9f ? -1000000000 : (int32_t)nearbyintf(v);
}

/* Integer y values above the table go out as the escape then 32 raw bits (zig-zag). */
static void put_value(rans_writer *w, const codec_tables *t, int ti, int32_t v) {
  const int32_t *cdf = t->cdf + (size_t)ti * (size_t)(t->max_len + 1);
  int32_t k = v + t->offset[ti];
  if (k >= 0 && k < t->len[ti] - 1) {
    rans_put(w, cdf, k);
    return;
  }
  rans_put(w, cdf, t->len[ti] - 1);
  uint32_t u = (uint32_t)v; /* zig-zag in unsigned arithmetic: shifting a negative int is undefined */
  uint32_t zz = (u << 1) ^ (0u - (u >> 31));
  rans_put_raw16(w, zz >> 16);
  rans_put_raw16(w, zz & 0xffff);
}

static int32_t get_value(rans_reader *r, const codec_tables *t, int ti) {
  const int32_t *cdf = t->cdf + (size_t)ti * (size_t)(t->max_len + 1);
  int k = rans_get(r, cdf, t->len[ti]);
  if (k < t->len[ti] - 1) return k - t->offset[ti];
  uint32_t hi = rans_get_raw16(r), lo = rans_get_raw16(r);
  uint32_t zz = hi << 16 | lo;
  return (int32_t)(zz >> 1) ^ -(int32_t)(zz & 1);
}

/* Which latents a pass codes: all of them, a checkerboard colour, or the anchors of even or odd rows. */
typedef enum { LATENTS_ALL, LATENTS_ANCHORS, LATENTS_SECOND_HALF, LATENTS_ANCHORS_EVEN_ROWS, LATENTS_ANCHORS_ODD_ROWS } latent_set;

/* The bits symbol value v costs under table ti (what the rANS coder spends, to a fraction of a bit). */
static float symbol_bits(const codec_tables *t, int ti, int32_t v) {
  const int32_t *cdf = t->cdf + (size_t)ti * (size_t)(t->max_len + 1);
  int64_t k = (int64_t)v + t->offset[ti];
  bool escape = !(k >= 0 && k < t->len[ti] - 1);
  if (escape) k = t->len[ti] - 1;
  return (float)(RANS_PRECISION - log2((double)(cdf[k + 1] - cdf[k]))) + (escape ? 32.0f : 0.0f);
}

/* One pass over one set of y's latents, in the stream's order: channel by channel, raster order, each under
 * the table of its quantised scale. Encoding (y set) writes y's residuals from the means to w; decoding
 * reads them from r. Either way y_hat receives residual + mean, and coded (if set) the integer. In a
 * predicted picture (p set) a position whose map entry is 0 is not coded: it takes the reference's value,
 * and coded its distance from the mean. bits (if set, [H, W]) adds up what each position costs. False when
 * decoding ran past the end of the payload: the stream is corrupt (a whole one never does), and stopping
 * there keeps a few garbage bytes that claim a large picture from costing all of its symbols. */
static bool code_pass(const codec_model *c, int H, int W, latent_set set, const float *means, const float *scales,
                      const float *y, rans_writer *w, rans_reader *r, const codec_prediction *p, float *y_hat,
                      float *coded, float *bits) {
  int row0 = set == LATENTS_ANCHORS_ODD_ROWS, row_step = set >= LATENTS_ANCHORS_EVEN_ROWS ? 2 : 1;
  for (size_t ch = 0; ch < (size_t)c->cfg.m; ch++) {
    if (r && r->overrun) {
      nn_set_error("e2ecodec: latent payload is corrupt (it ends before its latents do)");
      return false;
    }
    for (int py = row0; py < H; py += row_step)
      for (int px = 0; px < W; px++) {
        if (set != LATENTS_ALL && (py + px) % 2 != (set == LATENTS_SECOND_HALF)) continue;
        size_t pos = (size_t)py * W + px, i = ch * H * W + pos;
        if (p && !p->coded[pos]) {
          y_hat[i] = p->y_hat[i];
          if (coded) coded[i] = p->y_hat[i] - means[i];
          continue;
        }
        int32_t q, table = codec_scale_index(&c->tables, scales[i]);
        if (y) put_value(w, &c->tables, table, q = to_symbol(y[i] - means[i]));
        else q = get_value(r, &c->tables, table);
        if (bits) bits[pos] += symbol_bits(&c->tables, table, q);
        y_hat[i] = (float)q + means[i];
        if (coded) coded[i] = (float)q;
      }
  }
  return true;
}

/* The latents in both directions, so that encoder and decoder cannot disagree on the order or on a
 * probability: z_hat -> means and scales (fixed-order float path) -> tables; with a context model
 * the anchors first (with an anchors' context, those on even rows, then those on odd rows under means and
 * scales corrected from them), then the other half under means and scales corrected from the decoded
 * anchors. Encoding: y is the analysis output, w the writer. Decoding: y is NULL, r the reader. p: the
 * positions a predicted picture copies, NULL for an intra picture; bits: see code_pass. */
static bool code_latents(codec_model *c, const float *z_hat, int zh, int zw, const float *y, rans_writer *w,
                         rans_reader *r, const codec_prediction *p, float *y_hat, float *bits) {
  int H = 4 * zh, W = 4 * zw;
  nn_arena *home = codec_scratch_borrow(c);
  size_t ny = (size_t)c->cfg.m * (size_t)H * (size_t)W;
  float *means = codec_scratch(ny, true), *scales = codec_scratch(ny, false);
  float *anchors = NULL, *cm = NULL, *cs = NULL;
  bool ok = means && scales;
  ok = ok && codec_hyper_scales_exact(c, z_hat, zh, zw, scales, c->cfg.mean_scale ? means : NULL);
  if (ok && !c->cfg.context) ok = code_pass(c, H, W, LATENTS_ALL, means, scales, y, w, r, p, y_hat, NULL, bits);
  if (ok && c->cfg.context) {
    anchors = codec_scratch(ny, true), cm = codec_scratch(ny, true), cs = codec_scratch(ny, true);
    ok = anchors && cm && cs;
    if (ok && !c->cfg.anchor_context) /* the anchors' integers, zero elsewhere */
      ok = code_pass(c, H, W, LATENTS_ANCHORS, means, scales, y, w, r, p, y_hat, anchors, bits);
    if (ok && c->cfg.anchor_context) {
      ok = code_pass(c, H, W, LATENTS_ANCHORS_EVEN_ROWS, means, scales, y, w, r, p, y_hat, anchors, bits) &&
           codec_anchor_context_exact(c, anchors, means, scales, H, W, cm, cs) &&
           code_pass(c, H, W, LATENTS_ANCHORS_ODD_ROWS, cm, cs, y, w, r, p, y_hat, anchors, bits);
      if (ok) {
        /* the second half's context reads each anchor's value from its hyperprior mean */
        for (size_t ch = 0; ch < (size_t)c->cfg.m; ch++)
          for (int py = 1; py < H; py += 2)
            for (int px = 1; px < W; px += 2) {
              size_t i = (ch * H + py) * W + px;
              anchors[i] += cm[i] - means[i];
            }
      }
    }
    ok = ok && codec_context_exact(c, anchors, means, scales, H, W, cm, cs);
    ok = ok && code_pass(c, H, W, LATENTS_SECOND_HALF, cm, cs, y, w, r, p, y_hat, NULL, bits);
  }
  codec_scratch_return(c, home);
  return ok;
}

/* The levels a picture's n positions are reconstructed at: a coded position's own (levels, NULL: all at
 * quality), a copied one's (coded[p] == 0) from the reference. *out: NULL when all are at quality, else an
 * array in the current arena. False when out of memory. */
static bool shown_levels(int quality, const uint8_t *levels, const uint8_t *coded, const codec_reference *ref, int n,
                         const uint8_t **out) {
  *out = NULL;
  if (!levels && !coded) return true;
  uint8_t *at = (uint8_t *)codec_scratch(((size_t)n + 3) / 4, false);
  if (!at) return false;
  bool uniform = true;
  for (int p = 0; p < n; p++) {
    at[p] = coded && !coded[p] ? ref->levels[p] : levels ? levels[p] : (uint8_t)quality;
    uniform = uniform && at[p] == quality;
  }
  if (!uniform) *out = at;
  return true;
}

static int z_table(const codec_model *c, int ch) {
  return codec_scale_index(&c->tables, expf(nn_f32(c->z_scale_raw)[ch]));
}

/* g_s(y_hat) -> 8-bit RGB: the reconstruction both sides compute. levels: each position's level, NULL when
 * all are at quality. */
static bool reconstruct(codec_model *c, int quality, const uint8_t *levels, nn_tensor *y_hat, int pw, int ph, int w,
                        int h, uint8_t *rgb) {
  codec_levels lv = {.quality = &quality, .map = levels, .map_h = ph / 16, .map_w = pw / 16};
  nn_tensor *x_hat = codec_synthesis_at(c, codec_gains_at(c->gain_dec, y_hat, &lv), &lv);
  if (!x_hat) return false;
  padded_to_rgb(nn_f32(x_hat), pw, ph, w, h, rgb);
  return true;
}

/* This picture's loss for latents y under the (fixed) means and scales its coded z gives, y rounded as
 * the coder will round it (straight through): lambda * 255^2 * MSE + bits per pixel of y. */
static nn_tensor *coded_loss(codec_model *c, nn_tensor *x, nn_tensor *y, nn_tensor *means, nn_tensor *scales, int quality) {
  codec_context_params(c, y, &means, &scales); /* the second half's follow the anchors as they move */
  nn_tensor *r = means ? nn_sub(y, means) : y;
  r = nn_add(r, codec_rounding_offset(r));
  nn_tensor *bits_y = nn_gaussian_bits(r, scales, CODEC_SCALE_MIN);
  nn_tensor *x_hat = codec_synthesis_levels(c, nn_mul(means ? nn_add(r, means) : r, codec_gains_for(c->gain_dec, &quality, 1)), &quality);
  nn_tensor *d = nn_sub(x_hat, x);
  float pixels = (float)(x->shape[2] * x->shape[3]);
  return nn_add(nn_mul_scalar(nn_mean_all(nn_mul(d, d)), codec_lambda(&c->cfg, quality) * 255.0f * 255.0f),
                nn_mul_scalar(nn_sum_all(bits_y), 1.0f / pixels));
}

/* Replaces y (in place) by the best latents found in `steps` gradient steps on coded_loss. Only y gets a
 * gradient: the weights, which other threads may be coding with, stay constants (an nn_scope with `only`). */
static bool refine_latents(codec_model *c, nn_tensor *x, nn_tensor *y, nn_tensor *z_hat, int quality, int steps) {
  nn_params v;
  nn_params_init(&v);
  nn_tensor *yv = nn_params_add(&v, "y", nn_tensor_new(NN_F32, y->ndim, y->shape), true);
  float *best = malloc(sizeof(float) * (size_t)nn_numel(y));
  /* Plain gradient steps: Adam's per-element normalisation moves every latent by the same amount and
   * pushes many across a rounding boundary at once (its loss rose within 10 steps). The step grows
   * with lambda above level 3, where the distortion's gradient is flatter relative to the rate's.
   * Tuned on two 256x256 crops of BSDS500 val (Kodak stays for evaluation): 40 steps lower the real
   * rate + lambda * distortion by about 4 % at levels 1 and 3 and 5 % at level 5. */
  float lr = 40.0f * fmaxf(1.0f, powf(codec_lambda(&c->cfg, quality) / 0.014f, 0.75f));
  nn_optim *opt = yv ? nn_optim_new(&v, nn_optim_defaults(NN_SGD, lr)) : NULL;
  nn_arena *work = nn_arena_new(0);
  bool ok = best && opt && work;
  if (!ok) nn_set_error("e2ecodec: out of memory for the latent search");
  if (ok) {
    memcpy(nn_f32(yv), nn_f32(y), sizeof(float) * (size_t)nn_numel(y));
    memcpy(best, nn_f32(y), sizeof(float) * (size_t)nn_numel(y));
    nn_tensor *means = NULL, *scales = codec_hyper_synthesis(c, z_hat, &means); /* no gradient: z stays as coded */
    ok = scales != NULL;
    nn_scope scope = nn_scope_begin(&(nn_scope_opts){.arena = work, .grad = true, .only = &v});
    float best_loss = INFINITY;
    for (int s = 0; s <= steps && ok; s++) {
      nn_optim_zero_grad(opt);
      nn_tensor *loss = coded_loss(c, x, yv, means, scales, quality);
      ok = loss && (s == steps || nn_backward(loss));
      if (!ok) break;
      float l = nn_item(loss);
      if (l < best_loss) { /* the loss of the y it was computed on, before the step */
        best_loss = l;
        memcpy(best, nn_f32(yv), sizeof(float) * (size_t)nn_numel(y));
      }
      if (s < steps) { /* linear decay: large steps to leave the plain encoder's latents, small ones to settle */
        opt->cfg.lr = lr * (1.0f - (float)s / (float)steps);
        nn_optim_step(opt);
      }
      nn_arena_reset(work);
    }
    nn_scope_end(&scope);
    if (ok) memcpy(nn_f32(y), best, sizeof(float) * (size_t)nn_numel(y));
  }
  if (work) nn_arena_free(work);
  nn_optim_free(opt);
  nn_params_free(&v);
  free(best);
  return ok;
}

/* z's integers around their learned means, for every tile (what an intra picture codes; a predicted one
 * codes those of its coded tiles). */
static void z_symbols(const codec_model *c, const float *z, int nz_per_ch, int32_t *q) {
  const float *zm = nn_f32(nn_params_find(&c->p, "z.mean"));
  for (int ch = 0; ch < c->cfg.n; ch++)
    for (int i = 0; i < nz_per_ch; i++) q[(size_t)ch * nz_per_ch + i] = to_symbol(z[(size_t)ch * nz_per_ch + i] - zm[ch]);
}

/* A predicted picture's choice: which latent positions to code. An intra trial of the whole picture gives
 * each position's bits (its share of its z tile's included) and the reconstruction coding it would give;
 * codec_choose_coded weighs that against copying the reference. */
static bool choose_coded(codec_model *c, const codec_options *o, int quality, const uint8_t *levels, const uint8_t *rgb, int w, int h, int stride, const float *y,
                         const float *z_new, const int32_t *zq, int zh, int zw, const codec_reference *ref,
                         uint8_t *coded) {
  int H = 4 * zh, W = 4 * zw, pw = W * 16, ph = H * 16;
  float *bits = codec_scratch((size_t)H * W, true);
  uint8_t *intra = (uint8_t *)codec_scratch(((size_t)w * h * 3 + 3) / 4, false);
  rans_writer trial;
  rans_writer_init(&trial);
  nn_tensor *y_hat = nn_empty(NN_F32, 4, (int64_t[]){1, c->cfg.m, H, W});
  bool ok = bits && intra && y_hat && code_latents(c, z_new, zh, zw, y, &trial, NULL, NULL, nn_f32(y_hat), bits);
  if (ok) {
    for (int ch = 0; ch < c->cfg.n; ch++) {
      int ti = z_table(c, ch);
      for (int t = 0; t < zh * zw; t++) {
        float share = symbol_bits(&c->tables, ti, zq[(size_t)ch * zh * zw + t]) / 16.0f;
        for (int k = 0; k < 16; k++) bits[(size_t)(t / zw * 4 + k / 4) * W + t % zw * 4 + k % 4] += share;
      }
    }
    ok = reconstruct(c, quality, levels, y_hat, pw, ph, w, h, intra);
  }
  float scale = o && o->block_lambda > 0 ? o->block_lambda : 1.0f;
  const float *weights = o ? o->block_weights : NULL;
  if (ok && levels) { /* a block in a region weighs its change by its own level's lambda */
    float *wl = codec_scratch((size_t)H * W, false);
    ok = wl != NULL;
    for (int p = 0; ok && p < H * W; p++)
      wl[p] = (weights ? weights[p] : 1.0f) * codec_lambda(&c->cfg, levels[p]) / codec_lambda(&c->cfg, quality);
    weights = wl;
  }
  if (ok)
    codec_choose_coded(rgb, stride, intra, ref->recon, w, h, H, W, bits, scale * codec_lambda(&c->cfg, quality), weights,
                       coded);
  rans_writer_free(&trial);
  return ok;
}

bool codec_compress_video(codec_model *c, const codec_options *o, int quality, bool key, const uint8_t *rgb, int w,
                          int h, int stride, codec_reference *ref, uint8_t **out, size_t *out_len, uint8_t *recon) {
  if (!o) o = &DEFAULT_OPTIONS;
  if (!codec_quality_valid(quality)) return false;
  if (w < 1 || h < 1 || w > CODEC_MAX_DIM || h > CODEC_MAX_DIM) {
    nn_set_error("e2ecodec: image size %dx%d out of range (1..%d)", w, h, CODEC_MAX_DIM);
    return false;
  }
  if (!codec_check_memory(c, o, w, h, true)) return false;
  int pw = pad_to(w), ph = pad_to(h), zh = ph / CODEC_STRIDE, zw = pw / CODEC_STRIDE, H = 4 * zh, W = 4 * zw;
  int n = c->cfg.n, m = c->cfg.m;
  bool predict = ref && !key && codec_reference_fits(ref, c, quality, w, h);
  bool regions = o->roi_blocks && o->roi_quality != 0 && o->roi_quality != quality;
  if (regions && !codec_quality_valid(o->roi_quality)) return false;
  bool ok = false;
  uint8_t *zb = NULL, *yb = NULL, *coded = NULL;
  int32_t *zq = NULL;
  rans_writer wz, wy;
  rans_writer_init(&wz);
  rans_writer_init(&wy);
  nn_scope scope = nn_scope_begin(&(nn_scope_opts){.no_grad = true});
  uint8_t *levels = NULL; /* this picture's level per position, NULL: all at quality */
  if (regions) {
    levels = (uint8_t *)codec_scratch(((size_t)H * W + 3) / 4, false);
    if (!levels) goto done;
    regions = false;
    for (int p = 0; p < H * W; p++) {
      levels[p] = o->roi_blocks[p] ? (uint8_t)o->roi_quality : (uint8_t)quality;
      regions = regions || o->roi_blocks[p];
    }
    if (!regions) levels = NULL; /* no block in a region: a plain picture */
  }
  codec_levels lv = {.quality = &quality, .map = levels, .map_h = H, .map_w = W};
  nn_tensor *x = nn_empty(NN_F32, 4, (int64_t[]){1, 3, ph, pw});
  if (!x) goto done;
  rgb_to_padded(rgb, w, h, stride, pw, ph, nn_f32(x));
  nn_tensor *y = nn_contiguous(codec_gains_at(c->gain_enc, codec_analysis_at(c, x, &lv, c->enc_infer_ready), &lv));
  nn_tensor *z = codec_hyper_analysis(c, y, c->enc_infer_ready);
  if (!z) goto done;
  /* z: per-channel Gaussian around its learned mean */
  const float *zm = nn_f32(nn_params_find(&c->p, "z.mean"));
  nn_tensor *z_hat = nn_empty(NN_F32, 4, (int64_t[]){1, n, zh, zw});
  zq = malloc(sizeof(int32_t) * (size_t)n * zh * zw);
  if (!z_hat || !zq) goto done;
  z_symbols(c, nn_f32(z), zh * zw, zq);
  for (size_t k = 0; k < (size_t)n * zh * zw; k++) nn_f32(z_hat)[k] = (float)zq[k] + zm[k / ((size_t)zh * zw)];
  if (predict) {
    coded = malloc((size_t)H * W);
    if (!coded) goto done;
    if (!choose_coded(c, o, quality, levels, rgb, w, h, stride, nn_f32(y), nn_f32(z_hat), zq, zh, zw, ref, coded)) goto done;
    codec_put_coded_map(&wz, coded, H, W);
  }
  if (regions) {
    uint8_t *inside = (uint8_t *)codec_scratch(((size_t)H * W + 3) / 4, false);
    if (!inside) goto done;
    for (int p = 0; p < H * W; p++) inside[p] = levels[p] != quality;
    rans_put_raw16(&wz, (uint32_t)o->roi_quality);
    codec_put_coded_map(&wz, inside, H, W);
  }
  /* z's tiles: all of them in an intra picture; in a predicted one those with a coded position (the others
   * keep the reference's) */
  for (int ch = 0; ch < n; ch++) {
    int ti = z_table(c, ch);
    for (int t = 0; t < zh * zw; t++) {
      size_t k = (size_t)ch * zh * zw + t;
      if (!predict || codec_tile_coded(coded, t / zw, t % zw, W)) put_value(&wz, &c->tables, ti, zq[k]);
      else nn_f32(z_hat)[k] = ref->z_hat[k];
    }
  }
  /* the latent search keeps z (already coded) and its means and scales, and moves y under them */
  if (!predict && !regions && o->refine_steps > 0 && !refine_latents(c, x, y, z_hat, quality, o->refine_steps)) goto done;
  nn_tensor *y_hat = nn_empty(NN_F32, 4, (int64_t[]){1, m, H, W});
  codec_prediction pred = {.coded = coded, .y_hat = predict ? ref->y_hat : NULL};
  if (!y_hat || !code_latents(c, nn_f32(z_hat), zh, zw, nn_f32(y), &wy, NULL, predict ? &pred : NULL, nn_f32(y_hat), NULL))
    goto done;
  size_t zl = 0, yl = 0;
  zb = rans_writer_finish(&wz, &zl);
  yb = rans_writer_finish(&wy, &yl);
  if (!zb || !yb) {
    nn_set_error("e2ecodec: out of memory while coding");
    goto done;
  }
  /* the encoder's reference keeps what the decoder will show: the next picture's choice compares with it */
  int seq = predict ? codec_next_seq(ref->seq) : 0;
  const uint8_t *shown_at;
  if (!shown_levels(quality, levels, coded, ref, H * W, &shown_at)) goto done;
  if (ref && !codec_reference_store(ref, c, quality, w, h, seq, nn_f32(y_hat), nn_f32(z_hat), shown_at)) goto done;
  uint8_t *shown = ref ? ref->recon : recon;
  if (shown && !reconstruct(c, quality, shown_at, y_hat, pw, ph, w, h, shown)) goto done;
  if (ref && recon) memcpy(recon, ref->recon, (size_t)w * h * 3);
  size_t len = CODEC_HEADER_BYTES + zl + yl;
  uint8_t *s = malloc(len);
  if (!s) goto done;
  memcpy(s + CODEC_HEADER_BYTES, zb, zl);
  memcpy(s + CODEC_HEADER_BYTES + zl, yb, yl);
  codec_write_header(s, &(codec_header){.version = regions ? CODEC_VERSION_REGIONS : predict ? CODEC_VERSION_PREDICTED : 1,
                                        .quality = quality, .width = w, .height = h, .predicted = predict,
                                        .regions = regions, .seq = seq, .model_id = c->model_id,
                                        .z_bytes = (uint32_t)zl, .y_bytes = (uint32_t)yl,
                                        .crc = codec_crc32(s + CODEC_HEADER_BYTES, zl + yl)});
  *out = s;
  *out_len = len;
  ok = true;
done:
  if (!ok && ref) codec_reference_reset(ref); /* the next picture is intra */
  nn_scope_end(&scope);
  nn_arena_reset(nn_arena_current());
  rans_writer_free(&wz);
  rans_writer_free(&wy);
  free(zb);
  free(yb);
  free(zq);
  free(coded);
  return ok;
}

bool codec_compress(codec_model *c, const codec_options *o, int quality, const uint8_t *rgb, int w, int h, int stride,
                    uint8_t **out, size_t *out_len, uint8_t *recon) {
  return codec_compress_video(c, o, quality, true, rgb, w, h, stride, NULL, out, out_len, recon);
}

bool codec_decompress_video(codec_model *c, const codec_options *o, const uint8_t *data, size_t len, uint8_t *rgb,
                            int w, int h, codec_reference *ref) {
  codec_header hd;
  if (!codec_parse_header(data, len, &hd)) goto refused;
  if (hd.width != w || hd.height != h) {
    nn_set_error("e2ecodec: stream is %dx%d, caller expected %dx%d", hd.width, hd.height, w, h);
    goto refused;
  }
  if (hd.model_id != c->model_id) {
    nn_set_error("e2ecodec: stream was made by model %08x, this decoder holds model %08x (load the encoder's model)",
                 hd.model_id, c->model_id);
    goto refused;
  }
  if (codec_crc32(data + CODEC_HEADER_BYTES, hd.z_bytes + (size_t)hd.y_bytes) != hd.crc) {
    nn_set_error("e2ecodec: stream checksum mismatch (corrupted data)");
    goto refused;
  }
  if (hd.predicted && !(ref && codec_reference_fits(ref, c, hd.quality, w, h) && codec_reference_precedes(ref, &hd))) {
    nn_set_error("e2ecodec: predicted picture %d without the picture before it (%s); waiting for an intra picture",
                 hd.seq, !ref ? "this caller keeps no reference" : !ref->valid ? "none decoded since the last intra picture failed or a seek"
                                                                  : "a picture is missing or the size or quality changed");
    goto refused;
  }
  if (!codec_check_memory(c, o, w, h, false)) goto refused;
  int pw = pad_to(w), ph = pad_to(h), zh = ph / CODEC_STRIDE, zw = pw / CODEC_STRIDE, H = 4 * zh, W = 4 * zw;
  int n = c->cfg.n, m = c->cfg.m;
  bool ok = false;
  uint8_t *coded = NULL;
  nn_scope scope = nn_scope_begin(&(nn_scope_opts){.no_grad = true});
  const float *zm = nn_f32(nn_params_find(&c->p, "z.mean"));
  nn_tensor *z_hat = nn_empty(NN_F32, 4, (int64_t[]){1, n, zh, zw});
  nn_tensor *y_hat = nn_zeros(NN_F32, 4, (int64_t[]){1, m, H, W});
  if (!z_hat || !y_hat) goto done;
  rans_reader rz, ry;
  rans_reader_init(&rz, data + CODEC_HEADER_BYTES, hd.z_bytes);
  if (hd.predicted) {
    coded = malloc((size_t)H * W);
    if (!coded) {
      nn_set_error("e2ecodec: out of memory for the map of coded latents");
      goto done;
    }
    if (!codec_get_coded_map(&rz, coded, H, W, "the predicted picture's map of coded latents")) goto done;
  }
  uint8_t *levels = NULL;
  if (hd.regions) {
    int roi_quality = (int)rans_get_raw16(&rz);
    levels = (uint8_t *)codec_scratch(((size_t)H * W + 3) / 4, false);
    if (!levels) goto done;
    if (roi_quality < CODEC_MIN_QUALITY || roi_quality > CODEC_MAX_QUALITY || roi_quality == hd.quality) {
      nn_set_error("e2ecodec: the regions' level %d is out of range or the picture's own (%d)", roi_quality, hd.quality);
      goto done;
    }
    if (!codec_get_coded_map(&rz, levels, H, W, "the picture's map of regions of interest")) goto done;
    for (int p = 0; p < H * W; p++) levels[p] = levels[p] ? (uint8_t)roi_quality : (uint8_t)hd.quality;
  }
  for (int ch = 0; ch < n; ch++) {
    int ti = z_table(c, ch);
    for (int t = 0; t < zh * zw; t++) {
      size_t k = (size_t)ch * zh * zw + t;
      nn_f32(z_hat)[k] = !hd.predicted || codec_tile_coded(coded, t / zw, t % zw, W) ? (float)get_value(&rz, &c->tables, ti) + zm[ch]
                                                                                    : ref->z_hat[k];
    }
  }
  if (!rans_reader_done(&rz)) {
    nn_set_error("e2ecodec: hyper-latent payload is corrupt (does not decode to its exact length)");
    goto done;
  }
  rans_reader_init(&ry, data + CODEC_HEADER_BYTES + hd.z_bytes, hd.y_bytes);
  codec_prediction pred = {.coded = coded, .y_hat = hd.predicted ? ref->y_hat : NULL};
  if (!code_latents(c, nn_f32(z_hat), zh, zw, NULL, NULL, &ry, hd.predicted ? &pred : NULL, nn_f32(y_hat), NULL)) goto done;
  if (!rans_reader_done(&ry)) {
    nn_set_error("e2ecodec: latent payload is corrupt (does not decode to its exact length)");
    goto done;
  }
  const uint8_t *shown_at;
  ok = shown_levels(hd.quality, levels, coded, ref, H * W, &shown_at) &&
       (!ref || codec_reference_store(ref, c, hd.quality, w, h, hd.seq, nn_f32(y_hat), nn_f32(z_hat), shown_at)) &&
       (!rgb || reconstruct(c, hd.quality, shown_at, y_hat, pw, ph, w, h, rgb));
done:
  if (!ok && ref) codec_reference_reset(ref);
  free(coded);
  nn_scope_end(&scope);
  nn_arena_reset(nn_arena_current());
  return ok;
refused:
  if (ref) codec_reference_reset(ref); /* what follows this picture cannot be trusted until the next intra one */
  return false;
}

bool codec_decompress(codec_model *c, const codec_options *o, const uint8_t *data, size_t len, uint8_t *rgb, int w,
                      int h) {
  return codec_decompress_video(c, o, data, len, rgb, w, h, NULL);
}
