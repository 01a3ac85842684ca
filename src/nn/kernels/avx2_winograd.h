/*
 * avx2_winograd.h - Winograd F(4x4, 3x3) and F(3x3, 3x3) convolution for the "avx2"
 * backend's 3x3 stride-1 layers (internal to src/nn/kernels).
 *
 * avx2.c owns the dispatch: it prepares the transformed weights next to its
 * GEMM panels for every 3x3 layer that nn_wino_layer_fits(), and runs
 * nn_wino_conv2d() instead of its GEMM when nn_wino_conv_applies() to the
 * geometry. Both predicates depend only on the shape, so the scratch size
 * (which sees the geometry alone) and the prepared blob always agree.
 */
#ifndef FACENET_NN_KERNELS_AVX2_WINOGRAD_H
#define FACENET_NN_KERNELS_AVX2_WINOGRAD_H

#include <stddef.h>

#include "nn/kernels/ref.h"
#include "nn/pool.h"

/* The transformed weights of one layer: immutable once prepared, shared
 * by every session. Opaque outside avx2_winograd.c. */
typedef struct nn_wino_weights nn_wino_weights;

/* 1 if a CONV2D layer of this shape takes the Winograd path when its
 * stride is 1 (decided by measurement, see the .c file). */
int nn_wino_layer_fits(int kernel_h, int kernel_w, int in_c, int out_c);

/* 1 if this convolution runs on the Winograd path. */
int nn_wino_conv_applies(const nn_conv_geom *g);

/* The output tile side a geometry that nn_wino_conv_applies() to runs
 * with: 4 (F(4x4, 3x3)), 3 (F(3x3, 3x3), for outputs that 4x4 tiles
 * cover badly, on layers of at most 64 x 64 channels) or 2 (when built
 * with WINO_TILE=2); 0 when none applies. Depends on the shape and one
 * image's size, never the batch. */
int nn_wino_tile_side(const nn_conv_geom *g);

/* Transform OHWI 3x3 weights [out_c][3][3][in_c]; NULL when out of memory.
 * The caller owns the result (nn_wino_release). */
nn_wino_weights *nn_wino_prepare(const float *w_ohwi, int out_c, int in_c);
void nn_wino_release(nn_wino_weights *w);

/* Scratch floats nn_wino_conv2d needs with `threads` threads (all together). */
size_t nn_wino_scratch_floats(const nn_conv_geom *g, int threads);

/* y = epilogue(conv(x) + bias) for a geometry nn_wino_conv_applies() to:
 * g->act, then the PReLU with slopes alpha when alpha is not NULL. bias
 * and alpha hold out_c rounded up to 16 floats. Each output depends only
 * on its own tile's inputs, so results do not change with the thread
 * count or the batch composition. */
void nn_wino_conv2d(const nn_conv_geom *g, const float *x, const nn_wino_weights *w,
                 const float *bias, const float *alpha, float *scratch, float *y,
                 nn_pool *pool);

#endif
