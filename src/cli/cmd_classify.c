/*
 * cmd_classify.c - `facenet classify train DATA_DIR OUT` and
 * `facenet classify predict CLASSIFIER IMG...`: facenet's classifier.py
 * (TRAIN and CLASSIFY modes) on our pipeline.
 *
 * DATA_DIR is a class-per-folder tree. As in classifier.py, classes with
 * fewer than --min-images-per-class images are left out, and with
 * --train-images-per-class N each class is shuffled (--seed) and split:
 * N images to train on, the rest to test, and the test accuracy is
 * reported right after training.
 */
#include <getopt.h>
#include <jansson.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/cli.h"
#include "cli/cli_util.h"
#include "cli/gallery_util.h"

static const char classify_usage[] =
    "usage: facenet classify train [OPTIONS] DATA_DIR OUT\n"
    "       facenet classify predict [OPTIONS] CLASSIFIER IMG|DIR...\n"
    "\n"
    "train: a linear SVM with probabilities (libsvm) on the main face of\n"
    "every image of a class-per-folder tree, saved to OUT.\n"
    "  --min-images-per-class N   leave out smaller classes (default 1)\n"
    "  --train-images-per-class N train on N shuffled images per class and\n"
    "                             report the accuracy on the rest (default:\n"
    "                             train on all)\n"
    "  --seed S                   shuffle and libsvm seed (default 666)\n"
    "  --model NAME               embedding model (default mobilefacenet)\n"
    "  --threads N                embedding threads (default: all cores)\n"
    "predict: the most probable class of the main face of each image.\n"
    "  --json                     probabilities as JSON\n"
    "both:\n"
    "  --key-file K               sign (train) or require the signature\n"
    "                             (predict) with an HMAC under this key;\n"
    "                             otherwise the file carries a SHA-256\n"
    "  --flip                     add the mirrored face's embedding\n"
    "  --model-dir DIR            model cache (default: facenet models path)\n"
    "\n"
    "A classifier file is plain text (a digest line and JSON numbers), never\n"
    "code; a changed or truncated file is refused. Exit codes: 0 ok, 1 some\n"
    "images had no face, 2 usage, 3 models missing, 4 unreadable input or a\n"
    "classifier that fails its check, 5 internal error (or built without\n"
    "libsvm).\n";

typedef struct copts {
    int min_images, train_images, threads, flip, json;
    unsigned seed;
    const char *model, *model_dir, *key_file;
} copts;

static int load_key(const char *file, uint8_t key[FACENET_GALLERY_KEY_BYTES])
{
    facenet_error err;
    if (facenet_gallery_key_load(file, key, &err) != FACENET_OK) {
        fprintf(stderr, "facenet: %s\n", err.message);
        return CLI_EXIT_USAGE;
    }
    return CLI_EXIT_OK;
}

/* ---- train ---------------------------------------------------------------------- */

typedef struct dataset {
    char **class_names;
    size_t n_classes;
    char **paths;   /* borrowed from a cli_paths */
    int *cls;       /* class of each path */
    int *is_train;  /* 1 train, 0 test */
    size_t n;
} dataset;

static unsigned next_rand(unsigned *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 17;
    *s ^= *s << 5;
    return *s;
}

/* Group the images under root by their first folder; keep classes with at
 * least min images; shuffle and split each. */
