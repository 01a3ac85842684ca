/*
 * cmd_compare.c - `facenet compare IMG...`: the similarity matrix of the
 * main face of each photo, and a same/different verdict per pair.
 *
 * One metric throughout: cosine similarity of unit embeddings (higher is
 * more alike). facenet's scripts mixed plain L2, squared L2 and cosine;
 * we print the squared-L2 equivalent once in the header so users of those
 * scripts can translate.
 */
#include <getopt.h>
#include <jansson.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "cli/cli_util.h"

static const char compare_usage[] =
    "usage: facenet compare [OPTIONS] IMG IMG...\n"
    "\n"
    "Detect the main face of each image (the one facenet's aligner would pick),\n"
    "embed it, and print the cosine-similarity matrix and a verdict per pair:\n"
    "'same' when the similarity is at least the model's calibrated threshold.\n"
    "By default that is the strict one, fitted at a false-accept rate of 1e-3\n"
    "on LFW: a false match is the costly error, and the best-accuracy threshold\n"
    "matched 5 of 29 pairs of different people in the demo group photos (the\n"
    "strict one 1), for 0.8% more misses of the same person on LFW\n"
    "(docs/ACCURACY.md).\n"
    "\n"
    "  --model NAME      embedding model (default mobilefacenet; see 'facenet\n"
    "                    models list')\n"
    "  --flip            add the mirrored face's embedding (slower, a little\n"
    "                    more accurate)\n"
    "  --jitter N        dlib's num_jitters: embed N jittered copies of each face\n"
    "                    (N times slower); needs a threshold calibrated with the\n"
    "                    same N ('facenet validate --calibrate --jitter N') or\n"
    "                    --threshold\n"
    "  --threshold T     override the model's threshold (cosine similarity)\n"
    "  --strict          the strict threshold, FAR 1e-3 on LFW (the default)\n"
    "  --best-accuracy   the threshold with the best LFW accuracy instead (more\n"
    "                    matches of the same person, about 2.3x the false matches)\n"
    "\n"
    "The thresholds are the manifest's LFW-calibrated ones unless the model\n"
    "directory has a thresholds.json ('facenet validate --calibrate') with an\n"
    "entry for the model (NAME+flip with --flip, NAME+jitterN with --jitter N);\n"
    "the output names the source.\n"
    "  --json            one JSON document on stdout\n"
    "  --model-dir DIR   model cache (default: facenet models path)\n"
    "\n"
    "Exit codes: 0 ok, 1 an image had no face, 2 usage, 3 models missing or\n"
    "altered, 4 an image or the thresholds file could not be read.\n";

typedef struct compare_item {
    const char *path;
    int ok;          /* embedding present */
    size_t n_faces;
    int picked;
    float score;
    char error[FACENET_ERROR_MESSAGE_MAX];
} compare_item;

static int embed_one(facenet_detector *det, facenet_embedder *emb, int flip,
                     compare_item *item, float *embedding)
{
    facenet_image *img = NULL;
    facenet_face *faces = NULL;
    size_t n = 0;
    facenet_error err;
    int rc = CLI_EXIT_OK;
    facenet_status st = facenet_image_load(item->path, NULL, &img, &err);

    if (st == FACENET_OK)
        st = facenet_detect(det, img, NULL, &faces, &n, &err);
    if (st != FACENET_OK) {
        snprintf(item->error, sizeof item->error, "%s", err.message);
        rc = cli_exit_code(st);
    } else if (n == 0) {
        snprintf(item->error, sizeof item->error, "%s: no face found", item->path);
        rc = CLI_EXIT_PROBLEM;
    } else {
        item->n_faces = n;
        item->picked = facenet_pick_face(faces, n, facenet_image_width(img),
                                         facenet_image_height(img));
        item->score = faces[item->picked].score;
        st = facenet_embed(emb, img, &faces[item->picked], 1, flip, embedding, &err);
        if (st != FACENET_OK) {
            snprintf(item->error, sizeof item->error, "%s", err.message);
            rc = cli_exit_code(st);
        } else {
            item->ok = 1;
        }
    }
    free(faces);
    facenet_image_free(img);
    return rc;
}

