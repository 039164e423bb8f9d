/* e2e tts features / e2e train tts: log-mel shards of the teacher voice, and training the synthesiser in
 * resumable stages (each stage continues from the checkpoint with its optimizer state).
 *
 * A shard is a safetensors file: "mel" f32 [frames, n_mels] (log-mel, silence trimmed), "frames" i32 [n],
 * "text" u8 [chars] (labels, back to back, without the end mark), "text_len" i32 [n]; the front end's
 * configuration in the metadata "mel". */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <glib.h>
#include <json-glib/json-glib.h>

#include "../models/asr/internal.h"
#include "../models/tts/internal.h"
#include "e2e.h"
#include "plot.h"

/* ---------------------------------------------------------------- shards */

typedef struct {
  int n, n_mels;
  int64_t *mel_off, *text_off; /* [n + 1] */
  float *mel;
  uint8_t *text;
} tts_set;

static void set_free(tts_set *s) {
  free(s->mel_off), free(s->text_off), free(s->mel), free(s->text);
  memset(s, 0, sizeof *s);
}

static bool set_load(tts_set *s, const char *path) {
  nn_st_file *f = nn_st_open(path);
  if (!f) return false;
  nn_tensor *mel = nn_st_get(f, "mel"), *fr = nn_st_get(f, "frames"), *tx = nn_st_get(f, "text"),
            *tl = nn_st_get(f, "text_len");
  nn_st_close(f);
  bool ok = mel && fr && tx && tl && mel->dtype == NN_F32 && mel->ndim == 2 && fr->dtype == NN_I32 &&
            tl->dtype == NN_I32 && tx->dtype == NN_U8 && nn_numel(fr) == nn_numel(tl) &&
            (s->n == 0 || s->n_mels == mel->shape[1]);
  if (ok) {
    int k = (int)nn_numel(fr), base = s->n;
    const int32_t *frd = nn_data(fr), *tld = nn_data(tl);
    int64_t mf = 0, mt = 0;
    for (int i = 0; i < k; i++) {
      ok &= frd[i] > 0 && tld[i] > 0;
      mf += frd[i], mt += tld[i];
    }
    ok &= mf == mel->shape[0] && mt == nn_numel(tx);
    if (ok) {
      int64_t f0 = s->n ? s->mel_off[s->n] : 0, t0 = s->n ? s->text_off[s->n] : 0;
      s->n_mels = (int)mel->shape[1];
      s->mel_off = realloc(s->mel_off, sizeof(int64_t) * (size_t)(s->n + k + 1));
      s->text_off = realloc(s->text_off, sizeof(int64_t) * (size_t)(s->n + k + 1));
      s->mel = realloc(s->mel, sizeof(float) * (size_t)(f0 + mf) * s->n_mels);
      s->text = realloc(s->text, (size_t)(t0 + mt));
      memcpy(s->mel + f0 * s->n_mels, nn_data(mel), sizeof(float) * (size_t)mf * s->n_mels);
      memcpy(s->text + t0, nn_data(tx), (size_t)mt);
      s->mel_off[0] = 0, s->text_off[0] = 0;
      for (int i = 0; i < k; i++) {
        s->mel_off[base + i + 1] = s->mel_off[base + i] + frd[i];
        s->text_off[base + i + 1] = s->text_off[base + i] + tld[i];
      }
      s->n += k;
    }
  }
  if (!ok) nn_set_error("%s: not a synthesiser shard (mel, frames, text, text_len) or not matching the others", path);
  nn_tensor_free(mel), nn_tensor_free(fr), nn_tensor_free(tx), nn_tensor_free(tl);
  return ok;
}

static bool load_sets(tts_set *s, const char *list) {
  char **paths = g_strsplit(list, ",", -1);
  bool ok = true;
  for (char **p = paths; ok && *p; p++)
    if (**p && !set_load(s, *p)) {
      fprintf(stderr, "e2e train tts: %s\n", nn_last_error());
      ok = false;
    }
  g_strfreev(paths);
  return ok;
}

/* Frames kept: from a little before the first to a little after the last frame within 50 dB of the
 * loudest (the teacher's leading and trailing silence says nothing). */
static void trim_silence(const float *f, int64_t T, int M, int64_t *first, int64_t *last) {
  float peak = -1e30f;
  float *e = malloc(sizeof(float) * (size_t)(T > 0 ? T : 1));
  for (int64_t t = 0; t < T; t++) {
    float mx = -1e30f;
    for (int j = 0; j < M; j++) mx = fmaxf(mx, f[t * M + j]);
    e[t] = mx;
    peak = fmaxf(peak, mx);
  }
  float floor_ = peak - 50.0f / 10.0f * (float)M_LN10; /* 50 dB in natural-log power */
  int64_t a = 0, b = T - 1;
  while (a < T && e[a] < floor_) a++;
  while (b > a && e[b] < floor_) b--;
  free(e);
  *first = a > 3 ? a - 3 : 0;
  *last = b + 4 < T ? b + 4 : T - 1;
}

