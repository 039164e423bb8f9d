/* A small thread pool for every kernel and GEMM, plus OpenBLAS's count.
 *
 * Work is split statically into contiguous ranges of output elements, so a
 * kernel never sums across ranges and results are identical for any count.
 * A call made while the pool is busy (another element's thread, or a kernel
 * nested inside a kernel) runs serially instead of waiting.
 * The count a call uses is the calling thread's budget when it has one
 * (nn_set_thread_budget, set by sessions through nn_scope), else the
 * process's (nn_set_num_threads); the pool grows to the largest asked for. */
#include "internal.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <unistd.h>

#include <cblas.h>

#define MAX_THREADS 64
/* Busy-wait this many pause instructions (tens of microseconds) before
 * sleeping: a training step issues hundreds of short parallel calls, and a
 * futex wake-up per call costs more than the work (notably in VMs). */
#define SPIN_LIMIT 20000

typedef struct {
  pthread_mutex_t lock;      /* held by the caller for the whole job */
  pthread_mutex_t m;         /* guards sleeping workers / a sleeping caller */
  pthread_cond_t start, done;
  pthread_t tid[MAX_THREADS];
  int n_workers;             /* threads besides the caller */
  _Atomic unsigned long gen; /* job generation; a change publishes the job fields */
  _Atomic int remaining;
  _Atomic bool quit;
  int sleeping;              /* workers blocked on `start` (under m) */
  bool caller_waiting;       /* caller blocked on `done` (under m) */
  nn_range_fn fn;
  void *ctx;
  int64_t n;
  int parts;
} pool_t;

static pool_t pool = {.lock = PTHREAD_MUTEX_INITIALIZER,
                      .m = PTHREAD_MUTEX_INITIALIZER,
                      .start = PTHREAD_COND_INITIALIZER,
                      .done = PTHREAD_COND_INITIALIZER};
static int g_threads = 0; /* 0 = not yet configured */
static _Thread_local int tl_budget; /* 0 = the process's count */
static pthread_once_t g_once = PTHREAD_ONCE_INIT;

/* gen0: the job generation when the worker was created, so it never runs a stale job */
typedef struct { int id; unsigned long gen0; } worker_arg;
static worker_arg g_args[MAX_THREADS];

static inline void cpu_relax(void) { __builtin_ia32_pause(); }

static void *worker(void *p) {
  int id = ((worker_arg *)p)->id;
  unsigned long seen = ((worker_arg *)p)->gen0;
  for (;;) {
    unsigned long g;
    int spins = 0;
    while ((g = atomic_load_explicit(&pool.gen, memory_order_acquire)) == seen && !atomic_load(&pool.quit)) {
      if (spins++ < SPIN_LIMIT) {
        cpu_relax();
        continue;
      }
      pthread_mutex_lock(&pool.m);
      pool.sleeping++;
      while (atomic_load(&pool.gen) == seen && !atomic_load(&pool.quit)) pthread_cond_wait(&pool.start, &pool.m);
      pool.sleeping--;
      pthread_mutex_unlock(&pool.m);
    }
    if (atomic_load(&pool.quit)) break;
    seen = g;
    if (id < pool.parts) pool.fn(pool.ctx, pool.n * id / pool.parts, pool.n * (id + 1) / pool.parts);
    if (atomic_fetch_sub_explicit(&pool.remaining, 1, memory_order_acq_rel) == 1) {
      pthread_mutex_lock(&pool.m);
      if (pool.caller_waiting) pthread_cond_signal(&pool.done);
      pthread_mutex_unlock(&pool.m);
    }
  }
  return NULL;
}

static void pool_stop(void) {
  atomic_store(&pool.quit, true);
  pthread_mutex_lock(&pool.m);
  pthread_cond_broadcast(&pool.start);
  pthread_mutex_unlock(&pool.m);
  for (int i = 0; i < pool.n_workers; i++) pthread_join(pool.tid[i], NULL);
  pool.n_workers = 0;
  atomic_store(&pool.quit, false);
}

