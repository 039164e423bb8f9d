/* The task-model interface (e2e/model.h) for both tasks: open/describe/infer/train-step/evaluate/save/swap,
 * bad checkpoints refused with the file named, one model shared by several threads, a swap during
 * inference that never tears, the registry of named models, and sessions that keep their own engine state.
 * Runs under the sanitizer build too (suite nncore). */
#include <glib.h>
#include <pthread.h>
#include <stdatomic.h>
#include <unistd.h>

#include "e2e/codec.h"
#include "e2e/detect.h"
#include "e2e/online.h"
#include "harness.h"
#include "task.h" /* e2e_session_enter: to look inside a session's call */

static char *tmp_path(const char *stem) {
  static int n;
  char *p = malloc(256);
  snprintf(p, 256, "/tmp/e2e-test-models-%d-%d-%s.safetensors", (int)getpid(), n++, stem);
  return p;
}

static uint8_t *frame(int w, int h, uint64_t seed) {
  nn_rng r;
  nn_rng_seed(&r, seed);
  uint8_t *p = malloc((size_t)w * h * 3);
  for (int i = 0; i < w * h * 3; i++) p[i] = (uint8_t)(nn_rng_u64(&r) % 256);
  for (int y = h / 4; y < h / 2; y++) /* a bright block: something for a detector to fire on */
    for (int x = w / 3; x < w / 2; x++) memset(p + ((size_t)y * w + x) * 3, 250, 3);
  return p;
}

static e2e_model *small_detector(uint64_t seed) {
  det_config cfg = det_config_default(2, 64);
  cfg.width = 8;
  snprintf(cfg.labels[0], DET_LABEL_LEN, "cat");
  snprintf(cfg.labels[1], DET_LABEL_LEN, "dog");
  return e2e_detect_model_new(&cfg, seed);
}

static e2e_model *small_codec(uint64_t seed) {
  codec_config cfg = codec_config_default();
  cfg.n = 16, cfg.m = 24;
  return e2e_codec_model_new(&cfg, seed);
}

/* A session on its own private slot (the session holds the slot). */
static e2e_session *session_of(e2e_model *m, int threads) {
  e2e_slot *slot = e2e_slot_new(m);
  e2e_session *s = e2e_session_new(slot, threads);
  e2e_slot_unref(slot);
  return s;
}

/* Unreferences the model, removes its file. */
static void drop(e2e_model *m, char *path) {
  e2e_model_unref(m);
  if (path) unlink(path);
  free(path);
}

static const e2e_detect_params LOW = {.threshold = 0.01f, .iou_threshold = 0.6f, .max_detections = 50};

static bool same_boxes(const det_box *a, int na, const det_box *b, int nb) {
  return na == nb && (na == 0 || !memcmp(a, b, sizeof *a * (size_t)na));
}

/* ----------------------------------------------------------- open / save */

