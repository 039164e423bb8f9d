/* Tensors, storages, the step arena, errors and the RNG. */
#include "internal.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

/* ------------------------------------------------------------------ errors */

static _Thread_local char tl_error[512];

const char *nn_last_error(void) { return tl_error[0] ? tl_error : "no error"; }
void nn_clear_error(void) { tl_error[0] = 0; }
void nn_set_error(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(tl_error, sizeof tl_error, fmt, ap);
  va_end(ap);
}

size_t nn_dtype_size(nn_dtype dt) {
  switch (dt) {
  case NN_F32: return 4;
  case NN_I32: return 4;
  case NN_I64: return 8;
  case NN_U8: return 1;
  }
  return 0;
}

const char *nn_dtype_name(nn_dtype dt) {
  switch (dt) {
  case NN_F32: return "f32";
  case NN_I32: return "i32";
  case NN_I64: return "i64";
  case NN_U8: return "u8";
  }
  return "?";
}

/* ------------------------------------------------------------------- arena */

typedef struct {
  char *base;
  size_t size, used;
} arena_chunk;

struct nn_arena {
  arena_chunk *chunks;
  int n_chunks, cap_chunks;
  size_t mallocs;
  /* the tape of recorded nodes, kept (with its capacity) across resets */
  nn_node **tape;
  size_t tape_n, tape_cap;
};

#define ARENA_ALIGN 64

static bool arena_add_chunk(nn_arena *a, size_t size) {
  if (a->n_chunks == a->cap_chunks) {
    int nc = a->cap_chunks ? a->cap_chunks * 2 : 4;
    arena_chunk *c = realloc(a->chunks, (size_t)nc * sizeof *c);
    if (!c) return false;
    a->chunks = c;
    a->cap_chunks = nc;
  }
  void *p = NULL;
  if (posix_memalign(&p, ARENA_ALIGN, size) != 0) return false;
  a->mallocs++;
  a->chunks[a->n_chunks++] = (arena_chunk){p, size, 0};
  return true;
}

nn_arena *nn_arena_new(size_t initial_bytes) {
  nn_arena *a = calloc(1, sizeof *a);
  if (!a) return NULL;
  if (initial_bytes < 1 << 16) initial_bytes = 1 << 16;
  if (!arena_add_chunk(a, initial_bytes)) {
    free(a);
    return NULL;
  }
  return a;
}

void nn_arena_free(nn_arena *a) {
  if (!a) return;
  for (int i = 0; i < a->n_chunks; i++) free(a->chunks[i].base);
  free(a->chunks);
  free(a->tape);
  free(a);
}

size_t nn_arena_capacity(const nn_arena *a) {
  size_t s = 0;
  for (int i = 0; i < a->n_chunks; i++) s += a->chunks[i].size;
  return s;
}

size_t nn_arena_used(const nn_arena *a) {
  size_t s = 0;
  for (int i = 0; i < a->n_chunks; i++) s += a->chunks[i].used;
  return s;
}

size_t nn_arena_mallocs(const nn_arena *a) { return a->mallocs; }

/* Reset keeps the chunks, and a step like the last one lands in the same, already touched memory. (Merging
 * them into one fresh block at reset, as this did, made the step after the first page-fault its whole working
 * set again: 0.3 s of a 720p picture's 0.5 s decode.) Allocation is first fit over the chunks in order; a
 * request that fits nowhere gives back the chunks this step has not used (all too small for it) and adds one
 * at least twice the largest, so the chunks grow geometrically and settle after a few steps. */
void nn_arena_reset(nn_arena *a) {
  if (!a) return;
  for (int i = 0; i < a->n_chunks; i++) a->chunks[i].used = 0;
  a->tape_n = 0;
}

void *nn_arena_alloc(nn_arena *a, size_t nbytes) {
  nbytes = (nbytes + ARENA_ALIGN - 1) & ~(size_t)(ARENA_ALIGN - 1);
  if (nbytes == 0) nbytes = ARENA_ALIGN;
  for (int i = 0; i < a->n_chunks; i++) {
    arena_chunk *c = &a->chunks[i];
    if (c->size - c->used >= nbytes) {
      void *p = c->base + c->used;
      c->used += nbytes;
      return p;
    }
  }
  size_t largest = 0;
  int kept = 0;
  for (int i = 0; i < a->n_chunks; i++) {
    if (a->chunks[i].size > largest) largest = a->chunks[i].size;
    if (a->chunks[i].used == 0) free(a->chunks[i].base);
    else a->chunks[kept++] = a->chunks[i];
  }
  a->n_chunks = kept;
  size_t want = largest ? largest * 2 : (1 << 20);
  if (want < nbytes) want = nbytes;
  if (!arena_add_chunk(a, want)) {
    nn_set_error("arena: out of memory allocating %zu bytes", nbytes);
    return NULL;
  }
  arena_chunk *c = &a->chunks[a->n_chunks - 1];
  c->used = nbytes;
  return c->base;
}

