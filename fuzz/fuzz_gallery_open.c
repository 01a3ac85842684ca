/*
 * fuzz_gallery_open.c - libFuzzer target for opening a gallery file: the
 * bytes are an SQLite file that may have been damaged or crafted.
 *
 * Each input is written as the gallery file (with no log beside it) and
 * opened read-only with the fuzzer's key; when that works, the integrity
 * check, a search and a listing must work or fail cleanly too. Besides
 * crashes and leaks it checks the contract: a failure has a documented code
 * and a message, and *out stays NULL.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "facenet/facenet.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static char path[256], wal[300], shm[300];
static uint8_t key[FACENET_GALLERY_KEY_BYTES];

static void setup(void)
{
    char dir[] = "/tmp/fuzz-gallery-open-XXXXXX";
    if (!mkdtemp(dir))
        abort();
    snprintf(path, sizeof path, "%s/g.gallery", dir);
    snprintf(wal, sizeof wal, "%s-wal", path);
    snprintf(shm, sizeof shm, "%s-shm", path);
    for (int i = 0; i < FACENET_GALLERY_KEY_BYTES; i++)
        key[i] = (uint8_t)(i * 3 + 1);
}

static int count(void *ctx, const facenet_gallery_subject *s)
{
    (void)s;
    ++*(int *)ctx;
    return 0;
}

static void expect_clean(facenet_status st, const facenet_error *err)
{
    if (st == FACENET_OK)
        return;
    if (err->code != st || err->message[0] == '\0')
        abort();
    if (st == FACENET_ERR_INTERNAL && !strstr(err->message, "SQLite code"))
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    facenet_gallery *g = (facenet_gallery *)1;
    facenet_error err;
    if (!path[0])
        setup();
    unlink(wal);
    unlink(shm);
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(data, 1, size, f) != size || fclose(f) != 0)
        abort();
    memset(&err, 0, sizeof err);
    facenet_status st = facenet_gallery_open(path, key, NULL, 0, FACENET_GALLERY_READ_ONLY, &g,
                                             &err);
    if (st != FACENET_OK) {
        if (g != NULL)
            abort();
        expect_clean(st, &err);
        return 0;
    }
    expect_clean(facenet_gallery_check(g, &err), &err);
    int dim = facenet_gallery_dim(g);
    float *q = calloc((size_t)dim, sizeof *q);
    facenet_gallery_match m[3];
    facenet_gallery_search_options o;
    size_t n = 0;
    int subjects = 0;
    if (q) {
        q[0] = 1;
        facenet_gallery_search_options_default(&o);
        o.k = 3;
        o.threshold = 0.5f;
        st = facenet_gallery_search(g, facenet_gallery_model(g), q, dim, &o, m, &n, &err);
        expect_clean(st, &err);
        if (st == FACENET_OK && n > 3)
            abort();
        free(q);
    }
    expect_clean(facenet_gallery_list(g, NULL, count, &subjects, &err), &err);
    facenet_gallery_close(g);
    return 0;
}
