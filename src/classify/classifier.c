/*
 * classifier.c - facenet's classifier.py in C: a linear SVM with Platt
 * probabilities, trained by libsvm, saved in a plain, versioned and
 * integrity-checked text format.
 *
 * libsvm's own model files are not used: their loader is a C text parser
 * that trusts its input. Instead the model's arrays are written as JSON
 * numbers behind a digest, and on load they are validated (counts, label
 * permutation, finite values) and the svm_model struct is rebuilt in
 * memory from them, so libsvm's predictor only ever sees consistent data.
 */
#include <math.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "common/atomicfile.h"
#include "common/error.h"
#include "common/fileio.h"
#include "facenet/facenet.h"
#include "gallery/names.h"

#ifdef FACENET_HAVE_LIBSVM
#include <libsvm/svm.h>
#endif

#define CLASSIFIER_FORMAT "facenet-classifier"
#define CLASSIFIER_VERSION 1
#define CLASSIFIER_MAX_BYTES ((size_t)512 << 20)
#define CLASSIFIER_MAX_CLASSES 100000
#define CLASSIFIER_DIM_MAX 4096
/* crypto_kdf context: 8 characters, distinct from the gallery's. */
static const char kdf_context[crypto_kdf_CONTEXTBYTES + 1] = "fnclassf";

struct facenet_classifier {
    char model_id[FACENET_GALLERY_MODEL_ID_MAX];
    int dim;
    size_t n_classes;
    char **names;
    int l;           /* support vectors                               */
    float *sv;       /* l * dim                                       */
    double *coef;    /* (n_classes - 1) * l                           */
    double *rho, *prob_a, *prob_b; /* n_classes * (n_classes - 1) / 2 */
    int *label;      /* n_classes: libsvm's order of our class indices */
    int *n_sv;       /* n_classes                                     */
#ifdef FACENET_HAVE_LIBSVM
    struct svm_model model;  /* points into the arrays above          */
    struct svm_node *nodes;  /* l * (dim + 1)                         */
    struct svm_node **sv_rows;
    double **coef_rows;
#endif
};

void facenet_classifier_free(facenet_classifier *c)
{
    if (!c)
        return;
    for (size_t i = 0; c->names && i < c->n_classes; i++)
        free(c->names[i]);
    free(c->names);
    free(c->sv);
    free(c->coef);
    free(c->rho);
    free(c->prob_a);
    free(c->prob_b);
    free(c->label);
    free(c->n_sv);
#ifdef FACENET_HAVE_LIBSVM
    free(c->nodes);
    free(c->sv_rows);
    free(c->coef_rows);
#endif
    free(c);
}

size_t facenet_classifier_class_count(const facenet_classifier *c)
{
    return c ? c->n_classes : 0;
}

const char *facenet_classifier_class_name(const facenet_classifier *c, size_t i)
{
    return c && i < c->n_classes ? c->names[i] : NULL;
}

const char *facenet_classifier_model(const facenet_classifier *c)
{
    return c ? c->model_id : NULL;
}

int facenet_classifier_dim(const facenet_classifier *c)
{
    return c ? c->dim : 0;
}

static size_t pairs(size_t k)
{
    return k * (k - 1) / 2;
}

/* Arrays for n_classes and l, zeroed; names not included. */
/* calloc that never asks for zero bytes (whose result may be NULL). */
static void *zalloc(size_t n, size_t size)
{
    return calloc(n ? n : 1, size);
}

static int alloc_arrays(facenet_classifier *c)
{
    size_t k = c->n_classes, l = (size_t)c->l;
    c->sv = zalloc(l * (size_t)c->dim, sizeof *c->sv);
    c->coef = zalloc(k > 0 ? (k - 1) * l : 0, sizeof *c->coef);
    c->rho = zalloc(pairs(k), sizeof *c->rho);
    c->prob_a = zalloc(pairs(k), sizeof *c->prob_a);
    c->prob_b = zalloc(pairs(k), sizeof *c->prob_b);
    c->label = zalloc(k, sizeof *c->label);
    c->n_sv = zalloc(k, sizeof *c->n_sv);
    return c->sv && c->coef && c->rho && c->prob_a && c->prob_b && c->label && c->n_sv ? 0 : -1;
}

#ifdef FACENET_HAVE_LIBSVM

static void quiet(const char *s)
{
    (void)s; /* libsvm prints progress to stdout by default */
}

