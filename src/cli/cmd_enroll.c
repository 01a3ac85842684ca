/*
 * cmd_enroll.c - `facenet enroll --gallery G --subject NAME IMG...` and
 * `facenet enroll --gallery G DIR...` (a class-per-folder tree: one subject
 * per sub-folder, as facenet's datasets are laid out).
 *
 * Worker threads (one detector and embedder each) embed the images; the
 * main thread enrolls one subject at a time, in one transaction each, as
 * soon as all of that subject's images are done. Every template records the
 * SHA-256 of its image, so a run that was interrupted can simply be run
 * again: images already enrolled for their subject are skipped before any
 * detection.
 */
#include <getopt.h>
#include <limits.h>
#include <pthread.h>
#include <sodium.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "cli/cli.h"
#include "cli/cli_util.h"
#include "cli/gallery_util.h"
#include "gallery/names.h"

static const char enroll_usage[] =
    "usage: facenet enroll --gallery G [OPTIONS] --subject NAME IMG|DIR...\n"
    "       facenet enroll --gallery G [OPTIONS] DIR...\n"
    "\n"
    "Add people to a gallery (created when missing). With --subject, every\n"
    "image given (or found under a directory) is one template of NAME. Without\n"
    "it, each DIR is a class-per-folder tree: DIR/NAME/*.jpg enrolls NAME.\n"
    "The main face of each image is used (the one facenet's aligner picks).\n"
    "Images already enrolled for their subject (same SHA-256) are skipped, so\n"
    "an interrupted run can be repeated.\n"
    "\n"
    "  --gallery G         gallery file (required)\n"
    "  --key-file K        32-byte key file, mode 0600 (default:\n"
    "                      $FACENET_GALLERY_KEY); see 'facenet gallery keygen'\n"
    "  --subject NAME      the person in all the images\n"
    "  --collection C      collection (default \"default\")\n"
    "  --metadata JSON     a JSON object stored with a new subject\n"
    "  --model NAME        embedding model for a new gallery (default\n"
    "                      mobilefacenet); an existing gallery's model is used\n"
    "  --flip              add the mirrored face's embedding\n"
    "  --threshold T       set the gallery's open-set threshold (cosine)\n"
    "  --threads N         embedding threads (default: all cores)\n"
    "  --model-dir DIR     model cache (default: facenet models path)\n"
    "\n"
    "Exit codes: 0 ok, 1 some images had no face, 2 usage, 3 models missing\n"
    "or altered, 4 an image or the gallery could not be read (wrong key,\n"
    "another model, damaged file), 5 internal error.\n";

typedef struct enroll_job {
    const char *path;
    size_t subject;
    int rc;             /* exit code of this image; -1 skipped (enrolled) */
    float *embedding;   /* dim floats when rc == 0 */
    char sha256[65];
    char why[FACENET_ERROR_MESSAGE_MAX + PATH_MAX];
    atomic_int done;
} enroll_job;

typedef struct enroll_subject {
    char *name;
    size_t first, count; /* jobs[first .. first + count) */
    char **known;        /* sorted digests already enrolled */
    size_t n_known;
    int invalid;         /* the folder name is not a valid subject name */
} enroll_subject;

typedef struct enroll_ctx {
    enroll_job *jobs;
    size_t n_jobs;
    enroll_subject *subjects;
    size_t n_subjects;
    const char *model_dir, *model_name;
    int flip, dim;
    atomic_size_t next, finished;
    atomic_int fatal;
    char fatal_msg[FACENET_ERROR_MESSAGE_MAX];
} enroll_ctx;

static int compare_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static int is_known(const enroll_subject *s, const char *sha)
{
    const char *key = sha;
    return s->n_known && bsearch(&key, s->known, s->n_known, sizeof *s->known, compare_str);
}