TEST(detect_model_saves_opens_describes_and_infers_like_the_detector_itself) {
  e2e_model *m = small_detector(3);
  CHECK(m != NULL, "new detector: %s", e2e_last_error());
  char *path = tmp_path("det");
  nn_kv meta[] = {{"dataset", "none"}};
  CHECK(e2e_model_save(m, path, meta, 1), "save: %s", e2e_last_error());
  e2e_model *o = e2e_model_open(path, E2E_TASK_DETECT);
  CHECK(o != NULL, "open: %s", e2e_last_error());
  if (!o) return;
  const e2e_model_info *i = e2e_model_describe(o);
  CHECK(i->task == E2E_TASK_DETECT && !strcmp(i->architecture, "e2e-centernet-v1"), "task and architecture");
  CHECK(i->n_labels == 2 && !strcmp(i->labels[0], "cat") && !strcmp(i->labels[1], "dog"), "labels");
  CHECK(i->input_size == 64 && i->input_align == 32 && i->n_params > 0, "geometry: %d", i->input_size);
  CHECK(!strcmp(i->path, path) && i->id == e2e_model_describe(m)->id, "path and the same weights");
  bool has_config = false, has_dataset = false;
  for (int k = 0; k < i->n_meta; k++) {
    has_config |= !strcmp(i->meta[k].key, "config");
    has_dataset |= !strcmp(i->meta[k].key, "dataset") && !strcmp(i->meta[k].value, "none");
  }
  CHECK(has_config && has_dataset, "the file's metadata");

  /* the session's boxes are the detector's own, run by hand */
  int w = 100, h = 70;
  uint8_t *img = frame(w, h, 1);
  e2e_session *s = session_of(o, 1);
  CHECK(e2e_session_warm_up(s, 0, 0) >= 0, "warm-up: %s", e2e_last_error());
  det_box got[50], want[50];
  int n = e2e_detect_frame(s, &LOW, img, w, h, w * 3, got, 50);
  detector d = {0};
  CHECK(det_load(&d, path), "det_load");
  det_letterbox lb = det_letterbox_for(w, h, 64);
  nn_tensor *x = nn_empty(NN_F32, 4, (int64_t[]){1, 3, 64, 64});
  e2e_letterbox_to_planar(img, w, h, w * 3, 64, lb.scale, lb.pad_x, lb.pad_y, nn_f32(x));
  nn_no_grad_begin();
  int k = det_decode(&d.cfg, det_forward(&d, x, false), 0, LOW.threshold, LOW.iou_threshold, LOW.max_detections, want);
  nn_no_grad_end();
  det_unletterbox(&lb, want, k);
  nn_arena_reset(nn_arena_current());
  CHECK(n > 0 && same_boxes(got, n, want, k), "session boxes %d == detector boxes %d", n, k);
  det_free(&d);
  e2e_session_free(s);
  e2e_model_unref(o);
  drop(m, path);
  free(img);
}

TEST(codec_model_saves_opens_and_codes_like_the_codec_itself) {
  e2e_model *m = small_codec(4);
  char *path = tmp_path("codec");
  CHECK(m && e2e_model_save(m, path, NULL, 0), "save: %s", e2e_last_error());
  e2e_model *o = e2e_model_open(path, E2E_TASK_ANY);
  CHECK(o && e2e_model_describe(o)->task == E2E_TASK_CODEC && e2e_model_describe(o)->input_align == 64,
        "opened as a codec: %s", e2e_last_error());
  if (!o) return;
  CHECK(e2e_model_describe(o)->id == e2e_model_describe(m)->id, "the same weights id");
  int w = 80, h = 48;
  uint8_t *img = frame(w, h, 2), *rec = malloc((size_t)w * h * 3), *dec = malloc((size_t)w * h * 3);
  e2e_session *s = session_of(o, 2);
  CHECK(e2e_session_warm_up(s, w, h) >= 0, "warm-up: %s", e2e_last_error());
  uint8_t *a = NULL, *b = NULL;
  size_t la = 0, lb = 0;
  CHECK(e2e_codec_encode(s, NULL, 4, img, w, h, w * 3, &a, &la, rec), "encode: %s", e2e_last_error());
  codec_model c = {0};
  CHECK(codec_load(&c, path) && codec_compress(&c, NULL, 4, img, w, h, w * 3, &b, &lb, NULL), "direct encode");
  CHECK(la == lb && a && b && !memcmp(a, b, la), "the session's stream is the codec's, byte for byte");
  CHECK(e2e_codec_decode(s, NULL, a, la, dec, w, h) && !memcmp(dec, rec, (size_t)w * h * 3), "decodes exactly");
  CHECK(!e2e_codec_check_memory(s, &(codec_options){.memory_limit = 1000}, w, h, false) &&
            strstr(e2e_last_error(), "working memory"), "memory check in the session");
  det_box boxes[4];
  CHECK(e2e_detect_frame(s, NULL, img, w, h, w * 3, boxes, 4) < 0 && strstr(e2e_last_error(), "codec model"),
        "a codec session refuses detection: %s", e2e_last_error());
  codec_free(&c);
  free(a), free(b), free(img), free(rec), free(dec);
  e2e_session_free(s);
  e2e_model_unref(o);
  drop(m, path);
}

