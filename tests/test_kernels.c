/*
 * Tests of the reference kernels (src/nn/kernels/ref.c).
 *
 * Every kernel is compared with a naive implementation written here, as
 * plainly as possible (explicit zero-padded copies, one output element at a
 * time, double accumulators), on seeded random inputs over many geometries.
 * A few tiny hand-computed cases check the naive references themselves.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nn/kernels/ref.h"

/* ---- helpers ----------------------------------------------------------- */

#define RTOL 1e-5
#define GUARD 16 /* sentinel floats after every output buffer */
#define SENTINEL 12345.678f

static uint32_t rng_state;

static void rng_seed(uint32_t seed) { rng_state = seed ? seed : 1u; }

/* xorshift32: deterministic across platforms, unlike rand(). */
static float rng_uniform(float lo, float hi)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 17;
    rng_state ^= rng_state << 5;
    return lo + (hi - lo) * (float)(rng_state >> 8) / (float)(1u << 24);
}

static float *random_floats(size_t n, float lo, float hi)
{
    float *p = malloc((n ? n : 1) * sizeof *p);
    assert_non_null(p);
    for (size_t i = 0; i < n; i++)
        p[i] = rng_uniform(lo, hi);
    return p;
}

/* An output buffer of n floats followed by GUARD sentinels. */
static float *output_buffer(size_t n)
{
    float *p = malloc((n + GUARD) * sizeof *p);
    assert_non_null(p);
    for (size_t i = 0; i < n + GUARD; i++)
        p[i] = SENTINEL;
    return p;
}

static double *double_buffer(size_t n)
{
    double *p = calloc(n ? n : 1, sizeof *p);
    assert_non_null(p);
    return p;
}

/* Fails unless got[i] is within RTOL of ref[i], relative to the largest
 * reference magnitude (at least 1), and the guard after got is intact. */
static void check_close(const char *what, const float *got, const double *ref,
                        size_t n)
{
    double scale = 1.0;
    for (size_t i = 0; i < n; i++)
        if (fabs(ref[i]) > scale)
            scale = fabs(ref[i]);
    for (size_t i = 0; i < n; i++) {
        double diff = fabs((double)got[i] - ref[i]);
        if (!(diff <= RTOL * scale)) {
            print_error("%s: element %zu: got %.9g, want %.9g (scale %g)\n",
                        what, i, (double)got[i], ref[i], scale);
            fail();
        }
    }
    for (size_t i = n; i < n + GUARD; i++) {
        if (got[i] != SENTINEL) {
            print_error("%s: wrote past the end of the output (float %zu)\n",
                        what, i);
            fail();
        }
    }
}

static double activate_ref(nn_activation act, double v)
{
    if (act == NN_ACT_RELU)
        return v > 0 ? v : 0;
    if (act == NN_ACT_RELU6)
        return v < 0 ? 0 : v > 6 ? 6 : v;
    return v;
}

static const char *act_name(nn_activation act)
{
    return act == NN_ACT_RELU ? "relu" : act == NN_ACT_RELU6 ? "relu6" : "none";
}

/* TF padding, computed here independently of graph.c. */
static void tf_padding(int same, int in, int k, int stride, int *out,
                       int *before, int *after)
{
    if (!same) {
        *out = (in - k) / stride + 1;
        *before = *after = 0;
        return;
    }
    *out = (in + stride - 1) / stride;
    int total = (*out - 1) * stride + k - in;
    if (total < 0)
        total = 0;
    *before = total / 2;
    *after = total - *before;
}

typedef struct geometry {
    nn_conv_geom g;
    int pad_bottom, pad_right;
} geometry;

static geometry make_geometry(int n, int h, int w, int in_c, int out_c, int k,
                              int stride, int same, nn_activation act)
{
    geometry r;
    memset(&r, 0, sizeof r);
    r.g.n = n;
    r.g.in_h = h;
    r.g.in_w = w;
    r.g.in_c = in_c;
    r.g.out_c = out_c;
    r.g.kernel_h = r.g.kernel_w = k;
    r.g.stride_h = r.g.stride_w = stride;
    r.g.act = act;
    tf_padding(same, h, k, stride, &r.g.out_h, &r.g.pad_top, &r.pad_bottom);
    tf_padding(same, w, k, stride, &r.g.out_w, &r.g.pad_left, &r.pad_right);
    return r;
}

static void describe(char *buf, size_t size, const char *kind, const geometry *r)
{
    const nn_conv_geom *g = &r->g;
    (void)snprintf(buf, size,
             "%s n%d %dx%dx%d -> %dx%dx%d k%dx%d s%d pad t%d l%d b%d r%d %s",
             kind, g->n, g->in_h, g->in_w, g->in_c, g->out_h, g->out_w,
             g->out_c, g->kernel_h, g->kernel_w, g->stride_h, g->pad_top,
             g->pad_left, r->pad_bottom, r->pad_right, act_name(g->act));
}

/* The input copied into a zero-filled tensor with the padding made
 * explicit on all four sides, so the naive loops need no bounds checks. */
