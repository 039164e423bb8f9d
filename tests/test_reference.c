/* Forward values against independent references: naive loops written here,
 * a brute-force CTC, and values computed by PyTorch (tests/fixtures). */
#include "harness.h"

#define SH(...) (int64_t[]){__VA_ARGS__}
#define ND(...) (int)(sizeof((int64_t[]){__VA_ARGS__}) / sizeof(int64_t))
#define RANDN(...) t_randn(&rng, ND(__VA_ARGS__), SH(__VA_ARGS__), 1.0f)

static double max_diff_t(nn_tensor *a, const float *ref) {
  int64_t n = nn_numel(a);
  float *v = malloc((size_t)n * 4);
  nn_to_float_array(a, v);
  double d = max_abs_diff(v, ref, n);
  free(v);
  return d;
}

/* ------------------------------------------------------------------ conv */

static void naive_conv2d(const float *x, const float *w, const float *b, float *y, int64_t N, int64_t C, int64_t H,
                         int64_t W, int64_t OC, int64_t KH, int64_t KW, nn_conv_params p, int64_t OH, int64_t OW) {
  int64_t Cg = C / p.groups, OCg = OC / p.groups;
  for (int64_t n = 0; n < N; n++)
    for (int64_t oc = 0; oc < OC; oc++)
      for (int64_t oh = 0; oh < OH; oh++)
        for (int64_t ow = 0; ow < OW; ow++) {
          double s = b ? b[oc] : 0;
          int64_t g = oc / OCg;
          for (int64_t c = 0; c < Cg; c++)
            for (int64_t kh = 0; kh < KH; kh++)
              for (int64_t kw = 0; kw < KW; kw++) {
                int64_t ih = oh * p.stride_h - p.pad_h + kh * p.dilation_h;
                int64_t iw = ow * p.stride_w - p.pad_w + kw * p.dilation_w;
                if (ih < 0 || ih >= H || iw < 0 || iw >= W) continue;
                s += (double)x[((n * C + g * Cg + c) * H + ih) * W + iw] * w[((oc * Cg + c) * KH + kh) * KW + kw];
              }
          y[((n * OC + oc) * OH + oh) * OW + ow] = (float)s;
        }
}

/* Products with one row or one column take GEMV inside; every transpose combination against a plain loop. */
TEST(ref_vector_matrix_products_match_naive) {
  nn_rng rng;
  nn_rng_seed(&rng, 21);
  int64_t dims[][3] = {{1, 37, 53}, {29, 1, 41}, {1, 1, 17}, {1, 300, 700}};
  for (int d = 0; d < 4; d++) {
    int64_t m = dims[d][0], n = dims[d][1], k = dims[d][2];
    for (int ta = 0; ta < 2; ta++)
      for (int tb = 0; tb < 2; tb++) {
        nn_tensor *a0 = ta ? RANDN(k, m) : RANDN(m, k), *b0 = tb ? RANDN(n, k) : RANDN(k, n);
        nn_tensor *a = ta ? nn_transpose(a0, 0, 1) : a0, *b = tb ? nn_transpose(b0, 0, 1) : b0;
        nn_tensor *c = nn_matmul(a, b);
        float *ref = malloc(sizeof(float) * (size_t)(m * n));
        for (int64_t i = 0; i < m; i++)
          for (int64_t j = 0; j < n; j++) {
            double acc = 0;
            for (int64_t q = 0; q < k; q++)
              acc += (double)nn_get(a, (int64_t[]){i, q}) * nn_get(b, (int64_t[]){q, j});
            ref[i * n + j] = (float)acc;
          }
        double e = max_diff_t(c, ref);
        CHECK(e < 1e-4 * sqrt((double)k), "%lldx%lldx%lld ta %d tb %d: max error %g", (long long)m, (long long)n,
              (long long)k, ta, tb, e);
        free(ref);
        nn_tensor_free(a0), nn_tensor_free(b0);
      }
  }
}

TEST(ref_conv2d_matches_naive_loop) {
  nn_rng rng;
  nn_rng_seed(&rng, 21);
  struct { int64_t N, C, H, W, OC, K; int s, pd, d, g; } cases[] = {
      {2, 3, 9, 7, 4, 3, 1, 1, 1, 1}, {1, 4, 8, 8, 6, 3, 2, 1, 1, 2}, {2, 6, 7, 9, 6, 3, 1, 2, 2, 6},
      {1, 3, 5, 5, 2, 1, 1, 0, 1, 1}, {1, 2, 11, 6, 3, 5, 3, 2, 1, 1}};
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    __typeof__(cases[0]) c = cases[i];
    nn_conv_params p = nn_conv_defaults();
    p.stride_h = p.stride_w = c.s;
    p.pad_h = p.pad_w = c.pd;
    p.dilation_h = p.dilation_w = c.d;
    p.groups = c.g;
    nn_tensor *x = RANDN(c.N, c.C, c.H, c.W), *w = RANDN(c.OC, c.C / c.g, c.K, c.K), *b = RANDN(c.OC);
    nn_tensor *y = nn_conv2d(x, w, b, p);
    CHECK(y != NULL, "conv case %zu", i);
    if (y) {
      float *ref = malloc((size_t)nn_numel(y) * 4);
      naive_conv2d(nn_f32(x), nn_f32(w), nn_f32(b), ref, c.N, c.C, c.H, c.W, c.OC, c.K, c.K, p, y->shape[2], y->shape[3]);
      CHECK(max_diff_t(y, ref) < 1e-4, "conv case %zu differs by %g", i, max_diff_t(y, ref));
      free(ref);
    }
    nn_tensor_free(x);
    nn_tensor_free(w);
    nn_tensor_free(b);
  }
}

/* The fast CPU paths (direct register-tiled kernel, Winograd F(2x2,3x3) for 3x3 stride 1 and F(4x4,3x3) over the
 * space-to-depth input, for 5x5 stride 2) against the naive
 * loop, on shapes that cross their tile, chunk and channel-block edges; and the same bits for 1 and 2 threads. */
