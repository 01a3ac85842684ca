#include "support/gallery_testutil.h"

#include <dirent.h>
#include <math.h>
#include <sodium.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void die(const char *what, const char *detail)
{
    fprintf(stderr, "FAIL: %s: %s\n", what, detail ? detail : "");
    exit(1);
}

char *tg_mkdtemp(void)
{
    const char *base = getenv("TMPDIR");
    char tmpl[4096];
    snprintf(tmpl, sizeof tmpl, "%s/facenet-gallery-test-XXXXXX", base && *base ? base : "/tmp");
    char *dir = mkdtemp(tmpl);
    if (!dir)
        die("mkdtemp", tmpl);
    return strdup(dir);
}

void tg_rmdir(char *dir)
{
    DIR *d = opendir(dir);
    struct dirent *e;
    if (d) {
        while ((e = readdir(d)) != NULL) {
            if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
                continue;
            char *p = tg_path(dir, e->d_name);
            unlink(p);
            free(p);
        }
        closedir(d);
    }
    rmdir(dir);
    free(dir);
}

char *tg_path(const char *dir, const char *name)
{
    size_t len = strlen(dir) + strlen(name) + 2;
    char *p = malloc(len);
    if (!p)
        die("malloc", NULL);
    snprintf(p, len, "%s/%s", dir, name);
    return p;
}

void tg_key(uint8_t key[FACENET_GALLERY_KEY_BYTES], int seed)
{
    for (int i = 0; i < FACENET_GALLERY_KEY_BYTES; i++)
        key[i] = (uint8_t)(seed * 131 + i * 7 + 1);
}

static uint64_t mix(uint64_t x)
{
    x += 0x9E3779B97F4A7C15ull;
    x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
    x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
    return x ^ (x >> 31);
}

static float gauss(uint64_t *state)
{
    double u = ((double)(mix((*state)++) >> 11) + 0.5) / 9007199254740992.0;
    double v = (double)(mix((*state)++) >> 11) / 9007199254740992.0;
    return (float)(sqrt(-2.0 * log(u)) * cos(6.283185307179586 * v));
}

static void normalise(float *v, int dim)
{
    double ss = 0;
    for (int i = 0; i < dim; i++)
        ss += (double)v[i] * v[i];
    for (int i = 0; i < dim; i++)
        v[i] = (float)(v[i] / sqrt(ss));
}

void tg_embedding(float *v, int dim, uint64_t n)
{
    uint64_t state = n * 1000003ull + 17;
    for (int i = 0; i < dim; i++)
        v[i] = gauss(&state);
    normalise(v, dim);
}

void tg_noisy(const float *v, float *out, int dim, float cosine, uint64_t seed)
{
    uint64_t state = seed * 7919ull + 5;
    float noise[4096];
    for (int i = 0; i < dim; i++)
        noise[i] = gauss(&state);
    normalise(noise, dim);
    /* v and a random unit vector are nearly orthogonal in high dimension. */
    float s = sqrtf(1.0f / (cosine * cosine) - 1.0f);
    for (int i = 0; i < dim; i++)
        out[i] = v[i] + s * noise[i];
    normalise(out, dim);
}

uint8_t *tg_read(const char *path, size_t *size)
{
    FILE *f = fopen(path, "rb");
    *size = 0;
    if (!f)
        return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *data = malloc(n > 0 ? (size_t)n : 1);
    if (!data || fread(data, 1, (size_t)n, f) != (size_t)n)
        die("read", path);
    fclose(f);
    *size = (size_t)n;
    return data;
}

int tg_write(const char *path, const void *data, size_t size)
{
    FILE *f = fopen(path, "wb");
    if (!f)
        return -1;
    size_t w = fwrite(data, 1, size, f);
    return fclose(f) == 0 && w == size ? 0 : -1;
}

void tg_file_sha(const char *path, char hex[65])
{
    size_t n;
    uint8_t *data = tg_read(path, &n);
    unsigned char digest[32];
    hex[0] = 0;
    if (!data)
        return;
    crypto_hash_sha256(digest, data, n);
    sodium_bin2hex(hex, 65, digest, sizeof digest);
    free(data);
}

static int contains(const uint8_t *hay, size_t n, const void *needle, size_t len)
{
    if (len == 0 || n < len)
        return 0;
    for (size_t i = 0; i + len <= n; i++)
        if (hay[i] == *(const uint8_t *)needle && memcmp(hay + i, needle, len) == 0)
            return 1;
    return 0;
}

int tg_file_contains(const char *path, const void *needle, size_t len)
{
    static const char *const suffixes[] = {"", "-wal", "-shm", "-journal"};
    char p[4200];
    for (size_t s = 0; s < sizeof suffixes / sizeof suffixes[0]; s++) {
        size_t n;
        snprintf(p, sizeof p, "%s%s", path, suffixes[s]);
        uint8_t *data = tg_read(p, &n);
        int found = data && contains(data, n, needle, len);
        free(data);
        if (found)
            return 1;
    }
    return 0;
}

facenet_gallery *tg_open(const char *path, int seed, unsigned flags)
{
    uint8_t key[FACENET_GALLERY_KEY_BYTES];
    facenet_gallery *g = NULL;
    facenet_error err;
    tg_key(key, seed);
    if (facenet_gallery_open(path, key, TG_MODEL, TG_DIM, flags, &g, &err) != FACENET_OK)
        die("open gallery", err.message);
    /* The synthetic model has no calibrated threshold: give new galleries
     * one, as a user would. */
    if ((flags & FACENET_GALLERY_CREATE) && isnan(facenet_gallery_threshold(g)) &&
        facenet_gallery_set_threshold(g, 0.5f, &err) != FACENET_OK)
        die("set threshold", err.message);
    return g;
}

facenet_status tg_enroll(facenet_gallery *g, const char *subject, uint64_t first, size_t n,
                         int64_t *ids, facenet_error *err)
{
    float *rows = malloc(n * TG_DIM * sizeof *rows);
    if (!rows)
        die("malloc", NULL);
    for (size_t i = 0; i < n; i++)
        tg_embedding(rows + i * TG_DIM, TG_DIM, first + i);
    facenet_gallery_enrollment e = {NULL, subject, NULL, TG_MODEL, "synthetic", rows, n, NULL, 0};
    facenet_status st = facenet_gallery_enroll(g, &e, ids, err);
    free(rows);
    return st;
}

void tg_counts(facenet_gallery *g, size_t *subjects, size_t *templates)
{
    facenet_gallery_stats st;
    facenet_error err;
    if (facenet_gallery_stats_get(g, &st, &err) != FACENET_OK)
        die("stats", err.message);
    *subjects = st.subjects;
    *templates = st.templates;
}

int tg_sql(const char *path, const char *sql)
{
    sqlite3 *db;
    char *msg = NULL;
    if (sqlite3_open(path, &db) != SQLITE_OK)
        die("sqlite3_open", path);
    int rc = sqlite3_exec(db, sql, NULL, NULL, &msg);
    if (rc != SQLITE_OK)
        fprintf(stderr, "tg_sql: %s: %s\n", sql, msg ? msg : "");
    sqlite3_free(msg);
    sqlite3_close(db);
    return rc == SQLITE_OK ? 0 : -1;
}
