/*
 * server.c - `facenet serve`: routing, authentication, rate limiting,
 * inference pool, metrics and access log on libmicrohttpd.
 *
 * Order of checks on a POST, all before a byte of body is read: route and
 * method, API key (401), scope (403), token bucket (429), Content-Type
 * (415), Content-Length against the body cap (413). The body is then
 * buffered up to the cap (413 past it, checked while streaming), parsed,
 * and handed to a free pipeline (503 at once when none is free).
 *
 * Error bodies are {"error": {"code": ..., "message": ...}} with static
 * strings only: nothing from the request is ever echoed back or logged.
 */
#include "server/server.h"

#include <arpa/inet.h>
#include <jansson.h>
#include <math.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <pthread.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "common/error.h"
#include "server/body.h"
#include "server/openapi.h"
#include "server/tls.h"

enum route_id { R_HEALTHZ, R_READYZ, R_METRICS, R_OPENAPI, R_DETECT, R_VERIFY, R_EMBED, R_OTHER };
#define N_ROUTES (R_OTHER + 1)

typedef struct route_def {
    const char *path;
    int post;        /* POST (authenticated) or GET (open) */
    unsigned scope;  /* required key scope for POST routes */
} route_def;

static const route_def routes[N_ROUTES] = {
    [R_HEALTHZ] = {"/healthz", 0, 0},
    [R_READYZ] = {"/readyz", 0, 0},
    [R_METRICS] = {"/metrics", 0, 0},
    [R_OPENAPI] = {"/openapi.json", 0, 0},
    [R_DETECT] = {"/v1/detect", 1, FN_SCOPE_DETECT},
    [R_VERIFY] = {"/v1/verify", 1, FN_SCOPE_VERIFY},
    [R_EMBED] = {"/v1/embed", 1, FN_SCOPE_EMBED},
    [R_OTHER] = {"other", 0, 0},
};

/* Statuses counted in /metrics; anything else is counted as "other". */
static const int tracked_statuses[] = {200, 400, 401, 403, 404, 405, 413,
                                       415, 422, 429, 500, 503};
#define N_STATUSES (sizeof tracked_statuses / sizeof tracked_statuses[0])
static const double latency_buckets[] = {0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
                                         0.5,   1,    2.5,   5,    10};
#define N_BUCKETS (sizeof latency_buckets / sizeof latency_buckets[0])

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
    fn_tls_pem tls; /* kept for the daemon's lifetime; empty: plain HTTP */
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

static double now_seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

void fn_server_config_default(fn_server_config *config)
{
    memset(config, 0, sizeof *config);
    config->bind = "127.0.0.1";
    config->port = 8080;
    config->threads = 4;
    config->pipelines = 2;
    config->max_body = 16u << 20;
    config->max_pixels = 16000000ull;
    config->max_faces = 64;
    config->timeout_s = 30;
    config->drain_s = 30;
}

/* ---- responses --------------------------------------------------------- */

/* Queue `text` (malloc'd, taken) with the security headers every response
 * carries. */
static enum MHD_Result respond_text(struct MHD_Connection *conn, request *req, int status,
                                    const char *content_type, char *text,
                                    const char *retry_after)
{
    char id[32];
    struct MHD_Response *response =
        MHD_create_response_from_buffer(strlen(text), text, MHD_RESPMEM_MUST_FREE);
    enum MHD_Result ret;

    if (!response) {
        free(text);
        return MHD_NO;
    }
    snprintf(id, sizeof id, "%llu", req->id);
    MHD_add_response_header(response, "Content-Type", content_type);
    MHD_add_response_header(response, "X-Request-Id", id);
    MHD_add_response_header(response, "Cache-Control", "no-store");
    MHD_add_response_header(response, "X-Content-Type-Options", "nosniff");
    if (retry_after)
        MHD_add_response_header(response, "Retry-After", retry_after);
    if (status == MHD_HTTP_UNAUTHORIZED)
        MHD_add_response_header(response, "WWW-Authenticate", "Bearer");
    ret = MHD_queue_response(conn, (unsigned)status, response);
    MHD_destroy_response(response);
    req->status = status;
    return ret;
}

