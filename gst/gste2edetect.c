/* e2edetect: runs the end-to-end detector on each frame (or every Nth frame),
 * passes the video through unchanged and attaches one
 * GstVideoRegionOfInterestMeta per object, in original frame coordinates, with
 * a "detection" parameter structure {label, class-id, confidence, fresh}.
 *
 * Live behaviour: QoS events mark late frames, which keep the previous
 * results instead of running the network (counted in "stats"); the LATENCY
 * query adds the measured processing time; changing "model" while playing
 * loads and validates the new file first and swaps only on success. The
 * model itself runs in an e2e session (e2e/detect.h): this file only scales
 * frames with GStreamer's converter and turns boxes into metas, JSON and
 * messages. */
#include "gste2edetect.h"

#include <math.h>
#include <string.h>

GST_DEBUG_CATEGORY_STATIC(e2edetect_debug);
#define GST_CAT_DEFAULT e2edetect_debug

enum {
  PROP_0,
  PROP_LABELS_FILE,
  PROP_THRESHOLD,
  PROP_IOU_THRESHOLD,
  PROP_MAX_DETECTIONS,
  PROP_OBJECT_CLASS,
  PROP_INTERVAL,
  PROP_INPUT_SIZE,
  PROP_MESSAGE,
  PROP_JSON_FILE,
  PROP_UNCERTAIN_LOW,
  PROP_UNCERTAIN_HIGH,
  PROP_STATS,
};

#define VIDEO_CAPS GST_VIDEO_CAPS_MAKE("{ RGB, BGR, RGBx, BGRx, xRGB, xBGR, RGBA, BGRA, ARGB, ABGR, I420, YV12, NV12, NV21 }")

G_DEFINE_TYPE(GstE2eDetect, gst_e2e_detect, GST_TYPE_VIDEO_FILTER)

static GstStaticPadTemplate sink_template =
    GST_STATIC_PAD_TEMPLATE("sink", GST_PAD_SINK, GST_PAD_ALWAYS, GST_STATIC_CAPS(VIDEO_CAPS));
static GstStaticPadTemplate src_template =
    GST_STATIC_PAD_TEMPLATE("src", GST_PAD_SRC, GST_PAD_ALWAYS, GST_STATIC_CAPS(VIDEO_CAPS));

/* ------------------------------------------------------------------ labels */

static gchar **read_labels(const gchar *path, gchar **error) {
  gchar *text = NULL;
  GError *err = NULL;
  if (!g_file_get_contents(path, &text, NULL, &err)) {
    *error = g_strdup(err->message);
    g_error_free(err);
    return NULL;
  }
  gchar **lines = g_strsplit(text, "\n", -1);
  g_free(text);
  /* drop a trailing empty line; strip whitespace */
  GPtrArray *a = g_ptr_array_new();
  for (gchar **l = lines; *l; l++) {
    g_strstrip(*l);
    if (**l) g_ptr_array_add(a, g_strdup(*l));
  }
  g_strfreev(lines);
  g_ptr_array_add(a, NULL);
  return (gchar **)g_ptr_array_free(a, FALSE);
}

/* The label of a class of the model that found the boxes (the session's last call). */
static const gchar *label_of(GstE2eDetect *self, int cls) {
  if (self->labels) {
    guint n = g_strv_length(self->labels);
    if ((guint)cls < n) return self->labels[cls];
  }
  const e2e_model_info *info = e2e_model_describe(e2e_session_model(self->model.session));
  return cls >= 0 && cls < info->n_labels ? info->labels[cls] : "unknown";
}

/* ------------------------------------------------------------ properties */

