/* Unit tests of the API key store (src/server/keys.c): scopes, create and
 * check, the constant-time check's refusals, strict loading of malformed
 * keys files, and atomic 0600 saves. */
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

#include "server/keys.h"

/* ---- helpers ------------------------------------------------------------- */

typedef struct scratch {
    char dir[64];
    char path[128]; /* dir/keys.json */
} scratch;

static int scratch_setup(void **state)
{
    scratch *s = calloc(1, sizeof *s);
    if (!s)
        return -1;
    snprintf(s->dir, sizeof s->dir, "/tmp/facenet_keys_XXXXXX");
    if (!mkdtemp(s->dir)) {
        free(s);
        return -1;
    }
    snprintf(s->path, sizeof s->path, "%s/keys.json", s->dir);
    *state = s;
    return 0;
}

static int scratch_teardown(void **state)
{
    scratch *s = *state;
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", s->dir);
    if (system(cmd) != 0)
        return -1;
    free(s);
    return 0;
}

static void write_text(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    assert_int_equal(fputs(text, f) >= 0, 1);
    assert_int_equal(fclose(f), 0);
}

static char *read_text(const char *path)
{
    FILE *f = fopen(path, "r");
    char *buf = calloc(1, 1 << 16);
    size_t n;
    assert_non_null(f);
    assert_non_null(buf);
    n = fread(buf, 1, (1 << 16) - 1, f);
    buf[n] = '\0';
    fclose(f);
    return buf;
}

static const char good_hash[] =
    "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";

/* One well-formed key entry with one field replaced by `field_json`
 * (e.g. "\"rate\": 0"), or all fields well-formed when field is NULL. */
static void key_entry(char *out, size_t size, const char *id, const char *field,
                      const char *field_json)
{
    const char *names[] = {"id", "hash", "scopes", "rate", "burst", "created", "revoked"};
    char values[7][160];
    size_t used = 0;

    snprintf(values[0], sizeof values[0], "\"%s\"", id);
    snprintf(values[1], sizeof values[1], "\"%s\"", good_hash);
    snprintf(values[2], sizeof values[2], "[\"detect\", \"verify\"]");
    snprintf(values[3], sizeof values[3], "5");
    snprintf(values[4], sizeof values[4], "10.0");
    snprintf(values[5], sizeof values[5], "1700000000");
    snprintf(values[6], sizeof values[6], "false");
    used += (size_t)snprintf(out + used, size - used, "{");
    for (int i = 0; i < 7; i++) {
        const char *value = values[i];
        if (field && strcmp(field, names[i]) == 0) {
            if (!field_json)
                continue; /* drop the field */
            value = field_json;
        }
        used += (size_t)snprintf(out + used, size - used, "%s\"%s\": %s",
                                 used > 1 ? ", " : "", names[i], value);
    }
    snprintf(out + used, size - used, "}");
}

/* Load `text` from a file; expect `code`, and an empty ring either way
 * when it fails. */
static void expect_load(const scratch *s, const char *text, facenet_status code,
                        const char *message_part)
{
    fn_keyring ring = {(fn_api_key *)0x1, 99}; /* garbage: load must reset it */
    facenet_error err;
    facenet_status st;

    write_text(s->path, text);
    memset(&err, 0, sizeof err);
    st = fn_keyring_load(s->path, &ring, &err);
    if (st != code)
        print_error("loading %s: got %d (%s), want %d\n", text, st, err.message, code);
    assert_int_equal(st, code);
    if (code != FACENET_OK) {
        assert_null(ring.keys);
        assert_int_equal(ring.n, 0);
        assert_non_null(strstr(err.message, s->path));
        if (message_part && !strstr(err.message, message_part))
            fail_msg("message '%s' lacks '%s'", err.message, message_part);
    }
    fn_keyring_free(&ring);
}

/* ---- scopes -------------------------------------------------------------- */

