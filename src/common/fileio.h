/*
 * fileio.h - whole-file reads with a size cap, and SHA-256 helpers.
 */
#ifndef FACENET_COMMON_FILEIO_H
#define FACENET_COMMON_FILEIO_H

#include <stddef.h>
#include <stdint.h>

#include "facenet/facenet.h"

/* Read all of `path` into a fresh malloc'd buffer (caller frees). Files
 * larger than max_bytes are refused with FACENET_ERR_LIMIT before reading.
 * A missing file gives FACENET_ERR_NOT_FOUND. */
facenet_status fn_read_file(const char *path, size_t max_bytes,
                            uint8_t **data, size_t *size, facenet_error *err);

/* SHA-256 of a buffer as 64 lowercase hex digits plus NUL. */
void fn_sha256_hex(const uint8_t *data, size_t size, char hex[65]);

/* SHA-256 of a file, streamed. */
facenet_status fn_sha256_file(const char *path, char hex[65],
                              facenet_error *err);

/* Constant-time comparison of two hex digests (case-insensitive input is
 * not accepted: both must be lowercase, 64 digits). Returns 1 if equal. */
int fn_digest_equal(const char *a, const char *b);

#endif
