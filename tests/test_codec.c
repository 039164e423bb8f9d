/* e2ecodec: entropy coder, bitstream, decoder-side determinism, hostile streams.
 * Uses small randomly initialised models: coding must be exact whatever the weights. */
#include <glib.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "e2e/codec.h"
#include "e2e/image.h"
#include "e2e/rans.h"
#include "harness.h"

/* ---------------------------------------------------------------- rANS */

static double rnd(nn_rng *r) { return nn_rng_uniform(r); }

TEST(rans_roundtrip_random_tables) {
  nn_rng rng;
  nn_rng_seed(&rng, 1);
  enum { TABLES = 40, SYMS = 20000 };
  int32_t *cdf = malloc(sizeof(int32_t) * TABLES * 1025);
  int len[TABLES];
  double *pmf = malloc(sizeof(double) * 1024);
  for (int t = 0; t < TABLES; t++) {
    len[t] = 2 + (int)(nn_rng_u64(&rng) % 1000);
    for (int k = 0; k < len[t]; k++) {
      /* mixtures of flat, peaked and vanishing masses, including 1e-30 */
      double u = rnd(&rng);
      pmf[k] = t % 4 == 0 ? 1.0 : t % 4 == 1 ? exp(-30 * u) : t % 4 == 2 ? (u < 0.9 ? 1e-30 : u) : pow(u, 8);
    }
    if (t == TABLES - 1) { /* one symbol holding almost all the mass */
      for (int k = 0; k < len[t]; k++) pmf[k] = 1e-12;
      pmf[0] = 1.0;
    }
    CHECK(rans_cdf_from_pmf(pmf, len[t], cdf + t * 1025), "table %d", t);
    CHECK(cdf[t * 1025] == 0 && cdf[t * 1025 + len[t]] == (int32_t)RANS_TOTAL, "table %d spans the total", t);
    for (int k = 0; k < len[t]; k++) CHECK(cdf[t * 1025 + k + 1] > cdf[t * 1025 + k], "table %d symbol %d has mass", t, k);
  }
  int *tab = malloc(sizeof(int) * SYMS), *sym = malloc(sizeof(int) * SYMS);
  uint32_t *raw = malloc(sizeof(uint32_t) * SYMS);
  rans_writer w;
  rans_writer_init(&w);
  for (int i = 0; i < SYMS; i++) {
    tab[i] = (int)(nn_rng_u64(&rng) % TABLES);
    /* draw from the table itself half the time, uniformly (rare symbols too) otherwise */
    if (i % 2) {
      uint32_t slot = (uint32_t)(nn_rng_u64(&rng) % RANS_TOTAL);
      int s = 0;
      while (cdf[tab[i] * 1025 + s + 1] <= (int32_t)slot) s++;
      sym[i] = s;
    } else {
      sym[i] = (int)(nn_rng_u64(&rng) % (uint64_t)len[tab[i]]);
    }
    rans_put(&w, cdf + tab[i] * 1025, sym[i]);
    raw[i] = (uint32_t)(nn_rng_u64(&rng) & 0xffff);
    if (i % 7 == 0) rans_put_raw16(&w, raw[i]);
  }
  size_t n = 0;
  uint8_t *buf = rans_writer_finish(&w, &n);
  CHECK(buf != NULL && n > 4, "stream written");
  rans_reader r;
  rans_reader_init(&r, buf, n);
  int bad = 0;
  for (int i = 0; i < SYMS; i++) {
    if (rans_get(&r, cdf + tab[i] * 1025, len[tab[i]]) != sym[i]) bad++;
    if (i % 7 == 0 && rans_get_raw16(&r) != raw[i]) bad++;
  }
  CHECK(bad == 0, "%d symbols decoded wrong", bad);
  CHECK(rans_reader_done(&r), "reader ends exactly at the end in the initial state");
  /* a truncated stream is detected */
  rans_reader_init(&r, buf, n - 3);
  for (int i = 0; i < SYMS; i++) {
    rans_get(&r, cdf + tab[i] * 1025, len[tab[i]]);
    if (i % 7 == 0) rans_get_raw16(&r);
  }
  CHECK(!rans_reader_done(&r), "truncation noticed");
  rans_writer_free(&w);
  free(buf), free(cdf), free(pmf), free(tab), free(sym), free(raw);
}

TEST(rans_empty_and_degenerate) {
  rans_writer w;
  rans_writer_init(&w);
  size_t n = 0;
  uint8_t *buf = rans_writer_finish(&w, &n);
  CHECK(buf && n == 4, "empty stream is the 4-byte state (got %zu)", n);
  rans_reader r;
  rans_reader_init(&r, buf, n);
  CHECK(rans_reader_done(&r), "empty stream reads back");
  free(buf);
  rans_writer_free(&w);
  double bad[3] = {1, -1, 1};
  int32_t cdf[4];
  CHECK(!rans_cdf_from_pmf(bad, 3, cdf), "negative mass refused");
  double zero[2] = {0, 0};
  CHECK(!rans_cdf_from_pmf(zero, 2, cdf), "all-zero mass refused");
}

/* ---------------------------------------------------------------- rate op */

TEST(gaussian_bits_reference_values) {
  /* P(0 | s=1) = Phi(.5) - Phi(-.5) = 0.3829249225; P(3 | s=0.5) = Phi(7) - Phi(5) */
  nn_tensor *y = nn_empty(NN_F32, 1, (int64_t[]){3}), *s = nn_empty(NN_F32, 1, (int64_t[]){3});
  float yv[3] = {0, 3, -2}, sv[3] = {1, 0.5f, 0.01f};
  memcpy(nn_data(y), yv, sizeof yv);
  memcpy(nn_data(s), sv, sizeof sv);
  double p0 = 0.3829249225480262, p1 = 0.5 * erfc(5 / sqrt(2.0)) - 0.5 * erfc(7 / sqrt(2.0));
  /* s = 0.01 is lifted to the 0.11 floor: P(-2) is ~0, floored at 1e-9 */
  double expect = -log2(p0) - log2(p1) - log2(1e-9);
  CHECK_CLOSE(nn_item(nn_gaussian_bits(y, s, 0.11f)), expect, 1e-3 * expect);
  nn_arena_reset(nn_arena_current());
}

/* ---------------------------------------------------------------- codec */

static codec_model small_model(uint64_t seed) {
  codec_model c;
  codec_config cfg = codec_config_default();
  cfg.n = 16, cfg.m = 24;
  if (!codec_init(&c, &cfg, seed)) memset(&c, 0, sizeof c);
  return c;
}

static uint8_t *test_image(int w, int h, uint64_t seed) {
  nn_rng rng;
  nn_rng_seed(&rng, seed);
  uint8_t *p = malloc((size_t)w * h * 3);
  for (int y = 0; y < h; y++)
    for (int x = 0; x < w; x++)
      for (int c = 0; c < 3; c++) /* smooth gradients, an edge, and noise */
        p[((size_t)y * w + x) * 3 + c] =
            (uint8_t)fminf(255, (float)(x * 255 / w) * (c == 0) + (float)(y * 200 / h) * (c == 1) + (x > w / 2 ? 60 : 0) +
                                    (float)(nn_rng_u64(&rng) % 20));
  return p;
}

TEST(codec_encode_decode_bit_exact_any_threads) {
  codec_model c = small_model(3);
  CHECK(c.p.n > 0, "model built");
  int sizes[][2] = {{64, 64}, {97, 45}, {130, 200}};
  for (int si = 0; si < 3; si++) {
    int w = sizes[si][0], h = sizes[si][1];
    uint8_t *img = test_image(w, h, (uint64_t)si);
    for (int q = 1; q <= CODEC_MAX_QUALITY; q += 2) {
      nn_set_num_threads(1);
      uint8_t *s1 = NULL, *rec1 = malloc((size_t)w * h * 3), *dec = malloc((size_t)w * h * 3);
      size_t l1 = 0;
      CHECK(codec_compress(&c, NULL, q, img, w, h, w * 3, &s1, &l1, rec1), "%dx%d q%d: %s", w, h, q, nn_last_error());
      nn_set_num_threads(2);
      uint8_t *s2 = NULL;
      size_t l2 = 0;
      CHECK(codec_compress(&c, NULL, q, img, w, h, w * 3, &s2, &l2, NULL), "encode on 2 threads");
      CHECK(l1 == l2 && memcmp(s1, s2, l1) == 0, "%dx%d q%d: stream identical on 1 and 2 threads", w, h, q);
      CHECK(codec_decompress(&c, NULL, s1, l1, dec, w, h), "decode: %s", nn_last_error());
      CHECK(memcmp(dec, rec1, (size_t)w * h * 3) == 0, "%dx%d q%d: decoder (2 threads) == encoder's reconstruction", w, h, q);
      nn_set_num_threads(1);
      memset(dec, 0, (size_t)w * h * 3);
      CHECK(codec_decompress(&c, NULL, s1, l1, dec, w, h) && memcmp(dec, rec1, (size_t)w * h * 3) == 0, "decoder on 1 thread too");
      codec_header hd;
      CHECK(codec_parse_header(s1, l1, &hd) && hd.width == w && hd.height == h && hd.quality == q &&
                hd.model_id == c.model_id && hd.version == 1 && !hd.predicted, "header fields");
      free(s1), free(s2), free(rec1), free(dec);
    }
    free(img);
  }
  nn_set_num_threads(0);
  codec_free(&c);
}