int e2e_tts_features(int argc, char **argv) {
  if (argc != 2) {
    fprintf(stderr, "usage: e2e tts features LIST.tsv OUT.safetensors\n"
                    "  LIST: path<TAB>id<TAB>normalised text per line (models/tts/make_data.py writes it)\n");
    return 2;
  }
  FILE *in = fopen(argv[0], "r");
  if (!in) {
    fprintf(stderr, "e2e tts features: %s: %s\n", argv[0], strerror(errno));
    return 1;
  }
  e2e_mel_config mel = tts_mel_default();
  e2e_audio_fe *fe = e2e_audio_fe_new(&mel);
  GArray *mels = g_array_new(FALSE, FALSE, sizeof(float)), *text = g_array_new(FALSE, FALSE, 1);
  GArray *frames = g_array_new(FALSE, FALSE, sizeof(int32_t)), *tlen = g_array_new(FALSE, FALSE, sizeof(int32_t));
  char line[16384];
  int lineno = 0, skipped = 0;
  while (fgets(line, sizeof line, in)) {
    lineno++;
    line[strcspn(line, "\r\n")] = '\0';
    char *path = line, *id = strchr(path, '\t'), *txt = id ? strchr(id + 1, '\t') : NULL;
    if (!id || !txt) {
      fprintf(stderr, "e2e tts features: %s:%d: expected path<TAB>id<TAB>text\n", argv[0], lineno);
      skipped++;
      continue;
    }
    *id++ = '\0';
    *txt++ = '\0';
    int32_t n_labels = 0;
    for (const char *c = txt; *c; c++) n_labels += e2e_tts_label((unsigned char)*c) >= 0;
    float *y = NULL;
    int64_t ny = 0;
    if (n_labels == 0 || !e2e_sound_read_at(path, mel.sample_rate, &y, &ny)) {
      fprintf(stderr, "e2e tts features: %s: %s\n", path, n_labels ? nn_last_error() : "no text");
      skipped++;
      continue;
    }
    int64_t T = e2e_audio_frames(&mel, ny);
    if (T < 8) {
      free(y);
      skipped++;
      continue;
    }
    float *f = malloc(sizeof(float) * (size_t)T * mel.n_mels);
    e2e_log_mel(fe, y, ny, f);
    int64_t a, b;
    trim_silence(f, T, mel.n_mels, &a, &b);
    g_array_append_vals(mels, f + a * mel.n_mels, (guint)((b - a + 1) * mel.n_mels));
    int32_t nf = (int32_t)(b - a + 1);
    g_array_append_val(frames, nf);
    for (const char *c = txt; *c; c++) {
      int l = e2e_tts_label((unsigned char)*c);
      if (l >= 0) {
        uint8_t u = (uint8_t)l;
        g_array_append_val(text, u);
      }
    }
    g_array_append_val(tlen, n_labels);
    free(f);
    free(y);
  }
  fclose(in);
  nn_params p;
  nn_params_init(&p);
  int64_t n = frames->len, nf = mels->len / mel.n_mels;
  nn_params_add(&p, "mel", nn_tensor_from_data(NN_F32, 2, (int64_t[]){nf, mel.n_mels}, mels->data), false);
  nn_params_add(&p, "frames", nn_tensor_from_data(NN_I32, 1, (int64_t[]){n}, frames->data), false);
  nn_params_add(&p, "text", nn_tensor_from_data(NN_U8, 1, (int64_t[]){(int64_t)text->len}, text->data), false);
  nn_params_add(&p, "text_len", nn_tensor_from_data(NN_I32, 1, (int64_t[]){n}, tlen->data), false);
  char *mj = tts_mel_json(&mel);
  bool ok = n > 0 && nn_safetensors_save(argv[1], &p, (nn_kv[]){{"mel", mj}}, 1);
  printf("%s: %lld utterances, %.2f h, %d skipped\n", argv[1], (long long)n, nf * (double)mel.hop / mel.sample_rate / 3600,
         skipped);
  if (!ok) fprintf(stderr, "e2e tts features: %s\n", n ? nn_last_error() : "nothing to write");
  g_free(mj);
  nn_params_free(&p);
  g_array_free(mels, TRUE), g_array_free(text, TRUE), g_array_free(frames, TRUE), g_array_free(tlen, TRUE);
  e2e_audio_fe_free(fe);
  return ok ? 0 : 1;
}

/* ---------------------------------------------------------------- batches and loss */

typedef struct {
  int n;
  int64_t L, S;              /* longest text (with its end mark), most steps */
  int64_t text_len[64], steps[64];
  nn_tensor *text;           /* [n, L] i64 */
  nn_tensor *target, *prev;  /* [n, S, r * M] normalised */
  nn_tensor *step_mask;      /* [n, S, 1] */
  nn_tensor *stop;           /* [n, S, 1]: 1 from the last step on */
  nn_tensor *guide;          /* [n, S, L]: guided-attention weights, 0 outside the valid area */
  double valid_steps;
} tts_batch;

#define GUIDE_WIDTH 0.2

static int64_t utt_frames(const tts_set *s, int u) { return s->mel_off[u + 1] - s->mel_off[u]; }