static void *enroll_worker(void *arg)
{
    enroll_ctx *ctx = arg;
    gcli_pipeline p;
    /* Models load per thread: a detector and embedder are single-threaded. */
    if (gcli_pipeline_open(&p, ctx->model_dir, ctx->model_name, ctx->flip) != CLI_EXIT_OK) {
        atomic_store(&ctx->fatal, 1);
        return NULL;
    }
    for (;;) {
        size_t i = atomic_fetch_add(&ctx->next, 1);
        if (i >= ctx->n_jobs || atomic_load(&ctx->fatal))
            break;
        enroll_job *j = &ctx->jobs[i];
        uint8_t *bytes = NULL;
        size_t size = 0, n_faces = 0;
        facenet_face *faces = NULL;
        int picked;
        j->rc = gcli_read_image(j->path, &bytes, &size, j->sha256, j->why, sizeof j->why);
        if (ctx->subjects[j->subject].invalid)
            j->rc = -2;
        else if (j->rc == CLI_EXIT_OK && is_known(&ctx->subjects[j->subject], j->sha256))
            j->rc = -1;
        else if (j->rc == CLI_EXIT_OK)
            j->rc = gcli_embed_bytes(&p, j->path, bytes, size, 0, &faces, &n_faces, &picked,
                                     &j->embedding, j->why, sizeof j->why);
        free(bytes);
        free(faces);
        atomic_fetch_add(&ctx->finished, 1);
        atomic_store(&j->done, 1);
    }
    gcli_pipeline_close(&p);
    return NULL;
}

/* ---- building the job list ------------------------------------------------- */

static int add_subject(enroll_ctx *ctx, size_t *cap, const char *name)
{
    if (ctx->n_subjects == *cap) {
        size_t c = *cap ? *cap * 2 : 64;
        enroll_subject *s = realloc(ctx->subjects, c * sizeof *s);
        if (!s)
            return -1;
        ctx->subjects = s;
        *cap = c;
    }
    enroll_subject *s = &ctx->subjects[ctx->n_subjects];
    memset(s, 0, sizeof *s);
    s->name = strdup(name);
    if (!s->name)
        return -1;
    ctx->n_subjects++;
    return 0;
}

typedef struct labelled {
    const char *path;
    char subject[FACENET_GALLERY_NAME_MAX];
} labelled;

static int compare_labelled(const void *a, const void *b)
{
    const labelled *x = a, *y = b;
    int c = strcmp(x->subject, y->subject);
    return c ? c : strcmp(x->path, y->path);
}

/* The subject of an image in a class-per-folder tree: the first path
 * component below the root. 0 on success, -1 when the image sits directly
 * in the root or the folder name does not fit. */
static int subject_of(const char *root, const char *path, char *out, size_t size)
{
    size_t rl = strlen(root);
    while (rl > 1 && root[rl - 1] == '/')
        rl--;
    if (strncmp(path, root, rl) != 0 || path[rl] != '/')
        return -1;
    const char *rest = path + rl + 1;
    const char *slash = strchr(rest, '/');
    if (!slash || (size_t)(slash - rest) >= size)
        return -1;
    memcpy(out, rest, (size_t)(slash - rest));
    out[slash - rest] = '\0';
    return 0;
}

