#include "gallery/names.h"

#include <jansson.h>
#include <string.h>

#include "common/error.h"

size_t gallery_utf8_char(const unsigned char *s, size_t avail, unsigned *codepoint)
{
    unsigned c = s[0], cp, min;
    size_t len;

    if (c < 0x80) {
        *codepoint = c;
        return 1;
    }
    if (c >= 0xC2 && c <= 0xDF) {
        len = 2;
        cp = c & 0x1F;
        min = 0x80;
    } else if (c >= 0xE0 && c <= 0xEF) {
        len = 3;
        cp = c & 0x0F;
        min = 0x800;
    } else if (c >= 0xF0 && c <= 0xF4) {
        len = 4;
        cp = c & 0x07;
        min = 0x10000;
    } else {
        return 0;
    }
    if (avail < len)
        return 0;
    for (size_t i = 1; i < len; i++) {
        if ((s[i] & 0xC0) != 0x80)
            return 0;
        cp = (cp << 6) | (s[i] & 0x3F);
    }
    if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
        return 0;
    *codepoint = cp;
    return len;
}

static int is_control(unsigned cp)
{
    return cp < 0x20 || (cp >= 0x7F && cp <= 0x9F);
}

facenet_status gallery_check_name(const char *name, const char *what, facenet_error *err)
{
    if (!name || !*name)
        return fn_fail(err, FACENET_ERR_INVALID_ARGUMENT, "%s is empty", what);
    size_t len = strnlen(name, FACENET_GALLERY_NAME_MAX);
    if (len >= FACENET_GALLERY_NAME_MAX)
        return fn_fail(err, FACENET_ERR_LIMIT, "%s is longer than %d bytes", what,
                       FACENET_GALLERY_NAME_MAX - 1);
    const unsigned char *s = (const unsigned char *)name;
    for (size_t i = 0; i < len;) {
        unsigned cp;
        size_t n = gallery_utf8_char(s + i, len - i, &cp);
        if (n == 0)
            return fn_fail(err, FACENET_ERR_INVALID_ARGUMENT,
                           "%s is not valid UTF-8 (byte 0x%02x at offset %zu)", what, s[i], i);
        if (is_control(cp))
            return fn_fail(err, FACENET_ERR_INVALID_ARGUMENT,
                           "%s contains a control character (U+%04X at offset %zu)", what, cp, i);
        i += n;
    }
    if (s[0] == ' ' || s[len - 1] == ' ')
        return fn_fail(err, FACENET_ERR_INVALID_ARGUMENT,
                       "%s starts or ends with a space", what);
    return FACENET_OK;
}

facenet_status gallery_check_metadata(const char *json, facenet_error *err)
{
    json_error_t jerr;
    if (!json)
        return FACENET_OK;
    size_t len = strnlen(json, FACENET_GALLERY_METADATA_MAX + 1);
    if (len > FACENET_GALLERY_METADATA_MAX)
        return fn_fail(err, FACENET_ERR_LIMIT, "subject metadata is larger than %d bytes",
                       FACENET_GALLERY_METADATA_MAX);
    /* jansson rejects invalid UTF-8 and NUL escapes by default. */
    json_t *doc = json_loadb(json, len, JSON_REJECT_DUPLICATES, &jerr);
    if (!doc)
        return fn_fail(err, FACENET_ERR_INVALID_ARGUMENT,
                       "subject metadata is not valid JSON: %s (at offset %d)", jerr.text,
                       jerr.position);
    int is_object = json_is_object(doc);
    json_decref(doc);
    if (!is_object)
        return fn_fail(err, FACENET_ERR_INVALID_ARGUMENT, "subject metadata must be a JSON object");
    return FACENET_OK;
}

facenet_status gallery_check_digest(const char *hex, facenet_error *err)
{
    if (!hex || !*hex)
        return FACENET_OK;
    size_t len = strnlen(hex, 65);
    if (len != 64)
        return fn_fail(err, FACENET_ERR_INVALID_ARGUMENT,
                       "image digest must be 64 lowercase hex digits");
    for (size_t i = 0; i < 64; i++) {
        char c = hex[i];
        if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f')))
            return fn_fail(err, FACENET_ERR_INVALID_ARGUMENT,
                           "image digest must be 64 lowercase hex digits (offset %zu)", i);
    }
    return FACENET_OK;
}

facenet_status gallery_check_label(const char *s, const char *what, int allow_empty,
                                   facenet_error *err)
{
    if (!s || (!*s && !allow_empty))
        return fn_fail(err, FACENET_ERR_INVALID_ARGUMENT, "%s is empty", what);
    size_t len = strnlen(s, FACENET_GALLERY_MODEL_ID_MAX);
    if (len >= FACENET_GALLERY_MODEL_ID_MAX)
        return fn_fail(err, FACENET_ERR_LIMIT, "%s is longer than %d bytes", what,
                       FACENET_GALLERY_MODEL_ID_MAX - 1);
    for (size_t i = 0; i < len; i++)
        if (s[i] < 0x21 || s[i] > 0x7E)
            return fn_fail(err, FACENET_ERR_INVALID_ARGUMENT,
                           "%s must be printable ASCII without spaces (offset %zu)", what, i);
    return FACENET_OK;
}
