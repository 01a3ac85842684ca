/*
 * cmd_align.c - `facenet align IN_DIR OUT_DIR`: align a class-per-folder
 * dataset, like davidsandberg/facenet's align_dataset_mtcnn.py.
 *
 * Workers (one detector each) take images from a shared counter; the main
 * thread draws the progress bar. An image whose output exists is skipped,
 * so an interrupted run resumes where it stopped. Failures are collected
 * and listed at the end; they never stop the run.
 */
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "align/align.h"
#include "cli/cli.h"
#include "cli/cli_util.h"
#include "image/handle.h"

static const char align_usage[] =
    "usage: facenet align [OPTIONS] IN_DIR OUT_DIR\n"
    "\n"
    "Detect and align every face image of a class-per-folder dataset\n"
    "(IN_DIR/person/image.jpg) into OUT_DIR/person/image.png, like facenet's\n"
    "align_dataset_mtcnn. Existing outputs are kept, so a stopped run resumes.\n"
    "\n"
    "  --template T       arcface112 (default; for MobileFaceNet), dlib150\n"
    "                     (for the dlib ResNet) or margin (facenet's box crop)\n"
    "  --image-size N     output side for --template margin (default 160)\n"
    "  --margin M         pixels around the box for --template margin (default 32)\n"
    "  --detect-multiple-faces  write every face (image_0.png, image_1.png...)\n"
    "                     instead of the one facenet would pick\n"
    "  --threads N        worker threads (default: all cores)\n"
    "  --min-size N       smallest face side in pixels (default 20)\n"
    "  --model-dir DIR    model cache (default: facenet models path)\n"
    "\n"
    "OUT_DIR/bounding_boxes.txt lists each output with its box (x1 y1 x2 y2),\n"
    "or the input alone when it failed. Exit codes: 0 every image aligned,\n"
    "1 some images failed or had no face (listed at the end), 2 usage,\n"
    "3 models missing or altered.\n";

typedef struct align_job {
    const char *input;
    char output[PATH_MAX];   /* first output file                      */
    int status;              /* 0 pending, 1 done, 2 skipped, 3 failed */
    char message[256];
    int n_written;
    float box[4];            /* of the first written face              */
} align_job;

typedef struct align_ctx {
    align_job *jobs;
    size_t n_jobs;
    atomic_size_t next, finished;
    const char *model_dir, *in_dir, *out_dir;
    int tmpl;                 /* ALIGN_* or 0 for margin */
    int size, margin, multiple, min_size;
    atomic_int fatal;         /* a worker could not load models */
    char fatal_message[FACENET_ERROR_MESSAGE_MAX];
} align_ctx;

static facenet_status fn_cli_fail_io(facenet_error *err, const char *path)
{
    err->code = FACENET_ERR_IO;
    snprintf(err->message, sizeof err->message, "%s: %s", path, strerror(errno));
    return FACENET_ERR_IO;
}

static int make_dirs(const char *path)
{
    char tmp[PATH_MAX];
    snprintf(tmp, sizeof tmp, "%s", path);
    for (char *p = tmp + 1; *p; p++) {
        if (*p != '/')
            continue;
        *p = '\0';
        if (mkdir(tmp, 0755) != 0 && errno != EEXIST)
            return -1;
        *p = '/';
    }
    return mkdir(tmp, 0755) != 0 && errno != EEXIST ? -1 : 0;
}

/* OUT_DIR/<path relative to IN_DIR without extension><suffix>.png */
static void output_path(const align_ctx *ctx, const char *input, int face, char *out,
                        size_t size)
{
    const char *rel = input + strlen(ctx->in_dir);
    while (*rel == '/')
        rel++;
    const char *dot = strrchr(rel, '.');
    int stem = dot ? (int)(dot - rel) : (int)strlen(rel);
    if (face < 0)
        snprintf(out, size, "%s/%.*s.png", ctx->out_dir, stem, rel);
    else
        snprintf(out, size, "%s/%.*s_%d.png", ctx->out_dir, stem, rel, face);
}

