#include "gallery/seal.h"

#include <sodium.h>
#include <string.h>

/* crypto_kdf contexts are exactly 8 characters. */
static const char kdf_context[crypto_kdf_CONTEXTBYTES + 1] = "fngallry";
enum { SUBKEY_SEAL = 1, SUBKEY_TAG = 2 };

static const char ad_template[] = "facenet-gallery/template/v1";
static const char ad_key_check[] = "facenet-gallery/key-check/v1";
static const char ad_subject[] = "facenet-gallery/subject/v1";

void gallery_keys_derive(gallery_keys *keys, const uint8_t master[32])
{
    crypto_kdf_derive_from_key(keys->seal, sizeof keys->seal, SUBKEY_SEAL, kdf_context, master);
    crypto_kdf_derive_from_key(keys->tag, sizeof keys->tag, SUBKEY_TAG, kdf_context, master);
}

static void put_u64(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static void put_u32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

/* Associated data of a template: fixed label, gallery id, row ids and the
 * model id (length-prefixed, truncated to the buffer: model ids are short
 * and validated by the caller). */
static size_t template_ad(uint8_t *ad, size_t cap, const uint8_t gallery_id[GALLERY_ID_BYTES],
                          int64_t template_id, int64_t subject_id, const char *model_id)
{
    size_t n = 0, mlen = strlen(model_id);
    if (mlen > cap - (sizeof ad_template + GALLERY_ID_BYTES + 20))
        mlen = cap - (sizeof ad_template + GALLERY_ID_BYTES + 20);
    memcpy(ad, ad_template, sizeof ad_template);
    n += sizeof ad_template;
    memcpy(ad + n, gallery_id, GALLERY_ID_BYTES);
    n += GALLERY_ID_BYTES;
    put_u64(ad + n, (uint64_t)template_id);
    n += 8;
    put_u64(ad + n, (uint64_t)subject_id);
    n += 8;
    put_u32(ad + n, (uint32_t)mlen);
    n += 4;
    memcpy(ad + n, model_id, mlen);
    return n + mlen;
}

void gallery_seal_template(const gallery_keys *keys, const uint8_t gallery_id[GALLERY_ID_BYTES],
                           int64_t template_id, int64_t subject_id, const char *model_id,
                           const float *v, int dim, uint8_t *out)
{
    uint8_t ad[512];
    size_t ad_len = template_ad(ad, sizeof ad, gallery_id, template_id, subject_id, model_id);
    uint8_t *nonce = out + 1, *ct = out + 1 + crypto_aead_xchacha20poly1305_ietf_NPUBBYTES;
    size_t plain_len = (size_t)dim * 4;

    out[0] = GALLERY_SEAL_VERSION;
    randombytes_buf(nonce, crypto_aead_xchacha20poly1305_ietf_NPUBBYTES);
    /* Serialise as little-endian float32 in the output buffer, then encrypt
     * in place (libsodium allows m == c). */
    for (int i = 0; i < dim; i++) {
        uint32_t bits;
        memcpy(&bits, &v[i], 4);
        put_u32(ct + 4 * (size_t)i, bits);
    }
    crypto_aead_xchacha20poly1305_ietf_encrypt(ct, NULL, ct, plain_len, ad, ad_len, NULL, nonce,
                                               keys->seal);
}

int gallery_open_template(const gallery_keys *keys, const uint8_t gallery_id[GALLERY_ID_BYTES],
                          int64_t template_id, int64_t subject_id, const char *model_id,
                          const uint8_t *blob, size_t len, float *out, int dim)
{
    uint8_t ad[512];
    size_t plain_len = (size_t)dim * 4;
    uint8_t *plain = (uint8_t *)out;

    if (len != gallery_sealed_size(dim) || blob[0] != GALLERY_SEAL_VERSION) {
        memset(out, 0, plain_len);
        return -1;
    }
    size_t ad_len = template_ad(ad, sizeof ad, gallery_id, template_id, subject_id, model_id);
    const uint8_t *nonce = blob + 1, *ct = blob + 1 + crypto_aead_xchacha20poly1305_ietf_NPUBBYTES;
    if (crypto_aead_xchacha20poly1305_ietf_decrypt(plain, NULL, NULL, ct,
                                                   len - 1 - crypto_aead_xchacha20poly1305_ietf_NPUBBYTES,
                                                   ad, ad_len, nonce, keys->seal) != 0) {
        memset(out, 0, plain_len);
        return -1;
    }
    for (int i = 0; i < dim; i++) {
        const uint8_t *p = plain + 4 * (size_t)i;
        uint32_t bits = (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
                        (uint32_t)p[3] << 24;
        memcpy(&out[i], &bits, 4);
    }
    return 0;
}

static size_t key_check_ad(uint8_t *ad, const uint8_t gallery_id[GALLERY_ID_BYTES])
{
    memcpy(ad, ad_key_check, sizeof ad_key_check);
    memcpy(ad + sizeof ad_key_check, gallery_id, GALLERY_ID_BYTES);
    return sizeof ad_key_check + GALLERY_ID_BYTES;
}

void gallery_key_check_make(const gallery_keys *keys, const uint8_t gallery_id[GALLERY_ID_BYTES],
                            uint8_t out[GALLERY_KEY_CHECK_BYTES])
{
    uint8_t ad[sizeof ad_key_check + GALLERY_ID_BYTES];
    uint8_t zeros[32] = {0};
    size_t ad_len = key_check_ad(ad, gallery_id);
    out[0] = GALLERY_SEAL_VERSION;
    randombytes_buf(out + 1, crypto_aead_xchacha20poly1305_ietf_NPUBBYTES);
    crypto_aead_xchacha20poly1305_ietf_encrypt(out + 1 + crypto_aead_xchacha20poly1305_ietf_NPUBBYTES,
                                               NULL, zeros, sizeof zeros, ad, ad_len, NULL,
                                               out + 1, keys->seal);
}

int gallery_key_check_verify(const gallery_keys *keys, const uint8_t gallery_id[GALLERY_ID_BYTES],
                             const uint8_t *blob, size_t len)
{
    uint8_t ad[sizeof ad_key_check + GALLERY_ID_BYTES];
    uint8_t plain[32];
    size_t ad_len = key_check_ad(ad, gallery_id);

    if (len != GALLERY_KEY_CHECK_BYTES || blob[0] != GALLERY_SEAL_VERSION)
        return -1;
    if (crypto_aead_xchacha20poly1305_ietf_decrypt(
            plain, NULL, NULL, blob + 1 + crypto_aead_xchacha20poly1305_ietf_NPUBBYTES,
            len - 1 - crypto_aead_xchacha20poly1305_ietf_NPUBBYTES, ad, ad_len, blob + 1,
            keys->seal) != 0)
        return -1;
    return sodium_is_zero(plain, sizeof plain) ? 0 : -1;
}

static void hash_field(crypto_generichash_state *st, const char *s)
{
    uint8_t len[8];
    if (!s) {
        put_u64(len, UINT64_MAX); /* NULL is not "" */
        crypto_generichash_update(st, len, sizeof len);
        return;
    }
    put_u64(len, strlen(s));
    crypto_generichash_update(st, len, sizeof len);
    crypto_generichash_update(st, (const uint8_t *)s, strlen(s));
}

void gallery_subject_tag(const gallery_keys *keys, const uint8_t gallery_id[GALLERY_ID_BYTES],
                         int64_t subject_id, const char *collection, const char *name,
                         const char *metadata, uint8_t tag[GALLERY_TAG_BYTES])
{
    crypto_generichash_state st;
    uint8_t id[8];
    crypto_generichash_init(&st, keys->tag, sizeof keys->tag, GALLERY_TAG_BYTES);
    crypto_generichash_update(&st, (const uint8_t *)ad_subject, sizeof ad_subject);
    crypto_generichash_update(&st, gallery_id, GALLERY_ID_BYTES);
    put_u64(id, (uint64_t)subject_id);
    crypto_generichash_update(&st, id, sizeof id);
    hash_field(&st, collection);
    hash_field(&st, name);
    hash_field(&st, metadata);
    crypto_generichash_final(&st, tag, GALLERY_TAG_BYTES);
}

int gallery_subject_tag_verify(const gallery_keys *keys, const uint8_t gallery_id[GALLERY_ID_BYTES],
                               int64_t subject_id, const char *collection, const char *name,
                               const char *metadata, const uint8_t *tag, size_t tag_len)
{
    uint8_t want[GALLERY_TAG_BYTES];
    if (tag_len != GALLERY_TAG_BYTES)
        return -1;
    gallery_subject_tag(keys, gallery_id, subject_id, collection, name, metadata, want);
    return sodium_memcmp(want, tag, GALLERY_TAG_BYTES) == 0 ? 0 : -1;
}

enum { SUBKEY_EXPORT = 3, SUBKEY_EXPORT_STREAM = 4 };

void gallery_seal_export(const uint8_t key[32], const uint8_t *plain, size_t len, uint8_t *out)
{
    uint8_t subkey[32];
    crypto_kdf_derive_from_key(subkey, sizeof subkey, SUBKEY_EXPORT, kdf_context, key);
    /* The magic is 8 bytes of a file header, not a C string. */
    memcpy(out, GALLERY_EXPORT_MAGIC, GALLERY_EXPORT_MAGIC_BYTES); /* NOLINT(bugprone-not-null-terminated-result) */
    uint8_t *nonce = out + GALLERY_EXPORT_MAGIC_BYTES;
    randombytes_buf(nonce, crypto_aead_xchacha20poly1305_ietf_NPUBBYTES);
    crypto_aead_xchacha20poly1305_ietf_encrypt(
        nonce + crypto_aead_xchacha20poly1305_ietf_NPUBBYTES, NULL, plain, len, out,
        GALLERY_EXPORT_MAGIC_BYTES, NULL, nonce, subkey);
    sodium_memzero(subkey, sizeof subkey);
}

int gallery_open_export(const uint8_t key[32], const uint8_t *sealed, size_t len, uint8_t *plain)
{
    uint8_t subkey[32];
    if (len < GALLERY_EXPORT_OVERHEAD ||
        memcmp(sealed, GALLERY_EXPORT_MAGIC, GALLERY_EXPORT_MAGIC_BYTES) != 0)
        return -1;
    crypto_kdf_derive_from_key(subkey, sizeof subkey, SUBKEY_EXPORT, kdf_context, key);
    const uint8_t *nonce = sealed + GALLERY_EXPORT_MAGIC_BYTES;
    int rc = crypto_aead_xchacha20poly1305_ietf_decrypt(
        plain, NULL, NULL, nonce + crypto_aead_xchacha20poly1305_ietf_NPUBBYTES,
        len - GALLERY_EXPORT_MAGIC_BYTES - crypto_aead_xchacha20poly1305_ietf_NPUBBYTES, sealed,
        GALLERY_EXPORT_MAGIC_BYTES, nonce, subkey);
    sodium_memzero(subkey, sizeof subkey);
    return rc == 0 ? 0 : -1;
}

void gallery_export_stream_key(const uint8_t key[32], uint8_t subkey[32])
{
    crypto_kdf_derive_from_key(subkey, 32, SUBKEY_EXPORT_STREAM, kdf_context, key);
}
