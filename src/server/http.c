/*
 * http.c - what every route of `facenet serve` shares: JSON responses with
 * the security headers, API key and scope checks with per-key token
 * buckets, and the Prometheus counters behind /metrics.
 *
 * Error bodies are {"error": {"code": ..., "message": ...}} with static
 * strings only: nothing from the request is ever echoed back or logged.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#include "server/server_int.h"

static const int tracked_statuses[N_STATUSES] = {200, 201, 400, 401, 403, 404, 405, 413,
                                                 415, 422, 429, 499, 500, 503, 504};
static const double latency_buckets[N_BUCKETS] = {0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
                                                  0.5,   1,    2.5,   5,    10};

/* ---- responses --------------------------------------------------------- */

/* Queue `text` (malloc'd, taken) with the security headers every response
 * carries. */
enum MHD_Result fn_respond_text(struct MHD_Connection *conn, request *req, int status,
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
    req->status = status;
    if (req->deferred) {
        /* On a job thread: the connection is suspended, so the response
         * waits in the request until libmicrohttpd's thread queues it. */
        if (req->pending) {
            MHD_destroy_response(response);
            return MHD_NO;
        }
        req->pending = response;
        req->pending_status = (unsigned)status;
        return MHD_YES;
    }
    ret = MHD_queue_response(conn, (unsigned)status, response);
    MHD_destroy_response(response);
    return ret;
}

enum MHD_Result fn_respond_json(struct MHD_Connection *conn, request *req, int status,
                                    json_t *body, const char *retry_after)
{
    /* An answer that would leave after the request's deadline is a 504
     * instead, unless it reports a write that has been committed. */
    if (status < 300 && req->deadline > 0 && !req->committed &&
        fn_now_seconds() > req->deadline) {
        json_decref(body);
        body = json_pack("{s:{s:s, s:s}}", "error", "code", "deadline_exceeded", "message",
                         "the request ran past its deadline (--deadline-ms)");
        status = MHD_HTTP_GATEWAY_TIMEOUT;
        retry_after = NULL;
    }
    char *text = body ? json_dumps(body, JSON_COMPACT) : NULL;

    json_decref(body);
    if (!text)
        return MHD_NO;
    return fn_respond_text(conn, req, status, "application/json", text, retry_after);
}

/* `code` and `message` must be static text, never request data. */
enum MHD_Result fn_respond_error(struct MHD_Connection *conn, request *req, int status,
                                     const char *code, const char *message,
                                     const char *retry_after)
{
    return fn_respond_json(conn, req, status,
                        json_pack("{s:{s:s, s:s}}", "error", "code", code, "message", message),
                        retry_after);
}

/* ---- metrics ------------------------------------------------------------ */

void fn_metrics_record(fn_server *s, const request *req, double seconds)
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

char *fn_metrics_text(fn_server *s)
{
    char *text = NULL;
    size_t size = 0;
    FILE *f = open_memstream(&text, &size);
    metrics m;
    char labels[N_ROUTES][128]; /* method="GET",route="/v1/..." */
    long in_flight, queued;
    size_t body_bytes;
    int busy = 0;

    if (!f)
        return NULL;
    for (int r = 0; r < N_ROUTES; r++)
        snprintf(labels[r], sizeof labels[r], "method=\"%s\",route=\"%s\"",
                 r == R_OTHER ? "*" : fn_routes[r].method, fn_routes[r].path);
    pthread_mutex_lock(&s->lock);
    m = s->stats;
    in_flight = s->in_flight;
    queued = s->queued;
    body_bytes = s->body_bytes;
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
                fprintf(f, "facenet_http_requests_total{%s,status=\"%d\"} %llu\n", labels[r],
                        tracked_statuses[i], m.requests[r][i]);
            else
                fprintf(f, "facenet_http_requests_total{%s,status=\"other\"} %llu\n", labels[r],
                        m.requests[r][i]);
        }
    fprintf(f, "# HELP facenet_http_request_duration_seconds Request latency by route.\n"
               "# TYPE facenet_http_request_duration_seconds histogram\n");
    for (int r = 0; r < N_ROUTES; r++) {
        unsigned long long cumulative = 0;
        for (size_t b = 0; b < N_BUCKETS; b++) {
            cumulative += m.latency[r][b];
            fprintf(f, "facenet_http_request_duration_seconds_bucket{%s,le=\"%g\"} %llu\n",
                    labels[r], latency_buckets[b], cumulative);
        }
        cumulative += m.latency[r][N_BUCKETS];
        fprintf(f, "facenet_http_request_duration_seconds_bucket{%s,le=\"+Inf\"} %llu\n",
                labels[r], cumulative);
        fprintf(f, "facenet_http_request_duration_seconds_sum{%s} %.6f\n", labels[r],
                m.latency_sum[r]);
        fprintf(f, "facenet_http_request_duration_seconds_count{%s} %llu\n", labels[r],
                cumulative);
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
    fprintf(f, "# HELP facenet_key_reloads_total Times the keys file was reloaded.\n"
               "# TYPE facenet_key_reloads_total counter\n"
               "facenet_key_reloads_total %llu\n",
            m.key_reloads);
    fprintf(f, "# HELP facenet_inflight_limited_total Requests refused by a key's concurrency cap.\n"
               "# TYPE facenet_inflight_limited_total counter\n"
               "facenet_inflight_limited_total %llu\n"
               "# HELP facenet_queue_timeouts_total Requests whose deadline passed while they "
               "waited for a pipeline.\n"
               "# TYPE facenet_queue_timeouts_total counter\n"
               "facenet_queue_timeouts_total %llu\n"
               "# HELP facenet_queue_depth Requests waiting for a pipeline (--deadline-ms).\n"
               "# TYPE facenet_queue_depth gauge\n"
               "facenet_queue_depth %ld\n",
            m.inflight_limited, m.queue_timeouts, queued);
    fprintf(f, "# HELP facenet_body_memory_refused_total Requests refused because the bodies "
               "being received filled --max-body-memory.\n"
               "# TYPE facenet_body_memory_refused_total counter\n"
               "facenet_body_memory_refused_total %llu\n"
               "# HELP facenet_body_memory_bytes Bytes reserved by request bodies being received "
               "or held.\n"
               "# TYPE facenet_body_memory_bytes gauge\n"
               "facenet_body_memory_bytes %zu\n",
            m.body_memory_refused, body_bytes);
    fprintf(f, "# HELP facenet_abandoned_total Requests whose client had closed the connection "
               "by the time a pipeline was free: not run.\n"
               "# TYPE facenet_abandoned_total counter\n"
               "facenet_abandoned_total %llu\n",
            m.abandoned);
    if (fclose(f) != 0) {
        free(text);
        return NULL;
    }
    return text;
}

