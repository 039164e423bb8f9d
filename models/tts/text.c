/* The synthesiser's text front end. Written text is read the way an American reader says it: the model
 * only ever sees letters, spaces and four pause marks, so every number, date, time, amount and
 * abbreviation has to become words here, the same way at training time (the teacher voice reads this
 * output) and in the element. */
#include <ctype.h>
#include <glib.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "e2e/tts.h"

int e2e_tts_label(int c) {
  if (c >= 'a' && c <= 'z') return 2 + (c - 'a');
  switch (c) {
  case ' ': return 28;
  case '\'': return 29;
  case ',': return 30;
  case '.': return 31;
  case '?': return 32;
  case '!': return 33;
  default: return -1;
  }
}

char e2e_tts_char(int label) {
  static const char extra[] = " ',.?!";
  if (label >= 2 && label < 28) return (char)('a' + label - 2);
  if (label >= 28 && label < 34) return extra[label - 28];
  return '\0';
}

/* ---- numbers in words ---- */

static const char *ONES[] = {"zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine",
                             "ten", "eleven", "twelve", "thirteen", "fourteen", "fifteen", "sixteen",
                             "seventeen", "eighteen", "nineteen"};
static const char *TENS[] = {"", "", "twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety"};
static const char *SCALES[] = {"", "thousand", "million", "billion", "trillion", "quadrillion", "quintillion"};
static const char *MONTHS[] = {"january", "february", "march", "april", "may", "june", "july", "august",
                               "september", "october", "november", "december"};

typedef struct {
  GString *out;
  void (*dropped)(const char *, void *);
  void *ctx;
  unsigned reported; /* bit per kind of dropped input already reported */
} writer;

/* Appends a word, with the single space before it. */
static void word(writer *w, const char *s) {
  if (w->out->len && w->out->str[w->out->len - 1] != ' ') g_string_append_c(w->out, ' ');
  g_string_append(w->out, s);
}

static void below_thousand(writer *w, unsigned n) {
  if (n >= 100) {
    word(w, ONES[n / 100]);
    word(w, "hundred");
    n %= 100;
    if (!n) return;
  }
  if (n < 20) {
    word(w, ONES[n]);
  } else {
    char buf[32];
    if (n % 10) snprintf(buf, sizeof buf, "%s %s", TENS[n / 10], ONES[n % 10]);
    else snprintf(buf, sizeof buf, "%s", TENS[n / 10]);
    word(w, buf);
  }
}

static void cardinal(writer *w, uint64_t n) {
  if (n == 0) {
    word(w, "zero");
    return;
  }
  unsigned groups[7];
  int g = 0;
  for (uint64_t v = n; v; v /= 1000) groups[g++] = (unsigned)(v % 1000);
  for (int i = g - 1; i >= 0; i--) {
    if (!groups[i]) continue;
    below_thousand(w, groups[i]);
    if (i) word(w, SCALES[i]);
  }
}

/* Turns the last word written into its ordinal ("twenty one" -> "twenty first"). */
static void make_ordinal(writer *w) {
  static const char *irregular[][2] = {{"one", "first"},   {"two", "second"}, {"three", "third"}, {"five", "fifth"},
                                       {"eight", "eighth"}, {"nine", "ninth"}, {"twelve", "twelfth"}};
  GString *o = w->out;
  gsize start = o->len;
  while (start > 0 && o->str[start - 1] != ' ') start--;
  const char *last = o->str + start;
  for (size_t i = 0; i < G_N_ELEMENTS(irregular); i++)
    if (!strcmp(last, irregular[i][0])) {
      g_string_truncate(o, start);
      g_string_append(o, irregular[i][1]);
      return;
    }
  if (o->len > start && o->str[o->len - 1] == 'y') {
    g_string_truncate(o, o->len - 1);
    g_string_append(o, "ieth");
  } else {
    g_string_append(o, "th");
  }
}

static void digits_one_by_one(writer *w, const char *s, size_t n) {
  for (size_t i = 0; i < n; i++)
    if (isdigit((unsigned char)s[i])) word(w, ONES[s[i] - '0']);
}

static void year(writer *w, unsigned y) {
  if (y >= 2000 && y < 2010) {
    cardinal(w, y);
    return;
  }
  below_thousand(w, y / 100);
  if (y % 100 == 0) {
    word(w, "hundred");
  } else if (y % 100 < 10) {
    word(w, "oh");
    word(w, ONES[y % 100]);
  } else {
    below_thousand(w, y % 100);
  }
}

