/*
 * avx2.c - the "avx2" backend: AVX2 + FMA kernels for x86-64.
 *
 * The library is built for baseline x86-64; only the functions here are
 * compiled for AVX2 + FMA (target attributes), and the backend reports
 * itself available only when the CPU has both, so the same binary runs
 * anywhere. On other architectures this file defines a backend that is
 * never available.
 *
 * Convolution and fully connected layers are one GEMM, C[M][N] = A[M][K] *
 * B[K][N] with M output pixels, K = KH*KW*I and N output channels:
 *   - B (the weights) is packed at load into panels of 16 output channels,
 *     K x 16 floats each, zero-padded past N, 64-byte aligned;
 *   - A is the NHWC input itself for 1x1 stride-1 convolutions and fully
 *     connected layers, else an im2col block built per task;
 *   - a 6 x 16 micro-kernel keeps 12 accumulators in registers (6 rows x
 *     two 8-float vectors), loading two vectors of B and broadcasting one
 *     float of A per row at each k (edge tiles of 1..5 rows have their own
 *     copies of the kernel);
 *   - K is cut into slices of GEMM_KC so a slice of a B panel (16 KiB)
 *     stays in L1 while the micro-kernel sweeps the rows of a block;
 *   - the epilogue (bias is the accumulators' start value, then the
 *     activation, then a fused PReLU) runs on the registers before the one
 *     store, so a layer reads and writes its output once.
 * Work is split into tasks of (block of rows) x (group of panels), which
 * the thread pool spreads over its threads.
 *
 * Three shapes leave the GEMM: layers of at most NARROW_MAX outputs (MTCNN's
 * box and score heads) run as dot products, eight rows at a time;
 * convolutions of at most 4 input and 12 output channels (P-Net's first
 * layer) run on a direct kernel with 8 output pixels in the lanes; 3x3
 * stride-1 convolutions of at least 8 input and 16 output channels run as
 * Winograd F(4x4, 3x3) (avx2_winograd.c: 4x fewer multiplies). Other
 * convolutions of at most 4 input channels (R-Net's, O-Net's and
 * MobileFaceNet's first layers) keep the micro-kernel but leave im2col:
 * they read zero-padded copies of their input rows (conv_rows).
 *
 * Depthwise convolution and pooling run per output pixel over channel
 * vectors, with the bias, activation and PReLU in registers as well.
 */
#include "nn/backend.h"
#include "nn/kernels/avx2_common.h"
#include "nn/kernels/avx2_winograd.h"

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define GEMM_MR 6
#define GEMM_NR 16
#define GEMM_KC 256
/* Rows per task for 1x1 layers. */
#define GEMM_MC 96
#define ALIGN_FLOATS 16 /* 64 bytes */
/* Layers with at most this many outputs (MTCNN's box and score heads)
 * waste most of a 16-wide panel: they run as dot products instead. */
#define NARROW_MAX 4

typedef struct avx_layer {
    nn_op op;
    int out_c, kernel_h, kernel_w, in_c;
    int k_dim;    /* GEMM K                                */
    int panels;   /* GEMM: ceil(out_c / 16)                */
    int c_pad;    /* depthwise: out_c rounded up to 8      */
    float *w;     /* GEMM: packed panels; depthwise: [KH][KW][c_pad] */
    float *rows;  /* narrow layers (out_c <= NARROW_MAX): [out_c][k_pad] */
    int k_pad;    /* k_dim rounded up to 8                 */
    float *bias;  /* padded with zeros                     */
    float *alpha; /* padded PReLU slopes, or NULL          */
    nn_wino_weights *wino; /* 3x3 layers of nn_wino_layer_fits, else NULL */
} avx_layer;

/* 64-byte aligned, zeroed. */
static float *alloc_floats(size_t n)
{
    size_t bytes = round_up(n * sizeof(float) + 1, 64);
    float *p = aligned_alloc(64, bytes);
    if (p)
        memset(p, 0, bytes);
    return p;
}

static void avx_release(void *prepared)
{
    avx_layer *l = prepared;
    if (!l)
        return;
    free(l->w);
    free(l->rows);
    free(l->bias);
    free(l->alpha);
    nn_wino_release(l->wino);
    free(l);
}

static void *avx_prepare(const nn_layer_params *p)
{
    avx_layer *l = calloc(1, sizeof *l);
    if (!l)
        return NULL;
    l->op = p->op;
    l->out_c = p->out_c;
    l->kernel_h = p->kernel_h;
    l->kernel_w = p->kernel_w;
    l->in_c = p->in_c;
    const size_t taps = (size_t)p->kernel_h * p->kernel_w;
    size_t padded;

    if (p->op == NN_OP_DEPTHWISE_CONV2D) {
        l->c_pad = (int)round_up((size_t)p->out_c, 8);
        padded = (size_t)l->c_pad;
        l->w = alloc_floats(taps * padded);
        if (l->w)
            for (size_t t = 0; t < taps; t++)
                memcpy(l->w + t * padded, p->weights + t * (size_t)p->out_c,
                       (size_t)p->out_c * sizeof(float));
    } else {
        /* OHWI (and FC's [O, I]) rows are already K-contiguous per output
         * channel; panel p holds k-major rows of 16 channels. */
        l->k_dim = (int)(taps * (size_t)p->in_c);
        l->panels = (p->out_c + GEMM_NR - 1) / GEMM_NR;
        padded = (size_t)l->panels * GEMM_NR;
        l->w = alloc_floats(padded * (size_t)l->k_dim);
        if (l->w)
            for (int o = 0; o < p->out_c; o++) {
                float *panel = l->w + (size_t)(o / GEMM_NR) * l->k_dim * GEMM_NR;
                const float *src = p->weights + (size_t)o * l->k_dim;
                for (int k = 0; k < l->k_dim; k++)
                    panel[(size_t)k * GEMM_NR + o % GEMM_NR] = src[k];
            }
    }
    if (p->op != NN_OP_DEPTHWISE_CONV2D && p->out_c <= NARROW_MAX) {
        l->k_pad = (int)round_up((size_t)l->k_dim, 8);
        l->rows = alloc_floats((size_t)p->out_c * l->k_pad);
        if (l->rows)
            for (int o = 0; o < p->out_c; o++)
                memcpy(l->rows + (size_t)o * l->k_pad, p->weights + (size_t)o * l->k_dim,
                       (size_t)l->k_dim * sizeof(float));
        else
            padded = 0; /* fail below */
    }
    l->bias = padded ? alloc_floats(padded) : NULL;
    if (p->prelu)
        l->alpha = alloc_floats(padded);
    const int wino = p->op == NN_OP_CONV2D &&
                     nn_wino_layer_fits(p->kernel_h, p->kernel_w, p->in_c, p->out_c);
    if (wino)
        l->wino = nn_wino_prepare(p->weights, p->out_c, p->in_c);
    if (!l->w || !l->bias || (p->prelu && !l->alpha) || (wino && !l->wino)) {
        avx_release(l);
        return NULL;
    }
    if (p->bias)
        memcpy(l->bias, p->bias, (size_t)p->out_c * sizeof(float));
    if (p->prelu)
        memcpy(l->alpha, p->prelu, (size_t)p->out_c * sizeof(float));
    return l;
}

/* ---- geometry shared by every architecture ------------------------------ */

/* Per thread: one tile of im2col rows, for tiles whose window hangs over
 * the padding. */
static size_t tile_scratch_floats(const nn_conv_geom *g)
{
    return round_up((size_t)GEMM_MR * g->kernel_h * g->kernel_w * g->in_c, ALIGN_FLOATS);
}

/* The direct kernel (see conv_direct): few input channels (an image's 3),
 * few outputs (P-Net's first layer has 10, which fill 10 of the GEMM's 16
 * lanes), unit horizontal stride. */
#define DIRECT_MAX_IN_C 4
#define DIRECT_MAX_OUT_C 12
#define DIRECT_ROWS 8 /* output rows per task */

static int conv_is_direct(const nn_conv_geom *g)
{
    return g->in_c <= DIRECT_MAX_IN_C && g->out_c <= DIRECT_MAX_OUT_C && g->stride_w == 1 &&
           !conv_is_pointwise(g);
}

/* One planar input row of the direct kernel: the padded columns that
 * 8-pixel vectors up to out_w rounded up to 8 read. */
static size_t direct_row_floats(const nn_conv_geom *g)
{
    return round_up((size_t)g->out_w, 8) + (size_t)g->kernel_w - 1;
}

/* Per thread: the input rows of one task, one plane per channel. */
static size_t direct_scratch_floats(const nn_conv_geom *g)
{
    const size_t in_rows = (size_t)(DIRECT_ROWS - 1) * g->stride_h + (size_t)g->kernel_h;
    return round_up(in_rows * g->in_c * direct_row_floats(g), ALIGN_FLOATS);
}

/* The row kernel (see conv_rows): the other KxK convolutions of few input
 * channels, whatever their outputs and strides (R-Net's 3 -> 28, O-Net's
 * 3 -> 32, MobileFaceNet's 3 -> 64 stride 2). */
#define ROWS_MAX_IN_C 4

static int conv_is_rows(const nn_conv_geom *g)
{
    return g->in_c <= ROWS_MAX_IN_C && !conv_is_pointwise(g) && !conv_is_direct(g);
}

/* One zero-padded NHWC input row of the row kernel: every column the
 * output row's windows read, (out_w - 1) * stride_w + kernel_w pixels. */
static size_t rows_row_floats(const nn_conv_geom *g)
{
    return ((size_t)(g->out_w - 1) * g->stride_w + (size_t)g->kernel_w) * g->in_c;
}

/* Output rows per task: about two hundred output pixels. */
static int rows_per_task(const nn_conv_geom *g)
{
    return min_int(g->out_h, max_int(1, 2 * GEMM_MC / max_int(g->out_w, 1)));
}

/* Input rows that `out_rows` consecutive output rows read. */
static size_t rows_in_rows(const nn_conv_geom *g, int out_rows)
{
    return (size_t)(out_rows - 1) * g->stride_h + (size_t)g->kernel_h;
}

/* Per thread: the padded input rows of one task. */
static size_t rows_scratch_floats(const nn_conv_geom *g)
{
    return round_up(rows_in_rows(g, rows_per_task(g)) * rows_row_floats(g), ALIGN_FLOATS);
}

static size_t avx_conv2d_scratch(const nn_conv_geom *g, int threads)
{
    if (conv_is_pointwise(g))
        return 0;
    if (nn_wino_conv_applies(g))
        return nn_wino_scratch_floats(g, threads);
    if (conv_is_direct(g))
        return (size_t)threads * direct_scratch_floats(g);
    if (conv_is_rows(g))
        return (size_t)threads * rows_scratch_floats(g);
    return (size_t)threads * tile_scratch_floats(g);
}

#if HAVE_AVX2

static int avx_available(void)
{
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
}

/* ---- GEMM ------------------------------------------------------------------- */

typedef struct epilogue {
    const float *bias;  /* 16 floats at the panel (padded) */
    const float *alpha; /* 16 floats or NULL               */
    nn_activation act;
} epilogue;

/* Store the first `valid` (0..8) lanes. vmaskmovps stores cost about 15
 * cycles each on AMD Zen, so partial vectors are stored in pieces. */
