/* e2etrain's and e2etrainfilter's shared part (e2etraincore.h): properties, frames and their boxes (from
 * region-of-interest metas or a label file) into samples for the online trainer (e2e/online.h), and its
 * events into element messages. */
#include "e2etraincore.h"

#include <errno.h>
#include <math.h>
#include <string.h>

#include "e2e/image.h"

GST_DEBUG_CATEGORY_STATIC(e2etrain_debug);
#define GST_CAT_DEFAULT e2etrain_debug

enum {
  PROP_0,
  PROP_LEARNING_RATE,
  PROP_OPTIMIZER,
  PROP_BATCH_SIZE,
  PROP_BUFFER_SIZE,
  PROP_HOLDOUT,
  PROP_LEAKY,
  PROP_PUBLISH_EVERY,
  PROP_MIN_IMPROVEMENT,
  PROP_MAX_STEPS,
  PROP_FREEZE,
  PROP_CHECKPOINT_DIR,
  PROP_LABELS,
  PROP_AUGMENT,
  PROP_SAMPLE,
  PROP_SAVE_UNCERTAIN,
  PROP_STATS,
};

void e2e_train_core_init(E2eTrainCore *c, GstElement *element, const GstSegment *segment) {
  c->element = element;
  c->segment = segment;
  e2e_element_model_init(&c->model, E2E_TASK_DETECT, 0);
  g_mutex_init(&c->lock);
  c->opts = e2e_online_defaults();
  c->optimizer = g_strdup("adamw");
  c->sample = g_strdup("arrival");
}

void e2e_train_core_clear(E2eTrainCore *c) {
  e2e_element_model_clear(&c->model);
  g_free(c->freeze), g_free(c->checkpoint_dir), g_free(c->optimizer), g_free(c->labels_path);
  g_free(c->sample), g_free(c->save_uncertain);
  g_mutex_clear(&c->lock);
}

/* ------------------------------------------------------------ properties */

void e2e_train_core_set_property(E2eTrainCore *self, GObject *obj, guint id, const GValue *v, GParamSpec *ps) {
  if (e2e_element_set_property(self->element, &self->model, id, v)) return;
  g_mutex_lock(&self->lock);
  switch (id) {
  case PROP_LEARNING_RATE: self->opts.train.lr = g_value_get_float(v); break;
  case PROP_OPTIMIZER: g_free(self->optimizer); self->optimizer = g_value_dup_string(v); break;
  case PROP_BATCH_SIZE: self->opts.batch_size = (int)g_value_get_uint(v); break;
  case PROP_BUFFER_SIZE: self->opts.buffer_size = (int)g_value_get_uint(v); break;
  case PROP_HOLDOUT: self->opts.holdout = g_value_get_double(v); break;
  case PROP_LEAKY: self->opts.leaky = g_value_get_boolean(v); break;
  case PROP_PUBLISH_EVERY: self->opts.publish_every = (int)g_value_get_uint(v); break;
  case PROP_MIN_IMPROVEMENT: self->opts.min_improvement = g_value_get_double(v); break;
  case PROP_MAX_STEPS: self->opts.max_steps = (int64_t)g_value_get_uint64(v); break;
  case PROP_FREEZE: g_free(self->freeze); self->freeze = g_value_dup_string(v); break;
  case PROP_CHECKPOINT_DIR: g_free(self->checkpoint_dir); self->checkpoint_dir = g_value_dup_string(v); break;
  case PROP_LABELS: g_free(self->labels_path); self->labels_path = g_value_dup_string(v); break;
  case PROP_AUGMENT: self->opts.augment = g_value_get_boolean(v); break;
  case PROP_SAMPLE: g_free(self->sample); self->sample = g_value_dup_string(v); break;
  case PROP_SAVE_UNCERTAIN: g_free(self->save_uncertain); self->save_uncertain = g_value_dup_string(v); break;
  default: G_OBJECT_WARN_INVALID_PROPERTY_ID(obj, id, ps);
  }
  g_mutex_unlock(&self->lock);
}