static void test_scopes_parse_and_format(void **state)
{
    unsigned mask = 0;
    char buf[128];
    (void)state;

    assert_int_equal(fn_scopes_parse("detect,verify", &mask), 0);
    assert_int_equal(mask, FN_SCOPE_DETECT | FN_SCOPE_VERIFY);
    assert_int_equal(fn_scopes_parse("admin", &mask), 0);
    assert_int_equal(mask, FN_SCOPE_ADMIN);
    assert_int_equal(fn_scopes_parse("detect,verify,identify,enroll,embed,admin", &mask), 0);
    assert_int_equal(mask, FN_SCOPE_ALL);
    assert_int_equal(fn_scopes_parse("verify,verify", &mask), 0);
    assert_int_equal(mask, FN_SCOPE_VERIFY);

    fn_scopes_format(FN_SCOPE_VERIFY | FN_SCOPE_EMBED | FN_SCOPE_DETECT, buf, sizeof buf);
    assert_string_equal(buf, "detect,verify,embed");
    fn_scopes_format(FN_SCOPE_ALL, buf, sizeof buf);
    assert_string_equal(buf, "detect,verify,identify,enroll,embed,admin");
    assert_int_equal(fn_scopes_parse(buf, &mask), 0);
    assert_int_equal(mask, FN_SCOPE_ALL);
    fn_scopes_format(0, buf, sizeof buf);
    assert_string_equal(buf, "");
    /* A short buffer truncates at a name boundary and stays terminated. */
    memset(buf, 'x', sizeof buf);
    fn_scopes_format(FN_SCOPE_DETECT | FN_SCOPE_VERIFY, buf, 10);
    assert_string_equal(buf, "detect");
}

static void test_scopes_parse_refuses(void **state)
{
    const char *bad[] = {"",        "bogus",       "Detect",         "detect,",
                         ",detect", "detect,,verify", "detect verify", "detectx",
                         "detec",   "detect,bogus"};
    (void)state;

    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        unsigned mask = 12345;
        if (fn_scopes_parse(bad[i], &mask) != -1)
            fail_msg("scopes '%s' were accepted", bad[i]);
        assert_int_equal(mask, 12345); /* untouched on failure */
    }
}

/* ---- create and check ---------------------------------------------------- */

static int key_text_well_formed(const char *text)
{
    if (strlen(text) != 4 + FN_KEY_ID_LEN + 1 + 43 || strncmp(text, "fnk_", 4) != 0 ||
        text[4 + FN_KEY_ID_LEN] != '_')
        return 0;
    if (strspn(text + 4, "0123456789abcdef") != FN_KEY_ID_LEN)
        return 0;
    return strspn(text + 5 + FN_KEY_ID_LEN,
                  "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_") == 43;
}

static void test_create_check_round_trip(void **state)
{
    fn_keyring ring = {NULL, 0};
    char a[FN_KEY_TEXT_MAX], b[FN_KEY_TEXT_MAX];
    const fn_api_key *k;
    facenet_error err;
    (void)state;

    assert_int_equal(fn_keyring_create(&ring, FN_SCOPE_DETECT, 2.5, 7, a, &err), FACENET_OK);
    assert_int_equal(fn_keyring_create(&ring, FN_SCOPE_EMBED | FN_SCOPE_VERIFY, 100, 200, b,
                                       &err),
                     FACENET_OK);
    assert_int_equal(ring.n, 2);
    assert_true(key_text_well_formed(a));
    assert_true(key_text_well_formed(b));
    assert_string_not_equal(a, b);
    assert_string_not_equal(ring.keys[0].id, ring.keys[1].id);
    /* The id is the key's own prefix. */
    assert_memory_equal(a + 4, ring.keys[0].id, FN_KEY_ID_LEN);

    k = fn_keyring_check(&ring, a, strlen(a));
    assert_ptr_equal(k, &ring.keys[0]);
    assert_int_equal(k->scopes, FN_SCOPE_DETECT);
    assert_true(k->rate == 2.5 && k->burst == 7);
    assert_false(k->revoked);
    k = fn_keyring_check(&ring, b, strlen(b));
    assert_ptr_equal(k, &ring.keys[1]);
    assert_int_equal(k->scopes, FN_SCOPE_EMBED | FN_SCOPE_VERIFY);
    assert_int_equal(fn_keyring_find(&ring, ring.keys[1].id), 1);
    assert_int_equal(fn_keyring_find(&ring, "000000000000"), -1);
    fn_keyring_free(&ring);
    assert_null(ring.keys);
    assert_int_equal(ring.n, 0);
}

