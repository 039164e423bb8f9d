/* Detection with an imported graph (nncore/graph.h): the network runs as the graph says, and the file's
 * metadata says the rest — which head decoder turns its outputs into boxes, the labels, the input size
 * and the input normalisation. Decoders: NanoDet (per-level class scores and distance distributions),
 * YOLOv5 ([1, A, 5 + C]: box, objectness, class scores) and YOLOv8 ([1, 4 + C, A]). */
#include <json-glib/json-glib.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "e2e/import.h"
#include "runner.h"

#define ARCHITECTURE "e2e-graph-v1"
#define MAX_LEVELS 6
#define PRE_NMS 1000 /* candidates kept for NMS, best first (as NanoDet's nms_pre) */

typedef enum { HEAD_NANODET, HEAD_YOLOV5, HEAD_YOLOV8 } head_kind;
static const char *const HEADS[] = {"nanodet", "yolov5", "yolov8"};

typedef struct {
  det_runner runner; /* first (runner.h) */
  nn_graph g;
  head_kind head;
  int input_size, num_classes;
  char labels[DET_MAX_CLASSES][DET_LABEL_LEN];
  const char *label_ptrs[DET_MAX_CLASSES];
  /* our normalised input v -> the model's: v * in_scale[c] + in_shift[c], channels swapped when bgr */
  float mean[3], std[3];
  bool bgr;
  float center_offset; /* NanoDet: cell centres at (i + offset) * stride */
  /* NanoDet: outputs per level */
  int n_levels, cls_out[MAX_LEVELS], reg_out[MAX_LEVELS], stride[MAX_LEVELS], reg_max;
  char *normalize_json, *labels_json, *source;
} graph_det;

static void destroy(void *impl) {
  graph_det *m = impl;
  nn_graph_free(&m->g);
  g_free(m->normalize_json);
  g_free(m->labels_json);
  g_free(m->source);
  free(m);
}

/* ---------------------------------------------------------------- decoding */

static void keep_candidate(det_box *cand, int *n, det_box b) {
  if (*n < PRE_NMS) {
    cand[(*n)++] = b;
    return;
  }
  int worst = 0;
  for (int i = 1; i < *n; i++)
    if (cand[i].score < cand[worst].score) worst = i;
  if (b.score > cand[worst].score) cand[worst] = b;
}

static float clampf(float v, float lo, float hi) { return v < lo ? lo : v > hi ? hi : v; }

static int decode_nanodet(const graph_det *m, nn_tensor **outs, float thr, det_box *cand) {
  int n = 0, C = m->num_classes, R = m->reg_max + 1;
  float S = (float)m->input_size;
  for (int l = 0; l < m->n_levels; l++) {
    const float *cls = nn_f32(outs[m->cls_out[l]]), *reg = nn_f32(outs[m->reg_out[l]]);
    int side = m->input_size / m->stride[l];
    float st = (float)m->stride[l];
    for (int i = 0; i < side * side; i++) {
      const float *sc = cls + (int64_t)i * C;
      float best = 0;
      for (int c = 0; c < C; c++) best = fmaxf(best, sc[c]);
      if (!(best >= thr)) continue;
      /* the four distances: expectations of softmax distributions over 0..reg_max cells */
      float d[4];
      for (int k = 0; k < 4; k++) {
        const float *r = reg + (int64_t)i * 4 * R + k * R;
        float mx = r[0], sum = 0, e = 0;
        for (int j = 1; j < R; j++) mx = fmaxf(mx, r[j]);
        for (int j = 0; j < R; j++) {
          float p = expf(r[j] - mx);
          sum += p, e += p * (float)j;
        }
        d[k] = e / sum * st;
      }
      float cx = ((float)(i % side) + m->center_offset) * st, cy = ((float)(i / side) + m->center_offset) * st;
      det_box b = {clampf(cx - d[0], 0, S), clampf(cy - d[1], 0, S), clampf(cx + d[2], 0, S), clampf(cy + d[3], 0, S), 0, 0};
      for (int c = 0; c < C; c++)
        if (sc[c] >= thr) b.score = sc[c], b.cls = c, keep_candidate(cand, &n, b);
    }
  }
  return n;
}

