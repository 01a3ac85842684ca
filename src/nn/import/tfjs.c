/*
 * tfjs.c - reader for TF.js "weights manifest + binary shards" models, as
 * published by face-api for the dlib ResNet.
 *
 * The manifest is a JSON array of groups:
 *   [{"paths": ["a.bin", ...],
 *     "weights": [{"name": "...", "shape": [...], "dtype": "float32",
 *                  "quantization": {"dtype": "uint8", "scale": s, "min": m}},
 *                 ...]}]
 * A group's shards, concatenated in "paths" order, hold its weights back to
 * back in manifest order. A quantised weight stores one uint8 or uint16 per
 * value, decoded as q * scale + min, or one float16 (no scale); others are
 * little-endian float32.
 *
 * Every declared size is checked against the shapes and dtypes before any
 * byte is read, and the group's bytes must be used exactly. Tensor names are
 * then matched with the ResNet topology (dlib_resnet.h); each needed tensor
 * must exist once, with exactly the expected shape.
 *
 * face-api stores conv filters as [KH][KW][I][O] (HWIO) and the final
 * fully connected matrix as [I][O]; both become the graph's canonical
 * layouts here.
 */
#include "nn/import/tfjs.h"

#include <jansson.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/error.h"
#include "common/fileio.h"
#include "nn/import/dlib_resnet.h"
#include "nn/import/import.h"

typedef enum storage {
    STORE_F32,  /* float32, 4 bytes */
    STORE_U8,   /* q * scale + min, 1 byte */
    STORE_U16,  /* q * scale + min, 2 bytes */
    STORE_F16   /* IEEE half, 2 bytes */
} storage;

typedef struct weight {
    const char *name; /* borrowed from the JSON tree */
    int rank;
    int dims[NN_MAX_RANK];
    size_t count;     /* elements */
    storage store;
    double scale, min;
    int group;
    size_t offset;    /* in the group's concatenated bytes */
    int used;         /* claimed by the topology */
} weight;

typedef struct group {
    uint8_t *bytes;   /* concatenated shards */
    size_t size;
} group;

typedef struct manifest {
    weight *weights;
    int n_weights;
    group *groups;
    int n_groups;
} manifest;

static void manifest_free(manifest *m)
{
    for (int i = 0; i < m->n_groups; i++)
        free(m->groups[i].bytes);
    free(m->groups);
    free(m->weights);
}

int tfjs_shard_name_ok(const char *name)
{
    size_t len = strlen(name);
    if (len == 0 || len > TFJS_MAX_PATH)
        return 0;
    if (strchr(name, '/') || strchr(name, '\\') || strstr(name, ".."))
        return 0;
    for (size_t i = 0; i < len; i++)
        if ((unsigned char)name[i] < 0x20)
            return 0;
    return 1;
}

static size_t storage_bytes(storage s)
{
    return s == STORE_F32 ? 4 : s == STORE_U8 ? 1 : 2;
}

/* ---- manifest parsing --------------------------------------------------- */

static facenet_status parse_quantization(const json_t *q, weight *w, facenet_error *err)
{
    const char *dtype = json_string_value(json_object_get(q, "dtype"));
    const json_t *scale = json_object_get(q, "scale");
    const json_t *min = json_object_get(q, "min");

    if (!json_is_object(q) || !dtype)
        return fn_fail(err, FACENET_ERR_FORMAT,
                       "TF.js manifest: tensor '%s': quantization needs a dtype", w->name);
    if (strcmp(dtype, "float16") == 0) {
        w->store = STORE_F16;
        return FACENET_OK;
    }
    if (strcmp(dtype, "uint8") == 0)
        w->store = STORE_U8;
    else if (strcmp(dtype, "uint16") == 0)
        w->store = STORE_U16;
    else
        return fn_fail(err, FACENET_ERR_UNSUPPORTED,
                       "TF.js manifest: tensor '%s': quantization dtype '%.32s' is not supported",
                       w->name, dtype);
    if (!json_is_number(scale) || !json_is_number(min) ||
        !isfinite(json_number_value(scale)) || !isfinite(json_number_value(min)))
        return fn_fail(err, FACENET_ERR_FORMAT,
                       "TF.js manifest: tensor '%s': quantization needs numeric scale and min",
                       w->name);
    w->scale = json_number_value(scale);
    w->min = json_number_value(min);
    return FACENET_OK;
}

