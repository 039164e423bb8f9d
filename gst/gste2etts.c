/* e2etts: text in, speech out.
 *
 * Thin glue over the synthesis stream of e2e/tts.h. A text buffer (utf8, or pango-markup whose tags are
 * stripped) is normalised and cut into sentences there; the audio comes back in chunks of about 0.2 s,
 * each pushed as soon as it is made, with continuous timestamps. A text buffer with a timestamp later
 * than the audio so far starts its speech at that timestamp (a gap event covers the silence), so subtitle
 * streams speak in time. With nothing linked upstream, the src pad's own task speaks the text property and
 * ends the stream. Every word posts an element message "e2etts-word" with its timestamp. */
#include "gste2etts.h"

#include <math.h>
#include <pango/pango.h>
#include <string.h>

GST_DEBUG_CATEGORY_STATIC(e2etts_debug);
#define GST_CAT_DEFAULT e2etts_debug

enum { PROP_0, PROP_TEXT, PROP_RATE, PROP_VOLUME, PROP_ITERATIONS, PROP_CONTRAST };

#define DEFAULT_RATE 1.0
#define DEFAULT_VOLUME 1.0
#define CHUNK_SAMPLES 4096

G_DEFINE_TYPE(GstE2eTts, gst_e2e_tts, GST_TYPE_ELEMENT)

static GstStaticPadTemplate sink_template = GST_STATIC_PAD_TEMPLATE(
    "sink", GST_PAD_SINK, GST_PAD_ALWAYS, GST_STATIC_CAPS("text/x-raw, format = (string) { utf8, pango-markup }"));
static GstStaticPadTemplate src_template = GST_STATIC_PAD_TEMPLATE(
    "src", GST_PAD_SRC, GST_PAD_ALWAYS,
    GST_STATIC_CAPS("audio/x-raw, format = (string) { S16LE, F32LE }, layout = (string) interleaved, "
                    "rate = (int) [ 1, 192000 ], channels = (int) 1"));

/* ------------------------------------------------------------ negotiation */

static gboolean ensure_stream(GstE2eTts *self) {
  if (self->stream) return TRUE;
  if (!self->model.session) {
    GST_ELEMENT_ERROR(self, CORE, STATE_CHANGE, ("e2etts has no model open."), (NULL));
    return FALSE;
  }
  g_mutex_lock(&self->lock);
  e2e_tts_opts o = e2e_tts_opts_default();
  o.rate = (float)self->rate, o.volume = (float)self->volume, o.iterations = (int)self->iterations;
  o.contrast = (float)self->contrast;
  g_mutex_unlock(&self->lock);
  self->stream = e2e_tts_stream_new(self->model.session, &o);
  if (!self->stream) {
    GST_ELEMENT_ERROR(self, LIBRARY, INIT, ("Could not start speech synthesis."), ("%s", e2e_last_error()));
    return FALSE;
  }
  self->sample_rate = e2e_tts_stream_sample_rate(self->stream);
  return TRUE;
}

static GstCaps *own_caps(GstE2eTts *self) {
  GstCaps *caps = gst_pad_get_pad_template_caps(self->srcpad);
  if (self->sample_rate > 0) {
    caps = gst_caps_make_writable(caps);
    gst_caps_set_simple(caps, "rate", G_TYPE_INT, self->sample_rate, NULL);
  }
  return caps;
}

/* Stream start (source mode), caps and segment, each once, before the first audio. */
static gboolean ensure_caps(GstE2eTts *self) {
  if (!self->caps_sent) {
    GstCaps *ours = own_caps(self), *peer = gst_pad_peer_query_caps(self->srcpad, ours);
    gst_caps_unref(ours);
    if (gst_caps_is_empty(peer)) {
      gst_caps_unref(peer);
      GST_ELEMENT_ERROR(self, CORE, NEGOTIATION, ("Downstream takes neither S16LE nor F32LE mono audio at %d Hz.", self->sample_rate),
                        ("put audioconvert ! audioresample after e2etts"));
      return FALSE;
    }
    peer = gst_caps_fixate(peer);
    GstAudioInfo info;
    gboolean ok = gst_audio_info_from_caps(&info, peer) && gst_pad_push_event(self->srcpad, gst_event_new_caps(peer));
    gst_caps_unref(peer);
    if (!ok) {
      GST_ELEMENT_ERROR(self, CORE, NEGOTIATION, ("Could not set the audio caps downstream."), (NULL));
      return FALSE;
    }
    self->format = GST_AUDIO_INFO_FORMAT(&info);
    self->caps_sent = TRUE;
  }
  if (!self->segment_sent) {
    gst_pad_push_event(self->srcpad, gst_event_new_segment(&self->segment));
    self->segment_sent = TRUE;
  }
  return TRUE;
}

