/*
 * keys.c - API keys: generation, hashed storage, constant-time check.
 */
#include "server/keys.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "common/error.h"
#include "common/fileio.h"

static const char *const scope_names[] = {"detect", "verify", "identify",
                                          "enroll", "embed",  "admin"};
#define N_SCOPES (sizeof scope_names / sizeof scope_names[0])

/* The bit of one scope name text[0..len), or 0 when the name is unknown. */
static unsigned scope_bit(const char *text, size_t len)
{
    for (size_t i = 0; i < N_SCOPES; i++)
        if (strlen(scope_names[i]) == len && strncmp(text, scope_names[i], len) == 0)
            return 1u << i;
    return 0;
}

int fn_scopes_parse(const char *text, unsigned *out)
{
    unsigned mask = 0;
    const char *p = text;

    /* Strict: every comma separates two names, so "", ",detect",
     * "detect," and "detect,,verify" are all refused. */
    for (;;) {
        size_t len = strcspn(p, ",");
        unsigned bit = scope_bit(p, len);
        if (!bit)
            return -1;
        mask |= bit;
        p += len;
        if (*p == '\0')
            break;
        p++;
    }
    *out = mask;
    return 0;
}

void fn_scopes_format(unsigned scopes, char *buf, size_t size)
{
    size_t used = 0;

    if (size == 0)
        return;
    buf[0] = '\0';
    for (size_t i = 0; i < N_SCOPES; i++) {
        if (!(scopes & (1u << i)))
            continue;
        int n = snprintf(buf + used, size - used, "%s%s", used ? "," : "", scope_names[i]);
        if (n < 0 || (size_t)n >= size - used) {
            /* Never leave half a name ("detect,ve"): drop it whole. */
            buf[used] = '\0';
            return;
        }
        used += (size_t)n;
    }
}

static void hash_key(const char *text, size_t len, uint8_t out[FN_KEY_HASH_BYTES])
{
    crypto_generichash(out, FN_KEY_HASH_BYTES, (const unsigned char *)text, len, NULL, 0);
}

static facenet_status parse_key(json_t *item, size_t index, fn_api_key *key,
                                const char *path, facenet_error *err)
{
    const char *id = NULL, *hash = NULL;
    json_t *scopes = NULL, *expires = NULL;
    double rate = 0, burst = 0;
    json_int_t created = 0;
    int revoked = 0;
    size_t bin_len = 0;

    /* "expires" is optional: files written before `keys rotate` lack it. */
    if (json_unpack(item, "{s:s, s:s, s:o, s:F, s:F, s:I, s:b, s?o}", "id", &id, "hash", &hash,
                    "scopes", &scopes, "rate", &rate, "burst", &burst, "created",
                    &created, "revoked", &revoked, "expires", &expires) != 0 ||
        !id || !hash || !json_is_array(scopes))
        return fn_fail(err, FACENET_ERR_FORMAT, "%s: key %zu lacks a field", path, index);
    if (expires && !(json_is_integer(expires) && json_integer_value(expires) >= 0))
        return fn_fail(err, FACENET_ERR_FORMAT, "%s: key %zu has a bad expiry", path, index);
    if (strlen(id) != FN_KEY_ID_LEN || strspn(id, "0123456789abcdef") != FN_KEY_ID_LEN)
        return fn_fail(err, FACENET_ERR_FORMAT, "%s: key %zu has a malformed id", path, index);
    if (sodium_hex2bin(key->hash, sizeof key->hash, hash, strlen(hash), NULL, &bin_len,
                       NULL) != 0 || bin_len != FN_KEY_HASH_BYTES)
        return fn_fail(err, FACENET_ERR_FORMAT, "%s: key %s has a malformed hash", path, id);
    if (!(rate > 0 && rate <= FN_KEY_RATE_MAX && burst >= 1 && burst <= FN_KEY_RATE_MAX))
        return fn_fail(err, FACENET_ERR_FORMAT, "%s: key %s has a bad rate or burst", path, id);
    key->scopes = 0;
    for (size_t i = 0; i < json_array_size(scopes); i++) {
        const char *name = json_string_value(json_array_get(scopes, i));
        unsigned bit = name ? scope_bit(name, strlen(name)) : 0;
        if (!bit)
            return fn_fail(err, FACENET_ERR_FORMAT, "%s: key %s has an unknown scope", path, id);
        key->scopes |= bit;
    }
    if (key->scopes == 0)
        return fn_fail(err, FACENET_ERR_FORMAT, "%s: key %s has no scopes", path, id);
    memcpy(key->id, id, FN_KEY_ID_LEN + 1);
    key->rate = rate;
    key->burst = burst;
    key->created = (long long)created;
    key->expires = expires ? (long long)json_integer_value(expires) : 0;
    key->revoked = revoked;
    return FACENET_OK;
}

