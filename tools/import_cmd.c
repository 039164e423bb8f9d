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
  bool bgr = false;
  int input_size = 0;
  for (int i = 0; i < argc; i++) {
    const char *k = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
    if (!strcmp(k, "--bgr")) {
      bgr = true;
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
                      {"threshold", threshold}, {"source", source}};
      e2e_model *m = e2e_detect_graph_model(&g, meta, 6, in);
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
