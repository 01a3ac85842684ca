/*
 * The in-memory index against a brute-force reference: exact top-k by
 * subject for every thread count, collection filters, removals, and the
 * int8 path's agreement with float.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gallery/index.h"
#include "support/gallery_testutil.h"

#define DIM 64

typedef struct ref_hit {
    float score;
    int64_t subject;
} ref_hit;

static int by_score(const void *a, const void *b)
{
    const ref_hit *x = a, *y = b;
    if (x->score != y->score)
        return x->score > y->score ? -1 : 1;
    return x->subject < y->subject ? -1 : x->subject > y->subject;
}

/* Best score per subject, in double, then sorted. */
static size_t brute_force(const gallery_index *ix, const float *q, int64_t collection,
                          ref_hit *out, size_t max_subject)
{
    size_t n = 0;
    double *best = malloc((max_subject + 1) * sizeof *best);
    for (size_t s = 0; s <= max_subject; s++)
        best[s] = -INFINITY;
    for (size_t r = 0; r < ix->n; r++) {
        if (collection && ix->collection_id[r] != collection)
            continue;
        double d = 0;
        for (int i = 0; i < ix->dim; i++)
            d += (double)q[i] * ix->vec[r * (size_t)ix->dim + (size_t)i];
        size_t s = (size_t)ix->subject_id[r];
        if (d > best[s])
            best[s] = d;
    }
    for (size_t s = 0; s <= max_subject; s++)
        if (best[s] > -INFINITY) {
            out[n].score = (float)best[s];
            out[n].subject = (int64_t)s;
            n++;
        }
    qsort(out, n, sizeof *out, by_score);
    free(best);
    return n;
}

static float best_of(const ref_hit *all, size_t n, int64_t subject)
{
    for (size_t i = 0; i < n; i++)
        if (all[i].subject == subject)
            return all[i].score;
    return NAN;
}

static void build(gallery_index *ix, size_t rows, size_t subjects, unsigned copies)
{
    float v[DIM];
    assert_int_equal(gallery_index_init(ix, DIM, copies), 0);
    for (size_t r = 0; r < rows; r++) {
        tg_embedding(v, DIM, r);
        /* uneven subjects: some have many templates, and two collections */
        int64_t subject = (int64_t)((r * r + 7 * r) % subjects) + 1;
        assert_int_equal(gallery_index_add(ix, v, (int64_t)r + 1, subject, 1 + subject % 2), 0);
    }
}

static void test_exact_top_k(void **state)
{
    gallery_index ix;
    const size_t subjects = 500;
    ref_hit *want = malloc((subjects + 1) * sizeof *want);
    gallery_hit hits[50];
    float q[DIM], base[DIM];
    (void)state;

    build(&ix, 9000, subjects, 0);
    for (int t = 0; t < 60; t++) {
        tg_embedding(base, DIM, (uint64_t)(t * 37) % 9000);
        tg_noisy(base, q, DIM, t % 2 ? 0.6f : 0.2f, (uint64_t)t);
        int64_t collection = t % 3 == 0 ? 1 + t % 2 : 0;
        size_t n_want = brute_force(&ix, q, collection, want, subjects);
        static const int ks[] = {1, 5, 17, 50};
        static const int threads[] = {1, 2, 3, 7};
        for (size_t ki = 0; ki < 4; ki++)
            for (size_t ti = 0; ti < 4; ti++) {
                gallery_query gq = {q, ks[ki], collection, GALLERY_SCAN_FLOAT, threads[ti], NULL};
                size_t n = gallery_index_search(&ix, &gq, hits);
                assert_int_equal(n, n_want < (size_t)ks[ki] ? n_want : (size_t)ks[ki]);
                for (size_t i = 0; i < n; i++) {
                    /* same subjects in the same order (scores equal to
                     * float rounding), and each reported row belongs to
                     * its subject and scores what it says */
                    assert_true(fabsf(hits[i].score - want[i].score) < 1e-5f);
                    assert_true(fabsf(hits[i].score - best_of(want, n_want, hits[i].subject_id)) <
                                1e-5f);
                    for (size_t j = 0; j < i; j++)
                        assert_int_not_equal(hits[j].subject_id, hits[i].subject_id);
                    assert_int_equal(ix.subject_id[hits[i].row], hits[i].subject_id);
                    if (collection)
                        assert_int_equal(ix.collection_id[hits[i].row], collection);
                }
            }
    }
    free(want);
    gallery_index_free(&ix);
}

