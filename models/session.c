/* Inference sessions and trainers: where the engine state lives (arena, grad mode, thread budget), so
 * that nothing above models/ sets it. */
#include <glib.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "task.h"

/* A first arena chunk that holds a small model's step; arenas grow to what a call needs and keep it. */
#define ARENA_START_BYTES (4u << 20)

struct e2e_session {
  e2e_slot *slot;
  e2e_model *model; /* the version of the last call, referenced until the next one */
  uint64_t version;
  atomic_int threads;
  nn_arena *arena;
};

e2e_session *e2e_session_new(e2e_slot *slot, int threads) {
  e2e_session *s = slot ? calloc(1, sizeof *s) : NULL;
  if (s) s->arena = nn_arena_new(ARENA_START_BYTES);
  if (!s || !s->arena) {
    free(s);
    nn_set_error(slot ? "out of memory for a session" : "a session needs a model slot");
    return NULL;
  }
  s->slot = e2e_slot_ref(slot);
  s->model = e2e_slot_get_versioned(slot, &s->version);
  atomic_init(&s->threads, threads);
  return s;
}

void e2e_session_free(e2e_session *s) {
  if (!s) return;
  e2e_model_unref(s->model);
  e2e_slot_unref(s->slot);
  nn_arena_free(s->arena);
  free(s);
}

void e2e_session_set_threads(e2e_session *s, int threads) { atomic_store(&s->threads, threads); }

const e2e_model *e2e_session_model(e2e_session *s) { return s->model; }

void *e2e_session_enter(e2e_session *s, e2e_task task, nn_scope *scope) {
  if (e2e_slot_version(s->slot) != s->version) {
    e2e_model *m = e2e_slot_get_versioned(s->slot, &s->version);
    e2e_model_unref(s->model);
    s->model = m;
  }
  const e2e_model_info *info = e2e_model_describe(s->model);
  if ((int)task != E2E_TASK_ANY && info->task != task) {
    nn_set_error("this session runs a %s model (%s), not a %s model", e2e_task_name(info->task), info->path,
                 e2e_task_name(task));
    return NULL;
  }
  *scope = nn_scope_begin(&(nn_scope_opts){.arena = s->arena, .no_grad = true, .threads = atomic_load(&s->threads)});
  return e2e_model_impl(s->model);
}

void e2e_session_leave(e2e_session *s, nn_scope *scope) {
  nn_arena_reset(s->arena);
  nn_scope_end(scope);
}

double e2e_session_warm_up(e2e_session *s, int w, int h) {
  nn_scope scope;
  void *impl = e2e_session_enter(s, (e2e_task)E2E_TASK_ANY, &scope);
  if (!impl) return -1;
  const e2e_task_ops *ops = e2e_model_ops(s->model);
  gint64 t0 = g_get_monotonic_time();
  bool ok = !ops->warm_up || ops->warm_up(impl, w, h);
  double ms = (double)(g_get_monotonic_time() - t0) / 1000.0;
  e2e_session_leave(s, &scope);
  return ok ? ms : -1;
}

static bool batch_given(const e2e_batch *b, const char *what) {
  if (b && b->n > 0 && b->images) return true;
  nn_set_error("%s: an empty batch", what);
  return false;
}

bool e2e_session_evaluate(e2e_session *s, const e2e_batch *b, e2e_metric *out) {
  if (!batch_given(b, "evaluate")) return false;
  nn_scope scope;
  void *impl = e2e_session_enter(s, (e2e_task)E2E_TASK_ANY, &scope);
  if (!impl) return false;
  memset(out, 0, sizeof *out);
  bool ok = e2e_model_ops(s->model)->evaluate(impl, b, out);
  e2e_session_leave(s, &scope);
  return ok;
}

/* ------------------------------------------------------------------ trainers */

struct e2e_trainer {
  const e2e_task_ops *ops;
  void *impl; /* the trainer's own copy */
  nn_optim *opt;
  nn_arena *arena;
  nn_rng rng;
  int threads;
  float clip;
  int64_t steps;
};

/* Freezes every comma-separated prefix; false, naming it, when one matches nothing (a misspelt prefix
 * would quietly train everything). */
static bool freeze(nn_params *p, const char *list) {
  if (!list || !*list) return true;
  gchar **prefixes = g_strsplit(list, ",", -1);
  bool ok = true;
  for (gchar **q = prefixes; *q && ok; q++) {
    g_strstrip(*q);
    if (**q && nn_params_set_trainable(p, *q, false) == 0) {
      nn_set_error("freeze: no parameter name starts with \"%s\"", *q);
      ok = false;
    }
  }
  g_strfreev(prefixes);
  return ok;
}

e2e_trainer *e2e_trainer_new(const e2e_model *from, const e2e_train_opts *o) {
  e2e_trainer *t = calloc(1, sizeof *t);
  if (!t) {
    nn_set_error("out of memory for a trainer");
    return NULL;
  }
  t->ops = e2e_model_ops(from);
  t->impl = t->ops->copy(e2e_model_impl(from), true);
  t->arena = nn_arena_new(ARENA_START_BYTES);
  t->threads = o->threads;
  t->clip = o->clip_norm;
  nn_rng_seed(&t->rng, o->seed);
  if (t->impl && t->arena && freeze(t->ops->params(t->impl), o->freeze)) {
    nn_optim_config cfg = nn_optim_defaults(o->optimizer, o->lr);
    cfg.weight_decay = o->weight_decay;
    t->opt = nn_optim_new(t->ops->params(t->impl), cfg);
  }
  if (!t->opt) {
    e2e_trainer_free(t);
    return NULL;
  }
  return t;
}

void e2e_trainer_free(e2e_trainer *t) {
  if (!t) return;
  nn_optim_free(t->opt);
  if (t->impl) t->ops->destroy(t->impl);
  if (t->arena) nn_arena_free(t->arena);
  free(t);
}

bool e2e_trainer_step(e2e_trainer *t, const e2e_batch *b, e2e_metric *loss) {
  if (!batch_given(b, "train step")) return false;
  nn_scope scope = nn_scope_begin(&(nn_scope_opts){.arena = t->arena, .grad = true, .threads = t->threads});
  memset(loss, 0, sizeof *loss);
  nn_optim_zero_grad(t->opt);
  nn_tensor *l = t->ops->loss(t->impl, b, &t->rng, loss);
  bool ok = l && nn_backward(l);
  if (ok) {
    if (t->clip > 0) nn_clip_grad_norm(t->ops->params(t->impl), t->clip);
    nn_optim_step(t->opt);
    t->steps++;
  }
  nn_arena_reset(t->arena);
  nn_scope_end(&scope);
  return ok;
}

void e2e_trainer_set_lr(e2e_trainer *t, float lr) { t->opt->cfg.lr = lr; }
int64_t e2e_trainer_steps(const e2e_trainer *t) { return t->steps; }

bool e2e_trainer_save_state(const e2e_trainer *t, const char *path) {
  return nn_checkpoint_save(path, t->ops->params(t->impl), t->opt, NULL, 0);
}

bool e2e_trainer_load_state(e2e_trainer *t, const char *path) {
  if (!nn_checkpoint_load(path, t->ops->params(t->impl), t->opt)) return false;
  t->steps = t->opt->step;
  return true;
}

e2e_model *e2e_trainer_model(e2e_trainer *t) {
  void *copy = t->ops->copy(t->impl, false);
  return copy ? e2e_model_wrap(t->ops, copy, NULL, "") : NULL;
}
