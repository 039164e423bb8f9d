/* An anchor-free, CenterNet-style detector trained end to end from pixels to
 * boxes: a small conv backbone with one top-down fusion, and a head at stride 8
 * that predicts per class a centre heatmap plus, per cell, the box size (log)
 * and the sub-cell centre offset. Objects are heatmap peaks (3x3 max filter),
 * so no anchor tuning and no NMS is needed; an optional class-wise NMS can
 * still remove duplicate peaks on very large objects. */
#ifndef E2E_DETECTOR_H
#define E2E_DETECTOR_H

#include "nncore/nncore.h"
#include "image.h"
#include "model.h"

#define DET_MAX_CLASSES 80
#define DET_LABEL_LEN 48

typedef struct {
  int num_classes;
  int input_size;  /* square network input, multiple of 32 (letterboxed) */
  int width;       /* channels of the first layer; later layers use 2x, 4x, 8x */
  char labels[DET_MAX_CLASSES][DET_LABEL_LEN];
} det_config;

typedef struct {
  det_config cfg;
  nn_params p;
  nn_conv2d_layer conv[7];
  nn_batchnorm bn[7];
  nn_conv2d_layer lateral, fuse, head;
  nn_batchnorm fuse_bn;
  /* inference copies (batch norm folded, ReLU fused), built by the first inference forward */
  bool infer_ready;
  nn_conv_infer infer_conv[7], infer_lateral, infer_fuse, infer_head;
} detector;

typedef struct det_box {
  float x1, y1, x2, y2;  /* pixels */
  float score;
  int cls;
} det_box;

/* Letterbox geometry: network coords = frame coords * scale + pad. With e2e_detect_placement, the frame
 * is first scaled to scaled_w x scaled_h and placed at whole-pixel pads. */
typedef struct {
  float scale, pad_x, pad_y;
  int in_w, in_h, size, scaled_w, scaled_h;
  float scale_y; /* vertical scale: scale itself for a letterbox (0 reads as scale), its own for a stretch */
} det_letterbox;

det_config det_config_default(int num_classes, int input_size);
bool det_init(detector *d, const det_config *cfg, uint64_t seed);
void det_free(detector *d);
/* x[N, 3, S, S] (normalised RGB) -> raw head output [N, C + 4, S/8, S/8].
 * Inference (training = false) runs on copies of the conv layers with the batch norms folded in, made on
 * the first call; a training forward and det_load drop them, so an optimizer step is always seen. Code
 * that changes the weights any other way calls det_weights_changed(). */
nn_tensor *det_forward(detector *d, nn_tensor *x, bool training);
void det_weights_changed(detector *d);
/* Builds the inference copies now, so that later inference forwards only read the model (several threads
 * may then run it at once). */
bool det_prepare_inference(detector *d);

/* Training targets for one batch, built from boxes in network-input pixels. */
typedef struct {
  nn_tensor *heat;   /* [N, C, H, W] gaussian peaks */
  nn_tensor *reg;    /* [N, 4, H, W] offset x, offset y, log w, log h (in cells) */
  nn_tensor *mask;   /* [N, 1, H, W] 1 at object centres */
  int n_objects;
} det_targets;
/* boxes[i] for image i with counts[i] entries. Returns arena tensors. */
bool det_build_targets(const det_config *cfg, int batch, const det_box *const *boxes, const int *counts, det_targets *t);
/* Focal loss on the heatmap + L1 on offsets and sizes at centres; parts out (may be NULL). */
nn_tensor *det_loss(nn_tensor *out, const det_targets *t, float *heat_loss, float *reg_loss);

/* Boxes from the head output of one image (index b), in network-input pixels.
 * Returns how many were written (at most max_out), best first. */
int det_decode(const det_config *cfg, nn_tensor *out, int b, float threshold, float iou_threshold, int max_out,
               det_box *boxes);

/* Adds b to the candidates cand (*n of at most cap), keeping the cap best by score. */
void det_keep_candidate(det_box *cand, int *n, int cap, det_box b);
/* Class-wise non-maximum suppression: sorts cand (n) by score and writes at most max_out survivors. */
int det_nms(det_box *cand, int n, float iou_threshold, det_box *boxes, int max_out);