static void set_property(GObject *obj, guint id, const GValue *v, GParamSpec *ps) {
  GstE2eDetect *self = GST_E2E_DETECT(obj);
  if (e2e_element_set_property(GST_ELEMENT(self), &self->model, id, v)) return;
  g_mutex_lock(&self->lock);
  switch (id) {
  case PROP_LABELS_FILE: g_free(self->labels_file); self->labels_file = g_value_dup_string(v); break;
  case PROP_THRESHOLD: self->params.threshold = g_value_get_float(v); break;
  case PROP_IOU_THRESHOLD: self->params.iou_threshold = g_value_get_float(v); break;
  case PROP_MAX_DETECTIONS: self->params.max_detections = (int)g_value_get_uint(v); break;
  case PROP_OBJECT_CLASS: g_free(self->object_class); self->object_class = g_value_dup_string(v); break;
  case PROP_INTERVAL: self->interval = g_value_get_uint(v); break;
  case PROP_INPUT_SIZE: {
    guint s = g_value_get_uint(v);
    if (s % 32) {
      guint r = (s + 16) / 32 * 32;
      GST_WARNING_OBJECT(self, "input-size %u is not a multiple of 32; using %u", s, r);
      s = r;
    }
    self->params.input_size = (int)s;
    break;
  }
  case PROP_MESSAGE: self->post_messages = g_value_get_boolean(v); break;
  case PROP_JSON_FILE: g_free(self->json_file); self->json_file = g_value_dup_string(v); break;
  case PROP_UNCERTAIN_LOW: self->uncertain_low = g_value_get_float(v); break;
  case PROP_UNCERTAIN_HIGH: self->uncertain_high = g_value_get_float(v); break;
  default: G_OBJECT_WARN_INVALID_PROPERTY_ID(obj, id, ps);
  }
  g_mutex_unlock(&self->lock);
}

static GstStructure *stats_structure(GstE2eDetect *self) {
  double sorted[E2E_DETECT_TIMES];
  guint n = MIN(self->n_times, E2E_DETECT_TIMES);
  memcpy(sorted, self->times_ms, n * sizeof(double));
  for (guint i = 1; i < n; i++) /* insertion sort: at most 256 entries */
    for (guint j = i; j > 0 && sorted[j - 1] > sorted[j]; j--) {
      double t = sorted[j];
      sorted[j] = sorted[j - 1];
      sorted[j - 1] = t;
    }
  double p95 = n ? sorted[(guint)floor(0.95 * (n - 1))] : 0.0;
  return gst_structure_new("e2edetect-stats", "frames", G_TYPE_UINT64, self->frames, "inferences", G_TYPE_UINT64,
                           self->inferences, "skipped", G_TYPE_UINT64, self->skipped, "uncertain", G_TYPE_UINT64,
                           self->uncertain, "mean-ms", G_TYPE_DOUBLE,
                           self->inferences ? self->total_ms / (double)self->inferences : 0.0, "p95-ms", G_TYPE_DOUBLE,
                           p95, "model-version", G_TYPE_UINT64, self->last_version, NULL);
}

static void get_property(GObject *obj, guint id, GValue *v, GParamSpec *ps) {
  GstE2eDetect *self = GST_E2E_DETECT(obj);
  if (e2e_element_get_property(&self->model, id, v)) return;
  g_mutex_lock(&self->lock);
  switch (id) {
  case PROP_LABELS_FILE: g_value_set_string(v, self->labels_file); break;
  case PROP_THRESHOLD: g_value_set_float(v, self->params.threshold); break;
  case PROP_IOU_THRESHOLD: g_value_set_float(v, self->params.iou_threshold); break;
  case PROP_MAX_DETECTIONS: g_value_set_uint(v, (guint)self->params.max_detections); break;
  case PROP_OBJECT_CLASS: g_value_set_string(v, self->object_class); break;
  case PROP_INTERVAL: g_value_set_uint(v, self->interval); break;
  case PROP_INPUT_SIZE: g_value_set_uint(v, (guint)self->params.input_size); break;
  case PROP_MESSAGE: g_value_set_boolean(v, self->post_messages); break;
  case PROP_JSON_FILE: g_value_set_string(v, self->json_file); break;
  case PROP_UNCERTAIN_LOW: g_value_set_float(v, self->uncertain_low); break;
  case PROP_UNCERTAIN_HIGH: g_value_set_float(v, self->uncertain_high); break;
  case PROP_STATS: g_value_take_boxed(v, stats_structure(self)); break;
  default: G_OBJECT_WARN_INVALID_PROPERTY_ID(obj, id, ps);
  }
  g_mutex_unlock(&self->lock);
}

/* --------------------------------------------------------------- lifecycle */

static double now_ms(void) { return (double)g_get_monotonic_time() / 1000.0; }

