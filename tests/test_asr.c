/* The audio front end against PyTorch references, transcripts, feature shards, CTC decoding with language
 * models and grammars, the live speech stream, and a tiny recogniser that must learn. */
#include <glib.h>
#include <unistd.h>

#include "asr/train.h"
#include "e2e/asr.h"
#include "e2e/audio.h"
#include "harness.h"
#include "task.h"

static char *fixture(const char *name) {
  const char *root = getenv("E2E_SOURCE_ROOT");
  return g_strdup_printf("%s/tests/fixtures/%s", root ? root : ".", name);
}

static double rel_err(const float *a, const float *b, int64_t n) {
  double num = 0, den = 0;
  for (int64_t i = 0; i < n; i++) num += ((double)a[i] - b[i]) * ((double)a[i] - b[i]), den += (double)b[i] * b[i];
  return sqrt(num / (den > 0 ? den : 1));
}

TEST(front_end_matches_torch_stft_and_mel) {
  char *path = fixture("audio_reference.safetensors");
  nn_st_file *f = nn_st_open(path);
  CHECK(f != NULL, "fixture %s", path);
  g_free(path);
  if (!f) return;
  nn_tensor *x = nn_st_get(f, "x"), *power = nn_st_get(f, "power"), *fb = nn_st_get(f, "filterbank"),
            *lm = nn_st_get(f, "log_mel");
  e2e_mel_config c = e2e_mel_default();
  e2e_audio_fe *fe = e2e_audio_fe_new(&c);
  int64_t n = x->shape[0], T = e2e_audio_frames(&c, n), B = c.n_fft / 2 + 1;
  CHECK(T == power->shape[0], "frames %lld vs torch %lld", (long long)T, (long long)power->shape[0]);
  float *p = malloc(sizeof(float) * T * B), *m = malloc(sizeof(float) * T * c.n_mels);
  e2e_stft_power(fe, nn_f32(x), n, p);
  double e = rel_err(p, nn_f32(power), T * B);
  CHECK(e < 1e-5, "power spectrum relative error %g", e);
  e = max_abs_diff(e2e_audio_fe_filterbank(fe), nn_f32(fb), c.n_mels * B);
  CHECK(e < 1e-6, "filterbank max error %g", e);
  e2e_log_mel(fe, nn_f32(x), n, m);
  e = max_abs_diff(m, nn_f32(lm), T * c.n_mels);
  CHECK(e < 2e-3, "log-mel max error %g", e);
  free(p), free(m);
  e2e_audio_fe_free(fe);
  nn_tensor_free(x), nn_tensor_free(power), nn_tensor_free(fb), nn_tensor_free(lm);
  nn_st_close(f);
}

TEST(istft_inverts_stft) {
  e2e_mel_config c = e2e_mel_default();
  e2e_audio_fe *fe = e2e_audio_fe_new(&c);
  int64_t n = 8000, T = e2e_audio_frames(&c, n), B = c.n_fft / 2 + 1;
  float *x = malloc(sizeof(float) * n), *spec = malloc(sizeof(float) * T * B * 2), *y = malloc(sizeof(float) * n);
  nn_rng r;
  nn_rng_seed(&r, 5);
  for (int64_t i = 0; i < n; i++) x[i] = 0.3f * sinf(0.05f * i) + 0.1f * nn_rng_normal(&r);
  e2e_stft(fe, x, n, spec);
  e2e_istft(fe, spec, T, y);
  /* where at least two windows overlap the signal comes back; the first and last window tails do not */
  int64_t lo = c.n_fft, hi = (T - 1) * c.hop;
  double e = max_abs_diff(x + lo, y + lo, hi - lo);
  CHECK(e < 1e-4, "reconstruction max error %g", e);
  free(x), free(spec), free(y);
  e2e_audio_fe_free(fe);
}

