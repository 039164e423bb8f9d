/* e2ecodec's predicted pictures: exact decoding on any thread count, what they cost against intra ones,
 * sequence numbers, a lost or corrupt picture, hostile streams. Small randomly initialised models: coding
 * must be exact whatever the weights. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "e2e/codec.h"
#include "harness.h"

static codec_model small_model(uint64_t seed) {
  codec_model c;
  codec_config cfg = codec_config_default();
  cfg.n = 16, cfg.m = 24;
  if (!codec_init(&c, &cfg, seed)) memset(&c, 0, sizeof c);
  nn_fill_(c.gain_enc, 8.0f); /* latents that are not all zero, so that coding them costs bits */
  return c;
}

/* Frame k of a little scene: a textured background with noise, and a bright square moving right. */
static uint8_t *scene(int w, int h, int k, uint64_t noise_seed) {
  nn_rng rng;
  nn_rng_seed(&rng, noise_seed);
  uint8_t *p = malloc((size_t)w * h * 3);
  for (int y = 0; y < h; y++)
    for (int x = 0; x < w; x++)
      for (int c = 0; c < 3; c++) {
        bool square = x >= 4 + 6 * k && x < 24 + 6 * k && y >= 10 && y < 30;
        int v = square ? 230 : (x * 3 + y * 5 * (c + 1)) % 160 + (noise_seed ? (int)(nn_rng_u64(&rng) % 9) : 0);
        p[((size_t)y * w + x) * 3 + c] = (uint8_t)v;
      }
  return p;
}

typedef struct {
  uint8_t *s[8];
  size_t len[8];
  uint8_t *rec[8];
} coded_seq;

/* Codes frames[0..n) with one reference (intra where key[i]), on the current thread count. */
static bool code_seq(codec_model *c, uint8_t **frames, const bool *key, int n, int w, int h, int q, coded_seq *out) {
  codec_reference *ref = codec_reference_new();
  bool ok = ref != NULL;
  for (int i = 0; i < n && ok; i++) {
    out->rec[i] = malloc((size_t)w * h * 3);
    ok = codec_compress_video(c, NULL, q, key[i], frames[i], w, h, w * 3, ref, &out->s[i], &out->len[i], out->rec[i]);
  }
  codec_reference_free(ref);
  return ok;
}

static void free_seq(coded_seq *q, int n) {
  for (int i = 0; i < n; i++) free(q->s[i]), free(q->rec[i]);
}

TEST(video_predicted_pictures_decode_exactly_on_any_thread_count) {
  codec_model c = small_model(3);
  CHECK(c.p.n > 0, "model built");
  int w = 97, h = 45, n = 6;
  uint8_t *f[6] = {scene(w, h, 0, 0), scene(w, h, 0, 0), scene(w, h, 1, 0), scene(w, h, 2, 0), scene(w, h, 2, 11),
                   scene(w, h, 5, 12)};
  bool key[6] = {true, false, false, false, false, false};
  coded_seq a = {0}, b = {0};
  nn_set_num_threads(1);
  CHECK(code_seq(&c, f, key, n, w, h, 3, &a), "encode on 1 thread: %s", nn_last_error());
  nn_set_num_threads(2);
  CHECK(code_seq(&c, f, key, n, w, h, 3, &b), "encode on 2 threads: %s", nn_last_error());
  for (int i = 0; i < n; i++) {
    CHECK(a.len[i] == b.len[i] && !memcmp(a.s[i], b.s[i], a.len[i]), "picture %d: the same stream on 1 and 2 threads", i);
    codec_header hd;
    CHECK(codec_parse_header(a.s[i], a.len[i], &hd) && hd.predicted == (i > 0) && hd.seq == i &&
              hd.version == (i > 0 ? CODEC_VERSION_PREDICTED : 1),
          "picture %d: header says predicted %d, sequence %d", i, hd.predicted, hd.seq);
  }
  /* the same picture again: nothing is worth coding, only the map goes out */
  CHECK(a.len[1] < a.len[0] / 4, "a repeated picture costs %zu bytes against %zu intra", a.len[1], a.len[0]);
  CHECK(!memcmp(a.rec[1], a.rec[0], (size_t)w * h * 3), "and shows the same reconstruction");
  for (int threads = 1; threads <= 2; threads++) {
    nn_set_num_threads(threads);
    codec_reference *ref = codec_reference_new();
    uint8_t *dec = malloc((size_t)w * h * 3);
    for (int i = 0; i < n; i++) {
      bool ok = codec_decompress_video(&c, NULL, a.s[i], a.len[i], dec, w, h, ref);
      CHECK(ok && !memcmp(dec, a.rec[i], (size_t)w * h * 3), "%d threads: picture %d decodes to the encoder's reconstruction (%s)",
            threads, i, ok ? "ok" : nn_last_error());
    }
    /* the same stream through a decoder that skips reconstructing the first pictures (a seek's way in) */
    codec_reference_reset(ref);
    for (int i = 0; i < n; i++) CHECK(codec_decompress_video(&c, NULL, a.s[i], a.len[i], i < 4 ? NULL : dec, w, h, ref), "latents only");
    CHECK(!memcmp(dec, a.rec[n - 1], (size_t)w * h * 3), "%d threads: the last picture after latents-only decoding", threads);
    codec_reference_free(ref);
    free(dec);
  }
  nn_set_num_threads(0);
  free_seq(&a, n), free_seq(&b, n);
  for (int i = 0; i < n; i++) free(f[i]);
  codec_free(&c);
}

