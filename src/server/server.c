/*
 * server.c - `facenet serve`: the daemon: routing, body buffering, the
 * access log, start, drain and stop (libmicrohttpd thread-pool mode).
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
#include "server/server_int.h"

const route_def fn_routes[N_ROUTES] = {
    [R_HEALTHZ] = {"/healthz", 0, 0},
    [R_READYZ] = {"/readyz", 0, 0},
    [R_METRICS] = {"/metrics", 0, 0},
    [R_OPENAPI] = {"/openapi.json", 0, 0},
    [R_DETECT] = {"/v1/detect", 1, FN_SCOPE_DETECT},
    [R_VERIFY] = {"/v1/verify", 1, FN_SCOPE_VERIFY},
    [R_EMBED] = {"/v1/embed", 1, FN_SCOPE_EMBED},
    [R_OTHER] = {"other", 0, 0},
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
    config->max_pixels = 16000000ull;
    config->max_faces = 64;
    config->timeout_s = 30;
    config->drain_s = 30;
}

/* ---- routing ------------------------------------------------------------- */

static enum MHD_Result serve_get(fn_server *s, struct MHD_Connection *conn, request *req);

static int find_route(const char *url)
{
    for (int i = 0; i < R_OTHER; i++)
        if (strcmp(url, fn_routes[i].path) == 0)
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
        return fn_respond_error(conn, req, MHD_HTTP_NOT_FOUND, "not_found", "no such endpoint",
                             NULL);
    if (strcmp(method, fn_routes[req->route].post ? "POST" : "GET") != 0)
        return fn_respond_error(conn, req, MHD_HTTP_METHOD_NOT_ALLOWED, "method_not_allowed",
                             "method not allowed on this endpoint", NULL);
    if (!fn_routes[req->route].post)
        return serve_get(s, conn, req);
    if (fn_authorize(s, conn, req, &ret) != 0)
        return ret;
    type = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Content-Type");
    if (!type || strncasecmp(type, "application/json", 16) != 0 ||
        (type[16] != '\0' && type[16] != ';'))
        return fn_respond_error(conn, req, MHD_HTTP_UNSUPPORTED_MEDIA_TYPE,
                             "unsupported_media_type", "send Content-Type: application/json",
                             NULL);
    length = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Content-Length");
    if (length) {
        char *end;
        unsigned long long n = strtoull(length, &end, 10);
        if (*end != '\0' || n > s->config.max_body)
            return fn_respond_error(conn, req, MHD_HTTP_CONTENT_TOO_LARGE, "body_too_large",
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
        req->start = fn_now_seconds();
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
    return fn_route_infer(s, conn, req);
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
        return fn_respond_json(conn, req, MHD_HTTP_OK, json_pack("{s:s}", "status", "ok"), NULL);
    case R_READYZ:
        return fn_respond_json(conn, req, MHD_HTTP_OK,
                            json_pack("{s:s, s:s, s:s, s:i, s:f}", "status", "ready",
                                      "detector", "mtcnn", "embedder", s->embed_info->name,
                                      "pipelines", s->n_pipelines, "threshold",
                                      (double)s->threshold),
                            NULL);
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

static void free_server(fn_server *s)
{
    for (int i = 0; i < s->n_pipelines; i++) {
        facenet_detector_free(s->pipelines[i].detector);
        facenet_embedder_free(s->pipelines[i].embedder);
    }
    free(s->pipelines);
    free(s->buckets);
    fn_keyring_free(&s->keys);
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
        live += !keys->keys[i].revoked;
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
            s->buckets[i].last = fn_now_seconds();
        }
    }
    st = load_pipelines(s, err);
    if (st != FACENET_OK) {
        free_server(s);
        return st;
    }
    facenet_image_limits_default(&s->limits);
    s->limits.max_bytes = config->max_body;
    s->limits.max_pixels = config->max_pixels;

    s->daemon = MHD_start_daemon(
        MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_ITC | MHD_USE_ERROR_LOG,
        (uint16_t)config->port, NULL, NULL, on_request, s, MHD_OPTION_SOCK_ADDR, &addr,
        MHD_OPTION_THREAD_POOL_SIZE, (unsigned)config->threads,
        MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)(64 * 1024), MHD_OPTION_CONNECTION_LIMIT,
        (unsigned)1024, MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)config->timeout_s,
        MHD_OPTION_NOTIFY_COMPLETED, on_completed, s, MHD_OPTION_END);
    if (!s->daemon) {
        free_server(s);
        return fn_fail(err, FACENET_ERR_IO, "cannot listen on %s:%d", config->bind,
                       config->port);
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
    MHD_stop_daemon(s->daemon);
    if (listener != MHD_INVALID_SOCKET)
        close(listener);
    free_server(s);
}