TEST(mel_stream_gives_the_same_frames_in_any_chunks) {
  e2e_mel_config c = e2e_mel_default();
  e2e_audio_fe *fe = e2e_audio_fe_new(&c);
  int64_t n = 16000 + 123, T = e2e_audio_frames(&c, n);
  float *x = malloc(sizeof(float) * n), *whole = malloc(sizeof(float) * T * c.n_mels),
        *got = malloc(sizeof(float) * (T + 1) * c.n_mels);
  nn_rng r;
  nn_rng_seed(&r, 9);
  for (int64_t i = 0; i < n; i++) x[i] = 0.2f * nn_rng_normal(&r);
  e2e_log_mel(fe, x, n, whole);
  e2e_mel_stream *s = e2e_mel_stream_new(&c);
  int64_t at = 0, frames = 0;
  while (at < n) {
    int k = (int)(nn_rng_u64(&r) % 700); /* 0 .. 699 samples, single samples included */
    if (k > n - at) k = (int)(n - at);
    e2e_mel_stream_push(s, x + at, k);
    at += k;
    frames += e2e_mel_stream_take(s, got + frames * c.n_mels, (int)(T + 1 - frames));
  }
  CHECK(frames == T, "%lld frames streamed, %lld whole", (long long)frames, (long long)T);
  CHECK(memcmp(got, whole, sizeof(float) * T * c.n_mels) == 0, "streamed frames differ from the whole signal's");
  e2e_mel_stream_free(s);
  free(x), free(whole), free(got);
  e2e_audio_fe_free(fe);
}

TEST(front_end_refuses_bad_configs) {
  e2e_mel_config c = e2e_mel_default();
  c.n_fft = 511;
  CHECK(!e2e_audio_fe_new(&c) && strstr(nn_last_error(), "n_fft"), "odd n_fft");
  c = e2e_mel_default();
  c.f_max = 9000;
  CHECK(!e2e_audio_fe_new(&c) && strstr(nn_last_error(), "band"), "f_max above Nyquist");
  c = e2e_mel_default();
  c.hop = 0;
  CHECK(!e2e_audio_fe_new(&c), "hop 0");
}

TEST(transcripts_normalise) {
  char out[128];
  e2e_asr_normalize_text("  Hello, World!  It's 'quoted' -- OK ", out, sizeof out);
  CHECK(!strcmp(out, "hello world it's quoted ok"), "got \"%s\"", out);
  e2e_asr_normalize_text("", out, sizeof out);
  CHECK(!strcmp(out, ""), "empty");
  e2e_asr_normalize_text("caf\xc3\xa9 n\xc3\xa4ive", out, sizeof out);
  CHECK(!strcmp(out, "caf n ive"), "non-ASCII letters break words: \"%s\"", out);
  e2e_asr_normalize_text("alpha beta gamma", out, 12);
  CHECK(!strcmp(out, "alpha beta"), "cut at a word boundary: \"%s\"", out);
  for (int l = 1; l < E2E_ASR_CLASSES; l++) CHECK(e2e_asr_label(e2e_asr_char(l)) == l, "label %d round trip", l);
}

TEST(word_error_rate_counts_edits) {
  e2e_asr_score s = {0};
  e2e_asr_score_add(&s, "the cat sat on the mat", "the cat sat on a mat");
  e2e_asr_score_add(&s, "one two three", "one three");
  CHECK(s.ref_words == 9 && s.word_errors == 2, "%lld errors in %lld words", (long long)s.word_errors,
        (long long)s.ref_words);
  CHECK_CLOSE(e2e_asr_wer(&s), 2.0 / 9.0, 1e-12);
  e2e_asr_score c = {0};
  e2e_asr_score_add(&c, "abc", "abd");
  CHECK(c.ref_chars == 3 && c.char_errors == 1, "character errors %lld", (long long)c.char_errors);
}

