/* nncore's graph runtime and the importers: a graph computes what the same ops written by hand compute,
 * simplification keeps its outputs, a saved graph loads to the same numbers, gradients through a graph
 * match finite differences, a graph trains with frozen prefixes kept, and bad graphs, ONNX and TF.js
 * files are refused at load with a message naming what is wrong. */
#include <glib.h>
#include <glib/gstdio.h>
#include <json-glib/json-glib.h>
#include <unistd.h>

#include "e2e/detect.h"
#include "e2e/import.h"
#include "harness.h"
#include "onnx.pb-c.h"
#include "task.h" /* a model's parameters, to see which moved */

static nn_tensor *rand_const(nn_rng *r, int ndim, const int64_t *shape, float scale) {
  return t_randn(r, ndim, shape, scale);
}

static char *tmp_path(const char *name) { return g_strdup_printf("%s/e2e-graph-%d-%s", g_get_tmp_dir(), (int)getpid(), name); }

/* x[1,3,8,8] -> conv3x3(+b) -> batch norm -> leaky relu -> max pool 3/2 pad 1 -> [1,4,4,4]; a 1x1 conv branch
 * concatenated; bilinear up to 8x8; mean over H,W; matmul with [8,5]; softmax. */
typedef struct {
  nn_graph g;
  int x;
} small_graph;

static bool build_small(small_graph *s, uint64_t seed) {
  nn_rng r;
  nn_rng_seed(&r, seed);
  nn_graph *g = &s->g;
  nn_graph_init(g);
  s->x = nn_graph_add_input(g, "x", 4, (int64_t[]){1, 3, 8, 8});
  int w = nn_graph_add_const(g, "body.conv.weight", rand_const(&r, 4, (int64_t[]){4, 3, 3, 3}, 0.3f), true);
  int b = nn_graph_add_const(g, "body.conv.bias", rand_const(&r, 1, (int64_t[]){4}, 0.1f), true);
  int gamma = nn_graph_add_const(g, "body.bn.weight", rand_const(&r, 1, (int64_t[]){4}, 0.2f), true);
  int beta = nn_graph_add_const(g, "body.bn.bias", rand_const(&r, 1, (int64_t[]){4}, 0.2f), true);
  int mean = nn_graph_add_const(g, "body.bn.mean", rand_const(&r, 1, (int64_t[]){4}, 0.2f), false);
  nn_tensor *var = nn_tensor_new(NN_F32, 1, (int64_t[]){4});
  for (int i = 0; i < 4; i++) nn_f32(var)[i] = 0.5f + 0.25f * (float)i;
  int v = nn_graph_add_const(g, "body.bn.var", var, false);
  int w2 = nn_graph_add_const(g, "side.weight", rand_const(&r, 4, (int64_t[]){4, 3, 1, 1}, 0.3f), true);
  int fc = nn_graph_add_const(g, "head.weight", rand_const(&r, 2, (int64_t[]){8, 5}, 0.3f), true);
  int c1 = nn_graph_add_node(g, NN_OP_CONV, "conv", 3, (int[]){s->x, w, b}, 7, (int64_t[]){1, 1, 1, 1, 1, 1, 1}, 0, NULL);
  int bn = nn_graph_add_node(g, NN_OP_BATCH_NORM, "bn", 5, (int[]){c1, gamma, beta, mean, v}, 0, NULL, 1, (float[]){1e-5f});
  int act = nn_graph_add_node(g, NN_OP_LEAKY_RELU, "act", 1, &bn, 0, NULL, 1, (float[]){0.1f});
  int pool = nn_graph_add_node(g, NN_OP_MAX_POOL, "pool", 1, &act, 8, (int64_t[]){3, 3, 2, 2, 1, 1, 1, 1}, 0, NULL);
  int side = nn_graph_add_node(g, NN_OP_CONV, "side", 2, (int[]){s->x, w2}, 7, (int64_t[]){2, 2, 0, 0, 1, 1, 1}, 0, NULL);
  int cat = nn_graph_add_node(g, NN_OP_CONCAT, "cat", 2, (int[]){pool, side}, 1, (int64_t[]){1}, 0, NULL);
  int up = nn_graph_add_node(g, NN_OP_RESIZE, "up", 1, &cat, 3, (int64_t[]){8, 8, 1}, 0, NULL);
  int gap = nn_graph_add_node(g, NN_OP_MEAN, "gap", 1, &up, 3, (int64_t[]){0, 2, 3}, 0, NULL);
  int mm = nn_graph_add_node(g, NN_OP_MATMUL, "fc", 2, (int[]){gap, fc}, 0, NULL, 0, NULL);
  int sm = nn_graph_add_node(g, NN_OP_SOFTMAX, "prob", 1, &mm, 1, (int64_t[]){1}, 0, NULL);
  return sm >= 0 && nn_graph_set_outputs(g, 1, &sm);
}

/* The same computation written with nncore's ops. */
static nn_tensor *by_hand(const nn_graph *g, nn_tensor *x) {
  const nn_params *p = &g->params;
  nn_conv_params cp = nn_conv_defaults();
  cp.pad_h = cp.pad_w = 1;
  nn_tensor *y = nn_conv2d(x, nn_params_find(p, "body.conv.weight"), nn_params_find(p, "body.conv.bias"), cp);
  y = nn_batch_norm(y, nn_params_find(p, "body.bn.weight"), nn_params_find(p, "body.bn.bias"), nn_params_find(p, "body.bn.mean"),
                    nn_params_find(p, "body.bn.var"), false, 0.1f, 1e-5f);
  y = nn_max_pool2d(nn_leaky_relu(y, 0.1f), 3, 2, 1);
  nn_conv_params sp = nn_conv_defaults();
  sp.stride_h = sp.stride_w = 2;
  nn_tensor *s = nn_conv2d(x, nn_params_find(p, "side.weight"), NULL, sp);
  y = nn_upsample_bilinear(nn_concat((nn_tensor *[]){y, s}, 2, 1), 8, 8);
  y = nn_reshape(nn_mean(nn_mean(y, 3, true), 2, true), 2, (int64_t[]){1, 8});
  return nn_softmax(nn_matmul(y, nn_params_find(p, "head.weight")), 1);
}

TEST(graph_computes_what_the_same_ops_compute_by_hand) {
  small_graph s;
  CHECK(build_small(&s, 1), "build: %s", nn_last_error());
  nn_rng r;
  nn_rng_seed(&r, 7);
  nn_tensor *x = t_randn(&r, 4, (int64_t[]){1, 3, 8, 8}, 1);
  nn_tensor *y;
  CHECK(nn_graph_run(&s.g, &x, &y), "run: %s", nn_last_error());
  nn_tensor *ref = by_hand(&s.g, x);
  CHECK(ref && y && nn_numel(y) == 5, "five outputs");
  if (ref && y) CHECK(max_abs_diff(nn_f32(nn_contiguous(y)), nn_f32(ref), 5) == 0, "identical to hand-written ops");
  const nn_graph_value *out = &s.g.values[s.g.outputs[0]];
  CHECK(out->ndim == 2 && out->shape[0] == 1 && out->shape[1] == 5, "shape inferred at build time");
  /* prepared for inference (packed filters, the leaky ReLU fused): the same within float rounding */
  CHECK(nn_graph_prepare(&s.g), "prepare: %s", nn_last_error());
  nn_tensor *yp = NULL;
  nn_no_grad_begin();
  CHECK(nn_graph_run(&s.g, &x, &yp), "prepared run: %s", nn_last_error());
  nn_no_grad_end();
  if (yp && ref) CHECK(max_abs_diff(nn_f32(nn_contiguous(yp)), nn_f32(ref), 5) < 1e-6, "prepared run agrees");
  nn_tensor_free(x);
  nn_graph_free(&s.g);
  nn_arena_reset(nn_arena_current());
}