static gboolean start(GstBaseTransform *trans) {
  GstE2eDetect *self = GST_E2E_DETECT(trans);
  g_mutex_lock(&self->lock);
  gchar *labels_file = g_strdup(self->labels_file), *json_file = g_strdup(self->json_file);
  int input_size = self->params.input_size;
  g_mutex_unlock(&self->lock);
  gboolean ok = FALSE;
  gchar *err = NULL, **labels = NULL;
  FILE *json = NULL;
  if (!e2e_element_open(GST_ELEMENT(self), &self->model)) goto out;
  if (labels_file && !(labels = read_labels(labels_file, &err))) {
    GST_ELEMENT_ERROR(self, RESOURCE, READ, ("Could not read labels file \"%s\".", labels_file), ("%s", err));
    goto out;
  }
  if (json_file && *json_file) {
    json = strcmp(json_file, "-") ? fopen(json_file, "w") : stdout;
    if (!json) {
      GST_ELEMENT_ERROR(self, RESOURCE, OPEN_WRITE, ("Could not open JSON output \"%s\".", json_file), GST_ERROR_SYSTEM);
      goto out;
    }
  }
  /* one inference on a grey frame: fills the arena and gives a first latency estimate */
  double t = e2e_session_warm_up(self->model.session, input_size, 0);
  if (t < 0) {
    GST_ELEMENT_ERROR(self, LIBRARY, INIT, ("The detection model does not run."), ("%s", e2e_last_error()));
    goto out;
  }
  g_mutex_lock(&self->lock);
  self->labels = labels;
  self->json = json;
  labels = NULL, json = NULL;
  self->frames = self->inferences = self->skipped = self->uncertain = 0;
  self->n_times = 0;
  self->total_ms = 0;
  self->n_last = 0;
  self->last_version = 0;
  self->frames_since_inference = 0;
  self->earliest_time = GST_CLOCK_TIME_NONE;
  self->latency = (GstClockTime)(t * 1.5 * GST_MSECOND);
  g_mutex_unlock(&self->lock);
  const e2e_model_info *info = e2e_model_describe(e2e_session_model(self->model.session));
  GST_INFO_OBJECT(self, "model %s: %d classes, input %d, warm-up %.1f ms", info->path, info->n_labels,
                  e2e_detect_input_size(self->model.session, &self->params), t);
  ok = TRUE;
out:
  if (!ok) e2e_element_close(&self->model);
  g_strfreev(labels);
  if (json && json != stdout) fclose(json);
  g_free(err);
  g_free(labels_file);
  g_free(json_file);
  return ok;
}

static gboolean stop(GstBaseTransform *trans) {
  GstE2eDetect *self = GST_E2E_DETECT(trans);
  g_mutex_lock(&self->lock);
  g_strfreev(self->labels);
  self->labels = NULL;
  if (self->json && self->json != stdout) fclose(self->json);
  else if (self->json) fflush(self->json);
  self->json = NULL;
  g_mutex_unlock(&self->lock);
  e2e_element_close(&self->model);
  if (self->conv) gst_video_converter_free(self->conv);
  self->conv = NULL;
  g_clear_pointer(&self->rgb, g_free);
  return TRUE;
}

/* (Re)creates the converter that scales frames to their place in the network input. */
static gboolean setup_converter(GstE2eDetect *self, GstVideoInfo *in, int size) {
  det_letterbox lb = e2e_detect_placement_for(self->model.session, NULL, GST_VIDEO_INFO_WIDTH(in), GST_VIDEO_INFO_HEIGHT(in), size);
  if (self->conv && self->lb.scaled_w == lb.scaled_w && self->lb.scaled_h == lb.scaled_h && self->lb.size == size &&
      self->lb.scale_y == lb.scale_y)
    return TRUE;
  if (self->conv) gst_video_converter_free(self->conv);
  GstVideoInfo out;
  gst_video_info_set_format(&out, GST_VIDEO_FORMAT_RGB, (guint)lb.scaled_w, (guint)lb.scaled_h);
  /* the converter only scales and converts: everything else must match the input */
  GST_VIDEO_INFO_FPS_N(&out) = GST_VIDEO_INFO_FPS_N(in);
  GST_VIDEO_INFO_FPS_D(&out) = GST_VIDEO_INFO_FPS_D(in);
  GST_VIDEO_INFO_INTERLACE_MODE(&out) = GST_VIDEO_INFO_INTERLACE_MODE(in);
  GstStructure *cfg = gst_structure_new("GstVideoConverter", GST_VIDEO_CONVERTER_OPT_RESAMPLER_METHOD,
                                        GST_TYPE_VIDEO_RESAMPLER_METHOD, GST_VIDEO_RESAMPLER_METHOD_LINEAR, NULL);
  self->conv = gst_video_converter_new(in, &out, cfg);
  if (!self->conv) return FALSE;
  g_free(self->rgb);
  self->rgb = g_malloc((gsize)GST_VIDEO_INFO_SIZE(&out));
  self->lb = lb;
  return TRUE;
}

