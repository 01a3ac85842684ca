/*
 * Golden parity of the TFLite models through the public API: P-Net, R-Net,
 * O-Net and MobileFaceNet raw outputs against the numpy reference in
 * $FACENET_GOLDEN_DIR (synthetic.json, lfw_AJ_Cook_0001.json and its
 * aligned crop), with the tolerances of the golden README, section 6.
 *
 * Input conventions (README sections 3 and 4):
 *   - MTCNN: (v - 127.5) * 0.0078125, fed transposed: t[n][x][y][c] =
 *     img[y][x][c], so outputs come back as [N, W', H', C].
 *   - MobileFaceNet: NHWC RGB, (v - 127.5) / 128.
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

#include "support/testutil.h"

#define MTCNN_TOL 1e-5f

/* ---- helpers ----------------------------------------------------------- */

static json_t *synthetic(const char *key)
{
    json_t *root = tu_golden_json("synthetic.json");
    json_t *v = json_object_get(root, key);
    if (!v)
        fail_msg("synthetic.json has no '%s'", key);
    json_incref(v);
    json_decref(root);
    return v;
}

static float golden_float(const json_t *obj, const char *key)
{
    const json_t *v = json_object_get(obj, key);
    if (!json_is_number(v))
        fail_msg("golden field '%s' is not a number", key);
    return (float)json_number_value(v);
}

static size_t golden_floats(const json_t *obj, const char *key, float *out,
                            size_t max)
{
    const json_t *v = json_object_get(obj, key);
    if (!v)
        fail_msg("golden field '%s' is missing", key);
    return tu_json_floats(v, out, max);
}

/* The MTCNN network input for an h x w pattern image (optionally mirrored
 * left-right), transposed to [1, w, h, 3]. */
static float *mtcnn_pattern_input(int h, int w, int mirrored)
{
    float *t = malloc((size_t)w * (size_t)h * 3 * sizeof *t);
    assert_non_null(t);
    for (int x = 0; x < w; x++)
        for (int y = 0; y < h; y++)
            for (int c = 0; c < 3; c++) {
                int sx = mirrored ? w - 1 - x : x;
                t[((size_t)x * (size_t)h + (size_t)y) * 3 + (size_t)c] =
                    (tu_pattern(sx, y, c) - 127.5f) * 0.0078125f;
            }
    return t;
}

/* Run one model on one input; the caller frees the session. */
static facenet_session *run(const facenet_model *model, const float *input,
                            int n, int h, int w, int c)
{
    facenet_session *s = NULL;
    facenet_error err;
    if (facenet_session_create(model, &s, &err) != FACENET_OK)
        fail_msg("session: %s", err.message);
    if (facenet_session_run(s, input, n, h, w, c, &err) != FACENET_OK)
        fail_msg("run: %s", err.message);
    return s;
}

/* The one output whose last dim is `channels` (outputs are found by what
 * they hold, not by their order in the file). */
static const float *output_with_channels(const facenet_model *model,
                                         const facenet_session *s, int channels,
                                         int dims[4], int *rank)
{
    facenet_error err;
    const float *data = NULL;
    int found = 0;
    for (int i = 0; i < facenet_model_output_count(model); i++) {
        const float *d;
        int dd[4], r;
        if (facenet_session_output(s, i, &d, dd, &r, &err) != FACENET_OK)
            fail_msg("output %d: %s", i, err.message);
        if (dd[r - 1] == channels) {
            data = d;
            memcpy(dims, dd, sizeof dd);
            *rank = r;
            found++;
        }
    }
    if (found != 1)
        fail_msg("%d outputs with %d channels", found, channels);
    return data;
}

static void expect_close(const float *got, const float *want, size_t n,
                         float tol, const char *what)
{
    float d = tu_max_abs_diff(got, want, n);
    print_message("%-34s max abs diff %.3g (tolerance %.3g)\n", what, (double)d,
                  (double)tol);
    if (!(d <= tol))
        fail_msg("%s: max abs diff %g > %g", what, (double)d, (double)tol);
}

