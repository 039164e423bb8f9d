/* Online training (e2e/online.h): a replay buffer filled by the stream, a training thread, and publication
 * after validation on held-out samples. One lock guards the two sample sets and the counters; the
 * trainer, the sessions and the batches belong to the training thread alone. */
#include "e2e/online.h"

#include <errno.h>
#include <glib.h>
#include <glib/gstdio.h>
#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "e2e/image.h"
#include "nncore/nncore.h"

#define MAX_VALIDATION 64 /* held-out samples a validation scores */

typedef struct {
  GBytes *rgb;   /* the frame scaled for the network input: w x h, packed; shared with batches being built */
  int w, h, pad_x, pad_y;
  det_box *boxes; /* network-input pixels */
  int n;
  int uses;      /* batches it has been in */
  uint64_t age;  /* arrival order */
  bool uncertain; /* marked for active learning */
} sample;

typedef struct {
  sample *s;
  int n, cap;
} sample_set;

struct e2e_online {
  e2e_online_opts o;
  char *checkpoint_dir, *freeze;
  e2e_slot *slot;
  int size, n_classes;
  bool stretch;
  e2e_online_cb cb;
  void *user;
  e2e_trainer *trainer;
  pthread_mutex_t lock; /* POSIX, not GMutex: GLib's futex locks are invisible to the thread sanitizer */
  pthread_cond_t cond;  /* a sample was trained on, a sample arrived, or stop */
  sample_set train, held;
  uint64_t arrivals, dropped;
  bool stop, flushing;
  GThread *thread;
};

e2e_online_opts e2e_online_defaults(void) {
  return (e2e_online_opts){.buffer_size = 64, .leaky = true, .holdout = 0.2, .batch_size = 4, .publish_every = 50, .augment = true,
                           .min_improvement = 0.0,
                           .train = {.optimizer = NN_ADAMW, .lr = 5e-4f, .weight_decay = 5e-4f, .clip_norm = 10.0f}};
}

static void sample_clear(sample *s) {
  if (s->rgb) g_bytes_unref(s->rgb);
  free(s->boxes);
  memset(s, 0, sizeof *s);
}

static void set_free(sample_set *ss) {
  for (int i = 0; i < ss->n; i++) sample_clear(&ss->s[i]);
  free(ss->s);
  memset(ss, 0, sizeof *ss);
}

/* splitmix64: a key's place in [0, 1), the same in every run */
static double unit_of(uint64_t key) {
  uint64_t z = key + 0x9e3779b97f4a7c15ULL;
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  z ^= z >> 31;
  return (double)(z >> 11) / 9007199254740992.0;
}

bool e2e_online_is_held_out(const e2e_online *t, uint64_t key) { return unit_of(key) < t->o.holdout; }

char *e2e_online_latest(const char *dir) {
  if (!dir || !*dir) return NULL;
  char *p = g_build_filename(dir, "latest.safetensors", NULL);
  if (g_file_test(p, G_FILE_TEST_IS_REGULAR)) return p;
  g_free(p);
  return NULL;
}

/* ---------------------------------------------------------------- batches */

typedef struct {
  int n;
  nn_tensor *images;
  det_box **boxes;
  int *counts;
} batch;

static bool batch_alloc(batch *b, int n, int size) {
  b->n = 0;
  b->images = nn_tensor_new(NN_F32, 4, (int64_t[]){n, 3, size, size});
  b->boxes = calloc((size_t)n, sizeof *b->boxes);
  b->counts = calloc((size_t)n, sizeof *b->counts);
  return b->images && b->boxes && b->counts;
}

static void batch_free(batch *b) {
  for (int i = 0; b->boxes && i < b->n; i++) free(b->boxes[i]);
  free(b->boxes), free(b->counts);
  nn_tensor_free(b->images);
  memset(b, 0, sizeof *b);
}

/* A sample taken for a batch: its pixels shared, its boxes copied, so that the batch is built outside
 * the lock while the stream replaces samples. */
typedef struct {
  GBytes *rgb;
  int w, h, pad_x, pad_y;
  det_box *boxes; /* network-input pixels */
  int n;
} pick;

