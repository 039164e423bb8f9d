/* The elements under abuse: absurd property values are refused with a message naming the property;
 * a thousand NULL -> PLAYING -> NULL cycles with flushing seeks leave no GStreamer object alive and no
 * memory behind (GStreamer's leaks tracer counts the objects); four pipelines sharing one loaded model
 * through model-name, running at once, compute exactly what one pipeline computes alone.
 * E2E_STATE_CYCLES sets the number of cycles (1000; the valgrind run takes fewer). */
#include <gst/gst.h>
#include <gst/video/video.h>
#include <malloc.h>
#include <stdio.h>
#include <unistd.h>

#include "e2e/asr.h"
#include "e2e/codec.h"
#include "e2e/detect.h"
#include "../harness.h"

static GstTracer *leaks;

__attribute__((constructor)) static void init_gst(void) {
  /* the leaks tracer must be named before gst_init; it tracks every GstObject and GstMiniObject */
  /* only pipeline-level types: the tracer's list of live objects holds references that it drops when the list
   * is freed, which registry features (never meant to go) do not survive */
  if (!g_getenv("E2E_NO_LEAKS_TRACER"))
    g_setenv("GST_TRACERS", "leaks(filters=GstElement,GstPad,GstBus,GstTask,GstBufferPool,GstAllocator,GstClock,GstBuffer,"
             "GstBufferList,GstEvent,GstMessage,GstQuery,GstCaps,GstMemory,GstSample,GstContext,GstTagList,GstToc)", TRUE);
  g_setenv("GST_PLUGIN_PATH", E2E_PLUGIN_BUILD_DIR, TRUE);
  gst_init(NULL, NULL);
  gst_registry_scan_path(gst_registry_get(), E2E_PLUGIN_BUILD_DIR);
  GList *tracers = gst_tracing_get_active_tracers();
  for (GList *l = tracers; l; l = l->next)
    if (!leaks && !strcmp(G_OBJECT_TYPE_NAME(l->data), "GstLeaksTracer")) leaks = gst_object_ref(l->data);
  g_list_free_full(tracers, gst_object_unref);
}

/* ---------------------------------------------------------------- small models */

/* Saves m (dropping the reference) to a temporary file named after what; returns the path. */
static char *saved(e2e_model *m, const char *what) {
  char *p = g_strdup_printf("/tmp/e2e-robust-%s-%d.safetensors", what, getpid());
  CHECK(m && e2e_model_save(m, p, NULL, 0), "save the tiny %s model", what);
  e2e_model_unref(m);
  return p;
}

static char *tiny_detector(void) {
  det_config cfg = det_config_default(2, 64);
  cfg.width = 8;
  snprintf(cfg.labels[0], DET_LABEL_LEN, "cat");
  snprintf(cfg.labels[1], DET_LABEL_LEN, "dog");
  return saved(e2e_detect_model_new(&cfg, 3), "detect");
}

static char *tiny_codec(void) {
  codec_config cfg = codec_config_default();
  cfg.n = 16, cfg.m = 24;
  return saved(e2e_codec_model_new(&cfg, 3), "codec");
}

static char *tiny_recogniser(void) { return saved(e2e_asr_model_new(16, 1, 3), "asr"); }

/* ---------------------------------------------------------------- absurd property values */

static GString *logged;

static void capture(const gchar *domain, GLogLevelFlags level, const gchar *message, gpointer data) {
  g_string_append_printf(logged, "%s\n", message);
}

/* Sets name to an absurd value (given as a string, parsed by the property's own type) and checks that
 * the element keeps its old value and that a message names the property. */
static void check_refused(GstElement *e, const char *name, const char *absurd) {
  GParamSpec *ps = g_object_class_find_property(G_OBJECT_GET_CLASS(e), name);
  CHECK(ps != NULL, "%s has a %s property", GST_ELEMENT_NAME(e), name);
  if (!ps) return;
  GValue before = G_VALUE_INIT, after = G_VALUE_INIT, v = G_VALUE_INIT;
  g_value_init(&before, ps->value_type);
  g_value_init(&after, ps->value_type);
  g_object_get_property(G_OBJECT(e), name, &before);
  g_value_init(&v, G_TYPE_UINT64);
  g_value_set_uint64(&v, g_ascii_strtoull(absurd, NULL, 10));
  GValue set = G_VALUE_INIT;
  g_value_init(&set, ps->value_type);
  if (!g_value_transform(&v, &set)) g_value_set_uint(&set, G_MAXUINT);
  g_string_truncate(logged, 0);
  g_object_set_property(G_OBJECT(e), name, &set);
  g_object_get_property(G_OBJECT(e), name, &after);
  CHECK(gst_value_compare(&before, &after) == GST_VALUE_EQUAL, "%s %s=%s: the old value stays", GST_ELEMENT_NAME(e),
        name, absurd);
  CHECK(strstr(logged->str, name) != NULL, "%s %s=%s: a message names the property (got \"%s\")", GST_ELEMENT_NAME(e),
        name, absurd, logged->str);
  g_value_unset(&before), g_value_unset(&after), g_value_unset(&v), g_value_unset(&set);
}