TEST(simplify_folds_pads_batch_norms_and_biases_and_keeps_the_outputs) {
  nn_rng r;
  nn_rng_seed(&r, 3);
  nn_graph g;
  nn_graph_init(&g);
  int x = nn_graph_add_input(&g, "x", 4, (int64_t[]){1, 2, 6, 6});
  int w = nn_graph_add_const(&g, "c.weight", t_randn(&r, 4, (int64_t[]){3, 2, 3, 3}, 0.3f), true);
  int cb = nn_graph_add_const(&g, "c.shift", t_randn(&r, 3, (int64_t[]){3, 1, 1}, 0.3f), true);
  int bnp[4];
  for (int i = 0; i < 4; i++) {
    nn_tensor *t = t_randn(&r, 1, (int64_t[]){3}, 0.3f);
    if (i == 3)
      for (int k = 0; k < 3; k++) nn_f32(t)[k] = 0.5f + fabsf(nn_f32(t)[k]);
    char name[32];
    snprintf(name, sizeof name, "bn.%d", i);
    bnp[i] = nn_graph_add_const(&g, name, t, i < 2);
  }
  int pad = nn_graph_add_node(&g, NN_OP_PAD, "pad", 1, &x, 8, (int64_t[]){0, 0, 0, 0, 1, 1, 1, 1}, 1, (float[]){0});
  int conv = nn_graph_add_node(&g, NN_OP_CONV, "conv", 2, (int[]){pad, w}, 7, (int64_t[]){1, 1, 0, 0, 1, 1, 1}, 0, NULL);
  int bn = nn_graph_add_node(&g, NN_OP_BATCH_NORM, "bn", 5, (int[]){conv, bnp[0], bnp[1], bnp[2], bnp[3]}, 0, NULL, 1, (float[]){1e-5f});
  int add = nn_graph_add_node(&g, NN_OP_ADD, "shift", 2, (int[]){bn, cb}, 0, NULL, 0, NULL);
  int id = nn_graph_add_node(&g, NN_OP_IDENTITY, "same", 1, &add, 0, NULL, 0, NULL);
  int act = nn_graph_add_node(&g, NN_OP_RELU, "relu", 1, &id, 0, NULL, 0, NULL);
  int unused = nn_graph_add_node(&g, NN_OP_SIGMOID, "unused", 1, &x, 0, NULL, 0, NULL);
  CHECK(act >= 0 && unused >= 0 && nn_graph_set_outputs(&g, 1, &act), "build: %s", nn_last_error());
  nn_tensor *in = t_randn(&r, 4, (int64_t[]){1, 2, 6, 6}, 1), *before, *after;
  CHECK(nn_graph_run(&g, &in, &before), "run: %s", nn_last_error());
  before = nn_contiguous(before);
  int nodes = g.n_nodes;
  CHECK(nn_graph_simplify(&g, true), "simplify: %s", nn_last_error());
  CHECK(g.n_nodes == 2 && g.nodes[0].op == NN_OP_CONV && g.nodes[0].n_in == 3 && g.nodes[0].i[2] == 1,
        "%d nodes -> %d: one padded conv with a bias, then relu", nodes, g.n_nodes);
  CHECK(nn_graph_run(&g, &in, &after), "run: %s", nn_last_error());
  if (after) CHECK(max_abs_diff(nn_f32(before), nn_f32(nn_contiguous(after)), nn_numel(before)) < 1e-5, "same outputs");
  nn_tensor_free(in);
  nn_graph_free(&g);
  nn_arena_reset(nn_arena_current());
}

TEST(a_saved_graph_loads_to_the_same_numbers) {
  small_graph s;
  build_small(&s, 2);
  /* a -inf float attribute must survive JSON */
  nn_graph *g = &s.g;
  int in = g->inputs[0];
  int p = nn_graph_add_node(g, NN_OP_PAD, "edge", 1, &in, 8, (int64_t[]){0, 0, 0, 0, 1, 1, 1, 1}, 1, (float[]){-INFINITY});
  int mp = nn_graph_add_node(g, NN_OP_MAX_POOL, "mp", 1, &p, 8, (int64_t[]){3, 3, 1, 1, 0, 0, 0, 0}, 0, NULL);
  int outs[2] = {g->outputs[0], mp};
  nn_graph_set_outputs(g, 2, outs);
  char *path = tmp_path("g.safetensors");
  CHECK(nn_graph_save(g, path, (nn_kv[]){{"note", "test"}}, 1), "save: %s", nn_last_error());
  nn_st_file *f = nn_st_open(path);
  nn_graph back;
  CHECK(f && nn_graph_from_file(&back, f, path), "load: %s", nn_last_error());
  nn_rng r;
  nn_rng_seed(&r, 9);
  nn_tensor *x = t_randn(&r, 4, (int64_t[]){1, 3, 8, 8}, 1), *y1[2], *y2[2];
  CHECK(nn_graph_run(g, &x, y1) && nn_graph_run(&back, &x, y2), "run both");
  for (int k = 0; k < 2; k++)
    CHECK(!memcmp(nn_f32(nn_contiguous(y1[k])), nn_f32(nn_contiguous(y2[k])), sizeof(float) * (size_t)nn_numel(y1[k])),
          "output %d bit-identical", k);
  CHECK(back.params.n == g->params.n && !back.params.t[4]->requires_grad && back.params.t[0]->requires_grad,
        "constants keep their trainable flags");
  nn_st_close(f);
  nn_graph_free(&back);
  g_unlink(path);
  g_free(path);
  nn_tensor_free(x);
  nn_graph_free(g);
  nn_arena_reset(nn_arena_current());
}

static nn_tensor *run_graph_fn(nn_tensor **in, void *ctx) {
  nn_graph *g = ctx;
  nn_tensor *y;
  return nn_graph_run(g, in, &y) ? y : NULL;
}

TEST(gradients_through_a_graph_match_finite_differences) {
  nn_rng r;
  nn_rng_seed(&r, 5);
  nn_graph g;
  nn_graph_init(&g);
  int x = nn_graph_add_input(&g, "x", 4, (int64_t[]){1, 2, 6, 6});
  int w = nn_graph_add_const(&g, "w", t_randn(&r, 4, (int64_t[]){3, 2, 3, 3}, 0.4f), true);
  int m = nn_graph_add_const(&g, "m", t_randn(&r, 2, (int64_t[]){5, 4}, 0.4f), true);
  int c = nn_graph_add_node(&g, NN_OP_CONV, "c", 2, (int[]){x, w}, 7, (int64_t[]){1, 1, 1, 1, 1, 1, 1}, 0, NULL);
  int a = nn_graph_add_node(&g, NN_OP_TANH, "a", 1, &c, 0, NULL, 0, NULL); /* smooth ops: finite differences hold */
  int up = nn_graph_add_node(&g, NN_OP_RESIZE, "up", 1, &a, 3, (int64_t[]){9, 9, 1}, 0, NULL);
  int pl = nn_graph_add_node(&g, NN_OP_AVG_POOL, "pl", 1, &up, 9, (int64_t[]){3, 3, 2, 2, 1, 1, 1, 1, 0}, 0, NULL);
  int sl = nn_graph_add_node(&g, NN_OP_SLICE, "sl", 1, &pl, 4, (int64_t[]){1, 1, 3, 1}, 0, NULL);
  int mm = nn_graph_add_node(&g, NN_OP_MATMUL, "mm", 2, (int[]){sl, m}, 0, NULL, 0, NULL);
  int hs = nn_graph_add_node(&g, NN_OP_SIGMOID, "hs", 1, &mm, 0, NULL, 0, NULL);
  CHECK(hs >= 0 && nn_graph_set_outputs(&g, 1, &hs), "build: %s", nn_last_error());
  nn_tensor *in = t_rand_away(&r, 4, (int64_t[]){1, 2, 6, 6}, 0.05f);
  in->requires_grad = true;
  /* the input's gradient against finite differences; the constants' through the same backward */
  CHECK(gradcheck_ex("graph", run_graph_fn, &in, 1, &g, 1e-2f, 2e-3, 2e-2, 40), "input gradient");
  nn_tensor *y = NULL;
  CHECK(nn_graph_run(&g, &in, &y) && nn_backward(nn_sum_all(y)), "run and backward: %s", nn_last_error());
  CHECK(g.params.t[0]->grad && g.params.t[1]->grad, "the initialisers get gradients");
  nn_tensor_free(in);
  nn_graph_free(&g);
  nn_arena_reset(nn_arena_current());
}

