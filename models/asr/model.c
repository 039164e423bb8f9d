/* The recogniser's network, its configuration, save and load. */
#include <json-glib/json-glib.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"
#include "task.h"

asr_config asr_config_default(void) {
  return (asr_config){.n_mels = 80, .conv_channels = 64, .dim = 256, .hidden = 256, .layers = 3, .bidirectional = true};
}

bool asr_config_check(const asr_config *c) {
  if (c->n_mels < 8 || c->n_mels > 256 || c->conv_channels < 1 || c->conv_channels > 512 || c->dim < 8 ||
      c->dim > 2048 || c->hidden < 8 || c->hidden > 2048 || c->layers < 1 || c->layers > NN_RNN_MAX_LAYERS) {
    nn_set_error("ASR config out of range (mels %d, conv channels %d, dim %d, hidden %d, layers %d)", c->n_mels,
                 c->conv_channels, c->dim, c->hidden, c->layers);
    return false;
  }
  return true;
}

/* Mel bins after the two stride-2 convs (3x3, padding 1). */
static int mels_after_convs(int m) { return ((m + 1) / 2 + 1) / 2; }

bool asr_init(asr_model *m, const asr_config *c, const e2e_mel_config *mel, uint64_t seed) {
  memset(m, 0, sizeof *m);
  if (!asr_config_check(c) || !e2e_mel_config_check(mel)) return false;
  if (mel->n_mels != c->n_mels) {
    nn_set_error("ASR config: %d mels in the network, %d in the front end", c->n_mels, mel->n_mels);
    return false;
  }
  m->cfg = *c;
  m->mel = *mel;
  nn_params_init(&m->p);
  nn_rng rng;
  nn_rng_seed(&rng, seed);
  bool ok = nn_conv2d_init(&m->conv1, &m->p, "enc.conv1", 1, c->conv_channels, 3, 2, 1, 1, true, &rng) &&
            nn_conv2d_init(&m->conv2, &m->p, "enc.conv2", c->conv_channels, c->conv_channels, 3, 2, 1, 1, true, &rng) &&
            nn_linear_init(&m->proj, &m->p, "enc.proj", (int64_t)c->conv_channels * mels_after_convs(c->n_mels), c->dim,
                           true, &rng) &&
            nn_rnn_init(&m->rnn, &m->p, "enc.rnn", true, c->dim, c->hidden, c->layers, c->bidirectional, &rng) &&
            nn_linear_init(&m->out, &m->p, "ctc", (int64_t)c->hidden * (c->bidirectional ? 2 : 1), E2E_ASR_CLASSES,
                           true, &rng);
  if (!ok) {
    asr_free(m);
    return false;
  }
  /* blank starts likely: CTC's first lesson is "mostly blank", learnt here for free */
  nn_f32(m->out.bias)[E2E_ASR_BLANK] = 2.0f;
  m->model_id = e2e_params_hash(&m->p);
  return true;
}

void asr_free(asr_model *m) {
  nn_params_free(&m->p);
  memset(m, 0, sizeof *m);
}

void asr_normalize(float *feats, int64_t T, int M) {
  if (T < 1) return;
  for (int j = 0; j < M; j++) {
    double s = 0.0, s2 = 0.0;
    for (int64_t t = 0; t < T; t++) {
      double v = feats[t * M + j];
      s += v;
      s2 += v * v;
    }
    double mean = s / T, var = s2 / T - mean * mean;
    float inv = (float)(1.0 / sqrt(var > 1e-2 ? var : 1e-2)); /* a flat bin (silence, band limit) stays flat */
    for (int64_t t = 0; t < T; t++) feats[t * M + j] = (float)((feats[t * M + j] - mean) * inv);
  }
}

nn_tensor *asr_forward(const asr_model *m, nn_tensor *x, const int64_t *lengths, int64_t *out_lengths) {
  int64_t N = x->shape[0];
  nn_tensor *h = nn_relu(nn_conv2d_forward(&m->conv1, x));
  h = nn_relu(nn_conv2d_forward(&m->conv2, h)); /* [N, C, M', T'] */
  if (!h) return NULL;
  int64_t C = h->shape[1], Mq = h->shape[2], T = h->shape[3];
  h = nn_reshape(nn_permute(h, (int[]){3, 0, 1, 2}), 3, (int64_t[]){T, N, C * Mq});
  h = nn_relu(nn_linear_forward(&m->proj, h));
  nn_tensor *len = nn_empty(NN_I64, 1, (int64_t[]){N});
  if (!len) return NULL;
  int64_t *ld = nn_data(len);
  for (int64_t i = 0; i < N; i++) {
    ld[i] = asr_subsampled(lengths[i]);
    if (ld[i] > T) ld[i] = T;
    if (out_lengths) out_lengths[i] = ld[i];
  }
  h = nn_rnn_forward(&m->rnn, h, len);
  return nn_log_softmax(nn_linear_forward(&m->out, h), 2);
}

static char *config_json(const asr_model *m) {
  const asr_config *c = &m->cfg;
  return g_strdup_printf("{\"n_mels\": %d, \"conv_channels\": %d, \"dim\": %d, \"hidden\": %d, \"layers\": %d, "
                         "\"bidirectional\": %s, \"classes\": %d, \"alphabet\": \"_ 'abcdefghijklmnopqrstuvwxyz\"}",
                         c->n_mels, c->conv_channels, c->dim, c->hidden, c->layers, c->bidirectional ? "true" : "false",
                         E2E_ASR_CLASSES);
}

