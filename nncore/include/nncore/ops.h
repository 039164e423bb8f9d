/* Every differentiable op of nncore, declared in one place.
 *
 * Each op has one forward and one backward (in src/ops_*.c). Results live in
 * the current arena. Inputs may be strided views; ops that need dense memory
 * make a contiguous copy internally. Axes may be negative (counted from the
 * end). On bad arguments an op returns NULL with nn_last_error() set, and any
 * op given NULL returns NULL.
 */
#ifndef NNCORE_OPS_H
#define NNCORE_OPS_H

#include "tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- elementwise, broadcasting (NumPy rules) ---- */
nn_tensor *nn_add(nn_tensor *a, nn_tensor *b);
nn_tensor *nn_sub(nn_tensor *a, nn_tensor *b);
nn_tensor *nn_mul(nn_tensor *a, nn_tensor *b);
nn_tensor *nn_div(nn_tensor *a, nn_tensor *b);
nn_tensor *nn_add_scalar(nn_tensor *a, float s);
nn_tensor *nn_mul_scalar(nn_tensor *a, float s);
nn_tensor *nn_neg(nn_tensor *a);
nn_tensor *nn_exp(nn_tensor *a);
nn_tensor *nn_log(nn_tensor *a);
nn_tensor *nn_sqrt(nn_tensor *a);
nn_tensor *nn_pow(nn_tensor *a, float exponent);
nn_tensor *nn_abs(nn_tensor *a);
nn_tensor *nn_clamp(nn_tensor *a, float lo, float hi);
/* max(a, bound), but below the bound the gradient still flows when it would
 * raise a (Ballé's LowerBound): parameters kept positive this way never get
 * stuck at the bound the way clamp's zero gradient leaves them. */
nn_tensor *nn_lower_bound(nn_tensor *a, float bound);

/* ---- activations ---- */
nn_tensor *nn_relu(nn_tensor *a);
nn_tensor *nn_leaky_relu(nn_tensor *a, float slope);
nn_tensor *nn_sigmoid(nn_tensor *a);
nn_tensor *nn_tanh(nn_tensor *a);
nn_tensor *nn_gelu(nn_tensor *a);               /* tanh approximation */
nn_tensor *nn_softmax(nn_tensor *a, int axis);
nn_tensor *nn_log_softmax(nn_tensor *a, int axis);

/* ---- linear algebra ---- */
/* a[..., M, K] @ b[..., K, N] with broadcast batch dims; 1-D b is a vector. */
nn_tensor *nn_matmul(nn_tensor *a, nn_tensor *b);

/* ---- reductions ---- */
nn_tensor *nn_sum(nn_tensor *a, int axis, bool keepdim);
nn_tensor *nn_mean(nn_tensor *a, int axis, bool keepdim);
nn_tensor *nn_max(nn_tensor *a, int axis, bool keepdim);
nn_tensor *nn_sum_all(nn_tensor *a);
nn_tensor *nn_mean_all(nn_tensor *a);
nn_tensor *nn_argmax(nn_tensor *a, int axis, bool keepdim);   /* i64, no grad */
/* Sums broadcast dimensions away so the result has `ndim`/`shape`. */
nn_tensor *nn_sum_to(nn_tensor *a, int ndim, const int64_t *shape);

/* ---- shape (views where possible) ---- */
nn_tensor *nn_reshape(nn_tensor *a, int ndim, const int64_t *shape); /* one -1 allowed */
nn_tensor *nn_permute(nn_tensor *a, const int *perm);
nn_tensor *nn_transpose(nn_tensor *a, int d0, int d1);
nn_tensor *nn_slice(nn_tensor *a, int axis, int64_t start, int64_t end, int64_t step);
nn_tensor *nn_expand(nn_tensor *a, int ndim, const int64_t *shape);
nn_tensor *nn_contiguous(nn_tensor *a);
nn_tensor *nn_concat(nn_tensor **ts, int n, int axis);
/* Splits into n equal parts along axis (views). Returns false on error. */
bool nn_split(nn_tensor *a, int n, int axis, nn_tensor **out);
/* Constant padding: pads[2*i], pads[2*i+1] = before/after for dim i. */
nn_tensor *nn_pad(nn_tensor *a, const int64_t *pads, float value);
/* out[i][j][k] = a[i][index[i][j][k]][k] for axis 1 (torch.gather). */
nn_tensor *nn_gather(nn_tensor *a, int axis, nn_tensor *index);
/* Selects entries of a 1-D integer `index` along axis. */
nn_tensor *nn_index_select(nn_tensor *a, int axis, nn_tensor *index);
/* Rows of weight[V, D] for any integer index tensor: result index.shape + [D]. */
nn_tensor *nn_embedding(nn_tensor *weight, nn_tensor *index);
/* Reverses each sequence of x[T, N, ...] within its own length (lengths: i32/i64 [N]). */
nn_tensor *nn_reverse_padded(nn_tensor *x, nn_tensor *lengths);
nn_tensor *nn_to_dtype(nn_tensor *a, nn_dtype dt);  /* no grad through casts */

