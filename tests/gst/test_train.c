/* e2etrain through GstHarness, with a tiny detector for seconds: frames with region-of-interest metas in,
 * validated versions published into the named slot (which e2edetect reads), a version that does not
 * beat the live one rejected (the live one stays), checkpoints written and resumed from, bad labels
 * counted and skipped, a full replay buffer dropping frames instead of blocking, and state changes while
 * the trainer runs. */
#include <glib/gstdio.h>
#include <math.h>
#include <gst/check/gstharness.h>
#include <gst/video/video.h>
#include <signal.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "e2e/detect.h"
#include "../harness.h"

#define W 64
#define H 48

__attribute__((constructor)) static void init_gst(void) {
  gst_init(NULL, NULL);
  g_setenv("GST_PLUGIN_PATH", E2E_PLUGIN_BUILD_DIR, TRUE);
  gst_registry_scan_path(gst_registry_get(), E2E_PLUGIN_BUILD_DIR);
}

/* The child of the kill -9 test: trains on test frames until it is killed, publishing (so writing a
 * checkpoint) after every step. */
__attribute__((constructor(200))) static void train_until_killed(void) {
  const char *dir = getenv("E2E_TRAIN_UNTIL_KILLED"), *model = getenv("E2E_TRAIN_MODEL");
  if (!dir || !model) return;
  gst_init(NULL, NULL);
  gst_registry_scan_path(gst_registry_get(), E2E_PLUGIN_BUILD_DIR);
  char *desc = g_strdup_printf("videotestsrc pattern=ball ! video/x-raw,format=RGB,width=64,height=48,framerate=30/1 ! "
                               "e2etrain model=%s holdout=0 publish-every=1 batch-size=1 buffer-size=2 num-threads=1 "
                               "checkpoint-dir=%s", model, dir);
  GstElement *p = gst_parse_launch(desc, NULL);
  if (!p || gst_element_set_state(p, GST_STATE_PLAYING) == GST_STATE_CHANGE_FAILURE) _exit(3);
  for (;;) g_usleep(G_USEC_PER_SEC);
}

static char *tiny_detector(const char *what) {
  det_config cfg = det_config_default(2, 64);
  cfg.width = 8;
  snprintf(cfg.labels[0], DET_LABEL_LEN, "cat");
  snprintf(cfg.labels[1], DET_LABEL_LEN, "dog");
  e2e_model *m = e2e_detect_model_new(&cfg, 3);
  char *p = g_strdup_printf("%s/e2e-train-%s-%d.safetensors", g_get_tmp_dir(), what, (int)getpid());
  CHECK(m && e2e_model_save(m, p, NULL, 0), "save the tiny detector");
  e2e_model_unref(m);
  return p;
}

/* Frame i: a grey field with a bright square moving across it, labelled "cat" (and any extra metas). */
static GstBuffer *frame(int i, const char *extra_label, int ex, int ey, int ew, int eh) {
  GstBuffer *b = gst_buffer_new_allocate(NULL, W * H * 3, NULL);
  GstMapInfo m;
  gst_buffer_map(b, &m, GST_MAP_WRITE);
  int x0 = 4 + (i * 3) % (W - 24), y0 = 6 + (i * 5) % (H - 24);
  for (int y = 0; y < H; y++)
    for (int x = 0; x < W; x++)
      for (int c = 0; c < 3; c++)
        m.data[(y * W + x) * 3 + c] = x >= x0 && x < x0 + 16 && y >= y0 && y < y0 + 16 ? 230 : 60 + (x + y) % 7;
  gst_buffer_unmap(b, &m);
  gst_buffer_add_video_region_of_interest_meta(b, "cat", (guint)x0, (guint)y0, 16, 16);
  if (extra_label) gst_buffer_add_video_region_of_interest_meta(b, extra_label, (guint)ex, (guint)ey, (guint)ew, (guint)eh);
  GST_BUFFER_OFFSET(b) = (guint64)i;
  GST_BUFFER_PTS(b) = (GstClockTime)i * GST_SECOND / 30;
  return b;
}

/* An e2edetect on slot `name`, as a harness fed 64x48 RGB. */
static GstHarness *detector_on(const char *name, const char *model) {
  char *props = g_strdup_printf("e2edetect model-name=%s model=%s num-threads=1", name, model);
  GstElement *e = gst_parse_launch(props, NULL);
  GstHarness *d = gst_harness_new_with_element(e, "sink", "src");
  gst_object_unref(e);
  g_free(props);
  gst_harness_set_src_caps_str(d, "video/x-raw,format=RGB,width=64,height=48,framerate=30/1");
  return d;
}