static double *zero_padded(const geometry *r, const float *x, int *ph, int *pw)
{
    const nn_conv_geom *g = &r->g;
    *ph = g->pad_top + g->in_h + r->pad_bottom;
    *pw = g->pad_left + g->in_w + r->pad_right;
    double *p = double_buffer((size_t)g->n * *ph * *pw * g->in_c);
    for (int b = 0; b < g->n; b++)
        for (int y = 0; y < g->in_h; y++)
            for (int x0 = 0; x0 < g->in_w; x0++)
                for (int c = 0; c < g->in_c; c++)
                    p[(((size_t)b * *ph + y + g->pad_top) * *pw + x0 + g->pad_left) * g->in_c + c] =
                        x[(((size_t)b * g->in_h + y) * g->in_w + x0) * g->in_c + c];
    return p;
}

static size_t out_count(const nn_conv_geom *g)
{
    return (size_t)g->n * g->out_h * g->out_w * g->out_c;
}

/* ---- naive references -------------------------------------------------- */

/* Direct 7-loop convolution on the explicitly padded input, OHWI weights. */
static double *naive_conv2d(const geometry *r, const float *x, const float *w,
                            const float *bias)
{
    const nn_conv_geom *g = &r->g;
    int ph, pw;
    double *xp = zero_padded(r, x, &ph, &pw);
    double *y = double_buffer(out_count(g));

    for (int b = 0; b < g->n; b++)
        for (int oy = 0; oy < g->out_h; oy++)
            for (int ox = 0; ox < g->out_w; ox++)
                for (int o = 0; o < g->out_c; o++) {
                    double s = bias ? bias[o] : 0.0;
                    for (int ky = 0; ky < g->kernel_h; ky++)
                        for (int kx = 0; kx < g->kernel_w; kx++)
                            for (int i = 0; i < g->in_c; i++)
                                s += xp[(((size_t)b * ph + oy * g->stride_h + ky) * pw +
                                         ox * g->stride_w + kx) * g->in_c + i] *
                                     w[(((size_t)o * g->kernel_h + ky) * g->kernel_w + kx) * g->in_c + i];
                    y[(((size_t)b * g->out_h + oy) * g->out_w + ox) * g->out_c + o] =
                        activate_ref(g->act, s);
                }
    free(xp);
    return y;
}

static double *naive_depthwise(const geometry *r, const float *x,
                               const float *w, const float *bias)
{
    const nn_conv_geom *g = &r->g;
    int ph, pw;
    double *xp = zero_padded(r, x, &ph, &pw);
    double *y = double_buffer(out_count(g));

    for (int b = 0; b < g->n; b++)
        for (int oy = 0; oy < g->out_h; oy++)
            for (int ox = 0; ox < g->out_w; ox++)
                for (int c = 0; c < g->in_c; c++) {
                    double s = bias ? bias[c] : 0.0;
                    for (int ky = 0; ky < g->kernel_h; ky++)
                        for (int kx = 0; kx < g->kernel_w; kx++)
                            s += xp[(((size_t)b * ph + oy * g->stride_h + ky) * pw +
                                     ox * g->stride_w + kx) * g->in_c + c] *
                                 w[((size_t)ky * g->kernel_w + kx) * g->in_c + c];
                    y[(((size_t)b * g->out_h + oy) * g->out_w + ox) * g->in_c + c] =
                        activate_ref(g->act, s);
                }
    free(xp);
    return y;
}

/* Pooling with an explicit in-bounds test per tap. */
static double *naive_pool(const geometry *r, const float *x, int is_max)
{
    const nn_conv_geom *g = &r->g;
    double *y = double_buffer(out_count(g));

    for (int b = 0; b < g->n; b++)
        for (int oy = 0; oy < g->out_h; oy++)
            for (int ox = 0; ox < g->out_w; ox++)
                for (int c = 0; c < g->in_c; c++) {
                    double acc = is_max ? -INFINITY : 0.0;
                    int taps = 0;
                    for (int ky = 0; ky < g->kernel_h; ky++)
                        for (int kx = 0; kx < g->kernel_w; kx++) {
                            int iy = oy * g->stride_h - g->pad_top + ky;
                            int ix = ox * g->stride_w - g->pad_left + kx;
                            if (iy < 0 || iy >= g->in_h || ix < 0 || ix >= g->in_w)
                                continue;
                            double v = x[(((size_t)b * g->in_h + iy) * g->in_w + ix) * g->in_c + c];
                            acc = is_max ? fmax(acc, v) : acc + v;
                            taps++;
                        }
                    if (!is_max)
                        acc /= taps;
                    y[(((size_t)b * g->out_h + oy) * g->out_w + ox) * g->in_c + c] =
                        activate_ref(g->act, acc);
                }
    return y;
}

/* ---- hand-computed cases ----------------------------------------------- */

/* x = 1..9 as a 3x3 single-channel image, w = [[1,2],[3,4]]. */
static const float hand_x[9] = {1, 2, 3, 4, 5, 6, 7, 8, 9};
static const float hand_w[4] = {1, 2, 3, 4};