/* Maps a frame of in_w x in_h into the square input. */
det_letterbox det_letterbox_for(int in_w, int in_h, int size);
/* Boxes from network-input pixels back to frame pixels (clipped to the frame). */
void det_unletterbox(const det_letterbox *lb, det_box *b, int n);

float det_iou(const det_box *a, const det_box *b);

/* safetensors with metadata "architecture" = "e2e-centernet-v1" and "config" JSON. */
bool det_save(detector *d, const char *path, const nn_kv *extra_meta, int n_extra);
/* Loads and validates a model file into d (zeroed, or a detector to replace).
 * On failure d is untouched and false is returned with nn_last_error(). */
bool det_load(detector *d, const char *path);
/* The same from an opened file (path names it in messages). */
bool det_load_file(detector *d, const nn_st_file *f, const char *path);

/* ---- the detection task through the task-model interface (e2e/model.h) ---- */

/* Defaults and ranges of the detection settings, for the elements and the tools alike. */
#define E2E_DETECT_DEFAULT_THRESHOLD 0.3f /* a reported object's least confidence, for models that name none */
#define E2E_DETECT_MODEL_THRESHOLD (-1.0f) /* as threshold: the model's own (its file's "threshold") */
#define E2E_DETECT_DEFAULT_IOU 0.6f       /* class-wise NMS overlap (1: no NMS) */
#define E2E_DETECT_DEFAULT_MAX 100        /* objects per frame */
#define E2E_DETECT_MAX_OBJECTS 1000       /* the most max_detections may be */
#define E2E_DETECT_EVAL_THRESHOLD 0.01f   /* candidates kept for mAP (ranked by score) */

typedef struct {
  float threshold, iou_threshold;
  int max_detections;
  int input_size; /* the square network input, a multiple of 32 (0: the model's own) */
} e2e_detect_params;

/* The defaults above; the threshold is the model's own. */
e2e_detect_params e2e_detect_defaults(void);
/* A model of cfg with fresh weights (for training from scratch). */
e2e_model *e2e_detect_model_new(const det_config *cfg, uint64_t seed);
/* A detection model around an imported graph (takes g over; its parameters get "backbone." or "head."
 * prefixes). meta describes it: "head" (nanodet, yolov5, yolov8), "labels" (JSON list), "normalize"
 * ({"mean": [r,g,b], "std": [r,g,b], "order": "rgb"|"bgr"} on 0..255), optionally "input_size",
 * "resize" (letterbox | stretch), "threshold", "center_offset" (NanoDet), "source". NULL with a message
 * naming what is missing or wrong. */
e2e_model *e2e_detect_graph_model(nn_graph *g, const nn_kv *meta, int n_meta, const char *path);
/* Transfer learning: a copy of an imported NanoDet detector for n new classes (labels), the head's class
 * rows started from the old class `like` (NULL: silent, a 0.01 prior), the rest of the network kept.
 * Parameters are named "backbone.*" and "head.*" (the layers after the feature pyramid), so that
 * training can freeze the backbone. */
e2e_model *e2e_detect_graph_relabel(const e2e_model *m, int n, const char *const *labels, const char *like);
/* The configuration of an in-repo CenterNet detector (NULL for any other model, imported graphs included). */
const det_config *e2e_detect_config(const e2e_model *m);
/* The input size p asks for, else the session's model's own. */
int e2e_detect_input_size(e2e_session *s, const e2e_detect_params *p);
/* Where a w x h frame goes in a size x size input: scaled (aspect kept) to scaled_w x scaled_h and placed
 * at whole-pixel pads, so a caller can scale it with its own converter (the element uses GStreamer's). */
det_letterbox e2e_detect_placement(int w, int h, int size);
/* The same for the session's model (s may be NULL: a letterbox), at size or p's input size when set: a
 * model whose file says "resize": "stretch" fills the square, each axis scaled on its own. */
