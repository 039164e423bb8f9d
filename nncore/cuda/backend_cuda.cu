/* CUDA backend: device memory and copies. Kernels for the ops arrive with the
 * CUDA issue; this file proves the plumbing compiles and links with nvcc. */
#include <cuda_runtime.h>

extern "C" {
#include "nncore/backend.h"
}

static bool cuda_available(void) {
  int n = 0;
  return cudaGetDeviceCount(&n) == cudaSuccess && n > 0;
}

static void *cuda_alloc(size_t n) {
  void *p = NULL;
  return cudaMalloc(&p, n ? n : 256) == cudaSuccess ? p : NULL;
}

static void cuda_free(void *p) { cudaFree(p); }

static bool cuda_to_host(void *dst, const void *src, size_t n) {
  return cudaMemcpy(dst, src, n, cudaMemcpyDeviceToHost) == cudaSuccess;
}

static bool cuda_from_host(void *dst, const void *src, size_t n) {
  return cudaMemcpy(dst, src, n, cudaMemcpyHostToDevice) == cudaSuccess;
}

static bool cuda_sync(void) { return cudaDeviceSynchronize() == cudaSuccess; }

extern "C" const nn_backend nn_cuda_backend = {
    "cuda", NN_CUDA, cuda_available, cuda_alloc, cuda_free, cuda_to_host, cuda_from_host, cuda_sync};