static facenet_status write_crop(const float *crop, int size, const char *path,
                                 facenet_error *err)
{
    img_rgb8 *rgb = NULL;
    char dir[PATH_MAX];
    facenet_status st = img_rgb8_new(size, size, &rgb, err);
    if (st != FACENET_OK)
        return st;
    for (int y = 0; y < size; y++)
        for (int x = 0; x < size * 3; x++) {
            float v = crop[(size_t)y * size * 3 + x] + 0.5f;
            rgb->pixels[(size_t)y * rgb->stride + x] = (uint8_t)(v < 0 ? 0 : v > 255 ? 255 : v);
        }
    snprintf(dir, sizeof dir, "%s", path);
    char *slash = strrchr(dir, '/');
    if (slash) {
        *slash = '\0';
        if (make_dirs(dir) != 0) {
            img_rgb8_free(rgb);
            return fn_cli_fail_io(err, dir);
        }
    }
    /* Write to a temporary name and rename, so a killed run never leaves
     * a half-written image that the resume logic would take as done. */
    char tmp[PATH_MAX];
    snprintf(tmp, sizeof tmp, "%s.part", path);
    st = img_write_png(rgb, tmp, err);
    img_rgb8_free(rgb);
    if (st == FACENET_OK && rename(tmp, path) != 0)
        st = fn_cli_fail_io(err, path);
    if (st != FACENET_OK)
        unlink(tmp);
    return st;
}

static void align_one(align_ctx *ctx, facenet_detector *det, align_job *job, float *crop)
{
    facenet_image *img = NULL;
    facenet_face *faces = NULL;
    img_f32 *f = NULL;
    size_t n = 0;
    facenet_error err;
    facenet_detect_options opt;
    struct stat st_out;

    output_path(ctx, job->input, ctx->multiple ? 0 : -1, job->output, sizeof job->output);
    if (stat(job->output, &st_out) == 0) {
        job->status = 2;
        return;
    }
    facenet_detect_options_default(&opt);
    opt.min_size = ctx->min_size;
    facenet_status st = facenet_image_load(job->input, NULL, &img, &err);
    if (st == FACENET_OK)
        st = facenet_detect(det, img, &opt, &faces, &n, &err);
    if (st == FACENET_OK && n == 0) {
        snprintf(job->message, sizeof job->message, "no face found");
        job->status = 3;
        goto done;
    }
    if (st == FACENET_OK)
        st = img_rgb8_to_f32(fn_image_rgb(img), &f, &err);
    size_t first = 0, count = n;
    if (st == FACENET_OK && !ctx->multiple) {
        first = (size_t)facenet_pick_face(faces, n, facenet_image_width(img),
                                          facenet_image_height(img));
        count = 1;
    }
    for (size_t i = first; st == FACENET_OK && i < first + count; i++) {
        char path[PATH_MAX];
        if (ctx->tmpl) {
            double lm[5][2];
            for (int k = 0; k < 5; k++) {
                lm[k][0] = faces[i].landmarks[k][0];
                lm[k][1] = faces[i].landmarks[k][1];
            }
            st = align_crop(f, lm, (align_template)ctx->tmpl, crop, &err);
        } else {
            double box[4] = {faces[i].box[0], faces[i].box[1], faces[i].box[2], faces[i].box[3]};
            st = align_margin_crop(f, box, ctx->margin, ctx->size, crop, &err);
        }
        output_path(ctx, job->input, ctx->multiple ? (int)i : -1, path, sizeof path);
        if (st == FACENET_OK)
            st = write_crop(crop, ctx->size, path, &err);
        if (st == FACENET_OK && job->n_written++ == 0)
            memcpy(job->box, faces[i].box, sizeof job->box);
    }
    if (st != FACENET_OK) {
        snprintf(job->message, sizeof job->message, "%s", err.message);
        job->status = 3;
    } else {
        job->status = 1;
    }
done:
    img_f32_free(f);
    free(faces);
    facenet_image_free(img);
}