/* README: raw embeddings within 1e-4 * max|v| and cosine >= 0.99999. */
static void expect_embedding(const float *got, const float *want, size_t n,
                             const char *what)
{
    float d = tu_max_abs_diff(got, want, n);
    float tol = 1e-4f * tu_max_abs(want, n);
    double cos = tu_cosine(got, want, n);
    print_message("%-34s max abs diff %.3g (tolerance %.3g), cosine %.9f\n",
                  what, (double)d, (double)tol, cos);
    if (!(d <= tol) || !(cos >= 0.99999))
        fail_msg("%s: max abs diff %g (tol %g), cosine %.8f", what, (double)d,
                 (double)tol, cos);
}

/* ---- MTCNN ------------------------------------------------------------- */

static void test_pnet_pattern_30x40(void **state)
{
    enum { H = 30, W = 40, OH = 10, OW = 15 };
    facenet_model *model = tu_load_model("mtcnn-pnet");
    json_t *g = synthetic("pnet_pattern_30x40");
    float *in = mtcnn_pattern_input(H, W, 0);
    float want_prob[OH * OW], want_reg[OH * OW * 4];
    float got_prob[OH * OW], got_reg[OH * OW * 4];
    const float *prob, *reg;
    int dims[4], rank;
    facenet_session *s;
    (void)state;

    assert_int_equal(golden_floats(g, "prob_face_HxW", want_prob, OH * OW),
                     OH * OW);
    assert_int_equal(golden_floats(g, "reg_HxWx4", want_reg, OH * OW * 4),
                     OH * OW * 4);
    s = run(model, in, 1, W, H, 3);
    prob = output_with_channels(model, s, 2, dims, &rank);
    assert_int_equal(rank, 4);
    assert_int_equal(dims[1], OW); /* transposed: [1, W', H', C] */
    assert_int_equal(dims[2], OH);
    reg = output_with_channels(model, s, 4, dims, &rank);
    /* Transpose back to image orientation [H'][W']. */
    for (int y = 0; y < OH; y++)
        for (int x = 0; x < OW; x++) {
            size_t cell = (size_t)x * OH + (size_t)y;
            got_prob[y * OW + x] = prob[cell * 2 + 1];
            for (int k = 0; k < 4; k++)
                got_reg[(y * OW + x) * 4 + k] = reg[cell * 4 + (size_t)k];
        }
    expect_close(got_prob, want_prob, OH * OW, MTCNN_TOL, "pnet 30x40 prob");
    expect_close(got_reg, want_reg, OH * OW * 4, MTCNN_TOL, "pnet 30x40 reg");
    facenet_session_free(s);
    free(in);
    json_decref(g);
    facenet_model_free(model);
}

static void test_rnet_pattern_24(void **state)
{
    facenet_model *model = tu_load_model("mtcnn-rnet");
    json_t *g = synthetic("rnet_pattern_24");
    float *in = mtcnn_pattern_input(24, 24, 0);
    float want_reg[4];
    const float *prob, *reg;
    int dims[4], rank;
    facenet_session *s;
    (void)state;

    assert_int_equal(golden_floats(g, "reg", want_reg, 4), 4);
    s = run(model, in, 1, 24, 24, 3);
    prob = output_with_channels(model, s, 2, dims, &rank);
    reg = output_with_channels(model, s, 4, dims, &rank);
    {
        float want = golden_float(g, "prob_face");
        expect_close(&prob[1], &want, 1, MTCNN_TOL, "rnet 24 prob");
    }
    expect_close(reg, want_reg, 4, MTCNN_TOL, "rnet 24 reg");
    facenet_session_free(s);
    free(in);
    json_decref(g);
    facenet_model_free(model);
}

