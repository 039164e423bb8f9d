/* Speech synthesis: the text front end (numbers, dates, times, amounts, abbreviations, hostile text), sentence
 * splitting, step-by-step synthesis against the whole-sequence network, the vocoder's convergence, and a
 * tiny synthesiser that must learn. */
#include <glib.h>
#include <math.h>

#include "e2e/tts.h"
#include "harness.h"
#include "task.h" /* e2e_save_params: a file with hand-written metadata */
#include "tts/synth.h"

static void expect_normal(const char *in, const char *want) {
  char *got = e2e_tts_normalize(in, strlen(in), NULL, NULL);
  CHECK(!strcmp(got, want), "\"%s\" -> \"%s\", want \"%s\"", in, got, want);
  g_free(got);
}

TEST(numbers_dates_times_and_amounts_are_read_out) {
  expect_normal("In 1862 he was 21.", "in eighteen sixty two he was twenty one.");
  expect_normal("It cost $3.50, not $1.", "it cost three dollars and fifty cents, not one dollar.");
  expect_normal("Profits of $5 million", "profits of five million dollars");
  expect_normal("On March 3, 2024 at 10:30 pm", "on march third, twenty twenty four at ten thirty p m");
  expect_normal("Meet at 7:05 or 10:00.", "meet at seven oh five or ten o'clock.");
  expect_normal("2024-03-14", "march fourteenth twenty twenty four");
  expect_normal("the 1st, 2nd, 3rd, 11th and 22nd", "the first, second, third, eleventh and twenty second");
  expect_normal("1,234,567 people, 3.14 and 45%", "one million two hundred thirty four thousand five hundred sixty seven "
                "people, three point one four and forty five percent");
  expect_normal("in 2000 and 2005 and 1900", "in two thousand and two thousand five and nineteen hundred");
  expect_normal("Call 555-1234.", "call five five five, one two three four.");
  expect_normal("pages 3-5 of 007", "pages three to five of zero zero seven");
  expect_normal("it was -5 degrees", "it was minus five degrees");
  expect_normal("\xc2\xa3" "10 and \xe2\x82\xac" "2", "ten pounds and two euros");
}

TEST(abbreviations_acronyms_and_punctuation_become_words_and_pauses) {
  expect_normal("Mr. Smith met Dr. Jones; e.g. at St. Paul's.", "mister smith met doctor jones, for example at saint paul's.");
  expect_normal("The FBI and NASA", "the f b i and nasa");
  expect_normal("Henry VIII, Chapter IV", "henry eight, chapter four");
  expect_normal("Tom & Jerry (cartoon)!", "tom and jerry, cartoon!");
  expect_normal("\"Hello,\" she said -- well...", "hello, she said well.");
  expect_normal("Caf\xc3\xa9 d\xc3\xa9j\xc3\xa0 vu, na\xc3\xafve", "cafe deja vu, naive");
  expect_normal("Wait?!", "wait?");
  /* abbreviations that are everyday words stay words unless written as abbreviations mid-sentence */
  expect_normal("We sat. I said no. The Sun. Meet on Sat. at 5, No. 7, Wed. the 3rd, No. C2.",
                "we sat. i said no. the sun. meet on saturday at five, number seven, wednesday the third, number c two.");
}

static int drops;
static void count_drop(const char *what, void *ctx) {
  (void)what, (void)ctx;
  drops++;
}

