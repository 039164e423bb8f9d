/* e2ecodecenc / e2ecodecdec / e2ecodecparse / e2ecodec through GstHarness.
 * A small randomly initialised model is enough: coding must be exact and
 * robust whatever the weights. */
#include <gst/check/gstharness.h>
#include <glib/gstdio.h>
#include <gst/video/video.h>
#include <math.h>
#include <unistd.h>

#include "e2e/codec.h"
#include "frames.h"
#include "../harness.h"

__attribute__((constructor)) static void init_gst(void) {
  gst_init(NULL, NULL);
  g_setenv("GST_PLUGIN_PATH", E2E_PLUGIN_BUILD_DIR, TRUE);
  gst_registry_scan_path(gst_registry_get(), E2E_PLUGIN_BUILD_DIR);
}

static char *make_model(uint64_t seed, codec_model *keep) {
  codec_config cfg = codec_config_default();
  cfg.n = 16, cfg.m = 24, cfg.context = 8, cfg.anchor_context = 8; /* as the shipped model: both context models, so valgrind sees their paths */
  codec_model c;
  CHECK(codec_init(&c, &cfg, seed), "model");
  char *path = g_strdup_printf("/tmp/e2e-codec-test-%d-%llu.safetensors", getpid(), (unsigned long long)seed);
  CHECK(codec_save(&c, path, NULL, 0), "save: %s", nn_last_error());
  if (keep) *keep = c;
  else codec_free(&c);
  return path;
}

/* A packed-RGB test picture, and the same as a GstBuffer of format fmt. */
static uint8_t *picture(int w, int h, int seed) {
  uint8_t *p = g_malloc((size_t)w * h * 3);
  for (int y = 0; y < h; y++)
    for (int x = 0; x < w; x++) {
      p[((size_t)y * w + x) * 3 + 0] = (uint8_t)(x * 255 / w);
      p[((size_t)y * w + x) * 3 + 1] = (uint8_t)(y * 255 / h);
      p[((size_t)y * w + x) * 3 + 2] = (uint8_t)(((x / 8 + y / 8 + seed) % 2) * 200);
    }
  return p;
}

static GstBuffer *frame_buffer(const uint8_t *rgb, int w, int h, GstVideoFormat fmt, GstClockTime pts) {
  GstBuffer *src = test_frame_from_rgb(rgb, w, h), *o = test_frame_convert(src, w, h, fmt);
  gst_buffer_unref(src);
  GST_BUFFER_PTS(o) = pts;
  GST_BUFFER_DURATION(o) = GST_SECOND / 10;
  return o;
}

static gchar *raw_caps(GstVideoFormat fmt, int w, int h) {
  return g_strdup_printf("video/x-raw,format=%s,width=%d,height=%d,framerate=10/1", gst_video_format_to_string(fmt), w, h);
}

TEST(encoder_caps_timestamps_and_headers_for_each_format) {
  char *model = make_model(1, NULL);
  GstVideoFormat fmts[] = {GST_VIDEO_FORMAT_RGB, GST_VIDEO_FORMAT_I420, GST_VIDEO_FORMAT_NV12, GST_VIDEO_FORMAT_BGRx};
  for (guint f = 0; f < G_N_ELEMENTS(fmts); f++) {
    int w = 97, h = 45; /* odd: padding to the stride of 64 happens inside */
    /* properties read at start go into the launch line: the harness starts the element at once */
    gchar *launch = g_strdup_printf("e2ecodecenc model=%s quality=2", model);
    GstHarness *hs = gst_harness_new_parse(launch);
    g_free(launch);
    gchar *caps = raw_caps(fmts[f], w, h);
    gst_harness_set_src_caps_str(hs, caps);
    uint8_t *pic = picture(w, h, 0);
    for (int i = 0; i < 3; i++) gst_harness_push(hs, frame_buffer(pic, w, h, fmts[f], i * GST_SECOND / 10));
    for (int i = 0; i < 3; i++) {
      GstBuffer *b = gst_harness_pull(hs);
      CHECK(b != NULL, "%s: output %d", caps, i);
      if (!b) break;
      CHECK(GST_BUFFER_PTS(b) == (GstClockTime)i * GST_SECOND / 10, "%s: pts kept", caps);
      /* the first picture intra, the others (the same picture again) predicted from the one before */
      CHECK(GST_BUFFER_FLAG_IS_SET(b, GST_BUFFER_FLAG_DELTA_UNIT) == (i > 0), "%s: picture %d a delta unit: %d", caps, i,
            GST_BUFFER_FLAG_IS_SET(b, GST_BUFFER_FLAG_DELTA_UNIT));
      GstMapInfo m;
      gst_buffer_map(b, &m, GST_MAP_READ);
      codec_header hd;
      CHECK(codec_parse_header(m.data, m.size, &hd) && hd.width == w && hd.height == h && hd.quality == 2 &&
                hd.fps_n == 10 && hd.fps_d == 1 && hd.predicted == (i > 0) && hd.seq == i,
            "%s: header %dx%d q%d fps %d/%d predicted %d seq %d", caps, hd.width, hd.height, hd.quality, hd.fps_n, hd.fps_d,
            hd.predicted, hd.seq);
      gst_buffer_unmap(b, &m);
      gst_buffer_unref(b);
    }
    GstCaps *oc = gst_pad_get_current_caps(hs->sinkpad);
    GstStructure *s = gst_caps_get_structure(oc, 0);
    int cw = 0, ch = 0;
    gst_structure_get_int(s, "width", &cw);
    gst_structure_get_int(s, "height", &ch);
    CHECK(gst_structure_has_name(s, "video/x-e2e-lic") && cw == w && ch == h && gst_structure_get_string(s, "model-id"),
          "%s: output caps %" GST_PTR_FORMAT, caps, oc);
    gst_caps_unref(oc);
    g_free(pic);
    g_free(caps);
    gst_harness_teardown(hs);
  }
  unlink(model);
  g_free(model);
}