static int input_size(GstE2eDetect *self) {
  g_mutex_lock(&self->lock);
  e2e_detect_params p = self->params;
  g_mutex_unlock(&self->lock);
  return self->model.session ? e2e_detect_input_size(self->model.session, &p) : 320;
}

static gboolean set_info(GstVideoFilter *filter, GstCaps *incaps, GstVideoInfo *in, GstCaps *outcaps, GstVideoInfo *out) {
  GstE2eDetect *self = GST_E2E_DETECT(filter);
  if (self->conv) gst_video_converter_free(self->conv);
  self->conv = NULL;
  if (!setup_converter(self, in, input_size(self))) {
    GST_ELEMENT_ERROR(self, CORE, NEGOTIATION, ("Cannot convert %s frames for the detector.", gst_video_format_to_string(GST_VIDEO_INFO_FORMAT(in))), (NULL));
    return FALSE;
  }
  return TRUE;
}

/* -------------------------------------------------------------- per frame */

static void json_string(FILE *f, const char *s) {
  fputc('"', f);
  for (; *s; s++) {
    unsigned char c = (unsigned char)*s;
    if (c == '"' || c == '\\') fprintf(f, "\\%c", c);
    else if (c < 0x20) fprintf(f, "\\u%04x", c);
    else fputc(c, f);
  }
  fputc('"', f);
}

static void write_json(GstE2eDetect *self, GstBuffer *buf, int w, int h, gboolean fresh) {
  FILE *f = self->json;
  if (GST_BUFFER_PTS_IS_VALID(buf)) fprintf(f, "{\"pts\": %" G_GUINT64_FORMAT, GST_BUFFER_PTS(buf));
  else fprintf(f, "{\"pts\": null");
  fprintf(f, ", \"frame\": %" G_GUINT64_FORMAT ", \"width\": %d, \"height\": %d, \"fresh\": %s, \"objects\": [",
          self->frames - 1, w, h, fresh ? "true" : "false");
  for (int i = 0; i < self->n_last; i++) {
    const det_box *b = &self->last[i];
    fprintf(f, "%s{\"label\": ", i ? ", " : "");
    json_string(f, label_of(self, b->cls));
    fprintf(f, ", \"class_id\": %d, \"confidence\": %.4f, \"x\": %.1f, \"y\": %.1f, \"w\": %.1f, \"h\": %.1f}", b->cls,
            b->score, b->x1, b->y1, b->x2 - b->x1, b->y2 - b->y1);
  }
  fprintf(f, "]}\n");
  fflush(f);
}

static void post_message(GstE2eDetect *self, GstBuffer *buf, gboolean fresh) {
  GValue list = G_VALUE_INIT;
  g_value_init(&list, GST_TYPE_LIST);
  for (int i = 0; i < self->n_last; i++) {
    const det_box *b = &self->last[i];
    GstStructure *o = gst_structure_new("object", "label", G_TYPE_STRING, label_of(self, b->cls), "class-id", G_TYPE_INT,
                                        b->cls, "confidence", G_TYPE_DOUBLE, (double)b->score, "x", G_TYPE_INT,
                                        (int)lrintf(b->x1), "y", G_TYPE_INT, (int)lrintf(b->y1), "width", G_TYPE_INT,
                                        (int)lrintf(b->x2 - b->x1), "height", G_TYPE_INT, (int)lrintf(b->y2 - b->y1), NULL);
    GValue v = G_VALUE_INIT;
    g_value_init(&v, GST_TYPE_STRUCTURE);
    g_value_take_boxed(&v, o);
    gst_value_list_append_and_take_value(&list, &v);
  }
  GstStructure *s = gst_structure_new("e2edetect", "timestamp", G_TYPE_UINT64, GST_BUFFER_PTS(buf), "frame",
                                      G_TYPE_UINT64, self->frames - 1, "fresh", G_TYPE_BOOLEAN, fresh, NULL);
  gst_structure_take_value(s, "objects", &list);
  gst_element_post_message(GST_ELEMENT(self), gst_message_new_element(GST_OBJECT(self), s));
}

