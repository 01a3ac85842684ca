/*
 * seal.h - the gallery's cryptography, in one place.
 *
 * The 32-byte master key (from a key file or the environment) is never used
 * directly: two subkeys are derived from it with crypto_kdf, one to seal
 * templates (XChaCha20-Poly1305) and the key check value, one to tag
 * subject rows (keyed BLAKE2b). Each sealed or tagged item is bound to the
 * gallery's random id and to its row ids by the associated data, so that
 * rows cannot be swapped between subjects, galleries or models unnoticed.
 *
 * A sealed template is: version byte (1) | 24-byte nonce | ciphertext of
 * dim little-endian float32 values | 16-byte tag.
 */
#ifndef FACENET_GALLERY_SEAL_H
#define FACENET_GALLERY_SEAL_H

#include <stddef.h>
#include <stdint.h>

#define GALLERY_ID_BYTES 16
#define GALLERY_TAG_BYTES 32
#define GALLERY_SEAL_VERSION 1
#define GALLERY_SEAL_OVERHEAD (1 + 24 + 16)
#define GALLERY_KEY_CHECK_BYTES (GALLERY_SEAL_OVERHEAD + 32)

/* Subkeys; keep them in sodium_malloc'd memory and wipe when done. */
typedef struct gallery_keys {
    uint8_t seal[32];
    uint8_t tag[32];
} gallery_keys;

/* Needs sodium_init() to have run. */
void gallery_keys_derive(gallery_keys *keys, const uint8_t master[32]);

static inline size_t gallery_sealed_size(int dim)
{
    return GALLERY_SEAL_OVERHEAD + (size_t)dim * 4;
}

/* Seal dim floats into out[gallery_sealed_size(dim)]. */
void gallery_seal_template(const gallery_keys *keys,
                           const uint8_t gallery_id[GALLERY_ID_BYTES],
                           int64_t template_id, int64_t subject_id,
                           const char *model_id, const float *v, int dim,
                           uint8_t *out);

/* Open a sealed template into out[dim]. Returns 0, or -1 when the blob has
 * the wrong size or version or fails authentication (out is then zeroed). */
int gallery_open_template(const gallery_keys *keys,
                          const uint8_t gallery_id[GALLERY_ID_BYTES],
                          int64_t template_id, int64_t subject_id,
                          const char *model_id, const uint8_t *blob,
                          size_t len, float *out, int dim);

/* The key check value: a sealed block of zeros, written at creation. */
void gallery_key_check_make(const gallery_keys *keys,
                            const uint8_t gallery_id[GALLERY_ID_BYTES],
                            uint8_t out[GALLERY_KEY_CHECK_BYTES]);
int gallery_key_check_verify(const gallery_keys *keys,
                             const uint8_t gallery_id[GALLERY_ID_BYTES],
                             const uint8_t *blob, size_t len);

/* The tag of a subject row: binds its id, collection name, name and
 * metadata (NULL and "" differ). */
void gallery_subject_tag(const gallery_keys *keys,
                         const uint8_t gallery_id[GALLERY_ID_BYTES],
                         int64_t subject_id, const char *collection,
                         const char *name, const char *metadata,
                         uint8_t tag[GALLERY_TAG_BYTES]);
int gallery_subject_tag_verify(const gallery_keys *keys,
                               const uint8_t gallery_id[GALLERY_ID_BYTES],
                               int64_t subject_id, const char *collection,
                               const char *name, const char *metadata,
                               const uint8_t *tag, size_t tag_len);

/* Sealed exports: magic | 24-byte nonce | XChaCha20-Poly1305 of the JSON,
 * under a subkey of the export key, with the magic as associated data. */
#define GALLERY_EXPORT_MAGIC "FNGEXP1\n"
#define GALLERY_EXPORT_MAGIC_BYTES 8
#define GALLERY_EXPORT_OVERHEAD (GALLERY_EXPORT_MAGIC_BYTES + 24 + 16)

void gallery_seal_export(const uint8_t key[32], const uint8_t *plain, size_t len, uint8_t *out);

/* Streamed sealed exports (version 2): magic | crypto_secretstream_
 * xchacha20poly1305 header | records, each a 4-byte little-endian length
 * and one secretstream message (the magic as associated data); the last
 * record is tagged FINAL, so a truncated stream is detected. The key is a
 * subkey of the export key, distinct from version 1's. */
#define GALLERY_EXPORT2_MAGIC "FNGEXP2\n"
void gallery_export_stream_key(const uint8_t key[32], uint8_t subkey[32]);
/* Returns 0 and fills plain[len - GALLERY_EXPORT_OVERHEAD], or -1. */
int gallery_open_export(const uint8_t key[32], const uint8_t *sealed, size_t len, uint8_t *plain);

#endif
