/* Element-wise chains: exporters spell a conv's learnable scale and shift, hard-swish and the like as
 * runs of Add/Mul/Div/Clip nodes (PP-OCRv4: six after most convs), each a whole pass over a map too
 * large for the caches. A chain runs as one pass, block by block in L1, in place over the tensor of the
 * node it follows (its root).
 *
 * The rule the plan keeps: every value of a chain but its last is read only inside the chain (so the
 * root's tensor may be overwritten), and every other operand is a constant or a value made before the
 * root runs (so the chain may run where the root does). Operands reach elements whole (same shape), one
 * per channel (dimension 1) or one for all. */
#include "graph_fuse.h"
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "internal.h"
#include "nncore/threads.h"

#define CHAIN_MAX 32 /* steps in one chain */
#define CHAIN_EXT 16 /* operands from outside it */
#define BLOCK 256    /* elements per block: a chain's registers stay in L1 */

enum { FROM_CHAIN, FROM_WHOLE, FROM_CHANNEL, FROM_SCALAR };

typedef struct {
  uint8_t from, idx; /* FROM_CHAIN: register (0 the root, s + 1 step s's result); else an outside operand */
} operand;

typedef struct {
  nn_graph_op op;
  operand a, b; /* b unused by unary ops */
  float f[2];
} step;

struct nn_eltwise_chain {
  int n_steps, n_ext;
  step s[CHAIN_MAX];
  int ext[CHAIN_EXT]; /* value ids of the outside operands */
  bool per_channel;
  int64_t channels, plane; /* the root's dimension 1 and the product of those after it */
};

static int arity_of(nn_graph_op op) {
  switch (op) {
  case NN_OP_ADD:
  case NN_OP_SUB:
  case NN_OP_MUL:
  case NN_OP_DIV: return 2;
  case NN_OP_RELU:
  case NN_OP_LEAKY_RELU:
  case NN_OP_SIGMOID:
  case NN_OP_HARD_SIGMOID:
  case NN_OP_HARD_SWISH:
  case NN_OP_CLIP:
  case NN_OP_NEG:
  case NN_OP_ABS: return 1;
  default: return 0;
  }
}

static bool same_shape(const nn_graph_value *a, const nn_graph_value *b) {
  if (a->ndim != b->ndim) return false;
  for (int d = 0; d < a->ndim; d++)
    if (a->shape[d] != b->shape[d]) return false;
  return true;
}

/* How operand o reaches each element of the root r under NumPy broadcasting, or -1 for none of ours. */
static int reach(const nn_graph_value *o, const nn_graph_value *r) {
  int64_t n = 1;
  for (int d = 0; d < o->ndim; d++) n *= o->shape[d];
  if (n == 1) return FROM_SCALAR;
  if (o->ndim > r->ndim) return -1;
  int lead = r->ndim - o->ndim;
  bool whole = true, channel = r->ndim >= 2;
  for (int d = 0; d < r->ndim; d++) {
    int64_t od = d < lead ? 1 : o->shape[d - lead];
    whole = whole && od == r->shape[d];
    channel = channel && od == (d == 1 ? r->shape[1] : 1);
  }
  return whole ? FROM_WHOLE : channel ? FROM_CHANNEL : -1;
}

static int find(const int *ids, int n, int v) {
  for (int k = 0; k < n; k++)
    if (ids[k] == v) return k;
  return -1;
}

/* Every register but the last is read only by the chain's steps (uses[] counts each input slot). */
static bool closed(const nn_eltwise_chain *c, const int *reg_value, const int *uses) {
  for (int r = 0; r < c->n_steps; r++) {
    int inside = 0;
    for (int s = 0; s < c->n_steps; s++) {
      inside += c->s[s].a.from == FROM_CHAIN && c->s[s].a.idx == r;
      inside += arity_of(c->s[s].op) == 2 && c->s[s].b.from == FROM_CHAIN && c->s[s].b.idx == r;
    }
    if (uses[reg_value[r]] != inside) return false;
  }
  return true;
}

nn_eltwise_chain *nn_eltwise_plan(const nn_graph *g, int k, int root, const int *uses, bool *taken) {
  const nn_graph_value *r = &g->values[root];
  nn_eltwise_chain c = {.channels = r->ndim >= 2 ? r->shape[1] : 1, .plane = 1};
  for (int d = 2; d < r->ndim; d++) c.plane *= r->shape[d];
  int reg_value[CHAIN_MAX + 1] = {root}, node[CHAIN_MAX];
  for (int j = k + 1; j < g->n_nodes && c.n_steps < CHAIN_MAX; j++) {
    const nn_graph_node *n = &g->nodes[j];
    int arity = arity_of(n->op);
    if (taken[j] || !arity || n->n_in != arity || !same_shape(&g->values[n->out], r)) continue;
    operand o[2];
    int kind[2], reads_chain = 0, new_ext = 0;
    for (int i = 0; i < arity; i++) {
      int v = n->in[i], reg = find(reg_value, c.n_steps + 1, v);
      kind[i] = reg >= 0 ? FROM_CHAIN : g->values[v].node < k ? reach(&g->values[v], r) : -1;
      if (reg >= 0) o[i] = (operand){FROM_CHAIN, (uint8_t)reg}, reads_chain = 1;
      else new_ext += kind[i] >= 0 && find(c.ext, c.n_ext, v) < 0;
    }
    if (!reads_chain || kind[0] < 0 || (arity == 2 && kind[1] < 0) || c.n_ext + new_ext > CHAIN_EXT) continue;
    for (int i = 0; i < arity; i++) {
      if (kind[i] == FROM_CHAIN) continue;
      int e = find(c.ext, c.n_ext, n->in[i]);
      if (e < 0) c.ext[e = c.n_ext++] = n->in[i];
      o[i] = (operand){(uint8_t)kind[i], (uint8_t)e};
      c.per_channel = c.per_channel || kind[i] == FROM_CHANNEL;
    }
    c.s[c.n_steps] = (step){n->op, o[0], arity == 2 ? o[1] : o[0], {n->f[0], n->f[1]}};
    node[c.n_steps++] = j;
    reg_value[c.n_steps] = n->out;
  }
  /* a value read outside the chain ends it there: drop steps from the end until none is */
  while (c.n_steps > 0 && !closed(&c, reg_value, uses)) c.n_steps--;
  if (!c.n_steps) return NULL;
  nn_eltwise_chain *out = malloc(sizeof *out);
  if (!out) return NULL; /* the nodes then simply run one by one */
  *out = c;
  for (int s = 0; s < c.n_steps; s++) taken[node[s]] = true;
  return out;
}

