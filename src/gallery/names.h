/*
 * names.h - what the gallery accepts as a name, metadata or digest.
 *
 * Names are shown on terminals, written into JSON and used to find
 * subjects, so they are checked at the door: 1..255 bytes, valid UTF-8
 * (shortest form, no surrogates), no control characters (C0, DEL, C1), no
 * leading or trailing white space. SQL metacharacters are fine: every value
 * reaches SQLite as a bound parameter, never as SQL text.
 */
#ifndef FACENET_GALLERY_NAMES_H
#define FACENET_GALLERY_NAMES_H

#include <stddef.h>

#include "facenet/facenet.h"

/* `what` names the field in the message ("subject name"). */
facenet_status gallery_check_name(const char *name, const char *what,
                                  facenet_error *err);

/* NULL is fine; otherwise a JSON object of at most
 * FACENET_GALLERY_METADATA_MAX bytes, valid UTF-8. */
facenet_status gallery_check_metadata(const char *json, facenet_error *err);

/* NULL or "" is fine; otherwise 64 lowercase hex digits. */
facenet_status gallery_check_digest(const char *hex, facenet_error *err);

/* Model ids and preprocessing labels: printable ASCII, 1..127 bytes
 * (preprocess may be empty). */
facenet_status gallery_check_label(const char *s, const char *what, int allow_empty,
                                   facenet_error *err);

/* Length of the valid UTF-8 sequence at s (1..4), or 0 when invalid. */
size_t gallery_utf8_char(const unsigned char *s, size_t avail, unsigned *codepoint);

#endif
