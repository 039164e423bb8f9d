/* e2ecodecenc: raw video -> learned coded pictures (video/x-e2e-lic).
 * Frames of any format GstVideoConverter handles are turned into RGB, padded
 * internally to the network's stride of 64, coded at the current "quality"
 * (changeable while playing: every picture carries its level). An intra picture starts the stream, comes
 * every key-int-max frames, on a force-key-unit event and after a change of quality or size; the others
 * are predicted from the picture before (models/codec/predict.c). With
 * message=true it posts "e2ecodec-frame" messages {bytes, bpp, psnr, quality,
 * encode-ms, predicted} (and target-kbps, kbps with a bitrate); the PSNR is that of the decoder's exact
 * reconstruction. The LATENCY query gets the
 * coding time of a frame: estimated from a grey frame at the negotiated size when the format is set (so a
 * live pipeline knows it before the first frame), then the slowest of the last frames. After a flush the
 * next picture is intra. */
#include <math.h>
#include <string.h>

#include "e2e/image.h"
#include "gste2ecodec.h"

GST_DEBUG_CATEGORY_STATIC(e2ecodecenc_debug);
#define GST_CAT_DEFAULT e2ecodecenc_debug

struct _GstE2eCodecEnc {
  GstVideoEncoder parent;
  E2eElementModel model; /* model, model-name, device, num-threads, max-memory; the session while running */
  GMutex lock;           /* the properties below */
  guint quality, refine_steps, key_int_max, bitrate, roi_quality;
  E2eCodecProfile profile;
  gdouble roi_weight, background_weight;
  gboolean post_messages;
  codec_reference *ref;  /* the last coded picture, for the next predicted one */
  guint since_key;       /* frames since the last intra picture */
  GstClockTime latency;  /* reported coding time */
  codec_rate_control rate; /* with bitrate > 0 */
  guint rate_bitrate;      /* the bitrate rate was set up for (0: not set up) */
  GstVideoCodecState *in_state;
  GstVideoConverter *conv;
  guint8 *rgb, *recon;
  guint8 *inside;  /* per 16x16 block: 1 inside one of the frame's regions of interest */
  gfloat *weights; /* per 16x16 block, from inside */
};

enum { PROP_0, PROP_QUALITY, PROP_MESSAGE, PROP_REFINE_STEPS, PROP_KEY_INT_MAX, PROP_BITRATE, PROP_ROI_WEIGHT,
       PROP_BACKGROUND_WEIGHT, PROP_ROI_QUALITY, PROP_PROFILE };

#define DEFAULT_ROI_WEIGHT 4.0

#define DEFAULT_KEY_INT_MAX 60

G_DEFINE_TYPE(GstE2eCodecEnc, gst_e2e_codec_enc, GST_TYPE_VIDEO_ENCODER)

GType gst_e2e_codec_profile_get_type(void) {
  static GType type = 0;
  static const GEnumValue values[] = {
      {E2E_CODEC_PROFILE_QUALITY, "The shipped model (best rate-distortion)", "quality"},
      {E2E_CODEC_PROFILE_LIVE, "The narrow live model: about 5x faster, some 60 % more bits for the same PSNR", "live"},
      {0, NULL, NULL}};
  if (g_once_init_enter(&type)) g_once_init_leave(&type, g_enum_register_static("GstE2eCodecProfile", values));
  return type;
}

static GstStaticPadTemplate sink_t = GST_STATIC_PAD_TEMPLATE("sink", GST_PAD_SINK, GST_PAD_ALWAYS, GST_STATIC_CAPS(E2E_CODEC_RAW_CAPS));
static GstStaticPadTemplate src_t = GST_STATIC_PAD_TEMPLATE(
    "src", GST_PAD_SRC, GST_PAD_ALWAYS,
    GST_STATIC_CAPS(E2E_LIC_CAPS ", width = (int) [ 1, 16384 ], height = (int) [ 1, 16384 ], parsed = (boolean) true"));

/* The model opens before the base class starts: a bad one posts one error (ours), not a second one from
 * the base class. */
static GstStateChangeReturn change_state(GstElement *e, GstStateChange t) {
  return e2e_element_change_state(e, &GST_E2E_CODEC_ENC(e)->model, t, GST_ELEMENT_CLASS(gst_e2e_codec_enc_parent_class));
}

