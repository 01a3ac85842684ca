/*
 * fuzz_gallery_import.c - libFuzzer target for facenet_gallery_import, the
 * one gallery call that parses a file someone else wrote (a JSON export,
 * or a sealed one).
 *
 * One empty gallery is opened once; each input is written to a scratch file
 * and imported, plain and as a sealed export under the fuzzer's key.
 * Besides crashes and leaks it checks the contract: a failure has a
 * documented code and a message, and leaves the gallery as it was.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "facenet/facenet.h"
#include "gallery/seal.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static facenet_gallery *gallery;
static char input_path[256];
static uint8_t key[FACENET_GALLERY_KEY_BYTES];

static void setup(void)
{
    char dir[] = "/tmp/fuzz-gallery-import-XXXXXX";
    char path[256];
    facenet_error err;
    if (!mkdtemp(dir))
        abort();
    snprintf(path, sizeof path, "%s/g.gallery", dir);
    snprintf(input_path, sizeof input_path, "%s/input", dir);
    for (int i = 0; i < FACENET_GALLERY_KEY_BYTES; i++)
        key[i] = (uint8_t)(i * 3 + 1);
    /* The model id and dimension of the seed exports: small on purpose. */
    if (facenet_gallery_open(path, key, "fuzz@0123456789abcdef", 4, FACENET_GALLERY_CREATE,
                             &gallery, &err) != FACENET_OK)
        abort();
}

static void import_file(const uint8_t *bytes, size_t n)
{
    facenet_error err;
    size_t added = 0, before = facenet_gallery_size(gallery);
    FILE *f = fopen(input_path, "wb");
    if (!f || fwrite(bytes, 1, n, f) != n || fclose(f) != 0)
        abort();
    memset(&err, 0, sizeof err);
    facenet_status st = facenet_gallery_import(gallery, input_path, key, &added, &err);
    if (st == FACENET_OK) {
        if (facenet_gallery_size(gallery) != before + added)
            abort();
        return;
    }
    if (err.code != st || err.message[0] == '\0' || added != 0 ||
        facenet_gallery_size(gallery) != before)
        abort();
    if (st != FACENET_ERR_FORMAT && st != FACENET_ERR_UNSUPPORTED &&
        st != FACENET_ERR_INVALID_ARGUMENT && st != FACENET_ERR_LIMIT &&
        st != FACENET_ERR_INTEGRITY && st != FACENET_ERR_NO_MEMORY)
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!gallery)
        setup();
    import_file(data, size);
    /* The same bytes sealed: exercises the decrypt-then-parse path. */
    uint8_t *sealed = malloc(size + GALLERY_EXPORT_OVERHEAD);
    if (!sealed)
        return 0;
    gallery_seal_export(key, data, size, sealed);
    import_file(sealed, size + GALLERY_EXPORT_OVERHEAD);
    free(sealed);
    return 0;
}