TEST(bad_checkpoints_are_refused_with_the_file_named) {
  char *good = tmp_path("good"), *cut = tmp_path("cut"), *alien = tmp_path("alien");
  e2e_model *m = small_codec(1);
  CHECK(e2e_model_save(m, good, NULL, 0), "save");
  e2e_model_unref(m);
  gchar *bytes = NULL;
  gsize len = 0;
  g_file_get_contents(good, &bytes, &len, NULL);
  g_file_set_contents(cut, bytes, (gssize)(len / 2), NULL);
  g_free(bytes);
  nn_params p;
  nn_params_init(&p);
  nn_params_add(&p, "w", nn_tensor_new(NN_F32, 1, (int64_t[]){4}), true);
  nn_safetensors_save(alien, &p, (nn_kv[]){{"architecture", "someone-elses-net"}}, 1);
  nn_params_free(&p);
  struct { const char *path; int task; const char *why; } cases[] = {
      {"/nonexistent/dir/model.safetensors", E2E_TASK_ANY, "cannot open"},
      {cut, E2E_TASK_ANY, "truncated"},
      {alien, E2E_TASK_ANY, "someone-elses-net"},
      {good, E2E_TASK_DETECT, "not a detect model"},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    e2e_model *bad = e2e_model_open(cases[i].path, cases[i].task);
    CHECK(!bad, "%s refused", cases[i].path);
    CHECK(strstr(e2e_last_error(), cases[i].path) && strstr(e2e_last_error(), cases[i].why), "message names the file "
          "and says %s: %s", cases[i].why, e2e_last_error());
    e2e_model_unref(bad);
  }
  e2e_slot *s = e2e_slot_open(NULL, cut, E2E_TASK_CODEC);
  CHECK(!s && strstr(e2e_last_error(), cut), "a slot refuses it too");
  unlink(good), unlink(cut), unlink(alien);
  free(good), free(cut), free(alien);
}

/* ---------------------------------------------------- train and evaluate */

/* Two 64x64 inputs with one bright square each, and its box. */
typedef struct { nn_tensor *x; det_box boxes[2][1]; const det_box *bptr[2]; int counts[2]; } det_batch_data;

static void detect_batch(det_batch_data *d) {
  d->x = nn_tensor_new(NN_F32, 4, (int64_t[]){2, 3, 64, 64});
  float *v = nn_f32(d->x);
  for (int i = 0; i < 2; i++) {
    int x0 = 8 + 24 * i, y0 = 12 + 16 * i, s = 20;
    for (int c = 0; c < 3; c++)
      for (int y = 0; y < 64; y++)
        for (int x = 0; x < 64; x++)
          v[((i * 3 + c) * 64 + y) * 64 + x] = e2e_input_of_unit(x >= x0 && x < x0 + s && y >= y0 && y < y0 + s ? 0.95f : 0.1f);
    d->boxes[i][0] = (det_box){(float)x0, (float)y0, (float)(x0 + s), (float)(y0 + s), 1, i};
    d->bptr[i] = d->boxes[i];
    d->counts[i] = 1;
  }
}