static void attach_metas(GstE2eDetect *self, GstBuffer *buf, gboolean fresh) {
  for (int i = 0; i < self->n_last; i++) {
    const det_box *b = &self->last[i];
    const gchar *label = label_of(self, b->cls);
    guint x = (guint)lrintf(b->x1), y = (guint)lrintf(b->y1);
    guint w = (guint)lrintf(b->x2 - b->x1), h = (guint)lrintf(b->y2 - b->y1);
    GstVideoRegionOfInterestMeta *m = gst_buffer_add_video_region_of_interest_meta(buf, label, x, y, w, h);
    gst_video_region_of_interest_meta_add_param(
        m, gst_structure_new("detection", "label", G_TYPE_STRING, label, "class-id", G_TYPE_INT, b->cls, "confidence",
                             G_TYPE_DOUBLE, (double)b->score, "fresh", G_TYPE_BOOLEAN, fresh, NULL));
  }
}

static gboolean is_late(GstE2eDetect *self, GstBuffer *buf) {
  GstBaseTransform *trans = GST_BASE_TRANSFORM(self);
  if (!GST_CLOCK_TIME_IS_VALID(self->earliest_time) || !GST_BUFFER_PTS_IS_VALID(buf)) return FALSE;
  GstClockTime rt = gst_segment_to_running_time(&trans->segment, GST_FORMAT_TIME, GST_BUFFER_PTS(buf));
  GST_LOG_OBJECT(self, "running time %" GST_TIME_FORMAT ", earliest %" GST_TIME_FORMAT, GST_TIME_ARGS(rt),
                 GST_TIME_ARGS(self->earliest_time));
  GstClockTime dur = GST_BUFFER_DURATION_IS_VALID(buf) ? GST_BUFFER_DURATION(buf) : 0;
  return GST_CLOCK_TIME_IS_VALID(rt) && rt + dur < self->earliest_time;
}

/* Scales the frame with GStreamer's converter, runs the session on it, keeps the boxes that pass the
 * object-class filter and have a size. */
static void run_inference(GstE2eDetect *self, GstVideoFrame *frame, const e2e_detect_params *params, const gchar *only) {
  GstVideoFrame rgbf;
  GstVideoInfo rinfo;
  gst_video_info_set_format(&rinfo, GST_VIDEO_FORMAT_RGB, (guint)self->lb.scaled_w, (guint)self->lb.scaled_h);
  GST_VIDEO_INFO_FPS_N(&rinfo) = GST_VIDEO_INFO_FPS_N(&frame->info);
  GST_VIDEO_INFO_FPS_D(&rinfo) = GST_VIDEO_INFO_FPS_D(&frame->info);
  GstBuffer *rb = gst_buffer_new_wrapped_full(0, self->rgb, GST_VIDEO_INFO_SIZE(&rinfo), 0, GST_VIDEO_INFO_SIZE(&rinfo), NULL, NULL);
  det_box boxes[E2E_DETECT_MAX_OBJECTS];
  int n = -1;
  /* with an uncertainty band below the threshold, detect down to the band's floor and report above it */
  float report = e2e_detect_threshold(self->model.session, params);
  gboolean band = self->uncertain_high > self->uncertain_low;
  e2e_detect_params p = *params;
  if (band && self->uncertain_low < report) p.threshold = self->uncertain_low, p.max_detections = E2E_DETECT_MAX_OBJECTS;
  if (gst_video_frame_map(&rgbf, &rinfo, rb, GST_MAP_WRITE)) {
    gst_video_converter_frame(self->conv, frame, &rgbf);
    n = e2e_detect_scaled(self->model.session, &p, GST_VIDEO_FRAME_PLANE_DATA(&rgbf, 0), GST_VIDEO_FRAME_PLANE_STRIDE(&rgbf, 0),
                          &self->lb, boxes, E2E_DETECT_MAX_OBJECTS);
    gst_video_frame_unmap(&rgbf);
  }
  gst_buffer_unref(rb);
  self->n_last = 0;
  self->n_uncertain = 0;
  if (n < 0) {
    GST_WARNING_OBJECT(self, "inference failed: %s", e2e_last_error());
    return;
  }
  /* object-class filter: a comma-separated list of labels */
  gchar **allowed = only && *only ? g_strsplit(only, ",", -1) : NULL;
  for (int i = 0; i < n; i++) {
    if (allowed) {
      gboolean ok = FALSE;
      for (gchar **a = allowed; *a && !ok; a++) ok = !strcmp(g_strstrip(*a), label_of(self, boxes[i].cls));
      if (!ok) continue;
    }
    if (boxes[i].x2 - boxes[i].x1 < 1 || boxes[i].y2 - boxes[i].y1 < 1) continue;
    if (band && boxes[i].score >= self->uncertain_low && boxes[i].score < self->uncertain_high) self->n_uncertain++;
    if (boxes[i].score >= report && self->n_last < params->max_detections) self->last[self->n_last++] = boxes[i];
  }
  g_strfreev(allowed);
}

