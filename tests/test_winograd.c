/* The avx2 backend's Winograd path (kernels/avx2_winograd.c) for 3x3
 * stride-1 convolutions: every MTCNN layer shape it takes plus odd sizes,
 * paddings and batches against the reference kernels, with a bound
 * scaled to each output's sum of |x * w| (tight enough that one wrong tap,
 * channel or tile edge fails it); and bit-identical results with 1, 2
 * and 3 threads and for a batch against its images run one by one. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nn/backend.h"
#include "nn/graph.h"
#include "nn/kernels/avx2_winograd.h"
#include "nn/pool.h"

static unsigned rng_state = 4242u;

static unsigned rnd(unsigned n)
{
    rng_state = rng_state * 1664525u + 1013904223u;
    return (rng_state >> 8) % n;
}

static int max_of(int a, int b) { return a > b ? a : b; }

static float *noise(size_t n)
{
    float *p = malloc((n ? n : 1) * sizeof *p);
    assert_non_null(p);
    for (size_t i = 0; i < n; i++)
        p[i] = (float)rnd(20001) / 10000.0f - 1.0f;
    return p;
}

static float *absolute(const float *v, size_t n)
{
    float *p = malloc((n ? n : 1) * sizeof *p);
    assert_non_null(p);
    for (size_t i = 0; i < n; i++)
        p[i] = fabsf(v[i]);
    return p;
}

/* One 3x3 stride-1 layer: geometry, weights and input. */
typedef struct case_t {
    nn_conv_geom g;
    nn_layer_params p;
    float *w, *bias, *alpha, *x;
    size_t xcount, ycount;
} case_t;

static void case_make(case_t *c, int n, int in_h, int in_w, int in_c, int out_c, int pad_top,
                      int pad_bottom, int pad_left, int pad_right, nn_activation act, int prelu)
{
    memset(c, 0, sizeof *c);
    nn_conv_geom *g = &c->g;
    g->n = n;
    g->in_h = in_h;
    g->in_w = in_w;
    g->in_c = in_c;
    g->out_c = out_c;
    g->kernel_h = g->kernel_w = 3;
    g->stride_h = g->stride_w = 1;
    g->pad_top = pad_top;
    g->pad_left = pad_left;
    g->out_h = in_h + pad_top + pad_bottom - 2;
    g->out_w = in_w + pad_left + pad_right - 2;
    g->act = act;
    assert_true(g->out_h >= 1 && g->out_w >= 1);
    c->w = noise((size_t)out_c * 9 * in_c);
    c->bias = noise((size_t)out_c);
    c->alpha = noise((size_t)out_c);
    c->xcount = (size_t)n * in_h * in_w * in_c;
    c->ycount = (size_t)n * g->out_h * g->out_w * out_c;
    c->x = noise(c->xcount);
    c->p.op = NN_OP_CONV2D;
    c->p.weights = c->w;
    c->p.out_c = out_c;
    c->p.kernel_h = c->p.kernel_w = 3;
    c->p.in_c = in_c;
    c->p.bias = c->bias;
    c->p.prelu = prelu ? c->alpha : NULL;
}

static void case_free(case_t *c)
{
    free(c->w);
    free(c->bias);
    free(c->alpha);
    free(c->x);
}

static void run(const nn_backend *b, const nn_layer_params *p, const nn_conv_geom *g,
                const float *x, float *y, nn_pool *pool)
{
    void *prepared = b->prepare(p);
    assert_non_null(prepared);
    float *scratch = malloc((b->conv2d_scratch(g, nn_pool_threads(pool)) + 1) * sizeof *scratch);
    assert_non_null(scratch);
    b->conv2d(g, x, prepared, scratch, y, pool);
    free(scratch);
    b->release(prepared);
}

/* Largest |avx2 - reference| / (1 + sum |x * w| + |bias|) over the
 * outputs, after checking every output is finite. The scale is the
 * reference on |x|, |w| and |bias| without activation. */
