/* e2e-selftrain-demo: a camera that improves its own detector on the scene it watches.
 *
 * A teacher (the shipped COCO NanoDet, persons only) labels the frames of a video; e2etrain, on a tee
 * branch, trains a student (the small detector trained here from scratch) on them and publishes each
 * validated version into the slot "student", which the other branch's e2edetect runs and e2eoverlay
 * draws. The video's first 80 % loops for training; its last 20 % is never trained on: every
 * --every seconds the student's live version detects on those frames in a second pipeline (an
 * e2edetect on the same slot), and its mAP@0.5 against the teacher's boxes is printed with the
 * training step and the training branch's frame rate. At the end: a CSV and a chart of the metric.
 *
 *   e2e-selftrain-demo [--input FILE] [--minutes M] [--every S] [--out DIR] [--teacher FILE]
 *                      [--student FILE] [--freeze PREFIXES] [--size WxH] [--no-video]
 *
 * It is also the example of e2etrain inside an application. */
#include <gst/app/gstappsink.h>
#include <gst/app/gstappsrc.h>
#include <gst/gst.h>
#include <gst/video/video.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "e2e/detect.h"
#include "plot.h"

#define DEFAULT_INPUT "/usr/share/doc/opencv-doc/examples/data/vtest.avi"
#define TRAIN_SHARE 0.8 /* the first 80 % trains, the rest is only scored */

typedef struct {
  GstBuffer *frame;   /* RGB, metas removed */
  det_box *teacher;   /* the teacher's boxes: the reference */
  int n_teacher;
} eval_frame;

typedef struct {
  const char *input, *out, *teacher, *student, *freeze;
  int width, height;
  double minutes, every;
  gboolean video;
} opts;

/* ---------------------------------------------------------------- boxes from ROI metas */

static int boxes_of(GstBuffer *buf, det_box **out) {
  gpointer state = NULL;
  GstMeta *meta;
  int n = 0, cap = 0;
  *out = NULL;
  while ((meta = gst_buffer_iterate_meta_filtered(buf, &state, GST_VIDEO_REGION_OF_INTEREST_META_API_TYPE))) {
    GstVideoRegionOfInterestMeta *r = (GstVideoRegionOfInterestMeta *)meta;
    double score = 1.0;
    GstStructure *d = gst_video_region_of_interest_meta_get_param(r, "detection");
    if (d) gst_structure_get_double(d, "confidence", &score);
    if (n == cap) *out = g_renew(det_box, *out, cap = cap ? 2 * cap : 16);
    (*out)[n++] = (det_box){(float)r->x, (float)r->y, (float)(r->x + r->w), (float)(r->y + r->h), (float)score, 0};
  }
  return n;
}

static gboolean drop_meta(GstBuffer *buf, GstMeta **meta, gpointer user) {
  (void)buf, (void)user;
  if ((*meta)->info->api == GST_VIDEO_REGION_OF_INTEREST_META_API_TYPE) *meta = NULL;
  return TRUE;
}

static gchar *source_chain(const opts *o) {
  return g_strdup_printf("filesrc location=\"%s\" ! decodebin ! videoconvert ! videoscale ! "
                         "video/x-raw,format=RGB,width=%d,height=%d",
                         o->input, o->width, o->height);
}

static void fail(const char *what, GstMessage *m) {
  GError *err = NULL;
  gchar *dbg = NULL;
  gst_message_parse_error(m, &err, &dbg);
  fprintf(stderr, "e2e-selftrain-demo: %s: %s\n  (%s)\n", what, err->message, dbg ? dbg : "");
  g_clear_error(&err);
  g_free(dbg);
}

/* ---------------------------------------------------------------- the frames that are only scored */

