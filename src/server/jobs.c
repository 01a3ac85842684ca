/*
 * jobs.c - the threads that run the model routes (see server_int.h).
 *
 * Why not let libmicrohttpd's threads run them: in its thread-pool mode a
 * connection belongs to one of --threads polling threads, and an inference
 * (or a wait in the pipeline queue) on that thread parks every other
 * connection it serves. A server at capacity then answered even its
 * refusals a second late. Here the polling threads only read bodies and
 * write responses; the work runs on job threads, and the connection stays
 * suspended (libmicrohttpd ignores it) until the job is done.
 */
#include <stdlib.h>

#include "common/error.h"
#include "server/server_int.h"

/* Enough threads that a job never waits for one behind admitted work:
 * one per pipeline, one per queue place (bounded: a huge --max-queue
 * would only cost threads), and one to refuse the next request. */
#define QUEUE_THREADS_MAX 64

static void *job_main(void *arg)
{
    fn_server *s = arg;
    for (;;) {
        request *req;
        struct MHD_Connection *conn;

        pthread_mutex_lock(&s->lock);
        while (!s->job_head && !s->jobs_stopping)
            pthread_cond_wait(&s->job_ready, &s->lock);
        req = s->job_head;
        if (req) {
            s->job_head = req->next_job;
            if (!s->job_head)
                s->job_tail = NULL;
        }
        pthread_mutex_unlock(&s->lock);
        if (!req)
            return NULL; /* stopping, and nothing left to run */
        conn = req->conn;
        (void)fn_routes[req->route].handler(s, conn, req);
        /* After this call the request may be completed and freed at any
         * time by libmicrohttpd's thread: nothing touches it again. */
        MHD_resume_connection(conn);
    }
}

facenet_status fn_jobs_start(fn_server *s, facenet_error *err)
{
    int queue = s->config.deadline_ms > 0 ? s->config.max_queue : 0;
    int n = s->n_pipelines + (queue < QUEUE_THREADS_MAX ? queue : QUEUE_THREADS_MAX) + 1;

    s->job_threads = calloc((size_t)n, sizeof *s->job_threads);
    if (!s->job_threads)
        return fn_fail(err, FACENET_ERR_NO_MEMORY, "out of memory");
    for (int i = 0; i < n; i++) {
        if (pthread_create(&s->job_threads[i], NULL, job_main, s) != 0) {
            fn_jobs_stop(s);
            return fn_fail(err, FACENET_ERR_NO_MEMORY, "could not start %d request threads", n);
        }
        s->n_job_threads = i + 1;
    }
    return FACENET_OK;
}

void fn_jobs_stop(fn_server *s)
{
    pthread_mutex_lock(&s->lock);
    s->jobs_stopping = 1;
    pthread_cond_broadcast(&s->job_ready);
    pthread_mutex_unlock(&s->lock);
    for (int i = 0; i < s->n_job_threads; i++)
        pthread_join(s->job_threads[i], NULL);
    s->n_job_threads = 0;
    free(s->job_threads);
    s->job_threads = NULL;
}

enum MHD_Result fn_jobs_submit(fn_server *s, struct MHD_Connection *conn, request *req)
{
    pthread_mutex_lock(&s->lock);
    if (s->jobs_stopping) {
        pthread_mutex_unlock(&s->lock);
        return fn_respond_error(conn, req, MHD_HTTP_SERVICE_UNAVAILABLE, "shutting_down",
                                "the server is shutting down", "1");
    }
    /* Suspended before the job is visible, so that a job finishing at once
     * never resumes a connection that is not suspended yet. */
    MHD_suspend_connection(conn);
    req->deferred = 1;
    req->conn = conn;
    req->next_job = NULL;
    if (s->job_tail)
        s->job_tail->next_job = req;
    else
        s->job_head = req;
    s->job_tail = req;
    pthread_cond_signal(&s->job_ready);
    pthread_mutex_unlock(&s->lock);
    return MHD_YES;
}

enum MHD_Result fn_jobs_deliver(struct MHD_Connection *conn, request *req)
{
    struct MHD_Response *response = req->pending;
    enum MHD_Result ret;

    req->pending = NULL;
    req->deferred = 0;
    if (!response)
        return MHD_NO; /* the handler could not build one: close */
    ret = MHD_queue_response(conn, req->pending_status, response);
    MHD_destroy_response(response);
    return ret;
}
