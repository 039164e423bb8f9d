/* `e2e train codec`: the learned codec's training recipe. Random patches of
 * BSDS500 train+test (flips as augmentation), loss lambda*255^2*MSE + bpp,
 * Adam with a cosine schedule. Every --eval-every steps it really codes a few
 * BSDS500 val images (rounding + rANS, not the training proxy) and reports
 * their bpp and PSNR. Kodak is never touched here: it is evaluation-only. */
#include <glib.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "e2e/codec.h"
#include "e2e/image.h"
#include "codec_tool.h"
#include "e2e.h"
#include "plot.h"

/* Every .jpg/.jpeg/.png of a folder, in name order; appends to set. */
bool codec_load_folder(const char *dir, image_set_t *set, int max) {
  int n = 0;
  char **names = e2e_list_images(dir, &n);
  if (!names) return false;
  bool ok = true;
  for (int i = 0; i < n; i++) {
    if (ok && (max <= 0 || set->n < max)) {
      char path[2048];
      snprintf(path, sizeof path, "%s/%s", dir, names[i]);
      set->im = realloc(set->im, sizeof *set->im * (size_t)(set->n + 1));
      set->names = realloc(set->names, sizeof *set->names * (size_t)(set->n + 1));
      if (!e2e_image_load(path, &set->im[set->n])) ok = false;
      else set->names[set->n++] = strdup(names[i]);
    }
  }
  e2e_free_names(names, n);
  if (ok && set->n == 0) {
    nn_set_error("no .jpg or .png images in %s", dir);
    ok = false;
  }
  return ok;
}

void codec_free_set(image_set_t *set) {
  for (int i = 0; i < set->n; i++) {
    e2e_image_free(&set->im[i]);
    free(set->names[i]);
  }
  free(set->im);
  free(set->names);
  memset(set, 0, sizeof *set);
}

/* Codes one image for real; bpp and PSNR-RGB of the decoder's reconstruction. */
bool codec_measure(codec_model *c, int quality, const e2e_image *im, double *bpp, double *psnr, size_t *bytes) {
  uint8_t *stream = NULL, *rec = malloc((size_t)im->w * im->h * 3);
  size_t len = 0;
  if (!rec || !codec_compress(c, NULL, quality, im->rgb, im->w, im->h, im->w * 3, &stream, &len, rec)) {
    free(rec);
    return false;
  }
  *bpp = 8.0 * (double)len / ((double)im->w * im->h);
  *psnr = e2e_image_psnr(im->rgb, rec, (size_t)im->w * im->h * 3);
  if (bytes) *bytes = len;
  free(stream);
  free(rec);
  return true;
}

static const char *data_root(const char *arg) {
  if (arg) return arg;
  const char *e = getenv("E2E_SHARED_DATA");
  return e ? e : "../shared/data";
}

static void usage(void) {
  fprintf(stderr,
          "usage: e2e train codec [--out FILE] [--steps 6000] [--batch 8] [--patch 128]\n"
          "                       [--lr 3e-4] [--threads N] [--seed S] [--init FILE] [--data-root DIR]\n"
          "                       [--eval-every 500] [--val-images 8] [--n 64] [--m 192] [--curve PNG]\n"
          "                       [--max-seconds T (stop by time; the schedule follows whichever runs out first)]\n"
          "                       [--reset-hyper 1 (with --init: fresh hyperprior on the loaded transforms)]\n"
          "                       [--widen-m M (with --init: grow y to M channels, keeping what the model computes)]\n"
          "                       [--mean-head 1 (with --init: a scale-only model learns to predict means too; it starts at 0)]\n"
          "                       [--scale-only 1 (a new model without the mean head, as the shipped one began)]\n"
          "                       [--level-mod 1 (per-level scales in front of every GDN; with --init they start at 1)]\n"
          "                       [--level-mod-lr 10 (the level scales learn at this multiple of --lr)]\n"
          "                       [--lambdas L1,..,L%d (rising; with --init the levels' gains are carried over)]\n"
          "                       [--levels Q,.. (draw patches from these levels only, repeats weigh more; default all)]\n"
          "                       [--context C (a checkerboard context model of C channels; with --init it starts neutral)]\n"
          "                       [--anchor-context C (a context model of C channels for the anchors on odd rows, from\n"
          "                        those on even rows; needs a context model; starts neutral likewise)]\n"
          "                       [--context-lr 10 (both context models learn at this multiple of --lr)]\n"
          "                       [--train-only PREFIX,.. (train only the tensors whose names start with one of them, e.g. context.)]\n"
          "  trains one model for all %d quality levels (a level drawn per patch)\n",
          CODEC_MAX_QUALITY, CODEC_MAX_QUALITY);
}

