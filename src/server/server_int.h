/*
 * server_int.h - what the files of `facenet serve` share: the server and
 * request structs, the route table, responses, metrics and authorization.
 * Private to src/server (server.c, http.c, routes_*.c); never installed.
 *
 * Files: server.c runs the daemon (start, per-request callbacks, drain and
 * stop); http.c writes responses, checks keys and keeps /metrics;
 * routes_infer.c serves detect, verify and embed; routes_gallery.c serves
 * identify, verify against a subject and the collections/subjects/faces
 * resources.
 */
#ifndef FACENET_SERVER_SERVER_INT_H
#define FACENET_SERVER_SERVER_INT_H

#include <jansson.h>
#include <microhttpd.h>
#include <pthread.h>
#include <sys/stat.h>

#include "server/body.h"
#include "server/server.h"
#include "server/tls.h"

enum route_id {
    R_HEALTHZ,
    R_READYZ,
    R_METRICS,
    R_OPENAPI,
    R_DETECT,
    R_VERIFY,
    R_EMBED,
    R_IDENTIFY,
    R_COLLECTIONS,
    R_SUBJECTS,
    R_COLLECTION_DELETE,
    R_SUBJECT_DELETE,
    R_FACES_LIST,
    R_FACES_ENROLL,
    R_FACE_DELETE,
    R_OTHER
};
#define N_ROUTES (R_OTHER + 1)

/* Path parameters, in the order they appear in a route's path. */
enum { P_COLLECTION, P_SUBJECT, P_FACE, N_PARAMS };
#define PARAM_MAX 256 /* FACENET_GALLERY_NAME_MAX: a name and its NUL */

typedef struct request request;
typedef enum MHD_Result (*route_handler)(fn_server *s, struct MHD_Connection *conn,
                                         request *req);

typedef struct route_def {
    const char *path;   /* "{...}" segments are parameters; also the metrics label */
    const char *method;
    unsigned scopes;    /* any of these scopes; 0: open (no key needed) */
    int body;           /* reads a request body (JSON or multipart) */
    int gallery;        /* needs --gallery */
    route_handler handler;
} route_def;

extern const route_def fn_routes[N_ROUTES];

/* Statuses counted in /metrics; anything else is counted as "other". */
#define N_STATUSES 15
#define N_BUCKETS 11

typedef struct pipeline {
    facenet_detector *detector;
    facenet_embedder *embedder;
    int busy;
} pipeline;

typedef struct bucket {
    double tokens;
    double last;
    long in_flight; /* requests of this key being served */
} bucket;

typedef struct metrics {
    unsigned long long requests[N_ROUTES][N_STATUSES + 1];
    unsigned long long latency[N_ROUTES][N_BUCKETS + 1]; /* non-cumulative */
    double latency_sum[N_ROUTES];
    unsigned long long rate_limited;
    unsigned long long overloaded;
    unsigned long long inflight_limited;
    unsigned long long queue_timeouts;
    unsigned long long key_reloads;
    unsigned long long body_memory_refused;
    unsigned long long abandoned; /* clients gone before their inference */
} metrics;