TEST(codec_exact_scales_match_training_path) {
  /* the fixed-order decoder path computes the same function as the nncore layers */
  codec_model c = small_model(5);
  int zh = 2, zw = 3;
  nn_rng rng;
  nn_rng_seed(&rng, 9);
  nn_tensor *z = nn_empty(NN_F32, 4, (int64_t[]){1, 16, zh, zw});
  for (int i = 0; i < 16 * zh * zw; i++) nn_f32(z)[i] = (float)((int)(nn_rng_u64(&rng) % 9) - 4);
  /* make the biases positive so that the ReLUs pass something */
  nn_fill_(c.hs[0].bias, 0.1f), nn_fill_(c.hs[1].bias, 0.1f), nn_fill_(c.hs_out.bias, 0.2f);
  CHECK(c.cfg.mean_scale, "the default model predicts means");
  nn_no_grad_begin();
  nn_tensor *h = nn_relu(nn_conv_transpose2d_forward(&c.hs[0], z));
  h = nn_relu(nn_conv_transpose2d_forward(&c.hs[1], h));
  nn_tensor *mu = nn_conv2d_forward(&c.hs_mean, h);
  h = nn_relu(nn_conv2d_forward(&c.hs_out, h));
  nn_no_grad_end();
  size_t ny = (size_t)24 * 16 * zh * zw;
  float *exact = malloc(sizeof(float) * ny), *exact_mu = malloc(sizeof(float) * ny);
  CHECK(!codec_hyper_scales_exact(&c, nn_f32(z), zh, zw, exact, NULL), "a mean-scale model needs the means' buffer");
  CHECK(codec_hyper_scales_exact(&c, nn_f32(z), zh, zw, exact, exact_mu), "exact path ran");
  double maxd = 0, maxv = 0, maxd_mu = 0, maxv_mu = 0;
  int negative = 0;
  for (size_t i = 0; i < ny; i++) {
    maxd = fmax(maxd, fabs(exact[i] - nn_f32(h)[i]));
    maxv = fmax(maxv, fabs(exact[i]));
    maxd_mu = fmax(maxd_mu, fabs(exact_mu[i] - nn_f32(mu)[i]));
    maxv_mu = fmax(maxv_mu, fabs(exact_mu[i]));
    negative += exact_mu[i] < 0; /* the mean head has no ReLU */
  }
  CHECK(maxv > 0.05 && maxd <= 1e-5 * (1 + maxv), "scales: max |exact - nncore| = %g (values up to %g)", maxd, maxv);
  CHECK(maxv_mu > 0.05 && maxd_mu <= 1e-5 * (1 + maxv_mu) && negative > 0,
        "means: max |exact - nncore| = %g (values up to %g, %d negative)", maxd_mu, maxv_mu, negative);
  free(exact), free(exact_mu);
  nn_arena_reset(nn_arena_current());
  codec_free(&c);
}

/* The summation order the decoder relies on, written as plainly as possible:
 * bias, then input channel by input channel, tap by tap, ascending, taps
 * outside the picture skipped. codec_hyper_scales_exact must equal this bit
 * for bit: any change of order (a GEMM, an FMA, a blocked sum) breaks it. */
static void ref_deconv5s2_relu(const float *in, int C, int H, int W, const float *w, const float *b, int OC, float *out) {
  for (int oc = 0; oc < OC; oc++)
    for (int oy = 0; oy < 2 * H; oy++)
      for (int ox = 0; ox < 2 * W; ox++) {
        int py = oy & 1, px = ox & 1, qy = oy >> 1, qx = ox >> 1;
        float acc = b[oc];
        for (int ic = 0; ic < C; ic++)
          for (int ky = py; ky < 5; ky += 2)
            for (int kx = px; kx < 5; kx += 2) {
              int iy = qy + (py + 2 - ky) / 2, ix = qx + (px + 2 - kx) / 2;
              if (iy < 0 || iy >= H || ix < 0 || ix >= W) continue;
              acc = acc + w[(((size_t)ic * OC + oc) * 5 + ky) * 5 + kx] * in[((size_t)ic * H + iy) * W + ix];
            }
        out[((size_t)oc * 2 * H + oy) * 2 * W + ox] = acc > 0 ? acc : 0;
      }
}

static void ref_conv3(const float *in, int C, int H, int W, const float *w, const float *b, int OC, bool relu, float *out) {
  for (int oc = 0; oc < OC; oc++)
    for (int y = 0; y < H; y++)
      for (int x = 0; x < W; x++) {
        float acc = b[oc];
        for (int ic = 0; ic < C; ic++)
          for (int ky = 0; ky < 3; ky++)
            for (int kx = 0; kx < 3; kx++) {
              int iy = y + ky - 1, ix = x + kx - 1;
              if (iy < 0 || iy >= H || ix < 0 || ix >= W) continue;
              acc = acc + w[(((size_t)oc * C + ic) * 3 + ky) * 3 + kx] * in[((size_t)ic * H + iy) * W + ix];
            }
        out[((size_t)oc * H + y) * W + x] = !relu || acc > 0 ? acc : 0;
      }
}

TEST(codec_exact_scales_follow_the_fixed_order_bit_for_bit) {
  /* m = 30 leaves a partial block of output channels; sizes cover 1-pixel and odd z maps */
  codec_config cfg = codec_config_default();
  cfg.n = 16, cfg.m = 30;
  codec_model c;
  CHECK(codec_init(&c, &cfg, 21), "model built");
  nn_rng rng;
  nn_rng_seed(&rng, 4);
  for (nn_tensor **t = (nn_tensor *[]){c.hs[0].bias, c.hs[1].bias, c.hs_out.bias, c.hs_mean.bias, NULL}; *t; t++)
    for (int64_t i = 0; i < nn_numel(*t); i++) nn_f32(*t)[i] = 0.2f * (nn_rng_uniform(&rng) - 0.3f);
  int sizes[][2] = {{1, 1}, {2, 3}, {5, 7}, {3, 16}};
  for (int si = 0; si < 4; si++) {
    int zh = sizes[si][0], zw = sizes[si][1], n = 16, m = 30;
    float *z = malloc(sizeof(float) * n * zh * zw);
    for (int i = 0; i < n * zh * zw; i++) z[i] = (float)((int)(nn_rng_u64(&rng) % 9) - 4) + 0.37f;
    float *h1 = malloc(sizeof(float) * n * 4 * zh * zw), *h2 = malloc(sizeof(float) * n * 16 * zh * zw);
    size_t ny = (size_t)m * 16 * zh * zw;
    float *ref = malloc(sizeof(float) * ny), *got = malloc(sizeof(float) * ny);
    float *ref_mu = malloc(sizeof(float) * ny), *got_mu = malloc(sizeof(float) * ny);
    ref_deconv5s2_relu(z, n, zh, zw, nn_f32(c.hs[0].weight), nn_f32(c.hs[0].bias), n, h1);
    ref_deconv5s2_relu(h1, n, 2 * zh, 2 * zw, nn_f32(c.hs[1].weight), nn_f32(c.hs[1].bias), n, h2);
    ref_conv3(h2, n, 4 * zh, 4 * zw, nn_f32(c.hs_out.weight), nn_f32(c.hs_out.bias), m, true, ref);
    ref_conv3(h2, n, 4 * zh, 4 * zw, nn_f32(c.hs_mean.weight), nn_f32(c.hs_mean.bias), m, false, ref_mu);
    int positive = 0;
    for (int i = 0; i < m * 16 * zh * zw; i++) positive += ref[i] > 0;
    CHECK(positive > m * 16 * zh * zw / 8, "the ReLUs pass something (%d positive)", positive);
    for (int threads = 1; threads <= 2; threads++) {
      nn_set_num_threads(threads);
      memset(got, 0xff, sizeof(float) * ny);
      memset(got_mu, 0xff, sizeof(float) * ny);
      CHECK(codec_hyper_scales_exact(&c, z, zh, zw, got, got_mu), "exact path ran");
      CHECK(!memcmp(ref, got, sizeof(float) * ny), "z %dx%d, %d threads: scales not bit-identical to the fixed order", zh,
            zw, threads);
      CHECK(!memcmp(ref_mu, got_mu, sizeof(float) * ny), "z %dx%d, %d threads: means not bit-identical to the fixed order",
            zh, zw, threads);
    }
    free(z), free(h1), free(h2), free(ref), free(got), free(ref_mu), free(got_mu);
  }
  nn_set_num_threads(0);
  codec_free(&c);
}

TEST(codec_scale_index_is_the_first_scale_not_below) {
  codec_model c = small_model(2);
  const codec_tables *t = &c.tables;
  nn_rng rng;
  nn_rng_seed(&rng, 8);
  float probes[4 * CODEC_NUM_SCALES + 2000 + 5];
  int n = 0;
  for (int i = 0; i < CODEC_NUM_SCALES; i++) { /* every table value and its neighbours */
    probes[n++] = t->scales[i];
    probes[n++] = nextafterf(t->scales[i], 0);
    probes[n++] = nextafterf(t->scales[i], INFINITY);
    probes[n++] = t->scales[i] * 1.01f;
  }
  for (int i = 0; i < 2000; i++) probes[n++] = expf(8.0f * nn_rng_uniform(&rng) - 3.0f);
  probes[n++] = 0, probes[n++] = -1, probes[n++] = NAN, probes[n++] = INFINITY, probes[n++] = 1e30f;
  for (int k = 0; k < n; k++) {
    int want = 0; /* the definition, as a scan */
    while (want < CODEC_NUM_SCALES - 1 && t->scales[want] < probes[k]) want++;
    int got = codec_scale_index(t, probes[k]);
    CHECK(got == want, "scale %g: index %d, expected %d", probes[k], got, want);
    if (got != want) break;
  }
  codec_free(&c);
}

