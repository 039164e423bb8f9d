/* Rate control for video (see codec_rate_control in e2e/codec.h): a leaky bucket steers how many blocks the
 * predicted pictures code, and the quality level follows at intra pictures, the coarse lever, when the last
 * group of pictures spent far from the target. */
#include <math.h>

#include "e2e/codec.h"

enum { FLOOR_LOG2 = -5, CEILING_LOG2 = 5 }; /* the block scale stays within 1/32 .. 32 */

/* A group that spent this much more (less) than the target, with the bucket on the same side, moves the level
 * down (up): one level changes the rate by 1.5-2x, so the band between leaves room for the block scale. When
 * the block scale sat near its floor (ceiling) through the group, a smaller miss is enough: the blocks have
 * nothing more to give. */
#define GROUP_OVER 1.25
#define GROUP_UNDER 0.7
#define GROUP_OVER_PINNED 1.05
#define GROUP_UNDER_PINNED 0.95

void codec_rate_init(codec_rate_control *rc, double bits_per_second, double fps, int quality) {
  *rc = (codec_rate_control){.target = bits_per_second / fps,
                             .quality = quality < CODEC_MIN_QUALITY ? CODEC_MIN_QUALITY
                                        : quality > CODEC_MAX_QUALITY ? CODEC_MAX_QUALITY : quality};
}

int codec_rate_next(codec_rate_control *rc, bool key, codec_options *o) {
  if (key && rc->group_frames > 0) {
    double spent = rc->group_bits / (rc->group_frames * rc->target);
    double e = rc->group_predicted ? rc->group_log2_scale / rc->group_predicted : 0;
    bool floor = rc->group_predicted && e < FLOOR_LOG2 + 1, ceiling = rc->group_predicted && e > CEILING_LOG2 - 1;
    if ((spent > GROUP_OVER || (floor && spent > GROUP_OVER_PINNED)) && rc->fullness > 0 && rc->quality > CODEC_MIN_QUALITY)
      rc->quality--;
    else if ((spent < GROUP_UNDER || (ceiling && spent < GROUP_UNDER_PINNED)) && rc->fullness < 0 &&
             rc->quality < CODEC_MAX_QUALITY)
      rc->quality++;
    rc->group_bits = rc->group_log2_scale = 0;
    rc->group_frames = rc->group_predicted = 0;
  }
  double e = -rc->fullness / (CODEC_RATE_WINDOW * rc->target);
  o->block_lambda = (float)exp2(e < FLOOR_LOG2 ? FLOOR_LOG2 : e > CEILING_LOG2 ? CEILING_LOG2 : e);
  return rc->quality;
}

void codec_rate_update(codec_rate_control *rc, size_t bytes, bool predicted, const codec_options *o) {
  if (predicted) {
    rc->group_predicted++;
    rc->group_log2_scale += log2(o->block_lambda > 0 ? o->block_lambda : 1.0);
  }
  double b = 8.0 * (double)bytes;
  rc->fullness += b - rc->target;
  rc->bits += b;
  rc->frames++;
  rc->group_bits += b;
  rc->group_frames++;
}

double codec_rate_achieved(const codec_rate_control *rc) { return rc->frames ? rc->bits / (double)rc->frames : 0; }