det_letterbox e2e_detect_placement_for(e2e_session *s, const e2e_detect_params *p, int w, int h, int size);
/* Whether the session's model stretches frames into its input instead of letterboxing them. */
bool e2e_detect_stretches(e2e_session *s);
/* The confidence threshold p asks for, or the session's model's own when p leaves it to the model. */
float e2e_detect_threshold(e2e_session *s, const e2e_detect_params *p);
/* Where e2e_detect_frame puts a w x h frame in a size x size input (fractional pads, bilinear sampling). */
det_letterbox e2e_detect_frame_placement(e2e_session *s, int w, int h, int size);
/* Detects on a frame already scaled to lb->scaled_w x lb->scaled_h (packed RGB, stride bytes per row),
 * lb from e2e_detect_placement. Writes at most max boxes in frame pixels, best first; returns how many,
 * or -1 with a message. */
int e2e_detect_scaled(e2e_session *s, const e2e_detect_params *p, const uint8_t *rgb, int stride, const det_letterbox *lb,
                      det_box *boxes, int max);
/* Detects on a whole frame (packed RGB), letterboxed here with bilinear sampling. */
int e2e_detect_frame(e2e_session *s, const e2e_detect_params *p, const uint8_t *rgb, int w, int h, int stride,
                     det_box *boxes, int max);

/* ---- data: Detection data: COCO128 (YOLO text labels) and the raccoon set (CSV), and
 * the augmentations used in training. Images are decoded once into memory. */

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

/* ---- label files: box labels from memory, in four formats. Files come from anywhere: a box outside its
 * image, of an unknown class, empty or not finite, and a malformed line or entry, are counted in `skipped`
 * and left out. The parsers append to out (zero it first; det_labels_free releases it) and return false,
 * with a message, only when the file as a whole is unusable. */

typedef struct {
  char image[256];   /* the image file it belongs to ("" when the format does not say) */
  int64_t frame;     /* frame number, or -1 */
  double pts_s;      /* timestamp in seconds, or -1 */
  int width, height; /* the image's size */
  det_box box;       /* pixels; score 1 */
} det_label;

typedef struct {
  det_label *v;
  int n, cap;
  int skipped;
} det_labels;

/* YOLO text (one image's file: "class cx cy w h" per line, normalised to the image's size). */
bool det_labels_parse_yolo(const char *text, size_t len, int n_classes, int width, int height, det_labels *out);
/* The raccoon set's CSV: a header line, then "filename,width,height,class,xmin,ymin,xmax,ymax" (one class). */
bool det_labels_parse_csv(const char *text, size_t len, det_labels *out);
/* COCO JSON (images, annotations with [x, y, w, h] boxes, categories); classes by category name. */
bool det_labels_parse_coco(const char *text, size_t len, const char *const *classes, int n_classes, det_labels *out);
/* JSON lines as e2edetect's json-file writes them: {"pts": ns, "frame": n, "width", "height", "objects": [{"label"
 * or "class_id", "x", "y", "w", "h"}]}. */
bool det_labels_parse_jsonl(const char *text, size_t len, const char *const *classes, int n_classes, det_labels *out);
void det_labels_free(det_labels *l);

/* A label file for a stream: the boxes of frame n. By the path: JSON lines (.jsonl; a line's "frame", else
 * its "pts"), COCO JSON (.json) or CSV (.csv; one class, the first), whose images are numbered in the
 * order of their sorted names (frame n = the n-th image of the sequence), or a YOLO pattern with one
 * integer conversion (labels/%05d.txt: frame n's file, read when asked for). NULL with a message when
 * the file is unusable. */
typedef struct det_frame_labels det_frame_labels;
det_frame_labels *det_frame_labels_open(const char *path, const char *const *classes, int n_classes);
/* Writes frame n's boxes (or those at pts_s seconds, for files that give timestamps), scaled from the
 * labelled image's size to w x h, into out (at most max) and returns how many; -1 when the file has no
 * labels for that frame. Boxes a YOLO file could not use are added to *skipped. */
int det_frame_labels_get(det_frame_labels *fl, int64_t frame, double pts_s, int w, int h, det_box *out, int max,
                         int *skipped);
/* Boxes left out while reading the file (malformed, unknown class, outside the image). */
int det_frame_labels_skipped(const det_frame_labels *fl);
void det_frame_labels_free(det_frame_labels *fl);

/* ---- metrics: COCO-style detection metrics: AP by 101-point interpolated precision at IoU
 * 0.50 and averaged over 0.50:0.05:0.95, per class and averaged over the
 * classes that have ground truth; precision/recall/F1 at one score threshold. */

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