AVX2_TARGET static inline void store_partial(float *p, __m256 x, int valid)
{
    if (valid >= 8) {
        _mm256_storeu_ps(p, x);
        return;
    }
    __m128 part = _mm256_castps256_ps128(x);
    if (valid >= 4) {
        _mm_storeu_ps(p, part);
        part = _mm256_extractf128_ps(x, 1);
        p += 4;
        valid -= 4;
    }
    if (valid >= 2) {
        _mm_storel_pi((__m64 *)(void *)p, part);
        part = _mm_movehl_ps(part, part);
        p += 2;
        valid -= 2;
    }
    if (valid > 0)
        _mm_store_ss(p, part);
}

/* Where a tile's rows of A are: row r, segment s, element k is at
 * a[s * segment_stride + r * lda + k]. A plain matrix is one segment of
 * kc elements. A convolution window read straight from the NHWC input is
 * KH segments (one per kernel row, segment_stride = one input row) of
 * KW*I contiguous floats, and consecutive output pixels of a tile are
 * stride_w*I floats apart (lda), so interior tiles need no im2col. */
typedef struct a_panel {
    const float *a;
    size_t lda, segment_stride;
    int segments, segment_len;
} a_panel;

/* One R x 16 tile of C (R = 1..6 rows, nr = 1..16 valid columns) over a
 * K slice of kc. `first`: start from the bias, else from C; `last`: apply
 * the epilogue. Written once for any R and inlined with R constant, so
 * every loop over rows unrolls and the 2R accumulators live in registers:
 * a tile of fewer rows (the last rows of a layer, a batch-1 fully
 * connected layer) costs proportionally less. */
AVX2_TARGET static inline __attribute__((always_inline)) void
micro_tile(const int R, int nr, const a_panel *ap, const float *b, float *c, size_t ldc,
           int first, int last, const epilogue *ep)
{
    const size_t lda = ap->lda;
    const int full = nr == GEMM_NR;
    const __m256i m0 = lane_mask(nr), m1 = lane_mask(nr - 8);
    /* Named accumulators, not an array: gcc keeps an array indexed in a
     * nested loop in memory, which halves the speed. Rows >= R are dead
     * code once R is a constant. */
    __m256 c00, c01, c10, c11, c20, c21, c30, c31, c40, c41, c50, c51;
    c00 = c01 = c10 = c11 = c20 = c21 = c30 = c31 = c40 = c41 = c50 = c51 = _mm256_setzero_ps();

#define TILE_ROWS(X) X(0, c00, c01) X(1, c10, c11) X(2, c20, c21) X(3, c30, c31) X(4, c40, c41) X(5, c50, c51)
#define TILE_START(r, v0, v1)                                                              \
    if (R > (r)) {                                                                            \
        if (first) {                                                                        \
            (v0) = _mm256_load_ps(ep->bias);                                                  \
            (v1) = _mm256_load_ps(ep->bias + 8);                                              \
        } else {                                                                            \
            const float *cr = c + (size_t)(r) * ldc;                                          \
            (v0) = full ? _mm256_loadu_ps(cr) : _mm256_maskload_ps(cr, m0);                   \
            (v1) = full ? _mm256_loadu_ps(cr + 8) : _mm256_maskload_ps(cr + 8, m1);           \
        }                                                                                   \
    }
#define TILE_FMA(r, v0, v1)                                                                \
    if (R > (r)) {                                                                            \
        const __m256 av = _mm256_broadcast_ss(a + (size_t)(r) * lda + k);                     \
        (v0) = _mm256_fmadd_ps(av, b0, v0);                                                   \
        (v1) = _mm256_fmadd_ps(av, b1, v1);                                                   \
    }
#define TILE_STORE(r, v0, v1)                                                              \
    if (R > (r)) {                                                                            \
        float *cr = c + (size_t)(r) * ldc;                                                    \
        __m256 o0 = (v0), o1 = (v1);                                                            \
        if (last) {                                                                         \
            o0 = finish(o0, ep->act, ep->alpha);                                            \
            o1 = finish(o1, ep->act, ep->alpha ? ep->alpha + 8 : NULL);                     \
        }                                                                                   \
        if (full) {                                                                         \
            _mm256_storeu_ps(cr, o0);                                                       \
            _mm256_storeu_ps(cr + 8, o1);                                                   \
        } else {                                                                            \
            store_partial(cr, o0, nr);                                                      \
            store_partial(cr + 8, o1, nr - 8);                                              \
        }                                                                                   \
    }

    TILE_ROWS(TILE_START)
    for (int s = 0; s < ap->segments; s++) {
        const float *a = ap->a + (size_t)s * ap->segment_stride;
        for (int k = 0; k < ap->segment_len; k++, b += GEMM_NR) {
            const __m256 b0 = _mm256_load_ps(b), b1 = _mm256_load_ps(b + 8);
            TILE_ROWS(TILE_FMA)
        }
    }
    TILE_ROWS(TILE_STORE)
#undef TILE_ROWS
#undef TILE_START
#undef TILE_FMA
#undef TILE_STORE
}

AVX2_TARGET static void micro(int mr, int nr, const a_panel *ap, const float *b, float *c,
                              size_t ldc, int first, int last, const epilogue *ep)
{
    switch (mr) {
    case 6: micro_tile(6, nr, ap, b, c, ldc, first, last, ep); break;
    case 5: micro_tile(5, nr, ap, b, c, ldc, first, last, ep); break;
    case 4: micro_tile(4, nr, ap, b, c, ldc, first, last, ep); break;
    case 3: micro_tile(3, nr, ap, b, c, ldc, first, last, ep); break;
    case 2: micro_tile(2, nr, ap, b, c, ldc, first, last, ep); break;
    default: micro_tile(1, nr, ap, b, c, ldc, first, last, ep); break;
    }
}

/* C[rows][panels p0..p1) = A[rows][K] * B, A with row stride lda. */
AVX2_TARGET static void gemm_block(const avx_layer *l, nn_activation act, int rows,
                                   const float *a, size_t lda, int p0, int p1, float *c,
                                   size_t ldc)
{
    const int k_dim = l->k_dim;
    for (int k0 = 0; k0 < k_dim; k0 += GEMM_KC) {
        const int kc = min_int(GEMM_KC, k_dim - k0);
        for (int p = p0; p < p1; p++) {
            const float *bp = l->w + ((size_t)p * k_dim + k0) * GEMM_NR;
            const int nr = min_int(GEMM_NR, l->out_c - p * GEMM_NR);
            epilogue ep = {l->bias + p * GEMM_NR, l->alpha ? l->alpha + p * GEMM_NR : NULL, act};
            for (int m = 0; m < rows; m += GEMM_MR) {
                const a_panel ap = {a + (size_t)m * lda + k0, lda, 0, 1, kc};
                micro(min_int(GEMM_MR, rows - m), nr, &ap, bp,
                      c + (size_t)m * ldc + (size_t)p * GEMM_NR, ldc, k0 == 0, k0 + kc == k_dim,
                      &ep);
            }
        }
    }
}

/* ---- convolution ------------------------------------------------------------ */

/* im2col rows [row0, row0 + rows) into cols (row stride K): row m is output
 * pixel m (NHWC order), its K values the KH x KW x I window, zeros where
 * the window hangs over the padding. */
static void im2col(const nn_conv_geom *g, const float *x, int row0, int rows, float *cols)
{
    const size_t in_c = (size_t)g->in_c;
    const size_t k_dim = (size_t)g->kernel_h * g->kernel_w * in_c;
    const int plane = g->out_h * g->out_w;

    for (int r = 0; r < rows; r++) {
        const int m = row0 + r, b = m / plane, oy = m % plane / g->out_w, ox = m % g->out_w;
        const float *image = x + (size_t)b * g->in_h * g->in_w * in_c;
        float *dst = cols + (size_t)r * k_dim;
        const int iy0 = oy * g->stride_h - g->pad_top, ix0 = ox * g->stride_w - g->pad_left;
        const int kx_lo = max_int(0, -ix0), kx_hi = min_int(g->kernel_w, g->in_w - ix0);
        for (int ky = 0; ky < g->kernel_h; ky++, dst += (size_t)g->kernel_w * in_c) {
            const int iy = iy0 + ky;
            if (iy < 0 || iy >= g->in_h || kx_hi <= kx_lo) {
                memset(dst, 0, (size_t)g->kernel_w * in_c * sizeof(float));
                continue;
            }
            if (kx_lo > 0)
                memset(dst, 0, (size_t)kx_lo * in_c * sizeof(float));
            memcpy(dst + (size_t)kx_lo * in_c,
                   image + ((size_t)iy * g->in_w + (size_t)(ix0 + kx_lo)) * in_c,
                   (size_t)(kx_hi - kx_lo) * in_c * sizeof(float));
            if (kx_hi < g->kernel_w)
                memset(dst + (size_t)kx_hi * in_c, 0,
                       (size_t)(g->kernel_w - kx_hi) * in_c * sizeof(float));
        }
    }
}

/* Eight vectors to one: lane r of the result is the sum of the lanes of
 * v[r]. Two rounds of pairwise adds, then the two 128-bit halves. */
AVX2_TARGET static inline __m256 sum_lanes8(const __m256 v[8])
{
    const __m256 q0 = _mm256_hadd_ps(_mm256_hadd_ps(v[0], v[1]), _mm256_hadd_ps(v[2], v[3]));
    const __m256 q1 = _mm256_hadd_ps(_mm256_hadd_ps(v[4], v[5]), _mm256_hadd_ps(v[6], v[7]));
    return _mm256_add_ps(_mm256_permute2f128_ps(q0, q1, 0x20),
                         _mm256_permute2f128_ps(q0, q1, 0x31));
}

/* Rows [row0, row0 + rows) of a narrow layer: out_c dot products of
 * length K per row. Eight rows at a time, one output at a time: eight
 * independent accumulators hide the FMA latency (one row's chain of K/8
 * FMAs alone ran at a tenth of the FMA rate), and one transposing
 * reduction yields the eight rows' sums in one vector, so the bias,
 * activation and PReLU run on vectors. The last block repeats its first
 * row in the missing lanes and stores only the valid ones; every row's
 * sum is computed the same way wherever its block starts, so the split
 * over threads does not change a result. */
AVX2_TARGET static void narrow_rows(const avx_layer *l, nn_activation act, const float *a,
                                    size_t lda, int rows, float *c)
{
    const int k_dim = l->k_dim, n = l->out_c, tail = k_dim % 8, k_full = k_dim - tail;
    const __m256i mask = lane_mask(tail);
    for (int m = 0; m < rows; m += 8) {
        const int valid = min_int(8, rows - m);
        const float *row[8];
        for (int r = 0; r < 8; r++)
            row[r] = a + (size_t)(m + (r < valid ? r : 0)) * lda;
        for (int o = 0; o < n; o++) {
            const float *w = l->rows + (size_t)o * l->k_pad;
            __m256 acc[8];
            for (int r = 0; r < 8; r++)
                acc[r] = _mm256_setzero_ps();
            for (int k = 0; k < k_full; k += 8) {
                const __m256 wv = _mm256_load_ps(w + k);
                for (int r = 0; r < 8; r++)
                    acc[r] = _mm256_fmadd_ps(_mm256_loadu_ps(row[r] + k), wv, acc[r]);
            }
            if (tail) {
                const __m256 wv = _mm256_load_ps(w + k_full);
                for (int r = 0; r < 8; r++)
                    acc[r] = _mm256_fmadd_ps(_mm256_maskload_ps(row[r] + k_full, mask), wv, acc[r]);
            }
            __m256 v = _mm256_add_ps(sum_lanes8(acc), _mm256_set1_ps(l->bias[o]));
            if (act != NN_ACT_NONE) {
                v = _mm256_max_ps(v, _mm256_setzero_ps());
                if (act == NN_ACT_RELU6)
                    v = _mm256_min_ps(v, _mm256_set1_ps(6.0f));
            }
            if (l->alpha)
                v = _mm256_blendv_ps(v, _mm256_mul_ps(v, _mm256_set1_ps(l->alpha[o])),
                                     _mm256_cmp_ps(v, _mm256_setzero_ps(), _CMP_LE_OQ));
            float out[8];
            _mm256_storeu_ps(out, v);
            for (int r = 0; r < valid; r++)
                c[(size_t)(m + r) * n + o] = out[r];
        }
    }
}

