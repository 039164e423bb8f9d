/* Rate-distortion measures for `e2e codec eval`. */
#ifndef E2E_RD_H
#define E2E_RD_H

#include <stdbool.h>
#include <stdint.h>

#define RD_MAX_POINTS 64

/* MS-SSIM of two packed RGB images (0..1), averaged over the channels. */
double rd_ms_ssim(const uint8_t *a, const uint8_t *b, int w, int h);

/* Bjøntegaard delta rate of curve b against curve a, in percent (negative:
 * b needs fewer bits for the same PSNR). At least 4 points each; NaN when
 * the PSNR ranges do not overlap. */
double rd_bd_rate(const double *rate_a, const double *psnr_a, int na, const double *rate_b, const double *psnr_b, int nb);
/* Bjøntegaard delta PSNR of curve b against curve a, in dB (positive: b is better at the same rate): cubic
 * fits of PSNR against log(rate), over the rate range both cover. NaN as rd_bd_rate. */
double rd_bd_psnr(const double *rate_a, const double *psnr_a, int na, const double *rate_b, const double *psnr_b, int nb);

typedef struct {
  char name[96];
  double bpp[RD_MAX_POINTS], psnr[RD_MAX_POINTS];
  int n;
} rd_curve;

/* A CompressAI results JSON (bpp and psnr-rgb arrays). */
bool rd_load_curve(const char *path, rd_curve *c);

#endif
