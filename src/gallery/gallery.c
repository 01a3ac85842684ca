/*
 * gallery.c - the public gallery API: open, enroll, search, remove, rekey.
 *
 * The store keeps sealed rows; this layer validates every input, seals and
 * opens templates, authenticates subject rows and keeps the decrypted
 * matrix (index.c) that searches scan. Nothing here logs keys or
 * embeddings, and every buffer that held one is wiped before it is freed.
 */
#include <math.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/error.h"
#include "gallery/gallery_internal.h"
#include "gallery/names.h"

#define META_FORMAT "facenet-gallery"
#define ENROLL_MAX_TEMPLATES 100000

/* ---- name tables --------------------------------------------------------------- */

static void names_free(gallery_names *names)
{
    for (size_t i = 0; i < names->n; i++)
        free(names->e[i].name);
    free(names->e);
    memset(names, 0, sizeof *names);
}

static int names_reserve(gallery_names *names, size_t extra)
{
    if (names->n + extra <= names->cap)
        return 0;
    size_t cap = names->cap ? names->cap : 16;
    while (cap < names->n + extra)
        cap *= 2;
    gallery_name_entry *e = realloc(names->e, cap * sizeof *e);
    if (!e)
        return -1;
    names->e = e;
    names->cap = cap;
    return 0;
}

/* Insert keeping ids sorted (appends in the common case). Needs room. */
static int names_add(gallery_names *names, int64_t id, int64_t collection_id, const char *name)
{
    char *copy = strdup(name);
    if (!copy || names_reserve(names, 1) != 0) {
        free(copy);
        return -1;
    }
    size_t at = names->n;
    while (at > 0 && names->e[at - 1].id > id)
        at--;
    memmove(names->e + at + 1, names->e + at, (names->n - at) * sizeof *names->e);
    names->e[at].id = id;
    names->e[at].collection_id = collection_id;
    names->e[at].name = copy;
    names->n++;
    return 0;
}

const gallery_name_entry *gallery_names_find(const gallery_names *names, int64_t id)
{
    size_t lo = 0, hi = names->n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (names->e[mid].id < id)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo < names->n && names->e[lo].id == id ? &names->e[lo] : NULL;
}

static void names_remove(gallery_names *names, int64_t id)
{
    const gallery_name_entry *found = gallery_names_find(names, id);
    if (!found)
        return;
    size_t at = (size_t)(found - names->e);
    free(names->e[at].name);
    memmove(names->e + at, names->e + at + 1, (names->n - at - 1) * sizeof *names->e);
    names->n--;
}

int64_t gallery_collection_lookup(const facenet_gallery *g, const char *name)
{
    for (size_t i = 0; i < g->collections.n; i++)
        if (strcmp(g->collections.e[i].name, name) == 0)
            return g->collections.e[i].id;
    return 0;
}

/* ---- loading --------------------------------------------------------------------- */

/* Templates are opened in batches, the decryption split across the cores:
 * at a million templates, opening is most of the cost of opening a
 * gallery. The SQLite walk itself stays on this thread. */
#define LOAD_BATCH 8192
#define LOAD_PARALLEL_MIN 256

typedef struct load_batch {
    uint8_t *sealed; /* LOAD_BATCH sealed templates                  */
    int64_t *template_id, *subject_id, *collection_id;
    float *rows;     /* LOAD_BATCH * dim, sodium_malloc'd: plaintext */
    unsigned char *opened;
    size_t n;
} load_batch;

typedef struct load_ctx {
    facenet_gallery *g;
    gallery_index index;
    gallery_names subjects, collections;
    load_batch batch;
    size_t sealed_size;
    facenet_status status;
    facenet_error *err;
} load_ctx;

typedef struct open_range {
    const load_ctx *c;
    size_t begin, end;
} open_range;

static void *open_range_run(void *arg)
{
    const open_range *r = arg;
    const load_ctx *c = r->c;
    const facenet_gallery *g = c->g;
    const load_batch *b = &c->batch;
    size_t d = (size_t)g->dim;
    for (size_t i = r->begin; i < r->end; i++)
        b->opened[i] = gallery_open_template(g->keys, g->gallery_id, b->template_id[i],
                                             b->subject_id[i], g->model_id,
                                             b->sealed + i * c->sealed_size, c->sealed_size,
                                             b->rows + i * d, g->dim) == 0;
    return NULL;
}

/* Open the batch (two threads when there is enough of it), then append
 * it to the matrix in row order, failing at the first bad row. */
static facenet_status load_flush(load_ctx *c)
{
    load_batch *b = &c->batch;
    facenet_gallery *g = c->g;
    size_t d = (size_t)g->dim;
    facenet_status status = FACENET_OK;
    open_range whole = {c, 0, b->n}, low = {c, 0, b->n / 2}, high = {c, b->n / 2, b->n};
    pthread_t helper;
    if (b->n >= LOAD_PARALLEL_MIN && sysconf(_SC_NPROCESSORS_ONLN) > 1 &&
        pthread_create(&helper, NULL, open_range_run, &high) == 0) {
        open_range_run(&low);
        pthread_join(helper, NULL);
    } else {
        open_range_run(&whole);
    }
    for (size_t i = 0; i < b->n && status == FACENET_OK; i++) {
        if (!b->opened[i])
            status = fn_fail(c->err, FACENET_ERR_INTEGRITY,
                             "gallery %s: template %lld fails authentication: it was altered, "
                             "moved to another subject, or the file is damaged",
                             g->path, (long long)b->template_id[i]);
        else if (gallery_index_add(&c->index, b->rows + i * d, b->template_id[i], b->subject_id[i],
                                   b->collection_id[i]) != 0)
            status = fn_fail(c->err, FACENET_ERR_FORMAT,
                             "gallery %s: template %lld is not a usable embedding (or out of "
                             "memory)",
                             g->path, (long long)b->template_id[i]);
    }
    sodium_memzero(b->rows, b->n * d * sizeof(float));
    b->n = 0;
    return status;
}

static int load_batch_init(load_batch *b, size_t sealed_size, int dim)
{
    memset(b, 0, sizeof *b);
    b->sealed = malloc(LOAD_BATCH * sealed_size);
    b->template_id = malloc(LOAD_BATCH * sizeof *b->template_id);
    b->subject_id = malloc(LOAD_BATCH * sizeof *b->subject_id);
    b->collection_id = malloc(LOAD_BATCH * sizeof *b->collection_id);
    b->opened = malloc(LOAD_BATCH);
    b->rows = sodium_malloc(LOAD_BATCH * (size_t)dim * sizeof(float));
    return b->sealed && b->template_id && b->subject_id && b->collection_id && b->opened &&
                   b->rows
               ? 0
               : -1;
}

static void load_batch_free(load_batch *b)
{
    free(b->sealed);
    free(b->template_id);
    free(b->subject_id);
    free(b->collection_id);
    free(b->opened);
    if (b->rows)
        sodium_free(b->rows); /* wipes */
    memset(b, 0, sizeof *b);
}

static int load_subject(void *arg, const gallery_subject_row *r)
{
    load_ctx *c = arg;
    facenet_gallery *g = c->g;
    if (strlen(r->name) >= FACENET_GALLERY_NAME_MAX ||
        strlen(r->collection) >= FACENET_GALLERY_NAME_MAX ||
        gallery_subject_tag_verify(g->keys, g->gallery_id, r->id, r->collection, r->name,
                                   r->metadata, r->tag, r->tag_len) != 0) {
        c->status = fn_fail(c->err, FACENET_ERR_INTEGRITY,
                            "gallery %s: subject %lld fails authentication: its name, collection "
                            "or metadata was changed outside facenet, or the file is damaged",
                            g->path, (long long)r->id);
        return 1;
    }
    if (!gallery_names_find(&c->collections, r->collection_id) &&
        names_add(&c->collections, r->collection_id, 0, r->collection) != 0) {
        c->status = fn_fail(c->err, FACENET_ERR_NO_MEMORY, "gallery %s: out of memory", g->path);
        return 1;
    }
    if (names_add(&c->subjects, r->id, r->collection_id, r->name) != 0) {
        c->status = fn_fail(c->err, FACENET_ERR_NO_MEMORY, "gallery %s: out of memory", g->path);
        return 1;
    }
    return 0;
}