/* ------------------------------------------------------------ speaking */

static GstClockTime position(GstE2eTts *self) {
  return self->base_ts + gst_util_uint64_scale_int(self->samples, GST_SECOND, self->sample_rate);
}

/* Moves the audio on to ts (later than where it is) with a gap event: silence by declaration. */
static void skip_to(GstE2eTts *self, GstClockTime ts) {
  GstClockTime now = position(self);
  if (!GST_CLOCK_TIME_IS_VALID(ts) || ts <= now) return;
  gst_pad_push_event(self->srcpad, gst_event_new_gap(now, ts - now));
  self->base_ts = ts;
  self->samples = 0;
}

static void post_word(GstE2eTts *self, const e2e_tts_word *w) {
  GstClockTime ts = self->base_ts + gst_util_uint64_scale_int((guint64)w->sample - (guint64)self->words_base, GST_SECOND,
                                                              self->sample_rate);
  GstStructure *s = gst_structure_new("e2etts-word", "word", G_TYPE_STRING, w->word, "timestamp", G_TYPE_UINT64, ts,
                                      "running-time", G_TYPE_UINT64,
                                      gst_segment_to_running_time(&self->segment, GST_FORMAT_TIME, ts), NULL);
  gst_element_post_message(GST_ELEMENT(self), gst_message_new_element(GST_OBJECT(self), s));
  self->words++;
}

/* Says text from ts on (GST_CLOCK_TIME_NONE: right after the audio so far), pushing each chunk as it comes. */
static GstFlowReturn speak(GstE2eTts *self, const gchar *text, gsize len, GstClockTime ts) {
  if (!ensure_stream(self) || !ensure_caps(self)) return GST_FLOW_NOT_NEGOTIATED;
  skip_to(self, ts);
  if (e2e_tts_stream_say(self->stream, text, len, NULL, NULL) == 0) {
    GST_DEBUG_OBJECT(self, "nothing to say in %" G_GSIZE_FORMAT " bytes of text", len);
    return GST_FLOW_OK;
  }
  /* the word messages count samples from the stream's start; the timeline from base_ts */
  self->words_base = e2e_tts_stream_samples(self->stream) - (gint64)self->samples;
  float *chunk = g_new(float, CHUNK_SAMPLES);
  e2e_tts_word words[32];
  GstFlowReturn ret = GST_FLOW_OK;
  for (;;) {
    if (g_atomic_int_get(&self->flushing)) {
      ret = GST_FLOW_FLUSHING;
      break;
    }
    int n_words = 0;
    bool guard = false;
    int64_t n = e2e_tts_stream_next(self->stream, chunk, CHUNK_SAMPLES, words, 32, &n_words, &guard);
    if (n < 0) {
      GST_ELEMENT_ERROR(self, STREAM, FAILED, ("Speech synthesis failed."), ("%s", e2e_last_error()));
      ret = GST_FLOW_ERROR;
      break;
    }
    if (n == 0) break;
    if (guard) GST_ELEMENT_WARNING(self, STREAM, DECODE, ("A sentence ran past its length guard and was cut."),
                                   ("the model never reached the end of the text: the voice is not trained enough"));
    gsize bps = self->format == GST_AUDIO_FORMAT_F32LE ? 4 : 2;
    GstBuffer *buf = gst_buffer_new_allocate(NULL, (gsize)n * bps, NULL);
    GstMapInfo map;
    gst_buffer_map(buf, &map, GST_MAP_WRITE);
    if (bps == 4) {
      memcpy(map.data, chunk, (gsize)n * 4);
    } else {
      gint16 *d = (gint16 *)map.data;
      for (int64_t i = 0; i < n; i++) d[i] = (gint16)lrintf(fmaxf(-1.0f, fminf(1.0f, chunk[i])) * 32767.0f);
    }
    gst_buffer_unmap(buf, &map);
    GstClockTime pts = position(self);
    self->samples += (guint64)n;
    GST_BUFFER_PTS(buf) = pts;
    GST_BUFFER_DURATION(buf) = position(self) - pts;
    GST_BUFFER_OFFSET(buf) = GST_BUFFER_OFFSET_NONE;
    if (self->discont) {
      GST_BUFFER_FLAG_SET(buf, GST_BUFFER_FLAG_DISCONT);
      self->discont = FALSE;
    }
    for (int i = 0; i < n_words; i++) post_word(self, &words[i]);
    ret = gst_pad_push(self->srcpad, buf);
    if (ret != GST_FLOW_OK) break;
  }
  g_free(chunk);
  if (ret != GST_FLOW_OK) e2e_tts_stream_reset(self->stream);
  return ret;
}