typedef struct gemm_job {
    const avx_layer *l;
    nn_activation act;
    const float *x; /* A: rows of lda floats */
    size_t lda;
    float *y;
    int rows, block_rows, groups;
} gemm_job;

/* The panels of group pg of `groups`. */
static void panel_range(const avx_layer *l, int pg, int groups, int *p0, int *p1)
{
    *p0 = (int)((long long)l->panels * pg / groups);
    *p1 = (int)((long long)l->panels * (pg + 1) / groups);
}

static void gemm_task(void *ctx, int task, int thread)
{
    const gemm_job *j = ctx;
    const int rb = task / j->groups, pg = task % j->groups;
    const int row0 = rb * j->block_rows, rows = min_int(j->block_rows, j->rows - row0);
    int p0, p1;
    (void)thread;
    if (j->l->rows) {
        narrow_rows(j->l, j->act, j->x + (size_t)row0 * j->lda, j->lda, rows,
                    j->y + (size_t)row0 * j->l->out_c);
        return;
    }
    panel_range(j->l, pg, j->groups, &p0, &p1);
    gemm_block(j->l, j->act, rows, j->x + (size_t)row0 * j->lda, j->lda, p0, p1,
               j->y + (size_t)row0 * j->l->out_c, (size_t)j->l->out_c);
}

/* Split rows into blocks, and the panels into groups when there are too
 * few blocks to keep every thread busy. */
static void run_gemm(gemm_job *j, nn_pool *pool)
{
    pool = pool_for(pool, (double)j->rows * j->l->k_dim * j->l->out_c);
    const int blocks = (j->rows + j->block_rows - 1) / j->block_rows;
    j->groups = panel_groups(blocks, j->l->panels, nn_pool_threads(pool));
    nn_pool_run(pool, blocks * j->groups, gemm_task, j);
}

/* A KxK convolution: tiles of up to 6 consecutive output pixels (in NHWC
 * order, so a tile may run from the end of one output row into the next:
 * narrow outputs such as R-Net's 9 and 3 pixels would otherwise leave
 * 3-row tiles that run at half speed). A tile of one output row whose
 * windows all lie inside the input reads them in place (a_panel segments);
 * any other is copied into an im2col tile first. Both read K in the same
 * order, so the result does not depend on which one a pixel gets. Panels
 * are the outer loop so a panel of B is reused from cache by every tile of
 * the task. */
typedef struct conv_job {
    const avx_layer *l;
    const nn_conv_geom *g;
    const float *x;
    float *y;
    float *scratch;
    size_t scratch_per_thread;
    int out_rows_per_task, groups;
} conv_job;

/* Point ap at the windows of output pixels m .. m+mr-1 if they are one
 * run of one output row lying inside the input; returns 0 otherwise. */
static int in_place_tile(const nn_conv_geom *g, const float *x, int m, int mr, a_panel *ap)
{
    const int plane = g->out_h * g->out_w;
    const int b = m / plane, oy = m % plane / g->out_w, ox = m % g->out_w;
    const int iy0 = oy * g->stride_h - g->pad_top;
    const int ix_first = ox * g->stride_w - g->pad_left;
    const int ix_last = (ox + mr - 1) * g->stride_w - g->pad_left;
    const size_t in_c = (size_t)g->in_c;
    if (ox + mr > g->out_w || iy0 < 0 || iy0 + g->kernel_h > g->in_h || ix_first < 0 ||
        ix_last + g->kernel_w > g->in_w)
        return 0;
    ap->a = x + (size_t)b * g->in_h * g->in_w * in_c +
            ((size_t)iy0 * g->in_w + (size_t)ix_first) * in_c;
    ap->lda = (size_t)g->stride_w * in_c;
    ap->segment_stride = (size_t)g->in_w * in_c;
    ap->segments = g->kernel_h;
    ap->segment_len = g->kernel_w * g->in_c;
    return 1;
}

static void conv_task(void *ctx, int task, int thread)
{
    const conv_job *j = ctx;
    const nn_conv_geom *g = j->g;
    const avx_layer *l = j->l;
    const int tb = task / j->groups, pg = task % j->groups;
    const int total_rows = g->n * g->out_h;
    const int r0 = tb * j->out_rows_per_task, r1 = min_int(total_rows, r0 + j->out_rows_per_task);
    const int m0 = r0 * g->out_w, m1 = r1 * g->out_w;
    const size_t ldc = (size_t)l->out_c;
    float *cols = j->scratch + (size_t)thread * j->scratch_per_thread;
    int p0, p1;

    panel_range(l, pg, j->groups, &p0, &p1);
    for (int p = p0; p < p1; p++) {
        const float *bp = l->w + (size_t)p * l->k_dim * GEMM_NR;
        const int nr = min_int(GEMM_NR, l->out_c - p * GEMM_NR);
        const epilogue ep = {l->bias + p * GEMM_NR, l->alpha ? l->alpha + p * GEMM_NR : NULL,
                             g->act};
        for (int m = m0; m < m1; m += GEMM_MR) {
            const int mr = min_int(GEMM_MR, m1 - m);
            float *c = j->y + (size_t)m * ldc + (size_t)p * GEMM_NR;
            a_panel ap;
            if (!in_place_tile(g, j->x, m, mr, &ap)) {
                im2col(g, j->x, m, mr, cols);
                ap.a = cols;
                ap.lda = (size_t)l->k_dim;
                ap.segment_stride = 0;
                ap.segments = 1;
                ap.segment_len = l->k_dim;
            }
            micro(mr, nr, &ap, bp, c, ldc, 1, 1, &ep);
        }
    }
}

/* ---- direct convolution of few channels ---------------------------------------
 *
 * For a first layer such as P-Net's (3 -> 10 channels, 3x3, K = 27) the
 * GEMM wastes 6 of its 16 output lanes and pays its epilogue every 27
 * k-steps. Here the lanes are 8 consecutive output pixels of one channel
 * instead: the task's input rows are copied once into zero-padded planes
 * (one per input channel), each tap of each channel is one unaligned
 * load shared by all G outputs, and the weights are broadcast. Each
 * output is the bias plus one FMA per (ky, kx, ci) in the GEMM's K order,
 * so the results equal the GEMM path's. The G x 8 results are transposed
 * to NHWC in registers. */

typedef struct direct_job {
    const avx_layer *l;
    const nn_conv_geom *g;
    const float *x;
    float *y;
    float *scratch;
    size_t scratch_per_thread, row_floats;
    int tasks_per_image;
} direct_job;

/* Copy input rows [iy0, iy0 + rows) of image `image` into planes[r][ci],
 * shifted right by pad_left, zero outside the input; for C (a constant
 * after inlining) channels: the padding zeroed alone and the channel loop
 * unrolled, since a generic copy, one element at a time, cost as much as a
 * fifth of the fused conv + pool layer on LFW's pyramid levels. */
AVX2_TARGET static inline __attribute__((always_inline)) void
direct_fill_c(const int C, const nn_conv_geom *g, const float *image, int iy0, int rows,
             size_t row_floats, float *planes)
{
    const int ix_begin = max_int(0, -g->pad_left);
    const int ix_end = min_int(g->in_w, (int)row_floats - g->pad_left);
    for (int r = 0; r < rows; r++) {
        const int iy = iy0 + r;
        float *dst = planes + (size_t)r * C * row_floats;
        if (iy < 0 || iy >= g->in_h || ix_end <= ix_begin) {
            memset(dst, 0, (size_t)C * row_floats * sizeof *dst);
            continue;
        }
        const int lo = ix_begin + g->pad_left, hi = ix_end + g->pad_left;
        const float *src = image + (size_t)iy * g->in_w * C;
        for (int ci = 0; ci < C; ci++) {
            float *plane = dst + (size_t)ci * row_floats;
            memset(plane, 0, (size_t)lo * sizeof *plane);
            memset(plane + hi, 0, (row_floats - (size_t)hi) * sizeof *plane);
        }
        for (int ix = ix_begin; ix < ix_end; ix++) {
            const float *px = src + (size_t)ix * C;
            float *o = dst + (size_t)(ix + g->pad_left);
            for (int ci = 0; ci < C; ci++)
                o[(size_t)ci * row_floats] = px[ci];
        }
    }
}

AVX2_TARGET static void direct_fill(const nn_conv_geom *g, const float *image, int iy0, int rows,
                                   size_t row_floats, float *planes)
{
    switch (g->in_c) {
    case 1: direct_fill_c(1, g, image, iy0, rows, row_floats, planes); break;
    case 2: direct_fill_c(2, g, image, iy0, rows, row_floats, planes); break;
    case 3: direct_fill_c(3, g, image, iy0, rows, row_floats, planes); break;
    default: direct_fill_c(4, g, image, iy0, rows, row_floats, planes); break;
    }
}

/* acc[o] holds channel o of 8 pixels; store pixels [0, valid) of channels
 * [0, G) at y (pixel stride out_c). */
AVX2_TARGET static inline __attribute__((always_inline)) void
direct_store(const int G, __m256 *acc, int out_c, int valid, float *y)
{
    __m256 r[8];
    for (int o = 0; o < 8; o++)
        r[o] = o < G ? acc[o] : _mm256_setzero_ps();
    const __m256 t0 = _mm256_unpacklo_ps(r[0], r[1]), t1 = _mm256_unpackhi_ps(r[0], r[1]);
    const __m256 t2 = _mm256_unpacklo_ps(r[2], r[3]), t3 = _mm256_unpackhi_ps(r[2], r[3]);
    const __m256 t4 = _mm256_unpacklo_ps(r[4], r[5]), t5 = _mm256_unpackhi_ps(r[4], r[5]);
    const __m256 t6 = _mm256_unpacklo_ps(r[6], r[7]), t7 = _mm256_unpackhi_ps(r[6], r[7]);
    const __m256 u0 = _mm256_shuffle_ps(t0, t2, 0x44), u1 = _mm256_shuffle_ps(t0, t2, 0xEE);
    const __m256 u2 = _mm256_shuffle_ps(t1, t3, 0x44), u3 = _mm256_shuffle_ps(t1, t3, 0xEE);
    const __m256 u4 = _mm256_shuffle_ps(t4, t6, 0x44), u5 = _mm256_shuffle_ps(t4, t6, 0xEE);
    const __m256 u6 = _mm256_shuffle_ps(t5, t7, 0x44), u7 = _mm256_shuffle_ps(t5, t7, 0xEE);
    __m256 px[8];
    px[0] = _mm256_permute2f128_ps(u0, u4, 0x20);
    px[1] = _mm256_permute2f128_ps(u1, u5, 0x20);
    px[2] = _mm256_permute2f128_ps(u2, u6, 0x20);
    px[3] = _mm256_permute2f128_ps(u3, u7, 0x20);
    px[4] = _mm256_permute2f128_ps(u0, u4, 0x31);
    px[5] = _mm256_permute2f128_ps(u1, u5, 0x31);
    px[6] = _mm256_permute2f128_ps(u2, u6, 0x31);
    px[7] = _mm256_permute2f128_ps(u3, u7, 0x31);
    /* G may exceed out_c by one: that lane is not stored. */
    const int low = min_int(out_c, 8);
    for (int p = 0; p < valid; p++)
        store_partial(y + (size_t)p * out_c, px[p], low);
    for (int o = 8; o < G && o < out_c; o++) {
        float lanes[8];
        _mm256_storeu_ps(lanes, acc[o]);
        for (int p = 0; p < valid; p++)
            y[(size_t)p * out_c + o] = lanes[p];
    }
}

