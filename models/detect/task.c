/* The detector as a task model (e2e/model.h): open, copy, train, evaluate, and inference on frames. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "runner.h"
#include "task.h"

typedef struct {
  det_runner runner; /* first: task.c's shared code reaches every detection model through it */
  detector d;
  const char *labels[DET_MAX_CLASSES]; /* into d.cfg.labels, for e2e_model_info */
} detect_impl;

static int centernet_detect(void *impl, nn_tensor *x, float threshold, float iou_threshold, int max, det_box *boxes) {
  detector *d = &((detect_impl *)impl)->d;
  nn_tensor *y = det_forward(d, x, false);
  return y ? det_decode(&d->cfg, y, 0, threshold, iou_threshold, max, boxes) : -1;
}

static detect_impl *impl_new(void) {
  detect_impl *m = calloc(1, sizeof *m);
  if (!m) nn_set_error("out of memory for a detector");
  else m->runner.detect = centernet_detect, m->runner.threshold = E2E_DETECT_DEFAULT_THRESHOLD;
  return m;
}

static void destroy(void *impl) {
  detect_impl *m = impl;
  det_free(&m->d);
  free(m);
}

static void *load(const nn_st_file *f, const char *path) {
  detect_impl *m = impl_new();
  if (m && det_load_file(&m->d, f, path) && det_prepare_inference(&m->d)) return m;
  if (m) destroy(m);
  return NULL;
}

static void *copy(const void *impl, bool training) {
  const detector *src = &((const detect_impl *)impl)->d;
  detect_impl *m = impl_new();
  if (!m || !det_init(&m->d, &src->cfg, 0)) {
    if (m) destroy(m);
    return NULL;
  }
  e2e_params_copy(&m->d.p, &src->p);
  if (!training && !det_prepare_inference(&m->d)) {
    destroy(m);
    return NULL;
  }
  return m;
}

static nn_params *params(void *impl) { return &((detect_impl *)impl)->d.p; }

static void describe(void *impl, e2e_model_info *info) {
  detect_impl *m = impl;
  for (int i = 0; i < m->d.cfg.num_classes; i++) m->labels[i] = m->d.cfg.labels[i];
  info->n_labels = m->d.cfg.num_classes;
  info->labels = m->labels;
  info->input_size = m->d.cfg.input_size;
  info->id = e2e_params_hash(&m->d.p);
}

static bool save(void *impl, const char *path, const nn_kv *meta, int n_meta) {
  return det_save(&((detect_impl *)impl)->d, path, meta, n_meta);
}

static bool warm_up(void *impl, int w, int h) {
  detector *d = &((detect_impl *)impl)->d;
  int size = w > 0 ? w : d->cfg.input_size;
  (void)h;
  return det_forward(d, nn_zeros(NN_F32, 4, (int64_t[]){1, 3, size, size}), false) != NULL;
}

static bool batch_valid(const detector *d, const e2e_batch *b) {
  const nn_tensor *x = b->images;
  if (x->ndim != 4 || x->shape[0] != b->n || x->shape[1] != 3 || x->shape[2] != d->cfg.input_size ||
      x->shape[3] != d->cfg.input_size || !b->boxes || !b->counts) {
    nn_set_error("detect batch: need images [%d, 3, %d, %d] and boxes with counts", b->n, d->cfg.input_size,
                 d->cfg.input_size);
    return false;
  }
  return true;
}

static nn_tensor *loss(void *impl, const e2e_batch *b, nn_rng *rng, e2e_metric *out) {
  detector *d = &((detect_impl *)impl)->d;
  (void)rng;
  if (!batch_valid(d, b)) return NULL;
  det_targets t;
  float hl = 0, rl = 0;
  nn_tensor *l = det_build_targets(&d->cfg, b->n, b->boxes, b->counts, &t)
                     ? det_loss(det_forward(d, b->images, true), &t, &hl, &rl)
                     : NULL;
  if (l) *out = (e2e_metric){.name = "focal+L1", .value = nn_item(l), .n_parts = 2,
                              .part_names = {"heatmap", "box"}, .parts = {hl, rl}};
  return l;
}