/* pango-markup to its plain text (entities decoded, tags dropped); plain text on a parse failure. */
static gchar *plain_text(GstE2eTts *self, const gchar *s, gsize len) {
  if (!s || !len) return g_strdup("");
  if (!self->markup) return g_strndup(s, len);
  gchar *text = NULL;
  GError *err = NULL;
  if (pango_parse_markup(s, (int)len, 0, NULL, &text, NULL, &err)) return text;
  GST_WARNING_OBJECT(self, "not valid pango markup (%s): spoken as it is", err ? err->message : "?");
  g_clear_error(&err);
  return g_strndup(s, len);
}

static GstFlowReturn chain(GstPad *pad, GstObject *parent, GstBuffer *buf) {
  (void)pad;
  GstE2eTts *self = GST_E2E_TTS(parent);
  GstMapInfo map;
  if (!gst_buffer_map(buf, &map, GST_MAP_READ)) {
    gst_buffer_unref(buf);
    GST_ELEMENT_ERROR(self, STREAM, FAILED, ("Could not read a text buffer."), (NULL));
    return GST_FLOW_ERROR;
  }
  gchar *text = plain_text(self, (const gchar *)map.data, map.size);
  GstClockTime ts = self->segment.format == GST_FORMAT_TIME ? GST_BUFFER_PTS(buf) : GST_CLOCK_TIME_NONE;
  gst_buffer_unmap(buf, &map);
  if (GST_BUFFER_IS_DISCONT(buf)) self->discont = TRUE;
  gst_buffer_unref(buf);
  GstFlowReturn ret = speak(self, text, strlen(text), ts);
  g_free(text);
  return ret;
}

/* ------------------------------------------------------------ events and queries */

static void reset_timeline(GstE2eTts *self) {
  self->base_ts = self->segment.format == GST_FORMAT_TIME && GST_CLOCK_TIME_IS_VALID(self->segment.start) ? self->segment.start : 0;
  self->samples = 0;
  self->discont = TRUE;
}

