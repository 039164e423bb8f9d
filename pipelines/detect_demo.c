/* e2e-detect-demo: the main demo. Runs the shipped COCO detector (persons only) over a
 * video (default: opencv-doc's vtest.avi, pedestrians), writes an annotated
 * video and a JSON-lines file of detections, and prints a summary.
 *   e2e-detect-demo [--input FILE] [--out DIR] [--model FILE] [--threads N] [--threshold T]
 * It is also the smallest example of embedding the elements in an application. */
#include <gst/gst.h>
#include <stdio.h>
#include <string.h>

#define DEFAULT_INPUT "/usr/share/doc/opencv-doc/examples/data/vtest.avi"

typedef struct {
  guint64 frames, objects, fresh_frames;
  GHashTable *per_label;
} tally;

static void count_objects(const GstStructure *s, tally *t) {
  const GValue *objs = gst_structure_get_value(s, "objects");
  gboolean fresh = FALSE;
  gst_structure_get_boolean(s, "fresh", &fresh);
  t->frames++;
  t->fresh_frames += fresh;
  guint n = objs ? gst_value_list_get_size(objs) : 0;
  t->objects += n;
  for (guint i = 0; i < n; i++) {
    const GstStructure *o = gst_value_get_structure(gst_value_list_get_value(objs, i));
    const gchar *label = gst_structure_get_string(o, "label");
    gpointer cur = g_hash_table_lookup(t->per_label, label);
    g_hash_table_insert(t->per_label, g_strdup(label), GUINT_TO_POINTER(GPOINTER_TO_UINT(cur) + 1));
  }
}

