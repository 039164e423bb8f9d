/* Raw video frames for the element tests. */
#ifndef E2E_TEST_FRAMES_H
#define E2E_TEST_FRAMES_H

#include <gst/video/video.h>

/* Packed RGB rows (w * 3 bytes each) as an RGB video buffer with GStreamer's own stride. */
GstBuffer *test_frame_from_rgb(const guint8 *rgb, int w, int h);
/* An RGB video buffer converted to another raw format (a new buffer). */
GstBuffer *test_frame_convert(GstBuffer *rgb, int w, int h, GstVideoFormat fmt);

#endif
