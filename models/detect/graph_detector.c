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
        if (sc[c] >= thr) b.score = sc[c], b.cls = c, det_keep_candidate(cand, &n, PRE_NMS, b);
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
      if (s >= thr) b.score = s, b.cls = c, det_keep_candidate(cand, &n, PRE_NMS, b);
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
  JsonNode *on = good && json_object_has_member(no, "order") ? json_object_get_member(no, "order") : NULL;
  const char *order = !on ? "rgb" : JSON_NODE_HOLDS_VALUE(on) && json_node_get_value_type(on) == G_TYPE_STRING ? json_node_get_string(on) : NULL;
  good = good && order && (!strcmp(order, "rgb") || !strcmp(order, "bgr"));
  m->bgr = good && !strcmp(order, "bgr");
  g_object_unref(np);
  if (!good) META_FAIL("\"normalize\" must be {\"mean\": [3 numbers], \"std\": [3 numbers], \"order\": \"rgb\"|\"bgr\"}");
  for (int c = 0; c < 3; c++)
    if (!(m->std[c] > 1e-6f) || !isfinite(m->mean[c])) META_FAIL("\"normalize\": std must be positive and mean finite");
  m->normalize_json = g_strdup(norm);
  if (resize && strcmp(resize, "letterbox") && strcmp(resize, "stretch"))
    META_FAIL("resize \"%s\" is neither letterbox nor stretch", resize);
  m->runner.stretch = resize && !strcmp(resize, "stretch");
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

/* The metadata that describes m (with labels_json instead of its labels when given): what a file holds
 * beside the graph, and what graph_det_new reads back. */
typedef struct {
  char size[16], off[32], thr[32];
  nn_kv kv[8];
} det_meta;

static void det_meta_of(const graph_det *m, const char *labels_json, det_meta *d) {
  snprintf(d->size, sizeof d->size, "%d", m->input_size);
  snprintf(d->off, sizeof d->off, "%g", m->center_offset);
  snprintf(d->thr, sizeof d->thr, "%g", m->runner.threshold);
  nn_kv kv[8] = {{"head", HEADS[m->head]}, {"labels", labels_json ? labels_json : m->labels_json}, {"input_size", d->size},
                 {"normalize", m->normalize_json}, {"center_offset", d->off}, {"threshold", d->thr}, {"source", m->source},
                 {"resize", m->runner.stretch ? "stretch" : "letterbox"}};
  memcpy(d->kv, kv, sizeof kv);
}

static void *copy(const void *impl, bool training) {
  const graph_det *src = impl;
  nn_graph g;
  if (!nn_graph_copy(&g, &src->g)) return NULL;
  det_meta d;
  det_meta_of(src, NULL, &d);
  graph_det *m = graph_det_new(&g, d.kv, 8, "copy");
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
  det_meta d;
  det_meta_of(m, NULL, &d);
  nn_kv own[10] = {{"architecture", ARCHITECTURE}, {"task", "detect"}};
  memcpy(own + 2, d.kv, sizeof d.kv);
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
  /* the graph's input has batch 1: one image at a time */
  int64_t per = 3 * (int64_t)m->input_size * m->input_size;
  nn_tensor *one = nn_empty(NN_F32, 4, (int64_t[]){1, 3, m->input_size, m->input_size}), *all = nn_contiguous(b->images);
  det_box *preds = calloc((size_t)b->n * E2E_DETECT_DEFAULT_MAX, sizeof *preds);
  int *counts = calloc((size_t)b->n, sizeof *counts);
  bool ok = one && all && preds && counts;
  for (int i = 0; ok && i < b->n; i++) {
    memcpy(nn_f32(one), nn_f32(all) + i * per, sizeof(float) * (size_t)per);
    ok = (counts[i] = graph_detect(m, one, E2E_DETECT_EVAL_THRESHOLD, E2E_DETECT_DEFAULT_IOU, E2E_DETECT_DEFAULT_MAX,
                                   preds + (size_t)i * E2E_DETECT_DEFAULT_MAX)) >= 0;
  }
  ok = ok && det_batch_metric(b, preds, counts, m->num_classes, out);
  free(preds);
  free(counts);
  return ok;
}

