/* `e2e train detect` and `e2e eval detect`: the detector's training recipe and
 * its COCO-style evaluation, on ../shared/data (train on the train split,
 * report on the held-out one; the held-out split is never used to select). */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "e2e/detect.h"
#include "e2e.h"
#include "plot.h"

typedef struct {
  const char *dataset, *cls, *out, *model, *data_root, *curve, *init, *split, *freeze, *like;
  int input, width, batch, steps, threads, eval_every;
  float lr, mosaic, threshold;
  uint64_t seed;
} det_args;

static const char *data_root(const det_args *a) {
  if (a->data_root) return a->data_root;
  const char *e = getenv("E2E_SHARED_DATA");
  return e ? e : "../shared/data";
}

static bool load_split(const det_args *a, bool train, det_dataset *ds) {
  char root[1024];
  if (!strcmp(a->dataset, "coco128")) {
    snprintf(root, sizeof root, "%s/detect/coco128", data_root(a));
    return det_dataset_load_coco128(ds, root, train ? "train2017" : "val2017", strcmp(a->cls, "all") ? a->cls : NULL);
  }
  if (!strcmp(a->dataset, "raccoon")) {
    snprintf(root, sizeof root, "%s/detect/raccoon", data_root(a));
    return det_dataset_load_raccoon(ds, root, train ? "train" : "test");
  }
  nn_set_error("unknown dataset '%s' (coco128 or raccoon)", a->dataset);
  return false;
}

static int parse(int argc, char **argv, det_args *a, bool train) {
  *a = (det_args){.dataset = "coco128", .cls = "person", .input = 320, .width = 16, .batch = 16, .steps = 3000,
                  .lr = 2e-3f, .mosaic = 0.5f, .threshold = E2E_DETECT_DEFAULT_THRESHOLD, .seed = 1};
  for (int i = 0; i < argc; i++) {
    const char *k = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
    if (!v) goto bad;
    if (!strcmp(k, "--dataset")) a->dataset = v;
    else if (!strcmp(k, "--class")) a->cls = v;
    else if (!strcmp(k, "--out")) a->out = v;
    else if (!strcmp(k, "--model")) a->model = v;
    else if (!strcmp(k, "--data-root")) a->data_root = v;
    else if (!strcmp(k, "--curve")) a->curve = v;
    else if (!strcmp(k, "--init")) a->init = v;
    else if (!strcmp(k, "--split")) a->split = v;
    else if (!strcmp(k, "--freeze")) a->freeze = v;
    else if (!strcmp(k, "--like")) a->like = v;
    else if (!strcmp(k, "--input")) a->input = atoi(v);
    else if (!strcmp(k, "--width")) a->width = atoi(v);
    else if (!strcmp(k, "--batch")) a->batch = atoi(v);
    else if (!strcmp(k, "--steps")) a->steps = atoi(v);
    else if (!strcmp(k, "--threads")) a->threads = atoi(v);
    else if (!strcmp(k, "--lr")) a->lr = strtof(v, NULL);
    else if (!strcmp(k, "--mosaic")) a->mosaic = strtof(v, NULL);
    else if (!strcmp(k, "--threshold")) a->threshold = strtof(v, NULL);
    else if (!strcmp(k, "--seed")) a->seed = strtoull(v, NULL, 10);
    else goto bad;
    i++;
  }
  if (a->batch < 1 || a->batch > 256 || a->steps < 1 || !(a->lr > 0) || a->mosaic < 0 || a->mosaic > 1 ||
      !(a->threshold > 0 && a->threshold < 1)) {
    fprintf(stderr, "e2e: --batch 1..256, --steps >= 1, --lr > 0, --mosaic 0..1, --threshold in (0, 1)\n");
    return 2;
  }
  if (!train && !a->model) {
    fprintf(stderr, "e2e eval detect: --model FILE is required\n");
    return 2;
  }
  return 0;
bad:
  fprintf(stderr,
          "usage: e2e %s detect [--dataset coco128|raccoon] [--class person|all] [--data-root DIR]\n"
          "       train: [--out FILE] [--input 320] [--width 16] [--batch 16] [--steps 3000] [--lr 2e-3]\n"
          "              [--mosaic 0.5] [--threads N] [--seed S] [--curve PNG] [--init FILE (continue from weights)]\n"
          "              transfer learning from an imported graph: --init nanodet-coco.safetensors\n"
          "              [--freeze backbone.] [--like CLASS (new classes start as this one)]\n"
          "       eval:  --model FILE [--threshold %.2g] [--input N] [--split train|val]\n",
          train ? "train" : "eval", (double)E2E_DETECT_DEFAULT_THRESHOLD);
  return 2;
}