static gboolean enc_stop(GstVideoEncoder *enc) {
  GstE2eCodecEnc *self = GST_E2E_CODEC_ENC(enc);
  if (self->conv) gst_video_converter_free(self->conv);
  self->conv = NULL;
  g_clear_pointer(&self->rgb, g_free);
  g_clear_pointer(&self->recon, g_free);
  g_clear_pointer(&self->weights, g_free);
  g_clear_pointer(&self->inside, g_free);
  g_clear_pointer(&self->in_state, gst_video_codec_state_unref);
  g_clear_pointer(&self->ref, codec_reference_free);
  return TRUE;
}

/* The frame's regions of interest (GstVideoRegionOfInterestMeta, e.g. e2edetect's) as a map of the 16x16
 * blocks they touch (self->inside); false when the frame has none. */
static gboolean read_regions(GstE2eCodecEnc *self, GstBuffer *buf, int w, int h) {
  int cols, rows;
  codec_block_grid(w, h, &cols, &rows);
  gpointer state = NULL;
  GstMeta *meta;
  gboolean any = FALSE;
  while ((meta = gst_buffer_iterate_meta_filtered(buf, &state, GST_VIDEO_REGION_OF_INTEREST_META_API_TYPE))) {
    const GstVideoRegionOfInterestMeta *r = (const GstVideoRegionOfInterestMeta *)meta;
    if (!any) {
      self->inside = g_realloc(self->inside, (gsize)cols * rows);
      memset(self->inside, 0, (gsize)cols * rows);
      any = TRUE;
    }
    for (guint by = r->y / 16; by < (guint)rows && by * 16 < (guint64)r->y + r->h; by++)
      for (guint bx = r->x / 16; bx < (guint)cols && bx * 16 < (guint64)r->x + r->w; bx++) self->inside[by * cols + bx] = 1;
  }
  return any;
}

/* The regions as block weights for predicted frames: roi inside, background elsewhere. NULL when both are 1. */
static const float *roi_weights(GstE2eCodecEnc *self, int w, int h, double roi, double background) {
  if (roi == 1.0 && background == 1.0) return NULL;
  int cols, rows;
  codec_block_grid(w, h, &cols, &rows);
  self->weights = g_renew(gfloat, self->weights, (gsize)cols * rows);
  for (int k = 0; k < cols * rows; k++) self->weights[k] = (float)(self->inside[k] ? roi : background);
  return self->weights;
}

/* Reports the coding time as latency when it grew, or fell by more than a quarter. */
static void update_latency(GstE2eCodecEnc *self, GstClockTime took) {
  if (took > self->latency || took < self->latency * 3 / 4) {
    self->latency = took;
    gst_video_encoder_set_latency(GST_VIDEO_ENCODER(self), took, took);
  }
}

/* The coding time of a frame of this size before any has come: twice an intra picture's on a grey frame (a
 * predicted picture reconstructs twice, an intra one once). Within the element's memory limit: a frame too
 * large for it is refused at the first real frame, with a message. */
static void measure_latency(GstE2eCodecEnc *self, int w, int h, int quality) {
  codec_options opts = {.memory_limit = e2e_element_max_memory(&self->model)};
  guint8 *grey = g_malloc((size_t)w * h * 3);
  memset(grey, 128, (size_t)w * h * 3);
  uint8_t *stream = NULL;
  size_t len = 0;
  gint64 t0 = g_get_monotonic_time();
  gboolean ok = e2e_codec_encode_video(self->model.session, &opts, quality, TRUE, grey, w, h, w * 3, NULL, &stream, &len, NULL);
  gint64 took = 2 * (g_get_monotonic_time() - t0);
  free(stream);
  g_free(grey);
  self->latency = 0;
  if (ok) update_latency(self, (GstClockTime)took * GST_USECOND);
}

/* After a seek or a flush the decoder has forgotten the last picture: the next one is intra. */
static gboolean enc_flush(GstVideoEncoder *enc) {
  GstE2eCodecEnc *self = GST_E2E_CODEC_ENC(enc);
  codec_reference_reset(self->ref);
  self->since_key = 0;
  return TRUE;
}

