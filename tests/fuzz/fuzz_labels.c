/* The detector's label-file readers (models/detect/labels.c). The first byte picks the format: 0 YOLO
 * text, 1 CSV, 2 COCO JSON, 3 our JSON lines; the rest is the file. Every box a reader keeps must be
 * finite, inside its image and of a known class. */
#include <math.h>

#include "e2e/detect.h"
#include "fuzz.h"

static const char *const CLASSES[] = {"person", "car", "raccoon"};

int LLVMFuzzerInitialize(int *argc, char ***argv) { return 0; }

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 1) return 0;
  const char *text = (const char *)data + 1;
  size_t len = size - 1;
  det_labels l = {0};
  int n_classes = 3;
  switch (data[0] % 4) {
  case 0: det_labels_parse_yolo(text, len, n_classes, 640, 480, &l); break;
  case 1: det_labels_parse_csv(text, len, &l), n_classes = 1; break;
  case 2: det_labels_parse_coco(text, len, CLASSES, n_classes, &l); break;
  default: det_labels_parse_jsonl(text, len, CLASSES, n_classes, &l); break;
  }
  for (int i = 0; i < l.n; i++) {
    const det_label *x = &l.v[i];
    const det_box *b = &x->box;
    if (!isfinite(b->x1) || !isfinite(b->y1) || !isfinite(b->x2) || !isfinite(b->y2) || !(b->x2 > b->x1) ||
        !(b->y2 > b->y1) || b->cls < 0 || b->cls >= n_classes || x->width < 1 || x->height < 1 || b->x1 < 0 ||
        b->y1 < 0 || b->x2 > x->width || b->y2 > x->height)
      __builtin_trap();
  }
  det_labels_free(&l);
  return 0;
}
