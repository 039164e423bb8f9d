/* e2etts through GstHarness: caps (S16LE or F32LE as downstream asks), continuous timestamps, audio streamed
 * in chunks, text timestamps placing speech, word messages, pango markup, flush in the middle of a long
 * text, EOS, bad text, the source mode (text property), a corrupt model, and e2etts ! e2easr in one
 * pipeline. A tiny untrained synthesiser makes the behaviour visible (it never learnt to stop, so every
 * sentence runs to its length guard: a fixed, known length). */
#include <gst/audio/audio.h>
#include <gst/check/gstharness.h>
#include <math.h>
#include <unistd.h>

#include "e2e/tts.h"
#include "../harness.h"
#include "tts/internal.h" /* a voice file with its own contrast */

__attribute__((constructor)) static void init_gst(void) {
  gst_init(NULL, NULL);
  g_setenv("GST_PLUGIN_PATH", E2E_PLUGIN_BUILD_DIR, TRUE);
  gst_registry_scan_path(gst_registry_get(), E2E_PLUGIN_BUILD_DIR);
}

static char *tiny_voice(void) {
  e2e_model *m = e2e_tts_model_new_tiny(3);
  char *path = g_strdup_printf("/tmp/e2e-tts-test-%d.safetensors", getpid());
  CHECK(m && e2e_model_save(m, path, NULL, 0), "save: %s", nn_last_error());
  e2e_model_unref(m);
  return path;
}

static GstBuffer *text_buffer(const char *s, GstClockTime pts) {
  GstBuffer *b = *s ? gst_buffer_new_memdup(s, strlen(s)) : gst_buffer_new(); /* an empty one has no memory */
  GST_BUFFER_PTS(b) = pts;
  return b;
}

static GstHarness *harness(const char *model, const char *format, const char *downstream) {
  gchar *launch = g_strdup_printf("e2etts model=%s", model);
  GstHarness *h = gst_harness_new_parse(launch);
  g_free(launch);
  gchar *caps = g_strdup_printf("text/x-raw,format=%s", format);
  gst_harness_set_src_caps_str(h, caps);
  g_free(caps);
  if (downstream) gst_harness_set_sink_caps_str(h, downstream);
  GstBus *bus = gst_bus_new();
  gst_element_set_bus(h->element, bus);
  gst_object_unref(bus);
  return h;
}

static void teardown(GstHarness *h) {
  GstBus *bus = gst_element_get_bus(h->element);
  gst_harness_teardown(h);
  if (bus) {
    gst_bus_set_flushing(bus, TRUE);
    gst_object_unref(bus);
  }
}

typedef struct {
  int buffers;
  guint64 samples;
  GstClockTime first_pts, end;
  gboolean continuous;
  gsize biggest;
  double peak;
} audio_out;

/* Pulls every buffer the harness holds, checking that each starts where the last ended. */
static void pull_audio(GstHarness *h, audio_out *a, int bytes_per_sample) {
  GstBuffer *b;
  while ((b = gst_harness_try_pull(h))) {
    if (a->buffers == 0) {
      a->first_pts = GST_BUFFER_PTS(b);
      a->continuous = TRUE;
    } else if (GST_BUFFER_PTS(b) != a->end) {
      a->continuous = FALSE;
    }
    a->end = GST_BUFFER_PTS(b) + GST_BUFFER_DURATION(b);
    a->buffers++;
    gsize size = gst_buffer_get_size(b);
    a->samples += size / (gsize)bytes_per_sample;
    if (size > a->biggest) a->biggest = size;
    GstMapInfo map;
    gst_buffer_map(b, &map, GST_MAP_READ);
    for (gsize i = 0; i < size / (gsize)bytes_per_sample; i++) {
      double v = bytes_per_sample == 2 ? ((gint16 *)map.data)[i] / 32768.0 : ((float *)map.data)[i];
      if (fabs(v) > a->peak) a->peak = fabs(v);
    }
    gst_buffer_unmap(b, &map);
    gst_buffer_unref(b);
  }
}

static int count_words(GstHarness *h, GstClockTime *first_ts, char *first_word, size_t cap) {
  GstBus *bus = gst_element_get_bus(h->element);
  GstMessage *msg;
  int n = 0;
  while ((msg = gst_bus_pop_filtered(bus, GST_MESSAGE_ELEMENT))) {
    const GstStructure *s = gst_message_get_structure(msg);
    if (gst_structure_has_name(s, "e2etts-word")) {
      if (n == 0) {
        if (first_ts) gst_structure_get_uint64(s, "timestamp", first_ts);
        if (first_word) g_strlcpy(first_word, gst_structure_get_string(s, "word"), cap);
      }
      n++;
    }
    gst_message_unref(msg);
  }
  gst_object_unref(bus);
  return n;
}