static facenet_status parse_weight(const json_t *j, weight *w, facenet_error *err)
{
    const json_t *name = json_object_get(j, "name");
    const json_t *shape = json_object_get(j, "shape");
    const char *dtype = json_string_value(json_object_get(j, "dtype"));
    const json_t *quant = json_object_get(j, "quantization");

    if (!json_is_object(j) || !json_is_string(name) ||
        strlen(json_string_value(name)) != json_string_length(name))
        return fn_fail(err, FACENET_ERR_FORMAT, "TF.js manifest: a weight has no valid name");
    w->name = json_string_value(name);
    if (!json_is_array(shape) || json_array_size(shape) > NN_MAX_RANK)
        return fn_fail(err, FACENET_ERR_FORMAT,
                       "TF.js manifest: tensor '%s': shape must be an array of at most %d dims",
                       w->name, NN_MAX_RANK);
    if (strlen(w->name) > 256)
        return fn_fail(err, FACENET_ERR_FORMAT, "TF.js manifest: a tensor name is too long");
    w->rank = (int)json_array_size(shape);
    w->count = 1;
    for (int i = 0; i < w->rank; i++) {
        const json_t *d = json_array_get(shape, (size_t)i);
        json_int_t v = json_is_integer(d) ? json_integer_value(d) : -1;
        if (v < 0 || v > INT_MAX)
            return fn_fail(err, FACENET_ERR_FORMAT,
                           "TF.js manifest: tensor '%s': dim %d is not a valid size", w->name, i);
        w->dims[i] = (int)v;
        if (v > 0 && w->count > TFJS_MAX_MODEL_BYTES / (size_t)v)
            return fn_fail(err, FACENET_ERR_FORMAT,
                           "TF.js manifest: tensor '%s' declares too many values", w->name);
        w->count *= (size_t)v;
        if (w->count > TFJS_MAX_MODEL_BYTES)
            return fn_fail(err, FACENET_ERR_FORMAT,
                           "TF.js manifest: tensor '%s' declares too many values", w->name);
    }
    if (!dtype)
        return fn_fail(err, FACENET_ERR_FORMAT, "TF.js manifest: tensor '%s' has no dtype",
                       w->name);
    if (strcmp(dtype, "float32") != 0)
        return fn_fail(err, FACENET_ERR_UNSUPPORTED,
                       "TF.js manifest: tensor '%s': dtype '%.32s' is not supported (float32 only)",
                       w->name, dtype);
    w->store = STORE_F32;
    if (quant && !json_is_null(quant))
        return parse_quantization(quant, w, err);
    return FACENET_OK;
}

/* Concatenate the group's shards. `declared` is what its weights need:
 * shards holding more are refused as soon as that is known, so memory is
 * bounded by the (already capped) manifest. */
static facenet_status load_group_bytes(const json_t *paths, int gi, size_t declared,
                                       tfjs_shard_fn load, void *ctx, group *g,
                                       facenet_error *err)
{
    size_t n = json_array_size(paths);
    if (!json_is_array(paths) || n == 0 || n > TFJS_MAX_SHARDS)
        return fn_fail(err, FACENET_ERR_FORMAT,
                       "TF.js manifest: group %d: \"paths\" must list 1..%d shard files", gi,
                       TFJS_MAX_SHARDS);
    for (size_t i = 0; i < n; i++) {
        const json_t *p = json_array_get(paths, i);
        const char *name = json_string_value(p);
        uint8_t *data = NULL;
        size_t size = 0;

        if (!name || strlen(name) != json_string_length(p) || !tfjs_shard_name_ok(name))
            return fn_fail(err, FACENET_ERR_FORMAT,
                           "TF.js manifest: group %d: shard path %zu is not a plain file name "
                           "(no '/', '\\' or '..')", gi, i);
        facenet_status st = load(ctx, name, &data, &size, err);
        if (st != FACENET_OK)
            return st;
        if (size > declared - g->size) {
            free(data);
            return fn_fail(err, FACENET_ERR_FORMAT,
                           "TF.js shard '%s': group %d declares %zu bytes of weights, but its "
                           "shards hold more", name, gi, declared);
        }
        if (size > 0) {
            uint8_t *grown = realloc(g->bytes, g->size + size);
            if (!grown) {
                free(data);
                return fn_fail(err, FACENET_ERR_NO_MEMORY, "out of memory reading shard '%s'",
                               name);
            }
            memcpy(grown + g->size, data, size);
            g->bytes = grown;
            g->size += size;
        }
        free(data);
    }
    if (g->size != declared)
        return fn_fail(err, FACENET_ERR_FORMAT,
                       "TF.js manifest: group %d declares %zu bytes of weights but its shards "
                       "hold %zu bytes (truncated shard?)", gi, declared, g->size);
    return FACENET_OK;
}

