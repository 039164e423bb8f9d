/* e2ecodecdec: video/x-e2e-lic pictures -> RGB frames. Each input buffer is
 * one coded picture (the parser splits byte streams). A picture that is
 * truncated, corrupted, made by another model, or too large for max-memory is dropped with a warning
 * (GstVideoDecoder's max-errors decides when that becomes an error). */
#include <string.h>

#include "gste2ecodec.h"

GST_DEBUG_CATEGORY_STATIC(e2ecodecdec_debug);
#define GST_CAT_DEFAULT e2ecodecdec_debug

struct _GstE2eCodecDec {
  GstVideoDecoder parent;
  GMutex lock;
  gchar *model_path, *device;
  guint num_threads, max_memory_mb;
  codec_model *model;
  nn_arena *arena;
  GstVideoCodecState *in_state;
  gint out_w, out_h;
  guint8 *rgb;
};

enum { PROP_0, PROP_MODEL, PROP_DEVICE, PROP_NUM_THREADS, PROP_MAX_MEMORY };

G_DEFINE_TYPE(GstE2eCodecDec, gst_e2e_codec_dec, GST_TYPE_VIDEO_DECODER)

static GstStaticPadTemplate sink_t =
    GST_STATIC_PAD_TEMPLATE("sink", GST_PAD_SINK, GST_PAD_ALWAYS, GST_STATIC_CAPS(E2E_LIC_CAPS ", parsed = (boolean) true"));
static GstStaticPadTemplate src_t =
    GST_STATIC_PAD_TEMPLATE("src", GST_PAD_SRC, GST_PAD_ALWAYS, GST_STATIC_CAPS(GST_VIDEO_CAPS_MAKE("RGB")));

static gboolean dec_start(GstVideoDecoder *dec) {
  GstE2eCodecDec *self = GST_E2E_CODEC_DEC(dec);
  g_mutex_lock(&self->lock);
  gchar *path = g_strdup(self->model_path), *device = g_strdup(self->device);
  g_mutex_unlock(&self->lock);
  gboolean ok = FALSE;
  if (g_strcmp0(device, "cpu") != 0) {
    GST_ELEMENT_ERROR(self, LIBRARY, SETTINGS,
                      ("device=%s is not available: e2ecodec runs on the CPU in this build (device=cpu).", device), (NULL));
  } else if ((self->model = e2e_codec_load_for(GST_ELEMENT(self), path))) {
    self->arena = nn_arena_new(64 << 20);
    ok = self->arena != NULL;
  }
  g_free(path);
  g_free(device);
  self->out_w = self->out_h = 0;
  gst_video_decoder_set_packetized(dec, TRUE);
  return ok;
}

static gboolean dec_stop(GstVideoDecoder *dec) {
  GstE2eCodecDec *self = GST_E2E_CODEC_DEC(dec);
  if (self->model) codec_free(self->model);
  g_clear_pointer(&self->model, g_free);
  if (self->arena) nn_arena_free(self->arena);
  self->arena = NULL;
  g_clear_pointer(&self->rgb, g_free);
  if (self->in_state) gst_video_codec_state_unref(self->in_state);
  self->in_state = NULL;
  return TRUE;
}

static gboolean dec_set_format(GstVideoDecoder *dec, GstVideoCodecState *state) {
  GstE2eCodecDec *self = GST_E2E_CODEC_DEC(dec);
  if (self->in_state) gst_video_codec_state_unref(self->in_state);
  self->in_state = gst_video_codec_state_ref(state);
  const gchar *id = gst_structure_get_string(gst_caps_get_structure(state->caps, 0), "model-id");
  gchar mine[16];
  g_snprintf(mine, sizeof mine, "%08x", self->model->model_id);
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
  GST_ELEMENT_WARNING(self, STREAM, DECODE, ("%s e2ecodec picture dropped.", what), ("%s", why));
  GST_VIDEO_DECODER_ERROR(self, 1, STREAM, DECODE, ("Too many e2ecodec pictures dropped."), ("%s", why), ret);
  gst_video_decoder_drop_frame(GST_VIDEO_DECODER(self), frame);
  return ret;
}