TEST(caps_timestamps_chunks_and_words) {
  char *model = tiny_voice();
  GstHarness *h = harness(model, "utf8", NULL);
  /* speech placed at its text's timestamp: the silence before it is a gap */
  CHECK(gst_harness_push(h, text_buffer("Hello world, it is 10:30.", 2 * GST_SECOND)) == GST_FLOW_OK, "push text");
  GstCaps *caps = gst_pad_get_current_caps(h->sinkpad);
  GstAudioInfo info;
  CHECK(caps && gst_audio_info_from_caps(&info, caps) && GST_AUDIO_INFO_FORMAT(&info) == GST_AUDIO_FORMAT_S16LE &&
            GST_AUDIO_INFO_RATE(&info) == 16000 && GST_AUDIO_INFO_CHANNELS(&info) == 1,
        "S16LE mono 16 kHz out: %" GST_PTR_FORMAT, caps);
  if (caps) gst_caps_unref(caps);
  audio_out a = {0};
  pull_audio(h, &a, 2);
  CHECK(a.buffers > 3 && a.continuous, "audio in %d chunks, continuous: %d", a.buffers, a.continuous);
  CHECK(a.first_pts == 2 * GST_SECOND, "speech starts at its text's timestamp (%" GST_TIME_FORMAT ")", GST_TIME_ARGS(a.first_pts));
  CHECK(a.biggest <= 4096 * 2, "streamed in chunks (largest %zu bytes)", a.biggest);
  GstClockTime dur = a.end - a.first_pts, want = gst_util_uint64_scale_int(a.samples, GST_SECOND, 16000);
  CHECK(llabs((long long)dur - (long long)want) < GST_MSECOND, "durations add up to the samples (%" GST_TIME_FORMAT ")", GST_TIME_ARGS(dur));
  GstClockTime wts = 0;
  char w0[64] = "";
  int words = count_words(h, &wts, w0, sizeof w0);
  CHECK(words >= 1 && !strcmp(w0, "hello") && wts == 2 * GST_SECOND, "first word message: %d words, \"%s\" at %" GST_TIME_FORMAT,
        words, w0, GST_TIME_ARGS(wts));
  /* the next text, with no timestamp, follows straight on */
  CHECK(gst_harness_push(h, text_buffer("Again.", GST_CLOCK_TIME_NONE)) == GST_FLOW_OK, "push text");
  GstClockTime end = a.end;
  audio_out b = {0};
  pull_audio(h, &b, 2);
  CHECK(b.buffers > 0 && b.first_pts == end && b.continuous, "continues at %" GST_TIME_FORMAT " (got %" GST_TIME_FORMAT ")",
        GST_TIME_ARGS(end), GST_TIME_ARGS(b.first_pts));
  /* EOS passes after the audio */
  CHECK(gst_harness_push_event(h, gst_event_new_eos()), "eos");
  GstEvent *ev;
  gboolean eos = FALSE;
  while ((ev = gst_harness_try_pull_event(h))) {
    eos |= GST_EVENT_TYPE(ev) == GST_EVENT_EOS;
    gst_event_unref(ev);
  }
  CHECK(eos, "EOS downstream");
  teardown(h);
  unlink(model);
  g_free(model);
}

TEST(float_output_when_downstream_wants_it_and_markup_is_read_as_text) {
  char *model = tiny_voice();
  GstHarness *h = harness(model, "pango-markup", "audio/x-raw,format=F32LE,rate=16000,channels=1,layout=interleaved");
  CHECK(gst_harness_push(h, text_buffer("<b>Bold</b> &amp; <i>brave</i>", 0)) == GST_FLOW_OK, "push markup");
  GstCaps *caps = gst_pad_get_current_caps(h->sinkpad);
  GstAudioInfo info;
  CHECK(caps && gst_audio_info_from_caps(&info, caps) && GST_AUDIO_INFO_FORMAT(&info) == GST_AUDIO_FORMAT_F32LE, "F32LE out");
  if (caps) gst_caps_unref(caps);
  audio_out a = {0};
  pull_audio(h, &a, 4);
  char w0[64] = "";
  count_words(h, NULL, w0, sizeof w0);
  CHECK(a.samples > 0 && a.peak <= 1.0 && !strcmp(w0, "bold"), "spoke the markup's text (%" G_GUINT64_FORMAT " samples, first word \"%s\")",
        a.samples, w0);
  teardown(h);
  unlink(model);
  g_free(model);
}

