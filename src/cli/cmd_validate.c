/*
 * cmd_validate.c - `facenet validate`: face verification accuracy on LFW
 * (or any pairs file in LFW format), by davidsandberg/facenet's protocol.
 *
 * The run has four stages:
 *   1. read the pairs, map them to image files, and check that every file
 *      exists before any work starts (a wrong folder is reported at once);
 *   2. hash every image and look its detection and embeddings up in the
 *      cache, keyed by the image's SHA-256 and the model (+ flip);
 *   3. detect, pick (facenet's rule) and embed what the cache lacks, on N
 *      worker threads with one detector and embedder each;
 *   4. evaluate (verify/lfw.h), print, and write the JSON report, the ROC
 *      plot and, with --calibrate, the thresholds file.
 *
 * An image in which MTCNN finds no face is not dropped: as in the reference
 * run, it is aligned at fixed landmark positions. Ours are the mean of the
 * picked faces' landmarks over every image of this run (as fractions of
 * the image size, so any image size works), and its embedding is never
 * cached, since it depends on the run.
 */
#include <errno.h>
#include <getopt.h>
#include <jansson.h>
#include <limits.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "cli/cli.h"
#include "cli/cli_util.h"
#include "common/error.h"
#include "common/fileio.h"
#include "align/align.h"
#include "verify/embcache.h"
#include "verify/fusion.h"
#include "verify/lfw.h"
#include "verify/rocplot.h"
#include "verify/thresholds.h"

static const char validate_usage[] =
    "usage: facenet validate --lfw-dir DIR [OPTIONS]\n"
    "\n"
    "Face verification accuracy on LFW, or on any folder in LFW layout\n"
    "(DIR/NAME/NAME_0001.jpg) with a pairs file in LFW format, following\n"
    "davidsandberg/facenet's validate_on_lfw: pairs in file order, 10 folds\n"
    "without shuffling, each fold's threshold chosen on the other nine,\n"
    "VAL@FAR=1e-3 by interpolation, AUC and EER from the fold-averaged ROC.\n"
    "\n"
    "  --lfw-dir DIR       image folder (required)\n"
    "  --pairs FILE        pairs file (default DIR/pairs.txt)\n"
    "  --model NAME        mobilefacenet (default), dlib-resnet, dlib-resnet-tfjs,\n"
    "                      or ensemble (MobileFaceNet + dlib ResNet, concatenated)\n"
    "  --ensemble-weight W the ensemble's dlib weight, fixed (0..10; 1 = equal)\n"
    "  --fusion METHOD     else how each fold chooses the dlib weight on its nine\n"
    "                      training folds (never the test fold): separation\n"
    "                      (default; each model's distance divided by the gap\n"
    "                      between its different- and same-person means),\n"
    "                      threshold (divided by its own threshold), logistic\n"
    "                      (logistic regression on the two distances), or\n"
    "                      search (best training accuracy over 0, 0.1, ..., 3)\n"
    "  --flip              add the mirrored face's embedding\n"
    "  --jitter N          dlib's num_jitters: embed N jittered copies of the dlib\n"
    "                      chip (fixed seed) and average them (dlib models, and\n"
    "                      the ensemble's dlib half; 1..100, default off)\n"
    "  --subtract-mean     subtract the training folds' mean embedding\n"
    "  --metric M          sqeuclidean (default; squared L2 of unit embeddings)\n"
    "                      or cosine (facenet's arccos(similarity)/pi)\n"
    "  --folds N           number of folds (default 10)\n"
    "  --out FILE          write a JSON report\n"
    "  --roc FILE          write the ROC curve as a PNG\n"
    "  --calibrate         write this model's thresholds (best accuracy and\n"
    "                      FAR 1e-3, measured on all pairs) to the thresholds file\n"
    "  --thresholds FILE   thresholds file (default MODEL_DIR/thresholds.json)\n"
    "  --threads N         worker threads (default: all cores)\n"
    "  --cache DIR         embedding cache (default\n"
    "                      $XDG_CACHE_HOME/facenet/embeddings)\n"
    "  --no-cache          neither read nor write the cache\n"
    "  --model-dir DIR     model cache (default: facenet models path)\n"
    "\n"
    "Exit codes: 0 done, 2 usage, 3 models missing or altered, 4 the pairs\n"
    "file is malformed or an image is missing or unreadable.\n";

#define MAX_MODELS 2
/* Detection record: n_faces, width, height, box[4], score, landmarks[10]. */
#define DET_FLOATS 18
#define DET_N 0
#define DET_W 1
#define DET_H 2
#define DET_BOX 3
#define DET_SCORE 7
#define DET_LM 8

typedef struct vimage {
    char *path;
    size_t line;             /* first pairs line that uses it      */
    uint8_t sha[32];
    int have_det, new_det;
    float det[DET_FLOATS];
    int have_emb[MAX_MODELS], new_emb[MAX_MODELS];
    int fallback;            /* no face: embedded at mean landmarks */
    int failed;
    char error[FACENET_ERROR_MESSAGE_MAX];
} vimage;

typedef struct vctx {
    vimage *images;
    size_t n_images;
    int n_models;
    const facenet_model_info *models[MAX_MODELS];
    int dims[MAX_MODELS];
    float *emb[MAX_MODELS];  /* n_images x dims[m] */
    int flip;
    int jitter[MAX_MODELS];  /* jittered copies per model; 0: none */
    const char *model_dir;
    size_t *work;            /* indices of images that need computing */
    size_t n_work;
    atomic_size_t next, finished;
    atomic_int fatal;
    char fatal_message[FACENET_ERROR_MESSAGE_MAX];
} vctx;

typedef struct voptions {
    const char *lfw_dir, *pairs, *model, *out, *roc, *cache_dir, *model_dir_opt;
    const char *thresholds;
    int flip, calibrate, no_cache, threads, jitter;
    double ensemble_weight; /* dlib's weight; < 0: chosen per fold */
    int fusion;             /* how it is chosen: an lfw_fusion, or 0 = search */
    lfw_options lfw;
} voptions;

static double now_seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

/* ------------------------------------------------------------------------ */
/* Stage 1: pairs -> unique image files                                     */
/* ------------------------------------------------------------------------ */

typedef struct side_ref {
    char *path;
    size_t pair, side;
} side_ref;

static int compare_refs(const void *a, const void *b)
{
    const side_ref *x = a, *y = b;
    int c = strcmp(x->path, y->path);
    if (c)
        return c;
    return x->pair < y->pair ? -1 : x->pair > y->pair;
}

