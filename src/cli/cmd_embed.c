/*
 * cmd_embed.c - `facenet embed IMG...|DIR`: embeddings to JSON, CSV or .npy.
 *
 * Images are claimed one at a time by worker threads (one per core, or
 * $FACENET_THREADS), each with its own detector and embedder, so decoding,
 * detection and embedding all run on every core; the results are written
 * in input order, as one thread would.
 */
#include <errno.h>
#include <getopt.h>
#include <jansson.h>
#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/cli.h"
#include "cli/cli_util.h"

static const char embed_usage[] =
    "usage: facenet embed [OPTIONS] IMG|DIR...\n"
    "\n"
    "Detect faces, align them and write one unit-length embedding per face,\n"
    "with the source path and the face index.\n"
    "\n"
    "  --model NAME      embedding model (default mobilefacenet)\n"
    "  --all-faces       embed every face (default: the main face only, as\n"
    "                    facenet's aligner picks it)\n"
    "  --flip            add the mirrored face's embedding\n"
    "  --jitter N        dlib's num_jitters: average N jittered copies of each\n"
    "                    aligned face (fixed seed; 1..100; N network runs each)\n"
    "  --format F        json (default), csv or npy\n"
    "  -o, --output OUT  output file (default stdout; required for npy, which\n"
    "                    also writes OUT.index.csv naming each row)\n"
    "  --model-dir DIR   model cache (default: facenet models path)\n"
    "\n"
    "Images are processed on one worker thread per core ($FACENET_THREADS\n"
    "sets the count); the output keeps the input order.\n"
    "Embeddings are biometric templates: store them as carefully as photos.\n"
    "Exit codes: 0 ok, 1 some images had no face, 2 usage, 3 models missing\n"
    "or altered, 4 an image could not be read (the others are processed).\n";

typedef struct embed_row {
    char *path;
    int face;
    float score;
} embed_row;

typedef struct embed_out {
    embed_row *rows;
    float *data;
    size_t n, cap;
    int dim;
} embed_out;

static int add_row(embed_out *o, const char *path, int face, float score, const float *v)
{
    if (o->n == o->cap) {
        size_t cap = o->cap ? o->cap * 2 : 64;
        embed_row *rows = realloc(o->rows, cap * sizeof *rows);
        if (!rows)
            return -1;
        o->rows = rows;
        float *data = realloc(o->data, cap * (size_t)o->dim * sizeof *data);
        if (!data)
            return -1;
        o->data = data;
        o->cap = cap;
    }
    o->rows[o->n].path = strdup(path);
    if (!o->rows[o->n].path)
        return -1;
    o->rows[o->n].face = face;
    o->rows[o->n].score = score;
    memcpy(o->data + o->n * (size_t)o->dim, v, (size_t)o->dim * sizeof *v);
    o->n++;
    return 0;
}

/* CSV fields: quote every path, doubling quotes, so commas are safe. */
static void csv_path(FILE *f, const char *path)
{
    fputc('"', f);
    for (const char *p = path; *p; p++) {
        if (*p == '"')
            fputc('"', f);
        fputc(*p, f);
    }
    fputc('"', f);
}

static int write_csv(FILE *f, const embed_out *o)
{
    fprintf(f, "path,face,score");
    for (int k = 0; k < o->dim; k++)
        fprintf(f, ",e%d", k);
    fputc('\n', f);
    for (size_t i = 0; i < o->n; i++) {
        csv_path(f, o->rows[i].path);
        fprintf(f, ",%d,%.6f", o->rows[i].face, o->rows[i].score);
        for (int k = 0; k < o->dim; k++)
            fprintf(f, ",%.8g", o->data[i * (size_t)o->dim + k]);
        fputc('\n', f);
    }
    return ferror(f) ? -1 : 0;
}

static int write_json(FILE *f, const embed_out *o, const char *model)
{
    json_t *list = json_array();
    for (size_t i = 0; i < o->n; i++) {
        json_t *v = json_array();
        for (int k = 0; k < o->dim; k++)
            json_array_append_new(v, json_real(o->data[i * (size_t)o->dim + k]));
        json_array_append_new(list, json_pack("{s:s,s:i,s:f,s:o}", "path", o->rows[i].path,
                                              "face", o->rows[i].face, "score", o->rows[i].score,
                                              "embedding", v));
    }
    json_t *doc = json_pack("{s:s,s:i,s:o}", "model", model, "dim", o->dim, "embeddings", list);
    int rc = json_dumpf(doc, f, JSON_INDENT(1) | JSON_REAL_PRECISION(8));
    fputc('\n', f);
    json_decref(doc);
    return rc;
}

