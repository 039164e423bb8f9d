/* e2easr: audio in, one text buffer per utterance out, partial results as element messages.
 *
 * Thin glue over the speech stream of e2e/asr.h: any raw audio is converted (GstAudioConverter: format,
 * channels, rate) to the model's mono float rate; the stream does voice activity, segments and decoding; a
 * final result becomes a text buffer stamped with its utterance's start and duration. Timestamps follow the
 * input: a discontinuity or a gap finalises the open utterance and restarts positions at the new buffer. */
#include "gste2easr.h"

#include <math.h>
#include <string.h>

GST_DEBUG_CATEGORY_STATIC(e2easr_debug);
#define GST_CAT_DEFAULT e2easr_debug

enum {
  PROP_0,
  PROP_BEAM_WIDTH,
  PROP_LM_FILE,
  PROP_LM_CLOSED,
  PROP_GRAMMAR,
  PROP_LM_WEIGHT,
  PROP_WORD_BONUS,
  PROP_VAD_THRESHOLD,
  PROP_MIN_SPEECH,
  PROP_HANGOVER,
  PROP_PREROLL,
  PROP_MAX_SEGMENT,
  PROP_PARTIAL_INTERVAL,
  PROP_JSON_FILE,
};

G_DEFINE_TYPE(GstE2eAsr, gst_e2e_asr, GST_TYPE_ELEMENT)

static GstStaticPadTemplate sink_template = GST_STATIC_PAD_TEMPLATE(
    "sink", GST_PAD_SINK, GST_PAD_ALWAYS,
    GST_STATIC_CAPS("audio/x-raw, format = (string) " GST_AUDIO_FORMATS_ALL ", layout = (string) interleaved, "
                    "rate = (int) [ 1000, 768000 ], channels = (int) [ 1, 64 ]"));
static GstStaticPadTemplate src_template =
    GST_STATIC_PAD_TEMPLATE("src", GST_PAD_SRC, GST_PAD_ALWAYS, GST_STATIC_CAPS("text/x-raw, format = (string) utf8"));

/* ------------------------------------------------------------ results */

static GstClockTime sample_time(GstE2eAsr *self, int64_t sample) {
  int rate = e2e_asr_stream_rate(self->stream);
  return self->base_ts + gst_util_uint64_scale_int((guint64)(sample > 0 ? sample : 0), GST_SECOND, rate);
}

static GstStructure *result_structure(GstE2eAsr *self, const e2e_asr_event *ev) {
  GstClockTime start = sample_time(self, ev->start), end = sample_time(self, ev->end);
  GValue words = G_VALUE_INIT, item = G_VALUE_INIT;
  g_value_init(&words, GST_TYPE_LIST);
  for (int i = 0; i < ev->result->n_words; i++) {
    const e2e_asr_word *w = &ev->result->words[i];
    g_value_init(&item, GST_TYPE_STRUCTURE);
    GstStructure *s = gst_structure_new("word", "text", G_TYPE_STRING, w->word, "start", G_TYPE_UINT64,
                                        start + (GstClockTime)(w->start * GST_SECOND), "end", G_TYPE_UINT64,
                                        start + (GstClockTime)(w->end * GST_SECOND), "confidence", G_TYPE_DOUBLE,
                                        (double)w->confidence, NULL);
    gst_value_set_structure(&item, s);
    gst_structure_free(s);
    gst_value_list_append_and_take_value(&words, &item);
  }
  GstStructure *s = gst_structure_new(
      "e2easr", "text", G_TYPE_STRING, ev->result->text, "final", G_TYPE_BOOLEAN, ev->kind == E2E_ASR_FINAL,
      "timestamp", G_TYPE_UINT64, start, "duration", G_TYPE_UINT64, end - start, "stream-time", G_TYPE_UINT64,
      gst_segment_to_stream_time(&self->segment, GST_FORMAT_TIME, start), "running-time", G_TYPE_UINT64,
      gst_segment_to_running_time(&self->segment, GST_FORMAT_TIME, start), "confidence", G_TYPE_DOUBLE,
      (double)ev->result->confidence, NULL);
  gst_structure_take_value(s, "words", &words);
  return s;
}