/* Runs a session over a dataset split (the element's path: the same letterbox, network and decoding)
 * and fills metrics. */
static bool evaluate(e2e_session *s, const det_dataset *ds, int input, float op_threshold, det_metrics *m, double *ms_per_img) {
  det_eval_image *ev = calloc((size_t)ds->n, sizeof *ev);
  det_box *preds = calloc((size_t)ds->n * E2E_DETECT_DEFAULT_MAX, sizeof *preds);
  bool ok = ev && preds;
  e2e_detect_params p = {.threshold = E2E_DETECT_EVAL_THRESHOLD, .iou_threshold = E2E_DETECT_DEFAULT_IOU,
                         .max_detections = E2E_DETECT_DEFAULT_MAX, .input_size = input};
  double t0 = e2e_now_s();
  for (int i = 0; i < ds->n && ok; i++) {
    const det_sample *smp = &ds->s[i];
    det_box *out = preds + (size_t)i * E2E_DETECT_DEFAULT_MAX;
    int k = e2e_detect_frame(s, &p, smp->img.rgb, smp->img.w, smp->img.h, smp->img.w * 3, out, E2E_DETECT_DEFAULT_MAX);
    ok = k >= 0;
    ev[i] = (det_eval_image){smp->boxes, smp->n, out, k};
  }
  *ms_per_img = (e2e_now_s() - t0) * 1e3 / (ds->n ? ds->n : 1);
  if (ok) det_evaluate(ev, ds->n, e2e_model_describe(e2e_session_model(s))->n_labels, op_threshold, m);
  free(ev);
  free(preds);
  return ok;
}

static void print_metrics(const e2e_model_info *info, const det_metrics *m, const char *split, float thr) {
  printf("%s: mAP@0.5 %.3f  mAP@[.5:.95] %.3f\n", split, m->map50, m->map5095);
  for (int c = 0; c < info->n_labels; c++)
    if (m->ap50[c] >= 0) printf("  %-16s AP50 %.3f  AP %.3f  (%d objects)\n", info->labels[c], m->ap50[c], m->ap5095[c], m->n_gt[c]);
  printf("  at threshold %.2f: precision %.3f recall %.3f F1 %.3f (TP %d, FP %d, FN %d)\n", thr, m->precision,
         m->recall, m->f1, m->tp, m->fp, m->fn);
}

/* The model in a session of its own. */
static e2e_session *session_on(e2e_model *m, int threads) {
  e2e_slot *slot = e2e_slot_new(m);
  e2e_session *s = slot ? e2e_session_new(slot, threads) : NULL;
  e2e_slot_unref(slot);
  return s;
}