TEST(video_lost_or_corrupt_picture_breaks_only_until_the_next_intra) {
  codec_model c = small_model(4);
  int w = 64, h = 64, n = 7;
  uint8_t *f[7];
  for (int i = 0; i < n; i++) f[i] = scene(w, h, i, 0);
  bool key[7] = {true, false, false, true, false, false, false};
  coded_seq a = {0};
  CHECK(code_seq(&c, f, key, n, w, h, 2, &a), "encode: %s", nn_last_error());
  codec_reference *ref = codec_reference_new();
  uint8_t *dec = malloc((size_t)w * h * 3);
  CHECK(codec_decompress_video(&c, NULL, a.s[0], a.len[0], dec, w, h, ref), "intra picture");
  /* picture 1 is lost */
  CHECK(!codec_decompress_video(&c, NULL, a.s[2], a.len[2], dec, w, h, ref) && strstr(nn_last_error(), "without the picture before it"),
        "picture 2 without picture 1 is refused: %s", nn_last_error());
  CHECK(!codec_decompress_video(&c, NULL, a.s[1], a.len[1], dec, w, h, ref), "and the decoder waits for an intra picture");
  CHECK(codec_decompress_video(&c, NULL, a.s[3], a.len[3], dec, w, h, ref) && !memcmp(dec, a.rec[3], (size_t)w * h * 3),
        "the next intra picture decodes exactly");
  CHECK(codec_decompress_video(&c, NULL, a.s[4], a.len[4], dec, w, h, ref) && !memcmp(dec, a.rec[4], (size_t)w * h * 3),
        "and so do the predicted pictures after it");
  /* picture 5 arrives corrupt (its checksum catches it): 6 is refused too */
  uint8_t *bad = malloc(a.len[5]);
  memcpy(bad, a.s[5], a.len[5]);
  bad[a.len[5] - 1] ^= 0x40;
  CHECK(!codec_decompress_video(&c, NULL, bad, a.len[5], dec, w, h, ref), "corrupt picture refused");
  CHECK(!codec_decompress_video(&c, NULL, a.s[6], a.len[6], dec, w, h, ref), "the picture after it is refused too");
  /* a decoder without a reference at all */
  CHECK(!codec_decompress(&c, NULL, a.s[4], a.len[4], dec, w, h) && strstr(nn_last_error(), "no reference"),
        "a still-image decoder refuses predicted pictures: %s", nn_last_error());
  free(bad), free(dec);
  codec_reference_free(ref);
  free_seq(&a, n);
  for (int i = 0; i < n; i++) free(f[i]);
  codec_free(&c);
}

