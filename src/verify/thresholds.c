/*
 * thresholds.c - read and write thresholds.json (see thresholds.h).
 */
#include "verify/thresholds.h"

#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/error.h"
#include "common/fileio.h"

static facenet_status load_doc(const char *path, json_t **out, facenet_error *err)
{
    uint8_t *data = NULL;
    size_t size = 0;
    json_error_t jerr;
    facenet_status st = fn_read_file(path, THRESHOLDS_MAX_BYTES, &data, &size, err);

    *out = NULL;
    if (st != FACENET_OK)
        return st;
    json_t *doc = json_loadb((const char *)data, size, 0, &jerr);
    free(data);
    if (!doc)
        return fn_fail(err, FACENET_ERR_FORMAT, "%s line %d: %s", path, jerr.line, jerr.text);
    json_t *schema = json_object_get(doc, "schema");
    json_t *models = json_object_get(doc, "models");
    if (!json_is_object(doc) || !json_is_integer(schema) || json_integer_value(schema) != 1 ||
        !json_is_object(models)) {
        json_decref(doc);
        return fn_fail(err, FACENET_ERR_FORMAT,
                       "%s: not a thresholds file (needs \"schema\": 1 and a \"models\" object)",
                       path);
    }
    *out = doc;
    return FACENET_OK;
}

static int valid_similarity(const json_t *v)
{
    if (!json_is_number(v))
        return 0;
    double x = json_number_value(v);
    return isfinite(x) && x >= -1.0 && x <= 1.0;
}

facenet_status thresholds_read(const char *path, const char *model, double *threshold,
                               double *threshold_far, facenet_error *err)
{
    json_t *doc;
    facenet_status st;

    if (!path || !model || !threshold)
        return fn_fail(err, FACENET_ERR_INVALID_ARGUMENT, "path, model and threshold are required");
    if ((st = load_doc(path, &doc, err)) != FACENET_OK)
        return st;
    json_t *entry = json_object_get(json_object_get(doc, "models"), model);
    if (!entry) {
        json_decref(doc);
        return fn_fail(err, FACENET_ERR_NOT_FOUND, "%s: no thresholds for model '%s'", path,
                       model);
    }
    if (!json_is_object(entry)) {
        json_decref(doc);
        return fn_fail(err, FACENET_ERR_FORMAT, "%s: entry '%s' is not an object", path, model);
    }
    json_t *t = json_object_get(entry, "threshold"), *tf = json_object_get(entry, "threshold_far");
    if (!valid_similarity(t) || (threshold_far && tf && !valid_similarity(tf))) {
        json_decref(doc);
        return fn_fail(err, FACENET_ERR_FORMAT,
                       "%s: model '%s': thresholds must be cosine similarities in [-1, 1]", path,
                       model);
    }
    *threshold = json_number_value(t);
    if (threshold_far)
        *threshold_far = tf ? json_number_value(tf) : NAN;
    json_decref(doc);
    return FACENET_OK;
}

facenet_status thresholds_write(const char *path, const char *model,
                                const thresholds_entry *e, facenet_error *err)
{
    json_t *doc = NULL;
    char tmp[4096];
    facenet_status st;

    if (!path || !model || !e)
        return fn_fail(err, FACENET_ERR_INVALID_ARGUMENT, "path, model and entry are required");
    if (access(path, F_OK) == 0) {
        if ((st = load_doc(path, &doc, err)) != FACENET_OK)
            return st;
    } else {
        doc = json_pack("{s:i,s:s,s:{}}", "schema", 1, "metric", "cosine", "models");
        if (!doc)
            return fn_fail(err, FACENET_ERR_NO_MEMORY, "out of memory");
    }
    json_t *entry = json_pack("{s:f,s:f,s:f,s:f,s:f,s:f,s:b,s:s,s:I}", "threshold", e->threshold,
                              "threshold_far", isfinite(e->threshold_far) ? e->threshold_far : -1.0,
                              "far_target", e->far_target, "accuracy", e->accuracy, "val", e->val,
                              "far", e->far, "flip", e->flip, "pairs", e->pairs ? e->pairs : "",
                              "n_pairs", (json_int_t)e->n_pairs);
    if (entry && e->has_weight &&
        json_object_set_new(entry, "ensemble_weight", json_real(e->weight)) != 0) {
        json_decref(entry);
        entry = NULL;
    }
    if (!entry || json_object_set_new(json_object_get(doc, "models"), model, entry) != 0) {
        json_decref(doc);
        return fn_fail(err, FACENET_ERR_NO_MEMORY, "out of memory");
    }
    if (snprintf(tmp, sizeof tmp, "%s.%ld.part", path, (long)getpid()) >= (int)sizeof tmp) {
        json_decref(doc);
        return fn_fail(err, FACENET_ERR_LIMIT, "path %s is too long", path);
    }
    int rc = json_dump_file(doc, tmp, JSON_INDENT(2) | JSON_SORT_KEYS | JSON_REAL_PRECISION(6));
    json_decref(doc);
    if (rc != 0 || rename(tmp, path) != 0) {
        int e2 = errno;
        unlink(tmp);
        return fn_fail(err, FACENET_ERR_IO, "cannot write %s: %s", path,
                       rc != 0 ? "write failed" : strerror(e2));
    }
    return FACENET_OK;
}

