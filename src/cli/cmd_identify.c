/*
 * cmd_identify.c - `facenet identify --gallery G IMG...`: who is in each
 * photo, or "unknown".
 *
 * The gallery decides the model: its templates were made by one embedder,
 * and the query must come from the same pinned file. The answer for a face
 * is its best subject when that subject's score reaches the gallery's
 * open-set threshold (or --threshold), and "unknown" otherwise, never the
 * nearest stranger.
 */
#include <getopt.h>
#include <jansson.h>
#include <limits.h>
#include <math.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "cli/cli_util.h"
#include "cli/gallery_util.h"

static const char identify_usage[] =
    "usage: facenet identify --gallery G [OPTIONS] IMG|DIR...\n"
    "\n"
    "Detect the main face of each image (or every face with --all-faces),\n"
    "search the gallery and print the best subject with its cosine\n"
    "similarity, or 'unknown' when no subject reaches the threshold.\n"
    "\n"
    "  --gallery G         gallery file (required)\n"
    "  --key-file K        key file (default: $FACENET_GALLERY_KEY)\n"
    "  -k N                also list the N best subjects (default 1)\n"
    "  --threshold T       open-set threshold (default: the gallery's)\n"
    "  --collection C      search one collection only\n"
    "  --all-faces         identify every face, not only the main one\n"
    "  --exact             float search only (default: 4-bit scan, float rerank)\n"
    "  --flip              add the mirrored face (use it if enrollment did)\n"
    "  --json              one JSON document on stdout\n"
    "  --model-dir DIR     model cache (default: facenet models path)\n"
    "\n"
    "Exit codes: 0 ok (including 'unknown'), 1 an image had no face, 2 usage,\n"
    "3 models missing or altered, 4 an image or the gallery could not be read\n"
    "(wrong key, another model, damaged file).\n";

typedef struct identify_opts {
    int k, all_faces, exact, json;
    float threshold;
    const char *collection;
} identify_opts;

static json_t *match_json(const facenet_gallery_match *m)
{
    return json_pack("{s:s,s:s,s:f,s:I,s:I,s:b}", "subject", m->subject, "collection",
                     m->collection, "score", m->score, "subject_id", (json_int_t)m->subject_id,
                     "template_id", (json_int_t)m->template_id, "accepted", m->accepted);
}

static void print_face(const char *path, size_t face_index, const facenet_face *f,
                       const facenet_gallery_match *m, size_t n, float threshold,
                       const identify_opts *o)
{
    printf("%s: face %zu [%.0f,%.0f,%.0f,%.0f]: ", path, face_index, f->box[0], f->box[1],
           f->box[2], f->box[3]);
    if (n > 0 && m[0].accepted)
        printf("%s (%.4f)\n", m[0].subject, m[0].score);
    else if (n > 0)
        printf("unknown (best %s %.4f < %.4f)\n", m[0].subject, m[0].score, threshold);
    else
        printf("unknown (empty gallery)\n");
    if (o->k > 1)
        for (size_t i = 0; i < n; i++)
            printf("    %zu. %-40s %.4f%s\n", i + 1, m[i].subject, m[i].score,
                   m[i].accepted ? "" : "  (below threshold)");
}

static int identify_one(facenet_gallery *g, gcli_pipeline *p, const char *path,
                        const identify_opts *o, float threshold, facenet_gallery_match *matches,
                        json_t *results)
{
    facenet_face *faces = NULL;
    float *emb = NULL;
    size_t n_faces = 0;
    int picked = -1;
    char sha[65], why[FACENET_ERROR_MESSAGE_MAX + PATH_MAX];
    int rc = gcli_embed_file(p, path, o->all_faces, &faces, &n_faces, &picked, &emb, sha, why,
                             sizeof why);
    if (rc != CLI_EXIT_OK) {
        fprintf(stderr, "facenet identify: %s\n", why);
        if (results)
            json_array_append_new(results, json_pack("{s:s,s:s}", "image", path, "error", why));
        else
            printf("%s: %s\n", path, rc == CLI_EXIT_PROBLEM ? "no face" : "error");
        return rc;
    }
    size_t n_embedded = o->all_faces ? n_faces : 1;
    json_t *jfaces = results ? json_array() : NULL;
    facenet_gallery_search_options so;
    facenet_gallery_search_options_default(&so);
    so.k = o->k;
    so.threshold = threshold;
    so.collection = o->collection;
    so.exact = o->exact;
    for (size_t i = 0; i < n_embedded; i++) {
        size_t face_index = o->all_faces ? i : (size_t)picked;
        size_t n = 0;
        facenet_error err;
        facenet_status st = facenet_gallery_search(g, p->model_id, emb + i * (size_t)p->dim,
                                                   p->dim, &so, matches, &n, &err);
        if (st != FACENET_OK) {
            rc = gcli_report(&err);
            break;
        }
        if (jfaces) {
            json_t *jm = json_array();
            for (size_t m = 0; m < n; m++)
                json_array_append_new(jm, match_json(&matches[m]));
            const facenet_face *f = &faces[face_index];
            json_t *identity = n > 0 && matches[0].accepted ? json_string(matches[0].subject)
                                                            : json_null();
            json_array_append_new(
                jfaces, json_pack("{s:i,s:[f,f,f,f],s:f,s:o,s:o}", "face", (int)face_index, "box",
                                  f->box[0], f->box[1], f->box[2], f->box[3], "score", f->score,
                                  "identity", identity, "matches", jm));
        } else {
            print_face(path, face_index, &faces[face_index], matches, n, threshold, o);
        }
    }
    if (results)
        json_array_append_new(results, json_pack("{s:s,s:s,s:o}", "image", path, "sha256", sha,
                                                 "faces", jfaces));
    sodium_memzero(emb, n_embedded * (size_t)p->dim * sizeof *emb);
    free(emb);
    free(faces);
    return rc;
}