/* NumPy .npy v1.0: magic, header length, a dict padded to 64 bytes. */
static int write_npy(const char *path, const embed_out *o)
{
    char header[128];
    FILE *f = fopen(path, "wb");
    if (!f)
        return -1;
    int len = snprintf(header, sizeof header,
                       "{'descr': '<f4', 'fortran_order': False, 'shape': (%zu, %d), }", o->n,
                       o->dim);
    int total = 10 + len + 1;
    int pad = (64 - total % 64) % 64;
    unsigned short hlen = (unsigned short)(len + pad + 1);
    fwrite("\x93NUMPY\x01\x00", 1, 8, f);
    fputc(hlen & 0xff, f);
    fputc(hlen >> 8, f);
    fwrite(header, 1, (size_t)len, f);
    for (int i = 0; i < pad; i++)
        fputc(' ', f);
    fputc('\n', f);
    fwrite(o->data, sizeof(float), o->n * (size_t)o->dim, f);
    int rc = ferror(f) ? -1 : 0;
    if (fclose(f) != 0)
        rc = -1;
    return rc;
}

static int write_npy_index(const char *npy_path, const embed_out *o)
{
    char path[PATH_MAX];
    snprintf(path, sizeof path, "%s.index.csv", npy_path);
    FILE *f = fopen(path, "w");
    if (!f)
        return -1;
    fprintf(f, "row,path,face,score\n");
    for (size_t i = 0; i < o->n; i++) {
        fprintf(f, "%zu,", i);
        csv_path(f, o->rows[i].path);
        fprintf(f, ",%d,%.6f\n", o->rows[i].face, o->rows[i].score);
    }
    return fclose(f) == 0 ? 0 : -1;
}

static facenet_status fn_cli_oom(facenet_error *err)
{
    err->code = FACENET_ERR_NO_MEMORY;
    snprintf(err->message, sizeof err->message, "out of memory");
    return FACENET_ERR_NO_MEMORY;
}

/* What one image gave: its faces' embeddings, or the message to print. */
typedef struct embed_result {
    int rc;
    char message[FACENET_ERROR_MESSAGE_MAX + 32]; /* empty when there is none */
    int first;    /* face index of the first embedding */
    size_t count; /* embeddings */
    float *scores; /* [count], owned */
    float *v;      /* [count][dim], owned */
} embed_result;

static void embed_image(facenet_detector *det, facenet_embedder *emb, const char *path,
                        int all_faces, int flip, int dim, embed_result *r)
{
    facenet_image *img = NULL;
    facenet_face *faces = NULL;
    size_t n = 0;
    facenet_error err;
    facenet_status st = facenet_image_load(path, NULL, &img, &err);

    if (st == FACENET_OK)
        st = facenet_detect(det, img, NULL, &faces, &n, &err);
    if (st == FACENET_OK && n == 0) {
        snprintf(r->message, sizeof r->message, "%s: no face found", path);
        r->rc = CLI_EXIT_PROBLEM;
    } else if (st == FACENET_OK) {
        size_t first = 0, count = n;
        if (!all_faces) {
            first = (size_t)facenet_pick_face(faces, n, facenet_image_width(img),
                                              facenet_image_height(img));
            count = 1;
        }
        r->v = malloc(count * (size_t)dim * sizeof *r->v);
        r->scores = malloc(count * sizeof *r->scores);
        if (!r->v || !r->scores)
            st = fn_cli_oom(&err);
        if (st == FACENET_OK)
            st = facenet_embed(emb, img, faces + first, count, flip, r->v, &err);
        if (st == FACENET_OK) {
            for (size_t i = 0; i < count; i++)
                r->scores[i] = faces[first + i].score;
            r->first = (int)first;
            r->count = count;
        }
    }
    if (st != FACENET_OK) {
        snprintf(r->message, sizeof r->message, "%s", err.message);
        r->rc = cli_exit_code(st);
    }
    free(faces);
    facenet_image_free(img);
}

typedef struct embed_job {
    const cli_paths *paths;
    embed_result *results; /* [paths->n] */
    int all_faces, flip, dim;
    atomic_size_t next;
} embed_job;