TEST(codec_widen_latents_keeps_the_model) {
  codec_model c = small_model(6), old = small_model(6);
  int w = 64, h = 64;
  uint8_t *img = test_image(w, h, 5), *rec0 = malloc(w * h * 3), *rec1 = malloc(w * h * 3), *s = NULL;
  size_t len0 = 0, len1 = 0;
  for (int k = 0; k < 24; k++) /* fine steps at level 3, so that the new latents are not all rounded to 0 */
    nn_f32(c.gain_enc)[2 * 24 + k] = nn_f32(old.gain_enc)[2 * 24 + k] = 40.0f,
    nn_f32(c.gain_dec)[2 * 24 + k] = nn_f32(old.gain_dec)[2 * 24 + k] = 1.0f / 40.0f;
  CHECK(codec_compress(&c, NULL, 3, img, w, h, w * 3, &s, &len0, rec0), "encode before");
  free(s);
  CHECK(!codec_widen_latents(&c, 24, 1) && c.cfg.m == 24, "not narrower or equal");
  CHECK(codec_widen_latents(&c, 40, 1), "widen: %s", nn_last_error());
  CHECK(c.cfg.m == 40 && nn_params_find(&c.p, "g_a.3.weight")->shape[0] == 40 &&
        nn_params_find(&c.p, "g_s.0.weight")->shape[0] == 40 && nn_params_find(&c.p, "h_a.0.weight")->shape[1] == 40 &&
        nn_params_find(&c.p, "h_s.2.weight")->shape[0] == 40, "shapes grew");
  /* old entries kept: the first 24 rows of g_a.3, the first 24 input rows of g_s.0 */
  const float *a = nn_f32(nn_params_find(&c.p, "g_a.3.weight")), *a0 = nn_f32(nn_params_find(&old.p, "g_a.3.weight"));
  const float *g = nn_f32(nn_params_find(&c.p, "g_s.0.weight")), *g0 = nn_f32(nn_params_find(&old.p, "g_s.0.weight"));
  CHECK(!memcmp(a, a0, sizeof(float) * 24 * 16 * 25) && !memcmp(g, g0, sizeof(float) * 24 * 16 * 25), "old weights kept");
  const float *ge = nn_f32(c.gain_enc), *ge0 = nn_f32(old.gain_enc);
  double mean = 0;
  for (int k = 0; k < 24; k++) mean += ge0[2 * 24 + k] / 24.0;
  CHECK(ge[2 * 40 + 0] == ge0[2 * 24 + 0] && fabs(ge[2 * 40 + 39] - mean) < 1e-6, "gains kept, new ones at the level mean");
  /* it still codes, exactly, and reconstructs nearly what it did */
  CHECK(codec_compress(&c, NULL, 3, img, w, h, w * 3, &s, &len1, rec1), "encode after");
  uint8_t *dec = malloc(w * h * 3);
  CHECK(codec_decompress(&c, NULL, s, len1, dec, w, h) && !memcmp(dec, rec1, w * h * 3), "decoder equals encoder reconstruction");
  double p = e2e_image_psnr(rec0, rec1, (size_t)w * h * 3);
  /* 67 dB here; new synthesis weights at full size (not a tenth) give 57 */
  CHECK(p > 60.0, "reconstruction before and after widening: %.1f dB apart", p);
  free(s), free(img), free(rec0), free(rec1), free(dec);
  codec_free(&c);
  codec_free(&old);
}

TEST(codec_add_mean_head_keeps_the_model_and_codes_exactly) {
  codec_config cfg = codec_config_default();
  cfg.n = 16, cfg.m = 24, cfg.mean_scale = false;
  codec_model c;
  CHECK(codec_init(&c, &cfg, 12), "scale-only model built");
  CHECK(!nn_params_find(&c.p, "h_s.mean.weight"), "a scale-only model has no mean head");
  int w = 80, h = 72;
  uint8_t *img = test_image(w, h, 9), *rec0 = malloc(w * h * 3), *rec1 = malloc(w * h * 3), *dec = malloc(w * h * 3);
  uint8_t *s0 = NULL, *s1 = NULL;
  size_t l0 = 0, l1 = 0;
  CHECK(codec_compress(&c, NULL, 4, img, w, h, w * 3, &s0, &l0, rec0), "scale-only encode: %s", nn_last_error());
  CHECK(codec_decompress(&c, NULL, s0, l0, dec, w, h) && !memcmp(dec, rec0, w * h * 3), "scale-only streams still decode exactly");
  uint32_t id0 = c.model_id;
  CHECK(codec_add_mean_head(&c, 3), "add the head: %s", nn_last_error());
  CHECK(c.cfg.mean_scale && c.model_id != id0 && !codec_add_mean_head(&c, 3), "now mean-scale, a new id, and only once");
  /* a zero mean head: the same integers, the same picture */
  CHECK(codec_compress(&c, NULL, 4, img, w, h, w * 3, &s1, &l1, rec1), "encode after");
  CHECK(l0 == l1 && !memcmp(s0 + CODEC_HEADER_BYTES, s1 + CODEC_HEADER_BYTES, l0 - CODEC_HEADER_BYTES) &&
            !memcmp(rec0, rec1, w * h * 3), "zero means: payload and reconstruction unchanged");
  free(s1);
  /* once the head says something, the stream changes and still decodes exactly */
  nn_fill_(c.hs_mean.bias, 0.4f);
  nn_f32(c.hs_mean.weight)[5] = 0.3f;
  /* through a file (which also gives the changed weights their id), so the flag is checked too */
  const char *path = "test_codec_mean_head.safetensors";
  codec_model d = {0};
  CHECK(codec_save(&c, path, NULL, 0) && codec_load(&d, path) && d.cfg.mean_scale && d.model_id == c.model_id,
        "mean-scale model reloads: %s", nn_last_error());
  CHECK(codec_compress(&c, NULL, 4, img, w, h, w * 3, &s1, &l1, rec1), "encode with means");
  CHECK(l1 != l0 || memcmp(s0 + CODEC_HEADER_BYTES, s1 + CODEC_HEADER_BYTES, l0 - CODEC_HEADER_BYTES),
        "the means change what is coded");
  CHECK(codec_decompress(&c, NULL, s1, l1, dec, w, h) && !memcmp(dec, rec1, w * h * 3), "decoder adds the same means back");
  memset(dec, 0, w * h * 3);
  CHECK(codec_decompress(&d, NULL, s1, l1, dec, w, h) && !memcmp(dec, rec1, w * h * 3), "so does the reloaded model");
  remove(path);
  free(img), free(rec0), free(rec1), free(dec), free(s0), free(s1);
  codec_free(&c);
  codec_free(&d);
}

TEST(codec_level_mod_starts_neutral_stays_per_level_and_codes_exactly) {
  codec_model c = small_model(14);
  CHECK(c.p.n && !c.cfg.level_mod && !nn_params_find(&c.p, "g_s.igdn1.level_scale"), "a default model has no level scales");
  int w = 80, h = 72;
  uint8_t *img = test_image(w, h, 11), *dec = malloc(w * h * 3);
  uint8_t *rec[2][2], *s[2][2]; /* [before/after][level 2/4] */
  size_t len[2][2];
  for (int k = 0; k < 2; k++)
    for (int j = 0; j < 2; j++) rec[k][j] = malloc(w * h * 3), s[k][j] = NULL;
  for (int j = 0; j < 2; j++)
    CHECK(codec_compress(&c, NULL, 2 + 2 * j, img, w, h, w * 3, &s[0][j], &len[0][j], rec[0][j]), "encode: %s", nn_last_error());
  uint32_t id0 = c.model_id;
  CHECK(codec_add_level_mod(&c, 5), "add level scales: %s", nn_last_error());
  CHECK(c.cfg.level_mod && c.model_id != id0 && !codec_add_level_mod(&c, 5), "now modulated, a new id, and only once");
  uint8_t *s1 = NULL, *r1 = malloc(w * h * 3);
  size_t l1 = 0;
  CHECK(codec_compress(&c, NULL, 4, img, w, h, w * 3, &s1, &l1, r1) && l1 == len[0][1] &&
            !memcmp(s1 + CODEC_HEADER_BYTES, s[0][1] + CODEC_HEADER_BYTES, l1 - CODEC_HEADER_BYTES) &&
            !memcmp(r1, rec[0][1], w * h * 3), "scales of 1: payload and reconstruction unchanged");
  free(s1), free(r1);
  /* training reaches only the rows of the levels in the batch */
  nn_rng rng;
  nn_rng_seed(&rng, 2);
  nn_tensor *x = nn_empty(NN_F32, 4, (int64_t[]){1, 3, 64, 64});
  for (int ch = 0; ch < 3; ch++)
    for (int i = 0; i < 64 * 64; i++) nn_f32(x)[ch * 4096 + i] = img[((i / 64) * w + i % 64) * 3 + ch] / 255.0f;
  int q4 = 4;
  nn_tensor *loss = codec_train_forward(&c, x, &q4, &rng, NULL);
  CHECK(loss && nn_backward(loss), "train step: %s", nn_last_error());
  for (int i = 0; i < 3; i++)
    for (int layer = 0; layer < 2; layer++) {
      nn_tensor *t = layer ? c.mod_s[i] : c.mod_a[i];
      CHECK(t->grad, "level scales %d/%d have a gradient", layer, i);
      double g4 = 0, other = 0;
      for (int q = 0; q < CODEC_MAX_QUALITY; q++)
        for (int k = 0; k < c.cfg.n; k++) *(q == 3 ? &g4 : &other) += fabs(nn_f32(t->grad)[q * c.cfg.n + k]);
      CHECK(g4 > 0 && other == 0, "layer %d/%d: level 4's row gets %g, the others %g", layer, i, g4, other);
    }
  nn_arena_reset(nn_arena_current());
  /* level 4 now runs its own transforms: its stream changes and still decodes exactly; level 2's does not */
  for (int k = 0; k < c.cfg.n; k++) {
    nn_f32(c.mod_a[0])[3 * c.cfg.n + k] = 0.6f + 0.02f * k;
    nn_f32(c.mod_s[1])[3 * c.cfg.n + k] = 1.5f - 0.03f * k;
  }
  const char *path = "test_codec_level_mod.safetensors";
  codec_model d = {0};
  CHECK(codec_save(&c, path, NULL, 0) && codec_load(&d, path) && d.cfg.level_mod && d.model_id == c.model_id,
        "modulated model reloads: %s", nn_last_error());
  for (int j = 0; j < 2; j++)
    CHECK(codec_compress(&c, NULL, 2 + 2 * j, img, w, h, w * 3, &s[1][j], &len[1][j], rec[1][j]), "encode after");
  CHECK(len[1][0] == len[0][0] && !memcmp(s[1][0] + CODEC_HEADER_BYTES, s[0][0] + CODEC_HEADER_BYTES, len[0][0] - CODEC_HEADER_BYTES) &&
            !memcmp(rec[1][0], rec[0][0], w * h * 3), "level 2 untouched by level 4's scales");
  CHECK(memcmp(rec[1][1], rec[0][1], w * h * 3), "level 4's picture changed");
  CHECK(codec_decompress(&c, NULL, s[1][1], len[1][1], dec, w, h) && !memcmp(dec, rec[1][1], w * h * 3), "decoder equals encoder");
  memset(dec, 0, w * h * 3);
  CHECK(codec_decompress(&d, NULL, s[1][1], len[1][1], dec, w, h) && !memcmp(dec, rec[1][1], w * h * 3), "so does the reloaded model");
  remove(path);
  for (int k = 0; k < 2; k++)
    for (int j = 0; j < 2; j++) free(rec[k][j]), free(s[k][j]);
  free(img), free(dec);
  codec_free(&c);
  codec_free(&d);
}

