/* Word language models for decoding, and the CTC prefix beam search that uses them.
 *
 * A model is a vocabulary (a character trie), unigram and bigram counts with absolute discounting, and a
 * flag: closed (only its words can be recognised: a word list or a grammar) or open (other words pass with
 * a penalty). The beam search keeps prefixes in a tree of nodes, so extending a beam costs one node, and the
 * language model is applied when a word ends (a space, or the end of the segment). */
#include <ctype.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <glib.h>

#include "internal.h"

#define TRIE_FANOUT 27 /* apostrophe, a..z */
#define DISCOUNT 0.7
#define LM_MAX_LINE 65536 /* longest normalised sentence kept (the rest of a longer line is dropped) */
/* log10 score of a word the model does not know (open vocabulary), paid once, when a word's spelling leaves
 * the vocabulary: a strong penalty, or run-together words would beat real ones */
#define UNK_LOG10 (-10.0)

typedef struct {
  int child[TRIE_FANOUT];
  int word; /* word id ending here, or -1 */
} trie_node;

struct e2e_asr_lm {
  bool closed;
  GHashTable *ids; /* word -> id + 1 */
  GPtrArray *words;
  GArray *trie;    /* trie_node */
  double *uni;     /* counts per word */
  double total;
  GHashTable *bi;  /* (prev << 32 | word) -> count, as a pointer-sized integer */
  double *prev_total, *prev_types; /* per word as history: bigram count sum and distinct followers */
  int n_words;
  int bos;         /* the sentence-start token's id */
};

static int trie_index(int label) { return label == 2 ? 0 : label - 2; } /* apostrophe 0, a..z 1..26 */

static int trie_new_node(e2e_asr_lm *lm) {
  trie_node n;
  for (int i = 0; i < TRIE_FANOUT; i++) n.child[i] = -1;
  n.word = -1;
  g_array_append_val(lm->trie, n);
  return (int)lm->trie->len - 1;
}

static int word_id(e2e_asr_lm *lm, const char *w, bool add) {
  gpointer v = g_hash_table_lookup(lm->ids, w);
  if (v) return GPOINTER_TO_INT(v) - 1;
  if (!add) return -1;
  int id = (int)lm->words->len;
  char *copy = g_strdup(w);
  g_ptr_array_add(lm->words, copy);
  g_hash_table_insert(lm->ids, copy, GINT_TO_POINTER(id + 1));
  if (strcmp(w, "<s>")) {
    int node = 0;
    for (const char *p = w; *p; p++) {
      int k = trie_index(e2e_asr_label(*p));
      if (k < 0 || k >= TRIE_FANOUT) return id; /* not spellable: never matched by the trie */
      int next = g_array_index(lm->trie, trie_node, node).child[k];
      if (next < 0) {
        next = trie_new_node(lm);
        g_array_index(lm->trie, trie_node, node).child[k] = next;
      }
      node = next;
    }
    g_array_index(lm->trie, trie_node, node).word = id;
  }
  return id;
}

static e2e_asr_lm *lm_new(bool closed) {
  e2e_asr_lm *lm = g_new0(e2e_asr_lm, 1);
  lm->closed = closed;
  lm->ids = g_hash_table_new(g_str_hash, g_str_equal);
  lm->words = g_ptr_array_new_with_free_func(g_free);
  lm->trie = g_array_new(FALSE, FALSE, sizeof(trie_node));
  lm->bi = g_hash_table_new(g_int64_hash, g_int64_equal);
  trie_new_node(lm);
  lm->bos = word_id(lm, "<s>", true);
  return lm;
}

void e2e_asr_lm_free(e2e_asr_lm *lm) {
  if (!lm) return;
  g_hash_table_destroy(lm->ids);
  g_ptr_array_unref(lm->words);
  g_array_unref(lm->trie);
  GHashTableIter it;
  gpointer k, v;
  g_hash_table_iter_init(&it, lm->bi);
  while (g_hash_table_iter_next(&it, &k, &v)) g_free(k), g_free(v);
  g_hash_table_destroy(lm->bi);
  g_free(lm->uni);
  g_free(lm->prev_total);
  g_free(lm->prev_types);
  g_free(lm);
}