typedef struct embed_worker {
    embed_job *job;
    facenet_detector *det; /* owned by cmd_embed */
    facenet_embedder *emb; /* owned by cmd_embed */
    pthread_t tid;
} embed_worker;

static void *embed_worker_main(void *arg)
{
    embed_worker *w = arg;
    embed_job *j = w->job;
    for (;;) {
        size_t i = atomic_fetch_add(&j->next, 1);
        if (i >= j->paths->n)
            break;
        embed_image(w->det, w->emb, j->paths->items[i], j->all_faces, j->flip, j->dim,
                    &j->results[i]);
    }
    return NULL;
}

/* Image workers: $FACENET_THREADS when set, else one per core; never more
 * than there are images. */
static int embed_worker_count(size_t images)
{
    const char *env = getenv("FACENET_THREADS");
    long n = env && *env ? atol(env) : sysconf(_SC_NPROCESSORS_ONLN);
    if (n < 1)
        n = 1;
    if (n > 256)
        n = 256;
    if ((size_t)n > images)
        n = images ? (long)images : 1;
    return (int)n;
}

/* Run the workers (workers[0] has the caller's detector and embedder, the
 * others their own) and gather the results into `out` in input order.
 * Returns the highest exit code. */
static int embed_all(embed_worker *workers, int n_workers, embed_job *job, embed_out *out)
{
    int rc = CLI_EXIT_OK, started = 1;
    for (int t = 1; t < n_workers; t++)
        if (pthread_create(&workers[t].tid, NULL, embed_worker_main, &workers[t]) == 0)
            started++;
        else
            break;
    embed_worker_main(&workers[0]);
    for (int t = 1; t < started; t++)
        pthread_join(workers[t].tid, NULL);
    for (size_t i = 0; i < job->paths->n; i++) {
        embed_result *r = &job->results[i];
        if (r->message[0])
            fprintf(stderr, "facenet embed: %s\n", r->message);
        for (size_t k = 0; k < r->count && r->rc == CLI_EXIT_OK; k++)
            if (add_row(out, job->paths->items[i], r->first + (int)k, r->scores[k],
                        r->v + k * (size_t)out->dim) != 0) {
                fprintf(stderr, "facenet embed: out of memory\n");
                r->rc = CLI_EXIT_INTERNAL;
            }
        if (r->rc > rc)
            rc = r->rc;
        free(r->scores);
        free(r->v);
    }
    return rc;
}

