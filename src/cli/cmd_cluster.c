/*
 * cmd_cluster.c - `facenet cluster IMG_DIR OUT_DIR`: group unlabelled
 * photos by person, with Chinese Whispers (default) or DBSCAN.
 *
 * Each image contributes its main face. OUT_DIR receives one folder per
 * cluster, largest first (cluster_0000, ...), holding symbolic links to
 * (or copies of) the images, an `unclustered` folder for DBSCAN noise and
 * images without a face, and clusters.tsv listing "cluster<TAB>path" for
 * every image (noise is -1, no face is "noface").
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli/cli.h"
#include "cli/cli_util.h"
#include "cli/gallery_util.h"

static const char cluster_usage[] =
    "usage: facenet cluster [OPTIONS] IMG_DIR|IMG... OUT_DIR\n"
    "\n"
    "Group photos by the person in them (the main face of each): one folder\n"
    "per cluster in OUT_DIR, largest first, plus clusters.tsv.\n"
    "\n"
    "  --method M        chinese-whispers (default) or dbscan\n"
    "  --threshold T     link two faces at cosine similarity >= T (default:\n"
    "                    the model's calibrated threshold)\n"
    "  --min-samples N   dbscan: faces (itself included) a core face links to\n"
    "                    (default 3); the rest is noise\n"
    "  --copy            copy the images (default: symbolic links)\n"
    "  --list            write only OUT_DIR/clusters.tsv\n"
    "  --model NAME      embedding model (default mobilefacenet)\n"
    "  --flip            add the mirrored face's embedding\n"
    "  --threads N       embedding threads (default: all cores)\n"
    "  --model-dir DIR   model cache (default: facenet models path)\n"
    "\n"
    "OUT_DIR must not exist or be empty. Exit codes: 0 ok, 1 some images had\n"
    "no face, 2 usage, 3 models missing, 4 unreadable input or output.\n";

static int is_empty_dir(const char *dir)
{
    cli_paths entries = {0};
    struct stat sb;
    if (stat(dir, &sb) != 0)
        return errno == ENOENT;
    if (!S_ISDIR(sb.st_mode))
        return 0;
    int ok = cli_collect_files(dir, &entries) == 0 && entries.n == 0;
    cli_paths_free(&entries);
    return ok;
}

static int copy_file(const char *from, const char *to)
{
    char buf[1 << 16];
    FILE *in = fopen(from, "rb"), *out = in ? fopen(to, "wbx") : NULL;
    size_t n;
    int rc = 0;
    if (!in || !out)
        rc = -1;
    while (rc == 0 && (n = fread(buf, 1, sizeof buf, in)) > 0)
        if (fwrite(buf, 1, n, out) != n)
            rc = -1;
    if (in && ferror(in))
        rc = -1;
    if (in)
        fclose(in);
    if (out && fclose(out) != 0)
        rc = -1;
    return rc;
}

/* Place one image in its folder under a free name (basename, or
 * basename prefixed with its index when two images share a name). */
static int place(const char *folder, const char *path, size_t index, int copy)
{
    char target[PATH_MAX], link[PATH_MAX];
    const char *base = strrchr(path, '/');
    base = base ? base + 1 : path;
    if (!realpath(path, target))
        return -1;
    snprintf(link, sizeof link, "%s/%s", folder, base);
    if (access(link, F_OK) == 0)
        snprintf(link, sizeof link, "%s/%05zu-%s", folder, index, base);
    return copy ? copy_file(target, link) : symlink(target, link);
}

static int write_output(const char *out_dir, char *const *paths, size_t n, const int *rc,
                        const int *labels, size_t n_clusters, int copy, int list_only)
{
    char path[PATH_MAX], folder[PATH_MAX];
    if (mkdir(out_dir, 0755) != 0 && errno != EEXIST) {
        fprintf(stderr, "facenet cluster: cannot create %s: %s\n", out_dir, strerror(errno));
        return CLI_EXIT_INPUT;
    }
    snprintf(path, sizeof path, "%s/clusters.tsv", out_dir);
    FILE *tsv = fopen(path, "w");
    if (!tsv) {
        fprintf(stderr, "facenet cluster: cannot write %s\n", path);
        return CLI_EXIT_INPUT;
    }
    fprintf(tsv, "cluster\tpath\n");
    int failed = 0;
    if (!list_only) {
        for (size_t c = 0; c < n_clusters; c++) {
            snprintf(folder, sizeof folder, "%s/cluster_%04zu", out_dir, c);
            failed |= mkdir(folder, 0755) != 0;
        }
        snprintf(folder, sizeof folder, "%s/unclustered", out_dir);
        failed |= mkdir(folder, 0755) != 0;
    }
    for (size_t i = 0; i < n; i++) {
        if (rc[i] != CLI_EXIT_OK) {
            fprintf(tsv, "noface\t%s\n", paths[i]);
        } else {
            fprintf(tsv, "%d\t%s\n", labels[i], paths[i]);
        }
        if (list_only)
            continue;
        if (rc[i] != CLI_EXIT_OK || labels[i] < 0)
            snprintf(folder, sizeof folder, "%s/unclustered", out_dir);
        else
            snprintf(folder, sizeof folder, "%s/cluster_%04d", out_dir, labels[i]);
        failed |= place(folder, paths[i], i, copy) != 0;
    }
    failed |= fclose(tsv) != 0;
    if (failed) {
        fprintf(stderr, "facenet cluster: could not write everything under %s\n", out_dir);
        return CLI_EXIT_INPUT;
    }
    return CLI_EXIT_OK;
}

