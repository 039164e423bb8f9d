/* ONNX models (opsets 11..17) onto nncore's graph runtime, parsed with protobuf-c from the onnx.proto
 * Debian installs (the C is generated at build time).
 *
 * Everything static is folded here: initialisers and Constant nodes are host constants, and the shape
 * arithmetic exporters write (Shape, Gather, Unsqueeze, Concat, Cast, ConstantOfShape, ...) is computed
 * at load, since every shape is known then. What reaches the graph is float work. An op, attribute or
 * mode we cannot run exactly is refused at load, naming the node, the op and the opset. */
#include <glib.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "builder.h"
#include "e2e/import.h"
#include "onnx.pb-c.h"

#define MAX_MODEL_BYTES ((size_t)1 << 30)

typedef struct {
  imp_ctx *c;
  const Onnx__NodeProto *n;
  const char *name, *op;
  int opset;
  const char *dir; /* the model's folder, for external data; NULL: refused */
} ox_node;

/* ---- attributes ---- */

static const Onnx__AttributeProto *attr(const ox_node *n, const char *key) {
  for (size_t i = 0; i < n->n->n_attribute; i++)
    if (n->n->attribute[i]->name && !strcmp(n->n->attribute[i]->name, key)) return n->n->attribute[i];
  return NULL;
}

static int64_t attr_int(const ox_node *n, const char *key, int64_t dflt) {
  const Onnx__AttributeProto *a = attr(n, key);
  return a && a->has_i ? a->i : dflt;
}

static float attr_float(const ox_node *n, const char *key, float dflt) {
  const Onnx__AttributeProto *a = attr(n, key);
  return a && a->has_f ? a->f : dflt;
}

/* A string attribute as a C string in buf ("" when absent). */
static const char *attr_str(const ox_node *n, const char *key, const char *dflt, char *buf, size_t len) {
  const Onnx__AttributeProto *a = attr(n, key);
  if (!a || !a->has_s) return dflt;
  size_t k = a->s.len < len - 1 ? a->s.len : len - 1;
  memcpy(buf, a->s.data, k);
  buf[k] = 0;
  return buf;
}

static int attr_ints(const ox_node *n, const char *key, int64_t *out, int max) {
  const Onnx__AttributeProto *a = attr(n, key);
  if (!a) return 0;
  if ((int)a->n_ints > max) return -1;
  if (a->n_ints) memcpy(out, a->ints, sizeof *out * a->n_ints); /* an empty list may have no array */
  return (int)a->n_ints;
}

static bool fail(const ox_node *n, const char *fmt, const char *detail) {
  char m[600];
  snprintf(m, sizeof m, fmt, detail);
  return imp_fail(n->c, n->name, n->op, "%s (opset %d)", m, n->opset);
}

static int n_inputs(const ox_node *n) {
  /* trailing empty names are absent optional inputs */
  int k = (int)n->n->n_input;
  while (k > 0 && !*n->n->input[k - 1]) k--;
  return k;
}

static imp_value *in(const ox_node *n, int k) {
  if (k >= (int)n->n->n_input || !*n->n->input[k]) {
    imp_fail(n->c, n->name, n->op, "needs input %d", k);
    return NULL;
  }
  imp_value *v = imp_get(n->c, n->n->input[k]);
  if (!v) imp_fail(n->c, n->name, n->op, "input \"%s\" is not defined before it", n->n->input[k]);
  return v;
}

static imp_value *opt_in(const ox_node *n, int k) {
  return k < (int)n->n->n_input && *n->n->input[k] ? in(n, k) : NULL;
}

static bool const_ints_in(const ox_node *n, int k, int64_t *out, int max, int *count) {
  imp_value *v = in(n, k);
  if (!v) return false;
  if (!imp_ints(v, out, max, count))
    return imp_fail(n->c, n->name, n->op, "input %d (\"%s\") must be a constant of at most %d values", k, n->n->input[k], max);
  return true;
}

static const char *out_name(const ox_node *n, int k) { return k < (int)n->n->n_output ? n->n->output[k] : ""; }

/* ---- tensors ---- */

static bool tensor_dtype_ok(int dt, bool *is_float) {
  switch (dt) {
  case ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT: case ONNX__TENSOR_PROTO__DATA_TYPE__DOUBLE: case ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT16:
    *is_float = true;
    return true;
  case ONNX__TENSOR_PROTO__DATA_TYPE__INT64: case ONNX__TENSOR_PROTO__DATA_TYPE__INT32: case ONNX__TENSOR_PROTO__DATA_TYPE__INT16:
  case ONNX__TENSOR_PROTO__DATA_TYPE__INT8: case ONNX__TENSOR_PROTO__DATA_TYPE__UINT8: case ONNX__TENSOR_PROTO__DATA_TYPE__UINT16:
  case ONNX__TENSOR_PROTO__DATA_TYPE__UINT32: case ONNX__TENSOR_PROTO__DATA_TYPE__BOOL:
    *is_float = false;
    return true;
  default:
    return false;
  }
}

static size_t raw_size(int dt) {
  switch (dt) {
  case ONNX__TENSOR_PROTO__DATA_TYPE__DOUBLE: case ONNX__TENSOR_PROTO__DATA_TYPE__INT64: return 8;
  case ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT: case ONNX__TENSOR_PROTO__DATA_TYPE__INT32: case ONNX__TENSOR_PROTO__DATA_TYPE__UINT32: return 4;
  case ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT16: case ONNX__TENSOR_PROTO__DATA_TYPE__INT16: case ONNX__TENSOR_PROTO__DATA_TYPE__UINT16: return 2;
  default: return 1;
  }
}

static double raw_at(const uint8_t *p, int dt) {
  switch (dt) {
  case ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT: { float f; memcpy(&f, p, 4); return f; }
  case ONNX__TENSOR_PROTO__DATA_TYPE__DOUBLE: { double d; memcpy(&d, p, 8); return d; }
  case ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT16: { uint16_t h; memcpy(&h, p, 2); return imp_half_to_float(h); }
  case ONNX__TENSOR_PROTO__DATA_TYPE__INT64: { int64_t i; memcpy(&i, p, 8); return (double)i; }
  case ONNX__TENSOR_PROTO__DATA_TYPE__INT32: { int32_t i; memcpy(&i, p, 4); return i; }
  case ONNX__TENSOR_PROTO__DATA_TYPE__UINT32: { uint32_t i; memcpy(&i, p, 4); return i; }
  case ONNX__TENSOR_PROTO__DATA_TYPE__INT16: { int16_t i; memcpy(&i, p, 2); return i; }
  case ONNX__TENSOR_PROTO__DATA_TYPE__UINT16: { uint16_t i; memcpy(&i, p, 2); return i; }
  case ONNX__TENSOR_PROTO__DATA_TYPE__INT8: return (int8_t)p[0];
  default: return p[0];
  }
}

/* Bytes of an external-data tensor: a file in the model's own folder, at offset, of length bytes. */
static uint8_t *external_bytes(imp_ctx *c, const Onnx__TensorProto *t, const char *dir, size_t want) {
  const char *loc = NULL;
  int64_t offset = 0, length = -1;
  for (size_t i = 0; i < t->n_external_data; i++) {
    const Onnx__StringStringEntryProto *e = t->external_data[i];
    if (!e->key || !e->value) continue;
    if (!strcmp(e->key, "location")) loc = e->value;
    else if (!strcmp(e->key, "offset")) offset = g_ascii_strtoll(e->value, NULL, 10);
    else if (!strcmp(e->key, "length")) length = g_ascii_strtoll(e->value, NULL, 10);
  }
  if (!dir) {
    nn_set_error("%s: tensor \"%s\" is in an external file, which a model read from memory cannot have", c->what, t->name);
    return NULL;
  }
  if (!loc || !*loc || g_path_is_absolute(loc) || strstr(loc, "..") || strchr(loc, '\\')) {
    nn_set_error("%s: tensor \"%s\": external data \"%s\" is not a file in the model's own folder", c->what, t->name,
                 loc ? loc : "(none)");
    return NULL;
  }
  if (offset < 0 || (length >= 0 && (size_t)length != want)) {
    nn_set_error("%s: tensor \"%s\": external data offset %lld / length %lld do not fit its %zu bytes", c->what, t->name,
                 (long long)offset, (long long)length, want);
    return NULL;
  }
  char *path = g_build_filename(dir, loc, NULL);
  FILE *f = fopen(path, "rb");
  uint8_t *buf = f ? malloc(want ? want : 1) : NULL;
  bool ok = buf && fseek(f, (long)offset, SEEK_SET) == 0 && fread(buf, 1, want, f) == want;
  if (!ok) {
    nn_set_error("%s: tensor \"%s\": cannot read %zu bytes at %lld of %s", c->what, t->name, want, (long long)offset, path);
    free(buf);
    buf = NULL;
  }
  if (f) fclose(f);
  g_free(path);
  return buf;
}

