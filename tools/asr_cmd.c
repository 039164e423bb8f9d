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
  bool closed, stream;
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
    else if (!strcmp(o, "--stream")) a->stream = true;
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
  float *y = NULL;
  int64_t ny = 0;
  if (!e2e_sound_read_at(path, r->mel.sample_rate, &y, &ny)) return false;
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

/* --stream: the file through the live path (voice activity, partials, finals) in 10 ms pushes, timing every
 * decode: what e2easr does, with its real-time factor and the delay of each final result. */
typedef struct {
  double decode_s, partial_s, final_s, final_max_s;
  int partials, finals;
  double t_push;
  int rate, hangover_ms;
} stream_stats;

static void on_stream_event(void *user, const e2e_asr_event *ev) {
  stream_stats *st = user;
  double took = e2e_now_s() - st->t_push; /* the push that produced this event: its decode */
  if (ev->kind == E2E_ASR_PARTIAL) {
    st->partials++;
    st->partial_s += took;
    printf("  partial %7.2f-%7.2f  %s\n", (double)ev->start / st->rate, (double)ev->end / st->rate, ev->result->text);
    return;
  }
  st->finals++;
  st->final_s += took;
  if (took > st->final_max_s) st->final_max_s = took;
  printf("  FINAL   %7.2f-%7.2f  %s   (decoded in %.0f ms)\n", (double)ev->start / st->rate, (double)ev->end / st->rate,
         ev->result->text, 1000 * took);
  for (int w = 0; w < ev->result->n_words; w++)
    printf("            %7.2f-%7.2f  %-20s %.2f\n", (double)ev->start / st->rate + ev->result->words[w].start,
           (double)ev->start / st->rate + ev->result->words[w].end, ev->result->words[w].word, ev->result->words[w].confidence);
}

static int stream_file(recogniser *r, const char *path) {
  float *y = NULL;
  int64_t ny = 0;
  if (!e2e_sound_read_at(path, r->mel.sample_rate, &y, &ny)) {
    fprintf(stderr, "e2e asr: %s\n", e2e_last_error());
    return 1;
  }
  e2e_asr_stream_opts so = e2e_asr_stream_defaults();
  e2e_asr_stream *st = e2e_asr_stream_new(r->session, &so, &r->dec);
  if (!st) {
    free(y);
    fprintf(stderr, "e2e asr: %s\n", e2e_last_error());
    return 1;
  }
  stream_stats s = {.rate = r->mel.sample_rate, .hangover_ms = so.hangover_ms};
  printf("%s (streamed in 10 ms pushes)\n", path);
  double t0 = e2e_now_s();
  int chunk = r->mel.sample_rate / 100;
  bool ok = true;
  for (int64_t i = 0; i < ny && ok; i += chunk) {
    s.t_push = e2e_now_s();
    ok = e2e_asr_stream_push(st, y + i, (int)(ny - i < chunk ? ny - i : chunk), on_stream_event, &s);
  }
  s.t_push = e2e_now_s();
  ok = ok && e2e_asr_stream_flush(st, on_stream_event, &s);
  double total = e2e_now_s() - t0, audio = (double)ny / r->mel.sample_rate;
  printf("  %.2f s of audio in %.3f s: real-time factor %.3f with %d partials and %d finals (%d threads)\n", audio, total,
         total / audio, s.partials, s.finals, nn_get_num_threads());
  if (s.finals)
    printf("  final results: decoded in %.0f ms on average, %.0f ms at most; delay after the last speech: the %d ms "
           "hangover + decoding = %.0f ms on average, %.0f ms at most\n", 1000 * s.final_s / s.finals,
           1000 * s.final_max_s, s.hangover_ms, s.hangover_ms + 1000 * s.final_s / s.finals,
           s.hangover_ms + 1000 * s.final_max_s);
  e2e_asr_stream_free(st);
  free(y);
  if (!ok) fprintf(stderr, "e2e asr: %s\n", e2e_last_error());
  return ok ? 0 : 1;
}

static void usage(void) {
  fprintf(stderr, "usage: e2e asr [OPTIONS] FILE...   (WAV, FLAC, ... any rate and channels)\n"
                  "  --model FILE        a recogniser (default: the shipped e2easr model)\n"
                  "  --beam N            prefix beam search of width N (default 1: greedy; 16 with --lm/--grammar)\n"
                  "  --lm TEXT           a word bigram model from sentences (one per line); --closed: its words only\n"
                  "  --grammar digits    only digit words (zero..nine, oh)\n"
                  "  --lm-weight X --word-bonus X   the language model's weight (0.8) and per-word bonus (1)\n"
                  "  --json FILE         JSON lines: text, words with start/end seconds and confidence\n"
                  "  --stream            through the live path (voice activity, partials, finals) as e2easr runs it,\n"
                  "                      with the real-time factor and each final result's delay\n"
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
  for (int i = first; i < argc && a.stream; i++) status |= stream_file(&r, argv[i]);
  for (int i = first; i < argc && !a.stream; i++) {
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
      if (json) {
        gchar *file = g_strescape(path, NULL), *grp = g_strescape(group, NULL);
        fprintf(json, "{\"file\": \"%s\", \"group\": \"%s\", \"ref\": \"%s\", \"hyp\": \"%s\"}\n", file, grp, ref, res.text);
        g_free(file), g_free(grp);
      }
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