static double relative_error(const case_t *c, nn_pool *pool)
{
    float *want = malloc(c->ycount * sizeof *want), *got = malloc(c->ycount * sizeof *got);
    float *scale = malloc(c->ycount * sizeof *scale);
    assert_true(want && got && scale);
    run(&nn_backend_reference, &c->p, &c->g, c->x, want, NULL);
    memset(got, 0xff, c->ycount * sizeof *got); /* NaN: an unwritten output shows */
    run(&nn_backend_avx2, &c->p, &c->g, c->x, got, pool);

    float *ax = absolute(c->x, c->xcount), *aw = absolute(c->w, (size_t)c->p.out_c * 9 * c->p.in_c);
    float *ab = absolute(c->bias, (size_t)c->p.out_c);
    nn_layer_params ap = c->p;
    ap.weights = aw;
    ap.bias = ab;
    ap.prelu = NULL;
    nn_conv_geom ag = c->g;
    ag.act = NN_ACT_NONE;
    run(&nn_backend_reference, &ap, &ag, ax, scale, NULL);

    double worst = 0;
    for (size_t i = 0; i < c->ycount; i++) {
        if (!isfinite(got[i]))
            fail_msg("output %zu not written (or not finite)", i);
        const double e = fabs((double)got[i] - want[i]) / (1.0 + scale[i]);
        if (e > worst)
            worst = e;
    }
    free(ax);
    free(aw);
    free(ab);
    free(want);
    free(got);
    free(scale);
    return worst;
}

/* fp32 sums of a few hundred terms in another order differ by ~1e-7 of
 * sum |x * w|; Winograd F(4x4, 3x3) adds up to about ten times that. A
 * wrong tap or a misplaced tile edge is off by one term, ~1e-3 of the sum
 * for the widest layer here and far more for the narrow ones. */
#define MAX_RELATIVE_ERROR 2e-5

static void check(const case_t *c, nn_pool *pool, const char *what)
{
    assert_true(nn_wino_conv_applies(&c->g));
    const double e = relative_error(c, pool);
    if (!(e <= MAX_RELATIVE_ERROR))
        fail_msg("%s: n %d, %dx%dx%d -> %d, pads %d/%d: relative error %.3g > %.3g", what, c->g.n,
                 c->g.in_h, c->g.in_w, c->g.in_c, c->g.out_c, c->g.pad_top, c->g.pad_left, e,
                 MAX_RELATIVE_ERROR);
}

/* The 3x3 stride-1 layers of MTCNN that take the Winograd path (P-Net's
 * conv2 and conv3 at a few pyramid sizes, R-Net's conv2, O-Net's conv2 and conv3),
 * with their PReLU, in small batches. */
static void test_mtcnn_shapes(void **state)
{
    (void)state;
    static const int shapes[][6] = {
        /* n, in_h, in_w, in_c, out_c */
        {1, 95, 71, 10, 16}, {1, 5, 5, 10, 16},
        {1, 93, 69, 16, 32}, {1, 12, 12, 16, 32}, {1, 3, 3, 16, 32}, {1, 40, 27, 16, 32},
        {5, 11, 11, 28, 48}, {3, 23, 23, 32, 64}, {4, 10, 10, 64, 64},
    };
    nn_pool *pool = NULL;
    facenet_error err;
    assert_int_equal(nn_pool_create(2, &pool, &err), FACENET_OK);
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
        case_t c;
        case_make(&c, shapes[s][0], shapes[s][1], shapes[s][2], shapes[s][3], shapes[s][4], 0, 0,
                  0, 0, NN_ACT_NONE, 1);
        check(&c, s % 2 ? pool : NULL, "mtcnn shape");
        case_free(&c);
    }
    nn_pool_free(pool);
}

/* Random sizes (tiles cut by the image edge on either side), paddings of
 * 0..2 on each side, channel counts that are not multiples of 8 or 16,
 * every activation, with and without PReLU, batches of 1..3. Drawn again
 * until the layer takes the Winograd path (tiny images with many channels
 * go to the GEMM by the dispatch rule). */
static void test_random_layers(void **state)
{
    (void)state;
    nn_pool *pool = NULL;
    facenet_error err;
    assert_int_equal(nn_pool_create(3, &pool, &err), FACENET_OK);
    for (int t = 0; t < 120;) {
        const int pt = (int)rnd(3), pb = (int)rnd(3), pl = (int)rnd(3), pr = (int)rnd(3);
        const int in_h = max_of(1, 3 - pt - pb) + (int)rnd(17);
        const int in_w = max_of(1, 3 - pl - pr) + (int)rnd(17);
        case_t c;
        case_make(&c, 1 + (int)rnd(3), in_h, in_w, 8 + (int)rnd(60), 16 + (int)rnd(60), pt, pb,
                  pl, pr, (nn_activation)rnd(3), (int)rnd(2));
        if (nn_wino_conv_applies(&c.g)) {
            check(&c, t % 2 ? pool : NULL, "random layer");
            t++;
        }
        case_free(&c);
    }
    nn_pool_free(pool);
}

/* The bound has teeth: the same check on the widest MTCNN layer, against
 * a reference whose weights differ in one tap of one channel pair by a
 * typical weight (0.5), must fail it. */