/* The encoder's latent search: a different, smaller or better stream, decoded exactly by a plain
 * decoder; its real cost (bytes and distortion) is lower than the plain encoder's. */
TEST(codec_refined_encoding_decodes_exactly_and_costs_less) {
  codec_model c = small_model(21);
  int w = 96, h = 80, q = 4;
  uint8_t *img = test_image(w, h, 13), *rec[2], *s[2] = {NULL, NULL}, *dec = malloc(w * h * 3);
  size_t len[2];
  double cost[2];
  for (int k = 0; k < 2; k++) {
    rec[k] = malloc(w * h * 3);
    codec_options o = {.refine_steps = k ? 25 : 0};
    CHECK(codec_compress(&c, &o, q, img, w, h, w * 3, &s[k], &len[k], rec[k]), "encode (%d steps): %s", o.refine_steps, nn_last_error());
    double mse = 0;
    for (int i = 0; i < w * h * 3; i++) mse += ((double)rec[k][i] - img[i]) * ((double)rec[k][i] - img[i]) / (w * h * 3);
    cost[k] = codec_lambda(&c.cfg, q) * mse + 8.0 * (double)(len[k] - CODEC_HEADER_BYTES) / (w * h);
  }
  CHECK(len[0] != len[1] || memcmp(s[0], s[1], len[0]), "the search changed the stream");
  CHECK(codec_decompress(&c, NULL, s[1], len[1], dec, w, h) && !memcmp(dec, rec[1], w * h * 3), "decoder equals the refined encoder");
  CHECK(cost[1] < cost[0], "rate + lambda * distortion: %.4f plain, %.4f refined", cost[0], cost[1]);
  CHECK(nn_grad_enabled() && !nn_params_find(&c.p, "g_s.0.weight")->grad, "no gradient left on the model, grad mode restored");
  for (int k = 0; k < 2; k++) free(rec[k]), free(s[k]);
  free(img), free(dec);
  codec_free(&c);
}

/* Random values in [-a, a] for a tensor (to give the context model's zero-started corrections something to say). */
static void fill_random(nn_tensor *t, nn_rng *rng, float a) {
  for (int64_t i = 0; i < nn_numel(t); i++) nn_f32(t)[i] = a * (2 * nn_rng_uniform(rng) - 1);
}

/* The top-left 64x64 of an RGB picture as a [1, 3, 64, 64] training input. */
static nn_tensor *crop64(const uint8_t *img, int w) {
  nn_tensor *x = nn_empty(NN_F32, 4, (int64_t[]){1, 3, 64, 64});
  for (int ch = 0; ch < 3; ch++)
    for (int i = 0; i < 64 * 64; i++) nn_f32(x)[ch * 4096 + i] = img[((i / 64) * w + i % 64) * 3 + ch] / 255.0f;
  return x;
}

/* A model whose context corrections say something: its stream differs from s0 (the model's before it had
 * them), is the same on 1 and 2 threads, and decodes exactly on both, with the latent search too (which
 * moves every latent, so the corrections follow). */
static void check_corrected_stream(codec_model *c, int q, const uint8_t *img, int w, int h, const uint8_t *s0, size_t l0) {
  uint8_t *s1 = NULL, *s2 = NULL, *rec = malloc(w * h * 3), *dec = malloc(w * h * 3);
  size_t l1 = 0, l2 = 0;
  nn_set_num_threads(1);
  CHECK(codec_compress(c, NULL, q, img, w, h, w * 3, &s1, &l1, rec), "encode: %s", nn_last_error());
  nn_set_num_threads(2);
  CHECK(codec_compress(c, NULL, q, img, w, h, w * 3, &s2, &l2, NULL) && l1 == l2 && !memcmp(s1, s2, l1),
        "stream identical on 1 and 2 threads");
  CHECK(l1 != l0 || memcmp(s1 + CODEC_HEADER_BYTES, s0 + CODEC_HEADER_BYTES, l0 - CODEC_HEADER_BYTES),
        "the corrections changed the stream");
  CHECK(codec_decompress(c, NULL, s1, l1, dec, w, h) && !memcmp(dec, rec, w * h * 3), "decoder (2 threads) == encoder");
  nn_set_num_threads(1);
  memset(dec, 0, w * h * 3);
  CHECK(codec_decompress(c, NULL, s1, l1, dec, w, h) && !memcmp(dec, rec, w * h * 3), "decoder (1 thread) == encoder");
  nn_set_num_threads(0);
  free(s2), s2 = NULL;
  CHECK(codec_compress(c, &(codec_options){.refine_steps = 4}, q, img, w, h, w * 3, &s2, &l2, rec) &&
            codec_decompress(c, NULL, s2, l2, dec, w, h) && !memcmp(dec, rec, w * h * 3),
        "refined encoding decodes exactly: %s", nn_last_error());
  free(s1), free(s2), free(rec), free(dec);
}

/* Saved and loaded: the same configuration and model id, and the reloaded file decodes the original's streams. */
static void check_reload(codec_model *c, int q, const uint8_t *img, int w, int h, const char *path) {
  codec_model d = {0};
  uint8_t *s = NULL, *rec = malloc(w * h * 3), *dec = malloc(w * h * 3);
  size_t l = 0;
  CHECK(codec_save(c, path, NULL, 0) && codec_load(&d, path) && d.cfg.m == c->cfg.m && d.cfg.context == c->cfg.context &&
            d.cfg.anchor_context == c->cfg.anchor_context &&
            d.model_id == c->model_id, "save/load keeps the model: %s", nn_last_error());
  CHECK(codec_compress(c, NULL, q, img, w, h, w * 3, &s, &l, rec) && codec_decompress(&d, NULL, s, l, dec, w, h) &&
            !memcmp(dec, rec, w * h * 3), "the reloaded model decodes the original's stream exactly: %s", nn_last_error());
  remove(path);
  codec_free(&d);
  free(s), free(rec), free(dec);
}