/* Point a libsvm model struct at our arrays (prediction only). */
static int bind_model(facenet_classifier *c)
{
    size_t l = (size_t)c->l, d = (size_t)c->dim, k = c->n_classes;
    c->nodes = malloc(l * (d + 1) * sizeof *c->nodes);
    c->sv_rows = malloc(l * sizeof(struct svm_node *)); /* NOLINT(bugprone-sizeof-expression) */
    c->coef_rows = malloc((k - 1) * sizeof *c->coef_rows);
    if (!c->nodes || !c->sv_rows || !c->coef_rows)
        return -1;
    for (size_t i = 0; i < l; i++) {
        struct svm_node *row = c->nodes + i * (d + 1);
        for (size_t j = 0; j < d; j++) {
            row[j].index = (int)j + 1;
            row[j].value = c->sv[i * d + j];
        }
        row[d].index = -1;
        row[d].value = 0;
        c->sv_rows[i] = row;
    }
    for (size_t m = 0; m + 1 < k; m++)
        c->coef_rows[m] = c->coef + m * l;
    memset(&c->model, 0, sizeof c->model);
    c->model.param.svm_type = C_SVC;
    c->model.param.kernel_type = LINEAR;
    c->model.param.probability = 1;
    c->model.nr_class = (int)k;
    c->model.l = c->l;
    c->model.SV = c->sv_rows;
    c->model.sv_coef = c->coef_rows;
    c->model.rho = c->rho;
    c->model.probA = c->prob_a;
    c->model.probB = c->prob_b;
    c->model.label = c->label;
    c->model.nSV = c->n_sv;
    c->model.free_sv = 0;
    return 0;
}

static facenet_status copy_trained(facenet_classifier *c, const struct svm_model *m,
                                   facenet_error *err)
{
    size_t k = c->n_classes;
    if (m->nr_class != (int)k || !m->probA || !m->probB || m->l < 1)
        return fn_fail(err, FACENET_ERR_INTERNAL,
                       "classifier: libsvm returned %d classes (expected %zu) or no "
                       "probability model",
                       m->nr_class, k);
    c->l = m->l;
    if (alloc_arrays(c) != 0)
        return fn_fail(err, FACENET_ERR_NO_MEMORY, "classifier: out of memory");
    for (int i = 0; i < m->l; i++) {
        /* Dense training rows: index d + 1 holds dimension d. */
        for (const struct svm_node *n = m->SV[i]; n->index != -1; n++)
            if (n->index >= 1 && n->index <= c->dim)
                c->sv[(size_t)i * (size_t)c->dim + (size_t)(n->index - 1)] = (float)n->value;
    }
    for (size_t r = 0; r + 1 < k; r++)
        memcpy(c->coef + r * (size_t)m->l, m->sv_coef[r], (size_t)m->l * sizeof(double));
    memcpy(c->rho, m->rho, pairs(k) * sizeof(double));
    memcpy(c->prob_a, m->probA, pairs(k) * sizeof(double));
    memcpy(c->prob_b, m->probB, pairs(k) * sizeof(double));
    memcpy(c->label, m->label, k * sizeof(int));
    memcpy(c->n_sv, m->nSV, k * sizeof(int));
    return bind_model(c) == 0 ? FACENET_OK
                              : fn_fail(err, FACENET_ERR_NO_MEMORY, "classifier: out of memory");
}
#endif

static facenet_status copy_names(facenet_classifier *c, const char *const *names, size_t k,
                                 facenet_error *err)
{
    c->names = calloc(k, sizeof *c->names);
    if (!c->names)
        return fn_fail(err, FACENET_ERR_NO_MEMORY, "classifier: out of memory");
    c->n_classes = k;
    for (size_t i = 0; i < k; i++) {
        facenet_status st = gallery_check_name(names[i], "class name", err);
        if (st != FACENET_OK) {
            fn_error_prefix(err, "classifier class %zu", i);
            return st;
        }
        c->names[i] = strdup(names[i]);
        if (!c->names[i])
            return fn_fail(err, FACENET_ERR_NO_MEMORY, "classifier: out of memory");
    }
    return FACENET_OK;
}

static int normalise(float *v, int dim)
{
    double ss = 0;
    for (int i = 0; i < dim; i++)
        ss += (double)v[i] * v[i];
    if (!(ss > 0) || !isfinite(ss))
        return -1;
    for (int i = 0; i < dim; i++)
        v[i] = (float)(v[i] / sqrt(ss));
    return 0;
}

