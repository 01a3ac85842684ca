/*
 * Unit tests of the LFW protocol (src/verify/lfw.h) on synthetic scores
 * whose answers are worked out by hand in the comments, and of the
 * pairs-file parser on good and malformed input.
 *
 * Distances are chosen off both threshold grids (they end in ...55), so
 * no comparison "distance < threshold" depends on rounding.
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
#include <unistd.h>

#include "verify/lfw.h"

/* ---- fold split ---------------------------------------------------------- */

static void test_fold_split_matches_kfold(void **state)
{
    size_t b, e;
    (void)state;
    /* LFW: ten folds of 600 in file order. */
    for (int k = 0; k < 10; k++) {
        lfw_fold_range(6000, 10, k, &b, &e);
        assert_int_equal(b, 600 * (size_t)k);
        assert_int_equal(e, 600 * (size_t)k + 600);
    }
    /* sklearn KFold: 13 pairs in 10 folds -> sizes 2,2,2,1,1,1,1,1,1,1. */
    lfw_fold_range(13, 10, 0, &b, &e);
    assert_int_equal(b, 0);
    assert_int_equal(e, 2);
    lfw_fold_range(13, 10, 2, &b, &e);
    assert_int_equal(b, 4);
    assert_int_equal(e, 6);
    lfw_fold_range(13, 10, 3, &b, &e);
    assert_int_equal(b, 6);
    assert_int_equal(e, 7);
    lfw_fold_range(13, 10, 9, &b, &e);
    assert_int_equal(b, 12);
    assert_int_equal(e, 13);
}

static void test_threshold_grids(void **state)
{
    (void)state;
    assert_true(lfw_roc_threshold(0) == 0.0);
    assert_true(fabs(lfw_roc_threshold(120) - 1.20) < 1e-12);
    assert_true(fabs(lfw_roc_threshold(LFW_ROC_THRESHOLDS - 1) - 3.99) < 1e-12);
    assert_true(fabs(lfw_val_threshold(LFW_VAL_THRESHOLDS - 1) - 3.999) < 1e-12);
    assert_true(fabs(lfw_threshold_to_similarity(1.20, LFW_METRIC_SQEUCLIDEAN) - 0.40) < 1e-12);
    assert_true(fabs(lfw_threshold_to_similarity(0.5, LFW_METRIC_COSINE) - 0.0) < 1e-12);
}

/* ---- np.interp ------------------------------------------------------------ */

static void test_interp_follows_numpy(void **state)
{
    const double x[] = {0, 0, 0.5, 0.5, 1};
    const double y[] = {0, 1, 2, 3, 4};
    (void)state;
    assert_true(lfw_interp(x, y, 5, -1) == 0);   /* left of the range: y[0]  */
    assert_true(lfw_interp(x, y, 5, 0) == 1);    /* last of the x == 0 group */
    assert_true(fabs(lfw_interp(x, y, 5, 0.25) - 1.5) < 1e-12);
    assert_true(lfw_interp(x, y, 5, 0.5) == 3);
    assert_true(fabs(lfw_interp(x, y, 5, 0.75) - 3.5) < 1e-12);
    assert_true(lfw_interp(x, y, 5, 1) == 4);
    assert_true(lfw_interp(x, y, 5, 7) == 4);
}

