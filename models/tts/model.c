/* The synthesiser's network for training (all steps at once), its configuration, save and load. */
#include <json-glib/json-glib.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../asr/internal.h" /* asr_mel_from_json: the front end's metadata, read as the recogniser reads it */
#include "../task.h"
#include "internal.h"

tts_config tts_config_default(void) {
  return (tts_config){.n_mels = 80, .reduction = 4, .embed = 128, .text_dim = 128, .dim = 128, .audio_layers = 6,
                      .dec_layers = 6, .prenet_dropout = 0.5f};
}

e2e_mel_config tts_mel_default(void) {
  return (e2e_mel_config){.sample_rate = 16000, .n_fft = 1024, .win_length = 800, .hop = 200, .n_mels = 80,
                          .f_min = 40.0f, .f_max = 8000.0f};
}

bool tts_config_check(const tts_config *c) {
  if (c->n_mels < 8 || c->n_mels > 256 || c->reduction < 1 || c->reduction > 8 || c->embed < 4 || c->embed > 1024 ||
      c->text_dim < 4 || c->text_dim > 1024 || c->text_dim % 2 || c->dim < 4 || c->dim > 1024 || c->audio_layers < 1 ||
      c->audio_layers > TTS_MAX_LAYERS || c->dec_layers < 1 || c->dec_layers > TTS_MAX_LAYERS ||
      !(c->prenet_dropout >= 0.0f && c->prenet_dropout < 1.0f) || c->postnet_layers < 0 ||
      c->postnet_layers > TTS_MAX_POSTNET ||
      (c->postnet_layers && (c->postnet_dim < 4 || c->postnet_dim > 1024))) {
    nn_set_error("TTS config out of range (mels %d, reduction %d, embed %d, text dim %d, dim %d, layers %d/%d, "
                 "postnet %d x %d)",
                 c->n_mels, c->reduction, c->embed, c->text_dim, c->dim, c->audio_layers, c->dec_layers,
                 c->postnet_layers, c->postnet_dim);
    return false;
  }
  return true;
}

bool tts_init(tts_model *m, const tts_config *c, const e2e_mel_config *mel, uint64_t seed) {
  memset(m, 0, sizeof *m);
  if (!tts_config_check(c) || !e2e_mel_config_check(mel)) return false;
  if (mel->n_mels != c->n_mels) {
    nn_set_error("TTS config: %d mels in the network, %d in the front end", c->n_mels, mel->n_mels);
    return false;
  }
  m->cfg = *c;
  m->contrast = 1.0f;
  m->mel = *mel;
  nn_params_init(&m->p);
  nn_rng rng;
  nn_rng_seed(&rng, seed);
  int D = c->dim, rm = c->reduction * c->n_mels;
  nn_embedding_layer emb;
  bool ok = nn_embedding_init(&emb, &m->p, "text.embed", E2E_TTS_SYMBOLS, c->embed, &rng) &&
            nn_linear_init(&m->text_conv1, &m->p, "text.conv1", 5 * c->embed, c->text_dim, true, &rng) &&
            nn_linear_init(&m->text_conv2, &m->p, "text.conv2", 5 * c->text_dim, c->text_dim, true, &rng) &&
            nn_rnn_init(&m->text_rnn, &m->p, "text.rnn", false, c->text_dim, c->text_dim / 2, 1, true, &rng) &&
            nn_linear_init(&m->key, &m->p, "text.key", c->text_dim, D, true, &rng) &&
            nn_linear_init(&m->value, &m->p, "text.value", c->text_dim, D, true, &rng) &&
            nn_linear_init(&m->pre1, &m->p, "audio.pre1", rm, D, true, &rng) &&
            nn_linear_init(&m->pre2, &m->p, "audio.pre2", D, D, true, &rng);
  m->embed = emb.weight;
  char name[48];
  for (int i = 0; ok && i < c->audio_layers; i++) {
    snprintf(name, sizeof name, "audio.hc%d", i);
    ok = nn_linear_init(&m->audio[i], &m->p, name, TTS_TAPS * D, 2 * D, true, &rng);
  }
  ok = ok && nn_linear_init(&m->dec_in, &m->p, "dec.in", 2 * D, D, true, &rng);
  for (int i = 0; ok && i < c->dec_layers; i++) {
    snprintf(name, sizeof name, "dec.hc%d", i);
    ok = nn_linear_init(&m->dec[i], &m->p, name, TTS_TAPS * D, 2 * D, true, &rng);
  }
  ok = ok && nn_linear_init(&m->fc1, &m->p, "dec.fc1", D, D, true, &rng) &&
       nn_linear_init(&m->fc2, &m->p, "dec.fc2", D, D, true, &rng) &&
       nn_linear_init(&m->out, &m->p, "dec.out", D, rm + 1, true, &rng);
  for (int i = 0; ok && i < c->postnet_layers; i++) {
    int in = i == 0 ? c->n_mels : c->postnet_dim, out = i == c->postnet_layers - 1 ? c->n_mels : c->postnet_dim;
    snprintf(name, sizeof name, "post.conv%d", i);
    ok = nn_linear_init(&m->post[i], &m->p, name, 5 * in, out, true, &rng);
  }
  if (ok) {
    m->mel_mean = nn_params_add(&m->p, "mel_mean", nn_tensor_new(NN_F32, 1, (int64_t[]){c->n_mels}), false);
    m->mel_std = nn_params_add(&m->p, "mel_std", nn_tensor_new(NN_F32, 1, (int64_t[]){c->n_mels}), false);
    ok = m->mel_mean && m->mel_std;
  }
  if (!ok) {
    tts_free(m);
    return false;
  }
  nn_fill_(m->mel_std, 1.0f);
  /* highway gates start mostly closed (sigmoid(-3) = 0.05): each layer passes its input on nearly whole,
   * so the previous frames and the context reach the output through twelve layers from the first step
   * (half-open gates halve the signal's variance per layer) */
  for (int i = 0; i < TTS_MAX_LAYERS; i++) {
    nn_linear *l[2] = {i < c->audio_layers ? &m->audio[i] : NULL, i < c->dec_layers ? &m->dec[i] : NULL};
    for (int k = 0; k < 2; k++)
      if (l[k])
        for (int j = 0; j < D; j++) nn_f32(l[k]->bias)[j] = -3.0f;
  }
  /* the stop logit starts at "go on": most steps are not the last */
  nn_f32(m->out.bias)[rm] = -3.0f;
  /* the postnet starts as no change, so it can join a trained decoder without undoing it */
  if (c->postnet_layers) {
    nn_fill_(m->post[c->postnet_layers - 1].weight, 0.0f);
    nn_fill_(m->post[c->postnet_layers - 1].bias, 0.0f);
  }
  m->model_id = e2e_params_hash(&m->p);
  return true;
}

