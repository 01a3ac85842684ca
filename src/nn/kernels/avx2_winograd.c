/*
 * avx2_winograd.c - Winograd convolution for 3x3 stride-1 layers on AVX2 +
 * FMA (Lavin and Gray, "Fast Algorithms for Convolutional Neural
 * Networks", 2015): F(4x4, 3x3) by default, F(3x3, 3x3) on small layers
 * whose output 4x4 tiles cover badly (geom_side()), F(2x2, 3x3) kept for
 * comparison (WINO_TILE).
 *
 * An m x m block of outputs needs the (m+2) x (m+2) input patch d above
 * it. With the 3x3 kernel k of one (output, input) channel pair:
 *     U = G k G^T (once at load)        V = B^T d B (per tile)
 *     Y = A^T [ sum over input channels of U .* V ] A
 * so (m+2)^2 multiplies per tile and channel pair instead of 9 m^2: 36
 * instead of 144 for F(4x4). The sum over input channels at each of the
 * (m+2)^2 positions xi is a GEMM,
 *     M_xi[tile][o] = sum_c V_xi[tile][c] * U_xi[c][o],
 * on a 6x16 register-blocked micro-kernel like avx2.c's (U_xi packed in
 * panels of 16 output channels, K = in_c).
 *
 * Work is split into tasks of task_tiles() consecutive tiles (numbered
 * over batch, tile row, tile column). A task transforms its tiles' inputs
 * into scratch V [xi][tile][c_pad]; then, one panel of 16 output channels
 * at a time (so M stays in L1), runs the GEMMs into scratch M
 * [xi][tile][16] and transforms M back with the bias, the activation and a
 * fused PReLU before the one store. Every step treats a tile on its own
 * and in a fixed order (a GEMM row's sum does not depend on the other rows
 * of its micro-tile), so no result depends on the thread count, the task
 * split or the rest of the batch.
 *
 * Rounding: F(4x4)'s transforms scale by up to 8 (points 0, +-1, +-2), so
 * its error is larger than a direct sum's but still about 1e-6 of
 * sum |x * w| on MTCNN's layers (tests/test_winograd.c bounds it);
 * F(3x3)'s (points 0, +-1, 2) scale by up to 4.
 *
 * The transforms work on 8 channels at a time in registers. The first
 * input pass runs down the patch's columns, and consecutive tiles of a
 * tile row share the two columns their patches overlap in (the same
 * inputs and operations, so the same bits as computing them again).
 */
#include "nn/kernels/avx2_winograd.h"
#include "nn/kernels/avx2_common.h"

#include <stdlib.h>
#include <string.h>

#define WINO_NR 16  /* output channels per weight panel            */
#define WINO_MR 6   /* GEMM rows (tiles) per micro-tile             */
#define WINO_MAX_A 6 /* the input patch of F(4x4, 3x3) is 6x6        */

/* Measured on this machine's MTCNN layers (docs/PERFORMANCE.md, round 4):
 * below these channel counts the transforms cost more than the GEMM saves. */
#ifndef WINO_MIN_IN_C /* overridable only to measure the rule */
#define WINO_MIN_IN_C 8
#endif
#define WINO_MIN_OUT_C 16
#ifndef WINO_TILE /* overridable only to measure F(2x2) against F(4x4) */
#define WINO_TILE 4
#endif

struct nn_wino_weights {
    int m;      /* the layer's output tile side: 2 or 4 */
    int in_c, out_c, panels;
    float *u;   /* [(m+2)^2][panels][in_c][WINO_NR], zero past out_c */
    float *u3;  /* the same for F(3x3, 3x3) when f3_fits(), else NULL */
};

/* F(3x3, 3x3) is kept for the outputs that F(4x4) tiles badly (R-Net's
 * 9x9: 3x3 tiles of 4 compute 12x12, 3x3 tiles of 3 exactly 9x9) on
 * layers small enough that a second set of transformed weights (25/9 of
 * the plain ones) costs little: at most 48 x 48 channels, which holds
 * R-Net's and P-Net's layers but not dlib's 64 x 64 ones (about 3 MB of
 * weights that its 150x150 chips, tiled best by 4x4, would never read). */
#define WINO_F3_MAX_WEIGHTS 2304
static int f3_fits(int in_c, int out_c)
{
    return WINO_TILE == 4 && (long)in_c * out_c <= WINO_F3_MAX_WEIGHTS;
}