static void run_conv(const geometry *r, const float *x, const float *w,
                     const float *bias, float *y)
{
    const nn_conv_geom *g = &r->g;
    const size_t wn = (size_t)g->out_c * g->kernel_h * g->kernel_w * g->in_c;
    float *packed = malloc(wn * sizeof *packed);
    const size_t scratch_n = nn_ref_conv2d_scratch_floats(g);
    float *scratch = scratch_n ? output_buffer(scratch_n) : NULL;

    assert_non_null(packed);
    nn_ref_conv2d_pack(w, g->out_c, g->kernel_h, g->kernel_w, g->in_c, packed);
    nn_ref_conv2d(g, x, packed, bias, scratch, y);
    /* The kernel must stay within the scratch it asked for. */
    for (size_t i = scratch_n; scratch && i < scratch_n + GUARD; i++)
        assert_true(scratch[i] == SENTINEL);
    free(scratch);
    free(packed);
}

static void test_hand_conv_valid(void **state)
{
    const double want[4] = {37, 47, 67, 77};
    geometry r = make_geometry(1, 3, 3, 1, 1, 2, 1, 0, NN_ACT_NONE);
    float *y = output_buffer(4);
    double *naive;
    (void)state;

    assert_int_equal(r.g.out_h, 2);
    naive = naive_conv2d(&r, hand_x, hand_w, NULL);
    for (int i = 0; i < 4; i++)
        assert_true(naive[i] == want[i]);
    run_conv(&r, hand_x, hand_w, NULL, y);
    check_close("valid conv", y, want, 4);
    free(naive);
    free(y);
}

/* SAME 2x2 stride 1 on 3x3: TF pads one row/column, at the bottom/right. */
static void test_hand_conv_same(void **state)
{
    const double want[9] = {37, 47, 3 * 1 + 6 * 3, 67, 77, 6 * 1 + 9 * 3,
                            7 * 1 + 8 * 2, 8 * 1 + 9 * 2, 9};
    const float bias = 0.5f;
    double want_biased[9];
    geometry r = make_geometry(1, 3, 3, 1, 1, 2, 1, 1, NN_ACT_NONE);
    float *y = output_buffer(9);
    double *naive;
    (void)state;

    assert_int_equal(r.g.pad_top, 0);
    assert_int_equal(r.pad_bottom, 1);
    assert_int_equal(r.g.out_w, 3);
    for (int i = 0; i < 9; i++)
        want_biased[i] = want[i] + bias;
    naive = naive_conv2d(&r, hand_x, hand_w, &bias);
    for (int i = 0; i < 9; i++)
        assert_true(naive[i] == want_biased[i]);
    run_conv(&r, hand_x, hand_w, &bias, y);
    check_close("same conv", y, want_biased, 9);
    free(naive);
    free(y);
}

/* 2x2/2 SAME pools on -(1..9): padding must not win the max (it is -inf,
 * not 0) and must not count in the average. */
static void test_hand_pools(void **state)
{
    const float x[9] = {-1, -2, -3, -4, -5, -6, -7, -8, -9};
    const double want_max[4] = {-1, -3, -7, -9};
    const double want_avg[4] = {-3, -4.5, -7.5, -9};
    geometry r = make_geometry(1, 3, 3, 1, 1, 2, 2, 1, NN_ACT_NONE);
    float *y = output_buffer(4);
    double *naive;
    (void)state;

    assert_int_equal(r.g.out_h, 2);
    assert_int_equal(r.pad_bottom, 1);
    naive = naive_pool(&r, x, 1);
    for (int i = 0; i < 4; i++)
        assert_true(naive[i] == want_max[i]);
    free(naive);
    naive = naive_pool(&r, x, 0);
    for (int i = 0; i < 4; i++)
        assert_true(naive[i] == want_avg[i]);
    free(naive);
    nn_ref_max_pool2d(&r.g, x, y);
    check_close("max pool", y, want_max, 4);
    nn_ref_avg_pool2d(&r.g, x, y);
    check_close("avg pool", y, want_avg, 4);
    free(y);
}

/* ---- convolution ------------------------------------------------------- */

static void check_conv(const geometry *r, int with_bias)
{
    const nn_conv_geom *g = &r->g;
    const size_t xn = (size_t)g->n * g->in_h * g->in_w * g->in_c;
    const size_t wn = (size_t)g->out_c * g->kernel_h * g->kernel_w * g->in_c;
    float *x = random_floats(xn, -1, 1);
    float *w = random_floats(wn, -1, 1);
    float *bias = with_bias ? random_floats((size_t)g->out_c, -2, 2) : NULL;
    float *y = output_buffer(out_count(g));
    double *want = naive_conv2d(r, x, w, bias);
    char what[256];

    run_conv(r, x, w, bias, y);
    describe(what, sizeof what, "conv", r);
    check_close(what, y, want, out_count(g));
    free(x);
    free(w);
    free(bias);
    free(y);
    free(want);
}

static void test_conv_geometries(void **state)
{
    static const int kernels[] = {1, 2, 3, 7};
    static const int sizes[][2] = {{9, 9}, {12, 10}, {15, 8}};
    static const int channels[][2] = {{3, 10}, {5, 13}, {13, 17}};
    int count = 0;
    (void)state;

    rng_seed(1);
    for (size_t ki = 0; ki < sizeof kernels / sizeof *kernels; ki++)
        for (int stride = 1; stride <= 2; stride++)
            for (int same = 0; same <= 1; same++)
                for (size_t si = 0; si < sizeof sizes / sizeof *sizes; si++)
                    for (int n = 1; n <= 3; n += 2) {
                        const int *ch = channels[(ki + si + n) % 3];
                        nn_activation act = (nn_activation)(count % 3);
                        geometry r = make_geometry(n, sizes[si][0], sizes[si][1],
                                                   ch[0], ch[1], kernels[ki],
                                                   stride, same, act);
                        if (r.g.out_h < 1 || r.g.out_w < 1)
                            continue;
                        check_conv(&r, count % 4 != 3);
                        count++;
                    }
    assert_true(count > 80);
}