static GstFlowReturn transform_frame_ip(GstVideoFilter *filter, GstVideoFrame *frame) {
  GstE2eDetect *self = GST_E2E_DETECT(filter);
  GstBuffer *buf = frame->buffer;
  if (!self->model.session) {
    GST_ELEMENT_ERROR(self, CORE, STATE_CHANGE, ("No detection model loaded."), (NULL));
    return GST_FLOW_ERROR;
  }
  if (!setup_converter(self, &frame->info, input_size(self))) {
    GST_ELEMENT_ERROR(self, CORE, NEGOTIATION, ("Cannot convert frames for the detector."), (NULL));
    return GST_FLOW_ERROR;
  }
  /* a newly published model gets a frame at once: the old model's boxes no longer apply */
  guint64 version = e2e_slot_version(self->model.slot);
  g_mutex_lock(&self->lock);
  self->frames++;
  gboolean late = is_late(self, buf);
  gboolean due = self->frames_since_inference + 1 >= MAX(1u, self->interval) || self->inferences == 0 ||
                 version != self->last_version;
  gboolean fresh = FALSE;
  GstClockTime new_latency = 0;
  if (due && late && self->inferences > 0 && version == self->last_version) {
    self->skipped++; /* keep the previous results; the frame itself passes untouched */
    GST_DEBUG_OBJECT(self, "late frame: skipping inference (%" G_GUINT64_FORMAT " skipped)", self->skipped);
  } else if (due) {
    double t0 = now_ms();
    run_inference(self, frame, &self->params, self->object_class);
    double t = now_ms() - t0;
    self->last_version = version;
    self->inferences++;
    self->frames_since_inference = 0;
    self->times_ms[self->n_times++ % E2E_DETECT_TIMES] = t;
    self->total_ms += t;
    fresh = TRUE;
    /* tell the pipeline when processing got markedly slower than announced */
    if ((GstClockTime)(t * GST_MSECOND) > self->latency + self->latency / 4) {
      self->latency = (GstClockTime)(t * 1.25 * GST_MSECOND);
      new_latency = self->latency;
    }
  } else {
    self->frames_since_inference++;
  }
  attach_metas(self, buf, fresh);
  if (fresh && self->n_uncertain > 0) { /* active learning: a frame worth a person's label */
    e2e_uncertain_meta_add(buf, self->n_uncertain, self->uncertain_low, self->uncertain_high);
    self->uncertain++;
  }
  if (self->json) write_json(self, buf, GST_VIDEO_FRAME_WIDTH(frame), GST_VIDEO_FRAME_HEIGHT(frame), fresh);
  if (self->post_messages) post_message(self, buf, fresh);
  g_mutex_unlock(&self->lock);
  if (new_latency) gst_element_post_message(GST_ELEMENT(self), gst_message_new_latency(GST_OBJECT(self)));
  return GST_FLOW_OK;
}

/* ------------------------------------------------------- QoS and latency */

