/*
 * Tests of the ensemble's fusion scales (src/verify/fusion.h) and of the
 * jitter test-time augmentation (align_jitter_*, facenet_embedder_set_jitter).
 * Every expected value is computed by hand in the comments.
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

#include "align/align.h"
#include "support/testutil.h"
#include "verify/fusion.h"
#include "verify/lfw.h"

/* ---- logistic regression ------------------------------------------------ */

/* A 2x2 design whose cell log-odds are exactly additive, b = (0, ln 3,
 * 2 ln 3): cell (x0, x1) holds 3^(x0 + 2 x1) positives and 1 negative, so
 * its observed log-odds is (x0 + 2 x1) ln 3. The maximum-likelihood fit
 * reproduces additive cell log-odds exactly. */
static size_t additive_design(double *x0, double *x1, unsigned char *y)
{
    size_t n = 0;
    for (int a = 0; a < 2; a++)
        for (int b = 0; b < 2; b++) {
            int positives = (int)lround(pow(3, a + 2 * b));
            for (int k = 0; k <= positives; k++) {
                x0[n] = a;
                x1[n] = b;
                y[n] = k < positives; /* the last one is the negative */
                n++;
            }
        }
    return n; /* 1+1 + 3+1 + 9+1 + 27+1 = 44 */
}

static void test_logistic_recovers_additive_log_odds(void **state)
{
    (void)state;
    double x0[64], x1[64], b[3];
    unsigned char y[64];
    facenet_error err;
    size_t n = additive_design(x0, x1, y);
    assert_int_equal(n, 44);
    assert_int_equal(lfw_logistic_fit(x0, x1, y, NULL, n, b, &err), FACENET_OK);
    assert_true(fabs(b[0]) < 1e-6);
    assert_true(fabs(b[1] - log(3)) < 1e-6);
    assert_true(fabs(b[2] - 2 * log(3)) < 1e-6);

    /* Scaling a feature by 10 divides its coefficient by 10. */
    for (size_t i = 0; i < n; i++)
        x1[i] *= 10;
    assert_int_equal(lfw_logistic_fit(x0, x1, y, NULL, n, b, &err), FACENET_OK);
    assert_true(fabs(b[2] - 0.2 * log(3)) < 1e-7);

    /* `use` leaves pairs out: with only cells (0,0) and (1,0) there are 2
     * negatives and 4 positives, enough to fit. Fewer than two of a class
     * is refused. */
    unsigned char use[64] = {0};
    use[0] = use[1] = 1; /* cell (0,0): one positive, one negative */
    assert_int_equal(lfw_logistic_fit(x0, x1, y, use, n, b, &err),
                     FACENET_ERR_INVALID_ARGUMENT);
    x0[3] = NAN;
    assert_int_equal(lfw_logistic_fit(x0, x1, y, NULL, n, b, &err),
                     FACENET_ERR_INVALID_ARGUMENT);
}

/* ---- fusion ratios ------------------------------------------------------- */

/* 20 pairs, two folds of 10, each fold the same pattern: pairs 0-4 same
 * person, 5-9 different. Model 0: same 0.5, different 1.5. Model 1: same
 * 0.1, different 0.3. */
static void two_model_pairs(double *d0, double *d1, unsigned char *same)
{
    for (int i = 0; i < 20; i++) {
        int s = i % 10 < 5;
        same[i] = (unsigned char)s;
        d0[i] = s ? 0.5 : 1.5;
        d1[i] = s ? 0.1 : 0.3;
    }
}

