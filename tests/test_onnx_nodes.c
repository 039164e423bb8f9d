/* ONNX conformance: every node test of Debian's libonnx-testdata either runs on nncore's graph runtime and
 * matches the reference outputs (ONNX's own tolerance: rtol 1e-3, atol 1e-7), or is refused when it is
 * imported, with a message naming the node and op. A wrong output, or a failure at run time after a
 * successful import, fails the test. Every input but the first (the data) is bound as a constant at
 * import, as weights, shapes, indices, bounds and scales are in a real model.
 *
 * Usage: test_onnx_nodes [DATA_DIR [REPORT.md]]; without the data (package not installed) it skips. */
#include <glib.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "e2e/import.h"
#include "nncore/nncore.h"

#define DEFAULT_DIR "/usr/share/libonnx-testdata/data/node"
#define MAX_IO 16

typedef enum { PASSED, REFUSED, WRONG } verdict;

typedef struct {
  char *name;
  void *data;
  size_t size;
  nn_tensor *t;
  bool is_float;
} pb_file;

static bool read_pb(const char *path, pb_file *f) {
  gsize len;
  if (!g_file_get_contents(path, (char **)&f->data, &len, NULL)) return false;
  f->size = len;
  f->t = e2e_onnx_tensor(f->data, f->size, &f->name, &f->is_float);
  if (!f->t) { /* a type we do not read (strings, ...): the case is refused below */
    g_free(f->data);
    f->data = NULL;
  }
  return f->t != NULL;
}

static void free_pb(pb_file *f) {
  g_free(f->name);
  g_free(f->data);
  nn_tensor_free(f->t);
}

/* One test folder; why gets a line for the report. */
static verdict run_case(const char *dir, char *why, size_t why_len) {
  char *model_path = g_build_filename(dir, "model.onnx", NULL), *model = NULL;
  gsize model_len;
  pb_file ins[MAX_IO] = {0}, outs[MAX_IO] = {0};
  int n_in = 0, n_out = 0;
  verdict v = REFUSED;
  snprintf(why, why_len, "no data");
  if (!g_file_get_contents(model_path, &model, &model_len, NULL)) goto done;
  for (; n_in < MAX_IO; n_in++) {
    char *p = g_strdup_printf("%s/test_data_set_0/input_%d.pb", dir, n_in);
    bool ok = g_file_test(p, G_FILE_TEST_EXISTS) && read_pb(p, &ins[n_in]);
    g_free(p);
    if (!ok) break;
  }
  for (; n_out < MAX_IO; n_out++) {
    char *p = g_strdup_printf("%s/test_data_set_0/output_%d.pb", dir, n_out);
    bool ok = g_file_test(p, G_FILE_TEST_EXISTS) && read_pb(p, &outs[n_out]);
    g_free(p);
    if (!ok) break;
  }
  /* the data stays an input; everything else becomes a constant */
  e2e_onnx_binding bind[MAX_IO];
  int n_bind = 0;
  for (int i = 0; i < n_in; i++)
    if (i > 0 || !ins[i].is_float) bind[n_bind++] = (e2e_onnx_binding){ins[i].name, ins[i].data, ins[i].size};
  nn_graph g;
  if (!e2e_import_onnx_bound(model, model_len, "model.onnx", 0, bind, n_bind, &g)) {
    snprintf(why, why_len, "%s", nn_last_error());
    goto done;
  }
  v = WRONG;
  nn_tensor *x[MAX_IO] = {0}, *y[16];
  if (g.n_outputs != n_out) {
    snprintf(why, why_len, "%d outputs, the test has %d", g.n_outputs, n_out);
    nn_graph_free(&g);
    goto done;
  }
  for (int k = 0; k < g.n_inputs; k++) {
    const char *want = g.values[g.inputs[k]].name;
    for (int i = 0; i < n_in; i++)
      if (!strcmp(ins[i].name, want)) x[k] = ins[i].t;
  }
  nn_arena_reset(nn_arena_current());
  nn_no_grad_begin();
  bool ran = nn_graph_run(&g, x, y);
  nn_no_grad_end();
  if (!ran) {
    snprintf(why, why_len, "run failed after import: %s", nn_last_error());
  } else {
    v = PASSED;
    for (int k = 0; k < n_out && v == PASSED; k++) {
      nn_tensor *ref = outs[k].t, *got = y[k];
      bool same = got->ndim == ref->ndim || nn_numel(got) == nn_numel(ref);
      for (int d = 0; same && got->ndim == ref->ndim && d < got->ndim; d++) same = got->shape[d] == ref->shape[d];
      if (!same || nn_numel(got) != nn_numel(ref)) {
        char a[96], b[96];
        snprintf(why, why_len, "output %d: shape %s, reference %s", k, nn_shape_str(got, a, sizeof a), nn_shape_str(ref, b, sizeof b));
        v = WRONG;
        break;
      }
      int64_t n = nn_numel(ref);
      float *gv = malloc(sizeof *gv * (size_t)n);
      nn_to_float_array(got, gv);
      for (int64_t i = 0; i < n; i++) {
        double r = nn_f32(ref)[i], o = gv[i];
        bool close = (isnan(r) && isnan(o)) || (isinf(r) && r == o) || fabs(o - r) <= 1e-7 + 1e-3 * fabs(r);
        if (!close) {
          snprintf(why, why_len, "output %d, element %lld: %.7g, reference %.7g", k, (long long)i, o, r);
          v = WRONG;
          break;
        }
      }
      free(gv);
    }
  }
  nn_arena_reset(nn_arena_current());
  nn_graph_free(&g);
done:
  for (int i = 0; i < n_in; i++) free_pb(&ins[i]);
  for (int i = 0; i < n_out; i++) free_pb(&outs[i]);
  g_free(model);
  g_free(model_path);
  return v;
}

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