TEST(codec_context_starts_neutral_codes_exactly_and_never_sees_its_own_half) {
  codec_model c = small_model(31);
  nn_fill_(c.gain_enc, 8.0f); /* latents of a few units, as a trained model's: the residuals are not all 0 */
  int w = 96, h = 80, q = 4;
  uint8_t *img = test_image(w, h, 17), *rec0 = malloc(w * h * 3), *rec = malloc(w * h * 3);
  uint8_t *s0 = NULL, *s1 = NULL;
  size_t l0 = 0, l1 = 0;
  CHECK(codec_compress(&c, NULL, q, img, w, h, w * 3, &s0, &l0, rec0), "encode: %s", nn_last_error());
  CHECK(codec_add_context(&c, 8, 3), "add a context model: %s", nn_last_error());
  CHECK(c.cfg.context == 8 && !codec_add_context(&c, 8, 3), "context of 8 channels, added only once");
  /* corrections of zero: the same symbols in another order, so the same picture for (nearly) the same bytes */
  CHECK(codec_compress(&c, NULL, q, img, w, h, w * 3, &s1, &l1, rec) && !memcmp(rec, rec0, w * h * 3) &&
            labs((long)l1 - (long)l0) <= 4, "neutral context: same reconstruction, %zu bytes against %zu", l1, l0);
  free(s1), s1 = NULL;
  /* a scale-only model cannot take one: the corrections are to predicted means */
  codec_config so = codec_config_default();
  so.mean_scale = false, so.context = 8;
  codec_model bad;
  CHECK(!codec_init(&bad, &so, 1) && strstr(nn_last_error(), "mean-scale"), "scale-only + context refused: %s", nn_last_error());

  /* the anchor half never reads its own colour: those taps get no gradient */
  nn_rng rng;
  nn_rng_seed(&rng, 4);
  fill_random(c.ctx_mean.weight, &rng, 0.3f), fill_random(c.ctx_scale.weight, &rng, 0.3f);
  fill_random(c.ctx_mean.bias, &rng, 0.2f), fill_random(c.ctx_scale.bias, &rng, 0.2f);
  nn_tensor *loss = codec_train_forward(&c, crop64(img, w), &q, &rng, NULL);
  CHECK(loss && nn_backward(loss), "train step: %s", nn_last_error());
  const float *g = nn_f32(c.ctx_conv.weight->grad);
  double own = 0, other = 0;
  for (int64_t i = 0; i < nn_numel(c.ctx_conv.weight); i++) *((i % 25 / 5 + i % 5) % 2 ? &other : &own) += fabs(g[i]);
  CHECK(own == 0 && other > 0, "context taps: own colour %g, other colour %g", own, other);
  CHECK(c.ctx_mean.weight->grad && c.ctx_scale.bias->grad, "the corrections learn");
  nn_params_zero_grad(&c.p);
  nn_arena_reset(nn_arena_current());

  check_corrected_stream(&c, q, img, w, h, s0, l0);

  /* the fixed-order path computes what the layers compute, on the second half */
  int H = 5, W = 7, m = c.cfg.m;
  size_t ny = (size_t)m * H * W;
  nn_tensor *ya = nn_zeros(NN_F32, 4, (int64_t[]){1, m, H, W}), *mh = nn_empty(NN_F32, 4, (int64_t[]){1, m, H, W});
  nn_tensor *sh = nn_empty(NN_F32, 4, (int64_t[]){1, m, H, W});
  for (size_t i = 0; i < ny; i++) {
    if (((i % (H * W)) / W + i % W) % 2 == 0) nn_f32(ya)[i] = (float)((int)(nn_rng_u64(&rng) % 9) - 4);
    nn_f32(mh)[i] = 2 * nn_rng_uniform(&rng) - 1;
    nn_f32(sh)[i] = 3 * nn_rng_uniform(&rng); /* some under the scale floor */
  }
  nn_no_grad_begin();
  nn_tensor *sb = nn_lower_bound(sh, CODEC_SCALE_MIN);
  nn_tensor *spread = nn_empty(NN_F32, 4, (int64_t[]){1, m, H, W});
  for (size_t i = 0; i < ny; i++) nn_f32(spread)[i] = codec_scale_index(&c.tables, nn_f32(sh)[i]) / (float)(CODEC_NUM_SCALES - 1);
  nn_tensor *e = nn_relu(nn_add(nn_conv2d_forward(&c.ctx_conv, nn_div(ya, sb)), nn_conv2d_forward(&c.ctx_spread, spread)));
  nn_tensor *ref_mu = nn_add(mh, nn_mul(sb, nn_conv2d_forward(&c.ctx_mean, e)));
  nn_tensor *ref_s = nn_mul(sb, nn_add_scalar(nn_conv2d_forward(&c.ctx_scale, e), 1.0f));
  nn_no_grad_end();
  float *mu = malloc(sizeof(float) * ny), *sc = malloc(sizeof(float) * ny);
  CHECK(codec_context_exact(&c, nn_f32(ya), nn_f32(mh), nn_f32(sh), H, W, mu, sc), "exact context ran");
  double dmax = 0, vmax = 0;
  for (size_t i = 0; i < ny; i++)
    if (((i % (H * W)) / W + i % W) % 2 == 1) {
      dmax = fmax(dmax, fmax(fabs(mu[i] - nn_f32(ref_mu)[i]), fabs(sc[i] - nn_f32(ref_s)[i])));
      vmax = fmax(vmax, fabs(mu[i] - nn_f32(mh)[i]));
    }
  CHECK(vmax > 0.05 && dmax < 1e-5, "exact context: max |exact - layers| %g (corrections up to %g)", dmax, vmax);
  free(mu), free(sc);
  nn_arena_reset(nn_arena_current());

  check_reload(&c, q, img, w, h, "test_codec_context.safetensors");
  free(s0), free(s1), free(img), free(rec0), free(rec);
  codec_free(&c);
}

TEST(codec_anchor_context_starts_neutral_reads_only_diagonal_anchors_and_codes_exactly) {
  codec_model c = small_model(37);
  nn_fill_(c.gain_enc, 8.0f);
  int w = 96, h = 80, q = 3, m = c.cfg.m;
  uint8_t *img = test_image(w, h, 19), *rec0 = malloc(w * h * 3), *rec = malloc(w * h * 3);
  uint8_t *s0 = NULL, *s1 = NULL;
  size_t l0 = 0, l1 = 0;
  CHECK(!codec_add_anchor_context(&c, 8, 3) && strstr(nn_last_error(), "context"), "refused without a context model");
  nn_rng rng;
  nn_rng_seed(&rng, 6);
  CHECK(codec_add_context(&c, 8, 3), "context: %s", nn_last_error());
  fill_random(c.ctx_mean.weight, &rng, 0.3f), fill_random(c.ctx_scale.weight, &rng, 0.3f);
  CHECK(codec_compress(&c, NULL, q, img, w, h, w * 3, &s0, &l0, rec0), "encode: %s", nn_last_error());
  CHECK(codec_add_anchor_context(&c, 6, 3) && c.cfg.anchor_context == 6 && !codec_add_anchor_context(&c, 6, 3),
        "anchors' context of 6 channels, added once: %s", nn_last_error());
  /* corrections of zero: the same symbols, the anchors of odd rows later in the stream */
  CHECK(codec_compress(&c, NULL, q, img, w, h, w * 3, &s1, &l1, rec) && !memcmp(rec, rec0, w * h * 3) &&
            labs((long)l1 - (long)l0) <= 4, "neutral anchors' context: same reconstruction, %zu bytes against %zu", l1, l0);
  free(s1), s1 = NULL;

  /* its window reads the anchors on even rows only (the diagonal taps), and its gradient reaches the model */
  fill_random(c.actx_mean.weight, &rng, 0.3f), fill_random(c.actx_scale.weight, &rng, 0.3f);
  fill_random(c.actx_mean.bias, &rng, 0.2f), fill_random(c.actx_scale.bias, &rng, 0.2f);
  nn_tensor *loss = codec_train_forward(&c, crop64(img, w), &q, &rng, NULL);
  CHECK(loss && nn_backward(loss), "train step: %s", nn_last_error());
  const float *g = nn_f32(c.actx_conv.weight->grad);
  double own = 0, other = 0;
  for (int64_t i = 0; i < nn_numel(c.actx_conv.weight); i++) *(i % 25 / 5 % 2 && i % 5 % 2 ? &own : &other) += fabs(g[i]);
  CHECK(own > 0 && other == 0, "anchors' context taps: diagonal %g, others %g", own, other);
  CHECK(c.actx_mean.weight->grad && c.actx_scale.bias->grad && c.actx_spread.weight->grad, "the corrections learn");
  nn_params_zero_grad(&c.p);
  nn_arena_reset(nn_arena_current());

  check_corrected_stream(&c, q, img, w, h, s0, l0);

  /* the fixed-order path computes what the layers compute, on the anchors of odd rows */
  int H = 6, W = 7;
  size_t plane = (size_t)H * W, ny = (size_t)m * plane;
  nn_tensor *ya = nn_zeros(NN_F32, 4, (int64_t[]){1, m, H, W}), *mh = nn_empty(NN_F32, 4, (int64_t[]){1, m, H, W});
  nn_tensor *sh = nn_empty(NN_F32, 4, (int64_t[]){1, m, H, W});
  for (size_t i = 0; i < ny; i++) {
    if ((i % plane) / W % 2 == 0 && i % W % 2 == 0) nn_f32(ya)[i] = (float)((int)(nn_rng_u64(&rng) % 9) - 4);
    nn_f32(mh)[i] = 2 * nn_rng_uniform(&rng) - 1;
    nn_f32(sh)[i] = 3 * nn_rng_uniform(&rng);
  }
  nn_no_grad_begin();
  nn_tensor *sb = nn_lower_bound(sh, CODEC_SCALE_MIN);
  nn_tensor *spread = nn_empty(NN_F32, 4, (int64_t[]){1, m, H, W});
  for (size_t i = 0; i < ny; i++) nn_f32(spread)[i] = codec_scale_index(&c.tables, nn_f32(sh)[i]) / (float)(CODEC_NUM_SCALES - 1);
  nn_tensor *e = nn_relu(nn_add(nn_conv2d_forward(&c.actx_conv, nn_div(ya, sb)), nn_conv2d_forward(&c.actx_spread, spread)));
  nn_tensor *ref_mu = nn_add(mh, nn_mul(sb, nn_conv2d_forward(&c.actx_mean, e)));
  nn_tensor *ref_s = nn_mul(sb, nn_add_scalar(nn_conv2d_forward(&c.actx_scale, e), 1.0f));
  nn_no_grad_end();
  float *mu = calloc(ny, sizeof(float)), *sc = calloc(ny, sizeof(float));
  CHECK(codec_anchor_context_exact(&c, nn_f32(ya), nn_f32(mh), nn_f32(sh), H, W, mu, sc), "exact anchors' context ran");
  double dmax = 0, vmax = 0, first = 0;
  for (size_t i = 0; i < ny; i++) {
    if ((i % plane) / W % 2 == 0 || i % W % 2 == 0) { /* only the anchors of odd rows are written */
      first = fmax(first, fmax(fabs(mu[i]), fabs(sc[i])));
      continue;
    }
    dmax = fmax(dmax, fmax(fabs(mu[i] - nn_f32(ref_mu)[i]), fabs(sc[i] - nn_f32(ref_s)[i])));
    vmax = fmax(vmax, fabs(mu[i] - nn_f32(mh)[i]));
  }
  CHECK(first == 0 && vmax > 0.05 && dmax < 1e-5, "exact anchors' context: max |exact - layers| %g (corrections up to %g), "
        "elsewhere %g", dmax, vmax, first);
  free(mu), free(sc);
  nn_arena_reset(nn_arena_current());

  check_reload(&c, q, img, w, h, "test_codec_anchor_context.safetensors");
  free(s0), free(s1), free(img), free(rec0), free(rec);
  codec_free(&c);
}