void tts_free(tts_model *m) {
  nn_params_free(&m->p);
  memset(m, 0, sizeof *m);
}

/* out[:, t] = x[:, t - s] along axis 1 of [N, S, C], zeros where t - s falls outside. */
static nn_tensor *shifted(nn_tensor *x, int64_t s) {
  if (!s || !x) return x;
  int64_t S = x->shape[1];
  int64_t pads[6] = {0, 0, s > 0 ? s : 0, s < 0 ? -s : 0, 0, 0};
  nn_tensor *p = nn_pad(x, pads, 0.0f);
  return s > 0 ? nn_slice(p, 1, 0, S, 1) : nn_slice(p, 1, -s, -s + S, 1);
}

/* A centred 5-tap convolution over time as one linear layer on five shifted copies. */
static nn_tensor *conv5(const nn_linear *l, nn_tensor *x) {
  nn_tensor *taps[5] = {shifted(x, 2), shifted(x, 1), x, shifted(x, -1), shifted(x, -2)};
  return nn_linear_forward(l, nn_concat(taps, 5, 2));
}

/* A causal highway layer: [x(t - 2d), x(t - d), x(t)] -> gate g and candidate c; x + g (c - x). */
static nn_tensor *highway(const nn_linear *l, nn_tensor *x, int d) {
  nn_tensor *taps[TTS_TAPS] = {shifted(x, 2 * d), shifted(x, d), x};
  nn_tensor *h = nn_linear_forward(l, nn_concat(taps, TTS_TAPS, 2)), *gc[2];
  if (!h || !nn_split(h, 2, 2, gc)) return NULL;
  return nn_add(x, nn_mul(nn_sigmoid(gc[0]), nn_sub(gc[1], x)));
}

/* [N, L, 1] (or [N, 1, L] when across) with 1 inside each length, 0 past it. */
static nn_tensor *length_mask(const int64_t *len, int64_t N, int64_t L, bool across) {
  nn_tensor *m = across ? nn_zeros(NN_F32, 3, (int64_t[]){N, 1, L}) : nn_zeros(NN_F32, 3, (int64_t[]){N, L, 1});
  if (!m) return NULL;
  float *d = nn_f32(m);
  for (int64_t n = 0; n < N; n++)
    for (int64_t l = 0; l < L && l < len[n]; l++) d[n * L + l] = 1.0f;
  return m;
}

