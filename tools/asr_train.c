/* e2e asr features / e2e train asr: feature shards from sound files, and training the recogniser in
 * resumable stages (each stage continues from the checkpoint with its optimizer state). */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <glib.h>
#include <json-glib/json-glib.h>

#include "../models/asr/train.h"
#include "e2e.h"
#include "e2e/audio.h"
#include "plot.h"

/* ---------------------------------------------------------------- features */

/* LIST: one utterance per line, "path<TAB>group<TAB>transcript". Each file is read, resampled to the front
 * end's rate and turned into log-mel frames. */
int e2e_asr_features(int argc, char **argv) {
  if (argc != 2) {
    fprintf(stderr, "usage: e2e asr features LIST.tsv OUT.safetensors\n"
                    "  LIST: path<TAB>group<TAB>transcript per line (group: the voice or speaker)\n");
    return 2;
  }
  FILE *in = fopen(argv[0], "r");
  if (!in) {
    fprintf(stderr, "e2e asr features: %s: %s\n", argv[0], strerror(errno));
    return 1;
  }
  e2e_mel_config mel = e2e_mel_default();
  e2e_audio_fe *fe = e2e_audio_fe_new(&mel);
  e2e_asr_shard_writer *w = e2e_asr_shard_writer_new(mel.n_mels);
  char line[8192];
  int lineno = 0, skipped = 0;
  while (fgets(line, sizeof line, in)) {
    lineno++;
    line[strcspn(line, "\r\n")] = '\0';
    char *path = line, *group = strchr(path, '\t'), *text = group ? strchr(group + 1, '\t') : NULL;
    if (!group || !text) {
      fprintf(stderr, "e2e asr features: %s:%d: expected path<TAB>group<TAB>text\n", argv[0], lineno);
      skipped++;
      continue;
    }
    *group++ = '\0';
    *text++ = '\0';
    float *y = NULL;
    int64_t ny = 0;
    if (!e2e_sound_read_at(path, mel.sample_rate, &y, &ny)) {
      fprintf(stderr, "e2e asr features: %s\n", nn_last_error());
      skipped++;
      continue;
    }
    int64_t T = e2e_audio_frames(&mel, ny);
    float *f = malloc(sizeof(float) * (size_t)(T > 0 ? T : 1) * mel.n_mels);
    e2e_log_mel(fe, y, ny, f);
    if (!e2e_asr_shard_add(w, f, T, text, group)) {
      fprintf(stderr, "e2e asr features: %s: %s\n", path, nn_last_error());
      skipped++;
    }
    free(y), free(f);
  }
  fclose(in);
  char *mj = asr_mel_json(&mel);
  bool ok = e2e_asr_shard_save(w, argv[1], mj);
  g_free(mj);
  printf("%s: %d utterances (%d skipped)\n", argv[1], e2e_asr_shard_count(w), skipped);
  if (!ok) fprintf(stderr, "e2e asr features: %s\n", nn_last_error());
  e2e_asr_shard_writer_free(w);
  e2e_audio_fe_free(fe);
  return ok ? 0 : 1;
}

/* ---------------------------------------------------------------- training */

static bool load_sets(e2e_asr_set *set, const char *list) {
  gchar **paths = g_strsplit(list, ",", -1);
  bool ok = true;
  for (gchar **p = paths; *p && ok; p++)
    if (**p && !e2e_asr_set_load(set, *p)) {
      fprintf(stderr, "e2e train asr: %s\n", nn_last_error());
      ok = false;
    }
  g_strfreev(paths);
  return ok;
}

static int64_t utt_frames(const e2e_asr_set *s, int u) { return s->feat_off[u + 1] - s->feat_off[u]; }

typedef struct {
  const e2e_asr_set *set;
  int *order; /* utterances of this epoch, arranged in batches */
  int *starts; /* batch b is order[starts[b] .. starts[b+1]) */
  int n_batches, next;
} sampler;

static const e2e_asr_set *sort_set;
static int by_frames(const void *a, const void *b) {
  int64_t fa = utt_frames(sort_set, *(const int *)a), fb = utt_frames(sort_set, *(const int *)b);
  return fa < fb ? -1 : fa > fb;
}

/* An epoch: shuffled, then sorted by length within pools of a few hundred, cut into batches of at most
 * max_frames padded frames, batches shuffled (length-bucketing without a fixed order). */
