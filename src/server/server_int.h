/*
 * server_int.h - what the files of `facenet serve` share: the server and
 * request structs, the route table, responses, metrics and authorization.
 * Private to src/server (server.c, http.c, routes_*.c); never installed.
 *
 * Files: server.c runs the daemon (start, per-request callbacks, drain and
 * stop); http.c writes responses, checks keys and keeps /metrics;
 * routes_infer.c serves detect, verify and embed.
 */
#ifndef FACENET_SERVER_SERVER_INT_H
#define FACENET_SERVER_SERVER_INT_H

#include <jansson.h>
#include <microhttpd.h>
#include <pthread.h>

#include "server/body.h"
#include "server/server.h"

enum route_id { R_HEALTHZ, R_READYZ, R_METRICS, R_OPENAPI, R_DETECT, R_VERIFY, R_EMBED, R_OTHER };
#define N_ROUTES (R_OTHER + 1)

typedef struct route_def {
    const char *path;
    int post;        /* POST (authenticated) or GET (open) */
    unsigned scope;  /* required key scope for POST routes */
} route_def;

extern const route_def fn_routes[N_ROUTES];

/* Statuses counted in /metrics; anything else is counted as "other". */
#define N_STATUSES 12
#define N_BUCKETS 11

typedef struct pipeline {
    facenet_detector *detector;
    facenet_embedder *embedder;
    int busy;
} pipeline;

typedef struct bucket {
    double tokens;
    double last;
} bucket;

typedef struct metrics {
    unsigned long long requests[N_ROUTES][N_STATUSES + 1];
    unsigned long long latency[N_ROUTES][N_BUCKETS + 1]; /* non-cumulative */
    double latency_sum[N_ROUTES];
    unsigned long long rate_limited;
    unsigned long long overloaded;
} metrics;

struct fn_server {
    fn_server_config config;
    fn_keyring keys;
    bucket *buckets; /* parallel to keys.keys */
    pipeline *pipelines;
    int n_pipelines;
    const facenet_model_info *embed_info;
    int dim;
    float threshold;
    facenet_image_limits limits;
    struct MHD_Daemon *daemon;
    int port;
    pthread_mutex_t lock; /* buckets, pipelines' busy flags, metrics, counters */
    unsigned long long next_request_id;
    long in_flight;
    metrics stats;
};

typedef struct request {
    unsigned long long id;
    double start;
    int route;
    char key_id[FN_KEY_ID_LEN + 1];
    int status; /* set once a response is queued */
    long faces; /* -1: not applicable */
    char *body;
    size_t len, cap;
    int too_large;
} request;

double fn_now_seconds(void);

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

/* ---- http.c: metrics and authorization ---------------------------------- */

/* Count a finished request; the caller holds s->lock. */
void fn_metrics_record(fn_server *s, const request *req, double seconds);
/* The Prometheus text exposition (malloc'd), or NULL. */
char *fn_metrics_text(fn_server *s);
/* 0 when the request may proceed; otherwise a response has been queued
 * and *ret is what the access handler must return. */
int fn_authorize(fn_server *s, struct MHD_Connection *conn, request *req, enum MHD_Result *ret);

/* ---- routes_infer.c ------------------------------------------------------ */

/* Detect, embed or verify once the whole body is in req->body. */
enum MHD_Result fn_route_infer(fn_server *s, struct MHD_Connection *conn, request *req);

#endif