/* The output tile side for a layer of this shape, 0 for none. */
static int tile_side(int kernel_h, int kernel_w, int in_c, int out_c)
{
    if (!HAVE_AVX2 || kernel_h != 3 || kernel_w != 3 || in_c < WINO_MIN_IN_C ||
        out_c < WINO_MIN_OUT_C)
        return 0;
    return WINO_TILE;
}

int nn_wino_layer_fits(int kernel_h, int kernel_w, int in_c, int out_c)
{
    return tile_side(kernel_h, kernel_w, in_c, out_c) != 0;
}

/* The transformed weights are (m+2)^2 / 9 = 4x the size of the plain
 * ones, and every call streams all of them. On a small image the output
 * has few tiles to spread that over (dlib's ResNet at 150x150: 9 tiles of
 * 128 x 128 channels, 4 of 256 x 256), and the GEMM, which reads the
 * weights once for the few rows, wins. The rule counts one image's tiles,
 * never the batch's, so that a face's result does not depend on the batch
 * it came in (measured: docs/PERFORMANCE.md, round 4). */
#ifndef WINO_WEIGHTS_PER_TILE
#define WINO_WEIGHTS_PER_TILE 1024
#endif

int nn_wino_conv_applies(const nn_conv_geom *g)
{
    const long tiles = (long)((g->out_h + WINO_TILE - 1) / WINO_TILE) *
                       (long)((g->out_w + WINO_TILE - 1) / WINO_TILE);
    return nn_wino_layer_fits(g->kernel_h, g->kernel_w, g->in_c, g->out_c) && g->stride_h == 1 &&
           g->stride_w == 1 && tiles * WINO_WEIGHTS_PER_TILE >= (long)g->in_c * g->out_c;
}

void nn_wino_release(nn_wino_weights *w)
{
    if (!w)
        return;
    free(w->u);
    free(w->u3);
    free(w);
}

/* The kernel transforms G ((m+2) x 3): rows are the interpolation points
 * 0, 1, -1 (F(2x2)), 0, 1, -1, 2 (F(3x3)) and 0, 1, -1, 2, -2 (F(4x4)),
 * then infinity. */
static const double g_f2[4][3] = {{1, 0, 0}, {0.5, 0.5, 0.5}, {0.5, -0.5, 0.5}, {0, 0, 1}};
static const double g_f3[5][3] = {{1.0 / 2, 0, 0},
                                  {-1.0 / 2, -1.0 / 2, -1.0 / 2},
                                  {-1.0 / 6, 1.0 / 6, -1.0 / 6},
                                  {1.0 / 6, 1.0 / 3, 2.0 / 3},
                                  {0, 0, 1}};
static const double g_f4[6][3] = {{1.0 / 4, 0, 0},
                                  {-1.0 / 6, -1.0 / 6, -1.0 / 6},
                                  {-1.0 / 6, 1.0 / 6, -1.0 / 6},
                                  {1.0 / 24, 1.0 / 12, 1.0 / 6},
                                  {1.0 / 24, -1.0 / 12, 1.0 / 6},
                                  {0, 0, 1}};

/* U = G k G^T of one 3x3 kernel, in double so the only rounding is the
 * final one. */
static void transform_kernel(int a, const double k[3][3], double u[WINO_MAX_A][WINO_MAX_A])
{
    const double(*gm)[3] = a == 4 ? g_f2 : a == 5 ? g_f3 : g_f4;
    double t[WINO_MAX_A][3]; /* G k */
    for (int i = 0; i < a; i++)
        for (int j = 0; j < 3; j++)
            t[i][j] = gm[i][0] * k[0][j] + gm[i][1] * k[1][j] + gm[i][2] * k[2][j];
    for (int i = 0; i < a; i++)
        for (int j = 0; j < a; j++)
            u[i][j] = t[i][0] * gm[j][0] + t[i][1] * gm[j][1] + t[i][2] * gm[j][2];
}

/* U for tile side m: [(m+2)^2][panels][in_c][WINO_NR], zero past out_c;
 * NULL when out of memory. */
