/*
 * fuzz_thresholds.c - libFuzzer target for the thresholds.json readers
 * (src/verify/thresholds.c): the input is the file's content, written to
 * MODEL_DIR/thresholds.json in a private temporary directory, then read
 * by thresholds_read (as `validate` and tests do) and by
 * facenet_model_thresholds (as compare, the embedder and the server do),
 * with and without flip.
 *
 * Contract checked besides crashes and leaks: every failure has a message
 * that names the file; every success gives cosine similarities in
 * [-1, 1]; and a file the readers refuse never leaves a usable threshold
 * behind (facenet_model_thresholds fails closed).
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "verify/thresholds.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static char dir[64], path[128];

static void cleanup(void)
{
    remove(path);
    remove(dir);
}

/* One private directory per fuzzing process, removed at exit. */
static int prepare(void)
{
    if (dir[0])
        return 0;
    snprintf(dir, sizeof dir, "/tmp/fuzz_thresholds_XXXXXX");
    if (!mkdtemp(dir))
        return -1;
    snprintf(path, sizeof path, "%s/%s", dir, THRESHOLDS_FILE_NAME);
    atexit(cleanup);
    return 0;
}

static void check_read(const char *model)
{
    double t = 2, tf = 2;
    facenet_error err;
    err.message[0] = '\0';
    facenet_status st = thresholds_read(path, model, &t, &tf, &err);
    if (st != FACENET_OK) {
        if (!strstr(err.message, path))
            abort();
        return;
    }
    if (!(t >= -1 && t <= 1) || !(isnan(tf) || (tf >= -1 && tf <= 1)))
        abort();
}

static void check_model(const char *name, int flip)
{
    const facenet_model_info *info = facenet_model_find(name);
    facenet_thresholds thr;
    facenet_error err;
    if (!info)
        abort();
    err.message[0] = '\0';
    facenet_status st = facenet_model_thresholds(dir, info, flip, &thr, &err);
    if (st != FACENET_OK) {
        if (!strstr(err.message, path) || thr.threshold != 0 || thr.threshold_strict != 0)
            abort();
        return;
    }
    if (!(thr.threshold >= -1 && thr.threshold <= 1) ||
        !(thr.threshold_strict >= -1 && thr.threshold_strict <= 1) || !thr.source[0])
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (prepare() != 0)
        return 0;
    FILE *f = fopen(path, "wb");
    if (!f)
        return 0;
    size_t written = fwrite(data, 1, size, f);
    if (fclose(f) != 0 || written != size)
        return 0;
    check_read("mobilefacenet");
    check_read("ensemble+flip");
    check_model("mobilefacenet", 0);
    check_model("mobilefacenet", 1);
    check_model("dlib-resnet", 1);
    return 0;
}
