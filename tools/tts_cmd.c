/* e2e tts: speech synthesis from the command line, and the text front end on its own (what the training
 * recipe feeds the teacher voice, so the voice reads exactly what the model will be given). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <glib.h>

#include "../models/tts/synth.h" /* the vocoder, for e2e tts vocode */
#include "e2e.h"
#include "plot.h"
#include "e2e/audio.h"
#include "e2e/model.h"
#include "e2e/tts.h"

static void dropped_to_stderr(const char *what, void *ctx) {
  fprintf(stderr, "e2e tts normalize: line %d: dropped %s\n", *(int *)ctx, what);
}

/* One line in, one normalised line out; "ID|text" keeps its ID. */
static int normalize_lines(int argc, char **argv) {
  (void)argv;
  if (argc != 0) {
    fprintf(stderr, "usage: e2e tts normalize < TEXT   (one line in, one line out; 'ID|text' keeps ID)\n");
    return 2;
  }
  char *line = NULL;
  size_t cap = 0;
  ssize_t n;
  int lineno = 0;
  while ((n = getline(&line, &cap, stdin)) >= 0) {
    lineno++;
    while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r')) line[--n] = '\0';
    char *bar = strchr(line, '|'), *text = bar ? bar + 1 : line;
    char *out = e2e_tts_normalize(text, strlen(text), dropped_to_stderr, &lineno);
    if (bar) printf("%.*s|%s\n", (int)(bar - line), line, out);
    else printf("%s\n", out);
    g_free(out);
  }
  free(line);
  return 0;
}

/* The spoken audio's log-mel and the first sentence's attention alignment, as two heat maps. */
static bool plot_speech(const char *model_path, const char *text, const float *y, int64_t ny, const char *png) {
  tts_model m;
  if (!tts_load(&m, model_path)) return false;
  int M = m.mel.n_mels;
  e2e_audio_fe *fe = e2e_audio_fe_new(&m.mel);
  int64_t T = e2e_audio_frames(&m.mel, ny);
  float *lm = malloc(sizeof(float) * (size_t)(T > 0 ? T : 1) * M), *spec = malloc(sizeof(float) * (size_t)(T > 0 ? T : 1) * M);
  e2e_log_mel(fe, y, ny, lm);
  for (int64_t t = 0; t < T; t++)
    for (int j = 0; j < M; j++) spec[j * T + t] = fmaxf(lm[t * M + j], -12.0f);
  char *norm = e2e_tts_normalize(text, strlen(text), NULL, NULL);
  char **ss = e2e_tts_sentences(norm, 300);
  size_t len = ss[0] ? strlen(ss[0]) : 0;
  uint8_t *labels = malloc(len + 1);
  int c = 0;
  for (size_t i = 0; i < len; i++) {
    int l = e2e_tts_label((unsigned char)ss[0][i]);
    if (l >= 0) labels[c++] = (uint8_t)l;
  }
  tts_synth *s = tts_synth_new(&m, labels, c, 20 + 3 * (c + 1), TTS_SYNTH_RECORD_ATTENTION);
  float frames[1024], stop;
  while (s && tts_synth_step(s, frames, &stop) >= 0 && !tts_synth_finished(s)) {
  }
  int steps = s ? (int)tts_synth_steps(s) : 0, L = c + 1;
  float *att = malloc(sizeof(float) * (size_t)(steps > 0 ? steps : 1) * L);
  for (int t = 0; s && t < steps; t++)
    for (int l = 0; l < L; l++) att[l * steps + t] = tts_synth_attention(s)[t * L + l];
  char title[400];
  snprintf(title, sizeof title, "attention, first sentence: \"%.300s\"", ss[0] ? ss[0] : "");
  plot_heatmap maps[2] = {{"log-mel spectrogram of the output (16 kHz, 80 bands)", "frame (12.5 ms)", "mel band", spec, M, (int)T},
                          {title, "decoder step (50 ms)", "character", att, L, steps}};
  bool ok = T > 0 && steps > 0 && plot_heatmaps_png(png, maps, 2);
  tts_synth_free(s);
  free(att), free(labels), free(lm), free(spec);
  g_strfreev(ss);
  g_free(norm);
  e2e_audio_fe_free(fe);
  tts_free(&m);
  return ok;
}