/* Really codes the validation images at every level; prints and stores the means. */
static bool validate(codec_model *c, const image_set_t *val, double *bpp, double *psnr) {
  printf("  BSDS500 val (%d images, real bitstreams):", val->n);
  for (int q = 1; q <= CODEC_MAX_QUALITY; q++) {
    bpp[q - 1] = psnr[q - 1] = 0;
    for (int i = 0; i < val->n; i++) {
      double b, p;
      if (!codec_measure(c, q, &val->im[i], &b, &p, NULL)) {
        fprintf(stderr, "e2e train codec: coding %s: %s\n", val->names[i], nn_last_error());
        return false;
      }
      bpp[q - 1] += b / val->n;
      psnr[q - 1] += p / val->n;
    }
    printf("  q%d %.3f bpp %.2f dB", q, bpp[q - 1], psnr[q - 1]);
  }
  printf("\n");
  fflush(stdout);
  return true;
}

/* Fresh hyper-analysis, hyper-synthesis and z density on top of loaded
 * transforms: for continuing a model whose hyperprior never learned. */
static bool reset_hyperprior(codec_model *c, uint64_t seed) {
  codec_model fresh;
  if (!codec_init(&fresh, &c->cfg, seed)) return false;
  for (int i = 0; i < c->p.n; i++) {
    const char *name = c->p.names[i];
    if (strncmp(name, "h_a.", 4) && strncmp(name, "h_s.", 4) && strncmp(name, "z.", 2)) continue;
    nn_tensor *src = nn_params_find(&fresh.p, name);
    memcpy(nn_data(c->p.t[i]), nn_data(src), (size_t)nn_numel(src) * nn_dtype_size(src->dtype));
  }
  codec_free(&fresh);
  return true;
}

