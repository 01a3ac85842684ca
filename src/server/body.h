/*
 * body.h - parse request bodies: JSON with base64 images, and
 * multipart/form-data uploads (multipart.c).
 *
 * Kept apart from the HTTP code so that a fuzz target can drive it with
 * arbitrary bytes. Every failure is a static, stable error code that never
 * contains any of the input, and leaves nothing allocated.
 */
#ifndef FACENET_SERVER_BODY_H
#define FACENET_SERVER_BODY_H

#include <stddef.h>
#include <stdint.h>

typedef struct fn_blob {
    uint8_t *data; /* owned; free() */
    size_t len;
} fn_blob;

/* The most images one body may carry (all image fields together), and the
 * most text fields a spec may name. */
#define FN_BODY_MAX_IMAGES 8
#define FN_BODY_MAX_TEXTS 8

/* What a route reads from its body. Image fields are base64 strings (or
 * arrays of them) in JSON, file parts in multipart. Text fields are JSON
 * strings, integers or objects (an object is kept as compact JSON text),
 * or text parts in multipart. Every field is optional here: the route
 * checks which it needs. Members not named are ignored. */
typedef struct fn_body_spec {
    const char *const *images;
    size_t n_images;
    const char *const *texts;
    size_t n_texts; /* <= FN_BODY_MAX_TEXTS */
} fn_body_spec;

typedef struct fn_body {
    fn_blob images[FN_BODY_MAX_IMAGES];     /* in body order, owned */
    size_t image_field[FN_BODY_MAX_IMAGES]; /* index into spec->images */
    size_t n_images;
    char *texts[FN_BODY_MAX_TEXTS]; /* by index into spec->texts; NULL when
                                       absent; owned, NUL-terminated, no NUL
                                       inside */
} fn_body;

/* Error codes: "invalid_json", "invalid_multipart", "invalid_field" (a
 * member of the wrong type, an empty image, a duplicate text field),
 * "invalid_base64", "too_many_images", "out_of_memory". */

/* A JSON object. Returns NULL on success (free `out` with fn_body_free). */
const char *fn_body_parse_json(const char *body, size_t len, const fn_body_spec *spec,
                               fn_body *out);

/* A multipart/form-data body; `content_type` is the request's whole
 * Content-Type header value, which carries the boundary. */
const char *fn_body_parse_multipart(const char *body, size_t len, const char *content_type,
                                    const fn_body_spec *spec, fn_body *out);

void fn_body_free(fn_body *b);
/* How many images field `field` has, and its nth one. */
size_t fn_body_count(const fn_body *b, size_t field);
const fn_blob *fn_body_image(const fn_body *b, size_t field, size_t nth);

void fn_blobs_free(fn_blob *blobs, size_t n);

#endif