void e2e_train_core_get_property(E2eTrainCore *self, GObject *obj, guint id, GValue *v, GParamSpec *ps) {
  if (e2e_element_get_property(&self->model, id, v)) return;
  g_mutex_lock(&self->lock);
  switch (id) {
  case PROP_LEARNING_RATE: g_value_set_float(v, self->opts.train.lr); break;
  case PROP_OPTIMIZER: g_value_set_string(v, self->optimizer); break;
  case PROP_BATCH_SIZE: g_value_set_uint(v, (guint)self->opts.batch_size); break;
  case PROP_BUFFER_SIZE: g_value_set_uint(v, (guint)self->opts.buffer_size); break;
  case PROP_HOLDOUT: g_value_set_double(v, self->opts.holdout); break;
  case PROP_LEAKY: g_value_set_boolean(v, self->opts.leaky); break;
  case PROP_PUBLISH_EVERY: g_value_set_uint(v, (guint)self->opts.publish_every); break;
  case PROP_MIN_IMPROVEMENT: g_value_set_double(v, self->opts.min_improvement); break;
  case PROP_MAX_STEPS: g_value_set_uint64(v, (guint64)self->opts.max_steps); break;
  case PROP_FREEZE: g_value_set_string(v, self->freeze); break;
  case PROP_CHECKPOINT_DIR: g_value_set_string(v, self->checkpoint_dir); break;
  case PROP_LABELS: g_value_set_string(v, self->labels_path); break;
  case PROP_AUGMENT: g_value_set_boolean(v, self->opts.augment); break;
  case PROP_SAMPLE: g_value_set_string(v, self->sample); break;
  case PROP_SAVE_UNCERTAIN: g_value_set_string(v, self->save_uncertain); break;
  case PROP_STATS:
    g_value_take_boxed(v, gst_structure_new("e2etrain-stats", "frames", G_TYPE_UINT64, self->frames, "dropped", G_TYPE_UINT64,
                                            self->dropped, "bad-labels", G_TYPE_UINT64, self->bad_labels, "steps", G_TYPE_INT64,
                                            self->steps, "loss", G_TYPE_DOUBLE, self->last_loss, "published", G_TYPE_UINT64,
                                            self->published, "rejected", G_TYPE_UINT64, self->rejected, "unlabelled",
                                            G_TYPE_UINT64, self->unlabelled, "uncertain", G_TYPE_UINT64, self->uncertain,
                                            "saved", G_TYPE_UINT64, self->saved, NULL));
    break;
  default: G_OBJECT_WARN_INVALID_PROPERTY_ID(obj, id, ps);
  }
  g_mutex_unlock(&self->lock);
}

/* ------------------------------------------------------------ training events -> messages */

