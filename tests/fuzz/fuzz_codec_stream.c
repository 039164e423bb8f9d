/* An e2ecodec picture as the decoder gets it: codec_parse_header, then codec_decompress with a small
 * model. A mutated stream almost never keeps its CRC and model id, so each input is also decoded with
 * those two stamped right: the mutations then reach the entropy decoder and the transforms behind it.
 * A predicted picture is decoded against a reference primed with an intra picture of its size and
 * quality (the stamped copy also gets the sequence number that follows it), so that its map of coded
 * latents, its z tiles and its latents are decoded too. */
#include <stdlib.h>
#include <string.h>

#include "e2e/codec.h"
#include "fuzz.h"

/* larger pictures only cost time here (their memory check is tested); the cost is the padded picture's, so a
 * 1-pixel-wide picture counts as CODEC_STRIDE wide */
#define MAX_PADDED_PIXELS (256 * 256)

static int64_t padded(int v) { return (v + CODEC_STRIDE - 1) / CODEC_STRIDE * CODEC_STRIDE; }

static codec_model model;
static codec_options opts = {.memory_limit = 256u << 20};

/* The tiny model the seeds were made with (tests/fuzz/make_seeds.c). */
bool fuzz_codec_model(codec_model *c) {
  codec_config cfg = codec_config_default();
  cfg.n = 16, cfg.m = 24;
  return codec_init(c, &cfg, 1) && codec_prepare_inference(c);
}

int LLVMFuzzerInitialize(int *argc, char ***argv) {
  if (!fuzz_codec_model(&model)) abort();
  return 0;
}

static void put_be32(uint8_t *p, uint32_t v) {
  p[0] = (uint8_t)(v >> 24), p[1] = (uint8_t)(v >> 16), p[2] = (uint8_t)(v >> 8), p[3] = (uint8_t)v;
}

static void decode(const uint8_t *data, size_t size) {
  codec_header h;
  if (!codec_parse_header(data, size, &h)) return;
  if (padded(h.width) * padded(h.height) > MAX_PADDED_PIXELS) return;
  uint8_t *rgb = malloc((size_t)h.width * h.height * 3);
  codec_reference *ref = h.predicted ? codec_reference_new() : NULL;
  if (rgb && ref) { /* the reference: a grey intra picture of the same size and quality */
    uint8_t *s = NULL;
    size_t n = 0;
    memset(rgb, 128, (size_t)h.width * h.height * 3);
    if (codec_compress_video(&model, &opts, h.quality, true, rgb, h.width, h.height, h.width * 3, ref, &s, &n, NULL))
      codec_decompress_video(&model, &opts, s, n, NULL, h.width, h.height, ref);
    free(s);
  }
  if (rgb) codec_decompress_video(&model, &opts, data, size, rgb, h.width, h.height, ref);
  codec_reference_free(ref);
  free(rgb);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  decode(data, size);
  if (size < CODEC_HEADER_BYTES) return 0;
  uint8_t *s = malloc(size);
  memcpy(s, data, size);
  put_be32(s + 8, model.model_id);
  if (s[6] == CODEC_FLAG_PREDICTED) s[7] = 1; /* the picture after an intra one */
  uint64_t payload = (uint64_t)((uint32_t)s[20] << 24 | (uint32_t)s[21] << 16 | (uint32_t)s[22] << 8 | s[23]) +
                     ((uint32_t)s[24] << 24 | (uint32_t)s[25] << 16 | (uint32_t)s[26] << 8 | s[27]);
  if (payload <= size - CODEC_HEADER_BYTES) {
    put_be32(s + 28, codec_crc32(s + CODEC_HEADER_BYTES, (size_t)payload));
    decode(s, size);
  }
  free(s);
  return 0;
}
