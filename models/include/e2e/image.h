/* Images for training and evaluation: decoding (libjpeg, cairo for PNG),
 * resizing, letterboxing into normalised network input. */
#ifndef E2E_IMAGE_H
#define E2E_IMAGE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct {
  int w, h;
  uint8_t *rgb; /* w * h * 3, row-major */
} e2e_image;

/* JPEG or PNG by content. False with a message in nn_last_error(). */
bool e2e_image_load(const char *path, e2e_image *out);
void e2e_image_free(e2e_image *im);
/* Names (not paths) of the .jpg/.jpeg/.png files in dir, sorted; *n set.
 * Free with e2e_free_names. NULL with nn_last_error() when dir cannot be read. */
char **e2e_list_images(const char *dir, int *n);
void e2e_free_names(char **names, int n);
/* Writes packed RGB as PNG (cairo). */
bool e2e_image_save_png(const char *path, const uint8_t *rgb, int w, int h);
/* PSNR in dB of two 8-bit buffers of n bytes (99 when identical). */
double e2e_image_psnr(const uint8_t *a, const uint8_t *b, size_t n);
/* Bilinear resize of a packed RGB image. */
void e2e_image_resize(const uint8_t *src, int sw, int sh, int sstride, uint8_t *dst, int dw, int dh);

/* Network input normalisation, the one definition training, tools and elements use. */
#define E2E_PIXEL_MEAN 0.5f
#define E2E_PIXEL_STD 0.25f
/* A value in 0..1 as network input. */
static inline float e2e_input_of_unit(float v) { return (v - E2E_PIXEL_MEAN) / E2E_PIXEL_STD; }
/* A (possibly interpolated) 0..255 value as network input. */
static inline float e2e_input_of_byte(float v) {
  return v * (1.0f / (255.0f * E2E_PIXEL_STD)) + (-E2E_PIXEL_MEAN / E2E_PIXEL_STD);
}
/* What padding holds: mid-grey. */
#define E2E_INPUT_GREY e2e_input_of_unit(0.5f)
/* Writes a planar float image (3 x size x size) from packed RGB, scaling by
 * `scale`, placing at (pad_x, pad_y) and filling the rest with grey. */
void e2e_letterbox_to_planar(const uint8_t *rgb, int w, int h, int stride, int size, float scale, float pad_x,
                             float pad_y, float *dst);
/* The same with a vertical scale of its own (a stretch into the square). */
void e2e_resize_to_planar(const uint8_t *rgb, int w, int h, int stride, int size, float scale, float scale_y, float pad_x,
                          float pad_y, float *dst);
/* Writes a planar float image (3 x size x size) from a packed RGB image already scaled to w x h, placed at
 * whole-pixel (pad_x, pad_y), grey around it. */
void e2e_place_planar(const uint8_t *rgb, int w, int h, int stride, int size, int pad_x, int pad_y, float *dst);

#endif