/* Tape access for autograd.c */
bool nn_arena_push_node(nn_arena *a, nn_node *n) {
  if (a->tape_n == a->tape_cap) {
    size_t nc = a->tape_cap ? a->tape_cap * 2 : 1024;
    nn_node **t = realloc(a->tape, nc * sizeof *t);
    if (!t) return false;
    a->tape = t;
    a->tape_cap = nc;
  }
  a->tape[a->tape_n++] = n;
  return true;
}
nn_node **nn_arena_tape(nn_arena *a, size_t *n) {
  *n = a->tape_n;
  return a->tape;
}

static pthread_key_t tl_key;
static pthread_once_t tl_once = PTHREAD_ONCE_INIT;
static _Thread_local nn_arena *tl_default;
static _Thread_local nn_arena *tl_current;

static void default_arena_destroy(void *p) { nn_arena_free(p); }
static void make_key(void) { pthread_key_create(&tl_key, default_arena_destroy); }

nn_arena *nn_arena_current(void) {
  if (tl_current) return tl_current;
  if (!tl_default) {
    pthread_once(&tl_once, make_key);
    tl_default = nn_arena_new(1 << 20);
    pthread_setspecific(tl_key, tl_default); /* freed when the thread exits */
  }
  tl_current = tl_default;
  return tl_current;
}

nn_arena *nn_arena_set_current(nn_arena *a) {
  nn_arena *prev = nn_arena_current();
  tl_current = a ? a : tl_default;
  return prev;
}

/* ----------------------------------------------------------------- tensors */

void nn_set_contiguous_strides(nn_tensor *t) {
  int64_t s = 1;
  for (int i = t->ndim - 1; i >= 0; i--) {
    t->strides[i] = s;
    s *= t->shape[i];
  }
}

int64_t nn_numel(const nn_tensor *t) {
  int64_t n = 1;
  for (int i = 0; i < t->ndim; i++) n *= t->shape[i];
  return n;
}

static bool shape_ok(int ndim, const int64_t *shape, const char *who) {
  if (ndim < 0 || ndim > NN_MAX_DIMS) {
    nn_set_error("%s: %d dimensions (at most %d)", who, ndim, NN_MAX_DIMS);
    return false;
  }
  int64_t n = 1;
  for (int i = 0; i < ndim; i++) {
    if (shape[i] < 0) {
      nn_set_error("%s: negative size %lld in dim %d", who, (long long)shape[i], i);
      return false;
    }
    if (shape[i] && n > INT64_MAX / 16 / shape[i]) {
      nn_set_error("%s: shape too large", who);
      return false;
    }
    n *= shape[i];
  }
  return true;
}

static nn_tensor *tensor_alloc(nn_dtype dt, int ndim, const int64_t *shape, bool persistent) {
  if (!shape_ok(ndim, shape, "tensor")) return NULL;
  nn_tensor *t;
  nn_storage *s;
  int64_t n = 1;
  for (int i = 0; i < ndim; i++) n *= shape[i];
  size_t nbytes = (size_t)n * nn_dtype_size(dt);
  if (persistent) {
    t = calloc(1, sizeof *t);
    s = calloc(1, sizeof *s);
    void *d = NULL;
    if (!t || !s || posix_memalign(&d, 64, nbytes ? nbytes : 64) != 0) {
      free(t);
      free(s);
      nn_set_error("tensor: out of memory (%zu bytes)", nbytes);
      return NULL;
    }
    s->data = d;
    s->refcount = 1;
  } else {
    nn_arena *a = nn_arena_current();
    t = nn_arena_alloc(a, sizeof *t);
    s = nn_arena_alloc(a, sizeof *s);
    void *d = nn_arena_alloc(a, nbytes);
    if (!t || !s || !d) return NULL;
    memset(t, 0, sizeof *t);
    memset(s, 0, sizeof *s);
    s->data = d;
    s->in_arena = true;
  }
  s->nbytes = nbytes;
  t->dtype = dt;
  t->ndim = ndim;
  for (int i = 0; i < ndim; i++) t->shape[i] = shape[i];
  nn_set_contiguous_strides(t);
  t->storage = s;
  t->persistent = persistent;
  return t;
}