/* Text to a WAV file through a synthesis stream: the element's code path. */
static int speak(int argc, char **argv) {
  const char *model_path = NULL, *out_path = NULL, *text = NULL, *plot = NULL;
  e2e_tts_opts o = e2e_tts_opts_default();
  for (int i = 0; i < argc; i++) {
    if (!strcmp(argv[i], "--model") && i + 1 < argc) model_path = argv[++i];
    else if (!strcmp(argv[i], "-o") && i + 1 < argc) out_path = argv[++i];
    else if (!strcmp(argv[i], "--iterations") && i + 1 < argc) o.iterations = atoi(argv[++i]);
    else if (!strcmp(argv[i], "--rate") && i + 1 < argc) o.rate = (float)atof(argv[++i]);
    else if (!strcmp(argv[i], "--plot") && i + 1 < argc) plot = argv[++i];
    else if (!strcmp(argv[i], "--dropout")) o.prenet_dropout = true;
    else if (!strcmp(argv[i], "--contrast") && i + 1 < argc) o.contrast = (float)atof(argv[++i]);
    else if (!text) text = argv[i];
    else text = NULL, out_path = NULL, i = argc;
  }
  if (!text || !out_path) {
    fprintf(stderr, "usage: e2e tts [--model FILE] [--rate X] [--iterations N] [--contrast X] [--plot PNG] \"TEXT\" -o OUT.wav\n"
                    "  --contrast X the spectrogram's stretch from the voice's mean (0.5..2; default: the model's own)\n"
                    "  --plot PNG   the output's log-mel spectrogram and the first sentence's attention alignment\n"
                    "usage: e2e tts set-contrast MODEL X -o OUT   a copy of MODEL that speaks with contrast X\n");
    return 2;
  }
  char *def = model_path ? NULL : e2e_default_model(E2E_TASK_TTS);
  if (!model_path) model_path = def;
  e2e_slot *slot = e2e_slot_open(NULL, model_path, E2E_TASK_TTS);
  if (!slot) {
    fprintf(stderr, "e2e tts: %s\n", e2e_last_error());
    free(def);
    return 1;
  }
  e2e_session *session = e2e_session_new(slot, 0);
  e2e_tts_stream *st = e2e_tts_stream_new(session, &o);
  if (!st) {
    fprintf(stderr, "e2e tts: %s\n", e2e_last_error());
    return 1;
  }
  double t0 = e2e_now_s(), first = -1;
  e2e_tts_stream_say(st, text, strlen(text), NULL, NULL);
  GArray *y = g_array_new(FALSE, FALSE, sizeof(float));
  float buf[4096];
  e2e_tts_word words[64];
  int n_words, guards = 0;
  bool guard;
  int64_t n;
  while ((n = e2e_tts_stream_next(st, buf, 4096, words, 64, &n_words, &guard)) > 0) {
    if (first < 0) first = e2e_now_s() - t0;
    g_array_append_vals(y, buf, (guint)n);
    guards += guard;
    for (int i = 0; i < n_words; i++)
      printf("%8.3f s  %s\n", (double)words[i].sample / e2e_tts_stream_sample_rate(st), words[i].word);
  }
  double total = e2e_now_s() - t0, secs = (double)y->len / e2e_tts_stream_sample_rate(st);
  bool ok = n == 0 && e2e_wav_write(out_path, (float *)y->data, y->len, e2e_tts_stream_sample_rate(st));
  if (ok)
    printf("%s: %.2f s of audio; first audio after %.3f s, all in %.3f s: real-time factor %.3f%s\n", out_path, secs,
           first, total, secs > 0 ? total / secs : 0.0, guards ? " (the length guard ended a sentence)" : "");
  else
    fprintf(stderr, "e2e tts: %s\n", n < 0 ? e2e_last_error() : "nothing to say");
  if (ok && plot && !plot_speech(model_path, text, (float *)y->data, y->len, plot)) fprintf(stderr, "e2e tts: no plot\n");
  free(def);
  g_array_free(y, TRUE);
  e2e_tts_stream_free(st);
  e2e_session_free(session);
  e2e_slot_unref(slot);
  return ok ? 0 : 1;
}

