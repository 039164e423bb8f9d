/* The detector: network, training targets and loss, decoding, (de)serialisation. */
#include "e2e/detect.h"
#include "task.h"

#include <json-glib/json-glib.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define STRIDE 8
#define ARCH "e2e-centernet-v1"

det_config det_config_default(int num_classes, int input_size) {
  det_config c = {.num_classes = num_classes, .input_size = input_size, .width = 16};
  for (int i = 0; i < num_classes && i < DET_MAX_CLASSES; i++) snprintf(c.labels[i], DET_LABEL_LEN, "class%d", i);
  return c;
}

static bool config_valid(const det_config *c) {
  if (c->num_classes < 1 || c->num_classes > DET_MAX_CLASSES) {
    nn_set_error("detector: num_classes %d outside 1..%d", c->num_classes, DET_MAX_CLASSES);
    return false;
  }
  if (c->input_size < 64 || c->input_size > 2048 || c->input_size % 32) {
    nn_set_error("detector: input_size %d must be a multiple of 32 in 64..2048", c->input_size);
    return false;
  }
  if (c->width < 4 || c->width > 128) {
    nn_set_error("detector: width %d outside 4..128", c->width);
    return false;
  }
  return true;
}

bool det_init(detector *d, const det_config *cfg, uint64_t seed) {
  memset(d, 0, sizeof *d);
  if (!config_valid(cfg)) return false;
  d->cfg = *cfg;
  nn_params_init(&d->p);
  nn_rng r;
  nn_rng_seed(&r, seed);
  int w = cfg->width;
  /* in, out, stride of the seven backbone convs */
  const int spec[7][3] = {{3, w, 2}, {w, 2 * w, 2}, {2 * w, 2 * w, 1}, {2 * w, 4 * w, 2},
                          {4 * w, 4 * w, 1}, {4 * w, 8 * w, 2}, {8 * w, 8 * w, 1}};
  char name[32];
  for (int i = 0; i < 7; i++) {
    snprintf(name, sizeof name, "backbone.conv%d", i);
    if (!nn_conv2d_init(&d->conv[i], &d->p, name, spec[i][0], spec[i][1], 3, spec[i][2], 1, 1, false, &r)) return false;
    snprintf(name, sizeof name, "backbone.bn%d", i);
    if (!nn_batchnorm_init(&d->bn[i], &d->p, name, spec[i][1])) return false;
  }
  if (!nn_conv2d_init(&d->lateral, &d->p, "neck.lateral", 4 * w, 8 * w, 1, 1, 0, 1, true, &r) ||
      !nn_conv2d_init(&d->fuse, &d->p, "neck.fuse", 8 * w, 4 * w, 3, 1, 1, 1, false, &r) ||
      !nn_batchnorm_init(&d->fuse_bn, &d->p, "neck.fuse_bn", 4 * w) ||
      !nn_conv2d_init(&d->head, &d->p, "head", 4 * w, cfg->num_classes + 4, 1, 1, 0, 1, true, &r))
    return false;
  /* start the heatmap at a 10% prior so early training is not swamped by negatives */
  for (int c = 0; c < cfg->num_classes; c++) nn_f32(d->head.bias)[c] = -2.19f;
  for (int c = 0; c < 4; c++) nn_f32(d->head.bias)[cfg->num_classes + c] = 0.0f;
  return true;
}

void det_weights_changed(detector *d) {
  if (!d->infer_ready) return;
  for (int i = 0; i < 7; i++) nn_conv_infer_free(&d->infer_conv[i]);
  nn_conv_infer_free(&d->infer_lateral);
  nn_conv_infer_free(&d->infer_fuse);
  nn_conv_infer_free(&d->infer_head);
  d->infer_ready = false;
}

void det_free(detector *d) {
  det_weights_changed(d);
  nn_params_free(&d->p);
}

bool det_prepare_inference(detector *d) {
  if (d->infer_ready) return true;
  bool ok = true;
  for (int i = 0; i < 7 && ok; i++) ok = nn_conv_infer_init(&d->infer_conv[i], &d->conv[i], &d->bn[i], true);
  ok = ok && nn_conv_infer_init(&d->infer_lateral, &d->lateral, NULL, false) &&
       nn_conv_infer_init(&d->infer_fuse, &d->fuse, &d->fuse_bn, true) &&
       nn_conv_infer_init(&d->infer_head, &d->head, NULL, false);
  d->infer_ready = true; /* so that the frees below see every copy made */
  if (!ok) det_weights_changed(d);
  return ok;
}

