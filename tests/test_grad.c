/* Gradient checks against central finite differences, for every op and loss,
 * with broadcasting and strided (transposed, sliced, expanded) inputs. */
#include "harness.h"

#define FN(name, expr)                                           \
  static nn_tensor *name(nn_tensor **in, void *ctx) {           \
    (void)ctx;                                                   \
    return expr;                                                 \
  }

#define SH(...) (int64_t[]){__VA_ARGS__}
#define ND(...) (int)(sizeof((int64_t[]){__VA_ARGS__}) / sizeof(int64_t))
#define RANDN(...) t_randn(&rng, ND(__VA_ARGS__), SH(__VA_ARGS__), 1.0f)
#define AWAY(...) t_rand_away(&rng, ND(__VA_ARGS__), SH(__VA_ARGS__), 0.05f)

static void grad_on(nn_tensor **t, int n) {
  for (int i = 0; i < n; i++) nn_set_requires_grad(t[i], true);
}
static void free_all(nn_tensor **t, int n) {
  for (int i = 0; i < n; i++) nn_tensor_free(t[i]);
}

#define RUN(label, fn, ...)                                       \
  do {                                                            \
    nn_tensor *ts_[] = {__VA_ARGS__};                             \
    int n_ = (int)(sizeof ts_ / sizeof ts_[0]);                   \
    grad_on(ts_, n_);                                             \
    gradcheck(label, fn, ts_, n_, NULL);                          \
    free_all(ts_, n_);                                            \
  } while (0)

/* ----------------------------------------------------------- elementwise */
FN(f_add, nn_add(in[0], in[1]))
FN(f_sub, nn_sub(in[0], in[1]))
FN(f_mul, nn_mul(in[0], in[1]))
FN(f_div, nn_div(in[0], nn_add_scalar(nn_abs(in[1]), 0.5f)))
FN(f_mul_strided, nn_mul(nn_transpose(in[0], 0, 1), nn_slice(in[1], 1, 1, 7, 2)))
FN(f_scalar_ops, nn_add_scalar(nn_mul_scalar(in[0], -1.7f), 0.3f))
FN(f_neg, nn_neg(in[0]))
FN(f_exp, nn_exp(in[0]))
FN(f_log, nn_log(nn_add_scalar(nn_abs(in[0]), 0.2f)))
FN(f_sqrt, nn_sqrt(nn_add_scalar(nn_abs(in[0]), 0.2f)))
FN(f_pow, nn_pow(nn_add_scalar(nn_abs(in[0]), 0.2f), 2.5f))
FN(f_abs, nn_abs(in[0]))
FN(f_clamp, nn_clamp(in[0], -0.7f, 0.6f))

TEST(grad_elementwise_broadcast) {
  nn_rng rng;
  nn_rng_seed(&rng, 1);
  RUN("add [3,1,4]+[2,4]", f_add, RANDN(3, 1, 4), RANDN(2, 4));
  RUN("add [2,3]+[] scalar", f_add, RANDN(2, 3), RANDN(1));
  RUN("sub [4,1]-[1,5]", f_sub, RANDN(4, 1), RANDN(1, 5));
  RUN("mul [2,3,4]*[3,1]", f_mul, RANDN(2, 3, 4), RANDN(3, 1));
  RUN("div [3,4]/[4]", f_div, RANDN(3, 4), RANDN(4));
  RUN("mul strided views", f_mul_strided, RANDN(3, 4), RANDN(4, 8));
  RUN("add_scalar/mul_scalar", f_scalar_ops, RANDN(5, 2));
}

TEST(grad_unary) {
  nn_rng rng;
  nn_rng_seed(&rng, 2);
  RUN("neg", f_neg, RANDN(4, 3));
  RUN("exp", f_exp, RANDN(4, 3));
  RUN("log", f_log, AWAY(4, 3));
  RUN("sqrt", f_sqrt, AWAY(4, 3));
  RUN("pow", f_pow, AWAY(4, 3));
  RUN("abs", f_abs, AWAY(4, 3));
  RUN("clamp", f_clamp, AWAY(6, 5));
}

