/* The tape, gradient accumulation and backward pass. */
#include "internal.h"

#include <stdarg.h>

bool nn_arena_push_node(nn_arena *a, nn_node *n);
nn_node **nn_arena_tape(nn_arena *a, size_t *n);

static _Thread_local int tl_no_grad;
_Thread_local const nn_params *nn_tl_grad_only;

int nn_no_grad_depth(void) { return tl_no_grad; }
void nn_set_no_grad_depth(int depth) { tl_no_grad = depth > 0 ? depth : 0; }
const nn_params *nn_grad_only(void) { return nn_tl_grad_only; }
void nn_set_grad_only(const nn_params *only) { nn_tl_grad_only = only; }

bool nn_params_holds(const nn_params *p, const nn_tensor *t) {
  for (int i = 0; i < p->n; i++)
    if (p->t[i] == t) return true;
  return false;
}

void nn_no_grad_begin(void) { tl_no_grad++; }
void nn_no_grad_end(void) {
  if (tl_no_grad > 0) tl_no_grad--;
}
bool nn_grad_enabled(void) { return tl_no_grad == 0; }

size_t nn_tape_size(void) {
  size_t n;
  nn_arena_tape(nn_arena_current(), &n);
  return n;
}

nn_node *nn_record(nn_tensor *out, const char *name, nn_backward_fn bw, int n_in, ...) {
  if (!out || tl_no_grad) return NULL;
  nn_tensor *in[NN_NODE_MAX_IN];
  bool any = false;
  va_list ap;
  va_start(ap, n_in);
  for (int i = 0; i < n_in; i++) {
    in[i] = va_arg(ap, nn_tensor *);
    if (nn_needs_grad(in[i])) any = true;
  }
  va_end(ap);
  if (!any) return NULL;
  nn_arena *a = nn_arena_current();
  nn_node *n = nn_arena_alloc(a, sizeof *n);
  if (!n) return NULL;
  memset(n, 0, sizeof *n);
  n->backward = bw;
  n->name = name;
  n->out = out;
  n->n_in = n_in;
  for (int i = 0; i < n_in; i++) n->in[i] = in[i];
  if (!nn_arena_push_node(a, n)) return NULL;
  out->requires_grad = true;
  out->grad_fn = n;
  return n;
}

/* Gradients of activations are megabytes: the copy or sum into the buffer is split between threads
 * (element-wise, so the bits do not depend on the count). */
typedef struct { float *d; const float *s; bool add; } grad_copy_ctx;

static void grad_copy_range(void *p, int64_t i0, int64_t i1) {
  grad_copy_ctx *c = p;
  if (c->add)
    for (int64_t i = i0; i < i1; i++) c->d[i] += c->s[i];
  else
    memcpy(c->d + i0, c->s + i0, (size_t)(i1 - i0) * sizeof(float));
}

/* dst = g, or dst += g; g's strides are walked by nn_dense_f32 when it is a view */
static void into_grad(nn_tensor *dst, nn_tensor *g, bool add) {
  grad_copy_ctx c = {nn_f32(dst), nn_dense_f32(g), add};
  if (!c.s) return;
  nn_parallel_for(nn_numel(dst), 1 << 16, grad_copy_range, &c);
}

void nn_accum_grad(nn_tensor *t, nn_tensor *g) {
  if (!nn_needs_grad(t) || !g) return;
  if (!nn_same_shape(t, g)) {
    g = nn_sum_to(g, t->ndim, t->shape);
    if (!g) return;
  }
  if (!t->grad) {
    if (t->persistent) {
      t->grad = nn_tensor_new(NN_F32, t->ndim, t->shape);
      if (!t->grad) return;
      into_grad(t->grad, g, true);
    } else {
      t->grad = nn_empty(NN_F32, t->ndim, t->shape);
      if (!t->grad) return;
      into_grad(t->grad, g, false);
    }
    return;
  }
  into_grad(t->grad, g, true);
}

/* The backward functions' fresh gradient buffers become the input's gradient as they are, when it
 * has none yet: no copy of a whole activation (a tenth of a detector's training step). */
void nn_accum_grad_owned(nn_tensor *t, nn_tensor *g) {
  if (g && !t->grad && nn_needs_grad(t) && !t->persistent && g->dtype == NN_F32 && nn_same_shape(t, g) &&
      nn_is_contiguous(g)) {
    t->grad = g;
    return;
  }
  nn_accum_grad(t, g);
}

bool nn_backward_with(nn_tensor *out, const nn_tensor *grad_out) {
  if (!out) {
    nn_set_error("backward: no output tensor (an earlier op failed: %s)", nn_last_error());
    return false;
  }
  if (!out->requires_grad) {
    nn_set_error("backward: the output does not require a gradient (no trainable input, or built under no_grad)");
    return false;
  }
  size_t nt;
  nn_node **tape = nn_arena_tape(nn_arena_current(), &nt);
  /* forget intermediate gradients of an earlier backward over the same tape */
  for (size_t i = 0; i < nt; i++)
    if (!tape[i]->out->persistent) tape[i]->out->grad = NULL;
  nn_no_grad_begin();
  nn_tensor *g = nn_empty(NN_F32, out->ndim, out->shape);
  if (!g) {
    nn_no_grad_end();
    return false;
  }
  if (grad_out) nn_copy_(g, grad_out);
  else nn_fill_(g, 1.0f);
  if (out->persistent || !out->grad_fn) nn_accum_grad(out, g);
  else out->grad = g;
  for (size_t i = nt; i-- > 0;) {
    nn_node *n = tape[i];
    if (n->out->grad) n->backward(n, n->out->grad);
  }
  nn_no_grad_end();
  return true;
}

bool nn_backward(nn_tensor *loss) { return nn_backward_with(loss, NULL); }

nn_tensor *nn_detach(nn_tensor *t) {
  if (!t) return NULL;
  nn_tensor *v = nn_view_of(t, t->ndim, t->shape, t->strides, t->offset);
  return v;
}

void nn_set_requires_grad(nn_tensor *t, bool on) {
  if (t) t->requires_grad = on;
}

void nn_zero_grad(nn_tensor *t) {
  if (t && t->grad) nn_fill_(t->grad, 0.0f);
}