/* A TensorProto as a host constant called name. */
static imp_value *tensor_const(imp_ctx *c, const Onnx__TensorProto *t, const char *name, const char *dir) {
  bool is_float;
  if (!t->has_data_type || !tensor_dtype_ok(t->data_type, &is_float)) {
    nn_set_error("%s: tensor \"%s\" has data type %d (float, double, float16 and integers are supported)", c->what, name,
                 t->data_type);
    return NULL;
  }
  if (t->n_dims > NN_MAX_DIMS) {
    nn_set_error("%s: tensor \"%s\" has %zu dimensions (at most %d)", c->what, name, t->n_dims, NN_MAX_DIMS);
    return NULL;
  }
  int64_t n = 1;
  for (size_t d = 0; d < t->n_dims; d++) {
    if (t->dims[d] < 0 || t->dims[d] > ((int64_t)1 << 31) || (n *= t->dims[d]) > ((int64_t)1 << 31)) {
      nn_set_error("%s: tensor \"%s\" has an absurd shape", c->what, name);
      return NULL;
    }
  }
  size_t es = raw_size(t->data_type), want = es * (size_t)n;
  const uint8_t *raw = NULL;
  uint8_t *ext = NULL;
  size_t have = 0;
  if (t->has_data_location && t->data_location == ONNX__TENSOR_PROTO__DATA_LOCATION__EXTERNAL) {
    if (!(ext = external_bytes(c, t, dir, want))) return NULL;
    raw = ext, have = want;
  } else if (t->has_raw_data) {
    raw = t->raw_data.data, have = t->raw_data.len;
  } else {
    switch (t->data_type) {
    case ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT: have = t->n_float_data; break;
    case ONNX__TENSOR_PROTO__DATA_TYPE__DOUBLE: have = t->n_double_data; break;
    case ONNX__TENSOR_PROTO__DATA_TYPE__INT64: have = t->n_int64_data; break;
    case ONNX__TENSOR_PROTO__DATA_TYPE__UINT32: have = t->n_uint64_data; break;
    default: have = t->n_int32_data; break;
    }
    have *= es; /* compare in bytes either way */
    if (t->data_type != ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT && t->data_type != ONNX__TENSOR_PROTO__DATA_TYPE__DOUBLE &&
        t->data_type != ONNX__TENSOR_PROTO__DATA_TYPE__INT64 && t->data_type != ONNX__TENSOR_PROTO__DATA_TYPE__UINT32)
      have = t->n_int32_data * es;
  }
  if (have != want) {
    free(ext);
    nn_set_error("%s: tensor \"%s\" holds %zu bytes of data, its shape needs %zu", c->what, name, have, want);
    return NULL;
  }
  void *vals = malloc((is_float ? sizeof(float) : sizeof(int64_t)) * (size_t)(n ? n : 1));
  if (!vals) {
    free(ext);
    nn_set_error("%s: out of memory for \"%s\"", c->what, name);
    return NULL;
  }
  for (int64_t k = 0; k < n; k++) {
    if (!is_float && t->data_type == ONNX__TENSOR_PROTO__DATA_TYPE__INT64) { /* exactly, not through a double */
      int64_t i;
      if (raw) memcpy(&i, raw + (size_t)k * 8, 8);
      else i = t->int64_data[k];
      ((int64_t *)vals)[k] = i;
      continue;
    }
    double v;
    if (raw) v = raw_at(raw + (size_t)k * es, t->data_type);
    else if (t->data_type == ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT) v = t->float_data[k];
    else if (t->data_type == ONNX__TENSOR_PROTO__DATA_TYPE__DOUBLE) v = t->double_data[k];
    else if (t->data_type == ONNX__TENSOR_PROTO__DATA_TYPE__UINT32) v = (double)t->uint64_data[k];
    else if (t->data_type == ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT16) v = imp_half_to_float((uint16_t)t->int32_data[k]);
    else v = t->int32_data[k];
    if (is_float) ((float *)vals)[k] = (float)v;
    else ((int64_t *)vals)[k] = (int64_t)v;
  }
  imp_value *r = imp_const(c, name, is_float ? NN_F32 : NN_I64, (int)t->n_dims, t->dims, vals);
  free(vals);
  free(ext);
  return r;
}

/* ---- ops ---- */

static imp_value *put_const(const ox_node *n, const char *name, nn_dtype dt, int ndim, const int64_t *shape, const void *data) {
  return imp_const(n->c, name, dt, ndim, shape, data);
}

/* Spatial padding of a window op: pads (t, l, b, r) from pads/auto_pad. */
static bool window_pads(const ox_node *n, const int64_t *size, const int64_t *k, const int64_t *s, const int64_t *dil, int64_t *pads) {
  char buf[32];
  const char *ap = attr_str(n, "auto_pad", "NOTSET", buf, sizeof buf);
  int64_t p[4] = {0};
  int np = attr_ints(n, "pads", p, 4);
  if (np != 0 && np != 4) return fail(n, "%s: pads must have 4 entries (2-D only)", "pads");
  if (!strcmp(ap, "NOTSET") || !strcmp(ap, "VALID")) {
    if (!strcmp(ap, "VALID")) memset(p, 0, sizeof p);
  } else if (!strcmp(ap, "SAME_UPPER") || !strcmp(ap, "SAME_LOWER")) {
    for (int d = 0; d < 2; d++) {
      int64_t out = (size[d] + s[d] - 1) / s[d], total = (out - 1) * s[d] + (k[d] - 1) * dil[d] + 1 - size[d];
      if (total < 0) total = 0;
      int64_t small = total / 2, big = total - small;
      p[d] = ap[5] == 'U' ? small : big, p[d + 2] = ap[5] == 'U' ? big : small;
    }
  } else {
    return fail(n, "auto_pad \"%s\" is not supported", ap);
  }
  for (int d = 0; d < 4; d++)
    if (p[d] < 0) return fail(n, "%s: negative pads are not supported", "pads");
  memcpy(pads, p, sizeof p);
  return true;
}

