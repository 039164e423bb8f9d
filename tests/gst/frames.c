#include "frames.h"

#include <string.h>

GstBuffer *test_frame_from_rgb(const guint8 *rgb, int w, int h) {
  GstVideoInfo info;
  gst_video_info_set_format(&info, GST_VIDEO_FORMAT_RGB, w, h);
  GstBuffer *b = gst_buffer_new_allocate(NULL, GST_VIDEO_INFO_SIZE(&info), NULL);
  GstVideoFrame f;
  gst_video_frame_map(&f, &info, b, GST_MAP_WRITE);
  for (int y = 0; y < h; y++)
    memcpy((guint8 *)GST_VIDEO_FRAME_PLANE_DATA(&f, 0) + (size_t)y * GST_VIDEO_FRAME_PLANE_STRIDE(&f, 0),
           rgb + (size_t)y * w * 3, (size_t)w * 3);
  gst_video_frame_unmap(&f);
  return b;
}

GstBuffer *test_frame_convert(GstBuffer *rgb, int w, int h, GstVideoFormat fmt) {
  GstVideoInfo in, out;
  gst_video_info_set_format(&in, GST_VIDEO_FORMAT_RGB, w, h);
  gst_video_info_set_format(&out, fmt, w, h);
  GstBuffer *o = gst_buffer_new_allocate(NULL, GST_VIDEO_INFO_SIZE(&out), NULL);
  GstVideoFrame fi, fo;
  gst_video_frame_map(&fi, &in, rgb, GST_MAP_READ);
  gst_video_frame_map(&fo, &out, o, GST_MAP_WRITE);
  GstVideoConverter *c = gst_video_converter_new(&in, &out, NULL);
  gst_video_converter_frame(c, &fi, &fo);
  gst_video_converter_free(c);
  gst_video_frame_unmap(&fi);
  gst_video_frame_unmap(&fo);
  return o;
}
