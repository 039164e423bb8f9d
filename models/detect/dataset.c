/* Loading COCO128 / raccoon and augmenting samples for training. */
#include "e2e/detect.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <glib.h>


static bool add_sample(det_dataset *ds, int *cap, const char *name, const char *path) {
  if (ds->n == *cap) {
    *cap = *cap ? *cap * 2 : 64;
    det_sample *s = realloc(ds->s, (size_t)*cap * sizeof *s);
    if (!s) return false;
    ds->s = s;
  }
  det_sample *s = &ds->s[ds->n];
  memset(s, 0, sizeof *s);
  snprintf(s->name, sizeof s->name, "%s", name);
  if (!e2e_image_load(path, &s->img)) return false;
  ds->n++;
  return true;
}

static void add_box(det_sample *s, det_box b) {
  det_box *nb = realloc(s->boxes, (size_t)(s->n + 1) * sizeof *nb);
  if (!nb) return;
  s->boxes = nb;
  s->boxes[s->n++] = b;
}

/* "names:" block of config.yaml: lines "  N: name". */
static int read_coco_names(const char *path, char labels[][DET_LABEL_LEN]) {
  FILE *f = fopen(path, "r");
  if (!f) return 0;
  char line[256];
  int n = 0;
  bool in_names = false;
  while (fgets(line, sizeof line, f)) {
    if (!strncmp(line, "names:", 6)) {
      in_names = true;
      continue;
    }
    int id;
    char name[DET_LABEL_LEN];
    if (in_names && sscanf(line, " %d: %47[^\n]", &id, name) == 2 && id >= 0 && id < DET_MAX_CLASSES) {
      snprintf(labels[id], DET_LABEL_LEN, "%s", name);
      if (id + 1 > n) n = id + 1;
    }
  }
  fclose(f);
  return n;
}

bool det_dataset_load_coco128(det_dataset *ds, const char *root, const char *split, const char *only_class) {
  memset(ds, 0, sizeof *ds);
  char path[1024], lpath[1024];
  snprintf(path, sizeof path, "%s/object_detection/config.yaml", root);
  char names[DET_MAX_CLASSES][DET_LABEL_LEN] = {{0}};
  int ncls = read_coco_names(path, names);
  if (ncls == 0) {
    nn_set_error("%s: no class names (is this the coco128 folder?)", path);
    return false;
  }
  int keep = -1;
  if (only_class) {
    for (int c = 0; c < ncls; c++)
      if (!strcmp(names[c], only_class)) keep = c;
    if (keep < 0) {
      nn_set_error("coco128: no class named '%s'", only_class);
      return false;
    }
    ds->num_classes = 1;
    snprintf(ds->labels[0], DET_LABEL_LEN, "%s", only_class);
  } else {
    ds->num_classes = ncls;
    memcpy(ds->labels, names, sizeof names);
  }
  snprintf(path, sizeof path, "%s/images/%s", root, split);
  int nf = 0;
  char **files = e2e_list_images(path, &nf);
  if (!files) return false;
  int cap = 0;
  bool ok = true;
  for (int i = 0; i < nf && ok; i++) {
    snprintf(path, sizeof path, "%s/images/%s/%s", root, split, files[i]);
    ok = add_sample(ds, &cap, files[i], path);
    if (!ok) break;
    det_sample *s = &ds->s[ds->n - 1];
    char stem[256];
    snprintf(stem, sizeof stem, "%s", files[i]);
    *strrchr(stem, '.') = 0;
    snprintf(lpath, sizeof lpath, "%s/object_detection/labels/%s/%s.txt", root, split, stem);
    char *text = NULL;
    gsize len = 0;
    if (!g_file_get_contents(lpath, &text, &len, NULL)) continue; /* an image without objects */
    det_labels l = {0};
    ok = det_labels_parse_yolo(text, len, ncls, s->img.w, s->img.h, &l);
    for (int k = 0; ok && k < l.n; k++) {
      det_box b = l.v[k].box;
      if (keep >= 0 && b.cls != keep) continue;
      if (keep >= 0) b.cls = 0;
      add_box(s, b);
    }
    if (l.skipped) fprintf(stderr, "%s: %d malformed or impossible boxes skipped\n", lpath, l.skipped);
    det_labels_free(&l);
    g_free(text);
  }
  e2e_free_names(files, nf);
  if (!ok) det_dataset_free(ds);
  return ok;
}

