/* e2edetect: end-to-end object detection on raw video (in place). */
#ifndef GST_E2E_DETECT_H
#define GST_E2E_DETECT_H

#include <gst/video/gstvideofilter.h>
#include <gst/video/video.h>
#include <stdio.h>

#include "e2e/detect.h"

G_BEGIN_DECLS

#define GST_TYPE_E2E_DETECT (gst_e2e_detect_get_type())
G_DECLARE_FINAL_TYPE(GstE2eDetect, gst_e2e_detect, GST, E2E_DETECT, GstVideoFilter)

#define E2E_DETECT_MAX_OBJECTS 1000
#define E2E_DETECT_TIMES 256

struct _GstE2eDetect {
  GstVideoFilter parent;

  /* properties (under lock) */
  GMutex lock;
  gchar *model_path, *labels_file, *object_class, *json_file, *device;
  gfloat threshold, iou_threshold;
  guint max_detections, interval, input_size, num_threads;
  gboolean post_messages;

  /* the model in use; replaced whole under lock so a frame never sees half a model */
  detector *model;
  gchar **labels;  /* from labels-file, overriding the model's own; NULL-terminated */

  /* streaming state (streaming thread only) */
  nn_arena *arena;
  GstVideoConverter *conv;
  gint conv_w, conv_h, conv_size;
  guint8 *rgb;
  det_letterbox lb;
  det_box last[E2E_DETECT_MAX_OBJECTS];
  gint n_last;
  guint64 frames_since_inference;
  FILE *json;

  /* QoS: frames whose running time is before this are late (under lock) */
  GstClockTime earliest_time;

  /* statistics (under lock) */
  guint64 frames, inferences, skipped;
  gdouble times_ms[E2E_DETECT_TIMES];
  guint n_times;
  gdouble total_ms;
  GstClockTime latency;
};

G_END_DECLS

#endif
