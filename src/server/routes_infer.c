/*
 * routes_infer.c - POST /v1/detect, /v1/embed and /v1/verify: decode the
 * body's images, run them through a free pipeline, answer in JSON.
 *
 * A request that finds every pipeline busy gets 503 at once, or with
 * --deadline-ms waits in a bounded queue until its deadline. fn_embed_picked and the pipeline pool serve the gallery routes
 * too.
 */
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>

#include "common/error.h"
#include "server/server_int.h"

/* ---- inference ----------------------------------------------------------- */

static pipeline *free_pipeline(fn_server *s)
{
    for (int i = 0; i < s->n_pipelines; i++)
        if (!s->pipelines[i].busy) {
            s->pipelines[i].busy = 1;
            return &s->pipelines[i];
        }
    return NULL;
}

/* 1 when the client has closed its connection (or it was reset): a
 * non-blocking peek reads end-of-stream. The connection is suspended
 * while its job runs, so libmicrohttpd does not touch the socket, and a
 * peek consumes nothing. Data waiting (a pipelined request, a TLS alert)
 * or nothing yet both mean the client is still there. */
static int client_gone(struct MHD_Connection *conn)
{
    const union MHD_ConnectionInfo *info =
        MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CONNECTION_FD);
    char c;
    if (!info)
        return 0;
    ssize_t n = recv(info->connect_fd, &c, 1, MSG_PEEK | MSG_DONTWAIT);
    return n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR);
}

/* How often a request waiting in the queue looks whether its client is
 * still there, so that clients that gave up leave the queue to others. */
#define QUEUE_CLIENT_CHECK_SECONDS 0.1

typedef enum wait_outcome { WAIT_GOT, WAIT_FULL, WAIT_EXPIRED, WAIT_GONE } wait_outcome;

static void queue_append(fn_server *s, request *req)
{
    req->wait_next = NULL;
    req->wait_prev = s->wait_tail;
    if (s->wait_tail)
        s->wait_tail->wait_next = req;
    else
        s->wait_head = req;
    s->wait_tail = req;
    s->queued++;
}

static void queue_remove(fn_server *s, request *req)
{
    if (req->wait_prev)
        req->wait_prev->wait_next = req->wait_next;
    else
        s->wait_head = req->wait_next;
    if (req->wait_next)
        req->wait_next->wait_prev = req->wait_prev;
    else
        s->wait_tail = req->wait_prev;
    req->wait_prev = req->wait_next = NULL;
    s->queued--;
}

/* Under s->lock: a free pipeline, or why there is none. The queue is
 * first come, first served: a pipeline goes to the oldest waiting request,
 * and a newcomer takes a free one only when nobody is waiting. (Waiters
 * wake every QUEUE_CLIENT_CHECK_SECONDS; letting whichever woke first take
 * the pipeline starved some of them past their deadline under load.) */
static wait_outcome wait_for_pipeline(fn_server *s, struct MHD_Connection *conn, request *req,
                                      pipeline **p)
{
    wait_outcome outcome;

    if (!s->wait_head && (*p = free_pipeline(s)))
        return WAIT_GOT;
    if (req->deadline <= 0 || s->queued >= s->config.max_queue)
        return WAIT_FULL; /* no queueing, or the queue is full: refuse at once */
    queue_append(s, req);
    for (;;) {
        struct timespec until;
        double whole, now;
        if (s->wait_head == req && (*p = free_pipeline(s))) {
            outcome = WAIT_GOT;
            break;
        }
        now = fn_now_seconds();
        if (now >= req->deadline) {
            outcome = WAIT_EXPIRED;
            break;
        }
        if (client_gone(conn)) {
            outcome = WAIT_GONE;
            break;
        }
        const double wake = fmin(req->deadline, now + QUEUE_CLIENT_CHECK_SECONDS);
        until.tv_nsec = (long)(modf(wake, &whole) * 1e9);
        until.tv_sec = (time_t)whole;
        pthread_cond_timedwait(&s->pipeline_freed, &s->lock, &until);
    }
    queue_remove(s, req);
    /* The next in line may go now (another pipeline may be free too). */
    pthread_cond_broadcast(&s->pipeline_freed);
    return outcome;
}

pipeline *fn_pipeline_acquire(fn_server *s, struct MHD_Connection *conn, request *req,
                              enum MHD_Result *ret)
{
    pipeline *p = NULL;