static void batch_make(tts_batch *b, const tts_set *set, const int *idx, int n, const tts_model *m) {
  const tts_config *c = &m->cfg;
  int M = c->n_mels, r = c->reduction, rm = r * M;
  memset(b, 0, sizeof *b);
  b->n = n;
  for (int i = 0; i < n; i++) {
    int u = idx[i];
    b->text_len[i] = set->text_off[u + 1] - set->text_off[u] + 1;
    b->steps[i] = (utt_frames(set, u) + r - 1) / r;
    if (b->text_len[i] > b->L) b->L = b->text_len[i];
    if (b->steps[i] > b->S) b->S = b->steps[i];
  }
  int64_t L = b->L, S = b->S;
  b->text = nn_zeros(NN_I64, 2, (int64_t[]){n, L});
  b->target = nn_empty(NN_F32, 3, (int64_t[]){n, S, rm});
  b->prev = nn_empty(NN_F32, 3, (int64_t[]){n, S, rm});
  b->step_mask = nn_zeros(NN_F32, 3, (int64_t[]){n, S, 1});
  b->stop = nn_zeros(NN_F32, 3, (int64_t[]){n, S, 1});
  b->guide = nn_zeros(NN_F32, 3, (int64_t[]){n, S, L});
  const float *mean = nn_f32(m->mel_mean), *sd = nn_f32(m->mel_std);
  float silence[256];
  for (int j = 0; j < M; j++) silence[j] = (logf(E2E_LOG_MEL_FLOOR) - mean[j]) / sd[j];
  for (int i = 0; i < n; i++) {
    int u = idx[i];
    int64_t *tx = (int64_t *)nn_data(b->text) + i * L;
    for (int64_t k = 0; k < b->text_len[i] - 1; k++) tx[k] = set->text[set->text_off[u] + k];
    tx[b->text_len[i] - 1] = E2E_TTS_END;
    float *tg = nn_f32(b->target) + (size_t)i * S * rm, *pv = nn_f32(b->prev) + (size_t)i * S * rm;
    int64_t T = utt_frames(set, u);
    const float *src = set->mel + set->mel_off[u] * M;
    for (int64_t f = 0; f < S * r; f++)
      for (int j = 0; j < M; j++) tg[f * M + j] = f < T ? (src[f * M + j] - mean[j]) / sd[j] : silence[j];
    memset(pv, 0, sizeof(float) * rm);
    memcpy(pv + rm, tg, sizeof(float) * (size_t)(S - 1) * rm);
    float *sm = nn_f32(b->step_mask) + i * S, *st = nn_f32(b->stop) + i * S, *g = nn_f32(b->guide) + (size_t)i * S * L;
    for (int64_t s = 0; s < S; s++) {
      sm[s] = s < b->steps[i];
      st[s] = s >= b->steps[i] - 1;
      if (s >= b->steps[i]) continue;
      for (int64_t l = 0; l < b->text_len[i]; l++) {
        double d = (double)l / b->text_len[i] - (double)s / b->steps[i];
        g[s * L + l] = (float)(1.0 - exp(-d * d / (2 * GUIDE_WIDTH * GUIDE_WIDTH)));
      }
    }
    b->valid_steps += b->steps[i];
  }
}

typedef struct {
  double total, mel, post, stop, guide;
} loss_parts;

/* L1 on the valid steps' frames (the decoder's, and the postnet's when there is one, as Tacotron 2 does:
 * the decoder stays a good predictor on its own, since it is fed its own frames) + stop BCE + guided
 * attention. attention gets the weights when asked. */
static nn_tensor *batch_loss(const tts_model *m, const tts_batch *b, bool training, nn_rng *rng, loss_parts *parts,
                             nn_tensor **attention) {
  int rm = m->cfg.reduction * m->cfg.n_mels;
  nn_tensor *keys, *values, *a = NULL;
  tts_encode_text(m, b->text, b->text_len, &keys, &values);
  nn_tensor *out = tts_decode(m, b->prev, keys, values, b->text_len, training, rng, &a);
  if (!out) return NULL;
  nn_tensor *pred = nn_slice(out, 2, 0, rm, 1), *stop = nn_slice(out, 2, rm, rm + 1, 1);
  nn_tensor *l_mel = nn_mul_scalar(nn_sum_all(nn_mul(nn_abs(nn_sub(pred, b->target)), b->step_mask)),
                                   (float)(1.0 / (b->valid_steps * rm)));
  nn_tensor *l_stop = nn_bce_with_logits(stop, b->stop);
  nn_tensor *l_guide = nn_mul_scalar(nn_sum_all(nn_mul(a, b->guide)), (float)(1.0 / b->valid_steps));
  nn_tensor *loss = nn_add(nn_add(l_mel, l_stop), l_guide), *l_post = NULL;
  if (m->cfg.postnet_layers) {
    int r = m->cfg.reduction, M = m->cfg.n_mels;
    int64_t frame_len[64];
    for (int i = 0; i < b->n; i++) frame_len[i] = b->steps[i] * r;
    nn_tensor *frames = nn_reshape(nn_contiguous(pred), 3, (int64_t[]){b->n, b->S * r, M});
    nn_tensor *post = nn_reshape(nn_contiguous(tts_postnet(m, frames, frame_len)), 3, (int64_t[]){b->n, b->S, rm});
    l_post = nn_mul_scalar(nn_sum_all(nn_mul(nn_abs(nn_sub(post, b->target)), b->step_mask)),
                           (float)(1.0 / (b->valid_steps * rm)));
    loss = nn_add(loss, l_post);
  }
  if (!loss) return NULL;
  parts->mel = nn_item(l_mel), parts->stop = nn_item(l_stop), parts->guide = nn_item(l_guide);
  parts->post = l_post ? nn_item(l_post) : parts->mel;
  parts->total = nn_item(loss);
  if (attention) *attention = a;
  return loss;
}