bool det_dataset_load_raccoon(det_dataset *ds, const char *root, const char *split) {
  memset(ds, 0, sizeof *ds);
  ds->num_classes = 1;
  snprintf(ds->labels[0], DET_LABEL_LEN, "raccoon");
  char path[1024];
  snprintf(path, sizeof path, "%s/data/%s_labels.csv", root, split);
  char *text = NULL;
  gsize len = 0;
  if (!g_file_get_contents(path, &text, &len, NULL)) {
    nn_set_error("%s: cannot open", path);
    return false;
  }
  det_labels l = {0};
  int cap = 0;
  bool ok = det_labels_parse_csv(text, len, &l);
  g_free(text);
  if (ok && l.skipped) fprintf(stderr, "%s: %d malformed or impossible boxes skipped\n", path, l.skipped);
  for (int k = 0; ok && k < l.n; k++) {
    int idx = -1;
    for (int i = 0; i < ds->n; i++)
      if (!strcmp(ds->s[i].name, l.v[k].image)) idx = i;
    if (idx < 0) {
      char ip[1024];
      snprintf(ip, sizeof ip, "%s/images/%s", root, l.v[k].image);
      ok = add_sample(ds, &cap, l.v[k].image, ip);
      idx = ds->n - 1;
    }
    if (ok) add_box(&ds->s[idx], l.v[k].box);
  }
  det_labels_free(&l);
  if (!ok) det_dataset_free(ds);
  return ok;
}

void det_dataset_free(det_dataset *ds) {
  for (int i = 0; i < ds->n; i++) {
    e2e_image_free(&ds->s[i].img);
    free(ds->s[i].boxes);
  }
  free(ds->s);
  memset(ds, 0, sizeof *ds);
}

/* ------------------------------------------------------------ augmentation */

static float uni(nn_rng *r, float lo, float hi) { return lo + (hi - lo) * nn_rng_uniform(r); }

/* Draws image `s` into the canvas region [rx0, rx1) x [ry0, ry1) of dst (planar,
 * values 0..1) under x' = ox + sx * x (mirrored first when flip), and appends
 * its boxes, clipped to the region, when enough of each stays visible. */
static int paint(const det_sample *s, float *dst, int size, int rx0, int ry0, int rx1, int ry1, float sx, float sy,
                 float ox, float oy, bool flip, det_box *boxes, int n, int max_boxes) {
  const e2e_image *im = &s->img;
  size_t plane = (size_t)size * size;
  for (int y = ry0; y < ry1; y++) {
    float v = ((float)y + 0.5f - oy) / sy - 0.5f;
    for (int x = rx0; x < rx1; x++) {
      float u = ((float)x + 0.5f - ox) / sx - 0.5f;
      if (flip) u = (float)im->w - 1 - u;
      size_t o = (size_t)y * size + x;
      if (u <= -0.5f || v <= -0.5f || u >= (float)im->w - 0.5f || v >= (float)im->h - 0.5f) {
        dst[o] = dst[plane + o] = dst[2 * plane + o] = 0.5f;
        continue;
      }
      float uc = fminf(fmaxf(u, 0), (float)im->w - 1), vc = fminf(fmaxf(v, 0), (float)im->h - 1);
      int x0 = (int)uc, y0 = (int)vc, x1 = x0 + 1 < im->w ? x0 + 1 : x0, y1 = y0 + 1 < im->h ? y0 + 1 : y0;
      float ax = uc - (float)x0, ay = vc - (float)y0;
      const uint8_t *p00 = im->rgb + ((size_t)y0 * im->w + x0) * 3, *p01 = im->rgb + ((size_t)y0 * im->w + x1) * 3;
      const uint8_t *p10 = im->rgb + ((size_t)y1 * im->w + x0) * 3, *p11 = im->rgb + ((size_t)y1 * im->w + x1) * 3;
      for (int c = 0; c < 3; c++)
        dst[c * plane + o] =
            ((1 - ay) * ((1 - ax) * p00[c] + ax * p01[c]) + ay * ((1 - ax) * p10[c] + ax * p11[c])) * (1.0f / 255);
    }
  }
  for (int k = 0; k < s->n && n < max_boxes; k++) {
    det_box b = s->boxes[k];
    if (flip) {
      float t = (float)im->w - b.x1;
      b.x1 = (float)im->w - b.x2;
      b.x2 = t;
    }
    b.x1 = ox + sx * b.x1;
    b.x2 = ox + sx * b.x2;
    b.y1 = oy + sy * b.y1;
    b.y2 = oy + sy * b.y2;
    float area = (b.x2 - b.x1) * (b.y2 - b.y1);
    b.x1 = fmaxf(b.x1, (float)rx0);
    b.y1 = fmaxf(b.y1, (float)ry0);
    b.x2 = fminf(b.x2, (float)rx1);
    b.y2 = fminf(b.y2, (float)ry1);
    float w = b.x2 - b.x1, h = b.y2 - b.y1;
    if (w < 3 || h < 3 || w * h < 0.35f * area) continue;
    boxes[n++] = b;
  }
  return n;
}

