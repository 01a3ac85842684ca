/*
 * cli_util.h - helpers shared by the pipeline subcommands.
 */
#ifndef FACENET_CLI_CLI_UTIL_H
#define FACENET_CLI_CLI_UTIL_H

#include <stddef.h>

#include "facenet/facenet.h"

/* A growable list of owned strings. */
typedef struct cli_paths {
    char **items;
    size_t n, cap;
} cli_paths;

int cli_paths_add(cli_paths *p, const char *path);
void cli_paths_free(cli_paths *p);

/* Expand arguments: a file is taken as is; a directory contributes every
 * image file under it (by extension: jpg, jpeg, png, webp, ppm, pgm),
 * recursively, sorted. Returns 0 on success, -1 if an argument does not
 * exist (reported on stderr). */
int cli_collect_images(char **args, int n_args, cli_paths *out);

/* Every regular file under dir (recursively, sorted, hidden names and
 * *.part files skipped). */
int cli_collect_files(const char *dir, cli_paths *out);

/* The model directory: the --model-dir value when given, else the
 * default (facenet_model_dir). Returns 0 or prints the error and returns
 * -1. */
int cli_model_dir(const char *option, char *buf, size_t size);

/* Resolve the model dir (--model-dir or the default) and open a detector
 * and an embedder (`model` may be NULL for the default). Returns
 * CLI_EXIT_OK, or reports the error on stderr and returns its exit code
 * with nothing left open. */
int cli_open_pipeline(const char *model_dir_opt, const char *model,
                      facenet_detector **det, facenet_embedder **emb);

/* Parse a whole decimal integer in [lo, hi] into *out: an optional '-'
 * and digits, nothing before or after (no spaces, no '+', no "12abc"),
 * no overflow. Returns 0, or -1 with *out unchanged. Every option that
 * takes a count goes through here, so they all accept the same text. */
int cli_parse_long(const char *s, long lo, long hi, long *out);

/* The same for an int-sized option (lo and hi must fit an int). */
int cli_parse_int(const char *s, int lo, int hi, int *out);

/* Parse a whole finite decimal number in [lo, hi] (same rules: nothing
 * before or after it; "", " 0.5", "nan", "1e999" are refused). Returns 0,
 * or -1 with *out unchanged. */
int cli_parse_double(const char *s, double lo, double hi, double *out);

/* A cosine similarity threshold: a number in [-1, 1]. */
int cli_parse_cosine(const char *s, float *out);

/* True when the path has an image file extension. */
int cli_is_image_name(const char *path);

#endif