/* bus: given one, the element posts to it from the start (warnings at start included) */
static GstHarness *trainer_on(const char *props, GstBus *bus) {
  GstElement *e = gst_parse_launch(props, NULL); /* one element: the element itself, not a bin */
  if (bus) gst_element_set_bus(e, bus);
  GstHarness *h = gst_harness_new_with_element(e, "sink", NULL);
  gst_object_unref(e);
  gst_harness_set_src_caps_str(h, "video/x-raw,format=RGB,width=64,height=48,framerate=30/1");
  return h;
}

static GstHarness *trainer(const char *props) { return trainer_on(props, NULL); }

/* Waits up to `seconds` for an element message called name on bus; counts every message of each kind. */
static GstStructure *wait_for(GstBus *bus, const char *name, double seconds, int *published, int *rejected) {
  gint64 end = g_get_monotonic_time() + (gint64)(seconds * 1e6);
  while (g_get_monotonic_time() < end) {
    GstMessage *msg = gst_bus_timed_pop(bus, 50 * GST_MSECOND);
    if (!msg) continue;
    const GstStructure *s = gst_message_get_structure(msg);
    GstStructure *found = NULL;
    if (s && GST_MESSAGE_TYPE(msg) == GST_MESSAGE_ELEMENT) {
      if (published) *published += gst_structure_has_name(s, "e2etrain-published");
      if (rejected) *rejected += gst_structure_has_name(s, "e2etrain-rejected");
      if (gst_structure_has_name(s, name)) found = gst_structure_copy(s);
    }
    gst_message_unref(msg);
    if (found) return found;
  }
  return NULL;
}

/* Tears a harness down after its element posted to bus: the element holds the bus and the bus's messages
 * hold the element, so the bus is flushed and taken off first. */
static void teardown(GstHarness *h, GstBus *bus) {
  gst_element_set_state(h->element, GST_STATE_NULL);
  gst_bus_set_flushing(bus, TRUE);
  gst_element_set_bus(h->element, NULL);
  gst_harness_teardown(h);
}

static GstStructure *stats_of(GstHarness *h) {
  GstStructure *s = NULL;
  g_object_get(h->element, "training-stats", &s, NULL);
  return s;
}