facenet_status gallery_open_row(facenet_gallery *g, const gallery_template_row *r, float *out,
                                facenet_error *err)
{
    if (strcmp(r->model_id, g->model_id) != 0)
        return fn_fail(err, FACENET_ERR_UNSUPPORTED,
                       "gallery %s: template %lld was made by model '%.64s', but the gallery's "
                       "model is '%s'",
                       g->path, (long long)r->id, r->model_id, g->model_id);
    if (gallery_open_template(g->keys, g->gallery_id, r->id, r->subject_id, r->model_id,
                              r->sealed, r->sealed_len, out, g->dim) != 0)
        return fn_fail(err, FACENET_ERR_INTEGRITY,
                       "gallery %s: template %lld fails authentication: it was altered, moved "
                       "to another subject, or the file is damaged",
                       g->path, (long long)r->id);
    return FACENET_OK;
}

static int load_template(void *arg, const gallery_template_row *r)
{
    load_ctx *c = arg;
    facenet_gallery *g = c->g;
    load_batch *b = &c->batch;
    const gallery_name_entry *subject = gallery_names_find(&c->subjects, r->subject_id);
    if (!subject) {
        c->status = fn_fail(c->err, FACENET_ERR_FORMAT,
                            "gallery %s: template %lld belongs to a missing subject %lld",
                            g->path, (long long)r->id, (long long)r->subject_id);
        return 1;
    }
    if (strcmp(r->model_id, g->model_id) != 0 || r->sealed_len != c->sealed_size) {
        /* The per-row path has the messages for these. */
        float *row = sodium_malloc((size_t)g->dim * sizeof(float));
        c->status = row ? gallery_open_row(g, r, row, c->err)
                        : fn_fail(c->err, FACENET_ERR_NO_MEMORY, "gallery: out of memory");
        if (row)
            sodium_free(row);
        if (c->status == FACENET_OK) /* cannot happen: the length is wrong */
            c->status = fn_fail(c->err, FACENET_ERR_INTEGRITY,
                                "gallery %s: template %lld has a sealed blob of the wrong size",
                                g->path, (long long)r->id);
        return 1;
    }
    memcpy(b->sealed + b->n * c->sealed_size, r->sealed, c->sealed_size);
    b->template_id[b->n] = r->id;
    b->subject_id[b->n] = r->subject_id;
    b->collection_id[b->n] = subject->collection_id;
    if (++b->n == LOAD_BATCH) {
        c->status = load_flush(c);
        return c->status != FACENET_OK;
    }
    return 0;
}

facenet_status gallery_reload(facenet_gallery *g, facenet_error *err)
{
    load_ctx c;
    gallery_store_stats st;
    gallery_store *s = g->store;
    facenet_status status;
    int64_t version = 0;

    memset(&c, 0, sizeof c);
    c.g = g;
    c.err = err;
    c.sealed_size = gallery_sealed_size(g->dim);
    unsigned copies = ((g->flags & FACENET_GALLERY_INT8) ? GALLERY_INDEX_INT8 : 0) |
                      ((g->flags & FACENET_GALLERY_INT4) ? GALLERY_INDEX_INT4 : 0);
    if (gallery_index_init(&c.index, g->dim, copies) != 0)
        return fn_fail(err, FACENET_ERR_INTERNAL, "gallery %s: bad dimension", g->path);
    if (load_batch_init(&c.batch, c.sealed_size, g->dim) != 0) {
        load_batch_free(&c.batch);
        return fn_fail(err, FACENET_ERR_NO_MEMORY, "gallery %s: out of memory", g->path);
    }
    /* One read transaction: subjects and templates from the same snapshot. */
    status = s->ops->begin(s, 0, err);
    if (status == FACENET_OK) {
        status = s->ops->data_version(s, &version, err);
        if (status == FACENET_OK)
            status = s->ops->stats(s, &st, err);
        if (status == FACENET_OK && gallery_index_reserve(&c.index, (size_t)st.templates) != 0)
            status = fn_fail(err, FACENET_ERR_NO_MEMORY,
                             "gallery %s: no memory for %lld templates", g->path,
                             (long long)st.templates);
        if (status == FACENET_OK) {
            c.status = FACENET_OK;
            status = s->ops->subjects(s, 0, 0, load_subject, &c, err);
            if (status == FACENET_OK)
                status = c.status;
        }
        if (status == FACENET_OK) {
            status = s->ops->templates(s, 0, 0, -1, load_template, &c, err);
            if (status == FACENET_OK)
                status = c.status;
        }
        if (status == FACENET_OK && c.batch.n > 0)
            status = load_flush(&c);
        s->ops->rollback(s); /* read-only: ending it is all we need */
    }
    load_batch_free(&c.batch);
    if (status != FACENET_OK) {
        gallery_index_free(&c.index);
        names_free(&c.subjects);
        names_free(&c.collections);
        return status;
    }
    gallery_index_free(&g->index);
    names_free(&g->subjects);
    names_free(&g->collections);
    g->index = c.index;
    g->subjects = c.subjects;
    g->collections = c.collections;
    g->data_version = version;
    return FACENET_OK;
}

/* ---- open / create ------------------------------------------------------------- */

static facenet_status meta_text(gallery_store *s, const char *key, char *buf, size_t size,
                                facenet_error *err)
{
    uint8_t *v;
    size_t len;
    facenet_status status = s->ops->meta_get(s, key, &v, &len, err);
    if (status != FACENET_OK)
        return status == FACENET_ERR_NOT_FOUND ? FACENET_ERR_FORMAT : status;
    if (len == 0 || len >= size || memchr(v, 0, len)) {
        free(v);
        return fn_fail(err, FACENET_ERR_FORMAT, "gallery metadata '%s' is malformed", key);
    }
    memcpy(buf, v, len);
    buf[len] = 0;
    free(v);
    return FACENET_OK;
}

static facenet_status meta_put_text(gallery_store *s, const char *key, const char *value,
                                    facenet_error *err)
{
    return s->ops->meta_set(s, key, value, strlen(value), err);
}

/* Open-set (1:N) thresholds measured on LFW (docs/ACCURACY.md, "Galleries"):
 * the lowest threshold at which at most 1% of never-enrolled people are
 * accepted against a gallery of the 1,680 LFW people with two or more
 * images (one image each). The 1:1 verification threshold is far too low
 * here: a stranger meets every enrolled person, and at MobileFaceNet's 0.40
 * 97% of strangers matched someone (98% at the dlib ResNet's 0.91). A model
 * that has not been measured this way gets no default. */
static const struct {
    const char *model;
    float threshold;
} open_set_thresholds[] = {
    {"mobilefacenet", 0.616f},
    {"dlib-resnet", 0.954f},
    {"dlib-resnet-tfjs", 0.954f},
};

static float default_threshold(const char *model_id)
{
    size_t name_len = strcspn(model_id, "@");
    for (size_t i = 0; i < sizeof open_set_thresholds / sizeof open_set_thresholds[0]; i++)
        if (strlen(open_set_thresholds[i].model) == name_len &&
            strncmp(model_id, open_set_thresholds[i].model, name_len) == 0)
            return open_set_thresholds[i].threshold;
    /* Fail closed: no calibration, no default; searches refuse to decide
     * until one is set. */
    return NAN;
}

static void threshold_text(float t, char *buf, size_t size)
{
    if (isnan(t))
        snprintf(buf, size, "none");
    else
        snprintf(buf, size, "%.6f", (double)t);
}

static facenet_status initialise_meta(facenet_gallery *g, const char *model_id, int dim,
                                      facenet_error *err)
{
    gallery_store *s = g->store;
    uint8_t check[GALLERY_KEY_CHECK_BYTES];
    char text[64];
    facenet_status status;

    randombytes_buf(g->gallery_id, sizeof g->gallery_id);
    snprintf(g->model_id, sizeof g->model_id, "%s", model_id);
    g->dim = dim;
    g->threshold = default_threshold(model_id);
    gallery_key_check_make(g->keys, g->gallery_id, check);
    if ((status = meta_put_text(s, "format", META_FORMAT, err)) ||
        (status = s->ops->meta_set(s, "gallery_id", g->gallery_id, sizeof g->gallery_id, err)) ||
        (status = meta_put_text(s, "model_id", model_id, err)))
        return status;
    snprintf(text, sizeof text, "%d", dim);
    if ((status = meta_put_text(s, "dim", text, err)))
        return status;
    threshold_text(g->threshold, text, sizeof text);
    if ((status = meta_put_text(s, "threshold", text, err)) ||
        (status = s->ops->meta_set(s, "key_check", check, sizeof check, err)))
        return status;
    return FACENET_OK;
}

