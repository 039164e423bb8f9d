/* The "e2e" plugin: registers every element. */
#include <gst/gst.h>

#define PACKAGE "gst-e2e"

#include "gste2easr.h"
#include "gste2ecodec.h"
#include "gste2edetect.h"
#include "gste2eoverlay.h"
#include "gste2etrain.h"
#include "gste2etts.h"

static gboolean plugin_init(GstPlugin *plugin) {
  /* parser and decoder are ranked so that decodebin plays e2ecodec files */
  return gst_element_register(plugin, "e2edetect", GST_RANK_NONE, GST_TYPE_E2E_DETECT) &&
         gst_element_register(plugin, "e2eoverlay", GST_RANK_NONE, GST_TYPE_E2E_OVERLAY) &&
         gst_element_register(plugin, "e2ecodecenc", GST_RANK_NONE, GST_TYPE_E2E_CODEC_ENC) &&
         gst_element_register(plugin, "e2ecodecdec", GST_RANK_PRIMARY, GST_TYPE_E2E_CODEC_DEC) &&
         gst_element_register(plugin, "e2ecodecparse", GST_RANK_PRIMARY, GST_TYPE_E2E_CODEC_PARSE) &&
         gst_element_register(plugin, "e2ecodec", GST_RANK_NONE, GST_TYPE_E2E_CODEC_BIN) &&
         gst_element_register(plugin, "e2easr", GST_RANK_NONE, GST_TYPE_E2E_ASR) &&
         gst_element_register(plugin, "e2etts", GST_RANK_NONE, GST_TYPE_E2E_TTS) &&
         gst_element_register(plugin, "e2etrain", GST_RANK_NONE, GST_TYPE_E2E_TRAIN) &&
         gst_element_register(plugin, "e2etrainfilter", GST_RANK_NONE, GST_TYPE_E2E_TRAIN_FILTER) &&
         e2e_codec_typefind_register(plugin);
}

GST_PLUGIN_DEFINE(GST_VERSION_MAJOR, GST_VERSION_MINOR, e2e,
                  "End-to-end neural networks that infer and learn inside pipelines", plugin_init, "0.1.0",
                  "LGPL", "gst-e2e", "https://example.invalid/gst-e2e")
