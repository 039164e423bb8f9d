/* `e2e demo`: trains a small CNN from scratch on generated images of shapes,
 * printing progress and loss as it goes, then checkpoints, reloads and
 * evaluates. It exercises the whole engine: conv, batch norm, pooling,
 * autograd, AdamW with warm-up + cosine schedule, gradient clipping, the
 * arena, the thread pool and safetensors. */
#include "e2e.h"
#include "plot.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "nncore/nncore.h"

#define IMG 24
#define NCLASS 4
static const char *class_names[NCLASS] = {"disc", "square", "triangle", "cross"};

/* One RGB image of a random shape at a random place and size on a noisy background. */
static int draw_shape(nn_rng *r, float *img) {
  int cls = (int)(nn_rng_u64(r) % NCLASS);
  float bg[3], fg[3];
  for (int c = 0; c < 3; c++) {
    bg[c] = nn_rng_uniform(r);
    fg[c] = nn_rng_uniform(r);
  }
  /* keep the shape visible: push foreground away from background */
  for (int c = 0; c < 3; c++)
    if (fabsf(fg[c] - bg[c]) < 0.35f) fg[c] = bg[c] > 0.5f ? bg[c] - 0.45f : bg[c] + 0.45f;
  float size = 5.0f + 4.0f * nn_rng_uniform(r);
  float cx = size + (IMG - 2 * size) * nn_rng_uniform(r), cy = size + (IMG - 2 * size) * nn_rng_uniform(r);
  for (int y = 0; y < IMG; y++)
    for (int x = 0; x < IMG; x++) {
      float dx = (float)x - cx, dy = (float)y - cy;
      bool in = false;
      switch (cls) {
      case 0: in = dx * dx + dy * dy <= size * size; break;
      case 1: in = fabsf(dx) <= size * 0.8f && fabsf(dy) <= size * 0.8f; break;
      case 2: in = dy <= size * 0.8f && dy >= -size && fabsf(dx) <= (dy + size) * 0.55f; break;
      case 3: in = (fabsf(dx) <= size * 0.3f && fabsf(dy) <= size) || (fabsf(dy) <= size * 0.3f && fabsf(dx) <= size); break;
      }
      for (int c = 0; c < 3; c++) img[(c * IMG + y) * IMG + x] = (in ? fg[c] : bg[c]) + 0.08f * nn_rng_normal(r) - 0.5f;
    }
  return cls;
}

typedef struct {
  nn_params p;
  nn_conv2d_layer c1, c2, c3;
  nn_batchnorm b1, b2, b3;
  nn_linear fc;
} shapes_net;

static bool net_init(shapes_net *m, uint64_t seed) {
  nn_rng rng;
  nn_rng_seed(&rng, seed);
  nn_params_init(&m->p);
  return nn_conv2d_init(&m->c1, &m->p, "conv1", 3, 16, 3, 1, 1, 1, false, &rng) &&
         nn_batchnorm_init(&m->b1, &m->p, "bn1", 16) &&
         nn_conv2d_init(&m->c2, &m->p, "conv2", 16, 32, 3, 1, 1, 1, false, &rng) &&
         nn_batchnorm_init(&m->b2, &m->p, "bn2", 32) &&
         nn_conv2d_init(&m->c3, &m->p, "conv3", 32, 64, 3, 1, 1, 1, false, &rng) &&
         nn_batchnorm_init(&m->b3, &m->p, "bn3", 64) &&
         nn_linear_init(&m->fc, &m->p, "fc", 64, NCLASS, true, &rng);
}

static nn_tensor *net_forward(shapes_net *m, nn_tensor *x, bool train) {
  nn_tensor *h = nn_max_pool2d(nn_relu(nn_batchnorm_forward(&m->b1, nn_conv2d_forward(&m->c1, x), train)), 2, 2, 0);
  h = nn_max_pool2d(nn_relu(nn_batchnorm_forward(&m->b2, nn_conv2d_forward(&m->c2, h), train)), 2, 2, 0);
  h = nn_relu(nn_batchnorm_forward(&m->b3, nn_conv2d_forward(&m->c3, h), train));
  h = nn_mean(nn_reshape(h, 3, (int64_t[]){x->shape[0], 64, -1}), 2, false); /* global average pool */
  return nn_linear_forward(&m->fc, h);
}

