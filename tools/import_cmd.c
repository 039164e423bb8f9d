/* `e2e import`: an ONNX or TensorFlow.js model onto nncore's graph runtime, saved as our safetensors with
 * what a detector needs beside the graph (head decoder, labels, normalisation) and where it came from. */
#include <glib.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "e2e.h"
#include "e2e/detect.h"
#include "e2e/import.h"

static void usage(void) {
  fprintf(stderr,
          "usage: e2e import MODEL.onnx|model.json -o OUT.safetensors [OPTIONS]\n"
          "  --head nanodet|yolov5|yolov8   the detection head's decoder (makes a detection model)\n"
          "  --labels FILE                  class names, one per line\n"
          "  --mean R,G,B --std R,G,B       input normalisation on 0..255 (default 0,0,0 and 255,255,255)\n"
          "  --bgr                          the network takes BGR\n"
          "  --stretch                      frames fill the square input (aspect not kept); default: letterbox\n"
          "  --input-size N                 for inputs of unknown size\n"
          "  --center-offset F              NanoDet: cell centres at (i + F) * stride (default 0)\n"
          "  --threshold T                  the confidence the model recommends reporting from (default 0.3)\n"
          "  --source TEXT --license TEXT   provenance, kept in the file\n");
}

static bool parse_triple(const char *s, float *v) {
  return s && sscanf(s, "%f,%f,%f", &v[0], &v[1], &v[2]) == 3;
}

static char *read_labels(const char *path) {
  char *text = NULL;
  GError *err = NULL;
  if (!g_file_get_contents(path, &text, NULL, &err)) {
    fprintf(stderr, "e2e import: %s\n", err->message);
    g_error_free(err);
    return NULL;
  }
  GString *json = g_string_new("[");
  char **lines = g_strsplit(text, "\n", -1);
  int n = 0;
  for (char **l = lines; *l; l++) {
    char *name = g_strstrip(*l);
    if (!*name) continue;
    char *esc = g_strescape(name, NULL);
    g_string_append_printf(json, "%s\"%s\"", n++ ? ", " : "", esc);
    g_free(esc);
  }
  g_string_append(json, "]");
  g_strfreev(lines);
  g_free(text);
  return g_string_free(json, FALSE);
}

int e2e_import(int argc, char **argv) {
  const char *in = NULL, *out = NULL, *head = NULL, *labels = NULL, *mean_s = "0,0,0", *std_s = "255,255,255",
             *source = "", *license = "", *offset = "0", *threshold = "0.3";
  bool bgr = false, stretch = false;
  int input_size = 0;
  for (int i = 0; i < argc; i++) {
    const char *k = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
    if (!strcmp(k, "--bgr") || !strcmp(k, "--stretch")) {
      *(k[2] == 'b' ? &bgr : &stretch) = true;
      continue;
    }
    if (k[0] != '-') {
      in = k;
      continue;
    }
    if (!v) {
      usage();
      return 2;
    }
    if (!strcmp(k, "-o") || !strcmp(k, "--out")) out = v;
    else if (!strcmp(k, "--head")) head = v;
    else if (!strcmp(k, "--labels")) labels = v;
    else if (!strcmp(k, "--mean")) mean_s = v;
    else if (!strcmp(k, "--std")) std_s = v;
    else if (!strcmp(k, "--input-size")) input_size = atoi(v);
    else if (!strcmp(k, "--center-offset")) offset = v;
    else if (!strcmp(k, "--threshold")) threshold = v;
    else if (!strcmp(k, "--source")) source = v;
    else if (!strcmp(k, "--license")) license = v;
    else {
      usage();
      return 2;
    }
    i++;
  }
  float mean[3], std[3];
  if (!in || !out || !parse_triple(mean_s, mean) || !parse_triple(std_s, std) || input_size < 0 || input_size > 8192) {
    usage();
    return 2;
  }
  nn_graph g;
  double t0 = e2e_now_s();
  bool ok = g_str_has_suffix(in, ".json") ? e2e_import_tfjs(in, input_size, &g) : e2e_import_onnx(in, input_size, &g);
  if (!ok) {
    fprintf(stderr, "e2e import: %s\n", nn_last_error());
    return 1;
  }
  printf("imported %s: %d nodes, %d constants, %lld parameters in %.2f s\n", in, g.n_nodes, g.params.n,
         (long long)nn_params_numel(&g.params, false), e2e_now_s() - t0);
  char *labels_json = labels ? read_labels(labels) : NULL;
  if (labels && !labels_json) {
    nn_graph_free(&g);
    return 1;
  }
  char *norm = g_strdup_printf("{\"mean\": [%g, %g, %g], \"std\": [%g, %g, %g], \"order\": \"%s\"}", mean[0], mean[1], mean[2],
                               std[0], std[1], std[2], bgr ? "bgr" : "rgb");
  char *base = g_path_get_basename(in);
  nn_kv extra[] = {{"license", license}, {"imported_from", base}, {"importer", "e2e import (gst-e2e)"}};
  int rc = 0;
  if (head) {
    if (!labels_json) {
      fprintf(stderr, "e2e import: a detection model needs --labels\n");
      rc = 2;
    } else {
      nn_kv meta[] = {{"head", head}, {"labels", labels_json}, {"normalize", norm}, {"center_offset", offset},
                      {"threshold", threshold}, {"source", source}, {"resize", stretch ? "stretch" : "letterbox"}};
      e2e_model *m = e2e_detect_graph_model(&g, meta, 7, in);
      if (!m || !e2e_model_save(m, out, extra, 3)) {
        fprintf(stderr, "e2e import: %s\n", e2e_last_error());
        rc = 1;
      }
      e2e_model_unref(m);
    }
  } else {
    /* a bare graph: runs through the graph runtime, but no element takes it without a head */
    nn_kv meta[] = {{"architecture", "e2e-graph-v1"}, {"source", source}, extra[0], extra[1], extra[2]};
    if (!nn_graph_save(&g, out, meta, 5)) {
      fprintf(stderr, "e2e import: %s\n", nn_last_error());
      rc = 1;
    }
  }
  if (!rc) printf("wrote %s\n", out);
  nn_graph_free(&g);
  g_free(labels_json);
  g_free(norm);
  g_free(base);
  return rc;
}

