/* Predicted pictures: the reference each side keeps, the encoder's choice of the latent positions worth
 * coding, and the map that tells the decoder which ones it coded. Everything the decoder reads from the
 * reference is decoded latents, which are exact (integers plus means from the fixed-order path), so a
 * predicted picture decodes to the same latents on any CPU; only the reconstruction may differ by rounding. */
#include <stdlib.h>
#include <string.h>

#include "internal.h"

codec_reference *codec_reference_new(void) {
  codec_reference *r = calloc(1, sizeof *r);
  if (!r) nn_set_error("e2ecodec: out of memory for a video reference");
  return r;
}

void codec_reference_free(codec_reference *r) {
  if (!r) return;
  free(r->y_hat);
  free(r->z_hat);
  free(r->recon);
  free(r->levels);
  free(r);
}

void codec_reference_reset(codec_reference *r) {
  if (r) r->valid = false;
}

bool codec_reference_ready(const codec_reference *r, int quality, int w, int h) {
  return r && r->valid && r->quality == quality && r->width == w && r->height == h;
}

bool codec_reference_precedes(const codec_reference *r, const codec_header *h) {
  return !h->predicted || (codec_reference_ready(r, h->quality, h->width, h->height) && h->seq == codec_next_seq(r->seq));
}

bool codec_reference_fits(const codec_reference *r, const codec_model *c, int quality, int w, int h) {
  return codec_reference_ready(r, quality, w, h) && r->model_id == c->model_id;
}

/* Grows *buf to hold n bytes. */
static bool reserve(void *buf, size_t *have, size_t n) {
  if (*have >= n) return true;
  void *p = realloc(*(void **)buf, n);
  if (!p) return false;
  *(void **)buf = p;
  *have = n;
  return true;
}

bool codec_reference_store(codec_reference *r, const codec_model *c, int quality, int w, int h, int seq,
                           const float *y_hat, const float *z_hat, const uint8_t *levels) {
  int H = (h + CODEC_STRIDE - 1) / CODEC_STRIDE * 4, W = (w + CODEC_STRIDE - 1) / CODEC_STRIDE * 4;
  size_t ny = sizeof(float) * (size_t)c->cfg.m * H * W, nz = sizeof(float) * (size_t)c->cfg.n * (H / 4) * (W / 4);
  r->valid = false;
  if (!reserve(&r->y_hat, &r->y_len, ny) || !reserve(&r->z_hat, &r->z_len, nz) ||
      !reserve(&r->recon, &r->recon_len, (size_t)w * h * 3) || !reserve(&r->levels, &r->levels_len, (size_t)H * W)) {
    nn_set_error("e2ecodec: out of memory for a video reference");
    return false;
  }
  memcpy(r->y_hat, y_hat, ny);
  memcpy(r->z_hat, z_hat, nz);
  if (levels) memcpy(r->levels, levels, (size_t)H * W);
  else memset(r->levels, quality, (size_t)H * W);
  r->model_id = c->model_id;
  r->quality = quality, r->width = w, r->height = h, r->seq = seq;
  r->valid = true;
  return true;
}

bool codec_tile_coded(const uint8_t *coded, int ty, int tx, int W) {
  for (int k = 0; k < 16; k++)
    if (coded[(size_t)(ty * 4 + k / 4) * W + tx * 4 + k % 4]) return true;
  return false;
}

/* Squared error between a 16x16 block of rgb and of a packed reconstruction (the part inside the picture). */
static double block_sse(const uint8_t *rgb, int stride, const uint8_t *rec, int w, int h, int by, int bx) {
  double sse = 0;
  for (int y = by * 16; y < by * 16 + 16 && y < h; y++) {
    const uint8_t *a = rgb + (size_t)y * stride, *b = rec + (size_t)y * w * 3;
    for (int x = bx * 16 * 3; x < (bx * 16 + 16) * 3 && x < w * 3; x++) {
      double d = (double)a[x] - b[x];
      sse += d * d;
    }
  }
  return sse;
}

void codec_choose_coded(const uint8_t *rgb, int stride, const uint8_t *intra, const uint8_t *prev, int w, int h, int H,
                        int W, const float *bits, float lambda, const float *weights, uint8_t *coded) {
  for (int by = 0; by < H; by++)
    for (int bx = 0; bx < W; bx++) {
      size_t p = (size_t)by * W + bx;
      /* the training loss per picture is lambda * MSE (over pixels and channels) + bits per pixel */
      double gain = lambda * (weights ? weights[p] : 1.0f) *
                    (block_sse(rgb, stride, prev, w, h, by, bx) - block_sse(rgb, stride, intra, w, h, by, bx)) / 3.0;
      coded[p] = gain > bits[p];
    }
}

enum { MAP_CONTEXTS = 3 };

static int map_context(const uint8_t *coded, int y, int x, int W) {
  return (x > 0 && coded[(size_t)y * W + x - 1]) + (y > 0 && coded[(size_t)(y - 1) * W + x]);
}

static void map_cdf(uint32_t f_coded, int32_t cdf[3]) {
  cdf[0] = 0;
  cdf[1] = (int32_t)(RANS_TOTAL - f_coded);
  cdf[2] = (int32_t)RANS_TOTAL;
}

void codec_put_coded_map(rans_writer *w, const uint8_t *coded, int H, int W) {
  /* each context's probability of "coded", from this picture's own counts */
  double n[MAP_CONTEXTS] = {0}, n1[MAP_CONTEXTS] = {0};
  for (int y = 0; y < H; y++)
    for (int x = 0; x < W; x++) {
      int k = map_context(coded, y, x, W);
      n[k] += 1, n1[k] += coded[(size_t)y * W + x];
    }
  int32_t cdf[MAP_CONTEXTS][3];
  for (int k = 0; k < MAP_CONTEXTS; k++) {
    double f = (n1[k] + 0.5) / (n[k] + 1.0) * RANS_TOTAL + 0.5;
    uint32_t fq = f < 1 ? 1 : f > RANS_TOTAL - 1 ? RANS_TOTAL - 1 : (uint32_t)f;
    rans_put_raw16(w, fq);
    map_cdf(fq, cdf[k]);
  }
  for (int y = 0; y < H; y++)
    for (int x = 0; x < W; x++) rans_put(w, cdf[map_context(coded, y, x, W)], coded[(size_t)y * W + x]);
}

bool codec_get_coded_map(rans_reader *r, uint8_t *coded, int H, int W, const char *what) {
  int32_t cdf[MAP_CONTEXTS][3];
  for (int k = 0; k < MAP_CONTEXTS; k++) {
    uint32_t fq = rans_get_raw16(r);
    if (fq < 1) {
      nn_set_error("e2ecodec: %s is corrupt", what);
      return false;
    }
    map_cdf(fq, cdf[k]);
  }
  for (int y = 0; y < H; y++) {
    if (r->overrun) {
      nn_set_error("e2ecodec: %s is corrupt (it ends early)", what);
      return false;
    }
    for (int x = 0; x < W; x++) coded[(size_t)y * W + x] = (uint8_t)rans_get(r, cdf[map_context(coded, y, x, W)], 2);
  }
  return true;
}
