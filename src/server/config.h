/*
 * config.h - `facenet serve` options from a file and the environment.
 *
 * A config file holds one option per line, `name = value`, where name is a
 * long option of `facenet serve` without its dashes (`max-body` or
 * `max_body`). Blank lines and lines whose first non-blank character is '#'
 * are ignored; values are taken verbatim after trimming blanks (no quotes,
 * no trailing comments). A flag (an option without an argument, like `dev`)
 * takes true/false, yes/no, on/off or 1/0. The environment does the same
 * with FACENET_SERVE_<NAME> (upper case, '_' for '-'): FACENET_SERVE_PORT.
 *
 * Parsing is strict and names the line (or variable) at fault: unknown
 * names, a name given twice, a missing value, a bad flag value, bytes that
 * are not printable text, and options that would carry a secret
 * (`--config` itself and `--help` are refused too). Paths to key files are
 * fine; a value that looks like an API key ("fnk_...") is refused.
 *
 * The entries become `--name=value` arguments placed before the command
 * line's own, so that getopt_long checks every value with the same code as
 * a command-line option and later ones win: file < environment < command
 * line. A flag set to false emits nothing, which is how the environment
 * turns off a flag the file sets on.
 */
#ifndef FACENET_SERVER_CONFIG_H
#define FACENET_SERVER_CONFIG_H

#include <getopt.h>
#include <stddef.h>

#include "facenet/facenet.h"

/* Config files larger than this are refused before they are read. */
#define FN_CONFIG_FILE_MAX ((size_t)64 << 10)
/* Longest line, and longest environment value. */
#define FN_CONFIG_LINE_MAX 4096
/* The environment variables' prefix. */
#define FN_CONFIG_ENV_PREFIX "FACENET_SERVE_"

typedef struct fn_config_entry {
    const struct option *option; /* into the caller's table               */
    char *value;                 /* owned; NULL for a flag                */
    int on;                      /* flags: 0 when set to false            */
    char *origin;                /* owned: "FILE:LINE" or "FACENET_SERVE_X" */
} fn_config_entry;

typedef struct fn_config {
    fn_config_entry *entries; /* owned, one per option name */
    size_t n;
} fn_config;

/* Add the entries of one config file's text (`source` names it in
 * errors). `options` is a getopt_long table ending in a zero entry. A name
 * already set by an earlier call is replaced: the later source wins; a
 * name given twice in this text is an error. On error (INVALID_ARGUMENT
 * naming "source:line", or NO_MEMORY) cfg is unchanged. */
facenet_status fn_config_parse(fn_config *cfg, const char *text, size_t len,
                               const char *source, const struct option *options,
                               facenet_error *err);

/* The same for the FACENET_SERVE_* variables in envp (NULL-terminated
 * "NAME=value" strings), except FACENET_SERVE_CONFIG. An unknown
 * FACENET_SERVE_* variable is an error. */
facenet_status fn_config_parse_env(fn_config *cfg, char *const *envp,
                                   const struct option *options,
                                   facenet_error *err);

void fn_config_free(fn_config *cfg);

/* The argument vector getopt_long sees. */
typedef struct fn_config_args {
    int argc;
    char **argv;     /* owned array, NULL-terminated: argv[0], the config
                        entries, then the command line's own arguments
                        (those strings are borrowed, the others owned)  */
    int n_config;    /* argv[1 .. n_config] came from the config        */
    char **origins;  /* owned; origins[i - 1] for argv[i], i <= n_config */
} fn_config_args;

/* Build the arguments for `facenet serve`: find the config file (the
 * command line's --config FILE, found with getopt_long over `options`, or
 * else $FACENET_SERVE_CONFIG), read it (at most FN_CONFIG_FILE_MAX bytes),
 * add the environment, and put the entries before argv[1..]. `options` must
 * have an entry named "config". A missing or unreadable config file is an
 * error (IO); so is anything fn_config_parse refuses. Resets optind. */
facenet_status fn_config_args_build(int argc, char **argv, char *const *envp,
                                    const struct option *options,
                                    fn_config_args *out, facenet_error *err);

/* Where argv[index] came from ("serve.conf:3", "FACENET_SERVE_PORT"), or
 * NULL when it came from the command line. */
const char *fn_config_args_origin(const fn_config_args *args, int index);

void fn_config_args_free(fn_config_args *args);

#endif