TEST(a_graph_trains_and_a_frozen_prefix_keeps_its_weights) {
  small_graph s;
  build_small(&s, 4);
  nn_graph *g = &s.g;
  int64_t all = nn_params_numel(&g->params, true);
  CHECK(nn_params_set_trainable(&g->params, "body.", false) == 6, "freeze body.*");
  CHECK(nn_params_numel(&g->params, true) == all - 4 * 27 - 3 * 4, "trainable: only side and head remain");
  nn_tensor *frozen = nn_tensor_persist(nn_params_find(&g->params, "body.conv.weight"));
  nn_tensor *head0 = nn_tensor_persist(nn_params_find(&g->params, "head.weight"));
  nn_optim *opt = nn_optim_new(&g->params, nn_optim_defaults(NN_ADAM, 0.05f));
  nn_rng r;
  nn_rng_seed(&r, 11);
  nn_tensor *x = t_randn(&r, 4, (int64_t[]){1, 3, 8, 8}, 1);
  nn_tensor *target = nn_tensor_new(NN_F32, 2, (int64_t[]){1, 5});
  nn_f32(target)[3] = 1;
  float first = 0, last = 0;
  for (int step = 0; step < 40; step++) {
    nn_tensor *y;
    nn_optim_zero_grad(opt);
    CHECK(nn_graph_run(g, &x, &y), "run");
    nn_tensor *loss = nn_mse_loss(y, target);
    *(step ? &last : &first) = nn_item(loss);
    nn_backward(loss);
    nn_optim_step(opt);
    nn_arena_reset(nn_arena_current());
  }
  CHECK(last < 0.5f * first, "loss %.4f -> %.4f", first, last);
  CHECK(!memcmp(nn_data(frozen), nn_data(nn_params_find(&g->params, "body.conv.weight")), 4 * 4 * 27), "frozen unchanged");
  CHECK(memcmp(nn_data(head0), nn_data(nn_params_find(&g->params, "head.weight")), 4 * 40), "head moved");
  nn_optim_free(opt);
  nn_tensor_free(frozen), nn_tensor_free(head0), nn_tensor_free(x), nn_tensor_free(target);
  nn_graph_free(g);
}

TEST(bad_nodes_are_refused_when_added_with_the_node_named) {
  nn_graph g;
  nn_graph_init(&g);
  nn_rng r;
  nn_rng_seed(&r, 1);
  int x = nn_graph_add_input(&g, "x", 4, (int64_t[]){1, 3, 8, 8});
  int w = nn_graph_add_const(&g, "w", t_randn(&r, 4, (int64_t[]){4, 5, 3, 3}, 1), true);
  struct {
    nn_graph_op op;
    int n_in, in[2], n_i;
    int64_t i[8];
    const char *expect;
  } cases[] = {
      {NN_OP_CONV, 2, {x, w}, 7, {1, 1, 1, 1, 1, 1, 1}, "do not fit 3 input channels"},
      {NN_OP_RESHAPE, 1, {x}, 2, {7, 7}, "cannot take a shape"},
      {NN_OP_SLICE, 1, {x}, 4, {2, 5, 99, 1}, "outside"},
      {NN_OP_TRANSPOSE, 1, {x}, 4, {0, 1, 1, 2}, "permutation"},
      {NN_OP_MAX_POOL, 1, {x}, 8, {3, 2, 1, 1, 0, 0, 0, 0}, "square"},
      {NN_OP_RESIZE, 1, {x}, 3, {1 << 20, 8, 0}, "out of range"},
      {NN_OP_ADD, 2, {x, w}, 0, {0}, "broadcast"},
      {NN_OP_CONCAT, 2, {x, w}, 1, {1}, "differs"},
      {NN_OP_RELU, 1, {99}, 0, {0}, "not defined before"},
      {NN_OP_COUNT, 1, {x}, 0, {0}, "unknown op"},
  };
  for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
    char name[32];
    snprintf(name, sizeof name, "bad%zu", k);
    int v = nn_graph_add_node(&g, cases[k].op, name, cases[k].n_in, cases[k].in, cases[k].n_i, cases[k].i, 0, NULL);
    CHECK(v < 0 && strstr(nn_last_error(), name) && strstr(nn_last_error(), cases[k].expect), "case %zu: %s", k, nn_last_error());
  }
  CHECK(nn_graph_add_input(&g, "huge", 4, (int64_t[]){1, 1 << 20, 1 << 20, 1 << 20}) < 0 && strstr(nn_last_error(), "absurd"),
        "absurd input dimensions");
  CHECK(!nn_graph_set_outputs(&g, 1, (int[]){12345}), "an output never produced");
  nn_graph_free(&g);
}

/* A graph file whose JSON is edited: each edit must be refused with its reason. */
TEST(bad_graph_files_are_refused_when_loaded) {
  small_graph s;
  build_small(&s, 6);
  char *json = nn_graph_to_json(&s.g);
  struct {
    const char *from, *to, *expect;
  } edits[] = {
      {"\"op\":\"leaky_relu\"", "\"op\":\"frobnicate\"", "unknown op"},
      {"\"in\":[\"bn\"]", "\"in\":[\"prob\"]", "not defined before"},        /* a cycle: reads a later value */
      {"\"outputs\":[\"prob\"]", "\"outputs\":[\"nowhere\"]", "never produced"},
      {"\"shape\":[1,3,8,8]", "\"shape\":[1,5,8,8]", "do not fit"},            /* contradicts the filters */
      {"\"shape\":[1,3,8,8]", "\"shape\":[1,3,99999999,99999999]", "absurd"},
      {"\"name\":\"head.weight\"", "\"name\":\"missing.weight\"", "not in the file"},
  };
  for (size_t k = 0; k < sizeof edits / sizeof edits[0]; k++) {
    char *at = strstr(json, edits[k].from);
    CHECK(at != NULL, "edit %zu applies (%s)", k, edits[k].from);
    if (!at) continue;
    GString *bad = g_string_new_len(json, at - json);
    g_string_append(bad, edits[k].to);
    g_string_append(bad, at + strlen(edits[k].from));
    char *path = tmp_path("bad.safetensors");
    nn_safetensors_save(path, &s.g.params, (nn_kv[]){{"graph", bad->str}}, 1);
    nn_st_file *f = nn_st_open(path);
    nn_graph g;
    CHECK(f && !nn_graph_from_file(&g, f, path) && strstr(nn_last_error(), edits[k].expect) && strstr(nn_last_error(), path),
          "edit %zu refused: %s", k, nn_last_error());
    nn_st_close(f);
    g_unlink(path);
    g_free(path);
    g_string_free(bad, TRUE);
  }
  /* deep nesting never reaches the JSON parser */
  GString *deep = g_string_new("");
  for (int i = 0; i < 100000; i++) g_string_append_c(deep, '[');
  char *path = tmp_path("deep.safetensors");
  nn_safetensors_save(path, &s.g.params, (nn_kv[]){{"graph", deep->str}}, 1);
  nn_st_file *f = nn_st_open(path);
  nn_graph g;
  CHECK(f && !nn_graph_from_file(&g, f, path) && strstr(nn_last_error(), "nested"), "deep nesting: %s", nn_last_error());
  nn_st_close(f);
  g_unlink(path);
  g_free(path);
  g_string_free(deep, TRUE);
  g_free(json);
  nn_graph_free(&s.g);
}

/* ---------------------------------------------------------------- ONNX */

static Onnx__TensorProto *float_tensor(const char *name, int ndim, const int64_t *dims, float *data, size_t n) {
  Onnx__TensorProto *t = calloc(1, sizeof *t);
  onnx__tensor_proto__init(t);
  t->name = (char *)name;
  t->n_dims = (size_t)ndim;
  t->dims = (int64_t *)dims;
  t->has_data_type = 1;
  t->data_type = ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT;
  t->n_float_data = n;
  t->float_data = data;
  return t;
}

/* A one-conv ONNX model, packed; edit() may spoil it first. */
typedef void (*model_edit)(Onnx__ModelProto *m);