int e2e_train_detect(int argc, char **argv) {
  det_args a;
  int rc = parse(argc, argv, &a, true);
  if (rc) return rc;
  if (!strcmp(a.dataset, "raccoon")) a.cls = "raccoon"; /* its only class */
  det_dataset train;
  if (!load_split(&a, true, &train)) {
    fprintf(stderr, "e2e train detect: %s\n", e2e_last_error());
    return 1;
  }
  int n_obj = 0;
  for (int i = 0; i < train.n; i++) n_obj += train.s[i].n;
  det_config cfg = det_config_default(train.num_classes, a.input);
  cfg.width = a.width;
  for (int c = 0; c < train.num_classes; c++) snprintf(cfg.labels[c], DET_LABEL_LEN, "%s", train.labels[c]);
  /* --init continues from earlier weights (a later stage of a recipe); the config comes from the file */
  e2e_model *start = a.init ? e2e_model_open(a.init, E2E_TASK_DETECT) : e2e_detect_model_new(&cfg, a.seed);
  if (!start) {
    fprintf(stderr, "e2e train detect: %s%s\n", a.init ? "--init: " : "", e2e_last_error());
    return 1;
  }
  if (a.init && e2e_detect_config(start)) {
    cfg = *e2e_detect_config(start);
    if (cfg.num_classes != train.num_classes) {
      fprintf(stderr, "e2e train detect: --init model has %d classes, the data %d\n", cfg.num_classes, train.num_classes);
      return 1;
    }
    a.input = cfg.input_size;
  } else if (a.init) {
    /* an imported graph: transfer learning, with the head given the data's classes when they differ */
    const e2e_model_info *info = e2e_model_describe(start);
    bool same = info->n_labels == train.num_classes;
    for (int c = 0; same && c < train.num_classes; c++) same = !strcmp(info->labels[c], train.labels[c]);
    if (!same) {
      const char *names[DET_MAX_CLASSES];
      for (int c = 0; c < train.num_classes; c++) names[c] = train.labels[c];
      e2e_model *relabelled = e2e_detect_graph_relabel(start, train.num_classes, names, a.like);
      if (!relabelled) {
        fprintf(stderr, "e2e train detect: %s\n", e2e_last_error());
        return 1;
      }
      printf("head: %d classes -> %d (%s%s)\n", info->n_labels, train.num_classes, a.like ? "started like " : "new, silent",
             a.like ? a.like : "");
      e2e_model_unref(start);
      start = relabelled;
    }
    a.input = e2e_model_describe(start)->input_size;
  }
  e2e_trainer *t = e2e_trainer_new(start, &(e2e_train_opts){.optimizer = NN_ADAMW, .lr = a.lr, .weight_decay = 5e-4f,
                                                             .clip_norm = 10.0f, .threads = a.threads, .freeze = a.freeze});
  if (!t) {
    fprintf(stderr, "e2e train detect: %s\n", e2e_last_error());
    return 1;
  }
  char out_default[256];
  snprintf(out_default, sizeof out_default, "%s-detector.safetensors", !strcmp(a.dataset, "raccoon") ? "raccoon" : a.cls);
  const char *out = a.out ? a.out : out_default;
  printf("training %s detector on %s (%d images, %d objects), input %d, %lld parameters (%s frozen), %d threads\n", a.cls,
         a.dataset, train.n, n_obj, a.input, (long long)e2e_model_describe(start)->n_params, a.freeze ? a.freeze : "none",
         a.threads ? a.threads : nn_get_num_threads());
  nn_lr_schedule sched = {.kind = NN_LR_COSINE, .base_lr = a.lr, .min_lr = a.lr * 0.02f,
                          .warmup_steps = a.steps / 30 + 1, .total_steps = a.steps};
  nn_rng rng;
  nn_rng_seed(&rng, a.seed + 17);
  size_t isz = (size_t)3 * a.input * a.input;
  nn_tensor *x = nn_tensor_new(NN_F32, 4, (int64_t[]){a.batch, 3, a.input, a.input});
  det_box *boxes = malloc(sizeof(det_box) * 128 * (size_t)a.batch);
  const det_box **bptr = malloc(sizeof *bptr * (size_t)a.batch);
  int *counts = malloc(sizeof(int) * (size_t)a.batch);
  double *cx = malloc(sizeof(double) * (size_t)a.steps), *cy = malloc(sizeof(double) * (size_t)a.steps);
  double t0 = e2e_now_s(), smooth = 0, sh = 0, sr = 0;
  for (int step = 0; step < a.steps; step++) {
    for (int b = 0; b < a.batch; b++) {
      int idx = (int)(nn_rng_u64(&rng) % (uint64_t)train.n);
      bool mosaic = nn_rng_uniform(&rng) < a.mosaic;
      counts[b] = det_augment(&train, idx, &rng, a.input, mosaic, nn_f32(x) + isz * b, boxes + 128 * b, 128);
      bptr[b] = boxes + 128 * b;
    }
    float lr = nn_lr_at(&sched, step);
    e2e_trainer_set_lr(t, lr);
    e2e_metric loss;
    if (!e2e_trainer_step(t, &(e2e_batch){.n = a.batch, .images = x, .boxes = bptr, .counts = counts}, &loss)) {
      fprintf(stderr, "e2e train detect: step %d: %s\n", step, e2e_last_error());
      return 1;
    }
    double l = loss.value, hl = loss.parts[0], rl = loss.parts[1];
    if (!isfinite(l)) {
      fprintf(stderr, "e2e train detect: loss became %g at step %d; stopping (try a lower --lr)\n", l, step);
      return 1;
    }
    smooth = step ? 0.98 * smooth + 0.02 * l : l;
    sh = step ? 0.98 * sh + 0.02 * hl : hl;
    sr = step ? 0.98 * sr + 0.02 * rl : rl;
    cx[step] = step;
    cy[step] = l;
    if ((step + 1) % 25 == 0 || step + 1 == a.steps) {
      double el = e2e_now_s() - t0;
      printf("step %5d/%d  loss %.4f (%s %.4f, %s %.4f)  lr %.2e  %.1f img/s  ETA %.0fs\n", step + 1, a.steps, smooth,
             loss.part_names[0], sh, loss.part_names[1], sr, lr, (double)(step + 1) * a.batch / el, el / (step + 1) * (a.steps - step - 1));
      fflush(stdout);
    }
    if ((step + 1) % 500 == 0 && step + 1 < a.steps) { /* atomic checkpoint */
      e2e_model *snap = e2e_trainer_model(t);
      if (!snap || !e2e_model_save(snap, out, NULL, 0)) fprintf(stderr, "e2e train detect: checkpoint: %s\n", e2e_last_error());
      e2e_model_unref(snap);
    }
  }
  double train_s = e2e_now_s() - t0;
  e2e_model *trained = e2e_trainer_model(t);
  e2e_session *session = trained ? session_on(trained, a.threads) : NULL;
  det_dataset held;
  det_metrics m = {0};
  double ms = 0;
  bool have_eval = session && load_split(&a, false, &held) && evaluate(session, &held, a.input, a.threshold, &m, &ms);
  if (have_eval) print_metrics(e2e_model_describe(trained), &m, !strcmp(a.dataset, "raccoon") ? "raccoon test" : "coco128 val2017", a.threshold);
  char s_steps[32], s_batch[32], s_in[32], s_lr[32], s_time[32], s_map[160];
  snprintf(s_steps, sizeof s_steps, "%d", a.steps);
  snprintf(s_batch, sizeof s_batch, "%d", a.batch);
  snprintf(s_in, sizeof s_in, "%d", a.input);
  snprintf(s_lr, sizeof s_lr, "%g", a.lr);
  snprintf(s_time, sizeof s_time, "%.0f", train_s);
  snprintf(s_map, sizeof s_map, "{\"split\": \"%s\", \"map50\": %.4f, \"map50_95\": %.4f}",
           !strcmp(a.dataset, "raccoon") ? "raccoon test" : "coco128 val2017", m.map50, m.map5095);
  char recipe[512];
  snprintf(recipe, sizeof recipe,
           "e2e train detect --dataset %s --class %s --input %d --width %d --batch %d --steps %d --lr %g --mosaic %g --seed %llu%s%s%s%s%s%s",
           a.dataset, a.cls, a.input, cfg.width, a.batch, a.steps, a.lr, a.mosaic, (unsigned long long)a.seed,
           a.init ? " --init " : "", a.init ? a.init : "", a.freeze ? " --freeze " : "", a.freeze ? a.freeze : "",
           a.like ? " --like " : "", a.like ? a.like : "");
  nn_kv meta[] = {{"dataset", !strcmp(a.dataset, "raccoon") ? "raccoon train_labels.csv" : "coco128 train2017"},
                  {"recipe", recipe}, {"steps", s_steps}, {"batch", s_batch}, {"input_size", s_in}, {"lr", s_lr},
                  {"train_seconds", s_time},
                  {"augmentation", "scale 0.6-1.5, aspect 0.8-1.25, translate, flip, colour jitter, mosaic"},
                  {"optimizer", "adamw wd 5e-4, cosine with warm-up, grad clip 10"},
                  {"metrics", have_eval ? s_map : "{}"}};
  if (!trained || !e2e_model_save(trained, out, meta, sizeof meta / sizeof meta[0])) {
    fprintf(stderr, "e2e train detect: %s\n", e2e_last_error());
    return 1;
  }
  printf("saved %s (trained %.0fs)\n", out, train_s);
  char curve[1024];
  snprintf(curve, sizeof curve, "%s", a.curve ? a.curve : out);
  if (!a.curve) {
    char *dot = strrchr(curve, '.');
    if (dot) strcpy(dot, "-loss.png");
  }
  plot_series ps = {.label = "loss per step", .x = cx, .y = cy, .n = a.steps};
  plot_spec spec = {.title = "e2e detector training loss", .xlabel = "step", .ylabel = "training loss", .log_y = true};
  if (plot_lines_png(curve, &spec, &ps, 1)) printf("loss curve: %s\n", curve);
  if (have_eval) det_dataset_free(&held);
  det_dataset_free(&train);
  e2e_session_free(session);
  e2e_model_unref(trained);
  e2e_trainer_free(t);
  e2e_model_unref(start);
  nn_tensor_free(x);
  free(boxes);
  free(bptr);
  free(counts);
  free(cx);
  free(cy);
  return 0;
}

