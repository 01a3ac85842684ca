/*
 * keys.h - API keys for `facenet serve`: created once, stored hashed.
 *
 * A key looks like "fnk_<id>_<secret>": <id> is 12 hex digits (not a
 * secret; it names the key in logs and `keys list`), <secret> is 32 random
 * bytes in unpadded base64url. The keys file (JSON, mode 0600, replaced
 * atomically) holds for each key its id, the BLAKE2b hash of the whole key
 * string, its scopes, rate and burst, and whether it is revoked. The key
 * itself is printed once by `keys create` and never stored.
 */
#ifndef FACENET_SERVER_KEYS_H
#define FACENET_SERVER_KEYS_H

#include <stddef.h>
#include <stdint.h>

#include "facenet/facenet.h"

#define FN_KEY_ID_LEN 12
#define FN_KEY_HASH_BYTES 32
#define FN_KEY_TEXT_MAX 96

/* Scopes, a bitmask. */
enum {
    FN_SCOPE_DETECT = 1u << 0,
    FN_SCOPE_VERIFY = 1u << 1,
    FN_SCOPE_IDENTIFY = 1u << 2,
    FN_SCOPE_ENROLL = 1u << 3,
    FN_SCOPE_EMBED = 1u << 4,
    FN_SCOPE_ADMIN = 1u << 5
};

typedef struct fn_api_key {
    char id[FN_KEY_ID_LEN + 1];
    uint8_t hash[FN_KEY_HASH_BYTES];
    unsigned scopes;
    double rate;  /* tokens per second */
    double burst; /* bucket size */
    long long created;
    int revoked;
} fn_api_key;

typedef struct fn_keyring {
    fn_api_key *keys;
    size_t n;
} fn_keyring;

/* Parse "detect,verify" into a mask. Returns 0, or -1 on an unknown name. */
int fn_scopes_parse(const char *text, unsigned *out);
/* "detect,verify" into buf. */
void fn_scopes_format(unsigned scopes, char *buf, size_t size);

/* Load the keys file. A missing file is an empty keyring (OK). */
facenet_status fn_keyring_load(const char *path, fn_keyring *ring,
                               facenet_error *err);
/* Write the keyring atomically (temp file, fsync, rename), mode 0600. */
facenet_status fn_keyring_save(const char *path, const fn_keyring *ring,
                               facenet_error *err);
void fn_keyring_free(fn_keyring *ring);

/* Append a new key; writes its text (to be shown once) into key_text. */
facenet_status fn_keyring_create(fn_keyring *ring, unsigned scopes,
                                 double rate, double burst,
                                 char key_text[FN_KEY_TEXT_MAX],
                                 facenet_error *err);

/* The live (not revoked) key matching the presented text, or NULL. The
 * hash comparison is constant-time. */
const fn_api_key *fn_keyring_check(const fn_keyring *ring, const char *text,
                                   size_t len);

/* Index of the key with this id, or -1. */
long fn_keyring_find(const fn_keyring *ring, const char *id);

#endif