static gboolean enc_set_format(GstVideoEncoder *enc, GstVideoCodecState *state) {
  GstE2eCodecEnc *self = GST_E2E_CODEC_ENC(enc);
  GstVideoInfo *in = &state->info;
  g_clear_pointer(&self->in_state, gst_video_codec_state_unref);
  self->in_state = gst_video_codec_state_ref(state);
  if (self->conv) gst_video_converter_free(self->conv);
  self->conv = NULL;
  if (GST_VIDEO_INFO_FORMAT(in) != GST_VIDEO_FORMAT_RGB) {
    GstVideoInfo rgb;
    gst_video_info_set_format(&rgb, GST_VIDEO_FORMAT_RGB, GST_VIDEO_INFO_WIDTH(in), GST_VIDEO_INFO_HEIGHT(in));
    GST_VIDEO_INFO_PLANE_STRIDE(&rgb, 0) = GST_VIDEO_INFO_WIDTH(in) * 3;
    GST_VIDEO_INFO_FPS_N(&rgb) = GST_VIDEO_INFO_FPS_N(in);
    GST_VIDEO_INFO_FPS_D(&rgb) = GST_VIDEO_INFO_FPS_D(in);
    self->conv = gst_video_converter_new(in, &rgb, NULL);
    if (!self->conv) {
      GST_ELEMENT_ERROR(self, CORE, NEGOTIATION, ("Cannot convert %s to RGB for the codec.",
                                                   gst_video_format_to_string(GST_VIDEO_INFO_FORMAT(in))), (NULL));
      return FALSE;
    }
  }
  size_t n = (size_t)GST_VIDEO_INFO_WIDTH(in) * GST_VIDEO_INFO_HEIGHT(in) * 3;
  g_free(self->rgb);
  g_free(self->recon);
  self->rgb = g_malloc(n);
  self->recon = g_malloc(n);
  if (!self->ref) self->ref = codec_reference_new();
  codec_reference_reset(self->ref); /* a new format starts with an intra picture */
  self->rate_bitrate = 0;           /* and a new rate control, at its frame rate */
  g_mutex_lock(&self->lock);
  int quality = (int)self->quality;
  g_mutex_unlock(&self->lock);
  measure_latency(self, GST_VIDEO_INFO_WIDTH(in), GST_VIDEO_INFO_HEIGHT(in), quality);
  GstCaps *caps = gst_caps_new_simple(E2E_LIC_CAPS, "parsed", G_TYPE_BOOLEAN, TRUE, NULL);
  gchar id[16];
  g_snprintf(id, sizeof id, "%08x", e2e_model_describe(e2e_session_model(self->model.session))->id);
  gst_caps_set_simple(caps, "model-id", G_TYPE_STRING, id, NULL);
  GstVideoCodecState *out = gst_video_encoder_set_output_state(enc, caps, state);
  gst_video_codec_state_unref(out);
  return gst_video_encoder_negotiate(enc);
}