static int build_dataset(const char *root, const cli_paths *all, const copts *o, dataset *ds)
{
    size_t rl = strlen(root);
    while (rl > 1 && root[rl - 1] == '/')
        rl--;
    memset(ds, 0, sizeof *ds);
    ds->paths = calloc(all->n ? all->n : 1, sizeof *ds->paths);
    ds->cls = calloc(all->n ? all->n : 1, sizeof *ds->cls);
    ds->is_train = calloc(all->n ? all->n : 1, sizeof *ds->is_train);
    ds->class_names = calloc(all->n ? all->n : 1, sizeof *ds->class_names);
    if (!ds->paths || !ds->cls || !ds->is_train || !ds->class_names)
        return CLI_EXIT_INTERNAL;
    unsigned seed = o->seed ? o->seed : 1;
    size_t i = 0;
    /* cli_collect_images sorts, so each class's images are contiguous. */
    while (i < all->n) {
        const char *p = all->items[i];
        const char *rest = p + rl + 1, *slash = strchr(rest, '/');
        if (strncmp(p, root, rl) != 0 || !slash) {
            fprintf(stderr, "facenet classify: %s is not in a class folder; skipped\n", p);
            i++;
            continue;
        }
        size_t name_len = (size_t)(slash - rest), j = i;
        while (j < all->n && strncmp(all->items[j], p, (size_t)(rest - p) + name_len + 1) == 0)
            j++;
        size_t count = j - i;
        if (count >= (size_t)o->min_images) {
            char *name = strndup(rest, name_len);
            if (!name)
                return CLI_EXIT_INTERNAL;
            ds->class_names[ds->n_classes] = name;
            size_t first = ds->n;
            for (size_t k = i; k < j; k++) {
                ds->paths[ds->n] = all->items[k];
                ds->cls[ds->n] = (int)ds->n_classes;
                ds->n++;
            }
            /* Fisher-Yates, then the first N train. */
            for (size_t k = count; k > 1; k--) {
                size_t r = next_rand(&seed) % k;
                char *t = ds->paths[first + k - 1];
                ds->paths[first + k - 1] = ds->paths[first + r];
                ds->paths[first + r] = t;
            }
            for (size_t k = 0; k < count; k++)
                ds->is_train[first + k] = o->train_images == 0 || k < (size_t)o->train_images;
            ds->n_classes++;
        }
        i = j;
    }
    return CLI_EXIT_OK;
}

static void free_dataset(dataset *ds)
{
    for (size_t k = 0; k < ds->n_classes; k++)
        free(ds->class_names[k]);
    free(ds->class_names);
    free(ds->paths);
    free(ds->cls);
    free(ds->is_train);
}

static int do_train(int argc, char **argv, const copts *o)
{
    char model_dir[PATH_MAX], model_id[FACENET_GALLERY_MODEL_ID_MAX];
    uint8_t key[FACENET_GALLERY_KEY_BYTES];
    cli_paths all = {0};
    dataset ds;
    int rc, dim = 0, result = CLI_EXIT_OK;
    float *emb = NULL;
    int *img_rc = NULL;
    facenet_classifier *c = NULL;
    facenet_error err;

    if (argc != 2) {
        fputs(classify_usage, stderr);
        return CLI_EXIT_USAGE;
    }
    const char *data_dir = argv[0], *out = argv[1];
    if (o->key_file && (rc = load_key(o->key_file, key)) != CLI_EXIT_OK)
        return rc;
    if (cli_model_dir(o->model_dir, model_dir, sizeof model_dir) != 0)
        return CLI_EXIT_MODEL;
    if (cli_collect_images((char **)&data_dir, 1, &all) != 0)
        return CLI_EXIT_INPUT;
    if ((rc = build_dataset(data_dir, &all, o, &ds)) != CLI_EXIT_OK) {
        free_dataset(&ds);
        cli_paths_free(&all);
        return rc;
    }
    if (ds.n_classes < 2) {
        fprintf(stderr, "facenet classify: %zu class(es) with at least %d images in %s; need 2\n",
                ds.n_classes, o->min_images, data_dir);
        free_dataset(&ds);
        cli_paths_free(&all);
        return CLI_EXIT_USAGE;
    }
    img_rc = calloc(ds.n, sizeof *img_rc);
    if (!img_rc) {
        result = CLI_EXIT_INTERNAL;
        goto out;
    }
    rc = gcli_embed_many(model_dir, o->model, o->flip, ds.paths, ds.n, o->threads, "embed", &emb,
                         img_rc, &dim, model_id);
    if (rc != CLI_EXIT_OK) {
        result = rc;
        goto out;
    }
    /* Training rows: images with a face, in the training split. */
    size_t n_train = 0, n_test = 0, no_face = 0;
    float *x = malloc(ds.n * (size_t)dim * sizeof *x);
    int *y = malloc(ds.n * sizeof *y);
    int *has = calloc(ds.n_classes, sizeof *has);
    if (!x || !y || !has) {
        free(x);
        free(y);
        free(has);
        result = CLI_EXIT_INTERNAL;
        goto out;
    }
    for (size_t i = 0; i < ds.n; i++) {
        if (img_rc[i] != CLI_EXIT_OK) {
            no_face++;
            if (img_rc[i] > result)
                result = img_rc[i];
            continue;
        }
        if (!ds.is_train[i]) {
            n_test++;
            continue;
        }
        memcpy(x + n_train * (size_t)dim, emb + i * (size_t)dim, (size_t)dim * sizeof *x);
        y[n_train++] = ds.cls[i];
        has[ds.cls[i]] = 1;
    }
    for (size_t k = 0; k < ds.n_classes; k++)
        if (!has[k])
            fprintf(stderr, "facenet classify: class '%s' has no usable training image\n",
                    ds.class_names[k]);
    free(has);
    srand(o->seed);
    double t0 = gcli_now();
    facenet_status st = facenet_classifier_train(x, y, n_train, dim,
                                                 (const char *const *)ds.class_names,
                                                 ds.n_classes, model_id, &c, &err);
    free(x);
    free(y);
    if (st != FACENET_OK) {
        result = gcli_report(&err);
        goto out;
    }
    double train_s = gcli_now() - t0;
    if (facenet_classifier_save(c, out, o->key_file ? key : NULL, &err) != FACENET_OK) {
        result = gcli_report(&err);
        goto out;
    }
    printf("trained a linear SVM on %zu images of %zu classes (%s) in %.2f s; saved to %s (%s)\n",
           n_train, ds.n_classes, model_id, train_s, out,
           o->key_file ? "HMAC-signed" : "SHA-256");
    if (no_face)
        printf("%zu images had no usable face and were left out\n", no_face);
    if (n_test > 0) {
        size_t right = 0;
        double *p = malloc(ds.n_classes * sizeof *p);
        for (size_t i = 0; p && i < ds.n; i++) {
            size_t best;
            if (ds.is_train[i] || img_rc[i] != CLI_EXIT_OK)
                continue;
            if (facenet_classifier_predict(c, model_id, emb + i * (size_t)dim, dim, p, &best,
                                           &err) == FACENET_OK &&
                best == (size_t)ds.cls[i])
                right++;
        }
        free(p);
        printf("test accuracy: %.4f (%zu of %zu held-out images)\n", (double)right / n_test,
               right, n_test);
    }
out:
    facenet_classifier_free(c);
    free(emb);
    free(img_rc);
    free_dataset(&ds);
    cli_paths_free(&all);
    return result;
}