/* On the training thread: counters, and an element message per event (progress at most twice a second). */
static void on_event(const e2e_online_event *ev, void *user) {
  E2eTrainCore *self = user;
  GstStructure *s = NULL;
  gint64 now = g_get_monotonic_time();
  g_mutex_lock(&self->lock);
  self->steps = ev->step, self->last_loss = ev->loss, self->dropped = ev->dropped;
  switch (ev->kind) {
  case E2E_ONLINE_PROGRESS:
    if (ev->step == 1 || now - self->last_progress_us >= 500000) {
      self->last_progress_us = now;
      s = gst_structure_new("e2etrain-progress", "step", G_TYPE_INT64, ev->step, "loss", G_TYPE_DOUBLE, ev->loss,
                            "samples-per-second", G_TYPE_DOUBLE, ev->samples_per_s, "buffered", G_TYPE_INT, ev->buffered,
                            "held-out", G_TYPE_INT, ev->held_out, "dropped", G_TYPE_UINT64, ev->dropped, "uncertain",
                            G_TYPE_INT, ev->batch_uncertain, NULL);
    }
    break;
  case E2E_ONLINE_PUBLISHED:
    self->published++;
    s = gst_structure_new("e2etrain-published", "step", G_TYPE_INT64, ev->step, "version", G_TYPE_UINT64, ev->version,
                          "metric-before", G_TYPE_DOUBLE, ev->metric_live, "metric-after", G_TYPE_DOUBLE, ev->metric_new,
                          "checkpoint", G_TYPE_STRING, ev->checkpoint, "warning", G_TYPE_STRING, ev->message, NULL);
    break;
  case E2E_ONLINE_REJECTED:
    self->rejected++;
    s = gst_structure_new("e2etrain-rejected", "step", G_TYPE_INT64, ev->step, "metric-before", G_TYPE_DOUBLE, ev->metric_live,
                          "metric-after", G_TYPE_DOUBLE, ev->metric_new, "reason", G_TYPE_STRING, ev->message, NULL);
    break;
  case E2E_ONLINE_FINISHED:
    s = gst_structure_new("e2etrain-finished", "step", G_TYPE_INT64, ev->step, "loss", G_TYPE_DOUBLE, ev->loss, NULL);
    break;
  case E2E_ONLINE_ERROR: break;
  }
  g_mutex_unlock(&self->lock);
  if (ev->kind == E2E_ONLINE_ERROR)
    GST_ELEMENT_ERROR(self->element, LIBRARY, FAILED, ("Online training stopped."), ("%s", ev->message));
  if (ev->kind == E2E_ONLINE_PUBLISHED)
    GST_INFO_OBJECT(self->element, "step %" G_GINT64_FORMAT ": version %" G_GUINT64_FORMAT " published, mAP@0.5 %.4f -> %.4f", ev->step,
                    ev->version, ev->metric_live, ev->metric_new);
  if (s) gst_element_post_message(self->element, gst_message_new_element(GST_OBJECT(self->element), s));
}

/* ------------------------------------------------------------ start, stop, frames */