/* ---- the worked example ---------------------------------------------------
 * 20 pairs, 2 folds of 10.
 *   fold A (pairs 0-9):   same 0.3055 0.4055 0.5055 0.6055 0.7055
 *                         diff 0.6555 1.1055 1.2055 1.3055 1.4055
 *   fold B (pairs 10-19): same 0.1055 0.2055 0.3055 1.2555 0.4055
 *                         diff 1.5055 1.6055 1.7055 1.8055 1.9055
 * Fold 1 (test A, train B): on B every answer is right for thresholds in
 *   (1.2555, 1.5055]; the first such grid value is 1.26. On A at 1.26 the
 *   five same pairs are right and only the diff pairs 1.3055 and 1.4055:
 *   accuracy 7/10.
 * Fold 2 (test B, train A): on A the best is 9/10, first reached at 0.61
 *   (four same below, all five diff above; (0.7055, 1.1055] also gives 9,
 *   but np.argmax keeps the first). On B at 0.61: 1.2555 is the one
 *   mistake, accuracy 0.9. Mean 0.8, population std 0.1.
 * VAL at FAR 0.3: training FAR moves in steps of 0.2.
 *   Fold 1: FAR on B is 0.2 up to t = 1.605 and 0.4 from 1.606, so the
 *   threshold is 1.605 + (0.3 - 0.2) / 0.2 * 0.001 = 1.6055. On A every
 *   pair is below it: VAL 1, FAR 1.
 *   Fold 2: FAR on A is 0.2 up to 1.105, 0.4 from 1.106 -> 1.1055. On B:
 *   4 of 5 same below (VAL 0.8), no diff (FAR 0). VAL 0.9 +- 0.1, FAR 0.5.
 * ROC (mean of the two test folds): eight same events (+0.1 TPR each)
 *   come before the first diff (0.6555), then diff at TPR 0.8, same
 *   0.7055, diffs 1.1055 and 1.2055 at TPR 0.9, same 1.2555, then seven
 *   diffs at TPR 1: AUC = 0.08 + 0.09 + 0.09 + 0.1 + 0.1 + 0.5 = 0.96.
 * EER: tpr(0.1) = 0.9 (the last point at FPR 0.1), so 1 - x - tpr(x)
 *   is 0 at x = 0.1, positive before, negative after: EER 0.1.
 */
static const double example_dist[20] = {
    0.3055, 0.6555, 0.4055, 1.1055, 0.5055, 1.2055, 0.6055, 1.3055, 0.7055, 1.4055,
    0.1055, 1.5055, 0.2055, 1.6055, 0.3055, 1.7055, 1.2555, 1.8055, 0.4055, 1.9055,
};
static const unsigned char example_same[20] = {1, 0, 1, 0, 1, 0, 1, 0, 1, 0,
                                               1, 0, 1, 0, 1, 0, 1, 0, 1, 0};

static lfw_result *run_example(double far_target)
{
    lfw_options opt;
    facenet_error err;
    lfw_result *r = malloc(sizeof *r);
    assert_non_null(r);
    lfw_options_default(&opt);
    opt.folds = 2;
    opt.far_target = far_target;
    assert_int_equal(lfw_evaluate_distances(example_dist, example_same, 20, &opt, r, &err),
                     FACENET_OK);
    return r;
}

static void test_accuracy_and_threshold_choice(void **state)
{
    lfw_result *r = run_example(0.3);
    (void)state;
    assert_int_equal(r->folds, 2);
    assert_int_equal(r->fold[0].begin, 0);
    assert_int_equal(r->fold[0].end, 10);
    assert_true(fabs(r->fold[0].threshold - 1.26) < 1e-12);
    assert_true(fabs(r->fold[0].train_accuracy - 1.0) < 1e-12);
    assert_true(fabs(r->fold[0].accuracy - 0.7) < 1e-12);
    assert_true(fabs(r->fold[1].threshold - 0.61) < 1e-12);
    assert_true(fabs(r->fold[1].train_accuracy - 0.9) < 1e-12);
    assert_true(fabs(r->fold[1].accuracy - 0.9) < 1e-12);
    assert_true(fabs(r->accuracy_mean - 0.8) < 1e-12);
    assert_true(fabs(r->accuracy_std - 0.1) < 1e-12);
    free(r);
}

static void test_val_far_interpolation(void **state)
{
    lfw_result *r = run_example(0.3);
    (void)state;
    assert_true(fabs(r->fold[0].val_threshold - 1.6055) < 1e-9);
    assert_true(fabs(r->fold[0].val - 1.0) < 1e-12);
    assert_true(fabs(r->fold[0].far - 1.0) < 1e-12);
    assert_true(fabs(r->fold[1].val_threshold - 1.1055) < 1e-9);
    assert_true(fabs(r->fold[1].val - 0.8) < 1e-12);
    assert_true(fabs(r->fold[1].far - 0.0) < 1e-12);
    assert_true(fabs(r->val_mean - 0.9) < 1e-12);
    assert_true(fabs(r->val_std - 0.1) < 1e-12);
    assert_true(fabs(r->far_mean - 0.5) < 1e-12);
    free(r);
}