TEST(shards_round_trip_and_refuse_damage) {
  char *path = g_strdup_printf("%s/e2e-test-shard-%d.safetensors", g_get_tmp_dir(), (int)getpid());
  e2e_asr_shard_writer *w = e2e_asr_shard_writer_new(4);
  float f1[3 * 4] = {-20, -3, 0, 1, 2, 3, 4, 5, 6, 7, 8, 100}, f2[2 * 4] = {0};
  CHECK(e2e_asr_shard_add(w, f1, 3, "Ab, c!", "voice-a"), "add");
  CHECK(e2e_asr_shard_add(w, f2, 2, "d", "voice-b"), "add");
  CHECK(!e2e_asr_shard_add(w, f2, 2, "!!", "voice-b"), "a transcript without letters is refused");
  CHECK(e2e_asr_shard_save(w, path, "{}"), "save");
  e2e_asr_shard_writer_free(w);
  e2e_asr_set set = {0};
  CHECK(e2e_asr_set_load(&set, path), "load");
  CHECK(set.n == 2 && set.n_mels == 4 && set.n_groups == 2, "n %d mels %d groups %d", set.n, set.n_mels, set.n_groups);
  CHECK(set.feat_off[1] == 3 && set.text_off[1] == 4 && set.text_off[2] == 5, "offsets");
  CHECK(fabsf(e2e_asr_feat_value(set.feats[1]) - -3.0f) <= 1.0f / 16 && set.feats[0] == 0 && set.feats[11] == 255,
        "quantised values clamp and round");
  CHECK(set.text[0] == e2e_asr_label('a') && set.text[2] == 1, "labels");
  CHECK(e2e_asr_set_group(&set, "voice-b") == set.group[1], "groups");
  CHECK(e2e_asr_set_load(&set, path) && set.n == 4 && set.n_groups == 2, "a second shard appends, groups merge");
  e2e_asr_set_free(&set);
  /* a truncated file is refused with its name */
  FILE *fp = fopen(path, "r+b");
  fseek(fp, 0, SEEK_END);
  long size = ftell(fp);
  fclose(fp);
  CHECK(truncate(path, size - 3) == 0, "truncate");
  e2e_asr_set bad = {0};
  CHECK(!e2e_asr_set_load(&bad, path) && strstr(nn_last_error(), path), "truncated shard: %s", nn_last_error());
  e2e_asr_set_free(&bad);
  unlink(path);
  g_free(path);
}

/* logp rows for a label sequence: each label held for `hold` frames, blanks between. */
static float *make_logp(const int *labels, int n, int hold, int64_t *T) {
  *T = (int64_t)n * (hold + 1) + 1;
  float *lp = malloc(sizeof(float) * *T * E2E_ASR_CLASSES);
  for (int64_t t = 0; t < *T; t++) {
    int k = (int)(t / (hold + 1)), in = (int)(t % (hold + 1));
    int hot = (t < (int64_t)n * (hold + 1) && in < hold) ? labels[k] : E2E_ASR_BLANK;
    for (int c = 0; c < E2E_ASR_CLASSES; c++) lp[t * E2E_ASR_CLASSES + c] = logf(c == hot ? 0.9f : 0.1f / (E2E_ASR_CLASSES - 1));
  }
  return lp;
}

static void labels_of(const char *s, int *out, int *n) {
  *n = 0;
  for (const char *p = s; *p; p++) out[(*n)++] = e2e_asr_label(*p);
}

TEST(greedy_and_beam_decode_a_clear_path) {
  int lab[64], n;
  labels_of("hello world", lab, &n);
  int64_t T;
  float *lp = make_logp(lab, n, 2, &T);
  char out[64];
  e2e_asr_greedy(lp, T, out, sizeof out);
  CHECK(!strcmp(out, "hello world"), "greedy \"%s\"", out);
  asr_path p;
  e2e_asr_decode_opts o = e2e_asr_decode_defaults();
  o.beam = 8;
  CHECK(asr_decode_path(lp, T, &o, &p) && p.n == n, "beam path of %d labels", p.n);
  int same = 1;
  for (int i = 0; i < p.n && i < n; i++) same &= p.label[i] == lab[i];
  CHECK(same, "beam search without a model agrees with the clear path");
  CHECK(p.frame[0] == 0 && p.frame[1] == 3, "emission frames %d %d", p.frame[0], p.frame[1]);
  free(lp);
}

