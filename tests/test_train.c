/* Training sanity: small models must learn; optimizers, freezing, checkpoints,
 * the arena's steady state and thread-count determinism. */
#include "harness.h"

#include <unistd.h>

#define SH(...) (int64_t[]){__VA_ARGS__}

/* ----------------------------------------------------------------- XOR MLP */

TEST(train_mlp_learns_xor) {
  nn_rng rng;
  nn_rng_seed(&rng, 41);
  nn_params p;
  nn_params_init(&p);
  nn_linear l1, l2;
  nn_linear_init(&l1, &p, "l1", 2, 8, true, &rng);
  nn_linear_init(&l2, &p, "l2", 8, 1, true, &rng);
  nn_optim *opt = nn_optim_new(&p, nn_optim_defaults(NN_ADAM, 0.05f));
  float xv[] = {0, 0, 0, 1, 1, 0, 1, 1}, yv[] = {0, 1, 1, 0};
  nn_tensor *x = nn_tensor_from_data(NN_F32, 2, SH(4, 2), xv), *y = nn_tensor_from_data(NN_F32, 2, SH(4, 1), yv);
  float first = 0, last = 0;
  for (int step = 0; step < 400; step++) {
    nn_optim_zero_grad(opt);
    nn_tensor *logits = nn_linear_forward(&l2, nn_tanh(nn_linear_forward(&l1, x)));
    nn_tensor *loss = nn_bce_with_logits(logits, y);
    nn_backward(loss);
    nn_optim_step(opt);
    if (step == 0) first = nn_item(loss);
    last = nn_item(loss);
    nn_arena_reset(nn_arena_current());
  }
  nn_no_grad_begin();
  nn_tensor *pred = nn_sigmoid(nn_linear_forward(&l2, nn_tanh(nn_linear_forward(&l1, x))));
  nn_no_grad_end();
  for (int i = 0; i < 4; i++) CHECK((nn_f32(pred)[i] > 0.5f) == (yv[i] > 0.5f), "xor %d -> %g", i, nn_f32(pred)[i]);
  CHECK(last < 0.05f && last < first, "loss %g -> %g", first, last);
  nn_optim_free(opt);
  nn_params_free(&p);
  nn_tensor_free(x);
  nn_tensor_free(y);
}

/* ----------------------------------------------------- CNN on synthetic images */

/* 16x16 images: class 0 a horizontal bar, 1 a vertical bar, 2 a diagonal, with noise. */
static void make_images(nn_rng *r, int n, float *img, int64_t *label) {
  for (int i = 0; i < n; i++) {
    int c = (int)(nn_rng_u64(r) % 3);
    label[i] = c;
    float *im = img + i * 256;
    for (int k = 0; k < 256; k++) im[k] = 0.3f * nn_rng_normal(r);
    int pos = 2 + (int)(nn_rng_u64(r) % 12), start = (int)(nn_rng_u64(r) % 4), len = 9 + (int)(nn_rng_u64(r) % 4);
    for (int k = start; k < start + len && k < 16; k++) {
      if (c == 0) im[pos * 16 + k] += 1.0f;
      if (c == 1) im[k * 16 + pos] += 1.0f;
      if (c == 2) im[k * 16 + (k + pos) % 16] += 1.0f;
    }
  }
}

typedef struct { nn_conv2d_layer c1, c2; nn_batchnorm bn; nn_linear fc; } small_cnn;

static nn_tensor *cnn_forward(small_cnn *m, nn_tensor *x, bool training) {
  nn_tensor *h = nn_max_pool2d(nn_relu(nn_batchnorm_forward(&m->bn, nn_conv2d_forward(&m->c1, x), training)), 2, 2, 0);
  h = nn_max_pool2d(nn_relu(nn_conv2d_forward(&m->c2, h)), 2, 2, 0);
  return nn_linear_forward(&m->fc, nn_reshape(h, 2, SH(x->shape[0], -1)));
}

