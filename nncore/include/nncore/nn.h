/* Layers: one struct per layer holding its parameters, one forward function.
 * The backward comes from autograd. Parameters are persistent tensors owned
 * by an nn_params list under dotted names ("enc.conv1.weight"), which is what
 * checkpoints and optimizers work on. Weight layouts follow PyTorch, so
 * weights can be compared with and exchanged through safetensors. */
#ifndef NNCORE_NN_H
#define NNCORE_NN_H

#include "ops.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- named parameter list ---- */
typedef struct nn_params {
  int n, cap;
  nn_tensor **t;
  char **names;
} nn_params;

void nn_params_init(nn_params *p);
/* Frees every tensor and name. */
void nn_params_free(nn_params *p);
/* Takes ownership of t (persistent). trainable=false makes a buffer (running stats). */
nn_tensor *nn_params_add(nn_params *p, const char *name, nn_tensor *t, bool trainable);
nn_tensor *nn_params_find(const nn_params *p, const char *name);
void nn_params_zero_grad(nn_params *p);
int64_t nn_params_numel(const nn_params *p, bool trainable_only);
/* Freezes (or unfreezes) every parameter whose name starts with prefix. Returns how many. */
int nn_params_set_trainable(nn_params *p, const char *prefix, bool trainable);

/* ---- layers ---- */
typedef struct { nn_tensor *weight, *bias; int64_t in, out; } nn_linear;
bool nn_linear_init(nn_linear *l, nn_params *p, const char *name, int64_t in, int64_t out, bool bias, nn_rng *rng);
nn_tensor *nn_linear_forward(const nn_linear *l, nn_tensor *x); /* x[..., in] */

typedef struct { nn_tensor *weight, *bias; nn_conv_params p; } nn_conv2d_layer;
bool nn_conv2d_init(nn_conv2d_layer *l, nn_params *p, const char *name, int64_t in, int64_t out, int k,
                    int stride, int pad, int groups, bool bias, nn_rng *rng);
nn_tensor *nn_conv2d_forward(const nn_conv2d_layer *l, nn_tensor *x);

typedef struct { nn_tensor *weight, *bias; nn_conv_params p; } nn_conv_transpose2d_layer;
bool nn_conv_transpose2d_init(nn_conv_transpose2d_layer *l, nn_params *p, const char *name, int64_t in,
                              int64_t out, int k, int stride, int pad, int output_pad, bool bias, nn_rng *rng);
nn_tensor *nn_conv_transpose2d_forward(const nn_conv_transpose2d_layer *l, nn_tensor *x);

typedef struct { nn_tensor *weight, *bias, *running_mean, *running_var; float momentum, eps; } nn_batchnorm;
bool nn_batchnorm_init(nn_batchnorm *l, nn_params *p, const char *name, int64_t channels);
nn_tensor *nn_batchnorm_forward(const nn_batchnorm *l, nn_tensor *x, bool training);
/* max(0, nn_batchnorm_forward(...)) fused (nn_batch_norm_relu) */
nn_tensor *nn_batchnorm_relu_forward(const nn_batchnorm *l, nn_tensor *x, bool training);

/* An inference copy of conv2d (+ an eval-mode batch norm) (+ ReLU): the batch norm is folded into the
 * filters and bias and the filters are packed once for the fast CPU kernels, so the three layers cost
 * one pass. It is a snapshot: later changes to the source layers do not reach it (make a new one after
 * training). Its forward records nothing for autograd. */
typedef struct {
  nn_tensor *weight, *bias;   /* folded, persistent */
  nn_conv_params p;
  bool relu;
  bool silu;                  /* x sigmoid(x) on the result instead (set after init; not with relu) */
  float *packed_direct;       /* filters packed for the direct kernel, or NULL */
  float *packed_winograd;     /* and for Winograd (3x3 stride 1, 64+ channels), or NULL */
} nn_conv_infer;
bool nn_conv_infer_init(nn_conv_infer *ci, const nn_conv2d_layer *conv, const nn_batchnorm *bn, bool relu);
nn_tensor *nn_conv_infer_forward(const nn_conv_infer *ci, nn_tensor *x);
/* The same, written into out (a contiguous tensor of the output's shape, such as one input's place in a
 * batch-1 channel concat) and returned: a concat of conv outputs then costs no copy. */
nn_tensor *nn_conv_infer_forward_into(const nn_conv_infer *ci, nn_tensor *x, nn_tensor *out);
/* relu?(conv(x) + addend), addend with the output's shape: a residual or top-down add in the same pass. */
nn_tensor *nn_conv_infer_forward_add(const nn_conv_infer *ci, nn_tensor *x, nn_tensor *addend);
void nn_conv_infer_free(nn_conv_infer *ci);

typedef struct { nn_tensor *weight, *bias; float eps; } nn_layernorm;
bool nn_layernorm_init(nn_layernorm *l, nn_params *p, const char *name, int64_t dim);
nn_tensor *nn_layernorm_forward(const nn_layernorm *l, nn_tensor *x);

typedef struct { nn_tensor *weight; } nn_embedding_layer;
bool nn_embedding_init(nn_embedding_layer *l, nn_params *p, const char *name, int64_t vocab, int64_t dim, nn_rng *rng);

/* GDN with lower-bounded beta (> 0) and gamma (>= 0), initialised like Ballé et al. */
typedef struct { nn_tensor *beta, *gamma; bool inverse; } nn_gdn_layer;
bool nn_gdn_init(nn_gdn_layer *l, nn_params *p, const char *name, int64_t channels, bool inverse);
nn_tensor *nn_gdn_forward(const nn_gdn_layer *l, nn_tensor *x);
/* In place over x (nn_gdn_): inference only. */
nn_tensor *nn_gdn_forward_(const nn_gdn_layer *l, nn_tensor *x);

/* Multi-layer, optionally bidirectional LSTM / GRU over x[T, N, I] (sequence first).
 * lengths (i64 [N], or NULL for all T): steps past a sequence's length produce
 * zeros and leave its state unchanged, like PyTorch's packed sequences. */
#define NN_RNN_MAX_LAYERS 8
typedef struct {
  bool gru;
  int layers, dirs;
  int64_t input, hidden;
  nn_tensor *w_ih[NN_RNN_MAX_LAYERS][2], *w_hh[NN_RNN_MAX_LAYERS][2];
  nn_tensor *b_ih[NN_RNN_MAX_LAYERS][2], *b_hh[NN_RNN_MAX_LAYERS][2];
} nn_rnn;
bool nn_rnn_init(nn_rnn *r, nn_params *p, const char *name, bool gru, int64_t input, int64_t hidden,
                 int layers, bool bidirectional, nn_rng *rng);
/* Returns [T, N, dirs*hidden]. */
nn_tensor *nn_rnn_forward(const nn_rnn *r, nn_tensor *x, nn_tensor *lengths);

typedef struct { nn_linear q, k, v, o; int heads; int64_t dim; } nn_mha;
bool nn_mha_init(nn_mha *m, nn_params *p, const char *name, int64_t dim, int heads, nn_rng *rng);
/* q[N, Tq, E], k/v[N, Tk, E]; mask broadcastable to [N, heads, Tq, Tk] (0 = masked) or NULL. */
nn_tensor *nn_mha_forward(const nn_mha *m, nn_tensor *q, nn_tensor *k, nn_tensor *v, nn_tensor *mask);

#ifdef __cplusplus
}
#endif
#endif