void nn_eltwise_free(nn_eltwise_chain *c) { free(c); }

/* ---------------------------------------------------------------- running */

typedef struct {
  const nn_eltwise_chain *c;
  float *d;
  const float *ext[CHAIN_EXT];
} run_ctx;

static const float *fetch(const run_ctx *x, const float *const *reg, operand o, int64_t i, int64_t ch, float *scalar) {
  switch (o.from) {
  case FROM_CHAIN: return reg[o.idx];
  case FROM_WHOLE: return x->ext[o.idx] + i;
  case FROM_CHANNEL: *scalar = x->ext[o.idx][ch]; return NULL;
  default: *scalar = x->ext[o.idx][0]; return NULL;
  }
}

static inline float clampf(float v, float lo, float hi) { return v < lo ? lo : (v > hi ? hi : v); }

/* The same arithmetic as the unfused ops (graph.c's run_node), so results match them. */
static void apply(const step *s, float *o, const float *pa, float sa, const float *pb, float sb, int len) {
  const float f0 = s->f[0], f1 = s->f[1];
#define UNARY(E)                     \
  for (int l = 0; l < len; l++) {    \
    float a = pa[l];                 \
    o[l] = (E);                      \
  }
#define BINARY(E)                                   \
  if (pa && pb)                                     \
    for (int l = 0; l < len; l++) {                 \
      float a = pa[l], b = pb[l];                   \
      o[l] = (E);                                   \
    }                                               \
  else if (pa)                                      \
    for (int l = 0; l < len; l++) {                 \
      float a = pa[l], b = sb;                      \
      o[l] = (E);                                   \
    }                                               \
  else                                              \
    for (int l = 0; l < len; l++) {                 \
      float a = sa, b = pb[l];                      \
      o[l] = (E);                                   \
    }
  switch (s->op) {
  case NN_OP_ADD: BINARY(a + b) break;
  case NN_OP_SUB: BINARY(a - b) break;
  case NN_OP_MUL: BINARY(a * b) break;
  case NN_OP_DIV: BINARY(a / b) break;
  case NN_OP_RELU: UNARY(a > 0 ? a : 0) break;
  case NN_OP_LEAKY_RELU: UNARY(a > 0 ? a : f0 * a) break;
  case NN_OP_SIGMOID: UNARY(nn_sigmoid_fast(a)) break;
  case NN_OP_HARD_SIGMOID: UNARY(clampf(a * f0 + f1, 0.0f, 1.0f)) break;
  case NN_OP_HARD_SWISH: UNARY(a * clampf(a * (1.0f / 6.0f) + 0.5f, 0.0f, 1.0f)) break;
  case NN_OP_CLIP: UNARY(clampf(a, f0, f1)) break;
  case NN_OP_NEG: UNARY(-a) break;
  case NN_OP_ABS: UNARY(fabsf(a)) break;
  default: break; /* the plan takes no other op */
  }
#undef UNARY
#undef BINARY
}

static void chain_range(void *ctx, int64_t i0, int64_t i1) {
  const run_ctx *x = ctx;
  const nn_eltwise_chain *c = x->c;
  float buf[CHAIN_MAX][BLOCK];
  const float *reg[CHAIN_MAX + 1];
  for (int64_t i = i0; i < i1;) {
    int64_t end = i1 - i > BLOCK ? i + BLOCK : i1, ch = 0;
    if (c->per_channel) { /* a block stays inside one channel: its per-channel operands are scalars */
      int64_t next = (i / c->plane + 1) * c->plane;
      end = next < end ? next : end;
      ch = i / c->plane % c->channels;
    }
    int len = (int)(end - i);
    reg[0] = x->d + i;
    for (int s = 0; s < c->n_steps; s++) {
      float sa = 0.0f, sb = 0.0f;
      const float *pa = fetch(x, reg, c->s[s].a, i, ch, &sa), *pb = fetch(x, reg, c->s[s].b, i, ch, &sb);
      apply(&c->s[s], buf[s], pa, sa, pb, sb, len);
      reg[s + 1] = buf[s];
    }
    memcpy(x->d + i, reg[c->n_steps], sizeof(float) * (size_t)len);
    i = end;
  }
}

bool nn_eltwise_run(const nn_eltwise_chain *c, nn_tensor *y, nn_tensor *const *v) {
  if (!y) return false;
  run_ctx x = {.c = c, .d = nn_f32(y)};
  for (int e = 0; e < c->n_ext; e++)
    if (!(x.ext[e] = nn_dense_f32(v[c->ext[e]]))) return false;
  nn_parallel_for(nn_numel(y), 16384, chain_range, &x);
  return true;
}
