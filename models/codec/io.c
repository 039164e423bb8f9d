/* Save and load. A file is hostile input: everything is checked before a model is replaced by it. */
#include <json-glib/json-glib.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"
#include "task.h"

/* Files made before lambdas were stored used CompressAI's bmshj2018 qualities 2..6. */
static const float LEGACY_LAMBDA[CODEC_MAX_QUALITY] = {0.0035f, 0.0067f, 0.0130f, 0.0250f, 0.0483f};

/* Tables from a file are checked as hostile input: the coder relies on them. */
static bool tables_valid(const codec_tables *t, const char *path) {
  for (int i = 0; i < CODEC_NUM_SCALES; i++) {
    if (!(t->scales[i] >= CODEC_SCALE_MIN * 0.999f && t->scales[i] < 1e4f) ||
        (i && !(t->scales[i] > t->scales[i - 1])) || t->len[i] < 2 || t->len[i] > t->max_len ||
        t->offset[i] < 0 || t->offset[i] > t->len[i] - 2) {
      nn_set_error("%s: entropy table %d is malformed", path, i);
      return false;
    }
    const int32_t *cdf = t->cdf + (size_t)i * (size_t)(t->max_len + 1);
    if (cdf[0] != 0 || cdf[t->len[i]] != (int32_t)RANS_TOTAL) {
      nn_set_error("%s: entropy table %d does not span [0, 2^16]", path, i);
      return false;
    }
    for (int k = 0; k < t->len[i]; k++)
      if (cdf[k + 1] <= cdf[k]) {
        nn_set_error("%s: entropy table %d has a zero-probability symbol at %d", path, i, k);
        return false;
      }
  }
  return true;
}

static char *config_json(const codec_config *c) {
  GString *s = g_string_new(NULL);
  g_string_append_printf(s, "{\"n\": %d, \"m\": %d, \"stride\": %d, \"qualities\": %d, \"lambdas\": [", c->n, c->m,
                         CODEC_STRIDE, CODEC_MAX_QUALITY);
  for (int q = 1; q <= CODEC_MAX_QUALITY; q++) g_string_append_printf(s, "%s%.9g", q > 1 ? ", " : "", (double)codec_lambda(c, q));
  g_string_append_printf(s, "], \"mean_scale\": %s, \"level_mod\": %s, \"context\": %d", c->mean_scale ? "true" : "false",
                         c->level_mod ? "true" : "false", c->context);
  if (c->anchor_context) g_string_append_printf(s, ", \"anchor_context\": %d", c->anchor_context); /* files without one keep their text */
  g_string_append(s, "}");
  return g_string_free(s, FALSE);
}

bool codec_save(codec_model *c, const char *path, const nn_kv *extra, int n_extra) {
  uint32_t hash = e2e_params_hash(&c->p);
  if (c->model_id != hash) c->model_id = hash; /* after training; a shared model's weights never change */
  char *cfg = config_json(&c->cfg);
  char id[16];
  snprintf(id, sizeof id, "%08x", hash);
  bool ok = e2e_save_params(path, &c->p, (nn_kv[]){{"architecture", CODEC_ARCH}, {"config", cfg}, {"model_id", id}}, 3,
                            extra, n_extra);
  g_free(cfg);
  return ok;
}

static bool parse_config(const char *json, codec_config *c, const char *path) {
  JsonParser *p = json_parser_new();
  bool ok = false;
  if (!json || !json_parser_load_from_data(p, json, -1, NULL) || !JSON_NODE_HOLDS_OBJECT(json_parser_get_root(p))) {
    nn_set_error("%s: metadata 'config' is missing or not a JSON object", path);
  } else {
    JsonObject *o = json_node_get_object(json_parser_get_root(p));
    c->n = (int)json_object_get_int_member_with_default(o, "n", 0);
    c->m = (int)json_object_get_int_member_with_default(o, "m", 0);
    memcpy(c->lambda, LEGACY_LAMBDA, sizeof c->lambda);
    JsonArray *lam = json_object_has_member(o, "lambdas") ? json_object_get_array_member(o, "lambdas") : NULL;
    if (lam && json_array_get_length(lam) == CODEC_MAX_QUALITY)
      for (int q = 0; q < CODEC_MAX_QUALITY; q++) c->lambda[q] = (float)json_array_get_double_element(lam, q);
    c->mean_scale = json_object_get_boolean_member_with_default(o, "mean_scale", FALSE);
    c->level_mod = json_object_get_boolean_member_with_default(o, "level_mod", FALSE);
    c->context = (int)json_object_get_int_member_with_default(o, "context", 0);
    c->anchor_context = (int)json_object_get_int_member_with_default(o, "anchor_context", 0);
    if (json_object_get_int_member_with_default(o, "qualities", 0) != CODEC_MAX_QUALITY) {
      nn_set_error("%s: the model must have %d quality levels", path, CODEC_MAX_QUALITY);
    } else if (json_object_get_int_member_with_default(o, "stride", CODEC_STRIDE) != CODEC_STRIDE) {
      nn_set_error("%s: stride other than %d is not supported", path, CODEC_STRIDE);
    } else if (!codec_config_valid(c)) {
      char msg[256];
      snprintf(msg, sizeof msg, "%s: %s", path, nn_last_error());
      nn_set_error("%s", msg);
    } else {
      ok = true;
    }
  }
  g_object_unref(p);
  return ok;
}

bool codec_load_file(codec_model *c, const nn_st_file *f, const char *path) {
  const char *arch = nn_st_meta(f, "architecture");
  codec_config cfg;
  codec_model tmp;
  bool ok = false;
  if (!arch || strcmp(arch, CODEC_ARCH) != 0) {
    nn_set_error("%s: not an e2ecodec model (architecture '%s', expected '%s')", path, arch ? arch : "none", CODEC_ARCH);
  } else if (parse_config(nn_st_meta(f, "config"), &cfg, path) && codec_init(&tmp, &cfg, 0)) {
    ok = nn_st_load_params(f, &tmp.p, NULL, true);
    if (ok) {
      codec_tables_from_buffers(&tmp);
      ok = tables_valid(&tmp.tables, path);
    }
    if (ok) {
      for (int i = 0; i < tmp.p.n && ok; i++) {
        if (tmp.p.t[i]->dtype != NN_F32) continue;
        const float *d = nn_f32(tmp.p.t[i]);
        for (int64_t k = 0, n = nn_numel(tmp.p.t[i]); k < n; k++)
          if (!isfinite(d[k])) {
            nn_set_error("%s: tensor '%s' holds a non-finite value", path, tmp.p.names[i]);
            ok = false;
            break;
          }
      }
    }
    if (ok) {
      tmp.model_id = e2e_params_hash(&tmp.p);
      codec_free(c);
      *c = tmp;
    } else {
      codec_free(&tmp);
    }
  }
  return ok;
}

bool codec_load(codec_model *c, const char *path) {
  nn_st_file *f = nn_st_open(path);
  if (!f) return false;
  bool ok = codec_load_file(c, f, path);
  nn_st_close(f);
  return ok;
}