/* One forward over the whole batch, then each image's boxes. */
static bool evaluate(void *impl, const e2e_batch *b, e2e_metric *out) {
  detector *d = &((detect_impl *)impl)->d;
  if (!batch_valid(d, b)) return false;
  nn_tensor *y = det_forward(d, b->images, false);
  det_box *preds = calloc((size_t)b->n * E2E_DETECT_DEFAULT_MAX, sizeof *preds);
  int *counts = calloc((size_t)b->n, sizeof *counts);
  bool ok = y && preds && counts;
  for (int i = 0; ok && i < b->n; i++)
    counts[i] = det_decode(&d->cfg, y, i, E2E_DETECT_EVAL_THRESHOLD, E2E_DETECT_DEFAULT_IOU, E2E_DETECT_DEFAULT_MAX,
                           preds + (size_t)i * E2E_DETECT_DEFAULT_MAX);
  ok = ok && det_batch_metric(b, preds, counts, d->cfg.num_classes, out);
  free(preds);
  free(counts);
  return ok;
}

bool det_batch_metric(const e2e_batch *b, const det_box *preds, const int *counts, int num_classes, e2e_metric *out) {
  det_eval_image *ev = calloc((size_t)b->n, sizeof *ev);
  if (!ev) {
    nn_set_error("detect: out of memory");
    return false;
  }
  for (int i = 0; i < b->n; i++)
    ev[i] = (det_eval_image){b->boxes[i], b->counts[i], preds + (size_t)i * E2E_DETECT_DEFAULT_MAX, counts[i]};
  det_metrics m;
  det_evaluate(ev, b->n, num_classes, E2E_DETECT_DEFAULT_THRESHOLD, &m);
  *out = (e2e_metric){.name = "mAP@0.5", .value = m.map50, .higher_is_better = true, .n_parts = 3,
                      .part_names = {"mAP@[.5:.95]", "precision", "recall"}, .parts = {m.map5095, m.precision, m.recall}};
  free(ev);
  return true;
}

const e2e_task_ops e2e_detect_ops = {
    .task = E2E_TASK_DETECT, .architecture = "e2e-centernet-v1", .input_align = 32, .load = load, .copy = copy,
    .destroy = destroy, .params = params, .describe = describe, .save = save, .warm_up = warm_up, .loss = loss,
    .evaluate = evaluate};

/* ---------------------------------------------------------------- inference */

e2e_detect_params e2e_detect_defaults(void) {
  return (e2e_detect_params){.threshold = E2E_DETECT_MODEL_THRESHOLD, .iou_threshold = E2E_DETECT_DEFAULT_IOU,
                             .max_detections = E2E_DETECT_DEFAULT_MAX};
}

e2e_model *e2e_detect_model_new(const det_config *cfg, uint64_t seed) {
  detect_impl *m = impl_new();
  if (!m || !det_init(&m->d, cfg, seed) || !det_prepare_inference(&m->d)) {
    if (m) destroy(m);
    return NULL;
  }
  return e2e_model_wrap(&e2e_detect_ops, m, NULL, "");
}

const det_config *e2e_detect_config(const e2e_model *m) {
  return e2e_model_ops(m) == &e2e_detect_ops ? &((detect_impl *)e2e_model_impl(m))->d.cfg : NULL;
}

int e2e_detect_input_size(e2e_session *s, const e2e_detect_params *p) {
  return p && p->input_size ? p->input_size : e2e_model_describe(e2e_session_model(s))->input_size;
}

det_letterbox e2e_detect_placement(int w, int h, int size) {
  det_letterbox lb = det_letterbox_for(w, h, size);
  lb.scaled_w = (int)lrintf((float)w * lb.scale), lb.scaled_h = (int)lrintf((float)h * lb.scale);
  if (lb.scaled_w < 1) lb.scaled_w = 1;
  if (lb.scaled_h < 1) lb.scaled_h = 1;
  /* whole-pixel placement: the exact offsets the scaled frame lands at */
  lb.pad_x = (float)((size - lb.scaled_w) / 2);
  lb.pad_y = (float)((size - lb.scaled_h) / 2);
  lb.scale = fminf((float)lb.scaled_w / (float)w, (float)lb.scaled_h / (float)h);
  lb.scale_y = lb.scale;
  return lb;
}

