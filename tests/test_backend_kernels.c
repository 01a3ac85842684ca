/* Every available backend's layer kernels against the reference backend
 * on randomised geometry: kernel sizes, strides, SAME/VALID/explicit
 * padding, channel counts that are and are not multiples of 8 and 16,
 * tiny and wide images, batches, activations and fused PReLU, with 1 and 3
 * threads. The real models only exercise their own shapes; these catch
 * the edge tiles, masked tails and border windows they never reach. */
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
#include "nn/pool.h"

static unsigned rng_state = 12345u;

static unsigned rnd(unsigned n)
{
    rng_state = rng_state * 1664525u + 1013904223u;
    return (rng_state >> 8) % n;
}

static float *noise(size_t n)
{
    float *p = malloc((n ? n : 1) * sizeof *p);
    for (size_t i = 0; i < n; i++)
        p[i] = (float)rnd(20001) / 10000.0f - 1.0f;
    return p;
}

/* Which shapes random_geom draws. */
enum {
    SHAPES_ANY,
    /* At most 4 inputs, 12 outputs and horizontal stride 1, on rows up to
     * 70 wide (the avx2 backend's direct kernel for first layers: 8-pixel
     * vectors, their tails and the odd output channel). */
    SHAPES_DIRECT,
    /* At most 4 inputs and 13 to 70 outputs, any stride, on rows up to 70
     * wide (the avx2 row kernel of R-Net's, O-Net's and MobileFaceNet's
     * first layers: tiles cut at the end of each row, padded rows, partial
     * panels). */
    SHAPES_FIRST_LAYER
};

/* A random convolution or pooling geometry with valid output sizes, of
 * the kind `shapes` says. */
static int random_geom(nn_conv_geom *g, int depthwise_or_pool, int shapes)
{
    int pad_after_h, pad_after_w, out;
    memset(g, 0, sizeof *g);
    g->n = 1 + (int)rnd(3);
    g->in_h = 1 + (int)rnd(20);
    g->in_w = 1 + (int)rnd(40);
    g->in_c = 1 + (int)rnd(depthwise_or_pool ? 70 : 40);
    g->kernel_h = 1 + (int)rnd(4);
    g->kernel_w = 1 + (int)rnd(4);
    if (rnd(4) == 0)
        g->kernel_h = g->kernel_w = 7;
    g->stride_h = 1 + (int)rnd(2);
    g->stride_w = 1 + (int)rnd(2);
    const nn_padding mode = (nn_padding)rnd(3);
    const int eb = (int)rnd(3), ea = (int)rnd(3);
    nn_resolve_padding(mode, g->in_h, g->kernel_h, g->stride_h, eb, ea, &g->pad_top,
                       &pad_after_h, &out);
    g->out_h = out;
    nn_resolve_padding(mode, g->in_w, g->kernel_w, g->stride_w, eb, ea, &g->pad_left,
                       &pad_after_w, &out);
    g->out_w = out;
    g->out_c = depthwise_or_pool ? g->in_c : 1 + (int)rnd(40);
    if (shapes != SHAPES_ANY) {
        g->in_c = 1 + (int)rnd(4);
        g->out_c = shapes == SHAPES_DIRECT ? 1 + (int)rnd(12) : 13 + (int)rnd(58);
        g->in_w = 1 + (int)rnd(70);
        if (shapes == SHAPES_DIRECT)
            g->stride_w = 1;
        nn_resolve_padding(mode, g->in_w, g->kernel_w, g->stride_w, eb, ea, &g->pad_left,
                           &pad_after_w, &out);
        g->out_w = out;
    }
    g->act = (nn_activation)rnd(3);
    return g->out_h >= 1 && g->out_w >= 1;
}

/* Sums of `terms` products in another order differ by rounding that grows
 * with the number of terms; a wrong tap or channel is off by O(1). */
static void compare(const char *what, const char *backend, int trial, const float *want,
                    const float *got, size_t n, size_t terms)
{
    for (size_t i = 0; i < n; i++) {
        const float tol = 2e-5f * (1.0f + fabsf(want[i])) + 1e-7f * (float)terms;
        if (!(fabsf(want[i] - got[i]) <= tol))
            fail_msg("%s on %s, trial %d, element %zu: reference %.9g, got %.9g", what, backend,
                     trial, i, (double)want[i], (double)got[i]);
    }
}

typedef struct layer_run {
    const nn_backend *b;
    void *prepared;
    float *y;
} layer_run;

