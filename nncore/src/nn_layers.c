/* Parameter lists and layers. */
#include "internal.h"

#include <stdio.h>
#include <stdlib.h>

void nn_params_init(nn_params *p) { memset(p, 0, sizeof *p); }

void nn_params_free(nn_params *p) {
  for (int i = 0; i < p->n; i++) {
    nn_tensor_free(p->t[i]);
    free(p->names[i]);
  }
  free(p->t);
  free(p->names);
  memset(p, 0, sizeof *p);
}

nn_tensor *nn_params_add(nn_params *p, const char *name, nn_tensor *t, bool trainable) {
  if (!t) return NULL;
  if (nn_params_find(p, name)) {
    nn_set_error("params: duplicate name '%s'", name);
    nn_tensor_free(t);
    return NULL;
  }
  if (p->n == p->cap) {
    int nc = p->cap ? p->cap * 2 : 16;
    nn_tensor **t2 = realloc(p->t, (size_t)nc * sizeof *t2);
    if (t2) p->t = t2;
    char **n2 = realloc(p->names, (size_t)nc * sizeof *n2);
    if (n2) p->names = n2;
    if (!t2 || !n2) {
      nn_tensor_free(t);
      return NULL;
    }
    p->cap = nc;
  }
  p->t[p->n] = t;
  p->names[p->n] = strdup(name);
  t->name = p->names[p->n];
  t->requires_grad = trainable;
  p->n++;
  return t;
}

nn_tensor *nn_params_find(const nn_params *p, const char *name) {
  for (int i = 0; i < p->n; i++)
    if (strcmp(p->names[i], name) == 0) return p->t[i];
  return NULL;
}

void nn_params_zero_grad(nn_params *p) {
  for (int i = 0; i < p->n; i++) nn_zero_grad(p->t[i]);
}

int64_t nn_params_numel(const nn_params *p, bool trainable_only) {
  int64_t s = 0;
  for (int i = 0; i < p->n; i++)
    if (!trainable_only || p->t[i]->requires_grad) s += nn_numel(p->t[i]);
  return s;
}

int nn_params_set_trainable(nn_params *p, const char *prefix, bool trainable) {
  int count = 0;
  size_t len = strlen(prefix);
  for (int i = 0; i < p->n; i++)
    if (strncmp(p->names[i], prefix, len) == 0 && !strstr(p->names[i], "running_")) {
      p->t[i]->requires_grad = trainable;
      count++;
    }
  return count;
}

/* Adds a persistent parameter "<prefix>.<leaf>" of the given shape. */
static nn_tensor *param(nn_params *p, const char *prefix, const char *leaf, int ndim, const int64_t *shape,
                        bool trainable) {
  char name[256];
  snprintf(name, sizeof name, "%s%s%s", prefix, prefix[0] ? "." : "", leaf);
  return nn_params_add(p, name, nn_tensor_new(NN_F32, ndim, shape), trainable);
}

/* PyTorch's default (kaiming-uniform with a=sqrt(5)) reduces to U(-1/sqrt(fan_in), 1/sqrt(fan_in)). */
static void init_fan_in(nn_tensor *t, nn_rng *rng, int64_t fan_in) {
  float b = fan_in > 0 ? 1.0f / sqrtf((float)fan_in) : 0.0f;
  nn_fill_uniform_(t, rng, -b, b);
}

/* ------------------------------------------------------------------ linear */

/* A layer's weight and (optionally) bias, both drawn from U(-1/sqrt(fan_in), 1/sqrt(fan_in)) in that order. */
static bool weight_and_bias(nn_params *p, const char *name, int ndim, const int64_t *shape, int64_t out, bool bias,
                            int64_t fan_in, nn_rng *rng, nn_tensor **w, nn_tensor **b) {
  *w = param(p, name, "weight", ndim, shape, true);
  if (!*w) return false;
  init_fan_in(*w, rng, fan_in);
  if (!bias) return true;
  *b = param(p, name, "bias", 1, &out, true);
  if (!*b) return false;
  init_fan_in(*b, rng, fan_in);
  return true;
}

bool nn_linear_init(nn_linear *l, nn_params *p, const char *name, int64_t in, int64_t out, bool bias, nn_rng *rng) {
  memset(l, 0, sizeof *l);
  if (in < 1 || out < 1) {
    nn_set_error("linear %s: sizes must be >= 1", name);
    return false;
  }
  l->in = in;
  l->out = out;
  return weight_and_bias(p, name, 2, (int64_t[]){out, in}, out, bias, in, rng, &l->weight, &l->bias);
}

