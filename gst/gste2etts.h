/* e2etts: text/x-raw in (or the text property with nothing upstream), audio/x-raw out, streamed in chunks
 * as it is synthesised, with an element message per word. */
#ifndef GST_E2E_TTS_H
#define GST_E2E_TTS_H

#include <gst/audio/audio.h>
#include <gst/gst.h>

#include "e2e/tts.h"
#include "e2eelement.h"

G_BEGIN_DECLS

#define GST_TYPE_E2E_TTS (gst_e2e_tts_get_type())
G_DECLARE_FINAL_TYPE(GstE2eTts, gst_e2e_tts, GST, E2E_TTS, GstElement)

struct _GstE2eTts {
  GstElement parent;
  GstPad *sinkpad, *srcpad;
  E2eElementModel model; /* model, model-name, device, num-threads; the session while running */

  /* properties (under lock) */
  GMutex lock;
  gchar *text;
  gdouble rate, volume, contrast;
  guint iterations;

  /* streaming state (the streaming thread, or the source task) */
  e2e_tts_stream *stream;
  gboolean markup;           /* the sink's caps say pango-markup */
  GstAudioFormat format;     /* negotiated downstream: S16LE or F32LE */
  gint sample_rate;
  gboolean caps_sent, segment_sent, discont;
  GstSegment segment;        /* the output's */
  GstClockTime base_ts;      /* timestamp of base_samples */
  guint64 samples;           /* samples pushed since base_ts */
  gint flushing;             /* atomic: a flush or a stop cuts the synthesis short */
  gboolean source_mode;      /* nothing upstream: the src pad's task speaks the text property */
  guint64 words;             /* word messages posted */
  gint64 words_base;         /* the stream sample at base_ts */
};

G_END_DECLS

#endif
