/*
 * tls.h - the certificate and private key `facenet serve --tls-cert
 * --tls-key` hands to libmicrohttpd (GnuTLS), read and checked at start.
 */
#ifndef FACENET_SERVER_TLS_H
#define FACENET_SERVER_TLS_H

#include <stddef.h>

#include "facenet/facenet.h"

/* PEM files larger than this are refused before they are read. */
#define FN_TLS_FILE_MAX ((size_t)1 << 20)

typedef struct fn_tls_pem {
    char *cert; /* owned, NUL-terminated PEM */
    char *key;  /* owned, NUL-terminated PEM; wiped by fn_tls_pem_free */
} fn_tls_pem;

/* Read both files. The key file must be a regular file that neither its
 * group nor others can read or write (a readable private key is a leaked
 * one: refused, fail closed); both must hold PEM text ("-----BEGIN ").
 * Whether the PEM really is a matching certificate and key is GnuTLS's to
 * say when the daemon starts. On error out holds nothing. */
facenet_status fn_tls_pem_load(const char *cert_path, const char *key_path, fn_tls_pem *out,
                               facenet_error *err);

/* Wipe the key and free both. */
void fn_tls_pem_free(fn_tls_pem *pem);

#endif
