/* Sound files and resampling for the tool and for training data: libsndfile and libsamplerate. */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <samplerate.h>
#include <sndfile.h>

#include "e2e/audio.h"
#include "nncore/nncore.h"

/* Longest file read: an hour at 48 kHz. Longer input belongs in a stream, not in memory. */
#define MAX_SAMPLES ((int64_t)48000 * 3600)

bool e2e_sound_read(const char *path, float **x, int64_t *n, int *sample_rate) {
  *x = NULL;
  *n = 0;
  SF_INFO info;
  memset(&info, 0, sizeof info);
  SNDFILE *f = sf_open(path, SFM_READ, &info);
  if (!f) {
    nn_set_error("%s: cannot read as sound: %s", path, sf_strerror(NULL));
    return false;
  }
  if (info.channels < 1 || info.channels > 64 || info.samplerate < 1000 || info.samplerate > 768000 ||
      info.frames < 0 || info.frames > MAX_SAMPLES) {
    nn_set_error("%s: unsupported sound (%d channels, %d Hz, %lld frames)", path, info.channels, info.samplerate,
                 (long long)info.frames);
    sf_close(f);
    return false;
  }
  /* read in chunks and grow with what actually arrives: the header's frame count is only a claim, and a
   * 59-byte file can claim an hour of 64 channels */
  enum { CHUNK = 16384 };
  float *inter = malloc(sizeof(float) * CHUNK * (size_t)info.channels), *mono = NULL;
  int64_t len = 0, cap = 0;
  bool ok = inter != NULL;
  for (sf_count_t got; ok && (got = sf_readf_float(f, inter, CHUNK)) > 0;) {
    if (len + got > MAX_SAMPLES) {
      nn_set_error("%s: longer than %lld samples", path, (long long)MAX_SAMPLES);
      ok = false;
      break;
    }
    if (len + got > cap) {
      cap = cap ? cap * 2 : CHUNK;
      while (cap < len + got) cap *= 2;
      float *grown = realloc(mono, sizeof(float) * (size_t)cap);
      if (!grown) {
        nn_set_error("%s: out of memory", path);
        ok = false;
        break;
      }
      mono = grown;
    }
    for (sf_count_t i = 0; i < got; i++) {
      float sum = 0.0f;
      for (int ch = 0; ch < info.channels; ch++) sum += inter[i * info.channels + ch];
      mono[len + i] = sum / info.channels;
    }
    len += got;
  }
  if (!inter) nn_set_error("%s: out of memory", path);
  sf_close(f);
  free(inter);
  if (!ok) {
    free(mono);
    return false;
  }
  *x = mono ? mono : calloc(1, sizeof(float));
  *n = len;
  *sample_rate = info.samplerate;
  return true;
}

bool e2e_wav_write(const char *path, const float *x, int64_t n, int sample_rate) {
  size_t len = strlen(path);
  char *tmp = malloc(len + 16);
  if (!tmp) {
    nn_set_error("%s: out of memory", path);
    return false;
  }
  snprintf(tmp, len + 16, "%s.tmp%d", path, (int)getpid());
  SF_INFO info = {.samplerate = sample_rate, .channels = 1, .format = SF_FORMAT_WAV | SF_FORMAT_PCM_16};
  SNDFILE *f = sf_open(tmp, SFM_WRITE, &info);
  if (!f) {
    nn_set_error("%s: cannot write: %s", path, sf_strerror(NULL));
    free(tmp);
    return false;
  }
  /* clip rather than wrap: libsndfile scales floats to 16 bits without clipping unless told to */
  sf_command(f, SFC_SET_CLIPPING, NULL, SF_TRUE);
  sf_count_t put = sf_writef_float(f, x, n);
  bool ok = put == n && sf_close(f) == 0;
  if (ok && rename(tmp, path) != 0) ok = false;
  if (!ok) {
    unlink(tmp);
    nn_set_error("%s: write failed", path);
  }
  free(tmp);
  return ok;
}

bool e2e_resample(const float *x, int64_t n, int rate_in, int rate_out, float **out, int64_t *n_out) {
  *out = NULL;
  *n_out = 0;
  if (rate_in <= 0 || rate_out <= 0 || n < 0 || n > MAX_SAMPLES) {
    nn_set_error("resample: bad request (%lld samples, %d -> %d Hz)", (long long)n, rate_in, rate_out);
    return false;
  }
  double ratio = (double)rate_out / rate_in;
  int64_t cap = (int64_t)(n * ratio) + 16;
  float *y = malloc(sizeof(float) * (size_t)cap);
  if (!y) {
    nn_set_error("resample: out of memory");
    return false;
  }
  if (rate_in == rate_out) {
    if (n) memcpy(y, x, sizeof(float) * n);
    *out = y;
    *n_out = n;
    return true;
  }
  SRC_DATA d = {.data_in = x, .data_out = y, .input_frames = n, .output_frames = cap, .src_ratio = ratio,
                .end_of_input = 1};
  int err = src_simple(&d, SRC_SINC_MEDIUM_QUALITY, 1);
  if (err) {
    free(y);
    nn_set_error("resample: %s", src_strerror(err));
    return false;
  }
  *out = y;
  *n_out = d.output_frames_gen;
  return true;
}

bool e2e_sound_read_at(const char *path, int rate, float **x, int64_t *n) {
  float *raw = NULL;
  int64_t nr = 0;
  int rate_in = 0;
  bool ok = e2e_sound_read(path, &raw, &nr, &rate_in) && e2e_resample(raw, nr, rate_in, rate, x, n);
  free(raw);
  return ok;
}