TEST(ref_conv2d_fast_paths_match_naive_loop) {
  nn_rng rng;
  nn_rng_seed(&rng, 33);
  struct { int64_t N, C, H, W, OC, K; int s, pd; } cases[] = {
      {1, 8, 13, 11, 8, 3, 1, 1},   {2, 16, 24, 50, 12, 3, 1, 1}, {1, 9, 7, 5, 5, 3, 1, 0},
      {1, 32, 40, 40, 33, 3, 1, 1}, {1, 64, 9, 30, 64, 3, 1, 2}, {1, 130, 6, 6, 7, 3, 1, 1},
      {1, 3, 33, 31, 16, 3, 2, 1},  {2, 16, 20, 22, 6, 5, 2, 2}, {1, 12, 17, 9, 10, 4, 3, 1},
      {1, 5, 8, 40, 9, 2, 1, 0},    {1, 8, 2, 2, 8, 3, 1, 1},     {1, 64, 21, 17, 67, 3, 1, 1},
      {2, 96, 5, 26, 64, 3, 1, 0},  {1, 128, 20, 20, 128, 3, 1, 1}, {1, 64, 7, 101, 66, 3, 1, 1},
      {1, 2, 3, 4203, 5, 3, 2, 1} /* rows wider than the stack split buffer */,
      /* 5x5 stride 2 with 4C >= 64 and OC >= 64: Winograd over the space-to-depth input */
      {1, 16, 20, 22, 64, 5, 2, 2}, {2, 64, 33, 31, 70, 5, 2, 2}, {1, 20, 9, 12, 64, 5, 2, 0},
      {1, 64, 6, 7, 64, 5, 2, 1},   {1, 64, 32, 48, 192, 5, 2, 2}};
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    __typeof__(cases[0]) c = cases[i];
    nn_conv_params p = nn_conv_defaults();
    p.stride_h = p.stride_w = c.s;
    p.pad_h = p.pad_w = c.pd;
    nn_tensor *x = RANDN(c.N, c.C, c.H, c.W), *w = RANDN(c.OC, c.C, c.K, c.K), *b = RANDN(c.OC);
    nn_set_num_threads(1);
    nn_tensor *y1 = nn_conv2d(x, w, b, p);
    nn_set_num_threads(2);
    nn_tensor *y2 = nn_conv2d(x, w, b, p);
    CHECK(y1 && y2, "fast conv case %zu", i);
    if (y1 && y2) {
      float *ref = malloc((size_t)nn_numel(y1) * 4);
      naive_conv2d(nn_f32(x), nn_f32(w), nn_f32(b), ref, c.N, c.C, c.H, c.W, c.OC, c.K, c.K, p, y1->shape[2],
                   y1->shape[3]);
      /* sums of up to 1170 products of N(0,1) values: allow for float rounding in that many terms */
      double tol = 2e-5 * sqrt((double)(c.C * c.K * c.K)) * 4;
      CHECK(max_diff_t(y1, ref) < tol, "fast conv case %zu differs by %g", i, max_diff_t(y1, ref));
      CHECK(memcmp(nn_f32(y1), nn_f32(y2), (size_t)nn_numel(y1) * 4) == 0, "case %zu: 1 and 2 threads differ", i);
      /* an inference copy packs once and takes F(4x4) tiles on the space-to-depth path: the same checks */
      nn_conv2d_layer layer = {.weight = w, .bias = b, .p = p};
      nn_conv_infer ci;
      CHECK(nn_conv_infer_init(&ci, &layer, NULL, false), "infer copy %zu", i);
      nn_set_num_threads(1);
      nn_tensor *z1 = nn_conv_infer_forward(&ci, x);
      nn_set_num_threads(2);
      nn_tensor *z2 = nn_conv_infer_forward(&ci, x);
      CHECK(z1 && z2 && max_diff_t(z1, ref) < tol, "infer copy case %zu differs by %g", i, z1 ? max_diff_t(z1, ref) : -1.0);
      CHECK(z1 && z2 && memcmp(nn_f32(z1), nn_f32(z2), (size_t)nn_numel(z1) * 4) == 0, "infer copy case %zu: 1 and 2 threads differ", i);
      nn_conv_infer_free(&ci);
      free(ref);
    }
    nn_tensor_free(x);
    nn_tensor_free(w);
    nn_tensor_free(b);
  }
  nn_set_num_threads(0);
}

/* The AVX2 and AVX-512 kernels run the same FMA chain per output: forward, data and weight gradients on
 * the direct path give the same bits under either (on a CPU with AVX-512). (Layers that AVX2 trains
 * through Winograd take the direct path under AVX-512: those differ in rounding, and each is checked
 * against the naive loop above.) */
static void conv_fwd_bwd(nn_tensor *x, nn_tensor *w, nn_tensor *b, nn_conv_params p, float **out, int64_t *n) {
  nn_zero_grad(x), nn_zero_grad(w), nn_zero_grad(b);
  nn_tensor *y = nn_conv2d(x, w, b, p);
  nn_tensor *loss = nn_sum_all(nn_mul(y, y));
  nn_backward(loss);
  int64_t ny = nn_numel(y), nx = nn_numel(x), nw = nn_numel(w);
  *n = ny + nx + nw;
  *out = malloc((size_t)*n * sizeof(float));
  memcpy(*out, nn_f32(y), (size_t)ny * 4);
  memcpy(*out + ny, nn_f32(x->grad), (size_t)nx * 4);
  memcpy(*out + ny + nx, nn_f32(w->grad), (size_t)nw * 4);
  nn_arena_reset(nn_arena_current());
}

TEST(ref_conv_isas_give_the_same_bits) {
  const char *start = nn_conv_isa();
  if (strcmp(start, "avx512") != 0) {
    printf("  (no AVX-512 here: %s kernels only, nothing to compare)\n", start);
    return;
  }
  nn_rng rng;
  nn_rng_seed(&rng, 34);
  struct { int64_t N, C, H, W, OC, K; int s, pd; } cases[] = {
      {2, 3, 33, 31, 16, 3, 1, 1}, {2, 32, 12, 17, 40, 3, 1, 1}, {1, 8, 20, 22, 24, 5, 2, 2}, {1, 12, 17, 9, 10, 4, 3, 1}};
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    __typeof__(cases[0]) c = cases[i];
    nn_conv_params p = nn_conv_defaults();
    p.stride_h = p.stride_w = c.s;
    p.pad_h = p.pad_w = c.pd;
    nn_tensor *x = RANDN(c.N, c.C, c.H, c.W), *w = RANDN(c.OC, c.C, c.K, c.K), *b = RANDN(c.OC);
    nn_set_requires_grad(x, true), nn_set_requires_grad(w, true), nn_set_requires_grad(b, true);
    float *r512, *r2;
    int64_t n512, n2;
    nn_set_conv_isa("avx512");
    conv_fwd_bwd(x, w, b, p, &r512, &n512);
    nn_set_conv_isa("avx2");
    CHECK(strcmp(nn_conv_isa(), "avx2") == 0, "the ISA can be capped at avx2");
    conv_fwd_bwd(x, w, b, p, &r2, &n2);
    CHECK(n512 == n2 && memcmp(r512, r2, (size_t)n2 * 4) == 0, "case %zu: avx2 and avx512 differ", i);
    free(r512), free(r2);
    nn_tensor_free(x), nn_tensor_free(w), nn_tensor_free(b);
  }
  CHECK(!nn_set_conv_isa("sse9"), "an unknown ISA is refused");
  nn_set_conv_isa(start);
  CHECK(strcmp(nn_conv_isa(), start) == 0, "back to %s", start);
}

/* An inference copy (batch norm folded in, ReLU fused, filters packed) against the three layers it replaces,
 * for shapes on the direct, Winograd and GEMM paths; and it is a snapshot of the weights it was made from. */
