/*
 * keys.h - API keys for `facenet serve`: created once, stored hashed.
 *
 * A key looks like "fnk_<id>_<secret>": <id> is 12 hex digits (not a
 * secret; it names the key in logs and `keys list`), <secret> is 32 random
 * bytes in unpadded base64url. The keys file (JSON, mode 0600, replaced
 * atomically) holds for each key its id, the BLAKE2b hash of the whole key
 * string, its scopes, rate and burst, whether it is revoked, and an
 * optional expiry (set by `keys rotate --grace`: the old key keeps working
 * until then). The key itself is printed once by `keys create` or `keys
 * rotate` and never stored.
 */
#ifndef FACENET_SERVER_KEYS_H
#define FACENET_SERVER_KEYS_H

#include <stddef.h>
#include <stdint.h>

#include "facenet/facenet.h"

#define FN_KEY_ID_LEN 12
#define FN_KEY_HASH_BYTES 32
#define FN_KEY_TEXT_MAX 96
/* Upper bound of rate and burst (the file and the CLI agree on it). */
#define FN_KEY_RATE_MAX 1e6
/* Keys files larger than this are refused before they are read: at about
 * 300 bytes a key, it holds over ten thousand keys. */
#define FN_KEYS_FILE_MAX ((size_t)4 << 20)

/* Scopes, a bitmask. */
enum {
    FN_SCOPE_DETECT = 1u << 0,
    FN_SCOPE_VERIFY = 1u << 1,
    FN_SCOPE_IDENTIFY = 1u << 2,
    FN_SCOPE_ENROLL = 1u << 3,
    FN_SCOPE_EMBED = 1u << 4,
    FN_SCOPE_ADMIN = 1u << 5,
    FN_SCOPE_ALL = (1u << 6) - 1
};

typedef struct fn_api_key {
    char id[FN_KEY_ID_LEN + 1];
    uint8_t hash[FN_KEY_HASH_BYTES];
    unsigned scopes;
    double rate;  /* tokens per second */
    double burst; /* bucket size */
    long long created;
    long long expires; /* Unix time the key stops working; 0: never */
    int revoked;
} fn_api_key;

typedef struct fn_keyring {
    fn_api_key *keys;
    size_t n;
} fn_keyring;

/* Parse "detect,verify" into a mask. Returns 0, or -1 on an unknown or
 * empty name (so "" and "detect," are refused); *out is then untouched. */
int fn_scopes_parse(const char *text, unsigned *out);
/* "detect,verify" into buf; when buf is too small, the names that fit
 * (whole names only). */
void fn_scopes_format(unsigned scopes, char *buf, size_t size);

/* Load the keys file into *ring (which must hold nothing: it is
 * overwritten). A missing file is an empty keyring (OK). On any error
 * (malformed JSON, a bad field, a duplicate id, a file over
 * FN_KEYS_FILE_MAX) *ring is left empty: never half loaded. The caller
 * owns the result and frees it with fn_keyring_free. */
facenet_status fn_keyring_load(const char *path, fn_keyring *ring,
                               facenet_error *err);
/* Write the keyring atomically (temp file, fsync, rename), mode 0600. */
facenet_status fn_keyring_save(const char *path, const fn_keyring *ring,
                               facenet_error *err);
void fn_keyring_free(fn_keyring *ring);

/* Append a new key; writes its text (to be shown once) into key_text.
 * Refuses (INVALID_ARGUMENT) what fn_keyring_load would refuse: no or
 * unknown scopes, rate outside (0, 1e6], burst outside [1, 1e6]. */
facenet_status fn_keyring_create(fn_keyring *ring, unsigned scopes,
                                 double rate, double burst,
                                 char key_text[FN_KEY_TEXT_MAX],
                                 facenet_error *err);

/* The longest --grace of `keys rotate`: 30 days. */
#define FN_KEY_GRACE_MAX (30LL * 24 * 3600)

/* Rotate the live key at `index`: append a new key with the same scopes,
 * rate and burst (its text, to be shown once, into key_text), and retire
 * the old one: revoked now when grace_s is 0, otherwise it expires at
 * now + grace_s. Refuses (INVALID_ARGUMENT) a key that is revoked,
 * expired or already rotated (has an expiry), and grace_s outside
 * [0, FN_KEY_GRACE_MAX]. On error the ring is unchanged. Pointers into
 * ring->keys are invalidated. */
facenet_status fn_keyring_rotate(fn_keyring *ring, size_t index, long long grace_s,
                                 long long now, char key_text[FN_KEY_TEXT_MAX],
                                 facenet_error *err);

/* 1 when the key is neither revoked nor expired at Unix time `now`. */
int fn_key_is_live(const fn_api_key *key, long long now);

/* The live key matching the presented text at Unix time `now`, or NULL.
 * The hash comparison is constant-time. */
const fn_api_key *fn_keyring_check_at(const fn_keyring *ring, const char *text,
                                      size_t len, long long now);
/* fn_keyring_check_at with the current time. */
const fn_api_key *fn_keyring_check(const fn_keyring *ring, const char *text,
                                   size_t len);

/* Index of the key with this id, or -1. */
long fn_keyring_find(const fn_keyring *ring, const char *id);

#endif
