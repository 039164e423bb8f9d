/* Backends: where a tensor's storage lives and who runs its kernels.
 * CPU is the reference backend. A CUDA backend registers itself with the same
 * table when the library is built with -Dcuda=enabled/auto and a GPU is present. */
#ifndef NNCORE_BACKEND_H
#define NNCORE_BACKEND_H

#include "tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct nn_backend {
  const char *name;
  nn_device device;
  bool (*available)(void);
  void *(*alloc)(size_t nbytes);
  void (*free)(void *p);
  /* Copies between host memory and this backend's memory. */
  bool (*to_host)(void *host_dst, const void *dev_src, size_t nbytes);
  bool (*from_host)(void *dev_dst, const void *host_src, size_t nbytes);
  bool (*synchronize)(void);
} nn_backend;

/* The backend for a device, or NULL when it is not compiled in. */
const nn_backend *nn_backend_get(nn_device dev);
/* True when the device is compiled in and usable on this machine. */
bool nn_device_available(nn_device dev);
/* Parses "cpu" / "cuda"; false on anything else. */
bool nn_device_parse(const char *s, nn_device *out);
const char *nn_device_name(nn_device dev);

/* Copy of a persistent tensor on another device (persistent). */
nn_tensor *nn_tensor_to_device(const nn_tensor *t, nn_device dev);

#ifdef __cplusplus
}
#endif
#endif