static nn_tensor *cbr(detector *d, int i, nn_tensor *x, bool training) {
  if (!training) return nn_conv_infer_forward(&d->infer_conv[i], x);
  return nn_batchnorm_relu_forward(&d->bn[i], nn_conv2d_forward(&d->conv[i], x), training);
}

nn_tensor *det_forward(detector *d, nn_tensor *x, bool training) {
  if (!x) return NULL;
  if (x->ndim != 4 || x->shape[1] != 3 || x->shape[2] % 32 || x->shape[3] % 32) {
    char s[96];
    nn_set_error("detector: input %s must be [N, 3, H, W] with H, W multiples of 32", nn_shape_str(x, s, sizeof s));
    return NULL;
  }
  if (training)
    det_weights_changed(d); /* the step that follows changes them */
  else if (!d->infer_ready && !det_prepare_inference(d))
    return NULL;
  nn_tensor *h = x, *c4 = NULL;
  for (int i = 0; i < 7; i++) {
    h = cbr(d, i, h, training);
    if (i == 4) c4 = h;
  }
  if (!h || !c4) return NULL;
  nn_tensor *up = nn_upsample_nearest(h, c4->shape[2], c4->shape[3]);
  if (!training) /* top-down add fused into the lateral conv */
    return nn_conv_infer_forward(&d->infer_head,
                                 nn_conv_infer_forward(&d->infer_fuse, nn_conv_infer_forward_add(&d->infer_lateral, c4, up)));
  nn_tensor *f = nn_add(up, nn_conv2d_forward(&d->lateral, c4));
  f = nn_batchnorm_relu_forward(&d->fuse_bn, nn_conv2d_forward(&d->fuse, f), training);
  return nn_conv2d_forward(&d->head, f);
}

/* ----------------------------------------------------------------- targets */

bool det_build_targets(const det_config *cfg, int batch, const det_box *const *boxes, const int *counts, det_targets *t) {
  int C = cfg->num_classes, H = cfg->input_size / STRIDE, W = H;
  t->heat = nn_zeros(NN_F32, 4, (int64_t[]){batch, C, H, W});
  t->reg = nn_zeros(NN_F32, 4, (int64_t[]){batch, 4, H, W});
  t->mask = nn_zeros(NN_F32, 4, (int64_t[]){batch, 1, H, W});
  t->n_objects = 0;
  if (!t->heat || !t->reg || !t->mask) return false;
  for (int b = 0; b < batch; b++)
    for (int k = 0; k < counts[b]; k++) {
      const det_box *bx = &boxes[b][k];
      if (bx->cls < 0 || bx->cls >= C) continue;
      float bw = (bx->x2 - bx->x1) / STRIDE, bh = (bx->y2 - bx->y1) / STRIDE;
      if (bw <= 0.05f || bh <= 0.05f) continue;
      float cx = 0.5f * (bx->x1 + bx->x2) / STRIDE, cy = 0.5f * (bx->y1 + bx->y2) / STRIDE;
      int px = (int)floorf(cx), py = (int)floorf(cy);
      if (px < 0 || py < 0 || px >= W || py >= H) continue;
      /* elliptical gaussian shaped like the box (TTFNet's alpha = 0.54) */
      float sx = fmaxf(0.5f, 0.54f * bw / 6.0f), sy = fmaxf(0.5f, 0.54f * bh / 6.0f);
      int rx = (int)ceilf(3 * sx), ry = (int)ceilf(3 * sy);
      float *hm = nn_f32(t->heat) + ((int64_t)b * C + bx->cls) * H * W;
      for (int y = py - ry; y <= py + ry; y++) {
        if (y < 0 || y >= H) continue;
        for (int x = px - rx; x <= px + rx; x++) {
          if (x < 0 || x >= W) continue;
          float dx = (float)(x - px), dy = (float)(y - py);
          float v = expf(-(dx * dx) / (2 * sx * sx) - (dy * dy) / (2 * sy * sy));
          if (v > hm[y * W + x]) hm[y * W + x] = v;
        }
      }
      hm[py * W + px] = 1.0f;
      float *rg = nn_f32(t->reg) + (int64_t)b * 4 * H * W;
      rg[0 * H * W + py * W + px] = cx - (float)px;
      rg[1 * H * W + py * W + px] = cy - (float)py;
      rg[2 * H * W + py * W + px] = logf(bw);
      rg[3 * H * W + py * W + px] = logf(bh);
      float *m = nn_f32(t->mask) + (int64_t)b * H * W;
      if (m[py * W + px] == 0.0f) t->n_objects++;
      m[py * W + px] = 1.0f;
    }
  return true;
}

