/* Gallery tests: keys, enroll/search, encryption, hostile input, deletion,
 * rekey, export/import. Synthetic embeddings only: no models needed. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <pthread.h>
#include <sodium.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "support/gallery_testutil.h"

typedef struct fixture {
    char *dir;
    char *path;
} fixture;

static int setup(void **state)
{
    fixture *f = calloc(1, sizeof *f);
    f->dir = tg_mkdtemp();
    f->path = tg_path(f->dir, "g.gallery");
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture *f = *state;
    free(f->path);
    tg_rmdir(f->dir);
    free(f);
    return 0;
}

static size_t search(facenet_gallery *g, const float *q, int k, float threshold,
                     facenet_gallery_match *m, int exact)
{
    facenet_gallery_search_options o;
    facenet_error err;
    size_t n = 0;
    facenet_gallery_search_options_default(&o);
    o.k = k;
    o.threshold = threshold;
    o.exact = exact;
    facenet_status st = facenet_gallery_search(g, TG_MODEL, q, TG_DIM, &o, m, &n, &err);
    if (st != FACENET_OK)
        fprintf(stderr, "search: %s\n", err.message);
    assert_int_equal(st, FACENET_OK);
    return n;
}

/* ---- keys ------------------------------------------------------------------------ */

static void test_key_parse(void **state)
{
    uint8_t key[32], want[32];
    char hex[65], b64[64];
    facenet_error err;
    (void)state;
    for (int i = 0; i < 32; i++)
        want[i] = (uint8_t)(i * 9 + 3);
    sodium_bin2hex(hex, sizeof hex, want, 32);
    assert_int_equal(facenet_gallery_key_parse(hex, 64, key, &err), FACENET_OK);
    assert_memory_equal(key, want, 32);
    /* whitespace around it is fine, upper case too */
    char padded[80];
    snprintf(padded, sizeof padded, "  %s\n", hex);
    for (char *p = padded; *p; p++)
        if (*p >= 'a' && *p <= 'f')
            *p = (char)(*p - 32);
    assert_int_equal(facenet_gallery_key_parse(padded, strlen(padded), key, &err), FACENET_OK);
    assert_memory_equal(key, want, 32);
    sodium_bin2base64(b64, sizeof b64, want, 32, sodium_base64_VARIANT_ORIGINAL);
    assert_int_equal(facenet_gallery_key_parse(b64, strlen(b64), key, &err), FACENET_OK);
    assert_memory_equal(key, want, 32);
    assert_int_equal(facenet_gallery_key_parse((const char *)want, 32, key, &err), FACENET_OK);
    assert_memory_equal(key, want, 32);
    /* too short, too long, not hex */
    assert_int_equal(facenet_gallery_key_parse(hex, 62, key, &err), FACENET_ERR_FORMAT);
    assert_int_equal(facenet_gallery_key_parse("zz", 2, key, &err), FACENET_ERR_FORMAT);
    hex[10] = 'g';
    assert_int_equal(facenet_gallery_key_parse(hex, 64, key, &err), FACENET_ERR_FORMAT);
    /* the message never echoes the key material */
    assert_null(strstr(err.message, hex));
}

static void test_key_files(void **state)
{
    fixture *f = *state;
    char *kf = tg_path(f->dir, "k.key");
    uint8_t a[32], b[32];
    facenet_error err;
    struct stat sb;

    assert_int_equal(facenet_gallery_key_generate(kf, &err), FACENET_OK);
    assert_int_equal(stat(kf, &sb), 0);
    assert_int_equal(sb.st_mode & 0777, 0600);
    /* never overwritten */
    assert_int_not_equal(facenet_gallery_key_generate(kf, &err), FACENET_OK);
    assert_int_equal(facenet_gallery_key_load(kf, a, &err), FACENET_OK);
    assert_int_equal(facenet_gallery_key_load(kf, b, &err), FACENET_OK);
    assert_memory_equal(a, b, 32);
    /* group- or world-accessible files are refused, like ssh keys */
    chmod(kf, 0640);
    assert_int_equal(facenet_gallery_key_load(kf, a, &err), FACENET_ERR_INVALID_ARGUMENT);
    assert_non_null(strstr(err.message, "chmod 600"));
    chmod(kf, 0604);
    assert_int_equal(facenet_gallery_key_load(kf, a, &err), FACENET_ERR_INVALID_ARGUMENT);
    chmod(kf, 0400);
    assert_int_equal(facenet_gallery_key_load(kf, a, &err), FACENET_OK);
    /* a directory is not a key file; a missing file is NOT_FOUND */
    assert_int_equal(facenet_gallery_key_load(f->dir, a, &err), FACENET_ERR_INVALID_ARGUMENT);
    char *missing = tg_path(f->dir, "nope.key");
    assert_int_equal(facenet_gallery_key_load(missing, a, &err), FACENET_ERR_NOT_FOUND);
    /* the environment: hex or base64, not raw */
    char hex[65];
    sodium_bin2hex(hex, sizeof hex, b, 32);
    setenv("FACENET_GALLERY_KEY", hex, 1);
    assert_int_equal(facenet_gallery_key_load(NULL, a, &err), FACENET_OK);
    assert_memory_equal(a, b, 32);
    setenv("FACENET_GALLERY_KEY", "0123456789abcdef0123456789abcdeX", 1);
    assert_int_equal(facenet_gallery_key_load(NULL, a, &err), FACENET_ERR_FORMAT);
    unsetenv("FACENET_GALLERY_KEY");
    assert_int_equal(facenet_gallery_key_load(NULL, a, &err), FACENET_ERR_NOT_FOUND);
    free(missing);
    free(kf);
}

/* ---- enroll and search -------------------------------------------------------------- */

static void test_enroll_search(void **state)
{
    fixture *f = *state;
    facenet_gallery *g = tg_open(f->path, 1, FACENET_GALLERY_CREATE | FACENET_GALLERY_INT8);
    facenet_gallery_match m[8];
    facenet_error err;
    float q[TG_DIM], v[TG_DIM];
    int64_t ids[3];
    char name[32];

    assert_string_equal(facenet_gallery_model(g), TG_MODEL);
    assert_int_equal(facenet_gallery_dim(g), TG_DIM);
    assert_int_equal(facenet_gallery_size(g), 0);
    /* an empty gallery answers "unknown" */
    tg_embedding(q, TG_DIM, 1);
    assert_int_equal(search(g, q, 5, -2, m, 0), 0);
    /* 40 subjects, 3 templates each (embeddings 100*s .. 100*s+2) */
    for (int s = 0; s < 40; s++) {
        snprintf(name, sizeof name, "person %02d", s);
        assert_int_equal(tg_enroll(g, name, (uint64_t)s * 100, 3, ids, &err), FACENET_OK);
        assert_true(ids[0] > 0 && ids[1] == ids[0] + 1 && ids[2] == ids[1] + 1);
    }
    assert_int_equal(facenet_gallery_size(g), 120);
    /* a noisy copy of person 17's second template finds person 17 */
    tg_embedding(v, TG_DIM, 17 * 100 + 1);
    tg_noisy(v, q, TG_DIM, 0.7f, 5);
    for (int exact = 0; exact <= 1; exact++) {
        size_t n = search(g, q, 5, 0.5f, m, exact);
        assert_int_equal(n, 5);
        assert_string_equal(m[0].subject, "person 17");
        assert_string_equal(m[0].collection, "default");
        assert_true(m[0].accepted);
        assert_true(fabsf(m[0].score - 0.7f) < 0.08f);
        /* one slot per subject, best first, strangers below threshold */
        for (size_t i = 1; i < n; i++) {
            assert_string_not_equal(m[i].subject, "person 17");
            assert_true(m[i].score <= m[i - 1].score);
            assert_false(m[i].accepted);
        }
        /* the template found is the one the query came from */
        assert_int_equal(m[0].template_id, m[0].subject_id * 3 - 1);
    }
    /* a stranger is unknown at a sensible threshold */
    tg_embedding(q, TG_DIM, 999999);
    assert_int_equal(search(g, q, 1, 0.5f, m, 0), 1);
    assert_false(m[0].accepted);
    /* k larger than the number of subjects: every subject once */
    facenet_gallery_match *all = calloc(100, sizeof *all);
    assert_int_equal(search(g, q, 100, -2, all, 0), 40);
    assert_int_equal(search(g, q, 100, -2, all, 1), 40);
    free(all);
    facenet_gallery_close(g);

    /* reopened: the same answers, from the decrypted file */
    g = tg_open(f->path, 1, FACENET_GALLERY_READ_ONLY);
    assert_int_equal(facenet_gallery_size(g), 120);
    tg_noisy(v, q, TG_DIM, 0.7f, 5);
    assert_int_equal(search(g, q, 1, 0.5f, m, 1), 1);
    assert_string_equal(m[0].subject, "person 17");
    /* read-only handles refuse writes */
    assert_int_equal(tg_enroll(g, "x", 1, 1, NULL, &err), FACENET_ERR_INVALID_ARGUMENT);
    facenet_gallery_close(g);
}

