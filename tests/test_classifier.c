/* The classifier: trains on synthetic identities and predicts held-out
 * samples, probabilities sum to one, the file round-trips, and damaged,
 * tampered, unsigned-when-signed-expected and hostile files are refused. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "support/gallery_testutil.h"

#define DIM 64
#define CLASSES 6
#define TRAIN 8
#define TEST 10
#define MODEL "synthetic@0123456789abcdef"

static const char *const names[CLASSES] = {"Ann", "Bob", "Cy", "Dee", "O'Brien; --", "Zoë"};

static void sample(float *v, int cls, int i)
{
    float centre[DIM];
    tg_embedding(centre, DIM, 777 + (uint64_t)cls);
    tg_noisy(centre, v, DIM, 0.7f, (uint64_t)cls * 1000 + (uint64_t)i);
}

static facenet_classifier *train(void)
{
    float *x = malloc(CLASSES * TRAIN * DIM * sizeof *x);
    int y[CLASSES * TRAIN];
    facenet_classifier *c = NULL;
    facenet_error err;
    for (int k = 0; k < CLASSES; k++)
        for (int i = 0; i < TRAIN; i++) {
            sample(x + (k * TRAIN + i) * DIM, k, i);
            y[k * TRAIN + i] = k;
        }
    srand(1);
    facenet_status st = facenet_classifier_train(x, y, CLASSES * TRAIN, DIM, names, CLASSES,
                                                 MODEL, &c, &err);
    if (st == FACENET_ERR_UNSUPPORTED) {
        fprintf(stderr, "SKIP: %s\n", err.message);
        exit(77);
    }
    if (st != FACENET_OK)
        fprintf(stderr, "train: %s\n", err.message);
    assert_int_equal(st, FACENET_OK);
    free(x);
    return c;
}

static int accuracy(const facenet_classifier *c, double *min_top)
{
    float v[DIM];
    double p[CLASSES];
    size_t best;
    facenet_error err;
    int right = 0;
    *min_top = 1;
    for (int k = 0; k < CLASSES; k++)
        for (int i = 0; i < TEST; i++) {
            sample(v, k, 100 + i);
            assert_int_equal(facenet_classifier_predict(c, MODEL, v, DIM, p, &best, &err),
                             FACENET_OK);
            double sum = 0;
            for (int j = 0; j < CLASSES; j++) {
                assert_true(p[j] >= 0 && p[j] <= 1);
                sum += p[j];
            }
            assert_true(fabs(sum - 1) < 1e-6);
            right += best == (size_t)k;
            if (p[best] < *min_top)
                *min_top = p[best];
        }
    return right;
}

static void test_train_predict_roundtrip(void **state)
{
    char *dir = tg_mkdtemp(), *path = tg_path(dir, "c.classifier");
    facenet_classifier *c = train(), *d = NULL;
    facenet_error err;
    double min_top;
    float v[DIM];
    double p1[CLASSES], p2[CLASSES];
    size_t b1, b2;
    struct stat sb;
    (void)state;

    assert_int_equal(facenet_classifier_class_count(c), CLASSES);
    assert_string_equal(facenet_classifier_class_name(c, 5), "Zoë");
    assert_null(facenet_classifier_class_name(c, CLASSES));
    int right = accuracy(c, &min_top);
    fprintf(stderr, "held-out accuracy %d/%d\n", right, CLASSES * TEST);
    assert_true(right >= CLASSES * TEST * 95 / 100);
    /* other model, other dimension */
    sample(v, 2, 5);
    assert_int_equal(facenet_classifier_predict(c, "other@0", v, DIM, p1, &b1, &err),
                     FACENET_ERR_UNSUPPORTED);
    assert_int_equal(facenet_classifier_predict(c, MODEL, v, DIM - 1, p1, &b1, &err),
                     FACENET_ERR_SHAPE);

    assert_int_equal(facenet_classifier_save(c, path, NULL, &err), FACENET_OK);
    assert_int_equal(stat(path, &sb), 0);
    assert_int_equal(sb.st_mode & 0777, 0600);
    assert_int_equal(facenet_classifier_load(path, NULL, &d, &err), FACENET_OK);
    assert_string_equal(facenet_classifier_model(d), MODEL);
    assert_int_equal(facenet_classifier_dim(d), DIM);
    for (int k = 0; k < CLASSES; k++) {
        sample(v, k, 200);
        assert_int_equal(facenet_classifier_predict(c, MODEL, v, DIM, p1, &b1, &err), FACENET_OK);
        assert_int_equal(facenet_classifier_predict(d, MODEL, v, DIM, p2, &b2, &err), FACENET_OK);
        assert_int_equal(b1, b2);
        for (int j = 0; j < CLASSES; j++)
            assert_true(fabs(p1[j] - p2[j]) < 1e-9);
    }
    facenet_classifier_free(d);
    facenet_classifier_free(c);
    free(path);
    tg_rmdir(dir);
}