static void run_layer(const nn_backend *b, const nn_layer_params *p, const nn_conv_geom *g,
                      const float *x, float *y, nn_pool *pool)
{
    void *prepared = b->prepare(p);
    assert_non_null(prepared);
    const int threads = nn_pool_threads(pool);
    float *scratch = NULL;
    if (p->op == NN_OP_CONV2D)
        scratch = malloc((b->conv2d_scratch(g, threads) + 1) * sizeof *scratch);
    switch (p->op) {
    case NN_OP_CONV2D: b->conv2d(g, x, prepared, scratch, y, pool); break;
    case NN_OP_DEPTHWISE_CONV2D: b->depthwise(g, x, prepared, y, pool); break;
    default: b->fully_connected(g->n, p->in_c, p->out_c, g->act, x, prepared, y, pool); break;
    }
    free(scratch);
    b->release(prepared);
}

static void check_layers(nn_op op, int trials, int shapes)
{
    nn_pool *pool3 = NULL;
    facenet_error err;
    assert_int_equal(nn_pool_create(3, &pool3, &err), FACENET_OK);
    for (int t = 0; t < trials; t++) {
        nn_conv_geom g;
        if (!random_geom(&g, op == NN_OP_DEPTHWISE_CONV2D, shapes))
            continue;
        nn_layer_params p;
        memset(&p, 0, sizeof p);
        p.op = op;
        p.out_c = g.out_c;
        p.kernel_h = op == NN_OP_FULLY_CONNECTED ? 1 : g.kernel_h;
        p.kernel_w = op == NN_OP_FULLY_CONNECTED ? 1 : g.kernel_w;
        p.in_c = op == NN_OP_FULLY_CONNECTED ? g.in_h * g.in_w * g.in_c : g.in_c;
        const size_t wcount = op == NN_OP_DEPTHWISE_CONV2D
                                  ? (size_t)g.kernel_h * g.kernel_w * g.in_c
                                  : (size_t)p.out_c * p.kernel_h * p.kernel_w * p.in_c;
        float *w = noise(wcount), *bias = noise((size_t)p.out_c), *alpha = noise((size_t)p.out_c);
        p.weights = w;
        p.bias = rnd(3) ? bias : NULL;
        p.prelu = rnd(2) ? alpha : NULL;
        const size_t xcount = (size_t)g.n * g.in_h * g.in_w * g.in_c;
        const size_t ycount = op == NN_OP_FULLY_CONNECTED
                                  ? (size_t)g.n * p.out_c
                                  : (size_t)g.n * g.out_h * g.out_w * g.out_c;
        float *x = noise(xcount);
        float *want = malloc(ycount * sizeof *want), *got = malloc(ycount * sizeof *got);
        run_layer(&nn_backend_reference, &p, &g, x, want, NULL);
        for (int b = 0; nn_backend_at(b); b++) {
            const nn_backend *be = nn_backend_at(b);
            if (be == &nn_backend_reference || !be->available())
                continue;
            for (int pi = 0; pi < 2; pi++) {
                memset(got, 0xff, ycount * sizeof *got); /* NaN: unwritten shows */
                run_layer(be, &p, &g, x, got, pi ? pool3 : NULL);
                compare(nn_op_name(op), be->name, t, want, got, ycount,
                        op == NN_OP_DEPTHWISE_CONV2D ? (size_t)g.kernel_h * g.kernel_w
                                                     : (size_t)p.kernel_h * p.kernel_w * p.in_c);
            }
        }
        free(w);
        free(bias);
        free(alpha);
        free(x);
        free(want);
        free(got);
    }
    nn_pool_free(pool3);
}

static void test_conv2d(void **state)
{
    (void)state;
    check_layers(NN_OP_CONV2D, 300, SHAPES_ANY);
}

static void test_conv2d_few_channels(void **state)
{
    (void)state;
    check_layers(NN_OP_CONV2D, 300, SHAPES_DIRECT);
}

static void test_conv2d_first_layers(void **state)
{
    (void)state;
    check_layers(NN_OP_CONV2D, 300, SHAPES_FIRST_LAYER);
}

/* The first layers of the real models, at batch 3: every backend within
 * rounding of the reference, and each image's output the same bits
 * whatever the batch it runs in and the number of threads. */
