/* Engine state of the calling thread, set for a stretch of work and put back after it.
 *
 * nncore keeps three pieces of per-thread state: the current arena (where op results go), whether ops
 * record for autodiff, and the thread budget (how many pool threads the kernels and GEMMs it starts may
 * use). Code that runs a model for someone else (an inference session, a trainer, a search inside an
 * encoder) opens a scope, does its work and closes it: the caller finds its own arena, grad mode and
 * budget again, whatever scopes it had open. Scopes nest; close them in reverse order. */
#ifndef NNCORE_SCOPE_H
#define NNCORE_SCOPE_H

#include "nn.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct {
  nn_arena *arena;       /* the current arena inside the scope (NULL: keep the caller's) */
  bool no_grad;          /* record nothing (inference) */
  bool grad;             /* record, even inside a caller's no-grad scope */
  const nn_params *only; /* with grad: the only persistent tensors that get a gradient; every other
                            persistent tensor (a shared model's weights) is a constant in the scope, so a
                            search over a few inputs never writes to the weights or their gradients */
  int threads;           /* thread budget inside the scope (0: keep the caller's) */
} nn_scope_opts;

/* What a scope restores; treat as opaque. */
typedef struct {
  nn_arena *arena;
  int no_grad_depth;
  const nn_params *only;
  int threads;
} nn_scope;

nn_scope nn_scope_begin(const nn_scope_opts *o);
void nn_scope_end(const nn_scope *s);

#ifdef __cplusplus
}
#endif
#endif