TEST(detect_trainer_steps_lower_the_loss_and_leave_the_source_model_alone) {
  e2e_model *m = small_detector(9);
  uint32_t before = e2e_model_describe(m)->id;
  det_batch_data d;
  detect_batch(&d);
  e2e_batch b = {.n = 2, .images = d.x, .boxes = d.bptr, .counts = d.counts};
  CHECK(!e2e_trainer_new(m, &(e2e_train_opts){.optimizer = NN_ADAMW, .lr = 1e-3f, .freeze = "backbone.,nope."}) &&
            strstr(e2e_last_error(), "nope."), "a freeze prefix matching nothing is refused: %s", e2e_last_error());
  e2e_trainer *t = e2e_trainer_new(m, &(e2e_train_opts){.optimizer = NN_ADAMW, .lr = 5e-3f, .clip_norm = 10,
                                                         .freeze = "backbone.conv0", .threads = 2});
  CHECK(t != NULL, "trainer: %s", e2e_last_error());
  if (!t) return;
  e2e_metric first = {0}, last = {0};
  for (int i = 0; i < 60; i++) CHECK(e2e_trainer_step(t, &b, i ? &last : &first), "step %d: %s", i, e2e_last_error());
  CHECK(!strcmp(first.name, "focal+L1") && first.n_parts == 2, "loss with its parts");
  CHECK(last.value < 0.5 * first.value, "60 steps on one batch: loss %.3f -> %.3f", first.value, last.value);
  CHECK(e2e_trainer_steps(t) == 60, "steps counted");
  CHECK(e2e_model_describe(m)->id == before, "the source model was not written");
  e2e_model *trained = e2e_trainer_model(t);
  CHECK(trained && e2e_model_describe(trained)->id != before, "the trained version differs");
  nn_params *src = e2e_model_ops(m)->params(e2e_model_impl(m)), *dst = e2e_model_ops(trained)->params(e2e_model_impl(trained));
  CHECK(!memcmp(nn_data(nn_params_find(src, "backbone.conv0.weight")),
                nn_data(nn_params_find(dst, "backbone.conv0.weight")), 4 * 3 * 9 * 8) &&
            memcmp(nn_data(nn_params_find(src, "head.weight")), nn_data(nn_params_find(dst, "head.weight")), 16),
        "the frozen prefix kept its weights, the rest moved");
  e2e_session *s = session_of(trained, 0);
  e2e_metric mm = {0};
  CHECK(e2e_session_evaluate(s, &b, &mm), "evaluate: %s", e2e_last_error());
  CHECK(!strcmp(mm.name, "mAP@0.5") && mm.higher_is_better && mm.value >= 0 && mm.value <= 1, "mAP@0.5 %.3f", mm.value);
  char *path = tmp_path("trained");
  CHECK(e2e_model_save(trained, path, NULL, 0), "save the trained version");
  gchar *tmp = g_strdup_printf("%s.tmp", path);
  CHECK(!g_file_test(tmp, G_FILE_TEST_EXISTS), "no temporary file left");
  e2e_model *back = e2e_model_open(path, E2E_TASK_DETECT);
  CHECK(back && e2e_model_describe(back)->id == e2e_model_describe(trained)->id, "reopens to the same weights");
  e2e_model_unref(back);
  drop(NULL, path);
  g_free(tmp);
  e2e_session_free(s);
  e2e_model_unref(trained);
  e2e_trainer_free(t);
  e2e_model_unref(m);
  nn_tensor_free(d.x);
}

TEST(codec_trainer_steps_lower_the_loss_and_evaluation_codes_for_real) {
  e2e_model *m = small_codec(11);
  nn_tensor *x = nn_tensor_new(NN_F32, 4, (int64_t[]){2, 3, 64, 64});
  uint8_t *img = frame(64, 128, 5);
  for (int i = 0; i < 2; i++)
    for (int c = 0; c < 3; c++)
      for (int k = 0; k < 64 * 64; k++) nn_f32(x)[(i * 3 + c) * 4096 + k] = img[((size_t)i * 4096 + k) * 3 + c] / 255.0f;
  int quality[2] = {2, 4};
  e2e_batch b = {.n = 2, .images = x, .quality = quality};
  e2e_trainer *t = e2e_trainer_new(m, &(e2e_train_opts){.optimizer = NN_ADAM, .lr = 1e-3f, .seed = 3});
  e2e_metric first = {0}, last = {0};
  for (int i = 0; i < 40; i++) CHECK(e2e_trainer_step(t, &b, i ? &last : &first), "step %d: %s", i, e2e_last_error());
  CHECK(!strcmp(first.name, "rd-loss") && last.value < first.value, "rd-loss %.3f -> %.3f", first.value, last.value);
  e2e_model *trained = e2e_trainer_model(t);
  e2e_session *s = session_of(trained, 0);
  e2e_metric mm = {0};
  CHECK(e2e_session_evaluate(s, &b, &mm), "evaluate: %s", e2e_last_error());
  /* the metric from real streams: the same as coding the two patches by hand */
  double rd = 0;
  for (int i = 0; i < 2; i++) {
    uint8_t *patch = malloc(64 * 64 * 3), *rec = malloc(64 * 64 * 3), *st = NULL;
    size_t len = 0;
    memcpy(patch, img + (size_t)i * 4096 * 3, 4096 * 3);
    CHECK(e2e_codec_encode(s, NULL, quality[i], patch, 64, 64, 64 * 3, &st, &len, rec), "encode");
    double mse = 0;
    for (int k = 0; k < 4096 * 3; k++) mse += ((double)patch[k] - rec[k]) * ((double)patch[k] - rec[k]) / (4096.0 * 3);
    rd += (8.0 * len / 4096 + codec_lambda(&((codec_model *)e2e_model_impl(trained))->cfg, quality[i]) * mse) / 2;
    free(patch), free(rec), free(st);
  }
  CHECK(!strcmp(mm.name, "rd-loss") && !mm.higher_is_better && fabs(mm.value - rd) < 1e-9 * fmax(1, rd),
        "rd-loss of the real streams %.6f == %.6f", mm.value, rd);
  int bad_q[2] = {0, 9};
  CHECK(!e2e_trainer_step(t, &(e2e_batch){.n = 2, .images = x, .quality = bad_q}, &last) && strstr(e2e_last_error(), "quality"),
        "a bad quality is refused: %s", e2e_last_error());
  e2e_session_free(s);
  e2e_model_unref(trained);
  e2e_trainer_free(t);
  e2e_model_unref(m);
  nn_tensor_free(x);
  free(img);
}