int e2e_eval_detect(int argc, char **argv) {
  det_args a;
  int rc = parse(argc, argv, &a, false);
  if (rc) return rc;
  e2e_model *model = e2e_model_open(a.model, E2E_TASK_DETECT);
  e2e_session *session = model ? session_on(model, a.threads) : NULL;
  if (!session) {
    fprintf(stderr, "e2e eval detect: %s\n", e2e_last_error());
    return 1;
  }
  det_dataset held;
  /* --split train: the training split, for choices that must not look at the held-out one */
  bool on_train = a.split && !strcmp(a.split, "train");
  if (!load_split(&a, on_train, &held)) {
    fprintf(stderr, "e2e eval detect: %s\n", e2e_last_error());
    return 1;
  }
  int input = e2e_model_describe(model)->input_size;
  for (int i = 0; i < argc - 1; i++)
    if (!strcmp(argv[i], "--input")) input = atoi(argv[i + 1]);
  det_metrics m;
  double ms;
  if (!evaluate(session, &held, input, a.threshold, &m, &ms)) {
    fprintf(stderr, "e2e eval detect: %s\n", e2e_last_error());
    return 1;
  }
  print_metrics(e2e_model_describe(model), &m,
                !strcmp(a.dataset, "raccoon") ? (on_train ? "raccoon train" : "raccoon test") : on_train ? "coco128 train2017" : "coco128 val2017",
                a.threshold);
  printf("  %.1f ms per image at input %d on %d threads\n", ms, input, a.threads ? a.threads : nn_get_num_threads());
  det_dataset_free(&held);
  e2e_session_free(session);
  e2e_model_unref(model);
  return 0;
}