static imp_value *conv(const ox_node *n, bool transpose) {
  imp_ctx *c = n->c;
  imp_value *x = in(n, 0), *w = in(n, 1), *b = opt_in(n, 2);
  if (!x || !w || (n_inputs(n) > 2 && !b)) return NULL;
  if (x->ndim != 4 || w->ndim != 4) {
    fail(n, "only 2-D convolutions are supported (input of %s dimensions)", x->ndim == 3 ? "3" : x->ndim == 5 ? "5" : "other");
    return NULL;
  }
  int64_t s[2] = {1, 1}, dil[2] = {1, 1}, pads[4], k[2] = {w->shape[2], w->shape[3]}, op[2] = {0, 0}, ks[2];
  if (attr_ints(n, "strides", s, 2) < 0 || attr_ints(n, "dilations", dil, 2) < 0 || attr_ints(n, "output_padding", op, 2) < 0 ||
      attr_ints(n, "kernel_shape", ks, 2) < 0) {
    fail(n, "%s: strides, dilations and paddings must have 2 entries", "attributes");
    return NULL;
  }
  int64_t group = attr_int(n, "group", 1);
  if (attr(n, "output_shape")) {
    fail(n, "%s is not supported (give pads)", "output_shape");
    return NULL;
  }
  if (!window_pads(n, x->shape + 2, k, s, dil, pads)) return NULL;
  if (transpose && (attr(n, "auto_pad") && attr(n, "auto_pad")->has_s && strncmp((const char *)attr(n, "auto_pad")->s.data, "NOTSET", 6))) {
    fail(n, "%s on a transposed convolution is not supported", "auto_pad");
    return NULL;
  }
  int ids[3] = {imp_as(c, x, NULL), imp_as(c, w, NULL), b ? imp_as(c, b, NULL) : -1};
  if (ids[0] < 0 || ids[1] < 0 || (b && ids[2] < 0)) return NULL;
  const char *name = out_name(n, 0);
  if (!transpose) {
    if (pads[0] != pads[2] || pads[1] != pads[3]) {
      int64_t p[8] = {0, 0, 0, 0, pads[0], pads[2], pads[1], pads[3]};
      float zero = 0;
      char *pn = imp_name(c, name, "pad");
      ids[0] = nn_graph_add_node(c->g, NN_OP_PAD, pn, 1, ids, 8, p, 1, &zero);
      g_free(pn);
      if (ids[0] < 0) return NULL;
      memset(pads, 0, sizeof pads[0] * 4);
    }
    int64_t a[7] = {s[0], s[1], pads[0], pads[1], dil[0], dil[1], group};
    int id = nn_graph_add_node(c->g, NN_OP_CONV, name, b ? 3 : 2, ids, 7, a, 0, NULL);
    return id < 0 ? NULL : imp_graph(c, name, id, NULL);
  }
  /* transposed: the symmetric part of the padding in the op, the rest cut off after */
  int64_t ph = pads[0] < pads[2] ? pads[0] : pads[2], pw = pads[1] < pads[3] ? pads[1] : pads[3];
  int64_t a[9] = {s[0], s[1], ph, pw, dil[0], dil[1], group, op[0], op[1]};
  bool cut = pads[0] != pads[2] || pads[1] != pads[3];
  char *tn = cut ? imp_name(c, name, "full") : g_strdup(name);
  int id = nn_graph_add_node(c->g, NN_OP_CONV_TRANSPOSE, tn, b ? 3 : 2, ids, 9, a, 0, NULL);
  g_free(tn);
  imp_value *y = id < 0 ? NULL : imp_graph(c, cut ? "__full" : name, id, NULL);
  if (!y || !cut) return y;
  const nn_graph_value *yv = &c->g->values[id];
  char *sn = imp_name(c, name, "cut");
  imp_value *r = imp_slice(c, sn, y, 2, pads[0] - ph, yv->shape[2] - (pads[2] - ph), 1);
  g_free(sn);
  return r ? imp_slice(c, name, r, 3, pads[1] - pw, yv->shape[3] - (pads[3] - pw), 1) : NULL;
}

static imp_value *pool(const ox_node *n, bool max) {
  imp_ctx *c = n->c;
  imp_value *x = in(n, 0);
  if (!x) return NULL;
  if (x->ndim != 4) {
    fail(n, "only 2-D pooling is supported (%s)", "input rank is not 4");
    return NULL;
  }
  if (n->n->n_output > 1 && *n->n->output[1]) {
    fail(n, "the %s output is not supported", "Indices");
    return NULL;
  }
  int64_t k[2], s[2] = {1, 1}, dil[2] = {1, 1}, pads[4];
  if (attr_ints(n, "kernel_shape", k, 2) != 2 || attr_ints(n, "strides", s, 2) < 0 || attr_ints(n, "dilations", dil, 2) < 0) {
    fail(n, "%s: kernel_shape, strides and dilations must have 2 entries", "attributes");
    return NULL;
  }
  if (dil[0] != 1 || dil[1] != 1) {
    fail(n, "%s other than 1 are not supported", "dilations");
    return NULL;
  }
  if (!window_pads(n, x->shape + 2, k, s, dil, pads)) return NULL;
  bool cip = attr_int(n, "count_include_pad", 0) != 0;
  if (attr_int(n, "ceil_mode", 0)) {
    if (!max && cip) {
      fail(n, "%s with count_include_pad=1 is not supported", "ceil_mode=1");
      return NULL;
    }
    /* ceil: extra padding after, so that the floor rule gives the ceil count (a window must start inside) */
    for (int d = 0; d < 2; d++) {
      int64_t span = x->shape[2 + d] + pads[d] + pads[d + 2] - k[d];
      int64_t out = span < 0 ? 0 : (span + s[d] - 1) / s[d] + 1;
      if (out > 0 && (out - 1) * s[d] >= x->shape[2 + d] + pads[d]) out--;
      int64_t need = (out - 1) * s[d] + k[d] - (x->shape[2 + d] + pads[d] + pads[d + 2]);
      if (need > 0) pads[d + 2] += need;
    }
  }
  int id0 = imp_as(c, x, NULL);
  int64_t a[9] = {k[0], k[1], s[0], s[1], pads[0], pads[1], pads[2], pads[3], cip};
  int id = id0 < 0 ? -1 : nn_graph_add_node(c->g, max ? NN_OP_MAX_POOL : NN_OP_AVG_POOL, out_name(n, 0), 1, &id0, max ? 8 : 9, a, 0, NULL);
  return id < 0 ? NULL : imp_graph(c, out_name(n, 0), id, NULL);
}

static imp_value *resize(const ox_node *n) {
  imp_ctx *c = n->c;
  imp_value *x = in(n, 0);
  if (!x) return NULL;
  char mb[32], cb[48], nb[32];
  const char *mode = attr_str(n, "mode", "nearest", mb, sizeof mb);
  const char *ct = attr_str(n, "coordinate_transformation_mode", "half_pixel", cb, sizeof cb);
  const char *nm = attr_str(n, "nearest_mode", "round_prefer_floor", nb, sizeof nb);
  if (n->opset < 11) {
    fail(n, "%s before opset 11 is not supported", "Resize");
    return NULL;
  }
  if (attr_int(n, "antialias", 0) || attr(n, "axes") || strcmp(attr_str(n, "keep_aspect_ratio_policy", "stretch", nb + 16, 16), "stretch")) {
    fail(n, "%s is not supported", "antialias, axes or keep_aspect_ratio_policy");
    return NULL;
  }
  if (x->ndim != 4) {
    fail(n, "only 4-D inputs are resized (%s)", "N and C kept");
    return NULL;
  }
  int64_t sizes[4];
  int k = 0;
  imp_value *scales = opt_in(n, 2), *sz = opt_in(n, 3);
  if (sz) {
    if (!imp_ints(sz, sizes, 4, &k) || k != 4) {
      fail(n, "%s must be a constant of 4 values", "sizes");
      return NULL;
    }
  } else if (scales && scales->is_const && imp_numel(scales) == 4) {
    for (int d = 0; d < 4; d++) {
      double want = (double)x->shape[d] * imp_float_at(scales, d);
      sizes[d] = (int64_t)floor(want);
      /* ONNX maps coordinates with the scale itself; ours with the size ratio, the same only when whole */
      if (want != (double)sizes[d]) {
        fail(n, "%s that do not give whole sizes are not supported", "scales");
        return NULL;
      }
    }
  } else {
    fail(n, "%s must be constants (scales of 4 values, or sizes)", "scales/sizes");
    return NULL;
  }
  if (sizes[0] != x->shape[0] || sizes[1] != x->shape[1]) {
    fail(n, "%s: only H and W may change", "sizes");
    return NULL;
  }
  int64_t H = x->shape[2], W = x->shape[3];
  bool linear = !strcmp(mode, "linear");
  bool half = !strcmp(ct, "half_pixel") || (!strcmp(ct, "pytorch_half_pixel") && sizes[2] > 1 && sizes[3] > 1);
  bool ok;
  if (linear) {
    ok = half;
  } else if (!strcmp(mode, "nearest")) {
    bool whole = sizes[2] % H == 0 && sizes[3] % W == 0;
    /* floor(d * in / out) exactly, or half-pixel rounding, which equals it on whole upscales */
    ok = (!strcmp(ct, "asymmetric") && !strcmp(nm, "floor")) ||
         (whole && (!strcmp(ct, "asymmetric") ? !strcmp(nm, "floor") : half && strncmp(nm, "round_prefer", 12) == 0));
  } else {
    ok = false;
  }
  if (!ok) {
    char what[256];
    snprintf(what, sizeof what, "mode=%s, coordinate_transformation_mode=%s, nearest_mode=%s", mode, ct, nm);
    fail(n, "%s is not supported (linear half_pixel, nearest asymmetric floor or whole upscales are)", what);
    return NULL;
  }
  int id0 = imp_as(c, x, NULL);
  int64_t a[3] = {sizes[2], sizes[3], linear};
  int id = id0 < 0 ? -1 : nn_graph_add_node(c->g, NN_OP_RESIZE, out_name(n, 0), 1, &id0, 3, a, 0, NULL);
  return id < 0 ? NULL : imp_graph(c, out_name(n, 0), id, NULL);
}

