/* Helpers shared by the codec's sub-commands (training, coding, evaluation). */
#ifndef E2E_CODEC_TOOL_H
#define E2E_CODEC_TOOL_H

#include "e2e/codec.h"
#include "e2e/image.h"

typedef struct {
  e2e_image *im;
  char **names;
  int n;
} image_set_t;

/* Appends every .jpg/.png of dir (name order, at most max in the set when max > 0). */
bool codec_load_folder(const char *dir, image_set_t *set, int max);
void codec_free_set(image_set_t *set);
/* Codes one image for real and measures the decoder's reconstruction. */
bool codec_measure(codec_model *c, int quality, const e2e_image *im, double *bpp, double *psnr, size_t *bytes);

#endif