/* Counts the words of normalised sentences; bigrams include the sentence start. */
static void count_sentences(e2e_asr_lm *lm, GPtrArray *sentences) {
  GArray *uni = g_array_new(FALSE, TRUE, sizeof(double));
  for (guint s = 0; s < sentences->len; s++) {
    gchar **w = g_strsplit(g_ptr_array_index(sentences, s), " ", -1);
    int prev = lm->bos;
    for (gchar **p = w; *p; p++) {
      if (!**p) continue;
      int id = word_id(lm, *p, true);
      if ((guint)id >= uni->len) g_array_set_size(uni, id + 1);
      g_array_index(uni, double, id) += 1;
      int64_t key = ((int64_t)prev << 32) | id;
      double *c = g_hash_table_lookup(lm->bi, &key);
      if (!c) {
        int64_t *k = g_new(int64_t, 1);
        *k = key;
        c = g_new0(double, 1);
        g_hash_table_insert(lm->bi, k, c);
      }
      *c += 1;
      prev = id;
    }
    g_strfreev(w);
  }
  lm->n_words = (int)lm->words->len;
  g_array_set_size(uni, lm->n_words);
  lm->uni = (double *)g_array_free(uni, FALSE);
  lm->prev_total = g_new0(double, lm->n_words);
  lm->prev_types = g_new0(double, lm->n_words);
  GHashTableIter it;
  gpointer k, v;
  g_hash_table_iter_init(&it, lm->bi);
  while (g_hash_table_iter_next(&it, &k, &v)) {
    int prev = (int)(*(int64_t *)k >> 32);
    lm->prev_total[prev] += *(double *)v;
    lm->prev_types[prev] += 1;
  }
  lm->total = 0;
  for (int i = 0; i < lm->n_words; i++) lm->total += lm->uni[i];
}

static e2e_asr_lm *lm_from_lines(GPtrArray *lines, bool closed) {
  e2e_asr_lm *lm = lm_new(closed);
  count_sentences(lm, lines);
  return lm;
}

e2e_asr_lm *e2e_asr_lm_from_text(const char *text, size_t len, bool closed, const char *what) {
  GPtrArray *lines = g_ptr_array_new_with_free_func(g_free);
  char *norm = g_malloc(LM_MAX_LINE);
  for (const char *p = text, *end = text + len; p < end;) {
    const char *nl = memchr(p, '\n', (size_t)(end - p)), *stop = nl ? nl : end;
    char *line = g_strndup(p, (gsize)(stop - p)); /* stops at a NUL byte too */
    if (e2e_asr_normalize_text(line, norm, LM_MAX_LINE) > 0) g_ptr_array_add(lines, g_strdup(norm));
    g_free(line);
    p = nl ? nl + 1 : end;
  }
  g_free(norm);
  if (lines->len == 0) {
    g_ptr_array_unref(lines);
    nn_set_error("%s: no words in the language model text", what);
    return NULL;
  }
  e2e_asr_lm *lm = lm_from_lines(lines, closed);
  g_ptr_array_unref(lines);
  return lm;
}

e2e_asr_lm *e2e_asr_lm_from_text_file(const char *path, bool closed) {
  char *text = NULL;
  gsize len = 0;
  if (!g_file_get_contents(path, &text, &len, NULL)) {
    nn_set_error("%s: cannot read the language model text", path);
    return NULL;
  }
  e2e_asr_lm *lm = e2e_asr_lm_from_text(text, len, closed, path);
  g_free(text);
  return lm;
}