static void write_json(GstE2eAsr *self, const e2e_asr_event *ev) {
  GstClockTime start = sample_time(self, ev->start), end = sample_time(self, ev->end);
  fprintf(self->json, "{\"start\": %.3f, \"end\": %.3f, \"text\": \"%s\", \"confidence\": %.3f, \"words\": [",
          (double)start / GST_SECOND, (double)end / GST_SECOND, ev->result->text, ev->result->confidence);
  for (int i = 0; i < ev->result->n_words; i++) {
    const e2e_asr_word *w = &ev->result->words[i];
    fprintf(self->json, "%s{\"word\": \"%s\", \"start\": %.3f, \"end\": %.3f, \"confidence\": %.3f}", i ? ", " : "",
            w->word, (double)start / GST_SECOND + w->start, (double)start / GST_SECOND + w->end, w->confidence);
  }
  fprintf(self->json, "]}\n");
  fflush(self->json);
}

static void on_result(void *user, const e2e_asr_event *ev) {
  GstE2eAsr *self = user;
  GstStructure *s = result_structure(self, ev);
  GST_DEBUG_OBJECT(self, "%s: \"%s\"", ev->kind == E2E_ASR_FINAL ? "final" : "partial", ev->result->text);
  gst_element_post_message(GST_ELEMENT(self), gst_message_new_element(GST_OBJECT(self), s));
  if (ev->kind != E2E_ASR_FINAL) {
    self->partials++;
    return;
  }
  self->finals++;
  if (self->json) write_json(self, ev);
  size_t len = strlen(ev->result->text);
  if (len == 0) return; /* noise that was not speech: nothing to say */
  GstBuffer *buf = gst_buffer_new_memdup(ev->result->text, len);
  GstClockTime start = sample_time(self, ev->start), end = sample_time(self, ev->end);
  GST_BUFFER_PTS(buf) = start;
  GST_BUFFER_DURATION(buf) = end - start;
  GstFlowReturn r = gst_pad_push(self->srcpad, buf);
  if (r != GST_FLOW_OK && self->last_flow == GST_FLOW_OK) self->last_flow = r;
}

/* ------------------------------------------------------------ streaming */

static void free_stream(GstE2eAsr *self) {
  e2e_asr_stream_free(self->stream);
  self->stream = NULL;
  e2e_asr_lm_free(self->lm);
  self->lm = NULL;
  if (self->conv) gst_audio_converter_free(self->conv);
  self->conv = NULL;
}

/* The decoder options the properties ask for; loads the language model when it changed. */
static gboolean apply_decoding(GstE2eAsr *self) {
  g_mutex_lock(&self->lock);
  gchar *lm_file = g_strdup(self->lm_file), *grammar = g_strdup(self->grammar);
  gboolean closed = self->lm_closed;
  e2e_asr_decode_opts d = e2e_asr_decode_defaults();
  d.lm_weight = self->lm_weight;
  d.word_bonus = self->word_bonus;
  guint beam = self->beam_width;
  self->settings_changed = FALSE;
  g_mutex_unlock(&self->lock);
  e2e_asr_lm_free(self->lm);
  self->lm = NULL;
  gboolean ok = TRUE;
  if (grammar && !strcmp(grammar, "digits")) {
    self->lm = e2e_asr_lm_digits();
  } else if (lm_file && *lm_file) {
    self->lm = e2e_asr_lm_from_text_file(lm_file, closed);
    if (!self->lm) {
      GST_ELEMENT_ERROR(self, RESOURCE, READ, ("Could not read the language model text \"%s\".", lm_file),
                        ("%s", e2e_last_error()));
      ok = FALSE;
    }
  }
  d.lm = self->lm;
  d.beam = beam ? (int)beam : self->lm ? 16 : 1;
  if (self->stream) e2e_asr_stream_set_decode(self->stream, &d);
  g_free(lm_file);
  g_free(grammar);
  return ok;
}