static void test_model_first_layers(void **state)
{
    static const nn_conv_geom shapes[] = {
        /* n, in h w c, out h w c, kernel, stride, pad, act */
        {3, 24, 24, 3, 22, 22, 28, 3, 3, 1, 1, 0, 0, NN_ACT_NONE},   /* R-Net conv1 */
        {3, 48, 48, 3, 46, 46, 32, 3, 3, 1, 1, 0, 0, NN_ACT_NONE},   /* O-Net conv1 */
        {3, 112, 112, 3, 56, 56, 64, 3, 3, 2, 2, 0, 0, NN_ACT_NONE}, /* MFN conv1, SAME */
        {3, 112, 112, 3, 56, 56, 64, 3, 3, 2, 2, 1, 1, NN_ACT_NONE}, /* MFN conv1, pad 1 */
        {2, 150, 150, 3, 75, 75, 32, 7, 7, 2, 2, 3, 3, NN_ACT_RELU}, /* a 7x7/2 stem */
    };
    nn_pool *pool3 = NULL;
    facenet_error err;
    (void)state;
    assert_int_equal(nn_pool_create(3, &pool3, &err), FACENET_OK);
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
        const nn_conv_geom g = shapes[s];
        nn_conv_geom one = g;
        one.n = 1;
        nn_layer_params p;
        memset(&p, 0, sizeof p);
        p.op = NN_OP_CONV2D;
        p.out_c = g.out_c;
        p.kernel_h = g.kernel_h;
        p.kernel_w = g.kernel_w;
        p.in_c = g.in_c;
        float *w = noise((size_t)p.out_c * p.kernel_h * p.kernel_w * p.in_c);
        float *bias = noise((size_t)p.out_c), *alpha = noise((size_t)p.out_c);
        p.weights = w;
        p.bias = bias;
        p.prelu = alpha;
        const size_t xone = (size_t)g.in_h * g.in_w * g.in_c;
        const size_t yone = (size_t)g.out_h * g.out_w * g.out_c, ycount = yone * g.n;
        float *x = noise(xone * g.n);
        float *want = malloc(ycount * sizeof *want), *got = malloc(ycount * sizeof *got);
        float *alone = malloc(yone * sizeof *alone);
        run_layer(&nn_backend_reference, &p, &g, x, want, NULL);
        for (int b = 0; nn_backend_at(b); b++) {
            const nn_backend *be = nn_backend_at(b);
            if (be == &nn_backend_reference || !be->available())
                continue;
            for (int pi = 0; pi < 2; pi++) {
                memset(got, 0xff, ycount * sizeof *got);
                run_layer(be, &p, &g, x, got, pi ? pool3 : NULL);
                compare("CONV2D (model shape)", be->name, (int)s, want, got, ycount,
                        (size_t)p.kernel_h * p.kernel_w * p.in_c);
                for (int i = 0; i < g.n; i++) {
                    run_layer(be, &p, &one, x + i * xone, alone, pi ? NULL : pool3);
                    if (memcmp(alone, got + i * yone, yone * sizeof *alone) != 0)
                        fail_msg("%s, shape %zu, image %d: batch or threads change the output",
                                 be->name, s, i);
                }
            }
        }
        free(w);
        free(bias);
        free(alpha);
        free(x);
        free(want);
        free(got);
        free(alone);
    }
    nn_pool_free(pool3);
}

static void test_depthwise(void **state)
{
    (void)state;
    check_layers(NN_OP_DEPTHWISE_CONV2D, 300, SHAPES_ANY);
}

/* Channels [c0, c0 + 8) of an NHWC tensor of `c` channels. */
static float *channel_slice(const float *t, size_t pixels, int c, int c0)
{
    float *s = malloc(pixels * 8 * sizeof *s);
    for (size_t i = 0; i < pixels; i++)
        memcpy(s + i * 8, t + i * c + c0, 8 * sizeof *s);
    return s;
}

/* 1 if a[0..n) and b[0..n) are the same floats bit for bit (-0 is not 0). */
static int same_bits(const float *a, const float *b, int n)
{
    for (int i = 0; i < n; i++) {
        uint32_t ua, ub;
        memcpy(&ua, a + i, sizeof ua);
        memcpy(&ub, b + i, sizeof ub);
        if (ua != ub)
            return 0;
    }
    return 1;
}

/* The avx2 3x3 depthwise on shapes like MobileFaceNet's (16-channel
 * multiples, stride 1 and 2) takes 4-pixel blocks where the windows are
 * inside across (the top and bottom rows too, their padded kernel rows
 * skipped) and the per-pixel path at the left and right edges. Channels are independent, so the
 * same layer run one 8-channel slice at a time (the per-pixel path only)
 * must give the very same bits; and both must match the reference. */