static void test_bound_catches_one_wrong_tap(void **state)
{
    (void)state;
    case_t c;
    case_make(&c, 2, 10, 10, 64, 64, 0, 0, 0, 0, NN_ACT_NONE, 0);
    const size_t ycount = c.ycount;
    float *good = malloc(ycount * sizeof *good), *bad = malloc(ycount * sizeof *bad);
    float *scale = malloc(ycount * sizeof *scale);
    assert_true(good && bad && scale);
    run(&nn_backend_avx2, &c.p, &c.g, c.x, good, NULL);
    /* Output channel 5, tap (2, 1), input channel 17. */
    c.w[((5 * 3 + 2) * 3 + 1) * 64 + 17] += 0.5f;
    run(&nn_backend_reference, &c.p, &c.g, c.x, bad, NULL);
    float *ax = absolute(c.x, c.xcount), *aw = absolute(c.w, (size_t)64 * 9 * 64);
    nn_layer_params ap = c.p;
    ap.weights = aw;
    ap.bias = NULL;
    run(&nn_backend_reference, &ap, &c.g, ax, scale, NULL);
    double worst = 0;
    for (size_t i = 0; i < ycount; i++) {
        const double e = fabs((double)good[i] - bad[i]) / (1.0 + scale[i]);
        worst = e > worst ? e : worst;
    }
    assert_true(worst > 10 * MAX_RELATIVE_ERROR);
    free(ax);
    free(aw);
    free(good);
    free(bad);
    free(scale);
    case_free(&c);
}

/* Outputs do not depend on the thread count (1, 2, 3) nor on the batch:
 * each image of a batch gives the same bits run alone. */
static void test_threads_and_batch_bit_identical(void **state)
{
    (void)state;
    static const int shapes[][7] = {
        /* n, in_h, in_w, in_c, out_c, pad */
        {7, 23, 23, 32, 64, 0}, {9, 11, 11, 28, 48, 0}, {3, 17, 30, 16, 32, 1}, {5, 10, 10, 64, 64, 0},
    };
    nn_pool *pools[3] = {NULL, NULL, NULL};
    facenet_error err;
    for (int i = 1; i < 3; i++)
        assert_int_equal(nn_pool_create(i + 1, &pools[i], &err), FACENET_OK);
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
        case_t c;
        const int pad = shapes[s][5];
        case_make(&c, shapes[s][0], shapes[s][1], shapes[s][2], shapes[s][3], shapes[s][4], pad,
                  pad, pad, pad, NN_ACT_RELU, 1);
        assert_true(nn_wino_conv_applies(&c.g));
        float *base = malloc(c.ycount * sizeof *base), *got = malloc(c.ycount * sizeof *got);
        assert_true(base && got);
        run(&nn_backend_avx2, &c.p, &c.g, c.x, base, NULL);
        for (int i = 1; i < 3; i++) {
            memset(got, 0xff, c.ycount * sizeof *got);
            run(&nn_backend_avx2, &c.p, &c.g, c.x, got, pools[i]);
            assert_memory_equal(base, got, c.ycount * sizeof *got);
        }
        nn_conv_geom one = c.g;
        one.n = 1;
        const size_t in_image = c.xcount / (size_t)c.g.n, out_image = c.ycount / (size_t)c.g.n;
        for (int b = 0; b < c.g.n; b++) {
            memset(got, 0xff, out_image * sizeof *got);
            run(&nn_backend_avx2, &c.p, &one, c.x + (size_t)b * in_image, got, pools[b % 3]);
            assert_memory_equal(base + (size_t)b * out_image, got, out_image * sizeof *got);
        }
        free(base);
        free(got);
        case_free(&c);
    }
    for (int i = 1; i < 3; i++)
        nn_pool_free(pools[i]);
}

/* F(3x3, 3x3) takes the outputs that 4x4 tiles cover badly (R-Net's
 * 9x9, 3x3, 6x6: its tiles need 1/8 fewer products) on layers of at most
 * 64 x 64 channels; everything else that applies runs F(4x4). The choice sees the shape and one image's
 * size, never the batch. Each choice is checked against the reference
 * with paddings that cut tiles at the image edge. */
