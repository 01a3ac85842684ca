/*
 * routes_gallery.c - the gallery behind `facenet serve --gallery`:
 *
 *   POST   /v1/identify                                   (scope identify)
 *   POST   /v1/verify with image + subject                 (scope verify)
 *   GET    /v1/collections                                 (identify or admin)
 *   GET    /v1/collections/{c}/subjects?limit=&after=      (identify or admin)
 *   GET    /v1/collections/{c}/subjects/{s}/faces          (identify or admin)
 *   POST   /v1/collections/{c}/subjects/{s}/faces          (scope enroll)
 *   DELETE /v1/collections/{c}/subjects/{s}/faces/{id}     (scope enroll)
 *   DELETE /v1/collections/{c}/subjects/{s}                (scope enroll)
 *
 * Writes go through facenet_gallery_enroll/remove_*, which return only once
 * the transaction is durable, so a 2xx is sent after the data is on disk;
 * the gallery mirrors its own writes in memory, so the next read sees them.
 * Collections are derived from the subject listing (there is no collection
 * listing in the gallery API yet).
 */
#include <math.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "server/server_int.h"

#define IDENTIFY_MAX_K 100
#define LIST_DEFAULT 100
#define LIST_MAX 1000

/* A gallery error as a response. `not_found` names what a NOT_FOUND meant. */
static enum MHD_Result gallery_error(struct MHD_Connection *conn, request *req,
                                     facenet_status st, const char *not_found_code,
                                     const char *not_found_message)
{
    switch (st) {
    case FACENET_ERR_NOT_FOUND:
        return fn_respond_error(conn, req, MHD_HTTP_NOT_FOUND, not_found_code,
                                not_found_message, NULL);
    case FACENET_ERR_INVALID_ARGUMENT:
        return fn_respond_error(conn, req, MHD_HTTP_BAD_REQUEST, "invalid_argument",
                                "a collection or subject name, the metadata or a face id is "
                                "not valid (names: 1-255 bytes of UTF-8, no control "
                                "characters, no surrounding spaces; metadata: a JSON object)",
                                NULL);
    case FACENET_ERR_NO_MEMORY:
        return fn_respond_error(conn, req, 503, "out_of_memory", "the server is out of memory",
                                NULL);
    case FACENET_ERR_IO:
        return fn_respond_error(conn, req, MHD_HTTP_SERVICE_UNAVAILABLE, "gallery_unavailable",
                                "the gallery could not be read or written; retry shortly", "1");
    default:
        return fn_respond_error(conn, req, MHD_HTTP_INTERNAL_SERVER_ERROR, "internal",
                                "internal error", NULL);
    }
}

/* A strict decimal integer in [lo, hi]; NULL gives `fallback`. -1 when bad. */
static int parse_int(const char *text, long long lo, long long hi, long long fallback,
                     long long *out)
{
    char *end;
    long long v;

    if (!text) {
        *out = fallback;
        return 0;
    }
    if (*text < '0' || *text > '9')
        return -1;
    v = strtoll(text, &end, 10);
    if (*end != '\0' || v < lo || v > hi)
        return -1;
    *out = v;
    return 0;
}

/* Detect and embed the main face of one image on a pipeline of its own. */
static int embed_one(fn_server *s, struct MHD_Connection *conn, request *req,
                     const fn_blob *image, float *embedding, facenet_face *face,
                     enum MHD_Result *ret)
{
    failure fail;
    long seen = 0;
    pipeline *p = fn_pipeline_acquire(s, conn, req, ret);
    int rc;

    if (!p)
        return -1;
    rc = fn_embed_picked(s, p, image, embedding, face, &seen, &fail);
    fn_pipeline_release(s, p);
    req->faces = seen;
    if (rc != 0)
        *ret = fn_respond_error(conn, req, fail.status, fail.code, fail.message, NULL);
    return rc;
}

static int threshold_missing(fn_server *s, struct MHD_Connection *conn, request *req,
                             enum MHD_Result *ret)
{
    if (!isnan(facenet_gallery_threshold(s->gallery)))
        return 0;
    *ret = fn_respond_error(conn, req, MHD_HTTP_SERVICE_UNAVAILABLE, "no_threshold",
                            "the gallery has no open-set threshold; set one with "
                            "'facenet gallery threshold'",
                            NULL);
    return 1;
}

/* ---- identify and verify ------------------------------------------------- */