nn_tensor *nn_tensor_new(nn_dtype dt, int ndim, const int64_t *shape) {
  nn_tensor *t = tensor_alloc(dt, ndim, shape, true);
  if (t) memset(t->storage->data, 0, t->storage->nbytes);
  return t;
}

nn_tensor *nn_tensor_from_data(nn_dtype dt, int ndim, const int64_t *shape, const void *data) {
  nn_tensor *t = tensor_alloc(dt, ndim, shape, true);
  if (t && data) memcpy(t->storage->data, data, t->storage->nbytes);
  return t;
}

nn_tensor *nn_tensor_persist(const nn_tensor *src) {
  if (!src) return NULL;
  nn_tensor *t = tensor_alloc(src->dtype, src->ndim, src->shape, true);
  if (t) nn_copy_(t, src);
  return t;
}

void nn_tensor_free_grad(nn_tensor *t) {
  if (t && t->persistent && t->grad) {
    nn_tensor_free(t->grad);
    t->grad = NULL;
  }
}

void nn_tensor_free(nn_tensor *t) {
  if (!t || !t->persistent) return;
  nn_tensor_free_grad(t);
  nn_storage *s = t->storage;
  if (s && --s->refcount == 0) {
    const nn_backend *b = nn_backend_get(s->device);
    if (s->device != NN_CPU && b) b->free(s->data);
    else free(s->data);
    free(s);
  }
  free(t);
}

nn_tensor *nn_empty(nn_dtype dt, int ndim, const int64_t *shape) {
  return tensor_alloc(dt, ndim, shape, false);
}

nn_tensor *nn_zeros(nn_dtype dt, int ndim, const int64_t *shape) {
  nn_tensor *t = tensor_alloc(dt, ndim, shape, false);
  if (t) memset(t->storage->data, 0, t->storage->nbytes);
  return t;
}

nn_tensor *nn_full(int ndim, const int64_t *shape, float value) {
  nn_tensor *t = tensor_alloc(NN_F32, ndim, shape, false);
  if (t) nn_fill_(t, value);
  return t;
}

nn_tensor *nn_scalar(float value) { return nn_full(0, NULL, value); }

nn_tensor *nn_arange(int64_t n) {
  nn_tensor *t = nn_empty(NN_F32, 1, &n);
  if (t)
    for (int64_t i = 0; i < n; i++) nn_f32(t)[i] = (float)i;
  return t;
}

nn_tensor *nn_empty_like(const nn_tensor *t) { return t ? nn_empty(t->dtype, t->ndim, t->shape) : NULL; }
nn_tensor *nn_zeros_like(const nn_tensor *t) { return t ? nn_zeros(t->dtype, t->ndim, t->shape) : NULL; }

nn_tensor *nn_view_of(const nn_tensor *base, int ndim, const int64_t *shape,
                      const int64_t *strides, int64_t offset) {
  nn_tensor *t = nn_arena_alloc(nn_arena_current(), sizeof *t);
  if (!t) return NULL;
  memset(t, 0, sizeof *t);
  t->dtype = base->dtype;
  t->ndim = ndim;
  for (int i = 0; i < ndim; i++) {
    t->shape[i] = shape[i];
    t->strides[i] = strides[i];
  }
  t->offset = offset;
  t->storage = base->storage;
  t->device = base->device;
  return t;
}

bool nn_is_contiguous(const nn_tensor *t) {
  int64_t s = 1;
  for (int i = t->ndim - 1; i >= 0; i--) {
    if (t->shape[i] != 1 && t->strides[i] != s) return false;
    s *= t->shape[i];
  }
  return true;
}

bool nn_same_shape(const nn_tensor *a, const nn_tensor *b) {
  if (a->ndim != b->ndim) return false;
  for (int i = 0; i < a->ndim; i++)
    if (a->shape[i] != b->shape[i]) return false;
  return true;
}

void *nn_data(const nn_tensor *t) {
  return (char *)t->storage->data + (size_t)t->offset * nn_dtype_size(t->dtype);
}

