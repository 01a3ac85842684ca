/*
 * model.c - the public engine API: load a model (hash first, parse second),
 * create sessions, run them.
 *
 * The order matters for safety: a model file is hashed in memory and the
 * digest compared with the pin before a single byte is parsed, and the
 * bytes parsed are exactly the bytes hashed (no second read of the file).
 */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/error.h"
#include "common/fileio.h"
#include "nn/exec.h"
#include "nn/fuse.h"
#include "nn/graph.h"
#include "nn/import/import.h"
#include "nn/import/tfjs.h"

/* No model we pin is near this; a larger file is refused before reading. */
#define MODEL_MAX_BYTES ((size_t)512 << 20)

struct facenet_model {
    nn_graph *graph;
    nn_weights weights;
};

struct facenet_session {
    const facenet_model *model;
    nn_exec exec;
    nn_pool *pool; /* owned; NULL for one thread */
};

static facenet_status check_digest(const char *path, const uint8_t *data,
                                   size_t size, const char *expected,
                                   facenet_error *err)
{
    char actual[65];
    fn_sha256_hex(data, size, actual);
    if (!fn_digest_equal(actual, expected))
        return fn_fail(err, FACENET_ERR_INTEGRITY,
                       "%s: SHA-256 mismatch: expected %s, got %s (%zu bytes); "
                       "the file is truncated or altered; run 'facenet models fetch' "
                       "to restore it",
                       path, expected, actual, size);
    return FACENET_OK;
}

static facenet_status import_bytes(const char *path, facenet_model_format format,
                                   const uint8_t *data, size_t size,
                                   nn_graph **graph, facenet_error *err)
{
    switch (format) {
    case FACENET_FORMAT_TFLITE:
        return nn_import_tflite(data, size, graph, err);
    case FACENET_FORMAT_DLIB_DAT:
        return nn_import_dlib_dat(data, size, graph, err);
    case FACENET_FORMAT_TFJS: {
        char dir[PATH_MAX];
        const char *slash = strrchr(path, '/');
        if (!slash)
            snprintf(dir, sizeof dir, ".");
        else
            snprintf(dir, sizeof dir, "%.*s", (int)(slash - path), path);
        return nn_import_tfjs(data, size, dir, graph, err);
    }
    }
    return fn_fail(err, FACENET_ERR_INVALID_ARGUMENT, "unknown model format %d", (int)format);
}

/* Takes ownership of `graph`: fuse it (the importers write out PReLU,
 * softmax and batch norm op by op), then prepare the weights for the
 * backend. */
static facenet_status finish_model(nn_graph *graph, const nn_backend *backend,
                                   facenet_model **out, facenet_error *err)
{
    nn_graph *fused = NULL;
    facenet_status st = nn_fuse(graph, &fused, NULL, err);
    nn_graph_free(graph);
    if (st != FACENET_OK)
        return st;
    facenet_model *m = calloc(1, sizeof *m);
    if (!m) {
        nn_graph_free(fused);
        return fn_fail(err, FACENET_ERR_NO_MEMORY, "out of memory loading a model");
    }
    m->graph = fused;
    st = nn_weights_prepare_backend(fused, backend, &m->weights, err);
    if (st != FACENET_OK) {
        facenet_model_free(m);
        return st;
    }
    *out = m;
    return FACENET_OK;
}

/* Does a $FACENET_PRECISION model name (a manifest name, or "mtcnn" for
 * its three networks) cover `model` (NULL for an unpinned file)? */
static int precision_covers(const char *entry, size_t len, const char *model)
{
    if (!model)
        return 0;
    if (len == 5 && strncmp(entry, "mtcnn", 5) == 0)
        return strncmp(model, "mtcnn-", 6) == 0;
    return strlen(model) == len && strncmp(entry, model, len) == 0;
}

static int precision_model_known(const char *entry, size_t len)
{
    char name[64];
    if (len == 0 || len >= sizeof name)
        return 0;
    memcpy(name, entry, len);
    name[len] = '\0';
    return strcmp(name, "mtcnn") == 0 || facenet_model_find(name) != NULL;
}

/* 1 if $FACENET_PRECISION asks for int8 for `model`, 0 for fp32 (also
 * when unset), -1 (err filled) when it does not parse. Every entry is
 * checked, whether or not it names this model, so a typo fails every
 * load instead of silently leaving a model in fp32. */
