/*
 * tfjs.h - the in-memory core of the TF.js weights importer (internal).
 *
 * nn_import_tfjs() (import.h) reads shards from a directory; this core
 * takes them from a callback instead, so tests and fuzzers can hand it
 * bytes directly. Only face-api's dlib ResNet ("face_recognition_model")
 * is recognised: its tensor names are mapped onto dlib_resnet.h's
 * topology.
 */
#ifndef FACENET_NN_IMPORT_TFJS_H
#define FACENET_NN_IMPORT_TFJS_H

#include <stddef.h>
#include <stdint.h>

#include "nn/graph.h"

/* Upper bounds on what a manifest may declare; far above face-api's. */
#define TFJS_MAX_SHARD_BYTES ((size_t)64 << 20)
#define TFJS_MAX_MODEL_BYTES ((size_t)256 << 20)
#define TFJS_MAX_SHARDS 64
#define TFJS_MAX_WEIGHTS 4096
#define TFJS_MAX_PATH 255

/* Supplies the bytes of the shard called `name` (already checked to be a
 * plain file name: no '/', '\\' or ".."). On success *data is malloc'd
 * and owned by the caller of the callback. At most TFJS_MAX_SHARD_BYTES. */
typedef facenet_status (*tfjs_shard_fn)(void *ctx, const char *name,
                                        uint8_t **data, size_t *size,
                                        facenet_error *err);

facenet_status nn_import_tfjs_core(const uint8_t *manifest_json,
                                   size_t json_size, tfjs_shard_fn load,
                                   void *ctx, nn_graph **out,
                                   facenet_error *err);

/* Is `name` acceptable as a shard path (a plain, non-empty file name)? */
int tfjs_shard_name_ok(const char *name);

#endif
