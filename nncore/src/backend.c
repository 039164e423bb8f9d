/* The backend table: CPU always, CUDA when compiled in (cuda/backend_cuda.cu). */
#include "internal.h"

#include <stdlib.h>

static bool cpu_available(void) { return true; }
static void *cpu_alloc(size_t n) {
  void *p = NULL;
  return posix_memalign(&p, 64, n ? n : 64) == 0 ? p : NULL;
}
static void cpu_free(void *p) { free(p); }
static bool cpu_copy(void *dst, const void *src, size_t n) {
  memcpy(dst, src, n);
  return true;
}
static bool cpu_sync(void) { return true; }

static const nn_backend cpu_backend = {
    .name = "cpu", .device = NN_CPU, .available = cpu_available, .alloc = cpu_alloc, .free = cpu_free,
    .to_host = cpu_copy, .from_host = cpu_copy, .synchronize = cpu_sync};

#ifdef NNCORE_HAVE_CUDA
extern const nn_backend nn_cuda_backend;
#endif

const nn_backend *nn_backend_get(nn_device dev) {
  switch (dev) {
  case NN_CPU: return &cpu_backend;
  case NN_CUDA:
#ifdef NNCORE_HAVE_CUDA
    return &nn_cuda_backend;
#else
    return NULL;
#endif
  }
  return NULL;
}

bool nn_device_available(nn_device dev) {
  const nn_backend *b = nn_backend_get(dev);
  return b && b->available();
}

bool nn_device_parse(const char *s, nn_device *out) {
  if (!s) return false;
  if (strcmp(s, "cpu") == 0) *out = NN_CPU;
  else if (strcmp(s, "cuda") == 0) *out = NN_CUDA;
  else return false;
  return true;
}

const char *nn_device_name(nn_device dev) { return dev == NN_CUDA ? "cuda" : "cpu"; }

nn_tensor *nn_tensor_to_device(const nn_tensor *t, nn_device dev) {
  if (!t) return NULL;
  const nn_backend *dst = nn_backend_get(dev), *src = nn_backend_get(t->device);
  if (!dst || !dst->available()) {
    nn_set_error("device %s is not available in this build or on this machine", nn_device_name(dev));
    return NULL;
  }
  nn_tensor *host = t->device == NN_CPU ? nn_tensor_persist(t) : NULL;
  if (t->device != NN_CPU) {
    /* device tensors are always dense */
    host = nn_tensor_new(t->dtype, t->ndim, t->shape);
    if (!host || !src->to_host(nn_data(host), nn_data(t), host->storage->nbytes)) {
      nn_tensor_free(host);
      nn_set_error("copy from %s failed", nn_device_name(t->device));
      return NULL;
    }
  }
  if (!host || dev == NN_CPU) return host;
  void *d = dst->alloc(host->storage->nbytes);
  if (!d || !dst->from_host(d, nn_data(host), host->storage->nbytes)) {
    if (d) dst->free(d);
    nn_tensor_free(host);
    nn_set_error("copy to %s failed", nn_device_name(dev));
    return NULL;
  }
  free(host->storage->data);
  host->storage->data = d;
  host->storage->device = dev;
  host->device = dev;
  return host;
}