TEST(hostile_text_gives_clean_output_and_says_what_was_dropped) {
  drops = 0;
  expect_normal("", "");
  expect_normal("...!?,", "");
  const char *hostile = "ok \xf0\x9f\x99\x82 \xff\xfe bad\x01 \xe4\xb8\xad";
  char *got = e2e_tts_normalize(hostile, strlen(hostile), count_drop, NULL);
  CHECK(!strcmp(got, "ok bad"), "got \"%s\"", got);
  CHECK(drops == 3, "each kind of dropped input reported once (%d reports)", drops);
  g_free(got);
  /* a 10-digit number is read digit by digit; 100 kB of text stays within its letters */
  expect_normal("9876543210", "nine eight seven six five four three two one zero");
  size_t n = 100000;
  char *big = malloc(n + 1);
  for (size_t i = 0; i < n; i++) big[i] = "12345 six. "[i % 11];
  big[n] = '\0';
  got = e2e_tts_normalize(big, n, NULL, NULL);
  bool clean = true;
  for (const char *p = got; *p; p++) clean &= e2e_tts_label((unsigned char)*p) >= 0;
  CHECK(clean && strlen(got) > n, "100 kB of digits normalised to %zu clean characters", strlen(got));
  char **s = e2e_tts_sentences(got, 200);
  int k = 0;
  bool short_ = true;
  for (char **p = s; *p; p++, k++) short_ &= strlen(*p) <= 200 && strlen(*p) > 0;
  CHECK(k > 1000 && short_, "%d sentences, each within 200 characters", k);
  g_strfreev(s);
  g_free(got);
  free(big);
}

TEST(sentences_split_at_ends_then_commas_then_spaces) {
  char **s = e2e_tts_sentences("one two. three, four five? six", 100);
  CHECK(g_strv_length(s) == 3 && !strcmp(s[0], "one two.") && !strcmp(s[1], "three, four five?") && !strcmp(s[2], "six"),
        "split into %u", g_strv_length(s));
  g_strfreev(s);
  s = e2e_tts_sentences("aaaa bbbb, cccc dddd eeee ffff gggg", 20);
  CHECK(g_strv_length(s) == 3 && !strcmp(s[0], "aaaa bbbb,"), "long sentence cut at the comma first (%s)", s[0]);
  g_strfreev(s);
}

static tts_model tiny_model(void) {
  tts_config c = tts_config_default();
  c.embed = 16, c.text_dim = 16, c.dim = 16, c.audio_layers = 4, c.dec_layers = 3, c.n_mels = 8;
  e2e_mel_config mel = tts_mel_default();
  mel.n_mels = 8;
  tts_model m;
  CHECK(tts_init(&m, &c, &mel, 7), "tiny model: %s", nn_last_error());
  return m;
}

/* Step-by-step synthesis feeds its own frames back; the whole-sequence network, given those frames as the
 * previous steps, must produce the same outputs (with attention over the whole text, as in training). */
TEST(step_by_step_synthesis_matches_the_training_network) {
  tts_model m = tiny_model();
  const char *text = "hello there.";
  uint8_t labels[16];
  int n = 0;
  for (const char *p = text; *p; p++) labels[n++] = (uint8_t)e2e_tts_label(*p);
  int steps = 40, rm = m.cfg.reduction * m.cfg.n_mels;
  tts_synth *s = tts_synth_new(&m, labels, n, steps, TTS_SYNTH_FULL_ATTENTION | TTS_SYNTH_RECORD_ATTENTION);
  CHECK(s != NULL, "synth: %s", nn_last_error());
  if (!s) return;
  float *frames = malloc(sizeof(float) * steps * rm), *stop = malloc(sizeof(float) * steps);
  for (int t = 0; t < steps; t++) CHECK(tts_synth_step(s, frames + t * rm, stop + t) >= 0, "step %d", t);
  float extra[64], p;
  CHECK(tts_synth_step(s, extra, &p) == -1, "the length guard stops the decode at max_steps");
  /* the same through tts_decode: prev = the normalised frames of the step before */
  nn_no_grad_begin();
  nn_tensor *tx = nn_empty(NN_I64, 2, (int64_t[]){1, n + 1});
  for (int i = 0; i < n; i++) ((int64_t *)nn_data(tx))[i] = labels[i];
  ((int64_t *)nn_data(tx))[n] = E2E_TTS_END;
  int64_t len = n + 1;
  nn_tensor *k, *v, *a;
  tts_encode_text(&m, tx, &len, &k, &v);
  nn_tensor *prev = nn_zeros(NN_F32, 3, (int64_t[]){1, steps, rm});
  memcpy(nn_f32(prev) + rm, frames, sizeof(float) * (steps - 1) * rm);
  nn_tensor *out = nn_contiguous(tts_decode(&m, prev, k, v, &len, false, NULL, &a));
  double worst = 0, worst_stop = 0;
  for (int t = 0; t < steps; t++) {
    for (int j = 0; j < rm; j++) worst = fmax(worst, fabs(nn_f32(out)[t * (rm + 1) + j] - frames[t * rm + j]));
    double ps = 1.0 / (1.0 + exp(-nn_f32(out)[t * (rm + 1) + rm]));
    worst_stop = fmax(worst_stop, fabs(ps - stop[t]));
  }
  nn_no_grad_end();
  CHECK(worst < 1e-4 && worst_stop < 1e-5, "step-by-step vs whole sequence: frames %g, stop %g", worst, worst_stop);
  free(frames), free(stop);
  tts_synth_free(s);
  tts_free(&m);
}