static void print_text(const facenet_model_info *info, float threshold, const char *source,
                       const compare_item *items, size_t n, const float *emb, int dim)
{
    printf("model: %s (%d-D); metric: cosine similarity, match when >= %.4f\n"
           "threshold from: %s\n"
           "(for unit embeddings, squared L2 distance = 2 - 2 x similarity)\n\n",
           info->name, dim, threshold, source);
    for (size_t i = 0; i < n; i++) {
        if (items[i].ok)
            printf("%3zu: %s (face %d of %zu, score %.3f)\n", i, items[i].path,
                   items[i].picked, items[i].n_faces, items[i].score);
        else
            printf("%3zu: %s (skipped: %s)\n", i, items[i].path, items[i].error);
    }
    printf("\nsimilarity matrix:\n     ");
    for (size_t j = 0; j < n; j++)
        printf(" %7zu", j);
    printf("\n");
    for (size_t i = 0; i < n; i++) {
        printf("%3zu  ", i);
        for (size_t j = 0; j < n; j++) {
            if (items[i].ok && items[j].ok)
                printf(" %7.4f", facenet_similarity(emb + i * dim, emb + j * dim, dim));
            else
                printf(" %7s", "-");
        }
        printf("\n");
    }
    printf("\nverdicts:\n");
    for (size_t i = 0; i < n; i++)
        for (size_t j = i + 1; j < n; j++) {
            if (!items[i].ok || !items[j].ok)
                continue;
            float s = facenet_similarity(emb + i * dim, emb + j * dim, dim);
            printf("  %s vs %s: %.4f %s\n", items[i].path, items[j].path, s,
                   s >= threshold ? "SAME" : "different");
        }
}

static void print_json(const facenet_model_info *info, float threshold, const char *source,
                       const compare_item *items, size_t n, const float *emb, int dim)
{
    json_t *images = json_array(), *pairs = json_array();
    for (size_t i = 0; i < n; i++) {
        if (items[i].ok)
            json_array_append_new(images, json_pack("{s:s,s:i,s:i,s:f}", "path", items[i].path,
                                                    "faces", (int)items[i].n_faces, "face",
                                                    items[i].picked, "score", items[i].score));
        else
            json_array_append_new(images, json_pack("{s:s,s:s}", "path", items[i].path, "error",
                                                    items[i].error));
    }
    for (size_t i = 0; i < n; i++)
        for (size_t j = i + 1; j < n; j++) {
            if (!items[i].ok || !items[j].ok)
                continue;
            float s = facenet_similarity(emb + i * dim, emb + j * dim, dim);
            json_array_append_new(pairs, json_pack("{s:i,s:i,s:f,s:f,s:b}", "a", (int)i, "b",
                                                   (int)j, "similarity", s, "squared_l2",
                                                   2.0 - 2.0 * s, "same", s >= threshold));
        }
    json_t *doc = json_pack("{s:s,s:s,s:f,s:s,s:o,s:o}", "model", info->name, "metric", "cosine",
                            "threshold", threshold, "threshold_source", source, "images", images,
                            "pairs", pairs);
    json_dumpf(doc, stdout, JSON_INDENT(2) | JSON_REAL_PRECISION(7));
    fputc('\n', stdout);
    json_decref(doc);
}