static enum MHD_Result respond_json(struct MHD_Connection *conn, request *req, int status,
                                    json_t *body, const char *retry_after)
{
    char *text = body ? json_dumps(body, JSON_COMPACT) : NULL;

    json_decref(body);
    if (!text)
        return MHD_NO;
    return respond_text(conn, req, status, "application/json", text, retry_after);
}

/* `code` and `message` must be static text, never request data. */
static enum MHD_Result respond_error(struct MHD_Connection *conn, request *req, int status,
                                     const char *code, const char *message,
                                     const char *retry_after)
{
    return respond_json(conn, req, status,
                        json_pack("{s:{s:s, s:s}}", "error", "code", code, "message", message),
                        retry_after);
}

/* ---- metrics ------------------------------------------------------------ */

static void record(fn_server *s, const request *req, double seconds)
{
    size_t si = N_STATUSES, bi = N_BUCKETS;

    for (size_t i = 0; i < N_STATUSES; i++)
        if (tracked_statuses[i] == req->status)
            si = i;
    for (size_t i = 0; i < N_BUCKETS; i++)
        if (seconds <= latency_buckets[i]) {
            bi = i;
            break;
        }
    s->stats.requests[req->route][si]++;
    s->stats.latency[req->route][bi]++;
    s->stats.latency_sum[req->route] += seconds;
}

static char *metrics_text(fn_server *s)
{
    char *text = NULL;
    size_t size = 0;
    FILE *f = open_memstream(&text, &size);
    metrics m;
    long in_flight;
    int busy = 0;

    if (!f)
        return NULL;
    pthread_mutex_lock(&s->lock);
    m = s->stats;
    in_flight = s->in_flight;
    for (int i = 0; i < s->n_pipelines; i++)
        busy += s->pipelines[i].busy;
    pthread_mutex_unlock(&s->lock);

    fprintf(f, "# HELP facenet_http_requests_total HTTP requests by route and status.\n"
               "# TYPE facenet_http_requests_total counter\n");
    for (int r = 0; r < N_ROUTES; r++)
        for (size_t i = 0; i <= N_STATUSES; i++) {
            if (m.requests[r][i] == 0)
                continue;
            if (i < N_STATUSES)
                fprintf(f, "facenet_http_requests_total{route=\"%s\",status=\"%d\"} %llu\n",
                        routes[r].path, tracked_statuses[i], m.requests[r][i]);
            else
                fprintf(f, "facenet_http_requests_total{route=\"%s\",status=\"other\"} %llu\n",
                        routes[r].path, m.requests[r][i]);
        }
    fprintf(f, "# HELP facenet_http_request_duration_seconds Request latency by route.\n"
               "# TYPE facenet_http_request_duration_seconds histogram\n");
    for (int r = 0; r < N_ROUTES; r++) {
        unsigned long long cumulative = 0;
        for (size_t b = 0; b < N_BUCKETS; b++) {
            cumulative += m.latency[r][b];
            fprintf(f, "facenet_http_request_duration_seconds_bucket{route=\"%s\",le=\"%g\"} %llu\n",
                    routes[r].path, latency_buckets[b], cumulative);
        }
        cumulative += m.latency[r][N_BUCKETS];
        fprintf(f, "facenet_http_request_duration_seconds_bucket{route=\"%s\",le=\"+Inf\"} %llu\n",
                routes[r].path, cumulative);
        fprintf(f, "facenet_http_request_duration_seconds_sum{route=\"%s\"} %.6f\n",
                routes[r].path, m.latency_sum[r]);
        fprintf(f, "facenet_http_request_duration_seconds_count{route=\"%s\"} %llu\n",
                routes[r].path, cumulative);
    }
    fprintf(f, "# HELP facenet_rate_limited_total Requests refused by a key's token bucket.\n"
               "# TYPE facenet_rate_limited_total counter\n"
               "facenet_rate_limited_total %llu\n"
               "# HELP facenet_overloaded_total Requests refused because every pipeline was busy.\n"
               "# TYPE facenet_overloaded_total counter\n"
               "facenet_overloaded_total %llu\n"
               "# HELP facenet_requests_in_flight Requests being received or processed.\n"
               "# TYPE facenet_requests_in_flight gauge\n"
               "facenet_requests_in_flight %ld\n"
               "# HELP facenet_pipelines_busy Pipelines running an inference.\n"
               "# TYPE facenet_pipelines_busy gauge\n"
               "facenet_pipelines_busy %d\n"
               "# HELP facenet_pipelines Pipelines (the cap on concurrent inferences).\n"
               "# TYPE facenet_pipelines gauge\n"
               "facenet_pipelines %d\n",
            m.rate_limited, m.overloaded, in_flight, busy, s->n_pipelines);
    if (fclose(f) != 0) {
        free(text);
        return NULL;
    }
    return text;
}