TEST(validated_versions_reach_the_slot_that_e2edetect_reads_and_checkpoints_resume) {
  char *model = tiny_detector("pub"), *dir = g_strdup_printf("%s/e2e-train-ck-%d", g_get_tmp_dir(), (int)getpid());
  char *props = g_strdup_printf("e2etrain model=%s model-name=train-slot publish-every=3 holdout=0.4 batch-size=2 "
                                "buffer-size=8 min-improvement=-1 leaky=false num-threads=1 checkpoint-dir=%s", model, dir);
  /* an e2edetect on the same slot: it must run on whatever version is live */
  GstHarness *d = detector_on("train-slot", model);
  GstHarness *h = trainer(props);
  GstBus *bus = gst_bus_new();
  gst_element_set_bus(h->element, bus);
  int published = 0, rejected = 0;
  GstStructure *pub = NULL;
  for (int i = 0; i < 60 && !pub; i++) {
    CHECK(gst_harness_push(h, frame(i, NULL, 0, 0, 0, 0)) == GST_FLOW_OK, "push frame %d", i);
    pub = wait_for(bus, "e2etrain-published", 0.01, &published, &rejected);
  }
  if (!pub) pub = wait_for(bus, "e2etrain-published", 60, &published, &rejected);
  CHECK(pub != NULL, "a version was published (%d rejected)", rejected);
  guint64 version = 0;
  gint64 pub_step = 0;
  if (pub) gst_structure_get_int64(pub, "step", &pub_step);
  gchar *ck = pub ? g_strdup(gst_structure_get_string(pub, "checkpoint")) : NULL;
  if (pub) gst_structure_get_uint64(pub, "version", &version);
  CHECK(version >= 2, "the slot moved to version %llu", (unsigned long long)version);
  CHECK(ck && g_file_test(ck, G_FILE_TEST_IS_REGULAR), "the checkpoint %s exists", ck ? ck : "(none)");
  /* e2edetect on the slot runs on the new version from its next frame (the plugin's registry: the test
   * binary has a copy of its own, so the version is read from e2edetect's stats) */
  CHECK(gst_harness_push(d, frame(1, NULL, 0, 0, 0, 0)) == GST_FLOW_OK, "e2edetect runs");
  GstBuffer *out = gst_harness_pull(d);
  CHECK(out != NULL, "e2edetect passes the frame on");
  if (out) gst_buffer_unref(out);
  GstStructure *ds = NULL;
  g_object_get(d->element, "stats", &ds, NULL);
  guint64 seen = 0;
  if (ds) gst_structure_get_uint64(ds, "model-version", &seen), gst_structure_free(ds);
  CHECK(seen >= version, "e2edetect ran on version %llu (published %llu)", (unsigned long long)seen, (unsigned long long)version);
  /* a restart resumes from the last published version */
  e2e_model *latest = ck ? e2e_model_open(ck, E2E_TASK_DETECT) : NULL;
  uint32_t want = latest ? e2e_model_describe(latest)->id : 0;
  e2e_model_unref(latest);
  if (pub) gst_structure_free(pub);
  teardown(h, bus);
  gst_harness_teardown(d);
  gst_bus_set_flushing(bus, FALSE);
  /* after the restart, e2edetect on the slot runs on the resumed weights: its boxes equal those of an
   * e2edetect given the checkpoint file itself */
  /* the restarted trainer publishes nothing new, so the slot keeps what it resumed from while compared */
  char *restart_props = g_strdup_printf("e2etrain model=%s model-name=train-slot publish-every=1000000 holdout=0.4 "
                                        "batch-size=2 buffer-size=8 leaky=false num-threads=1 checkpoint-dir=%s", model, dir);
  h = trainer(restart_props);
  g_free(restart_props);
  gst_element_set_bus(h->element, bus);
  for (int i = 0; i < 6; i++) gst_harness_push(h, frame(300 + i, NULL, 0, 0, 0, 0));
  GstStructure *prog = wait_for(bus, "e2etrain-progress", 60, NULL, NULL);
  gint64 step_after = 0;
  if (prog) gst_structure_get_int64(prog, "step", &step_after), gst_structure_free(prog);
  /* (it may have published again before it stopped: past the first publication's step, not 1 again) */
  CHECK(step_after > pub_step && pub_step >= 3, "the restarted trainer goes on past step %lld (its first step: %lld)",
        (long long)pub_step, (long long)step_after);
  d = detector_on("train-slot", model);
  char *ref_props = g_strdup_printf("e2edetect model=%s num-threads=1 threshold=0.01", ck ? ck : model);
  g_object_set(d->element, "threshold", 0.01f, NULL);
  GstElement *re = gst_parse_launch(ref_props, NULL);
  GstHarness *r = gst_harness_new_with_element(re, "sink", "src");
  gst_object_unref(re);
  gst_harness_set_src_caps_str(r, "video/x-raw,format=RGB,width=64,height=48,framerate=30/1");
  GString *got = g_string_new(NULL), *ref = g_string_new(NULL);
  for (int i = 0; i < 3; i++) {
    GstHarness *hs[2] = {d, r};
    GString *txt[2] = {got, ref};
    for (int k = 0; k < 2; k++) {
      GstBuffer *in = frame(200 + i, NULL, 0, 0, 0, 0), *o;
      gst_harness_push(hs[k], in);
      if (!(o = gst_harness_pull(hs[k]))) continue;
      gpointer st = NULL;
      GstMeta *m;
      while ((m = gst_buffer_iterate_meta_filtered(o, &st, GST_VIDEO_REGION_OF_INTEREST_META_API_TYPE))) {
        GstVideoRegionOfInterestMeta *roi = (GstVideoRegionOfInterestMeta *)m;
        g_string_append_printf(txt[k], "%s %u %u %u %u;", g_quark_to_string(roi->roi_type), roi->x, roi->y, roi->w, roi->h);
      }
      gst_buffer_unref(o);
    }
  }
  CHECK(want && ref->len > 0 && !strcmp(got->str, ref->str), "resumed weights: \"%s\" against the checkpoint's \"%s\"", got->str, ref->str);
  g_string_free(got, TRUE), g_string_free(ref, TRUE);
  g_free(ref_props), g_free(ck);
  gst_harness_teardown(r);
  teardown(h, bus);
  gst_harness_teardown(d);
  gst_object_unref(bus);
  char *cmd = g_strdup_printf("rm -rf '%s'", dir);
  CHECK(system(cmd) == 0, "clean up");
  g_free(cmd);
  unlink(model);
  g_free(model), g_free(dir), g_free(props);
}