/* ---------------------------------------------------------------- transfer learning (NanoDet) */

/* The head: every node reached walking back from the outputs through nodes of one computed input,
 * stopping before a node that joins two computed values (the feature pyramid's adds and concats). */
static void mark_head(const nn_graph *g, bool *head) {
  memset(head, 0, sizeof *head * (size_t)(g->n_nodes ? g->n_nodes : 1));
  for (int k = 0; k < g->n_outputs; k++) {
    int v = g->outputs[k];
    while (v >= 0 && g->values[v].node >= 0) {
      int ni = g->values[v].node;
      const nn_graph_node *n = &g->nodes[ni];
      int computed = 0, next = -1;
      for (int j = 0; j < n->n_in; j++)
        if (g->values[n->in[j]].param < 0) computed++, next = n->in[j];
      if (computed != 1) break;
      head[ni] = true;
      v = next;
    }
  }
}

/* Prefixes every parameter with "head." or "backbone." (the head as mark_head finds it), so that
 * training can freeze the backbone by prefix. Idempotent. */
static bool name_parts(nn_graph *g) {
  bool *head = calloc((size_t)(g->n_nodes ? g->n_nodes : 1), sizeof *head);
  if (!head) return false;
  mark_head(g, head);
  for (int v = 0; v < g->n_values; v++) {
    nn_graph_value *gv = &g->values[v];
    if (gv->param < 0 || g_str_has_prefix(gv->name, "head.") || g_str_has_prefix(gv->name, "backbone.")) continue;
    bool in_head = false;
    for (int k = 0; k < g->n_nodes && !in_head; k++)
      for (int j = 0; j < g->nodes[k].n_in; j++)
        if (g->nodes[k].in[j] == v && head[k]) in_head = true;
    char *name = g_strdup_printf("%s%s", in_head ? "head." : "backbone.", gv->name);
    free(gv->name);
    free(g->params.names[gv->param]);
    gv->name = strdup(name);
    g->params.names[gv->param] = strdup(name);
    g_free(name);
  }
  free(head);
  return true;
}