char *asr_mel_json(const e2e_mel_config *c) {
  return g_strdup_printf("{\"sample_rate\": %d, \"n_fft\": %d, \"win_length\": %d, \"hop\": %d, \"n_mels\": %d, "
                         "\"f_min\": %.9g, \"f_max\": %.9g, \"log_floor\": %.9g, \"normalize\": \"utterance\"}",
                         c->sample_rate, c->n_fft, c->win_length, c->hop, c->n_mels, c->f_min, c->f_max,
                         E2E_LOG_MEL_FLOOR);
}

bool asr_save(asr_model *m, const char *path, const nn_kv *extra, int n_extra) {
  m->model_id = e2e_params_hash(&m->p);
  char *cfg = config_json(m), *mel = asr_mel_json(&m->mel);
  char id[16];
  snprintf(id, sizeof id, "%08x", m->model_id);
  bool ok = e2e_save_params(path, &m->p, (nn_kv[]){{"architecture", ASR_ARCH}, {"config", cfg}, {"mel", mel}, {"model_id", id}},
                            4, extra, n_extra);
  g_free(cfg);
  g_free(mel);
  return ok;
}

static JsonObject *parse_object(JsonParser *p, const char *json, const char *key, const char *path) {
  if (!json || !nn_json_nesting_ok(json, strlen(json), 8) || !json_parser_load_from_data(p, json, -1, NULL) ||
      !JSON_NODE_HOLDS_OBJECT(json_parser_get_root(p))) {
    nn_set_error("%s: metadata '%s' is missing or not a JSON object", path, key);
    return NULL;
  }
  return json_node_get_object(json_parser_get_root(p));
}

bool asr_mel_from_json(const char *json, e2e_mel_config *c, const char *path) {
  JsonParser *p = json_parser_new();
  JsonObject *o = parse_object(p, json, "mel", path);
  bool ok = o != NULL;
  if (ok) {
    c->sample_rate = (int)json_object_get_int_member_with_default(o, "sample_rate", 0);
    c->n_fft = (int)json_object_get_int_member_with_default(o, "n_fft", 0);
    c->win_length = (int)json_object_get_int_member_with_default(o, "win_length", 0);
    c->hop = (int)json_object_get_int_member_with_default(o, "hop", 0);
    c->n_mels = (int)json_object_get_int_member_with_default(o, "n_mels", 0);
    c->f_min = (float)json_object_get_double_member_with_default(o, "f_min", -1.0);
    c->f_max = (float)json_object_get_double_member_with_default(o, "f_max", -1.0);
    if (!e2e_mel_config_check(c)) {
      char msg[256];
      snprintf(msg, sizeof msg, "%s", nn_last_error());
      nn_set_error("%s: metadata 'mel': %s", path, msg);
      ok = false;
    }
  }
  g_object_unref(p);
  return ok;
}

bool asr_init_from_meta(asr_model *m, const nn_st_file *f, const char *path) {
  memset(m, 0, sizeof *m);
  const char *arch = nn_st_meta(f, "architecture");
  if (!arch || strcmp(arch, ASR_ARCH)) {
    nn_set_error("%s: not a speech recogniser (architecture %s, expected %s)", path, arch ? arch : "missing", ASR_ARCH);
    return false;
  }
  asr_config c = {0};
  e2e_mel_config mel;
  JsonParser *p = json_parser_new();
  JsonObject *o = parse_object(p, nn_st_meta(f, "config"), "config", path);
  bool ok = o != NULL;
  if (ok) {
    c.n_mels = (int)json_object_get_int_member_with_default(o, "n_mels", 0);
    c.conv_channels = (int)json_object_get_int_member_with_default(o, "conv_channels", 0);
    c.dim = (int)json_object_get_int_member_with_default(o, "dim", 0);
    c.hidden = (int)json_object_get_int_member_with_default(o, "hidden", 0);
    c.layers = (int)json_object_get_int_member_with_default(o, "layers", 0);
    c.bidirectional = json_object_get_boolean_member_with_default(o, "bidirectional", FALSE);
    if (json_object_get_int_member_with_default(o, "classes", 0) != E2E_ASR_CLASSES) {
      nn_set_error("%s: the model's character set is not this build's (%d classes)", path, E2E_ASR_CLASSES);
      ok = false;
    }
  }
  g_object_unref(p);
  ok = ok && asr_mel_from_json(nn_st_meta(f, "mel"), &mel, path);
  if (ok && !asr_config_check(&c)) {
    char msg[256];
    snprintf(msg, sizeof msg, "%s", nn_last_error());
    nn_set_error("%s: %s", path, msg);
    ok = false;
  }
  return ok && asr_init(m, &c, &mel, 0);
}

bool asr_load_file(asr_model *m, const nn_st_file *f, const char *path) {
  bool ok = asr_init_from_meta(m, f, path);
  if (ok && !nn_st_load_params(f, &m->p, "", true)) {
    char msg[256];
    snprintf(msg, sizeof msg, "%s", nn_last_error());
    asr_free(m);
    nn_set_error("%s: %s", path, msg);
    return false;
  }
  if (ok) {
    for (int i = 0; i < m->p.n; i++) { /* weights from a file must be finite, or every output is NaN */
      const float *d = nn_f32(m->p.t[i]);
      for (int64_t k = 0, n = nn_numel(m->p.t[i]); k < n; k++)
        if (!isfinite(d[k])) {
          nn_set_error("%s: tensor %s holds a non-finite value", path, m->p.names[i]);
          asr_free(m);
          return false;
        }
    }
    m->model_id = e2e_params_hash(&m->p);
  }
  return ok;
}