/* A sound file through the synthesiser's features and back through the vocoder: what the vocoder alone
 * costs (its ceiling), heard or measured. */
static int vocode(int argc, char **argv) {
  int iterations = 32;
  const char *in = NULL, *out = NULL;
  for (int i = 0; i < argc; i++) {
    if (!strcmp(argv[i], "-o") && i + 1 < argc) out = argv[++i];
    else if (!strcmp(argv[i], "--iterations") && i + 1 < argc) iterations = atoi(argv[++i]);
    else in = argv[i];
  }
  if (!in || !out || iterations < 1 || iterations > 1000) {
    fprintf(stderr, "usage: e2e tts vocode [--iterations N] IN.wav -o OUT.wav\n");
    return 2;
  }
  e2e_mel_config mel = tts_mel_default();
  float *x = NULL, *y = NULL;
  int64_t n = 0, ny = 0;
  if (!e2e_sound_read_at(in, mel.sample_rate, &x, &n)) {
    fprintf(stderr, "e2e tts vocode: %s\n", nn_last_error());
    return 1;
  }
  int64_t T = e2e_audio_frames(&mel, n);
  e2e_audio_fe *fe = e2e_audio_fe_new(&mel);
  tts_vocoder *v = tts_vocoder_new(&mel);
  float *lm = malloc(sizeof(float) * (size_t)(T > 0 ? T : 1) * mel.n_mels);
  e2e_log_mel(fe, x, n, lm);
  bool ok = v && tts_vocoder_run(v, lm, T, iterations, &y, &ny) && e2e_wav_write(out, y, ny, mel.sample_rate);
  if (!ok) fprintf(stderr, "e2e tts vocode: %s\n", nn_last_error());
  free(x), free(y), free(lm);
  tts_vocoder_free(v);
  e2e_audio_fe_free(fe);
  return ok ? 0 : 1;
}

/* e2e eval tts: held-out sentences through the synthesiser. Writes what it said (DIR/ID.wav and
 * DIR/e2etts.tsv, for pocketsphinx and e2e eval asr), and reports the attention's robustness (sentences
 * whose length guard fired; sentences with a word none of whose letters held the attention's maximum),
 * the real-time factor, and the time to first audio of a 20-word sentence. */