static facenet_status parse_manifest(const json_t *root, tfjs_shard_fn load, void *ctx,
                                     manifest *m, facenet_error *err)
{
    size_t n_groups = json_array_size(root);
    size_t total_weights = 0;

    if (!json_is_array(root) || n_groups == 0 || n_groups > TFJS_MAX_SHARDS)
        return fn_fail(err, FACENET_ERR_FORMAT,
                       "TF.js manifest: expected a JSON array of 1..%d weight groups",
                       TFJS_MAX_SHARDS);
    for (size_t gi = 0; gi < n_groups; gi++) {
        const json_t *g = json_array_get(root, gi);
        const json_t *ws = json_object_get(g, "weights");
        if (!json_is_object(g) || !json_is_array(ws))
            return fn_fail(err, FACENET_ERR_FORMAT,
                           "TF.js manifest: group %zu needs \"paths\" and \"weights\" arrays", gi);
        total_weights += json_array_size(ws);
    }
    if (total_weights == 0 || total_weights > TFJS_MAX_WEIGHTS)
        return fn_fail(err, FACENET_ERR_FORMAT, "TF.js manifest: %zu weights (1..%d expected)",
                       total_weights, TFJS_MAX_WEIGHTS);
    m->weights = calloc(total_weights, sizeof *m->weights);
    m->groups = calloc(n_groups, sizeof *m->groups);
    if (!m->weights || !m->groups)
        return fn_fail(err, FACENET_ERR_NO_MEMORY, "out of memory reading a TF.js manifest");
    m->n_groups = (int)n_groups;

    for (size_t gi = 0; gi < n_groups; gi++) {
        const json_t *g = json_array_get(root, gi);
        const json_t *ws = json_object_get(g, "weights");
        size_t offset = 0;
        size_t i;
        const json_t *wj;

        /* Sizes first: a manifest that cannot fit is refused before any
         * shard is read. */
        json_array_foreach(ws, i, wj) {
            weight *w = &m->weights[m->n_weights];
            facenet_status st = parse_weight(wj, w, err);
            if (st != FACENET_OK)
                return st;
            w->group = (int)gi;
            w->offset = offset;
            m->n_weights++;
            /* count <= 2^32 and 4 bytes each: no overflow before the cap. */
            if ((uint64_t)w->count * storage_bytes(w->store) > TFJS_MAX_MODEL_BYTES - offset)
                return fn_fail(err, FACENET_ERR_LIMIT,
                               "TF.js manifest: tensor '%s' goes past %zu bytes of weights",
                               w->name, TFJS_MAX_MODEL_BYTES);
            offset += w->count * storage_bytes(w->store);
        }
        facenet_status st = load_group_bytes(json_object_get(g, "paths"), (int)gi, offset,
                                             load, ctx, &m->groups[gi], err);
        if (st != FACENET_OK)
            return st;
    }
    for (int a = 0; a < m->n_weights; a++)
        for (int b = a + 1; b < m->n_weights; b++)
            if (strcmp(m->weights[a].name, m->weights[b].name) == 0)
                return fn_fail(err, FACENET_ERR_FORMAT,
                               "TF.js manifest: tensor '%s' is declared twice",
                               m->weights[a].name);
    return FACENET_OK;
}

/* ---- decoding ----------------------------------------------------------- */

static float half_to_float(uint16_t h)
{
    int sign = h >> 15, exp = (h >> 10) & 0x1F, frac = h & 0x3FF;
    float v;
    if (exp == 0)
        v = ldexpf((float)frac, -24);
    else if (exp == 31)
        v = frac ? NAN : INFINITY;
    else
        v = ldexpf((float)(frac | 0x400), exp - 25);
    return sign ? -v : v;
}