static facenet_status read_meta(facenet_gallery *g, facenet_error *err)
{
    gallery_store *s = g->store;
    char text[FACENET_GALLERY_MODEL_ID_MAX];
    uint8_t *blob = NULL;
    size_t len = 0;
    facenet_status status;

    if (meta_text(s, "format", text, sizeof text, err) != FACENET_OK)
        return fn_fail(err, FACENET_ERR_FORMAT, "gallery %s has no valid format record", g->path);
    if (strcmp(text, META_FORMAT) != 0)
        return fn_fail(err, FACENET_ERR_FORMAT, "gallery %s: unknown format '%.32s'", g->path, text);
    status = s->ops->meta_get(s, "gallery_id", &blob, &len, err);
    if (status != FACENET_OK || len != GALLERY_ID_BYTES) {
        free(blob);
        return fn_fail(err, FACENET_ERR_FORMAT, "gallery %s has no valid gallery id", g->path);
    }
    memcpy(g->gallery_id, blob, GALLERY_ID_BYTES);
    free(blob);
    if (meta_text(s, "model_id", g->model_id, sizeof g->model_id, err) != FACENET_OK ||
        gallery_check_label(g->model_id, "model id", 0, NULL) != FACENET_OK)
        return fn_fail(err, FACENET_ERR_FORMAT, "gallery %s has no valid model id", g->path);
    char *end;
    if (meta_text(s, "dim", text, sizeof text, err) != FACENET_OK)
        return fn_fail(err, FACENET_ERR_FORMAT, "gallery %s has no dimension", g->path);
    long dim = strtol(text, &end, 10);
    if (*end || dim < 1 || dim > GALLERY_DIM_MAX)
        return fn_fail(err, FACENET_ERR_FORMAT, "gallery %s: bad dimension '%.16s'", g->path, text);
    g->dim = (int)dim;
    if (meta_text(s, "threshold", text, sizeof text, err) != FACENET_OK)
        return fn_fail(err, FACENET_ERR_FORMAT, "gallery %s has no threshold", g->path);
    g->threshold = strcmp(text, "none") == 0 ? NAN : strtof(text, &end);
    if (!isnan(g->threshold) && (*end || !(g->threshold >= -1 && g->threshold <= 1)))
        return fn_fail(err, FACENET_ERR_FORMAT, "gallery %s: bad threshold", g->path);
    status = s->ops->meta_get(s, "key_check", &blob, &len, err);
    if (status != FACENET_OK)
        return fn_fail(err, FACENET_ERR_FORMAT, "gallery %s has no key check value", g->path);
    int ok = gallery_key_check_verify(g->keys, g->gallery_id, blob, len) == 0;
    free(blob);
    if (!ok)
        return fn_fail(err, FACENET_ERR_INTEGRITY,
                       "wrong key for gallery %s: its key check value does not authenticate "
                       "under this key",
                       g->path);
    return FACENET_OK;
}

static facenet_status set_keys(facenet_gallery *g, const uint8_t *master, facenet_error *err)
{
    if (!g->keys) {
        g->keys = sodium_malloc(sizeof *g->keys);
        if (!g->keys)
            return fn_fail(err, FACENET_ERR_NO_MEMORY, "gallery: cannot allocate key memory");
    }
    sodium_mprotect_readwrite(g->keys);
    gallery_keys_derive(g->keys, master);
    sodium_mprotect_readonly(g->keys);
    return FACENET_OK;
}

void facenet_gallery_close(facenet_gallery *g)
{
    if (!g)
        return;
    if (g->store)
        g->store->ops->close(g->store);
    if (g->keys)
        sodium_free(g->keys); /* wipes */
    gallery_index_free(&g->index);
    names_free(&g->subjects);
    names_free(&g->collections);
    gallery_pool_free(g->pool);
    pthread_mutex_destroy(&g->pool_lock);
    pthread_rwlock_destroy(&g->lock);
    free(g->path);
    free(g);
}

facenet_status facenet_gallery_open(const char *path, const uint8_t *key, const char *model_id,
                                    int dim, unsigned flags, facenet_gallery **out,
                                    facenet_error *err)
{
    facenet_gallery *g;
    facenet_status status;
    int created = 0;
    unsigned store_flags = 0;

    if (!out)
        return fn_fail(err, FACENET_ERR_INVALID_ARGUMENT, "gallery: no output handle");
    *out = NULL;
    if (!path || !*path || !key)
        return fn_fail(err, FACENET_ERR_INVALID_ARGUMENT, "gallery: a path and a key are required");
    if ((flags & FACENET_GALLERY_CREATE) && (flags & FACENET_GALLERY_READ_ONLY))
        return fn_fail(err, FACENET_ERR_INVALID_ARGUMENT,
                       "gallery: CREATE and READ_ONLY do not go together");
    if (model_id && (status = gallery_check_label(model_id, "model id", 0, err)))
        return status;
    if (sodium_init() < 0)
        return fn_fail(err, FACENET_ERR_INTERNAL, "libsodium failed to initialise");
    g = calloc(1, sizeof *g);
    if (!g || !(g->path = strdup(path)) || pthread_rwlock_init(&g->lock, NULL) != 0) {
        if (g)
            free(g->path);
        free(g);
        return fn_fail(err, FACENET_ERR_NO_MEMORY, "gallery %s: out of memory", path);
    }
    pthread_mutex_init(&g->pool_lock, NULL);
    g->flags = flags;
    if ((status = set_keys(g, key, err)))
        goto fail;
    if (flags & FACENET_GALLERY_CREATE)
        store_flags |= GALLERY_STORE_CREATE;
    if (flags & FACENET_GALLERY_READ_ONLY)
        store_flags |= GALLERY_STORE_READ_ONLY;
    status = gallery_sqlite_open(path, store_flags, &g->store, &created, err);
    if (status != FACENET_OK)
        goto fail;
    if (created) {
        if (!model_id || dim < 1 || dim > GALLERY_DIM_MAX)
            status = fn_fail(err, FACENET_ERR_INVALID_ARGUMENT,
                             "gallery %s does not exist; creating it needs a model id and a "
                             "dimension in 1..%d",
                             path, GALLERY_DIM_MAX);
        else
            status = initialise_meta(g, model_id, dim, err);
        if (status == FACENET_OK)
            status = g->store->ops->commit(g->store, err);
        else
            g->store->ops->rollback(g->store);
        if (status != FACENET_OK)
            goto fail;
    }
    if ((status = read_meta(g, err)))
        goto fail;
    if (model_id && strcmp(model_id, g->model_id) != 0) {
        status = fn_fail(err, FACENET_ERR_UNSUPPORTED,
                         "gallery %s holds templates of model '%s', not '%s': embeddings of "
                         "different models cannot be compared",
                         path, g->model_id, model_id);
        goto fail;
    }
    if (dim && dim != g->dim) {
        status = fn_fail(err, FACENET_ERR_SHAPE, "gallery %s holds %d-D templates, not %d-D", path,
                         g->dim, dim);
        goto fail;
    }
    if ((status = gallery_reload(g, err)))
        goto fail;
    *out = g;
    return FACENET_OK;
fail:
    facenet_gallery_close(g);
    return status;
}

const char *facenet_gallery_model(const facenet_gallery *g)
{
    return g ? g->model_id : NULL;
}

int facenet_gallery_dim(const facenet_gallery *g)
{
    return g ? g->dim : 0;
}

size_t facenet_gallery_size(const facenet_gallery *g)
{
    if (!g)
        return 0;
    pthread_rwlock_rdlock((pthread_rwlock_t *)&g->lock);
    size_t n = g->index.n;
    pthread_rwlock_unlock((pthread_rwlock_t *)&g->lock);
    return n;
}

float facenet_gallery_threshold(const facenet_gallery *g)
{
    return g ? g->threshold : 0;
}

static facenet_status writable(const facenet_gallery *g, facenet_error *err)
{
    if (g->flags & FACENET_GALLERY_READ_ONLY)
        return fn_fail(err, FACENET_ERR_INVALID_ARGUMENT, "gallery %s was opened read-only",
                       g->path);
    return FACENET_OK;
}

