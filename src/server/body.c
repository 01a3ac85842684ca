/*
 * body.c - JSON request bodies: base64 images and small text fields.
 */
#include "server/body.h"

#include <jansson.h>
#include <sodium.h>
#include <stdio.h>
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

void fn_body_free(fn_body *b)
{
    fn_blobs_free(b->images, b->n_images);
    b->n_images = 0;
    for (size_t i = 0; i < FN_BODY_MAX_TEXTS; i++) {
        free(b->texts[i]);
        b->texts[i] = NULL;
    }
}

size_t fn_body_count(const fn_body *b, size_t field)
{
    size_t n = 0;

    for (size_t i = 0; i < b->n_images; i++)
        n += b->image_field[i] == field;
    return n;
}

const fn_blob *fn_body_image(const fn_body *b, size_t field, size_t nth)
{
    for (size_t i = 0; i < b->n_images; i++)
        if (b->image_field[i] == field && nth-- == 0)
            return &b->images[i];
    return NULL;
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

static const char *add_base64_image(fn_body *b, size_t field, const json_t *value)
{
    const char *code;

    if (!json_is_string(value))
        return "invalid_field";
    if (b->n_images == FN_BODY_MAX_IMAGES)
        return "too_many_images";
    code = decode_base64(json_string_value(value), json_string_length(value),
                         &b->images[b->n_images]);
    if (code)
        return code;
    b->image_field[b->n_images++] = field;
    return NULL;
}

/* A string (without NUL inside), an integer, or an object as compact JSON. */
static const char *text_of(const json_t *value, char **out)
{
    if (json_is_string(value)) {
        size_t len = json_string_length(value);
        if (strlen(json_string_value(value)) != len)
            return "invalid_field";
        *out = strdup(json_string_value(value));
    } else if (json_is_integer(value)) {
        char buf[32];
        snprintf(buf, sizeof buf, "%lld", (long long)json_integer_value(value));
        *out = strdup(buf);
    } else if (json_is_object(value)) {
        *out = json_dumps(value, JSON_COMPACT);
    } else {
        return "invalid_field";
    }
    return *out ? NULL : "out_of_memory";
}

static const char *read_members(const json_t *root, const fn_body_spec *spec, fn_body *out)
{
    const char *code = NULL;

    for (size_t f = 0; f < spec->n_images && !code; f++) {
        const json_t *value = json_object_get(root, spec->images[f]);
        size_t i;
        const json_t *item;
        if (!value || json_is_null(value))
            continue;
        if (!json_is_array(value)) {
            code = add_base64_image(out, f, value);
            continue;
        }
        if (json_array_size(value) == 0)
            code = "invalid_field";
        json_array_foreach(value, i, item)
        {
            if (code)
                break;
            code = add_base64_image(out, f, item);
        }
    }
    for (size_t t = 0; t < spec->n_texts && !code; t++) {
        const json_t *value = json_object_get(root, spec->texts[t]);
        if (value && !json_is_null(value))
            code = text_of(value, &out->texts[t]);
    }
    return code;
}

const char *fn_body_parse_json(const char *body, size_t len, const fn_body_spec *spec,
                               fn_body *out)
{
    json_error_t jerr;
    json_t *root;
    const char *code;

    memset(out, 0, sizeof *out);
    if (len == 0 || spec->n_texts > FN_BODY_MAX_TEXTS)
        return "invalid_json";
    root = json_loadb(body, len, JSON_REJECT_DUPLICATES, &jerr);
    if (!root)
        return "invalid_json";
    code = json_is_object(root) ? read_members(root, spec, out) : "invalid_json";
    json_decref(root);
    if (code)
        fn_body_free(out);
    return code;
}
