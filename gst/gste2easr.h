/* e2easr: live speech recognition, audio/x-raw in, text/x-raw (utf8) out, one buffer per utterance. */
#ifndef GST_E2E_ASR_H
#define GST_E2E_ASR_H

#include <gst/audio/audio.h>
#include <gst/gst.h>
#include <stdio.h>

#include "e2e/asr.h"
#include "e2eelement.h"

G_BEGIN_DECLS

#define GST_TYPE_E2E_ASR (gst_e2e_asr_get_type())
G_DECLARE_FINAL_TYPE(GstE2eAsr, gst_e2e_asr, GST, E2E_ASR, GstElement)

struct _GstE2eAsr {
  GstElement parent;
  GstPad *sinkpad, *srcpad;
  E2eElementModel model; /* model, model-name, device, num-threads; the session while running */

  /* properties (under lock) */
  GMutex lock;
  e2e_asr_stream_opts stream_opts;
  guint beam_width;
  gchar *lm_file, *grammar, *json_file;
  gboolean lm_closed;
  gfloat lm_weight, word_bonus;
  gboolean settings_changed; /* decoding settings to apply at the next buffer */

  /* streaming state (streaming thread only) */
  GstAudioInfo in_info;
  GstAudioConverter *conv;
  e2e_asr_stream *stream;
  e2e_asr_lm *lm;
  GstSegment segment;
  GstClockTime base_ts;  /* timestamp of the stream's sample 0 (since its last reset) */
  guint64 in_samples;    /* input samples since base_ts */
  gfloat *out, *in_f32;
  gsize out_cap;
  FILE *json;
  GstFlowReturn last_flow;
  guint64 finals, partials;
};

G_END_DECLS

#endif