int cmd_compare(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"model", required_argument, NULL, 'm'},     {"flip", no_argument, NULL, 'f'},
        {"threshold", required_argument, NULL, 't'}, {"json", no_argument, NULL, 'j'},
        {"strict", no_argument, NULL, 's'}, {"best-accuracy", no_argument, NULL, 'b'},
        {"model-dir", required_argument, NULL, 'M'}, {"help", no_argument, NULL, 'h'},
        {"jitter", required_argument, NULL, 'J'},    {NULL, 0, NULL, 0}};
    const char *model = NULL, *model_dir_opt = NULL;
    int flip = 0, json = 0, strict = 1, jitter = 0, c, rc = CLI_EXIT_OK;
    float threshold = -2;
    cli_paths paths = {0};
    facenet_detector *det = NULL;
    facenet_embedder *emb = NULL;

    optind = 1;
    while ((c = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
        switch (c) {
        case 'm': model = optarg; break;
        case 'f': flip = 1; break;
        case 's': strict = 1; break;
        case 'b': strict = 0; break;
        case 'j': json = 1; break;
        case 'M': model_dir_opt = optarg; break;
        case 'J': {
            if (cli_parse_int(optarg, 1, FACENET_MAX_JITTERS, &jitter) != 0) {
                fprintf(stderr, "facenet compare: --jitter is a count in [1, %d]\n",
                        FACENET_MAX_JITTERS);
                return CLI_EXIT_USAGE;
            }
            break;
        }
        case 't': {
            if (cli_parse_cosine(optarg, &threshold) != 0) {
                fprintf(stderr, "facenet compare: --threshold is a cosine similarity in [-1, 1]\n");
                return CLI_EXIT_USAGE;
            }
            break;
        }
        case 'h': fputs(compare_usage, stdout); return CLI_EXIT_OK;
        default: fputs(compare_usage, stderr); return CLI_EXIT_USAGE;
        }
    }
    if (argc - optind < 1) {
        fputs(compare_usage, stderr);
        return CLI_EXIT_USAGE;
    }
    if (cli_collect_images(argv + optind, argc - optind, &paths) != 0) {
        cli_paths_free(&paths);
        return CLI_EXIT_INPUT;
    }
    int open_rc = cli_open_pipeline(model_dir_opt, model, &det, &emb);
    if (open_rc != CLI_EXIT_OK) {
        cli_paths_free(&paths);
        return open_rc;
    }
    if (jitter > 0) {
        facenet_error err;
        if (facenet_embedder_set_jitter(emb, jitter, &err) != FACENET_OK) {
            facenet_embedder_free(emb);
            facenet_detector_free(det);
            cli_paths_free(&paths);
            return cli_report(&err);
        }
    }
    const facenet_model_info *info = facenet_embedder_info(emb);
    int dim = facenet_embedder_dim(emb);
    char source[FACENET_THRESHOLD_SOURCE_MAX + 64];
    snprintf(source, sizeof source, "--threshold");
    if (threshold < -1) {
        char dir[4096];
        facenet_thresholds thr;
        facenet_error err;
        int bad = cli_model_dir(model_dir_opt, dir, sizeof dir) != 0 ? CLI_EXIT_MODEL : 0;
        float calibrated = 0;
        if (!bad &&
            facenet_model_thresholds_jitter(dir, info, flip, jitter, &thr, &err) != FACENET_OK)
            bad = cli_report(&err);
        /* Fail closed: a model without a calibrated threshold gives no
         * verdicts unless the user chooses one. */
        if (!bad) {
            calibrated = strict ? thr.threshold_strict : thr.threshold;
            if (!(calibrated > 0)) {
                fprintf(stderr, "facenet compare: model %s has no calibrated %sthreshold%s; "
                                "pass --threshold%s\n", info->name, strict ? "strict " : "",
                        jitter ? " for --jitter (run 'facenet validate --calibrate --jitter N')"
                               : "",
                        strict ? " or --best-accuracy" : "");
                bad = CLI_EXIT_USAGE;
            }
        }
        if (bad) {
            facenet_embedder_free(emb);
            facenet_detector_free(det);
            cli_paths_free(&paths);
            return bad;
        }
        threshold = calibrated;
        snprintf(source, sizeof source, "%s%s", thr.source,
                 strict ? " (strict: FAR 1e-3)" : " (best accuracy)");
    }
    compare_item *items = calloc(paths.n, sizeof *items);
    float *embeddings = calloc(paths.n * (size_t)dim, sizeof *embeddings);
    if (!items || !embeddings) {
        fprintf(stderr, "facenet compare: out of memory\n");
        rc = CLI_EXIT_INTERNAL;
    }
    for (size_t i = 0; rc != CLI_EXIT_INTERNAL && i < paths.n; i++) {
        items[i].path = paths.items[i];
        int r = embed_one(det, emb, flip, &items[i], embeddings + i * (size_t)dim);
        if (r != CLI_EXIT_OK) {
            fprintf(stderr, "facenet compare: %s\n", items[i].error);
            if (r > rc)
                rc = r;
        }
    }
    if (items && embeddings) {
        if (json)
            print_json(info, threshold, source, items, paths.n, embeddings, dim);
        else
            print_text(info, threshold, source, items, paths.n, embeddings, dim);
    }
    free(items);
    free(embeddings);
    facenet_embedder_free(emb);
    facenet_detector_free(det);
    cli_paths_free(&paths);
    return rc;
}