TEST(a_version_that_does_not_beat_the_live_one_is_rejected_and_the_live_one_stays) {
  char *model = tiny_detector("rej");
  char *props = g_strdup_printf("e2etrain model=%s model-name=reject-slot publish-every=2 holdout=0.5 batch-size=2 "
                                "buffer-size=8 min-improvement=1 leaky=false num-threads=1", model);
  GstHarness *h = trainer(props);
  GstBus *bus = gst_bus_new();
  gst_element_set_bus(h->element, bus);
  GstHarness *d = detector_on("reject-slot", model);
  int published = 0, rejected = 0;
  GstStructure *rej = NULL;
  for (int i = 0; i < 60 && !rej; i++) {
    gst_harness_push(h, frame(i, NULL, 0, 0, 0, 0));
    rej = wait_for(bus, "e2etrain-rejected", 0.01, &published, &rejected);
  }
  if (!rej) rej = wait_for(bus, "e2etrain-rejected", 60, &published, &rejected);
  CHECK(rej != NULL && published == 0, "rejected, none published (%d)", published);
  const gchar *reason = rej ? gst_structure_get_string(rej, "reason") : NULL;
  CHECK(reason && (strstr(reason, "does not beat") || strstr(reason, "no held-out")), "the reason: %s", reason ? reason : "(none)");
  gst_harness_push(d, frame(1, NULL, 0, 0, 0, 0));
  GstBuffer *o = gst_harness_pull(d);
  if (o) gst_buffer_unref(o);
  GstStructure *ds = NULL;
  g_object_get(d->element, "stats", &ds, NULL);
  guint64 seen = 0;
  if (ds) gst_structure_get_uint64(ds, "model-version", &seen), gst_structure_free(ds);
  CHECK(seen == 1, "the live version stays: e2edetect on the slot runs version %llu", (unsigned long long)seen);
  if (rej) gst_structure_free(rej);
  teardown(h, bus);
  gst_harness_teardown(d);
  gst_object_unref(bus);
  unlink(model);
  g_free(model), g_free(props);
}

TEST(bad_labels_are_counted_and_skipped_and_a_full_buffer_drops_instead_of_blocking) {
  char *model = tiny_detector("bad");
  /* publish-every is far away: the trainer only trains; buffer of 2 cannot keep up with 100 frames pushed at once */
  char *props = g_strdup_printf("e2etrain model=%s publish-every=100000 holdout=0 batch-size=1 buffer-size=2 leaky=true "
                                "num-threads=1", model);
  GstHarness *h = trainer(props);
  GstBus *bus = gst_bus_new();
  gst_element_set_bus(h->element, bus);
  int pushed = 0;
  for (int i = 0; i < 100; i++) {
    /* every 10th frame: one box of an unknown class, one reaching outside the frame */
    GstBuffer *b = i % 10 ? frame(i, NULL, 0, 0, 0, 0) : frame(i, "unicorn", 1, 1, 5, 5);
    if (i % 10 == 0) gst_buffer_add_video_region_of_interest_meta(b, "dog", W - 4, 2, 20, 10);
    pushed += gst_harness_push(h, b) == GST_FLOW_OK;
  }
  GstStructure *s = stats_of(h);
  guint64 frames = 0, dropped = 0, bad = 0;
  gst_structure_get_uint64(s, "frames", &frames);
  gst_structure_get_uint64(s, "dropped", &dropped);
  gst_structure_get_uint64(s, "bad-labels", &bad);
  CHECK(pushed == 100 && frames == 100, "all 100 frames taken (%d pushed, %llu counted)", pushed, (unsigned long long)frames);
  CHECK(bad == 20, "20 bad labels counted, got %llu", (unsigned long long)bad);
  gst_structure_free(s);
  gboolean warned = FALSE;
  GstMessage *msg;
  while (!warned && (msg = gst_bus_pop_filtered(bus, GST_MESSAGE_WARNING))) warned = TRUE, gst_message_unref(msg);
  CHECK(warned, "a warning says labels were skipped");
  /* the drops are counted by the trainer's side and reported with its next progress */
  GstStructure *p = wait_for(bus, "e2etrain-progress", 30, NULL, NULL);
  for (int k = 0; k < 20 && p; k++) { /* the latest progress */
    gst_structure_get_uint64(p, "dropped", &dropped);
    if (dropped) break;
    gst_structure_free(p);
    p = wait_for(bus, "e2etrain-progress", 5, NULL, NULL);
  }
  CHECK(dropped > 0, "a full buffer dropped frames (%llu) instead of holding the stream back", (unsigned long long)dropped);
  if (p) gst_structure_free(p);
  teardown(h, bus);
  gst_object_unref(bus);
  unlink(model);
  g_free(model), g_free(props);
}

/* Supervised fine-tuning from a label file: boxes come from the file by frame number (stream time times the
 * frame rate), not from the metas; frames the file does not list are not trained on; unusable lines are
 * counted. JSON lines and a YOLO pattern (one file per frame). */
