/* e2ecodecdec: video/x-e2e-lic pictures -> RGB frames. Each input buffer is
 * one coded picture (the parser splits byte streams). A picture that is
 * truncated, corrupted, made by another model, or too large for max-memory is dropped with a warning
 * (GstVideoDecoder's max-errors decides when that becomes an error); the predicted pictures after it are
 * dropped until the next intra picture, which the decoder asks upstream for. A missing picture (a gap in the
 * sequence numbers) gets one warning, and the pictures after it are dropped the same way.
 * Pictures that end before the segment starts (those a seek passes on its way to its target) are never
 * reconstructed: they are kept, undecoded, until a shown picture needs them as its reference chain,
 * and then only their latents are decoded; after an intra picture they are dropped unread. The LATENCY
 * query gets the decoding time of a picture (the slowest of the last ones). */
#include <string.h>

#include "gste2ecodec.h"

GST_DEBUG_CATEGORY_STATIC(e2ecodecdec_debug);
#define GST_CAT_DEFAULT e2ecodecdec_debug

struct _GstE2eCodecDec {
  GstVideoDecoder parent;
  E2eElementModel model; /* model, model-name, device, num-threads, max-memory; the session while running */
  GstVideoCodecState *in_state;
  gint out_w, out_h;
  guint8 *rgb;
  codec_reference *ref; /* the last decoded picture's latents */
  GPtrArray *pending;   /* GstBuffer: pictures before the segment start since the last intra one, not decoded */
  GstClockTime latency; /* reported decoding time */
  gboolean waiting;     /* for an intra picture, after a warning said why */
};

/* A chain of undecoded pictures longer than this is decoded as it grows (memory stays bounded). */
#define MAX_PENDING 256


G_DEFINE_TYPE(GstE2eCodecDec, gst_e2e_codec_dec, GST_TYPE_VIDEO_DECODER)

static GstStaticPadTemplate sink_t =
    GST_STATIC_PAD_TEMPLATE("sink", GST_PAD_SINK, GST_PAD_ALWAYS, GST_STATIC_CAPS(E2E_LIC_CAPS ", parsed = (boolean) true"));
static GstStaticPadTemplate src_t =
    GST_STATIC_PAD_TEMPLATE("src", GST_PAD_SRC, GST_PAD_ALWAYS, GST_STATIC_CAPS(GST_VIDEO_CAPS_MAKE("RGB")));

/* The model opens before the base class starts: a bad one posts one error (ours), not a second one from
 * the base class. */
static GstStateChangeReturn change_state(GstElement *e, GstStateChange t) {
  return e2e_element_change_state(e, &GST_E2E_CODEC_DEC(e)->model, t, GST_ELEMENT_CLASS(gst_e2e_codec_dec_parent_class));
}

static gboolean dec_start(GstVideoDecoder *dec) {
  GstE2eCodecDec *self = GST_E2E_CODEC_DEC(dec);
  self->out_w = self->out_h = 0;
  self->latency = 0;
  self->waiting = FALSE;
  self->ref = codec_reference_new();
  self->pending = g_ptr_array_new_with_free_func((GDestroyNotify)gst_buffer_unref);
  gst_video_decoder_set_packetized(dec, TRUE);
  gst_video_decoder_set_needs_sync_point(dec, TRUE); /* predicted pictures before the first intra one are useless */
  return self->ref != NULL;
}

/* After a seek or a flush, what came before is gone. */
static gboolean dec_flush(GstVideoDecoder *dec) {
  GstE2eCodecDec *self = GST_E2E_CODEC_DEC(dec);
  codec_reference_reset(self->ref);
  if (self->pending) g_ptr_array_set_size(self->pending, 0);
  self->waiting = FALSE; /* GstVideoDecoder drops predicted pictures until an intra one (needs-sync-point) */
  return TRUE;
}

static gboolean dec_stop(GstVideoDecoder *dec) {
  GstE2eCodecDec *self = GST_E2E_CODEC_DEC(dec);
  g_clear_pointer(&self->rgb, g_free);
  g_clear_pointer(&self->in_state, gst_video_codec_state_unref);
  g_clear_pointer(&self->ref, codec_reference_free);
  g_clear_pointer(&self->pending, g_ptr_array_unref);
  return TRUE;
}

