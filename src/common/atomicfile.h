/*
 * atomicfile.h - write a whole file so that readers see the old or the new
 * content, never a mix: a private temporary file beside it (mode 0600),
 * fsync, rename, fsync of the directory.
 */
#ifndef FACENET_COMMON_ATOMICFILE_H
#define FACENET_COMMON_ATOMICFILE_H

#include <stddef.h>

#include "facenet/facenet.h"

/* `what` names the file's role in messages ("export", "classifier"). */
facenet_status fn_write_file_atomic(const char *path, const void *data, size_t len,
                                    const char *what, facenet_error *err);

#endif