/* ---- authentication and rate limiting ----------------------------------- */

/* 0 when the request may proceed; otherwise a response has been queued. */
static int authorize(fn_server *s, struct MHD_Connection *conn, request *req,
                     enum MHD_Result *ret)
{
    const char *auth = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Authorization");
    const fn_api_key *key;
    size_t index;
    double retry = 0;
    int allowed;

    if (s->keys.n == 0) { /* --dev on loopback, checked at start */
        snprintf(req->key_id, sizeof req->key_id, "dev");
        return 0;
    }
    if (!auth || strncasecmp(auth, "Bearer ", 7) != 0 ||
        !(key = fn_keyring_check(&s->keys, auth + 7, strlen(auth + 7)))) {
        *ret = respond_error(conn, req, MHD_HTTP_UNAUTHORIZED, "unauthorized",
                             "a valid API key is required (Authorization: Bearer)", NULL);
        return -1;
    }
    memcpy(req->key_id, key->id, sizeof req->key_id);
    if (!(key->scopes & routes[req->route].scope)) {
        *ret = respond_error(conn, req, MHD_HTTP_FORBIDDEN, "forbidden_scope",
                             "this API key lacks the scope this endpoint needs", NULL);
        return -1;
    }
    index = (size_t)(key - s->keys.keys);
    pthread_mutex_lock(&s->lock);
    {
        bucket *b = &s->buckets[index];
        double now = now_seconds();
        b->tokens = fmin(key->burst, b->tokens + (now - b->last) * key->rate);
        b->last = now;
        allowed = b->tokens >= 1;
        if (allowed)
            b->tokens -= 1;
        else {
            retry = (1 - b->tokens) / key->rate;
            s->stats.rate_limited++;
        }
    }
    pthread_mutex_unlock(&s->lock);
    if (!allowed) {
        char after[32];
        snprintf(after, sizeof after, "%.0f", ceil(retry));
        *ret = respond_error(conn, req, MHD_HTTP_TOO_MANY_REQUESTS, "rate_limited",
                             "rate limit exceeded for this API key", after);
        return -1;
    }
    return 0;
}

/* ---- inference ----------------------------------------------------------- */

static pipeline *pipeline_acquire(fn_server *s)
{
    pipeline *p = NULL;

    pthread_mutex_lock(&s->lock);
    for (int i = 0; i < s->n_pipelines && !p; i++)
        if (!s->pipelines[i].busy) {
            p = &s->pipelines[i];
            p->busy = 1;
        }
    if (!p)
        s->stats.overloaded++;
    pthread_mutex_unlock(&s->lock);
    return p;
}

static void pipeline_release(fn_server *s, pipeline *p)
{
    pthread_mutex_lock(&s->lock);
    p->busy = 0;
    pthread_mutex_unlock(&s->lock);
}

/* An HTTP status and stable code for a failed decode/detect/embed. */
typedef struct failure {
    int status;
    const char *code;
    const char *message;
} failure;

static failure failure_of(facenet_status st)
{
    switch (st) {
    case FACENET_ERR_LIMIT:
        return (failure){413, "image_too_large", "the image exceeds the size or pixel limit"};
    case FACENET_ERR_UNSUPPORTED:
        return (failure){415, "unsupported_image_format",
                         "the image is not JPEG, PNG, WebP or PNM"};
    case FACENET_ERR_FORMAT:
        return (failure){422, "image_corrupt", "the image is corrupt or truncated"};
    case FACENET_ERR_NO_MEMORY:
        return (failure){503, "out_of_memory", "the server is out of memory"};
    default:
        return (failure){500, "internal", "internal error"};
    }
}