/* The contrast stretches the frames that are heard around the voice's mean and nothing else (the network is
 * fed what it predicted, before the stretch). The file keeps the setting, and a file whose setting is not
 * a usable number is refused. */
TEST(contrast_stretches_what_is_heard_and_is_kept_in_the_file) {
  tts_model m = tiny_model();
  CHECK(m.contrast == 1.0f, "a new model speaks as predicted (%g)", m.contrast);
  uint8_t labels[16];
  int n = 0;
  for (const char *p = "a cat sat."; *p; p++) labels[n++] = (uint8_t)e2e_tts_label(*p);
  int steps = 12, rm = m.cfg.reduction * m.cfg.n_mels, M = m.cfg.n_mels;
  for (int j = 0; j < M; j++) nn_f32(m.mel_mean)[j] = -3.0f + 0.1f * j, nn_f32(m.mel_std)[j] = 2.0f;
  tts_synth *s = tts_synth_new(&m, labels, n, steps, 0);
  float norm[64], a[64], b[64], p;
  const float *mean = nn_f32(m.mel_mean), *sd = nn_f32(m.mel_std);
  double worst = 0, moved = 0, plain = 0;
  for (int t = 0; t < steps; t++) {
    CHECK(tts_synth_step(s, norm, &p) >= 0, "step %d", t);
    tts_heard_frames(&m, 1.0f, norm, m.cfg.reduction, a);
    tts_heard_frames(&m, 1.5f, norm, m.cfg.reduction, b);
    for (int j = 0; j < rm; j++) {
      double mu = mean[j % M];
      plain = fmax(plain, fabs(a[j] - (norm[j] * sd[j % M] + mu)));
      worst = fmax(worst, fabs((b[j] - mu) - 1.5 * (a[j] - mu)));
      moved = fmax(moved, fabs(b[j] - a[j]));
    }
  }
  CHECK(plain < 1e-5, "contrast 1: the voice's own scale and mean (off by %g)", plain);
  CHECK(worst < 1e-4 && moved > 1e-3, "stretched frames: off by %g from 1.5x, moved up to %g", worst, moved);
  tts_synth_free(s);

  char *path = g_strdup_printf("%s/e2e-test-tts-contrast-%d.safetensors", g_get_tmp_dir(), (int)getpid());
  m.contrast = 1.3f;
  CHECK(tts_save(&m, path, NULL, 0), "save: %s", nn_last_error());
  tts_model back;
  CHECK(tts_load(&back, path) && back.contrast == 1.3f, "the file keeps the contrast");
  tts_free(&back);
  char *cfg = tts_config_json(&m.cfg), *mel = tts_mel_json(&m.mel);
  for (int i = 0; i < 3; i++) {
    const char *bad = (const char *[]){"7", "nan", "1.2x"}[i];
    nn_kv meta[] = {{"architecture", TTS_ARCH}, {"config", cfg}, {"mel", mel}, {"contrast", bad}};
    CHECK(e2e_save_params(path, &m.p, meta, 4, NULL, 0), "save: %s", nn_last_error());
    CHECK(!tts_load(&back, path) && strstr(nn_last_error(), "contrast"), "contrast '%s' refused: %s", bad, nn_last_error());
  }
  g_free(cfg), g_free(mel);
  remove(path);
  g_free(path);
  tts_free(&m);
}

/* The postnet synthesis runs window by window (plain arrays, waiting for its right context) must give what
 * the training graph gives on the whole sequence, past-the-end frames taken as zeros in both; and a model
 * saved with a postnet loads with it. */