static void test_depthwise_3x3_blocks(void **state)
{
    /* n, in_h, in_w, channels, stride */
    static const int shapes[][5] = {
        {1, 56, 56, 64, 1}, {1, 56, 56, 128, 2}, {1, 14, 14, 256, 1}, {1, 14, 14, 512, 2},
        {1, 7, 7, 256, 1},  {2, 9, 13, 32, 1},   {3, 8, 11, 16, 2},   {2, 5, 23, 48, 1},
        {1, 3, 3, 16, 1},   {1, 12, 2, 16, 1},   {2, 6, 18, 80, 2},   {1, 4, 9, 16, 1},
    };
    const nn_backend *avx = nn_backend_find("avx2");
    nn_pool *pool3 = NULL;
    facenet_error err;
    (void)state;
    if (!avx || !avx->available()) {
        skip();
        return;
    }
    assert_int_equal(nn_pool_create(3, &pool3, &err), FACENET_OK);
    for (size_t t = 0; t < sizeof shapes / sizeof shapes[0]; t++) {
        /* VALID, SAME (TensorFlow: none before at stride 2 on even sizes) and
         * explicit 1 all round (MobileFaceNet). */
        for (int mode = 0; mode < 3; mode++) {
            nn_conv_geom g;
            int after, out;
            memset(&g, 0, sizeof g);
            g.n = shapes[t][0];
            g.in_h = shapes[t][1];
            g.in_w = shapes[t][2];
            g.in_c = g.out_c = shapes[t][3];
            g.kernel_h = g.kernel_w = 3;
            g.stride_h = g.stride_w = shapes[t][4];
            nn_resolve_padding((nn_padding)mode, g.in_h, 3, g.stride_h, 1, 1, &g.pad_top, &after,
                               &out);
            g.out_h = out;
            nn_resolve_padding((nn_padding)mode, g.in_w, 3, g.stride_w, 1, 1, &g.pad_left, &after,
                               &out);
            g.out_w = out;
            if (g.out_h < 1 || g.out_w < 1)
                continue;
            g.act = (nn_activation)((t + (size_t)mode) % 3);
            const int c = g.in_c;
            const size_t in_pixels = (size_t)g.n * g.in_h * g.in_w;
            const size_t out_pixels = (size_t)g.n * g.out_h * g.out_w;
            float *w = noise((size_t)9 * c), *bias = noise((size_t)c), *alpha = noise((size_t)c);
            float *x = noise(in_pixels * c);
            float *want = malloc(out_pixels * c * sizeof *want);
            float *got = malloc(out_pixels * c * sizeof *got);
            float *part = malloc(out_pixels * 8 * sizeof *part);
            nn_layer_params p = {NN_OP_DEPTHWISE_CONV2D, w, c, 3, 3, c, bias, alpha};
            if (t % 2)
                p.prelu = NULL;
            run_layer(&nn_backend_reference, &p, &g, x, want, NULL);
            for (int pi = 0; pi < 2; pi++) {
                memset(got, 0xff, out_pixels * c * sizeof *got);
                run_layer(avx, &p, &g, x, got, pi ? pool3 : NULL);
                compare("DEPTHWISE_CONV2D 3x3", avx->name, (int)t, want, got, out_pixels * c, 9);
            }
            nn_conv_geom gs = g;
            gs.in_c = gs.out_c = 8;
            for (int c0 = 0; c0 < c; c0 += 8) {
                float *xs = channel_slice(x, in_pixels, c, c0);
                float *ws = channel_slice(w, 9, c, c0);
                nn_layer_params ps = {NN_OP_DEPTHWISE_CONV2D, ws, 8, 3, 3, 8, bias + c0,
                                      p.prelu ? alpha + c0 : NULL};
                memset(part, 0xff, out_pixels * 8 * sizeof *part);
                run_layer(avx, &ps, &gs, xs, part, NULL);
                for (size_t i = 0; i < out_pixels; i++)
                    if (!same_bits(part + i * 8, got + i * c + c0, 8))
                        fail_msg("3x3 depthwise shape %zu, padding %d: pixel %zu, channels "
                                 "%d..%d differ from the per-pixel path",
                                 t, mode, i, c0, c0 + 7);
                free(xs);
                free(ws);
            }
            free(w);
            free(bias);
            free(alpha);
            free(x);
            free(want);
            free(got);
            free(part);
        }
    }
    nn_pool_free(pool3);
}

static void test_fully_connected(void **state)
{
    (void)state;
    check_layers(NN_OP_FULLY_CONNECTED, 150, SHAPES_ANY);
}

