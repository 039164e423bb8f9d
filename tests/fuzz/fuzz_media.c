/* Pictures and sounds from files: e2e_image_load (JPEG through libjpeg, PNG through cairo) for the
 * training sets and the tools, e2e_sound_read_at (WAV, FLAC, ... through libsndfile, then resampled to
 * 16 kHz) for `e2e asr` and the speech recipes. The first byte picks which (even: picture, odd: sound);
 * the rest is written to a file of this process, as the readers take paths. */
#include <glib.h>
#include <stdlib.h>
#include <string.h>

#include "e2e/audio.h"
#include "e2e/image.h"
#include "fuzz.h"

static char *path;

int LLVMFuzzerInitialize(int *argc, char ***argv) {
  char *dir = g_dir_make_tmp("e2e-fuzz-media-XXXXXX", NULL);
  if (!dir) abort();
  path = g_build_filename(dir, "input", NULL);
  g_free(dir);
  return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 1) return 0;
  if (!g_file_set_contents(path, (const char *)data + 1, (gssize)size - 1, NULL)) abort();
  if (data[0] % 2 == 0) {
    e2e_image im;
    if (e2e_image_load(path, &im)) {
      if (im.w < 1 || im.h < 1 || !im.rgb) __builtin_trap();
      volatile uint8_t x = im.rgb[(size_t)im.w * im.h * 3 - 1]; /* the whole picture was allocated */
      (void)x;
      e2e_image_free(&im);
    }
  } else {
    float *x = NULL;
    int64_t n = 0;
    if (e2e_sound_read_at(path, 16000, &x, &n)) {
      if (n < 0 || (n > 0 && !x)) __builtin_trap();
      free(x);
    }
  }
  return 0;
}
