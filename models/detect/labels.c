/* Box label files from memory: YOLO text, the raccoon set's CSV, COCO JSON and our own JSON lines (what
 * e2edetect's json-file writes). Files come from anywhere, so every number is checked: a box outside its
 * image, of an unknown class, empty or not finite is counted in `skipped` and left out, never passed on. */
#include "e2e/detect.h"

#include <json-glib/json-glib.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_LABEL_TEXT ((size_t)256 << 20)
#define MAX_IMAGE_SIDE 65536.0

void det_labels_free(det_labels *l) {
  free(l->v);
  memset(l, 0, sizeof *l);
}

static bool push(det_labels *l, const det_label *x) {
  if (l->n == l->cap) {
    int cap = l->cap ? l->cap * 2 : 64;
    det_label *v = realloc(l->v, (size_t)cap * sizeof *v);
    if (!v) {
      nn_set_error("labels: out of memory");
      return false;
    }
    l->v = v, l->cap = cap;
  }
  l->v[l->n++] = *x;
  return true;
}

/* Keeps a box that lies in its image (when the image's size is known), has an area and a known class. A box
 * that pokes out by less than a pixel is clipped; annotators' rounding does that. */
static bool add_box(det_labels *l, det_label *x, int n_classes) {
  det_box *b = &x->box;
  bool ok = isfinite(b->x1) && isfinite(b->y1) && isfinite(b->x2) && isfinite(b->y2) && b->cls >= 0 &&
            b->cls < n_classes && b->x2 > b->x1 && b->y2 > b->y1;
  if (ok && x->width > 0 && x->height > 0) {
    ok = b->x1 > -1 && b->y1 > -1 && b->x2 < x->width + 1 && b->y2 < x->height + 1;
    b->x1 = fmaxf(b->x1, 0), b->y1 = fmaxf(b->y1, 0);
    b->x2 = fminf(b->x2, (float)x->width), b->y2 = fminf(b->y2, (float)x->height);
    ok = ok && b->x2 > b->x1 && b->y2 > b->y1;
  }
  if (!ok) {
    l->skipped++;
    return true;
  }
  b->score = 1.0f;
  return push(l, x);
}

/* Copies one line (at most cap - 1 bytes of it) without trusting a terminating NUL; returns where the
 * next line starts. */
static const char *next_line(const char *p, const char *end, char *line, size_t cap) {
  size_t k = 0;
  while (p < end && *p != '\n') {
    if (k + 1 < cap) line[k++] = *p == '\r' || *p == '\0' ? ' ' : *p;
    p++;
  }
  line[k] = 0;
  return p < end ? p + 1 : end;
}

static bool blank(const char *line) { return !line[strspn(line, " \t")]; }

bool det_labels_parse_yolo(const char *text, size_t len, int n_classes, int width, int height, det_labels *out) {
  if (width <= 0 || height <= 0 || width > MAX_IMAGE_SIDE || height > MAX_IMAGE_SIDE) {
    nn_set_error("labels: YOLO boxes need the image's size (got %d x %d)", width, height);
    return false;
  }
  const char *p = text, *end = text + len;
  char line[512];
  while (p < end) {
    p = next_line(p, end, line, sizeof line);
    int c;
    float cx, cy, w, h;
    if (sscanf(line, " %d %f %f %f %f", &c, &cx, &cy, &w, &h) != 5) {
      if (!blank(line) && line[strspn(line, " \t")] != '#') out->skipped++; /* a malformed line */
      continue;
    }
    det_label x = {.frame = -1, .pts_s = -1, .width = width, .height = height};
    x.box = (det_box){(cx - w / 2) * width, (cy - h / 2) * height, (cx + w / 2) * width, (cy + h / 2) * height, 1, c};
    if (!add_box(out, &x, n_classes)) return false;
  }
  return true;
}

bool det_labels_parse_csv(const char *text, size_t len, det_labels *out) {
  const char *p = text, *end = text + len;
  char line[1024];
  bool header = true;
  while (p < end) {
    p = next_line(p, end, line, sizeof line);
    if (header) { /* filename,width,height,class,xmin,ymin,xmax,ymax */
      header = false;
      continue;
    }
    det_label x = {.frame = -1, .pts_s = -1};
    char cls[64];
    float x1, y1, x2, y2;
    if (sscanf(line, "%255[^,],%d,%d,%63[^,],%f,%f,%f,%f", x.image, &x.width, &x.height, cls, &x1, &y1, &x2, &y2) != 8) {
      if (!blank(line)) out->skipped++;
      continue;
    }
    if (x.width <= 0 || x.height <= 0 || x.width > MAX_IMAGE_SIDE || x.height > MAX_IMAGE_SIDE) {
      out->skipped++;
      continue;
    }
    x.box = (det_box){x1, y1, x2, y2, 1, 0};
    if (!add_box(out, &x, 1)) return false;
  }
  return true;
}

