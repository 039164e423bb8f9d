/* Detection data: COCO128 (YOLO text labels) and the raccoon set (CSV), and
 * the augmentations used in training. Images are decoded once into memory. */
#ifndef E2E_DET_DATASET_H
#define E2E_DET_DATASET_H

#include "../image.h"
#include "detector.h"

typedef struct {
  char name[256];
  e2e_image img;
  det_box *boxes; /* pixels of the original image; score unused */
  int n;
} det_sample;

typedef struct {
  det_sample *s;
  int n;
  int num_classes;
  char labels[DET_MAX_CLASSES][DET_LABEL_LEN];
} det_dataset;

/* root: the coco128 folder (holding images/ and object_detection/); split: train2017 | val2017.
 * only_class: keep only this class (it becomes class 0), or NULL for all 80. */
bool det_dataset_load_coco128(det_dataset *ds, const char *root, const char *split, const char *only_class);
/* root: the raccoon folder; split: train | test. One class, "raccoon". */
bool det_dataset_load_raccoon(det_dataset *ds, const char *root, const char *split);
void det_dataset_free(det_dataset *ds);

/* One augmented training input: planar normalised [3, size, size] into dst and
 * its boxes in network pixels. With mosaic, four random images share the canvas.
 * Returns the number of boxes written (at most max_boxes). */
int det_augment(const det_dataset *ds, int idx, nn_rng *r, int size, bool mosaic, float *dst, det_box *boxes,
                int max_boxes);

#endif
