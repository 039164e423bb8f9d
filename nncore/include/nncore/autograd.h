/* Reverse-mode, define-by-run autodiff.
 *
 * Every op whose inputs require a gradient appends a node to the tape of the
 * current arena. nn_backward(loss) walks that tape backwards (creation order
 * is a topological order) and accumulates into .grad of every tensor that
 * requires one. Gradients of persistent tensors (parameters) are heap buffers
 * kept across steps and summed into until nn_zero_grad(); gradients of
 * intermediate tensors live in the arena.
 */
#ifndef NNCORE_AUTOGRAD_H
#define NNCORE_AUTOGRAD_H

#include "tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Backpropagates from a scalar (or from `loss` with an implicit gradient of ones). */
bool nn_backward(nn_tensor *loss);
/* Backpropagates with an explicit output gradient of loss's shape. */
bool nn_backward_with(nn_tensor *out, const nn_tensor *grad_out);

/* Scopes in which ops record nothing (inference, optimizer updates). Nestable. */
void nn_no_grad_begin(void);
void nn_no_grad_end(void);
bool nn_grad_enabled(void);

/* A view of t that shares its storage and never requires a gradient. */
nn_tensor *nn_detach(nn_tensor *t);
/* Marks a persistent tensor as a trainable leaf (or freezes it with false). */
void nn_set_requires_grad(nn_tensor *t, bool on);
void nn_zero_grad(nn_tensor *t);
/* Number of nodes on the current arena's tape. */
size_t nn_tape_size(void);

#ifdef __cplusplus
}
#endif
#endif