/* ---------------------------------------------------------------- sampler */

/* Batches of utterances of similar length (sorted, cut into runs of at most max_frames frames in all),
 * in shuffled order. */
typedef struct {
  int *order, *starts, n_batches, next;
} sampler;

static const tts_set *sort_set;
static int by_frames(const void *a, const void *b) {
  int64_t fa = utt_frames(sort_set, *(const int *)a), fb = utt_frames(sort_set, *(const int *)b);
  return fa < fb ? -1 : fa > fb;
}

static void sampler_epoch(sampler *s, const tts_set *set, int64_t max_frames, int max_batch, nn_rng *rng) {
  for (int i = 0; i < set->n; i++) s->order[i] = i;
  /* shuffle, then a stable sort of buckets: equal lengths come in a new order every epoch */
  for (int i = set->n - 1; i > 0; i--) {
    int j = (int)(nn_rng_u64(rng) % (uint64_t)(i + 1)), t = s->order[i];
    s->order[i] = s->order[j], s->order[j] = t;
  }
  sort_set = set;
  qsort(s->order, (size_t)set->n, sizeof(int), by_frames);
  s->n_batches = 0;
  for (int i = 0; i < set->n;) {
    int j = i;
    while (j < set->n && j - i < max_batch && (j - i + 1) * utt_frames(set, s->order[j]) <= max_frames) j++;
    if (j == i) j = i + 1;
    s->starts[s->n_batches++] = i;
    i = j;
  }
  s->starts[s->n_batches] = set->n;
  /* shuffle the batches: swap start indices via a permutation of batch ids */
  int *perm = malloc(sizeof(int) * (size_t)s->n_batches), *ord = malloc(sizeof(int) * (size_t)set->n),
      *st = malloc(sizeof(int) * (size_t)(s->n_batches + 1));
  for (int i = 0; i < s->n_batches; i++) perm[i] = i;
  for (int i = s->n_batches - 1; i > 0; i--) {
    int j = (int)(nn_rng_u64(rng) % (uint64_t)(i + 1)), t = perm[i];
    perm[i] = perm[j], perm[j] = t;
  }
  int k = 0;
  for (int i = 0; i < s->n_batches; i++) {
    st[i] = k;
    for (int q = s->starts[perm[i]]; q < s->starts[perm[i] + 1]; q++) ord[k++] = s->order[q];
  }
  st[s->n_batches] = k;
  memcpy(s->order, ord, sizeof(int) * (size_t)set->n);
  memcpy(s->starts, st, sizeof(int) * (size_t)(s->n_batches + 1));
  free(perm), free(ord), free(st);
  s->next = 0;
}

/* ---------------------------------------------------------------- validation */

typedef struct {
  loss_parts loss;
  double diagonal; /* attention mass within 0.1 of the diagonal, mean over valid steps */
  int n;
} val_result;

static bool validate(const tts_model *m, const tts_set *set, int max_utts, val_result *r) {
  memset(r, 0, sizeof *r);
  int n = set->n < max_utts ? set->n : max_utts;
  nn_no_grad_begin();
  bool ok = true;
  double steps = 0;
  for (int i = 0; i < n && ok; i += 16) {
    int k = n - i < 16 ? n - i : 16, idx[16];
    for (int j = 0; j < k; j++) idx[j] = (int)((int64_t)(i + j) * set->n / n);
    tts_batch b;
    batch_make(&b, set, idx, k, m);
    loss_parts lp;
    nn_tensor *a = NULL;
    if (!batch_loss(m, &b, false, NULL, &lp, &a)) {
      fprintf(stderr, "e2e train tts: validation: %s\n", nn_last_error());
      ok = false;
    } else {
      r->loss.total += lp.total * k, r->loss.mel += lp.mel * k, r->loss.stop += lp.stop * k, r->loss.guide += lp.guide * k;
      r->loss.post += lp.post * k;
      const float *ad = nn_f32(nn_contiguous(a));
      for (int j = 0; j < k; j++)
        for (int64_t s = 0; s < b.steps[j]; s++) {
          double mass = 0;
          for (int64_t l = 0; l < b.text_len[j]; l++)
            if (fabs((double)l / b.text_len[j] - (double)s / b.steps[j]) <= 0.1) mass += ad[((size_t)j * b.S + s) * b.L + l];
          r->diagonal += mass;
          steps++;
        }
    }
    nn_arena_reset(nn_arena_current());
  }
  nn_no_grad_end();
  r->loss.total /= n, r->loss.mel /= n, r->loss.stop /= n, r->loss.guide /= n, r->loss.post /= n;
  r->diagonal /= steps > 0 ? steps : 1;
  r->n = n;
  return ok;
}