/* ----------------------------------------------------------- activations */
FN(f_relu, nn_relu(in[0]))
FN(f_leaky, nn_leaky_relu(in[0], 0.1f))
FN(f_sigmoid, nn_sigmoid(in[0]))
FN(f_tanh, nn_tanh(in[0]))
FN(f_gelu, nn_gelu(in[0]))
FN(f_softmax_last, nn_softmax(in[0], -1))
FN(f_softmax_mid, nn_softmax(in[0], 1))
FN(f_log_softmax, nn_log_softmax(in[0], 1))
FN(f_softmax_T, nn_softmax(nn_transpose(in[0], 0, 1), -1))

TEST(grad_activations) {
  nn_rng rng;
  nn_rng_seed(&rng, 3);
  RUN("relu", f_relu, AWAY(5, 4));
  RUN("leaky_relu", f_leaky, AWAY(5, 4));
  RUN("sigmoid", f_sigmoid, RANDN(5, 4));
  RUN("tanh", f_tanh, RANDN(5, 4));
  RUN("gelu", f_gelu, RANDN(5, 4));
  RUN("softmax last axis", f_softmax_last, RANDN(3, 6));
  RUN("softmax middle axis", f_softmax_mid, RANDN(2, 5, 3));
  RUN("log_softmax", f_log_softmax, RANDN(2, 5, 3));
  RUN("softmax of a transposed view", f_softmax_T, RANDN(4, 3));
}

/* ---------------------------------------------------------------- matmul */
FN(f_mm, nn_matmul(in[0], in[1]))
FN(f_mm_tt, nn_matmul(nn_transpose(in[0], 0, 1), nn_transpose(in[1], 0, 1)))
FN(f_bmm_bcast, nn_matmul(in[0], nn_transpose(in[1], -1, -2)))
FN(f_mv, nn_matmul(in[0], in[1]))
FN(f_vm, nn_matmul(in[1], in[0]))

TEST(grad_matmul) {
  nn_rng rng;
  nn_rng_seed(&rng, 4);
  RUN("matmul 2D", f_mm, RANDN(3, 5), RANDN(5, 4));
  RUN("matmul transposed views", f_mm_tt, RANDN(5, 3), RANDN(4, 5));
  RUN("batched matmul with broadcast", f_bmm_bcast, RANDN(2, 1, 3, 4), RANDN(3, 5, 4));
  RUN("matrix @ vector", f_mv, RANDN(3, 4), RANDN(4));
  RUN("vector @ matrix", f_vm, RANDN(4, 3), RANDN(4));
}

/* ------------------------------------------------------------ reductions */
FN(f_sum0, nn_sum(in[0], 0, false))
FN(f_sum_keep, nn_sum(in[0], 1, true))
FN(f_mean, nn_mean(in[0], -1, false))
FN(f_max, nn_max(in[0], 1, false))
FN(f_sum_all, nn_sum_all(nn_transpose(in[0], 0, 2)))
FN(f_mean_all, nn_mean_all(in[0]))
FN(f_sum_to, nn_sum_to(in[0], 2, SH(1, 4)))

TEST(grad_reductions) {
  nn_rng rng;
  nn_rng_seed(&rng, 5);
  RUN("sum axis 0", f_sum0, RANDN(3, 4, 2));
  RUN("sum keepdim", f_sum_keep, RANDN(3, 4, 2));
  RUN("mean last axis", f_mean, RANDN(3, 4, 2));
  RUN("max", f_max, RANDN(3, 7, 2));
  RUN("sum_all of permuted", f_sum_all, RANDN(2, 3, 4));
  RUN("mean_all", f_mean_all, RANDN(2, 3));
  RUN("sum_to", f_sum_to, RANDN(3, 2, 4));
}