static float *transform_weights(const float *w_ohwi, int out_c, int in_c, int panels, int m)
{
    const int a = m + 2;
    const size_t per_pos = (size_t)panels * in_c * WINO_NR;
    const size_t bytes = round_up((size_t)a * a * per_pos * sizeof(float), 64);
    float *u = aligned_alloc(64, bytes);
    if (!u)
        return NULL;
    memset(u, 0, bytes);
    for (int o = 0; o < out_c; o++)
        for (int c = 0; c < in_c; c++) {
            double k[3][3], t[WINO_MAX_A][WINO_MAX_A];
            for (int ky = 0; ky < 3; ky++)
                for (int kx = 0; kx < 3; kx++)
                    k[ky][kx] = w_ohwi[(((size_t)o * 3 + ky) * 3 + kx) * in_c + c];
            transform_kernel(a, k, t);
            float *dst = u + ((size_t)(o / WINO_NR) * in_c + c) * WINO_NR + o % WINO_NR;
            for (int xi = 0; xi < a * a; xi++)
                dst[xi * per_pos] = (float)t[xi / a][xi % a];
        }
    return u;
}

nn_wino_weights *nn_wino_prepare(const float *w_ohwi, int out_c, int in_c)
{
    const int m = tile_side(3, 3, in_c, out_c);
    if (!m)
        return NULL;
    nn_wino_weights *w = calloc(1, sizeof *w);
    if (!w)
        return NULL;
    w->m = m;
    w->in_c = in_c;
    w->out_c = out_c;
    w->panels = (out_c + WINO_NR - 1) / WINO_NR;
    w->u = transform_weights(w_ohwi, out_c, in_c, w->panels, m);
    if (w->u && f3_fits(in_c, out_c))
        w->u3 = transform_weights(w_ohwi, out_c, in_c, w->panels, 3);
    if (!w->u || (f3_fits(in_c, out_c) && !w->u3)) {
        nn_wino_release(w);
        return NULL;
    }
    return w;
}

static long tiles_of(int out_h, int out_w, int m)
{
    return (long)((out_h + m - 1) / m) * ((out_w + m - 1) / m);
}

/* The tile side for this geometry: the layer's (F(4x4)), or F(3x3) when
 * the layer has its weights and its tiles need at least 1/8 fewer
 * multiplies for one image (transforms cost a little more per output with
 * the smaller tile). The shape and one image's size decide, never the
 * batch. */
static int geom_side(const nn_conv_geom *g)
{
    const int m = tile_side(g->kernel_h, g->kernel_w, g->in_c, g->out_c);
    if (m != 4 || !f3_fits(g->in_c, g->out_c))
        return m;
    const long f3 = tiles_of(g->out_h, g->out_w, 3) * 25, f4 = tiles_of(g->out_h, g->out_w, 4) * 36;
    return 8 * f3 < 7 * f4 ? 3 : 4;
}
int nn_wino_tile_side(const nn_conv_geom *g)
{
    return nn_wino_conv_applies(g) ? geom_side(g) : 0;
}

/* Tiles per task: about 100 outputs whatever the tile size (96 for F(2x2)
 * and F(4x4), 108 for F(3x3)), so V and M of
 * one panel stay in L1/L2. */
static int task_tiles(int m) { return m == 2 ? 24 : 12; }
static size_t c_pad(const nn_conv_geom *g) { return round_up((size_t)g->in_c, 8); }

/* Per thread: V [(m+2)^2][tiles][c_pad] and M [(m+2)^2][tiles][WINO_NR]
 * of one task. */
static size_t task_scratch_floats(const nn_conv_geom *g)
{
    const int m = geom_side(g);
    const size_t pos = (size_t)(m + 2) * (m + 2);
    return round_up(pos * task_tiles(m) * (c_pad(g) + WINO_NR), 16);
}

size_t nn_wino_scratch_floats(const nn_conv_geom *g, int threads)
{
    return geom_side(g) ? (size_t)threads * task_scratch_floats(g) : 0;
}

#if HAVE_AVX2

typedef struct wino_job {
    const nn_conv_geom *g;
    const nn_wino_weights *w;
    const float *x, *bias, *alpha;
    float *y, *scratch;
    size_t scratch_per_thread;
    int m;                /* the tile side for this geometry */
    int tiles_w, tiles_h; /* per image */
    int tiles;            /* over the whole batch */
} wino_job;

/* Where tile t's output block and input patch start, and which of the
 * patch's rows and columns lie inside the image (bit i set: row / column i
 * is inside). */
typedef struct tile_pos {
    int b, oy, ox;
    int iy0, ix0; /* the patch's top left corner in the input (may be < 0) */
    unsigned rows_in, cols_in;
    int interior; /* every row and column of the patch inside */
} tile_pos;