/* Curves of every stage so far from the JSON-lines log. */
static void plot_log(const char *log_path, const char *png) {
  FILE *f = fopen(log_path, "r");
  if (!f) return;
  GArray *x[5], *y[5];
  for (int i = 0; i < 5; i++) x[i] = g_array_new(FALSE, FALSE, sizeof(double)), y[i] = g_array_new(FALSE, FALSE, sizeof(double));
  char line[4096];
  JsonParser *p = json_parser_new();
  while (fgets(line, sizeof line, f)) {
    if (!json_parser_load_from_data(p, line, -1, NULL) || !JSON_NODE_HOLDS_OBJECT(json_parser_get_root(p))) continue;
    JsonObject *o = json_node_get_object(json_parser_get_root(p));
    double step = json_object_get_double_member_with_default(o, "step", -1);
    const char *keys[5] = {"mel_loss", "val_mel_loss", "val_diagonal", "val_stop_loss", "val_post_loss"};
    for (int i = 0; i < 5; i++)
      if (json_object_has_member(o, keys[i])) {
        double v = json_object_get_double_member(o, keys[i]);
        g_array_append_val(x[i], step), g_array_append_val(y[i], v);
      }
  }
  g_object_unref(p);
  fclose(f);
  plot_series loss[3] = {{"training (L1, smoothed)", (double *)x[0]->data, (double *)y[0]->data, (int)x[0]->len, false},
                         {"validation (L1)", (double *)x[1]->data, (double *)y[1]->data, (int)x[1]->len, true},
                         {"validation after the postnet (L1)", (double *)x[4]->data, (double *)y[4]->data, (int)x[4]->len, true}};
  plot_series diag[1] = {{"validation: attention within 0.1 of the diagonal", (double *)x[2]->data, (double *)y[2]->data,
                          (int)x[2]->len, true}};
  plot_panel panels[2] = {
      {{"TTS mel loss (normalised log-mel, L1)", "step", "L1", false, false, 900, 360}, loss, x[4]->len ? 3 : 2},
      {{"TTS attention", "step", "fraction", false, true, 900, 300}, diag, 1}};
  plot_panels_png(png, panels, 2);
  for (int i = 0; i < 5; i++) g_array_free(x[i], TRUE), g_array_free(y[i], TRUE);
}

/* ---------------------------------------------------------------- training */

static void usage_train(void) {
  fprintf(stderr,
          "usage: e2e train tts --train SHARDS --val SHARDS --checkpoint CKPT --out MODEL [OPTIONS]\n"
          "  --train, --val LIST  comma-separated shards (e2e tts features)\n"
          "  --checkpoint FILE    resumed from when it exists (weights, optimizer state, step), written atomically\n"
          "  --init MODEL         without a checkpoint: start from this model's weights (a new optimizer, step 0)\n"
          "  --out FILE           the model, written at every validation\n"
          "  --log FILE           JSON lines appended (and FILE-curves.png drawn at the end of the stage)\n"
          "  --seconds S          this stage's budget (default 6600)\n"
          "  --total-steps N      the learning-rate schedule's length (default 60000)\n"
          "  --lr X               peak learning rate (default 1e-3)\n"
          "  --batch-frames N     mel frames per batch, padding included (default 8000)\n"
          "  --val-every N        steps between validations and checkpoints (default 250)\n"
          "  --dim N --text-dim N --layers N   a new model's size (default 128, 128, 6)\n"
          "  --prenet-dropout P   a new model's prenet dropout (default 0.5)\n"
          "  --postnet N          a new model's postnet layers (default 0: none); with --init, adds one to a\n"
          "                       model that has none, or widens its N-layer postnet to --postnet-dim (either\n"
          "                       way it starts as no change)\n"
          "  --postnet-dim N      its width (default 128)\n"
          "  --threads N --seed N\n");
}

/* Copies a trained postnet layer into a wider one so that it computes the same: the old block of each tap is
 * kept, the new channels' incoming weights stay random and their outgoing weights are zero. */
static void widen_postnet_layer(const nn_tensor *from_w, const nn_tensor *from_b, nn_tensor *to_w, nn_tensor *to_b) {
  int64_t out_old = from_w->shape[0], in_old = from_w->shape[1] / 5, in_new = to_w->shape[1] / 5;
  const float *a = nn_data((nn_tensor *)from_w);
  float *w = nn_data(to_w);
  for (int64_t o = 0; o < out_old; o++)
    for (int64_t t = 0; t < 5; t++)
      for (int64_t c = 0; c < in_new; c++) w[o * 5 * in_new + t * in_new + c] = c < in_old ? a[o * 5 * in_old + t * in_old + c] : 0.0f;
  memcpy(nn_data(to_b), nn_data((nn_tensor *)from_b), sizeof(float) * (size_t)out_old);
}