static void test_val_zero_when_far_never_reached(void **state)
{
    /* Diff pairs beyond every threshold (4.5 > 3.999): the training FAR
     * stays 0 < 0.3, so facenet uses threshold 0: VAL 0, FAR 0. */
    double dist[4] = {0.1055, 4.5, 0.1055, 4.5};
    unsigned char same[4] = {1, 0, 1, 0};
    lfw_options opt;
    facenet_error err;
    lfw_result *r = malloc(sizeof *r);
    (void)state;
    assert_non_null(r);
    lfw_options_default(&opt);
    opt.folds = 2;
    opt.far_target = 0.3;
    assert_int_equal(lfw_evaluate_distances(dist, same, 4, &opt, r, &err), FACENET_OK);
    for (int k = 0; k < 2; k++) {
        assert_true(r->fold[k].val_threshold == 0.0);
        assert_true(r->fold[k].val == 0.0);
        assert_true(r->fold[k].far == 0.0);
        assert_true(fabs(r->fold[k].accuracy - 1.0) < 1e-12);
    }
    free(r);
}

static void test_roc_auc_and_eer(void **state)
{
    lfw_result *r = run_example(1e-3);
    (void)state;
    assert_true(r->tpr[0] == 0.0 && r->fpr[0] == 0.0);
    assert_true(fabs(r->tpr[LFW_ROC_THRESHOLDS - 1] - 1.0) < 1e-12);
    assert_true(fabs(r->fpr[LFW_ROC_THRESHOLDS - 1] - 1.0) < 1e-12);
    /* At t = 0.66 (after diff 0.6555): TPR 0.8, FPR 0.1. */
    assert_true(fabs(r->tpr[66] - 0.8) < 1e-12);
    assert_true(fabs(r->fpr[66] - 0.1) < 1e-12);
    assert_true(fabs(r->auc - 0.96) < 1e-12);
    assert_true(fabs(r->eer - 0.1) < 1e-9);
    free(r);
}

static void test_perfect_separation(void **state)
{
    double dist[40];
    unsigned char same[40];
    lfw_options opt;
    facenet_error err;
    lfw_result *r = malloc(sizeof *r);
    (void)state;
    assert_non_null(r);
    for (int i = 0; i < 40; i++) {
        same[i] = i % 2 == 0;
        /* every fold spans the same ranges, so thresholds carry over */
        dist[i] = same[i] ? 0.2055 + 0.01 * (i % 10) : 2.5055 + 0.01 * (i % 10);
    }
    lfw_options_default(&opt);
    opt.folds = 4;
    assert_int_equal(lfw_evaluate_distances(dist, same, 40, &opt, r, &err), FACENET_OK);
    assert_true(fabs(r->accuracy_mean - 1.0) < 1e-12);
    assert_true(r->accuracy_std < 1e-12);
    assert_true(fabs(r->auc - 1.0) < 1e-12);
    assert_true(fabs(r->eer) < 1e-12);
    assert_true(fabs(r->val_mean - 1.0) < 1e-12);
    free(r);
}

/* EER on a diagonal segment, from symmetric overlapping distributions:
 * per fold same {0.5055, 0.7055, 1.0015} and diff {1.0035, 1.3055,
 * 1.5055}. Between the grid values 1.00 and 1.01 the curve goes straight
 * from (FPR 0, TPR 2/3) to (1/3, 1), so 1 - x - (2/3 + x) = 0 at 1/6. */
static void test_eer_on_a_sloped_segment(void **state)
{
    const double fold[6] = {0.5055, 1.0035, 0.7055, 1.3055, 1.0015, 1.5055};
    double dist[12];
    unsigned char same[12];
    lfw_options opt;
    facenet_error err;
    lfw_result *r = malloc(sizeof *r);
    (void)state;
    assert_non_null(r);
    for (int i = 0; i < 12; i++) {
        dist[i] = fold[i % 6];
        same[i] = i % 2 == 0;
    }
    lfw_options_default(&opt);
    opt.folds = 2;
    assert_int_equal(lfw_evaluate_distances(dist, same, 12, &opt, r, &err), FACENET_OK);
    assert_true(fabs(r->eer - 1.0 / 6.0) < 1e-9);
    free(r);
}

/* Unit 2-D embeddings at angle a: squared L2 between angle 0 and a is
 * 2 - 2 cos a. The embedding path must give the distance path's result. */