e2e_model *e2e_detect_graph_relabel(const e2e_model *src, int n, const char *const *labels, const char *like) {
  if (e2e_model_ops(src) != &e2e_detect_graph_ops) {
    nn_set_error("relabel: not an imported detection graph");
    return NULL;
  }
  const graph_det *m = e2e_model_impl(src);
  if (m->head != HEAD_NANODET || n < 1 || n > DET_MAX_CLASSES) {
    nn_set_error("relabel: only NanoDet heads can take new classes (1 to %d)", DET_MAX_CLASSES);
    return NULL;
  }
  int C = m->num_classes, R4 = 4 * (m->reg_max + 1), like_cls = -1;
  for (int c = 0; like && c < C; c++)
    if (!strcmp(m->labels[c], like)) like_cls = c;
  if (like && like_cls < 0) {
    nn_set_error("relabel: the model has no class \"%s\" to start the new ones from", like);
    return NULL;
  }
  nn_graph g;
  if (!nn_graph_copy(&g, &m->g)) return NULL;
  bool ok = true;
  for (int l = 0; ok && l < m->n_levels; l++) {
    /* the conv that feeds both outputs of the level, through slices on channels */
    int v = g.outputs[m->cls_out[l]], conv = -1;
    while (v >= 0 && g.values[v].node >= 0 && conv < 0) {
      nn_graph_node *nd = &g.nodes[g.values[v].node];
      if (nd->op == NN_OP_SLICE && nd->i[0] == 1 && nd->i[1] == 0 && nd->i[2] == C) {
        int cv = nd->in[0];
        if (g.values[cv].node >= 0 && g.nodes[g.values[cv].node].op == NN_OP_CONV && g.values[cv].shape[1] == C + R4)
          conv = g.values[cv].node;
        break;
      }
      if (nd->op == NN_OP_RESHAPE)
        for (int j = 0; j < nd->n_i; j++)
          if (nd->i[j] == C) nd->i[j] = n;
      v = nd->in[0];
    }
    if (conv < 0) {
      nn_set_error("relabel: level %d: no conv with %d class and %d distance channels sliced apart", l, C, R4);
      ok = false;
      break;
    }
    nn_graph_node *cn = &g.nodes[conv];
    for (int k = 0; k < g.n_nodes; k++) { /* the channel slices after the conv */
      nn_graph_node *s = &g.nodes[k];
      if (s->op != NN_OP_SLICE || s->in[0] != cn->out || s->i[0] != 1) continue;
      if (s->i[1] == 0 && s->i[2] == C) s->i[2] = n;
      else if (s->i[1] == C && s->i[2] == C + R4) s->i[1] = n, s->i[2] = n + R4;
    }
    for (int which = 1; which < cn->n_in && ok; which++) { /* weight rows, then bias rows */
      int p = g.values[cn->in[which]].param;
      nn_tensor *old = g.params.t[p];
      int64_t per = nn_numel(old) / old->shape[0], shape[4];
      memcpy(shape, old->shape, sizeof shape);
      shape[0] = n + R4;
      nn_tensor *t = nn_tensor_new(NN_F32, old->ndim, shape);
      if (!t) {
        ok = false;
        break;
      }
      for (int c = 0; c < n; c++) { /* new classes: like an old one, or silent (prior 0.01) */
        if (like_cls >= 0) memcpy(nn_f32(t) + c * per, nn_f32(old) + like_cls * per, sizeof(float) * (size_t)per);
        else if (which == 2) nn_f32(t)[c] = -4.595f;
      }
      memcpy(nn_f32(t) + n * per, nn_f32(old) + C * per, sizeof(float) * (size_t)(R4 * per));
      t->requires_grad = old->requires_grad;
      nn_tensor_free(old);
      g.params.t[p] = t;
    }
  }
  /* the edited copy, rebuilt so that every shape is inferred again */
  nn_graph fresh;
  ok = ok && nn_graph_copy(&fresh, &g);
  nn_graph_free(&g);
  if (!ok) return NULL;
  GString *lj = g_string_new("[");
  for (int c = 0; c < n; c++) {
    char *esc = g_strescape(labels[c], NULL);
    g_string_append_printf(lj, "%s\"%s\"", c ? ", " : "", esc);
    g_free(esc);
  }
  g_string_append(lj, "]");
  det_meta d;
  det_meta_of(m, lj->str, &d);
  graph_det *out = graph_det_new(&fresh, d.kv, 8, "relabel");
  g_string_free(lj, TRUE);
  if (out && !nn_graph_prepare(&out->g)) destroy(out), out = NULL;
  return out ? e2e_model_wrap(&e2e_detect_graph_ops, out, NULL, "") : NULL;
}

/* elementwise max / min of two tensors through |a - b| (differentiable almost everywhere) */
static nn_tensor *emax(nn_tensor *a, nn_tensor *b) { return nn_mul_scalar(nn_add(nn_add(a, b), nn_abs(nn_sub(a, b))), 0.5f); }
static nn_tensor *emin(nn_tensor *a, nn_tensor *b) { return nn_mul_scalar(nn_sub(nn_add(a, b), nn_abs(nn_sub(a, b))), 0.5f); }

static float box_iou4(const float *a, const float *b) {
  float w = fminf(a[2], b[2]) - fmaxf(a[0], b[0]), h = fminf(a[3], b[3]) - fmaxf(a[1], b[1]);
  if (w <= 0 || h <= 0) return 0;
  float i = w * h, u = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - i;
  return u > 0 ? i / u : 0;
}

/* NanoDet's losses on one image's outputs, summed (normalised by the caller): Quality Focal Loss on the
 * class scores (the target of a positive cell is the IoU its predicted box has with its object), GIoU on
 * the positive cells' boxes and Distribution Focal Loss on their distance distributions. Positives: the
 * cells of the level that suits the object's size whose centre lies in the object and within 2.5 strides
 * of its centre (FCOS's centre sampling; the cell holding the centre when none does). */
