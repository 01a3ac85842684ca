/*
 * cmd_keys.c - `facenet keys create|list|revoke`: API keys for `serve`.
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "server/keys.h"

static void usage(FILE *out)
{
    fprintf(out,
            "usage: facenet keys create --keys FILE --scope detect,verify,... [--rate R] [--burst B]\n"
            "       facenet keys list --keys FILE\n"
            "       facenet keys revoke --keys FILE ID\n"
            "\n"
            "create prints a new API key once; FILE stores only its hash (mode 0600).\n"
            "Scopes: detect, verify, identify, enroll, embed, admin.\n"
            "  --rate R    requests per second refilled into the key's bucket (default 5)\n"
            "  --burst B   bucket size (default 10)\n"
            "A running server reads the keys file at start: restart it after a revoke.\n");
}

static int keys_create(const char *path, unsigned scopes, double rate, double burst)
{
    fn_keyring ring;
    facenet_error err;
    char key[FN_KEY_TEXT_MAX];

    if (fn_keyring_load(path, &ring, &err) != FACENET_OK)
        return cli_report(&err);
    if (fn_keyring_create(&ring, scopes, rate, burst, key, &err) != FACENET_OK ||
        fn_keyring_save(path, &ring, &err) != FACENET_OK) {
        fn_keyring_free(&ring);
        return cli_report(&err);
    }
    printf("%s\n", key);
    fprintf(stderr, "facenet keys: created key %s; it is shown only this once\n",
            ring.keys[ring.n - 1].id);
    fn_keyring_free(&ring);
    return CLI_EXIT_OK;
}

static int keys_list(const char *path)
{
    fn_keyring ring;
    facenet_error err;

    if (fn_keyring_load(path, &ring, &err) != FACENET_OK)
        return cli_report(&err);
    for (size_t i = 0; i < ring.n; i++) {
        char scopes[128];
        fn_scopes_format(ring.keys[i].scopes, scopes, sizeof scopes);
        printf("%s  %-8s rate=%g burst=%g created=%lld scopes=%s\n", ring.keys[i].id,
               ring.keys[i].revoked ? "revoked" : "active", ring.keys[i].rate,
               ring.keys[i].burst, ring.keys[i].created, scopes);
    }
    fn_keyring_free(&ring);
    return CLI_EXIT_OK;
}

static int keys_revoke(const char *path, const char *id)
{
    fn_keyring ring;
    facenet_error err;
    long index;

    if (fn_keyring_load(path, &ring, &err) != FACENET_OK)
        return cli_report(&err);
    index = fn_keyring_find(&ring, id);
    if (index < 0) {
        fprintf(stderr, "facenet keys: no key with id %s\n", id);
        fn_keyring_free(&ring);
        return CLI_EXIT_PROBLEM;
    }
    ring.keys[index].revoked = 1;
    if (fn_keyring_save(path, &ring, &err) != FACENET_OK) {
        fn_keyring_free(&ring);
        return cli_report(&err);
    }
    fn_keyring_free(&ring);
    return CLI_EXIT_OK;
}

int cmd_keys(int argc, char **argv)
{
    static const struct option options[] = {
        {"keys", required_argument, NULL, 'k'},  {"scope", required_argument, NULL, 's'},
        {"rate", required_argument, NULL, 'r'},  {"burst", required_argument, NULL, 'b'},
        {"help", no_argument, NULL, 'h'},        {NULL, 0, NULL, 0}};
    const char *path = NULL, *action;
    unsigned scopes = 0;
    double rate = 5, burst = 10;
    int c;

    if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
        usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? CLI_EXIT_USAGE : CLI_EXIT_OK;
    }
    action = argv[1];
    argc--;
    argv++;
    optind = 1;
    while ((c = getopt_long(argc, argv, "h", options, NULL)) != -1) {
        char *end = NULL;
        switch (c) {
        case 'k': path = optarg; break;
        case 's':
            if (fn_scopes_parse(optarg, &scopes) != 0) {
                fprintf(stderr, "facenet keys: --scope: unknown scope in '%s'\n", optarg);
                return CLI_EXIT_USAGE;
            }
            break;
        case 'r':
            rate = strtod(optarg, &end);
            if (*end || !(rate > 0 && rate <= 1e6)) {
                fprintf(stderr, "facenet keys: --rate must be in (0, 1e6]\n");
                return CLI_EXIT_USAGE;
            }
            break;
        case 'b':
            burst = strtod(optarg, &end);
            if (*end || !(burst >= 1 && burst <= 1e6)) {
                fprintf(stderr, "facenet keys: --burst must be in [1, 1e6]\n");
                return CLI_EXIT_USAGE;
            }
            break;
        case 'h': usage(stdout); return CLI_EXIT_OK;
        default: usage(stderr); return CLI_EXIT_USAGE;
        }
    }
    if (!path) {
        fprintf(stderr, "facenet keys: --keys FILE is required\n");
        return CLI_EXIT_USAGE;
    }
    if (strcmp(action, "create") == 0 && optind == argc) {
        if (!scopes) {
            fprintf(stderr, "facenet keys create: --scope is required\n");
            return CLI_EXIT_USAGE;
        }
        return keys_create(path, scopes, rate, burst);
    }
    if (strcmp(action, "list") == 0 && optind == argc)
        return keys_list(path);
    if (strcmp(action, "revoke") == 0 && optind == argc - 1)
        return keys_revoke(path, argv[optind]);
    usage(stderr);
    return CLI_EXIT_USAGE;
}