static void pool_start(int total) {
  for (int i = 0; i < total - 1 && i < MAX_THREADS; i++) {
    g_args[i].id = i + 1;
    g_args[i].gen0 = atomic_load(&pool.gen);
    if (pthread_create(&pool.tid[i], NULL, worker, &g_args[i]) != 0) break;
    pool.n_workers++;
  }
}

static int cores(void) {
  long c = sysconf(_SC_NPROCESSORS_ONLN);
  return c < 1 ? 1 : (int)c;
}

static void configure(int n) {
  if (n < 1) n = cores();
  if (n > MAX_THREADS) n = MAX_THREADS;
  pthread_mutex_lock(&pool.lock);
  if (pool.n_workers != n - 1) {
    pool_stop();
    pool_start(n);
  }
  g_threads = n;
  pthread_mutex_unlock(&pool.lock);
  openblas_set_num_threads(1); /* GEMM threads come from our pool, see nn_sgemm */
}

static void at_exit_stop(void) {
  pthread_mutex_lock(&pool.lock);
  pool_stop();
  pthread_mutex_unlock(&pool.lock);
}

static void init_once(void) {
  const char *e = getenv("NNCORE_NUM_THREADS");
  configure(e ? atoi(e) : 0);
  atexit(at_exit_stop);
}

void nn_set_num_threads(int n) {
  pthread_once(&g_once, init_once);
  configure(n);
}

int nn_get_num_threads(void) {
  pthread_once(&g_once, init_once);
  return tl_budget ? tl_budget : g_threads;
}

int nn_set_thread_budget(int n) {
  int prev = tl_budget;
  tl_budget = n < 1 ? 0 : n > MAX_THREADS ? MAX_THREADS : n;
  return prev;
}

void nn_parallel_for(int64_t n, int64_t min_chunk, nn_range_fn fn, void *ctx) {
  if (n <= 0) return;
  int nt = nn_get_num_threads();
  if (min_chunk < 1) min_chunk = 1;
  int parts = (int)((n + min_chunk - 1) / min_chunk);
  if (parts > nt) parts = nt;
  if (parts <= 1 || pthread_mutex_trylock(&pool.lock) != 0) {
    fn(ctx, 0, n);
    return;
  }
  if (parts > pool.n_workers + 1) { /* a budget above the process's count: start the threads it needs */
    pool_stop();
    pool_start(parts);
    if (parts > pool.n_workers + 1) parts = pool.n_workers + 1;
  }
  pool.fn = fn;
  pool.ctx = ctx;
  pool.n = n;
  pool.parts = parts;
  atomic_store_explicit(&pool.remaining, pool.n_workers, memory_order_relaxed);
  atomic_fetch_add_explicit(&pool.gen, 1, memory_order_release); /* publishes the job */
  pthread_mutex_lock(&pool.m);
  if (pool.sleeping) pthread_cond_broadcast(&pool.start);
  pthread_mutex_unlock(&pool.m);
  fn(ctx, 0, n / parts);
  for (int spins = 0; atomic_load_explicit(&pool.remaining, memory_order_acquire) > 0; spins++) {
    if (spins < SPIN_LIMIT) {
      cpu_relax();
      continue;
    }
    pthread_mutex_lock(&pool.m);
    pool.caller_waiting = true;
    while (atomic_load(&pool.remaining) > 0) pthread_cond_wait(&pool.done, &pool.m);
    pool.caller_waiting = false;
    pthread_mutex_unlock(&pool.m);
  }
  pthread_mutex_unlock(&pool.lock);
}

int nn_batch_parts(int64_t n) {
  int nt = nn_get_num_threads();
  return n < nt ? (int)(n > 0 ? n : 1) : nt;
}

typedef struct {
  nn_part_fn fn;
  void *ctx;
  int64_t n;
  int parts;
} parts_ctx;

static void run_parts(void *p, int64_t p0, int64_t p1) {
  parts_ctx *c = p;
  int prev = nn_set_thread_budget(1);
  for (int64_t i = p0; i < p1; i++) c->fn(c->ctx, (int)i, c->n * i / c->parts, c->n * (i + 1) / c->parts);
  nn_set_thread_budget(prev);
}

void nn_parallel_parts(int64_t n, int parts, nn_part_fn fn, void *ctx) {
  if (n <= 0 || parts < 1) return;
  parts_ctx c = {fn, ctx, n, parts};
  nn_parallel_for(parts, 1, run_parts, &c);
}

