/* The detector's inference path (folded, fused, packed copies of its layers) against its own layers run
 * one by one in eval mode, before and after a training step changes the weights; label files for a
 * stream of frames. */
#include <glib.h>
#include <unistd.h>

#include "harness.h"

#include "e2e/detect.h"

static nn_tensor *layer_path(detector *d, nn_tensor *x) {
  nn_tensor *h = x, *c4 = NULL;
  for (int i = 0; i < 7; i++) {
    h = nn_relu(nn_batchnorm_forward(&d->bn[i], nn_conv2d_forward(&d->conv[i], h), false));
    if (i == 4) c4 = h;
  }
  nn_tensor *f = nn_add(nn_upsample_nearest(h, c4->shape[2], c4->shape[3]), nn_conv2d_forward(&d->lateral, c4));
  f = nn_relu(nn_batchnorm_forward(&d->fuse_bn, nn_conv2d_forward(&d->fuse, f), false));
  return nn_conv2d_forward(&d->head, f);
}

static double max_rel_diff(nn_tensor *a, nn_tensor *b) {
  double m = 0, scale = 1e-3;
  for (int64_t i = 0; i < nn_numel(a); i++) scale = fmax(scale, fabs(nn_f32(b)[i]));
  for (int64_t i = 0; i < nn_numel(a); i++) m = fmax(m, fabs(nn_f32(a)[i] - nn_f32(b)[i]));
  return m / scale;
}

TEST(detect_inference_path_matches_layers_and_follows_training) {
  nn_rng rng;
  nn_rng_seed(&rng, 5);
  det_config cfg = det_config_default(2, 64);
  cfg.width = 16; /* 64 and 128 channels deep down: the Winograd layers are exercised too */
  detector d;
  CHECK(det_init(&d, &cfg, 7), "init");
  for (int i = 0; i < 7; i++) {
    nn_fill_uniform_(d.bn[i].running_mean, &rng, -0.2f, 0.2f);
    nn_fill_uniform_(d.bn[i].running_var, &rng, 0.5f, 2.0f);
    nn_fill_uniform_(d.bn[i].weight, &rng, 0.5f, 1.5f);
  }
  nn_tensor *x = nn_tensor_new(NN_F32, 4, (int64_t[]){2, 3, 64, 96});
  nn_fill_uniform_(x, &rng, -1, 1);

  nn_no_grad_begin();
  nn_tensor *fast = det_forward(&d, x, false), *ref = layer_path(&d, x);
  nn_no_grad_end();
  CHECK(fast && ref && nn_same_shape(fast, ref), "shapes");
  if (fast && ref) CHECK(max_rel_diff(fast, ref) < 1e-4, "inference path differs by %g", max_rel_diff(fast, ref));
  nn_arena_reset(nn_arena_current());

  /* a training forward, then weights changed as an optimizer step would */
  nn_tensor *out = det_forward(&d, x, true);
  CHECK(out != NULL, "training forward");
  nn_arena_reset(nn_arena_current());
  for (int i = 0; i < 7; i++) nn_fill_uniform_(d.conv[i].weight, &rng, -0.2f, 0.2f);
  nn_no_grad_begin();
  fast = det_forward(&d, x, false);
  ref = layer_path(&d, x);
  nn_no_grad_end();
  CHECK(fast && ref, "after training");
  if (fast && ref) CHECK(max_rel_diff(fast, ref) < 1e-4, "stale after training: differs by %g", max_rel_diff(fast, ref));
  nn_arena_reset(nn_arena_current());

  /* det_weights_changed is the way for any other writer of the weights */
  nn_fill_uniform_(d.fuse.weight, &rng, -0.2f, 0.2f);
  det_weights_changed(&d);
  nn_no_grad_begin();
  fast = det_forward(&d, x, false);
  ref = layer_path(&d, x);
  nn_no_grad_end();
  if (fast && ref) CHECK(max_rel_diff(fast, ref) < 1e-4, "stale after det_weights_changed: %g", max_rel_diff(fast, ref));
  nn_arena_reset(nn_arena_current());
  nn_tensor_free(x);
  det_free(&d);
}

/* Label files for a stream: COCO and CSV images are numbered by sorted name, boxes are scaled from the
 * labelled image's size to the frame's, JSON lines match by frame or timestamp, and frames the file does
 * not list give -1 (not trained on). */
static char *write_temp(const char *name, const char *text) {
  char *p = g_strdup_printf("%s/e2e-labels-%d-%s", g_get_tmp_dir(), (int)getpid(), name);
  CHECK(g_file_set_contents(p, text, -1, NULL), "write %s", p);
  return p;
}