TEST(video_sequence_numbers_wrap_and_a_new_quality_or_size_starts_intra) {
  codec_model c = small_model(5);
  int w = 64, h = 64;
  uint8_t *f = scene(w, h, 0, 3), *g = scene(128, 64, 0, 3), *rec = malloc((size_t)128 * 64 * 3), *dec = malloc((size_t)128 * 64 * 3);
  codec_reference *er = codec_reference_new(), *dr = codec_reference_new();
  bool exact = true, numbered = true;
  for (int i = 0; i < 262 && exact; i++) {
    uint8_t *s = NULL;
    size_t len = 0;
    exact = codec_compress_video(&c, NULL, 2, false, f, w, h, w * 3, er, &s, &len, rec) &&
            codec_decompress_video(&c, NULL, s, len, dec, w, h, dr) && !memcmp(dec, rec, (size_t)w * h * 3);
    codec_header hd;
    numbered &= codec_parse_header(s, len, &hd) && hd.seq == (i == 0 ? 0 : (i - 1) % 255 + 1);
    free(s);
  }
  CHECK(exact && numbered, "262 pictures: numbered 0, 1..255, 1.. and decoded exactly (%s)", exact ? "ok" : nn_last_error());
  uint8_t *s = NULL;
  size_t len = 0;
  codec_header hd;
  CHECK(codec_compress_video(&c, NULL, 3, false, f, w, h, w * 3, er, &s, &len, NULL) && codec_parse_header(s, len, &hd) &&
            !hd.predicted, "a new quality level starts with an intra picture");
  free(s);
  CHECK(codec_compress_video(&c, NULL, 3, false, g, 128, 64, 128 * 3, er, &s, &len, NULL) && codec_parse_header(s, len, &hd) &&
            !hd.predicted && hd.width == 128, "so does a new size");
  free(s);
  CHECK(codec_compress_video(&c, NULL, 3, false, g, 128, 64, 128 * 3, er, &s, &len, NULL) && codec_parse_header(s, len, &hd) &&
            hd.predicted, "and then it predicts again");
  free(s);
  codec_reference_free(er), codec_reference_free(dr);
  free(f), free(g), free(rec), free(dec);
  codec_free(&c);
}

TEST(video_hostile_predicted_pictures_never_crash) {
  codec_model c = small_model(6);
  int w = 96, h = 80;
  uint8_t *f0 = scene(w, h, 0, 1), *f1 = scene(w, h, 3, 2), *out = malloc((size_t)w * h * 3);
  codec_reference *er = codec_reference_new(), *dr = codec_reference_new();
  uint8_t *s0 = NULL, *s1 = NULL;
  size_t l0 = 0, l1 = 0;
  CHECK(codec_compress_video(&c, NULL, 3, true, f0, w, h, w * 3, er, &s0, &l0, NULL) &&
            codec_compress_video(&c, NULL, 3, false, f1, w, h, w * 3, er, &s1, &l1, NULL),
        "encode: %s", nn_last_error());
  nn_rng rng;
  nn_rng_seed(&rng, 91);
  uint8_t *m = malloc(l1);
  int refused = 0, decoded = 0;
  for (int it = 0; it < 300; it++) {
    memcpy(m, s1, l1);
    size_t ml = l1;
    if (it % 3 == 0) { /* flip payload bytes, checksum fixed: well-formed but hostile maps, z and y */
      size_t at = CODEC_HEADER_BYTES + nn_rng_u64(&rng) % (l1 - CODEC_HEADER_BYTES);
      m[at] ^= (uint8_t)(1 + nn_rng_u64(&rng) % 255);
      uint32_t crc = codec_crc32(m + CODEC_HEADER_BYTES, l1 - CODEC_HEADER_BYTES);
      m[28] = (uint8_t)(crc >> 24), m[29] = (uint8_t)(crc >> 16), m[30] = (uint8_t)(crc >> 8), m[31] = (uint8_t)crc;
    } else if (it % 3 == 1) { /* truncate */
      ml = (size_t)(nn_rng_u64(&rng) % l1);
    } else { /* header bytes: flags, sequence, sizes */
      for (int k = 4; k < 28; k++)
        if (nn_rng_u64(&rng) % 6 == 0) m[k] = (uint8_t)nn_rng_u64(&rng);
    }
    codec_header hd;
    if (!codec_decompress_video(&c, NULL, s0, l0, NULL, w, h, dr)) break; /* a fresh reference each time */
    bool small = !codec_parse_header(m, ml, &hd) || (hd.width == w && hd.height == h);
    if (small && codec_decompress_video(&c, NULL, m, ml, out, w, h, dr)) decoded++;
    else refused++;
  }
  CHECK(refused + decoded == 300 && refused > 150, "%d refused, %d decoded (no crash, no hang)", refused, decoded);
  free(m), free(s0), free(s1), free(f0), free(f1), free(out);
  codec_reference_free(er), codec_reference_free(dr);
  codec_free(&c);
}


/* The rate controller against a stand-in encoder: an intra picture of level q costs I[q] bytes, a predicted
 * one P[q] * block_lambda^0.2 (more blocks coded, more bytes; the scale's whole range moves it 2x either
 * way). The mean rate over the last 300 of 1200 frames must land on the target, the level stepping where the
 * blocks alone cannot get there. */