facenet_status facenet_gallery_set_threshold(facenet_gallery *g, float threshold,
                                             facenet_error *err)
{
    char text[32];
    facenet_status status;
    if (!g)
        return fn_fail(err, FACENET_ERR_INVALID_ARGUMENT, "gallery: no handle");
    if (!(threshold >= -1 && threshold <= 1))
        return fn_fail(err, FACENET_ERR_INVALID_ARGUMENT,
                       "gallery threshold must be a cosine similarity in [-1, 1]");
    if ((status = writable(g, err)))
        return status;
    snprintf(text, sizeof text, "%.6f", (double)threshold);
    pthread_rwlock_wrlock(&g->lock);
    gallery_store *s = g->store;
    status = s->ops->begin(s, 1, err);
    if (status == FACENET_OK) {
        status = meta_put_text(s, "threshold", text, err);
        if (status == FACENET_OK)
            status = s->ops->commit(s, err);
        else
            s->ops->rollback(s);
    }
    if (status == FACENET_OK)
        g->threshold = strtof(text, NULL);
    pthread_rwlock_unlock(&g->lock);
    return status;
}

/* ---- enroll ------------------------------------------------------------------------ */

facenet_status gallery_subject_ensure(facenet_gallery *g, const char *collection,
                                      const char *subject, const char *metadata,
                                      int64_t *collection_id, int64_t *subject_id, int *created,
                                      facenet_error *err)
{
    gallery_store *s = g->store;
    uint8_t tag[GALLERY_TAG_BYTES];
    facenet_status status = s->ops->collection_id(s, collection, 1, collection_id, err);
    if (status != FACENET_OK)
        return status;
    *created = 0;
    status = s->ops->subject_find(s, *collection_id, subject, subject_id, err);
    if (status != FACENET_ERR_NOT_FOUND)
        return status;
    status = s->ops->subject_insert(s, *collection_id, subject, metadata, subject_id, err);
    if (status != FACENET_OK)
        return status;
    gallery_subject_tag(g->keys, g->gallery_id, *subject_id, collection, subject, metadata, tag);
    *created = 1;
    return s->ops->subject_set_tag(s, *subject_id, tag, sizeof tag, err);
}

facenet_status gallery_template_add(facenet_gallery *g, int64_t subject_id, const float *v,
                                    const char *preprocess, const char *image_sha256,
                                    int64_t *template_id, facenet_error *err)
{
    gallery_store *s = g->store;
    size_t len = gallery_sealed_size(g->dim);
    uint8_t *blob;
    facenet_status status = s->ops->template_insert(s, subject_id, g->model_id, preprocess,
                                                    image_sha256, template_id, err);
    if (status != FACENET_OK)
        return status;
    blob = malloc(len);
    if (!blob)
        return fn_fail(err, FACENET_ERR_NO_MEMORY, "gallery %s: out of memory", g->path);
    gallery_seal_template(g->keys, g->gallery_id, *template_id, subject_id, g->model_id, v, g->dim,
                          blob);
    status = s->ops->template_set_sealed(s, *template_id, blob, len, err);
    free(blob);
    return status;
}

static facenet_status check_enrollment(const facenet_gallery *g,
                                       const facenet_gallery_enrollment *e, facenet_error *err)
{
    facenet_status status;
    if (!e || !e->embeddings || e->n == 0)
        return fn_fail(err, FACENET_ERR_INVALID_ARGUMENT, "enroll: no embeddings given");
    if (e->n > ENROLL_MAX_TEMPLATES)
        return fn_fail(err, FACENET_ERR_LIMIT, "enroll: more than %d templates in one call",
                       ENROLL_MAX_TEMPLATES);
    if ((status = gallery_check_name(e->subject, "subject name", err)) ||
        (e->collection && (status = gallery_check_name(e->collection, "collection name", err))) ||
        (status = gallery_check_metadata(e->metadata_json, err)) ||
        (e->preprocess && (status = gallery_check_label(e->preprocess, "preprocess label", 1, err))))
        return status;
    if (!e->model_id || strcmp(e->model_id, g->model_id) != 0)
        return fn_fail(err, FACENET_ERR_UNSUPPORTED,
                       "gallery %s holds templates of model '%s'; these embeddings come from "
                       "'%.64s'",
                       g->path, g->model_id, e->model_id ? e->model_id : "(none)");
    if (e->image_sha256)
        for (size_t i = 0; i < e->n; i++)
            if ((status = gallery_check_digest(e->image_sha256[i], err)))
                return status;
    return FACENET_OK;
}

facenet_status facenet_gallery_enroll(facenet_gallery *g, const facenet_gallery_enrollment *e,
                                      int64_t *template_ids, facenet_error *err)
{
    facenet_status status;
    float *rows = NULL;
    int64_t *ids = NULL;
    unsigned char *is_new = NULL;
    size_t d;

    if (!g)
        return fn_fail(err, FACENET_ERR_INVALID_ARGUMENT, "gallery: no handle");
    if ((status = writable(g, err)) || (status = check_enrollment(g, e, err)))
        return status;
    d = (size_t)g->dim;
    const char *collection = e->collection ? e->collection : GALLERY_DEFAULT_COLLECTION;
    /* Normalised copies first: a bad vector fails before any write. */
    rows = sodium_malloc(e->n * d * sizeof(float));
    ids = calloc(e->n, sizeof *ids);
    is_new = calloc(e->n, 1);
    if (!rows || !ids || !is_new) {
        status = fn_fail(err, FACENET_ERR_NO_MEMORY, "enroll: out of memory");
        goto out;
    }
    memcpy(rows, e->embeddings, e->n * d * sizeof(float));
    for (size_t i = 0; i < e->n; i++)
        if (gallery_normalise(rows + i * d, g->dim) != 0) {
            status = fn_fail(err, FACENET_ERR_INVALID_ARGUMENT,
                             "enroll: embedding %zu is zero or not finite", i);
            goto out;
        }

    pthread_rwlock_wrlock(&g->lock);
    /* Room in memory before the commit, so that nothing can fail after it. */
    if (gallery_index_reserve(&g->index, g->index.n + e->n) != 0 ||
        names_reserve(&g->subjects, 1) != 0 || names_reserve(&g->collections, 1) != 0) {
        pthread_rwlock_unlock(&g->lock);
        status = fn_fail(err, FACENET_ERR_NO_MEMORY, "enroll: out of memory");
        goto out;
    }
    gallery_store *s = g->store;
    int64_t collection_id = 0, subject_id = 0;
    int created = 0;
    status = s->ops->begin(s, 1, err);
    if (status == FACENET_OK) {
        status = gallery_subject_ensure(g, collection, e->subject, e->metadata_json,
                                        &collection_id, &subject_id, &created, err);
        for (size_t i = 0; status == FACENET_OK && i < e->n; i++) {
            const char *sha = e->image_sha256 ? e->image_sha256[i] : NULL;
            if (e->skip_existing && sha && *sha) {
                status = s->ops->template_find(s, subject_id, sha, &ids[i], err);
                if (status == FACENET_OK)
                    continue;
                if (status != FACENET_ERR_NOT_FOUND)
                    break;
            }
            status = gallery_template_add(g, subject_id, rows + i * d, e->preprocess, sha,
                                          &ids[i], err);
            is_new[i] = 1;
        }
        if (status == FACENET_OK)
            status = s->ops->commit(s, err);
        else
            s->ops->rollback(s);
    }
    if (status == FACENET_OK) {
        /* Durable: mirror it in memory. names_add cannot fail after the
         * reserve above except for strdup; the matrix is what matters. */
        if (!gallery_names_find(&g->collections, collection_id))
            names_add(&g->collections, collection_id, 0, collection);
        if (!gallery_names_find(&g->subjects, subject_id))
            names_add(&g->subjects, subject_id, collection_id, e->subject);
        for (size_t i = 0; i < e->n; i++)
            if (is_new[i])
                gallery_index_add(&g->index, rows + i * d, ids[i], subject_id, collection_id);
        if (template_ids)
            memcpy(template_ids, ids, e->n * sizeof *ids);
    }
    pthread_rwlock_unlock(&g->lock);
out:
    if (rows)
        sodium_free(rows);
    free(ids);
    free(is_new);
    return status;
}

/* ---- remove ---------------------------------------------------------------------- */

typedef struct count_ctx {
    int64_t n;
} count_ctx;

static int count_templates(void *arg, const gallery_subject_row *r)
{
    ((count_ctx *)arg)->n = r->n_templates;
    return 1;
}