static bool take(pick *p, const sample *s) {
  *p = (pick){g_bytes_ref(s->rgb), s->w, s->h, s->pad_x, s->pad_y, malloc(sizeof(det_box) * (size_t)(s->n ? s->n : 1)), s->n};
  if (p->boxes && s->n) memcpy(p->boxes, s->boxes, sizeof(det_box) * (size_t)s->n);
  return p->boxes != NULL;
}

static void picks_clear(pick *p, int n) {
  for (int i = 0; i < n; i++) {
    if (p[i].rgb) g_bytes_unref(p[i].rgb);
    free(p[i].boxes);
  }
  memset(p, 0, sizeof *p * (size_t)n);
}

/* Appends pick p to b as it is: letterboxed, normalised. */
static bool batch_add(batch *b, const pick *p, int size) {
  float *dst = nn_f32(b->images) + (int64_t)b->n * 3 * size * size;
  e2e_place_planar(g_bytes_get_data(p->rgb, NULL), p->w, p->h, p->w * 3, size, p->pad_x, p->pad_y, dst);
  b->boxes[b->n] = malloc(sizeof(det_box) * (size_t)(p->n ? p->n : 1));
  if (!b->boxes[b->n]) return false;
  if (p->n) memcpy(b->boxes[b->n], p->boxes, sizeof(det_box) * (size_t)p->n);
  b->counts[b->n++] = p->n;
  return true;
}

enum { AUGMENT_BOXES = 256, MOSAIC_EXTRA = 3 };
#define MOSAIC_P 0.3f /* the share of mosaics, as in the fine-tuning recipe */

/* Appends augmented copies of picks[0 .. b's capacity) to b, det_augment's way (e2e train detect's):
 * flips, scale, aspect and shift jitter, colour jitter, and mosaics with the other picks. */
static bool batch_augment(batch *b, const pick *picks, int n_items, int n_picks, int size, nn_rng *r, det_dataset *view) {
  view->n = n_picks;
  for (int i = 0; i < n_picks; i++) {
    det_sample *d = &view->s[i];
    const pick *p = &picks[i];
    d->img = (e2e_image){p->w, p->h, (uint8_t *)g_bytes_get_data(p->rgb, NULL)};
    d->n = p->n < AUGMENT_BOXES ? p->n : AUGMENT_BOXES;
    for (int k = 0; k < d->n; k++) { /* the scaled frame's pixels, without the letterbox's padding */
      d->boxes[k] = p->boxes[k];
      d->boxes[k].x1 -= (float)p->pad_x, d->boxes[k].x2 -= (float)p->pad_x;
      d->boxes[k].y1 -= (float)p->pad_y, d->boxes[k].y2 -= (float)p->pad_y;
    }
  }
  det_box out[AUGMENT_BOXES];
  for (int i = 0; i < n_items; i++) {
    float *dst = nn_f32(b->images) + (int64_t)b->n * 3 * size * size;
    int n = det_augment(view, i, r, size, n_picks > 1 && nn_rng_uniform(r) < MOSAIC_P, dst, out, AUGMENT_BOXES);
    b->boxes[b->n] = malloc(sizeof(det_box) * (size_t)(n ? n : 1));
    if (!b->boxes[b->n]) return false;
    if (n) memcpy(b->boxes[b->n], out, sizeof(det_box) * (size_t)n);
    b->counts[b->n++] = n;
  }
  return true;
}

static e2e_batch as_task_batch(const batch *b) {
  return (e2e_batch){.n = b->n, .images = b->images, .boxes = (const det_box *const *)b->boxes, .counts = b->counts};
}

/* The next training batch: samples not yet trained on first (oldest first), the rest drawn at random
 * from the replay buffer (with augmentation, a few more at random for mosaics). Waits until there are
 * enough samples or training stops. Only the choice is made under the lock. */