/* log(sigmoid(-z)) = -softplus(z), with softplus(z) = relu(z) + log1p(exp(-|z|)) */
static nn_tensor *softplus(nn_tensor *z) {
  return nn_add(nn_relu(z), nn_log(nn_add_scalar(nn_exp(nn_neg(nn_abs(z))), 1.0f)));
}

nn_tensor *det_loss(nn_tensor *out, const det_targets *t, float *heat_loss, float *reg_loss) {
  if (!out || !t->heat) return NULL;
  int64_t C = t->heat->shape[1];
  if (out->ndim != 4 || out->shape[1] != C + 4 || out->shape[2] != t->heat->shape[2]) {
    nn_set_error("detector loss: head output and targets differ in shape");
    return NULL;
  }
  nn_tensor *logits = nn_slice(out, 1, 0, C, 1), *reg = nn_slice(out, 1, C, C + 4, 1);
  /* constant weights of the penalty-reduced focal loss (CenterNet) */
  nn_tensor *pos = nn_empty_like(t->heat), *negw = nn_empty_like(t->heat);
  if (!pos || !negw) return NULL;
  int64_t n = nn_numel(t->heat);
  const float *y = nn_f32(t->heat);
  for (int64_t i = 0; i < n; i++) {
    nn_f32(pos)[i] = y[i] == 1.0f ? 1.0f : 0.0f;
    float q = 1.0f - y[i];
    nn_f32(negw)[i] = y[i] == 1.0f ? 0.0f : q * q * q * q;
  }
  nn_tensor *p = nn_sigmoid(logits);
  nn_tensor *log_p = nn_neg(softplus(nn_neg(logits))), *log_1mp = nn_neg(softplus(logits));
  nn_tensor *one_m_p = nn_add_scalar(nn_neg(p), 1.0f);
  nn_tensor *pos_term = nn_mul(nn_mul(pos, nn_mul(one_m_p, one_m_p)), log_p);
  nn_tensor *neg_term = nn_mul(nn_mul(negw, nn_mul(p, p)), log_1mp);
  float norm = 1.0f / (float)(t->n_objects > 0 ? t->n_objects : 1);
  nn_tensor *hl = nn_mul_scalar(nn_sum_all(nn_add(pos_term, neg_term)), -norm);
  nn_tensor *rl = nn_mul_scalar(nn_sum_all(nn_mul(nn_abs(nn_sub(reg, t->reg)), t->mask)), norm);
  if (heat_loss) *heat_loss = hl ? nn_item(hl) : NAN;
  if (reg_loss) *reg_loss = rl ? nn_item(rl) : NAN;
  return nn_add(hl, rl);
}

/* ------------------------------------------------------------------ decode */

float det_iou(const det_box *a, const det_box *b) {
  float ix = fminf(a->x2, b->x2) - fmaxf(a->x1, b->x1), iy = fminf(a->y2, b->y2) - fmaxf(a->y1, b->y1);
  if (ix <= 0 || iy <= 0) return 0.0f;
  float inter = ix * iy;
  float ua = (a->x2 - a->x1) * (a->y2 - a->y1) + (b->x2 - b->x1) * (b->y2 - b->y1) - inter;
  return ua > 0 ? inter / ua : 0.0f;
}

static int cmp_score(const void *a, const void *b) {
  float x = ((const det_box *)a)->score, y = ((const det_box *)b)->score;
  return x < y ? 1 : (x > y ? -1 : 0);
}