static void test_collections_and_metadata(void **state)
{
    fixture *f = *state;
    facenet_gallery *g = tg_open(f->path, 2, FACENET_GALLERY_CREATE);
    facenet_gallery_match m[4];
    facenet_error err;
    float v[TG_DIM];
    facenet_gallery_search_options o;
    size_t n;

    tg_embedding(v, TG_DIM, 42);
    facenet_gallery_enrollment e = {"staff", "Ann", "{\"badge\": 7}", TG_MODEL, "x", v, 1, NULL, 0};
    assert_int_equal(facenet_gallery_enroll(g, &e, NULL, &err), FACENET_OK);
    e.collection = "visitors";
    e.subject = "Ann"; /* the same name in another collection is another subject */
    e.metadata_json = NULL;
    assert_int_equal(facenet_gallery_enroll(g, &e, NULL, &err), FACENET_OK);
    /* metadata must be a JSON object */
    e.metadata_json = "[1,2]";
    e.subject = "Bob";
    assert_int_equal(facenet_gallery_enroll(g, &e, NULL, &err), FACENET_ERR_INVALID_ARGUMENT);
    e.metadata_json = "{\"a\":";
    assert_int_equal(facenet_gallery_enroll(g, &e, NULL, &err), FACENET_ERR_INVALID_ARGUMENT);

    facenet_gallery_search_options_default(&o);
    o.collection = "visitors";
    assert_int_equal(facenet_gallery_search(g, TG_MODEL, v, TG_DIM, &o, m, &n, &err), FACENET_OK);
    assert_int_equal(n, 1);
    assert_string_equal(m[0].collection, "visitors");
    o.collection = "staff";
    assert_int_equal(facenet_gallery_search(g, TG_MODEL, v, TG_DIM, &o, m, &n, &err), FACENET_OK);
    assert_int_equal(n, 1);
    assert_string_equal(m[0].collection, "staff");
    o.collection = NULL;
    assert_int_equal(facenet_gallery_search(g, TG_MODEL, v, TG_DIM, &o, m, &n, &err), FACENET_OK);
    assert_int_equal(n, 2);
    o.collection = "nobody";
    assert_int_equal(facenet_gallery_search(g, TG_MODEL, v, TG_DIM, &o, m, &n, &err),
                     FACENET_ERR_NOT_FOUND);
    facenet_gallery_close(g);
}

typedef struct seen {
    int n;
    char names[8][64];
    char meta[8][64];
} seen;

static int collect(void *arg, const facenet_gallery_subject *s)
{
    seen *c = arg;
    if (c->n < 8) {
        snprintf(c->names[c->n], sizeof c->names[0], "%s", s->name);
        snprintf(c->meta[c->n], sizeof c->meta[0], "%s", s->metadata_json ? s->metadata_json : "");
        c->n++;
    }
    return 0;
}

static void test_skip_existing_and_list(void **state)
{
    fixture *f = *state;
    facenet_gallery *g = tg_open(f->path, 3, FACENET_GALLERY_CREATE);
    facenet_error err;
    float v[2 * TG_DIM];
    int64_t ids[2], again[2];
    const char *shas[2] = {"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
                           "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"};
    tg_embedding(v, TG_DIM, 1);
    tg_embedding(v + TG_DIM, TG_DIM, 2);
    facenet_gallery_enrollment e = {NULL, "Cy", "{\"k\":1}", TG_MODEL, "x", v, 2, shas, 1};
    assert_int_equal(facenet_gallery_enroll(g, &e, ids, &err), FACENET_OK);
    assert_int_equal(facenet_gallery_enroll(g, &e, again, &err), FACENET_OK);
    assert_memory_equal(ids, again, sizeof ids);
    assert_int_equal(facenet_gallery_size(g), 2);
    /* a bad digest is refused before anything is written */
    const char *bad[2] = {"AAAA", NULL};
    e.image_sha256 = bad;
    assert_int_equal(facenet_gallery_enroll(g, &e, NULL, &err), FACENET_ERR_INVALID_ARGUMENT);
    seen c = {0};
    assert_int_equal(facenet_gallery_list(g, NULL, collect, &c, &err), FACENET_OK);
    assert_int_equal(c.n, 1);
    assert_string_equal(c.names[0], "Cy");
    assert_string_equal(c.meta[0], "{\"k\":1}");
    facenet_gallery_close(g);
}

/* ---- refusals --------------------------------------------------------------------- */

static void test_wrong_key_and_other_model(void **state)
{
    fixture *f = *state;
    facenet_gallery *g = tg_open(f->path, 4, FACENET_GALLERY_CREATE);
    facenet_gallery *h = NULL;
    facenet_gallery_match m[1];
    facenet_error err;
    uint8_t key[32];
    float v[TG_DIM];
    char before[65], after[65], hex[65];
    size_t n;

    assert_int_equal(tg_enroll(g, "Dee", 7, 2, NULL, &err), FACENET_OK);
    /* another model's query, enrollment or dimension is refused */
    tg_embedding(v, TG_DIM, 7);
    assert_int_equal(facenet_gallery_search(g, "other@0000000000000000", v, TG_DIM, NULL, m, &n,
                                            &err),
                     FACENET_ERR_UNSUPPORTED);
    assert_non_null(strstr(err.message, TG_MODEL));
    assert_int_equal(facenet_gallery_search(g, TG_MODEL, v, 128, NULL, m, &n, &err),
                     FACENET_ERR_SHAPE);
    facenet_gallery_enrollment e = {NULL, "Dee", NULL, "other@0000000000000000", "x", v, 1, NULL, 0};
    assert_int_equal(facenet_gallery_enroll(g, &e, NULL, &err), FACENET_ERR_UNSUPPORTED);
    /* zero and NaN embeddings */
    memset(v, 0, sizeof v);
    e.model_id = TG_MODEL;
    assert_int_equal(facenet_gallery_enroll(g, &e, NULL, &err), FACENET_ERR_INVALID_ARGUMENT);
    v[3] = NAN;
    assert_int_equal(facenet_gallery_enroll(g, &e, NULL, &err), FACENET_ERR_INVALID_ARGUMENT);
    facenet_gallery_close(g);

    tg_file_sha(f->path, before);
    tg_key(key, 5); /* wrong */
    sodium_bin2hex(hex, sizeof hex, key, 32);
    assert_int_equal(facenet_gallery_open(f->path, key, NULL, 0, 0, &h, &err),
                     FACENET_ERR_INTEGRITY);
    assert_null(h);
    assert_non_null(strstr(err.message, "wrong key"));
    assert_null(strstr(err.message, hex));
    /* opening for another model is refused, and creating over it too */
    tg_key(key, 4);
    assert_int_equal(facenet_gallery_open(f->path, key, "other@0000000000000000", 0, 0, &h, &err),
                     FACENET_ERR_UNSUPPORTED);
    assert_int_equal(facenet_gallery_open(f->path, key, "other@0000000000000000", TG_DIM,
                                          FACENET_GALLERY_CREATE, &h, &err),
                     FACENET_ERR_UNSUPPORTED);
    tg_file_sha(f->path, after);
    assert_string_equal(before, after); /* nothing written by failed opens */
    g = tg_open(f->path, 4, 0);
    assert_int_equal(facenet_gallery_size(g), 2);
    facenet_gallery_close(g);
}

static void test_hostile_names(void **state)
{
    fixture *f = *state;
    facenet_gallery *g = tg_open(f->path, 6, FACENET_GALLERY_CREATE);
    facenet_error err;
    size_t subjects, templates;
    static const char *const accepted[] = {
        "Robert'); DROP TABLE subjects;--", "O'Brien", "\"quoted\" name", "%s%n%x",
        "Zoë Łukasz 李小龍", "a;b--c/*d*/", "\\x00 literally", "x' OR '1'='1"};
    char *long_name = malloc(10 * 1024 + 1);
    memset(long_name, 'n', 10 * 1024);
    long_name[10 * 1024] = 0;
    char at_limit[FACENET_GALLERY_NAME_MAX + 1]; /* 256 bytes: one too many */
    memset(at_limit, 'm', sizeof at_limit - 1);
    at_limit[sizeof at_limit - 1] = 0;
    static const char *const refused[] = {
        "",             /* empty */
        "bad\377byte",  /* not UTF-8 */
        "\xc0\xaf",     /* overlong '/' */
        "\xed\xa0\x80", /* UTF-16 surrogate */
        "\xe2\x82",     /* truncated sequence */
        "line\nbreak",  /* control characters */
        "esc\x1b[31m",
        "c1\xc2\x9b",   /* C1 control (CSI) */
        " padded",
    };

    for (size_t i = 0; i < sizeof accepted / sizeof accepted[0]; i++) {
        int rc = tg_enroll(g, accepted[i], 10 + i, 1, NULL, &err);
        if (rc != FACENET_OK)
            fprintf(stderr, "%s: %s\n", accepted[i], err.message);
        assert_int_equal(rc, FACENET_OK);
    }
    tg_counts(g, &subjects, &templates);
    assert_int_equal(subjects, 8);
    for (size_t i = 0; i < sizeof refused / sizeof refused[0]; i++) {
        assert_int_equal(tg_enroll(g, refused[i], 50, 1, NULL, &err),
                         FACENET_ERR_INVALID_ARGUMENT);
        assert_true(strlen(err.message) > 10);
    }
    assert_int_equal(tg_enroll(g, long_name, 50, 1, NULL, &err), FACENET_ERR_LIMIT);
    assert_non_null(strstr(err.message, "longer than 255"));
    assert_int_equal(tg_enroll(g, at_limit, 51, 1, NULL, &err), FACENET_ERR_LIMIT);
    at_limit[255] = 0; /* 255 bytes fit */
    assert_int_equal(tg_enroll(g, at_limit, 51, 1, NULL, &err), FACENET_OK);
    /* names are refused where they are looked up, too */
    assert_int_equal(facenet_gallery_remove_subject(g, NULL, long_name, NULL, &err),
                     FACENET_ERR_LIMIT);
    assert_int_equal(facenet_gallery_remove_subject(g, "bad\xff", "x", NULL, &err),
                     FACENET_ERR_INVALID_ARGUMENT);
    facenet_gallery_close(g);

    /* nothing lost: everything accepted is there, verbatim, and findable */
    g = tg_open(f->path, 6, 0);
    tg_counts(g, &subjects, &templates);
    assert_int_equal(subjects, 9);
    assert_int_equal(templates, 9);
    for (size_t i = 0; i < sizeof accepted / sizeof accepted[0]; i++) {
        float v[TG_DIM];
        facenet_gallery_match m[1];
        tg_embedding(v, TG_DIM, 10 + i);
        assert_int_equal(search(g, v, 1, -2, m, 1), 1);
        assert_string_equal(m[0].subject, accepted[i]);
    }
    assert_int_equal(facenet_gallery_remove_subject(g, NULL, accepted[0], NULL, &err), FACENET_OK);
    assert_int_equal(facenet_gallery_check(g, &err), FACENET_OK);
    facenet_gallery_close(g);
    free(long_name);
}