int e2e_eval_tts(int argc, char **argv) {
  const char *model_path = NULL, *list = NULL, *dir = NULL;
  int max = 200;
  e2e_tts_opts o = e2e_tts_opts_default();
  for (int i = 0; i < argc; i++) {
    if (!strcmp(argv[i], "--model") && i + 1 < argc) model_path = argv[++i];
    else if (!strcmp(argv[i], "--dropout")) o.prenet_dropout = true;
    else if (!strcmp(argv[i], "--contrast") && i + 1 < argc) o.contrast = (float)atof(argv[++i]);
    else if (!strcmp(argv[i], "--out") && i + 1 < argc) dir = argv[++i];
    else if (!strcmp(argv[i], "--max") && i + 1 < argc) max = atoi(argv[++i]);
    else list = argv[i];
  }
  if (!list || !dir || max < 1) {
    fprintf(stderr, "usage: e2e eval tts [--model FILE] [--max N] [--contrast X] --out DIR LIST.tsv   (LIST: path<TAB>id<TAB>text)\n");
    return 2;
  }
  char *def = model_path ? NULL : e2e_default_model(E2E_TASK_TTS);
  const char *mp = model_path ? model_path : def;
  tts_model m;
  e2e_slot *slot = e2e_slot_open(NULL, mp, E2E_TASK_TTS);
  if (!slot || !tts_load(&m, mp)) {
    fprintf(stderr, "e2e eval tts: %s\n", e2e_last_error());
    free(def);
    return 1;
  }
  free(def);
  g_mkdir_with_parents(dir, 0755);
  e2e_session *session = e2e_session_new(slot, 0);
  e2e_tts_stream *st = e2e_tts_stream_new(session, &o);
  FILE *in = fopen(list, "r");
  char *out_list = g_strdup_printf("%s/e2etts.tsv", dir);
  FILE *out = fopen(out_list, "w");
  if (!st || !in || !out) {
    fprintf(stderr, "e2e eval tts: cannot read %s or write %s\n", list, out_list);
    return 1;
  }
  char line[16384];
  int n = 0, guards = 0, skips = 0, sentences = 0;
  double audio_s = 0, busy_s = 0;
  float *buf = malloc(sizeof(float) * 4096);
  while (n < max && fgets(line, sizeof line, in)) {
    line[strcspn(line, "\r\n")] = '\0';
    char *id = strchr(line, '\t'), *text = id ? strchr(id + 1, '\t') : NULL;
    if (!id || !text) continue;
    *id++ = '\0';
    *text++ = '\0';
    /* the audio, as the element makes it */
    double t0 = e2e_now_s();
    e2e_tts_stream_say(st, text, strlen(text), NULL, NULL);
    GArray *y = g_array_new(FALSE, FALSE, sizeof(float));
    int64_t k;
    bool guard = false, g;
    while ((k = e2e_tts_stream_next(st, buf, 4096, NULL, 0, NULL, &g)) > 0) g_array_append_vals(y, buf, (guint)k), guard |= g;
    busy_s += e2e_now_s() - t0;
    audio_s += (double)y->len / m.mel.sample_rate;
    char *wav = g_strdup_printf("%s/%s.wav", dir, id);
    if (k == 0 && e2e_wav_write(wav, (float *)y->data, y->len, m.mel.sample_rate)) fprintf(out, "%s\te2etts\t%s\n", wav, text);
    g_free(wav);
    g_array_free(y, TRUE);
    guards += guard;
    /* the attention, sentence by sentence: a letter that never holds the maximum was skipped */
    char *norm = e2e_tts_normalize(text, strlen(text), NULL, NULL);
    char **ss = e2e_tts_sentences(norm, 300);
    bool skipped = false;
    for (char **sp = ss; *sp; sp++) {
      size_t len = strlen(*sp);
      uint8_t *labels = malloc(len + 1);
      char *chars = malloc(len + 1);
      int c = 0;
      for (size_t i = 0; i < len; i++) {
        int l = e2e_tts_label((unsigned char)(*sp)[i]);
        if (l >= 0) labels[c] = (uint8_t)l, chars[c++] = (*sp)[i];
      }
      tts_synth *s = tts_synth_new(&m, labels, c, 20 + 3 * (c + 1),
                                   TTS_SYNTH_RECORD_ATTENTION | (o.prenet_dropout ? TTS_SYNTH_PRENET_DROPOUT : 0));
      bool *held = calloc((size_t)c + 1, 1);
      float frames[1024], stop;
      while (s && tts_synth_step(s, frames, &stop) >= 0) {
        const float *a = tts_synth_attention(s) + (tts_synth_steps(s) - 1) * (c + 1);
        int best = 0;
        for (int l = 1; l <= c; l++)
          if (a[l] > a[best]) best = l;
        held[best] = true;
        if (tts_synth_finished(s)) break;
      }
      /* at 4 frames a step the attention passes more than one letter per step, so a single letter may
       * never hold the maximum in good speech; a whole word none of whose letters does is a skip */
      for (int l = 0; l < c;) {
        if (chars[l] == ' ') {
          l++;
          continue;
        }
        bool any = false, letters = false;
        int w0 = l;
        for (; l < c && chars[l] != ' '; l++) {
          any |= held[l];
          letters |= chars[l] >= 'a' && chars[l] <= 'z';
        }
        if (letters && !any) printf("possible skip: %s: \"%.*s\"\n", id, l - w0, chars + w0); /* to listen to */
        skipped |= letters && !any;
      }
      sentences++;
      free(held), free(labels), free(chars);
      tts_synth_free(s);
    }
    skips += skipped;
    g_strfreev(ss);
    g_free(norm);
    n++;
  }
  fclose(in);
  fclose(out);
  /* time to the first audio of a 20-word sentence */
  const char *twenty = "The committee will meet again on Tuesday morning to decide how the new library should spend "
                       "its money next year.";
  double t0 = e2e_now_s();
  e2e_tts_stream_say(st, twenty, strlen(twenty), NULL, NULL);
  e2e_tts_stream_next(st, buf, 4096, NULL, 0, NULL, NULL);
  double first = e2e_now_s() - t0;
  e2e_tts_stream_reset(st);
  printf("%d utterances (%d sentences, %.1f s of speech) in %s\n", n, sentences, audio_s, out_list);
  printf("length guard fired: %d utterances; a word none of whose letters held the attention: %d utterances\n", guards,
         skips);
  printf("real-time factor %.3f (%.2f s for %.1f s); first audio of a 20-word sentence after %.0f ms\n",
         audio_s > 0 ? busy_s / audio_s : 0.0, busy_s, audio_s, 1000 * first);
  free(buf);
  g_free(out_list);
  e2e_tts_stream_free(st);
  e2e_session_free(session);
  e2e_slot_unref(slot);
  tts_free(&m);
  return 0;
}

