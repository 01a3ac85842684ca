/*
 * cmd_bench.c - `facenet bench`: latency of each model on one input.
 *
 * Not a test: a measurement. Each model runs on a deterministic input of
 * its natural size (P-Net on the first pyramid level of a 640x480 photo),
 * after one warm-up run; we report the median and the best of N runs, the
 * multiply-accumulates per run and the resulting GMAC/s.
 */
#include <getopt.h>
#include <jansson.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli/cli.h"
#include "cli/cli_util.h"

static const char bench_usage[] =
    "usage: facenet bench [OPTIONS]\n"
    "\n"
    "Time every model (or --model NAME) on one input and print the median and\n"
    "best latency, MACs per run and GMAC/s. Inputs: P-Net 384x288 (the first\n"
    "pyramid level of a 640x480 photo at min face 20), R-Net 24x24, O-Net\n"
    "48x48, MobileFaceNet 112x112, dlib ResNet 150x150.\n"
    "\n"
    "  --model NAME      one model only\n"
    "  --runs N          timed runs per model (default 20)\n"
    "  --batch N         batch size (default 1)\n"
    "  --json            JSON output\n"
    "  --model-dir DIR   model cache (default: facenet models path)\n";

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static int compare_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static void bench_input_size(const facenet_model_info *info, int *h, int *w)
{
    *h = info->input_height;
    *w = info->input_width;
    if (strcmp(info->name, "mtcnn-pnet") == 0) {
        /* Transposed, as MTCNN feeds it: [N, W, H, 3]. */
        *h = 384;
        *w = 288;
    }
}

static int bench_model(const char *dir, const facenet_model_info *info, int runs, int batch,
                       json_t *results)
{
    facenet_model *model = NULL;
    facenet_session *s = NULL;
    facenet_error err;
    int h, w, rc = CLI_EXIT_OK;
    double *times = calloc((size_t)runs, sizeof *times);

    bench_input_size(info, &h, &w);
    size_t count = (size_t)batch * h * w * 3;
    float *input = malloc(count * sizeof *input);
    if (!times || !input) {
        free(times);
        free(input);
        return CLI_EXIT_INTERNAL;
    }
    for (size_t i = 0; i < count; i++)
        input[i] = (float)((i * 7919) % 256) / 128.0f - 1.0f;
    double t0 = now_ms();
    if (facenet_model_load(dir, info, &model, &err) != FACENET_OK ||
        facenet_session_create(model, &s, &err) != FACENET_OK ||
        facenet_session_run(s, input, batch, h, w, 3, &err) != FACENET_OK) {
        rc = cli_report(&err);
        goto done;
    }
    double load_ms = now_ms() - t0;
    for (int r = 0; r < runs; r++) {
        double start = now_ms();
        facenet_session_run(s, input, batch, h, w, 3, NULL);
        times[r] = now_ms() - start;
    }
    qsort(times, (size_t)runs, sizeof *times, compare_double);
    double median = times[runs / 2], best = times[0];
    int64_t macs = facenet_model_macs(model, batch, h, w, 3);
    double gmacs = (double)macs / (median * 1e6);
    if (results) {
        json_array_append_new(results,
                              json_pack("{s:s,s:i,s:i,s:i,s:f,s:f,s:f,s:I,s:f}", "model",
                                        info->name, "batch", batch, "height", h, "width", w,
                                        "median_ms", median, "best_ms", best, "first_run_ms",
                                        load_ms, "macs", (json_int_t)macs, "gmac_per_s", gmacs));
    } else {
        printf("%-18s %4d  %4dx%-4d %9.2f %9.2f %9.1f %8.2f\n", info->name, batch, h, w, median,
               best, (double)macs / 1e6, gmacs);
    }
done:
    facenet_session_free(s);
    facenet_model_free(model);
    free(times);
    free(input);
    return rc;
}

int cmd_bench(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"model", required_argument, NULL, 'm'}, {"runs", required_argument, NULL, 'r'},
        {"batch", required_argument, NULL, 'b'}, {"json", no_argument, NULL, 'j'},
        {"model-dir", required_argument, NULL, 'M'}, {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0}};
    const char *only = NULL, *model_dir_opt = NULL;
    char dir[PATH_MAX];
    int runs = 20, batch = 1, json = 0, c, rc = CLI_EXIT_OK;
    json_t *results = NULL;

    optind = 1;
    while ((c = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
        switch (c) {
        case 'm': only = optarg; break;
        case 'r': runs = atoi(optarg); break;
        case 'b': batch = atoi(optarg); break;
        case 'j': json = 1; break;
        case 'M': model_dir_opt = optarg; break;
        case 'h': fputs(bench_usage, stdout); return CLI_EXIT_OK;
        default: fputs(bench_usage, stderr); return CLI_EXIT_USAGE;
        }
    }
    if (runs < 1 || runs > 10000 || batch < 1 || batch > 256 || optind != argc) {
        fputs(bench_usage, stderr);
        return CLI_EXIT_USAGE;
    }
    if (only && !facenet_model_find(only)) {
        fprintf(stderr, "facenet bench: no model named '%s'\n", only);
        return CLI_EXIT_USAGE;
    }
    if (cli_model_dir(model_dir_opt, dir, sizeof dir) != 0)
        return CLI_EXIT_MODEL;
    if (json)
        results = json_array();
    else
        printf("%-18s %5s %10s %9s %9s %9s %8s\n", "model", "batch", "input", "median_ms",
               "best_ms", "MMAC", "GMAC/s");
    for (size_t i = 0; i < facenet_model_count(); i++) {
        const facenet_model_info *info = facenet_model_at(i);
        if (only && strcmp(only, info->name) != 0)
            continue;
        int r = bench_model(dir, info, runs, batch, results);
        if (r > rc)
            rc = r;
    }
    if (json) {
        json_t *doc = json_pack("{s:s,s:i,s:o}", "backend", "reference", "runs", runs, "results",
                                results);
        json_dumpf(doc, stdout, JSON_INDENT(2) | JSON_REAL_PRECISION(6));
        fputc('\n', stdout);
        json_decref(doc);
    }
    return rc;
}