static void test_create_refuses_what_load_would(void **state)
{
    fn_keyring ring = {NULL, 0};
    char key[FN_KEY_TEXT_MAX];
    facenet_error err;
    (void)state;

    assert_int_equal(fn_keyring_create(&ring, 0, 5, 10, key, &err), FACENET_ERR_INVALID_ARGUMENT);
    assert_int_equal(fn_keyring_create(&ring, 1u << 9, 5, 10, key, &err),
                     FACENET_ERR_INVALID_ARGUMENT);
    assert_int_equal(fn_keyring_create(&ring, FN_SCOPE_DETECT, 0, 10, key, &err),
                     FACENET_ERR_INVALID_ARGUMENT);
    assert_int_equal(fn_keyring_create(&ring, FN_SCOPE_DETECT, 2e6, 10, key, &err),
                     FACENET_ERR_INVALID_ARGUMENT);
    assert_int_equal(fn_keyring_create(&ring, FN_SCOPE_DETECT, 5, 0.5, key, &err),
                     FACENET_ERR_INVALID_ARGUMENT);
    assert_int_equal(ring.n, 0);
    assert_null(ring.keys);
}

static void test_check_refuses(void **state)
{
    fn_keyring ring = {NULL, 0};
    char key[FN_KEY_TEXT_MAX], other[FN_KEY_TEXT_MAX], bad[2 * FN_KEY_TEXT_MAX];
    facenet_error err;
    size_t len;
    (void)state;

    /* An empty keyring accepts nothing. */
    assert_null(fn_keyring_check(&ring, "fnk_000000000000_abc", 20));
    assert_int_equal(fn_keyring_create(&ring, FN_SCOPE_DETECT, 5, 10, key, &err), FACENET_OK);
    assert_int_equal(fn_keyring_create(&ring, FN_SCOPE_DETECT, 5, 10, other, &err), FACENET_OK);
    len = strlen(key);
    assert_non_null(fn_keyring_check(&ring, key, len));

    /* Wrong secret: last character changed. */
    snprintf(bad, sizeof bad, "%s", key);
    bad[len - 1] = bad[len - 1] == 'A' ? 'B' : 'A';
    assert_null(fn_keyring_check(&ring, bad, len));
    /* Truncated, down to the bare "fnk_<id>_" prefix and below. */
    for (size_t cut = 1; cut <= len; cut++)
        if (fn_keyring_check(&ring, key, len - cut) != NULL)
            fail_msg("key truncated by %zu accepted", cut);
    /* One character appended; the length passed is what counts. */
    snprintf(bad, sizeof bad, "%sA", key);
    assert_null(fn_keyring_check(&ring, bad, len + 1));
    /* Altered prefix and separator. */
    snprintf(bad, sizeof bad, "%s", key);
    bad[2] = 'K';
    assert_null(fn_keyring_check(&ring, bad, len));
    snprintf(bad, sizeof bad, "%s", key);
    bad[4 + FN_KEY_ID_LEN] = '-';
    assert_null(fn_keyring_check(&ring, bad, len));
    /* This key's secret under the other key's id. */
    snprintf(bad, sizeof bad, "%s", key);
    memcpy(bad + 4, ring.keys[1].id, FN_KEY_ID_LEN);
    assert_null(fn_keyring_check(&ring, bad, len));
    /* An id altered by one digit. */
    snprintf(bad, sizeof bad, "%s", key);
    bad[4] = bad[4] == '0' ? '1' : '0';
    assert_null(fn_keyring_check(&ring, bad, len));
    /* Far too long: refused before hashing. */
    memset(bad, 'a', sizeof bad - 1);
    bad[sizeof bad - 1] = '\0';
    memcpy(bad, key, len);
    assert_null(fn_keyring_check(&ring, bad, FN_KEY_TEXT_MAX));
    assert_null(fn_keyring_check(&ring, "", 0));

    /* Revoked: refused; its neighbour is not affected. */
    ring.keys[0].revoked = 1;
    assert_null(fn_keyring_check(&ring, key, len));
    assert_ptr_equal(fn_keyring_check(&ring, other, strlen(other)), &ring.keys[1]);
    fn_keyring_free(&ring);
}

/* ---- rotate and expiry ---------------------------------------------------- */