static gboolean src_event(GstBaseTransform *trans, GstEvent *event) {
  GstE2eDetect *self = GST_E2E_DETECT(trans);
  if (GST_EVENT_TYPE(event) == GST_EVENT_QOS) {
    GstQOSType type;
    gdouble proportion;
    GstClockTimeDiff diff;
    GstClockTime ts;
    gst_event_parse_qos(event, &type, &proportion, &diff, &ts);
    GST_DEBUG_OBJECT(self, "QoS: proportion %.3f, diff %" G_GINT64_FORMAT ", timestamp %" GST_TIME_FORMAT, proportion, diff,
                     GST_TIME_ARGS(ts));
    g_mutex_lock(&self->lock);
    if (GST_CLOCK_TIME_IS_VALID(ts)) {
      /* like GstBaseTransform: when late, aim past the lateness */
      self->earliest_time = diff > 0 ? ts + 2 * (GstClockTime)diff : ts + diff;
    }
    g_mutex_unlock(&self->lock);
  }
  return GST_BASE_TRANSFORM_CLASS(gst_e2e_detect_parent_class)->src_event(trans, event);
}

static gboolean query(GstBaseTransform *trans, GstPadDirection dir, GstQuery *q) {
  GstE2eDetect *self = GST_E2E_DETECT(trans);
  gboolean ok = GST_BASE_TRANSFORM_CLASS(gst_e2e_detect_parent_class)->query(trans, dir, q);
  if (ok && dir == GST_PAD_SRC && GST_QUERY_TYPE(q) == GST_QUERY_LATENCY) {
    gboolean live;
    GstClockTime min, max;
    gst_query_parse_latency(q, &live, &min, &max);
    g_mutex_lock(&self->lock);
    GstClockTime ours = self->latency;
    g_mutex_unlock(&self->lock);
    GST_DEBUG_OBJECT(self, "adding %" GST_TIME_FORMAT " of processing latency", GST_TIME_ARGS(ours));
    gst_query_set_latency(q, live, min + ours, GST_CLOCK_TIME_IS_VALID(max) ? max + ours : max);
  }
  return ok;
}

/* ----------------------------------------------------------- class setup */

static void finalize(GObject *obj) {
  GstE2eDetect *self = GST_E2E_DETECT(obj);
  e2e_element_model_clear(&self->model);
  g_strfreev(self->labels);
  g_free(self->labels_file);
  g_free(self->object_class);
  g_free(self->json_file);
  g_mutex_clear(&self->lock);
  G_OBJECT_CLASS(gst_e2e_detect_parent_class)->finalize(obj);
}