static tile_pos locate_tile(const wino_job *j, int t)
{
    const nn_conv_geom *g = j->g;
    const int m = j->m, per_image = j->tiles_h * j->tiles_w;
    tile_pos p;
    p.b = t / per_image;
    p.oy = t % per_image / j->tiles_w * m;
    p.ox = t % j->tiles_w * m;
    p.iy0 = p.oy - g->pad_top;
    p.ix0 = p.ox - g->pad_left;
    p.rows_in = p.cols_in = 0;
    for (int i = 0; i < m + 2; i++) {
        const int iy = p.iy0 + i, ix = p.ix0 + i;
        p.rows_in |= (unsigned)(iy >= 0 && iy < g->in_h) << i;
        p.cols_in |= (unsigned)(ix >= 0 && ix < g->in_w) << i;
    }
    const unsigned all = (1u << (m + 2)) - 1;
    p.interior = p.rows_in == all && p.cols_in == all;
    return p;
}

/* 1 if tile q's patch starts m columns right of tile p's in the same
 * image and tile row: then q's first two patch columns are p's last two. */
static int tile_follows(const tile_pos *p, const tile_pos *q, int m)
{
    return q->b == p->b && q->oy == p->oy && q->ox == p->ox + m;
}

/* One dimension of B^T d. F(2x2): B^T = [1 0 -1 0; 0 1 1 0; 0 -1 1 0;
 * 0 1 0 -1]. F(3x3): B^T = [2 -1 -2 1 0; 0 -2 -1 1 0; 0 2 -3 1 0;
 * 0 -1 0 1 0; 0 2 -1 -2 1]. F(4x4): B^T = [4 0 -5 0 1 0; 0 -4 -4 1 1 0; 0 4 -4 -1 1 0;
 * 0 -2 -1 2 1 0; 0 2 -1 -2 1 0; 0 4 0 -5 0 1]. */
AVX2_TARGET static inline __attribute__((always_inline)) void
input_1d(const int m, const __m256 *d, __m256 *t)
{
    if (m == 2) {
        t[0] = _mm256_sub_ps(d[0], d[2]);
        t[1] = _mm256_add_ps(d[1], d[2]);
        t[2] = _mm256_sub_ps(d[2], d[1]);
        t[3] = _mm256_sub_ps(d[1], d[3]);
        return;
    }
    if (m == 3) {
        const __m256 e = _mm256_sub_ps(d[3], d[2]);                        /* d3 - d2 */
        const __m256 f = _mm256_sub_ps(d[3], d[1]);                        /* d3 - d1 */
        const __m256 dif02 = _mm256_sub_ps(d[0], d[2]), dif12 = _mm256_sub_ps(d[1], d[2]);
        t[0] = _mm256_add_ps(_mm256_add_ps(dif02, dif02), f);
        t[1] = _mm256_sub_ps(e, _mm256_add_ps(d[1], d[1]));
        t[2] = _mm256_add_ps(e, _mm256_add_ps(dif12, dif12));
        t[3] = f;
        t[4] = _mm256_sub_ps(_mm256_sub_ps(d[4], d[2]), _mm256_add_ps(f, f));
        return;
    }
    const __m256 two = _mm256_set1_ps(2.0f), four = _mm256_set1_ps(4.0f);
    const __m256 five = _mm256_set1_ps(5.0f);
    const __m256 p = _mm256_fnmadd_ps(four, d[2], d[4]);  /* d4 - 4 d2 */
    const __m256 q = _mm256_fnmadd_ps(four, d[1], d[3]);  /* d3 - 4 d1 */
    const __m256 r = _mm256_sub_ps(d[4], d[2]);           /* d4 - d2   */
    const __m256 s = _mm256_mul_ps(two, _mm256_sub_ps(d[3], d[1])); /* 2 (d3 - d1) */
    t[0] = _mm256_fmadd_ps(four, d[0], _mm256_fnmadd_ps(five, d[2], d[4]));
    t[1] = _mm256_add_ps(p, q);
    t[2] = _mm256_sub_ps(p, q);
    t[3] = _mm256_add_ps(r, s);
    t[4] = _mm256_sub_ps(r, s);
    t[5] = _mm256_fmadd_ps(four, d[1], _mm256_fnmadd_ps(five, d[3], d[5]));
}