static gboolean setup(GstE2eAsr *self, GstCaps *caps) {
  GstAudioInfo info;
  if (!gst_audio_info_from_caps(&info, caps)) {
    GST_ELEMENT_ERROR(self, STREAM, FORMAT, ("Unsupported audio caps."), ("caps: %" GST_PTR_FORMAT, caps));
    return FALSE;
  }
  if (!self->model.session) {
    GST_ELEMENT_ERROR(self, CORE, STATE_CHANGE, ("No model open (caps arrived before READY to PAUSED)."), (NULL));
    return FALSE;
  }
  if (self->stream && self->conv) { /* new caps mid-stream: what was heard so far is finished first */
    e2e_asr_stream_flush(self->stream, on_result, self);
  }
  free_stream(self);
  g_mutex_lock(&self->lock);
  e2e_asr_stream_opts so = self->stream_opts;
  g_mutex_unlock(&self->lock);
  e2e_asr_decode_opts d = e2e_asr_decode_defaults();
  self->stream = e2e_asr_stream_new(self->model.session, &so, &d);
  if (!self->stream) {
    GST_ELEMENT_ERROR(self, LIBRARY, SETTINGS, ("Could not start speech recognition."), ("%s", e2e_last_error()));
    return FALSE;
  }
  if (!apply_decoding(self)) return FALSE;
  GstAudioInfo out;
  gst_audio_info_init(&out);
  gst_audio_info_set_format(&out, GST_AUDIO_FORMAT_F32, e2e_asr_stream_rate(self->stream), 1, NULL);
  /* every channel weighs the same in the mono mix, positioned or not (8 unpositioned channels included) */
  int channels = GST_AUDIO_INFO_CHANNELS(&info);
  GValue matrix = G_VALUE_INIT, row = G_VALUE_INIT, w = G_VALUE_INIT;
  g_value_init(&matrix, GST_TYPE_ARRAY);
  g_value_init(&row, GST_TYPE_ARRAY);
  for (int c = 0; c < channels; c++) {
    g_value_init(&w, G_TYPE_FLOAT);
    g_value_set_float(&w, 1.0f / channels);
    gst_value_array_append_and_take_value(&row, &w);
  }
  gst_value_array_append_and_take_value(&matrix, &row);
  GstStructure *cfg = gst_structure_new("e2easr", GST_AUDIO_CONVERTER_OPT_RESAMPLER_METHOD,
                                        GST_TYPE_AUDIO_RESAMPLER_METHOD, GST_AUDIO_RESAMPLER_METHOD_KAISER,
                                        GST_AUDIO_CONVERTER_OPT_DITHER_METHOD, GST_TYPE_AUDIO_DITHER_METHOD,
                                        GST_AUDIO_DITHER_NONE, NULL);
  gst_structure_take_value(cfg, GST_AUDIO_CONVERTER_OPT_MIX_MATRIX, &matrix);
  self->conv = gst_audio_converter_new(GST_AUDIO_CONVERTER_FLAG_NONE, &info, &out, cfg);
  if (!self->conv) {
    GST_ELEMENT_ERROR(self, CORE, NEGOTIATION, ("Cannot convert this audio to the model's input."),
                      ("caps: %" GST_PTR_FORMAT, caps));
    return FALSE;
  }
  self->in_info = info;
  self->base_ts = GST_CLOCK_TIME_NONE;
  self->in_samples = 0;
  GstCaps *src = gst_caps_new_simple("text/x-raw", "format", G_TYPE_STRING, "utf8", NULL);
  gboolean ok = gst_pad_set_caps(self->srcpad, src);
  gst_caps_unref(src);
  return ok;
}

/* A new timeline from ts on: the open utterance is finished on the old one first. */
static void resync(GstE2eAsr *self, GstClockTime ts) {
  if (GST_CLOCK_TIME_IS_VALID(self->base_ts)) e2e_asr_stream_flush(self->stream, on_result, self);
  e2e_asr_stream_reset(self->stream);
  gst_audio_converter_reset(self->conv);
  self->base_ts = ts;
  self->in_samples = 0;
}