    if (req->deadline > 0 && fn_now_seconds() >= req->deadline) {
        /* A slow upload used up the time: no inference at all. */
        *ret = fn_respond_error(conn, req, MHD_HTTP_GATEWAY_TIMEOUT, "deadline_exceeded",
                                "the request ran past its deadline (--deadline-ms)", NULL);
        return NULL;
    }
    pthread_mutex_lock(&s->lock);
    wait_outcome outcome = wait_for_pipeline(s, conn, req, &p);
    pthread_mutex_unlock(&s->lock);
    if (outcome == WAIT_GOT && client_gone(conn)) {
        /* Nobody is waiting for the answer (a client that timed out just
         * now): give the pipeline to the next request instead of spending
         * an inference on it. */
        fn_pipeline_release(s, p);
        p = NULL;
        outcome = WAIT_GONE;
    }
    pthread_mutex_lock(&s->lock);
    if (outcome == WAIT_EXPIRED)
        s->stats.queue_timeouts++;
    else if (outcome == WAIT_FULL)
        s->stats.overloaded++;
    else if (outcome == WAIT_GONE)
        s->stats.abandoned++;
    pthread_mutex_unlock(&s->lock);
    if (p)
        return p;
    switch (outcome) {
    case WAIT_EXPIRED:
        *ret = fn_respond_error(conn, req, MHD_HTTP_SERVICE_UNAVAILABLE, "queue_timeout",
                                "no inference slot freed up before the request's deadline",
                                "1");
        break;
    case WAIT_GONE:
        *ret = fn_respond_error(conn, req, 499, "client_closed_request",
                                "the client closed the connection before the inference", NULL);
        break;
    default:
        *ret = fn_respond_error(conn, req, MHD_HTTP_SERVICE_UNAVAILABLE, "overloaded",
                                "every inference slot is busy; retry shortly", "1");
        break;
    }
    return p;
}

void fn_pipeline_release(fn_server *s, pipeline *p)
{
    pthread_mutex_lock(&s->lock);
    p->busy = 0;
    /* Every waiter looks: only the oldest may take it (wait_for_pipeline). */
    pthread_cond_broadcast(&s->pipeline_freed);
    pthread_mutex_unlock(&s->lock);
}

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

json_t *fn_face_json(const facenet_face *f)
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
        return fn_respond_error(conn, req, fail.status, fail.code, fail.message, NULL);
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
            return fn_respond_error(conn, req, fail.status, fail.code, fail.message, NULL);
        }
    }
    list = json_array();
    for (size_t i = 0; i < shown; i++) {
        json_t *face = fn_face_json(&faces[i]);
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
    return fn_respond_json(conn, req, MHD_HTTP_OK, body, NULL);
}

/* The embedding of the face align_dataset_mtcnn would pick. */
int fn_embed_picked(fn_server *s, pipeline *p, const fn_blob *blob, float *embedding,
                    facenet_face *face, long *faces_seen, failure *fail)
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
        if (face)
            *face = faces[pick];
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
        return fn_respond_error(conn, req, 503, "out_of_memory", "the server is out of memory", NULL);
    b = a + s->dim;
    if (fn_embed_picked(s, p, &blobs[0], a, NULL, &seen, &fail) != 0 ||
        fn_embed_picked(s, p, &blobs[1], b, NULL, &seen, &fail) != 0) {
        free(a);
        req->faces = seen;
        return fn_respond_error(conn, req, fail.status, fail.code, fail.message, NULL);
    }
    similarity = facenet_similarity(a, b, s->dim);
    free(a);
    req->faces = seen;
    return fn_respond_json(conn, req, MHD_HTTP_OK,
                        json_pack("{s:f, s:f, s:f, s:b, s:s}", "similarity", (double)similarity,
                                  "distance", 2.0 - 2.0 * (double)similarity, "threshold",
                                  (double)s->threshold, "same", similarity >= s->threshold,
                                  "model", s->embed_info->name),
                        NULL);
}

int fn_read_body(fn_server *s, struct MHD_Connection *conn, request *req,
                 const fn_body_spec *spec, const char *usage, fn_body *out,
                 enum MHD_Result *ret)
{
    const char *code;