TEST(absurd_property_values_are_refused_with_a_message) {
  logged = g_string_new(NULL);
  guint h1 = g_log_set_handler("GLib-GObject", G_LOG_LEVEL_WARNING | G_LOG_LEVEL_CRITICAL, capture, NULL);
  guint h2 = g_log_set_handler("GStreamer", G_LOG_LEVEL_WARNING | G_LOG_LEVEL_CRITICAL, capture, NULL);
  guint h3 = g_log_set_handler(NULL, G_LOG_LEVEL_WARNING | G_LOG_LEVEL_CRITICAL, capture, NULL);
  static const char *const elements[] = {"e2edetect", "e2ecodecenc", "e2ecodecdec", "e2easr", "e2etrain", "e2etrainfilter"};
  for (size_t i = 0; i < G_N_ELEMENTS(elements); i++) {
    GstElement *e = gst_element_factory_make(elements[i], NULL);
    CHECK(e != NULL, "make %s", elements[i]);
    if (!e) continue;
    check_refused(e, "num-threads", "10000");
    if (g_object_class_find_property(G_OBJECT_GET_CLASS(e), "max-memory")) check_refused(e, "max-memory", "4294967295");
    if (!strcmp(elements[i], "e2edetect")) {
      check_refused(e, "input-size", "100000");
      check_refused(e, "max-detections", "100000000");
      check_refused(e, "interval", "1000000");
    }
    if (!strcmp(elements[i], "e2ecodecenc")) {
      check_refused(e, "quality", "100");
      check_refused(e, "refine-steps", "100000000");
    }
    if (g_str_has_prefix(elements[i], "e2etrain")) {
      check_refused(e, "batch-size", "100000");
      check_refused(e, "buffer-size", "100000000");
      check_refused(e, "holdout", "5");
      check_refused(e, "learning-rate", "1000");
    }
    if (!strcmp(elements[i], "e2easr")) {
      check_refused(e, "beam-width", "100000");
      check_refused(e, "max-segment", "100000000");
      check_refused(e, "preroll", "100000000");
    }
    gst_object_unref(e);
  }
  g_log_remove_handler("GLib-GObject", h1);
  g_log_remove_handler("GStreamer", h2);
  g_log_remove_handler(NULL, h3);
  g_string_free(logged, TRUE);
}

/* ---------------------------------------------------------------- state cycles */

/* Resident memory after handing free heap pages back, so that what malloc merely keeps around (per-thread
 * arenas that each new streaming thread may pick) does not read as growth. */
static long rss_kb(void) {
  malloc_trim(0);
  FILE *f = fopen("/proc/self/status", "r");
  char line[256];
  long v = -1;
  while (f && fgets(line, sizeof line, f))
    if (!strncmp(line, "VmRSS:", 6)) v = atol(line + 6);
  if (f) fclose(f);
  return v;
}

/* GStreamer objects alive now (of the types the tracer follows). */
static int live_objects(void) {
  if (!leaks) return 0;
  /* a task's thread drops its last reference to the task after the pipeline is gone; until it has, the
   * tracer would count the task, and its list (which takes references) races with that last unref */
  gst_task_cleanup_all();
  GstStructure *st = NULL;
  g_signal_emit_by_name(leaks, "get-live-objects", &st);
  const GValue *list = st ? gst_structure_get_value(st, "live-objects-list") : NULL;
  int n = list ? (int)gst_value_list_get_size(list) : 0;
  if (g_getenv("E2E_LEAK_DEBUG") && st) {
    gchar *t = gst_structure_to_string(st);
    printf("%s\n", t);
    g_free(t);
  }
  if (st) gst_structure_free(st);
  return n;
}

/* Drops our reference to a pipeline and waits until it is gone: a streaming thread may hold the last one
 * for a moment after NULL, and the next cycle (or a count of live objects) must not overlap with that. */