TEST(encoder_then_decoder_bit_exact_and_quality_and_effort_change_while_playing) {
  codec_model ref;
  char *model = make_model(2, &ref);
  int w = 130, h = 70;
  gchar *launch = g_strdup_printf("e2ecodecenc model=%s quality=1 ! e2ecodecdec model=%s", model, model);
  GstHarness *hs = gst_harness_new_parse(launch);
  g_free(launch);
  GstElement *enc = gst_harness_find_element(hs, "e2ecodecenc"), *dec = gst_harness_find_element(hs, "e2ecodecdec");
  gchar *caps = raw_caps(GST_VIDEO_FORMAT_RGB, w, h);
  gst_harness_set_src_caps_str(hs, caps);
  uint8_t *pic = picture(w, h, 1), *rec = g_malloc((size_t)w * h * 3);
  /* q 1, 3, 5 plain, then q 3 again with the latent search switched on while playing */
  for (int q = 1, step = 0; step < 4; q = step < 2 ? q + 2 : 3, step++) {
    int refine = step == 3 ? 10 : 0;
    g_object_set(enc, "quality", q, "refine-steps", refine, NULL);
    gst_harness_push(hs, frame_buffer(pic, w, h, GST_VIDEO_FORMAT_RGB, (GstClockTime)q * GST_SECOND + (refine ? GST_SECOND * 10 : 0)));
    GstBuffer *b = gst_harness_pull(hs);
    CHECK(b != NULL, "decoded frame at q%d", q);
    if (!b) break;
    CHECK(GST_BUFFER_PTS(b) == (GstClockTime)q * GST_SECOND + (refine ? GST_SECOND * 10 : 0), "pts through encoder and decoder");
    uint8_t *s = NULL;
    size_t len;
    CHECK(codec_compress(&ref, &(codec_options){.refine_steps = refine}, q, pic, w, h, w * 3, &s, &len, rec), "reference encode");
    GstVideoInfo info;
    gst_video_info_set_format(&info, GST_VIDEO_FORMAT_RGB, w, h);
    GstVideoFrame vf;
    gst_video_frame_map(&vf, &info, b, GST_MAP_READ);
    int bad_rows = 0;
    for (int y = 0; y < h; y++)
      if (memcmp((uint8_t *)GST_VIDEO_FRAME_PLANE_DATA(&vf, 0) + (size_t)y * GST_VIDEO_FRAME_PLANE_STRIDE(&vf, 0),
                 rec + (size_t)y * w * 3, (size_t)w * 3))
        bad_rows++;
    CHECK(bad_rows == 0, "q%d, %d refinement steps: element output == library reconstruction (%d rows differ)", q, refine, bad_rows);
    gst_video_frame_unmap(&vf);
    free(s);
    gst_buffer_unref(b);
  }
  gst_object_unref(enc);
  gst_object_unref(dec);
  g_free(pic), g_free(rec), g_free(caps);
  gst_harness_teardown(hs);
  codec_free(&ref);
  unlink(model);
  g_free(model);
}

/* Codes one picture with the library, for decoder and parser tests. */
static uint8_t *coded(codec_model *c, int q, int w, int h, int seed, size_t *len) {
  uint8_t *pic = picture(w, h, seed), *s = NULL;
  CHECK(codec_compress(c, NULL, q, pic, w, h, w * 3, &s, len, NULL), "encode");
  codec_set_frame_rate(s, 10, 1);
  g_free(pic);
  return s;
}

static GstBuffer *wrap(const uint8_t *d, size_t n, GstClockTime pts) {
  GstBuffer *b = gst_buffer_new_memdup(d, n);
  GST_BUFFER_PTS(b) = pts;
  return b;
}

/* A decoder with these properties on 64x64 pictures, its messages going to *bus (unref it when done). */
static GstHarness *decoder_harness(const char *model, const char *props, GstBus **bus) {
  gchar *launch = g_strdup_printf("e2ecodecdec model=%s %s", model, props);
  GstHarness *hs = gst_harness_new_parse(launch);
  g_free(launch);
  GstElement *dec = gst_harness_find_element(hs, "e2ecodecdec");
  *bus = gst_bus_new();
  gst_element_set_bus(dec, *bus);
  gst_object_unref(dec);
  gst_harness_set_src_caps_str(hs, "video/x-e2e-lic,parsed=true,width=64,height=64,framerate=10/1");
  return hs;
}

TEST(decoder_drops_corrupt_pictures_with_a_warning_and_goes_on) {
  codec_model ref;
  char *model = make_model(3, &ref);
  size_t len;
  uint8_t *good = coded(&ref, 3, 64, 64, 0, &len);
  GstBus *bus;
  GstHarness *hs = decoder_harness(model, "max-errors=-1", &bus);
  uint8_t *bad = g_memdup2(good, len);
  bad[len / 2] ^= 0x5a; /* checksum no longer matches */
  GstFlowReturn r1 = gst_harness_push(hs, wrap(bad, len, 0));
  GstFlowReturn r2 = gst_harness_push(hs, wrap(good, len - 7, GST_SECOND / 10)); /* truncated */
  GstFlowReturn r3 = gst_harness_push(hs, wrap((const uint8_t *)"not a picture at all, just bytes", 32, GST_SECOND / 5));
  GstFlowReturn r4 = gst_harness_push(hs, wrap(good, len, GST_SECOND * 3 / 10));
  CHECK(r1 == GST_FLOW_OK && r2 == GST_FLOW_OK && r3 == GST_FLOW_OK && r4 == GST_FLOW_OK, "flow stays OK (%d %d %d %d)", r1, r2, r3, r4);
  CHECK(gst_harness_buffers_in_queue(hs) == 1, "only the good picture comes out (%u)", gst_harness_buffers_in_queue(hs));
  GstBuffer *b = gst_harness_pull(hs);
  CHECK(b && GST_BUFFER_PTS(b) == GST_SECOND * 3 / 10, "it is the last one");
  if (b) gst_buffer_unref(b);
  /* warnings were posted on the bus for the dropped pictures */
  int warnings = 0;
  GstMessage *m;
  while ((m = gst_bus_pop_filtered(bus, GST_MESSAGE_WARNING))) {
    warnings++;
    gst_message_unref(m);
  }
  gst_object_unref(bus);
  CHECK(warnings == 3, "a warning for each of the 3 dropped pictures (%d)", warnings);
  gst_harness_teardown(hs);
  free(good);
  g_free(bad);
  codec_free(&ref);
  unlink(model);
  g_free(model);
}

/* only_one: an error at start (model, device), which must be the element's alone, not followed by the base
 * class's own "Could not initialize supporting library". */