/* Decode all values of w into out[0..w->count), in stored order. */
static facenet_status decode(const manifest *m, const weight *w, float *out,
                             facenet_error *err)
{
    const uint8_t *p = m->groups[w->group].bytes + w->offset;
    for (size_t i = 0; i < w->count; i++) {
        float v;
        switch (w->store) {
        case STORE_U8:
            v = (float)(p[i] * w->scale + w->min);
            break;
        case STORE_U16:
            v = (float)((p[2 * i] | p[2 * i + 1] << 8) * w->scale + w->min);
            break;
        case STORE_F16:
            v = half_to_float((uint16_t)(p[2 * i] | p[2 * i + 1] << 8));
            break;
        default: {
            uint32_t bits = (uint32_t)p[4 * i] | (uint32_t)p[4 * i + 1] << 8 |
                            (uint32_t)p[4 * i + 2] << 16 | (uint32_t)p[4 * i + 3] << 24;
            memcpy(&v, &bits, sizeof v);
            break;
        }
        }
        if (!isfinite(v))
            return fn_fail(err, FACENET_ERR_FORMAT,
                           "TF.js weights: tensor '%s': value %zu is not finite", w->name, i);
        out[i] = v;
    }
    return FACENET_OK;
}

/* Find the tensor `name` and check it has exactly `rank` dims `dims`. */
static facenet_status find_weight(manifest *m, const char *name, int rank, const int *dims,
                                  const weight **out, facenet_error *err)
{
    for (int i = 0; i < m->n_weights; i++) {
        weight *w = &m->weights[i];
        if (strcmp(w->name, name) != 0)
            continue;
        int ok = w->rank == rank;
        for (int d = 0; ok && d < rank; d++)
            ok = w->dims[d] == dims[d];
        if (!ok) {
            char got[64] = "[", want[64] = "[";
            for (int d = 0; d < w->rank; d++)
                (void)snprintf(got + strlen(got), sizeof got - strlen(got), d ? ",%d" : "%d",
                         w->dims[d]);
            for (int d = 0; d < rank; d++)
                (void)snprintf(want + strlen(want), sizeof want - strlen(want), d ? ",%d" : "%d",
                         dims[d]);
            return fn_fail(err, FACENET_ERR_FORMAT,
                           "TF.js manifest: tensor '%s' has shape %s], expected %s]", name, got,
                           want);
        }
        w->used = 1;
        *out = w;
        return FACENET_OK;
    }
    return fn_fail(err, FACENET_ERR_FORMAT, "TF.js manifest: tensor '%s' is missing", name);
}

/* Decode a tensor of the expected shape straight into dst. */
static facenet_status fetch(manifest *m, const char *name, int rank, const int *dims,
                            float *dst, facenet_error *err)
{
    const weight *w = NULL;
    facenet_status st = find_weight(m, name, rank, dims, &w, err);
    return st != FACENET_OK ? st : decode(m, w, dst, err);
}

static facenet_status fill_conv(manifest *m, const dlib_layer *l, float *w_ohwi,
                                float *bias, facenet_error *err)
{
    char name[DLIB_RESNET_NAME_MAX + 16];
    const int k = l->kernel, in = l->in_c, o = l->out_c;
    const int hwio[4] = {k, k, in, o};
    const size_t count = (size_t)k * k * in * o;
    float *tmp = calloc(count, sizeof *tmp); /* zeroed: decode fills it all */
    facenet_status st;

    if (!tmp)
        return fn_fail(err, FACENET_ERR_NO_MEMORY, "out of memory decoding '%s'", l->name);
    (void)snprintf(name, sizeof name, "%s/conv/filters", l->name);
    st = fetch(m, name, 4, hwio, tmp, err);
    if (st == FACENET_OK) {
        /* HWIO -> OHWI */
        for (int y = 0; y < k; y++)
            for (int x = 0; x < k; x++)
                for (int ic = 0; ic < in; ic++)
                    for (int oc = 0; oc < o; oc++)
                        w_ohwi[(((size_t)oc * k + y) * k + x) * in + ic] =
                            tmp[(((size_t)y * k + x) * in + ic) * o + oc];
        (void)snprintf(name, sizeof name, "%s/conv/bias", l->name);
        st = fetch(m, name, 1, &l->out_c, bias, err);
    }
    free(tmp);
    return st;
}