facenet_status facenet_gallery_remove_subject(facenet_gallery *g, const char *collection,
                                              const char *subject, size_t *n_removed,
                                              facenet_error *err)
{
    facenet_status status;
    int64_t collection_id = 0, subject_id = 0;
    count_ctx count = {0};

    if (!g)
        return fn_fail(err, FACENET_ERR_INVALID_ARGUMENT, "gallery: no handle");
    if (!collection)
        collection = GALLERY_DEFAULT_COLLECTION;
    if ((status = writable(g, err)) ||
        (status = gallery_check_name(subject, "subject name", err)) ||
        (status = gallery_check_name(collection, "collection name", err)))
        return status;
    pthread_rwlock_wrlock(&g->lock);
    gallery_store *s = g->store;
    status = s->ops->begin(s, 1, err);
    if (status == FACENET_OK) {
        status = s->ops->collection_id(s, collection, 0, &collection_id, err);
        if (status == FACENET_OK)
            status = s->ops->subject_find(s, collection_id, subject, &subject_id, err);
        if (status == FACENET_OK)
            status = s->ops->subjects(s, 0, subject_id, count_templates, &count, err);
        if (status == FACENET_OK)
            status = s->ops->subject_delete(s, subject_id, err);
        if (status == FACENET_OK)
            status = s->ops->commit(s, err);
        else
            s->ops->rollback(s);
    }
    if (status == FACENET_OK) {
        gallery_index_remove_subject(&g->index, subject_id);
        names_remove(&g->subjects, subject_id);
        if (n_removed)
            *n_removed = (size_t)count.n;
        /* Committed; if the log cannot be truncated now (a reader holds
         * it), say so: the bytes are still in the -wal file. */
        status = s->ops->purge(s, err);
        if (status != FACENET_OK)
            fn_error_prefix(err, "subject removed, but its bytes may remain until the next "
                                 "checkpoint");
    } else if (status == FACENET_ERR_NOT_FOUND) {
        fn_fail(err, FACENET_ERR_NOT_FOUND, "gallery %s has no subject '%s' in collection '%s'",
                g->path, subject, collection);
    }
    pthread_rwlock_unlock(&g->lock);
    return status;
}

facenet_status facenet_gallery_remove_template(facenet_gallery *g, int64_t template_id,
                                               facenet_error *err)
{
    facenet_status status;
    int64_t subject_id = 0;
    if (!g)
        return fn_fail(err, FACENET_ERR_INVALID_ARGUMENT, "gallery: no handle");
    if ((status = writable(g, err)))
        return status;
    pthread_rwlock_wrlock(&g->lock);
    gallery_store *s = g->store;
    status = s->ops->begin(s, 1, err);
    if (status == FACENET_OK) {
        status = s->ops->template_delete(s, template_id, &subject_id, err);
        if (status == FACENET_OK)
            status = s->ops->commit(s, err);
        else
            s->ops->rollback(s);
    }
    if (status == FACENET_OK) {
        gallery_index_remove_template(&g->index, template_id);
        status = s->ops->purge(s, err);
        if (status != FACENET_OK)
            fn_error_prefix(err, "template removed, but its bytes may remain until the next "
                                 "checkpoint");
    }
    pthread_rwlock_unlock(&g->lock);
    return status;
}

/* ---- collections ------------------------------------------------------------------ */

/* Drop every subject of one collection from a name table, in one pass. */
static void names_remove_collection(gallery_names *names, int64_t collection_id)
{
    size_t kept = 0;
    for (size_t i = 0; i < names->n; i++) {
        if (names->e[i].collection_id == collection_id)
            free(names->e[i].name);
        else
            names->e[kept++] = names->e[i];
    }
    names->n = kept;
}

typedef struct collections_ctx {
    int (*fn)(void *, const facenet_gallery_collection *);
    void *ctx;
    int64_t want_id; /* count_collection: the one to find */
    gallery_collection_row found;
    facenet_status status;
    facenet_error *err;
} collections_ctx;

static int list_collection(void *arg, const gallery_collection_row *r)
{
    collections_ctx *c = arg;
    /* Names reach terminals and JSON: one that facenet would not have
     * written means the file was edited; fail closed. */
    if (gallery_check_name(r->name, "collection name", NULL) != FACENET_OK) {
        c->status = fn_fail(c->err, FACENET_ERR_FORMAT,
                            "collection %lld has an invalid name: the file was changed outside "
                            "facenet",
                            (long long)r->id);
        return 1;
    }
    facenet_gallery_collection out = {r->id, r->name, r->created_at, (size_t)r->n_subjects,
                                      (size_t)r->n_templates};
    return c->fn(c->ctx, &out);
}

facenet_status facenet_gallery_list_collections(
    facenet_gallery *g, int (*fn)(void *ctx, const facenet_gallery_collection *collection),
    void *ctx, facenet_error *err)
{
    collections_ctx c;
    if (!g || !fn)
        return fn_fail(err, FACENET_ERR_INVALID_ARGUMENT, "gallery collections: missing argument");
    memset(&c, 0, sizeof c);
    c.fn = fn;
    c.ctx = ctx;
    c.err = err;
    pthread_rwlock_wrlock(&g->lock);
    gallery_store *s = g->store;
    facenet_status status = s->ops->begin(s, 0, err);
    if (status == FACENET_OK) {
        status = s->ops->collections(s, list_collection, &c, err);
        if (status == FACENET_OK)
            status = c.status;
        s->ops->rollback(s);
    }
    pthread_rwlock_unlock(&g->lock);
    return status;
}

/* Re-tagging subjects, for a collection rename (new collection name) and for
 * a rekey (new keys): every subject is verified under its current tag first
 * (a forged row must not be laundered by a new tag), and its new tag is
 * computed; the tags are written after the walk, by retag_write(). */
typedef struct retag_ctx {
    facenet_gallery *g;
    const gallery_keys *new_keys; /* the keys the new tags are made with    */
    const char *to;               /* new collection name; NULL: unchanged   */
    const char *what;             /* "rename", "rekey": for messages         */
    int64_t *ids;
    uint8_t (*tags)[GALLERY_TAG_BYTES];
    size_t n, cap;
    facenet_status status;
    facenet_error *err;
} retag_ctx;

static int retag_reserve(retag_ctx *c)
{
    if (c->n < c->cap)
        return 0;
    size_t cap = c->cap ? c->cap * 2 : 64;
    int64_t *ids = realloc(c->ids, cap * sizeof *ids);
    if (ids)
        c->ids = ids;
    uint8_t(*tags)[GALLERY_TAG_BYTES] = ids ? realloc(c->tags, cap * sizeof *tags) : NULL;
    if (!ids || !tags)
        return -1;
    c->tags = tags;
    c->cap = cap;
    return 0;
}

static int retag_subject(void *arg, const gallery_subject_row *r)
{
    retag_ctx *c = arg;
    if (gallery_subject_tag_verify(c->g->keys, c->g->gallery_id, r->id, r->collection, r->name,
                                   r->metadata, r->tag, r->tag_len) != 0) {
        c->status = fn_fail(c->err, FACENET_ERR_INTEGRITY,
                            "gallery %s: subject %lld fails authentication; the gallery is "
                            "left as it was",
                            c->g->path, (long long)r->id);
        return 1;
    }
    if (retag_reserve(c) != 0) {
        c->status = fn_fail(c->err, FACENET_ERR_NO_MEMORY, "%s: out of memory", c->what);
        return 1;
    }
    gallery_subject_tag(c->new_keys, c->g->gallery_id, r->id, c->to ? c->to : r->collection,
                        r->name, r->metadata, c->tags[c->n]);
    c->ids[c->n++] = r->id;
    return 0;
}

/* Inside the caller's write transaction. */
static facenet_status retag_write(gallery_store *s, const retag_ctx *c, facenet_error *err)
{
    facenet_status status = FACENET_OK;
    for (size_t i = 0; status == FACENET_OK && i < c->n; i++)
        status = s->ops->subject_set_tag(s, c->ids[i], c->tags[i], GALLERY_TAG_BYTES, err);
    return status;
}

static void retag_free(retag_ctx *c)
{
    free(c->ids);
    free(c->tags);
}

/* Inside the caller's write transaction: the collection's id, with a
 * message naming it when it is missing. */
static facenet_status find_collection(facenet_gallery *g, const char *name, int64_t *id,
                                      facenet_error *err)
{
    facenet_status status = g->store->ops->collection_id(g->store, name, 0, id, err);
    if (status == FACENET_ERR_NOT_FOUND)
        fn_fail(err, FACENET_ERR_NOT_FOUND, "gallery %s has no collection '%s'", g->path, name);
    return status;
}