static void test_embeddings_match_distances(void **state)
{
    float e1[40], e2[40];
    double dist[20];
    lfw_options opt;
    facenet_error err;
    lfw_result *a = malloc(sizeof *a), *b = malloc(sizeof *b);
    (void)state;
    assert_non_null(a);
    assert_non_null(b);
    for (int i = 0; i < 20; i++) {
        double angle = acos(1.0 - example_dist[i] / 2.0);
        e1[2 * i] = 1.0f;
        e1[2 * i + 1] = 0.0f;
        e2[2 * i] = (float)cos(angle);
        e2[2 * i + 1] = (float)sin(angle);
        dist[i] = lfw_distance(e1 + 2 * i, e2 + 2 * i, 2, LFW_METRIC_SQEUCLIDEAN);
        assert_true(fabs(dist[i] - example_dist[i]) < 1e-6);
    }
    lfw_options_default(&opt);
    opt.folds = 2;
    assert_int_equal(lfw_evaluate(e1, e2, 2, example_same, 20, &opt, a, &err), FACENET_OK);
    assert_int_equal(lfw_evaluate_distances(example_dist, example_same, 20, &opt, b, &err),
                     FACENET_OK);
    assert_true(fabs(a->accuracy_mean - 0.8) < 1e-12);
    assert_true(fabs(a->fold[0].threshold - b->fold[0].threshold) < 1e-12);
    assert_true(fabs(a->auc - b->auc) < 1e-12);
    /* Squared L2 is translation invariant: subtracting a mean changes
     * nothing. */
    opt.subtract_mean = 1;
    assert_int_equal(lfw_evaluate(e1, e2, 2, example_same, 20, &opt, a, &err), FACENET_OK);
    assert_true(fabs(a->accuracy_mean - 0.8) < 1e-12);
    assert_true(fabs(a->fold[1].threshold - 0.61) < 1e-12);
    free(a);
    free(b);
}

/* Cosine metric with the training mean subtracted. Each fold holds, around
 * the centre m = (10, 0):
 *   same pairs (m + v, m + w) and (m - v, m - w), v = (1, 0), w at angle
 *   0.1055 pi: after subtracting m their cosine distance is 0.1055;
 *   diff pairs (m + u, m - u) and (m - u, m + u), u = (0, 1): distance 1.
 * The four pairs' eight vectors average to m, so with subtract_mean each
 * fold's threshold is the first grid value above 0.1055: 0.11. Without it
 * all vectors point near (1, 0): the same pairs' distance is about 0.0095
 * and the threshold 0.01. */
static void test_cosine_subtract_mean(void **state)
{
    float e1[16], e2[16];
    unsigned char same[8];
    const double wa = 0.1055 * M_PI;
    lfw_options opt;
    facenet_error err;
    lfw_result *r = malloc(sizeof *r);
    (void)state;
    assert_non_null(r);
    for (int f = 0; f < 2; f++) {
        float *a = e1 + 8 * f, *b = e2 + 8 * f;
        unsigned char *s = same + 4 * f;
        /* same, +: */
        a[0] = 11.0f, a[1] = 0.0f, b[0] = (float)(10 + cos(wa)), b[1] = (float)sin(wa);
        /* diff: */
        a[2] = 10.0f, a[3] = 1.0f, b[2] = 10.0f, b[3] = -1.0f;
        /* same, -: */
        a[4] = 9.0f, a[5] = 0.0f, b[4] = (float)(10 - cos(wa)), b[5] = (float)-sin(wa);
        /* diff, mirrored: */
        a[6] = 10.0f, a[7] = -1.0f, b[6] = 10.0f, b[7] = 1.0f;
        s[0] = 1, s[1] = 0, s[2] = 1, s[3] = 0;
    }
    lfw_options_default(&opt);
    opt.folds = 2;
    opt.metric = LFW_METRIC_COSINE;
    assert_true(fabs(lfw_distance(e1, e2, 2, LFW_METRIC_COSINE) - 0.0095) < 0.001);
    assert_int_equal(lfw_evaluate(e1, e2, 2, same, 8, &opt, r, &err), FACENET_OK);
    assert_true(fabs(r->fold[0].threshold - 0.02) < 1e-12);
    opt.subtract_mean = 1;
    assert_int_equal(lfw_evaluate(e1, e2, 2, same, 8, &opt, r, &err), FACENET_OK);
    for (int k = 0; k < 2; k++) {
        assert_true(fabs(r->fold[k].threshold - 0.11) < 1e-12);
        assert_true(fabs(r->fold[k].accuracy - 1.0) < 1e-12);
    }
    free(r);
}