/* ------------------------------------------------------ sharing a model */

typedef struct {
  e2e_slot *slot;
  int threads, rounds, w, h;
  const uint8_t *img;
  /* detect: the boxes of each round; codec: each round's stream */
  det_box boxes[64][50];
  int n[64];
  uint8_t *streams[64];
  size_t lens[64];
  bool ok;
} infer_job;

static void *run_detect(void *p) {
  infer_job *j = p;
  e2e_session *s = e2e_session_new(j->slot, j->threads);
  j->ok = s != NULL;
  for (int r = 0; r < j->rounds && s; r++) j->n[r] = e2e_detect_frame(s, &LOW, j->img, j->w, j->h, j->w * 3, j->boxes[r], 50);
  e2e_session_free(s);
  return NULL;
}

static void *run_codec(void *p) {
  infer_job *j = p;
  e2e_session *s = e2e_session_new(j->slot, j->threads);
  j->ok = s != NULL;
  for (int r = 0; r < j->rounds && s; r++)
    j->ok &= e2e_codec_encode(s, NULL, 3, j->img, j->w, j->h, j->w * 3, &j->streams[r], &j->lens[r], NULL);
  e2e_session_free(s);
  return NULL;
}

/* Active learning in the online trainer: with prefer_uncertain, half of the random draws go to the frames
 * marked uncertain, so one marked frame among twelve is in about half of the picks; without it, in about
 * one in twelve (the progress events say how many of each step's frames were marked). */
typedef struct {
  atomic_int picks, uncertain;
} pick_count;

static void count_uncertain(const e2e_online_event *ev, void *user) {
  pick_count *c = user;
  if (ev->kind != E2E_ONLINE_PROGRESS) return;
  atomic_fetch_add(&c->picks, 4);
  atomic_fetch_add(&c->uncertain, ev->batch_uncertain);
}