int main(int argc, char **argv) {
  const char *root = argc > 1 ? argv[1] : DEFAULT_DIR;
  GDir *d = g_dir_open(root, 0, NULL);
  if (!d) {
    printf("SKIP: %s not found (Debian package libonnx-testdata)\n", root);
    return 77;
  }
  GPtrArray *names = g_ptr_array_new_with_free_func(g_free);
  for (const char *e; (e = g_dir_read_name(d));) g_ptr_array_add(names, g_strdup(e));
  g_dir_close(d);
  qsort(names->pdata, names->len, sizeof(char *), cmp_str);
  int counts[3] = {0};
  FILE *report = argc > 2 ? fopen(argv[2], "w") : NULL;
  if (report) fprintf(report, "| test | result | detail |\n|---|---|---|\n");
  for (guint i = 0; i < names->len; i++) {
    char *dir = g_build_filename(root, names->pdata[i], NULL), why[700];
    verdict v = run_case(dir, why, sizeof why);
    counts[v]++;
    if (v == WRONG) printf("WRONG %s: %s\n", (char *)names->pdata[i], why);
    if (report) {
      for (char *p = why; *p; p++)
        if (*p == '|' || *p == '\n') *p = ' ';
      fprintf(report, "| %s | %s | %s |\n", (char *)names->pdata[i], v == PASSED ? "pass" : v == REFUSED ? "refused" : "WRONG",
              v == PASSED ? "" : why);
    }
    g_free(dir);
  }
  if (report) fclose(report);
  printf("ONNX node tests: %d passed, %d refused at import, %d wrong (of %u)\n", counts[PASSED], counts[REFUSED], counts[WRONG],
         names->len);
  g_ptr_array_unref(names);
  /* the harness's closing line: one check for "none wrong" and one for "the supported ops pass" */
  int failed = (counts[WRONG] > 0) + (counts[PASSED] < 100);
  printf("%d passed, %d failed\n", 2 - failed, failed);
  return failed ? 1 : 0;
}
