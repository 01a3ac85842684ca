/*
 * index.h - the in-memory template matrix and exact top-k search.
 *
 * Rows are unit vectors (cosine similarity = dot product), stored row-major
 * in one aligned block, with optional quantised copies that are smaller to
 * scan: int8 (a quarter of the float size, one scale per row) and int4 (an
 * eighth: two values per byte). Search returns the best k subjects, each
 * scored by its best template: a subject with many templates takes one
 * slot.
 *
 * A quantised scan keeps spare candidates (the best 4k subjects, at least
 * 32, for int8; 8k and 64 for int4), then rescores each one's best
 * template in float: reported scores are always exact float dot products.
 *
 * Not thread-safe for writes; any number of concurrent searches are fine.
 * Freeing wipes the matrices (the rows are decrypted biometric data).
 */
#ifndef FACENET_GALLERY_INDEX_H
#define FACENET_GALLERY_INDEX_H

#include <stddef.h>
#include <stdint.h>

/* Quantised copies, for gallery_index_init. */
#define GALLERY_INDEX_INT8 0x1u
#define GALLERY_INDEX_INT4 0x2u

typedef struct gallery_index {
    int dim;
    unsigned copies;       /* GALLERY_INDEX_* bits                        */
    size_t n, cap;
    float *vec;            /* cap * dim                                   */
    int8_t *q8;            /* cap * dim, or NULL                          */
    float *q8_scale;       /* cap, or NULL                                */
    uint8_t *q4;           /* cap * q4_bytes: value + 8 per nibble, even
                              dimension in the low nibble; or NULL        */
    float *q4_scale;       /* cap, or NULL                                */
    size_t q4_bytes;       /* (dim + 1) / 2                               */
    int64_t *template_id;  /* cap                                         */
    int64_t *subject_id;   /* cap                                         */
    int64_t *collection_id; /* cap                                        */
} gallery_index;

typedef struct gallery_hit {
    float score;
    int64_t subject_id;
    size_t row;
} gallery_hit;

/* Which matrix a search scans. */
typedef enum gallery_scan {
    GALLERY_SCAN_FLOAT = 0, /* exact                                      */
    GALLERY_SCAN_INT8 = 1,  /* the int8 copy (float when there is none)   */
    GALLERY_SCAN_INT4 = 2,  /* the int4 copy (float when there is none)   */
    GALLERY_SCAN_AUTO = 3   /* the smallest copy there is                 */
} gallery_scan;

/* Worker threads kept for searches (see index.c): a large search runs on
 * the calling thread plus the pool's workers instead of starting threads.
 * One search uses a pool at a time; concurrent ones scan on their own
 * thread. Owned by the caller; free it only when no search is running. */
typedef struct gallery_pool gallery_pool;

/* `workers` threads besides the searching one; NULL when out of memory.
 * Fewer workers than asked (even none) when threads cannot start. */
gallery_pool *gallery_pool_create(int workers);
void gallery_pool_free(gallery_pool *pool);
int gallery_pool_size(const gallery_pool *pool);

typedef struct gallery_query {
    const float *vector;   /* dim floats, unit norm                       */
    int k;                 /* 1..GALLERY_MAX_K                            */
    int64_t collection_id; /* 0: all                                      */
    gallery_scan scan;
    int threads;           /* 0: automatic                                */
    gallery_pool *pool;    /* NULL: start threads for this search         */
} gallery_query;

#define GALLERY_MAX_K 1000
/* The largest dimension an index takes (gallery_index_init refuses more). */
#define GALLERY_INDEX_DIM_MAX 4096

/* copies: GALLERY_INDEX_* bits. Returns 0, or -1 for a bad dimension. */
int gallery_index_init(gallery_index *ix, int dim, unsigned copies);
void gallery_index_free(gallery_index *ix);
int gallery_index_reserve(gallery_index *ix, size_t n);

/* Append one row (copied and L2-normalised). Returns 0, or -1 when out of
 * memory or when the vector is zero or not finite. */
int gallery_index_add(gallery_index *ix, const float *v, int64_t template_id,
                      int64_t subject_id, int64_t collection_id);

/* Remove rows; the last row moves into each hole, which is wiped. */
size_t gallery_index_remove_subject(gallery_index *ix, int64_t subject_id);
int gallery_index_remove_template(gallery_index *ix, int64_t template_id);
size_t gallery_index_remove_collection(gallery_index *ix, int64_t collection_id);

/* Bytes held by the matrix, the quantised copies and the row ids. */
size_t gallery_index_memory(const gallery_index *ix);

/* How many threads a search with `requested` (0: automatic) would use:
 * all cores for large matrices, 1 for small ones. */
int gallery_index_threads(const gallery_index *ix, int requested);

/* The best q->k subjects, best first, into hits[q->k]; returns how many.
 * Returns (size_t)-1 when out of memory or a thread could not start. */
size_t gallery_index_search(const gallery_index *ix, const gallery_query *q,
                            gallery_hit *hits);

/* The best exact (float) score among subject_id's rows into *best (its
 * row and score); returns how many rows the subject has (0: *best is
 * untouched). A walk over the row ids plus one dot product per template of
 * the subject: cheap next to a search, and exact whatever copies exist. */
size_t gallery_index_score_subject(const gallery_index *ix, const float *v, int64_t subject_id,
                                   gallery_hit *best);

/* The first-pass score of every row (of the copy `scan` reads, before any
 * float rescoring) into scores[ix->n]; portable = 1 uses the plain C
 * kernels instead of the AVX2 ones. For tests: the kernels must agree
 * exactly. Returns 0, or -1 when out of memory. */
int gallery_index_scan_scores(const gallery_index *ix, const float *v, gallery_scan scan,
                              int portable, float *scores);

/* L2-normalise in place; returns 0, or -1 for a zero or non-finite
 * vector. */
int gallery_normalise(float *v, int dim);

/* Quantise a unit vector: q[i] = round(v[i] / scale), |q| <= 127. */
void gallery_quantise(const float *v, int dim, int8_t *q, float *scale);

/* To 4 bits: q = round(v / scale) in -7..7, stored as q + 8, two per byte
 * (even dimensions in the low nibble; an odd dimension pads with 8 = 0). */
void gallery_quantise4(const float *v, int dim, uint8_t *q, float *scale);

#endif
