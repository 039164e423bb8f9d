/* Optimizers (PyTorch's update rules), gradient clipping, LR schedules. */
#include "internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

nn_optim_config nn_optim_defaults(nn_optim_kind kind, float lr) {
  nn_optim_config c = {.kind = kind, .lr = lr, .beta1 = 0.9f, .beta2 = 0.999f, .alpha = 0.99f, .eps = 1e-8f};
  if (kind == NN_ADAGRAD) c.eps = 1e-10f;
  if (kind == NN_ADAMW) c.weight_decay = 0.01f;
  return c;
}

const char *nn_optim_kind_name(nn_optim_kind k) {
  static const char *names[] = {"sgd", "adagrad", "rmsprop", "adam", "adamw"};
  return (unsigned)k < 5 ? names[k] : "?";
}

/* State buffers exist from the start so that a checkpoint taken at step 0
 * has the same tensors as one taken later. */
nn_optim *nn_optim_new(nn_params *params, nn_optim_config cfg) {
  if (!(cfg.lr >= 0.0f) || !(cfg.eps >= 0.0f) || cfg.momentum < 0.0f || cfg.weight_decay < 0.0f) {
    nn_set_error("optim: lr, eps, momentum and weight_decay must be >= 0");
    return NULL;
  }
  if (cfg.nesterov && (cfg.kind != NN_SGD || cfg.momentum <= 0.0f)) {
    nn_set_error("optim: nesterov needs SGD with momentum > 0");
    return NULL;
  }
  nn_optim *o = calloc(1, sizeof *o);
  if (!o) return NULL;
  o->cfg = cfg;
  o->params = params;
  nn_params_init(&o->state);
  o->m = calloc((size_t)(params->n ? params->n : 1), sizeof *o->m);
  o->v = calloc((size_t)(params->n ? params->n : 1), sizeof *o->v);
  o->lr_scale = malloc(sizeof *o->lr_scale * (size_t)(params->n ? params->n : 1));
  if (!o->m || !o->v || !o->lr_scale) {
    nn_optim_free(o);
    return NULL;
  }
  for (int i = 0; i < params->n; i++) o->lr_scale[i] = 1.0f;
  bool need_m = (cfg.kind == NN_SGD && cfg.momentum > 0) || cfg.kind == NN_ADAM || cfg.kind == NN_ADAMW ||
                (cfg.kind == NN_RMSPROP && cfg.momentum > 0);
  bool need_v = cfg.kind != NN_SGD;
  for (int i = 0; i < params->n; i++) {
    nn_tensor *p = params->t[i];
    if (!p->requires_grad) continue;
    char name[300];
    if (need_m) {
      snprintf(name, sizeof name, "%s.m", params->names[i]);
      o->m[i] = nn_params_add(&o->state, name, nn_tensor_new(NN_F32, p->ndim, p->shape), false);
    }
    if (need_v) {
      snprintf(name, sizeof name, "%s.v", params->names[i]);
      o->v[i] = nn_params_add(&o->state, name, nn_tensor_new(NN_F32, p->ndim, p->shape), false);
    }
  }
  return o;
}

void nn_optim_free(nn_optim *o) {
  if (!o) return;
  nn_params_free(&o->state);
  free(o->m);
  free(o->v);
  free(o->lr_scale);
  free(o);
}

int nn_optim_set_lr_scale(nn_optim *o, const char *prefix, float scale) {
  if (!(scale >= 0.0f) || !prefix) return 0;
  size_t lp = strlen(prefix);
  int n = 0;
  for (int i = 0; i < o->params->n; i++) {
    const char *name = o->params->names[i];
    size_t ln = strlen(name);
    bool hit = prefix[0] == '.' ? ln >= lp && !strcmp(name + ln - lp, prefix) : !strncmp(name, prefix, lp);
    if (hit) o->lr_scale[i] = scale, n++;
  }
  return n;
}

void nn_optim_zero_grad(nn_optim *o) { nn_params_zero_grad(o->params); }

typedef struct {
  const nn_optim_config *c;
  float lr; /* cfg.lr times this parameter's scale */
  float *p, *m, *v;
  const float *g;
  float bc1, bc2;
  bool first;
} upd_ctx;

