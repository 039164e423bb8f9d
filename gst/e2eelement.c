/* The shared model properties of the e2e elements (see e2eelement.h). */
#include "e2eelement.h"

#include <string.h>
#include <unistd.h>

static guint64 physical_memory_mb(void) {
  long pages = sysconf(_SC_PHYS_PAGES), size = sysconf(_SC_PAGESIZE);
  return pages > 0 && size > 0 ? (guint64)pages * (guint64)size / (1024 * 1024) : 0;
}

static const gchar *const TASK_WHAT[E2E_TASK_COUNT] = {[E2E_TASK_DETECT] = "detection", [E2E_TASK_CODEC] = "codec",
                                                       [E2E_TASK_ASR] = "speech recognition",
                                                       [E2E_TASK_TTS] = "speech synthesis"};

void e2e_element_install_properties(GObjectClass *oc, e2e_task task, E2eElementFlags flags) {
  GParamFlags rw = G_PARAM_READWRITE | G_PARAM_STATIC_STRINGS;
  char *shipped = e2e_default_model(task);
  const gchar *model_blurb =
      task == E2E_TASK_DETECT
          ? "Detection model: our safetensors, or an ONNX file / TF.js model.json whose metadata names its head, labels "
            "and normalisation (docs/import.md). Default: the shipped COCO NanoDet. Changing it while playing loads and "
            "validates the new file first; on failure the current model stays and a warning is posted"
      : task == E2E_TASK_TTS
          ? "Speech synthesis model (safetensors, e2e train tts). Default: the shipped e2etts voice"
      : task == E2E_TASK_ASR
          ? "Speech recognition model (safetensors, e2e train asr). Default: the shipped e2easr model. Changing it "
            "while playing loads and validates the new file first; on failure the current model stays"
          : "Codec model (safetensors). Default: the shipped e2ecodec model. A decoder needs its encoder's model";
  g_object_class_install_property(oc, E2E_PROP_MODEL, g_param_spec_string("model", "Model", model_blurb, shipped,
      rw | (flags & E2E_ELEMENT_SWAP_WHILE_PLAYING ? GST_PARAM_MUTABLE_PLAYING : GST_PARAM_MUTABLE_READY)));
  free(shipped);
  g_object_class_install_property(oc, E2E_PROP_MODEL_NAME, g_param_spec_string("model-name", "Model name",
      "Share the loaded model with every element in this process given the same name: one copy in memory, and a "
      "version published to it (a model swap, e2etrain) reaches all of them. Empty: this element's own copy",
      NULL, rw | GST_PARAM_MUTABLE_READY));
  g_object_class_install_property(oc, E2E_PROP_DEVICE, g_param_spec_string("device", "Device",
      "Where the network runs: cpu (cuda is refused with a message saying what this build lacks)", E2E_DEFAULT_DEVICE,
      rw | GST_PARAM_MUTABLE_READY));
  g_object_class_install_property(oc, E2E_PROP_NUM_THREADS, g_param_spec_uint("num-threads", "Threads",
      "Threads for this element's network: its own budget, not a process-wide setting (0: NNCORE_NUM_THREADS or "
      "all cores; at most 64 are used)", 0, 256, 0, rw | GST_PARAM_MUTABLE_PLAYING));
  if (flags & E2E_ELEMENT_MAX_MEMORY)
    g_object_class_install_property(oc, E2E_PROP_MAX_MEMORY, g_param_spec_uint("max-memory", "Most working memory",
        "MiB of working memory one picture may take (0: this machine's physical memory). Encoding takes about 340 "
        "bytes per pixel (2300 with refine-steps), decoding about 200; the encoder refuses a picture that needs more "
        "with an error, the decoder drops it (or a stream that claims such a size) with a warning. More than the "
        "machine's memory is refused with a warning",
        0, G_MAXUINT, 0, rw | GST_PARAM_MUTABLE_PLAYING));
}