struct fn_server {
    fn_server_config config;
    fn_keyring keys;  /* under lock: a reload swaps it */
    bucket *buckets;  /* parallel to keys.keys, under lock */
    int open_access;  /* started without keys (--dev on loopback) */
    pthread_mutex_t reload_lock; /* one keys reload at a time */
    struct stat keys_stat;       /* the keys file as last loaded */
    int keys_exists;
    double keys_checked;         /* under lock: last look at the file */
    pipeline *pipelines;
    int n_pipelines;
    const facenet_model_info *embed_info;
    int dim;
    float threshold;
    facenet_image_limits limits;
    struct MHD_Daemon *daemon;
    fn_tls_pem tls; /* kept for the daemon's lifetime; empty: plain HTTP */
    int port;
    pthread_mutex_t lock; /* buckets, pipelines' busy flags, metrics, counters */
    unsigned long long next_request_id;
    long in_flight;
    long queued;                   /* waiting for a pipeline */
    request *wait_head, *wait_tail; /* under lock: those requests, oldest first */
    size_t body_bytes;             /* under lock: reserved by request bodies */
    pthread_cond_t pipeline_freed; /* with lock; CLOCK_MONOTONIC */
    metrics stats;
    facenet_gallery *gallery; /* NULL without --gallery */
    char model_id[FACENET_GALLERY_MODEL_ID_MAX];
    char preprocess[64];
    pthread_t refresher;
    int refresher_running;
    int stopping;              /* under lock; wakes the refresher */
    pthread_cond_t stop_cond;  /* with lock */
    /* jobs.c: the threads that run the model routes, and their queue. */
    pthread_t *job_threads;
    int n_job_threads;
    request *job_head, *job_tail; /* under lock */
    int jobs_stopping;            /* under lock: no new jobs are taken */
    pthread_cond_t job_ready;     /* with lock */
};

struct request {
    unsigned long long id;
    double start;
    double deadline; /* monotonic seconds; 0: none */
    int route;
    char key_id[FN_KEY_ID_LEN + 1];
    int status; /* set once a response is queued */
    long faces; /* -1: not applicable */
    char *body;
    size_t len, cap;
    size_t reserved;   /* bytes of s->body_bytes this request holds */
    size_t expected;   /* its Content-Length; 0: not given */
    int too_large;
    int over_budget;   /* the server's body memory was full: 503 */
    int holds_slot; /* counted in its key's in_flight */
    int committed;  /* a write is durable: never answer it with a 504 */
    char params[N_PARAMS][PARAM_MAX]; /* decoded path parameters */
    char content_type[256];           /* the header, for the multipart boundary */
    /* A model route runs on a job thread while its connection is
     * suspended; its response waits here until the connection is resumed
     * (jobs.c). */
    int deferred;
    struct MHD_Response *pending;
    unsigned pending_status;
    struct MHD_Connection *conn;
    request *next_job; /* under the server's lock */
    request *wait_prev, *wait_next; /* in the pipeline queue, under the lock */
};

double fn_now_seconds(void);
/* Free req->body and give its bytes back to the server's body budget
 * (config.max_body_memory). Idempotent. */
void fn_body_release(fn_server *s, request *req);

/* ---- http.c: responses -------------------------------------------------- */

/* Queue `text` (malloc'd, taken) with the security headers every response
 * carries; sets req->status. */
enum MHD_Result fn_respond_text(struct MHD_Connection *conn, request *req, int status,
                                const char *content_type, char *text, const char *retry_after);
/* Takes the reference to `body`. */
enum MHD_Result fn_respond_json(struct MHD_Connection *conn, request *req, int status,
                                json_t *body, const char *retry_after);
/* `code` and `message` must be static text, never request data. */
enum MHD_Result fn_respond_error(struct MHD_Connection *conn, request *req, int status,
                                 const char *code, const char *message, const char *retry_after);

/* ---- jobs.c: the model routes' threads ---------------------------------- */

/* Routes that read a body run a model (detect, verify, embed, identify,
 * enroll) and can wait for a pipeline. They do not run on libmicrohttpd's
 * threads, where they would hold up every other connection that thread
 * serves (health checks, metrics, the 503 of a full queue): the access
 * handler suspends the connection and hands the request to a job thread,
 * which runs the handler and resumes the connection; the response is then
 * queued from libmicrohttpd's thread (fn_jobs_deliver). There are enough
 * job threads for every pipeline, a full queue and one more, so a request
 * is admitted or refused as soon as its body is read. */
facenet_status fn_jobs_start(fn_server *s, facenet_error *err);
/* Take no new jobs, finish the queued ones, join the threads. Idempotent. */
void fn_jobs_stop(fn_server *s);
/* Suspend the connection and queue the request: MHD_YES. When the server
 * is stopping, a 503 is queued at once instead. */