static void test_not_a_gallery(void **state)
{
    fixture *f = *state;
    facenet_gallery *g = NULL;
    facenet_error err;
    uint8_t key[32];
    char before[65], after[65];
    char *p;
    tg_key(key, 7);

    /* missing, without CREATE */
    assert_int_equal(facenet_gallery_open(f->path, key, NULL, 0, 0, &g, &err),
                     FACENET_ERR_NOT_FOUND);
    /* random bytes, a text file, an empty file, a directory */
    uint8_t junk[8192];
    for (size_t i = 0; i < sizeof junk; i++)
        junk[i] = (uint8_t)(i * 131 + 7);
    p = tg_path(f->dir, "junk.gallery");
    assert_int_equal(tg_write(p, junk, sizeof junk), 0);
    tg_file_sha(p, before);
    assert_int_equal(facenet_gallery_open(p, key, NULL, 0, 0, &g, &err), FACENET_ERR_FORMAT);
    assert_int_equal(facenet_gallery_open(p, key, TG_MODEL, TG_DIM, FACENET_GALLERY_CREATE, &g,
                                          &err),
                     FACENET_ERR_FORMAT);
    assert_non_null(strstr(err.message, "junk.gallery"));
    tg_file_sha(p, after);
    assert_string_equal(before, after);
    free(p);
    p = tg_path(f->dir, "text.gallery");
    assert_int_equal(tg_write(p, "hello, world\n", 13), 0);
    assert_int_equal(facenet_gallery_open(p, key, NULL, 0, 0, &g, &err), FACENET_ERR_FORMAT);
    free(p);
    p = tg_path(f->dir, "empty.gallery");
    assert_int_equal(tg_write(p, "", 0), 0);
    assert_int_equal(facenet_gallery_open(p, key, NULL, 0, 0, &g, &err), FACENET_ERR_FORMAT);
    /* ... but an empty file may become a gallery on request */
    assert_int_equal(facenet_gallery_open(p, key, TG_MODEL, TG_DIM, FACENET_GALLERY_CREATE, &g,
                                          &err),
                     FACENET_OK);
    facenet_gallery_close(g);
    g = NULL;
    free(p);
    assert_int_equal(facenet_gallery_open(f->dir, key, NULL, 0, 0, &g, &err),
                     FACENET_ERR_INVALID_ARGUMENT);
    /* another application's SQLite database is refused and left alone */
    p = tg_path(f->dir, "other.db");
    assert_int_equal(tg_sql(p, "CREATE TABLE t(x); INSERT INTO t VALUES (1)"), 0);
    tg_file_sha(p, before);
    assert_int_equal(facenet_gallery_open(p, key, TG_MODEL, TG_DIM, FACENET_GALLERY_CREATE, &g,
                                          &err),
                     FACENET_ERR_FORMAT);
    assert_non_null(strstr(err.message, "not a facenet gallery"));
    tg_file_sha(p, after);
    assert_string_equal(before, after);
    free(p);
    assert_null(g);
}

