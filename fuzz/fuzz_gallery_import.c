/*
 * fuzz_gallery_import.c - libFuzzer target for facenet_gallery_import, the
 * one gallery call that parses a file someone else wrote (a JSON export,
 * or a sealed one).
 *
 * One empty gallery is opened once; each input is written to a scratch file
 * and imported three ways: plain, as a version 1 sealed export, and as a
 * version 2 sealed stream (one record per line), under the fuzzer's key.
 * Besides crashes and leaks it checks the contract: a failure has a
 * documented code and a message, and leaves the gallery as it was.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <sodium.h>

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

/* The same bytes as a sealed version 2 stream: one secretstream record
 * per line, the last one tagged FINAL. Exercises the record reader. */
static void import_as_stream(const uint8_t *data, size_t size)
{
    uint8_t subkey[32], header[crypto_secretstream_xchacha20poly1305_HEADERBYTES];
    crypto_secretstream_xchacha20poly1305_state st;
    size_t cap = GALLERY_EXPORT_MAGIC_BYTES + sizeof header + size +
                 (size + 1) * (4 + crypto_secretstream_xchacha20poly1305_ABYTES);
    uint8_t *out = malloc(cap);
    if (!out)
        return;
    size_t len = 0;
    memcpy(out, GALLERY_EXPORT2_MAGIC, GALLERY_EXPORT_MAGIC_BYTES);
    len += GALLERY_EXPORT_MAGIC_BYTES;
    gallery_export_stream_key(key, subkey);
    crypto_secretstream_xchacha20poly1305_init_push(&st, header, subkey);
    memcpy(out + len, header, sizeof header);
    len += sizeof header;
    size_t at = 0;
    while (at <= size) {
        const uint8_t *nl = at < size ? memchr(data + at, '\n', size - at) : NULL;
        size_t end = nl ? (size_t)(nl - data) : size;
        unsigned long long clen = 0;
        crypto_secretstream_xchacha20poly1305_push(
            &st, out + len + 4, &clen, data + at, end - at,
            (const uint8_t *)GALLERY_EXPORT2_MAGIC, GALLERY_EXPORT_MAGIC_BYTES,
            nl ? 0 : crypto_secretstream_xchacha20poly1305_TAG_FINAL);
        for (int i = 0; i < 4; i++)
            out[len + (size_t)i] = (uint8_t)(clen >> (8 * i));
        len += 4 + (size_t)clen;
        at = end + 1;
    }
    import_file(out, len);
    free(out);
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
    import_as_stream(data, size);
    return 0;
}