TEST(train_cnn_reaches_95_percent) {
  nn_rng rng;
  nn_rng_seed(&rng, 42);
  enum { NTRAIN = 640, NTEST = 300, B = 32 };
  float *tr = malloc(NTRAIN * 256 * 4), *te = malloc(NTEST * 256 * 4);
  int64_t trl[NTRAIN], tel[NTEST];
  make_images(&rng, NTRAIN, tr, trl);
  make_images(&rng, NTEST, te, tel);
  nn_params p;
  nn_params_init(&p);
  small_cnn m;
  nn_conv2d_init(&m.c1, &p, "c1", 1, 8, 3, 1, 1, 1, false, &rng);
  nn_batchnorm_init(&m.bn, &p, "bn", 8);
  nn_conv2d_init(&m.c2, &p, "c2", 8, 16, 3, 1, 1, 1, true, &rng);
  nn_linear_init(&m.fc, &p, "fc", 16 * 4 * 4, 3, true, &rng);
  nn_optim *opt = nn_optim_new(&p, nn_optim_defaults(NN_ADAM, 0.01f));
  for (int epoch = 0; epoch < 4; epoch++)
    for (int b = 0; b < NTRAIN / B; b++) {
      nn_tensor *x = nn_empty(NN_F32, 4, SH(B, 1, 16, 16)), *y = nn_empty(NN_I64, 1, SH(B));
      memcpy(nn_f32(x), tr + b * B * 256, B * 256 * 4);
      memcpy(nn_data(y), trl + b * B, B * 8);
      nn_optim_zero_grad(opt);
      nn_backward(nn_cross_entropy(cnn_forward(&m, x, true), y, -100, 0.0f));
      nn_optim_step(opt);
      nn_arena_reset(nn_arena_current());
    }
  nn_no_grad_begin();
  nn_tensor *x = nn_empty(NN_F32, 4, SH(NTEST, 1, 16, 16));
  memcpy(nn_f32(x), te, NTEST * 256 * 4);
  nn_tensor *pred = nn_argmax(cnn_forward(&m, x, false), 1, false);
  nn_no_grad_end();
  int correct = 0;
  for (int i = 0; i < NTEST; i++) correct += ((int64_t *)nn_data(pred))[i] == tel[i];
  double acc = (double)correct / NTEST;
  printf("    cnn test accuracy %.1f%%\n", 100 * acc);
  CHECK(acc >= 0.95, "accuracy %.3f", acc);
  nn_optim_free(opt);
  nn_params_free(&p);
  free(tr);
  free(te);
}

/* ------------------------------------------------------------ LSTM sum task */

TEST(train_lstm_learns_running_sum) {
  nn_rng rng;
  nn_rng_seed(&rng, 43);
  enum { T = 8, B = 32 };
  nn_params p;
  nn_params_init(&p);
  nn_rnn r;
  nn_linear head;
  nn_rnn_init(&r, &p, "lstm", false, 1, 24, 1, false, &rng);
  nn_linear_init(&head, &p, "head", 24, 1, true, &rng);
  nn_optim *opt = nn_optim_new(&p, nn_optim_defaults(NN_ADAM, 0.01f));
  float last = 0;
  for (int step = 0; step < 600; step++) {
    nn_tensor *x = nn_empty(NN_F32, 3, SH(T, B, 1)), *y = nn_empty(NN_F32, 2, SH(B, 1));
    for (int b = 0; b < B; b++) {
      float s = 0;
      for (int t = 0; t < T; t++) {
        float v = nn_rng_uniform(&rng);
        nn_f32(x)[t * B + b] = v;
        s += v;
      }
      nn_f32(y)[b] = s / T;
    }
    nn_optim_zero_grad(opt);
    nn_tensor *h = nn_rnn_forward(&r, x, NULL);
    nn_tensor *lastt = nn_reshape(nn_slice(h, 0, T - 1, T, 1), 2, SH(B, 24));
    nn_tensor *loss = nn_mse_loss(nn_linear_forward(&head, lastt), y);
    nn_backward(loss);
    nn_optim_step(opt);
    last = step == 0 ? nn_item(loss) : 0.9f * last + 0.1f * nn_item(loss);
    nn_arena_reset(nn_arena_current());
  }
  /* the mean of 8 uniforms has variance 1/96 ~ 0.0104; predicting it must beat that by far */
  printf("    lstm running-mean mse %.5f (variance of target 0.0104)\n", last);
  CHECK(last < 0.001f, "mse %g", last);
  nn_optim_free(opt);
  nn_params_free(&p);
}