/* The entry `key` of a loaded thresholds file into *out; 0 when found, 1
 * when the file has no such entry, or a status (format error). */
static int entry_from_doc(json_t *doc, const char *path, const char *key,
                          facenet_thresholds *out, facenet_error *err)
{
    json_t *entry = json_object_get(json_object_get(doc, "models"), key);
    if (!entry)
        return 1;
    json_t *t = json_object_get(entry, "threshold"), *tf = json_object_get(entry, "threshold_far");
    json_t *pairs = json_object_get(entry, "pairs"), *n_pairs = json_object_get(entry, "n_pairs");
    if (!json_is_object(entry)) {
        fn_fail(err, FACENET_ERR_FORMAT, "%s: entry '%s' is not an object", path, key);
        return -1;
    }
    /* threshold_far is -1 when the calibration never reached its FAR. */
    if (!valid_similarity(t) || (tf && !valid_similarity(tf))) {
        fn_fail(err, FACENET_ERR_FORMAT,
                "%s: entry '%s': thresholds must be cosine similarities in [-1, 1]", path, key);
        return -1;
    }
    out->threshold = (float)json_number_value(t);
    out->threshold_strict = tf && json_number_value(tf) > -1 ? (float)json_number_value(tf) : 0;
    snprintf(out->source, sizeof out->source, "%s, entry '%s' (%lld pairs from %s)", path, key,
             json_is_integer(n_pairs) ? (long long)json_integer_value(n_pairs) : -1LL,
             json_is_string(pairs) ? json_string_value(pairs) : "?");
    return 0;
}

facenet_status facenet_model_thresholds(const char *model_dir, const facenet_model_info *info,
                                        int flip, facenet_thresholds *out, facenet_error *err)
{
    return facenet_model_thresholds_jitter(model_dir, info, flip, 0, out, err);
}

facenet_status facenet_model_thresholds_jitter(const char *model_dir,
                                               const facenet_model_info *info, int flip,
                                               int jitters, facenet_thresholds *out,
                                               facenet_error *err)
{
    char path[4096], flip_key[256], plain_key[256], suffix[32] = "";
    json_t *doc = NULL;
    facenet_status st;

    if (!info || !out)
        return fn_fail(err, FACENET_ERR_INVALID_ARGUMENT, "info and out are required");
    if (jitters < 0 || jitters > FACENET_MAX_JITTERS)
        return fn_fail(err, FACENET_ERR_INVALID_ARGUMENT, "jitters must be in [0, %d]",
                       FACENET_MAX_JITTERS);
    memset(out, 0, sizeof *out);
    /* The manifest's values were measured without jitter: not a default
     * for jittered embeddings. */
    if (jitters == 0) {
        out->threshold = info->threshold;
        out->threshold_strict = info->threshold_strict;
        snprintf(out->source, sizeof out->source, "manifest");
    } else {
        snprintf(suffix, sizeof suffix, "+jitter%d", jitters);
        snprintf(out->source, sizeof out->source, "none (no '%s%s' calibration)", info->name,
                 suffix);
    }
    if (!model_dir || info->embedding_dim <= 0)
        return FACENET_OK;
    if (snprintf(path, sizeof path, "%s/%s", model_dir, FACENET_THRESHOLDS_FILE) >=
            (int)sizeof path ||
        snprintf(flip_key, sizeof flip_key, "%s+flip%s", info->name, suffix) >=
            (int)sizeof flip_key ||
        snprintf(plain_key, sizeof plain_key, "%s%s", info->name, suffix) >=
            (int)sizeof plain_key)
        return fn_fail(err, FACENET_ERR_LIMIT, "model directory or name too long");
    st = load_doc(path, &doc, err);
    if (st == FACENET_ERR_NOT_FOUND)
        return FACENET_OK; /* no calibration file: the defaults above */
    int r = st == FACENET_OK ? 1 : -1;
    if (r == 1 && flip)
        r = entry_from_doc(doc, path, flip_key, out, err);
    if (r == 1)
        r = entry_from_doc(doc, path, plain_key, out, err);
    json_decref(doc);
    if (r < 0) {
        /* Leave no usable value behind: the caller must not match faces
         * with a threshold the file was meant to replace. */
        out->threshold = out->threshold_strict = 0;
        snprintf(out->source, sizeof out->source, "none (unusable %s)", path);
        return st != FACENET_OK ? st : FACENET_ERR_FORMAT;
    }
    return FACENET_OK;
}