static void expect_error_at(const char *launch, const char *needle, bool only_one) {
  GstElement *p = gst_parse_launch(launch, NULL);
  GstStateChangeReturn r = gst_element_set_state(p, GST_STATE_PLAYING);
  GstBus *bus = gst_element_get_bus(p);
  GstMessage *msg = gst_bus_timed_pop_filtered(bus, 10 * GST_SECOND, GST_MESSAGE_ERROR | GST_MESSAGE_EOS);
  CHECK(msg && GST_MESSAGE_TYPE(msg) == GST_MESSAGE_ERROR, "%s: an error, not EOS or a hang", launch);
  if (only_one) {
    GstMessage *second = gst_bus_pop_filtered(bus, GST_MESSAGE_ERROR);
    CHECK(r == GST_STATE_CHANGE_FAILURE && !second, "%s: one error, posted while starting", launch);
    if (second) gst_message_unref(second);
  }
  if (msg && GST_MESSAGE_TYPE(msg) == GST_MESSAGE_ERROR) {
    GError *err = NULL;
    gchar *dbg = NULL;
    gst_message_parse_error(msg, &err, &dbg);
    CHECK(strstr(err->message, needle) || (dbg && strstr(dbg, needle)), "'%s' in: %s / %s", needle, err->message, dbg);
    g_error_free(err);
    g_free(dbg);
  }
  if (msg) gst_message_unref(msg);
  gst_object_unref(bus);
  gst_element_set_state(p, GST_STATE_NULL);
  gst_object_unref(p);
}

static void expect_error(const char *launch, const char *needle) { expect_error_at(launch, needle, false); }

/* A header claiming 16384x16384 on a few bytes: right magic, model and checksum, so only its size is wrong. */
static uint8_t *claims_huge_size(const codec_model *c, size_t *len) {
  *len = CODEC_HEADER_BYTES + 8;
  uint8_t *s = g_malloc0(*len);
  memcpy(s, CODEC_MAGIC, 4);
  s[4] = 1, s[5] = 1; /* an intra picture */
  for (int k = 0; k < 4; k++) s[8 + k] = (uint8_t)(c->model_id >> (24 - 8 * k));
  s[12] = s[14] = 0x40;
  s[23] = s[27] = 4;
  uint32_t crc = codec_crc32(s + CODEC_HEADER_BYTES, 8);
  for (int k = 0; k < 4; k++) s[28 + k] = (uint8_t)(crc >> (24 - 8 * k));
  return s;
}

TEST(max_memory_drops_or_refuses_pictures_too_large) {
  codec_model ref;
  char *model = make_model(6, &ref);
  size_t len, huge_len;
  uint8_t *good = coded(&ref, 2, 64, 64, 0, &len), *huge = claims_huge_size(&ref, &huge_len);
  /* 1 MiB: enough for 64x64, not for 16384x16384 (which would take some 50 GB) */
  GstBus *bus;
  GstHarness *hs = decoder_harness(model, "max-memory=1", &bus);
  GstFlowReturn r1 = gst_harness_push(hs, wrap(good, len, 0));
  GstFlowReturn r2 = gst_harness_push(hs, wrap(huge, huge_len, GST_SECOND / 10));
  GstFlowReturn r3 = gst_harness_push(hs, wrap(good, len, GST_SECOND / 5));
  CHECK(r1 == GST_FLOW_OK && r2 == GST_FLOW_OK && r3 == GST_FLOW_OK, "flow stays OK (%d %d %d)", r1, r2, r3);
  CHECK(gst_harness_buffers_in_queue(hs) == 2, "the two real pictures come out (%u)", gst_harness_buffers_in_queue(hs));
  GstCaps *caps = gst_pad_get_current_caps(hs->sinkpad);
  GstVideoInfo vi;
  CHECK(caps && gst_video_info_from_caps(&vi, caps) && vi.width == 64 && vi.height == 64,
        "output caps never switched to the claimed size");
  if (caps) gst_caps_unref(caps);
  GstMessage *m = gst_bus_pop_filtered(bus, GST_MESSAGE_WARNING);
  CHECK(m, "a warning for the dropped picture");
  if (m) {
    GError *err = NULL;
    gchar *dbg = NULL;
    gst_message_parse_warning(m, &err, &dbg);
    CHECK(strstr(err->message, "Too large") && dbg && strstr(dbg, "16384x16384") && strstr(dbg, "working memory"),
          "says why: %s / %s", err->message, dbg);
    g_error_free(err);
    g_free(dbg);
    gst_message_unref(m);
  }
  gst_object_unref(bus);
  gst_harness_teardown(hs);
  /* the encoder: an error that says why */
  gchar *launch = g_strdup_printf("videotestsrc num-buffers=2 ! video/x-raw,width=320,height=240 ! e2ecodecenc model=%s "
                           "max-memory=1 ! fakesink", model);
  expect_error(launch, "working memory");
  g_free(launch);
  launch = g_strdup_printf("videotestsrc num-buffers=2 ! video/x-raw,width=320,height=240 ! e2ecodec model=%s "
                           "max-memory=1 ! fakesink", model); /* the bin passes it on */
  expect_error(launch, "working memory");
  g_free(launch);
  free(good);
  g_free(huge);
  codec_free(&ref);
  unlink(model);
  g_free(model);
}

TEST(missing_or_foreign_model_is_a_clear_error) {
  expect_error_at("videotestsrc num-buffers=2 ! e2ecodecenc model=/nonexistent/codec.safetensors ! fakesink",
                  "/nonexistent/codec.safetensors", true);
  expect_error_at("e2ecodecdec model=/nonexistent/codec.safetensors ! fakesink", "/nonexistent/codec.safetensors", true);
  expect_error_at("videotestsrc num-buffers=2 ! e2ecodecenc device=cuda ! fakesink", "device=cuda", true);
  /* stream made by one model, decoder holding another */
  char *a = make_model(4, NULL), *b = make_model(5, NULL);
  gchar *launch = g_strdup_printf("videotestsrc num-buffers=2 ! video/x-raw,width=64,height=64 ! e2ecodecenc model=%s ! "
                                  "e2ecodecdec model=%s ! fakesink", a, b);
  expect_error(launch, "model");
  g_free(launch);
  unlink(a), unlink(b);
  g_free(a), g_free(b);
}

