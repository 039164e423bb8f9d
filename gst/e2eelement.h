/* What every model-running element shares: the properties model, model-name, device, num-threads and
 * (optionally) max-memory, opening the model with one clear error, and the inference session. An element
 * embeds an E2eElementModel, installs the properties in class_init, and forwards its set/get_property,
 * start and stop here. All model and engine work goes through e2e/model.h. */
#ifndef GST_E2E_ELEMENT_H
#define GST_E2E_ELEMENT_H

#include <gst/gst.h>

#include "e2e/model.h"

G_BEGIN_DECLS

/* Property ids of the shared properties; an element's own ids stay below E2E_PROP_FIRST. */
enum {
  E2E_PROP_FIRST = 100,
  E2E_PROP_MODEL = E2E_PROP_FIRST,
  E2E_PROP_MODEL_NAME,
  E2E_PROP_DEVICE,
  E2E_PROP_NUM_THREADS,
  E2E_PROP_MAX_MEMORY,
  E2E_PROP_LAST
};

typedef enum {
  E2E_ELEMENT_SWAP_WHILE_PLAYING = 1 << 0, /* a new model may be set while playing (loaded, then swapped in) */
  E2E_ELEMENT_MAX_MEMORY = 1 << 1,         /* has max-memory */
} E2eElementFlags;

typedef struct {
  e2e_task task;
  E2eElementFlags flags;
  GMutex lock; /* guards the settings below (not the session, which the streaming thread owns) */
  gchar *model, *model_name, *device;
  gboolean model_given; /* model was set, not the shipped default */
  guint num_threads, max_memory_mb;
  e2e_slot *slot;       /* while running */
  e2e_session *session; /* while running: the streaming thread's */
} E2eElementModel;

void e2e_element_install_properties(GObjectClass *oc, e2e_task task, E2eElementFlags flags);
void e2e_element_model_init(E2eElementModel *m, e2e_task task, E2eElementFlags flags);
void e2e_element_model_clear(E2eElementModel *m);
/* TRUE when id is a shared property (handled); FALSE for the element's own. */
gboolean e2e_element_set_property(GstElement *e, E2eElementModel *m, guint id, const GValue *v);
gboolean e2e_element_get_property(E2eElementModel *m, guint id, GValue *v);
/* Checks the device and opens the model (shared by model-name) and a session; on failure posts one
 * error naming the file and the cause, and returns FALSE. */
gboolean e2e_element_open(GstElement *e, E2eElementModel *m);
void e2e_element_close(E2eElementModel *m);
/* For elements on a base class that posts its own error when start fails (GstVideoEncoder/Decoder): opens
 * the model before the base class starts and closes it after it stops, around parent's change_state. */
GstStateChangeReturn e2e_element_change_state(GstElement *e, E2eElementModel *m, GstStateChange t,
                                              GstElementClass *parent);
guint64 e2e_element_max_memory(E2eElementModel *m); /* bytes (0: no limit beyond the machine's memory) */
/* Makes the shipped model rel (under the models folder, e.g. "codec/e2ecodec-live.safetensors") the one
 * this element loads, unless the model property was set: that one stays. */
void e2e_element_use_shipped(E2eElementModel *m, const char *rel);
/* While running (from the streaming thread), closes the model and opens path instead; FALSE, with an error
 * posted, when that fails (the element then has no model). */
gboolean e2e_element_reopen(GstElement *e, E2eElementModel *m, const char *path);

/* For a bin: installs under id a copy of the property `name` of element type `from` (same name, blurb,
 * range, default and flags), so the bin declares nothing twice. */
void e2e_element_copy_property(GObjectClass *oc, guint id, GType from, const gchar *name);

/* The mark e2edetect puts on a frame whose detections fall in its uncertainty band (active learning):
 * a custom meta named E2E_UNCERTAIN_META whose structure holds "count" (detections in the band), "low"
 * and "high". Registered once; e2etrain reads it. */
#define E2E_UNCERTAIN_META "E2eUncertainMeta"
void e2e_uncertain_meta_register(void);
void e2e_uncertain_meta_add(GstBuffer *buf, gint count, gdouble low, gdouble high);
/* Detections in the band marked on buf (0: not marked). */
gint e2e_uncertain_meta_count(GstBuffer *buf);

G_END_DECLS

#endif