static bool next_batch(e2e_online *t, batch *b, pick *picks, GRand *rng, nn_rng *r, det_dataset *view, int *uncertain) {
  int items = t->o.batch_size, n_picks = items + (t->o.augment ? MOSAIC_EXTRA * items : 0);
  pthread_mutex_lock(&t->lock);
  while (!t->stop && t->train.n < t->o.batch_size) pthread_cond_wait(&t->cond, &t->lock);
  bool ok = !t->stop;
  int n_uncertain = 0;
  for (int i = 0; t->o.prefer_uncertain && i < t->train.n; i++) n_uncertain += t->train.s[i].uncertain;
  for (int k = 0; ok && k < n_picks; k++) {
    int pick = -1;
    /* not yet trained on, oldest first (uncertain ones before the rest when they are preferred) */
    for (int pass = t->o.prefer_uncertain ? 0 : 1; k < items && pick < 0 && pass < 2; pass++)
      for (int i = 0; i < t->train.n; i++)
        if (!t->train.s[i].uses && (pass || t->train.s[i].uncertain) && (pick < 0 || t->train.s[i].age < t->train.s[pick].age))
          pick = i;
    if (pick < 0 && n_uncertain > 0 && g_rand_boolean(rng)) { /* half the random draws among the uncertain */
      int j = g_rand_int_range(rng, 0, n_uncertain);
      for (int i = 0; i < t->train.n && pick < 0; i++)
        if (t->train.s[i].uncertain && j-- == 0) pick = i;
    }
    if (pick < 0) pick = g_rand_int_range(rng, 0, t->train.n);
    ok = take(&picks[k], &t->train.s[pick]);
    if (k < items) t->train.s[pick].uses++, *uncertain += t->train.s[pick].uncertain;
  }
  pthread_cond_broadcast(&t->cond); /* samples were used: room for new ones */
  pthread_mutex_unlock(&t->lock);
  b->n = 0;
  if (ok && t->o.augment) ok = batch_augment(b, picks, items, n_picks, t->size, r, view);
  for (int k = 0; ok && !t->o.augment && k < items; k++) ok = batch_add(b, &picks[k], t->size);
  picks_clear(picks, n_picks);
  return ok;
}

static bool validation_batch(e2e_online *t, batch *b) {
  pick picks[MAX_VALIDATION];
  pthread_mutex_lock(&t->lock);
  int n = t->held.n < MAX_VALIDATION ? t->held.n : MAX_VALIDATION, taken = 0;
  bool ok = true;
  for (; ok && taken < n; taken++) ok = take(&picks[taken], &t->held.s[taken]);
  pthread_mutex_unlock(&t->lock);
  ok = ok && (n == 0 || batch_alloc(b, n, t->size));
  b->n = 0;
  for (int i = 0; ok && i < n; i++) ok = batch_add(b, &picks[i], t->size);
  picks_clear(picks, taken);
  return ok;
}

/* ---------------------------------------------------------------- the training thread */

static void emit(e2e_online *t, e2e_online_event *ev) {
  pthread_mutex_lock(&t->lock);
  ev->buffered = t->train.n, ev->held_out = t->held.n, ev->dropped = t->dropped;
  pthread_mutex_unlock(&t->lock);
  if (t->cb) t->cb(ev, t->user);
}

static double map_of(e2e_slot *slot, const batch *vb, int threads) {
  e2e_session *s = e2e_session_new(slot, threads);
  e2e_batch tb = as_task_batch(vb);
  e2e_metric m = {0};
  bool ok = s && e2e_session_evaluate(s, &tb, &m);
  e2e_session_free(s);
  return ok ? m.value : NAN;
}

