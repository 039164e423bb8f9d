/* e2etrain: trains a detector on the frames that reach it, on a thread of its own, and publishes each
 * validated version into a model slot that e2edetect elements of the same model-name read from.
 * e2etrainfilter is the same trainer as a pass-through filter. */
#ifndef GST_E2E_TRAIN_H
#define GST_E2E_TRAIN_H

#include <gst/base/gstbasesink.h>
#include <gst/base/gstbasetransform.h>

#include "e2etraincore.h"

G_BEGIN_DECLS

#define GST_TYPE_E2E_TRAIN (gst_e2e_train_get_type())
G_DECLARE_FINAL_TYPE(GstE2eTrain, gst_e2e_train, GST, E2E_TRAIN, GstBaseSink)

struct _GstE2eTrain {
  GstBaseSink parent;
  E2eTrainCore core;
};

#define GST_TYPE_E2E_TRAIN_FILTER (gst_e2e_train_filter_get_type())
G_DECLARE_FINAL_TYPE(GstE2eTrainFilter, gst_e2e_train_filter, GST, E2E_TRAIN_FILTER, GstBaseTransform)

struct _GstE2eTrainFilter {
  GstBaseTransform parent;
  E2eTrainCore core;
};

G_END_DECLS

#endif
