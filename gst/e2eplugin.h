/* Shared by the plugin's elements. */
#ifndef E2E_PLUGIN_H
#define E2E_PLUGIN_H

#include <glib.h>

/* Path of a shipped model file: $E2E_MODEL_DIR, then the installed models
 * folder, then the source tree (for running from the build folder). */
const gchar *e2e_default_model(const gchar *file);

#endif