TEST(digit_grammar_and_word_lists_constrain_the_beam) {
  /* "tree" between "three" and "tree": the acoustics say tree, the digit grammar only knows three */
  int lab[64], n;
  labels_of("one tree", lab, &n);
  int64_t T;
  float *lp = make_logp(lab, n, 2, &T);
  /* make 'h' a plausible second choice where "three" would have it: on the frames of 't' */
  for (int64_t t = 0; t < T; t++) {
    float *row = lp + t * E2E_ASR_CLASSES;
    if (row[e2e_asr_label('t')] > -1.0f) row[e2e_asr_label('h')] = logf(0.05f);
  }
  e2e_asr_lm *digits = e2e_asr_lm_digits();
  e2e_asr_decode_opts o = e2e_asr_decode_defaults();
  o.beam = 32;
  o.lm = digits;
  asr_path p;
  CHECK(asr_decode_path(lp, T, &o, &p), "decode");
  char out[64];
  for (int i = 0; i < p.n; i++) out[i] = e2e_asr_char(p.label[i]);
  out[p.n] = '\0';
  CHECK(!strcmp(out, "one three"), "digit grammar result \"%s\"", out);
  e2e_asr_lm_free(digits);
  /* a closed word list from text: only its words come out */
  char *path = g_strdup_printf("%s/e2e-test-lm-%d.txt", g_get_tmp_dir(), (int)getpid());
  FILE *f = fopen(path, "w");
  fprintf(f, "one tree stands here\nthe tree is old\n");
  fclose(f);
  e2e_asr_lm *lm = e2e_asr_lm_from_text_file(path, true);
  CHECK(lm && e2e_asr_lm_words(lm) == 7, "seven words");
  o.lm = lm;
  CHECK(asr_decode_path(lp, T, &o, &p), "decode");
  for (int i = 0; i < p.n; i++) out[i] = e2e_asr_char(p.label[i]);
  out[p.n] = '\0';
  CHECK(!strcmp(out, "one tree"), "word list result \"%s\"", out);
  e2e_asr_lm_free(lm);
  CHECK(!e2e_asr_lm_from_text_file("/nonexistent/lm.txt", false) && strstr(nn_last_error(), "/nonexistent/lm.txt"),
        "a missing file is named");
  unlink(path);
  g_free(path);
  free(lp);
}

TEST(augmentation_is_finite_and_deterministic) {
  e2e_mel_config mel = e2e_mel_default();
  asr_augment_opts o = asr_augment_defaults();
  o.p_tempo = o.p_warp = o.p_eq = o.p_phone = o.p_reverb = o.p_noise = 1.0f;
  int64_t T = 200;
  float *in = malloc(sizeof(float) * T * 80), *a = malloc(sizeof(float) * asr_augment_max_frames(&o, T) * 80),
        *b = malloc(sizeof(float) * asr_augment_max_frames(&o, T) * 80);
  nn_rng r;
  nn_rng_seed(&r, 2);
  for (int64_t i = 0; i < T * 80; i++) in[i] = -13.8f + (i / 80 > 50 && i / 80 < 150 ? 10.0f + nn_rng_normal(&r) : 0.0f);
  int64_t ta, tb;
  nn_rng ra, rb;
  nn_rng_seed(&ra, 7), nn_rng_seed(&rb, 7);
  asr_augment(&o, &mel, in, T, a, &ta, &ra);
  asr_augment(&o, &mel, in, T, b, &tb, &rb);
  CHECK(ta == tb && memcmp(a, b, sizeof(float) * ta * 80) == 0, "same seed, same result");
  CHECK(ta >= (int64_t)(T / (1 + o.tempo_range)) - 1 && ta <= asr_augment_max_frames(&o, T), "frames %lld", (long long)ta);
  int finite = 1;
  for (int64_t i = 0; i < ta * 80; i++) finite &= isfinite(a[i]);
  CHECK(finite, "finite output");
  /* the noise floor: digital silence is gone */
  CHECK(a[0] > -13.0f, "silence got a noise floor (%g)", a[0]);
  asr_normalize(a, ta, 80);
  asr_spec_mask(&o, a, ta, 80, &ra);
  free(in), free(a), free(b);
}

