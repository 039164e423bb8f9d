/* Opening, describing, saving and sharing task models: the generic half of e2e/model.h. A file's
 * "architecture" metadata picks the task; the task's table (task.h) does the rest. */
#include <glib.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "e2e/detect.h"
#include "e2e/import.h"
#include "task.h"

/* every architecture a file may name, and its task's table */
static const e2e_task_ops *const ARCHITECTURES[] = {&e2e_detect_ops, &e2e_detect_graph_ops, &e2e_codec_ops, &e2e_asr_ops,
                                                    &e2e_tts_ops};
static const char *const TASK_NAMES[E2E_TASK_COUNT] = {[E2E_TASK_DETECT] = "detect", [E2E_TASK_CODEC] = "codec",
                                                       [E2E_TASK_ASR] = "asr", [E2E_TASK_TTS] = "tts"};
static const char *const DEFAULT_MODELS[E2E_TASK_COUNT] = {[E2E_TASK_DETECT] = "detect/nanodet-coco.safetensors",
                                                           [E2E_TASK_CODEC] = "codec/e2ecodec.safetensors",
                                                           [E2E_TASK_ASR] = "asr/e2easr.safetensors",
                                                           [E2E_TASK_TTS] = "tts/e2etts.safetensors"};

struct e2e_model {
  atomic_int refs;
  const e2e_task_ops *ops;
  void *impl;
  e2e_model_info info;
  char *path;
  nn_kv *meta;
};

const char *e2e_task_name(e2e_task task) { return task >= 0 && task < E2E_TASK_COUNT ? TASK_NAMES[task] : "unknown"; }

const char *e2e_last_error(void) { return nn_last_error(); }

char *e2e_model_path(const char *rel) {
  const char *dirs[] = {g_getenv("E2E_MODEL_DIR"), E2E_MODEL_INSTALL_DIR, E2E_MODEL_SOURCE_DIR};
  for (guint i = 0; i < G_N_ELEMENTS(dirs); i++) {
    if (!dirs[i]) continue;
    char *p = g_strdup_printf("%s/%s", dirs[i], rel);
    if (g_file_test(p, G_FILE_TEST_IS_REGULAR)) {
      char *out = strdup(p);
      g_free(p);
      return out;
    }
    g_free(p);
  }
  char *p = g_strdup_printf("%s/%s", E2E_MODEL_INSTALL_DIR, rel), *out = strdup(p);
  g_free(p);
  return out;
}

char *e2e_default_model(e2e_task task) {
  return e2e_model_path(task >= 0 && task < E2E_TASK_COUNT ? DEFAULT_MODELS[task] : "");
}

bool e2e_device_check(const char *device) {
  nn_device dev;
  if (!device || !nn_device_parse(device, &dev)) {
    nn_set_error("unknown device \"%s\" (use cpu, or cuda)", device ? device : "(null)");
    return false;
  }
  if (dev == NN_CPU) return true;
  if (!nn_backend_get(NN_CUDA))
    nn_set_error("device=cuda: this build has no CUDA backend (it was built without nvcc); use device=cpu");
  else if (!nn_device_available(NN_CUDA))
    nn_set_error("device=cuda: this build has the CUDA backend, but no CUDA GPU is usable on this machine; use device=cpu");
  else
    nn_set_error("device=cuda: the CUDA backend in this build holds tensors only; the models' kernels run on the "
                 "CPU for now, so use device=cpu");
  return false;
}

e2e_model *e2e_model_wrap(const e2e_task_ops *ops, void *impl, const nn_st_file *f, const char *path) {
  int n_meta = f ? nn_st_meta_count(f) : 0;
  e2e_model *m = calloc(1, sizeof *m);
  nn_kv *meta = calloc((size_t)(n_meta ? n_meta : 1), sizeof *meta);
  char *own_path = strdup(path ? path : "");
  if (!m || !meta || !own_path) {
    free(m), free(meta), free(own_path);
    ops->destroy(impl);
    nn_set_error("out of memory for a model");
    return NULL;
  }
  m->meta = meta;
  m->path = own_path;
  for (int i = 0; i < n_meta; i++) {
    const char *key = NULL, *value = nn_st_meta_at(f, i, &key);
    m->meta[i] = (nn_kv){strdup(key), strdup(value)};
  }
  atomic_init(&m->refs, 1);
  m->ops = ops;
  m->impl = impl;
  m->info.task = ops->task;
  m->info.architecture = ops->architecture;
  m->info.path = m->path;
  m->info.input_align = ops->input_align;
  m->info.n_meta = n_meta;
  m->info.meta = m->meta;
  m->info.n_params = nn_params_numel(ops->params(impl), true);
  ops->describe(impl, &m->info);
  return m;
}

/* A model in another framework's format, imported as it is opened: what a graph needs beside its ops
 * (a detector's head, labels, normalisation) must then be in the file's own metadata (ONNX
 * metadata_props), else the opener names what is missing. */