/* ----------------------------------------------------------------- shape */
FN(f_reshape, nn_reshape(nn_transpose(in[0], 0, 1), 2, SH(2, -1)))
FN(f_permute, nn_mul(nn_permute(in[0], (int[]){2, 0, 1}), nn_permute(in[0], (int[]){2, 0, 1})))
FN(f_slice, nn_slice(in[0], 1, 1, -1, 2))
FN(f_expand, nn_mul(nn_expand(in[0], 3, SH(2, 3, 4)), in[1]))
FN(f_contig, nn_contiguous(nn_transpose(in[0], 0, 1)))
static nn_tensor *f_concat(nn_tensor **in, void *ctx) {
  (void)ctx;
  nn_tensor *ts[3] = {in[0], nn_transpose(in[1], 0, 1), in[2]};
  return nn_concat(ts, 3, 1);
}
static nn_tensor *f_split(nn_tensor **in, void *ctx) {
  (void)ctx;
  nn_tensor *parts[3];
  if (!nn_split(in[0], 3, 1, parts)) return NULL;
  return nn_add(nn_mul(parts[0], parts[1]), parts[2]);
}
FN(f_pad, nn_pad(in[0], SH(1, 0, 2, 1), 0.5f))
static nn_tensor *f_gather(nn_tensor **in, void *ctx) {
  (void)ctx;
  int64_t idx[] = {0, 2, 2, 1, 3, 0, 1, 1};
  nn_tensor *i = nn_empty(NN_I64, 2, SH(2, 4));
  memcpy(nn_data(i), idx, sizeof idx);
  return nn_gather(in[0], 1, i);
}
static nn_tensor *f_index_select(nn_tensor **in, void *ctx) {
  (void)ctx;
  int32_t idx[] = {2, 0, 2};
  nn_tensor *i = nn_empty(NN_I32, 1, SH(3));
  memcpy(nn_data(i), idx, sizeof idx);
  return nn_index_select(in[0], 1, i);
}
static nn_tensor *f_embedding(nn_tensor **in, void *ctx) {
  (void)ctx;
  int64_t idx[] = {3, 1, 3, 0, 4, 4};
  nn_tensor *i = nn_empty(NN_I64, 2, SH(2, 3));
  memcpy(nn_data(i), idx, sizeof idx);
  return nn_embedding(in[0], i);
}
static nn_tensor *f_reverse(nn_tensor **in, void *ctx) {
  (void)ctx;
  int64_t len[] = {4, 2, 0};
  nn_tensor *l = nn_empty(NN_I64, 1, SH(3));
  memcpy(nn_data(l), len, sizeof len);
  return nn_mul(nn_reverse_padded(in[0], l), in[1]);
}

TEST(grad_shape_ops) {
  nn_rng rng;
  nn_rng_seed(&rng, 6);
  RUN("reshape of a transposed view", f_reshape, RANDN(3, 4));
  RUN("permute", f_permute, RANDN(2, 3, 4));
  RUN("slice with step", f_slice, RANDN(3, 7));
  RUN("expand", f_expand, RANDN(3, 1), RANDN(2, 3, 4));
  RUN("contiguous", f_contig, RANDN(3, 4));
  RUN("concat", f_concat, RANDN(2, 3), RANDN(4, 2), RANDN(2, 1));
  RUN("split", f_split, RANDN(2, 6));
  RUN("pad", f_pad, RANDN(3, 4));
  RUN("gather", f_gather, RANDN(2, 4));
  RUN("index_select", f_index_select, RANDN(2, 3, 2));
  RUN("embedding", f_embedding, RANDN(5, 3));
  RUN("reverse_padded", f_reverse, RANDN(4, 3, 2), RANDN(4, 3, 2));
}

/* ---------------------------------------------------- conv, pool, resample */
typedef struct { nn_conv_params p; bool bias; } conv_case;

static nn_tensor *f_conv(nn_tensor **in, void *ctx) {
  conv_case *c = ctx;
  return nn_conv2d(in[0], in[1], c->bias ? in[2] : NULL, c->p);
}
static nn_tensor *f_convt(nn_tensor **in, void *ctx) {
  conv_case *c = ctx;
  return nn_conv_transpose2d(in[0], in[1], c->bias ? in[2] : NULL, c->p);
}

static void conv_check(const char *label, nn_tensor *(*fn)(nn_tensor **, void *), conv_case c, nn_tensor *x,
                       nn_tensor *w, nn_tensor *b) {
  nn_tensor *ts[3] = {x, w, b};
  grad_on(ts, 3);
  gradcheck(label, fn, ts, 3, &c);
  free_all(ts, 3);
}