static void *worker(void *arg)
{
    align_ctx *ctx = arg;
    facenet_detector *det = NULL;
    facenet_error err;
    float *crop = malloc((size_t)ctx->size * ctx->size * 3 * sizeof *crop);

    /* One thread per detector: the workers already fill the cores. */
    if (!crop || facenet_detector_create(ctx->model_dir, &det, &err) != FACENET_OK ||
        facenet_detector_set_threads(det, 1, &err) != FACENET_OK) {
        if (atomic_exchange(&ctx->fatal, 1) == 0)
            snprintf(ctx->fatal_message, sizeof ctx->fatal_message, "%s",
                     crop ? err.message : "out of memory");
        free(crop);
        return NULL;
    }
    for (;;) {
        if (atomic_load(&ctx->fatal))
            break;
        size_t i = atomic_fetch_add(&ctx->next, 1);
        if (i >= ctx->n_jobs)
            break;
        align_one(ctx, det, &ctx->jobs[i], crop);
        atomic_fetch_add(&ctx->finished, 1);
    }
    facenet_detector_free(det);
    free(crop);
    return NULL;
}

static double now_seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static void progress(size_t done, size_t total, double elapsed, int final)
{
    const int width = 30;
    int fill = total ? (int)((double)done / (double)total * width) : width;
    double rate = elapsed > 0 ? done / elapsed : 0;
    double eta = rate > 0 ? (double)(total - done) / rate : 0;
    fprintf(stderr, "\r[%.*s%*s] %zu/%zu  %.1f img/s  ETA %02d:%02d%s", fill,
            "##############################", width - fill, "", done, total, rate,
            (int)eta / 60, (int)eta % 60, final ? "\n" : "");
    fflush(stderr);
}

static int write_box_list(const align_ctx *ctx)
{
    char path[PATH_MAX];
    snprintf(path, sizeof path, "%s/bounding_boxes.txt", ctx->out_dir);
    /* Appended, so a resumed run adds the images it processed. */
    FILE *f = fopen(path, "a");
    if (!f)
        return -1;
    for (size_t i = 0; i < ctx->n_jobs; i++) {
        const align_job *j = &ctx->jobs[i];
        if (j->status == 1)
            fprintf(f, "%s %.0f %.0f %.0f %.0f\n", j->output, j->box[0], j->box[1], j->box[2],
                    j->box[3]);
        else if (j->status == 3)
            fprintf(f, "%s\n", j->input);
    }
    return fclose(f) == 0 ? 0 : -1;
}