facenet_status facenet_classifier_train(const float *embeddings, const int *labels, size_t n,
                                        int dim, const char *const *class_names, size_t n_classes,
                                        const char *model_id, facenet_classifier **out,
                                        facenet_error *err)
{
    if (!out)
        return fn_fail(err, FACENET_ERR_INVALID_ARGUMENT, "classifier: no output");
    *out = NULL;
#ifndef FACENET_HAVE_LIBSVM
    (void)embeddings, (void)labels, (void)n, (void)dim, (void)class_names, (void)n_classes,
        (void)model_id;
    return fn_fail(err, FACENET_ERR_UNSUPPORTED,
                   "classifier: this facenet was built without libsvm (install libsvm-dev)");
#else
    facenet_status st;
    if (!embeddings || !labels || !class_names || !model_id || dim < 1 ||
        dim > CLASSIFIER_DIM_MAX)
        return fn_fail(err, FACENET_ERR_INVALID_ARGUMENT, "classifier: missing argument");
    if (n_classes < 2 || n_classes > CLASSIFIER_MAX_CLASSES)
        return fn_fail(err, FACENET_ERR_INVALID_ARGUMENT,
                       "classifier: needs 2 to %d classes, got %zu", CLASSIFIER_MAX_CLASSES,
                       n_classes);
    if (n > (size_t)INT32_MAX / 2 || n > SIZE_MAX / ((size_t)dim + 1) / sizeof(struct svm_node))
        return fn_fail(err, FACENET_ERR_LIMIT, "classifier: too many samples (%zu)", n);
    if ((st = gallery_check_label(model_id, "model id", 0, err)))
        return st;
    size_t *per_class = calloc(n_classes, sizeof *per_class);
    if (!per_class)
        return fn_fail(err, FACENET_ERR_NO_MEMORY, "classifier: out of memory");
    for (size_t i = 0; i < n; i++) {
        if (labels[i] < 0 || (size_t)labels[i] >= n_classes) {
            free(per_class);
            return fn_fail(err, FACENET_ERR_INVALID_ARGUMENT,
                           "classifier: sample %zu has label %d, outside 0..%zu", i, labels[i],
                           n_classes - 1);
        }
        per_class[labels[i]]++;
    }
    for (size_t k = 0; k < n_classes; k++)
        if (per_class[k] == 0) {
            free(per_class);
            return fn_fail(err, FACENET_ERR_INVALID_ARGUMENT,
                           "classifier: class %zu ('%s') has no samples", k, class_names[k]);
        }
    free(per_class);

    facenet_classifier *c = calloc(1, sizeof *c);
    struct svm_node *nodes = malloc(n * ((size_t)dim + 1) * sizeof *nodes);
    struct svm_node **rows = malloc(n * sizeof(struct svm_node *)); /* NOLINT(bugprone-sizeof-expression) */
    double *y = malloc(n * sizeof *y);
    float *v = malloc((size_t)dim * sizeof *v);
    if (!c || !nodes || !rows || !y || !v) {
        st = fn_fail(err, FACENET_ERR_NO_MEMORY, "classifier: out of memory");
        goto done;
    }
    c->dim = dim;
    snprintf(c->model_id, sizeof c->model_id, "%s", model_id);
    if ((st = copy_names(c, class_names, n_classes, err)))
        goto done;
    for (size_t i = 0; i < n; i++) {
        memcpy(v, embeddings + i * (size_t)dim, (size_t)dim * sizeof *v);
        if (normalise(v, dim) != 0) {
            st = fn_fail(err, FACENET_ERR_INVALID_ARGUMENT,
                         "classifier: sample %zu is zero or not finite", i);
            goto done;
        }
        struct svm_node *row = nodes + i * ((size_t)dim + 1);
        for (int j = 0; j < dim; j++) {
            row[j].index = j + 1;
            row[j].value = v[j];
        }
        row[dim].index = -1;
        row[dim].value = 0;
        rows[i] = row;
        y[i] = labels[i];
    }
    struct svm_problem prob = {(int)n, y, rows};
    struct svm_parameter param;
    memset(&param, 0, sizeof param);
    param.svm_type = C_SVC;
    param.kernel_type = LINEAR;
    param.cache_size = 100;
    param.eps = 1e-3;
    param.C = 1;
    param.shrinking = 1;
    param.probability = 1;
    const char *bad = svm_check_parameter(&prob, &param);
    if (bad) {
        st = fn_fail(err, FACENET_ERR_INVALID_ARGUMENT, "classifier: libsvm: %s", bad);
        goto done;
    }
    svm_set_print_string_function(quiet);
    struct svm_model *m = svm_train(&prob, &param);
    if (!m) {
        st = fn_fail(err, FACENET_ERR_NO_MEMORY, "classifier: libsvm training failed");
        goto done;
    }
    st = copy_trained(c, m, err);
    svm_free_and_destroy_model(&m);
done:
    free(nodes);
    free(rows);
    free(y);
    free(v);
    if (st == FACENET_OK)
        *out = c;
    else
        facenet_classifier_free(c);
    return st;
#endif
}

