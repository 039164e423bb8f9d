/* Online training: a model trained on samples as they arrive from a stream, on a thread of its own, and
 * published into a slot (e2e/model.h) only when it beats the live version on held-out samples.
 *
 * The rules it keeps: adding a sample never waits for training unless the caller asked for that
 * (leaky = false: nothing is lost); a held-out sample (chosen by a hash of its key, so the same frames
 * are held out after a restart) is never trained on; a new version reaches the slot only after it has
 * been validated, and then atomically (readers see the old or the new model, never a mix); every
 * published version is written atomically to the checkpoint folder, if one is given, with the trainer's
 * optimizer state (trainer.safetensors), which a new e2e_online on that folder goes on from.
 *
 * Detection only for now: samples are RGB frames with boxes in frame pixels. */
#ifndef E2E_ONLINE_H
#define E2E_ONLINE_H

#include <stdbool.h>
#include <stdint.h>

#include "e2e/detect.h"
#include "e2e/model.h"

typedef struct {
  int buffer_size;        /* samples kept for replay (training; as many again held out) */
  bool leaky;             /* buffer full of samples not yet trained on: drop the new one (true) or wait (false) */
  double holdout;         /* fraction of samples held out for validation, 0..0.9 */
  int batch_size;
  int publish_every;      /* steps between validations (and one after the last step); with holdout 0 every
                           * version is published unvalidated */
  double min_improvement; /* mAP@0.5 a new version must gain over the live one to be published */
  int64_t max_steps;      /* 0: train until stopped; else the learning rate warms up, then follows a cosine to 2 % */
  bool augment;           /* train on det_augment's copies (flips, scale, shift, colour, mosaics), not the frames as they are */
  bool prefer_uncertain;  /* active learning: samples added as uncertain are trained on first, drawn more often and kept longer */
  const char *checkpoint_dir; /* NULL or "": no files */
  e2e_train_opts train;   /* optimizer, learning rate, frozen prefixes, thread budget */
} e2e_online_opts;

e2e_online_opts e2e_online_defaults(void);

typedef enum {
  E2E_ONLINE_PROGRESS,  /* after each step */
  E2E_ONLINE_PUBLISHED, /* a validated version went live */
  E2E_ONLINE_REJECTED,  /* a version did not beat the live one (rollback: the live one stays) */
  E2E_ONLINE_FINISHED,  /* max_steps reached */
  E2E_ONLINE_ERROR,     /* training stopped; message says why */
} e2e_online_event_kind;

typedef struct {
  e2e_online_event_kind kind;
  int64_t step;
  double loss;
  double samples_per_s;  /* training samples per second over the last steps */
  int batch_uncertain;   /* of this step's frames, how many were marked uncertain (progress events) */
  int buffered, held_out; /* samples in the replay buffer and in the held-out set */
  uint64_t dropped;      /* samples dropped because the trainer was behind (leaky) */
  uint64_t version;      /* the slot's version after a publication */
  double metric_live, metric_new; /* mAP@0.5 on the held-out samples: live version and candidate */
  const char *checkpoint; /* the file written, or NULL */
  const char *message;   /* why a version was rejected, or the error */
} e2e_online_event;

/* Called on the training thread. */
typedef void (*e2e_online_cb)(const e2e_online_event *ev, void *user);

typedef struct e2e_online e2e_online;

/* Starts training the slot's current model (a detector); takes a reference on the slot. NULL with a
 * message on bad options (a freeze prefix matching nothing, a checkpoint folder that cannot be made). */
e2e_online *e2e_online_new(e2e_slot *slot, const e2e_online_opts *o, e2e_online_cb cb, void *user);
/* Adds a frame (packed RGB) with its boxes in frame pixels; key (a frame number or timestamp) decides
 * whether it is held out. Boxes that are not finite, empty, outside the frame or of an unknown class are
 * skipped and counted in *bad. Returns false when the sample was dropped (leaky, trainer behind) or
 * training has stopped. */
bool e2e_online_add(e2e_online *t, uint64_t key, const uint8_t *rgb, int w, int h, int stride, const det_box *boxes,
                    int n, int *bad);
/* The same for a frame marked uncertain (e2edetect's uncertainty band): with prefer_uncertain it is
 * trained on before the others, drawn for half the random picks and replaced last. */
bool e2e_online_add_uncertain(e2e_online *t, uint64_t key, const uint8_t *rgb, int w, int h, int stride,
                              const det_box *boxes, int n, int *bad);
/* Waits until training has stopped (max_steps reached, an error, or freed); false when flushing ended the
 * wait first. A sink holds its end of stream here, so a file's pipeline ends with the training. */
bool e2e_online_wait(e2e_online *t);
/* While flushing, e2e_online_add and e2e_online_wait return false at once: a sink's unlock. */
void e2e_online_set_flushing(e2e_online *t, bool flushing);
/* Whether key's sample would be held out. */
bool e2e_online_is_held_out(const e2e_online *t, uint64_t key);
/* Stops the thread (after its current step) and frees everything. */
void e2e_online_free(e2e_online *t);

/* The checkpoint a restart resumes from in dir ("latest.safetensors"), as a path to g_free, or NULL. */
char *e2e_online_latest(const char *dir);

#endif
