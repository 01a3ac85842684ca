/*
 * pool.c - the fork-join pool (see pool.h).
 *
 * One call at a time. The work word holds a generation (high half) and
 * the next task index (low half); everyone claims tasks by compare-and-swap
 * on it, so a worker that wakes late, still holding an old generation, can
 * never claim a task of a newer call: its CAS fails.
 *
 * A call first closes the last call's word (a new generation whose index
 * is past any bound), then writes (fn, ctx, n_tasks), then opens its own
 * generation at index 0. Without the closing step a worker that had loaded
 * the finished call's word (index == its n_tasks) and then read the new,
 * larger n_tasks could still win its CAS on the old word and run a task
 * that the new call runs again; its extra "done" also let the owner return
 * while a task was still running. ThreadSanitizer's scheduling found this
 * (tests/test_pool.c, `make test-tsan`).
 * The owner returns when the count of finished tasks reaches n_tasks.
 */
#include "nn/pool.h"

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/error.h"

/* Waiting, in three steps: SPIN_POLLS polls with a pause (the usual gap
 * between two layers is shorter), then polls that yield the CPU, so that on
 * an oversubscribed machine a waiter never holds the core the thread it
 * waits for needs, then (workers only) sleep on the condition variable. */
#define SPIN_POLLS 2000
#define YIELD_POLLS 200

/* The index of a closed work word: at or past every call's n_tasks. */
#define CLOSED_INDEX 0x7fffffffu

struct nn_pool {
    int threads;
    pthread_t *workers;
    int started;
    pthread_mutex_t lock;
    pthread_cond_t wake;
    int sleepers; /* guarded by lock */
    atomic_int stop;
    /* the current call: written by the owner before `work` is published */
    _Atomic(nn_task_fn) fn;
    _Atomic(void *) ctx;
    atomic_int n_tasks;
    _Atomic uint64_t work; /* generation << 32 | next task index */
    atomic_int done_tasks;
};

typedef struct worker_arg {
    nn_pool *pool;
    int thread;
} worker_arg;

static void cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __asm__ __volatile__("pause");
#elif defined(__aarch64__)
    __asm__ __volatile__("yield");
#endif
}

static uint32_t generation_of(uint64_t work)
{
    return (uint32_t)(work >> 32);
}

/* Claim and run tasks of call `gen` until none is left. */
static void take_tasks(nn_pool *p, uint32_t gen, int thread)
{
    uint64_t w = atomic_load_explicit(&p->work, memory_order_acquire);
    for (;;) {
        if (generation_of(w) != gen)
            return;
        const uint32_t index = (uint32_t)w;
        /* Acquire: if these read a newer call's values, its closing store
         * is visible too, and the CAS below on the old word fails. */
        const int n = atomic_load_explicit(&p->n_tasks, memory_order_acquire);
        nn_task_fn fn = atomic_load_explicit(&p->fn, memory_order_acquire);
        void *ctx = atomic_load_explicit(&p->ctx, memory_order_acquire);
        if (index >= (uint32_t)n)
            return;
        /* On failure w is reloaded and the checks run again. */
        if (atomic_compare_exchange_weak_explicit(&p->work, &w, w + 1, memory_order_acq_rel,
                                                  memory_order_acquire)) {
            fn(ctx, (int)index, thread);
            atomic_fetch_add_explicit(&p->done_tasks, 1, memory_order_release);
            w = atomic_load_explicit(&p->work, memory_order_acquire);
        }
    }
}

static void *worker_main(void *arg)
{
    worker_arg *wa = arg;
    nn_pool *p = wa->pool;
    const int thread = wa->thread;
    uint32_t seen = generation_of(atomic_load_explicit(&p->work, memory_order_acquire));

    free(wa);
    for (;;) {
        uint32_t gen = seen;
        for (int i = 0; i < SPIN_POLLS + YIELD_POLLS; i++) {
            gen = generation_of(atomic_load_explicit(&p->work, memory_order_acquire));
            if (gen != seen || atomic_load_explicit(&p->stop, memory_order_relaxed))
                break;
            if (i < SPIN_POLLS)
                cpu_relax();
            else
                sched_yield();
        }
        if (gen == seen && !atomic_load_explicit(&p->stop, memory_order_relaxed)) {
            pthread_mutex_lock(&p->lock);
            p->sleepers++;
            while ((gen = generation_of(atomic_load_explicit(&p->work, memory_order_acquire))) ==
                       seen &&
                   !atomic_load_explicit(&p->stop, memory_order_relaxed))
                pthread_cond_wait(&p->wake, &p->lock);
            p->sleepers--;
            pthread_mutex_unlock(&p->lock);
        }
        if (atomic_load_explicit(&p->stop, memory_order_relaxed))
            return NULL;
        seen = gen;
        take_tasks(p, gen, thread);
    }
}