/* The input of one group of 8 channels, its geometry copied into locals:
 * a store through an __m256 may alias anything, so fields read through
 * the job's pointers would be reloaded after every store. */
typedef struct input_slice {
    __m256i mask;       /* lanes [0, valid) */
    const float *image; /* the tile's image at channel c0 */
    size_t row_stride;  /* in_w * in_c floats */
    size_t col_stride;  /* in_c floats */
    int valid;          /* channels of the 8 that exist */
} input_slice;

/* Column k of B^T d for one tile's patch d: the 1-D transform down the
 * column, rows and columns outside the image read as zero. `interior` is
 * a constant once inlined: an interior patch of 8 whole channels needs
 * no test and no mask. */
AVX2_TARGET static inline __attribute__((always_inline)) void
input_column(const int m, const int interior, const input_slice *s, const tile_pos *p, int k,
             __m256 *col)
{
    const int a = m + 2;
    __m256 d[WINO_MAX_A];
    if (!interior && !((p->cols_in >> k) & 1u)) {
        for (int i = 0; i < a; i++)
            d[i] = _mm256_setzero_ps();
    } else {
        const float *src = s->image + (size_t)(p->ix0 + k) * s->col_stride;
        for (int i = 0; i < a; i++) {
            if (!interior && !((p->rows_in >> i) & 1u)) {
                d[i] = _mm256_setzero_ps();
                continue;
            }
            const float *at = src + (size_t)(p->iy0 + i) * s->row_stride;
            d[i] = interior ? _mm256_loadu_ps(at) : _mm256_maskload_ps(at, s->mask);
        }
    }
    input_1d(m, d, col);
}

/* V = B^T d B for one tile and 8 channels; position xi goes to v + xi *
 * pos_stride (lanes past the valid channels are zero). The first pass
 * runs down the patch's columns; when `shared` the first two columns are
 * the previous tile's last two (`carry`, left there by that tile's call:
 * the same inputs and operations, so the same bits), and this call
 * leaves its own last two in `carry` for the next tile. */
AVX2_TARGET static inline __attribute__((always_inline)) void
input_transform(const int m, const int interior, const input_slice *s, const tile_pos *p,
                int shared, __m256 carry[2][WINO_MAX_A], float *v, size_t pos_stride)
{
    const int a = m + 2;
    __m256 t[WINO_MAX_A][WINO_MAX_A]; /* B^T d, t[row][column] */
    for (int k = 0; k < a; k++) {
        __m256 col[WINO_MAX_A];
        if (shared && k < 2) {
            for (int i = 0; i < a; i++)
                col[i] = carry[k][i];
        } else {
            input_column(m, interior, s, p, k, col);
        }
        for (int i = 0; i < a; i++)
            t[i][k] = col[i];
    }
    for (int i = 0; i < a; i++) {
        carry[0][i] = t[i][a - 2];
        carry[1][i] = t[i][a - 1];
    }
    for (int i = 0; i < a; i++) {
        __m256 row[WINO_MAX_A];
        input_1d(m, t[i], row);
        for (int k = 0; k < a; k++)
            _mm256_storeu_ps(v + (size_t)(i * a + k) * pos_stride, row[k]);
    }
}

/* The inputs of a task's tiles into V [xi][tile][c_pad], 8 channels at a
 * time, a tile row's neighbours sharing their overlapping columns. */
AVX2_TARGET static inline __attribute__((always_inline)) void
input_tiles(const int m, const wino_job *j, const tile_pos *where, int count, float *v,
            size_t tile_stride, size_t pos_stride)
{
    const nn_conv_geom *g = j->g;
    const int in_c = g->in_c;
    const size_t image_floats = (size_t)g->in_h * g->in_w * in_c;
    __m256 carry[2][WINO_MAX_A];
    for (int c0 = 0; c0 < in_c; c0 += 8) {
        input_slice s;
        s.row_stride = (size_t)g->in_w * in_c;
        s.col_stride = (size_t)in_c;
        s.valid = min_int(8, in_c - c0);
        s.mask = lane_mask(s.valid);
        for (int t = 0; t < count; t++) {
            const tile_pos *p = &where[t];
            const int shared = t > 0 && tile_follows(&where[t - 1], p, m);
            float *dst = v + (size_t)t * tile_stride + c0;
            s.image = j->x + (size_t)p->b * image_floats + c0;
            if (p->interior && s.valid >= 8)
                input_transform(m, 1, &s, p, shared, carry, dst, pos_stride);
            else
                input_transform(m, 0, &s, p, shared, carry, dst, pos_stride);
        }
    }
}

