/*
 * gallery_internal.h - the facenet_gallery handle, shared by gallery.c
 * (open, enroll, search, remove, rekey) and gallery_io.c (export, import).
 */
#ifndef FACENET_GALLERY_INTERNAL_H
#define FACENET_GALLERY_INTERNAL_H

#include <pthread.h>
#include <stdint.h>

#include "facenet/facenet.h"
#include "gallery/index.h"
#include "gallery/seal.h"
#include "gallery/store.h"

#define GALLERY_DIM_MAX 4096
#define GALLERY_DEFAULT_COLLECTION "default"

typedef struct gallery_name_entry {
    int64_t id;
    int64_t collection_id;
    char *name;
} gallery_name_entry;

/* Rows of names sorted by id (ids only grow, so appends keep the order). */
typedef struct gallery_names {
    gallery_name_entry *e;
    size_t n, cap;
} gallery_names;

struct facenet_gallery {
    char *path;
    unsigned flags;
    gallery_store *store;
    gallery_keys *keys; /* sodium_malloc'd, read-only between changes */
    uint8_t gallery_id[GALLERY_ID_BYTES];
    char model_id[FACENET_GALLERY_MODEL_ID_MAX];
    int dim;
    float threshold;
    int64_t data_version;
    gallery_index index;
    gallery_names subjects;    /* collection_id = the subject's collection */
    gallery_names collections; /* collection_id unused                     */
    /* Worker threads for large searches, started by the first one. */
    gallery_pool *pool;
    pthread_mutex_t pool_lock;
    /* Searches take it shared; everything that touches the store or
     * changes the matrix takes it exclusively. */
    pthread_rwlock_t lock;
};

const gallery_name_entry *gallery_names_find(const gallery_names *names, int64_t id);

/* Look a collection up in memory; 0 when absent. */
int64_t gallery_collection_lookup(const facenet_gallery *g, const char *name);

/* Rebuild the matrix and the name tables from the store, replacing the
 * current ones only on success. Caller holds the lock exclusively. */
facenet_status gallery_reload(facenet_gallery *g, facenet_error *err);

/* Find or create a subject (tagging a new one) inside the caller's write
 * transaction. *created is set when it is new. */
facenet_status gallery_subject_ensure(facenet_gallery *g, const char *collection,
                                      const char *subject, const char *metadata,
                                      int64_t *collection_id, int64_t *subject_id, int *created,
                                      facenet_error *err);

/* Insert and seal one template (normalised v) inside the caller's write
 * transaction. */
facenet_status gallery_template_add(facenet_gallery *g, int64_t subject_id, const float *v,
                                    const char *preprocess, const char *image_sha256,
                                    int64_t *template_id, facenet_error *err);

/* Check a template row's model and open it into out[dim]. */
facenet_status gallery_open_row(facenet_gallery *g, const gallery_template_row *r, float *out,
                                facenet_error *err);

#endif