TEST(parser_splits_byte_streams_and_resyncs_after_garbage) {
  codec_model ref;
  char *model = make_model(6, &ref);
  size_t l1, l2, l3;
  uint8_t *p1 = coded(&ref, 1, 64, 48, 0, &l1), *p2 = coded(&ref, 5, 64, 48, 1, &l2), *p3 = coded(&ref, 3, 64, 48, 2, &l3);
  GByteArray *all = g_byte_array_new();
  g_byte_array_append(all, (const guint8 *)"garbage!", 8);
  g_byte_array_append(all, p1, (guint)l1);
  g_byte_array_append(all, p2, (guint)l2);
  g_byte_array_append(all, (const guint8 *)"E2Ex", 4); /* a false magic */
  g_byte_array_append(all, p3, (guint)l3);
  GstHarness *hs = gst_harness_new("e2ecodecparse");
  gst_harness_set_src_caps_str(hs, "video/x-e2e-lic");
  /* push in odd chunk sizes so pictures straddle buffers */
  for (guint off = 0; off < all->len;) {
    guint n = MIN(37u + off % 101u, all->len - off);
    gst_harness_push(hs, gst_buffer_new_memdup(all->data + off, n));
    off += n;
  }
  gst_harness_push_event(hs, gst_event_new_eos());
  const uint8_t *want[3] = {p1, p2, p3};
  size_t wl[3] = {l1, l2, l3};
  CHECK(gst_harness_buffers_in_queue(hs) == 3, "three pictures out (%u)", gst_harness_buffers_in_queue(hs));
  for (int i = 0; i < 3 && gst_harness_buffers_in_queue(hs); i++) {
    GstBuffer *b = gst_harness_pull(hs);
    GstMapInfo m;
    gst_buffer_map(b, &m, GST_MAP_READ);
    CHECK(m.size == wl[i] && memcmp(m.data, want[i], wl[i]) == 0, "picture %d intact (%zu bytes)", i, m.size);
    CHECK(GST_BUFFER_DURATION(b) == GST_SECOND / 10, "duration from the header's frame rate");
    gst_buffer_unmap(b, &m);
    gst_buffer_unref(b);
  }
  GstCaps *oc = gst_pad_get_current_caps(hs->sinkpad);
  gchar *cs = gst_caps_to_string(oc);
  CHECK(strstr(cs, "width=(int)64") && strstr(cs, "height=(int)48") && strstr(cs, "framerate=(fraction)10/1"), "caps %s", cs);
  g_free(cs);
  gst_caps_unref(oc);
  gst_harness_teardown(hs);
  g_byte_array_unref(all);
  free(p1), free(p2), free(p3);
  codec_free(&ref);
  unlink(model);
  g_free(model);
}

TEST(bin_posts_bpp_and_psnr_per_frame) {
  char *model = make_model(7, NULL);
  gchar *launch = g_strdup_printf("videotestsrc num-buffers=3 pattern=ball ! video/x-raw,width=96,height=64,format=NV12 ! "
                                  "e2ecodec model=%s quality=4 ! fakesink", model);
  GstElement *p = gst_parse_launch(launch, NULL);
  gst_element_set_state(p, GST_STATE_PLAYING);
  GstBus *bus = gst_element_get_bus(p);
  int frames = 0;
  for (;;) {
    GstMessage *m = gst_bus_timed_pop_filtered(bus, 10 * GST_SECOND, GST_MESSAGE_ELEMENT | GST_MESSAGE_EOS | GST_MESSAGE_ERROR);
    if (!m) break;
    if (GST_MESSAGE_TYPE(m) == GST_MESSAGE_ELEMENT && gst_structure_has_name(gst_message_get_structure(m), "e2ecodec-frame")) {
      const GstStructure *s = gst_message_get_structure(m);
      double bpp = 0, psnr = 0;
      int q = 0;
      gst_structure_get_double(s, "bpp", &bpp);
      gst_structure_get_double(s, "psnr", &psnr);
      gst_structure_get_int(s, "quality", &q);
      CHECK(bpp > 0 && bpp < 48 && psnr > 0 && psnr < 100 && q == 4, "frame message bpp %g psnr %g q %d", bpp, psnr, q);
      frames++;
    }
    bool end = GST_MESSAGE_TYPE(m) != GST_MESSAGE_ELEMENT;
    CHECK(GST_MESSAGE_TYPE(m) != GST_MESSAGE_ERROR, "no error");
    gst_message_unref(m);
    if (end) break;
  }
  CHECK(frames == 3, "one message per frame (%d)", frames);
  gst_object_unref(bus);
  gst_element_set_state(p, GST_STATE_NULL);
  gst_object_unref(p);
  g_free(launch);
  unlink(model);
  g_free(model);
}

/* ---------------------------------------------------------------- video: predicted pictures */

/* n pictures of a square moving over a still background, coded as a video (intra where i % key_int == 0),
 * with the library; frame rate 10/1 stamped in. recon (n * w * h * 3, may be NULL) gets what a decoder shows. */
static uint8_t **coded_video(codec_model *c, int n, int w, int h, int key_int, size_t *lens, uint8_t *recon) {
  uint8_t **s = g_new0(uint8_t *, n), *pic = picture(w, h, 0);
  codec_reference *ref = codec_reference_new();
  for (int i = 0; i < n; i++) {
    for (int y = 8; y < 24; y++) /* the square moves 4 pixels a frame */
      for (int x = 0; x < w; x++) {
        bool in = x >= 4 * i && x < 4 * i + 16;
        for (int k = 0; k < 3; k++) pic[((size_t)y * w + x) * 3 + k] = in ? 240 : (uint8_t)(x * 255 / w);
      }
    CHECK(codec_compress_video(c, NULL, 3, i % key_int == 0, pic, w, h, w * 3, ref, &s[i], &lens[i],
                               recon ? recon + (size_t)i * w * h * 3 : NULL),
          "encode %d: %s", i, nn_last_error());
    codec_set_frame_rate(s[i], 10, 1);
  }
  codec_reference_free(ref);
  g_free(pic);
  return s;
}

static void free_video(uint8_t **s, int n) {
  for (int i = 0; i < n; i++) free(s[i]);
  g_free(s);
}

