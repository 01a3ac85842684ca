/*
 * multipart.c - multipart/form-data bodies (RFC 7578), parsed strictly
 * from the buffered body.
 *
 * The whole body is already in memory and capped at --max-body, so every
 * limit here is a bound on work, not on memory the client controls: at
 * most MAX_PARTS parts, MAX_HEADER_BYTES of headers per part, names of at
 * most MAX_NAME bytes. What is accepted:
 *
 *   --BOUNDARY CRLF
 *   Content-Disposition: form-data; name="image"[; filename="..."] CRLF
 *   [other headers, ignored] CRLF
 *   CRLF
 *   data
 *   CRLF --BOUNDARY (CRLF next part | "--" end) [epilogue, ignored]
 *
 * No preamble, no transport padding after a delimiter, no obsolete line
 * folding: anything else is "invalid_multipart". Parts whose name the spec
 * does not list are skipped; file and text parts are told apart by the
 * spec (images vs texts), not by the presence of a filename.
 */
/* glibc's memmem (two-way search: linear, so that a body crafted to make
 * the delimiter search quadratic cannot). */
#define _GNU_SOURCE 1
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "server/body.h"

#define MAX_BOUNDARY 70 /* RFC 2046 */
#define MAX_PARTS 32
#define MAX_HEADER_BYTES 2048
#define MAX_NAME 64

/* RFC 2046 bchars (space allowed, but not last). */
static int boundary_char(char c)
{
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
           strchr("'()+_,-./:=? ", c) != NULL;
}

static const char *skip_spaces(const char *p)
{
    while (*p == ' ' || *p == '\t')
        p++;
    return p;
}

/* The value of parameter `param` in "type; a=b; c="d"" (header text,
 * NUL-terminated), unquoted into out[size]. 0 found, -1 absent or bad. */
static int header_param(const char *header, const char *param, char *out, size_t size)
{
    size_t plen = strlen(param);
    const char *p = strchr(header, ';');

    while (p) {
        p = skip_spaces(p + 1);
        if (strncasecmp(p, param, plen) == 0 && p[plen] == '=') {
            size_t n = 0;
            p += plen + 1;
            if (*p == '"') {
                for (p++; *p && *p != '"'; p++) {
                    if (*p == '\\' || n + 1 >= size)
                        return -1;
                    out[n++] = *p;
                }
                if (*p != '"')
                    return -1;
            } else {
                for (; *p && *p != ';' && *p != ' ' && *p != '\t'; p++) {
                    if (n + 1 >= size)
                        return -1;
                    out[n++] = *p;
                }
            }
            out[n] = '\0';
            return n > 0 ? 0 : -1;
        }
        p = strchr(p, ';');
    }
    return -1;
}

/* "--" + the boundary of the Content-Type into delim; its length or 0. */
static size_t delimiter_of(const char *content_type, char delim[MAX_BOUNDARY + 3])
{
    char boundary[MAX_BOUNDARY + 1];
    size_t n;

    if (header_param(content_type, "boundary", boundary, sizeof boundary) != 0)
        return 0;
    n = strlen(boundary);
    if (n == 0)
        return 0;
    for (size_t i = 0; i < n; i++)
        if (!boundary_char(boundary[i]))
            return 0;
    if (boundary[n - 1] == ' ')
        return 0;
    delim[0] = delim[1] = '-';
    memcpy(delim + 2, boundary, n + 1);
    return n + 2;
}

/* The form field name of one part's header block [h, h+len). */
static int part_name(const char *h, size_t len, char name[MAX_NAME])
{
    char header[MAX_HEADER_BYTES + 1];
    int found = 0;
    const char *line;

    if (len > MAX_HEADER_BYTES)
        return -1;
    memcpy(header, h, len);
    header[len] = '\0';
    if (memchr(header, '\0', len))
        return -1;
    line = header;
    while (*line) {
        char *end = strstr(line, "\r\n");
        const char *colon;
        if (!end)
            return -1;
        *end = '\0';
        colon = strchr(line, ':');
        if (!colon || colon == line || line[0] == ' ' || line[0] == '\t')
            return -1; /* not "Name: value", or obsolete folding */
        if ((size_t)(colon - line) == 19 && strncasecmp(line, "Content-Disposition", 19) == 0) {
            const char *value = skip_spaces(colon + 1);
            if (found || strncasecmp(value, "form-data", 9) != 0 ||
                (value[9] != ';' && value[9] != ' ' && value[9] != '\0') ||
                header_param(value, "name", name, MAX_NAME) != 0)
                return -1;
            found = 1;
        }
        line = end + 2;
    }
    return found ? 0 : -1;
}