static void test_rotate_without_grace(void **state)
{
    fn_keyring ring = {NULL, 0};
    char old[FN_KEY_TEXT_MAX], fresh[FN_KEY_TEXT_MAX];
    facenet_error err;
    (void)state;

    assert_int_equal(fn_keyring_create(&ring, FN_SCOPE_DETECT | FN_SCOPE_ENROLL, 3, 4, old, &err),
                     FACENET_OK);
    assert_int_equal(fn_keyring_rotate(&ring, 0, 0, 1000, fresh, &err), FACENET_OK);
    assert_int_equal(ring.n, 2);
    assert_true(key_text_well_formed(fresh));
    assert_string_not_equal(ring.keys[0].id, ring.keys[1].id);
    assert_int_equal(ring.keys[1].scopes, FN_SCOPE_DETECT | FN_SCOPE_ENROLL);
    assert_true(ring.keys[1].rate == 3 && ring.keys[1].burst == 4);
    assert_int_equal(ring.keys[1].expires, 0);
    assert_true(ring.keys[0].revoked);
    assert_null(fn_keyring_check_at(&ring, old, strlen(old), 1000));
    assert_ptr_equal(fn_keyring_check_at(&ring, fresh, strlen(fresh), 1000), &ring.keys[1]);

    /* A revoked key cannot be rotated (it would resurrect its access). */
    assert_int_equal(fn_keyring_rotate(&ring, 0, 0, 1000, fresh, &err),
                     FACENET_ERR_INVALID_ARGUMENT);
    assert_non_null(strstr(err.message, "revoked"));
    assert_int_equal(fn_keyring_rotate(&ring, 7, 0, 1000, fresh, &err),
                     FACENET_ERR_INVALID_ARGUMENT);
    assert_int_equal(ring.n, 2);
    fn_keyring_free(&ring);
}

static void test_rotate_with_grace(void **state)
{
    fn_keyring ring = {NULL, 0};
    char old[FN_KEY_TEXT_MAX], fresh[FN_KEY_TEXT_MAX], again[FN_KEY_TEXT_MAX];
    facenet_error err;
    (void)state;

    assert_int_equal(fn_keyring_create(&ring, FN_SCOPE_VERIFY, 5, 10, old, &err), FACENET_OK);
    assert_int_equal(fn_keyring_rotate(&ring, 0, -1, 1000, fresh, &err),
                     FACENET_ERR_INVALID_ARGUMENT);
    assert_int_equal(fn_keyring_rotate(&ring, 0, FN_KEY_GRACE_MAX + 1, 1000, fresh, &err),
                     FACENET_ERR_INVALID_ARGUMENT);
    assert_int_equal(ring.n, 1);
    assert_int_equal(fn_keyring_rotate(&ring, 0, 60, 1000, fresh, &err), FACENET_OK);
    assert_int_equal(ring.n, 2);
    assert_false(ring.keys[0].revoked);
    assert_int_equal(ring.keys[0].expires, 1060);

    /* Both keys work during the grace period; the old one stops at its
     * expiry, the new one does not. */
    assert_ptr_equal(fn_keyring_check_at(&ring, old, strlen(old), 1059), &ring.keys[0]);
    assert_ptr_equal(fn_keyring_check_at(&ring, fresh, strlen(fresh), 1059), &ring.keys[1]);
    assert_true(fn_key_is_live(&ring.keys[0], 1059));
    assert_false(fn_key_is_live(&ring.keys[0], 1060));
    assert_null(fn_keyring_check_at(&ring, old, strlen(old), 1060));
    assert_null(fn_keyring_check_at(&ring, old, strlen(old), 999999));
    assert_ptr_equal(fn_keyring_check_at(&ring, fresh, strlen(fresh), 999999), &ring.keys[1]);

    /* Rotating it again would give it a second successor: refused, both
     * inside and after the grace period. */
    assert_int_equal(fn_keyring_rotate(&ring, 0, 60, 1010, again, &err),
                     FACENET_ERR_INVALID_ARGUMENT);
    assert_int_equal(fn_keyring_rotate(&ring, 0, 0, 2000, again, &err),
                     FACENET_ERR_INVALID_ARGUMENT);
    assert_non_null(strstr(err.message, "expired"));
    assert_int_equal(ring.n, 2);
    /* Revoking ends the grace period at once. */
    ring.keys[0].revoked = 1;
    assert_null(fn_keyring_check_at(&ring, old, strlen(old), 1001));
    fn_keyring_free(&ring);
}