enum MHD_Result fn_jobs_submit(fn_server *s, struct MHD_Connection *conn, request *req);
/* Called on the connection's first callback after the job resumed it:
 * queue the job's response (none: close the connection). */
enum MHD_Result fn_jobs_deliver(struct MHD_Connection *conn, request *req);

/* ---- http.c: metrics and authorization ---------------------------------- */

/* Count a finished request; the caller holds s->lock. */
void fn_metrics_record(fn_server *s, const request *req, double seconds);
/* The Prometheus text exposition (malloc'd), or NULL. */
char *fn_metrics_text(fn_server *s);
/* 0 when the request may proceed; otherwise a response has been queued
 * and *ret is what the access handler must return. */
int fn_authorize(fn_server *s, struct MHD_Connection *conn, request *req, enum MHD_Result *ret);
/* Start watching config.keys_path (its state now is the loaded one). */
void fn_keys_watch_start(fn_server *s);
/* Give back the key's concurrency slot taken by fn_authorize. */
void fn_release_slot(fn_server *s, request *req);

/* ---- routes_infer.c: pipelines and handlers ----------------------------- */

/* An HTTP status and stable code for a failed step. */
typedef struct failure {
    int status;
    const char *code;
    const char *message;
} failure;

/* A free pipeline, or NULL (a response has been queued) when none is:
 * without a deadline at once (503 overloaded); with one, after waiting in
 * a queue of at most max_queue requests until the deadline (503
 * queue_timeout), or at once when the queue is full (503 overloaded). */
pipeline *fn_pipeline_acquire(fn_server *s, struct MHD_Connection *conn, request *req,
                              enum MHD_Result *ret);
void fn_pipeline_release(fn_server *s, pipeline *p);
/* Decode the image, detect, and embed the face facenet's aligner picks
 * (into `embedding`, s->dim floats; *face gets its box when not NULL). */
int fn_embed_picked(fn_server *s, pipeline *p, const fn_blob *blob, float *embedding,
                    facenet_face *face, long *faces_seen, failure *fail);
json_t *fn_face_json(const facenet_face *f);
/* Parse req->body (JSON or multipart) by `spec`; on failure queues a 400
 * (or 413/503) with `usage` as its message and returns -1. */
int fn_read_body(fn_server *s, struct MHD_Connection *conn, request *req,
                 const fn_body_spec *spec, const char *usage, fn_body *out,
                 enum MHD_Result *ret);

enum MHD_Result fn_route_detect(fn_server *s, struct MHD_Connection *conn, request *req);
enum MHD_Result fn_route_embed(fn_server *s, struct MHD_Connection *conn, request *req);
enum MHD_Result fn_route_verify(fn_server *s, struct MHD_Connection *conn, request *req);

/* ---- routes_gallery.c --------------------------------------------------- */

enum MHD_Result fn_route_identify(fn_server *s, struct MHD_Connection *conn, request *req);
/* /v1/verify with an image and a subject instead of two images. */
enum MHD_Result fn_verify_subject(fn_server *s, struct MHD_Connection *conn, request *req,
                                  const fn_blob *image, const char *collection,
                                  const char *subject);
enum MHD_Result fn_route_collections(fn_server *s, struct MHD_Connection *conn, request *req);
enum MHD_Result fn_route_subjects(fn_server *s, struct MHD_Connection *conn, request *req);
enum MHD_Result fn_route_collection_delete(fn_server *s, struct MHD_Connection *conn,
                                           request *req);
enum MHD_Result fn_route_subject_delete(fn_server *s, struct MHD_Connection *conn, request *req);
enum MHD_Result fn_route_faces_list(fn_server *s, struct MHD_Connection *conn, request *req);
enum MHD_Result fn_route_faces_enroll(fn_server *s, struct MHD_Connection *conn, request *req);
enum MHD_Result fn_route_face_delete(fn_server *s, struct MHD_Connection *conn, request *req);

#endif
