/* e2ecodec's learned image codec: the scale-hyperprior model of Ballé et al.
 * (2018). An analysis transform with GDN maps the image to latents y at 1/16
 * resolution; a hyper-analysis maps |y| to side information z at 1/64. z is
 * coded with a factorised (per-channel Gaussian) density; the hyper-synthesis
 * turns the decoded z into a scale for every element of y and, in a
 * mean-scale model (Minnen et al. 2018, the default), a mean too: y - mean is
 * rounded and coded under a zero-mean Gaussian of that scale, and the decoder
 * adds the mean back. (Older scale-only files code y itself.) The synthesis
 * transform with inverse GDN reconstructs the image from the rounded y.
 *
 * One model serves every quality level: a learned per-channel gain scales y
 * before rounding (finer steps for higher quality) and its inverse-gain
 * partner rescales the decoded latents (Cui et al., "asymmetric gained"
 * variable-rate coding). Training draws a level per patch and weights that
 * patch's distortion by the level's lambda. With level modulation (cfg.level_mod)
 * every GDN and inverse GDN also reads its input through a per-level,
 * per-channel scale, so that the transforms themselves can serve a high level
 * differently from a low one (Yang et al. 2020, "modulated autoencoders"). With a checkerboard context
 * model (cfg.context, He et al. 2021) half of y (the anchors) is coded first, and the other half's means
 * and scales are corrected from the decoded anchors around each position. With an anchors' context
 * (cfg.anchor_context) the anchors themselves go in two steps: those on even rows, then those on odd rows
 * corrected from their four diagonal neighbours.
 *
 * Training (codec_train_forward) uses additive uniform noise for the rate and
 * straight-through rounding for the distortion. Coding (codec_compress /
 * codec_decompress) rounds, and computes the scales the decoder needs with a
 * fixed-order float path (codec_hyper_scales_exact) so that encoder and
 * decoder agree bit for bit on every probability, whatever the thread count or
 * CPU: the entropy coder only ever sees integer CDF tables stored in the model
 * file. */
#ifndef E2E_CODEC_H
#define E2E_CODEC_H

#include <stddef.h>
#include <stdatomic.h>
#include <stdint.h>

#include "nncore/nncore.h"
#include "model.h"

#define CODEC_STRIDE 64        /* image sizes are padded to a multiple of this */
#define CODEC_SCALE_MIN 0.11f  /* lower bound of every Gaussian scale */
#define CODEC_NUM_SCALES 64    /* quantised scales (log-spaced 0.11 .. 256) */
#define CODEC_MIN_QUALITY 1    /* quality levels 1..5 of one model */
#define CODEC_MAX_QUALITY 5
#define CODEC_DEFAULT_QUALITY 3
#define CODEC_MAX_DIM 16384    /* largest width or height a stream may declare */
#define CODEC_MAX_REFINE 1000  /* most encoder refinement steps (codec_options.refine_steps) */

typedef struct {
  int n;          /* channels of the transforms */
  int m;          /* channels of y */
  float lambda[CODEC_MAX_QUALITY]; /* rate-distortion trade-off per level (MSE on the 0..255 scale), rising */
  bool mean_scale; /* the hyper-synthesis also predicts each latent's mean (Minnen et al. 2018); files
                      without the flag are scale-only */
  bool level_mod;  /* a per-level, per-channel scale in front of every (inverse) GDN, so that the transforms,
                      not only the latents' gains, can differ between levels; files without it have none */
  int context;     /* channels of the checkerboard context model (He et al. 2021), 0 for none: y is coded in
                      two halves, and the second half's means and scales are corrected from the decoded first
                      half's neighbours; needs mean_scale */
  int anchor_context; /* channels of the anchors' own context model, 0 for none: the anchors on even rows
                      are coded first, and those on odd rows get means and scales corrected from their four
                      diagonal neighbours, which are all on even rows; needs context */
} codec_config;

/* The lambda of a quality level (clamped to 1..CODEC_MAX_QUALITY): training, and predicted pictures' choice of blocks. */
float codec_lambda(const codec_config *cfg, int quality);
/* True for a level in CODEC_MIN_QUALITY..CODEC_MAX_QUALITY; otherwise false with a message. */
bool codec_quality_valid(int quality);

/* Integer CDFs for the entropy coder, one per quantised scale. Symbol k of
 * table t stands for the value k - offset[t]; the last symbol is an escape
 * for values outside the table. cdf[t][0] = 0 and cdf[t][len[t]] = 1 << 16. */