/* Cases that cross the GEMM's internal blocking: K above one K slice, more
 * output pixels than one row block, batch boundaries inside a block,
 * channel counts on both sides of the register tile. */
static void test_conv_blocking(void **state)
{
    (void)state;
    rng_seed(2);
    /* K = 3*3*61 = 549, two K slices; 3 images of 11x11 outputs. */
    geometry r = make_geometry(3, 11, 11, 61, 19, 3, 1, 1, NN_ACT_NONE);
    check_conv(&r, 1);
    /* K = 3*3*128 = 1152, three slices, with an activation that must only
     * apply after the last one. */
    r = make_geometry(1, 6, 5, 128, 12, 3, 1, 1, NN_ACT_RELU6);
    check_conv(&r, 1);
    /* Pointwise (no im2col) with 3*17*17 rows and K = 300. */
    r = make_geometry(3, 17, 17, 300, 9, 1, 1, 0, NN_ACT_RELU);
    assert_int_equal(nn_ref_conv2d_scratch_floats(&r.g), 0);
    check_conv(&r, 1);
    /* Pointwise with out_c narrower than the tile, and exactly one tile. */
    r = make_geometry(1, 5, 7, 32, 2, 1, 1, 0, NN_ACT_NONE);
    check_conv(&r, 1);
    r = make_geometry(1, 4, 4, 8, 8, 1, 1, 0, NN_ACT_NONE);
    check_conv(&r, 0);
    /* 1x1 stride 2 needs im2col. */
    r = make_geometry(2, 9, 8, 6, 11, 1, 2, 1, NN_ACT_NONE);
    assert_true(nn_ref_conv2d_scratch_floats(&r.g) > 0);
    check_conv(&r, 1);
    /* MobileFaceNet-like first layer with the asymmetric TF padding:
     * 112 -> 56 with k3 s2 pads nothing on top/left and one row/column on
     * the bottom/right. */
    r = make_geometry(1, 112, 112, 3, 8, 3, 2, 1, NN_ACT_NONE);
    assert_int_equal(r.g.out_h, 56);
    assert_int_equal(r.g.pad_top, 0);
    assert_int_equal(r.pad_bottom, 1);
    check_conv(&r, 1);
    /* dlib-like: 7x7/2 VALID, and 3x3/2 VALID down block. */
    r = make_geometry(1, 40, 38, 3, 32, 7, 2, 0, NN_ACT_RELU);
    check_conv(&r, 1);
    r = make_geometry(2, 17, 17, 16, 24, 3, 2, 0, NN_ACT_NONE);
    check_conv(&r, 1);
    /* Many output channels: several panels plus a narrow edge panel. */
    r = make_geometry(1, 6, 6, 20, 75, 3, 1, 1, NN_ACT_RELU6);
    check_conv(&r, 1);
    /* Kernel as large as the input with SAME padding on every side. */
    r = make_geometry(1, 7, 7, 4, 5, 7, 1, 1, NN_ACT_NONE);
    check_conv(&r, 1);
}

/* ---- depthwise convolution --------------------------------------------- */

static void check_depthwise(const geometry *r, int with_bias)
{
    const nn_conv_geom *g = &r->g;
    const size_t xn = (size_t)g->n * g->in_h * g->in_w * g->in_c;
    float *x = random_floats(xn, -1, 1);
    float *w = random_floats((size_t)g->kernel_h * g->kernel_w * g->in_c, -1, 1);
    float *bias = with_bias ? random_floats((size_t)g->in_c, -1, 1) : NULL;
    float *y = output_buffer(out_count(g));
    double *want = naive_depthwise(r, x, w, bias);
    char what[256];

    nn_ref_depthwise_conv2d(g, x, w, bias, y);
    describe(what, sizeof what, "depthwise", r);
    check_close(what, y, want, out_count(g));
    free(x);
    free(w);
    free(bias);
    free(y);
    free(want);
}

static void test_depthwise(void **state)
{
    static const int kernels[] = {3, 7};
    static const int sizes[][2] = {{7, 7}, {12, 11}, {16, 16}};
    static const int channels[] = {1, 13, 67};
    int count = 0;
    (void)state;

    rng_seed(3);
    for (size_t ki = 0; ki < 2; ki++)
        for (int stride = 1; stride <= 2; stride++)
            for (int same = 0; same <= 1; same++)
                for (size_t si = 0; si < 3; si++)
                    for (int n = 1; n <= 3; n += 2) {
                        int c = channels[(ki + si + stride) % 3];
                        geometry r = make_geometry(n, sizes[si][0], sizes[si][1],
                                                   c, c, kernels[ki], stride, same,
                                                   (nn_activation)(count % 3));
                        if (r.g.out_h < 1 || r.g.out_w < 1)
                            continue;
                        check_depthwise(&r, count % 4 != 1);
                        count++;
                    }
    assert_true(count > 40);
    /* GDConv: 7x7 VALID over a 7x7 map gives one pixel. */
    geometry r = make_geometry(2, 7, 7, 21, 21, 7, 1, 0, NN_ACT_NONE);
    assert_int_equal(r.g.out_h, 1);
    check_depthwise(&r, 0);
    /* 112 -> 56 stride-2 depthwise with bottom/right padding. */
    r = make_geometry(1, 112, 112, 9, 9, 3, 2, 1, NN_ACT_RELU);
    check_depthwise(&r, 1);
}