static json_t *face_json(const facenet_face *f)
{
    json_t *landmarks = json_array();

    for (int i = 0; i < 5; i++)
        json_array_append_new(landmarks, json_pack("[f, f]", (double)f->landmarks[i][0],
                                                   (double)f->landmarks[i][1]));
    return json_pack("{s:[f, f, f, f], s:f, s:o}", "box", (double)f->box[0], (double)f->box[1],
                     (double)f->box[2], (double)f->box[3], "score", (double)f->score,
                     "landmarks", landmarks);
}

static json_t *floats_json(const float *v, int n)
{
    json_t *a = json_array();

    for (int i = 0; i < n; i++)
        json_array_append_new(a, json_real((double)v[i]));
    return a;
}

/* Decode and detect. On failure fills *fail and returns -1. */
static int decode_detect(fn_server *s, pipeline *p, const fn_blob *blob, facenet_image **img,
                         facenet_face **faces, size_t *n, failure *fail)
{
    facenet_error err;
    facenet_status st = facenet_image_decode(blob->data, blob->len, &s->limits, img, &err);

    if (st == FACENET_OK)
        st = facenet_detect(p->detector, *img, NULL, faces, n, &err);
    if (st != FACENET_OK) {
        *fail = failure_of(st);
        return -1;
    }
    return 0;
}

static enum MHD_Result run_detect(fn_server *s, struct MHD_Connection *conn, request *req,
                                  pipeline *p, const fn_blob *blob, int with_embeddings)
{
    facenet_image *img = NULL;
    facenet_face *faces = NULL;
    size_t n = 0, shown;
    failure fail;
    json_t *list, *body;
    float *embeddings = NULL;

    if (decode_detect(s, p, blob, &img, &faces, &n, &fail) != 0)
        return respond_error(conn, req, fail.status, fail.code, fail.message, NULL);
    shown = n < (size_t)s->config.max_faces ? n : (size_t)s->config.max_faces;
    if (with_embeddings && shown > 0) {
        facenet_error err;
        facenet_status st;
        embeddings = malloc(shown * (size_t)s->dim * sizeof *embeddings);
        st = embeddings ? facenet_embed(p->embedder, img, faces, shown, 0, embeddings, &err)
                        : FACENET_ERR_NO_MEMORY;
        if (st != FACENET_OK) {
            fail = failure_of(st);
            free(embeddings);
            free(faces);
            facenet_image_free(img);
            return respond_error(conn, req, fail.status, fail.code, fail.message, NULL);
        }
    }
    list = json_array();
    for (size_t i = 0; i < shown; i++) {
        json_t *face = face_json(&faces[i]);
        if (embeddings)
            json_object_set_new(face, "embedding",
                                floats_json(embeddings + i * (size_t)s->dim, s->dim));
        json_array_append_new(list, face);
    }
    body = json_pack("{s:i, s:i, s:I, s:b, s:o}", "width", facenet_image_width(img), "height",
                     facenet_image_height(img), "count", (json_int_t)n, "truncated", shown < n,
                     "faces", list);
    if (with_embeddings && body) {
        json_object_set_new(body, "model", json_string(s->embed_info->name));
        json_object_set_new(body, "dim", json_integer(s->dim));
    }
    req->faces = (long)n;
    free(embeddings);
    free(faces);
    facenet_image_free(img);
    return respond_json(conn, req, MHD_HTTP_OK, body, NULL);
}

/* The embedding of the face align_dataset_mtcnn would pick. */
static int embed_picked(fn_server *s, pipeline *p, const fn_blob *blob, float *embedding,
                        long *faces_seen, failure *fail)
{
    facenet_image *img = NULL;
    facenet_face *faces = NULL;
    size_t n = 0;
    int rc = 0;

    if (decode_detect(s, p, blob, &img, &faces, &n, fail) != 0)
        return -1;
    *faces_seen += (long)n;
    if (n == 0) {
        *fail = (failure){422, "no_face", "no face was found in one of the images"};
        rc = -1;
    } else {
        facenet_error err;
        int pick = facenet_pick_face(faces, n, facenet_image_width(img), facenet_image_height(img));
        facenet_status st = facenet_embed(p->embedder, img, &faces[pick], 1, 0, embedding, &err);
        if (st != FACENET_OK) {
            *fail = failure_of(st);
            rc = -1;
        }
    }
    free(faces);
    facenet_image_free(img);
    return rc;
}

