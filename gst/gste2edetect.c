/* e2edetect: runs the end-to-end detector on each frame (or every Nth frame),
 * passes the video through unchanged and attaches one
 * GstVideoRegionOfInterestMeta per object, in original frame coordinates, with
 * a "detection" parameter structure {label, class-id, confidence, fresh}.
 *
 * Live behaviour: QoS events mark late frames, which keep the previous
 * results instead of running the network (counted in "stats"); the LATENCY
 * query adds the measured processing time; changing "model" while playing
 * loads and validates the new file first and swaps only on success. */
#include "gste2edetect.h"

#include <math.h>
#include <string.h>

#include "e2e/image.h"
#include "e2eplugin.h"

GST_DEBUG_CATEGORY_STATIC(e2edetect_debug);
#define GST_CAT_DEFAULT e2edetect_debug

enum {
  PROP_0,
  PROP_MODEL,
  PROP_LABELS_FILE,
  PROP_THRESHOLD,
  PROP_IOU_THRESHOLD,
  PROP_MAX_DETECTIONS,
  PROP_OBJECT_CLASS,
  PROP_INTERVAL,
  PROP_INPUT_SIZE,
  PROP_DEVICE,
  PROP_NUM_THREADS,
  PROP_MESSAGE,
  PROP_JSON_FILE,
  PROP_STATS,
};

#define VIDEO_CAPS GST_VIDEO_CAPS_MAKE("{ RGB, BGR, RGBx, BGRx, xRGB, xBGR, RGBA, BGRA, ARGB, ABGR, I420, YV12, NV12, NV21 }")

G_DEFINE_TYPE(GstE2eDetect, gst_e2e_detect, GST_TYPE_VIDEO_FILTER)

static GstStaticPadTemplate sink_template =
    GST_STATIC_PAD_TEMPLATE("sink", GST_PAD_SINK, GST_PAD_ALWAYS, GST_STATIC_CAPS(VIDEO_CAPS));
static GstStaticPadTemplate src_template =
    GST_STATIC_PAD_TEMPLATE("src", GST_PAD_SRC, GST_PAD_ALWAYS, GST_STATIC_CAPS(VIDEO_CAPS));

/* ------------------------------------------------------------- model files */

static detector *load_model(const gchar *path, gchar **error) {
  detector *d = g_new0(detector, 1);
  if (!det_load(d, path)) {
    *error = g_strdup(nn_last_error());
    g_free(d);
    return NULL;
  }
  return d;
}

static void free_model(detector *d) {
  if (!d) return;
  det_free(d);
  g_free(d);
}

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

static const gchar *label_of(GstE2eDetect *self, int cls) {
  if (self->labels) {
    guint n = g_strv_length(self->labels);
    if ((guint)cls < n) return self->labels[cls];
  }
  return self->model->cfg.labels[cls];
}

/* ------------------------------------------------------------ properties */