TEST(grad_conv2d) {
  nn_rng rng;
  nn_rng_seed(&rng, 7);
  nn_conv_params p = nn_conv_defaults();
  conv_check("conv2d 3x3", f_conv, (conv_case){p, true}, RANDN(2, 3, 6, 5), RANDN(4, 3, 3, 3), RANDN(4));
  p.stride_h = 2; p.stride_w = 1; p.pad_h = 1; p.pad_w = 2;
  conv_check("conv2d stride+pad", f_conv, (conv_case){p, true}, RANDN(1, 2, 7, 6), RANDN(3, 2, 3, 2), RANDN(3));
  p = nn_conv_defaults();
  p.dilation_h = 2; p.dilation_w = 2; p.pad_h = 2; p.pad_w = 2;
  conv_check("conv2d dilation", f_conv, (conv_case){p, false}, RANDN(1, 2, 7, 7), RANDN(2, 2, 3, 3), NULL);
  p = nn_conv_defaults();
  p.groups = 2; p.pad_h = p.pad_w = 1;
  conv_check("conv2d groups", f_conv, (conv_case){p, true}, RANDN(2, 4, 5, 5), RANDN(6, 2, 3, 3), RANDN(6));
  p = nn_conv_defaults();
  p.groups = 3; p.pad_h = p.pad_w = 1; p.stride_h = p.stride_w = 2;
  conv_check("conv2d depthwise", f_conv, (conv_case){p, true}, RANDN(2, 3, 6, 6), RANDN(3, 1, 3, 3), RANDN(3));
  p = nn_conv_defaults();
  conv_check("conv2d 1x1", f_conv, (conv_case){p, true}, RANDN(2, 3, 4, 4), RANDN(5, 3, 1, 1), RANDN(5));
}

TEST(grad_conv_transpose2d) {
  nn_rng rng;
  nn_rng_seed(&rng, 8);
  nn_conv_params p = nn_conv_defaults();
  conv_check("conv_transpose2d", f_convt, (conv_case){p, true}, RANDN(2, 3, 4, 3), RANDN(3, 2, 3, 3), RANDN(2));
  p.stride_h = p.stride_w = 2; p.pad_h = p.pad_w = 1; p.output_pad_h = p.output_pad_w = 1;
  conv_check("conv_transpose2d stride 2 + output pad", f_convt, (conv_case){p, true}, RANDN(1, 2, 3, 4),
             RANDN(2, 3, 5, 5), RANDN(3));
  p = nn_conv_defaults();
  p.groups = 2; p.dilation_h = 2;
  conv_check("conv_transpose2d groups+dilation", f_convt, (conv_case){p, false}, RANDN(1, 4, 3, 3),
             RANDN(4, 1, 3, 2), NULL);
}

FN(f_maxpool, nn_max_pool2d(in[0], 3, 2, 1))
FN(f_maxpool_2x2, nn_max_pool2d(in[0], 2, 2, 0))
FN(f_avgpool, nn_avg_pool2d(in[0], 2, 2, 0))
FN(f_avgpool_pad, nn_avg_pool2d(in[0], 3, 1, 1))
FN(f_up_nearest, nn_upsample_nearest(in[0], 7, 5))
FN(f_up_bilinear, nn_upsample_bilinear(in[0], 7, 9))
FN(f_down_bilinear, nn_upsample_bilinear(in[0], 3, 2))

TEST(grad_pool_resample) {
  nn_rng rng;
  nn_rng_seed(&rng, 9);
  RUN("max_pool2d", f_maxpool, RANDN(2, 2, 6, 5));
  RUN("max_pool2d 2x2 on odd sizes", f_maxpool_2x2, RANDN(2, 3, 7, 5));
  RUN("avg_pool2d", f_avgpool, RANDN(2, 2, 6, 4));
  RUN("avg_pool2d padded", f_avgpool_pad, RANDN(1, 2, 4, 4));
  RUN("upsample nearest", f_up_nearest, RANDN(1, 2, 3, 2));
  RUN("upsample bilinear", f_up_bilinear, RANDN(1, 2, 3, 4));
  RUN("downsample bilinear", f_down_bilinear, RANDN(1, 2, 5, 4));
}