/* The model's best-accuracy threshold, as `compare` and `validate
 * --calibrate` resolve it (MODEL_DIR/thresholds.json over the manifest):
 * linking two faces is a same-person decision. Fails closed without one. */
static int default_threshold(const char *model_dir, const char *name, int flip, float *out)
{
    const facenet_model_info *info = facenet_model_find(name);
    facenet_thresholds thr;
    facenet_error err;

    if (!info)
        return CLI_EXIT_USAGE;
    if (facenet_model_thresholds(model_dir, info, flip, &thr, &err) != FACENET_OK)
        return cli_report(&err);
    if (!(thr.threshold > 0)) {
        fprintf(stderr, "facenet cluster: model %s has no calibrated threshold; pass "
                        "--threshold\n", name);
        return CLI_EXIT_USAGE;
    }
    *out = thr.threshold;
    return CLI_EXIT_OK;
}

int cmd_cluster(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"method", required_argument, NULL, 'm'},     {"threshold", required_argument, NULL, 't'},
        {"min-samples", required_argument, NULL, 's'}, {"copy", no_argument, NULL, 'c'},
        {"list", no_argument, NULL, 'l'},             {"model", required_argument, NULL, 'M'},
        {"flip", no_argument, NULL, 'f'},             {"threads", required_argument, NULL, 'j'},
        {"model-dir", required_argument, NULL, 'D'},  {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0}};
    facenet_cluster_options o;
    const char *model = NULL, *model_dir_opt = NULL;
    char model_dir[PATH_MAX], model_id[FACENET_GALLERY_MODEL_ID_MAX];
    int copy = 0, list_only = 0, flip = 0, c, dim = 0;
    int threads = (int)sysconf(_SC_NPROCESSORS_ONLN);
    cli_paths paths = {0};

    facenet_cluster_options_default(&o);
    optind = 1;
    while ((c = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
        switch (c) {
        case 'm':
            if (strcmp(optarg, "chinese-whispers") == 0 || strcmp(optarg, "cw") == 0)
                o.method = FACENET_CLUSTER_CHINESE_WHISPERS;
            else if (strcmp(optarg, "dbscan") == 0)
                o.method = FACENET_CLUSTER_DBSCAN;
            else {
                fprintf(stderr, "facenet cluster: --method is chinese-whispers or dbscan\n");
                return CLI_EXIT_USAGE;
            }
            break;
        case 't':
            if (cli_parse_cosine(optarg, &o.threshold) != 0) {
                fprintf(stderr, "facenet cluster: --threshold is a cosine similarity in [-1, 1]\n");
                return CLI_EXIT_USAGE;
            }
            break;
        case 's': {
            if (cli_parse_int(optarg, 1, 100000, &o.min_samples) != 0) {
                fprintf(stderr, "facenet cluster: --min-samples must be 1..100000\n");
                return CLI_EXIT_USAGE;
            }
            break;
        }
        case 'j': {
            if (cli_parse_int(optarg, 1, 64, &threads) != 0) {
                fprintf(stderr, "facenet cluster: --threads must be 1..64\n");
                return CLI_EXIT_USAGE;
            }
            break;
        }
        case 'c': copy = 1; break;
        case 'l': list_only = 1; break;
        case 'M': model = optarg; break;
        case 'f': flip = 1; break;
        case 'D': model_dir_opt = optarg; break;
        case 'h': fputs(cluster_usage, stdout); return CLI_EXIT_OK;
        default: fputs(cluster_usage, stderr); return CLI_EXIT_USAGE;
        }
    }
    if (argc - optind < 2) {
        fputs(cluster_usage, stderr);
        return CLI_EXIT_USAGE;
    }
    const char *out_dir = argv[argc - 1];
    if (!is_empty_dir(out_dir)) {
        fprintf(stderr, "facenet cluster: %s exists and is not an empty directory\n", out_dir);
        return CLI_EXIT_USAGE;
    }
    if (model && !facenet_model_find(model)) {
        fprintf(stderr, "facenet cluster: no model named '%s'\n", model);
        return CLI_EXIT_USAGE;
    }
    if (cli_collect_images(argv + optind, argc - optind - 1, &paths) != 0) {
        cli_paths_free(&paths);
        return CLI_EXIT_INPUT;
    }
    if (paths.n == 0) {
        fprintf(stderr, "facenet cluster: no images found\n");
        cli_paths_free(&paths);
        return CLI_EXIT_INPUT;
    }
    if (cli_model_dir(model_dir_opt, model_dir, sizeof model_dir) != 0) {
        cli_paths_free(&paths);
        return CLI_EXIT_MODEL;
    }
    if (isnan(o.threshold)) {
        int trc = default_threshold(model_dir, model ? model : "mobilefacenet", flip,
                                    &o.threshold);
        if (trc != CLI_EXIT_OK) {
            cli_paths_free(&paths);
            return trc;
        }
    }
    int *rc = calloc(paths.n, sizeof *rc);
    int *labels = calloc(paths.n, sizeof *labels);
    float *emb = NULL, *ok_emb = NULL;
    size_t *ok_index = calloc(paths.n, sizeof *ok_index);
    int result = CLI_EXIT_OK;
    if (!rc || !labels || !ok_index) {
        result = CLI_EXIT_INTERNAL;
        goto out;
    }
    result = gcli_embed_many(model_dir, model, flip, paths.items, paths.n, threads, "embed", &emb,
                             rc, &dim, model_id);
    if (result != CLI_EXIT_OK)
        goto out;
    /* Cluster the images that have a face. */
    size_t n_ok = 0;
    ok_emb = malloc(paths.n * (size_t)dim * sizeof *ok_emb);
    if (!ok_emb) {
        result = CLI_EXIT_INTERNAL;
        goto out;
    }
    for (size_t i = 0; i < paths.n; i++) {
        labels[i] = -1;
        if (rc[i] == CLI_EXIT_OK) {
            memcpy(ok_emb + n_ok * (size_t)dim, emb + i * (size_t)dim, (size_t)dim * sizeof *emb);
            ok_index[n_ok++] = i;
        } else if (rc[i] > result) {
            result = rc[i];
        }
    }
    int *ok_labels = calloc(n_ok ? n_ok : 1, sizeof *ok_labels);
    size_t n_clusters = 0;
    facenet_error err;
    if (!ok_labels) {
        result = CLI_EXIT_INTERNAL;
        goto out;
    }
    double t0 = gcli_now();
    if (facenet_cluster(ok_emb, n_ok, dim, &o, ok_labels, &n_clusters, &err) != FACENET_OK) {
        free(ok_labels);
        result = gcli_report(&err);
        goto out;
    }
    double cluster_s = gcli_now() - t0;
    for (size_t k = 0; k < n_ok; k++)
        labels[ok_index[k]] = ok_labels[k];
    free(ok_labels);
    int w = write_output(out_dir, paths.items, paths.n, rc, labels, n_clusters, copy, list_only);
    if (w != CLI_EXIT_OK)
        result = w;
    size_t noise = 0, singles = 0;
    for (size_t i = 0; i < paths.n; i++)
        noise += rc[i] == CLI_EXIT_OK && labels[i] < 0;
    {
        size_t *count = calloc(n_clusters ? n_clusters : 1, sizeof *count);
        for (size_t i = 0; count && i < paths.n; i++)
            if (rc[i] == CLI_EXIT_OK && labels[i] >= 0)
                count[labels[i]]++;
        for (size_t k = 0; count && k < n_clusters; k++)
            singles += count[k] == 1;
        free(count);
    }
    printf("%zu images, %zu with a face: %zu clusters (%zu of one image), %zu noise; %s at "
           "threshold %.3f (%s) in %.2f s; written to %s\n",
           paths.n, n_ok, n_clusters, singles, noise,
           o.method == FACENET_CLUSTER_DBSCAN ? "DBSCAN" : "Chinese Whispers",
           (double)o.threshold, model_id, cluster_s, out_dir);
out:
    free(rc);
    free(labels);
    free(emb);
    free(ok_emb);
    free(ok_index);
    cli_paths_free(&paths);
    return result;
}
