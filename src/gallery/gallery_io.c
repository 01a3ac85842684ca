/*
 * gallery_io.c - export a gallery to JSON (sealed or, on request, plain) and
 * merge such an export back in.
 *
 * An export is for backups and moving between machines or keys. Import
 * treats the file as hostile: every field is validated before the first
 * write, and the merge is one transaction.
 */
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <limits.h>
#include <math.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/atomicfile.h"
#include "common/error.h"
#include "common/fileio.h"
#include "gallery/gallery_internal.h"
#include "gallery/names.h"

#define EXPORT_FORMAT "facenet-gallery-export"
#define EXPORT_VERSION 1
#define IMPORT_MAX_BYTES ((size_t)2 << 30)

/* ---- export ----------------------------------------------------------------------- */

/*
 * Version 2 exports are streamed: one JSON record per line (plain) or per
 * secretstream message (sealed), so neither export nor import holds more
 * than one record in memory:
 *   {"format": "facenet-gallery-export", "version": 2, "model_id", "dim", "threshold"}
 *   {"subject": {"collection", "name", "metadata", "created_at"}}
 *   {"template": {"preprocess", "image_sha256", "created_at", "embedding": [...]}}
 *     (templates belong to the subject record before them)
 *   {"end": {"subjects": S, "templates": T}}
 * The end record makes a truncated plain file detectable; a sealed one is
 * also tagged FINAL. Version 1 (one JSON document) is still read.
 */
#define EXPORT_STREAM_VERSION 2
/* One record: a template of 4,096 floats is about 70 KiB of JSON, a
 * subject at most 64 KiB of metadata plus two names. */
#define RECORD_MAX_BYTES ((size_t)1 << 20)
#define SEALED_RECORD_MAX (RECORD_MAX_BYTES + crypto_secretstream_xchacha20poly1305_ABYTES)

typedef struct export_writer {
    FILE *f;
    int sealed;
    crypto_secretstream_xchacha20poly1305_state state;
    uint8_t *buf; /* 4 + SEALED_RECORD_MAX: one sealed record */
    size_t subjects, templates;
} export_writer;

/* Write one record (and free it). Returns 0, or -1 (too large, out of
 * memory, or a write error). */
static int write_record(export_writer *w, json_t *record, int final)
{
    char *text = record ? json_dumps(record, JSON_COMPACT | JSON_REAL_PRECISION(9)) : NULL;
    json_decref(record);
    if (!text)
        return -1;
    size_t len = strlen(text);
    int rc = -1;
    if (len <= RECORD_MAX_BYTES && w->sealed) {
        unsigned long long sealed_len = 0;
        crypto_secretstream_xchacha20poly1305_push(
            &w->state, w->buf + 4, &sealed_len, (const uint8_t *)text, len,
            (const uint8_t *)GALLERY_EXPORT2_MAGIC, GALLERY_EXPORT_MAGIC_BYTES,
            final ? crypto_secretstream_xchacha20poly1305_TAG_FINAL : 0);
        for (int i = 0; i < 4; i++)
            w->buf[i] = (uint8_t)(sealed_len >> (8 * i));
        rc = fwrite(w->buf, 1, (size_t)sealed_len + 4, w->f) == (size_t)sealed_len + 4 ? 0 : -1;
    } else if (len <= RECORD_MAX_BYTES) {
        rc = fwrite(text, 1, len, w->f) == len && fputc('\n', w->f) != EOF ? 0 : -1;
    }
    sodium_memzero(text, len);
    free(text);
    return rc;
}

typedef struct export_ctx {
    facenet_gallery *g;
    export_writer *w;
    float *row;
    facenet_status status;
    facenet_error *err;
} export_ctx;

static int export_template_row(void *arg, const gallery_template_row *r)
{
    export_ctx *c = arg;
    c->status = gallery_open_row(c->g, r, c->row, c->err);
    if (c->status != FACENET_OK)
        return 1;
    json_t *vec = json_array();
    for (int i = 0; vec && i < c->g->dim; i++)
        json_array_append_new(vec, json_real(c->row[i]));
    json_t *t = json_pack("{s:{s:s,s:s,s:s,s:o}}", "template", "preprocess", r->preprocess,
                          "image_sha256", r->image_sha256, "created_at", r->created_at,
                          "embedding", vec);
    sodium_memzero(c->row, (size_t)c->g->dim * sizeof(float));
    if (write_record(c->w, t, 0) != 0) {
        c->status = fn_fail(c->err, FACENET_ERR_IO, "export: cannot write a template: %s",
                            strerror(errno ? errno : ENOMEM));
        return 1;
    }
    c->w->templates++;
    return 0;
}