static enum MHD_Result run_verify(fn_server *s, struct MHD_Connection *conn, request *req,
                                  pipeline *p, const fn_blob *blobs)
{
    float *a = malloc(2 * (size_t)s->dim * sizeof *a), *b;
    failure fail;
    float similarity;
    long seen = 0;

    if (!a)
        return respond_error(conn, req, 503, "out_of_memory", "the server is out of memory", NULL);
    b = a + s->dim;
    if (embed_picked(s, p, &blobs[0], a, &seen, &fail) != 0 ||
        embed_picked(s, p, &blobs[1], b, &seen, &fail) != 0) {
        free(a);
        req->faces = seen;
        return respond_error(conn, req, fail.status, fail.code, fail.message, NULL);
    }
    similarity = facenet_similarity(a, b, s->dim);
    free(a);
    req->faces = seen;
    return respond_json(conn, req, MHD_HTTP_OK,
                        json_pack("{s:f, s:f, s:f, s:b, s:s}", "similarity", (double)similarity,
                                  "distance", 2.0 - 2.0 * (double)similarity, "threshold",
                                  (double)s->threshold, "same", similarity >= s->threshold,
                                  "model", s->embed_info->name),
                        NULL);
}

static enum MHD_Result finish_post(fn_server *s, struct MHD_Connection *conn, request *req)
{
    static const char *const one[] = {"image"};
    static const char *const two[] = {"image1", "image2"};
    const char *const *names = req->route == R_VERIFY ? two : one;
    size_t n_names = req->route == R_VERIFY ? 2 : 1;
    fn_blob blobs[2];
    const char *code;
    pipeline *p;
    enum MHD_Result ret;

    if (req->too_large)
        return respond_error(conn, req, MHD_HTTP_CONTENT_TOO_LARGE, "body_too_large",
                             "the request body exceeds the size limit", NULL);
    code = fn_body_images(req->body, req->len, names, n_names, blobs);
    free(req->body);
    req->body = NULL;
    if (code && strcmp(code, "out_of_memory") == 0)
        return respond_error(conn, req, 503, code, "the server is out of memory", NULL);
    if (code)
        return respond_error(conn, req, MHD_HTTP_BAD_REQUEST, code,
                             req->route == R_VERIFY
                                 ? "expected a JSON object with base64 strings image1 and image2"
                                 : "expected a JSON object with a base64 string image",
                             NULL);
    p = pipeline_acquire(s);
    if (!p) {
        fn_blobs_free(blobs, n_names);
        return respond_error(conn, req, MHD_HTTP_SERVICE_UNAVAILABLE, "overloaded",
                             "every inference slot is busy; retry shortly", "1");
    }
    if (req->route == R_VERIFY)
        ret = run_verify(s, conn, req, p, blobs);
    else
        ret = run_detect(s, conn, req, p, &blobs[0], req->route == R_EMBED);
    pipeline_release(s, p);
    fn_blobs_free(blobs, n_names);
    return ret;
}

/* ---- routing ------------------------------------------------------------- */

static enum MHD_Result serve_get(fn_server *s, struct MHD_Connection *conn, request *req);

static int find_route(const char *url)
{
    for (int i = 0; i < R_OTHER; i++)
        if (strcmp(url, routes[i].path) == 0)
            return i;
    return R_OTHER;
}

/* First call for a request: headers are in, no body read yet. */
static enum MHD_Result begin_request(fn_server *s, struct MHD_Connection *conn, request *req,
                                     const char *method)
{
    enum MHD_Result ret = MHD_NO;
    const char *type, *length;

    if (req->route == R_OTHER)
        return respond_error(conn, req, MHD_HTTP_NOT_FOUND, "not_found", "no such endpoint",
                             NULL);
    if (strcmp(method, routes[req->route].post ? "POST" : "GET") != 0)
        return respond_error(conn, req, MHD_HTTP_METHOD_NOT_ALLOWED, "method_not_allowed",
                             "method not allowed on this endpoint", NULL);
    if (!routes[req->route].post)
        return serve_get(s, conn, req);
    if (authorize(s, conn, req, &ret) != 0)
        return ret;
    type = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Content-Type");
    if (!type || strncasecmp(type, "application/json", 16) != 0 ||
        (type[16] != '\0' && type[16] != ';'))
        return respond_error(conn, req, MHD_HTTP_UNSUPPORTED_MEDIA_TYPE,
                             "unsupported_media_type", "send Content-Type: application/json",
                             NULL);
    length = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Content-Length");
    if (length) {
        char *end;
        unsigned long long n = strtoull(length, &end, 10);
        if (*end != '\0' || n > s->config.max_body)
            return respond_error(conn, req, MHD_HTTP_CONTENT_TOO_LARGE, "body_too_large",
                                 "the request body exceeds the size limit", NULL);
    }
    return MHD_YES;
}

