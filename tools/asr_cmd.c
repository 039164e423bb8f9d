/* e2e asr FILE...: speech to text with word timestamps; e2e eval asr: error rates of lists of recordings. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <glib.h>

#include "e2e.h"
#include "e2e/asr.h"
#include "e2e/audio.h"

typedef struct {
  const char *model, *lm_path, *grammar, *json;
  int beam, threads;
  float lm_weight, word_bonus;
  bool closed;
} asr_args;

static int parse(int argc, char **argv, asr_args *a, int *first_file) {
  *a = (asr_args){.beam = 0, .lm_weight = -1, .word_bonus = -1};
  int i = 0;
  for (; i < argc; i++) {
    const char *o = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
#define OPT(name) (!strcmp(o, name) && v && (i++, 1))
    if (OPT("--model")) a->model = v;
    else if (OPT("--beam")) a->beam = atoi(v);
    else if (OPT("--lm")) a->lm_path = v;
    else if (OPT("--grammar")) a->grammar = v;
    else if (OPT("--lm-weight")) a->lm_weight = (float)atof(v);
    else if (OPT("--word-bonus")) a->word_bonus = (float)atof(v);
    else if (OPT("--threads")) a->threads = atoi(v);
    else if (OPT("--json")) a->json = v;
    else if (!strcmp(o, "--closed")) a->closed = true;
    else if (o[0] == '-' && o[1] == '-') return -1;
    else break;
#undef OPT
  }
  *first_file = i;
  if (a->grammar && strcmp(a->grammar, "digits")) {
    fprintf(stderr, "e2e asr: unknown grammar \"%s\" (known: digits)\n", a->grammar);
    return -1;
  }
  return 0;
}

/* The session, decoder options and language model the arguments ask for; the shipped model by default. */
typedef struct {
  e2e_slot *slot;
  e2e_session *session;
  e2e_asr_lm *lm;
  e2e_asr_decode_opts dec;
  e2e_mel_config mel;
  e2e_audio_fe *fe;
} recogniser;

static bool recogniser_open(recogniser *r, const asr_args *a) {
  memset(r, 0, sizeof *r);
  char *def = a->model ? NULL : e2e_default_model(E2E_TASK_ASR);
  r->slot = e2e_slot_open(NULL, a->model ? a->model : def, E2E_TASK_ASR);
  free(def);
  if (!r->slot) return false;
  r->session = e2e_session_new(r->slot, a->threads);
  r->dec = e2e_asr_decode_defaults();
  if (a->grammar) r->lm = e2e_asr_lm_digits();
  else if (a->lm_path && !(r->lm = e2e_asr_lm_from_text_file(a->lm_path, a->closed))) return false;
  r->dec.lm = r->lm;
  r->dec.beam = a->beam > 0 ? a->beam : r->lm ? 16 : 1;
  if (a->lm_weight >= 0) r->dec.lm_weight = a->lm_weight;
  if (a->word_bonus >= 0) r->dec.word_bonus = a->word_bonus;
  if (!e2e_asr_session_mel(r->session, &r->mel)) return false;
  r->fe = e2e_audio_fe_new(&r->mel);
  return r->fe != NULL;
}

static void recogniser_close(recogniser *r) {
  e2e_audio_fe_free(r->fe);
  e2e_asr_lm_free(r->lm);
  if (r->session) e2e_session_free(r->session);
  if (r->slot) e2e_slot_unref(r->slot);
}

/* One file, whole, as one segment. */
static bool recognise_file(recogniser *r, const char *path, e2e_asr_result *res, double *audio_s, double *took_s) {
  float *x = NULL, *y = NULL;
  int64_t n = 0, ny = 0;
  int rate = 0;
  if (!e2e_sound_read(path, &x, &n, &rate) || !e2e_resample(x, n, rate, r->mel.sample_rate, &y, &ny)) {
    free(x);
    return false;
  }
  free(x);
  double t0 = e2e_now_s();
  int64_t T = e2e_audio_frames(&r->mel, ny);
  float *f = malloc(sizeof(float) * (size_t)(T > 0 ? T : 1) * r->mel.n_mels);
  e2e_log_mel(r->fe, y, ny, f);
  bool ok = e2e_asr_recognize(r->session, f, T, &r->dec, res);
  *took_s = e2e_now_s() - t0;
  *audio_s = (double)ny / r->mel.sample_rate;
  free(f);
  free(y);
  return ok;
}

static void usage(void) {
  fprintf(stderr, "usage: e2e asr [OPTIONS] FILE...   (WAV, FLAC, ... any rate and channels)\n"
                  "  --model FILE        a recogniser (default: the shipped e2easr model)\n"
                  "  --beam N            prefix beam search of width N (default 1: greedy; 16 with --lm/--grammar)\n"
                  "  --lm TEXT           a word bigram model from sentences (one per line); --closed: its words only\n"
                  "  --grammar digits    only digit words (zero..nine, oh)\n"
                  "  --lm-weight X --word-bonus X   the language model's weight (0.5) and per-word bonus (1)\n"
                  "  --json FILE         JSON lines: text, words with start/end seconds and confidence\n"
                  "  --threads N\n");
}