/* Convolution outputs [ox, ox + 8) of the row whose input rows start at
 * in0, channels [0, G), epilogue applied, into out[0..G). Named
 * accumulators, as in micro_tile: gcc spills an array of them to memory at
 * every FMA of the nested tap loops. */
AVX2_TARGET static inline __attribute__((always_inline)) void
direct_block(const int G, const direct_job *j, const float *in0, int ox, __m256 *out)
{
    const avx_layer *l = j->l;
    const nn_conv_geom *g = j->g;
    const int c = g->in_c;
    const size_t rf = j->row_floats, plane_row = (size_t)c * rf;
#define DIRECT_CHANNELS(X) X(0, a0) X(1, a1) X(2, a2) X(3, a3) X(4, a4) X(5, a5) \
                          X(6, a6) X(7, a7) X(8, a8) X(9, a9) X(10, a10) X(11, a11)
#define DIRECT_START(o, v) if (G > (o)) (v) = _mm256_set1_ps(l->bias[o]);
#define DIRECT_FMA(o, v)                                                                    \
    if (G > (o))                                                                              \
        (v) = _mm256_fmadd_ps(_mm256_broadcast_ss(w + (o)), xv, v);
#define DIRECT_FINISH(o, v)                                                                 \
    if (G > (o)) {                                                                          \
        if (g->act != NN_ACT_NONE) {                                                        \
            (v) = _mm256_max_ps(v, zero);                                                   \
            if (g->act == NN_ACT_RELU6)                                                     \
                (v) = _mm256_min_ps(v, _mm256_set1_ps(6.0f));                               \
        }                                                                                   \
        if (l->alpha)                                                                       \
            (v) = _mm256_fmadd_ps(_mm256_set1_ps(l->alpha[o]), _mm256_min_ps(v, zero),       \
                                  _mm256_max_ps(v, zero));                                  \
        out[o] = (v);                                                                       \
    }
    const __m256 zero = _mm256_setzero_ps();
    __m256 a0, a1, a2, a3, a4, a5, a6, a7, a8, a9, a10, a11;
    a0 = a1 = a2 = a3 = a4 = a5 = a6 = a7 = a8 = a9 = a10 = a11 = zero;
    DIRECT_CHANNELS(DIRECT_START)
    const float *w = l->w;
    for (int ky = 0; ky < g->kernel_h; ky++) {
        const float *in_ky = in0 + (size_t)ky * plane_row + ox;
        for (int kx = 0; kx < g->kernel_w; kx++)
            for (int ci = 0; ci < c; ci++, w += GEMM_NR) {
                const __m256 xv = _mm256_loadu_ps(in_ky + (size_t)ci * rf + kx);
                DIRECT_CHANNELS(DIRECT_FMA)
            }
    }
    DIRECT_CHANNELS(DIRECT_FINISH)
#undef DIRECT_CHANNELS
#undef DIRECT_START
#undef DIRECT_FMA
#undef DIRECT_FINISH
}

/* Output rows [oy0, oy1) of one image; planes hold the input rows from
 * oy0 * stride_h - pad_top on. G >= out_c; the weights past out_c are 0. */
AVX2_TARGET static inline __attribute__((always_inline)) void
direct_rows(const int G, const direct_job *j, const float *planes, int oy0, int oy1, float *y)
{
    const nn_conv_geom *g = j->g;
    const size_t plane_row = (size_t)g->in_c * j->row_floats;
    for (int oy = oy0; oy < oy1; oy++) {
        const float *in0 = planes + (size_t)(oy - oy0) * g->stride_h * plane_row;
        float *yrow = y + (size_t)oy * g->out_w * g->out_c;
        for (int ox = 0; ox < g->out_w; ox += 8) {
            __m256 acc[DIRECT_MAX_OUT_C];
            direct_block(G, j, in0, ox, acc);
            direct_store(G, acc, g->out_c, min_int(8, g->out_w - ox), yrow + (size_t)ox * g->out_c);
        }
    }
}

AVX2_TARGET static void direct_task(void *ctx, int task, int thread)
{
    const direct_job *j = ctx;
    const nn_conv_geom *g = j->g;
    const int b = task / j->tasks_per_image;
    const int oy0 = task % j->tasks_per_image * DIRECT_ROWS;
    const int oy1 = min_int(g->out_h, oy0 + DIRECT_ROWS);
    float *planes = j->scratch + (size_t)thread * j->scratch_per_thread;
    const float *image = j->x + (size_t)b * g->in_h * g->in_w * g->in_c;
    float *y = j->y + (size_t)b * g->out_h * g->out_w * g->out_c;

    direct_fill(g, image, oy0 * g->stride_h - g->pad_top, (oy1 - oy0 - 1) * g->stride_h + g->kernel_h,
                j->row_floats, planes);
    /* An even number of outputs (zero weights fill the odd one): six
     * copies of the kernel instead of twelve. */
    switch ((g->out_c + 1) / 2) {
    case 1: direct_rows(2, j, planes, oy0, oy1, y); break;
    case 2: direct_rows(4, j, planes, oy0, oy1, y); break;
    case 3: direct_rows(6, j, planes, oy0, oy1, y); break;
    case 4: direct_rows(8, j, planes, oy0, oy1, y); break;
    case 5: direct_rows(10, j, planes, oy0, oy1, y); break;
    default: direct_rows(12, j, planes, oy0, oy1, y); break;
    }
}

static void conv_direct(const nn_conv_geom *g, const float *x, const avx_layer *l,
                        float *scratch, float *y, nn_pool *pool)
{
    direct_job j = {l, g, x, y, scratch, direct_scratch_floats(g), direct_row_floats(g), 1};
    j.tasks_per_image = (g->out_h + DIRECT_ROWS - 1) / DIRECT_ROWS;
    pool = pool_for(pool, (double)g->n * g->out_h * g->out_w * l->k_dim * l->out_c);
    nn_pool_run(pool, g->n * j.tasks_per_image, direct_task, &j);
}

/* ---- convolution of few input channels, row by row ----------------------------
 *
 * R-Net's, O-Net's and MobileFaceNet's first layers (3 inputs, 28 to 64
 * outputs, K = 27) on the GEMM path lost most of their time to im2col:
 * the 6-pixel tiles run in NHWC order across output rows, and a tile that
 * wraps a row or touches the padding was gathered 3 floats at a time, once
 * per panel. Here a task copies its input rows once into zero-padded NHWC
 * rows (one memcpy per row), so every window of every output row lies
 * inside the copy; each output row is then cut into tiles of up to 6
 * pixels, read in place by the same micro-kernel in the same K order with
 * the padding's zeros multiplied in as im2col's were: the values equal the
 * GEMM path's. */

typedef struct rows_job {
    const avx_layer *l;
    const nn_conv_geom *g;
    const float *x;
    float *y;
    float *scratch;
    size_t scratch_per_thread;
    int tasks_per_image, rows_per_task;
} rows_job;

/* Input rows [iy0, iy0 + rows) of `image` into padded rows of row_floats,
 * shifted right by pad_left, zero outside the input. */
static void rows_fill(const nn_conv_geom *g, const float *image, int iy0, int rows,
                      size_t row_floats, float *dst)
{
    const size_t c = (size_t)g->in_c;
    const int cols = (int)(row_floats / c);
    const int j_lo = max_int(0, g->pad_left), j_hi = min_int(cols, g->in_w + g->pad_left);
    for (int r = 0; r < rows; r++, dst += row_floats) {
        const int iy = iy0 + r;
        if (iy < 0 || iy >= g->in_h || j_hi <= j_lo) {
            memset(dst, 0, row_floats * sizeof *dst);
            continue;
        }
        memset(dst, 0, (size_t)j_lo * c * sizeof *dst);
        memcpy(dst + (size_t)j_lo * c,
               image + ((size_t)iy * g->in_w + (size_t)(j_lo - g->pad_left)) * c,
               (size_t)(j_hi - j_lo) * c * sizeof *dst);
        memset(dst + (size_t)j_hi * c, 0, (row_floats - (size_t)j_hi * c) * sizeof *dst);
    }
}

/* A tile of the MTCNN and MobileFaceNet first layers: 3x3 windows of 3
 * channels, so the micro-kernel's loops have constant trip counts (3
 * segments of 9) and unroll. */
AVX2_TARGET static void rows_tile_3x3x3(int mr, int nr, const float *a, size_t lda,
                                        size_t row_floats, const float *b, float *c, size_t ldc,
                                        const epilogue *ep)
{
    const a_panel ap = {a, lda, row_floats, 3, 9};
    switch (mr) {
    case 6: micro_tile(6, nr, &ap, b, c, ldc, 1, 1, ep); break;
    case 5: micro_tile(5, nr, &ap, b, c, ldc, 1, 1, ep); break;
    case 4: micro_tile(4, nr, &ap, b, c, ldc, 1, 1, ep); break;
    case 3: micro_tile(3, nr, &ap, b, c, ldc, 1, 1, ep); break;
    case 2: micro_tile(2, nr, &ap, b, c, ldc, 1, 1, ep); break;
    default: micro_tile(1, nr, &ap, b, c, ldc, 1, 1, ep); break;
    }
}

/* One output row, every panel, from the padded rows `in` (its window's
 * first row first) into yrow. */
AVX2_TARGET static void rows_out_row(const avx_layer *l, const nn_conv_geom *g, const float *in,
                                     size_t row_floats, float *yrow)
{
    const int k27 = g->kernel_h == 3 && g->kernel_w == 3 && g->in_c == 3;
    const size_t ldc = (size_t)l->out_c;
    for (int p = 0; p < l->panels; p++) {
        const float *bp = l->w + (size_t)p * l->k_dim * GEMM_NR;
        const int nr = min_int(GEMM_NR, l->out_c - p * GEMM_NR);
        const epilogue ep = {l->bias + p * GEMM_NR, l->alpha ? l->alpha + p * GEMM_NR : NULL,
                             g->act};
        for (int ox = 0; ox < g->out_w; ox += GEMM_MR) {
            if (k27) {
                rows_tile_3x3x3(min_int(GEMM_MR, g->out_w - ox), nr,
                                in + (size_t)ox * g->stride_w * g->in_c,
                                (size_t)g->stride_w * g->in_c, row_floats, bp,
                                yrow + (size_t)ox * ldc + (size_t)p * GEMM_NR, ldc, &ep);
                continue;
            }
            const a_panel ap = {in + (size_t)ox * g->stride_w * g->in_c,
                                (size_t)g->stride_w * g->in_c, row_floats, g->kernel_h,
                                g->kernel_w * g->in_c};
            micro(min_int(GEMM_MR, g->out_w - ox), nr, &ap, bp,
                  yrow + (size_t)ox * ldc + (size_t)p * GEMM_NR, ldc, 1, 1, &ep);
        }
    }
}