TEST(label_files_give_each_frame_its_boxes) {
  const char *classes[] = {"cat", "raccoon"};
  det_box b[8];
  char *coco = write_temp("l.json",
                          "{\"images\": [{\"id\": 7, \"file_name\": \"b.jpg\", \"width\": 200, \"height\": 100},"
                          " {\"id\": 3, \"file_name\": \"a.jpg\", \"width\": 100, \"height\": 100}],"
                          " \"annotations\": [{\"image_id\": 7, \"category_id\": 1, \"bbox\": [20, 10, 40, 20]},"
                          " {\"image_id\": 3, \"category_id\": 2, \"bbox\": [10, 10, 10, 10]},"
                          " {\"image_id\": 3, \"category_id\": 9, \"bbox\": [1, 1, 5, 5]}],"
                          " \"categories\": [{\"id\": 1, \"name\": \"cat\"}, {\"id\": 2, \"name\": \"raccoon\"}]}");
  det_frame_labels *fl = det_frame_labels_open(coco, classes, 2);
  CHECK(fl != NULL, "COCO: %s", nn_last_error());
  if (fl) {
    CHECK(det_frame_labels_skipped(fl) == 1, "the unknown category skipped");
    /* a.jpg sorts first: frame 0; asked for at 50 x 50, its 100 x 100 boxes halve */
    int n = det_frame_labels_get(fl, 0, -1, 50, 50, b, 8, NULL);
    CHECK(n == 1 && b[0].cls == 1 && fabsf(b[0].x1 - 5) < 1e-5f && fabsf(b[0].x2 - 10) < 1e-5f, "frame 0 is a.jpg, scaled");
    n = det_frame_labels_get(fl, 1, -1, 200, 100, b, 8, NULL);
    CHECK(n == 1 && b[0].cls == 0 && fabsf(b[0].x1 - 20) < 1e-5f && fabsf(b[0].y2 - 30) < 1e-5f, "frame 1 is b.jpg");
    CHECK(det_frame_labels_get(fl, 2, -1, 100, 100, b, 8, NULL) == -1, "frame 2 is not in the file");
  }
  det_frame_labels_free(fl);
  char *csv = write_temp("l.csv", "filename,width,height,class,xmin,ymin,xmax,ymax\n"
                                  "r-2.jpg,100,50,raccoon,10,10,30,40\nr-1.jpg,100,100,raccoon,0,0,50,50\n"
                                  "r-2.jpg,100,50,raccoon,60,5,90,20\n");
  fl = det_frame_labels_open(csv, classes, 2);
  CHECK(fl != NULL, "CSV: %s", nn_last_error());
  if (fl) {
    CHECK(det_frame_labels_get(fl, 0, -1, 100, 100, b, 8, NULL) == 1, "r-1.jpg is frame 0");
    int n = det_frame_labels_get(fl, 1, -1, 100, 100, b, 8, NULL);
    CHECK(n == 2 && fabsf(b[0].y2 - 80) < 1e-5f, "r-2.jpg is frame 1, its two boxes scaled from 100 x 50");
  }
  det_frame_labels_free(fl);
  char *jl = write_temp("l.jsonl", "{\"frame\": 4, \"width\": 10, \"height\": 10, \"objects\": [{\"label\": \"cat\", \"x\": 1, "
                                   "\"y\": 1, \"w\": 2, \"h\": 2}]}\n"
                                   "{\"pts\": 2500000000, \"width\": 10, \"height\": 10, \"objects\": [{\"class_id\": 1, "
                                   "\"x\": 3, \"y\": 3, \"w\": 4, \"h\": 4}]}\nnot json\n");
  fl = det_frame_labels_open(jl, classes, 2);
  CHECK(fl != NULL, "JSON lines: %s", nn_last_error());
  if (fl) {
    CHECK(det_frame_labels_get(fl, 4, 9.0, 10, 10, b, 8, NULL) == 1 && b[0].cls == 0, "by frame number");
    CHECK(det_frame_labels_get(fl, 75, 2.5, 10, 10, b, 8, NULL) == 1 && b[0].cls == 1, "by timestamp");
    CHECK(det_frame_labels_get(fl, 75, 2.6, 10, 10, b, 8, NULL) == -1, "another timestamp: none");
  }
  det_frame_labels_free(fl);
  CHECK(!det_frame_labels_open("labels/%s.txt", classes, 2), "a YOLO pattern without an integer conversion is refused");
  CHECK(!det_frame_labels_open(coco + 1, classes, 2), "a missing file is refused");
  unlink(coco), unlink(csv), unlink(jl);
  g_free(coco), g_free(csv), g_free(jl);
}