/* ------------------------------------------------- optimizers, convex problem */

static float linreg_run(nn_optim_config cfg, int steps, float *first) {
  nn_rng rng;
  nn_rng_seed(&rng, 44);
  nn_params p;
  nn_params_init(&p);
  nn_linear l;
  nn_linear_init(&l, &p, "lin", 5, 1, true, &rng);
  float w_true[5] = {1.5f, -2.0f, 0.5f, 3.0f, -1.0f};
  nn_tensor *x = nn_tensor_new(NN_F32, 2, SH(64, 5)), *y = nn_tensor_new(NN_F32, 2, SH(64, 1));
  nn_fill_normal_(x, &rng, 0, 1);
  for (int i = 0; i < 64; i++) {
    float s = 0.7f;
    for (int k = 0; k < 5; k++) s += w_true[k] * nn_f32(x)[i * 5 + k];
    nn_f32(y)[i] = s;
  }
  nn_optim *opt = nn_optim_new(&p, cfg);
  float last = 0;
  for (int s = 0; s < steps; s++) {
    nn_optim_zero_grad(opt);
    nn_tensor *loss = nn_mse_loss(nn_linear_forward(&l, x), y);
    nn_backward(loss);
    nn_optim_step(opt);
    if (s == 0) *first = nn_item(loss);
    last = nn_item(loss);
    nn_arena_reset(nn_arena_current());
  }
  nn_optim_free(opt);
  nn_params_free(&p);
  nn_tensor_free(x);
  nn_tensor_free(y);
  return last;
}

TEST(train_every_optimizer_lowers_convex_loss) {
  struct { const char *name; nn_optim_config c; } cases[8];
  int n = 0;
  cases[n].name = "sgd"; cases[n++].c = nn_optim_defaults(NN_SGD, 0.05f);
  cases[n].name = "sgd momentum"; cases[n].c = nn_optim_defaults(NN_SGD, 0.02f); cases[n++].c.momentum = 0.9f;
  cases[n].name = "sgd nesterov+wd"; cases[n].c = nn_optim_defaults(NN_SGD, 0.02f); cases[n].c.momentum = 0.9f;
  cases[n].c.nesterov = true; cases[n++].c.weight_decay = 1e-4f;
  cases[n].name = "adagrad"; cases[n++].c = nn_optim_defaults(NN_ADAGRAD, 0.5f);
  cases[n].name = "rmsprop"; cases[n++].c = nn_optim_defaults(NN_RMSPROP, 0.02f);
  cases[n].name = "rmsprop momentum"; cases[n].c = nn_optim_defaults(NN_RMSPROP, 0.01f); cases[n++].c.momentum = 0.5f;
  cases[n].name = "adam"; cases[n++].c = nn_optim_defaults(NN_ADAM, 0.1f);
  cases[n].name = "adamw"; cases[n++].c = nn_optim_defaults(NN_ADAMW, 0.1f);
  for (int i = 0; i < n; i++) {
    float first = 0, last = linreg_run(cases[i].c, 200, &first);
    CHECK(last < 0.01f * first, "%s: loss %g -> %g", cases[i].name, first, last);
  }
}

