/* COCO-style detection metrics: AP by 101-point interpolated precision at IoU
 * 0.50 and averaged over 0.50:0.05:0.95, per class and averaged over the
 * classes that have ground truth; precision/recall/F1 at one score threshold. */
#ifndef E2E_DET_EVAL_H
#define E2E_DET_EVAL_H

#include "detector.h"

typedef struct {
  const det_box *gt;
  int n_gt;
  const det_box *pred;  /* any order; scores used for ranking */
  int n_pred;
} det_eval_image;

typedef struct {
  int num_classes;
  double map50, map5095;
  double ap50[DET_MAX_CLASSES], ap5095[DET_MAX_CLASSES];
  int n_gt[DET_MAX_CLASSES];
  /* at IoU 0.5 and score >= the operating threshold */
  double precision, recall, f1;
  int tp, fp, fn;
} det_metrics;

void det_evaluate(const det_eval_image *imgs, int n_images, int num_classes, float op_threshold, det_metrics *m);

#endif
