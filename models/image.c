/* Image decoding and resampling. */
#include "e2e/image.h"

#include <cairo.h>
#include <dirent.h>
#include <math.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <jpeglib.h> /* needs stdio.h first */

#include "nncore/nncore.h"

typedef struct {
  struct jpeg_error_mgr pub;
  jmp_buf jump;
  char msg[JMSG_LENGTH_MAX];
} jpeg_err;

static void jpeg_fail(j_common_ptr c) {
  jpeg_err *e = (jpeg_err *)c->err;
  (*c->err->format_message)(c, e->msg);
  longjmp(e->jump, 1);
}

static bool load_jpeg(const char *path, FILE *f, e2e_image *out) {
  struct jpeg_decompress_struct c;
  jpeg_err e;
  c.err = jpeg_std_error(&e.pub);
  e.pub.error_exit = jpeg_fail;
  e.pub.output_message = (void (*)(j_common_ptr))(void *)jpeg_fail; /* warnings are errors: no garbage */
  uint8_t *volatile buf = NULL;
  if (setjmp(e.jump)) {
    jpeg_destroy_decompress(&c);
    free(buf);
    nn_set_error("%s: JPEG error: %s", path, e.msg);
    return false;
  }
  jpeg_create_decompress(&c);
  jpeg_stdio_src(&c, f);
  jpeg_read_header(&c, TRUE);
  c.out_color_space = JCS_RGB;
  jpeg_start_decompress(&c);
  if (c.output_width > 16384 || c.output_height > 16384 || c.output_components != 3) {
    jpeg_destroy_decompress(&c);
    nn_set_error("%s: unsupported JPEG (%ux%u, %d components)", path, c.output_width, c.output_height, c.output_components);
    return false;
  }
  buf = malloc((size_t)c.output_width * c.output_height * 3);
  if (!buf) {
    jpeg_destroy_decompress(&c);
    nn_set_error("%s: out of memory", path);
    return false;
  }
  while (c.output_scanline < c.output_height) {
    JSAMPROW row = buf + (size_t)c.output_scanline * c.output_width * 3;
    jpeg_read_scanlines(&c, &row, 1);
  }
  jpeg_finish_decompress(&c);
  out->w = (int)c.output_width;
  out->h = (int)c.output_height;
  out->rgb = buf;
  jpeg_destroy_decompress(&c);
  return true;
}

static bool load_png(const char *path, e2e_image *out) {
  cairo_surface_t *s = cairo_image_surface_create_from_png(path);
  if (cairo_surface_status(s) != CAIRO_STATUS_SUCCESS) {
    nn_set_error("%s: PNG error: %s", path, cairo_status_to_string(cairo_surface_status(s)));
    cairo_surface_destroy(s);
    return false;
  }
  int w = cairo_image_surface_get_width(s), h = cairo_image_surface_get_height(s);
  int stride = cairo_image_surface_get_stride(s);
  cairo_format_t fmt = cairo_image_surface_get_format(s);
  const uint8_t *d = cairo_image_surface_get_data(s);
  out->rgb = malloc((size_t)w * h * 3);
  if (!out->rgb || (fmt != CAIRO_FORMAT_ARGB32 && fmt != CAIRO_FORMAT_RGB24)) {
    free(out->rgb);
    cairo_surface_destroy(s);
    nn_set_error("%s: unsupported PNG pixel format", path);
    return false;
  }
  for (int y = 0; y < h; y++)
    for (int x = 0; x < w; x++) {
      uint32_t px = *(const uint32_t *)(d + (size_t)y * stride + 4 * x);
      /* cairo stores premultiplied native-endian ARGB; un-premultiply when alpha < 255 */
      unsigned a = px >> 24, r = (px >> 16) & 255, g = (px >> 8) & 255, b = px & 255;
      if (fmt == CAIRO_FORMAT_ARGB32 && a && a < 255) {
        r = r * 255 / a;
        g = g * 255 / a;
        b = b * 255 / a;
      }
      uint8_t *o = out->rgb + ((size_t)y * w + x) * 3;
      o[0] = (uint8_t)r;
      o[1] = (uint8_t)g;
      o[2] = (uint8_t)b;
    }
  out->w = w;
  out->h = h;
  cairo_surface_destroy(s);
  return true;
}