/* Axes for Squeeze/Unsqueeze/ReduceMean: an attribute before opset 13 (18 for reductions), an input after. */
static bool axes_of(const ox_node *n, int input, int64_t *axes, int *count) {
  *count = 0;
  if (attr(n, "axes")) {
    *count = attr_ints(n, "axes", axes, NN_MAX_DIMS);
    return *count >= 0 || fail(n, "%s: too many axes", "axes");
  }
  if (opt_in(n, input)) return const_ints_in(n, input, axes, NN_MAX_DIMS, count);
  return true;
}

static imp_value *gemm(const ox_node *n) {
  imp_ctx *c = n->c;
  imp_value *a = in(n, 0), *b = in(n, 1), *cc = opt_in(n, 2);
  if (!a || !b) return NULL;
  if (a->ndim != 2 || b->ndim != 2) {
    fail(n, "%s: A and B must be 2-D", "Gemm");
    return NULL;
  }
  const char *name = out_name(n, 0);
  char *tn;
  if (attr_int(n, "transA", 0)) a = imp_transpose(c, tn = imp_name(c, name, "ta"), a, (int[]){1, 0}), g_free(tn);
  if (attr_int(n, "transB", 0)) b = imp_transpose(c, tn = imp_name(c, name, "tb"), b, (int[]){1, 0}), g_free(tn);
  float alpha = attr_float(n, "alpha", 1), beta = attr_float(n, "beta", 1);
  int ia = a ? imp_as(c, a, NULL) : -1, ib = b ? imp_as(c, b, NULL) : -1;
  char *mn = imp_name(c, name, "matmul");
  int id = ia < 0 || ib < 0 ? -1 : nn_graph_add_node(c->g, NN_OP_MATMUL, mn, 2, (int[]){ia, ib}, 0, NULL, 0, NULL);
  imp_value *y = id < 0 ? NULL : imp_graph(c, mn, id, NULL);
  g_free(mn);
  if (y && alpha != 1.0f) {
    imp_value *s = put_const(n, tn = imp_name(c, name, "alpha"), NN_F32, 0, NULL, &alpha);
    g_free(tn);
    y = imp_binary(c, tn = imp_name(c, name, "scaled"), NN_OP_MUL, y, s), g_free(tn);
  }
  if (!cc || !y || beta == 0.0f) return y ? imp_unary(c, name, NN_OP_IDENTITY, y, 0, NULL) : NULL;
  if (beta != 1.0f) {
    imp_value *s = put_const(n, tn = imp_name(c, name, "beta"), NN_F32, 0, NULL, &beta);
    g_free(tn);
    cc = imp_binary(c, tn = imp_name(c, name, "c"), NN_OP_MUL, cc, s), g_free(tn);
  }
  return imp_binary(c, name, NN_OP_ADD, y, cc);
}

static imp_value *softmax(const ox_node *n) {
  imp_ctx *c = n->c;
  imp_value *x = in(n, 0);
  if (!x) return NULL;
  int64_t axis = attr_int(n, "axis", n->opset >= 13 ? -1 : 1);
  if (axis < 0) axis += x->ndim;
  if (axis < 0 || axis >= x->ndim) {
    fail(n, "%s out of range", "axis");
    return NULL;
  }
  const char *name = out_name(n, 0);
  if (n->opset < 13 && axis != x->ndim - 1) {
    /* before opset 13: softmax over all dimensions from axis on, as one */
    int64_t outer = 1, inner = 1;
    for (int d = 0; d < axis; d++) outer *= x->shape[d];
    for (int d = (int)axis; d < x->ndim; d++) inner *= x->shape[d];
    char *tn = imp_name(c, name, "flat");
    imp_value *f = imp_reshape(c, tn, x, 2, (int64_t[]){outer, inner});
    g_free(tn);
    int id0 = f ? imp_as(c, f, NULL) : -1;
    int64_t ax = 1;
    tn = imp_name(c, name, "sm");
    int id = id0 < 0 ? -1 : nn_graph_add_node(c->g, NN_OP_SOFTMAX, tn, 1, &id0, 1, &ax, 0, NULL);
    imp_value *s = id < 0 ? NULL : imp_graph(c, tn, id, NULL);
    g_free(tn);
    return s ? imp_reshape(c, name, s, x->ndim, x->shape) : NULL;
  }
  int id0 = imp_as(c, x, x->is_const ? NULL : x->perm);
  int64_t ax = x->is_const ? axis : x->perm[axis];
  int id = id0 < 0 ? -1 : nn_graph_add_node(c->g, NN_OP_SOFTMAX, name, 1, &id0, 1, &ax, 0, NULL);
  return id < 0 ? NULL : imp_graph(c, name, id, x->is_const ? NULL : x->perm);
}

static imp_value *gather(const ox_node *n) {
  imp_ctx *c = n->c;
  imp_value *x = in(n, 0), *idx = in(n, 1);
  if (!x || !idx) return NULL;
  int64_t axis = attr_int(n, "axis", 0);
  if (axis < 0) axis += x->ndim;
  if (axis < 0 || axis >= x->ndim) {
    fail(n, "%s out of range", "axis");
    return NULL;
  }
  if (!idx->is_const || idx->ndim > 1 || imp_numel(idx) > NN_GRAPH_MAX_ATTRS - 1) {
    fail(n, "%s must be a constant scalar or a 1-D constant of at most 15 entries", "indices");
    return NULL;
  }
  int64_t ids[NN_GRAPH_MAX_ATTRS];
  int k;
  imp_ints(idx, ids, NN_GRAPH_MAX_ATTRS - 1, &k);
  for (int j = 0; j < k; j++) {
    if (ids[j] < 0) ids[j] += x->shape[axis];
    if (ids[j] < 0 || ids[j] >= x->shape[axis]) {
      fail(n, "%s: an index is out of range", "indices");
      return NULL;
    }
  }
  const char *name = out_name(n, 0);
  int64_t shape[NN_MAX_DIMS];
  int nd = 0;
  for (int d = 0; d < x->ndim; d++) {
    if (d != axis) shape[nd++] = x->shape[d];
    else if (idx->ndim == 1) shape[nd++] = k;
  }
  if (x->is_const) { /* shape arithmetic: gather on the host */
    int64_t outer = 1, inner = 1;
    for (int d = 0; d < axis; d++) outer *= x->shape[d];
    for (int d = (int)axis + 1; d < x->ndim; d++) inner *= x->shape[d];
    size_t es = x->dtype == NN_F32 ? sizeof(float) : sizeof(int64_t);
    char *out = malloc(es * (size_t)(outer * k * inner + 1)), *o = out;
    if (!out) return NULL;
    for (int64_t i = 0; i < outer; i++)
      for (int j = 0; j < k; j++, o += es * (size_t)inner)
        memcpy(o, (char *)x->data + es * (size_t)((i * x->shape[axis] + ids[j]) * inner), es * (size_t)inner);
    imp_value *r = imp_const(c, name, x->dtype, nd, shape, out);
    free(out);
    return r;
  }
  char *tn = imp_name(c, name, "sel");
  imp_value *r;
  if (k == 1) {
    r = imp_slice(c, tn, x, (int)axis, ids[0], ids[0] + 1, 1);
  } else {
    int id0 = imp_as(c, x, NULL);
    int64_t a[NN_GRAPH_MAX_ATTRS];
    a[0] = axis;
    memcpy(a + 1, ids, sizeof *ids * (size_t)k);
    int id = id0 < 0 ? -1 : nn_graph_add_node(c->g, NN_OP_GATHER, tn, 1, &id0, k + 1, a, 0, NULL);
    r = id < 0 ? NULL : imp_graph(c, tn, id, NULL);
  }
  g_free(tn);
  return r ? imp_reshape(c, name, r, nd, shape) : NULL;
}