static GstFlowReturn enc_handle_frame(GstVideoEncoder *enc, GstVideoCodecFrame *frame) {
  GstE2eCodecEnc *self = GST_E2E_CODEC_ENC(enc);
  if (!self->in_state) {
    gst_video_codec_frame_unref(frame);
    return GST_FLOW_NOT_NEGOTIATED;
  }
  GstVideoInfo *in = &self->in_state->info;
  int w = GST_VIDEO_INFO_WIDTH(in), h = GST_VIDEO_INFO_HEIGHT(in);
  GstVideoFrame vf;
  if (!gst_video_frame_map(&vf, in, frame->input_buffer, GST_MAP_READ)) {
    GST_ELEMENT_ERROR(self, STREAM, FAILED, ("Cannot map the input frame."), (NULL));
    gst_video_codec_frame_unref(frame);
    return GST_FLOW_ERROR;
  }
  if (self->conv) {
    GstVideoInfo rgb;
    gst_video_info_set_format(&rgb, GST_VIDEO_FORMAT_RGB, w, h);
    GST_VIDEO_INFO_PLANE_STRIDE(&rgb, 0) = w * 3; /* our buffer is packed */
    GstVideoFrame of = {0};
    of.info = rgb;
    of.data[0] = self->rgb;
    gst_video_converter_frame(self->conv, &vf, &of);
  } else {
    for (int y = 0; y < h; y++)
      memcpy(self->rgb + (size_t)y * w * 3, (guint8 *)GST_VIDEO_FRAME_PLANE_DATA(&vf, 0) + (size_t)y * GST_VIDEO_FRAME_PLANE_STRIDE(&vf, 0),
             (size_t)w * 3);
  }
  gst_video_frame_unmap(&vf);
  g_mutex_lock(&self->lock);
  int quality = (int)self->quality;
  gboolean post = self->post_messages;
  guint key_int = self->key_int_max, bitrate = self->bitrate;
  double roi = self->roi_weight, background = self->background_weight;
  int roi_quality = (int)self->roi_quality;
  codec_options opts = {.refine_steps = (int)self->refine_steps, .memory_limit = e2e_element_max_memory(&self->model)};
  g_mutex_unlock(&self->lock);
  uint8_t *stream = NULL;
  size_t len = 0;
  gint64 t0 = g_get_monotonic_time();
  gboolean key = GST_VIDEO_CODEC_FRAME_IS_FORCE_KEYFRAME(frame) || (key_int > 0 && self->since_key + 1 >= key_int);
  if (read_regions(self, frame->input_buffer, w, h)) {
    opts.block_weights = roi_weights(self, w, h, roi, background);
    opts.roi_blocks = self->inside;
    opts.roi_quality = roi_quality;
  }
  if (bitrate > 0) { /* rate control: the level (at intra pictures) and how many blocks predicted ones code */
    if (self->rate_bitrate != bitrate) {
      double fps = GST_VIDEO_INFO_FPS_N(in) > 0 ? (double)GST_VIDEO_INFO_FPS_N(in) / GST_VIDEO_INFO_FPS_D(in) : 30.0;
      codec_rate_init(&self->rate, bitrate * 1000.0, fps, self->rate_bitrate ? self->rate.quality : quality);
      self->rate_bitrate = bitrate;
    }
    quality = codec_rate_next(&self->rate, key || !codec_reference_ready(self->ref, self->rate.quality, w, h), &opts);
  }
  key = key || !codec_reference_ready(self->ref, quality, w, h);
  gboolean ok = e2e_codec_encode_video(self->model.session, &opts, quality, key, self->rgb, w, h, w * 3, self->ref, &stream,
                                       &len, post ? self->recon : NULL);
  gint64 took = g_get_monotonic_time() - t0;
  double ms = (double)took / 1000.0;
  if (!ok) {
    GST_ELEMENT_ERROR(self, STREAM, ENCODE, ("Learned encoding failed."), ("%s", e2e_last_error()));
    gst_video_codec_frame_unref(frame);
    return GST_FLOW_ERROR;
  }
  update_latency(self, (GstClockTime)took * GST_USECOND);
  gboolean predicted = (stream[6] & CODEC_FLAG_PREDICTED) != 0; /* the header's flags */
  if (bitrate > 0) codec_rate_update(&self->rate, len, predicted, &opts);
  self->since_key = predicted ? self->since_key + 1 : 0;
  codec_set_frame_rate(stream, GST_VIDEO_INFO_FPS_N(in), GST_VIDEO_INFO_FPS_D(in));
  frame->output_buffer = gst_buffer_new_wrapped(stream, len); /* stream is malloc'd: g_free frees it (GLib >= 2.46) */
  if (!predicted) GST_VIDEO_CODEC_FRAME_SET_SYNC_POINT(frame);
  if (post) {
    double psnr = e2e_image_psnr(self->rgb, self->recon, (size_t)w * h * 3);
    GstStructure *s = gst_structure_new("e2ecodec-frame", "timestamp", G_TYPE_UINT64, frame->pts, "bytes", G_TYPE_UINT64,
                                        (guint64)len, "bpp", G_TYPE_DOUBLE, 8.0 * len / ((double)w * h), "psnr",
                                        G_TYPE_DOUBLE, psnr, "quality", G_TYPE_INT, quality, "encode-ms", G_TYPE_DOUBLE, ms,
                                        "predicted", G_TYPE_BOOLEAN, predicted, NULL);
    if (bitrate > 0) {
      double fps = GST_VIDEO_INFO_FPS_N(in) > 0 ? (double)GST_VIDEO_INFO_FPS_N(in) / GST_VIDEO_INFO_FPS_D(in) : 30.0;
      gst_structure_set(s, "target-kbps", G_TYPE_DOUBLE, (double)bitrate, "kbps", G_TYPE_DOUBLE,
                        codec_rate_achieved(&self->rate) * fps / 1000.0, NULL);
    }
    gst_element_post_message(GST_ELEMENT(self), gst_message_new_element(GST_OBJECT(self), s));
  }
  return gst_video_encoder_finish_frame(enc, frame);
}