TEST(preferring_uncertain_frames_trains_on_them_more_often) {
  e2e_model *m = small_detector(5);
  static uint8_t rgb[48 * 64 * 3];
  for (int prefer = 0; prefer < 2; prefer++) {
    e2e_slot *slot = e2e_slot_new(m);
    e2e_online_opts o = e2e_online_defaults();
    o.buffer_size = 16, o.batch_size = 4, o.holdout = 0, o.leaky = false, o.publish_every = 1000000, o.augment = false;
    o.prefer_uncertain = prefer, o.max_steps = 40, o.train.threads = 1;
    pick_count c = {0};
    e2e_online *t = e2e_online_new(slot, &o, count_uncertain, &c);
    CHECK(t != NULL, "start: %s", e2e_last_error());
    for (int i = 0; t && i < 12; i++) {
      memset(rgb, 40 + 15 * i, sizeof rgb);
      det_box b = {8.0f + i, 6.0f, 30.0f + i, 28.0f, 1, i % 2};
      CHECK((i == 11 ? e2e_online_add_uncertain : e2e_online_add)(t, (uint64_t)i, rgb, 64, 48, 64 * 3, &b, 1, NULL),
            "frame %d taken", i);
    }
    CHECK(t && e2e_online_wait(t), "trained to max-steps");
    int picks = atomic_load(&c.picks), uncertain = atomic_load(&c.uncertain);
    double share = picks ? (double)uncertain / picks : 0;
    printf("    prefer_uncertain=%d: the marked frame in %.0f %% of %d picks\n", prefer, 100 * share, picks);
    if (prefer) CHECK(share > 0.3, "preferred: the marked frame was %.0f %% of %d picks", 100 * share, picks);
    else CHECK(share < 0.2 && uncertain >= 1, "not preferred: the marked frame was %.0f %% of %d picks", 100 * share, picks);
    e2e_online_free(t);
    e2e_slot_unref(slot);
  }
  e2e_model_unref(m);
}

TEST(one_model_shared_by_two_threads_gives_what_one_thread_gives) {
  e2e_model *dm = small_detector(21), *cm = small_codec(22);
  e2e_slot *ds = e2e_slot_new(dm), *cs = e2e_slot_new(cm);
  uint8_t *a = frame(96, 64, 7), *b = frame(96, 64, 8);
  infer_job *ref = calloc(4, sizeof *ref), *par = calloc(4, sizeof *par);
  for (int k = 0; k < 4; k++) /* detect on a, detect on b, code a, code b */
    ref[k] = (infer_job){.slot = k < 2 ? ds : cs, .threads = 1, .rounds = 1, .w = 96, .h = 64, .img = k % 2 ? b : a};
  run_detect(&ref[0]), run_detect(&ref[1]), run_codec(&ref[2]), run_codec(&ref[3]);
  pthread_t th[4];
  for (int k = 0; k < 4; k++) {
    par[k] = ref[k];
    par[k].rounds = 6;
    par[k].threads = 1 + k % 2;
    pthread_create(&th[k], NULL, k < 2 ? run_detect : run_codec, &par[k]);
  }
  for (int k = 0; k < 4; k++) pthread_join(th[k], NULL);
  for (int r = 0; r < 6; r++) {
    for (int k = 0; k < 2; k++)
      CHECK(par[k].n[r] > 0 && same_boxes(par[k].boxes[r], par[k].n[r], ref[k].boxes[0], ref[k].n[0]),
            "detect, thread %d round %d: the lone thread's boxes", k, r);
    for (int k = 2; k < 4; k++) {
      CHECK(par[k].ok && par[k].lens[r] == ref[k].lens[0] && !memcmp(par[k].streams[r], ref[k].streams[0], ref[k].lens[0]),
            "codec, thread %d round %d: the lone thread's stream", k, r);
      free(par[k].streams[r]);
    }
  }
  free(ref[2].streams[0]), free(ref[3].streams[0]);
  free(ref), free(par), free(a), free(b);
  e2e_slot_unref(ds), e2e_slot_unref(cs);
  e2e_model_unref(dm), e2e_model_unref(cm);
}

typedef struct {
  infer_job job;
  atomic_bool stop;
  atomic_int done; /* rounds finished */
} swap_job;

static void *run_codec_until(void *p) {
  swap_job *j = p;
  e2e_session *s = e2e_session_new(j->job.slot, 1);
  int r = 0;
  for (; r < 64 && !atomic_load(&j->stop); r++) {
    j->job.ok &= e2e_codec_encode(s, NULL, 3, j->job.img, j->job.w, j->job.h, j->job.w * 3, &j->job.streams[r],
                                  &j->job.lens[r], NULL);
    atomic_store(&j->done, r + 1);
  }
  j->job.rounds = r;
  e2e_session_free(s);
  return NULL;
}