static void test_fusion_separation_and_threshold(void **state)
{
    (void)state;
    double d0[20], d1[20], ratio[2];
    unsigned char same[20];
    facenet_error err;
    two_model_pairs(d0, d1, same);

    /* Separation: gaps 1.0 and 0.2, so a1 / a0 = (1 / 0.2) / (1 / 1.0) = 5
     * on every fold and on all pairs. */
    assert_int_equal(lfw_fusion_ratio(LFW_FUSION_SEPARATION, d0, d1, same, 20, 2, ratio, &err),
                     FACENET_OK);
    assert_true(fabs(ratio[0] - 5) < 1e-12 && fabs(ratio[1] - 5) < 1e-12);
    assert_int_equal(lfw_fusion_ratio(LFW_FUSION_SEPARATION, d0, d1, same, 20, 1, ratio, &err),
                     FACENET_OK);
    assert_true(fabs(ratio[0] - 5) < 1e-12);

    /* Threshold: the first grid threshold with every training pair right
     * ("same" when distance < t) is 0.51 for model 0 and 0.11 for model 1,
     * so a1 / a0 = 0.51 / 0.11. */
    double expect = lfw_roc_threshold(51) / lfw_roc_threshold(11);
    assert_int_equal(lfw_fusion_ratio(LFW_FUSION_THRESHOLD, d0, d1, same, 20, 2, ratio, &err),
                     FACENET_OK);
    assert_true(fabs(ratio[0] - expect) < 1e-12 && fabs(ratio[1] - expect) < 1e-12);
    assert_int_equal(lfw_fusion_ratio(LFW_FUSION_THRESHOLD, d0, d1, same, 20, 1, ratio, &err),
                     FACENET_OK);
    assert_true(fabs(ratio[0] - expect) < 1e-12);
}

static void test_fusion_uses_training_folds_only(void **state)
{
    (void)state;
    double d0[20], d1[20], ratio[2];
    unsigned char same[20];
    facenet_error err;
    two_model_pairs(d0, d1, same);
    /* Fold 1 (pairs 10-19): model 1's different pairs at 0.7, a gap of
     * 0.6. Fold 0 is trained on fold 1 only, so its ratio is 1 / 0.6; fold
     * 1 is trained on fold 0 and keeps 5. */
    for (int i = 15; i < 20; i++)
        d1[i] = 0.7;
    assert_int_equal(lfw_fusion_ratio(LFW_FUSION_SEPARATION, d0, d1, same, 20, 2, ratio, &err),
                     FACENET_OK);
    assert_true(fabs(ratio[0] - 1 / 0.6) < 1e-12);
    assert_true(fabs(ratio[1] - 5) < 1e-12);
}

static void test_fusion_logistic_ratio(void **state)
{
    (void)state;
    double x0[64], x1[64], ratio;
    unsigned char y[64], same[64];
    facenet_error err;
    size_t n = additive_design(x0, x1, y);
    /* y = 1 is "different": a1 / a0 = 2 ln 3 / ln 3 = 2. */
    for (size_t i = 0; i < n; i++)
        same[i] = !y[i];
    assert_int_equal(lfw_fusion_ratio(LFW_FUSION_LOGISTIC, x0, x1, same, n, 1, &ratio, &err),
                     FACENET_OK);
    assert_true(fabs(ratio - 2) < 1e-6);
}

static void test_fusion_refuses_bad_input(void **state)
{
    (void)state;
    double d0[20], d1[20], ratio[2];
    unsigned char same[20];
    facenet_error err;
    lfw_fusion f;
    two_model_pairs(d0, d1, same);
    /* Model 1 does not separate the classes: no positive weight. */
    for (int i = 0; i < 20; i++)
        d1[i] = 0.2;
    assert_int_equal(lfw_fusion_ratio(LFW_FUSION_SEPARATION, d0, d1, same, 20, 2, ratio, &err),
                     FACENET_ERR_FORMAT);
    assert_non_null(strstr(err.message, "separation"));
    two_model_pairs(d0, d1, same);
    d0[7] = INFINITY;
    assert_int_equal(lfw_fusion_ratio(LFW_FUSION_THRESHOLD, d0, d1, same, 20, 2, ratio, &err),
                     FACENET_ERR_INVALID_ARGUMENT);
    assert_int_equal(lfw_fusion_ratio(LFW_FUSION_SEPARATION, d0, d1, same, 1, 2, ratio, &err),
                     FACENET_ERR_INVALID_ARGUMENT);
    assert_int_equal(lfw_fusion_ratio((lfw_fusion)9, d0, d1, same, 20, 2, ratio, &err),
                     FACENET_ERR_INVALID_ARGUMENT);
    assert_true(lfw_fusion_from_name("logistic", &f) && f == LFW_FUSION_LOGISTIC);
    assert_false(lfw_fusion_from_name("search", &f));
    assert_string_equal(lfw_fusion_name(LFW_FUSION_THRESHOLD), "threshold");
}