/* Fill ctx->jobs and ctx->subjects, sorted by subject. */
static int build_jobs(enroll_ctx *ctx, const char *subject, char **args, int n_args,
                      cli_paths *paths, int *rc)
{
    labelled *items = NULL;
    size_t n = 0, cap_subjects = 0;

    if (subject) {
        if (cli_collect_images(args, n_args, paths) != 0)
            return CLI_EXIT_INPUT;
        items = calloc(paths->n ? paths->n : 1, sizeof *items);
        if (!items)
            return CLI_EXIT_INTERNAL;
        for (size_t i = 0; i < paths->n; i++) {
            items[n].path = paths->items[i];
            snprintf(items[n].subject, sizeof items[n].subject, "%s", subject);
            n++;
        }
    } else {
        for (int a = 0; a < n_args; a++) {
            size_t before = paths->n;
            if (cli_collect_images(&args[a], 1, paths) != 0) {
                free(items);
                return CLI_EXIT_INPUT;
            }
            labelled *grown = realloc(items, (paths->n ? paths->n : 1) * sizeof *items);
            if (!grown) {
                free(items);
                return CLI_EXIT_INTERNAL;
            }
            items = grown;
            for (size_t i = before; i < paths->n; i++) {
                if (subject_of(args[a], paths->items[i], items[n].subject,
                               sizeof items[n].subject) != 0) {
                    fprintf(stderr,
                            "facenet enroll: %s is not inside a subject folder of %s; skipped\n",
                            paths->items[i], args[a]);
                    *rc = CLI_EXIT_PROBLEM;
                    continue;
                }
                items[n++].path = paths->items[i];
            }
        }
    }
    if (n > 1)
        qsort(items, n, sizeof *items, compare_labelled);
    ctx->jobs = calloc(n ? n : 1, sizeof *ctx->jobs);
    if (!ctx->jobs) {
        free(items);
        return CLI_EXIT_INTERNAL;
    }
    for (size_t i = 0; i < n; i++) {
        if (ctx->n_subjects == 0 || strcmp(ctx->subjects[ctx->n_subjects - 1].name,
                                           items[i].subject) != 0) {
            if (add_subject(ctx, &cap_subjects, items[i].subject) != 0) {
                free(items);
                return CLI_EXIT_INTERNAL;
            }
            ctx->subjects[ctx->n_subjects - 1].first = i;
        }
        ctx->subjects[ctx->n_subjects - 1].count++;
        ctx->jobs[i].path = items[i].path;
        ctx->jobs[i].subject = ctx->n_subjects - 1;
        atomic_init(&ctx->jobs[i].done, 0);
    }
    ctx->n_jobs = n;
    free(items);
    return CLI_EXIT_OK;
}

/* ---- what the gallery already has ----------------------------------------- */

typedef struct known_ctx {
    enroll_subject *s;
    size_t cap;
    int failed;
} known_ctx;

static int collect_known(void *arg, const facenet_gallery_template *t)
{
    known_ctx *k = arg;
    if (!t->image_sha256[0])
        return 0;
    if (k->s->n_known == k->cap) {
        size_t cap = k->cap ? k->cap * 2 : 16;
        char **grown = realloc(k->s->known, cap * sizeof *grown);
        if (!grown) {
            k->failed = 1;
            return 1;
        }
        k->s->known = grown;
        k->cap = cap;
    }
    k->s->known[k->s->n_known] = strdup(t->image_sha256);
    if (!k->s->known[k->s->n_known]) {
        k->failed = 1;
        return 1;
    }
    k->s->n_known++;
    return 0;
}

/* Subjects with invalid names are reported here, before any work, and
 * their images are skipped. */
static int load_known(facenet_gallery *g, enroll_ctx *ctx, const char *collection, int *rc)
{
    for (size_t i = 0; i < ctx->n_subjects; i++) {
        enroll_subject *s = &ctx->subjects[i];
        known_ctx k = {s, 0, 0};
        facenet_error err;
        if (gallery_check_name(s->name, "subject name", &err) != FACENET_OK) {
            fprintf(stderr, "facenet enroll: skipping folder '%s': %s\n", s->name, err.message);
            s->invalid = 1;
            *rc = CLI_EXIT_PROBLEM;
            continue;
        }
        facenet_status st = facenet_gallery_list_templates(g, collection, s->name, collect_known,
                                                           &k, &err);
        if (k.failed)
            return CLI_EXIT_INTERNAL;
        if (st != FACENET_OK && st != FACENET_ERR_NOT_FOUND) {
            fprintf(stderr, "facenet enroll: subject folder '%s': %s\n", s->name, err.message);
            return gcli_exit_code(st);
        }
        if (s->n_known > 1)
            qsort(s->known, s->n_known, sizeof *s->known, compare_str);
    }
    return CLI_EXIT_OK;
}