bool e2e_image_load(const char *path, e2e_image *out) {
  memset(out, 0, sizeof *out);
  FILE *f = fopen(path, "rb");
  if (!f) {
    nn_set_error("%s: cannot open", path);
    return false;
  }
  uint8_t magic[24] = {0};
  size_t got = fread(magic, 1, sizeof magic, f);
  rewind(f);
  bool ok;
  if (got >= 3 && magic[0] == 0xFF && magic[1] == 0xD8 && magic[2] == 0xFF) {
    ok = load_jpeg(path, f, out);
  } else if (got >= 8 && memcmp(magic, "\x89PNG\r\n\x1a\n", 8) == 0) {
    /* the size in the header, checked before cairo allocates a surface for it (as for JPEG) */
    uint32_t w = got >= 24 ? (uint32_t)magic[16] << 24 | (uint32_t)magic[17] << 16 | (uint32_t)magic[18] << 8 | magic[19] : 0;
    uint32_t h = got >= 24 ? (uint32_t)magic[20] << 24 | (uint32_t)magic[21] << 16 | (uint32_t)magic[22] << 8 | magic[23] : 0;
    ok = w >= 1 && h >= 1 && w <= 16384 && h <= 16384;
    if (!ok) nn_set_error("%s: unsupported PNG (%ux%u)", path, w, h);
    else ok = load_png(path, out);
  } else {
    nn_set_error("%s: neither JPEG nor PNG", path);
    ok = false;
  }
  fclose(f);
  return ok;
}

void e2e_image_free(e2e_image *im) {
  free(im->rgb);
  im->rgb = NULL;
}

double e2e_image_psnr(const uint8_t *a, const uint8_t *b, size_t n) {
  double se = 0;
  for (size_t i = 0; i < n; i++) {
    double d = (double)a[i] - b[i];
    se += d * d;
  }
  return se > 0 ? 10 * log10(255.0 * 255.0 * (double)n / se) : 99.0;
}

void e2e_image_resize(const uint8_t *src, int sw, int sh, int sstride, uint8_t *dst, int dw, int dh) {
  float fx = (float)sw / (float)dw, fy = (float)sh / (float)dh;
  for (int y = 0; y < dh; y++) {
    float sy = fmaxf(((float)y + 0.5f) * fy - 0.5f, 0.0f);
    int y0 = (int)sy, y1 = y0 + 1 < sh ? y0 + 1 : sh - 1;
    float ay = sy - (float)y0;
    for (int x = 0; x < dw; x++) {
      float sx = fmaxf(((float)x + 0.5f) * fx - 0.5f, 0.0f);
      int x0 = (int)sx, x1 = x0 + 1 < sw ? x0 + 1 : sw - 1;
      float ax = sx - (float)x0;
      for (int c = 0; c < 3; c++) {
        float v = (1 - ay) * ((1 - ax) * src[y0 * sstride + 3 * x0 + c] + ax * src[y0 * sstride + 3 * x1 + c]) +
                  ay * ((1 - ax) * src[y1 * sstride + 3 * x0 + c] + ax * src[y1 * sstride + 3 * x1 + c]);
        dst[((size_t)y * dw + x) * 3 + c] = (uint8_t)(v + 0.5f);
      }
    }
  }
}

void e2e_letterbox_to_planar(const uint8_t *rgb, int w, int h, int stride, int size, float scale, float pad_x,
                             float pad_y, float *dst) {
  e2e_resize_to_planar(rgb, w, h, stride, size, scale, scale, pad_x, pad_y, dst);
}

