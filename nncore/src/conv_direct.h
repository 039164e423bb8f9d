/* Direct (im2col-free) convolution for groups = 1, dilation = 1: the fast path of nn_conv2d's
 * forward on CPUs with AVX2 + FMA. See conv_direct.c for the layout. */
#ifndef NNCORE_CONV_DIRECT_H
#define NNCORE_CONV_DIRECT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct {
  int64_t C, H, W;      /* input */
  int64_t OC, KH, KW;   /* weight [OC, C, KH, KW] */
  int64_t OH, OW;       /* output */
  int sh, sw, ph, pw;   /* stride and zero padding */
} nn_direct_geom;

/* Register tile: NN_DIRECT_OCB output channels x NN_DIRECT_TILE consecutive outputs. */
enum { NN_DIRECT_OCB = 4, NN_DIRECT_TILE = 48 };
/* flags: max(0, .) on the result; add the result to what the output already holds; x sigmoid(x) on the
 * result (nn_silu_fast's arithmetic) */
enum { NN_DIRECT_RELU = 1, NN_DIRECT_ACCUMULATE = 2, NN_DIRECT_SILU = 4 };

/* Whether this CPU runs the kernels (AVX2 + FMA) and NNCORE_CONV / NNCORE_ISA allow them. Read once. */
bool nn_conv_direct_available(void);
bool nn_conv_winograd_available(void);


/* Floats needed by the packed weights and by the rearranged input of one image. */
size_t nn_conv_direct_packed_floats(const nn_direct_geom *g);
size_t nn_conv_direct_input_floats(const nn_direct_geom *g);

/* Packs w[OC, C, KH, KW] for the kernel: [OC / OCB][C][KH * KW][OCB], zero-padded channels. */
void nn_conv_direct_pack(const nn_direct_geom *g, const float *w, float *packed);

/* out[OC, OH, OW] = bias + conv(x[C, H, W]) (+ out's previous content with NN_DIRECT_ACCUMULATE) for
 * one image, then max(0, .) with NN_DIRECT_RELU. bias may be NULL. scratch holds
 * nn_conv_direct_input_floats(g) floats.
 * Each output is one fixed chain of FMAs (bias, then channel-major, tap-minor), so the
 * result does not depend on the thread count. */
void nn_conv_direct(const nn_direct_geom *g, const float *x, const float *packed, const float *bias,
                    int flags, float *scratch, float *out);

/* Transposed convolution (groups 1, dilation 1) as sh*sw stride-1 phase convolutions on the same kernel.
 * Here C, H, W are its input, OC, OH, OW its output, w is [C, OC, KH, KW] (conv_transpose2d's layout) and
 * ph, pw its padding; output padding is just a larger OH, OW. N images, one after the other in x and
 * out; the filters are packed once. scratch holds
 * nn_conv_transpose_direct_scratch_floats(g, N) floats. */
size_t nn_conv_transpose_direct_scratch_floats(const nn_direct_geom *g, int64_t N);
void nn_conv_transpose_direct(const nn_direct_geom *g, int64_t N, const float *x, const float *w, const float *bias,
                              float *scratch, float *out);

/* The weight gradient of one image on the direct layout, with no im2col: dwT[(c * KH * KW + t) * ocp + oc]
 * += sum over outputs p of gy[oc][p] * x's tap t of channel c at p, for gy[OC, OH, OW] and x[C, H, W];
 * ocp = nn_conv_wgrad_ocp(g) (OC rounded up; the padding lanes get zeros). Each lane sums its outputs
 * in a fixed order: AVX2 and AVX-512 give the same bits, any thread count too. scratch holds
 * nn_conv_wgrad_scratch_floats(g) floats. */
int64_t nn_conv_wgrad_ocp(const nn_direct_geom *g);
size_t nn_conv_wgrad_scratch_floats(const nn_direct_geom *g);
void nn_conv_wgrad_direct(const nn_direct_geom *g, const float *x, const float *gy, float *scratch, float *dwT);

/* One register tile: out[j * ldo + i] = (out[j * ldo + i] with NN_DIRECT_ACCUMULATE) + bias[j] + sum over
 * c < C, t < T of wp[(c * T + t) * OCB + j] * xs[c * chan + toff[t] + i], for j < OCB, i < TILE (then
 * max(0, .) with NN_DIRECT_RELU).
 * The GEMM micro-kernel of the direct and Winograd paths. */
void nn_direct_tile(const float *xs, int64_t chan, int64_t C, const int64_t *toff, int T, const float *wp,
                    const float *bias, int flags, float *out, int64_t ldo);

/* Where the lanes of a tile that spans row ends go: lanes in `lanes` (bit i: lane i) are stored at
 * out[j * ldo + delta + i]; the rest are not stored. */
typedef struct {
  int64_t delta;
  uint64_t lanes;
} nn_tile_seg;
/* nn_direct_tile without NN_DIRECT_ACCUMULATE, storing only the lanes of its n segments. */
void nn_direct_tile_segs(const float *xs, int64_t chan, int64_t C, const int64_t *toff, int T, const float *wp,
                         const float *bias, int flags, float *out, int64_t ldo, const nn_tile_seg *seg, int n);

/* Winograd F(2x2, 3x3) for 3x3 stride-1 convolutions (any padding): 2.25x fewer multiplications.
 * Packed weights (the transformed filters) take nn_winograd_packed_floats; scratch nn_winograd_scratch_floats. */
bool nn_winograd_fits(const nn_direct_geom *g);
size_t nn_winograd_packed_floats(const nn_direct_geom *g);
size_t nn_winograd_scratch_floats(const nn_direct_geom *g);
void nn_winograd_pack(const nn_direct_geom *g, const float *w, float *packed);
void nn_winograd(const nn_direct_geom *g, const float *x, const float *packed, const float *bias, int act,
                 float *scratch, float *out);

/* 5x5 stride-2 convolutions (any padding) as Winograd over the 2x2 space-to-depth of the input: a 3x3
 * stride-1 problem on 4C channels. tile 2: F(2x2, 3x3), 1.56x fewer multiplications than the direct
 * kernel; tile 4: F(4x4, 3x3), 2.8x fewer, but filters 2.25x dearer to pack. Pack and run with the
 * same tile. */
bool nn_winograd_s2_fits(const nn_direct_geom *g);
size_t nn_winograd_s2_packed_floats(const nn_direct_geom *g, int tile);
size_t nn_winograd_s2_scratch_floats(const nn_direct_geom *g, int tile);
bool nn_winograd_s2_pack(const nn_direct_geom *g, const float *w, float *packed, int tile); /* false: out of memory */
void nn_winograd_s2(const nn_direct_geom *g, int tile, const float *x, const float *packed, const float *bias,
                    int act, float *scratch, float *out);

#endif