TEST(ref_conv_infer_matches_conv_bn_relu) {
  nn_rng rng;
  nn_rng_seed(&rng, 44);
  struct { int64_t C, OC, H, K; int s, pd; bool bias, bn, relu; } cases[] = {
      {3, 16, 33, 3, 2, 1, false, true, true}, {16, 12, 20, 3, 1, 1, true, true, false},
      {64, 64, 14, 3, 1, 1, false, true, true}, {8, 10, 9, 1, 1, 0, true, false, true},
      {6, 9, 11, 5, 2, 2, true, true, true}, {16, 64, 17, 5, 2, 2, true, true, true} /* Winograd s2 */};
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    __typeof__(cases[0]) c = cases[i];
    nn_params ps;
    nn_params_init(&ps);
    nn_conv2d_layer conv;
    nn_batchnorm bn;
    CHECK(nn_conv2d_init(&conv, &ps, "c", c.C, c.OC, (int)c.K, c.s, c.pd, 1, c.bias, &rng), "init %zu", i);
    CHECK(nn_batchnorm_init(&bn, &ps, "bn", c.OC), "bn init %zu", i);
    /* running statistics and affine parameters far from the identity */
    nn_fill_uniform_(bn.running_mean, &rng, -0.5f, 0.5f);
    nn_fill_uniform_(bn.running_var, &rng, 0.2f, 3.0f);
    nn_fill_uniform_(bn.weight, &rng, 0.5f, 1.5f);
    nn_fill_uniform_(bn.bias, &rng, -0.3f, 0.3f);
    nn_tensor *x = RANDN(2, c.C, c.H, c.H + 3);
    nn_tensor *pre = nn_conv2d_forward(&conv, x), *ref = pre;
    if (c.bn) pre = ref = nn_batchnorm_forward(&bn, ref, false);
    if (c.relu) ref = nn_relu(ref);
    nn_conv_infer ci;
    CHECK(nn_conv_infer_init(&ci, &conv, c.bn ? &bn : NULL, c.relu), "infer init %zu", i);
    /* the fused add: relu?(conv + addend) */
    nn_tensor *addend = pre ? t_randn(&rng, 4, pre->shape, 1.0f) : NULL;
    nn_tensor *sum = addend ? nn_conv_infer_forward_add(&ci, x, addend) : NULL;
    nn_tensor *sum_ref = addend ? nn_add(pre, addend) : NULL;
    if (sum_ref && c.relu) sum_ref = nn_relu(sum_ref);
    CHECK(sum && sum_ref && nn_same_shape(sum, sum_ref), "case %zu: fused add", i);
    if (sum && sum_ref) {
      float *r = malloc((size_t)nn_numel(sum_ref) * 4);
      nn_to_float_array(sum_ref, r);
      CHECK(max_diff_t(sum, r) < 1e-3, "case %zu: fused add differs by %g", i, max_diff_t(sum, r));
      free(r);
    }
    nn_tensor_free(addend);
    nn_tensor *y = nn_conv_infer_forward(&ci, x);
    CHECK(y && ref && nn_same_shape(y, ref), "case %zu shapes", i);
    if (y && ref) {
      float *r = malloc((size_t)nn_numel(ref) * 4);
      nn_to_float_array(ref, r);
      CHECK(max_diff_t(y, r) < 1e-3, "case %zu: inference copy differs by %g", i, max_diff_t(y, r));
      /* snapshot: changing the source filters leaves the copy as it was */
      float before = nn_f32(y)[0];
      nn_fill_(conv.weight, 0.0f);
      nn_tensor *y2 = nn_conv_infer_forward(&ci, x);
      CHECK(y2 && nn_f32(y2)[0] == before, "case %zu: the copy followed a later weight change", i);
      free(r);
    }
    nn_conv_infer_free(&ci);
    nn_tensor_free(x);
    nn_params_free(&ps);
    nn_arena_reset(nn_arena_current());
  }
}

/* conv_transpose2d against its definition: every input pixel scatters a weighted kernel. */
static void scatter_conv_transpose(const float *x, const float *w, const float *b, float *y, int64_t N, int64_t C,
                                   int64_t H, int64_t W, int64_t OCg, int64_t K, int64_t G, int64_t OH, int64_t OW,
                                   nn_conv_params p) {
  int64_t OC = OCg * G, Cg = C / G;
  for (int64_t n = 0; n < N; n++)
    for (int64_t oc = 0; oc < OC; oc++)
      for (int64_t i = 0; i < OH * OW; i++) y[(n * OC + oc) * OH * OW + i] = b[oc];
  for (int64_t n = 0; n < N; n++)
    for (int64_t c = 0; c < C; c++)
      for (int64_t ih = 0; ih < H; ih++)
        for (int64_t iw = 0; iw < W; iw++)
          for (int64_t o = 0; o < OCg; o++)
            for (int64_t kh = 0; kh < K; kh++)
              for (int64_t kw = 0; kw < K; kw++) {
                int64_t oh = ih * p.stride_h - p.pad_h + kh, ow = iw * p.stride_w - p.pad_w + kw;
                if (oh < 0 || oh >= OH || ow < 0 || ow >= OW) continue;
                int64_t oc = (c / Cg) * OCg + o;
                y[((n * OC + oc) * OH + oh) * OW + ow] +=
                    x[((n * C + c) * H + ih) * W + iw] * w[((c * OCg + o) * K + kh) * K + kw];
              }
}

/* Grouped (GEMM path) and plain (one direct convolution per output phase) cases: strides 1-3, output
 * padding, a phase no tap reaches (K 2, stride 3), the codec's 5x5 stride 2; 1 and 2 threads give the
 * same bits. */
TEST(ref_conv_transpose2d_matches_scatter_definition) {
  nn_rng rng;
  nn_rng_seed(&rng, 22);
  struct { int64_t N, C, H, W, OCg, K, G; int s, pd, op; } cases[] = {
      {2, 4, 3, 4, 3, 3, 2, 2, 1, 1},  {2, 5, 7, 6, 6, 5, 1, 2, 2, 1}, {1, 8, 9, 30, 9, 3, 1, 1, 1, 0},
      {1, 3, 5, 4, 4, 4, 1, 2, 1, 0},  {1, 6, 4, 5, 5, 2, 1, 3, 0, 2}, {1, 16, 12, 13, 10, 3, 1, 3, 2, 1},
      {1, 9, 6, 40, 7, 5, 1, 2, 2, 1}};
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    __typeof__(cases[0]) c = cases[i];
    nn_conv_params p = nn_conv_defaults();
    p.stride_h = p.stride_w = c.s;
    p.pad_h = p.pad_w = c.pd;
    p.output_pad_h = p.output_pad_w = c.op;
    p.groups = (int)c.G;
    nn_tensor *x = RANDN(c.N, c.C, c.H, c.W), *w = RANDN(c.C, c.OCg, c.K, c.K), *b = RANDN(c.OCg * c.G);
    nn_set_num_threads(1);
    nn_tensor *y = nn_conv_transpose2d(x, w, b, p);
    nn_set_num_threads(2);
    nn_tensor *y2 = nn_conv_transpose2d(x, w, b, p);
    int64_t OH = (c.H - 1) * c.s - 2 * c.pd + c.K + c.op, OW = (c.W - 1) * c.s - 2 * c.pd + c.K + c.op;
    CHECK(y && y2 && y->shape[2] == OH && y->shape[3] == OW, "case %zu: output shape", i);
    if (y && y2) {
      float *ref = malloc((size_t)nn_numel(y) * 4);
      scatter_conv_transpose(nn_f32(x), nn_f32(w), nn_f32(b), ref, c.N, c.C, c.H, c.W, c.OCg, c.K, c.G, OH, OW, p);
      CHECK(max_diff_t(y, ref) < 1e-4, "case %zu differs by %g", i, max_diff_t(y, ref));
      CHECK(memcmp(nn_f32(y), nn_f32(y2), (size_t)nn_numel(y) * 4) == 0, "case %zu: 1 and 2 threads differ", i);
      free(ref);
    }
    nn_tensor_free(x);
    nn_tensor_free(w);
    nn_tensor_free(b);
  }
  nn_set_num_threads(0);
}

/* The data gradient of a transposed convolution is the plain convolution of the output gradient with the
 * same filters; for the codec's 5x5 stride-2 shape with 64 channels it runs on Winograd over the
 * space-to-depth input. Against the adjoint written out: dx[c][i][j] = sum w[c][o][kh][kw] g[o][2i-2+kh][2j-2+kw]. */
