/* TensorFlow.js graph models (model.json + binary weight shards) onto nncore's graph runtime.
 *
 * TensorFlow's convolutions and pools are NHWC; ours are NCHW. Rather than a transpose around every
 * op, each value carries the permutation it is stored in (builder.h): a TF Transpose costs nothing, a
 * Conv2D reads an NCHW view of its input and leaves an NCHW result that the next ops see as NHWC. In a
 * graph exported from PyTorch through ONNX (Transpose, Conv2D, Transpose, ... as converters write them)
 * every transpose then cancels. */
#include <json-glib/json-glib.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "builder.h"
#include "e2e/import.h"

#define MAX_WEIGHT_BYTES ((size_t)1 << 30)

typedef struct {
  imp_ctx *c;
  JsonObject *node;
  const char *name, *op;
  const char *in[64];
  int n_in;
} tf_node;

/* A member of o as a string or a number, or the default: json-glib's getters warn on a member of another
 * type, and a hostile file must only ever be refused. */
static const char *str_member(JsonObject *o, const char *key) {
  JsonNode *n = o && json_object_has_member(o, key) ? json_object_get_member(o, key) : NULL;
  return n && JSON_NODE_HOLDS_VALUE(n) && json_node_get_value_type(n) == G_TYPE_STRING ? json_node_get_string(n) : NULL;
}

static double num_member(JsonObject *o, const char *key, double dflt) {
  JsonNode *n = o && json_object_has_member(o, key) ? json_object_get_member(o, key) : NULL;
  GType t = n && JSON_NODE_HOLDS_VALUE(n) ? json_node_get_value_type(n) : G_TYPE_INVALID;
  return t == G_TYPE_DOUBLE || t == G_TYPE_INT64 ? json_node_get_double(n) : dflt;
}

/* ---- attributes ---- */

static JsonObject *attr(const tf_node *n, const char *key) {
  JsonNode *a = json_object_has_member(n->node, "attr") ? json_object_get_member(n->node, "attr") : NULL;
  if (!a || !JSON_NODE_HOLDS_OBJECT(a)) return NULL;
  JsonNode *v = json_object_has_member(json_node_get_object(a), key) ? json_object_get_member(json_node_get_object(a), key) : NULL;
  return v && JSON_NODE_HOLDS_OBJECT(v) ? json_node_get_object(v) : NULL;
}

static int64_t node_int(JsonNode *v) {
  if (!v || !JSON_NODE_HOLDS_VALUE(v)) return 0;
  if (json_node_get_value_type(v) == G_TYPE_STRING) return g_ascii_strtoll(json_node_get_string(v), NULL, 10);
  if (json_node_get_value_type(v) == G_TYPE_INT64) return json_node_get_int(v);
  double d = json_node_get_double(v);
  /* a number no int64 holds (1e300, inf) becomes one every caller refuses, not undefined behaviour */
  return isfinite(d) && fabs(d) < 9.2e18 ? (int64_t)d : INT64_MIN;
}

static float attr_float(const tf_node *n, const char *key, float dflt) {
  JsonObject *a = attr(n, key);
  JsonNode *f = a && json_object_has_member(a, "f") ? json_object_get_member(a, "f") : NULL;
  if (!f || !JSON_NODE_HOLDS_VALUE(f)) return dflt;
  GType t = json_node_get_value_type(f);
  return t == G_TYPE_STRING ? (float)g_ascii_strtod(json_node_get_string(f), NULL) : (float)json_node_get_double(f);
}

static bool attr_bool(const tf_node *n, const char *key) {
  JsonObject *a = attr(n, key);
  JsonNode *b = a && json_object_has_member(a, "b") ? json_object_get_member(a, "b") : NULL;
  return b && JSON_NODE_HOLDS_VALUE(b) && json_node_get_value_type(b) == G_TYPE_BOOLEAN && json_node_get_boolean(b);
}

/* A string attribute ("s", base64 in model.json), newly allocated; NULL when absent. */
static char *attr_string(const tf_node *n, const char *key) {
  JsonObject *a = attr(n, key);
  JsonNode *s = a && json_object_has_member(a, "s") ? json_object_get_member(a, "s") : NULL;
  if (!s || !JSON_NODE_HOLDS_VALUE(s) || json_node_get_value_type(s) != G_TYPE_STRING) return NULL;
  gsize len;
  guchar *raw = g_base64_decode(json_node_get_string(s), &len);
  char *out = g_strndup((const char *)raw, len);
  g_free(raw);
  return out;
}

static int attr_ints(const tf_node *n, const char *key, int64_t *out, int max) {
  JsonObject *a = attr(n, key);
  JsonNode *l = a && json_object_has_member(a, "list") ? json_object_get_member(a, "list") : NULL;
  if (!l || !JSON_NODE_HOLDS_OBJECT(l)) return 0;
  JsonNode *i = json_object_has_member(json_node_get_object(l), "i") ? json_object_get_member(json_node_get_object(l), "i") : NULL;
  if (!i || !JSON_NODE_HOLDS_ARRAY(i)) return 0;
  JsonArray *arr = json_node_get_array(i);
  int n_out = (int)json_array_get_length(arr);
  if (n_out > max) return -1;
  for (int k = 0; k < n_out; k++) out[k] = node_int(json_array_get_element(arr, (guint)k));
  return n_out;
}