static uint8_t *conv_model(model_edit edit, size_t *size) {
  static float w[2 * 3 * 3 * 3], b[2];
  for (int i = 0; i < 54; i++) w[i] = 0.01f * (float)(i % 7);
  int64_t wd[4] = {2, 3, 3, 3}, bd[1] = {2}; /* fresh each time: edits change them */
  Onnx__TensorProto *tw = float_tensor("w", 4, wd, w, 54), *tb = float_tensor("b", 1, bd, b, 2);
  Onnx__AttributeProto pads = ONNX__ATTRIBUTE_PROTO__INIT, *attrs[1] = {&pads};
  static int64_t pv[4] = {1, 1, 1, 1};
  pads.name = "pads", pads.has_type = 1, pads.type = ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__INTS, pads.n_ints = 4, pads.ints = pv;
  Onnx__NodeProto node = ONNX__NODE_PROTO__INIT, *nodes[1] = {&node};
  char *ins[3] = {"x", "w", "b"}, *outs[1] = {"y"};
  node.n_input = 3, node.input = ins, node.n_output = 1, node.output = outs, node.op_type = "Conv", node.name = "conv0";
  Onnx__TensorShapeProto__Dimension d[4], *dp[4];
  int64_t xs[4] = {1, 3, 8, 8};
  for (int i = 0; i < 4; i++) {
    onnx__tensor_shape_proto__dimension__init(&d[i]);
    d[i].value_case = ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_VALUE, d[i].dim_value = xs[i], dp[i] = &d[i];
  }
  Onnx__TensorShapeProto shape = ONNX__TENSOR_SHAPE_PROTO__INIT;
  shape.n_dim = 4, shape.dim = dp;
  Onnx__TypeProto__Tensor tt = ONNX__TYPE_PROTO__TENSOR__INIT;
  tt.has_elem_type = 1, tt.elem_type = ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT, tt.shape = &shape;
  Onnx__TypeProto type = ONNX__TYPE_PROTO__INIT;
  type.value_case = ONNX__TYPE_PROTO__VALUE_TENSOR_TYPE, type.tensor_type = &tt;
  Onnx__ValueInfoProto xi = ONNX__VALUE_INFO_PROTO__INIT, yi = ONNX__VALUE_INFO_PROTO__INIT, *gi[1] = {&xi}, *go[1] = {&yi};
  xi.name = "x", xi.type = &type, yi.name = "y";
  Onnx__TensorProto *inits[2] = {tw, tb};
  Onnx__GraphProto g = ONNX__GRAPH_PROTO__INIT;
  g.n_node = 1, g.node = nodes, g.n_initializer = 2, g.initializer = inits, g.n_input = 1, g.input = gi, g.n_output = 1, g.output = go;
  Onnx__OperatorSetIdProto os = ONNX__OPERATOR_SET_ID_PROTO__INIT, *osp[1] = {&os};
  os.has_version = 1, os.version = 13;
  Onnx__ModelProto m = ONNX__MODEL_PROTO__INIT;
  m.has_ir_version = 1, m.ir_version = 8, m.n_opset_import = 1, m.opset_import = osp, m.graph = &g;
  node.n_attribute = 1, node.attribute = attrs;
  if (edit) edit(&m);
  *size = onnx__model_proto__get_packed_size(&m);
  uint8_t *buf = malloc(*size);
  onnx__model_proto__pack(&m, buf);
  free(tw), free(tb);
  return buf;
}

static void short_weights(Onnx__ModelProto *m) { m->graph->initializer[0]->n_float_data = 50; }
static void no_output(Onnx__ModelProto *m) { m->graph->output[0]->name = "z"; }
static void unknown_op(Onnx__ModelProto *m) { m->graph->node[0]->op_type = "Frobnicate"; }
static void bad_shape(Onnx__ModelProto *m) { m->graph->input[0]->type->tensor_type->shape->dim[1]->dim_value = 4; }
static void huge_dims(Onnx__ModelProto *m) { m->graph->input[0]->type->tensor_type->shape->dim[2]->dim_value = (int64_t)1 << 40; }
static void old_opset(Onnx__ModelProto *m) { m->opset_import[0]->version = 3; }
static void twice(Onnx__ModelProto *m) { m->graph->node[0]->input[0] = "y"; }
static void external_outside(Onnx__ModelProto *m) {
  static Onnx__StringStringEntryProto loc = ONNX__STRING_STRING_ENTRY_PROTO__INIT, *e[1] = {&loc};
  loc.key = "location", loc.value = "../../etc/passwd";
  Onnx__TensorProto *t = m->graph->initializer[0];
  t->has_data_location = 1, t->data_location = ONNX__TENSOR_PROTO__DATA_LOCATION__EXTERNAL, t->n_external_data = 1,
  t->external_data = e, t->n_float_data = 0;
}

TEST(onnx_models_import_and_bad_ones_are_refused_with_the_reason) {
  size_t n;
  uint8_t *good = conv_model(NULL, &n);
  nn_graph g;
  CHECK(e2e_import_onnx_memory(good, n, "good.onnx", 0, &g), "a valid model imports: %s", nn_last_error());
  if (g.n_nodes) {
    CHECK(g.n_nodes == 1 && g.nodes[0].op == NN_OP_CONV, "one conv");
    nn_graph_free(&g);
  }
  struct {
    model_edit edit;
    const char *expect;
  } cases[] = {
      {short_weights, "holds 200 bytes"}, {no_output, "never produced"}, {unknown_op, "Frobnicate is not supported"},
      {bad_shape, "do not fit"}, {huge_dims, "absurd"}, {old_opset, "opset 3"}, {twice, "not defined before"},
      {external_outside, "not a file in the model's own folder"},
  };
  for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
    size_t m;
    uint8_t *bad = conv_model(cases[k].edit, &m);
    char *dir = g_strdup(g_get_tmp_dir()), *path = tmp_path("bad.onnx");
    g_file_set_contents(path, (const char *)bad, (gssize)m, NULL);
    /* from a file, so that external data has a folder to be outside of */
    CHECK(!e2e_import_onnx(path, 0, &g) && strstr(nn_last_error(), cases[k].expect), "case %zu: %s", k, nn_last_error());
    g_unlink(path);
    g_free(path), g_free(dir);
    free(bad);
  }
  /* a raw ONNX file given where a model is expected: refused, naming what a detector needs */
  char *raw = tmp_path("raw.onnx");
  g_file_set_contents(raw, (const char *)good, (gssize)n, NULL);
  e2e_model *m = e2e_model_open(raw, E2E_TASK_DETECT);
  CHECK(!m && strstr(e2e_last_error(), "no \"head\"") && strstr(e2e_last_error(), raw), "raw ONNX: %s", e2e_last_error());
  e2e_model_unref(m);
  g_unlink(raw);
  g_free(raw);
  /* every truncation and a thousand byte flips: refused or imported, never a crash (ASan checks) */
  int refused = 0;
  for (size_t len = 0; len < n; len++) refused += !e2e_import_onnx_memory(good, len, "cut.onnx", 0, &g) || (nn_graph_free(&g), 0);
  CHECK(refused >= (int)n - 4, "truncations refused: %d of %zu", refused, n);
  nn_rng r;
  nn_rng_seed(&r, 99);
  uint8_t *mut = malloc(n);
  for (int k = 0; k < 1000; k++) {
    memcpy(mut, good, n);
    for (int j = 0; j < 3; j++) mut[nn_rng_u64(&r) % n] ^= (uint8_t)(1 + nn_rng_u64(&r) % 255);
    if (e2e_import_onnx_memory(mut, n, "flip.onnx", 0, &g)) {
      nn_tensor *x = nn_zeros(NN_F32, g.values[g.inputs[0]].ndim, g.values[g.inputs[0]].shape), *y[16];
      CHECK(nn_graph_run(&g, &x, y), "a mutant that imports also runs: %s", nn_last_error());
      nn_graph_free(&g);
      nn_arena_reset(nn_arena_current());
    }
  }
  free(mut);
  free(good);
}

/* ---------------------------------------------------------------- TF.js */

