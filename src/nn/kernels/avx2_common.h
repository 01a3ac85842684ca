/*
 * avx2_common.h - what the fp32 (avx2.c) and int8 (avx2_int8.c) AVX2
 * backends share: the target attribute, geometry and scheduling helpers,
 * lane masks and the activation epilogue. Internal to src/nn/kernels; everything is static, so
 * each backend keeps its own copy and the two stay free to inline.
 */
#ifndef FACENET_NN_KERNELS_AVX2_COMMON_H
#define FACENET_NN_KERNELS_AVX2_COMMON_H

#include <stddef.h>
#include <stdint.h>

#include "nn/backend.h"

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define HAVE_AVX2 1
#include <immintrin.h>
#define AVX2_TARGET __attribute__((target("avx2,fma")))
#else
#define HAVE_AVX2 0
#endif

static inline size_t round_up(size_t v, size_t to)
{
    return (v + to - 1) / to * to;
}

static inline int min_int(int a, int b) { return a < b ? a : b; }
static inline int max_int(int a, int b) { return a > b ? a : b; }

/* A 1x1, stride-1, unpadded convolution: a plain GEMM over NHWC rows. */
static inline int conv_is_pointwise(const nn_conv_geom *g)
{
    return g->kernel_h == 1 && g->kernel_w == 1 && g->stride_h == 1 && g->stride_w == 1 &&
           g->pad_top == 0 && g->pad_left == 0 && g->out_h == g->in_h && g->out_w == g->in_w;
}

#if HAVE_AVX2

/* Layers smaller than this many multiply-accumulates (a few microseconds)
 * run on the calling thread: waking the pool would cost about as much. */
#define PARALLEL_MIN_MACS 65536.0

static inline nn_pool *pool_for(nn_pool *pool, double macs)
{
    return macs < PARALLEL_MIN_MACS ? NULL : pool;
}

/* Panel groups so that blocks * groups gives every thread a few tasks. */
static inline int panel_groups(int blocks, int panels, int threads)
{
    int groups = 1;
    while (threads > 1 && blocks * groups < 4 * threads && groups * 2 <= panels)
        groups *= 2;
    return groups;
}

static const int32_t avx2_mask_source[16] = {-1, -1, -1, -1, -1, -1, -1, -1,
                                             0,  0,  0,  0,  0,  0,  0,  0};

/* A mask of the first `valid` lanes (clamped to 0..8). */
AVX2_TARGET static inline __m256i lane_mask(int valid)
{
    valid = valid < 0 ? 0 : valid > 8 ? 8 : valid;
    return _mm256_loadu_si256((const __m256i *)(const void *)(avx2_mask_source + 8 - valid));
}

/* The epilogue of 8 outputs: the activation, then the PReLU with slopes
 * alpha[0..8) when alpha is not NULL. */
AVX2_TARGET static inline __m256 finish(__m256 v, nn_activation act, const float *alpha)
{
    const __m256 zero = _mm256_setzero_ps();
    if (act != NN_ACT_NONE) {
        v = _mm256_max_ps(v, zero);
        if (act == NN_ACT_RELU6)
            v = _mm256_min_ps(v, _mm256_set1_ps(6.0f));
    }
    if (alpha)
        v = _mm256_fmadd_ps(_mm256_loadu_ps(alpha), _mm256_min_ps(v, zero), _mm256_max_ps(v, zero));
    return v;
}

#endif /* HAVE_AVX2 */

#endif