static imp_value *input(const tf_node *n, int k) {
  if (k >= n->n_in) {
    imp_fail(n->c, n->name, n->op, "needs input %d", k);
    return NULL;
  }
  imp_value *v = imp_get(n->c, n->in[k]);
  if (!v) imp_fail(n->c, n->name, n->op, "input \"%s\" is not defined", n->in[k]);
  return v;
}

static bool const_ints(const tf_node *n, int k, int64_t *out, int max, int *count) {
  imp_value *v = input(n, k);
  if (!v) return false;
  if (!imp_ints(v, out, max, count)) return imp_fail(n->c, n->name, n->op, "input %d must be a constant of at most %d values", k, max);
  return true;
}

/* ---- NHWC windows ---- */

/* TensorFlow's padding for one spatial dimension: VALID, SAME (the extra pixel after), EXPLICIT. */
static bool tf_pads(const tf_node *n, const char *padding, int64_t size, int64_t k, int64_t s, int64_t dil,
                    const int64_t *explicit_pads, int dim, int64_t *before, int64_t *after) {
  if (!strcmp(padding, "VALID")) {
    *before = *after = 0;
  } else if (!strcmp(padding, "SAME")) {
    int64_t out = (size + s - 1) / s, span = (k - 1) * dil + 1, total = (out - 1) * s + span - size;
    if (total < 0) total = 0;
    *before = total / 2, *after = total - total / 2;
  } else if (!strcmp(padding, "EXPLICIT") && explicit_pads) {
    *before = explicit_pads[2 * dim], *after = explicit_pads[2 * dim + 1];
  } else {
    return imp_fail(n->c, n->name, n->op, "padding \"%s\" is not supported", padding);
  }
  return true;
}

static const int NHWC_AS_NCHW[4] = {0, 2, 3, 1}; /* NCHW stored, NHWC seen: source = permute(stored, this) */

/* Conv2D / DepthwiseConv2dNative / MaxPool / AvgPool in NHWC or NCHW. */
static imp_value *window_op(const tf_node *n, bool conv, bool depthwise, bool max) {
  imp_ctx *c = n->c;
  imp_value *x = input(n, 0);
  if (!x) return NULL;
  char *fmt = attr_string(n, "data_format"), *padding = attr_string(n, "padding");
  bool nchw = fmt && !strcmp(fmt, "NCHW");
  g_free(fmt);
  int64_t strides[4] = {1, 1, 1, 1}, dil[4] = {1, 1, 1, 1}, ksize[4] = {1, 1, 1, 1}, expl[8] = {0};
  bool ok = x->ndim == 4 && padding && attr_ints(n, "strides", strides, 4) >= 0 && attr_ints(n, "dilations", dil, 4) >= 0 &&
            attr_ints(n, "ksize", ksize, 4) >= 0 && attr_ints(n, "explicit_paddings", expl, 8) >= 0;
  if (!ok) {
    g_free(padding);
    imp_fail(c, n->name, n->op, "needs a 4-D input and valid strides, dilations, kernel and padding");
    return NULL;
  }
  int hd = nchw ? 2 : 1, wd = nchw ? 3 : 2;
  int64_t sh = strides[hd], sw = strides[wd], dh = dil[hd], dw = dil[wd], kh, kw, ep[4] = {expl[2 * hd], expl[2 * hd + 1], expl[2 * wd], expl[2 * wd + 1]};
  bool sane = sh >= 1 && sw >= 1 && dh >= 1 && dw >= 1 && sh <= 65536 && sw <= 65536 && dh <= 65536 && dw <= 65536;
  for (int k = 0; k < 4; k++) sane = sane && ep[k] >= 0 && ep[k] <= 65536;
  if (!sane) {
    g_free(padding);
    imp_fail(c, n->name, n->op, "strides and dilations must be 1..65536 and explicit paddings 0..65536");
    return NULL;
  }
  int w_id = -1;
  int64_t oc = 0, groups = 1;
  if (conv) {
    imp_value *w = input(n, 1);
    if (!w || !w->is_const || w->ndim != 4) {
      g_free(padding);
      imp_fail(c, n->name, n->op, "the filter must be a constant [KH, KW, IN, OUT]");
      return NULL;
    }
    kh = w->shape[0], kw = w->shape[1];
    /* HWIO -> OIHW; depthwise HWIM -> (I*M) 1 H W with groups = I */
    int64_t in_c = w->shape[2], m = w->shape[3];
    oc = depthwise ? in_c * m : m;
    groups = depthwise ? in_c : 1;
    int64_t shape[4] = {oc, depthwise ? 1 : in_c, kh, kw};
    nn_tensor *t = nn_tensor_new(NN_F32, 4, shape);
    if (!t) {
      g_free(padding);
      return NULL;
    }
    float *o = nn_f32(t);
    for (int64_t i = 0; i < kh; i++)
      for (int64_t j = 0; j < kw; j++)
        for (int64_t ci = 0; ci < in_c; ci++)
          for (int64_t mo = 0; mo < m; mo++) {
            float v = imp_float_at(w, ((i * kw + j) * in_c + ci) * m + mo);
            if (depthwise) o[((ci * m + mo) * kh + i) * kw + j] = v;
            else o[((mo * in_c + ci) * kh + i) * kw + j] = v;
          }
    char *wn = imp_name(c, n->in[1], "oihw");
    w_id = nn_graph_add_const(c->g, wn, t, true);
    g_free(wn);
    if (w_id < 0) {
      g_free(padding);
      return NULL;
    }
  } else {
    kh = ksize[hd], kw = ksize[wd];
    if (kh < 1 || kw < 1 || kh > 65536 || kw > 65536) {
      g_free(padding);
      imp_fail(c, n->name, n->op, "the window must be 1..65536 pixels on each side");
      return NULL;
    }
  }
  int64_t H = x->shape[hd], W = x->shape[wd], pt, pb, pl, pr;
  ok = tf_pads(n, padding, H, kh, sh, dh, ep, 0, &pt, &pb) && tf_pads(n, padding, W, kw, sw, dw, ep, 1, &pl, &pr);
  g_free(padding);
  if (!ok) return NULL;
  const int *perm = nchw ? NULL : NHWC_AS_NCHW;
  int in = imp_as(c, x, perm);
  if (in < 0) return NULL;
  int id;
  if (conv) {
    if (pt != pb || pl != pr) { /* asymmetric (SAME with an odd total): pad first */
      int64_t p[8] = {0, 0, 0, 0, pt, pb, pl, pr};
      char *pn = imp_name(c, n->name, "pad");
      float zero = 0;
      in = nn_graph_add_node(c->g, NN_OP_PAD, pn, 1, &in, 8, p, 1, &zero);
      g_free(pn);
      pt = pb = pl = pr = 0;
      if (in < 0) return NULL;
    }
    int64_t a[7] = {sh, sw, pt, pl, dh, dw, groups};
    id = nn_graph_add_node(c->g, NN_OP_CONV, n->name, 2, (int[]){in, w_id}, 7, a, 0, NULL);
  } else {
    /* TF's average pool never counts padding */
    int64_t a[9] = {kh, kw, sh, sw, pt, pl, pb, pr, 0};
    id = nn_graph_add_node(c->g, max ? NN_OP_MAX_POOL : NN_OP_AVG_POOL, n->name, 1, &in, max ? 8 : 9, a, 0, NULL);
  }
  return id < 0 ? NULL : imp_graph(c, n->name, id, perm);
}