TEST(postnet_windows_match_the_training_network) {
  tts_config c = tts_config_default();
  c.embed = 16, c.text_dim = 16, c.dim = 16, c.audio_layers = 2, c.dec_layers = 2, c.n_mels = 8;
  c.postnet_layers = 3, c.postnet_dim = 12;
  e2e_mel_config mel = tts_mel_default();
  mel.n_mels = 8;
  tts_model m;
  CHECK(tts_init(&m, &c, &mel, 11), "model with a postnet: %s", nn_last_error());
  int M = 8, T = 37, reach = tts_postnet_reach(&c);
  CHECK(reach == 6, "three layers of five taps reach %d frames", reach);
  nn_rng rng;
  nn_rng_seed(&rng, 5);
  /* the last layer starts at zero (no change); give it weights so the test sees it */
  for (int64_t i = 0; i < nn_numel(m.post[2].weight); i++) nn_f32(m.post[2].weight)[i] = 0.3f * nn_rng_normal(&rng);
  for (int j = 0; j < M; j++) nn_f32(m.post[2].bias)[j] = 0.1f * j;
  float *x = malloc(sizeof(float) * T * M), *win = malloc(sizeof(float) * T * M);
  for (int i = 0; i < T * M; i++) x[i] = nn_rng_normal(&rng);
  nn_no_grad_begin();
  int64_t len = T;
  nn_tensor *in = nn_tensor_from_data(NN_F32, 3, (int64_t[]){1, T, M}, x);
  nn_tensor *want = nn_contiguous(tts_postnet(&m, in, &len));
  /* windows as the stream takes them: the first two with only b + reach frames decoded so far */
  int cuts[5] = {0, 5, 21, 30, T};
  for (int k = 0; k < 4; k++) {
    int a = cuts[k], b = cuts[k + 1], n = k < 2 ? b + reach : T;
    CHECK(tts_postnet_frames(&m, x, n, a, b, win + a * M), "window %d..%d", a, b);
  }
  double worst = 0, change = 0;
  for (int i = 0; i < T * M; i++) {
    worst = fmax(worst, fabs(win[i] - nn_f32(want)[i]));
    change = fmax(change, fabs(win[i] - x[i]));
  }
  nn_no_grad_end();
  CHECK(worst < 1e-4 && change > 0.1, "windows vs whole sequence: off by %g (the postnet changes frames by up to %g)",
        worst, change);
  char *path = g_strdup_printf("%s/e2e-test-tts-postnet-%d.safetensors", g_get_tmp_dir(), (int)getpid());
  tts_model back;
  CHECK(tts_save(&m, path, NULL, 0) && tts_load(&back, path), "save and load: %s", nn_last_error());
  CHECK(back.cfg.postnet_layers == 3 && back.cfg.postnet_dim == 12 &&
            nn_f32(back.post[2].weight)[5] == nn_f32(m.post[2].weight)[5], "the postnet comes back");
  tts_free(&back);
  remove(path);
  g_free(path);
  nn_tensor_free(in);
  free(x), free(win);
  tts_free(&m);
}

/* Griffin-Lim on the log-mel of held-out speech (tests/data): the log-mel of what it returns must come close
 * to the target's, and more iterations must do better. */