TEST(ref_conv_transpose2d_data_gradient_on_the_fast_paths) {
  nn_rng rng;
  nn_rng_seed(&rng, 24);
  int64_t C = 64, O = 16, H = 9, W = 11, K = 5, OH = 2 * H, OW = 2 * W;
  nn_conv_params p = nn_conv_defaults();
  p.stride_h = p.stride_w = 2;
  p.pad_h = p.pad_w = 2;
  p.output_pad_h = p.output_pad_w = 1;
  nn_tensor *x = RANDN(1, C, H, W), *w = RANDN(C, O, K, K), *g = RANDN(1, O, OH, OW);
  nn_set_requires_grad(x, true);
  CHECK(nn_backward(nn_sum_all(nn_mul(nn_conv_transpose2d(x, w, NULL, p), g))), "backward");
  double maxd = 0;
  for (int64_t c = 0; c < C; c++)
    for (int64_t i = 0; i < H; i++)
      for (int64_t j = 0; j < W; j++) {
        double ref = 0;
        for (int64_t o = 0; o < O; o++)
          for (int64_t kh = 0; kh < K; kh++)
            for (int64_t kw = 0; kw < K; kw++) {
              int64_t y = 2 * i - 2 + kh, xx = 2 * j - 2 + kw;
              if (y < 0 || y >= OH || xx < 0 || xx >= OW) continue;
              ref += (double)nn_f32(w)[((c * O + o) * K + kh) * K + kw] * nn_f32(g)[(o * OH + y) * OW + xx];
            }
        maxd = fmax(maxd, fabs(ref - nn_f32(x->grad)[(c * H + i) * W + j]));
      }
  CHECK(maxd < 2e-3, "data gradient differs from the adjoint by %g", maxd);
  nn_arena_reset(nn_arena_current());
  nn_tensor_free(x), nn_tensor_free(w), nn_tensor_free(g);
}

/* Weight gradients on shapes large enough that they go a slice of output rows at a time, against the sums
 * written out: conv2d dw[o][c][kh][kw] = sum g[o][i][j] x[c][i*s-p+kh][j*s-p+kw]; the transposed
 * convolution's dw[c][o][kh][kw] = sum x[c][i][j] g[o][i*s-p+kh][j*s-p+kw]. */
/* Weight gradients on the direct kernel (no im2col) for batches: output channels past one 32-lane block
 * and not a multiple of 8, rows not a multiple of 8, strides, 16 taps in groups; against the sums, and
 * the same bits for 1 and 2 threads (the batch goes in fixed slices). */
TEST(ref_conv_weight_gradient_batches) {
  nn_rng rng;
  nn_rng_seed(&rng, 26);
  struct { int64_t N, C, H, W, OC, K; int s, pd; } cases[] = {{3, 5, 23, 23, 37, 3, 2, 1}, {2, 6, 19, 21, 9, 4, 1, 2},
                                                               {9, 3, 12, 10, 16, 3, 1, 1}};
  for (size_t ci = 0; ci < sizeof cases / sizeof cases[0]; ci++) {
    __typeof__(cases[0]) c = cases[ci];
    nn_conv_params p = nn_conv_defaults();
    p.stride_h = p.stride_w = c.s;
    p.pad_h = p.pad_w = c.pd;
    nn_tensor *x = RANDN(c.N, c.C, c.H, c.W), *w = RANDN(c.OC, c.C, c.K, c.K);
    nn_set_requires_grad(w, true);
    float *gw[2];
    int64_t OH = 0, OW = 0;
    nn_tensor *g = NULL;
    for (int t = 0; t < 2; t++) {
      nn_set_num_threads(t + 1);
      nn_zero_grad(w);
      nn_tensor *y = nn_conv2d(x, w, NULL, p);
      OH = y->shape[2], OW = y->shape[3];
      if (!g) {
        nn_no_grad_begin();
        g = t_randn(&rng, 4, y->shape, 1.0f);
        nn_no_grad_end();
      }
      nn_backward(nn_sum_all(nn_mul(y, g)));
      gw[t] = malloc((size_t)nn_numel(w) * 4);
      memcpy(gw[t], nn_f32(w->grad), (size_t)nn_numel(w) * 4);
      nn_arena_reset(nn_arena_current());
    }
    nn_set_num_threads(0);
    double maxd = 0, scale = 0;
    for (int64_t oc = 0; oc < c.OC; oc++)
      for (int64_t ch = 0; ch < c.C; ch++)
        for (int64_t kh = 0; kh < c.K; kh++)
          for (int64_t kw = 0; kw < c.K; kw++) {
            double ref = 0;
            for (int64_t n = 0; n < c.N; n++)
              for (int64_t i = 0; i < OH; i++)
                for (int64_t j = 0; j < OW; j++) {
                  int64_t ih = i * c.s - c.pd + kh, iw = j * c.s - c.pd + kw;
                  if (ih < 0 || ih >= c.H || iw < 0 || iw >= c.W) continue;
                  ref += (double)nn_f32(g)[((n * c.OC + oc) * OH + i) * OW + j] *
                         nn_f32(x)[((n * c.C + ch) * c.H + ih) * c.W + iw];
                }
            maxd = fmax(maxd, fabs(ref - gw[0][((oc * c.C + ch) * c.K + kh) * c.K + kw]));
            scale = fmax(scale, fabs(ref));
          }
    CHECK(maxd < 1e-4 * (1 + scale), "case %zu: weight gradient differs from the sums by %g (of %g)", ci, maxd, scale);
    CHECK(memcmp(gw[0], gw[1], (size_t)nn_numel(w) * 4) == 0, "case %zu: 1 and 2 threads differ", ci);
    free(gw[0]), free(gw[1]);
    nn_tensor_free(x), nn_tensor_free(w), nn_tensor_free(g);
  }
}

TEST(ref_conv_weight_gradients_slice_by_slice) {
  nn_rng rng;
  nn_rng_seed(&rng, 25);
  for (int transposed = 0; transposed < 2; transposed++) {
    /* conv2d: 32 -> 8 channels, 5x5, stride 1, 96x96 (16 slices of 6 rows); transposed: 8 -> 32, stride 2,
     * 48x48 -> 96x96 (4 slices of 13 input rows) */
    int64_t C = transposed ? 8 : 32, O = transposed ? 32 : 8, H = transposed ? 48 : 96, K = 5, s = transposed ? 2 : 1;
    int64_t OH = transposed ? 2 * H : H;
    nn_conv_params p = nn_conv_defaults();
    p.stride_h = p.stride_w = (int)s;
    p.pad_h = p.pad_w = 2;
    if (transposed) p.output_pad_h = p.output_pad_w = 1;
    nn_tensor *x = RANDN(1, C, H, H), *w = transposed ? RANDN(C, O, K, K) : RANDN(O, C, K, K), *g = RANDN(1, O, OH, OH);
    nn_set_requires_grad(w, true);
    nn_tensor *y = transposed ? nn_conv_transpose2d(x, w, NULL, p) : nn_conv2d(x, w, NULL, p);
    CHECK(y && y->shape[2] == OH && nn_backward(nn_sum_all(nn_mul(y, g))), "backward %d", transposed);
    double maxd = 0, scale = 0;
    /* the small side (conv2d: output, transposed: input) indexes i, j; the large one i*s-p+kh */
    const float *small = transposed ? nn_f32(x) : nn_f32(g), *large = transposed ? nn_f32(g) : nn_f32(x);
    int64_t SC = transposed ? C : O, LC = transposed ? O : C, SH = transposed ? H : OH, LH = transposed ? OH : H;
    for (int64_t a = 0; a < SC; a++)
      for (int64_t b = 0; b < LC; b++)
        for (int64_t kh = 0; kh < K; kh++)
          for (int64_t kw = 0; kw < K; kw++) {
            double ref = 0;
            for (int64_t i = 0; i < SH; i++) {
              int64_t li = i * s - 2 + kh;
              if (li < 0 || li >= LH) continue;
              for (int64_t j = 0; j < SH; j++) {
                int64_t lj = j * s - 2 + kw;
                if (lj >= 0 && lj < LH) ref += (double)small[(a * SH + i) * SH + j] * large[(b * LH + li) * LH + lj];
              }
            }
            maxd = fmax(maxd, fabs(ref - nn_f32(w->grad)[((a * LC + b) * K + kh) * K + kw]));
            scale = fmax(scale, fabs(ref));
          }
    CHECK(maxd < 1e-4 * (1 + scale), "%s: weight gradient differs from the sums by %g (of %g)",
          transposed ? "conv_transpose2d" : "conv2d", maxd, scale);
    nn_arena_reset(nn_arena_current());
    nn_tensor_free(x), nn_tensor_free(w), nn_tensor_free(g);
  }
}

