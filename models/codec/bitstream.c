/* The coded picture's header: the writer and the parser side by side over one table of offsets (the
 * layout is documented in e2e/codec.h), and the payload checksum. */
#include <string.h>

#include "internal.h"

enum {
  AT_MAGIC = 0,    /* "E2EL" */
  AT_VERSION = 4,  /* u8 */
  AT_QUALITY = 5,  /* u8 */
  AT_FLAGS = 6,    /* u8: 0; CODEC_FLAG_PREDICTED in version 2; CODEC_FLAG_REGIONS (and maybe PREDICTED) in 3 */
  AT_SEQ = 7,      /* u8: pictures since the last intra one (0 in version 1) */
  AT_MODEL_ID = 8, /* u32 */
  AT_WIDTH = 12,   /* u16 */
  AT_HEIGHT = 14,  /* u16 */
  AT_FPS_N = 16,   /* u16; fps_n/fps_d 0/0: unknown (not covered by the checksum: set after coding) */
  AT_FPS_D = 18,   /* u16 */
  AT_Z_BYTES = 20, /* u32 */
  AT_Y_BYTES = 24, /* u32 */
  AT_CRC = 28,     /* u32, of the two payloads */
};
_Static_assert(AT_CRC + 4 == CODEC_HEADER_BYTES, "the offsets cover the header");

uint32_t codec_crc32(const uint8_t *data, size_t len) {
  uint32_t crc = 0xffffffffu; /* IEEE 802.3, bitwise: streams are small next to the network */
  for (size_t i = 0; i < len; i++) {
    crc ^= data[i];
    for (int k = 0; k < 8; k++) crc = (crc >> 1) ^ (0xedb88320u & (uint32_t)-(int32_t)(crc & 1));
  }
  return ~crc;
}

static void put_u16(uint8_t *p, uint32_t v) {
  p[0] = (uint8_t)(v >> 8);
  p[1] = (uint8_t)v;
}
static void put_u32(uint8_t *p, uint32_t v) {
  put_u16(p, v >> 16);
  put_u16(p + 2, v & 0xffff);
}
static uint32_t get_u16(const uint8_t *p) { return (uint32_t)p[0] << 8 | p[1]; }
static uint32_t get_u32(const uint8_t *p) { return get_u16(p) << 16 | get_u16(p + 2); }

void codec_write_header(uint8_t *s, const codec_header *h) {
  memcpy(s + AT_MAGIC, CODEC_MAGIC, 4);
  s[AT_VERSION] = (uint8_t)h->version;
  s[AT_QUALITY] = (uint8_t)h->quality;
  s[AT_FLAGS] = (uint8_t)((h->predicted ? CODEC_FLAG_PREDICTED : 0) | (h->regions ? CODEC_FLAG_REGIONS : 0));
  s[AT_SEQ] = (uint8_t)(h->predicted ? h->seq : 0);
  put_u32(s + AT_MODEL_ID, h->model_id);
  put_u16(s + AT_WIDTH, (uint32_t)h->width);
  put_u16(s + AT_HEIGHT, (uint32_t)h->height);
  put_u16(s + AT_FPS_N, (uint32_t)h->fps_n);
  put_u16(s + AT_FPS_D, (uint32_t)h->fps_d);
  put_u32(s + AT_Z_BYTES, h->z_bytes);
  put_u32(s + AT_Y_BYTES, h->y_bytes);
  put_u32(s + AT_CRC, h->crc);
}

bool codec_parse_header(const uint8_t *d, size_t len, codec_header *h) {
  if (len < CODEC_HEADER_BYTES) {
    nn_set_error("e2ecodec stream too short for a header (%zu bytes, need %d)", len, CODEC_HEADER_BYTES);
    return false;
  }
  if (memcmp(d + AT_MAGIC, CODEC_MAGIC, 4) != 0) {
    nn_set_error("not an e2ecodec stream (bad magic)");
    return false;
  }
  h->version = d[AT_VERSION];
  h->quality = d[AT_QUALITY];
  if (h->version < 1 || h->version > CODEC_VERSION) {
    nn_set_error("e2ecodec stream version %d is not supported (this decoder reads 1..%d)", h->version, CODEC_VERSION);
    return false;
  }
  /* version 1: intra pictures only; version 2 adds predicted ones; version 3, regions of interest */
  int flags = d[AT_FLAGS];
  h->predicted = flags & CODEC_FLAG_PREDICTED;
  h->regions = flags & CODEC_FLAG_REGIONS;
  h->seq = d[AT_SEQ];
  bool known = h->version == 1   ? flags == 0
               : h->version == 2 ? flags == CODEC_FLAG_PREDICTED
                                 : h->regions && !(flags & ~(CODEC_FLAG_PREDICTED | CODEC_FLAG_REGIONS));
  if (!known || (h->predicted ? h->seq == 0 : h->seq != 0)) {
    nn_set_error("e2ecodec stream (version %d) has unknown flags 0x%02x or sequence number %d", h->version, d[AT_FLAGS],
                 d[AT_SEQ]);
    return false;
  }
  h->model_id = get_u32(d + AT_MODEL_ID);
  h->width = (int)get_u16(d + AT_WIDTH);
  h->height = (int)get_u16(d + AT_HEIGHT);
  h->fps_n = (int)get_u16(d + AT_FPS_N);
  h->fps_d = (int)get_u16(d + AT_FPS_D);
  h->z_bytes = get_u32(d + AT_Z_BYTES);
  h->y_bytes = get_u32(d + AT_Y_BYTES);
  h->crc = get_u32(d + AT_CRC);
  if (h->quality < CODEC_MIN_QUALITY || h->quality > CODEC_MAX_QUALITY || h->width < 1 || h->height < 1 ||
      h->width > CODEC_MAX_DIM || h->height > CODEC_MAX_DIM || (h->fps_n != 0 && h->fps_d == 0)) {
    nn_set_error("e2ecodec header out of range (quality %d, %dx%d)", h->quality, h->width, h->height);
    return false;
  }
  if ((uint64_t)h->z_bytes + h->y_bytes + CODEC_HEADER_BYTES != len) {
    nn_set_error("e2ecodec stream is %zu bytes but its header says %llu (truncated or padded)", len,
                 (unsigned long long)h->z_bytes + h->y_bytes + CODEC_HEADER_BYTES);
    return false;
  }
  return true;
}

void codec_set_frame_rate(uint8_t *s, int n, int d) {
  if (n < 0 || n > 65535 || d < 1 || d > 65535) n = d = 0; /* not representable: unknown */
  put_u16(s + AT_FPS_N, (uint32_t)n);
  put_u16(s + AT_FPS_D, (uint32_t)d);
}