TEST(a_label_file_gives_the_targets_by_frame_number) {
  char *model = tiny_detector("file");
  char *dir = g_strdup_printf("%s/e2e-train-labels-%d", g_get_tmp_dir(), (int)getpid());
  g_mkdir_with_parents(dir, 0755);
  for (int format = 0; format < 2; format++) {
    char *path = format == 0 ? g_strdup_printf("%s/labels.jsonl", dir) : g_strdup_printf("%s/f%%03d.txt", dir);
    GString *jl = g_string_new(NULL);
    for (int i = 0; i < 40; i += 2) { /* the even frames: the square as a cat; every tenth also a unicorn */
      int x0 = 4 + (i * 3) % (W - 24), y0 = 6 + (i * 5) % (H - 24);
      if (format == 0) {
        g_string_append_printf(jl, "{\"frame\": %d, \"width\": %d, \"height\": %d, \"objects\": [{\"label\": \"cat\", "
                               "\"x\": %d, \"y\": %d, \"w\": 16, \"h\": 16}%s]}\n", i, W * 2, H * 2, 2 * x0, 2 * y0,
                               i % 10 ? "" : ", {\"label\": \"unicorn\", \"x\": 1, \"y\": 1, \"w\": 4, \"h\": 4}");
      } else {
        char *f = g_strdup_printf("%s/f%03d.txt", dir, i);
        char *line = g_strdup_printf("0 %.4f %.4f %.4f %.4f\n%s", (x0 + 8.0) / W, (y0 + 8.0) / H, 16.0 / W, 16.0 / H,
                                     i % 10 ? "" : "7 0.5 0.5 0.1 0.1\n");
        CHECK(g_file_set_contents(f, line, -1, NULL), "write %s", f);
        g_free(f), g_free(line);
      }
    }
    if (format == 0) CHECK(g_file_set_contents(path, jl->str, -1, NULL), "write the label file");
    g_string_free(jl, TRUE);
    char *props = g_strdup_printf("e2etrain model=%s model-name=file-slot-%d labels=%s publish-every=3 holdout=0.3 "
                                  "batch-size=2 buffer-size=8 min-improvement=-1 leaky=false num-threads=1", model, format, path);
    GstBus *bus = gst_bus_new();
    GstHarness *h = trainer_on(props, bus);
    int published = 0;
    /* the metas also hold a unicorn: with a label file they are not read at all */
    for (int i = 0; i < 40; i++) {
      GstBuffer *b = frame(i, "unicorn", 1, 1, 4, 4);
      CHECK(gst_harness_push(h, b) == GST_FLOW_OK, "push frame %d", i);
    }
    gboolean warned = FALSE;
    GstMessage *msg;
    while (!warned && (msg = gst_bus_pop_filtered(bus, GST_MESSAGE_WARNING))) warned = TRUE, gst_message_unref(msg);
    CHECK(warned, "format %d: a warning says labels were skipped", format);
    GstStructure *p = wait_for(bus, "e2etrain-published", 60, &published, NULL);
    CHECK(p != NULL, "format %d: versions trained on the file's boxes are published", format);
    if (p) gst_structure_free(p);
    GstStructure *st = stats_of(h);
    guint64 unlabelled = 0, bad = 0, frames = 0;
    gst_structure_get_uint64(st, "unlabelled", &unlabelled);
    gst_structure_get_uint64(st, "bad-labels", &bad);
    gst_structure_get_uint64(st, "frames", &frames);
    CHECK(frames == 40 && unlabelled == 20, "format %d: 40 frames, the 20 odd ones not in the file (%llu, %llu)", format,
          (unsigned long long)frames, (unsigned long long)unlabelled);
    /* JSON lines: the unicorns are left out when the file is read (a warning); YOLO: when each frame's file is */
    CHECK(bad == (format == 1 ? 4u : 0u), "format %d: the 4 unicorn lines counted %s, got %llu bad", format,
          format == 1 ? "as each frame's file is read" : "when the file was read (not per frame)", (unsigned long long)bad);
    gst_structure_free(st);
    teardown(h, bus);
    gst_object_unref(bus);
    g_free(props), g_free(path);
  }
  /* a label file that cannot be used stops the element at start, with the reason */
  char *props = g_strdup_printf("e2etrain model=%s labels=%s/none.jsonl num-threads=1", model, dir);
  GstElement *e = gst_parse_launch(props, NULL);
  CHECK(gst_element_set_state(e, GST_STATE_PAUSED) == GST_STATE_CHANGE_FAILURE, "a missing label file is refused");
  gst_element_set_state(e, GST_STATE_NULL);
  gst_object_unref(e);
  g_free(props);
  props = g_strdup_printf("e2etrain model=%s labels=%s/labels.txt num-threads=1", model, dir);
  e = gst_parse_launch(props, NULL);
  CHECK(gst_element_set_state(e, GST_STATE_PAUSED) == GST_STATE_CHANGE_FAILURE, "an unknown label format is refused");
  gst_element_set_state(e, GST_STATE_NULL);
  gst_object_unref(e);
  g_free(props);
  char *rm = g_strdup_printf("rm -rf '%s'", dir);
  CHECK(system(rm) == 0, "clean up");
  g_free(rm);
  unlink(model);
  g_free(model), g_free(dir);
}