static void append_body(fn_server *s, request *req, const char *data, size_t size)
{
    if (req->too_large)
        return;
    if (size > s->config.max_body - req->len) {
        req->too_large = 1;
        free(req->body);
        req->body = NULL;
        req->len = req->cap = 0;
        return;
    }
    if (req->len + size > req->cap) {
        size_t cap = req->cap ? req->cap : 64 * 1024;
        char *grown;
        while (cap < req->len + size)
            cap = cap > s->config.max_body / 2 ? s->config.max_body : cap * 2;
        grown = realloc(req->body, cap);
        if (!grown) { /* treated like an oversized body: refused, not crashed */
            req->too_large = 1;
            free(req->body);
            req->body = NULL;
            req->len = req->cap = 0;
            return;
        }
        req->body = grown;
        req->cap = cap;
    }
    memcpy(req->body + req->len, data, size);
    req->len += size;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url,
                                  const char *method, const char *version,
                                  const char *upload_data, size_t *upload_data_size,
                                  void **con_cls)
{
    fn_server *s = cls;
    request *req = *con_cls;

    (void)version;
    if (!req) {
        req = calloc(1, sizeof *req);
        if (!req)
            return MHD_NO;
        req->start = now_seconds();
        req->route = find_route(url);
        req->faces = -1;
        snprintf(req->key_id, sizeof req->key_id, "-");
        pthread_mutex_lock(&s->lock);
        req->id = ++s->next_request_id;
        s->in_flight++;
        pthread_mutex_unlock(&s->lock);
        *con_cls = req;
        return begin_request(s, conn, req, method);
    }
    if (*upload_data_size > 0) {
        if (!req->status)
            append_body(s, req, upload_data, *upload_data_size);
        *upload_data_size = 0;
        return MHD_YES;
    }
    if (req->status)
        return MHD_YES;
    return finish_post(s, conn, req);
}

static void on_completed(void *cls, struct MHD_Connection *conn, void **con_cls,
                         enum MHD_RequestTerminationCode toe)
{
    fn_server *s = cls;
    request *req = *con_cls;
    double seconds;

    (void)conn;
    (void)toe;
    if (!req)
        return;
    seconds = now_seconds() - req->start;
    pthread_mutex_lock(&s->lock);
    record(s, req, seconds);
    s->in_flight--;
    pthread_mutex_unlock(&s->lock);
    /* One line per request; ids, numbers and static names only: never a
     * key, an image, an embedding or anything else the client sent. */
    fprintf(stderr,
            "{\"ts\":%lld,\"request_id\":%llu,\"key_id\":\"%s\",\"route\":\"%s\","
            "\"status\":%d,\"latency_ms\":%.1f,\"faces\":%ld}\n",
            (long long)time(NULL), req->id, req->key_id, routes[req->route].path, req->status,
            seconds * 1000.0, req->faces);
    free(req->body);
    free(req);
    *con_cls = NULL;
}

/* ---- GET endpoints ------------------------------------------------------- */

static enum MHD_Result serve_get(fn_server *s, struct MHD_Connection *conn, request *req)
{
    char *text;

