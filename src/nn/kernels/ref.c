/*
 * ref.c - the portable reference backend (see ref.h).
 *
 * Two rules shape every loop here:
 *   - the innermost loop runs over a contiguous axis (channels, or output
 *     channels of the GEMM) with no index arithmetic and no division, so
 *     gcc -O3 turns it into vector code without intrinsics;
 *   - bounds (padding, tensor edges) are resolved once per row or pixel,
 *     never per element.
 *
 * Convolution is im2col + GEMM. The GEMM multiplies A [M][K] (one row per
 * output pixel, K = KH*KW*I) by the packed weights B [K][O] into C [M][O],
 * which is exactly the NHWC output. It is blocked three ways:
 *   - rows of A in blocks of conv_block_rows() (the im2col scratch);
 *   - K in slices of at most GEMM_KC, so the B panel in use stays in L1;
 *   - a GEMM_MR x GEMM_NR register tile of C, accumulated over a K slice.
 */
#include "nn/kernels/ref.h"

#include <math.h>
#include <string.h>

/* Register tile. 4 x 8 floats of accumulators fit the 16 SSE registers of
 * baseline x86-64 with room for the B row and the broadcast A value, and
 * map onto 4 AVX registers when built with -march=native. */
#define GEMM_MR 4
#define GEMM_NR 8
/* Longest K slice: a GEMM_KC x GEMM_NR panel of B is 16 KiB. K is cut into
 * equal slices no longer than this (576 -> 2 x 288, not 512 + 64), so no
 * slice is too short to pay for loading and storing its tile of C. */
#define GEMM_KC 512
/* Rows of A per im2col block aim for this many floats (256 KiB), so the
 * block stays in L2 while every panel of B is swept over it. */
#define IM2COL_TARGET_FLOATS 65536
#define GEMM_MAX_BLOCK_ROWS 256

static size_t min_size(size_t a, size_t b) { return a < b ? a : b; }
static int min_int(int a, int b) { return a < b ? a : b; }
static int max_int(int a, int b) { return a > b ? a : b; }

/* ---- activation -------------------------------------------------------- */

static void activate(nn_activation act, float *y, size_t n)
{
    if (act == NN_ACT_RELU) {
        for (size_t i = 0; i < n; i++)
            y[i] = y[i] > 0.0f ? y[i] : 0.0f;
    } else if (act == NN_ACT_RELU6) {
        for (size_t i = 0; i < n; i++) {
            float v = y[i] > 0.0f ? y[i] : 0.0f;
            y[i] = v < 6.0f ? v : 6.0f;
        }
    }
}

/* ---- GEMM -------------------------------------------------------------- */

/* How a micro-kernel call starts and ends its tile of C: the first K slice
 * starts from the bias (instead of loading C), the last one applies the
 * activation before storing. Between slices C holds partial sums. */
typedef struct tile_ends {
    const float *start; /* GEMM_NR floats to start every row from, or NULL
                           to continue from C */
    nn_activation act;  /* applied on store; NONE for partial sums */
} tile_ends;