static void test_pooling(void **state)
{
    nn_pool *pool3 = NULL;
    facenet_error err;
    (void)state;
    assert_int_equal(nn_pool_create(3, &pool3, &err), FACENET_OK);
    for (int t = 0; t < 300; t++) {
        nn_conv_geom g;
        if (!random_geom(&g, 1, SHAPES_ANY))
            continue;
        const int is_max = (int)rnd(2);
        const size_t xcount = (size_t)g.n * g.in_h * g.in_w * g.in_c;
        const size_t ycount = (size_t)g.n * g.out_h * g.out_w * g.out_c;
        float *x = noise(xcount);
        float *want = malloc(ycount * sizeof *want), *got = malloc(ycount * sizeof *got);
        nn_backend_reference.pool2d(&g, x, want, is_max, NULL);
        for (int b = 0; nn_backend_at(b); b++) {
            const nn_backend *be = nn_backend_at(b);
            if (be == &nn_backend_reference || !be->available())
                continue;
            for (int pi = 0; pi < 2; pi++) {
                memset(got, 0xff, ycount * sizeof *got);
                be->pool2d(&g, x, got, is_max, pi ? pool3 : NULL);
                compare(is_max ? "MAX_POOL2D" : "AVG_POOL2D", be->name, t, want, got, ycount,
                        (size_t)g.kernel_h * g.kernel_w);
            }
        }
        free(x);
        free(want);
        free(got);
    }
    nn_pool_free(pool3);
}

/* The 2x2, stride 2 max pool after a conv, SAME (ceil) or VALID (floor). */
static void pool_after(const nn_conv_geom *g, int same, nn_conv_geom *pg)
{
    memset(pg, 0, sizeof *pg);
    pg->n = g->n;
    pg->in_h = g->out_h;
    pg->in_w = g->out_w;
    pg->in_c = pg->out_c = g->out_c;
    pg->kernel_h = pg->kernel_w = 2;
    pg->stride_h = pg->stride_w = 2;
    pg->out_h = same ? (g->out_h + 1) / 2 : g->out_h / 2;
    pg->out_w = same ? (g->out_w + 1) / 2 : g->out_w / 2;
    pg->act = NN_ACT_NONE;
}

/* 3x3 stride-2 max pools (R-Net's and O-Net's, fused or not: the avx2
 * backend's max3x3s2_row): SAME and VALID, odd and even sizes, 4 to 68
 * channels (a multiple of 4 or not, past the 64 it takes), batches of 1 to
 * 3, 1 and 3 threads, and an activation sometimes; the reference's values
 * bit for bit (a max is exact). */
static void test_max_pool_3x3s2(void **state)
{
    nn_pool *pool3 = NULL;
    facenet_error err;
    (void)state;
    assert_int_equal(nn_pool_create(3, &pool3, &err), FACENET_OK);
    for (int t = 0; t < 200; t++) {
        nn_conv_geom g;
        int pad_after;
        memset(&g, 0, sizeof g);
        g.n = 1 + (int)rnd(3);
        g.in_h = 1 + (int)rnd(48);
        g.in_w = 1 + (int)rnd(48);
        g.in_c = g.out_c = rnd(4) ? 4 * (1 + (int)rnd(17)) : 1 + (int)rnd(68);
        g.kernel_h = g.kernel_w = 3;
        g.stride_h = g.stride_w = 2;
        const nn_padding mode = (nn_padding)rnd(2);
        nn_resolve_padding(mode, g.in_h, 3, 2, 0, 0, &g.pad_top, &pad_after, &g.out_h);
        nn_resolve_padding(mode, g.in_w, 3, 2, 0, 0, &g.pad_left, &pad_after, &g.out_w);
        g.act = rnd(5) ? NN_ACT_NONE : NN_ACT_RELU;
        if (g.out_h < 1 || g.out_w < 1)
            continue;
        const size_t xcount = (size_t)g.n * g.in_h * g.in_w * g.in_c;
        const size_t ycount = (size_t)g.n * g.out_h * g.out_w * g.out_c;
        float *x = noise(xcount);
        float *want = malloc(ycount * sizeof *want), *got = malloc(ycount * sizeof *got);
        nn_backend_reference.pool2d(&g, x, want, 1, NULL);
        for (int b = 0; nn_backend_at(b); b++) {
            const nn_backend *be = nn_backend_at(b);
            if (be == &nn_backend_reference || !be->available())
                continue;
            for (int pi = 0; pi < 2; pi++) {
                memset(got, 0xff, ycount * sizeof *got);
                be->pool2d(&g, x, got, 1, pi ? pool3 : NULL);
                if (memcmp(got, want, ycount * sizeof *got) != 0)
                    fail_msg("3x3/2 max pool on %s, trial %d (%dx%dx%d, pad %d,%d): not the "
                             "reference's", be->name, t, g.in_h, g.in_w, g.in_c, g.pad_top,
                             g.pad_left);
            }
        }
        free(x);
        free(want);
        free(got);
    }
    nn_pool_free(pool3);
}