/* ---- pooling ----------------------------------------------------------- */

static void check_pool(const geometry *r, int is_max)
{
    const nn_conv_geom *g = &r->g;
    const size_t xn = (size_t)g->n * g->in_h * g->in_w * g->in_c;
    /* All negative, so a padded tap read as 0 would win a max. */
    float *x = random_floats(xn, -3, -0.5f);
    float *y = output_buffer(out_count(g));
    double *want = naive_pool(r, x, is_max);
    char what[256];

    if (is_max)
        nn_ref_max_pool2d(g, x, y);
    else
        nn_ref_avg_pool2d(g, x, y);
    describe(what, sizeof what, is_max ? "max pool" : "avg pool", r);
    check_close(what, y, want, out_count(g));
    free(x);
    free(y);
    free(want);
}

static void test_pools(void **state)
{
    static const int sizes[][2] = {{8, 8}, {9, 9}, {12, 7}, {11, 14}};
    (void)state;

    rng_seed(4);
    for (int k = 2; k <= 3; k++)
        for (int same = 0; same <= 1; same++)
            for (size_t si = 0; si < 4; si++)
                for (int n = 1; n <= 3; n += 2) {
                    int c = si % 2 ? 10 : 3;
                    geometry r = make_geometry(n, sizes[si][0], sizes[si][1], c, c,
                                               k, 2, same, NN_ACT_NONE);
                    check_pool(&r, 1);
                    check_pool(&r, 0);
                }
    /* Stride 1 3x3 SAME pads every side; with an activation. */
    geometry r = make_geometry(1, 6, 5, 4, 4, 3, 1, 1, NN_ACT_RELU);
    check_pool(&r, 0);
    r.g.act = NN_ACT_NONE;
    check_pool(&r, 1);
}

/* ---- fully connected --------------------------------------------------- */

static void test_fully_connected(void **state)
{
    static const int dims[][3] = {{1, 1152, 256}, {3, 5, 3}, {2, 37, 19}, {1, 256, 128}};
    (void)state;

    rng_seed(5);
    for (size_t t = 0; t < 4; t++) {
        const int n = dims[t][0], in = dims[t][1], out = dims[t][2];
        const nn_activation act = (nn_activation)(t % 3);
        float *x = random_floats((size_t)n * in, -1, 1);
        float *w = random_floats((size_t)out * in, -1, 1);
        float *bias = t == 3 ? NULL : random_floats((size_t)out, -1, 1);
        float *y = output_buffer((size_t)n * out);
        double *want = double_buffer((size_t)n * out);
        char what[128];

        for (int b = 0; b < n; b++)
            for (int o = 0; o < out; o++) {
                double s = bias ? bias[o] : 0.0;
                for (int i = 0; i < in; i++)
                    s += (double)x[(size_t)b * in + i] * w[(size_t)o * in + i];
                want[(size_t)b * out + o] = activate_ref(act, s);
            }
        nn_ref_fully_connected(n, in, out, x, w, bias, act, y);
        (void)snprintf(what, sizeof what, "fc n%d %d -> %d %s", n, in, out, act_name(act));
        check_close(what, y, want, (size_t)n * out);
        free(x);
        free(w);
        free(bias);
        free(y);
        free(want);
    }
}

/* ---- element-wise ------------------------------------------------------ */

static nn_shape shape_of(int rank, const int *dims)
{
    nn_shape s;
    memset(&s, 0, sizeof s);
    s.rank = rank;
    for (int i = 0; i < rank; i++)
        s.dims[i] = dims[i];
    return s;
}

static size_t count_of(const nn_shape *s)
{
    size_t n = 1;
    for (int i = 0; i < s->rank; i++)
        n *= (size_t)s->dims[i];
    return n;
}

/* Index into an operand of shape s for output coordinates c[4] (right
 * aligned), reading dims of size 1 at 0. */
static size_t broadcast_index(const nn_shape *s, const int c[4])
{
    size_t index = 0;
    for (int i = 0; i < s->rank; i++) {
        int d = s->dims[i];
        int coord = c[4 - s->rank + i];
        index = index * (size_t)d + (size_t)(d == 1 ? 0 : coord);
    }
    return index;
}

static double binary_ref(nn_op op, double a, double b)
{
    switch (op) {
    case NN_OP_ADD: return a + b;
    case NN_OP_SUB: return a - b;
    case NN_OP_MUL: return a * b;
    default: return a / b;
    }
}