void tts_encode_text(const tts_model *m, nn_tensor *text, const int64_t *text_len, nn_tensor **keys,
                     nn_tensor **values) {
  int64_t N = text->shape[0], L = text->shape[1];
  nn_tensor *mask = length_mask(text_len, N, L, false);
  nn_tensor *h = nn_embedding(m->embed, text);
  h = nn_mul(nn_relu(conv5(&m->text_conv1, h)), mask);
  h = nn_mul(nn_relu(conv5(&m->text_conv2, h)), mask);
  nn_tensor *len = nn_empty(NN_I64, 1, (int64_t[]){N});
  if (len)
    for (int64_t n = 0; n < N; n++) ((int64_t *)nn_data(len))[n] = text_len[n];
  h = h ? nn_rnn_forward(&m->text_rnn, nn_contiguous(nn_permute(h, (int[]){1, 0, 2})), len) : NULL;
  h = h ? nn_contiguous(nn_permute(h, (int[]){1, 0, 2})) : NULL; /* [N, L, text_dim] */
  *keys = nn_linear_forward(&m->key, h);
  *values = nn_linear_forward(&m->value, h);
}

nn_tensor *tts_decode(const tts_model *m, nn_tensor *prev, nn_tensor *keys, nn_tensor *values,
                      const int64_t *text_len, bool training, nn_rng *rng, nn_tensor **attention) {
  const tts_config *c = &m->cfg;
  if (!prev || !keys || !values) return NULL;
  int64_t N = keys->shape[0], L = keys->shape[1];
  nn_tensor *q = nn_dropout(nn_relu(nn_linear_forward(&m->pre1, prev)), c->prenet_dropout, training, rng);
  q = nn_dropout(nn_relu(nn_linear_forward(&m->pre2, q)), c->prenet_dropout, training, rng);
  for (int i = 0; i < c->audio_layers; i++) q = highway(&m->audio[i], q, tts_dilation(i));
  nn_tensor *scores = nn_mul_scalar(nn_matmul(q, nn_transpose(keys, 1, 2)), 1.0f / sqrtf((float)c->dim));
  scores = nn_masked_fill(scores, length_mask(text_len, N, L, true), -1e9f);
  nn_tensor *a = nn_softmax(scores, 2);
  if (attention) *attention = a;
  nn_tensor *ctx = nn_matmul(a, values);
  nn_tensor *h = nn_linear_forward(&m->dec_in, nn_concat((nn_tensor *[]){ctx, q}, 2, 2));
  for (int i = 0; i < c->dec_layers; i++) h = highway(&m->dec[i], h, tts_dilation(i));
  h = nn_relu(nn_linear_forward(&m->fc1, h));
  h = nn_relu(nn_linear_forward(&m->fc2, h));
  return nn_linear_forward(&m->out, h);
}

nn_tensor *tts_postnet(const tts_model *m, nn_tensor *x, const int64_t *frame_len) {
  const tts_config *c = &m->cfg;
  if (!x || !c->postnet_layers) return x;
  nn_tensor *mask = length_mask(frame_len, x->shape[0], x->shape[1], false);
  nn_tensor *h = nn_mul(x, mask);
  for (int i = 0; i < c->postnet_layers; i++) {
    h = conv5(&m->post[i], h);
    if (i < c->postnet_layers - 1) h = nn_mul(nn_tanh(h), mask);
  }
  return nn_add(x, h);
}

char *tts_config_json(const tts_config *c) {
  return g_strdup_printf("{\"n_mels\": %d, \"reduction\": %d, \"embed\": %d, \"text_dim\": %d, \"dim\": %d, "
                         "\"audio_layers\": %d, \"dec_layers\": %d, \"prenet_dropout\": %.9g, \"postnet_layers\": %d, "
                         "\"postnet_dim\": %d, \"symbols\": %d}",
                         c->n_mels, c->reduction, c->embed, c->text_dim, c->dim, c->audio_layers, c->dec_layers,
                         c->prenet_dropout, c->postnet_layers, c->postnet_dim, E2E_TTS_SYMBOLS);
}

char *tts_mel_json(const e2e_mel_config *c) {
  return g_strdup_printf("{\"sample_rate\": %d, \"n_fft\": %d, \"win_length\": %d, \"hop\": %d, \"n_mels\": %d, "
                         "\"f_min\": %.9g, \"f_max\": %.9g, \"log_floor\": %.9g, \"normalize\": \"per band: mel_mean, mel_std\"}",
                         c->sample_rate, c->n_fft, c->win_length, c->hop, c->n_mels, c->f_min, c->f_max,
                         E2E_LOG_MEL_FLOOR);
}