void e2e_resize_to_planar(const uint8_t *rgb, int w, int h, int stride, int size, float scale, float scale_y, float pad_x,
                          float pad_y, float *dst) {
  const float grey = E2E_INPUT_GREY;
  size_t plane = (size_t)size * size;
  for (int y = 0; y < size; y++) {
    float sy = ((float)y + 0.5f - pad_y) / scale_y - 0.5f;
    bool yin = sy > -0.5f && sy < (float)h - 0.5f;
    sy = fminf(fmaxf(sy, 0.0f), (float)h - 1);
    int y0 = (int)sy, y1 = y0 + 1 < h ? y0 + 1 : h - 1;
    float ay = sy - (float)y0;
    for (int x = 0; x < size; x++) {
      float sx = ((float)x + 0.5f - pad_x) / scale - 0.5f;
      size_t o = (size_t)y * size + x;
      if (!yin || !(sx > -0.5f && sx < (float)w - 0.5f)) {
        dst[o] = dst[plane + o] = dst[2 * plane + o] = grey;
        continue;
      }
      sx = fminf(fmaxf(sx, 0.0f), (float)w - 1);
      int x0 = (int)sx, x1 = x0 + 1 < w ? x0 + 1 : w - 1;
      float ax = sx - (float)x0;
      const uint8_t *r0 = rgb + (size_t)y0 * stride, *r1 = rgb + (size_t)y1 * stride;
      for (int c = 0; c < 3; c++) {
        float v = (1 - ay) * ((1 - ax) * r0[3 * x0 + c] + ax * r0[3 * x1 + c]) +
                  ay * ((1 - ax) * r1[3 * x0 + c] + ax * r1[3 * x1 + c]);
        dst[c * plane + o] = e2e_input_of_byte(v);
      }
    }
  }
}

void e2e_place_planar(const uint8_t *rgb, int w, int h, int stride, int size, int pad_x, int pad_y, float *dst) {
  const float grey = E2E_INPUT_GREY;
  size_t plane = (size_t)size * size;
  for (int c = 0; c < 3; c++)
    for (int y = 0; y < size; y++) {
      float *row = dst + c * plane + (size_t)y * size;
      int sy = y - pad_y;
      if (sy < 0 || sy >= h) {
        for (int x = 0; x < size; x++) row[x] = grey;
        continue;
      }
      const uint8_t *src = rgb + (size_t)sy * stride + c;
      for (int x = 0; x < pad_x; x++) row[x] = grey;
      for (int x = 0; x < w; x++) row[pad_x + x] = e2e_input_of_byte(src[3 * x]);
      for (int x = pad_x + w; x < size; x++) row[x] = grey;
    }
}

bool e2e_image_save_png(const char *path, const uint8_t *rgb, int w, int h) {
  cairo_surface_t *s = cairo_image_surface_create(CAIRO_FORMAT_RGB24, w, h);
  if (cairo_surface_status(s) != CAIRO_STATUS_SUCCESS) {
    nn_set_error("%s: cannot make a %dx%d image", path, w, h);
    cairo_surface_destroy(s);
    return false;
  }
  cairo_surface_flush(s);
  uint8_t *d = cairo_image_surface_get_data(s);
  int stride = cairo_image_surface_get_stride(s);
  for (int y = 0; y < h; y++)
    for (int x = 0; x < w; x++) {
      const uint8_t *p = rgb + ((size_t)y * w + x) * 3;
      ((uint32_t *)(d + (size_t)y * stride))[x] = 0xff000000u | (uint32_t)p[0] << 16 | (uint32_t)p[1] << 8 | p[2];
    }
  cairo_surface_mark_dirty(s);
  cairo_status_t st = cairo_surface_write_to_png(s, path);
  cairo_surface_destroy(s);
  if (st != CAIRO_STATUS_SUCCESS) {
    nn_set_error("%s: %s", path, cairo_status_to_string(st));
    return false;
  }
  return true;
}

static int cmp_name(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

char **e2e_list_images(const char *dir, int *n) {
  *n = 0;
  DIR *d = opendir(dir);
  if (!d) {
    nn_set_error("%s: cannot open folder", dir);
    return NULL;
  }
  char **names = malloc(sizeof *names); /* non-NULL even when empty */
  struct dirent *e;
  while (names && (e = readdir(d))) {
    const char *dot = strrchr(e->d_name, '.');
    if (!dot || (strcasecmp(dot, ".jpg") && strcasecmp(dot, ".jpeg") && strcasecmp(dot, ".png"))) continue;
    char **grown = realloc(names, sizeof *names * (size_t)(*n + 1));
    if (!grown) break;
    names = grown;
    names[(*n)++] = strdup(e->d_name);
  }
  closedir(d);
  if (names) qsort(names, (size_t)*n, sizeof *names, cmp_name);
  return names;
}

void e2e_free_names(char **names, int n) {
  for (int i = 0; i < n; i++) free(names[i]);
  free(names);
}
