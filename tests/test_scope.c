/* nn_scope and thread budgets: a scope puts back exactly the caller's arena, grad mode and budget; a
 * scope with `only` keeps every other persistent tensor constant; budgets belong to a thread. */
#include <pthread.h>
#include <stdatomic.h>

#include "harness.h"

TEST(scope_restores_the_callers_arena_grad_mode_and_budget) {
  nn_arena *mine = nn_arena_new(0), *inner = nn_arena_new(0);
  nn_arena *prev = nn_arena_set_current(mine);
  int prev_budget = nn_set_thread_budget(3);
  nn_no_grad_begin();
  nn_no_grad_begin();
  nn_scope s = nn_scope_begin(&(nn_scope_opts){.arena = inner, .grad = true, .threads = 1});
  CHECK(nn_arena_current() == inner, "the scope's arena is current");
  CHECK(nn_grad_enabled(), "a grad scope records inside the caller's two no-grad levels");
  CHECK(nn_get_num_threads() == 1, "budget in the scope: %d", nn_get_num_threads());
  nn_no_grad_begin(); /* left open on purpose, as code that failed half-way might */
  nn_scope_end(&s);
  CHECK(nn_arena_current() == mine, "the caller's arena is back");
  CHECK(nn_get_num_threads() == 3, "the caller's budget is back: %d", nn_get_num_threads());
  CHECK(!nn_grad_enabled(), "still no grad");
  nn_no_grad_end();
  CHECK(!nn_grad_enabled(), "one level of the caller's left");
  nn_no_grad_end();
  CHECK(nn_grad_enabled(), "the caller's own levels close as they opened");
  nn_scope n = nn_scope_begin(&(nn_scope_opts){.no_grad = true});
  CHECK(!nn_grad_enabled() && nn_arena_current() == mine, "a no-grad scope keeps the arena");
  nn_scope_end(&n);
  CHECK(nn_grad_enabled(), "and closes its level");
  nn_set_thread_budget(prev_budget);
  nn_arena_set_current(prev);
  nn_arena_free(inner);
  nn_arena_free(mine);
}

TEST(scope_with_only_keeps_other_persistent_tensors_constant) {
  nn_rng r;
  nn_rng_seed(&r, 5);
  nn_params model, vars;
  nn_params_init(&model);
  nn_params_init(&vars);
  nn_tensor *w = nn_params_add(&model, "w", t_randn(&r, 1, (int64_t[]){6}, 1.0f), true);
  nn_tensor *y = nn_params_add(&vars, "y", t_randn(&r, 1, (int64_t[]){6}, 1.0f), true);
  nn_arena *a = nn_arena_new(0);
  nn_scope s = nn_scope_begin(&(nn_scope_opts){.arena = a, .grad = true, .only = &vars});
  nn_tensor *loss = nn_sum_all(nn_mul(nn_mul(w, y), y)); /* d/dy = 2 w y, d/dw = y^2 */
  CHECK(loss && nn_backward(loss), "backward");
  nn_scope_end(&s);
  CHECK(w->grad == NULL, "the weights got no gradient");
  CHECK(y->grad != NULL, "the variable did");
  for (int i = 0; i < 6 && y->grad; i++)
    CHECK_CLOSE(nn_f32(y->grad)[i], 2.0f * nn_f32(w)[i] * nn_f32(y)[i], 1e-5);
  CHECK(w->requires_grad, "and the weights were never marked frozen");
  nn_arena_reset(a);
  /* outside the scope the same graph trains both */
  loss = nn_sum_all(nn_mul(nn_mul(w, y), y));
  CHECK(loss && nn_backward(loss) && w->grad, "outside: the weights get their gradient");
  nn_arena_reset(nn_arena_current());
  nn_arena_free(a);
  nn_params_free(&model);
  nn_params_free(&vars);
}

typedef struct {
  int budget, rounds;
  atomic_int calls;   /* chunk calls of the last round */
  int most_chunks, least_chunks, seen_threads;
  atomic_bool *stop;
} budget_job;

static void count_chunk(void *ctx, int64_t b, int64_t e) {
  (void)b, (void)e;
  atomic_fetch_add(&((budget_job *)ctx)->calls, 1);
}

static void *run_budget(void *p) {
  budget_job *j = p;
  nn_scope s = nn_scope_begin(&(nn_scope_opts){.threads = j->budget});
  j->least_chunks = 1 << 30;
  for (int i = 0; i < j->rounds || (j->stop && !atomic_load(j->stop)); i++) {
    atomic_store(&j->calls, 0);
    nn_parallel_for(4096, 1, count_chunk, j);
    int c = atomic_load(&j->calls);
    if (c > j->most_chunks) j->most_chunks = c;
    if (c < j->least_chunks) j->least_chunks = c;
    if (nn_get_num_threads() != j->budget) j->seen_threads = nn_get_num_threads();
  }
  nn_scope_end(&s);
  return NULL;
}

TEST(thread_budgets_belong_to_their_thread) {
  int saved = nn_get_num_threads();
  nn_set_num_threads(1); /* the process's count: a budget of 2 must still get two threads */
  atomic_bool stop = false;
  budget_job one = {.budget = 1, .rounds = 200}, two = {.budget = 2, .rounds = 200, .stop = &stop};
  pthread_t a, b;
  pthread_create(&b, NULL, run_budget, &two);
  pthread_create(&a, NULL, run_budget, &one);
  pthread_join(a, NULL);
  atomic_store(&stop, true);
  pthread_join(b, NULL);
  CHECK(one.most_chunks == 1, "a budget of 1 never splits work (most %d chunks)", one.most_chunks);
  CHECK(two.most_chunks <= 2, "a budget of 2 never uses more (%d)", two.most_chunks);
  CHECK(one.seen_threads == 0 && two.seen_threads == 0, "each thread saw its own count (%d, %d)", one.seen_threads,
        two.seen_threads);
  CHECK(nn_get_num_threads() == 1, "the process's count is untouched: %d", nn_get_num_threads());
  budget_job alone = {.budget = 2, .rounds = 20};
  run_budget(&alone);
  CHECK(alone.least_chunks == 2, "alone, a budget of 2 splits every call in two (least %d)", alone.least_chunks);
  nn_set_num_threads(saved);
}