/* ------------------------------------------------------ norms, dropout, gdn */
static nn_tensor *f_bn_train(nn_tensor **in, void *ctx) {
  (void)ctx;
  return nn_batch_norm(in[0], in[1], in[2], NULL, NULL, true, 0.1f, 1e-5f);
}
static nn_tensor *f_bn_relu_train(nn_tensor **in, void *ctx) {
  (void)ctx;
  return nn_batch_norm_relu(in[0], in[1], in[2], NULL, NULL, true, 0.1f, 1e-5f);
}
static nn_tensor *f_bn_eval(nn_tensor **in, void *ctx) {
  (void)ctx;
  static float rm[3] = {0.1f, -0.2f, 0.3f}, rv[3] = {1.5f, 0.7f, 2.0f};
  nn_tensor *m = nn_empty(NN_F32, 1, SH(3)), *v = nn_empty(NN_F32, 1, SH(3));
  memcpy(nn_f32(m), rm, sizeof rm);
  memcpy(nn_f32(v), rv, sizeof rv);
  return nn_batch_norm(in[0], in[1], in[2], m, v, false, 0.1f, 1e-5f);
}
FN(f_ln, nn_layer_norm(in[0], in[1], in[2], 1e-5f))
static nn_tensor *f_dropout(nn_tensor **in, void *ctx) {
  (void)ctx;
  nn_rng r;
  nn_rng_seed(&r, 77); /* same mask on every evaluation */
  return nn_dropout(in[0], 0.3f, true, &r);
}
FN(f_gdn, nn_gdn(in[0], nn_add_scalar(nn_abs(in[1]), 0.5f), nn_abs(in[2]), false))
FN(f_igdn, nn_gdn(in[0], nn_add_scalar(nn_abs(in[1]), 0.5f), nn_abs(in[2]), true))

TEST(grad_norms) {
  nn_rng rng;
  nn_rng_seed(&rng, 10);
  RUN("batch_norm train", f_bn_train, RANDN(4, 3, 2, 2), RANDN(3), RANDN(3));
  RUN("batch_norm eval", f_bn_eval, RANDN(2, 3, 2), RANDN(3), RANDN(3));
  RUN("batch_norm + relu fused, train", f_bn_relu_train, RANDN(4, 3, 2, 2), RANDN(3), RANDN(3));
  RUN("layer_norm", f_ln, RANDN(3, 2, 5), RANDN(5), RANDN(5));
  RUN("dropout", f_dropout, RANDN(4, 5));
  RUN("gdn", f_gdn, RANDN(2, 3, 3, 2), AWAY(3), AWAY(3, 3));
  RUN("inverse gdn", f_igdn, RANDN(2, 3, 3, 2), AWAY(3), AWAY(3, 3));
  /* 4225 pixels: 17 tiles of 256 in two blocks of the backward's per-block parameter sums */
  RUN("gdn over several tiles", f_gdn, RANDN(1, 2, 65, 65), AWAY(2), AWAY(2, 2));
  RUN("inverse gdn over several tiles", f_igdn, RANDN(1, 2, 65, 65), AWAY(2), AWAY(2, 2));
}

/* ------------------------------------------------------------ rnn cells */
static nn_tensor *mask_101(int64_t n) {
  nn_tensor *m = nn_empty(NN_F32, 1, &n);
  for (int64_t i = 0; i < n; i++) nn_f32(m)[i] = (i % 2 == 0) ? 1.0f : 0.0f;
  return m;
}
FN(f_lstm_cell, nn_lstm_cell(in[0], in[1], in[2], mask_101(3)))
FN(f_lstm_cell_nomask, nn_lstm_cell(in[0], in[1], in[2], NULL))
FN(f_gru_cell, nn_gru_cell(in[0], in[1], in[2], mask_101(3)))

static nn_tensor *mask_tn(void) {
  /* [T=4, N=3]: sequence lengths 4, 2, 3 */
  nn_tensor *m = nn_empty(NN_F32, 2, SH(4, 3));
  int len[3] = {4, 2, 3};
  for (int t = 0; t < 4; t++)
    for (int b = 0; b < 3; b++) nn_f32(m)[t * 3 + b] = t < len[b];
  return m;
}
FN(f_lstm_seq, nn_rnn_sequence(in[0], in[1], NULL, mask_tn(), false))
FN(f_gru_seq, nn_rnn_sequence(in[0], in[1], in[2], mask_tn(), true))

