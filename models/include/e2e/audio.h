/* The audio front end shared by speech recognition, speech synthesis, their training and the e2e tool:
 * framing, window, STFT and its inverse (kissfft), mel filterbank and log-mel features, streaming.
 *
 * Frames follow torch.stft(center=False): frame i covers samples [i*hop, i*hop + n_fft), the periodic
 * Hann window of win_length sits centred in n_fft. A streamed signal gives the same frames, bit for bit,
 * as the whole signal at once: what ASR trains on is what the element sees. */
#ifndef E2E_AUDIO_H
#define E2E_AUDIO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct {
  int sample_rate;   /* Hz */
  int n_fft;         /* FFT size (even) */
  int win_length;    /* Hann window length, <= n_fft */
  int hop;           /* samples between frames */
  int n_mels;
  float f_min, f_max; /* the filterbank's band, Hz (HTK mel scale, triangles not area-normalised) */
} e2e_mel_config;

/* 16 kHz, 25 ms window in a 512-point FFT, 10 ms hop, 80 mels over 20-7600 Hz. */
e2e_mel_config e2e_mel_default(void);
/* False with a message naming the bad field. */
bool e2e_mel_config_check(const e2e_mel_config *c);

/* The HTK mel scale the filterbank is spaced on (augmentation warps along it too). */
double e2e_hz_to_mel(double hz);
double e2e_mel_to_hz(double mel);

/* What log-mel adds to the power before the log: digital silence reads as log(1e-6). */
#define E2E_LOG_MEL_FLOOR 1e-6f

typedef struct e2e_audio_fe e2e_audio_fe;

/* The tables of a configuration (window, FFT plans, filterbank). Read-only after creation except for its
 * scratch: one front end per thread. NULL with a message on a bad configuration. */
e2e_audio_fe *e2e_audio_fe_new(const e2e_mel_config *c);
void e2e_audio_fe_free(e2e_audio_fe *fe);
const e2e_mel_config *e2e_audio_fe_config(const e2e_audio_fe *fe);
/* The filterbank, [n_mels][n_fft/2 + 1]. */
const float *e2e_audio_fe_filterbank(const e2e_audio_fe *fe);

/* Frames in n samples (0 when n < n_fft). */
int64_t e2e_audio_frames(const e2e_mel_config *c, int64_t n);

/* One frame's spectrum: n_fft samples in, n_fft/2 + 1 complex bins out (re, im interleaved). */
void e2e_audio_fe_spectrum(e2e_audio_fe *fe, const float *samples, float *bins);
/* Power spectrum of every frame: out [frames][n_fft/2 + 1]. */
void e2e_stft_power(e2e_audio_fe *fe, const float *x, int64_t n, float *out);
/* Complex STFT of every frame: out [frames][n_fft/2 + 1][2]. */
void e2e_stft(e2e_audio_fe *fe, const float *x, int64_t n, float *out);
/* Inverse STFT by weighted overlap-add: spec [frames][n_fft/2 + 1][2] to y [(frames - 1) * hop + n_fft],
 * divided by the summed squared window where that is not tiny (the edges, covered by one frame's
 * window tail, stay as they are). Inverts e2e_stft up to rounding where windows overlap. */
void e2e_istft(e2e_audio_fe *fe, const float *spec, int64_t frames, float *y);

/* Log-mel of every frame: out [frames][n_mels], log(mel power + E2E_LOG_MEL_FLOOR). */
void e2e_log_mel(e2e_audio_fe *fe, const float *x, int64_t n, float *out);
/* Log-mel of one power spectrum. */
void e2e_log_mel_of_power(const e2e_audio_fe *fe, const float *power, float *out);

/* Streaming log-mel: push samples of any count, take the frames they complete. */
typedef struct e2e_mel_stream e2e_mel_stream;
e2e_mel_stream *e2e_mel_stream_new(const e2e_mel_config *c);
void e2e_mel_stream_free(e2e_mel_stream *s);
/* Appends n samples; returns how many frames are now ready (e2e_mel_stream_take gives them). */
int e2e_mel_stream_push(e2e_mel_stream *s, const float *x, int n);
/* Copies up to max ready frames into out [max][n_mels]; returns the count. */
int e2e_mel_stream_take(e2e_mel_stream *s, float *out, int max);
/* Forgets pending samples and frames (a discontinuity, a new segment). */
void e2e_mel_stream_reset(e2e_mel_stream *s);
/* Samples pushed since creation or the last reset, and the index of the next frame to complete. */
int64_t e2e_mel_stream_samples(const e2e_mel_stream *s);

/* ---- sound files (the e2e tool, tests, training data) ---- */

/* Reads a sound file (WAV, FLAC, ... through libsndfile) down-mixed to mono floats in [-1, 1]. False with
 * a message naming the file and what is wrong. Free *x with free(). */
bool e2e_sound_read(const char *path, float **x, int64_t *n, int *sample_rate);
/* 16-bit mono PCM WAV, written atomically (a temporary file, then rename). */
bool e2e_wav_write(const char *path, const float *x, int64_t n, int sample_rate);
/* e2e_sound_read, then resampled to rate (what every consumer of the front end wants). */
bool e2e_sound_read_at(const char *path, int rate, float **x, int64_t *n);
/* Resamples mono x from rate_in to rate_out (libsamplerate's medium-quality sinc): for the tool and
 * training data; the elements use GStreamer's audioresample. *out is malloc'ed. */
bool e2e_resample(const float *x, int64_t n, int rate_in, int rate_out, float **out, int64_t *n_out);

#endif
