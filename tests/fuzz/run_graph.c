/* An imported graph whose inputs are small is prepared and run once on zeros (no gradient): an import
 * that succeeds must give a graph that runs. A graph the importer rightly accepts can still ask for a lot
 * of arithmetic (a mutated shape: a 4k x 4k matrix product); libFuzzer would call that a hang, so only
 * graphs of at most RUN_MAX_COST multiply-adds run. */
#include "nncore/nncore.h"

#define RUN_MAX_COST 2e7

void fuzz_run_small_graph(nn_graph *g);

static double numel(const nn_graph_value *v) {
  double n = 1;
  for (int d = 0; d < v->ndim; d++) n *= (double)v->shape[d];
  return n;
}

/* Multiply-adds, roughly: each output element of a convolution or matrix product costs its reduction. */
static double cost(const nn_graph *g) {
  double c = 0;
  for (int k = 0; k < g->n_nodes; k++) {
    const nn_graph_node *n = &g->nodes[k];
    double out = numel(&g->values[n->out]), per = 1;
    if ((n->op == NN_OP_CONV || n->op == NN_OP_CONV_TRANSPOSE) && n->n_in >= 2) {
      const nn_graph_value *w = &g->values[n->in[1]];
      per = w->ndim == 4 ? (double)w->shape[1] * (double)w->shape[2] * (double)w->shape[3] *
                               (n->op == NN_OP_CONV_TRANSPOSE ? (double)w->shape[0] : 1)
                         : 1;
    } else if (n->op == NN_OP_MATMUL && n->n_in >= 2) {
      const nn_graph_value *a = &g->values[n->in[0]];
      per = a->ndim ? (double)a->shape[a->ndim - 1] : 1;
    }
    c += out * per;
  }
  return c;
}

void fuzz_run_small_graph(nn_graph *g) {
  nn_tensor *in[8] = {0}, *out[16] = {0};
  nn_no_grad_begin();
  bool small = true;
  for (int k = 0; k < g->n_inputs && small; k++) {
    const nn_graph_value *v = &g->values[g->inputs[k]];
    int64_t n = 1;
    for (int d = 0; d < v->ndim; d++) n *= v->shape[d] > 0 && v->shape[d] <= 65536 ? v->shape[d] : 0;
    small = n > 0 && n <= 65536;
    if (small) in[k] = nn_zeros(NN_F32, v->ndim, v->shape);
  }
  if (small && cost(g) <= RUN_MAX_COST && nn_graph_prepare(g)) nn_graph_run(g, in, out);
  nn_no_grad_end();
  nn_arena_reset(nn_arena_current());
}