int cmd_align(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"template", required_argument, NULL, 't'},
        {"image-size", required_argument, NULL, 's'},
        {"margin", required_argument, NULL, 'm'},
        {"detect-multiple-faces", no_argument, NULL, 'D'},
        {"threads", required_argument, NULL, 'j'},
        {"min-size", required_argument, NULL, 'n'},
        {"model-dir", required_argument, NULL, 'M'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0}};
    const char *tmpl_name = "arcface112", *model_dir_opt = NULL;
    char model_dir[PATH_MAX];
    int threads = (int)sysconf(_SC_NPROCESSORS_ONLN), c;
    align_ctx ctx;
    cli_paths paths = {0};

    memset(&ctx, 0, sizeof ctx);
    ctx.size = 160;
    ctx.margin = 32;
    ctx.min_size = 20;
    optind = 1;
    while ((c = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
        int bad = 0;
        switch (c) {
        case 't': tmpl_name = optarg; break;
        case 's': bad = cli_parse_int(optarg, 16, 1024, &ctx.size); break;
        case 'm': bad = cli_parse_int(optarg, 0, 1024, &ctx.margin); break;
        case 'D': ctx.multiple = 1; break;
        case 'j': bad = cli_parse_int(optarg, 1, 256, &threads); break;
        case 'n': bad = cli_parse_int(optarg, 12, 100000, &ctx.min_size); break;
        case 'M': model_dir_opt = optarg; break;
        case 'h': fputs(align_usage, stdout); return CLI_EXIT_OK;
        default: fputs(align_usage, stderr); return CLI_EXIT_USAGE;
        }
        if (bad) {
            fprintf(stderr, "facenet align: value '%s' is out of range\n", optarg);
            return CLI_EXIT_USAGE;
        }
    }
    if (argc - optind != 2) {
        fputs(align_usage, stderr);
        return CLI_EXIT_USAGE;
    }
    if (threads < 1)
        threads = 1;
    if (strcmp(tmpl_name, "margin") == 0) {
        ctx.tmpl = 0;
    } else {
        align_template t;
        if (!align_template_from_name(tmpl_name, &t)) {
            fprintf(stderr, "facenet align: --template is arcface112, dlib150 or margin\n");
            return CLI_EXIT_USAGE;
        }
        ctx.tmpl = (int)t;
        ctx.size = align_template_size(t);
    }
    ctx.in_dir = argv[optind];
    ctx.out_dir = argv[optind + 1];
    struct stat st_in;
    if (stat(ctx.in_dir, &st_in) != 0 || !S_ISDIR(st_in.st_mode)) {
        fprintf(stderr, "facenet align: %s is not a directory\n", ctx.in_dir);
        return CLI_EXIT_USAGE;
    }
    if (make_dirs(ctx.out_dir) != 0) {
        fprintf(stderr, "facenet align: cannot create %s: %s\n", ctx.out_dir, strerror(errno));
        return CLI_EXIT_INPUT;
    }
    if (cli_model_dir(model_dir_opt, model_dir, sizeof model_dir) != 0)
        return CLI_EXIT_MODEL;
    ctx.model_dir = model_dir;
    /* Every regular file counts, not only image names: junk among the
     * photos is reported per file rather than silently ignored. */
    if (cli_collect_files(ctx.in_dir, &paths) != 0) {
        cli_paths_free(&paths);
        return CLI_EXIT_INPUT;
    }
    ctx.n_jobs = paths.n;
    ctx.jobs = calloc(paths.n ? paths.n : 1, sizeof *ctx.jobs);
    if (!ctx.jobs) {
        cli_paths_free(&paths);
        return CLI_EXIT_INTERNAL;
    }
    for (size_t i = 0; i < paths.n; i++)
        ctx.jobs[i].input = paths.items[i];
    if ((size_t)threads > paths.n)
        threads = paths.n ? (int)paths.n : 1;

    pthread_t *tids = calloc((size_t)threads, sizeof *tids);
    int started = 0;
    double t0 = now_seconds();
    for (int i = 0; tids && i < threads; i++)
        if (pthread_create(&tids[started], NULL, worker, &ctx) == 0)
            started++;
    int tty = isatty(STDERR_FILENO);
    while (started > 0 && atomic_load(&ctx.finished) < ctx.n_jobs && !atomic_load(&ctx.fatal)) {
        if (tty)
            progress(atomic_load(&ctx.finished), ctx.n_jobs, now_seconds() - t0, 0);
        usleep(200000);
    }
    for (int i = 0; i < started; i++)
        pthread_join(tids[i], NULL);
    free(tids);
    progress(atomic_load(&ctx.finished), ctx.n_jobs, now_seconds() - t0, 1);

    int rc = CLI_EXIT_OK;
    if (started == 0 || atomic_load(&ctx.fatal)) {
        fprintf(stderr, "facenet align: %s\n", started ? ctx.fatal_message : "no threads");
        rc = CLI_EXIT_MODEL;
    } else {
        size_t done = 0, skipped = 0, failed = 0;
        for (size_t i = 0; i < ctx.n_jobs; i++) {
            done += ctx.jobs[i].status == 1;
            skipped += ctx.jobs[i].status == 2;
            failed += ctx.jobs[i].status == 3;
        }
        if (write_box_list(&ctx) != 0) {
            fprintf(stderr, "facenet align: cannot write %s/bounding_boxes.txt\n", ctx.out_dir);
            rc = CLI_EXIT_INTERNAL;
        }
        if (failed) {
            fprintf(stderr, "failures:\n");
            for (size_t i = 0; i < ctx.n_jobs; i++)
                if (ctx.jobs[i].status == 3)
                    fprintf(stderr, "  %s: %s\n", ctx.jobs[i].input, ctx.jobs[i].message);
            if (rc == CLI_EXIT_OK)
                rc = CLI_EXIT_PROBLEM;
        }
        printf("aligned %zu, already done %zu, failed %zu, of %zu files (%.1f s)\n", done,
               skipped, failed, ctx.n_jobs, now_seconds() - t0);
    }
    free(ctx.jobs);
    cli_paths_free(&paths);
    return rc;
}
