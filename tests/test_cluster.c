/* Clustering: Chinese Whispers and DBSCAN recover planted groups of
 * synthetic embeddings, mark outliers, are deterministic, refuse bad input. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "support/gallery_testutil.h"

#define DIM 128

/* groups of sizes 30, 20, 12, 5, 2 around random centres (cosine ~0.75
 * to the centre, ~0.56 to each other), then `loners` unrelated faces. */
static const int sizes[] = {30, 20, 12, 5, 2};
#define N_GROUPS 5

static size_t make(float *v, int *truth, int loners)
{
    float centre[DIM];
    size_t n = 0;
    for (int g = 0; g < N_GROUPS; g++) {
        tg_embedding(centre, DIM, 1000 + (uint64_t)g);
        for (int i = 0; i < sizes[g]; i++) {
            tg_noisy(centre, v + n * DIM, DIM, 0.75f, (uint64_t)g * 100 + (uint64_t)i);
            truth[n++] = g;
        }
    }
    for (int i = 0; i < loners; i++) {
        tg_embedding(v + n * DIM, DIM, 5000 + (uint64_t)i);
        truth[n++] = -1 - i;
    }
    return n;
}

/* The same partition, up to renaming (loners must be alone or noise). */
static void assert_partition(const int *labels, const int *truth, size_t n, int noise_ok)
{
    for (size_t i = 0; i < n; i++)
        for (size_t j = i + 1; j < n; j++) {
            int same_truth = truth[i] == truth[j];
            int same_label = labels[i] == labels[j] && labels[i] >= 0;
            if (same_truth != same_label)
                fprintf(stderr, "faces %zu and %zu: truth %d/%d, labels %d/%d\n", i, j, truth[i],
                        truth[j], labels[i], labels[j]);
            assert_int_equal(same_truth, same_label);
        }
    for (size_t i = 0; i < n; i++)
        if (labels[i] < 0)
            assert_true(noise_ok);
}

static void test_chinese_whispers(void **state)
{
    float *v = malloc(200 * DIM * sizeof *v);
    int truth[200], labels[200], again[200];
    size_t k;
    facenet_cluster_options o;
    facenet_error err;
    (void)state;

    size_t n = make(v, truth, 10);
    facenet_cluster_options_default(&o);
    o.threshold = 0.4f;
    assert_int_equal(facenet_cluster(v, n, DIM, &o, labels, &k, &err), FACENET_OK);
    assert_partition(labels, truth, n, 0);
    assert_int_equal(k, N_GROUPS + 10); /* loners are clusters of one */
    /* numbered by size: the 30-face group is cluster 0 */
    assert_int_equal(labels[0], 0);
    assert_int_equal(labels[30], 1);
    /* deterministic */
    assert_int_equal(facenet_cluster(v, n, DIM, &o, again, &k, &err), FACENET_OK);
    assert_memory_equal(labels, again, n * sizeof *labels);
    /* a threshold above every pair: all singletons */
    o.threshold = 0.99f;
    assert_int_equal(facenet_cluster(v, n, DIM, &o, labels, &k, &err), FACENET_OK);
    assert_int_equal(k, n);
    free(v);
}

static void test_dbscan(void **state)
{
    float *v = malloc(200 * DIM * sizeof *v);
    int truth[200], labels[200];
    size_t k;
    facenet_cluster_options o;
    facenet_error err;
    (void)state;

    size_t n = make(v, truth, 10);
    facenet_cluster_options_default(&o);
    o.method = FACENET_CLUSTER_DBSCAN;
    o.threshold = 0.4f;
    o.min_samples = 3;
    assert_int_equal(facenet_cluster(v, n, DIM, &o, labels, &k, &err), FACENET_OK);
    /* groups of at least 3 are found; the pair and the loners are noise */
    assert_int_equal(k, 4);
    for (size_t i = 0; i < n; i++) {
        if (truth[i] >= 0 && sizes[truth[i]] >= 3)
            assert_true(labels[i] >= 0);
        else
            assert_int_equal(labels[i], -1);
    }
    for (size_t i = 0; i < n; i++)
        for (size_t j = 0; j < n; j++)
            if (labels[i] >= 0 && labels[j] >= 0)
                assert_int_equal(labels[i] == labels[j], truth[i] == truth[j]);
    /* min_samples 2 also keeps the pair */
    o.min_samples = 2;
    assert_int_equal(facenet_cluster(v, n, DIM, &o, labels, &k, &err), FACENET_OK);
    assert_int_equal(k, 5);
    assert_partition(labels, truth, n, 1);
    free(v);
}

static void test_bad_input(void **state)
{
    float v[2 * DIM];
    int labels[2];
    size_t k = 99;
    facenet_cluster_options o;
    facenet_error err;
    (void)state;
    facenet_cluster_options_default(&o);
    /* no threshold given: refused, not guessed */
    tg_embedding(v, DIM, 1);
    tg_embedding(v + DIM, DIM, 2);
    assert_int_equal(facenet_cluster(v, 2, DIM, &o, labels, &k, &err),
                     FACENET_ERR_INVALID_ARGUMENT);
    o.threshold = 0.5f;
    assert_int_equal(facenet_cluster(v, 0, DIM, &o, labels, &k, &err), FACENET_OK);
    assert_int_equal(k, 0);
    v[5] = NAN;
    assert_int_equal(facenet_cluster(v, 2, DIM, &o, labels, &k, &err),
                     FACENET_ERR_INVALID_ARGUMENT);
    memset(v, 0, sizeof v);
    assert_int_equal(facenet_cluster(v, 2, DIM, &o, labels, &k, &err),
                     FACENET_ERR_INVALID_ARGUMENT);
    tg_embedding(v, DIM, 1);
    tg_embedding(v + DIM, DIM, 2);
    o.method = (facenet_cluster_method)7;
    assert_int_equal(facenet_cluster(v, 2, DIM, &o, labels, &k, &err),
                     FACENET_ERR_INVALID_ARGUMENT);
    o.method = FACENET_CLUSTER_DBSCAN;
    o.min_samples = 0;
    assert_int_equal(facenet_cluster(v, 2, DIM, &o, labels, &k, &err),
                     FACENET_ERR_INVALID_ARGUMENT);
    o.min_samples = 3;
    o.threshold = 2;
    assert_int_equal(facenet_cluster(v, 2, DIM, &o, labels, &k, &err),
                     FACENET_ERR_INVALID_ARGUMENT);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_chinese_whispers),
        cmocka_unit_test(test_dbscan),
        cmocka_unit_test(test_bad_input),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
