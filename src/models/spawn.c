#include "models/spawn.h"

#include <errno.h>
#include <fcntl.h>
#include <spawn.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/error.h"

/* The process environment, as POSIX defines it; only read here. */
extern char **environ;

static int redirect(posix_spawn_file_actions_t *fa, int fd, const char *path)
{
    if (!path)
        return posix_spawn_file_actions_addopen(fa, fd, "/dev/null", O_WRONLY, 0);
    return posix_spawn_file_actions_addopen(fa, fd, path,
                                            O_WRONLY | O_CREAT | O_TRUNC, 0600);
}

facenet_status fn_run(const char *const argv[], char *const envp[],
                      const char *stdout_path, const char *stderr_path,
                      int *exit_status, facenet_error *err)
{
    posix_spawn_file_actions_t fa;
    pid_t pid;
    int status = 0;
    int rc;

    if (exit_status)
        *exit_status = -1;
    if (!argv || !argv[0] || !argv[0][0])
        return fn_fail(err, FACENET_ERR_INVALID_ARGUMENT, "fn_run: no program");

    rc = posix_spawn_file_actions_init(&fa);
    if (rc != 0)
        return fn_fail(err, FACENET_ERR_NO_MEMORY, "%s: cannot prepare to start it: %s",
                       argv[0], strerror(rc));
    rc = posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
    if (rc == 0)
        rc = redirect(&fa, 1, stdout_path);
    if (rc == 0)
        rc = redirect(&fa, 2, stderr_path);
    if (rc == 0) {
        /* posix_spawnp's argv/envp are not const-qualified for historical
         * reasons; it does not modify them. */
        rc = posix_spawnp(&pid, argv[0], &fa, NULL, (char *const *)argv,
                          envp ? envp : environ);
    }
    posix_spawn_file_actions_destroy(&fa);
    if (rc != 0) {
        return fn_fail(err, FACENET_ERR_EXTERNAL, "cannot run '%s': %s%s", argv[0],
                       strerror(rc),
                       rc == ENOENT ? " (is it installed and in PATH?)" : "");
    }

    while (waitpid(pid, &status, 0) < 0) {
        if (errno != EINTR)
            return fn_fail(err, FACENET_ERR_EXTERNAL, "waiting for '%s': %s",
                           argv[0], strerror(errno));
    }
    if (WIFEXITED(status)) {
        if (exit_status)
            *exit_status = WEXITSTATUS(status);
        if (WEXITSTATUS(status) == 0)
            return FACENET_OK;
        return fn_fail(err, FACENET_ERR_EXTERNAL, "'%s' exited with status %d",
                       argv[0], WEXITSTATUS(status));
    }
    if (WIFSIGNALED(status))
        return fn_fail(err, FACENET_ERR_EXTERNAL, "'%s' was killed by signal %d",
                       argv[0], WTERMSIG(status));
    return fn_fail(err, FACENET_ERR_EXTERNAL, "'%s' stopped abnormally", argv[0]);
}

void fn_first_lines(const char *path, int max_lines, char *buf, size_t buf_size)
{
    char head[4096];
    size_t got, n = 0;
    int lines = 0;
    int at_line_start = 1;
    FILE *f;

    if (!buf || buf_size == 0)
        return;
    buf[0] = '\0';
    f = fopen(path, "rb");
    if (!f)
        return;
    /* The first lines say what went wrong (npm ends with a pointer to its
     * log file, tar with a generic "exiting with failure"). */
    got = fread(head, 1, sizeof head, f);
    (void)fclose(f); /* read-only: nothing to lose */
    for (size_t i = 0; i < got && n + 1 < buf_size; i++) {
        unsigned char c = (unsigned char)head[i];
        if (c == '\n' || c == '\r') {
            if (!at_line_start && ++lines >= max_lines)
                break;
            at_line_start = 1;
            continue;
        }
        if (at_line_start && n > 0) {
            if (n + 4 >= buf_size)
                break;
            memcpy(buf + n, " | ", 3);
            n += 3;
        }
        at_line_start = 0;
        buf[n++] = (c >= 32 && c < 127) ? (char)c : '?';
    }
    buf[n] = '\0';
}
