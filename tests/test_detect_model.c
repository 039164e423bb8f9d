/* The detector's inference path (folded, fused, packed copies of its layers) against its own layers run
 * one by one in eval mode, before and after a training step changes the weights. */
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