static bool has_partial(const char *dir) {
  GDir *d = g_dir_open(dir, 0, NULL);
  const char *name;
  bool found = false;
  while (d && !found && (name = g_dir_read_name(d))) found = strstr(name, ".tmp.") != NULL;
  if (d) g_dir_close(d);
  return found;
}

/* kill -9 at random moments while a trainer writes a checkpoint after every step: each time, the checkpoint
 * a restart would use loads, with its optimizer state, and the restart removes the partial file. */
TEST(a_kill_during_checkpoint_writes_leaves_the_last_checkpoint_loadable) {
  char *model = tiny_detector("kill"), *dir = g_strdup_printf("%s/e2e-train-kill-%d", g_get_tmp_dir(), (int)getpid());
  char *latest = g_build_filename(dir, "latest.safetensors", NULL), *state = g_build_filename(dir, "trainer.safetensors", NULL);
  char *self = g_file_read_link("/proc/self/exe", NULL);
  GRand *rng = g_rand_new_with_seed(7);
  int partial_seen = 0;
  for (int round = 0; round < 6; round++) {
    char **env = g_get_environ();
    env = g_environ_setenv(env, "E2E_TRAIN_UNTIL_KILLED", dir, TRUE);
    env = g_environ_setenv(env, "E2E_TRAIN_MODEL", model, TRUE);
    char *argv[] = {self, NULL};
    GPid pid;
    CHECK(g_spawn_async(NULL, argv, env, G_SPAWN_DO_NOT_REAP_CHILD | G_SPAWN_STDOUT_TO_DEV_NULL, NULL, NULL, &pid, NULL),
          "start the trainer");
    g_strfreev(env);
    /* the first checkpoint of this round, then a random moment among the writes that follow (even rounds)
     * or the moment a temporary file shows up: inside a write (odd rounds) */
    time_t before = round ? time(NULL) : 0;
    GStatBuf st;
    for (int k = 0; k < 600 && !(g_stat(latest, &st) == 0 && st.st_mtime >= before); k++) g_usleep(10000);
    if (round % 2 == 0) g_usleep((gulong)g_rand_int_range(rng, 0, 300000));
    for (int k = 0; round % 2 && k < 3000 && !has_partial(dir); k++) g_usleep(1000);
    kill(pid, SIGKILL);
    int status;
    waitpid(pid, &status, 0);
    g_spawn_close_pid(pid);
    CHECK(WIFSIGNALED(status), "round %d: the trainer was killed (it ran: status %d)", round, status);
    partial_seen += has_partial(dir);
    e2e_model *m = e2e_model_open(latest, E2E_TASK_DETECT);
    CHECK(m != NULL, "round %d: latest.safetensors loads after kill -9: %s", round, e2e_last_error());
    e2e_trainer *t = m ? e2e_trainer_new(m, &(e2e_train_opts){.optimizer = NN_ADAMW, .lr = 1e-3f}) : NULL;
    CHECK(t && e2e_trainer_load_state(t, state), "round %d: trainer.safetensors loads: %s", round, e2e_last_error());
    e2e_trainer_free(t);
    e2e_model_unref(m);
  }
  /* how often a kill landed inside a write (a temporary file left behind), for the log; each was removed by
   * the next round's start */
  printf("    %d of 6 kills left a partial write behind\n", partial_seen);
  g_rand_free(rng);
  char *rm = g_strdup_printf("rm -rf '%s'", dir);
  CHECK(system(rm) == 0, "clean up");
  g_free(rm);
  unlink(model);
  g_free(model), g_free(dir), g_free(latest), g_free(state), g_free(self);
}

/* e2etrainfilter, the pass-through form: every frame comes out unchanged (pixels and metas), the trainer
 * trains and publishes on them, and with max-steps the end of the stream comes out only after the last step. */