/* One node; false with a message. */
static bool convert(const ox_node *n) {
  imp_ctx *c = n->c;
  const char *op = n->op, *name = out_name(n, 0);
  imp_value *r = NULL;
  if (n->n->domain && *n->n->domain && strcmp(n->n->domain, "ai.onnx"))
    return fail(n, "ops of domain \"%s\" are not supported", n->n->domain);
  if (!*name) return fail(n, "%s: the node has no output", "output");
  if (!strcmp(op, "Constant")) {
    const Onnx__AttributeProto *a;
    if ((a = attr(n, "value")) && a->t) return tensor_const(c, a->t, name, NULL) != NULL;
    if ((a = attr(n, "value_float")) && a->has_f) return put_const(n, name, NN_F32, 0, NULL, &a->f) != NULL;
    if ((a = attr(n, "value_int")) && a->has_i) return put_const(n, name, NN_I64, 0, NULL, &a->i) != NULL;
    if ((a = attr(n, "value_floats"))) return put_const(n, name, NN_F32, 1, (int64_t[]){(int64_t)a->n_floats}, a->floats) != NULL;
    if ((a = attr(n, "value_ints"))) return put_const(n, name, NN_I64, 1, (int64_t[]){(int64_t)a->n_ints}, a->ints) != NULL;
    return fail(n, "%s: only value, value_float(s) and value_int(s) are supported", "Constant");
  }
  if (!strcmp(op, "Identity") || !strcmp(op, "Dropout")) {
    if (!strcmp(op, "Dropout") && n->n->n_output > 1 && *n->n->output[1]) return fail(n, "the %s output is not supported", "mask");
    if (!strcmp(op, "Dropout") && (attr_int(n, "is_test", 1) == 0 || opt_in(n, 2))) {
      imp_value *t = opt_in(n, 2);
      if (!t || !t->is_const || imp_float_at(t, 0) != 0) return fail(n, "%s (training-mode dropout) is not supported", "training_mode");
    }
    imp_value *x = in(n, 0);
    if (!x) return false;
    r = x->is_const ? imp_const(c, name, x->dtype, x->ndim, x->shape, x->data) : imp_graph(c, name, x->id, x->perm);
  } else if (!strcmp(op, "Conv") || !strcmp(op, "ConvTranspose")) {
    r = conv(n, op[4] == 'T');
  } else if (!strcmp(op, "BatchNormalization")) {
    if (attr_int(n, "training_mode", 0) || (n->n->n_output > 1 && *n->n->output[1]))
      return fail(n, "%s is not supported (inference form only)", "training_mode");
    imp_value *x = in(n, 0);
    int ids[5];
    for (int k = 0; k < 5; k++) {
      imp_value *v = k ? in(n, k) : x;
      if (!v || (ids[k] = imp_as(c, v, NULL)) < 0) return false;
    }
    float eps = attr_float(n, "epsilon", 1e-5f);
    int id = nn_graph_add_node(c->g, NN_OP_BATCH_NORM, name, 5, ids, 0, NULL, 1, &eps);
    r = id < 0 ? NULL : imp_graph(c, name, id, NULL);
  } else if (!strcmp(op, "Relu")) {
    r = imp_unary(c, name, NN_OP_RELU, in(n, 0), 0, NULL);
  } else if (!strcmp(op, "LeakyRelu")) {
    r = imp_unary(c, name, NN_OP_LEAKY_RELU, in(n, 0), 1, (float[]){attr_float(n, "alpha", 0.01f)});
  } else if (!strcmp(op, "Sigmoid")) {
    r = imp_unary(c, name, NN_OP_SIGMOID, in(n, 0), 0, NULL);
  } else if (!strcmp(op, "HardSigmoid")) {
    r = imp_unary(c, name, NN_OP_HARD_SIGMOID, in(n, 0), 2, (float[]){attr_float(n, "alpha", 0.2f), attr_float(n, "beta", 0.5f)});
  } else if (!strcmp(op, "HardSwish")) {
    r = imp_unary(c, name, NN_OP_HARD_SWISH, in(n, 0), 0, NULL);
  } else if (!strcmp(op, "Tanh")) {
    r = imp_unary(c, name, NN_OP_TANH, in(n, 0), 0, NULL);
  } else if (!strcmp(op, "Exp") || !strcmp(op, "Log") || !strcmp(op, "Sqrt") || !strcmp(op, "Neg") || !strcmp(op, "Abs")) {
    nn_graph_op g = op[0] == 'E' ? NN_OP_EXP : op[0] == 'L' ? NN_OP_LOG : op[0] == 'S' ? NN_OP_SQRT : op[0] == 'N' ? NN_OP_NEG : NN_OP_ABS;
    imp_value *x = in(n, 0);
    if (x && x->is_const && x->dtype == NN_I64) return fail(n, "%s of integers is not supported", op);
    r = imp_unary(c, name, g, x, 0, NULL);
  } else if (!strcmp(op, "Clip")) {
    float lo = -INFINITY, hi = INFINITY;
    if (n->opset < 11) {
      lo = attr_float(n, "min", lo), hi = attr_float(n, "max", hi);
    } else {
      imp_value *a = opt_in(n, 1), *b = opt_in(n, 2);
      if ((a && (!a->is_const || imp_numel(a) != 1)) || (b && (!b->is_const || imp_numel(b) != 1)))
        return fail(n, "%s must be constant scalars", "min and max");
      if (a) lo = imp_float_at(a, 0);
      if (b) hi = imp_float_at(b, 0);
    }
    imp_value *x = in(n, 0);
    if (x && x->is_const && x->dtype == NN_I64) return fail(n, "%s of integers is not supported", op);
    r = imp_unary(c, name, NN_OP_CLIP, x, 2, (float[]){lo, hi});
  } else if (!strcmp(op, "Add") || !strcmp(op, "Sub") || !strcmp(op, "Mul") || !strcmp(op, "Div")) {
    nn_graph_op g = op[0] == 'A' ? NN_OP_ADD : op[0] == 'S' ? NN_OP_SUB : op[0] == 'M' ? NN_OP_MUL : NN_OP_DIV;
    imp_value *a = in(n, 0), *b = in(n, 1);
    if (a && b && (!a->is_const || !b->is_const) && ((a->is_const && a->dtype == NN_I64) || (b->is_const && b->dtype == NN_I64)))
      return fail(n, "%s on integer tensors computed at run time is not supported", op);
    r = imp_binary(c, name, g, a, b);
  } else if (!strcmp(op, "Sum")) {
    r = in(n, 0);
    for (int k = 1; r && k < n_inputs(n); k++) {
      char *tn = k == n_inputs(n) - 1 ? g_strdup(name) : imp_name(c, name, "sum");
      r = imp_binary(c, tn, NN_OP_ADD, r, in(n, k));
      g_free(tn);
    }
    if (r && n_inputs(n) == 1) r = imp_unary(c, name, NN_OP_IDENTITY, r, 0, NULL);
  } else if (!strcmp(op, "MaxPool") || !strcmp(op, "AveragePool")) {
    r = pool(n, op[1] == 'a');
  } else if (!strcmp(op, "GlobalAveragePool")) {
    imp_value *x = in(n, 0);
    if (!x) return false;
    if (x->ndim != 4) return fail(n, "%s: only 4-D inputs are supported", op);
    int id0 = imp_as(c, x, NULL);
    int64_t a[3] = {1, 2, 3};
    int id = id0 < 0 ? -1 : nn_graph_add_node(c->g, NN_OP_MEAN, name, 1, &id0, 3, a, 0, NULL);
    r = id < 0 ? NULL : imp_graph(c, name, id, NULL);
  } else if (!strcmp(op, "ReduceMean")) {
    imp_value *x = in(n, 0);
    int64_t axes[NN_MAX_DIMS], a[NN_MAX_DIMS + 1];
    int k;
    if (!x || !axes_of(n, 1, axes, &k)) return false;
    if (x->is_const) return fail(n, "%s of a constant is not supported", op);
    if (!k) for (int d = 0; d < x->ndim; d++) axes[k++] = d;
    a[0] = attr_int(n, "keepdims", 1) != 0;
    for (int j = 0; j < k; j++) a[j + 1] = axes[j] < 0 ? axes[j] + x->ndim : axes[j];
    int id0 = imp_as(c, x, NULL);
    int id = id0 < 0 ? -1 : nn_graph_add_node(c->g, NN_OP_MEAN, name, 1, &id0, k + 1, a, 0, NULL);
    r = id < 0 ? NULL : imp_graph(c, name, id, NULL);
  } else if (!strcmp(op, "Resize")) {
    r = resize(n);
  } else if (!strcmp(op, "Concat")) {
    int k = n_inputs(n);
    imp_value *xs[64];
    if (k < 1 || k > 64) return fail(n, "%s: 1 to 64 inputs", op);
    for (int j = 0; j < k; j++)
      if (!(xs[j] = in(n, j))) return false;
    r = imp_concat(c, name, xs, k, (int)attr_int(n, "axis", 0));
  } else if (!strcmp(op, "Split")) {
    imp_value *x = in(n, 0);
    int64_t axis = attr_int(n, "axis", 0), sizes[64];
    int k = (int)n->n->n_output;
    if (!x) return false;
    if (axis < 0) axis += x->ndim;
    if (axis < 0 || axis >= x->ndim || k < 1 || k > 64) return fail(n, "%s out of range", "axis or output count");
    int ns = 0;
    if (opt_in(n, 1)) {
      if (!const_ints_in(n, 1, sizes, 64, &ns)) return false;
    } else if (attr(n, "split")) {
      ns = attr_ints(n, "split", sizes, 64);
    }
    if (!ns) {
      int64_t each = (x->shape[axis] + k - 1) / k;
      for (int j = 0; j < k; j++) sizes[j] = j < k - 1 ? each : x->shape[axis] - each * (k - 1);
      ns = k;
    }
    int64_t start = 0;
    if (ns != k) return fail(n, "%s: as many sizes as outputs", "split");
    for (int j = 0; j < k; j++) {
      if (sizes[j] < 1) return fail(n, "%s: empty parts are not supported", "split");
      if (!imp_slice(c, out_name(n, j), x, (int)axis, start, start + sizes[j], 1)) return false;
      start += sizes[j];
    }
    if (start != x->shape[axis]) return fail(n, "%s: the sizes do not add up", "split");
    return true;
  } else if (!strcmp(op, "Slice")) {
    imp_value *x = in(n, 0);
    int64_t st[NN_MAX_DIMS], en[NN_MAX_DIMS], ax[NN_MAX_DIMS], sp[NN_MAX_DIMS];
    int k, ke, ka = 0, ks = 0;
    if (!x) return false;
    if (n->opset < 10) {
      k = attr_ints(n, "starts", st, NN_MAX_DIMS), ke = attr_ints(n, "ends", en, NN_MAX_DIMS), ka = attr_ints(n, "axes", ax, NN_MAX_DIMS);
    } else {
      if (!const_ints_in(n, 1, st, NN_MAX_DIMS, &k) || !const_ints_in(n, 2, en, NN_MAX_DIMS, &ke)) return false;
      if (opt_in(n, 3) && !const_ints_in(n, 3, ax, NN_MAX_DIMS, &ka)) return false;
      if (opt_in(n, 4) && !const_ints_in(n, 4, sp, NN_MAX_DIMS, &ks)) return false;
    }
    if (k < 0 || k != ke || (ka && ka != k) || (ks && ks != k)) return fail(n, "%s must have one entry per axis", "starts, ends, axes and steps");
    r = x;
    for (int j = 0; r && j < k; j++) {
      int64_t axis = ka ? ax[j] : j, step = ks ? sp[j] : 1;
      if (axis < 0) axis += x->ndim;
      if (axis < 0 || axis >= x->ndim) return fail(n, "%s out of range", "axes");
      if (step < 1) return fail(n, "%s: only positive steps are supported", "steps");
      int64_t dim = r->shape[axis], s0 = st[j], e0 = en[j];
      if (s0 < 0) s0 += dim;
      if (e0 < 0) e0 += dim;
      s0 = s0 < 0 ? 0 : s0 > dim ? dim : s0;
      e0 = e0 < 0 ? 0 : e0 > dim ? dim : e0;
      if (e0 <= s0 && !r->is_const) return fail(n, "%s: the slice would be empty", "starts/ends");
      char *tn = j == k - 1 ? g_strdup(name) : imp_name(c, name, "slice");
      r = imp_slice(c, tn, r, (int)axis, s0, e0, step);
      g_free(tn);
    }
    if (r && k == 0) r = imp_unary(c, name, NN_OP_IDENTITY, r, 0, NULL);
  } else if (!strcmp(op, "Reshape")) {
    imp_value *x = in(n, 0);
    int64_t s[NN_MAX_DIMS], known = 1;
    int k, unknown = -1;
    if (!x || !const_ints_in(n, 1, s, NN_MAX_DIMS, &k)) return false;
    if (attr_int(n, "allowzero", 0)) return fail(n, "%s=1 is not supported", "allowzero");
    for (int d = 0; d < k; d++) {
      if (s[d] == 0) s[d] = d < x->ndim ? x->shape[d] : 0;
      if (s[d] == -1 && unknown < 0) unknown = d;
      else if (s[d] < 1) return fail(n, "%s: a dimension of the new shape is not positive", "shape");
      else known *= s[d];
    }
    if (unknown >= 0) s[unknown] = known ? imp_numel(x) / known : 0;
    r = imp_reshape(c, name, x, k, s);
  } else if (!strcmp(op, "Flatten")) {
    imp_value *x = in(n, 0);
    if (!x) return false;
    int64_t axis = attr_int(n, "axis", 1), a = 1, b = 1;
    if (axis < 0) axis += x->ndim;
    if (axis < 0 || axis > x->ndim) return fail(n, "%s out of range", "axis");
    for (int d = 0; d < x->ndim; d++) *(d < axis ? &a : &b) *= x->shape[d];
    r = imp_reshape(c, name, x, 2, (int64_t[]){a, b});
  } else if (!strcmp(op, "Squeeze") || !strcmp(op, "Unsqueeze")) {
    imp_value *x = in(n, 0);
    int64_t axes[NN_MAX_DIMS], s[NN_MAX_DIMS];
    int k, nd = 0;
    if (!x || !axes_of(n, 1, axes, &k)) return false;
    bool un = op[0] == 'U';
    int out_nd = un ? x->ndim + k : x->ndim;
    bool mark[NN_MAX_DIMS + 8] = {0};
    if (out_nd > NN_MAX_DIMS) return fail(n, "%s: too many dimensions", "axes");
    for (int j = 0; j < k; j++) {
      int64_t a = axes[j] < 0 ? axes[j] + out_nd : axes[j];
      if (a < 0 || a >= out_nd || mark[a]) return fail(n, "%s out of range or repeated", "axes");
      mark[a] = true;
    }
    if (un) {
      for (int d = 0, src = 0; d < out_nd; d++) s[nd++] = mark[d] ? 1 : x->shape[src++];
    } else {
      for (int d = 0; d < x->ndim; d++) {
        bool drop = k ? mark[d] : x->shape[d] == 1;
        if (drop && x->shape[d] != 1) return fail(n, "%s: a squeezed dimension is not 1", "axes");
        if (!drop) s[nd++] = x->shape[d];
      }
    }
    r = imp_reshape(c, name, x, nd, s);
  } else if (!strcmp(op, "Transpose")) {
    imp_value *x = in(n, 0);
    int64_t p[NN_MAX_DIMS];
    int perm[NN_MAX_DIMS];
    if (!x) return false;
    int k = attr_ints(n, "perm", p, NN_MAX_DIMS);
    if (k == 0)
      for (int d = 0; d < x->ndim; d++) p[d] = x->ndim - 1 - d, k = x->ndim;
    if (k != x->ndim) return fail(n, "%s must have one entry per dimension", "perm");
    for (int d = 0; d < k; d++) perm[d] = (int)p[d];
    r = imp_transpose(c, name, x, perm);
  } else if (!strcmp(op, "Gemm")) {
    r = gemm(n);
  } else if (!strcmp(op, "MatMul")) {
    imp_value *a = in(n, 0), *b = in(n, 1);
    if (!a || !b) return false;
    if (a->ndim < 2 || b->ndim < 2) return fail(n, "%s: 1-D operands are not supported", op);
    int ia = imp_as(c, a, NULL), ib = imp_as(c, b, NULL);
    int id = ia < 0 || ib < 0 ? -1 : nn_graph_add_node(c->g, NN_OP_MATMUL, name, 2, (int[]){ia, ib}, 0, NULL, 0, NULL);
    r = id < 0 ? NULL : imp_graph(c, name, id, NULL);
  } else if (!strcmp(op, "Softmax")) {
    r = softmax(n);
  } else if (!strcmp(op, "Shape")) {
    imp_value *x = in(n, 0);
    if (!x) return false;
    int64_t s0 = attr_int(n, "start", 0), e0 = attr_int(n, "end", x->ndim);
    if (s0 < 0) s0 += x->ndim;
    if (e0 < 0) e0 += x->ndim;
    s0 = s0 < 0 ? 0 : s0 > x->ndim ? x->ndim : s0;
    e0 = e0 < s0 ? s0 : e0 > x->ndim ? x->ndim : e0;
    r = put_const(n, name, NN_I64, 1, (int64_t[]){e0 - s0}, x->shape + s0);
  } else if (!strcmp(op, "Gather")) {
    r = gather(n);
  } else if (!strcmp(op, "ConstantOfShape")) {
    int64_t s[NN_MAX_DIMS], total = 1;
    int k;
    if (!const_ints_in(n, 0, s, NN_MAX_DIMS, &k)) return false;
    for (int d = 0; d < k; d++) total *= s[d] < 0 ? 0 : s[d];
    if (total > ((int64_t)1 << 26)) return fail(n, "%s: the constant would be absurdly large", "shape");
    const Onnx__AttributeProto *a = attr(n, "value");
    char *vn = imp_name(c, name, "value");
    imp_value *v = a && a->t ? tensor_const(c, a->t, vn, NULL) : NULL;
    g_free(vn);
    bool ints = v && v->dtype == NN_I64;
    void *buf = malloc((ints ? sizeof(int64_t) : sizeof(float)) * (size_t)(total ? total : 1));
    if (!buf) return false;
    for (int64_t j = 0; j < total; j++) {
      if (ints) ((int64_t *)buf)[j] = ((int64_t *)v->data)[0];
      else ((float *)buf)[j] = v ? imp_float_at(v, 0) : 0.0f;
    }
    r = put_const(n, name, ints ? NN_I64 : NN_F32, k, s, buf);
    free(buf);
  } else if (!strcmp(op, "Cast")) {
    imp_value *x = in(n, 0);
    int64_t to = attr_int(n, "to", 1);
    bool to_float = to == ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT || to == ONNX__TENSOR_PROTO__DATA_TYPE__DOUBLE || to == ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT16;
    if (!x) return false;
    if (x->is_const) {
      int64_t k = imp_numel(x);
      void *buf = malloc((to_float ? sizeof(float) : sizeof(int64_t)) * (size_t)(k ? k : 1));
      if (!buf) return false;
      for (int64_t j = 0; j < k; j++) {
        double v = x->dtype == NN_I64 ? (double)((int64_t *)x->data)[j] : imp_float_at(x, j);
        if (to_float) ((float *)buf)[j] = (float)v;
        else ((int64_t *)buf)[j] = to == ONNX__TENSOR_PROTO__DATA_TYPE__BOOL ? v != 0 : (int64_t)v;
      }
      r = put_const(n, name, to_float ? NN_F32 : NN_I64, x->ndim, x->shape, buf);
      free(buf);
    } else if (to_float && to != ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT16) {
      r = imp_graph(c, name, x->id, x->perm);
    } else {
      return fail(n, "%s of a computed value to a non-float type is not supported", "Cast");
    }
  } else if (!strcmp(op, "Pad")) {
    imp_value *x = in(n, 0);
    char mb[32];
    const char *mode = attr_str(n, "mode", "constant", mb, sizeof mb);
    int64_t p[2 * NN_MAX_DIMS], pads[2 * NN_MAX_DIMS];
    int k;
    float value = 0;
    if (!x) return false;
    if (strcmp(mode, "constant")) return fail(n, "mode \"%s\" is not supported (constant)", mode);
    if (n->opset < 11) {
      k = attr_ints(n, "pads", p, 2 * NN_MAX_DIMS);
      value = attr_float(n, "value", 0);
    } else {
      if (!const_ints_in(n, 1, p, 2 * NN_MAX_DIMS, &k)) return false;
      imp_value *cv = opt_in(n, 2);
      if (cv && (!cv->is_const || imp_numel(cv) != 1)) return fail(n, "%s must be a constant scalar", "constant_value");
      if (cv) value = imp_float_at(cv, 0);
      if (opt_in(n, 3)) return fail(n, "the %s input is not supported", "axes");
    }
    if (k != 2 * x->ndim) return fail(n, "%s must have 2 entries per dimension", "pads");
    for (int d = 0; d < x->ndim; d++) {
      pads[2 * d] = p[d], pads[2 * d + 1] = p[d + x->ndim];
      if (p[d] < 0 || p[d + x->ndim] < 0) return fail(n, "%s: negative pads are not supported", "pads");
    }
    r = imp_pad(c, name, x, pads, value);
  } else {
    return fail(n, "%s is not supported", op);
  }
  return r != NULL;
}

