/*
 * store_sqlite.c - the embedded gallery store: one SQLite file in WAL mode.
 *
 * Settings, and why:
 *   - journal_mode=WAL: readers (identify) never block the writer (enroll)
 *     and the writer never blocks readers.
 *   - synchronous=FULL: each commit fsyncs the log, so an enrollment that
 *     returned is on disk even after a power cut. NORMAL would be safe
 *     against process crashes only; enrollments are rare and batched per
 *     subject, so one fsync per commit is cheap.
 *   - secure_delete=ON: deleted rows are overwritten with zeros, and purge()
 *     checkpoints and truncates the log, so a removed person's bytes leave
 *     the files.
 *   - foreign_keys=ON: deleting a subject deletes its templates.
 *   - The file is untrusted input: defensive mode, no triggers or views, no
 *     untrusted schema functions, and every object in sqlite_schema must be
 *     one this code created.
 *
 * Schema changes go through the migrations table: each migration runs once,
 * in order, inside one transaction, and records its version.
 */
#include "gallery/store.h"

#include <errno.h>
#include <fcntl.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/error.h"

/* 'FNGA' in the SQLite header marks a facenet gallery. */
#define GALLERY_APPLICATION_ID 0x464E4741
#define BUSY_TIMEOUT_MS 10000

typedef struct sqlite_store {
    gallery_store base;
    sqlite3 *db;
    char *path;
    int in_txn;
} sqlite_store;

typedef struct migration {
    int version;
    const char *description;
    const char *sql;
} migration;

static const migration migrations[] = {
    {1, "collections, subjects, sealed templates",
     "CREATE TABLE gallery_meta (\n"
     "  key TEXT PRIMARY KEY,\n"
     "  value BLOB NOT NULL\n"
     ") WITHOUT ROWID;\n"
     "CREATE TABLE collections (\n"
     "  id INTEGER PRIMARY KEY AUTOINCREMENT,\n"
     "  name TEXT NOT NULL UNIQUE,\n"
     "  created_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%SZ', 'now'))\n"
     ");\n"
     "CREATE TABLE subjects (\n"
     "  id INTEGER PRIMARY KEY AUTOINCREMENT,\n"
     "  collection_id INTEGER NOT NULL REFERENCES collections(id) ON DELETE CASCADE,\n"
     "  name TEXT NOT NULL,\n"
     "  metadata TEXT,\n"
     "  tag BLOB NOT NULL,\n"
     "  created_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%SZ', 'now')),\n"
     "  UNIQUE (collection_id, name)\n"
     ");\n"
     "CREATE TABLE templates (\n"
     "  id INTEGER PRIMARY KEY AUTOINCREMENT,\n"
     "  subject_id INTEGER NOT NULL REFERENCES subjects(id) ON DELETE CASCADE,\n"
     "  model_id TEXT NOT NULL,\n"
     "  preprocess TEXT NOT NULL,\n"
     "  image_sha256 TEXT NOT NULL DEFAULT '',\n"
     "  sealed BLOB NOT NULL,\n"
     "  created_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%SZ', 'now'))\n"
     ");\n"
     "CREATE INDEX templates_by_subject ON templates (subject_id, image_sha256);\n"},
};

/* Every object a gallery file may contain. Anything else (a trigger, a view,
 * a table someone added) means the file was not made by us. */
static const char *const known_objects[] = {
    "schema_migrations", "gallery_meta", "collections", "subjects", "templates",
    "templates_by_subject", "sqlite_sequence", "sqlite_autoindex_gallery_meta_1",
    "sqlite_autoindex_collections_1", "sqlite_autoindex_subjects_1",
    "sqlite_autoindex_schema_migrations_1"};

static sqlite_store *as_sqlite(gallery_store *s)
{
    return (sqlite_store *)s;
}

/* Map an SQLite result to our codes with a message naming the file. */
static facenet_status db_fail(sqlite_store *st, int rc, const char *doing, facenet_error *err)
{
    int primary = rc & 0xFF;
    const char *msg = st->db ? sqlite3_errmsg(st->db) : sqlite3_errstr(rc);
    switch (primary) {
    case SQLITE_NOTADB:
    case SQLITE_CORRUPT:
        return fn_fail(err, FACENET_ERR_FORMAT, "gallery %s is corrupt or not a gallery (%s: %s)",
                       st->path, doing, msg);
    case SQLITE_NOMEM: return fn_fail(err, FACENET_ERR_NO_MEMORY, "gallery %s: out of memory", st->path);
    case SQLITE_BUSY:
    case SQLITE_LOCKED:
        return fn_fail(err, FACENET_ERR_IO, "gallery %s is busy: another process holds it (%s)",
                       st->path, doing);
    case SQLITE_READONLY:
    case SQLITE_CANTOPEN:
    case SQLITE_IOERR:
    case SQLITE_FULL:
    case SQLITE_PERM:
        return fn_fail(err, FACENET_ERR_IO, "gallery %s: %s: %s", st->path, doing, msg);
    case SQLITE_TOOBIG:
        return fn_fail(err, FACENET_ERR_LIMIT, "gallery %s: %s: %s", st->path, doing, msg);
    case SQLITE_CONSTRAINT:
        return fn_fail(err, FACENET_ERR_INVALID_ARGUMENT, "gallery %s: %s: %s", st->path, doing, msg);
    default:
        return fn_fail(err, FACENET_ERR_INTERNAL, "gallery %s: %s: %s (SQLite code %d)", st->path,
                       doing, msg, rc);
    }
}

static facenet_status exec_sql(sqlite_store *st, const char *sql, const char *doing,
                               facenet_error *err)
{
    int rc = sqlite3_exec(st->db, sql, NULL, NULL, NULL);
    return rc == SQLITE_OK ? FACENET_OK : db_fail(st, rc, doing, err);
}

