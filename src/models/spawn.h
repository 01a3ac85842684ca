/*
 * spawn.h - run a helper program (npm, tar) without a shell.
 *
 * The program is started with posix_spawnp() from an argv array, so no
 * argument is ever interpreted by a shell. Its stdin is /dev/null and its
 * stdout/stderr go to files (or /dev/null), so a chatty helper can neither
 * block on a full pipe nor write over our own output.
 */
#ifndef FACENET_MODELS_SPAWN_H
#define FACENET_MODELS_SPAWN_H

#include "facenet/facenet.h"

/* Run argv[0] (looked up in PATH when it has no '/') with the arguments
 * argv[1..] (NULL-terminated) and wait for it.
 *   envp         environment for the child; NULL means our own.
 *   stdout_path  file that receives the child's stdout, or NULL for
 *                /dev/null. Created or truncated, mode 0600.
 *   stderr_path  the same for stderr.
 * Returns FACENET_OK when the program ran and exited with status 0.
 * A program that cannot be started, exits non-zero or dies from a signal
 * fails with FACENET_ERR_EXTERNAL and a message naming argv[0] and the
 * reason; *exit_status (may be NULL) receives the exit status, or -1 when
 * the program did not exit normally. */
facenet_status fn_run(const char *const argv[], char *const envp[],
                      const char *stdout_path, const char *stderr_path,
                      int *exit_status, facenet_error *err);

/* Copy the first `max_lines` non-empty lines of the text file `path` into
 * buf, joined by " | " and cut to buf_size - 1 bytes, with anything but
 * printable ASCII replaced by '?'; an empty string when the file is
 * missing or empty. Used to quote a helper's error output. */
void fn_first_lines(const char *path, int max_lines, char *buf, size_t buf_size);

#endif
