/* The task-model interface. Every task model (detection and the codec now; speech and imported graphs
 * later) is opened, described, run, trained, evaluated, saved and swapped the same way, and the elements,
 * the e2e tool, the benches and e2etrain all go through it. None of them touches nncore's engine state:
 * a session owns its arena, its no-grad scope and its thread budget.
 *
 * The rule that makes sharing safe: an opened model is never written again. Everything inference needs
 * (folded batch norms, packed filters) is built when it is opened, so any number of sessions on any
 * number of threads can run one model at once. Training works on a trainer's own copy; a trained
 * version becomes a new model that is published whole into a slot. A session picks the new version up at
 * the start of its next call; a call in flight finishes on the version it started with (models are
 * reference-counted), so inference never sees half of a swap. docs/architecture.md has the picture. */
#ifndef E2E_MODEL_H
#define E2E_MODEL_H

#include <stdbool.h>
#include <stdint.h>

#include "nncore/nncore.h"

typedef enum { E2E_TASK_DETECT, E2E_TASK_CODEC, E2E_TASK_ASR, E2E_TASK_TTS, E2E_TASK_COUNT } e2e_task;
#define E2E_TASK_ANY (-1)

/* "detect", "codec", "asr", "tts" */
const char *e2e_task_name(e2e_task task);
/* The message of this thread's last failure, in this library or in nncore below it. */
const char *e2e_last_error(void);

/* ---- where models are found ---- */

/* A shipped model: rel is relative to the models folder ("codec/e2ecodec.safetensors"). Looked up in
 * $E2E_MODEL_DIR, the install folder (share/gst-e2e/models), then the source tree. Returns a newly
 * allocated path (the install path when none exists, so that an error names where it was expected);
 * free() it. */
char *e2e_model_path(const char *rel);
/* The shipped default model of a task (newly allocated; free() it). */
char *e2e_default_model(e2e_task task);
#define E2E_DEFAULT_DEVICE "cpu"
/* True for a device a model can run on in this build ("cpu"); otherwise false with one message saying
 * why (unknown name; no CUDA backend compiled in; no GPU; the kernels not on the GPU yet). */
bool e2e_device_check(const char *device);

/* ---- a loaded model ---- */

typedef struct e2e_model e2e_model;

typedef struct {
  e2e_task task;
  const char *architecture;   /* as in the file's metadata ("e2e-centernet-v1") */
  const char *path;           /* where it was opened from; "" for a model made in memory */
  int n_labels;               /* detect: its classes; codec: 0 */
  const char *const *labels;
  int input_size;             /* detect: the square network input; codec: 0 (any picture size) */
  int input_align;            /* inputs are padded to a multiple of this inside the network */
  uint32_t id;                /* a hash of the weights (codec streams name the model they need) */
  int64_t n_params;           /* trainable parameters */
  int n_meta;                 /* the file's metadata, in file order (architecture, config, recipe, ...) */
  const nn_kv *meta;
} e2e_model_info;

/* Opens and validates a model file. task: the task the caller expects, or E2E_TASK_ANY. NULL with a
 * message naming the file in nn_last_error() when the file is missing, corrupt, of another task or of no
 * known architecture. The model starts with one reference. */
e2e_model *e2e_model_open(const char *path, int task);
/* The same from a safetensors file's bytes in memory (name stands for the file in messages). */
e2e_model *e2e_model_open_memory(const void *data, size_t size, const char *name, int task);
e2e_model *e2e_model_ref(e2e_model *m);
void e2e_model_unref(e2e_model *m);
const e2e_model_info *e2e_model_describe(const e2e_model *m);
/* Writes the model (weights, architecture, config and meta) atomically: a reader never sees half a file. */
bool e2e_model_save(const e2e_model *m, const char *path, const nn_kv *meta, int n_meta);

/* ---- slots: where a model version is published, and the process-wide registry of named ones ---- */

typedef struct e2e_slot e2e_slot;

/* A private slot holding m (it takes a reference of its own: the caller keeps theirs). */
e2e_slot *e2e_slot_new(e2e_model *m);
/* The slot called name, shared by everyone in the process who opens that name: the first open loads
 * path (NULL: the task's default model), later ones get the same slot and the model it holds now (their
 * path is not loaded; compare e2e_slot_path). With name NULL (or ""), a private slot loaded from path.
 * NULL with a message when loading fails or the name holds a model of another task. */
