/* What every harness here is: libFuzzer's entry points. A harness feeds one input to one parser of
 * untrusted bytes and must return normally whatever the bytes are: a crash, a sanitizer report, a leak,
 * a hang or an allocation beyond -rss_limit_mb is a bug in the parser. The same harnesses are linked
 * with replay.c for the regular test suite, which runs the seed corpora and every input a fuzzer ever
 * found a bug with (tests/fuzz/regressions/). */
#ifndef E2E_FUZZ_H
#define E2E_FUZZ_H

#include <stddef.h>
#include <stdint.h>

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#endif