typedef struct {
  float scales[CODEC_NUM_SCALES];
  int32_t len[CODEC_NUM_SCALES];     /* symbols incl. escape */
  int32_t offset[CODEC_NUM_SCALES];
  int32_t max_len;
  int32_t *cdf;                      /* [CODEC_NUM_SCALES][max_len + 1] */
} codec_tables;

typedef struct {
  codec_config cfg;
  nn_params p;
  nn_conv2d_layer ga[4];
  nn_gdn_layer ga_gdn[3];
  nn_conv2d_layer ha[3];
  nn_conv_transpose2d_layer hs[2];
  nn_conv2d_layer hs_out;   /* -> scales (ReLU) */
  nn_conv2d_layer hs_mean;  /* -> means (linear), only with cfg.mean_scale */
  /* checkerboard context, with cfg.context: anchors (y + x even) are coded under the hyperprior alone;
   * then, with s = max(hyper scale, CODEC_SCALE_MIN) everywhere, e = relu(ctx_conv(anchors' integers / s)
   * + ctx_spread(own scale index / 63)) moves the other half's means by s * ctx_mean(e) and sets its
   * scales to s * (1 + ctx_scale(e)) */
  nn_conv2d_layer ctx_conv, ctx_spread, ctx_mean, ctx_scale;
  /* the anchors' context, with cfg.anchor_context: the same four layers from the anchors on even rows
   * to those on odd rows (of a 5x5 window, only the four diagonal neighbours' taps are not zero) */
  nn_conv2d_layer actx_conv, actx_spread, actx_mean, actx_scale;
  nn_conv_transpose2d_layer gs[4];
  nn_gdn_layer gs_igdn[3];
  nn_tensor *z_scale_raw;  /* [n]: log of the scale of z's per-channel Gaussian */
  nn_tensor *gain_enc, *gain_dec; /* [CODEC_MAX_QUALITY, m] */
  nn_tensor *mod_a[3], *mod_s[3];  /* [CODEC_MAX_QUALITY, n] in front of each GDN / IGDN, with cfg.level_mod */
  codec_tables tables;     /* built at init, replaced by the file's on load */
  nn_conv_infer enc_infer[7]; /* g_a and h_a filters packed once (codec_prepare_inference) */
  bool enc_infer_ready;
  nn_arena *scratch[2];     /* coding runs the transforms layer by layer through these (created on first use) */
  atomic_flag scratch_busy; /* held while a call uses them: another thread coding with the same model meanwhile
                              runs its layers in its own arena instead */
  uint32_t model_id;       /* hash of the weights: streams name the model they need */
} codec_model;

codec_config codec_config_default(void);
bool codec_init(codec_model *c, const codec_config *cfg, uint64_t seed);
void codec_free(codec_model *c);

/* Training pass on x[N,3,H,W] (values 0..1, H and W multiples of 64) where
 * patch i is coded at quality[i]. Returns the mean over patches of
 * lambda_i * 255^2 * MSE_i + bpp_i and fills the parts (averaged). */
typedef struct { float loss, bpp, bpp_z, mse, psnr; } codec_stats;
nn_tensor *codec_train_forward(codec_model *c, nn_tensor *x, const int *quality, nn_rng *rng, codec_stats *st);

/* Grows y from c->cfg.m to m channels (for training on from a model whose latent width caps its
 * quality) while keeping what the model computes nearly unchanged; c is replaced on success. */
bool codec_widen_latents(codec_model *c, int m, uint64_t seed);

/* Turns a scale-only model into a mean-scale one that computes exactly the same thing: the new
 * mean head starts at zero, so training on from it starts where the loaded model was. */
bool codec_add_mean_head(codec_model *c, uint64_t seed);

/* Gives a model without level modulation its per-level scales, all 1: it computes exactly what it did. */
bool codec_add_level_mod(codec_model *c, uint64_t seed);

/* Gives a mean-scale model a checkerboard context model of `channels` channels whose corrections start
 * at zero: it computes what it did (the stream's symbol order changes, not its symbols). */
bool codec_add_context(codec_model *c, int channels, uint64_t seed);

/* Gives a model with a context model an anchors' context of `channels` channels, its corrections at zero:
 * it computes what it did (the anchors on odd rows are coded after those on even rows). */
bool codec_add_anchor_context(codec_model *c, int channels, uint64_t seed);

/* Retargets the quality levels to new lambdas (strictly rising, positive). Each level's gains (and level
 * scales, in a modulated model) are interpolated per channel, log-gain against log-lambda, from the old
 * levels (the end segments extended beyond them), so training on starts near the new trade-offs. */
bool codec_set_lambdas(codec_model *c, const float *lambda);