    switch (req->route) {
    case R_HEALTHZ:
        return respond_json(conn, req, MHD_HTTP_OK, json_pack("{s:s}", "status", "ok"), NULL);
    case R_READYZ:
        return respond_json(conn, req, MHD_HTTP_OK,
                            json_pack("{s:s, s:s, s:s, s:i, s:f}", "status", "ready",
                                      "detector", "mtcnn", "embedder", s->embed_info->name,
                                      "pipelines", s->n_pipelines, "threshold",
                                      (double)s->threshold),
                            NULL);
    case R_METRICS:
        text = metrics_text(s);
        if (!text)
            return MHD_NO;
        return respond_text(conn, req, MHD_HTTP_OK, "text/plain; version=0.0.4", text, NULL);
    case R_OPENAPI:
        text = strdup(fn_openapi_json());
        if (!text)
            return MHD_NO;
        return respond_text(conn, req, MHD_HTTP_OK, "application/json", text, NULL);
    default:
        return respond_error(conn, req, MHD_HTTP_NOT_FOUND, "not_found", "no such endpoint",
                             NULL);
    }
}

/* ---- lifecycle ------------------------------------------------------------ */

static void free_server(fn_server *s)
{
    for (int i = 0; i < s->n_pipelines; i++) {
        facenet_detector_free(s->pipelines[i].detector);
        facenet_embedder_free(s->pipelines[i].embedder);
    }
    free(s->pipelines);
    free(s->buckets);
    fn_keyring_free(&s->keys);
    fn_tls_pem_free(&s->tls);
    pthread_mutex_destroy(&s->lock);
    free(s);
}

static facenet_status load_pipelines(fn_server *s, facenet_error *err)
{
    const char *dir = s->config.model_dir;
    facenet_status st;

    s->pipelines = calloc((size_t)s->config.pipelines, sizeof *s->pipelines);
    if (!s->pipelines)
        return fn_fail(err, FACENET_ERR_NO_MEMORY, "out of memory");
    for (int i = 0; i < s->config.pipelines; i++) {
        pipeline *p = &s->pipelines[i];
        st = facenet_detector_create(dir, &p->detector, err);
        if (st == FACENET_OK)
            st = facenet_embedder_create(dir, s->config.embed_model, &p->embedder, err);
        s->n_pipelines++; /* freed by free_server even when half made */
        if (st != FACENET_OK)
            return st;
    }
    s->embed_info = facenet_embedder_info(s->pipelines[0].embedder);
    s->dim = facenet_embedder_dim(s->pipelines[0].embedder);
    s->threshold = s->embed_info->threshold;
    if (!(s->threshold > 0))
        return fn_fail(err, FACENET_ERR_UNSUPPORTED,
                       "model %s has no calibrated threshold, so it cannot serve /v1/verify",
                       s->embed_info->name);
    return FACENET_OK;
}

static facenet_status check_config(const fn_server_config *c, const fn_keyring *keys,
                                   struct sockaddr_in *addr, facenet_error *err)
{
    size_t live = 0;

    for (size_t i = 0; i < keys->n; i++)
        live += fn_key_is_live(&keys->keys[i], (long long)time(NULL));
    memset(addr, 0, sizeof *addr);
    addr->sin_family = AF_INET;
    if (!c->bind || inet_pton(AF_INET, c->bind, &addr->sin_addr) != 1)
        return fn_fail(err, FACENET_ERR_INVALID_ARGUMENT, "--bind: not an IPv4 address");
    if (c->port < 0 || c->port > 65535)
        return fn_fail(err, FACENET_ERR_INVALID_ARGUMENT, "--port: out of range");
    addr->sin_port = htons((uint16_t)c->port);
    if (c->threads < 1 || c->threads > 256 || c->pipelines < 1 || c->pipelines > 64 ||
        c->max_body < 1024 || c->max_faces < 1 || c->timeout_s < 1 || c->drain_s < 0 ||
        c->max_pixels < 1)
        return fn_fail(err, FACENET_ERR_INVALID_ARGUMENT, "a server limit is out of range");
    if (!c->tls_cert != !c->tls_key)
        return fn_fail(err, FACENET_ERR_INVALID_ARGUMENT,
                       "--tls-cert and --tls-key go together: give both or neither");
    if (c->tls_cert && !MHD_is_feature_supported(MHD_FEATURE_TLS))
        return fn_fail(err, FACENET_ERR_UNSUPPORTED, "this libmicrohttpd was built without TLS");
    if (live == 0 && !(c->dev && strcmp(c->bind, "127.0.0.1") == 0))
        return fn_fail(err, FACENET_ERR_INVALID_ARGUMENT,
                       "no API keys: create one with 'facenet keys create', or run with "
                       "--dev bound to 127.0.0.1 for local development");
    return FACENET_OK;
}

