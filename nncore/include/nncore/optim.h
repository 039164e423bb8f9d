/* Optimizers, gradient clipping and learning-rate schedules. */
#ifndef NNCORE_OPTIM_H
#define NNCORE_OPTIM_H

#include "nn.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum { NN_SGD, NN_ADAGRAD, NN_RMSPROP, NN_ADAM, NN_ADAMW } nn_optim_kind;

typedef struct {
  nn_optim_kind kind;
  float lr;
  float momentum;      /* SGD, RMSProp */
  bool nesterov;       /* SGD */
  float weight_decay;  /* L2 added to the gradient; decoupled for AdamW */
  float beta1, beta2;  /* Adam/AdamW */
  float alpha;         /* RMSProp smoothing */
  float eps;
} nn_optim_config;

/* PyTorch's defaults for each kind (lr included). */
nn_optim_config nn_optim_defaults(nn_optim_kind kind, float lr);

typedef struct nn_optim {
  nn_optim_config cfg;
  nn_params *params;      /* not owned */
  nn_params state;        /* owned: "<param>.m", "<param>.v" */
  nn_tensor **m, **v;     /* per parameter, NULL when unused */
  float *lr_scale;        /* per parameter, 1 unless set (PyTorch's parameter groups, in their simplest form) */
  int64_t step;
} nn_optim;

nn_optim *nn_optim_new(nn_params *params, nn_optim_config cfg);
void nn_optim_free(nn_optim *o);
/* One update of every trainable parameter with a gradient, at cfg.lr. */
void nn_optim_step(nn_optim *o);
void nn_optim_zero_grad(nn_optim *o);
/* Every parameter whose name starts with prefix (or ends with it, for a prefix that starts with
 * '.') learns at lr * scale (scale >= 0). Returns how many it matched. */
int nn_optim_set_lr_scale(nn_optim *o, const char *prefix, float scale);
const char *nn_optim_kind_name(nn_optim_kind k);

/* Scales all gradients so their global L2 norm is at most max_norm; returns the norm before. */
float nn_clip_grad_norm(nn_params *p, float max_norm);

typedef enum { NN_LR_CONSTANT, NN_LR_STEP, NN_LR_COSINE } nn_lr_kind;
typedef struct {
  nn_lr_kind kind;
  float base_lr, min_lr;
  int64_t warmup_steps;  /* linear warm-up from 0 */
  int64_t step_size;     /* NN_LR_STEP: multiply by gamma every step_size steps */
  float gamma;
  int64_t total_steps;   /* NN_LR_COSINE: length of the decay */
} nn_lr_schedule;
float nn_lr_at(const nn_lr_schedule *s, int64_t step);

#ifdef __cplusplus
}
#endif
#endif