/* The backends nn_backend_at lists, then avx2-int8 (found by name only),
 * whose fused layers are avx2's on the layers it keeps in fp32; NULL past
 * the end. */
static const nn_backend *backend_or_int8(int i)
{
    const nn_backend *b = nn_backend_at(i);
    if (b || i == 0 || !nn_backend_at(i - 1))
        return b;
    return &nn_backend_avx2_int8;
}

/* A conv fused with the max pool after it (P-Net's first layer) gives
 * exactly the two layers run apart on the same backend, and the
 * reference's values up to rounding; shapes it cannot take are refused. */
static void test_conv_maxpool_fused(void **state)
{
    nn_pool *pool3 = NULL;
    facenet_error err;
    int checked = 0;
    (void)state;
    assert_int_equal(nn_pool_create(3, &pool3, &err), FACENET_OK);
    for (int t = 0; t < 300; t++) {
        nn_conv_geom g, pg;
        /* A 1x1 conv is a GEMM on avx2, not the direct kernel. */
        if (!random_geom(&g, 0, SHAPES_DIRECT) || (g.kernel_h == 1 && g.kernel_w == 1))
            continue;
        pool_after(&g, (int)rnd(2), &pg);
        if (pg.out_h < 1 || pg.out_w < 1)
            continue;
        nn_layer_params p;
        memset(&p, 0, sizeof p);
        p.op = NN_OP_CONV2D;
        p.out_c = g.out_c;
        p.kernel_h = g.kernel_h;
        p.kernel_w = g.kernel_w;
        p.in_c = g.in_c;
        float *w = noise((size_t)p.out_c * p.kernel_h * p.kernel_w * p.in_c);
        float *bias = noise((size_t)p.out_c), *alpha = noise((size_t)p.out_c);
        p.weights = w;
        p.bias = rnd(3) ? bias : NULL;
        p.prelu = rnd(2) ? alpha : NULL;
        const size_t conv_count = (size_t)g.n * g.out_h * g.out_w * g.out_c;
        const size_t ycount = (size_t)g.n * pg.out_h * pg.out_w * pg.out_c;
        float *x = noise((size_t)g.n * g.in_h * g.in_w * g.in_c);
        float *conv = malloc(conv_count * sizeof *conv);
        float *want = malloc(ycount * sizeof *want), *apart = malloc(ycount * sizeof *apart);
        float *got = malloc(ycount * sizeof *got);
        run_layer(&nn_backend_reference, &p, &g, x, conv, NULL);
        nn_backend_reference.pool2d(&pg, conv, want, 1, NULL);
        for (int b = 0; backend_or_int8(b); b++) {
            const nn_backend *be = backend_or_int8(b);
            const nn_fused_ops *ops = nn_backend_fused(be);
            if (!ops || !be->available())
                continue;
            assert_true(ops->conv_maxpool_supported(&g, &pg));
            void *prepared = be->prepare(&p);
            assert_non_null(prepared);
            for (int pi = 0; pi < 2; pi++) {
                nn_pool *pool = pi ? pool3 : NULL;
                const int threads = pi ? 3 : 1;
                const size_t s1 = be->conv2d_scratch(&g, threads);
                const size_t s2 = ops->conv_maxpool_scratch(&g, &pg, threads);
                float *scratch = malloc(((s1 > s2 ? s1 : s2) + 1) * sizeof *scratch);
                be->conv2d(&g, x, prepared, scratch, conv, pool);
                be->pool2d(&pg, conv, apart, 1, pool);
                memset(got, 0xff, ycount * sizeof *got); /* NaN: unwritten shows */
                ops->conv_maxpool(&g, &pg, x, prepared, scratch, got, pool);
                if (memcmp(got, apart, ycount * sizeof *got) != 0)
                    fail_msg("fused conv + max pool on %s, trial %d: not the layers run apart",
                             be->name, t);
                compare("CONV2D + MAX_POOL2D", be->name, t, want, got, ycount,
                        (size_t)p.kernel_h * p.kernel_w * p.in_c);
                free(scratch);
                checked++;
            }
            /* Shapes the fused kernel does not take. */
            nn_conv_geom other = pg;
            other.kernel_h = other.kernel_w = 3;
            assert_false(ops->conv_maxpool_supported(&g, &other));
            other = pg;
            other.act = NN_ACT_RELU;
            assert_false(ops->conv_maxpool_supported(&g, &other));
            other = pg;
            other.pad_top = 1;
            assert_false(ops->conv_maxpool_supported(&g, &other));
            other = g;
            other.in_c = 5;
            assert_false(ops->conv_maxpool_supported(&other, &pg));
            be->release(prepared);
        }
        free(w);
        free(bias);
        free(alpha);
        free(x);
        free(conv);
        free(want);
        free(apart);
        free(got);
    }
    /* No fused layers on the reference: it runs the two layers apart. */
    assert_null(nn_backend_fused(&nn_backend_reference));
    if (nn_backend_find("avx2"))
        assert_true(checked > 100);
    nn_pool_free(pool3);
}

