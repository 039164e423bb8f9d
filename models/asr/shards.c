/* Feature shards: quantised log-mel frames and transcripts, written by the data recipe and read by training
 * and evaluation. A shard is hostile input like any file: sizes are checked before use. */
#include <stdlib.h>
#include <string.h>

#include <glib.h>

#include "e2e/asr.h"

struct e2e_asr_shard_writer {
  int n_mels;
  GByteArray *feats, *text;
  GArray *frames, *text_len, *group; /* int32 */
  GPtrArray *groups;
};

e2e_asr_shard_writer *e2e_asr_shard_writer_new(int n_mels) {
  e2e_asr_shard_writer *w = g_new0(e2e_asr_shard_writer, 1);
  w->n_mels = n_mels;
  w->feats = g_byte_array_new();
  w->text = g_byte_array_new();
  w->frames = g_array_new(FALSE, FALSE, sizeof(int32_t));
  w->text_len = g_array_new(FALSE, FALSE, sizeof(int32_t));
  w->group = g_array_new(FALSE, FALSE, sizeof(int32_t));
  w->groups = g_ptr_array_new_with_free_func(g_free);
  return w;
}

void e2e_asr_shard_writer_free(e2e_asr_shard_writer *w) {
  if (!w) return;
  g_byte_array_unref(w->feats);
  g_byte_array_unref(w->text);
  g_array_unref(w->frames);
  g_array_unref(w->text_len);
  g_array_unref(w->group);
  g_ptr_array_unref(w->groups);
  g_free(w);
}

int e2e_asr_shard_count(const e2e_asr_shard_writer *w) { return (int)w->frames->len; }

bool e2e_asr_shard_add(e2e_asr_shard_writer *w, const float *feats, int64_t frames, const char *text,
                       const char *group) {
  size_t len = strlen(text);
  char *norm = g_malloc(len + 2);
  size_t n = e2e_asr_normalize_text(text, norm, len + 2);
  if (n == 0 || frames < 1 || frames > INT32_MAX / 2) {
    nn_set_error("shard: utterance \"%.40s\" has %s", text, n == 0 ? "no letters" : "no frames");
    g_free(norm);
    return false;
  }
  int32_t gi = -1;
  for (guint i = 0; i < w->groups->len; i++)
    if (!strcmp(g_ptr_array_index(w->groups, i), group)) gi = (int32_t)i;
  if (gi < 0) {
    gi = (int32_t)w->groups->len;
    g_ptr_array_add(w->groups, g_strdup(group));
  }
  for (size_t i = 0; i < n; i++) {
    uint8_t l = (uint8_t)e2e_asr_label(norm[i]);
    g_byte_array_append(w->text, &l, 1);
  }
  size_t old = w->feats->len, cnt = (size_t)frames * w->n_mels;
  g_byte_array_set_size(w->feats, (guint)(old + cnt));
  for (size_t i = 0; i < cnt; i++) w->feats->data[old + i] = e2e_asr_feat_quantise(feats[i]);
  int32_t f = (int32_t)frames, tl = (int32_t)n;
  g_array_append_val(w->frames, f);
  g_array_append_val(w->text_len, tl);
  g_array_append_val(w->group, gi);
  g_free(norm);
  return true;
}

static nn_tensor *tensor_of(nn_dtype dt, int ndim, const int64_t *shape, const void *data, size_t bytes) {
  nn_tensor *t = nn_empty(dt, ndim, shape);
  if (t && bytes) memcpy(nn_data(t), data, bytes);
  return t;
}

bool e2e_asr_shard_save(e2e_asr_shard_writer *w, const char *path, const char *mel_json) {
  int64_t n = w->frames->len, frames = n ? (int64_t)w->feats->len / w->n_mels : 0;
  nn_params p;
  nn_params_init(&p);
  nn_params_add(&p, "feats", tensor_of(NN_U8, 2, (int64_t[]){frames, w->n_mels}, w->feats->data, w->feats->len), false);
  nn_params_add(&p, "frames", tensor_of(NN_I32, 1, (int64_t[]){n}, w->frames->data, n * 4), false);
  nn_params_add(&p, "text", tensor_of(NN_U8, 1, (int64_t[]){w->text->len}, w->text->data, w->text->len), false);
  nn_params_add(&p, "text_len", tensor_of(NN_I32, 1, (int64_t[]){n}, w->text_len->data, n * 4), false);
  nn_params_add(&p, "group", tensor_of(NN_I32, 1, (int64_t[]){n}, w->group->data, n * 4), false);
  GString *groups = g_string_new(NULL);
  for (guint i = 0; i < w->groups->len; i++)
    g_string_append_printf(groups, "%s%s", i ? "," : "", (char *)g_ptr_array_index(w->groups, i));
  nn_kv meta[] = {{"format", "e2e-asr-shard-v1"}, {"mel", mel_json}, {"groups", groups->str}};
  bool ok = nn_safetensors_save(path, &p, meta, 3);
  g_string_free(groups, TRUE);
  nn_params_free(&p);
  return ok;
}

int e2e_asr_set_group(const e2e_asr_set *set, const char *name) {
  for (int i = 0; i < set->n_groups; i++)
    if (!strcmp(set->groups[i], name)) return i;
  return -1;
}