/* Packs the encoder's filters once, for coding (the filters are otherwise repacked on every picture):
 * a snapshot, so call it again after the weights change; training never uses it. codec_free drops it. */
bool codec_prepare_inference(codec_model *c);

/* safetensors: weights + tables + metadata ("architecture" = "e2e-hyperprior-v1"). */
bool codec_save(codec_model *c, const char *path, const nn_kv *meta, int n_meta);
/* Validates everything (shapes, tables) before touching c; c is untouched on failure. */
bool codec_load(codec_model *c, const char *path);
/* The same from an opened file (path names it in messages). */
bool codec_load_file(codec_model *c, const nn_st_file *f, const char *path);

/* ---- coding ---- */
/* One coded picture (all integers big-endian):
 *   "E2EL" | version u8 | quality u8 | flags u8 | sequence u8 | model_id u32 |
 *   width u16 | height u16 | fps_n u16 | fps_d u16 (0/0: unknown) |
 *   z_bytes u32 | y_bytes u32 | crc32 u32 (of the two payloads) | z payload | y payload
 * An intra picture is version 1, flags 0, sequence 0: a still image, and a random access point in a video.
 * A predicted picture (version 2, flags 1) is coded against the picture before it: sequence counts the
 * pictures since the last intra one (1..255, then 1 again), so that a decoder notices one that went missing. Its z
 * payload starts with the map of the latent positions it codes (three context probabilities, raw 16 bits
 * each, then one binary symbol per position, its context the number of coded neighbours left and above);
 * z follows for the tiles with a coded position, y for the coded positions; every other position, and z
 * tile, keeps the previous picture's decoded value. A picture with regions of interest (version 3, flag 2,
 * with or without flag 1) has, after the map of coded positions if it is predicted, the regions' level (raw
 * 16 bits) and their map of 16x16 blocks, coded like the map of coded positions: the transforms run at
 * that level there. A copied position keeps the level the previous picture gave it. A video stream is
 * pictures back to back. */
#define CODEC_MAGIC "E2EL"
#define CODEC_VERSION 3           /* the newest version this decoder reads */
#define CODEC_VERSION_PREDICTED 2 /* the version of a predicted picture */
#define CODEC_VERSION_REGIONS 3   /* the version of a picture with regions of interest */
#define CODEC_FLAG_PREDICTED 1
#define CODEC_FLAG_REGIONS 2
#define CODEC_HEADER_BYTES 32

typedef struct {
  int version, quality, width, height, fps_n, fps_d;
  bool predicted, regions;
  int seq; /* 0 for an intra picture; 1..255 over and over for the predicted ones after it */
  uint32_t model_id, z_bytes, y_bytes, crc;
} codec_header;

/* Writes the CODEC_HEADER_BYTES of h (magic, flags and reserved bytes included) at s. */
void codec_write_header(uint8_t *s, const codec_header *h);
/* Stamps the frame rate into a coded picture's header (not covered by the CRC). */
void codec_set_frame_rate(uint8_t *stream, int fps_n, int fps_d);

/* Parses and checks a header (magic, version, sizes against len). */
bool codec_parse_header(const uint8_t *data, size_t len, codec_header *h);

/* What a caller chooses per call, so that one loaded model can serve many callers at once. NULL: all 0. */
typedef struct {
  int refine_steps;      /* encoder effort: gradient steps on each picture's own latents (0: none) */
  uint64_t memory_limit; /* bytes of working memory a picture may need (0: this machine's physical memory) */
  float block_lambda;    /* scales lambda in a predicted picture's choice of the blocks it codes (0: 1, the
                            model's own trade-off): above 1 codes more of them, below fewer (rate control) */
  const float *block_weights; /* NULL, or a weight per 16x16 block (codec_block_grid's rows x cols, row by row)
                            that multiplies lambda there too: above 1 where the picture matters more (regions
                            of interest get their changes coded first), below 1 where it matters less */
  const uint8_t *roi_blocks; /* NULL, or 1 per 16x16 block (codec_block_grid's order) inside a region of
                            interest, 0 elsewhere: with roi_quality, those blocks are coded at that level */
  int roi_quality;       /* the level of roi_blocks (1..5; 0, or the picture's own level: no regions). The
                            transforms run at each block's level, in an intra picture and in a predicted one's
                            coded blocks; the map rides in the picture (version 3). The latent search
                            (refine_steps) is not run on a picture with regions. */
} codec_options;

/* The grid of 16x16 blocks (latent positions) of a w x h picture, padding included. */
void codec_block_grid(int w, int h, int *cols, int *rows);

