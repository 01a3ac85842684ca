/*
 * cache.c - where the model files live.
 */
#include <stdio.h>
#include <stdlib.h>

#include "common/error.h"
#include "facenet/facenet.h"

static int is_set(const char *value)
{
    return value && value[0];
}

static facenet_status write_dir(char *buf, size_t buf_size, const char *base,
                                const char *suffix, const char *source,
                                facenet_error *err)
{
    int n = snprintf(buf, buf_size, "%s%s", base, suffix);

    if (n < 0 || (size_t)n >= buf_size) {
        buf[0] = '\0';
        return fn_fail(err, FACENET_ERR_LIMIT,
                       "model directory from %s (%s%s) does not fit in %zu bytes",
                       source, base, suffix, buf_size);
    }
    return FACENET_OK;
}

facenet_status facenet_model_dir(char *buf, size_t buf_size, facenet_error *err)
{
    const char *explicit_dir = getenv("FACENET_MODEL_DIR");
    const char *xdg = getenv("XDG_CACHE_HOME");
    const char *home = getenv("HOME");

    if (!buf || buf_size == 0)
        return fn_fail(err, FACENET_ERR_INVALID_ARGUMENT,
                       "facenet_model_dir: no output buffer");
    buf[0] = '\0';
    if (is_set(explicit_dir))
        return write_dir(buf, buf_size, explicit_dir, "", "FACENET_MODEL_DIR", err);
    /* The XDG base directory spec says relative values must be ignored. */
    if (is_set(xdg) && xdg[0] == '/')
        return write_dir(buf, buf_size, xdg, "/facenet/models", "XDG_CACHE_HOME", err);
    if (is_set(home))
        return write_dir(buf, buf_size, home, "/.cache/facenet/models", "HOME", err);
    return fn_fail(err, FACENET_ERR_NOT_FOUND,
                   "no model directory: set FACENET_MODEL_DIR (or XDG_CACHE_HOME or HOME)");
}