static GstBuffer *wrap_frame(const uint8_t *d, size_t n, int i) {
  GstBuffer *b = wrap(d, n, (GstClockTime)i * GST_SECOND / 10);
  GST_BUFFER_DURATION(b) = GST_SECOND / 10;
  codec_header h;
  if (codec_parse_header(d, n, &h) && h.predicted) GST_BUFFER_FLAG_SET(b, GST_BUFFER_FLAG_DELTA_UNIT);
  return b;
}

static bool frame_equals(GstBuffer *b, const uint8_t *rgb, int w, int h) {
  GstVideoInfo vi;
  gst_video_info_set_format(&vi, GST_VIDEO_FORMAT_RGB, w, h);
  GstVideoFrame vf;
  if (!gst_video_frame_map(&vf, &vi, b, GST_MAP_READ)) return false;
  bool same = true;
  for (int y = 0; y < h && same; y++)
    same = !memcmp((uint8_t *)GST_VIDEO_FRAME_PLANE_DATA(&vf, 0) + (size_t)y * GST_VIDEO_FRAME_PLANE_STRIDE(&vf, 0),
                   rgb + (size_t)y * w * 3, (size_t)w * 3);
  gst_video_frame_unmap(&vf);
  return same;
}

TEST(encoder_key_frames_every_key_int_max_and_on_request_and_reports_latency) {
  char *model = make_model(8, NULL);
  gchar *launch = g_strdup_printf("e2ecodecenc model=%s key-int-max=3", model);
  GstHarness *hs = gst_harness_new_parse(launch);
  g_free(launch);
  int w = 64, h = 48;
  gst_harness_set_src_caps_str(hs, "video/x-raw,format=RGB,width=64,height=48,framerate=10/1");
  uint8_t *pic = picture(w, h, 0);
  bool want_key[8] = {true, false, false, true, false, true, false, false};
  for (int i = 0; i < 8; i++) {
    if (i == 5) /* an application downstream asks for a key frame now */
      gst_harness_push_upstream_event(hs, gst_video_event_new_upstream_force_key_unit(GST_CLOCK_TIME_NONE, FALSE, 1));
    gst_harness_push(hs, frame_buffer(pic, w, h, GST_VIDEO_FORMAT_RGB, (GstClockTime)i * GST_SECOND / 10));
    GstBuffer *b = gst_harness_pull(hs);
    CHECK(b && GST_BUFFER_FLAG_IS_SET(b, GST_BUFFER_FLAG_DELTA_UNIT) != want_key[i], "frame %d: key %d", i, want_key[i]);
    if (b) gst_buffer_unref(b);
  }
  GstQuery *q = gst_query_new_latency();
  GstElement *enc = gst_harness_find_element(hs, "e2ecodecenc");
  GstClockTime min = 0, max = 0;
  gboolean live = FALSE;
  GstPad *src = gst_element_get_static_pad(enc, "src");
  CHECK(gst_pad_query(src, q), "latency query answered");
  gst_object_unref(src);
  gst_query_parse_latency(q, &live, &min, &max);
  CHECK(min > 0 && min < 10 * GST_SECOND, "the encoder reports its coding time as latency (%" GST_TIME_FORMAT ")", GST_TIME_ARGS(min));
  gst_query_unref(q);
  gst_object_unref(enc);
  g_free(pic);
  gst_harness_teardown(hs);
  unlink(model);
  g_free(model);
}

TEST(decoder_plays_predicted_pictures_and_warns_once_and_waits_for_an_intra_one_after_a_loss) {
  codec_model ref;
  char *model = make_model(9, &ref);
  int n = 8, w = 64, h = 64;
  size_t lens[8];
  uint8_t *recon = g_malloc((size_t)n * w * h * 3);
  uint8_t **s = coded_video(&ref, n, w, h, 4, lens, recon);
  GstBus *bus;
  GstHarness *hs = decoder_harness(model, "", &bus);
  for (int i = 0; i < n; i++)
    if (i != 1) CHECK(gst_harness_push(hs, wrap_frame(s[i], lens[i], i)) == GST_FLOW_OK, "push %d", i); /* picture 1 lost */
  /* 0 shows; 2 and 3 have lost their reference; 4 (intra) onwards show again */
  int shown[] = {0, 4, 5, 6, 7};
  CHECK(gst_harness_buffers_in_queue(hs) == 5, "5 pictures out (%u)", gst_harness_buffers_in_queue(hs));
  for (int k = 0; k < 5 && gst_harness_buffers_in_queue(hs); k++) {
    GstBuffer *b = gst_harness_pull(hs);
    CHECK(GST_BUFFER_PTS(b) == (GstClockTime)shown[k] * GST_SECOND / 10 && frame_equals(b, recon + (size_t)shown[k] * w * h * 3, w, h),
          "picture %d is the encoder's reconstruction", shown[k]);
    gst_buffer_unref(b);
  }
  int warnings = 0, errors = 0;
  for (GstMessage *m; (m = gst_bus_pop_filtered(bus, GST_MESSAGE_ERROR | GST_MESSAGE_WARNING)); gst_message_unref(m))
    warnings += GST_MESSAGE_TYPE(m) == GST_MESSAGE_WARNING, errors += GST_MESSAGE_TYPE(m) == GST_MESSAGE_ERROR;
  CHECK(warnings == 1 && errors == 0, "a lost picture: one warning (%d), no error (%d); the pictures that need it are "
        "dropped until the next intra one", warnings, errors);
  gst_object_unref(bus);
  gst_harness_teardown(hs);
  free_video(s, n);
  g_free(recon);
  codec_free(&ref);
  unlink(model);
  g_free(model);
}

