/* e2e-soak: runs one element's pipeline for a long time and watches the process it runs in.
 *   e2e-soak detect|codec|asr SECONDS OUT-PREFIX [--input FILE]
 *   e2e-soak plot OUT-PREFIX      (the plot and the verdict again, from OUT-PREFIX.csv)
 * Every 10 s it writes a row of OUT-PREFIX.csv (seconds, RSS, open file descriptors, threads, buffers that
 * reached the sink); at the end it draws OUT-PREFIX.png and prints the growth after the first minute. File
 * inputs loop forever through segment seeks, so an hour-long run keeps the same code paths busy.
 * Exit status: 0 when memory grew by at most 2 % after the first minute and fds and threads did not grow,
 * 1 when they did, 2 on a pipeline error. tools/soak.sh runs it for every element. */
#include <gst/gst.h>
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "plot.h"

#define SAMPLE_EVERY_S 10
#define WARMUP_S 60
#define MAX_GROWTH 0.02

#define VTEST "/usr/share/doc/opencv-doc/examples/data/vtest.avi"

typedef struct {
  GstElement *pipe;
  GMainLoop *loop;
  FILE *csv;
  gint64 t0;
  double seconds;
  guint64 buffers, loops;
  GArray *t, *rss, *fds, *threads;
  gboolean failed;
} soak;

static long status_field(const char *key) {
  FILE *f = fopen("/proc/self/status", "r");
  if (!f) return -1;
  char line[256];
  long v = -1;
  size_t n = strlen(key);
  while (fgets(line, sizeof line, f))
    if (!strncmp(line, key, n) && line[n] == ':') {
      v = atol(line + n + 1);
      break;
    }
  fclose(f);
  return v;
}

static long open_fds(void) {
  DIR *d = opendir("/proc/self/fd");
  if (!d) return -1;
  long n = 0;
  for (struct dirent *e; (e = readdir(d));)
    if (e->d_name[0] != '.') n++;
  closedir(d);
  return n - 1; /* the directory stream itself */
}

static gboolean sample(gpointer data) {
  soak *s = data;
  double t = (g_get_monotonic_time() - s->t0) / 1e6, rss = status_field("VmRSS") / 1024.0;
  double fds = (double)open_fds(), threads = (double)status_field("Threads");
  g_array_append_val(s->t, t);
  g_array_append_val(s->rss, rss);
  g_array_append_val(s->fds, fds);
  g_array_append_val(s->threads, threads);
  guint64 bufs = __atomic_load_n(&s->buffers, __ATOMIC_RELAXED);
  fprintf(s->csv, "%.1f,%.2f,%.0f,%.0f,%" G_GUINT64_FORMAT ",%" G_GUINT64_FORMAT "\n", t, rss, fds, threads, bufs,
          s->loops);
  fflush(s->csv);
  printf("%7.0f s  RSS %8.2f MB  fds %3.0f  threads %3.0f  buffers %" G_GUINT64_FORMAT "  loops %" G_GUINT64_FORMAT "\n",
         t, rss, fds, threads, bufs, s->loops);
  fflush(stdout);
  if (t >= s->seconds) {
    g_main_loop_quit(s->loop);
    return G_SOURCE_REMOVE;
  }
  return G_SOURCE_CONTINUE;
}

static GstPadProbeReturn count_buffer(GstPad *pad, GstPadProbeInfo *info, gpointer data) {
  soak *s = data;
  __atomic_add_fetch(&s->buffers, 1, __ATOMIC_RELAXED);
  return GST_PAD_PROBE_OK;
}

static void seek_to_start(soak *s, gboolean flush) {
  GstSeekFlags flags = GST_SEEK_FLAG_SEGMENT | (flush ? GST_SEEK_FLAG_FLUSH : 0);
  if (!gst_element_seek(s->pipe, 1.0, GST_FORMAT_TIME, flags, GST_SEEK_TYPE_SET, 0, GST_SEEK_TYPE_NONE, -1))
    fprintf(stderr, "e2e-soak: the seek back to the start failed\n");
}

static gboolean on_message(GstBus *bus, GstMessage *m, gpointer data) {
  soak *s = data;
  switch (GST_MESSAGE_TYPE(m)) {
  case GST_MESSAGE_ERROR: {
    GError *e = NULL;
    gchar *dbg = NULL;
    gst_message_parse_error(m, &e, &dbg);
    fprintf(stderr, "e2e-soak: error from %s: %s\n%s\n", GST_OBJECT_NAME(m->src), e->message, dbg ? dbg : "");
    g_error_free(e);
    g_free(dbg);
    s->failed = TRUE;
    g_main_loop_quit(s->loop);
    break;
  }
  case GST_MESSAGE_ASYNC_DONE:
    if (s->loops == 0) {
      s->loops = 1;
      seek_to_start(s, TRUE); /* a segment seek, so that the end posts SEGMENT_DONE instead of EOS */
    }
    break;
  case GST_MESSAGE_SEGMENT_DONE:
    s->loops++;
    seek_to_start(s, FALSE);
    break;
  case GST_MESSAGE_EOS:
    fprintf(stderr, "e2e-soak: unexpected end of stream\n");
    s->failed = TRUE;
    g_main_loop_quit(s->loop);
    break;
  default:
    break;
  }
  return TRUE;
}