/* An integer written with optional thousands commas; too long for a cardinal, it is read digit by digit. */
static void integer_text(writer *w, const char *s, size_t n) {
  char buf[32];
  size_t k = 0;
  for (size_t i = 0; i < n; i++)
    if (isdigit((unsigned char)s[i])) {
      if (k + 1 >= sizeof buf) {
        digits_one_by_one(w, s, n);
        return;
      }
      buf[k++] = s[i];
    }
  buf[k] = '\0';
  /* a code (007), or ten digits and more without thousands commas (a phone number, an account): digit by digit */
  bool commas = memchr(s, ',', n) != NULL;
  if ((k > 1 && buf[0] == '0') || (k >= 10 && !commas) || k > 18) {
    digits_one_by_one(w, buf, k);
    return;
  }
  cardinal(w, g_ascii_strtoull(buf, NULL, 10));
}

static bool last_word_is_month(const writer *w) {
  const GString *o = w->out;
  gsize end = o->len;
  while (end > 0 && o->str[end - 1] == ' ') end--;
  gsize start = end;
  while (start > 0 && o->str[start - 1] != ' ') start--;
  for (int m = 0; m < 12; m++)
    if (end - start == strlen(MONTHS[m]) && !strncmp(o->str + start, MONTHS[m], end - start)) return true;
  return false;
}

static void pause_mark(writer *w, char c);

/* ---- abbreviations ---- */

static const char *ABBREVIATIONS[][2] = {
    {"mr", "mister"}, {"mrs", "missus"}, {"ms", "miz"}, {"dr", "doctor"}, {"prof", "professor"}, {"st", "saint"},
    {"jr", "junior"}, {"sr", "senior"}, {"co", "company"}, {"corp", "corporation"}, {"inc", "incorporated"},
    {"ltd", "limited"}, {"gen", "general"}, {"gov", "governor"}, {"capt", "captain"}, {"col", "colonel"},
    {"lt", "lieutenant"}, {"sgt", "sergeant"}, {"rev", "reverend"}, {"hon", "honorable"}, {"ft", "fort"},
    {"mt", "mount"}, {"no", "number"}, {"vs", "versus"}, {"etc", "et cetera"}, {"approx", "approximately"},
    {"dept", "department"}, {"jan", "january"}, {"feb", "february"}, {"mar", "march"}, {"apr", "april"},
    {"jun", "june"}, {"jul", "july"}, {"aug", "august"}, {"sep", "september"}, {"sept", "september"},
    {"oct", "october"}, {"nov", "november"}, {"dec", "december"}, {"mon", "monday"}, {"tue", "tuesday"},
    {"wed", "wednesday"}, {"thu", "thursday"}, {"fri", "friday"}, {"sat", "saturday"}, {"sun", "sunday"}};

/* Dotted forms read as words rather than letters. */
static const char *DOTTED[][2] = {{"e.g", "for example"}, {"i.e", "that is"}, {"a.m", "a m"}, {"p.m", "p m"}};

/* Abbreviations that are also everyday words ("we sat.", "I said no.") */
static const char *WORDLIKE[] = {"no", "sat", "sun", "wed", "mar"};

/* TOK is a lower-cased word that ends at the dot at S[N]. A word-like abbreviation counts only written with a
 * capital and followed by more of its sentence ("Sat. at noon", "No. 5", "No. C2766"), not by its end or a new
 * one. */
static const char *abbreviation(const char *lower, const char *s, size_t n) {
  const char *expansion = NULL;
  for (size_t i = 0; i < G_N_ELEMENTS(ABBREVIATIONS) && !expansion; i++)
    if (!strcmp(lower, ABBREVIATIONS[i][0])) expansion = ABBREVIATIONS[i][1];
  for (size_t i = 0; i < G_N_ELEMENTS(WORDLIKE) && expansion; i++)
    if (!strcmp(lower, WORDLIKE[i])) {
      const char *q = s + n + 1;
      while (*q == ' ') q++;
      bool goes_on = isdigit((unsigned char)q[0]) || islower((unsigned char)q[0]) ||
                     (isupper((unsigned char)q[0]) && isdigit((unsigned char)q[1])); /* "No. C2766" */
      if (!isupper((unsigned char)s[0]) || !goes_on) expansion = NULL;
    }
  return expansion;
}

/* ---- the scanner over ASCII text ---- */

