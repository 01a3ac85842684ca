/*
 * tls.c - read the TLS certificate and key for `facenet serve`.
 */
#include "server/tls.h"

#include <errno.h>
#include <fcntl.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/error.h"

/* Read a whole PEM file into a NUL-terminated buffer. `private_key` adds
 * the permission check, made on the open descriptor so that the file
 * checked is the file read. */
static facenet_status read_pem(const char *what, const char *path, int private_key,
                               char **out, facenet_error *err)
{
    struct stat st;
    char *buf;
    size_t got = 0;
    int fd;

    *out = NULL;
    if (!path || !*path)
        return fn_fail(err, FACENET_ERR_INVALID_ARGUMENT, "%s: no file given", what);
    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return fn_fail(err, FACENET_ERR_IO, "%s %s: %s", what, path, strerror(errno));
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        return fn_fail(err, FACENET_ERR_IO, "%s %s: not a regular file", what, path);
    }
    if (private_key && (st.st_mode & 077) != 0) {
        close(fd);
        return fn_fail(err, FACENET_ERR_INVALID_ARGUMENT,
                       "%s %s: mode %03o gives its group or others access; chmod 600 it", what, path,
                       (unsigned)(st.st_mode & 0777));
    }
    if ((unsigned long long)st.st_size > FN_TLS_FILE_MAX || st.st_size == 0) {
        close(fd);
        return fn_fail(err, FACENET_ERR_LIMIT, "%s %s: empty or larger than %zu bytes", what,
                       path, FN_TLS_FILE_MAX);
    }
    buf = malloc((size_t)st.st_size + 1);
    if (!buf) {
        close(fd);
        return fn_fail(err, FACENET_ERR_NO_MEMORY, "out of memory");
    }
    while (got < (size_t)st.st_size) {
        ssize_t n = read(fd, buf + got, (size_t)st.st_size - got);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        got += (size_t)n;
    }
    close(fd);
    buf[got] = '\0';
    if (got != (size_t)st.st_size || strlen(buf) != got || !strstr(buf, "-----BEGIN ")) {
        sodium_memzero(buf, got);
        free(buf);
        return fn_fail(err, FACENET_ERR_FORMAT, "%s %s: not a PEM file", what, path);
    }
    *out = buf;
    return FACENET_OK;
}

facenet_status fn_tls_pem_load(const char *cert_path, const char *key_path, fn_tls_pem *out,
                               facenet_error *err)
{
    facenet_status st;

    out->cert = out->key = NULL;
    st = read_pem("--tls-cert", cert_path, 0, &out->cert, err);
    if (st == FACENET_OK)
        st = read_pem("--tls-key", key_path, 1, &out->key, err);
    if (st != FACENET_OK)
        fn_tls_pem_free(out);
    return st;
}

void fn_tls_pem_free(fn_tls_pem *pem)
{
    if (pem->key) {
        sodium_memzero(pem->key, strlen(pem->key));
        free(pem->key);
    }
    free(pem->cert);
    pem->cert = pem->key = NULL;
}