static void sampler_epoch(sampler *s, int64_t max_frames, int64_t max_utt_frames, nn_rng *rng) {
  const e2e_asr_set *set = s->set;
  int n = 0;
  for (int u = 0; u < set->n; u++)
    if (utt_frames(set, u) <= max_utt_frames) s->order[n++] = u;
  for (int i = n - 1; i > 0; i--) {
    int j = (int)(nn_rng_u64(rng) % (uint64_t)(i + 1)), t = s->order[i];
    s->order[i] = s->order[j], s->order[j] = t;
  }
  sort_set = set;
  for (int p = 0; p < n; p += 512) qsort(s->order + p, (size_t)(n - p < 512 ? n - p : 512), sizeof(int), by_frames);
  s->n_batches = 0;
  int i = 0;
  while (i < n) {
    s->starts[s->n_batches++] = i;
    int64_t longest = 0;
    int k = 0;
    while (i < n) {
      int64_t f = utt_frames(set, s->order[i]);
      if (f > longest && k) {
        if (f * (k + 1) > max_frames) break;
      }
      if (f > longest) longest = f;
      if (longest * (k + 1) > max_frames && k) break;
      i++, k++;
    }
  }
  s->starts[s->n_batches] = n;
  /* batch order shuffled: the batch list is permuted through a copy */
  int *perm = malloc(sizeof(int) * (size_t)s->n_batches), *copy = malloc(sizeof(int) * (size_t)(n ? n : 1));
  int *nstarts = malloc(sizeof(int) * (size_t)(s->n_batches + 1));
  for (int b = 0; b < s->n_batches; b++) perm[b] = b;
  for (int b = s->n_batches - 1; b > 0; b--) {
    int j = (int)(nn_rng_u64(rng) % (uint64_t)(b + 1)), t = perm[b];
    perm[b] = perm[j], perm[j] = t;
  }
  int at = 0;
  for (int b = 0; b < s->n_batches; b++) {
    nstarts[b] = at;
    for (int q = s->starts[perm[b]]; q < s->starts[perm[b] + 1]; q++) copy[at++] = s->order[q];
  }
  nstarts[s->n_batches] = at;
  memcpy(s->order, copy, sizeof(int) * (size_t)at);
  memcpy(s->starts, nstarts, sizeof(int) * (size_t)(s->n_batches + 1));
  free(perm), free(copy), free(nstarts);
  s->next = 0;
}

/* Greedy-decoding error rates of a set, per group and over all, on at most max utterances spread evenly. */
typedef struct {
  e2e_asr_score all;
  e2e_asr_score *group;
  double loss;
  int n;
} val_result;

static bool validate(const asr_model *m, const e2e_asr_set *set, int max, val_result *r, FILE *examples) {
  memset(&r->all, 0, sizeof r->all);
  for (int g = 0; g < set->n_groups; g++) memset(&r->group[g], 0, sizeof r->group[g]);
  r->loss = 0.0;
  int n = set->n < max ? set->n : max;
  int *idx = malloc(sizeof(int) * (size_t)(n ? n : 1));
  for (int i = 0; i < n; i++) idx[i] = (int)((int64_t)i * set->n / n);
  sort_set = set;
  qsort(idx, (size_t)n, sizeof(int), by_frames);
  nn_no_grad_begin();
  bool ok = true;
  char hyp[4096], ref[4096];
  for (int i = 0; i < n && ok; i += 16) {
    int k = n - i < 16 ? n - i : 16;
    asr_batch b;
    nn_rng rng;
    nn_rng_seed(&rng, 1);
    asr_batch_make(&b, set, idx + i, k, &m->mel, NULL, &rng);
    int64_t il[16];
    nn_tensor *lp = asr_forward(m, b.x, b.frames, il);
    nn_tensor *loss = lp ? nn_ctc_loss(lp, b.targets, il, b.text_len, E2E_ASR_BLANK, true, true) : NULL;
    if (!loss) {
      fprintf(stderr, "e2e train asr: validation: %s\n", nn_last_error());
      ok = false;
    } else {
      r->loss += nn_item(loss) * k;
      const float *lpd = nn_f32(nn_contiguous(lp));
      int64_t T = lp->shape[0];
      float *row = malloc(sizeof(float) * (size_t)T * E2E_ASR_CLASSES);
      for (int j = 0; j < k; j++) {
        for (int64_t t = 0; t < il[j]; t++)
          memcpy(row + t * E2E_ASR_CLASSES, lpd + ((size_t)t * k + j) * E2E_ASR_CLASSES, sizeof(float) * E2E_ASR_CLASSES);
        e2e_asr_greedy(row, il[j], hyp, sizeof hyp);
        int u = idx[i + j];
        int64_t len = set->text_off[u + 1] - set->text_off[u];
        if (len > (int64_t)sizeof ref - 1) len = sizeof ref - 1;
        for (int64_t c = 0; c < len; c++) ref[c] = e2e_asr_char(set->text[set->text_off[u] + c]);
        ref[len] = '\0';
        e2e_asr_score_add(&r->all, ref, hyp);
        e2e_asr_score_add(&r->group[set->group[u]], ref, hyp);
        if (examples && (i + j) % 97 == 0) fprintf(examples, "  [%s] ref: %s\n  %*s hyp: %s\n", set->groups[set->group[u]], ref, (int)strlen(set->groups[set->group[u]]) + 2, "", hyp);
      }
      free(row);
    }
    asr_batch_free(&b);
    nn_arena_reset(nn_arena_current());
  }
  nn_no_grad_end();
  r->loss /= n ? n : 1;
  r->n = n;
  free(idx);
  return ok;
}