/* `e2e detect`: boxes on image files as JSON lines (frame pixels), with the letterbox geometry; --dump-input
 * also writes each network input (our normalisation, [1, 3, S, S] float32) so that another engine can be
 * given exactly the same input (tools/compare/tfjs_nanodet.cjs). */
int e2e_detect_images(int argc, char **argv) {
  const char *model = NULL, *dump = NULL;
  float threshold = E2E_DETECT_MODEL_THRESHOLD, iou = E2E_DETECT_DEFAULT_IOU;
  int threads = 0, first = argc;
  for (int i = 0; i < argc; i++) {
    const char *k = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
    if (k[0] != '-') {
      first = i;
      break;
    }
    if (!v) break;
    if (!strcmp(k, "--model")) model = v;
    else if (!strcmp(k, "--dump-input")) dump = v;
    else if (!strcmp(k, "--threshold")) threshold = strtof(v, NULL);
    else if (!strcmp(k, "--iou")) iou = strtof(v, NULL);
    else if (!strcmp(k, "--threads")) threads = atoi(v);
    else break;
    i++;
  }
  if (first >= argc) {
    fprintf(stderr, "usage: e2e detect [--model FILE] [--threshold T] [--iou T] [--threads N] [--dump-input DIR] IMAGE...\n");
    return 2;
  }
  char *def = model ? NULL : e2e_default_model(E2E_TASK_DETECT);
  e2e_model *m = e2e_model_open(model ? model : def, E2E_TASK_DETECT);
  free(def);
  e2e_session *s = m ? session_on(m, threads) : NULL;
  if (!s) {
    fprintf(stderr, "e2e detect: %s\n", e2e_last_error());
    e2e_model_unref(m);
    return 1;
  }
  const e2e_model_info *info = e2e_model_describe(m);
  e2e_detect_params p = e2e_detect_defaults();
  p.threshold = threshold, p.iou_threshold = iou;
  int rc = 0;
  det_box boxes[E2E_DETECT_DEFAULT_MAX];
  for (int i = first; i < argc && !rc; i++) {
    e2e_image im;
    if (!e2e_image_load(argv[i], &im)) {
      fprintf(stderr, "e2e detect: %s\n", e2e_last_error());
      rc = 1;
      break;
    }
    int size = info->input_size;
    det_letterbox lb = e2e_detect_frame_placement(s, im.w, im.h, size);
    if (dump) {
      float *x = malloc(sizeof(float) * 3 * (size_t)size * size);
      e2e_resize_to_planar(im.rgb, im.w, im.h, im.w * 3, size, lb.scale, lb.scale_y, lb.pad_x, lb.pad_y, x);
      const char *base = strrchr(argv[i], '/');
      char path[1024];
      snprintf(path, sizeof path, "%s/%s.f32", dump, base ? base + 1 : argv[i]);
      FILE *f = fopen(path, "wb");
      if (!f || fwrite(x, sizeof(float), 3 * (size_t)size * size, f) != 3 * (size_t)size * size) {
        fprintf(stderr, "e2e detect: cannot write %s\n", path);
        rc = 1;
      }
      if (f) fclose(f);
      free(x);
    }
    int n = e2e_detect_frame(s, &p, im.rgb, im.w, im.h, im.w * 3, boxes, E2E_DETECT_DEFAULT_MAX);
    if (n < 0) {
      fprintf(stderr, "e2e detect: %s: %s\n", argv[i], e2e_last_error());
      rc = 1;
    } else {
      printf("{\"image\": \"%s\", \"width\": %d, \"height\": %d, \"size\": %d, \"scale\": %.9g, \"scale_y\": %.9g, \"pad_x\": %.9g, "
             "\"pad_y\": %.9g, \"boxes\": [", argv[i], im.w, im.h, size, lb.scale, lb.scale_y, lb.pad_x, lb.pad_y);
      for (int k = 0; k < n; k++)
        printf("%s[%.3f, %.3f, %.3f, %.3f, %.6f, %d]", k ? ", " : "", boxes[k].x1, boxes[k].y1, boxes[k].x2, boxes[k].y2,
               boxes[k].score, boxes[k].cls);
      printf("]}\n");
    }
    e2e_image_free(&im);
  }
  e2e_session_free(s);
  e2e_model_unref(m);
  return rc;
}