TEST(codec_stream_versions_and_foreign_bytes) {
  codec_model c = small_model(3);
  uint8_t *img = test_image(64, 64, 1), *out = malloc(64 * 64 * 3), *s = NULL;
  size_t len = 0;
  CHECK(codec_compress(&c, NULL, 2, img, 64, 64, 64 * 3, &s, &len, NULL), "encode");
  codec_header h;
  uint8_t *m = malloc(len);
  memcpy(m, s, len);
  m[4] = CODEC_VERSION + 1;
  CHECK(!codec_parse_header(m, len, &h) && strstr(nn_last_error(), "version"), "future version refused: %s", nn_last_error());
  m[4] = 0;
  CHECK(!codec_parse_header(m, len, &h), "version 0 refused");
  memcpy(m, s, len);
  m[0] = 'X';
  CHECK(!codec_parse_header(m, len, &h) && strstr(nn_last_error(), "magic"), "foreign bytes refused");
  memcpy(m, s, len);
  m[6] = 1;
  CHECK(!codec_parse_header(m, len, &h), "unknown flags refused");
  CHECK(!codec_parse_header(s, 10, &h), "short header refused");
  CHECK(!codec_parse_header(s, len - 1, &h) && strstr(nn_last_error(), "truncated"), "truncated stream refused");
  /* another model's stream */
  codec_model other = small_model(4);
  CHECK(!codec_decompress(&other, NULL, s, len, out, 64, 64) && strstr(nn_last_error(), "model"), "foreign model refused: %s",
        nn_last_error());
  codec_free(&other);
  /* wrong size expectation */
  CHECK(!codec_decompress(&c, NULL, s, len, out, 32, 64), "size mismatch refused");
  free(m), free(s), free(img), free(out);
  codec_free(&c);
}

TEST(codec_mutated_streams_never_crash) {
  for (int with_context = 0; with_context < 2; with_context++) {
  codec_model c = small_model(3);
  nn_rng rng;
  nn_rng_seed(&rng, 77);
  if (with_context) { /* the later symbols' probabilities then hang on the (hostile) anchors */
    nn_fill_(c.gain_enc, 8.0f);
    CHECK(codec_add_context(&c, 8, 2) && codec_add_anchor_context(&c, 6, 2), "context: %s", nn_last_error());
    fill_random(c.ctx_mean.weight, &rng, 0.3f), fill_random(c.ctx_scale.weight, &rng, 0.3f);
    fill_random(c.actx_mean.weight, &rng, 0.3f), fill_random(c.actx_scale.weight, &rng, 0.3f);
  }
  uint8_t *img = test_image(96, 80, 2), *out = malloc(96 * 80 * 3), *s = NULL;
  size_t len = 0;
  CHECK(codec_compress(&c, NULL, 3, img, 96, 80, 96 * 3, &s, &len, NULL), "encode");
  int refused = 0, decoded = 0;
  uint8_t *m = malloc(len + 64);
  for (int it = 0; it < 600; it++) {
    memcpy(m, s, len);
    size_t ml = len;
    int kind = it % 4;
    if (kind == 0) { /* flip bytes anywhere */
      for (int k = 0; k < 1 + it % 5; k++) m[nn_rng_u64(&rng) % ml] ^= (uint8_t)(1 + nn_rng_u64(&rng) % 255);
    } else if (kind == 1) { /* truncate */
      ml = (size_t)(nn_rng_u64(&rng) % len);
    } else if (kind == 2) { /* flip payload bytes and fix the checksum: hostile but well-formed */
      size_t at = CODEC_HEADER_BYTES + nn_rng_u64(&rng) % (len - CODEC_HEADER_BYTES);
      m[at] ^= (uint8_t)(1 + nn_rng_u64(&rng) % 255);
      uint32_t crc = codec_crc32(m + CODEC_HEADER_BYTES, len - CODEC_HEADER_BYTES);
      m[28] = (uint8_t)(crc >> 24), m[29] = (uint8_t)(crc >> 16), m[30] = (uint8_t)(crc >> 8), m[31] = (uint8_t)crc;
    } else { /* random header fields */
      for (int k = 4; k < 28; k++)
        if (nn_rng_u64(&rng) % 4 == 0) m[k] = (uint8_t)nn_rng_u64(&rng);
    }
    codec_header h;
    int w = 96, hh = 80;
    if (codec_parse_header(m, ml, &h)) w = h.width, hh = h.height;
    uint8_t *o = (w == 96 && hh == 80) ? out : malloc((size_t)w * hh * 3);
    if (codec_decompress(&c, NULL, m, ml, o, w, hh)) decoded++;
    else refused++;
    if (o != out) free(o);
  }
  /* the exact outcomes vary; what matters is that every stream came back, refused or decoded */
  CHECK(refused + decoded == 600 && refused > 300, "%s: %d refused, %d decoded (no crash, no hang)",
        with_context ? "context" : "plain", refused, decoded);
  free(m), free(s), free(img), free(out);
  codec_free(&c);
  }
}

/* A well-formed stream (checksum right) whose latent payload is cut short is refused as soon as decoding
 * runs past its end, with a message that says so; a payload of the right length still decodes. */
TEST(codec_short_latent_payload_is_refused_where_it_ends) {
  codec_model c = small_model(5);
  CHECK(c.p.n > 0 && codec_add_context(&c, 8, 5) && codec_add_anchor_context(&c, 8, 5), "model with both contexts");
  nn_fill_(c.gain_enc, 8.0f); /* latents that are not all zero, so that y's payload has some length */
  int w = 128, h = 128;
  uint8_t *img = test_image(w, h, 5), *out = malloc((size_t)w * h * 3), *s = NULL;
  size_t len = 0;
  CHECK(codec_compress(&c, NULL, 5, img, w, h, w * 3, &s, &len, NULL), "encode: %s", nn_last_error());
  codec_header hd;
  CHECK(codec_parse_header(s, len, &hd) && hd.y_bytes > 16, "a payload of %u bytes", hd.y_bytes);
  for (uint32_t keep = 2; keep < hd.y_bytes; keep = keep * 2 + 3) {
    size_t short_len = CODEC_HEADER_BYTES + hd.z_bytes + keep;
    uint8_t *t = g_memdup2(s, short_len);
    t[24] = (uint8_t)(keep >> 24), t[25] = (uint8_t)(keep >> 16), t[26] = (uint8_t)(keep >> 8), t[27] = (uint8_t)keep;
    uint32_t crc = codec_crc32(t + CODEC_HEADER_BYTES, hd.z_bytes + keep);
    t[28] = (uint8_t)(crc >> 24), t[29] = (uint8_t)(crc >> 16), t[30] = (uint8_t)(crc >> 8), t[31] = (uint8_t)crc;
    CHECK(!codec_decompress(&c, NULL, t, short_len, out, w, h) && strstr(nn_last_error(), "corrupt"),
          "%u of %u bytes refused: %s", keep, hd.y_bytes, nn_last_error());
    if (keep < 4) CHECK(strstr(nn_last_error(), "ends before its latents do"), "at once: %s", nn_last_error());
    g_free(t);
  }
  CHECK(codec_decompress(&c, NULL, s, len, out, w, h), "the whole stream decodes: %s", nn_last_error());
  free(img), free(out), free(s);
  codec_free(&c);
}

TEST(codec_absurd_latents_still_code_and_decode_exactly) {
  /* a model whose z and y run to 1e12 and beyond (a corrupt or hostile file that still loads): the
   * symbols saturate, the means and scales overflow to inf, and the picture still decodes to exactly
   * what the encoder reconstructed, with NaN pixels written as 0 */
  codec_model c = small_model(4);
  nn_fill_(c.ha[2].bias, 1e12f);
  nn_fill_(c.ga[3].bias, -3e38f);
  uint8_t *img = test_image(64, 64, 1), *rec = malloc(64 * 64 * 3), *dec = malloc(64 * 64 * 3), *s = NULL;
  size_t len = 0;
  CHECK(codec_compress(&c, NULL, 5, img, 64, 64, 64 * 3, &s, &len, rec), "encode: %s", nn_last_error());
  memset(dec, 0x55, 64 * 64 * 3);
  CHECK(codec_decompress(&c, NULL, s, len, dec, 64, 64) && !memcmp(dec, rec, 64 * 64 * 3), "decodes to the encoder's picture");
  free(img), free(rec), free(dec), free(s);
  codec_free(&c);
}

