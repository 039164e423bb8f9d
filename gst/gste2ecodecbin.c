/* e2ecodec: encoder and decoder in one element, to see (and measure) what a
 * quality level does to a live stream: raw video in, decoded RGB out. Each
 * frame posts an "e2ecodec-frame" element message {bytes, bpp, psnr,
 * quality, encode-ms} from the inner encoder (message=true by default). */
#include "gste2ecodec.h"

struct _GstE2eCodecBin {
  GstBin parent;
  GstElement *enc, *dec;
};

/* Settings of the encoder alone, of both halves, and the bin's own message (on by default here). */
enum { PROP_0, PROP_QUALITY, PROP_REFINE_STEPS, PROP_KEY_INT_MAX, PROP_BITRATE, PROP_ROI_WEIGHT, PROP_BACKGROUND_WEIGHT, PROP_ROI_QUALITY, PROP_PROFILE, PROP_MODEL, PROP_MODEL_NAME, PROP_DEVICE, PROP_NUM_THREADS, PROP_MAX_MEMORY, PROP_MESSAGE };
static const gchar *const PROP_NAMES[] = {NULL, "quality", "refine-steps", "key-int-max", "bitrate", "roi-weight",
                                          "background-weight", "roi-quality", "profile", "model", "model-name", "device", "num-threads",
                                          "max-memory", "message"};

G_DEFINE_TYPE(GstE2eCodecBin, gst_e2e_codec_bin, GST_TYPE_BIN)

static GstStaticPadTemplate sink_t = GST_STATIC_PAD_TEMPLATE("sink", GST_PAD_SINK, GST_PAD_ALWAYS, GST_STATIC_CAPS(E2E_CODEC_RAW_CAPS));
static GstStaticPadTemplate src_t = GST_STATIC_PAD_TEMPLATE("src", GST_PAD_SRC, GST_PAD_ALWAYS, GST_STATIC_CAPS(GST_VIDEO_CAPS_MAKE("RGB")));

static void set_property(GObject *obj, guint id, const GValue *v, GParamSpec *ps) {
  GstE2eCodecBin *self = GST_E2E_CODEC_BIN(obj);
  if (id == 0 || id > PROP_MESSAGE) {
    G_OBJECT_WARN_INVALID_PROPERTY_ID(obj, id, ps);
    return;
  }
  g_object_set_property(G_OBJECT(self->enc), PROP_NAMES[id], v);
  if (id >= PROP_MODEL && id <= PROP_MAX_MEMORY) g_object_set_property(G_OBJECT(self->dec), PROP_NAMES[id], v);
}

static void get_property(GObject *obj, guint id, GValue *v, GParamSpec *ps) {
  GstE2eCodecBin *self = GST_E2E_CODEC_BIN(obj);
  if (id == 0 || id > PROP_MESSAGE) {
    G_OBJECT_WARN_INVALID_PROPERTY_ID(obj, id, ps);
    return;
  }
  g_object_get_property(G_OBJECT(self->enc), PROP_NAMES[id], v);
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
  for (guint id = PROP_QUALITY; id < PROP_MESSAGE; id++) e2e_element_copy_property(oc, id, GST_TYPE_E2E_CODEC_ENC, PROP_NAMES[id]);
  g_object_class_install_property(oc, PROP_MESSAGE, g_param_spec_boolean("message", "Message",
      "Post an \"e2ecodec-frame\" element message per frame (bytes, bpp, PSNR-RGB, timing)", TRUE,
      G_PARAM_READWRITE | G_PARAM_STATIC_STRINGS | GST_PARAM_MUTABLE_PLAYING));
  gst_element_class_add_static_pad_template(ec, &sink_t);
  gst_element_class_add_static_pad_template(ec, &src_t);
  gst_element_class_set_static_metadata(ec, "e2e learned codec preview", "Filter/Effect/Video",
      "Encodes and decodes each frame with the learned image codec and reports bpp and PSNR; settings of both halves "
      "(model, model-name, device, num-threads, max-memory) apply to encoder and decoder alike", "gst-e2e");
}
