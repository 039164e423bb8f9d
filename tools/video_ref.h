/* Reference video codecs from FFmpeg's libavcodec for `e2e codec eval-video`: a whole sequence through
 * x264 (default I/P/B or all-intra) or MJPEG and back, its size and its decoded frames. */
#ifndef E2E_VIDEO_REF_H
#define E2E_VIDEO_REF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef enum { VIDEO_REF_X264, VIDEO_REF_X264_INTRA, VIDEO_REF_MJPEG } video_ref_codec;

/* Codes n packed RGB frames (w x h) at setting (x264: crf; MJPEG: qscale 2..31) with fps_n/fps_d, decodes
 * them to out (n * w * h * 3, display order) and reports the stream's bytes. x264 runs preset medium, one
 * thread (its default rate control and GOP otherwise). False with a message in err. */
bool video_ref_roundtrip(video_ref_codec codec, const uint8_t *frames, int n, int w, int h, int fps_n, int fps_d,
                         int setting, size_t *bytes, uint8_t *out, char *err, size_t err_len);
bool video_ref_available(video_ref_codec codec);
const char *video_ref_name(video_ref_codec codec);

#endif