/* C[MR][NR] = ends(A[MR][kc] * B[kc][NR] + start-or-C), strides in floats.
 * The accumulators are a fixed-size local array that the compiler keeps in
 * vector registers (the r and j loops unroll fully and are vectorised
 * across j).
 *
 * gcc would rather vectorise the k loop itself, as an in-order reduction
 * with strided loads of B, which runs 4x slower than the register tile;
 * turning off its loop vectoriser for this one function leaves the
 * basic-block (SLP) vectoriser to do the intended job. clang gets this
 * right by itself. */
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC push_options
#pragma GCC optimize("no-tree-loop-vectorize")
#endif
static void gemm_micro(int kc, const float *a, size_t lda, const float *b,
                       size_t ldb, float *c, size_t ldc, const tile_ends *ends)
{
    float acc[GEMM_MR][GEMM_NR];

    if (ends->start) {
        for (int r = 0; r < GEMM_MR; r++)
            for (int j = 0; j < GEMM_NR; j++)
                acc[r][j] = ends->start[j];
    } else {
        for (int r = 0; r < GEMM_MR; r++)
            for (int j = 0; j < GEMM_NR; j++)
                acc[r][j] = c[r * ldc + j];
    }
    for (int k = 0; k < kc; k++) {
        const float *bk = b + (size_t)k * ldb;
        for (int r = 0; r < GEMM_MR; r++) {
            const float av = a[r * lda + k];
            for (int j = 0; j < GEMM_NR; j++)
                acc[r][j] += av * bk[j];
        }
    }
    if (ends->act != NN_ACT_NONE) {
        const float hi = ends->act == NN_ACT_RELU6 ? 6.0f : INFINITY;
        for (int r = 0; r < GEMM_MR; r++)
            for (int j = 0; j < GEMM_NR; j++) {
                float v = acc[r][j] > 0.0f ? acc[r][j] : 0.0f;
                acc[r][j] = v < hi ? v : hi;
            }
    }
    for (int r = 0; r < GEMM_MR; r++)
        for (int j = 0; j < GEMM_NR; j++)
            c[r * ldc + j] = acc[r][j];
}
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC pop_options
#endif

/* A partial tile (mr < MR rows and/or nr < NR columns): run the full
 * micro-kernel on a local copy of C, and of A when rows are missing, padded
 * with zeros. `b` is a zero-padded panel of GEMM_NR columns. */
static void gemm_micro_edge(int kc, int mr, int nr, const float *a,
                            size_t lda, const float *b, size_t ldb, float *c,
                            size_t ldc, const tile_ends *ends)
{
    float a_tile[GEMM_MR * GEMM_KC];
    float c_tile[GEMM_MR][GEMM_NR] = {{0}};

    if (mr < GEMM_MR) {
        for (int r = 0; r < mr; r++)
            memcpy(a_tile + r * kc, a + r * lda, (size_t)kc * sizeof(float));
        memset(a_tile + mr * kc, 0, (size_t)(GEMM_MR - mr) * kc * sizeof(float));
        a = a_tile;
        lda = (size_t)kc;
    }
    /* Element loops, not memcpy: nr is below 8 and this runs per tile. */
    if (!ends->start)
        for (int r = 0; r < mr; r++)
            for (int j = 0; j < nr; j++)
                c_tile[r][j] = c[r * ldc + j];
    gemm_micro(kc, a, lda, b, ldb, &c_tile[0][0], GEMM_NR, ends);
    for (int r = 0; r < mr; r++)
        for (int j = 0; j < nr; j++)
            c[r * ldc + j] = c_tile[r][j];
}

/* C = act(A * B + bias) for `rows` rows; A [rows][k_dim], B [k_dim][out_c],
 * C [rows][out_c], all dense. bias may be NULL. */