static double *naive_binary(nn_op op, const float *a, const nn_shape *as,
                            const float *b, const nn_shape *bs,
                            nn_activation act, const nn_shape *ys)
{
    int yd[4] = {1, 1, 1, 1};
    for (int i = 0; i < ys->rank; i++)
        yd[4 - ys->rank + i] = ys->dims[i];
    double *y = double_buffer(count_of(ys));
    size_t k = 0;
    int c[4];
    for (c[0] = 0; c[0] < yd[0]; c[0]++)
        for (c[1] = 0; c[1] < yd[1]; c[1]++)
            for (c[2] = 0; c[2] < yd[2]; c[2]++)
                for (c[3] = 0; c[3] < yd[3]; c[3]++)
                    y[k++] = activate_ref(act, binary_ref(op, a[broadcast_index(as, c)],
                                                          b[broadcast_index(bs, c)]));
    return y;
}

/* Denominator-safe operand values: magnitude in [0.5, 2], either sign. */
static float *random_operand(size_t n)
{
    float *p = random_floats(n, 0.5f, 2.0f);
    for (size_t i = 0; i < n; i++)
        if (rng_uniform(0, 1) < 0.5f)
            p[i] = -p[i];
    return p;
}

typedef struct binary_case {
    int a_rank, a_dims[4];
    int b_rank, b_dims[4];
    int y_rank, y_dims[4];
} binary_case;

static void test_binary_broadcast(void **state)
{
    static const binary_case cases[] = {
        {4, {2, 3, 4, 5}, 4, {2, 3, 4, 5}, 4, {2, 3, 4, 5}},   /* same shape */
        {4, {2, 3, 4, 13}, 1, {13}, 4, {2, 3, 4, 13}},         /* [C] */
        {1, {13}, 4, {2, 3, 4, 13}, 4, {2, 3, 4, 13}},         /* [C] op x */
        {4, {2, 3, 4, 5}, 0, {0}, 4, {2, 3, 4, 5}},            /* scalar */
        {0, {0}, 4, {1, 3, 4, 5}, 4, {1, 3, 4, 5}},            /* scalar op x */
        {4, {2, 3, 4, 5}, 1, {1}, 4, {2, 3, 4, 5}},            /* [1] */
        {4, {2, 3, 4, 6}, 4, {2, 3, 4, 1}, 4, {2, 3, 4, 6}},   /* per pixel */
        {4, {2, 3, 4, 1}, 4, {2, 3, 4, 6}, 4, {2, 3, 4, 6}},
        {4, {1, 3, 4, 5}, 4, {2, 1, 1, 5}, 4, {2, 3, 4, 5}},   /* both */
        {4, {2, 1, 4, 1}, 3, {3, 1, 7}, 4, {2, 3, 4, 7}},
        {2, {3, 10}, 1, {10}, 2, {3, 10}},                     /* rank 2 */
        {2, {3, 1}, 2, {3, 10}, 2, {3, 10}},
        {0, {0}, 0, {0}, 0, {0}},                              /* scalars */
    };
    static const nn_op ops[] = {NN_OP_ADD, NN_OP_SUB, NN_OP_MUL, NN_OP_DIV};
    (void)state;

    rng_seed(6);
    for (size_t t = 0; t < sizeof cases / sizeof *cases; t++)
        for (size_t o = 0; o < 4; o++) {
            const binary_case *bc = &cases[t];
            nn_shape as = shape_of(bc->a_rank, bc->a_dims);
            nn_shape bs = shape_of(bc->b_rank, bc->b_dims);
            nn_shape ys = shape_of(bc->y_rank, bc->y_dims);
            const size_t yn = count_of(&ys);
            float *a = random_operand(count_of(&as));
            float *b = random_operand(count_of(&bs));
            float *y = output_buffer(yn);
            nn_activation act = (nn_activation)((t + o) % 3);
            double *want = naive_binary(ops[o], a, &as, b, &bs, act, &ys);
            char what[128];

            (void)snprintf(what, sizeof what, "binary case %zu op %zu %s", t, o,
                     act_name(act));
            nn_ref_binary(ops[o], a, &as, b, &bs, act, y, &ys);
            check_close(what, y, want, yn);

            /* In place: y aliases the operand that has the output shape. */
            if (count_of(&as) == yn) {
                float *a2 = output_buffer(yn);
                memcpy(a2, a, yn * sizeof *a2);
                nn_ref_binary(ops[o], a2, &as, b, &bs, act, a2, &ys);
                strcat(what, " in place");
                check_close(what, a2, want, yn);
                free(a2);
            }
            free(a);
            free(b);
            free(y);
            free(want);
        }
}