static void set_property(GObject *obj, guint id, const GValue *v, GParamSpec *ps) {
  GstE2eCodecEnc *self = GST_E2E_CODEC_ENC(obj);
  if (e2e_element_set_property(GST_ELEMENT(self), &self->model, id, v)) return;
  g_mutex_lock(&self->lock);
  switch (id) {
  case PROP_QUALITY: self->quality = g_value_get_uint(v); break;
  case PROP_MESSAGE: self->post_messages = g_value_get_boolean(v); break;
  case PROP_REFINE_STEPS: self->refine_steps = g_value_get_uint(v); break;
  case PROP_KEY_INT_MAX: self->key_int_max = g_value_get_uint(v); break;
  case PROP_BITRATE: self->bitrate = g_value_get_uint(v); break;
  case PROP_ROI_WEIGHT: self->roi_weight = g_value_get_double(v); break;
  case PROP_BACKGROUND_WEIGHT: self->background_weight = g_value_get_double(v); break;
  case PROP_ROI_QUALITY: self->roi_quality = g_value_get_uint(v); break;
  case PROP_PROFILE:
    self->profile = (E2eCodecProfile)g_value_get_enum(v);
    e2e_element_use_shipped(&self->model, self->profile == E2E_CODEC_PROFILE_LIVE ? E2E_CODEC_LIVE_MODEL : E2E_CODEC_QUALITY_MODEL);
    break;
  default: G_OBJECT_WARN_INVALID_PROPERTY_ID(obj, id, ps);
  }
  g_mutex_unlock(&self->lock);
}

static void get_property(GObject *obj, guint id, GValue *v, GParamSpec *ps) {
  GstE2eCodecEnc *self = GST_E2E_CODEC_ENC(obj);
  if (e2e_element_get_property(&self->model, id, v)) return;
  g_mutex_lock(&self->lock);
  switch (id) {
  case PROP_QUALITY: g_value_set_uint(v, self->quality); break;
  case PROP_MESSAGE: g_value_set_boolean(v, self->post_messages); break;
  case PROP_REFINE_STEPS: g_value_set_uint(v, self->refine_steps); break;
  case PROP_KEY_INT_MAX: g_value_set_uint(v, self->key_int_max); break;
  case PROP_BITRATE: g_value_set_uint(v, self->bitrate); break;
  case PROP_ROI_WEIGHT: g_value_set_double(v, self->roi_weight); break;
  case PROP_BACKGROUND_WEIGHT: g_value_set_double(v, self->background_weight); break;
  case PROP_ROI_QUALITY: g_value_set_uint(v, self->roi_quality); break;
  case PROP_PROFILE: g_value_set_enum(v, self->profile); break;
  default: G_OBJECT_WARN_INVALID_PROPERTY_ID(obj, id, ps);
  }
  g_mutex_unlock(&self->lock);
}

static void finalize(GObject *obj) {
  GstE2eCodecEnc *self = GST_E2E_CODEC_ENC(obj);
  e2e_element_model_clear(&self->model);
  g_mutex_clear(&self->lock);
  G_OBJECT_CLASS(gst_e2e_codec_enc_parent_class)->finalize(obj);
}

static void gst_e2e_codec_enc_init(GstE2eCodecEnc *self) {
  e2e_element_model_init(&self->model, E2E_TASK_CODEC, E2E_ELEMENT_MAX_MEMORY);
  g_mutex_init(&self->lock);
  self->quality = CODEC_DEFAULT_QUALITY;
  self->key_int_max = DEFAULT_KEY_INT_MAX;
  self->roi_weight = DEFAULT_ROI_WEIGHT;
  self->background_weight = 1.0;
}