static imp_value *resize(const tf_node *n, bool bilinear) {
  imp_value *x = input(n, 0);
  int64_t size[2];
  int k;
  if (!x || !const_ints(n, 1, size, 2, &k)) return NULL;
  if (x->ndim != 4 || k != 2) {
    imp_fail(n->c, n->name, n->op, "needs a 4-D input and a size of 2");
    return NULL;
  }
  if (attr_bool(n, "align_corners")) {
    imp_fail(n->c, n->name, n->op, "align_corners=true is not supported");
    return NULL;
  }
  bool half = attr_bool(n, "half_pixel_centers");
  int64_t H = x->shape[1], W = x->shape[2];
  /* bilinear: half-pixel centres only; nearest: TF's floor rule, or half-pixel on whole upscales */
  if (bilinear ? !half : half && (size[0] % H || size[1] % W)) {
    imp_fail(n->c, n->name, n->op, "half_pixel_centers=%s is not supported here", half ? "true" : "false");
    return NULL;
  }
  int in = imp_as(n->c, x, NHWC_AS_NCHW);
  int64_t a[3] = {size[0], size[1], bilinear};
  int id = in < 0 ? -1 : nn_graph_add_node(n->c->g, NN_OP_RESIZE, n->name, 1, &in, 3, a, 0, NULL);
  return id < 0 ? NULL : imp_graph(n->c, n->name, id, NHWC_AS_NCHW);
}

static imp_value *alias(imp_ctx *c, const char *name, imp_value *x) {
  if (!x) return NULL;
  if (x->is_const) return imp_const(c, name, x->dtype, x->ndim, x->shape, x->data);
  return imp_graph(c, name, x->id, x->perm);
}

static bool split(const tf_node *n, bool v) {
  imp_value *x = input(n, v ? 0 : 1);
  int64_t axis, sizes[64];
  int k, ns;
  if (!x || !const_ints(n, v ? 2 : 0, &axis, 1, &k)) return false;
  if (axis < 0) axis += x->ndim;
  if (axis < 0 || axis >= x->ndim) return imp_fail(n->c, n->name, n->op, "axis out of range");
  if (v) {
    if (!const_ints(n, 1, sizes, 64, &ns)) return false;
  } else {
    JsonObject *a = attr(n, "num_split");
    ns = a && json_object_has_member(a, "i") ? (int)node_int(json_object_get_member(a, "i")) : 0;
    if (ns < 1 || ns > 64 || x->shape[axis] % ns) return imp_fail(n->c, n->name, n->op, "num_split %d does not divide %lld", ns, (long long)x->shape[axis]);
    for (int j = 0; j < ns; j++) sizes[j] = x->shape[axis] / ns;
  }
  int64_t total = 0, unknown = -1;
  for (int j = 0; j < ns; j++) {
    if (sizes[j] == -1) unknown = j;
    else total += sizes[j];
  }
  if (unknown >= 0) sizes[unknown] = x->shape[axis] - total, total = x->shape[axis];
  if (total != x->shape[axis]) return imp_fail(n->c, n->name, n->op, "split sizes add up to %lld, not %lld", (long long)total, (long long)x->shape[axis]);
  int64_t start = 0;
  for (int j = 0; j < ns; j++) {
    char *name = j ? g_strdup_printf("%s:%d", n->name, j) : g_strdup(n->name);
    imp_value *s = imp_slice(n->c, name, x, (int)axis, start, start + sizes[j], 1);
    g_free(name);
    if (!s) return false;
    start += sizes[j];
  }
  return true;
}

