/*
 * config.c - `facenet serve` options from a file and the environment,
 * turned into getopt_long arguments (see config.h for the format).
 */
#include "server/config.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "common/error.h"
#include "common/fileio.h"

/* Options that never come from a file or the environment: --config would
 * nest, --help is not configuration, and anything named like a secret must
 * be given some other way (a file path, or the variable its command
 * documents), so that a config file never holds one. */
static int option_refused(const char *name)
{
    static const char *const exact[] = {"config", "help", "key", "api-key", "gallery-key"};
    static const char *const words[] = {"secret", "password", "passphrase", "token"};

    for (size_t i = 0; i < sizeof exact / sizeof exact[0]; i++)
        if (strcmp(name, exact[i]) == 0)
            return 1;
    for (size_t i = 0; i < sizeof words / sizeof words[0]; i++)
        if (strstr(name, words[i]))
            return 1;
    return 0;
}

static const struct option *find_option(const struct option *options, const char *name)
{
    for (const struct option *o = options; o->name; o++)
        if (strcmp(o->name, name) == 0)
            return o;
    return NULL;
}

static int parse_flag(const char *value, int *on)
{
    static const char *const yes[] = {"true", "yes", "on", "1"};
    static const char *const no[] = {"false", "no", "off", "0"};

    for (size_t i = 0; i < 4; i++) {
        if (strcasecmp(value, yes[i]) == 0) {
            *on = 1;
            return 0;
        }
        if (strcasecmp(value, no[i]) == 0) {
            *on = 0;
            return 0;
        }
    }
    return -1;
}

static void entry_free(fn_config_entry *e)
{
    free(e->value);
    free(e->origin);
    e->value = e->origin = NULL;
}

void fn_config_free(fn_config *cfg)
{
    for (size_t i = 0; i < cfg->n; i++)
        entry_free(&cfg->entries[i]);
    free(cfg->entries);
    cfg->entries = NULL;
    cfg->n = 0;
}

static char *dup_text(const char *text, size_t len)
{
    char *copy = malloc(len + 1);
    if (copy) {
        memcpy(copy, text, len);
        copy[len] = '\0';
    }
    return copy;
}

/* Check one name = value pair and append it to `add`. `name` is already
 * normalised ('-' separated, lower case). Error messages name the option
 * and the origin, never the value: it might be something private. */
static facenet_status add_entry(fn_config *add, const struct option *options, const char *name,
                                const char *value, const char *origin, facenet_error *err)
{
    const struct option *o = find_option(options, name);
    fn_config_entry e = {o, NULL, 1, NULL};
    fn_config_entry *grown;

    if (!o)
        return fn_fail(err, FACENET_ERR_INVALID_ARGUMENT, "%s: unknown option '%s'", origin,
                       name);
    if (option_refused(name))
        return fn_fail(err, FACENET_ERR_INVALID_ARGUMENT,
                       "%s: '%s' cannot be set from a config file or the environment", origin,
                       name);
    for (size_t i = 0; i < add->n; i++)
        if (add->entries[i].option == o)
            return fn_fail(err, FACENET_ERR_INVALID_ARGUMENT, "%s: '%s' is already set at %s",
                           origin, name, add->entries[i].origin);
    if (o->has_arg == no_argument) {
        if (parse_flag(value, &e.on) != 0)
            return fn_fail(err, FACENET_ERR_INVALID_ARGUMENT,
                           "%s: '%s' is a flag: give true or false", origin, name);
    } else {
        if (*value == '\0')
            return fn_fail(err, FACENET_ERR_INVALID_ARGUMENT, "%s: '%s' needs a value", origin,
                           name);
        if (strstr(value, "fnk_"))
            return fn_fail(err, FACENET_ERR_INVALID_ARGUMENT,
                           "%s: the value of '%s' looks like an API key: keys never go into "
                           "configuration (give --keys a keys file)",
                           origin, name);
        e.value = dup_text(value, strlen(value));
        if (!e.value)
            return fn_fail(err, FACENET_ERR_NO_MEMORY, "out of memory");
    }
    e.origin = dup_text(origin, strlen(origin));
    grown = e.origin ? realloc(add->entries, (add->n + 1) * sizeof *grown) : NULL;
    if (!grown) {
        entry_free(&e);
        return fn_fail(err, FACENET_ERR_NO_MEMORY, "out of memory");
    }
    add->entries = grown;
    add->entries[add->n++] = e;
    return FACENET_OK;
}