static facenet_status prepare(sqlite_store *st, const char *sql, sqlite3_stmt **stmt,
                              facenet_error *err)
{
    int rc = sqlite3_prepare_v2(st->db, sql, -1, stmt, NULL);
    if (rc != SQLITE_OK) {
        *stmt = NULL;
        return db_fail(st, rc, "preparing a query", err);
    }
    return FACENET_OK;
}

/* One integer from a single-row query. */
static facenet_status query_int(sqlite_store *st, const char *sql, int64_t *out, facenet_error *err)
{
    sqlite3_stmt *stmt;
    facenet_status status = prepare(st, sql, &stmt, err);
    if (status != FACENET_OK)
        return status;
    int rc = sqlite3_step(stmt);
    if (rc == SQLITE_ROW)
        *out = sqlite3_column_int64(stmt, 0);
    else
        status = db_fail(st, rc == SQLITE_DONE ? SQLITE_CORRUPT : rc, sql, err);
    sqlite3_finalize(stmt);
    return status;
}

/* ---- transactions -------------------------------------------------------- */

static facenet_status st_begin(gallery_store *s, int write, facenet_error *err)
{
    sqlite_store *st = as_sqlite(s);
    /* IMMEDIATE takes the write lock now (waiting up to the busy timeout),
     * so a writer never fails half-way on a lock upgrade. */
    facenet_status status = exec_sql(st, write ? "BEGIN IMMEDIATE" : "BEGIN DEFERRED",
                                     "starting a transaction", err);
    if (status == FACENET_OK)
        st->in_txn = 1;
    return status;
}

static facenet_status st_commit(gallery_store *s, facenet_error *err)
{
    sqlite_store *st = as_sqlite(s);
    facenet_status status = exec_sql(st, "COMMIT", "committing", err);
    if (status != FACENET_OK)
        sqlite3_exec(st->db, "ROLLBACK", NULL, NULL, NULL);
    st->in_txn = 0;
    return status;
}

static void st_rollback(gallery_store *s)
{
    sqlite_store *st = as_sqlite(s);
    if (st->in_txn)
        sqlite3_exec(st->db, "ROLLBACK", NULL, NULL, NULL);
    st->in_txn = 0;
}

/* ---- metadata -------------------------------------------------------------- */

static facenet_status st_meta_get(gallery_store *s, const char *key, uint8_t **value,
                                  size_t *len, facenet_error *err)
{
    sqlite_store *st = as_sqlite(s);
    sqlite3_stmt *stmt;
    facenet_status status = prepare(st, "SELECT value FROM gallery_meta WHERE key = ?1", &stmt, err);
    *value = NULL;
    *len = 0;
    if (status != FACENET_OK)
        return status;
    sqlite3_bind_text(stmt, 1, key, -1, SQLITE_STATIC);
    int rc = sqlite3_step(stmt);
    if (rc == SQLITE_ROW) {
        int n = sqlite3_column_bytes(stmt, 0);
        const void *p = sqlite3_column_blob(stmt, 0);
        *value = malloc((size_t)n + 1);
        if (!*value) {
            status = fn_fail(err, FACENET_ERR_NO_MEMORY, "gallery %s: out of memory", st->path);
        } else {
            if (n > 0)
                memcpy(*value, p, (size_t)n);
            (*value)[n] = 0; /* text values come back NUL-terminated */
            *len = (size_t)n;
        }
    } else if (rc == SQLITE_DONE) {
        status = fn_fail(err, FACENET_ERR_NOT_FOUND, "gallery %s has no '%s' entry", st->path, key);
    } else {
        status = db_fail(st, rc, "reading gallery metadata", err);
    }
    sqlite3_finalize(stmt);
    return status;
}

