/* Private helpers shared by nncore's source files. */
#ifndef NNCORE_INTERNAL_H
#define NNCORE_INTERNAL_H

#include "nncore/nncore.h"

#include <math.h>
#include <string.h>

#define NN_NODE_MAX_IN 6

typedef struct nn_node nn_node;
typedef void (*nn_backward_fn)(nn_node *n, nn_tensor *gout);

/* One recorded op. Inputs are kept by pointer (arena or persistent tensors);
 * small scalars and saved tensors carry what the backward needs. */
struct nn_node {
  nn_backward_fn backward;
  const char *name;
  nn_tensor *out;
  nn_tensor *in[NN_NODE_MAX_IN];
  int n_in;
  nn_tensor *saved[4];
  float f[6];
  int64_t i[8];
  void *extra;
};

/* Records a node when grad mode is on and any input requires a gradient.
 * Sets out->requires_grad / grad_fn. Returns the node or NULL. */
nn_node *nn_record(nn_tensor *out, const char *name, nn_backward_fn bw, int n_in, ...);
/* Adds g into t->grad (allocating it); reduces broadcast dims of g first. */
void nn_accum_grad(nn_tensor *t, nn_tensor *g);
/* The same for a gradient buffer made for t alone and not used after the call (t may adopt it). */
void nn_accum_grad_owned(nn_tensor *t, nn_tensor *g);
/* Grad state behind nn_scope: the no-grad depth and, inside a scope with `only`, the persistent tensors
 * that may still get a gradient (NULL: all of them). */
int nn_no_grad_depth(void);
void nn_set_no_grad_depth(int depth);
const nn_params *nn_grad_only(void);
void nn_set_grad_only(const nn_params *only);
extern _Thread_local const nn_params *nn_tl_grad_only;
bool nn_params_holds(const nn_params *p, const nn_tensor *t);

/* Whether an input needs its gradient computed. */
static inline bool nn_needs_grad(const nn_tensor *t) {
  return t && t->requires_grad && (!nn_tl_grad_only || !t->persistent || nn_params_holds(nn_tl_grad_only, t));
}

/* Tensor struct in the arena that views `storage`. */
nn_tensor *nn_view_of(const nn_tensor *base, int ndim, const int64_t *shape,
                      const int64_t *strides, int64_t offset);
void nn_set_contiguous_strides(nn_tensor *t);
/* Nearest or bilinear upsampling of x[N,C,H,W] into out[N,C,OH,OW] (contiguous), for inference: nothing
 * is recorded for autograd. Returns out, or NULL with the error set. */
nn_tensor *nn_upsample_into(nn_tensor *x, bool bilinear, nn_tensor *out);
int nn_norm_axis(int axis, int ndim);

/* Errors for ops: sets the message and returns NULL. */
#define NN_FAIL(...) do { nn_set_error(__VA_ARGS__); return NULL; } while (0)
#define NN_CHECK_F32(t, opname) \
  do { if ((t)->dtype != NN_F32) NN_FAIL("%s: expected f32 tensor, got %s", opname, nn_dtype_name((t)->dtype)); } while (0)

/* Broadcast shape of a and b into shape/ndim; false if incompatible. */
bool nn_broadcast_shape(const nn_tensor *a, const nn_tensor *b, int *ndim, int64_t *shape);

/* Returns a contiguous f32 pointer for t (copying into the arena when strided). */
const float *nn_dense_f32(nn_tensor *t);
/* Reads integer tensor element i (dense order) as int64. */
int64_t nn_index_at(const nn_tensor *t, int64_t i);


/* exp(x) for x <= 0 in plain arithmetic the compiler vectorises (no libm call): 2^n * p(r) with
 * r = x - n ln 2 in [-ln2/2, ln2/2] and p Cephes' degree-6 fit (relative error < 2e-7). Below -87 it
 * returns e^-87 (near 2^-126, the least normal float). */
static inline float nn_exp_nonpositive(float x) {
  x = x >= -87.0f ? x : -87.0f; /* NaN too: the integer conversion below must stay defined */
  /* round to nearest by the float adder (1.5 * 2^23 pushes the fraction out) */
  float n = (x * 1.44269504088896341f + 12582912.0f) - 12582912.0f;
  float r = x - n * 0.693359375f + n * 2.12194440e-4f;
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * r * r + r + 1.0f;
  int32_t bits = ((int32_t)n + 127) << 23; /* 2^n; memcpy (not a union) keeps the loop vectorisable */
  float scale;
  memcpy(&scale, &bits, sizeof scale);
  return p * scale;
}

/* sigmoid and tanh on nn_exp_nonpositive of -|x| (absolute error ~1e-7): vectorised gate loops */
static inline float nn_sigmoid_fast(float x) {
  float e = nn_exp_nonpositive(-fabsf(x));
  return (x >= 0.0f ? 1.0f : e) / (1.0f + e);
}
/* x sigmoid(x) = x / (1 + e^-x) = x e^x / (1 + e^x): one exp of -|x| either way */
static inline float nn_silu_fast(float x) {
  float e = nn_exp_nonpositive(-fabsf(x));
  return (x >= 0.0f ? x : x * e) / (1.0f + e);
}
static inline float nn_tanh_fast(float x) {
  float e = nn_exp_nonpositive(-2.0f * fabsf(x)), t = (1.0f - e) / (1.0f + e);
  return x >= 0.0f ? t : -t;
}

/* Sums of floats in 16 lanes (vectorised; a single double accumulator is a chain of dependent adds,
 * four cycles per element), the lanes then added in double. Fixed lanes: the same bits on any thread. */
double nn_lane_sum(const float *x, int64_t n);
double nn_lane_sum_sq(const float *x, int64_t n);

/* Batch parallelism: fn(ctx, part, i0, i1) for `parts` contiguous ranges of [0, n) (part p gets
 * [n p / parts, n (p + 1) / parts)), one per pool thread, each running with a thread budget of 1 so the
 * kernels it calls stay on its thread. nn_batch_parts(n) = min(n, this thread's count): size per-part
 * scratch with it, and with nn_set_thread_budget(1) in effect for anything sized by the thread count. */
typedef void (*nn_part_fn)(void *ctx, int part, int64_t i0, int64_t i1);
int nn_batch_parts(int64_t n);
void nn_parallel_parts(int64_t n, int parts, nn_part_fn fn, void *ctx);

/* Gemm wrapper: C = alpha * op(A) op(B) + beta * C, row-major. */
void nn_sgemm(bool ta, bool tb, int64_t m, int64_t n, int64_t k, float alpha, const float *a,
              int64_t lda, const float *b, int64_t ldb, float beta, float *c, int64_t ldc);

#endif