/* C[R][16] = A[R][K] * B[K][16], A with row stride lda, C with ldc. Named
 * accumulators for the same reason as avx2.c's micro_tile (gcc keeps an
 * array of them in memory); rows >= R vanish once R is a constant. */
AVX2_TARGET static inline __attribute__((always_inline)) void
wino_micro_tile(const int R, int k_dim, const float *a, size_t lda, const float *b, float *c,
                size_t ldc)
{
    __m256 c00, c01, c10, c11, c20, c21, c30, c31, c40, c41, c50, c51;
    c00 = c01 = c10 = c11 = c20 = c21 = c30 = c31 = c40 = c41 = c50 = c51 = _mm256_setzero_ps();
#define WROWS(X) X(0, c00, c01) X(1, c10, c11) X(2, c20, c21) X(3, c30, c31) X(4, c40, c41) X(5, c50, c51)
#define WFMA(r, v0, v1)                                                                    \
    if (R > (r)) {                                                                            \
        const __m256 av = _mm256_broadcast_ss(a + (size_t)(r) * lda + k);                     \
        (v0) = _mm256_fmadd_ps(av, b0, v0);                                                   \
        (v1) = _mm256_fmadd_ps(av, b1, v1);                                                   \
    }
#define WSTORE(r, v0, v1)                                                                  \
    if (R > (r)) {                                                                            \
        _mm256_storeu_ps(c + (size_t)(r) * ldc, v0);                                          \
        _mm256_storeu_ps(c + (size_t)(r) * ldc + 8, v1);                                      \
    }
    for (int k = 0; k < k_dim; k++, b += WINO_NR) {
        const __m256 b0 = _mm256_load_ps(b), b1 = _mm256_load_ps(b + 8);
        WROWS(WFMA)
    }
    WROWS(WSTORE)
#undef WROWS
#undef WFMA
#undef WSTORE
}

AVX2_TARGET static void wino_micro(int rows, int k_dim, const float *a, size_t lda,
                                   const float *b, float *c, size_t ldc)
{
    switch (rows) {
    case 6: wino_micro_tile(6, k_dim, a, lda, b, c, ldc); break;
    case 5: wino_micro_tile(5, k_dim, a, lda, b, c, ldc); break;
    case 4: wino_micro_tile(4, k_dim, a, lda, b, c, ldc); break;
    case 3: wino_micro_tile(3, k_dim, a, lda, b, c, ldc); break;
    case 2: wino_micro_tile(2, k_dim, a, lda, b, c, ldc); break;
    default: wino_micro_tile(1, k_dim, a, lda, b, c, ldc); break;
    }
}

/* One dimension of A^T s. F(2x2): A^T = [1 1 1 0; 0 1 -1 -1]. F(3x3):
 * A^T = [1 1 1 1 0; 0 1 -1 2 0; 0 1 1 4 1]. F(4x4):
 * A^T = [1 1 1 1 1 0; 0 1 -1 2 -2 0; 0 1 1 4 4 0; 0 1 -1 8 -8 1]. */
AVX2_TARGET static inline __attribute__((always_inline)) void
output_1d(const int m, const __m256 *s, __m256 *y)
{
    if (m == 2) {
        y[0] = _mm256_add_ps(_mm256_add_ps(s[0], s[1]), s[2]);
        y[1] = _mm256_sub_ps(_mm256_sub_ps(s[1], s[2]), s[3]);
        return;
    }
    if (m == 3) {
        const __m256 sum12 = _mm256_add_ps(s[1], s[2]), dif12 = _mm256_sub_ps(s[1], s[2]);
        y[0] = _mm256_add_ps(_mm256_add_ps(s[0], sum12), s[3]);
        y[1] = _mm256_fmadd_ps(_mm256_set1_ps(2.0f), s[3], dif12);
        y[2] = _mm256_add_ps(_mm256_fmadd_ps(_mm256_set1_ps(4.0f), s[3], sum12), s[4]);
        return;
    }
    const __m256 sum12 = _mm256_add_ps(s[1], s[2]), dif12 = _mm256_sub_ps(s[1], s[2]);
    const __m256 sum34 = _mm256_add_ps(s[3], s[4]), dif34 = _mm256_sub_ps(s[3], s[4]);
    y[0] = _mm256_add_ps(_mm256_add_ps(s[0], sum12), sum34);
    y[1] = _mm256_fmadd_ps(_mm256_set1_ps(2.0f), dif34, dif12);
    y[2] = _mm256_fmadd_ps(_mm256_set1_ps(4.0f), sum34, sum12);
    y[3] = _mm256_add_ps(_mm256_fmadd_ps(_mm256_set1_ps(8.0f), dif34, dif12), s[5]);
}