    if (req->over_budget) {
        *ret = fn_respond_error(conn, req, MHD_HTTP_SERVICE_UNAVAILABLE, "body_memory_exhausted",
                                "the server is receiving too many request bodies; retry later",
                                "1");
        return -1;
    }
    if (req->too_large) {
        *ret = fn_respond_error(conn, req, MHD_HTTP_CONTENT_TOO_LARGE, "body_too_large",
                                "the request body exceeds the size limit", NULL);
        return -1;
    }
    if (strncasecmp(req->content_type, "multipart/form-data", 19) == 0)
        code = fn_body_parse_multipart(req->body, req->len, req->content_type, spec, out);
    else
        code = fn_body_parse_json(req->body, req->len, spec, out);
    fn_body_release(s, req);
    if (!code)
        return 0;
    if (strcmp(code, "out_of_memory") == 0)
        *ret = fn_respond_error(conn, req, 503, code, "the server is out of memory", NULL);
    else
        *ret = fn_respond_error(conn, req, MHD_HTTP_BAD_REQUEST, code, usage, NULL);
    return -1;
}

static const char *const image_field[] = {"image"};
static const fn_body_spec image_spec = {image_field, 1, NULL, 0};

/* detect and embed: one image, faces with or without embeddings. */
static enum MHD_Result detect_or_embed(fn_server *s, struct MHD_Connection *conn, request *req,
                                       int with_embeddings)
{
    static const char usage[] =
        "expected one image: a base64 string in JSON, or a file part in multipart/form-data";
    fn_body body;
    pipeline *p;
    enum MHD_Result ret;

    if (fn_read_body(s, conn, req, &image_spec, usage, &body, &ret) != 0)
        return ret;
    if (fn_body_count(&body, 0) != 1) {
        fn_body_free(&body);
        return fn_respond_error(conn, req, MHD_HTTP_BAD_REQUEST, "missing_field", usage, NULL);
    }
    p = fn_pipeline_acquire(s, conn, req, &ret);
    if (p) {
        ret = run_detect(s, conn, req, p, fn_body_image(&body, 0, 0), with_embeddings);
        fn_pipeline_release(s, p);
    }
    fn_body_free(&body);
    return ret;
}

enum MHD_Result fn_route_detect(fn_server *s, struct MHD_Connection *conn, request *req)
{
    return detect_or_embed(s, conn, req, 0);
}

enum MHD_Result fn_route_embed(fn_server *s, struct MHD_Connection *conn, request *req)
{
    return detect_or_embed(s, conn, req, 1);
}

/* Two images (image1, image2), or with a gallery one image and a subject
 * (in collection, default "default"). */
enum MHD_Result fn_route_verify(fn_server *s, struct MHD_Connection *conn, request *req)
{
    static const char *const images[] = {"image1", "image2", "image"};
    static const char *const texts[] = {"subject", "collection"};
    static const fn_body_spec spec = {images, 3, texts, 2};
    static const char usage[] = "expected image1 and image2, or image and subject (base64 "
                                "strings in JSON, or parts in multipart/form-data)";
    fn_body body;
    pipeline *p;
    enum MHD_Result ret;
    int pair, against_subject;

    if (fn_read_body(s, conn, req, &spec, usage, &body, &ret) != 0)
        return ret;
    pair = fn_body_count(&body, 0) == 1 && fn_body_count(&body, 1) == 1 &&
           fn_body_count(&body, 2) == 0 && !body.texts[0];
    against_subject = fn_body_count(&body, 2) == 1 && body.n_images == 1 && body.texts[0];
    if (!pair && !against_subject) {
        fn_body_free(&body);
        return fn_respond_error(conn, req, MHD_HTTP_BAD_REQUEST, "missing_field", usage, NULL);
    }
    if (against_subject && !s->gallery) {
        fn_body_free(&body);
        return fn_respond_error(conn, req, MHD_HTTP_NOT_FOUND, "no_gallery",
                                "this server has no gallery (start it with --gallery)", NULL);
    }
    if (against_subject) {
        ret = fn_verify_subject(s, conn, req, fn_body_image(&body, 2, 0), body.texts[1],
                                body.texts[0]);
    } else if ((p = fn_pipeline_acquire(s, conn, req, &ret))) {
        fn_blob blobs[2] = {*fn_body_image(&body, 0, 0), *fn_body_image(&body, 1, 0)};
        ret = run_verify(s, conn, req, p, blobs);
        fn_pipeline_release(s, p);
    }
    fn_body_free(&body);
    return ret;
}
