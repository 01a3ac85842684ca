/*
 * body.h - parse a JSON request body carrying base64 images.
 *
 * Kept apart from the HTTP code so that a fuzz target can drive it with
 * arbitrary bytes.
 */
#ifndef FACENET_SERVER_BODY_H
#define FACENET_SERVER_BODY_H

#include <stddef.h>
#include <stdint.h>

typedef struct fn_blob {
    uint8_t *data; /* owned; free() */
    size_t len;
} fn_blob;

/* The body must be a JSON object whose members `names[0..n)` are strings
 * of standard base64 (padding optional, whitespace ignored). On success
 * returns NULL and fills out[0..n) (free each .data); on failure returns
 * a static, stable error code ("invalid_json", "missing_field",
 * "invalid_base64", "out_of_memory") and leaves nothing allocated. The
 * error never contains any of the input. */
const char *fn_body_images(const char *body, size_t len, const char *const *names, size_t n,
                           fn_blob *out);

void fn_blobs_free(fn_blob *blobs, size_t n);

#endif