static void check_onet(const facenet_model *model, const char *key,
                       int mirrored)
{
    json_t *g = synthetic(key);
    float *in = mtcnn_pattern_input(48, 48, mirrored);
    float want_reg[4], want_lm[10], want_prob;
    const float *prob, *reg, *lm;
    int dims[4], rank;
    char what[64];
    facenet_session *s;

    assert_int_equal(golden_floats(g, "reg", want_reg, 4), 4);
    assert_int_equal(golden_floats(g, "landmarks_raw", want_lm, 10), 10);
    want_prob = golden_float(g, "prob_face");
    s = run(model, in, 1, 48, 48, 3);
    prob = output_with_channels(model, s, 2, dims, &rank);
    reg = output_with_channels(model, s, 4, dims, &rank);
    lm = output_with_channels(model, s, 10, dims, &rank);
    (void)snprintf(what, sizeof what, "%s prob", key);
    expect_close(&prob[1], &want_prob, 1, MTCNN_TOL, what);
    (void)snprintf(what, sizeof what, "%s reg", key);
    expect_close(reg, want_reg, 4, MTCNN_TOL, what);
    (void)snprintf(what, sizeof what, "%s landmarks", key);
    expect_close(lm, want_lm, 10, MTCNN_TOL, what);
    facenet_session_free(s);
    free(in);
    json_decref(g);
}

static void test_onet_pattern_48(void **state)
{
    facenet_model *model = tu_load_model("mtcnn-onet");
    (void)state;
    check_onet(model, "onet_pattern_48", 0);
    check_onet(model, "onet_pattern_48_mirrored", 1);
    facenet_model_free(model);
}

/* R-Net and O-Net run candidates in batches: a batch of different crops
 * must give each crop's own batch-1 result. */
static void test_onet_batch(void **state)
{
    facenet_model *model = tu_load_model("mtcnn-onet");
    float *a = mtcnn_pattern_input(48, 48, 0);
    float *b = mtcnn_pattern_input(48, 48, 1);
    const size_t n = 48 * 48 * 3;
    float *batch = malloc(3 * n * sizeof *batch);
    float single[2][10];
    const float *lm;
    int dims[4], rank;
    facenet_session *s;
    (void)state;

    assert_non_null(batch);
    for (int k = 0; k < 2; k++) {
        s = run(model, k ? b : a, 1, 48, 48, 3);
        lm = output_with_channels(model, s, 10, dims, &rank);
        memcpy(single[k], lm, sizeof single[k]);
        facenet_session_free(s);
    }
    memcpy(batch, a, n * sizeof *batch);
    memcpy(batch + n, b, n * sizeof *batch);
    memcpy(batch + 2 * n, a, n * sizeof *batch);
    s = run(model, batch, 3, 48, 48, 3);
    lm = output_with_channels(model, s, 10, dims, &rank);
    assert_int_equal(dims[0], 3);
    expect_close(lm, single[0], 10, 1e-6f, "onet batch row 0");
    expect_close(lm + 10, single[1], 10, 1e-6f, "onet batch row 1");
    expect_close(lm + 20, single[0], 10, 1e-6f, "onet batch row 2");
    facenet_session_free(s);
    free(batch);
    free(a);
    free(b);
    facenet_model_free(model);
}

/* ---- MobileFaceNet ----------------------------------------------------- */

static float *mfn_input(int pattern)
{
    float *t = malloc(112 * 112 * 3 * sizeof *t);
    assert_non_null(t);
    for (int y = 0; y < 112; y++)
        for (int x = 0; x < 112; x++)
            for (int c = 0; c < 3; c++) {
                float v = pattern ? tu_pattern(x, y, c) : 128.0f;
                t[(y * 112 + x) * 3 + c] = (v - 127.5f) / 128.0f;
            }
    return t;
}

static float *mfn_crop_input(int mirrored)
{
    char path[4096];
    int dims[4], rank;
    float *crop, *t;
    (void)snprintf(path, sizeof path, "%s/lfw_AJ_Cook_0001_face0_aligned112_f32.npy",
                   tu_golden_dir());
    crop = tu_read_npy_f32(path, dims, &rank);
    assert_int_equal(rank, 3);
    assert_int_equal(dims[0], 112);
    assert_int_equal(dims[1], 112);
    assert_int_equal(dims[2], 3);
    t = malloc(112 * 112 * 3 * sizeof *t);
    assert_non_null(t);
    for (int y = 0; y < 112; y++)
        for (int x = 0; x < 112; x++)
            for (int c = 0; c < 3; c++) {
                int sx = mirrored ? 111 - x : x;
                t[(y * 112 + x) * 3 + c] =
                    (crop[(y * 112 + sx) * 3 + c] - 127.5f) / 128.0f;
            }
    free(crop);
    return t;
}