static facenet_status st_meta_set(gallery_store *s, const char *key, const void *value,
                                  size_t len, facenet_error *err)
{
    sqlite_store *st = as_sqlite(s);
    sqlite3_stmt *stmt;
    facenet_status status = prepare(
        st, "INSERT INTO gallery_meta (key, value) VALUES (?1, ?2) "
            "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        &stmt, err);
    if (status != FACENET_OK)
        return status;
    sqlite3_bind_text(stmt, 1, key, -1, SQLITE_STATIC);
    sqlite3_bind_blob(stmt, 2, value, (int)len, SQLITE_STATIC);
    int rc = sqlite3_step(stmt);
    if (rc != SQLITE_DONE)
        status = db_fail(st, rc, "writing gallery metadata", err);
    sqlite3_finalize(stmt);
    return status;
}

/* ---- collections and subjects --------------------------------------------- */

static facenet_status st_collection_id(gallery_store *s, const char *name, int create,
                                       int64_t *id, facenet_error *err)
{
    sqlite_store *st = as_sqlite(s);
    sqlite3_stmt *stmt;
    facenet_status status = prepare(st, "SELECT id FROM collections WHERE name = ?1", &stmt, err);
    if (status != FACENET_OK)
        return status;
    sqlite3_bind_text(stmt, 1, name, -1, SQLITE_STATIC);
    int rc = sqlite3_step(stmt);
    if (rc == SQLITE_ROW)
        *id = sqlite3_column_int64(stmt, 0);
    sqlite3_finalize(stmt);
    if (rc == SQLITE_ROW)
        return FACENET_OK;
    if (rc != SQLITE_DONE)
        return db_fail(st, rc, "finding a collection", err);
    if (!create)
        return fn_fail(err, FACENET_ERR_NOT_FOUND, "gallery %s has no collection '%s'", st->path,
                       name);
    status = prepare(st, "INSERT INTO collections (name) VALUES (?1)", &stmt, err);
    if (status != FACENET_OK)
        return status;
    sqlite3_bind_text(stmt, 1, name, -1, SQLITE_STATIC);
    rc = sqlite3_step(stmt);
    sqlite3_finalize(stmt);
    if (rc != SQLITE_DONE)
        return db_fail(st, rc, "adding a collection", err);
    *id = sqlite3_last_insert_rowid(st->db);
    return FACENET_OK;
}

static facenet_status st_collections(gallery_store *s, gallery_collection_fn fn, void *ctx,
                                     facenet_error *err)
{
    sqlite_store *st = as_sqlite(s);
    sqlite3_stmt *stmt;
    facenet_status status = prepare(
        st,
        "SELECT c.id, c.name, c.created_at,"
        "       (SELECT count(*) FROM subjects s WHERE s.collection_id = c.id),"
        "       (SELECT count(*) FROM templates t JOIN subjects s ON s.id = t.subject_id"
        "         WHERE s.collection_id = c.id)"
        "  FROM collections c ORDER BY c.id",
        &stmt, err);
    if (status != FACENET_OK)
        return status;
    int rc;
    while ((rc = sqlite3_step(stmt)) == SQLITE_ROW) {
        gallery_collection_row row;
        row.id = sqlite3_column_int64(stmt, 0);
        row.name = (const char *)sqlite3_column_text(stmt, 1);
        row.created_at = (const char *)sqlite3_column_text(stmt, 2);
        row.n_subjects = sqlite3_column_int64(stmt, 3);
        row.n_templates = sqlite3_column_int64(stmt, 4);
        if (!row.name || !row.created_at) {
            status = fn_fail(err, FACENET_ERR_FORMAT, "gallery %s: collection %lld has NULL fields",
                             st->path, (long long)row.id);
            break;
        }
        if (fn(ctx, &row))
            break;
    }
    if (status == FACENET_OK && rc != SQLITE_ROW && rc != SQLITE_DONE)
        status = db_fail(st, rc, "reading collections", err);
    sqlite3_finalize(stmt);
    return status;
}

static facenet_status st_collection_rename(gallery_store *s, int64_t id, const char *name,
                                           facenet_error *err)
{
    sqlite_store *st = as_sqlite(s);
    sqlite3_stmt *stmt;
    facenet_status status =
        prepare(st, "UPDATE collections SET name = ?1 WHERE id = ?2", &stmt, err);
    if (status != FACENET_OK)
        return status;
    sqlite3_bind_text(stmt, 1, name, -1, SQLITE_STATIC);
    sqlite3_bind_int64(stmt, 2, id);
    int rc = sqlite3_step(stmt);
    if (rc != SQLITE_DONE)
        status = db_fail(st, rc, "renaming a collection", err);
    else if (sqlite3_changes(st->db) != 1)
        status = fn_fail(err, FACENET_ERR_NOT_FOUND, "gallery %s has no collection %lld",
                         st->path, (long long)id);
    sqlite3_finalize(stmt);
    return status;
}

static facenet_status st_subject_find(gallery_store *s, int64_t collection_id, const char *name,
                                      int64_t *id, facenet_error *err)
{
    sqlite_store *st = as_sqlite(s);
    sqlite3_stmt *stmt;
    facenet_status status = prepare(
        st, "SELECT id FROM subjects WHERE collection_id = ?1 AND name = ?2", &stmt, err);
    if (status != FACENET_OK)
        return status;
    sqlite3_bind_int64(stmt, 1, collection_id);
    sqlite3_bind_text(stmt, 2, name, -1, SQLITE_STATIC);
    int rc = sqlite3_step(stmt);
    if (rc == SQLITE_ROW)
        *id = sqlite3_column_int64(stmt, 0);
    else if (rc == SQLITE_DONE)
        status = fn_fail(err, FACENET_ERR_NOT_FOUND, "no subject '%s' in this collection", name);
    else
        status = db_fail(st, rc, "finding a subject", err);
    sqlite3_finalize(stmt);
    return status;
}

static facenet_status st_subject_insert(gallery_store *s, int64_t collection_id, const char *name,
                                        const char *metadata, int64_t *id, facenet_error *err)
{
    sqlite_store *st = as_sqlite(s);
    sqlite3_stmt *stmt;
    facenet_status status = prepare(
        st, "INSERT INTO subjects (collection_id, name, metadata, tag) VALUES (?1, ?2, ?3, x'')",
        &stmt, err);
    if (status != FACENET_OK)
        return status;
    sqlite3_bind_int64(stmt, 1, collection_id);
    sqlite3_bind_text(stmt, 2, name, -1, SQLITE_STATIC);
    if (metadata)
        sqlite3_bind_text(stmt, 3, metadata, -1, SQLITE_STATIC);
    else
        sqlite3_bind_null(stmt, 3);
    int rc = sqlite3_step(stmt);
    sqlite3_finalize(stmt);
    if (rc != SQLITE_DONE)
        return db_fail(st, rc, "adding a subject", err);
    *id = sqlite3_last_insert_rowid(st->db);
    return FACENET_OK;
}

static facenet_status update_blob(sqlite_store *st, const char *sql, int64_t id, const uint8_t *blob,
                                  size_t len, const char *doing, facenet_error *err)
{
    sqlite3_stmt *stmt;
    facenet_status status = prepare(st, sql, &stmt, err);
    if (status != FACENET_OK)
        return status;
    sqlite3_bind_blob(stmt, 1, blob, (int)len, SQLITE_STATIC);
    sqlite3_bind_int64(stmt, 2, id);
    int rc = sqlite3_step(stmt);
    if (rc != SQLITE_DONE)
        status = db_fail(st, rc, doing, err);
    else if (sqlite3_changes(st->db) != 1)
        status = fn_fail(err, FACENET_ERR_NOT_FOUND, "gallery %s: %s: row %lld is gone", st->path,
                         doing, (long long)id);
    sqlite3_finalize(stmt);
    return status;
}

static facenet_status st_subject_set_tag(gallery_store *s, int64_t id, const uint8_t *tag,
                                         size_t len, facenet_error *err)
{
    return update_blob(as_sqlite(s), "UPDATE subjects SET tag = ?1 WHERE id = ?2", id, tag, len,
                       "tagging a subject", err);
}

static facenet_status delete_row(sqlite_store *st, const char *sql, int64_t id, const char *what,
                                 facenet_error *err)
{
    sqlite3_stmt *stmt;
    facenet_status status = prepare(st, sql, &stmt, err);
    if (status != FACENET_OK)
        return status;
    sqlite3_bind_int64(stmt, 1, id);
    int rc = sqlite3_step(stmt);
    if (rc != SQLITE_DONE)
        status = db_fail(st, rc, "deleting", err);
    else if (sqlite3_changes(st->db) != 1)
        status = fn_fail(err, FACENET_ERR_NOT_FOUND, "gallery %s has no %s %lld", st->path, what,
                         (long long)id);
    sqlite3_finalize(stmt);
    return status;
}

static facenet_status st_subject_delete(gallery_store *s, int64_t id, facenet_error *err)
{
    /* Templates go by ON DELETE CASCADE, in this same statement. */
    return delete_row(as_sqlite(s), "DELETE FROM subjects WHERE id = ?1", id, "subject", err);
}

static facenet_status st_collection_delete(gallery_store *s, int64_t id, facenet_error *err)
{
    /* Subjects and their templates go by ON DELETE CASCADE. */
    return delete_row(as_sqlite(s), "DELETE FROM collections WHERE id = ?1", id, "collection",
                      err);
}

static facenet_status st_subjects(gallery_store *s, int64_t collection_id, int64_t subject_id,
                                  gallery_subject_fn fn, void *ctx, facenet_error *err)
{
    sqlite_store *st = as_sqlite(s);
    sqlite3_stmt *stmt;
    facenet_status status = prepare(
        st,
        "SELECT s.id, s.collection_id, c.name, s.name, s.metadata, s.tag, s.created_at,"
        "       (SELECT count(*) FROM templates t WHERE t.subject_id = s.id)"
        "  FROM subjects s JOIN collections c ON c.id = s.collection_id"
        " WHERE (?1 = 0 OR s.collection_id = ?1) AND (?2 = 0 OR s.id = ?2)"
        " ORDER BY s.id",
        &stmt, err);
    if (status != FACENET_OK)
        return status;
    sqlite3_bind_int64(stmt, 1, collection_id);
    sqlite3_bind_int64(stmt, 2, subject_id);
    int rc;
    while ((rc = sqlite3_step(stmt)) == SQLITE_ROW) {
        gallery_subject_row row;
        row.id = sqlite3_column_int64(stmt, 0);
        row.collection_id = sqlite3_column_int64(stmt, 1);
        row.collection = (const char *)sqlite3_column_text(stmt, 2);
        row.name = (const char *)sqlite3_column_text(stmt, 3);
        row.metadata = sqlite3_column_type(stmt, 4) == SQLITE_NULL
                           ? NULL
                           : (const char *)sqlite3_column_text(stmt, 4);
        row.tag = sqlite3_column_blob(stmt, 5);
        row.tag_len = (size_t)sqlite3_column_bytes(stmt, 5);
        row.created_at = (const char *)sqlite3_column_text(stmt, 6);
        row.n_templates = sqlite3_column_int64(stmt, 7);
        if (!row.collection || !row.name || !row.created_at) {
            status = fn_fail(err, FACENET_ERR_FORMAT, "gallery %s: subject %lld has NULL fields",
                             st->path, (long long)row.id);
            break;
        }
        if (fn(ctx, &row))
            break;
    }
    if (status == FACENET_OK && rc != SQLITE_ROW && rc != SQLITE_DONE)
        status = db_fail(st, rc, "reading subjects", err);
    sqlite3_finalize(stmt);
    return status;
}

/* ---- templates ------------------------------------------------------------- */

static facenet_status st_template_find(gallery_store *s, int64_t subject_id,
                                       const char *image_sha256, int64_t *id, facenet_error *err)
{
    sqlite_store *st = as_sqlite(s);
    sqlite3_stmt *stmt;
    facenet_status status = prepare(
        st, "SELECT id FROM templates WHERE subject_id = ?1 AND image_sha256 = ?2 ORDER BY id LIMIT 1",
        &stmt, err);
    if (status != FACENET_OK)
        return status;
    sqlite3_bind_int64(stmt, 1, subject_id);
    sqlite3_bind_text(stmt, 2, image_sha256, -1, SQLITE_STATIC);
    int rc = sqlite3_step(stmt);
    if (rc == SQLITE_ROW)
        *id = sqlite3_column_int64(stmt, 0);
    else if (rc == SQLITE_DONE)
        status = FACENET_ERR_NOT_FOUND; /* an answer, not an error: no message */
    else
        status = db_fail(st, rc, "finding a template", err);
    sqlite3_finalize(stmt);
    return status;
}

static facenet_status st_template_insert(gallery_store *s, int64_t subject_id, const char *model_id,
                                         const char *preprocess, const char *image_sha256,
                                         int64_t *id, facenet_error *err)
{
    sqlite_store *st = as_sqlite(s);
    sqlite3_stmt *stmt;
    facenet_status status = prepare(st,
                                    "INSERT INTO templates (subject_id, model_id, preprocess, "
                                    "image_sha256, sealed) VALUES (?1, ?2, ?3, ?4, x'')",
                                    &stmt, err);
    if (status != FACENET_OK)
        return status;
    sqlite3_bind_int64(stmt, 1, subject_id);
    sqlite3_bind_text(stmt, 2, model_id, -1, SQLITE_STATIC);
    sqlite3_bind_text(stmt, 3, preprocess ? preprocess : "", -1, SQLITE_STATIC);
    sqlite3_bind_text(stmt, 4, image_sha256 ? image_sha256 : "", -1, SQLITE_STATIC);
    int rc = sqlite3_step(stmt);
    sqlite3_finalize(stmt);
    if (rc != SQLITE_DONE)
        return db_fail(st, rc, "adding a template", err);
    *id = sqlite3_last_insert_rowid(st->db);
    return FACENET_OK;
}

static facenet_status st_template_set_sealed(gallery_store *s, int64_t id, const uint8_t *blob,
                                             size_t len, facenet_error *err)
{
    return update_blob(as_sqlite(s), "UPDATE templates SET sealed = ?1 WHERE id = ?2", id, blob,
                       len, "sealing a template", err);
}

static facenet_status st_template_delete(gallery_store *s, int64_t id, int64_t *subject_id,
                                         facenet_error *err)
{
    sqlite_store *st = as_sqlite(s);
    sqlite3_stmt *stmt;
    facenet_status status = prepare(st, "SELECT subject_id FROM templates WHERE id = ?1", &stmt, err);
    if (status != FACENET_OK)
        return status;
    sqlite3_bind_int64(stmt, 1, id);
    int rc = sqlite3_step(stmt);
    if (rc == SQLITE_ROW)
        *subject_id = sqlite3_column_int64(stmt, 0);
    sqlite3_finalize(stmt);
    if (rc == SQLITE_DONE)
        return fn_fail(err, FACENET_ERR_NOT_FOUND, "gallery %s has no template %lld", st->path,
                       (long long)id);
    if (rc != SQLITE_ROW)
        return db_fail(st, rc, "finding a template", err);
    return delete_row(st, "DELETE FROM templates WHERE id = ?1", id, "template", err);
}

static facenet_status st_templates(gallery_store *s, int64_t subject_id, int64_t after_id,
                                   int64_t limit, gallery_template_fn fn, void *ctx,
                                   facenet_error *err)
{
    sqlite_store *st = as_sqlite(s);
    sqlite3_stmt *stmt;
    /* Two statements, not one "(?1 = 0 OR subject_id = ?1)": SQLite cannot
     * use templates_by_subject for the OR form and walked every template
     * after after_id to list one subject (160 ms at 100,000 templates). */
    facenet_status status = prepare(
        st,
        subject_id ? "SELECT id, subject_id, model_id, preprocess, image_sha256, created_at, sealed"
                     "  FROM templates WHERE subject_id = ?1 AND id > ?2 ORDER BY id LIMIT ?3"
                   : "SELECT id, subject_id, model_id, preprocess, image_sha256, created_at, sealed"
                     "  FROM templates WHERE ?1 = 0 AND id > ?2 ORDER BY id LIMIT ?3",
        &stmt, err);
    if (status != FACENET_OK)
        return status;
    sqlite3_bind_int64(stmt, 1, subject_id);
    sqlite3_bind_int64(stmt, 2, after_id);
    sqlite3_bind_int64(stmt, 3, limit);
    int rc;
    while ((rc = sqlite3_step(stmt)) == SQLITE_ROW) {
        gallery_template_row row;
        row.id = sqlite3_column_int64(stmt, 0);
        row.subject_id = sqlite3_column_int64(stmt, 1);
        row.model_id = (const char *)sqlite3_column_text(stmt, 2);
        row.preprocess = (const char *)sqlite3_column_text(stmt, 3);
        row.image_sha256 = (const char *)sqlite3_column_text(stmt, 4);
        row.created_at = (const char *)sqlite3_column_text(stmt, 5);
        row.sealed = sqlite3_column_blob(stmt, 6);
        row.sealed_len = (size_t)sqlite3_column_bytes(stmt, 6);
        if (!row.model_id || !row.preprocess || !row.image_sha256 || !row.created_at) {
            status = fn_fail(err, FACENET_ERR_FORMAT, "gallery %s: template %lld has NULL fields",
                             st->path, (long long)row.id);
            break;
        }
        if (fn(ctx, &row))
            break;
    }
    if (status == FACENET_OK && rc != SQLITE_ROW && rc != SQLITE_DONE)
        status = db_fail(st, rc, "reading templates", err);
    sqlite3_finalize(stmt);
    return status;
}

/* ---- maintenance ------------------------------------------------------------ */

static int64_t file_size(const char *path)
{
    struct stat sb;
    return stat(path, &sb) == 0 ? (int64_t)sb.st_size : 0;
}

static facenet_status st_stats(gallery_store *s, gallery_store_stats *out, facenet_error *err)
{
    sqlite_store *st = as_sqlite(s);
    int64_t version = 0;
    facenet_status status;
    char wal[4200];

    memset(out, 0, sizeof *out);
    if ((status = query_int(st, "SELECT coalesce(max(version), 0) FROM schema_migrations", &version, err)) ||
        (status = query_int(st, "SELECT count(*) FROM collections", &out->collections, err)) ||
        (status = query_int(st, "SELECT count(*) FROM subjects", &out->subjects, err)) ||
        (status = query_int(st, "SELECT count(*) FROM templates", &out->templates, err)) ||
        (status = query_int(st, "PRAGMA page_size", &out->page_size, err)) ||
        (status = query_int(st, "PRAGMA page_count", &out->page_count, err)) ||
        (status = query_int(st, "PRAGMA freelist_count", &out->free_pages, err)))
        return status;
    out->schema_version = (int)version;
    out->file_bytes = file_size(st->path);
    snprintf(wal, sizeof wal, "%s-wal", st->path);
    out->wal_bytes = file_size(wal);
    return FACENET_OK;
}

static facenet_status st_check(gallery_store *s, facenet_error *err)
{
    sqlite_store *st = as_sqlite(s);
    sqlite3_stmt *stmt;
    facenet_status status = prepare(st, "PRAGMA integrity_check", &stmt, err);
    if (status != FACENET_OK)
        return status;
    int rc = sqlite3_step(stmt);
    if (rc == SQLITE_ROW) {
        const char *first = (const char *)sqlite3_column_text(stmt, 0);
        if (!first || strcmp(first, "ok") != 0)
            status = fn_fail(err, FACENET_ERR_FORMAT, "gallery %s fails its integrity check: %s",
                             st->path, first ? first : "(no answer)");
    } else {
        status = db_fail(st, rc, "checking integrity", err);
    }
    sqlite3_finalize(stmt);
    if (status != FACENET_OK)
        return status;
    status = prepare(st, "PRAGMA foreign_key_check", &stmt, err);
    if (status != FACENET_OK)
        return status;
    rc = sqlite3_step(stmt);
    if (rc == SQLITE_ROW)
        status = fn_fail(err, FACENET_ERR_FORMAT,
                         "gallery %s: table %s row %lld refers to a missing row", st->path,
                         (const char *)sqlite3_column_text(stmt, 0),
                         (long long)sqlite3_column_int64(stmt, 1));
    else if (rc != SQLITE_DONE)
        status = db_fail(st, rc, "checking foreign keys", err);
    sqlite3_finalize(stmt);
    return status;
}

static facenet_status st_purge(gallery_store *s, facenet_error *err)
{
    sqlite_store *st = as_sqlite(s);
    int log_frames = 0, done_frames = 0;
    /* TRUNCATE waits for readers (busy timeout), copies every frame into the
     * database file (where secure_delete already zeroed the deleted cells)
     * and truncates the log to zero bytes. */
    int rc = sqlite3_wal_checkpoint_v2(st->db, NULL, SQLITE_CHECKPOINT_TRUNCATE, &log_frames,
                                       &done_frames);
    if (rc != SQLITE_OK)
        return db_fail(st, rc, "checkpointing the write-ahead log after a deletion", err);
    return FACENET_OK;
}

static facenet_status st_data_version(gallery_store *s, int64_t *version, facenet_error *err)
{
    return query_int(as_sqlite(s), "PRAGMA data_version", version, err);
}

static void st_close(gallery_store *s)
{
    sqlite_store *st = as_sqlite(s);
    if (!st)
        return;
    st_rollback(s);
    if (st->db)
        sqlite3_close_v2(st->db);
    free(st->path);
    free(st);
}

static const gallery_store_ops sqlite_ops = {
    .backend = "sqlite",
    .close = st_close,
    .begin = st_begin,
    .commit = st_commit,
    .rollback = st_rollback,
    .meta_get = st_meta_get,
    .meta_set = st_meta_set,
    .collection_id = st_collection_id,
    .collections = st_collections,
    .collection_rename = st_collection_rename,
    .collection_delete = st_collection_delete,
    .subject_find = st_subject_find,
    .subject_insert = st_subject_insert,
    .subject_set_tag = st_subject_set_tag,
    .subject_delete = st_subject_delete,
    .subjects = st_subjects,
    .template_find = st_template_find,
    .template_insert = st_template_insert,
    .template_set_sealed = st_template_set_sealed,
    .template_delete = st_template_delete,
    .templates = st_templates,
    .stats = st_stats,
    .check = st_check,
    .purge = st_purge,
    .data_version = st_data_version,
};

/* ---- opening ---------------------------------------------------------------- */

static int is_known_object(const char *name)
{
    for (size_t i = 0; i < sizeof known_objects / sizeof known_objects[0]; i++)
        if (strcmp(name, known_objects[i]) == 0)
            return 1;
    return 0;
}

/* Count schema objects and refuse any we did not create. */
static facenet_status inspect_schema(sqlite_store *st, int64_t *n_objects, facenet_error *err)
{
    sqlite3_stmt *stmt;
    facenet_status status = prepare(st, "SELECT type, name FROM sqlite_schema", &stmt, err);
    if (status != FACENET_OK)
        return status;
    int rc;
    *n_objects = 0;
    while ((rc = sqlite3_step(stmt)) == SQLITE_ROW) {
        const char *type = (const char *)sqlite3_column_text(stmt, 0);
        const char *name = (const char *)sqlite3_column_text(stmt, 1);
        (*n_objects)++;
        if (!type || !name || strcmp(type, "trigger") == 0 || strcmp(type, "view") == 0 ||
            !is_known_object(name)) {
            status = fn_fail(err, FACENET_ERR_FORMAT,
                             "gallery %s contains a %s '%.64s' that facenet did not create; "
                             "refusing to use it",
                             st->path, type ? type : "?", name ? name : "?");
            break;
        }
    }
    if (status == FACENET_OK && rc != SQLITE_DONE)
        status = db_fail(st, rc, "reading the schema", err);
    sqlite3_finalize(stmt);
    return status;
}

/* SQLite zero-fills reads past the end of a short file, so a truncated
 * gallery can look valid. A database file is always whole pages, and holds
 * every page unless the write-ahead log has some of them. */
static facenet_status check_length(sqlite_store *st, facenet_error *err)
{
    int64_t page_size = 0, page_count = 0;
    char wal[4200];
    facenet_status status;
    if ((status = query_int(st, "PRAGMA page_size", &page_size, err)) ||
        (status = query_int(st, "PRAGMA page_count", &page_count, err)))
        return status;
    int64_t size = file_size(st->path);
    snprintf(wal, sizeof wal, "%s-wal", st->path);
    int64_t wal_size = file_size(wal);
    if (page_size <= 0 || size % page_size != 0 || (wal_size == 0 && size < page_count * page_size))
        return fn_fail(err, FACENET_ERR_FORMAT,
                       "gallery %s is truncated: %lld bytes, but it has %lld pages of %lld bytes",
                       st->path, (long long)size, (long long)page_count, (long long)page_size);
    return FACENET_OK;
}

static facenet_status schema_version(sqlite_store *st, int64_t *version, facenet_error *err)
{
    return query_int(st, "SELECT coalesce(max(version), 0) FROM schema_migrations", version, err);
}

/* Apply every migration newer than the file's version. Runs inside the
 * caller's write transaction. */
static facenet_status migrate(sqlite_store *st, int64_t from, facenet_error *err)
{
    for (size_t i = 0; i < sizeof migrations / sizeof migrations[0]; i++) {
        const migration *m = &migrations[i];
        if (m->version <= from)
            continue;
        facenet_status status = exec_sql(st, m->sql, "migrating the schema", err);
        if (status != FACENET_OK)
            return status;
        sqlite3_stmt *stmt;
        status = prepare(st,
                         "INSERT INTO schema_migrations (version, description, applied_at) "
                         "VALUES (?1, ?2, strftime('%Y-%m-%dT%H:%M:%SZ', 'now'))",
                         &stmt, err);
        if (status != FACENET_OK)
            return status;
        sqlite3_bind_int(stmt, 1, m->version);
        sqlite3_bind_text(stmt, 2, m->description, -1, SQLITE_STATIC);
        int rc = sqlite3_step(stmt);
        sqlite3_finalize(stmt);
        if (rc != SQLITE_DONE)
            return db_fail(st, rc, "recording a migration", err);
    }
    char sql[64];
    snprintf(sql, sizeof sql, "PRAGMA user_version = %d", GALLERY_SCHEMA_VERSION);
    return exec_sql(st, sql, "recording the schema version", err);
}

static facenet_status initialise(sqlite_store *st, facenet_error *err)
{
    char sql[64];
    facenet_status status = exec_sql(st,
                                     "CREATE TABLE schema_migrations (\n"
                                     "  version INTEGER PRIMARY KEY,\n"
                                     "  description TEXT NOT NULL,\n"
                                     "  applied_at TEXT NOT NULL\n"
                                     ")",
                                     "creating the schema", err);
    if (status != FACENET_OK)
        return status;
    snprintf(sql, sizeof sql, "PRAGMA application_id = %d", GALLERY_APPLICATION_ID);
    status = exec_sql(st, sql, "marking the file as a gallery", err);
    if (status != FACENET_OK)
        return status;
    return migrate(st, 0, err);
}

static facenet_status configure(sqlite_store *st, unsigned flags, facenet_error *err)
{
    facenet_status status;
    sqlite3_busy_timeout(st->db, BUSY_TIMEOUT_MS);
    sqlite3_extended_result_codes(st->db, 1);
    sqlite3_db_config(st->db, SQLITE_DBCONFIG_DEFENSIVE, 1, NULL);
    sqlite3_db_config(st->db, SQLITE_DBCONFIG_ENABLE_TRIGGER, 0, NULL);
    sqlite3_db_config(st->db, SQLITE_DBCONFIG_ENABLE_VIEW, 0, NULL);
    sqlite3_db_config(st->db, SQLITE_DBCONFIG_TRUSTED_SCHEMA, 0, NULL);
    sqlite3_db_config(st->db, SQLITE_DBCONFIG_ENABLE_LOAD_EXTENSION, 0, NULL);
    if ((status = exec_sql(st, "PRAGMA foreign_keys = ON", "enabling foreign keys", err)) ||
        (status = exec_sql(st, "PRAGMA secure_delete = ON", "enabling secure delete", err)))
        return status;
    (void)flags;
    return FACENET_OK;
}

/* Switch to WAL and FULL sync. Only for files known to be galleries (or
 * empty): WAL mode rewrites two header bytes. */
static facenet_status set_journal(sqlite_store *st, facenet_error *err)
{
    sqlite3_stmt *stmt;
    facenet_status status = prepare(st, "PRAGMA journal_mode = WAL", &stmt, err);
    if (status != FACENET_OK)
        return status;
    int rc = sqlite3_step(stmt);
    const char *mode = rc == SQLITE_ROW ? (const char *)sqlite3_column_text(stmt, 0) : NULL;
    if (rc != SQLITE_ROW)
        status = db_fail(st, rc, "enabling the write-ahead log", err);
    else if (!mode || strcmp(mode, "wal") != 0)
        status = fn_fail(err, FACENET_ERR_IO, "gallery %s: cannot use WAL mode (got %s)", st->path,
                         mode ? mode : "nothing");
    sqlite3_finalize(stmt);
    if (status != FACENET_OK)
        return status;
    return exec_sql(st, "PRAGMA synchronous = FULL", "setting synchronous mode", err);
}

/* Create the file with mode 0600 before SQLite sees it (SQLite would use
 * 0644; the log and shared-memory files inherit the database's mode). */
static facenet_status create_file(const char *path, facenet_error *err)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0) {
        if (errno == EEXIST)
            return FACENET_OK; /* someone else created it: open it */
        return fn_fail(err, FACENET_ERR_IO, "gallery %s: %s", path, strerror(errno));
    }
    close(fd);
    return FACENET_OK;
}