static int decode_yolo(const graph_det *m, nn_tensor *out, bool v8, float thr, det_box *cand) {
  int n = 0, C = m->num_classes;
  float S = (float)m->input_size;
  const float *y = nn_f32(out);
  int64_t A = v8 ? out->shape[2] : out->shape[1];
  for (int64_t a = 0; a < A; a++) {
    /* v5: row a holds cx cy w h obj c...; v8: column a holds cx cy w h c... */
#define AT(k) (v8 ? y[(int64_t)(k) * A + a] : y[a * (5 + C) + (k)])
    float obj = v8 ? 1.0f : AT(4);
    if (!(obj >= thr)) continue;
    float cx = AT(0), cy = AT(1), w = AT(2), h = AT(3);
    det_box b = {clampf(cx - w / 2, 0, S), clampf(cy - h / 2, 0, S), clampf(cx + w / 2, 0, S), clampf(cy + h / 2, 0, S), 0, 0};
    for (int c = 0; c < C; c++) {
      float s = obj * AT((v8 ? 4 : 5) + c);
      if (s >= thr) b.score = s, b.cls = c, keep_candidate(cand, &n, b);
    }
#undef AT
  }
  return n;
}

static int graph_detect(void *impl, nn_tensor *x, float threshold, float iou_threshold, int max, det_box *boxes) {
  graph_det *m = impl;
  int64_t hw = (int64_t)m->input_size * m->input_size;
  float *px = nn_f32(x);
  /* ours: v = (u/255 - 0.5) / 0.25; the model's: (u - mean) / std, u in 0..255 */
  float planes[3][2];
  for (int c = 0; c < 3; c++) {
    planes[c][0] = 63.75f / m->std[c];
    planes[c][1] = (127.5f - m->mean[c]) / m->std[c];
  }
  if (m->bgr) /* the model's channel c is our channel 2 - c */
    for (int64_t i = 0; i < hw; i++) {
      float r = px[i];
      px[i] = px[2 * hw + i], px[2 * hw + i] = r;
    }
  for (int c = 0; c < 3; c++)
    for (int64_t i = 0; i < hw; i++) px[c * hw + i] = px[c * hw + i] * planes[c][0] + planes[c][1];
  nn_tensor *outs[16];
  if (!nn_graph_run(&m->g, &x, outs)) return -1;
  for (int k = 0; k < m->g.n_outputs; k++)
    if (!(outs[k] = nn_contiguous(outs[k]))) return -1;
  det_box *cand = malloc(sizeof *cand * PRE_NMS);
  if (!cand) {
    nn_set_error("detect: out of memory");
    return -1;
  }
  int n = m->head == HEAD_NANODET ? decode_nanodet(m, outs, threshold, cand)
                                  : decode_yolo(m, outs[0], m->head == HEAD_YOLOV8, threshold, cand);
  int kept = det_nms(cand, n, iou_threshold, boxes, max);
  free(cand);
  return kept;
}

/* ---------------------------------------------------------------- metadata */

static const char *meta_of(const nn_kv *meta, int n, const char *key) {
  for (int i = 0; i < n; i++)
    if (!strcmp(meta[i].key, key)) return meta[i].value;
  return NULL;
}

static bool json_floats(JsonObject *o, const char *key, float *out, int n) {
  JsonNode *a = o && json_object_has_member(o, key) ? json_object_get_member(o, key) : NULL;
  if (!a || !JSON_NODE_HOLDS_ARRAY(a) || (int)json_array_get_length(json_node_get_array(a)) != n) return false;
  for (int i = 0; i < n; i++) {
    JsonNode *e = json_array_get_element(json_node_get_array(a), (guint)i);
    if (!JSON_NODE_HOLDS_VALUE(e) || (json_node_get_value_type(e) != G_TYPE_DOUBLE && json_node_get_value_type(e) != G_TYPE_INT64))
      return false;
    out[i] = (float)json_node_get_double(e);
  }
  return true;
}

#define META_FAIL(...)                         \
  do {                                         \
    char m_[300];                              \
    snprintf(m_, sizeof m_, __VA_ARGS__);      \
    nn_set_error("%s: %s", what, m_);          \
    goto fail;                                 \
  } while (0)