nn_tensor *nn_linear_forward(const nn_linear *l, nn_tensor *x) {
  if (!x) return NULL;
  if (x->ndim < 1 || x->shape[x->ndim - 1] != l->in) {
    char s[96];
    NN_FAIL("linear: input %s, expected last dim %lld", nn_shape_str(x, s, sizeof s), (long long)l->in);
  }
  nn_tensor *y = nn_matmul(x, nn_transpose(l->weight, 0, 1));
  return l->bias ? nn_add(y, l->bias) : y;
}

/* -------------------------------------------------------------------- conv */

bool nn_conv2d_init(nn_conv2d_layer *l, nn_params *p, const char *name, int64_t in, int64_t out, int k,
                    int stride, int pad, int groups, bool bias, nn_rng *rng) {
  memset(l, 0, sizeof *l);
  if (in < 1 || out < 1 || k < 1 || groups < 1 || in % groups || out % groups) {
    nn_set_error("conv2d %s: bad sizes (in %lld, out %lld, k %d, groups %d)", name, (long long)in, (long long)out, k, groups);
    return false;
  }
  l->p = nn_conv_defaults();
  l->p.stride_h = l->p.stride_w = stride;
  l->p.pad_h = l->p.pad_w = pad;
  l->p.groups = groups;
  return weight_and_bias(p, name, 4, (int64_t[]){out, in / groups, k, k}, out, bias, in / groups * k * k, rng,
                         &l->weight, &l->bias);
}

nn_tensor *nn_conv2d_forward(const nn_conv2d_layer *l, nn_tensor *x) { return nn_conv2d(x, l->weight, l->bias, l->p); }

bool nn_conv_transpose2d_init(nn_conv_transpose2d_layer *l, nn_params *p, const char *name, int64_t in,
                              int64_t out, int k, int stride, int pad, int output_pad, bool bias, nn_rng *rng) {
  memset(l, 0, sizeof *l);
  if (in < 1 || out < 1 || k < 1) {
    nn_set_error("conv_transpose2d %s: bad sizes", name);
    return false;
  }
  l->p = nn_conv_defaults();
  l->p.stride_h = l->p.stride_w = stride;
  l->p.pad_h = l->p.pad_w = pad;
  l->p.output_pad_h = l->p.output_pad_w = output_pad;
  /* PyTorch computes fan_in from weight dim 1 for transposed convs */
  return weight_and_bias(p, name, 4, (int64_t[]){in, out, k, k}, out, bias, out * k * k, rng, &l->weight, &l->bias);
}

nn_tensor *nn_conv_transpose2d_forward(const nn_conv_transpose2d_layer *l, nn_tensor *x) {
  return nn_conv_transpose2d(x, l->weight, l->bias, l->p);
}

/* ------------------------------------------------------------------- norms */

bool nn_batchnorm_init(nn_batchnorm *l, nn_params *p, const char *name, int64_t c) {
  memset(l, 0, sizeof *l);
  l->momentum = 0.1f;
  l->eps = 1e-5f;
  l->weight = param(p, name, "weight", 1, &c, true);
  l->bias = param(p, name, "bias", 1, &c, true);
  l->running_mean = param(p, name, "running_mean", 1, &c, false);
  l->running_var = param(p, name, "running_var", 1, &c, false);
  if (!l->weight || !l->bias || !l->running_mean || !l->running_var) return false;
  nn_fill_(l->weight, 1.0f);
  nn_fill_(l->running_var, 1.0f);
  return true;
}

nn_tensor *nn_batchnorm_forward(const nn_batchnorm *l, nn_tensor *x, bool training) {
  return nn_batch_norm(x, l->weight, l->bias, l->running_mean, l->running_var, training, l->momentum, l->eps);
}

nn_tensor *nn_batchnorm_relu_forward(const nn_batchnorm *l, nn_tensor *x, bool training) {
  return nn_batch_norm_relu(x, l->weight, l->bias, l->running_mean, l->running_var, training, l->momentum, l->eps);
}

bool nn_layernorm_init(nn_layernorm *l, nn_params *p, const char *name, int64_t dim) {
  memset(l, 0, sizeof *l);
  l->eps = 1e-5f;
  l->weight = param(p, name, "weight", 1, &dim, true);
  l->bias = param(p, name, "bias", 1, &dim, true);
  if (!l->weight || !l->bias) return false;
  nn_fill_(l->weight, 1.0f);
  return true;
}

nn_tensor *nn_layernorm_forward(const nn_layernorm *l, nn_tensor *x) {
  return nn_layer_norm(x, l->weight, l->bias, l->eps);
}

bool nn_embedding_init(nn_embedding_layer *l, nn_params *p, const char *name, int64_t vocab, int64_t dim, nn_rng *rng) {
  l->weight = param(p, name, "weight", 2, (int64_t[]){vocab, dim}, true);
  if (!l->weight) return false;
  nn_fill_normal_(l->weight, rng, 0.0f, 1.0f);
  return true;
}