static facenet_status open_existing(sqlite_store *st, unsigned flags, int *created,
                                    facenet_error *err)
{
    int64_t app_id = 0, n_objects = 0, version = 0;
    facenet_status status;

    /* The first read: SQLITE_NOTADB here means the bytes are not SQLite. */
    if ((status = query_int(st, "PRAGMA application_id", &app_id, err)))
        return status;
    if (app_id != 0 && app_id != GALLERY_APPLICATION_ID)
        return fn_fail(err, FACENET_ERR_FORMAT,
                       "%s is an SQLite database but not a facenet gallery (application id "
                       "0x%08llx)",
                       st->path, (unsigned long long)app_id);
    if ((status = query_int(st, "SELECT count(*) FROM sqlite_schema", &n_objects, err)))
        return status;
    if (app_id == 0 && n_objects > 0)
        return fn_fail(err, FACENET_ERR_FORMAT,
                       "%s is an SQLite database but not a facenet gallery", st->path);
    if (n_objects > 0 && (status = inspect_schema(st, &n_objects, err)))
        return status;
    if (n_objects == 0 && app_id == 0) {
        if (!(flags & GALLERY_STORE_CREATE) || (flags & GALLERY_STORE_READ_ONLY))
            return fn_fail(err, FACENET_ERR_FORMAT, "%s is an empty file, not a gallery", st->path);
        if ((status = set_journal(st, err)) || (status = st_begin(&st->base, 1, err)))
            return status;
        /* Re-check under the write lock: another process may have won. */
        if ((status = inspect_schema(st, &n_objects, err)) == FACENET_OK && n_objects == 0) {
            status = initialise(st, err);
            if (status == FACENET_OK) {
                *created = 1;
                return FACENET_OK; /* the transaction stays open for the caller */
            }
        }
        st_rollback(&st->base);
        if (status != FACENET_OK)
            return status;
        status = query_int(st, "PRAGMA application_id", &app_id, err);
        if (status != FACENET_OK)
            return status;
    }
    if (app_id != GALLERY_APPLICATION_ID)
        return fn_fail(err, FACENET_ERR_FORMAT, "%s is not a facenet gallery", st->path);
    if ((status = check_length(st, err)) || (status = schema_version(st, &version, err)))
        return status;
    if (version > GALLERY_SCHEMA_VERSION)
        return fn_fail(err, FACENET_ERR_UNSUPPORTED,
                       "gallery %s has schema version %lld; this facenet reads up to version %d",
                       st->path, (long long)version, GALLERY_SCHEMA_VERSION);
    if (version < 1)
        return fn_fail(err, FACENET_ERR_FORMAT, "gallery %s has no schema", st->path);
    if (flags & GALLERY_STORE_READ_ONLY) {
        if (version < GALLERY_SCHEMA_VERSION)
            return fn_fail(err, FACENET_ERR_UNSUPPORTED,
                           "gallery %s has schema version %lld and needs a migration: open it "
                           "for writing once",
                           st->path, (long long)version);
        return FACENET_OK;
    }
    if ((status = set_journal(st, err)))
        return status;
    if (version < GALLERY_SCHEMA_VERSION) {
        if ((status = st_begin(&st->base, 1, err)))
            return status;
        if ((status = schema_version(st, &version, err)) == FACENET_OK &&
            version < GALLERY_SCHEMA_VERSION)
            status = migrate(st, version, err);
        if (status == FACENET_OK)
            status = st_commit(&st->base, err);
        else
            st_rollback(&st->base);
    }
    return status;
}