/* One node of the graph; false with a message. */
static bool convert(const tf_node *n, int input_size) {
  imp_ctx *c = n->c;
  const char *op = n->op;
  imp_value *r = NULL;
  if (!strcmp(op, "Const")) {
    if (!imp_get(c, n->name)) return imp_fail(c, n->name, op, "its value is not in the weights manifest");
    return true;
  }
  if (!strcmp(op, "Placeholder")) {
    JsonObject *a = attr(n, "shape");
    JsonNode *sh = a && json_object_has_member(a, "shape") ? json_object_get_member(a, "shape") : NULL;
    JsonNode *dims = sh && JSON_NODE_HOLDS_OBJECT(sh) && json_object_has_member(json_node_get_object(sh), "dim")
                         ? json_object_get_member(json_node_get_object(sh), "dim") : NULL;
    if (!dims || !JSON_NODE_HOLDS_ARRAY(dims) || json_array_get_length(json_node_get_array(dims)) > NN_MAX_DIMS)
      return imp_fail(c, n->name, op, "the input needs a known rank");
    JsonArray *d = json_node_get_array(dims);
    int64_t shape[NN_MAX_DIMS];
    int nd = (int)json_array_get_length(d);
    for (int k = 0; k < nd; k++) {
      JsonNode *e = json_array_get_element(d, (guint)k);
      JsonNode *sz = JSON_NODE_HOLDS_OBJECT(e) && json_object_has_member(json_node_get_object(e), "size") ? json_object_get_member(json_node_get_object(e), "size") : NULL;
      shape[k] = node_int(sz);
      if (shape[k] < 1) shape[k] = k == 0 ? 1 : input_size;
      if (shape[k] < 1) return imp_fail(c, n->name, op, "dimension %d of the input is unknown; give an input size", k);
    }
    int id = nn_graph_add_input(c->g, n->name, nd, shape);
    return id >= 0 && imp_graph(c, n->name, id, NULL);
  }
  if (!strcmp(op, "Identity") || !strcmp(op, "StopGradient") || !strcmp(op, "Snapshot")) {
    r = alias(c, n->name, input(n, 0));
  } else if (!strcmp(op, "Transpose")) {
    int64_t p[NN_MAX_DIMS];
    int k, perm[NN_MAX_DIMS];
    imp_value *x = input(n, 0);
    if (!x || !const_ints(n, 1, p, NN_MAX_DIMS, &k)) return false;
    if (k != x->ndim) return imp_fail(c, n->name, op, "the permutation has %d entries for %d dimensions", k, x->ndim);
    for (int d = 0; d < k; d++) perm[d] = (int)p[d];
    r = imp_transpose(c, n->name, x, perm);
  } else if (!strcmp(op, "Conv2D") || !strcmp(op, "DepthwiseConv2dNative")) {
    r = window_op(n, true, op[0] == 'D', false);
  } else if (!strcmp(op, "MaxPool") || !strcmp(op, "AvgPool")) {
    r = window_op(n, false, false, op[0] == 'M');
  } else if (!strcmp(op, "Add") || !strcmp(op, "AddV2") || !strcmp(op, "BiasAdd")) {
    r = imp_binary(c, n->name, NN_OP_ADD, input(n, 0), input(n, 1));
  } else if (!strcmp(op, "Sub")) {
    r = imp_binary(c, n->name, NN_OP_SUB, input(n, 0), input(n, 1));
  } else if (!strcmp(op, "Mul")) {
    r = imp_binary(c, n->name, NN_OP_MUL, input(n, 0), input(n, 1));
  } else if (!strcmp(op, "RealDiv") || !strcmp(op, "Div")) {
    r = imp_binary(c, n->name, NN_OP_DIV, input(n, 0), input(n, 1));
  } else if (!strcmp(op, "Relu")) {
    r = imp_unary(c, n->name, NN_OP_RELU, input(n, 0), 0, NULL);
  } else if (!strcmp(op, "Relu6")) {
    r = imp_unary(c, n->name, NN_OP_CLIP, input(n, 0), 2, (float[]){0, 6});
  } else if (!strcmp(op, "LeakyRelu")) {
    r = imp_unary(c, n->name, NN_OP_LEAKY_RELU, input(n, 0), 1, (float[]){attr_float(n, "alpha", 0.2f)});
  } else if (!strcmp(op, "Sigmoid")) {
    r = imp_unary(c, n->name, NN_OP_SIGMOID, input(n, 0), 0, NULL);
  } else if (!strcmp(op, "Tanh")) {
    r = imp_unary(c, n->name, NN_OP_TANH, input(n, 0), 0, NULL);
  } else if (!strcmp(op, "Exp")) {
    r = imp_unary(c, n->name, NN_OP_EXP, input(n, 0), 0, NULL);
  } else if (!strcmp(op, "Pad") || !strcmp(op, "PadV2")) {
    imp_value *x = input(n, 0);
    int64_t p[2 * NN_MAX_DIMS];
    int k;
    if (!x || !const_ints(n, 1, p, 2 * NN_MAX_DIMS, &k)) return false;
    if (k != 2 * x->ndim) return imp_fail(c, n->name, op, "paddings must be [%d, 2]", x->ndim);
    float value = 0;
    if (op[3] == 'V') {
      imp_value *cv = input(n, 2);
      if (!cv || !cv->is_const || imp_numel(cv) != 1) return imp_fail(c, n->name, op, "the constant value must be a scalar constant");
      value = imp_float_at(cv, 0);
    }
    r = imp_pad(c, n->name, x, p, value);
  } else if (!strcmp(op, "ConcatV2")) {
    int64_t axis;
    int k;
    imp_value *xs[64];
    if (n->n_in < 2 || n->n_in > 65 || !const_ints(n, n->n_in - 1, &axis, 1, &k)) return imp_fail(c, n->name, op, "needs 1 to 64 inputs and a constant axis");
    for (int j = 0; j < n->n_in - 1; j++)
      if (!(xs[j] = input(n, j))) return false;
    r = imp_concat(c, n->name, xs, n->n_in - 1, (int)axis);
  } else if (!strcmp(op, "ResizeBilinear") || !strcmp(op, "ResizeNearestNeighbor")) {
    r = resize(n, op[6] == 'B');
  } else if (!strcmp(op, "Reshape")) {
    imp_value *x = input(n, 0);
    int64_t s[NN_MAX_DIMS], known = 1;
    int k, unknown = -1;
    if (!x || !const_ints(n, 1, s, NN_MAX_DIMS, &k)) return false;
    for (int d = 0; d < k; d++) {
      if (s[d] == -1 && unknown < 0) unknown = d;
      else if (s[d] < 1) return imp_fail(c, n->name, op, "dimension %d of the new shape is %lld", d, (long long)s[d]);
      else known *= s[d];
    }
    if (unknown >= 0) s[unknown] = known ? imp_numel(x) / known : 0;
    r = imp_reshape(c, n->name, x, k, s);
  } else if (!strcmp(op, "SplitV") || !strcmp(op, "Split")) {
    return split(n, op[5] == 'V');
  } else if (!strcmp(op, "SparseToDense")) {
    /* a constant (converters write shapes this way): fill, then scatter */
    imp_value *idx = input(n, 0), *shape = input(n, 1), *vals = input(n, 2), *dflt = input(n, 3);
    int64_t s[NN_MAX_DIMS], total = 1;
    int k;
    if (!idx || !vals || !dflt || !shape || !idx->is_const || !vals->is_const || !dflt->is_const || !const_ints(n, 1, s, NN_MAX_DIMS, &k) || k != 1)
      return imp_fail(c, n->name, op, "only constant 1-D inputs are supported");
    total = s[0];
    if (total < 0 || total > 4096) return imp_fail(c, n->name, op, "output size %lld out of range", (long long)total);
    int64_t out[4096], n_idx = imp_numel(idx);
    for (int64_t j = 0; j < total; j++) out[j] = (int64_t)imp_float_at(dflt, 0);
    for (int64_t j = 0; j < n_idx; j++) {
      int64_t at = (int64_t)imp_float_at(idx, j);
      if (at < 0 || at >= total) return imp_fail(c, n->name, op, "index %lld is outside 0..%lld", (long long)at, (long long)total - 1);
      out[at] = (int64_t)imp_float_at(vals, imp_numel(vals) == 1 ? 0 : j);
    }
    r = imp_const(c, n->name, NN_I64, 1, s, out);
  } else if (!strcmp(op, "Cast")) {
    imp_value *x = input(n, 0);
    if (!x) return false;
    if (!x->is_const) return imp_fail(c, n->name, op, "casts of computed values are not supported");
    r = alias(c, n->name, x);
  } else if (!strcmp(op, "MatMul")) {
    imp_value *a = input(n, 0), *b = input(n, 1);
    if (!a || !b) return false;
    char *tn;
    if (attr_bool(n, "transpose_a")) a = imp_transpose(c, tn = imp_name(c, n->name, "ta"), a, (int[]){1, 0}), g_free(tn);
    if (attr_bool(n, "transpose_b")) b = imp_transpose(c, tn = imp_name(c, n->name, "tb"), b, (int[]){1, 0}), g_free(tn);
    int ia = a ? imp_as(c, a, NULL) : -1, ib = b ? imp_as(c, b, NULL) : -1;
    int id = ia < 0 || ib < 0 ? -1 : nn_graph_add_node(c->g, NN_OP_MATMUL, n->name, 2, (int[]){ia, ib}, 0, NULL, 0, NULL);
    r = id < 0 ? NULL : imp_graph(c, n->name, id, NULL);
  } else if (!strcmp(op, "Softmax")) {
    imp_value *x = input(n, 0);
    if (!x) return false;
    int in = imp_as(c, x, x->perm);
    int64_t axis = x->perm[x->ndim - 1];
    int id = in < 0 ? -1 : nn_graph_add_node(c->g, NN_OP_SOFTMAX, n->name, 1, &in, 1, &axis, 0, NULL);
    r = id < 0 ? NULL : imp_graph(c, n->name, id, x->perm);
  } else {
    return imp_fail(c, n->name, op, "this TensorFlow op is not supported");
  }
  return r != NULL;
}