static gboolean sink_event(GstPad *pad, GstObject *parent, GstEvent *event) {
  GstE2eTts *self = GST_E2E_TTS(parent);
  switch (GST_EVENT_TYPE(event)) {
  case GST_EVENT_CAPS: {
    GstCaps *caps;
    gst_event_parse_caps(event, &caps);
    const gchar *format = gst_structure_get_string(gst_caps_get_structure(caps, 0), "format");
    self->markup = format && !strcmp(format, "pango-markup");
    gst_event_unref(event); /* the audio caps go out with the first audio */
    return TRUE;
  }
  case GST_EVENT_SEGMENT: {
    const GstSegment *seg;
    gst_event_parse_segment(event, &seg);
    /* a time segment carries over (the text's timestamps place the speech); any other (a text file's
     * bytes) starts the audio at 0 */
    if (seg->format == GST_FORMAT_TIME) gst_segment_copy_into(seg, &self->segment);
    else gst_segment_init(&self->segment, GST_FORMAT_TIME);
    gst_event_unref(event);
    self->segment_sent = FALSE;
    reset_timeline(self);
    return TRUE;
  }
  case GST_EVENT_GAP: {
    GstClockTime ts, dur;
    gst_event_parse_gap(event, &ts, &dur);
    gst_event_unref(event);
    if (self->stream && ensure_caps(self) && GST_CLOCK_TIME_IS_VALID(ts) && GST_CLOCK_TIME_IS_VALID(dur)) skip_to(self, ts + dur);
    return TRUE;
  }
  case GST_EVENT_FLUSH_START:
    g_atomic_int_set(&self->flushing, 1);
    return gst_pad_push_event(self->srcpad, event);
  case GST_EVENT_FLUSH_STOP:
    if (self->stream) e2e_tts_stream_reset(self->stream);
    g_atomic_int_set(&self->flushing, 0);
    gst_segment_init(&self->segment, GST_FORMAT_TIME);
    self->segment_sent = FALSE;
    reset_timeline(self);
    return gst_pad_push_event(self->srcpad, event);
  case GST_EVENT_EOS:
    /* text is spoken as it arrives; an EOS before any text still gives downstream its caps and segment */
    if (self->model.session && ensure_stream(self)) ensure_caps(self);
    return gst_pad_push_event(self->srcpad, event);
  default:
    return gst_pad_event_default(pad, parent, event);
  }
}

static gboolean src_query(GstPad *pad, GstObject *parent, GstQuery *q) {
  GstE2eTts *self = GST_E2E_TTS(parent);
  switch (GST_QUERY_TYPE(q)) {
  case GST_QUERY_CAPS: {
    GstCaps *filter, *caps = own_caps(self);
    gst_query_parse_caps(q, &filter);
    if (filter) {
      GstCaps *i = gst_caps_intersect_full(filter, caps, GST_CAPS_INTERSECT_FIRST);
      gst_caps_unref(caps);
      caps = i;
    }
    gst_query_set_caps_result(q, caps);
    gst_caps_unref(caps);
    return TRUE;
  }
  case GST_QUERY_LATENCY: {
    gboolean live = FALSE;
    GstClockTime min = 0, max = GST_CLOCK_TIME_NONE;
    if (!self->source_mode && gst_pad_peer_query(self->sinkpad, q)) gst_query_parse_latency(q, &live, &min, &max);
    /* speech starts one chunk (and its vocoding) after its text */
    GstClockTime ours = 250 * GST_MSECOND;
    gst_query_set_latency(q, live, min + ours, GST_CLOCK_TIME_IS_VALID(max) ? max + ours : max);
    return TRUE;
  }
  default:
    return gst_pad_query_default(pad, parent, q);
  }
}

static gboolean src_event(GstPad *pad, GstObject *parent, GstEvent *event) {
  GstE2eTts *self = GST_E2E_TTS(parent);
  if (self->source_mode && GST_EVENT_TYPE(event) == GST_EVENT_SEEK) {
    GST_DEBUG_OBJECT(self, "speech from the text property cannot seek");
    gst_event_unref(event);
    return FALSE;
  }
  return gst_pad_event_default(pad, parent, event);
}

/* ------------------------------------------------------------ the source mode */

static void source_loop(gpointer data) {
  GstE2eTts *self = GST_E2E_TTS(data);
  g_mutex_lock(&self->lock);
  gchar *text = g_strdup(self->text ? self->text : "");
  g_mutex_unlock(&self->lock);
  gchar id[32];
  g_snprintf(id, sizeof id, "e2etts-%08x", g_random_int());
  gst_pad_push_event(self->srcpad, gst_event_new_stream_start(id));
  gst_segment_init(&self->segment, GST_FORMAT_TIME);
  reset_timeline(self);
  GstFlowReturn ret = speak(self, text, strlen(text), GST_CLOCK_TIME_NONE);
  g_free(text);
  if (ret == GST_FLOW_OK || ret == GST_FLOW_NOT_LINKED) {
    if (ensure_stream(self) && ensure_caps(self)) gst_pad_push_event(self->srcpad, gst_event_new_eos());
  } else if (ret != GST_FLOW_FLUSHING && ret != GST_FLOW_ERROR) {
    GST_ELEMENT_FLOW_ERROR(self, ret);
    gst_pad_push_event(self->srcpad, gst_event_new_eos());
  }
  gst_pad_pause_task(self->srcpad);
}

