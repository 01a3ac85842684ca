/*
 * embcache.h - a persistent cache of fixed-size float records keyed by
 * the SHA-256 of an image file (used by `facenet validate` for detections
 * and embeddings, so a second run with another metric is instant).
 *
 * One cache file holds one kind of record, named by a key string that
 * says everything the records depend on (model name and SHA-256, flip,
 * library version). A file whose key, record size or layout does not
 * match is ignored (treated as empty) and replaced on save, never trusted.
 *
 * File layout (native byte order; the byte-order mark makes a file from
 * another architecture simply not match):
 *   "FNEMBC01"  u32 0x01020304  u32 key_len  key bytes  u32 dim  u64 count
 *   count x { 32-byte SHA-256, dim x float32 }, sorted by SHA-256.
 *
 * Not thread-safe: one thread owns an emb_cache at a time.
 */
#ifndef FACENET_VERIFY_EMBCACHE_H
#define FACENET_VERIFY_EMBCACHE_H

#include <stddef.h>
#include <stdint.h>

#include "facenet/facenet.h"

#define EMB_CACHE_MAX_DIM 4096
#define EMB_CACHE_MAX_KEY 1024

typedef struct emb_cache {
    char *path;        /* the cache file                                  */
    char *key;
    size_t dim;        /* floats per record                               */
    size_t n, cap;     /* records held / allocated                        */
    size_t n_sorted;   /* records [0, n_sorted) are sorted by hash        */
    uint8_t *hashes;   /* n x 32 bytes                                    */
    float *values;     /* n x dim                                         */
    int ignored_file;  /* 1 when an existing file did not match and was set
                          aside (it is overwritten on save)               */
} emb_cache;

/* Open (or start) the cache file `path` for records of `dim` floats under
 * `key`. A missing file gives an empty cache; an unreadable, truncated or
 * mismatched file gives an empty cache with ignored_file set. Fails only
 * on bad arguments or memory. */
facenet_status emb_cache_open(const char *path, const char *key, size_t dim,
                              emb_cache *cache, facenet_error *err);

/* The record stored for `hash`, or NULL. Valid until the next put. */
const float *emb_cache_find(const emb_cache *cache, const uint8_t hash[32]);

/* Add or replace the record for `hash`. */
facenet_status emb_cache_put(emb_cache *cache, const uint8_t hash[32],
                             const float *values, facenet_error *err);

/* Write the cache atomically: a temporary file in the same directory,
 * flushed, then renamed over the old one. Creates the directory (one
 * level) if needed. */
facenet_status emb_cache_save(emb_cache *cache, facenet_error *err);

void emb_cache_free(emb_cache *cache);

/* 64 hex digits -> 32 bytes. Returns 0, or -1 on a malformed string. */
int emb_cache_hash_from_hex(const char *hex, uint8_t hash[32]);

#endif
