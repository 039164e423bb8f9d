/* Label files for a stream of frames (e2e/detect.h, det_frame_labels): which boxes belong to frame n.
 * JSON lines say their frame (or timestamp); COCO JSON and CSV name images, which are numbered in the
 * order of their sorted names (an image sequence on disk, as multifilesrc reads it); YOLO keeps one text
 * file per frame, found through a printf pattern and read when the frame comes. */
#include "e2e/detect.h"

#include <glib.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#define MAX_LABEL_FILE ((gsize)256 << 20)

typedef struct {
  int64_t frame;
  double pts_s;
  int first, n; /* its boxes: labels.v[first .. first + n) */
} frame_entry;

struct det_frame_labels {
  det_labels labels;     /* sorted by frame, then pts */
  frame_entry *frames;
  int n_frames;
  char *pattern;         /* YOLO: the path of frame n's file */
  int n_classes;
};

static int by_frame(const void *a, const void *b) {
  const det_label *x = a, *y = b;
  if (x->frame != y->frame) return x->frame < y->frame ? -1 : 1;
  if (x->pts_s != y->pts_s) return x->pts_s < y->pts_s ? -1 : 1;
  return 0;
}

static int by_image(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

/* COCO and CSV: frame n is the n-th of the images' sorted names. */
static void number_images(det_labels *l) {
  GHashTable *seen = g_hash_table_new(g_str_hash, g_str_equal);
  for (int i = 0; i < l->n; i++) g_hash_table_add(seen, l->v[i].image);
  guint n = 0;
  char **names = (char **)g_hash_table_get_keys_as_array(seen, &n);
  qsort(names, n, sizeof *names, by_image);
  GHashTable *index = g_hash_table_new(g_str_hash, g_str_equal);
  for (guint i = 0; i < n; i++) g_hash_table_insert(index, names[i], GINT_TO_POINTER((gint)i + 1));
  for (int i = 0; i < l->n; i++) l->v[i].frame = GPOINTER_TO_INT(g_hash_table_lookup(index, l->v[i].image)) - 1;
  g_free(names);
  g_hash_table_destroy(index);
  g_hash_table_destroy(seen);
}

static bool index_frames(det_frame_labels *fl) {
  det_labels *l = &fl->labels;
  qsort(l->v, (size_t)l->n, sizeof *l->v, by_frame);
  fl->frames = calloc((size_t)(l->n ? l->n : 1), sizeof *fl->frames);
  if (!fl->frames) {
    nn_set_error("labels: out of memory");
    return false;
  }
  for (int i = 0; i < l->n; i++) {
    frame_entry *last = fl->n_frames ? &fl->frames[fl->n_frames - 1] : NULL;
    if (last && last->frame == l->v[i].frame && (l->v[i].frame >= 0 || last->pts_s == l->v[i].pts_s)) {
      last->n++;
      continue;
    }
    fl->frames[fl->n_frames++] = (frame_entry){l->v[i].frame, l->v[i].pts_s, i, 1};
  }
  return true;
}

static bool ends_with(const char *s, const char *end) {
  size_t n = strlen(s), m = strlen(end);
  return n >= m && g_ascii_strcasecmp(s + n - m, end) == 0;
}

/* A printf pattern with one integer conversion and nothing else that printf would read. */
static bool one_int_conversion(const char *p) {
  int convs = 0;
  for (const char *c = strchr(p, '%'); c; c = strchr(c, '%')) {
    c++;
    if (*c == '%') {
      c++;
      continue;
    }
    while (*c == '0' || *c == '-' || *c == '+' || *c == ' ') c++;
    while (*c >= '0' && *c <= '9') c++;
    if (*c != 'd' && *c != 'i' && *c != 'u') return false;
    convs++;
  }
  return convs == 1;
}

det_frame_labels *det_frame_labels_open(const char *path, const char *const *classes, int n_classes) {
  if (!path || !*path) {
    nn_set_error("labels: no file given");
    return NULL;
  }
  det_frame_labels *fl = calloc(1, sizeof *fl);
  if (!fl) return NULL;
  fl->n_classes = n_classes;
  if (strchr(path, '%')) {
    if (!one_int_conversion(path)) {
      nn_set_error("labels: \"%s\": a YOLO pattern needs exactly one integer conversion (labels/%%05d.txt)", path);
      free(fl);
      return NULL;
    }
    fl->pattern = g_strdup(path);
    return fl;
  }
  gchar *text = NULL;
  gsize len = 0;
  GError *err = NULL;
  bool ok = g_file_get_contents(path, &text, &len, &err);
  if (!ok) {
    nn_set_error("labels: cannot read \"%s\": %s", path, err->message);
    g_error_free(err);
  } else if (len > MAX_LABEL_FILE) {
    nn_set_error("labels: \"%s\" is larger than %zu MB", path, (size_t)(MAX_LABEL_FILE >> 20));
    ok = false;
  } else if (ends_with(path, ".jsonl")) {
    ok = det_labels_parse_jsonl(text, len, classes, n_classes, &fl->labels);
  } else if (ends_with(path, ".json")) {
    ok = det_labels_parse_coco(text, len, classes, n_classes, &fl->labels);
    if (ok) number_images(&fl->labels);
  } else if (ends_with(path, ".csv")) {
    ok = n_classes >= 1 && det_labels_parse_csv(text, len, &fl->labels);
    if (ok) number_images(&fl->labels);
  } else {
    nn_set_error("labels: \"%s\": unknown format (.jsonl, .json for COCO, .csv, or a YOLO pattern with %%d)", path);
    ok = false;
  }
  g_free(text);
  if (!ok || !index_frames(fl)) {
    det_frame_labels_free(fl);
    return NULL;
  }
  return fl;
}

void det_frame_labels_free(det_frame_labels *fl) {
  if (!fl) return;
  det_labels_free(&fl->labels);
  free(fl->frames);
  g_free(fl->pattern);
  free(fl);
}

int det_frame_labels_skipped(const det_frame_labels *fl) { return fl ? fl->labels.skipped : 0; }

/* The entry for frame n, else the one whose timestamp is within half a millisecond of pts_s. */
static const frame_entry *find(const det_frame_labels *fl, int64_t frame, double pts_s) {
  int lo = 0, hi = fl->n_frames;
  while (lo < hi) {
    int mid = (lo + hi) / 2;
    if (fl->frames[mid].frame < frame) lo = mid + 1;
    else hi = mid;
  }
  if (frame >= 0 && lo < fl->n_frames && fl->frames[lo].frame == frame) return &fl->frames[lo];
  if (pts_s < 0) return NULL;
  for (int i = 0; i < fl->n_frames && fl->frames[i].frame < 0; i++)
    if (fabs(fl->frames[i].pts_s - pts_s) < 5e-4) return &fl->frames[i];
  return NULL;
}

int det_frame_labels_get(det_frame_labels *fl, int64_t frame, double pts_s, int w, int h, det_box *out, int max,
                         int *skipped) {
  if (fl->pattern) {
    if (frame < 0) return -1;
    char *path = g_strdup_printf(fl->pattern, (int)frame);
    gchar *text = NULL;
    gsize len = 0;
    bool have = g_file_get_contents(path, &text, &len, NULL);
    g_free(path);
    if (!have) return -1;
    det_labels l = {0};
    bool ok = len <= MAX_LABEL_FILE && det_labels_parse_yolo(text, len, fl->n_classes, w, h, &l);
    g_free(text);
    int n = 0;
    for (int i = 0; ok && i < l.n && n < max; i++) out[n++] = l.v[i].box;
    if (skipped) *skipped += l.skipped + (ok ? 0 : 1);
    det_labels_free(&l);
    return ok ? n : -1;
  }
  const frame_entry *e = find(fl, frame, pts_s);
  if (!e) return -1;
  int n = 0;
  for (int i = 0; i < e->n && n < max; i++) {
    const det_label *x = &fl->labels.v[e->first + i];
    det_box b = x->box;
    /* boxes are in the labelled image's pixels; the frame may have been scaled since */
    float sx = x->width > 0 ? (float)w / (float)x->width : 1.0f, sy = x->height > 0 ? (float)h / (float)x->height : 1.0f;
    b.x1 *= sx, b.x2 *= sx, b.y1 *= sy, b.y2 *= sy;
    out[n++] = b;
  }
  return n;
}