static void set_property(GObject *obj, guint id, const GValue *v, GParamSpec *ps) {
  GstE2eDetect *self = GST_E2E_DETECT(obj);
  switch (id) {
  case PROP_MODEL: {
    const gchar *path = g_value_get_string(v);
    g_mutex_lock(&self->lock);
    gboolean running = self->model != NULL;
    g_mutex_unlock(&self->lock);
    if (!running) {
      g_mutex_lock(&self->lock);
      g_free(self->model_path);
      self->model_path = g_strdup(path);
      g_mutex_unlock(&self->lock);
      break;
    }
    /* load and validate outside the lock; swap only on success */
    gchar *err = NULL;
    detector *d = path ? load_model(path, &err) : NULL;
    if (!d) {
      GST_ELEMENT_WARNING(self, RESOURCE, READ, ("Could not load detection model \"%s\"; keeping the current model.", path ? path : "(null)"),
                          ("%s", err ? err : "no path given"));
      g_free(err);
      break;
    }
    g_mutex_lock(&self->lock);
    detector *old = self->model;
    self->model = d;
    g_free(self->model_path);
    self->model_path = g_strdup(path);
    self->n_last = 0; /* results of the old model no longer apply */
    g_mutex_unlock(&self->lock);
    free_model(old);
    GST_INFO_OBJECT(self, "switched to model %s", path);
    break;
  }
  case PROP_LABELS_FILE:
    g_mutex_lock(&self->lock);
    g_free(self->labels_file);
    self->labels_file = g_value_dup_string(v);
    g_mutex_unlock(&self->lock);
    break;
  case PROP_THRESHOLD: g_mutex_lock(&self->lock); self->threshold = g_value_get_float(v); g_mutex_unlock(&self->lock); break;
  case PROP_IOU_THRESHOLD: g_mutex_lock(&self->lock); self->iou_threshold = g_value_get_float(v); g_mutex_unlock(&self->lock); break;
  case PROP_MAX_DETECTIONS: g_mutex_lock(&self->lock); self->max_detections = g_value_get_uint(v); g_mutex_unlock(&self->lock); break;
  case PROP_OBJECT_CLASS:
    g_mutex_lock(&self->lock);
    g_free(self->object_class);
    self->object_class = g_value_dup_string(v);
    g_mutex_unlock(&self->lock);
    break;
  case PROP_INTERVAL: g_mutex_lock(&self->lock); self->interval = g_value_get_uint(v); g_mutex_unlock(&self->lock); break;
  case PROP_INPUT_SIZE: {
    guint s = g_value_get_uint(v);
    if (s % 32) {
      guint r = (s + 16) / 32 * 32;
      GST_WARNING_OBJECT(self, "input-size %u is not a multiple of 32; using %u", s, r);
      s = r;
    }
    g_mutex_lock(&self->lock);
    self->input_size = s;
    g_mutex_unlock(&self->lock);
    break;
  }
  case PROP_DEVICE:
    g_mutex_lock(&self->lock);
    g_free(self->device);
    self->device = g_value_dup_string(v);
    g_mutex_unlock(&self->lock);
    break;
  case PROP_NUM_THREADS:
    self->num_threads = g_value_get_uint(v);
    nn_set_num_threads((int)self->num_threads);
    break;
  case PROP_MESSAGE: g_mutex_lock(&self->lock); self->post_messages = g_value_get_boolean(v); g_mutex_unlock(&self->lock); break;
  case PROP_JSON_FILE:
    g_mutex_lock(&self->lock);
    g_free(self->json_file);
    self->json_file = g_value_dup_string(v);
    g_mutex_unlock(&self->lock);
    break;
  default: G_OBJECT_WARN_INVALID_PROPERTY_ID(obj, id, ps);
  }
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
                           self->inferences, "skipped", G_TYPE_UINT64, self->skipped, "mean-ms", G_TYPE_DOUBLE,
                           self->inferences ? self->total_ms / (double)self->inferences : 0.0, "p95-ms", G_TYPE_DOUBLE,
                           p95, NULL);
}

static void get_property(GObject *obj, guint id, GValue *v, GParamSpec *ps) {
  GstE2eDetect *self = GST_E2E_DETECT(obj);
  g_mutex_lock(&self->lock);
  switch (id) {
  case PROP_MODEL: g_value_set_string(v, self->model_path); break;
  case PROP_LABELS_FILE: g_value_set_string(v, self->labels_file); break;
  case PROP_THRESHOLD: g_value_set_float(v, self->threshold); break;
  case PROP_IOU_THRESHOLD: g_value_set_float(v, self->iou_threshold); break;
  case PROP_MAX_DETECTIONS: g_value_set_uint(v, self->max_detections); break;
  case PROP_OBJECT_CLASS: g_value_set_string(v, self->object_class); break;
  case PROP_INTERVAL: g_value_set_uint(v, self->interval); break;
  case PROP_INPUT_SIZE: g_value_set_uint(v, self->input_size); break;
  case PROP_DEVICE: g_value_set_string(v, self->device); break;
  case PROP_NUM_THREADS: g_value_set_uint(v, self->num_threads); break;
  case PROP_MESSAGE: g_value_set_boolean(v, self->post_messages); break;
  case PROP_JSON_FILE: g_value_set_string(v, self->json_file); break;
  case PROP_STATS: g_value_take_boxed(v, stats_structure(self)); break;
  default: G_OBJECT_WARN_INVALID_PROPERTY_ID(obj, id, ps);
  }
  g_mutex_unlock(&self->lock);
}