TEST(video_rate_control_meets_the_target_and_steps_levels) {
  const double I[6] = {0, 8000, 14000, 24000, 36000, 52000}, P[6] = {0, 400, 700, 1200, 1900, 3000};
  const struct { double target; int lo, hi; } cases[] = {{350, 1, 1}, {1200, 3, 3}, {2500, 3, 4}, {5000, 5, 5}};
  for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
    codec_rate_control rc;
    codec_rate_init(&rc, cases[k].target * 8 * 10, 10, 3);
    double late = 0;
    int q = 0, prev = 0;
    for (int i = 0; i < 1200; i++) {
      codec_options o = {0};
      q = codec_rate_next(&rc, i % 60 == 0, &o);
      bool intra = i % 60 == 0 || q != prev;
      double bytes = intra ? I[q] : P[q] * pow(o.block_lambda, 0.2);
      codec_rate_update(&rc, (size_t)bytes, !intra, &o);
      if (i >= 900) late += bytes / 300;
      prev = q;
    }
    CHECK(fabs(late - cases[k].target) < 0.1 * cases[k].target && q >= cases[k].lo && q <= cases[k].hi,
          "target %.0f bytes a frame: %.0f over the last 300 frames, at level %d (want %d..%d); %.0f over all",
          cases[k].target, late, q, cases[k].lo, cases[k].hi, codec_rate_achieved(&rc) / 8);
  }
}

/* A model whose levels differ everywhere they can: gains and (with level_mod) the GDNs' scales. */
static codec_model levelled_model(uint64_t seed) {
  codec_model c;
  codec_config cfg = codec_config_default();
  cfg.n = 16, cfg.m = 24, cfg.level_mod = true, cfg.context = 8, cfg.anchor_context = 8;
  if (!codec_init(&c, &cfg, seed)) memset(&c, 0, sizeof c);
  for (int q = 0; q < CODEC_MAX_QUALITY; q++) {
    for (int k = 0; k < cfg.m; k++) {
      nn_f32(c.gain_enc)[q * cfg.m + k] = 3.0f + 2.5f * (float)q;
      nn_f32(c.gain_dec)[q * cfg.m + k] = 1.0f / (3.0f + 2.5f * (float)q);
    }
    for (int i = 0; i < 3; i++)
      for (int k = 0; k < cfg.n; k++) {
        if (c.mod_a[i]) nn_f32(c.mod_a[i])[q * cfg.n + k] = 0.8f + 0.1f * (float)q;
        if (c.mod_s[i]) nn_f32(c.mod_s[i])[q * cfg.n + k] = 1.2f - 0.1f * (float)q;
      }
  }
  return c;
}

static double sse_cols(const uint8_t *a, const uint8_t *b, int w, int h, int x0, int x1) {
  double s = 0;
  for (int y = 0; y < h; y++)
    for (int x = x0; x < x1; x++)
      for (int k = 0; k < 3; k++) {
        double d = (double)a[((size_t)y * w + x) * 3 + k] - b[((size_t)y * w + x) * 3 + k];
        s += d * d;
      }
  return s;
}