/* A stretch: the frame fills the square, each axis scaled on its own. */
static det_letterbox stretch_for(int w, int h, int size) {
  return (det_letterbox){.scale = (float)size / (float)w, .scale_y = (float)size / (float)h, .in_w = w, .in_h = h,
                         .size = size, .scaled_w = size, .scaled_h = size};
}

bool e2e_detect_stretches(e2e_session *s) {
  const det_runner *r = s ? e2e_model_impl(e2e_session_model(s)) : NULL;
  return r && e2e_model_describe(e2e_session_model(s))->task == E2E_TASK_DETECT && r->stretch;
}

float e2e_detect_threshold(e2e_session *s, const e2e_detect_params *p) {
  if (p && p->threshold >= 0) return p->threshold;
  const det_runner *r = s ? e2e_model_impl(e2e_session_model(s)) : NULL;
  return r && e2e_model_describe(e2e_session_model(s))->task == E2E_TASK_DETECT ? r->threshold : 0.3f;
}

det_letterbox e2e_detect_frame_placement(e2e_session *s, int w, int h, int size) {
  return e2e_detect_stretches(s) ? stretch_for(w, h, size) : det_letterbox_for(w, h, size);
}

det_letterbox e2e_detect_placement_for(e2e_session *s, const e2e_detect_params *p, int w, int h, int size) {
  if (p && p->input_size) size = p->input_size;
  return e2e_detect_stretches(s) ? stretch_for(w, h, size) : e2e_detect_placement(w, h, size);
}

typedef enum { PLACED, BILINEAR } fill_kind;

/* Fills the network input from the frame, runs the network, decodes its boxes into frame pixels. */
static int detect(e2e_session *s, const e2e_detect_params *p, fill_kind kind, const uint8_t *rgb, int stride,
                  const det_letterbox *lb, det_box *boxes, int max) {
  e2e_detect_params dp = p ? *p : e2e_detect_defaults();
  nn_scope scope;
  det_runner *r = e2e_session_enter(s, E2E_TASK_DETECT, &scope);
  if (!r) return -1;
  int n = -1, size = lb->size;
  nn_tensor *x = NULL;
  if (size < 32 || size % 32 || size > 4096)
    nn_set_error("detect: input size %d is not a multiple of 32 in 32..4096", size);
  else if (r->fixed_size && size != r->fixed_size)
    nn_set_error("detect: this model runs at %dx%d only, not %dx%d", r->fixed_size, r->fixed_size, size, size);
  else
    x = nn_empty(NN_F32, 4, (int64_t[]){1, 3, size, size});
  if (x) {
    if (kind == PLACED) e2e_place_planar(rgb, lb->scaled_w, lb->scaled_h, stride, size, (int)lb->pad_x, (int)lb->pad_y, nn_f32(x));
    else e2e_resize_to_planar(rgb, lb->in_w, lb->in_h, stride, size, lb->scale, lb->scale_y > 0 ? lb->scale_y : lb->scale, lb->pad_x,
                              lb->pad_y, nn_f32(x));
    int want = dp.max_detections < max ? dp.max_detections : max;
    n = r->detect(r, x, dp.threshold < 0 ? r->threshold : dp.threshold, dp.iou_threshold, want, boxes);
    if (n > 0) det_unletterbox(lb, boxes, n);
    /* a box that lies wholly in the letterbox padding has no area left in the frame: not an object */
    int kept = 0;
    for (int i = 0; i < n; i++)
      if (boxes[i].x2 > boxes[i].x1 && boxes[i].y2 > boxes[i].y1) boxes[kept++] = boxes[i];
    if (n > 0) n = kept;
  }
  e2e_session_leave(s, &scope);
  return n;
}

int e2e_detect_scaled(e2e_session *s, const e2e_detect_params *p, const uint8_t *rgb, int stride, const det_letterbox *lb,
                      det_box *boxes, int max) {
  return detect(s, p, PLACED, rgb, stride, lb, boxes, max);
}

int e2e_detect_frame(e2e_session *s, const e2e_detect_params *p, const uint8_t *rgb, int w, int h, int stride,
                     det_box *boxes, int max) {
  int size = e2e_detect_input_size(s, p);
  det_letterbox lb = e2e_detect_frame_placement(s, w, h, size);
  return detect(s, p, BILINEAR, rgb, stride, &lb, boxes, max);
}