/* Move the entries of `add` into cfg, replacing those for the same option.
 * Allocates first, so that a failure leaves both untouched. */
static facenet_status merge(fn_config *cfg, fn_config *add, facenet_error *err)
{
    fn_config_entry *merged;
    size_t n = 0;

    if (add->n == 0)
        return FACENET_OK;
    merged = malloc((cfg->n + add->n) * sizeof *merged);
    if (!merged)
        return fn_fail(err, FACENET_ERR_NO_MEMORY, "out of memory");
    for (size_t i = 0; i < cfg->n; i++) {
        int replaced = 0;
        for (size_t j = 0; j < add->n && !replaced; j++)
            replaced = add->entries[j].option == cfg->entries[i].option;
        if (replaced)
            entry_free(&cfg->entries[i]);
        else
            merged[n++] = cfg->entries[i];
    }
    memcpy(merged + n, add->entries, add->n * sizeof *merged);
    n += add->n;
    free(cfg->entries);
    free(add->entries);
    add->entries = NULL;
    add->n = 0;
    cfg->entries = merged;
    cfg->n = n;
    return FACENET_OK;
}

static int is_blank(char c)
{
    return c == ' ' || c == '\t';
}

/* Trim blanks from both ends of [*start, *end). */
static void trim(const char **start, const char **end)
{
    while (*start < *end && is_blank(**start))
        (*start)++;
    while (*end > *start && is_blank((*end)[-1]))
        (*end)--;
}

/* One line (without its newline) of a config file. */
static facenet_status parse_line(fn_config *add, const char *line, size_t len,
                                 const char *origin, const struct option *options,
                                 facenet_error *err)
{
    const char *start = line, *end = line + len, *eq, *vstart, *vend;
    char name[64], value[FN_CONFIG_LINE_MAX + 1];
    size_t name_len;

    if (len > 0 && line[len - 1] == '\r') /* CRLF files */
        end--;
    for (const char *p = start; p < end; p++)
        if ((unsigned char)*p < 0x20 && *p != '\t')
            return fn_fail(err, FACENET_ERR_INVALID_ARGUMENT,
                           "%s: control character (not a text line)", origin);
    trim(&start, &end);
    if (start == end || *start == '#')
        return FACENET_OK;
    eq = memchr(start, '=', (size_t)(end - start));
    if (!eq)
        return fn_fail(err, FACENET_ERR_INVALID_ARGUMENT, "%s: expected 'name = value'",
                       origin);
    vstart = eq + 1;
    vend = end;
    trim(&vstart, &vend);
    trim(&start, &eq);
    name_len = (size_t)(eq - start);
    if (name_len == 0 || name_len >= sizeof name ||
        strspn(start, "abcdefghijklmnopqrstuvwxyz0123456789-_") < name_len)
        return fn_fail(err, FACENET_ERR_INVALID_ARGUMENT,
                       "%s: an option name is lower-case letters, digits, '-' and '_'", origin);
    for (size_t i = 0; i < name_len; i++)
        name[i] = start[i] == '_' ? '-' : start[i];
    name[name_len] = '\0';
    memcpy(value, vstart, (size_t)(vend - vstart));
    value[vend - vstart] = '\0';
    return add_entry(add, options, name, value, origin, err);
}