static void test_calibration(void **state)
{
    lfw_calibration c;
    facenet_error err;
    (void)state;
    /* All 20 pairs of the example, correct answers by threshold:
     *   (0.6055, 0.6555]: 8 same below + 10 diff above = 18
     *   (0.6555, 0.7055]: 8 + 9 = 17
     *   (0.7055, 1.1055]: 9 + 9 = 18 (a later tie: np.argmax keeps 0.61)
     *   (1.2555, 1.3055]: 10 + 7 = 17
     * so the threshold is 0.61 with accuracy 0.9. */
    assert_int_equal(lfw_calibrate(example_dist, example_same, 20, 0.12, &c, &err), FACENET_OK);
    assert_true(fabs(c.threshold_accuracy - 0.61) < 1e-12);
    assert_true(fabs(c.accuracy - 0.9) < 1e-12);
    /* FAR over the 10 diff pairs is 0.1 from t = 0.656 to 1.105 and 0.2
     * from 1.106: target 0.12 -> 1.105 + 0.2 * 0.001 = 1.1052, where 9 of
     * 10 same pairs and 1 diff pair are accepted. */
    assert_true(c.far_reached);
    assert_true(fabs(c.threshold_far - 1.1052) < 1e-9);
    assert_true(fabs(c.far - 0.1) < 1e-12);
    assert_true(fabs(c.val - 0.9) < 1e-12);
    /* A target no threshold reaches. */
    double far_away[2] = {0.1055, 4.5};
    unsigned char labels[2] = {1, 0};
    assert_int_equal(lfw_calibrate(far_away, labels, 2, 0.5, &c, &err), FACENET_OK);
    assert_false(c.far_reached);
    assert_true(c.threshold_far == 0.0);
}

static void test_bad_arguments(void **state)
{
    lfw_options opt;
    facenet_error err;
    lfw_result *r = malloc(sizeof *r);
    double nan_dist[4] = {0.1, NAN, 0.2, 0.3};
    unsigned char same[4] = {1, 0, 1, 0};
    (void)state;
    assert_non_null(r);
    lfw_options_default(&opt);
    opt.folds = 10;
    assert_int_equal(lfw_evaluate_distances(example_dist, example_same, 5, &opt, r, &err),
                     FACENET_ERR_INVALID_ARGUMENT);
    assert_non_null(strstr(err.message, "10 folds"));
    opt.folds = 1;
    assert_int_equal(lfw_evaluate_distances(example_dist, example_same, 20, &opt, r, &err),
                     FACENET_ERR_INVALID_ARGUMENT);
    opt.folds = 2;
    assert_int_equal(lfw_evaluate_distances(nan_dist, same, 4, &opt, r, &err),
                     FACENET_ERR_INVALID_ARGUMENT);
    assert_non_null(strstr(err.message, "pair 1"));
    opt.subtract_mean = 1;
    assert_int_equal(lfw_evaluate_distances(example_dist, example_same, 20, &opt, r, &err),
                     FACENET_ERR_INVALID_ARGUMENT);
    free(r);
}

/* ---- a weight chosen per fold on the training folds ------------------------- */

/* Three folds of four pairs (same, same, different, different). Two
 * candidate distance sets:
 *   A: folds 1 and 2 separate perfectly (same .255, different 1.555);
 *      fold 3 is inverted (same 1.555, different .255).
 *   B: perfect except one same pair of fold 1 at 1.555.
 * Candidate C is a copy of B listed after it.
 * Training accuracy at the best threshold:
 *   fold 1 (trains on 2, 3): A 4/8 (any threshold), B 8/8 -> B
 *   fold 2 (trains on 1, 3): A 4/8, B 7/8 (at 0.26)       -> B
 *   fold 3 (trains on 1, 2): A 8/8, B 7/8                 -> A
 * C ties B everywhere and comes later, so it is never chosen. Each fold's
 * threshold is then 0.26 (the first grid value above .255), so its test
 * accuracies are B on fold 1: 3/4, B on fold 2: 4/4, A on fold 3: 0/4
 * (the honest choice is wrong there, and the protocol shows it). */