static int export_subject_row(void *arg, const gallery_subject_row *r)
{
    export_ctx *c = arg;
    gallery_store *s = c->g->store;
    json_t *meta = NULL;
    if (gallery_subject_tag_verify(c->g->keys, c->g->gallery_id, r->id, r->collection, r->name,
                                   r->metadata, r->tag, r->tag_len) != 0) {
        c->status = fn_fail(c->err, FACENET_ERR_INTEGRITY,
                            "gallery %s: subject %lld fails authentication", c->g->path,
                            (long long)r->id);
        return 1;
    }
    if (r->metadata && !(meta = json_loads(r->metadata, 0, NULL))) {
        c->status = fn_fail(c->err, FACENET_ERR_FORMAT,
                            "gallery %s: subject %lld has malformed metadata", c->g->path,
                            (long long)r->id);
        return 1;
    }
    json_t *rec = json_pack("{s:{s:s,s:s,s:o*,s:s}}", "subject", "collection", r->collection,
                            "name", r->name, "metadata", meta, "created_at", r->created_at);
    if (write_record(c->w, rec, 0) != 0) {
        c->status = fn_fail(c->err, FACENET_ERR_IO, "export: cannot write a subject: %s",
                            strerror(errno ? errno : ENOMEM));
        return 1;
    }
    c->w->subjects++;
    /* Its templates, by a second statement while this one is open. */
    facenet_status status = s->ops->templates(s, r->id, 0, -1, export_template_row, c, c->err);
    if (status != FACENET_OK && c->status == FACENET_OK)
        c->status = status;
    return c->status != FACENET_OK;
}

/* A private temporary file beside `path`, renamed over it when complete. */
static FILE *open_temp(const char *path, char *tmp, size_t size, facenet_error *err)
{
    if ((size_t)snprintf(tmp, size, "%s.tmp-XXXXXX", path) >= size) {
        fn_fail(err, FACENET_ERR_INVALID_ARGUMENT, "export: path too long");
        return NULL;
    }
    int fd = mkstemp(tmp); /* mode 0600 */
    FILE *f = fd >= 0 ? fdopen(fd, "wb") : NULL;
    if (!f) {
        fn_fail(err, FACENET_ERR_IO, "export %s: %s", path, strerror(errno));
        if (fd >= 0) {
            close(fd);
            unlink(tmp);
        }
    }
    return f;
}

