/* Threading: OpenBLAS runs the GEMMs, a small pool runs the other kernels.
 * The count comes from NNCORE_NUM_THREADS (read once) or nn_set_num_threads().
 * Kernels split work by output element, so results do not depend on the count. */
#ifndef NNCORE_THREADS_H
#define NNCORE_THREADS_H

#ifdef __cplusplus
extern "C" {
#endif

void nn_set_num_threads(int n);   /* n < 1 means "all cores" */
int nn_get_num_threads(void);

#ifdef __cplusplus
}
#endif
#endif
