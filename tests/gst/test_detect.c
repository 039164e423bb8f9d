/* e2edetect / e2eoverlay through GstHarness.
 *
 * The "oracle" model has hand-set weights whose output is known: every layer
 * passes the red channel through its centre tap, so the stride-8 heatmap is
 * hot exactly where the letterboxed input is bright at a sampling point
 * (8i, 8j), and the box head is constant (offset 0.5 cell, 32 x 32 px). A
 * bright dot drawn on a frame must therefore come back as one box at a known
 * place in original frame coordinates, whatever the frame size. */
#include <gst/check/gstharness.h>
#include <gst/video/video.h>
#include <unistd.h>

#include "e2e/detect.h"
#include "frames.h"
#include "../harness.h"

#define ORACLE_SIZE 128

__attribute__((constructor)) static void init_gst(void) {
  gst_init(NULL, NULL);
  g_setenv("GST_PLUGIN_PATH", E2E_PLUGIN_BUILD_DIR, TRUE);
  gst_registry_scan_path(gst_registry_get(), E2E_PLUGIN_BUILD_DIR);
}

static void set_center_tap(nn_tensor *w, int oc, int ic, float v) {
  int64_t ks = w->shape[2], in = w->shape[1];
  nn_f32(w)[((oc * in + ic) * ks + ks / 2) * ks + ks / 2] = v;
}

/* Writes the oracle model to a temporary file; label names the one class. */
static char *make_oracle(const char *label) {
  det_config cfg = det_config_default(1, ORACLE_SIZE);
  snprintf(cfg.labels[0], DET_LABEL_LEN, "%s", label);
  detector d;
  det_init(&d, &cfg, 1);
  for (int i = 0; i < d.p.n; i++) {
    const char *n = d.p.names[i];
    if (strstr(n, "running_var") || (strstr(n, "bn") && strstr(n, ".weight"))) nn_fill_(d.p.t[i], 1.0f);
    else nn_fill_(d.p.t[i], 0.0f);
  }
  for (int i = 0; i < 5; i++) set_center_tap(d.conv[i].weight, 0, 0, 1.0f); /* up to c4; conv5/6 stay zero */
  set_center_tap(d.lateral.weight, 0, 0, 1.0f);
  set_center_tap(d.fuse.weight, 0, 0, 1.0f);
  set_center_tap(d.head.weight, 0, 0, 10.0f);
  float head_bias[5] = {-10.0f, 0.5f, 0.5f, logf(4.0f), logf(4.0f)};
  memcpy(nn_f32(d.head.bias), head_bias, sizeof head_bias);
  char *path = g_strdup_printf("/tmp/e2e-oracle-%s-%d.safetensors", label, getpid());
  CHECK(det_save(&d, path, NULL, 0), "save oracle");
  det_free(&d);
  return path;
}

/* A black RGB frame (GStreamer's row stride) with a white disc of radius r at (cx, cy). */
static GstBuffer *dot_frame_rgb(int w, int h, double cx, double cy, double r) {
  GstVideoInfo info;
  gst_video_info_set_format(&info, GST_VIDEO_FORMAT_RGB, w, h);
  GstBuffer *b = gst_buffer_new_allocate(NULL, GST_VIDEO_INFO_SIZE(&info), NULL);
  GstMapInfo m;
  gst_buffer_map(b, &m, GST_MAP_WRITE);
  int stride = GST_VIDEO_INFO_PLANE_STRIDE(&info, 0);
  memset(m.data, 0, m.size);
  for (int y = 0; y < h; y++)
    for (int x = 0; x < w; x++)
      if ((x - cx) * (x - cx) + (y - cy) * (y - cy) <= r * r) memset(m.data + (size_t)y * stride + x * 3, 255, 3);
  gst_buffer_unmap(b, &m);
  return b;
}


/* Where the oracle must put the box for a dot at network sampling point (gx, gy)
 * (in 8 px units), and the frame point of that sampling point. */
typedef struct { double dot_x, dot_y, box_cx, box_cy, box_w, r; } expect;