TEST(vocoder_converges_to_the_spectrogram_it_is_given) {
  e2e_mel_config c = tts_mel_default();
  const char *root = getenv("E2E_SOURCE_ROOT");
  char *path = g_strdup_printf("%s/tests/data/speech-heldout.flac", root ? root : ".");
  float *x = NULL;
  int64_t n = 0;
  CHECK(e2e_sound_read_at(path, c.sample_rate, &x, &n), "read %s", path);
  g_free(path);
  if (!x) return;
  n = n > 4 * 16000 ? 4 * 16000 : n; /* the first utterance */
  e2e_audio_fe *fe = e2e_audio_fe_new(&c);
  int64_t T = e2e_audio_frames(&c, n);
  float *lm = malloc(sizeof(float) * T * c.n_mels), *lm2 = malloc(sizeof(float) * T * c.n_mels);
  e2e_log_mel(fe, x, n, lm);
  tts_vocoder *v = tts_vocoder_new(&c);
  CHECK(v != NULL, "vocoder: %s", nn_last_error());
  double err[2];
  int iters[2] = {2, 32};
  for (int k = 0; k < 2; k++) {
    float *y = NULL;
    int64_t ny = 0;
    CHECK(tts_vocoder_run(v, lm, T, iters[k], &y, &ny) && ny == (T - 1) * c.hop + c.n_fft, "vocoder run");
    e2e_log_mel(fe, y, ny, lm2);
    /* mean log-mel distance in natural-log units; the edge frames have no overlap to agree with, and
     * bands 60 dB and more below full scale do not count */
    double s = 0;
    int cnt = 0;
    for (int64_t i = 3 * c.n_mels; i < (T - 3) * c.n_mels; i++)
      if (lm[i] > -8) s += fabs(lm[i] - lm2[i]), cnt++;
    err[k] = s / (cnt ? cnt : 1);
    free(y);
  }
  CHECK(err[1] < 0.3 && err[1] < 0.7 * err[0], "log-mel error after 2 / 32 iterations: %.3f / %.3f", err[0], err[1]);
  tts_vocoder_free(v);
  e2e_audio_fe_free(fe);
  free(x), free(lm), free(lm2);
}

/* A tiny synthesiser learns two "utterances" (fixed mel patterns for two texts) for a few hundred steps:
 * its L1 loss must fall well below where it starts, and the attention must learn to move forward. */
TEST(a_tiny_synthesiser_learns) {
  tts_model m = tiny_model();
  m.cfg.prenet_dropout = 0.0f;
  int rm = m.cfg.reduction * m.cfg.n_mels, S = 12, L = 5;
  nn_tensor *tx = nn_tensor_new(NN_I64, 2, (int64_t[]){2, L});
  const char *texts[2] = {"abcd", "wxyz"};
  for (int i = 0; i < 2; i++) {
    for (int l = 0; l < 4; l++) ((int64_t *)nn_data(tx))[i * L + l] = e2e_tts_label(texts[i][l]);
    ((int64_t *)nn_data(tx))[i * L + 4] = E2E_TTS_END;
  }
  nn_tensor *target = nn_tensor_new(NN_F32, 3, (int64_t[]){2, S, rm}), *prev = nn_tensor_new(NN_F32, 3, (int64_t[]){2, S, rm});
  for (int i = 0; i < 2; i++)
    for (int t = 0; t < S; t++)
      for (int j = 0; j < rm; j++) {
        /* each character owns three steps and a pattern of its own */
        int ch = t / 3;
        nn_f32(target)[(i * S + t) * rm + j] = sinf(1.7f * (float)(texts[i][ch] - 'a') + 0.9f * (float)j);
        if (t + 1 < S) nn_f32(prev)[(i * S + t + 1) * rm + j] = nn_f32(target)[(i * S + t) * rm + j];
      }
  int64_t len[2] = {L, L};
  nn_optim *opt = nn_optim_new(&m.p, nn_optim_defaults(NN_ADAM, 3e-3f));
  double first = 0, last = 0;
  for (int step = 0; step < 300; step++) {
    nn_optim_zero_grad(opt);
    nn_tensor *k, *v, *a;
    tts_encode_text(&m, tx, len, &k, &v);
    nn_tensor *out = tts_decode(&m, prev, k, v, len, true, NULL, &a);
    nn_tensor *loss = nn_mean_all(nn_abs(nn_sub(nn_slice(out, 2, 0, rm, 1), target)));
    CHECK(loss && nn_backward(loss), "step %d: %s", step, nn_last_error());
    if (!loss) break;
    if (step == 0) first = nn_item(loss);
    last = nn_item(loss);
    nn_optim_step(opt);
    nn_arena_reset(nn_arena_current());
  }
  CHECK(last < 0.25 * first, "L1 from %.4f to %.4f", first, last);
  nn_optim_free(opt);
  nn_tensor_free(tx), nn_tensor_free(target), nn_tensor_free(prev);
  tts_free(&m);
}