/* Parse every entry of the "keys" array into a fresh list; all or nothing. */
static facenet_status parse_keys(json_t *keys, const char *path, fn_keyring *ring,
                                 facenet_error *err)
{
    size_t n = json_array_size(keys);
    fn_api_key *list;

    if (n == 0)
        return FACENET_OK;
    list = calloc(n, sizeof *list);
    if (!list)
        return fn_fail(err, FACENET_ERR_NO_MEMORY, "%s: out of memory", path);
    for (size_t i = 0; i < n; i++) {
        facenet_status st = parse_key(json_array_get(keys, i), i, &list[i], path, err);
        if (st == FACENET_OK) {
            /* Ids name keys in `revoke` and in logs: two keys with one id
             * would make revoking one of them ambiguous. */
            for (size_t j = 0; j < i; j++)
                if (strcmp(list[j].id, list[i].id) == 0) {
                    st = fn_fail(err, FACENET_ERR_FORMAT, "%s: key id %s appears twice", path,
                                 list[i].id);
                    break;
                }
        }
        if (st != FACENET_OK) {
            free(list);
            return st;
        }
    }
    ring->keys = list;
    ring->n = n;
    return FACENET_OK;
}

facenet_status fn_keyring_load(const char *path, fn_keyring *ring, facenet_error *err)
{
    json_error_t jerr;
    json_t *root;
    uint8_t *data = NULL;
    size_t size = 0;
    facenet_status st;

    ring->keys = NULL;
    ring->n = 0;
    st = fn_read_file(path, FN_KEYS_FILE_MAX, &data, &size, err);
    if (st == FACENET_ERR_NOT_FOUND)
        return FACENET_OK;
    if (st != FACENET_OK)
        return st;
    root = json_loadb((const char *)data, size, JSON_REJECT_DUPLICATES, &jerr);
    free(data);
    if (!root)
        return fn_fail(err, FACENET_ERR_FORMAT, "%s: line %d: %s", path, jerr.line, jerr.text);
    if (!json_is_array(json_object_get(root, "keys")))
        st = fn_fail(err, FACENET_ERR_FORMAT, "%s: no \"keys\" array", path);
    else
        st = parse_keys(json_object_get(root, "keys"), path, ring, err);
    json_decref(root);
    return st;
}

static json_t *key_to_json(const fn_api_key *key)
{
    char hex[2 * FN_KEY_HASH_BYTES + 1];
    json_t *scopes = json_array();

    for (size_t i = 0; i < N_SCOPES; i++)
        if (key->scopes & (1u << i))
            json_array_append_new(scopes, json_string(scope_names[i]));
    json_t *item;

    sodium_bin2hex(hex, sizeof hex, key->hash, sizeof key->hash);
    item = json_pack("{s:s, s:s, s:o, s:f, s:f, s:I, s:b}", "id", key->id, "hash", hex,
                     "scopes", scopes, "rate", key->rate, "burst", key->burst, "created",
                     (json_int_t)key->created, "revoked", key->revoked);
    if (item && key->expires > 0 &&
        json_object_set_new(item, "expires", json_integer((json_int_t)key->expires)) != 0) {
        json_decref(item);
        return NULL;
    }
    return item;
}