int cmd_embed(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"model", required_argument, NULL, 'm'},  {"all-faces", no_argument, NULL, 'a'},
        {"flip", no_argument, NULL, 'f'},         {"format", required_argument, NULL, 'F'},
        {"output", required_argument, NULL, 'o'}, {"model-dir", required_argument, NULL, 'M'},
        {"help", no_argument, NULL, 'h'},         {"jitter", required_argument, NULL, 'J'},
        {NULL, 0, NULL, 0}};
    const char *model = NULL, *model_dir_opt = NULL, *format = "json", *output = NULL;
    int all_faces = 0, flip = 0, jitter = 0, c, rc = CLI_EXIT_OK;
    cli_paths paths = {0};
    facenet_detector *det = NULL;
    facenet_embedder *emb = NULL;
    embed_out out = {0};

    optind = 1;
    while ((c = getopt_long(argc, argv, "ho:", longopts, NULL)) != -1) {
        switch (c) {
        case 'm': model = optarg; break;
        case 'a': all_faces = 1; break;
        case 'f': flip = 1; break;
        case 'F': format = optarg; break;
        case 'o': output = optarg; break;
        case 'M': model_dir_opt = optarg; break;
        case 'J': {
            if (cli_parse_int(optarg, 1, FACENET_MAX_JITTERS, &jitter) != 0) {
                fprintf(stderr, "facenet embed: --jitter must be 1..%d\n", FACENET_MAX_JITTERS);
                return CLI_EXIT_USAGE;
            }
            break;
        }
        case 'h': fputs(embed_usage, stdout); return CLI_EXIT_OK;
        default: fputs(embed_usage, stderr); return CLI_EXIT_USAGE;
        }
    }
    if (strcmp(format, "json") != 0 && strcmp(format, "csv") != 0 && strcmp(format, "npy") != 0) {
        fprintf(stderr, "facenet embed: --format is json, csv or npy\n");
        return CLI_EXIT_USAGE;
    }
    if (strcmp(format, "npy") == 0 && !output) {
        fprintf(stderr, "facenet embed: --format npy needs --output FILE\n");
        return CLI_EXIT_USAGE;
    }
    if (optind >= argc) {
        fputs(embed_usage, stderr);
        return CLI_EXIT_USAGE;
    }
    if (cli_collect_images(argv + optind, argc - optind, &paths) != 0) {
        cli_paths_free(&paths);
        return CLI_EXIT_INPUT;
    }
    facenet_error jerr;
    int open_rc = cli_open_pipeline(model_dir_opt, model, &det, &emb);
    if (open_rc == CLI_EXIT_OK && facenet_embedder_set_jitter(emb, jitter, &jerr) != FACENET_OK)
        open_rc = cli_report(&jerr);
    if (open_rc != CLI_EXIT_OK) {
        facenet_embedder_free(emb);
        facenet_detector_free(det);
        cli_paths_free(&paths);
        return open_rc;
    }
    out.dim = facenet_embedder_dim(emb);
    {
        const int n_workers = embed_worker_count(paths.n);
        embed_worker *workers = calloc((size_t)n_workers, sizeof *workers);
        embed_job job = {&paths, calloc(paths.n ? paths.n : 1, sizeof(embed_result)), all_faces,
                         flip, out.dim, 0};
        int ready = workers && job.results ? 1 : 0;
        if (!ready) {
            fprintf(stderr, "facenet embed: out of memory\n");
            rc = CLI_EXIT_INTERNAL;
        } else {
            workers[0] = (embed_worker){&job, det, emb, 0};
            /* Each further worker loads its own networks (a session runs
             * one call at a time); the caller's pair was checked above. */
            while (ready < n_workers && rc == CLI_EXIT_OK) {
                embed_worker *w = &workers[ready];
                w->job = &job;
                rc = cli_open_pipeline(model_dir_opt, model, &w->det, &w->emb);
                if (rc == CLI_EXIT_OK)
                    ready++;
                if (rc == CLI_EXIT_OK &&
                    facenet_embedder_set_jitter(w->emb, jitter, &jerr) != FACENET_OK)
                    rc = cli_report(&jerr);
            }
        }
        if (rc == CLI_EXIT_OK) {
            /* The workers fill the cores; a lone worker (one image, one
             * core, FACENET_THREADS=1) lets its detector use every core
             * unless $FACENET_THREADS says otherwise. */
            const char *env_threads = getenv("FACENET_THREADS");
            long cpus = sysconf(_SC_NPROCESSORS_ONLN);
            if (n_workers > 1)
                for (int t = 0; t < n_workers; t++) {
                    facenet_detector_set_threads(workers[t].det, 1, NULL);
                    facenet_embedder_set_threads(workers[t].emb, 1, NULL);
                }
            else if ((!env_threads || !*env_threads) && cpus > 1)
                facenet_detector_set_threads(det, cpus > 256 ? 256 : (int)cpus, NULL);
            rc = embed_all(workers, n_workers, &job, &out);
        }
        for (int t = 1; workers && t < ready; t++) {
            facenet_embedder_free(workers[t].emb);
            facenet_detector_free(workers[t].det);
        }
        free(workers);
        free(job.results);
    }
    int wrc = 0;
    if (strcmp(format, "npy") == 0) {
        wrc = write_npy(output, &out);
        if (wrc == 0)
            wrc = write_npy_index(output, &out);
    } else {
        FILE *f = output ? fopen(output, "w") : stdout;
        if (!f) {
            wrc = -1;
        } else {
            wrc = strcmp(format, "csv") == 0 ? write_csv(f, &out)
                                             : write_json(f, &out, facenet_embedder_info(emb)->name);
            if (output && fclose(f) != 0)
                wrc = -1;
        }
    }
    if (wrc != 0) {
        fprintf(stderr, "facenet embed: cannot write %s\n", output ? output : "stdout");
        rc = CLI_EXIT_INTERNAL;
    }
    for (size_t i = 0; i < out.n; i++)
        free(out.rows[i].path);
    free(out.rows);
    free(out.data);
    facenet_embedder_free(emb);
    facenet_detector_free(det);
    cli_paths_free(&paths);
    return rc;
}
