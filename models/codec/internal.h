/* What the codec's source files share with each other and nobody else needs:
 *   model.c      configuration, entropy tables, layers, the transforms (coding and training alike)
 *   train.c      the training forward pass and model surgery (growing a model while keeping what it computes)
 *   io.c         save and load (a file is hostile input until checked)
 *   bitstream.c  the coded picture's header, its checksum
 *   coder.c      the entropy passes, the latent search, compress/decompress, the memory estimate
 *   predict.c    what predicted pictures add: the reference, the choice of coded positions, their map
 *   hyper_exact.c  the decoder-side scales in a fixed float order */
#ifndef E2E_CODEC_INTERNAL_H
#define E2E_CODEC_INTERNAL_H

#include <string.h>

#include "e2e/codec.h"
#include "e2e/rans.h"

#define CODEC_ARCH "e2e-hyperprior-v1"

/* A coding call's working buffers (n floats, zeroed if asked) come from the current arena instead of malloc:
 * buffers the heap hands back to the system and takes again cost a page fault per 4 kB, which on a virtual
 * machine came to a fifth of a 720p picture's decoding. The entropy passes borrow the model's scratch arena
 * for them (codec_scratch_borrow), memory the transforms have already touched; otherwise they live in the
 * caller's arena until the call ends. NULL, with the error set, when out of memory. */
static inline float *codec_scratch(size_t n, bool zero) {
  float *p = nn_arena_alloc(nn_arena_current(), n * sizeof(float));
  if (p && zero) memset(p, 0, n * sizeof(float));
  return p;
}

/* Makes the model's first scratch arena this thread's current one, if no other thread holds it, and returns
 * the arena to go back to (NULL: not lent; codec_scratch then uses the current arena). codec_scratch_return
 * empties it: nothing allocated in between may outlive that. */
nn_arena *codec_scratch_borrow(codec_model *c);
void codec_scratch_return(codec_model *c, nn_arena *home);

bool codec_lambdas_valid(const float *lambda);
bool codec_config_valid(const codec_config *c);
/* Copies the entropy tables from the model's buffers (just loaded or regrown) into c->tables. */
void codec_tables_from_buffers(codec_model *c);

/* The quality level(s) a transform runs at: one per patch, or, coding one picture, one per 16x16 block
 * (map: map_h x map_w levels 1..5, the padded picture's blocks, i.e. y's positions); quality then still
 * names the picture's own level. */
typedef struct {
  const int *quality;
  const uint8_t *map;
  int map_h, map_w;
} codec_levels;

/* y times the gain table's row for each patch's or position's level (a new tensor). */
nn_tensor *codec_gains_at(nn_tensor *table, nn_tensor *y, const codec_levels *lv);
nn_tensor *codec_analysis_at(codec_model *c, nn_tensor *x, const codec_levels *lv, bool copies);
nn_tensor *codec_synthesis_at(codec_model *c, nn_tensor *y, const codec_levels *lv);

/* Rows of a [levels, channels] table for each patch, as [N, channels, 1, 1]. */
nn_tensor *codec_gains_for(nn_tensor *table, const int *quality, int64_t n);
/* The four transforms; quality holds one level per patch. copies: the packed encoder filters of
 * codec_prepare_inference (coding only). */
nn_tensor *codec_analysis(codec_model *c, nn_tensor *x, const int *quality, bool copies);
nn_tensor *codec_hyper_analysis(codec_model *c, nn_tensor *y, bool copies);
/* z -> scales of y, and their means when the model has a mean head (else *means = NULL) */
nn_tensor *codec_hyper_synthesis(codec_model *c, nn_tensor *z, nn_tensor **means);
nn_tensor *codec_synthesis_levels(codec_model *c, nn_tensor *y, const int *quality);
/* round(v) - v as a constant: adding it is rounding with an identity gradient */
nn_tensor *codec_rounding_offset(nn_tensor *v);
/* The context models' corrections to means and scales, as training and the latent search see them. */
void codec_context_params(codec_model *c, nn_tensor *y, nn_tensor **means, nn_tensor **scales);

/* The last picture of a video stream (see codec_reference in e2e/codec.h). */
struct codec_reference {
  bool valid;
  uint32_t model_id;
  int quality, width, height, seq;
  float *y_hat, *z_hat; /* [m, H, W] and [n, H/4, W/4]: decoded latents and hyper-latents */
  uint8_t *recon;       /* width * height * 3: what the decoder shows (the encoder's side compares with it) */
  uint8_t *levels;      /* [H, W]: the level each position's latents were coded at (regions of interest) */
  size_t y_len, z_len, recon_len, levels_len;
};

/* What a predicted picture takes from its reference while coding its latents. */
typedef struct {
  const uint8_t *coded; /* [H * W]: 1 where a position's latents are coded, 0 where they are copied */
  const float *y_hat;   /* the reference's latents [m, H, W] */
} codec_prediction;

/* The sequence number of the picture after one numbered seq: 1..255 over and over (0 is an intra picture's). */
static inline int codec_next_seq(int seq) { return seq >= 255 ? 1 : seq + 1; }

/* True when r holds a picture of c at this quality and size. */
bool codec_reference_fits(const codec_reference *r, const codec_model *c, int quality, int w, int h);
/* Keeps a picture's latents and their levels (NULL: all at quality), and sizes recon for it; false when out
 * of memory. */
bool codec_reference_store(codec_reference *r, const codec_model *c, int quality, int w, int h, int seq,
                           const float *y_hat, const float *z_hat, const uint8_t *levels);
/* Whether z tile (ty, tx) covers a coded position (W: latent positions per row). */
bool codec_tile_coded(const uint8_t *coded, int ty, int tx, int W);
/* The encoder's choice for a predicted picture: coded[p] = 1 where lambda * weights[p] (1 without weights) *
 * (squared error of copying the reference - that of coding) / 3 exceeds the bits that coding position p
 * costs (bits[p]); both errors over p's 16x16 block of the picture (0..255 values), intra and prev being the
 * two reconstructions. */
void codec_choose_coded(const uint8_t *rgb, int stride, const uint8_t *intra, const uint8_t *prev, int w, int h, int H,
                        int W, const float *bits, float lambda, const float *weights, uint8_t *coded);
/* The map of coded positions in a predicted picture's z payload (layout in e2e/codec.h). */
void codec_put_coded_map(rans_writer *w, const uint8_t *coded, int H, int W);
/* what: the map's name in messages ("the predicted picture's map of coded latents") */
bool codec_get_coded_map(rans_reader *r, uint8_t *coded, int H, int W, const char *what);

#endif
