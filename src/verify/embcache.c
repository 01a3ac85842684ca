/*
 * embcache.c - SHA-256-keyed float records in one file (see embcache.h).
 */
#include "verify/embcache.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/error.h"
#include "models/fsutil.h"

static const char cache_magic[8] = {'F', 'N', 'E', 'M', 'B', 'C', '0', '1'};
#define CACHE_BOM 0x01020304u
/* A cache bigger than this is not ours: refuse it before allocating. */
#define CACHE_MAX_RECORDS ((uint64_t)50000000)

int emb_cache_hash_from_hex(const char *hex, uint8_t hash[32])
{
    if (!hex || strlen(hex) != 64)
        return -1;
    for (int i = 0; i < 32; i++) {
        int v = 0;
        for (int k = 0; k < 2; k++) {
            char c = hex[2 * i + k];
            int d = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
            if (d < 0)
                return -1;
            v = v * 16 + d;
        }
        hash[i] = (uint8_t)v;
    }
    return 0;
}

static facenet_status reserve(emb_cache *c, size_t want, facenet_error *err)
{
    if (want <= c->cap)
        return FACENET_OK;
    size_t cap = c->cap ? c->cap : 256;
    while (cap < want)
        cap *= 2;
    if (cap > SIZE_MAX / 32 || cap > SIZE_MAX / sizeof(float) / c->dim)
        return fn_fail(err, FACENET_ERR_LIMIT, "cache %s: too many records", c->path);
    uint8_t *h = realloc(c->hashes, cap * 32);
    if (!h)
        return fn_fail(err, FACENET_ERR_NO_MEMORY, "cache %s: out of memory", c->path);
    c->hashes = h;
    float *v = realloc(c->values, cap * c->dim * sizeof *v);
    if (!v)
        return fn_fail(err, FACENET_ERR_NO_MEMORY, "cache %s: out of memory", c->path);
    c->values = v;
    c->cap = cap;
    return FACENET_OK;
}

static int read_exact(FILE *f, void *buf, size_t size)
{
    return fread(buf, 1, size, f) == size ? 0 : -1;
}

/* Load the file's records when it matches key and dim; any mismatch or
 * damage leaves the cache empty and sets ignored_file. */
static facenet_status load_file(emb_cache *c, facenet_error *err)
{
    FILE *f = fopen(c->path, "rb");
    char magic[8];
    uint32_t bom, key_len, dim;
    uint64_t count;
    char key[EMB_CACHE_MAX_KEY];
    facenet_status st = FACENET_OK;

    if (!f)
        return FACENET_OK; /* no cache yet: empty */
    c->ignored_file = 1;
    if (read_exact(f, magic, 8) || memcmp(magic, cache_magic, 8) != 0 ||
        read_exact(f, &bom, 4) || bom != CACHE_BOM || read_exact(f, &key_len, 4) ||
        key_len != strlen(c->key) || read_exact(f, key, key_len) ||
        memcmp(key, c->key, key_len) != 0 || read_exact(f, &dim, 4) || dim != c->dim ||
        read_exact(f, &count, 8) || count > CACHE_MAX_RECORDS)
        goto done;
    /* The size must be exactly what the header announces. */
    long header = ftell(f);
    if (header < 0 || fseek(f, 0, SEEK_END) != 0)
        goto done;
    long end = ftell(f);
    uint64_t record = 32 + (uint64_t)c->dim * 4;
    if (end < header || (uint64_t)(end - header) != count * record ||
        fseek(f, header, SEEK_SET) != 0)
        goto done;
    if ((st = reserve(c, (size_t)count, err)) != FACENET_OK)
        goto done;
    for (uint64_t i = 0; i < count; i++) {
        if (read_exact(f, c->hashes + i * 32, 32) ||
            read_exact(f, c->values + i * c->dim, c->dim * sizeof(float))) {
            c->n = 0;
            goto done;
        }
        /* Records must be strictly sorted, or lookups would miss. */
        if (i > 0 && memcmp(c->hashes + (i - 1) * 32, c->hashes + i * 32, 32) >= 0) {
            c->n = 0;
            goto done;
        }
        c->n = (size_t)i + 1;
    }
    c->n_sorted = c->n;
    c->ignored_file = 0;
done:
    if (c->ignored_file)
        c->n = c->n_sorted = 0;
    fclose(f);
    return st;
}

facenet_status emb_cache_open(const char *path, const char *key, size_t dim, emb_cache *cache,
                              facenet_error *err)
{
    if (!cache)
        return fn_fail(err, FACENET_ERR_INVALID_ARGUMENT, "cache is NULL");
    memset(cache, 0, sizeof *cache);
    if (!path || !key || dim == 0 || dim > EMB_CACHE_MAX_DIM || strlen(key) >= EMB_CACHE_MAX_KEY)
        return fn_fail(err, FACENET_ERR_INVALID_ARGUMENT,
                       "cache: a path, a key under %d bytes and 1..%d floats are required",
                       EMB_CACHE_MAX_KEY, EMB_CACHE_MAX_DIM);
    cache->path = strdup(path);
    cache->key = strdup(key);
    cache->dim = dim;
    if (!cache->path || !cache->key) {
        emb_cache_free(cache);
        return fn_fail(err, FACENET_ERR_NO_MEMORY, "cache: out of memory");
    }
    facenet_status st = load_file(cache, err);
    if (st != FACENET_OK)
        emb_cache_free(cache);
    return st;
}