static void rows_task(void *ctx, int task, int thread)
{
    const rows_job *j = ctx;
    const nn_conv_geom *g = j->g;
    const int b = task / j->tasks_per_image;
    const int oy0 = task % j->tasks_per_image * j->rows_per_task;
    const int oy1 = min_int(g->out_h, oy0 + j->rows_per_task);
    const size_t row_floats = rows_row_floats(g);
    float *in = j->scratch + (size_t)thread * j->scratch_per_thread;
    const float *image = j->x + (size_t)b * g->in_h * g->in_w * g->in_c;
    float *y = j->y + (size_t)b * g->out_h * g->out_w * g->out_c;

    rows_fill(g, image, oy0 * g->stride_h - g->pad_top, (int)rows_in_rows(g, oy1 - oy0),
              row_floats, in);
    for (int oy = oy0; oy < oy1; oy++)
        rows_out_row(j->l, g, in + (size_t)(oy - oy0) * g->stride_h * row_floats, row_floats,
                     y + (size_t)oy * g->out_w * g->out_c);
}

static void conv_rows(const nn_conv_geom *g, const float *x, const avx_layer *l,
                      float *scratch, float *y, nn_pool *pool)
{
    rows_job j = {l, g, x, y, scratch, rows_scratch_floats(g), 1, rows_per_task(g)};
    j.tasks_per_image = (g->out_h + j.rows_per_task - 1) / j.rows_per_task;
    pool = pool_for(pool, (double)g->n * g->out_h * g->out_w * l->k_dim * l->out_c);
    nn_pool_run(pool, g->n * j.tasks_per_image, rows_task, &j);
}

static void avx_conv2d(const nn_conv_geom *g, const float *x, const void *prepared,
                       float *scratch, float *y, nn_pool *pool)
{
    const avx_layer *l = prepared;
    if (conv_is_pointwise(g)) {
        gemm_job j;
        memset(&j, 0, sizeof j);
        j.l = l;
        j.act = g->act;
        j.x = x;
        j.lda = (size_t)g->in_c;
        j.y = y;
        j.rows = g->n * g->out_h * g->out_w;
        j.block_rows = GEMM_MC;
        run_gemm(&j, pool);
        return;
    }
    if (conv_is_direct(g)) {
        conv_direct(g, x, l, scratch, y, pool);
        return;
    }
    if (conv_is_rows(g)) {
        conv_rows(g, x, l, scratch, y, pool);
        return;
    }
    if (l->wino && nn_wino_conv_applies(g)) {
        nn_wino_conv2d(g, x, l->wino, l->bias, l->alpha, scratch, y, pool);
        return;
    }
    const int total_rows = g->n * g->out_h;
    pool = pool_for(pool, (double)total_rows * g->out_w * l->k_dim * l->out_c);
    const int threads = nn_pool_threads(pool);
    conv_job j = {l, g, x, y, scratch, tile_scratch_floats(g), 1, 1};
    /* About 96 output pixels per task, and enough tasks for the threads. */
    j.out_rows_per_task = max_int(1, GEMM_MC / max_int(g->out_w, 1));
    int blocks = (total_rows + j.out_rows_per_task - 1) / j.out_rows_per_task;
    j.groups = panel_groups(blocks, l->panels, threads);
    nn_pool_run(pool, blocks * j.groups, conv_task, &j);
}

static void avx_fully_connected(int n, int in_dim, int out_dim, nn_activation act,
                                const float *x, const void *prepared, float *y, nn_pool *pool)
{
    const avx_layer *l = prepared;
    gemm_job j;
    (void)out_dim;
    memset(&j, 0, sizeof j);
    j.l = l;
    j.act = act;
    j.x = x;
    j.y = y;
    j.rows = n;
    j.lda = (size_t)in_dim;
    j.block_rows = GEMM_MC;
    run_gemm(&j, pool);
}

/* ---- depthwise ---------------------------------------------------------------- */

typedef struct dw_job {
    const avx_layer *l;
    const nn_conv_geom *g;
    const float *x;
    float *y;
    int rows_per_task; /* output rows (over batch x height) */
} dw_job;

/* Channels [c0, c0 + 8*V) of one output pixel, V vectors at once. */
#define DW_PIXEL(V)                                                                         \
    do {                                                                                    \
        __m256 acc[(V)];                                                                    \
        for (int v = 0; v < (V); v++)                                                       \
            acc[v] = _mm256_load_ps(l->bias + c0 + 8 * v);                                  \
        for (int ky = ky_lo; ky < ky_hi; ky++) {                                            \
            /* From the first in-bounds tap: no pointer before the image. */               \
            const float *xr =                                                               \
                image + ((size_t)(iy0 + ky) * g->in_w + (size_t)(ix0 + kx_lo)) * c + c0;    \
            const float *wr = l->w + ((size_t)ky * g->kernel_w + (size_t)kx_lo) * cp + c0;  \
            for (int kx = 0; kx < kx_hi - kx_lo; kx++)                                      \
                for (int v = 0; v < (V); v++)                                               \
                    acc[v] = _mm256_fmadd_ps(_mm256_loadu_ps(xr + (size_t)kx * c + 8 * v),  \
                                             _mm256_load_ps(wr + (size_t)kx * cp + 8 * v),  \
                                             acc[v]);                                       \
        }                                                                                   \
        for (int v = 0; v < (V); v++)                                                       \
            _mm256_storeu_ps(yp + c0 + 8 * v,                                               \
                             finish(acc[v], g->act, l->alpha ? l->alpha + c0 + 8 * v : NULL)); \
    } while (0)

/* One output pixel, every channel: the general path (any kernel, stride
 * and channel count, windows cut by the border). */
AVX2_TARGET static void dw_pixel(const dw_job *j, const float *image, int iy0, int ky_lo, int ky_hi,
                                 int ox, float *yrow)
{
    const avx_layer *l = j->l;
    const nn_conv_geom *g = j->g;
    const int c = g->in_c;
    const size_t cp = (size_t)l->c_pad;
    float *yp = yrow + (size_t)ox * c;
    const int ix0 = ox * g->stride_w - g->pad_left;
    const int kx_lo = max_int(0, -ix0), kx_hi = min_int(g->kernel_w, g->in_w - ix0);
    int c0 = 0;
    /* 8 accumulators hide the FMA latency of the 9-tap chains. */
    for (; c0 + 64 <= c; c0 += 64)
        DW_PIXEL(8);
    for (; c0 + 32 <= c; c0 += 32)
        DW_PIXEL(4);
    for (; c0 + 8 <= c; c0 += 8)
        DW_PIXEL(1);
    if (c0 < c) {
        /* Tail of fewer than 8 channels: masked loads and store. */
        const __m256i m = lane_mask(c - c0);
        __m256 acc = _mm256_load_ps(l->bias + c0);
        for (int ky = ky_lo; ky < ky_hi; ky++) {
            const float *xr =
                image + ((size_t)(iy0 + ky) * g->in_w + (size_t)(ix0 + kx_lo)) * c + c0;
            const float *wr = l->w + ((size_t)ky * g->kernel_w + (size_t)kx_lo) * cp + c0;
            for (int kx = 0; kx < kx_hi - kx_lo; kx++)
                acc = _mm256_fmadd_ps(_mm256_maskload_ps(xr + (size_t)kx * c, m),
                                      _mm256_load_ps(wr + (size_t)kx * cp), acc);
        }
        store_partial(yp + c0, finish(acc, g->act, l->alpha ? l->alpha + c0 : NULL), c - c0);
    }
}

/* 4 output pixels x 16 channels of a 3x3 depthwise whose windows lie
 * inside the input across, kernel rows [ky_lo, ky_hi) in it (x is the
 * first window's top-left pixel in row ky_lo). The per-pixel path loads an input and a weight
 * vector for every FMA (load-bound); here each tap's 2 weight vectors
 * serve 4 pixels (10 loads per 8 FMAs) and the 8 accumulators are 8
 * independent chains, enough to cover the FMA latency. With S and C
 * constants every tap is a fixed displacement from one of 3 row pointers,
 * so nothing spills. Each output is still one chain from its bias over the
 * taps in (ky, kx) order: the values are those of dw_pixel. */
AVX2_TARGET static inline __attribute__((always_inline)) void
dw3x3_block(const int S, const int C, const int ky_lo, const int ky_hi, const float *x,
            size_t row_stride, const float *w, const float *bias, const float *alpha,
            nn_activation act, float *y)
{
    __m256 acc[4][2];
    const __m256 b0 = _mm256_load_ps(bias), b1 = _mm256_load_ps(bias + 8);
#pragma GCC unroll 4
    for (int p = 0; p < 4; p++) {
        acc[p][0] = b0;
        acc[p][1] = b1;
    }
#pragma GCC unroll 3
    for (int ky = ky_lo; ky < ky_hi; ky++) {
        const float *xr = x + (size_t)(ky - ky_lo) * row_stride;
#pragma GCC unroll 3
        for (int kx = 0; kx < 3; kx++) {
            const __m256 w0 = _mm256_load_ps(w + (size_t)(ky * 3 + kx) * C);
            const __m256 w1 = _mm256_load_ps(w + (size_t)(ky * 3 + kx) * C + 8);
#pragma GCC unroll 4
            for (int p = 0; p < 4; p++) {
                const float *xp = xr + (size_t)(p * S + kx) * C;
                acc[p][0] = _mm256_fmadd_ps(_mm256_loadu_ps(xp), w0, acc[p][0]);
                acc[p][1] = _mm256_fmadd_ps(_mm256_loadu_ps(xp + 8), w1, acc[p][1]);
            }
        }
    }
#pragma GCC unroll 4
    for (int p = 0; p < 4; p++) {
        _mm256_storeu_ps(y + (size_t)p * C, finish(acc[p][0], act, alpha));
        _mm256_storeu_ps(y + (size_t)p * C + 8, finish(acc[p][1], act, alpha ? alpha + 8 : NULL));
    }
}

/* `blocks` groups of 4 output pixels from x (as in dw3x3_block) to y.
 * C is a constant for the channel counts MobileFaceNet uses and the rows
 * are 0..3 away from the top and bottom edges, so the offsets fold; the
 * weights are [3][3][C] (c_pad == C: C is a multiple of 16). */
AVX2_TARGET static inline __attribute__((always_inline)) void
dw3x3_span(const int S, const int C, const int ky_lo, const int ky_hi, const avx_layer *l,
           const float *x, size_t row_stride, int blocks, nn_activation act, float *y)
{
    for (int b = 0; b < blocks; b++) {
        const float *xb = x + (size_t)b * 4 * S * C;
        float *yb = y + (size_t)b * 4 * C;
        for (int c0 = 0; c0 < C; c0 += 16)
            dw3x3_block(S, C, ky_lo, ky_hi, xb + c0, row_stride, l->w + c0, l->bias + c0,
                        l->alpha ? l->alpha + c0 : NULL, act, yb + c0);
    }
}