static facenet_status rename_in_txn(facenet_gallery *g, const char *from, const char *to,
                                    retag_ctx *c, int64_t *id, facenet_error *err)
{
    gallery_store *s = g->store;
    int64_t other = 0;
    facenet_status status = find_collection(g, from, id, err);
    if (status != FACENET_OK)
        return status;
    status = s->ops->collection_id(s, to, 0, &other, err);
    if (status == FACENET_OK)
        return fn_fail(err, FACENET_ERR_INVALID_ARGUMENT,
                       "gallery %s already has a collection '%s'", g->path, to);
    if (status != FACENET_ERR_NOT_FOUND)
        return status;
    status = s->ops->subjects(s, *id, 0, retag_subject, c, err);
    if (status == FACENET_OK)
        status = c->status;
    if (status == FACENET_OK)
        status = s->ops->collection_rename(s, *id, to, err);
    if (status == FACENET_OK)
        status = retag_write(s, c, err);
    return status;
}

facenet_status facenet_gallery_rename_collection(facenet_gallery *g, const char *from,
                                                 const char *to, facenet_error *err)
{
    retag_ctx c;
    int64_t id = 0;
    facenet_status status;

    if (!g)
        return fn_fail(err, FACENET_ERR_INVALID_ARGUMENT, "gallery: no handle");
    if ((status = writable(g, err)) ||
        (status = gallery_check_name(from, "collection name", err)) ||
        (status = gallery_check_name(to, "new collection name", err)))
        return status;
    memset(&c, 0, sizeof c);
    c.g = g;
    c.new_keys = g->keys;
    c.to = to;
    c.what = "rename";
    c.err = err;
    /* Copied before the commit, so that nothing can fail after it. */
    char *copy = strdup(to);
    if (!copy)
        return fn_fail(err, FACENET_ERR_NO_MEMORY, "rename: out of memory");
    pthread_rwlock_wrlock(&g->lock);
    gallery_store *s = g->store;
    status = s->ops->begin(s, 1, err);
    if (status == FACENET_OK) {
        if (strcmp(from, to) == 0) {
            status = find_collection(g, from, &id, err);
            s->ops->rollback(s);
            id = 0; /* nothing to change */
        } else {
            status = rename_in_txn(g, from, to, &c, &id, err);
            if (status == FACENET_OK)
                status = s->ops->commit(s, err);
            else
                s->ops->rollback(s);
        }
    }
    if (status == FACENET_OK && id) {
        gallery_name_entry *entry = (gallery_name_entry *)gallery_names_find(&g->collections, id);
        if (entry) {
            free(entry->name);
            entry->name = copy;
            copy = NULL;
        }
    }
    pthread_rwlock_unlock(&g->lock);
    free(copy);
    retag_free(&c);
    return status;
}

static int count_collection(void *arg, const gallery_collection_row *r)
{
    collections_ctx *c = arg;
    if (r->id != c->want_id)
        return 0;
    c->found = *r;
    c->found.name = c->found.created_at = NULL; /* not kept past the callback */
    return 1;
}

facenet_status facenet_gallery_remove_collection(facenet_gallery *g, const char *collection,
                                                 size_t *n_subjects, size_t *n_templates,
                                                 facenet_error *err)
{
    collections_ctx count;
    int64_t id = 0;
    facenet_status status;

    if (n_subjects)
        *n_subjects = 0;
    if (n_templates)
        *n_templates = 0;
    if (!g)
        return fn_fail(err, FACENET_ERR_INVALID_ARGUMENT, "gallery: no handle");
    if ((status = writable(g, err)) ||
        (status = gallery_check_name(collection, "collection name", err)))
        return status;
    memset(&count, 0, sizeof count);
    pthread_rwlock_wrlock(&g->lock);
    gallery_store *s = g->store;
    status = s->ops->begin(s, 1, err);
    if (status == FACENET_OK) {
        status = find_collection(g, collection, &id, err);
        count.want_id = id;
        if (status == FACENET_OK)
            status = s->ops->collections(s, count_collection, &count, err);
        if (status == FACENET_OK)
            status = s->ops->collection_delete(s, id, err);
        if (status == FACENET_OK)
            status = s->ops->commit(s, err);
        else
            s->ops->rollback(s);
    }
    if (status == FACENET_OK) {
        gallery_index_remove_collection(&g->index, id);
        names_remove_collection(&g->subjects, id);
        names_remove(&g->collections, id);
        if (n_subjects)
            *n_subjects = (size_t)count.found.n_subjects;
        if (n_templates)
            *n_templates = (size_t)count.found.n_templates;
        status = s->ops->purge(s, err);
        if (status != FACENET_OK)
            fn_error_prefix(err, "collection removed, but its bytes may remain until the next "
                                 "checkpoint");
    }
    pthread_rwlock_unlock(&g->lock);
    return status;
}

/* ---- search ----------------------------------------------------------------------- */

/* The handle's worker pool, started by the first search that is large
 * enough to use more than one core (a handle that only ever searches small
 * galleries never starts threads). NULL: the search starts its own. */
static gallery_pool *search_pool(facenet_gallery *g)
{
    if (gallery_index_threads(&g->index, 0) < 2)
        return NULL;
    pthread_mutex_lock(&g->pool_lock);
    if (!g->pool)
        g->pool = gallery_pool_create(gallery_index_threads(&g->index, 0) - 1);
    gallery_pool *p = g->pool;
    pthread_mutex_unlock(&g->pool_lock);
    return p;
}

void facenet_gallery_search_options_default(facenet_gallery_search_options *o)
{
    memset(o, 0, sizeof *o);
    o->k = 5;
    o->threshold = -2;
}

/* Check a query embedding against the gallery's model and dimension, and
 * return a normalised copy in *out, which the caller frees with
 * query_free (it is biometric data). `what` names the call in messages. */
static facenet_status query_copy(const facenet_gallery *g, const char *model_id,
                                 const float *query, int dim, const char *what, float **out,
                                 facenet_error *err)
{
    *out = NULL;
    if (!model_id || strcmp(model_id, g->model_id) != 0)
        return fn_fail(err, FACENET_ERR_UNSUPPORTED,
                       "gallery %s holds templates of model '%s'; this query comes from '%.64s' "
                       "and cannot be compared with them",
                       g->path, g->model_id, model_id ? model_id : "(none)");
    if (dim != g->dim)
        return fn_fail(err, FACENET_ERR_SHAPE, "%s: query has %d dimensions, not %d", what, dim,
                       g->dim);
    float *q = malloc((size_t)dim * sizeof *q);
    if (!q)
        return fn_fail(err, FACENET_ERR_NO_MEMORY, "%s: out of memory", what);
    memcpy(q, query, (size_t)dim * sizeof *q);
    if (gallery_normalise(q, dim) != 0) {
        sodium_memzero(q, (size_t)dim * sizeof *q);
        free(q);
        return fn_fail(err, FACENET_ERR_INVALID_ARGUMENT, "%s: the query is zero or not finite",
                       what);
    }
    *out = q;
    return FACENET_OK;
}

static void query_free(float *q, int dim)
{
    if (q) {
        sodium_memzero(q, (size_t)dim * sizeof *q);
        free(q);
    }
}

/* Fill a match from a hit; caller holds the lock. */
static void match_from_hit(const facenet_gallery *g, const gallery_hit *hit, float threshold,
                           facenet_gallery_match *m)
{
    const gallery_name_entry *subj = gallery_names_find(&g->subjects, hit->subject_id);
    const gallery_name_entry *coll =
        subj ? gallery_names_find(&g->collections, subj->collection_id) : NULL;
    m->subject_id = hit->subject_id;
    m->template_id = g->index.template_id[hit->row];
    m->score = hit->score;
    m->accepted = hit->score >= threshold;
    snprintf(m->subject, sizeof m->subject, "%s", subj ? subj->name : "");
    snprintf(m->collection, sizeof m->collection, "%s", coll ? coll->name : "");
}

