/* e2etrain: a sink (put it on a tee branch) that trains the detector in its slot on the frames it
 * receives, with the boxes already on them (GstVideoRegionOfInterestMeta: a teacher e2edetect upstream,
 * or any element that labels frames) or from a label file as targets. Training runs on its own thread
 * (e2e/online.h): a full replay buffer drops frames (leaky) or holds the stream back (leaky=false, for
 * files: nothing lost). Every publish-every steps the trained weights are scored on held-out frames
 * against the live model and published into the slot only if better; e2edetect elements with the same
 * model-name pick the new version up between two frames. e2etrainfilter does the same in the stream's
 * path, passing every frame on unchanged. Both are thin: the work is in e2etraincore.c. */
#include "gste2etrain.h"

static GstStaticPadTemplate sink_template =
    GST_STATIC_PAD_TEMPLATE("sink", GST_PAD_SINK, GST_PAD_ALWAYS, GST_STATIC_CAPS(GST_VIDEO_CAPS_MAKE("RGB")));
static GstStaticPadTemplate src_template =
    GST_STATIC_PAD_TEMPLATE("src", GST_PAD_SRC, GST_PAD_ALWAYS, GST_STATIC_CAPS(GST_VIDEO_CAPS_MAKE("RGB")));

/* ------------------------------------------------------------ the sink */

G_DEFINE_TYPE(GstE2eTrain, gst_e2e_train, GST_TYPE_BASE_SINK)

static void sink_set_property(GObject *obj, guint id, const GValue *v, GParamSpec *ps) {
  e2e_train_core_set_property(&GST_E2E_TRAIN(obj)->core, obj, id, v, ps);
}
static void sink_get_property(GObject *obj, guint id, GValue *v, GParamSpec *ps) {
  e2e_train_core_get_property(&GST_E2E_TRAIN(obj)->core, obj, id, v, ps);
}
static gboolean sink_start(GstBaseSink *s) { return e2e_train_core_start(&GST_E2E_TRAIN(s)->core); }
static gboolean sink_stop(GstBaseSink *s) {
  e2e_train_core_stop(&GST_E2E_TRAIN(s)->core);
  return TRUE;
}
static gboolean sink_set_caps(GstBaseSink *s, GstCaps *caps) { return e2e_train_core_set_caps(&GST_E2E_TRAIN(s)->core, caps); }
static GstFlowReturn sink_render(GstBaseSink *s, GstBuffer *buf) { return e2e_train_core_frame(&GST_E2E_TRAIN(s)->core, buf); }
static gboolean sink_event(GstBaseSink *s, GstEvent *event) {
  if (GST_EVENT_TYPE(event) == GST_EVENT_EOS) e2e_train_core_eos(&GST_E2E_TRAIN(s)->core);
  return GST_BASE_SINK_CLASS(gst_e2e_train_parent_class)->event(s, event);
}
/* a waiting render (leaky=false) must not hold a flush or a state change back */
static gboolean sink_unlock(GstBaseSink *s) {
  e2e_train_core_set_flushing(&GST_E2E_TRAIN(s)->core, TRUE);
  return TRUE;
}
static gboolean sink_unlock_stop(GstBaseSink *s) {
  e2e_train_core_set_flushing(&GST_E2E_TRAIN(s)->core, FALSE);
  return TRUE;
}

static void sink_finalize(GObject *obj) {
  e2e_train_core_clear(&GST_E2E_TRAIN(obj)->core);
  G_OBJECT_CLASS(gst_e2e_train_parent_class)->finalize(obj);
}

static void gst_e2e_train_class_init(GstE2eTrainClass *klass) {
  GObjectClass *oc = G_OBJECT_CLASS(klass);
  GstElementClass *ec = GST_ELEMENT_CLASS(klass);
  GstBaseSinkClass *bc = GST_BASE_SINK_CLASS(klass);
  oc->set_property = sink_set_property;
  oc->get_property = sink_get_property;
  oc->finalize = sink_finalize;
  e2e_train_core_install_properties(oc);
  gst_element_class_set_static_metadata(ec, "End-to-end online trainer", "Sink/Video",
      "Trains a detector on the frames it receives, with their region-of-interest metas (or a label file) as "
      "targets, and publishes validated versions into the model slot named by model-name", "gst-e2e developers");
  gst_element_class_add_static_pad_template(ec, &sink_template);
  bc->start = sink_start;
  bc->stop = sink_stop;
  bc->set_caps = sink_set_caps;
  bc->render = sink_render;
  bc->unlock = sink_unlock;
  bc->unlock_stop = sink_unlock_stop;
  bc->event = sink_event;
}