static expect plan(int w, int h, int gx, int gy) {
  det_letterbox lb = det_letterbox_for(w, h, ORACLE_SIZE);
  int nw = (int)lrintf(w * lb.scale), nh = (int)lrintf(h * lb.scale);
  double ox = (ORACLE_SIZE - nw) / 2, oy = (ORACLE_SIZE - nh) / 2;
  double sx = (double)nw / w, sy = (double)nh / h, s = fmin(sx, sy);
  expect e;
  e.dot_x = (8.0 * gx - ox + 0.5) / sx - 0.5;
  e.dot_y = (8.0 * gy - oy + 0.5) / sy - 0.5;
  e.box_cx = (8.0 * gx + 4 - ox) / s;
  e.box_cy = (8.0 * gy + 4 - oy) / s;
  e.box_w = 32.0 / s;
  e.r = fmax(3.0 / s, 2.0); /* at least a few pixels, or upscaling blurs it below threshold */
  return e;
}

static GstHarness *detect_harness(const char *model, const char *fmt, int w, int h, const char *extra) {
  gchar *desc = g_strdup_printf("e2edetect model=%s threshold=0.5 num-threads=1 %s", model, extra ? extra : "");
  GstHarness *hh = gst_harness_new_parse(desc);
  g_free(desc);
  gchar *caps = g_strdup_printf("video/x-raw,format=%s,width=%d,height=%d,framerate=30/1", fmt, w, h);
  gst_harness_set_src_caps_str(hh, caps);
  g_free(caps);
  return hh;
}

/* The e2edetect inside a parsed harness (which wraps it in a bin); a new reference. */
static GstElement *detect_element(GstHarness *hh) { return gst_harness_find_element(hh, "e2edetect"); }

/* A counter of the element's "stats" (G_MAXUINT64 when missing). */
static guint64 stat_of(GstHarness *hh, const char *field) {
  GstStructure *st = NULL;
  GstElement *det = detect_element(hh);
  g_object_get(det, "stats", &st, NULL);
  gst_object_unref(det);
  guint64 v = G_MAXUINT64;
  if (st) gst_structure_get_uint64(st, field, &v), gst_structure_free(st);
  return v;
}

static int count_rois(GstBuffer *b, GstVideoRegionOfInterestMeta **first) {
  int n = 0;
  gpointer st = NULL;
  GstMeta *m;
  while ((m = gst_buffer_iterate_meta_filtered(b, &st, GST_VIDEO_REGION_OF_INTEREST_META_API_TYPE))) {
    if (!n && first) *first = (GstVideoRegionOfInterestMeta *)m;
    n++;
  }
  return n;
}

static GstBuffer *stamp(GstBuffer *b, int i) {
  GST_BUFFER_PTS(b) = (GstClockTime)i * GST_SECOND / 30;
  GST_BUFFER_DTS(b) = GST_CLOCK_TIME_NONE;
  GST_BUFFER_DURATION(b) = GST_SECOND / 30;
  return b;
}