/* --------------------------------------------------------------- lifecycle */

static double now_ms(void) { return (double)g_get_monotonic_time() / 1000.0; }

/* One inference on a grey frame: warms the arena and gives a first latency estimate. */
static double warm_up(GstE2eDetect *self, int size) {
  nn_arena *prev = nn_arena_set_current(self->arena);
  nn_tensor *x = nn_zeros(NN_F32, 4, (int64_t[]){1, 3, size, size});
  double t0 = now_ms();
  nn_no_grad_begin();
  det_forward(self->model, x, false);
  nn_no_grad_end();
  double t = now_ms() - t0;
  nn_arena_reset(self->arena);
  nn_arena_set_current(prev);
  return t;
}

static gboolean start(GstBaseTransform *trans) {
  GstE2eDetect *self = GST_E2E_DETECT(trans);
  g_mutex_lock(&self->lock);
  gchar *path = g_strdup(self->model_path ? self->model_path : e2e_default_model("person.safetensors"));
  gchar *device = g_strdup(self->device);
  gchar *labels_file = g_strdup(self->labels_file), *json_file = g_strdup(self->json_file);
  g_mutex_unlock(&self->lock);
  gboolean ok = FALSE;
  nn_device dev;
  if (!nn_device_parse(device, &dev)) {
    GST_ELEMENT_ERROR(self, LIBRARY, SETTINGS, ("Unknown device \"%s\" (use cpu or cuda).", device), (NULL));
    goto out;
  }
  if (dev == NN_CUDA) {
    GST_ELEMENT_ERROR(self, LIBRARY, SETTINGS, ("device=cuda is not available yet: the CUDA kernels are not in this build; use device=cpu."),
                      ("cuda backend compiled: %s, GPU present: %s", nn_backend_get(NN_CUDA) ? "yes" : "no",
                       nn_device_available(NN_CUDA) ? "yes" : "no"));
    goto out;
  }
  gchar *err = NULL;
  detector *d = load_model(path, &err);
  if (!d) {
    GST_ELEMENT_ERROR(self, RESOURCE, READ, ("Could not load detection model \"%s\".", path), ("%s", err));
    g_free(err);
    goto out;
  }
  gchar **labels = NULL;
  if (labels_file && !(labels = read_labels(labels_file, &err))) {
    GST_ELEMENT_ERROR(self, RESOURCE, READ, ("Could not read labels file \"%s\".", labels_file), ("%s", err));
    g_free(err);
    free_model(d);
    goto out;
  }
  FILE *json = NULL;
  if (json_file && *json_file) {
    json = strcmp(json_file, "-") ? fopen(json_file, "w") : stdout;
    if (!json) {
      GST_ELEMENT_ERROR(self, RESOURCE, OPEN_WRITE, ("Could not open JSON output \"%s\".", json_file), GST_ERROR_SYSTEM);
      free_model(d);
      g_strfreev(labels);
      goto out;
    }
  }
  self->arena = nn_arena_new(1 << 22);
  g_mutex_lock(&self->lock);
  self->model = d;
  self->labels = labels;
  self->json = json;
  self->frames = self->inferences = self->skipped = 0;
  self->n_times = 0;
  self->total_ms = 0;
  self->n_last = 0;
  self->frames_since_inference = 0;
  self->earliest_time = GST_CLOCK_TIME_NONE;
  int size = self->input_size ? (int)self->input_size : d->cfg.input_size;
  double t = warm_up(self, size);
  self->latency = (GstClockTime)(t * 1.5 * GST_MSECOND);
  g_mutex_unlock(&self->lock);
  GST_INFO_OBJECT(self, "model %s: %d classes, input %d, warm-up %.1f ms", path, d->cfg.num_classes, size, t);
  ok = TRUE;
out:
  g_free(path);
  g_free(device);
  g_free(labels_file);
  g_free(json_file);
  return ok;
}