static GstFlowReturn chain(GstPad *pad, GstObject *parent, GstBuffer *buf) {
  GstE2eAsr *self = GST_E2E_ASR(parent);
  if (!self->conv || !self->stream) {
    gst_buffer_unref(buf);
    GST_ELEMENT_ERROR(self, CORE, NEGOTIATION, ("Audio arrived before its caps."), (NULL));
    return GST_FLOW_NOT_NEGOTIATED;
  }
  g_mutex_lock(&self->lock);
  gboolean changed = self->settings_changed;
  g_mutex_unlock(&self->lock);
  if (changed && !apply_decoding(self)) {
    gst_buffer_unref(buf);
    return GST_FLOW_ERROR;
  }
  int rate = GST_AUDIO_INFO_RATE(&self->in_info), bpf = GST_AUDIO_INFO_BPF(&self->in_info);
  GstClockTime pts = GST_BUFFER_PTS(buf);
  if (!GST_CLOCK_TIME_IS_VALID(self->base_ts)) {
    resync(self, GST_CLOCK_TIME_IS_VALID(pts) ? pts : (self->segment.start != (guint64)-1 ? self->segment.start : 0));
  } else if (GST_CLOCK_TIME_IS_VALID(pts)) {
    GstClockTime expected = self->base_ts + gst_util_uint64_scale_int(self->in_samples, GST_SECOND, rate);
    GstClockTimeDiff drift = GST_CLOCK_DIFF(expected, pts);
    /* more than 40 ms off (a gap, a jump back) or marked: a new timeline */
    if (GST_BUFFER_IS_DISCONT(buf) || drift > 40 * GST_MSECOND || drift < -40 * GST_MSECOND) {
      GST_DEBUG_OBJECT(self, "discontinuity of %" G_GINT64_FORMAT " ns: resyncing", drift);
      resync(self, pts);
    }
  }
  GstMapInfo map;
  if (!gst_buffer_map(buf, &map, GST_MAP_READ)) {
    gst_buffer_unref(buf);
    GST_ELEMENT_ERROR(self, RESOURCE, READ, ("Could not map an audio buffer."), (NULL));
    return GST_FLOW_ERROR;
  }
  gsize in_frames = map.size / (gsize)bpf;
  gsize out_frames = gst_audio_converter_get_out_frames(self->conv, in_frames);
  if (out_frames + 16 > self->out_cap) {
    self->out_cap = out_frames + 16;
    self->out = g_renew(gfloat, self->out, self->out_cap);
  }
  gpointer in[1] = {map.data}, out[1] = {self->out};
  gboolean ok = in_frames == 0 ||
                gst_audio_converter_samples(self->conv, GST_AUDIO_CONVERTER_FLAG_NONE, in, in_frames, out, out_frames);
  gst_buffer_unmap(buf, &map);
  gst_buffer_unref(buf);
  if (!ok) {
    GST_ELEMENT_ERROR(self, STREAM, DECODE, ("Could not convert the audio."), (NULL));
    return GST_FLOW_ERROR;
  }
  self->in_samples += in_frames;
  self->last_flow = GST_FLOW_OK;
  if (!e2e_asr_stream_push(self->stream, self->out, (int)out_frames, on_result, self)) {
    GST_ELEMENT_ERROR(self, LIBRARY, FAILED, ("Speech recognition failed."), ("%s", e2e_last_error()));
    return GST_FLOW_ERROR;
  }
  /* downstream not linked or flushing is reported; a text sink that is simply not there is not our error */
  return self->last_flow == GST_FLOW_NOT_LINKED ? GST_FLOW_OK : self->last_flow;
}

static gboolean sink_event(GstPad *pad, GstObject *parent, GstEvent *event) {
  GstE2eAsr *self = GST_E2E_ASR(parent);
  switch (GST_EVENT_TYPE(event)) {
  case GST_EVENT_CAPS: {
    GstCaps *caps;
    gst_event_parse_caps(event, &caps);
    gboolean ok = setup(self, caps);
    gst_event_unref(event); /* our own caps went out in setup */
    return ok;
  }
  case GST_EVENT_SEGMENT: {
    const GstSegment *seg;
    gst_event_parse_segment(event, &seg);
    if (seg->format != GST_FORMAT_TIME) {
      GST_ELEMENT_ERROR(self, STREAM, FORMAT, ("e2easr needs a time segment (got %s).", gst_format_get_name(seg->format)),
                        (NULL));
      gst_event_unref(event);
      return FALSE;
    }
    gst_segment_copy_into(seg, &self->segment);
    if (self->stream && GST_CLOCK_TIME_IS_VALID(self->base_ts)) resync(self, GST_CLOCK_TIME_NONE);
    self->base_ts = GST_CLOCK_TIME_NONE;
    return gst_pad_push_event(self->srcpad, event);
  }
  case GST_EVENT_EOS:
    if (self->stream) e2e_asr_stream_flush(self->stream, on_result, self);
    return gst_pad_push_event(self->srcpad, event);
  case GST_EVENT_FLUSH_STOP:
    if (self->stream) e2e_asr_stream_reset(self->stream);
    if (self->conv) gst_audio_converter_reset(self->conv);
    self->base_ts = GST_CLOCK_TIME_NONE;
    gst_segment_init(&self->segment, GST_FORMAT_TIME);
    return gst_pad_push_event(self->srcpad, event);
  case GST_EVENT_GAP: {
    /* silence by declaration: the open utterance ends, the timeline restarts after the gap */
    GstClockTime ts, dur;
    gst_event_parse_gap(event, &ts, &dur);
    if (self->stream && GST_CLOCK_TIME_IS_VALID(self->base_ts)) {
      resync(self, GST_CLOCK_TIME_IS_VALID(dur) ? ts + dur : GST_CLOCK_TIME_NONE);
    }
    return gst_pad_push_event(self->srcpad, event);
  }
  default:
    return gst_pad_event_default(pad, parent, event);
  }
}

