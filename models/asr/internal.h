/* The CTC recogniser: log-mel -> two stride-2 3x3 convs over (mel, time) -> linear -> bidirectional GRU
 * layers -> characters. Private to models/asr/. */
#ifndef E2E_ASR_INTERNAL_H
#define E2E_ASR_INTERNAL_H

#include "e2e/asr.h"
#include "e2e/audio.h"
#include "nncore/nncore.h"

#define ASR_ARCH "e2e-asr-ctc-v1"

typedef struct {
  int n_mels;        /* features per frame (the front end's) */
  int conv_channels; /* of the two subsampling convs */
  int dim;           /* after the projection of the conv output */
  int hidden;        /* GRU units per direction */
  int layers;
  bool bidirectional;
} asr_config;

typedef struct {
  asr_config cfg;
  e2e_mel_config mel;
  nn_params p;
  nn_conv2d_layer conv1, conv2;
  nn_linear proj, out;
  nn_rnn rnn;
  uint32_t model_id;
} asr_model;

asr_config asr_config_default(void);
bool asr_config_check(const asr_config *c);
/* Builds the network with fresh weights (seeded). */
bool asr_init(asr_model *m, const asr_config *c, const e2e_mel_config *mel, uint64_t seed);
void asr_free(asr_model *m);
/* Frames after the two stride-2 convs. */
static inline int64_t asr_subsampled(int64_t frames) { return ((frames + 1) / 2 + 1) / 2; }

/* Per-utterance mean and variance normalisation of log-mel frames [T][M], in place (the model's input). */
void asr_normalize(float *feats, int64_t T, int M);

/* Log-probabilities [T', N, C] of a batch x [N, 1, M, T] (normalised, zero past each length); lengths
 * (frames) [N]. Recorded for backward when grad is on. out_lengths gets T' per utterance. */
nn_tensor *asr_forward(const asr_model *m, nn_tensor *x, const int64_t *lengths, int64_t *out_lengths);

/* The front end's configuration as the "mel" metadata JSON (g_free it), and back (checked). */
char *asr_mel_json(const e2e_mel_config *c);
bool asr_mel_from_json(const char *json, e2e_mel_config *c, const char *path);

/* Training-time augmentation of one utterance's log-mel frames (before normalisation), in the feature
 * domain so that one stored shard gives a new variant every epoch: tempo, vocal-tract warp, channel EQ,
 * telephone band, reverberation, additive coloured noise. Writes *out_T frames into out (room for
 * asr_augment_max_frames(T)). SpecAugment masks come after normalisation (asr_spec_mask). */
typedef struct {
  float p_tempo, tempo_range;    /* probability, +- fraction */
  float p_warp, warp_range;
  float p_eq, eq_db;
  float p_phone;
  float p_reverb;
  float p_noise, snr_lo, snr_hi; /* dB */
  int freq_masks, freq_mask_width;
  int time_masks, time_mask_width;
} asr_augment_opts;
asr_augment_opts asr_augment_defaults(void);
int64_t asr_augment_max_frames(const asr_augment_opts *o, int64_t T);
void asr_augment(const asr_augment_opts *o, const e2e_mel_config *mel, const float *in, int64_t T, float *out,
                 int64_t *out_T, nn_rng *rng);
void asr_spec_mask(const asr_augment_opts *o, float *feats, int64_t T, int M, nn_rng *rng);

/* Saves the model with its architecture, config, front end and weights id, then extra (atomically). */
/* A decoded label sequence with, per label, the output frame it was emitted at and its posterior. */
#define ASR_MAX_LABELS 2048
typedef struct {
  int n;
  uint8_t label[ASR_MAX_LABELS];
  int frame[ASR_MAX_LABELS];
  float prob[ASR_MAX_LABELS];
} asr_path;
/* Decodes logp [T][E2E_ASR_CLASSES] by o (greedy, or beam search with o->lm). */
bool asr_beam_search(const float *logp, int64_t T, const e2e_asr_decode_opts *o, asr_path *out);
bool asr_decode_path(const float *logp, int64_t T, const e2e_asr_decode_opts *o, asr_path *out);

bool asr_save(asr_model *m, const char *path, const nn_kv *extra, int n_extra);
/* A network with fresh weights of the configuration in a file's metadata ("config", "mel"). */
bool asr_init_from_meta(asr_model *m, const nn_st_file *f, const char *path);
/* Validates and loads a file (hostile input); path names it in messages. */
bool asr_load_file(asr_model *m, const nn_st_file *f, const char *path);

#endif
