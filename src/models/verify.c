/*
 * verify.c - compare model files with their pinned SHA-256.
 *
 * This only hashes bytes: nothing here parses a model, so a hostile file
 * is harmless until it has matched its pin.
 */
#include <errno.h>
#include <string.h>
#include <sys/stat.h>

#include "common/error.h"
#include "common/fileio.h"
#include "models/fsutil.h"
#include "models/models.h"

#define FETCH_HINT "run 'facenet models fetch' to "

facenet_status fn_model_file_verify(const char *dir, const char *file_name,
                                    const char *expected_sha256,
                                    facenet_error *err)
{
    char path[FN_PATH_MAX];
    char actual[65];
    struct stat st;
    facenet_status status;

    if (!dir || !dir[0] || !expected_sha256)
        return fn_fail(err, FACENET_ERR_INVALID_ARGUMENT,
                       "verify: no directory or no expected hash");
    if (!fn_is_plain_name(file_name))
        return fn_fail(err, FACENET_ERR_INVALID_ARGUMENT,
                       "verify: model file name '%s' is not a plain file name",
                       file_name ? file_name : "(null)");
    status = fn_join_path(path, sizeof path, dir, file_name, err);
    if (status != FACENET_OK)
        return status;

    if (stat(path, &st) != 0) {
        if (errno == ENOENT || errno == ENOTDIR)
            return fn_fail(err, FACENET_ERR_NOT_FOUND,
                           "%s is missing (expected sha256 %s); " FETCH_HINT "download it",
                           path, expected_sha256);
        return fn_fail(err, FACENET_ERR_IO, "%s: %s", path, strerror(errno));
    }
    if (!S_ISREG(st.st_mode))
        return fn_fail(err, FACENET_ERR_INTEGRITY,
                       "%s is not a regular file (expected sha256 %s); remove it and "
                       FETCH_HINT "download it", path, expected_sha256);

    status = fn_sha256_file(path, actual, err);
    if (status != FACENET_OK)
        return status;
    if (!fn_digest_equal(actual, expected_sha256))
        return fn_fail(err, FACENET_ERR_INTEGRITY,
                       "%s is truncated or altered (%lld bytes): expected sha256 %s, "
                       "actual sha256 %s; " FETCH_HINT "replace it",
                       path, (long long)st.st_size, expected_sha256, actual);
    return FACENET_OK;
}

facenet_status facenet_model_verify(const char *dir,
                                    const facenet_model_info *info,
                                    facenet_error *err)
{
    facenet_status status;

    if (!info || !info->file_name || !info->sha256)
        return fn_fail(err, FACENET_ERR_INVALID_ARGUMENT, "verify: no model given");
    status = fn_model_file_verify(dir, info->file_name, info->sha256, err);
    if (status != FACENET_OK || !info->extra_file)
        return status;
    if (!info->extra_sha256)
        return fn_fail(err, FACENET_ERR_INTERNAL,
                       "manifest entry %s has an extra file but no hash for it", info->name);
    return fn_model_file_verify(dir, info->extra_file, info->extra_sha256, err);
}