static int precision_wants_int8(const char *model, facenet_error *err)
{
    const char *spec = getenv("FACENET_PRECISION");
    int int8 = 0;
    if (!spec || !*spec)
        return 0;
    for (const char *p = spec;;) {
        const char *end = strchr(p, ',');
        const size_t len = end ? (size_t)(end - p) : strlen(p);
        if (len == 0) {
            fn_fail(err, FACENET_ERR_INVALID_ARGUMENT,
                    "FACENET_PRECISION: empty entry in '%s'", spec);
            return -1;
        }
        const char *colon = memchr(p, ':', len);
        const char *prec = colon ? colon + 1 : p;
        const size_t prec_len = len - (size_t)(prec - p);
        int want;
        if (prec_len == 4 && strncmp(prec, "int8", 4) == 0)
            want = 1;
        else if (prec_len == 4 && strncmp(prec, "fp32", 4) == 0)
            want = 0;
        else {
            fn_fail(err, FACENET_ERR_INVALID_ARGUMENT,
                    "FACENET_PRECISION: unknown precision '%.*s' (use fp32 or int8)",
                    (int)prec_len, prec);
            return -1;
        }
        if (colon && !precision_model_known(p, (size_t)(colon - p))) {
            fn_fail(err, FACENET_ERR_INVALID_ARGUMENT,
                    "FACENET_PRECISION: unknown model '%.*s' (a manifest name such as "
                    "mobilefacenet, or mtcnn)",
                    (int)(colon - p), p);
            return -1;
        }
        /* Later entries override earlier ones. */
        if (!colon || precision_covers(p, (size_t)(colon - p), model))
            int8 = want;
        if (!end)
            return int8;
        p = end + 1;
    }
}

/* The named backend; for NULL, the one $FACENET_PRECISION asks for
 * `model` (int8), else the default one. */
static facenet_status pick_backend(const char *name, const char *model,
                                   const nn_backend **out, facenet_error *err)
{
    if (!name) {
        const int int8 = precision_wants_int8(model, err);
        if (int8 < 0)
            return FACENET_ERR_INVALID_ARGUMENT;
        if (!int8) {
            *out = nn_backend_default(err);
            return *out ? FACENET_OK : FACENET_ERR_UNSUPPORTED;
        }
        name = nn_backend_avx2_int8.name;
    }
    *out = nn_backend_find(name);
    if (!*out)
        return fn_fail(err, FACENET_ERR_UNSUPPORTED,
                       "backend '%s': no such backend, or this CPU cannot run it", name);
    return FACENET_OK;
}

static facenet_status load_file(const char *path, facenet_model_format format,
                                const char *expected_sha256, const char *backend_name,
                                const char *model_name, facenet_model **out,
                                facenet_error *err)
{
    uint8_t *data = NULL;
    size_t size = 0;
    nn_graph *graph = NULL;
    facenet_status st;

    if (!out)
        return fn_fail(err, FACENET_ERR_INVALID_ARGUMENT, "out is NULL");
    *out = NULL;
    if (!path)
        return fn_fail(err, FACENET_ERR_INVALID_ARGUMENT, "path is NULL");
    const nn_backend *backend = NULL;
    st = pick_backend(backend_name, model_name, &backend, err);
    if (st != FACENET_OK)
        return st;
    st = fn_read_file(path, MODEL_MAX_BYTES, &data, &size, err);
    if (st == FACENET_ERR_NOT_FOUND)
        fn_fail(err, st, "%s: model file is missing; run 'facenet models fetch'", path);
    if (st != FACENET_OK)
        return st;
    if (expected_sha256)
        st = check_digest(path, data, size, expected_sha256, err);
    if (st == FACENET_OK) {
        st = import_bytes(path, format, data, size, &graph, err);
        if (st != FACENET_OK)
            fn_error_prefix(err, "%s", path);
    }
    free(data);
    if (st != FACENET_OK)
        return st;
    return finish_model(graph, backend, out, err);
}

facenet_status facenet_model_load_file(const char *path,
                                       facenet_model_format format,
                                       const char *expected_sha256,
                                       facenet_model **out,
                                       facenet_error *err)
{
    return load_file(path, format, expected_sha256, NULL, NULL, out, err);
}

/* Shards of a pinned TF.js model: only the pinned shard is accepted, and
 * it is hashed in memory, so the bytes parsed are the bytes checked. */