static int is_dir(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

static int is_file(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

/* The image file of one side of a pair: NAME_NNNN.jpg, else .png (as
 * facenet's add_extension). Writes the .jpg name when neither exists. */
static int resolve_image(const char *dir, const char *name, int number, char *buf, size_t size)
{
    if (lfw_image_path(dir, name, number, "jpg", buf, size) != 0)
        return -1;
    if (is_file(buf))
        return 0;
    if (lfw_image_path(dir, name, number, "png", buf, size) != 0)
        return -1;
    if (is_file(buf))
        return 0;
    return lfw_image_path(dir, name, number, "jpg", buf, size) != 0 ? -1 : 1;
}

/* Explain missing images: a wrong folder when none of the people's folders
 * exist, else the first missing files with their pairs lines. */
static void report_missing(const voptions *o, const lfw_pairs *pairs, const side_ref *refs,
                           size_t n_refs)
{
    size_t dirs_found = 0, missing = 0;
    char buf[PATH_MAX];
    for (size_t i = 0; i < pairs->n; i++)
        for (int s = 0; s < 2; s++) {
            snprintf(buf, sizeof buf, "%s/%s", o->lfw_dir, pairs->pairs[i].name[s]);
            dirs_found += is_dir(buf);
        }
    if (dirs_found == 0) {
        fprintf(stderr,
                "facenet validate: %s does not look like an LFW folder: %s/%s/ does not exist "
                "(expected DIR/NAME/NAME_0001.jpg for each name in %s)\n",
                o->lfw_dir, o->lfw_dir, pairs->pairs[0].name[0], o->pairs);
        return;
    }
    for (size_t i = 0; i < n_refs; i++) {
        if (!refs[i].path || refs[i].path[0] != '!')
            continue;
        if (++missing <= 10)
            fprintf(stderr, "facenet validate: %s line %zu: image %s not found (nor .png)\n",
                    o->pairs, pairs->pairs[refs[i].pair].line, refs[i].path + 1);
    }
    if (missing > 10)
        fprintf(stderr, "facenet validate: ... and %zu more missing images\n", missing - 10);
}

/* Fill ctx->images with the distinct files and pair_image[2 * i + s] with
 * the image index of side s of pair i. Returns an exit code. */
static int collect_images(const voptions *o, const lfw_pairs *pairs, vctx *ctx,
                          size_t *pair_image)
{
    size_t n_refs = pairs->n * 2, missing = 0;
    side_ref *refs = calloc(n_refs, sizeof *refs);
    char buf[PATH_MAX];
    int rc = CLI_EXIT_OK;

    if (!refs)
        return CLI_EXIT_INTERNAL;
    for (size_t i = 0; i < pairs->n && rc == CLI_EXIT_OK; i++)
        for (size_t s = 0; s < 2; s++) {
            const lfw_pair *p = &pairs->pairs[i];
            int r = resolve_image(o->lfw_dir, p->name[s], p->number[s], buf, sizeof buf);
            if (r < 0) {
                fprintf(stderr, "facenet validate: %s line %zu: image path too long\n", o->pairs,
                        p->line);
                rc = CLI_EXIT_INPUT;
                break;
            }
            /* A leading '!' marks a missing file (no real path starts so
             * here: it always starts with the folder given). */
            size_t len = strlen(buf) + 2;
            refs[2 * i + s].path = malloc(len);
            if (!refs[2 * i + s].path) {
                rc = CLI_EXIT_INTERNAL;
                break;
            }
            snprintf(refs[2 * i + s].path, len, "%s%s", r ? "!" : "", buf);
            refs[2 * i + s].pair = i;
            refs[2 * i + s].side = s;
            missing += r != 0;
        }
    if (rc == CLI_EXIT_OK && missing) {
        report_missing(o, pairs, refs, n_refs);
        rc = CLI_EXIT_INPUT;
    }
    if (rc == CLI_EXIT_OK) {
        qsort(refs, n_refs, sizeof *refs, compare_refs);
        ctx->images = calloc(n_refs, sizeof *ctx->images);
        if (!ctx->images)
            rc = CLI_EXIT_INTERNAL;
    }
    for (size_t i = 0; rc == CLI_EXIT_OK && i < n_refs; i++) {
        if (ctx->n_images == 0 || strcmp(refs[i].path, ctx->images[ctx->n_images - 1].path) != 0) {
            vimage *im = &ctx->images[ctx->n_images++];
            im->path = refs[i].path;
            im->line = pairs->pairs[refs[i].pair].line;
            refs[i].path = NULL; /* now owned by the image */
        }
        pair_image[2 * refs[i].pair + refs[i].side] = ctx->n_images - 1;
    }
    for (size_t i = 0; i < n_refs; i++)
        free(refs[i].path);
    free(refs);
    return rc;
}

/* ------------------------------------------------------------------------ */
/* Stage 2: the cache                                                       */
/* ------------------------------------------------------------------------ */

typedef struct vcache {
    int enabled;
    emb_cache det, emb[MAX_MODELS];
} vcache;

static int default_cache_dir(char *buf, size_t size)
{
    const char *xdg = getenv("XDG_CACHE_HOME"), *home = getenv("HOME");
    int n;
    if (xdg && *xdg)
        n = snprintf(buf, size, "%s/facenet/embeddings", xdg);
    else if (home && *home)
        n = snprintf(buf, size, "%s/.cache/facenet/embeddings", home);
    else
        return -1;
    return n < 0 || (size_t)n >= size ? -1 : 0;
}

static const char *sha_of(const char *model_name)
{
    const facenet_model_info *info = facenet_model_find(model_name);
    return info ? info->sha256 : "?";
}

/* Is reduced precision asked for ($FACENET_PRECISION other than fp32, or
 * $FACENET_BACKEND=avx2-int8)? Its embeddings, and even the faces found,
 * differ from fp32's, and the cache keys name models, not precisions. */
static int reduced_precision_requested(void)
{
    const char *precision = getenv("FACENET_PRECISION");
    const char *backend = getenv("FACENET_BACKEND");
    return (precision && *precision && strcmp(precision, "fp32") != 0) ||
           (backend && strstr(backend, "int8"));
}

static int open_caches(const voptions *o, const vctx *ctx, vcache *c)
{
    char dir[PATH_MAX], path[PATH_MAX + 64], key[EMB_CACHE_MAX_KEY];
    facenet_error err;

    memset(c, 0, sizeof *c);
    if (o->no_cache)
        return 0;
    if (reduced_precision_requested()) {
        /* Never mix them into (or replace) the fp32 cache. */
        fprintf(stderr, "facenet validate: FACENET_PRECISION/FACENET_BACKEND ask for reduced "
                        "precision; running without the embedding cache\n");
        return 0;
    }
    if (o->cache_dir)
        snprintf(dir, sizeof dir, "%s", o->cache_dir);
    else if (default_cache_dir(dir, sizeof dir) != 0) {
        fprintf(stderr, "facenet validate: no cache directory (set --cache or HOME); "
                        "running without a cache\n");
        return 0;
    }
    /* The key names everything a record depends on. */
    snprintf(key, sizeof key,
             "mtcnn detection, picked face; facenet %s; pnet %s rnet %s onet %s; "
             "minsize 20, thresholds 0.6 0.7 0.7, factor 0.709",
             FACENET_VERSION_STRING, sha_of("mtcnn-pnet"), sha_of("mtcnn-rnet"),
             sha_of("mtcnn-onet"));
    snprintf(path, sizeof path, "%s/mtcnn.bin", dir);
    if (emb_cache_open(path, key, DET_FLOATS, &c->det, &err) != FACENET_OK)
        return cli_report(&err), -1;
    for (int m = 0; m < ctx->n_models; m++) {
        /* Jitter joins key and file name only when on, so that the caches
         * of plain runs stay valid. */
        char jit_key[96] = "", jit_file[32] = "";
        if (ctx->jitter[m] > 0) {
            snprintf(jit_key, sizeof jit_key, "; jitter %d seed %016llx", ctx->jitter[m],
                     (unsigned long long)ALIGN_JITTER_SEED);
            snprintf(jit_file, sizeof jit_file, "-jitter%d", ctx->jitter[m]);
        }
        snprintf(key, sizeof key, "embedding of the picked face; facenet %s; %s %s; flip %d%s",
                 FACENET_VERSION_STRING, ctx->models[m]->name, ctx->models[m]->sha256, ctx->flip,
                 jit_key);
        snprintf(path, sizeof path, "%s/%s%s%s.bin", dir, ctx->models[m]->name,
                 ctx->flip ? "-flip" : "", jit_file);
        if (emb_cache_open(path, key, (size_t)ctx->dims[m], &c->emb[m], &err) != FACENET_OK)
            return cli_report(&err), -1;
    }
    c->enabled = 1;
    /* Say so when a cache file was set aside: the run will be slow. */
    if (c->det.ignored_file)
        fprintf(stderr, "facenet validate: %s is from another version or damaged; "
                        "recomputing and replacing it\n", c->det.path);
    for (int m = 0; m < ctx->n_models; m++)
        if (c->emb[m].ignored_file)
            fprintf(stderr, "facenet validate: %s is from another version or damaged; "
                            "recomputing and replacing it\n", c->emb[m].path);
    return 0;
}

static void close_caches(vcache *c)
{
    emb_cache_free(&c->det);
    for (int m = 0; m < MAX_MODELS; m++)
        emb_cache_free(&c->emb[m]);
}

/* Hash every image and take what the cache has. Returns an exit code. */
static int lookup_images(vctx *ctx, const vcache *c)
{
    facenet_error err;
    char hex[65];
    for (size_t i = 0; i < ctx->n_images; i++) {
        vimage *im = &ctx->images[i];
        if (fn_sha256_file(im->path, hex, &err) != FACENET_OK ||
            emb_cache_hash_from_hex(hex, im->sha) != 0) {
            fprintf(stderr, "facenet validate: %s\n", err.message);
            return CLI_EXIT_INPUT;
        }
        if (!c->enabled)
            continue;
        const float *det = emb_cache_find(&c->det, im->sha);
        if (det) {
            memcpy(im->det, det, sizeof im->det);
            im->have_det = 1;
        }
        for (int m = 0; m < ctx->n_models; m++) {
            const float *e = emb_cache_find(&c->emb[m], im->sha);
            if (e) {
                memcpy(ctx->emb[m] + i * (size_t)ctx->dims[m], e,
                       (size_t)ctx->dims[m] * sizeof *e);
                im->have_emb[m] = 1;
            }
        }
    }
    return CLI_EXIT_OK;
}

static void store_results(const vctx *ctx, vcache *c)
{
    facenet_error err;
    int bad = 0;
    if (!c->enabled)
        return;
    for (size_t i = 0; i < ctx->n_images && !bad; i++) {
        const vimage *im = &ctx->images[i];
        if (im->new_det)
            bad |= emb_cache_put(&c->det, im->sha, im->det, &err) != FACENET_OK;
        for (int m = 0; m < ctx->n_models && !bad; m++)
            if (im->new_emb[m])
                bad |= emb_cache_put(&c->emb[m], im->sha, ctx->emb[m] + i * (size_t)ctx->dims[m],
                                     &err) != FACENET_OK;
    }
    if (!bad)
        bad |= emb_cache_save(&c->det, &err) != FACENET_OK;
    for (int m = 0; m < ctx->n_models && !bad; m++)
        bad |= emb_cache_save(&c->emb[m], &err) != FACENET_OK;
    if (bad) /* the results stand; only the next run is slower */
        fprintf(stderr, "facenet validate: warning: cache not saved: %s\n", err.message);
}

/* ------------------------------------------------------------------------ */
/* Stage 3: detect and embed                                                */
/* ------------------------------------------------------------------------ */

typedef struct vworker {
    facenet_detector *det;
    facenet_embedder *emb[MAX_MODELS];
} vworker;

static void face_from_record(const float *det, facenet_face *face)
{
    memcpy(face->box, det + DET_BOX, sizeof face->box);
    face->score = det[DET_SCORE];
    for (int k = 0; k < 5; k++) {
        face->landmarks[k][0] = det[DET_LM + 2 * k];
        face->landmarks[k][1] = det[DET_LM + 2 * k + 1];
    }
}

static void record_detection(const facenet_image *img, const facenet_face *faces, size_t n,
                             float *det)
{
    memset(det, 0, DET_FLOATS * sizeof *det);
    det[DET_N] = (float)n;
    det[DET_W] = (float)facenet_image_width(img);
    det[DET_H] = (float)facenet_image_height(img);
    if (n == 0)
        return;
    int pick = facenet_pick_face(faces, n, facenet_image_width(img), facenet_image_height(img));
    const facenet_face *f = &faces[pick];
    memcpy(det + DET_BOX, f->box, sizeof f->box);
    det[DET_SCORE] = f->score;
    for (int k = 0; k < 5; k++) {
        det[DET_LM + 2 * k] = f->landmarks[k][0];
        det[DET_LM + 2 * k + 1] = f->landmarks[k][1];
    }
}

/* An embedder for model m with the run's jitter. */
static facenet_status create_embedder(const vctx *ctx, int m, facenet_embedder **out,
                                      facenet_error *err)
{
    facenet_status st = facenet_embedder_create(ctx->model_dir, ctx->models[m]->name, out, err);
    if (st == FACENET_OK && (st = facenet_embedder_set_jitter(*out, ctx->jitter[m], err)) !=
                                FACENET_OK) {
        facenet_embedder_free(*out);
        *out = NULL;
    }
    return st;
}

static facenet_status worker_embedder(vctx *ctx, vworker *w, int m, facenet_error *err)
{
    if (w->emb[m])
        return FACENET_OK;
    facenet_status st = create_embedder(ctx, m, &w->emb[m], err);
    /* One thread per embedder, like the detectors: the workers fill the
     * cores (with $FACENET_THREADS=2 each embedder used to start a pool of
     * its own, four busy threads on two cores). */
    if (st == FACENET_OK)
        st = facenet_embedder_set_threads(w->emb[m], 1, err);
    return st;
}

/* Compute what image i lacks. Model load failures are fatal for the run;
 * a bad image only fails itself. */
static void process_image(vctx *ctx, vworker *w, size_t i)
{
    vimage *im = &ctx->images[i];
    facenet_image *img = NULL;
    facenet_face *faces = NULL, face;
    size_t n = 0;
    facenet_error err;
    facenet_status st = facenet_image_load(im->path, NULL, &img, &err);

    if (st != FACENET_OK)
        goto fail;
    if (!im->have_det) {
        /* One thread per detector: the workers already fill the cores. */
        if (!w->det && (facenet_detector_create(ctx->model_dir, &w->det, &err) != FACENET_OK ||
                        facenet_detector_set_threads(w->det, 1, &err) != FACENET_OK))
            goto fatal;
        if (facenet_detect(w->det, img, NULL, &faces, &n, &err) != FACENET_OK)
            goto fail;
        record_detection(img, faces, n, im->det);
        im->have_det = im->new_det = 1;
    }
    if (im->det[DET_N] < 1)
        goto done; /* no face: embedded later, at the mean landmarks */
    face_from_record(im->det, &face);
    for (int m = 0; m < ctx->n_models; m++) {
        if (im->have_emb[m])
            continue;
        if (worker_embedder(ctx, w, m, &err) != FACENET_OK)
            goto fatal;
        st = facenet_embed(w->emb[m], img, &face, 1, ctx->flip,
                           ctx->emb[m] + i * (size_t)ctx->dims[m], &err);
        if (st != FACENET_OK)
            goto fail;
        im->have_emb[m] = im->new_emb[m] = 1;
    }
    goto done;
fatal:
    if (atomic_exchange(&ctx->fatal, 1) == 0)
        snprintf(ctx->fatal_message, sizeof ctx->fatal_message, "%s", err.message);
    goto done;
fail:
    im->failed = 1;
    snprintf(im->error, sizeof im->error, "%s", err.message);
done:
    free(faces);
    facenet_image_free(img);
}

static void *worker_main(void *arg)
{
    vctx *ctx = arg;
    vworker w;
    memset(&w, 0, sizeof w);
    while (!atomic_load(&ctx->fatal)) {
        size_t k = atomic_fetch_add(&ctx->next, 1);
        if (k >= ctx->n_work)
            break;
        process_image(ctx, &w, ctx->work[k]);
        atomic_fetch_add(&ctx->finished, 1);
    }
    facenet_detector_free(w.det);
    for (int m = 0; m < MAX_MODELS; m++)
        facenet_embedder_free(w.emb[m]);
    return NULL;
}

static void progress(size_t done, size_t total, double elapsed, int tty, int final)
{
    const int width = 30;
    int fill = total ? (int)((double)done / (double)total * width) : width;
    double rate = elapsed > 0 ? done / elapsed : 0;
    double eta = rate > 0 ? (double)(total - done) / rate : 0;
    fprintf(stderr, "%s[%.*s%*s] %zu/%zu images  %.1f img/s  ETA %02d:%02d%s", tty ? "\r" : "",
            fill, "##############################", width - fill, "", done, total, rate,
            (int)eta / 60, (int)eta % 60, final || !tty ? "\n" : "");
    fflush(stderr);
}

/* Run the workers over ctx->work. Returns the wall time. */
static double run_workers(vctx *ctx, int threads)
{
    double t0 = now_seconds();
    if (ctx->n_work == 0)
        return 0;
    if ((size_t)threads > ctx->n_work)
        threads = (int)ctx->n_work;
    pthread_t *tids = calloc((size_t)threads, sizeof *tids);
    int started = 0, tty = isatty(STDERR_FILENO);
    size_t last_report = 0;
    for (int i = 0; tids && i < threads; i++)
        if (pthread_create(&tids[started], NULL, worker_main, ctx) == 0)
            started++;
    if (started == 0) {
        atomic_store(&ctx->fatal, 1);
        snprintf(ctx->fatal_message, sizeof ctx->fatal_message, "could not start threads");
    }
    while (started > 0 && atomic_load(&ctx->finished) < ctx->n_work && !atomic_load(&ctx->fatal)) {
        size_t done = atomic_load(&ctx->finished);
        /* Without a terminal, one line per tenth keeps logs short. */
        if (tty || done >= last_report + ctx->n_work / 10 + 1) {
            progress(done, ctx->n_work, now_seconds() - t0, tty, 0);
            last_report = done;
        }
        usleep(tty ? 250000 : 1000000);
    }
    for (int i = 0; i < started; i++)
        pthread_join(tids[i], NULL);
    free(tids);
    progress(atomic_load(&ctx->finished), ctx->n_work, now_seconds() - t0, tty, 1);
    return now_seconds() - t0;
}

/* The mean picked-face landmarks as fractions of the image size. */
static int mean_landmarks(const vctx *ctx, double frac[10])
{
    size_t count = 0;
    memset(frac, 0, 10 * sizeof *frac);
    for (size_t i = 0; i < ctx->n_images; i++) {
        const float *d = ctx->images[i].det;
        if (!ctx->images[i].have_det || d[DET_N] < 1 || d[DET_W] < 1 || d[DET_H] < 1)
            continue;
        for (int k = 0; k < 10; k++)
            frac[k] += d[DET_LM + k] / d[k % 2 ? DET_H : DET_W];
        count++;
    }
    if (count == 0)
        return -1;
    for (int k = 0; k < 10; k++)
        frac[k] /= (double)count;
    return 0;
}

/* Embed the images without a face at the mean landmarks. Returns an exit
 * code. */
static int embed_fallbacks(vctx *ctx)
{
    double frac[10];
    facenet_embedder *emb[MAX_MODELS] = {NULL, NULL};
    facenet_error err;
    int rc = CLI_EXIT_OK, have_mean = mean_landmarks(ctx, frac) == 0;

    for (size_t i = 0; i < ctx->n_images && rc == CLI_EXIT_OK; i++) {
        vimage *im = &ctx->images[i];
        if (im->failed || im->det[DET_N] >= 1)
            continue;
        im->fallback = 1;
        facenet_image *img = NULL;
        facenet_face face;
        memset(&face, 0, sizeof face);
        if (facenet_image_load(im->path, NULL, &img, &err) != FACENET_OK) {
            rc = cli_report(&err);
            break;
        }
        int w = facenet_image_width(img), h = facenet_image_height(img);
        /* With no face anywhere, fall back to the ArcFace template's
         * proportions on the whole image. */
        static const double template_frac[10] = {0.3419, 0.4616, 0.6565, 0.4598, 0.5002,
                                                 0.6405, 0.3710, 0.8247, 0.6315, 0.8232};
        for (int k = 0; k < 5; k++) {
            face.landmarks[k][0] = (float)((have_mean ? frac : template_frac)[2 * k] * w);
            face.landmarks[k][1] = (float)((have_mean ? frac : template_frac)[2 * k + 1] * h);
        }
        face.box[2] = (float)w;
        face.box[3] = (float)h;
        for (int m = 0; m < ctx->n_models && rc == CLI_EXIT_OK; m++) {
            if (!emb[m] && create_embedder(ctx, m, &emb[m], &err) != FACENET_OK) {
                rc = cli_report(&err);
                break;
            }
            if (facenet_embed(emb[m], img, &face, 1, ctx->flip,
                              ctx->emb[m] + i * (size_t)ctx->dims[m], &err) != FACENET_OK)
                rc = cli_report(&err);
        }
        facenet_image_free(img);
    }
    for (int m = 0; m < MAX_MODELS; m++)
        facenet_embedder_free(emb[m]);
    return rc;
}

/* ------------------------------------------------------------------------ */
/* Stage 4: evaluate and report                                             */
/* ------------------------------------------------------------------------ */

/* The embedding of image i that the evaluation uses: the model's own, or
 * for the ensemble the unit embeddings concatenated, the second (dlib)
 * scaled by `weight`, and renormalised. Its squared L2 distance is then
 * (D_mfn + w^2 D_dlib) / (1 + w^2): weight 1 is the plain concatenation. */
static void image_embedding(const vctx *ctx, size_t i, double weight, float *out)
{
    size_t at = 0;
    double sum = 0;
    for (int m = 0; m < ctx->n_models; m++) {
        const float *e = ctx->emb[m] + i * (size_t)ctx->dims[m];
        float scale = m == 0 ? 1.0f : (float)weight;
        for (int k = 0; k < ctx->dims[m]; k++)
            out[at + (size_t)k] = e[k] * scale;
        at += (size_t)ctx->dims[m];
    }
    if (ctx->n_models == 1)
        return;
    for (size_t k = 0; k < at; k++)
        sum += (double)out[k] * out[k];
    double norm = sqrt(sum) > 1e-10 ? sqrt(sum) : 1e-10;
    for (size_t k = 0; k < at; k++)
        out[k] = (float)(out[k] / norm);
}

static const char *metric_name(lfw_metric m)
{
    return m == LFW_METRIC_COSINE ? "cosine" : "sqeuclidean";
}

typedef struct vsummary {
    size_t n_faces_found, n_multi, n_fallback, n_computed;
    double compute_seconds, total_seconds;
    int threads;
    lfw_calibration cal;
    int have_cal;
    /* The ensemble's dlib weight per fold (chosen on its training folds,
     * or the fixed one) and for the calibration on all pairs. */
    int have_weights, weights_chosen;
    double fold_weight[LFW_MAX_FOLDS], fold_train_accuracy[LFW_MAX_FOLDS];
    double cal_weight;
} vsummary;

static void print_report(const voptions *o, const vctx *ctx, const lfw_pairs *pairs,
                         const lfw_result *r, const vsummary *s)
{
    lfw_metric metric = r->metric;
    printf("facenet validate: %zu pairs from %s (%d folds), %zu images in %s\n", pairs->n, o->pairs,
           r->folds, ctx->n_images, o->lfw_dir);
    printf("model %s%s", o->model, o->flip ? " + flip" : "");
    if (o->jitter)
        printf(" + %d jitters (dlib)", o->jitter);
    printf(", metric %s%s\n", metric_name(metric),
           o->lfw.subtract_mean ? ", training-fold mean subtracted" : "");
    printf("faces: found in %zu images (%zu with several: facenet's rule picked one), "
           "not found in %zu\n",
           s->n_faces_found, s->n_multi, s->n_fallback);
    for (size_t i = 0; i < ctx->n_images; i++)
        if (ctx->images[i].fallback)
            printf("  no face: %s (aligned at the mean landmarks of this run)\n",
                   ctx->images[i].path);
    if (s->n_computed)
        printf("time: %zu images computed in %.1f s (%.3f s/image wall, %d threads), %zu from "
               "cache; total %.1f s\n",
               s->n_computed, s->compute_seconds, s->compute_seconds / (double)s->n_computed,
               s->threads, ctx->n_images - s->n_computed, s->total_seconds);
    else
        printf("time: all %zu images from the cache; total %.1f s\n", ctx->n_images,
               s->total_seconds);
    printf("\naccuracy:       %.4f +- %.4f\n", r->accuracy_mean, r->accuracy_std);
    printf("per fold:      ");
    for (int k = 0; k < r->folds; k++)
        printf(" %.4f", r->fold[k].accuracy);
    printf("\nthresholds:    ");
    for (int k = 0; k < r->folds; k++)
        printf(" %.2f", r->fold[k].threshold);
    printf("  (%s distance)\n  as cosine:   ", metric_name(metric));
    for (int k = 0; k < r->folds; k++)
        printf(" %.3f", lfw_threshold_to_similarity(r->fold[k].threshold, metric));
    if (s->have_weights) {
        printf("\ndlib weight:   ");
        for (int k = 0; k < r->folds; k++)
            printf(" %.2f", s->fold_weight[k]);
        if (s->weights_chosen)
            printf("  (%s fusion, chosen on each fold's training folds)",
                   o->fusion ? lfw_fusion_name((lfw_fusion)o->fusion) : "search");
        else
            printf("  (fixed)");
    }
    printf("\nVAL@FAR=%g:  %.4f +- %.4f (FAR %.5f)\n", o->lfw.far_target, r->val_mean, r->val_std,
           r->far_mean);
    printf("AUC:            %.4f\n", r->auc);
    if (isnan(r->eer))
        printf("EER:            undefined (the ROC does not cross TPR = 1 - FPR)\n");
    else
        printf("EER:            %.4f\n", r->eer);
    if (s->have_cal) {
        printf("\nthreshold to use (fitted on all %zu pairs%s):\n", pairs->n,
               o->lfw.subtract_mean ? ", without mean subtraction" : "");
        if (s->have_weights)
            printf("  dlib weight %.2f (%s)\n", s->cal_weight,
                   s->weights_chosen ? "chosen on all pairs like the per-fold ones" : "fixed");
        printf("  best accuracy %.4f at %s distance < %.2f = cosine similarity >= %.3f\n",
               s->cal.accuracy, metric_name(metric), s->cal.threshold_accuracy,
               lfw_threshold_to_similarity(s->cal.threshold_accuracy, metric));
        if (s->cal.far_reached)
            printf("  FAR %g at %s distance < %.4f = cosine similarity >= %.4f (VAL %.4f, FAR "
                   "%.5f)\n",
                   o->lfw.far_target, metric_name(metric), s->cal.threshold_far,
                   lfw_threshold_to_similarity(s->cal.threshold_far, metric), s->cal.val,
                   s->cal.far);
    }
}

static json_t *json_number_or_null(double v)
{
    return isfinite(v) ? json_real(v) : json_null();
}

static int write_json_report(const voptions *o, const vctx *ctx, const lfw_pairs *pairs,
                             const lfw_result *r, const vsummary *s)
{
    json_t *folds = json_array(), *no_face = json_array(), *roc = json_object();
    json_t *thr = json_array(), *tpr = json_array(), *fpr = json_array();
    for (int k = 0; k < r->folds; k++) {
        const lfw_fold_result *f = &r->fold[k];
        json_t *fold = json_pack("{s:i,s:I,s:I,s:f,s:f,s:f,s:f,s:f,s:f,s:f}", "fold", k + 1, "first_pair",
                             (json_int_t)f->begin, "end_pair", (json_int_t)f->end, "threshold",
                             f->threshold, "threshold_cosine_similarity",
                             lfw_threshold_to_similarity(f->threshold, r->metric), "train_accuracy",
                             f->train_accuracy, "accuracy", f->accuracy, "val_threshold",
                             f->val_threshold, "val", f->val, "far", f->far);
        if (fold && s->have_weights) {
            json_object_set_new(fold, "ensemble_weight", json_real(s->fold_weight[k]));
            if (s->weights_chosen)
                json_object_set_new(fold, "ensemble_weight_train_accuracy",
                                    json_real(s->fold_train_accuracy[k]));
        }
        json_array_append_new(folds, fold);
    }
    for (size_t i = 0; i < ctx->n_images; i++)
        if (ctx->images[i].fallback)
            json_array_append_new(no_face, json_string(ctx->images[i].path));
    for (int i = 0; i < LFW_ROC_THRESHOLDS; i++) {
        json_array_append_new(thr, json_real(lfw_roc_threshold(i)));
        json_array_append_new(tpr, json_real(r->tpr[i]));
        json_array_append_new(fpr, json_real(r->fpr[i]));
    }
    json_object_set_new(roc, "thresholds", thr);
    json_object_set_new(roc, "tpr", tpr);
    json_object_set_new(roc, "fpr", fpr);
    json_t *doc = json_pack(
        "{s:s,s:s,s:s,s:b,s:b,s:s,s:i,s:f,s:I,s:I,s:{s:I,s:I,s:I,s:o},s:{s:I,s:f,s:f,s:i},"
        "s:f,s:f,s:f,s:f,s:f,s:f,s:o,s:o,s:o}",
        "pairs_file", o->pairs, "lfw_dir", o->lfw_dir, "model", o->model, "flip", o->flip,
        "subtract_mean", o->lfw.subtract_mean, "metric", metric_name(r->metric), "folds", r->folds,
        "far_target", o->lfw.far_target, "n_pairs", (json_int_t)pairs->n, "n_images",
        (json_int_t)ctx->n_images, "faces", "found", (json_int_t)s->n_faces_found, "several",
        (json_int_t)s->n_multi, "not_found", (json_int_t)s->n_fallback, "not_found_images",
        no_face, "timing", "computed_images", (json_int_t)s->n_computed, "compute_seconds",
        s->compute_seconds, "total_seconds", s->total_seconds, "threads", s->threads,
        "accuracy_mean", r->accuracy_mean, "accuracy_std", r->accuracy_std, "val_mean",
        r->val_mean, "val_std", r->val_std, "far_mean", r->far_mean, "auc", r->auc, "eer",
        json_number_or_null(r->eer), "per_fold", folds, "roc", roc);
    if (!doc)
        return CLI_EXIT_INTERNAL;
    json_object_set_new(doc, "jitter", json_integer(o->jitter));
    if (s->have_weights)
        json_object_set_new(doc, "ensemble_weight",
                            json_pack("{s:s,s:s,s:f}", "mode",
                                      s->weights_chosen ? "per fold, on the training folds"
                                                        : "fixed",
                                      "fusion",
                                      !s->weights_chosen ? "fixed"
                                      : o->fusion ? lfw_fusion_name((lfw_fusion)o->fusion)
                                                  : "search",
                                      "calibration", s->cal_weight));
    if (s->have_cal)
        json_object_set_new(
            doc, "calibration",
            json_pack("{s:f,s:f,s:f,s:o,s:o,s:f,s:f}", "threshold_accuracy",
                      s->cal.threshold_accuracy, "accuracy", s->cal.accuracy,
                      "threshold_accuracy_cosine_similarity",
                      lfw_threshold_to_similarity(s->cal.threshold_accuracy, r->metric),
                      "threshold_far", s->cal.far_reached ? json_real(s->cal.threshold_far) : json_null(),
                      "threshold_far_cosine_similarity",
                      s->cal.far_reached
                          ? json_real(lfw_threshold_to_similarity(s->cal.threshold_far, r->metric))
                          : json_null(),
                      "val", s->cal.val, "far", s->cal.far));
    char tmp[PATH_MAX];
    snprintf(tmp, sizeof tmp, "%s.part", o->out);
    int rc = json_dump_file(doc, tmp, JSON_INDENT(2) | JSON_REAL_PRECISION(8));
    json_decref(doc);
    if (rc != 0 || rename(tmp, o->out) != 0) {
        unlink(tmp);
        fprintf(stderr, "facenet validate: cannot write %s\n", o->out);
        return CLI_EXIT_INPUT;
    }
    return CLI_EXIT_OK;
}

static int write_calibration(const voptions *o, const char *model_dir, const lfw_pairs *pairs,
                             const lfw_result *r, const vsummary *s)
{
    char path[PATH_MAX];
    facenet_error err;
    thresholds_entry e;

    if (o->thresholds)
        snprintf(path, sizeof path, "%s", o->thresholds);
    else
        snprintf(path, sizeof path, "%s/%s", model_dir, THRESHOLDS_FILE_NAME);
    memset(&e, 0, sizeof e);
    e.threshold = lfw_threshold_to_similarity(s->cal.threshold_accuracy, r->metric);
    e.threshold_far =
        s->cal.far_reached ? lfw_threshold_to_similarity(s->cal.threshold_far, r->metric) : NAN;
    e.far_target = o->lfw.far_target;
    e.accuracy = s->cal.accuracy;
    e.val = s->cal.val;
    e.far = s->cal.far;
    e.flip = o->flip;
    e.pairs = o->pairs;
    e.n_pairs = pairs->n;
    e.has_weight = s->have_weights;
    e.weight = s->cal_weight;
    /* A flipped run is its own entry: its scores are not the plain ones. */
    char key[128];
    snprintf(key, sizeof key, "%s%s", o->model, o->flip ? "+flip" : "");
    if (o->jitter) /* compare --jitter N reads it; never the plain entry */
        snprintf(key + strlen(key), sizeof key - strlen(key), "+jitter%d", o->jitter);
    if (thresholds_write(path, key, &e, &err) != FACENET_OK)
        return cli_report(&err);
    printf("calibration: wrote %s thresholds to %s\n", key, path);
    return CLI_EXIT_OK;
}

/* ------------------------------------------------------------------------ */
/* Main                                                                     */
/* ------------------------------------------------------------------------ */

static int parse_args(int argc, char **argv, voptions *o, char *pairs_buf, size_t pairs_size)
{
    static const struct option longopts[] = {
        {"lfw-dir", required_argument, NULL, 'd'},  {"pairs", required_argument, NULL, 'p'},
        {"model", required_argument, NULL, 'm'},    {"flip", no_argument, NULL, 'f'},
        {"subtract-mean", no_argument, NULL, 's'},  {"metric", required_argument, NULL, 'e'},
        {"folds", required_argument, NULL, 'k'},    {"out", required_argument, NULL, 'o'},
        {"roc", required_argument, NULL, 'r'},      {"calibrate", no_argument, NULL, 'C'},
        {"thresholds", required_argument, NULL, 'T'}, {"threads", required_argument, NULL, 'j'},
        {"cache", required_argument, NULL, 'c'},    {"no-cache", no_argument, NULL, 'N'},
        {"model-dir", required_argument, NULL, 'M'}, {"help", no_argument, NULL, 'h'},
        {"ensemble-weight", required_argument, NULL, 'W'},
        {"jitter", required_argument, NULL, 'J'},
        {"fusion", required_argument, NULL, 'U'},
        {NULL, 0, NULL, 0}};
    int c, fusion_set = 0;

    memset(o, 0, sizeof *o);
    lfw_options_default(&o->lfw);
    o->model = "mobilefacenet";
    o->ensemble_weight = -1;
    o->fusion = (int)LFW_FUSION_SEPARATION;
    o->threads = (int)sysconf(_SC_NPROCESSORS_ONLN);
    optind = 1;
    while ((c = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
        switch (c) {
        case 'd': o->lfw_dir = optarg; break;
        case 'p': o->pairs = optarg; break;
        case 'm': o->model = optarg; break;
        case 'f': o->flip = 1; break;
        case 's': o->lfw.subtract_mean = 1; break;
        case 'e':
            if (strcmp(optarg, "sqeuclidean") == 0)
                o->lfw.metric = LFW_METRIC_SQEUCLIDEAN;
            else if (strcmp(optarg, "cosine") == 0)
                o->lfw.metric = LFW_METRIC_COSINE;
            else {
                fprintf(stderr, "facenet validate: --metric is sqeuclidean or cosine\n");
                return CLI_EXIT_USAGE;
            }
            break;
        case 'k':
            if (cli_parse_int(optarg, 2, LFW_MAX_FOLDS, &o->lfw.folds) != 0) {
                fprintf(stderr, "facenet validate: --folds must be 2..%d\n", LFW_MAX_FOLDS);
                return CLI_EXIT_USAGE;
            }
            break;
        case 'o': o->out = optarg; break;
        case 'r': o->roc = optarg; break;
        case 'C': o->calibrate = 1; break;
        case 'T': o->thresholds = optarg; break;
        case 'j':
            if (cli_parse_int(optarg, 1, 256, &o->threads) != 0) {
                fprintf(stderr, "facenet validate: --threads must be 1..256\n");
                return CLI_EXIT_USAGE;
            }
            break;
        case 'c': o->cache_dir = optarg; break;
        case 'W': {
            if (cli_parse_double(optarg, 0, 10, &o->ensemble_weight) != 0) {
                fprintf(stderr, "facenet validate: --ensemble-weight must be a number in 0..10\n");
                return CLI_EXIT_USAGE;
            }
            break;
        }
        case 'J':
            if (cli_parse_int(optarg, 1, FACENET_MAX_JITTERS, &o->jitter) != 0) {
                fprintf(stderr, "facenet validate: --jitter must be 1..%d\n",
                        FACENET_MAX_JITTERS);
                return CLI_EXIT_USAGE;
            }
            break;
        case 'U': {
            lfw_fusion f;
            if (strcmp(optarg, "search") == 0)
                o->fusion = 0;
            else if (lfw_fusion_from_name(optarg, &f))
                o->fusion = (int)f;
            else {
                fprintf(stderr, "facenet validate: --fusion is logistic, separation, threshold "
                                "or search\n");
                return CLI_EXIT_USAGE;
            }
            fusion_set = 1;
            break;
        }
        case 'N': o->no_cache = 1; break;
        case 'M': o->model_dir_opt = optarg; break;
        case 'h': fputs(validate_usage, stdout); return -1;
        default: fputs(validate_usage, stderr); return CLI_EXIT_USAGE;
        }
    }
    if (optind != argc || !o->lfw_dir) {
        fprintf(stderr, "facenet validate: %s\n",
                optind != argc ? "unexpected argument" : "--lfw-dir is required");
        fputs(validate_usage, stderr);
        return CLI_EXIT_USAGE;
    }
    if (o->threads < 1)
        o->threads = 1;
    if ((o->ensemble_weight >= 0 || fusion_set) && strcmp(o->model, "ensemble") != 0) {
        fprintf(stderr, "facenet validate: --ensemble-weight and --fusion need --model ensemble\n");
        return CLI_EXIT_USAGE;
    }
    if (o->ensemble_weight >= 0 && fusion_set) {
        fprintf(stderr, "facenet validate: --ensemble-weight fixes the weight; --fusion chooses "
                        "it: give one\n");
        return CLI_EXIT_USAGE;
    }
    if (strcmp(o->model, "ensemble") == 0 && o->ensemble_weight < 0 && o->lfw.subtract_mean) {
        fprintf(stderr, "facenet validate: --subtract-mean with --model ensemble needs a fixed "
                        "--ensemble-weight\n");
        return CLI_EXIT_USAGE;
    }
    if (o->calibrate && o->lfw.subtract_mean) {
        fprintf(stderr, "facenet validate: --calibrate cannot use --subtract-mean (the mean is "
                        "not known when comparing two faces)\n");
        return CLI_EXIT_USAGE;
    }
    if (!o->pairs) {
        snprintf(pairs_buf, pairs_size, "%s/pairs.txt", o->lfw_dir);
        o->pairs = pairs_buf;
    }
    if (!is_dir(o->lfw_dir)) {
        fprintf(stderr, "facenet validate: --lfw-dir %s is not a directory\n", o->lfw_dir);
        return CLI_EXIT_INPUT;
    }
    return CLI_EXIT_OK;
}

/* Set the models of the run from --model. */
static int choose_models(const voptions *o, vctx *ctx)
{
    const char *names[MAX_MODELS] = {o->model, NULL};
    int n = 1;
    if (strcmp(o->model, "ensemble") == 0) {
        names[0] = "mobilefacenet";
        names[1] = "dlib-resnet";
        n = 2;
    }
    for (int m = 0; m < n; m++) {
        const facenet_model_info *info = facenet_model_find(names[m]);
        if (!info || strcmp(info->role, "embedder") != 0) {
            fprintf(stderr,
                    "facenet validate: '%s' is not an embedding model (see 'facenet models "
                    "list', or use 'ensemble')\n",
                    names[m]);
            return CLI_EXIT_USAGE;
        }
        ctx->models[m] = info;
        ctx->dims[m] = info->embedding_dim;
        /* Jitter is dlib's test-time augmentation: for its chip only. */
        if (strcmp(info->alignment, "dlib150") == 0)
            ctx->jitter[m] = o->jitter;
    }
    if (o->jitter && !ctx->jitter[n - 1]) {
        fprintf(stderr, "facenet validate: --jitter applies to the dlib ResNet models and the "
                        "ensemble, not to %s\n", o->model);
        return CLI_EXIT_USAGE;
    }
    ctx->n_models = n;
    return CLI_EXIT_OK;
}

static void free_ctx(vctx *ctx)
{
    for (size_t i = 0; i < ctx->n_images; i++)
        free(ctx->images[i].path);
    free(ctx->images);
    free(ctx->work);
    for (int m = 0; m < MAX_MODELS; m++)
        free(ctx->emb[m]);
}

/* The ensemble's candidate dlib weights 0, 0.1, ..., 3 in order of
 * preference: nearest to equal weights (1) first, and of two equally near
 * the smaller, so that a tie in training accuracy moves least from the
 * plain concatenation. The range reaches 3 because the dlib distances are
 * about 6.7 times smaller than MobileFaceNet's at their thresholds (0.18
 * vs 1.20 squared L2), so weight ~2.6 (6.7 = 2.6^2) gives both equal say.
 * Returns the number of candidates. */
#define WEIGHT_GRID_TENTHS 30
static int weight_candidates(double *w)
{
    int n = 0;
    w[n++] = 1.0;
    for (int d = 1; d <= WEIGHT_GRID_TENTHS; d++) {
        if (10 - d >= 0)
            w[n++] = (10 - d) / 10.0;
        if (10 + d <= WEIGHT_GRID_TENTHS)
            w[n++] = (10 + d) / 10.0;
    }
    return n;
}

/* Distances of every pair, with the ensemble's dlib weight `weight`
 * (ignored for a single model); e1/e2 receive the embeddings. */
static void pair_distances(const vctx *ctx, const lfw_pairs *pairs, const size_t *pair_image,
                           size_t dim, double weight, lfw_metric metric, float *e1, float *e2,
                           double *dist)
{
    for (size_t i = 0; i < pairs->n; i++) {
        image_embedding(ctx, pair_image[2 * i], weight, e1 + i * dim);
        image_embedding(ctx, pair_image[2 * i + 1], weight, e2 + i * dim);
        dist[i] = lfw_distance(e1 + i * dim, e2 + i * dim, dim, metric);
    }
}

/* The ensemble with its dlib weight chosen inside the protocol: each fold
 * takes the candidate with the best accuracy on its training folds (at the
 * threshold the protocol would choose there) and is then evaluated like
 * any fold. The calibration uses the weight chosen the same way on all
 * pairs; its distances are left in `dist`. */
static facenet_status evaluate_weight_search(const voptions *o, const vctx *ctx,
                                             const lfw_pairs *pairs, const size_t *pair_image,
                                             size_t dim, const unsigned char *same, float *e1,
                                             float *e2, double *dist, lfw_result *r,
                                             vsummary *s, facenet_error *err)
{
    double w[LFW_MAX_CANDIDATES];
    int nc = weight_candidates(w), chosen[LFW_MAX_FOLDS], all_pairs_choice = 0;
    const double *fold_dist[LFW_MAX_FOLDS];
    size_t n = pairs->n;
    facenet_status st;
    double *all = malloc((size_t)nc * n * sizeof *all);

    if (!all)
        return fn_fail(err, FACENET_ERR_NO_MEMORY, "out of memory for %d x %zu distances", nc, n);
    for (int j = 0; j < nc; j++)
        pair_distances(ctx, pairs, pair_image, dim, w[j], o->lfw.metric, e1, e2,
                       all + (size_t)j * n);
    st = lfw_choose_per_fold(all, nc, same, n, o->lfw.folds, chosen, s->fold_train_accuracy,
                             err);
    if (st == FACENET_OK) {
        for (int k = 0; k < o->lfw.folds; k++) {
            fold_dist[k] = all + (size_t)chosen[k] * n;
            s->fold_weight[k] = w[chosen[k]];
        }
        st = lfw_evaluate_fold_distances(fold_dist, same, n, &o->lfw, r, err);
    }
    if (st == FACENET_OK)
        st = lfw_choose_per_fold(all, nc, same, n, 1, &all_pairs_choice, NULL, err);
    if (st == FACENET_OK) {
        s->cal_weight = w[all_pairs_choice];
        memcpy(dist, all + (size_t)all_pairs_choice * n, n * sizeof *dist);
        s->have_weights = s->weights_chosen = 1;
    }
    free(all);
    return st;
}

/* Squared L2 distance of every pair under model m alone. */
static void model_distances(const vctx *ctx, const lfw_pairs *pairs, const size_t *pair_image,
                            int m, double *dist)
{
    size_t dim = (size_t)ctx->dims[m];
    for (size_t i = 0; i < pairs->n; i++)
        dist[i] = lfw_distance(ctx->emb[m] + pair_image[2 * i] * dim,
                               ctx->emb[m] + pair_image[2 * i + 1] * dim, dim,
                               LFW_METRIC_SQEUCLIDEAN);
}

/* The ensemble with its dlib weight set per fold by a fusion method
 * (verify/fusion.h) from the two models' squared L2 distances on the
 * fold's training folds: w = sqrt(a_dlib / a_mfn) makes the concatenated
 * embedding's distance that fusion up to a constant factor. The
 * calibration uses the weight the method gives on all pairs; its
 * distances are left in `dist`. */
static facenet_status evaluate_fusion(const voptions *o, const vctx *ctx, const lfw_pairs *pairs,
                                      const size_t *pair_image, size_t dim,
                                      const unsigned char *same, float *e1, float *e2,
                                      double *dist, lfw_result *r, vsummary *s,
                                      facenet_error *err)
{
    size_t n = pairs->n;
    int folds = o->lfw.folds;
    double ratio[LFW_MAX_FOLDS] = {0}, all_ratio = 0;
    const double *fold_dist[LFW_MAX_FOLDS];
    double *d0 = malloc(n * sizeof *d0), *d1 = malloc(n * sizeof *d1);
    double *all = malloc((size_t)folds * n * sizeof *all);
    facenet_status st = FACENET_OK;

    if (!d0 || !d1 || !all)
        st = fn_fail(err, FACENET_ERR_NO_MEMORY, "out of memory for %d x %zu distances", folds, n);
    if (st == FACENET_OK) {
        model_distances(ctx, pairs, pair_image, 0, d0);
        model_distances(ctx, pairs, pair_image, 1, d1);
        st = lfw_fusion_ratio((lfw_fusion)o->fusion, d0, d1, same, n, folds, ratio, err);
    }
    if (st == FACENET_OK)
        st = lfw_fusion_ratio((lfw_fusion)o->fusion, d0, d1, same, n, 1, &all_ratio, err);
    for (int k = 0; st == FACENET_OK && k < folds; k++) {
        s->fold_weight[k] = sqrt(ratio[k]);
        pair_distances(ctx, pairs, pair_image, dim, s->fold_weight[k], o->lfw.metric, e1, e2,
                       all + (size_t)k * n);
        fold_dist[k] = all + (size_t)k * n;
    }
    if (st == FACENET_OK)
        st = lfw_evaluate_fold_distances(fold_dist, same, n, &o->lfw, r, err);
    if (st == FACENET_OK) {
        s->cal_weight = sqrt(all_ratio);
        pair_distances(ctx, pairs, pair_image, dim, s->cal_weight, o->lfw.metric, e1, e2, dist);
        s->have_weights = s->weights_chosen = 1;
        for (int k = 0; k < folds; k++) /* accuracy at the fold's threshold, as for search */
            s->fold_train_accuracy[k] = r->fold[k].train_accuracy;
    }
    free(d0);
    free(d1);
    free(all);
    return st;
}

/* Everything after the embeddings exist: evaluation and output. */
static int evaluate_and_report(const voptions *o, const char *model_dir, const vctx *ctx,
                               const lfw_pairs *pairs, const size_t *pair_image, vsummary *s,
                               double t_start)
{
    size_t dim = 0;
    for (int m = 0; m < ctx->n_models; m++)
        dim += (size_t)ctx->dims[m];
    if (pairs->n == 0 || dim == 0)
        return CLI_EXIT_INTERNAL; /* excluded earlier: folds >= 2 pairs */
    float *e1 = malloc(pairs->n * dim * sizeof *e1), *e2 = malloc(pairs->n * dim * sizeof *e2);
    unsigned char *same = malloc(pairs->n);
    double *dist = malloc(pairs->n * sizeof *dist);
    lfw_result *r = malloc(sizeof *r);
    facenet_error err;
    facenet_status st;
    int rc = CLI_EXIT_OK;

    if (!e1 || !e2 || !same || !dist || !r) {
        fprintf(stderr, "facenet validate: out of memory\n");
        rc = CLI_EXIT_INTERNAL;
        goto out;
    }
    for (size_t i = 0; i < pairs->n; i++)
        same[i] = (unsigned char)pairs->pairs[i].same;
    if (ctx->n_models > 1 && o->ensemble_weight < 0 && o->fusion != 0) {
        st = evaluate_fusion(o, ctx, pairs, pair_image, dim, same, e1, e2, dist, r, s, &err);
    } else if (ctx->n_models > 1 && o->ensemble_weight < 0) {
        st = evaluate_weight_search(o, ctx, pairs, pair_image, dim, same, e1, e2, dist, r, s,
                                    &err);
    } else {
        double weight = o->ensemble_weight >= 0 ? o->ensemble_weight : 1.0;
        pair_distances(ctx, pairs, pair_image, dim, weight, o->lfw.metric, e1, e2, dist);
        st = lfw_evaluate(e1, e2, dim, same, pairs->n, &o->lfw, r, &err);
        if (ctx->n_models > 1) {
            s->have_weights = 1;
            s->cal_weight = weight;
            for (int k = 0; k < r->folds; k++)
                s->fold_weight[k] = weight;
        }
    }
    if (st != FACENET_OK) {
        rc = cli_report(&err);
        goto out;
    }
    s->have_cal = lfw_calibrate(dist, same, pairs->n, o->lfw.far_target, &s->cal, &err) == FACENET_OK;
    s->total_seconds = now_seconds() - t_start;
    print_report(o, ctx, pairs, r, s);
    if (o->out && (rc = write_json_report(o, ctx, pairs, r, s)) != CLI_EXIT_OK)
        goto out;
    if (o->roc && roc_plot_write(r->fpr, r->tpr, LFW_ROC_THRESHOLDS, r->eer, o->roc, &err) !=
                      FACENET_OK) {
        rc = cli_report(&err);
        goto out;
    }
    if (o->calibrate && s->have_cal)
        rc = write_calibration(o, model_dir, pairs, r, s);
out:
    free(e1);
    free(e2);
    free(same);
    free(dist);
    free(r);
    return rc;
}

int cmd_validate(int argc, char **argv)
{
    voptions o;
    vctx ctx;
    vcache cache;
    vsummary s;
    lfw_pairs pairs;
    size_t *pair_image = NULL;
    char pairs_buf[PATH_MAX], model_dir[PATH_MAX];
    facenet_error err;
    double t_start = now_seconds();
    int rc;

    memset(&ctx, 0, sizeof ctx);
    memset(&cache, 0, sizeof cache);
    memset(&s, 0, sizeof s);
    memset(&pairs, 0, sizeof pairs);
    rc = parse_args(argc, argv, &o, pairs_buf, sizeof pairs_buf);
    if (rc != CLI_EXIT_OK)
        return rc < 0 ? CLI_EXIT_OK : rc;
    if ((rc = choose_models(&o, &ctx)) != CLI_EXIT_OK)
        return rc;
    if (cli_model_dir(o.model_dir_opt, model_dir, sizeof model_dir) != 0)
        return CLI_EXIT_MODEL;
    ctx.model_dir = model_dir;
    ctx.flip = o.flip;
    if (lfw_pairs_load(o.pairs, &pairs, &err) != FACENET_OK) {
        /* A missing pairs file is bad input, not a missing model. */
        fprintf(stderr, "facenet: %s\n", err.message);
        return err.code == FACENET_ERR_NOT_FOUND ? CLI_EXIT_INPUT : cli_exit_code(err.code);
    }
    if (pairs.n < (size_t)o.lfw.folds) {
        fprintf(stderr, "facenet validate: %s has %zu pairs, fewer than the %d folds\n", o.pairs,
                pairs.n, o.lfw.folds);
        rc = CLI_EXIT_INPUT;
        goto out;
    }
    pair_image = calloc(pairs.n * 2, sizeof *pair_image);
    if (!pair_image) {
        rc = CLI_EXIT_INTERNAL;
        goto out;
    }
    if ((rc = collect_images(&o, &pairs, &ctx, pair_image)) != CLI_EXIT_OK)
        goto out;
    for (int m = 0; m < ctx.n_models; m++) {
        ctx.emb[m] = calloc(ctx.n_images * (size_t)ctx.dims[m], sizeof(float));
        if (!ctx.emb[m]) {
            rc = CLI_EXIT_INTERNAL;
            goto out;
        }
    }
    ctx.work = malloc(ctx.n_images * sizeof *ctx.work);
    if (!ctx.work || open_caches(&o, &ctx, &cache) != 0) {
        rc = ctx.work ? CLI_EXIT_INPUT : CLI_EXIT_INTERNAL;
        goto out;
    }
    if ((rc = lookup_images(&ctx, &cache)) != CLI_EXIT_OK)
        goto out;
    for (size_t i = 0; i < ctx.n_images; i++) {
        const vimage *im = &ctx.images[i];
        int need = !im->have_det;
        for (int m = 0; m < ctx.n_models; m++)
            need |= im->det[DET_N] >= 1 && !im->have_emb[m];
        if (need)
            ctx.work[ctx.n_work++] = i;
    }
    s.n_computed = ctx.n_work;
    s.threads = o.threads;
    s.compute_seconds = run_workers(&ctx, o.threads);
    if (atomic_load(&ctx.fatal)) {
        fprintf(stderr, "facenet: %s\n", ctx.fatal_message);
        rc = CLI_EXIT_MODEL;
        goto out;
    }
    store_results(&ctx, &cache);
    size_t failed = 0;
    for (size_t i = 0; i < ctx.n_images; i++)
        if (ctx.images[i].failed && ++failed <= 10)
            fprintf(stderr, "facenet validate: %s (first used on %s line %zu)\n",
                    ctx.images[i].error, o.pairs, ctx.images[i].line);
    if (failed) {
        fprintf(stderr, "facenet validate: %zu images could not be processed; no figures\n",
                failed);
        rc = CLI_EXIT_INPUT;
        goto out;
    }
    if ((rc = embed_fallbacks(&ctx)) != CLI_EXIT_OK)
        goto out;
    for (size_t i = 0; i < ctx.n_images; i++) {
        s.n_fallback += ctx.images[i].fallback;
        s.n_faces_found += !ctx.images[i].fallback;
        s.n_multi += ctx.images[i].det[DET_N] >= 2;
    }
    rc = evaluate_and_report(&o, model_dir, &ctx, &pairs, pair_image, &s, t_start);
out:
    close_caches(&cache);
    free_ctx(&ctx);
    free(pair_image);
    lfw_pairs_free(&pairs);
    return rc;
}
