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

typedef struct export_subject {
    int64_t id;
    json_t *templates; /* borrowed from the subject object */
} export_subject;

typedef struct export_ctx {
    facenet_gallery *g;
    json_t *subjects;
    export_subject *index;
    size_t n, cap;
    float *row;
    facenet_status status;
    facenet_error *err;
} export_ctx;

static int export_subject_row(void *arg, const gallery_subject_row *r)
{
    export_ctx *c = arg;
    json_t *meta = NULL, *templates = json_array();
    if (r->metadata) {
        meta = json_loads(r->metadata, 0, NULL);
        if (!meta) {
            json_decref(templates);
            c->status = fn_fail(c->err, FACENET_ERR_FORMAT,
                                "gallery %s: subject %lld has malformed metadata", c->g->path,
                                (long long)r->id);
            return 1;
        }
    }
    json_t *obj = json_pack("{s:s,s:s,s:o*,s:s,s:o}", "collection", r->collection, "name", r->name,
                            "metadata", meta, "created_at", r->created_at, "templates", templates);
    if (!obj || c->n == c->cap) {
        size_t cap = c->cap ? c->cap * 2 : 256;
        export_subject *idx = obj ? realloc(c->index, cap * sizeof *idx) : NULL;
        if (!idx) {
            json_decref(obj);
            c->status = fn_fail(c->err, FACENET_ERR_NO_MEMORY, "export: out of memory");
            return 1;
        }
        c->index = idx;
        c->cap = cap;
    }
    c->index[c->n].id = r->id;
    c->index[c->n].templates = templates;
    c->n++;
    json_array_append_new(c->subjects, obj);
    return 0;
}

static json_t *find_templates(const export_ctx *c, int64_t subject_id)
{
    size_t lo = 0, hi = c->n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (c->index[mid].id < subject_id)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo < c->n && c->index[lo].id == subject_id ? c->index[lo].templates : NULL;
}

static int export_template_row(void *arg, const gallery_template_row *r)
{
    export_ctx *c = arg;
    json_t *list = find_templates(c, r->subject_id);
    if (!list) {
        c->status = fn_fail(c->err, FACENET_ERR_FORMAT,
                            "gallery %s: template %lld belongs to a missing subject", c->g->path,
                            (long long)r->id);
        return 1;
    }
    c->status = gallery_open_row(c->g, r, c->row, c->err);
    if (c->status != FACENET_OK)
        return 1;
    json_t *vec = json_array();
    for (int i = 0; i < c->g->dim; i++)
        json_array_append_new(vec, json_real(c->row[i]));
    json_array_append_new(list, json_pack("{s:s,s:s,s:s,s:o}", "preprocess", r->preprocess,
                                          "image_sha256", r->image_sha256, "created_at",
                                          r->created_at, "embedding", vec));
    return 0;
}

facenet_status facenet_gallery_export(facenet_gallery *g, const char *path,
                                      const uint8_t *export_key, facenet_error *err)
{
    export_ctx c;
    char threshold[32];
    facenet_status status;
    json_t *doc = NULL;

    if (!g || !path)
        return fn_fail(err, FACENET_ERR_INVALID_ARGUMENT, "export: missing argument");
    memset(&c, 0, sizeof c);
    c.g = g;
    c.err = err;
    c.subjects = json_array();
    c.row = sodium_malloc((size_t)g->dim * sizeof(float));
    if (!c.subjects || !c.row) {
        json_decref(c.subjects);
        if (c.row)
            sodium_free(c.row);
        return fn_fail(err, FACENET_ERR_NO_MEMORY, "export: out of memory");
    }
    pthread_rwlock_wrlock(&g->lock);
    gallery_store *s = g->store;
    status = s->ops->begin(s, 0, err);
    if (status == FACENET_OK) {
        status = s->ops->subjects(s, 0, 0, export_subject_row, &c, err);
        if (status == FACENET_OK)
            status = c.status;
        if (status == FACENET_OK)
            status = s->ops->templates(s, 0, 0, -1, export_template_row, &c, err);
        if (status == FACENET_OK)
            status = c.status;
        s->ops->rollback(s);
    }
    snprintf(threshold, sizeof threshold, "%.6f", (double)g->threshold);
    doc = json_pack("{s:s,s:i,s:s,s:i,s:o,s:O}", "format", EXPORT_FORMAT, "version",
                    EXPORT_VERSION, "model_id", g->model_id, "dim", g->dim, "threshold",
                    isnan(g->threshold) ? json_null() : json_real(strtod(threshold, NULL)),
                    "subjects", c.subjects);
    pthread_rwlock_unlock(&g->lock);
    sodium_free(c.row);
    json_decref(c.subjects);
    free(c.index);
    if (status == FACENET_OK && !doc)
        status = fn_fail(err, FACENET_ERR_NO_MEMORY, "export: out of memory");
    if (status != FACENET_OK) {
        json_decref(doc);
        return status;
    }
    /* Nine significant digits: every float32 survives the round trip. */
    char *text = json_dumps(doc, JSON_INDENT(1) | JSON_REAL_PRECISION(9));
    json_decref(doc);
    if (!text)
        return fn_fail(err, FACENET_ERR_NO_MEMORY, "export: out of memory");
    size_t len = strlen(text);
    if (export_key) {
        uint8_t *sealed = malloc(len + GALLERY_EXPORT_OVERHEAD);
        if (!sealed) {
            status = fn_fail(err, FACENET_ERR_NO_MEMORY, "export: out of memory");
        } else {
            gallery_seal_export(export_key, (const uint8_t *)text, len, sealed);
            status = fn_write_file_atomic(path, sealed, len + GALLERY_EXPORT_OVERHEAD, "export", err);
            free(sealed);
        }
    } else {
        status = fn_write_file_atomic(path, text, len, "export", err);
    }
    sodium_memzero(text, len);
    free(text);
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

facenet_status facenet_gallery_import(facenet_gallery *g, const char *path,
                                      const uint8_t *import_key, size_t *n_added,
                                      facenet_error *err)
{
    uint8_t *data = NULL, *plain = NULL;
    size_t size = 0, plain_len;
    import_plan plan;
    json_error_t jerr;
    facenet_status status;

    if (n_added)
        *n_added = 0;
    if (!g || !path)
        return fn_fail(err, FACENET_ERR_INVALID_ARGUMENT, "import: missing argument");
    if (g->flags & FACENET_GALLERY_READ_ONLY)
        return fn_fail(err, FACENET_ERR_INVALID_ARGUMENT, "gallery %s was opened read-only",
                       g->path);
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