facenet_status facenet_classifier_predict(const facenet_classifier *c, const char *model_id,
                                          const float *embedding, int dim, double *probabilities,
                                          size_t *best, facenet_error *err)
{
    if (!c || !embedding || !probabilities || !best)
        return fn_fail(err, FACENET_ERR_INVALID_ARGUMENT, "classifier: missing argument");
    if (!model_id || strcmp(model_id, c->model_id) != 0)
        return fn_fail(err, FACENET_ERR_UNSUPPORTED,
                       "classifier was trained on model '%s' embeddings; this one comes from "
                       "'%.64s'",
                       c->model_id, model_id ? model_id : "(none)");
    if (dim != c->dim)
        return fn_fail(err, FACENET_ERR_SHAPE, "classifier: %d dimensions, not %d", dim, c->dim);
#ifndef FACENET_HAVE_LIBSVM
    return fn_fail(err, FACENET_ERR_UNSUPPORTED, "classifier: built without libsvm");
#else
    size_t k = c->n_classes;
    struct svm_node *x = malloc(((size_t)dim + 1) * sizeof *x);
    float *v = malloc((size_t)dim * sizeof *v);
    double *p = malloc(k * sizeof *p);
    facenet_status st = FACENET_OK;
    if (!x || !v || !p) {
        st = fn_fail(err, FACENET_ERR_NO_MEMORY, "classifier: out of memory");
        goto done;
    }
    memcpy(v, embedding, (size_t)dim * sizeof *v);
    if (normalise(v, dim) != 0) {
        st = fn_fail(err, FACENET_ERR_INVALID_ARGUMENT, "classifier: embedding is zero or not "
                                                        "finite");
        goto done;
    }
    for (int j = 0; j < dim; j++) {
        x[j].index = j + 1;
        x[j].value = v[j];
    }
    x[dim].index = -1;
    svm_predict_probability(&c->model, x, p);
    /* libsvm reports in its own label order. */
    size_t top = 0;
    for (size_t j = 0; j < k; j++)
        probabilities[c->label[j]] = p[j];
    for (size_t j = 1; j < k; j++)
        if (probabilities[j] > probabilities[top])
            top = j;
    *best = top;
done:
    free(x);
    free(v);
    free(p);
    return st;
#endif
}

/* ---- the file format ------------------------------------------------------------- */

static json_t *doubles(const double *v, size_t n)
{
    json_t *a = json_array();
    for (size_t i = 0; i < n; i++)
        json_array_append_new(a, json_real(v[i]));
    return a;
}

static json_t *ints(const int *v, size_t n)
{
    json_t *a = json_array();
    for (size_t i = 0; i < n; i++)
        json_array_append_new(a, json_integer(v[i]));
    return a;
}

static void digest(const uint8_t *body, size_t len, const uint8_t *key, char hex[65])
{
    unsigned char d[32];
    if (key) {
        uint8_t subkey[crypto_auth_hmacsha256_KEYBYTES];
        crypto_kdf_derive_from_key(subkey, sizeof subkey, 1, kdf_context, key);
        crypto_auth_hmacsha256(d, body, len, subkey);
        sodium_memzero(subkey, sizeof subkey);
    } else {
        crypto_hash_sha256(d, body, len);
    }
    sodium_bin2hex(hex, 65, d, sizeof d);
}

