#include "cli/cli_util.h"

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#include "cli/cli.h"

int cli_paths_add(cli_paths *p, const char *path)
{
    if (p->n == p->cap) {
        size_t cap = p->cap ? p->cap * 2 : 64;
        char **items = realloc(p->items, cap * sizeof *items);
        if (!items)
            return -1;
        p->items = items;
        p->cap = cap;
    }
    p->items[p->n] = strdup(path);
    if (!p->items[p->n])
        return -1;
    p->n++;
    return 0;
}

void cli_paths_free(cli_paths *p)
{
    for (size_t i = 0; i < p->n; i++)
        free(p->items[i]);
    free(p->items);
    p->items = NULL;
    p->n = p->cap = 0;
}

int cli_is_image_name(const char *path)
{
    static const char *const exts[] = {".jpg", ".jpeg", ".png", ".webp", ".ppm", ".pgm"};
    const char *dot = strrchr(path, '.');
    if (!dot)
        return 0;
    for (size_t i = 0; i < sizeof exts / sizeof exts[0]; i++)
        if (strcasecmp(dot, exts[i]) == 0)
            return 1;
    return 0;
}

static int is_part(const char *path)
{
    size_t len = strlen(path);
    return len > 5 && strcmp(path + len - 5, ".part") == 0;
}

static int compare_names(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static int walk(const char *dir, cli_paths *out, int depth, int images_only)
{
    DIR *d;
    struct dirent *e;
    cli_paths here = {0};
    int rc = 0;

    if (depth > 32)
        return 0; /* symlink loops or absurd nesting */
    d = opendir(dir);
    if (!d) {
        fprintf(stderr, "facenet: cannot open directory %s\n", dir);
        return -1;
    }
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.')
            continue;
        size_t len = strlen(dir) + strlen(e->d_name) + 2;
        char *path = malloc(len);
        if (!path) {
            rc = -1;
            break;
        }
        snprintf(path, len, "%s/%s", dir, e->d_name);
        rc = cli_paths_add(&here, path);
        free(path);
        if (rc)
            break;
    }
    closedir(d);
    if (here.n > 1)
        qsort(here.items, here.n, sizeof *here.items, compare_names);
    for (size_t i = 0; rc == 0 && i < here.n; i++) {
        struct stat st;
        if (stat(here.items[i], &st) != 0)
            continue;
        if (S_ISDIR(st.st_mode))
            rc = walk(here.items[i], out, depth + 1, images_only);
        else if (S_ISREG(st.st_mode) &&
                 (images_only ? cli_is_image_name(here.items[i]) : !is_part(here.items[i])))
            rc = cli_paths_add(out, here.items[i]);
    }
    cli_paths_free(&here);
    return rc;
}

int cli_collect_images(char **args, int n_args, cli_paths *out)
{
    for (int i = 0; i < n_args; i++) {
        struct stat st;
        if (stat(args[i], &st) != 0) {
            fprintf(stderr, "facenet: %s: no such file or directory\n", args[i]);
            return -1;
        }
        if (S_ISDIR(st.st_mode)) {
            if (walk(args[i], out, 0, 1) != 0)
                return -1;
        } else if (cli_paths_add(out, args[i]) != 0) {
            return -1;
        }
    }
    return 0;
}

int cli_collect_files(const char *dir, cli_paths *out)
{
    return walk(dir, out, 0, 0);
}

int cli_model_dir(const char *option, char *buf, size_t size)
{
    facenet_error err;
    if (option) {
        if (strlen(option) >= size) {
            fprintf(stderr, "facenet: --model-dir is too long\n");
            return -1;
        }
        memcpy(buf, option, strlen(option) + 1);
        return 0;
    }
    if (facenet_model_dir(buf, size, &err) != FACENET_OK) {
        fprintf(stderr, "facenet: %s\n", err.message);
        return -1;
    }
    return 0;
}

int cli_open_pipeline(const char *model_dir_opt, const char *model,
                      facenet_detector **det, facenet_embedder **emb)
{
    char dir[4096];
    facenet_error err;

    *det = NULL;
    *emb = NULL;
    if (cli_model_dir(model_dir_opt, dir, sizeof dir) != 0)
        return CLI_EXIT_MODEL;
    if (facenet_detector_create(dir, det, &err) != FACENET_OK ||
        facenet_embedder_create(dir, model, emb, &err) != FACENET_OK) {
        facenet_detector_free(*det);
        *det = NULL;
        return cli_report(&err);
    }
    return CLI_EXIT_OK;
}

int cli_parse_long(const char *s, long lo, long hi, long *out)
{
    const char *digits = s && *s == '-' ? s + 1 : s;
    char *end;
    long v;

    /* strtol alone would take leading spaces and a '+' sign. */
    if (!digits || *digits < '0' || *digits > '9')
        return -1;
    errno = 0;
    v = strtol(s, &end, 10);
    if (errno != 0 || *end != '\0' || v < lo || v > hi)
        return -1;
    *out = v;
    return 0;
}

int cli_parse_int(const char *s, int lo, int hi, int *out)
{
    long v;
    if (cli_parse_long(s, lo, hi, &v) != 0)
        return -1;
    *out = (int)v;
    return 0;
}

int cli_parse_double(const char *s, double lo, double hi, double *out)
{
    char *end;
    double v;

    /* strtod alone takes leading spaces, "inf", "nan" and hex floats. */
    if (!s || !(*s == '-' || *s == '.' || (*s >= '0' && *s <= '9')))
        return -1;
    if (strpbrk(s, "xXnN"))
        return -1;
    errno = 0;
    v = strtod(s, &end);
    if (errno != 0 || end == s || *end != '\0' || !(v >= lo && v <= hi))
        return -1;
    *out = v;
    return 0;
}

int cli_parse_cosine(const char *s, float *out)
{
    double v;
    if (cli_parse_double(s, -1.0, 1.0, &v) != 0)
        return -1;
    *out = (float)v;
    return 0;
}