/* A stream from the other shipped model (the live profile's, say): when neither model nor model-name was set,
 * the decoder switches to the shipped model whose id the stream names. */
static gboolean pick_shipped_model(GstE2eCodecDec *self, const gchar *id) {
  g_mutex_lock(&self->model.lock);
  gboolean chosen = self->model.model_given || (self->model.model_name && *self->model.model_name);
  gchar *current = g_strdup(self->model.model);
  g_mutex_unlock(&self->model.lock);
  const char *const shipped[] = {E2E_CODEC_QUALITY_MODEL, E2E_CODEC_LIVE_MODEL};
  gboolean switched = FALSE;
  for (guint k = 0; !chosen && !switched && k < G_N_ELEMENTS(shipped); k++) {
    char *path = e2e_model_path(shipped[k]);
    e2e_model *m = strcmp(path, current) != 0 ? e2e_model_open(path, E2E_TASK_CODEC) : NULL;
    gchar theirs[16] = "";
    if (m) g_snprintf(theirs, sizeof theirs, "%08x", e2e_model_describe(m)->id);
    e2e_model_unref(m);
    if (m && g_ascii_strcasecmp(id, theirs) == 0) {
      GST_INFO_OBJECT(self, "stream from model %s: switching to the shipped %s", id, path);
      switched = e2e_element_reopen(GST_ELEMENT(self), &self->model, path);
      codec_reference_reset(self->ref);
    }
    free(path);
  }
  g_free(current);
  return switched;
}

static gboolean dec_set_format(GstVideoDecoder *dec, GstVideoCodecState *state) {
  GstE2eCodecDec *self = GST_E2E_CODEC_DEC(dec);
  g_clear_pointer(&self->in_state, gst_video_codec_state_unref);
  self->in_state = gst_video_codec_state_ref(state);
  const gchar *id = gst_structure_get_string(gst_caps_get_structure(state->caps, 0), "model-id");
  gchar mine[16];
  g_snprintf(mine, sizeof mine, "%08x", e2e_model_describe(e2e_session_model(self->model.session))->id);
  if (id && g_ascii_strcasecmp(id, mine) != 0 && pick_shipped_model(self, id)) return TRUE;
  if (id && g_ascii_strcasecmp(id, mine) != 0) {
    GST_ELEMENT_ERROR(self, STREAM, WRONG_TYPE,
                      ("This stream was coded with codec model %s, but the decoder loaded model %s.", id, mine),
                      ("set the decoder's model property to the encoder's model file"));
    return FALSE;
  }
  return TRUE;
}

/* Drops a bad picture: a WARNING message on the bus says why; GstVideoDecoder's
 * max-errors turns too many of them into an error. */
static GstFlowReturn drop_picture(GstE2eCodecDec *self, GstVideoCodecFrame *frame, const gchar *what, const gchar *why) {
  GstFlowReturn ret = GST_FLOW_OK;
  codec_reference_reset(self->ref); /* what follows it waits for the next intra picture */
  self->waiting = TRUE;
  GST_ELEMENT_WARNING(self, STREAM, DECODE, ("%s e2ecodec picture dropped.", what), ("%s", why));
  GST_VIDEO_DECODER_ERROR(self, 1, STREAM, DECODE, ("Too many e2ecodec pictures dropped."), ("%s", why), ret);
  gst_video_decoder_drop_frame(GST_VIDEO_DECODER(self), frame);
  return ret;
}

static GstFlowReturn drop_corrupt(GstE2eCodecDec *self, GstVideoCodecFrame *frame, const gchar *why) {
  return drop_picture(self, frame, "Corrupt", why);
}

/* Whether the frame ends before the segment starts, so that it would never be shown. */
static gboolean before_segment(GstVideoDecoder *dec, GstVideoCodecFrame *frame) {
  const GstSegment *seg = &dec->input_segment;
  if (seg->format != GST_FORMAT_TIME || seg->rate < 0 || !GST_CLOCK_TIME_IS_VALID(frame->pts) ||
      !GST_CLOCK_TIME_IS_VALID(frame->duration))
    return FALSE;
  return frame->pts + frame->duration <= (GstClockTime)seg->start;
}