static const nn_tensor *need(const nn_st_file *f, nn_tensor **keep, const char *name, nn_dtype dt, int ndim,
                             const char *path) {
  nn_tensor *t = nn_st_get(f, name);
  if (!t || t->dtype != dt || t->ndim != ndim) {
    nn_set_error("%s: shard tensor \"%s\" missing or of the wrong type", path, name);
    if (t) nn_tensor_free(t);
    return NULL;
  }
  *keep = t;
  return t;
}

bool e2e_asr_set_load(e2e_asr_set *set, const char *path) {
  nn_st_file *f = nn_st_open(path);
  if (!f) return false;
  const char *fmt = nn_st_meta(f, "format");
  if (!fmt || strcmp(fmt, "e2e-asr-shard-v1")) {
    nn_set_error("%s: not an ASR feature shard (metadata format is %s)", path, fmt ? fmt : "missing");
    nn_st_close(f);
    return false;
  }
  nn_tensor *t[5] = {0};
  bool ok = need(f, &t[0], "feats", NN_U8, 2, path) && need(f, &t[1], "frames", NN_I32, 1, path) &&
            need(f, &t[2], "text", NN_U8, 1, path) && need(f, &t[3], "text_len", NN_I32, 1, path) &&
            need(f, &t[4], "group", NN_I32, 1, path);
  gchar **names = ok ? g_strsplit(nn_st_meta(f, "groups") ? nn_st_meta(f, "groups") : "", ",", -1) : NULL;
  int64_t n = ok ? t[1]->shape[0] : 0, M = ok ? t[0]->shape[1] : 0;
  if (ok && (t[3]->shape[0] != n || t[4]->shape[0] != n || (set->n && set->n_mels != M) || M < 1)) {
    nn_set_error("%s: shard tensors disagree in size (or in mels with the shards before it)", path);
    ok = false;
  }
  /* every count must add up before anything is appended */
  int64_t frames = 0, chars = 0, n_names = ok ? (int64_t)g_strv_length(names) : 0;
  const int32_t *fr = ok ? nn_data(t[1]) : NULL, *tl = ok ? nn_data(t[3]) : NULL, *gr = ok ? nn_data(t[4]) : NULL;
  const uint8_t *tx = ok ? nn_data(t[2]) : NULL;
  for (int64_t i = 0; ok && i < n; i++) {
    if (fr[i] < 1 || tl[i] < 1 || gr[i] < 0 || gr[i] >= n_names) {
      nn_set_error("%s: utterance %lld has a bad frame count, transcript length or group", path, (long long)i);
      ok = false;
    }
    frames += ok ? fr[i] : 0;
    chars += ok ? tl[i] : 0;
  }
  if (ok && (frames != t[0]->shape[0] || chars != t[2]->shape[0])) {
    nn_set_error("%s: the utterances' frames or characters do not add up to the tensors' sizes", path);
    ok = false;
  }
  for (int64_t i = 0; ok && i < chars; i++)
    if (tx[i] < 1 || tx[i] >= E2E_ASR_CLASSES) {
      nn_set_error("%s: transcript label %d outside 1..%d", path, tx[i], E2E_ASR_CLASSES - 1);
      ok = false;
    }
  if (ok) {
    int64_t f0 = set->n ? set->feat_off[set->n] : 0, c0 = set->n ? set->text_off[set->n] : 0;
    set->n_mels = (int)M;
    set->feat_off = realloc(set->feat_off, sizeof(int64_t) * (size_t)(set->n + n + 1));
    set->text_off = realloc(set->text_off, sizeof(int64_t) * (size_t)(set->n + n + 1));
    set->group = realloc(set->group, sizeof(int) * (size_t)(set->n + n));
    set->feats = realloc(set->feats, (size_t)(f0 + frames) * M);
    set->text = realloc(set->text, (size_t)(c0 + chars));
    int *map = malloc(sizeof(int) * (size_t)(n_names + 1));
    for (int64_t g = 0; g < n_names; g++) {
      int gi = e2e_asr_set_group(set, names[g]);
      if (gi < 0) {
        set->groups = realloc(set->groups, sizeof(char *) * (size_t)(set->n_groups + 1));
        set->groups[set->n_groups] = g_strdup(names[g]);
        gi = set->n_groups++;
      }
      map[g] = gi;
    }
    memcpy(set->feats + f0 * M, nn_data(t[0]), (size_t)frames * M);
    memcpy(set->text + c0, tx, (size_t)chars);
    set->feat_off[0] = 0;
    set->text_off[0] = 0;
    for (int64_t i = 0; i < n; i++) {
      set->feat_off[set->n + i + 1] = set->feat_off[set->n + i] + fr[i];
      set->text_off[set->n + i + 1] = set->text_off[set->n + i] + tl[i];
      set->group[set->n + i] = map[gr[i]];
    }
    set->n += (int)n;
    free(map);
  }
  g_strfreev(names);
  for (int i = 0; i < 5; i++)
    if (t[i]) nn_tensor_free(t[i]);
  nn_st_close(f);
  return ok;
}

void e2e_asr_set_free(e2e_asr_set *set) {
  free(set->feat_off);
  free(set->text_off);
  free(set->group);
  free(set->feats);
  free(set->text);
  for (int i = 0; i < set->n_groups; i++) g_free(set->groups[i]);
  free(set->groups);
  memset(set, 0, sizeof *set);
}