static void gst_e2e_codec_enc_class_init(GstE2eCodecEncClass *klass) {
  GObjectClass *oc = G_OBJECT_CLASS(klass);
  GstElementClass *ec = GST_ELEMENT_CLASS(klass);
  GstVideoEncoderClass *vc = GST_VIDEO_ENCODER_CLASS(klass);
  GST_DEBUG_CATEGORY_INIT(e2ecodecenc_debug, "e2ecodecenc", 0, "learned image codec encoder");
  oc->set_property = set_property;
  oc->get_property = get_property;
  oc->finalize = finalize;
  GParamFlags rw = G_PARAM_READWRITE | G_PARAM_STATIC_STRINGS;
  g_object_class_install_property(oc, PROP_QUALITY, g_param_spec_uint("quality", "Quality",
      "Quality level: 1 (smallest, ~0.2 bpp on photos) .. 5 (best, ~1.1 bpp); can change while playing",
      CODEC_MIN_QUALITY, CODEC_MAX_QUALITY, CODEC_DEFAULT_QUALITY, rw | GST_PARAM_MUTABLE_PLAYING));
  e2e_element_install_properties(oc, E2E_TASK_CODEC, E2E_ELEMENT_MAX_MEMORY);
  g_object_class_install_property(oc, PROP_MESSAGE, g_param_spec_boolean("message", "Message",
      "Post an element message per frame with bytes, bpp, PSNR-RGB and timing", FALSE, rw | GST_PARAM_MUTABLE_PLAYING));
  g_object_class_install_property(oc, PROP_REFINE_STEPS, g_param_spec_uint("refine-steps", "Refinement steps",
      "Encoder effort: gradient steps searching each frame's latents for a lower rate + lambda * distortion "
      "(0: none, for live use). Each step costs about two decodes; 40 save some 4-5 %. Streams and decoders are "
      "unchanged; predicted frames get none", 0, CODEC_MAX_REFINE, 0, rw | GST_PARAM_MUTABLE_PLAYING));
  g_object_class_install_property(oc, PROP_KEY_INT_MAX, g_param_spec_uint("key-int-max", "Maximum key-frame interval",
      "An intra (key) frame at least every this many frames; the frames between are predicted from the one before, "
      "coding only the 16x16 blocks that changed enough to pay for their bits. 1: every frame intra (each one a seek "
      "point, as a still-image codec); 0: intra only at the start, on force-key-unit events and after a change of quality "
      "or size", 0, G_MAXINT, DEFAULT_KEY_INT_MAX, rw | GST_PARAM_MUTABLE_PLAYING));
  g_object_class_install_property(oc, PROP_BITRATE, g_param_spec_uint("bitrate", "Bitrate",
      "Target rate in kbit/s (0: none, every frame at 'quality'). Predicted frames code more or fewer of their "
      "blocks to meet it on average, and the quality level, starting at 'quality', steps at key frames when that "
      "is not enough; 'message' reports the rate achieved beside the target", 0, 10000000, 0,
      rw | GST_PARAM_MUTABLE_PLAYING));
  g_object_class_install_property(oc, PROP_ROI_WEIGHT, g_param_spec_double("roi-weight", "Region-of-interest weight",
      "How much more a change inside a region of interest (a GstVideoRegionOfInterestMeta on the frame, e.g. from "
      "e2edetect) is worth than its bits, in predicted frames: above 1 codes more of the 16x16 blocks that changed "
      "there (1: regions count as any other block)", 1.0 / 64, 64, DEFAULT_ROI_WEIGHT, rw | GST_PARAM_MUTABLE_PLAYING));
  g_object_class_install_property(oc, PROP_BACKGROUND_WEIGHT, g_param_spec_double("background-weight", "Background weight",
      "The same outside the regions of interest, on frames that have some: below 1 codes fewer of the blocks that "
      "changed there", 1.0 / 64, 64, 1.0, rw | GST_PARAM_MUTABLE_PLAYING));
  g_object_class_install_property(oc, PROP_PROFILE, g_param_spec_enum("profile", "Profile",
      "Which shipped model codes, when 'model' is not set: 'quality' (the default) or 'live', a narrower model about "
      "5x faster (320x240 at 30 fps live, encode and decode, on 2 cores) for some 60 % more bits at the same PSNR "
      "(docs/codec.md). Decoders pick the shipped model a stream names by themselves", GST_TYPE_E2E_CODEC_PROFILE, E2E_CODEC_PROFILE_QUALITY,
      rw | GST_PARAM_MUTABLE_READY));
  g_object_class_install_property(oc, PROP_ROI_QUALITY, g_param_spec_uint("roi-quality", "Region-of-interest quality",
      "Quality level of the 16x16 blocks inside regions of interest (GstVideoRegionOfInterestMeta, e.g. from "
      "e2edetect); 'quality' stays the level elsewhere. The transforms run at each block's level, in intra frames "
      "and in the blocks predicted frames code, and the map rides in the stream. 0: regions are coded at 'quality' "
      "(roi-weight still steers predicted frames). With regions on a frame, refine-steps does not run on it",
      0, CODEC_MAX_QUALITY, 0, rw | GST_PARAM_MUTABLE_PLAYING));
  gst_element_class_add_static_pad_template(ec, &sink_t);
  gst_element_class_add_static_pad_template(ec, &src_t);
  gst_element_class_set_static_metadata(ec, "e2e learned image codec encoder", "Codec/Encoder/Video",
      "Codes video with a learned scale-hyperprior codec (e2ecodec): intra frames, and predicted frames that code only what changed", "gst-e2e");
  ec->change_state = change_state;
  vc->stop = enc_stop;
  vc->flush = enc_flush;
  vc->set_format = enc_set_format;
  vc->handle_frame = enc_handle_frame;
}