static bool nanodet_image_loss(const graph_det *m, nn_tensor **outs, const det_box *gt, int n_gt, nn_tensor **qfl, nn_tensor **giou,
                               nn_tensor **dfl, int *n_pos) {
  int C = m->num_classes, R = m->reg_max + 1;
  for (int l = 0; l < m->n_levels; l++) {
    nn_tensor *cls = outs[m->cls_out[l]], *reg = outs[m->reg_out[l]];
    int side = m->input_size / m->stride[l], N = side * side;
    float st = (float)m->stride[l];
    int *owner = malloc(sizeof *owner * (size_t)N);
    float *area = malloc(sizeof *area * (size_t)N);
    for (int i = 0; i < N; i++) owner[i] = -1, area[i] = INFINITY;
    for (int j = 0; j < n_gt; j++) {
      const det_box *b = &gt[j];
      float w = b->x2 - b->x1, h = b->y2 - b->y1, big = fmaxf(w, h), a = w * h;
      if (w <= 1 || h <= 1 || b->cls < 0 || b->cls >= C) continue;
      /* the finest level whose cells are at least an eighth of the object, else the coarsest */
      int lvl = -1, coarsest = 0;
      for (int k = 0; k < m->n_levels; k++) {
        if (m->stride[k] > m->stride[coarsest]) coarsest = k;
        if (big <= 8.0f * (float)m->stride[k] && (lvl < 0 || m->stride[k] < m->stride[lvl])) lvl = k;
      }
      if (lvl < 0) lvl = coarsest;
      if (lvl != l) continue;
      float cx = 0.5f * (b->x1 + b->x2), cy = 0.5f * (b->y1 + b->y2), r = 2.5f * st;
      int any = 0;
      for (int i = 0; i < N; i++) {
        float px = ((float)(i % side) + m->center_offset) * st, py = ((float)(i / side) + m->center_offset) * st;
        if (px > b->x1 && px < b->x2 && py > b->y1 && py < b->y2 && fabsf(px - cx) < r && fabsf(py - cy) < r && a < area[i])
          owner[i] = j, area[i] = a, any++;
      }
      if (!any) {
        int i = (int)fminf(fmaxf(cy / st, 0), (float)side - 1) * side + (int)fminf(fmaxf(cx / st, 0), (float)side - 1);
        if (a < area[i]) owner[i] = j, area[i] = a;
      }
    }
    int P = 0;
    for (int i = 0; i < N; i++) P += owner[i] >= 0;
    /* quality targets from the predicted boxes (forward values, no gradient) */
    nn_tensor *rc = nn_contiguous(nn_detach(reg));
    const float *rd = nn_f32(rc);
    nn_tensor *target = nn_zeros(NN_F32, 3, (int64_t[]){1, N, C});
    nn_tensor *idx = P ? nn_empty(NN_I64, 1, (int64_t[]){P}) : NULL;
    nn_tensor *gcols[4], *ccols[2], *dw = P ? nn_zeros(NN_F32, 2, (int64_t[]){4 * (int64_t)P, R}) : NULL;
    for (int k = 0; k < 4 && P; k++) gcols[k] = nn_empty(NN_F32, 2, (int64_t[]){P, 1});
    for (int k = 0; k < 2 && P; k++) ccols[k] = nn_empty(NN_F32, 2, (int64_t[]){P, 1});
    int p = 0;
    for (int i = 0; i < N; i++) {
      if (owner[i] < 0) continue;
      const det_box *b = &gt[owner[i]];
      float px = ((float)(i % side) + m->center_offset) * st, py = ((float)(i / side) + m->center_offset) * st, d[4];
      for (int k = 0; k < 4; k++) {
        const float *r = rd + (int64_t)i * 4 * R + k * R;
        float mx = r[0], s = 0, e = 0;
        for (int j = 1; j < R; j++) mx = fmaxf(mx, r[j]);
        for (int j = 0; j < R; j++) s += expf(r[j] - mx), e += expf(r[j] - mx) * (float)j;
        d[k] = e / s * st;
      }
      float pb[4] = {px - d[0], py - d[1], px + d[2], py + d[3]}, gb[4] = {b->x1, b->y1, b->x2, b->y2};
      nn_f32(target)[(int64_t)i * C + b->cls] = fmaxf(box_iou4(pb, gb), 0.01f);
      ((int64_t *)nn_data(idx))[p] = i;
      for (int k = 0; k < 4; k++) nn_f32(gcols[k])[p] = gb[k];
      nn_f32(ccols[0])[p] = px, nn_f32(ccols[1])[p] = py;
      /* DFL: the target distance in cells, split between its two neighbouring bins */
      float tgt[4] = {(px - b->x1) / st, (py - b->y1) / st, (b->x2 - px) / st, (b->y2 - py) / st};
      for (int k = 0; k < 4; k++) {
        float t = fminf(fmaxf(tgt[k], 0.0f), (float)R - 1.01f);
        int left = (int)t;
        nn_f32(dw)[((int64_t)p * 4 + k) * R + left] = (float)(left + 1) - t;
        nn_f32(dw)[((int64_t)p * 4 + k) * R + left + 1] = t - (float)left;
      }
      p++;
    }
    free(owner), free(area);
    /* QFL over every cell and class */
    nn_tensor *pc = nn_clamp(cls, 1e-6f, 1.0f - 1e-6f);
    nn_tensor *bce = nn_neg(nn_add(nn_mul(target, nn_log(pc)), nn_mul(nn_add_scalar(nn_neg(target), 1.0f), nn_log(nn_add_scalar(nn_neg(pc), 1.0f)))));
    nn_tensor *mod = nn_sub(target, pc);
    nn_tensor *q = nn_sum_all(nn_mul(nn_mul(mod, mod), bce));
    *qfl = *qfl ? nn_add(*qfl, q) : q;
    if (P) {
      nn_tensor *rp = nn_reshape(nn_index_select(reg, 1, idx), 2, (int64_t[]){4 * (int64_t)P, R});
      nn_tensor *logp = nn_log_softmax(rp, 1);
      nn_tensor *dl = nn_neg(nn_sum_all(nn_mul(dw, logp)));
      nn_tensor *bins = nn_arange(R);
      nn_tensor *dist = nn_mul_scalar(nn_reshape(nn_matmul(nn_exp(logp), nn_reshape(bins, 2, (int64_t[]){R, 1})), 2, (int64_t[]){P, 4}), st);
      nn_tensor *l0 = nn_slice(dist, 1, 0, 1, 1), *t0 = nn_slice(dist, 1, 1, 2, 1), *r0 = nn_slice(dist, 1, 2, 3, 1), *b0 = nn_slice(dist, 1, 3, 4, 1);
      nn_tensor *x1 = nn_sub(ccols[0], l0), *y1 = nn_sub(ccols[1], t0), *x2 = nn_add(ccols[0], r0), *y2 = nn_add(ccols[1], b0);
      nn_tensor *iw = nn_clamp(nn_sub(emin(x2, gcols[2]), emax(x1, gcols[0])), 0.0f, 1e9f);
      nn_tensor *ih = nn_clamp(nn_sub(emin(y2, gcols[3]), emax(y1, gcols[1])), 0.0f, 1e9f);
      nn_tensor *inter = nn_mul(iw, ih);
      nn_tensor *ap = nn_mul(nn_sub(x2, x1), nn_sub(y2, y1)), *ag = nn_mul(nn_sub(gcols[2], gcols[0]), nn_sub(gcols[3], gcols[1]));
      nn_tensor *uni = nn_add_scalar(nn_sub(nn_add(ap, ag), inter), 1e-6f);
      nn_tensor *cw = nn_sub(emax(x2, gcols[2]), emin(x1, gcols[0])), *ch = nn_sub(emax(y2, gcols[3]), emin(y1, gcols[1]));
      nn_tensor *carea = nn_add_scalar(nn_mul(cw, ch), 1e-6f);
      nn_tensor *gi = nn_sub(nn_div(inter, uni), nn_div(nn_sub(carea, uni), carea));
      nn_tensor *gl = nn_sum_all(nn_add_scalar(nn_neg(gi), 1.0f));
      *giou = *giou ? nn_add(*giou, gl) : gl;
      *dfl = *dfl ? nn_add(*dfl, dl) : dl;
    }
    *n_pos += P;
  }
  return *qfl != NULL;
}