TEST(a_swap_during_inference_never_tears) {
  /* two codec models: every stream carries its model's id and is the whole work of one model */
  e2e_model *m[2] = {small_codec(31), small_codec(32)};
  uint8_t *img = frame(64, 64, 9);
  infer_job ref[2];
  for (int k = 0; k < 2; k++) {
    e2e_slot *one = e2e_slot_new(m[k]);
    ref[k] = (infer_job){.slot = one, .threads = 1, .rounds = 1, .w = 64, .h = 64, .img = img};
    run_codec(&ref[k]);
    e2e_slot_unref(one);
  }
  CHECK(ref[0].lens[0] != ref[1].lens[0] || memcmp(ref[0].streams[0], ref[1].streams[0], ref[0].lens[0]), "models differ");
  e2e_slot *slot = e2e_slot_new(m[0]);
  swap_job *j = calloc(1, sizeof *j);
  j->job = (infer_job){.slot = slot, .w = 64, .h = 64, .img = img, .ok = true};
  pthread_t th;
  pthread_create(&th, NULL, run_codec_until, j);
  /* publish while the other thread codes; each time, let it start a round on the new version */
  for (int i = 1; i <= 10; i++) {
    int before = atomic_load(&j->done);
    CHECK(e2e_slot_publish(slot, m[i % 2]), "publish %d", i);
    /* (a coder that ran ahead through all its rounds while this thread waited for a core has stopped) */
    while (atomic_load(&j->done) < before + 2 && atomic_load(&j->done) < 64) usleep(200);
  }
  atomic_store(&j->stop, true);
  pthread_join(th, NULL);
  CHECK(e2e_slot_version(slot) == 11, "11 versions: %llu", (unsigned long long)e2e_slot_version(slot));
  int seen[2] = {0, 0};
  for (int r = 0; r < j->job.rounds; r++) {
    int which = -1;
    for (int k = 0; k < 2; k++)
      if (j->job.lens[r] == ref[k].lens[0] && !memcmp(j->job.streams[r], ref[k].streams[0], ref[k].lens[0])) which = k;
    CHECK(which >= 0, "round %d: a stream of one model or the other, never a mix", r);
    if (which >= 0) seen[which]++;
    free(j->job.streams[r]);
  }
  CHECK(j->job.ok && seen[0] >= 5 && seen[1] >= 5, "both versions ran (%d and %d rounds)", seen[0], seen[1]);
  free(j);
  CHECK(!e2e_slot_publish(slot, NULL), "publishing nothing is refused");
  e2e_model *det = small_detector(1);
  CHECK(!e2e_slot_publish(slot, det) && strstr(e2e_last_error(), "detect"), "another task is refused: %s", e2e_last_error());
  e2e_model_unref(det);
  e2e_slot_unref(slot);
  free(ref[0].streams[0]), free(ref[1].streams[0]), free(img);
  e2e_model_unref(m[0]), e2e_model_unref(m[1]);
}

TEST(named_slots_share_one_loaded_copy) {
  char *path = tmp_path("named");
  e2e_model *m = small_detector(5);
  e2e_model_save(m, path, NULL, 0);
  e2e_model_unref(m);
  e2e_slot *a = e2e_slot_open("cam", path, E2E_TASK_DETECT), *b = e2e_slot_open("cam", NULL, E2E_TASK_DETECT);
  e2e_slot *c = e2e_slot_open("other", path, E2E_TASK_DETECT), *p = e2e_slot_open(NULL, path, E2E_TASK_DETECT);
  CHECK(a && a == b, "one slot per name");
  e2e_model *ma = e2e_slot_get(a), *mb = e2e_slot_get(b), *mc = e2e_slot_get(c), *mp = e2e_slot_get(p);
  CHECK(ma == mb && ma != mc && ma != mp, "one loaded copy per name; other names and unnamed slots have theirs");
  CHECK(!strcmp(e2e_slot_name(a), "cam") && !strcmp(e2e_slot_path(b), path) && !e2e_slot_name(p), "names and paths");
  CHECK(!e2e_slot_open("cam", NULL, E2E_TASK_CODEC) && strstr(e2e_last_error(), "cam"), "the name holds a detector: %s",
        e2e_last_error());
  CHECK(e2e_slot_publish(b, mc), "publish through one handle");
  e2e_model *now = e2e_slot_get(a);
  CHECK(now == mc && e2e_slot_version(a) == 2, "the other handle sees it");
  e2e_model_unref(now);
  e2e_model_unref(ma), e2e_model_unref(mb), e2e_model_unref(mc), e2e_model_unref(mp);
  e2e_slot_unref(a), e2e_slot_unref(b), e2e_slot_unref(c), e2e_slot_unref(p);
  e2e_slot *again = e2e_slot_open("cam", path, E2E_TASK_DETECT);
  CHECK(again && e2e_slot_version(again) == 1, "after the last user, the name loads afresh");
  e2e_slot_unref(again);
  unlink(path);
  free(path);
}