bool nn_gdn_init(nn_gdn_layer *l, nn_params *p, const char *name, int64_t c, bool inverse) {
  l->inverse = inverse;
  l->beta = param(p, name, "beta", 1, &c, true);
  l->gamma = param(p, name, "gamma", 2, (int64_t[]){c, c}, true);
  if (!l->beta || !l->gamma) return false;
  nn_fill_(l->beta, 1.0f);
  for (int64_t i = 0; i < c; i++) nn_f32(l->gamma)[i * c + i] = 0.1f;
  return true;
}

nn_tensor *nn_gdn_forward(const nn_gdn_layer *l, nn_tensor *x) {
  /* lower bounds keep the denominator positive during training; unlike a clamp
   * they let entries that fell below the bound come back */
  return nn_gdn(x, nn_lower_bound(l->beta, 1e-6f), nn_lower_bound(l->gamma, 0.0f), l->inverse);
}

nn_tensor *nn_gdn_forward_(const nn_gdn_layer *l, nn_tensor *x) {
  return nn_gdn_(x, nn_lower_bound(l->beta, 1e-6f), nn_lower_bound(l->gamma, 0.0f), l->inverse);
}

/* ---------------------------------------------------------------- LSTM/GRU */

bool nn_rnn_init(nn_rnn *r, nn_params *p, const char *name, bool gru, int64_t input, int64_t hidden,
                 int layers, bool bidirectional, nn_rng *rng) {
  memset(r, 0, sizeof *r);
  if (layers < 1 || layers > NN_RNN_MAX_LAYERS || input < 1 || hidden < 1) {
    nn_set_error("rnn %s: need 1..%d layers and sizes >= 1", name, NN_RNN_MAX_LAYERS);
    return false;
  }
  r->gru = gru;
  r->layers = layers;
  r->dirs = bidirectional ? 2 : 1;
  r->input = input;
  r->hidden = hidden;
  int64_t G = (gru ? 3 : 4) * hidden;
  for (int l = 0; l < layers; l++)
    for (int d = 0; d < r->dirs; d++) {
      int64_t in = l == 0 ? input : hidden * r->dirs;
      char leaf[64];
      const char *sfx = d ? "_reverse" : "";
      snprintf(leaf, sizeof leaf, "weight_ih_l%d%s", l, sfx);
      r->w_ih[l][d] = param(p, name, leaf, 2, (int64_t[]){G, in}, true);
      snprintf(leaf, sizeof leaf, "weight_hh_l%d%s", l, sfx);
      r->w_hh[l][d] = param(p, name, leaf, 2, (int64_t[]){G, hidden}, true);
      snprintf(leaf, sizeof leaf, "bias_ih_l%d%s", l, sfx);
      r->b_ih[l][d] = param(p, name, leaf, 1, &G, true);
      snprintf(leaf, sizeof leaf, "bias_hh_l%d%s", l, sfx);
      r->b_hh[l][d] = param(p, name, leaf, 1, &G, true);
      if (!r->w_ih[l][d] || !r->w_hh[l][d] || !r->b_ih[l][d] || !r->b_hh[l][d]) return false;
      init_fan_in(r->w_ih[l][d], rng, hidden);
      init_fan_in(r->w_hh[l][d], rng, hidden);
      init_fan_in(r->b_ih[l][d], rng, hidden);
      init_fan_in(r->b_hh[l][d], rng, hidden);
    }
  return true;
}

/* One direction of one layer over x[T, N, I] (already reversed if backward). */
static nn_tensor *rnn_direction(const nn_rnn *r, int l, int d, nn_tensor *x, nn_tensor *mask) {
  int64_t T = x->shape[0], N = x->shape[1], I = x->shape[2];
  int64_t G = (r->gru ? 3 : 4) * r->hidden;
  /* the input projection of every step is one GEMM */
  nn_tensor *xg = nn_matmul(nn_reshape(x, 2, (int64_t[]){T * N, I}), nn_transpose(r->w_ih[l][d], 0, 1));
  /* LSTM folds both biases in here; GRU keeps b_hh apart (it is gated by r) */
  xg = r->gru ? nn_add(xg, r->b_ih[l][d]) : nn_add(nn_add(xg, r->b_ih[l][d]), r->b_hh[l][d]);
  xg = nn_reshape(xg, 3, (int64_t[]){T, N, G});
  return nn_rnn_sequence(xg, r->w_hh[l][d], r->gru ? r->b_hh[l][d] : NULL, mask, r->gru);
}