enum MHD_Result fn_route_identify(fn_server *s, struct MHD_Connection *conn, request *req)
{
    static const char *const images[] = {"image"};
    static const char *const texts[] = {"collection", "k"};
    static const fn_body_spec spec = {images, 1, texts, 2};
    static const char usage[] = "expected one image (base64 in JSON, or a file part in "
                                "multipart/form-data), and optionally collection and k (1-100)";
    facenet_gallery_search_options options;
    facenet_gallery_match matches[IDENTIFY_MAX_K];
    size_t n = 0;
    facenet_face face;
    facenet_error err;
    facenet_status st;
    fn_body body;
    long long k;
    float *query = NULL;
    enum MHD_Result ret;
    json_t *list, *identity = json_null();

    if (fn_read_body(s, conn, req, &spec, usage, &body, &ret) != 0)
        return ret;
    if (body.n_images != 1 || parse_int(body.texts[1], 1, IDENTIFY_MAX_K, 5, &k) != 0) {
        fn_body_free(&body);
        return fn_respond_error(conn, req, MHD_HTTP_BAD_REQUEST, "missing_field", usage, NULL);
    }
    if (threshold_missing(s, conn, req, &ret) ||
        !(query = malloc((size_t)s->dim * sizeof *query)) ||
        embed_one(s, conn, req, &body.images[0], query, &face, &ret) != 0) {
        if (!query && !req->status)
            ret = fn_respond_error(conn, req, 503, "out_of_memory", "the server is out of memory",
                                   NULL);
        free(query);
        fn_body_free(&body);
        return ret;
    }
    facenet_gallery_search_options_default(&options);
    options.k = (int)k;
    options.collection = body.texts[0];
    options.threads = 1; /* requests run side by side: one core each */
    st = facenet_gallery_search(s->gallery, s->model_id, query, s->dim, &options, matches, &n,
                                &err);
    sodium_memzero(query, (size_t)s->dim * sizeof *query);
    free(query);
    fn_body_free(&body);
    if (st != FACENET_OK)
        return gallery_error(conn, req, st, "collection_not_found", "no such collection");
    list = json_array();
    for (size_t i = 0; i < n; i++)
        json_array_append_new(list, json_pack("{s:s, s:s, s:f, s:b}", "collection",
                                              matches[i].collection, "subject",
                                              matches[i].subject, "score",
                                              (double)matches[i].score, "accepted",
                                              matches[i].accepted));
    if (n > 0 && matches[0].accepted)
        identity = json_pack("{s:s, s:s, s:f}", "collection", matches[0].collection, "subject",
                             matches[0].subject, "score", (double)matches[0].score);
    return fn_respond_json(conn, req, MHD_HTTP_OK,
                           json_pack("{s:b, s:o, s:o, s:f, s:o, s:s}", "unknown",
                                     json_is_null(identity), "identity", identity, "matches",
                                     list, "threshold",
                                     (double)facenet_gallery_threshold(s->gallery), "face",
                                     fn_face_json(&face), "model", s->embed_info->name),
                           NULL);
}

typedef struct count_ctx {
    size_t n;
    int64_t find; /* a template id to look for, or 0 */
    int found;
} count_ctx;

static int count_template(void *arg, const facenet_gallery_template *t)
{
    count_ctx *c = arg;

    c->n++;
    if (t->id == c->find)
        c->found = 1;
    return 0;
}

/* 1:1 against an enrolled subject, at the model's 1:1 threshold: the
 * similarity is the subject's best template's, scored exactly whatever
 * the gallery's size (facenet_gallery_score_subject). */
enum MHD_Result fn_verify_subject(fn_server *s, struct MHD_Connection *conn, request *req,
                                  const fn_blob *image, const char *collection,
                                  const char *subject)
{
    facenet_gallery_match match;
    facenet_error err;
    facenet_status st;
    float *query;
    enum MHD_Result ret;

    if (!collection)
        collection = "default";
    query = malloc((size_t)s->dim * sizeof *query);
    if (!query)
        return fn_respond_error(conn, req, 503, "out_of_memory", "the server is out of memory",
                                NULL);
    if (embed_one(s, conn, req, image, query, NULL, &ret) != 0) {
        free(query);
        return ret;
    }
    st = facenet_gallery_score_subject(s->gallery, s->model_id, query, s->dim, collection,
                                       subject, &match, &err);
    sodium_memzero(query, (size_t)s->dim * sizeof *query);
    free(query);
    if (st != FACENET_OK)
        return gallery_error(conn, req, st, "subject_not_found", "no such subject");
    return fn_respond_json(conn, req, MHD_HTTP_OK,
                           json_pack("{s:s, s:s, s:f, s:f, s:f, s:b, s:s}", "collection",
                                     collection, "subject", subject, "similarity",
                                     (double)match.score, "distance",
                                     2.0 - 2.0 * (double)match.score, "threshold",
                                     (double)s->threshold, "same", match.score >= s->threshold,
                                     "model", s->embed_info->name),
                           NULL);
}

