/* e2e tts: speech synthesis from the command line, and the text front end on its own (what the training
 * recipe feeds the teacher voice, so the voice reads exactly what the model will be given). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <glib.h>

#include "../models/tts/synth.h"
#include "e2e.h"
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

/* Decodes one sentence's frames (log-mel, [steps * r][n_mels] appended to frames). Returns the steps
 * taken, and whether the length guard ended it. */
static int64_t decode_sentence(const tts_model *m, const char *sentence, GArray *frames, bool *guard_fired) {
  size_t n = strlen(sentence);
  uint8_t *labels = malloc(n + 1);
  int k = 0;
  for (size_t i = 0; i < n; i++) {
    int l = e2e_tts_label((unsigned char)sentence[i]);
    if (l >= 0) labels[k++] = (uint8_t)l;
  }
  int max_steps = 20 + 3 * (k + 1);
  tts_synth *s = tts_synth_new(m, labels, k, max_steps, 0);
  free(labels);
  *guard_fired = false;
  if (!s) return -1;
  int rm = m->cfg.reduction * m->cfg.n_mels, end = tts_synth_text_len(s) - 1, at_end = 0;
  float *step = malloc(sizeof(float) * (size_t)rm), stop = 0.0f;
  for (;;) {
    int peak = tts_synth_step(s, step, &stop);
    if (peak < 0) {
      *guard_fired = true;
      break;
    }
    g_array_append_vals(frames, step, (guint)rm);
    at_end += peak >= end;
    /* the stop token ends it once attention has reached the last characters; lingering on the end mark
     * also ends it */
    if ((stop > 0.5f && peak >= end - 2) || at_end > 8) break;
  }
  int64_t steps = tts_synth_steps(s);
  free(step);
  tts_synth_free(s);
  return steps;
}

static int speak(int argc, char **argv) {
  const char *model_path = NULL, *out_path = NULL, *text = NULL;
  int iterations = 32;
  for (int i = 0; i < argc; i++) {
    if (!strcmp(argv[i], "--model") && i + 1 < argc) model_path = argv[++i];
    else if (!strcmp(argv[i], "-o") && i + 1 < argc) out_path = argv[++i];
    else if (!strcmp(argv[i], "--iterations") && i + 1 < argc) iterations = atoi(argv[++i]);
    else if (!text) text = argv[i];
    else text = NULL, out_path = NULL, i = argc;
  }
  if (!text || !out_path || iterations < 1 || iterations > 1000) {
    fprintf(stderr, "usage: e2e tts [--model FILE] [--iterations N] \"TEXT\" -o OUT.wav\n");
    return 2;
  }
  char *default_model = model_path ? NULL : e2e_model_path("tts/e2etts.safetensors");
  tts_model m;
  if (!tts_load(&m, model_path ? model_path : default_model)) {
    fprintf(stderr, "e2e tts: %s\n", nn_last_error());
    free(default_model);
    return 1;
  }
  free(default_model);
  double t0 = e2e_now_s();
  char *norm = e2e_tts_normalize(text, strlen(text), NULL, NULL);
  char **sentences = e2e_tts_sentences(norm, 300);
  GArray *frames = g_array_new(FALSE, FALSE, sizeof(float));
  int guards = 0;
  for (char **s = sentences; *s; s++) {
    bool guard;
    if (decode_sentence(&m, *s, frames, &guard) < 0) {
      fprintf(stderr, "e2e tts: %s\n", nn_last_error());
      return 1;
    }
    guards += guard;
    /* a short pause between sentences: frames of silence */
    for (int f = 0; f < 16 && s[1]; f++)
      for (int j = 0; j < m.cfg.n_mels; j++) {
        float v = logf(E2E_LOG_MEL_FLOOR);
        g_array_append_val(frames, v);
      }
  }
  int64_t T = frames->len / m.cfg.n_mels;
  double t_decode = e2e_now_s() - t0;
  tts_vocoder *voc = tts_vocoder_new(&m.mel);
  float *y = NULL;
  int64_t ny = 0;
  bool ok = voc && tts_vocoder_run(voc, (float *)frames->data, T, iterations, &y, &ny) &&
            e2e_wav_write(out_path, y, ny, m.mel.sample_rate);
  double total = e2e_now_s() - t0, secs = (double)ny / m.mel.sample_rate;
  if (ok)
    printf("%s: %.2f s of audio, %lld frames, \"%s\"; decoder %.3f s, vocoder %.3f s, real-time factor %.3f%s\n", out_path, secs,
           (long long)T, norm, t_decode, total - t_decode, secs > 0 ? total / secs : 0.0,
           guards ? " (the length guard ended a sentence)" : "");
  else
    fprintf(stderr, "e2e tts: %s\n", nn_last_error());
  free(y);
  tts_vocoder_free(voc);
  g_array_free(frames, TRUE);
  g_strfreev(sentences);
  g_free(norm);
  tts_free(&m);
  return ok ? 0 : 1;
}

int e2e_tts(int argc, char **argv) {
  if (argc >= 1 && !strcmp(argv[0], "normalize")) return normalize_lines(argc - 1, argv + 1);
  return speak(argc, argv);
}