TEST(detect_negotiates_every_format_and_passes_video_through) {
  char *model = make_oracle("dot");
  const char *fmts[] = {"RGB", "BGR", "RGBx", "BGRx", "I420", "NV12"};
  int w = 160, h = 120;
  expect e = plan(w, h, 7, 9);
  for (size_t i = 0; i < G_N_ELEMENTS(fmts); i++) {
    GstHarness *hh = detect_harness(model, fmts[i], w, h, NULL);
    GstBuffer *rgb = dot_frame_rgb(w, h, e.dot_x, e.dot_y, e.r);
    GstBuffer *in = stamp(test_frame_convert(rgb, w, h, gst_video_format_from_string(fmts[i])), 5);
    GstBuffer *copy = gst_buffer_copy_deep(in);
    GstBuffer *out = gst_harness_push_and_pull(hh, in);
    CHECK(out != NULL, "%s: no output", fmts[i]);
    if (out) {
      GstMapInfo a, b;
      gst_buffer_map(out, &a, GST_MAP_READ);
      gst_buffer_map(copy, &b, GST_MAP_READ);
      CHECK(a.size == b.size && memcmp(a.data, b.data, a.size) == 0, "%s: video changed", fmts[i]);
      gst_buffer_unmap(out, &a);
      gst_buffer_unmap(copy, &b);
      CHECK(GST_BUFFER_PTS(out) == 5 * GST_SECOND / 30 && GST_BUFFER_DURATION(out) == GST_SECOND / 30 &&
                !GST_BUFFER_DTS_IS_VALID(out), "%s: timestamps changed", fmts[i]);
      GstVideoRegionOfInterestMeta *roi = NULL;
      int n = count_rois(out, &roi);
      CHECK(n == 1, "%s: %d objects, expected 1", fmts[i], n);
      if (roi) {
        GstStructure *s = gst_video_region_of_interest_meta_get_param(roi, "detection");
        const char *label = s ? gst_structure_get_string(s, "label") : NULL;
        int cls = -1;
        double conf = 0;
        CHECK(s && label && !strcmp(label, "dot") && gst_structure_get_int(s, "class-id", &cls) && cls == 0 &&
                  gst_structure_get_double(s, "confidence", &conf) && conf > 0.9, "%s: detection structure", fmts[i]);
        CHECK(fabs(roi->x + roi->w / 2.0 - e.box_cx) < 2.5 && fabs(roi->y + roi->h / 2.0 - e.box_cy) < 2.5,
              "%s: box centre (%.1f, %.1f), expected (%.1f, %.1f)", fmts[i], roi->x + roi->w / 2.0,
              roi->y + roi->h / 2.0, e.box_cx, e.box_cy);
      }
      gst_buffer_unref(out);
    }
    gst_buffer_unref(copy);
    gst_buffer_unref(rgb);
    gst_harness_teardown(hh);
  }
  unlink(model);
  g_free(model);
}

TEST(detect_boxes_map_back_through_letterboxing) {
  char *model = make_oracle("dot");
  struct { int w, h, gx, gy; } cases[] = {{320, 96, 3, 7}, {96, 320, 6, 2}, {640, 480, 12, 8}, {61, 37, 5, 6}, {128, 128, 15, 15}};
  for (size_t i = 0; i < G_N_ELEMENTS(cases); i++) {
    int w = cases[i].w, h = cases[i].h;
    expect e = plan(w, h, cases[i].gx, cases[i].gy);
    GstHarness *hh = detect_harness(model, "RGB", w, h, NULL);
    GstBuffer *out = gst_harness_push_and_pull(hh, stamp(dot_frame_rgb(w, h, e.dot_x, e.dot_y, e.r), 0));
    GstVideoRegionOfInterestMeta *roi = NULL;
    int n = out ? count_rois(out, &roi) : -1;
    CHECK(n == 1, "%dx%d: %d objects", w, h, n);
    if (roi) {
      /* rounding to whole pixels and clipping at the frame edge */
      double tol = 1.5 + 0.5 / fmin((double)ORACLE_SIZE / w, (double)ORACLE_SIZE / h);
      double cx = roi->x + roi->w / 2.0, cy = roi->y + roi->h / 2.0;
      bool clipped = roi->x == 0 || roi->y == 0 || roi->x + roi->w >= (guint)w || roi->y + roi->h >= (guint)h;
      CHECK(clipped || (fabs(cx - e.box_cx) <= tol && fabs(cy - e.box_cy) <= tol && fabs(roi->w - e.box_w) <= 2 * tol),
            "%dx%d: box (%u,%u %ux%u), expected centre (%.1f, %.1f) size %.1f", w, h, roi->x, roi->y, roi->w, roi->h,
            e.box_cx, e.box_cy, e.box_w);
      CHECK(roi->x + roi->w <= (guint)w && roi->y + roi->h <= (guint)h, "box inside the frame");
    }
    if (out) gst_buffer_unref(out);
    gst_harness_teardown(hh);
  }
  unlink(model);
  g_free(model);
}