static int write_all(int fd, const char *data, size_t len)
{
    while (len > 0) {
        ssize_t n = write(fd, data, len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return -1;
        data += n;
        len -= (size_t)n;
    }
    return 0;
}

/* fsync the directory holding path, so that the rename itself survives a
 * crash and not only the new file's contents. */
static void sync_parent_dir(const char *path)
{
    char dir[4096];
    const char *slash = strrchr(path, '/');
    size_t len = slash ? (size_t)(slash - path) : 0;
    int fd;

    if (!slash)
        snprintf(dir, sizeof dir, ".");
    else if (len == 0)
        snprintf(dir, sizeof dir, "/");
    else if (len < sizeof dir)
        snprintf(dir, sizeof dir, "%.*s", (int)len, path);
    else
        return;
    fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd >= 0) {
        (void)fsync(fd);
        close(fd);
    }
}

facenet_status fn_keyring_save(const char *path, const fn_keyring *ring, facenet_error *err)
{
    char tmp[4096];
    json_t *root, *keys;
    char *text;
    int fd, failed;

    if (snprintf(tmp, sizeof tmp, "%s.tmp", path) >= (int)sizeof tmp)
        return fn_fail(err, FACENET_ERR_INVALID_ARGUMENT, "keys file path too long");
    root = json_object();
    keys = json_array();
    failed = !root || !keys;
    for (size_t i = 0; i < ring->n && !failed; i++)
        failed = json_array_append_new(keys, key_to_json(&ring->keys[i])) != 0;
    if (!failed)
        failed = json_object_set_new(root, "keys", keys) != 0;
    else
        json_decref(keys);
    text = failed ? NULL : json_dumps(root, JSON_INDENT(2) | JSON_SORT_KEYS);
    json_decref(root);
    if (!text)
        return fn_fail(err, FACENET_ERR_NO_MEMORY, "%s: out of memory", path);
    /* A stale temp file from a crashed run is ours to replace; O_EXCL then
     * makes sure we never write through a link planted in its place. */
    unlink(tmp);
    fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0) {
        free(text);
        return fn_fail(err, FACENET_ERR_IO, "%s: %s", tmp, strerror(errno));
    }
    failed = write_all(fd, text, strlen(text)) != 0 || write_all(fd, "\n", 1) != 0 ||
             fsync(fd) != 0;
    free(text);
    if (close(fd) != 0 || failed) {
        unlink(tmp);
        return fn_fail(err, FACENET_ERR_IO, "%s: write failed", tmp);
    }
    if (rename(tmp, path) != 0) {
        int saved = errno;
        unlink(tmp);
        return fn_fail(err, FACENET_ERR_IO, "%s: %s", path, strerror(saved));
    }
    sync_parent_dir(path);
    return FACENET_OK;
}

void fn_keyring_free(fn_keyring *ring)
{
    free(ring->keys);
    ring->keys = NULL;
    ring->n = 0;
}

long fn_keyring_find(const fn_keyring *ring, const char *id)
{
    for (size_t i = 0; i < ring->n; i++)
        if (strcmp(ring->keys[i].id, id) == 0)
            return (long)i;
    return -1;
}