/* Max pooling, the 2x2 fast path and the general loop alike: the first maximum of each window wins
 * (ties included), and the backward hands each output's gradient to exactly that input. */
static void naive_max_pool(const float *x, int64_t planes, int64_t H, int64_t W, int k, int s, int p, float *y,
                           int64_t *win, int64_t OH, int64_t OW) {
  for (int64_t pl = 0; pl < planes; pl++)
    for (int64_t oh = 0; oh < OH; oh++)
      for (int64_t ow = 0; ow < OW; ow++) {
        float best = 0;
        int64_t bi = -1;
        for (int kh = 0; kh < k; kh++)
          for (int kw = 0; kw < k; kw++) {
            int64_t ih = oh * s - p + kh, iw = ow * s - p + kw;
            if (ih < 0 || ih >= H || iw < 0 || iw >= W) continue;
            float v = x[(pl * H + ih) * W + iw];
            if (bi < 0 || v > best) best = v, bi = (pl * H + ih) * W + iw;
          }
        y[(pl * OH + oh) * OW + ow] = best;
        win[(pl * OH + oh) * OW + ow] = bi;
      }
}

TEST(ref_max_pool_matches_naive_loop) {
  nn_rng rng;
  nn_rng_seed(&rng, 12);
  int cases[][5] = {{7, 5, 2, 2, 0}, {8, 8, 2, 2, 0}, {6, 37, 2, 2, 0}, {5, 34, 2, 2, 0}, {6, 5, 3, 2, 1}, {5, 7, 3, 1, 1}, {9, 6, 2, 1, 0},
                   {7, 23, 5, 1, 2}, {6, 9, 4, 3, 2}};
  for (size_t ci = 0; ci < sizeof cases / sizeof cases[0]; ci++) {
    int64_t H = cases[ci][0], W = cases[ci][1];
    int k = cases[ci][2], s = cases[ci][3], p = cases[ci][4];
    nn_tensor *x = t_randn(&rng, 4, SH(2, 3, H, W), 1.0f);
    float *xd = nn_f32(x);
    for (int64_t i = 0; i < nn_numel(x); i += 3) xd[i] = xd[i + 1 < nn_numel(x) ? i + 1 : i]; /* ties */
    nn_set_requires_grad(x, true);
    nn_tensor *y = nn_max_pool2d(x, k, s, p);
    CHECK(y != NULL, "max_pool2d ran");
    int64_t OH = y->shape[2], OW = y->shape[3], n = nn_numel(y);
    float *ref = malloc((size_t)n * sizeof *ref), *g = malloc((size_t)n * sizeof *g);
    int64_t *win = malloc((size_t)n * sizeof *win);
    naive_max_pool(xd, 6, H, W, k, s, p, ref, win, OH, OW);
    CHECK(max_diff_t(y, ref) == 0.0, "max_pool2d k%d s%d p%d on %lldx%lld: values equal the naive loop's", k, s, p,
          (long long)H, (long long)W);
    nn_no_grad_begin(); /* inference keeps no argmax and takes rows, then columns */
    nn_tensor *yi = nn_max_pool2d(x, k, s, p);
    nn_no_grad_end();
    CHECK(yi && max_diff_t(yi, ref) == 0.0, "max_pool2d k%d s%d p%d without gradients: the same values", k, s, p);
    nn_tensor *gy = nn_tensor_new(NN_F32, 4, y->shape);
    for (int64_t i = 0; i < n; i++) nn_f32(gy)[i] = g[i] = (float)(i % 7) + 1.0f;
    nn_backward_with(y, gy);
    float *want = calloc((size_t)nn_numel(x), sizeof *want);
    for (int64_t i = 0; i < n; i++) want[win[i]] += g[i];
    CHECK(x->grad && max_diff_t(x->grad, want) == 0.0, "max_pool2d k%d s%d p%d: the gradient goes to the first maximum",
          k, s, p);
    free(ref), free(g), free(win), free(want);
    nn_tensor_free(gy);
    nn_tensor_free(x);
    nn_arena_reset(nn_arena_current());
  }
}

TEST(ref_matmul_matches_naive) {
  nn_rng rng;
  nn_rng_seed(&rng, 23);
  nn_tensor *a = RANDN(3, 17, 33), *b = RANDN(33, 9);
  nn_tensor *y = nn_matmul(a, b);
  float *ref = malloc(3 * 17 * 9 * 4);
  for (int bi = 0; bi < 3; bi++)
    for (int i = 0; i < 17; i++)
      for (int j = 0; j < 9; j++) {
        double s = 0;
        for (int k = 0; k < 33; k++) s += (double)nn_f32(a)[(bi * 17 + i) * 33 + k] * nn_f32(b)[k * 9 + j];
        ref[(bi * 17 + i) * 9 + j] = (float)s;
      }
  CHECK(y && y->ndim == 3 && y->shape[0] == 3 && y->shape[2] == 9, "shape");
  CHECK(max_diff_t(y, ref) < 1e-4, "differs by %g", max_diff_t(y, ref));
  free(ref);
  nn_tensor_free(a);
  nn_tensor_free(b);
}

/* ------------------------------------------------------------- LSTM / GRU */

static float sig(float x) { return 1.0f / (1.0f + expf(-x)); }