int nn_norm_axis(int axis, int ndim) {
  if (axis < 0) axis += ndim;
  return (axis < 0 || axis >= (ndim ? ndim : 1)) ? -1 : axis;
}

/* Offset (in elements) of the i-th element in row-major logical order. */
static int64_t strided_offset(const nn_tensor *t, int64_t i) {
  int64_t off = 0;
  for (int d = t->ndim - 1; d >= 0; d--) {
    int64_t idx = i % t->shape[d];
    i /= t->shape[d];
    off += idx * t->strides[d];
  }
  return off;
}

static float load_as_float(const nn_tensor *t, int64_t off) {
  const char *base = (const char *)t->storage->data;
  int64_t e = t->offset + off;
  switch (t->dtype) {
  case NN_F32: return ((const float *)base)[e];
  case NN_I32: return (float)((const int32_t *)base)[e];
  case NN_I64: return (float)((const int64_t *)base)[e];
  case NN_U8: return (float)((const uint8_t *)base)[e];
  }
  return 0;
}

int64_t nn_index_at(const nn_tensor *t, int64_t i) {
  int64_t off = nn_is_contiguous(t) ? i : strided_offset(t, i);
  const char *base = (const char *)t->storage->data;
  int64_t e = t->offset + off;
  switch (t->dtype) {
  case NN_I32: return ((const int32_t *)base)[e];
  case NN_I64: return ((const int64_t *)base)[e];
  case NN_U8: return ((const uint8_t *)base)[e];
  case NN_F32: return (int64_t)((const float *)base)[e];
  }
  return 0;
}

float nn_get(const nn_tensor *t, const int64_t *idx) {
  int64_t off = 0;
  for (int d = 0; d < t->ndim; d++) off += idx[d] * t->strides[d];
  return load_as_float(t, off);
}

float nn_item(const nn_tensor *t) {
  if (!t) return NAN;
  return load_as_float(t, 0);
}

void nn_to_float_array(const nn_tensor *t, float *out) {
  int64_t n = nn_numel(t);
  if (t->dtype == NN_F32 && nn_is_contiguous(t)) {
    memcpy(out, nn_data(t), (size_t)n * 4);
    return;
  }
  for (int64_t i = 0; i < n; i++) out[i] = load_as_float(t, strided_offset(t, i));
}

/* Strided copy between tensors of the same shape and dtype. Walks the
 * innermost dimension in a tight loop; used by nn_contiguous and friends. */
void nn_copy_(nn_tensor *dst, const nn_tensor *src) {
  int64_t n = nn_numel(src);
  size_t es = nn_dtype_size(src->dtype);
  if (dst->dtype == src->dtype && nn_is_contiguous(dst) && nn_is_contiguous(src)) {
    memmove(nn_data(dst), nn_data(src), (size_t)n * es);
    return;
  }
  if (dst->dtype != src->dtype || dst->dtype != NN_F32) {
    for (int64_t i = 0; i < n; i++) {
      float v = load_as_float(src, strided_offset(src, i));
      int64_t o = dst->offset + strided_offset(dst, i);
      switch (dst->dtype) {
      case NN_F32: ((float *)dst->storage->data)[o] = v; break;
      case NN_I32: ((int32_t *)dst->storage->data)[o] = (int32_t)v; break;
      case NN_I64: ((int64_t *)dst->storage->data)[o] = (int64_t)v; break;
      case NN_U8: ((uint8_t *)dst->storage->data)[o] = (uint8_t)v; break;
      }
    }
    return;
  }
  int nd = src->ndim;
  if (nd == 0) {
    *nn_f32(dst) = *nn_f32(src);
    return;
  }
  int64_t inner = src->shape[nd - 1];
  int64_t rows = inner ? n / inner : 0;
  int64_t ss = src->strides[nd - 1], ds = dst->strides[nd - 1];
  const float *sb = (const float *)src->storage->data + src->offset;
  float *db = (float *)dst->storage->data + dst->offset;
  int64_t idx[NN_MAX_DIMS] = {0};
  int64_t so = 0, dof = 0;
  for (int64_t r = 0; r < rows; r++) {
    const float *sp = sb + so;
    float *dp = db + dof;
    if (ss == 1 && ds == 1) memcpy(dp, sp, (size_t)inner * 4);
    else
      for (int64_t j = 0; j < inner; j++) dp[j * ds] = sp[j * ss];
    for (int d = nd - 2; d >= 0; d--) {
      idx[d]++;
      so += src->strides[d];
      dof += dst->strides[d];
      if (idx[d] < src->shape[d]) break;
      so -= idx[d] * src->strides[d];
      dof -= idx[d] * dst->strides[d];
      idx[d] = 0;
    }
  }
}