int e2e_asr_files(int argc, char **argv) {
  asr_args a;
  int first;
  if (parse(argc, argv, &a, &first) < 0 || first >= argc) {
    usage();
    return 2;
  }
  recogniser r;
  if (!recogniser_open(&r, &a)) {
    fprintf(stderr, "e2e asr: %s\n", e2e_last_error());
    recogniser_close(&r);
    return 1;
  }
  FILE *json = a.json ? fopen(a.json, "w") : NULL;
  if (a.json && !json) {
    fprintf(stderr, "e2e asr: %s: %s\n", a.json, strerror(errno));
    recogniser_close(&r);
    return 1;
  }
  int status = 0;
  for (int i = first; i < argc; i++) {
    e2e_asr_result res;
    double audio_s = 0, took = 0;
    if (!recognise_file(&r, argv[i], &res, &audio_s, &took)) {
      fprintf(stderr, "e2e asr: %s\n", e2e_last_error());
      status = 1;
      continue;
    }
    printf("%s: %s\n", argv[i], res.text);
    for (int w = 0; w < res.n_words; w++)
      printf("  %7.2f-%7.2f  %-20s %.2f\n", res.words[w].start, res.words[w].end, res.words[w].word, res.words[w].confidence);
    printf("  (%.2f s of audio in %.3f s: real-time factor %.3f)\n", audio_s, took, took / (audio_s > 0 ? audio_s : 1));
    if (json) {
      gchar *file = g_strescape(argv[i], NULL);
      fprintf(json, "{\"file\": \"%s\", \"text\": \"%s\", \"confidence\": %.3f, \"words\": [", file, res.text, res.confidence);
      for (int w = 0; w < res.n_words; w++)
        fprintf(json, "%s{\"word\": \"%s\", \"start\": %.3f, \"end\": %.3f, \"confidence\": %.3f}", w ? ", " : "",
                res.words[w].word, res.words[w].start, res.words[w].end, res.words[w].confidence);
      fprintf(json, "]}\n");
      g_free(file);
    }
    e2e_asr_result_clear(&res);
  }
  if (json) fclose(json);
  recogniser_close(&r);
  return status;
}

/* e2e eval asr LIST.tsv...: each list (path, group, transcript per line) scored per group. */
int e2e_eval_asr(int argc, char **argv) {
  asr_args a;
  int first;
  if (parse(argc, argv, &a, &first) < 0 || first >= argc) {
    fprintf(stderr, "usage: e2e eval asr [e2e asr OPTIONS] LIST.tsv...   (path<TAB>group<TAB>transcript per line)\n"
                    "  --json FILE: one line per utterance (reference, hypothesis)\n");
    return 2;
  }
  recogniser r;
  if (!recogniser_open(&r, &a)) {
    fprintf(stderr, "e2e eval asr: %s\n", e2e_last_error());
    recogniser_close(&r);
    return 1;
  }
  FILE *json = a.json ? fopen(a.json, "w") : NULL;
  int status = 0;
  double audio = 0, took = 0;
  for (int i = first; i < argc; i++) {
    FILE *in = fopen(argv[i], "r");
    if (!in) {
      fprintf(stderr, "e2e eval asr: %s: %s\n", argv[i], strerror(errno));
      status = 1;
      continue;
    }
    GHashTable *groups = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, g_free);
    GPtrArray *order = g_ptr_array_new();
    e2e_asr_score all = {0};
    int64_t sentences = 0, sentences_right = 0;
    char line[8192], ref[8192];
    while (fgets(line, sizeof line, in)) {
      line[strcspn(line, "\r\n")] = '\0';
      char *path = line, *group = strchr(path, '\t'), *text = group ? strchr(group + 1, '\t') : NULL;
      if (!text) continue;
      *group++ = '\0';
      *text++ = '\0';
      e2e_asr_normalize_text(text, ref, sizeof ref);
      e2e_asr_result res;
      double as = 0, ts = 0;
      if (!recognise_file(&r, path, &res, &as, &ts)) {
        fprintf(stderr, "e2e eval asr: %s\n", e2e_last_error());
        status = 1;
        continue;
      }
      audio += as, took += ts;
      e2e_asr_score *gs = g_hash_table_lookup(groups, group);
      if (!gs) {
        gs = g_new0(e2e_asr_score, 1);
        g_hash_table_insert(groups, g_strdup(group), gs);
        g_ptr_array_add(order, g_strdup(group));
      }
      e2e_asr_score_add(gs, ref, res.text);
      e2e_asr_score_add(&all, ref, res.text);
      sentences++;
      sentences_right += !strcmp(ref, res.text);
      if (json) fprintf(json, "{\"file\": \"%s\", \"group\": \"%s\", \"ref\": \"%s\", \"hyp\": \"%s\"}\n", path, group, ref, res.text);
      e2e_asr_result_clear(&res);
    }
    fclose(in);
    printf("%s: WER %.2f%%  CER %.2f%%  exact %.1f%% of %lld utterances (%lld words)\n", argv[i], 100 * e2e_asr_wer(&all),
           100 * e2e_asr_cer(&all), sentences ? 100.0 * sentences_right / sentences : 0.0, (long long)sentences,
           (long long)all.ref_words);
    for (guint g = 0; g < order->len; g++) {
      e2e_asr_score *gs = g_hash_table_lookup(groups, g_ptr_array_index(order, g));
      printf("  %-32s WER %6.2f%%  CER %6.2f%%  (%lld words)\n", (char *)g_ptr_array_index(order, g),
             100 * e2e_asr_wer(gs), 100 * e2e_asr_cer(gs), (long long)gs->ref_words);
      g_free(g_ptr_array_index(order, g));
    }
    g_ptr_array_unref(order);
    g_hash_table_destroy(groups);
  }
  printf("decoding: %.1f s of audio in %.1f s (real-time factor %.3f, %d threads, beam %d%s)\n", audio, took,
         took / (audio > 0 ? audio : 1), nn_get_num_threads(), r.dec.beam,
         a.grammar ? ", digit grammar" : a.lm_path ? ", word bigram LM" : "");
  if (json) fclose(json);
  recogniser_close(&r);
  return status;
}