static void test_expiry_survives_save_and_load(void **state)
{
    scratch *s = *state;
    fn_keyring ring = {NULL, 0}, back;
    char old[FN_KEY_TEXT_MAX], fresh[FN_KEY_TEXT_MAX];
    facenet_error err;
    char *text;

    assert_int_equal(fn_keyring_create(&ring, FN_SCOPE_DETECT, 5, 10, old, &err), FACENET_OK);
    assert_int_equal(fn_keyring_rotate(&ring, 0, 3600, 1795000000, fresh, &err), FACENET_OK);
    assert_int_equal(fn_keyring_save(s->path, &ring, &err), FACENET_OK);
    text = read_text(s->path);
    assert_non_null(strstr(text, "\"expires\": 1795003600"));
    free(text);
    assert_int_equal(fn_keyring_load(s->path, &back, &err), FACENET_OK);
    assert_int_equal(back.n, 2);
    assert_int_equal(back.keys[0].expires, 1795003600);
    assert_int_equal(back.keys[1].expires, 0);
    assert_non_null(fn_keyring_check_at(&back, old, strlen(old), 1795003599));
    assert_null(fn_keyring_check_at(&back, old, strlen(old), 1795003600));
    fn_keyring_free(&back);
    fn_keyring_free(&ring);
}

/* ---- load ---------------------------------------------------------------- */

static void test_save_load_round_trip(void **state)
{
    scratch *s = *state;
    fn_keyring ring = {NULL, 0}, back;
    char a[FN_KEY_TEXT_MAX], b[FN_KEY_TEXT_MAX];
    facenet_error err;
    char *text;

    assert_int_equal(fn_keyring_create(&ring, FN_SCOPE_DETECT | FN_SCOPE_ADMIN, 0.25, 1, a, &err),
                     FACENET_OK);
    assert_int_equal(fn_keyring_create(&ring, FN_SCOPE_ALL, 1e6, 1e6, b, &err), FACENET_OK);
    ring.keys[1].revoked = 1;
    assert_int_equal(fn_keyring_save(s->path, &ring, &err), FACENET_OK);

    /* The file holds hashes, never the keys. */
    text = read_text(s->path);
    assert_null(strstr(text, a + 5 + FN_KEY_ID_LEN));
    assert_null(strstr(text, b + 5 + FN_KEY_ID_LEN));
    free(text);

    assert_int_equal(fn_keyring_load(s->path, &back, &err), FACENET_OK);
    assert_int_equal(back.n, 2);
    for (size_t i = 0; i < 2; i++) {
        assert_string_equal(back.keys[i].id, ring.keys[i].id);
        assert_memory_equal(back.keys[i].hash, ring.keys[i].hash, FN_KEY_HASH_BYTES);
        assert_int_equal(back.keys[i].scopes, ring.keys[i].scopes);
        assert_true(back.keys[i].rate == ring.keys[i].rate);
        assert_true(back.keys[i].burst == ring.keys[i].burst);
        assert_int_equal(back.keys[i].created, ring.keys[i].created);
        assert_int_equal(back.keys[i].revoked, ring.keys[i].revoked);
    }
    assert_ptr_equal(fn_keyring_check(&back, a, strlen(a)), &back.keys[0]);
    assert_null(fn_keyring_check(&back, b, strlen(b))); /* revoked */
    fn_keyring_free(&back);
    fn_keyring_free(&ring);
}

static void test_load_missing_file_is_empty(void **state)
{
    scratch *s = *state;
    fn_keyring ring = {(fn_api_key *)0x1, 3};
    facenet_error err;

    assert_int_equal(fn_keyring_load(s->path, &ring, &err), FACENET_OK);
    assert_null(ring.keys);
    assert_int_equal(ring.n, 0);
    /* A directory is not a keys file. */
    assert_int_not_equal(fn_keyring_load(s->dir, &ring, &err), FACENET_OK);
    assert_int_equal(ring.n, 0);
}