#define DW3X3_SPAN(S, C) dw3x3_span((S), (C), 0, 3, l, x, row_stride, blocks, g->act, y)

AVX2_TARGET static void dw3x3_interior(const dw_job *j, const float *x, int ky_lo, int ky_hi,
                                       int blocks, float *y)
{
    const avx_layer *l = j->l;
    const nn_conv_geom *g = j->g;
    const size_t row_stride = (size_t)g->in_w * g->in_c;
    if (ky_lo != 0 || ky_hi != 3) {
        /* Top and bottom rows: few, so one general version per stride. */
        if (g->stride_w == 1)
            dw3x3_span(1, g->in_c, ky_lo, ky_hi, l, x, row_stride, blocks, g->act, y);
        else
            dw3x3_span(2, g->in_c, ky_lo, ky_hi, l, x, row_stride, blocks, g->act, y);
    } else if (g->stride_w == 1) {
        switch (g->in_c) {
        case 64: DW3X3_SPAN(1, 64); break;
        case 128: DW3X3_SPAN(1, 128); break;
        case 256: DW3X3_SPAN(1, 256); break;
        case 512: DW3X3_SPAN(1, 512); break;
        default: DW3X3_SPAN(1, g->in_c); break;
        }
    } else {
        switch (g->in_c) {
        case 64: DW3X3_SPAN(2, 64); break;
        case 128: DW3X3_SPAN(2, 128); break;
        case 256: DW3X3_SPAN(2, 256); break;
        case 512: DW3X3_SPAN(2, 512); break;
        default: DW3X3_SPAN(2, g->in_c); break;
        }
    }
}

/* Whether dw3x3_interior serves this layer: 3x3, stride 1 or 2 both ways,
 * channels a multiple of 16 (so c_pad == channels). */
static int dw3x3_applies(const dw_job *j)
{
    const nn_conv_geom *g = j->g;
    return g->kernel_h == 3 && g->kernel_w == 3 && g->stride_h == g->stride_w &&
           (g->stride_w == 1 || g->stride_w == 2) && g->in_c % 16 == 0 && j->l->c_pad == g->in_c;
}

AVX2_TARGET static void dw_row(const dw_job *j, int b, int oy)
{
    const nn_conv_geom *g = j->g;
    const int c = g->in_c;
    const float *image = j->x + (size_t)b * g->in_h * g->in_w * c;
    float *yrow = j->y + ((size_t)b * g->out_h + oy) * g->out_w * c;
    const int iy0 = oy * g->stride_h - g->pad_top;
    const int ky_lo = max_int(0, -iy0), ky_hi = min_int(g->kernel_h, g->in_h - iy0);
    int ox = 0;

    if (ky_lo < ky_hi && dw3x3_applies(j)) {
        /* Output pixels [first, last] have their windows inside across. */
        const int s = g->stride_w;
        const int first = (g->pad_left + s - 1) / s;
        const int reach = g->in_w - 3 + g->pad_left; /* last window start, padded */
        const int last = reach < 0 ? -1 : min_int(g->out_w - 1, reach / s);
        const int blocks = last >= first ? (last - first + 1) / 4 : 0;
        for (; ox < first && ox < g->out_w; ox++)
            dw_pixel(j, image, iy0, ky_lo, ky_hi, ox, yrow);
        if (blocks > 0) {
            const float *x0 =
                image + ((size_t)(iy0 + ky_lo) * g->in_w + (size_t)(ox * s - g->pad_left)) * c;
            dw3x3_interior(j, x0, ky_lo, ky_hi, blocks, yrow + (size_t)ox * c);
            ox += 4 * blocks;
        }
    }
    for (; ox < g->out_w; ox++)
        dw_pixel(j, image, iy0, ky_lo, ky_hi, ox, yrow);
}

static void dw_task(void *ctx, int task, int thread)
{
    const dw_job *j = ctx;
    const int total = j->g->n * j->g->out_h;
    (void)thread;
    for (int r = task * j->rows_per_task; r < total && r < (task + 1) * j->rows_per_task; r++)
        dw_row(j, r / j->g->out_h, r % j->g->out_h);
}

static void avx_depthwise(const nn_conv_geom *g, const float *x, const void *prepared, float *y,
                          nn_pool *pool)
{
    dw_job j = {prepared, g, x, y, 1};
    const int total = g->n * g->out_h;
    pool = pool_for(pool, (double)total * g->out_w * g->out_c * g->kernel_h * g->kernel_w);
    const int threads = nn_pool_threads(pool);
    /* A few tasks per thread balance the load; one per row is overkill for
     * wide images. */
    j.rows_per_task = max_int(1, total / (8 * threads));
    nn_pool_run(pool, (total + j.rows_per_task - 1) / j.rows_per_task, dw_task, &j);
}

/* ---- pooling ------------------------------------------------------------------ */

typedef struct pool_job {
    const nn_conv_geom *g;
    const float *x;
    float *y;
    int is_max, rows_per_task;
} pool_job;

/* Channels [c0, c0 + 32) of one output pixel; lanes past `valid` are
 * neither read nor written, and vectors past it not even computed (P-Net's
 * first pooling has 10 channels: 2 vectors, not 4). */
AVX2_TARGET static inline __attribute__((always_inline)) void
pool_pixel(const int is_max, const float *xr0, size_t row_stride, int c, int ky_n, int kx_n,
           int valid, __m256 scale, nn_activation act, float *yp)
{
    const int nv = (valid + 7) / 8, full = valid / 8;
    const __m256i tail = lane_mask(valid - 8 * full);
    /* One vector at a time, so its accumulator stays in a register (gcc
     * keeps an array of them in memory). */
    for (int v = 0; v < nv; v++) {
        __m256 acc = is_max ? _mm256_set1_ps(-INFINITY) : _mm256_setzero_ps();
        for (int ky = 0; ky < ky_n; ky++) {
            const float *xr = xr0 + (size_t)ky * row_stride + 8 * v;
            for (int kx = 0; kx < kx_n; kx++, xr += c) {
                const __m256 x = v < full ? _mm256_loadu_ps(xr) : _mm256_maskload_ps(xr, tail);
                acc = is_max ? _mm256_max_ps(acc, x) : _mm256_add_ps(acc, x);
            }
        }
        __m256 o = ky_n > 0 && kx_n > 0 ? acc : _mm256_setzero_ps();
        if (!is_max)
            o = _mm256_mul_ps(o, scale);
        o = finish(o, act, NULL);
        store_partial(yp + 8 * v, o, valid - 8 * v);
    }
}

/* Max over a whole KH x KW window inside the input, every channel of one
 * output pixel: R-Net's and O-Net's 3x3 and 2x2 pools away from the
 * border. With the window's size a constant the taps unroll into loads
 * folded into the max, instead of pool_pixel's per-tap loop and masked
 * loads; the maxima are taken in the same order, so the values are the
 * same. */
AVX2_TARGET static inline __attribute__((always_inline)) void
max_window(const int KH, const int KW, const float *x0, size_t row_stride, int c,
           __m256i tail_mask, nn_activation act, float *yp)
{
    int c0 = 0;
    for (; c0 + 8 <= c; c0 += 8) {
        const float *p = x0 + c0;
        __m256 acc = _mm256_loadu_ps(p);
        for (int ky = 0; ky < KH; ky++)
            for (int kx = 0; kx < KW; kx++)
                if (ky > 0 || kx > 0)
                    acc = _mm256_max_ps(acc, _mm256_loadu_ps(p + (size_t)ky * row_stride +
                                                             (size_t)kx * c));
        _mm256_storeu_ps(yp + c0, finish(acc, act, NULL));
    }
    if (c0 < c) {
        const float *p = x0 + c0;
        __m256 acc = _mm256_maskload_ps(p, tail_mask);
        for (int ky = 0; ky < KH; ky++)
            for (int kx = 0; kx < KW; kx++)
                if (ky > 0 || kx > 0)
                    acc = _mm256_max_ps(acc, _mm256_maskload_ps(p + (size_t)ky * row_stride +
                                                                     (size_t)kx * c,
                                                                 tail_mask));
        store_partial(yp + c0, finish(acc, act, NULL), c - c0);
    }
}

/* The 3x3, stride 2 max pools of R-Net and O-Net (no left padding, no
 * activation, at most POOL3X3S2_MAX_C channels, a multiple of 4, every
 * window at least one column wide) take max3x3s2_row. */
#define POOL3X3S2_MAX_C 64

static int pool_is_3x3s2(const nn_conv_geom *pg)
{
    return pg->kernel_h == 3 && pg->kernel_w == 3 && pg->stride_h == 2 && pg->stride_w == 2 &&
           pg->pad_left == 0 && pg->act == NN_ACT_NONE && pg->in_c % 4 == 0 &&
           pg->in_c <= POOL3X3S2_MAX_C && 2 * (pg->out_w - 1) < pg->in_w;
}

/* 8 channels of column offset x (4 when H): the max over the window's
 * NR rows. */
AVX2_TARGET static inline __attribute__((always_inline)) __m256
max_column(const int NR, const int H, const float *const *rp, size_t x)
{
#define MAX_COLUMN_LOAD(p) \
    (H ? _mm256_zextps128_ps256(_mm_loadu_ps((p) + x)) : _mm256_loadu_ps((p) + x))
    __m256 m = MAX_COLUMN_LOAD(rp[0]);
    if (NR > 1)
        m = _mm256_max_ps(m, MAX_COLUMN_LOAD(rp[1]));
    if (NR > 2)
        m = _mm256_max_ps(m, MAX_COLUMN_LOAD(rp[2]));
#undef MAX_COLUMN_LOAD
    return m;
}

/* Channels [c0, c0 + 8) (4 when H) of pooled pixel px, given `carry`, the
 * max over the rows of its window's first column; leaves in `carry` that
 * of its last column, which is the next window's first. */
AVX2_TARGET static inline __attribute__((always_inline)) void
max3x3s2_pixel(const int NR, const int H, const float *const *rp, int in_w, size_t c, int c0,
               int px, __m256 *carry, float *y)
{
    const int x1 = 2 * px + 1, x2 = 2 * px + 2;
    __m256 m = *carry;
    if (x1 < in_w)
        m = _mm256_max_ps(m, max_column(NR, H, rp, (size_t)x1 * c + (size_t)c0));
    if (x2 < in_w) {
        *carry = max_column(NR, H, rp, (size_t)x2 * c + (size_t)c0);
        m = _mm256_max_ps(m, *carry);
    }
    if (H)
        _mm_storeu_ps(y + (size_t)px * c + c0, _mm256_castps256_ps128(m));
    else
        _mm256_storeu_ps(y + (size_t)px * c + c0, m);
}

/* One pooled row from NR rows of conv output, pixel by pixel so the
 * output is written in order (channel by channel, the row's stores came
 * back to each cache line 4 times and missed). Each column's max over
 * the rows is taken once. */