facenet_status fn_config_parse(fn_config *cfg, const char *text, size_t len,
                               const char *source, const struct option *options,
                               facenet_error *err)
{
    fn_config add = {NULL, 0};
    facenet_status st = FACENET_OK;
    size_t pos = 0, line_no = 0;
    char origin[600];

    if (len > FN_CONFIG_FILE_MAX)
        return fn_fail(err, FACENET_ERR_LIMIT, "%s: larger than %zu bytes", source,
                       FN_CONFIG_FILE_MAX);
    while (pos < len && st == FACENET_OK) {
        const char *line = text + pos;
        const char *nl = memchr(line, '\n', len - pos);
        size_t line_len = nl ? (size_t)(nl - line) : len - pos;

        line_no++;
        snprintf(origin, sizeof origin, "%s:%zu", source, line_no);
        if (line_len > FN_CONFIG_LINE_MAX)
            st = fn_fail(err, FACENET_ERR_INVALID_ARGUMENT, "%s: line longer than %d bytes",
                         origin, FN_CONFIG_LINE_MAX);
        else
            st = parse_line(&add, line, line_len, origin, options, err);
        pos += line_len + (nl ? 1 : 0);
    }
    if (st == FACENET_OK)
        st = merge(cfg, &add, err);
    fn_config_free(&add);
    return st;
}

facenet_status fn_config_parse_env(fn_config *cfg, char *const *envp,
                                   const struct option *options, facenet_error *err)
{
    const size_t prefix_len = strlen(FN_CONFIG_ENV_PREFIX);
    fn_config add = {NULL, 0};
    facenet_status st = FACENET_OK;

    for (size_t i = 0; envp && envp[i] && st == FACENET_OK; i++) {
        const char *var = envp[i], *eq = strchr(var, '=');
        char name[64], origin[64 + 16];
        size_t name_len;

        if (strncmp(var, FN_CONFIG_ENV_PREFIX, prefix_len) != 0 || !eq)
            continue;
        name_len = (size_t)(eq - var) - prefix_len;
        if (name_len == 6 && strncmp(var + prefix_len, "CONFIG", 6) == 0)
            continue; /* the config file's path: fn_config_args_build */
        if (name_len == 0 || name_len >= sizeof name ||
            strspn(var + prefix_len, "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_") < name_len) {
            st = fn_fail(err, FACENET_ERR_INVALID_ARGUMENT,
                         "environment: a %s variable with a malformed name", FN_CONFIG_ENV_PREFIX);
            break;
        }
        snprintf(origin, sizeof origin, "%.*s", (int)(eq - var), var);
        for (size_t j = 0; j < name_len; j++) {
            char c = var[prefix_len + j];
            name[j] = c == '_' ? '-' : (char)(c >= 'A' && c <= 'Z' ? c - 'A' + 'a' : c);
        }
        name[name_len] = '\0';
        if (strlen(eq + 1) > FN_CONFIG_LINE_MAX)
            st = fn_fail(err, FACENET_ERR_INVALID_ARGUMENT, "%s: longer than %d bytes", origin,
                         FN_CONFIG_LINE_MAX);
        else
            st = add_entry(&add, options, name, eq + 1, origin, err);
    }
    if (st == FACENET_OK)
        st = merge(cfg, &add, err);
    fn_config_free(&add);
    return st;
}

/* ---- the argument vector -------------------------------------------------- */

void fn_config_args_free(fn_config_args *args)
{
    for (int i = 1; i <= args->n_config && args->argv && args->origins; i++) {
        free(args->argv[i]);
        free(args->origins[i - 1]);
    }
    free(args->argv);
    free(args->origins);
    memset(args, 0, sizeof *args);
}

const char *fn_config_args_origin(const fn_config_args *args, int index)
{
    if (index < 1 || index > args->n_config)
        return NULL;
    return args->origins[index - 1];
}

/* The command line's --config FILE, found by getopt_long itself so that
 * abbreviations ("--conf") and option values that look like options are
 * read exactly as the real parse will read them. NULL when absent. */