/* ---- predict --------------------------------------------------------------------- */

static int do_predict(int argc, char **argv, const copts *o)
{
    char model_dir[PATH_MAX], model_name[FACENET_GALLERY_MODEL_ID_MAX];
    uint8_t key[FACENET_GALLERY_KEY_BYTES];
    facenet_classifier *c = NULL;
    facenet_error err;
    cli_paths paths = {0};
    gcli_pipeline p;
    int rc, result = CLI_EXIT_OK;

    if (argc < 2) {
        fputs(classify_usage, stderr);
        return CLI_EXIT_USAGE;
    }
    if (o->key_file && (rc = load_key(o->key_file, key)) != CLI_EXIT_OK)
        return rc;
    if (facenet_classifier_load(argv[0], o->key_file ? key : NULL, &c, &err) != FACENET_OK)
        return gcli_report(&err);
    if (cli_collect_images(argv + 1, argc - 1, &paths) != 0 ||
        cli_model_dir(o->model_dir, model_dir, sizeof model_dir) != 0) {
        facenet_classifier_free(c);
        cli_paths_free(&paths);
        return CLI_EXIT_INPUT;
    }
    gcli_model_name(facenet_classifier_model(c), model_name, sizeof model_name);
    rc = gcli_pipeline_open(&p, model_dir, model_name, o->flip);
    if (rc != CLI_EXIT_OK) {
        facenet_classifier_free(c);
        cli_paths_free(&paths);
        return rc;
    }
    size_t k = facenet_classifier_class_count(c);
    double *prob = malloc(k * sizeof *prob);
    json_t *results = o->json ? json_array() : NULL;
    for (size_t i = 0; prob && i < paths.n; i++) {
        facenet_face *faces = NULL;
        float *emb = NULL;
        size_t n_faces = 0, best = 0;
        int picked;
        char sha[65], why[FACENET_ERROR_MESSAGE_MAX + PATH_MAX];
        int r = gcli_embed_file(&p, paths.items[i], 0, &faces, &n_faces, &picked, &emb, sha, why,
                                sizeof why);
        if (r == CLI_EXIT_OK &&
            facenet_classifier_predict(c, p.model_id, emb, p.dim, prob, &best, &err) != FACENET_OK) {
            snprintf(why, sizeof why, "%s", err.message);
            r = gcli_exit_code(err.code);
        }
        if (r != CLI_EXIT_OK) {
            fprintf(stderr, "facenet classify: %s\n", why);
            if (results)
                json_array_append_new(results,
                                      json_pack("{s:s,s:s}", "image", paths.items[i], "error", why));
            result = r > result ? r : result;
        } else if (results) {
            json_t *probs = json_object();
            for (size_t j = 0; j < k; j++)
                json_object_set_new(probs, facenet_classifier_class_name(c, j),
                                    json_real(prob[j]));
            json_array_append_new(results,
                                  json_pack("{s:s,s:s,s:f,s:o}", "image", paths.items[i], "class",
                                            facenet_classifier_class_name(c, best), "probability",
                                            prob[best], "probabilities", probs));
        } else {
            printf("%s: %s (%.3f)\n", paths.items[i], facenet_classifier_class_name(c, best),
                   prob[best]);
        }
        free(faces);
        free(emb);
    }
    if (results) {
        json_t *doc = json_pack("{s:s,s:s,s:o}", "classifier", argv[0], "model",
                                facenet_classifier_model(c), "results", results);
        json_dumpf(doc, stdout, JSON_INDENT(2) | JSON_REAL_PRECISION(6));
        fputc('\n', stdout);
        json_decref(doc);
    }
    if (!prob)
        result = CLI_EXIT_INTERNAL;
    free(prob);
    gcli_pipeline_close(&p);
    facenet_classifier_free(c);
    cli_paths_free(&paths);
    return result;
}