facenet_status fn_keyring_create(fn_keyring *ring, unsigned scopes, double rate,
                                 double burst, char key_text[FN_KEY_TEXT_MAX],
                                 facenet_error *err)
{
    uint8_t id_bytes[FN_KEY_ID_LEN / 2], secret[32];
    char id[FN_KEY_ID_LEN + 1], b64[64];
    fn_api_key *grown, *key;

    /* The same bounds fn_keyring_load enforces, so that a created key can
     * always be loaded again. */
    if (scopes == 0 || (scopes & ~FN_SCOPE_ALL) != 0)
        return fn_fail(err, FACENET_ERR_INVALID_ARGUMENT, "a key needs known scopes");
    if (!(rate > 0 && rate <= FN_KEY_RATE_MAX && burst >= 1 && burst <= FN_KEY_RATE_MAX))
        return fn_fail(err, FACENET_ERR_INVALID_ARGUMENT,
                       "rate must be in (0, 1e6] and burst in [1, 1e6]");
    if (sodium_init() < 0)
        return fn_fail(err, FACENET_ERR_INTERNAL, "libsodium failed to initialise");
    do {
        randombytes_buf(id_bytes, sizeof id_bytes);
        sodium_bin2hex(id, sizeof id, id_bytes, sizeof id_bytes);
    } while (fn_keyring_find(ring, id) >= 0);
    randombytes_buf(secret, sizeof secret);
    sodium_bin2base64(b64, sizeof b64, secret, sizeof secret,
                      sodium_base64_VARIANT_URLSAFE_NO_PADDING);
    sodium_memzero(secret, sizeof secret);
    snprintf(key_text, FN_KEY_TEXT_MAX, "fnk_%s_%s", id, b64);
    sodium_memzero(b64, sizeof b64);

    grown = realloc(ring->keys, (ring->n + 1) * sizeof *ring->keys);
    if (!grown) {
        sodium_memzero(key_text, FN_KEY_TEXT_MAX);
        return fn_fail(err, FACENET_ERR_NO_MEMORY, "out of memory");
    }
    ring->keys = grown;
    key = &ring->keys[ring->n++];
    memset(key, 0, sizeof *key);
    memcpy(key->id, id, sizeof key->id);
    hash_key(key_text, strlen(key_text), key->hash);
    key->scopes = scopes;
    key->rate = rate;
    key->burst = burst;
    key->created = (long long)time(NULL);
    return FACENET_OK;
}

int fn_key_is_live(const fn_api_key *key, long long now)
{
    return !key->revoked && (key->expires == 0 || now < key->expires);
}

facenet_status fn_keyring_rotate(fn_keyring *ring, size_t index, long long grace_s,
                                 long long now, char key_text[FN_KEY_TEXT_MAX],
                                 facenet_error *err)
{
    fn_api_key old;
    facenet_status st;

    if (index >= ring->n)
        return fn_fail(err, FACENET_ERR_INVALID_ARGUMENT, "no such key");
    old = ring->keys[index]; /* a copy: create may move the array */
    if (!fn_key_is_live(&old, now))
        return fn_fail(err, FACENET_ERR_INVALID_ARGUMENT,
                       "key %s is already %s: create a new key instead", old.id,
                       old.revoked ? "revoked" : "expired");
    /* A key with an expiry is already being rotated: rotating it again
     * would give it a second successor. */
    if (old.expires != 0)
        return fn_fail(err, FACENET_ERR_INVALID_ARGUMENT,
                       "key %s was already rotated and is in its grace period: revoke it to "
                       "end that now", old.id);
    if (grace_s < 0 || grace_s > FN_KEY_GRACE_MAX)
        return fn_fail(err, FACENET_ERR_INVALID_ARGUMENT,
                       "the grace period must be in [0, %lld] seconds", FN_KEY_GRACE_MAX);
    st = fn_keyring_create(ring, old.scopes, old.rate, old.burst, key_text, err);
    if (st != FACENET_OK)
        return st;
    if (grace_s == 0)
        ring->keys[index].revoked = 1;
    else
        ring->keys[index].expires = now + grace_s;
    return FACENET_OK;
}

const fn_api_key *fn_keyring_check(const fn_keyring *ring, const char *text, size_t len)
{
    return fn_keyring_check_at(ring, text, len, (long long)time(NULL));
}

const fn_api_key *fn_keyring_check_at(const fn_keyring *ring, const char *text, size_t len,
                                      long long now)
{
    char id[FN_KEY_ID_LEN + 1];
    uint8_t hash[FN_KEY_HASH_BYTES];
    long index;

    if (len < 4 + FN_KEY_ID_LEN + 2 || len >= FN_KEY_TEXT_MAX || memcmp(text, "fnk_", 4) != 0 ||
        text[4 + FN_KEY_ID_LEN] != '_')
        return NULL;
    memcpy(id, text + 4, FN_KEY_ID_LEN);
    id[FN_KEY_ID_LEN] = '\0';
    index = fn_keyring_find(ring, id);
    if (index < 0)
        return NULL;
    hash_key(text, len, hash);
    if (sodium_memcmp(hash, ring->keys[index].hash, sizeof hash) != 0 ||
        !fn_key_is_live(&ring->keys[index], now))
        return NULL;
    return &ring->keys[index];
}