/* The activation and PReLU of finish() (avx2_common.h) with the slopes
 * already in a register: the same operations, so the same bits. */
AVX2_TARGET static inline __attribute__((always_inline)) __m256
epilogue(__m256 v, nn_activation act, int prelu, __m256 alpha)
{
    const __m256 zero = _mm256_setzero_ps();
    if (act != NN_ACT_NONE) {
        v = _mm256_max_ps(v, zero);
        if (act == NN_ACT_RELU6)
            v = _mm256_min_ps(v, _mm256_set1_ps(6.0f));
    }
    if (prelu)
        v = _mm256_fmadd_ps(alpha, _mm256_min_ps(v, zero), _mm256_max_ps(v, zero));
    return v;
}

/* The output of one group of 8 channels, in locals for the same reason
 * as input_slice. */
typedef struct output_slice {
    __m256i mask;       /* lanes [0, valid) */
    __m256 bias, alpha;
    float *image;       /* the output image of the tile's batch entry, channel o0 */
    size_t row_stride;  /* out_w * out_c floats */
    size_t col_stride;  /* out_c floats */
    int out_h, out_w;
    int valid;          /* channels of the 8 that exist */
    nn_activation act;
    int prelu;
} output_slice;

/* Y = A^T M A for 8 output channels of one tile (M at mt, position xi at
 * mt + xi * pos_stride), plus the bias, then the activation and PReLU;
 * stores the outputs that lie inside the image. `whole` (a constant once
 * inlined): the tile's m x m outputs all lie inside and all 8 channels
 * exist. */
AVX2_TARGET static inline __attribute__((always_inline)) void
output_transform(const int m, const int whole, const output_slice *o, const tile_pos *p,
                 const float *mt, size_t pos_stride)
{
    const int a = m + 2;
    __m256 s[4][WINO_MAX_A]; /* A^T M: s[output row][column] */
    for (int k = 0; k < a; k++) {
        __m256 col[WINO_MAX_A], y[4];
        for (int i = 0; i < a; i++)
            col[i] = _mm256_loadu_ps(mt + (size_t)(i * a + k) * pos_stride);
        output_1d(m, col, y);
        for (int r = 0; r < m; r++)
            s[r][k] = y[r];
    }
    const int rows = whole ? m : min_int(m, o->out_h - p->oy);
    const int cols = whole ? m : min_int(m, o->out_w - p->ox);
    float *dst = o->image + (size_t)p->oy * o->row_stride + (size_t)p->ox * o->col_stride;
    for (int r = 0; r < rows; r++, dst += o->row_stride) {
        __m256 y[4];
        output_1d(m, s[r], y);
        for (int c = 0; c < cols; c++) {
            const __m256 out = epilogue(_mm256_add_ps(y[c], o->bias), o->act, o->prelu, o->alpha);
            if (whole)
                _mm256_storeu_ps(dst + (size_t)c * o->col_stride, out);
            else
                _mm256_maskstore_ps(dst + (size_t)c * o->col_stride, o->mask, out);
        }
    }
}