static JsonArray *array_member(JsonObject *o, const char *key) {
  JsonNode *n = o && json_object_has_member(o, key) ? json_object_get_member(o, key) : NULL;
  return n && JSON_NODE_HOLDS_ARRAY(n) ? json_node_get_array(n) : NULL;
}

static JsonObject *object_at(JsonArray *a, guint i) {
  JsonNode *n = json_array_get_element(a, i);
  return n && JSON_NODE_HOLDS_OBJECT(n) ? json_node_get_object(n) : NULL;
}

static double node_number(JsonNode *n) {
  if (!n || !JSON_NODE_HOLDS_VALUE(n)) return NAN;
  GType t = json_node_get_value_type(n);
  return t == G_TYPE_INT64 ? (double)json_node_get_int(n) : t == G_TYPE_DOUBLE ? json_node_get_double(n) : NAN;
}

/* A number member, or NAN when it is missing or not a number. */
static double number(JsonObject *o, const char *key) {
  return node_number(o && json_object_has_member(o, key) ? json_object_get_member(o, key) : NULL);
}

static const char *string(JsonObject *o, const char *key) {
  JsonNode *n = o && json_object_has_member(o, key) ? json_object_get_member(o, key) : NULL;
  return n && JSON_NODE_HOLDS_VALUE(n) && json_node_get_value_type(n) == G_TYPE_STRING ? json_node_get_string(n) : NULL;
}

static int class_of(const char *name, const char *const *classes, int n_classes) {
  for (int c = 0; name && c < n_classes; c++)
    if (classes[c] && !strcmp(classes[c], name)) return c;
  return -1;
}

static bool is_size(double v) { return isfinite(v) && v >= 1 && v <= MAX_IMAGE_SIDE && v == floor(v); }

/* An id as a hash key: whole numbers within +-2^53 only. */
static bool id_key(double v, gint64 *key) {
  if (!isfinite(v) || fabs(v) > 9007199254740992.0 || v != floor(v)) return false;
  *key = (gint64)v;
  return true;
}

static JsonParser *parse_json(const char *text, size_t len, const char *what) {
  JsonParser *p = json_parser_new();
  if (len > MAX_LABEL_TEXT || memchr(text, 0, len) || !nn_json_nesting_ok(text, len, 32) ||
      !json_parser_load_from_data(p, text, (gssize)len, NULL)) {
    nn_set_error("labels: %s is not readable JSON", what);
    g_object_unref(p);
    return NULL;
  }
  return p;
}