/* ---- convolution, pooling, resampling (NCHW) ---- */
typedef struct {
  int stride_h, stride_w;
  int pad_h, pad_w;
  int dilation_h, dilation_w;
  int groups;
  int output_pad_h, output_pad_w; /* conv_transpose2d only */
} nn_conv_params;
/* Defaults: stride 1, no padding, dilation 1, groups 1. */
nn_conv_params nn_conv_defaults(void);
/* x[N,C,H,W], w[OC, C/groups, KH, KW], b[OC] or NULL. */
nn_tensor *nn_conv2d(nn_tensor *x, nn_tensor *w, nn_tensor *b, nn_conv_params p);
/* The instruction set of the convolution kernels: "avx512", "avx2" or "generic" (im2col + GEMM).
 * The best the CPU has, capped by the environment variable NNCORE_ISA. nn_set_conv_isa caps it at run
 * time (false when the name is unknown; a level the CPU lacks gives the best one below it); call it
 * before packing layers for inference. avx2 and avx512 give the same bits. */
const char *nn_conv_isa(void);
bool nn_set_conv_isa(const char *isa);
/* x[N,C,H,W], w[C, OC/groups, KH, KW], b[OC] or NULL. */
nn_tensor *nn_conv_transpose2d(nn_tensor *x, nn_tensor *w, nn_tensor *b, nn_conv_params p);
nn_tensor *nn_max_pool2d(nn_tensor *x, int k, int stride, int pad);
/* Divides by k*k including padding (PyTorch's default). */
nn_tensor *nn_avg_pool2d(nn_tensor *x, int k, int stride, int pad);
nn_tensor *nn_upsample_nearest(nn_tensor *x, int64_t out_h, int64_t out_w);
/* align_corners = false (PyTorch's default). */
nn_tensor *nn_upsample_bilinear(nn_tensor *x, int64_t out_h, int64_t out_w);

/* ---- normalisation, regularisation ---- */
/* x[N,C,...]; running stats are updated in training mode (momentum like PyTorch). */
nn_tensor *nn_batch_norm(nn_tensor *x, nn_tensor *gamma, nn_tensor *beta,
                         nn_tensor *running_mean, nn_tensor *running_var,
                         bool training, float momentum, float eps);
/* max(0, batch_norm(...)) as one op: one pass over the activations forward and backward. */
nn_tensor *nn_batch_norm_relu(nn_tensor *x, nn_tensor *gamma, nn_tensor *beta, nn_tensor *rmean, nn_tensor *rvar,
                              bool training, float momentum, float eps);
/* Normalises over the last dimension; gamma/beta [D] or NULL. */
nn_tensor *nn_layer_norm(nn_tensor *x, nn_tensor *gamma, nn_tensor *beta, float eps);
/* Inverted dropout; identity when !training or p == 0. */
nn_tensor *nn_dropout(nn_tensor *x, float p, bool training, nn_rng *rng);
/* GDN (Ballé et al.): y_i = x_i / sqrt(beta_i + sum_j gamma_ij x_j^2); inverse: x * sqrt(...).
 * x[N,C,H,W], beta[C] > 0, gamma[C,C] >= 0. */