/* Checks Adam's first update against the closed form: p -= lr * sign(g) (bias-corrected). */
TEST(train_adam_first_step_matches_closed_form) {
  nn_params p;
  nn_params_init(&p);
  nn_tensor *w = nn_params_add(&p, "w", nn_tensor_new(NN_F32, 1, SH(3)), true);
  float g[3] = {0.5f, -2.0f, 1e-3f};
  w->grad = nn_tensor_from_data(NN_F32, 1, SH(3), g);
  nn_optim *o = nn_optim_new(&p, nn_optim_defaults(NN_ADAM, 0.1f));
  nn_optim_step(o);
  for (int i = 0; i < 3; i++) CHECK_CLOSE(nn_f32(w)[i], g[i] > 0 ? -0.1 : 0.1, 1e-4);
  /* SGD with momentum 0.9 twice with the same gradient: p = -lr*g - lr*(0.9g + g) */
  nn_fill_(w, 0.0f);
  nn_optim_config c = nn_optim_defaults(NN_SGD, 0.1f);
  c.momentum = 0.9f;
  nn_optim *s = nn_optim_new(&p, c);
  nn_optim_step(s);
  nn_optim_step(s);
  for (int i = 0; i < 3; i++) CHECK_CLOSE(nn_f32(w)[i], -0.1 * g[i] * (1 + 1.9), 1e-6);
  /* per-parameter learning-rate scales: by prefix or by suffix, the others untouched */
  nn_tensor *u = nn_params_add(&p, "layer.bias", nn_tensor_new(NN_F32, 1, SH(3)), true);
  u->grad = nn_tensor_from_data(NN_F32, 1, SH(3), g);
  nn_fill_(w, 0.0f);
  nn_optim *a = nn_optim_new(&p, nn_optim_defaults(NN_ADAM, 0.1f));
  CHECK(nn_optim_set_lr_scale(a, "w", 3.0f) == 1 && nn_optim_set_lr_scale(a, ".bias", 0.5f) == 1 &&
            nn_optim_set_lr_scale(a, "none", 2.0f) == 0 && nn_optim_set_lr_scale(a, "w", -1.0f) == 0,
        "scales match by name");
  nn_optim_step(a);
  for (int i = 0; i < 3; i++) {
    CHECK_CLOSE(nn_f32(w)[i], g[i] > 0 ? -0.3 : 0.3, 1e-4);
    CHECK_CLOSE(nn_f32(u)[i], g[i] > 0 ? -0.05 : 0.05, 1e-4);
  }
  nn_optim_free(a);
  nn_optim_free(o);
  nn_optim_free(s);
  nn_params_free(&p);
}

TEST(train_clip_and_schedules) {
  nn_params p;
  nn_params_init(&p);
  nn_tensor *w = nn_params_add(&p, "w", nn_tensor_new(NN_F32, 1, SH(2)), true);
  float g[2] = {3, 4};
  w->grad = nn_tensor_from_data(NN_F32, 1, SH(2), g);
  float norm = nn_clip_grad_norm(&p, 1.0f);
  CHECK_CLOSE(norm, 5.0, 1e-6);
  CHECK_CLOSE(hypot(nn_f32(w->grad)[0], nn_f32(w->grad)[1]), 1.0, 1e-5);
  nn_lr_schedule s = {.kind = NN_LR_COSINE, .base_lr = 1.0f, .min_lr = 0.0f, .warmup_steps = 10, .total_steps = 110};
  CHECK_CLOSE(nn_lr_at(&s, 0), 0.1, 1e-6);
  CHECK_CLOSE(nn_lr_at(&s, 9), 1.0, 1e-6);
  CHECK_CLOSE(nn_lr_at(&s, 60), 0.5, 1e-5);
  CHECK_CLOSE(nn_lr_at(&s, 110), 0.0, 1e-6);
  nn_lr_schedule st = {.kind = NN_LR_STEP, .base_lr = 1.0f, .step_size = 10, .gamma = 0.5f};
  CHECK_CLOSE(nn_lr_at(&st, 25), 0.25, 1e-6);
  nn_params_free(&p);
}

/* ---------------------------------------------------- autograd behaviour */

TEST(autograd_accumulates_detaches_and_respects_no_grad) {
  nn_tensor *x = nn_tensor_from_data(NN_F32, 1, SH(2), (float[]){1, 2});
  nn_set_requires_grad(x, true);
  nn_backward(nn_sum_all(nn_mul(x, x)));
  nn_backward(nn_sum_all(nn_mul(x, x)));
  CHECK_CLOSE(nn_f32(x->grad)[1], 8.0, 1e-6); /* 2 * 2x accumulated */
  nn_zero_grad(x);
  nn_tensor *y = nn_mul(nn_detach(x), x); /* gradient flows through one factor only */
  nn_backward(nn_sum_all(y));
  CHECK_CLOSE(nn_f32(x->grad)[1], 2.0, 1e-6);
  size_t tape = nn_tape_size();
  nn_no_grad_begin();
  nn_tensor *z = nn_mul(x, x);
  nn_no_grad_end();
  CHECK(!z->requires_grad && nn_tape_size() == tape, "no_grad records nothing");
  CHECK(!nn_backward(z), "backward on a tensor without grad is refused");
  nn_tensor_free(x);
}