/* A max pool after a first layer of the row kernel: R-Net's and O-Net's
 * 3x3 stride 2 (SAME, one row of padding after), then random ones; with
 * `mostly_3x3s2`, 3x3 stride 2 SAME or VALID in 3 trials of 4 (the avx2
 * backend's own pool for those). */
static void random_pool_after(const nn_conv_geom *g, int trial, int mostly_3x3s2,
                              nn_conv_geom *pg)
{
    int pad_after;
    const int fixed = trial < 2 || (mostly_3x3s2 && rnd(4) != 0);
    memset(pg, 0, sizeof *pg);
    pg->n = g->n;
    pg->in_h = g->out_h;
    pg->in_w = g->out_w;
    pg->in_c = pg->out_c = g->out_c;
    pg->kernel_h = fixed ? 3 : 1 + (int)rnd(3);
    pg->kernel_w = fixed ? 3 : 1 + (int)rnd(3);
    pg->stride_h = fixed ? 2 : 1 + (int)rnd(2);
    pg->stride_w = fixed ? 2 : 1 + (int)rnd(2);
    const nn_padding mode = trial < 2 ? NN_PAD_SAME : (nn_padding)rnd(2);
    nn_resolve_padding(mode, pg->in_h, pg->kernel_h, pg->stride_h, 0, 0, &pg->pad_top,
                       &pad_after, &pg->out_h);
    nn_resolve_padding(mode, pg->in_w, pg->kernel_w, pg->stride_w, 0, 0, &pg->pad_left,
                       &pad_after, &pg->out_w);
    pg->act = NN_ACT_NONE;
}

/* The row kernel fused with the max pool after it gives exactly the two
 * layers run apart, with 1 and 3 threads, and the reference's values up
 * to rounding. `mostly_3x3s2`: 3x3/2 pools in most trials (the avx2
 * backend's own pool for R-Net's and O-Net's, max3x3s2_row: odd and even
 * widths, SAME and VALID, channels a multiple of 4 or not), some PReLU
 * slopes 0; otherwise any small pool. */