#define W_N 12
static const unsigned char w_same[W_N] = {1, 1, 0, 0, 1, 1, 0, 0, 1, 1, 0, 0};
static const double w_dist[3 * W_N] = {
    /* A */ .255, .255, 1.555, 1.555, .255, .255, 1.555, 1.555, 1.555, 1.555, .255, .255,
    /* B */ .255, 1.555, 1.555, 1.555, .255, .255, 1.555, 1.555, .255, .255, 1.555, 1.555,
    /* C */ .255, 1.555, 1.555, 1.555, .255, .255, 1.555, 1.555, .255, .255, 1.555, 1.555};

static void test_choose_per_fold_on_training_folds(void **state)
{
    int chosen[3] = {-1, -1, -1};
    double train[3];
    facenet_error err;
    (void)state;
    assert_int_equal(lfw_choose_per_fold(w_dist, 3, w_same, W_N, 3, chosen, train, &err),
                     FACENET_OK);
    assert_int_equal(chosen[0], 1);
    assert_int_equal(chosen[1], 1);
    assert_int_equal(chosen[2], 0);
    assert_true(fabs(train[0] - 1.0) < 1e-12);
    assert_true(fabs(train[1] - 7.0 / 8.0) < 1e-12);
    assert_true(fabs(train[2] - 1.0) < 1e-12);
    /* One "fold": all twelve pairs train. A gets 8/12, B 11/12. */
    assert_int_equal(lfw_choose_per_fold(w_dist, 3, w_same, W_N, 1, chosen, train, &err),
                     FACENET_OK);
    assert_int_equal(chosen[0], 1);
    assert_true(fabs(train[0] - 11.0 / 12.0) < 1e-12);
    /* With the order C, B, A the tie between B and C goes to C. */
    double swapped[3 * W_N];
    memcpy(swapped, w_dist + 2 * W_N, sizeof(double) * W_N);
    memcpy(swapped + W_N, w_dist + W_N, sizeof(double) * W_N);
    memcpy(swapped + 2 * W_N, w_dist, sizeof(double) * W_N);
    assert_int_equal(lfw_choose_per_fold(swapped, 3, w_same, W_N, 3, chosen, NULL, &err),
                     FACENET_OK);
    assert_int_equal(chosen[0], 0);
    assert_int_equal(chosen[1], 0);
    assert_int_equal(chosen[2], 2);
}

static void test_evaluate_fold_distances(void **state)
{
    lfw_options opt;
    facenet_error err;
    lfw_result *r = malloc(sizeof *r), *plain = malloc(sizeof *plain);
    (void)state;
    assert_non_null(r);
    assert_non_null(plain);
    lfw_options_default(&opt);
    opt.folds = 3;
    const double *per_fold[3] = {w_dist + W_N, w_dist + W_N, w_dist};
    assert_int_equal(lfw_evaluate_fold_distances(per_fold, w_same, W_N, &opt, r, &err),
                     FACENET_OK);
    for (int k = 0; k < 3; k++)
        assert_true(fabs(r->fold[k].threshold - 0.26) < 1e-12);
    assert_true(fabs(r->fold[0].accuracy - 0.75) < 1e-12);
    assert_true(fabs(r->fold[1].accuracy - 1.0) < 1e-12);
    assert_true(fabs(r->fold[2].accuracy - 0.0) < 1e-12);
    assert_true(fabs(r->accuracy_mean - 1.75 / 3.0) < 1e-12);
    /* The same array for every fold is the ordinary protocol. */
    const double *same_everywhere[3] = {w_dist + W_N, w_dist + W_N, w_dist + W_N};
    assert_int_equal(lfw_evaluate_fold_distances(same_everywhere, w_same, W_N, &opt, r, &err),
                     FACENET_OK);
    assert_int_equal(lfw_evaluate_distances(w_dist + W_N, w_same, W_N, &opt, plain, &err),
                     FACENET_OK);
    assert_memory_equal(r, plain, sizeof *r);
    free(r);
    free(plain);
}