static gboolean stop(GstBaseTransform *trans) {
  GstE2eDetect *self = GST_E2E_DETECT(trans);
  g_mutex_lock(&self->lock);
  free_model(self->model);
  self->model = NULL;
  g_strfreev(self->labels);
  self->labels = NULL;
  if (self->json && self->json != stdout) fclose(self->json);
  else if (self->json) fflush(self->json);
  self->json = NULL;
  g_mutex_unlock(&self->lock);
  if (self->conv) gst_video_converter_free(self->conv);
  self->conv = NULL;
  g_clear_pointer(&self->rgb, g_free);
  nn_arena_free(self->arena);
  self->arena = NULL;
  return TRUE;
}

/* (Re)creates the letterbox converter for the frame size and network size. */
static gboolean setup_converter(GstE2eDetect *self, GstVideoInfo *in, int size) {
  int w = GST_VIDEO_INFO_WIDTH(in), h = GST_VIDEO_INFO_HEIGHT(in);
  det_letterbox lb = det_letterbox_for(w, h, size);
  int nw = MAX(1, (int)lrintf((float)w * lb.scale)), nh = MAX(1, (int)lrintf((float)h * lb.scale));
  if (self->conv && self->conv_w == nw && self->conv_h == nh && self->conv_size == size) return TRUE;
  if (self->conv) gst_video_converter_free(self->conv);
  GstVideoInfo out;
  gst_video_info_set_format(&out, GST_VIDEO_FORMAT_RGB, (guint)nw, (guint)nh);
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
  self->conv_w = nw;
  self->conv_h = nh;
  self->conv_size = size;
  /* integer placement: the exact offsets the frame lands at */
  self->lb = lb;
  self->lb.pad_x = (float)((size - nw) / 2);
  self->lb.pad_y = (float)((size - nh) / 2);
  self->lb.scale = fminf((float)nw / (float)w, (float)nh / (float)h);
  return TRUE;
}

static gboolean set_info(GstVideoFilter *filter, GstCaps *incaps, GstVideoInfo *in, GstCaps *outcaps, GstVideoInfo *out) {
  GstE2eDetect *self = GST_E2E_DETECT(filter);
  g_mutex_lock(&self->lock);
  int size = self->input_size ? (int)self->input_size : (self->model ? self->model->cfg.input_size : 320);
  g_mutex_unlock(&self->lock);
  if (self->conv) gst_video_converter_free(self->conv);
  self->conv = NULL;
  if (!setup_converter(self, in, size)) {
    GST_ELEMENT_ERROR(self, CORE, NEGOTIATION, ("Cannot convert %s frames for the detector.", gst_video_format_to_string(GST_VIDEO_INFO_FORMAT(in))), (NULL));
    return FALSE;
  }
  return TRUE;
}

/* ---------------------------------------------------------------- frames */

/* Writes the planar, normalised, letterboxed network input into dst. */
static void letterbox_input(GstE2eDetect *self, const guint8 *rgb, int stride, float *dst) {
  int size = self->conv_size, nw = self->conv_w, nh = self->conv_h;
  int ox = (int)self->lb.pad_x, oy = (int)self->lb.pad_y;
  float grey = (0.5f - E2E_PIXEL_MEAN) / E2E_PIXEL_STD;
  float k = 1.0f / (255.0f * E2E_PIXEL_STD), off = -E2E_PIXEL_MEAN / E2E_PIXEL_STD;
  size_t plane = (size_t)size * size;
  for (int c = 0; c < 3; c++) {
    float *p = dst + c * plane;
    for (int y = 0; y < size; y++) {
      float *row = p + (size_t)y * size;
      int sy = y - oy;
      if (sy < 0 || sy >= nh) {
        for (int x = 0; x < size; x++) row[x] = grey;
        continue;
      }
      const guint8 *src = rgb + (size_t)sy * stride + c;
      for (int x = 0; x < ox; x++) row[x] = grey;
      for (int x = 0; x < nw; x++) row[ox + x] = src[3 * x] * k + off;
      for (int x = ox + nw; x < size; x++) row[x] = grey;
    }
  }
}

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