/* Curves of every stage so far, from the JSON-lines log: training loss, validation loss, CER and WER. */
static void plot_log(const char *log_path, const char *png) {
  FILE *f = fopen(log_path, "r");
  if (!f) return;
  GArray *sx = g_array_new(FALSE, FALSE, sizeof(double)), *sl = g_array_new(FALSE, FALSE, sizeof(double));
  GArray *vx = g_array_new(FALSE, FALSE, sizeof(double)), *vl = g_array_new(FALSE, FALSE, sizeof(double));
  GArray *vc = g_array_new(FALSE, FALSE, sizeof(double)), *vw = g_array_new(FALSE, FALSE, sizeof(double));
  char line[8192];
  JsonParser *p = json_parser_new();
  while (fgets(line, sizeof line, f)) {
    if (!json_parser_load_from_data(p, line, -1, NULL) || !JSON_NODE_HOLDS_OBJECT(json_parser_get_root(p))) continue;
    JsonObject *o = json_node_get_object(json_parser_get_root(p));
    double step = json_object_get_double_member_with_default(o, "step", -1);
    if (json_object_has_member(o, "loss")) {
      double v = json_object_get_double_member(o, "loss");
      g_array_append_val(sx, step), g_array_append_val(sl, v);
    }
    if (json_object_has_member(o, "val_loss")) {
      double l = json_object_get_double_member(o, "val_loss"), c = 100 * json_object_get_double_member(o, "val_cer"),
             w = 100 * json_object_get_double_member(o, "val_wer");
      g_array_append_val(vx, step), g_array_append_val(vl, l), g_array_append_val(vc, c), g_array_append_val(vw, w);
    }
  }
  g_object_unref(p);
  fclose(f);
  plot_series loss[2] = {{.label = "training loss (smoothed)", .x = (double *)sx->data, .y = (double *)sl->data, .n = (int)sx->len},
                         {.label = "validation loss", .x = (double *)vx->data, .y = (double *)vl->data, .n = (int)vx->len,
                          .markers = true}};
  plot_series err[2] = {{.label = "validation CER % (greedy)", .x = (double *)vx->data, .y = (double *)vc->data,
                         .n = (int)vx->len, .markers = true},
                        {.label = "validation WER % (greedy)", .x = (double *)vx->data, .y = (double *)vw->data,
                         .n = (int)vx->len, .markers = true}};
  plot_panel panels[2] = {{{.title = "e2easr training (all stages)", .xlabel = "step", .ylabel = "CTC loss per character",
                            .log_y = true, .height = 360}, loss, 2},
                          {{.title = "held-out voices, sentences and speakers", .xlabel = "step", .ylabel = "%",
                            .height = 360}, err, 2}};
  if (sx->len && plot_panels_png(png, panels, 2)) printf("curves: %s\n", png);
  g_array_unref(sx), g_array_unref(sl), g_array_unref(vx), g_array_unref(vl), g_array_unref(vc), g_array_unref(vw);
}