bool tts_save(tts_model *m, const char *path, const nn_kv *extra, int n_extra) {
  m->model_id = e2e_params_hash(&m->p);
  char *cfg = tts_config_json(&m->cfg), *mel = tts_mel_json(&m->mel);
  char id[16], contrast[32];
  snprintf(id, sizeof id, "%08x", m->model_id);
  snprintf(contrast, sizeof contrast, "%g", m->contrast); /* set from a short decimal: %g gives it back */
  bool ok = e2e_save_params(path, &m->p,
                            (nn_kv[]){{"architecture", TTS_ARCH}, {"config", cfg}, {"mel", mel}, {"model_id", id},
                                      {"contrast", contrast}},
                            5, extra, n_extra);
  g_free(cfg);
  g_free(mel);
  return ok;
}

bool tts_init_from_meta(tts_model *m, const nn_st_file *f, const char *path) {
  memset(m, 0, sizeof *m);
  const char *arch = nn_st_meta(f, "architecture");
  if (!arch || strcmp(arch, TTS_ARCH)) {
    nn_set_error("%s: not a speech synthesiser (architecture %s, expected %s)", path, arch ? arch : "missing", TTS_ARCH);
    return false;
  }
  const char *json = nn_st_meta(f, "config");
  tts_config c = {0};
  JsonParser *p = json_parser_new();
  bool ok = json && nn_json_nesting_ok(json, strlen(json), 8) && json_parser_load_from_data(p, json, -1, NULL) &&
            JSON_NODE_HOLDS_OBJECT(json_parser_get_root(p));
  if (!ok) {
    nn_set_error("%s: metadata 'config' is missing or not a JSON object", path);
  } else {
    JsonObject *o = json_node_get_object(json_parser_get_root(p));
    c.n_mels = (int)json_object_get_int_member_with_default(o, "n_mels", 0);
    c.reduction = (int)json_object_get_int_member_with_default(o, "reduction", 0);
    c.embed = (int)json_object_get_int_member_with_default(o, "embed", 0);
    c.text_dim = (int)json_object_get_int_member_with_default(o, "text_dim", 0);
    c.dim = (int)json_object_get_int_member_with_default(o, "dim", 0);
    c.audio_layers = (int)json_object_get_int_member_with_default(o, "audio_layers", 0);
    c.dec_layers = (int)json_object_get_int_member_with_default(o, "dec_layers", 0);
    c.prenet_dropout = (float)json_object_get_double_member_with_default(o, "prenet_dropout", -1.0);
    c.postnet_layers = (int)json_object_get_int_member_with_default(o, "postnet_layers", 0);
    c.postnet_dim = (int)json_object_get_int_member_with_default(o, "postnet_dim", 0);
    if (json_object_get_int_member_with_default(o, "symbols", 0) != E2E_TTS_SYMBOLS) {
      nn_set_error("%s: the model's character set is not this build's (%d symbols)", path, E2E_TTS_SYMBOLS);
      ok = false;
    }
  }
  g_object_unref(p);
  e2e_mel_config mel;
  ok = ok && asr_mel_from_json(nn_st_meta(f, "mel"), &mel, path);
  if (ok && !tts_config_check(&c)) {
    char msg[256];
    snprintf(msg, sizeof msg, "%s", nn_last_error());
    nn_set_error("%s: %s", path, msg);
    ok = false;
  }
  return ok && tts_init(m, &c, &mel, 0);
}

bool tts_load_file(tts_model *m, const nn_st_file *f, const char *path) {
  if (!tts_init_from_meta(m, f, path)) return false;
  if (!nn_st_load_params(f, &m->p, "", true)) {
    char msg[256];
    snprintf(msg, sizeof msg, "%s", nn_last_error());
    tts_free(m);
    nn_set_error("%s: %s", path, msg);
    return false;
  }
  /* files from before the setting existed synthesise as predicted */
  const char *contrast = nn_st_meta(f, "contrast");
  char *end = NULL;
  m->contrast = contrast ? strtof(contrast, &end) : 1.0f;
  if (contrast && (end == contrast || *end || !(m->contrast >= TTS_CONTRAST_MIN && m->contrast <= TTS_CONTRAST_MAX))) {
    tts_free(m);
    nn_set_error("%s: metadata 'contrast' is '%.32s', not a number in [%g, %g]", path, contrast, TTS_CONTRAST_MIN,
                 TTS_CONTRAST_MAX);
    return false;
  }
  const float *mean = nn_f32(m->mel_mean), *sd = nn_f32(m->mel_std);
  for (int i = 0; i < m->cfg.n_mels; i++)
    if (!(sd[i] > 0.0f) || !isfinite(sd[i]) || !isfinite(mean[i])) {
      tts_free(m);
      nn_set_error("%s: mel statistics are not usable (bin %d)", path, i);
      return false;
    }
  m->model_id = e2e_params_hash(&m->p);
  return true;
}

bool tts_load(tts_model *m, const char *path) {
  nn_st_file *f = nn_st_open(path);
  if (!f) return false;
  bool ok = tts_load_file(m, f, path);
  nn_st_close(f);
  return ok;
}
