/* e2easr through GstHarness: caps, timestamps, partial and final results, voice activity, grammars,
 * discontinuities and bad input. A model that says "a" wherever it hears sound makes the behaviour visible
 * without a trained recogniser. */
#include <gst/audio/audio.h>
#include <gst/check/gstharness.h>
#include <math.h>
#include <unistd.h>

#include "e2e/asr.h"
#include "task.h"
#include "../harness.h"

__attribute__((constructor)) static void init_gst(void) {
  gst_init(NULL, NULL);
  g_setenv("GST_PLUGIN_PATH", E2E_PLUGIN_BUILD_DIR, TRUE);
  gst_registry_scan_path(gst_registry_get(), E2E_PLUGIN_BUILD_DIR);
}

/* 'a' most likely, blank next, every other label out of reach */
static void say_a_bias(float *b) {
  for (int c = 0; c < E2E_ASR_CLASSES; c++) b[c] = -10.0f;
  b[E2E_ASR_BLANK] = 3.0f;
  b[e2e_asr_label('a')] = 5.0f;
}

static char *say_a_model(void) {
  e2e_model *m = e2e_asr_model_new(16, 1, 1);
  nn_params *p = e2e_model_ops(m)->params(e2e_model_impl(m));
  nn_fill_(nn_params_find(p, "ctc.weight"), 0.0f);
  nn_fill_(nn_params_find(p, "ctc.bias"), 0.0f);
  say_a_bias(nn_f32(nn_params_find(p, "ctc.bias")));
  char *path = g_strdup_printf("/tmp/e2e-asr-test-%d.safetensors", getpid());
  CHECK(e2e_model_save(m, path, NULL, 0), "save: %s", nn_last_error());
  e2e_model_unref(m);
  return path;
}

/* S16 interleaved audio: faint noise everywhere, loud noise in [burst_start, burst_end) seconds. */
static GstBuffer *audio(int rate, int channels, double start_s, double dur_s, double burst_start, double burst_end,
                        nn_rng *r) {
  int n = (int)(dur_s * rate);
  GstBuffer *b = gst_buffer_new_allocate(NULL, (gsize)n * channels * 2, NULL);
  GstMapInfo map;
  gst_buffer_map(b, &map, GST_MAP_WRITE);
  int16_t *s = (int16_t *)map.data;
  for (int i = 0; i < n; i++) {
    double t = start_s + (double)i / rate;
    float v = 30.0f * nn_rng_normal(r) + (t >= burst_start && t < burst_end ? 8000.0f * nn_rng_normal(r) : 0.0f);
    for (int c = 0; c < channels; c++) s[i * channels + c] = (int16_t)fmaxf(-32768, fminf(32767, v));
  }
  gst_buffer_unmap(b, &map);
  GST_BUFFER_PTS(b) = (GstClockTime)(start_s * GST_SECOND);
  GST_BUFFER_DURATION(b) = (GstClockTime)(dur_s * GST_SECOND);
  return b;
}

static gchar *caps_of(int rate, int channels) {
  return g_strdup_printf("audio/x-raw,format=S16LE,layout=interleaved,rate=%d,channels=%d%s", rate, channels,
                         channels > 2 ? ",channel-mask=(bitmask)0" : "");
}

/* Pushes [0, total) seconds in chunks of chunk_s, a burst in [b0, b1). */
static void push_audio(GstHarness *h, int rate, int channels, double total, double chunk_s, double b0, double b1) {
  nn_rng r;
  nn_rng_seed(&r, 1);
  for (double t = 0; t < total - 1e-9; t += chunk_s)
    CHECK(gst_harness_push(h, audio(rate, channels, t, chunk_s, b0, b1, &r)) == GST_FLOW_OK, "push at %.2f", t);
}

typedef struct {
  int partials, finals;
  GstClockTime final_ts;
  gchar *final_text;
  gboolean words_timed;
} messages;