/* Validates the trainer's weights against the live version; publishes them when they are better. */
static void validate(e2e_online *t, int64_t step, double loss, batch *vb) {
  e2e_online_event ev = {.step = step, .loss = loss, .kind = E2E_ONLINE_REJECTED};
  /* with no hold-out asked for there is nothing to validate on: every version is published */
  bool unvalidated = t->o.holdout <= 0;
  if (!unvalidated && (!validation_batch(t, vb) || vb->n == 0)) {
    ev.message = vb->n == 0 ? "no held-out samples yet" : "out of memory";
    emit(t, &ev);
    return;
  }
  e2e_model *cand = e2e_trainer_model(t->trainer);
  e2e_slot *cs = cand ? e2e_slot_new(cand) : NULL; /* slots take references of their own */
  ev.metric_live = unvalidated ? NAN : map_of(t->slot, vb, t->o.train.threads);
  ev.metric_new = !cs ? NAN : unvalidated ? NAN : map_of(cs, vb, t->o.train.threads);
  char *path = NULL, msg[160];
  if (!cand || (!unvalidated && (!isfinite(ev.metric_new) || !isfinite(ev.metric_live)))) {
    snprintf(msg, sizeof msg, "validation failed: %s", nn_last_error());
    ev.message = msg;
  } else if (!unvalidated && ev.metric_new < ev.metric_live + t->o.min_improvement) {
    snprintf(msg, sizeof msg, "mAP@0.5 %.4f does not beat the live %.4f by %.4f", ev.metric_new, ev.metric_live,
             t->o.min_improvement);
    ev.message = msg;
  } else if (!e2e_slot_publish(t->slot, cand)) {
    snprintf(msg, sizeof msg, "publish failed: %s", nn_last_error());
    ev.message = msg;
  } else {
    ev.kind = E2E_ONLINE_PUBLISHED;
    ev.version = e2e_slot_version(t->slot);
    if (unvalidated) ev.message = "holdout is 0: published without validation";
    if (t->checkpoint_dir) {
      char name[64];
      snprintf(name, sizeof name, "v%06llu.safetensors", (unsigned long long)ev.version);
      char *vpath = g_build_filename(t->checkpoint_dir, name, NULL);
      path = g_build_filename(t->checkpoint_dir, "latest.safetensors", NULL);
      char stepbuf[32];
      snprintf(stepbuf, sizeof stepbuf, "%lld", (long long)step);
      nn_kv meta[] = {{"online_step", stepbuf}};
      char *state = g_build_filename(t->checkpoint_dir, "trainer.safetensors", NULL);
      /* the trainer's state first: latest is what a restart trusts, and it must find the state that made it */
      bool saved = e2e_trainer_save_state(t->trainer, state) && e2e_model_save(cand, vpath, meta, 1) &&
                   e2e_model_save(cand, path, meta, 1);
      g_free(state);
      if (saved) {
        ev.checkpoint = path;
      } else {
        snprintf(msg, sizeof msg, "published, but the checkpoint was not written: %s", nn_last_error());
        ev.message = msg;
      }
      g_free(vpath);
    }
  }
  emit(t, &ev);
  g_free(path);
  e2e_slot_unref(cs);
  e2e_model_unref(cand);
  batch_free(vb);
}

