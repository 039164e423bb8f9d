/* e2edetect: end-to-end object detection on raw video (in place). */
#ifndef GST_E2E_DETECT_H
#define GST_E2E_DETECT_H

#include <gst/video/gstvideofilter.h>
#include <gst/video/video.h>
#include <stdio.h>

#include "e2e/detect.h"
#include "e2eelement.h"

G_BEGIN_DECLS

#define GST_TYPE_E2E_DETECT (gst_e2e_detect_get_type())
G_DECLARE_FINAL_TYPE(GstE2eDetect, gst_e2e_detect, GST, E2E_DETECT, GstVideoFilter)

#define E2E_DETECT_TIMES 256

struct _GstE2eDetect {
  GstVideoFilter parent;
  E2eElementModel model; /* model, model-name, device, num-threads; the session while running */

  /* properties (under lock) */
  GMutex lock;
  gchar *labels_file, *object_class, *json_file;
  e2e_detect_params params;
  guint interval;
  gboolean post_messages;
  gfloat uncertain_low, uncertain_high; /* the uncertainty band (active learning); off while high <= low */
  gchar **labels; /* from labels-file, overriding the model's own; NULL-terminated */

  /* streaming state (streaming thread only) */
  GstVideoConverter *conv;
  det_letterbox lb; /* where the converter's output goes in the network input */
  guint8 *rgb;
  det_box last[E2E_DETECT_MAX_OBJECTS];
  gint n_last;
  gint n_uncertain; /* the last inference's detections in the uncertainty band */
  guint64 last_version; /* the model version that found them */
  guint64 frames_since_inference;
  FILE *json;

  /* QoS: frames whose running time is before this are late (under lock) */
  GstClockTime earliest_time;

  /* statistics (under lock) */
  guint64 frames, inferences, skipped, uncertain;
  gdouble times_ms[E2E_DETECT_TIMES];
  guint n_times;
  gdouble total_ms;
  GstClockTime latency;
};

G_END_DECLS

#endif