static void test_tile_side_rule(void **state)
{
    (void)state;
    static const int shapes[][7] = {
        /* n, in_h, in_w, in_c, out_c, pad, side */
        {5, 11, 11, 28, 48, 0, 3},  /* R-Net conv2, 9x9 out */
        {2, 9, 9, 64, 64, 0, 4},    /* 7x7 out: 4 tiles of 4 (144 products) beat 9 of 3 (225) */
        {3, 5, 5, 16, 32, 0, 3},    /* 3x3 out */
        {2, 6, 6, 20, 19, 1, 3},    /* pad 1, 6x6 out: 4 tiles of 3 against 4 of 4 */
        {3, 23, 23, 32, 64, 0, 4},  /* O-Net conv2, 21x21 out */
        {4, 10, 10, 64, 64, 0, 4},  /* O-Net conv3, 8x8 out */
        {1, 95, 71, 10, 16, 0, 4},  /* P-Net conv2 */
        {2, 11, 11, 72, 64, 0, 4},  /* 9x9 out, but more than 48 x 48 weights */
        {2, 11, 11, 64, 64, 0, 4},  /* the same: dlib-sized layers keep one set of weights */
        {2, 9, 6, 24, 40, 1, 3},    /* pad 1, 9x6 out: 3x2 tiles of 3 against 3x2 of 4 */
        {1, 13, 12, 24, 40, 1, 4},  /* pad 1, 13x12 out: 5x4 tiles of 3 lose to 4x3 of 4 */
    };
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
        case_t c;
        const int pad = shapes[s][5];
        case_make(&c, shapes[s][0], shapes[s][1], shapes[s][2], shapes[s][3], shapes[s][4], pad,
                  pad, pad, pad, NN_ACT_NONE, 1);
        if (nn_wino_tile_side(&c.g) != shapes[s][6])
            fail_msg("%dx%d out, %d -> %d: tile side %d, want %d", c.g.out_h, c.g.out_w,
                     c.g.in_c, c.g.out_c, nn_wino_tile_side(&c.g), shapes[s][6]);
        check(&c, NULL, "tile side rule");
        nn_conv_geom one = c.g;
        one.n = 1;
        assert_int_equal(nn_wino_tile_side(&one), shapes[s][6]);
        case_free(&c);
    }
}

/* Which layers take the path: 3x3, stride 1, at least 8 channels in and
 * 16 out (P-Net's conv2 10 -> 16 and up), with at least one 4x4 output
 * tile per image for every 1024 weights (in_c x out_c); not first layers,
 * strided or other kernel sizes. */
static void test_dispatch_rule(void **state)
{
    (void)state;
    nn_conv_geom g;
    memset(&g, 0, sizeof g);
    g.n = 1;
    g.in_h = g.in_w = 12;
    g.out_h = g.out_w = 10;
    g.kernel_h = g.kernel_w = 3;
    g.stride_h = g.stride_w = 1;
    g.in_c = 16;
    g.out_c = 32;
    assert_true(nn_wino_conv_applies(&g));
    assert_true(nn_wino_scratch_floats(&g, 2) > 0);
    g.in_c = 10; /* P-Net conv2 */
    g.out_c = 16;
    assert_true(nn_wino_conv_applies(&g));
    g.out_c = 10;
    assert_false(nn_wino_conv_applies(&g));
    g.out_c = 16;
    g.in_c = 3; /* first layers */
    assert_false(nn_wino_conv_applies(&g));
    g.in_c = 32;
    g.stride_w = 2;
    assert_false(nn_wino_conv_applies(&g));
    g.stride_w = 1;
    g.kernel_w = 2;
    assert_false(nn_wino_conv_applies(&g));
    /* Few tiles for many channels: the GEMM (dlib's ResNet at 150x150). */
    g.kernel_w = 3;
    g.in_c = g.out_c = 64; /* O-Net conv3: 8x8 out, 4 tiles: still Winograd */
    g.out_h = g.out_w = 8;
    assert_true(nn_wino_conv_applies(&g));
    g.in_c = g.out_c = 128; /* dlib, 9x9 out: 9 tiles */
    g.out_h = g.out_w = 9;
    assert_false(nn_wino_conv_applies(&g));
    g.n = 16; /* the batch does not count: results stay batch-independent */
    assert_false(nn_wino_conv_applies(&g));
    g.n = 1;
    g.in_c = g.out_c = 32; /* dlib, 36x36 out */
    g.out_h = g.out_w = 36;
    assert_true(nn_wino_conv_applies(&g));
}

int main(void)
{
    if (!nn_backend_avx2.available()) {
        fprintf(stderr, "this CPU has no AVX2 + FMA: nothing to test\n");
        return 77;
    }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_dispatch_rule),
        cmocka_unit_test(test_tile_side_rule),
        cmocka_unit_test(test_mtcnn_shapes),
        cmocka_unit_test(test_random_layers),
        cmocka_unit_test(test_bound_catches_one_wrong_tap),
        cmocka_unit_test(test_threads_and_batch_bit_identical),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
