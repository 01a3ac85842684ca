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

static const char *const scope_names[] = {"detect", "verify", "identify",
                                          "enroll", "embed",  "admin"};
#define N_SCOPES (sizeof scope_names / sizeof scope_names[0])

int fn_scopes_parse(const char *text, unsigned *out)
{
    unsigned mask = 0;
    const char *p = text;

    while (*p) {
        size_t len = strcspn(p, ",");
        size_t i;
        for (i = 0; i < N_SCOPES; i++)
            if (strlen(scope_names[i]) == len && strncmp(p, scope_names[i], len) == 0)
                break;
        if (i == N_SCOPES)
            return -1;
        mask |= 1u << i;
        p += len;
        if (*p == ',')
            p++;
    }
    if (mask == 0)
        return -1;
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
        if (n < 0 || (size_t)n >= size - used)
            return;
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
    json_t *scopes = NULL;
    double rate = 0, burst = 0;
    json_int_t created = 0;
    int revoked = 0;
    size_t bin_len = 0;

    if (json_unpack(item, "{s:s, s:s, s:o, s:F, s:F, s:I, s:b}", "id", &id, "hash", &hash,
                    "scopes", &scopes, "rate", &rate, "burst", &burst, "created",
                    &created, "revoked", &revoked) != 0 ||
        !id || !hash || !json_is_array(scopes))
        return fn_fail(err, FACENET_ERR_FORMAT, "%s: key %zu lacks a field", path, index);
    if (strlen(id) != FN_KEY_ID_LEN || strspn(id, "0123456789abcdef") != FN_KEY_ID_LEN)
        return fn_fail(err, FACENET_ERR_FORMAT, "%s: key %zu has a malformed id", path, index);
    if (sodium_hex2bin(key->hash, sizeof key->hash, hash, strlen(hash), NULL, &bin_len,
                       NULL) != 0 || bin_len != FN_KEY_HASH_BYTES)
        return fn_fail(err, FACENET_ERR_FORMAT, "%s: key %s has a malformed hash", path, id);
    if (!(rate > 0 && rate <= 1e6 && burst >= 1 && burst <= 1e6))
        return fn_fail(err, FACENET_ERR_FORMAT, "%s: key %s has a bad rate or burst", path, id);
    key->scopes = 0;
    for (size_t i = 0; i < json_array_size(scopes); i++) {
        const char *name = json_string_value(json_array_get(scopes, i));
        unsigned bit = 0;
        if (!name || fn_scopes_parse(name, &bit) != 0)
            return fn_fail(err, FACENET_ERR_FORMAT, "%s: key %s has an unknown scope", path, id);
        key->scopes |= bit;
    }
    memcpy(key->id, id, FN_KEY_ID_LEN + 1);
    key->rate = rate;
    key->burst = burst;
    key->created = (long long)created;
    key->revoked = revoked;
    return FACENET_OK;
}

facenet_status fn_keyring_load(const char *path, fn_keyring *ring, facenet_error *err)
{
    json_error_t jerr;
    json_t *root, *keys;
    facenet_status st = FACENET_OK;

    ring->keys = NULL;
    ring->n = 0;
    if (access(path, F_OK) != 0 && errno == ENOENT)
        return FACENET_OK;
    root = json_load_file(path, JSON_REJECT_DUPLICATES, &jerr);
    if (!root)
        return fn_fail(err, FACENET_ERR_FORMAT, "%s: line %d: %s", path, jerr.line, jerr.text);
    keys = json_object_get(root, "keys");
    if (!json_is_array(keys)) {
        json_decref(root);
        return fn_fail(err, FACENET_ERR_FORMAT, "%s: no \"keys\" array", path);
    }
    if (json_array_size(keys) == 0) {
        json_decref(root);
        return FACENET_OK;
    }
    fn_api_key *list = calloc(json_array_size(keys), sizeof *list);
    if (!list) {
        json_decref(root);
        return fn_fail(err, FACENET_ERR_NO_MEMORY, "%s: out of memory", path);
    }
    ring->keys = list;
    for (size_t i = 0; i < json_array_size(keys) && st == FACENET_OK; i++) {
        st = parse_key(json_array_get(keys, i), i, &list[i], path, err);
        if (st == FACENET_OK)
            ring->n++;
    }
    json_decref(root);
    if (st != FACENET_OK)
        fn_keyring_free(ring);
    return st;
}

static json_t *key_to_json(const fn_api_key *key)
{
    char hex[2 * FN_KEY_HASH_BYTES + 1];
    json_t *scopes = json_array();

    for (size_t i = 0; i < N_SCOPES; i++)
        if (key->scopes & (1u << i))
            json_array_append_new(scopes, json_string(scope_names[i]));
    sodium_bin2hex(hex, sizeof hex, key->hash, sizeof key->hash);
    return json_pack("{s:s, s:s, s:o, s:f, s:f, s:I, s:b}", "id", key->id, "hash", hex,
                     "scopes", scopes, "rate", key->rate, "burst", key->burst, "created",
                     (json_int_t)key->created, "revoked", key->revoked);
}

facenet_status fn_keyring_save(const char *path, const fn_keyring *ring, facenet_error *err)
{
    char tmp[4096];
    json_t *root = json_object(), *keys = json_array();
    char *text;
    int fd;
    size_t len;
    ssize_t written;

    if (snprintf(tmp, sizeof tmp, "%s.tmp", path) >= (int)sizeof tmp) {
        json_decref(root);
        json_decref(keys);
        return fn_fail(err, FACENET_ERR_INVALID_ARGUMENT, "keys file path too long");
    }
    for (size_t i = 0; i < ring->n; i++)
        json_array_append_new(keys, key_to_json(&ring->keys[i]));
    json_object_set_new(root, "keys", keys);
    text = json_dumps(root, JSON_INDENT(2) | JSON_SORT_KEYS);
    json_decref(root);
    if (!text)
        return fn_fail(err, FACENET_ERR_NO_MEMORY, "%s: out of memory", path);
    len = strlen(text);
    unlink(tmp);
    fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL, 0600);
    if (fd < 0) {
        free(text);
        return fn_fail(err, FACENET_ERR_IO, "%s: %s", tmp, strerror(errno));
    }
    written = write(fd, text, len);
    free(text);
    if (written != (ssize_t)len || fsync(fd) != 0) {
        close(fd);
        unlink(tmp);
        return fn_fail(err, FACENET_ERR_IO, "%s: write failed", tmp);
    }
    close(fd);
    if (rename(tmp, path) != 0) {
        unlink(tmp);
        return fn_fail(err, FACENET_ERR_IO, "%s: %s", path, strerror(errno));
    }
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
    if (!grown)
        return fn_fail(err, FACENET_ERR_NO_MEMORY, "out of memory");
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

const fn_api_key *fn_keyring_check(const fn_keyring *ring, const char *text, size_t len)
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
        ring->keys[index].revoked)
        return NULL;
    return &ring->keys[index];
}