static void gemm(size_t rows, int k_dim, int out_c, const float *a,
                 const float *b, const float *bias, nn_activation act,
                 float *c)
{
    float panel[GEMM_KC * GEMM_NR];
    float bias_panel[GEMM_NR];
    const size_t lda = (size_t)k_dim, ldc = (size_t)out_c;

    const int slices = (k_dim + GEMM_KC - 1) / GEMM_KC;
    const int slice = slices > 0 ? (k_dim + slices - 1) / slices : 0;

    for (int k0 = 0; k0 < k_dim; k0 += slice) {
        const int kc = min_int(slice, k_dim - k0);
        for (int o0 = 0; o0 < out_c; o0 += GEMM_NR) {
            const int nr = min_int(GEMM_NR, out_c - o0);
            const float *src = b + (size_t)k0 * ldc + o0;

            /* Copy the panel B[k0 .. k0+kc)[o0 .. o0+nr) into contiguous
             * rows of GEMM_NR, zero-padded when nr < GEMM_NR. Read in place,
             * its rows would be out_c floats apart, which for out_c a
             * multiple of 32 puts them all in a few L1 sets; the copy costs
             * one pass over B per row block. */
            for (int k = 0; k < kc; k++) {
                const float *from = src + (size_t)k * ldc;
                float *to = panel + k * GEMM_NR;
                if (nr == GEMM_NR) {
                    for (int j = 0; j < GEMM_NR; j++)
                        to[j] = from[j];
                } else {
                    for (int j = 0; j < GEMM_NR; j++)
                        to[j] = 0.0f;
                    for (int j = 0; j < nr; j++)
                        to[j] = from[j];
                }
            }
            tile_ends ends;
            ends.start = NULL;
            if (k0 == 0) {
                memset(bias_panel, 0, sizeof bias_panel);
                if (bias)
                    memcpy(bias_panel, bias + o0, (size_t)nr * sizeof(float));
                ends.start = bias_panel;
            }
            ends.act = k0 + kc == k_dim ? act : NN_ACT_NONE;

            size_t m = 0;
            if (nr == GEMM_NR)
                for (; m + GEMM_MR <= rows; m += GEMM_MR)
                    gemm_micro(kc, a + m * lda + k0, lda, panel, GEMM_NR,
                               c + m * ldc + o0, ldc, &ends);
            for (; m < rows; m += GEMM_MR)
                gemm_micro_edge(kc, (int)min_size(GEMM_MR, rows - m), nr,
                                a + m * lda + k0, lda, panel, GEMM_NR,
                                c + m * ldc + o0, ldc, &ends);
        }
    }
}

/* ---- convolution ------------------------------------------------------- */

void nn_ref_conv2d_pack(const float *w_ohwi, int out_c, int kernel_h,
                        int kernel_w, int in_c, float *packed)
{
    const size_t k_dim = (size_t)kernel_h * kernel_w * in_c;

    for (int o = 0; o < out_c; o++) {
        const float *src = w_ohwi + (size_t)o * k_dim;
        for (size_t k = 0; k < k_dim; k++)
            packed[k * out_c + o] = src[k];
    }
}

/* A 1x1, stride 1, unpadded conv reads its input as the im2col matrix. */
static int conv_is_pointwise(const nn_conv_geom *g)
{
    return g->kernel_h == 1 && g->kernel_w == 1 && g->stride_h == 1 &&
           g->stride_w == 1 && g->pad_top == 0 && g->pad_left == 0 &&
           g->out_h == g->in_h && g->out_w == g->in_w;
}

static size_t conv_rows(const nn_conv_geom *g)
{
    return (size_t)g->n * g->out_h * g->out_w;
}

/* Output pixels per GEMM block: as many as fit IM2COL_TARGET_FLOATS, a
 * multiple of GEMM_MR, at least one tile, at most the whole output. */
static size_t conv_block_rows(const nn_conv_geom *g)
{
    const size_t k_dim = (size_t)g->kernel_h * g->kernel_w * g->in_c;
    size_t rows = k_dim > 0 ? IM2COL_TARGET_FLOATS / k_dim : GEMM_MAX_BLOCK_ROWS;

    rows -= rows % GEMM_MR;
    if (rows < GEMM_MR)
        rows = GEMM_MR;
    if (rows > GEMM_MAX_BLOCK_ROWS)
        rows = GEMM_MAX_BLOCK_ROWS;
    return min_size(rows, conv_rows(g));
}

size_t nn_ref_conv2d_scratch_floats(const nn_conv_geom *g)
{
    if (conv_is_pointwise(g))
        return 0;
    return conv_block_rows(g) * g->kernel_h * g->kernel_w * g->in_c;
}

/* Write im2col rows [row0, row0 + rows) into `cols` (row stride K). Row m
 * is output pixel m in NHWC order; its K values are the KH x KW x I input
 * window, zeros where the window hangs over the padding. */