/* ------------------------------------------------------------ state */

static GstStateChangeReturn change_state(GstElement *e, GstStateChange t) {
  GstE2eTts *self = GST_E2E_TTS(e);
  if (t == GST_STATE_CHANGE_READY_TO_PAUSED) {
    gst_segment_init(&self->segment, GST_FORMAT_TIME);
    reset_timeline(self);
    self->caps_sent = self->segment_sent = FALSE;
    self->words = 0;
    g_atomic_int_set(&self->flushing, 0);
    g_mutex_lock(&self->lock);
    gboolean have_text = self->text && *self->text;
    g_mutex_unlock(&self->lock);
    self->source_mode = !gst_pad_is_linked(self->sinkpad);
    if (self->source_mode && !have_text) {
      GST_ELEMENT_ERROR(self, RESOURCE, SETTINGS, ("Nothing to say: e2etts has no text upstream and no text property."),
                        ("link a text source to its sink pad, or set text=\"...\""));
      return GST_STATE_CHANGE_FAILURE;
    }
  }
  if (t == GST_STATE_CHANGE_PAUSED_TO_READY) {
    g_atomic_int_set(&self->flushing, 1);
    if (self->source_mode) gst_pad_stop_task(self->srcpad);
  }
  GstStateChangeReturn r = e2e_element_change_state(e, &self->model, t, GST_ELEMENT_CLASS(gst_e2e_tts_parent_class));
  if (r == GST_STATE_CHANGE_FAILURE) return r;
  if (t == GST_STATE_CHANGE_READY_TO_PAUSED && self->source_mode) {
    if (!gst_pad_start_task(self->srcpad, source_loop, self, NULL)) {
      GST_ELEMENT_ERROR(self, CORE, THREAD, ("Could not start the speaking thread."), (NULL));
      return GST_STATE_CHANGE_FAILURE;
    }
  }
  if (t == GST_STATE_CHANGE_PAUSED_TO_READY) {
    e2e_tts_stream_free(self->stream);
    self->stream = NULL;
  }
  return r;
}

/* ------------------------------------------------------------ properties */

static void set_property(GObject *obj, guint id, const GValue *v, GParamSpec *pspec) {
  GstE2eTts *self = GST_E2E_TTS(obj);
  if (e2e_element_set_property(GST_ELEMENT(self), &self->model, id, v)) return;
  g_mutex_lock(&self->lock);
  switch (id) {
  case PROP_TEXT: g_free(self->text); self->text = g_value_dup_string(v); break;
  case PROP_RATE: self->rate = g_value_get_double(v); break;
  case PROP_VOLUME: self->volume = g_value_get_double(v); break;
  case PROP_ITERATIONS: self->iterations = g_value_get_uint(v); break;
  case PROP_CONTRAST: self->contrast = g_value_get_double(v); break;
  default: G_OBJECT_WARN_INVALID_PROPERTY_ID(obj, id, pspec); break;
  }
  g_mutex_unlock(&self->lock);
}

static void get_property(GObject *obj, guint id, GValue *v, GParamSpec *pspec) {
  GstE2eTts *self = GST_E2E_TTS(obj);
  if (e2e_element_get_property(&self->model, id, v)) return;
  g_mutex_lock(&self->lock);
  switch (id) {
  case PROP_TEXT: g_value_set_string(v, self->text); break;
  case PROP_RATE: g_value_set_double(v, self->rate); break;
  case PROP_VOLUME: g_value_set_double(v, self->volume); break;
  case PROP_ITERATIONS: g_value_set_uint(v, self->iterations); break;
  case PROP_CONTRAST: g_value_set_double(v, self->contrast); break;
  default: G_OBJECT_WARN_INVALID_PROPERTY_ID(obj, id, pspec); break;
  }
  g_mutex_unlock(&self->lock);
}