static void pause_mark(writer *w, char c) {
  GString *o = w->out;
  while (o->len && o->str[o->len - 1] == ' ') g_string_truncate(o, o->len - 1);
  if (!o->len) return; /* nothing to pause after */
  char last = o->str[o->len - 1];
  if (last == ',' || last == '.' || last == '?' || last == '!') {
    if (last == ',' && c != ',') o->str[o->len - 1] = c; /* a sentence end outranks a comma */
    return;
  }
  g_string_append_c(o, c);
}

static bool is_time_suffix(const char *p, size_t *len) {
  while (*p == ' ') p++, (*len)++;
  char a = (char)tolower((unsigned char)p[0]);
  if (a != 'a' && a != 'p') return false;
  if (tolower((unsigned char)p[1]) == 'm' && !isalpha((unsigned char)p[2])) {
    *len += 2;
    return true;
  }
  if (p[1] == '.' && tolower((unsigned char)p[2]) == 'm' && p[3] == '.') {
    *len += 4;
    return true;
  }
  return false;
}

/* A number token at s: its digits (with commas) and what follows decide how it is read. Returns the bytes
 * consumed. currency: the symbol before it (or 0). */
static size_t number(writer *w, const char *s, char currency) {
  const char *p = s;
  /* dates: 2024-03-14 and 3/14/2024 */
  unsigned a, b, c;
  int used = 0;
  if (!currency && sscanf(p, "%4u-%2u-%2u%n", &a, &b, &c, &used) == 3 && used == 10 && b >= 1 && b <= 12 && c >= 1 &&
      c <= 31) {
    word(w, MONTHS[b - 1]);
    cardinal(w, c);
    make_ordinal(w);
    year(w, a);
    return (size_t)used;
  }
  used = 0;
  if (!currency && sscanf(p, "%2u/%2u/%4u%n", &a, &b, &c, &used) == 3 && a >= 1 && a <= 12 && b >= 1 && b <= 31 &&
      !isdigit((unsigned char)p[used])) {
    word(w, MONTHS[a - 1]);
    cardinal(w, b);
    make_ordinal(w);
    year(w, c < 100 ? 2000 + c : c);
    return (size_t)used;
  }
  /* telephone numbers: 555-1234, 617-555-1234 -- digit by digit, a pause between groups */
  if (!currency) {
    size_t k = 0, groups = 0, len[4] = {0};
    while (groups < 3) {
      size_t d = 0;
      while (isdigit((unsigned char)p[k + d])) d++;
      len[groups++] = d;
      k += d;
      if (p[k] != '-' || !isdigit((unsigned char)p[k + 1])) break;
      k++;
    }
    bool phone = (groups == 2 && len[0] == 3 && len[1] == 4) || (groups == 3 && len[0] == 3 && len[1] == 3 && len[2] == 4);
    if (phone && !isdigit((unsigned char)p[k])) {
      for (size_t i = 0; i < k; i++)
        if (p[i] == '-') pause_mark(w, ',');
        else word(w, ONES[p[i] - '0']);
      return k;
    }
  }
  /* times: 7:05, 10:30 pm */
  used = 0;
  if (!currency && sscanf(p, "%2u:%2u%n", &a, &b, &used) == 2 && a <= 24 && b < 60 && isdigit((unsigned char)p[used - 2]) &&
      !isdigit((unsigned char)p[used])) {
    size_t extra = 0;
    bool suffix = is_time_suffix(p + used, &extra);
    cardinal(w, a);
    if (b == 0 && !suffix) word(w, "o'clock");
    else if (b > 0 && b < 10) word(w, "oh"), word(w, ONES[b]);
    else if (b) cardinal(w, b);
    if (suffix) {
      const char *q = p + used;
      while (*q == ' ') q++;
      word(w, tolower((unsigned char)*q) == 'a' ? "a m" : "p m");
      used += (int)extra;
    }
    return (size_t)used;
  }
  /* digits with thousands commas, then a decimal part */
  size_t n = 0;
  bool commas = false;
  while (isdigit((unsigned char)p[n]) ||
         (p[n] == ',' && n > 0 && isdigit((unsigned char)p[n + 1]) && isdigit((unsigned char)p[n + 2]) &&
          isdigit((unsigned char)p[n + 3]) && !isdigit((unsigned char)p[n + 4])))
    commas |= p[n++] == ',';
  size_t int_len = n, frac_start = 0, frac_len = 0;
  if (p[n] == '.' && isdigit((unsigned char)p[n + 1])) {
    frac_start = n + 1;
    for (n++; isdigit((unsigned char)p[n]); n++) frac_len++;
  }
  /* the integer's value, where it fits */
  uint64_t value = 0;
  bool fits = true;
  for (size_t i = 0; i < int_len; i++)
    if (isdigit((unsigned char)p[i])) {
      if (value > (UINT64_MAX - 9) / 10) fits = false;
      else value = value * 10 + (uint64_t)(p[i] - '0');
    }
  /* ordinals: 1st, 22nd, 3rd, 4th */
  const char *after = p + n;
  if (!frac_len && fits &&
      (!g_ascii_strncasecmp(after, "st", 2) || !g_ascii_strncasecmp(after, "nd", 2) ||
       !g_ascii_strncasecmp(after, "rd", 2) || !g_ascii_strncasecmp(after, "th", 2)) &&
      !isalpha((unsigned char)after[2])) {
    integer_text(w, p, int_len);
    make_ordinal(w);
    return n + 2;
  }
  if (currency) {
    static const char *unit[][4] = {{"$", "dollar", "dollars", "cents"}, {"L", "pound", "pounds", "pence"},
                                    {"E", "euro", "euros", "cents"}, {"Y", "yen", "yen", ""}};
    int u = currency == '$' ? 0 : currency == 'L' ? 1 : currency == 'E' ? 2 : 3;
    integer_text(w, p, int_len);
    /* "$5 million": the scale word comes before the unit */
    const char *q = p + n;
    size_t skip = 0;
    const char *scale = NULL;
    while (q[skip] == ' ') skip++;
    for (int i = 2; i <= 4; i++) {
      size_t l = strlen(SCALES[i]);
      if (!g_ascii_strncasecmp(q + skip, SCALES[i], l) && !isalpha((unsigned char)q[skip + l])) scale = SCALES[i], skip += l;
    }
    if (scale) {
      if (frac_len) word(w, "point"), digits_one_by_one(w, p + frac_start, frac_len);
      word(w, scale);
      word(w, unit[u][2]);
      return n + skip;
    }
    word(w, fits && value == 1 ? unit[u][1] : unit[u][2]);
    if (frac_len && u != 3) {
      unsigned cents = (unsigned)(p[frac_start] - '0') * 10 + (frac_len > 1 ? (unsigned)(p[frac_start + 1] - '0') : 0);
      if (cents) {
        word(w, "and");
        cardinal(w, cents);
        word(w, cents == 1 && u != 1 ? "cent" : unit[u][3]);
      }
    }
    return n;
  }
  if (!frac_len && !commas && int_len == 4 && fits && value >= 1100 && value < 2100 && p[n] != '%' &&
      (value < 2000 || value >= 2010 || value % 100 < 10))
    year(w, (unsigned)value);
  else if (!frac_len && fits && value >= 1 && value <= 31 && int_len <= 2 && last_word_is_month(w))
    cardinal(w, value), make_ordinal(w);
  else
    integer_text(w, p, int_len);
  if (frac_len) {
    word(w, "point");
    digits_one_by_one(w, p + frac_start, frac_len);
  }
  if (p[n] == '%') {
    word(w, "percent");
    n++;
  }
  return n;
}