static void im2col_rows(const nn_conv_geom *g, const float *x, size_t row0,
                        size_t rows, float *cols)
{
    const size_t in_c = (size_t)g->in_c;
    const size_t window_row = (size_t)g->kernel_w * in_c; /* floats per ky */
    const size_t plane = (size_t)g->out_h * g->out_w;
    int b = (int)(row0 / plane);
    int oy = (int)(row0 % plane / (size_t)g->out_w);
    int ox = (int)(row0 % (size_t)g->out_w);

    for (size_t r = 0; r < rows; r++) {
        const float *image = x + (size_t)b * g->in_h * g->in_w * in_c;
        const int iy0 = oy * g->stride_h - g->pad_top;
        const int ix0 = ox * g->stride_w - g->pad_left;
        const int kx_lo = max_int(0, -ix0);
        const int kx_hi = min_int(g->kernel_w, g->in_w - ix0);
        float *dst = cols + r * window_row * g->kernel_h;

        for (int ky = 0; ky < g->kernel_h; ky++, dst += window_row) {
            const int iy = iy0 + ky;
            if (iy < 0 || iy >= g->in_h || kx_hi <= kx_lo) {
                memset(dst, 0, window_row * sizeof(float));
                continue;
            }
            /* The in-bounds taps of one kernel row are contiguous in NHWC. */
            const float *src = image + ((size_t)iy * g->in_w + ix0 + kx_lo) * in_c;
            const size_t before = (size_t)kx_lo * in_c;
            const size_t inside = (size_t)(kx_hi - kx_lo) * in_c;
            const size_t after = window_row - before - inside;
            if (before)
                memset(dst, 0, before * sizeof(float));
            memcpy(dst + before, src, inside * sizeof(float));
            if (after)
                memset(dst + before + inside, 0, after * sizeof(float));
        }
        if (++ox == g->out_w) {
            ox = 0;
            if (++oy == g->out_h) {
                oy = 0;
                b++;
            }
        }
    }
}

void nn_ref_conv2d(const nn_conv_geom *g, const float *x, const float *packed,
                   const float *bias, float *scratch, float *y)
{
    const int k_dim = g->kernel_h * g->kernel_w * g->in_c;
    const size_t total = conv_rows(g);
    const size_t block = conv_block_rows(g);
    const int pointwise = conv_is_pointwise(g);

    for (size_t row0 = 0; row0 < total; row0 += block) {
        const size_t rows = min_size(block, total - row0);
        float *out = y + row0 * g->out_c;
        const float *a;

        if (pointwise) {
            a = x + row0 * g->in_c;
        } else {
            im2col_rows(g, x, row0, rows, scratch);
            a = scratch;
        }
        gemm(rows, k_dim, g->out_c, a, packed, bias, g->act, out);
    }
}

/* ---- depthwise convolution and pooling ---------------------------------
 * All three walk output pixels and, per pixel, the in-bounds kernel taps
 * (ranges resolved once per pixel), with the channel loop innermost. */

typedef struct tap_range {
    int ky_lo, ky_hi, kx_lo, kx_hi; /* in-bounds taps: [lo, hi) */
    int iy0, ix0;                   /* input position of tap (0, 0) */
} tap_range;

static tap_range window_taps(const nn_conv_geom *g, int oy, int ox)
{
    tap_range t;
    t.iy0 = oy * g->stride_h - g->pad_top;
    t.ix0 = ox * g->stride_w - g->pad_left;
    t.ky_lo = max_int(0, -t.iy0);
    t.ky_hi = min_int(g->kernel_h, g->in_h - t.iy0);
    t.kx_lo = max_int(0, -t.ix0);
    t.kx_hi = min_int(g->kernel_w, g->in_w - t.ix0);
    return t;
}

static void madd_channels(float *restrict acc, const float *restrict x,
                          const float *restrict w, int c)
{
    for (int i = 0; i < c; i++)
        acc[i] += x[i] * w[i];
}