static const char *TFJS_MODEL =
    "{\"format\": \"graph-model\", \"modelTopology\": {\"node\": ["
    "{\"name\": \"x\", \"op\": \"Placeholder\", \"attr\": {\"shape\": {\"shape\": {\"dim\": [{\"size\": \"1\"}, {\"size\": \"8\"}, {\"size\": \"8\"}, {\"size\": \"2\"}]}}}},"
    "{\"name\": \"w\", \"op\": \"Const\"},"
    "{\"name\": \"b\", \"op\": \"Const\"},"
    "{\"name\": \"c\", \"op\": \"Conv2D\", \"input\": [\"x\", \"w\"], \"attr\": {\"padding\": {\"s\": \"U0FNRQ==\"}, \"strides\": {\"list\": {\"i\": [\"1\", \"1\", \"1\", \"1\"]}}}},"
    "{\"name\": \"y\", \"op\": \"BiasAdd\", \"input\": [\"c\", \"b\"]},"
    "{\"name\": \"OP\", \"op\": \"Relu\", \"input\": [\"IN\"]}"
    "]}, \"weightsManifest\": [{\"paths\": [\"SHARD\"], \"weights\": ["
    "{\"name\": \"w\", \"shape\": [3, 3, 2, 4], \"dtype\": \"float32\"},"
    "{\"name\": \"b\", \"shape\": [4], \"dtype\": \"float32\"}]}]}";

static bool tfjs_try(const char *op, const char *in, const char *shard, size_t shard_bytes, nn_graph *g) {
  char *dir = g_dir_make_tmp("e2e-tfjs-XXXXXX", NULL), *json_path = g_build_filename(dir, "model.json", NULL);
  char *bin_path = g_build_filename(dir, "w.bin", NULL);
  GString *s = g_string_new(TFJS_MODEL);
  g_string_replace(s, "\"OP\"", op, 1);
  g_string_replace(s, "\"IN\"", in, 1);
  g_string_replace(s, "SHARD", shard, 1);
  g_file_set_contents(json_path, s->str, -1, NULL);
  float *w = calloc(shard_bytes / 4 + 1, 4);
  for (size_t i = 0; i < shard_bytes / 4; i++) w[i] = 0.01f * (float)(i % 5);
  g_file_set_contents(bin_path, (const char *)w, (gssize)shard_bytes, NULL);
  bool ok = e2e_import_tfjs(json_path, 0, g);
  g_unlink(json_path), g_unlink(bin_path), g_rmdir(dir);
  g_free(json_path), g_free(bin_path), g_free(dir), free(w);
  g_string_free(s, TRUE);
  return ok;
}

TEST(tfjs_models_import_as_nchw_and_bad_ones_are_refused) {
  nn_graph g;
  size_t bytes = 4 * (3 * 3 * 2 * 4 + 4);
  CHECK(tfjs_try("\"out\"", "\"y\"", "w.bin", bytes, &g), "a valid model imports: %s", nn_last_error());
  if (g.n_nodes) {
    /* NHWC conv + bias add + relu -> one NCHW conv with its bias, relu, and the transposes at the ends */
    int convs = 0;
    for (int k = 0; k < g.n_nodes; k++) convs += g.nodes[k].op == NN_OP_CONV && g.nodes[k].n_in == 3;
    CHECK(convs == 1 && g.n_nodes == 4, "%d nodes: transpose, conv with bias, relu, transpose", g.n_nodes);
    nn_graph_free(&g);
  }
  CHECK(!tfjs_try("\"out\"", "\"y\"", "../w.bin", bytes, &g) && strstr(nn_last_error(), "own folder"), "shard outside: %s", nn_last_error());
  CHECK(!tfjs_try("\"out\"", "\"y\"", "w.bin", bytes - 8, &g) && strstr(nn_last_error(), "past the end"), "short shard: %s", nn_last_error());
  CHECK(!tfjs_try("\"out\"", "\"y\"", "w.bin", bytes + 8, &g) && strstr(nn_last_error(), "describes"), "long shard: %s", nn_last_error());
  CHECK(!tfjs_try("\"out\"", "\"nowhere\"", "w.bin", bytes, &g) && strstr(nn_last_error(), "no node makes"), "undefined input: %s", nn_last_error());
  CHECK(!tfjs_try("\"c\"", "\"y\"", "w.bin", bytes, &g) && strstr(nn_last_error(), "two nodes"), "duplicate: %s", nn_last_error());
  /* 400 mutants of the JSON (bytes flipped, cut short): refused or imported, never a crash (ASan checks) */
  nn_rng r;
  nn_rng_seed(&r, 5);
  size_t len = strlen(TFJS_MODEL);
  char *dir = g_dir_make_tmp("e2e-tfjs-fuzz-XXXXXX", NULL), *jp = g_build_filename(dir, "model.json", NULL),
       *bp = g_build_filename(dir, "w.bin", NULL), *mut = malloc(len + 1);
  float *wb = calloc(bytes / 4, sizeof *wb);
  g_file_set_contents(bp, (const char *)wb, (gssize)bytes, NULL);
  int imported = 0;
  for (int k = 0; k < 400; k++) {
    GString *text = g_string_new(TFJS_MODEL);
    g_string_replace(text, "\"OP\"", "\"out\"", 1);
    g_string_replace(text, "\"IN\"", "\"y\"", 1);
    g_string_replace(text, "SHARD", "w.bin", 1);
    size_t n = text->len;
    memcpy(mut, text->str, n);
    for (int j = 0; j < 2; j++) mut[nn_rng_u64(&r) % n] = (char)(32 + nn_rng_u64(&r) % 95);
    if (k % 5 == 0) n = nn_rng_u64(&r) % n;
    g_file_set_contents(jp, mut, (gssize)n, NULL);
    if (e2e_import_tfjs(jp, 0, &g)) imported++, nn_graph_free(&g);
    g_string_free(text, TRUE);
  }
  printf("    tfjs mutants: %d of 400 still import\n", imported);
  g_unlink(jp), g_unlink(bp), g_rmdir(dir);
  g_free(jp), g_free(bp), g_free(dir), free(mut), free(wb);
  /* a cycle: c reads y, y reads c */
  CHECK(!tfjs_try("\"out\"", "\"out\"", "w.bin", bytes, &g) && strstr(nn_last_error(), "cycle"), "cycle: %s", nn_last_error());
}

TEST(the_imported_detector_ships_and_reloads_as_the_default) {
  char *path = e2e_default_model(E2E_TASK_DETECT);
  e2e_model *m = e2e_model_open(path, E2E_TASK_DETECT);
  CHECK(m != NULL, "open %s: %s", path, e2e_last_error());
  if (m) {
    const e2e_model_info *i = e2e_model_describe(m);
    CHECK(!strcmp(i->architecture, "e2e-graph-v1") && i->n_labels == 80 && !strcmp(i->labels[0], "person") &&
              i->input_size == 416 && i->n_params > 3000000,
          "COCO NanoDet: %s, %d labels, input %d, %lld parameters", i->architecture, i->n_labels, i->input_size, (long long)i->n_params);
    e2e_model_unref(m);
  }
  free(path);
}

/* ---------------------------------------------------------------- against TF.js */

static float box_iou(const float *a, const float *b) {
  float w = fminf(a[2], b[2]) - fmaxf(a[0], b[0]), h = fminf(a[3], b[3]) - fmaxf(a[1], b[1]);
  if (w <= 0 || h <= 0) return 0;
  float i = w * h;
  return i / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - i);
}

/* The shipped COCO NanoDet gives the boxes TF.js gave running the original model in Node on the same
 * inputs (tests/data/nanodet_tfjs_boxes.jsonl, from tools/compare/run_tfjs.sh): every reference box
 * (score >= 0.05) matched at IoU >= 0.99 with |dscore| <= 1e-3, and none of ours (>= 0.051) unmatched. */