static void check_first_layer_pools(int mostly_3x3s2)
{
    static const nn_conv_geom models[] = {
        {40, 24, 24, 3, 22, 22, 28, 3, 3, 1, 1, 0, 0, NN_ACT_NONE}, /* R-Net conv1 */
        {3, 48, 48, 3, 46, 46, 32, 3, 3, 1, 1, 0, 0, NN_ACT_NONE},  /* O-Net conv1 */
    };
    nn_pool *pool3 = NULL;
    facenet_error err;
    int checked = 0;
    assert_int_equal(nn_pool_create(3, &pool3, &err), FACENET_OK);
    for (int t = 0; t < 200; t++) {
        nn_conv_geom g, pg;
        if (t < 2)
            g = models[t];
        else if (!random_geom(&g, 0, SHAPES_FIRST_LAYER) || (g.kernel_h == 1 && g.kernel_w == 1))
            continue;
        random_pool_after(&g, t, mostly_3x3s2, &pg);
        if (pg.out_h < 1 || pg.out_w < 1)
            continue;
        nn_layer_params p;
        memset(&p, 0, sizeof p);
        p.op = NN_OP_CONV2D;
        p.out_c = g.out_c;
        p.kernel_h = g.kernel_h;
        p.kernel_w = g.kernel_w;
        p.in_c = g.in_c;
        float *w = noise((size_t)p.out_c * p.kernel_h * p.kernel_w * p.in_c);
        float *bias = noise((size_t)p.out_c), *alpha = noise((size_t)p.out_c);
        for (int o = 0; mostly_3x3s2 && o < p.out_c; o++)
            alpha[o] *= rnd(8) ? 1.0f : 0.0f; /* some slopes 0 */
        p.weights = w;
        p.bias = rnd(3) ? bias : NULL;
        p.prelu = rnd(2) || t < 2 ? alpha : NULL;
        const size_t conv_count = (size_t)g.n * g.out_h * g.out_w * g.out_c + 1;
        const size_t ycount = (size_t)g.n * pg.out_h * pg.out_w * pg.out_c;
        float *x = noise((size_t)g.n * g.in_h * g.in_w * g.in_c);
        float *conv = malloc(conv_count * sizeof *conv);
        float *want = malloc((ycount + 1) * sizeof *want);
        float *apart = malloc((ycount + 1) * sizeof *apart);
        float *got = malloc((ycount + 1) * sizeof *got);
        run_layer(&nn_backend_reference, &p, &g, x, conv, NULL);
        nn_backend_reference.pool2d(&pg, conv, want, 1, NULL);
        for (int bi = 0; bi < 2; bi++) {
            const nn_backend *be = nn_backend_find(bi ? "avx2-int8" : "avx2");
            if (!be)
                continue;
            const nn_fused_ops *ops = nn_backend_fused(be);
            assert_true(ops->conv_maxpool_supported(&g, &pg));
            void *prepared = be->prepare(&p);
            assert_non_null(prepared);
            for (int pi = 0; pi < 2; pi++) {
                nn_pool *pool = pi ? pool3 : NULL;
                const int threads = pi ? 3 : 1;
                const size_t s1 = be->conv2d_scratch(&g, threads);
                const size_t s2 = ops->conv_maxpool_scratch(&g, &pg, threads);
                float *scratch = malloc(((s1 > s2 ? s1 : s2) + 1) * sizeof *scratch);
                be->conv2d(&g, x, prepared, scratch, conv, pool);
                be->pool2d(&pg, conv, apart, 1, pool);
                memset(got, 0xff, ycount * sizeof *got); /* NaN: unwritten shows */
                ops->conv_maxpool(&g, &pg, x, prepared, scratch, got, pool);
                if (memcmp(got, apart, ycount * sizeof *got) != 0)
                    fail_msg("fused first layer + max pool on %s (%s), trial %d: not the "
                             "layers run apart", be->name,
                             mostly_3x3s2 ? "mostly 3x3/2" : "any pool", t);
                compare("CONV2D + MAX_POOL2D", be->name, t, want, got, ycount,
                        (size_t)p.kernel_h * p.kernel_w * p.in_c);
                free(scratch);
                checked++;
            }
            /* A pool with an activation, or padding as wide as its window,
             * runs apart. */
            nn_conv_geom other = pg;
            other.act = NN_ACT_RELU;
            assert_false(ops->conv_maxpool_supported(&g, &other));
            other = pg;
            other.pad_top = other.kernel_h;
            assert_false(ops->conv_maxpool_supported(&g, &other));
            be->release(prepared);
        }
        free(w);
        free(bias);
        free(alpha);
        free(x);
        free(conv);
        free(want);
        free(apart);
        free(got);
    }
    if (nn_backend_find("avx2-int8")) {
        assert_true(checked > 200);
        /* A 1x1 stride-2 conv of 3 channels: the avx2 row kernel, but
         * int8 on avx2-int8, which then runs it apart from its pool. */
        const nn_conv_geom g = {2, 24, 24, 3, 12, 12, 16, 1, 1, 2, 2, 0, 0, NN_ACT_NONE};
        nn_conv_geom pg;
        random_pool_after(&g, 0, 0, &pg);
        assert_true(nn_backend_fused(&nn_backend_avx2)->conv_maxpool_supported(&g, &pg));
        assert_false(nn_backend_fused(&nn_backend_avx2_int8)->conv_maxpool_supported(&g, &pg));
    }
    nn_pool_free(pool3);
}

static void test_first_layer_maxpool_fused(void **state)
{
    (void)state;
    check_first_layer_pools(0);
}

static void test_first_layer_maxpool_3x3s2(void **state)
{
    (void)state;
    check_first_layer_pools(1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_conv2d),
        cmocka_unit_test(test_conv2d_few_channels),
        cmocka_unit_test(test_conv2d_first_layers),
        cmocka_unit_test(test_model_first_layers),
        cmocka_unit_test(test_depthwise),
        cmocka_unit_test(test_depthwise_3x3_blocks),
        cmocka_unit_test(test_fully_connected),
        cmocka_unit_test(test_pooling),
        cmocka_unit_test(test_max_pool_3x3s2),
        cmocka_unit_test(test_conv_maxpool_fused),
        cmocka_unit_test(test_first_layer_maxpool_fused),
        cmocka_unit_test(test_first_layer_maxpool_3x3s2),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