static long field_index(const char *const *names, size_t n, const char *name)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(names[i], name) == 0)
            return (long)i;
    return -1;
}

/* File or text the part [data, data+len) as the spec says. */
static const char *take_part(const fn_body_spec *spec, const char *name, const char *data,
                             size_t len, fn_body *out)
{
    long i = field_index(spec->images, spec->n_images, name);

    if (i >= 0) {
        fn_blob *blob;
        if (len == 0)
            return "invalid_field";
        if (out->n_images == FN_BODY_MAX_IMAGES)
            return "too_many_images";
        blob = &out->images[out->n_images];
        blob->data = malloc(len);
        if (!blob->data)
            return "out_of_memory";
        memcpy(blob->data, data, len);
        blob->len = len;
        out->image_field[out->n_images++] = (size_t)i;
        return NULL;
    }
    i = field_index(spec->texts, spec->n_texts, name);
    if (i < 0)
        return NULL; /* not ours: skipped */
    if (out->texts[i] || memchr(data, '\0', len))
        return "invalid_field";
    out->texts[i] = malloc(len + 1);
    if (!out->texts[i])
        return "out_of_memory";
    memcpy(out->texts[i], data, len);
    out->texts[i][len] = '\0';
    return NULL;
}

static const char *parse_parts(const char *body, size_t len, const char *delim, size_t dlen,
                               const fn_body_spec *spec, fn_body *out)
{
    const char *p = body, *end = body + len;
    int parts = 0;

    if (len < dlen || memcmp(p, delim, dlen) != 0)
        return "invalid_multipart";
    p += dlen;
    for (;;) {
        const char *headers_end, *data, *next;
        char name[MAX_NAME];
        const char *code;
        if (end - p >= 2 && p[0] == '-' && p[1] == '-')
            return NULL; /* the close delimiter; the epilogue is ignored */
        if (end - p < 2 || p[0] != '\r' || p[1] != '\n' || ++parts > MAX_PARTS)
            return "invalid_multipart";
        p += 2;
        /* An empty header block is "\r\n" at once; otherwise headers end
         * with an empty line. */
        if (end - p >= 2 && p[0] == '\r' && p[1] == '\n')
            return "invalid_multipart"; /* no Content-Disposition */
        headers_end = memmem(p, (size_t)(end - p), "\r\n\r\n", 4);
        if (!headers_end || part_name(p, (size_t)(headers_end - p) + 2, name) != 0)
            return "invalid_multipart";
        data = headers_end + 4;
        /* The data runs to CRLF + delimiter. */
        next = data;
        for (;;) {
            next = memmem(next, (size_t)(end - next), delim, dlen);
            if (!next)
                return "invalid_multipart";
            if (next - data >= 2 && next[-2] == '\r' && next[-1] == '\n')
                break;
            next++;
        }
        code = take_part(spec, name, data, (size_t)(next - 2 - data), out);
        if (code)
            return code;
        p = next + dlen;
    }
}

const char *fn_body_parse_multipart(const char *body, size_t len, const char *content_type,
                                    const fn_body_spec *spec, fn_body *out)
{
    char delim[MAX_BOUNDARY + 3];
    size_t dlen;
    const char *code;

    memset(out, 0, sizeof *out);
    if (!content_type || strncasecmp(content_type, "multipart/form-data", 19) != 0 ||
        spec->n_texts > FN_BODY_MAX_TEXTS)
        return "invalid_multipart";
    dlen = delimiter_of(content_type, delim);
    if (dlen == 0)
        return "invalid_multipart";
    code = parse_parts(body, len, delim, dlen, spec, out);
    if (code)
        fn_body_free(out);
    return code;
}