/* A toy task a recogniser must learn in seconds: each letter a fixed random spectrum held 8 frames, with
 * quiet frames between letters and words. */
static void toy_utterance(const char *text, float *f, int64_t *T, const float *codes) {
  int64_t t = 0;
  for (int rep = 0; rep < 4; rep++) f[t * 80 + rep] = -12, t++; /* lead-in */
  for (const char *p = text; *p; p++) {
    int l = e2e_asr_label(*p);
    for (int k = 0; k < 8; k++, t++)
      for (int j = 0; j < 80; j++) f[t * 80 + j] = l == 1 ? -12.0f : codes[l * 80 + j];
    for (int k = 0; k < 4; k++, t++)
      for (int j = 0; j < 80; j++) f[t * 80 + j] = -12.0f;
  }
  *T = t;
}

TEST(a_tiny_recogniser_learns_a_toy_task) {
  static const char *words[] = {"cab", "bad", "ace", "dab", "bead", "deed", "cede", "abe"};
  float codes[E2E_ASR_CLASSES * 80];
  nn_rng r;
  nn_rng_seed(&r, 11);
  for (int i = 0; i < E2E_ASR_CLASSES * 80; i++) codes[i] = 2.0f * nn_rng_normal(&r);
  char *path = g_strdup_printf("%s/e2e-test-toy-%d.safetensors", g_get_tmp_dir(), (int)getpid());
  e2e_asr_shard_writer *w = e2e_asr_shard_writer_new(80);
  float *f = malloc(sizeof(float) * 400 * 80);
  for (int i = 0; i < 64; i++) {
    char text[64];
    snprintf(text, sizeof text, "%s %s", words[i % 8], words[(i / 8 + i) % 8]);
    int64_t T;
    memset(f, 0, sizeof(float) * 400 * 80);
    toy_utterance(text, f, &T, codes);
    e2e_asr_shard_add(w, f, T, text, "toy");
  }
  CHECK(e2e_asr_shard_save(w, path, "{}"), "save");
  e2e_asr_shard_writer_free(w);
  e2e_asr_set set = {0};
  CHECK(e2e_asr_set_load(&set, path), "load");
  asr_config c = asr_config_default();
  c.hidden = 48, c.layers = 1, c.dim = 48, c.conv_channels = 8;
  e2e_mel_config mel = e2e_mel_default();
  asr_model m;
  CHECK(asr_init(&m, &c, &mel, 3), "init");
  nn_optim *opt = nn_optim_new(&m.p, nn_optim_defaults(NN_ADAM, 1e-2f));
  double first = 0, last = 0;
  int idx[16];
  for (int step = 0; step < 400; step++) {
    for (int i = 0; i < 16; i++) idx[i] = (int)(nn_rng_u64(&r) % (uint64_t)set.n);
    asr_batch b;
    asr_batch_make(&b, &set, idx, 16, &mel, NULL, &r);
    nn_optim_zero_grad(opt);
    double lv = 0;
    nn_tensor *loss = asr_batch_loss(&m, &b, &lv);
    CHECK(loss && nn_backward(loss), "step %d", step);
    nn_clip_grad_norm(&m.p, 5.0f);
    nn_optim_step(opt);
    asr_batch_free(&b);
    nn_arena_reset(nn_arena_current());
    if (step == 0) first = lv;
    last = lv;
  }
  /* greedy decoding of every utterance */
  e2e_asr_score s = {0};
  nn_no_grad_begin();
  for (int u = 0; u < set.n; u++) {
    asr_batch b;
    asr_batch_make(&b, &set, &u, 1, &mel, NULL, &r);
    int64_t il;
    nn_tensor *lp = nn_contiguous(asr_forward(&m, b.x, b.frames, &il));
    char hyp[128], ref[128];
    e2e_asr_greedy(nn_f32(lp), il, hyp, sizeof hyp);
    for (int64_t k = 0; k < b.text_len[0]; k++) ref[k] = e2e_asr_char(set.text[set.text_off[u] + k]);
    ref[b.text_len[0]] = '\0';
    e2e_asr_score_add(&s, ref, hyp);
    asr_batch_free(&b);
    nn_arena_reset(nn_arena_current());
  }
  nn_no_grad_end();
  printf("    toy task: loss %.3f -> %.3f, CER %.1f%%\n", first, last, 100 * e2e_asr_cer(&s));
  CHECK(last < first * 0.25, "loss %.3f -> %.3f", first, last);
  CHECK(e2e_asr_cer(&s) < 0.15, "CER %.3f", e2e_asr_cer(&s));
  nn_optim_free(opt);
  asr_free(&m);
  e2e_asr_set_free(&set);
  free(f);
  unlink(path);
  g_free(path);
}