static void gst_e2e_train_init(GstE2eTrain *self) {
  e2e_train_core_init(&self->core, GST_ELEMENT(self), &GST_BASE_SINK(self)->segment);
  gst_base_sink_set_sync(GST_BASE_SINK(self), FALSE);
}

/* ------------------------------------------------------------ the pass-through filter */

G_DEFINE_TYPE(GstE2eTrainFilter, gst_e2e_train_filter, GST_TYPE_BASE_TRANSFORM)

static void filter_set_property(GObject *obj, guint id, const GValue *v, GParamSpec *ps) {
  e2e_train_core_set_property(&GST_E2E_TRAIN_FILTER(obj)->core, obj, id, v, ps);
}
static void filter_get_property(GObject *obj, guint id, GValue *v, GParamSpec *ps) {
  e2e_train_core_get_property(&GST_E2E_TRAIN_FILTER(obj)->core, obj, id, v, ps);
}
static gboolean filter_start(GstBaseTransform *t) { return e2e_train_core_start(&GST_E2E_TRAIN_FILTER(t)->core); }
static gboolean filter_stop(GstBaseTransform *t) {
  e2e_train_core_stop(&GST_E2E_TRAIN_FILTER(t)->core);
  return TRUE;
}
static gboolean filter_set_caps(GstBaseTransform *t, GstCaps *in, GstCaps *out) {
  (void)out;
  return e2e_train_core_set_caps(&GST_E2E_TRAIN_FILTER(t)->core, in);
}
static GstFlowReturn filter_transform_ip(GstBaseTransform *t, GstBuffer *buf) {
  return e2e_train_core_frame(&GST_E2E_TRAIN_FILTER(t)->core, buf);
}
/* the end of the stream waits for max-steps here too; a flush wakes a waiting frame or end of stream */
static gboolean filter_sink_event(GstBaseTransform *t, GstEvent *event) {
  GstE2eTrainFilter *self = GST_E2E_TRAIN_FILTER(t);
  switch (GST_EVENT_TYPE(event)) {
  case GST_EVENT_EOS: e2e_train_core_eos(&self->core); break;
  case GST_EVENT_FLUSH_START: e2e_train_core_set_flushing(&self->core, TRUE); break;
  case GST_EVENT_FLUSH_STOP: e2e_train_core_set_flushing(&self->core, FALSE); break;
  default: break;
  }
  return GST_BASE_TRANSFORM_CLASS(gst_e2e_train_filter_parent_class)->sink_event(t, event);
}

/* a state change down from PAUSED must not wait behind a frame held for the trainer */
static GstStateChangeReturn filter_change_state(GstElement *e, GstStateChange t) {
  GstE2eTrainFilter *self = GST_E2E_TRAIN_FILTER(e);
  if (t == GST_STATE_CHANGE_PAUSED_TO_READY) e2e_train_core_set_flushing(&self->core, TRUE);
  return GST_ELEMENT_CLASS(gst_e2e_train_filter_parent_class)->change_state(e, t);
}

static void filter_finalize(GObject *obj) {
  e2e_train_core_clear(&GST_E2E_TRAIN_FILTER(obj)->core);
  G_OBJECT_CLASS(gst_e2e_train_filter_parent_class)->finalize(obj);
}

static void gst_e2e_train_filter_class_init(GstE2eTrainFilterClass *klass) {
  GObjectClass *oc = G_OBJECT_CLASS(klass);
  GstElementClass *ec = GST_ELEMENT_CLASS(klass);
  GstBaseTransformClass *bc = GST_BASE_TRANSFORM_CLASS(klass);
  oc->set_property = filter_set_property;
  oc->get_property = filter_get_property;
  oc->finalize = filter_finalize;
  ec->change_state = filter_change_state;
  e2e_train_core_install_properties(oc);
  gst_element_class_set_static_metadata(ec, "End-to-end online trainer (pass-through)", "Filter/Video",
      "e2etrain in the stream's path: trains on the frames that pass, and passes each one on unchanged",
      "gst-e2e developers");
  gst_element_class_add_static_pad_template(ec, &sink_template);
  gst_element_class_add_static_pad_template(ec, &src_template);
  bc->start = filter_start;
  bc->stop = filter_stop;
  bc->set_caps = filter_set_caps;
  bc->transform_ip = filter_transform_ip;
  bc->sink_event = filter_sink_event;
  bc->passthrough_on_same_caps = TRUE;
}

static void gst_e2e_train_filter_init(GstE2eTrainFilter *self) {
  e2e_train_core_init(&self->core, GST_ELEMENT(self), &GST_BASE_TRANSFORM(self)->segment);
  gst_base_transform_set_passthrough(GST_BASE_TRANSFORM(self), TRUE);
}