/* One direction, one layer, step by step in plain loops (PyTorch's equations). */
static void ref_rnn_dir(bool gru, const float *x, int64_t T, int64_t N, int64_t I, int64_t H, const float *wih,
                        const float *whh, const float *bih, const float *bhh, const int64_t *len, bool reverse,
                        float *out /* [T,N,H] */) {
  int64_t G = (gru ? 3 : 4) * H;
  float *h = calloc((size_t)(N * H), 4), *c = calloc((size_t)(N * H), 4), *gi = malloc((size_t)G * 4),
        *gh = malloc((size_t)G * 4);
  for (int64_t b = 0; b < N; b++) {
    for (int64_t s = 0; s < len[b]; s++) {
      int64_t t = reverse ? len[b] - 1 - s : s;
      for (int64_t g = 0; g < G; g++) {
        double a = bih[g], hh = bhh[g];
        for (int64_t k = 0; k < I; k++) a += (double)wih[g * I + k] * x[(t * N + b) * I + k];
        for (int64_t k = 0; k < H; k++) hh += (double)whh[g * H + k] * h[b * H + k];
        gi[g] = (float)a;
        gh[g] = (float)hh;
      }
      for (int64_t j = 0; j < H; j++) {
        if (gru) {
          float r = sig(gi[j] + gh[j]), z = sig(gi[H + j] + gh[H + j]);
          float n = tanhf(gi[2 * H + j] + r * gh[2 * H + j]);
          h[b * H + j] = (1 - z) * n + z * h[b * H + j];
        } else {
          float i = sig(gi[j] + gh[j]), f = sig(gi[H + j] + gh[H + j]);
          float g = tanhf(gi[2 * H + j] + gh[2 * H + j]), o = sig(gi[3 * H + j] + gh[3 * H + j]);
          c[b * H + j] = f * c[b * H + j] + i * g;
          h[b * H + j] = o * tanhf(c[b * H + j]);
        }
      }
      for (int64_t j = 0; j < H; j++) out[(t * N + b) * H + j] = h[b * H + j];
    }
    for (int64_t t = len[b]; t < T; t++)
      for (int64_t j = 0; j < H; j++) out[(t * N + b) * H + j] = 0;
  }
  free(h);
  free(c);
  free(gi);
  free(gh);
}

static void rnn_reference_case(bool gru) {
  nn_rng rng;
  nn_rng_seed(&rng, gru ? 31 : 32);
  int64_t T = 6, N = 3, I = 4, H = 5;
  nn_params p;
  nn_params_init(&p);
  nn_rnn r;
  CHECK(nn_rnn_init(&r, &p, "rnn", gru, I, H, 2, true, &rng), "init");
  nn_tensor *x = RANDN(T, N, I);
  int64_t len[] = {6, 4, 1};
  nn_tensor *lt = nn_tensor_from_data(NN_I64, 1, SH(3), len);
  nn_tensor *y = nn_rnn_forward(&r, x, lt);
  CHECK(y && y->shape[2] == 2 * H, "output shape");
  /* reference: layer 0 both directions, concat, then layer 1 */
  float *l0 = malloc((size_t)(T * N * 2 * H) * 4), *dir = malloc((size_t)(T * N * H) * 4);
  float *l1 = malloc((size_t)(T * N * 2 * H) * 4);
  const float *in = nn_f32(x);
  int64_t in_dim = I;
  for (int l = 0; l < 2; l++) {
    float *dst = l == 0 ? l0 : l1;
    for (int d = 0; d < 2; d++) {
      ref_rnn_dir(gru, in, T, N, in_dim, H, nn_f32(r.w_ih[l][d]), nn_f32(r.w_hh[l][d]), nn_f32(r.b_ih[l][d]),
                  nn_f32(r.b_hh[l][d]), len, d == 1, dir);
      for (int64_t i = 0; i < T * N; i++)
        for (int64_t j = 0; j < H; j++) dst[i * 2 * H + d * H + j] = dir[i * H + j];
    }
    in = l0;
    in_dim = 2 * H;
  }
  if (y) CHECK(max_diff_t(y, l1) < 1e-5, "%s differs from the step-by-step reference by %g", gru ? "GRU" : "LSTM", max_diff_t(y, l1));
  free(l0);
  free(l1);
  free(dir);
  nn_tensor_free(x);
  nn_tensor_free(lt);
  nn_params_free(&p);
}

TEST(ref_lstm_matches_step_by_step) { rnn_reference_case(false); }
TEST(ref_gru_matches_step_by_step) { rnn_reference_case(true); }

/* -------------------------------------------------------------------- CTC */

/* Sums the probability of every length-T path over C symbols that collapses to the target. */
static double brute_ctc(const float *lp, int64_t T, int64_t N, int64_t C, int64_t n, int64_t Tn, const int64_t *tg, int64_t S) {
  double total = 0;
  int64_t paths = 1;
  for (int64_t t = 0; t < Tn; t++) paths *= C;
  for (int64_t p = 0; p < paths; p++) {
    int64_t code = p, seq[16], out[16], no = 0;
    double lprob = 0;
    for (int64_t t = 0; t < Tn; t++) {
      seq[t] = code % C;
      code /= C;
      lprob += lp[(t * N + n) * C + seq[t]];
    }
    int64_t prev = -1;
    for (int64_t t = 0; t < Tn; t++) {
      if (seq[t] != 0 && seq[t] != prev) out[no++] = seq[t];
      prev = seq[t];
    }
    bool match = no == S;
    for (int64_t i = 0; match && i < S; i++) match = out[i] == tg[i];
    if (match) total += exp(lprob);
  }
  return -log(total);
}

TEST(ref_ctc_matches_brute_force) {
  nn_rng rng;
  nn_rng_seed(&rng, 33);
  int64_t T = 6, N = 3, C = 3, S = 3;
  nn_tensor *logits = RANDN(T, N, C);
  nn_tensor *lp = nn_log_softmax(logits, 2);
  int64_t tg[] = {1, 2, 1, 2, 2, 0, 1, 0, 0};
  int64_t il[] = {6, 5, 4}, tl[] = {3, 2, 1};
  nn_tensor *targets = nn_tensor_from_data(NN_I64, 2, SH(N, S), tg);
  nn_tensor *loss = nn_ctc_loss(lp, targets, il, tl, 0, false, false);
  double ref = 0;
  for (int64_t n = 0; n < N; n++) ref += brute_ctc(nn_f32(lp), T, N, C, n, il[n], tg + n * S, tl[n]);
  CHECK(loss != NULL, "ctc");
  if (loss) CHECK_CLOSE(nn_item(loss), ref, 1e-4 * fabs(ref));
  /* infeasible: target longer than the input can hold (1,1 needs 3 frames) */
  int64_t il2[] = {2, 5, 4}, tg2[] = {1, 1, 0, 2, 2, 0, 1, 0, 0}, tl2[] = {2, 2, 1};
  nn_tensor *t2 = nn_tensor_from_data(NN_I64, 2, SH(N, S), tg2);
  nn_tensor *inf = nn_ctc_loss(lp, t2, il2, tl2, 0, false, false);
  nn_tensor *zero = nn_ctc_loss(lp, t2, il2, tl2, 0, false, true);
  CHECK(inf && isinf(nn_item(inf)), "infeasible alignment gives +inf");
  double ref2 = brute_ctc(nn_f32(lp), T, N, C, 1, 5, tg2 + 3, 2) + brute_ctc(nn_f32(lp), T, N, C, 2, 4, tg2 + 6, 1);
  CHECK(zero && fabs(nn_item(zero) - ref2) < 1e-4 * ref2, "zero_infinity drops the infeasible sample");
  /* bad labels are refused, not crashed on */
  int64_t bad[] = {0, 1, 0, 1, 1, 0, 1, 0, 0};
  nn_tensor *tb = nn_tensor_from_data(NN_I64, 2, SH(N, S), bad);
  CHECK(nn_ctc_loss(lp, tb, il, tl, 0, false, false) == NULL, "blank inside a target is refused");
  nn_tensor_free(logits);
  nn_tensor_free(targets);
  nn_tensor_free(t2);
  nn_tensor_free(tb);
}

/* ------------------------------------------------------------ small values */

/* Rows long enough for the vector lanes (and a tail), values from -60 to 60: softmax, log-softmax and
 * both backwards against double-precision sums. */