TEST(codec_set_lambdas_interpolates_gains_in_log_lambda) {
  codec_model c = small_model(6);
  const int m = 24, n = 16;
  CHECK(codec_add_level_mod(&c, 6), "modulated: %s", nn_last_error());
  for (int q = 0; q < CODEC_MAX_QUALITY; q++) /* level scales follow the same rule as the gains */
    for (int k = 0; k < n; k++) nn_f32(c.mod_s[1])[q * n + k] = (float)pow(c.cfg.lambda[q], 0.1 + 0.01 * k);
  /* gains that follow a power law of lambda per channel (one channel negative): log-log
   * interpolation and the extended end segments must reproduce it at any new lambda */
  for (int q = 0; q < CODEC_MAX_QUALITY; q++)
    for (int k = 0; k < m; k++) {
      double lam = c.cfg.lambda[q], p = 0.2 + 0.03 * k, g = (k == 5 ? -1.0 : 1.0) * (1 + k) * pow(lam, p);
      nn_f32(c.gain_enc)[q * m + k] = (float)g;
      nn_f32(c.gain_dec)[q * m + k] = (float)(1.0 / g);
    }
  float bad[CODEC_MAX_QUALITY] = {0.001f, 0.003f, 0.002f, 0.01f, 0.02f};
  float before = nn_f32(c.gain_enc)[0];
  CHECK(!codec_set_lambdas(&c, bad) && nn_f32(c.gain_enc)[0] == before, "falling lambdas refused, gains kept");
  float want[CODEC_MAX_QUALITY]; /* below the first, between levels, and above the last */
  want[0] = c.cfg.lambda[0] * 0.4f;
  want[1] = sqrtf(c.cfg.lambda[1] * c.cfg.lambda[2]);
  want[2] = c.cfg.lambda[3];
  want[3] = c.cfg.lambda[4] * 1.5f;
  want[4] = c.cfg.lambda[4] * 3.0f;
  CHECK(codec_set_lambdas(&c, want), "set: %s", nn_last_error());
  double worst = 0;
  for (int q = 0; q < CODEC_MAX_QUALITY; q++) {
    CHECK(c.cfg.lambda[q] == want[q], "level %d takes lambda %g", q + 1, want[q]);
    for (int k = 0; k < m; k++) {
      double p = 0.2 + 0.03 * k, g = (k == 5 ? -1.0 : 1.0) * (1 + k) * pow(want[q], p);
      worst = fmax(worst, fabs(nn_f32(c.gain_enc)[q * m + k] / g - 1));
      worst = fmax(worst, fabs(nn_f32(c.gain_dec)[q * m + k] * g - 1));
    }
    for (int k = 0; k < n; k++)
      worst = fmax(worst, fabs(nn_f32(c.mod_s[1])[q * n + k] / pow(want[q], 0.1 + 0.01 * k) - 1));
  }
  CHECK(worst < 1e-4, "gains and level scales follow the power law at the new lambdas (worst relative error %.2g)", worst);
  /* the lambdas travel with the file */
  const char *path = "test_codec_lambdas.safetensors";
  codec_model d = {0};
  CHECK(codec_save(&c, path, NULL, 0) && codec_load(&d, path), "save and load: %s", nn_last_error());
  CHECK(!memcmp(d.cfg.lambda, want, sizeof want), "lambdas reloaded exactly");
  remove(path);
  codec_free(&c);
  codec_free(&d);
}

/* The packed copies of codec_prepare_inference code what the training graph's layers code, at a width (64)
 * that takes the Winograd paths; they are a snapshot until prepared again. The copies run the
 * space-to-depth layers with F(4x4) tiles and the layers with F(2x2), so the two may round a latent
 * differently now and then: the streams are compared by length and reconstruction, not byte for byte. */
static bool close_streams(size_t la, size_t lb, const uint8_t *ra, const uint8_t *rb, size_t n) {
  double dl = fabs((double)la - (double)lb) / (double)la, p = e2e_image_psnr(ra, rb, n);
  if (dl > 0.01 || p < 45.0) fprintf(stderr, "    streams %zu and %zu bytes, reconstructions %.1f dB apart\n", la, lb, p);
  return dl <= 0.01 && p >= 45.0;
}

TEST(codec_prepared_encoder_matches_the_layers) {
  codec_model c;
  codec_config cfg = codec_config_default();
  cfg.n = 64, cfg.m = 64;
  CHECK(codec_init(&c, &cfg, 9), "init");
  for (int k = 0; k < 64; k++) /* fine steps, so that the latents of random weights are not all 0 */
    nn_f32(c.gain_enc)[3 * 64 + k] = 40.0f, nn_f32(c.gain_dec)[3 * 64 + k] = 1.0f / 40.0f;
  int w = 128, h = 128;
  uint8_t *img = test_image(w, h, 4), *rec0 = malloc(w * h * 3), *rec1 = malloc(w * h * 3);
  uint8_t *s0 = NULL, *s1 = NULL;
  size_t l0 = 0, l1 = 0;
  CHECK(codec_compress(&c, NULL, 4, img, w, h, w * 3, &s0, &l0, rec0), "encode through the layers");
  CHECK(codec_prepare_inference(&c) && c.enc_infer_ready, "prepare: %s", nn_last_error());
  CHECK(codec_compress(&c, NULL, 4, img, w, h, w * 3, &s1, &l1, rec1), "encode through the copies");
  CHECK(close_streams(l0, l1, rec0, rec1, (size_t)w * h * 3), "same stream and reconstruction, to float rounding");
  float *wt = nn_f32(c.ga[1].weight); /* a changed weight reaches the copies only when prepared again */
  for (int i = 0; i < 64 * 64 * 25; i += 7) wt[i] *= -3.0f;
  uint8_t *s3 = NULL, *rec3 = malloc(w * h * 3);
  size_t l3 = 0;
  CHECK(codec_compress(&c, NULL, 4, img, w, h, w * 3, &s3, &l3, rec3) && l3 == l1 && !memcmp(s1, s3, l1), "a snapshot");
  free(s1), s1 = NULL;
  CHECK(codec_prepare_inference(&c), "prepare again");
  CHECK(codec_compress(&c, NULL, 4, img, w, h, w * 3, &s1, &l1, rec1) && (l1 != l3 || memcmp(s1, s3, l1)),
        "the changed weight changes the stream");
  uint8_t *s2 = NULL;
  size_t l2 = 0;
  c.enc_infer_ready = false; /* the layers again, with the changed weight */
  CHECK(codec_compress(&c, NULL, 4, img, w, h, w * 3, &s2, &l2, rec0) && close_streams(l1, l2, rec1, rec0, (size_t)w * h * 3),
        "and codes as the layers do");
  c.enc_infer_ready = true;
  free(s0), free(s1), free(s2), free(s3), free(img), free(rec0), free(rec1), free(rec3);
  codec_free(&c);
}

/* Coding runs each transform layer by layer through two scratch arenas, scaling and normalising in place;
 * it must compute what the training graph computes, leave nothing of a picture in the scratch arenas,
 * and not depend on what the previous picture left there. */
TEST(codec_layer_by_layer_synthesis_matches_the_graph) {
  codec_model c = small_model(41);
  CHECK(c.p.n > 0 && codec_add_level_mod(&c, 41), "model with level scales");
  for (int i = 0; i < 3; i++) /* level scales away from 1, so that the in-place scaling shows */
    for (int64_t k = 0; k < nn_numel(c.mod_s[i]); k++) nn_f32(c.mod_s[i])[k] = 0.5f + 0.01f * (float)(k % 97);
  nn_rng rng;
  nn_rng_seed(&rng, 41);
  int sizes[][2] = {{3, 5}, {8, 8}, {2, 12}};
  for (int si = 0; si < 3; si++)
    for (int q = 1; q <= CODEC_MAX_QUALITY; q += 2) {
      nn_tensor *y = nn_tensor_new(NN_F32, 4, (int64_t[]){1, c.cfg.m, sizes[si][0], sizes[si][1]});
      for (int64_t i = 0; i < nn_numel(y); i++) nn_f32(y)[i] = 3.0f * nn_rng_normal(&rng);
      nn_set_requires_grad(y, true); /* the graph, as training runs it */
      nn_tensor *want = nn_contiguous(codec_synthesis(&c, y, q));
      nn_set_requires_grad(y, false);
      nn_no_grad_begin();
      nn_tensor *got = codec_synthesis(&c, y, q);
      /* another picture after it, which would overwrite it if it had been left in a scratch arena */
      nn_tensor *other = codec_synthesis(&c, nn_mul_scalar(y, -0.5f), q);
      nn_no_grad_end();
      CHECK(want && got && other && nn_numel(want) == nn_numel(got) && want->shape[2] == 16 * sizes[si][0], "ran: %s",
            nn_last_error());
      double d = 0, scale = 0;
      for (int64_t i = 0; i < nn_numel(want); i++) {
        d = fmax(d, fabs(nn_f32(want)[i] - nn_f32(got)[i]));
        scale = fmax(scale, fabs(nn_f32(want)[i]));
      }
      CHECK(scale > 0.01 && d <= 1e-4 * (1 + scale), "size %d q%d: layer by layer differs from the graph by %g (of %g)",
            si, q, d, scale);
      CHECK(nn_arena_used(c.scratch[0]) == 0 && nn_arena_used(c.scratch[1]) == 0, "scratch arenas emptied");
      nn_arena_reset(nn_arena_current());
      nn_tensor_free(y);
    }
  CHECK(!codec_synthesis(&c, NULL, 1) && strstr(nn_last_error(), "codec_synthesis"), "bad input refused");
  codec_free(&c);
}

