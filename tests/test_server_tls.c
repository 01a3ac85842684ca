/* Unit tests of the TLS file loading for `facenet serve` (src/server/tls.c):
 * the private key's permission check, PEM and size checks, all or
 * nothing. (The handshake itself is tested by tests/cli/serve_tls.sh.) */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "server/tls.h"

static const char cert_pem[] = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";
static const char key_pem[] = "-----BEGIN PRIVATE KEY-----\nMIGH\n-----END PRIVATE KEY-----\n";

typedef struct files {
    char dir[64], cert[96], key[96];
} files;

static void write_file(const char *path, const void *data, size_t len, mode_t mode)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, data, len), (ssize_t)len);
    close(fd);
    assert_int_equal(chmod(path, mode), 0); /* chmod: the umask does not apply */
}

static int setup(void **state)
{
    files *f = calloc(1, sizeof *f);
    if (!f)
        return -1;
    snprintf(f->dir, sizeof f->dir, "/tmp/facenet_tls_XXXXXX");
    if (!mkdtemp(f->dir))
        return -1;
    snprintf(f->cert, sizeof f->cert, "%s/server.crt", f->dir);
    snprintf(f->key, sizeof f->key, "%s/server.key", f->dir);
    write_file(f->cert, cert_pem, strlen(cert_pem), 0644);
    write_file(f->key, key_pem, strlen(key_pem), 0600);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    files *f = *state;
    unlink(f->cert);
    unlink(f->key);
    rmdir(f->dir);
    free(f);
    return 0;
}

static void expect_refused(const files *f, facenet_status code, const char *part)
{
    fn_tls_pem pem = {(char *)0x1, (char *)0x1};
    facenet_error err;

    memset(&err, 0, sizeof err);
    assert_int_equal(fn_tls_pem_load(f->cert, f->key, &pem, &err), code);
    assert_null(pem.cert);
    assert_null(pem.key);
    if (!strstr(err.message, part))
        fail_msg("message '%s' lacks '%s'", err.message, part);
    assert_null(strstr(err.message, "PRIVATE KEY")); /* never echoes the key */
}

static void test_loads_private_files(void **state)
{
    files *f = *state;
    fn_tls_pem pem;
    facenet_error err;

    assert_int_equal(fn_tls_pem_load(f->cert, f->key, &pem, &err), FACENET_OK);
    assert_string_equal(pem.cert, cert_pem);
    assert_string_equal(pem.key, key_pem);
    fn_tls_pem_free(&pem);
    assert_null(pem.cert);
    assert_null(pem.key);
    /* 0400 is fine too. */
    assert_int_equal(chmod(f->key, 0400), 0);
    assert_int_equal(fn_tls_pem_load(f->cert, f->key, &pem, &err), FACENET_OK);
    fn_tls_pem_free(&pem);
}

static void test_refuses_readable_keys(void **state)
{
    files *f = *state;
    const mode_t modes[] = {0644, 0640, 0604, 0620, 0602, 0610, 0601, 0666};

    for (size_t i = 0; i < sizeof modes / sizeof modes[0]; i++) {
        char want[32];
        assert_int_equal(chmod(f->key, modes[i]), 0);
        snprintf(want, sizeof want, "mode %03o", (unsigned)modes[i]);
        expect_refused(f, FACENET_ERR_INVALID_ARGUMENT, want);
    }
    /* The certificate is public: a readable one is fine (checked above). */
}

static void test_refuses_bad_files(void **state)
{
    files *f = *state;
    char big_path[128];
    char *big;

    write_file(f->cert, "not a certificate\n", 18, 0644);
    expect_refused(f, FACENET_ERR_FORMAT, "--tls-cert");
    write_file(f->cert, cert_pem, strlen(cert_pem), 0644);
    write_file(f->key, "", 0, 0600);
    expect_refused(f, FACENET_ERR_LIMIT, "empty");
    /* A NUL inside: not PEM text (and would cut the key short). */
    write_file(f->key, "-----BEGIN PRIVATE KEY-----\n\0xx", 31, 0600);
    expect_refused(f, FACENET_ERR_FORMAT, "not a PEM file");
    write_file(f->key, key_pem, strlen(key_pem), 0600);

    /* Over the size cap (a sparse file: refused from its size). */
    snprintf(big_path, sizeof big_path, "%s", f->cert);
    assert_int_equal(truncate(big_path, (off_t)FN_TLS_FILE_MAX + 1), 0);
    expect_refused(f, FACENET_ERR_LIMIT, "larger than");
    write_file(f->cert, cert_pem, strlen(cert_pem), 0644);

    /* A directory, a missing file, no file. */
    big = strdup(f->cert);
    assert_non_null(big);
    snprintf(f->cert, sizeof f->cert, "%s", f->dir);
    expect_refused(f, FACENET_ERR_IO, "not a regular file");
    snprintf(f->cert, sizeof f->cert, "%s/missing.crt", f->dir);
    expect_refused(f, FACENET_ERR_IO, "missing.crt");
    snprintf(f->cert, sizeof f->cert, "%s", big);
    free(big);
    {
        fn_tls_pem pem;
        facenet_error err;
        assert_int_equal(fn_tls_pem_load(f->cert, NULL, &pem, &err),
                         FACENET_ERR_INVALID_ARGUMENT);
        assert_null(pem.cert);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_loads_private_files, setup, teardown),
        cmocka_unit_test_setup_teardown(test_refuses_readable_keys, setup, teardown),
        cmocka_unit_test_setup_teardown(test_refuses_bad_files, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