static void finalize(GstElement *p) {
  GWeakRef w;
  g_weak_ref_init(&w, p);
  gst_object_unref(p);
  for (int i = 0; i < 10000; i++) {
    GObject *o = g_weak_ref_get(&w);
    if (!o) break;
    g_object_unref(o);
    g_usleep(1000);
  }
  g_weak_ref_clear(&w);
}

/* One cycle: NULL -> PLAYING; every other cycle a flushing seek back to the start once it plays; then
 * to the end of the stream (or an error), and back to NULL. */
static bool one_cycle(const char *desc, int i) {
  GError *err = NULL;
  GstElement *p = gst_parse_launch(desc, &err);
  if (!p) {
    printf("    %s: %s\n", desc, err->message);
    g_error_free(err);
    return false;
  }
  gst_element_set_state(p, GST_STATE_PLAYING);
  if (i % 2) {
    gst_element_get_state(p, NULL, NULL, 5 * GST_SECOND);
    gst_element_seek_simple(p, GST_FORMAT_TIME, GST_SEEK_FLAG_FLUSH, 0);
  }
  GstBus *bus = gst_element_get_bus(p);
  GstMessage *m = gst_bus_timed_pop_filtered(bus, 20 * GST_SECOND, GST_MESSAGE_EOS | GST_MESSAGE_ERROR);
  bool ok = m && GST_MESSAGE_TYPE(m) == GST_MESSAGE_EOS;
  if (m && !ok) {
    GError *e = NULL;
    gst_message_parse_error(m, &e, NULL);
    printf("    cycle %d: %s\n", i, e->message);
    g_error_free(e);
  }
  if (m) gst_message_unref(m);
  gst_element_set_state(p, GST_STATE_NULL);
  gst_bus_set_flushing(bus, TRUE);
  gst_object_unref(bus);
  finalize(p);
  return ok;
}

static void cycle_many(const char *what, const char *desc) {
  int cycles = g_getenv("E2E_STATE_CYCLES") ? atoi(g_getenv("E2E_STATE_CYCLES")) : 1000, warm = cycles < 100 ? 2 : 20;
  int failed = 0;
  for (int i = 0; i < warm; i++) failed += !one_cycle(desc, i); /* caches, the registry, first allocations */
  int objects0 = live_objects();
  long rss0 = rss_kb(), rss_mid = rss0;
  for (int i = warm; i < cycles; i++) {
    failed += !one_cycle(desc, i);
    if (i == cycles / 4) rss_mid = rss_kb();
  }
  long rss1 = rss_kb();
  int objects1 = live_objects(), grown = objects1 - objects0;
  printf("    %s: %d cycles, %d failed; GStreamer objects alive before and after: %d, %d%s; RSS %ld -> %ld -> %ld kB\n",
         what, cycles, failed, objects0, objects1, leaks ? "" : " (no leaks tracer)", rss0, rss_mid, rss1);
  CHECK(failed == 0, "%s: every cycle reaches the end of its stream", what);
  CHECK(grown <= 0, "%s: %d GStreamer objects outlive their pipelines", what, grown);
  /* after the first quarter, memory stays put: a leak of 4 kB per cycle would show over 750 cycles (malloc's
   * per-thread arenas, met by each new streaming thread, move RSS by a megabyte or so either way) */
  CHECK(cycles < 100 || rss1 - rss_mid <= 3072, "%s: RSS grew by %ld kB over the last three quarters", what, rss1 - rss_mid);
}

TEST(a_thousand_state_cycles_with_flushing_seeks_leak_nothing) {
  char *det = tiny_detector(), *codec = tiny_codec(), *asr = tiny_recogniser();
  char *d = g_strdup_printf("videotestsrc num-buffers=3 ! video/x-raw,width=64,height=48 ! e2edetect model=%s "
                            "num-threads=1 ! e2eoverlay ! fakesink", det);
  char *c = g_strdup_printf("videotestsrc num-buffers=2 ! video/x-raw,width=64,height=64 ! e2ecodecenc model=%s "
                            "num-threads=1 ! e2ecodecparse ! e2ecodecdec model=%s num-threads=1 ! fakesink", codec, codec);
  char *a = g_strdup_printf("audiotestsrc num-buffers=8 samplesperbuffer=1600 wave=pink-noise ! audio/x-raw,rate=16000 ! "
                            "e2easr model=%s num-threads=1 vad-threshold=0 ! fakesink", asr);
  cycle_many("e2edetect + e2eoverlay", d);
  cycle_many("e2ecodecenc + parse + dec", c);
  cycle_many("e2easr", a);
  g_free(d), g_free(c), g_free(a);
  unlink(det), unlink(codec), unlink(asr);
  g_free(det), g_free(codec), g_free(asr);
}

