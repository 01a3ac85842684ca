/* The thread pool: every task of a call runs exactly once, on a valid
 * thread index, calls back to back never mix, and sessions take their
 * thread count from the caller or FACENET_THREADS. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "nn/pool.h"
#include "support/testutil.h"

#define MAX_TASKS 1000

typedef struct counts {
    atomic_int hits[MAX_TASKS];
    atomic_int bad_thread;
    int threads;
} counts;

static void count_task(void *ctx, int task, int thread)
{
    counts *c = ctx;
    atomic_fetch_add(&c->hits[task], 1);
    if (thread < 0 || thread >= c->threads)
        atomic_fetch_add(&c->bad_thread, 1);
}

static void test_every_task_once(void **state)
{
    (void)state;
    for (int threads = 1; threads <= 4; threads++) {
        nn_pool *pool = NULL;
        facenet_error err;
        assert_int_equal(nn_pool_create(threads, &pool, &err), FACENET_OK);
        assert_int_equal(nn_pool_threads(pool), threads);
        counts *c = calloc(1, sizeof *c);
        c->threads = threads;
        /* Many calls of varied sizes back to back, as the layers issue
         * them: a late worker must never run a task of the next call
         * with the bounds of the last one. */
        for (int call = 0; call < 2000; call++) {
            const int n = 1 + (call * 37) % MAX_TASKS;
            for (int t = 0; t < n; t++)
                atomic_store(&c->hits[t], 0);
            nn_pool_run(pool, n, count_task, c);
            for (int t = 0; t < n; t++)
                if (atomic_load(&c->hits[t]) != 1)
                    fail_msg("threads %d, call %d: task %d ran %d times", threads, call, t,
                             atomic_load(&c->hits[t]));
        }
        assert_int_equal(atomic_load(&c->bad_thread), 0);
        nn_pool_run(pool, 0, count_task, c); /* nothing to do is fine */
        free(c);
        nn_pool_free(pool);
    }
}

/* Short calls whose size grows by one from call to call: the pattern
 * that once let a worker holding a finished call's word (index == its
 * n_tasks) run task n_tasks of the next, larger call too, and count it as
 * done there (see src/nn/pool.c). Rare on its own; under `make test-tsan`
 * the old code failed here within a few runs. */
static void test_growing_calls(void **state)
{
    (void)state;
    for (int threads = 2; threads <= 4; threads++) {
        nn_pool *pool = NULL;
        facenet_error err;
        assert_int_equal(nn_pool_create(threads, &pool, &err), FACENET_OK);
        counts *c = calloc(1, sizeof *c);
        c->threads = threads;
        for (int call = 0; call < 20000; call++) {
            const int n = 2 + call % 3;
            for (int t = 0; t < n; t++)
                atomic_store(&c->hits[t], 0);
            nn_pool_run(pool, n, count_task, c);
            for (int t = 0; t < n; t++)
                if (atomic_load(&c->hits[t]) != 1)
                    fail_msg("threads %d, call %d: task %d of %d ran %d times", threads, call, t,
                             n, atomic_load(&c->hits[t]));
        }
        free(c);
        nn_pool_free(pool);
    }
}

static void test_bad_sizes(void **state)
{
    nn_pool *pool = (nn_pool *)&pool; /* must be reset to NULL */
    facenet_error err;
    (void)state;
    assert_int_equal(nn_pool_create(0, &pool, &err), FACENET_ERR_INVALID_ARGUMENT);
    assert_null(pool);
    assert_int_equal(nn_pool_create(NN_POOL_MAX_THREADS + 1, &pool, &err),
                     FACENET_ERR_INVALID_ARGUMENT);
    assert_int_equal(nn_pool_threads(NULL), 1);
    nn_pool_free(NULL);
}

static void test_threads_from_env(void **state)
{
    (void)state;
    setenv("FACENET_THREADS", "3", 1);
    assert_int_equal(nn_threads_from_env(1), 3);
    setenv("FACENET_THREADS", "0", 1);
    assert_int_equal(nn_threads_from_env(1), 1);
    setenv("FACENET_THREADS", "2x", 1);
    assert_int_equal(nn_threads_from_env(5), 5);
    setenv("FACENET_THREADS", "100000", 1);
    assert_int_equal(nn_threads_from_env(1), 1);
    unsetenv("FACENET_THREADS");
    assert_int_equal(nn_threads_from_env(2), 2);
    assert_true(nn_cpu_count() >= 1);
}

/* Sessions: default from FACENET_THREADS, then whatever the caller sets. */
static void test_session_threads(void **state)
{
    facenet_session *s = NULL;
    facenet_error err;
    (void)state;
    facenet_model *m = tu_load_model("mtcnn-rnet");
    setenv("FACENET_THREADS", "2", 1);
    assert_int_equal(facenet_session_create(m, &s, &err), FACENET_OK);
    assert_int_equal(facenet_session_threads(s), 2);
    assert_int_equal(facenet_session_set_threads(s, 1, &err), FACENET_OK);
    assert_int_equal(facenet_session_threads(s), 1);
    assert_int_equal(facenet_session_set_threads(s, 3, &err), FACENET_OK);
    assert_int_equal(facenet_session_threads(s), 3);
    assert_int_equal(facenet_session_set_threads(s, -1, &err), FACENET_ERR_INVALID_ARGUMENT);
    assert_int_equal(facenet_session_threads(s), 3);
    float x[24 * 24 * 3];
    for (int i = 0; i < 24 * 24 * 3; i++)
        x[i] = (float)(i % 13) / 13.0f - 0.5f;
    assert_int_equal(facenet_session_run(s, x, 1, 24, 24, 3, &err), FACENET_OK);
    facenet_session_free(s);
    unsetenv("FACENET_THREADS");
    assert_int_equal(facenet_session_create(m, &s, &err), FACENET_OK);
    assert_int_equal(facenet_session_threads(s), 1);
    facenet_session_free(s);
    facenet_model_free(m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_every_task_once),
        cmocka_unit_test(test_growing_calls),
        cmocka_unit_test(test_bad_sizes),
        cmocka_unit_test(test_threads_from_env),
        cmocka_unit_test(test_session_threads),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
