#include "common/error.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

const char *facenet_strerror(facenet_status status)
{
    switch (status) {
    case FACENET_OK: return "success";
    case FACENET_ERR_INVALID_ARGUMENT: return "invalid argument";
    case FACENET_ERR_NO_MEMORY: return "out of memory";
    case FACENET_ERR_IO: return "input/output error";
    case FACENET_ERR_FORMAT: return "malformed or truncated data";
    case FACENET_ERR_UNSUPPORTED: return "unsupported feature";
    case FACENET_ERR_INTEGRITY: return "integrity check failed";
    case FACENET_ERR_LIMIT: return "input exceeds a configured limit";
    case FACENET_ERR_NOT_FOUND: return "not found";
    case FACENET_ERR_SHAPE: return "tensor shapes do not match";
    case FACENET_ERR_EXTERNAL: return "external program failed";
    case FACENET_ERR_INTERNAL: return "internal error";
    }
    return "unknown status";
}

void fn_set_error(facenet_error *err, facenet_status code, const char *fmt, ...)
{
    if (err) {
        va_list ap;
        err->code = code;
        va_start(ap, fmt);
        vsnprintf(err->message, sizeof err->message, fmt, ap);
        va_end(ap);
    }
}

void fn_error_prefix(facenet_error *err, const char *fmt, ...)
{
    char prefix[FACENET_ERROR_MESSAGE_MAX];
    char old[FACENET_ERROR_MESSAGE_MAX];
    va_list ap;

    if (!err)
        return;
    va_start(ap, fmt);
    vsnprintf(prefix, sizeof prefix, fmt, ap);
    va_end(ap);
    memcpy(old, err->message, sizeof old);
    old[sizeof old - 1] = '\0';
    /* Truncation is acceptable: the message stays NUL-terminated. */
    size_t used = strlen(prefix);
    if (used > sizeof err->message - 3)
        used = sizeof err->message - 3;
    memcpy(err->message, prefix, used);
    memcpy(err->message + used, ": ", 2);
    used += 2;
    size_t rest = strlen(old);
    if (rest > sizeof err->message - 1 - used)
        rest = sizeof err->message - 1 - used;
    memcpy(err->message + used, old, rest);
    err->message[used + rest] = '\0';
}

void fn_error_clear(facenet_error *err)
{
    if (err) {
        err->code = FACENET_OK;
        err->message[0] = '\0';
    }
}