static void test_bad_training_input(void **state)
{
    float x[4 * DIM];
    int y[4] = {0, 0, 1, 1};
    facenet_classifier *c = (facenet_classifier *)1;
    facenet_error err;
    const char *two[2] = {"a", "b"}, *bad_names[2] = {"a", "bad\nname"};
    (void)state;
    for (int i = 0; i < 4; i++)
        sample(x + i * DIM, i / 2, i);
    assert_int_equal(facenet_classifier_train(x, y, 4, DIM, two, 1, MODEL, &c, &err),
                     FACENET_ERR_INVALID_ARGUMENT); /* one class */
    assert_null(c);
    y[3] = 2;
    assert_int_equal(facenet_classifier_train(x, y, 4, DIM, two, 2, MODEL, &c, &err),
                     FACENET_ERR_INVALID_ARGUMENT); /* label out of range */
    y[2] = y[3] = 0;
    assert_int_equal(facenet_classifier_train(x, y, 4, DIM, two, 2, MODEL, &c, &err),
                     FACENET_ERR_INVALID_ARGUMENT); /* an empty class */
    assert_non_null(strstr(err.message, "no samples"));
    y[2] = y[3] = 1;
    assert_int_equal(facenet_classifier_train(x, y, 4, DIM, bad_names, 2, MODEL, &c, &err),
                     FACENET_ERR_INVALID_ARGUMENT);
    x[3] = NAN;
    assert_int_equal(facenet_classifier_train(x, y, 4, DIM, two, 2, MODEL, &c, &err),
                     FACENET_ERR_INVALID_ARGUMENT);
}

static void test_tampering_refused(void **state)
{
    char *dir = tg_mkdtemp(), *path = tg_path(dir, "c.classifier"), *bad = tg_path(dir, "x");
    facenet_classifier *c = train(), *d = NULL;
    facenet_error err;
    uint8_t key[32], other[32];
    size_t size;
    (void)state;
    tg_key(key, 1);
    tg_key(other, 2);

    /* signed with a key */
    assert_int_equal(facenet_classifier_save(c, path, key, &err), FACENET_OK);
    assert_int_equal(facenet_classifier_load(path, key, &d, &err), FACENET_OK);
    facenet_classifier_free(d);
    d = NULL;
    assert_int_equal(facenet_classifier_load(path, other, &d, &err), FACENET_ERR_INTEGRITY);
    assert_int_equal(facenet_classifier_load(path, NULL, &d, &err), FACENET_ERR_INTEGRITY);
    assert_non_null(strstr(err.message, "signed"));
    uint8_t *data = tg_read(path, &size);
    /* one changed digit in a coefficient, deep in the body */
    char *p = strstr((char *)data, "\"rho\"");
    assert_non_null(p);
    while (*p && (*p < '1' || *p > '8'))
        p++;
    (*p)++;
    assert_int_equal(tg_write(bad, data, size), 0);
    assert_int_equal(facenet_classifier_load(bad, key, &d, &err), FACENET_ERR_INTEGRITY);
    (*p)--;
    /* truncated */
    assert_int_equal(tg_write(bad, data, size - 10), 0);
    assert_int_equal(facenet_classifier_load(bad, key, &d, &err), FACENET_ERR_INTEGRITY);
    assert_int_equal(tg_write(bad, data, 30), 0);
    assert_int_equal(facenet_classifier_load(bad, key, &d, &err), FACENET_ERR_FORMAT);
    free(data);
    /* unsigned: a SHA-256; a key given for it is refused */
    assert_int_equal(facenet_classifier_save(c, path, NULL, &err), FACENET_OK);
    assert_int_equal(facenet_classifier_load(path, key, &d, &err), FACENET_ERR_INTEGRITY);
    data = tg_read(path, &size);
    data[size - 5] = data[size - 5] == ' ' ? '\t' : ' ';
    assert_int_equal(tg_write(bad, data, size), 0);
    assert_int_equal(facenet_classifier_load(bad, NULL, &d, &err), FACENET_ERR_INTEGRITY);
    free(data);
    assert_null(d);
    facenet_classifier_free(c);
    free(path);
    free(bad);
    tg_rmdir(dir);
}

/* Write body with a correct SHA-256 header: the parser must still refuse
 * inconsistent content (an attacker can always recompute a plain hash). */