AVX2_TARGET static inline __attribute__((always_inline)) void
max3x3s2_rows(const int NR, const float *const *rp, int in_w, int c, int out_w, float *y)
{
    const size_t cs = (size_t)c;
    const int full = c / 8, half = c % 8 != 0;
    __m256 carry[POOL3X3S2_MAX_C / 8];
    for (int v = 0; v < full; v++)
        carry[v] = max_column(NR, 0, rp, (size_t)v * 8);
    if (half)
        carry[full] = max_column(NR, 1, rp, (size_t)full * 8);
    for (int px = 0; px < out_w; px++) {
        for (int v = 0; v < full; v++)
            max3x3s2_pixel(NR, 0, rp, in_w, cs, v * 8, px, &carry[v], y);
        if (half)
            max3x3s2_pixel(NR, 1, rp, in_w, cs, full * 8, px, &carry[full], y);
    }
}

/* One pooled row of a 3x3/2 max pool (pool_is_3x3s2) over the conv
 * rows rp[0..nr) (the window's rows inside the conv output). The same
 * maxima as pool_row_op over the same taps, in another order: max is exact,
 * so only the sign of a zero could tell (+0 and -0 compare equal), and a
 * PReLU epilogue yields -0 only when a negative product underflows past
 * the smallest subnormal. */
AVX2_TARGET static void max3x3s2_row(const float *const *rp, int nr, int in_w, int c, int out_w,
                                     float *y)
{
    if (nr >= 3)
        max3x3s2_rows(3, rp, in_w, c, out_w, y);
    else if (nr == 2)
        max3x3s2_rows(2, rp, in_w, c, out_w, y);
    else
        max3x3s2_rows(1, rp, in_w, c, out_w, y);
}

/* One output row. Padded taps are skipped (max) or not counted (average);
 * a window with no tap in bounds gives 0, as in the reference. */
AVX2_TARGET static inline __attribute__((always_inline)) void
pool_row_op(const int is_max, const pool_job *j, int b, int oy)
{
    const nn_conv_geom *g = j->g;
    const int c = g->in_c;
    const size_t row_stride = (size_t)g->in_w * c;
    const float *image = j->x + (size_t)b * g->in_h * row_stride;
    float *yrow = j->y + ((size_t)b * g->out_h + oy) * g->out_w * c;
    const int iy0 = oy * g->stride_h - g->pad_top;
    const int ky_lo = max_int(0, -iy0), ky_hi = min_int(g->kernel_h, g->in_h - iy0);
    const int ky_n = max_int(0, ky_hi - ky_lo);

    /* Square 2x2 and 3x3 max windows wholly inside take max_window. */
    const int fixed = is_max && ky_n == g->kernel_h && g->kernel_h == g->kernel_w &&
                      (g->kernel_h == 2 || g->kernel_h == 3);
    const __m256i tail_mask = lane_mask(c % 8);
    for (int ox = 0; ox < g->out_w; ox++) {
        const int ix0 = ox * g->stride_w - g->pad_left;
        const int kx_lo = max_int(0, -ix0), kx_hi = min_int(g->kernel_w, g->in_w - ix0);
        const int kx_n = max_int(0, kx_hi - kx_lo);
        if (fixed && kx_n == g->kernel_w) {
            const float *x0 = image + ((size_t)iy0 * g->in_w + (size_t)ix0) * c;
            if (g->kernel_h == 2)
                max_window(2, 2, x0, row_stride, c, tail_mask, g->act, yrow + (size_t)ox * c);
            else
                max_window(3, 3, x0, row_stride, c, tail_mask, g->act, yrow + (size_t)ox * c);
            continue;
        }
        const __m256 scale = _mm256_set1_ps(ky_n * kx_n > 0 ? 1.0f / (float)(ky_n * kx_n) : 0.0f);
        const float *xr0 = image + ((size_t)(iy0 + ky_lo) * g->in_w + (size_t)(ix0 + kx_lo)) * c;
        for (int c0 = 0; c0 < c; c0 += 32)
            pool_pixel(is_max, xr0 + c0, row_stride, c, ky_n, kx_n, min_int(32, c - c0), scale,
                       g->act, yrow + (size_t)ox * c + c0);
    }
}

AVX2_TARGET static void pool_row(const pool_job *j, int b, int oy)
{
    const nn_conv_geom *g = j->g;
    if (j->is_max && pool_is_3x3s2(g)) {
        const size_t row_floats = (size_t)g->in_w * g->in_c;
        const float *image = j->x + (size_t)b * g->in_h * row_floats;
        const int iy0 = oy * 2 - g->pad_top;
        const float *rp[3] = {image, image, image};
        int nr = 0;
        for (int iy = max_int(0, iy0); iy < min_int(g->in_h, iy0 + 3); iy++)
            rp[nr++] = image + (size_t)iy * row_floats;
        if (nr > 0) {
            max3x3s2_row(rp, nr, g->in_w, g->in_c, g->out_w,
                         j->y + ((size_t)b * g->out_h + oy) * g->out_w * g->in_c);
            return;
        }
    }
    if (j->is_max)
        pool_row_op(1, j, b, oy);
    else
        pool_row_op(0, j, b, oy);
}

static void pool_task(void *ctx, int task, int thread)
{
    const pool_job *j = ctx;
    const int total = j->g->n * j->g->out_h;
    (void)thread;
    for (int r = task * j->rows_per_task; r < total && r < (task + 1) * j->rows_per_task; r++)
        pool_row(j, r / j->g->out_h, r % j->g->out_h);
}

static void avx_pool2d(const nn_conv_geom *g, const float *x, float *y, int is_max,
                       nn_pool *pool)
{
    pool_job j = {g, x, y, is_max, 1};
    const int total = g->n * g->out_h;
    pool = pool_for(pool, (double)total * g->out_w * g->out_c * g->kernel_h * g->kernel_w);
    const int threads = nn_pool_threads(pool);
    j.rows_per_task = max_int(1, total / (8 * threads));
    nn_pool_run(pool, (total + j.rows_per_task - 1) / j.rows_per_task, pool_task, &j);
}

/* ---- direct convolution fused with a 2x2/2 max pool --------------------------
 *
 * P-Net's first layer (3 -> 10, 3x3) is followed by a 2x2, stride 2 max
 * pool. Run apart, the convolution writes its full-resolution output (1.1
 * MB for a 192x144 level) and the pool reads it back from L2/L3. Here each
 * task computes two convolution rows of 8 pixels at a time with the
 * direct kernel's arithmetic, takes the vertical max, then the max of
 * neighbouring lanes, and stores only the pooled pixels: the
 * convolution's output never leaves the registers. Max is exact, so the
 * result is bit-identical to the two layers run apart. */

#define FUSED_POOL_ROWS (DIRECT_ROWS / 2) /* pooled rows per task */

typedef struct fused_pool_job {
    direct_job d;
    const nn_conv_geom *pg; /* the pool: 2x2, stride 2, no padding before */
} fused_pool_job;

static int direct_maxpool_supported(const nn_conv_geom *g, const nn_conv_geom *pg)
{
    const int rows_ok = pg->out_h == g->out_h / 2 || pg->out_h == (g->out_h + 1) / 2;
    const int cols_ok = pg->out_w == g->out_w / 2 || pg->out_w == (g->out_w + 1) / 2;
    return conv_is_direct(g) && pg->kernel_h == 2 && pg->kernel_w == 2 && pg->stride_h == 2 &&
           pg->stride_w == 2 && pg->pad_top == 0 && pg->pad_left == 0 &&
           pg->act == NN_ACT_NONE && pg->n == g->n && pg->in_h == g->out_h &&
           pg->in_w == g->out_w && pg->in_c == g->out_c && pg->out_c == g->out_c &&
           pg->out_h >= 1 && pg->out_w >= 1 && rows_ok && cols_ok;
}

static size_t direct_maxpool_scratch(const nn_conv_geom *g, int threads)
{
    /* A task's FUSED_POOL_ROWS pooled rows are DIRECT_ROWS conv rows. */
    return (size_t)threads * direct_scratch_floats(g);
}

/* Pooled rows [py0, py1) of one image; planes hold the input rows from
 * 2 * py0 * stride_h - pad_top on. */
AVX2_TARGET static inline __attribute__((always_inline)) void
fused_pool_rows(const int G, const fused_pool_job *f, const float *planes, int py0, int py1,
                float *y)
{
    const direct_job *j = &f->d;
    const nn_conv_geom *g = j->g, *pg = f->pg;
    const size_t conv_row = (size_t)g->stride_h * g->in_c * j->row_floats;
    const __m256 neg_inf = _mm256_set1_ps(-INFINITY);
    /* Lanes 0, 2, 4, 6 (the pooled pixels) to lanes 0..3. */
    const __m256i compact = _mm256_setr_epi32(0, 2, 4, 6, 1, 3, 5, 7);

    for (int py = py0; py < py1; py++) {
        const int oy = 2 * py;
        const float *in0 = planes + (size_t)(oy - 2 * py0) * conv_row;
        float *yrow = y + (size_t)py * pg->out_w * g->out_c;
        for (int ox = 0; ox < g->out_w; ox += 8) {
            __m256 top[DIRECT_MAX_OUT_C], bottom[DIRECT_MAX_OUT_C];
            direct_block(G, j, in0, ox, top);
            if (oy + 1 < g->out_h) { /* else SAME padding: one row */
                direct_block(G, j, in0 + conv_row, ox, bottom);
                for (int o = 0; o < G; o++)
                    top[o] = _mm256_max_ps(top[o], bottom[o]);
            }
            /* Columns past the output are padding: out of every max. */
            const int valid = min_int(8, g->out_w - ox);
            const __m256 keep = _mm256_castsi256_ps(lane_mask(valid));
            for (int o = 0; o < G; o++) {
                const __m256 v = _mm256_blendv_ps(neg_inf, top[o], keep);
                const __m256 m = _mm256_max_ps(v, _mm256_permute_ps(v, 0xB1));
                bottom[o] = _mm256_permutevar8x32_ps(m, compact);
            }
            direct_store(G, bottom, g->out_c, min_int((valid + 1) / 2, pg->out_w - ox / 2),
                         yrow + (size_t)(ox / 2) * g->out_c);
        }
    }
}

AVX2_TARGET static void fused_pool_task(void *ctx, int task, int thread)
{
    const fused_pool_job *f = ctx;
    const direct_job *j = &f->d;
    const nn_conv_geom *g = j->g, *pg = f->pg;
    const int b = task / j->tasks_per_image;
    const int py0 = task % j->tasks_per_image * FUSED_POOL_ROWS;
    const int py1 = min_int(pg->out_h, py0 + FUSED_POOL_ROWS);
    const int oy0 = 2 * py0, oy1 = min_int(g->out_h, 2 * py1);
    float *planes = j->scratch + (size_t)thread * j->scratch_per_thread;
    const float *image = j->x + (size_t)b * g->in_h * g->in_w * g->in_c;
    float *y = j->y + (size_t)b * pg->out_h * pg->out_w * pg->out_c;

    direct_fill(g, image, oy0 * g->stride_h - g->pad_top, (oy1 - oy0 - 1) * g->stride_h + g->kernel_h,
               j->row_floats, planes);
    switch ((g->out_c + 1) / 2) {
    case 1: fused_pool_rows(2, f, planes, py0, py1, y); break;
    case 2: fused_pool_rows(4, f, planes, py0, py1, y); break;
    case 3: fused_pool_rows(6, f, planes, py0, py1, y); break;
    case 4: fused_pool_rows(8, f, planes, py0, py1, y); break;
    case 5: fused_pool_rows(10, f, planes, py0, py1, y); break;
    default: fused_pool_rows(12, f, planes, py0, py1, y); break;
    }
}