facenet_status fn_server_start(const fn_server_config *config, fn_keyring *keys,
                               fn_server **out, facenet_error *err)
{
    struct sockaddr_in addr;
    const union MHD_DaemonInfo *info;
    facenet_status st = check_config(config, keys, &addr, err);
    fn_server *s;

    *out = NULL;
    if (st != FACENET_OK)
        return st;
    if (sodium_init() < 0)
        return fn_fail(err, FACENET_ERR_INTERNAL, "libsodium failed to initialise");
    s = calloc(1, sizeof *s);
    if (!s)
        return fn_fail(err, FACENET_ERR_NO_MEMORY, "out of memory");
    pthread_mutex_init(&s->lock, NULL);
    s->config = *config;
    s->keys = *keys; /* taken over */
    keys->keys = NULL;
    keys->n = 0;
    if (s->keys.n) {
        s->buckets = calloc(s->keys.n, sizeof *s->buckets);
        if (!s->buckets) {
            free_server(s);
            return fn_fail(err, FACENET_ERR_NO_MEMORY, "out of memory");
        }
        for (size_t i = 0; i < s->keys.n; i++) {
            s->buckets[i].tokens = s->keys.keys[i].burst;
            s->buckets[i].last = now_seconds();
        }
    }
    /* TLS files before the models: a refused key file fails fast. */
    st = config->tls_cert ? fn_tls_pem_load(config->tls_cert, config->tls_key, &s->tls, err)
                          : FACENET_OK;
    if (st == FACENET_OK)
        st = load_pipelines(s, err);
    if (st != FACENET_OK) {
        free_server(s);
        return st;
    }
    facenet_image_limits_default(&s->limits);
    s->limits.max_bytes = config->max_body;
    s->limits.max_pixels = config->max_pixels;

    /* The TLS options ride in an array that is empty for plain HTTP. */
    struct MHD_OptionItem tls_options[] = {
        {s->tls.cert ? MHD_OPTION_HTTPS_MEM_CERT : MHD_OPTION_END, 0, s->tls.cert},
        {MHD_OPTION_HTTPS_MEM_KEY, 0, s->tls.key},
        {MHD_OPTION_END, 0, NULL}};
    s->daemon = MHD_start_daemon(
        MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_ITC | MHD_USE_ERROR_LOG |
            (s->tls.cert ? MHD_USE_TLS : 0),
        (uint16_t)config->port, NULL, NULL, on_request, s, MHD_OPTION_ARRAY, tls_options,
        MHD_OPTION_SOCK_ADDR, &addr,
        MHD_OPTION_THREAD_POOL_SIZE, (unsigned)config->threads,
        MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)(64 * 1024), MHD_OPTION_CONNECTION_LIMIT,
        (unsigned)1024, MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)config->timeout_s,
        MHD_OPTION_NOTIFY_COMPLETED, on_completed, s, MHD_OPTION_END);
    if (!s->daemon) {
        free_server(s);
        return fn_fail(err, FACENET_ERR_IO, "cannot listen on %s:%d%s", config->bind,
                       config->port,
                       config->tls_cert ? " (or the TLS certificate and key do not fit)" : "");
    }
    info = MHD_get_daemon_info(s->daemon, MHD_DAEMON_INFO_BIND_PORT);
    s->port = info ? info->port : config->port;
    *out = s;
    return FACENET_OK;
}

int fn_server_port(const fn_server *server)
{
    return server->port;
}

void fn_server_stop(fn_server *s)
{
    double deadline = now_seconds() + s->config.drain_s;
    MHD_socket listener = MHD_quiesce_daemon(s->daemon);

    for (;;) {
        long in_flight;
        pthread_mutex_lock(&s->lock);
        in_flight = s->in_flight;
        pthread_mutex_unlock(&s->lock);
        if (in_flight <= 0 || now_seconds() >= deadline)
            break;
        nanosleep(&(struct timespec){0, 20 * 1000 * 1000}, NULL);
    }
    MHD_stop_daemon(s->daemon);
    if (listener != MHD_INVALID_SOCKET)
        close(listener);
    free_server(s);
}