int cmd_classify(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"min-images-per-class", required_argument, NULL, 'm'},
        {"train-images-per-class", required_argument, NULL, 't'},
        {"seed", required_argument, NULL, 's'},
        {"model", required_argument, NULL, 'M'},
        {"threads", required_argument, NULL, 'j'},
        {"key-file", required_argument, NULL, 'K'},
        {"flip", no_argument, NULL, 'f'},
        {"json", no_argument, NULL, 'J'},
        {"model-dir", required_argument, NULL, 'D'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0}};
    copts o = {1, 0, (int)sysconf(_SC_NPROCESSORS_ONLN), 0, 0, 666, NULL, NULL, NULL};
    int c, seed = 666;

    if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
        fputs(classify_usage, argc < 2 ? stderr : stdout);
        return argc < 2 ? CLI_EXIT_USAGE : CLI_EXIT_OK;
    }
    const char *mode = argv[1];
    if (strcmp(mode, "train") != 0 && strcmp(mode, "predict") != 0) {
        fprintf(stderr, "facenet classify: unknown mode '%s' (train or predict)\n", mode);
        return CLI_EXIT_USAGE;
    }
    optind = 1;
    while ((c = getopt_long(argc - 1, argv + 1, "h", longopts, NULL)) != -1) {
        int bad = 0;
        switch (c) {
        case 'm': bad = cli_parse_int(optarg, 1, 1000000, &o.min_images); break;
        case 't': bad = cli_parse_int(optarg, 1, 1000000, &o.train_images); break;
        case 's': bad = cli_parse_int(optarg, 0, 2147483647, &seed); break;
        case 'j': bad = cli_parse_int(optarg, 1, 64, &o.threads); break;
        case 'M': o.model = optarg; break;
        case 'K': o.key_file = optarg; break;
        case 'f': o.flip = 1; break;
        case 'J': o.json = 1; break;
        case 'D': o.model_dir = optarg; break;
        case 'h': fputs(classify_usage, stdout); return CLI_EXIT_OK;
        default: fputs(classify_usage, stderr); return CLI_EXIT_USAGE;
        }
        if (bad) {
            fprintf(stderr, "facenet classify: bad value '%s'\n", optarg);
            return CLI_EXIT_USAGE;
        }
    }
    o.seed = (unsigned)seed;
    if (o.model && !facenet_model_find(o.model)) {
        fprintf(stderr, "facenet classify: no model named '%s'\n", o.model);
        return CLI_EXIT_USAGE;
    }
    int n_pos = argc - 1 - optind;
    char **pos = argv + 1 + optind;
    return strcmp(mode, "train") == 0 ? do_train(n_pos, pos, &o) : do_predict(n_pos, pos, &o);
}