/* ---- reading ------------------------------------------------------------- */

typedef struct collections_ctx {
    json_t *list; /* [{name, subjects, faces}] in first-seen order */
} collections_ctx;

static int add_to_collection(void *arg, const facenet_gallery_subject *subject)
{
    collections_ctx *c = arg;
    json_t *item = NULL;

    for (size_t i = 0; i < json_array_size(c->list) && !item; i++) {
        json_t *candidate = json_array_get(c->list, i);
        if (strcmp(json_string_value(json_object_get(candidate, "name")),
                   subject->collection) == 0)
            item = candidate;
    }
    if (!item) {
        item = json_pack("{s:s, s:I, s:I}", "name", subject->collection, "subjects",
                         (json_int_t)0, "faces", (json_int_t)0);
        if (!item || json_array_append_new(c->list, item) != 0)
            return 1;
    }
    json_object_set_new(item, "subjects",
                        json_integer(json_integer_value(json_object_get(item, "subjects")) + 1));
    json_object_set_new(item, "faces",
                        json_integer(json_integer_value(json_object_get(item, "faces")) +
                                     (json_int_t)subject->n_templates));
    return 0;
}

enum MHD_Result fn_route_collections(fn_server *s, struct MHD_Connection *conn, request *req)
{
    collections_ctx c = {json_array()};
    facenet_error err;
    facenet_status st;

    if (!c.list)
        return MHD_NO;
    st = facenet_gallery_list(s->gallery, NULL, add_to_collection, &c, &err);
    if (st != FACENET_OK) {
        json_decref(c.list);
        return gallery_error(conn, req, st, "not_found", "no such collection");
    }
    return fn_respond_json(conn, req, MHD_HTTP_OK, json_pack("{s:o}", "collections", c.list),
                           NULL);
}

typedef struct subjects_ctx {
    json_t *list;
    long long after, limit;
    long long next_after; /* 0: no more */
} subjects_ctx;

static int add_subject(void *arg, const facenet_gallery_subject *subject)
{
    subjects_ctx *c = arg;
    json_t *metadata = NULL, *item;

    if (subject->id <= c->after)
        return 0;
    if ((long long)json_array_size(c->list) == c->limit) {
        c->next_after = json_integer_value(
            json_object_get(json_array_get(c->list, json_array_size(c->list) - 1), "id"));
        return 1;
    }
    if (subject->metadata_json)
        metadata = json_loads(subject->metadata_json, 0, NULL);
    item = json_pack("{s:I, s:s, s:I, s:s, s:o}", "id", (json_int_t)subject->id, "name",
                     subject->name, "faces", (json_int_t)subject->n_templates, "created_at",
                     subject->created_at, "metadata", metadata ? metadata : json_null());
    return !item || json_array_append_new(c->list, item) != 0;
}

enum MHD_Result fn_route_subjects(fn_server *s, struct MHD_Connection *conn, request *req)
{
    subjects_ctx c = {NULL, 0, 0, 0};
    facenet_error err;
    facenet_status st;
    json_t *body;

    if (parse_int(MHD_lookup_connection_value(conn, MHD_GET_ARGUMENT_KIND, "limit"), 1,
                  LIST_MAX, LIST_DEFAULT, &c.limit) != 0 ||
        parse_int(MHD_lookup_connection_value(conn, MHD_GET_ARGUMENT_KIND, "after"), 0,
                  INT64_MAX, 0, &c.after) != 0)
        return fn_respond_error(conn, req, MHD_HTTP_BAD_REQUEST, "invalid_query",
                                "limit must be 1-1000 and after a subject id", NULL);
    c.list = json_array();
    if (!c.list)
        return MHD_NO;
    st = facenet_gallery_list(s->gallery, req->params[P_COLLECTION], add_subject, &c, &err);
    if (st != FACENET_OK) {
        json_decref(c.list);
        return gallery_error(conn, req, st, "collection_not_found", "no such collection");
    }
    body = json_pack("{s:s, s:o}", "collection", req->params[P_COLLECTION], "subjects", c.list);
    if (body)
        json_object_set_new(body, "next_after",
                            c.next_after ? json_integer(c.next_after) : json_null());
    return fn_respond_json(conn, req, MHD_HTTP_OK, body, NULL);
}