static double evaluate(shapes_net *m, const float *imgs, const int64_t *labels, int n, int *per_class_ok, int *per_class_n) {
  int correct = 0;
  nn_no_grad_begin();
  for (int s = 0; s < n; s += 100) {
    int b = n - s < 100 ? n - s : 100;
    nn_tensor *x = nn_empty(NN_F32, 4, (int64_t[]){b, 3, IMG, IMG});
    memcpy(nn_f32(x), imgs + (size_t)s * 3 * IMG * IMG, (size_t)b * 3 * IMG * IMG * 4);
    nn_tensor *pred = nn_argmax(net_forward(m, x, false), 1, false);
    for (int i = 0; i < b; i++) {
      int64_t p = ((int64_t *)nn_data(pred))[i], l = labels[s + i];
      correct += p == l;
      if (per_class_n) {
        per_class_n[l]++;
        per_class_ok[l] += p == l;
      }
    }
    nn_arena_reset(nn_arena_current());
  }
  nn_no_grad_end();
  return (double)correct / n;
}

int e2e_demo(int argc, char **argv) {
  int steps = 600, batch = 32, threads = 0;
  const char *out = "e2e-demo";
  for (int i = 0; i < argc; i++) {
    if (!strcmp(argv[i], "--steps") && i + 1 < argc) steps = atoi(argv[++i]);
    else if (!strcmp(argv[i], "--threads") && i + 1 < argc) threads = atoi(argv[++i]);
    else if (!strcmp(argv[i], "--out") && i + 1 < argc) out = argv[++i];
    else {
      fprintf(stderr, "usage: e2e demo [--steps N] [--threads N] [--out DIR]\n");
      return 2;
    }
  }
  if (steps < 10 || steps > 1000000) {
    fprintf(stderr, "e2e demo: --steps must be between 10 and 1000000\n");
    return 2;
  }
  if (mkdir(out, 0755) != 0 && errno != EEXIST) {
    fprintf(stderr, "e2e demo: cannot create %s: %s\n", out, strerror(errno));
    return 1;
  }
  nn_set_num_threads(threads);
  printf("nncore demo: a CNN learns to tell %s / %s / %s / %s apart, from scratch\n", class_names[0], class_names[1],
         class_names[2], class_names[3]);
  printf("threads %d, batch %d, %d steps, AdamW with warm-up and cosine decay\n\n", nn_get_num_threads(), batch, steps);

  enum { NTEST = 1000 };
  size_t isz = 3 * IMG * IMG;
  float *test = malloc(NTEST * isz * 4), *xb = malloc((size_t)batch * isz * 4);
  int64_t test_l[NTEST], yb[256];
  nn_rng data_rng, test_rng;
  nn_rng_seed(&data_rng, 7);
  nn_rng_seed(&test_rng, 1234567); /* a different stream: test images are never trained on */
  for (int i = 0; i < NTEST; i++) test_l[i] = draw_shape(&test_rng, test + i * isz);

  shapes_net m;
  if (!net_init(&m, 1)) {
    fprintf(stderr, "e2e demo: %s\n", nn_last_error());
    return 1;
  }
  nn_optim *opt = nn_optim_new(&m.p, nn_optim_defaults(NN_ADAMW, 3e-3f));
  nn_lr_schedule sched = {.kind = NN_LR_COSINE, .base_lr = 3e-3f, .min_lr = 1e-4f, .warmup_steps = steps / 20, .total_steps = steps};
  printf("model: %lld parameters\n", (long long)nn_params_numel(&m.p, true));
  printf("%8s %10s %8s %10s %8s\n", "step", "loss", "lr", "img/s", "ETA");
  double *curve_x = malloc((size_t)steps * sizeof(double)), *curve_y = malloc((size_t)steps * sizeof(double));
  double t0 = e2e_now_s(), smooth = 0;
  for (int step = 0; step < steps; step++) {
    for (int i = 0; i < batch; i++) yb[i] = draw_shape(&data_rng, xb + i * isz);
    nn_tensor *x = nn_empty(NN_F32, 4, (int64_t[]){batch, 3, IMG, IMG});
    nn_tensor *y = nn_empty(NN_I64, 1, (int64_t[]){batch});
    memcpy(nn_f32(x), xb, (size_t)batch * isz * 4);
    memcpy(nn_data(y), yb, (size_t)batch * 8);
    opt->cfg.lr = nn_lr_at(&sched, step);
    nn_optim_zero_grad(opt);
    nn_tensor *loss = nn_cross_entropy(net_forward(&m, x, true), y, -100, 0.0f);
    if (!loss || !nn_backward(loss)) {
      fprintf(stderr, "e2e demo: step %d failed: %s\n", step, nn_last_error());
      return 1;
    }
    nn_clip_grad_norm(&m.p, 5.0f);
    nn_optim_step(opt);
    float l = nn_item(loss);
    smooth = step == 0 ? l : 0.95 * smooth + 0.05 * l;
    curve_x[step] = step;
    curve_y[step] = l;
    nn_arena_reset(nn_arena_current());
    if ((step + 1) % (steps / 12 > 0 ? steps / 12 : 1) == 0 || step == steps - 1) {
      double el = e2e_now_s() - t0, ips = (double)(step + 1) * batch / el;
      printf("%8d %10.4f %8.5f %10.0f %7.0fs\n", step + 1, smooth, opt->cfg.lr, ips, el / (step + 1) * (steps - step - 1));
      fflush(stdout);
    }
  }
  double train_s = e2e_now_s() - t0;
  int ok[NCLASS] = {0}, cnt[NCLASS] = {0};
  double acc = evaluate(&m, test, test_l, NTEST, ok, cnt);
  printf("\ntrained in %.1fs; accuracy on %d unseen images: %.1f%%\n", train_s, NTEST, 100 * acc);
  for (int c = 0; c < NCLASS; c++) printf("  %-9s %5.1f%% (%d images)\n", class_names[c], 100.0 * ok[c] / (cnt[c] ? cnt[c] : 1), cnt[c]);

  char path[1024], acc_s[32], steps_s[32], time_s[32];
  snprintf(path, sizeof path, "%s/shapes-cnn.safetensors", out);
  snprintf(acc_s, sizeof acc_s, "%.4f", acc);
  snprintf(steps_s, sizeof steps_s, "%d", steps);
  snprintf(time_s, sizeof time_s, "%.1f", train_s);
  nn_kv meta[] = {{"architecture", "shapes-cnn (3x conv3x3+BN+ReLU, GAP, linear)"},
                  {"dataset", "generated shapes 24x24 RGB, 4 classes (tools/demo.c)"},
                  {"recipe", "e2e demo"}, {"steps", steps_s}, {"train_seconds", time_s}, {"test_accuracy", acc_s}};
  if (!nn_checkpoint_save(path, &m.p, opt, meta, 6)) {
    fprintf(stderr, "e2e demo: %s\n", nn_last_error());
    return 1;
  }
  /* reload into a fresh model: it must classify identically */
  shapes_net m2;
  net_init(&m2, 99);
  nn_optim *opt2 = nn_optim_new(&m2.p, nn_optim_defaults(NN_ADAMW, 3e-3f));
  bool reload_ok = nn_checkpoint_load(path, &m2.p, opt2);
  double acc2 = reload_ok ? evaluate(&m2, test, test_l, NTEST, NULL, NULL) : -1;
  printf("checkpoint: %s (reloaded: accuracy %.1f%%, %s)\n", path, 100 * acc2, acc2 == acc ? "identical" : "DIFFERENT");

  snprintf(path, sizeof path, "%s/loss.png", out);
  plot_series s = {.label = "training loss (per step)", .x = curve_x, .y = curve_y, .n = steps};
  plot_spec spec = {.title = "e2e demo: shapes CNN training loss", .xlabel = "step", .ylabel = "cross-entropy", .log_y = true};
  if (plot_lines_png(path, &spec, &s, 1)) printf("loss curve: %s\n", path);

  bool good = reload_ok && acc2 == acc && acc > 0.9;
  nn_optim_free(opt);
  nn_optim_free(opt2);
  nn_params_free(&m.p);
  nn_params_free(&m2.p);
  free(test);
  free(xb);
  free(curve_x);
  free(curve_y);
  if (!good) fprintf(stderr, "e2e demo: the model did not learn well enough (accuracy %.3f)\n", acc);
  return good ? 0 : 1;
}
