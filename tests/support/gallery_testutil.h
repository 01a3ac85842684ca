/*
 * gallery_testutil.h - helpers for the gallery tests: scratch directories,
 * synthetic embeddings, raw file inspection.
 */
#ifndef FACENET_TESTS_GALLERY_TESTUTIL_H
#define FACENET_TESTS_GALLERY_TESTUTIL_H

#include <stddef.h>
#include <stdint.h>

#include "facenet/facenet.h"

#define TG_MODEL "synthetic@0123456789abcdef"
#define TG_DIM 192

/* A fresh directory under $TMPDIR (or /tmp); removed by tg_rmdir. */
char *tg_mkdtemp(void);
void tg_rmdir(char *dir); /* removes the files in it, the dir, frees */

/* dir + "/" + name, malloc'd. */
char *tg_path(const char *dir, const char *name);

/* A fixed key derived from a small seed. */
void tg_key(uint8_t key[FACENET_GALLERY_KEY_BYTES], int seed);

/* Deterministic unit embedding number `n` (the same n, the same vector). */
void tg_embedding(float *v, int dim, uint64_t n);

/* The same vector plus noise at roughly the given cosine similarity. */
void tg_noisy(const float *v, float *out, int dim, float cosine, uint64_t seed);

/* Whole file, malloc'd (NULL and *size 0 when missing). */
uint8_t *tg_read(const char *path, size_t *size);
int tg_write(const char *path, const void *data, size_t size);
/* SHA-256 hex of a file ("" when missing). */
void tg_file_sha(const char *path, char hex[65]);

/* Does `needle` occur in the file, or in its -wal / -shm companions? */
int tg_file_contains(const char *path, const void *needle, size_t len);

/* Open a gallery with tg_key(seed) (dies on failure); a new one gets the
 * threshold 0.5. */
facenet_gallery *tg_open(const char *path, int seed, unsigned flags);

/* Enroll n embeddings tg_embedding(first..first+n) for one subject; returns
 * the status. */
facenet_status tg_enroll(facenet_gallery *g, const char *subject, uint64_t first, size_t n,
                         int64_t *ids, facenet_error *err);

/* Number of subjects and templates as the store reports them. */
void tg_counts(facenet_gallery *g, size_t *subjects, size_t *templates);

/* Run one SQL statement on the file directly (tampering); returns 0. */
int tg_sql(const char *path, const char *sql);

#endif
