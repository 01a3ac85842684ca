/*
 * fuzz_server_body.c - libFuzzer target for the request body parsers of
 * `facenet serve` (src/server/body.c: JSON with base64 images;
 * src/server/multipart.c: multipart/form-data, with the input's first line
 * as the Content-Type header and the rest as the body) and for the
 * API key check on the Authorization header's value.
 *
 * Contract checked besides crashes and leaks: a failure is one of the
 * documented static codes with nothing allocated; a success gives
 * non-empty images no longer than the body could hold, each attributed to
 * a named field, and text only in the fields the spec names.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "server/body.h"
#include "server/keys.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char *const image_names[] = {"image1", "image2", "image"};
static const char *const text_names[] = {"subject", "collection", "k", "metadata"};
static const fn_body_spec spec = {image_names, 3, text_names, 4};

static int known_code(const char *code)
{
    static const char *const codes[] = {"invalid_json",    "invalid_multipart", "invalid_field",
                                        "invalid_base64",  "too_many_images",   "out_of_memory"};
    for (size_t i = 0; i < sizeof codes / sizeof codes[0]; i++)
        if (code == codes[i] || strcmp(code, codes[i]) == 0)
            return 1;
    return 0;
}

static void check_result(const char *code, fn_body *body, size_t size)
{
    if (code) {
        if (!known_code(code))
            abort();
        if (body->n_images != 0)
            abort();
        for (size_t t = 0; t < FN_BODY_MAX_TEXTS; t++)
            if (body->texts[t])
                abort();
        return;
    }
    if (body->n_images > FN_BODY_MAX_IMAGES)
        abort();
    for (size_t i = 0; i < body->n_images; i++)
        if (!body->images[i].data || body->images[i].len == 0 || body->images[i].len > size ||
            body->image_field[i] >= spec.n_images)
            abort();
    for (size_t t = spec.n_texts; t < FN_BODY_MAX_TEXTS; t++)
        if (body->texts[t])
            abort();
    fn_body_free(body);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fn_body body;
    fn_api_key key;
    fn_keyring ring = {&key, 1};

    check_result(fn_body_parse_json((const char *)data, size, &spec, &body), &body, size);

    /* Multipart: the first line is the Content-Type header (it carries
     * the boundary), the rest the body. */
    {
        const uint8_t *newline = memchr(data, '\n', size);
        if (newline && (size_t)(newline - data) < 256) {
            char content_type[256];
            size_t n = (size_t)(newline - data);
            memcpy(content_type, data, n);
            content_type[n] = '\0';
            if (strlen(content_type) == n)
                check_result(fn_body_parse_multipart((const char *)newline + 1, size - n - 1,
                                                     content_type, &spec, &body),
                             &body, size);
        }
    }

    /* The same bytes as a presented key: never accepted by a ring whose
     * one key has an all-zero hash no input hashes to in practice. */
    memset(&key, 0, sizeof key);
    memcpy(key.id, "0123456789ab", FN_KEY_ID_LEN + 1);
    key.rate = key.burst = 1;
    key.scopes = FN_SCOPE_DETECT;
    if (fn_keyring_check(&ring, (const char *)data, size))
        abort();
    return 0;
}
