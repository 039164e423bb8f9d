/* The "e2e" plugin: registers every element. */
#include <gst/gst.h>

#define PACKAGE "gst-e2e"

#include "e2eplugin.h"
#include "gste2edetect.h"
#include "gste2eoverlay.h"

const gchar *e2e_default_model(const gchar *file) {
  static gchar path[4096];
  const gchar *dirs[] = {g_getenv("E2E_MODEL_DIR"), E2E_MODEL_INSTALL_DIR, E2E_MODEL_SOURCE_DIR};
  for (guint i = 0; i < G_N_ELEMENTS(dirs); i++) {
    if (!dirs[i]) continue;
    g_snprintf(path, sizeof path, "%s/%s", dirs[i], file);
    if (g_file_test(path, G_FILE_TEST_IS_REGULAR)) return path;
  }
  g_snprintf(path, sizeof path, "%s/%s", E2E_MODEL_INSTALL_DIR, file);
  return path; /* absent: the element reports it with this path */
}

static gboolean plugin_init(GstPlugin *plugin) {
  return gst_element_register(plugin, "e2edetect", GST_RANK_NONE, GST_TYPE_E2E_DETECT) &&
         gst_element_register(plugin, "e2eoverlay", GST_RANK_NONE, GST_TYPE_E2E_OVERLAY);
}

GST_PLUGIN_DEFINE(GST_VERSION_MAJOR, GST_VERSION_MINOR, e2e,
                  "End-to-end neural networks that infer and learn inside pipelines", plugin_init, "0.1.0",
                  "LGPL", "gst-e2e", "https://example.invalid/gst-e2e")