static gpointer run(gpointer p) {
  e2e_online *t = p;
  GRand *rng = g_rand_new_with_seed(1);
  nn_rng r;
  nn_rng_seed(&r, 1);
  batch b = {0}, vb = {0};
  int n_picks = t->o.batch_size * (1 + MOSAIC_EXTRA);
  pick *picks = calloc((size_t)n_picks, sizeof *picks);
  /* the augmenter's view of the picks, as a data set */
  det_dataset *view = calloc(1, sizeof *view);
  det_sample *vs = calloc((size_t)n_picks, sizeof *vs);
  bool ok = picks && view && vs && batch_alloc(&b, t->o.batch_size, t->size);
  if (view) view->s = vs, view->num_classes = t->n_classes;
  /* a run of known length follows e2e train detect's schedule: a short warm-up, then a cosine to 2 % */
  nn_lr_schedule sched = {.kind = NN_LR_COSINE, .base_lr = t->o.train.lr, .min_lr = t->o.train.lr * 0.02f,
                          .warmup_steps = t->o.max_steps / 30 + 1, .total_steps = t->o.max_steps};
  for (int i = 0; ok && i < n_picks; i++) ok = (vs[i].boxes = malloc(sizeof(det_box) * AUGMENT_BOXES)) != NULL;
  double t0 = g_get_monotonic_time() * 1e-6;
  int64_t since = 0;
  while (ok) {
    int uncertain = 0;
    if (!next_batch(t, &b, picks, rng, &r, view, &uncertain)) break;
    e2e_batch tb = as_task_batch(&b);
    e2e_metric loss = {0};
    if (t->o.max_steps > 0) e2e_trainer_set_lr(t->trainer, nn_lr_at(&sched, e2e_trainer_steps(t->trainer)));
    bool stepped = e2e_trainer_step(t->trainer, &tb, &loss);
    for (int i = 0; i < b.n; i++) free(b.boxes[i]), b.boxes[i] = NULL;
    b.n = 0;
    int64_t step = e2e_trainer_steps(t->trainer);
    if (!stepped || !isfinite(loss.value)) {
      char msg[200];
      snprintf(msg, sizeof msg, "training stopped at step %lld: %s", (long long)step,
               stepped ? "the loss is not finite (lower learning-rate?)" : nn_last_error());
      e2e_online_event ev = {.kind = E2E_ONLINE_ERROR, .step = step, .loss = loss.value, .message = msg};
      emit(t, &ev);
      break;
    }
    since++;
    double now = g_get_monotonic_time() * 1e-6;
    e2e_online_event ev = {.kind = E2E_ONLINE_PROGRESS, .step = step, .loss = loss.value,
                           .samples_per_s = since * t->o.batch_size / fmax(now - t0, 1e-6), .batch_uncertain = uncertain};
    if (now - t0 > 5.0) t0 = now, since = 0; /* a rate over the last few seconds */
    emit(t, &ev);
    if (t->o.publish_every > 0 && step % t->o.publish_every == 0) {
      validate(t, step, loss.value, &vb);
      batch_free(&vb);
    }
    if (t->o.max_steps > 0 && step >= t->o.max_steps) {
      if (t->o.publish_every <= 0 || step % t->o.publish_every != 0) { /* the last steps get their validation too */
        validate(t, step, loss.value, &vb);
        batch_free(&vb);
      }
      e2e_online_event fin = {.kind = E2E_ONLINE_FINISHED, .step = step, .loss = loss.value};
      emit(t, &fin);
      break;
    }
    pthread_mutex_lock(&t->lock);
    ok = !t->stop;
    pthread_mutex_unlock(&t->lock);
  }
  /* no more training: whoever waits for room must not wait forever */
  pthread_mutex_lock(&t->lock);
  t->stop = true;
  pthread_cond_broadcast(&t->cond);
  pthread_mutex_unlock(&t->lock);
  batch_free(&b);
  g_rand_free(rng);
  for (int i = 0; vs && i < n_picks; i++) free(vs[i].boxes);
  free(vs), free(view), free(picks);
  return NULL;
}

/* ---------------------------------------------------------------- the stream's side */

/* A process killed while writing a checkpoint leaves its temporary file (NAME.tmp.XXXXXX; the rename
 * that would have replaced NAME never happened, so NAME is still the previous, whole version). */
static void remove_partial_writes(const char *dir) {
  GDir *d = g_dir_open(dir, 0, NULL);
  if (!d) return;
  const char *name;
  while ((name = g_dir_read_name(d)))
    if (strstr(name, ".safetensors.tmp.")) {
      char *p = g_build_filename(dir, name, NULL);
      g_unlink(p);
      g_free(p);
    }
  g_dir_close(d);
}