void nn_ref_depthwise_conv2d(const nn_conv_geom *g, const float *x,
                             const float *w_hwc, const float *bias, float *y)
{
    const int c = g->in_c;
    const size_t pixel_row = (size_t)g->in_w * c;

    for (int b = 0; b < g->n; b++) {
        const float *image = x + (size_t)b * g->in_h * pixel_row;
        for (int oy = 0; oy < g->out_h; oy++) {
            for (int ox = 0; ox < g->out_w; ox++, y += c) {
                const tap_range t = window_taps(g, oy, ox);
                if (bias)
                    memcpy(y, bias, (size_t)c * sizeof(float));
                else
                    memset(y, 0, (size_t)c * sizeof(float));
                for (int ky = t.ky_lo; ky < t.ky_hi; ky++) {
                    const float *xr = image + (size_t)(t.iy0 + ky) * pixel_row;
                    const float *wr = w_hwc + (size_t)ky * g->kernel_w * c;
                    for (int kx = t.kx_lo; kx < t.kx_hi; kx++)
                        madd_channels(y, xr + (size_t)(t.ix0 + kx) * c,
                                      wr + (size_t)kx * c, c);
                }
                activate(g->act, y, (size_t)c);
            }
        }
    }
}

static void max_channels(float *restrict acc, const float *restrict x, int c)
{
    for (int i = 0; i < c; i++)
        acc[i] = x[i] > acc[i] ? x[i] : acc[i];
}

static void add_channels(float *restrict acc, const float *restrict x, int c)
{
    for (int i = 0; i < c; i++)
        acc[i] += x[i];
}

/* Shared walk of max and average pooling. A window with no in-bounds tap
 * (only possible with explicit padding wider than the kernel) gives 0. */
static void pool2d(const nn_conv_geom *g, const float *x, float *y, int is_max)
{
    const int c = g->in_c;
    const size_t pixel_row = (size_t)g->in_w * c;

    for (int b = 0; b < g->n; b++) {
        const float *image = x + (size_t)b * g->in_h * pixel_row;
        for (int oy = 0; oy < g->out_h; oy++) {
            for (int ox = 0; ox < g->out_w; ox++, y += c) {
                const tap_range t = window_taps(g, oy, ox);
                const int taps = max_int(0, t.ky_hi - t.ky_lo) *
                                 max_int(0, t.kx_hi - t.kx_lo);
                if (taps == 0) {
                    memset(y, 0, (size_t)c * sizeof(float));
                    continue;
                }
                /* Start from the first tap so max needs no -inf. */
                const float *xr = image + (size_t)(t.iy0 + t.ky_lo) * pixel_row;
                memcpy(y, xr + (size_t)(t.ix0 + t.kx_lo) * c,
                       (size_t)c * sizeof(float));
                for (int ky = t.ky_lo; ky < t.ky_hi; ky++) {
                    xr = image + (size_t)(t.iy0 + ky) * pixel_row;
                    for (int kx = t.kx_lo; kx < t.kx_hi; kx++) {
                        if (ky == t.ky_lo && kx == t.kx_lo)
                            continue;
                        const float *xp = xr + (size_t)(t.ix0 + kx) * c;
                        if (is_max)
                            max_channels(y, xp, c);
                        else
                            add_channels(y, xp, c);
                    }
                }
                if (!is_max) {
                    const float inv = 1.0f / (float)taps;
                    for (int i = 0; i < c; i++)
                        y[i] *= inv;
                }
                activate(g->act, y, (size_t)c);
            }
        }
    }
}

void nn_ref_max_pool2d(const nn_conv_geom *g, const float *x, float *y)
{
    pool2d(g, x, y, 1);
}

void nn_ref_avg_pool2d(const nn_conv_geom *g, const float *x, float *y)
{
    pool2d(g, x, y, 0);
}

/* ---- dense ------------------------------------------------------------- */