facenet_status facenet_classifier_save(const facenet_classifier *c, const char *path,
                                       const uint8_t *key, facenet_error *err)
{
    if (!c || !path)
        return fn_fail(err, FACENET_ERR_INVALID_ARGUMENT, "classifier: missing argument");
    if (sodium_init() < 0)
        return fn_fail(err, FACENET_ERR_INTERNAL, "libsodium failed to initialise");
    size_t k = c->n_classes, l = (size_t)c->l;
    json_t *names = json_array(), *coef = json_array(), *sv = json_array();
    for (size_t i = 0; i < k; i++)
        json_array_append_new(names, json_string(c->names[i]));
    for (size_t r = 0; r + 1 < k; r++)
        json_array_append_new(coef, doubles(c->coef + r * l, l));
    for (size_t i = 0; i < l; i++) {
        json_t *row = json_array();
        for (int j = 0; j < c->dim; j++)
            json_array_append_new(row, json_real(c->sv[i * (size_t)c->dim + (size_t)j]));
        json_array_append_new(sv, row);
    }
    json_t *doc = json_pack(
        "{s:s,s:i,s:s,s:i,s:o,s:{s:s,s:s,s:f,s:i,s:i,s:o,s:o,s:o,s:o,s:o,s:o,s:o}}", "format",
        CLASSIFIER_FORMAT, "version", CLASSIFIER_VERSION, "model_id", c->model_id, "dim", c->dim,
        "classes", names, "svm", "type", "c_svc", "kernel", "linear", "C", 1.0, "nr_class",
        (int)k, "l", c->l, "label", ints(c->label, k), "nSV", ints(c->n_sv, k), "rho",
        doubles(c->rho, pairs(k)), "probA", doubles(c->prob_a, pairs(k)), "probB",
        doubles(c->prob_b, pairs(k)), "sv_coef", coef, "sv", sv);
    if (!doc)
        return fn_fail(err, FACENET_ERR_NO_MEMORY, "classifier: out of memory");
    /* 17 digits: every double (and float) survives the round trip. */
    char *body = json_dumps(doc, JSON_INDENT(1) | JSON_REAL_PRECISION(17));
    json_decref(doc);
    if (!body)
        return fn_fail(err, FACENET_ERR_NO_MEMORY, "classifier: out of memory");
    size_t body_len = strlen(body);
    char hex[65], header[128];
    digest((const uint8_t *)body, body_len, key, hex);
    int hl = snprintf(header, sizeof header, "%s %d %s %s\n", CLASSIFIER_FORMAT,
                      CLASSIFIER_VERSION, key ? "hmac-sha256" : "sha256", hex);
    char *file = malloc((size_t)hl + body_len);
    facenet_status st;
    if (!file) {
        st = fn_fail(err, FACENET_ERR_NO_MEMORY, "classifier: out of memory");
    } else {
        /* Bytes of a file, not a C string: no terminator wanted. */
        memcpy(file, header, (size_t)hl); /* NOLINT(bugprone-not-null-terminated-result) */
        memcpy(file + hl, body, body_len); /* NOLINT(bugprone-not-null-terminated-result) */
        st = fn_write_file_atomic(path, file, (size_t)hl + body_len, "classifier", err);
        free(file);
    }
    free(body);
    return st;
}

/* ---- loading: digest first, then strict validation -------------------------------- */

static facenet_status bad_file(facenet_error *err, const char *path, const char *what)
{
    return fn_fail(err, FACENET_ERR_FORMAT, "classifier %s: %s", path, what);
}

static int read_doubles(const json_t *a, double *out, size_t n)
{
    if (!json_is_array(a) || json_array_size(a) != n)
        return -1;
    for (size_t i = 0; i < n; i++) {
        const json_t *x = json_array_get(a, i);
        if (!json_is_number(x) || !isfinite(json_number_value(x)))
            return -1;
        out[i] = json_number_value(x);
    }
    return 0;
}

static int read_ints(const json_t *a, int *out, size_t n, int lo, int hi)
{
    if (!json_is_array(a) || json_array_size(a) != n)
        return -1;
    for (size_t i = 0; i < n; i++) {
        const json_t *x = json_array_get(a, i);
        if (!json_is_integer(x) || json_integer_value(x) < lo || json_integer_value(x) > hi)
            return -1;
        out[i] = (int)json_integer_value(x);
    }
    return 0;
}