int cmd_identify(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"gallery", required_argument, NULL, 'g'},   {"key-file", required_argument, NULL, 'K'},
        {"threshold", required_argument, NULL, 't'}, {"collection", required_argument, NULL, 'c'},
        {"all-faces", no_argument, NULL, 'a'},       {"exact", no_argument, NULL, 'e'},
        {"json", no_argument, NULL, 'J'},            {"model-dir", required_argument, NULL, 'D'},
        {"flip", no_argument, NULL, 'f'},
        {"help", no_argument, NULL, 'h'},            {NULL, 0, NULL, 0}};
    const char *gallery = NULL, *key_file = NULL, *model_dir_opt = NULL;
    char model_dir[PATH_MAX], model_name[FACENET_GALLERY_MODEL_ID_MAX];
    identify_opts o = {1, 0, 0, 0, -2, NULL};
    int c, rc = CLI_EXIT_OK, flip = 0;
    cli_paths paths = {0};
    facenet_gallery *g = NULL;
    gcli_pipeline p;

    optind = 1;
    while ((c = getopt_long(argc, argv, "hk:", longopts, NULL)) != -1) {
        switch (c) {
        case 'g': gallery = optarg; break;
        case 'K': key_file = optarg; break;
        case 'c': o.collection = optarg; break;
        case 'a': o.all_faces = 1; break;
        case 'e': o.exact = 1; break;
        case 'f': flip = 1; break;
        case 'J': o.json = 1; break;
        case 'D': model_dir_opt = optarg; break;
        case 'k': {
            if (cli_parse_int(optarg, 1, 1000, &o.k) != 0) {
                fprintf(stderr, "facenet identify: -k must be 1..1000\n");
                return CLI_EXIT_USAGE;
            }
            break;
        }
        case 't': {
            if (cli_parse_cosine(optarg, &o.threshold) != 0) {
                fprintf(stderr, "facenet identify: --threshold is a cosine similarity in [-1, 1]\n");
                return CLI_EXIT_USAGE;
            }
            break;
        }
        case 'h': fputs(identify_usage, stdout); return CLI_EXIT_OK;
        default: fputs(identify_usage, stderr); return CLI_EXIT_USAGE;
        }
    }
    if (!gallery || argc - optind < 1) {
        fputs(identify_usage, stderr);
        return CLI_EXIT_USAGE;
    }
    if (cli_collect_images(argv + optind, argc - optind, &paths) != 0) {
        cli_paths_free(&paths);
        return CLI_EXIT_INPUT;
    }
    if (cli_model_dir(model_dir_opt, model_dir, sizeof model_dir) != 0) {
        cli_paths_free(&paths);
        return CLI_EXIT_MODEL;
    }
    unsigned flags = FACENET_GALLERY_READ_ONLY | (o.exact ? 0 : FACENET_GALLERY_INT4);
    rc = gcli_open(gallery, key_file, NULL, 0, flags, &g);
    if (rc != CLI_EXIT_OK) {
        cli_paths_free(&paths);
        return rc;
    }
    gcli_model_name(facenet_gallery_model(g), model_name, sizeof model_name);
    rc = gcli_pipeline_open(&p, model_dir, model_name, flip);
    if (rc != CLI_EXIT_OK) {
        facenet_gallery_close(g);
        cli_paths_free(&paths);
        return rc;
    }
    float threshold = o.threshold >= -1 ? o.threshold : facenet_gallery_threshold(g);
    if (isnan(threshold)) {
        /* Fail closed: no "who is this" without a calibrated threshold. */
        fprintf(stderr, "facenet identify: gallery %s (model %s) has no calibrated open-set "
                        "threshold; set one with 'facenet gallery threshold %s T' or pass "
                        "--threshold\n",
                gallery, facenet_gallery_model(g), gallery);
        gcli_pipeline_close(&p);
        facenet_gallery_close(g);
        cli_paths_free(&paths);
        return CLI_EXIT_USAGE;
    }
    facenet_gallery_match *matches = calloc((size_t)o.k, sizeof *matches);
    json_t *results = o.json ? json_array() : NULL;
    if (!matches) {
        rc = CLI_EXIT_INTERNAL;
    } else {
        if (!o.json)
            printf("gallery: %s (%zu templates, model %s); open-set threshold %.4f\n", gallery,
                   facenet_gallery_size(g), facenet_gallery_model(g), threshold);
        for (size_t i = 0; i < paths.n; i++) {
            int r = identify_one(g, &p, paths.items[i], &o, threshold, matches, results);
            if (r > rc)
                rc = r;
        }
    }
    if (results) {
        json_t *doc = json_pack("{s:s,s:s,s:f,s:o}", "gallery", gallery, "model",
                                facenet_gallery_model(g), "threshold", threshold, "results",
                                results);
        json_dumpf(doc, stdout, JSON_INDENT(2) | JSON_REAL_PRECISION(6));
        fputc('\n', stdout);
        json_decref(doc);
    }
    free(matches);
    gcli_pipeline_close(&p);
    facenet_gallery_close(g);
    cli_paths_free(&paths);
    return rc;
}