/* GEMM runs on our pool, not OpenBLAS's threads: OpenBLAS stays single-threaded
 * and we split C into fixed panels (128 or 256 columns, or 64 rows when C is tall).
 * The panels depend on the shape only, so every element is computed by the
 * same kernel call whatever the thread count: results are bit-identical for
 * 1..N threads, which OpenBLAS's own threading does not promise. */
typedef struct {
  bool ta, tb, split_n;
  int64_t m, n, k, lda, ldb, ldc, blk;
  float alpha, beta;
  const float *a, *b;
  float *c;
} gemm_ctx;

static void gemm_call(bool ta, bool tb, int64_t m, int64_t n, int64_t k, float alpha, const float *a, int64_t lda,
                      const float *b, int64_t ldb, float beta, float *c, int64_t ldc) {
  cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, (int)m, (int)n, (int)k,
              alpha, a, (int)lda, b, (int)ldb, beta, c, (int)ldc);
}

static void gemm_panels(void *p, int64_t b0, int64_t b1) {
  gemm_ctx *g = p;
  for (int64_t bi = b0; bi < b1; bi++) {
    int64_t s = bi * g->blk;
    if (g->split_n) {
      int64_t nj = g->n - s < g->blk ? g->n - s : g->blk;
      const float *bp = g->tb ? g->b + s * g->ldb : g->b + s;
      gemm_call(g->ta, g->tb, g->m, nj, g->k, g->alpha, g->a, g->lda, bp, g->ldb, g->beta, g->c + s, g->ldc);
    } else {
      int64_t mi = g->m - s < g->blk ? g->m - s : g->blk;
      const float *ap = g->ta ? g->a + s : g->a + s * g->lda;
      gemm_call(g->ta, g->tb, mi, g->n, g->k, g->alpha, ap, g->lda, g->b, g->ldb, g->beta, g->c + s * g->ldc, g->ldc);
    }
  }
}

void nn_sgemm(bool ta, bool tb, int64_t m, int64_t n, int64_t k, float alpha, const float *a, int64_t lda,
              const float *b, int64_t ldb, float beta, float *c, int64_t ldc) {
  if (m == 0 || n == 0) return;
  if (k == 0) {
    for (int64_t i = 0; i < m; i++)
      for (int64_t j = 0; j < n; j++) c[i * ldc + j] = beta == 0 ? 0 : beta * c[i * ldc + j];
    return;
  }
  pthread_once(&g_once, init_once);
  /* A vector times a matrix (a recurrent step at batch 1): GEMV reads the matrix once, where GEMM would
   * first pack all of it into panels for a single row. */
  if ((m == 1 || n == 1) && m * n * k < (1 << 22)) {
    if (m == 1) /* c[1 x n] = a[1 x k] op(B): op(B)^T a */
      cblas_sgemv(CblasRowMajor, tb ? CblasNoTrans : CblasTrans, tb ? (int)n : (int)k, tb ? (int)k : (int)n, alpha, b,
                  (int)ldb, a, ta ? (int)lda : 1, beta, c, 1);
    else /* c[m x 1] = op(A) b[k x 1] */
      cblas_sgemv(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, ta ? (int)k : (int)m, ta ? (int)m : (int)k, alpha, a,
                  (int)lda, b, tb ? 1 : (int)ldb, beta, c, (int)ldc);
    return;
  }
  if (m * n * k < (1 << 18)) {
    gemm_call(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
    return;
  }
  gemm_ctx g = {.ta = ta, .tb = tb, .m = m, .n = n, .k = k, .lda = lda, .ldb = ldb, .ldc = ldc,
                .alpha = alpha, .beta = beta, .a = a, .b = b, .c = c};
  g.split_n = n >= m;
  /* wider panels repack A less often (about 1% overhead instead of 4% at 1024^3) */
  g.blk = g.split_n ? (n >= 1024 ? 256 : 128) : 64;
  int64_t blocks = ((g.split_n ? n : m) + g.blk - 1) / g.blk;
  nn_parallel_for(blocks, 1, gemm_panels, &g);
}
