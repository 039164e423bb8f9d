/* Detection metrics (see eval.h). */
#include "e2e/detect.h"

#include <stdlib.h>
#include <string.h>

typedef struct { float score; int img, idx; } ranked;

static int cmp_ranked(const void *a, const void *b) {
  float x = ((const ranked *)a)->score, y = ((const ranked *)b)->score;
  return x < y ? 1 : (x > y ? -1 : 0);
}

/* AP of one class at one IoU threshold; counts TP/FP above op_thr when asked. */
static double class_ap(const det_eval_image *imgs, int n, int cls, float iou_thr, float op_thr, int *tp_op, int *fp_op) {
  int n_gt = 0, n_pred = 0;
  for (int i = 0; i < n; i++) {
    for (int k = 0; k < imgs[i].n_gt; k++) n_gt += imgs[i].gt[k].cls == cls;
    for (int k = 0; k < imgs[i].n_pred; k++) n_pred += imgs[i].pred[k].cls == cls;
  }
  if (n_gt == 0) return -1;
  ranked *r = malloc((size_t)(n_pred ? n_pred : 1) * sizeof *r);
  int m = 0;
  for (int i = 0; i < n; i++)
    for (int k = 0; k < imgs[i].n_pred; k++)
      if (imgs[i].pred[k].cls == cls) r[m++] = (ranked){imgs[i].pred[k].score, i, k};
  qsort(r, (size_t)m, sizeof *r, cmp_ranked);
  /* matched flags per ground truth box */
  int total_gt = 0;
  for (int i = 0; i < n; i++) total_gt += imgs[i].n_gt;
  char *used = calloc((size_t)(total_gt ? total_gt : 1), 1);
  int *offset = malloc((size_t)(n ? n : 1) * sizeof *offset);
  for (int i = 0, o = 0; i < n; i++) {
    offset[i] = o;
    o += imgs[i].n_gt;
  }
  double *prec = malloc((size_t)(m + 1) * sizeof(double)), *rec = malloc((size_t)(m + 1) * sizeof(double));
  int tp = 0, fp = 0;
  for (int j = 0; j < m; j++) {
    const det_eval_image *im = &imgs[r[j].img];
    const det_box *p = &im->pred[r[j].idx];
    float best = iou_thr;
    int bi = -1;
    for (int k = 0; k < im->n_gt; k++) {
      if (im->gt[k].cls != cls || used[offset[r[j].img] + k]) continue;
      float v = det_iou(p, &im->gt[k]);
      if (v >= best) {
        best = v;
        bi = k;
      }
    }
    if (bi >= 0) {
      used[offset[r[j].img] + bi] = 1;
      tp++;
      if (tp_op && p->score >= op_thr) (*tp_op)++;
    } else {
      fp++;
      if (fp_op && p->score >= op_thr) (*fp_op)++;
    }
    prec[j] = (double)tp / (tp + fp);
    rec[j] = (double)tp / n_gt;
  }
  /* precision envelope, then 101 recall points */
  for (int j = m - 2; j >= 0; j--)
    if (prec[j + 1] > prec[j]) prec[j] = prec[j + 1];
  double ap = 0;
  int j = 0;
  for (int t = 0; t <= 100; t++) {
    double rt = t / 100.0;
    while (j < m && rec[j] < rt) j++;
    ap += j < m ? prec[j] : 0.0;
  }
  free(r);
  free(used);
  free(offset);
  free(prec);
  free(rec);
  return ap / 101.0;
}

void det_evaluate(const det_eval_image *imgs, int n, int num_classes, float op_thr, det_metrics *m) {
  memset(m, 0, sizeof *m);
  m->num_classes = num_classes;
  int counted = 0;
  for (int c = 0; c < num_classes; c++) {
    for (int i = 0; i < n; i++)
      for (int k = 0; k < imgs[i].n_gt; k++) m->n_gt[c] += imgs[i].gt[k].cls == c;
    int tp = 0, fp = 0;
    double ap50 = class_ap(imgs, n, c, 0.5f, op_thr, &tp, &fp);
    if (ap50 < 0) {
      m->ap50[c] = m->ap5095[c] = -1;
      continue;
    }
    double s = 0;
    for (int t = 0; t < 10; t++) s += class_ap(imgs, n, c, 0.5f + 0.05f * t, 0, NULL, NULL);
    m->ap50[c] = ap50;
    m->ap5095[c] = s / 10;
    m->map50 += ap50;
    m->map5095 += s / 10;
    m->tp += tp;
    m->fp += fp;
    m->fn += m->n_gt[c] - tp;
    counted++;
  }
  if (counted) {
    m->map50 /= counted;
    m->map5095 /= counted;
  }
  m->precision = m->tp + m->fp ? (double)m->tp / (m->tp + m->fp) : 0;
  m->recall = m->tp + m->fn ? (double)m->tp / (m->tp + m->fn) : 0;
  m->f1 = m->precision + m->recall > 0 ? 2 * m->precision * m->recall / (m->precision + m->recall) : 0;
}
