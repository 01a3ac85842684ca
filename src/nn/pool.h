/*
 * pool.h - a small fork-join thread pool for the kernels.
 *
 * A pool belongs to whoever created it (a session, a detector, a tool),
 * never to the library as a whole: there is no global pool. nn_pool_run()
 * hands out task indices 0..n_tasks-1 to the pool's threads and to the
 * calling thread, and returns when every task has finished; tasks of one
 * call must not depend on each other. A pool runs one call at a time: it
 * is used by one thread (its owner) at a time, like a session.
 *
 * Workers spin briefly after a call before they sleep, because the engine
 * issues calls back to back (one per layer) and a futex wake-up per layer
 * would cost more than small layers take.
 */
#ifndef FACENET_NN_POOL_H
#define FACENET_NN_POOL_H

#include "facenet/facenet.h"

#define NN_POOL_MAX_THREADS 256

typedef struct nn_pool nn_pool;

/* Run fn(ctx, task, thread) for every task in [0, n_tasks). `thread` is
 * in [0, nn_pool_threads(pool)) and no two tasks run at once with the same
 * `thread`, so it can index per-thread scratch memory. */
typedef void (*nn_task_fn)(void *ctx, int task, int thread);

/* A pool of `threads` threads in all, the caller's included (so
 * threads - 1 workers are started). threads must be in
 * [1, NN_POOL_MAX_THREADS]. */
facenet_status nn_pool_create(int threads, nn_pool **out, facenet_error *err);
void nn_pool_free(nn_pool *pool);

/* Threads of the pool; 1 for NULL (a NULL pool runs tasks in the caller). */
int nn_pool_threads(const nn_pool *pool);

void nn_pool_run(nn_pool *pool, int n_tasks, nn_task_fn fn, void *ctx);

/* Threads requested by $FACENET_THREADS (1..NN_POOL_MAX_THREADS), or
 * `fallback` when it is unset or not a valid number. */
int nn_threads_from_env(int fallback);

/* Online CPUs, at least 1. */
int nn_cpu_count(void);

#endif