int det_decode(const det_config *cfg, nn_tensor *out, int b, float threshold, float iou_threshold, int max_out,
               det_box *boxes) {
  if (!out || out->ndim != 4 || b < 0 || b >= out->shape[0] || max_out <= 0) return 0;
  int C = cfg->num_classes;
  int64_t H = out->shape[2], W = out->shape[3], HW = H * W;
  nn_tensor *o = nn_contiguous(out);
  const float *base = nn_f32(o) + (int64_t)b * (C + 4) * HW;
  /* candidates: cells that are the maximum of their 3x3 neighbourhood */
  int cap = 4 * max_out + 64, n = 0;
  det_box *cand = malloc((size_t)cap * sizeof *cand);
  if (!cand) return 0;
  float logit_thr = logf(threshold / (1.0f - threshold));
  for (int c = 0; c < C; c++) {
    const float *hm = base + (int64_t)c * HW;
    for (int64_t y = 0; y < H; y++)
      for (int64_t x = 0; x < W; x++) {
        float v = hm[y * W + x];
        if (!(v >= logit_thr)) continue;
        bool peak = true;
        for (int dy = -1; dy <= 1 && peak; dy++)
          for (int dx = -1; dx <= 1; dx++) {
            int64_t yy = y + dy, xx = x + dx;
            if ((dx || dy) && yy >= 0 && yy < H && xx >= 0 && xx < W && hm[yy * W + xx] > v) {
              peak = false;
              break;
            }
          }
        if (!peak) continue;
        const float *rg = base + (int64_t)C * HW + y * W + x;
        float cx = ((float)x + rg[0]) * STRIDE, cy = ((float)y + rg[HW]) * STRIDE;
        float w = expf(fminf(rg[2 * HW], 8.0f)) * STRIDE, h = expf(fminf(rg[3 * HW], 8.0f)) * STRIDE;
        det_box bx = {cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2, 1.0f / (1.0f + expf(-v)), c};
        det_keep_candidate(cand, &n, cap, bx);
      }
  }
  int kept = det_nms(cand, n, iou_threshold, boxes, max_out);
  free(cand);
  return kept;
}

void det_keep_candidate(det_box *cand, int *n, int cap, det_box b) {
  if (*n < cap) {
    cand[(*n)++] = b;
    return;
  }
  int worst = 0; /* full: the new box replaces the weakest, if it beats it */
  for (int i = 1; i < *n; i++)
    if (cand[i].score < cand[worst].score) worst = i;
  if (b.score > cand[worst].score) cand[worst] = b;
}

int det_nms(det_box *cand, int n, float iou_threshold, det_box *boxes, int max_out) {
  qsort(cand, (size_t)n, sizeof *cand, cmp_score);
  int kept = 0;
  for (int i = 0; i < n && kept < max_out; i++) {
    bool keep = true;
    if (iou_threshold < 1.0f)
      for (int k = 0; k < kept && keep; k++)
        if (boxes[k].cls == cand[i].cls && det_iou(&boxes[k], &cand[i]) > iou_threshold) keep = false;
    if (keep) boxes[kept++] = cand[i];
  }
  return kept;
}

det_letterbox det_letterbox_for(int in_w, int in_h, int size) {
  det_letterbox lb = {.in_w = in_w, .in_h = in_h, .size = size};
  lb.scale = fminf((float)size / (float)in_w, (float)size / (float)in_h);
  lb.pad_x = 0.5f * ((float)size - (float)in_w * lb.scale);
  lb.pad_y = 0.5f * ((float)size - (float)in_h * lb.scale);
  lb.scale_y = lb.scale;
  return lb;
}

void det_unletterbox(const det_letterbox *lb, det_box *b, int n) {
  float sy = lb->scale_y > 0 ? lb->scale_y : lb->scale;
  for (int i = 0; i < n; i++) {
    b[i].x1 = fminf(fmaxf((b[i].x1 - lb->pad_x) / lb->scale, 0.0f), (float)lb->in_w);
    b[i].x2 = fminf(fmaxf((b[i].x2 - lb->pad_x) / lb->scale, 0.0f), (float)lb->in_w);
    b[i].y1 = fminf(fmaxf((b[i].y1 - lb->pad_y) / sy, 0.0f), (float)lb->in_h);
    b[i].y2 = fminf(fmaxf((b[i].y2 - lb->pad_y) / sy, 0.0f), (float)lb->in_h);
  }
}

/* ------------------------------------------------------- save and load */

