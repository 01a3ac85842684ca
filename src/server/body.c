/*
 * body.c - JSON bodies with base64 images.
 */
#include "server/body.h"

#include <jansson.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>

void fn_blobs_free(fn_blob *blobs, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        free(blobs[i].data);
        blobs[i].data = NULL;
        blobs[i].len = 0;
    }
}

static const char *decode_base64(const char *text, size_t len, fn_blob *out)
{
    /* Padding is optional, so try the padded variant first and fall back
     * to the unpadded one; both ignore whitespace (line-wrapped base64). */
    static const int variants[] = {sodium_base64_VARIANT_ORIGINAL,
                                   sodium_base64_VARIANT_ORIGINAL_NO_PADDING};
    size_t cap = len / 4 * 3 + 3;
    const char *end = NULL;

    if (len == 0)
        return "invalid_base64";
    out->data = malloc(cap);
    if (!out->data)
        return "out_of_memory";
    for (size_t v = 0; v < sizeof variants / sizeof variants[0]; v++) {
        size_t bin_len = 0;
        if (sodium_base642bin(out->data, cap, text, len, " \t\r\n", &bin_len, &end,
                              variants[v]) == 0 &&
            end == text + len && bin_len > 0) {
            out->len = bin_len;
            return NULL;
        }
    }
    free(out->data);
    out->data = NULL;
    return "invalid_base64";
}

const char *fn_body_images(const char *body, size_t len, const char *const *names, size_t n,
                           fn_blob *out)
{
    json_error_t jerr;
    json_t *root;
    const char *code = NULL;

    for (size_t i = 0; i < n; i++) {
        out[i].data = NULL;
        out[i].len = 0;
    }
    if (len == 0)
        return "invalid_json";
    root = json_loadb(body, len, JSON_REJECT_DUPLICATES, &jerr);
    if (!root)
        return "invalid_json";
    if (!json_is_object(root))
        code = "invalid_json";
    for (size_t i = 0; i < n && !code; i++) {
        json_t *field = json_object_get(root, names[i]);
        if (!json_is_string(field))
            code = "missing_field";
        else
            code = decode_base64(json_string_value(field), json_string_length(field), &out[i]);
    }
    json_decref(root);
    if (code)
        fn_blobs_free(out, n);
    return code;
}
