/* Test runner and the finite-difference gradient checker. */
#include "harness.h"

test_case g_tests[MAX_TESTS];
int g_ntests;
int g_case_failures;

nn_tensor *t_randn(nn_rng *r, int ndim, const int64_t *shape, float scale) {
  nn_tensor *t = nn_tensor_new(NN_F32, ndim, shape);
  nn_fill_normal_(t, r, 0.0f, scale);
  return t;
}

nn_tensor *t_rand_away(nn_rng *r, int ndim, const int64_t *shape, float gap) {
  nn_tensor *t = t_randn(r, ndim, shape, 1.0f);
  int64_t n = nn_numel(t);
  for (int64_t i = 0; i < n; i++) {
    float v = nn_f32(t)[i];
    if (fabsf(v) < gap) nn_f32(t)[i] = v < 0 ? v - gap : v + gap;
  }
  return t;
}

/* loss = sum(out * w) in double precision, without recording anything. */
static double eval_loss(gc_fn f, nn_tensor **in, void *ctx, const float *w, int64_t nw) {
  nn_no_grad_begin();
  nn_tensor *out = f(in, ctx);
  nn_no_grad_end();
  if (!out || nn_numel(out) != nw) return NAN;
  float *o = malloc((size_t)(nw ? nw : 1) * 4);
  nn_to_float_array(out, o);
  double s = 0;
  for (int64_t i = 0; i < nw; i++) s += (double)o[i] * w[i];
  free(o);
  nn_arena_reset(nn_arena_current());
  return s;
}

bool gradcheck_ex(const char *what, gc_fn f, nn_tensor **in, int n_in, void *ctx, float eps, double atol,
                  double rtol, int max_elems) {
  nn_arena *a = nn_arena_current();
  nn_arena_reset(a);
  for (int i = 0; i < n_in; i++) nn_tensor_free_grad(in[i]);
  nn_tensor *out = f(in, ctx);
  if (!out) {
    printf("    FAIL gradcheck %s: forward failed: %s\n", what, nn_last_error());
    g_case_failures++;
    return false;
  }
  int64_t nw = nn_numel(out);
  float *w = malloc((size_t)(nw ? nw : 1) * 4);
  nn_rng wr;
  nn_rng_seed(&wr, 1234);
  for (int64_t i = 0; i < nw; i++) w[i] = nn_rng_normal(&wr);
  nn_tensor *wt = nn_empty(NN_F32, out->ndim, out->shape);
  memcpy(nn_f32(wt), w, (size_t)nw * 4);
  nn_tensor *loss = nn_sum_all(nn_mul(out, wt));
  bool ok = loss && nn_backward(loss);
  if (!ok) {
    printf("    FAIL gradcheck %s: backward failed: %s\n", what, nn_last_error());
    g_case_failures++;
    free(w);
    return false;
  }
  nn_arena_reset(a);
  int checked = 0;
  double worst = 0;
  for (int k = 0; k < n_in && ok; k++) {
    nn_tensor *x = in[k];
    if (!x || !x->requires_grad) continue;
    int64_t n = nn_numel(x);
    if (!x->grad) {
      printf("    FAIL gradcheck %s: input %d received no gradient\n", what, k);
      ok = false;
      break;
    }
    nn_rng pick;
    nn_rng_seed(&pick, 99 + (uint64_t)k);
    int64_t count = n < max_elems ? n : max_elems;
    for (int64_t s = 0; s < count; s++) {
      int64_t i = n <= max_elems ? s : (int64_t)(nn_rng_u64(&pick) % (uint64_t)n);
      float *px = nn_f32(x) + i;
      float orig = *px;
      *px = orig + eps;
      double lp = eval_loss(f, in, ctx, w, nw);
      *px = orig - eps;
      double lm = eval_loss(f, in, ctx, w, nw);
      *px = orig;
      double num = (lp - lm) / (2.0 * (double)eps);
      double ana = nn_f32(x->grad)[i];
      double err = fabs(num - ana);
      double tol = atol + rtol * fabs(num);
      if (err / tol > worst) worst = err / tol;
      if (!(err <= tol)) {
        printf("    FAIL gradcheck %s: input %d elem %lld: autograd %.6g vs numeric %.6g\n", what, k,
               (long long)i, ana, num);
        ok = false;
        break;
      }
      checked++;
    }
  }
  free(w);
  for (int i = 0; i < n_in; i++) nn_tensor_free_grad(in[i]);
  if (!ok) g_case_failures++;
  else if (getenv("GRADCHECK_VERBOSE")) printf("    gradcheck %s: %d entries, worst err/tol %.3f\n", what, checked, worst);
  return ok;
}

bool gradcheck(const char *what, gc_fn f, nn_tensor **in, int n_in, void *ctx) {
  return gradcheck_ex(what, f, in, n_in, ctx, 1e-3f, 1e-3, 1e-2, 48);
}

int main(int argc, char **argv) {
  const char *only = argc > 1 ? argv[1] : NULL;
  int passed = 0, failed = 0;
  for (int i = 0; i < g_ntests; i++) {
    if (only && !strstr(g_tests[i].name, only)) continue;
    g_case_failures = 0;
    nn_clear_error();
    g_tests[i].fn();
    nn_arena_reset(nn_arena_current());
    if (g_case_failures) {
      printf("FAIL %s\n", g_tests[i].name);
      failed++;
    } else {
      printf("ok   %s\n", g_tests[i].name);
      passed++;
    }
    fflush(stdout);
  }
  printf("%d passed, %d failed\n", passed, failed);
  return failed ? 1 : 0;
}