TEST(decoder_does_not_show_pictures_before_the_segment_but_keeps_their_chain) {
  codec_model ref;
  char *model = make_model(10, &ref);
  int n = 8, w = 64, h = 64;
  size_t lens[8];
  uint8_t *recon = g_malloc((size_t)n * w * h * 3);
  uint8_t **s = coded_video(&ref, n, w, h, 100, lens, recon); /* one intra picture, then predicted ones */
  GstBus *bus;
  GstHarness *hs = decoder_harness(model, "", &bus);
  /* a seek's segment: it starts at picture 5; the stream starts at the intra picture before it */
  GstSegment seg;
  gst_segment_init(&seg, GST_FORMAT_TIME);
  seg.start = seg.time = 5 * GST_SECOND / 10;
  gst_harness_push_event(hs, gst_event_new_segment(&seg));
  for (int i = 0; i < n; i++) gst_harness_push(hs, wrap_frame(s[i], lens[i], i));
  CHECK(gst_harness_buffers_in_queue(hs) == 3, "pictures 5, 6 and 7 come out (%u)", gst_harness_buffers_in_queue(hs));
  for (int i = 5; i < n && gst_harness_buffers_in_queue(hs); i++) {
    GstBuffer *b = gst_harness_pull(hs);
    CHECK(GST_BUFFER_PTS(b) == (GstClockTime)i * GST_SECOND / 10 && frame_equals(b, recon + (size_t)i * w * h * 3, w, h),
          "picture %d decoded exactly through the pictures before it", i);
    gst_buffer_unref(b);
  }
  GstMessage *m = gst_bus_pop_filtered(bus, GST_MESSAGE_QOS | GST_MESSAGE_WARNING);
  CHECK(!m, "the pictures before the segment are not dropped frames (no QoS message)");
  if (m) gst_message_unref(m);
  gst_object_unref(bus);
  gst_harness_teardown(hs);
  free_video(s, n);
  g_free(recon);
  codec_free(&ref);
  unlink(model);
  g_free(model);
}

/* The first picture that reaches the decoder (after a reset), and how many do. */
typedef struct {
  GstClockTime first_pts;
  gboolean first_is_delta, first_is_discont;
  int count;
} arrivals;

static GstPadProbeReturn count_arrivals(GstPad *pad, GstPadProbeInfo *info, gpointer data) {
  arrivals *a = data;
  GstBuffer *b = GST_PAD_PROBE_INFO_BUFFER(info);
  if (a->count++ == 0) {
    a->first_pts = GST_BUFFER_PTS(b);
    a->first_is_delta = GST_BUFFER_FLAG_IS_SET(b, GST_BUFFER_FLAG_DELTA_UNIT);
    a->first_is_discont = GST_BUFFER_FLAG_IS_SET(b, GST_BUFFER_FLAG_DISCONT);
  }
  return GST_PAD_PROBE_OK;
}

/* The file behind a pipeline in pull mode: exact duration, and an accurate seek starts at the intra picture
 * before its target and shows the target first. */
TEST(parser_knows_the_duration_and_seeks_from_the_intra_picture_before) {
  codec_model ref;
  char *model = make_model(11, &ref);
  int n = 12, w = 64, h = 64;
  size_t lens[12];
  uint8_t *recon = g_malloc((size_t)n * w * h * 3);
  uint8_t **s = coded_video(&ref, n, w, h, 4, lens, recon);
  gchar *path = g_strdup_printf("/tmp/e2e-codec-video-%d.e2el", getpid());
  FILE *f = fopen(path, "wb");
  for (int i = 0; i < n; i++) fwrite(s[i], 1, lens[i], f);
  fclose(f);
  gchar *launch = g_strdup_printf("filesrc location=%s ! e2ecodecparse ! e2ecodecdec name=dec model=%s ! appsink name=out sync=false", path, model);
  GstElement *p = gst_parse_launch(launch, NULL);
  GstElement *out = gst_bin_get_by_name(GST_BIN(p), "out");
  gst_element_set_state(p, GST_STATE_PAUSED);
  gst_element_get_state(p, NULL, NULL, 10 * GST_SECOND);
  arrivals seen = {0};
  GstElement *dec = gst_bin_get_by_name(GST_BIN(p), "dec");
  GstPad *dec_sink = dec ? gst_element_get_static_pad(dec, "sink") : NULL;
  CHECK(dec_sink, "the decoder's sink pad");
  gint64 dur = -1;
  CHECK(gst_element_query_duration(p, GST_FORMAT_TIME, &dur) && dur == (gint64)n * GST_SECOND / 10,
        "duration %" GST_TIME_FORMAT " for %d pictures at 10 fps", GST_TIME_ARGS(dur), n);
  /* picture 10 (1.0-1.1 s) is predicted from 9 and 8; picture 8 is intra */
  if (dec_sink) gst_pad_add_probe(dec_sink, GST_PAD_PROBE_TYPE_BUFFER, count_arrivals, &seen, NULL);
  CHECK(gst_element_seek_simple(p, GST_FORMAT_TIME, GST_SEEK_FLAG_FLUSH | GST_SEEK_FLAG_ACCURATE, GST_SECOND * 105 / 100), "seek");
  gst_element_get_state(p, NULL, NULL, 10 * GST_SECOND);
  gst_element_set_state(p, GST_STATE_PLAYING);
  GstSample *first = NULL;
  g_signal_emit_by_name(out, "pull-sample", &first);
  CHECK(first, "a picture after the seek");
  if (first) {
    GstBuffer *b = gst_sample_get_buffer(first);
    /* GstVideoDecoder clips its start to the segment's */
    CHECK(GST_BUFFER_PTS(b) == GST_SECOND * 105 / 100 && frame_equals(b, recon + (size_t)10 * w * h * 3, w, h),
          "the first shown is picture 10 (pts %" GST_TIME_FORMAT "), exactly", GST_TIME_ARGS(GST_BUFFER_PTS(b)));
    gst_sample_unref(first);
  }
  int rest = 0;
  for (GstSample *x; (g_signal_emit_by_name(out, "pull-sample", &x), x); rest++) gst_sample_unref(x);
  CHECK(rest == 1, "then picture 11, and the end (%d more)", rest);
  CHECK(seen.count == 4 && seen.first_pts == GST_SECOND * 8 / 10 && !seen.first_is_delta && seen.first_is_discont,
        "the parser started at intra picture 8, marked DISCONT (first %" GST_TIME_FORMAT ", discont %d, %d pictures in all)",
        GST_TIME_ARGS(seen.first_pts), seen.first_is_discont, seen.count);
  if (dec_sink) gst_object_unref(dec_sink);
  if (dec) gst_object_unref(dec);
  gst_element_set_state(p, GST_STATE_NULL);
  gst_object_unref(out);
  gst_object_unref(p);
  g_free(launch);
  unlink(path);
  g_free(path);
  free_video(s, n);
  g_free(recon);
  codec_free(&ref);
  unlink(model);
  g_free(model);
}

/* bitrate: the level follows the target at key frames (far too low a target drives it to 1, far too high to
 * 5), and the per-frame message reports the rate achieved beside the target. */
