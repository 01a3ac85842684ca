/*
 * cmd_keys.c - `facenet keys create|list|revoke|rotate`: API keys for `serve`.
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli/cli.h"
#include "cli/cli_util.h"
#include "server/keys.h"

static void usage(FILE *out)
{
    fprintf(out,
            "usage: facenet keys create --keys FILE --scope detect,verify,... [--rate R] [--burst B]\n"
            "       facenet keys list --keys FILE\n"
            "       facenet keys revoke --keys FILE ID\n"
            "       facenet keys rotate --keys FILE ID [--grace SECONDS]\n"
            "\n"
            "create prints a new API key once; FILE stores only its hash (mode 0600).\n"
            "Scopes: detect, verify, identify, enroll, embed, admin.\n"
            "  --rate R    requests per second refilled into the key's bucket (default 5)\n"
            "  --burst B   bucket size (default 10)\n"
            "rotate prints a new key with the old one's scopes, rate and burst, and\n"
            "revokes the old one, or with --grace lets it work for SECONDS more\n"
            "(at most 2592000, 30 days) before it expires.\n"
            "A running server reads the keys file at start: restart it after a revoke\n"
            "or rotate.\n");
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

/* "2026-11-26T21:50:00Z" */
static void format_utc(long long t, char *buf, size_t size)
{
    time_t tt = (time_t)t;
    struct tm tm;

    if (!gmtime_r(&tt, &tm) || strftime(buf, size, "%Y-%m-%dT%H:%M:%SZ", &tm) == 0)
        snprintf(buf, size, "%lld", t);
}

static const char *key_state(const fn_api_key *key, long long now)
{
    if (key->revoked)
        return "revoked";
    if (!fn_key_is_live(key, now))
        return "expired";
    return key->expires ? "expiring" : "active";
}

static int keys_list(const char *path)
{
    fn_keyring ring;
    facenet_error err;
    long long now = (long long)time(NULL);

    if (fn_keyring_load(path, &ring, &err) != FACENET_OK)
        return cli_report(&err);
    for (size_t i = 0; i < ring.n; i++) {
        const fn_api_key *key = &ring.keys[i];
        char scopes[128], expires[64] = "";
        fn_scopes_format(key->scopes, scopes, sizeof scopes);
        if (key->expires && !key->revoked) {
            char when[32];
            format_utc(key->expires, when, sizeof when);
            snprintf(expires, sizeof expires, " expires=%s", when);
        }
        printf("%s  %-8s rate=%g burst=%g created=%lld scopes=%s%s\n", key->id,
               key_state(key, now), key->rate, key->burst, key->created, scopes, expires);
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

static int keys_rotate(const char *path, const char *id, long long grace)
{
    fn_keyring ring;
    facenet_error err;
    char key[FN_KEY_TEXT_MAX], when[32];
    long long now = (long long)time(NULL);
    long index;

    if (fn_keyring_load(path, &ring, &err) != FACENET_OK)
        return cli_report(&err);
    index = fn_keyring_find(&ring, id);
    if (index < 0) {
        fprintf(stderr, "facenet keys: no key with id %s\n", id);
        fn_keyring_free(&ring);
        return CLI_EXIT_PROBLEM;
    }
    if (fn_keyring_rotate(&ring, (size_t)index, grace, now, key, &err) != FACENET_OK) {
        fn_keyring_free(&ring);
        fprintf(stderr, "facenet keys: %s\n", err.message);
        return CLI_EXIT_PROBLEM;
    }
    if (fn_keyring_save(path, &ring, &err) != FACENET_OK) {
        fn_keyring_free(&ring);
        return cli_report(&err);
    }
    printf("%s\n", key);
    if (grace > 0) {
        format_utc(ring.keys[index].expires, when, sizeof when);
        fprintf(stderr, "facenet keys: key %s replaces %s, which stops working at %s\n",
                ring.keys[ring.n - 1].id, id, when);
    } else {
        fprintf(stderr, "facenet keys: key %s replaces %s, which is revoked\n",
                ring.keys[ring.n - 1].id, id);
    }
    fprintf(stderr, "facenet keys: the new key is shown only this once; restart the "
                    "server to load it\n");
    fn_keyring_free(&ring);
    return CLI_EXIT_OK;
}

int cmd_keys(int argc, char **argv)
{
    static const struct option options[] = {
        {"keys", required_argument, NULL, 'k'},  {"scope", required_argument, NULL, 's'},
        {"rate", required_argument, NULL, 'r'},  {"burst", required_argument, NULL, 'b'},
        {"grace", required_argument, NULL, 'g'}, {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0}};
    const char *path = NULL, *action;
    unsigned scopes = 0;
    double rate = 5, burst = 10;
    long long grace = 0;
    int grace_given = 0, limits_given = 0;
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
            if (cli_parse_double(optarg, 0, 1e6, &rate) != 0 || !(rate > 0)) {
                fprintf(stderr, "facenet keys: --rate must be in (0, 1e6]\n");
                return CLI_EXIT_USAGE;
            }
            limits_given = 1;
            break;
        case 'b':
            if (cli_parse_double(optarg, 1, 1e6, &burst) != 0) {
                fprintf(stderr, "facenet keys: --burst must be in [1, 1e6]\n");
                return CLI_EXIT_USAGE;
            }
            limits_given = 1;
            break;
        case 'g':
            grace = strtoll(optarg, &end, 10);
            if (*end || end == optarg || grace < 0 || grace > FN_KEY_GRACE_MAX) {
                fprintf(stderr, "facenet keys: --grace must be an integer in [0, %lld]\n",
                        FN_KEY_GRACE_MAX);
                return CLI_EXIT_USAGE;
            }
            grace_given = 1;
            break;
        case 'h': usage(stdout); return CLI_EXIT_OK;
        default: usage(stderr); return CLI_EXIT_USAGE;
        }
    }
    if (!path) {
        fprintf(stderr, "facenet keys: --keys FILE is required\n");
        return CLI_EXIT_USAGE;
    }
    if (grace_given && strcmp(action, "rotate") != 0) {
        fprintf(stderr, "facenet keys: --grace belongs to 'keys rotate'\n");
        return CLI_EXIT_USAGE;
    }
    if (strcmp(action, "rotate") == 0 && (scopes || limits_given)) {
        fprintf(stderr, "facenet keys rotate: the new key keeps the old one's scopes, rate and "
                        "burst; create a key to change them\n");
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
    if (strcmp(action, "rotate") == 0 && optind == argc - 1)
        return keys_rotate(path, argv[optind], grace);
    usage(stderr);
    return CLI_EXIT_USAGE;
}
