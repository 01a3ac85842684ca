/*
 * index.h - the in-memory template matrix and exact top-k search.
 *
 * Rows are unit vectors (cosine similarity = dot product), stored row-major
 * in one aligned block, with an optional int8 copy (one scale per row) that
 * is a quarter of the size. Search returns the best k subjects, each scored
 * by its best template: a subject with many templates takes one slot.
 *
 * The int8 path scans the int8 copy for the best 4k (at least 32)
 * subjects, then rescores each one's best template in float: reported
 * scores are always exact float dot products.
 *
 * Not thread-safe for writes; any number of concurrent searches are fine.
 * Freeing wipes the matrix (the rows are decrypted biometric data).
 */
#ifndef FACENET_GALLERY_INDEX_H
#define FACENET_GALLERY_INDEX_H

#include <stddef.h>
#include <stdint.h>

typedef struct gallery_index {
    int dim;
    int with_int8;
    size_t n, cap;
    float *vec;            /* cap * dim                                   */
    int8_t *q8;            /* cap * dim, or NULL                          */
    float *q8_scale;       /* cap, or NULL                                */
    int64_t *template_id;  /* cap                                         */
    int64_t *subject_id;   /* cap                                         */
    int64_t *collection_id; /* cap                                        */
} gallery_index;

typedef struct gallery_hit {
    float score;
    int64_t subject_id;
    size_t row;
} gallery_hit;

typedef struct gallery_query {
    const float *vector;   /* dim floats, unit norm                       */
    int k;                 /* 1..GALLERY_MAX_K                            */
    int64_t collection_id; /* 0: all                                      */
    int use_int8;          /* ignored without an int8 copy                */
    int threads;           /* 0: automatic                                */
} gallery_query;

#define GALLERY_MAX_K 1000

/* Returns 0, or -1 when out of memory. */
int gallery_index_init(gallery_index *ix, int dim, int with_int8);
void gallery_index_free(gallery_index *ix);
int gallery_index_reserve(gallery_index *ix, size_t n);

/* Append one row (copied and L2-normalised). Returns 0, or -1 when out of
 * memory or when the vector is zero or not finite. */
int gallery_index_add(gallery_index *ix, const float *v, int64_t template_id,
                      int64_t subject_id, int64_t collection_id);

/* Remove rows; the last row moves into each hole, which is wiped. */
size_t gallery_index_remove_subject(gallery_index *ix, int64_t subject_id);
int gallery_index_remove_template(gallery_index *ix, int64_t template_id);

/* Bytes held by the matrix, the int8 copy and the row ids. */
size_t gallery_index_memory(const gallery_index *ix);

/* The best q->k subjects, best first, into hits[q->k]; returns how many.
 * Returns (size_t)-1 when out of memory or a thread could not start. */
size_t gallery_index_search(const gallery_index *ix, const gallery_query *q,
                            gallery_hit *hits);

/* L2-normalise in place; returns 0, or -1 for a zero or non-finite
 * vector. */
int gallery_normalise(float *v, int dim);

/* Quantise a unit vector: q[i] = round(v[i] / scale), |q| <= 127. */
void gallery_quantise(const float *v, int dim, int8_t *q, float *scale);

#endif