static void read_messages(GstHarness *h, messages *m) {
  memset(m, 0, sizeof *m);
  GstBus *bus = gst_element_get_bus(h->element);
  GstMessage *msg;
  while ((msg = gst_bus_pop_filtered(bus, GST_MESSAGE_ELEMENT))) {
    const GstStructure *s = gst_message_get_structure(msg);
    if (gst_structure_has_name(s, "e2easr")) {
      gboolean final = FALSE;
      gst_structure_get_boolean(s, "final", &final);
      if (final) {
        m->finals++;
        gst_structure_get_uint64(s, "timestamp", &m->final_ts);
        g_free(m->final_text);
        m->final_text = g_strdup(gst_structure_get_string(s, "text"));
        const GValue *words = gst_structure_get_value(s, "words");
        m->words_timed = words && gst_value_list_get_size(words) > 0;
        if (m->words_timed) {
          const GstStructure *w = gst_value_get_structure(gst_value_list_get_value(words, 0));
          guint64 ws = 0, we = 0;
          m->words_timed = gst_structure_get_uint64(w, "start", &ws) && gst_structure_get_uint64(w, "end", &we) &&
                           ws >= m->final_ts && we > ws;
        }
      } else {
        m->partials++;
      }
    }
    gst_message_unref(msg);
  }
  gst_object_unref(bus);
}

/* The element posts to a bus of its own (read_messages); messages still on it hold the element, which holds
 * the bus: flushing it after the teardown lets both go. */
static void teardown(GstHarness *h) {
  GstBus *bus = gst_element_get_bus(h->element);
  gst_harness_teardown(h);
  if (bus) {
    gst_bus_set_flushing(bus, TRUE);
    gst_object_unref(bus);
  }
}

static GstHarness *harness(const char *model, const char *extra, int rate, int channels) {
  gchar *launch = g_strdup_printf("e2easr model=%s %s", model, extra ? extra : "");
  GstHarness *h = gst_harness_new_parse(launch);
  g_free(launch);
  gchar *caps = caps_of(rate, channels);
  gst_harness_set_src_caps_str(h, caps);
  g_free(caps);
  /* element messages are read from the bus */
  GstBus *bus = gst_bus_new();
  gst_element_set_bus(h->element, bus);
  gst_object_unref(bus);
  return h;
}

TEST(one_text_buffer_per_utterance_with_timestamps_and_partials) {
  char *model = say_a_model();
  GstHarness *h = harness(model, "partial-interval=300", 16000, 1);
  push_audio(h, 16000, 1, 3.0, 0.02, 1.0, 2.2);
  GstCaps *caps = gst_pad_get_current_caps(h->sinkpad);
  CHECK(caps && gst_structure_has_name(gst_caps_get_structure(caps, 0), "text/x-raw") &&
            !g_strcmp0(gst_structure_get_string(gst_caps_get_structure(caps, 0), "format"), "utf8"),
        "text/x-raw utf8 out");
  if (caps) gst_caps_unref(caps);
  CHECK(gst_harness_buffers_received(h) == 1, "%u text buffers", gst_harness_buffers_received(h));
  GstBuffer *b = gst_harness_pull(h);
  if (b) {
    GstMapInfo map;
    gst_buffer_map(b, &map, GST_MAP_READ);
    CHECK(map.size == 1 && map.data[0] == 'a', "text \"%.*s\"", (int)map.size, map.data);
    gst_buffer_unmap(b, &map);
    GstClockTime pts = GST_BUFFER_PTS(b), dur = GST_BUFFER_DURATION(b);
    CHECK(pts >= 650 * GST_MSECOND && pts <= 1000 * GST_MSECOND, "starts %" GST_TIME_FORMAT " (burst at 1 s)", GST_TIME_ARGS(pts));
    CHECK(pts + dur >= 2200 * GST_MSECOND && pts + dur <= 2600 * GST_MSECOND, "ends %" GST_TIME_FORMAT " (burst ends 2.2 s)",
          GST_TIME_ARGS(pts + dur));
    gst_buffer_unref(b);
  }
  messages m;
  read_messages(h, &m);
  CHECK(m.finals == 1 && !g_strcmp0(m.final_text, "a") && m.words_timed, "final message with timed words");
  CHECK(m.partials >= 3, "%d partials over 1.2 s of speech every 300 ms", m.partials);
  g_free(m.final_text);
  teardown(h);
  unlink(model);
  g_free(model);
}