static int detections_with(const char *model, const char *props) {
  expect e = plan(160, 120, 7, 9);
  GstHarness *hh = detect_harness(model, "RGB", 160, 120, props);
  GstBuffer *out = gst_harness_push_and_pull(hh, stamp(dot_frame_rgb(160, 120, e.dot_x, e.dot_y, e.r), 0));
  int n = out ? count_rois(out, NULL) : -1;
  if (out) gst_buffer_unref(out);
  gst_harness_teardown(hh);
  return n;
}

TEST(detect_threshold_and_object_class_filter) {
  char *model = make_oracle("dot");
  CHECK(detections_with(model, "threshold=0.5") == 1, "threshold 0.5");
  CHECK(detections_with(model, "threshold=0.99999") == 0, "threshold above the confidence");
  CHECK(detections_with(model, "object-class=person") == 0, "other class filtered out");
  CHECK(detections_with(model, "object-class=dot") == 1, "own class kept");
  CHECK(detections_with(model, "object-class=\"person,dot\"") == 1, "class list");
  unlink(model);
  g_free(model);
}

TEST(detect_interval_carries_results_marked_not_fresh) {
  char *model = make_oracle("dot");
  expect e = plan(160, 120, 7, 9);
  GstHarness *hh = detect_harness(model, "RGB", 160, 120, "interval=3");
  gboolean want[6] = {TRUE, FALSE, FALSE, TRUE, FALSE, FALSE};
  for (int i = 0; i < 6; i++) {
    GstBuffer *out = gst_harness_push_and_pull(hh, stamp(dot_frame_rgb(160, 120, e.dot_x, e.dot_y, e.r), i));
    GstVideoRegionOfInterestMeta *roi = NULL;
    CHECK(out && count_rois(out, &roi) == 1, "frame %d has the object", i);
    gboolean fresh = !want[i];
    if (roi) gst_structure_get_boolean(gst_video_region_of_interest_meta_get_param(roi, "detection"), "fresh", &fresh);
    CHECK(fresh == want[i], "frame %d fresh=%d", i, fresh);
    if (out) gst_buffer_unref(out);
  }
  guint64 frames = stat_of(hh, "frames"), inf = stat_of(hh, "inferences");
  CHECK(frames == 6, "frames");
  CHECK(inf == 2, "inferences %" G_GUINT64_FORMAT, inf);
  gst_harness_teardown(hh);
  unlink(model);
  g_free(model);
}

static const char *first_label(GstHarness *hh, int i) {
  expect e = plan(160, 120, 7, 9);
  static char label[64];
  label[0] = 0;
  GstBuffer *out = gst_harness_push_and_pull(hh, stamp(dot_frame_rgb(160, 120, e.dot_x, e.dot_y, e.r), i));
  GstVideoRegionOfInterestMeta *roi = NULL;
  if (out && count_rois(out, &roi) && roi) snprintf(label, sizeof label, "%s", g_quark_to_string(roi->roi_type));
  if (out) gst_buffer_unref(out);
  return label;
}

TEST(detect_model_swap_while_playing_and_bad_file_keeps_old) {
  char *m1 = make_oracle("dot"), *m2 = make_oracle("spot");
  GstHarness *hh = detect_harness(m1, "RGB", 160, 120, NULL);
  GstBus *bus = gst_bus_new();
  GstElement *det = detect_element(hh);
  gst_element_set_bus(det, bus);
  CHECK(!strcmp(first_label(hh, 0), "dot"), "first model");
  g_object_set(det, "model", m2, NULL);
  CHECK(!strcmp(first_label(hh, 1), "spot"), "swapped model in use");
  char bad[] = "/tmp/e2e-bad-XXXXXX";
  int fd = mkstemp(bad);
  CHECK(write(fd, "this is not a model", 19) == 19, "write");
  close(fd);
  g_object_set(det, "model", bad, NULL);
  CHECK(!strcmp(first_label(hh, 2), "spot"), "bad file keeps the old model");
  GstMessage *msg = gst_bus_pop_filtered(bus, GST_MESSAGE_WARNING);
  CHECK(msg != NULL, "a warning was posted");
  if (msg) {
    GError *err = NULL;
    gchar *dbg = NULL;
    gst_message_parse_warning(msg, &err, &dbg);
    CHECK(strstr(err->message, bad) != NULL, "warning names the file: %s", err->message);
    g_error_free(err);
    g_free(dbg);
    gst_message_unref(msg);
  }
  gchar *cur = NULL;
  g_object_get(det, "model", &cur, NULL);
  CHECK(cur && !strcmp(cur, m2), "model property still names the model in use");
  g_free(cur);
  gst_element_set_bus(det, NULL);
  gst_object_unref(det);
  gst_object_unref(bus);
  gst_harness_teardown(hh);
  unlink(bad);
  unlink(m1);
  unlink(m2);
  g_free(m1);
  g_free(m2);
}