int e2e_train_codec(int argc, char **argv) {
  double max_seconds = 0;
  int steps = 6000, batch = 8, patch = 128, threads = 0, eval_every = 500, val_images = 8, n_ch = 0, m_ch = 0;
  float lr = 3e-4f;
  uint64_t seed = 1;
  const char *out = NULL, *init = NULL, *root_arg = NULL, *curve_arg = NULL;
  bool reset_hyper = false;
  int widen_m = 0;
  bool mean_head = false, scale_only = false, level_mod = false;
  float level_mod_lr = 10.0f;
  const char *lambdas_arg = NULL, *train_only = NULL;
  int context = 0, anchor_context = 0;
  float context_lr = 10.0f;
  int levels[16], n_levels = 0; /* the levels patches are drawn from; all by default */
  for (int i = 0; i < argc; i++) {
    const char *k = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
    if (!v) {
      usage();
      return 2;
    }
    if (!strcmp(k, "--out")) out = v;
    else if (!strcmp(k, "--steps")) steps = atoi(v);
    else if (!strcmp(k, "--batch")) batch = atoi(v);
    else if (!strcmp(k, "--patch")) patch = atoi(v);
    else if (!strcmp(k, "--lr")) lr = strtof(v, NULL);
    else if (!strcmp(k, "--threads")) threads = atoi(v);
    else if (!strcmp(k, "--seed")) seed = strtoull(v, NULL, 10);
    else if (!strcmp(k, "--init")) init = v;
    else if (!strcmp(k, "--data-root")) root_arg = v;
    else if (!strcmp(k, "--eval-every")) eval_every = atoi(v);
    else if (!strcmp(k, "--val-images")) val_images = atoi(v);
    else if (!strcmp(k, "--n")) n_ch = atoi(v);
    else if (!strcmp(k, "--m")) m_ch = atoi(v);
    else if (!strcmp(k, "--curve")) curve_arg = v;
    else if (!strcmp(k, "--max-seconds")) max_seconds = strtod(v, NULL);
    else if (!strcmp(k, "--reset-hyper")) reset_hyper = atoi(v) != 0;
    else if (!strcmp(k, "--widen-m")) widen_m = atoi(v);
    else if (!strcmp(k, "--mean-head")) mean_head = atoi(v) != 0;
    else if (!strcmp(k, "--scale-only")) scale_only = atoi(v) != 0;
    else if (!strcmp(k, "--level-mod")) level_mod = atoi(v) != 0;
    else if (!strcmp(k, "--level-mod-lr")) level_mod_lr = strtof(v, NULL);
    else if (!strcmp(k, "--lambdas")) lambdas_arg = v;
    else if (!strcmp(k, "--context")) context = atoi(v);
    else if (!strcmp(k, "--anchor-context")) anchor_context = atoi(v);
    else if (!strcmp(k, "--train-only")) train_only = v;
    else if (!strcmp(k, "--context-lr")) context_lr = strtof(v, NULL);
    else if (!strcmp(k, "--levels")) {
      n_levels = 0;
      for (char *p = (char *)v, *end; *p; p = *end == ',' ? end + 1 : end) {
        long q = strtol(p, &end, 10);
        if (end == p || q < 1 || q > CODEC_MAX_QUALITY || n_levels == 16 || (*end && *end != ',')) {
          fprintf(stderr, "e2e train codec: --levels takes up to 16 levels in 1..%d, comma-separated\n",
                  CODEC_MAX_QUALITY);
          return 2;
        }
        levels[n_levels++] = (int)q;
      }
    } else {
      usage();
      return 2;
    }
    i++;
  }
  if (steps < 1 || batch < 1 || batch > 256 || patch < 64 ||
      patch % CODEC_STRIDE || patch > 320 || !(lr > 0) || eval_every < 1 || val_images < 0 ||
      !(level_mod_lr >= 0 && level_mod_lr <= 1000) || !(context_lr >= 0 && context_lr <= 1000) || context < 0 || context > 512 ||
      anchor_context < 0 || anchor_context > 512) {
    fprintf(stderr, "e2e train codec: --steps >= 1, --batch 1..256, --patch a multiple of 64 "
                    "(64..320, BSDS500 images are 481x321), --lr > 0, --level-mod-lr and --context-lr 0..1000, --context and --anchor-context 0..512\n");
    return 2;
  }
  /* flags that would otherwise do nothing, said out loud rather than ignored */
  const char *needs_init = !init && reset_hyper ? "--reset-hyper" : !init && widen_m ? "--widen-m" : !init && mean_head ? "--mean-head" : NULL;
  const char *needs_new = init && (n_ch || m_ch) ? "--n/--m" : init && scale_only ? "--scale-only" : NULL;
  if (needs_init || needs_new) {
    fprintf(stderr, "e2e train codec: %s %s\n", needs_init ? needs_init : needs_new,
            needs_init ? "changes a loaded model: it needs --init" : "shapes a new model: the --init model keeps its own");
    return 2;
  }
  nn_set_num_threads(threads);
  const char *root = data_root(root_arg);
  char dir[1024];
  image_set_t train = {0}, val = {0};
  snprintf(dir, sizeof dir, "%s/codec/bsds500/train", root);
  bool ok = codec_load_folder(dir, &train, 0);
  snprintf(dir, sizeof dir, "%s/codec/bsds500/test", root);
  ok = ok && codec_load_folder(dir, &train, 0);
  snprintf(dir, sizeof dir, "%s/codec/bsds500/val", root);
  ok = ok && (val_images == 0 || codec_load_folder(dir, &val, val_images));
  if (!ok) {
    fprintf(stderr, "e2e train codec: %s\n", nn_last_error());
    return 1;
  }
  for (int i = 0; i < train.n; i++)
    if (train.im[i].w < patch || train.im[i].h < patch) {
      fprintf(stderr, "e2e train codec: %s is smaller than the %d patch\n", train.names[i], patch);
      return 1;
    }
  codec_model c = {0};
  codec_config cfg = codec_config_default();
  if (n_ch) cfg.n = n_ch;
  if (m_ch) cfg.m = m_ch;
  if (scale_only) cfg.mean_scale = false;
  if (level_mod) cfg.level_mod = true;
  if (context) cfg.context = context;
  if (anchor_context) cfg.anchor_context = anchor_context;
  if (init) {
    if (!codec_load(&c, init)) {
      fprintf(stderr, "e2e train codec: --init: %s\n", nn_last_error());
      return 1;
    }
  } else if (!codec_init(&c, &cfg, seed)) {
    fprintf(stderr, "e2e train codec: %s\n", nn_last_error());
    return 1;
  }
  if (init && reset_hyper && !reset_hyperprior(&c, seed)) {
    fprintf(stderr, "e2e train codec: --reset-hyper: %s\n", nn_last_error());
    return 1;
  }
  if (init && mean_head && !codec_add_mean_head(&c, seed)) {
    fprintf(stderr, "e2e train codec: --mean-head: %s\n", nn_last_error());
    return 1;
  }
  if (init && level_mod && !c.cfg.level_mod && !codec_add_level_mod(&c, seed)) {
    fprintf(stderr, "e2e train codec: --level-mod: %s\n", nn_last_error());
    return 1;
  }
  if (init && context && c.cfg.context != context && !codec_add_context(&c, context, seed)) {
    fprintf(stderr, "e2e train codec: --context: %s\n", nn_last_error());
    return 1;
  }
  if (init && anchor_context && c.cfg.anchor_context != anchor_context &&
      !codec_add_anchor_context(&c, anchor_context, seed)) {
    fprintf(stderr, "e2e train codec: --anchor-context: %s\n", nn_last_error());
    return 1;
  }
  if (init && widen_m) {
    if (widen_m <= c.cfg.m || widen_m > 1024) {
      fprintf(stderr, "e2e train codec: --widen-m %d: must exceed the model's %d latent channels (at most 1024)\n",
              widen_m, c.cfg.m);
      return 2;
    }
    if (!codec_widen_latents(&c, widen_m, seed)) {
      fprintf(stderr, "e2e train codec: --widen-m: %s\n", nn_last_error());
      return 1;
    }
  }
  if (lambdas_arg) {
    float lam[CODEC_MAX_QUALITY];
    char *end = (char *)lambdas_arg;
    int got = 0;
    for (; got < CODEC_MAX_QUALITY; got++) {
      lam[got] = strtof(end, &end);
      if (got < CODEC_MAX_QUALITY - 1 && *end++ != ',') break;
    }
    if (got != CODEC_MAX_QUALITY || *end) {
      fprintf(stderr, "e2e train codec: --lambdas needs %d comma-separated numbers\n", CODEC_MAX_QUALITY);
      return 2;
    }
    float old_lo = codec_lambda(&c.cfg, 1), old_hi = codec_lambda(&c.cfg, CODEC_MAX_QUALITY);
    if (lam[0] < old_lo / 4 || lam[CODEC_MAX_QUALITY - 1] > old_hi * 4) /* seen: 600x out started at 4.8 dB */
      fprintf(stderr, "e2e train codec: warning: --lambdas %g..%g reach far past the model's %g..%g; their gains are "
                      "extrapolated, so the first steps may code poorly\n",
              (double)lam[0], (double)lam[CODEC_MAX_QUALITY - 1], (double)old_lo, (double)old_hi);
    if (!codec_set_lambdas(&c, lam)) {
      fprintf(stderr, "e2e train codec: --lambdas: %s\n", nn_last_error());
      return 2;
    }
  }
  if (!out) out = "codec.safetensors";
  if (train_only) {
    nn_params_set_trainable(&c.p, "", false);
    int hits = 0;
    char *list = g_strdup(train_only), *save = NULL, *unmatched = NULL; /* comma-separated prefixes */
    for (char *t = strtok_r(list, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
      int h = nn_params_set_trainable(&c.p, t, true);
      if (!h && !unmatched) unmatched = g_strdup(t); /* a misspelt prefix would otherwise train nothing quietly */
      hits += h;
    }
    g_free(list);
    for (int i = 0; i < c.p.n; i++) /* the entropy tables are integers the training never touches */
      if (c.p.t[i]->dtype != NN_F32 && c.p.t[i]->requires_grad) c.p.t[i]->requires_grad = false, hits--;
    if (hits <= 0 || unmatched) {
      fprintf(stderr, "e2e train codec: --train-only %s: the model has no tensor whose name starts with it\n",
              unmatched ? unmatched : train_only);
      g_free(unmatched);
      codec_free(&c);
      codec_free_set(&train);
      codec_free_set(&val);
      return 2;
    }
  }
  printf("training e2ecodec (%d quality levels, lambda %g..%g, N %d, M %d, %lld parameters) on %d BSDS500 images, "
         "%dx%d patches, batch %d, %d threads\n",
         CODEC_MAX_QUALITY, codec_lambda(&c.cfg, 1), codec_lambda(&c.cfg, CODEC_MAX_QUALITY), c.cfg.n, c.cfg.m, (long long)nn_params_numel(&c.p, true), train.n, patch, patch, batch,
         nn_get_num_threads());
  nn_optim *opt = nn_optim_new(&c.p, nn_optim_defaults(NN_ADAM, lr));
  /* the level scales are few, start at 1 and must move far from it for levels to part ways */
  if (opt && c.cfg.level_mod) nn_optim_set_lr_scale(opt, ".level_scale", level_mod_lr);
  /* the context model starts from zero corrections beside a trained model: it has further to go */
  if (opt && c.cfg.context) nn_optim_set_lr_scale(opt, "context.", context_lr);
  if (opt && c.cfg.anchor_context) nn_optim_set_lr_scale(opt, "anchor_context.", context_lr);
  nn_lr_schedule sched = {.kind = NN_LR_COSINE, .base_lr = lr, .min_lr = lr * 0.05f, .warmup_steps = steps / 50 + 1,
                          .total_steps = steps};
  nn_rng rng;
  nn_rng_seed(&rng, seed + 101);
  double *cx = malloc(sizeof(double) * (size_t)steps), *closs = malloc(sizeof(double) * (size_t)steps);
  double *cbpp = malloc(sizeof(double) * (size_t)steps), *cpsnr = malloc(sizeof(double) * (size_t)steps);
  int n_eval = 0, max_eval = steps / eval_every + 2;
  double *ex = malloc(sizeof(double) * (size_t)max_eval);
  double *ebpp = malloc(sizeof(double) * (size_t)max_eval * CODEC_MAX_QUALITY);
  double *epsnr = malloc(sizeof(double) * (size_t)max_eval * CODEC_MAX_QUALITY);
  int *qs = malloc(sizeof(int) * (size_t)batch);
  double t0 = e2e_now_s();
  codec_stats sm = {0};
  int done_steps = steps;
  for (int step = 0; step < steps; step++) {
    /* with a time budget, progress through the schedule is time or steps, whichever is further */
    double progress = (double)step / steps;
    if (max_seconds > 0) {
      double tp = (e2e_now_s() - t0) / max_seconds;
      if (tp >= 1.0) {
        done_steps = step;
        printf("time budget of %.0fs reached at step %d\n", max_seconds, step);
        break;
      }
      if (tp > progress) progress = tp;
    }
    nn_tensor *x = nn_empty(NN_F32, 4, (int64_t[]){batch, 3, patch, patch});
    float *xd = nn_f32(x);
    for (int b = 0; b < batch; b++) {
      qs[b] = n_levels ? levels[nn_rng_u64(&rng) % (uint64_t)n_levels] : 1 + (int)(nn_rng_u64(&rng) % CODEC_MAX_QUALITY);
      const e2e_image *im = &train.im[nn_rng_u64(&rng) % (uint64_t)train.n];
      int ox = (int)(nn_rng_u64(&rng) % (uint64_t)(im->w - patch + 1));
      int oy = (int)(nn_rng_u64(&rng) % (uint64_t)(im->h - patch + 1));
      bool fx = nn_rng_u64(&rng) & 1, fy = nn_rng_u64(&rng) & 1;
      for (int ch = 0; ch < 3; ch++)
        for (int y = 0; y < patch; y++) {
          const uint8_t *row = im->rgb + ((size_t)(oy + (fy ? patch - 1 - y : y)) * im->w + ox) * 3 + ch;
          float *o = xd + (((size_t)b * 3 + ch) * patch + y) * patch;
          for (int px = 0; px < patch; px++) o[px] = row[(fx ? patch - 1 - px : px) * 3] * (1.0f / 255.0f);
        }
    }
    opt->cfg.lr = nn_lr_at(&sched, (int64_t)(progress * steps));
    nn_optim_zero_grad(opt);
    codec_stats st;
    nn_tensor *loss = codec_train_forward(&c, x, qs, &rng, &st);
    if (!loss || !nn_backward(loss)) {
      fprintf(stderr, "e2e train codec: step %d: %s\n", step, nn_last_error());
      return 1;
    }
    nn_clip_grad_norm(&c.p, 5.0f);
    nn_optim_step(opt);
    nn_arena_reset(nn_arena_current());
    if (!isfinite(st.loss)) {
      fprintf(stderr, "e2e train codec: loss became %g at step %d; stopping (try a lower --lr)\n", st.loss, step);
      return 1;
    }
    float a = step ? 0.98f : 0.0f;
    sm.loss = a * sm.loss + (1 - a) * st.loss;
    sm.bpp = a * sm.bpp + (1 - a) * st.bpp;
    sm.bpp_z = a * sm.bpp_z + (1 - a) * st.bpp_z;
    sm.psnr = a * sm.psnr + (1 - a) * st.psnr;
    cx[step] = step + 1;
    closs[step] = st.loss;
    cbpp[step] = st.bpp;
    cpsnr[step] = st.psnr;
    if ((step + 1) % 25 == 0 || step + 1 == steps) {
      double el = e2e_now_s() - t0, eta = el / (step + 1) * (steps - step - 1);
      if (max_seconds > 0 && max_seconds - el < eta) eta = max_seconds - el;
      printf("step %5d/%d  loss %.4f  bpp %.3f (z %.3f)  PSNR %.2f dB  lr %.2e  %.1f patches/s  ETA %.0fs\n", step + 1,
             steps, sm.loss, sm.bpp, sm.bpp_z, sm.psnr, opt->cfg.lr, (double)(step + 1) * batch / el,
             eta);
      fflush(stdout);
    }
    if ((step + 1) % eval_every == 0 && val.n && step + 1 < steps) {
      ex[n_eval] = step + 1;
      if (!validate(&c, &val, ebpp + n_eval * CODEC_MAX_QUALITY, epsnr + n_eval * CODEC_MAX_QUALITY)) return 1;
      n_eval++;
      if (!codec_save(&c, out, NULL, 0)) /* atomic checkpoint */
        fprintf(stderr, "e2e train codec: checkpoint: %s\n", nn_last_error());
    }
  }
  double train_s = e2e_now_s() - t0;
  int planned_steps = steps;
  steps = done_steps;
  if (val.n) {
    ex[n_eval] = steps;
    if (!validate(&c, &val, ebpp + n_eval * CODEC_MAX_QUALITY, epsnr + n_eval * CODEC_MAX_QUALITY)) return 1;
    n_eval++;
  }
  char recipe[768], s_steps[32], s_time[32], s_metrics[512], more[224] = "";
  if (c.cfg.level_mod) snprintf(more, sizeof more, "%s --level-mod-lr %g", level_mod ? " --level-mod 1" : "", level_mod_lr);
  if (context) snprintf(more + strlen(more), sizeof more - strlen(more), " --context %d", context);
  if (anchor_context) snprintf(more + strlen(more), sizeof more - strlen(more), " --anchor-context %d", anchor_context);
  if (c.cfg.context) snprintf(more + strlen(more), sizeof more - strlen(more), " --context-lr %g", context_lr);
  if (train_only) snprintf(more + strlen(more), sizeof more - strlen(more), " --train-only %.60s", train_only);
  for (int i = 0; i < n_levels; i++)
    snprintf(more + strlen(more), sizeof more - strlen(more), "%s%d", i ? "," : " --levels ", levels[i]);
  snprintf(recipe, sizeof recipe,
           "e2e train codec --steps %d --batch %d --patch %d --lr %g --seed %llu --n %d --m %d%s%s%s%s%s%s%s%s "
           "(%d steps done in %.0fs on %d threads%s)", planned_steps, batch, patch, lr, (unsigned long long)seed,
           c.cfg.n, c.cfg.m, init ? " --init " : "", init ? init : "", init && reset_hyper ? " --reset-hyper 1" : "",
           init && widen_m ? " --widen-m (to the m above)" : "", init && mean_head ? " --mean-head 1" : "",
           lambdas_arg ? " --lambdas " : "", lambdas_arg ? lambdas_arg : "", more, done_steps, train_s, nn_get_num_threads(),
           max_seconds > 0 ? ", lr schedule paced by --max-seconds" : "");
  snprintf(s_steps, sizeof s_steps, "%d", steps);
  snprintf(s_time, sizeof s_time, "%.0f", train_s);
  GString *mj = g_string_new("{\"split\": \"bsds500 val (first images)\", \"images\": ");
  g_string_append_printf(mj, "%d, \"bpp\": [", val.n);
  for (int q = 0; q < CODEC_MAX_QUALITY && n_eval; q++)
    g_string_append_printf(mj, "%s%.4f", q ? ", " : "", ebpp[(n_eval - 1) * CODEC_MAX_QUALITY + q]);
  g_string_append(mj, "], \"psnr_rgb\": [");
  for (int q = 0; q < CODEC_MAX_QUALITY && n_eval; q++)
    g_string_append_printf(mj, "%s%.3f", q ? ", " : "", epsnr[(n_eval - 1) * CODEC_MAX_QUALITY + q]);
  g_string_append(mj, "]}");
  snprintf(s_metrics, sizeof s_metrics, "%s", mj->str);
  g_string_free(mj, TRUE);
  nn_kv meta[] = {{"dataset", "BSDS500 train+test (400 images), random patches with flips"},
                  {"recipe", recipe},
                  {"steps", s_steps},
                  {"train_seconds", s_time},
                  {"optimizer", "adam, cosine with warm-up, grad clip 5"},
                  {"loss", "lambda * 255^2 * MSE + bpp; uniform noise for the rate, straight-through rounding for the distortion"},
                  {"metrics", s_metrics}};
  if (!codec_save(&c, out, meta, sizeof meta / sizeof meta[0])) {
    fprintf(stderr, "e2e train codec: %s\n", nn_last_error());
    return 1;
  }
  printf("saved %s (model id %08x, trained %.0fs)\n", out, c.model_id, train_s);
  char curve[1024];
  snprintf(curve, sizeof curve, "%s", curve_arg ? curve_arg : out);
  if (!curve_arg) {
    char *dot = strrchr(curve, '.');
    if (dot) strcpy(dot, "-curve.png");
  }
  plot_series s_loss = {.label = "loss per step", .x = cx, .y = closs, .n = steps};
  /* validation points per level: [eval][quality] -> one series per level */
  double *vb = malloc(sizeof(double) * (size_t)max_eval * CODEC_MAX_QUALITY);
  double *vp = malloc(sizeof(double) * (size_t)max_eval * CODEC_MAX_QUALITY);
  plot_series s_bpp[CODEC_MAX_QUALITY + 1] = {{.label = "training bpp, all levels (noise proxy)", .x = cx, .y = cbpp, .n = steps}};
  plot_series s_psnr[CODEC_MAX_QUALITY + 1] = {{.label = "training PSNR, all levels", .x = cx, .y = cpsnr, .n = steps}};
  static char labels[CODEC_MAX_QUALITY][48];
  for (int q = 0; q < CODEC_MAX_QUALITY; q++) {
    for (int e = 0; e < n_eval; e++) {
      vb[q * max_eval + e] = ebpp[e * CODEC_MAX_QUALITY + q];
      vp[q * max_eval + e] = epsnr[e * CODEC_MAX_QUALITY + q];
    }
    snprintf(labels[q], sizeof labels[q], "val quality %d (coded)", q + 1);
    s_bpp[q + 1] = (plot_series){.label = labels[q], .x = ex, .y = vb + q * max_eval, .n = n_eval, .markers = true};
    s_psnr[q + 1] = (plot_series){.label = labels[q], .x = ex, .y = vp + q * max_eval, .n = n_eval, .markers = true};
  }
  plot_panel panels[3] = {
      {{.title = "e2ecodec training (one model, 5 quality levels)", .xlabel = "step", .ylabel = "lambda*255^2*MSE + bpp",
        .log_y = true, .height = 360}, &s_loss, 1},
      {{.title = "rate", .xlabel = "step", .ylabel = "bits per pixel", .height = 360}, s_bpp, CODEC_MAX_QUALITY + 1},
      {{.title = "distortion", .xlabel = "step", .ylabel = "PSNR-RGB (dB)", .height = 360}, s_psnr, CODEC_MAX_QUALITY + 1}};
  if (plot_panels_png(curve, panels, 3)) printf("curves: %s\n", curve);
  nn_optim_free(opt);
  codec_free(&c);
  codec_free_set(&train);
  codec_free_set(&val);
  free(cx), free(closs), free(cbpp), free(cpsnr), free(ex), free(ebpp), free(epsnr), free(qs), free(vb), free(vp);
  return 0;
}