/* ---- the model ---- */

static bool graph_input(imp_ctx *c, const Onnx__ValueInfoProto *vi, int input_size) {
  const Onnx__TypeProto *t = vi->type;
  if (!t || t->value_case != ONNX__TYPE_PROTO__VALUE_TENSOR_TYPE || !t->tensor_type) {
    nn_set_error("%s: input \"%s\" is not a tensor", c->what, vi->name);
    return false;
  }
  const Onnx__TypeProto__Tensor *tt = t->tensor_type;
  if (tt->elem_type != ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT) {
    nn_set_error("%s: input \"%s\" is of type %d; only float inputs are supported", c->what, vi->name, tt->elem_type);
    return false;
  }
  const Onnx__TensorShapeProto *s = tt->shape;
  if (!s || s->n_dim > NN_MAX_DIMS) {
    nn_set_error("%s: input \"%s\" has no shape or more than %d dimensions", c->what, vi->name, NN_MAX_DIMS);
    return false;
  }
  int64_t shape[NN_MAX_DIMS];
  for (size_t d = 0; d < s->n_dim; d++) {
    const Onnx__TensorShapeProto__Dimension *dim = s->dim[d];
    shape[d] = dim->value_case == ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_VALUE ? dim->dim_value : 0;
    if (shape[d] < 1) shape[d] = d == 0 ? 1 : (s->n_dim == 4 && d >= 2 ? input_size : 0);
    if (shape[d] < 1) {
      nn_set_error("%s: dimension %zu of input \"%s\" is unknown; give an input size", c->what, d, vi->name);
      return false;
    }
  }
  int id = nn_graph_add_input(c->g, vi->name, (int)s->n_dim, shape);
  return id >= 0 && imp_graph(c, vi->name, id, NULL);
}