TEST(the_shipped_detector_gives_the_boxes_tfjs_gives) {
  const char *data = getenv("E2E_SHARED_DATA"), *src = getenv("E2E_SOURCE_ROOT");
  char *ref_path = g_build_filename(src ? src : ".", "tests", "data", "nanodet_tfjs_boxes.jsonl", NULL), *text = NULL;
  char *image_dir = g_build_filename(data ? data : ".", "detect", "coco128", "images", "val2017", NULL);
  bool have = data && g_file_test(image_dir, G_FILE_TEST_IS_DIR);
  g_free(image_dir);
  if (!have || !g_file_get_contents(ref_path, &text, NULL, NULL)) {
    printf("    (skipped: no coco128 under E2E_SHARED_DATA, or no reference file)\n");
    g_free(ref_path);
    return;
  }
  char *path = e2e_default_model(E2E_TASK_DETECT);
  e2e_model *m = e2e_model_open(path, E2E_TASK_DETECT);
  e2e_slot *slot = m ? e2e_slot_new(m) : NULL;
  e2e_session *s = slot ? e2e_session_new(slot, 0) : NULL;
  CHECK(s != NULL, "session: %s", e2e_last_error());
  char **lines = g_strsplit(text, "\n", -1);
  int images = 0, refs = 0, matched = 0, extra = 0;
  for (char **l = lines; s && *l && **l; l++) {
    JsonParser *p = json_parser_new();
    if (!json_parser_load_from_data(p, *l, -1, NULL)) {
      g_object_unref(p);
      continue;
    }
    JsonObject *o = json_node_get_object(json_parser_get_root(p));
    char *img_path = g_build_filename(data, json_object_get_string_member(o, "image"), NULL);
    e2e_image im;
    if (e2e_image_load(img_path, &im)) {
      det_box got[E2E_DETECT_DEFAULT_MAX];
      e2e_detect_params dp = e2e_detect_defaults();
      dp.threshold = 0.049f;
      int n = e2e_detect_frame(s, &dp, im.rgb, im.w, im.h, im.w * 3, got, E2E_DETECT_DEFAULT_MAX);
      JsonArray *boxes = json_object_get_array_member(o, "boxes");
      int nr = (int)json_array_get_length(boxes);
      float (*rb)[6] = calloc((size_t)nr + 1, sizeof *rb);
      for (int i = 0; i < nr; i++) {
        JsonArray *b = json_array_get_array_element(boxes, (guint)i);
        for (int k = 0; k < 6; k++) rb[i][k] = (float)json_array_get_double_element(b, (guint)k);
      }
      for (int i = 0; i < nr; i++) {
        refs++;
        for (int j = 0; j < n; j++) {
          float ob[4] = {got[j].x1, got[j].y1, got[j].x2, got[j].y2};
          if (got[j].cls == (int)rb[i][5] && fabsf(got[j].score - rb[i][4]) <= 1e-3f && box_iou(ob, rb[i]) >= 0.99f) {
            matched++;
            break;
          }
        }
      }
      for (int j = 0; j < n; j++) {
        if (got[j].score < 0.051f) continue;
        float ob[4] = {got[j].x1, got[j].y1, got[j].x2, got[j].y2};
        bool found = false;
        for (int i = 0; i < nr && !found; i++)
          found = got[j].cls == (int)rb[i][5] && fabsf(got[j].score - rb[i][4]) <= 1e-3f && box_iou(ob, rb[i]) >= 0.99f;
        extra += !found;
      }
      images++;
      free(rb);
      e2e_image_free(&im);
    }
    g_free(img_path);
    g_object_unref(p);
  }
  CHECK(images == 16 && refs > 1000 && matched == refs && extra == 0, "%d images: %d of %d TF.js boxes matched, %d extra", images,
        matched, refs, extra);
  g_strfreev(lines);
  g_free(text), g_free(ref_path);
  free(path);
  e2e_session_free(s);
  e2e_slot_unref(slot);
  e2e_model_unref(m);
}

/* Transfer learning on the imported NanoDet: the head takes new classes, a few steps on one image with the
 * backbone frozen lower the loss, and the backbone's weights stay as they were. */
TEST(the_imported_detector_takes_new_classes_and_trains_its_head) {
  char *path = e2e_default_model(E2E_TASK_DETECT);
  e2e_model *m = e2e_model_open(path, E2E_TASK_DETECT);
  free(path);
  CHECK(m != NULL, "open: %s", e2e_last_error());
  if (!m) return;
  const char *labels[] = {"raccoon", "badger"};
  CHECK(!e2e_detect_graph_relabel(m, 2, labels, "unicorn") && strstr(e2e_last_error(), "unicorn"), "an unknown --like class");
  e2e_model *r = e2e_detect_graph_relabel(m, 2, labels, "bear");
  CHECK(r != NULL, "relabel: %s", e2e_last_error());
  if (!r) {
    e2e_model_unref(m);
    return;
  }
  const e2e_model_info *info = e2e_model_describe(r);
  CHECK(info->n_labels == 2 && !strcmp(info->labels[1], "badger") && info->input_size == 416, "two classes");
  int S = 416;
  nn_tensor *x = nn_tensor_new(NN_F32, 4, (int64_t[]){1, 3, S, S});
  nn_rng rng;
  nn_rng_seed(&rng, 3);
  for (int64_t i = 0; i < nn_numel(x); i++) nn_f32(x)[i] = 0.3f * nn_rng_normal(&rng);
  for (int y = 100; y < 300; y++) /* a bright object on a noisy field */
    for (int c = 0; c < 3; c++)
      for (int xx = 120; xx < 260; xx++) nn_f32(x)[(int64_t)c * S * S + y * S + xx] = 1.5f;
  det_box box = {120, 100, 260, 300, 1, 0};
  const det_box *bp = &box;
  int count = 1;
  e2e_batch b = {.n = 1, .images = x, .boxes = &bp, .counts = &count};
  e2e_trainer *t = e2e_trainer_new(r, &(e2e_train_opts){.optimizer = NN_ADAMW, .lr = 2e-3f, .clip_norm = 10, .freeze = "backbone."});
  CHECK(t != NULL, "trainer: %s", e2e_last_error());
  e2e_metric first = {0}, last = {0};
  for (int i = 0; t && i < 8; i++) CHECK(e2e_trainer_step(t, &b, i ? &last : &first), "step %d: %s", i, e2e_last_error());
  CHECK(first.n_parts == 3 && !strcmp(first.part_names[0], "qfl") && last.value < first.value, "loss %.4f -> %.4f", first.value,
        last.value);
  e2e_model *trained = t ? e2e_trainer_model(t) : NULL;
  if (trained) {
    nn_params *a = e2e_model_ops(r)->params(e2e_model_impl(r)), *z = e2e_model_ops(trained)->params(e2e_model_impl(trained));
    bool backbone_same = true, head_moved = false;
    for (int i = 0; i < a->n; i++) {
      bool same = !memcmp(nn_data(a->t[i]), nn_data(z->t[i]), sizeof(float) * (size_t)nn_numel(a->t[i]));
      if (g_str_has_prefix(a->names[i], "backbone.")) backbone_same = backbone_same && same;
      else head_moved = head_moved || !same;
    }
    CHECK(backbone_same && head_moved, "the backbone kept its weights, the head moved");
    /* the trained version evaluates through a session like any detector */
    e2e_slot *slot = e2e_slot_new(trained);
    e2e_session *s = e2e_session_new(slot, 0);
    e2e_metric mm = {0};
    CHECK(e2e_session_evaluate(s, &b, &mm) && !strcmp(mm.name, "mAP@0.5") && mm.value >= 0 && mm.value <= 1,
          "evaluate: %s %.3f (%s)", mm.name ? mm.name : "-", mm.value, e2e_last_error());
    e2e_session_free(s);
    e2e_slot_unref(slot);
  }
  e2e_model_unref(trained);
  e2e_trainer_free(t);
  nn_tensor_free(x);
  e2e_model_unref(r);
  e2e_model_unref(m);
}

/* Depthwise convolutions (MobileNet-style blocks, PP-OCR) take their own inference kernel: it must agree
 * with the generic path for strides, pads, dilation and a fused ReLU. */