/* Growth of v after the warm-up: the last sample against the first one at or after WARMUP_S. */
static double growth(const GArray *t, const GArray *v) {
  guint i0 = 0;
  while (i0 + 1 < t->len && g_array_index(t, double, i0) < WARMUP_S) i0++;
  double base = g_array_index(v, double, i0), last = g_array_index(v, double, v->len - 1);
  return base > 0 ? last / base - 1 : 0;
}

static void draw(const soak *s, const char *png, const char *kind) {
  double *min = g_new(double, s->t->len);
  for (guint i = 0; i < s->t->len; i++) min[i] = g_array_index(s->t, double, i) / 60.0;
  plot_series rss = {"resident memory (MB)", min, (double *)(void *)s->rss->data, (int)s->t->len, false};
  plot_series fds = {"open file descriptors", min, (double *)(void *)s->fds->data, (int)s->t->len, false};
  plot_series thr = {"threads", min, (double *)(void *)s->threads->data, (int)s->t->len, false};
  gchar *title = g_strdup_printf("soak: %s", kind);
  plot_panel panels[] = {
      {{.title = title, .xlabel = "minutes", .ylabel = "MB", .y_from_zero = true, .width = 900, .height = 300}, &rss, 1},
      {{.title = "", .xlabel = "minutes", .ylabel = "count", .y_from_zero = true, .width = 900, .height = 260}, &fds, 1},
      {{.title = "", .xlabel = "minutes", .ylabel = "count", .y_from_zero = true, .width = 900, .height = 260}, &thr, 1}};
  if (plot_panels_png(png, panels, 3)) printf("plot: %s\n", png);
  g_free(title);
  g_free(min);
}

/* Draws the plot and prints the verdict; returns the exit status. */
static int report(const soak *s, const char *kind, const char *png, int status) {
  if (s->t->len >= 2) {
    draw(s, png, kind);
    double last_t = g_array_index(s->t, double, s->t->len - 1);
    double g_rss = growth(s->t, s->rss), g_fds = growth(s->t, s->fds), g_thr = growth(s->t, s->threads);
    printf("%s: %.0f s, %" G_GUINT64_FORMAT " buffers, %" G_GUINT64_FORMAT " loops; after the first minute: RSS %+.2f %%, "
           "fds %+.0f %%, threads %+.0f %%\n",
           kind, last_t, s->buffers, s->loops, 100 * g_rss, 100 * g_fds, 100 * g_thr);
    if (!status && (g_rss > MAX_GROWTH || g_fds > 0 || g_thr > 0 || s->buffers == 0)) status = 1;
  } else if (!status) {
    status = 2;
  }
  return status;
}

/* e2e-soak plot PREFIX: the plot and verdict again from PREFIX.csv. */
static int replot(const char *prefix) {
  gchar *csv = g_strdup_printf("%s.csv", prefix), *png = g_strdup_printf("%s.png", prefix);
  FILE *f = fopen(csv, "r");
  if (!f) {
    fprintf(stderr, "e2e-soak: cannot read %s\n", csv);
    return 2;
  }
  soak s = {.t = g_array_new(FALSE, FALSE, sizeof(double)), .rss = g_array_new(FALSE, FALSE, sizeof(double)),
            .fds = g_array_new(FALSE, FALSE, sizeof(double)), .threads = g_array_new(FALSE, FALSE, sizeof(double))};
  char line[256];
  double t, rss, fds, thr;
  unsigned long long bufs, loops;
  while (fgets(line, sizeof line, f))
    if (sscanf(line, "%lf,%lf,%lf,%lf,%llu,%llu", &t, &rss, &fds, &thr, &bufs, &loops) == 6) {
      g_array_append_val(s.t, t);
      g_array_append_val(s.rss, rss);
      g_array_append_val(s.fds, fds);
      g_array_append_val(s.threads, thr);
      s.buffers = bufs, s.loops = loops;
    }
  fclose(f);
  gchar *kind = g_path_get_basename(prefix);
  int status = report(&s, kind, png, 0);
  printf("%s\n", status == 0 ? "PASS" : status == 1 ? "FAIL: growth" : "FAIL: no samples");
  g_free(kind);
  g_free(csv);
  g_free(png);
  return status;
}

