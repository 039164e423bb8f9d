/* Threading: one small pool runs the kernels and splits the GEMMs (OpenBLAS itself stays single-threaded).
 * The process's count comes from NNCORE_NUM_THREADS (read once) or nn_set_num_threads(); a thread may
 * have a budget of its own (nn_set_thread_budget).
 * Kernels split work by output element, so results do not depend on the count. */
#ifndef NNCORE_THREADS_H
#define NNCORE_THREADS_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

void nn_set_num_threads(int n);   /* the process's count; n < 1 means "all cores" */
/* The count kernels started by this thread use: its budget, else the process's. */
int nn_get_num_threads(void);
/* This thread's budget (n < 1: none, use the process's count); returns the previous one (0: none).
 * Two sessions on two threads each keep their own; nn_scope sets it for a stretch of work. */
int nn_set_thread_budget(int n);

/* Runs fn(ctx, begin, end) over [0, n) in contiguous chunks of at least
 * min_chunk items, one per pool thread (the caller takes the first). For
 * kernels outside nncore, such as the codec's fixed-order hyper-synthesis:
 * a chunking that never changes an output keeps results thread-count free.
 * A nested call, or one while another thread holds the pool, runs inline. */
typedef void (*nn_range_fn)(void *ctx, int64_t begin, int64_t end);
void nn_parallel_for(int64_t n, int64_t min_chunk, nn_range_fn fn, void *ctx);

#ifdef __cplusplus
}
#endif
#endif
