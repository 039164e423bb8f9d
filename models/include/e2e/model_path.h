/* Where shipped models are found: $E2E_MODEL_DIR, then the install folder
 * (share/gst-e2e/models), then the source tree's models/ (for build trees). */
#ifndef E2E_MODEL_PATH_H
#define E2E_MODEL_PATH_H

/* rel is relative to the models folder, e.g. "codec/e2ecodec.safetensors".
 * Returns a path in a static buffer (the install path when none exists, so
 * that the error names where it was expected). Not thread-safe: copy it. */
const char *e2e_model_path(const char *rel);

#endif