/* Decodes the last 20 % once and runs the teacher on it: the held-out frames and their reference boxes. */
static GArray *held_out_frames(const opts *o, gint64 *duration) {
  gchar *chain = source_chain(o);
  gchar *desc = g_strdup_printf("%s ! e2edetect model=\"%s\" object-class=person num-threads=2 ! appsink name=s sync=false",
                                chain, o->teacher);
  GError *err = NULL;
  GstElement *p = gst_parse_launch(desc, &err);
  g_free(chain), g_free(desc);
  if (!p) {
    fprintf(stderr, "e2e-selftrain-demo: %s\n", err->message);
    return NULL;
  }
  GstElement *sink = gst_bin_get_by_name(GST_BIN(p), "s");
  gst_element_set_state(p, GST_STATE_PAUSED);
  gst_element_get_state(p, NULL, NULL, GST_CLOCK_TIME_NONE);
  if (!gst_element_query_duration(p, GST_FORMAT_TIME, duration) || *duration <= 0) {
    fprintf(stderr, "e2e-selftrain-demo: %s has no known duration\n", o->input);
    gst_element_set_state(p, GST_STATE_NULL);
    gst_object_unref(sink), gst_object_unref(p);
    return NULL;
  }
  gint64 split = (gint64)(TRAIN_SHARE * (double)*duration);
  gst_element_seek_simple(p, GST_FORMAT_TIME, GST_SEEK_FLAG_FLUSH | GST_SEEK_FLAG_ACCURATE, split);
  gst_element_set_state(p, GST_STATE_PLAYING);
  GArray *frames = g_array_new(FALSE, TRUE, sizeof(eval_frame));
  GstSample *s;
  while ((s = gst_app_sink_pull_sample(GST_APP_SINK(sink)))) {
    GstBuffer *b = gst_sample_get_buffer(s);
    if (GST_BUFFER_PTS_IS_VALID(b) && (gint64)GST_BUFFER_PTS(b) >= split) {
      eval_frame f = {0};
      f.n_teacher = boxes_of(b, &f.teacher);
      f.frame = gst_buffer_copy(b);
      gst_buffer_foreach_meta(f.frame, drop_meta, NULL);
      g_array_append_val(frames, f);
    }
    gst_sample_unref(s);
  }
  gst_element_set_state(p, GST_STATE_NULL);
  gst_object_unref(sink), gst_object_unref(p);
  return frames;
}

/* The student's live version on the held-out frames: mAP@0.5 against the teacher's boxes. A pipeline of
 * its own, kept playing between rounds, whose e2edetect reads the slot e2etrain publishes to. */
typedef struct {
  GstElement *pipe, *src, *sink;
  GstClockTime next_pts;
} scorer;

static gboolean scorer_init(scorer *sc, const opts *o) {
  gchar *desc = g_strdup_printf(
      "appsrc name=src format=time caps=video/x-raw,format=RGB,width=%d,height=%d,framerate=25/1 ! "
      "e2edetect model=\"%s\" model-name=student threshold=0.05 num-threads=1 ! appsink name=s sync=false",
      o->width, o->height, o->student);
  GError *err = NULL;
  sc->pipe = gst_parse_launch(desc, &err);
  g_free(desc);
  if (!sc->pipe) {
    fprintf(stderr, "e2e-selftrain-demo: %s\n", err->message);
    return FALSE;
  }
  sc->src = gst_bin_get_by_name(GST_BIN(sc->pipe), "src");
  sc->sink = gst_bin_get_by_name(GST_BIN(sc->pipe), "s");
  sc->next_pts = 0;
  return gst_element_set_state(sc->pipe, GST_STATE_PLAYING) != GST_STATE_CHANGE_FAILURE;
}

static double score(scorer *sc, GArray *frames) {
  guint n = frames->len;
  det_eval_image *ev = g_new0(det_eval_image, n);
  for (guint i = 0; i < n; i++) {
    eval_frame *f = &g_array_index(frames, eval_frame, i);
    GstBuffer *b = gst_buffer_copy(f->frame);
    GST_BUFFER_PTS(b) = sc->next_pts;
    GST_BUFFER_DURATION(b) = GST_SECOND / 25;
    sc->next_pts += GST_SECOND / 25;
    gst_app_src_push_buffer(GST_APP_SRC(sc->src), b);
  }
  double map = -1;
  guint got = 0;
  for (; got < n; got++) {
    GstSample *s = gst_app_sink_try_pull_sample(GST_APP_SINK(sc->sink), 60 * GST_SECOND);
    if (!s) break;
    eval_frame *f = &g_array_index(frames, eval_frame, got);
    det_box *pred = NULL;
    int np = boxes_of(gst_sample_get_buffer(s), &pred);
    ev[got] = (det_eval_image){f->teacher, f->n_teacher, pred, np};
    gst_sample_unref(s);
  }
  if (got == n) {
    det_metrics m;
    det_evaluate(ev, (int)n, 1, 0.3f, &m);
    map = m.map50;
  }
  for (guint i = 0; i < got; i++) g_free((void *)ev[i].pred);
  g_free(ev);
  return map;
}