/* Dot product with 8 independent partial sums: without -ffast-math gcc
 * will not reorder a single running sum, but it vectorises these lanes. */
#define DOT_LANES 8
static float dot(const float *restrict x, const float *restrict w, int n)
{
    float lane[DOT_LANES] = {0};
    int i = 0;

    for (; i + DOT_LANES <= n; i += DOT_LANES)
        for (int j = 0; j < DOT_LANES; j++)
            lane[j] += x[i + j] * w[i + j];
    float sum = 0.0f;
    for (int j = 0; j < DOT_LANES; j++)
        sum += lane[j];
    for (; i < n; i++)
        sum += x[i] * w[i];
    return sum;
}

void nn_ref_fully_connected(int n, int in_dim, int out_dim, const float *x,
                            const float *w_oi, const float *bias,
                            nn_activation act, float *y)
{
    for (int b = 0; b < n; b++) {
        const float *xr = x + (size_t)b * in_dim;
        float *yr = y + (size_t)b * out_dim;
        for (int o = 0; o < out_dim; o++)
            yr[o] = dot(xr, w_oi + (size_t)o * in_dim, in_dim) +
                    (bias ? bias[o] : 0.0f);
        activate(act, yr, (size_t)out_dim);
    }
}

/* ---- element-wise ------------------------------------------------------ */

/* y[i] = a[i*sa] OP b[i*sb] for i < n, where sa, sb are 0 (broadcast) or 1.
 * Each stride combination gets its own loop so every one vectorises. */
#define BINARY_LOOPS(EXPR)                                                 \
    do {                                                                   \
        if (sa && sb) {                                                    \
            for (size_t i = 0; i < n; i++) {                               \
                const float av = a[i], bv = b[i];                          \
                y[i] = (EXPR);                                             \
            }                                                              \
        } else if (sa) {                                                   \
            const float bv = b[0];                                         \
            for (size_t i = 0; i < n; i++) {                               \
                const float av = a[i];                                     \
                y[i] = (EXPR);                                             \
            }                                                              \
        } else if (sb) {                                                   \
            const float av = a[0];                                         \
            for (size_t i = 0; i < n; i++) {                               \
                const float bv = b[i];                                     \
                y[i] = (EXPR);                                             \
            }                                                              \
        } else {                                                           \
            const float av = a[0], bv = b[0];                              \
            const float v = (EXPR);                                        \
            for (size_t i = 0; i < n; i++)                                 \
                y[i] = v;                                                  \
        }                                                                  \
    } while (0)

static void binary_row(nn_op op, const float *a, int sa, const float *b,
                       int sb, float *y, size_t n)
{
    switch (op) {
    case NN_OP_ADD: BINARY_LOOPS(av + bv); break;
    case NN_OP_SUB: BINARY_LOOPS(av - bv); break;
    case NN_OP_MUL: BINARY_LOOPS(av * bv); break;
    case NN_OP_DIV: BINARY_LOOPS(av / bv); break;
    default: break;
    }
}

/* A shape right-aligned to rank 4, leading dims 1. */
static void dims4(const nn_shape *s, size_t d[4])
{
    const int lead = NN_MAX_RANK - s->rank;
    for (int i = 0; i < NN_MAX_RANK; i++)
        d[i] = i < lead ? 1 : (size_t)s->dims[i - lead];
}

/* Element strides of an operand read at output dims `yd`: 0 along the
 * dims it broadcasts. */
static void broadcast_strides(const size_t d[4], const size_t yd[4],
                              size_t st[4])
{
    size_t step = 1;
    for (int i = NN_MAX_RANK - 1; i >= 0; i--) {
        st[i] = (d[i] == 1 && yd[i] != 1) ? 0 : step;
        step *= d[i];
    }
}