static GstFlowReturn drop_corrupt(GstE2eCodecDec *self, GstVideoCodecFrame *frame, const gchar *why) {
  return drop_picture(self, frame, "Corrupt", why);
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
    return drop_corrupt(self, frame, nn_last_error());
  }
  /* before negotiating and allocating for it: a header can claim any size up to 16384x16384 */
  g_mutex_lock(&self->lock);
  int threads = (int)self->num_threads;
  codec_options opts = {.memory_limit = (uint64_t)self->max_memory_mb << 20};
  g_mutex_unlock(&self->lock);
  if (!codec_check_memory(self->model, &opts, h.width, h.height, FALSE)) {
    gst_buffer_unmap(frame->input_buffer, &map);
    return drop_picture(self, frame, "Too large", nn_last_error());
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
  nn_set_num_threads(threads);
  nn_arena *prev = nn_arena_set_current(self->arena);
  gboolean ok = codec_decompress(self->model, &opts, map.data, map.size, self->rgb, h.width, h.height);
  nn_arena_set_current(prev);
  gst_buffer_unmap(frame->input_buffer, &map);
  if (!ok) return drop_corrupt(self, frame, nn_last_error());
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
  GstE2eCodecDec *self = GST_E2E_CODEC_DEC(obj);
  g_mutex_lock(&self->lock);
  switch (id) {
  case PROP_MODEL: g_free(self->model_path); self->model_path = g_value_dup_string(v); break;
  case PROP_DEVICE: g_free(self->device); self->device = g_value_dup_string(v); break;
  case PROP_NUM_THREADS: self->num_threads = g_value_get_uint(v); break;
  case PROP_MAX_MEMORY: self->max_memory_mb = g_value_get_uint(v); break;
  default: G_OBJECT_WARN_INVALID_PROPERTY_ID(obj, id, ps);
  }
  g_mutex_unlock(&self->lock);
}

static void get_property(GObject *obj, guint id, GValue *v, GParamSpec *ps) {
  GstE2eCodecDec *self = GST_E2E_CODEC_DEC(obj);
  g_mutex_lock(&self->lock);
  switch (id) {
  case PROP_MODEL: g_value_set_string(v, self->model_path); break;
  case PROP_DEVICE: g_value_set_string(v, self->device); break;
  case PROP_NUM_THREADS: g_value_set_uint(v, self->num_threads); break;
  case PROP_MAX_MEMORY: g_value_set_uint(v, self->max_memory_mb); break;
  default: G_OBJECT_WARN_INVALID_PROPERTY_ID(obj, id, ps);
  }
  g_mutex_unlock(&self->lock);
}

static void finalize(GObject *obj) {
  GstE2eCodecDec *self = GST_E2E_CODEC_DEC(obj);
  g_free(self->model_path);
  g_free(self->device);
  g_mutex_clear(&self->lock);
  G_OBJECT_CLASS(gst_e2e_codec_dec_parent_class)->finalize(obj);
}

static void gst_e2e_codec_dec_init(GstE2eCodecDec *self) {
  g_mutex_init(&self->lock);
  self->device = g_strdup("cpu");
}

static void gst_e2e_codec_dec_class_init(GstE2eCodecDecClass *klass) {
  GObjectClass *oc = G_OBJECT_CLASS(klass);
  GstElementClass *ec = GST_ELEMENT_CLASS(klass);
  GstVideoDecoderClass *vc = GST_VIDEO_DECODER_CLASS(klass);
  GST_DEBUG_CATEGORY_INIT(e2ecodecdec_debug, "e2ecodecdec", 0, "learned image codec decoder");
  oc->set_property = set_property;
  oc->get_property = get_property;
  oc->finalize = finalize;
  GParamFlags rw = G_PARAM_READWRITE | G_PARAM_STATIC_STRINGS;
  g_object_class_install_property(oc, PROP_MODEL, g_param_spec_string("model", "Model",
      "Codec model (safetensors); must be the encoder's. Default: the shipped e2ecodec model", NULL,
      rw | GST_PARAM_MUTABLE_READY));
  g_object_class_install_property(oc, PROP_DEVICE, g_param_spec_string("device", "Device",
      "Where the network runs: cpu (cuda is not available for the codec yet)", "cpu", rw | GST_PARAM_MUTABLE_READY));
  g_object_class_install_property(oc, PROP_NUM_THREADS, g_param_spec_uint("num-threads", "Threads",
      "Threads for the network (0: NNCORE_NUM_THREADS or all cores)", 0, 256, 0, rw | GST_PARAM_MUTABLE_READY));
  g_object_class_install_property(oc, PROP_MAX_MEMORY, g_param_spec_uint("max-memory", "Most working memory",
      "MiB of working memory one picture may take (0: this machine's physical memory). Decoding takes about 200 "
      "bytes per pixel; a picture that needs more (or a stream that claims such a size) is dropped with a warning",
      0, G_MAXUINT, 0, rw | GST_PARAM_MUTABLE_PLAYING));
  gst_element_class_add_static_pad_template(ec, &sink_t);
  gst_element_class_add_static_pad_template(ec, &src_t);
  gst_element_class_set_static_metadata(ec, "e2e learned image codec decoder", "Codec/Decoder/Video",
      "Decodes pictures of the learned scale-hyperprior image codec (e2ecodec)", "gst-e2e");
  vc->start = dec_start;
  vc->stop = dec_stop;
  vc->set_format = dec_set_format;
  vc->handle_frame = dec_handle_frame;
}
