/* Element-wise chains of a prepared graph (graph_fuse.c): used by graph.c's inference plan only. */
#ifndef NNCORE_GRAPH_FUSE_H
#define NNCORE_GRAPH_FUSE_H

#include "nncore/graph.h"

typedef struct nn_eltwise_chain nn_eltwise_chain;

/* The chain of element-wise nodes that can run as one in-place pass over value `root` (made by node k,
 * or by an activation already fused into node k), or NULL. Nodes it takes are set in taken[]; each
 * taken node's output then stands for the chain's result (every other value of the chain is read
 * only inside it). uses[] counts each value's readers, graph outputs included. */
nn_eltwise_chain *nn_eltwise_plan(const nn_graph *g, int k, int root, const int *uses, bool *taken);
/* Applies the chain to y (root's tensor, dense, overwritten) in one pass; v holds every value made so
 * far (the chain's other operands were made before its root). */
bool nn_eltwise_run(const nn_eltwise_chain *c, nn_tensor *y, nn_tensor *const *v);
void nn_eltwise_free(nn_eltwise_chain *c);

#endif