TEST(the_pass_through_form_passes_every_frame_on_and_trains) {
  char *model = tiny_detector("pass");
  char *desc = g_strdup_printf("e2etrainfilter model=%s model-name=pass-slot publish-every=3 holdout=0.3 batch-size=2 "
                               "buffer-size=8 min-improvement=-1 leaky=false max-steps=6 num-threads=1", model);
  GstElement *e = gst_parse_launch(desc, NULL);
  GstBus *bus = gst_bus_new();
  gst_element_set_bus(e, bus);
  GstHarness *h = gst_harness_new_with_element(e, "sink", "src");
  gst_object_unref(e);
  gst_harness_set_src_caps_str(h, "video/x-raw,format=RGB,width=64,height=48,framerate=30/1");
  for (int i = 0; i < 20; i++) {
    GstBuffer *in = frame(i, NULL, 0, 0, 0, 0);
    GstMapInfo a;
    gst_buffer_map(in, &a, GST_MAP_READ);
    guint8 *copy = g_memdup2(a.data, a.size);
    gsize size = a.size;
    gst_buffer_unmap(in, &a);
    CHECK(gst_harness_push(h, in) == GST_FLOW_OK, "push frame %d", i);
    GstBuffer *out = gst_harness_pull(h);
    CHECK(out != NULL, "frame %d comes out", i);
    if (!out) break;
    GstMapInfo b;
    gst_buffer_map(out, &b, GST_MAP_READ);
    CHECK(b.size == size && memcmp(b.data, copy, size) == 0, "frame %d unchanged", i);
    gst_buffer_unmap(out, &b);
    CHECK(gst_buffer_get_video_region_of_interest_meta(out) != NULL, "frame %d keeps its box", i);
    CHECK(GST_BUFFER_PTS(out) == (GstClockTime)i * GST_SECOND / 30, "frame %d keeps its timestamp", i);
    gst_buffer_unref(out);
    g_free(copy);
  }
  CHECK(gst_harness_push_event(h, gst_event_new_eos()), "end of stream");
  /* the end of stream waited for the sixth step: the finished message is already on the bus */
  GstStructure *fin = NULL;
  GstMessage *msg;
  int published = 0;
  while (!fin && (msg = gst_bus_pop_filtered(bus, GST_MESSAGE_ELEMENT))) {
    const GstStructure *st = gst_message_get_structure(msg);
    published += gst_structure_has_name(st, "e2etrain-published");
    if (gst_structure_has_name(st, "e2etrain-finished")) fin = gst_structure_copy(st);
    gst_message_unref(msg);
  }
  CHECK(fin != NULL, "the trainer finished before the end of stream came out");
  CHECK(published >= 1, "versions were published (%d)", published);
  gint64 step = 0;
  if (fin) gst_structure_get_int64(fin, "step", &step), gst_structure_free(fin);
  CHECK(step == 6, "it stopped at max-steps (%lld)", (long long)step);
  GstEvent *ev;
  gboolean eos = FALSE;
  while ((ev = gst_harness_try_pull_event(h))) eos = eos || GST_EVENT_TYPE(ev) == GST_EVENT_EOS, gst_event_unref(ev);
  CHECK(eos, "the end of stream came out");
  teardown(h, bus);
  gst_object_unref(bus);
  unlink(model);
  g_free(model), g_free(desc);
}

/* Active learning: e2edetect marks frames with a detection in its uncertainty band (reported boxes still obey
 * its threshold); e2etrain counts them, trains on them first (sample=uncertain) and writes at most one per
 * second of stream time, as PNG and a JSON line with the predictions, which reads back as a label file. */
