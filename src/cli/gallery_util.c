#include "cli/gallery_util.h"

#include <pthread.h>
#include <sodium.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cli/cli.h"

#define IMAGE_MAX_BYTES ((size_t)128 << 20)

int gcli_exit_code(facenet_status status)
{
    switch (status) {
    case FACENET_ERR_INTEGRITY:
    case FACENET_ERR_NOT_FOUND:
    case FACENET_ERR_UNSUPPORTED: return CLI_EXIT_INPUT;
    default: return cli_exit_code(status);
    }
}

int gcli_report(const facenet_error *err)
{
    fprintf(stderr, "facenet: %s\n", err->message[0] ? err->message : facenet_strerror(err->code));
    return gcli_exit_code(err->code);
}

int gcli_open(const char *path, const char *key_file, const char *model_id, int dim,
              unsigned flags, facenet_gallery **out)
{
    uint8_t key[FACENET_GALLERY_KEY_BYTES];
    facenet_error err;
    facenet_status st = facenet_gallery_key_load(key_file, key, &err);
    if (st != FACENET_OK) {
        /* A missing key is a usage problem, whatever the status says. */
        fprintf(stderr, "facenet: %s\n", err.message);
        return st == FACENET_ERR_NOT_FOUND ? CLI_EXIT_USAGE : gcli_exit_code(st);
    }
    st = facenet_gallery_open(path, key, model_id, dim, flags, out, &err);
    sodium_memzero(key, sizeof key);
    return st == FACENET_OK ? CLI_EXIT_OK : gcli_report(&err);
}

void gcli_model_name(const char *model_id, char *buf, size_t size)
{
    snprintf(buf, size, "%s", model_id);
    char *at = strchr(buf, '@');
    if (at)
        *at = '\0';
}

int gcli_pipeline_open(gcli_pipeline *p, const char *model_dir, const char *model_name, int flip)
{
    facenet_error err;
    memset(p, 0, sizeof *p);
    p->flip = flip;
    if (facenet_detector_create(model_dir, &p->det, &err) != FACENET_OK ||
        facenet_embedder_create(model_dir, model_name, &p->emb, &err) != FACENET_OK) {
        gcli_pipeline_close(p);
        return cli_report(&err);
    }
    const facenet_model_info *info = facenet_embedder_info(p->emb);
    if (facenet_gallery_model_id(info, p->model_id, sizeof p->model_id, &err) != FACENET_OK) {
        gcli_pipeline_close(p);
        return cli_report(&err);
    }
    p->dim = facenet_embedder_dim(p->emb);
    if (facenet_gallery_preprocess_label(p->det, p->emb, flip, p->preprocess,
                                         sizeof p->preprocess, &err) != FACENET_OK) {
        gcli_pipeline_close(p);
        return cli_report(&err);
    }
    return CLI_EXIT_OK;
}

void gcli_pipeline_close(gcli_pipeline *p)
{
    facenet_embedder_free(p->emb);
    facenet_detector_free(p->det);
    p->emb = NULL;
    p->det = NULL;
}

int gcli_read_image(const char *path, uint8_t **bytes, size_t *size, char sha256[65], char *why,
                    size_t why_size)
{
    unsigned char digest[crypto_hash_sha256_BYTES];
    long len;
    FILE *f = fopen(path, "rb");

    *bytes = NULL;
    *size = 0;
    if (!f || fseek(f, 0, SEEK_END) != 0 || (len = ftell(f)) < 0 || fseek(f, 0, SEEK_SET) != 0) {
        snprintf(why, why_size, "%s: cannot read", path);
        if (f)
            fclose(f);
        return CLI_EXIT_INPUT;
    }
    if ((size_t)len > IMAGE_MAX_BYTES) {
        fclose(f);
        snprintf(why, why_size, "%s: larger than %zu MiB", path, IMAGE_MAX_BYTES >> 20);
        return CLI_EXIT_INPUT;
    }
    *bytes = malloc(len ? (size_t)len : 1);
    if (!*bytes || fread(*bytes, 1, (size_t)len, f) != (size_t)len) {
        fclose(f);
        free(*bytes);
        *bytes = NULL;
        snprintf(why, why_size, "%s: cannot read", path);
        return CLI_EXIT_INPUT;
    }
    fclose(f);
    crypto_hash_sha256(digest, *bytes, (unsigned long long)len);
    sodium_bin2hex(sha256, 65, digest, sizeof digest);
    *size = (size_t)len;
    return CLI_EXIT_OK;
}