e2e_asr_lm *e2e_asr_lm_digits(void) {
  static const char *const digits[] = {"zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "oh"};
  GPtrArray *lines = g_ptr_array_new();
  for (size_t i = 0; i < G_N_ELEMENTS(digits); i++) g_ptr_array_add(lines, (gpointer)digits[i]);
  e2e_asr_lm *lm = lm_from_lines(lines, true);
  g_ptr_array_unref(lines);
  return lm;
}

int e2e_asr_lm_words(const e2e_asr_lm *lm) { return lm->n_words - 1; }

/* log10 P(word | prev) (the scale language-model weights are usually given in), absolute discounting
 * backed off to add-half unigrams. */
static double lm_logp(const e2e_asr_lm *lm, int prev, int word) {
  if (word < 0) return UNK_LOG10;
  double puni = (lm->uni[word] + 0.5) / (lm->total + 0.5 * lm->n_words);
  if (prev < 0 || lm->prev_total[prev] <= 0) return log10(puni);
  int64_t key = ((int64_t)prev << 32) | word;
  double *c = g_hash_table_lookup(lm->bi, &key);
  double pt = lm->prev_total[prev];
  double p = ((c ? fmax(*c - DISCOUNT, 0.0) : 0.0) + DISCOUNT * lm->prev_types[prev] * puni) / pt;
  return log10(p);
}

/* ------------------------------------------------------------ beam search */

typedef struct {
  int parent, label, frame;
  float prob;
  int trie;      /* the partial word's trie node (0 after a space), -1 off the vocabulary */
  int prev_word; /* the last completed word (the LM's history) */
  int n_words;
  float lm;      /* weighted LM score and word bonuses of the completed words */
} bnode;

typedef struct {
  int node;
  double pb, pnb; /* log-probabilities of the prefix ending in blank / in its last label */
} beam;

static double logadd(double a, double b) {
  if (a == -INFINITY) return b;
  if (b == -INFINITY) return a;
  return a > b ? a + log1p(exp(b - a)) : b + log1p(exp(a - b));
}

typedef struct {
  GArray *nodes;      /* bnode */
  GHashTable *child;  /* (parent << 8 | label) -> node + 1 */
  const e2e_asr_decode_opts *o;
} search;

static bnode *node_at(search *s, int i) { return &g_array_index(s->nodes, bnode, i); }

/* The LM's score for ending the partial word of node n (0 when there is none). Closed models refuse
 * (return -inf) a partial word that is not one of theirs. */
static float word_end_score(search *s, const bnode *n, int *word_out) {
  const e2e_asr_lm *lm = s->o->lm;
  int w = n->trie >= 0 ? g_array_index(lm->trie, trie_node, n->trie).word : -1;
  *word_out = w;
  if (w < 0 && lm->closed) return -INFINITY;
  /* an unknown word that left the vocabulary's spellings has paid already; one that stopped on a known
   * prefix ("gover") pays now */
  double lp = w >= 0 ? lm_logp(lm, n->prev_word, w) : n->trie >= 0 ? UNK_LOG10 : 0.0;
  return (float)(s->o->lm_weight * lp + s->o->word_bonus);
}

/* The node for parent + label, made on first use; -1 when the language model forbids it. */
static int extend(search *s, int parent, int label, int frame, float prob) {
  int64_t key = ((int64_t)parent << 8) | label;
  gpointer hit = g_hash_table_lookup(s->child, &key);
  if (hit) {
    /* a prefix reached again: its label's time is where it was most likely emitted */
    bnode *n = node_at(s, GPOINTER_TO_INT(hit) - 1);
    if (prob > n->prob) n->prob = prob, n->frame = frame;
    return GPOINTER_TO_INT(hit) - 1;
  }
  bnode p = *node_at(s, parent), n = p;
  bool at_word_start = parent == 0 || p.label == 1;
  n.parent = parent, n.label = label, n.frame = frame, n.prob = prob;
  const e2e_asr_lm *lm = s->o->lm;
  if (label == 1) { /* a space ends the partial word */
    if (at_word_start) return -1;
    if (lm) {
      int w;
      float sc = word_end_score(s, &p, &w);
      if (sc == -INFINITY) return -1;
      n.lm += sc;
      n.prev_word = w;
    }
    n.n_words++;
    n.trie = 0;
  } else if (lm) {
    int t = at_word_start ? 0 : p.trie;
    int k = trie_index(label);
    n.trie = t >= 0 ? g_array_index(lm->trie, trie_node, t).child[k] : -1;
    if (n.trie < 0 && lm->closed) return -1;
    if (n.trie < 0 && t >= 0) n.lm += (float)(s->o->lm_weight * UNK_LOG10); /* the spelling leaves the vocabulary */
  }
  g_array_append_val(s->nodes, n);
  int id = (int)s->nodes->len - 1;
  int64_t *k = g_new(int64_t, 1);
  *k = key;
  g_hash_table_insert(s->child, k, GINT_TO_POINTER(id + 1));
  return id;
}

static double beam_score(search *s, const beam *b) { return logadd(b->pb, b->pnb) + node_at(s, b->node)->lm; }

static search *sort_search;
static int by_score_desc(const void *a, const void *b) {
  double sa = beam_score(sort_search, a), sb = beam_score(sort_search, b);
  return sa < sb ? 1 : sa > sb ? -1 : 0;
}

/* Adds log-probabilities to the next frame's entry for node (found through index[node] + 1). */
static void accumulate(GArray *next, GArray *index, int node, double pb, double pnb) {
  if ((guint)node >= index->len) g_array_set_size(index, node + 1 + 64);
  int at = g_array_index(index, int, node) - 1;
  if (at < 0) {
    beam b = {.node = node, .pb = -INFINITY, .pnb = -INFINITY};
    g_array_append_val(next, b);
    at = (int)next->len - 1;
    g_array_index(index, int, node) = at + 1;
  }
  beam *b = &g_array_index(next, beam, at);
  b->pb = logadd(b->pb, pb);
  b->pnb = logadd(b->pnb, pnb);
}

bool asr_beam_search(const float *logp, int64_t T, const e2e_asr_decode_opts *o, asr_path *out) {
  search s = {.nodes = g_array_new(FALSE, FALSE, sizeof(bnode)),
              .child = g_hash_table_new_full(g_int64_hash, g_int64_equal, g_free, NULL), .o = o};
  bnode root = {.parent = -1, .label = 0, .frame = -1, .prob = 1, .trie = 0, .prev_word = o->lm ? o->lm->bos : -1};
  g_array_append_val(s.nodes, root);
  GArray *cur = g_array_new(FALSE, FALSE, sizeof(beam)), *next = g_array_new(FALSE, FALSE, sizeof(beam));
  GArray *index = g_array_new(FALSE, TRUE, sizeof(int));
  beam start = {.node = 0, .pb = 0.0, .pnb = -INFINITY};
  g_array_append_val(cur, start);
  int width = o->beam > 1 ? o->beam : 1;
  for (int64_t t = 0; t < T; t++) {
    const float *row = logp + t * E2E_ASR_CLASSES;
    float best = row[0];
    for (int c = 1; c < E2E_ASR_CLASSES; c++) best = row[c] > best ? row[c] : best;
    g_array_set_size(next, 0);
    for (guint i = 0; i < cur->len; i++) {
      beam b = g_array_index(cur, beam, i);
      double total = logadd(b.pb, b.pnb);
      int last = node_at(&s, b.node)->label;
      accumulate(next, index, b.node, total + row[E2E_ASR_BLANK], -INFINITY);
      for (int c = 1; c < E2E_ASR_CLASSES; c++) {
        if (row[c] < best - 10.0f) continue; /* hopeless here: pruned */
        if (c == last && b.node != 0) {
          accumulate(next, index, b.node, -INFINITY, b.pnb + row[c]); /* a repeat collapses */
          int n = extend(&s, b.node, c, (int)t, expf(row[c]));
          if (n >= 0) accumulate(next, index, n, -INFINITY, b.pb + row[c]); /* a blank between: a new label */
        } else {
          int n = extend(&s, b.node, c, (int)t, expf(row[c]));
          if (n >= 0) accumulate(next, index, n, -INFINITY, total + row[c]);
        }
      }
    }
    for (guint i = 0; i < next->len; i++) g_array_index(index, int, g_array_index(next, beam, i).node) = 0;
    sort_search = &s;
    qsort(next->data, next->len, sizeof(beam), by_score_desc);
    if (next->len > (guint)width) g_array_set_size(next, width);
    GArray *tmp = cur;
    cur = next, next = tmp;
  }
  /* the segment's end closes the last word */
  int best_node = 0;
  double best_score = -INFINITY;
  for (guint i = 0; i < cur->len; i++) {
    beam *b = &g_array_index(cur, beam, i);
    bnode *n = node_at(&s, b->node);
    double sc = logadd(b->pb, b->pnb) + n->lm;
    if (o->lm && n->label != 1 && b->node != 0) {
      int w;
      float e = word_end_score(&s, n, &w);
      sc += e;
    }
    if (sc > best_score) best_score = sc, best_node = b->node;
  }
  int len = 0;
  for (int k = best_node; k > 0; k = node_at(&s, k)->parent) len++;
  if (len > ASR_MAX_LABELS) len = ASR_MAX_LABELS;
  out->n = len;
  int k = best_node;
  for (int i = len - 1; i >= 0; i--, k = node_at(&s, k)->parent) {
    bnode *n = node_at(&s, k);
    out->label[i] = (uint8_t)n->label, out->frame[i] = n->frame, out->prob[i] = n->prob;
  }
  while (out->n > 0 && out->label[out->n - 1] == 1) out->n--;
  g_array_unref(s.nodes);
  g_hash_table_destroy(s.child);
  g_array_unref(cur);
  g_array_unref(next);
  g_array_unref(index);
  return true;
}