/* nn_batch_norm_relu against the two ops it fuses: the same values and gradients, train and eval, on
 * maps long enough for the vector lanes. */
TEST(ref_batch_norm_relu_matches_the_pair) {
  nn_rng rng;
  nn_rng_seed(&rng, 28);
  for (int training = 0; training < 2; training++) {
    nn_tensor *x = t_randn(&rng, 4, SH(3, 5, 7, 9), 1.0f), *gm = t_randn(&rng, 1, SH(5), 1.0f);
    nn_tensor *bt = t_randn(&rng, 1, SH(5), 1.0f), *g = t_randn(&rng, 4, SH(3, 5, 7, 9), 1.0f);
    nn_tensor *rm = nn_tensor_new(NN_F32, 1, SH(5)), *rv = nn_tensor_new(NN_F32, 1, SH(5));
    nn_fill_(rv, 1.5f);
    nn_tensor *ts[3] = {x, gm, bt};
    float *grads[2][3];
    float *vals[2];
    for (int fused = 0; fused < 2; fused++) {
      for (int k = 0; k < 3; k++) nn_set_requires_grad(ts[k], true), nn_zero_grad(ts[k]);
      nn_tensor *y = fused ? nn_batch_norm_relu(x, gm, bt, rm, rv, training, 0.0f, 1e-5f)
                           : nn_relu(nn_batch_norm(x, gm, bt, rm, rv, training, 0.0f, 1e-5f));
      CHECK(y && nn_backward_with(y, g), "ran");
      vals[fused] = malloc((size_t)nn_numel(y) * 4);
      memcpy(vals[fused], nn_f32(y), (size_t)nn_numel(y) * 4);
      for (int k = 0; k < 3; k++) {
        grads[fused][k] = malloc((size_t)nn_numel(ts[k]) * 4);
        memcpy(grads[fused][k], nn_f32(ts[k]->grad), (size_t)nn_numel(ts[k]) * 4);
      }
      nn_arena_reset(nn_arena_current());
    }
    CHECK(max_abs_diff(vals[0], vals[1], nn_numel(x)) == 0.0, "training %d: the values differ", training);
    for (int k = 0; k < 3; k++)
      CHECK(max_abs_diff(grads[0][k], grads[1][k], nn_numel(ts[k])) < 1e-5, "training %d: gradient %d differs by %g",
            training, k, max_abs_diff(grads[0][k], grads[1][k], nn_numel(ts[k])));
    for (int f = 0; f < 2; f++) {
      free(vals[f]);
      for (int k = 0; k < 3; k++) free(grads[f][k]);
    }
    nn_tensor_free(x), nn_tensor_free(gm), nn_tensor_free(bt), nn_tensor_free(g), nn_tensor_free(rm), nn_tensor_free(rv);
  }
}

TEST(ref_softmax_long_rows) {
  nn_rng rng;
  nn_rng_seed(&rng, 27);
  int64_t R = 5, L = 37;
  nn_tensor *x = t_randn(&rng, 2, SH(R, L), 20.0f), *g = t_randn(&rng, 2, SH(R, L), 1.0f);
  for (int lg = 0; lg < 2; lg++) {
    nn_set_requires_grad(x, true);
    nn_zero_grad(x);
    nn_tensor *y = lg ? nn_log_softmax(x, 1) : nn_softmax(x, 1);
    CHECK(y && nn_backward_with(y, g), "%s ran", lg ? "log_softmax" : "softmax");
    double worst = 0, worst_g = 0;
    for (int64_t r = 0; r < R; r++) {
      const float *xr = nn_f32(x) + r * L, *gr = nn_f32(g) + r * L;
      double m = -INFINITY, sum = 0, dot = 0;
      for (int64_t k = 0; k < L; k++) m = fmax(m, xr[k]);
      for (int64_t k = 0; k < L; k++) sum += exp(xr[k] - m);
      for (int64_t k = 0; k < L; k++) {
        double p = exp(xr[k] - m) / sum;
        dot += lg ? gr[k] : gr[k] * p;
      }
      for (int64_t k = 0; k < L; k++) {
        double p = exp(xr[k] - m) / sum, want = lg ? log(p) : p;
        double want_g = lg ? gr[k] - p * dot : p * (gr[k] - dot);
        worst = fmax(worst, fabs(nn_f32(y)[r * L + k] - want));
        worst_g = fmax(worst_g, fabs(nn_f32(x->grad)[r * L + k] - want_g));
      }
    }
    CHECK(worst < 2e-5 && worst_g < 2e-5, "%s: values off by %g, gradients by %g", lg ? "log_softmax" : "softmax",
          worst, worst_g);
    nn_arena_reset(nn_arena_current());
  }
  nn_tensor_free(x), nn_tensor_free(g);
}

TEST(ref_softmax_and_norms) {
  float xv[] = {1, 2, 3, 0, 0, 0};
  nn_tensor *x = nn_tensor_from_data(NN_F32, 2, SH(2, 3), xv);
  nn_tensor *s = nn_softmax(x, 1);
  double e = exp(1) + exp(2) + exp(3);
  CHECK_CLOSE(nn_f32(s)[0], exp(1) / e, 1e-6);
  CHECK_CLOSE(nn_f32(s)[4], 1.0 / 3, 1e-6);
  nn_tensor *ls = nn_log_softmax(x, 1);
  CHECK_CLOSE(nn_f32(ls)[2], 3 - log(e), 1e-5);
  nn_tensor *ln = nn_layer_norm(x, NULL, NULL, 0.0f);
  CHECK_CLOSE(nn_f32(ln)[0], -sqrt(1.5), 1e-5);
  /* batch norm in training mode normalises each channel and updates running stats */
  float bv[] = {1, 3, 10, 20, 5, 7, 30, 40};
  nn_tensor *bx = nn_tensor_from_data(NN_F32, 3, SH(2, 2, 2), bv);
  nn_tensor *rm = nn_tensor_new(NN_F32, 1, SH(2)), *rv = nn_tensor_new(NN_F32, 1, SH(2));
  nn_fill_(rv, 1.0f);
  nn_tensor *by = nn_batch_norm(bx, NULL, NULL, rm, rv, true, 0.5f, 0.0f);
  /* channel 0 values 1,3,5,7: mean 4, biased var 5 */
  CHECK_CLOSE(nn_f32(by)[0], (1 - 4) / sqrt(5), 1e-5);
  CHECK_CLOSE(nn_f32(rm)[0], 2.0, 1e-6);
  CHECK_CLOSE(nn_f32(rv)[0], 0.5 + 0.5 * 20.0 / 3.0, 1e-5);
  nn_tensor_free(x);
  nn_tensor_free(bx);
  nn_tensor_free(rm);
  nn_tensor_free(rv);
}

/* ------------------------------------------------------- PyTorch fixtures */

static const char *fixture_path(char *buf, size_t n) {
  const char *root = getenv("E2E_SOURCE_ROOT");
  snprintf(buf, n, "%s/tests/fixtures/torch_reference.safetensors", root ? root : ".");
  return buf;
}