/* ---- jitter ------------------------------------------------------------- */

static void test_jitter_sequence_is_fixed_and_in_range(void **state)
{
    (void)state;
    uint64_t a = ALIGN_JITTER_SEED, b = ALIGN_JITTER_SEED;
    int mirrored = 0;
    for (int i = 0; i < 2000; i++) {
        align_jitter ja, jb;
        align_jitter_next(&a, &ja);
        align_jitter_next(&b, &jb);
        assert_true(ja.angle == jb.angle && ja.fill == jb.fill && ja.tx == jb.tx &&
                    ja.ty == jb.ty && ja.mirror == jb.mirror);
        assert_true(fabs(ja.angle) <= 3 * M_PI / 180);
        assert_true(ja.fill >= 0.97 && ja.fill <= 0.99999);
        assert_true(fabs(ja.tx) <= 0.02 && fabs(ja.ty) <= 0.02);
        mirrored += ja.mirror;
    }
    /* Half of them mirrored: 1000 +- 3 sigma (sigma = sqrt(500) ~ 22). */
    assert_in_range(mirrored, 934, 1066);
}

static void test_jitter_matrix_maps_the_crop_centre(void **state)
{
    (void)state;
    /* 150 chip: centre 74.5, inner square 144. With tx = 0.01, ty = -0.02
     * the crop centre is (74.5 + 1.44, 74.5 - 2.88); it must land on the
     * output centre, and the scale is size * fill / inner. */
    align_jitter j = {0.03, 0.98, 0.01, -0.02, 0};
    double m[6];
    align_jitter_matrix(&j, 150, m);
    double cx = 74.5 + 1.44, cy = 74.5 - 2.88;
    assert_true(fabs(m[0] * cx + m[1] * cy + m[2] - 74.5) < 1e-9);
    assert_true(fabs(m[3] * cx + m[4] * cy + m[5] - 74.5) < 1e-9);
    double scale = sqrt(m[0] * m[4] - m[1] * m[3]);
    assert_true(fabs(scale - 150 * 0.98 / 144) < 1e-12);
    assert_true(fabs(atan2(m[1], m[0]) - 0.03) < 1e-12);
}

static void fill_pattern(float *chip, int size)
{
    for (int y = 0; y < size; y++)
        for (int x = 0; x < size; x++)
            for (int c = 0; c < 3; c++)
                chip[((size_t)y * size + x) * 3 + c] = tu_pattern(x, y, c);
}

static void mirror_chip(const float *src, int size, float *dst)
{
    for (int y = 0; y < size; y++)
        for (int x = 0; x < size; x++)
            memcpy(dst + ((size_t)y * size + x) * 3, src + ((size_t)y * size + size - 1 - x) * 3,
                   3 * sizeof *dst);
}

static void test_jitter_of_mirror_is_mirror_of_jitter(void **state)
{
    (void)state;
    enum { S = 150 };
    size_t floats = (size_t)S * S * 3;
    float *chip = malloc(floats * sizeof *chip), *mirrored = malloc(floats * sizeof *chip);
    float *a = malloc(floats * sizeof *a), *b = malloc(floats * sizeof *b);
    float *ma = malloc(floats * sizeof *ma);
    facenet_error err;
    assert_non_null(chip && mirrored && a && b && ma);
    fill_pattern(chip, S);
    mirror_chip(chip, S, mirrored);
    uint64_t seed = ALIGN_JITTER_SEED;
    for (int k = 0; k < 4; k++) {
        align_jitter j, jm;
        align_jitter_next(&seed, &j);
        /* The mirror turns a rotation by t into one by -t and a shift to
         * the right into one to the left; the final mirror commutes. */
        jm = j;
        jm.angle = -j.angle;
        jm.tx = -j.tx;
        assert_int_equal(align_jitter_chip(chip, S, &j, a, &err), FACENET_OK);
        assert_int_equal(align_jitter_chip(mirrored, S, &jm, b, &err), FACENET_OK);
        mirror_chip(a, S, ma);
        assert_true(tu_max_abs_diff(ma, b, floats) < 1e-2f);
    }
    /* A constant chip stays constant where the crop lies inside it (the
     * centre), and parameters out of range are refused. */
    for (size_t i = 0; i < floats; i++)
        chip[i] = 100.0f;
    align_jitter j = {0.05, 0.97, 0.02, 0.02, 1};
    assert_int_equal(align_jitter_chip(chip, S, &j, a, &err), FACENET_OK);
    assert_true(fabsf(a[((size_t)75 * S + 75) * 3] - 100.0f) < 1e-4f);
    j.angle = 0.1; /* 5.7 degrees */
    assert_int_equal(align_jitter_chip(chip, S, &j, a, &err), FACENET_ERR_INVALID_ARGUMENT);
    free(chip);
    free(mirrored);
    free(a);
    free(b);
    free(ma);
}