gboolean e2e_train_core_start(E2eTrainCore *self) {
  if (!e2e_element_open(self->element, &self->model)) return FALSE;
  g_mutex_lock(&self->lock);
  e2e_online_opts o = self->opts;
  gchar *freeze = g_strdup(self->freeze), *dir = g_strdup(self->checkpoint_dir), *optimizer = g_strdup(self->optimizer);
  self->frames = self->dropped = self->bad_labels = self->unlabelled = self->published = self->rejected = 0;
  self->uncertain = self->saved = 0;
  self->steps = 0, self->last_progress_us = 0, self->last_loss = 0, self->counted = 0;
  self->last_saved = GST_CLOCK_TIME_NONE;
  gchar *labels_path = g_strdup(self->labels_path), *sample = g_strdup(self->sample), *save = g_strdup(self->save_uncertain);
  g_mutex_unlock(&self->lock);
  gboolean ok = FALSE;
  o.train.freeze = freeze && *freeze ? freeze : NULL;
  o.checkpoint_dir = dir;
  o.train.threads = (int)self->model.num_threads;
  if (!optimizer || !strcmp(optimizer, "adamw")) o.train.optimizer = NN_ADAMW;
  else if (!strcmp(optimizer, "sgd")) o.train.optimizer = NN_SGD;
  else {
    GST_ELEMENT_ERROR(self->element, LIBRARY, SETTINGS, ("Unknown optimizer \"%s\" (adamw or sgd).", optimizer), (NULL));
    goto out;
  }
  if (sample && strcmp(sample, "arrival") && strcmp(sample, "uncertain")) {
    GST_ELEMENT_ERROR(self->element, LIBRARY, SETTINGS, ("Unknown sample policy \"%s\" (arrival or uncertain).", sample), (NULL));
    goto out;
  }
  o.prefer_uncertain = sample && !strcmp(sample, "uncertain");
  if (save && *save && g_mkdir_with_parents(save, 0755) != 0) {
    GST_ELEMENT_ERROR(self->element, RESOURCE, OPEN_WRITE, ("Cannot make the folder \"%s\" for uncertain frames.", save),
                      ("%s", g_strerror(errno)));
    goto out;
  }
  /* a restart resumes from the last published version */
  char *latest = e2e_online_latest(dir);
  if (latest) {
    e2e_model *m = e2e_model_open(latest, E2E_TASK_DETECT);
    bool published = m && e2e_slot_publish(self->model.slot, m); /* the slot takes a reference of its own */
    e2e_model_unref(m);
    if (!published) {
      GST_ELEMENT_ERROR(self->element, RESOURCE, READ, ("Could not resume from \"%s\".", latest), ("%s", e2e_last_error()));
      g_free(latest);
      goto out;
    }
    GST_INFO_OBJECT(self->element, "resuming from %s", latest);
    g_free(latest);
  }
  e2e_model *m = e2e_slot_get(self->model.slot);
  const e2e_model_info *info = e2e_model_describe(m);
  self->n_labels = info->n_labels;
  self->labels = g_new0(gchar *, info->n_labels + 1);
  for (int i = 0; i < info->n_labels; i++) self->labels[i] = g_strdup(info->labels[i]);
  e2e_model_unref(m);
  if (labels_path && *labels_path) {
    self->file = det_frame_labels_open(labels_path, (const char *const *)self->labels, self->n_labels);
    if (!self->file) {
      GST_ELEMENT_ERROR(self->element, RESOURCE, READ, ("Could not use the label file \"%s\".", labels_path), ("%s", e2e_last_error()));
      goto out;
    }
    int skipped = det_frame_labels_skipped(self->file);
    if (skipped)
      GST_ELEMENT_WARNING(self->element, RESOURCE, READ, ("Skipping %d labels in \"%s\" that are not usable.", skipped, labels_path),
                          ("malformed, of a class the model does not know, or outside their image"));
  }
  self->online = e2e_online_new(self->model.slot, &o, on_event, self);
  if (!self->online) {
    GST_ELEMENT_ERROR(self->element, LIBRARY, SETTINGS, ("Could not start training."), ("%s", e2e_last_error()));
    goto out;
  }
  ok = TRUE;
out:
  if (!ok) {
    det_frame_labels_free(self->file);
    self->file = NULL;
    g_strfreev(self->labels);
    self->labels = NULL;
    e2e_element_close(&self->model);
  }
  g_free(freeze), g_free(dir), g_free(optimizer), g_free(labels_path), g_free(sample), g_free(save);
  return ok;
}

void e2e_train_core_stop(E2eTrainCore *self) {
  e2e_online_free(self->online); /* joins the training thread */
  self->online = NULL;
  det_frame_labels_free(self->file);
  self->file = NULL;
  g_strfreev(self->labels);
  self->labels = NULL;
  e2e_element_close(&self->model);
}

gboolean e2e_train_core_set_caps(E2eTrainCore *self, GstCaps *caps) {
  if (!gst_video_info_from_caps(&self->info, caps)) {
    GST_ELEMENT_ERROR(self->element, CORE, NEGOTIATION, ("Caps %" GST_PTR_FORMAT " are no raw RGB video.", caps), (NULL));
    return FALSE;
  }
  return TRUE;
}

