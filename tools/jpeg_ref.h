/* Reference codecs from FFmpeg's libavcodec for `e2e codec eval`. */
#ifndef E2E_JPEG_REF_H
#define E2E_JPEG_REF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Encodes packed RGB with codec_name ("mjpeg": qscale 2..31, lower is better;
 * "libwebp": quality 0..100), decodes it back to RGB in out_rgb (w*h*3) and
 * reports the coded size. False with a message in err. */
bool jpeg_ref_roundtrip(const char *codec_name, const uint8_t *rgb, int w, int h, int qscale, size_t *bytes,
                        uint8_t *out_rgb, char *err, size_t err_len);
bool jpeg_ref_available(const char *codec_name);

#endif