typedef struct pinned_shard {
    const char *dir;
    const facenet_model_info *info;
} pinned_shard;

static facenet_status load_pinned_shard(void *ctx, const char *name,
                                        uint8_t **data, size_t *size,
                                        facenet_error *err)
{
    const pinned_shard *pin = ctx;
    char path[PATH_MAX];
    facenet_status st;

    if (!pin->info->extra_file || strcmp(name, pin->info->extra_file) != 0)
        return fn_fail(err, FACENET_ERR_INTEGRITY,
                       "weights manifest names shard '%s', which is not pinned", name);
    snprintf(path, sizeof path, "%s/%s", pin->dir, name);
    st = fn_read_file(path, TFJS_MAX_SHARD_BYTES, data, size, err);
    if (st == FACENET_ERR_NOT_FOUND)
        return fn_fail(err, st, "%s: model file is missing; run 'facenet models fetch'", path);
    if (st != FACENET_OK)
        return st;
    st = check_digest(path, *data, *size, pin->info->extra_sha256, err);
    if (st != FACENET_OK) {
        free(*data);
        *data = NULL;
    }
    return st;
}

facenet_status facenet_model_load_backend(const char *dir,
                                          const facenet_model_info *info,
                                          const char *backend_name,
                                          facenet_model **out,
                                          facenet_error *err)
{
    char path[PATH_MAX];
    uint8_t *data = NULL;
    size_t size = 0;
    nn_graph *graph = NULL;
    facenet_status st;

    if (!out)
        return fn_fail(err, FACENET_ERR_INVALID_ARGUMENT, "out is NULL");
    *out = NULL;
    if (!dir || !info)
        return fn_fail(err, FACENET_ERR_INVALID_ARGUMENT, "dir and info are required");
    snprintf(path, sizeof path, "%s/%s", dir, info->file_name);
    if (info->format != FACENET_FORMAT_TFJS)
        return load_file(path, info->format, info->sha256, backend_name, info->name, out,
                         err);

    const nn_backend *backend = NULL;
    st = pick_backend(backend_name, info->name, &backend, err);
    if (st != FACENET_OK)
        return st;
    st = fn_read_file(path, MODEL_MAX_BYTES, &data, &size, err);
    if (st == FACENET_ERR_NOT_FOUND)
        return fn_fail(err, st, "%s: model file is missing; run 'facenet models fetch'", path);
    if (st != FACENET_OK)
        return st;
    st = check_digest(path, data, size, info->sha256, err);
    if (st == FACENET_OK) {
        pinned_shard pin = {dir, info};
        st = nn_import_tfjs_core(data, size, load_pinned_shard, &pin, &graph, err);
        if (st != FACENET_OK && st != FACENET_ERR_INTEGRITY && st != FACENET_ERR_NOT_FOUND)
            fn_error_prefix(err, "%s", path);
    }
    free(data);
    if (st != FACENET_OK)
        return st;
    return finish_model(graph, backend, out, err);
}

facenet_status facenet_model_load(const char *dir,
                                  const facenet_model_info *info,
                                  facenet_model **out, facenet_error *err)
{
    return facenet_model_load_backend(dir, info, NULL, out, err);
}

const char *facenet_model_backend(const facenet_model *model)
{
    return model ? model->weights.backend->name : NULL;
}

const char *facenet_backend_name(int index)
{
    const nn_backend *b = nn_backend_at(index);
    return b ? b->name : NULL;
}

int facenet_backend_available(const char *name)
{
    return nn_backend_find(name) != NULL;
}

void facenet_model_free(facenet_model *model)
{
    if (!model)
        return;
    nn_weights_free(&model->weights);
    nn_graph_free(model->graph);
    free(model);
}

int facenet_model_output_count(const facenet_model *model)
{
    return model ? model->graph->n_outputs : 0;
}

const char *facenet_model_output_name(const facenet_model *model, int index)
{
    if (!model || index < 0 || index >= model->graph->n_outputs)
        return NULL;
    return model->graph->values[model->graph->outputs[index]].name;
}

int64_t facenet_model_macs(const facenet_model *model, int n, int h, int w, int c)
{
    const nn_graph *g;
    nn_shape input;
    nn_shape *shapes;
    int64_t macs = -1;

    if (!model)
        return -1;
    g = model->graph;
    input = g->values[g->input].shape.rank == 2 ? nn_shape2(n, c) : nn_shape4(n, h, w, c);
    shapes = malloc((size_t)g->n_values * sizeof *shapes);
    if (shapes && nn_infer_shapes(g, &input, shapes, NULL) == FACENET_OK)
        macs = nn_graph_macs(g, shapes);
    free(shapes);
    return macs;
}