/* Checks the head's outputs against the graph: their count and shapes. */
static bool bind_head(graph_det *m, const char *what) {
  const nn_graph *g = &m->g;
  int S = m->input_size, C = m->num_classes;
  if (m->head != HEAD_NANODET) {
    const nn_graph_value *o = &g->values[g->outputs[0]];
    bool v8 = m->head == HEAD_YOLOV8;
    bool fits = g->n_outputs >= 1 && o->ndim == 3 && o->shape[0] == 1 && o->shape[v8 ? 1 : 2] == (v8 ? 4 : 5) + C;
    if (!fits) {
      nn_set_error("%s: a %s head needs a first output [1, %s] for %d classes", what, HEADS[m->head],
                   v8 ? "4 + classes, anchors" : "anchors, 5 + classes", C);
      return false;
    }
    return true;
  }
  /* NanoDet: per level a [1, N, C] score output and a [1, N, 4 (reg_max + 1)] distance output, N = (S / stride)^2 */
  m->n_levels = 0;
  m->reg_max = -1;
  for (int k = 0; k < g->n_outputs; k++) {
    const nn_graph_value *o = &g->values[g->outputs[k]];
    if (o->ndim != 3 || o->shape[0] != 1 || o->shape[2] != C) continue;
    int side = (int)lrint(sqrt((double)o->shape[1]));
    if (side < 1 || (int64_t)side * side != o->shape[1] || S % side || m->n_levels == MAX_LEVELS) continue;
    for (int j = 0; j < g->n_outputs; j++) {
      const nn_graph_value *r = &g->values[g->outputs[j]];
      if (j == k || r->ndim != 3 || r->shape[1] != o->shape[1] || r->shape[2] % 4 || r->shape[2] == C) continue;
      int rm = (int)(r->shape[2] / 4) - 1;
      if (rm < 1 || (m->reg_max >= 0 && rm != m->reg_max)) continue;
      m->reg_max = rm;
      m->cls_out[m->n_levels] = k, m->reg_out[m->n_levels] = j, m->stride[m->n_levels] = S / side;
      m->n_levels++;
      break;
    }
  }
  if (!m->n_levels) {
    nn_set_error("%s: a nanodet head needs per level outputs [1, N, %d] (scores) and [1, N, 4 (reg_max + 1)] (distances)",
                 what, C);
    return false;
  }
  return true;
}