static void direct_maxpool(const nn_conv_geom *g, const nn_conv_geom *pg, const float *x,
                           const avx_layer *l, float *scratch, float *y, nn_pool *pool)
{
    fused_pool_job f = {{l, g, x, y, scratch, direct_scratch_floats(g), direct_row_floats(g), 1},
                        pg};
    f.d.tasks_per_image = (pg->out_h + FUSED_POOL_ROWS - 1) / FUSED_POOL_ROWS;
    pool = pool_for(pool, (double)g->n * g->out_h * g->out_w * l->k_dim * l->out_c);
    nn_pool_run(pool, g->n * f.d.tasks_per_image, fused_pool_task, &f);
}

/* ---- row kernel fused with a max pool ------------------------------------------
 *
 * R-Net's and O-Net's first layers (3 -> 28 and 3 -> 32, 3x3) are
 * followed by a 3x3, stride 2 max pool. Run apart, the convolution writes
 * a whole batch of outputs (2 MB for 40 R-Net crops) that the pool then
 * reads back from L3. Here a task computes the convolution rows of a few
 * pooled rows (a whole 22-row R-Net image, 15 of O-Net's 46 rows) into a
 * per-thread buffer that stays in L1/L2, then pools them with the pool
 * layer's own row function over a geometry shifted to the buffer's first
 * row. Neighbouring tasks recompute the rows their windows share (one row
 * in 15 for O-Net). The values are the layers' run apart, bit for bit. */

/* Floats of convolution output a task keeps (96 KiB). */
#define ROWS_POOL_BUFFER_FLOATS 24576

static int rows_maxpool_supported(const nn_conv_geom *g, const nn_conv_geom *pg)
{
    return conv_is_rows(g) && pg->act == NN_ACT_NONE && pg->n == g->n &&
           pg->in_h == g->out_h && pg->in_w == g->out_w && pg->in_c == g->out_c &&
           pg->out_c == g->out_c && pg->kernel_h >= 1 && pg->kernel_w >= 1 &&
           pg->stride_h >= 1 && pg->stride_w >= 1 && pg->pad_top >= 0 && pg->pad_left >= 0 &&
           pg->pad_top < pg->kernel_h && pg->pad_left < pg->kernel_w && pg->out_h >= 1 &&
           pg->out_w >= 1 && (pg->out_h - 1) * pg->stride_h - pg->pad_top < pg->in_h;
}

/* Pooled rows per task: as many as keep their convolution rows within
 * the buffer, at least one. */
static int rows_pool_rows_per_task(const nn_conv_geom *g, const nn_conv_geom *pg)
{
    const int cap = ROWS_POOL_BUFFER_FLOATS / max_int(1, g->out_w * g->out_c);
    return min_int(pg->out_h, max_int(1, (cap - pg->kernel_h) / pg->stride_h + 1));
}

/* Convolution rows [cy0, cy1) that pooled rows [py0, py1) read. */
static void rows_pool_span(const nn_conv_geom *g, const nn_conv_geom *pg, int py0, int py1,
                           int *cy0, int *cy1)
{
    *cy0 = max_int(0, py0 * pg->stride_h - pg->pad_top);
    *cy1 = min_int(g->out_h, (py1 - 1) * pg->stride_h - pg->pad_top + pg->kernel_h);
}

/* The most convolution rows one task computes. */
static int rows_pool_conv_rows(const nn_conv_geom *g, const nn_conv_geom *pg)
{
    return min_int(g->out_h, (rows_pool_rows_per_task(g, pg) - 1) * pg->stride_h +
                                 pg->kernel_h);
}

/* Per thread: the padded input rows, then the convolution rows. */
static size_t rows_maxpool_scratch_floats(const nn_conv_geom *g, const nn_conv_geom *pg)
{
    const int conv_rows = rows_pool_conv_rows(g, pg);
    return round_up(rows_in_rows(g, conv_rows) * rows_row_floats(g), ALIGN_FLOATS) +
           round_up((size_t)conv_rows * g->out_w * g->out_c, ALIGN_FLOATS);
}

typedef struct rows_pool_job {
    const avx_layer *l;
    const nn_conv_geom *g, *pg;
    const float *x;
    float *y;
    float *scratch;
    size_t scratch_per_thread;
    int tasks_per_image, pool_rows_per_task;
    int fast; /* pool_is_3x3s2 */
} rows_pool_job;

static void rows_pool_task(void *ctx, int task, int thread)
{
    const rows_pool_job *j = ctx;
    const nn_conv_geom *g = j->g, *pg = j->pg;
    const int b = task / j->tasks_per_image;
    const int py0 = task % j->tasks_per_image * j->pool_rows_per_task;
    const int py1 = min_int(pg->out_h, py0 + j->pool_rows_per_task);
    const size_t row_floats = rows_row_floats(g);
    const size_t conv_row = (size_t)g->out_w * g->out_c;
    int cy0, cy1;
    rows_pool_span(g, pg, py0, py1, &cy0, &cy1);
    float *in = j->scratch + (size_t)thread * j->scratch_per_thread;
    float *conv = in + round_up(rows_in_rows(g, rows_pool_conv_rows(g, pg)) * row_floats,
                                ALIGN_FLOATS);
    const float *image = j->x + (size_t)b * g->in_h * g->in_w * g->in_c;
    float *y = j->y + (size_t)b * pg->out_h * pg->out_w * pg->out_c;

    rows_fill(g, image, cy0 * g->stride_h - g->pad_top, (int)rows_in_rows(g, cy1 - cy0),
              row_floats, in);
    if (j->fast) {
        /* Conv rows go round 3 slots of the buffer, each computed just
         * before the first pooled row that reads it, so the pool reads
         * them from L1 (a whole task's rows, 94 KiB for O-Net, did not
         * fit: the pool took a sixth of the layer). */
        int next = cy0;
        for (int py = py0; py < py1; py++) {
            const int lo = max_int(cy0, py * 2 - pg->pad_top);
            const int hi = min_int(cy1, py * 2 - pg->pad_top + 3);
            const float *rp[3] = {conv, conv, conv};
            for (; next < hi; next++)
                rows_out_row(j->l, g, in + (size_t)(next - cy0) * g->stride_h * row_floats,
                             row_floats, conv + (size_t)((next - cy0) % 3) * conv_row);
            /* hi > lo: rows_maxpool_supported leaves no window outside
             * the conv rows. */
            for (int cy = lo; cy < hi; cy++)
                rp[cy - lo] = conv + (size_t)((cy - cy0) % 3) * conv_row;
            max3x3s2_row(rp, hi - lo, g->out_w, g->out_c, pg->out_w,
                         y + (size_t)py * pg->out_w * pg->out_c);
        }
        return;
    }
    for (int cy = cy0; cy < cy1; cy++)
        rows_out_row(j->l, g, in + (size_t)(cy - cy0) * g->stride_h * row_floats, row_floats,
                     conv + (size_t)(cy - cy0) * conv_row);
    /* The pool over the buffer: its rows start at conv row cy0, so the
     * windows start cy0 rows later and the rows past cy1 are padding,
     * which no pooled row of this task reaches but the last image row's. */
    nn_conv_geom local = *pg;
    local.n = 1;
    local.in_h = cy1 - cy0;
    local.pad_top = pg->pad_top + cy0;
    const pool_job pj = {&local, conv, y, 1, 1};
    for (int py = py0; py < py1; py++)
        pool_row(&pj, 0, py);
}

static void rows_maxpool(const nn_conv_geom *g, const nn_conv_geom *pg, const float *x,
                         const avx_layer *l, float *scratch, float *y, nn_pool *pool)
{
    rows_pool_job j = {l, g, pg, x, y, scratch, rows_maxpool_scratch_floats(g, pg), 1,
                       rows_pool_rows_per_task(g, pg), pool_is_3x3s2(pg)};
    j.tasks_per_image = (pg->out_h + j.pool_rows_per_task - 1) / j.pool_rows_per_task;
    pool = pool_for(pool, (double)g->n * g->out_h * g->out_w * l->k_dim * l->out_c);
    nn_pool_run(pool, g->n * j.tasks_per_image, rows_pool_task, &j);
}

static int avx_conv_maxpool_supported(const nn_conv_geom *g, const nn_conv_geom *pg)
{
    return direct_maxpool_supported(g, pg) || rows_maxpool_supported(g, pg);
}

static size_t avx_conv_maxpool_scratch(const nn_conv_geom *g, const nn_conv_geom *pg,
                                       int threads)
{
    if (direct_maxpool_supported(g, pg))
        return direct_maxpool_scratch(g, threads);
    return (size_t)threads * rows_maxpool_scratch_floats(g, pg);
}

static void avx_conv_maxpool(const nn_conv_geom *g, const nn_conv_geom *pg, const float *x,
                             const void *prepared, float *scratch, float *y, nn_pool *pool)
{
    const avx_layer *l = prepared;
    if (direct_maxpool_supported(g, pg))
        direct_maxpool(g, pg, x, l, scratch, y, pool);
    else
        rows_maxpool(g, pg, x, l, scratch, y, pool);
}

#else /* !HAVE_AVX2 */

static int avx_available(void)
{
    return 0;
}

static void avx_conv2d(const nn_conv_geom *g, const float *x, const void *prepared,
                       float *scratch, float *y, nn_pool *pool)
{
    (void)g; (void)x; (void)prepared; (void)scratch; (void)y; (void)pool;
}

static void avx_depthwise(const nn_conv_geom *g, const float *x, const void *prepared, float *y,
                          nn_pool *pool)
{
    (void)g; (void)x; (void)prepared; (void)y; (void)pool;
}

static void avx_fully_connected(int n, int in_dim, int out_dim, nn_activation act,
                                const float *x, const void *prepared, float *y, nn_pool *pool)
{
    (void)n; (void)in_dim; (void)out_dim; (void)act; (void)x; (void)prepared; (void)y;
    (void)pool;
}

static void avx_pool2d(const nn_conv_geom *g, const float *x, float *y, int is_max,
                       nn_pool *pool)
{
    (void)g; (void)x; (void)y; (void)is_max; (void)pool;
}

static void avx_conv_maxpool(const nn_conv_geom *g, const nn_conv_geom *pg, const float *x,
                             const void *prepared, float *scratch, float *y, nn_pool *pool)
{
    (void)g; (void)pg; (void)x; (void)prepared; (void)scratch; (void)y; (void)pool;
}

static int avx_conv_maxpool_supported(const nn_conv_geom *g, const nn_conv_geom *pg)
{
    (void)g; (void)pg;
    return 0;
}

static size_t avx_conv_maxpool_scratch(const nn_conv_geom *g, const nn_conv_geom *pg,
                                       int threads)
{
    (void)g; (void)pg; (void)threads;
    return 0;
}

#endif

const nn_backend nn_backend_avx2 = {
    "avx2",       avx_available, avx_prepare,   avx_release,
    avx_conv2d_scratch, avx_conv2d, avx_depthwise, avx_fully_connected,
    avx_pool2d,
};

const nn_fused_ops nn_fused_avx2 = {
    avx_conv_maxpool_supported,
    avx_conv_maxpool_scratch,
    avx_conv_maxpool,
};