static facenet_status load_crafted(const char *path, const char *body)
{
    unsigned char d[32];
    char hex[65];
    facenet_classifier *c = NULL;
    facenet_error err;
    crypto_hash_sha256(d, (const unsigned char *)body, strlen(body));
    sodium_bin2hex(hex, sizeof hex, d, sizeof d);
    FILE *f = fopen(path, "wb");
    fprintf(f, "facenet-classifier 1 sha256 %s\n%s", hex, body);
    fclose(f);
    facenet_status st = facenet_classifier_load(path, NULL, &c, &err);
    if (st == FACENET_OK)
        facenet_classifier_free(c);
    else
        assert_true(strlen(err.message) > 10);
    return st;
}

static void test_crafted_files(void **state)
{
    char *dir = tg_mkdtemp(), *path = tg_path(dir, "c.classifier");
    (void)state;
#define HEAD "{\"format\":\"facenet-classifier\",\"version\":1,\"model_id\":\"m@0\",\"dim\":2,"
    static const char *const bodies[] = {
        "not json",
        "[]",
        HEAD "\"classes\":[\"a\",\"b\"],\"svm\":{\"type\":\"c_svc\",\"kernel\":\"rbf\","
             "\"nr_class\":2,\"l\":1}}",
        /* nSV does not add up to l: libsvm would read past its arrays */
        HEAD "\"classes\":[\"a\",\"b\"],\"svm\":{\"type\":\"c_svc\",\"kernel\":\"linear\","
             "\"nr_class\":2,\"l\":2,\"label\":[0,1],\"nSV\":[1,5],\"rho\":[0],\"probA\":[1],"
             "\"probB\":[0],\"sv_coef\":[[1,-1]],\"sv\":[[1,0],[0,1]]}}",
        /* label is not a permutation */
        HEAD "\"classes\":[\"a\",\"b\"],\"svm\":{\"type\":\"c_svc\",\"kernel\":\"linear\","
             "\"nr_class\":2,\"l\":2,\"label\":[0,0],\"nSV\":[1,1],\"rho\":[0],\"probA\":[1],"
             "\"probB\":[0],\"sv_coef\":[[1,-1]],\"sv\":[[1,0],[0,1]]}}",
        /* a support vector of the wrong length */
        HEAD "\"classes\":[\"a\",\"b\"],\"svm\":{\"type\":\"c_svc\",\"kernel\":\"linear\","
             "\"nr_class\":2,\"l\":2,\"label\":[0,1],\"nSV\":[1,1],\"rho\":[0],\"probA\":[1],"
             "\"probB\":[0],\"sv_coef\":[[1,-1]],\"sv\":[[1,0,3],[0,1]]}}",
        /* l claims more vectors than the file holds */
        HEAD "\"classes\":[\"a\",\"b\"],\"svm\":{\"type\":\"c_svc\",\"kernel\":\"linear\","
             "\"nr_class\":2,\"l\":9000000,\"label\":[0,1],\"nSV\":[1,1],\"rho\":[0],"
             "\"probA\":[1],\"probB\":[0],\"sv_coef\":[[1,-1]],\"sv\":[[1,0],[0,1]]}}",
        /* a control character in a class name */
        HEAD "\"classes\":[\"a\",\"b\\u001b\"],\"svm\":{\"type\":\"c_svc\",\"kernel\":\"linear\","
             "\"nr_class\":2,\"l\":2,\"label\":[0,1],\"nSV\":[1,1],\"rho\":[0],\"probA\":[1],"
             "\"probB\":[0],\"sv_coef\":[[1,-1]],\"sv\":[[1,0],[0,1]]}}",
    };
    for (size_t i = 0; i < sizeof bodies / sizeof bodies[0]; i++) {
        facenet_status st = load_crafted(path, bodies[i]);
        if (st == FACENET_OK)
            fprintf(stderr, "crafted body %zu was accepted\n", i);
        assert_true(st == FACENET_ERR_FORMAT || st == FACENET_ERR_INVALID_ARGUMENT);
    }
    /* and a consistent one is accepted and predicts */
    assert_int_equal(
        load_crafted(path, HEAD "\"classes\":[\"a\",\"b\"],\"svm\":{\"type\":\"c_svc\","
                                "\"kernel\":\"linear\",\"nr_class\":2,\"l\":2,\"label\":[0,1],"
                                "\"nSV\":[1,1],\"rho\":[0],\"probA\":[-3],\"probB\":[0],"
                                "\"sv_coef\":[[1,-1]],\"sv\":[[1,0],[0,1]]}}"),
        FACENET_OK);
    free(path);
    tg_rmdir(dir);
}

int main(void)
{
    facenet_classifier *probe = NULL;
    facenet_error err;
    if (facenet_classifier_load("/nonexistent/x", NULL, &probe, &err) == FACENET_ERR_UNSUPPORTED) {
        fprintf(stderr, "SKIP: %s\n", err.message);
        return 77;
    }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_train_predict_roundtrip),
        cmocka_unit_test(test_bad_training_input),
        cmocka_unit_test(test_tampering_refused),
        cmocka_unit_test(test_crafted_files),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