facenet_status facenet_session_create(const facenet_model *model,
                                      facenet_session **out,
                                      facenet_error *err)
{
    facenet_session *s;
    facenet_status st;

    if (!out)
        return fn_fail(err, FACENET_ERR_INVALID_ARGUMENT, "out is NULL");
    *out = NULL;
    if (!model)
        return fn_fail(err, FACENET_ERR_INVALID_ARGUMENT, "model is NULL");
    s = calloc(1, sizeof *s);
    if (!s)
        return fn_fail(err, FACENET_ERR_NO_MEMORY, "out of memory creating a session");
    s->model = model;
    st = nn_exec_init(&s->exec, model->graph, &model->weights, err);
    if (st == FACENET_OK)
        st = facenet_session_set_threads(s, 0, err);
    if (st != FACENET_OK) {
        facenet_session_free(s);
        return st;
    }
    *out = s;
    return FACENET_OK;
}

facenet_status facenet_session_set_threads(facenet_session *session, int threads,
                                           facenet_error *err)
{
    nn_pool *pool = NULL;

    if (!session)
        return fn_fail(err, FACENET_ERR_INVALID_ARGUMENT, "session is NULL");
    if (threads < 0 || threads > NN_POOL_MAX_THREADS)
        return fn_fail(err, FACENET_ERR_INVALID_ARGUMENT, "thread count %d is not in 0..%d",
                       threads, NN_POOL_MAX_THREADS);
    if (threads == 0)
        threads = nn_threads_from_env(1);
    if (threads == nn_pool_threads(session->pool))
        return FACENET_OK;
    if (threads > 1) {
        facenet_status st = nn_pool_create(threads, &pool, err);
        if (st != FACENET_OK)
            return st;
    }
    nn_exec_set_pool(&session->exec, pool);
    nn_pool_free(session->pool);
    session->pool = pool;
    return FACENET_OK;
}

int facenet_session_threads(const facenet_session *session)
{
    return session ? nn_pool_threads(session->pool) : 0;
}

void facenet_session_free(facenet_session *session)
{
    if (!session)
        return;
    nn_exec_free(&session->exec);
    nn_pool_free(session->pool);
    free(session);
}

facenet_status facenet_session_run(facenet_session *session,
                                   const float *input, int n, int h, int w,
                                   int c, facenet_error *err)
{
    const nn_graph *g;
    nn_shape shape;

    if (!session || !input)
        return fn_fail(err, FACENET_ERR_INVALID_ARGUMENT, "session and input are required");
    if (n < 1 || h < 1 || w < 1 || c < 1 || n > 65536 || h > 65536 || w > 65536 || c > 65536)
        return fn_fail(err, FACENET_ERR_INVALID_ARGUMENT, "bad input shape [%d,%d,%d,%d]",
                       n, h, w, c);
    g = session->model->graph;
    shape = g->values[g->input].shape.rank == 2 ? nn_shape2(n, h * w * c)
                                                : nn_shape4(n, h, w, c);
    return nn_exec_run(&session->exec, input, &shape, err);
}

facenet_status facenet_session_output(const facenet_session *session,
                                      int index, const float **data,
                                      int dims[4], int *rank,
                                      facenet_error *err)
{
    const nn_graph *g;
    const nn_shape *s;
    int id;

    if (!session || !data)
        return fn_fail(err, FACENET_ERR_INVALID_ARGUMENT, "session and data are required");
    g = session->model->graph;
    if (index < 0 || index >= g->n_outputs)
        return fn_fail(err, FACENET_ERR_INVALID_ARGUMENT, "output %d of %d", index,
                       g->n_outputs);
    if (!session->exec.planned)
        return fn_fail(err, FACENET_ERR_INVALID_ARGUMENT, "the session has not run yet");
    id = g->outputs[index];
    s = nn_exec_shape(&session->exec, id);
    *data = nn_exec_value(&session->exec, id);
    if (dims) {
        for (int i = 0; i < 4; i++)
            dims[i] = i < s->rank ? s->dims[i] : 1;
    }
    if (rank)
        *rank = s->rank;
    return FACENET_OK;
}