static void test_choose_per_fold_bad_arguments(void **state)
{
    int chosen[3];
    double bad[2 * W_N];
    lfw_options opt;
    facenet_error err;
    lfw_result *r = malloc(sizeof *r);
    (void)state;
    assert_non_null(r);
    memcpy(bad, w_dist, sizeof bad);
    bad[W_N + 5] = NAN;
    assert_int_equal(lfw_choose_per_fold(w_dist, 0, w_same, W_N, 3, chosen, NULL, &err),
                     FACENET_ERR_INVALID_ARGUMENT);
    assert_int_equal(lfw_choose_per_fold(w_dist, LFW_MAX_CANDIDATES + 1, w_same, W_N, 3, chosen,
                                         NULL, &err),
                     FACENET_ERR_INVALID_ARGUMENT);
    assert_int_equal(lfw_choose_per_fold(w_dist, 3, w_same, W_N, 13, chosen, NULL, &err),
                     FACENET_ERR_INVALID_ARGUMENT);
    assert_int_equal(lfw_choose_per_fold(bad, 2, w_same, W_N, 3, chosen, NULL, &err),
                     FACENET_ERR_INVALID_ARGUMENT);
    assert_non_null(strstr(err.message, "not a finite number"));
    lfw_options_default(&opt);
    opt.folds = 3;
    const double *per_fold[3] = {w_dist, bad, NULL};
    assert_int_equal(lfw_evaluate_fold_distances(per_fold, w_same, W_N, &opt, r, &err),
                     FACENET_ERR_INVALID_ARGUMENT);
    per_fold[1] = w_dist;
    assert_int_equal(lfw_evaluate_fold_distances(per_fold, w_same, W_N, &opt, r, &err),
                     FACENET_ERR_INVALID_ARGUMENT);
    assert_non_null(strstr(err.message, "fold 3"));
    free(r);
}

/* ---- pairs files ------------------------------------------------------------ */

static facenet_status parse(const char *text, lfw_pairs *p, facenet_error *err)
{
    return lfw_pairs_parse(text, strlen(text), "pairs.txt", p, err);
}

static void test_parse_lfw_format(void **state)
{
    lfw_pairs p;
    facenet_error err;
    (void)state;
    assert_int_equal(parse("1\t2\nAbel_Pacheco\t1\t4\nAkhmed_Zakayev 1 3\r\n"
                           "Abdel_Madi_Shabneh\t1\tDean_Barker\t1\nZico 2 Abdul_Rahman 12\n\n\n",
                           &p, &err),
                     FACENET_OK);
    assert_int_equal(p.n, 4);
    assert_int_equal(p.header_sets, 1);
    assert_int_equal(p.header_per_set, 2);
    assert_string_equal(p.pairs[0].name[0], "Abel_Pacheco");
    assert_string_equal(p.pairs[0].name[1], "Abel_Pacheco");
    assert_int_equal(p.pairs[0].number[0], 1);
    assert_int_equal(p.pairs[0].number[1], 4);
    assert_int_equal(p.pairs[0].same, 1);
    assert_int_equal(p.pairs[0].line, 2);
    assert_string_equal(p.pairs[1].name[0], "Akhmed_Zakayev"); /* CRLF */
    assert_int_equal(p.pairs[1].number[1], 3);
    assert_int_equal(p.pairs[2].same, 0);
    assert_string_equal(p.pairs[2].name[1], "Dean_Barker");
    assert_int_equal(p.pairs[3].number[1], 12);
    assert_int_equal(p.pairs[3].line, 5);
    lfw_pairs_free(&p);

    /* The headerless form. */
    assert_int_equal(parse("A 1 2\nB 1 C 2", &p, &err), FACENET_OK);
    assert_int_equal(p.n, 2);
    assert_int_equal(p.header_sets, 0);
    assert_int_equal(p.pairs[1].line, 2);
    lfw_pairs_free(&p);
}

/* Each malformed input fails with FACENET_ERR_FORMAT and a message naming
 * the file and the line. */
static void expect_error(const char *text, const char *want1, const char *want2)
{
    lfw_pairs p;
    facenet_error err;
    assert_int_equal(parse(text, &p, &err), FACENET_ERR_FORMAT);
    assert_null(p.pairs);
    if (!strstr(err.message, want1) || (want2 && !strstr(err.message, want2)))
        fail_msg("message '%s' lacks '%s' / '%s'", err.message, want1, want2 ? want2 : "");
}