static bool import_model(const Onnx__ModelProto *m, const char *what, const char *dir, int input_size,
                         const e2e_onnx_binding *bind, int n_bind, nn_graph *g) {
  imp_ctx c;
  imp_init(&c, g, what);
  bool ok = false;
  int opset = -1;
  for (size_t i = 0; i < m->n_opset_import; i++) {
    const char *d = m->opset_import[i]->domain;
    if (!d || !*d || !strcmp(d, "ai.onnx")) opset = (int)m->opset_import[i]->version;
  }
  const Onnx__GraphProto *gp = m->graph;
  if (!gp) {
    nn_set_error("%s: the model has no graph", what);
    goto done;
  }
  if (opset < 7 || opset > 18) {
    nn_set_error("%s: opset %d is not supported (11 to 17; 7 to 18 are tried)", what, opset);
    goto done;
  }
  for (size_t i = 0; i < gp->n_initializer; i++)
    if (!gp->initializer[i]->name || !tensor_const(&c, gp->initializer[i], gp->initializer[i]->name, dir)) goto done;
  for (int i = 0; i < n_bind; i++) {
    Onnx__TensorProto *t = onnx__tensor_proto__unpack(NULL, bind[i].size, bind[i].tensor_pb);
    imp_value *v = t ? tensor_const(&c, t, bind[i].name, NULL) : NULL;
    if (t) onnx__tensor_proto__free_unpacked(t, NULL);
    if (!v) {
      if (!t) nn_set_error("%s: the value bound to \"%s\" is not a TensorProto", what, bind[i].name);
      goto done;
    }
  }
  for (size_t i = 0; i < gp->n_input; i++) {
    if (!gp->input[i]->name) goto done;
    if (imp_get(&c, gp->input[i]->name)) continue; /* an initialiser listed as an input, or bound */
    if (!graph_input(&c, gp->input[i], input_size)) goto done;
  }
  if (gp->n_sparse_initializer) {
    nn_set_error("%s: sparse initialisers are not supported", what);
    goto done;
  }
  /* ONNX requires nodes in topological order; a node reading a later value is refused as undefined */
  for (size_t i = 0; i < gp->n_node; i++) {
    const Onnx__NodeProto *np = gp->node[i];
    ox_node n = {&c, np, np->name && *np->name ? np->name : (np->n_output ? np->output[0] : "?"), np->op_type ? np->op_type : "?", opset, dir};
    for (size_t k = 0; k < np->n_output; k++)
      if (*np->output[k] && imp_get(&c, np->output[k])) {
        imp_fail(&c, n.name, n.op, "output \"%s\" is defined twice (or the graph has a cycle)", np->output[k]);
        goto done;
      }
    if (!convert(&n)) goto done;
  }
  int outs[16];
  if (gp->n_output < 1 || gp->n_output > 16) {
    nn_set_error("%s: %zu outputs (1 to 16)", what, gp->n_output);
    goto done;
  }
  for (size_t i = 0; i < gp->n_output; i++) {
    imp_value *v = imp_get(&c, gp->output[i]->name);
    if (!v) {
      nn_set_error("%s: output \"%s\" is never produced", what, gp->output[i]->name ? gp->output[i]->name : "?");
      goto done;
    }
    if (v->is_const) {
      nn_set_error("%s: output \"%s\" is a constant (not supported)", what, gp->output[i]->name);
      goto done;
    }
    if ((outs[i] = imp_as(&c, v, NULL)) < 0) goto done;
  }
  ok = nn_graph_set_outputs(g, (int)gp->n_output, outs) && nn_graph_simplify(g, true);
done:
  imp_free(&c);
  return ok;
}

