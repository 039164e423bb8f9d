/* What every detection model (the in-repo CenterNet, imported graphs) gives the shared detection code in
 * task.c: its implementation starts with this table. Private to models/detect. */
#ifndef E2E_DETECT_RUNNER_H
#define E2E_DETECT_RUNNER_H

#include "e2e/detect.h"
#include "task.h"

typedef struct det_runner {
  /* Boxes in network-input pixels from x[1, 3, S, S] holding the frame in our normalisation
   * (e2e/image.h; the runner may rewrite x into its own). At most max, best first; -1 with a message. */
  int (*detect)(void *impl, nn_tensor *x, float threshold, float iou_threshold, int max, det_box *boxes);
  /* The only input size the model runs at, or 0 when any multiple of 32 does. */
  int fixed_size;
  /* The least confidence the model recommends reporting (E2E_DETECT_MODEL_THRESHOLD resolves to it). */
  float threshold;
  /* Frames are stretched into the square input (aspect not kept) instead of letterboxed. */
  bool stretch;
} det_runner;

extern const e2e_task_ops e2e_detect_graph_ops;

/* The batch's metric (mAP@0.5, with mAP@[.5:.95], precision, recall) from each image's boxes:
 * preds holds E2E_DETECT_DEFAULT_MAX slots per image, counts how many of them are used. */
bool det_batch_metric(const e2e_batch *b, const det_box *preds, const int *counts, int num_classes, e2e_metric *out);

#endif