static gboolean src_query(GstPad *pad, GstObject *parent, GstQuery *q) {
  GstE2eAsr *self = GST_E2E_ASR(parent);
  if (GST_QUERY_TYPE(q) != GST_QUERY_LATENCY) return gst_pad_query_default(pad, parent, q);
  if (!gst_pad_peer_query(self->sinkpad, q)) return FALSE;
  gboolean live;
  GstClockTime min, max;
  gst_query_parse_latency(q, &live, &min, &max);
  g_mutex_lock(&self->lock);
  /* a final result comes after the hangover and one analysis window past the utterance's end */
  GstClockTime ours = (GstClockTime)self->stream_opts.hangover_ms * GST_MSECOND + 32 * GST_MSECOND;
  GstClockTime longest = (GstClockTime)self->stream_opts.max_segment_ms * GST_MSECOND + ours;
  g_mutex_unlock(&self->lock);
  gst_query_set_latency(q, live, min + ours, GST_CLOCK_TIME_IS_VALID(max) ? max + longest : max);
  return TRUE;
}

/* ------------------------------------------------------------ state */

static GstStateChangeReturn change_state(GstElement *e, GstStateChange t) {
  GstE2eAsr *self = GST_E2E_ASR(e);
  if (t == GST_STATE_CHANGE_READY_TO_PAUSED) {
    gst_segment_init(&self->segment, GST_FORMAT_TIME);
    self->base_ts = GST_CLOCK_TIME_NONE;
    self->finals = self->partials = 0;
    g_mutex_lock(&self->lock);
    gchar *json = g_strdup(self->json_file);
    g_mutex_unlock(&self->lock);
    if (json && *json && !(self->json = fopen(json, "w"))) {
      GST_ELEMENT_ERROR(self, RESOURCE, OPEN_WRITE, ("Could not open json-file \"%s\".", json), GST_ERROR_SYSTEM);
      g_free(json);
      return GST_STATE_CHANGE_FAILURE;
    }
    g_free(json);
  }
  GstStateChangeReturn r = e2e_element_change_state(e, &self->model, t, GST_ELEMENT_CLASS(gst_e2e_asr_parent_class));
  if (t == GST_STATE_CHANGE_PAUSED_TO_READY || (t == GST_STATE_CHANGE_READY_TO_PAUSED && r == GST_STATE_CHANGE_FAILURE)) {
    free_stream(self);
    if (self->json) fclose(self->json);
    self->json = NULL;
  }
  return r;
}

/* ------------------------------------------------------------ properties */

static void set_property(GObject *obj, guint id, const GValue *v, GParamSpec *pspec) {
  GstE2eAsr *self = GST_E2E_ASR(obj);
  if (e2e_element_set_property(GST_ELEMENT(self), &self->model, id, v)) return;
  g_mutex_lock(&self->lock);
  e2e_asr_stream_opts *o = &self->stream_opts;
  switch (id) {
  case PROP_BEAM_WIDTH: self->beam_width = g_value_get_uint(v); break;
  case PROP_LM_FILE: g_free(self->lm_file); self->lm_file = g_value_dup_string(v); break;
  case PROP_LM_CLOSED: self->lm_closed = g_value_get_boolean(v); break;
  case PROP_GRAMMAR: g_free(self->grammar); self->grammar = g_value_dup_string(v); break;
  case PROP_LM_WEIGHT: self->lm_weight = g_value_get_float(v); break;
  case PROP_WORD_BONUS: self->word_bonus = g_value_get_float(v); break;
  case PROP_VAD_THRESHOLD: o->vad_threshold_db = g_value_get_float(v); break;
  case PROP_MIN_SPEECH: o->min_speech_ms = (int)g_value_get_uint(v); break;
  case PROP_HANGOVER: o->hangover_ms = (int)g_value_get_uint(v); break;
  case PROP_PREROLL: o->preroll_ms = (int)g_value_get_uint(v); break;
  case PROP_MAX_SEGMENT: o->max_segment_ms = (int)g_value_get_uint(v); break;
  case PROP_PARTIAL_INTERVAL: o->partial_interval_ms = (int)g_value_get_uint(v); break;
  case PROP_JSON_FILE: g_free(self->json_file); self->json_file = g_value_dup_string(v); break;
  default: G_OBJECT_WARN_INVALID_PROPERTY_ID(obj, id, pspec); break;
  }
  if (id >= PROP_BEAM_WIDTH && id <= PROP_WORD_BONUS) self->settings_changed = TRUE;
  g_mutex_unlock(&self->lock);
}