e2e_online *e2e_online_new(e2e_slot *slot, const e2e_online_opts *o, e2e_online_cb cb, void *user) {
  e2e_model *m = slot ? e2e_slot_get(slot) : NULL;
  const e2e_model_info *info = m ? e2e_model_describe(m) : NULL;
  if (!info || info->task != E2E_TASK_DETECT) {
    e2e_model_unref(m);
    nn_set_error("online training: needs a detection model");
    return NULL;
  }
  if (o->buffer_size < 1 || o->batch_size < 1 || o->batch_size > o->buffer_size || !(o->holdout >= 0 && o->holdout <= 0.9)) {
    e2e_model_unref(m);
    nn_set_error("online training: batch-size must be 1..buffer-size and holdout 0..0.9");
    return NULL;
  }
  e2e_online *t = calloc(1, sizeof *t);
  t->o = *o;
  t->freeze = o->train.freeze ? g_strdup(o->train.freeze) : NULL;
  t->o.train.freeze = t->freeze;
  t->checkpoint_dir = o->checkpoint_dir && *o->checkpoint_dir ? g_strdup(o->checkpoint_dir) : NULL;
  t->o.checkpoint_dir = t->checkpoint_dir;
  t->slot = e2e_slot_ref(slot);
  t->size = info->input_size, t->n_classes = info->n_labels;
  t->cb = cb, t->user = user;
  e2e_session *s = e2e_session_new(slot, 1);
  t->stretch = s && e2e_detect_stretches(s);
  e2e_session_free(s);
  pthread_mutex_init(&t->lock, NULL);
  pthread_cond_init(&t->cond, NULL);
  bool ok = true;
  if (t->checkpoint_dir && g_mkdir_with_parents(t->checkpoint_dir, 0755) != 0) {
    nn_set_error("online training: cannot make checkpoint folder %s: %s", t->checkpoint_dir, strerror(errno));
    ok = false;
  }
  if (ok && t->checkpoint_dir) remove_partial_writes(t->checkpoint_dir);
  if (ok) ok = (t->trainer = e2e_trainer_new(m, &t->o.train)) != NULL;
  e2e_model_unref(m);
  /* a restart goes on with the optimizer state saved with the last publication */
  char *state = ok && t->checkpoint_dir ? g_build_filename(t->checkpoint_dir, "trainer.safetensors", NULL) : NULL;
  if (state && g_file_test(state, G_FILE_TEST_IS_REGULAR) && !e2e_trainer_load_state(t->trainer, state)) ok = false;
  g_free(state);
  if (ok) t->thread = g_thread_try_new("e2e-online", run, t, NULL);
  if (!ok || !t->thread) {
    if (ok) nn_set_error("online training: cannot start its thread");
    e2e_online_free(t);
    return NULL;
  }
  return t;
}

void e2e_online_free(e2e_online *t) {
  if (!t) return;
  pthread_mutex_lock(&t->lock);
  t->stop = true;
  pthread_cond_broadcast(&t->cond);
  pthread_mutex_unlock(&t->lock);
  if (t->thread) g_thread_join(t->thread);
  e2e_trainer_free(t->trainer);
  set_free(&t->train), set_free(&t->held);
  e2e_slot_unref(t->slot);
  pthread_mutex_destroy(&t->lock);
  pthread_cond_destroy(&t->cond);
  g_free(t->freeze), g_free(t->checkpoint_dir);
  free(t);
}

/* A box to train on: finite, not empty, inside the frame, of a known class. */
static bool box_ok(const e2e_online *t, const det_box *b, int w, int h) {
  return isfinite(b->x1) && isfinite(b->y1) && isfinite(b->x2) && isfinite(b->y2) && b->x2 > b->x1 && b->y2 > b->y1 &&
         b->x1 >= -0.5f && b->y1 >= -0.5f && b->x2 <= w + 0.5f && b->y2 <= h + 0.5f && b->cls >= 0 && b->cls < t->n_classes;
}

/* The frame scaled and its boxes mapped into the network input, as a sample; bad boxes counted. */
static bool make_sample(const e2e_online *t, const uint8_t *rgb, int w, int h, int stride, const det_box *boxes, int n,
                        int *bad, sample *s) {
  det_letterbox lb = t->stretch ? (det_letterbox){.scale = (float)t->size / (float)w, .scale_y = (float)t->size / (float)h,
                                                  .scaled_w = t->size, .scaled_h = t->size}
                                : e2e_detect_placement(w, h, t->size);
  float sy = lb.scale_y > 0 ? lb.scale_y : lb.scale;
  s->w = lb.scaled_w, s->h = lb.scaled_h, s->pad_x = (int)lb.pad_x, s->pad_y = (int)lb.pad_y;
  size_t bytes = (size_t)s->w * (size_t)s->h * 3;
  uint8_t *px = malloc(bytes);
  s->boxes = malloc(sizeof *s->boxes * (size_t)(n ? n : 1));
  if (!px || !s->boxes) {
    free(px);
    return false;
  }
  e2e_image_resize(rgb, w, h, stride, px, s->w, s->h);
  s->rgb = g_bytes_new_take(px, bytes);
  for (int i = 0; i < n; i++) {
    det_box b = boxes[i];
    if (!box_ok(t, &b, w, h)) {
      (*bad)++;
      continue;
    }
    s->boxes[s->n++] = (det_box){b.x1 * lb.scale + s->pad_x, b.y1 * sy + s->pad_y, b.x2 * lb.scale + s->pad_x,
                                 b.y2 * sy + s->pad_y, 1.0f, b.cls};
  }
  return true;
}