/* The same sentence as F32 samples, with the contrast property set. */
static GArray *speak_with_contrast(const char *model, double contrast) {
  GstHarness *h = harness(model, "utf8", "audio/x-raw,format=F32LE,rate=16000,channels=1,layout=interleaved");
  GstElement *tts = gst_harness_find_element(h, "e2etts");
  g_object_set(tts, "contrast", contrast, NULL);
  gst_object_unref(tts);
  gst_harness_push(h, text_buffer("Hello there.", 0));
  GArray *out = g_array_new(FALSE, FALSE, sizeof(float));
  GstBuffer *b;
  while ((b = gst_harness_try_pull(h))) {
    GstMapInfo map;
    if (gst_buffer_map(b, &map, GST_MAP_READ)) {
      g_array_append_vals(out, map.data, (guint)(map.size / sizeof(float)));
      gst_buffer_unmap(b, &map);
    }
    gst_buffer_unref(b);
  }
  teardown(h);
  return out;
}

TEST(the_contrast_property_changes_the_sound_not_the_timing) {
  /* a voice whose file says 1.4 */
  char *model = tiny_voice();
  tts_model m;
  CHECK(tts_load(&m, model), "load: %s", nn_last_error());
  m.contrast = 1.4f;
  CHECK(tts_save(&m, model, NULL, 0), "save: %s", nn_last_error());
  tts_free(&m);
  double c0;
  GstElement *e = gst_element_factory_make("e2etts", NULL);
  g_object_get(e, "contrast", &c0, NULL);
  gst_object_unref(e);
  GArray *own = speak_with_contrast(model, 0.0), *file = speak_with_contrast(model, 1.4),
         *one = speak_with_contrast(model, 1.0);
  CHECK(c0 == 0.0, "default 0: the model's own (%g)", c0);
  CHECK(own->len > 0 && own->len == file->len && !memcmp(own->data, file->data, sizeof(float) * own->len),
        "contrast 0 speaks with the file's 1.4: %u and %u samples", own->len, file->len);
  double diff = 0;
  for (guint i = 0; i < MIN(one->len, own->len); i++) diff += fabs(g_array_index(one, float, i) - g_array_index(own, float, i));
  CHECK(one->len == own->len && diff > 0, "contrast 1: as long (%u samples), different sound (%g)", one->len, diff);
  g_array_free(own, TRUE), g_array_free(file, TRUE), g_array_free(one, TRUE);
  unlink(model);
  g_free(model);
}

TEST(bad_text_gives_silence_not_errors) {
  char *model = tiny_voice();
  GstHarness *h = harness(model, "utf8", NULL);
  const char *bad[] = {"", "...!?", "\xff\xfe\xfd", "\xf0\x9f\x99\x82\xf0\x9f\x99\x82", "\x01\x02\x03"};
  for (size_t i = 0; i < G_N_ELEMENTS(bad); i++)
    CHECK(gst_harness_push(h, text_buffer(bad[i], GST_CLOCK_TIME_NONE)) == GST_FLOW_OK, "bad text %zu accepted", i);
  audio_out a = {0};
  pull_audio(h, &a, 2);
  CHECK(a.samples == 0, "nothing to say, nothing said (%" G_GUINT64_FORMAT " samples)", a.samples);
  /* a 10-digit number and a few sentences in one buffer (100 kB is the flush test's) */
  CHECK(gst_harness_push(h, text_buffer("Call 9876543210. More words here. And here.", GST_CLOCK_TIME_NONE)) == GST_FLOW_OK,
        "several sentences");
  pull_audio(h, &a, 2);
  CHECK(a.samples > 16000 && a.continuous, "long text spoken: %.1f s", a.samples / 16000.0);
  teardown(h);
  unlink(model);
  g_free(model);
}

typedef struct {
  GstHarness *h;
  GstFlowReturn ret;
} push_job;

static gpointer push_long_text(gpointer data) {
  push_job *j = data;
  GString *big = g_string_new("");
  while (big->len < 100000) g_string_append(big, "A long text that takes a while to say. ");
  j->ret = gst_harness_push(j->h, text_buffer(big->str, 0));
  g_string_free(big, TRUE);
  return NULL;
}