int gcli_embed_bytes(gcli_pipeline *p, const char *path, const uint8_t *bytes, size_t size,
                     int all_faces, facenet_face **faces, size_t *n_faces, int *picked,
                     float **embeddings, char *why, size_t why_size)
{
    facenet_image *img = NULL;
    facenet_error err;
    int rc = CLI_EXIT_OK;

    *faces = NULL;
    *embeddings = NULL;
    *n_faces = 0;
    *picked = -1;
    facenet_status st = facenet_image_decode(bytes, size, NULL, &img, &err);
    if (st == FACENET_OK)
        st = facenet_detect(p->det, img, NULL, faces, n_faces, &err);
    if (st != FACENET_OK) {
        snprintf(why, why_size, "%s: %s", path, err.message);
        rc = cli_exit_code(st);
        goto out;
    }
    if (*n_faces == 0) {
        snprintf(why, why_size, "%s: no face found", path);
        rc = CLI_EXIT_PROBLEM;
        goto out;
    }
    *picked = facenet_pick_face(*faces, *n_faces, facenet_image_width(img),
                                facenet_image_height(img));
    size_t n_embed = all_faces ? *n_faces : 1;
    const facenet_face *which = all_faces ? *faces : &(*faces)[*picked];
    *embeddings = malloc(n_embed * (size_t)p->dim * sizeof **embeddings);
    if (!*embeddings) {
        snprintf(why, why_size, "%s: out of memory", path);
        rc = CLI_EXIT_INTERNAL;
        goto out;
    }
    st = facenet_embed(p->emb, img, which, n_embed, p->flip, *embeddings, &err);
    if (st != FACENET_OK) {
        snprintf(why, why_size, "%s: %s", path, err.message);
        rc = cli_exit_code(st);
    }
out:
    facenet_image_free(img);
    if (rc != CLI_EXIT_OK) {
        free(*faces);
        free(*embeddings);
        *faces = NULL;
        *embeddings = NULL;
        *n_faces = 0;
    }
    return rc;
}

int gcli_embed_file(gcli_pipeline *p, const char *path, int all_faces, facenet_face **faces,
                    size_t *n_faces, int *picked, float **embeddings, char sha256[65], char *why,
                    size_t why_size)
{
    uint8_t *bytes;
    size_t size;
    *faces = NULL;
    *embeddings = NULL;
    *n_faces = 0;
    *picked = -1;
    int rc = gcli_read_image(path, &bytes, &size, sha256, why, why_size);
    if (rc != CLI_EXIT_OK)
        return rc;
    rc = gcli_embed_bytes(p, path, bytes, size, all_faces, faces, n_faces, picked, embeddings, why,
                          why_size);
    free(bytes);
    return rc;
}

double gcli_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

void gcli_progress(const char *what, size_t done, size_t total, double elapsed, int final)
{
    static const char bar[] = "##############################";
    const int width = 30;
    if (!isatty(STDERR_FILENO))
        return;
    int fill = total ? (int)((double)done / (double)total * width) : width;
    double rate = elapsed > 0 ? (double)done / elapsed : 0;
    double eta = rate > 0 ? (double)(total - done) / rate : 0;
    fprintf(stderr, "\r%s [%.*s%*s] %zu/%zu  %.1f img/s  ETA %02d:%02d%s", what, fill, bar,
            width - fill, "", done, total, rate, (int)eta / 60, (int)eta % 60, final ? "\n" : "");
    fflush(stderr);
}

