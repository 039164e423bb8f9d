#include "e2e/rans.h"

#include <stdlib.h>
#include <string.h>

#define RANS_L (1u << 23) /* lower end of the normalised state interval */

void rans_writer_init(rans_writer *w) { memset(w, 0, sizeof *w); }

void rans_writer_free(rans_writer *w) {
  free(w->ops);
  memset(w, 0, sizeof *w);
}

static void push(rans_writer *w, uint32_t start, uint32_t freq) {
  if (w->oom) return;
  if (w->n == w->cap) {
    size_t cap = w->cap ? w->cap * 2 : 4096;
    uint32_t *o = realloc(w->ops, cap * sizeof *o);
    if (!o) {
      w->oom = true;
      return;
    }
    w->ops = o;
    w->cap = cap;
  }
  w->ops[w->n++] = start << 16 | (freq - 1);
}

void rans_put(rans_writer *w, const int32_t *cdf, int s) {
  push(w, (uint32_t)cdf[s], (uint32_t)(cdf[s + 1] - cdf[s]));
}

void rans_put_raw16(rans_writer *w, uint32_t v) { push(w, v & 0xffff, 1); }

uint8_t *rans_writer_finish(rans_writer *w, size_t *len) {
  if (w->oom) return NULL;
  /* each symbol emits at most 2 bytes at 16-bit precision, plus the 4-byte state */
  size_t cap = w->n * 2 + 8;
  uint8_t *buf = malloc(cap);
  if (!buf) return NULL;
  uint8_t *p = buf + cap;
  uint32_t x = RANS_L;
  for (size_t i = w->n; i-- > 0;) {
    uint32_t start = w->ops[i] >> 16, freq = (w->ops[i] & 0xffff) + 1;
    uint32_t x_max = ((RANS_L >> RANS_PRECISION) << 8) * freq;
    while (x >= x_max) {
      *--p = (uint8_t)(x & 0xff);
      x >>= 8;
    }
    x = ((x / freq) << RANS_PRECISION) + (x % freq) + start;
  }
  p -= 4;
  p[0] = (uint8_t)(x >> 24);
  p[1] = (uint8_t)(x >> 16);
  p[2] = (uint8_t)(x >> 8);
  p[3] = (uint8_t)x;
  *len = (size_t)(buf + cap - p);
  memmove(buf, p, *len);
  return buf;
}

static inline uint32_t next_byte(rans_reader *r) {
  if (r->pos < r->len) return r->data[r->pos++];
  r->overrun = true;
  return 0;
}

void rans_reader_init(rans_reader *r, const uint8_t *data, size_t len) {
  r->data = data;
  r->len = len;
  r->pos = 0;
  r->overrun = false;
  r->x = 0;
  for (int i = 0; i < 4; i++) r->x = r->x << 8 | next_byte(r);
}

static inline void renorm(rans_reader *r) {
  /* a corrupt stream can leave x at 0; the overrun flag then ends the loop's usefulness */
  while (r->x < RANS_L) {
    r->x = r->x << 8 | next_byte(r);
    if (r->overrun && r->x < RANS_L) {
      r->x = RANS_L;
      break;
    }
  }
}

int rans_get(rans_reader *r, const int32_t *cdf, int len) {
  uint32_t slot = r->x & (RANS_TOTAL - 1);
  int lo = 0, hi = len; /* largest s with cdf[s] <= slot */
  while (hi - lo > 1) {
    int mid = (lo + hi) >> 1;
    if ((uint32_t)cdf[mid] <= slot) lo = mid;
    else hi = mid;
  }
  uint32_t start = (uint32_t)cdf[lo], freq = (uint32_t)(cdf[lo + 1] - cdf[lo]);
  r->x = freq * (r->x >> RANS_PRECISION) + slot - start;
  renorm(r);
  return lo;
}

uint32_t rans_get_raw16(rans_reader *r) {
  uint32_t v = r->x & (RANS_TOTAL - 1);
  r->x >>= RANS_PRECISION;
  renorm(r);
  return v;
}

bool rans_reader_done(const rans_reader *r) { return !r->overrun && r->pos == r->len && r->x == RANS_L; }

bool rans_cdf_from_pmf(const double *pmf, int n, int32_t *cdf) {
  if (n < 1 || n > (int)RANS_TOTAL) return false;
  double total = 0;
  for (int i = 0; i < n; i++) {
    if (!(pmf[i] >= 0)) return false;
    total += pmf[i];
  }
  if (!(total > 0)) return false;
  int32_t *f = malloc(sizeof(int32_t) * (size_t)n);
  if (!f) return false;
  int64_t sum = 0;
  int big = 0;
  for (int i = 0; i < n; i++) {
    double q = pmf[i] / total * RANS_TOTAL;
    f[i] = q < 1 ? 1 : (int32_t)(q + 0.5);
    sum += f[i];
    if (f[i] > f[big]) big = i;
  }
  /* fix the total on the largest entries: their relative change is smallest */
  while (sum != RANS_TOTAL) {
    if (sum < RANS_TOTAL) {
      f[big] += (int32_t)(RANS_TOTAL - sum);
      sum = RANS_TOTAL;
    } else {
      int best = -1;
      for (int i = 0; i < n; i++)
        if (f[i] > 1 && (best < 0 || f[i] > f[best])) best = i;
      if (best < 0) {
        free(f);
        return false;
      }
      int64_t take = sum - RANS_TOTAL, room = f[best] - 1;
      if (take > room) take = room;
      if (take > f[best] / 8 + 1) take = f[best] / 8 + 1;
      f[best] -= (int32_t)take;
      sum -= take;
    }
  }
  cdf[0] = 0;
  for (int i = 0; i < n; i++) cdf[i + 1] = cdf[i] + f[i];
  free(f);
  return true;
}
