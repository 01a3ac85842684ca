/*
 * import.h - model importers: bytes of a model file in, nn_graph out.
 *
 * A model file is untrusted input. Every importer checks the bounds of
 * every offset, length and index before use, never trusts a count to size
 * an allocation without checking it against the bytes that remain, and
 * fails with FACENET_ERR_FORMAT (malformed/truncated) or
 * FACENET_ERR_UNSUPPORTED (valid but not something we run, e.g. an op we
 * lack: the message names it). On success *out is a finalized graph the
 * caller owns (nn_graph_free); on failure *out is NULL.
 *
 * Importers do not check SHA-256 pins: the caller (src/nn/model.c) has
 * already done so before any byte is parsed.
 */
#ifndef FACENET_NN_IMPORT_IMPORT_H
#define FACENET_NN_IMPORT_IMPORT_H

#include <stddef.h>
#include <stdint.h>

#include "nn/graph.h"

/* TensorFlow Lite flatbuffer (float32/float16 weights; int8/uint8
 * dequantised at load). */
facenet_status nn_import_tflite(const uint8_t *data, size_t size,
                                nn_graph **out, facenet_error *err);

/* dlib serialised dlib_face_recognition_resnet_model_v1.dat (float32). */
facenet_status nn_import_dlib_dat(const uint8_t *data, size_t size,
                                  nn_graph **out, facenet_error *err);

/* TF.js layers-free weights manifest (JSON) plus its weight shards.
 * `shard_dir` is the directory the manifest's "paths" are relative to;
 * paths with '/' or ".." are refused. */
facenet_status nn_import_tfjs(const uint8_t *manifest_json, size_t json_size,
                              const char *shard_dir, nn_graph **out,
                              facenet_error *err);

#endif