/* ---------------------------------------------------------------- training */

typedef struct {
  GstElement *pipe;
  gint64 split;
  gint frames;         /* through the student's branch */
  gint64 step, version;
  double loss;
} trainer;

static GstPadProbeReturn count_frame(GstPad *pad, GstPadProbeInfo *info, gpointer user) {
  (void)pad, (void)info;
  g_atomic_int_inc(&((trainer *)user)->frames);
  return GST_PAD_PROBE_OK;
}

static void loop_first_part(trainer *t, gboolean flush) {
  gst_element_seek(t->pipe, 1.0, GST_FORMAT_TIME, GST_SEEK_FLAG_SEGMENT | (flush ? GST_SEEK_FLAG_FLUSH : 0), GST_SEEK_TYPE_SET,
                   0, GST_SEEK_TYPE_SET, t->split);
}

int main(int argc, char **argv) {
  gst_init(&argc, &argv);
  opts o = {.input = DEFAULT_INPUT, .out = "e2e-selftrain", .teacher = "models/detect/nanodet-coco.safetensors",
            .student = "models/detect/person.safetensors", .width = 384, .height = 288, .minutes = 5, .every = 30,
            .video = TRUE};
  for (int i = 1; i < argc; i++) {
    if (!strcmp(argv[i], "--input") && i + 1 < argc) o.input = argv[++i];
    else if (!strcmp(argv[i], "--out") && i + 1 < argc) o.out = argv[++i];
    else if (!strcmp(argv[i], "--teacher") && i + 1 < argc) o.teacher = argv[++i];
    else if (!strcmp(argv[i], "--student") && i + 1 < argc) o.student = argv[++i];
    else if (!strcmp(argv[i], "--freeze") && i + 1 < argc) o.freeze = argv[++i];
    else if (!strcmp(argv[i], "--minutes") && i + 1 < argc) o.minutes = atof(argv[++i]);
    else if (!strcmp(argv[i], "--every") && i + 1 < argc) o.every = atof(argv[++i]);
    else if (!strcmp(argv[i], "--size") && i + 1 < argc && sscanf(argv[i + 1], "%dx%d", &o.width, &o.height) == 2) i++;
    else if (!strcmp(argv[i], "--no-video")) o.video = FALSE;
    else {
      fprintf(stderr, "usage: %s [--input FILE] [--minutes M] [--every S] [--out DIR] [--teacher FILE] [--student FILE]\n"
                      "          [--freeze PREFIXES] [--size WxH] [--no-video]\n", argv[0]);
      return 2;
    }
  }
  if (!(o.minutes > 0) || !(o.every >= 1) || o.width < 32 || o.height < 32 || o.width > 4096 || o.height > 4096) {
    fprintf(stderr, "e2e-selftrain-demo: --minutes > 0, --every >= 1, --size from 32x32 to 4096x4096\n");
    return 2;
  }
  if (!g_file_test(o.input, G_FILE_TEST_IS_REGULAR)) {
    fprintf(stderr, "e2e-selftrain-demo: no input video at %s\n%s", o.input,
            !strcmp(o.input, DEFAULT_INPUT) ? "  (it comes with Debian's opencv-doc: sudo apt-get install opencv-doc)\n" : "");
    return 1;
  }
  if (g_mkdir_with_parents(o.out, 0755) != 0) {
    fprintf(stderr, "e2e-selftrain-demo: cannot create %s\n", o.out);
    return 1;
  }
  gint64 duration = 0;
  printf("e2e-selftrain-demo: teacher %s, student %s, %s at %dx%d\n", o.teacher, o.student, o.input, o.width, o.height);
  GArray *held = held_out_frames(&o, &duration);
  if (!held || held->len == 0) return 1;
  int n_boxes = 0;
  for (guint i = 0; i < held->len; i++) n_boxes += g_array_index(held, eval_frame, i).n_teacher;
  printf("  scored on the last %.0f %% (%.1f s .. %.1f s): %u frames, %d teacher boxes; trained on the rest, looped\n",
         100 * (1 - TRAIN_SHARE), TRAIN_SHARE * (double)duration / GST_SECOND, (double)duration / GST_SECOND, held->len, n_boxes);
  scorer sc;
  if (!scorer_init(&sc, &o)) return 1;

  /* the training pipeline: teacher -> tee -> e2etrain, and -> student -> overlay -> file */
  gchar *ck = g_build_filename(o.out, "checkpoints", NULL), *video = g_build_filename(o.out, "student.avi", NULL);
  /* Motion-JPEG: each loop starts the timestamps again, which an MPEG-4 encoder refuses */
  const gchar *enc = "jpegenc quality=75";
  gchar *tail = o.video ? g_strdup_printf("videoconvert ! e2eoverlay ! videoconvert ! %s ! avimux ! filesink location=\"%s\"",
                                          enc, video)
                        : g_strdup("fakesink sync=false");
  gchar *chain = source_chain(&o);
  gchar *desc = g_strdup_printf(
      "%s ! e2edetect model=\"%s\" object-class=person num-threads=1 ! tee name=t "
      "t. ! queue max-size-buffers=2 leaky=downstream ! e2etrain name=train model=\"%s\" model-name=student publish-every=25 "
      "batch-size=8 buffer-size=64 holdout=0.1 leaky=true num-threads=1 checkpoint-dir=\"%s\"%s%s "
      "t. ! queue max-size-buffers=4 ! e2edetect name=student model=\"%s\" model-name=student num-threads=1 ! %s",
      chain, o.teacher, o.student, ck, o.freeze ? " freeze=" : "", o.freeze ? o.freeze : "", o.student, tail);
  g_free(chain), g_free(tail);
  GError *err = NULL;
  trainer t = {.pipe = gst_parse_launch(desc, &err), .split = (gint64)(TRAIN_SHARE * (double)duration)};
  g_free(desc);
  if (!t.pipe) {
    fprintf(stderr, "e2e-selftrain-demo: %s\n", err->message);
    return 1;
  }
  GstElement *student = gst_bin_get_by_name(GST_BIN(t.pipe), "student");
  GstPad *spad = gst_element_get_static_pad(student, "src");
  gst_pad_add_probe(spad, GST_PAD_PROBE_TYPE_BUFFER, count_frame, &t, NULL);
  gst_object_unref(spad), gst_object_unref(student);

  double before = score(&sc, held);
  printf("  before training: student mAP@0.5 against the teacher on the held-out frames %.3f\n", before);
  fflush(stdout);
  gst_element_set_state(t.pipe, GST_STATE_PAUSED);
  gst_element_get_state(t.pipe, NULL, NULL, GST_CLOCK_TIME_NONE);
  loop_first_part(&t, TRUE);
  gst_element_set_state(t.pipe, GST_STATE_PLAYING);

  GArray *tx = g_array_new(FALSE, FALSE, sizeof(double)), *ty = g_array_new(FALSE, FALSE, sizeof(double));
  double zero = 0;
  g_array_append_val(tx, zero), g_array_append_val(ty, before);
  gchar *csv_path = g_build_filename(o.out, "selftrain.csv", NULL);
  FILE *csv = fopen(csv_path, "w");
  if (csv) fprintf(csv, "seconds,step,version,map50_held_out,fps\n0,0,0,%.4f,0\n", before);
  GstBus *bus = gst_element_get_bus(t.pipe);
  gint64 t0 = g_get_monotonic_time(), next = t0 + (gint64)(o.every * 1e6), end = t0 + (gint64)(o.minutes * 60e6);
  guint64 frames_at = 0;
  gint64 frames_t = t0;
  int rc = 0;
  double last = before;
  for (gboolean done = FALSE; !done;) {
    gint64 now = g_get_monotonic_time();
    GstMessage *m = gst_bus_timed_pop(bus, (GstClockTime)(MAX(next - now, 0) * 1000));
    if (m) {
      const GstStructure *s = gst_message_get_structure(m);
      switch (GST_MESSAGE_TYPE(m)) {
      case GST_MESSAGE_SEGMENT_DONE: loop_first_part(&t, FALSE); break; /* once more round the first 80 % */
      case GST_MESSAGE_ERROR: fail("training pipeline", m), rc = 1, done = TRUE; break;
      case GST_MESSAGE_EOS: fprintf(stderr, "e2e-selftrain-demo: unexpected end of stream\n"), rc = 1, done = TRUE; break;
      case GST_MESSAGE_ELEMENT:
        if (gst_structure_has_name(s, "e2etrain-progress")) {
          gst_structure_get_int64(s, "step", &t.step);
          gst_structure_get_double(s, "loss", &t.loss);
        } else if (gst_structure_has_name(s, "e2etrain-published")) {
          guint64 v = 0;
          gst_structure_get_uint64(s, "version", &v);
          t.version = (gint64)v;
        }
        break;
      default: break;
      }
      gst_message_unref(m);
    }
    now = g_get_monotonic_time();
    if (done || now < next) continue;
    guint64 frames = (guint64)g_atomic_int_get(&t.frames);
    double fps = (double)(frames - frames_at) / ((double)(now - frames_t) * 1e-6);
    frames_at = frames, frames_t = now;
    last = score(&sc, held);
    double secs = (double)(now - t0) * 1e-6;
    printf("  %6.0f s  step %5" G_GINT64_FORMAT "  loss %.3f  version %3" G_GINT64_FORMAT "  held-out mAP@0.5 %.3f  "
           "student branch %.1f fps\n", secs, t.step, t.loss, t.version, last, fps);
    fflush(stdout);
    if (csv) fprintf(csv, "%.0f,%" G_GINT64_FORMAT ",%" G_GINT64_FORMAT ",%.4f,%.2f\n", secs, t.step, t.version, last, fps), fflush(csv);
    g_array_append_val(tx, secs), g_array_append_val(ty, last);
    next = g_get_monotonic_time() + (gint64)(o.every * 1e6);
    if (now >= end) done = TRUE;
  }
  gst_element_set_state(t.pipe, GST_STATE_NULL);
  gst_element_set_state(sc.pipe, GST_STATE_NULL);
  if (csv) fclose(csv);
  gchar *png = g_build_filename(o.out, "selftrain.png", NULL);
  plot_series series = {"student vs teacher, held-out last 20 %", (double *)tx->data, (double *)ty->data, (int)tx->len, true};
  plot_spec spec = {.title = "e2etrain on the scene: the student's mAP@0.5 against the teacher on frames it never trained on",
                    .xlabel = "seconds of training", .ylabel = "mAP@0.5", .y_from_zero = true};
  plot_lines_png(png, &spec, &series, 1);
  printf("e2e-selftrain-demo: held-out mAP@0.5 %.3f -> %.3f (%+.3f) after %.1f minutes, %" G_GINT64_FORMAT
         " steps, %" G_GINT64_FORMAT " versions published\n  %s, %s%s%s, checkpoints in %s\n",
         before, last, last - before, (double)(g_get_monotonic_time() - t0) / 60e6, t.step, t.version, csv_path, png,
         o.video ? ", " : "", o.video ? video : "", ck);
  gst_object_unref(bus);
  gst_object_unref(t.pipe);
  gst_object_unref(sc.src), gst_object_unref(sc.sink), gst_object_unref(sc.pipe);
  for (guint i = 0; i < held->len; i++) {
    eval_frame *f = &g_array_index(held, eval_frame, i);
    gst_buffer_unref(f->frame);
    g_free(f->teacher);
  }
  g_array_free(held, TRUE), g_array_free(tx, TRUE), g_array_free(ty, TRUE);
  g_free(ck), g_free(video), g_free(csv_path), g_free(png);
  return rc;
}
