/*
 * fuzz_serve_config.c - libFuzzer target for the `facenet serve` config
 * parser (src/server/config.c): the input is a config file's text, and,
 * split at newlines, a list of environment variables.
 *
 * Contract checked besides crashes and leaks: a failure leaves the
 * configuration exactly as it was and has a message; a success gives one
 * entry per option, each from the table, with an origin, a value for
 * options that take one (never an API key) and none for flags.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "server/config.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const struct option options[] = {
    {"keys", required_argument, NULL, 'k'},     {"bind", required_argument, NULL, 'B'},
    {"port", required_argument, NULL, 'p'},     {"max-body", required_argument, NULL, 'b'},
    {"model-dir", required_argument, NULL, 'M'}, {"dev", no_argument, NULL, 'D'},
    {"help", no_argument, NULL, 'h'},           {"config", required_argument, NULL, 'C'},
    {NULL, 0, NULL, 0}};

static void check_entries(const fn_config *cfg)
{
    for (size_t i = 0; i < cfg->n; i++) {
        const fn_config_entry *e = &cfg->entries[i];
        if (!e->option || !e->origin || !e->origin[0])
            abort();
        if ((e->option->has_arg == no_argument) != (e->value == NULL))
            abort();
        if (e->value && (!e->value[0] || strstr(e->value, "fnk_")))
            abort();
        if (strcmp(e->option->name, "config") == 0 || strcmp(e->option->name, "help") == 0)
            abort();
        for (size_t j = 0; j < i; j++)
            if (cfg->entries[j].option == e->option)
                abort();
    }
}

/* The input split at newlines into a NULL-terminated list (NULs inside a
 * line end that string early, as they would in a real environment). */
static char **split_env(const uint8_t *data, size_t size, char **text)
{
    size_t lines = 1;
    char **envp;

    *text = malloc(size + 1);
    if (!*text)
        return NULL;
    memcpy(*text, data, size);
    (*text)[size] = '\0';
    for (size_t i = 0; i < size; i++)
        lines += data[i] == '\n';
    envp = calloc(lines + 1, sizeof *envp);
    if (!envp)
        return NULL;
    lines = 0;
    for (char *p = *text, *nl;; p = nl + 1) {
        envp[lines++] = p;
        nl = strchr(p, '\n');
        if (!nl)
            break;
        *nl = '\0';
    }
    return envp;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fn_config cfg = {NULL, 0};
    facenet_error err;
    char *text = NULL, **envp;
    size_t before;

    if (fn_config_parse(&cfg, "port = 1\n", 9, "seed", options, &err) != FACENET_OK)
        abort();
    before = cfg.n;
    err.message[0] = '\0';
    if (fn_config_parse(&cfg, (const char *)data, size, "fuzz.conf", options, &err) !=
        FACENET_OK) {
        if (cfg.n != before || !err.message[0])
            abort();
    }
    check_entries(&cfg);

    envp = split_env(data, size, &text);
    if (envp) {
        before = cfg.n;
        err.message[0] = '\0';
        if (fn_config_parse_env(&cfg, envp, options, &err) != FACENET_OK &&
            (cfg.n != before || !err.message[0]))
            abort();
        check_entries(&cfg);
    }
    free(envp);
    free(text);
    fn_config_free(&cfg);
    return 0;
}