static void test_embedder_jitter(void **state)
{
    (void)state;
    const char *dir = tu_model_dir();
    facenet_embedder *e = NULL;
    facenet_error err;
    enum { S = 150, FACES = 3, DIM = 128 };
    size_t per = (size_t)S * S * 3;
    float *crops = malloc(FACES * per * sizeof *crops);
    float plain[FACES * DIM], jit[FACES * DIM], again[FACES * DIM], one[DIM];
    assert_non_null(crops);
    assert_int_equal(facenet_embedder_create(dir, "dlib-resnet", &e, &err), FACENET_OK);
    assert_int_equal(facenet_embedder_set_jitter(e, -1, &err), FACENET_ERR_INVALID_ARGUMENT);
    assert_int_equal(facenet_embedder_set_jitter(e, FACENET_MAX_JITTERS + 1, &err),
                     FACENET_ERR_INVALID_ARGUMENT);
    assert_int_equal(facenet_embedder_jitter(e), 0);
    for (int f = 0; f < FACES; f++) { /* three different crops */
        fill_pattern(crops + f * per, S);
        for (size_t i = 0; i < per; i++)
            crops[f * per + i] = fmodf(crops[f * per + i] + 40.0f * (float)f, 256.0f);
    }
    assert_int_equal(facenet_embed_aligned(e, crops, FACES, 0, plain, &err), FACENET_OK);
    /* 5 jitters with flip: 10 rows per face, so three faces need two
     * network calls (32 rows at most); the result must not depend on that. */
    assert_int_equal(facenet_embedder_set_jitter(e, 5, &err), FACENET_OK);
    assert_int_equal(facenet_embed_aligned(e, crops, FACES, 1, jit, &err), FACENET_OK);
    assert_int_equal(facenet_embed_aligned(e, crops, FACES, 1, again, &err), FACENET_OK);
    assert_memory_equal(jit, again, sizeof jit);
    for (int f = 0; f < FACES; f++) {
        assert_int_equal(facenet_embed_aligned(e, crops + f * per, 1, 1, one, &err), FACENET_OK);
        assert_true(tu_max_abs_diff(one, jit + f * DIM, DIM) < 1e-5f);
        double norm = tu_cosine(jit + f * DIM, jit + f * DIM, DIM);
        assert_true(fabs(norm - 1) < 1e-5);
        /* Close to the plain embedding, but not it. */
        double cos = tu_cosine(plain + f * DIM, jit + f * DIM, DIM);
        assert_true(cos > 0.9 && cos < 0.99999);
    }
    facenet_embedder_free(e);
    free(crops);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_logistic_recovers_additive_log_odds),
        cmocka_unit_test(test_fusion_separation_and_threshold),
        cmocka_unit_test(test_fusion_uses_training_folds_only),
        cmocka_unit_test(test_fusion_logistic_ratio),
        cmocka_unit_test(test_fusion_refuses_bad_input),
        cmocka_unit_test(test_jitter_sequence_is_fixed_and_in_range),
        cmocka_unit_test(test_jitter_matrix_maps_the_crop_centre),
        cmocka_unit_test(test_jitter_of_mirror_is_mirror_of_jitter),
        cmocka_unit_test(test_embedder_jitter),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