static facenet_status parse_body(const char *path, const json_t *doc, facenet_classifier *c,
                                 facenet_error *err)
{
    const char *format = NULL, *model_id = NULL, *type = NULL, *kernel = NULL;
    json_int_t version = 0, dim = 0, nr_class = 0, l = 0;
    json_t *classes = NULL, *svm = NULL;
    json_error_t jerr;
    facenet_status st;

    if (json_unpack_ex((json_t *)doc, &jerr, 0, "{s:s,s:I,s:s,s:I,s:o,s:o}", "format", &format,
                       "version", &version, "model_id", &model_id, "dim", &dim, "classes",
                       &classes, "svm", &svm) != 0 ||
        strcmp(format, CLASSIFIER_FORMAT) != 0)
        return bad_file(err, path, "not a facenet classifier");
    if (version != CLASSIFIER_VERSION)
        return fn_fail(err, FACENET_ERR_UNSUPPORTED, "classifier %s: version %lld; this facenet "
                       "reads version %d", path, (long long)version, CLASSIFIER_VERSION);
    if ((st = gallery_check_label(model_id, "model id", 0, err)))
        return st;
    if (dim < 1 || dim > CLASSIFIER_DIM_MAX || !json_is_array(classes) ||
        json_array_size(classes) < 2 || json_array_size(classes) > CLASSIFIER_MAX_CLASSES)
        return bad_file(err, path, "bad dimension or class list");
    if (json_unpack_ex(svm, &jerr, 0, "{s:s,s:s,s:I,s:I}", "type", &type, "kernel", &kernel,
                       "nr_class", &nr_class, "l", &l) != 0 ||
        strcmp(type, "c_svc") != 0 || strcmp(kernel, "linear") != 0)
        return bad_file(err, path, "not a linear C-SVC");
    size_t k = json_array_size(classes);
    if (nr_class != (json_int_t)k || l < 1 || l > 10 * 1000 * 1000)
        return bad_file(err, path, "class or support vector counts do not agree");
    /* The support vectors must be in the file: no allocation beyond it. */
    const json_t *sv = json_object_get(svm, "sv");
    if (!json_is_array(sv) || json_array_size(sv) != (size_t)l)
        return bad_file(err, path, "support vector count does not agree");
    c->dim = (int)dim;
    c->l = (int)l;
    snprintf(c->model_id, sizeof c->model_id, "%s", model_id);
    const char **names = calloc(k, sizeof *names);
    if (!names)
        return fn_fail(err, FACENET_ERR_NO_MEMORY, "classifier: out of memory");
    for (size_t i = 0; i < k; i++) {
        names[i] = json_string_value(json_array_get(classes, i));
        if (!names[i]) {
            free(names);
            return bad_file(err, path, "a class name is not a string");
        }
    }
    st = copy_names(c, names, k, err);
    free(names);
    if (st != FACENET_OK)
        return st;
    if (alloc_arrays(c) != 0)
        return fn_fail(err, FACENET_ERR_NO_MEMORY, "classifier: out of memory");
    if (read_ints(json_object_get(svm, "label"), c->label, k, 0, (int)k - 1) ||
        read_ints(json_object_get(svm, "nSV"), c->n_sv, k, 0, (int)l) ||
        read_doubles(json_object_get(svm, "rho"), c->rho, pairs(k)) ||
        read_doubles(json_object_get(svm, "probA"), c->prob_a, pairs(k)) ||
        read_doubles(json_object_get(svm, "probB"), c->prob_b, pairs(k)))
        return bad_file(err, path, "labels, counts or coefficients are malformed");
    /* label is a permutation of the classes; nSV adds up to l. */
    char *seen = calloc(k, 1);
    long long total = 0;
    int ok = seen != NULL;
    for (size_t i = 0; ok && i < k; i++) {
        ok = !seen[c->label[i]];
        if (ok)
            seen[c->label[i]] = 1;
        total += c->n_sv[i];
    }
    free(seen);
    if (!ok || total != l)
        return bad_file(err, path, "labels are not a permutation or counts do not add up");
    const json_t *coef = json_object_get(svm, "sv_coef");
    if (!json_is_array(coef) || json_array_size(coef) != k - 1)
        return bad_file(err, path, "coefficient rows do not agree");
    for (size_t r = 0; r + 1 < k; r++)
        if (read_doubles(json_array_get(coef, r), c->coef + r * (size_t)l, (size_t)l))
            return bad_file(err, path, "a coefficient row is malformed");
    double *row = malloc((size_t)dim * sizeof *row);
    if (!row)
        return fn_fail(err, FACENET_ERR_NO_MEMORY, "classifier: out of memory");
    for (size_t i = 0; i < (size_t)l; i++) {
        if (read_doubles(json_array_get(sv, i), row, (size_t)dim)) {
            free(row);
            return bad_file(err, path, "a support vector is malformed");
        }
        for (size_t j = 0; j < (size_t)dim; j++)
            c->sv[i * (size_t)dim + j] = (float)row[j];
    }
    free(row);
    return FACENET_OK;
}

