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