void nn_ref_binary(nn_op op, const float *a, const nn_shape *as,
                   const float *b, const nn_shape *bs, nn_activation act,
                   float *y, const nn_shape *ys)
{
    size_t ad[4], bd[4], yd[4], sa[4], sb[4];

    dims4(as, ad);
    dims4(bs, bd);
    dims4(ys, yd);
    const size_t count = yd[0] * yd[1] * yd[2] * yd[3];
    const size_t a_count = ad[0] * ad[1] * ad[2] * ad[3];
    const size_t b_count = bd[0] * bd[1] * bd[2] * bd[3];

    /* Fast paths: both full, or one a scalar: a single flat row. */
    if ((a_count == count || a_count == 1) && (b_count == count || b_count == 1)) {
        binary_row(op, a, a_count != 1 || count == 1, b,
                   b_count != 1 || count == 1, y, count);
        activate(act, y, count);
        return;
    }
    /* General case, which also covers [C] over the last dim and
     * [N,H,W,1] per pixel: rows along the last dim, each operand either
     * contiguous or broadcast along it. */
    broadcast_strides(ad, yd, sa);
    broadcast_strides(bd, yd, sb);
    const size_t row = yd[3];
    float *yr = y;
    for (size_t i0 = 0; i0 < yd[0]; i0++)
        for (size_t i1 = 0; i1 < yd[1]; i1++)
            for (size_t i2 = 0; i2 < yd[2]; i2++, yr += row) {
                const float *ar = a + i0 * sa[0] + i1 * sa[1] + i2 * sa[2];
                const float *br = b + i0 * sb[0] + i1 * sb[1] + i2 * sb[2];
                binary_row(op, ar, sa[3] != 0, br, sb[3] != 0, yr, row);
            }
    activate(act, y, count);
}

void nn_ref_add_zext(const float *a, const nn_shape *as, const float *b,
                     const nn_shape *bs, float *y, const nn_shape *ys)
{
    const int n = ys->dims[0], h = ys->dims[1], w = ys->dims[2], c = ys->dims[3];
    const int ah = as->dims[1], aw = as->dims[2], ac = as->dims[3];
    const int bh = bs->dims[1], bw = bs->dims[2], bc = bs->dims[3];
    /* Channels each operand contributes (ys is the per-dim max, so these
     * are ac and bc; the min only guards against a caller's mistake). */
    const int a_take = min_int(ac, c), b_take = min_int(bc, c);

    for (int i = 0; i < n; i++) {
        const float *ai = a + (size_t)i * ah * aw * ac;
        const float *bi = b + (size_t)i * bh * bw * bc;
        for (int yy = 0; yy < h; yy++) {
            for (int xx = 0; xx < w; xx++, y += c) {
                if (yy < ah && xx < aw) {
                    memcpy(y, ai + ((size_t)yy * aw + xx) * ac,
                           (size_t)a_take * sizeof(float));
                    memset(y + a_take, 0, (size_t)(c - a_take) * sizeof(float));
                } else {
                    memset(y, 0, (size_t)c * sizeof(float));
                }
                if (yy < bh && xx < bw)
                    add_channels(y, bi + ((size_t)yy * bw + xx) * bc, b_take);
            }
        }
    }
}

void nn_ref_unary(nn_op op, const float *x, size_t count, float *y)
{
    size_t i;

    switch (op) {
    case NN_OP_NEG:
        for (i = 0; i < count; i++)
            y[i] = -x[i];
        break;
    case NN_OP_ABS:
        for (i = 0; i < count; i++)
            y[i] = fabsf(x[i]);
        break;
    case NN_OP_RELU:
        for (i = 0; i < count; i++)
            y[i] = x[i] > 0.0f ? x[i] : 0.0f;
        break;
    case NN_OP_EXP:
        for (i = 0; i < count; i++)
            y[i] = expf(x[i]);
        break;
    default:
        break;
    }
}

