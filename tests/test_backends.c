/* Every available backend against the reference backend, on every pinned
 * model: the golden pattern inputs at batch 1 and a batch of 3 different
 * images, with 1 and 2 threads. Tolerances are the golden README's (P/R/O-
 * Net: abs <= 1e-5; embedders: max abs <= 1e-4 * max|v| and cosine >=
 * 0.99999). A thread count must never change a result: the work is split
 * over output rows and channels, never over a sum. */
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

typedef struct model_case {
    const char *name;
    int h, w;          /* network input (MTCNN's is transposed: any H, W) */
    float mean[3], scale;
    int embedder;      /* tolerance class */
} model_case;

static const model_case cases[] = {
    {"mtcnn-pnet", 40, 30, {127.5f, 127.5f, 127.5f}, 0.0078125f, 0},
    {"mtcnn-rnet", 24, 24, {127.5f, 127.5f, 127.5f}, 0.0078125f, 0},
    {"mtcnn-onet", 48, 48, {127.5f, 127.5f, 127.5f}, 0.0078125f, 0},
    {"mobilefacenet", 112, 112, {127.5f, 127.5f, 127.5f}, 1.0f / 128.0f, 1},
    {"dlib-resnet", 150, 150, {122.782f, 117.001f, 104.298f}, 1.0f / 256.0f, 1},
    {"dlib-resnet-tfjs", 150, 150, {122.782f, 117.001f, 104.298f}, 1.0f / 256.0f, 1},
};

/* n images: image b is the golden pattern shifted by 17*b pixels. */
static float *pattern_batch(const model_case *c, int n)
{
    float *x = malloc((size_t)n * c->h * c->w * 3 * sizeof *x);
    float *p = x;
    for (int b = 0; b < n; b++)
        for (int y = 0; y < c->h; y++)
            for (int xx = 0; xx < c->w; xx++)
                for (int ch = 0; ch < 3; ch++)
                    *p++ = (tu_pattern(xx + 17 * b, y, ch) - c->mean[ch]) * c->scale;
    return x;
}

typedef struct outputs {
    int count;
    float *data[4];
    size_t size[4];
} outputs;

static void run_model(facenet_model *m, int threads, const float *x, int n,
                      const model_case *c, outputs *out)
{
    facenet_session *s = NULL;
    facenet_error err;
    assert_int_equal(facenet_session_create(m, &s, &err), FACENET_OK);
    assert_int_equal(facenet_session_set_threads(s, threads, &err), FACENET_OK);
    assert_int_equal(facenet_session_threads(s), threads);
    assert_int_equal(facenet_session_run(s, x, n, c->h, c->w, 3, &err), FACENET_OK);
    out->count = facenet_model_output_count(m);
    assert_true(out->count >= 1 && out->count <= 4);
    for (int k = 0; k < out->count; k++) {
        const float *data;
        int dims[4], rank;
        assert_int_equal(facenet_session_output(s, k, &data, dims, &rank, &err), FACENET_OK);
        out->size[k] = (size_t)dims[0] * dims[1] * dims[2] * dims[3];
        out->data[k] = malloc(out->size[k] * sizeof(float));
        memcpy(out->data[k], data, out->size[k] * sizeof(float));
    }
    facenet_session_free(s);
}

static void free_outputs(outputs *o)
{
    for (int k = 0; k < o->count; k++)
        free(o->data[k]);
}

static void compare(const model_case *c, const char *backend, const outputs *ref,
                    const outputs *got, int rows)
{
    assert_int_equal(ref->count, got->count);
    for (int k = 0; k < ref->count; k++) {
        assert_int_equal(ref->size[k], got->size[k]);
        const float diff = tu_max_abs_diff(ref->data[k], got->data[k], ref->size[k]);
        if (!c->embedder) {
            if (diff > 1e-5f)
                fail_msg("%s on %s, output %d: max abs diff %g > 1e-5", c->name, backend, k,
                         (double)diff);
            continue;
        }
        const float peak = tu_max_abs(ref->data[k], ref->size[k]);
        if (diff > 1e-4f * peak)
            fail_msg("%s on %s: max abs diff %g > 1e-4 * %g", c->name, backend, (double)diff,
                     (double)peak);
        const size_t dim = ref->size[k] / (size_t)rows;
        for (int r = 0; r < rows; r++) {
            double cos = tu_cosine(ref->data[k] + r * dim, got->data[k] + r * dim, dim);
            if (cos < 0.99999)
                fail_msg("%s on %s, row %d: cosine %.7f < 0.99999", c->name, backend, r, cos);
        }
    }
}