TEST(grad_rnn_cells) {
  nn_rng rng;
  nn_rng_seed(&rng, 11);
  RUN("lstm_cell masked", f_lstm_cell, RANDN(3, 8), RANDN(3, 2), RANDN(3, 2));
  RUN("lstm_cell", f_lstm_cell_nomask, RANDN(2, 12), RANDN(2, 3), RANDN(2, 3));
  RUN("gru_cell masked", f_gru_cell, RANDN(3, 6), RANDN(3, 6), RANDN(3, 2));
  RUN("lstm sequence (fused BPTT), masked", f_lstm_seq, RANDN(4, 3, 8), RANDN(8, 2));
  RUN("gru sequence (fused BPTT), masked", f_gru_seq, RANDN(4, 3, 6), RANDN(6, 2), RANDN(6));
}

typedef struct { nn_rnn rnn; nn_params p; } rnn_case;
static nn_tensor *f_rnn(nn_tensor **in, void *ctx) {
  rnn_case *c = ctx;
  int64_t len[] = {5, 3, 1};
  nn_tensor *l = nn_empty(NN_I64, 1, SH(3));
  memcpy(nn_data(l), len, sizeof len);
  return nn_rnn_forward(&c->rnn, in[0], l);
}

static void rnn_grad_case(bool gru) {
  nn_rng rng;
  nn_rng_seed(&rng, gru ? 12 : 13);
  rnn_case c;
  nn_params_init(&c.p);
  nn_rnn_init(&c.rnn, &c.p, "rnn", gru, 3, 4, 2, true, &rng);
  nn_tensor *x = RANDN(5, 3, 3);
  nn_set_requires_grad(x, true);
  /* inputs: x plus every parameter */
  nn_tensor *ins[1 + 32];
  int n = 0;
  ins[n++] = x;
  for (int i = 0; i < c.p.n; i++) ins[n++] = c.p.t[i];
  gradcheck_ex(gru ? "GRU 2-layer bidirectional, lengths" : "LSTM 2-layer bidirectional, lengths", f_rnn, ins, n,
               &c, 1e-3f, 1e-3, 1e-2, 12);
  nn_tensor_free(x);
  nn_params_free(&c.p);
}

TEST(grad_lstm_layer) { rnn_grad_case(false); }
TEST(grad_gru_layer) { rnn_grad_case(true); }

/* ------------------------------------------------------------- attention */
static nn_tensor *causal_mask(int64_t t) {
  nn_tensor *m = nn_empty(NN_F32, 2, SH(t, t));
  for (int64_t i = 0; i < t; i++)
    for (int64_t j = 0; j < t; j++) nn_f32(m)[i * t + j] = j <= i;
  return m;
}
FN(f_sdpa, nn_scaled_dot_product_attention(in[0], in[1], in[2], NULL))
FN(f_sdpa_mask, nn_scaled_dot_product_attention(in[0], in[1], in[2], causal_mask(4)))
static nn_tensor *f_masked_fill(nn_tensor **in, void *ctx) {
  (void)ctx;
  return nn_masked_fill(in[0], causal_mask(3), -2.0f);
}

typedef struct { nn_mha m; nn_params p; } mha_case;
static nn_tensor *f_mha(nn_tensor **in, void *ctx) {
  mha_case *c = ctx;
  return nn_mha_forward(&c->m, in[0], in[1], in[1], causal_mask(3));
}

TEST(grad_attention) {
  nn_rng rng;
  nn_rng_seed(&rng, 14);
  RUN("scaled dot-product attention", f_sdpa, RANDN(2, 3, 4), RANDN(2, 5, 4), RANDN(2, 5, 3));
  RUN("attention with causal mask", f_sdpa_mask, RANDN(2, 4, 4), RANDN(2, 4, 4), RANDN(2, 4, 2));
  RUN("masked_fill", f_masked_fill, RANDN(2, 3, 3));
  mha_case c;
  nn_params_init(&c.p);
  nn_mha_init(&c.m, &c.p, "attn", 4, 2, &rng);
  nn_tensor *q = RANDN(2, 3, 4), *kv = RANDN(2, 3, 4);
  nn_tensor *ins[2 + 8] = {q, kv};
  int n = 2;
  for (int i = 0; i < c.p.n; i++) ins[n++] = c.p.t[i];
  grad_on(ins, 2);
  gradcheck_ex("multi-head attention", f_mha, ins, n, &c, 1e-3f, 1e-3, 1e-2, 16);
  nn_tensor_free(q);
  nn_tensor_free(kv);
  nn_params_free(&c.p);
}

