/* nncore side of the benchmarks: the same shapes as bench/bench_torch.py.
 * Prints one JSON object per case: {"case", "threads", "ms" (median), "gflop"}.
 *   bench_nncore [--threads N] [--case NAME] [--peak]
 * --peak measures this CPU's FMA throughput (AVX2 and AVX-512) per core. */
#include <immintrin.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "nncore/nncore.h"
#include "e2e/codec.h"
#include "e2e/detect.h"
#include "asr/train.h"
#include "tts/synth.h"

#define SH(...) (int64_t[]){__VA_ARGS__}

static double now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec * 1e-6;
}

static int cmp_d(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

/* Median of repeated runs: 3 warm-ups, then at least 5 runs and about a second. */
/* The fastest run of the last time_case: on a shared VM noise only ever adds time, so the minimum is
 * the steadiest estimate of the cost; the median is reported beside it. */
static double g_min_ms;

/* BENCH_MS=N times each case for N ms instead of about one second: long runs to profile under perf. */
static double time_case(void (*fn)(void *), void *ctx) {
  for (int i = 0; i < 3; i++) fn(ctx);
  static double t[20000];
  int n = 0;
  const char *e = getenv("BENCH_MS");
  double budget = e ? atof(e) : 1000, start = now_ms();
  int most = e ? 20000 : 200;
  while (n < most && (n < 5 || now_ms() - start < budget)) {
    double t0 = now_ms();
    fn(ctx);
    t[n++] = now_ms() - t0;
  }
  qsort(t, (size_t)n, sizeof t[0], cmp_d);
  g_min_ms = t[0];
  return t[n / 2];
}

/* ---------------------------------------------------------------- cases */

typedef struct { nn_tensor *a, *b; } mm_ctx;
static void run_sgemm(void *p) {
  mm_ctx *c = p;
  nn_matmul(c->a, c->b);
  nn_arena_reset(nn_arena_current());
}

typedef struct { nn_tensor *x, *w, *b; bool backward; } conv_ctx;
static void run_conv(void *p) {
  conv_ctx *c = p;
  nn_conv_params cp = nn_conv_defaults();
  cp.pad_h = cp.pad_w = 1;
  nn_tensor *y = nn_conv2d(c->x, c->w, c->b, cp);
  if (c->backward) {
    /* zero, not free: a training loop reuses its gradient buffers */
    nn_zero_grad(c->x);
    nn_zero_grad(c->w);
    nn_zero_grad(c->b);
    nn_backward(nn_sum_all(y));
  }
  nn_arena_reset(nn_arena_current());
}

/* The small CNN of the training-step case; bench_torch.py builds the same one (batch norm and ReLU as
 * separate modules there: eager PyTorch has no fused training op for the pair). */
typedef struct {
  nn_params p;
  nn_conv2d_layer c1, c2, c3;
  nn_batchnorm b1, b2, b3;
  nn_linear fc;
  nn_optim *opt;
  nn_tensor *x, *y;
} cnn_ctx;

static void cnn_init(cnn_ctx *m) {
  nn_rng r;
  nn_rng_seed(&r, 1);
  nn_params_init(&m->p);
  nn_conv2d_init(&m->c1, &m->p, "c1", 3, 32, 3, 1, 1, 1, false, &r);
  nn_batchnorm_init(&m->b1, &m->p, "b1", 32);
  nn_conv2d_init(&m->c2, &m->p, "c2", 32, 64, 3, 1, 1, 1, false, &r);
  nn_batchnorm_init(&m->b2, &m->p, "b2", 64);
  nn_conv2d_init(&m->c3, &m->p, "c3", 64, 128, 3, 1, 1, 1, false, &r);
  nn_batchnorm_init(&m->b3, &m->p, "b3", 128);
  nn_linear_init(&m->fc, &m->p, "fc", 128, 10, true, &r);
  nn_optim_config oc = nn_optim_defaults(NN_SGD, 0.01f);
  oc.momentum = 0.9f;
  m->opt = nn_optim_new(&m->p, oc);
  m->x = nn_tensor_new(NN_F32, 4, SH(32, 3, 64, 64));
  nn_fill_normal_(m->x, &r, 0, 1);
  m->y = nn_tensor_new(NN_I64, 1, SH(32));
  for (int i = 0; i < 32; i++) ((int64_t *)nn_data(m->y))[i] = i % 10;
}

static void run_cnn_step(void *p) {
  cnn_ctx *m = p;
  nn_optim_zero_grad(m->opt);
  nn_tensor *h = nn_max_pool2d(nn_batchnorm_relu_forward(&m->b1, nn_conv2d_forward(&m->c1, m->x), true), 2, 2, 0);
  h = nn_max_pool2d(nn_batchnorm_relu_forward(&m->b2, nn_conv2d_forward(&m->c2, h), true), 2, 2, 0);
  h = nn_batchnorm_relu_forward(&m->b3, nn_conv2d_forward(&m->c3, h), true);
  h = nn_mean(nn_reshape(h, 3, SH(32, 128, -1)), 2, false);
  nn_backward(nn_cross_entropy(nn_linear_forward(&m->fc, h), m->y, -100, 0.0f));
  nn_optim_step(m->opt);
  nn_arena_reset(nn_arena_current());
}

typedef struct { nn_params p; nn_rnn lstm; nn_tensor *x; } lstm_ctx;
static void run_lstm(void *p) {
  lstm_ctx *c = p;
  nn_params_zero_grad(&c->p);
  nn_backward(nn_sum_all(nn_rnn_forward(&c->lstm, c->x, NULL)));
  nn_arena_reset(nn_arena_current());
}

typedef struct { nn_params p; nn_mha m; nn_tensor *x; } mha_ctx;
static void run_mha(void *p) {
  mha_ctx *c = p;
  nn_params_zero_grad(&c->p);
  nn_backward(nn_sum_all(nn_mha_forward(&c->m, c->x, c->x, c->x, NULL)));
  nn_arena_reset(nn_arena_current());
}

/* The models run as the elements run them: through an inference session (e2e/model.h). */
static e2e_session *session_on(e2e_model *m, int threads) {
  e2e_slot *slot = e2e_slot_new(m);
  e2e_session *s = e2e_session_new(slot, threads);
  e2e_slot_unref(slot);
  e2e_model_unref(m);
  return s;
}

/* A frame already at the network's size, as e2edetect hands it over: filling the input, the network and
 * decoding the boxes (the PyTorch twin runs the network alone). */
typedef struct { e2e_session *s; uint8_t *rgb; det_letterbox lb; det_box boxes[E2E_DETECT_DEFAULT_MAX]; } det_ctx;
static void run_detect(void *p) {
  det_ctx *c = p;
  e2e_detect_scaled(c->s, NULL, c->rgb, c->lb.scaled_w * 3, &c->lb, c->boxes, E2E_DETECT_DEFAULT_MAX);
}

/* The codec at its shipped size (codec_config_default: N 64, M 192), random weights: speed does not depend on them. */
typedef struct { e2e_session *s; uint8_t *rgb, *stream, *out; size_t len; int w, h; } codec_ctx;
static void run_codec_encode(void *p) {
  codec_ctx *c = p;
  free(c->stream);
  e2e_codec_encode(c->s, NULL, CODEC_DEFAULT_QUALITY, c->rgb, c->w, c->h, c->w * 3, &c->stream, &c->len, NULL);
}
static void run_codec_decode(void *p) {
  codec_ctx *c = p;
  e2e_codec_decode(c->s, NULL, c->stream, c->len, c->out, c->w, c->h);
}
/* MACs of encode (g_a + h_a + h_s + contexts) or decode (h_s + contexts + g_s) on a padded H x W image; the
 * context's 5x5 window counts its 12 taps on the anchors' colour (the others are zero), then its three 1x1
 * layers (the own scale index in, mean and scale corrections out); the anchors' context, on the quarter of
 * the positions that are anchors of odd rows, its 4 diagonal taps and its three 1x1 layers */
static double codec_macs(double H, double W, double n, double m, bool mean_scale, double ctx, double actx, bool enc) {
  double P2 = H / 2 * W / 2, P4 = P2 / 4, P8 = P4 / 4, P16 = P8 / 4, P32 = P16 / 4, P64 = P32 / 4;
  double hs = P64 * n * n * 25 + P32 * n * n * 25 + P16 * m * n * 9 * (mean_scale ? 2 : 1) /* scale (+ mean) head */
              + P16 * ctx * m * (12 + 1 + 2) + P16 / 4 * actx * m * (4 + 1 + 2);
  if (enc) return P2 * n * 75 + P4 * n * n * 25 + P8 * n * n * 25 + P16 * m * n * 25 + (P2 + P4 + P8) * n * n +
                  P16 * n * m * 9 + P32 * n * n * 25 + P64 * n * n * 25 + hs;
  return hs + P16 * m * n * 25 + P8 * n * n * 25 + P4 * n * n * 25 + P4 * n * 3 * 25 * 4 + (P8 + P4 + P2) * n * n;
}

/* The recipes' training steps. The detector's as `e2e train detect` runs it (models/detect/train.sh):
 * batch 16 at 320, AdamW, clip 10, through the task-model trainer; random images with three boxes each
 * (the speed does not depend on the pixels). */
typedef struct { e2e_trainer *t; nn_tensor *x; det_box boxes[16][3]; const det_box *bptr[16]; int counts[16]; } det_train_ctx;
static void run_detect_train(void *p) {
  det_train_ctx *c = p;
  e2e_metric loss;
  if (!e2e_trainer_step(c->t, &(e2e_batch){.n = 16, .images = c->x, .boxes = c->bptr, .counts = c->counts}, &loss))
    fprintf(stderr, "detect_train_step: %s\n", nn_last_error());
}

/* The codec's as `e2e train codec` runs it (models/codec/train.sh's last stages): batch 4 of 256x256 at
 * levels 1..4, the shipped architecture, Adam, clip 5. */
typedef struct { codec_model m; nn_optim *opt; nn_tensor *x; nn_rng rng; } codec_train_ctx;
static void run_codec_train(void *p) {
  codec_train_ctx *c = p;
  static const int qs[4] = {1, 2, 3, 4};
  codec_stats st;
  nn_optim_zero_grad(c->opt);
  nn_tensor *loss = codec_train_forward(&c->m, c->x, qs, &c->rng, &st);
  if (!loss || !nn_backward(loss)) fprintf(stderr, "codec_train_step: %s\n", nn_last_error());
  nn_clip_grad_norm(&c->m.p, 5.0f);
  nn_optim_step(c->opt);
  nn_arena_reset(nn_arena_current());
}

/* The speech recogniser (models/asr/train.sh's model): a training step on 16 utterances of 6 s (Adam,
 * clip 5, CTC), and recognising one 6 s utterance (greedy). */
typedef struct { asr_model m; nn_optim *opt; asr_batch b; } asr_train_ctx;
static void run_asr_train(void *p) {
  asr_train_ctx *c = p;
  nn_optim_zero_grad(c->opt);
  nn_tensor *loss = asr_batch_loss(&c->m, &c->b, NULL);
  if (!loss || !nn_backward(loss)) fprintf(stderr, "asr_train_step: %s\n", nn_last_error());
  nn_clip_grad_norm(&c->m.p, 5.0f);
  nn_optim_step(c->opt);
  nn_arena_reset(nn_arena_current());
}
typedef struct { e2e_session *s; float *feats; int64_t T; } asr_infer_ctx;
static void run_asr_infer(void *p) {
  asr_infer_ctx *c = p;
  e2e_asr_decode_opts d = e2e_asr_decode_defaults();
  e2e_asr_result r;
  if (!e2e_asr_recognize(c->s, c->feats, c->T, &d, &r)) fprintf(stderr, "asr_recognize_6s: %s\n", nn_last_error());
  e2e_asr_result_clear(&r);
}
/* MACs of the recogniser on T frames: two convs, the projection, three bidirectional GRU layers, the output */
static double asr_macs(double T) {
  double t2 = T / 2, t4 = T / 4;
  return t2 * 40 * 64 * 9 + t4 * 20 * 64 * 64 * 9 + t4 * 1280 * 256 + 2 * t4 * 3 * 256 * (256 + 256) +
         2 * 2 * t4 * 3 * 256 * (512 + 256) + t4 * 512 * 29;
}

/* One synthesis step of the shipped synthesiser's architecture (e2etts: 4 mel frames from the previous
 * step through the prenet, 6 + 6 causal highway layers, attention over a 100-character text). */
typedef struct { tts_synth *s; float frames[1024]; } tts_step_ctx;
static void run_tts_step(void *p) {
  tts_step_ctx *c = p;
  float stop;
  if (tts_synth_step(c->s, c->frames, &stop) < 0) fprintf(stderr, "tts_decoder_step: past max steps\n");
}
static double tts_step_macs(const tts_config *c, int window) {
  double D = c->dim, rm = (double)c->reduction * c->n_mels;
  return rm * D + D * D + (c->audio_layers + c->dec_layers) * 3 * D * 2 * D + 2 * D * D + 2 * D * D + D * (rm + 1) +
         2.0 * window * D;
}

/* --------------------------------------------------------------- peak */

/* 12 independent FMA chains per core keep both FMA pipes busy. */
__attribute__((target("avx2,fma"))) static double fma_avx2(long iters) {
  __m256 a[12], b = _mm256_set1_ps(0.999f), c = _mm256_set1_ps(1e-3f);
  for (int i = 0; i < 12; i++) a[i] = _mm256_set1_ps((float)i);
  for (long it = 0; it < iters; it++)
    for (int i = 0; i < 12; i++) a[i] = _mm256_fmadd_ps(a[i], b, c);
  float s = 0;
  for (int i = 0; i < 12; i++) s += _mm256_cvtss_f32(a[i]);
  return s;
}
__attribute__((target("avx512f"))) static double fma_avx512(long iters) {
  __m512 a[12], b = _mm512_set1_ps(0.999f), c = _mm512_set1_ps(1e-3f);
  for (int i = 0; i < 12; i++) a[i] = _mm512_set1_ps((float)i);
  for (long it = 0; it < iters; it++)
    for (int i = 0; i < 12; i++) a[i] = _mm512_fmadd_ps(a[i], b, c);
  float s = 0;
  for (int i = 0; i < 12; i++) s += _mm512_reduce_add_ps(a[i]);
  return s;
}

static void peak(void) {
  long iters = 20000000;
  double t0 = now_ms();
  volatile double s = fma_avx2(iters);
  double t1 = now_ms();
  double f2 = 12.0 * 8 * 2 * iters / ((t1 - t0) * 1e6);
  __builtin_cpu_init();
  if (!__builtin_cpu_supports("avx512f")) { /* the machine may not have it: report AVX2 alone */
    printf("{\"case\": \"peak_per_core\", \"avx2_gflops\": %.1f, \"avx512_gflops\": null}\n", f2);
    return;
  }
  s += fma_avx512(iters);
  double t2 = now_ms();
  (void)s;
  double f5 = 12.0 * 16 * 2 * iters / ((t2 - t1) * 1e6);
  printf("{\"case\": \"peak_per_core\", \"avx2_gflops\": %.1f, \"avx512_gflops\": %.1f}\n", f2, f5);
}

int main(int argc, char **argv) {
  int threads = 1;
  const char *only = NULL;
  for (int i = 1; i < argc; i++) {
    if (!strcmp(argv[i], "--threads") && i + 1 < argc) threads = atoi(argv[++i]);
    else if (!strcmp(argv[i], "--case") && i + 1 < argc) only = argv[++i];
    else if (!strcmp(argv[i], "--peak")) {
      peak();
      return 0;
    } else {
      fprintf(stderr, "usage: bench_nncore [--threads N] [--case NAME] [--peak]\n");
      return 2;
    }
  }
  nn_set_num_threads(threads);
  nn_rng r;
  nn_rng_seed(&r, 3);
#define WANT(name) (!only || !strcmp(only, name))
#define REPORT(name, ms, gflop)                                                                               \
  do { /* time first: g_min_ms is set by the timing */                                                     \
    double ms_ = (ms);                                                                                      \
    printf("{\"case\": \"%s\", \"threads\": %d, \"ms\": %.3f, \"min_ms\": %.3f, \"gflop\": %.4f}\n", name, threads, ms_, \
           g_min_ms, gflop);                                                                                \
    fflush(stdout);                                                                                         \
  } while (0)
  if (WANT("sgemm_1024")) {
    mm_ctx c = {nn_tensor_new(NN_F32, 2, SH(1024, 1024)), nn_tensor_new(NN_F32, 2, SH(1024, 1024))};
    nn_fill_normal_(c.a, &r, 0, 1);
    nn_fill_normal_(c.b, &r, 0, 1);
    REPORT("sgemm_1024", time_case(run_sgemm, &c), 2.0 * 1024 * 1024 * 1024 / 1e9);
    nn_tensor_free(c.a);
    nn_tensor_free(c.b);
  }
  double conv_gf = 2.0 * 64 * 56 * 56 * 64 * 9 / 1e9;
  for (int bw = 0; bw < 2; bw++) {
    const char *name = bw ? "conv3x3_64_fwd_bwd" : "conv3x3_64_fwd";
    if (!WANT(name)) continue;
    conv_ctx c = {nn_tensor_new(NN_F32, 4, SH(1, 64, 56, 56)), nn_tensor_new(NN_F32, 4, SH(64, 64, 3, 3)),
                  nn_tensor_new(NN_F32, 1, SH(64)), bw};
    nn_fill_normal_(c.x, &r, 0, 1);
    nn_fill_normal_(c.w, &r, 0, 0.05f);
    if (bw) {
      nn_set_requires_grad(c.x, true);
      nn_set_requires_grad(c.w, true);
      nn_set_requires_grad(c.b, true);
    }
    REPORT(name, time_case(run_conv, &c), conv_gf * (bw ? 3 : 1));
    nn_tensor_free(c.x);
    nn_tensor_free(c.w);
    nn_tensor_free(c.b);
  }
  if (WANT("cnn_train_step")) {
    cnn_ctx m;
    cnn_init(&m);
    /* conv MACs: 64x64x(3*32*9) + 32x32x(32*64*9) + 16x16x(64*128*9), x2 flops, x3 fwd+bwd, x32 batch */
    double macs = 64.0 * 64 * 3 * 32 * 9 + 32.0 * 32 * 32 * 64 * 9 + 16.0 * 16 * 64 * 128 * 9;
    REPORT("cnn_train_step", time_case(run_cnn_step, &m), macs * 2 * 3 * 32 / 1e9);
    nn_optim_free(m.opt);
    nn_params_free(&m.p);
    nn_tensor_free(m.x);
    nn_tensor_free(m.y);
  }
  if (WANT("lstm_256_fwd_bwd")) {
    lstm_ctx c;
    nn_params_init(&c.p);
    nn_rnn_init(&c.lstm, &c.p, "lstm", false, 256, 256, 1, false, &r);
    c.x = nn_tensor_new(NN_F32, 3, SH(100, 8, 256));
    nn_fill_normal_(c.x, &r, 0, 1);
    REPORT("lstm_256_fwd_bwd", time_case(run_lstm, &c), 3.0 * 2 * 8 * 1024 * 512 * 100 / 1e9);
    nn_params_free(&c.p);
    nn_tensor_free(c.x);
  }
  /* the speech models' shapes: an ASR encoder's recurrent layer (hidden 512, batch 32, 200 steps, as
   * LSTM and as GRU) and self-attention over 200 frames (batch 8, 256 wide, 4 heads) */
  for (int gru = 0; gru < 2; gru++) {
    const char *name = gru ? "gru_512_b32_fwd_bwd" : "lstm_512_b32_fwd_bwd";
    if (!WANT(name)) continue;
    lstm_ctx c;
    nn_params_init(&c.p);
    nn_rnn_init(&c.lstm, &c.p, "rnn", gru, 512, 512, 1, false, &r);
    c.x = nn_tensor_new(NN_F32, 3, SH(200, 32, 512));
    nn_fill_normal_(c.x, &r, 0, 1);
    double gates = gru ? 3 : 4;
    REPORT(name, time_case(run_lstm, &c), 3.0 * 2 * 32 * gates * 512 * 1024 * 200 / 1e9);
    nn_params_free(&c.p);
    nn_tensor_free(c.x);
  }
  if (WANT("mha_256_fwd_bwd")) {
    mha_ctx c;
    nn_params_init(&c.p);
    nn_mha_init(&c.m, &c.p, "mha", 256, 4, &r);
    c.x = nn_tensor_new(NN_F32, 3, SH(8, 200, 256));
    nn_fill_normal_(c.x, &r, 0, 1);
    /* projections 4 x 256^2 per frame, scores and weighted sum 2 x 200 x 256 per frame; x3 fwd + bwd */
    REPORT("mha_256_fwd_bwd", time_case(run_mha, &c), 3.0 * 2 * 8 * 200 * (4.0 * 256 * 256 + 2.0 * 200 * 256) / 1e9);
    nn_params_free(&c.p);
    nn_tensor_free(c.x);
  }
  if (WANT("asr_train_step")) {
    asr_train_ctx c;
    asr_config cfg = asr_config_default();
    e2e_mel_config mel = e2e_mel_default();
    asr_init(&c.m, &cfg, &mel, 1);
    c.opt = nn_optim_new(&c.m.p, nn_optim_defaults(NN_ADAM, 1e-3f));
    int n = 16, T = 600, S = 80;
    c.b = (asr_batch){.n = n, .x = nn_tensor_new(NN_F32, 4, SH(n, 1, 80, T)), .frames = malloc(sizeof(int64_t) * n),
                      .targets = nn_tensor_new(NN_I64, 2, SH(n, S)), .text_len = malloc(sizeof(int64_t) * n)};
    nn_fill_normal_(c.b.x, &r, 0, 1);
    for (int i = 0; i < n; i++) {
      c.b.frames[i] = T, c.b.text_len[i] = S;
      for (int k = 0; k < S; k++) ((int64_t *)nn_data(c.b.targets))[i * S + k] = 1 + (int64_t)(nn_rng_u64(&r) % 28);
    }
    REPORT("asr_train_step", time_case(run_asr_train, &c), asr_macs(T) * 2 * 3 * n / 1e9);
    nn_optim_free(c.opt);
    asr_free(&c.m);
    nn_tensor_free(c.b.x), nn_tensor_free(c.b.targets);
    asr_batch_free(&c.b);
  }
  if (WANT("asr_recognize_6s")) {
    asr_infer_ctx c = {.s = session_on(e2e_asr_model_new(256, 3, 1), threads), .T = 600};
    c.feats = malloc(sizeof(float) * 600 * 80);
    for (int i = 0; i < 600 * 80; i++) c.feats[i] = nn_rng_normal(&r);
    REPORT("asr_recognize_6s", time_case(run_asr_infer, &c), asr_macs(600) * 2 / 1e9);
    free(c.feats);
    e2e_session_free(c.s);
  }
  if (WANT("tts_decoder_step")) {
    tts_model m;
    tts_config cfg = tts_config_default();
    e2e_mel_config mel = tts_mel_default();
    tts_init(&m, &cfg, &mel, 1);
    uint8_t labels[99];
    for (int i = 0; i < 99; i++) labels[i] = (uint8_t)e2e_tts_label("the quick brown fox "[i % 20]);
    nn_set_num_threads(threads);
    tts_step_ctx c = {.s = tts_synth_new(&m, labels, 99, 1 << 24, 0)};
    REPORT("tts_decoder_step", time_case(run_tts_step, &c), tts_step_macs(&cfg, 5) * 2 / 1e9);
    tts_synth_free(c.s);
    tts_free(&m);
  }
  if (WANT("detect_320_fwd")) {
    /* the shipped detector's network (e2edetect's default): inference on one 320x320 frame */
    det_ctx c;
    det_config cfg = det_config_default(1, 320);
    c.s = session_on(e2e_detect_model_new(&cfg, 1), threads);
    c.lb = e2e_detect_placement(320, 320, 320);
    c.rgb = malloc(320 * 320 * 3);
    for (int i = 0; i < 320 * 320 * 3; i++) c.rgb[i] = (uint8_t)(nn_rng_u64(&r) & 0xff);
    /* MACs of the convolutions (see models/detect/detector.c) */
    double macs = 160.0 * 160 * 16 * 27 + 80.0 * 80 * 32 * 144 + 80.0 * 80 * 32 * 288 + 40.0 * 40 * 64 * 288 +
                  40.0 * 40 * 64 * 576 + 20.0 * 20 * 128 * 576 + 20.0 * 20 * 128 * 1152 + 40.0 * 40 * 128 * 64 +
                  40.0 * 40 * 64 * 1152 + 40.0 * 40 * 5 * 64;
    REPORT("detect_320_fwd", time_case(run_detect, &c), macs * 2 / 1e9);
    e2e_session_free(c.s);
    free(c.rgb);
  }
  if (WANT("detect_train_step")) {
    det_train_ctx c;
    det_config cfg = det_config_default(1, 320);
    e2e_model *m = e2e_detect_model_new(&cfg, 1);
    c.t = e2e_trainer_new(m, &(e2e_train_opts){.optimizer = NN_ADAMW, .lr = 1e-3f, .weight_decay = 5e-4f,
                                                .clip_norm = 10.0f, .threads = threads});
    e2e_model_unref(m);
    c.x = nn_tensor_new(NN_F32, 4, SH(16, 3, 320, 320));
    nn_fill_normal_(c.x, &r, 0, 1);
    for (int b = 0; b < 16; b++) {
      for (int k = 0; k < 3; k++) {
        float x0 = (float)(20 + 90 * k + 3 * b), y0 = (float)(30 + 80 * k + 2 * b);
        c.boxes[b][k] = (det_box){x0, y0, x0 + 40 + 10 * k, y0 + 60 + 5 * b, 1, 0};
      }
      c.bptr[b] = c.boxes[b], c.counts[b] = 3;
    }
    /* MACs per image as detect_320_fwd's, x3 for forward and backward */
    double macs = 160.0 * 160 * 16 * 27 + 80.0 * 80 * 32 * 144 + 80.0 * 80 * 32 * 288 + 40.0 * 40 * 64 * 288 +
                  40.0 * 40 * 64 * 576 + 20.0 * 20 * 128 * 576 + 20.0 * 20 * 128 * 1152 + 40.0 * 40 * 128 * 64 +
                  40.0 * 40 * 64 * 1152 + 40.0 * 40 * 5 * 64;
    REPORT("detect_train_step", time_case(run_detect_train, &c), macs * 2 * 3 * 16 / 1e9);
    e2e_trainer_free(c.t);
    nn_tensor_free(c.x);
  }
  if (WANT("codec_train_step")) {
    codec_train_ctx c;
    codec_config cfg = codec_config_default();
    cfg.level_mod = true, cfg.context = 64, cfg.anchor_context = 64; /* the shipped model's architecture */
    codec_init(&c.m, &cfg, 1);
    c.opt = nn_optim_new(&c.m.p, nn_optim_defaults(NN_ADAM, 1e-4f));
    c.x = nn_tensor_new(NN_F32, 4, SH(4, 3, 256, 256));
    for (int64_t i = 0; i < nn_numel(c.x); i++) nn_f32(c.x)[i] = (float)(nn_rng_u64(&r) & 0xff) / 255.0f;
    nn_rng_seed(&c.rng, 5);
    REPORT("codec_train_step", time_case(run_codec_train, &c),
           4 * (codec_macs(256, 256, cfg.n, cfg.m, cfg.mean_scale, cfg.context, cfg.anchor_context, true) +
                codec_macs(256, 256, cfg.n, cfg.m, cfg.mean_scale, cfg.context, cfg.anchor_context, false)) * 2 * 3 / 1e9);
    nn_optim_free(c.opt);
    codec_free(&c.m);
    nn_tensor_free(c.x);
  }
  int sizes[2][2] = {{768, 512}, {1280, 720}};
  for (int si = 0; si < 2; si++) {
    char enc_name[64], dec_name[64];
    snprintf(enc_name, sizeof enc_name, "codec_encode_%dx%d", sizes[si][0], sizes[si][1]);
    snprintf(dec_name, sizeof dec_name, "codec_decode_%dx%d", sizes[si][0], sizes[si][1]);
    if (!WANT(enc_name) && !WANT(dec_name)) continue;
    codec_ctx c = {.w = sizes[si][0], .h = sizes[si][1]};
    codec_config cfg = codec_config_default();
    cfg.level_mod = true, cfg.context = 64, cfg.anchor_context = 64; /* the shipped model's architecture */
    c.s = session_on(e2e_codec_model_new(&cfg, 1), threads);
    c.rgb = malloc((size_t)c.w * c.h * 3);
    c.out = malloc((size_t)c.w * c.h * 3);
    for (size_t i = 0; i < (size_t)c.w * c.h * 3; i++) c.rgb[i] = (uint8_t)(nn_rng_u64(&r) & 0xff);
    run_codec_encode(&c);
    double H = (c.h + 63) / 64 * 64, W = (c.w + 63) / 64 * 64;
    if (WANT(enc_name)) REPORT(enc_name, time_case(run_codec_encode, &c), codec_macs(H, W, cfg.n, cfg.m, cfg.mean_scale, cfg.context, cfg.anchor_context, true) * 2 / 1e9);
    if (WANT(dec_name)) REPORT(dec_name, time_case(run_codec_decode, &c), codec_macs(H, W, cfg.n, cfg.m, cfg.mean_scale, cfg.context, cfg.anchor_context, false) * 2 / 1e9);
    e2e_session_free(c.s);
    free(c.rgb), free(c.out), free(c.stream);
  }
  return 0;
}