static void gst_e2e_detect_class_init(GstE2eDetectClass *klass) {
  GObjectClass *oc = G_OBJECT_CLASS(klass);
  GstElementClass *ec = GST_ELEMENT_CLASS(klass);
  GstBaseTransformClass *bc = GST_BASE_TRANSFORM_CLASS(klass);
  GstVideoFilterClass *vc = GST_VIDEO_FILTER_CLASS(klass);
  GST_DEBUG_CATEGORY_INIT(e2edetect_debug, "e2edetect", 0, "end-to-end object detection");
  oc->set_property = set_property;
  oc->get_property = get_property;
  oc->finalize = finalize;
  GParamFlags rw = G_PARAM_READWRITE | G_PARAM_STATIC_STRINGS | GST_PARAM_MUTABLE_PLAYING;
  e2e_element_install_properties(oc, E2E_TASK_DETECT, E2E_ELEMENT_SWAP_WHILE_PLAYING);
  g_object_class_install_property(oc, PROP_LABELS_FILE, g_param_spec_string("labels-file", "Labels file",
      "Text file with one label per line, overriding the labels stored in the model", NULL,
      G_PARAM_READWRITE | G_PARAM_STATIC_STRINGS | GST_PARAM_MUTABLE_READY));
  g_object_class_install_property(oc, PROP_THRESHOLD, g_param_spec_float("threshold", "Threshold",
      "Minimum confidence of a reported object; -1: the model's own (the shipped COCO detector's is 0.4, its best "
      "F1 on COCO128 train2017; models that name none use 0.3)", -1.0f, 1.0f, E2E_DETECT_MODEL_THRESHOLD, rw));
  g_object_class_install_property(oc, PROP_IOU_THRESHOLD, g_param_spec_float("iou-threshold", "IoU threshold",
      "Class-wise NMS: drop a box overlapping a better one of its class by more than this (1 = no NMS)",
      0.0f, 1.0f, E2E_DETECT_DEFAULT_IOU, rw));
  g_object_class_install_property(oc, PROP_MAX_DETECTIONS, g_param_spec_uint("max-detections", "Max detections",
      "Most objects reported per frame", 1, E2E_DETECT_MAX_OBJECTS, E2E_DETECT_DEFAULT_MAX, rw));
  g_object_class_install_property(oc, PROP_OBJECT_CLASS, g_param_spec_string("object-class", "Object class",
      "Report only these labels (comma-separated); empty for all", NULL, rw));
  g_object_class_install_property(oc, PROP_INTERVAL, g_param_spec_uint("interval", "Interval",
      "Run the network every Nth frame; frames in between carry the last results with fresh=false", 1, 1000, 1, rw));
  g_object_class_install_property(oc, PROP_INPUT_SIZE, g_param_spec_uint("input-size", "Input size",
      "Square network input in pixels, a multiple of 32 (0 = the model's own)", 0, 2048, 0, rw));
  g_object_class_install_property(oc, PROP_MESSAGE, g_param_spec_boolean("message", "Message",
      "Post an element message \"e2edetect\" with the objects of every frame", FALSE, rw));
  g_object_class_install_property(oc, PROP_JSON_FILE, g_param_spec_string("json-file", "JSON lines file",
      "Write one JSON object per frame (docs/detect.md) to this file, or - for stdout", NULL,
      G_PARAM_READWRITE | G_PARAM_STATIC_STRINGS | GST_PARAM_MUTABLE_READY));
  g_object_class_install_property(oc, PROP_UNCERTAIN_LOW, g_param_spec_float("uncertain-low", "Uncertainty band, low",
      "Active learning: a frame with a detection whose confidence is in [uncertain-low, uncertain-high) gets an "
      "E2eUncertainMeta mark (e2etrain sample=uncertain prefers such frames, save-uncertain writes them out for "
      "labelling); the band may lie below threshold. Off while uncertain-high <= uncertain-low", 0.0f, 1.0f, 0.0f, rw));
  g_object_class_install_property(oc, PROP_UNCERTAIN_HIGH, g_param_spec_float("uncertain-high", "Uncertainty band, high",
      "The top of the uncertainty band (see uncertain-low)", 0.0f, 1.0f, 0.0f, rw));
  g_object_class_install_property(oc, PROP_STATS, g_param_spec_boxed("stats", "Statistics",
      "frames, inferences, skipped (late frames under QoS), uncertain (frames marked for the uncertainty band), mean-ms "
      "and p95-ms of inference, model-version (of the model slot the last inference ran on: e2etrain publications "
      "count it up)", GST_TYPE_STRUCTURE,
      G_PARAM_READABLE | G_PARAM_STATIC_STRINGS));
  gst_element_class_set_static_metadata(ec, "End-to-end object detector", "Filter/Analyzer/Video",
      "Detects objects with a network trained end to end and attaches GstVideoRegionOfInterestMeta",
      "gst-e2e developers");
  gst_element_class_add_static_pad_template(ec, &sink_template);
  gst_element_class_add_static_pad_template(ec, &src_template);
  bc->start = start;
  bc->stop = stop;
  bc->src_event = src_event;
  bc->query = query;
  bc->passthrough_on_same_caps = FALSE;
  vc->set_info = set_info;
  vc->transform_frame_ip = transform_frame_ip;
}

static void gst_e2e_detect_init(GstE2eDetect *self) {
  e2e_element_model_init(&self->model, E2E_TASK_DETECT, E2E_ELEMENT_SWAP_WHILE_PLAYING);
  g_mutex_init(&self->lock);
  self->params = e2e_detect_defaults();
  self->interval = 1;
  self->earliest_time = GST_CLOCK_TIME_NONE;
  gst_base_transform_set_in_place(GST_BASE_TRANSFORM(self), TRUE);
  /* QoS is ours: late frames still pass (video must not stutter), only the network is skipped.
   * GstVideoFilter's default would drop them before transform_frame_ip sees them. */
  gst_base_transform_set_qos_enabled(GST_BASE_TRANSFORM(self), FALSE);
}