/* ---- authentication and rate limiting ----------------------------------- */

/* 0 when the request may proceed; otherwise a response has been queued. */
/* ---- live key reload ----------------------------------------------------- */

static int same_file(const struct stat *a, const struct stat *b)
{
    return a->st_dev == b->st_dev && a->st_ino == b->st_ino && a->st_size == b->st_size &&
           a->st_mtim.tv_sec == b->st_mtim.tv_sec && a->st_mtim.tv_nsec == b->st_mtim.tv_nsec &&
           a->st_ctim.tv_sec == b->st_ctim.tv_sec && a->st_ctim.tv_nsec == b->st_ctim.tv_nsec;
}

/* Buckets for `ring`, carrying over the state of keys that were already
 * there (matched by id), so that a reload neither refills a bucket nor
 * forgets requests in flight. Caller holds s->lock. */
static bucket *carry_buckets(const fn_server *s, const fn_keyring *ring)
{
    bucket *b = calloc(ring->n ? ring->n : 1, sizeof *b);
    double now = fn_now_seconds();

    if (!b)
        return NULL;
    for (size_t i = 0; i < ring->n; i++) {
        long old = fn_keyring_find(&s->keys, ring->keys[i].id);
        if (old >= 0) {
            b[i] = s->buckets[old];
            b[i].tokens = fmin(b[i].tokens, ring->keys[i].burst);
        } else {
            b[i].tokens = ring->keys[i].burst;
            b[i].last = now;
        }
    }
    return b;
}

/* Reload the keys file when its identity, size or times changed. A file
 * that fails to load keeps the previous keys and is tried again at the
 * next check; a missing file is an empty keyring: every key is refused.
 * Messages never hold key material (the file has only hashes anyway, but
 * the parser's message is not repeated). */
static void reload_keys(fn_server *s, int force)
{
    struct stat st;
    fn_keyring ring = {NULL, 0};
    facenet_error err;
    facenet_status status;
    bucket *buckets;
    size_t live = 0;
    int exists;

    pthread_mutex_lock(&s->reload_lock);
    exists = stat(s->config.keys_path, &st) == 0;
    if (!force && ((exists && s->keys_exists && same_file(&st, &s->keys_stat)) ||
                   (!exists && !s->keys_exists))) {
        pthread_mutex_unlock(&s->reload_lock);
        return;
    }
    status = fn_keyring_load(s->config.keys_path, &ring, &err);
    if (status != FACENET_OK) {
        fprintf(stderr, "facenet serve: the keys file did not load (%s); keeping the previous "
                        "keys\n", facenet_strerror(status));
        pthread_mutex_unlock(&s->reload_lock);
        return;
    }
    pthread_mutex_lock(&s->lock);
    buckets = carry_buckets(s, &ring);
    if (buckets) {
        fn_keyring_free(&s->keys);
        free(s->buckets);
        s->keys = ring;
        s->buckets = buckets;
        s->keys_stat = st;
        s->keys_exists = exists;
        s->stats.key_reloads++;
    }
    pthread_mutex_unlock(&s->lock);
    if (!buckets) {
        fn_keyring_free(&ring);
        fprintf(stderr, "facenet serve: out of memory reloading the keys; keeping the previous "
                        "keys\n");
    } else {
        for (size_t i = 0; i < ring.n; i++)
            live += !ring.keys[i].revoked;
        fprintf(stderr, "facenet serve: keys reloaded: %zu live, %zu revoked\n", live,
                ring.n - live);
    }
    pthread_mutex_unlock(&s->reload_lock);
}