/* ---- weights ---- */

static bool read_weights(imp_ctx *c, JsonArray *manifest, const char *dir) {
  for (guint gi = 0; gi < json_array_get_length(manifest); gi++) {
    JsonNode *gn = json_array_get_element(manifest, gi);
    JsonObject *group = JSON_NODE_HOLDS_OBJECT(gn) ? json_node_get_object(gn) : NULL;
    JsonNode *pn = group && json_object_has_member(group, "paths") ? json_object_get_member(group, "paths") : NULL;
    JsonNode *wn = group && json_object_has_member(group, "weights") ? json_object_get_member(group, "weights") : NULL;
    if (!pn || !wn || !JSON_NODE_HOLDS_ARRAY(pn) || !JSON_NODE_HOLDS_ARRAY(wn)) {
      nn_set_error("%s: weights manifest group %u is malformed", c->what, gi);
      return false;
    }
    /* the shards, in order, are one byte stream */
    GByteArray *bytes = g_byte_array_new();
    JsonArray *paths = json_node_get_array(pn);
    bool ok = true;
    for (guint k = 0; k < json_array_get_length(paths) && ok; k++) {
      JsonNode *p = json_array_get_element(paths, k);
      const char *rel = JSON_NODE_HOLDS_VALUE(p) && json_node_get_value_type(p) == G_TYPE_STRING ? json_node_get_string(p) : NULL;
      if (!rel || !*rel || strchr(rel, '/') || strchr(rel, '\\') || !strcmp(rel, "..") || !strcmp(rel, ".")) {
        nn_set_error("%s: weight shard \"%s\" is not a file in the model's own folder", c->what, rel ? rel : "(none)");
        ok = false;
        break;
      }
      char *path = g_build_filename(dir, rel, NULL), *data = NULL;
      gsize len = 0;
      GError *err = NULL;
      if (!g_file_get_contents(path, &data, &len, &err)) {
        nn_set_error("%s: cannot read weight shard %s: %s", c->what, path, err->message);
        g_error_free(err);
        ok = false;
      } else if (bytes->len + len > MAX_WEIGHT_BYTES) {
        nn_set_error("%s: the weight shards hold more than %zu bytes", c->what, MAX_WEIGHT_BYTES);
        ok = false;
      } else {
        g_byte_array_append(bytes, (const guint8 *)data, (guint)len);
      }
      g_free(data);
      g_free(path);
    }
    JsonArray *ws = json_node_get_array(wn);
    size_t off = 0;
    for (guint k = 0; k < json_array_get_length(ws) && ok; k++) {
      JsonNode *e = json_array_get_element(ws, k);
      JsonObject *w = JSON_NODE_HOLDS_OBJECT(e) ? json_node_get_object(e) : NULL;
      const char *name = str_member(w, "name");
      const char *dtype = str_member(w, "dtype");
      JsonNode *sn = w && json_object_has_member(w, "shape") ? json_object_get_member(w, "shape") : NULL;
      if (!name || !dtype || !sn || !JSON_NODE_HOLDS_ARRAY(sn) || json_array_get_length(json_node_get_array(sn)) > NN_MAX_DIMS) {
        nn_set_error("%s: weight %u is malformed", c->what, k);
        ok = false;
        break;
      }
      JsonArray *sa = json_node_get_array(sn);
      int nd = (int)json_array_get_length(sa);
      int64_t shape[NN_MAX_DIMS], count = 1;
      for (int d = 0; d < nd; d++) {
        shape[d] = node_int(json_array_get_element(sa, (guint)d));
        if (shape[d] < 0 || shape[d] > ((int64_t)1 << 30) || (count *= shape[d]) > ((int64_t)1 << 30)) {
          nn_set_error("%s: weight \"%s\" has an absurd shape", c->what, name);
          ok = false;
          break;
        }
      }
      if (!ok) break;
      JsonNode *qn = json_object_has_member(w, "quantization") ? json_object_get_member(w, "quantization") : NULL;
      JsonObject *q = qn && JSON_NODE_HOLDS_OBJECT(qn) ? json_node_get_object(qn) : NULL;
      const char *qdt = str_member(q, "dtype");
      bool is_int = !strcmp(dtype, "int32") || !strcmp(dtype, "bool");
      if (!is_int && strcmp(dtype, "float32")) {
        nn_set_error("%s: weight \"%s\" has dtype %s (float32, int32 and bool are supported)", c->what, name, dtype);
        ok = false;
        break;
      }
      size_t es = qdt ? (!strcmp(qdt, "float16") || !strcmp(qdt, "uint16") ? 2 : !strcmp(qdt, "uint8") ? 1 : 0)
                      : !strcmp(dtype, "bool") ? 1 : 4;
      if (!es) {
        nn_set_error("%s: weight \"%s\" is quantised as %s (float16, uint8, uint16 are supported)", c->what, name, qdt);
        ok = false;
        break;
      }
      if (off + es * (size_t)count > bytes->len) {
        nn_set_error("%s: weight \"%s\" reaches past the end of the shards (%u bytes)", c->what, name, bytes->len);
        ok = false;
        break;
      }
      const uint8_t *src = bytes->data + off;
      double scale = num_member(q, "scale", 1);
      double min = num_member(q, "min", 0);
      void *vals = malloc((is_int ? sizeof(int64_t) : sizeof(float)) * (size_t)(count ? count : 1));
      if (!vals) {
        ok = false;
        break;
      }
      for (int64_t j = 0; j < count; j++) {
        double v;
        if (es == 4 && !is_int) {
          float f;
          memcpy(&f, src + 4 * j, 4);
          v = f;
        } else if (es == 4) {
          int32_t i;
          memcpy(&i, src + 4 * j, 4);
          v = i;
        } else if (es == 2 && !strcmp(qdt, "float16")) {
          uint16_t h;
          memcpy(&h, src + 2 * j, 2);
          v = imp_half_to_float(h);
        } else if (es == 2) {
          uint16_t h;
          memcpy(&h, src + 2 * j, 2);
          v = h * scale + min;
        } else {
          v = qdt ? src[j] * scale + min : src[j];
        }
        if (is_int) ((int64_t *)vals)[j] = (int64_t)llround(v);
        else ((float *)vals)[j] = (float)v;
      }
      off += es * (size_t)count;
      ok = imp_const(c, name, is_int ? NN_I64 : NN_F32, nd, shape, vals) != NULL;
      free(vals);
    }
    if (ok && off != bytes->len) {
      nn_set_error("%s: the shards hold %u bytes, the manifest describes %zu", c->what, bytes->len, off);
      ok = false;
    }
    g_byte_array_unref(bytes);
    if (!ok) return false;
  }
  return true;
}

