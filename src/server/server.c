/*
 * server.c - `facenet serve`: the daemon: routing, body buffering, the
 * access log, start, drain and stop (libmicrohttpd thread-pool mode).
 *
 * Order of checks, all before a byte of body is read: route (404) and
 * method (405), API key (401), scope (403), token bucket (429), and for
 * routes with a body Content-Type (415) and Content-Length against the
 * body cap (413). The body is then buffered up to the cap (413 past it,
 * checked while streaming), parsed, and handed to the route.
 *
 * Paths are matched on their raw (still percent-encoded) segments, which
 * are decoded one by one afterwards: a subject named "a/b" is the single
 * segment "a%2Fb", never two.
 *
 * Error bodies are {"error": {"code": ..., "message": ...}} with static
 * strings only: nothing from the request is ever echoed back or logged.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "common/error.h"
#include "server/openapi.h"
#include "server/tls.h"
#include "server/server_int.h"

static enum MHD_Result serve_get(fn_server *s, struct MHD_Connection *conn, request *req);

#define READ_SCOPES (FN_SCOPE_IDENTIFY | FN_SCOPE_ADMIN)

const route_def fn_routes[N_ROUTES] = {
    [R_HEALTHZ] = {"/healthz", "GET", 0, 0, 0, serve_get},
    [R_READYZ] = {"/readyz", "GET", 0, 0, 0, serve_get},
    [R_METRICS] = {"/metrics", "GET", 0, 0, 0, serve_get},
    [R_OPENAPI] = {"/openapi.json", "GET", 0, 0, 0, serve_get},
    [R_DETECT] = {"/v1/detect", "POST", FN_SCOPE_DETECT, 1, 0, fn_route_detect},
    [R_VERIFY] = {"/v1/verify", "POST", FN_SCOPE_VERIFY, 1, 0, fn_route_verify},
    [R_EMBED] = {"/v1/embed", "POST", FN_SCOPE_EMBED, 1, 0, fn_route_embed},
    [R_IDENTIFY] = {"/v1/identify", "POST", FN_SCOPE_IDENTIFY, 1, 1, fn_route_identify},
    [R_COLLECTIONS] = {"/v1/collections", "GET", READ_SCOPES, 0, 1, fn_route_collections},
    [R_SUBJECTS] = {"/v1/collections/{collection}/subjects", "GET", READ_SCOPES, 0, 1,
                    fn_route_subjects},
    /* A whole collection is an administrator's act, not an enroller's. */
    [R_COLLECTION_DELETE] = {"/v1/collections/{collection}", "DELETE", FN_SCOPE_ADMIN, 0, 1,
                             fn_route_collection_delete},
    [R_SUBJECT_DELETE] = {"/v1/collections/{collection}/subjects/{subject}", "DELETE",
                          FN_SCOPE_ENROLL, 0, 1, fn_route_subject_delete},
    [R_FACES_LIST] = {"/v1/collections/{collection}/subjects/{subject}/faces", "GET",
                      READ_SCOPES, 0, 1, fn_route_faces_list},
    [R_FACES_ENROLL] = {"/v1/collections/{collection}/subjects/{subject}/faces", "POST",
                        FN_SCOPE_ENROLL, 1, 1, fn_route_faces_enroll},
    [R_FACE_DELETE] = {"/v1/collections/{collection}/subjects/{subject}/faces/{face_id}",
                       "DELETE", FN_SCOPE_ENROLL, 0, 1, fn_route_face_delete},
    [R_OTHER] = {"other", "", 0, 0, 0, NULL},
};

double fn_now_seconds(void)
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
    config->max_body_memory = (size_t)256 << 20;
    config->max_pixels = 16000000ull;
    config->max_faces = 64;
    config->timeout_s = 30;
    config->drain_s = 30;
    config->gallery_refresh_s = 2;
    config->max_inflight_per_key = 8;
    config->max_queue = 16;
}

/* ---- routing ------------------------------------------------------------- */

