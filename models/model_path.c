#include "e2e/model_path.h"

#include <glib.h>

const char *e2e_model_path(const char *rel) {
  static char path[4096];
  const char *dirs[] = {g_getenv("E2E_MODEL_DIR"), E2E_MODEL_INSTALL_DIR, E2E_MODEL_SOURCE_DIR};
  for (guint i = 0; i < G_N_ELEMENTS(dirs); i++) {
    if (!dirs[i]) continue;
    g_snprintf(path, sizeof path, "%s/%s", dirs[i], rel);
    if (g_file_test(path, G_FILE_TEST_IS_REGULAR)) return path;
  }
  g_snprintf(path, sizeof path, "%s/%s", E2E_MODEL_INSTALL_DIR, rel);
  return path;
}