TEST(train_frozen_layer_is_unchanged) {
  nn_rng rng;
  nn_rng_seed(&rng, 45);
  nn_params p;
  nn_params_init(&p);
  nn_linear feat, head;
  nn_linear_init(&feat, &p, "features", 4, 6, true, &rng);
  nn_linear_init(&head, &p, "head", 6, 2, true, &rng);
  CHECK(nn_params_set_trainable(&p, "features", false) == 2, "two tensors frozen");
  nn_tensor *before = nn_tensor_persist(feat.weight), *hbefore = nn_tensor_persist(head.weight);
  nn_optim *opt = nn_optim_new(&p, nn_optim_defaults(NN_SGD, 0.1f));
  nn_tensor *x = t_randn(&rng, 2, SH(8, 4), 1.0f), *y = t_randn(&rng, 2, SH(8, 2), 1.0f);
  float first = 0, last = 0;
  for (int s = 0; s < 30; s++) {
    nn_optim_zero_grad(opt);
    nn_tensor *loss = nn_mse_loss(nn_linear_forward(&head, nn_relu(nn_linear_forward(&feat, x))), y);
    nn_backward(loss);
    nn_optim_step(opt);
    if (!s) first = nn_item(loss);
    last = nn_item(loss);
    nn_arena_reset(nn_arena_current());
  }
  CHECK(memcmp(nn_f32(before), nn_f32(feat.weight), 24 * 4) == 0, "frozen weights changed");
  CHECK(feat.weight->grad == NULL, "frozen weights got a gradient buffer");
  CHECK(memcmp(nn_f32(hbefore), nn_f32(head.weight), 12 * 4) != 0, "head did not train");
  CHECK(last < first, "loss %g -> %g", first, last);
  nn_optim_free(opt);
  nn_params_free(&p);
  nn_tensor_free(before);
  nn_tensor_free(hbefore);
  nn_tensor_free(x);
  nn_tensor_free(y);
}

/* ------------------------------------------------------------ checkpoints */

typedef struct { nn_params p; nn_conv2d_layer c; nn_batchnorm bn; nn_linear fc; nn_optim *opt; } ckpt_model;

static void ckpt_model_init(ckpt_model *m, uint64_t seed) {
  nn_rng rng;
  nn_rng_seed(&rng, seed);
  nn_params_init(&m->p);
  nn_conv2d_init(&m->c, &m->p, "conv", 2, 4, 3, 1, 1, 1, true, &rng);
  nn_batchnorm_init(&m->bn, &m->p, "bn", 4);
  nn_linear_init(&m->fc, &m->p, "fc", 4 * 5 * 5, 3, true, &rng);
  m->opt = nn_optim_new(&m->p, nn_optim_defaults(NN_ADAMW, 0.01f));
}

static nn_tensor *ckpt_forward(ckpt_model *m, nn_tensor *x, bool train) {
  nn_tensor *h = nn_relu(nn_batchnorm_forward(&m->bn, nn_conv2d_forward(&m->c, x), train));
  return nn_linear_forward(&m->fc, nn_reshape(h, 2, SH(x->shape[0], -1)));
}

static void ckpt_train_step(ckpt_model *m, nn_tensor *x, nn_tensor *y) {
  nn_optim_zero_grad(m->opt);
  nn_backward(nn_cross_entropy(ckpt_forward(m, x, true), y, -100, 0.0f));
  nn_optim_step(m->opt);
  nn_arena_reset(nn_arena_current());
}