int main(int argc, char **argv) {
  gst_init(&argc, &argv);
  if (argc == 3 && !strcmp(argv[1], "plot")) return replot(argv[2]);
  if (argc < 4) {
    fprintf(stderr, "usage: %s detect|codec|asr SECONDS OUT-PREFIX [--input FILE]\n       %s plot OUT-PREFIX\n", argv[0], argv[0]);
    return 2;
  }
  const char *kind = argv[1], *prefix = argv[3], *input = NULL;
  double seconds = g_ascii_strtod(argv[2], NULL);
  for (int i = 4; i + 1 < argc; i += 2)
    if (!strcmp(argv[i], "--input")) input = argv[i + 1];
  if (!(seconds > 0)) {
    fprintf(stderr, "e2e-soak: SECONDS must be positive\n");
    return 2;
  }
  /* the JSON lines grow all run long: they go to the temporary folder, not beside the figures */
  gchar *json = g_strdup_printf("%s/e2e-soak-%s.jsonl", g_get_tmp_dir(), kind), *desc;
  if (!strcmp(kind, "detect")) {
    desc = g_strdup_printf("filesrc location=\"%s\" ! decodebin ! videoconvert ! video/x-raw,format=BGRx ! "
                           "e2edetect object-class=person json-file=\"%s\" ! e2eoverlay ! fakesink name=sink sync=true",
                           input ? input : VTEST, json);
  } else if (!strcmp(kind, "codec")) {
    /* live and slow enough for two cores: the encoder, the parser and the decoder on every picture */
    desc = g_strdup("videotestsrc is-live=true pattern=ball ! video/x-raw,width=256,height=192,framerate=4/1 ! "
                    "e2ecodecenc ! e2ecodecparse ! e2ecodecdec ! fakesink name=sink sync=true");
  } else if (!strcmp(kind, "asr")) {
    desc = g_strdup_printf("filesrc location=\"%s\" ! decodebin ! audioconvert ! audioresample ! identity sync=true ! "
                           "e2easr json-file=\"%s\" ! fakesink name=sink sync=false",
                           input ? input : "tests/data/speech-heldout.flac", json);
  } else {
    fprintf(stderr, "e2e-soak: unknown pipeline '%s' (detect, codec or asr)\n", kind);
    return 2;
  }
  GError *err = NULL;
  soak s = {.seconds = seconds, .loop = g_main_loop_new(NULL, FALSE), .t = g_array_new(FALSE, FALSE, sizeof(double)),
            .rss = g_array_new(FALSE, FALSE, sizeof(double)), .fds = g_array_new(FALSE, FALSE, sizeof(double)),
            .threads = g_array_new(FALSE, FALSE, sizeof(double))};
  s.pipe = gst_parse_launch(desc, &err);
  if (!s.pipe) {
    fprintf(stderr, "e2e-soak: cannot build the pipeline: %s\n", err->message);
    return 2;
  }
  gchar *csv = g_strdup_printf("%s.csv", prefix), *png = g_strdup_printf("%s.png", prefix);
  s.csv = fopen(csv, "w");
  if (!s.csv) {
    fprintf(stderr, "e2e-soak: cannot write %s\n", csv);
    return 2;
  }
  fprintf(s.csv, "seconds,rss_mb,fds,threads,buffers,loops\n");
  printf("soak %s for %.0f s: %s\n", kind, seconds, desc);
  GstElement *sink = gst_bin_get_by_name(GST_BIN(s.pipe), "sink");
  GstPad *pad = gst_element_get_static_pad(sink, "sink");
  gst_pad_add_probe(pad, GST_PAD_PROBE_TYPE_BUFFER, count_buffer, &s, NULL);
  gst_object_unref(pad);
  gst_object_unref(sink);
  GstBus *bus = gst_element_get_bus(s.pipe);
  gst_bus_add_watch(bus, on_message, &s);
  s.t0 = g_get_monotonic_time();
  g_timeout_add_seconds(SAMPLE_EVERY_S, sample, &s);
  gst_element_set_state(s.pipe, GST_STATE_PLAYING);
  g_main_loop_run(s.loop);
  gst_element_set_state(s.pipe, GST_STATE_NULL);
  gst_bus_remove_watch(bus);
  gst_object_unref(bus);
  fclose(s.csv);
  int status = report(&s, kind, png, s.failed ? 2 : 0);
  printf("%s\n", status == 0 ? "PASS" : status == 1 ? "FAIL: growth" : "FAIL: pipeline error");
  gst_object_unref(s.pipe);
  g_main_loop_unref(s.loop);
  g_free(desc);
  g_free(json);
  g_free(csv);
  g_free(png);
  return status;
}
