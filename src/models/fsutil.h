/*
 * fsutil.h - small file-system helpers for the model cache.
 */
#ifndef FACENET_MODELS_FSUTIL_H
#define FACENET_MODELS_FSUTIL_H

#include <stddef.h>
#include <sys/types.h>

#include "facenet/facenet.h"

/* Longest path the model code builds. Longer ones are refused with
 * FACENET_ERR_LIMIT instead of being truncated. */
#define FN_PATH_MAX 4096

/* Write "dir/name" into buf (no doubled '/' when dir ends with one).
 * Fails with FACENET_ERR_LIMIT when it does not fit. */
facenet_status fn_join_path(char *buf, size_t buf_size, const char *dir,
                            const char *name, facenet_error *err);

/* 1 when `name` is a single path component: not empty, not "." or "..",
 * no '/'. Model file names must be, so that they cannot escape the cache
 * directory. */
int fn_is_plain_name(const char *name);

/* 1 when `path` is relative and none of its components is empty, "." or
 * "..": a tarball member name we are willing to ask tar for. */
int fn_is_safe_relative_path(const char *path);

/* mkdir -p: create `path` and its missing parents with `mode` (before the
 * umask). An existing directory is fine; an existing non-directory fails
 * with FACENET_ERR_IO naming it. */
facenet_status fn_mkdir_p(const char *path, mode_t mode, facenet_error *err);

/* rm -rf for our own temporary directories. Symbolic links are removed,
 * never followed. Best effort: errors are ignored, since it only runs on
 * clean-up paths. */
void fn_remove_tree(const char *path);

#endif
