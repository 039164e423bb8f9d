/* rANS entropy coder (32-bit state, byte-wise renormalisation, 16-bit
 * probabilities) over integer CDF tables.
 *
 * rANS codes last-in first-out, so the writer records (start, freq) pairs in
 * order and codes them backwards when finished; the reader then returns the
 * symbols in their original order. Every table must give each symbol a
 * frequency of at least 1 and sum to exactly 1 << RANS_PRECISION. */
#ifndef E2E_RANS_H
#define E2E_RANS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define RANS_PRECISION 16
#define RANS_TOTAL (1u << RANS_PRECISION)

typedef struct {
  uint32_t *ops; /* start << 16 | (freq - 1) */
  size_t n, cap;
  bool oom;
} rans_writer;

void rans_writer_init(rans_writer *w);
void rans_writer_free(rans_writer *w);
/* Symbol s of a table cdf[0..len] (cdf[len] = RANS_TOTAL). */
void rans_put(rans_writer *w, const int32_t *cdf, int s);
/* 16 raw bits (uniform). */
void rans_put_raw16(rans_writer *w, uint32_t v);
/* Codes everything; returns a malloc'd buffer (NULL when out of memory). */
uint8_t *rans_writer_finish(rans_writer *w, size_t *len);

typedef struct {
  const uint8_t *data;
  size_t len, pos;
  uint32_t x;
  bool overrun; /* tried to read past the end: the stream is corrupt */
} rans_reader;

void rans_reader_init(rans_reader *r, const uint8_t *data, size_t len);
/* Symbol index from a table of len symbols; always in [0, len). */
int rans_get(rans_reader *r, const int32_t *cdf, int len);
uint32_t rans_get_raw16(rans_reader *r);
/* True when the stream was consumed exactly and the final state is the
 * encoder's initial one (a strong integrity check). */
bool rans_reader_done(const rans_reader *r);

/* Quantises a probability mass function (n entries, any positive scale) into a
 * CDF cdf[0..n] summing to RANS_TOTAL, every symbol at least 1. n <= RANS_TOTAL. */
bool rans_cdf_from_pmf(const double *pmf, int n, int32_t *cdf);

#endif