/* Index of hash among the sorted records, or -1. */
static long find_sorted(const emb_cache *c, const uint8_t hash[32])
{
    size_t lo = 0, hi = c->n_sorted;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int cmp = memcmp(c->hashes + mid * 32, hash, 32);
        if (cmp == 0)
            return (long)mid;
        if (cmp < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return -1;
}

static long find_index(const emb_cache *c, const uint8_t hash[32])
{
    long i = find_sorted(c, hash);
    if (i >= 0)
        return i;
    for (size_t k = c->n_sorted; k < c->n; k++)
        if (memcmp(c->hashes + k * 32, hash, 32) == 0)
            return (long)k;
    return -1;
}

const float *emb_cache_find(const emb_cache *cache, const uint8_t hash[32])
{
    if (!cache || !hash)
        return NULL;
    long i = find_index(cache, hash);
    return i < 0 ? NULL : cache->values + (size_t)i * cache->dim;
}

facenet_status emb_cache_put(emb_cache *cache, const uint8_t hash[32], const float *values,
                             facenet_error *err)
{
    if (!cache || !hash || !values)
        return fn_fail(err, FACENET_ERR_INVALID_ARGUMENT, "cache, hash and values are required");
    long i = find_index(cache, hash);
    if (i < 0) {
        facenet_status st = reserve(cache, cache->n + 1, err);
        if (st != FACENET_OK)
            return st;
        i = (long)cache->n++;
        memcpy(cache->hashes + (size_t)i * 32, hash, 32);
    }
    memcpy(cache->values + (size_t)i * cache->dim, values, cache->dim * sizeof *values);
    return FACENET_OK;
}

typedef struct sort_item {
    const uint8_t *hash;
    size_t index;
} sort_item;

static int compare_items(const void *a, const void *b)
{
    return memcmp(((const sort_item *)a)->hash, ((const sort_item *)b)->hash, 32);
}

/* Sort every record by hash (an index sort, then a permutation). */
static facenet_status sort_records(emb_cache *c, facenet_error *err)
{
    if (c->n_sorted == c->n)
        return FACENET_OK;
    sort_item *items = malloc(c->n * sizeof *items);
    uint8_t *h = malloc(c->n * 32);
    float *v = malloc(c->n * c->dim * sizeof *v);
    if (!items || !h || !v) {
        free(items);
        free(h);
        free(v);
        return fn_fail(err, FACENET_ERR_NO_MEMORY, "cache %s: out of memory", c->path);
    }
    for (size_t i = 0; i < c->n; i++) {
        items[i].hash = c->hashes + i * 32;
        items[i].index = i;
    }
    qsort(items, c->n, sizeof *items, compare_items);
    for (size_t i = 0; i < c->n; i++) {
        memcpy(h + i * 32, items[i].hash, 32);
        memcpy(v + i * c->dim, c->values + items[i].index * c->dim, c->dim * sizeof *v);
    }
    free(items);
    free(c->hashes);
    free(c->values);
    c->hashes = h;
    c->values = v;
    c->cap = c->n;
    c->n_sorted = c->n;
    return FACENET_OK;
}

facenet_status emb_cache_save(emb_cache *cache, facenet_error *err)
{
    char dir[FN_PATH_MAX], tmp[FN_PATH_MAX];
    facenet_status st;

    if (!cache || !cache->path)
        return fn_fail(err, FACENET_ERR_INVALID_ARGUMENT, "cache is not open");
    if ((st = sort_records(cache, err)) != FACENET_OK)
        return st;
    if (snprintf(dir, sizeof dir, "%s", cache->path) >= (int)sizeof dir ||
        snprintf(tmp, sizeof tmp, "%s.%ld.part", cache->path, (long)getpid()) >= (int)sizeof tmp)
        return fn_fail(err, FACENET_ERR_LIMIT, "cache path %s is too long", cache->path);
    char *slash = strrchr(dir, '/');
    if (slash && slash != dir) {
        *slash = '\0';
        if ((st = fn_mkdir_p(dir, 0755, err)) != FACENET_OK)
            return st;
    }
    FILE *f = fopen(tmp, "wb");
    if (!f)
        return fn_fail(err, FACENET_ERR_IO, "cannot write %s: %s", tmp, strerror(errno));
    uint32_t bom = CACHE_BOM, key_len = (uint32_t)strlen(cache->key), dim = (uint32_t)cache->dim;
    uint64_t count = cache->n;
    int bad = fwrite(cache_magic, 1, 8, f) != 8 || fwrite(&bom, 4, 1, f) != 1 ||
              fwrite(&key_len, 4, 1, f) != 1 || fwrite(cache->key, 1, key_len, f) != key_len ||
              fwrite(&dim, 4, 1, f) != 1 || fwrite(&count, 8, 1, f) != 1;
    for (size_t i = 0; !bad && i < cache->n; i++)
        bad = fwrite(cache->hashes + i * 32, 1, 32, f) != 32 ||
              fwrite(cache->values + i * cache->dim, sizeof(float), cache->dim, f) != cache->dim;
    bad |= fflush(f) != 0 || fsync(fileno(f)) != 0;
    bad |= fclose(f) != 0;
    if (bad || rename(tmp, cache->path) != 0) {
        int e = errno;
        unlink(tmp);
        return fn_fail(err, FACENET_ERR_IO, "cannot write cache %s: %s", cache->path,
                       strerror(e));
    }
    cache->ignored_file = 0;
    return FACENET_OK;
}

void emb_cache_free(emb_cache *cache)
{
    if (!cache)
        return;
    free(cache->path);
    free(cache->key);
    free(cache->hashes);
    free(cache->values);
    memset(cache, 0, sizeof *cache);
}