void nn_fill_(nn_tensor *t, float v) {
  int64_t n = nn_numel(t);
  if (t->dtype == NN_F32 && nn_is_contiguous(t)) {
    float *p = nn_f32(t);
    for (int64_t i = 0; i < n; i++) p[i] = v;
    return;
  }
  for (int64_t i = 0; i < n; i++) {
    int64_t o = t->offset + strided_offset(t, i);
    switch (t->dtype) {
    case NN_F32: ((float *)t->storage->data)[o] = v; break;
    case NN_I32: ((int32_t *)t->storage->data)[o] = (int32_t)v; break;
    case NN_I64: ((int64_t *)t->storage->data)[o] = (int64_t)v; break;
    case NN_U8: ((uint8_t *)t->storage->data)[o] = (uint8_t)v; break;
    }
  }
}

const char *nn_shape_str(const nn_tensor *t, char *buf, size_t len) {
  size_t o = 0;
  o += (size_t)snprintf(buf + o, len - o, "[");
  for (int i = 0; i < t->ndim && o < len; i++)
    o += (size_t)snprintf(buf + o, len - o, i ? ", %lld" : "%lld", (long long)t->shape[i]);
  if (o < len) snprintf(buf + o, len - o, "]");
  return buf;
}

void nn_tensor_print(const nn_tensor *t, const char *label) {
  char sb[96];
  printf("%s %s %s:", label ? label : "tensor", nn_dtype_name(t->dtype), nn_shape_str(t, sb, sizeof sb));
  int64_t n = nn_numel(t);
  for (int64_t i = 0; i < n && i < 32; i++) printf(" %g", load_as_float(t, strided_offset(t, i)));
  printf(n > 32 ? " ...\n" : "\n");
}

const float *nn_dense_f32(nn_tensor *t) {
  if (nn_is_contiguous(t)) return nn_f32(t);
  nn_tensor *c = nn_empty(NN_F32, t->ndim, t->shape);
  if (!c) return NULL;
  nn_copy_(c, t);
  return nn_f32(c);
}

/* --------------------------------------------------------------------- rng */

static uint64_t splitmix(uint64_t *x) {
  uint64_t z = (*x += 0x9e3779b97f4a7c15ULL);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

void nn_rng_seed(nn_rng *r, uint64_t seed) {
  for (int i = 0; i < 4; i++) r->s[i] = splitmix(&seed);
}

static inline uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

uint64_t nn_rng_u64(nn_rng *r) {
  uint64_t *s = r->s;
  uint64_t result = rotl(s[1] * 5, 7) * 9;
  uint64_t t = s[1] << 17;
  s[2] ^= s[0];
  s[3] ^= s[1];
  s[1] ^= s[2];
  s[0] ^= s[3];
  s[2] ^= t;
  s[3] = rotl(s[3], 45);
  return result;
}

float nn_rng_uniform(nn_rng *r) { return (float)(nn_rng_u64(r) >> 40) * (1.0f / 16777216.0f); }

float nn_rng_normal(nn_rng *r) {
  /* Box-Muller; one value per call keeps the stream simple to reason about */
  double u1 = ((double)(nn_rng_u64(r) >> 11) + 1.0) * (1.0 / 9007199254740993.0);
  double u2 = (double)(nn_rng_u64(r) >> 11) * (1.0 / 9007199254740992.0);
  return (float)(sqrt(-2.0 * log(u1)) * cos(2.0 * M_PI * u2));
}

void nn_fill_uniform_(nn_tensor *t, nn_rng *r, float lo, float hi) {
  int64_t n = nn_numel(t);
  float *p = nn_f32(t);
  for (int64_t i = 0; i < n; i++) p[i] = lo + (hi - lo) * nn_rng_uniform(r);
}

void nn_fill_normal_(nn_tensor *t, nn_rng *r, float mean, float std) {
  int64_t n = nn_numel(t);
  float *p = nn_f32(t);
  for (int64_t i = 0; i < n; i++) p[i] = mean + std * nn_rng_normal(r);
}