/* Elements given one model-name share one loaded copy: a model swapped into one reaches the other, and a
 * second element naming another file is told it shares the first one's. */
TEST(detect_model_name_shares_one_model_between_elements) {
  char *m1 = make_oracle("dot"), *m2 = make_oracle("spot"), *m3 = make_oracle("blob");
  GstHarness *a = detect_harness(m1, "RGB", 160, 120, "model-name=shared-oracle");
  GstBus *bus = gst_bus_new();
  GstElement *db = gst_object_ref_sink(gst_element_factory_make("e2edetect", NULL)), *da = detect_element(a);
  g_object_set(db, "model", m3, "model-name", "shared-oracle", "threshold", 0.5f, "num-threads", 1, NULL);
  gst_element_set_bus(db, bus); /* before it starts: the warning comes then */
  GstHarness *b = gst_harness_new_with_element(db, "sink", "src");
  gst_harness_set_src_caps_str(b, "video/x-raw,format=RGB,width=160,height=120,framerate=30/1");
  CHECK(!strcmp(first_label(a, 0), "dot") && !strcmp(first_label(b, 0), "dot"), "both run the first element's model");
  GstMessage *msg = gst_bus_pop_filtered(bus, GST_MESSAGE_WARNING);
  CHECK(msg != NULL, "the second element says it shares instead of loading its own file");
  if (msg) {
    GError *err = NULL;
    gst_message_parse_warning(msg, &err, NULL);
    CHECK(strstr(err->message, "shared-oracle") && strstr(err->message, m3), "names the slot and the file: %s", err->message);
    g_error_free(err);
    gst_message_unref(msg);
  }
  g_object_set(da, "model", m2, NULL);
  CHECK(!strcmp(first_label(a, 1), "spot") && !strcmp(first_label(b, 1), "spot"), "a swap into one reaches both");
  g_object_set(db, "num-threads", 2, NULL); /* its own budget, while playing */
  CHECK(!strcmp(first_label(b, 2), "spot"), "still detecting after a new thread budget");
  gst_element_set_bus(db, NULL);
  gst_object_unref(bus);
  gst_object_unref(da);
  gst_harness_teardown(a);
  gst_harness_teardown(b);
  gst_object_unref(db); /* the harness took its own reference */
  for (char **m = (char *[]){m1, m2, m3, NULL}; *m; m++) unlink(*m), g_free(*m);
}

/* gst-inspect shows the model an element will use, not "null": the shipped file's path, which exists. */
TEST(model_property_defaults_to_the_shipped_file) {
  const char *elements[] = {"e2edetect", "e2ecodecenc", "e2ecodecdec", "e2ecodec"};
  const char *files[] = {"detect/nanodet-coco.safetensors", "codec/e2ecodec.safetensors", "codec/e2ecodec.safetensors",
                         "codec/e2ecodec.safetensors"};
  for (int i = 0; i < 4; i++) {
    GstElement *e = gst_element_factory_make(elements[i], NULL);
    GParamSpec *ps = e ? g_object_class_find_property(G_OBJECT_GET_CLASS(e), "model") : NULL;
    gchar *path = NULL;
    if (e) g_object_get(e, "model", &path, NULL);
    const gchar *def = ps ? G_PARAM_SPEC_STRING(ps)->default_value : NULL;
    CHECK(path && def && !strcmp(path, def) && g_str_has_suffix(path, files[i]) && g_file_test(path, G_FILE_TEST_IS_REGULAR),
          "%s: model %s, default %s", elements[i], path ? path : "(null)", def ? def : "(null)");
    g_free(path);
    if (e) gst_object_unref(gst_object_ref_sink(e));
  }
}

