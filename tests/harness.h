/* A tiny test harness: TEST() cases register themselves, CHECK() records a
 * failure without stopping the case, and main() prints "N passed, M failed". */
#ifndef E2E_TEST_HARNESS_H
#define E2E_TEST_HARNESS_H

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nncore/nncore.h"

typedef void (*test_fn)(void);
typedef struct { const char *name; test_fn fn; } test_case;

#define MAX_TESTS 512
extern test_case g_tests[MAX_TESTS];
extern int g_ntests;
extern int g_case_failures;

#define TEST(name)                                                             \
  static void name(void);                                                      \
  __attribute__((constructor)) static void register_##name(void) {            \
    if (g_ntests < MAX_TESTS) g_tests[g_ntests++] = (test_case){#name, name};  \
  }                                                                            \
  static void name(void)

#define CHECK(cond, ...)                                                       \
  do {                                                                         \
    if (!(cond)) {                                                             \
      g_case_failures++;                                                       \
      printf("    FAIL %s:%d: %s: ", __FILE__, __LINE__, #cond);               \
      printf(__VA_ARGS__);                                                     \
      printf(" [nncore: %s]\n", nn_last_error());                              \
    }                                                                          \
  } while (0)

#define CHECK_CLOSE(a, b, tol)                                                 \
  CHECK(fabs((double)(a) - (double)(b)) <= (tol), "%s = %.7g, %s = %.7g (tol %g)", #a, (double)(a), #b, \
        (double)(b), (double)(tol))

/* Largest |a - b| over two float arrays. */
static inline double max_abs_diff(const float *a, const float *b, int64_t n) {
  double m = 0;
  for (int64_t i = 0; i < n; i++) {
    double d = fabs((double)a[i] - (double)b[i]);
    if (d > m || d != d) m = d != d ? INFINITY : d;
  }
  return m;
}

/* Persistent f32 tensor with N(0, 1) (times scale) values. */
nn_tensor *t_randn(nn_rng *r, int ndim, const int64_t *shape, float scale);
/* Persistent f32 tensor with values whose magnitude is at least `gap` (away from kinks). */
nn_tensor *t_rand_away(nn_rng *r, int ndim, const int64_t *shape, float gap);

/* Gradient check: f maps the inputs to an output; loss = sum(out * w) with
 * fixed random w. Compares autograd with central differences on up to
 * max_elems sampled entries of every input that requires a gradient. */
typedef nn_tensor *(*gc_fn)(nn_tensor **in, void *ctx);
bool gradcheck(const char *what, gc_fn f, nn_tensor **in, int n_in, void *ctx);
/* The same with explicit step and tolerances. */
bool gradcheck_ex(const char *what, gc_fn f, nn_tensor **in, int n_in, void *ctx, float eps, double atol,
                  double rtol, int max_elems);

#endif