/* A graph of any origin: our safetensors, an .onnx file, or a TF.js model.json. */
static bool load_any_graph(const char *path, int input_size, nn_graph *g) {
  if (g_str_has_suffix(path, ".json")) return e2e_import_tfjs(path, input_size, g);
  if (g_str_has_suffix(path, ".onnx")) return e2e_import_onnx(path, input_size, g);
  nn_st_file *f = nn_st_open(path);
  bool ok = f && nn_graph_from_file(g, f, path);
  nn_st_close(f);
  return ok;
}

/* The k nodes that took longest, mean seconds per run; a conv's multiply-adds give its GFLOP/s. */
static void print_profile(const nn_graph *g, const double *seconds, int runs, int k) {
  double total = 0;
  int *order = malloc(sizeof *order * (size_t)g->n_nodes);
  if (!order) return;
  for (int i = 0; i < g->n_nodes; i++) order[i] = i, total += seconds[i];
  for (int i = 0; i < k && i < g->n_nodes; i++) /* a partial selection sort: k is small */
    for (int j = i + 1; j < g->n_nodes; j++)
      if (seconds[order[j]] > seconds[order[i]]) {
        int t = order[i];
        order[i] = order[j], order[j] = t;
      }
  printf("  profile: %.2f ms per run in nodes; the %d slowest:\n", total / runs * 1e3, k);
  for (int i = 0; i < k && i < g->n_nodes; i++) {
    const nn_graph_node *n = &g->nodes[order[i]];
    const nn_graph_value *o = &g->values[n->out];
    double ms = seconds[order[i]] / runs * 1e3;
    char shape[96] = "", rate[48] = "";
    nn_tensor t = {.ndim = o->ndim};
    memcpy(t.shape, o->shape, sizeof t.shape);
    nn_shape_str(&t, shape, sizeof shape);
    if (n->op == NN_OP_CONV && n->n_in > 1) {
      const nn_graph_value *w = &g->values[n->in[1]];
      double macs = 1;
      for (int d = 0; d < o->ndim; d++) macs *= (double)o->shape[d];
      for (int d = 1; d < w->ndim; d++) macs *= (double)w->shape[d];
      snprintf(rate, sizeof rate, "  %.1f GFLOP/s", ms > 0 ? 2 * macs / (ms * 1e6) : 0.0);
    }
    printf("  %7.3f ms %5.1f %%  %-14s %-28s %s%s\n", ms, 100 * seconds[order[i]] / total, nn_graph_op_name(n->op), n->name, shape, rate);
  }
  free(order);
}