void e2e_element_model_init(E2eElementModel *m, e2e_task task, E2eElementFlags flags) {
  memset(m, 0, sizeof *m);
  g_mutex_init(&m->lock);
  m->task = task;
  m->flags = flags;
  char *shipped = e2e_default_model(task);
  m->model = g_strdup(shipped);
  free(shipped);
  m->device = g_strdup(E2E_DEFAULT_DEVICE);
}

void e2e_element_model_clear(E2eElementModel *m) {
  e2e_element_close(m);
  g_free(m->model);
  g_free(m->model_name);
  g_free(m->device);
  g_mutex_clear(&m->lock);
}

/* A new model while running: loaded and checked first, then swapped in; the current one stays on failure. */
static void swap_model(GstElement *e, E2eElementModel *m, e2e_slot *slot, const gchar *path) {
  e2e_model *next = e2e_model_open(path, m->task);
  if (!next || !e2e_slot_publish(slot, next)) {
    GST_ELEMENT_WARNING(e, RESOURCE, READ, ("Could not load %s model \"%s\"; keeping the current model.",
                                            TASK_WHAT[m->task], path), ("%s", e2e_last_error()));
  } else {
    g_mutex_lock(&m->lock);
    g_free(m->model);
    m->model = g_strdup(path);
    m->model_given = TRUE;
    g_mutex_unlock(&m->lock);
    GST_INFO_OBJECT(e, "switched to model %s", path);
  }
  e2e_model_unref(next);
}

gboolean e2e_element_set_property(GstElement *e, E2eElementModel *m, guint id, const GValue *v) {
  if (id < E2E_PROP_FIRST || id >= E2E_PROP_LAST) return FALSE;
  g_mutex_lock(&m->lock);
  switch (id) {
  case E2E_PROP_MODEL: {
    const gchar *path = g_value_get_string(v);
    char *shipped = path ? NULL : e2e_default_model(m->task);
    e2e_slot *slot = m->flags & E2E_ELEMENT_SWAP_WHILE_PLAYING ? e2e_slot_ref(m->slot) : NULL;
    if (slot) {
      g_mutex_unlock(&m->lock); /* loading takes a while; the settings stay readable meanwhile */
      swap_model(e, m, slot, path ? path : shipped);
      e2e_slot_unref(slot);
      free(shipped);
      return TRUE;
    }
    g_free(m->model);
    m->model = g_strdup(path ? path : shipped);
    m->model_given = path != NULL;
    free(shipped);
    break;
  }
  case E2E_PROP_MODEL_NAME: g_free(m->model_name); m->model_name = g_value_dup_string(v); break;
  case E2E_PROP_DEVICE: g_free(m->device); m->device = g_value_dup_string(v); break;
  case E2E_PROP_NUM_THREADS:
    m->num_threads = g_value_get_uint(v);
    if (m->session) e2e_session_set_threads(m->session, (int)m->num_threads);
    break;
  case E2E_PROP_MAX_MEMORY: {
    /* more than the machine has is no limit at all: a stream claiming a giant picture would meet the
     * out-of-memory killer instead of a message */
    guint64 mb = g_value_get_uint(v), have = physical_memory_mb();
    if (have && mb > have)
      g_warning("%s: max-memory %" G_GUINT64_FORMAT " MiB is more than this machine's %" G_GUINT64_FORMAT
                " MiB of memory; keeping %u (0 means all of it)", GST_ELEMENT_NAME(e), mb, have, m->max_memory_mb);
    else
      m->max_memory_mb = (guint)mb;
    break;
  }
  default: break;
  }
  g_mutex_unlock(&m->lock);
  return TRUE;
}

gboolean e2e_element_get_property(E2eElementModel *m, guint id, GValue *v) {
  if (id < E2E_PROP_FIRST || id >= E2E_PROP_LAST) return FALSE;
  g_mutex_lock(&m->lock);
  switch (id) {
  case E2E_PROP_MODEL: g_value_set_string(v, m->model); break;
  case E2E_PROP_MODEL_NAME: g_value_set_string(v, m->model_name); break;
  case E2E_PROP_DEVICE: g_value_set_string(v, m->device); break;
  case E2E_PROP_NUM_THREADS: g_value_set_uint(v, m->num_threads); break;
  case E2E_PROP_MAX_MEMORY: g_value_set_uint(v, m->max_memory_mb); break;
  default: break;
  }
  g_mutex_unlock(&m->lock);
  return TRUE;
}