void nn_ref_prelu(const float *x, size_t count, int channels,
                  const float *alpha, float *y)
{
    if (channels <= 0)
        return;
    for (size_t i0 = 0; i0 < count; i0 += (size_t)channels) {
        const int c = (int)min_size((size_t)channels, count - i0);
        const float *xr = x + i0;
        float *yr = y + i0;
        for (int i = 0; i < c; i++)
            yr[i] = xr[i] > 0.0f ? xr[i] : alpha[i] * xr[i];
    }
}

void nn_ref_affine(const float *x, size_t count, int channels,
                   const float *scale, const float *shift, float *y)
{
    if (channels <= 0)
        return;
    for (size_t i0 = 0; i0 < count; i0 += (size_t)channels) {
        const int c = (int)min_size((size_t)channels, count - i0);
        const float *xr = x + i0;
        float *yr = y + i0;
        for (int i = 0; i < c; i++)
            yr[i] = xr[i] * scale[i] + shift[i];
    }
}

/* ---- reductions and normalisation -------------------------------------- */

void nn_ref_reduce(nn_op op, const float *x, const nn_shape *xs,
                   unsigned axes_mask, float *y)
{
    const int lead = NN_MAX_RANK - xs->rank;
    const int is_max = op == NN_OP_REDUCE_MAX;
    size_t d[4], ystride[4], out_count = 1, reduced = 1;
    int red[4];

    /* Work at rank 4: leading dims of size 1 are never reduced. */
    dims4(xs, d);
    for (int i = 0; i < NN_MAX_RANK; i++)
        red[i] = i >= lead && (axes_mask >> (i - lead) & 1u);
    for (int i = NN_MAX_RANK - 1; i >= 0; i--) {
        ystride[i] = red[i] ? 0 : out_count;
        if (red[i])
            reduced *= d[i];
        else
            out_count *= d[i];
    }
    for (size_t i = 0; i < out_count; i++)
        y[i] = is_max ? -INFINITY : 0.0f;

    const size_t row = d[3];
    const float *xr = x;
    for (size_t i0 = 0; i0 < d[0]; i0++)
        for (size_t i1 = 0; i1 < d[1]; i1++)
            for (size_t i2 = 0; i2 < d[2]; i2++, xr += row) {
                float *yr = y + i0 * ystride[0] + i1 * ystride[1] + i2 * ystride[2];
                if (red[3]) {
                    /* The row folds into one output value. */
                    float acc = yr[0];
                    for (size_t j = 0; j < row; j++)
                        acc = is_max ? (xr[j] > acc ? xr[j] : acc) : acc + xr[j];
                    yr[0] = acc;
                } else if (is_max) {
                    max_channels(yr, xr, (int)row);
                } else {
                    add_channels(yr, xr, (int)row);
                }
            }
    if (op == NN_OP_REDUCE_MEAN) {
        const float inv = 1.0f / (float)reduced;
        for (size_t i = 0; i < out_count; i++)
            y[i] *= inv;
    }
}

void nn_ref_softmax(const float *x, size_t rows, int cols, float *y)
{
    if (cols <= 0)
        return;
    for (size_t r = 0; r < rows; r++, x += cols, y += cols) {
        float max = x[0], sum = 0.0f;
        for (int i = 1; i < cols; i++)
            max = x[i] > max ? x[i] : max;
        for (int i = 0; i < cols; i++) {
            y[i] = expf(x[i] - max);
            sum += y[i];
        }
        const float inv = 1.0f / sum;
        for (int i = 0; i < cols; i++)
            y[i] *= inv;
    }
}

void nn_ref_l2_norm(const float *x, size_t rows, int cols, float *y)
{
    for (size_t r = 0; r < rows; r++, x += cols, y += cols) {
        double sum = 0.0;
        for (int i = 0; i < cols; i++)
            sum += (double)x[i] * x[i];
        double norm = sqrt(sum);
        const float inv = (float)(1.0 / (norm > 1e-10 ? norm : 1e-10));
        for (int i = 0; i < cols; i++)
            y[i] = x[i] * inv;
    }
}