/* -------------------------------------------- a session's engine state */

typedef struct {
  e2e_session *s;
  int expect;
  int seen_threads;
  bool arena_ok, no_grad_ok, restored;
  atomic_int *ready;
} state_job;

static void *look_inside(void *p) {
  state_job *j = p;
  nn_arena *mine = nn_arena_current();
  int outer = nn_get_num_threads();
  nn_scope scope;
  void *impl = e2e_session_enter(j->s, (e2e_task)E2E_TASK_ANY, &scope);
  atomic_fetch_add(j->ready, 1);
  while (atomic_load(j->ready) < 2) usleep(100); /* both sessions inside at once */
  j->seen_threads = nn_get_num_threads();
  j->arena_ok = impl && nn_arena_current() != mine;
  j->no_grad_ok = !nn_grad_enabled();
  e2e_session_leave(j->s, &scope);
  j->restored = nn_arena_current() == mine && nn_grad_enabled() && nn_get_num_threads() == outer;
  return NULL;
}

TEST(two_sessions_keep_their_own_thread_budgets_and_leave_the_caller_as_it_was) {
  e2e_model *m = small_detector(2);
  e2e_slot *slot = e2e_slot_new(m);
  atomic_int ready = 0;
  state_job j[2] = {{.s = e2e_session_new(slot, 1), .expect = 1, .ready = &ready},
                    {.s = e2e_session_new(slot, 2), .expect = 2, .ready = &ready}};
  pthread_t th[2];
  for (int k = 0; k < 2; k++) pthread_create(&th[k], NULL, look_inside, &j[k]);
  for (int k = 0; k < 2; k++) pthread_join(th[k], NULL);
  for (int k = 0; k < 2; k++) {
    CHECK(j[k].seen_threads == j[k].expect, "a session of %d threads sees %d inside its call", j[k].expect, j[k].seen_threads);
    CHECK(j[k].arena_ok && j[k].no_grad_ok && j[k].restored, "its own arena, no grad, and the caller's state back after");
  }
  e2e_session_set_threads(j[0].s, 3);
  j[0].expect = 3, atomic_store(&ready, 1);
  look_inside(&j[0]);
  CHECK(j[0].seen_threads == 3, "a new budget applies from the next call (%d)", j[0].seen_threads);
  e2e_session_free(j[0].s), e2e_session_free(j[1].s);
  e2e_slot_unref(slot);
  e2e_model_unref(m);
}

/* A picture header that claims a giant size is refused before anything is allocated for it. */
TEST(images_claiming_giant_sizes_are_refused) {
  static const uint8_t png[] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n', 0, 0, 0, 13, 'I', 'H', 'D', 'R',
                                0, 1, 0x86, 0xa0, 0, 1, 0x86, 0xa0, 8, 2, 0, 0, 0}; /* 100000 x 100000 */
  char path[] = "/tmp/e2e-giant-XXXXXX";
  int fd = mkstemp(path);
  CHECK(fd >= 0 && write(fd, png, sizeof png) == (ssize_t)sizeof png, "write the header");
  close(fd);
  e2e_image im;
  CHECK(!e2e_image_load(path, &im) && strstr(nn_last_error(), "100000x100000"), "refused: %s", nn_last_error());
  unlink(path);
}