static int hex_value(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* Percent-decode one path segment [seg, seg+len) into out (PARAM_MAX).
 * -1 on a malformed escape, an encoded NUL, or a result too long. */
static int decode_segment(const char *seg, size_t len, char *out)
{
    size_t n = 0;

    for (size_t i = 0; i < len; i++) {
        int c = (unsigned char)seg[i];
        if (c == '%') {
            int hi, lo;
            if (i + 2 >= len)
                return -1;
            hi = hex_value(seg[i + 1]);
            lo = hex_value(seg[i + 2]);
            if (hi < 0 || lo < 0 || (hi == 0 && lo == 0))
                return -1;
            c = hi * 16 + lo;
            i += 2;
        }
        if (n + 1 >= PARAM_MAX)
            return -1;
        out[n++] = (char)c;
    }
    out[n] = '\0';
    return 0;
}

typedef enum match_result { MATCH_NONE, MATCH_PATH, MATCH_BAD_ESCAPE } match_result;

/* Does the raw path `url` fit `pattern`? Parameters are decoded into
 * params[0..) as they are met. */
static match_result match_path(const char *pattern, const char *url,
                               char params[N_PARAMS][PARAM_MAX])
{
    size_t n_params = 0;
    const char *p = pattern, *u = url;

    for (;;) {
        const char *pe, *ue;
        size_t plen, ulen;
        if (*p != '/' || *u != '/')
            return MATCH_NONE;
        p++;
        u++;
        pe = strchr(p, '/');
        ue = strchr(u, '/');
        plen = pe ? (size_t)(pe - p) : strlen(p);
        ulen = ue ? (size_t)(ue - u) : strlen(u);
        if (plen > 0 && p[0] == '{') {
            if (ulen == 0 || n_params == N_PARAMS)
                return MATCH_NONE;
            if (decode_segment(u, ulen, params[n_params++]) != 0)
                return MATCH_BAD_ESCAPE;
        } else if (plen != ulen || memcmp(p, u, plen) != 0) {
            return MATCH_NONE;
        }
        if (!pe && !ue)
            return MATCH_PATH;
        if (!pe || !ue)
            return MATCH_NONE;
        p = pe;
        u = ue;
    }
}

/* The route for this path and method; *status is 0, or 404/405/400 when
 * nothing fits. */
static int find_route(const char *url, const char *method, request *req, int *status)
{
    int path_seen = 0;

    *status = 0;
    for (int i = 0; i < R_OTHER; i++) {
        match_result m = match_path(fn_routes[i].path, url, req->params);
        if (m == MATCH_BAD_ESCAPE) {
            *status = MHD_HTTP_BAD_REQUEST;
            return R_OTHER;
        }
        if (m != MATCH_PATH)
            continue;
        if (strcmp(method, fn_routes[i].method) == 0)
            return i;
        path_seen = 1;
    }
    *status = path_seen ? MHD_HTTP_METHOD_NOT_ALLOWED : MHD_HTTP_NOT_FOUND;
    return R_OTHER;
}

/* libmicrohttpd would percent-decode the whole path before routing; keep
 * it raw so that segments are decoded one at a time (match_path). */
static size_t keep_raw(void *cls, struct MHD_Connection *conn, char *uri)
{
    (void)cls;
    (void)conn;
    return strlen(uri);
}

/* Content types a body route accepts. */
static int acceptable_type(const char *type)
{
    static const char *const types[] = {"application/json", "multipart/form-data"};

    if (!type)
        return 0;
    for (size_t i = 0; i < sizeof types / sizeof types[0]; i++) {
        size_t n = strlen(types[i]);
        if (strncasecmp(type, types[i], n) == 0 && (type[n] == '\0' || type[n] == ';'))
            return 1;
    }
    return 0;
}

/* ---- the body budget ----------------------------------------------------- */

/* Request bodies are buffered whole before parsing, so without a global cap
 * a client opening many connections could make the server hold
 * connections x max_body bytes. Every buffer is reserved against
 * config.max_body_memory before it is allocated; a request that does not
 * fit is refused (503) without reading its body, and nothing else changes. */
static int body_reserve(fn_server *s, request *req, size_t bytes)
{
    int ok;

    if (bytes <= req->reserved)
        return 0;
    pthread_mutex_lock(&s->lock);
    ok = bytes - req->reserved <= s->config.max_body_memory - s->body_bytes;
    if (ok) {
        s->body_bytes += bytes - req->reserved;
        req->reserved = bytes;
    } else {
        s->stats.body_memory_refused++;
    }
    pthread_mutex_unlock(&s->lock);
    return ok ? 0 : -1;
}

void fn_body_release(fn_server *s, request *req)
{
    free(req->body);
    req->body = NULL;
    req->len = req->cap = 0;
    if (req->reserved == 0)
        return;
    pthread_mutex_lock(&s->lock);
    s->body_bytes -= req->reserved;
    pthread_mutex_unlock(&s->lock);
    req->reserved = 0;
}

/* First call for a request: headers are in, no body read yet. */
static enum MHD_Result begin_request(fn_server *s, struct MHD_Connection *conn, request *req,
                                     int status)
{
    enum MHD_Result ret = MHD_NO;
    const route_def *route = &fn_routes[req->route];
    const char *type, *length;

    if (status == MHD_HTTP_BAD_REQUEST)
        return fn_respond_error(conn, req, status, "invalid_path",
                                "a path segment has a malformed percent escape", NULL);
    if (status == MHD_HTTP_METHOD_NOT_ALLOWED)
        return fn_respond_error(conn, req, status, "method_not_allowed",
                                "method not allowed on this endpoint", NULL);
    if (status)
        return fn_respond_error(conn, req, MHD_HTTP_NOT_FOUND, "not_found", "no such endpoint",
                                NULL);
    if (route->gallery && !s->gallery)
        return fn_respond_error(conn, req, MHD_HTTP_NOT_FOUND, "no_gallery",
                                "this server has no gallery (start it with --gallery)", NULL);
    if (route->scopes == 0)
        return route->handler(s, conn, req);
    if (fn_authorize(s, conn, req, &ret) != 0)
        return ret;
    if (!route->body)
        return route->handler(s, conn, req);
    type = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Content-Type");
    if (!acceptable_type(type) || strlen(type) >= sizeof req->content_type)
        return fn_respond_error(conn, req, MHD_HTTP_UNSUPPORTED_MEDIA_TYPE,
                                "unsupported_media_type",
                                "send Content-Type: application/json or multipart/form-data",
                                NULL);
    memcpy(req->content_type, type, strlen(type) + 1);
    length = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Content-Length");
    if (length) {
        char *end;
        unsigned long long n = strtoull(length, &end, 10);
        if (*end != '\0' || n > s->config.max_body)
            return fn_respond_error(conn, req, MHD_HTTP_CONTENT_TOO_LARGE, "body_too_large",
                                    "the request body exceeds the size limit", NULL);
        req->expected = (size_t)n;
        if (body_reserve(s, req, req->expected) != 0)
            return fn_respond_error(conn, req, MHD_HTTP_SERVICE_UNAVAILABLE,
                                    "body_memory_exhausted",
                                    "the server is receiving too many request bodies; "
                                    "retry later",
                                    "1");
    }
    return MHD_YES;
}

/* The buffer's next capacity for `need` bytes: the announced length when
 * there is one (reserved already), else doubling from 64 KiB. */
static size_t body_capacity(const fn_server *s, const request *req, size_t need)
{
    size_t cap = req->cap ? req->cap : 64 * 1024;

    if (req->expected >= need)
        return req->expected;
    while (cap < need)
        cap = cap > s->config.max_body / 2 ? s->config.max_body : cap * 2;
    return cap;
}

static void append_body(fn_server *s, request *req, const char *data, size_t size)
{
    if (req->too_large || req->over_budget)
        return;
    if (size > s->config.max_body - req->len) {
        req->too_large = 1;
        fn_body_release(s, req);
        return;
    }
    if (req->len + size > req->cap) {
        size_t cap = body_capacity(s, req, req->len + size);
        char *grown;
        if (body_reserve(s, req, cap) != 0) {
            req->over_budget = 1;
            fn_body_release(s, req);
            return;
        }
        grown = realloc(req->body, cap);
        if (!grown) { /* treated like an oversized body: refused, not crashed */
            req->too_large = 1;
            fn_body_release(s, req);
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
    int status;

    (void)version;
    if (!req) {
        req = calloc(1, sizeof *req);
        if (!req)
            return MHD_NO;
        req->start = fn_now_seconds();
        if (s->config.deadline_ms > 0)
            req->deadline = req->start + s->config.deadline_ms / 1000.0;
        req->route = find_route(url, method, req, &status);
        req->faces = -1;
        snprintf(req->key_id, sizeof req->key_id, "-");
        pthread_mutex_lock(&s->lock);
        req->id = ++s->next_request_id;
        s->in_flight++;
        pthread_mutex_unlock(&s->lock);
        *con_cls = req;
        return begin_request(s, conn, req, status);
    }
    if (*upload_data_size > 0) {
        if (!req->status)
            append_body(s, req, upload_data, *upload_data_size);
        *upload_data_size = 0;
        return MHD_YES;
    }
    if (req->deferred)
        return fn_jobs_deliver(conn, req); /* its job is done: resumed */
    if (req->status)
        return MHD_YES;
    if (fn_routes[req->route].body)
        return fn_jobs_submit(s, conn, req);
    return fn_routes[req->route].handler(s, conn, req);
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
    fn_release_slot(s, req);
    seconds = fn_now_seconds() - req->start;
    pthread_mutex_lock(&s->lock);
    fn_metrics_record(s, req, seconds);
    s->in_flight--;
    pthread_mutex_unlock(&s->lock);
    /* One line per request; ids, numbers and static names only: never a
     * key, an image, an embedding or anything else the client sent. */
    fprintf(stderr,
            "{\"ts\":%lld,\"request_id\":%llu,\"key_id\":\"%s\",\"route\":\"%s\","
            "\"status\":%d,\"latency_ms\":%.1f,\"faces\":%ld}\n",
            (long long)time(NULL), req->id, req->key_id, fn_routes[req->route].path, req->status,
            seconds * 1000.0, req->faces);
    fn_body_release(s, req);
    if (req->pending) /* resumed, but the client left before it was sent */
        MHD_destroy_response(req->pending);
    free(req);
    *con_cls = NULL;
}

/* ---- GET endpoints ------------------------------------------------------- */

/* ---- GET endpoints ------------------------------------------------------- */

/* Models loaded, and the gallery open (without its path: not the
 * client's business). */
static json_t *readiness(fn_server *s)
{
    json_t *body = json_pack("{s:s, s:s, s:s, s:i, s:f}", "status", "ready", "detector",
                             "mtcnn", "embedder", s->embed_info->name, "pipelines",
                             s->n_pipelines, "threshold", (double)s->threshold);

    if (body && s->gallery)
        json_object_set_new(body, "gallery",
                            json_pack("{s:b, s:s, s:I, s:f}", "open", 1, "model",
                                      facenet_gallery_model(s->gallery), "templates",
                                      (json_int_t)facenet_gallery_size(s->gallery),
                                      "threshold",
                                      (double)facenet_gallery_threshold(s->gallery)));
    return body;
}

static enum MHD_Result serve_get(fn_server *s, struct MHD_Connection *conn, request *req)
{
    char *text;

    switch (req->route) {
    case R_HEALTHZ:
        return fn_respond_json(conn, req, MHD_HTTP_OK, json_pack("{s:s}", "status", "ok"), NULL);
    case R_READYZ:
        return fn_respond_json(conn, req, MHD_HTTP_OK, readiness(s), NULL);
    case R_METRICS:
        text = fn_metrics_text(s);
        if (!text)
            return MHD_NO;
        return fn_respond_text(conn, req, MHD_HTTP_OK, "text/plain; version=0.0.4", text, NULL);
    case R_OPENAPI:
        text = strdup(fn_openapi_json());
        if (!text)
            return MHD_NO;
        return fn_respond_text(conn, req, MHD_HTTP_OK, "application/json", text, NULL);
    default:
        return fn_respond_error(conn, req, MHD_HTTP_NOT_FOUND, "not_found", "no such endpoint",
                             NULL);
    }
}

/* ---- lifecycle ------------------------------------------------------------ */

/* Picks up other processes' writes to the gallery (enrollments by the CLI
 * or another server) every gallery_refresh_s seconds. Writes through this
 * server are in the snapshot at once (the gallery mirrors its own). */
static void *refresh_gallery(void *arg)
{
    fn_server *s = arg;

    pthread_mutex_lock(&s->lock);
    while (!s->stopping) {
        struct timespec until;
        clock_gettime(CLOCK_REALTIME, &until);
        until.tv_sec += s->config.gallery_refresh_s;
        pthread_cond_timedwait(&s->stop_cond, &s->lock, &until);
        if (s->stopping)
            break;
        pthread_mutex_unlock(&s->lock);
        {
            facenet_error err;
            if (facenet_gallery_refresh(s->gallery, NULL, &err) != FACENET_OK)
                fprintf(stderr, "facenet serve: gallery refresh failed: %s\n", err.message);
        }
        pthread_mutex_lock(&s->lock);
    }
    pthread_mutex_unlock(&s->lock);
    return NULL;
}

static void stop_refresher(fn_server *s)
{
    if (!s->refresher_running)
        return;
    pthread_mutex_lock(&s->lock);
    s->stopping = 1;
    pthread_cond_broadcast(&s->stop_cond);
    pthread_mutex_unlock(&s->lock);
    pthread_join(s->refresher, NULL);
    s->refresher_running = 0;
}

static void free_server(fn_server *s)
{
    fn_jobs_stop(s);
    stop_refresher(s);
    facenet_gallery_close(s->gallery); /* after every request has finished */
    for (int i = 0; i < s->n_pipelines; i++) {
        facenet_detector_free(s->pipelines[i].detector);
        facenet_embedder_free(s->pipelines[i].embedder);
    }
    free(s->pipelines);
    free(s->buckets);
    fn_keyring_free(&s->keys);
    fn_tls_pem_free(&s->tls);
    pthread_cond_destroy(&s->stop_cond);
    pthread_cond_destroy(&s->job_ready);
    pthread_cond_destroy(&s->pipeline_freed);
    pthread_mutex_destroy(&s->reload_lock);
    pthread_mutex_destroy(&s->lock);
    free(s);
}

/* Open (creating when missing) the gallery for the served model. The key
 * comes from the key file or $FACENET_GALLERY_KEY and is wiped at once. */
static facenet_status open_gallery(fn_server *s, facenet_error *err)
{
    uint8_t key[FACENET_GALLERY_KEY_BYTES];
    facenet_status st;

    if (!s->config.gallery)
        return FACENET_OK;
    st = facenet_gallery_model_id(s->embed_info, s->model_id, sizeof s->model_id, err);
    if (st != FACENET_OK)
        return st;
    st = facenet_gallery_preprocess_label(s->pipelines[0].detector, s->pipelines[0].embedder, 0,
                                          s->preprocess, sizeof s->preprocess, err);
    if (st != FACENET_OK)
        return st;
    st = facenet_gallery_key_load(s->config.gallery_key_file, key, err);
    if (st != FACENET_OK)
        return st;
    st = facenet_gallery_open(s->config.gallery, key, s->model_id, s->dim,
                              FACENET_GALLERY_CREATE | FACENET_GALLERY_INT4, &s->gallery, err);
    sodium_memzero(key, sizeof key);
    if (st != FACENET_OK)
        return st;
    if (pthread_create(&s->refresher, NULL, refresh_gallery, s) != 0)
        return fn_fail(err, FACENET_ERR_INTERNAL, "cannot start the gallery refresh thread");
    s->refresher_running = 1;
    return FACENET_OK;
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
    /* The strict threshold, as `facenet compare` uses by default: a false
     * match is the costly error for a service (docs/ACCURACY.md). */
    s->threshold = s->embed_info->threshold;
    if (!s->config.verify_best_accuracy && s->embed_info->threshold_strict > 0)
        s->threshold = s->embed_info->threshold_strict;
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
    if (c->max_body_memory < c->max_body)
        return fn_fail(err, FACENET_ERR_INVALID_ARGUMENT,
                       "--max-body-memory must be at least --max-body");
    if (c->threads < 1 || c->threads > 256 || c->pipelines < 1 || c->pipelines > 64 ||
        c->max_body < 1024 || c->max_faces < 1 || c->timeout_s < 1 || c->drain_s < 0 ||
        c->max_pixels < 1 || c->gallery_refresh_s < 1 || c->max_inflight_per_key < 0 ||
        c->deadline_ms < 0 || c->max_queue < 0)
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
    pthread_cond_init(&s->stop_cond, NULL);
    pthread_cond_init(&s->job_ready, NULL);
    {
        /* Deadlines are monotonic; so must the queue's waits be. */
        pthread_condattr_t attr;
        pthread_condattr_init(&attr);
        pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
        pthread_cond_init(&s->pipeline_freed, &attr);
        pthread_condattr_destroy(&attr);
    }
    s->open_access = keys->n == 0;
    pthread_mutex_init(&s->reload_lock, NULL);
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
            s->buckets[i].last = fn_now_seconds();
        }
    }
    /* TLS files before the models: a refused key file fails fast. */
    st = config->tls_cert ? fn_tls_pem_load(config->tls_cert, config->tls_key, &s->tls, err)
                          : FACENET_OK;
    if (st == FACENET_OK)
        st = load_pipelines(s, err);
    if (st == FACENET_OK)
        st = open_gallery(s, err);
    if (st == FACENET_OK)
        st = fn_jobs_start(s, err);
    if (st != FACENET_OK) {
        free_server(s);
        return st;
    }
    fn_keys_watch_start(s);
    facenet_image_limits_default(&s->limits);
    s->limits.max_bytes = config->max_body;
    s->limits.max_pixels = config->max_pixels;

    /* The TLS options ride in an array that is empty for plain HTTP. */
    struct MHD_OptionItem tls_options[] = {
        {s->tls.cert ? MHD_OPTION_HTTPS_MEM_CERT : MHD_OPTION_END, 0, s->tls.cert},
        {MHD_OPTION_HTTPS_MEM_KEY, 0, s->tls.key},
        {MHD_OPTION_END, 0, NULL}};
    s->daemon = MHD_start_daemon(
        MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_ITC | MHD_ALLOW_SUSPEND_RESUME |
            MHD_USE_ERROR_LOG |
            (s->tls.cert ? MHD_USE_TLS : 0),
        (uint16_t)config->port, NULL, NULL, on_request, s, MHD_OPTION_ARRAY, tls_options,
        MHD_OPTION_SOCK_ADDR, &addr,
        MHD_OPTION_THREAD_POOL_SIZE, (unsigned)config->threads,
        MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)(64 * 1024), MHD_OPTION_CONNECTION_LIMIT,
        (unsigned)1024, MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)config->timeout_s,
        MHD_OPTION_NOTIFY_COMPLETED, on_completed, s, MHD_OPTION_UNESCAPE_CALLBACK, keep_raw,
        NULL, MHD_OPTION_END);
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

/* The gallery is closed (free_server) only after the daemon has stopped,
 * that is after every request thread has returned: an enrollment that was
 * answered 2xx was durable before its answer, and one still running when
 * the drain deadline passes finishes before the close. */
void fn_server_stop(fn_server *s)
{
    double deadline = fn_now_seconds() + s->config.drain_s;
    MHD_socket listener = MHD_quiesce_daemon(s->daemon);

    for (;;) {
        long in_flight;
        pthread_mutex_lock(&s->lock);
        in_flight = s->in_flight;
        pthread_mutex_unlock(&s->lock);
        if (in_flight <= 0 || fn_now_seconds() >= deadline)
            break;
        nanosleep(&(struct timespec){0, 20 * 1000 * 1000}, NULL);
    }
    /* Every suspended connection must be resumed before the daemon stops:
     * the job threads finish what is queued (requests on kept-alive
     * connections that came after the drain started get a 503). */
    fn_jobs_stop(s);
    MHD_stop_daemon(s->daemon);
    if (listener != MHD_INVALID_SOCKET)
        close(listener);
    free_server(s);
}