/* The value of a lower-case Roman numeral of two or more letters, or 0. */
static int roman(const char *s) {
  int total = 0, prev = 0;
  size_t n = strlen(s);
  if (n < 2) return 0;
  for (size_t i = n; i-- > 0;) {
    int v = s[i] == 'i' ? 1 : s[i] == 'v' ? 5 : s[i] == 'x' ? 10 : s[i] == 'l' ? 50 : s[i] == 'c' ? 100 : 0;
    if (!v) return 0;
    total += v < prev ? -v : v;
    if (v > prev) prev = v;
  }
  return total > 0 && total < 400 ? total : 0;
}

/* A run of letters (with inner apostrophes and dots) at s. Returns the bytes consumed. */
static size_t letters(writer *w, const char *s) {
  size_t n = 0;
  while (isalpha((unsigned char)s[n]) ||
         ((s[n] == '\'' || s[n] == '.') && n > 0 && isalpha((unsigned char)s[n - 1]) && isalpha((unsigned char)s[n + 1])))
    n++;
  char *tok = g_ascii_strdown(s, (gssize)n);
  size_t used = n;
  bool dotted = strchr(tok, '.') != NULL;
  if (dotted) {
    const char *as_words = NULL;
    for (size_t i = 0; i < G_N_ELEMENTS(DOTTED); i++)
      if (!strcmp(tok, DOTTED[i][0])) as_words = DOTTED[i][1];
    if (as_words) {
      word(w, as_words);
    } else {
      /* U.S.A, or words run together with a stray dot: letters of one-letter parts are spelled */
      char **parts = g_strsplit(tok, ".", -1);
      for (char **q = parts; *q; q++) word(w, *q);
      g_strfreev(parts);
    }
    if (s[used] == '.') used++; /* the abbreviation's own closing dot */
    g_free(tok);
    return used;
  }
  const char *expansion = s[n] == '.' ? abbreviation(tok, s, n) : NULL;
  bool upper = n >= 2 && n <= 4;  /* all capitals: an acronym or a numeral */
  bool vowel = false;
  for (size_t i = 0; i < n; i++) {
    upper &= isupper((unsigned char)s[i]) != 0;
    vowel |= strchr("aeiouy", tok[i]) != NULL;
  }
  /* "St." before a capitalised name is a saint; after one, a street */
  if (expansion && !strcmp(tok, "st")) {
    const char *q = s + n + 1;
    while (*q == ' ') q++;
    if (!isupper((unsigned char)*q)) expansion = "street";
  }
  if (expansion) {
    word(w, expansion);
    used++;
  } else if (upper && roman(tok) > 0) { /* Chapter IV, Henry VIII */
    cardinal(w, (uint64_t)roman(tok));
  } else if (upper && !(vowel && n == 4)) { /* an acronym is spelled (FBI, BBC); a four-letter one with a vowel is
                                               more likely read as a word (NASA) */
    for (size_t i = 0; i < n; i++) {
      char one[2] = {tok[i], 0};
      word(w, one);
    }
  } else {
    word(w, tok);
  }
  g_free(tok);
  return used;
}

