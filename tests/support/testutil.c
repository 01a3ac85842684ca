#include "support/testutil.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void missing(const char *what)
{
    const char *req = getenv("FACENET_REQUIRE_MODELS");
    if (req && strcmp(req, "1") == 0) {
        fprintf(stderr, "FAIL: %s is required (FACENET_REQUIRE_MODELS=1)\n", what);
        exit(1);
    }
    fprintf(stderr, "SKIP: %s is not available\n", what);
    exit(TEST_SKIP_CODE);
}

const char *tu_model_dir(void)
{
    static char dir[4096]; /* test-only; tests are single-threaded here */
    facenet_error err;
    if (facenet_model_dir(dir, sizeof dir, &err) != FACENET_OK)
        missing("the model directory");
    return dir;
}

facenet_model *tu_load_model(const char *name)
{
    const facenet_model_info *info = facenet_model_find(name);
    facenet_model *model = NULL;
    facenet_error err;
    char what[256];

    if (!info) {
        fprintf(stderr, "FAIL: no model '%s' in the manifest\n", name);
        exit(1);
    }
    facenet_status st = facenet_model_load(tu_model_dir(), info, &model, &err);
    if (st == FACENET_ERR_NOT_FOUND) {
        snprintf(what, sizeof what, "model %s (%s)", name, err.message);
        missing(what);
    }
    if (st != FACENET_OK) {
        fprintf(stderr, "FAIL: loading %s: %s\n", name, err.message);
        exit(1);
    }
    return model;
}

const char *tu_golden_dir(void)
{
    const char *dir = getenv("FACENET_GOLDEN_DIR");
    if (!dir || !*dir) {
        fprintf(stderr, "SKIP: FACENET_GOLDEN_DIR is not set\n");
        exit(TEST_SKIP_CODE);
    }
    return dir;
}

json_t *tu_golden_json(const char *file)
{
    char path[4096];
    json_error_t jerr;
    json_t *root;

    snprintf(path, sizeof path, "%s/%s", tu_golden_dir(), file);
    root = json_load_file(path, 0, &jerr);
    if (!root) {
        fprintf(stderr, "FAIL: %s: %s (line %d)\n", path, jerr.text, jerr.line);
        exit(1);
    }
    return root;
}

static size_t flatten(const json_t *v, float *out, size_t max, size_t n)
{
    if (json_is_array(v)) {
        size_t i;
        const json_t *item;
        json_array_foreach(v, i, item) n = flatten(item, out, max, n);
        return n;
    }
    if (json_is_number(v) && n < max)
        out[n++] = (float)json_number_value(v);
    return n;
}

size_t tu_json_floats(const json_t *array, float *out, size_t max)
{
    return flatten(array, out, max, 0);
}

double tu_cosine(const float *a, const float *b, size_t n)
{
    double ab = 0, aa = 0, bb = 0;
    for (size_t i = 0; i < n; i++) {
        ab += (double)a[i] * b[i];
        aa += (double)a[i] * a[i];
        bb += (double)b[i] * b[i];
    }
    return ab / (sqrt(aa) * sqrt(bb) + 1e-30);
}

float tu_max_abs_diff(const float *a, const float *b, size_t n)
{
    float m = 0;
    for (size_t i = 0; i < n; i++) {
        float d = fabsf(a[i] - b[i]);
        if (d > m || d != d)
            m = d;
    }
    return m;
}

float tu_max_abs(const float *a, size_t n)
{
    float m = 0;
    for (size_t i = 0; i < n; i++)
        if (fabsf(a[i]) > m)
            m = fabsf(a[i]);
    return m;
}

float *tu_read_npy_f32(const char *path, int *dims, int *rank)
{
    FILE *f = fopen(path, "rb");
    unsigned char pre[10];
    char header[1024];
    size_t count = 1;
    float *data;
    unsigned hlen;
    const char *p;

    if (!f || fread(pre, 1, 10, f) != 10 || memcmp(pre, "\x93NUMPY", 6) != 0) {
        fprintf(stderr, "FAIL: %s is not a .npy file\n", path);
        exit(1);
    }
    hlen = pre[8] | (pre[9] << 8);
    if (hlen >= sizeof header || fread(header, 1, hlen, f) != hlen) {
        fprintf(stderr, "FAIL: %s: bad header\n", path);
        exit(1);
    }
    header[hlen] = '\0';
    if (!strstr(header, "'<f4'") || strstr(header, "'fortran_order': True")) {
        fprintf(stderr, "FAIL: %s: not little-endian C-order float32\n", path);
        exit(1);
    }
    p = strchr(strstr(header, "'shape'"), '(');
    *rank = 0;
    while (p && *p && *p != ')' && *rank < 4) {
        char *end;
        long v = strtol(p + 1, &end, 10);
        if (end == p + 1)
            break;
        dims[(*rank)++] = (int)v;
        count *= (size_t)v;
        p = end;
        while (*p == ' ')
            p++;
        if (*p != ',')
            break;
    }
    data = malloc(count * sizeof *data);
    if (!data || fread(data, sizeof *data, count, f) != count) {
        fprintf(stderr, "FAIL: %s: short data\n", path);
        exit(1);
    }
    fclose(f);
    return data;
}

int tu_quick(void)
{
    const char *q = getenv("FACENET_TEST_QUICK");
    return q && strcmp(q, "1") == 0;
}
