/* The synthesiser's network: characters -> text encoder (embedding, two convolutions, a bidirectional LSTM)
 * -> keys and values; the previous step's mel frames -> prenet -> causal dilated highway convolutions ->
 * queries; dot-product attention over the characters; [context, query] -> causal highway convolutions ->
 * the next r mel frames and a stop logit. Every convolution is causal in time, so training runs all steps
 * at once (teacher forcing) and synthesis runs one step at a time on cached layer inputs (synth.c): the
 * same arithmetic either way. Private to models/tts/. */
#ifndef E2E_TTS_INTERNAL_H
#define E2E_TTS_INTERNAL_H

#include "e2e/audio.h"
#include "e2e/tts.h"
#include "nncore/nncore.h"

#define TTS_ARCH "e2e-tts-v1"
#define TTS_MAX_LAYERS 12
/* The convolutions' kernel: 3 taps, `dilation` steps apart (causal: t - 2d, t - d, t). */
#define TTS_TAPS 3
#define TTS_MAX_POSTNET 8

typedef struct {
  int n_mels;
  int reduction;                    /* mel frames per decoder step */
  int embed;                        /* character embedding */
  int text_dim;                     /* text convolutions; the LSTM has text_dim / 2 per direction */
  int dim;                          /* keys, values, queries and the decoder */
  int audio_layers, dec_layers;     /* highway layers; their dilations cycle 1, 3, 9, 27 */
  float prenet_dropout;
  int postnet_layers, postnet_dim;  /* 0 layers: none (files from before it existed) */
} tts_config;

typedef struct {
  tts_config cfg;
  e2e_mel_config mel;
  nn_params p;
  nn_tensor *embed;                 /* [symbols, embed] */
  nn_linear text_conv1, text_conv2; /* 5 taps, centred: a linear layer over 5 shifted copies */
  nn_rnn text_rnn;
  nn_linear key, value;
  nn_linear pre1, pre2;
  nn_linear audio[TTS_MAX_LAYERS];  /* TTS_TAPS * dim -> 2 * dim (gate, candidate) */
  nn_linear dec_in;                 /* 2 * dim -> dim */
  nn_linear dec[TTS_MAX_LAYERS];
  nn_linear fc1, fc2, out;          /* out: dim -> reduction * n_mels + 1 (the stop logit last) */
  /* The postnet: centred 5-tap convolutions over the decoded frames (n_mels -> postnet_dim -> ... ->
   * n_mels, tanh between), its output added to them. The decoder is causal and must hedge about what
   * comes next, so its frames are smoothed; the postnet sees postnet_reach frames on either side and
   * sharpens them. Synthesis waits for that many frames before a frame is heard (postnet.c). */
  nn_linear post[TTS_MAX_POSTNET];
  nn_tensor *mel_mean, *mel_std;    /* [n_mels]: the model works on normalised log-mel */
  /* Synthesis multiplies the predicted normalised log-mel by this: an L1-trained network predicts a
   * smoothed spectrogram, flatter than speech, and stretching it back makes it clearer. Tuned after
   * training on held-out sentences outside the evaluation sets and stored in the file ("contrast"). */
  float contrast;
  uint32_t model_id;
} tts_model;

tts_config tts_config_default(void);
bool tts_config_check(const tts_config *c);
/* 16 kHz, 50 ms windows in a 1024-point FFT, 12.5 ms hop, 80 mels over 40-8000 Hz. */
e2e_mel_config tts_mel_default(void);
bool tts_init(tts_model *m, const tts_config *c, const e2e_mel_config *mel, uint64_t seed);
#define TTS_CONTRAST_MIN 0.5f
#define TTS_CONTRAST_MAX 2.0f
void tts_free(tts_model *m);
static inline int tts_dilation(int layer) { return layer % 4 == 0 ? 1 : layer % 4 == 1 ? 3 : layer % 4 == 2 ? 9 : 27; }

/* Keys and values [N, L, dim] of a batch of label sequences text [N, L] (i64, padded with E2E_TTS_PAD). */
void tts_encode_text(const tts_model *m, nn_tensor *text, const int64_t *text_len, nn_tensor **keys,
                     nn_tensor **values);

/* Teacher-forced decoder over S steps: prev [N, S, r * n_mels] holds each step's previous frames
 * (normalised). Returns [N, S, r * n_mels + 1]; the attention [N, S, L] in *attention. */
nn_tensor *tts_decode(const tts_model *m, nn_tensor *prev, nn_tensor *keys, nn_tensor *values,
                      const int64_t *text_len, bool training, nn_rng *rng, nn_tensor **attention);

/* Saves with the architecture, config, front end and weights id, then extra (atomically). */
bool tts_save(tts_model *m, const char *path, const nn_kv *extra, int n_extra);
/* The configuration from a file's metadata, then a fresh network for it (its weights not yet loaded). */
bool tts_init_from_meta(tts_model *m, const nn_st_file *f, const char *path);
/* A whole model from a file (opened, or by path). */
bool tts_load_file(tts_model *m, const nn_st_file *f, const char *path);
bool tts_load(tts_model *m, const char *path);
/* The postnet's residual on normalised frames x [N, T, n_mels], frames at or past frame_len[n] taken as
 * silence's zeros at every layer (as synthesis sees past the end); x itself when there is no postnet. */
nn_tensor *tts_postnet(const tts_model *m, nn_tensor *x, const int64_t *frame_len);
/* Frames of context the postnet needs on each side of a frame (2 per layer). */
static inline int tts_postnet_reach(const tts_config *c) { return 2 * c->postnet_layers; }
/* The same arithmetic on one sequence in plain arrays: out [b - a][n_mels] gets the refined frames a..b-1
 * of the sequence in [n][n_mels], rows outside [0, n) zeros. Whole results need n >= b + reach, or n the
 * sequence's full length. */
bool tts_postnet_frames(const tts_model *m, const float *in, int64_t n, int64_t a, int64_t b, float *out);
char *tts_config_json(const tts_config *c);
/* The front end as the "mel" metadata (read back by asr_mel_from_json). */
char *tts_mel_json(const e2e_mel_config *c);

#endif