TEST(a_flush_in_the_middle_of_a_long_text_stops_it_and_speech_goes_on_after) {
  char *model = tiny_voice();
  GstHarness *h = harness(model, "utf8", NULL);
  push_job j = {h, GST_FLOW_OK};
  GThread *t = g_thread_new("push", push_long_text, &j);
  /* wait for audio to flow (under valgrind, normalising the 100 kB alone takes seconds), then flush from this
   * thread: the flush must land in the middle of synthesis */
  for (int i = 0; i < 6000 && gst_harness_buffers_received(h) < 3; i++) g_usleep(10000);
  CHECK(gst_harness_buffers_received(h) >= 3, "audio flowed before the flush");
  gint64 t0 = g_get_monotonic_time();
  gst_harness_push_event(h, gst_event_new_flush_start());
  g_thread_join(t);
  double ms = (g_get_monotonic_time() - t0) / 1000.0;
  CHECK(j.ret == GST_FLOW_FLUSHING && ms < 2000, "the push ended with FLUSHING (%s) %.0f ms after the flush",
        gst_flow_get_name(j.ret), ms);
  gst_harness_push_event(h, gst_event_new_flush_stop(TRUE));
  GstSegment seg;
  gst_segment_init(&seg, GST_FORMAT_TIME);
  gst_harness_push_event(h, gst_event_new_segment(&seg));
  audio_out a = {0};
  pull_audio(h, &a, 2);
  CHECK(gst_harness_push(h, text_buffer("After the flush.", 0)) == GST_FLOW_OK, "speaks after the flush");
  audio_out b = {0};
  pull_audio(h, &b, 2);
  CHECK(b.buffers > 0 && b.first_pts == 0, "new speech from the new segment's start (%" GST_TIME_FORMAT ")", GST_TIME_ARGS(b.first_pts));
  teardown(h);
  unlink(model);
  g_free(model);
}

/* Runs a launch line to EOS or error; returns TRUE on EOS, the error's message in *error. */
static gboolean run_to_end(const char *launch, gchar **error, double seconds) {
  GError *err = NULL;
  GstElement *p = gst_parse_launch(launch, &err);
  if (!p) {
    *error = g_strdup(err ? err->message : "parse");
    g_clear_error(&err);
    return FALSE;
  }
  gst_element_set_state(p, GST_STATE_PLAYING);
  GstBus *bus = gst_element_get_bus(p);
  GstMessage *m = gst_bus_timed_pop_filtered(bus, (GstClockTime)(seconds * GST_SECOND), GST_MESSAGE_EOS | GST_MESSAGE_ERROR);
  gboolean eos = m && GST_MESSAGE_TYPE(m) == GST_MESSAGE_EOS;
  if (m && GST_MESSAGE_TYPE(m) == GST_MESSAGE_ERROR) {
    GError *e = NULL;
    gst_message_parse_error(m, &e, NULL);
    *error = g_strdup(e->message);
    g_error_free(e);
  } else if (!m) {
    *error = g_strdup("timed out");
  }
  if (m) gst_message_unref(m);
  gst_object_unref(bus);
  gst_element_set_state(p, GST_STATE_NULL);
  gst_object_unref(p);
  return eos;
}

TEST(the_text_property_makes_a_source_and_bad_settings_are_refused) {
  char *model = tiny_voice();
  gchar *err = NULL;
  gchar *launch = g_strdup_printf("e2etts model=%s text=\"Hello there.\" ! audioconvert ! fakesink", model);
  CHECK(run_to_end(launch, &err, 30), "source mode reaches EOS (%s)", err ? err : "");
  g_free(launch), g_free(err), err = NULL;
  /* composes with the recogniser: e2etts ! e2easr */
  launch = g_strdup_printf("e2etts model=%s text=\"One two three.\" ! audioconvert ! audioresample ! e2easr ! fakesink", model);
  CHECK(run_to_end(launch, &err, 60), "e2etts ! e2easr reaches EOS (%s)", err ? err : "");
  g_free(launch), g_free(err), err = NULL;
  launch = g_strdup_printf("e2etts model=%s ! fakesink", model);
  CHECK(!run_to_end(launch, &err, 10) && err && strstr(err, "Nothing to say"), "no text anywhere: \"%s\"", err ? err : "");
  g_free(launch), g_free(err), err = NULL;
  FILE *f = fopen("/tmp/e2e-tts-corrupt.safetensors", "wb");
  fputs("not a model at all", f);
  fclose(f);
  CHECK(!run_to_end("e2etts model=/tmp/e2e-tts-corrupt.safetensors text=hi ! fakesink", &err, 10) && err,
        "a corrupt model is an error: \"%s\"", err ? err : "");
  g_free(err);
  unlink("/tmp/e2e-tts-corrupt.safetensors");
  unlink(model);
  g_free(model);
}