/* ---------------------------------------------------------------- losses */
FN(f_mse, nn_mse_loss(in[0], in[1]))
static nn_tensor *f_ce(nn_tensor **in, void *ctx) {
  (void)ctx;
  int64_t t[] = {2, 0, 4, 1};
  nn_tensor *tg = nn_empty(NN_I64, 1, SH(4));
  memcpy(nn_data(tg), t, sizeof t);
  return nn_cross_entropy(in[0], tg, -100, 0.0f);
}
static nn_tensor *f_ce_smooth_ignore(nn_tensor **in, void *ctx) {
  (void)ctx;
  int64_t t[] = {2, -100, 4, 1};
  nn_tensor *tg = nn_empty(NN_I64, 1, SH(4));
  memcpy(nn_data(tg), t, sizeof t);
  return nn_cross_entropy(in[0], tg, -100, 0.1f);
}
static nn_tensor *f_ce_spatial(nn_tensor **in, void *ctx) {
  (void)ctx;
  int32_t t[] = {0, 2, 1, 1, 2, 0, 0, 1};
  nn_tensor *tg = nn_empty(NN_I32, 3, SH(2, 2, 2));
  memcpy(nn_data(tg), t, sizeof t);
  return nn_cross_entropy(in[0], tg, -100, 0.05f);
}
FN(f_bce, nn_bce_with_logits(in[0], nn_sigmoid(in[1])))
FN(f_sl1, nn_smooth_l1_loss(in[0], in[1], 0.5f))
/* latents of either sign and scales from 0.3 up; y kept away from 0 where |y| has its kink */
FN(f_gauss_bits, nn_mul_scalar(nn_gaussian_bits(nn_mul_scalar(in[0], 2.0f), nn_add_scalar(nn_abs(in[1]), 0.3f), 0.11f), 0.05f))
static nn_tensor *f_ctc(nn_tensor **in, void *ctx) {
  (void)ctx;
  int64_t tg[] = {1, 2, 2, 3, 1, 0};
  int64_t il[] = {6, 5}, tl[] = {3, 2};
  nn_tensor *t = nn_empty(NN_I64, 2, SH(2, 3));
  memcpy(nn_data(t), tg, sizeof tg);
  return nn_ctc_loss(nn_log_softmax(in[0], 2), t, il, tl, 0, true, false);
}

TEST(grad_losses) {
  nn_rng rng;
  nn_rng_seed(&rng, 15);
  RUN("mse", f_mse, RANDN(3, 4), RANDN(3, 4));
  RUN("cross_entropy", f_ce, RANDN(4, 5));
  RUN("cross_entropy smoothing+ignore", f_ce_smooth_ignore, RANDN(4, 5));
  RUN("cross_entropy spatial", f_ce_spatial, RANDN(2, 3, 2, 2));
  RUN("bce_with_logits", f_bce, RANDN(3, 4), RANDN(3, 4));
  RUN("smooth_l1", f_sl1, AWAY(3, 5), RANDN(3, 5));
  RUN("ctc", f_ctc, RANDN(6, 2, 4));
  RUN("gaussian_bits", f_gauss_bits, AWAY(3, 5), RANDN(3, 5));
}

/* ------------------------------------------------- random broadcast shapes */
typedef struct { int op; } bin_case;
static nn_tensor *f_binop(nn_tensor **in, void *ctx) {
  bin_case *c = ctx;
  switch (c->op) {
  case 0: return nn_add(in[0], in[1]);
  case 1: return nn_sub(in[0], in[1]);
  case 2: return nn_mul(in[0], in[1]);
  default: return nn_div(in[0], nn_add_scalar(nn_abs(in[1]), 0.5f));
  }
}

/* 40 random pairs of broadcast-compatible shapes (1..4 dims, sizes 1..4,
 * random dims squeezed to 1 or dropped on one side), all four binary ops. */