static void check_add_zext(const int ad[4], const int bd[4])
{
    nn_shape as = shape_of(4, ad), bs = shape_of(4, bd), ys;
    int yd[4];
    for (int i = 0; i < 4; i++)
        yd[i] = ad[i] > bd[i] ? ad[i] : bd[i];
    ys = shape_of(4, yd);
    float *a = random_floats(count_of(&as), -1, 1);
    float *b = random_floats(count_of(&bs), -1, 1);
    float *y = output_buffer(count_of(&ys));
    double *want = double_buffer(count_of(&ys));
    size_t k = 0;
    char what[128];

    for (int n = 0; n < yd[0]; n++)
        for (int h = 0; h < yd[1]; h++)
            for (int w = 0; w < yd[2]; w++)
                for (int c = 0; c < yd[3]; c++) {
                    double s = 0;
                    if (h < ad[1] && w < ad[2] && c < ad[3])
                        s += a[(((size_t)n * ad[1] + h) * ad[2] + w) * ad[3] + c];
                    if (h < bd[1] && w < bd[2] && c < bd[3])
                        s += b[(((size_t)n * bd[1] + h) * bd[2] + w) * bd[3] + c];
                    want[k++] = s;
                }
    nn_ref_add_zext(a, &as, b, &bs, y, &ys);
    (void)snprintf(what, sizeof what, "add_zext [%d,%d,%d,%d] + [%d,%d,%d,%d]", ad[0],
             ad[1], ad[2], ad[3], bd[0], bd[1], bd[2], bd[3]);
    check_close(what, y, want, count_of(&ys));
    free(a);
    free(b);
    free(y);
    free(want);
}

static void test_add_zext(void **state)
{
    (void)state;
    rng_seed(7);
    check_add_zext((const int[]){2, 4, 4, 8}, (const int[]){2, 4, 4, 8});
    check_add_zext((const int[]){2, 3, 3, 16}, (const int[]){2, 4, 4, 16});
    check_add_zext((const int[]){1, 4, 4, 16}, (const int[]){1, 3, 3, 16});
    check_add_zext((const int[]){1, 2, 2, 32}, (const int[]){1, 2, 2, 64});
    check_add_zext((const int[]){3, 1, 1, 64}, (const int[]){3, 2, 2, 32});
    check_add_zext((const int[]){1, 5, 4, 7}, (const int[]){1, 4, 5, 9});
}

static double unary_ref(nn_op op, double v)
{
    switch (op) {
    case NN_OP_NEG: return -v;
    case NN_OP_ABS: return fabs(v);
    case NN_OP_RELU: return v > 0 ? v : 0;
    default: return exp(v);
    }
}

static void test_unary_prelu_affine(void **state)
{
    static const nn_op ops[] = {NN_OP_NEG, NN_OP_ABS, NN_OP_RELU, NN_OP_EXP};
    const int channels = 13;
    const size_t n = 7 * channels;
    float *x, *y, *alpha, *scale, *shift;
    double *want = double_buffer(n);
    (void)state;

    rng_seed(8);
    x = random_floats(n, -4, 4);
    y = output_buffer(n);
    for (size_t o = 0; o < 4; o++) {
        for (size_t i = 0; i < n; i++)
            want[i] = unary_ref(ops[o], x[i]);
        nn_ref_unary(ops[o], x, n, y);
        check_close("unary", y, want, n);
        memcpy(y, x, n * sizeof *y);
        nn_ref_unary(ops[o], y, n, y);
        check_close("unary in place", y, want, n);
    }

    alpha = random_floats((size_t)channels, 0, 1);
    for (size_t i = 0; i < n; i++)
        want[i] = x[i] > 0 ? x[i] : (double)alpha[i % channels] * x[i];
    nn_ref_prelu(x, n, channels, alpha, y);
    check_close("prelu", y, want, n);
    memcpy(y, x, n * sizeof *y);
    nn_ref_prelu(y, n, channels, alpha, y);
    check_close("prelu in place", y, want, n);

    scale = random_floats((size_t)channels, -2, 2);
    shift = random_floats((size_t)channels, -2, 2);
    for (size_t i = 0; i < n; i++)
        want[i] = (double)x[i] * scale[i % channels] + shift[i % channels];
    nn_ref_affine(x, n, channels, scale, shift, y);
    check_close("affine", y, want, n);
    memcpy(y, x, n * sizeof *y);
    nn_ref_affine(y, n, channels, scale, shift, y);
    check_close("affine in place", y, want, n);

    free(x);
    free(y);
    free(alpha);
    free(scale);
    free(shift);
    free(want);
}

/* ---- reductions and normalisation -------------------------------------- */

static void check_reduce(nn_op op, const nn_shape *xs, unsigned mask)
{
    const size_t xn = count_of(xs);
    float *x = random_floats(xn, -2, 2);
    int d[4] = {1, 1, 1, 1}, red[4] = {0, 0, 0, 0};
    const int lead = 4 - xs->rank;
    size_t out_n = 1, reduced = 1;
    char what[128];

    for (int i = 0; i < xs->rank; i++) {
        d[lead + i] = xs->dims[i];
        red[lead + i] = (mask >> i) & 1u;
        if (red[lead + i])
            reduced *= (size_t)xs->dims[i];
        else
            out_n *= (size_t)xs->dims[i];
    }
    double *want = double_buffer(out_n);
    int *seen = calloc(out_n, sizeof *seen);
    float *y = output_buffer(out_n);
    int c[4];
    size_t k = 0;

    assert_non_null(seen);
    /* Output index: the kept coordinates, row-major. */
    for (c[0] = 0; c[0] < d[0]; c[0]++)
        for (c[1] = 0; c[1] < d[1]; c[1]++)
            for (c[2] = 0; c[2] < d[2]; c[2]++)
                for (c[3] = 0; c[3] < d[3]; c[3]++) {
                    size_t o = 0;
                    double v = x[k++];
                    for (int i = 0; i < 4; i++)
                        if (!red[i])
                            o = o * (size_t)d[i] + (size_t)c[i];
                    if (op == NN_OP_REDUCE_MAX)
                        want[o] = seen[o] ? fmax(want[o], v) : v;
                    else
                        want[o] += v;
                    seen[o] = 1;
                }
    if (op == NN_OP_REDUCE_MEAN)
        for (size_t i = 0; i < out_n; i++)
            want[i] /= (double)reduced;
    nn_ref_reduce(op, x, xs, mask, y);
    (void)snprintf(what, sizeof what, "reduce op %d rank %d mask %#x", (int)op,
             xs->rank, mask);
    check_close(what, y, want, out_n);
    free(x);
    free(want);
    free(seen);
    free(y);
}