nn_tensor *nn_gdn(nn_tensor *x, nn_tensor *beta, nn_tensor *gamma, bool inverse);
/* The same, written over x (contiguous) and returned: inference only, where no gradient is needed
 * (refused otherwise). Saves a copy of a layer's output where the early layers' are the largest. */
nn_tensor *nn_gdn_(nn_tensor *x, nn_tensor *beta, nn_tensor *gamma, bool inverse);

/* ---- recurrent cells (fused forward/backward) ---- */
/* gates[N,4H] (i,f,g,o pre-activations), c_prev/h_prev [N,H], mask [N] (1 = step valid) or NULL.
 * Returns hc[N,2H] = [h | c]; where mask is 0 the previous state is carried. */
nn_tensor *nn_lstm_cell(nn_tensor *gates, nn_tensor *c_prev, nn_tensor *h_prev, nn_tensor *mask);
/* xg[N,3H] = W_ih x + b_ih, hg[N,3H] = W_hh h + b_hh (r,z,n order), h_prev [N,H]. */
nn_tensor *nn_gru_cell(nn_tensor *xg, nn_tensor *hg, nn_tensor *h_prev, nn_tensor *mask);

/* A whole recurrent layer direction over T steps (fused BPTT backward).
 * xg[T,N,G]: input-side gate pre-activations (x W_ih^T + biases; for the GRU
 * without b_hh), w_hh[G,H], b_hh[G] (GRU only, else NULL), mask[T,N] or NULL.
 * G = 4H (LSTM, gates i,f,g,o) or 3H (GRU, r,z,n). Returns h[T,N,H], zero at
 * masked steps, whose state is carried unchanged. */
nn_tensor *nn_rnn_sequence(nn_tensor *xg, nn_tensor *w_hh, nn_tensor *b_hh, nn_tensor *mask, bool gru);

/* ---- attention ---- */
/* q[...,Tq,D], k[...,Tk,D], v[...,Tk,Dv]; mask broadcastable to [...,Tq,Tk]:
 * entries == 0 are masked out (NULL: no mask). */
nn_tensor *nn_scaled_dot_product_attention(nn_tensor *q, nn_tensor *k, nn_tensor *v,
                                           nn_tensor *mask);
/* Fills where mask == 0 with value (mask broadcast to a; no grad into mask). */
nn_tensor *nn_masked_fill(nn_tensor *a, nn_tensor *mask, float value);

/* ---- losses (mean over elements unless stated) ---- */
nn_tensor *nn_mse_loss(nn_tensor *pred, nn_tensor *target);
/* logits[N,C] (or [N,C,d...]), target integer [N] (or [N,d...]); mean over non-ignored. */
nn_tensor *nn_cross_entropy(nn_tensor *logits, nn_tensor *target, int64_t ignore_index,
                            float label_smoothing);
nn_tensor *nn_bce_with_logits(nn_tensor *logits, nn_tensor *target);
nn_tensor *nn_smooth_l1_loss(nn_tensor *pred, nn_tensor *target, float beta);
/* log_probs[T,N,C], targets[N,S] (padded), lengths int arrays; blank index.
 * mean_by_target_length: PyTorch's reduction='mean'; otherwise the sum over the batch.
 * Infeasible alignments give +inf loss (zero_infinity=true makes them 0, no grad). */
nn_tensor *nn_ctc_loss(nn_tensor *log_probs, nn_tensor *targets, const int64_t *input_lengths,
                       const int64_t *target_lengths, int blank, bool mean_by_target_length,
                       bool zero_infinity);
/* Rate of integer-quantised latents: sum over elements of -log2 P(y) where
 * P(y) = Phi((y + 1/2) / s) - Phi((y - 1/2) / s) for a zero-mean Gaussian with
 * scale s = max(scale, scale_min) (the hyperprior's conditional model; y is the
 * latent with additive uniform noise in training). Same shapes; P is floored
 * at 1e-9. Returns a scalar number of bits, summed in a fixed order. Below
 * scale_min, the scale's gradient passes only where it would raise the scale
 * (as nn_lower_bound), so a predictor that starts under the bound can learn. */
nn_tensor *nn_gaussian_bits(nn_tensor *y, nn_tensor *scale, float scale_min);

#ifdef __cplusplus
}
#endif
#endif