TEST(video_regions_of_interest_run_their_blocks_at_their_level) {
  codec_model c = levelled_model(8);
  CHECK(c.p.n > 0 && c.mod_a[0] && c.mod_s[0], "model built with level scales");
  int w = 200, h = 64, cols, rows;
  codec_block_grid(w, h, &cols, &rows);
  size_t fb = (size_t)w * h * 3;
  uint8_t *f = scene(w, h, 1, 5), *inside = calloc((size_t)cols * rows, 1);
  uint8_t *plain1 = malloc(fb), *plain5 = malloc(fb), *rec = malloc(fb), *dec = malloc(fb);
  uint8_t *s = NULL, *p1 = NULL;
  size_t len = 0, l1 = 0;
  codec_header hd;
  CHECK(codec_compress(&c, NULL, 1, f, w, h, w * 3, &p1, &l1, plain1) && codec_compress(&c, NULL, 5, f, w, h, w * 3, &s, &len, plain5),
        "plain pictures at levels 1 and 5: %s", nn_last_error());
  CHECK(memcmp(plain1, plain5, fb) != 0, "the levels differ");
  free(s);
  /* no block inside a region: the plain picture, byte for byte */
  codec_options o = {.roi_blocks = inside, .roi_quality = 5};
  CHECK(codec_compress(&c, &o, 1, f, w, h, w * 3, &s, &len, rec) && len == l1 && !memcmp(s, p1, len),
        "a map without regions codes the plain picture");
  free(s);
  /* every block inside: level 5's picture, in a version-3 stream */
  memset(inside, 1, (size_t)cols * rows);
  CHECK(codec_compress(&c, &o, 1, f, w, h, w * 3, &s, &len, rec) && codec_parse_header(s, len, &hd) && hd.version == 3 &&
            hd.regions && !hd.predicted && hd.quality == 1,
        "all blocks at level 5: header version %d, regions %d (%s)", hd.version, hd.regions, nn_last_error());
  CHECK(!memcmp(rec, plain5, fb), "all blocks at level 5 reconstruct as a level-5 picture");
  CHECK(codec_decompress(&c, NULL, s, len, dec, w, h) && !memcmp(dec, rec, fb), "and decode to it: %s", nn_last_error());
  free(s);
  /* the left half inside: each side follows its own level (away from the seam) */
  memset(inside, 0, (size_t)cols * rows);
  for (int by = 0; by < rows; by++)
    for (int bx = 0; bx < cols / 2; bx++) inside[by * cols + bx] = 1;
  int seam = cols / 2 * 16;
  for (int threads = 1; threads <= 2; threads++) {
    nn_set_num_threads(threads);
    CHECK(codec_compress(&c, &o, 1, f, w, h, w * 3, &s, &len, rec) && codec_decompress(&c, NULL, s, len, dec, w, h) &&
              !memcmp(dec, rec, fb),
          "%d threads: half the blocks at level 5 decode to the encoder's picture (%s)", threads, nn_last_error());
    free(s);
  }
  nn_set_num_threads(0);
  double left5 = sse_cols(rec, plain5, w, h, 0, seam - 32), left1 = sse_cols(rec, plain1, w, h, 0, seam - 32);
  double right5 = sse_cols(rec, plain5, w, h, seam + 32, w), right1 = sse_cols(rec, plain1, w, h, seam + 32, w);
  CHECK(left5 < left1 / 4 && right1 < right5 / 4, "left like level 5 (%.0f vs %.0f), right like level 1 (%.0f vs %.0f)", left5,
        left1, right1, right5);
  /* a moving region over predicted pictures: exact, and copied blocks keep the level they were coded at */
  codec_reference *er = codec_reference_new(), *dr = codec_reference_new();
  bool exact = true;
  for (int i = 0; i < 5 && exact; i++) {
    uint8_t *g = scene(w, h, i, 5);
    memset(inside, 0, (size_t)cols * rows);
    for (int by = 0; by < rows; by++) inside[by * cols + (i % cols)] = inside[by * cols + (i + 1) % cols] = 1;
    exact = codec_compress_video(&c, &o, 2, i == 0, g, w, h, w * 3, er, &s, &len, rec) && codec_parse_header(s, len, &hd) &&
            hd.predicted == (i > 0) && hd.regions && codec_decompress_video(&c, NULL, s, len, dec, w, h, dr) &&
            !memcmp(dec, rec, fb);
    free(s), free(g);
  }
  CHECK(exact, "predicted pictures with a moving region decode exactly (%s)", nn_last_error());
  /* hostile payloads of a picture with regions (checksum fixed): refused or decoded, never a crash */
  CHECK(codec_compress_video(&c, &o, 2, true, f, w, h, w * 3, er, &s, &len, NULL), "intra picture with regions");
  nn_rng rng;
  nn_rng_seed(&rng, 17);
  uint8_t *m = malloc(len);
  int refused = 0;
  for (int it = 0; it < 60; it++) {
    memcpy(m, s, len);
    size_t at = CODEC_HEADER_BYTES + nn_rng_u64(&rng) % (len - CODEC_HEADER_BYTES);
    m[at] ^= (uint8_t)(1 + nn_rng_u64(&rng) % 255);
    uint32_t crc = codec_crc32(m + CODEC_HEADER_BYTES, len - CODEC_HEADER_BYTES);
    m[28] = (uint8_t)(crc >> 24), m[29] = (uint8_t)(crc >> 16), m[30] = (uint8_t)(crc >> 8), m[31] = (uint8_t)crc;
    refused += !codec_decompress(&c, NULL, m, len, dec, w, h);
  }
  CHECK(refused > 0, "%d of 60 hostile pictures refused, none crashed", refused);
  /* flags that do not go with the version */
  memcpy(m, s, len);
  m[4] = 1;
  CHECK(!codec_parse_header(m, len, &hd), "version 1 with the regions flag is refused");
  m[4] = 3, m[6] = 0;
  CHECK(!codec_parse_header(m, len, &hd), "version 3 without it is refused");
  free(m), free(s), free(p1);
  codec_reference_free(er), codec_reference_free(dr);
  free(f), free(inside), free(plain1), free(plain5), free(rec), free(dec);
  codec_free(&c);
}