e2e_slot *e2e_slot_open(const char *name, const char *path, int task);
e2e_slot *e2e_slot_ref(e2e_slot *s);
/* The last reference of a named slot takes it out of the registry. */
void e2e_slot_unref(e2e_slot *s);
/* The current version, with a reference (unref it when done). */
e2e_model *e2e_slot_get(e2e_slot *s);
/* Publishes m as the current version (the slot takes a reference of its own): sessions use it from their
 * next call on.
 * Refused, with a message, for a model of another task. */
bool e2e_slot_publish(e2e_slot *s, e2e_model *m);
/* Counts publications (1 for the first model): a session compares it to see whether it is up to date. */
uint64_t e2e_slot_version(const e2e_slot *s);
const char *e2e_slot_name(const e2e_slot *s); /* NULL for a private slot */
const char *e2e_slot_path(const e2e_slot *s); /* the file first loaded into it ("" if none) */

/* ---- inference sessions ---- */

typedef struct e2e_session e2e_session;

/* A session runs one caller's inference on a slot's current model: one thread at a time per session,
 * as many sessions per model as wanted. threads: the most threads its calls' kernels and GEMMs use (0:
 * the process's count, NNCORE_NUM_THREADS or all cores); two sessions keep their own. Takes a reference
 * on the slot. */
e2e_session *e2e_session_new(e2e_slot *slot, int threads);
void e2e_session_free(e2e_session *s);
void e2e_session_set_threads(e2e_session *s, int threads);
/* The model the session's last call ran on (before any call: the slot's current one); valid until the
 * session's next call. Describe it to label that call's results. */
const e2e_model *e2e_session_model(e2e_session *s);
/* One inference on a blank input of w x h (detect: the square input, w = 0 for the model's own size),
 * to fill the arena before live frames arrive. Returns its milliseconds, or -1 with a message. */
double e2e_session_warm_up(e2e_session *s, int w, int h);

/* ---- training and evaluation on batches ---- */

struct det_box;
/* One batch, in the task's network terms:
 *   detect: images [n, 3, S, S], letterboxed and normalised (e2e/image.h), with counts[i] boxes[i] in
 *           network-input pixels;
 *   codec:  images [n, 3, H, W] with values 0..1, H and W multiples of 64, coded at quality[i]. */
typedef struct {
  int n;
  nn_tensor *images;
  const struct det_box *const *boxes;
  const int *counts;
  const int *quality;
} e2e_batch;

#define E2E_MAX_PARTS 4
/* A loss or a metric with the parts it is made of. */
typedef struct {
  const char *name;          /* "focal+L1", "rd-loss", "mAP@0.5" */
  double value;
  bool higher_is_better;
  int n_parts;
  const char *part_names[E2E_MAX_PARTS];
  double parts[E2E_MAX_PARTS];
} e2e_metric;

/* The task's held-out metric on a batch (detect: mAP@0.5 on its boxes; codec: bits per pixel + lambda *
 * 255^2 * MSE of the real streams, per patch at its level), with the session's model. */
bool e2e_session_evaluate(e2e_session *s, const e2e_batch *b, e2e_metric *out);

typedef struct {
  nn_optim_kind optimizer;   /* NN_ADAMW, NN_SGD, ... */
  float lr, weight_decay;
  float clip_norm;           /* gradient norm clipping (0: none) */
  const char *freeze;        /* comma-separated parameter-name prefixes kept fixed (transfer learning) */
  int threads;               /* the trainer's thread budget (0: the process's count) */
  uint64_t seed;             /* for the task's training noise */
} e2e_train_opts;

typedef struct e2e_trainer e2e_trainer;

/* A trainer works on its own copy of from's weights (from itself is never written). NULL with a message
 * when a freeze prefix matches no parameter. */
e2e_trainer *e2e_trainer_new(const e2e_model *from, const e2e_train_opts *o);
void e2e_trainer_free(e2e_trainer *t);
/* One optimizer step on a batch; the loss and its parts in *loss. False with a message on bad input or a
 * failed op (a non-finite loss is returned, not refused: the caller decides). */
bool e2e_trainer_step(e2e_trainer *t, const e2e_batch *b, e2e_metric *loss);
void e2e_trainer_set_lr(e2e_trainer *t, float lr);
int64_t e2e_trainer_steps(const e2e_trainer *t);
/* The trainer's weights and optimizer state (moments, step), written atomically, and read back into a
 * trainer made from the same kind of model: a restarted training goes on where it stopped. */
bool e2e_trainer_save_state(const e2e_trainer *t, const char *path);
bool e2e_trainer_load_state(e2e_trainer *t, const char *path);
/* The trainer's weights now, as a new model (one reference) ready for inference, saving and publishing. */
e2e_model *e2e_trainer_model(e2e_trainer *t);

#endif