/* The frame's boxes from its region-of-interest metas, classes by name; unknown ones counted as bad. */
static det_box *boxes_of(E2eTrainCore *self, GstBuffer *buf, int *n, int *bad) {
  gpointer state = NULL;
  GstMeta *meta;
  int cap = 0;
  det_box *b = NULL;
  *n = 0;
  while ((meta = gst_buffer_iterate_meta_filtered(buf, &state, GST_VIDEO_REGION_OF_INTEREST_META_API_TYPE))) {
    GstVideoRegionOfInterestMeta *r = (GstVideoRegionOfInterestMeta *)meta;
    const gchar *label = g_quark_to_string(r->roi_type);
    int cls = -1;
    for (int i = 0; label && i < self->n_labels && cls < 0; i++)
      if (!strcmp(self->labels[i], label)) cls = i;
    if (cls < 0) {
      (*bad)++;
      continue;
    }
    if (*n == cap) b = g_renew(det_box, b, cap = cap ? 2 * cap : 16);
    b[(*n)++] = (det_box){(float)r->x, (float)r->y, (float)r->x + (float)r->w, (float)r->y + (float)r->h, 1.0f, cls};
  }
  return b;
}

/* The frame's number for the label file: its stream time times the frame rate, so that a loop or a seek
 * finds the same labels again; buffers counted since start when the caps give no rate. Its timestamp in
 * seconds goes to *pts_s (-1 if none). */
static gint64 frame_number(E2eTrainCore *self, GstBuffer *buf, double *pts_s) {
  const GstSegment *seg = self->segment;
  guint64 t = GST_BUFFER_PTS_IS_VALID(buf) ? gst_segment_to_stream_time(seg, GST_FORMAT_TIME, GST_BUFFER_PTS(buf))
                                           : GST_CLOCK_TIME_NONE;
  *pts_s = GST_CLOCK_TIME_IS_VALID(t) ? (double)t / GST_SECOND : -1.0;
  if (GST_CLOCK_TIME_IS_VALID(t) && self->info.fps_n > 0 && self->info.fps_d > 0)
    return (gint64)gst_util_uint64_scale_round(t, (guint64)self->info.fps_n, (guint64)self->info.fps_d * GST_SECOND);
  return (gint64)self->counted - 1;
}

/* The frame's boxes from the label file; NULL with *n = -1 when it has none for this frame. */
static det_box *boxes_from_file(E2eTrainCore *self, GstBuffer *buf, int w, int h, int *n, int *bad) {
  double pts_s;
  gint64 frame = frame_number(self, buf, &pts_s);
  int cap = 256;
  det_box *b = g_new(det_box, cap);
  *n = det_frame_labels_get(self->file, frame, pts_s, w, h, b, cap, bad);
  if (*n < 0) {
    g_free(b);
    return NULL;
  }
  return b;
}

/* Active learning: an uncertain frame is written to save-uncertain (at most one per second of stream time)
 * as frame-N.png and frame-N.json, the JSON a line of the label-file format holding the predictions on the
 * frame; a person corrects it, and the corrected lines, concatenated, are a labels= file for the same
 * stream. */