static void embed(const facenet_model *model, const float *in, int n,
                  float *out)
{
    facenet_session *s = run(model, in, n, 112, 112, 3);
    const float *e;
    int dims[4], rank;
    e = output_with_channels(model, s, 192, dims, &rank);
    assert_int_equal(rank, 2);
    assert_int_equal(dims[0], n);
    memcpy(out, e, (size_t)n * 192 * sizeof *out);
    facenet_session_free(s);
}

static void test_mobilefacenet_synthetic(void **state)
{
    facenet_model *model = tu_load_model("mobilefacenet");
    float want[192], got[192];
    (void)state;

    for (int pattern = 0; pattern < 2; pattern++) {
        const char *key = pattern ? "mfn_pattern" : "mfn_grey128";
        json_t *g = synthetic(key);
        float *in = mfn_input(pattern);
        assert_int_equal(golden_floats(g, "output_raw", want, 192), 192);
        embed(model, in, 1, got);
        expect_embedding(got, want, 192, key);
        free(in);
        json_decref(g);
    }
    facenet_model_free(model);
}

static void test_mobilefacenet_aj_cook(void **state)
{
    facenet_model *model = tu_load_model("mobilefacenet");
    json_t *root = tu_golden_json("lfw_AJ_Cook_0001.json");
    const json_t *face = json_array_get(json_object_get(root, "faces"), 0);
    float want[192], want_mirror[192], got[192];
    float *in, *mirror;
    (void)state;

    assert_non_null(face);
    assert_int_equal(golden_floats(face, "mobilefacenet_raw", want, 192), 192);
    assert_int_equal(golden_floats(face, "mobilefacenet_raw_of_mirrored_crop",
                                   want_mirror, 192), 192);
    in = mfn_crop_input(0);
    embed(model, in, 1, got);
    expect_embedding(got, want, 192, "AJ_Cook face 0 crop");
    mirror = mfn_crop_input(1);
    embed(model, mirror, 1, got);
    expect_embedding(got, want_mirror, 192, "AJ_Cook face 0 mirrored crop");
    free(mirror);
    free(in);
    json_decref(root);
    facenet_model_free(model);
}

/* The file is stored at batch 2; batch 16 must give 16 independent rows. */
static void test_mobilefacenet_batch16(void **state)
{
    enum { N = 16, PIX = 112 * 112 * 3 };
    facenet_model *model = tu_load_model("mobilefacenet");
    float *inputs[3], single[3][192];
    float *batch = malloc((size_t)N * PIX * sizeof *batch);
    float *got = malloc((size_t)N * 192 * sizeof *got);
    (void)state;

    assert_non_null(batch);
    assert_non_null(got);
    inputs[0] = mfn_input(0);
    inputs[1] = mfn_input(1);
    inputs[2] = mfn_crop_input(0);
    for (int k = 0; k < 3; k++)
        embed(model, inputs[k], 1, single[k]);
    for (int i = 0; i < N; i++)
        memcpy(batch + (size_t)i * PIX, inputs[(i * 5) % 3],
               PIX * sizeof *batch);
    embed(model, batch, N, got);
    for (int i = 0; i < N; i++) {
        char what[64];
        (void)snprintf(what, sizeof what, "batch 16 row %d", i);
        expect_embedding(got + (size_t)i * 192, single[(i * 5) % 3], 192, what);
    }
    for (int k = 0; k < 3; k++)
        free(inputs[k]);
    free(batch);
    free(got);
    facenet_model_free(model);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_pnet_pattern_30x40),
        cmocka_unit_test(test_rnet_pattern_24),
        cmocka_unit_test(test_onet_pattern_48),
        cmocka_unit_test(test_onet_batch),
        cmocka_unit_test(test_mobilefacenet_synthetic),
        cmocka_unit_test(test_mobilefacenet_aj_cook),
        cmocka_unit_test(test_mobilefacenet_batch16),
    };
    /* Both data sets are needed: skip (77) up front if either is absent. */
    (void)tu_golden_dir();
    (void)tu_model_dir();
    return cmocka_run_group_tests(tests, NULL, NULL);
}
