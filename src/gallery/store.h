/*
 * store.h - where a gallery's rows live, behind a small interface.
 *
 * The gallery layer (gallery.c) does all cryptography and validation; a
 * store only keeps rows: metadata (key -> blob), collections, subjects and
 * templates, inside transactions. SQLite (store_sqlite.c) is the embedded
 * implementation; a server database (PostgreSQL shared by replicas) can
 * implement the same operations without touching callers.
 *
 * Rules every implementation follows:
 *   - Writes happen only between begin(write=1) and commit/rollback, and a
 *     commit returns only once the transaction is durable.
 *   - Ids are positive and never reused (so a sealed row bound to its id can
 *     never be confused with a later row).
 *   - Deleting a subject deletes its templates in the same transaction, and
 *     purge() makes deleted bytes unrecoverable from the store's files.
 *   - Row pointers handed to callbacks are valid only during the callback.
 *   - A store handle is used by one thread at a time (gallery.c locks).
 */
#ifndef FACENET_GALLERY_STORE_H
#define FACENET_GALLERY_STORE_H

#include <stddef.h>
#include <stdint.h>

#include "facenet/facenet.h"

typedef struct gallery_store gallery_store;

typedef struct gallery_subject_row {
    int64_t id;
    int64_t collection_id;
    const char *collection;
    const char *name;
    const char *metadata; /* NULL when none */
    const uint8_t *tag;
    size_t tag_len;
    const char *created_at;
    int64_t n_templates;
} gallery_subject_row;

typedef struct gallery_template_row {
    int64_t id;
    int64_t subject_id;
    const char *model_id;
    const char *preprocess;
    const char *image_sha256; /* "" when unknown */
    const char *created_at;
    const uint8_t *sealed;
    size_t sealed_len;
} gallery_template_row;

typedef struct gallery_collection_row {
    int64_t id;
    const char *name;
    const char *created_at;
    int64_t n_subjects, n_templates;
} gallery_collection_row;

/* Return non-zero to stop the walk (the walk then returns FACENET_OK). */
typedef int (*gallery_collection_fn)(void *ctx, const gallery_collection_row *row);
typedef int (*gallery_subject_fn)(void *ctx, const gallery_subject_row *row);
typedef int (*gallery_template_fn)(void *ctx, const gallery_template_row *row);

typedef struct gallery_store_stats {
    int schema_version;
    int64_t collections, subjects, templates;
    int64_t file_bytes, wal_bytes;
    int64_t page_size, page_count, free_pages;
} gallery_store_stats;

typedef struct gallery_store_ops {
    const char *backend;
    void (*close)(gallery_store *s);

    facenet_status (*begin)(gallery_store *s, int write, facenet_error *err);
    facenet_status (*commit)(gallery_store *s, facenet_error *err);
    void (*rollback)(gallery_store *s);

    /* FACENET_ERR_NOT_FOUND when the key is absent; *value is malloc'd. */
    facenet_status (*meta_get)(gallery_store *s, const char *key, uint8_t **value,
                               size_t *len, facenet_error *err);
    facenet_status (*meta_set)(gallery_store *s, const char *key, const void *value,
                               size_t len, facenet_error *err);

    /* FACENET_ERR_NOT_FOUND when absent and create is 0. */
    facenet_status (*collection_id)(gallery_store *s, const char *name, int create,
                                    int64_t *id, facenet_error *err);
    /* Collections by id, with their subject and template counts. */
    facenet_status (*collections)(gallery_store *s, gallery_collection_fn fn, void *ctx,
                                  facenet_error *err);
    /* FACENET_ERR_NOT_FOUND when absent. The caller re-tags the subjects
     * (their tags cover the collection name) in the same transaction. */
    facenet_status (*collection_rename)(gallery_store *s, int64_t id, const char *name,
                                        facenet_error *err);
    /* Deletes its subjects and their templates in the same transaction. */
    facenet_status (*collection_delete)(gallery_store *s, int64_t id, facenet_error *err);

    facenet_status (*subject_find)(gallery_store *s, int64_t collection_id, const char *name,
                                   int64_t *id, facenet_error *err);
    /* Inserted with an empty tag: set it with subject_set_tag before commit. */
    facenet_status (*subject_insert)(gallery_store *s, int64_t collection_id, const char *name,
                                     const char *metadata, int64_t *id, facenet_error *err);
    facenet_status (*subject_set_tag)(gallery_store *s, int64_t id, const uint8_t *tag,
                                      size_t len, facenet_error *err);
    facenet_status (*subject_delete)(gallery_store *s, int64_t id, facenet_error *err);
    /* Subjects by id; collection_id / subject_id 0 mean all. */
    facenet_status (*subjects)(gallery_store *s, int64_t collection_id, int64_t subject_id,
                               gallery_subject_fn fn, void *ctx, facenet_error *err);

    /* FACENET_ERR_NOT_FOUND when the subject has no template from that image. */
    facenet_status (*template_find)(gallery_store *s, int64_t subject_id,
                                    const char *image_sha256, int64_t *id, facenet_error *err);
    /* Inserted with an empty blob: seal with the id, then template_set_sealed. */
    facenet_status (*template_insert)(gallery_store *s, int64_t subject_id, const char *model_id,
                                      const char *preprocess, const char *image_sha256,
                                      int64_t *id, facenet_error *err);
    facenet_status (*template_set_sealed)(gallery_store *s, int64_t id, const uint8_t *blob,
                                          size_t len, facenet_error *err);
    /* FACENET_ERR_NOT_FOUND when absent; *subject_id receives its owner. */
    facenet_status (*template_delete)(gallery_store *s, int64_t id, int64_t *subject_id,
                                      facenet_error *err);
    /* Templates by id, with id > after_id, at most limit (< 0: all);
     * subject_id 0 means every subject. */
    facenet_status (*templates)(gallery_store *s, int64_t subject_id, int64_t after_id,
                                int64_t limit, gallery_template_fn fn, void *ctx,
                                facenet_error *err);

    facenet_status (*stats)(gallery_store *s, gallery_store_stats *st, facenet_error *err);
    /* The store's own structural check (SQLite: PRAGMA integrity_check). */
    facenet_status (*check)(gallery_store *s, facenet_error *err);
    /* Make deleted rows unrecoverable from the files (SQLite: checkpoint
     * and truncate the write-ahead log). */
    facenet_status (*purge)(gallery_store *s, facenet_error *err);
    /* Changes whenever another connection commits. */
    facenet_status (*data_version)(gallery_store *s, int64_t *version, facenet_error *err);
} gallery_store_ops;

struct gallery_store {
    const gallery_store_ops *ops;
};

/* Store open flags. */
#define GALLERY_STORE_CREATE 0x1u
#define GALLERY_STORE_READ_ONLY 0x2u

/* Open the SQLite store at path. With GALLERY_STORE_CREATE a missing file is
 * created (mode 0600) and an empty file is initialised; *created is set to 1
 * when this call initialised the schema, so the caller writes its metadata
 * in the transaction left open (begin(write) already done). A file that is
 * not a gallery is refused with FACENET_ERR_FORMAT and never written. */
facenet_status gallery_sqlite_open(const char *path, unsigned flags, gallery_store **out,
                                   int *created, facenet_error *err);

/* The schema version this build writes. */
#define GALLERY_SCHEMA_VERSION 1

#endif