facenet_status facenet_classifier_load(const char *path, const uint8_t *key,
                                       facenet_classifier **out, facenet_error *err)
{
    uint8_t *data = NULL;
    size_t size = 0;
    facenet_status st;
    if (!out || !path)
        return fn_fail(err, FACENET_ERR_INVALID_ARGUMENT, "classifier: missing argument");
    *out = NULL;
#ifndef FACENET_HAVE_LIBSVM
    (void)key;
    return fn_fail(err, FACENET_ERR_UNSUPPORTED,
                   "classifier: this facenet was built without libsvm (install libsvm-dev)");
#else
    if (sodium_init() < 0)
        return fn_fail(err, FACENET_ERR_INTERNAL, "libsodium failed to initialise");
    if ((st = fn_read_file(path, CLASSIFIER_MAX_BYTES, &data, &size, err)))
        return st;
    /* Header: "facenet-classifier 1 sha256|hmac-sha256 <64 hex>\n" */
    const uint8_t *nl = memchr(data, '\n', size < 200 ? size : 200);
    char kind[16], hex[65], want[65];
    int version = 0;
    char header[201];
    if (!nl) {
        free(data);
        return bad_file(err, path, "no header line (not a facenet classifier, or truncated)");
    }
    snprintf(header, sizeof header, "%.*s", (int)(nl - data), (const char *)data);
    int used = 0;
    if (sscanf(header, CLASSIFIER_FORMAT " %d %15s %64s%n", &version, kind, hex, &used) != 3 ||
        header[used] != 0 || strlen(hex) != 64) {
        free(data);
        return bad_file(err, path, "malformed header line");
    }
    if (version != CLASSIFIER_VERSION) {
        free(data);
        return fn_fail(err, FACENET_ERR_UNSUPPORTED, "classifier %s: version %d; this facenet "
                       "reads version %d", path, version, CLASSIFIER_VERSION);
    }
    int signed_file = strcmp(kind, "hmac-sha256") == 0;
    if (!signed_file && strcmp(kind, "sha256") != 0) {
        free(data);
        return bad_file(err, path, "unknown digest kind");
    }
    if (signed_file && !key) {
        free(data);
        return fn_fail(err, FACENET_ERR_INTEGRITY,
                       "classifier %s is signed (HMAC): give its key to check it", path);
    }
    if (!signed_file && key) {
        free(data);
        return fn_fail(err, FACENET_ERR_INTEGRITY,
                       "classifier %s is not signed, but a key was given: refusing an "
                       "unauthenticated file",
                       path);
    }
    const uint8_t *body = nl + 1;
    size_t body_len = size - (size_t)(body - data);
    digest(body, body_len, signed_file ? key : NULL, want);
    if (sodium_memcmp(want, hex, 64) != 0) {
        free(data);
        return fn_fail(err, FACENET_ERR_INTEGRITY,
                       "classifier %s fails its %s check: the file was changed or truncated%s",
                       path, signed_file ? "HMAC" : "SHA-256",
                       signed_file ? ", or the key is wrong" : "");
    }
    json_error_t jerr;
    json_t *doc = json_loadb((const char *)body, body_len, JSON_REJECT_DUPLICATES, &jerr);
    free(data);
    if (!doc)
        return fn_fail(err, FACENET_ERR_FORMAT, "classifier %s: not valid JSON: %s", path,
                       jerr.text);
    facenet_classifier *c = calloc(1, sizeof *c);
    if (!c) {
        json_decref(doc);
        return fn_fail(err, FACENET_ERR_NO_MEMORY, "classifier: out of memory");
    }
    st = parse_body(path, doc, c, err);
    json_decref(doc);
    if (st == FACENET_OK && bind_model(c) != 0)
        st = fn_fail(err, FACENET_ERR_NO_MEMORY, "classifier: out of memory");
    if (st != FACENET_OK) {
        facenet_classifier_free(c);
        return st;
    }
    *out = c;
    return FACENET_OK;
#endif
}
