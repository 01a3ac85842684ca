#include "common/atomicfile.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/error.h"

/* The directory holding path, so the rename itself can be made durable. */
static void sync_parent(const char *path)
{
    char dir[PATH_MAX];
    const char *slash = strrchr(path, '/');
    if (!slash)
        snprintf(dir, sizeof dir, ".");
    else if (slash == path)
        snprintf(dir, sizeof dir, "/");
    else
        snprintf(dir, sizeof dir, "%.*s", (int)(slash - path), path);
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd >= 0) {
        (void)fsync(fd); /* best effort: some file systems refuse it */
        close(fd);
    }
}

facenet_status fn_write_file_atomic(const char *path, const void *data, size_t len,
                                    const char *what, facenet_error *err)
{
    char tmp[PATH_MAX];
    if (snprintf(tmp, sizeof tmp, "%s.tmp-XXXXXX", path) >= (int)sizeof tmp)
        return fn_fail(err, FACENET_ERR_INVALID_ARGUMENT, "%s path is too long", what);
    int fd = mkstemp(tmp); /* mode 0600 */
    if (fd < 0)
        return fn_fail(err, FACENET_ERR_IO, "%s %s: %s", what, path, strerror(errno));
    const uint8_t *p = data;
    size_t done = 0;
    facenet_status status = FACENET_OK;
    while (done < len) {
        ssize_t w = write(fd, p + done, len - done);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0) {
            status = fn_fail(err, FACENET_ERR_IO, "%s %s: %s", what, path, strerror(errno));
            break;
        }
        done += (size_t)w;
    }
    if (status == FACENET_OK && fsync(fd) != 0)
        status = fn_fail(err, FACENET_ERR_IO, "%s %s: fsync: %s", what, path, strerror(errno));
    if (close(fd) != 0 && status == FACENET_OK)
        status = fn_fail(err, FACENET_ERR_IO, "%s %s: %s", what, path, strerror(errno));
    if (status == FACENET_OK && rename(tmp, path) != 0)
        status = fn_fail(err, FACENET_ERR_IO, "%s %s: %s", what, path, strerror(errno));
    if (status != FACENET_OK)
        unlink(tmp);
    else
        sync_parent(path);
    return status;
}