facenet_status facenet_gallery_search(facenet_gallery *g, const char *model_id,
                                      const float *query, int dim,
                                      const facenet_gallery_search_options *options,
                                      facenet_gallery_match *matches, size_t *n_matches,
                                      facenet_error *err)
{
    facenet_gallery_search_options o;
    gallery_hit *hits = NULL;
    float *q = NULL;
    facenet_status status = FACENET_OK;

    if (n_matches)
        *n_matches = 0;
    if (!g || !query || !matches || !n_matches)
        return fn_fail(err, FACENET_ERR_INVALID_ARGUMENT, "gallery search: missing argument");
    if (options)
        o = *options;
    else
        facenet_gallery_search_options_default(&o);
    if (o.k < 1 || o.k > GALLERY_MAX_K)
        return fn_fail(err, FACENET_ERR_INVALID_ARGUMENT, "gallery search: k must be 1..%d",
                       GALLERY_MAX_K);
    if (o.threshold > 1 || isnan(o.threshold))
        return fn_fail(err, FACENET_ERR_INVALID_ARGUMENT,
                       "gallery search: threshold must be at most 1");
    status = query_copy(g, model_id, query, dim, "gallery search", &q, err);
    if (status != FACENET_OK)
        return status;
    hits = malloc((size_t)o.k * sizeof *hits);
    if (!hits) {
        query_free(q, dim);
        return fn_fail(err, FACENET_ERR_NO_MEMORY, "gallery search: out of memory");
    }
    pthread_rwlock_rdlock(&g->lock);
    float threshold = o.threshold < -1 ? g->threshold : o.threshold;
    gallery_query gq = {q,         o.k, 0, o.exact ? GALLERY_SCAN_FLOAT : GALLERY_SCAN_AUTO,
                        o.threads, search_pool(g)};
    if (isnan(threshold))
        status = fn_fail(err, FACENET_ERR_INVALID_ARGUMENT,
                         "gallery %s has no calibrated open-set threshold for model %s: set one "
                         "(facenet gallery threshold) or pass a threshold to the search",
                         g->path, g->model_id);
    else if (o.collection) {
        gq.collection_id = gallery_collection_lookup(g, o.collection);
        if (!gq.collection_id)
            status = fn_fail(err, FACENET_ERR_NOT_FOUND, "gallery %s has no collection '%.255s'",
                             g->path, o.collection);
    }
    if (status == FACENET_OK) {
        size_t n = gallery_index_search(&g->index, &gq, hits);
        if (n == (size_t)-1) {
            status = fn_fail(err, FACENET_ERR_NO_MEMORY, "gallery search: out of memory");
        } else {
            for (size_t i = 0; i < n; i++)
                match_from_hit(g, &hits[i], threshold, &matches[i]);
            *n_matches = n;
        }
    }
    pthread_rwlock_unlock(&g->lock);
    query_free(q, dim);
    free(hits);
    return status;
}

/* A subject's id from its names, in memory; 0 when absent. Caller holds
 * the lock. A linear walk: about a millisecond at 100,000 subjects, next
 * to an embedding that costs tens. */
static int64_t subject_lookup(const facenet_gallery *g, int64_t collection_id, const char *name)
{
    for (size_t i = 0; i < g->subjects.n; i++)
        if (g->subjects.e[i].collection_id == collection_id &&
            strcmp(g->subjects.e[i].name, name) == 0)
            return g->subjects.e[i].id;
    return 0;
}

facenet_status facenet_gallery_score_subject(facenet_gallery *g, const char *model_id,
                                             const float *query, int dim,
                                             const char *collection, const char *subject,
                                             facenet_gallery_match *match, facenet_error *err)
{
    const char *what = "gallery subject score";
    float *q = NULL;
    facenet_status status;

    if (!g || !query || !subject || !match)
        return fn_fail(err, FACENET_ERR_INVALID_ARGUMENT, "%s: missing argument", what);
    memset(match, 0, sizeof *match);
    if (!collection)
        collection = GALLERY_DEFAULT_COLLECTION;
    if ((status = gallery_check_name(collection, "collection name", err)) ||
        (status = gallery_check_name(subject, "subject name", err)) ||
        (status = query_copy(g, model_id, query, dim, what, &q, err)))
        return status;
    pthread_rwlock_rdlock(&g->lock);
    int64_t collection_id = gallery_collection_lookup(g, collection);
    int64_t subject_id = collection_id ? subject_lookup(g, collection_id, subject) : 0;
    gallery_hit best;
    if (!subject_id)
        status = fn_fail(err, FACENET_ERR_NOT_FOUND, "gallery %s has no subject '%s' in '%s'",
                         g->path, subject, collection);
    else if (gallery_index_score_subject(&g->index, q, subject_id, &best) == 0)
        status = fn_fail(err, FACENET_ERR_NOT_FOUND, "subject '%s' of gallery %s has no templates",
                         subject, g->path);
    else
        match_from_hit(g, &best, g->threshold, match);
    pthread_rwlock_unlock(&g->lock);
    query_free(q, dim);
    return status;
}

/* ---- listing ---------------------------------------------------------------------- */

typedef struct list_ctx {
    int (*fn)(void *, const facenet_gallery_subject *);
    int (*tfn)(void *, const facenet_gallery_template *);
    void *ctx;
} list_ctx;

static int list_subject(void *arg, const gallery_subject_row *r)
{
    list_ctx *c = arg;
    facenet_gallery_subject s = {r->id, r->collection, r->name, r->metadata, r->created_at,
                                 (size_t)r->n_templates};
    return c->fn(c->ctx, &s);
}

static int list_template(void *arg, const gallery_template_row *r)
{
    list_ctx *c = arg;
    facenet_gallery_template t = {r->id, r->subject_id, r->model_id, r->preprocess,
                                  r->image_sha256, r->created_at};
    return c->tfn(c->ctx, &t);
}

/* Resolve collection (and subject) names to ids in the caller's transaction. */
static facenet_status resolve(facenet_gallery *g, const char *collection, const char *subject,
                              int64_t *collection_id, int64_t *subject_id, facenet_error *err)
{
    gallery_store *s = g->store;
    facenet_status status;
    *collection_id = 0;
    *subject_id = 0;
    if (collection || subject) {
        const char *c = collection ? collection : GALLERY_DEFAULT_COLLECTION;
        if ((status = gallery_check_name(c, "collection name", err)) ||
            (status = s->ops->collection_id(s, c, 0, collection_id, err)))
            return status;
    }
    if (subject) {
        if ((status = gallery_check_name(subject, "subject name", err)))
            return status;
        status = s->ops->subject_find(s, *collection_id, subject, subject_id, err);
        if (status == FACENET_ERR_NOT_FOUND)
            return fn_fail(err, FACENET_ERR_NOT_FOUND, "gallery %s has no subject '%s'", g->path,
                           subject);
        return status;
    }
    return FACENET_OK;
}

facenet_status facenet_gallery_list(facenet_gallery *g, const char *collection,
                                    int (*fn)(void *ctx, const facenet_gallery_subject *subject),
                                    void *ctx, facenet_error *err)
{
    list_ctx c = {fn, NULL, ctx};
    int64_t collection_id, subject_id;
    if (!g || !fn)
        return fn_fail(err, FACENET_ERR_INVALID_ARGUMENT, "gallery list: missing argument");
    pthread_rwlock_wrlock(&g->lock);
    gallery_store *s = g->store;
    facenet_status status = s->ops->begin(s, 0, err);
    if (status == FACENET_OK) {
        status = resolve(g, collection, NULL, &collection_id, &subject_id, err);
        if (status == FACENET_OK)
            status = s->ops->subjects(s, collection_id, 0, list_subject, &c, err);
        s->ops->rollback(s);
    }
    pthread_rwlock_unlock(&g->lock);
    return status;
}

facenet_status facenet_gallery_list_templates(
    facenet_gallery *g, const char *collection, const char *subject,
    int (*fn)(void *ctx, const facenet_gallery_template *t), void *ctx, facenet_error *err)
{
    list_ctx c = {NULL, fn, ctx};
    int64_t collection_id, subject_id;
    if (!g || !fn || !subject)
        return fn_fail(err, FACENET_ERR_INVALID_ARGUMENT, "gallery list: missing argument");
    pthread_rwlock_wrlock(&g->lock);
    gallery_store *s = g->store;
    facenet_status status = s->ops->begin(s, 0, err);
    if (status == FACENET_OK) {
        status = resolve(g, collection, subject, &collection_id, &subject_id, err);
        if (status == FACENET_OK)
            status = s->ops->templates(s, subject_id, 0, -1, list_template, &c, err);
        s->ops->rollback(s);
    }
    pthread_rwlock_unlock(&g->lock);
    return status;
}