facenet_status gallery_sqlite_open(const char *path, unsigned flags, gallery_store **out,
                                   int *created, facenet_error *err)
{
    struct stat sb;
    facenet_status status;
    sqlite_store *st;

    *out = NULL;
    *created = 0;
    if (stat(path, &sb) != 0) {
        if (errno != ENOENT)
            return fn_fail(err, FACENET_ERR_IO, "gallery %s: %s", path, strerror(errno));
        if (!(flags & GALLERY_STORE_CREATE) || (flags & GALLERY_STORE_READ_ONLY))
            return fn_fail(err, FACENET_ERR_NOT_FOUND, "gallery %s does not exist", path);
        if ((status = create_file(path, err)))
            return status;
    } else if (!S_ISREG(sb.st_mode)) {
        return fn_fail(err, FACENET_ERR_INVALID_ARGUMENT, "gallery %s is not a regular file", path);
    }
    st = calloc(1, sizeof *st);
    if (!st || !(st->path = strdup(path))) {
        free(st);
        return fn_fail(err, FACENET_ERR_NO_MEMORY, "gallery %s: out of memory", path);
    }
    st->base.ops = &sqlite_ops;
    int oflags = (flags & GALLERY_STORE_READ_ONLY) ? SQLITE_OPEN_READONLY : SQLITE_OPEN_READWRITE;
    int rc = sqlite3_open_v2(path, &st->db, oflags | SQLITE_OPEN_FULLMUTEX,
                             NULL);
    if (rc != SQLITE_OK) {
        status = db_fail(st, rc, "opening", err);
        st_close(&st->base);
        return status;
    }
    status = configure(st, flags, err);
    if (status == FACENET_OK)
        status = open_existing(st, flags, created, err);
    if (status != FACENET_OK) {
        st_close(&st->base);
        return status;
    }
    *out = &st->base;
    return FACENET_OK;
}