static void test_schema_guards(void **state)
{
    fixture *f = *state;
    facenet_gallery *g = tg_open(f->path, 8, FACENET_GALLERY_CREATE);
    facenet_error err;
    uint8_t key[32];
    tg_key(key, 8);
    assert_int_equal(tg_enroll(g, "Eve", 1, 1, NULL, &err), FACENET_OK);
    facenet_gallery_close(g);
    g = NULL;

    /* the migrations table records version 1 */
    sqlite3 *db;
    sqlite3_stmt *st;
    assert_int_equal(sqlite3_open(f->path, &db), SQLITE_OK);
    assert_int_equal(sqlite3_prepare_v2(db, "SELECT version, description FROM schema_migrations",
                                        -1, &st, NULL),
                     SQLITE_OK);
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    assert_int_equal(sqlite3_column_int(st, 0), 1);
    assert_int_equal(sqlite3_step(st), SQLITE_DONE);
    sqlite3_finalize(st);
    assert_int_equal(sqlite3_prepare_v2(db, "PRAGMA journal_mode", -1, &st, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    assert_string_equal((const char *)sqlite3_column_text(st, 0), "wal");
    sqlite3_finalize(st);
    sqlite3_close(db);

    /* a trigger planted in the file is refused */
    assert_int_equal(tg_sql(f->path, "CREATE TRIGGER spy AFTER INSERT ON templates BEGIN "
                                     "DELETE FROM subjects; END"),
                     0);
    assert_int_equal(facenet_gallery_open(f->path, key, NULL, 0, 0, &g, &err), FACENET_ERR_FORMAT);
    assert_non_null(strstr(err.message, "spy"));
    assert_int_equal(tg_sql(f->path, "DROP TRIGGER spy"), 0);
    /* a newer schema is refused, not guessed at */
    assert_int_equal(tg_sql(f->path, "INSERT INTO schema_migrations VALUES (99, 'future', 'x')"),
                     0);
    assert_int_equal(facenet_gallery_open(f->path, key, NULL, 0, 0, &g, &err),
                     FACENET_ERR_UNSUPPORTED);
    assert_non_null(strstr(err.message, "99"));
    assert_int_equal(tg_sql(f->path, "DELETE FROM schema_migrations WHERE version = 99"), 0);
    g = tg_open(f->path, 8, 0);
    assert_int_equal(facenet_gallery_size(g), 1);
    facenet_gallery_close(g);
}

static void test_tampering(void **state)
{
    fixture *f = *state;
    facenet_gallery *g = tg_open(f->path, 9, FACENET_GALLERY_CREATE);
    facenet_error err;
    uint8_t key[32];
    int64_t a[2], b[1];
    char sql[256];
    tg_key(key, 9);
    assert_int_equal(tg_enroll(g, "Fay", 1, 2, a, &err), FACENET_OK);
    assert_int_equal(tg_enroll(g, "Gus", 3, 1, b, &err), FACENET_OK);
    facenet_gallery_close(g);
    g = NULL;

    /* relabel: Fay's name changed in the file -> her tag fails */
    assert_int_equal(tg_sql(f->path, "UPDATE subjects SET name = 'Mallory' WHERE name = 'Fay'"), 0);
    assert_int_equal(facenet_gallery_open(f->path, key, NULL, 0, 0, &g, &err),
                     FACENET_ERR_INTEGRITY);
    assert_non_null(strstr(err.message, "subject 1"));
    assert_int_equal(tg_sql(f->path, "UPDATE subjects SET name = 'Fay' WHERE name = 'Mallory'"), 0);
    /* move Gus's template to Fay: its associated data no longer matches */
    snprintf(sql, sizeof sql, "UPDATE templates SET subject_id = 1 WHERE id = %lld",
             (long long)b[0]);
    assert_int_equal(tg_sql(f->path, sql), 0);
    assert_int_equal(facenet_gallery_open(f->path, key, NULL, 0, 0, &g, &err),
                     FACENET_ERR_INTEGRITY);
    snprintf(sql, sizeof sql, "template %lld", (long long)b[0]);
    assert_non_null(strstr(err.message, sql));
    snprintf(sql, sizeof sql, "UPDATE templates SET subject_id = 2 WHERE id = %lld",
             (long long)b[0]);
    assert_int_equal(tg_sql(f->path, sql), 0);
    /* swap in another template's ciphertext (same subject, other row id) */
    snprintf(sql, sizeof sql,
             "UPDATE templates SET sealed = (SELECT sealed FROM templates WHERE id = %lld) "
             "WHERE id = %lld",
             (long long)a[0], (long long)a[1]);
    assert_int_equal(tg_sql(f->path, sql), 0);
    assert_int_equal(facenet_gallery_open(f->path, key, NULL, 0, 0, &g, &err),
                     FACENET_ERR_INTEGRITY);
    /* a template claiming another model is refused as such */
    assert_int_equal(tg_sql(f->path, "UPDATE templates SET model_id = 'other@0' WHERE id = 2"), 0);
    assert_int_equal(facenet_gallery_open(f->path, key, NULL, 0, 0, &g, &err),
                     FACENET_ERR_UNSUPPORTED);
    assert_null(g);
}

static void test_truncated_and_corrupt(void **state)
{
    fixture *f = *state;
    facenet_gallery *g = tg_open(f->path, 10, FACENET_GALLERY_CREATE);
    facenet_error err;
    uint8_t key[32];
    char name[32];
    size_t size;
    tg_key(key, 10);
    /* enough rows to span many pages */
    for (int s = 0; s < 60; s++) {
        snprintf(name, sizeof name, "subject-%d", s);
        assert_int_equal(tg_enroll(g, name, (uint64_t)s * 10, 5, NULL, &err), FACENET_OK);
    }
    facenet_gallery_close(g);
    uint8_t *whole = tg_read(f->path, &size);
    assert_true(size > 100 * 1024);
    char *copy = tg_path(f->dir, "cut.gallery");
    /* cut at many places: open or check must fail cleanly, never crash */
    size_t cuts[] = {50, 100, 4096, 8192, size / 4, size / 2, size * 3 / 4, size - 4096, size - 1};
    for (size_t i = 0; i < sizeof cuts / sizeof cuts[0]; i++) {
        assert_int_equal(tg_write(copy, whole, cuts[i]), 0);
        g = NULL;
        facenet_status st = facenet_gallery_open(copy, key, NULL, 0, 0, &g, &err);
        if (st == FACENET_OK) {
            st = facenet_gallery_check(g, &err);
            facenet_gallery_close(g);
        }
        if (st == FACENET_OK)
            fprintf(stderr, "cut at %zu of %zu bytes went unnoticed\n", cuts[i], size);
        assert_int_not_equal(st, FACENET_OK);
        assert_true(st == FACENET_ERR_FORMAT || st == FACENET_ERR_INTEGRITY);
        assert_non_null(strstr(err.message, "cut.gallery"));
    }
    /* overwrite a page in the middle with garbage */
    uint8_t *bad = malloc(size);
    memcpy(bad, whole, size);
    for (size_t i = size / 2; i < size / 2 + 4096; i++)
        bad[i] = (uint8_t)(i * 37);
    assert_int_equal(tg_write(copy, bad, size), 0);
    g = NULL;
    facenet_status st = facenet_gallery_open(copy, key, NULL, 0, 0, &g, &err);
    if (st == FACENET_OK) {
        st = facenet_gallery_check(g, &err);
        facenet_gallery_close(g);
    }
    assert_true(st == FACENET_ERR_FORMAT || st == FACENET_ERR_INTEGRITY);
    /* the original is untouched and fine */
    g = tg_open(f->path, 10, 0);
    assert_int_equal(facenet_gallery_size(g), 300);
    assert_int_equal(facenet_gallery_check(g, &err), FACENET_OK);
    facenet_gallery_close(g);
    free(bad);
    free(whole);
    free(copy);
}

/* ---- deletion is real ---------------------------------------------------------------- */

static void read_sealed(const char *path, int64_t id, uint8_t *out, size_t *len)
{
    sqlite3 *db;
    sqlite3_stmt *st;
    assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
    assert_int_equal(sqlite3_prepare_v2(db, "SELECT sealed FROM templates WHERE id = ?", -1, &st,
                                        NULL),
                     SQLITE_OK);
    sqlite3_bind_int64(st, 1, id);
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    *len = (size_t)sqlite3_column_bytes(st, 0);
    memcpy(out, sqlite3_column_blob(st, 0), *len);
    sqlite3_finalize(st);
    sqlite3_close(db);
}

static void test_deletion_is_real(void **state)
{
    fixture *f = *state;
    static const char name[] = "Zebulon Quixote-Vanderhoeven";
    facenet_gallery *g = tg_open(f->path, 11, FACENET_GALLERY_CREATE);
    facenet_error err;
    int64_t ids[3], keep[2];
    uint8_t sealed[3][1024];
    size_t len[3], removed = 0;

    assert_int_equal(tg_enroll(g, "Keeper", 1, 2, keep, &err), FACENET_OK);
    assert_int_equal(tg_enroll(g, name, 100, 3, ids, &err), FACENET_OK);
    assert_int_equal(tg_enroll(g, "Other", 200, 2, NULL, &err), FACENET_OK);
    for (int i = 0; i < 3; i++) {
        read_sealed(f->path, ids[i], sealed[i], &len[i]);
        assert_int_equal(len[i], 1 + 24 + TG_DIM * 4 + 16);
        /* control: the bytes are findable before the deletion */
        assert_true(tg_file_contains(f->path, sealed[i] + 100, 64));
    }
    assert_true(tg_file_contains(f->path, name, strlen(name)));

    assert_int_equal(facenet_gallery_remove_subject(g, NULL, name, &removed, &err), FACENET_OK);
    assert_int_equal(removed, 3);
    /* with the handle still open (the log truncated by the purge) ... */
    for (int i = 0; i < 3; i++) {
        assert_false(tg_file_contains(f->path, sealed[i] + 1, 24));      /* nonce */
        assert_false(tg_file_contains(f->path, sealed[i] + 100, 32));    /* ciphertext */
        assert_false(tg_file_contains(f->path, sealed[i] + len[i] - 16, 16)); /* tag */
    }
    assert_false(tg_file_contains(f->path, name, strlen(name)));
    /* the others are intact */
    assert_int_equal(facenet_gallery_size(g), 4);
    assert_int_equal(facenet_gallery_remove_subject(g, NULL, name, NULL, &err),
                     FACENET_ERR_NOT_FOUND);
    /* one template */
    uint8_t one[1024];
    size_t one_len;
    read_sealed(f->path, keep[1], one, &one_len);
    assert_true(tg_file_contains(f->path, one + 100, 64));
    assert_int_equal(facenet_gallery_remove_template(g, keep[1], &err), FACENET_OK);
    assert_false(tg_file_contains(f->path, one + 100, 32));
    assert_int_equal(facenet_gallery_remove_template(g, keep[1], &err), FACENET_ERR_NOT_FOUND);
    facenet_gallery_close(g);
    /* ... and after closing */
    for (int i = 0; i < 3; i++)
        assert_false(tg_file_contains(f->path, sealed[i] + 100, 32));
    assert_false(tg_file_contains(f->path, name, strlen(name)));
    g = tg_open(f->path, 11, 0);
    assert_int_equal(facenet_gallery_size(g), 3);
    assert_int_equal(facenet_gallery_check(g, &err), FACENET_OK);
    facenet_gallery_close(g);
}

/* ---- collections: list, rename, remove ------------------------------------------------------ */

typedef struct coll_seen {
    int n;
    char names[8][FACENET_GALLERY_NAME_MAX];
    size_t subjects[8], templates[8];
} coll_seen;

static int collect_collection(void *arg, const facenet_gallery_collection *c)
{
    coll_seen *s = arg;
    if (s->n < 8) {
        snprintf(s->names[s->n], sizeof s->names[0], "%s", c->name);
        s->subjects[s->n] = c->n_subjects;
        s->templates[s->n] = c->n_templates;
        s->n++;
    }
    return 0;
}

static coll_seen list_collections(facenet_gallery *g)
{
    coll_seen s;
    facenet_error err;
    memset(&s, 0, sizeof s);
    assert_int_equal(facenet_gallery_list_collections(g, collect_collection, &s, &err), FACENET_OK);
    return s;
}

static facenet_status enroll_in(facenet_gallery *g, const char *collection, const char *subject,
                                uint64_t first, size_t n, int64_t *ids)
{
    float v[4 * TG_DIM];
    facenet_error err;
    for (size_t i = 0; i < n; i++)
        tg_embedding(v + i * TG_DIM, TG_DIM, first + i);
    facenet_gallery_enrollment e = {collection, subject, "{\"team\": \"blue\"}", TG_MODEL, "x",
                                    v, n, NULL, 0};
    return facenet_gallery_enroll(g, &e, ids, &err);
}

/* The collection a search for embedding `n` finds first (searching all). */
static void best_collection(facenet_gallery *g, uint64_t n, char *out, size_t size)
{
    float v[TG_DIM];
    facenet_gallery_match m[1];
    tg_embedding(v, TG_DIM, n);
    assert_int_equal(search(g, v, 1, -2, m, 1), 1);
    snprintf(out, size, "%s", m[0].collection);
}

/* The best dot product of q (normalised here) with embeddings first..first+n-1. */
static double best_dot(const float *q, uint64_t first, int n, int *which)
{
    float v[TG_DIM];
    double qn = 0, best = -2;
    for (int i = 0; i < TG_DIM; i++)
        qn += (double)q[i] * q[i];
    for (int t = 0; t < n; t++) {
        double d = 0, vn = 0;
        tg_embedding(v, TG_DIM, first + (uint64_t)t);
        for (int i = 0; i < TG_DIM; i++) {
            d += (double)q[i] * v[i];
            vn += (double)v[i] * v[i];
        }
        d /= sqrt(qn * vn);
        if (d > best) {
            best = d;
            *which = t;
        }
    }
    return best;
}

static void test_score_subject(void **state)
{
    fixture *f = *state;
    facenet_gallery *g = tg_open(f->path, 1, FACENET_GALLERY_CREATE | FACENET_GALLERY_INT4);
    facenet_gallery_match m, top[1];
    facenet_error err;
    float q[TG_DIM], v[TG_DIM], zero[TG_DIM] = {0};
    int64_t ids05[3], ids20[3], scratch[3], ids_other[2];
    char name[32];
    int which = -1;

    for (int s = 0; s < 30; s++) {
        snprintf(name, sizeof name, "person %02d", s);
        int64_t *ids = s == 5 ? ids05 : s == 20 ? ids20 : scratch;
        assert_int_equal(tg_enroll(g, name, (uint64_t)s * 100, 3, ids, &err), FACENET_OK);
    }
    assert_int_equal(enroll_in(g, "other", "person 05", 5000, 2, ids_other), FACENET_OK);
    /* a noisy copy of person 05's third template */
    tg_embedding(v, TG_DIM, 5 * 100 + 2);
    tg_noisy(v, q, TG_DIM, 0.6f, 11);

    /* exact: the subject's best template and its score, whatever copy the
     * searches scan (int4 here) */
    assert_int_equal(facenet_gallery_score_subject(g, TG_MODEL, q, TG_DIM, NULL, "person 05", &m,
                                                   &err),
                     FACENET_OK);
    double want = best_dot(q, 500, 3, &which);
    assert_true(fabs(m.score - want) < 1e-5);
    assert_int_equal(which, 2);
    assert_int_equal(m.template_id, ids05[2]);
    assert_string_equal(m.subject, "person 05");
    assert_string_equal(m.collection, "default");
    assert_true(m.accepted); /* ~0.6 against the gallery's 0.5 */
    /* the same score as the exact search's top match */
    assert_int_equal(search(g, q, 1, -2, top, 1), 1);
    assert_string_equal(top[0].subject, "person 05");
    assert_true(top[0].score == m.score);
    assert_int_equal(top[0].template_id, m.template_id);

    /* a subject far from the query is scored too, not hidden */
    assert_int_equal(facenet_gallery_score_subject(g, TG_MODEL, q, TG_DIM, "default", "person 20",
                                                   &m, &err),
                     FACENET_OK);
    assert_true(fabs(m.score - best_dot(q, 2000, 3, &which)) < 1e-5);
    assert_int_equal(m.template_id, ids20[which]);
    assert_false(m.accepted);
    /* the same name in another collection is another subject */
    assert_int_equal(facenet_gallery_score_subject(g, TG_MODEL, q, TG_DIM, "other", "person 05",
                                                   &m, &err),
                     FACENET_OK);
    assert_true(fabs(m.score - best_dot(q, 5000, 2, &which)) < 1e-5);
    assert_int_equal(m.template_id, ids_other[which]);
    assert_string_equal(m.collection, "other");

    /* what does not exist, and bad queries */
    assert_int_equal(facenet_gallery_score_subject(g, TG_MODEL, q, TG_DIM, NULL, "nobody", &m,
                                                   &err),
                     FACENET_ERR_NOT_FOUND);
    assert_non_null(strstr(err.message, "nobody"));
    assert_int_equal(facenet_gallery_score_subject(g, TG_MODEL, q, TG_DIM, "missing", "person 05",
                                                   &m, &err),
                     FACENET_ERR_NOT_FOUND);
    assert_int_equal(facenet_gallery_score_subject(g, "other@1", q, TG_DIM, NULL, "person 05", &m,
                                                   &err),
                     FACENET_ERR_UNSUPPORTED);
    assert_int_equal(facenet_gallery_score_subject(g, TG_MODEL, q, TG_DIM - 1, NULL, "person 05",
                                                   &m, &err),
                     FACENET_ERR_SHAPE);
    assert_int_equal(facenet_gallery_score_subject(g, TG_MODEL, zero, TG_DIM, NULL, "person 05",
                                                   &m, &err),
                     FACENET_ERR_INVALID_ARGUMENT);
    assert_int_equal(facenet_gallery_score_subject(g, TG_MODEL, q, TG_DIM, NULL, " person 05", &m,
                                                   &err),
                     FACENET_ERR_INVALID_ARGUMENT);
    assert_int_equal(facenet_gallery_score_subject(g, TG_MODEL, q, TG_DIM, NULL, NULL, &m, &err),
                     FACENET_ERR_INVALID_ARGUMENT);

    /* removed subjects are gone from 1:1 too */
    assert_int_equal(facenet_gallery_remove_subject(g, NULL, "person 05", NULL, &err), FACENET_OK);
    assert_int_equal(facenet_gallery_score_subject(g, TG_MODEL, q, TG_DIM, NULL, "person 05", &m,
                                                   &err),
                     FACENET_ERR_NOT_FOUND);
    facenet_gallery_close(g);
}

static void test_collection_rename(void **state)
{
    fixture *f = *state;
    facenet_gallery *g = tg_open(f->path, 21, FACENET_GALLERY_CREATE);
    facenet_gallery *ro;
    facenet_error err;
    char before[65], after[65], where[FACENET_GALLERY_NAME_MAX];
    uint8_t key[32];
    static const char odd[] = "Robert'); DROP TABLE collections;-- Zoë";

    assert_int_equal(enroll_in(g, "staff", "Ann", 1, 2, NULL), FACENET_OK);
    assert_int_equal(enroll_in(g, "staff", "Bob", 3, 1, NULL), FACENET_OK);
    assert_int_equal(enroll_in(g, "visitors", "Ann", 4, 1, NULL), FACENET_OK);
    coll_seen c = list_collections(g);
    assert_int_equal(c.n, 2);
    assert_string_equal(c.names[0], "staff");
    assert_int_equal(c.subjects[0], 2);
    assert_int_equal(c.templates[0], 3);
    assert_string_equal(c.names[1], "visitors");
    assert_int_equal(c.templates[1], 1);

    assert_int_equal(facenet_gallery_rename_collection(g, "staff", "employees", &err), FACENET_OK);
    best_collection(g, 3, where, sizeof where);
    assert_string_equal(where, "employees"); /* the open handle follows at once */
    c = list_collections(g);
    assert_string_equal(c.names[0], "employees");
    assert_int_equal(c.subjects[0], 2);

    /* refusals change nothing */
    facenet_gallery_close(g);
    tg_file_sha(f->path, before);
    g = tg_open(f->path, 21, 0);
    assert_int_equal(facenet_gallery_rename_collection(g, "employees", "visitors", &err),
                     FACENET_ERR_INVALID_ARGUMENT);
    assert_non_null(strstr(err.message, "already has"));
    assert_int_equal(facenet_gallery_rename_collection(g, "staff", "x", &err),
                     FACENET_ERR_NOT_FOUND);
    assert_non_null(strstr(err.message, "staff"));
    assert_int_equal(facenet_gallery_rename_collection(g, "employees", "", &err),
                     FACENET_ERR_INVALID_ARGUMENT);
    assert_int_equal(facenet_gallery_rename_collection(g, "employees", "esc\x1b[2J", &err),
                     FACENET_ERR_INVALID_ARGUMENT);
    assert_int_equal(facenet_gallery_rename_collection(g, "employees", "bad\xff", &err),
                     FACENET_ERR_INVALID_ARGUMENT);
    char long_name[300];
    memset(long_name, 'c', sizeof long_name - 1);
    long_name[sizeof long_name - 1] = 0;
    assert_int_equal(facenet_gallery_rename_collection(g, "employees", long_name, &err),
                     FACENET_ERR_LIMIT);
    assert_int_equal(facenet_gallery_rename_collection(g, NULL, "x", &err),
                     FACENET_ERR_INVALID_ARGUMENT);
    assert_int_equal(facenet_gallery_rename_collection(g, "employees", "employees", &err),
                     FACENET_OK); /* a no-op */
    tg_key(key, 21);
    assert_int_equal(facenet_gallery_open(f->path, key, NULL, 0, FACENET_GALLERY_READ_ONLY, &ro,
                                          &err),
                     FACENET_OK);
    assert_int_equal(facenet_gallery_rename_collection(ro, "employees", "y", &err),
                     FACENET_ERR_INVALID_ARGUMENT);
    facenet_gallery_close(ro);
    facenet_gallery_close(g);
    tg_file_sha(f->path, after);
    assert_string_equal(before, after);

    /* the new name survives reopening: every subject's tag was renewed */
    g = tg_open(f->path, 21, 0);
    assert_int_equal(facenet_gallery_check(g, &err), FACENET_OK);
    best_collection(g, 1, where, sizeof where);
    assert_string_equal(where, "employees");
    /* SQL metacharacters are ordinary characters */
    assert_int_equal(facenet_gallery_rename_collection(g, "employees", odd, &err), FACENET_OK);
    facenet_gallery_close(g);
    g = tg_open(f->path, 21, 0);
    best_collection(g, 3, where, sizeof where);
    assert_string_equal(where, odd);
    assert_int_equal(facenet_gallery_check(g, &err), FACENET_OK);

    /* a relabelled subject is not laundered by a rename: refused, unchanged */
    assert_int_equal(tg_sql(f->path, "UPDATE subjects SET name = 'Mallory' WHERE name = 'Bob'"),
                     0);
    tg_file_sha(f->path, before);
    assert_int_equal(facenet_gallery_rename_collection(g, odd, "laundered", &err),
                     FACENET_ERR_INTEGRITY);
    tg_file_sha(f->path, after);
    assert_string_equal(before, after);
    facenet_gallery_close(g);
    assert_int_equal(facenet_gallery_open(f->path, key, NULL, 0, 0, &g, &err),
                     FACENET_ERR_INTEGRITY);
}

static void test_collection_remove(void **state)
{
    fixture *f = *state;
    static const char name[] = "Zebulon Collection-Member";
    facenet_gallery *g = tg_open(f->path, 22, FACENET_GALLERY_CREATE);
    facenet_error err;
    int64_t ids[3];
    uint8_t sealed[3][1024];
    size_t len[3], subjects = 99, templates = 99;
    char where[FACENET_GALLERY_NAME_MAX];

    assert_int_equal(enroll_in(g, "keep", "Keeper", 1, 2, NULL), FACENET_OK);
    assert_int_equal(enroll_in(g, "doomed", name, 10, 2, ids), FACENET_OK);
    assert_int_equal(enroll_in(g, "doomed", "Other", 12, 1, ids + 2), FACENET_OK);
    assert_int_equal(enroll_in(g, NULL, "Default", 20, 1, NULL), FACENET_OK);
    for (int i = 0; i < 3; i++) {
        read_sealed(f->path, ids[i], sealed[i], &len[i]);
        assert_true(tg_file_contains(f->path, sealed[i] + 100, 64)); /* control */
    }
    assert_true(tg_file_contains(f->path, name, strlen(name)));
    assert_int_equal(facenet_gallery_size(g), 6);

    assert_int_equal(facenet_gallery_remove_collection(g, "doomed", &subjects, &templates, &err),
                     FACENET_OK);
    assert_int_equal(subjects, 2);
    assert_int_equal(templates, 3);
    assert_int_equal(facenet_gallery_size(g), 3);
    for (int i = 0; i < 3; i++) {
        assert_false(tg_file_contains(f->path, sealed[i] + 1, 24));
        assert_false(tg_file_contains(f->path, sealed[i] + 100, 32));
    }
    assert_false(tg_file_contains(f->path, name, strlen(name)));
    /* the searches of the open handle no longer see it */
    best_collection(g, 10, where, sizeof where);
    assert_string_not_equal(where, "doomed");
    facenet_gallery_search_options o;
    facenet_gallery_match m[1];
    size_t n;
    float v[TG_DIM];
    tg_embedding(v, TG_DIM, 10);
    facenet_gallery_search_options_default(&o);
    o.collection = "doomed";
    assert_int_equal(facenet_gallery_search(g, TG_MODEL, v, TG_DIM, &o, m, &n, &err),
                     FACENET_ERR_NOT_FOUND);
    coll_seen c = list_collections(g);
    assert_int_equal(c.n, 2);
    assert_string_equal(c.names[0], "keep");
    assert_string_equal(c.names[1], "default");

    /* refusals */
    assert_int_equal(facenet_gallery_remove_collection(g, "doomed", NULL, NULL, &err),
                     FACENET_ERR_NOT_FOUND);
    assert_int_equal(facenet_gallery_remove_collection(g, "line\nbreak", NULL, NULL, &err),
                     FACENET_ERR_INVALID_ARGUMENT);
    assert_int_equal(facenet_gallery_remove_collection(g, "", NULL, NULL, &err),
                     FACENET_ERR_INVALID_ARGUMENT);
    assert_int_equal(facenet_gallery_remove_collection(NULL, "keep", NULL, NULL, &err),
                     FACENET_ERR_INVALID_ARGUMENT);
    /* the collection name can be used again, as a new collection */
    assert_int_equal(enroll_in(g, "doomed", name, 30, 1, NULL), FACENET_OK);
    facenet_gallery_close(g);

    g = tg_open(f->path, 22, 0);
    assert_int_equal(facenet_gallery_size(g), 4);
    assert_int_equal(facenet_gallery_check(g, &err), FACENET_OK);
    best_collection(g, 1, where, sizeof where);
    assert_string_equal(where, "keep");
    facenet_gallery_close(g);
}

/* Opening decrypts in batches on two threads: every row of a larger
 * gallery must come back right, and a damaged row in the part the helper
 * thread opens must still be caught and named. */
static void test_parallel_open(void **state)
{
    fixture *f = *state;
    facenet_gallery *g = tg_open(f->path, 23, FACENET_GALLERY_CREATE);
    facenet_error err;
    enum { N = 1500 };
    int64_t *ids = malloc(N * sizeof *ids);
    char sql[256];
    uint8_t key[32];
    assert_int_equal(tg_enroll(g, "Many", 1000, N, ids, &err), FACENET_OK);
    facenet_gallery_close(g);

    g = tg_open(f->path, 23, FACENET_GALLERY_INT4);
    assert_int_equal(facenet_gallery_size(g), N);
    for (int i = 0; i < N; i += 97) {
        float v[TG_DIM];
        facenet_gallery_match m[1];
        tg_embedding(v, TG_DIM, 1000 + (uint64_t)i);
        assert_int_equal(search(g, v, 1, -2, m, 1), 1);
        assert_int_equal(m[0].template_id, ids[i]);
        assert_true(m[0].score > 0.9999f);
    }
    facenet_gallery_close(g);

    /* change one byte of a ciphertext near the end (to 0, or 1 if it was 0) */
    snprintf(sql, sizeof sql,
             "UPDATE templates SET sealed = substr(sealed, 1, 99) || CASE WHEN substr(sealed, "
             "100, 1) = x'00' THEN x'01' ELSE x'00' END || substr(sealed, 101) WHERE id = %lld",
             (long long)ids[N - 10]);
    assert_int_equal(tg_sql(f->path, sql), 0);
    tg_key(key, 23);
    g = NULL;
    assert_int_equal(facenet_gallery_open(f->path, key, NULL, 0, 0, &g, &err),
                     FACENET_ERR_INTEGRITY);
    assert_null(g);
    snprintf(sql, sizeof sql, "template %lld fails authentication", (long long)ids[N - 10]);
    assert_non_null(strstr(err.message, sql));
    free(ids);
}

/* ---- rekey, export, import --------------------------------------------------------------- */

static void test_rekey(void **state)
{
    fixture *f = *state;
    facenet_gallery *g = tg_open(f->path, 12, FACENET_GALLERY_CREATE);
    facenet_gallery *h = NULL;
    facenet_gallery_match m[1];
    facenet_error err;
    uint8_t old_key[32], new_key[32];
    int64_t ids[4];
    uint8_t before[1024];
    size_t len;
    float q[TG_DIM];

    assert_int_equal(tg_enroll(g, "Hal", 1, 4, ids, &err), FACENET_OK);
    assert_int_equal(tg_enroll(g, "Ida", 9, 1, NULL, &err), FACENET_OK);
    read_sealed(f->path, ids[2], before, &len);
    tg_key(old_key, 12);
    tg_key(new_key, 13);
    assert_int_equal(facenet_gallery_rekey(g, new_key, &err), FACENET_OK);
    /* the handle keeps working */
    tg_embedding(q, TG_DIM, 3);
    assert_int_equal(search(g, q, 1, -2, m, 1), 1);
    assert_string_equal(m[0].subject, "Hal");
    assert_true(m[0].score > 0.9999f);
    facenet_gallery_close(g);
    /* the old ciphertext is gone from the files */
    assert_false(tg_file_contains(f->path, before + 100, 32));
    assert_int_equal(facenet_gallery_open(f->path, old_key, NULL, 0, 0, &h, &err),
                     FACENET_ERR_INTEGRITY);
    assert_int_equal(facenet_gallery_open(f->path, new_key, NULL, 0, 0, &h, &err), FACENET_OK);
    assert_int_equal(facenet_gallery_size(h), 5);
    assert_int_equal(facenet_gallery_check(h, &err), FACENET_OK);
    assert_int_equal(search(h, q, 1, -2, m, 1), 1);
    assert_string_equal(m[0].subject, "Hal");
    assert_true(m[0].score > 0.9999f);
    facenet_gallery_close(h);
}

static void test_export_import(void **state)
{
    fixture *f = *state;
    facenet_gallery *g = tg_open(f->path, 14, FACENET_GALLERY_CREATE);
    facenet_gallery *h;
    facenet_gallery_match m[1];
    facenet_error err;
    uint8_t key[32], other[32];
    size_t added = 99, size;
    float q[TG_DIM];
    char *sealed = tg_path(f->dir, "export.sealed");
    char *plain = tg_path(f->dir, "export.json");
    char *copy = tg_path(f->dir, "copy.gallery");
    struct stat sb;

    tg_key(key, 14);
    tg_key(other, 15);
    facenet_gallery_enrollment e = {"crew", "Jo", "{\"role\":\"pilot\"}", TG_MODEL, "x", NULL, 0,
                                    NULL, 0};
    float v[2 * TG_DIM];
    const char *shas[2] = {"1111111111111111111111111111111111111111111111111111111111111111", NULL};
    tg_embedding(v, TG_DIM, 21);
    tg_embedding(v + TG_DIM, TG_DIM, 22);
    e.embeddings = v;
    e.n = 2;
    e.image_sha256 = shas;
    assert_int_equal(facenet_gallery_enroll(g, &e, NULL, &err), FACENET_OK);
    assert_int_equal(tg_enroll(g, "Kim", 30, 3, NULL, &err), FACENET_OK);

    assert_int_equal(facenet_gallery_export(g, sealed, key, &err), FACENET_OK);
    assert_int_equal(facenet_gallery_export(g, plain, NULL, &err), FACENET_OK);
    assert_int_equal(stat(sealed, &sb), 0);
    assert_int_equal(sb.st_mode & 0777, 0600);
    uint8_t *text = tg_read(plain, &size);
    assert_non_null(strstr((char *)text, "\"facenet-gallery-export\""));
    assert_non_null(strstr((char *)text, "\"Kim\""));
    assert_non_null(strstr((char *)text, "\"role\":\"pilot\""));
    free(text);
    /* Sealed means sealed: what the plain export shows in clear is absent.
     * The needles are the quoted JSON strings, not the bare 3-byte "Kim",
     * which random ciphertext contains about once in 10,000 runs. */
    assert_false(tg_file_contains(sealed, "\"Kim\"", 5));
    assert_false(tg_file_contains(sealed, "\"role\":\"pilot\"", 14));
    facenet_gallery_close(g);

    /* into a new gallery under another key */
    h = tg_open(copy, 15, FACENET_GALLERY_CREATE);
    assert_int_equal(facenet_gallery_import(h, sealed, other, &added, &err), FACENET_ERR_INTEGRITY);
    assert_int_equal(facenet_gallery_import(h, sealed, NULL, &added, &err),
                     FACENET_ERR_INVALID_ARGUMENT);
    assert_int_equal(facenet_gallery_size(h), 0);
    assert_int_equal(facenet_gallery_import(h, sealed, key, &added, &err), FACENET_OK);
    assert_int_equal(added, 5);
    tg_embedding(q, TG_DIM, 22);
    assert_int_equal(search(h, q, 1, -2, m, 1), 1);
    assert_string_equal(m[0].subject, "Jo");
    assert_string_equal(m[0].collection, "crew");
    assert_true(m[0].score > 0.99999f); /* nine digits: float32 survives */
    /* importing again adds only the templates without an image digest */
    assert_int_equal(facenet_gallery_import(h, plain, NULL, &added, &err), FACENET_OK);
    assert_int_equal(added, 4);
    seen c = {0};
    assert_int_equal(facenet_gallery_list(h, "crew", collect, &c, &err), FACENET_OK);
    assert_int_equal(c.n, 1);
    assert_string_equal(c.meta[0], "{\"role\":\"pilot\"}");
    facenet_gallery_close(h);

    /* tampered, truncated, hostile and other-model exports are refused whole */
    uint8_t *bytes = tg_read(sealed, &size);
    bytes[size / 2] ^= 1;
    assert_int_equal(tg_write(sealed, bytes, size), 0);
    h = tg_open(copy, 15, 0);
    size_t before = facenet_gallery_size(h);
    assert_int_equal(facenet_gallery_import(h, sealed, key, &added, &err), FACENET_ERR_INTEGRITY);
    assert_int_equal(tg_write(sealed, bytes, 20), 0);
    assert_int_equal(facenet_gallery_import(h, sealed, key, &added, &err), FACENET_ERR_FORMAT);
    free(bytes);
    static const char *const hostile[] = {
        "{\"format\":\"facenet-gallery-export\",\"version\":1,\"model_id\":\"other@0\",\"dim\":192,"
        "\"subjects\":[]}",
        "{\"format\":\"facenet-gallery-export\",\"version\":1,\"model_id\":\"" TG_MODEL
        "\",\"dim\":192,\"subjects\":[{\"collection\":\"c\",\"name\":\"a\\u0000b\","
        "\"templates\":[]}]}",
        "{\"format\":\"facenet-gallery-export\",\"version\":1,\"model_id\":\"" TG_MODEL
        "\",\"dim\":192,\"subjects\":[{\"collection\":\"c\",\"name\":\"ok\","
        "\"templates\":[{\"preprocess\":\"x\",\"image_sha256\":\"\",\"embedding\":[1,2]}]}]}",
        "{\"format\":\"facenet-gallery-export\",\"version\":2}",
        "[1,2,3]",
        "{\"format\":",
    };
    for (size_t i = 0; i < sizeof hostile / sizeof hostile[0]; i++) {
        assert_int_equal(tg_write(plain, hostile[i], strlen(hostile[i])), 0);
        assert_int_not_equal(facenet_gallery_import(h, plain, NULL, &added, &err), FACENET_OK);
        assert_true(strlen(err.message) > 10);
    }
    assert_int_equal(facenet_gallery_size(h), before);
    assert_int_equal(facenet_gallery_check(h, &err), FACENET_OK);
    facenet_gallery_close(h);
    free(sealed);
    free(plain);
    free(copy);
}

/* Version 2 exports are streams of records: check the layout, that a
 * truncated or half-bad stream changes nothing (one transaction), that a
 * record longer than the bound is refused before it is buffered, and that
 * version 1 documents are still read. */
static char *v1_document(const char *name, uint64_t n)
{
    float v[TG_DIM];
    size_t cap = 64 * 1024, len = 0;
    char *doc = malloc(cap);
    tg_embedding(v, TG_DIM, n);
    len += (size_t)snprintf(doc + len, cap - len,
                            "{\"format\":\"facenet-gallery-export\",\"version\":1,\"model_id\":\""
                            TG_MODEL "\",\"dim\":%d,\"subjects\":[{\"collection\":\"old\","
                            "\"name\":\"%s\",\"templates\":[{\"preprocess\":\"x\","
                            "\"image_sha256\":\"\",\"embedding\":[",
                            TG_DIM, name);
    for (int i = 0; i < TG_DIM; i++)
        len += (size_t)snprintf(doc + len, cap - len, "%s%.9g", i ? "," : "", (double)v[i]);
    snprintf(doc + len, cap - len, "]}]}]}");
    return doc;
}

static int count_lines(const uint8_t *text, size_t size)
{
    int n = 0;
    for (size_t i = 0; i < size; i++)
        n += text[i] == '\n';
    return n;
}

static void test_export_stream(void **state)
{
    fixture *f = *state;
    facenet_gallery *g = tg_open(f->path, 24, FACENET_GALLERY_CREATE);
    facenet_error err;
    uint8_t key[32];
    size_t added = 0, size;
    char *plain = tg_path(f->dir, "e.jsonl"), *sealed = tg_path(f->dir, "e.sealed");
    char *cut = tg_path(f->dir, "cut"), *copy = tg_path(f->dir, "copy.gallery");
    tg_key(key, 24);
    assert_int_equal(tg_enroll(g, "Ann", 1, 3, NULL, &err), FACENET_OK);
    assert_int_equal(tg_enroll(g, "Ben", 10, 2, NULL, &err), FACENET_OK);
    assert_int_equal(facenet_gallery_export(g, plain, NULL, &err), FACENET_OK);
    assert_int_equal(facenet_gallery_export(g, sealed, key, &err), FACENET_OK);
    facenet_gallery_close(g);

    /* header, 2 subjects, 5 templates, end: one record per line */
    uint8_t *text = tg_read(plain, &size);
    assert_int_equal(count_lines(text, size), 1 + 2 + 5 + 1);
    assert_non_null(strstr((char *)text, "\"version\":2"));
    assert_non_null(strstr((char *)text, "{\"end\":{\"subjects\":2,\"templates\":5}}\n"));

    facenet_gallery *h = tg_open(copy, 24, FACENET_GALLERY_CREATE);
    /* without its end record: truncated, refused, nothing written */
    size_t last = size - 1;
    while (last > 0 && text[last - 1] != '\n')
        last--;
    assert_int_equal(tg_write(cut, text, last), 0);
    assert_int_equal(facenet_gallery_import(h, cut, NULL, &added, &err), FACENET_ERR_FORMAT);
    assert_non_null(strstr(err.message, "truncated"));
    assert_int_equal(facenet_gallery_size(h), 0);
    /* a bad record after good ones: the good ones are rolled back too */
    char *bad_text = malloc(size + 64);
    size_t third = 0;
    for (int nl = 0; third < size && nl < 3; third++)
        nl += text[third] == '\n';
    memcpy(bad_text, text, third);
    size_t bad_len = third + (size_t)sprintf(bad_text + third, "{\"template\":{\"x\":1}}\n");
    memcpy(bad_text + bad_len, text + third, size - third);
    assert_int_equal(tg_write(cut, bad_text, bad_len + size - third), 0);
    assert_int_equal(facenet_gallery_import(h, cut, NULL, &added, &err), FACENET_ERR_FORMAT);
    assert_non_null(strstr(err.message, "record 4"));
    assert_int_equal(facenet_gallery_size(h), 0);
    /* a record longer than the bound */
    char *huge = malloc(3u << 20);
    memcpy(huge, text, third);
    memset(huge + third, ' ', (3u << 20) - third);
    assert_int_equal(tg_write(cut, huge, 3u << 20), 0);
    assert_int_equal(facenet_gallery_import(h, cut, NULL, &added, &err), FACENET_ERR_LIMIT);
    free(huge);
    free(bad_text);
    /* sealed: the last record cut off (no FINAL tag) */
    uint8_t *bytes = tg_read(sealed, &size);
    assert_int_equal(tg_write(cut, bytes, size - 30), 0);
    assert_int_not_equal(facenet_gallery_import(h, cut, key, &added, &err), FACENET_OK);
    assert_int_equal(facenet_gallery_size(h), 0);
    free(bytes);
    /* whole: all five */
    assert_int_equal(facenet_gallery_import(h, sealed, key, &added, &err), FACENET_OK);
    assert_int_equal(added, 5);
    assert_int_equal(facenet_gallery_import(h, plain, NULL, &added, &err), FACENET_OK);
    assert_int_equal(added, 5); /* no image digests: added again */
    /* version 1 documents are still read */
    char *doc = v1_document("Legacy", 77);
    assert_int_equal(tg_write(cut, doc, strlen(doc)), 0);
    assert_int_equal(facenet_gallery_import(h, cut, NULL, &added, &err), FACENET_OK);
    assert_int_equal(added, 1);
    free(doc);
    float q[TG_DIM];
    facenet_gallery_match m[1];
    tg_embedding(q, TG_DIM, 77);
    assert_int_equal(search(h, q, 1, -2, m, 1), 1);
    assert_string_equal(m[0].subject, "Legacy");
    assert_string_equal(m[0].collection, "old");
    assert_int_equal(facenet_gallery_check(h, &err), FACENET_OK);
    facenet_gallery_close(h);
    free(text);
    free(plain);
    free(sealed);
    free(cut);
    free(copy);
}

static void test_threshold_fails_closed(void **state)
{
    fixture *f = *state;
    facenet_gallery *g = NULL;
    facenet_gallery_match m[1];
    facenet_gallery_search_options o;
    facenet_error err;
    uint8_t key[32];
    float v[TG_DIM];
    size_t n = 7;

    tg_key(key, 18);
    /* A model with no calibrated threshold leaves the gallery without one. */
    assert_int_equal(facenet_gallery_open(f->path, key, TG_MODEL, TG_DIM, FACENET_GALLERY_CREATE,
                                          &g, &err),
                     FACENET_OK);
    assert_true(isnan(facenet_gallery_threshold(g)));
    assert_int_equal(tg_enroll(g, "Max", 1, 1, NULL, &err), FACENET_OK);
    tg_embedding(v, TG_DIM, 1);
    assert_int_equal(facenet_gallery_search(g, TG_MODEL, v, TG_DIM, NULL, m, &n, &err),
                     FACENET_ERR_INVALID_ARGUMENT);
    assert_int_equal(n, 0);
    assert_non_null(strstr(err.message, "threshold"));
    /* an explicit threshold works ... */
    facenet_gallery_search_options_default(&o);
    o.threshold = 0.3f;
    assert_int_equal(facenet_gallery_search(g, TG_MODEL, v, TG_DIM, &o, m, &n, &err), FACENET_OK);
    assert_int_equal(n, 1);
    assert_true(m[0].accepted);
    /* ... and so does a recorded one, which persists; bad values do not */
    assert_int_equal(facenet_gallery_set_threshold(g, 1.5f, &err), FACENET_ERR_INVALID_ARGUMENT);
    assert_int_equal(facenet_gallery_set_threshold(g, NAN, &err), FACENET_ERR_INVALID_ARGUMENT);
    assert_int_equal(facenet_gallery_set_threshold(g, 0.62f, &err), FACENET_OK);
    facenet_gallery_close(g);
    g = tg_open(f->path, 18, FACENET_GALLERY_READ_ONLY);
    assert_true(fabsf(facenet_gallery_threshold(g) - 0.62f) < 1e-6f);
    assert_int_equal(facenet_gallery_search(g, TG_MODEL, v, TG_DIM, NULL, m, &n, &err), FACENET_OK);
    facenet_gallery_close(g);
    /* MobileFaceNet has a 1:N calibration, above its 1:1 threshold */
    char *other = tg_path(f->dir, "mfn.gallery");
    assert_int_equal(facenet_gallery_open(other, key, "mobilefacenet@d8ba40c0127fb8ca", 192,
                                          FACENET_GALLERY_CREATE, &g, &err),
                     FACENET_OK);
    assert_true(fabsf(facenet_gallery_threshold(g) - 0.616f) < 1e-6f);
    assert_true(facenet_gallery_threshold(g) > facenet_model_find("mobilefacenet")->threshold);
    facenet_gallery_close(g);
    free(other);
    /* so have the dlib ResNet and its tfjs port; a model never measured has none */
    other = tg_path(f->dir, "dlib.gallery");
    assert_int_equal(facenet_gallery_open(other, key, "dlib-resnet@0123456789abcdef", 128,
                                          FACENET_GALLERY_CREATE, &g, &err),
                     FACENET_OK);
    assert_true(fabsf(facenet_gallery_threshold(g) - 0.954f) < 1e-6f);
    assert_true(facenet_gallery_threshold(g) > facenet_model_find("dlib-resnet")->threshold);
    facenet_gallery_close(g);
    free(other);
    other = tg_path(f->dir, "tfjs.gallery");
    assert_int_equal(facenet_gallery_open(other, key, "dlib-resnet-tfjs@0123456789abcdef", 128,
                                          FACENET_GALLERY_CREATE, &g, &err),
                     FACENET_OK);
    assert_true(fabsf(facenet_gallery_threshold(g) - 0.954f) < 1e-6f);
    facenet_gallery_close(g);
    free(other);
    other = tg_path(f->dir, "unmeasured.gallery");
    assert_int_equal(facenet_gallery_open(other, key, "dlib-resnet-v2@0123456789abcdef", 128,
                                          FACENET_GALLERY_CREATE, &g, &err),
                     FACENET_OK);
    assert_true(isnan(facenet_gallery_threshold(g))); /* a prefix is not a match */
    facenet_gallery_close(g);
    free(other);
}

static void test_refresh(void **state)
{
    fixture *f = *state;
    facenet_gallery *a = tg_open(f->path, 16, FACENET_GALLERY_CREATE);
    facenet_gallery *b = tg_open(f->path, 16, 0);
    facenet_error err;
    int changed = -1;
    assert_int_equal(tg_enroll(b, "Lee", 1, 2, NULL, &err), FACENET_OK);
    assert_int_equal(facenet_gallery_size(a), 0); /* a snapshot */
    assert_int_equal(facenet_gallery_refresh(a, &changed, &err), FACENET_OK);
    assert_int_equal(changed, 1);
    assert_int_equal(facenet_gallery_size(a), 2);
    assert_int_equal(facenet_gallery_refresh(a, &changed, &err), FACENET_OK);
    assert_int_equal(changed, 0);
    facenet_gallery_close(a);
    facenet_gallery_close(b);
}

/* ---- threads share one handle ------------------------------------------------------------ */

typedef struct thread_arg {
    facenet_gallery *g;
    int id;
    int failures;
} thread_arg;

static void *searcher(void *p)
{
    thread_arg *a = p;
    facenet_gallery_match m[5]; /* NULL options: the default k is 5 */
    facenet_error err;
    float q[TG_DIM];
    for (int i = 0; i < 300; i++) {
        size_t n;
        tg_embedding(q, TG_DIM, (uint64_t)(i % 20) * 10);
        if (facenet_gallery_search(a->g, TG_MODEL, q, TG_DIM, NULL, m, &n, &err) != FACENET_OK ||
            n == 0 || m[0].score < 0.999f)
            a->failures++;
    }
    return NULL;
}

static void *enroller(void *p)
{
    thread_arg *a = p;
    facenet_error err;
    char name[32];
    for (int i = 0; i < 30; i++) {
        snprintf(name, sizeof name, "late-%d", i);
        if (tg_enroll(a->g, name, 100000 + (uint64_t)i, 1, NULL, &err) != FACENET_OK)
            a->failures++;
    }
    return NULL;
}

static void test_threads_share_handle(void **state)
{
    fixture *f = *state;
    facenet_gallery *g = tg_open(f->path, 17, FACENET_GALLERY_CREATE | FACENET_GALLERY_INT8);
    facenet_error err;
    char name[32];
    pthread_t t[3];
    thread_arg args[3];
    for (int s = 0; s < 20; s++) {
        snprintf(name, sizeof name, "early-%d", s);
        assert_int_equal(tg_enroll(g, name, (uint64_t)s * 10, 1, NULL, &err), FACENET_OK);
    }
    for (int i = 0; i < 3; i++) {
        args[i].g = g;
        args[i].id = i;
        args[i].failures = 0;
        assert_int_equal(pthread_create(&t[i], NULL, i == 2 ? enroller : searcher, &args[i]), 0);
    }
    for (int i = 0; i < 3; i++)
        pthread_join(t[i], NULL);
    for (int i = 0; i < 3; i++)
        assert_int_equal(args[i].failures, 0);
    assert_int_equal(facenet_gallery_size(g), 50);
    facenet_gallery_close(g);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_key_parse),
        cmocka_unit_test_setup_teardown(test_key_files, setup, teardown),
        cmocka_unit_test_setup_teardown(test_enroll_search, setup, teardown),
        cmocka_unit_test_setup_teardown(test_collections_and_metadata, setup, teardown),
        cmocka_unit_test_setup_teardown(test_skip_existing_and_list, setup, teardown),
        cmocka_unit_test_setup_teardown(test_wrong_key_and_other_model, setup, teardown),
        cmocka_unit_test_setup_teardown(test_hostile_names, setup, teardown),
        cmocka_unit_test_setup_teardown(test_not_a_gallery, setup, teardown),
        cmocka_unit_test_setup_teardown(test_schema_guards, setup, teardown),
        cmocka_unit_test_setup_teardown(test_tampering, setup, teardown),
        cmocka_unit_test_setup_teardown(test_truncated_and_corrupt, setup, teardown),
        cmocka_unit_test_setup_teardown(test_deletion_is_real, setup, teardown),
        cmocka_unit_test_setup_teardown(test_collection_rename, setup, teardown),
        cmocka_unit_test_setup_teardown(test_collection_remove, setup, teardown),
        cmocka_unit_test_setup_teardown(test_score_subject, setup, teardown),
        cmocka_unit_test_setup_teardown(test_parallel_open, setup, teardown),
        cmocka_unit_test_setup_teardown(test_rekey, setup, teardown),
        cmocka_unit_test_setup_teardown(test_export_import, setup, teardown),
        cmocka_unit_test_setup_teardown(test_export_stream, setup, teardown),
        cmocka_unit_test_setup_teardown(test_threshold_fails_closed, setup, teardown),
        cmocka_unit_test_setup_teardown(test_refresh, setup, teardown),
        cmocka_unit_test_setup_teardown(test_threads_share_handle, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