gboolean e2e_element_open(GstElement *e, E2eElementModel *m) {
  g_mutex_lock(&m->lock);
  gchar *path = g_strdup(m->model), *name = g_strdup(m->model_name), *device = g_strdup(m->device);
  gboolean given = m->model_given;
  int threads = (int)m->num_threads;
  g_mutex_unlock(&m->lock);
  gboolean ok = FALSE;
  e2e_slot *slot = NULL;
  if (!e2e_device_check(device)) {
    GST_ELEMENT_ERROR(e, LIBRARY, SETTINGS, ("%s", e2e_last_error()), (NULL));
  } else if (!(slot = e2e_slot_open(name, path, (int)m->task))) {
    GST_ELEMENT_ERROR(e, RESOURCE, READ, ("Could not load %s model \"%s\".", TASK_WHAT[m->task], path),
                      ("%s", e2e_last_error()));
  } else {
    if (name && *name && given && strcmp(e2e_slot_path(slot), path) != 0)
      GST_ELEMENT_WARNING(e, RESOURCE, SETTINGS,
                          ("model-name \"%s\" is already loaded from \"%s\"; this element shares it and does not load \"%s\".",
                           name, e2e_slot_path(slot), path), (NULL));
    e2e_session *session = e2e_session_new(slot, threads);
    if (!session) {
      GST_ELEMENT_ERROR(e, RESOURCE, NO_SPACE_LEFT, ("Could not start the %s model.", TASK_WHAT[m->task]),
                        ("%s", e2e_last_error()));
      e2e_slot_unref(slot);
    } else {
      g_mutex_lock(&m->lock);
      m->slot = slot;
      m->session = session;
      g_mutex_unlock(&m->lock);
      ok = TRUE;
    }
  }
  g_free(path);
  g_free(name);
  g_free(device);
  return ok;
}

void e2e_element_close(E2eElementModel *m) {
  g_mutex_lock(&m->lock);
  e2e_session *session = m->session;
  e2e_slot *slot = m->slot;
  m->session = NULL;
  m->slot = NULL;
  g_mutex_unlock(&m->lock);
  e2e_session_free(session);
  e2e_slot_unref(slot);
}

GstStateChangeReturn e2e_element_change_state(GstElement *e, E2eElementModel *m, GstStateChange t,
                                              GstElementClass *parent) {
  if (t == GST_STATE_CHANGE_READY_TO_PAUSED && !e2e_element_open(e, m)) return GST_STATE_CHANGE_FAILURE;
  GstStateChangeReturn r = parent->change_state(e, t);
  if (t == GST_STATE_CHANGE_PAUSED_TO_READY || (t == GST_STATE_CHANGE_READY_TO_PAUSED && r == GST_STATE_CHANGE_FAILURE))
    e2e_element_close(m);
  return r;
}

void e2e_element_use_shipped(E2eElementModel *m, const char *rel) {
  char *path = e2e_model_path(rel);
  g_mutex_lock(&m->lock);
  if (!m->model_given) {
    g_free(m->model);
    m->model = g_strdup(path);
  }
  g_mutex_unlock(&m->lock);
  free(path);
}

gboolean e2e_element_reopen(GstElement *e, E2eElementModel *m, const char *path) {
  e2e_element_close(m);
  g_mutex_lock(&m->lock);
  g_free(m->model);
  m->model = g_strdup(path);
  g_mutex_unlock(&m->lock);
  return e2e_element_open(e, m);
}

guint64 e2e_element_max_memory(E2eElementModel *m) {
  g_mutex_lock(&m->lock);
  guint64 bytes = (guint64)m->max_memory_mb << 20;
  g_mutex_unlock(&m->lock);
  return bytes;
}

