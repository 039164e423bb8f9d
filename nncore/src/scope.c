/* Scopes: set the thread's arena, grad mode and thread budget, and put back exactly what was there.
 * Restoring saved values (not undoing steps) is what makes a scope safe around code that left its own
 * no-grad scopes unbalanced after an error. */
#include "internal.h"

nn_scope nn_scope_begin(const nn_scope_opts *o) {
  nn_scope s = {.arena = nn_arena_current(), .no_grad_depth = nn_no_grad_depth(), .only = nn_grad_only(),
                .threads = nn_set_thread_budget(0)};
  nn_set_thread_budget(o->threads ? o->threads : s.threads);
  if (o->arena) nn_arena_set_current(o->arena);
  if (o->grad) {
    nn_set_no_grad_depth(0);
    nn_set_grad_only(o->only);
  } else if (o->no_grad) {
    nn_set_no_grad_depth(s.no_grad_depth + 1);
  }
  return s;
}

void nn_scope_end(const nn_scope *s) {
  nn_arena_set_current(s->arena);
  nn_set_no_grad_depth(s->no_grad_depth);
  nn_set_grad_only(s->only);
  nn_set_thread_budget(s->threads);
}