static void test_load_refuses_malformed(void **state)
{
    scratch *s = *state;
    char one[1024], two[1024], text[4096];
    struct {
        const char *field, *value, *message;
    } bad_fields[] = {
        {"id", NULL, "lacks a field"},
        {"hash", NULL, "lacks a field"},
        {"revoked", NULL, "lacks a field"},
        {"id", "42", "lacks a field"},
        {"id", "\"ABCDEF012345\"", "malformed id"},
        {"id", "\"0123456789a\"", "malformed id"},
        {"id", "\"0123456789abc\"", "malformed id"},
        {"scopes", "\"detect\"", "lacks a field"},
        {"scopes", "[]", "no scopes"},
        {"scopes", "[\"detect\", \"bogus\"]", "unknown scope"},
        {"scopes", "[\"detect,verify\"]", "unknown scope"},
        {"scopes", "[7]", "unknown scope"},
        {"rate", "\"5\"", "lacks a field"},
        {"rate", "0", "bad rate"},
        {"rate", "-1", "bad rate"},
        {"rate", "1e7", "bad rate"},
        {"burst", "0.5", "bad rate"},
        {"created", "1.5", "lacks a field"},
        {"revoked", "\"no\"", "lacks a field"},
        {"revoked", "0", "lacks a field"},
        {"hash", "\"zz112233445566778899aabbccddeeff00112233445566778899aabbccddeeff\"",
         "malformed hash"},
        {"hash", "\"00112233445566778899aabbccddeeff00112233445566778899aabbccddee\"",
         "malformed hash"},
        {"hash", "\"00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff00\"",
         "malformed hash"},
        {"hash", "\"\"", "malformed hash"},
        {"revoked", "false, \"expires\": -1", "bad expiry"},
        {"revoked", "false, \"expires\": \"soon\"", "bad expiry"},
        {"revoked", "false, \"expires\": 1.5", "bad expiry"},
        {"revoked", "false, \"expires\": null", "bad expiry"},
    };

    expect_load(s, "", FACENET_ERR_FORMAT, NULL);
    expect_load(s, "{", FACENET_ERR_FORMAT, "line");
    expect_load(s, "[]", FACENET_ERR_FORMAT, "\"keys\" array");
    expect_load(s, "{\"keys\": {}}", FACENET_ERR_FORMAT, "\"keys\" array");
    expect_load(s, "{\"keys\": [], \"keys\": []}", FACENET_ERR_FORMAT, "duplicate");
    expect_load(s, "{\"keys\": [1]}", FACENET_ERR_FORMAT, "lacks a field");
    expect_load(s, "{\"keys\": []}", FACENET_OK, NULL);

    for (size_t i = 0; i < sizeof bad_fields / sizeof bad_fields[0]; i++) {
        /* The bad entry comes second, after a good one: the good one must
         * not be left behind in the ring. */
        key_entry(one, sizeof one, "0123456789ab", NULL, NULL);
        key_entry(two, sizeof two, "ba9876543210", bad_fields[i].field, bad_fields[i].value);
        snprintf(text, sizeof text, "{\"keys\": [%s, %s]}", one, two);
        expect_load(s, text, FACENET_ERR_FORMAT, bad_fields[i].message);
    }
    /* The same entries, well formed, load. */
    key_entry(one, sizeof one, "0123456789ab", NULL, NULL);
    key_entry(two, sizeof two, "ba9876543210", NULL, NULL);
    snprintf(text, sizeof text, "{\"keys\": [%s, %s]}", one, two);
    expect_load(s, text, FACENET_OK, NULL);
    /* Duplicate ids. */
    snprintf(text, sizeof text, "{\"keys\": [%s, %s]}", one, one);
    expect_load(s, text, FACENET_ERR_FORMAT, "appears twice");
    /* A duplicate field inside one entry. */
    key_entry(two, sizeof two, "ba9876543210", "burst", "10, \"rate\": 6");
    snprintf(text, sizeof text, "{\"keys\": [%s]}", two);
    expect_load(s, text, FACENET_ERR_FORMAT, "duplicate");
}