TEST(any_rate_and_channel_count_and_tiny_buffers) {
  char *model = say_a_model();
  int rates[] = {8000, 44100, 192000}, chans[] = {1, 2, 8};
  for (int i = 0; i < 3; i++) {
    GstHarness *h = harness(model, NULL, rates[i], chans[i]);
    push_audio(h, rates[i], chans[i], 2.0, 0.05, 0.5, 1.3);
    gst_harness_push_event(h, gst_event_new_eos());
    CHECK(gst_harness_buffers_received(h) == 1, "%d Hz x %d: %u text buffers", rates[i], chans[i],
          gst_harness_buffers_received(h));
    teardown(h);
  }
  /* one-sample buffers */
  GstHarness *h = harness(model, NULL, 16000, 1);
  nn_rng r;
  nn_rng_seed(&r, 2);
  for (int i = 0; i < 16000; i++) {
    GstBuffer *b = audio(16000, 1, i / 16000.0, 1.0 / 16000, 0.3, 0.7, &r);
    GST_BUFFER_PTS(b) = gst_util_uint64_scale_int(i, GST_SECOND, 16000);
    gst_harness_push(h, b);
  }
  gst_harness_push_event(h, gst_event_new_eos());
  CHECK(gst_harness_buffers_received(h) == 1, "one-sample buffers: %u text buffers", gst_harness_buffers_received(h));
  teardown(h);
  unlink(model);
  g_free(model);
}

TEST(clipped_audio_is_just_loud) {
  char *model = say_a_model();
  GstHarness *h = harness(model, NULL, 16000, 1);
  nn_rng r;
  nn_rng_seed(&r, 5);
  for (double t = 0; t < 2.0; t += 0.1) {
    GstBuffer *b = audio(16000, 1, t, 0.1, 0.5, 1.2, &r);
    GstMapInfo map;
    gst_buffer_map(b, &map, GST_MAP_WRITE);
    int16_t *s = (int16_t *)map.data;
    for (gsize i = 0; i < map.size / 2; i++) /* hard clipping: every loud sample at full scale */
      if (s[i] > 1000 || s[i] < -1000) s[i] = s[i] > 0 ? 32767 : -32768;
    gst_buffer_unmap(b, &map);
    gst_harness_push(h, b);
  }
  gst_harness_push_event(h, gst_event_new_eos());
  CHECK(gst_harness_buffers_received(h) == 1, "%u text buffers from a clipped burst", gst_harness_buffers_received(h));
  teardown(h);
  unlink(model);
  g_free(model);
}

TEST(silence_and_steady_noise_say_nothing) {
  char *model = say_a_model();
  GstHarness *h = harness(model, NULL, 16000, 1);
  push_audio(h, 16000, 1, 3.0, 0.1, 99, 99);
  gst_harness_push_event(h, gst_event_new_eos());
  CHECK(gst_harness_buffers_received(h) == 0, "%u text buffers from quiet noise", gst_harness_buffers_received(h));
  teardown(h);
  unlink(model);
  g_free(model);
}

TEST(eos_in_the_middle_of_a_word_finalises_it) {
  char *model = say_a_model();
  GstHarness *h = harness(model, NULL, 16000, 1);
  push_audio(h, 16000, 1, 1.5, 0.1, 1.0, 99);
  CHECK(gst_harness_buffers_received(h) == 0, "nothing before the end");
  gst_harness_push_event(h, gst_event_new_eos());
  CHECK(gst_harness_buffers_received(h) == 1, "the open utterance at EOS");
  GstEvent *e;
  gboolean eos = FALSE;
  while ((e = gst_harness_try_pull_event(h))) {
    eos |= GST_EVENT_TYPE(e) == GST_EVENT_EOS;
    gst_event_unref(e);
  }
  CHECK(eos, "EOS forwarded after the text");
  teardown(h);
  unlink(model);
  g_free(model);
}