static void run_inference(GstE2eDetect *self, GstVideoFrame *frame, float threshold, float iou, guint max_det,
                          const gchar *only) {
  GstVideoFrame rgbf;
  GstVideoInfo rinfo;
  gst_video_info_set_format(&rinfo, GST_VIDEO_FORMAT_RGB, (guint)self->conv_w, (guint)self->conv_h);
  GST_VIDEO_INFO_FPS_N(&rinfo) = GST_VIDEO_INFO_FPS_N(&frame->info);
  GST_VIDEO_INFO_FPS_D(&rinfo) = GST_VIDEO_INFO_FPS_D(&frame->info);
  GstBuffer *rb = gst_buffer_new_wrapped_full(0, self->rgb, GST_VIDEO_INFO_SIZE(&rinfo), 0, GST_VIDEO_INFO_SIZE(&rinfo), NULL, NULL);
  if (!gst_video_frame_map(&rgbf, &rinfo, rb, GST_MAP_WRITE)) {
    gst_buffer_unref(rb);
    return;
  }
  int size = self->conv_size;
  nn_tensor *x = nn_empty(NN_F32, 4, (int64_t[]){1, 3, size, size});
  if (x) {
    gst_video_converter_frame(self->conv, frame, &rgbf);
    letterbox_input(self, GST_VIDEO_FRAME_PLANE_DATA(&rgbf, 0), GST_VIDEO_FRAME_PLANE_STRIDE(&rgbf, 0), nn_f32(x));
  }
  gst_video_frame_unmap(&rgbf);
  gst_buffer_unref(rb);
  if (!x) return;
  nn_no_grad_begin();
  nn_tensor *out = det_forward(self->model, x, false);
  nn_no_grad_end();
  if (!out) {
    GST_WARNING_OBJECT(self, "inference failed: %s", nn_last_error());
    self->n_last = 0;
    return;
  }
  det_box boxes[E2E_DETECT_MAX_OBJECTS];
  int n = det_decode(&self->model->cfg, out, 0, threshold, iou, (int)max_det, boxes);
  det_unletterbox(&self->lb, boxes, n);
  /* object-class filter: a comma-separated list of labels */
  self->n_last = 0;
  gchar **allowed = only && *only ? g_strsplit(only, ",", -1) : NULL;
  for (int i = 0; i < n; i++) {
    if (allowed) {
      gboolean ok = FALSE;
      for (gchar **a = allowed; *a && !ok; a++) ok = !strcmp(g_strstrip(*a), label_of(self, boxes[i].cls));
      if (!ok) continue;
    }
    if (boxes[i].x2 - boxes[i].x1 < 1 || boxes[i].y2 - boxes[i].y1 < 1) continue;
    self->last[self->n_last++] = boxes[i];
  }
  g_strfreev(allowed);
}

