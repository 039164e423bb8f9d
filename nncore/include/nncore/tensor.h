/* nncore tensors: dtype, shape, strides, device and refcounted storage.
 *
 * Lifetime rule (the one thing to remember):
 *   - nn_tensor_new*(), nn_tensor_from_*() and nn_tensor_persist() return a
 *     *persistent* tensor that you own and release with nn_tensor_free().
 *   - every op (nn_add, nn_conv2d, ...) returns a tensor that lives in the
 *     current thread's arena and dies at the next nn_arena_reset(). This is
 *     what lets a training or streaming loop run without malloc per step.
 *
 * Errors never abort: a failing call returns NULL and records a message in
 * nn_last_error(); every op given a NULL input returns NULL, so an error
 * propagates to the end of a forward pass and can be checked once.
 */
#ifndef NNCORE_TENSOR_H
#define NNCORE_TENSOR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define NN_MAX_DIMS 6

typedef enum { NN_F32 = 0, NN_I32, NN_I64, NN_U8 } nn_dtype;
typedef enum { NN_CPU = 0, NN_CUDA = 1 } nn_device;

typedef struct nn_storage {
  void *data;
  size_t nbytes;
  int refcount;   /* heap storages only; arena storages are freed by reset */
  bool in_arena;
  nn_device device;
} nn_storage;

struct nn_node;

typedef struct nn_tensor {
  nn_dtype dtype;
  int ndim;
  int64_t shape[NN_MAX_DIMS];
  int64_t strides[NN_MAX_DIMS]; /* in elements */
  int64_t offset;               /* in elements, into storage */
  nn_storage *storage;
  nn_device device;
  bool requires_grad;
  bool persistent;              /* heap-allocated (parameters, user tensors) */
  struct nn_tensor *grad;       /* accumulated gradient (same shape) */
  struct nn_node *grad_fn;      /* node that produced this tensor, if any */
  const char *name;             /* optional, not owned */
} nn_tensor;

/* ---- errors ---- */
const char *nn_last_error(void);
void nn_clear_error(void);
void nn_set_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* ---- dtype helpers ---- */
size_t nn_dtype_size(nn_dtype dt);
const char *nn_dtype_name(nn_dtype dt);

/* ---- persistent tensors ---- */
nn_tensor *nn_tensor_new(nn_dtype dt, int ndim, const int64_t *shape);   /* zeroed */
nn_tensor *nn_tensor_from_data(nn_dtype dt, int ndim, const int64_t *shape, const void *data);
nn_tensor *nn_tensor_persist(const nn_tensor *t);  /* contiguous heap copy, no grad */
void nn_tensor_free(nn_tensor *t);                 /* no-op for arena tensors */
/* Releases the gradient buffer of a persistent tensor. */
void nn_tensor_free_grad(nn_tensor *t);

/* ---- arena tensors (die at nn_arena_reset) ---- */
nn_tensor *nn_empty(nn_dtype dt, int ndim, const int64_t *shape);
nn_tensor *nn_zeros(nn_dtype dt, int ndim, const int64_t *shape);
nn_tensor *nn_full(int ndim, const int64_t *shape, float value);
nn_tensor *nn_scalar(float value);
nn_tensor *nn_arange(int64_t n);          /* f32 0..n-1 */
nn_tensor *nn_empty_like(const nn_tensor *t);
nn_tensor *nn_zeros_like(const nn_tensor *t);

/* ---- inspection ---- */
int64_t nn_numel(const nn_tensor *t);
bool nn_is_contiguous(const nn_tensor *t);
bool nn_same_shape(const nn_tensor *a, const nn_tensor *b);
/* Pointer to the first element (storage + offset). */
void *nn_data(const nn_tensor *t);
static inline float *nn_f32(const nn_tensor *t) { return (float *)nn_data(t); }
float nn_get(const nn_tensor *t, const int64_t *idx);      /* any dtype, as float */
float nn_item(const nn_tensor *t);                          /* single-element tensor */
/* Copies (strided) contents into a dense float buffer of numel entries. */
void nn_to_float_array(const nn_tensor *t, float *out);
void nn_copy_(nn_tensor *dst, const nn_tensor *src);       /* same shape; no grad */
void nn_fill_(nn_tensor *t, float v);
void nn_tensor_print(const nn_tensor *t, const char *label);
/* "[2, 3, 4]" into buf. */
const char *nn_shape_str(const nn_tensor *t, char *buf, size_t len);

/* ---- deterministic RNG (xoshiro256**) ---- */
typedef struct { uint64_t s[4]; } nn_rng;
void nn_rng_seed(nn_rng *r, uint64_t seed);
uint64_t nn_rng_u64(nn_rng *r);
float nn_rng_uniform(nn_rng *r);            /* [0, 1) */
float nn_rng_normal(nn_rng *r);
void nn_fill_uniform_(nn_tensor *t, nn_rng *r, float lo, float hi);
void nn_fill_normal_(nn_tensor *t, nn_rng *r, float mean, float std);

/* ---- arena ---- */
typedef struct nn_arena nn_arena;
nn_arena *nn_arena_new(size_t initial_bytes);
void nn_arena_free(nn_arena *a);
void nn_arena_reset(nn_arena *a);
/* Current arena of this thread (created on first use). */
nn_arena *nn_arena_current(void);
/* Make `a` current for this thread; returns the previous one. */
nn_arena *nn_arena_set_current(nn_arena *a);
void *nn_arena_alloc(nn_arena *a, size_t nbytes);  /* 64-byte aligned, uninitialised */
size_t nn_arena_used(const nn_arena *a);
size_t nn_arena_capacity(const nn_arena *a);
/* Number of malloc calls the arena made (tests check steady state makes none). */
size_t nn_arena_mallocs(const nn_arena *a);

#ifdef __cplusplus
}
#endif
#endif