/* One model coding on two threads at once (nncore runs the second caller's kernels inline): whichever
 * thread holds the scratch arenas, each stream and picture is the one a lone call makes. */
typedef struct {
  codec_model *c;
  const uint8_t *img, *want_stream, *want_rec;
  size_t want_len;
  int w, h, same;
} shared_model_job;

static gpointer code_on_shared_model(gpointer p) {
  shared_model_job *j = p;
  size_t n = (size_t)j->w * j->h * 3;
  uint8_t *rec = malloc(n), *dec = malloc(n);
  for (int it = 0; it < 6; it++) {
    uint8_t *s = NULL;
    size_t len = 0;
    bool ok = codec_compress(j->c, NULL, 3, j->img, j->w, j->h, j->w * 3, &s, &len, rec) &&
              codec_decompress(j->c, NULL, s, len, dec, j->w, j->h);
    j->same += ok && len == j->want_len && !memcmp(s, j->want_stream, len) && !memcmp(rec, j->want_rec, n) &&
               !memcmp(dec, j->want_rec, n);
    free(s);
  }
  free(rec), free(dec);
  return NULL;
}

TEST(codec_one_model_codes_on_two_threads_at_once) {
  codec_model c = small_model(47);
  CHECK(c.p.n > 0 && codec_add_level_mod(&c, 47), "model");
  int w = 160, h = 128;
  uint8_t *img = test_image(w, h, 47), *rec = malloc((size_t)w * h * 3), *s = NULL;
  size_t len = 0;
  CHECK(codec_compress(&c, NULL, 3, img, w, h, w * 3, &s, &len, rec), "reference: %s", nn_last_error());
  shared_model_job jobs[2];
  GThread *t[2];
  for (int k = 0; k < 2; k++) {
    jobs[k] = (shared_model_job){&c, img, s, rec, len, w, h, 0};
    t[k] = g_thread_new("coder", code_on_shared_model, &jobs[k]);
  }
  for (int k = 0; k < 2; k++) g_thread_join(t[k]);
  CHECK(jobs[0].same == 6 && jobs[1].same == 6, "every stream and picture as a lone call's (%d, %d of 6)", jobs[0].same,
        jobs[1].same);
  free(img), free(rec), free(s);
  codec_free(&c);
}

/* A picture whose working memory exceeds the limit is refused with a message, before anything is
 * allocated for it: a 16384x16384 header on a few bytes is refused at once. */
TEST(codec_memory_limit_refuses_pictures_too_large) {
  codec_model c = small_model(43);
  CHECK(c.p.n > 0, "model built");
  int w = 130, h = 200;
  uint8_t *img = test_image(w, h, 43), *dec = malloc((size_t)w * h * 3), *stream = NULL;
  size_t len = 0;
  uint64_t enc_need = codec_working_bytes(&c, NULL, w, h, true), dec_need = codec_working_bytes(&c, NULL, w, h, false);
  CHECK(dec_need > 0 && enc_need > dec_need, "encoding takes more than decoding (%llu, %llu)",
        (unsigned long long)enc_need, (unsigned long long)dec_need);
  CHECK(codec_working_bytes(&c, &(codec_options){.refine_steps = 3}, w, h, true) > 4 * enc_need,
        "the latent search takes several times more");
  c.cfg.n = 128; /* the estimate grows with the transforms' width */
  CHECK(codec_working_bytes(&c, NULL, w, h, false) == 2 * dec_need, "twice N, twice the memory");
  c.cfg.n = 16;
  codec_options o = {.memory_limit = enc_need - 1};
  CHECK(!codec_compress(&c, &o, 2, img, w, h, w * 3, &stream, &len, NULL) && strstr(nn_last_error(), "working memory") &&
            strstr(nn_last_error(), "130x200"),
        "encoding refused under the limit: %s", nn_last_error());
  o.memory_limit = enc_need;
  CHECK(codec_compress(&c, &o, 2, img, w, h, w * 3, &stream, &len, NULL), "encoding at the limit: %s", nn_last_error());
  o.memory_limit = dec_need - 1;
  CHECK(!codec_decompress(&c, &o, stream, len, dec, w, h) && strstr(nn_last_error(), "working memory"),
        "decoding refused under the limit: %s", nn_last_error());
  o.memory_limit = dec_need;
  CHECK(codec_decompress(&c, &o, stream, len, dec, w, h), "decoding at the limit: %s", nn_last_error());
  CHECK(codec_check_memory(&c, NULL, w, h, true), "a small picture fits any machine (no limit: its memory)");
  /* a well-formed header (right model, right checksum) claiming the largest size on 8 bytes of payload */
  uint8_t hostile[CODEC_HEADER_BYTES + 8] = {0};
  memcpy(hostile, CODEC_MAGIC, 4);
  hostile[4] = 1, hostile[5] = 1; /* an intra picture */
  for (int k = 0; k < 4; k++) hostile[8 + k] = (uint8_t)(c.model_id >> (24 - 8 * k));
  hostile[12] = hostile[14] = 0x40; /* 16384 x 16384 */
  hostile[23] = hostile[27] = 4;    /* z and y: 4 bytes each */
  uint32_t crc = codec_crc32(hostile + CODEC_HEADER_BYTES, 8);
  for (int k = 0; k < 4; k++) hostile[28 + k] = (uint8_t)(crc >> (24 - 8 * k));
  codec_header hd;
  CHECK(codec_parse_header(hostile, sizeof hostile, &hd) && hd.width == 16384 && hd.height == 16384, "header parses");
  o.memory_limit = 4000000000ull;
  CHECK(!codec_decompress(&c, &o, hostile, sizeof hostile, NULL, 16384, 16384) && strstr(nn_last_error(), "working memory") &&
            strstr(nn_last_error(), "set by the application"),
        "refused before decoding: %s", nn_last_error());
  free(img), free(dec), free(stream);
  codec_free(&c);
}

TEST(codec_save_load_roundtrip_and_corrupt_file) {
  codec_model c = small_model(6), d = {0};
  const char *path = "test_codec_model.safetensors";
  CHECK(codec_save(&c, path, NULL, 0), "save: %s", nn_last_error());
  CHECK(codec_load(&d, path), "load: %s", nn_last_error());
  CHECK(d.model_id == c.model_id, "same model id after reload (%08x vs %08x)", d.model_id, c.model_id);
  uint8_t *img = test_image(64, 64, 3), *out = malloc(64 * 64 * 3), *rec = malloc(64 * 64 * 3), *s = NULL;
  size_t len = 0;
  CHECK(codec_compress(&c, NULL, 4, img, 64, 64, 64 * 3, &s, &len, rec) && codec_decompress(&d, NULL, s, len, out, 64, 64) &&
            memcmp(out, rec, 64 * 64 * 3) == 0, "stream from the saved model decodes with the loaded one");
  /* truncated file: refused, model untouched */
  gchar *data;
  gsize dl;
  CHECK(g_file_get_contents(path, &data, &dl, NULL), "read back");
  CHECK(g_file_set_contents(path, data, (gssize)(dl / 2), NULL), "truncate");
  uint32_t before = d.model_id;
  CHECK(!codec_load(&d, path) && d.model_id == before, "truncated model refused, old one kept: %s", nn_last_error());
  g_free(data);
  /* a CDF table with a zero-probability symbol: refused (the coder could not code it) */
  int32_t *cdf = nn_data(nn_params_find(&c.p, "entropy.cdf"));
  cdf[2] = cdf[1]; /* table 0 (scale 0.11) has 4 symbols: symbol 1 loses its mass */
  CHECK(codec_save(&c, path, NULL, 0), "save the damaged tables");
  CHECK(!codec_load(&d, path) && strstr(nn_last_error(), "zero-probability") && d.model_id == before,
        "damaged CDF refused: %s", nn_last_error());
  remove(path);
  free(img), free(out), free(rec), free(s);
  codec_free(&c);
  codec_free(&d);
}

TEST(codec_training_step_lowers_loss) {
  codec_model c = small_model(8);
  nn_optim *opt = nn_optim_new(&c.p, nn_optim_defaults(NN_ADAM, 2e-3f));
  nn_rng rng;
  nn_rng_seed(&rng, 1);
  uint8_t *img = test_image(64, 64, 5);
  int qs[2] = {1, 5};
  float first = 0, last = 0;
  for (int step = 0; step < 40; step++) {
    nn_tensor *x = nn_empty(NN_F32, 4, (int64_t[]){2, 3, 64, 64});
    for (int b = 0; b < 2; b++)
      for (int ch = 0; ch < 3; ch++)
        for (int i = 0; i < 64 * 64; i++) nn_f32(x)[(b * 3 + ch) * 4096 + i] = img[i * 3 + ch] / 255.0f;
    codec_stats st;
    nn_optim_zero_grad(opt);
    nn_tensor *loss = codec_train_forward(&c, x, qs, &rng, &st);
    CHECK(loss && nn_backward(loss), "step %d: %s", step, nn_last_error());
    nn_optim_step(opt);
    nn_arena_reset(nn_arena_current());
    if (step < 3) first += st.loss / 3;
    if (step >= 37) last += st.loss / 3;
  }
  CHECK(last < 0.6f * first, "loss %.3f -> %.3f", first, last);
  free(img);
  nn_optim_free(opt);
  codec_free(&c);
}


