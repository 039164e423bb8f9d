/* e2ecodec: encoder and decoder in one element, to see (and measure) what a
 * quality level does to a live stream: raw video in, decoded RGB out. Each
 * frame posts an "e2ecodec-frame" element message {bytes, bpp, psnr,
 * quality, encode-ms} from the inner encoder (message=true by default). */
#include "gste2ecodec.h"

struct _GstE2eCodecBin {
  GstBin parent;
  GstElement *enc, *dec;
};

enum { PROP_0, PROP_QUALITY, PROP_MODEL, PROP_NUM_THREADS, PROP_MESSAGE, PROP_REFINE_STEPS, PROP_MAX_MEMORY };

G_DEFINE_TYPE(GstE2eCodecBin, gst_e2e_codec_bin, GST_TYPE_BIN)

static GstStaticPadTemplate sink_t = GST_STATIC_PAD_TEMPLATE(
    "sink", GST_PAD_SINK, GST_PAD_ALWAYS,
    GST_STATIC_CAPS(GST_VIDEO_CAPS_MAKE("{ RGB, BGR, RGBx, BGRx, xRGB, xBGR, RGBA, BGRA, ARGB, ABGR, I420, YV12, NV12, NV21, Y42B, Y444 }")));
static GstStaticPadTemplate src_t = GST_STATIC_PAD_TEMPLATE("src", GST_PAD_SRC, GST_PAD_ALWAYS, GST_STATIC_CAPS(GST_VIDEO_CAPS_MAKE("RGB")));

static void set_property(GObject *obj, guint id, const GValue *v, GParamSpec *ps) {
  GstE2eCodecBin *self = GST_E2E_CODEC_BIN(obj);
  switch (id) {
  case PROP_QUALITY: g_object_set_property(G_OBJECT(self->enc), "quality", v); break;
  case PROP_MODEL:
    g_object_set_property(G_OBJECT(self->enc), "model", v);
    g_object_set_property(G_OBJECT(self->dec), "model", v);
    break;
  case PROP_NUM_THREADS:
    g_object_set_property(G_OBJECT(self->enc), "num-threads", v);
    g_object_set_property(G_OBJECT(self->dec), "num-threads", v);
    break;
  case PROP_MESSAGE: g_object_set_property(G_OBJECT(self->enc), "message", v); break;
  case PROP_REFINE_STEPS: g_object_set_property(G_OBJECT(self->enc), "refine-steps", v); break;
  case PROP_MAX_MEMORY:
    g_object_set_property(G_OBJECT(self->enc), "max-memory", v);
    g_object_set_property(G_OBJECT(self->dec), "max-memory", v);
    break;
  default: G_OBJECT_WARN_INVALID_PROPERTY_ID(obj, id, ps);
  }
}

static void get_property(GObject *obj, guint id, GValue *v, GParamSpec *ps) {
  GstE2eCodecBin *self = GST_E2E_CODEC_BIN(obj);
  switch (id) {
  case PROP_QUALITY: g_object_get_property(G_OBJECT(self->enc), "quality", v); break;
  case PROP_MODEL: g_object_get_property(G_OBJECT(self->enc), "model", v); break;
  case PROP_NUM_THREADS: g_object_get_property(G_OBJECT(self->enc), "num-threads", v); break;
  case PROP_MESSAGE: g_object_get_property(G_OBJECT(self->enc), "message", v); break;
  case PROP_REFINE_STEPS: g_object_get_property(G_OBJECT(self->enc), "refine-steps", v); break;
  case PROP_MAX_MEMORY: g_object_get_property(G_OBJECT(self->enc), "max-memory", v); break;
  default: G_OBJECT_WARN_INVALID_PROPERTY_ID(obj, id, ps);
  }
}

static void gst_e2e_codec_bin_init(GstE2eCodecBin *self) {
  self->enc = g_object_new(GST_TYPE_E2E_CODEC_ENC, "name", "encoder", "message", TRUE, NULL);
  self->dec = g_object_new(GST_TYPE_E2E_CODEC_DEC, "name", "decoder", NULL);
  gst_bin_add_many(GST_BIN(self), self->enc, self->dec, NULL);
  gst_element_link(self->enc, self->dec);
  GstPad *p = gst_element_get_static_pad(self->enc, "sink");
  gst_element_add_pad(GST_ELEMENT(self), gst_ghost_pad_new_from_template("sink", p, gst_element_class_get_pad_template(GST_ELEMENT_GET_CLASS(self), "sink")));
  gst_object_unref(p);
  p = gst_element_get_static_pad(self->dec, "src");
  gst_element_add_pad(GST_ELEMENT(self), gst_ghost_pad_new_from_template("src", p, gst_element_class_get_pad_template(GST_ELEMENT_GET_CLASS(self), "src")));
  gst_object_unref(p);
}

static void gst_e2e_codec_bin_class_init(GstE2eCodecBinClass *klass) {
  GObjectClass *oc = G_OBJECT_CLASS(klass);
  GstElementClass *ec = GST_ELEMENT_CLASS(klass);
  oc->set_property = set_property;
  oc->get_property = get_property;
  GParamFlags rw = G_PARAM_READWRITE | G_PARAM_STATIC_STRINGS;
  g_object_class_install_property(oc, PROP_QUALITY, g_param_spec_uint("quality", "Quality",
      "Quality level: 1 (smallest) .. 5 (best); can change while playing", 1, CODEC_MAX_QUALITY, 3,
      rw | GST_PARAM_MUTABLE_PLAYING));
  g_object_class_install_property(oc, PROP_MODEL, g_param_spec_string("model", "Model",
      "Codec model (safetensors) for both halves; default: the shipped e2ecodec model", NULL, rw | GST_PARAM_MUTABLE_READY));
  g_object_class_install_property(oc, PROP_NUM_THREADS, g_param_spec_uint("num-threads", "Threads",
      "Threads for the networks (0: NNCORE_NUM_THREADS or all cores)", 0, 256, 0, rw | GST_PARAM_MUTABLE_READY));
  g_object_class_install_property(oc, PROP_MESSAGE, g_param_spec_boolean("message", "Message",
      "Post an \"e2ecodec-frame\" element message per frame (bytes, bpp, PSNR-RGB, timing)", TRUE,
      rw | GST_PARAM_MUTABLE_PLAYING));
  g_object_class_install_property(oc, PROP_REFINE_STEPS, g_param_spec_uint("refine-steps", "Refinement steps",
      "Encoder effort: latent-search steps per frame (0: none); see e2ecodecenc", 0, CODEC_MAX_REFINE, 0,
      rw | GST_PARAM_MUTABLE_PLAYING));
  g_object_class_install_property(oc, PROP_MAX_MEMORY, g_param_spec_uint("max-memory", "Most working memory",
      "MiB of working memory one frame may take in either half (0: this machine's physical memory); see e2ecodecenc",
      0, G_MAXUINT, 0, rw | GST_PARAM_MUTABLE_PLAYING));
  gst_element_class_add_static_pad_template(ec, &sink_t);
  gst_element_class_add_static_pad_template(ec, &src_t);
  gst_element_class_set_static_metadata(ec, "e2e learned codec preview", "Filter/Effect/Video",
      "Encodes and decodes each frame with the learned image codec and reports bpp and PSNR", "gst-e2e");
}