facenet_status nn_pool_create(int threads, nn_pool **out, facenet_error *err)
{
    if (!out)
        return fn_fail(err, FACENET_ERR_INVALID_ARGUMENT, "out is NULL");
    *out = NULL;
    if (threads < 1 || threads > NN_POOL_MAX_THREADS)
        return fn_fail(err, FACENET_ERR_INVALID_ARGUMENT, "thread count %d is not in 1..%d",
                       threads, NN_POOL_MAX_THREADS);
    nn_pool *p = calloc(1, sizeof *p);
    if (!p)
        return fn_fail(err, FACENET_ERR_NO_MEMORY, "out of memory creating a thread pool");
    p->threads = threads;
    atomic_init(&p->stop, 0);
    atomic_init(&p->fn, (nn_task_fn)NULL);
    atomic_init(&p->ctx, (void *)NULL);
    atomic_init(&p->n_tasks, 0);
    atomic_init(&p->work, (uint64_t)0);
    atomic_init(&p->done_tasks, 0);
    pthread_mutex_init(&p->lock, NULL);
    pthread_cond_init(&p->wake, NULL);
    if (threads > 1) {
        p->workers = calloc((size_t)threads - 1, sizeof *p->workers);
        if (!p->workers) {
            nn_pool_free(p);
            return fn_fail(err, FACENET_ERR_NO_MEMORY, "out of memory creating a thread pool");
        }
    }
    for (int i = 1; i < threads; i++) {
        worker_arg *wa = malloc(sizeof *wa);
        if (wa) {
            wa->pool = p;
            wa->thread = i;
        }
        if (!wa || pthread_create(&p->workers[i - 1], NULL, worker_main, wa) != 0) {
            free(wa);
            nn_pool_free(p);
            return fn_fail(err, FACENET_ERR_NO_MEMORY, "cannot start thread %d of %d", i + 1,
                           threads);
        }
        p->started++;
    }
    *out = p;
    return FACENET_OK;
}

void nn_pool_free(nn_pool *p)
{
    if (!p)
        return;
    pthread_mutex_lock(&p->lock);
    atomic_store(&p->stop, 1);
    pthread_cond_broadcast(&p->wake);
    pthread_mutex_unlock(&p->lock);
    for (int i = 0; i < p->started; i++)
        pthread_join(p->workers[i], NULL);
    pthread_mutex_destroy(&p->lock);
    pthread_cond_destroy(&p->wake);
    free(p->workers);
    free(p);
}

int nn_pool_threads(const nn_pool *p)
{
    return p ? p->threads : 1;
}

void nn_pool_run(nn_pool *p, int n_tasks, nn_task_fn fn, void *ctx)
{
    if (n_tasks <= 0)
        return;
    if (!p || p->threads == 1 || n_tasks == 1) {
        for (int t = 0; t < n_tasks; t++)
            fn(ctx, t, 0);
        return;
    }
    const uint32_t last = generation_of(atomic_load_explicit(&p->work, memory_order_relaxed));
    const uint32_t gen = last + 2u;
    /* Close the last call's word before touching its bounds (see the top
     * of the file), then publish this call. */
    atomic_store_explicit(&p->work, (uint64_t)(last + 1u) << 32 | CLOSED_INDEX,
                          memory_order_seq_cst);
    atomic_store_explicit(&p->fn, fn, memory_order_release);
    atomic_store_explicit(&p->ctx, ctx, memory_order_release);
    atomic_store_explicit(&p->n_tasks, n_tasks, memory_order_release);
    atomic_store_explicit(&p->done_tasks, 0, memory_order_relaxed);
    atomic_store_explicit(&p->work, (uint64_t)gen << 32, memory_order_release);
    pthread_mutex_lock(&p->lock);
    if (p->sleepers > 0)
        pthread_cond_broadcast(&p->wake);
    pthread_mutex_unlock(&p->lock);
    take_tasks(p, gen, 0);
    for (int i = 0; atomic_load_explicit(&p->done_tasks, memory_order_acquire) < n_tasks; i++) {
        if (i < SPIN_POLLS)
            cpu_relax();
        else
            sched_yield();
    }
}

int nn_threads_from_env(int fallback)
{
    const char *s = getenv("FACENET_THREADS");
    if (!s || !*s)
        return fallback;
    char *end = NULL;
    long v = strtol(s, &end, 10);
    if (*end != '\0' || v < 1 || v > NN_POOL_MAX_THREADS)
        return fallback;
    return (int)v;
}

int nn_cpu_count(void)
{
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n < 1 ? 1 : n > NN_POOL_MAX_THREADS ? NN_POOL_MAX_THREADS : (int)n;
}