facenet_status facenet_gallery_stats_get(facenet_gallery *g, facenet_gallery_stats *out,
                                         facenet_error *err)
{
    gallery_store_stats st;
    if (!g || !out)
        return fn_fail(err, FACENET_ERR_INVALID_ARGUMENT, "gallery stats: missing argument");
    memset(out, 0, sizeof *out);
    pthread_rwlock_wrlock(&g->lock);
    gallery_store *s = g->store;
    facenet_status status = s->ops->begin(s, 0, err);
    if (status == FACENET_OK) {
        status = s->ops->stats(s, &st, err);
        s->ops->rollback(s);
    }
    if (status == FACENET_OK) {
        out->schema_version = st.schema_version;
        out->collections = (size_t)st.collections;
        out->subjects = (size_t)st.subjects;
        out->templates = (size_t)st.templates;
        out->file_bytes = st.file_bytes;
        out->wal_bytes = st.wal_bytes;
        out->page_size = st.page_size;
        out->page_count = st.page_count;
        out->free_pages = st.free_pages;
        out->memory_bytes = gallery_index_memory(&g->index);
        out->threshold = g->threshold;
        snprintf(out->model_id, sizeof out->model_id, "%s", g->model_id);
        out->dim = g->dim;
    }
    pthread_rwlock_unlock(&g->lock);
    return status;
}

/* ---- check, refresh, rekey -------------------------------------------------------- */

typedef struct check_ctx {
    facenet_gallery *g;
    float *row;
    facenet_status status;
    facenet_error *err;
} check_ctx;

static int check_subject(void *arg, const gallery_subject_row *r)
{
    check_ctx *c = arg;
    if (gallery_subject_tag_verify(c->g->keys, c->g->gallery_id, r->id, r->collection, r->name,
                                   r->metadata, r->tag, r->tag_len) != 0) {
        c->status = fn_fail(c->err, FACENET_ERR_INTEGRITY,
                            "gallery %s: subject %lld fails authentication", c->g->path,
                            (long long)r->id);
        return 1;
    }
    return 0;
}

static int check_template(void *arg, const gallery_template_row *r)
{
    check_ctx *c = arg;
    c->status = gallery_open_row(c->g, r, c->row, c->err);
    return c->status != FACENET_OK;
}

facenet_status facenet_gallery_check(facenet_gallery *g, facenet_error *err)
{
    check_ctx c;
    if (!g)
        return fn_fail(err, FACENET_ERR_INVALID_ARGUMENT, "gallery: no handle");
    memset(&c, 0, sizeof c);
    c.g = g;
    c.err = err;
    c.row = sodium_malloc((size_t)g->dim * sizeof(float));
    if (!c.row)
        return fn_fail(err, FACENET_ERR_NO_MEMORY, "gallery check: out of memory");
    pthread_rwlock_wrlock(&g->lock);
    gallery_store *s = g->store;
    facenet_status status = s->ops->begin(s, 0, err);
    if (status == FACENET_OK) {
        status = s->ops->check(s, err);
        if (status == FACENET_OK)
            status = s->ops->subjects(s, 0, 0, check_subject, &c, err);
        if (status == FACENET_OK)
            status = c.status;
        if (status == FACENET_OK)
            status = s->ops->templates(s, 0, 0, -1, check_template, &c, err);
        if (status == FACENET_OK)
            status = c.status;
        s->ops->rollback(s);
    }
    pthread_rwlock_unlock(&g->lock);
    sodium_free(c.row);
    return status;
}

facenet_status facenet_gallery_refresh(facenet_gallery *g, int *changed, facenet_error *err)
{
    int64_t version = 0;
    if (changed)
        *changed = 0;
    if (!g)
        return fn_fail(err, FACENET_ERR_INVALID_ARGUMENT, "gallery: no handle");
    pthread_rwlock_wrlock(&g->lock);
    facenet_status status = g->store->ops->data_version(g->store, &version, err);
    if (status == FACENET_OK && version != g->data_version) {
        status = gallery_reload(g, err);
        if (status == FACENET_OK && changed)
            *changed = 1;
    }
    pthread_rwlock_unlock(&g->lock);
    return status;
}

/* Rekey walks the rows in pages, so memory stays bounded, and rewrites
 * each page after its statement has finished. */
#define REKEY_PAGE 1024

typedef struct rekey_ctx {
    facenet_gallery *g;
    gallery_keys *new_keys;
    uint8_t *blobs;   /* REKEY_PAGE sealed templates                   */
    int64_t *ids;     /* REKEY_PAGE row ids                            */
    size_t n;
    float *row;
    facenet_status status;
    facenet_error *err;
} rekey_ctx;

static int rekey_template(void *arg, const gallery_template_row *r)
{
    rekey_ctx *c = arg;
    c->status = gallery_open_row(c->g, r, c->row, c->err);
    if (c->status != FACENET_OK)
        return 1;
    gallery_seal_template(c->new_keys, c->g->gallery_id, r->id, r->subject_id, r->model_id, c->row,
                          c->g->dim, c->blobs + c->n * gallery_sealed_size(c->g->dim));
    c->ids[c->n++] = r->id;
    return 0;
}


static facenet_status rekey_templates(rekey_ctx *c)
{
    gallery_store *s = c->g->store;
    size_t size = gallery_sealed_size(c->g->dim);
    int64_t after = 0;
    for (;;) {
        c->n = 0;
        c->status = FACENET_OK;
        facenet_status status = s->ops->templates(s, 0, after, REKEY_PAGE, rekey_template, c, c->err);
        if (status == FACENET_OK)
            status = c->status;
        if (status != FACENET_OK)
            return status;
        if (c->n == 0)
            return FACENET_OK;
        for (size_t i = 0; i < c->n; i++) {
            status = s->ops->template_set_sealed(s, c->ids[i], c->blobs + i * size, size, c->err);
            if (status != FACENET_OK)
                return status;
        }
        after = c->ids[c->n - 1];
    }
}

facenet_status facenet_gallery_rekey(facenet_gallery *g, const uint8_t *new_key,
                                     facenet_error *err)
{
    rekey_ctx c;
    retag_ctx subjects;
    uint8_t check[GALLERY_KEY_CHECK_BYTES];
    facenet_status status;

    if (!g || !new_key)
        return fn_fail(err, FACENET_ERR_INVALID_ARGUMENT, "rekey: missing argument");
    if ((status = writable(g, err)))
        return status;
    memset(&c, 0, sizeof c);
    memset(&subjects, 0, sizeof subjects);
    c.g = g;
    c.err = err;
    c.new_keys = sodium_malloc(sizeof *c.new_keys);
    c.row = sodium_malloc((size_t)g->dim * sizeof(float));
    c.blobs = malloc(REKEY_PAGE * gallery_sealed_size(g->dim));
    c.ids = malloc(REKEY_PAGE * sizeof *c.ids);
    if (!c.new_keys || !c.row || !c.blobs || !c.ids) {
        status = fn_fail(err, FACENET_ERR_NO_MEMORY, "rekey: out of memory");
        goto out;
    }
    gallery_keys_derive(c.new_keys, new_key);
    subjects.g = g;
    subjects.new_keys = c.new_keys;
    subjects.what = "rekey";
    subjects.err = err;
    gallery_key_check_make(c.new_keys, g->gallery_id, check);

    pthread_rwlock_wrlock(&g->lock);
    gallery_store *s = g->store;
    status = s->ops->begin(s, 1, err);
    if (status == FACENET_OK) {
        status = rekey_templates(&c);
        if (status == FACENET_OK) {
            status = s->ops->subjects(s, 0, 0, retag_subject, &subjects, err);
            if (status == FACENET_OK)
                status = subjects.status;
        }
        if (status == FACENET_OK)
            status = retag_write(s, &subjects, err);
        if (status == FACENET_OK)
            status = s->ops->meta_set(s, "key_check", check, sizeof check, err);
        if (status == FACENET_OK)
            status = s->ops->commit(s, err);
        else
            s->ops->rollback(s);
    }
    if (status == FACENET_OK) {
        sodium_mprotect_readwrite(g->keys);
        memcpy(g->keys, c.new_keys, sizeof *g->keys);
        sodium_mprotect_readonly(g->keys);
        /* Old ciphertexts must not linger in the log. */
        status = s->ops->purge(s, err);
        if (status != FACENET_OK)
            fn_error_prefix(err, "rekeyed, but old ciphertexts remain in the log until the next "
                                 "checkpoint");
    }
    pthread_rwlock_unlock(&g->lock);
out:
    if (c.new_keys)
        sodium_free(c.new_keys);
    if (c.row)
        sodium_free(c.row);
    free(c.blobs);
    free(c.ids);
    retag_free(&subjects);
    return status;
}