/* A corrupt model refuses the state change with an error naming the file. */
static void expect_start_error(const char *model, const char *needle) {
  GstElement *p = gst_parse_launch("videotestsrc num-buffers=2 ! e2edetect name=d ! fakesink", NULL);
  GstElement *d = gst_bin_get_by_name(GST_BIN(p), "d");
  g_object_set(d, "model", model, NULL);
  gst_object_unref(d);
  GstStateChangeReturn r = gst_element_set_state(p, GST_STATE_PLAYING);
  GstBus *bus = gst_element_get_bus(p);
  GstMessage *msg = gst_bus_timed_pop_filtered(bus, 5 * GST_SECOND, GST_MESSAGE_ERROR | GST_MESSAGE_EOS);
  CHECK(r == GST_STATE_CHANGE_FAILURE || (msg && GST_MESSAGE_TYPE(msg) == GST_MESSAGE_ERROR), "%s: start must fail", model);
  if (msg && GST_MESSAGE_TYPE(msg) == GST_MESSAGE_ERROR) {
    GError *err = NULL;
    gchar *dbg = NULL;
    gst_message_parse_error(msg, &err, &dbg);
    CHECK(strstr(err->message, model) != NULL, "error names the file: %s", err->message);
    CHECK(dbg && strstr(dbg, needle) != NULL, "debug says why (%s): %s", needle, dbg ? dbg : "(none)");
    g_error_free(err);
    g_free(dbg);
  } else {
    CHECK(FALSE, "no error message for %s", model);
  }
  if (msg) gst_message_unref(msg);
  gst_object_unref(bus);
  gst_element_set_state(p, GST_STATE_NULL);
  gst_object_unref(p);
}

TEST(detect_corrupt_or_missing_model_is_an_error_not_a_crash) {
  char *good = make_oracle("dot");
  char trunc[] = "/tmp/e2e-trunc-XXXXXX";
  int fd = mkstemp(trunc);
  gchar *bytes = NULL;
  gsize len = 0;
  g_file_get_contents(good, &bytes, &len, NULL);
  CHECK(write(fd, bytes, len / 2) == (ssize_t)(len / 2), "write");
  close(fd);
  g_free(bytes);
  expect_start_error(trunc, "truncated");
  expect_start_error("/nonexistent/model.safetensors", "cannot open");
  unlink(trunc);
  unlink(good);
  g_free(good);
}

TEST(detect_json_lines_and_element_messages) {
  char *model = make_oracle("dot");
  char json[] = "/tmp/e2e-json-XXXXXX";
  close(mkstemp(json));
  gchar *props = g_strdup_printf("json-file=%s message=true", json);
  expect e = plan(160, 120, 7, 9);
  GstHarness *hh = detect_harness(model, "RGB", 160, 120, props);
  GstBus *bus = gst_bus_new();
  GstElement *det = detect_element(hh);
  gst_element_set_bus(det, bus);
  for (int i = 0; i < 3; i++) gst_buffer_unref(gst_harness_push_and_pull(hh, stamp(dot_frame_rgb(160, 120, e.dot_x, e.dot_y, e.r), i)));
  GstMessage *msg = gst_bus_pop_filtered(bus, GST_MESSAGE_ELEMENT);
  const GstStructure *s = msg ? gst_message_get_structure(msg) : NULL;
  CHECK(s && gst_structure_has_name(s, "e2edetect"), "element message");
  const GValue *objs = s ? gst_structure_get_value(s, "objects") : NULL;
  CHECK(objs && gst_value_list_get_size(objs) == 1, "one object in the message");
  if (msg) gst_message_unref(msg);
  gst_element_set_bus(det, NULL);
  gst_object_unref(det);
  gst_object_unref(bus);
  gst_harness_teardown(hh); /* closes the file */
  gchar *text = NULL;
  g_file_get_contents(json, &text, NULL, NULL);
  gchar **lines = text ? g_strsplit(text, "\n", -1) : NULL;
  CHECK(lines && g_strv_length(lines) == 4 && !*lines[3], "three JSON lines");
  CHECK(lines && strstr(lines[1], "\"pts\": 33333333") && strstr(lines[1], "\"label\": \"dot\"") &&
            strstr(lines[1], "\"width\": 160"), "line content: %s", lines ? lines[1] : "");
  g_strfreev(lines);
  g_free(text);
  g_free(props);
  unlink(json);
  unlink(model);
  g_free(model);
}