/* ---------------------------------------------------------------- one model, four pipelines */

/* Every buffer's ROI metas (detect) or bytes' checksum (codec), as text, in order. */
static GstPadProbeReturn record(GstPad *pad, GstPadProbeInfo *info, gpointer data) {
  GString *out = data;
  GstBuffer *b = GST_PAD_PROBE_INFO_BUFFER(info);
  gpointer st = NULL;
  GstMeta *m;
  int n = 0;
  while ((m = gst_buffer_iterate_meta_filtered(b, &st, GST_VIDEO_REGION_OF_INTEREST_META_API_TYPE))) {
    GstVideoRegionOfInterestMeta *r = (GstVideoRegionOfInterestMeta *)m;
    g_string_append_printf(out, "%u,%u,%u,%u ", r->x, r->y, r->w, r->h);
    n++;
  }
  GstMapInfo map;
  if (!n && gst_buffer_map(b, &map, GST_MAP_READ)) {
    g_string_append_printf(out, "%08x ", codec_crc32(map.data, map.size));
    gst_buffer_unmap(b, &map);
  }
  g_string_append_c(out, '\n');
  return GST_PAD_PROBE_OK;
}

/* Runs k copies of desc at once (each with its sink called "out") and returns what each recorded. */
static void run_together(const char *desc, int k, GString **out) {
  GstElement *p[4];
  for (int i = 0; i < k; i++) {
    p[i] = gst_parse_launch(desc, NULL);
    out[i] = g_string_new(NULL);
    GstElement *sink = gst_bin_get_by_name(GST_BIN(p[i]), "out");
    GstPad *pad = gst_element_get_static_pad(sink, "sink");
    gst_pad_add_probe(pad, GST_PAD_PROBE_TYPE_BUFFER, record, out[i], NULL);
    gst_object_unref(pad), gst_object_unref(sink);
  }
  for (int i = 0; i < k; i++) gst_element_set_state(p[i], GST_STATE_PLAYING);
  for (int i = 0; i < k; i++) {
    GstBus *bus = gst_element_get_bus(p[i]);
    GstMessage *m = gst_bus_timed_pop_filtered(bus, 300 * GST_SECOND, GST_MESSAGE_EOS | GST_MESSAGE_ERROR);
    CHECK(m && GST_MESSAGE_TYPE(m) == GST_MESSAGE_EOS, "pipeline %d reaches its end", i);
    if (m) gst_message_unref(m);
    gst_object_unref(bus);
  }
  for (int i = 0; i < k; i++) gst_element_set_state(p[i], GST_STATE_NULL), finalize(p[i]);
}

static void same_as_one(const char *what, const char *desc) {
  GString *one[1], *four[4];
  run_together(desc, 1, one);
  run_together(desc, 4, four);
  CHECK(one[0]->len > 0, "%s: the pipeline produced something", what);
  for (int i = 0; i < 4; i++) {
    CHECK(!strcmp(one[0]->str, four[i]->str), "%s: pipeline %d of four differs from one alone", what, i);
    g_string_free(four[i], TRUE);
  }
  printf("    %s: four pipelines at once, each %zu bytes of results equal to one alone\n", what, one[0]->len);
  g_string_free(one[0], TRUE);
}

TEST(four_pipelines_sharing_one_model_compute_what_one_does) {
  /* fewer frames where the cycles are few too (under valgrind) */
  int frames = g_getenv("E2E_STATE_CYCLES") && atoi(g_getenv("E2E_STATE_CYCLES")) < 100 ? 3 : 12;
  char *det = tiny_detector(), *codec = tiny_codec();
  char *d = g_strdup_printf("videotestsrc num-buffers=%d pattern=ball ! video/x-raw,width=96,height=64 ! e2edetect "
                            "model=%s model-name=robust-shared-detector threshold=0.01 num-threads=2 ! fakesink name=out",
                            frames, det);
  char *c = g_strdup_printf("videotestsrc num-buffers=4 pattern=ball ! video/x-raw,width=64,height=64 ! e2ecodecenc "
                            "model=%s model-name=robust-shared-codec num-threads=2 ! fakesink name=out", codec);
  same_as_one("e2edetect", d);
  same_as_one("e2ecodecenc", c);
  g_free(d), g_free(c);
  unlink(det), unlink(codec);
  g_free(det), g_free(codec);
}