/* The place a new sample takes in ss: a free one, else the oldest sample already trained on (held-out
 * samples: the oldest), or -1 when every sample still waits for training. */
static int place_for(sample_set *ss, int cap, bool held, bool keep_uncertain) {
  if (ss->n < cap) return ss->n;
  int pick = -1;
  /* with uncertain samples preferred, a certain one goes first */
  for (int pass = keep_uncertain ? 0 : 1; pick < 0 && pass < 2; pass++)
    for (int i = 0; i < ss->n; i++)
      if ((held || ss->s[i].uses > 0) && (pass || !ss->s[i].uncertain) && (pick < 0 || ss->s[i].age < ss->s[pick].age))
        pick = i;
  return pick;
}

bool e2e_online_wait(e2e_online *t) {
  pthread_mutex_lock(&t->lock);
  while (!t->stop && !t->flushing) pthread_cond_wait(&t->cond, &t->lock);
  bool done = t->stop;
  pthread_mutex_unlock(&t->lock);
  return done;
}

void e2e_online_set_flushing(e2e_online *t, bool flushing) {
  pthread_mutex_lock(&t->lock);
  t->flushing = flushing;
  pthread_cond_broadcast(&t->cond);
  pthread_mutex_unlock(&t->lock);
}

static bool add(e2e_online *t, uint64_t key, const uint8_t *rgb, int w, int h, int stride, const det_box *boxes, int n,
                int *bad, bool uncertain);

bool e2e_online_add(e2e_online *t, uint64_t key, const uint8_t *rgb, int w, int h, int stride, const det_box *boxes,
                    int n, int *bad) {
  return add(t, key, rgb, w, h, stride, boxes, n, bad, false);
}

bool e2e_online_add_uncertain(e2e_online *t, uint64_t key, const uint8_t *rgb, int w, int h, int stride,
                              const det_box *boxes, int n, int *bad) {
  return add(t, key, rgb, w, h, stride, boxes, n, bad, true);
}

static bool add(e2e_online *t, uint64_t key, const uint8_t *rgb, int w, int h, int stride, const det_box *boxes, int n,
                int *bad, bool uncertain) {
  int ignored = 0;
  if (!bad) bad = &ignored;
  if (w < 1 || h < 1 || !rgb) return false;
  bool held = e2e_online_is_held_out(t, key);
  sample_set *ss = held ? &t->held : &t->train;
  /* a frame that will be dropped is not scaled first: that work would be on the stream's thread */
  pthread_mutex_lock(&t->lock);
  bool no_room = ss->s && t->o.leaky && place_for(ss, ss->cap, held, t->o.prefer_uncertain) < 0;
  if (no_room && !t->stop && !t->flushing) t->dropped++;
  pthread_mutex_unlock(&t->lock);
  if (no_room) {
    for (int i = 0; i < n; i++) *bad += !box_ok(t, &boxes[i], w, h); /* its labels are still checked */
    return false;
  }
  sample s = {0};
  if (!make_sample(t, rgb, w, h, stride, boxes, n, bad, &s)) {
    sample_clear(&s);
    return false;
  }
  pthread_mutex_lock(&t->lock);
  if (!ss->s) ss->cap = t->o.buffer_size, ss->s = calloc((size_t)ss->cap, sizeof *ss->s);
  int at = ss->s ? place_for(ss, ss->cap, held, t->o.prefer_uncertain) : -1;
  while (ss->s && at < 0 && !t->o.leaky && !t->stop && !t->flushing) {
    pthread_cond_wait(&t->cond, &t->lock);
    at = place_for(ss, ss->cap, held, t->o.prefer_uncertain);
  }
  bool kept = at >= 0 && !t->stop && !t->flushing;
  if (kept) {
    if (at == ss->n) ss->n++;
    else sample_clear(&ss->s[at]);
    s.age = t->arrivals++;
    s.uncertain = uncertain;
    ss->s[at] = s;
    pthread_cond_broadcast(&t->cond);
  } else if (!t->stop && !t->flushing) {
    t->dropped++;
  }
  pthread_mutex_unlock(&t->lock);
  if (!kept) sample_clear(&s);
  return kept;
}