TEST(detect_qos_skips_inference_on_late_frames_and_reports_latency) {
  char *model = make_oracle("dot");
  expect e = plan(160, 120, 7, 9);
  GstHarness *hh = detect_harness(model, "RGB", 160, 120, NULL);
  gst_buffer_unref(gst_harness_push_and_pull(hh, stamp(dot_frame_rgb(160, 120, e.dot_x, e.dot_y, e.r), 0)));
  /* downstream says it is 1 s late at t = 0: frames before ~2 s are late */
  gst_harness_push_upstream_event(hh, gst_event_new_qos(GST_QOS_TYPE_UNDERFLOW, 0.5, GST_SECOND, 0));
  for (int i = 1; i <= 3; i++) {
    GstBuffer *out = gst_harness_push_and_pull(hh, stamp(dot_frame_rgb(160, 120, e.dot_x, e.dot_y, e.r), i));
    CHECK(out && count_rois(out, NULL) == 1, "late frame %d still passes with the last results", i);
    if (out) gst_buffer_unref(out);
  }
  guint64 skipped = stat_of(hh, "skipped"), inf = stat_of(hh, "inferences");
  CHECK(skipped == 3 && inf == 1, "skipped %" G_GUINT64_FORMAT ", inferences %" G_GUINT64_FORMAT, skipped, inf);
  GstClockTime lat = gst_harness_query_latency(hh);
  CHECK(GST_CLOCK_TIME_IS_VALID(lat) && lat > 0, "latency query answers the processing time (%" GST_TIME_FORMAT ")", GST_TIME_ARGS(lat));
  gst_harness_teardown(hh);
  unlink(model);
  g_free(model);
}

TEST(overlay_draws_boxes_from_any_roi_meta) {
  GstHarness *hh = gst_harness_new("e2eoverlay");
  const int W = 160, H = 120;
  gchar *caps = g_strdup_printf("video/x-raw,format=BGRx,width=%d,height=%d,framerate=30/1", W, H);
  gst_harness_set_src_caps_str(hh, caps);
  g_free(caps);
  GstBuffer *b = gst_buffer_new_allocate(NULL, W * H * 4, NULL);
  gst_buffer_memset(b, 0, 0, W * H * 4);
  GstVideoRegionOfInterestMeta *m = gst_buffer_add_video_region_of_interest_meta(b, "cat", 20, 50, 80, 50);
  gst_video_region_of_interest_meta_add_param(m, gst_structure_new("detection", "label", G_TYPE_STRING, "cat",
                                                                   "class-id", G_TYPE_INT, 3, "confidence", G_TYPE_DOUBLE, 0.8, NULL));
  GstBuffer *out = gst_harness_push_and_pull(hh, b);
  GstMapInfo map;
  gst_buffer_map(out, &map, GST_MAP_READ);
  const guint32 *px = (const guint32 *)map.data;
  CHECK((px[75 * W + 21] & 0xFFFFFF) != 0, "left edge of the box is drawn");
  CHECK((px[75 * W + 60] & 0xFFFFFF) == 0, "inside of the box untouched");
  CHECK((px[10 * W + 150] & 0xFFFFFF) == 0 && (px[110 * W + 10] & 0xFFFFFF) == 0, "outside untouched");
  int label_px = 0;
  for (int y = 25; y < 50; y++)
    for (int x = 20; x < W; x++) label_px += (px[y * W + x] & 0xFFFFFF) != 0;
  CHECK(label_px > 50, "a label is drawn above the box (%d pixels)", label_px);
  gst_buffer_unmap(out, &map);
  gst_buffer_unref(out);
  gst_harness_teardown(hh);
}
