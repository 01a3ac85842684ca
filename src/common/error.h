/*
 * error.h - internal helpers to fill a facenet_error.
 *
 * Every module reports failures the same way: return a facenet_status and,
 * when the caller passed an error struct, write a message that names the
 * thing at fault. Use fn_fail() so the two never disagree.
 */
#ifndef FACENET_COMMON_ERROR_H
#define FACENET_COMMON_ERROR_H

#include "facenet/facenet.h"

#if defined(__GNUC__)
#define FN_PRINTF(a, b) __attribute__((format(printf, a, b)))
#else
#define FN_PRINTF(a, b)
#endif

/* Write `code` and a printf-style message into err (if not NULL). */
void fn_set_error(facenet_error *err, facenet_status code, const char *fmt,
                  ...) FN_PRINTF(3, 4);

/* fn_set_error, then evaluate to `code`, so callers can write
 * `return fn_fail(err, FACENET_ERR_FORMAT, ...);`. A macro rather than a
 * function so that static analysers see the failing status returned
 * (`code` must have no side effects). */
#define fn_fail(err, code, ...) fn_status_of((fn_set_error((err), (code), __VA_ARGS__), (code)))

/* Identity; lets fn_fail be used as a statement without an unused-value
 * warning. */
static inline facenet_status fn_status_of(facenet_status status)
{
    return status;
}

/* Prefix an existing message with context ("loading pnet.tflite: ..."). */
void fn_error_prefix(facenet_error *err, const char *fmt, ...) FN_PRINTF(2, 3);

/* Reset err to FACENET_OK with an empty message. */
void fn_error_clear(facenet_error *err);

#endif