TEST(depthwise_convs_agree_between_the_prepared_and_plain_paths) {
  nn_rng r;
  nn_rng_seed(&r, 21);
  int64_t cases[][5] = {{3, 1, 1, 1, 1}, {3, 2, 1, 1, 0}, {5, 1, 2, 1, 1}, {3, 1, 2, 2, 0}, {5, 2, 2, 1, 1}}; /* k, stride, pad, dilation, relu */
  for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
    int64_t k = cases[c][0], s = cases[c][1], p = cases[c][2], d = cases[c][3];
    nn_graph g;
    nn_graph_init(&g);
    int x = nn_graph_add_input(&g, "x", 4, (int64_t[]){1, 6, 11, 37}); /* 37: two blocks of 16 and a tail */
    int w = nn_graph_add_const(&g, "w", t_randn(&r, 4, (int64_t[]){6, 1, k, k}, 0.5f), true);
    int b = nn_graph_add_const(&g, "b", t_randn(&r, 1, (int64_t[]){6}, 0.5f), true);
    int y = nn_graph_add_node(&g, NN_OP_CONV, "dw", 3, (int[]){x, w, b}, 7, (int64_t[]){s, s, p, p, d, d, 6}, 0, NULL);
    if (cases[c][4]) y = nn_graph_add_node(&g, NN_OP_RELU, "act", 1, &y, 0, NULL, 0, NULL);
    CHECK(y >= 0 && nn_graph_set_outputs(&g, 1, &y), "case %zu: %s", c, nn_last_error());
    nn_tensor *in = t_randn(&r, 4, (int64_t[]){1, 6, 11, 37}, 1), *plain = NULL, *fast = NULL;
    nn_no_grad_begin();
    CHECK(nn_graph_run(&g, &in, &plain), "plain run");
    plain = nn_contiguous(plain);
    CHECK(nn_graph_prepare(&g) && nn_graph_run(&g, &in, &fast), "prepared run: %s", nn_last_error());
    nn_no_grad_end();
    if (plain && fast)
      CHECK(nn_numel(plain) == nn_numel(fast) && max_abs_diff(nn_f32(plain), nn_f32(nn_contiguous(fast)), nn_numel(plain)) < 1e-5,
            "case %zu agrees", c);
    nn_tensor_free(in);
    nn_graph_free(&g);
    nn_arena_reset(nn_arena_current());
  }
}

/* A detector exported by torch.onnx.export (Debian's python3-torch; YOLOv8-style: conv-BN-SiLU, C2f
 * blocks, nearest upsampling, concat, max pool) computes what ONNX Runtime 1.30 computed on the same input
 * (tests/data, from tools/compare/make_ort_reference.sh): max|diff| <= 1e-4 max|ref|, prepared or not. */
TEST(a_torch_export_matches_onnx_runtime) {
  const char *src = getenv("E2E_SOURCE_ROOT");
  char *dir = g_build_filename(src ? src : ".", "tests", "data", NULL);
  char *model = g_build_filename(dir, "torch_detector_small.onnx", NULL), *in = g_build_filename(dir, "torch_detector_small.in.f32", NULL),
       *ref = g_build_filename(dir, "torch_detector_small.ort.f32", NULL), *xd = NULL, *rd = NULL;
  gsize xn = 0, rn = 0;
  nn_graph g;
  bool ok = g_file_get_contents(in, &xd, &xn, NULL) && g_file_get_contents(ref, &rd, &rn, NULL);
  CHECK(ok, "reference files in %s", dir);
  CHECK(ok && e2e_import_onnx(model, 0, &g), "import: %s", nn_last_error());
  if (ok && g.n_nodes) {
    nn_tensor *x = nn_tensor_new(NN_F32, 4, (int64_t[]){1, 3, 96, 96}), *y[16];
    CHECK(xn == sizeof(float) * (size_t)nn_numel(x), "input size");
    memcpy(nn_f32(x), xd, xn);
    for (int prepared = 0; prepared < 2; prepared++) {
      if (prepared) CHECK(nn_graph_prepare(&g), "prepare");
      nn_no_grad_begin();
      bool ran = nn_graph_run(&g, &x, y);
      nn_no_grad_end();
      CHECK(ran && (size_t)nn_numel(y[0]) * sizeof(float) == rn, "run and output size: %s", nn_last_error());
      if (ran && (size_t)nn_numel(y[0]) * sizeof(float) == rn) {
        const float *r = (const float *)rd;
        double scale = 0;
        for (size_t i = 0; i < rn / 4; i++) scale = fmax(scale, fabs(r[i]));
        double d = max_abs_diff(nn_f32(nn_contiguous(y[0])), r, (int64_t)(rn / 4));
        CHECK(d <= 1e-4 * scale, "%s: max|diff| %.3g, max|ref| %.3g", prepared ? "prepared" : "plain", d, scale);
      }
      nn_arena_reset(nn_arena_current());
    }
    nn_tensor_free(x);
    nn_graph_free(&g);
  }
  g_free(xd), g_free(rd), g_free(model), g_free(in), g_free(ref), g_free(dir);
}

/* A model whose file says "resize": "stretch" fills the square input with the frame, each axis scaled on
 * its own, and its boxes come back to frame pixels the same way. */
TEST(a_stretch_model_fills_the_input_and_maps_boxes_back_per_axis) {
  char *path = e2e_default_model(E2E_TASK_DETECT);
  nn_st_file *f = nn_st_open(path);
  nn_graph g;
  CHECK(f && nn_graph_from_file(&g, f, path), "load: %s", nn_last_error());
  free(path);
  if (!f) return;
  int n = nn_st_meta_count(f);
  nn_kv *meta = calloc((size_t)n + 1, sizeof *meta);
  for (int i = 0; i < n; i++) {
    meta[i].value = nn_st_meta_at(f, i, &meta[i].key);
    if (!strcmp(meta[i].key, "resize")) meta[i].value = "stretch";
  }
  e2e_model *m = e2e_detect_graph_model(&g, meta, n, "stretch");
  free(meta);
  nn_st_close(f);
  CHECK(m != NULL, "model: %s", e2e_last_error());
  if (!m) return;
  e2e_slot *slot = e2e_slot_new(m);
  e2e_session *s = e2e_session_new(slot, 0);
  CHECK(e2e_detect_stretches(s), "the session's model stretches");
  det_letterbox lb = e2e_detect_placement_for(s, NULL, 800, 400, 416);
  CHECK(lb.scaled_w == 416 && lb.scaled_h == 416 && lb.pad_x == 0 && lb.pad_y == 0 && fabsf(lb.scale - 0.52f) < 1e-6f &&
            fabsf(lb.scale_y - 1.04f) < 1e-6f, "placement %dx%d, scales %g %g", lb.scaled_w, lb.scaled_h, lb.scale, lb.scale_y);
  det_box b = {0, 0, 416, 208, 1, 0};
  det_unletterbox(&lb, &b, 1);
  CHECK(b.x2 == 800 && fabsf(b.y2 - 200) < 1e-3f, "back to frame pixels: %g x %g", b.x2, b.y2);
  /* a frame through the whole path: boxes inside the frame */
  uint8_t *rgb = calloc(800 * 400 * 3, 1);
  for (int i = 0; i < 800 * 400 * 3; i++) rgb[i] = (uint8_t)((i * 13) % 251);
  det_box out[100];
  int k = e2e_detect_frame(s, NULL, rgb, 800, 400, 800 * 3, out, 100);
  CHECK(k >= 0, "detect: %s", e2e_last_error());
  for (int i = 0; i < k; i++) CHECK(out[i].x2 <= 800 && out[i].y2 <= 400 && out[i].x1 < out[i].x2, "box %d in the frame", i);
  free(rgb);
  e2e_session_free(s);
  e2e_slot_unref(slot);
  e2e_model_unref(m);
}

/* SiLU as exporters write it (Sigmoid, then Mul with the conv's output) is fused into the conv when
 * prepared, with its own exp, on every conv path (direct kernel, Winograd, depthwise, the GEMM fallback):
 * within 1e-6 of the plain ops, extreme inputs included. */