static void finalize(GObject *obj) {
  GstE2eTts *self = GST_E2E_TTS(obj);
  e2e_tts_stream_free(self->stream);
  e2e_element_model_clear(&self->model);
  g_free(self->text);
  g_mutex_clear(&self->lock);
  G_OBJECT_CLASS(gst_e2e_tts_parent_class)->finalize(obj);
}

static void gst_e2e_tts_class_init(GstE2eTtsClass *klass) {
  GObjectClass *oc = G_OBJECT_CLASS(klass);
  GstElementClass *ec = GST_ELEMENT_CLASS(klass);
  oc->set_property = set_property;
  oc->get_property = get_property;
  oc->finalize = finalize;
  ec->change_state = change_state;
  GParamFlags rw = G_PARAM_READWRITE | G_PARAM_STATIC_STRINGS;
  g_object_class_install_property(oc, PROP_TEXT, g_param_spec_string("text", "Text",
      "What to say when nothing is linked to the sink pad: the element is then a source that speaks this and ends "
      "the stream (numbers, dates, times and amounts are read out)", NULL, rw | GST_PARAM_MUTABLE_READY));
  g_object_class_install_property(oc, PROP_RATE, g_param_spec_double("rate", "Speaking rate",
      "1 is the voice's own pace, 2 twice as fast, 0.5 half (the pitch stays)", 0.25, 4.0, DEFAULT_RATE,
      rw | GST_PARAM_MUTABLE_READY));
  g_object_class_install_property(oc, PROP_VOLUME, g_param_spec_double("volume", "Volume",
      "Gain on the voice (samples are clipped at full scale)", 0.0, 4.0, DEFAULT_VOLUME, rw | GST_PARAM_MUTABLE_READY));
  g_object_class_install_property(oc, PROP_ITERATIONS, g_param_spec_uint("iterations", "Vocoder iterations",
      "Griffin-Lim iterations per chunk: fewer are faster, more sound cleaner", 1, 256, 32, rw | GST_PARAM_MUTABLE_READY));
  g_object_class_install_property(oc, PROP_CONTRAST, g_param_spec_double("contrast", "Spectral contrast",
      "How far the spoken spectrogram is stretched from the voice's mean (an averaging network's output is flatter "
      "than speech): 1 as predicted, more is crisper and then harsher; 0 uses the model's own, tuned on held-out "
      "sentences", 0.0, 2.0, 0.0, rw | GST_PARAM_MUTABLE_READY));
  e2e_element_install_properties(oc, E2E_TASK_TTS, 0);
  gst_element_class_add_static_pad_template(ec, &sink_template);
  gst_element_class_add_static_pad_template(ec, &src_template);
  gst_element_class_set_static_metadata(ec, "End-to-end speech synthesiser", "Filter/Converter/Text/Audio",
      "Speaks text with an attention encoder-decoder trained end to end: audio streamed out as it is made, an "
      "element message per word with its timestamp", "gst-e2e developers");
  GST_DEBUG_CATEGORY_INIT(e2etts_debug, "e2etts", 0, "end-to-end speech synthesis");
}

static void gst_e2e_tts_init(GstE2eTts *self) {
  self->sinkpad = gst_pad_new_from_static_template(&sink_template, "sink");
  gst_pad_set_chain_function(self->sinkpad, chain);
  gst_pad_set_event_function(self->sinkpad, sink_event);
  gst_element_add_pad(GST_ELEMENT(self), self->sinkpad);
  self->srcpad = gst_pad_new_from_static_template(&src_template, "src");
  gst_pad_set_query_function(self->srcpad, src_query);
  gst_pad_set_event_function(self->srcpad, src_event);
  gst_element_add_pad(GST_ELEMENT(self), self->srcpad);
  g_mutex_init(&self->lock);
  e2e_element_model_init(&self->model, E2E_TASK_TTS, 0);
  self->rate = DEFAULT_RATE;
  self->volume = DEFAULT_VOLUME;
  self->iterations = 32;
}