static char *config_json(const det_config *c) {
  JsonBuilder *b = json_builder_new();
  json_builder_begin_object(b);
  json_builder_set_member_name(b, "num_classes");
  json_builder_add_int_value(b, c->num_classes);
  json_builder_set_member_name(b, "input_size");
  json_builder_add_int_value(b, c->input_size);
  json_builder_set_member_name(b, "width");
  json_builder_add_int_value(b, c->width);
  json_builder_set_member_name(b, "stride");
  json_builder_add_int_value(b, STRIDE);
  json_builder_set_member_name(b, "labels");
  json_builder_begin_array(b);
  for (int i = 0; i < c->num_classes; i++) json_builder_add_string_value(b, c->labels[i]);
  json_builder_end_array(b);
  json_builder_end_object(b);
  JsonNode *root = json_builder_get_root(b);
  char *s = json_to_string(root, FALSE);
  json_node_unref(root);
  g_object_unref(b);
  return s;
}

bool det_save(detector *d, const char *path, const nn_kv *extra, int n_extra) {
  char *cfg = config_json(&d->cfg);
  bool ok = e2e_save_params(path, &d->p, (nn_kv[]){{"architecture", ARCH}, {"config", cfg}}, 2, extra, n_extra);
  g_free(cfg);
  return ok;
}

static bool parse_config(const char *json, det_config *c, const char *path) {
  JsonParser *p = json_parser_new();
  bool ok = false;
  if (!json || !json_parser_load_from_data(p, json, -1, NULL) || !JSON_NODE_HOLDS_OBJECT(json_parser_get_root(p))) {
    nn_set_error("%s: metadata 'config' is missing or not a JSON object", path);
    goto out;
  }
  JsonObject *o = json_node_get_object(json_parser_get_root(p));
  memset(c, 0, sizeof *c);
  c->num_classes = (int)json_object_get_int_member_with_default(o, "num_classes", 0);
  c->input_size = (int)json_object_get_int_member_with_default(o, "input_size", 0);
  c->width = (int)json_object_get_int_member_with_default(o, "width", 0);
  if (json_object_get_int_member_with_default(o, "stride", STRIDE) != STRIDE) {
    nn_set_error("%s: stride other than %d is not supported", path, STRIDE);
    goto out;
  }
  if (!config_valid(c)) {
    char msg[256];
    snprintf(msg, sizeof msg, "%s: %s", path, nn_last_error());
    nn_set_error("%s", msg);
    goto out;
  }
  JsonNode *ln = json_object_get_member(o, "labels");
  JsonArray *la = ln && JSON_NODE_HOLDS_ARRAY(ln) ? json_node_get_array(ln) : NULL;
  for (int i = 0; i < c->num_classes; i++) {
    const char *s = NULL;
    if (la && (guint)i < json_array_get_length(la)) {
      JsonNode *e = json_array_get_element(la, (guint)i);
      if (json_node_get_value_type(e) == G_TYPE_STRING) s = json_node_get_string(e);
    }
    if (s) snprintf(c->labels[i], DET_LABEL_LEN, "%s", s);
    else snprintf(c->labels[i], DET_LABEL_LEN, "class%d", i);
  }
  ok = true;
out:
  g_object_unref(p);
  return ok;
}

bool det_load_file(detector *d, const nn_st_file *f, const char *path) {
  const char *arch = nn_st_meta(f, "architecture");
  det_config cfg;
  detector tmp;
  bool ok = false;
  if (!arch || strcmp(arch, ARCH) != 0) {
    nn_set_error("%s: not an e2edetect model (architecture '%s', expected '%s')", path, arch ? arch : "none", ARCH);
  } else if (parse_config(nn_st_meta(f, "config"), &cfg, path) && det_init(&tmp, &cfg, 0)) {
    ok = nn_st_load_params(f, &tmp.p, NULL, true);
    if (ok) {
      det_free(d); /* the old model, if any; a zeroed struct frees nothing */
      *d = tmp;    /* the layers' tensor pointers stay valid: tmp.p's tensors move with it */
    } else {
      det_free(&tmp);
    }
  }
  return ok;
}

bool det_load(detector *d, const char *path) {
  nn_st_file *f = nn_st_open(path);
  if (!f) return false;
  bool ok = det_load_file(d, f, path);
  nn_st_close(f);
  return ok;
}