static nn_tensor *graph_loss(void *impl, const e2e_batch *b, nn_rng *rng, e2e_metric *out) {
  graph_det *m = impl;
  (void)rng;
  const nn_tensor *x = b->images;
  if (m->head != HEAD_NANODET) {
    nn_set_error("detect: training an imported %s graph is not supported yet (NanoDet heads are)", HEADS[m->head]);
    return NULL;
  }
  if (x->ndim != 4 || x->shape[0] != b->n || x->shape[1] != 3 || x->shape[2] != m->input_size || x->shape[3] != m->input_size ||
      !b->boxes || !b->counts) {
    nn_set_error("detect batch: need images [%d, 3, %d, %d] and boxes with counts", b->n, m->input_size, m->input_size);
    return NULL;
  }
  /* our normalisation -> the model's, as an op (no gradient is needed into the images) */
  nn_tensor *perm = nn_empty(NN_I64, 1, (int64_t[]){3}), *scale = nn_empty(NN_F32, 4, (int64_t[]){1, 3, 1, 1}),
            *shift = nn_empty(NN_F32, 4, (int64_t[]){1, 3, 1, 1});
  for (int c = 0; c < 3; c++) {
    ((int64_t *)nn_data(perm))[c] = m->bgr ? 2 - c : c;
    nn_f32(scale)[c] = 63.75f / m->std[c], nn_f32(shift)[c] = (127.5f - m->mean[c]) / m->std[c];
  }
  nn_tensor *qfl = NULL, *giou = NULL, *dfl = NULL;
  int n_pos = 0;
  for (int i = 0; i < b->n; i++) {
    nn_tensor *xi = nn_add(nn_mul(nn_index_select(nn_slice((nn_tensor *)x, 0, i, i + 1, 1), 1, perm), scale), shift), *outs[16];
    if (!xi || !nn_graph_run(&m->g, &xi, outs) || !nanodet_image_loss(m, outs, b->boxes[i], b->counts[i], &qfl, &giou, &dfl, &n_pos))
      return NULL;
  }
  float norm = 1.0f / (float)(n_pos > 0 ? n_pos : 1);
  nn_tensor *loss = nn_mul_scalar(qfl, norm);
  float parts[3] = {nn_item(qfl) * norm, giou ? nn_item(giou) * norm : 0, dfl ? nn_item(dfl) * norm * 0.25f : 0};
  if (giou) loss = nn_add(loss, nn_mul_scalar(giou, 2.0f * norm));
  if (dfl) loss = nn_add(loss, nn_mul_scalar(dfl, 0.25f * 0.25f * norm));
  if (loss) *out = (e2e_metric){.name = "QFL+2 GIoU+DFL/16", .value = nn_item(loss), .n_parts = 3,
                                 .part_names = {"qfl", "giou", "dfl"}, .parts = {parts[0], parts[1], parts[2]}};
  return loss;
}

const e2e_task_ops e2e_detect_graph_ops = {
    .task = E2E_TASK_DETECT, .architecture = ARCHITECTURE, .input_align = 32, .load = load, .copy = copy,
    .destroy = destroy, .params = params, .describe = describe, .save = save, .warm_up = warm_up, .loss = graph_loss,
    .evaluate = evaluate};

e2e_model *e2e_detect_graph_model(nn_graph *g, const nn_kv *meta, int n_meta, const char *path) {
  if (!name_parts(g)) {
    nn_graph_free(g);
    nn_set_error("out of memory");
    return NULL;
  }
  graph_det *m = graph_det_new(g, meta, n_meta, path);
  if (m && !nn_graph_prepare(&m->g)) destroy(m), m = NULL;
  return m ? e2e_model_wrap(&e2e_detect_graph_ops, m, NULL, path) : NULL;
}
