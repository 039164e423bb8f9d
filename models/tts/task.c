/* The synthesiser as a task model (e2e/model.h): open, copy, save; synthesis runs through e2e_tts_stream. */
#include <stdlib.h>
#include <string.h>

#include "../task.h"
#include "internal.h"

static tts_model *impl_new(void) {
  tts_model *m = calloc(1, sizeof *m);
  if (!m) nn_set_error("out of memory for a speech synthesis model");
  return m;
}

static void destroy(void *impl) {
  tts_free(impl);
  free(impl);
}

static void *load(const nn_st_file *f, const char *path) {
  tts_model *m = impl_new();
  if (m && tts_load_file(m, f, path)) return m;
  free(m);
  return NULL;
}

static void *copy(const void *impl, bool training) {
  (void)training;
  const tts_model *src = impl;
  tts_model *m = impl_new();
  if (!m || !tts_init(m, &src->cfg, &src->mel, 0)) {
    free(m);
    return NULL;
  }
  e2e_params_copy(&m->p, &src->p);
  m->model_id = e2e_params_hash(&m->p);
  return m;
}

static nn_params *params(void *impl) { return &((tts_model *)impl)->p; }

static void describe(void *impl, e2e_model_info *info) { info->id = ((tts_model *)impl)->model_id; }

static bool save(void *impl, const char *path, const nn_kv *meta, int n_meta) { return tts_save(impl, path, meta, n_meta); }

const e2e_task_ops e2e_tts_ops = {.task = E2E_TASK_TTS, .architecture = TTS_ARCH, .input_align = 1, .load = load,
                                  .copy = copy, .destroy = destroy, .params = params, .describe = describe,
                                  .save = save};

e2e_model *e2e_tts_model_new_tiny(uint64_t seed) {
  tts_config c = tts_config_default();
  c.embed = 16, c.text_dim = 16, c.dim = 16, c.audio_layers = 4, c.dec_layers = 3;
  e2e_mel_config mel = tts_mel_default();
  tts_model *m = impl_new();
  if (!m || !tts_init(m, &c, &mel, seed)) {
    free(m);
    return NULL;
  }
  return e2e_model_wrap(&e2e_tts_ops, m, NULL, "");
}