/* `e2e graph run`: runs a graph on raw float32 input, writes its outputs raw, times it: what the
 * comparisons with ONNX Runtime and TF.js (tools/compare/) read. */
int e2e_graph(int argc, char **argv) {
  const char *model = NULL, *in_path = NULL, *out_path = NULL;
  int input_size = 0, threads = 0, repeat = 1, profile = 0;
  for (int i = 1; i < argc; i++) {
    const char *k = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
    if (k[0] != '-') {
      model = k;
      continue;
    }
    if (!v) break;
    if (!strcmp(k, "--input")) in_path = v;
    else if (!strcmp(k, "--out")) out_path = v;
    else if (!strcmp(k, "--input-size")) input_size = atoi(v);
    else if (!strcmp(k, "--threads")) threads = atoi(v);
    else if (!strcmp(k, "--repeat")) repeat = atoi(v);
    else if (!strcmp(k, "--profile")) profile = atoi(v);
    else model = NULL, argc = 0;
    i++;
  }
  if (argc < 2 || strcmp(argv[0], "run") || !model || repeat < 1 || threads < 0 || profile < 0) {
    fprintf(stderr, "usage: e2e graph run MODEL(.safetensors|.onnx|model.json) [--input X.f32] [--out Y.f32]\n"
                    "         [--input-size N] [--threads N] [--repeat N] [--profile K]\n"
                    "  runs the graph on X (raw float32 of the input's shape; zeros without it), writes every\n"
                    "  output as raw float32 one after another, and prints the fastest of N runs;\n"
                    "  --profile K: then the K nodes that took longest (mean per run; convs with their GFLOP/s)\n");
    return 2;
  }
  nn_graph g;
  if (!load_any_graph(model, input_size, &g)) {
    fprintf(stderr, "e2e graph: %s\n", nn_last_error());
    return 1;
  }
  if (threads) nn_set_num_threads(threads);
  if (!nn_graph_prepare(&g)) {
    fprintf(stderr, "e2e graph: %s\n", nn_last_error());
    nn_graph_free(&g);
    return 1;
  }
  const nn_graph_value *iv = &g.values[g.inputs[0]];
  nn_tensor *x = nn_tensor_new(NN_F32, iv->ndim, iv->shape);
  int rc = 0;
  if (in_path) {
    gchar *data = NULL;
    gsize len = 0;
    if (!g_file_get_contents(in_path, &data, &len, NULL) || len != sizeof(float) * (size_t)nn_numel(x)) {
      fprintf(stderr, "e2e graph: %s must hold %lld float32 values\n", in_path, (long long)nn_numel(x));
      g_free(data);
      nn_tensor_free(x);
      nn_graph_free(&g);
      return 1;
    }
    memcpy(nn_f32(x), data, len);
    g_free(data);
  }
  nn_no_grad_begin();
  double best = 1e30, *node_s = profile ? calloc((size_t)g.n_nodes, sizeof *node_s) : NULL;
  nn_tensor *y[16];
  for (int r = 0; r < repeat && !rc; r++) {
    nn_arena_reset(nn_arena_current());
    double t0 = e2e_now_s();
    if (!nn_graph_run_timed(&g, &x, y, r || repeat == 1 ? node_s : NULL)) { /* the first of several warms up */
      fprintf(stderr, "e2e graph: %s\n", nn_last_error());
      rc = 1;
    }
    double t = e2e_now_s() - t0;
    if (t < best) best = t;
  }
  if (!rc) {
    printf("%s: %d nodes (%d run inside others' passes), fastest of %d runs %.2f ms on %d threads\n", model, g.n_nodes,
           nn_graph_fused_nodes(&g), repeat, best * 1e3, nn_get_num_threads());
    FILE *f = out_path ? fopen(out_path, "wb") : NULL;
    for (int k = 0; k < g.n_outputs; k++) {
      char s[96];
      nn_tensor *c = nn_contiguous(y[k]);
      printf("  output %d %s %s\n", k, g.values[g.outputs[k]].name, nn_shape_str(c, s, sizeof s));
      if (f) fwrite(nn_f32(c), sizeof(float), (size_t)nn_numel(c), f);
    }
    if (f) fclose(f);
    if (node_s) print_profile(&g, node_s, repeat > 1 ? repeat - 1 : 1, profile);
  }
  free(node_s);
  nn_no_grad_end();
  nn_arena_reset(nn_arena_current());
  nn_tensor_free(x);
  nn_graph_free(&g);
  return rc;
}
