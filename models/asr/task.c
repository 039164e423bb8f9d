/* The recogniser as a task model (e2e/model.h): open, copy, train on feature batches, and recognition of a
 * segment in a session. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"
#include "task.h"

static asr_model *impl_new(void) {
  asr_model *m = calloc(1, sizeof *m);
  if (!m) nn_set_error("out of memory for a speech model");
  return m;
}

static void destroy(void *impl) {
  asr_free(impl);
  free(impl);
}

static void *load(const nn_st_file *f, const char *path) {
  asr_model *m = impl_new();
  if (m && asr_load_file(m, f, path)) return m;
  free(m);
  return NULL;
}

static void *copy(const void *impl, bool training) {
  const asr_model *src = impl;
  asr_model *m = impl_new();
  if (!m || !asr_init(m, &src->cfg, &src->mel, 0)) {
    free(m);
    return NULL;
  }
  e2e_params_copy(&m->p, &src->p);
  m->model_id = e2e_params_hash(&m->p);
  return m;
}

static nn_params *params(void *impl) { return &((asr_model *)impl)->p; }

static void describe(void *impl, e2e_model_info *info) { info->id = ((asr_model *)impl)->model_id; }

static bool save(void *impl, const char *path, const nn_kv *meta, int n_meta) { return asr_save(impl, path, meta, n_meta); }

/* Three seconds of silence fill the arena at a typical segment's size. */
static bool warm_up(void *impl, int w, int h) {
  asr_model *m = impl;
  int64_t T = 300;
  nn_tensor *x = nn_zeros(NN_F32, 4, (int64_t[]){1, 1, m->cfg.n_mels, T});
  return x && asr_forward(m, x, &T, NULL) != NULL;
}

const e2e_task_ops e2e_asr_ops = {.task = E2E_TASK_ASR, .architecture = ASR_ARCH, .input_align = 4, .load = load,
                                  .copy = copy, .destroy = destroy, .params = params, .describe = describe,
                                  .save = save, .warm_up = warm_up};

e2e_model *e2e_asr_model_new(int hidden, int layers, uint64_t seed) {
  asr_config c = asr_config_default();
  c.hidden = hidden;
  c.layers = layers;
  e2e_mel_config mel = e2e_mel_default();
  asr_model *m = impl_new();
  if (!m || !asr_init(m, &c, &mel, seed)) {
    free(m);
    return NULL;
  }
  return e2e_model_wrap(&e2e_asr_ops, m, NULL, "");
}

void e2e_asr_result_clear(e2e_asr_result *r) {
  free(r->text);
  free(r->words);
  memset(r, 0, sizeof *r);
}

bool e2e_asr_session_mel(e2e_session *s, e2e_mel_config *out) {
  nn_scope scope;
  asr_model *m = e2e_session_enter(s, E2E_TASK_ASR, &scope);
  if (!m) return false;
  *out = m->mel;
  e2e_session_leave(s, &scope);
  return true;
}

/* Words of a decoded path, timed by the frames their characters were emitted at. */
static void path_to_result(const asr_path *p, double frame_s, e2e_asr_result *r) {
  r->text = malloc((size_t)p->n + 1);
  r->words = calloc((size_t)p->n / 2 + 1, sizeof *r->words);
  for (int i = 0; i < p->n; i++) r->text[i] = e2e_asr_char(p->label[i]);
  r->text[p->n] = '\0';
  double conf_sum = 0;
  for (int i = 0; i < p->n;) {
    if (p->label[i] == 1) {
      i++;
      continue;
    }
    int j = i;
    double pr = 0;
    while (j < p->n && p->label[j] != 1) pr += p->prob[j++];
    e2e_asr_word *w = &r->words[r->n_words++];
    int len = j - i < (int)sizeof w->word - 1 ? j - i : (int)sizeof w->word - 1;
    memcpy(w->word, r->text + i, (size_t)len);
    w->word[len] = '\0';
    w->start = p->frame[i] * frame_s;
    w->end = (p->frame[j - 1] + 1) * frame_s;
    w->confidence = (float)(pr / (j - i));
    conf_sum += w->confidence;
    i = j;
  }
  r->confidence = r->n_words ? (float)(conf_sum / r->n_words) : 1.0f;
}

bool e2e_asr_recognize(e2e_session *s, const float *log_mel, int64_t T, const e2e_asr_decode_opts *o,
                       e2e_asr_result *r) {
  memset(r, 0, sizeof *r);
  nn_scope scope;
  asr_model *m = e2e_session_enter(s, E2E_TASK_ASR, &scope);
  if (!m) return false;
  int M = m->cfg.n_mels;
  bool ok = true;
  r->frames = T;
  if (T < 8) { /* under 80 ms: nothing a word fits in */
    r->text = calloc(1, 1);
    r->confidence = 1.0f;
  } else {
    nn_tensor *x = nn_empty(NN_F32, 4, (int64_t[]){1, 1, M, T});
    float *norm = nn_arena_alloc(nn_arena_current(), sizeof(float) * (size_t)(T * M));
    ok = x && norm;
    if (ok) {
      memcpy(norm, log_mel, sizeof(float) * (size_t)(T * M));
      asr_normalize(norm, T, M);
      float *xd = nn_f32(x);
      for (int64_t t = 0; t < T; t++)
        for (int j = 0; j < M; j++) xd[j * T + t] = norm[t * M + j];
      int64_t il = 0;
      nn_tensor *lp = asr_forward(m, x, &T, &il);
      ok = lp != NULL;
      asr_path *path = malloc(sizeof *path);
      if (ok && path) {
        lp = nn_contiguous(lp);
        ok = asr_decode_path(nn_f32(lp), il, o, path);
        double frame_s = 4.0 * m->mel.hop / m->mel.sample_rate;
        if (ok) path_to_result(path, frame_s, r);
      }
      free(path);
    }
  }
  e2e_session_leave(s, &scope);
  return ok;
}