static const char *config_path_from_argv(int argc, char **argv, const struct option *options,
                                         facenet_status *st, facenet_error *err)
{
    char **copy = calloc((size_t)argc + 1, sizeof *copy);
    const char *path = NULL;
    int c, index, saved_opterr = opterr;

    *st = FACENET_OK;
    if (!copy) {
        *st = fn_fail(err, FACENET_ERR_NO_MEMORY, "out of memory");
        return NULL;
    }
    memcpy(copy, argv, (size_t)argc * sizeof *copy); /* getopt permutes */
    opterr = 0;
    optind = 1;
    while ((c = getopt_long(argc, copy, "", options, &index)) != -1)
        if (c != '?' && c != ':' && strcmp(options[index].name, "config") == 0)
            path = optarg;
    opterr = saved_opterr;
    optind = 1;
    free(copy);
    return path;
}

static const char *env_value(char *const *envp, const char *name)
{
    size_t len = strlen(name);
    for (size_t i = 0; envp && envp[i]; i++)
        if (strncmp(envp[i], name, len) == 0 && envp[i][len] == '=')
            return envp[i] + len + 1;
    return NULL;
}

static facenet_status load_config_file(fn_config *cfg, const char *path,
                                       const struct option *options, facenet_error *err)
{
    uint8_t *data = NULL;
    size_t size = 0;
    facenet_status st;

    if (*path == '\0')
        return fn_fail(err, FACENET_ERR_INVALID_ARGUMENT, "--config: empty path");
    st = fn_read_file(path, FN_CONFIG_FILE_MAX, &data, &size, err);
    if (st == FACENET_ERR_NOT_FOUND) /* not a model: an input error */
        return fn_fail(err, FACENET_ERR_IO, "config file %s: no such file", path);
    if (st != FACENET_OK)
        return st;
    st = fn_config_parse(cfg, (const char *)data, size, path, options, err);
    free(data);
    return st;
}

/* "--name=value", or "--name" for a flag. */
static char *option_text(const fn_config_entry *e)
{
    size_t len = 2 + strlen(e->option->name) + (e->value ? 1 + strlen(e->value) : 0);
    char *text = malloc(len + 1);

    if (text)
        snprintf(text, len + 1, "--%s%s%s", e->option->name, e->value ? "=" : "",
                 e->value ? e->value : "");
    return text;
}

facenet_status fn_config_args_build(int argc, char **argv, char *const *envp,
                                    const struct option *options, fn_config_args *out,
                                    facenet_error *err)
{
    fn_config cfg = {NULL, 0};
    const char *path;
    facenet_status st;
    size_t n = 0;

    memset(out, 0, sizeof *out);
    path = config_path_from_argv(argc, argv, options, &st, err);
    if (st != FACENET_OK)
        return st;
    if (!path)
        path = env_value(envp, FN_CONFIG_ENV_PREFIX "CONFIG");
    if (path)
        st = load_config_file(&cfg, path, options, err);
    if (st == FACENET_OK)
        st = fn_config_parse_env(&cfg, envp, options, err);
    if (st != FACENET_OK) {
        fn_config_free(&cfg);
        return st;
    }
    out->argv = calloc(cfg.n + (size_t)argc + 1, sizeof *out->argv);
    out->origins = calloc(cfg.n + 1, sizeof *out->origins);
    if (!out->argv || !out->origins) {
        fn_config_free(&cfg);
        fn_config_args_free(out);
        return fn_fail(err, FACENET_ERR_NO_MEMORY, "out of memory");
    }
    out->argv[0] = argv[0];
    for (size_t i = 0; i < cfg.n; i++) {
        if (!cfg.entries[i].on)
            continue; /* a flag switched off */
        out->argv[1 + n] = option_text(&cfg.entries[i]);
        out->origins[n] = cfg.entries[i].origin;
        cfg.entries[i].origin = NULL; /* moved */
        out->n_config = (int)++n;
        if (!out->argv[n] || !out->origins[n - 1]) {
            fn_config_free(&cfg);
            fn_config_args_free(out);
            return fn_fail(err, FACENET_ERR_NO_MEMORY, "out of memory");
        }
    }
    for (int i = 1; i < argc; i++)
        out->argv[n + (size_t)i] = argv[i];
    out->argc = (int)n + argc;
    fn_config_free(&cfg);
    return FACENET_OK;
}