/* Both directions run in no-grad mode and reset the current thread's arena. Coding only reads the model
 * (once codec_prepare_inference has run), so several threads may code with one model at once. */
/* Compresses packed RGB (w x h, stride bytes per row). On success *out is a
 * malloc'd stream of *out_len bytes; recon (w*h*3, may be NULL) receives what
 * the decoder will reconstruct, bit for bit. */
/* With o->refine_steps > 0 the encoder searches, for this one picture, latents that cost fewer bits
 * for the same picture or give a better picture for the same bits (Campos et al. 2019): gradient
 * steps on its own rate + lambda * distortion, every network fixed, rounding passed straight
 * through; the best latents seen are coded. The stream and the decoder are the same as without. */
bool codec_compress(codec_model *c, const codec_options *o, int quality, const uint8_t *rgb, int w, int h, int stride,
                    uint8_t **out, size_t *out_len, uint8_t *recon);
/* Decodes a stream into rgb (w*h*3, sizes from the header). Refuses streams for
 * another model or with a bad checksum, with a message in nn_last_error(). */
/* Both directions first check that the picture's working memory (codec_working_bytes) fits in
 * o->memory_limit, so that a picture too large for the machine, or a stream that only claims to be
 * one, gets a message instead of the out-of-memory killer. */
bool codec_decompress(codec_model *c, const codec_options *o, const uint8_t *data, size_t len, uint8_t *rgb, int w, int h);

/* Decoder-side scales (and means, for a mean-scale model) from z_hat[1,n,h,w] with a fixed
 * summation order (exposed for tests): writes [m, 4h, 4w] floats to scales, and to means unless it
 * is NULL (which a mean-scale model must not pass). False when out of memory. */
bool codec_hyper_scales_exact(const codec_model *c, const float *z_hat, int zh, int zw, float *scales, float *means);
/* Decoder-side means and scales of the second checkerboard half ((y + x) odd) from the decoded anchors
 * (anchor_q: [m, h, w], each anchor's decoded value minus its hyperprior mean: its coded integer plus
 * whatever the anchors' context moved its mean by; zero elsewhere) and the hyperprior's means and scales,
 * in a fixed summation order like codec_hyper_scales_exact. Writes [m, h, w] to means and scales (the
 * anchors' entries there are not meaningful). False when out of memory. */
bool codec_context_exact(const codec_model *c, const float *anchor_q, const float *hyper_means,
                         const float *hyper_scales, int h, int w, float *means, float *scales);
/* With cfg.anchor_context: the means and scales of the anchors on odd rows from the coded integers of
 * those on even rows (anchor_q: [m, h, w], zero elsewhere), the same way. Writes [m, h, w] to means and
 * scales, on the anchors of odd rows only. */
bool codec_anchor_context_exact(const codec_model *c, const float *anchor_q, const float *hyper_means,
                                const float *hyper_scales, int h, int w, float *means, float *scales);
/* Working memory (bytes, an upper estimate) that coding a w x h picture takes: decoding (encoding false) or
 * encoding with o's refine_steps. */
uint64_t codec_working_bytes(const codec_model *c, const codec_options *o, int w, int h, bool encoding);
/* False, with a message in nn_last_error(), when that exceeds o->memory_limit (codec_compress and
 * codec_decompress check it themselves; a decoder element can check a header before allocating). */
bool codec_check_memory(const codec_model *c, const codec_options *o, int w, int h, bool encoding);
/* The synthesis transform on y[1, m, h, w] (decoded latents times the level's decoder gains): the
 * decoder's last step (exposed for tests). Without a gradient it runs layer by layer through the model's
 * scratch arenas; with one, as a graph in the current arena. */
nn_tensor *codec_synthesis(codec_model *c, nn_tensor *y, int quality);
/* Index of the quantised scale used for a predicted scale. */
int codec_scale_index(const codec_tables *t, float scale);

uint32_t codec_crc32(const uint8_t *data, size_t len);

/* ---- video: predicted pictures ---- */
/* What one side of a video stream keeps between pictures: the last picture's decoded latents (and, on
 * the encoder's side, what the decoder shows for it). One per stream; not shared between threads. */
typedef struct codec_reference codec_reference;
codec_reference *codec_reference_new(void);
void codec_reference_free(codec_reference *r);
/* Forgets the last picture (a seek, a flush): the next one must be intra. */
void codec_reference_reset(codec_reference *r);
/* True when the next picture at this size and quality can be predicted from r. */
bool codec_reference_ready(const codec_reference *r, int quality, int w, int h);
/* True when the picture with header h can be decoded after what r holds: an intra picture always, a
 * predicted one when r holds the picture just before it (same size and quality, the sequence number before
 * its own). A decoder that keeps pictures it has not decoded yet (before a seek's target) asks this. */