/* The recipe's last step: the contrast chosen on held-out sentences goes into the model file, the rest of
 * its metadata (steps, data, validation) kept. */
static int set_contrast(int argc, char **argv) {
  if (argc != 4 || strcmp(argv[2], "-o")) {
    fprintf(stderr, "usage: e2e tts set-contrast MODEL X -o OUT\n");
    return 2;
  }
  char *end = NULL;
  float x = strtof(argv[1], &end);
  if (end == argv[1] || *end || !(x >= TTS_CONTRAST_MIN && x <= TTS_CONTRAST_MAX)) {
    fprintf(stderr, "e2e tts set-contrast: '%s' is not a number in [%g, %g]\n", argv[1], TTS_CONTRAST_MIN, TTS_CONTRAST_MAX);
    return 2;
  }
  nn_st_file *f = nn_st_open(argv[0]);
  tts_model m;
  if (!f || !tts_load_file(&m, f, argv[0])) {
    fprintf(stderr, "e2e tts set-contrast: %s\n", nn_last_error());
    if (f) nn_st_close(f);
    return 1;
  }
  static const char *const keep[] = {"steps", "dataset", "validation"};
  nn_kv extra[3];
  int n = 0;
  for (int i = 0; i < 3; i++)
    if (nn_st_meta(f, keep[i])) extra[n].key = keep[i], extra[n++].value = nn_st_meta(f, keep[i]);
  m.contrast = x;
  bool ok = tts_save(&m, argv[3], extra, n);
  if (!ok) fprintf(stderr, "e2e tts set-contrast: %s\n", nn_last_error());
  nn_st_close(f);
  tts_free(&m);
  return ok ? 0 : 1;
}

int e2e_tts(int argc, char **argv) {
  if (argc >= 1 && !strcmp(argv[0], "normalize")) return normalize_lines(argc - 1, argv + 1);
  if (argc >= 1 && !strcmp(argv[0], "set-contrast")) return set_contrast(argc - 1, argv + 1);
  if (argc >= 1 && !strcmp(argv[0], "vocode")) return vocode(argc - 1, argv + 1);
  return speak(argc, argv);
}