/* On the request path: look at the file at most once a second. */
static void maybe_reload_keys(fn_server *s)
{
    double now = fn_now_seconds();
    int due;

    if (!s->config.keys_path || s->open_access)
        return;
    pthread_mutex_lock(&s->lock);
    due = now - s->keys_checked >= 1.0;
    if (due)
        s->keys_checked = now;
    pthread_mutex_unlock(&s->lock);
    if (due)
        reload_keys(s, 0);
}

void fn_server_reload_keys(fn_server *s)
{
    if (s->config.keys_path && !s->open_access)
        reload_keys(s, 1);
}

void fn_keys_watch_start(fn_server *s)
{
    s->keys_exists = s->config.keys_path && stat(s->config.keys_path, &s->keys_stat) == 0;
    s->keys_checked = fn_now_seconds();
}

typedef enum auth_result { AUTH_OK, AUTH_NO_KEY, AUTH_SCOPE, AUTH_RATE, AUTH_INFLIGHT } auth_result;

/* The key check, scope, concurrency cap and token bucket, under s->lock
 * (the ring may be swapped by a reload). Copies the key's id into req. */
static auth_result check_key(fn_server *s, const char *auth, request *req, double *retry)
{
    const fn_api_key *key;
    bucket *b;
    double now;

    if (!auth || strncasecmp(auth, "Bearer ", 7) != 0 ||
        !(key = fn_keyring_check(&s->keys, auth + 7, strlen(auth + 7))))
        return AUTH_NO_KEY;
    memcpy(req->key_id, key->id, sizeof req->key_id);
    if (!(key->scopes & fn_routes[req->route].scopes))
        return AUTH_SCOPE;
    b = &s->buckets[key - s->keys.keys];
    if (s->config.max_inflight_per_key > 0 && b->in_flight >= s->config.max_inflight_per_key) {
        s->stats.inflight_limited++;
        return AUTH_INFLIGHT;
    }
    now = fn_now_seconds();
    b->tokens = fmin(key->burst, b->tokens + (now - b->last) * key->rate);
    b->last = now;
    if (b->tokens < 1) {
        *retry = (1 - b->tokens) / key->rate;
        s->stats.rate_limited++;
        return AUTH_RATE;
    }
    b->tokens -= 1;
    b->in_flight++;
    req->holds_slot = 1;
    return AUTH_OK;
}

int fn_authorize(fn_server *s, struct MHD_Connection *conn, request *req, enum MHD_Result *ret)
{
    const char *auth = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Authorization");
    double retry = 0;
    char after[32];
    auth_result result;

    if (s->open_access) { /* --dev on loopback, checked at start */
        snprintf(req->key_id, sizeof req->key_id, "dev");
        return 0;
    }
    maybe_reload_keys(s);
    pthread_mutex_lock(&s->lock);
    result = check_key(s, auth, req, &retry);
    pthread_mutex_unlock(&s->lock);
    switch (result) {
    case AUTH_OK:
        return 0;
    case AUTH_NO_KEY:
        *ret = fn_respond_error(conn, req, MHD_HTTP_UNAUTHORIZED, "unauthorized",
                                "a valid API key is required (Authorization: Bearer)", NULL);
        return -1;
    case AUTH_SCOPE:
        *ret = fn_respond_error(conn, req, MHD_HTTP_FORBIDDEN, "forbidden_scope",
                                "this API key lacks the scope this endpoint needs", NULL);
        return -1;
    case AUTH_INFLIGHT:
        *ret = fn_respond_error(conn, req, MHD_HTTP_TOO_MANY_REQUESTS, "too_many_in_flight",
                                "this API key has too many requests in flight "
                                "(--max-inflight-per-key)",
                                "1");
        return -1;
    default:
        snprintf(after, sizeof after, "%.0f", ceil(retry));
        *ret = fn_respond_error(conn, req, MHD_HTTP_TOO_MANY_REQUESTS, "rate_limited",
                                "rate limit exceeded for this API key", after);
        return -1;
    }
}

void fn_release_slot(fn_server *s, request *req)
{
    long index;

    if (!req->holds_slot)
        return;
    pthread_mutex_lock(&s->lock);
    index = fn_keyring_find(&s->keys, req->key_id);
    if (index >= 0 && s->buckets[index].in_flight > 0)
        s->buckets[index].in_flight--;
    pthread_mutex_unlock(&s->lock);
    req->holds_slot = 0;
}