static void report(writer *w, unsigned kind, const char *what) {
  if (!w->dropped || (w->reported & (1u << kind))) return;
  w->reported |= 1u << kind;
  w->dropped(what, w->ctx);
}

/* UTF-8 to ASCII: accents stripped (NFD, marks dropped), typographic punctuation mapped, the rest dropped. */
static char *to_ascii(writer *w, const char *utf8, size_t len) {
  GString *o = g_string_sized_new(len);
  const char *p = utf8, *end = utf8 + len;
  while (p < end) {
    gunichar c = g_utf8_get_char_validated(p, end - p);
    if (c == (gunichar)-1 || c == (gunichar)-2) {
      report(w, 0, "invalid UTF-8");
      p++;
      continue;
    }
    const char *next = g_utf8_next_char(p);
    if (c < 128) {
      if (c == '\t' || c == '\n' || c == '\r') g_string_append_c(o, ' ');
      else if (c < 32 || c == 127) report(w, 1, "control characters");
      else if (c) g_string_append_c(o, (char)c);
    } else if (c == 0x2018 || c == 0x2019 || c == 0x02bc) {
      g_string_append_c(o, '\'');
    } else if (c == 0x201c || c == 0x201d || c == 0xab || c == 0xbb) {
      g_string_append_c(o, '"');
    } else if (c == 0x2013 || c == 0x2014) {
      g_string_append(o, ", ");
    } else if (c == 0x2026) {
      g_string_append_c(o, '.');
    } else if (c == 0xa3) {
      g_string_append_c(o, '\x01'); /* pound sign, read by the scanner */
    } else if (c == 0x20ac) {
      g_string_append_c(o, '\x02');
    } else if (c == 0xa5) {
      g_string_append_c(o, '\x03');
    } else if (c == 0xa0 || g_unichar_isspace(c)) {
      g_string_append_c(o, ' ');
    } else {
      char *d = g_utf8_normalize(p, next - p, G_NORMALIZE_NFD);
      bool kept = false;
      for (const char *q = d; q && *q; q = g_utf8_next_char(q)) {
        gunichar k = g_utf8_get_char(q);
        if (k < 128 && g_ascii_isalpha((char)k)) g_string_append_c(o, (char)k), kept = true;
      }
      g_free(d);
      if (c == 0xdf) g_string_append(o, "ss"), kept = true;
      if (c == 0xe6 || c == 0xc6) g_string_append(o, "ae"), kept = true;
      if (!kept) report(w, 2, "characters with no reading (symbols, emoji, other scripts)");
    }
    p = next;
  }
  return g_string_free(o, FALSE);
}

