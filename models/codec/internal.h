/* What the codec's source files share with each other and nobody else needs:
 *   model.c      configuration, entropy tables, layers, the transforms (coding and training alike)
 *   train.c      the training forward pass and model surgery (growing a model while keeping what it computes)
 *   io.c         save and load (a file is hostile input until checked)
 *   bitstream.c  the coded picture's header, its checksum
 *   coder.c      the entropy passes, the latent search, compress/decompress, the memory estimate
 *   hyper_exact.c  the decoder-side scales in a fixed float order */
#ifndef E2E_CODEC_INTERNAL_H
#define E2E_CODEC_INTERNAL_H

#include "e2e/codec.h"
#include "e2e/rans.h"

#define CODEC_ARCH "e2e-hyperprior-v1"

bool codec_lambdas_valid(const float *lambda);
bool codec_config_valid(const codec_config *c);
/* Copies the entropy tables from the model's buffers (just loaded or regrown) into c->tables. */
void codec_tables_from_buffers(codec_model *c);

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

#endif