bool codec_reference_precedes(const codec_reference *r, const codec_header *h);

/* codec_compress for a video: an intra picture when key is set or ref holds nothing to predict from (the
 * first picture, a new size or quality level, an earlier failure); otherwise a predicted picture whose
 * encoder codes, of each 16x16 block's latents, only those for which the rate they cost buys enough
 * distortion (lambda * squared error) against copying the last picture's: a rate-distortion choice,
 * so that sensor noise on a still background is not worth coding while a moving object is. The latent
 * search (o->refine_steps) applies to intra pictures only. ref is updated on success and reset on
 * failure; recon as in codec_compress. */
bool codec_compress_video(codec_model *c, const codec_options *o, int quality, bool key, const uint8_t *rgb, int w,
                          int h, int stride, codec_reference *ref, uint8_t **out, size_t *out_len, uint8_t *recon);
/* codec_decompress for a video: a predicted picture needs ref to hold the picture before it (else false
 * with a message; so does anything else that fails, and ref is then reset, so that nothing is decoded
 * against a wrong picture until the next intra one). rgb NULL: decode the latents only, to keep ref
 * current without reconstructing (pictures before a seek's target). */
bool codec_decompress_video(codec_model *c, const codec_options *o, const uint8_t *data, size_t len, uint8_t *rgb,
                            int w, int h, codec_reference *ref);

/* ---- rate control for video ---- */
/* A leaky bucket of the bits spent against a target rate. Predicted pictures get a block_lambda of
 * 2^(-fullness / (CODEC_RATE_WINDOW frames' target)), within 1/32..32: spending too much codes fewer blocks,
 * too little more of them, which brings the mean rate to the target where the level allows it. The level
 * itself, the coarse lever, changes only at an intra picture (a predicted picture keeps its reference's):
 * down when the group of pictures before spent over 1.25x the target with the bucket over, up when under
 * 0.7x with the bucket under (1.05x and 0.95x when the group's block scale sat within 2x of its floor or
 * ceiling: the blocks had nothing more to give). */
typedef struct {
  double target;   /* bits per frame */
  double fullness; /* bits spent minus the target, summed */
  int quality;     /* the level of the current group of pictures */
  double group_bits, group_log2_scale;
  int group_frames, group_predicted; /* the current group's spending, and its predicted pictures' scales */
  uint64_t frames;
  double bits;     /* all spent */
} codec_rate_control;

#define CODEC_RATE_WINDOW 10 /* frames: an overshoot of this many frames' target halves the block scale */

/* bits_per_second > 0, fps > 0; quality: the first group's level. */
void codec_rate_init(codec_rate_control *rc, double bits_per_second, double fps, int quality);
/* The level to code the next picture at, and its block_lambda in *o. key: it will be intra (the first, or
 * the encoder's choice): only then may the level change; a changed level makes the picture intra anyway. */
int codec_rate_next(codec_rate_control *rc, bool key, codec_options *o);
/* After coding it: its size, whether it was predicted, and the options it was coded with. */
void codec_rate_update(codec_rate_control *rc, size_t bytes, bool predicted, const codec_options *o);
/* The mean rate so far, in bits per frame. */
double codec_rate_achieved(const codec_rate_control *rc);

/* ---- the codec through the task-model interface (e2e/model.h) ---- */

/* A model of cfg with fresh weights (for training from scratch). */
e2e_model *e2e_codec_model_new(const codec_config *cfg, uint64_t seed);
/* codec_compress, codec_decompress and codec_check_memory on the session's model, in its scope. */
bool e2e_codec_encode(e2e_session *s, const codec_options *o, int quality, const uint8_t *rgb, int w, int h, int stride,
                      uint8_t **out, size_t *out_len, uint8_t *recon);
bool e2e_codec_decode(e2e_session *s, const codec_options *o, const uint8_t *data, size_t len, uint8_t *rgb, int w, int h);
/* The same for video streams (codec_compress_video, codec_decompress_video). */
bool e2e_codec_encode_video(e2e_session *s, const codec_options *o, int quality, bool key, const uint8_t *rgb, int w,
                            int h, int stride, codec_reference *ref, uint8_t **out, size_t *out_len, uint8_t *recon);
bool e2e_codec_decode_video(e2e_session *s, const codec_options *o, const uint8_t *data, size_t len, uint8_t *rgb,
                            int w, int h, codec_reference *ref);
bool e2e_codec_check_memory(e2e_session *s, const codec_options *o, int w, int h, bool encoding);

#endif