static void usage_train(void) {
  fprintf(stderr,
          "usage: e2e train asr --train SHARDS --val SHARDS --checkpoint CKPT --out MODEL [OPTIONS]\n"
          "  --train A,B,...      feature shards to train on (e2e asr features); list one twice to weight it\n"
          "  --val A,B,...        held-out shards: error rates per group (voice or speaker) at each validation\n"
          "  --checkpoint FILE    resumed from when it exists (weights, optimizer state, step), written atomically\n"
          "  --out FILE           the model for inference, written at each validation\n"
          "  --seconds N          this stage's time budget (default 3600)\n"
          "  --total-steps N      length of the learning-rate schedule over all stages (default 40000)\n"
          "  --lr X               peak Adam learning rate (default 1e-3), 1000 warm-up steps, cosine decay\n"
          "  --batch-frames N     padded frames per batch (default 12000 = 2 minutes of audio)\n"
          "  --max-frames N       longest utterance trained on (default 1500 = 15 s)\n"
          "  --val-every N        steps between validations and checkpoints (default 500)\n"
          "  --val-max N          validation utterances (default 600)\n"
          "  --hidden N --layers N --dim N --conv N   a new model's size (default 256, 3, 256, 64)\n"
          "  --no-augment         train on the stored features as they are\n"
          "  --log FILE           JSON lines (appended): progress and validation, all stages\n"
          "  --threads N --seed N\n");
}