TEST(a_fused_silu_agrees_with_sigmoid_times_x) {
  /* in channels, out channels, H, W, kernel, groups */
  int64_t cases[][6] = {{4, 8, 9, 9, 3, 1}, {64, 64, 12, 60, 3, 1}, {8, 8, 10, 70, 3, 8}, {16, 24, 5, 100, 1, 1}, {3, 5, 7, 7, 2, 1}};
  for (size_t cc = 0; cc < sizeof cases / sizeof cases[0]; cc++) {
    const int64_t *q = cases[cc];
    nn_rng r;
    nn_rng_seed(&r, 8);
    nn_graph g;
    nn_graph_init(&g);
    int64_t shape[4] = {1, q[0], q[2], q[3]};
    int x = nn_graph_add_input(&g, "x", 4, shape);
    /* outputs far into both tails */
    int w = nn_graph_add_const(&g, "w", t_randn(&r, 4, (int64_t[]){q[1], q[0] / q[5], q[4], q[4]}, 24.0f / sqrtf((float)(q[0] * q[4]))), true);
    int64_t pad = q[4] / 2;
    int c = nn_graph_add_node(&g, NN_OP_CONV, "c", 2, (int[]){x, w}, 7, (int64_t[]){1, 1, pad, pad, 1, 1, q[5]}, 0, NULL);
    int s = nn_graph_add_node(&g, NN_OP_SIGMOID, "s", 1, &c, 0, NULL, 0, NULL);
    int m = nn_graph_add_node(&g, NN_OP_MUL, "m", 2, (int[]){s, c}, 0, NULL, 0, NULL);
    CHECK(m >= 0 && nn_graph_set_outputs(&g, 1, &m), "build: %s", nn_last_error());
    nn_tensor *in = t_randn(&r, 4, shape, 2), *plain = NULL, *fused = NULL;
    nn_no_grad_begin();
    CHECK(nn_graph_run(&g, &in, &plain), "plain");
    plain = nn_contiguous(plain);
    CHECK(nn_graph_prepare(&g) && nn_graph_run(&g, &in, &fused), "fused: %s", nn_last_error());
    nn_no_grad_end();
    CHECK(nn_graph_fused_nodes(&g) == 2, "case %zu: sigmoid and mul fused", cc);
    if (plain && fused) {
      const float *a = nn_f32(plain), *b = nn_f32(nn_contiguous(fused));
      double worst = 0, big = 0;
      for (int64_t i = 0; i < nn_numel(plain); i++) worst = fmax(worst, fabs(a[i] - b[i]) / (fabs(a[i]) + 1e-6)), big = fmax(big, fabs(a[i]));
      /* the other paths sum the conv in another order than the plain one (OpenBLAS, Winograd): there,
       * relative to the output's scale; the first case's sums agree, so its tails are checked element by element */
      double tol = cc == 0 ? 1e-6 : 1e-5;
      if (cc > 0) {
        worst = 0;
        for (int64_t i = 0; i < nn_numel(plain); i++) worst = fmax(worst, fabs(a[i] - b[i]) / big);
      }
      CHECK(worst < tol && big > 20, "case %zu: worst relative difference %.3g (largest output %.1f)", cc, worst, big);
    }
    nn_tensor_free(in);
    nn_graph_free(&g);
    nn_arena_reset(nn_arena_current());
  }
}

/* Exporters spell a conv's scale and shift, hard-swish and residual adds as runs of element-wise nodes; the
 * prepared plan applies each run in one pass over the tensor it follows. It must compute what the nodes
 * do one by one, and it must stop a run at a value something outside reads (here a graph output or a
 * mean), so that nothing reads a tensor the run has overwritten. */
static int add(nn_graph *g, nn_graph_op op, const char *name, int a, int b, int n_f, const float *f) {
  int in[2] = {a, b};
  return nn_graph_add_node(g, op, name, b < 0 ? 1 : 2, in, 0, NULL, n_f, f);
}

TEST(element_wise_runs_fused_after_a_node_compute_what_the_nodes_do) {
  for (int early_output = 0; early_output < 2; early_output++) {
    nn_rng r;
    nn_rng_seed(&r, 33);
    nn_graph g;
    nn_graph_init(&g);
    int x = nn_graph_add_input(&g, "x", 4, (int64_t[]){1, 4, 9, 40});
    int w1 = nn_graph_add_const(&g, "w1", t_randn(&r, 4, (int64_t[]){8, 4, 3, 3}, 0.4f), true);
    int w2 = nn_graph_add_const(&g, "w2", t_randn(&r, 4, (int64_t[]){8, 4, 1, 1}, 0.4f), true);
    int b1 = nn_graph_add_const(&g, "b1", t_randn(&r, 1, (int64_t[]){8}, 0.4f), true);
    int scale = nn_graph_add_const(&g, "scale", t_randn(&r, 1, (int64_t[]){1}, 1), true);
    int shift = nn_graph_add_const(&g, "shift", t_randn(&r, 1, (int64_t[]){1}, 1), true);
    int per_channel = nn_graph_add_const(&g, "per_channel", t_randn(&r, 4, (int64_t[]){1, 8, 1, 1}, 1), true);
    int three = nn_graph_add_const(&g, "three", nn_full(1, (int64_t[]){1}, 3.0f), false);
    int six = nn_graph_add_const(&g, "six", nn_full(1, (int64_t[]){1}, 6.0f), false);
    int early = nn_graph_add_node(&g, NN_OP_CONV, "early", 2, (int[]){x, w2}, 7, (int64_t[]){1, 1, 0, 0, 1, 1, 1}, 0, NULL);
    int c = nn_graph_add_node(&g, NN_OP_CONV, "c", 3, (int[]){x, w1, b1}, 7, (int64_t[]){1, 1, 1, 1, 1, 1, 1}, 0, NULL);
    int m = add(&g, NN_OP_MUL, "scaled", scale, c, 0, NULL); /* the constant first, as Paddle's exporter writes it */
    int a = add(&g, NN_OP_ADD, "shifted", m, shift, 0, NULL);
    int h = add(&g, NN_OP_ADD, "plus3", a, three, 0, NULL);
    int cl = add(&g, NN_OP_CLIP, "clip", h, -1, 2, (float[]){0, 6});
    int mu = add(&g, NN_OP_MUL, "times", a, cl, 0, NULL);
    int dv = add(&g, NN_OP_DIV, "hswish", mu, six, 0, NULL);
    int ch = add(&g, NN_OP_MUL, "per_channel_scale", dv, per_channel, 0, NULL);
    int res = add(&g, NN_OP_ADD, "residual", ch, early, 0, NULL);
    int sig = add(&g, NN_OP_SIGMOID, "sig", res, -1, 0, NULL);
    int sub = add(&g, NN_OP_SUB, "sub", sig, shift, 0, NULL);
    int mean = nn_graph_add_node(&g, NN_OP_MEAN, "mean", 1, &sig, 3, (int64_t[]){1, 2, 3}, 0, NULL); /* reads sig: a run ends there */
    int se = add(&g, NN_OP_MUL, "se", sub, mean, 0, NULL); /* mean is made after sub: not part of sub's run */
    int hs = add(&g, NN_OP_HARD_SWISH, "hs", se, -1, 0, NULL);
    int lr = add(&g, NN_OP_LEAKY_RELU, "leaky", hs, -1, 1, (float[]){0.1f});
    int ng = add(&g, NN_OP_NEG, "neg", lr, -1, 0, NULL);
    int ab = add(&g, NN_OP_ABS, "abs", ng, -1, 0, NULL);
    int hsig = add(&g, NN_OP_HARD_SIGMOID, "hsig", ab, -1, 2, (float[]){0.2f, 0.5f});
    int rl = add(&g, NN_OP_RELU, "relu", hsig, -1, 0, NULL);
    int outs[2] = {rl, a};
    CHECK(rl >= 0 && nn_graph_set_outputs(&g, early_output ? 2 : 1, outs), "build: %s", nn_last_error());
    nn_tensor *in = t_randn(&r, 4, (int64_t[]){1, 4, 9, 40}, 1), *plain[2] = {0}, *fast[2] = {0};
    nn_no_grad_begin();
    CHECK(nn_graph_run(&g, &in, plain), "plain run: %s", nn_last_error());
    for (int k = 0; k < 2; k++) plain[k] = nn_contiguous(plain[k]);
    CHECK(nn_graph_prepare(&g) && nn_graph_run(&g, &in, fast), "prepared run: %s", nn_last_error());
    nn_no_grad_end();
    /* scaled .. sig after c (9 nodes), or scaled, shifted after c and clip .. sig after plus3 (8) when shifted
     * is an output; hs .. relu after se (6) */
    int want = early_output ? 8 + 6 : 9 + 6;
    CHECK(nn_graph_fused_nodes(&g) == want, "%s: %d nodes fused, want %d", early_output ? "an output inside" : "plain",
          nn_graph_fused_nodes(&g), want);
    for (int k = 0; k < 1 + early_output; k++)
      if (plain[k] && fast[k])
        CHECK(nn_numel(plain[k]) == nn_numel(fast[k]) && max_abs_diff(nn_f32(plain[k]), nn_f32(nn_contiguous(fast[k])), nn_numel(plain[k])) < 1e-5,
              "output %d agrees", k);
    nn_tensor_free(in);
    nn_graph_free(&g);
    nn_arena_reset(nn_arena_current());
  }
}