bool det_labels_parse_coco(const char *text, size_t len, const char *const *classes, int n_classes, det_labels *out) {
  JsonParser *p = parse_json(text, len, "the COCO file");
  if (!p) return false;
  JsonNode *root = json_parser_get_root(p);
  JsonObject *o = root && JSON_NODE_HOLDS_OBJECT(root) ? json_node_get_object(root) : NULL;
  JsonArray *images = array_member(o, "images"), *anns = array_member(o, "annotations"), *cats = array_member(o, "categories");
  if (!images || !anns || !cats) {
    nn_set_error("labels: a COCO file needs \"images\", \"annotations\" and \"categories\" arrays");
    g_object_unref(p);
    return false;
  }
  /* category id -> our class, image id -> its object */
  guint nc = json_array_get_length(cats), ni = json_array_get_length(images), na = json_array_get_length(anns);
  gint64 *cat_ids = g_new0(gint64, nc + 1), *img_ids = g_new0(gint64, ni + 1);
  int *cat_cls = g_new0(int, nc + 1);
  GHashTable *cat = g_hash_table_new(g_int64_hash, g_int64_equal), *img = g_hash_table_new(g_int64_hash, g_int64_equal);
  for (guint i = 0; i < nc; i++) {
    JsonObject *c = object_at(cats, i);
    if (!id_key(number(c, "id"), &cat_ids[i])) continue;
    cat_cls[i] = class_of(string(c, "name"), classes, n_classes);
    g_hash_table_insert(cat, &cat_ids[i], &cat_cls[i]);
  }
  for (guint i = 0; i < ni; i++)
    if (id_key(number(object_at(images, i), "id"), &img_ids[i])) g_hash_table_insert(img, &img_ids[i], object_at(images, i));
  bool ok = true;
  for (guint i = 0; i < na && ok; i++) {
    JsonObject *a = object_at(anns, i);
    gint64 ik, ck;
    JsonObject *im = id_key(number(a, "image_id"), &ik) ? g_hash_table_lookup(img, &ik) : NULL;
    int *cls = id_key(number(a, "category_id"), &ck) ? g_hash_table_lookup(cat, &ck) : NULL;
    JsonArray *bb = array_member(a, "bbox");
    double w = number(im, "width"), h = number(im, "height");
    const char *file = string(im, "file_name");
    if (!im || !cls || !bb || json_array_get_length(bb) != 4 || !is_size(w) || !is_size(h) || !file) {
      out->skipped++;
      continue;
    }
    double v[4];
    for (guint k = 0; k < 4; k++) v[k] = node_number(json_array_get_element(bb, k));
    det_label x = {.frame = -1, .pts_s = -1, .width = (int)w, .height = (int)h};
    g_strlcpy(x.image, file, sizeof x.image);
    x.box = (det_box){(float)v[0], (float)v[1], (float)(v[0] + v[2]), (float)(v[1] + v[3]), 1, *cls};
    ok = add_box(out, &x, n_classes);
  }
  g_free(cat_ids);
  g_free(img_ids);
  g_free(cat_cls);
  g_hash_table_destroy(cat);
  g_hash_table_destroy(img);
  g_object_unref(p);
  return ok;
}

bool det_labels_parse_jsonl(const char *text, size_t len, const char *const *classes, int n_classes, det_labels *out) {
  if (len > MAX_LABEL_TEXT) {
    nn_set_error("labels: the JSON lines are larger than %zu bytes", MAX_LABEL_TEXT);
    return false;
  }
  const char *p = text, *end = text + len;
  while (p < end) {
    const char *nl = memchr(p, '\n', (size_t)(end - p)), *stop = nl ? nl : end, *line = p;
    size_t n = (size_t)(stop - p);
    p = nl ? nl + 1 : end;
    size_t lead = 0;
    while (lead < n && (line[lead] == ' ' || line[lead] == '\t' || line[lead] == '\r')) lead++;
    if (lead == n) continue; /* blank */
    JsonParser *jp = json_parser_new();
    JsonNode *root = NULL;
    if (memchr(line, 0, n) || !nn_json_nesting_ok(line, n, 32) || !json_parser_load_from_data(jp, line, (gssize)n, NULL) ||
        !(root = json_parser_get_root(jp)) || !JSON_NODE_HOLDS_OBJECT(root)) {
      out->skipped++;
      g_object_unref(jp);
      continue;
    }
    JsonObject *o = json_node_get_object(root);
    double frame = number(o, "frame"), pts = number(o, "pts"), w = number(o, "width"), h = number(o, "height");
    bool has_frame = frame >= 0 && frame < 1e15, has_pts = pts >= 0 && pts < 1e18;
    JsonArray *objs = array_member(o, "objects");
    if (!objs || !is_size(w) || !is_size(h) || (!has_frame && !has_pts)) {
      out->skipped++;
      g_object_unref(jp);
      continue;
    }
    bool ok = true;
    for (guint i = 0; i < json_array_get_length(objs) && ok; i++) {
      JsonObject *b = object_at(objs, i);
      det_label x = {.frame = has_frame ? (int64_t)frame : -1, .pts_s = has_pts ? pts / 1e9 : -1, .width = (int)w,
                     .height = (int)h};
      const char *label = string(b, "label");
      double bx = number(b, "x"), by = number(b, "y"), bw = number(b, "w"), bh = number(b, "h"), cid = number(b, "class_id");
      int cls = label ? class_of(label, classes, n_classes) : (cid >= 0 && cid < n_classes ? (int)cid : -1);
      x.box = (det_box){(float)bx, (float)by, (float)(bx + bw), (float)(by + bh), 1, cls};
      ok = add_box(out, &x, n_classes);
    }
    g_object_unref(jp);
    if (!ok) return false;
  }
  return true;
}