static void test_load_refuses_huge_file(void **state)
{
    scratch *s = *state;
    fn_keyring ring = {NULL, 0};
    facenet_error err;
    int fd = open(s->path, O_WRONLY | O_CREAT | O_TRUNC, 0600);

    /* A sparse file: refused from its size, before anything is read. */
    assert_true(fd >= 0);
    assert_int_equal(ftruncate(fd, (off_t)FN_KEYS_FILE_MAX + 1), 0);
    close(fd);
    assert_int_equal(fn_keyring_load(s->path, &ring, &err), FACENET_ERR_LIMIT);
    assert_non_null(strstr(err.message, "exceeds"));
    assert_null(ring.keys);
    assert_int_equal(ring.n, 0);
}

/* ---- save ---------------------------------------------------------------- */

static void test_save_is_0600_and_atomic(void **state)
{
    scratch *s = *state;
    fn_keyring ring = {NULL, 0};
    char key[FN_KEY_TEXT_MAX], tmp[160], victim[160], *before, *after;
    facenet_error err;
    struct stat st;
    mode_t old_mask = umask(0);

    /* Mode 0600 even with a permissive umask, and when replacing a file
     * that was world-readable. */
    write_text(s->path, "{\"keys\": []}");
    assert_int_equal(chmod(s->path, 0644), 0);
    assert_int_equal(fn_keyring_create(&ring, FN_SCOPE_DETECT, 5, 10, key, &err), FACENET_OK);
    assert_int_equal(fn_keyring_save(s->path, &ring, &err), FACENET_OK);
    assert_int_equal(stat(s->path, &st), 0);
    assert_int_equal(st.st_mode & 07777, 0600);
    snprintf(tmp, sizeof tmp, "%s.tmp", s->path);
    assert_int_equal(access(tmp, F_OK), -1); /* no temp file left */

    /* A stale temp file that is a symlink to another file: replaced, and
     * the file it pointed to is not written through. */
    snprintf(victim, sizeof victim, "%s/victim", s->dir);
    write_text(victim, "untouched");
    assert_int_equal(symlink(victim, tmp), 0);
    assert_int_equal(fn_keyring_save(s->path, &ring, &err), FACENET_OK);
    after = read_text(victim);
    assert_string_equal(after, "untouched");
    free(after);

    /* A save that fails (the temp path is a directory) reports an error
     * and leaves the previous file exactly as it was. */
    before = read_text(s->path);
    assert_int_equal(mkdir(tmp, 0700), 0);
    assert_int_equal(fn_keyring_create(&ring, FN_SCOPE_VERIFY, 5, 10, key, &err), FACENET_OK);
    assert_int_equal(fn_keyring_save(s->path, &ring, &err), FACENET_ERR_IO);
    assert_non_null(strstr(err.message, ".tmp"));
    after = read_text(s->path);
    assert_string_equal(before, after);
    free(before);
    free(after);
    assert_int_equal(rmdir(tmp), 0);

    /* Into a directory that does not exist: an error, nothing created. */
    snprintf(tmp, sizeof tmp, "%s/missing/keys.json", s->dir);
    assert_int_equal(fn_keyring_save(tmp, &ring, &err), FACENET_ERR_IO);
    umask(old_mask);
    fn_keyring_free(&ring);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_scopes_parse_and_format),
        cmocka_unit_test(test_scopes_parse_refuses),
        cmocka_unit_test(test_create_check_round_trip),
        cmocka_unit_test(test_create_refuses_what_load_would),
        cmocka_unit_test(test_check_refuses),
        cmocka_unit_test(test_rotate_without_grace),
        cmocka_unit_test(test_rotate_with_grace),
        cmocka_unit_test_setup_teardown(test_expiry_survives_save_and_load, scratch_setup,
                                        scratch_teardown),
        cmocka_unit_test_setup_teardown(test_save_load_round_trip, scratch_setup,
                                        scratch_teardown),
        cmocka_unit_test_setup_teardown(test_load_missing_file_is_empty, scratch_setup,
                                        scratch_teardown),
        cmocka_unit_test_setup_teardown(test_load_refuses_malformed, scratch_setup,
                                        scratch_teardown),
        cmocka_unit_test_setup_teardown(test_load_refuses_huge_file, scratch_setup,
                                        scratch_teardown),
        cmocka_unit_test_setup_teardown(test_save_is_0600_and_atomic, scratch_setup,
                                        scratch_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