char *e2e_tts_normalize(const char *utf8, size_t len, void (*dropped)(const char *, void *), void *ctx) {
  writer w = {.out = g_string_sized_new(len + 16), .dropped = dropped, .ctx = ctx};
  char *s = to_ascii(&w, utf8 ? utf8 : "", utf8 ? len : 0);
  for (size_t i = 0; s[i];) {
    unsigned char c = (unsigned char)s[i];
    char currency = c == '$' ? '$' : c == 1 ? 'L' : c == 2 ? 'E' : c == 3 ? 'Y' : 0;
    if (currency && isdigit((unsigned char)s[i + 1])) {
      i += 1 + number(&w, s + i + 1, currency);
    } else if (isdigit(c)) {
      i += number(&w, s + i, 0);
    } else if (c == '-' && isdigit((unsigned char)s[i + 1]) && (i == 0 || s[i - 1] == ' ')) {
      word(&w, "minus");
      i++;
    } else if (c == '-' && i > 0 && isdigit((unsigned char)s[i - 1]) && isdigit((unsigned char)s[i + 1])) {
      word(&w, "to"); /* a range: 1990-1995, 3-5 */
      i++;
    } else if (isalpha(c)) {
      i += letters(&w, s + i);
    } else {
      switch (c) {
      case '.': case '?': case '!': pause_mark(&w, (char)c); break;
      case ',': case ';': case ':': case '(': case ')': case '[': case ']': pause_mark(&w, ','); break;
      case '&': word(&w, "and"); break;
      case '+': word(&w, "plus"); break;
      case '=': word(&w, "equals"); break;
      case '@': word(&w, "at"); break;
      case '%': word(&w, "percent"); break;
      case '#': if (isdigit((unsigned char)s[i + 1])) word(&w, "number"); break;
      case ' ': case '-': case '/': case '"': case '\'': case '_': case '*': case '~': case '`': case '<': case '>':
      case '{': case '}': case '|': case '\\': case '^':
        if (w.out->len && w.out->str[w.out->len - 1] != ' ') g_string_append_c(w.out, ' ');
        break;
      default: report(&w, 2, "characters with no reading (symbols, emoji, other scripts)"); break;
      }
      i++;
    }
  }
  g_free(s);
  /* single spaces, none before a pause mark, none at either end */
  GString *o = w.out, *clean = g_string_sized_new(o->len);
  for (gsize i = 0; i < o->len; i++) {
    char c = o->str[i];
    if (c == ' ' && (!clean->len || clean->str[clean->len - 1] == ' ')) continue;
    if (strchr(",.?!", c) && clean->len && clean->str[clean->len - 1] == ' ') g_string_truncate(clean, clean->len - 1);
    if (strchr(",.?!", c) && !clean->len) continue;
    g_string_append_c(clean, c);
  }
  while (clean->len && clean->str[clean->len - 1] == ' ') g_string_truncate(clean, clean->len - 1);
  g_string_free(o, TRUE);
  return g_string_free(clean, FALSE);
}

char **e2e_tts_sentences(const char *text, int max_chars) {
  if (max_chars < 16) max_chars = 16;
  GPtrArray *out = g_ptr_array_new();
  const char *p = text ? text : "";
  while (*p) {
    while (*p == ' ') p++;
    if (!*p) break;
    size_t n = strlen(p), cut = 0;
    /* the first sentence end; if beyond max_chars, the last comma, else the last space, before it */
    for (size_t i = 0; i < n && !cut; i++)
      if (strchr(".?!", p[i]) && (p[i + 1] == ' ' || !p[i + 1])) cut = i + 1;
    if (!cut) cut = n;
    if (cut > (size_t)max_chars) {
      size_t best = 0;
      for (size_t i = 0; i < (size_t)max_chars; i++)
        if (p[i] == ',' && p[i + 1] == ' ') best = i + 1;
      if (!best)
        for (size_t i = 0; i < (size_t)max_chars; i++)
          if (p[i] == ' ') best = i;
      cut = best ? best : (size_t)max_chars;
    }
    char *s = g_strndup(p, cut);
    g_strstrip(s);
    if (*s) g_ptr_array_add(out, s);
    else g_free(s);
    p += cut;
  }
  g_ptr_array_add(out, NULL);
  return (char **)g_ptr_array_free(out, FALSE);
}