TEST(grad_random_broadcast_shapes) {
  nn_rng rng;
  nn_rng_seed(&rng, 16);
  for (int it = 0; it < 40; it++) {
    int nd = 1 + (int)(nn_rng_u64(&rng) % 4);
    int64_t full[4], sa[4], sb[4];
    for (int d = 0; d < nd; d++) full[d] = 1 + (int64_t)(nn_rng_u64(&rng) % 4);
    int nda = nd, ndb = nd - (int)(nn_rng_u64(&rng) % nd); /* b may have fewer leading dims */
    for (int d = 0; d < nda; d++) sa[d] = nn_rng_u64(&rng) % 3 == 0 ? 1 : full[d];
    for (int d = 0; d < ndb; d++) sb[d] = nn_rng_u64(&rng) % 3 == 0 ? 1 : full[nd - ndb + d];
    bin_case c = {.op = it % 4};
    nn_tensor *ts[2] = {t_randn(&rng, nda, sa, 1.0f), t_randn(&rng, ndb, sb, 1.0f)};
    grad_on(ts, 2);
    char label[64];
    snprintf(label, sizeof label, "random broadcast #%d (op %d)", it, c.op);
    gradcheck(label, f_binop, ts, 2, &c);
    free_all(ts, 2);
  }
}

/* lower_bound: identity gradient above the bound; below it, only gradients that
 * would raise the input pass (loss = w * lower_bound(x) with w = +1 / -1). */
TEST(lower_bound_gradient_lets_values_come_back) {
  float xs[4] = {0.5f, -0.5f, 0.5f, -0.5f}, ws[4] = {1, 1, -1, -1};
  float expect[4] = {1, 0, -1, -1}; /* x < 0 with w = +1: descent would push x further down: blocked */
  nn_tensor *x = nn_tensor_from_data(NN_F32, 1, (int64_t[]){4}, xs);
  nn_tensor *w = nn_tensor_from_data(NN_F32, 1, (int64_t[]){4}, ws);
  nn_set_requires_grad(x, true);
  nn_tensor *y = nn_lower_bound(x, 0.0f);
  CHECK(nn_f32(y)[1] == 0.0f && nn_f32(y)[0] == 0.5f, "forward is max(x, 0)");
  CHECK(nn_backward(nn_sum_all(nn_mul(y, w))), "backward");
  for (int i = 0; i < 4; i++) CHECK(nn_f32(x->grad)[i] == expect[i], "grad[%d] = %g, expected %g", i, nn_f32(x->grad)[i], expect[i]);
  nn_arena_reset(nn_arena_current());
  nn_tensor_free(x);
  nn_tensor_free(w);
}

/* gaussian_bits' scale under scale_min: a latent away from zero wants a wider
 * scale (negative gradient: passes, so an under-bound hyper-synthesis can
 * learn); a zero latent wants a narrower one (positive: blocked at the bound). */
TEST(gaussian_bits_scale_gradient_below_the_bound) {
  float ys[2] = {0.6f, 0.0f}, ss[2] = {0.05f, 0.05f};
  nn_tensor *y = nn_tensor_from_data(NN_F32, 1, (int64_t[]){2}, ys);
  nn_tensor *s = nn_tensor_from_data(NN_F32, 1, (int64_t[]){2}, ss);
  nn_set_requires_grad(s, true);
  CHECK(nn_backward(nn_gaussian_bits(y, s, 0.11f)), "backward");
  double h = 1e-3, b[2]; /* the slope at the bound, by central difference with a lower bound out of the way */
  for (int k = 0; k < 2; k++) {
    float sk[2] = {0.11f + (float)(k ? h : -h), 1.0f};
    nn_tensor *sv = nn_tensor_from_data(NN_F32, 1, (int64_t[]){2}, sk);
    float y0[2] = {0.6f, 0.0f};
    nn_tensor *yv = nn_tensor_from_data(NN_F32, 1, (int64_t[]){2}, y0);
    b[k] = nn_item(nn_gaussian_bits(yv, sv, 0.01f));
    nn_tensor_free(sv);
    nn_tensor_free(yv);
  }
  double fd = (b[1] - b[0]) / (2 * h);
  const float *g = nn_f32(s->grad);
  CHECK(fd < 0 && fabs(g[0] - fd) < 0.02 * fabs(fd), "grad %g, finite difference at the bound %g", g[0], fd);
  CHECK(g[1] == 0.0f, "zero latent under the bound: grad %g, expected 0 (blocked)", g[1]);
  nn_arena_reset(nn_arena_current());
  nn_tensor_free(y);
  nn_tensor_free(s);
}