static void get_property(GObject *obj, guint id, GValue *v, GParamSpec *pspec) {
  GstE2eAsr *self = GST_E2E_ASR(obj);
  if (e2e_element_get_property(&self->model, id, v)) return;
  g_mutex_lock(&self->lock);
  e2e_asr_stream_opts *o = &self->stream_opts;
  switch (id) {
  case PROP_BEAM_WIDTH: g_value_set_uint(v, self->beam_width); break;
  case PROP_LM_FILE: g_value_set_string(v, self->lm_file); break;
  case PROP_LM_CLOSED: g_value_set_boolean(v, self->lm_closed); break;
  case PROP_GRAMMAR: g_value_set_string(v, self->grammar); break;
  case PROP_LM_WEIGHT: g_value_set_float(v, self->lm_weight); break;
  case PROP_WORD_BONUS: g_value_set_float(v, self->word_bonus); break;
  case PROP_VAD_THRESHOLD: g_value_set_float(v, o->vad_threshold_db); break;
  case PROP_MIN_SPEECH: g_value_set_uint(v, (guint)o->min_speech_ms); break;
  case PROP_HANGOVER: g_value_set_uint(v, (guint)o->hangover_ms); break;
  case PROP_PREROLL: g_value_set_uint(v, (guint)o->preroll_ms); break;
  case PROP_MAX_SEGMENT: g_value_set_uint(v, (guint)o->max_segment_ms); break;
  case PROP_PARTIAL_INTERVAL: g_value_set_uint(v, (guint)o->partial_interval_ms); break;
  case PROP_JSON_FILE: g_value_set_string(v, self->json_file); break;
  default: G_OBJECT_WARN_INVALID_PROPERTY_ID(obj, id, pspec); break;
  }
  g_mutex_unlock(&self->lock);
}

static void finalize(GObject *obj) {
  GstE2eAsr *self = GST_E2E_ASR(obj);
  free_stream(self);
  e2e_element_model_clear(&self->model);
  g_free(self->lm_file);
  g_free(self->grammar);
  g_free(self->json_file);
  g_free(self->out);
  g_mutex_clear(&self->lock);
  G_OBJECT_CLASS(gst_e2e_asr_parent_class)->finalize(obj);
}