/* A model that says "a" wherever there is sound: the CTC bias favours 'a', the features barely matter. */
/* 'a' most likely, blank next, every other label out of reach */
static void say_a_bias(float *b) {
  for (int c = 0; c < E2E_ASR_CLASSES; c++) b[c] = -10.0f;
  b[E2E_ASR_BLANK] = 3.0f;
  b[e2e_asr_label('a')] = 5.0f;
}

static e2e_model *say_a_model(void) {
  e2e_model *m = e2e_asr_model_new(16, 1, 1);
  nn_params *p = e2e_model_ops(m)->params(e2e_model_impl(m));
  nn_tensor *w = nn_params_find(p, "ctc.weight"), *b = nn_params_find(p, "ctc.bias");
  nn_fill_(w, 0.0f);
  nn_fill_(b, 0.0f);
  say_a_bias(nn_f32(b));
  return m;
}

typedef struct {
  int partials, finals;
  int64_t start, end;
  char text[64];
} events;

static void count_event(void *user, const e2e_asr_event *ev) {
  events *e = user;
  if (ev->kind == E2E_ASR_PARTIAL) {
    e->partials++;
    return;
  }
  e->finals++;
  e->start = ev->start, e->end = ev->end;
  snprintf(e->text, sizeof e->text, "%s", ev->result->text);
}