TEST(checkpoint_save_load_gives_identical_outputs_and_training) {
  nn_rng rng;
  nn_rng_seed(&rng, 46);
  ckpt_model a, b;
  ckpt_model_init(&a, 1);
  ckpt_model_init(&b, 2);
  nn_tensor *x = t_randn(&rng, 4, SH(6, 2, 5, 5), 1.0f);
  nn_tensor *y = nn_tensor_from_data(NN_I64, 1, SH(6), (int64_t[]){0, 1, 2, 0, 1, 2});
  for (int s = 0; s < 5; s++) ckpt_train_step(&a, x, y);
  char path[] = "/tmp/nncore_ckpt_XXXXXX";
  int fd = mkstemp(path);
  close(fd);
  nn_kv meta[] = {{"architecture", "test-cnn"}, {"config", "{\"channels\": 4}"}};
  CHECK(nn_checkpoint_save(path, &a.p, a.opt, meta, 2), "save");
  CHECK(nn_checkpoint_load(path, &b.p, b.opt), "load");
  CHECK(b.opt->step == 5, "step restored (%lld)", (long long)b.opt->step);
  nn_no_grad_begin();
  nn_tensor *ya = ckpt_forward(&a, x, false), *yb = ckpt_forward(&b, x, false);
  nn_no_grad_end();
  CHECK(ya && yb && memcmp(nn_f32(ya), nn_f32(yb), 18 * 4) == 0, "outputs identical after load");
  nn_arena_reset(nn_arena_current());
  /* optimizer state came along: one more step keeps the two models identical */
  ckpt_train_step(&a, x, y);
  ckpt_train_step(&b, x, y);
  bool same = true;
  for (int i = 0; i < a.p.n; i++) same &= memcmp(nn_data(a.p.t[i]), nn_data(b.p.t[i]), nn_numel(a.p.t[i]) * 4) == 0;
  CHECK(same, "training continues identically after a reload");
  /* a checkpoint refused for its optimizer part must not have touched the model */
  ckpt_model c;
  ckpt_model_init(&c, 7);
  nn_optim *sgd = nn_optim_new(&c.p, nn_optim_defaults(NN_SGD, 0.1f));
  nn_tensor *before = nn_tensor_persist(c.c.weight);
  CHECK(!nn_checkpoint_load(path, &c.p, sgd) && strstr(nn_last_error(), "optimizer"), "optimizer mismatch refused");
  CHECK(memcmp(nn_f32(before), nn_f32(c.c.weight), nn_numel(before) * 4) == 0, "refused checkpoint changed the model");
  nn_tensor_free(before);
  nn_optim_free(sgd);
  nn_optim_free(c.opt);
  nn_params_free(&c.p);
  nn_st_file *f = nn_st_open(path);
  CHECK(f && nn_st_meta(f, "architecture") && strcmp(nn_st_meta(f, "architecture"), "test-cnn") == 0, "metadata");
  CHECK(f && nn_st_meta(f, "step") && strcmp(nn_st_meta(f, "step"), "5") == 0, "step metadata");
  nn_st_close(f);
  unlink(path);
  nn_optim_free(a.opt);
  nn_optim_free(b.opt);
  nn_params_free(&a.p);
  nn_params_free(&b.p);
  nn_tensor_free(x);
  nn_tensor_free(y);
}

/* --------------------------------------------------- arena, threads */

/* The step after the first must reuse the first's memory, not a fresh block (fresh memory is page-faulted
 * again: a 720p decode's second picture took 2.5x as long), and steps of two shapes taking turns must
 * settle instead of growing. */
TEST(arena_reset_reuses_the_same_memory) {
  nn_arena *a = nn_arena_new(1 << 16);
  const size_t sizes[] = {40000, 900000, 3000000, 100, 5000000, 64};
  const size_t other[] = {6000000, 10, 700000, 2500000};
  void *first[6];
  for (int i = 0; i < 6; i++) first[i] = nn_arena_alloc(a, sizes[i]);
  size_t mallocs = nn_arena_mallocs(a), capacity = nn_arena_capacity(a);
  CHECK(mallocs > 1, "the first step spilled into %zu chunks", mallocs);
  for (int round = 0; round < 5; round++) {
    nn_arena_reset(a);
    CHECK(nn_arena_used(a) == 0, "reset empties the arena");
    bool same = true;
    for (int i = 0; i < 6; i++) {
      char *p = nn_arena_alloc(a, sizes[i]);
      same = same && p == first[i];
      if (p) memset(p, i, sizes[i]); /* the memory is really there (ASan checks its bounds) */
    }
    CHECK(same, "round %d: each allocation lands where the first step's did", round);
    nn_arena_reset(a);
    for (int i = 0; i < 4; i++) CHECK(nn_arena_alloc(a, other[i]) != NULL, "the other shape allocates");
    if (round == 0) mallocs = nn_arena_mallocs(a), capacity = nn_arena_capacity(a);
  }
  CHECK(nn_arena_mallocs(a) == mallocs && nn_arena_capacity(a) == capacity,
        "alternating steps settle (%zu mallocs, %zu bytes after the first round; %zu, %zu now)", mallocs, capacity,
        nn_arena_mallocs(a), nn_arena_capacity(a));
  nn_arena_free(a);
}