/* ---- the graph, in dependency order ---- */

static const char *base_name(const char *in, char *buf, size_t len) {
  if (in[0] == '^') in++;
  g_strlcpy(buf, in, len);
  char *colon = strrchr(buf, ':');
  if (colon && colon[1] >= '0' && colon[1] <= '9') {
    if (colon[1] == '0' && !colon[2]) *colon = 0; /* "x:0" is "x" */
  }
  return buf;
}

bool e2e_import_tfjs(const char *model_json, int input_size, nn_graph *g) {
  nn_graph_init(g);
  char *data = NULL, *dir = g_path_get_dirname(model_json);
  gsize len = 0;
  GError *err = NULL;
  JsonParser *p = NULL;
  imp_ctx c;
  imp_init(&c, g, model_json);
  bool ok = false;
  int *order = NULL, *indeg = NULL;
  GPtrArray **readers = NULL;
  GHashTable *index = NULL;
  guint n_nodes = 0;
  if (!g_file_get_contents(model_json, &data, &len, &err)) {
    nn_set_error("%s: %s", model_json, err->message);
    g_error_free(err);
    goto done;
  }
  p = json_parser_new();
  if (len > ((gsize)256 << 20) || !nn_json_nesting_ok(data, len, 64) || !json_parser_load_from_data(p, data, (gssize)len, NULL) ||
      !JSON_NODE_HOLDS_OBJECT(json_parser_get_root(p))) {
    nn_set_error("%s: not a TensorFlow.js model (unreadable JSON)", model_json);
    goto done;
  }
  JsonObject *root = json_node_get_object(json_parser_get_root(p));
  const char *format = str_member(root, "format");
  JsonNode *topo = json_object_has_member(root, "modelTopology") ? json_object_get_member(root, "modelTopology") : NULL;
  JsonNode *man = json_object_has_member(root, "weightsManifest") ? json_object_get_member(root, "weightsManifest") : NULL;
  if (!format || strcmp(format, "graph-model") || !topo || !JSON_NODE_HOLDS_OBJECT(topo) || !man || !JSON_NODE_HOLDS_ARRAY(man)) {
    nn_set_error("%s: not a TensorFlow.js graph model (format \"%s\"; layers models are not supported)", model_json, format ? format : "none");
    goto done;
  }
  JsonNode *nodes_n = json_object_has_member(json_node_get_object(topo), "node") ? json_object_get_member(json_node_get_object(topo), "node") : NULL;
  if (!nodes_n || !JSON_NODE_HOLDS_ARRAY(nodes_n)) {
    nn_set_error("%s: the model has no nodes", model_json);
    goto done;
  }
  if (!read_weights(&c, json_node_get_array(man), dir)) goto done;
  JsonArray *nodes = json_node_get_array(nodes_n);
  n_nodes = json_array_get_length(nodes);
  tf_node *tn = calloc(n_nodes ? n_nodes : 1, sizeof *tn);
  order = calloc(n_nodes ? n_nodes : 1, sizeof *order);
  indeg = calloc(n_nodes ? n_nodes : 1, sizeof *indeg);
  readers = calloc(n_nodes ? n_nodes : 1, sizeof *readers);
  index = g_hash_table_new(g_str_hash, g_str_equal);
  if (!tn || !order || !indeg || !readers) {
    free(tn);
    nn_set_error("%s: out of memory", model_json);
    goto done;
  }
  for (guint k = 0; k < n_nodes; k++) {
    JsonNode *e = json_array_get_element(nodes, k);
    JsonObject *o = JSON_NODE_HOLDS_OBJECT(e) ? json_node_get_object(e) : NULL;
    tn[k].c = &c;
    tn[k].node = o;
    tn[k].name = str_member(o, "name");
    tn[k].op = str_member(o, "op");
    if (!tn[k].name || !tn[k].op) {
      nn_set_error("%s: node %u has no name or op", model_json, k);
      free(tn);
      goto done;
    }
    if (g_hash_table_contains(index, tn[k].name)) {
      nn_set_error("%s: two nodes are called \"%s\"", model_json, tn[k].name);
      free(tn);
      goto done;
    }
    g_hash_table_insert(index, (gpointer)tn[k].name, GUINT_TO_POINTER(k + 1));
  }
  /* inputs (control inputs "^x" only order), then Kahn's order; what remains is a cycle */
  for (guint k = 0; k < n_nodes && !ok; k++) {
    JsonNode *in = json_object_has_member(tn[k].node, "input") ? json_object_get_member(tn[k].node, "input") : NULL;
    JsonArray *ia = in && JSON_NODE_HOLDS_ARRAY(in) ? json_node_get_array(in) : NULL;
    for (guint j = 0; ia && j < json_array_get_length(ia); j++) {
      JsonNode *x = json_array_get_element(ia, j);
      const char *s = JSON_NODE_HOLDS_VALUE(x) && json_node_get_value_type(x) == G_TYPE_STRING ? json_node_get_string(x) : NULL;
      if (!s || (s[0] != '^' && tn[k].n_in == 64)) {
        imp_fail(&c, tn[k].name, tn[k].op, "an input is malformed or there are more than 64");
        free(tn);
        goto done;
      }
      char buf[512], node_name[512];
      base_name(s, buf, sizeof buf);
      g_strlcpy(node_name, buf, sizeof node_name);
      char *colon = strrchr(node_name, ':');
      if (colon) *colon = 0;
      guint src = GPOINTER_TO_UINT(g_hash_table_lookup(index, node_name));
      if (!src) {
        imp_fail(&c, tn[k].name, tn[k].op, "reads \"%s\", which no node makes", s);
        free(tn);
        goto done;
      }
      if (!readers[src - 1]) readers[src - 1] = g_ptr_array_new();
      g_ptr_array_add(readers[src - 1], GUINT_TO_POINTER(k));
      indeg[k]++;
      if (s[0] != '^') tn[k].in[tn[k].n_in++] = g_intern_string(buf);
    }
  }
  guint head = 0, tail = 0;
  for (guint k = 0; k < n_nodes; k++)
    if (!indeg[k]) order[tail++] = (int)k;
  while (head < tail) {
    guint k = (guint)order[head++];
    for (guint j = 0; readers[k] && j < readers[k]->len; j++) {
      guint r = GPOINTER_TO_UINT(g_ptr_array_index(readers[k], j));
      if (--indeg[r] == 0) order[tail++] = (int)r;
    }
  }
  if (tail != n_nodes) {
    nn_set_error("%s: the graph has a cycle (%u of %u nodes can be ordered)", model_json, tail, n_nodes);
    free(tn);
    goto done;
  }
  bool good = true;
  for (guint k = 0; k < n_nodes && good; k++) good = convert(&tn[order[k]], input_size);
  /* outputs: the signature's, else every node nobody reads */
  int outs[16], n_out = 0;
  JsonNode *sig = json_object_has_member(root, "signature") ? json_object_get_member(root, "signature") : NULL;
  JsonNode *so = sig && JSON_NODE_HOLDS_OBJECT(sig) && json_object_has_member(json_node_get_object(sig), "outputs")
                     ? json_object_get_member(json_node_get_object(sig), "outputs") : NULL;
  if (good && so && JSON_NODE_HOLDS_OBJECT(so)) {
    GList *keys = json_object_get_members(json_node_get_object(so));
    for (GList *l = keys; l && good; l = l->next) {
      char buf[512];
      imp_value *v = imp_get(&c, base_name(l->data, buf, sizeof buf));
      if (!v || n_out == 16) good = imp_fail(&c, l->data, "output", "is never produced (or more than 16 outputs)");
      else if ((outs[n_out++] = imp_as(&c, v, NULL)) < 0) good = false;
    }
    g_list_free(keys);
  } else {
    for (guint k = 0; k < n_nodes && good; k++) {
      if (readers[k] || !strcmp(tn[k].op, "Const")) continue;
      imp_value *v = imp_get(&c, tn[k].name);
      if (!v || n_out == 16) good = imp_fail(&c, tn[k].name, tn[k].op, "is never produced (or more than 16 outputs)");
      else if ((outs[n_out++] = imp_as(&c, v, NULL)) < 0) good = false;
    }
  }
  free(tn);
  ok = good && nn_graph_set_outputs(g, n_out, outs) && nn_graph_simplify(g, true);
done:
  if (readers)
    for (guint k = 0; k < n_nodes; k++)
      if (readers[k]) g_ptr_array_unref(readers[k]);
  free(readers), free(order), free(indeg);
  if (index) g_hash_table_destroy(index);
  imp_free(&c);
  if (p) g_object_unref(p);
  g_free(data);
  g_free(dir);
  if (!ok) nn_graph_free(g);
  return ok;
}