static void test_parse_errors_name_the_line(void **state)
{
    (void)state;
    expect_error("1 2\nA 1 2\nB 1 2\nC 1 D 2\n", "pairs.txt line 1", "3 pairs");
    expect_error("A 1 2\nB 1 2 3 4 5\n", "pairs.txt line 2", "more than 4 fields");
    expect_error("A 1 2\nB 1\n", "line 2", "2 fields");
    expect_error("A 1 x\n", "line 1", "'x'");
    expect_error("A 1 -2\n", "line 1", "'-2'");
    expect_error("A 1 2\nB 1 999999999\n", "line 2", "integer");
    expect_error("A 1 2\n../etc 1 2\n", "line 2", "starts with '.'");
    expect_error("A 1 2\nB 1 x/y 2\n", "line 2", "path separator");
    expect_error("A 1 2\nB\\C 1 2\n", "line 2", "path separator");
    expect_error("A 1 2\nB\x01 1 2\n", "line 2", "control character");
    expect_error("A 1 2\n\nB 1 2\n", "line 2", "empty line");
    expect_error("", "no pairs", NULL);
    expect_error("\n\n", "no pairs", NULL);
    expect_error("10 300\n", "no pairs", NULL);
}

static void test_parse_rejects_binary(void **state)
{
    lfw_pairs p;
    facenet_error err;
    const char text[] = "A 1 2\n\0B 1 2\n";
    (void)state;
    assert_int_equal(lfw_pairs_parse(text, sizeof text - 1, "x", &p, &err), FACENET_ERR_FORMAT);
    assert_non_null(strstr(err.message, "NUL"));
}

static void test_load_and_paths(void **state)
{
    char path[] = "/tmp/facenet_pairs_XXXXXX";
    char buf[64];
    lfw_pairs p;
    facenet_error err;
    int fd = mkstemp(path);
    (void)state;
    assert_true(fd >= 0);
    assert_true(write(fd, "Abel_Pacheco 1 4\n", 17) == 17);
    close(fd);
    assert_int_equal(lfw_pairs_load(path, &p, &err), FACENET_OK);
    assert_int_equal(p.n, 1);
    lfw_pairs_free(&p);
    unlink(path);
    assert_int_equal(lfw_pairs_load(path, &p, &err), FACENET_ERR_NOT_FOUND);

    assert_int_equal(lfw_image_path("lfw", "Abel_Pacheco", 4, "jpg", buf, sizeof buf), 0);
    assert_string_equal(buf, "lfw/Abel_Pacheco/Abel_Pacheco_0004.jpg");
    assert_int_equal(lfw_image_path("lfw", "A", 12345, "png", buf, sizeof buf), 0);
    assert_string_equal(buf, "lfw/A/A_12345.png");
    assert_int_equal(lfw_image_path("lfw", "Abel_Pacheco", 4, "jpg", buf, 20), -1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fold_split_matches_kfold),
        cmocka_unit_test(test_threshold_grids),
        cmocka_unit_test(test_interp_follows_numpy),
        cmocka_unit_test(test_accuracy_and_threshold_choice),
        cmocka_unit_test(test_val_far_interpolation),
        cmocka_unit_test(test_val_zero_when_far_never_reached),
        cmocka_unit_test(test_roc_auc_and_eer),
        cmocka_unit_test(test_perfect_separation),
        cmocka_unit_test(test_eer_on_a_sloped_segment),
        cmocka_unit_test(test_embeddings_match_distances),
        cmocka_unit_test(test_cosine_subtract_mean),
        cmocka_unit_test(test_calibration),
        cmocka_unit_test(test_bad_arguments),
        cmocka_unit_test(test_choose_per_fold_on_training_folds),
        cmocka_unit_test(test_evaluate_fold_distances),
        cmocka_unit_test(test_choose_per_fold_bad_arguments),
        cmocka_unit_test(test_parse_lfw_format),
        cmocka_unit_test(test_parse_errors_name_the_line),
        cmocka_unit_test(test_parse_rejects_binary),
        cmocka_unit_test(test_load_and_paths),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
