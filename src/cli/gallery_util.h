/*
 * gallery_util.h - helpers shared by `facenet enroll`, `facenet identify`
 * and `facenet gallery ...`: keys, opening, exit codes, the face pipeline.
 */
#ifndef FACENET_CLI_GALLERY_UTIL_H
#define FACENET_CLI_GALLERY_UTIL_H

#include <stddef.h>
#include <stdint.h>

#include "facenet/facenet.h"

/* Load the key (--key-file, else $FACENET_GALLERY_KEY), open the gallery,
 * wipe the key. Prints the error; returns an exit code (0 on success). */
int gcli_open(const char *path, const char *key_file, const char *model_id, int dim,
              unsigned flags, facenet_gallery **out);

/* Gallery errors as exit codes: a wrong key, a tampered or foreign file and
 * a missing gallery are bad input (4), not a model problem (3). */
int gcli_exit_code(facenet_status status);
int gcli_report(const facenet_error *err);

/* A detector and an embedder, plus the model id galleries record. */
typedef struct gcli_pipeline {
    facenet_detector *det;
    facenet_embedder *emb;
    char model_id[FACENET_GALLERY_MODEL_ID_MAX];
    char preprocess[64];
    int dim;
    int flip;
} gcli_pipeline;

/* model_name NULL: the default embedder. Returns an exit code. */
int gcli_pipeline_open(gcli_pipeline *p, const char *model_dir, const char *model_name, int flip);
void gcli_pipeline_close(gcli_pipeline *p);

/* The manifest name in a model id ("mobilefacenet@d8ba..." -> "mobilefacenet"). */
void gcli_model_name(const char *model_id, char *buf, size_t size);

/* Read a whole image file (at most 128 MiB) and hash it. Returns an exit
 * code; *bytes is malloc'd. */
int gcli_read_image(const char *path, uint8_t **bytes, size_t *size, char sha256[65], char *why,
                    size_t why_size);

/* Decode, detect, and embed the main face (or all faces) of image bytes. On
 * success *faces / *embeddings are malloc'd (n * dim floats), *picked is
 * the main face's index. Returns an exit code; on failure `why` holds a
 * message; 1 means "no face". */
int gcli_embed_bytes(gcli_pipeline *p, const char *path, const uint8_t *bytes, size_t size,
                     int all_faces, facenet_face **faces, size_t *n_faces, int *picked,
                     float **embeddings, char *why, size_t why_size);

/* One image through the pipeline: read it, hash its bytes, detect, embed
 * the main face (or all faces). On success *faces / *embeddings are
 * malloc'd (n * dim floats), *picked is the main face's index. Returns an
 * exit code; on failure `why` holds a message. 1 means "no face". */
int gcli_embed_file(gcli_pipeline *p, const char *path, int all_faces, facenet_face **faces,
                    size_t *n_faces, int *picked, float **embeddings, char sha256[65], char *why,
                    size_t why_size);

/* Embed the main face of n images with `threads` workers (one pipeline
 * each). out receives n * dim floats, rc[i] each image's exit code (0 ok,
 * 1 no face, 4 unreadable), reported on stderr. *dim receives the model's
 * dimension and `model_id` (FACENET_GALLERY_MODEL_ID_MAX) its id; out is
 * malloc'd here. Returns an exit code: non-zero only when the models
 * cannot be loaded or memory runs out. */
int gcli_embed_many(const char *model_dir, const char *model_name, int flip,
                    char *const *paths, size_t n, int threads, const char *label, float **out,
                    int *rc, int *dim, char *model_id);

/* Progress on stderr when it is a terminal. */
void gcli_progress(const char *what, size_t done, size_t total, double elapsed, int final);
double gcli_now(void);

#endif