TEST(encoder_bitrate_steers_the_level_at_key_frames_and_reports_the_rate) {
  char *model = make_model(12, NULL);
  const struct { guint kbps; int want; } cases[] = {{1, 1}, {1000000, 5}};
  for (int k = 0; k < 2; k++) {
    gchar *launch = g_strdup_printf("e2ecodecenc model=%s key-int-max=2 quality=3 message=true bitrate=%u", model, cases[k].kbps);
    GstHarness *hs = gst_harness_new_parse(launch);
    g_free(launch);
    GstElement *enc = gst_harness_find_element(hs, "e2ecodecenc");
    GstBus *bus = gst_bus_new();
    gst_element_set_bus(enc, bus);
    int w = 64, h = 48, last = 0;
    gst_harness_set_src_caps_str(hs, "video/x-raw,format=RGB,width=64,height=48,framerate=10/1");
    for (int i = 0; i < 12; i++) {
      uint8_t *pic = picture(w, h, i); /* a moving checkerboard: every block changes */
      gst_harness_push(hs, frame_buffer(pic, w, h, GST_VIDEO_FORMAT_RGB, (GstClockTime)i * GST_SECOND / 10));
      g_free(pic);
      GstBuffer *b = gst_harness_pull(hs);
      GstMapInfo m;
      codec_header hd;
      if (b && gst_buffer_map(b, &m, GST_MAP_READ)) {
        if (codec_parse_header(m.data, m.size, &hd)) last = hd.quality;
        gst_buffer_unmap(b, &m);
      }
      if (b) gst_buffer_unref(b);
    }
    CHECK(last == cases[k].want, "bitrate %u kbit/s: level %d after 6 groups (want %d)", cases[k].kbps, last, cases[k].want);
    GstMessage *msg = gst_bus_pop_filtered(bus, GST_MESSAGE_ELEMENT);
    double target = 0, kbps = 0;
    CHECK(msg && gst_structure_get_double(gst_message_get_structure(msg), "target-kbps", &target) &&
              gst_structure_get_double(gst_message_get_structure(msg), "kbps", &kbps) && target == cases[k].kbps && kbps > 0,
          "the frame message has target-kbps %g and kbps %g", target, kbps);
    if (msg) gst_message_unref(msg);
    gst_object_unref(bus);
    gst_object_unref(enc);
    gst_harness_teardown(hs);
  }
  unlink(model);
  g_free(model);
}

/* Regions of interest on the frames (GstVideoRegionOfInterestMeta) reach the encoder's choice of blocks:
 * weighted far up inside and far down outside, the predicted pictures change; weighted 1 and 1, they are
 * the pictures coded without any region. */
static int last_sequence_keys; /* the key (non-delta) buffers encode_sequence pulled */

static gsize encode_sequence(const char *model, const char *props, gboolean regions, GByteArray *out) {
  last_sequence_keys = 0;
  gchar *launch = g_strdup_printf("e2ecodecenc model=%s key-int-max=0 %s", model, props);
  GstHarness *hs = gst_harness_new_parse(launch);
  g_free(launch);
  int w = 64, h = 64;
  gst_harness_set_src_caps_str(hs, "video/x-raw,format=RGB,width=64,height=64,framerate=10/1");
  for (int i = 0; i < 6; i++) {
    uint8_t *pic = picture(w, h, i);
    GstBuffer *b = frame_buffer(pic, w, h, GST_VIDEO_FORMAT_RGB, (GstClockTime)i * GST_SECOND / 10);
    if (regions) { /* one region, one overlapping it, one far outside the frame */
      gst_buffer_add_video_region_of_interest_meta(b, "person", 0, 0, 32, 32);
      gst_buffer_add_video_region_of_interest_meta(b, "person", 16, 16, 48, 48);
      gst_buffer_add_video_region_of_interest_meta(b, "person", 5000, 4000, 100000, 100000);
    }
    gst_harness_push(hs, b);
    g_free(pic);
    GstBuffer *o = gst_harness_pull(hs);
    GstMapInfo m;
    if (o && !GST_BUFFER_FLAG_IS_SET(o, GST_BUFFER_FLAG_DELTA_UNIT)) last_sequence_keys++;
    if (o && gst_buffer_map(o, &m, GST_MAP_READ)) {
      g_byte_array_append(out, m.data, (guint)m.size);
      gst_buffer_unmap(o, &m);
    }
    if (o) gst_buffer_unref(o);
  }
  gst_harness_teardown(hs);
  return out->len;
}

TEST(encoder_reads_regions_of_interest_into_its_choice_of_blocks) {
  codec_model c;
  char *model = make_model(13, &c);
  nn_fill_(c.gain_enc, 8.0f); /* latents that are not all zero: blocks whose coding changes the picture */
  CHECK(codec_save(&c, model, NULL, 0), "save: %s", nn_last_error());
  codec_free(&c);
  GByteArray *plain = g_byte_array_new(), *neutral = g_byte_array_new(), *weighted = g_byte_array_new();
  encode_sequence(model, "", FALSE, plain);
  encode_sequence(model, "roi-weight=1 background-weight=1", TRUE, neutral);
  encode_sequence(model, "roi-weight=64 background-weight=0.015625", TRUE, weighted);
  CHECK(plain->len > 0 && plain->len == neutral->len && !memcmp(plain->data, neutral->data, plain->len),
        "weights of 1: the regions change nothing (%u vs %u bytes)", plain->len, neutral->len);
  CHECK(weighted->len != plain->len || memcmp(plain->data, weighted->data, plain->len) != 0,
        "weighted regions change the predicted pictures (%u vs %u bytes)", weighted->len, plain->len);
  g_byte_array_unref(plain), g_byte_array_unref(neutral), g_byte_array_unref(weighted);
  unlink(model);
  g_free(model);
}

static gsize be32(const guint8 *p) { return (gsize)p[0] << 24 | (gsize)p[1] << 16 | (gsize)p[2] << 8 | p[3]; }

/* Walks a stream of pictures: how many, how many carry regions, and whether each decodes (in order, with a
 * reference, as e2ecodecdec does) with the model in path. */