/* ---- committing ------------------------------------------------------------- */

typedef struct enroll_totals {
    size_t added, skipped, failed, subjects;
} enroll_totals;

static int commit_subject(facenet_gallery *g, const enroll_ctx *ctx, const enroll_subject *s,
                          const char *collection, const char *metadata, const char *model_id,
                          const char *preprocess, enroll_totals *tot)
{
    float *rows = NULL;
    const char **shas = NULL;
    size_t n = 0;
    int rc = CLI_EXIT_OK;
    size_t d = (size_t)ctx->dim;

    rows = malloc((s->count ? s->count : 1) * d * sizeof *rows);
    shas = calloc(s->count ? s->count : 1, sizeof *shas);
    if (!rows || !shas) {
        free(rows);
        free(shas);
        return CLI_EXIT_INTERNAL;
    }
    for (size_t i = s->first; i < s->first + s->count; i++) {
        const enroll_job *j = &ctx->jobs[i];
        if (j->rc == -1) {
            tot->skipped++;
        } else if (j->rc == -2) {
            tot->failed++;
        } else if (j->rc != CLI_EXIT_OK) {
            fprintf(stderr, "%sfacenet enroll: %s\n", isatty(STDERR_FILENO) ? "\n" : "", j->why);
            tot->failed++;
            if (j->rc > rc)
                rc = j->rc;
        } else {
            memcpy(rows + n * d, j->embedding, d * sizeof *rows);
            shas[n++] = j->sha256;
        }
    }
    if (n > 0) {
        facenet_gallery_enrollment e = {collection, s->name, metadata, model_id, preprocess,
                                        rows, n, shas, 1};
        facenet_error err;
        facenet_status st = facenet_gallery_enroll(g, &e, NULL, &err);
        if (st != FACENET_OK) {
            fprintf(stderr, "facenet enroll: subject '%s': %s\n", s->name, err.message);
            int code = gcli_exit_code(st);
            rc = code > rc ? code : rc;
            tot->failed += n;
        } else {
            tot->added += n;
            tot->subjects++;
        }
    }
    sodium_memzero(rows, (s->count ? s->count : 1) * d * sizeof *rows);
    free(rows);
    free(shas);
    return rc;
}

static void wait_subject(const enroll_ctx *ctx, const enroll_subject *s, double t0)
{
    for (size_t i = s->first; i < s->first + s->count; i++)
        while (!atomic_load(&ctx->jobs[i].done) && !atomic_load(&ctx->fatal)) {
            struct timespec ts = {0, 20 * 1000 * 1000};
            nanosleep(&ts, NULL);
            gcli_progress("enroll", atomic_load(&ctx->finished), ctx->n_jobs, gcli_now() - t0, 0);
        }
}

static void free_ctx(enroll_ctx *ctx)
{
    for (size_t i = 0; i < ctx->n_jobs; i++)
        if (ctx->jobs[i].embedding) {
            sodium_memzero(ctx->jobs[i].embedding, (size_t)ctx->dim * sizeof(float));
            free(ctx->jobs[i].embedding);
        }
    for (size_t i = 0; i < ctx->n_subjects; i++) {
        for (size_t k = 0; k < ctx->subjects[i].n_known; k++)
            free(ctx->subjects[i].known[k]);
        free(ctx->subjects[i].known);
        free(ctx->subjects[i].name);
    }
    free(ctx->jobs);
    free(ctx->subjects);
}