TEST(speech_stream_segments_bursts_and_ignores_silence) {
  e2e_model *m = say_a_model();
  e2e_slot *slot = e2e_slot_new(m);
  e2e_session *s = e2e_session_new(slot, 1);
  e2e_asr_stream_opts o = e2e_asr_stream_defaults();
  e2e_asr_decode_opts d = e2e_asr_decode_defaults();
  e2e_asr_stream *st = e2e_asr_stream_new(s, &o, &d);
  CHECK(st != NULL, "stream");
  int rate = 16000, n = rate * 4;
  float *x = calloc(n, sizeof(float));
  nn_rng r;
  nn_rng_seed(&r, 4);
  /* faint noise, then a 1.5 s loud burst from 1.0 s, then faint noise */
  for (int i = 0; i < n; i++) x[i] = 0.001f * nn_rng_normal(&r) + (i >= rate && i < rate * 5 / 2 ? 0.3f * nn_rng_normal(&r) : 0.0f);
  events e = {0};
  for (int i = 0; i < n; i += 160) e2e_asr_stream_push(st, x + i, n - i < 160 ? n - i : 160, count_event, &e);
  CHECK(e.finals == 1, "%d finals", e.finals);
  CHECK(e.partials >= 2, "%d partials over 1.5 s of speech", e.partials);
  CHECK(!strcmp(e.text, "a"), "text \"%s\"", e.text);
  /* the segment starts within the pre-roll before the burst and ends within the hangover after it */
  CHECK(e.start >= rate - rate * (o.preroll_ms + 100) / 1000 && e.start <= rate, "start %lld", (long long)e.start);
  CHECK(e.end >= rate * 5 / 2 && e.end <= rate * 5 / 2 + rate * (o.hangover_ms + 100) / 1000, "end %lld", (long long)e.end);
  CHECK(!e2e_asr_stream_in_speech(st), "closed after the hangover");
  /* silence and steady noise only: nothing; single samples work */
  e2e_asr_stream_reset(st);
  events q = {0};
  for (int i = 0; i < rate; i++) {
    float v = 0.01f * nn_rng_normal(&r);
    e2e_asr_stream_push(st, &v, 1, count_event, &q);
  }
  CHECK(e2e_asr_stream_flush(st, count_event, &q) && q.finals == 0, "steady noise gave %d finals", q.finals);
  /* a burst cut by the end of the stream is finalised by flush */
  e2e_asr_stream_reset(st);
  events c = {0};
  e2e_asr_stream_push(st, x, rate * 2, count_event, &c);
  CHECK(c.finals == 0 && e2e_asr_stream_in_speech(st), "open at the cut");
  CHECK(e2e_asr_stream_flush(st, count_event, &c) && c.finals == 1 && !strcmp(c.text, "a"), "flush finalises");
  /* never longer than max-segment */
  e2e_asr_stream_free(st);
  o.max_segment_ms = 1000;
  st = e2e_asr_stream_new(s, &o, &d);
  events l = {0};
  for (int i = 0; i < n; i++) x[i] = 0.001f * nn_rng_normal(&r) + (i >= rate / 2 ? 0.3f * nn_rng_normal(&r) : 0.0f);
  e2e_asr_stream_push(st, x, n, count_event, &l);
  CHECK(l.finals >= 3, "3.5 s of speech cut into %d segments of at most 1 s", l.finals);
  o.hangover_ms = 0;
  CHECK(!e2e_asr_stream_new(s, &o, &d), "hangover 0 refused");
  e2e_asr_stream_free(st);
  free(x);
  e2e_session_free(s);
  e2e_slot_unref(slot);
  e2e_model_unref(m);
}

TEST(recogniser_files_round_trip_and_bad_ones_are_refused) {
  e2e_model *m = say_a_model();
  char *path = g_strdup_printf("%s/e2e-test-asr-%d.safetensors", g_get_tmp_dir(), (int)getpid());
  CHECK(e2e_model_save(m, path, NULL, 0), "save");
  e2e_model *o = e2e_model_open(path, E2E_TASK_ASR);
  nn_params *p = e2e_model_ops(m)->params(e2e_model_impl(m));
  CHECK(o && e2e_model_describe(o)->task == E2E_TASK_ASR && e2e_model_describe(o)->id == e2e_params_hash(p),
        "reopened with the same weights id");
  CHECK(!e2e_model_open(path, E2E_TASK_DETECT) && strstr(nn_last_error(), "asr model"), "task checked: %s", nn_last_error());
  /* a non-finite weight is refused with the tensor named */
  nn_f32(nn_params_find(p, "ctc.bias"))[0] = NAN;
  CHECK(e2e_model_save(m, path, NULL, 0), "save");
  CHECK(!e2e_model_open(path, E2E_TASK_ASR) && strstr(nn_last_error(), "ctc.bias"), "NaN weight: %s", nn_last_error());
  e2e_model_unref(o);
  e2e_model_unref(m);
  unlink(path);
  g_free(path);
}

