/* Unit tests of the error and file helpers. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/error.h"
#include "common/fileio.h"

static void test_strerror_covers_every_code(void **state)
{
    (void)state;
    for (int c = FACENET_OK; c <= FACENET_ERR_INTERNAL; c++)
        assert_string_not_equal(facenet_strerror((facenet_status)c), "unknown status");
    assert_string_equal(facenet_strerror((facenet_status)999), "unknown status");
}

static void test_fail_formats_message(void **state)
{
    facenet_error err;
    (void)state;
    assert_int_equal(fn_fail(&err, FACENET_ERR_FORMAT, "tensor %d", 7), FACENET_ERR_FORMAT);
    assert_int_equal(err.code, FACENET_ERR_FORMAT);
    assert_string_equal(err.message, "tensor 7");
    fn_error_prefix(&err, "loading %s", "x.tflite");
    assert_string_equal(err.message, "loading x.tflite: tensor 7");
    /* NULL err is allowed everywhere. */
    assert_int_equal(fn_fail(NULL, FACENET_ERR_IO, "x"), FACENET_ERR_IO);
}

static void test_sha256_known_vector(void **state)
{
    char hex[65];
    (void)state;
    fn_sha256_hex((const uint8_t *)"abc", 3, hex);
    assert_string_equal(hex, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    assert_true(fn_digest_equal(hex, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"));
    assert_false(fn_digest_equal(hex, "ca7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"));
    assert_false(fn_digest_equal(hex, "ba78"));
}

static void test_read_file_limits(void **state)
{
    char path[] = "/tmp/facenet_test_XXXXXX";
    uint8_t *data;
    size_t size;
    facenet_error err;
    char hex[65];
    int fd = mkstemp(path);
    FILE *f;
    (void)state;

    assert_true(fd >= 0);
    f = fdopen(fd, "wb");
    assert_non_null(f);
    fputs("abc", f);
    fclose(f);
    assert_int_equal(fn_read_file(path, 3, &data, &size, &err), FACENET_OK);
    assert_int_equal(size, 3);
    assert_memory_equal(data, "abc", 3);
    free(data);
    assert_int_equal(fn_read_file(path, 2, &data, &size, &err), FACENET_ERR_LIMIT);
    assert_null(data);
    assert_int_equal(fn_sha256_file(path, hex, &err), FACENET_OK);
    assert_string_equal(hex, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    unlink(path);
    assert_int_equal(fn_read_file(path, 3, &data, &size, &err), FACENET_ERR_NOT_FOUND);
    assert_non_null(strstr(err.message, path));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_strerror_covers_every_code),
        cmocka_unit_test(test_fail_formats_message),
        cmocka_unit_test(test_sha256_known_vector),
        cmocka_unit_test(test_read_file_limits),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
