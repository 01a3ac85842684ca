/*
 * key.c - where gallery keys come from: a key file with ssh-like permission
 * checks, or $FACENET_GALLERY_KEY. Never a command-line argument: those are
 * visible to every user in ps(1) and end up in shell history.
 */
#include <errno.h>
#include <fcntl.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/error.h"
#include "facenet/facenet.h"

#define KEY_FILE_MAX 4096

static int is_space(char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

static int all_hex(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F')))
            return 0;
    }
    return 1;
}

facenet_status facenet_gallery_key_parse(const char *text, size_t len,
                                         uint8_t key[FACENET_GALLERY_KEY_BYTES],
                                         facenet_error *err)
{
    size_t start = 0, end = len, got = 0;
    if (!text || !key)
        return fn_fail(err, FACENET_ERR_INVALID_ARGUMENT, "gallery key: no key given");
    if (sodium_init() < 0)
        return fn_fail(err, FACENET_ERR_INTERNAL, "libsodium failed to initialise");
    while (start < end && is_space(text[start]))
        start++;
    while (end > start && is_space(text[end - 1]))
        end--;
    size_t n = end - start;
    const char *s = text + start;

    if (n == 2 * FACENET_GALLERY_KEY_BYTES && all_hex(s, n)) {
        if (sodium_hex2bin(key, FACENET_GALLERY_KEY_BYTES, s, n, NULL, &got, NULL) == 0 &&
            got == FACENET_GALLERY_KEY_BYTES)
            return FACENET_OK;
    }
    /* Base64 of 32 bytes is 43 characters, 44 with padding. */
    if (n == 43 || n == 44) {
        static const int variants[] = {sodium_base64_VARIANT_ORIGINAL,
                                       sodium_base64_VARIANT_ORIGINAL_NO_PADDING,
                                       sodium_base64_VARIANT_URLSAFE,
                                       sodium_base64_VARIANT_URLSAFE_NO_PADDING};
        for (size_t v = 0; v < sizeof variants / sizeof variants[0]; v++) {
            const char *b64_end = NULL;
            if (sodium_base642bin(key, FACENET_GALLERY_KEY_BYTES, s, n, NULL, &got, &b64_end,
                                  variants[v]) == 0 &&
                got == FACENET_GALLERY_KEY_BYTES && b64_end == s + n)
                return FACENET_OK;
        }
    }
    if (len == FACENET_GALLERY_KEY_BYTES) {
        memcpy(key, text, FACENET_GALLERY_KEY_BYTES);
        return FACENET_OK;
    }
    sodium_memzero(key, FACENET_GALLERY_KEY_BYTES);
    return fn_fail(err, FACENET_ERR_FORMAT,
                   "gallery key: expected 32 bytes as 64 hex digits, base64, or raw "
                   "(got %zu characters)",
                   n);
}

static facenet_status check_key_file_mode(const char *path, const struct stat *st,
                                          facenet_error *err)
{
    if (!S_ISREG(st->st_mode))
        return fn_fail(err, FACENET_ERR_INVALID_ARGUMENT, "key file %s is not a regular file",
                       path);
    if (st->st_uid != getuid() && st->st_uid != 0)
        return fn_fail(err, FACENET_ERR_INVALID_ARGUMENT,
                       "key file %s belongs to another user (uid %ld)", path,
                       (long)st->st_uid);
    if (st->st_mode & (S_IRWXG | S_IRWXO))
        return fn_fail(err, FACENET_ERR_INVALID_ARGUMENT,
                       "key file %s is accessible by group or others (mode %03o); "
                       "run: chmod 600 %s",
                       path, (unsigned)(st->st_mode & 0777), path);
    return FACENET_OK;
}

static facenet_status key_from_file(const char *path, uint8_t key[FACENET_GALLERY_KEY_BYTES],
                                    facenet_error *err)
{
    char buf[KEY_FILE_MAX + 1];
    struct stat st;
    size_t n = 0;
    facenet_status status;
    int fd = open(path, O_RDONLY | O_CLOEXEC);

    if (fd < 0)
        return fn_fail(err, errno == ENOENT ? FACENET_ERR_NOT_FOUND : FACENET_ERR_IO,
                       "key file %s: %s", path, strerror(errno));
    /* Checked on the open descriptor, so the file read is the file checked. */
    if (fstat(fd, &st) != 0) {
        close(fd);
        return fn_fail(err, FACENET_ERR_IO, "key file %s: %s", path, strerror(errno));
    }
    status = check_key_file_mode(path, &st, err);
    if (status != FACENET_OK) {
        close(fd);
        return status;
    }
    for (;;) {
        ssize_t r = read(fd, buf + n, sizeof buf - n);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            status = fn_fail(err, FACENET_ERR_IO, "key file %s: %s", path, strerror(errno));
            break;
        }
        if (r == 0)
            break;
        n += (size_t)r;
        if (n > KEY_FILE_MAX) {
            status = fn_fail(err, FACENET_ERR_FORMAT, "key file %s is too large to be a key",
                             path);
            break;
        }
    }
    close(fd);
    if (status == FACENET_OK) {
        status = facenet_gallery_key_parse(buf, n, key, err);
        if (status != FACENET_OK)
            fn_error_prefix(err, "key file %s", path);
    }
    sodium_memzero(buf, sizeof buf);
    return status;
}