int e2e_train_asr(int argc, char **argv) {
  const char *train_list = NULL, *val_list = NULL, *ckpt = NULL, *out = NULL, *log_path = NULL;
  double seconds = 3600;
  int64_t total_steps = 40000, batch_frames = 12000, max_frames = 1500;
  int val_every = 500, val_max = 600, threads = 0;
  float lr = 1e-3f;
  uint64_t seed = 1;
  bool augment = true;
  asr_config cfg = asr_config_default();
  for (int i = 0; i < argc; i++) {
    const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
#define OPT(name) (!strcmp(a, name) && v && (i++, 1))
    if (OPT("--train")) train_list = v;
    else if (OPT("--val")) val_list = v;
    else if (OPT("--checkpoint")) ckpt = v;
    else if (OPT("--out")) out = v;
    else if (OPT("--log")) log_path = v;
    else if (OPT("--seconds")) seconds = atof(v);
    else if (OPT("--total-steps")) total_steps = atoll(v);
    else if (OPT("--lr")) lr = (float)atof(v);
    else if (OPT("--batch-frames")) batch_frames = atoll(v);
    else if (OPT("--max-frames")) max_frames = atoll(v);
    else if (OPT("--val-every")) val_every = atoi(v);
    else if (OPT("--val-max")) val_max = atoi(v);
    else if (OPT("--hidden")) cfg.hidden = atoi(v);
    else if (OPT("--layers")) cfg.layers = atoi(v);
    else if (OPT("--dim")) cfg.dim = atoi(v);
    else if (OPT("--conv")) cfg.conv_channels = atoi(v);
    else if (OPT("--threads")) threads = atoi(v);
    else if (OPT("--seed")) seed = strtoull(v, NULL, 10);
    else if (!strcmp(a, "--no-augment")) augment = false;
    else {
      usage_train();
      return 2;
    }
#undef OPT
  }
  if (!train_list || !ckpt || !out || seconds <= 0 || total_steps < 1 || batch_frames < 100 || max_frames < 10 ||
      val_every < 1 || val_max < 1 || !(lr > 0)) {
    usage_train();
    return 2;
  }
  if (threads > 0) nn_set_num_threads(threads);
  e2e_asr_set train = {0}, val = {0};
  if (!load_sets(&train, train_list) || (val_list && !load_sets(&val, val_list))) return 1;
  if (train.n == 0) {
    fprintf(stderr, "e2e train asr: no training utterances\n");
    return 1;
  }
  asr_model m;
  e2e_mel_config mel = e2e_mel_default();
  nn_optim *opt = NULL;
  bool resumed = access(ckpt, F_OK) == 0;
  if (resumed) {
    nn_st_file *f = nn_st_open(ckpt);
    bool ok = f && asr_init_from_meta(&m, f, ckpt);
    if (f) nn_st_close(f);
    if (ok) opt = nn_optim_new(&m.p, nn_optim_defaults(NN_ADAM, lr));
    if (!ok || !opt || !nn_checkpoint_load(ckpt, &m.p, opt)) {
      fprintf(stderr, "e2e train asr: resuming from %s: %s\n", ckpt, nn_last_error());
      return 1;
    }
  } else {
    if (!asr_init(&m, &cfg, &mel, seed)) {
      fprintf(stderr, "e2e train asr: %s\n", nn_last_error());
      return 1;
    }
    opt = nn_optim_new(&m.p, nn_optim_defaults(NN_ADAM, lr));
  }
  if (train.n_mels != m.cfg.n_mels) {
    fprintf(stderr, "e2e train asr: the shards have %d mels, the model %d\n", train.n_mels, m.cfg.n_mels);
    return 1;
  }
  int64_t start_step = opt->step;
  double audio_h = 0;
  for (int u = 0; u < train.n; u++) audio_h += utt_frames(&train, u) * (double)m.mel.hop / m.mel.sample_rate / 3600.0;
  printf("%s ASR training at step %lld: %lld parameters, %d utterances (%.1f h, %d groups) to train on, %d to "
         "validate on, %d threads, stage budget %.0f s\n",
         resumed ? "resuming" : "starting", (long long)start_step, (long long)nn_params_numel(&m.p, true), train.n,
         audio_h, train.n_groups, val.n, nn_get_num_threads(), seconds);
  FILE *log = log_path ? fopen(log_path, "a") : NULL;
  if (log_path && !log) fprintf(stderr, "e2e train asr: cannot append to %s: %s\n", log_path, strerror(errno));
  nn_lr_schedule sched = {.kind = NN_LR_COSINE, .base_lr = lr, .min_lr = lr * 0.02f, .warmup_steps = 1000,
                          .total_steps = total_steps};
  asr_augment_opts aug = asr_augment_defaults();
  nn_rng rng;
  nn_rng_seed(&rng, seed * 7919 + (uint64_t)start_step); /* a resumed stage draws new batches */
  sampler smp = {.set = &train, .order = malloc(sizeof(int) * (size_t)train.n),
                 .starts = malloc(sizeof(int) * (size_t)(train.n + 1))};
  sampler_epoch(&smp, batch_frames, max_frames, &rng);
  val_result vr = {.group = calloc((size_t)(val.n_groups ? val.n_groups : 1), sizeof(e2e_asr_score))};
  double t0 = e2e_now_s(), sm_loss = 0, done_audio_s = 0;
  int64_t step = start_step, since = 0;
  int status = 0;
  while (step < total_steps) {
    bool out_of_time = e2e_now_s() - t0 >= seconds;
    if (out_of_time) printf("stage budget of %.0f s reached at step %lld\n", seconds, (long long)step);
    if (!out_of_time) {
      if (smp.next >= smp.n_batches) sampler_epoch(&smp, batch_frames, max_frames, &rng);
      int b0 = smp.starts[smp.next], b1 = smp.starts[smp.next + 1];
      smp.next++;
      asr_batch b;
      asr_batch_make(&b, &train, smp.order + b0, b1 - b0, &m.mel, augment ? &aug : NULL, &rng);
      opt->cfg.lr = nn_lr_at(&sched, step);
      nn_optim_zero_grad(opt);
      double lv = 0;
      nn_tensor *loss = asr_batch_loss(&m, &b, &lv);
      if (!loss || !nn_backward(loss)) {
        fprintf(stderr, "e2e train asr: step %lld: %s\n", (long long)step, nn_last_error());
        status = 1;
        asr_batch_free(&b);
        break;
      }
      float gnorm = nn_clip_grad_norm(&m.p, 5.0f);
      if (isfinite(lv) && isfinite(gnorm)) nn_optim_step(opt); /* a rare non-finite batch is skipped, not learnt */
      else opt->step++;
      for (int i = 0; i < b.n; i++) done_audio_s += b.frames[i] * (double)m.mel.hop / m.mel.sample_rate;
      asr_batch_free(&b);
      nn_arena_reset(nn_arena_current());
      sm_loss = since ? 0.98 * sm_loss + 0.02 * lv : lv;
      since++;
      step = opt->step;
      if (step % 25 == 0) {
        double el = e2e_now_s() - t0;
        printf("step %6lld  loss %.4f  lr %.2e  |g| %.2f  %.1f s of audio per s  stage %.0f/%.0f s\n", (long long)step,
               sm_loss, opt->cfg.lr, gnorm, done_audio_s / el, el, seconds);
        fflush(stdout);
        if (log)
          fprintf(log, "{\"step\": %lld, \"loss\": %.5f, \"lr\": %.3e, \"grad_norm\": %.3f, \"audio_per_s\": %.2f}\n",
                  (long long)step, sm_loss, opt->cfg.lr, gnorm, done_audio_s / el), fflush(log);
      }
    }
    bool last = out_of_time || step >= total_steps;
    if ((step % val_every == 0 && since > 0) || last) {
      if (val.n) {
        FILE *ex = last ? stdout : NULL;
        if (!validate(&m, &val, val_max, &vr, ex)) {
          status = 1;
          break;
        }
        printf("validation at step %lld: loss %.4f  CER %.2f%%  WER %.2f%% (%d utterances)\n", (long long)step, vr.loss,
               100 * e2e_asr_cer(&vr.all), 100 * e2e_asr_wer(&vr.all), vr.n);
        for (int g = 0; g < val.n_groups; g++)
          if (vr.group[g].ref_words)
            printf("  %-24s CER %6.2f%%  WER %6.2f%%  (%lld words)\n", val.groups[g], 100 * e2e_asr_cer(&vr.group[g]),
                   100 * e2e_asr_wer(&vr.group[g]), (long long)vr.group[g].ref_words);
        if (log) {
          fprintf(log, "{\"step\": %lld, \"val_loss\": %.5f, \"val_cer\": %.5f, \"val_wer\": %.5f, \"groups\": {", (long long)step,
                  vr.loss, e2e_asr_cer(&vr.all), e2e_asr_wer(&vr.all));
          int k = 0;
          for (int g = 0; g < val.n_groups; g++)
            if (vr.group[g].ref_words)
              fprintf(log, "%s\"%s\": [%.5f, %.5f]", k++ ? ", " : "", val.groups[g], e2e_asr_cer(&vr.group[g]), e2e_asr_wer(&vr.group[g]));
          fprintf(log, "}}\n");
          fflush(log);
        }
      }
      char s_step[32], s_val[256];
      snprintf(s_step, sizeof s_step, "%lld", (long long)step);
      snprintf(s_val, sizeof s_val, "{\"greedy_cer\": %.5f, \"greedy_wer\": %.5f, \"utterances\": %d}", e2e_asr_cer(&vr.all),
               e2e_asr_wer(&vr.all), vr.n);
      nn_kv meta[] = {{"architecture", ASR_ARCH}, {"config", NULL}, {"mel", NULL}};
      char *cj = NULL, *mj = asr_mel_json(&m.mel);
      {
        /* the checkpoint carries the config so that a stage can resume without the original options */
        cj = g_strdup_printf("{\"n_mels\": %d, \"conv_channels\": %d, \"dim\": %d, \"hidden\": %d, \"layers\": %d, "
                             "\"bidirectional\": %s, \"classes\": %d}",
                             m.cfg.n_mels, m.cfg.conv_channels, m.cfg.dim, m.cfg.hidden, m.cfg.layers,
                             m.cfg.bidirectional ? "true" : "false", E2E_ASR_CLASSES);
        meta[1].value = cj;
        meta[2].value = mj;
      }
      if (!nn_checkpoint_save(ckpt, &m.p, opt, meta, 3))
        fprintf(stderr, "e2e train asr: checkpoint: %s\n", nn_last_error());
      nn_kv extra[] = {{"steps", s_step},
                       {"dataset", "synthetic voices reading LJ Speech text and generated sentences, FSDD digits "
                                   "(train speakers, recordings 5-49); see models/asr/README.md"},
                       {"validation", s_val}};
      if (!asr_save(&m, out, extra, 3)) fprintf(stderr, "e2e train asr: %s\n", nn_last_error());
      g_free(cj);
      g_free(mj);
    }
    if (last) break;
  }
  printf("stage done: steps %lld..%lld in %.0f s (%.1f h of audio seen)\n", (long long)start_step, (long long)step,
         e2e_now_s() - t0, done_audio_s / 3600);
  if (log) {
    fclose(log);
    char *png = g_strdup(log_path), *dot = strrchr(png, '.');
    if (dot && !strchr(dot, '/')) *dot = '\0';
    char *path = g_strdup_printf("%s-curves.png", png);
    plot_log(log_path, path);
    g_free(png), g_free(path);
  }
  free(smp.order), free(smp.starts), free(vr.group);
  nn_optim_free(opt);
  asr_free(&m);
  e2e_asr_set_free(&train);
  e2e_asr_set_free(&val);
  return status;
}