typedef struct many_ctx {
    const char *model_dir, *model_name;
    int flip, dim;
    char *const *paths;
    size_t n;
    float *out;
    int *rc;
    atomic_size_t next, done;
    atomic_int fatal;
} many_ctx;

static void *many_worker(void *arg)
{
    many_ctx *c = arg;
    gcli_pipeline p;
    char why[FACENET_ERROR_MESSAGE_MAX + 4096], sha[65];
    if (gcli_pipeline_open(&p, c->model_dir, c->model_name, c->flip) != CLI_EXIT_OK) {
        atomic_store(&c->fatal, 1);
        return NULL;
    }
    for (;;) {
        size_t i = atomic_fetch_add(&c->next, 1);
        if (i >= c->n || atomic_load(&c->fatal))
            break;
        facenet_face *faces = NULL;
        float *emb = NULL;
        size_t n_faces = 0;
        int picked;
        c->rc[i] = gcli_embed_file(&p, c->paths[i], 0, &faces, &n_faces, &picked, &emb, sha, why,
                                   sizeof why);
        if (c->rc[i] == CLI_EXIT_OK && emb)
            memcpy(c->out + i * (size_t)c->dim, emb, (size_t)c->dim * sizeof *emb);
        else
            fprintf(stderr, "%sfacenet: %s\n", isatty(STDERR_FILENO) ? "\n" : "", why);
        free(faces);
        free(emb);
        atomic_fetch_add(&c->done, 1);
    }
    gcli_pipeline_close(&p);
    return NULL;
}

int gcli_embed_many(const char *model_dir, const char *model_name, int flip,
                    char *const *paths, size_t n, int threads, const char *label, float **out,
                    int *rc, int *dim, char *model_id)
{
    gcli_pipeline probe;
    many_ctx c;
    int r = gcli_pipeline_open(&probe, model_dir, model_name, flip);
    if (r != CLI_EXIT_OK)
        return r;
    memset(&c, 0, sizeof c);
    c.dim = probe.dim;
    *dim = probe.dim;
    snprintf(model_id, FACENET_GALLERY_MODEL_ID_MAX, "%s", probe.model_id);
    gcli_pipeline_close(&probe);
    c.model_dir = model_dir;
    c.model_name = model_name;
    c.flip = flip;
    c.paths = paths;
    c.n = n;
    c.rc = rc;
    c.out = calloc(n ? n * (size_t)c.dim : 1, sizeof *c.out);
    if (!c.out)
        return CLI_EXIT_INTERNAL;
    if (threads < 1)
        threads = 1;
    if ((size_t)threads > n)
        threads = n ? (int)n : 1;
    pthread_t *tids = calloc((size_t)threads, sizeof *tids);
    int started = 0;
    for (int t = 0; tids && t < threads; t++)
        if (pthread_create(&tids[started], NULL, many_worker, &c) == 0)
            started++;
    if (started == 0) {
        free(tids);
        free(c.out);
        return CLI_EXIT_INTERNAL;
    }
    double t0 = gcli_now();
    while (atomic_load(&c.done) < n && !atomic_load(&c.fatal)) {
        struct timespec ts = {0, 50 * 1000 * 1000};
        nanosleep(&ts, NULL);
        gcli_progress(label, atomic_load(&c.done), n, gcli_now() - t0, 0);
    }
    for (int t = 0; t < started; t++)
        pthread_join(tids[t], NULL);
    free(tids);
    gcli_progress(label, atomic_load(&c.done), n, gcli_now() - t0, 1);
    if (atomic_load(&c.fatal)) {
        free(c.out);
        return CLI_EXIT_MODEL;
    }
    *out = c.out;
    return CLI_EXIT_OK;
}