/* The same network with a new postnet, or its postnet widened, every other weight (and the mel statistics)
 * copied: either way it starts out computing what the model did. */
static bool set_postnet(tts_model *m, int layers, int dim, uint64_t seed) {
  tts_config c = m->cfg;
  c.postnet_layers = layers, c.postnet_dim = dim;
  tts_model n;
  if (!tts_init(&n, &c, &m->mel, seed)) return false;
  for (int i = 0; i < m->p.n; i++)
    for (int j = 0; j < n.p.n; j++)
      if (!strcmp(m->p.names[i], n.p.names[j])) {
        if (nn_numel(m->p.t[i]) == nn_numel(n.p.t[j]))
          memcpy(nn_data(n.p.t[j]), nn_data(m->p.t[i]), sizeof(float) * (size_t)nn_numel(m->p.t[i]));
        break;
      }
  for (int i = 0; i < layers && m->cfg.postnet_layers && m->cfg.postnet_dim != dim; i++)
    widen_postnet_layer(m->post[i].weight, m->post[i].bias, n.post[i].weight, n.post[i].bias);
  tts_free(m);
  *m = n; /* its model_id is set again when saved */
  return true;
}

int e2e_train_tts(int argc, char **argv) {
  const char *train_list = NULL, *val_list = NULL, *ckpt = NULL, *out = NULL, *log_path = NULL, *init = NULL;
  double seconds = 6600;
  int64_t total_steps = 60000, batch_frames = 8000;
  int val_every = 250, threads = 0;
  float lr = 1e-3f;
  uint64_t seed = 1;
  tts_config cfg = tts_config_default();
  cfg.postnet_dim = 128;
  for (int i = 0; i < argc; i++) {
    const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
#define OPT(name) (!strcmp(a, name) && v && ++i)
    if (OPT("--train")) train_list = v;
    else if (OPT("--val")) val_list = v;
    else if (OPT("--checkpoint")) ckpt = v;
    else if (OPT("--out")) out = v;
    else if (OPT("--init")) init = v;
    else if (OPT("--log")) log_path = v;
    else if (OPT("--seconds")) seconds = atof(v);
    else if (OPT("--total-steps")) total_steps = atoll(v);
    else if (OPT("--lr")) lr = (float)atof(v);
    else if (OPT("--batch-frames")) batch_frames = atoll(v);
    else if (OPT("--val-every")) val_every = atoi(v);
    else if (OPT("--dim")) cfg.dim = atoi(v);
    else if (OPT("--text-dim")) cfg.text_dim = atoi(v);
    else if (OPT("--layers")) cfg.audio_layers = cfg.dec_layers = atoi(v);
    else if (OPT("--prenet-dropout")) cfg.prenet_dropout = (float)atof(v);
    else if (OPT("--postnet")) cfg.postnet_layers = atoi(v);
    else if (OPT("--postnet-dim")) cfg.postnet_dim = atoi(v);
    else if (OPT("--threads")) threads = atoi(v);
    else if (OPT("--seed")) seed = strtoull(v, NULL, 10);
    else {
      usage_train();
      return 2;
    }
#undef OPT
  }
  if (!train_list || !ckpt || !out || seconds <= 0 || total_steps < 1 || batch_frames < 100 || val_every < 1 || !(lr > 0)) {
    usage_train();
    return 2;
  }
  if (threads > 0) nn_set_num_threads(threads);
  tts_set train = {0}, val = {0};
  if (!load_sets(&train, train_list) || (val_list && !load_sets(&val, val_list))) return 1;
  if (train.n == 0) {
    fprintf(stderr, "e2e train tts: no training utterances\n");
    return 1;
  }
  tts_model m;
  e2e_mel_config mel = tts_mel_default();
  nn_optim *opt = NULL;
  bool resumed = access(ckpt, F_OK) == 0;
  int64_t init_steps = 0; /* the steps the --init model had seen: the saved model counts them too */
  if (resumed) {
    nn_st_file *f = nn_st_open(ckpt);
    bool ok = f && tts_init_from_meta(&m, f, ckpt);
    const char *s = ok ? nn_st_meta(f, "init_steps") : NULL;
    init_steps = s ? atoll(s) : 0;
    if (f) nn_st_close(f);
    if (ok) opt = nn_optim_new(&m.p, nn_optim_defaults(NN_ADAM, lr));
    if (!ok || !opt || !nn_checkpoint_load(ckpt, &m.p, opt)) {
      fprintf(stderr, "e2e train tts: resuming from %s: %s\n", ckpt, nn_last_error());
      return 1;
    }
  } else if (init) {
    /* a trained model goes on learning (its mel statistics kept); Adam's moments start again, hence step 0
       and the warm-up */
    nn_st_file *f = nn_st_open(init);
    bool ok = f && tts_load_file(&m, f, init);
    const char *s = ok ? nn_st_meta(f, "steps") : NULL;
    init_steps = s ? atoll(s) : 0;
    if (f) nn_st_close(f);
    if (!ok) {
      fprintf(stderr, "e2e train tts: --init: %s\n", nn_last_error());
      set_free(&train), set_free(&val);
      return 1;
    }
    bool other_layers = m.cfg.postnet_layers && m.cfg.postnet_layers != cfg.postnet_layers;
    if (ok && cfg.postnet_layers && (m.cfg.postnet_layers != cfg.postnet_layers || m.cfg.postnet_dim != cfg.postnet_dim)) {
      if (other_layers || (m.cfg.postnet_layers && m.cfg.postnet_dim > cfg.postnet_dim)) {
        fprintf(stderr, "e2e train tts: --init: the model already has a %d-layer postnet %d wide (it can only be widened)\n",
                m.cfg.postnet_layers, m.cfg.postnet_dim);
        ok = false;
      } else if (!set_postnet(&m, cfg.postnet_layers, cfg.postnet_dim, seed)) {
        fprintf(stderr, "e2e train tts: --postnet: %s\n", nn_last_error());
        ok = false;
      }
      if (!ok) {
        tts_free(&m);
        set_free(&train), set_free(&val);
        return 1;
      }
    }
    m.contrast = 1.0f; /* chosen again for the new weights after training (train.sh contrast), as on resuming */
    opt = nn_optim_new(&m.p, nn_optim_defaults(NN_ADAM, lr));
  } else {
    if (!tts_init(&m, &cfg, &mel, seed)) {
      fprintf(stderr, "e2e train tts: %s\n", nn_last_error());
      return 1;
    }
    /* the normalisation: every training frame's per-bin mean and deviation, fixed for the model's life */
    int M = m.cfg.n_mels;
    double *s1 = calloc((size_t)M, sizeof(double)), *s2 = calloc((size_t)M, sizeof(double));
    int64_t F = train.mel_off[train.n];
    for (int64_t t = 0; t < F; t++)
      for (int j = 0; j < M; j++) s1[j] += train.mel[t * M + j], s2[j] += (double)train.mel[t * M + j] * train.mel[t * M + j];
    for (int j = 0; j < M; j++) {
      double mu = s1[j] / F, var = s2[j] / F - mu * mu;
      nn_f32(m.mel_mean)[j] = (float)mu;
      nn_f32(m.mel_std)[j] = (float)sqrt(var > 1e-4 ? var : 1e-4);
    }
    free(s1), free(s2);
    opt = nn_optim_new(&m.p, nn_optim_defaults(NN_ADAM, lr));
  }
  if (train.n_mels != m.cfg.n_mels) {
    fprintf(stderr, "e2e train tts: the shards have %d mels, the model %d\n", train.n_mels, m.cfg.n_mels);
    return 1;
  }
  int64_t start_step = opt->step;
  double audio_h = train.mel_off[train.n] * (double)m.mel.hop / m.mel.sample_rate / 3600.0;
  if (init_steps) printf("the given model has seen %lld steps: steps below count them, its schedule starts again\n",
                         (long long)init_steps);
  printf("%s TTS training at step %lld: %lld parameters, %d utterances (%.1f h) to train on, %d to validate on, "
         "%d threads, stage budget %.0f s\n",
         resumed ? "resuming" : init ? "continuing the given model's" : "starting", (long long)start_step, (long long)nn_params_numel(&m.p, true), train.n,
         audio_h, val.n, nn_get_num_threads(), seconds);
  FILE *log = log_path ? fopen(log_path, "a") : NULL;
  nn_lr_schedule sched = {.kind = NN_LR_COSINE, .base_lr = lr, .min_lr = lr * 0.05f, .warmup_steps = 300,
                          .total_steps = total_steps};
  nn_rng rng;
  nn_rng_seed(&rng, seed * 7919 + (uint64_t)start_step);
  sampler smp = {.order = malloc(sizeof(int) * (size_t)train.n), .starts = malloc(sizeof(int) * (size_t)(train.n + 1))};
  sampler_epoch(&smp, &train, batch_frames, 64, &rng);
  double t0 = e2e_now_s(), done_audio_s = 0;
  loss_parts sm = {0};
  int64_t step = start_step, since = 0;
  int status = 0;
  while (step < total_steps) {
    bool out_of_time = e2e_now_s() - t0 >= seconds;
    if (out_of_time) printf("stage budget of %.0f s reached at step %lld\n", seconds, (long long)step);
    if (!out_of_time) {
      if (smp.next >= smp.n_batches) sampler_epoch(&smp, &train, batch_frames, 64, &rng);
      int b0 = smp.starts[smp.next], b1 = smp.starts[smp.next + 1];
      smp.next++;
      tts_batch b;
      batch_make(&b, &train, smp.order + b0, b1 - b0, &m);
      opt->cfg.lr = nn_lr_at(&sched, step);
      nn_optim_zero_grad(opt);
      loss_parts lp;
      nn_tensor *loss = batch_loss(&m, &b, true, &rng, &lp, NULL);
      if (!loss || !nn_backward(loss)) {
        fprintf(stderr, "e2e train tts: step %lld: %s\n", (long long)step, nn_last_error());
        status = 1;
        break;
      }
      float gnorm = nn_clip_grad_norm(&m.p, 1.0f);
      if (isfinite(lp.total) && isfinite(gnorm)) nn_optim_step(opt);
      else opt->step++;
      for (int i = 0; i < b.n; i++) done_audio_s += utt_frames(&train, smp.order[b0 + i]) * (double)m.mel.hop / m.mel.sample_rate;
      nn_arena_reset(nn_arena_current());
      double k = since ? 0.98 : 0.0;
      sm.total = k * sm.total + (1 - k) * lp.total, sm.mel = k * sm.mel + (1 - k) * lp.mel;
      sm.stop = k * sm.stop + (1 - k) * lp.stop, sm.guide = k * sm.guide + (1 - k) * lp.guide;
      sm.post = k * sm.post + (1 - k) * lp.post;
      since++;
      step = opt->step;
      if (step % 25 == 0) {
        double el = e2e_now_s() - t0;
        printf("step %6lld  loss %.4f (mel %.4f post %.4f stop %.4f guide %.4f)  lr %.2e  |g| %.2f  %.1f s of audio per s  "
               "stage %.0f/%.0f s\n",
               (long long)(init_steps + step), sm.total, sm.mel, sm.post, sm.stop, sm.guide, opt->cfg.lr, gnorm, done_audio_s / el,
               el, seconds);
        fflush(stdout);
        if (log)
          fprintf(log, "{\"step\": %lld, \"loss\": %.5f, \"mel_loss\": %.5f, \"post_loss\": %.5f, \"stop_loss\": %.5f, "
                       "\"guide_loss\": %.5f, \"lr\": %.3e, \"grad_norm\": %.3f, \"audio_per_s\": %.2f}\n",
                  (long long)(init_steps + step), sm.total, sm.mel, sm.post, sm.stop, sm.guide, opt->cfg.lr, gnorm,
                  done_audio_s / el),
              fflush(log);
      }
    }
    bool last = out_of_time || step >= total_steps;
    if ((step % val_every == 0 && since > 0) || last) {
      val_result vr = {0};
      if (val.n) {
        if (!validate(&m, &val, 256, &vr)) {
          status = 1;
          break;
        }
        printf("validation at step %lld: mel %.4f  post %.4f  stop %.4f  guide %.4f  attention on the diagonal %.1f%% "
               "(%d utterances)\n",
               (long long)(init_steps + step), vr.loss.mel, vr.loss.post, vr.loss.stop, vr.loss.guide, 100 * vr.diagonal, vr.n);
        if (log) {
          fprintf(log, "{\"step\": %lld, \"val_mel_loss\": %.5f, \"val_stop_loss\": %.5f, \"val_guide_loss\": %.5f, "
                       "\"val_diagonal\": %.5f",
                  (long long)(init_steps + step), vr.loss.mel, vr.loss.stop, vr.loss.guide, vr.diagonal);
          if (m.cfg.postnet_layers) fprintf(log, ", \"val_post_loss\": %.5f", vr.loss.post);
          fprintf(log, "}\n");
          fflush(log);
        }
      }
      char *cj = tts_config_json(&m.cfg), *mj = tts_mel_json(&m.mel), s_step[32], s_val[160], s_init[32];
      snprintf(s_init, sizeof s_init, "%lld", (long long)init_steps);
      nn_kv meta[] = {{"architecture", TTS_ARCH}, {"config", cj}, {"mel", mj}, {"init_steps", s_init}};
      if (!nn_checkpoint_save(ckpt, &m.p, opt, meta, 4)) fprintf(stderr, "e2e train tts: checkpoint: %s\n", nn_last_error());
      snprintf(s_step, sizeof s_step, "%lld", (long long)(init_steps + step));
      snprintf(s_val, sizeof s_val, "{\"mel_l1\": %.5f, \"post_l1\": %.5f, \"attention_diagonal\": %.5f, \"utterances\": %d}",
               vr.loss.mel, vr.loss.post, vr.diagonal, vr.n);
      nn_kv extra[] = {{"steps", s_step},
                       {"dataset", "flite rms reading LJ Speech text and generated sentences; see models/tts/README.md"},
                       {"validation", s_val}};
      if (!tts_save(&m, out, extra, 3)) fprintf(stderr, "e2e train tts: %s\n", nn_last_error());
      g_free(cj), g_free(mj);
    }
    if (last) break;
  }
  printf("stage done: steps %lld..%lld in %.0f s (%.1f h of audio seen)\n", (long long)start_step, (long long)step,
         e2e_now_s() - t0, done_audio_s / 3600);
  if (log) {
    fclose(log);
    char *png = g_strdup(log_path), *dot = strrchr(png, '.');
    if (dot && !strchr(dot, '/')) *dot = '\0';
    char *path = g_strdup_printf("%s-curves.png", png);
    plot_log(log_path, path);
    g_free(png), g_free(path);
  }
  free(smp.order), free(smp.starts);
  nn_optim_free(opt);
  tts_free(&m);
  set_free(&train), set_free(&val);
  return status;
}