static int decode_pictures(const char *path, const GByteArray *st, int w, int h, int *with_regions, gboolean *all_decode) {
  codec_model c = {0}; /* codec_load replaces a model: it frees what c held */
  int n = 0;
  *with_regions = 0;
  *all_decode = codec_load(&c, path);
  codec_reference *ref = codec_reference_new();
  uint8_t *rgb = g_malloc((gsize)w * h * 3);
  for (gsize at = 0; *all_decode && at + CODEC_HEADER_BYTES <= st->len; n++) {
    gsize len = CODEC_HEADER_BYTES + be32(st->data + at + 20) + be32(st->data + at + 24); /* the header's sizes */
    codec_header hd;
    *all_decode = len <= st->len - at && codec_parse_header(st->data + at, len, &hd) &&
                  codec_decompress_video(&c, NULL, st->data + at, len, rgb, w, h, ref);
    *with_regions += *all_decode && hd.regions;
    at += len;
  }
  codec_reference_free(ref);
  g_free(rgb);
  codec_free(&c);
  return n;
}

TEST(encoder_codes_regions_of_interest_at_roi_quality) {
  codec_model c;
  char *model = make_model(14, &c);
  nn_fill_(c.gain_enc, 8.0f);
  CHECK(codec_save(&c, model, NULL, 0), "save: %s", nn_last_error());
  codec_free(&c);
  GByteArray *plain = g_byte_array_new(), *none = g_byte_array_new(), *roi = g_byte_array_new();
  encode_sequence(model, "quality=2", TRUE, plain);
  encode_sequence(model, "quality=2 roi-quality=5", FALSE, none);
  encode_sequence(model, "quality=2 roi-quality=5", TRUE, roi);
  CHECK(last_sequence_keys == 1, "one key frame (the intra picture with regions), %d found", last_sequence_keys);
  int regions = 0;
  gboolean decoded = FALSE;
  CHECK(decode_pictures(model, plain, 64, 64, &regions, &decoded) == 6 && decoded && regions == 0,
        "without roi-quality: 6 plain pictures (%d with regions)", regions);
  CHECK(none->len == plain->len && !memcmp(none->data, plain->data, plain->len),
        "roi-quality on frames without regions: the same stream as without it");
  CHECK(decode_pictures(model, roi, 64, 64, &regions, &decoded) == 6 && decoded && regions == 6,
        "with roi-quality: all 6 pictures carry their regions and decode (%d with regions, %s)", regions,
        decoded ? "decoded" : nn_last_error());
  CHECK(roi->len != plain->len || memcmp(roi->data, plain->data, roi->len) != 0, "and the stream differs from the plain one");
  g_byte_array_unref(plain), g_byte_array_unref(none), g_byte_array_unref(roi);
  unlink(model);
  g_free(model);
}

/* Runs "launch" (an encoder and a decoder) over three 64x64 frames: how many frames came out, and the
 * decoder's model afterwards. */
static int run_profile_pipeline(const char *launch, gchar **dec_model) {
  GstHarness *hs = gst_harness_new_parse(launch);
  GstElement *dec = gst_harness_find_element(hs, "e2ecodecdec");
  GstBus *bus = gst_bus_new();
  gst_element_set_bus(dec, bus);
  gst_harness_set_src_caps_str(hs, "video/x-raw,format=RGB,width=64,height=64,framerate=10/1");
  int out = 0;
  for (int i = 0; i < 3; i++) {
    uint8_t *pic = picture(64, 64, i);
    gst_harness_push(hs, frame_buffer(pic, 64, 64, GST_VIDEO_FORMAT_RGB, (GstClockTime)i * GST_SECOND / 10));
    g_free(pic);
  }
  gst_harness_push_event(hs, gst_event_new_eos());
  for (GstBuffer *b; (b = gst_harness_try_pull(hs)); out++) gst_buffer_unref(b);
  g_object_get(dec, "model", dec_model, NULL);
  gst_object_unref(dec);
  gst_object_unref(bus);
  gst_harness_teardown(hs);
  return out;
}

TEST(encoder_profile_live_and_decoder_picks_the_shipped_model_a_stream_names) {
  gchar *dir = g_dir_make_tmp("e2e-codec-models-XXXXXX", NULL), *sub = g_build_filename(dir, "codec", NULL);
  CHECK(dir && g_mkdir(sub, 0700) == 0, "a models folder");
  char *a = make_model(21, NULL), *b = make_model(22, NULL);
  gchar *quality = g_build_filename(sub, "e2ecodec.safetensors", NULL), *live = g_build_filename(sub, "e2ecodec-live.safetensors", NULL);
  CHECK(rename(a, quality) == 0 && rename(b, live) == 0, "two shipped models");
  g_setenv("E2E_MODEL_DIR", dir, TRUE);
  gchar *used = NULL;
  int n = run_profile_pipeline("e2ecodecenc profile=live ! e2ecodecdec", &used);
  CHECK(n == 3 && used && g_str_has_suffix(used, "e2ecodec-live.safetensors"),
        "a live-profile stream: the decoder switched to the live model (%s) and decoded %d of 3 frames", used, n);
  g_free(used);
  n = run_profile_pipeline("e2ecodecenc ! e2ecodecdec", &used);
  CHECK(n == 3 && used && g_str_has_suffix(used, "codec/e2ecodec.safetensors"), "the default profile: %d frames, %s", n, used);
  g_free(used);
  gchar *launch = g_strdup_printf("e2ecodecenc profile=live ! e2ecodecdec model=%s", quality);
  n = run_profile_pipeline(launch, &used);
  CHECK(n == 0 && !g_strcmp0(used, quality), "a decoder told its model keeps it and refuses the stream (%d frames)", n);
  g_free(used), g_free(launch);
  /* the preview bin carries the encoder's profile property (an enum copied from it) */
  GstElement *bin = gst_element_factory_make("e2ecodec", NULL);
  gint profile = -1;
  if (bin) {
    gst_util_set_object_arg(G_OBJECT(bin), "profile", "live");
    g_object_get(bin, "profile", &profile, NULL);
    gst_object_unref(bin);
  }
  CHECK(profile == 1, "the bin's profile property reads back 'live' (%d)", profile);
  g_unsetenv("E2E_MODEL_DIR");
  unlink(quality), unlink(live), g_rmdir(sub), g_rmdir(dir);
  g_free(quality), g_free(live), g_free(sub), g_free(dir), g_free(a), g_free(b);
}