/* Takes g over. meta: the model's description (head, labels, input_size, normalize, ...). */
static graph_det *graph_det_new(nn_graph *g, const nn_kv *meta, int n_meta, const char *what) {
  graph_det *m = calloc(1, sizeof *m);
  JsonParser *p = json_parser_new();
  if (!m) {
    nn_graph_free(g);
    g_object_unref(p);
    nn_set_error("out of memory");
    return NULL;
  }
  m->g = *g;
  memset(g, 0, sizeof *g);
  m->runner.detect = graph_detect;
  const char *head = meta_of(meta, n_meta, "head"), *labels = meta_of(meta, n_meta, "labels"),
             *size = meta_of(meta, n_meta, "input_size"), *norm = meta_of(meta, n_meta, "normalize"),
             *resize = meta_of(meta, n_meta, "resize"), *off = meta_of(meta, n_meta, "center_offset"),
             *thr = meta_of(meta, n_meta, "threshold");
  if (!head) META_FAIL("no \"head\" in the model's metadata: say which decoder reads its outputs (%s, %s or %s; e2e import --head)",
                       HEADS[0], HEADS[1], HEADS[2]);
  int h = -1;
  for (int i = 0; i < 3; i++)
    if (!strcmp(head, HEADS[i])) h = i;
  if (h < 0) META_FAIL("unknown head \"%s\" (%s, %s or %s)", head, HEADS[0], HEADS[1], HEADS[2]);
  m->head = (head_kind)h;
  if (!labels) META_FAIL("no \"labels\" in the model's metadata (a JSON list of class names; e2e import --labels)");
  if (!nn_json_nesting_ok(labels, strlen(labels), 4) || !json_parser_load_from_data(p, labels, -1, NULL) ||
      !JSON_NODE_HOLDS_ARRAY(json_parser_get_root(p)))
    META_FAIL("\"labels\" is not a JSON list of names");
  JsonArray *la = json_node_get_array(json_parser_get_root(p));
  m->num_classes = (int)json_array_get_length(la);
  if (m->num_classes < 1 || m->num_classes > DET_MAX_CLASSES) META_FAIL("%d labels (1 to %d)", m->num_classes, DET_MAX_CLASSES);
  for (int i = 0; i < m->num_classes; i++) {
    JsonNode *e = json_array_get_element(la, (guint)i);
    if (!JSON_NODE_HOLDS_VALUE(e) || json_node_get_value_type(e) != G_TYPE_STRING) META_FAIL("label %d is not a string", i);
    snprintf(m->labels[i], DET_LABEL_LEN, "%s", json_node_get_string(e));
    m->label_ptrs[i] = m->labels[i];
  }
  m->labels_json = g_strdup(labels);
  if (m->g.n_inputs != 1) META_FAIL("a detector graph has one input, this one %d", m->g.n_inputs);
  const nn_graph_value *in = &m->g.values[m->g.inputs[0]];
  if (in->ndim != 4 || in->shape[0] != 1 || in->shape[1] != 3 || in->shape[2] != in->shape[3] || in->shape[2] % 32)
    META_FAIL("the graph's input must be [1, 3, S, S] with S a multiple of 32");
  m->input_size = (int)in->shape[2];
  if (size && atoi(size) != m->input_size) META_FAIL("\"input_size\" %s disagrees with the graph's input (%d)", size, m->input_size);
  m->runner.fixed_size = m->input_size;
  if (!norm) META_FAIL("no \"normalize\" in the model's metadata ({\"mean\": [r, g, b], \"std\": [r, g, b], \"order\": \"rgb\"|\"bgr\"} on 0..255; e2e import --mean --std --bgr)");
  JsonParser *np = json_parser_new();
  bool good = nn_json_nesting_ok(norm, strlen(norm), 4) && json_parser_load_from_data(np, norm, -1, NULL) &&
              JSON_NODE_HOLDS_OBJECT(json_parser_get_root(np));
  JsonObject *no = good ? json_node_get_object(json_parser_get_root(np)) : NULL;
  good = good && json_floats(no, "mean", m->mean, 3) && json_floats(no, "std", m->std, 3);
  const char *order = good && json_object_has_member(no, "order") ? json_object_get_string_member(no, "order") : "rgb";
  good = good && order && (!strcmp(order, "rgb") || !strcmp(order, "bgr"));
  m->bgr = good && !strcmp(order, "bgr");
  g_object_unref(np);
  if (!good) META_FAIL("\"normalize\" must be {\"mean\": [3 numbers], \"std\": [3 numbers], \"order\": \"rgb\"|\"bgr\"}");
  for (int c = 0; c < 3; c++)
    if (!(m->std[c] > 1e-6f) || !isfinite(m->mean[c])) META_FAIL("\"normalize\": std must be positive and mean finite");
  m->normalize_json = g_strdup(norm);
  if (resize && strcmp(resize, "letterbox")) META_FAIL("resize \"%s\" is not supported (letterbox)", resize);
  m->center_offset = off ? strtof(off, NULL) : 0.0f;
  m->runner.threshold = thr ? strtof(thr, NULL) : E2E_DETECT_DEFAULT_THRESHOLD;
  if (!(m->runner.threshold > 0 && m->runner.threshold <= 1)) META_FAIL("\"threshold\" must be in (0, 1]");
  if (!(m->center_offset >= 0 && m->center_offset <= 1)) META_FAIL("\"center_offset\" must be in 0..1");
  const char *src = meta_of(meta, n_meta, "source");
  m->source = g_strdup(src ? src : "");
  if (!bind_head(m, what)) goto fail;
  g_object_unref(p);
  return m;
fail:
  g_object_unref(p);
  destroy(m);
  return NULL;
}

/* ---------------------------------------------------------------- the task table */

static void *load(const nn_st_file *f, const char *path) {
  nn_graph g;
  if (!nn_graph_from_file(&g, f, path)) return NULL;
  int n = nn_st_meta_count(f);
  nn_kv *meta = calloc((size_t)(n ? n : 1), sizeof *meta);
  if (!meta) {
    nn_graph_free(&g);
    return NULL;
  }
  for (int i = 0; i < n; i++) meta[i].value = nn_st_meta_at(f, i, &meta[i].key);
  graph_det *m = graph_det_new(&g, meta, n, path);
  free(meta);
  if (m && !nn_graph_prepare(&m->g)) destroy(m), m = NULL;
  return m;
}