static int add_template(void *arg, const facenet_gallery_template *t)
{
    json_t *list = arg;

    return json_array_append_new(list, json_pack("{s:I, s:s, s:s, s:s, s:s}", "id",
                                                 (json_int_t)t->id, "model", t->model_id,
                                                 "preprocess", t->preprocess, "image_sha256",
                                                 t->image_sha256, "created_at",
                                                 t->created_at)) != 0;
}

enum MHD_Result fn_route_faces_list(fn_server *s, struct MHD_Connection *conn, request *req)
{
    json_t *list = json_array();
    facenet_error err;
    facenet_status st;

    if (!list)
        return MHD_NO;
    st = facenet_gallery_list_templates(s->gallery, req->params[P_COLLECTION],
                                        req->params[P_SUBJECT], add_template, list, &err);
    if (st != FACENET_OK) {
        json_decref(list);
        return gallery_error(conn, req, st, "subject_not_found", "no such subject");
    }
    return fn_respond_json(conn, req, MHD_HTTP_OK,
                           json_pack("{s:s, s:s, s:o}", "collection", req->params[P_COLLECTION],
                                     "subject", req->params[P_SUBJECT], "faces", list),
                           NULL);
}

/* ---- writing ------------------------------------------------------------- */

typedef struct enroll_work {
    size_t n;
    float *embeddings; /* n * dim */
    facenet_face faces[FN_BODY_MAX_IMAGES];
    char sha[FN_BODY_MAX_IMAGES][65];
    const char *digests[FN_BODY_MAX_IMAGES];
    int64_t ids[FN_BODY_MAX_IMAGES];
} enroll_work;

/* Embed every image's main face on one pipeline; all or nothing. */
static int embed_all(fn_server *s, struct MHD_Connection *conn, request *req,
                     const fn_body *body, enroll_work *w, enum MHD_Result *ret)
{
    pipeline *p = fn_pipeline_acquire(s, conn, req, ret);
    long seen = 0;
    failure fail;
    int rc = 0;

    if (!p)
        return -1;
    for (size_t i = 0; i < w->n && rc == 0; i++) {
        unsigned char digest[crypto_hash_sha256_BYTES];
        const fn_blob *image = &body->images[i];
        rc = fn_embed_picked(s, p, image, w->embeddings + i * (size_t)s->dim, &w->faces[i], &seen,
                             &fail);
        crypto_hash_sha256(digest, image->data, (unsigned long long)image->len);
        sodium_bin2hex(w->sha[i], sizeof w->sha[i], digest, sizeof digest);
        w->digests[i] = w->sha[i];
    }
    fn_pipeline_release(s, p);
    req->faces = seen;
    if (rc != 0)
        *ret = fn_respond_error(conn, req, fail.status, fail.code, fail.message, NULL);
    return rc;
}

/* Enroll the main face of each image (1-8) as a template of the subject,
 * creating it (with optional metadata) when new. An image already enrolled
 * for this subject (same SHA-256) is not added twice, so a retried request
 * is harmless. 201 once the templates are durable. */
enum MHD_Result fn_route_faces_enroll(fn_server *s, struct MHD_Connection *conn, request *req)
{
    static const char *const images[] = {"image"};
    static const char *const texts[] = {"metadata"};
    static const fn_body_spec spec = {images, 1, texts, 1};
    static const char usage[] = "expected 1-8 images (JSON: image as a base64 string or an "
                                "array; multipart: image file parts), and optionally "
                                "metadata: a JSON object";
    facenet_gallery_enrollment e;
    facenet_error err;
    facenet_status st;
    enroll_work w;
    fn_body body;
    enum MHD_Result ret;
    json_t *list;