nn_tensor *nn_rnn_forward(const nn_rnn *r, nn_tensor *x, nn_tensor *lengths) {
  if (!x) return NULL;
  NN_CHECK_F32(x, "rnn");
  if (x->ndim != 3 || x->shape[2] != r->input) NN_FAIL("rnn: input must be [T, N, %lld]", (long long)r->input);
  int64_t T = x->shape[0], N = x->shape[1];
  nn_tensor *mask = NULL, *lens = lengths;
  if (lengths) {
    if (lengths->ndim != 1 || lengths->shape[0] != N || lengths->dtype == NN_F32)
      NN_FAIL("rnn: lengths must be an integer [%lld] tensor", (long long)N);
    for (int64_t b = 0; b < N; b++) {
      int64_t L = nn_index_at(lengths, b);
      if (L < 0 || L > T) NN_FAIL("rnn: length %lld of sequence %lld outside [0, %lld]", (long long)L, (long long)b, (long long)T);
    }
    mask = nn_empty(NN_F32, 2, (int64_t[]){T, N});
    if (!mask) return NULL;
    for (int64_t t = 0; t < T; t++)
      for (int64_t b = 0; b < N; b++) nn_f32(mask)[t * N + b] = t < nn_index_at(lengths, b) ? 1.0f : 0.0f;
  } else if (r->dirs == 2) {
    /* the backward direction reverses each sequence within its own length */
    lens = nn_empty(NN_I64, 1, &N);
    if (!lens) return NULL;
    for (int64_t b = 0; b < N; b++) ((int64_t *)nn_data(lens))[b] = T;
  }
  nn_tensor *in = x;
  for (int l = 0; l < r->layers; l++) {
    nn_tensor *dirs[2] = {NULL, NULL};
    for (int d = 0; d < r->dirs; d++) {
      nn_tensor *src = d == 1 ? nn_reverse_padded(in, lens) : in;
      nn_tensor *y = rnn_direction(r, l, d, src, mask);
      dirs[d] = d == 1 ? nn_reverse_padded(y, lens) : y;
    }
    in = r->dirs == 2 ? nn_concat(dirs, 2, 2) : dirs[0];
    if (!in) return NULL;
  }
  return in;
}

/* --------------------------------------------------------------------- MHA */

bool nn_mha_init(nn_mha *m, nn_params *p, const char *name, int64_t dim, int heads, nn_rng *rng) {
  memset(m, 0, sizeof *m);
  if (heads < 1 || dim % heads) {
    nn_set_error("mha %s: dim %lld not divisible by %d heads", name, (long long)dim, heads);
    return false;
  }
  m->heads = heads;
  m->dim = dim;
  char sub[256];
  const char *parts[4] = {"q_proj", "k_proj", "v_proj", "out_proj"};
  nn_linear *ls[4] = {&m->q, &m->k, &m->v, &m->o};
  for (int i = 0; i < 4; i++) {
    snprintf(sub, sizeof sub, "%s%s%s", name, name[0] ? "." : "", parts[i]);
    if (!nn_linear_init(ls[i], p, sub, dim, dim, true, rng)) return false;
  }
  return true;
}

/* [N, T, E] -> [N, heads, T, E/heads] */
static nn_tensor *split_heads(nn_tensor *x, int heads) {
  if (!x) return NULL;
  int64_t N = x->shape[0], T = x->shape[1], E = x->shape[2];
  nn_tensor *r = nn_reshape(x, 4, (int64_t[]){N, T, heads, E / heads});
  return nn_permute(r, (int[]){0, 2, 1, 3});
}

nn_tensor *nn_mha_forward(const nn_mha *m, nn_tensor *q, nn_tensor *k, nn_tensor *v, nn_tensor *mask) {
  if (!q || !k || !v) return NULL;
  if (q->ndim != 3 || k->ndim != 3 || v->ndim != 3 || q->shape[2] != m->dim)
    NN_FAIL("mha: inputs must be [N, T, %lld]", (long long)m->dim);
  nn_tensor *qh = split_heads(nn_linear_forward(&m->q, q), m->heads);
  nn_tensor *kh = split_heads(nn_linear_forward(&m->k, k), m->heads);
  nn_tensor *vh = split_heads(nn_linear_forward(&m->v, v), m->heads);
  nn_tensor *a = nn_scaled_dot_product_attention(nn_contiguous(qh), nn_contiguous(kh), nn_contiguous(vh), mask);
  if (!a) return NULL;
  nn_tensor *merged = nn_reshape(nn_permute(a, (int[]){0, 2, 1, 3}), 3, (int64_t[]){q->shape[0], q->shape[1], m->dim});
  return nn_linear_forward(&m->o, merged);
}