static void test_quantised_agree(void **state)
{
    gallery_index ix;
    gallery_hit f[5], qh[5];
    float q[DIM], base[DIM];
    int agree8 = 0, agree4 = 0, total = 400;
    (void)state;

    build(&ix, 20000, 20000, GALLERY_INDEX_INT8 | GALLERY_INDEX_INT4);
    for (int t = 0; t < total; t++) {
        tg_embedding(base, DIM, (uint64_t)t * 13);
        /* half genuine, half strangers */
        if (t % 2)
            tg_noisy(base, q, DIM, 0.6f, (uint64_t)t);
        else
            tg_embedding(q, DIM, 900000 + (uint64_t)t);
        gallery_query gq = {q, 5, 0, GALLERY_SCAN_FLOAT, 0, NULL};
        assert_int_equal(gallery_index_search(&ix, &gq, f), 5);
        for (int tier = 0; tier < 2; tier++) {
            gq.scan = tier ? GALLERY_SCAN_INT4 : GALLERY_SCAN_INT8;
            assert_int_equal(gallery_index_search(&ix, &gq, qh), 5);
            if (tier)
                agree4 += f[0].subject_id == qh[0].subject_id;
            else
                agree8 += f[0].subject_id == qh[0].subject_id;
            /* reported scores are exact float rescoring */
            for (int i = 0; i < 5; i++) {
                double d = 0;
                for (int k = 0; k < DIM; k++)
                    d += (double)q[k] * ix.vec[qh[i].row * DIM + (size_t)k];
                assert_true(fabs(d - qh[i].score) < 1e-5);
            }
        }
    }
    fprintf(stderr, "top-1 agreement with float: int8 %d/%d, int4 %d/%d\n", agree8, total, agree4,
            total);
    assert_true(agree8 >= total * 995 / 1000);
    assert_true(agree4 >= total * 99 / 100);
    gallery_index_free(&ix);
}

static void test_remove_and_quantise(void **state)
{
    gallery_index ix;
    gallery_hit h[3];
    float v[DIM], zero[DIM] = {0};
    int8_t q8[DIM];
    float scale;
    (void)state;

    build(&ix, 101, 10, GALLERY_INDEX_INT8 | GALLERY_INDEX_INT4);
    size_t before = ix.n;
    size_t removed = gallery_index_remove_subject(&ix, 5);
    assert_true(removed > 0);
    assert_int_equal(ix.n, before - removed);
    for (size_t r = 0; r < ix.n; r++)
        assert_int_not_equal(ix.subject_id[r], 5);
    /* the wiped tail is zero */
    for (size_t i = ix.n * DIM; i < before * DIM; i++)
        assert_true(ix.vec[i] == 0.0f);
    assert_int_equal(gallery_index_remove_template(&ix, ix.template_id[0]), 0);
    assert_int_equal(gallery_index_remove_template(&ix, 999999), -1);
    /* searching still finds what is left, exactly */
    tg_embedding(v, DIM, 50);
    gallery_query gq = {v, 3, 0, GALLERY_SCAN_AUTO, 1, NULL};
    assert_true(gallery_index_search(&ix, &gq, h) > 0);
    /* zero and NaN vectors are refused */
    assert_int_equal(gallery_index_add(&ix, zero, 1, 1, 1), -1);
    v[0] = NAN;
    assert_int_equal(gallery_index_add(&ix, v, 1, 1, 1), -1);
    /* quantisation keeps every value within half a step */
    tg_embedding(v, DIM, 3);
    gallery_quantise(v, DIM, q8, &scale);
    for (int i = 0; i < DIM; i++)
        assert_true(fabsf(q8[i] * scale - v[i]) <= scale * 0.5f + 1e-7f);
    /* 4 bits, with an odd dimension: the padding nibble is zero (8) */
    uint8_t q4[(DIM + 1) / 2];
    gallery_quantise4(v, DIM - 1, q4, &scale);
    for (int i = 0; i < DIM - 1; i++) {
        int nib = i % 2 ? q4[i / 2] >> 4 : q4[i / 2] & 15;
        assert_true(nib >= 1 && nib <= 15);
        assert_true(fabsf((float)(nib - 8) * scale - v[i]) <= scale * 0.5f + 1e-7f);
    }
    assert_int_equal(q4[(DIM - 1) / 2] >> 4, 8);
    /* k out of range */
    gq.k = 0;
    assert_int_equal(gallery_index_search(&ix, &gq, h), (size_t)-1);
    gallery_index_free(&ix);
}

/* The AVX2 int4 kernel (vpmaddubsw) against the portable one and against
 * a reference computed here from the stored nibbles: every score must be
 * identical, for row lengths that are and are not multiples of 32 bytes,
 * long rows (more than four 32-byte chunks: the int16 sums are widened
 * every four) and extreme vectors (every element at the quantisation
 * limit, the largest products there are). */