static void *copy(const void *impl, bool training) {
  const graph_det *src = impl;
  nn_graph g;
  if (!nn_graph_copy(&g, &src->g)) return NULL;
  char size[16], off[32], thr[32];
  snprintf(size, sizeof size, "%d", src->input_size);
  snprintf(off, sizeof off, "%g", src->center_offset);
  snprintf(thr, sizeof thr, "%g", src->runner.threshold);
  nn_kv meta[] = {{"head", HEADS[src->head]}, {"labels", src->labels_json}, {"input_size", size}, {"normalize", src->normalize_json},
                  {"center_offset", off}, {"threshold", thr}, {"source", src->source}};
  graph_det *m = graph_det_new(&g, meta, (int)(sizeof meta / sizeof meta[0]), "copy");
  /* a trainer's copy runs the plain ops, so that every step is seen */
  if (m && !training && !nn_graph_prepare(&m->g)) destroy(m), m = NULL;
  return m;
}

static nn_params *params(void *impl) { return &((graph_det *)impl)->g.params; }

static void describe(void *impl, e2e_model_info *info) {
  graph_det *m = impl;
  info->n_labels = m->num_classes;
  info->labels = m->label_ptrs;
  info->input_size = m->input_size;
  info->id = e2e_params_hash(&m->g.params);
}

static bool save(void *impl, const char *path, const nn_kv *extra, int n_extra) {
  graph_det *m = impl;
  char size[16], off[32], thr[32];
  snprintf(size, sizeof size, "%d", m->input_size);
  snprintf(off, sizeof off, "%g", m->center_offset);
  snprintf(thr, sizeof thr, "%g", m->runner.threshold);
  nn_kv own[] = {{"architecture", ARCHITECTURE}, {"task", "detect"}, {"head", HEADS[m->head]}, {"labels", m->labels_json},
                 {"input_size", size}, {"normalize", m->normalize_json}, {"resize", "letterbox"}, {"center_offset", off},
                 {"threshold", thr}, {"source", m->source}};
  int n_own = (int)(sizeof own / sizeof own[0]);
  nn_kv *all = calloc((size_t)(n_own + n_extra), sizeof *all);
  if (!all) return false;
  memcpy(all, own, sizeof own);
  /* the caller's entries after ours, without repeating a key we wrote */
  int n = n_own;
  for (int i = 0; i < n_extra; i++) {
    bool dup = false;
    for (int j = 0; j < n_own; j++) dup = dup || !strcmp(extra[i].key, own[j].key);
    if (!dup && strcmp(extra[i].key, "graph")) all[n++] = extra[i];
  }
  bool ok = nn_graph_save(&m->g, path, all, n);
  free(all);
  return ok;
}

static bool warm_up(void *impl, int w, int h) {
  graph_det *m = impl;
  det_box b[1];
  (void)w, (void)h;
  return graph_detect(m, nn_zeros(NN_F32, 4, (int64_t[]){1, 3, m->input_size, m->input_size}), 0.5f, 0.5f, 1, b) >= 0;
}

static bool evaluate(void *impl, const e2e_batch *b, e2e_metric *out) {
  graph_det *m = impl;
  const nn_tensor *x = b->images;
  if (x->ndim != 4 || x->shape[0] != b->n || x->shape[1] != 3 || x->shape[2] != m->input_size || x->shape[3] != m->input_size ||
      !b->boxes || !b->counts) {
    nn_set_error("detect batch: need images [%d, 3, %d, %d] and boxes with counts", b->n, m->input_size, m->input_size);
    return false;
  }
  return det_runner_evaluate(impl, b, m->input_size, m->num_classes, out);
}

static nn_tensor *no_loss(void *impl, const e2e_batch *b, nn_rng *rng, e2e_metric *out) {
  (void)impl, (void)b, (void)rng, (void)out;
  nn_set_error("detect: training an imported %s graph needs its head's loss, which is not written yet",
               HEADS[((graph_det *)impl)->head]);
  return NULL;
}

const e2e_task_ops e2e_detect_graph_ops = {
    .task = E2E_TASK_DETECT, .architecture = ARCHITECTURE, .input_align = 32, .load = load, .copy = copy,
    .destroy = destroy, .params = params, .describe = describe, .save = save, .warm_up = warm_up, .loss = no_loss,
    .evaluate = evaluate};

e2e_model *e2e_detect_graph_model(nn_graph *g, const nn_kv *meta, int n_meta, const char *path) {
  graph_det *m = graph_det_new(g, meta, n_meta, path);
  if (m && !nn_graph_prepare(&m->g)) destroy(m), m = NULL;
  return m ? e2e_model_wrap(&e2e_detect_graph_ops, m, NULL, path) : NULL;
}