static void test_reduce(void **state)
{
    static const nn_op ops[] = {NN_OP_REDUCE_MAX, NN_OP_REDUCE_SUM, NN_OP_REDUCE_MEAN};
    nn_shape s4 = nn_shape4(2, 5, 6, 7), s2 = nn_shape2(4, 9), s1 = nn_shape1(11);
    (void)state;

    rng_seed(9);
    for (size_t o = 0; o < 3; o++) {
        check_reduce(ops[o], &s4, 1u << 3);           /* last axis */
        check_reduce(ops[o], &s4, (1u << 1) | (1u << 2)); /* spatial */
        check_reduce(ops[o], &s4, 1u << 0);           /* batch */
        check_reduce(ops[o], &s4, 0xfu);              /* everything */
        check_reduce(ops[o], &s4, (1u << 1) | (1u << 3));
        check_reduce(ops[o], &s2, 1u << 1);
        check_reduce(ops[o], &s2, 1u << 0);
        check_reduce(ops[o], &s1, 1u << 0);
    }
}

static void test_softmax(void **state)
{
    static const int cols_list[] = {2, 10, 1};
    (void)state;

    rng_seed(10);
    for (size_t t = 0; t < 3; t++) {
        const int cols = cols_list[t];
        const size_t rows = 6, n = rows * (size_t)cols;
        float *x = random_floats(n, -5, 5);
        float *y = output_buffer(n);
        double *want = double_buffer(n);

        /* A row of huge logits: exp() would overflow without the max. */
        for (int i = 0; i < cols; i++)
            x[i] = 1000.0f + (float)i;
        for (size_t r = 0; r < rows; r++) {
            const float *xr = x + r * cols;
            double max = xr[0], sum = 0;
            for (int i = 1; i < cols; i++)
                max = fmax(max, xr[i]);
            for (int i = 0; i < cols; i++)
                sum += exp(xr[i] - max);
            for (int i = 0; i < cols; i++)
                want[r * cols + i] = exp(xr[i] - max) / sum;
        }
        nn_ref_softmax(x, rows, cols, y);
        check_close("softmax", y, want, n);
        memcpy(y, x, n * sizeof *y);
        nn_ref_softmax(y, rows, cols, y);
        check_close("softmax in place", y, want, n);
        free(x);
        free(y);
        free(want);
    }
}

static void test_l2_norm(void **state)
{
    const int cols = 192;
    const size_t rows = 4, n = rows * cols;
    float *x, *y = output_buffer(n);
    double *want = double_buffer(n);
    (void)state;

    rng_seed(11);
    x = random_floats(n, -3, 3);
    memset(x + cols, 0, cols * sizeof *x); /* row 1 is all zero */
    x[2 * cols + 5] = 1e-30f;              /* row 2: one tiny value */
    for (int i = 0; i < cols; i++)
        if (i != 5)
            x[2 * cols + i] = 0;
    for (size_t r = 0; r < rows; r++) {
        double sum = 0;
        for (int i = 0; i < cols; i++)
            sum += (double)x[r * cols + i] * x[r * cols + i];
        double norm = fmax(sqrt(sum), 1e-10);
        for (int i = 0; i < cols; i++)
            want[r * cols + i] = x[r * cols + i] / norm;
    }
    nn_ref_l2_norm(x, rows, cols, y);
    check_close("l2 norm", y, want, n);
    for (int i = 0; i < cols; i++)
        assert_true(y[cols + i] == 0.0f); /* zero row: zeros, not NaN */
    /* Unit norm for the ordinary rows. */
    for (size_t r = 0; r < rows; r += 3) {
        double sum = 0;
        for (int i = 0; i < cols; i++)
            sum += (double)y[r * cols + i] * y[r * cols + i];
        assert_true(fabs(sum - 1.0) < 1e-5);
    }
    free(x);
    free(y);
    free(want);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_hand_conv_valid),
        cmocka_unit_test(test_hand_conv_same),
        cmocka_unit_test(test_hand_pools),
        cmocka_unit_test(test_conv_geometries),
        cmocka_unit_test(test_conv_blocking),
        cmocka_unit_test(test_depthwise),
        cmocka_unit_test(test_pools),
        cmocka_unit_test(test_fully_connected),
        cmocka_unit_test(test_binary_broadcast),
        cmocka_unit_test(test_add_zext),
        cmocka_unit_test(test_unary_prelu_affine),
        cmocka_unit_test(test_reduce),
        cmocka_unit_test(test_softmax),
        cmocka_unit_test(test_l2_norm),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