static GstFlowReturn transform_frame_ip(GstVideoFilter *filter, GstVideoFrame *frame) {
  GstE2eDetect *self = GST_E2E_DETECT(filter);
  GstBuffer *buf = frame->buffer;
  g_mutex_lock(&self->lock);
  if (!self->model) {
    g_mutex_unlock(&self->lock);
    GST_ELEMENT_ERROR(self, CORE, STATE_CHANGE, ("No detection model loaded."), (NULL));
    return GST_FLOW_ERROR;
  }
  int size = self->input_size ? (int)self->input_size : self->model->cfg.input_size;
  if (!setup_converter(self, &frame->info, size)) {
    g_mutex_unlock(&self->lock);
    GST_ELEMENT_ERROR(self, CORE, NEGOTIATION, ("Cannot convert frames for the detector."), (NULL));
    return GST_FLOW_ERROR;
  }
  self->frames++;
  gboolean late = is_late(self, buf);
  gboolean due = self->frames_since_inference + 1 >= MAX(1u, self->interval) || self->inferences == 0;
  gboolean fresh = FALSE;
  GstClockTime new_latency = 0;
  if (due && late && self->inferences > 0) {
    self->skipped++; /* keep the previous results; the frame itself passes untouched */
    GST_DEBUG_OBJECT(self, "late frame: skipping inference (%" G_GUINT64_FORMAT " skipped)", self->skipped);
  } else if (due) {
    nn_arena *prev = nn_arena_set_current(self->arena);
    double t0 = now_ms();
    run_inference(self, frame, self->threshold, self->iou_threshold, self->max_detections, self->object_class);
    double t = now_ms() - t0;
    nn_arena_reset(self->arena);
    nn_arena_set_current(prev);
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
  free_model(self->model);
  g_strfreev(self->labels);
  g_free(self->model_path);
  g_free(self->labels_file);
  g_free(self->object_class);
  g_free(self->json_file);
  g_free(self->device);
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
  g_object_class_install_property(oc, PROP_MODEL, g_param_spec_string("model", "Model",
      "Detection model (safetensors). Default: the shipped person detector. Changing it while playing loads and "
      "validates the new file first; on failure the current model stays and a warning is posted.", NULL, rw));
  g_object_class_install_property(oc, PROP_LABELS_FILE, g_param_spec_string("labels-file", "Labels file",
      "Text file with one label per line, overriding the labels stored in the model", NULL,
      G_PARAM_READWRITE | G_PARAM_STATIC_STRINGS | GST_PARAM_MUTABLE_READY));
  g_object_class_install_property(oc, PROP_THRESHOLD, g_param_spec_float("threshold", "Threshold",
      "Minimum confidence of a reported object", 0.001f, 1.0f, 0.3f, rw));
  g_object_class_install_property(oc, PROP_IOU_THRESHOLD, g_param_spec_float("iou-threshold", "IoU threshold",
      "Class-wise NMS on the heatmap peaks: drop a box overlapping a better one by more than this (1 = no NMS)",
      0.0f, 1.0f, 0.6f, rw));
  g_object_class_install_property(oc, PROP_MAX_DETECTIONS, g_param_spec_uint("max-detections", "Max detections",
      "Most objects reported per frame", 1, E2E_DETECT_MAX_OBJECTS, 100, rw));
  g_object_class_install_property(oc, PROP_OBJECT_CLASS, g_param_spec_string("object-class", "Object class",
      "Report only these labels (comma-separated); empty for all", NULL, rw));
  g_object_class_install_property(oc, PROP_INTERVAL, g_param_spec_uint("interval", "Interval",
      "Run the network every Nth frame; frames in between carry the last results with fresh=false", 1, 1000, 1, rw));
  g_object_class_install_property(oc, PROP_INPUT_SIZE, g_param_spec_uint("input-size", "Input size",
      "Square network input in pixels, a multiple of 32 (0 = the model's own)", 0, 2048, 0, rw));
  g_object_class_install_property(oc, PROP_DEVICE, g_param_spec_string("device", "Device",
      "Where to run the network: cpu (cuda once its kernels land)", "cpu",
      G_PARAM_READWRITE | G_PARAM_STATIC_STRINGS | GST_PARAM_MUTABLE_READY));
  g_object_class_install_property(oc, PROP_NUM_THREADS, g_param_spec_uint("num-threads", "Threads",
      "Threads for the network (process-wide nncore setting; 0 = all cores)", 0, 64, 0, rw));
  g_object_class_install_property(oc, PROP_MESSAGE, g_param_spec_boolean("message", "Message",
      "Post an element message \"e2edetect\" with the objects of every frame", FALSE, rw));
  g_object_class_install_property(oc, PROP_JSON_FILE, g_param_spec_string("json-file", "JSON lines file",
      "Write one JSON object per frame (docs/detect.md) to this file, or - for stdout", NULL,
      G_PARAM_READWRITE | G_PARAM_STATIC_STRINGS | GST_PARAM_MUTABLE_READY));
  g_object_class_install_property(oc, PROP_STATS, g_param_spec_boxed("stats", "Statistics",
      "frames, inferences, skipped (late frames under QoS), mean-ms and p95-ms of inference", GST_TYPE_STRUCTURE,
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
  g_mutex_init(&self->lock);
  self->threshold = 0.3f;
  self->iou_threshold = 0.6f;
  self->max_detections = 100;
  self->interval = 1;
  self->device = g_strdup("cpu");
  self->earliest_time = GST_CLOCK_TIME_NONE;
  gst_base_transform_set_in_place(GST_BASE_TRANSFORM(self), TRUE);
  /* QoS is ours: late frames still pass (video must not stutter), only the network is skipped.
   * GstVideoFilter's default would drop them before transform_frame_ip sees them. */
  gst_base_transform_set_qos_enabled(GST_BASE_TRANSFORM(self), FALSE);
}