static void save_for_labelling(E2eTrainCore *self, GstBuffer *buf, GstVideoFrame *frame) {
  g_mutex_lock(&self->lock);
  self->uncertain++;
  gchar *dir = self->save_uncertain && *self->save_uncertain ? g_strdup(self->save_uncertain) : NULL;
  g_mutex_unlock(&self->lock);
  double pts_s;
  gint64 n = frame_number(self, buf, &pts_s);
  GstClockTime t = pts_s >= 0 ? (GstClockTime)(pts_s * GST_SECOND) : GST_CLOCK_TIME_NONE;
  if (!dir || (GST_CLOCK_TIME_IS_VALID(self->last_saved) && GST_CLOCK_TIME_IS_VALID(t) && t < self->last_saved + GST_SECOND &&
               t >= self->last_saved)) {
    g_free(dir);
    return;
  }
  self->last_saved = t;
  int w = GST_VIDEO_FRAME_WIDTH(frame), h = GST_VIDEO_FRAME_HEIGHT(frame), stride = GST_VIDEO_FRAME_PLANE_STRIDE(frame, 0);
  guint8 *rgb = g_malloc((gsize)w * h * 3);
  for (int y = 0; y < h; y++) memcpy(rgb + (gsize)y * w * 3, (guint8 *)GST_VIDEO_FRAME_PLANE_DATA(frame, 0) + (gsize)y * stride, (gsize)w * 3);
  gchar *png = g_strdup_printf("%s/frame-%08" G_GINT64_FORMAT ".png", dir, n);
  gchar *json = g_strdup_printf("%s/frame-%08" G_GINT64_FORMAT ".json", dir, n);
  GString *line = g_string_new(NULL);
  g_string_append_printf(line, "{\"frame\": %" G_GINT64_FORMAT ", ", n);
  if (pts_s >= 0) g_string_append_printf(line, "\"pts\": %" G_GUINT64_FORMAT ", ", (guint64)(pts_s * GST_SECOND + 0.5));
  g_string_append_printf(line, "\"width\": %d, \"height\": %d, \"objects\": [", w, h);
  gpointer state = NULL;
  GstMeta *meta;
  int k = 0;
  while ((meta = gst_buffer_iterate_meta_filtered(buf, &state, GST_VIDEO_REGION_OF_INTEREST_META_API_TYPE))) {
    GstVideoRegionOfInterestMeta *r = (GstVideoRegionOfInterestMeta *)meta;
    double conf = 1.0;
    GstStructure *d = gst_video_region_of_interest_meta_get_param(r, "detection");
    if (d) gst_structure_get_double(d, "confidence", &conf);
    gchar *label = g_strescape(g_quark_to_string(r->roi_type) ? g_quark_to_string(r->roi_type) : "", NULL);
    g_string_append_printf(line, "%s{\"label\": \"%s\", \"x\": %u, \"y\": %u, \"w\": %u, \"h\": %u, \"confidence\": %.4f}",
                           k++ ? ", " : "", label, r->x, r->y, r->w, r->h, conf);
    g_free(label);
  }
  g_string_append(line, "]}\n");
  GError *err = NULL;
  gboolean ok = e2e_image_save_png(png, rgb, w, h) && g_file_set_contents(json, line->str, (gssize)line->len, &err);
  if (ok) {
    g_mutex_lock(&self->lock);
    self->saved++;
    g_mutex_unlock(&self->lock);
  } else {
    GST_ELEMENT_WARNING(self->element, RESOURCE, WRITE, ("Could not write an uncertain frame to \"%s\".", dir),
                        ("%s", err ? err->message : e2e_last_error()));
  }
  g_clear_error(&err);
  g_string_free(line, TRUE);
  g_free(png), g_free(json), g_free(rgb), g_free(dir);
}

GstFlowReturn e2e_train_core_frame(E2eTrainCore *self, GstBuffer *buf) {
  GstVideoFrame frame;
  if (!gst_video_frame_map(&frame, &self->info, buf, GST_MAP_READ)) {
    GST_ELEMENT_ERROR(self->element, STREAM, FAILED, ("Could not map a video frame."), (NULL));
    return GST_FLOW_ERROR;
  }
  int n = 0, bad = 0;
  self->counted++;
  det_box *boxes = self->file ? boxes_from_file(self, buf, GST_VIDEO_FRAME_WIDTH(&frame), GST_VIDEO_FRAME_HEIGHT(&frame), &n, &bad)
                              : boxes_of(self, buf, &n, &bad);
  /* an uncertain frame is worth a person's label, above all one the label file does not have yet */
  gboolean uncertain = e2e_uncertain_meta_count(buf) > 0;
  if (uncertain) save_for_labelling(self, buf, &frame);
  if (self->file && n < 0) { /* not in the file: nothing to learn from it */
    gst_video_frame_unmap(&frame);
    g_mutex_lock(&self->lock);
    self->frames++, self->unlabelled++;
    g_mutex_unlock(&self->lock);
    return GST_FLOW_OK;
  }
  g_mutex_lock(&self->lock);
  guint64 key = GST_BUFFER_OFFSET_IS_VALID(buf) ? GST_BUFFER_OFFSET(buf)
                : GST_BUFFER_PTS_IS_VALID(buf)  ? GST_BUFFER_PTS(buf)
                                                : self->frames;
  self->frames++;
  g_mutex_unlock(&self->lock);
  /* waits here only with leaky=false, until the trainer has used a sample */
  (uncertain ? e2e_online_add_uncertain : e2e_online_add)(self->online, key, GST_VIDEO_FRAME_PLANE_DATA(&frame, 0),
                                                          GST_VIDEO_FRAME_WIDTH(&frame), GST_VIDEO_FRAME_HEIGHT(&frame),
                                                          GST_VIDEO_FRAME_PLANE_STRIDE(&frame, 0), boxes, n, &bad);
  gst_video_frame_unmap(&frame);
  g_free(boxes);
  if (bad) {
    g_mutex_lock(&self->lock);
    gboolean first = self->bad_labels == 0;
    self->bad_labels += (guint64)bad;
    g_mutex_unlock(&self->lock);
    if (first)
      GST_ELEMENT_WARNING(self->element, STREAM, FAILED, ("Skipping labels that are not usable (unknown class or outside the frame)."),
                          ("%d in frame %" G_GUINT64_FORMAT "; the stats property counts them all", bad, key));
  }
  return GST_FLOW_OK;
}