static facenet_status fill_fc(manifest *m, const dlib_layer *l, float *w_oi,
                              facenet_error *err)
{
    const int io[2] = {l->in_c, l->out_c};
    const size_t count = (size_t)l->in_c * l->out_c;
    float *tmp = calloc(count, sizeof *tmp); /* zeroed: decode fills it all */
    if (!tmp)
        return fn_fail(err, FACENET_ERR_NO_MEMORY, "out of memory decoding 'fc'");
    facenet_status st = fetch(m, l->name, 2, io, tmp, err);
    if (st == FACENET_OK)
        for (int ic = 0; ic < l->in_c; ic++)
            for (int oc = 0; oc < l->out_c; oc++)
                w_oi[(size_t)oc * l->in_c + ic] = tmp[(size_t)ic * l->out_c + oc];
    free(tmp);
    return st;
}

static facenet_status fill_from_tfjs(void *ctx, int index, const dlib_layer *l, float *a,
                                     float *b, facenet_error *err)
{
    manifest *m = ctx;
    char name[DLIB_RESNET_NAME_MAX + 16];
    (void)index;

    switch (l->kind) {
    case DLIB_L_CON:
        return fill_conv(m, l, a, b, err);
    case DLIB_L_AFFINE: {
        (void)snprintf(name, sizeof name, "%s/scale/weights", l->name);
        facenet_status st = fetch(m, name, 1, &l->out_c, a, err);
        if (st != FACENET_OK)
            return st;
        (void)snprintf(name, sizeof name, "%s/scale/biases", l->name);
        return fetch(m, name, 1, &l->out_c, b, err);
    }
    case DLIB_L_FC:
        return fill_fc(m, l, a, err);
    default:
        return fn_fail(err, FACENET_ERR_INTERNAL, "TF.js: layer %d has no parameters", index);
    }
}

facenet_status nn_import_tfjs_core(const uint8_t *manifest_json, size_t json_size,
                                   tfjs_shard_fn load, void *ctx, nn_graph **out,
                                   facenet_error *err)
{
    facenet_error local;
    json_error_t jerr;
    manifest m;
    facenet_status st;

    if (!err)
        err = &local;
    if (!out)
        return fn_fail(err, FACENET_ERR_INVALID_ARGUMENT, "TF.js: out is NULL");
    *out = NULL;
    if (!manifest_json || !load)
        return fn_fail(err, FACENET_ERR_INVALID_ARGUMENT, "TF.js: no manifest or shard loader");
    json_t *root = json_loadb((const char *)manifest_json, json_size, JSON_REJECT_DUPLICATES,
                              &jerr);
    if (!root)
        return fn_fail(err, FACENET_ERR_FORMAT, "TF.js manifest: invalid JSON at line %d: %s",
                       jerr.line, jerr.text);
    memset(&m, 0, sizeof m);
    st = parse_manifest(root, load, ctx, &m, err);
    if (st == FACENET_OK)
        st = dlib_resnet_build(fill_from_tfjs, &m, out, err);
    if (st == FACENET_OK) {
        for (int i = 0; i < m.n_weights; i++) {
            if (!m.weights[i].used) {
                st = fn_fail(err, FACENET_ERR_FORMAT,
                             "TF.js manifest: tensor '%s' is not part of the dlib ResNet",
                             m.weights[i].name);
                nn_graph_free(*out);
                *out = NULL;
                break;
            }
        }
    }
    manifest_free(&m);
    json_decref(root);
    return st;
}

/* ---- shards from a directory --------------------------------------------- */

static facenet_status load_from_dir(void *ctx, const char *name, uint8_t **data,
                                    size_t *size, facenet_error *err)
{
    const char *dir = ctx;
    char path[PATH_MAX];
    int len = snprintf(path, sizeof path, "%s/%s", dir, name);
    if (len < 0 || (size_t)len >= sizeof path)
        return fn_fail(err, FACENET_ERR_INVALID_ARGUMENT, "TF.js shard path is too long: %s/%s",
                       dir, name);
    facenet_status st = fn_read_file(path, TFJS_MAX_SHARD_BYTES, data, size, err);
    if (st != FACENET_OK)
        fn_error_prefix(err, "TF.js weight shard '%s'", name);
    return st;
}

facenet_status nn_import_tfjs(const uint8_t *manifest_json, size_t json_size,
                              const char *shard_dir, nn_graph **out, facenet_error *err)
{
    if (!shard_dir) {
        if (out)
            *out = NULL;
        return fn_fail(err, FACENET_ERR_INVALID_ARGUMENT, "TF.js: no shard directory");
    }
    return nn_import_tfjs_core(manifest_json, json_size, load_from_dir, (void *)shard_dir,
                               out, err);
}
