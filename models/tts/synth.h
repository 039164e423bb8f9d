/* Step-by-step synthesis on the trained network, and the vocoder. Private to models/tts/. */
#ifndef E2E_TTS_SYNTH_H
#define E2E_TTS_SYNTH_H

#include "internal.h"

typedef struct tts_synth tts_synth;
/* A decoder for one text (labels [n], without the end mark), at most max_steps steps. NULL with a message. */
enum {
  TTS_SYNTH_RECORD_ATTENTION = 1, /* keep every step's attention (tts_synth_attention) */
  TTS_SYNTH_FULL_ATTENTION = 2,   /* attend to all characters, as in training (tests; no monotonic window) */
  TTS_SYNTH_PRENET_DROPOUT = 4,   /* keep the prenet's training dropout (Tacotron's choice; a fixed seed) */
};
tts_synth *tts_synth_new(const tts_model *m, const uint8_t *labels, int n, int max_steps, int flags);
void tts_synth_free(tts_synth *s);
/* The next step: the decoder's reduction * n_mels normalised log-mel values into frames (before the
 * postnet: tts_postnet_frames, then tts_heard_frames), the stop probability into *stop_prob.
 * Returns the attention's position (a character index; the end mark is text length), or -1 past
 * max_steps. */
int tts_synth_step(tts_synth *s, float *frames, float *stop_prob);
/* True once the sentence is said: the stop token fired with the attention at the last characters, or the
 * attention has lingered on the end mark (the element, the tool and the evaluation all stop here). */
bool tts_synth_finished(const tts_synth *s);
int tts_synth_text_len(const tts_synth *s); /* with the end mark */
/* Normalised frames [n][n_mels] to the log-mel the vocoder hears: contrast (tts_model.contrast unless
 * overridden) stretches them around the voice's mean. The network goes on from what it predicted; only
 * what is heard is stretched. */
void tts_heard_frames(const tts_model *m, float contrast, const float *norm, int64_t n, float *log_mel);
const float *tts_synth_attention(const tts_synth *s); /* [steps][text_len], or NULL */
int64_t tts_synth_steps(const tts_synth *s);

/* The vocoder: log-mel frames to a magnitude spectrogram (the filterbank's least-squares inverse), then
 * Griffin-Lim. */
typedef struct tts_vocoder tts_vocoder;
tts_vocoder *tts_vocoder_new(const e2e_mel_config *mel);
void tts_vocoder_free(tts_vocoder *v);
/* log_mel [T][n_mels] to samples; *out malloc'ed, (T - 1) * hop + n_fft samples. */
bool tts_vocoder_run(tts_vocoder *v, const float *log_mel, int64_t T, int iterations, float **out, int64_t *n_out);

#endif