/* Decodes the kept pictures' latents (no reconstruction) so that the reference is the last of them. */
static void decode_pending(GstE2eCodecDec *self, const codec_options *opts) {
  for (guint i = 0; i < self->pending->len; i++) {
    GstMapInfo map;
    GstBuffer *b = g_ptr_array_index(self->pending, i);
    codec_header h;
    gboolean ok = gst_buffer_map(b, &map, GST_MAP_READ);
    if (ok) {
      ok = codec_parse_header(map.data, map.size, &h) &&
           e2e_codec_decode_video(self->model.session, opts, map.data, map.size, NULL, h.width, h.height, self->ref);
      gst_buffer_unmap(b, &map);
    }
    if (!ok) {
      GST_DEBUG_OBJECT(self, "a picture before the segment does not decode (%s)", e2e_last_error());
      codec_reference_reset(self->ref);
      break;
    }
  }
  g_ptr_array_set_size(self->pending, 0);
}

/* Reports the decoding time as latency when it grew, or fell by more than a quarter. */
static void update_latency(GstE2eCodecDec *self, GstClockTime took) {
  if (took > self->latency || took < self->latency * 3 / 4) {
    self->latency = took;
    gst_video_decoder_set_latency(GST_VIDEO_DECODER(self), took, took);
  }
}

static GstFlowReturn dec_handle_frame(GstVideoDecoder *dec, GstVideoCodecFrame *frame) {
  GstE2eCodecDec *self = GST_E2E_CODEC_DEC(dec);
  GstMapInfo map;
  GstFlowReturn ret = GST_FLOW_OK;
  if (!gst_buffer_map(frame->input_buffer, &map, GST_MAP_READ)) {
    GST_VIDEO_DECODER_ERROR(self, 1, STREAM, DECODE, ("Cannot map the input buffer."), (NULL), ret);
    gst_video_decoder_drop_frame(dec, frame);
    return ret;
  }
  codec_header h;
  if (!codec_parse_header(map.data, map.size, &h)) {
    gst_buffer_unmap(frame->input_buffer, &map);
    return drop_corrupt(self, frame, e2e_last_error());
  }
  codec_options opts = {.memory_limit = e2e_element_max_memory(&self->model)};
  if (before_segment(dec, frame)) { /* kept, not decoded (see the top of the file) */
    gst_buffer_unmap(frame->input_buffer, &map);
    if (!h.predicted) g_ptr_array_set_size(self->pending, 0);
    g_ptr_array_add(self->pending, gst_buffer_ref(frame->input_buffer));
    if (self->pending->len > MAX_PENDING) decode_pending(self, &opts);
    gst_video_decoder_release_frame(dec, frame);
    return GST_FLOW_OK;
  }
  if (h.predicted) decode_pending(self, &opts);
  else g_ptr_array_set_size(self->pending, 0);
  if (!codec_reference_precedes(self->ref, &h)) {
    /* a lost picture, or after a corrupt one (already reported): wait for the next intra picture */
    gst_buffer_unmap(frame->input_buffer, &map);
    if (!self->waiting)
      GST_ELEMENT_WARNING(self, STREAM, DECODE, ("An e2ecodec picture is missing: waiting for the next intra picture."),
                          ("predicted picture %d does not follow the last decoded one", h.seq));
    self->waiting = TRUE;
    GST_DEBUG_OBJECT(self, "predicted picture %d without its reference: dropped", h.seq);
    gst_video_decoder_request_sync_point(dec, frame, GST_VIDEO_DECODER_REQUEST_SYNC_POINT_DISCARD_INPUT);
    return gst_video_decoder_drop_frame(dec, frame);
  }
  /* before negotiating and allocating for it: a header can claim any size up to 16384x16384 */
  if (!e2e_codec_check_memory(self->model.session, &opts, h.width, h.height, FALSE)) {
    gst_buffer_unmap(frame->input_buffer, &map);
    return drop_picture(self, frame, "Too large", e2e_last_error());
  }
  if (h.width != self->out_w || h.height != self->out_h) {
    GstVideoCodecState *out = gst_video_decoder_set_output_state(dec, GST_VIDEO_FORMAT_RGB, h.width, h.height, self->in_state);
    if (h.fps_n > 0 && (!self->in_state || GST_VIDEO_INFO_FPS_N(&self->in_state->info) == 0)) {
      GST_VIDEO_INFO_FPS_N(&out->info) = h.fps_n;
      GST_VIDEO_INFO_FPS_D(&out->info) = h.fps_d;
    }
    gst_video_codec_state_unref(out);
    if (!gst_video_decoder_negotiate(dec)) {
      gst_buffer_unmap(frame->input_buffer, &map);
      gst_video_decoder_drop_frame(dec, frame);
      return GST_FLOW_NOT_NEGOTIATED;
    }
    self->out_w = h.width;
    self->out_h = h.height;
    g_free(self->rgb);
    self->rgb = g_malloc((size_t)h.width * h.height * 3);
  }
  gint64 t0 = g_get_monotonic_time();
  gboolean ok = e2e_codec_decode_video(self->model.session, &opts, map.data, map.size, self->rgb, h.width, h.height, self->ref);
  gst_buffer_unmap(frame->input_buffer, &map);
  if (ok) update_latency(self, (GstClockTime)(g_get_monotonic_time() - t0) * GST_USECOND);
  if (ok) self->waiting = FALSE;
  if (!ok) return drop_corrupt(self, frame, e2e_last_error());
  ret = gst_video_decoder_allocate_output_frame(dec, frame);
  if (ret != GST_FLOW_OK) {
    gst_video_decoder_drop_frame(dec, frame);
    return ret;
  }
  GstVideoCodecState *out = gst_video_decoder_get_output_state(dec);
  GstVideoFrame vf;
  if (!gst_video_frame_map(&vf, &out->info, frame->output_buffer, GST_MAP_WRITE)) {
    gst_video_codec_state_unref(out);
    gst_video_decoder_drop_frame(dec, frame);
    return GST_FLOW_ERROR;
  }
  for (int y = 0; y < h.height; y++)
    memcpy((guint8 *)GST_VIDEO_FRAME_PLANE_DATA(&vf, 0) + (size_t)y * GST_VIDEO_FRAME_PLANE_STRIDE(&vf, 0),
           self->rgb + (size_t)y * h.width * 3, (size_t)h.width * 3);
  gst_video_frame_unmap(&vf);
  gst_video_codec_state_unref(out);
  return gst_video_decoder_finish_frame(dec, frame);
}