int main(int argc, char **argv) {
  gst_init(&argc, &argv);
  const gchar *input = DEFAULT_INPUT, *out = "e2e-demo", *model = NULL, *threshold = NULL;
  gint threads = 0;
  for (int i = 1; i < argc; i++) {
    if (!strcmp(argv[i], "--input") && i + 1 < argc) input = argv[++i];
    else if (!strcmp(argv[i], "--out") && i + 1 < argc) out = argv[++i];
    else if (!strcmp(argv[i], "--model") && i + 1 < argc) model = argv[++i];
    else if (!strcmp(argv[i], "--threads") && i + 1 < argc) threads = atoi(argv[++i]);
    else if (!strcmp(argv[i], "--threshold") && i + 1 < argc) threshold = argv[++i];
    else {
      fprintf(stderr, "usage: %s [--input FILE] [--out DIR] [--model FILE] [--threads N] [--threshold T]\n", argv[0]);
      return 2;
    }
  }
  if (!g_file_test(input, G_FILE_TEST_IS_REGULAR)) {
    fprintf(stderr, "e2e-detect-demo: no input video at %s\n%s", input,
            !strcmp(input, DEFAULT_INPUT) ? "  (it comes with Debian's opencv-doc: sudo apt-get install opencv-doc)\n" : "");
    return 1;
  }
  if (g_mkdir_with_parents(out, 0755) != 0) {
    fprintf(stderr, "e2e-detect-demo: cannot create %s\n", out);
    return 1;
  }
  /* an MPEG-4 file when gstreamer1.0-libav is there, Motion-JPEG otherwise */
  GstElementFactory *f = gst_element_factory_find("avenc_mpeg4");
  const gchar *enc = f ? "avenc_mpeg4 bitrate=3000000" : "jpegenc quality=80";
  if (f) gst_object_unref(f);
  gchar *video = g_build_filename(out, "annotated.avi", NULL), *json = g_build_filename(out, "detections.jsonl", NULL);
  /* settings not given on the command line keep e2edetect's own defaults */
  gchar *opts = g_strdup_printf("%s%s%s%s%s", model ? " model=\"" : "", model ? model : "", model ? "\"" : "",
                                threshold ? " threshold=" : "", threshold ? threshold : "");
  gchar *desc = g_strdup_printf(
      "filesrc location=\"%s\" ! decodebin ! videoconvert ! video/x-raw,format=BGRx ! "
      "e2edetect name=det message=true object-class=person num-threads=%d json-file=\"%s\"%s ! "
      "e2eoverlay ! videoconvert ! %s ! avimux name=mux ! filesink location=\"%s\"",
      input, threads, json, opts, enc, video);
  g_free(opts);
  GError *err = NULL;
  GstElement *pipe = gst_parse_launch(desc, &err);
  if (!pipe) {
    fprintf(stderr, "e2e-detect-demo: cannot build the pipeline: %s\n", err->message);
    return 1;
  }
  /* the file is ours: the source's tags (vtest.avi says "software: MEncoder") stay out of it */
  GstElement *mux = gst_bin_get_by_name(GST_BIN(pipe), "mux");
  gst_tag_setter_set_tag_merge_mode(GST_TAG_SETTER(mux), GST_TAG_MERGE_KEEP_ALL);
  gst_tag_setter_add_tags(GST_TAG_SETTER(mux), GST_TAG_MERGE_REPLACE, GST_TAG_ENCODER, "gst-e2e e2e-detect-demo", NULL);
  gst_object_unref(mux);
  printf("e2e-detect-demo: %s -> %s, %s\n", input, video, json);
  tally t = {.per_label = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, NULL)};
  gint64 t0 = g_get_monotonic_time();
  gst_element_set_state(pipe, GST_STATE_PLAYING);
  GstBus *bus = gst_element_get_bus(pipe);
  int rc = 0;
  for (gboolean done = FALSE; !done;) {
    GstMessage *m = gst_bus_timed_pop_filtered(bus, GST_CLOCK_TIME_NONE,
                                               GST_MESSAGE_ERROR | GST_MESSAGE_EOS | GST_MESSAGE_ELEMENT | GST_MESSAGE_WARNING);
    switch (GST_MESSAGE_TYPE(m)) {
    case GST_MESSAGE_ELEMENT:
      if (gst_structure_has_name(gst_message_get_structure(m), "e2edetect")) {
        count_objects(gst_message_get_structure(m), &t);
        if (t.frames % 100 == 0) {
          printf("  %" G_GUINT64_FORMAT " frames, %" G_GUINT64_FORMAT " objects\n", t.frames, t.objects);
          fflush(stdout);
        }
      }
      break;
    case GST_MESSAGE_WARNING: {
      gchar *dbg = NULL;
      gst_message_parse_warning(m, &err, &dbg);
      fprintf(stderr, "warning: %s\n", err->message);
      g_clear_error(&err);
      g_free(dbg);
      break;
    }
    case GST_MESSAGE_ERROR: {
      gchar *dbg = NULL;
      gst_message_parse_error(m, &err, &dbg);
      fprintf(stderr, "e2e-detect-demo: %s\n  (%s)\n", err->message, dbg ? dbg : "");
      g_clear_error(&err);
      g_free(dbg);
      rc = 1;
      done = TRUE;
      break;
    }
    default: done = TRUE;
    }
    gst_message_unref(m);
  }
  double secs = (double)(g_get_monotonic_time() - t0) / 1e6;
  GstElement *det = gst_bin_get_by_name(GST_BIN(pipe), "det");
  GstStructure *st = NULL;
  g_object_get(det, "stats", &st, NULL);
  gst_element_set_state(pipe, GST_STATE_NULL);
  if (rc == 0) {
    double mean = 0, p95 = 0;
    gst_structure_get_double(st, "mean-ms", &mean);
    gst_structure_get_double(st, "p95-ms", &p95);
    printf("\nsummary: %" G_GUINT64_FORMAT " frames in %.1f s (%.1f fps end to end, decode and encode included)\n",
           t.frames, secs, t.frames / secs);
    printf("  detector: %.1f ms mean, %.1f ms p95 per frame (%.0f fps for the network alone)\n", mean, p95,
           mean > 0 ? 1000.0 / mean : 0.0);
    printf("  %" G_GUINT64_FORMAT " detections (%.2f per frame):", t.objects, t.frames ? (double)t.objects / t.frames : 0.0);
    GHashTableIter it;
    gpointer k, v;
    g_hash_table_iter_init(&it, t.per_label);
    while (g_hash_table_iter_next(&it, &k, &v)) printf(" %s %u", (const gchar *)k, GPOINTER_TO_UINT(v));
    printf("\n  annotated video: %s\n  detections (JSON lines): %s\n", video, json);
  }
  if (st) gst_structure_free(st);
  gst_object_unref(det);
  gst_object_unref(bus);
  gst_object_unref(pipe);
  g_hash_table_destroy(t.per_label);
  g_free(video);
  g_free(json);
  g_free(desc);
  return rc;
}