facenet_status facenet_gallery_key_load(const char *key_file,
                                        uint8_t key[FACENET_GALLERY_KEY_BYTES],
                                        facenet_error *err)
{
    if (!key)
        return fn_fail(err, FACENET_ERR_INVALID_ARGUMENT, "gallery key: no output buffer");
    if (sodium_init() < 0)
        return fn_fail(err, FACENET_ERR_INTERNAL, "libsodium failed to initialise");
    if (key_file)
        return key_from_file(key_file, key, err);
    const char *env = getenv("FACENET_GALLERY_KEY");
    if (!env || !*env)
        return fn_fail(err, FACENET_ERR_NOT_FOUND,
                       "no gallery key: give --key-file FILE or set FACENET_GALLERY_KEY "
                       "(create one with 'facenet gallery keygen FILE')");
    size_t len = strlen(env);
    if (len == FACENET_GALLERY_KEY_BYTES) /* raw bytes are not accepted from the environment */
        return fn_fail(err, FACENET_ERR_FORMAT,
                       "FACENET_GALLERY_KEY must be 64 hex digits or base64 of 32 bytes");
    facenet_status status = facenet_gallery_key_parse(env, len, key, err);
    if (status != FACENET_OK)
        fn_error_prefix(err, "FACENET_GALLERY_KEY");
    return status;
}

facenet_status facenet_gallery_key_generate(const char *path, facenet_error *err)
{
    uint8_t key[FACENET_GALLERY_KEY_BYTES];
    char hex[2 * FACENET_GALLERY_KEY_BYTES + 2];
    facenet_status status = FACENET_OK;

    if (!path)
        return fn_fail(err, FACENET_ERR_INVALID_ARGUMENT, "key file: no path");
    if (sodium_init() < 0)
        return fn_fail(err, FACENET_ERR_INTERNAL, "libsodium failed to initialise");
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0)
        return fn_fail(err, errno == EEXIST ? FACENET_ERR_INVALID_ARGUMENT : FACENET_ERR_IO,
                       "key file %s: %s%s", path, strerror(errno),
                       errno == EEXIST ? " (refusing to overwrite a key)" : "");
    randombytes_buf(key, sizeof key);
    sodium_bin2hex(hex, sizeof hex - 1, key, sizeof key);
    hex[2 * FACENET_GALLERY_KEY_BYTES] = '\n';
    hex[2 * FACENET_GALLERY_KEY_BYTES + 1] = '\0';
    size_t len = 2 * FACENET_GALLERY_KEY_BYTES + 1, done = 0;
    while (done < len) {
        ssize_t w = write(fd, hex + done, len - done);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0) {
            status = fn_fail(err, FACENET_ERR_IO, "key file %s: %s", path, strerror(errno));
            break;
        }
        done += (size_t)w;
    }
    if (status == FACENET_OK && fsync(fd) != 0)
        status = fn_fail(err, FACENET_ERR_IO, "key file %s: fsync: %s", path, strerror(errno));
    if (close(fd) != 0 && status == FACENET_OK)
        status = fn_fail(err, FACENET_ERR_IO, "key file %s: %s", path, strerror(errno));
    if (status != FACENET_OK)
        unlink(path);
    sodium_memzero(key, sizeof key);
    sodium_memzero(hex, sizeof hex);
    return status;
}

/* The label's word for a backend: only reduced precision is named. */
static const char *precision_suffix(const char *backend)
{
    if (backend && strcmp(backend, "avx2-int8") == 0)
        return "-int8";
    if (backend && strcmp(backend, "mixed") == 0)
        return "-mixed";
    return "";
}

facenet_status facenet_gallery_preprocess_label(const facenet_detector *detector,
                                                const facenet_embedder *embedder, int flip,
                                                char *buf, size_t size, facenet_error *err)
{
    if (!detector || !embedder || !buf)
        return fn_fail(err, FACENET_ERR_INVALID_ARGUMENT, "preprocess label: no pipeline");
    const facenet_model_info *info = facenet_embedder_info(embedder);
    const char *eb = facenet_embedder_backend(embedder);
    int n = snprintf(buf, size, "mtcnn%s/%s%s%s",
                     precision_suffix(facenet_detector_backend(detector)), info->alignment,
                     flip ? "+flip" : "", eb && strcmp(eb, "avx2-int8") == 0 ? "+int8" : "");
    if (n < 0 || (size_t)n >= size || (size_t)n >= FACENET_GALLERY_MODEL_ID_MAX)
        return fn_fail(err, FACENET_ERR_LIMIT, "preprocess label for %s does not fit",
                       info->name);
    return FACENET_OK;
}

facenet_status facenet_gallery_model_id(const facenet_model_info *info, char *buf, size_t size,
                                        facenet_error *err)
{
    if (!info || !buf || !info->name || !info->sha256 || strlen(info->sha256) < 16)
        return fn_fail(err, FACENET_ERR_INVALID_ARGUMENT, "gallery model id: no model");
    int n = snprintf(buf, size, "%s@%.16s", info->name, info->sha256);
    if (n < 0 || (size_t)n >= size || (size_t)n >= FACENET_GALLERY_MODEL_ID_MAX)
        return fn_fail(err, FACENET_ERR_LIMIT, "gallery model id for %s does not fit",
                       info->name);
    return FACENET_OK;
}