static e2e_model *open_imported(const char *path, int task) {
  nn_graph g;
  nn_kv *meta = NULL;
  int n_meta = 0;
  bool onnx = g_str_has_suffix(path, ".onnx");
  if (!(onnx ? e2e_import_onnx_described(path, 0, &g, &meta, &n_meta) : e2e_import_tfjs(path, 0, &g))) return NULL;
  e2e_model *m = NULL;
  if (task != E2E_TASK_ANY && task != E2E_TASK_DETECT) {
    nn_set_error("%s: an imported graph is a detection model here, not a %s model", path, e2e_task_name((e2e_task)task));
    nn_graph_free(&g);
  } else {
    m = e2e_detect_graph_model(&g, meta, n_meta, path);
  }
  e2e_import_free_meta(meta, n_meta);
  return m;
}

/* A safetensors model file, opened: dispatched on its architecture. Closes f. */
static e2e_model *open_st(nn_st_file *f, const char *path, int task) {
  const char *arch = nn_st_meta(f, "architecture");
  const e2e_task_ops *ops = NULL;
  for (size_t a = 0; a < sizeof ARCHITECTURES / sizeof ARCHITECTURES[0] && !ops; a++)
    if (arch && !strcmp(arch, ARCHITECTURES[a]->architecture)) ops = ARCHITECTURES[a];
  e2e_model *m = NULL;
  if (!ops) {
    nn_set_error("%s: not a gst-e2e model (architecture \"%s\"; known: %s and %s for detect, %s for codec, %s for "
                 "asr, %s for tts)", path, arch ? arch : "none", e2e_detect_ops.architecture,
                 e2e_detect_graph_ops.architecture, e2e_codec_ops.architecture, e2e_asr_ops.architecture,
                 e2e_tts_ops.architecture);
  } else if (task != E2E_TASK_ANY && (int)ops->task != task) {
    nn_set_error("%s: a %s model (%s), not a %s model", path, e2e_task_name(ops->task), arch,
                 e2e_task_name((e2e_task)task));
  } else {
    void *impl = ops->load(f, path);
    if (impl) m = e2e_model_wrap(ops, impl, f, path);
  }
  nn_st_close(f);
  return m;
}

e2e_model *e2e_model_open(const char *path, int task) {
  if (!path || !*path) {
    nn_set_error("no model file given");
    return NULL;
  }
  if (g_str_has_suffix(path, ".onnx") || g_str_has_suffix(path, ".json")) return open_imported(path, task);
  nn_st_file *f = nn_st_open(path);
  if (!f) return NULL; /* the message names the file */
  return open_st(f, path, task);
}

e2e_model *e2e_model_open_memory(const void *data, size_t size, const char *name, int task) {
  nn_st_file *f = nn_st_open_memory(data, size, name);
  return f ? open_st(f, name, task) : NULL;
}

e2e_model *e2e_model_ref(e2e_model *m) {
  if (m) atomic_fetch_add(&m->refs, 1);
  return m;
}

void e2e_model_unref(e2e_model *m) {
  if (!m || atomic_fetch_sub(&m->refs, 1) != 1) return;
  m->ops->destroy(m->impl);
  for (int i = 0; i < m->info.n_meta; i++) free((char *)m->meta[i].key), free((char *)m->meta[i].value);
  free(m->meta);
  free(m->path);
  free(m);
}

const e2e_model_info *e2e_model_describe(const e2e_model *m) { return &m->info; }
const e2e_task_ops *e2e_model_ops(const e2e_model *m) { return m->ops; }
void *e2e_model_impl(const e2e_model *m) { return m->impl; }

bool e2e_model_save(const e2e_model *m, const char *path, const nn_kv *meta, int n_meta) {
  return m->ops->save(m->impl, path, meta, n_meta);
}

bool e2e_save_params(const char *path, const nn_params *p, const nn_kv *own, int n_own, const nn_kv *extra, int n_extra) {
  nn_kv *meta = calloc((size_t)(n_own + n_extra), sizeof *meta);
  if (!meta) {
    nn_set_error("%s: out of memory", path);
    return false;
  }
  memcpy(meta, own, sizeof *meta * (size_t)n_own);
  if (n_extra) memcpy(meta + n_own, extra, sizeof *meta * (size_t)n_extra);
  bool ok = nn_safetensors_save(path, p, meta, n_own + n_extra);
  free(meta);
  return ok;
}

uint32_t e2e_params_hash(const nn_params *p) {
  uint32_t h = 2166136261u;
  for (int i = 0; i < p->n; i++) {
    for (const char *s = p->names[i]; *s; s++) h = (h ^ (uint8_t)*s) * 16777619u;
    const uint8_t *b = nn_data(p->t[i]);
    size_t nb = (size_t)nn_numel(p->t[i]) * nn_dtype_size(p->t[i]->dtype);
    for (size_t k = 0; k < nb; k++) h = (h ^ b[k]) * 16777619u;
  }
  return h;
}

void e2e_params_copy(nn_params *dst, const nn_params *src) {
  for (int i = 0; i < dst->n && i < src->n; i++) {
    nn_tensor *t = dst->t[i];
    memcpy(nn_data(t), nn_data(src->t[i]), (size_t)nn_numel(t) * nn_dtype_size(t->dtype));
    t->requires_grad = src->t[i]->requires_grad;
  }
}