void e2e_element_copy_property(GObjectClass *oc, guint id, GType from, const gchar *name) {
  GObjectClass *fc = g_type_class_ref(from); /* kept: the copy's strings are the original's */
  GParamSpec *p = g_object_class_find_property(fc, name), *c = NULL;
  g_return_if_fail(p != NULL);
  const gchar *nick = g_param_spec_get_nick(p), *blurb = g_param_spec_get_blurb(p);
  GParamFlags flags = p->flags | G_PARAM_STATIC_STRINGS;
  switch (G_PARAM_SPEC_VALUE_TYPE(p)) {
  case G_TYPE_UINT: {
    GParamSpecUInt *u = G_PARAM_SPEC_UINT(p);
    c = g_param_spec_uint(name, nick, blurb, u->minimum, u->maximum, u->default_value, flags);
    break;
  }
  case G_TYPE_STRING: c = g_param_spec_string(name, nick, blurb, G_PARAM_SPEC_STRING(p)->default_value, flags); break;
  case G_TYPE_BOOLEAN: c = g_param_spec_boolean(name, nick, blurb, G_PARAM_SPEC_BOOLEAN(p)->default_value, flags); break;
  case G_TYPE_DOUBLE: {
    GParamSpecDouble *d = G_PARAM_SPEC_DOUBLE(p);
    c = g_param_spec_double(name, nick, blurb, d->minimum, d->maximum, d->default_value, flags);
    break;
  }
  default:
    if (G_IS_PARAM_SPEC_ENUM(p)) {
      c = g_param_spec_enum(name, nick, blurb, G_PARAM_SPEC_VALUE_TYPE(p), G_PARAM_SPEC_ENUM(p)->default_value, flags);
      break;
    }
    g_return_if_reached();
  }
  g_object_class_install_property(oc, id, c);
}

/* ------------------------------------------------------------ the uncertainty mark */

/* copies go with the buffer's copies; other transformations (scaling, conversion) keep it too: it says
 * something about the frame, not about its pixels */
static gboolean uncertain_transform(GstBuffer *dst, GstCustomMeta *meta, GstBuffer *src, GQuark type, gpointer data,
                                    gpointer user) {
  (void)src, (void)type, (void)data, (void)user;
  GstCustomMeta *m = gst_buffer_add_custom_meta(dst, E2E_UNCERTAIN_META);
  if (!m) return FALSE;
  gst_structure_set_value(gst_custom_meta_get_structure(m), "count", gst_structure_get_value(gst_custom_meta_get_structure(meta), "count"));
  gst_structure_set_value(gst_custom_meta_get_structure(m), "low", gst_structure_get_value(gst_custom_meta_get_structure(meta), "low"));
  gst_structure_set_value(gst_custom_meta_get_structure(m), "high", gst_structure_get_value(gst_custom_meta_get_structure(meta), "high"));
  return TRUE;
}

void e2e_uncertain_meta_register(void) {
  static gsize once = 0;
  if (g_once_init_enter(&once)) {
    static const gchar *tags[] = {NULL};
    gst_meta_register_custom(E2E_UNCERTAIN_META, tags, uncertain_transform, NULL, NULL);
    g_once_init_leave(&once, 1);
  }
}

void e2e_uncertain_meta_add(GstBuffer *buf, gint count, gdouble low, gdouble high) {
  e2e_uncertain_meta_register();
  GstCustomMeta *m = gst_buffer_add_custom_meta(buf, E2E_UNCERTAIN_META);
  if (m) gst_structure_set(gst_custom_meta_get_structure(m), "count", G_TYPE_INT, count, "low", G_TYPE_DOUBLE, low, "high",
                           G_TYPE_DOUBLE, high, NULL);
}

gint e2e_uncertain_meta_count(GstBuffer *buf) {
  e2e_uncertain_meta_register();
  GstCustomMeta *m = gst_buffer_get_custom_meta(buf, E2E_UNCERTAIN_META);
  gint count = 0;
  if (m) gst_structure_get_int(gst_custom_meta_get_structure(m), "count", &count);
  return count;
}