TEST(ref_matches_pytorch_fixtures) {
  char path[1024];
  nn_st_file *f = nn_st_open(fixture_path(path, sizeof path));
  CHECK(f != NULL, "fixture file %s (regenerate with tools/gen_torch_fixtures.py)", path);
  if (!f) return;
  int compared = 0;
  for (int i = 0; i < nn_st_count(f); i++) {
    const char *name = nn_st_name(f, i);
    size_t len = strlen(name);
    if (len < 4 || strcmp(name + len - 4, ".out") != 0) continue;
    char op[128];
    snprintf(op, sizeof op, "%.*s", (int)(len - 4), name);
    char k[160];
    snprintf(k, sizeof k, "%s.x", op);
    nn_tensor *x = nn_st_get(f, k);
    nn_tensor *want = nn_st_get(f, name);
    nn_tensor *got = NULL;
    nn_tensor *extra[4] = {0};
    if (strcmp(op, "gelu") == 0) got = nn_gelu(x);
    else if (strcmp(op, "bilinear_up") == 0) got = nn_upsample_bilinear(x, want->shape[2], want->shape[3]);
    else if (strcmp(op, "bilinear_down") == 0) got = nn_upsample_bilinear(x, want->shape[2], want->shape[3]);
    else if (strcmp(op, "nearest") == 0) got = nn_upsample_nearest(x, want->shape[2], want->shape[3]);
    else if (strcmp(op, "log_softmax") == 0) got = nn_log_softmax(x, 1);
    else if (strcmp(op, "ce_smooth") == 0) {
      extra[0] = nn_st_get(f, "ce_smooth.target");
      got = nn_cross_entropy(x, extra[0], 1, 0.2f);
    } else if (strcmp(op, "ctc") == 0) {
      extra[0] = nn_st_get(f, "ctc.target");
      extra[1] = nn_st_get(f, "ctc.lengths");
      int64_t il[8], tl[8];
      for (int64_t n = 0; n < x->shape[1]; n++) {
        il[n] = ((int64_t *)nn_data(extra[1]))[2 * n];
        tl[n] = ((int64_t *)nn_data(extra[1]))[2 * n + 1];
      }
      got = nn_ctc_loss(x, extra[0], il, tl, 0, true, false);
    } else if (strcmp(op, "conv_transpose") == 0) {
      extra[0] = nn_st_get(f, "conv_transpose.w");
      nn_conv_params p = nn_conv_defaults();
      p.stride_h = p.stride_w = 2;
      p.pad_h = p.pad_w = 2;
      p.output_pad_h = p.output_pad_w = 1;
      got = nn_conv_transpose2d(x, extra[0], NULL, p);
    } else if (strcmp(op, "gdn") == 0) {
      extra[0] = nn_st_get(f, "gdn.beta");
      extra[1] = nn_st_get(f, "gdn.gamma");
      got = nn_gdn(x, extra[0], extra[1], false);
    } else if (strcmp(op, "smooth_l1") == 0) {
      extra[0] = nn_st_get(f, "smooth_l1.target");
      got = nn_smooth_l1_loss(x, extra[0], 0.7f);
    } else if (strcmp(op, "bce") == 0) {
      extra[0] = nn_st_get(f, "bce.target");
      got = nn_bce_with_logits(x, extra[0]);
    }
    CHECK(got != NULL, "op %s ran", op);
    if (got) {
      CHECK(nn_numel(got) == nn_numel(want), "%s size", op);
      if (nn_numel(got) == nn_numel(want)) {
        double d = max_diff_t(got, nn_f32(want));
        CHECK(d < 2e-5, "%s differs from PyTorch by %g", op, d);
        compared++;
      }
    }
    nn_tensor_free(x);
    nn_tensor_free(want);
    for (int j = 0; j < 4; j++) nn_tensor_free(extra[j]);
  }
  CHECK(compared >= 10, "compared %d ops with PyTorch", compared);
  nn_st_close(f);
}

/* Fused GDN (inference and training) against the formula from primitive ops, on
 * shapes with a partial last tile and two images; 1 and 2 threads identical. */
TEST(ref_gdn_fused_matches_the_formula) {
  nn_rng rng;
  nn_rng_seed(&rng, 77);
  int shapes[][4] = {{2, 5, 17, 33}, {1, 3, 1, 1}, {1, 8, 16, 32}};
  for (int si = 0; si < 3; si++)
    for (int inverse = 0; inverse < 2; inverse++) {
      int64_t N = shapes[si][0], C = shapes[si][1], H = shapes[si][2], W = shapes[si][3];
      nn_tensor *x = nn_tensor_new(NN_F32, 4, (int64_t[]){N, C, H, W});
      nn_tensor *beta = nn_tensor_new(NN_F32, 1, (int64_t[]){C}), *gamma = nn_tensor_new(NN_F32, 2, (int64_t[]){C, C});
      for (int64_t i = 0; i < nn_numel(x); i++) nn_f32(x)[i] = 2.0f * nn_rng_normal(&rng);
      for (int64_t i = 0; i < C; i++) nn_f32(beta)[i] = 0.5f + nn_rng_uniform(&rng);
      for (int64_t i = 0; i < C * C; i++) nn_f32(gamma)[i] = 0.3f * nn_rng_uniform(&rng);
      /* the formula from primitive ops: norm = beta + gamma * x^2, a 1x1 convolution of x^2 */
      nn_tensor *r = nn_sqrt(nn_conv2d(nn_mul(x, x), nn_reshape(gamma, 4, (int64_t[]){C, C, 1, 1}), beta,
                                       nn_conv_defaults()));
      nn_tensor *want = nn_contiguous(inverse ? nn_mul(x, r) : nn_div(x, r));
      /* the training op (x needs a gradient) computes the same tiles */
      nn_set_requires_grad(x, true);
      nn_tensor *train = nn_contiguous(nn_gdn(x, beta, gamma, inverse));
      nn_set_requires_grad(x, false);

      nn_tensor *got[2];
      for (int t = 0; t < 2; t++) {
        nn_set_num_threads(t + 1);
        nn_no_grad_begin();
        got[t] = nn_gdn(x, beta, gamma, inverse);
        nn_no_grad_end();
      }
      nn_set_num_threads(0);
      CHECK(want && got[0] && got[1], "ran");
      double d = max_diff_t(got[0], nn_f32(want)), scale = 0;
      for (int64_t i = 0; i < nn_numel(want); i++) scale = fmax(scale, fabs(nn_f32(want)[i]));
      CHECK(d <= 1e-5 * (1 + scale), "shape %d inverse %d: fused differs from the formula by %g", si, inverse, d);
      CHECK(train && max_diff_t(train, nn_f32(want)) <= 1e-5 * (1 + scale),
            "shape %d inverse %d: the training op differs from the formula", si, inverse);
      CHECK(!memcmp(nn_f32(got[0]), nn_f32(got[1]), sizeof(float) * (size_t)nn_numel(want)),
            "shape %d inverse %d: 1 and 2 threads differ", si, inverse);
      /* in place: the same numbers, over x's own storage */
      nn_tensor *x2 = nn_contiguous(nn_mul_scalar(x, 1.0f));
      nn_no_grad_begin();
      nn_tensor *over = nn_gdn_(x2, beta, gamma, inverse);
      nn_no_grad_end();
      CHECK(over == x2 && !memcmp(nn_f32(x2), nn_f32(got[0]), sizeof(float) * (size_t)nn_numel(want)),
            "shape %d inverse %d: in place differs from the fused op", si, inverse);
      nn_set_requires_grad(x, true);
      CHECK(!nn_gdn_(x, beta, gamma, inverse) && strstr(nn_last_error(), "no gradient"),
            "in place refused where x needs a gradient");
      nn_set_requires_grad(x, false);
      nn_arena_reset(nn_arena_current());
      nn_tensor_free(x), nn_tensor_free(beta), nn_tensor_free(gamma);
    }
}