TEST(uncertain_frames_are_marked_preferred_and_written_for_labelling) {
  char *model = tiny_detector("al"), *dir = g_strdup_printf("%s/e2e-train-al-%d", g_get_tmp_dir(), (int)getpid());
  /* an untrained detector: its scores are low, so a band [0, 0.9) catches them and threshold 0.9 reports none */
  char *desc = g_strdup_printf("e2edetect name=det model=%s threshold=0.9 uncertain-low=0 uncertain-high=0.9 num-threads=1 ! "
                               "e2etrain name=train model=%s sample=uncertain save-uncertain=%s publish-every=1000 holdout=0 "
                               "batch-size=2 buffer-size=4 num-threads=1", model, model, dir);
  GstHarness *h = gst_harness_new_parse(desc);
  gst_harness_set_src_caps_str(h, "video/x-raw,format=RGB,width=64,height=48,framerate=30/1");
  for (int i = 0; i < 40; i++) {
    GstBuffer *b = frame(i, NULL, 0, 0, 0, 0);
    /* the metas the frames came with are the teacher's; e2edetect adds nothing above its threshold */
    CHECK(gst_harness_push(h, b) == GST_FLOW_OK, "push frame %d", i);
  }
  GstElement *det = gst_bin_get_by_name(GST_BIN(h->element), "det"), *train = gst_bin_get_by_name(GST_BIN(h->element), "train");
  GstStructure *ds = NULL, *ts = NULL;
  g_object_get(det, "stats", &ds, NULL);
  g_object_get(train, "training-stats", &ts, NULL);
  guint64 marked = 0, seen = 0, saved = 0;
  gst_structure_get_uint64(ds, "uncertain", &marked);
  gst_structure_get_uint64(ts, "uncertain", &seen);
  gst_structure_get_uint64(ts, "saved", &saved);
  CHECK(marked == 40 && seen == 40, "every frame marked uncertain by e2edetect (%llu) and seen so by e2etrain (%llu)",
        (unsigned long long)marked, (unsigned long long)seen);
  CHECK(saved == 2, "frames 0 and 30 written (one per second of stream time), got %llu", (unsigned long long)saved);
  GString *all = g_string_new(NULL);
  for (int f = 0; f < 40; f += 30) {
    char *png = g_strdup_printf("%s/frame-%08d.png", dir, f), *json = g_strdup_printf("%s/frame-%08d.json", dir, f);
    gchar *text = NULL;
    CHECK(g_file_test(png, G_FILE_TEST_IS_REGULAR) && g_file_get_contents(json, &text, NULL, NULL), "frame %d written", f);
    if (text) g_string_append(all, text);
    g_free(text), g_free(png), g_free(json);
  }
  /* the written lines are a label file: the frames' own boxes (the metas they carried) come back */
  char *labels = g_strdup_printf("%s/labels.jsonl", dir);
  CHECK(g_file_set_contents(labels, all->str, -1, NULL), "write the labels");
  const char *classes[] = {"cat", "dog"};
  det_frame_labels *fl = det_frame_labels_open(labels, classes, 2);
  CHECK(fl != NULL, "the written frames read back as a label file: %s", e2e_last_error());
  det_box got[8];
  if (fl) {
    int n = det_frame_labels_get(fl, 30, -1, W, H, got, 8, NULL);
    int x0 = 4 + (30 * 3) % (W - 24);
    CHECK(n == 1 && got[0].cls == 0 && fabsf(got[0].x1 - (float)x0) < 1e-3f, "frame 30's cat comes back (%d boxes)", n);
  }
  det_frame_labels_free(fl);
  g_string_free(all, TRUE);
  gst_structure_free(ds), gst_structure_free(ts);
  gst_object_unref(det), gst_object_unref(train);
  gst_harness_teardown(h);
  char *rm = g_strdup_printf("rm -rf '%s'", dir);
  CHECK(system(rm) == 0, "clean up");
  g_free(rm), g_free(labels);
  unlink(model);
  g_free(model), g_free(dir), g_free(desc);
}

TEST(state_changes_while_training_and_bad_settings_refused) {
  char *model = tiny_detector("state");
  char *props = g_strdup_printf("e2etrain model=%s publish-every=4 batch-size=2 buffer-size=4 leaky=false num-threads=1", model);
  GstHarness *h = trainer(props);
  for (int round = 0; round < 3; round++) {
    for (int i = 0; i < 10; i++) CHECK(gst_harness_push(h, frame(round * 10 + i, NULL, 0, 0, 0, 0)) == GST_FLOW_OK, "push");
    CHECK(gst_element_set_state(h->element, GST_STATE_NULL) == GST_STATE_CHANGE_SUCCESS, "to NULL while training");
    CHECK(gst_element_set_state(h->element, GST_STATE_PLAYING) != GST_STATE_CHANGE_FAILURE, "and back to PLAYING");
    gst_harness_set_src_caps_str(h, "video/x-raw,format=RGB,width=64,height=48,framerate=30/1");
  }
  gst_harness_teardown(h);
  /* a freeze prefix that matches no parameter, and batch-size above buffer-size, fail at start with a message */
  const char *bad[] = {"freeze=nosuch.", "batch-size=8 buffer-size=4", "optimizer=rmsprop"};
  for (int k = 0; k < 3; k++) {
    char *p = g_strdup_printf("e2etrain model=%s %s", model, bad[k]);
    GstElement *e = gst_parse_launch(p, NULL);
    GstBus *bus = gst_bus_new();
    gst_element_set_bus(e, bus);
    CHECK(gst_element_set_state(e, GST_STATE_PAUSED) == GST_STATE_CHANGE_FAILURE, "%s refused", bad[k]);
    GstMessage *m = gst_bus_pop_filtered(bus, GST_MESSAGE_ERROR);
    CHECK(m != NULL, "%s: an error message", bad[k]);
    if (m) gst_message_unref(m);
    gst_element_set_state(e, GST_STATE_NULL);
    gst_bus_set_flushing(bus, TRUE); /* its messages hold the element */
    gst_element_set_bus(e, NULL);
    gst_object_unref(e);
    gst_object_unref(bus);
    g_free(p);
  }
  unlink(model);
  g_free(model), g_free(props);
}