/* Brightness, contrast and saturation jitter, then normalisation. */
static void colour_and_normalise(float *dst, int size, nn_rng *r) {
  size_t plane = (size_t)size * size;
  float bright = uni(r, -0.15f, 0.15f), contrast = uni(r, 0.7f, 1.3f), sat = uni(r, 0.6f, 1.4f);
  for (size_t i = 0; i < plane; i++) {
    float rgb[3] = {dst[i], dst[plane + i], dst[2 * plane + i]};
    float grey = 0.299f * rgb[0] + 0.587f * rgb[1] + 0.114f * rgb[2];
    for (int c = 0; c < 3; c++) {
      float v = grey + sat * (rgb[c] - grey);
      v = (v - 0.5f) * contrast + 0.5f + bright;
      v = fminf(fmaxf(v, 0.0f), 1.0f);
      dst[c * plane + i] = e2e_input_of_unit(v);
    }
  }
}

int det_augment(const det_dataset *ds, int idx, nn_rng *r, int size, bool mosaic, float *dst, det_box *boxes,
                int max_boxes) {
  int n = 0;
  if (!mosaic) {
    const det_sample *s = &ds->s[idx];
    float fit = fminf((float)size / (float)s->img.w, (float)size / (float)s->img.h);
    float sc = fit * uni(r, 0.6f, 1.5f), asp = uni(r, 0.8f, 1.25f);
    float sx = sc * sqrtf(asp), sy = sc / sqrtf(asp);
    float w = sx * (float)s->img.w, h = sy * (float)s->img.h;
    float ox = w <= size ? uni(r, 0, (float)size - w) : -uni(r, 0, w - (float)size);
    float oy = h <= size ? uni(r, 0, (float)size - h) : -uni(r, 0, h - (float)size);
    n = paint(s, dst, size, 0, 0, size, size, sx, sy, ox, oy, nn_rng_uniform(r) < 0.5f, boxes, 0, max_boxes);
  } else {
    /* four images around a random centre */
    int cx = (int)uni(r, 0.3f * size, 0.7f * size), cy = (int)uni(r, 0.3f * size, 0.7f * size);
    int regions[4][4] = {{0, 0, cx, cy}, {cx, 0, size, cy}, {0, cy, cx, size}, {cx, cy, size, size}};
    for (int q = 0; q < 4; q++) {
      int i = q == 0 ? idx : (int)(nn_rng_u64(r) % (uint64_t)ds->n);
      const det_sample *s = &ds->s[i];
      int rw = regions[q][2] - regions[q][0], rh = regions[q][3] - regions[q][1];
      float fit = fminf((float)size / (float)s->img.w, (float)size / (float)s->img.h);
      float sc = fit * uni(r, 0.4f, 1.0f);
      float w = sc * (float)s->img.w, h = sc * (float)s->img.h;
      /* anchor the image to the mosaic centre corner of its quadrant, with jitter */
      float ox = (q % 2 == 0) ? (float)cx - w + uni(r, 0, 0.2f * w) : (float)cx - uni(r, 0, 0.2f * w);
      float oy = (q < 2) ? (float)cy - h + uni(r, 0, 0.2f * h) : (float)cy - uni(r, 0, 0.2f * h);
      (void)rw;
      (void)rh;
      n = paint(s, dst, size, regions[q][0], regions[q][1], regions[q][2], regions[q][3], sc, sc, ox, oy,
                nn_rng_uniform(r) < 0.5f, boxes, n, max_boxes);
    }
  }
  colour_and_normalise(dst, size, r);
  return n;
}
