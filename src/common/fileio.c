#include "common/fileio.h"

#include <errno.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "common/error.h"

facenet_status fn_read_file(const char *path, size_t max_bytes,
                            uint8_t **data, size_t *size, facenet_error *err)
{
    struct stat st;
    FILE *f;
    uint8_t *buf;
    size_t got;

    *data = NULL;
    *size = 0;
    f = fopen(path, "rb");
    if (!f) {
        return fn_fail(err,
                       errno == ENOENT ? FACENET_ERR_NOT_FOUND : FACENET_ERR_IO,
                       "%s: %s", path, strerror(errno));
    }
    /* Size from the open descriptor, so the check and the read agree. */
    if (fstat(fileno(f), &st) != 0 || !S_ISREG(st.st_mode)) {
        fclose(f);
        return fn_fail(err, FACENET_ERR_IO, "%s: not a regular file", path);
    }
    if ((uint64_t)st.st_size > (uint64_t)max_bytes) {
        fclose(f);
        return fn_fail(err, FACENET_ERR_LIMIT,
                       "%s: %lld bytes exceeds the limit of %zu bytes", path,
                       (long long)st.st_size, max_bytes);
    }
    buf = malloc(st.st_size > 0 ? (size_t)st.st_size : 1);
    if (!buf) {
        fclose(f);
        return fn_fail(err, FACENET_ERR_NO_MEMORY, "%s: cannot allocate %lld bytes",
                       path, (long long)st.st_size);
    }
    got = fread(buf, 1, (size_t)st.st_size, f);
    if (got != (size_t)st.st_size || ferror(f)) {
        free(buf);
        fclose(f);
        return fn_fail(err, FACENET_ERR_IO, "%s: short read", path);
    }
    fclose(f);
    *data = buf;
    *size = got;
    return FACENET_OK;
}

static void to_hex(const unsigned char *digest, char hex[65])
{
    static const char digits[] = "0123456789abcdef";
    for (int i = 0; i < 32; i++) {
        hex[2 * i] = digits[digest[i] >> 4];
        hex[2 * i + 1] = digits[digest[i] & 15];
    }
    hex[64] = '\0';
}

void fn_sha256_hex(const uint8_t *data, size_t size, char hex[65])
{
    unsigned char digest[crypto_hash_sha256_BYTES];
    crypto_hash_sha256(digest, data, size);
    to_hex(digest, hex);
}

facenet_status fn_sha256_file(const char *path, char hex[65],
                              facenet_error *err)
{
    crypto_hash_sha256_state st;
    unsigned char digest[crypto_hash_sha256_BYTES];
    unsigned char buf[1 << 16];
    size_t n;
    FILE *f = fopen(path, "rb");

    if (!f) {
        return fn_fail(err,
                       errno == ENOENT ? FACENET_ERR_NOT_FOUND : FACENET_ERR_IO,
                       "%s: %s", path, strerror(errno));
    }
    crypto_hash_sha256_init(&st);
    while ((n = fread(buf, 1, sizeof buf, f)) > 0)
        crypto_hash_sha256_update(&st, buf, n);
    if (ferror(f)) {
        fclose(f);
        return fn_fail(err, FACENET_ERR_IO, "%s: read error", path);
    }
    fclose(f);
    crypto_hash_sha256_final(&st, digest);
    to_hex(digest, hex);
    return FACENET_OK;
}

int fn_digest_equal(const char *a, const char *b)
{
    if (!a || !b || strlen(a) != 64 || strlen(b) != 64)
        return 0;
    return sodium_memcmp(a, b, 64) == 0;
}
