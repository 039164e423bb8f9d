/* How a task plugs into the task-model interface (e2e/model.h): one table of functions per task,
 * registered in model.c. Private to models/. */
#ifndef E2E_TASK_H
#define E2E_TASK_H

#include "e2e/model.h"

typedef struct e2e_task_ops {
  e2e_task task;
  const char *architecture; /* the metadata value that marks the task's files */
  int input_align;
  /* A validated model from an opened file, ready for inference; NULL with a message naming path. */
  void *(*load)(const nn_st_file *f, const char *path);
  /* A deep copy of the weights; ready for inference unless `training` (a trainer's own copy). */
  void *(*copy)(const void *impl, bool training);
  void (*destroy)(void *impl);
  nn_params *(*params)(void *impl);
  /* Labels (kept by the model while it lives), input size, weights id. */
  void (*describe)(void *impl, e2e_model_info *info);
  bool (*save)(void *impl, const char *path, const nn_kv *meta, int n_meta);
  /* One blank inference (in the caller's scope); false with a message. May be NULL. */
  bool (*warm_up)(void *impl, int w, int h);
  /* The training loss of a batch, recorded for backward; its value and parts in *loss. */
  nn_tensor *(*loss)(void *impl, const e2e_batch *b, nn_rng *rng, e2e_metric *loss);
  bool (*evaluate)(void *impl, const e2e_batch *b, e2e_metric *out);
} e2e_task_ops;

extern const e2e_task_ops e2e_detect_ops, e2e_detect_graph_ops, e2e_codec_ops, e2e_asr_ops, e2e_tts_ops;

/* A model around a task's implementation (takes it over): f, when given, supplies path and metadata. */
e2e_model *e2e_model_wrap(const e2e_task_ops *ops, void *impl, const nn_st_file *f, const char *path);
const e2e_task_ops *e2e_model_ops(const e2e_model *m);
void *e2e_model_impl(const e2e_model *m);

/* FNV-1a over the names and bytes of every tensor, in list order: a model's weights id (the codec's
 * streams carry it, so it must never change for the same weights). */
uint32_t e2e_params_hash(const nn_params *p);
/* Copies every tensor (and its trainable flag) of src into dst, a list built for the same config. */
void e2e_params_copy(nn_params *dst, const nn_params *src);

/* Saves p atomically with the task's own metadata (architecture, config, ...) followed by the caller's. */
bool e2e_save_params(const char *path, const nn_params *p, const nn_kv *own, int n_own, const nn_kv *extra, int n_extra);

/* The slot's current model (referenced) and its version, read together. */
e2e_model *e2e_slot_get_versioned(e2e_slot *s, uint64_t *version);

/* A task's call inside a session: enter refreshes the session's model from its slot, checks the task
 * and opens the session's scope (its arena, no grad, its thread budget); leave empties the arena and
 * closes the scope. enter returns the model's implementation, or NULL with a message. */
void *e2e_session_enter(e2e_session *s, e2e_task task, nn_scope *scope);
void e2e_session_leave(e2e_session *s, nn_scope *scope);

#endif