/* meta (optional): the model's metadata_props, newly allocated (e2e_import_free_meta); its "input_size"
 * entry stands for input_size when that is 0. */
static bool import_bytes(const void *data, size_t size, const char *what, const char *dir, int input_size,
                         const e2e_onnx_binding *bind, int n_bind, nn_graph *g, nn_kv **meta, int *n_meta) {
  nn_graph_init(g);
  if (size > MAX_MODEL_BYTES) {
    nn_set_error("%s: %zu bytes is more than an ONNX model may have here", what, size);
    return false;
  }
  Onnx__ModelProto *m = onnx__model_proto__unpack(NULL, size, data);
  if (!m) {
    nn_set_error("%s: not an ONNX model (the protobuf does not parse: truncated or corrupt)", what);
    return false;
  }
  if (meta) {
    *n_meta = 0;
    *meta = calloc(m->n_metadata_props + 1, sizeof **meta);
    for (size_t i = 0; *meta && i < m->n_metadata_props; i++) {
      const Onnx__StringStringEntryProto *e = m->metadata_props[i];
      if (!e->key || !e->value) continue;
      (*meta)[*n_meta] = (nn_kv){g_strdup(e->key), g_strdup(e->value)};
      if (!strcmp(e->key, "input_size") && !input_size) input_size = atoi(e->value);
      (*n_meta)++;
    }
  }
  bool ok = import_model(m, what, dir, input_size, bind, n_bind, g);
  onnx__model_proto__free_unpacked(m, NULL);
  if (!ok) {
    nn_graph_free(g);
    if (meta) e2e_import_free_meta(*meta, *n_meta), *meta = NULL, *n_meta = 0;
  }
  return ok;
}

void e2e_import_free_meta(nn_kv *meta, int n) {
  for (int i = 0; meta && i < n; i++) g_free((char *)meta[i].key), g_free((char *)meta[i].value);
  free(meta);
}

bool e2e_import_onnx_memory(const void *data, size_t size, const char *name, int input_size, nn_graph *g) {
  return import_bytes(data, size, name, NULL, input_size, NULL, 0, g, NULL, NULL);
}

bool e2e_import_onnx_described(const char *path, int input_size, nn_graph *g, nn_kv **meta, int *n_meta) {
  char *data = NULL;
  gsize len = 0;
  GError *err = NULL;
  nn_graph_init(g);
  if (!g_file_get_contents(path, &data, &len, &err)) {
    nn_set_error("%s: %s", path, err->message);
    g_error_free(err);
    return false;
  }
  char *dir = g_path_get_dirname(path);
  bool ok = import_bytes(data, len, path, dir, input_size, NULL, 0, g, meta, n_meta);
  g_free(dir);
  g_free(data);
  return ok;
}

bool e2e_import_onnx(const char *path, int input_size, nn_graph *g) {
  return e2e_import_onnx_described(path, input_size, g, NULL, NULL);
}

nn_tensor *e2e_onnx_tensor(const void *pb, size_t size, char **name, bool *is_float) {
  Onnx__TensorProto *t = onnx__tensor_proto__unpack(NULL, size, pb);
  if (!t) {
    nn_set_error("not a TensorProto");
    return NULL;
  }
  nn_graph g;
  nn_graph_init(&g);
  imp_ctx c;
  imp_init(&c, &g, "tensor");
  imp_value *v = tensor_const(&c, t, "t", NULL);
  nn_tensor *out = NULL;
  if (v) {
    *is_float = v->dtype == NN_F32;
    out = nn_tensor_new(NN_F32, v->ndim, v->shape);
    for (int64_t k = 0; out && k < imp_numel(v); k++) nn_f32(out)[k] = imp_float_at(v, k);
    if (name) *name = g_strdup(t->name ? t->name : "");
  }
  imp_free(&c);
  nn_graph_free(&g);
  onnx__tensor_proto__free_unpacked(t, NULL);
  return out;
}

bool e2e_import_onnx_bound(const void *data, size_t size, const char *name, int input_size, const e2e_onnx_binding *bind,
                           int n_bind, nn_graph *g) {
  return import_bytes(data, size, name, NULL, input_size, bind, n_bind, g, NULL, NULL);
}