static void gst_e2e_asr_class_init(GstE2eAsrClass *klass) {
  GObjectClass *oc = G_OBJECT_CLASS(klass);
  GstElementClass *ec = GST_ELEMENT_CLASS(klass);
  GST_DEBUG_CATEGORY_INIT(e2easr_debug, "e2easr", 0, "end-to-end speech recognition");
  oc->set_property = set_property;
  oc->get_property = get_property;
  oc->finalize = finalize;
  ec->change_state = change_state;
  e2e_asr_stream_opts d = e2e_asr_stream_defaults();
  GParamFlags rw = G_PARAM_READWRITE | G_PARAM_STATIC_STRINGS;
  GParamFlags ready = rw | GST_PARAM_MUTABLE_READY, playing = rw | GST_PARAM_MUTABLE_PLAYING;
  g_object_class_install_property(oc, PROP_BEAM_WIDTH, g_param_spec_uint("beam-width", "Beam width",
      "Prefix beam search width (1: greedy best path; 0: 16 with a language model or grammar, else 1)", 0, 256, 0, playing));
  g_object_class_install_property(oc, PROP_LM_FILE, g_param_spec_string("lm-file", "Language model text",
      "Sentences (one per line) to build a word bigram model from for the beam search; empty: none", NULL, playing));
  g_object_class_install_property(oc, PROP_LM_CLOSED, g_param_spec_boolean("lm-closed", "Closed vocabulary",
      "Recognise only the words of lm-file (a word list), instead of letting other words through with a penalty",
      FALSE, playing));
  g_object_class_install_property(oc, PROP_GRAMMAR, g_param_spec_string("grammar", "Grammar",
      "A grammar the result must follow: \"digits\" (any sequence of zero..nine and oh, for number entry) or empty",
      NULL, playing));
  g_object_class_install_property(oc, PROP_LM_WEIGHT, g_param_spec_float("lm-weight", "LM weight",
      "Weight of the language model's log10-probability per word (tuned on validation speech)", 0.0f, 10.0f, 0.8f, playing));
  g_object_class_install_property(oc, PROP_WORD_BONUS, g_param_spec_float("word-bonus", "Word bonus",
      "Score added per recognised word (counters the language model's preference for fewer words)", -10.0f, 10.0f,
      1.0f, playing));
  g_object_class_install_property(oc, PROP_VAD_THRESHOLD, g_param_spec_float("vad-threshold", "VAD threshold",
      "dB above the running noise floor at which a frame counts as speech", 0.0f, 80.0f, d.vad_threshold_db, ready));
  g_object_class_install_property(oc, PROP_MIN_SPEECH, g_param_spec_uint("min-speech", "Shortest speech",
      "Milliseconds of loud frames that start an utterance (shorter clicks are ignored)", 0, 5000,
      (guint)d.min_speech_ms, ready));
  g_object_class_install_property(oc, PROP_HANGOVER, g_param_spec_uint("vad-hangover", "VAD hangover",
      "Milliseconds of silence that end an utterance: most of the delay of a final result", 10, 10000,
      (guint)d.hangover_ms, ready));
  g_object_class_install_property(oc, PROP_PREROLL, g_param_spec_uint("preroll", "Pre-roll",
      "Milliseconds of audio kept before the detected start of speech", 0, 5000, (guint)d.preroll_ms, ready));
  g_object_class_install_property(oc, PROP_MAX_SEGMENT, g_param_spec_uint("max-segment", "Longest utterance",
      "Milliseconds after which an utterance is cut and finalised (bounds memory and delay)", 500, 120000,
      (guint)d.max_segment_ms, ready));
  g_object_class_install_property(oc, PROP_PARTIAL_INTERVAL, g_param_spec_uint("partial-interval", "Partial interval",
      "Milliseconds of speech between partial results, posted as element messages named e2easr with final=false "
      "(0: none)", 0, 60000, (guint)d.partial_interval_ms, ready));
  g_object_class_install_property(oc, PROP_JSON_FILE, g_param_spec_string("json-file", "JSON lines file",
      "Write each final result (text, start/end seconds, words with times and confidences) as a JSON line", NULL, ready));
  e2e_element_install_properties(oc, E2E_TASK_ASR, E2E_ELEMENT_SWAP_WHILE_PLAYING);
  gst_element_class_set_static_metadata(ec, "End-to-end speech recogniser", "Filter/Analyzer/Audio/Text",
      "Recognises speech with a CTC network trained end to end: a text buffer per utterance, partial results and "
      "word timestamps as element messages", "gst-e2e developers");
  gst_element_class_add_static_pad_template(ec, &sink_template);
  gst_element_class_add_static_pad_template(ec, &src_template);
}

static void gst_e2e_asr_init(GstE2eAsr *self) {
  self->sinkpad = gst_pad_new_from_static_template(&sink_template, "sink");
  gst_pad_set_chain_function(self->sinkpad, chain);
  gst_pad_set_event_function(self->sinkpad, sink_event);
  GST_PAD_SET_PROXY_ALLOCATION(self->sinkpad);
  gst_element_add_pad(GST_ELEMENT(self), self->sinkpad);
  self->srcpad = gst_pad_new_from_static_template(&src_template, "src");
  gst_pad_set_query_function(self->srcpad, src_query);
  gst_pad_use_fixed_caps(self->srcpad);
  gst_element_add_pad(GST_ELEMENT(self), self->srcpad);
  g_mutex_init(&self->lock);
  self->stream_opts = e2e_asr_stream_defaults();
  self->lm_weight = 0.8f;
  self->word_bonus = 1.0f;
  e2e_element_model_init(&self->model, E2E_TASK_ASR, E2E_ELEMENT_SWAP_WHILE_PLAYING);
  gst_segment_init(&self->segment, GST_FORMAT_TIME);
  self->base_ts = GST_CLOCK_TIME_NONE;
}
