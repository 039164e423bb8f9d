/* e2etrain: trains a detector on the frames that reach it, on a thread of its own, and publishes each
 * validated version into a model slot that e2edetect elements of the same model-name read from. */
#ifndef GST_E2E_TRAIN_H
#define GST_E2E_TRAIN_H

#include <gst/base/gstbasesink.h>
#include <gst/video/video.h>

#include "e2e/online.h"
#include "e2eelement.h"

G_BEGIN_DECLS

#define GST_TYPE_E2E_TRAIN (gst_e2e_train_get_type())
G_DECLARE_FINAL_TYPE(GstE2eTrain, gst_e2e_train, GST, E2E_TRAIN, GstBaseSink)

struct _GstE2eTrain {
  GstBaseSink parent;
  E2eElementModel model; /* model, model-name, device, num-threads (the trainer's budget) */

  GMutex lock; /* the properties and the counters */
  e2e_online_opts opts;
  gchar *freeze, *checkpoint_dir, *optimizer, *labels_path;
  guint64 frames, dropped, bad_labels, unlabelled, published, rejected;
  gint64 steps, last_progress_us;
  gdouble last_loss;

  /* streaming state */
  GstVideoInfo info;
  e2e_online *online;
  gchar **labels; /* the model's classes, to map ROI types to */
  gint n_labels;
  det_frame_labels *file; /* the label file's boxes, when one is given: used instead of the metas */
  guint64 counted;        /* buffers since start: the frame number when the caps give no frame rate */
};

G_END_DECLS

#endif
