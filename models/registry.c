/* Slots and the process-wide registry of named ones. A slot's model pointer changes only under its
 * lock, and a reader takes its own reference under that lock: a swap can never free a model a session
 * is still running (the session's reference keeps it until that session's next call). The locks are
 * POSIX mutexes, not GMutex: GLib's futex-based ones are invisible to ThreadSanitizer. */
#include <glib.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "task.h"

struct e2e_slot {
  atomic_int refs;
  pthread_mutex_t lock;
  e2e_model *model;
  _Atomic uint64_t version;
  char *name, *path;
};

static pthread_mutex_t registry_lock = PTHREAD_MUTEX_INITIALIZER;
static GHashTable *registry; /* name -> slot, holding no reference: a slot leaves it with its last one */

static e2e_slot *slot_with(e2e_model *m, const char *name, const char *path) {
  e2e_slot *s = m ? calloc(1, sizeof *s) : NULL;
  if (!s) {
    if (m) nn_set_error("out of memory for a model slot");
    return NULL;
  }
  atomic_init(&s->refs, 1);
  pthread_mutex_init(&s->lock, NULL);
  s->model = e2e_model_ref(m);
  atomic_init(&s->version, 1);
  s->name = name ? strdup(name) : NULL;
  s->path = strdup(path ? path : "");
  return s;
}

e2e_slot *e2e_slot_new(e2e_model *m) { return m ? slot_with(m, NULL, e2e_model_describe(m)->path) : NULL; }

/* A new slot loaded from path (NULL: the task's default). */
static e2e_slot *load_slot(const char *name, const char *path, int task) {
  char *fallback = NULL;
  if (!path || !*path) {
    if (task == E2E_TASK_ANY) {
      nn_set_error("no model file given");
      return NULL;
    }
    path = fallback = e2e_default_model((e2e_task)task);
  }
  e2e_model *m = e2e_model_open(path, task);
  e2e_slot *s = slot_with(m, name, path);
  e2e_model_unref(m);
  free(fallback);
  return s;
}

e2e_slot *e2e_slot_open(const char *name, const char *path, int task) {
  if (!name || !*name) return load_slot(NULL, path, task);
  /* loading under the registry's lock: two elements opening one name at once load it once */
  pthread_mutex_lock(&registry_lock);
  if (!registry) registry = g_hash_table_new(g_str_hash, g_str_equal);
  e2e_slot *s = g_hash_table_lookup(registry, name);
  if (s) {
    e2e_model *m = e2e_slot_get(s);
    int held = (int)e2e_model_describe(m)->task;
    e2e_model_unref(m);
    if (task != E2E_TASK_ANY && held != task) {
      nn_set_error("model-name \"%s\" already holds a %s model, not a %s model", name, e2e_task_name((e2e_task)held),
                   e2e_task_name((e2e_task)task));
      s = NULL;
    } else {
      atomic_fetch_add(&s->refs, 1);
    }
  } else if ((s = load_slot(name, path, task))) {
    g_hash_table_insert(registry, s->name, s);
  }
  pthread_mutex_unlock(&registry_lock);
  return s;
}

e2e_slot *e2e_slot_ref(e2e_slot *s) {
  if (s) atomic_fetch_add(&s->refs, 1);
  return s;
}

void e2e_slot_unref(e2e_slot *s) {
  if (!s) return;
  /* a named slot drops to zero under the registry's lock, so a concurrent open cannot revive it */
  if (s->name) pthread_mutex_lock(&registry_lock);
  bool last = atomic_fetch_sub(&s->refs, 1) == 1;
  if (last && s->name) g_hash_table_remove(registry, s->name);
  if (s->name) pthread_mutex_unlock(&registry_lock);
  if (!last) return;
  e2e_model_unref(s->model);
  pthread_mutex_destroy(&s->lock);
  free(s->name);
  free(s->path);
  free(s);
}

e2e_model *e2e_slot_get(e2e_slot *s) {
  pthread_mutex_lock(&s->lock);
  e2e_model *m = e2e_model_ref(s->model);
  pthread_mutex_unlock(&s->lock);
  return m;
}

/* The current model (referenced) and its version, read together. */
e2e_model *e2e_slot_get_versioned(e2e_slot *s, uint64_t *version) {
  pthread_mutex_lock(&s->lock);
  e2e_model *m = e2e_model_ref(s->model);
  *version = atomic_load(&s->version);
  pthread_mutex_unlock(&s->lock);
  return m;
}

bool e2e_slot_publish(e2e_slot *s, e2e_model *m) {
  if (!m) {
    nn_set_error("no model to publish");
    return false;
  }
  pthread_mutex_lock(&s->lock);
  e2e_model *old = s->model;
  bool ok = e2e_model_describe(m)->task == e2e_model_describe(old)->task;
  if (ok) {
    s->model = e2e_model_ref(m);
    atomic_fetch_add(&s->version, 1);
  } else {
    nn_set_error("cannot publish a %s model where a %s model runs", e2e_task_name(e2e_model_describe(m)->task),
                 e2e_task_name(e2e_model_describe(old)->task));
  }
  pthread_mutex_unlock(&s->lock);
  if (ok) e2e_model_unref(old); /* freed here unless a session still runs it */
  return ok;
}

uint64_t e2e_slot_version(const e2e_slot *s) { return atomic_load(&((e2e_slot *)s)->version); }
const char *e2e_slot_name(const e2e_slot *s) { return s->name; }
const char *e2e_slot_path(const e2e_slot *s) { return s->path; }