/* With max-steps, the end of the stream waits for the training to end (its last validation and checkpoint
 * included), so that a file's pipeline finishes with a trained model, not with the frames. */
void e2e_train_core_eos(E2eTrainCore *self) {
  g_mutex_lock(&self->lock);
  gboolean wait = self->opts.max_steps > 0;
  g_mutex_unlock(&self->lock);
  if (wait && self->online) {
    GST_INFO_OBJECT(self->element, "end of stream: waiting for training to reach max-steps");
    if (!e2e_online_wait(self->online)) GST_DEBUG_OBJECT(self->element, "flushing ended the wait");
  }
}

/* A waiting frame (leaky=false) must not hold a flush or a state change back. */
void e2e_train_core_set_flushing(E2eTrainCore *self, gboolean flushing) {
  if (self->online) e2e_online_set_flushing(self->online, flushing);
}

void e2e_train_core_install_properties(GObjectClass *oc) {
  if (!e2etrain_debug) GST_DEBUG_CATEGORY_INIT(e2etrain_debug, "e2etrain", 0, "online training");
  GParamFlags rw = G_PARAM_READWRITE | G_PARAM_STATIC_STRINGS | GST_PARAM_MUTABLE_READY;
  e2e_element_install_properties(oc, E2E_TASK_DETECT, 0);
  e2e_online_opts d = e2e_online_defaults();
  g_object_class_install_property(oc, PROP_LEARNING_RATE, g_param_spec_float("learning-rate", "Learning rate",
      "The optimizer's step size", 1e-7f, 1.0f, d.train.lr, rw));
  g_object_class_install_property(oc, PROP_OPTIMIZER, g_param_spec_string("optimizer", "Optimizer",
      "adamw or sgd", "adamw", rw));
  g_object_class_install_property(oc, PROP_BATCH_SIZE, g_param_spec_uint("batch-size", "Batch size",
      "Frames per training step (at most buffer-size)", 1, 256, (guint)d.batch_size, rw));
  g_object_class_install_property(oc, PROP_BUFFER_SIZE, g_param_spec_uint("buffer-size", "Buffer size",
      "Frames kept for replay (and as many held out); steps draw from them", 1, 4096, (guint)d.buffer_size, rw));
  g_object_class_install_property(oc, PROP_HOLDOUT, g_param_spec_double("holdout", "Hold-out fraction",
      "Fraction of frames never trained on, used to validate each version (chosen by a hash of the frame number); "
      "0 publishes every version unvalidated",
      0.0, 0.9, d.holdout, rw));
  g_object_class_install_property(oc, PROP_LEAKY, g_param_spec_boolean("leaky", "Leaky",
      "When every buffered frame still waits for training: drop the new frame (live sources) or wait (files: "
      "nothing is lost)", d.leaky, rw));
  g_object_class_install_property(oc, PROP_PUBLISH_EVERY, g_param_spec_uint("publish-every", "Publish every",
      "Training steps between validations; a version better on the held-out frames is published", 1, 1000000,
      (guint)d.publish_every, rw));
  g_object_class_install_property(oc, PROP_MIN_IMPROVEMENT, g_param_spec_double("min-improvement", "Minimum improvement",
      "mAP@0.5 a new version must gain over the live one on held-out frames to be published (else it is rejected "
      "and the live one stays); negative accepts a small loss", -1.0, 1.0, d.min_improvement, rw));
  g_object_class_install_property(oc, PROP_MAX_STEPS, g_param_spec_uint64("max-steps", "Max steps",
      "Stop training after this many steps (0: never); the learning rate then warms up and follows a cosine down to "
      "2 %, and the end of the stream waits for the last step, validation and checkpoint", 0, G_MAXINT64, 0, rw));
  g_object_class_install_property(oc, PROP_FREEZE, g_param_spec_string("freeze", "Freeze",
      "Comma-separated parameter-name prefixes kept fixed (e.g. backbone. for transfer learning)", NULL, rw));
  g_object_class_install_property(oc, PROP_CHECKPOINT_DIR, g_param_spec_string("checkpoint-dir", "Checkpoint folder",
      "Each published version is written here atomically (vNNNNNN.safetensors and latest.safetensors); a restart "
      "resumes from latest", NULL, rw));
  g_object_class_install_property(oc, PROP_LABELS, g_param_spec_string("labels", "Label file",
      "Targets from a file instead of the frames' region-of-interest metas (supervised fine-tuning): JSON lines "
      "(.jsonl, as e2edetect's json-file writes them; by \"frame\", else \"pts\"), COCO JSON (.json) or CSV (.csv), "
      "whose images are numbered in sorted-name order, or a YOLO pattern such as labels/%05d.txt (one file per frame; "
      "class numbers are the model's labels). Frame n is the frame at n / framerate in stream time (the n-th buffer "
      "when the caps give no rate); frames the file has no boxes for are not trained on", NULL, rw));
  g_object_class_install_property(oc, PROP_AUGMENT, g_param_spec_boolean("augment", "Augment",
      "Train on randomly flipped, scaled, shifted and colour-jittered copies of the buffered frames (as e2e train "
      "detect does, mosaics included) instead of the frames as they are", d.augment, rw));
  g_object_class_install_property(oc, PROP_SAMPLE, g_param_spec_string("sample", "Sample",
      "Which buffered frames a step trains on: arrival (those not yet trained on, oldest first, then random ones) or "
      "uncertain (active learning: frames e2edetect marked for its uncertainty band first, half of the random picks "
      "among them, and replaced last)", "arrival", rw));
  g_object_class_install_property(oc, PROP_SAVE_UNCERTAIN, g_param_spec_string("save-uncertain", "Save uncertain frames",
      "Folder to write frames e2edetect marked uncertain to, for a person to label (at most one per second of stream "
      "time): frame-N.png and frame-N.json, a line of the labels= JSON-lines format with the current predictions; "
      "corrected and concatenated, they are a label file for the same stream", NULL, rw));
  g_object_class_install_property(oc, PROP_STATS, g_param_spec_boxed("training-stats", "Training statistics",
      "frames, dropped, bad-labels, unlabelled (frames the label file has no boxes for), uncertain (frames marked "
      "uncertain), saved (written for labelling), steps, loss, published, rejected", GST_TYPE_STRUCTURE,
      G_PARAM_READABLE | G_PARAM_STATIC_STRINGS));
}