static void test_backends_match_reference(void **state)
{
    (void)state;
    assert_true(facenet_backend_available("reference"));
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const model_case *c = &cases[i];
        const facenet_model_info *info = facenet_model_find(c->name);
        facenet_model *ref = NULL;
        facenet_error err;
        assert_non_null(info);
        facenet_model_free(tu_load_model(c->name)); /* skips when models are absent */
        assert_int_equal(facenet_model_load_backend(tu_model_dir(), info, "reference", &ref, &err),
                         FACENET_OK);
        assert_string_equal(facenet_model_backend(ref), "reference");

        for (int n = 1; n <= 3; n += 2) {
            float *x = pattern_batch(c, n);
            outputs want;
            run_model(ref, 1, x, n, c, &want);
            for (int b = 0; facenet_backend_name(b); b++) {
                const char *name = facenet_backend_name(b);
                facenet_model *m = NULL;
                if (strcmp(name, "reference") == 0 || !facenet_backend_available(name))
                    continue;
                assert_int_equal(facenet_model_load_backend(tu_model_dir(), info, name, &m, &err),
                                 FACENET_OK);
                assert_string_equal(facenet_model_backend(m), name);
                outputs one, two;
                run_model(m, 1, x, n, c, &one);
                run_model(m, 2, x, n, c, &two);
                compare(c, name, &want, &one, n);
                for (int k = 0; k < one.count; k++)
                    assert_memory_equal(one.data[k], two.data[k], one.size[k] * sizeof(float));
                free_outputs(&one);
                free_outputs(&two);
                facenet_model_free(m);
            }
            free_outputs(&want);
            free(x);
        }
        facenet_model_free(ref);
    }
}

/* Batch rows are independent on every backend: row b of a batch equals a
 * batch-1 run of image b. A batch of 16 faces runs in chunks that fit in
 * cache (exec.c), which must not show in the outputs. */
static void test_batch_rows_are_independent(void **state)
{
    (void)state;
    const model_case *c = &cases[3]; /* MobileFaceNet */
    facenet_model *m = tu_load_model(c->name);
    const int n = 16;
    float *x = pattern_batch(c, n);
    outputs all;
    run_model(m, 2, x, n, c, &all);
    const size_t image = (size_t)c->h * c->w * 3;
    assert_int_equal(all.size[0], (size_t)n * 192);
    for (int b = 0; b < n; b++) {
        outputs one;
        run_model(m, 1, x + b * image, 1, c, &one);
        const size_t dim = one.size[0];
        for (size_t i = 0; i < dim; i++)
            assert_true(fabsf(one.data[0][i] - all.data[0][b * dim + i]) <=
                        1e-5f * (1.0f + fabsf(one.data[0][i])));
        free_outputs(&one);
    }
    free_outputs(&all);
    free(x);
    facenet_model_free(m);
}

static void test_unknown_backend_is_refused(void **state)
{
    facenet_model *m = NULL;
    facenet_error err;
    (void)state;
    const facenet_model_info *info = facenet_model_find("mtcnn-rnet");
    assert_false(facenet_backend_available("no-such-backend"));
    assert_int_equal(facenet_model_load_backend(tu_model_dir(), info, "no-such-backend", &m, &err),
                     FACENET_ERR_UNSUPPORTED);
    assert_null(m);
    assert_non_null(strstr(err.message, "no-such-backend"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_backends_match_reference),
        cmocka_unit_test(test_batch_rows_are_independent),
        cmocka_unit_test(test_unknown_backend_is_refused),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