TEST(a_timestamp_gap_ends_the_utterance_and_resyncs) {
  char *model = say_a_model();
  GstHarness *h = harness(model, NULL, 16000, 1);
  nn_rng r;
  nn_rng_seed(&r, 3);
  for (double t = 0; t < 1.0; t += 0.1) gst_harness_push(h, audio(16000, 1, t, 0.1, 0.5, 99, &r));
  /* ten seconds missing, then speech again */
  for (double t = 11.0; t < 13.0; t += 0.1) gst_harness_push(h, audio(16000, 1, t, 0.1, 11.5, 12.0, &r));
  CHECK(gst_harness_buffers_received(h) == 2, "%u utterances around the gap", gst_harness_buffers_received(h));
  GstBuffer *a = gst_harness_pull(h), *b = gst_harness_pull(h);
  if (a && b) {
    CHECK(GST_BUFFER_PTS(a) + GST_BUFFER_DURATION(a) <= 1100 * GST_MSECOND, "first ends before the gap");
    CHECK(GST_BUFFER_PTS(b) >= 11 * GST_SECOND && GST_BUFFER_PTS(b) <= 11500 * GST_MSECOND,
          "second stamped on the new timeline: %" GST_TIME_FORMAT, GST_TIME_ARGS(GST_BUFFER_PTS(b)));
  }
  if (a) gst_buffer_unref(a);
  if (b) gst_buffer_unref(b);
  teardown(h);
  unlink(model);
  g_free(model);
}

TEST(the_digit_grammar_refuses_what_is_not_a_digit) {
  char *model = say_a_model();
  GstHarness *h = harness(model, "grammar=digits", 16000, 1);
  push_audio(h, 16000, 1, 2.0, 0.1, 0.5, 1.2);
  gst_harness_push_event(h, gst_event_new_eos());
  CHECK(gst_harness_buffers_received(h) == 0, "\"a\" is no digit: %u text buffers", gst_harness_buffers_received(h));
  teardown(h);
  unlink(model);
  g_free(model);
}

TEST(latency_query_adds_the_hangover) {
  char *model = say_a_model();
  GstHarness *h = harness(model, "vad-hangover=250", 16000, 1);
  gst_harness_set_upstream_latency(h, 10 * GST_MSECOND);
  push_audio(h, 16000, 1, 0.2, 0.1, 99, 99);
  GstQuery *q = gst_query_new_latency();
  CHECK(gst_pad_peer_query(h->sinkpad, q), "latency query answered");
  gboolean live;
  GstClockTime min, max;
  gst_query_parse_latency(q, &live, &min, &max);
  CHECK(min >= 260 * GST_MSECOND && min <= 400 * GST_MSECOND, "min latency %" GST_TIME_FORMAT, GST_TIME_ARGS(min));
  gst_query_unref(q);
  teardown(h);
  unlink(model);
  g_free(model);
}

TEST(bad_models_and_settings_are_refused_with_a_message) {
  GstElement *e = gst_element_factory_make("e2easr", NULL);
  g_object_set(e, "model", "/nonexistent/asr.safetensors", NULL);
  GstBus *bus = gst_bus_new();
  gst_element_set_bus(e, bus);
  CHECK(gst_element_set_state(e, GST_STATE_PAUSED) == GST_STATE_CHANGE_FAILURE, "missing model fails the state change");
  GstMessage *msg = gst_bus_pop_filtered(bus, GST_MESSAGE_ERROR);
  CHECK(msg != NULL, "an error message");
  if (msg) {
    GError *err = NULL;
    gchar *dbg = NULL;
    gst_message_parse_error(msg, &err, &dbg);
    CHECK(strstr(err->message, "/nonexistent/asr.safetensors") != NULL, "names the file: %s", err->message);
    g_error_free(err);
    g_free(dbg);
    gst_message_unref(msg);
  }
  gst_element_set_state(e, GST_STATE_NULL);
  /* a language model file that does not exist: an error when the stream starts */
  char *model = say_a_model();
  g_object_set(e, "model", model, "lm-file", "/nonexistent/lm.txt", NULL);
  GstHarness *h = gst_harness_new_with_element(e, "sink", "src");
  gchar *caps = caps_of(16000, 1);
  gst_harness_set_src_caps_str(h, caps);
  g_free(caps);
  gboolean named = FALSE;
  while ((msg = gst_bus_pop_filtered(bus, GST_MESSAGE_ERROR))) {
    GError *err = NULL;
    gst_message_parse_error(msg, &err, NULL);
    named |= strstr(err->message, "/nonexistent/lm.txt") != NULL;
    g_error_free(err);
    gst_message_unref(msg);
  }
  CHECK(named, "the language model file is named");
  teardown(h);
  gst_bus_set_flushing(bus, TRUE);
  gst_object_unref(bus);
  gst_object_unref(e);
  unlink(model);
  g_free(model);
}