static void set_property(GObject *obj, guint id, const GValue *v, GParamSpec *ps) {
  if (!e2e_element_set_property(GST_ELEMENT(obj), &GST_E2E_CODEC_DEC(obj)->model, id, v))
    G_OBJECT_WARN_INVALID_PROPERTY_ID(obj, id, ps);
}

static void get_property(GObject *obj, guint id, GValue *v, GParamSpec *ps) {
  if (!e2e_element_get_property(&GST_E2E_CODEC_DEC(obj)->model, id, v)) G_OBJECT_WARN_INVALID_PROPERTY_ID(obj, id, ps);
}

static void finalize(GObject *obj) {
  e2e_element_model_clear(&GST_E2E_CODEC_DEC(obj)->model);
  G_OBJECT_CLASS(gst_e2e_codec_dec_parent_class)->finalize(obj);
}

static void gst_e2e_codec_dec_init(GstE2eCodecDec *self) { e2e_element_model_init(&self->model, E2E_TASK_CODEC, E2E_ELEMENT_MAX_MEMORY); }

static void gst_e2e_codec_dec_class_init(GstE2eCodecDecClass *klass) {
  GObjectClass *oc = G_OBJECT_CLASS(klass);
  GstElementClass *ec = GST_ELEMENT_CLASS(klass);
  GstVideoDecoderClass *vc = GST_VIDEO_DECODER_CLASS(klass);
  GST_DEBUG_CATEGORY_INIT(e2ecodecdec_debug, "e2ecodecdec", 0, "learned image codec decoder");
  oc->set_property = set_property;
  oc->get_property = get_property;
  oc->finalize = finalize;
  e2e_element_install_properties(oc, E2E_TASK_CODEC, E2E_ELEMENT_MAX_MEMORY);
  gst_element_class_add_static_pad_template(ec, &sink_t);
  gst_element_class_add_static_pad_template(ec, &src_t);
  gst_element_class_set_static_metadata(ec, "e2e learned image codec decoder", "Codec/Decoder/Video",
      "Decodes pictures of the learned scale-hyperprior image codec (e2ecodec)", "gst-e2e");
  ec->change_state = change_state;
  vc->start = dec_start;
  vc->stop = dec_stop;
  vc->flush = dec_flush;
  vc->set_format = dec_set_format;
  vc->handle_frame = dec_handle_frame;
}
