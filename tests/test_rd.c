/* The rate-distortion arithmetic the codec's evaluations report: Bjøntegaard deltas on curves whose
 * answer is known by construction. */
#include <math.h>

#include "../tools/rd.h"
#include "harness.h"

static const double RATE[5] = {0.15, 0.3, 0.5, 0.75, 1.1}, PSNR[5] = {27.9, 30.1, 31.7, 32.6, 33.1};

TEST(bd_rate_of_a_curve_with_a_tenth_fewer_bits_is_minus_ten_percent) {
  double rate[5];
  for (int i = 0; i < 5; i++) rate[i] = RATE[i] * 0.9;
  double bd = rd_bd_rate(RATE, PSNR, 5, rate, PSNR, 5);
  CHECK(fabs(bd - -10.0) < 1e-6, "BD-rate %.6f %%", bd);
  CHECK(fabs(rd_bd_rate(rate, PSNR, 5, RATE, PSNR, 5) - 100.0 * (1 / 0.9 - 1)) < 1e-6, "and the other way round");
}

TEST(bd_psnr_of_a_curve_one_db_higher_is_one_db) {
  double psnr[5], rate[5];
  for (int i = 0; i < 5; i++) psnr[i] = PSNR[i] + 1.0, rate[i] = RATE[i] * 1.3; /* shifted along the rate axis too */
  CHECK(fabs(rd_bd_psnr(RATE, PSNR, 5, RATE, psnr, 5) - 1.0) < 1e-9, "BD-PSNR %.9f dB", rd_bd_psnr(RATE, PSNR, 5, RATE, psnr, 5));
  /* the same curve at 1.3x the rate: worse where both have points, by a fixed amount on a cubic in log rate */
  double worse = rd_bd_psnr(RATE, PSNR, 5, rate, PSNR, 5);
  CHECK(worse < -0.1 && worse > -2.0, "more bits for the same PSNR is a negative BD-PSNR (%.3f dB)", worse);
}

TEST(bd_deltas_need_four_points_and_an_overlap) {
  double far[5];
  for (int i = 0; i < 5; i++) far[i] = RATE[i] * 100;
  CHECK(isnan(rd_bd_rate(RATE, PSNR, 3, RATE, PSNR, 5)) && isnan(rd_bd_psnr(RATE, PSNR, 5, RATE, PSNR, 3)), "three points: NaN");
  CHECK(isnan(rd_bd_psnr(RATE, PSNR, 5, far, PSNR, 5)), "rate ranges that do not overlap: NaN");
}