    if (fn_read_body(s, conn, req, &spec, usage, &body, &ret) != 0)
        return ret;
    memset(&w, 0, sizeof w);
    w.n = body.n_images;
    if (w.n == 0) {
        fn_body_free(&body);
        return fn_respond_error(conn, req, MHD_HTTP_BAD_REQUEST, "missing_field", usage, NULL);
    }
    w.embeddings = malloc(w.n * (size_t)s->dim * sizeof *w.embeddings);
    if (!w.embeddings) {
        fn_body_free(&body);
        return fn_respond_error(conn, req, 503, "out_of_memory", "the server is out of memory",
                                NULL);
    }
    if (embed_all(s, conn, req, &body, &w, &ret) != 0) {
        free(w.embeddings);
        fn_body_free(&body);
        return ret;
    }
    if (req->deadline > 0 && fn_now_seconds() > req->deadline) {
        /* Out of time: refuse before the write, never after it. */
        free(w.embeddings);
        fn_body_free(&body);
        return fn_respond_error(conn, req, MHD_HTTP_GATEWAY_TIMEOUT, "deadline_exceeded",
                                "the request ran past its deadline (--deadline-ms); nothing "
                                "was enrolled",
                                NULL);
    }
    memset(&e, 0, sizeof e);
    e.collection = req->params[P_COLLECTION];
    e.subject = req->params[P_SUBJECT];
    e.metadata_json = body.texts[0];
    e.model_id = s->model_id;
    e.preprocess = s->preprocess;
    e.embeddings = w.embeddings;
    e.n = w.n;
    e.image_sha256 = w.digests;
    e.skip_existing = 1;
    st = facenet_gallery_enroll(s->gallery, &e, w.ids, &err);
    sodium_memzero(w.embeddings, w.n * (size_t)s->dim * sizeof *w.embeddings);
    free(w.embeddings);
    fn_body_free(&body);
    if (st != FACENET_OK)
        return gallery_error(conn, req, st, "not_found", "not found");
    req->committed = 1;
    list = json_array();
    for (size_t i = 0; i < w.n; i++) {
        json_t *face = fn_face_json(&w.faces[i]);
        json_object_set_new(face, "id", json_integer((json_int_t)w.ids[i]));
        json_array_append_new(list, face);
    }
    return fn_respond_json(conn, req, MHD_HTTP_CREATED,
                           json_pack("{s:s, s:s, s:o}", "collection", req->params[P_COLLECTION],
                                     "subject", req->params[P_SUBJECT], "faces", list),
                           NULL);
}

enum MHD_Result fn_route_face_delete(fn_server *s, struct MHD_Connection *conn, request *req)
{
    count_ctx c = {0, 0, 0};
    long long id;
    facenet_error err;
    facenet_status st;

    if (parse_int(req->params[P_FACE], 1, INT64_MAX, 0, &id) != 0)
        return fn_respond_error(conn, req, MHD_HTTP_NOT_FOUND, "face_not_found",
                                "no such face", NULL);
    /* A face id is global in the gallery: only delete it through the
     * subject it belongs to. */
    c.find = id;
    st = facenet_gallery_list_templates(s->gallery, req->params[P_COLLECTION],
                                        req->params[P_SUBJECT], count_template, &c, &err);
    if (st != FACENET_OK)
        return gallery_error(conn, req, st, "subject_not_found", "no such subject");
    if (!c.found)
        return fn_respond_error(conn, req, MHD_HTTP_NOT_FOUND, "face_not_found",
                                "no such face", NULL);
    st = facenet_gallery_remove_template(s->gallery, id, &err);
    if (st != FACENET_OK)
        return gallery_error(conn, req, st, "face_not_found", "no such face");
    req->committed = 1;
    return fn_respond_json(conn, req, MHD_HTTP_OK,
                           json_pack("{s:s, s:s, s:I}", "collection", req->params[P_COLLECTION],
                                     "subject", req->params[P_SUBJECT], "deleted_face",
                                     (json_int_t)id),
                           NULL);
}

/* DELETE /v1/collections/{collection}: every subject and face in it, in one
 * transaction (facenet_gallery_remove_collection purges the log too). */
enum MHD_Result fn_route_collection_delete(fn_server *s, struct MHD_Connection *conn,
                                           request *req)
{
    size_t subjects = 0, faces = 0;
    facenet_error err;
    facenet_status st = facenet_gallery_remove_collection(s->gallery, req->params[P_COLLECTION],
                                                          &subjects, &faces, &err);

    if (st != FACENET_OK)
        return gallery_error(conn, req, st, "collection_not_found", "no such collection");
    req->committed = 1;
    return fn_respond_json(conn, req, MHD_HTTP_OK,
                           json_pack("{s:s, s:I, s:I}", "collection", req->params[P_COLLECTION],
                                     "deleted_subjects", (json_int_t)subjects, "deleted_faces",
                                     (json_int_t)faces),
                           NULL);
}

enum MHD_Result fn_route_subject_delete(fn_server *s, struct MHD_Connection *conn,
                                        request *req)
{
    size_t removed = 0;
    facenet_error err;
    facenet_status st = facenet_gallery_remove_subject(s->gallery, req->params[P_COLLECTION],
                                                       req->params[P_SUBJECT], &removed, &err);

    if (st != FACENET_OK)
        return gallery_error(conn, req, st, "subject_not_found", "no such subject");
    req->committed = 1;
    return fn_respond_json(conn, req, MHD_HTTP_OK,
                           json_pack("{s:s, s:s, s:I}", "collection", req->params[P_COLLECTION],
                                     "subject", req->params[P_SUBJECT], "deleted_faces",
                                     (json_int_t)removed),
                           NULL);
}
