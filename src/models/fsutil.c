#include "models/fsutil.h"

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/error.h"

facenet_status fn_join_path(char *buf, size_t buf_size, const char *dir,
                            const char *name, facenet_error *err)
{
    size_t dlen = strlen(dir);
    const char *sep = (dlen > 0 && dir[dlen - 1] == '/') ? "" : "/";
    int n = snprintf(buf, buf_size, "%s%s%s", dir, sep, name);

    if (n < 0 || (size_t)n >= buf_size)
        return fn_fail(err, FACENET_ERR_LIMIT, "path '%s%s%s' is longer than %zu bytes",
                       dir, sep, name, buf_size - 1);
    return FACENET_OK;
}

int fn_is_plain_name(const char *name)
{
    return name && name[0] && strcmp(name, ".") != 0 && strcmp(name, "..") != 0 &&
           !strchr(name, '/');
}

int fn_is_safe_relative_path(const char *path)
{
    const char *p = path;

    if (!path || !path[0] || path[0] == '/' || path[0] == '-')
        return 0;
    while (*p) {
        const char *slash = strchr(p, '/');
        size_t len = slash ? (size_t)(slash - p) : strlen(p);
        if (len == 0 || (len == 1 && p[0] == '.') ||
            (len == 2 && p[0] == '.' && p[1] == '.'))
            return 0;
        p += len;
        if (*p == '/') {
            p++;
            if (!*p) /* trailing slash names a directory */
                return 0;
        }
    }
    return 1;
}

static facenet_status make_one_dir(const char *path, mode_t mode, facenet_error *err)
{
    struct stat st;

    if (mkdir(path, mode) == 0)
        return FACENET_OK;
    if (errno == EEXIST && stat(path, &st) == 0 && S_ISDIR(st.st_mode))
        return FACENET_OK;
    if (errno == EEXIST)
        return fn_fail(err, FACENET_ERR_IO, "%s exists and is not a directory", path);
    return fn_fail(err, FACENET_ERR_IO, "cannot create directory %s: %s", path,
                   strerror(errno));
}

facenet_status fn_mkdir_p(const char *path, mode_t mode, facenet_error *err)
{
    char buf[FN_PATH_MAX];
    size_t len = path ? strlen(path) : 0;

    if (len == 0)
        return fn_fail(err, FACENET_ERR_INVALID_ARGUMENT, "empty directory path");
    if (len >= sizeof buf)
        return fn_fail(err, FACENET_ERR_LIMIT, "directory path is longer than %zu bytes",
                       sizeof buf - 1);
    memcpy(buf, path, len + 1);
    /* Create each parent in turn by cutting the path at every '/'. */
    for (size_t i = 1; i < len; i++) {
        if (buf[i] != '/' || buf[i - 1] == '/')
            continue;
        buf[i] = '\0';
        facenet_status st = make_one_dir(buf, mode, err);
        buf[i] = '/';
        if (st != FACENET_OK)
            return st;
    }
    return make_one_dir(buf, mode, err);
}

void fn_remove_tree(const char *path)
{
    struct stat st;
    DIR *d;
    const struct dirent *e;

    if (!path || lstat(path, &st) != 0)
        return;
    if (!S_ISDIR(st.st_mode)) {
        (void)unlink(path);
        return;
    }
    d = opendir(path);
    if (d) {
        while ((e = readdir(d)) != NULL) {
            char child[FN_PATH_MAX];
            if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
                continue;
            if (fn_join_path(child, sizeof child, path, e->d_name, NULL) == FACENET_OK)
                fn_remove_tree(child);
        }
        closedir(d);
    }
    (void)rmdir(path);
}