static void test_int4_kernels_agree(void **state)
{
    static const int dims[] = {64, 100, 128, 192, 512, 1024};
    (void)state;
    for (size_t di = 0; di < sizeof dims / sizeof dims[0]; di++) {
        int dim = dims[di];
        size_t rows = 1000;
        gallery_index ix;
        float *v = malloc((size_t)dim * sizeof *v), *q = malloc((size_t)dim * sizeof *q);
        float *fast = malloc(rows * sizeof *fast), *slow = malloc(rows * sizeof *slow);
        int8_t *q8 = malloc((size_t)dim);
        assert_int_equal(gallery_index_init(&ix, dim, GALLERY_INDEX_INT4), 0);
        for (size_t r = 0; r < rows; r++) {
            tg_embedding(v, dim, r + 1);
            if (r % 7 == 0) /* extreme: +-1 everywhere, quantised to +-7 */
                for (int i = 0; i < dim; i++)
                    v[i] = r % 14 == 0 || (r / 7 + (size_t)i) % 2 ? 1.0f : -1.0f;
            assert_int_equal(gallery_index_add(&ix, v, (int64_t)r + 1, (int64_t)r + 1, 1), 0);
        }
        for (int trial = 0; trial < 4; trial++) {
            tg_embedding(q, dim, 5000 + (uint64_t)trial);
            if (trial >= 2) /* extreme queries: +-127 everywhere */
                for (int i = 0; i < dim; i++)
                    q[i] = trial == 2 || i % 3 ? 1.0f : -1.0f;
            gallery_normalise(q, dim);
            assert_int_equal(gallery_index_scan_scores(&ix, q, GALLERY_SCAN_INT4, 0, fast), 0);
            assert_int_equal(gallery_index_scan_scores(&ix, q, GALLERY_SCAN_INT4, 1, slow), 0);
            float q_scale;
            gallery_quantise(q, dim, q8, &q_scale);
            for (size_t r = 0; r < rows; r++) {
                const uint8_t *row = ix.q4 + r * ix.q4_bytes;
                int32_t dot = 0;
                for (int i = 0; i < dim; i++) {
                    int nib = i % 2 ? row[i / 2] >> 4 : row[i / 2] & 15;
                    dot += (int32_t)q8[i] * (nib - 8);
                }
                float want = (float)dot * q_scale * ix.q4_scale[r];
                if (fast[r] != want || slow[r] != want)
                    fprintf(stderr, "dim %d row %zu: avx2 %g portable %g reference %g\n", dim, r,
                            (double)fast[r], (double)slow[r], (double)want);
                assert_true(fast[r] == want);
                assert_true(slow[r] == want);
            }
        }
        gallery_index_free(&ix);
        free(v);
        free(q);
        free(fast);
        free(slow);
        free(q8);
    }
}

/* The worker pool gives the same answers as a single thread, including
 * when several searches share it at once (only one uses the workers, the
 * others scan alone). */
typedef struct pool_worker_arg {
    const gallery_index *ix;
    gallery_pool *pool;
    int seed, mismatches;
} pool_worker_arg;

static void *pool_searcher(void *arg)
{
    pool_worker_arg *a = arg;
    float q[DIM];
    gallery_hit want[5], got[5];
    for (int i = 0; i < 40; i++) {
        tg_embedding(q, DIM, (uint64_t)(a->seed * 1000 + i));
        gallery_query one = {q, 5, 0, GALLERY_SCAN_INT4, 1, NULL};
        gallery_query many = {q, 5, 0, GALLERY_SCAN_INT4, 2, a->pool};
        size_t n1 = gallery_index_search(a->ix, &one, want);
        size_t n2 = gallery_index_search(a->ix, &many, got);
        if (n1 != n2 || n1 != 5)
            a->mismatches++;
        for (size_t j = 0; j < n1 && j < n2; j++)
            if (want[j].subject_id != got[j].subject_id || want[j].score != got[j].score)
                a->mismatches++;
    }
    return NULL;
}

static void test_pool(void **state)
{
    gallery_index ix;
    (void)state;
    build(&ix, 50000, 20000, GALLERY_INDEX_INT4);
    gallery_pool *pool = gallery_pool_create(1);
    assert_non_null(pool);
    assert_int_equal(gallery_pool_size(pool), 1);
    pthread_t t[3];
    pool_worker_arg a[3];
    for (int i = 0; i < 3; i++) {
        a[i] = (pool_worker_arg){&ix, pool, i + 1, 0};
        assert_int_equal(pthread_create(&t[i], NULL, pool_searcher, &a[i]), 0);
    }
    for (int i = 0; i < 3; i++) {
        pthread_join(t[i], NULL);
        assert_int_equal(a[i].mismatches, 0);
    }
    gallery_pool_free(pool);
    gallery_index_free(&ix);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_exact_top_k),
        cmocka_unit_test(test_quantised_agree),
        cmocka_unit_test(test_remove_and_quantise),
        cmocka_unit_test(test_int4_kernels_agree),
        cmocka_unit_test(test_pool),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