static facenet_status finish_temp(FILE *f, const char *tmp, const char *path, facenet_error *err)
{
    int ok = fflush(f) == 0 && fsync(fileno(f)) == 0;
    ok = fclose(f) == 0 && ok;
    if (ok && rename(tmp, path) == 0) {
        char dir[PATH_MAX];
        snprintf(dir, sizeof dir, "%s", path);
        char *slash = strrchr(dir, '/');
        if (slash)
            *(slash == dir ? slash + 1 : slash) = 0;
        int dfd = open(slash ? dir : ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (dfd >= 0) {
            (void)fsync(dfd); /* the rename itself durable */
            close(dfd);
        }
        return FACENET_OK;
    }
    facenet_status status = fn_fail(err, FACENET_ERR_IO, "export %s: %s", path, strerror(errno));
    unlink(tmp);
    return status;
}

facenet_status facenet_gallery_export(facenet_gallery *g, const char *path,
                                      const uint8_t *export_key, facenet_error *err)
{
    export_ctx c;
    export_writer w;
    char threshold[32], tmp[PATH_MAX];
    facenet_status status = FACENET_OK;

    if (!g || !path)
        return fn_fail(err, FACENET_ERR_INVALID_ARGUMENT, "export: missing argument");
    memset(&c, 0, sizeof c);
    memset(&w, 0, sizeof w);
    c.g = g;
    c.w = &w;
    c.err = err;
    w.sealed = export_key != NULL;
    c.row = sodium_malloc((size_t)g->dim * sizeof(float));
    w.buf = w.sealed ? malloc(4 + SEALED_RECORD_MAX) : NULL;
    if (!c.row || (w.sealed && !w.buf)) {
        status = fn_fail(err, FACENET_ERR_NO_MEMORY, "export: out of memory");
        goto out;
    }
    if (!(w.f = open_temp(path, tmp, sizeof tmp, err))) {
        status = err ? err->code : FACENET_ERR_IO;
        goto out;
    }
    if (w.sealed) {
        uint8_t subkey[32], header[crypto_secretstream_xchacha20poly1305_HEADERBYTES];
        gallery_export_stream_key(export_key, subkey);
        crypto_secretstream_xchacha20poly1305_init_push(&w.state, header, subkey);
        sodium_memzero(subkey, sizeof subkey);
        if (fwrite(GALLERY_EXPORT2_MAGIC, 1, GALLERY_EXPORT_MAGIC_BYTES, w.f) !=
                GALLERY_EXPORT_MAGIC_BYTES ||
            fwrite(header, 1, sizeof header, w.f) != sizeof header)
            status = fn_fail(err, FACENET_ERR_IO, "export %s: %s", path, strerror(errno));
    }
    pthread_rwlock_wrlock(&g->lock);
    snprintf(threshold, sizeof threshold, "%.6f", (double)g->threshold);
    if (status == FACENET_OK &&
        write_record(&w,
                     json_pack("{s:s,s:i,s:s,s:i,s:o}", "format", EXPORT_FORMAT, "version",
                               EXPORT_STREAM_VERSION, "model_id", g->model_id, "dim", g->dim,
                               "threshold",
                               isnan(g->threshold) ? json_null()
                                                   : json_real(strtod(threshold, NULL))),
                     0) != 0)
        status = fn_fail(err, FACENET_ERR_IO, "export %s: cannot write", path);
    gallery_store *s = g->store;
    if (status == FACENET_OK && (status = s->ops->begin(s, 0, err)) == FACENET_OK) {
        status = s->ops->subjects(s, 0, 0, export_subject_row, &c, err);
        if (status == FACENET_OK)
            status = c.status;
        s->ops->rollback(s);
    }
    pthread_rwlock_unlock(&g->lock);
    if (status == FACENET_OK &&
        write_record(&w,
                     json_pack("{s:{s:I,s:I}}", "end", "subjects", (json_int_t)w.subjects,
                               "templates", (json_int_t)w.templates),
                     1) != 0)
        status = fn_fail(err, FACENET_ERR_IO, "export %s: cannot write", path);
    if (status == FACENET_OK) {
        status = finish_temp(w.f, tmp, path, err);
    } else {
        fclose(w.f);
        unlink(tmp);
    }
out:
    if (c.row)
        sodium_free(c.row);
    if (w.buf) {
        sodium_memzero(w.buf, 4 + SEALED_RECORD_MAX);
        free(w.buf);
    }
    sodium_memzero(&w.state, sizeof w.state);
    return status;
}

/* ---- import ----------------------------------------------------------------------- */

typedef struct import_template {
    const char *preprocess, *image_sha256;
    float *embedding; /* points into import_plan.vectors */
} import_template;

typedef struct import_subject {
    const char *collection, *name;
    char *metadata; /* compact JSON or NULL; owned */
    import_template *templates;
    size_t n_templates;
} import_subject;

typedef struct import_plan {
    import_subject *subjects;
    size_t n_subjects;
    import_template *templates;
    float *vectors; /* sodium_malloc'd */
    size_t n_templates;
} import_plan;

static void plan_free(import_plan *p, int dim)
{
    for (size_t i = 0; i < p->n_subjects; i++)
        free(p->subjects[i].metadata);
    free(p->subjects);
    free(p->templates);
    if (p->vectors)
        sodium_free(p->vectors);
    (void)dim;
    memset(p, 0, sizeof *p);
}

static facenet_status bad(facenet_error *err, const char *path, const char *what, size_t i)
{
    return fn_fail(err, FACENET_ERR_FORMAT, "import %s: subject %zu: %s", path, i, what);
}

/* Validate the whole document into a plan; nothing is written yet. */
static facenet_status build_plan(const facenet_gallery *g, const char *path, json_t *doc,
                                 import_plan *plan, facenet_error *err)
{
    const char *format = NULL, *model_id = NULL;
    json_int_t version = 0, dim = 0;
    json_t *subjects = NULL;
    json_error_t jerr;
    facenet_status status;

    if (json_unpack_ex(doc, &jerr, 0, "{s:s,s:I,s:s,s:I,s:o}", "format", &format, "version",
                       &version, "model_id", &model_id, "dim", &dim, "subjects", &subjects) != 0)
        return fn_fail(err, FACENET_ERR_FORMAT, "import %s: not a gallery export (%s)", path,
                       jerr.text);
    if (strcmp(format, EXPORT_FORMAT) != 0 || version != EXPORT_VERSION)
        return fn_fail(err, FACENET_ERR_UNSUPPORTED, "import %s: format '%.40s' version %lld is not "
                       "one this facenet reads", path, format, (long long)version);
    if (strcmp(model_id, g->model_id) != 0)
        return fn_fail(err, FACENET_ERR_UNSUPPORTED,
                       "import %s holds templates of model '%.64s'; this gallery's model is '%s'",
                       path, model_id, g->model_id);
    if (dim != g->dim || !json_is_array(subjects))
        return fn_fail(err, FACENET_ERR_FORMAT, "import %s: dimension or subjects malformed", path);

    size_t n_subjects = json_array_size(subjects), n_templates = 0, i;
    json_t *s;
    json_array_foreach(subjects, i, s) {
        json_t *t = json_object_get(s, "templates");
        if (!json_is_array(t))
            return bad(err, path, "no templates array", i);
        n_templates += json_array_size(t);
    }
    plan->subjects = calloc(n_subjects ? n_subjects : 1, sizeof *plan->subjects);
    plan->templates = calloc(n_templates ? n_templates : 1, sizeof *plan->templates);
    plan->vectors = sodium_malloc((n_templates ? n_templates : 1) * (size_t)dim * sizeof(float));
    if (!plan->subjects || !plan->templates || !plan->vectors)
        return fn_fail(err, FACENET_ERR_NO_MEMORY, "import %s: out of memory", path);
    size_t t_at = 0;
    json_array_foreach(subjects, i, s) {
        import_subject *is = &plan->subjects[i];
        json_t *meta = NULL, *templates = NULL;
        if (json_unpack_ex(s, &jerr, 0, "{s:s,s:s,s?o,s:o}", "collection", &is->collection, "name",
                           &is->name, "metadata", &meta, "templates", &templates) != 0)
            return bad(err, path, jerr.text, i);
        plan->n_subjects = i + 1;
        if ((status = gallery_check_name(is->collection, "collection name", err)) ||
            (status = gallery_check_name(is->name, "subject name", err))) {
            fn_error_prefix(err, "import %s: subject %zu", path, i);
            return status;
        }
        if (meta && !json_is_null(meta)) {
            if (!json_is_object(meta))
                return bad(err, path, "metadata is not an object", i);
            is->metadata = json_dumps(meta, JSON_COMPACT | JSON_SORT_KEYS);
            if (!is->metadata)
                return fn_fail(err, FACENET_ERR_NO_MEMORY, "import: out of memory");
            if ((status = gallery_check_metadata(is->metadata, err))) {
                fn_error_prefix(err, "import %s: subject %zu", path, i);
                return status;
            }
        }
        is->templates = plan->templates + t_at;
        size_t j;
        json_t *t;
        json_array_foreach(templates, j, t) {
            import_template *it = &plan->templates[t_at];
            json_t *vec = NULL;
            it->embedding = plan->vectors + t_at * (size_t)dim;
            if (json_unpack_ex(t, &jerr, 0, "{s:s,s:s,s:o}", "preprocess", &it->preprocess,
                               "image_sha256", &it->image_sha256, "embedding", &vec) != 0)
                return bad(err, path, jerr.text, i);
            if ((status = gallery_check_label(it->preprocess, "preprocess label", 1, err)) ||
                (status = gallery_check_digest(it->image_sha256, err))) {
                fn_error_prefix(err, "import %s: subject %zu template %zu", path, i, j);
                return status;
            }
            if (!json_is_array(vec) || json_array_size(vec) != (size_t)dim)
                return bad(err, path, "an embedding has the wrong length", i);
            for (size_t d = 0; d < (size_t)dim; d++) {
                json_t *x = json_array_get(vec, d);
                double v = json_is_number(x) ? json_number_value(x) : NAN;
                if (!isfinite(v) || fabs(v) > 1e6)
                    return bad(err, path, "an embedding value is not a finite number", i);
                it->embedding[d] = (float)v;
            }
            if (gallery_normalise(it->embedding, (int)dim) != 0)
                return bad(err, path, "an embedding is zero", i);
            t_at++;
            is->n_templates++;
        }
    }
    plan->n_templates = t_at;
    return FACENET_OK;
}

static facenet_status apply_plan(facenet_gallery *g, const import_plan *plan, size_t *n_added,
                                 facenet_error *err)
{
    gallery_store *s = g->store;
    facenet_status status = s->ops->begin(s, 1, err);
    size_t added = 0;
    if (status != FACENET_OK)
        return status;
    for (size_t i = 0; status == FACENET_OK && i < plan->n_subjects; i++) {
        const import_subject *is = &plan->subjects[i];
        int64_t collection_id, subject_id, id;
        int created;
        status = gallery_subject_ensure(g, is->collection, is->name, is->metadata, &collection_id,
                                        &subject_id, &created, err);
        for (size_t j = 0; status == FACENET_OK && j < is->n_templates; j++) {
            const import_template *it = &is->templates[j];
            if (it->image_sha256 && *it->image_sha256) {
                status = s->ops->template_find(s, subject_id, it->image_sha256, &id, err);
                if (status == FACENET_OK)
                    continue; /* already there */
                if (status != FACENET_ERR_NOT_FOUND)
                    break;
            }
            status = gallery_template_add(g, subject_id, it->embedding, it->preprocess,
                                          it->image_sha256, &id, err);
            added++;
        }
    }
    if (status == FACENET_OK)
        status = s->ops->commit(s, err);
    else
        s->ops->rollback(s);
    if (status == FACENET_OK && n_added)
        *n_added = added;
    return status;
}

/* Version 1: one JSON document (sealed as a whole), read into memory. */
static facenet_status import_document(facenet_gallery *g, const char *path,
                                      const uint8_t *import_key, size_t *n_added,
                                      facenet_error *err)
{
    uint8_t *data = NULL, *plain = NULL;
    size_t size = 0, plain_len;
    import_plan plan;
    json_error_t jerr;
    facenet_status status;

    memset(&plan, 0, sizeof plan);
    if ((status = fn_read_file(path, IMPORT_MAX_BYTES, &data, &size, err)))
        return status;
    if (size >= GALLERY_EXPORT_MAGIC_BYTES &&
        memcmp(data, GALLERY_EXPORT_MAGIC, GALLERY_EXPORT_MAGIC_BYTES) == 0) {
        if (!import_key) {
            free(data);
            return fn_fail(err, FACENET_ERR_INVALID_ARGUMENT,
                           "import %s is sealed: give the key it was exported with", path);
        }
        if (size < GALLERY_EXPORT_OVERHEAD) {
            free(data);
            return fn_fail(err, FACENET_ERR_FORMAT, "import %s is truncated", path);
        }
        plain_len = size - GALLERY_EXPORT_OVERHEAD;
        plain = malloc(plain_len + 1);
        if (!plain) {
            free(data);
            return fn_fail(err, FACENET_ERR_NO_MEMORY, "import: out of memory");
        }
        if (gallery_open_export(import_key, data, size, plain) != 0) {
            free(data);
            free(plain);
            return fn_fail(err, FACENET_ERR_INTEGRITY,
                           "import %s: wrong key, or the file was altered or truncated", path);
        }
        free(data);
        data = plain;
        size = plain_len;
    }
    json_t *doc = json_loadb((const char *)data, size, JSON_REJECT_DUPLICATES, &jerr);
    sodium_memzero(data, size);
    free(data);
    if (!doc)
        return fn_fail(err, FACENET_ERR_FORMAT, "import %s: not valid JSON: %s (line %d)", path,
                       jerr.text, jerr.line);
    status = build_plan(g, path, doc, &plan, err);
    if (status == FACENET_OK) {
        pthread_rwlock_wrlock(&g->lock);
        status = apply_plan(g, &plan, n_added, err);
        if (status == FACENET_OK)
            status = gallery_reload(g, err);
        pthread_rwlock_unlock(&g->lock);
    }
    plan_free(&plan, g->dim);
    json_decref(doc);
    return status;
}

/* ---- streamed import (version 2) ---------------------------------------------------- */

typedef struct record_reader {
    FILE *f;
    const char *path;
    int sealed, ended; /* sealed: the FINAL tag was seen */
    crypto_secretstream_xchacha20poly1305_state state;
    uint8_t *in;       /* one sealed record                           */
    char *text;        /* one record, NUL-terminated, RECORD_MAX_BYTES */
    size_t len;
} record_reader;

/* The next record into r->text. Returns 1, 0 at the end of the file, or
 * -1 with err set. Nothing is allocated from a length in the file. */
static int next_record(record_reader *r, facenet_error *err)
{
    if (!r->sealed) {
        size_t n = 0;
        int ch;
        while ((ch = getc(r->f)) != EOF && ch != '\n') {
            if (n == RECORD_MAX_BYTES) {
                fn_fail(err, FACENET_ERR_LIMIT, "import %s: a record is longer than %zu bytes",
                        r->path, RECORD_MAX_BYTES);
                return -1;
            }
            r->text[n++] = (char)ch;
        }
        if (ferror(r->f)) {
            fn_fail(err, FACENET_ERR_IO, "import %s: read error", r->path);
            return -1;
        }
        if (ch == EOF && n == 0)
            return 0;
        r->text[n] = 0;
        r->len = n;
        return 1;
    }
    uint8_t head[4];
    size_t got = fread(head, 1, 4, r->f);
    if (got == 0 && feof(r->f))
        return 0;
    uint32_t len = (uint32_t)head[0] | (uint32_t)head[1] << 8 | (uint32_t)head[2] << 16 |
                   (uint32_t)head[3] << 24;
    if (got != 4 || r->ended || len < crypto_secretstream_xchacha20poly1305_ABYTES ||
        len > SEALED_RECORD_MAX || fread(r->in, 1, len, r->f) != len) {
        fn_fail(err, FACENET_ERR_INTEGRITY,
                "import %s: wrong key, or the file was altered or truncated", r->path);
        return -1;
    }
    unsigned long long plain_len = 0;
    unsigned char tag = 0;
    if (crypto_secretstream_xchacha20poly1305_pull(
            &r->state, (uint8_t *)r->text, &plain_len, &tag, r->in, len,
            (const uint8_t *)GALLERY_EXPORT2_MAGIC, GALLERY_EXPORT_MAGIC_BYTES) != 0) {
        fn_fail(err, FACENET_ERR_INTEGRITY,
                "import %s: wrong key, or the file was altered or truncated", r->path);
        return -1;
    }
    r->ended = tag == crypto_secretstream_xchacha20poly1305_TAG_FINAL;
    r->text[plain_len] = 0;
    r->len = (size_t)plain_len;
    return 1;
}

typedef struct stream_import {
    facenet_gallery *g;
    record_reader *r;
    const char *path;
    int64_t subject_id; /* 0 before the first subject record */
    float *vec;         /* sodium_malloc'd, dim */
    size_t record, subjects, templates, added;
    facenet_error *err;
} stream_import;

static facenet_status record_bad(stream_import *im, facenet_status code, const char *what)
{
    return fn_fail(im->err, code, "import %s: record %zu: %s", im->path, im->record, what);
}

static facenet_status import_subject_record(stream_import *im, json_t *obj)
{
    const char *collection = NULL, *name = NULL;
    json_t *meta = NULL;
    json_error_t jerr;
    int64_t collection_id;
    int created;
    facenet_status status;
    if (json_unpack_ex(obj, &jerr, 0, "{s:s,s:s,s?o}", "collection", &collection, "name", &name,
                       "metadata", &meta) != 0)
        return record_bad(im, FACENET_ERR_FORMAT, jerr.text);
    if ((status = gallery_check_name(collection, "collection name", im->err)) ||
        (status = gallery_check_name(name, "subject name", im->err))) {
        fn_error_prefix(im->err, "import %s: record %zu", im->path, im->record);
        return status;
    }
    char *metadata = NULL;
    if (meta && !json_is_null(meta)) {
        if (!json_is_object(meta))
            return record_bad(im, FACENET_ERR_FORMAT, "metadata is not an object");
        if (!(metadata = json_dumps(meta, JSON_COMPACT | JSON_SORT_KEYS)))
            return record_bad(im, FACENET_ERR_NO_MEMORY, "out of memory");
        if ((status = gallery_check_metadata(metadata, im->err))) {
            fn_error_prefix(im->err, "import %s: record %zu", im->path, im->record);
            free(metadata);
            return status;
        }
    }
    status = gallery_subject_ensure(im->g, collection, name, metadata, &collection_id,
                                    &im->subject_id, &created, im->err);
    free(metadata);
    im->subjects++;
    return status;
}

static facenet_status import_template_record(stream_import *im, json_t *obj)
{
    const char *preprocess = NULL, *sha = NULL;
    json_t *vec = NULL;
    json_error_t jerr;
    facenet_status status;
    gallery_store *s = im->g->store;
    size_t dim = (size_t)im->g->dim;
    if (!im->subject_id)
        return record_bad(im, FACENET_ERR_FORMAT, "a template before any subject");
    if (json_unpack_ex(obj, &jerr, 0, "{s:s,s:s,s:o}", "preprocess", &preprocess, "image_sha256",
                       &sha, "embedding", &vec) != 0)
        return record_bad(im, FACENET_ERR_FORMAT, jerr.text);
    if ((status = gallery_check_label(preprocess, "preprocess label", 1, im->err)) ||
        (status = gallery_check_digest(sha, im->err))) {
        fn_error_prefix(im->err, "import %s: record %zu", im->path, im->record);
        return status;
    }
    if (!json_is_array(vec) || json_array_size(vec) != dim)
        return record_bad(im, FACENET_ERR_FORMAT, "an embedding has the wrong length");
    for (size_t d = 0; d < dim; d++) {
        json_t *x = json_array_get(vec, d);
        double v = json_is_number(x) ? json_number_value(x) : NAN;
        if (!isfinite(v) || fabs(v) > 1e6)
            return record_bad(im, FACENET_ERR_FORMAT, "an embedding value is not a finite number");
        im->vec[d] = (float)v;
    }
    if (gallery_normalise(im->vec, (int)dim) != 0)
        return record_bad(im, FACENET_ERR_FORMAT, "an embedding is zero");
    im->templates++;
    int64_t id;
    if (*sha) {
        status = s->ops->template_find(s, im->subject_id, sha, &id, im->err);
        if (status == FACENET_OK)
            return FACENET_OK; /* already there */
        if (status != FACENET_ERR_NOT_FOUND)
            return status;
    }
    status = gallery_template_add(im->g, im->subject_id, im->vec, preprocess, sha, &id, im->err);
    if (status == FACENET_OK)
        im->added++;
    return status;
}

/* The records after the header, inside the caller's write transaction. */
static facenet_status import_records(stream_import *im)
{
    json_error_t jerr;
    facenet_status status = FACENET_OK;
    for (;;) {
        int got = next_record(im->r, im->err);
        if (got < 0)
            return im->err ? im->err->code : FACENET_ERR_FORMAT;
        if (got == 0)
            return fn_fail(im->err, FACENET_ERR_FORMAT,
                           "import %s is truncated: it has no end record", im->path);
        im->record++;
        json_t *rec = json_loadb(im->r->text, im->r->len, JSON_REJECT_DUPLICATES, &jerr);
        sodium_memzero(im->r->text, im->r->len);
        json_t *body = NULL;
        if (!json_is_object(rec) || json_object_size(rec) != 1) {
            status = record_bad(im, FACENET_ERR_FORMAT, rec ? "not a one-key object" : jerr.text);
        } else if ((body = json_object_get(rec, "subject")) && json_is_object(body)) {
            status = import_subject_record(im, body);
        } else if ((body = json_object_get(rec, "template")) && json_is_object(body)) {
            status = import_template_record(im, body);
        } else if ((body = json_object_get(rec, "end")) && json_is_object(body)) {
            json_int_t subjects = -1, templates = -1;
            if (json_unpack(body, "{s:I,s:I}", "subjects", &subjects, "templates", &templates) != 0 ||
                subjects != (json_int_t)im->subjects || templates != (json_int_t)im->templates)
                status = record_bad(im, FACENET_ERR_FORMAT,
                                    "the end record does not match the records before it");
            else if (next_record(im->r, im->err) != 0 || (im->r->sealed && !im->r->ended))
                status = record_bad(im, FACENET_ERR_FORMAT, "data after the end record");
            json_decref(rec);
            return status;
        } else {
            status = record_bad(im, FACENET_ERR_FORMAT, "an unknown record");
        }
        json_decref(rec);
        if (status != FACENET_OK)
            return status;
    }
}

/* The header record: format, version, model and dimension. */
static facenet_status check_header(const facenet_gallery *g, const char *path, json_t *doc,
                                   facenet_error *err)
{
    const char *format = NULL, *model_id = NULL;
    json_int_t version = 0, dim = 0;
    json_error_t jerr;
    if (json_unpack_ex(doc, &jerr, 0, "{s:s,s:I,s:s,s:I}", "format", &format, "version", &version,
                       "model_id", &model_id, "dim", &dim) != 0)
        return fn_fail(err, FACENET_ERR_FORMAT, "import %s: not a gallery export (%s)", path,
                       jerr.text);
    if (strcmp(format, EXPORT_FORMAT) != 0 || version != EXPORT_STREAM_VERSION)
        return fn_fail(err, FACENET_ERR_UNSUPPORTED,
                       "import %s: format '%.40s' version %lld is not one this facenet reads",
                       path, format, (long long)version);
    if (strcmp(model_id, g->model_id) != 0)
        return fn_fail(err, FACENET_ERR_UNSUPPORTED,
                       "import %s holds templates of model '%.64s'; this gallery's model is '%s'",
                       path, model_id, g->model_id);
    if (dim != g->dim)
        return fn_fail(err, FACENET_ERR_FORMAT, "import %s: %lld-D templates, not %d-D", path,
                       (long long)dim, g->dim);
    return FACENET_OK;
}

/* A version 2 export from an open reader positioned after its magic (and
 * secretstream header). One transaction: any bad record rolls back
 * everything before it. */
static facenet_status import_stream(facenet_gallery *g, record_reader *r, size_t *n_added,
                                    facenet_error *err)
{
    stream_import im;
    json_error_t jerr;
    memset(&im, 0, sizeof im);
    im.g = g;
    im.r = r;
    im.path = r->path;
    im.err = err;
    int got = next_record(r, err);
    if (got <= 0)
        return got < 0 ? (err ? err->code : FACENET_ERR_FORMAT)
                       : fn_fail(err, FACENET_ERR_FORMAT, "import %s is empty", r->path);
    json_t *header = json_loadb(r->text, r->len, JSON_REJECT_DUPLICATES, &jerr);
    facenet_status status = header ? check_header(g, r->path, header, err)
                                   : fn_fail(err, FACENET_ERR_FORMAT,
                                             "import %s: not a gallery export (%s)", r->path,
                                             jerr.text);
    json_decref(header);
    if (status != FACENET_OK)
        return status;
    im.record = 1; /* the header; records are numbered as lines are */
    im.vec = sodium_malloc((size_t)g->dim * sizeof(float));
    if (!im.vec)
        return fn_fail(err, FACENET_ERR_NO_MEMORY, "import: out of memory");
    pthread_rwlock_wrlock(&g->lock);
    gallery_store *s = g->store;
    status = s->ops->begin(s, 1, err);
    if (status == FACENET_OK) {
        status = import_records(&im);
        if (status == FACENET_OK)
            status = s->ops->commit(s, err);
        else
            s->ops->rollback(s);
    }
    if (status == FACENET_OK)
        status = gallery_reload(g, err);
    pthread_rwlock_unlock(&g->lock);
    sodium_free(im.vec);
    if (status == FACENET_OK && n_added)
        *n_added = im.added;
    return status;
}

/* Is this plain file a version 2 stream? Its first line is then a whole
 * header object; a version 1 document's first line is "{". */
static int is_plain_stream(record_reader *r)
{
    json_error_t jerr;
    facenet_error ignored;
    if (next_record(r, &ignored) != 1)
        return 0;
    json_t *doc = json_loadb(r->text, r->len, 0, &jerr);
    json_t *version = json_object_get(doc, "version");
    int yes = json_is_integer(version) && json_integer_value(version) >= EXPORT_STREAM_VERSION;
    json_decref(doc);
    return yes;
}

facenet_status facenet_gallery_import(facenet_gallery *g, const char *path,
                                      const uint8_t *import_key, size_t *n_added,
                                      facenet_error *err)
{
    record_reader r;
    uint8_t magic[GALLERY_EXPORT_MAGIC_BYTES];
    facenet_status status;

    if (n_added)
        *n_added = 0;
    if (!g || !path)
        return fn_fail(err, FACENET_ERR_INVALID_ARGUMENT, "import: missing argument");
    if (g->flags & FACENET_GALLERY_READ_ONLY)
        return fn_fail(err, FACENET_ERR_INVALID_ARGUMENT, "gallery %s was opened read-only",
                       g->path);
    memset(&r, 0, sizeof r);
    r.path = path;
    r.f = fopen(path, "rb");
    if (!r.f)
        return fn_fail(err, errno == ENOENT ? FACENET_ERR_NOT_FOUND : FACENET_ERR_IO,
                       "import %s: %s", path, strerror(errno));
    r.text = sodium_malloc(RECORD_MAX_BYTES + 1);
    r.in = malloc(SEALED_RECORD_MAX);
    if (!r.text || !r.in) {
        status = fn_fail(err, FACENET_ERR_NO_MEMORY, "import: out of memory");
        goto out;
    }
    size_t got = fread(magic, 1, sizeof magic, r.f);
    if (got == sizeof magic && memcmp(magic, GALLERY_EXPORT2_MAGIC, sizeof magic) == 0) {
        uint8_t header[crypto_secretstream_xchacha20poly1305_HEADERBYTES], subkey[32];
        if (!import_key) {
            status = fn_fail(err, FACENET_ERR_INVALID_ARGUMENT,
                             "import %s is sealed: give the key it was exported with", path);
            goto out;
        }
        if (fread(header, 1, sizeof header, r.f) != sizeof header) {
            status = fn_fail(err, FACENET_ERR_FORMAT, "import %s is truncated", path);
            goto out;
        }
        gallery_export_stream_key(import_key, subkey);
        int ok = crypto_secretstream_xchacha20poly1305_init_pull(&r.state, header, subkey) == 0;
        sodium_memzero(subkey, sizeof subkey);
        if (!ok) {
            status = fn_fail(err, FACENET_ERR_INTEGRITY, "import %s is altered", path);
            goto out;
        }
        r.sealed = 1;
        status = import_stream(g, &r, n_added, err);
        goto out;
    }
    rewind(r.f);
    if (is_plain_stream(&r)) {
        rewind(r.f);
        status = import_stream(g, &r, n_added, err);
        goto out;
    }
    fclose(r.f);
    r.f = NULL;
    status = import_document(g, path, import_key, n_added, err);
out:
    if (r.f)
        fclose(r.f);
    if (r.text)
        sodium_free(r.text);
    free(r.in);
    sodium_memzero(&r.state, sizeof r.state);
    return status;
}
