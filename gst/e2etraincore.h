/* What e2etrain (a sink) and e2etrainfilter (its pass-through form) share: properties, turning frames
 * and their boxes into samples for e2e/online.h, and training events into element messages. Each
 * element embeds an E2eTrainCore and forwards its base class's calls. */
#ifndef E2E_TRAIN_CORE_H
#define E2E_TRAIN_CORE_H

#include <gst/gst.h>
#include <gst/video/video.h>

#include "e2e/detect.h"
#include "e2e/online.h"
#include "e2eelement.h"

typedef struct {
  GstElement *element;   /* the element it belongs to: messages, errors */
  const GstSegment *segment; /* the element's input segment (stream time of frames) */
  E2eElementModel model; /* model, model-name, device, num-threads (the trainer's budget) */

  GMutex lock; /* the properties and the counters */
  e2e_online_opts opts;
  gchar *freeze, *checkpoint_dir, *optimizer, *labels_path, *sample, *save_uncertain;
  guint64 frames, dropped, bad_labels, unlabelled, published, rejected, uncertain, saved;
  gint64 steps, last_progress_us;
  gdouble last_loss;

  /* streaming state */
  GstVideoInfo info;
  e2e_online *online;
  gchar **labels;         /* the model's classes, to map ROI types to */
  gint n_labels;
  det_frame_labels *file; /* the label file's boxes, when one is given: used instead of the metas */
  guint64 counted;        /* buffers since start: the frame number when the caps give no frame rate */
  GstClockTime last_saved; /* stream time of the last frame written for labelling */
} E2eTrainCore;

void e2e_train_core_install_properties(GObjectClass *oc);
void e2e_train_core_init(E2eTrainCore *c, GstElement *element, const GstSegment *segment);
void e2e_train_core_clear(E2eTrainCore *c);
void e2e_train_core_set_property(E2eTrainCore *c, GObject *obj, guint id, const GValue *v, GParamSpec *ps);
void e2e_train_core_get_property(E2eTrainCore *c, GObject *obj, guint id, GValue *v, GParamSpec *ps);

gboolean e2e_train_core_start(E2eTrainCore *c);
void e2e_train_core_stop(E2eTrainCore *c);
gboolean e2e_train_core_set_caps(E2eTrainCore *c, GstCaps *caps);
/* Takes the frame (it may wait, with leaky=false, until the trainer has room); never changes it. */
GstFlowReturn e2e_train_core_frame(E2eTrainCore *c, GstBuffer *buf);
/* At end of stream with max-steps: waits for the training to finish (or a flush). */
void e2e_train_core_eos(E2eTrainCore *c);
/* A flush or a state change wakes a waiting frame. */
void e2e_train_core_set_flushing(E2eTrainCore *c, gboolean flushing);

#endif