TEST(arena_steady_state_training_makes_no_allocations) {
  nn_arena *arena = nn_arena_new(1 << 16); /* small on purpose: it must grow then settle */
  nn_arena *prev = nn_arena_set_current(arena);
  ckpt_model m;
  ckpt_model_init(&m, 3);
  nn_rng rng;
  nn_rng_seed(&rng, 47);
  nn_tensor *x = t_randn(&rng, 4, SH(6, 2, 5, 5), 1.0f);
  nn_tensor *y = nn_tensor_from_data(NN_I64, 1, SH(6), (int64_t[]){0, 1, 2, 0, 1, 2});
  for (int s = 0; s < 3; s++) ckpt_train_step(&m, x, y);
  size_t mallocs = nn_arena_mallocs(arena);
  for (int s = 0; s < 20; s++) ckpt_train_step(&m, x, y);
  CHECK(nn_arena_mallocs(arena) == mallocs, "arena allocated %zu more times in steady state",
        nn_arena_mallocs(arena) - mallocs);
  CHECK(nn_arena_used(arena) == 0 && nn_tape_size() == 0, "reset empties the arena and tape");
  nn_arena_set_current(prev);
  nn_arena_free(arena);
  nn_optim_free(m.opt);
  nn_params_free(&m.p);
  nn_tensor_free(x);
  nn_tensor_free(y);
}

static void grads_for_threads(int threads, float *out, int64_t *n_out) {
  nn_set_num_threads(threads);
  nn_rng rng;
  nn_rng_seed(&rng, 48);
  nn_params p;
  nn_params_init(&p);
  nn_conv2d_layer c1, c2;
  nn_layernorm ln;
  nn_conv2d_init(&c1, &p, "c1", 3, 16, 3, 1, 1, 1, true, &rng);
  nn_conv2d_init(&c2, &p, "c2", 16, 8, 3, 2, 1, 1, true, &rng);
  nn_layernorm_init(&ln, &p, "ln", 16);
  nn_tensor *x = t_randn(&rng, 4, SH(4, 3, 32, 32), 1.0f);
  nn_tensor *h = nn_gelu(nn_conv2d_forward(&c2, nn_relu(nn_conv2d_forward(&c1, x))));
  nn_tensor *o = nn_layer_norm(nn_softmax(nn_upsample_bilinear(h, 16, 16), -1), ln.weight, ln.bias, 1e-5f);
  nn_backward(nn_sum_all(nn_mul(o, o)));
  int64_t k = 0;
  for (int i = 0; i < p.n; i++) {
    memcpy(out + k, nn_f32(p.t[i]->grad), nn_numel(p.t[i]) * 4);
    k += nn_numel(p.t[i]);
  }
  *n_out = k;
  nn_arena_reset(nn_arena_current());
  nn_params_free(&p);
  nn_tensor_free(x);
}

TEST(threads_results_identical_for_1_and_2_threads) {
  int saved = nn_get_num_threads();
  float *a = malloc(1 << 20), *b = malloc(1 << 20);
  int64_t na = 0, nb = 0;
  grads_for_threads(1, a, &na);
  grads_for_threads(2, b, &nb);
  CHECK(na == nb && na > 1000, "gradient sizes");
  CHECK(memcmp(a, b, (size_t)na * 4) == 0, "gradients differ between 1 and 2 threads (max %g)", max_abs_diff(a, b, na));
  free(a);
  free(b);
  nn_set_num_threads(saved);
}