static void update_range(void *ctx, int64_t i0, int64_t i1) {
  upd_ctx *u = ctx;
  const nn_optim_config *c = u->c;
  float lr = u->lr, wd = c->weight_decay;
  for (int64_t i = i0; i < i1; i++) {
    float g = u->g[i];
    if (wd != 0.0f && c->kind != NN_ADAMW) g += wd * u->p[i];
    switch (c->kind) {
    case NN_SGD:
      if (c->momentum > 0) {
        u->m[i] = u->first ? g : c->momentum * u->m[i] + g;
        g = c->nesterov ? g + c->momentum * u->m[i] : u->m[i];
      }
      u->p[i] -= lr * g;
      break;
    case NN_ADAGRAD:
      u->v[i] += g * g;
      u->p[i] -= lr * g / (sqrtf(u->v[i]) + c->eps);
      break;
    case NN_RMSPROP: {
      u->v[i] = c->alpha * u->v[i] + (1 - c->alpha) * g * g;
      float d = g / (sqrtf(u->v[i]) + c->eps);
      if (c->momentum > 0) {
        u->m[i] = c->momentum * u->m[i] + d;
        d = u->m[i];
      }
      u->p[i] -= lr * d;
      break;
    }
    case NN_ADAM:
    case NN_ADAMW:
      if (c->kind == NN_ADAMW && wd != 0.0f) u->p[i] *= 1.0f - lr * wd;
      u->m[i] = c->beta1 * u->m[i] + (1 - c->beta1) * g;
      u->v[i] = c->beta2 * u->v[i] + (1 - c->beta2) * g * g;
      u->p[i] -= lr * (u->m[i] / u->bc1) / (sqrtf(u->v[i] / u->bc2) + c->eps);
      break;
    }
  }
}

void nn_optim_step(nn_optim *o) {
  o->step++;
  upd_ctx u = {.c = &o->cfg, .first = o->step == 1};
  u.bc1 = 1.0f - powf(o->cfg.beta1, (float)o->step);
  u.bc2 = 1.0f - powf(o->cfg.beta2, (float)o->step);
  for (int i = 0; i < o->params->n; i++) {
    nn_tensor *p = o->params->t[i];
    if (!p->requires_grad || !p->grad) continue;
    u.lr = o->cfg.lr * o->lr_scale[i];
    u.p = nn_f32(p);
    u.g = nn_f32(p->grad);
    u.m = o->m[i] ? nn_f32(o->m[i]) : NULL;
    u.v = o->v[i] ? nn_f32(o->v[i]) : NULL;
    nn_parallel_for(nn_numel(p), 1 << 14, update_range, &u);
  }
}

float nn_clip_grad_norm(nn_params *p, float max_norm) {
  double s = 0;
  for (int i = 0; i < p->n; i++) {
    nn_tensor *g = p->t[i]->grad;
    if (!p->t[i]->requires_grad || !g) continue;
    s += nn_lane_sum_sq(nn_f32(g), nn_numel(g));
  }
  float norm = (float)sqrt(s);
  if (norm > max_norm && norm > 0) {
    float k = max_norm / (norm + 1e-6f);
    for (int i = 0; i < p->n; i++) {
      nn_tensor *g = p->t[i]->grad;
      if (!p->t[i]->requires_grad || !g) continue;
      int64_t n = nn_numel(g);
      for (int64_t j = 0; j < n; j++) nn_f32(g)[j] *= k;
    }
  }
  return norm;
}

float nn_lr_at(const nn_lr_schedule *s, int64_t step) {
  if (s->warmup_steps > 0 && step < s->warmup_steps)
    return s->base_lr * (float)(step + 1) / (float)s->warmup_steps;
  int64_t t = step - s->warmup_steps;
  switch (s->kind) {
  case NN_LR_CONSTANT: return s->base_lr;
  case NN_LR_STEP: return s->step_size > 0 ? s->base_lr * powf(s->gamma, (float)(t / s->step_size)) : s->base_lr;
  case NN_LR_COSINE: {
    int64_t total = s->total_steps - s->warmup_steps;
    if (total <= 0) return s->min_lr;
    if (t > total) t = total;
    return s->min_lr + 0.5f * (s->base_lr - s->min_lr) * (1.0f + cosf((float)M_PI * (float)t / (float)total));
  }
  }
  return s->base_lr;
}