/* M of one panel of 16 output channels back to the output, tile by tile. */
AVX2_TARGET static inline __attribute__((always_inline)) void
output_tiles(const int m, const wino_job *j, const tile_pos *where, int count, int pn,
             const float *mbuf, size_t pos_stride)
{
    const nn_conv_geom *g = j->g;
    const size_t image_floats = (size_t)g->out_h * g->out_w * g->out_c;
    for (int o0 = pn * WINO_NR; o0 < g->out_c && o0 < (pn + 1) * WINO_NR; o0 += 8) {
        output_slice o;
        o.row_stride = (size_t)g->out_w * g->out_c;
        o.col_stride = (size_t)g->out_c;
        o.out_h = g->out_h;
        o.out_w = g->out_w;
        o.valid = min_int(8, g->out_c - o0);
        o.mask = lane_mask(o.valid);
        o.bias = _mm256_loadu_ps(j->bias + o0);
        o.prelu = j->alpha != NULL;
        o.alpha = o.prelu ? _mm256_loadu_ps(j->alpha + o0) : _mm256_setzero_ps();
        o.act = g->act;
        const float *mt = mbuf + (o0 - pn * WINO_NR);
        for (int t = 0; t < count; t++, mt += WINO_NR) {
            const tile_pos *p = &where[t];
            o.image = j->y + (size_t)p->b * image_floats + o0;
            if (o.valid >= 8 && p->oy + m <= o.out_h && p->ox + m <= o.out_w)
                output_transform(m, 1, &o, p, mt, pos_stride);
            else
                output_transform(m, 0, &o, p, mt, pos_stride);
        }
    }
}

/* The tiles [t0, t0 + count): inputs into V, then per panel of 16 output
 * channels the (m+2)^2 GEMMs into M and M back to the output. */
AVX2_TARGET static inline __attribute__((always_inline)) void
wino_tiles(const int m, const wino_job *j, int t0, int count, float *v)
{
    const nn_wino_weights *w = j->w;
    const int a = m + 2, pos = a * a;
    const size_t cp = c_pad(j->g);
    const size_t v_pos = (size_t)task_tiles(m) * cp, m_pos = (size_t)task_tiles(m) * WINO_NR;
    float *mbuf = v + (size_t)pos * v_pos;
    tile_pos where[24];

    for (int t = 0; t < count; t++)
        where[t] = locate_tile(j, t0 + t);
    input_tiles(m, j, where, count, v, cp, v_pos);
    const size_t u_pos = (size_t)w->panels * w->in_c * WINO_NR;
    for (int pn = 0; pn < w->panels; pn++) {
        for (int xi = 0; xi < pos; xi++) {
            const float *b = (m == 3 ? w->u3 : w->u) + xi * u_pos + (size_t)pn * w->in_c * WINO_NR;
            for (int t = 0; t < count; t += WINO_MR)
                wino_micro(min_int(WINO_MR, count - t), w->in_c, v + xi * v_pos + (size_t)t * cp,
                           cp, b, mbuf + xi * m_pos + (size_t)t * WINO_NR, WINO_NR);
        }
        output_tiles(m, j, where, count, pn, mbuf, m_pos);
    }
}

AVX2_TARGET static void wino_task(void *ctx, int task, int thread)
{
    const wino_job *j = ctx;
    const int m = j->m, per_task = task_tiles(m);
    const int t0 = task * per_task, count = min_int(per_task, j->tiles - t0);
    float *v = j->scratch + (size_t)thread * j->scratch_per_thread;
    if (m == 2)
        wino_tiles(2, j, t0, count, v);
    else if (m == 3)
        wino_tiles(3, j, t0, count, v);
    else
        wino_tiles(4, j, t0, count, v);
}

void nn_wino_conv2d(const nn_conv_geom *g, const float *x, const nn_wino_weights *w,
                 const float *bias, const float *alpha, float *scratch, float *y, nn_pool *pool)
{
    wino_job j = {g, w, x, bias, alpha, y, scratch, task_scratch_floats(g), geom_side(g), 0, 0, 0};
    if (j.m == 0 || (j.m == 3 && !w->u3))
        return; /* not a geometry nn_wino_conv_applies() to: the caller's bug */
    j.tiles_h = (g->out_h + j.m - 1) / j.m;
    j.tiles_w = (g->out_w + j.m - 1) / j.m;
    j.tiles = g->n * j.tiles_h * j.tiles_w;
    pool = pool_for(pool, (double)g->n * g->out_h * g->out_w * 9.0 * g->in_c * g->out_c / 4.0);
    const int per_task = task_tiles(j.m);
    nn_pool_run(pool, (j.tiles + per_task - 1) / per_task, wino_task, &j);
}

#else /* !HAVE_AVX2: never chosen (nn_wino_layer_fits is 0) */

void nn_wino_conv2d(const nn_conv_geom *g, const float *x, const nn_wino_weights *w,
                 const float *bias, const float *alpha, float *scratch, float *y, nn_pool *pool)
{
    (void)g; (void)x; (void)w; (void)bias; (void)alpha; (void)scratch; (void)y; (void)pool;
}

#endif