int cmd_enroll(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"gallery", required_argument, NULL, 'g'},   {"key-file", required_argument, NULL, 'K'},
        {"subject", required_argument, NULL, 's'},   {"collection", required_argument, NULL, 'c'},
        {"metadata", required_argument, NULL, 'm'},  {"model", required_argument, NULL, 'M'},
        {"flip", no_argument, NULL, 'f'},            {"threshold", required_argument, NULL, 't'},
        {"threads", required_argument, NULL, 'j'},   {"model-dir", required_argument, NULL, 'D'},
        {"help", no_argument, NULL, 'h'},            {NULL, 0, NULL, 0}};
    const char *gallery = NULL, *key_file = NULL, *subject = NULL, *collection = NULL;
    const char *metadata = NULL, *model = NULL, *model_dir_opt = NULL;
    char model_dir[PATH_MAX], model_name[FACENET_GALLERY_MODEL_ID_MAX];
    int flip = 0, threads = (int)sysconf(_SC_NPROCESSORS_ONLN), c, rc = CLI_EXIT_OK;
    float threshold = -2;
    enroll_ctx ctx;
    cli_paths paths = {0};
    facenet_gallery *g = NULL;
    gcli_pipeline probe;
    enroll_totals tot = {0};
    facenet_error name_err;

    optind = 1;
    while ((c = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
        switch (c) {
        case 'g': gallery = optarg; break;
        case 'K': key_file = optarg; break;
        case 's': subject = optarg; break;
        case 'c': collection = optarg; break;
        case 'm': metadata = optarg; break;
        case 'M': model = optarg; break;
        case 'f': flip = 1; break;
        case 'D': model_dir_opt = optarg; break;
        case 'j':
            if (cli_parse_int(optarg, 1, 64, &threads) != 0) {
                fprintf(stderr, "facenet enroll: --threads must be 1..64\n");
                return CLI_EXIT_USAGE;
            }
            break;
        case 't': {
            if (cli_parse_cosine(optarg, &threshold) != 0) {
                fprintf(stderr, "facenet enroll: --threshold is a cosine similarity in [-1, 1]\n");
                return CLI_EXIT_USAGE;
            }
            break;
        }
        case 'h': fputs(enroll_usage, stdout); return CLI_EXIT_OK;
        default: fputs(enroll_usage, stderr); return CLI_EXIT_USAGE;
        }
    }
    if (!gallery || argc - optind < 1) {
        fputs(enroll_usage, stderr);
        return CLI_EXIT_USAGE;
    }
    if ((subject && gallery_check_name(subject, "--subject", &name_err) != FACENET_OK) ||
        (collection && gallery_check_name(collection, "--collection", &name_err) != FACENET_OK)) {
        fprintf(stderr, "facenet enroll: %s\n", name_err.message);
        return CLI_EXIT_USAGE;
    }
    if (metadata && !subject) {
        fprintf(stderr, "facenet enroll: --metadata needs --subject\n");
        return CLI_EXIT_USAGE;
    }
    if (cli_model_dir(model_dir_opt, model_dir, sizeof model_dir) != 0)
        return CLI_EXIT_MODEL;
    if (model && !facenet_model_find(model)) {
        fprintf(stderr, "facenet enroll: no model named '%s'\n", model);
        return CLI_EXIT_USAGE;
    }
    memset(&ctx, 0, sizeof ctx);
    int built = build_jobs(&ctx, subject, argv + optind, argc - optind, &paths, &rc);
    if (built != CLI_EXIT_OK) {
        free_ctx(&ctx);
        cli_paths_free(&paths);
        return built;
    }
    if (ctx.n_jobs == 0) {
        fprintf(stderr, "facenet enroll: no images found\n");
        free_ctx(&ctx);
        cli_paths_free(&paths);
        return CLI_EXIT_INPUT;
    }

    /* One pipeline here, for the model id and dimension of a new gallery
     * (and to fail early when models are missing). */
    int prc = gcli_pipeline_open(&probe, model_dir, model, flip);
    if (prc != CLI_EXIT_OK) {
        free_ctx(&ctx);
        cli_paths_free(&paths);
        return prc;
    }
    /* A new gallery gets the probe's model; an existing one keeps its own
     * unless --model insists (and then must match). */
    struct stat sb;
    int exists = stat(gallery, &sb) == 0;
    int orc = gcli_open(gallery, key_file, model || !exists ? probe.model_id : NULL,
                        exists ? 0 : probe.dim, FACENET_GALLERY_CREATE, &g);
    if (orc == CLI_EXIT_OK && !model &&
        strcmp(facenet_gallery_model(g), probe.model_id) != 0) {
        /* An existing gallery of another model: use its model instead. */
        gcli_model_name(facenet_gallery_model(g), model_name, sizeof model_name);
        model = model_name;
        gcli_pipeline_close(&probe);
        orc = gcli_pipeline_open(&probe, model_dir, model, flip);
        if (orc == CLI_EXIT_OK && strcmp(facenet_gallery_model(g), probe.model_id) != 0) {
            fprintf(stderr, "facenet enroll: gallery %s uses model '%s', which is not the pinned "
                            "file of this facenet ('%s')\n",
                    gallery, facenet_gallery_model(g), probe.model_id);
            orc = CLI_EXIT_INPUT;
        }
    }
    char model_id[FACENET_GALLERY_MODEL_ID_MAX], preprocess[64];
    snprintf(model_id, sizeof model_id, "%s", probe.model_id);
    snprintf(preprocess, sizeof preprocess, "%s", probe.preprocess);
    ctx.dim = probe.dim;
    gcli_pipeline_close(&probe);
    if (orc == CLI_EXIT_OK && threshold >= -1) {
        facenet_error err;
        if (facenet_gallery_set_threshold(g, threshold, &err) != FACENET_OK)
            orc = gcli_report(&err);
    }
    if (orc == CLI_EXIT_OK)
        orc = load_known(g, &ctx, collection, &rc);
    if (orc != CLI_EXIT_OK) {
        facenet_gallery_close(g);
        free_ctx(&ctx);
        cli_paths_free(&paths);
        return orc;
    }

    ctx.model_dir = model_dir;
    ctx.model_name = model;
    ctx.flip = flip;
    if ((size_t)threads > ctx.n_jobs)
        threads = (int)ctx.n_jobs;
    pthread_t *tids = calloc((size_t)threads, sizeof *tids);
    int started = 0;
    for (int t = 0; tids && t < threads; t++)
        if (pthread_create(&tids[started], NULL, enroll_worker, &ctx) == 0)
            started++;
    double t0 = gcli_now();
    if (started == 0) {
        fprintf(stderr, "facenet enroll: cannot start worker threads\n");
        rc = CLI_EXIT_INTERNAL;
        atomic_store(&ctx.fatal, 1);
    }
    for (size_t s = 0; !atomic_load(&ctx.fatal) && s < ctx.n_subjects; s++) {
        wait_subject(&ctx, &ctx.subjects[s], t0);
        if (atomic_load(&ctx.fatal))
            break;
        int r = commit_subject(g, &ctx, &ctx.subjects[s], collection, metadata, model_id,
                               preprocess, &tot);
        if (r > rc)
            rc = r;
        if (r == CLI_EXIT_INTERNAL || r == CLI_EXIT_USAGE)
            break; /* a bad subject name or no memory: stop, nothing half-done */
    }
    atomic_store(&ctx.next, ctx.n_jobs); /* stop workers early after a stop */
    for (int t = 0; t < started; t++)
        pthread_join(tids[t], NULL);
    free(tids);
    if (atomic_load(&ctx.fatal) && rc < CLI_EXIT_MODEL)
        rc = CLI_EXIT_MODEL;
    gcli_progress("enroll", atomic_load(&ctx.finished), ctx.n_jobs, gcli_now() - t0, 1);
    printf("enrolled %zu templates for %zu subjects in %s (%zu already enrolled, %zu failed) in "
           "%.1f s\n",
           tot.added, tot.subjects, gallery, tot.skipped, tot.failed, gcli_now() - t0);
    facenet_gallery_close(g);
    free_ctx(&ctx);
    cli_paths_free(&paths);
    return rc;
}
