/*
 * cmd_serve.c - `facenet serve`: run the HTTP API until SIGTERM or SIGINT.
 */
#include <getopt.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "cli/cli_util.h"
#include "server/config.h"
#include "server/server.h"

/* The process environment, as POSIX defines it; only read here. */
extern char **environ;

static void usage(FILE *out)
{
    fprintf(out,
            "usage: facenet serve --keys FILE [OPTIONS]\n"
            "\n"
            "Serve /v1/detect, /v1/verify, /v1/embed, /healthz, /readyz, /metrics and\n"
            "/openapi.json over HTTP. POST endpoints need 'Authorization: Bearer KEY'\n"
            "(see 'facenet keys'). Stops on SIGTERM after in-flight requests finish.\n"
            "The keys file is reloaded when it changes (and on SIGHUP): a revoked key\n"
            "is refused within a second, without a restart.\n"
            "\n"
            "  --keys FILE         API keys file (from 'facenet keys create')\n"
            "  --bind ADDR         IPv4 address to listen on (default 127.0.0.1)\n"
            "  --port N            TCP port (default 8080; 0 picks a free one)\n"
            "  --threads N         HTTP threads: read requests, write responses (default 4);\n"
            "                      models run on threads of their own\n"
            "  --pipelines N       concurrent inferences; more get 503 (default 2)\n"
            "  --max-body BYTES    request body cap (default 16777216)\n"
            "  --max-body-memory BYTES  all bodies being received at once; a new one\n"
            "                      past it gets 503 unread (default 268435456)\n"
            "  --max-pixels N      decoded image pixel cap (default 16000000)\n"
            "  --max-faces N       faces returned per image (default 64)\n"
            "  --timeout S         idle connection timeout, seconds (default 30)\n"
            "  --drain S           shutdown wait for in-flight requests (default 30)\n"
            "  --model NAME        embedder (default mobilefacenet)\n"
            "  --model-dir DIR     model directory\n"
            "  --dev               allow running with no keys (only on 127.0.0.1)\n"
            "  --tls-cert FILE     serve HTTPS with this PEM certificate (chain) ...\n"
            "  --tls-key FILE      ... and this PEM private key (mode 0600)\n"
            "  --config FILE       read options from FILE ('name = value' lines); also\n"
            "                      $FACENET_SERVE_CONFIG. Every option can also come from\n"
            "                      $FACENET_SERVE_<NAME> (e.g. FACENET_SERVE_MAX_BODY).\n"
            "                      The command line overrides the environment, which\n"
            "                      overrides the file.\n"
            "  --gallery FILE      serve /v1/identify, /v1/verify against a subject and\n"
            "                      /v1/collections/... from this gallery (created when\n"
            "                      missing)\n"
            "  --gallery-key-file K  its key file, mode 0600 (default:\n"
            "                      $FACENET_GALLERY_KEY); never the key itself\n"
            "  --gallery-refresh S pick up other processes' gallery writes every S\n"
            "                      seconds (default 2)\n"
            "  --max-inflight-per-key N  concurrent requests per API key; more get\n"
            "                      429 (default 8; 0: no cap)\n"
            "  --deadline-ms MS    per-request deadline: wait up to it for a busy\n"
            "                      pipeline (503 past it), 504 for an answer later\n"
            "                      than it (default 0: none, a busy server 503s at once)\n"
            "  --max-queue N       requests that may wait for a pipeline under\n"
            "                      --deadline-ms; more get 503 at once (default 16)\n"
            "  --best-accuracy     /v1/verify judges at the best-accuracy threshold\n"
            "                      instead of the strict one (FAR 1e-3), as compare\n");
}

/* File scope: cmd_serve reads the config file and environment with it. */
static const struct option serve_options[] = {
    {"keys", required_argument, NULL, 'k'},       {"bind", required_argument, NULL, 'B'},
    {"port", required_argument, NULL, 'p'},       {"threads", required_argument, NULL, 't'},
    {"pipelines", required_argument, NULL, 'P'},  {"max-body", required_argument, NULL, 'b'},
    {"max-pixels", required_argument, NULL, 'x'}, {"max-faces", required_argument, NULL, 'f'},
    {"timeout", required_argument, NULL, 'T'},    {"drain", required_argument, NULL, 'd'},
    {"model", required_argument, NULL, 'm'},      {"model-dir", required_argument, NULL, 'M'},
    {"dev", no_argument, NULL, 'D'},              {"help", no_argument, NULL, 'h'},
    {"config", required_argument, NULL, 'C'},     {"tls-cert", required_argument, NULL, 'c'},
    {"tls-key", required_argument, NULL, 'K'},
    {"gallery", required_argument, NULL, 'g'},    {"gallery-key-file", required_argument, NULL, 'G'},
    {"gallery-refresh", required_argument, NULL, 'R'},
    {"max-inflight-per-key", required_argument, NULL, 'I'},
    {"deadline-ms", required_argument, NULL, 'L'},
    {"max-queue", required_argument, NULL, 'Q'},
    {"max-body-memory", required_argument, NULL, 'y'},
    {"best-accuracy", no_argument, NULL, 'A'},    {NULL, 0, NULL, 0}};

static int parse_long(const char *name, const char *text, long lo, long hi, long *out)
{
    if (cli_parse_long(text, lo, hi, out) != 0) {
        fprintf(stderr, "facenet serve: %s must be an integer in [%ld, %ld]\n", name, lo, hi);
        return -1;
    }
    return 0;
}

static int serve_run(int argc, char **argv, int *options_done)
{
    fn_server_config config;
    const char *keys_path = NULL, *model_dir_opt = NULL;
    char model_dir[PATH_MAX];
    fn_keyring keys = {NULL, 0};
    fn_server *server = NULL;
    facenet_error err;
    sigset_t stop_signals;
    long v;
    int c, sig = 0;

    fn_server_config_default(&config);
    optind = 1;
    while ((c = getopt_long(argc, argv, "h", serve_options, NULL)) != -1) {
        switch (c) {
        case 'k': keys_path = optarg; break;
        case 'B': config.bind = optarg; break;
        case 'm': config.embed_model = optarg; break;
        case 'M': model_dir_opt = optarg; break;
        case 'D': config.dev = 1; break;
        case 'g': config.gallery = optarg; break;
        case 'G': config.gallery_key_file = optarg; break;
        case 'A': config.verify_best_accuracy = 1; break;
        case 'R':
            if (parse_long("--gallery-refresh", optarg, 1, 3600, &v) != 0) return CLI_EXIT_USAGE;
            config.gallery_refresh_s = (int)v;
            break;
        case 'I':
            if (parse_long("--max-inflight-per-key", optarg, 0, 100000, &v) != 0) return CLI_EXIT_USAGE;
            config.max_inflight_per_key = (int)v;
            break;
        case 'L':
            if (parse_long("--deadline-ms", optarg, 0, 3600000, &v) != 0) return CLI_EXIT_USAGE;
            config.deadline_ms = (int)v;
            break;
        case 'Q':
            if (parse_long("--max-queue", optarg, 0, 100000, &v) != 0) return CLI_EXIT_USAGE;
            config.max_queue = (int)v;
            break;
        case 'p':
            if (parse_long("--port", optarg, 0, 65535, &v) != 0) return CLI_EXIT_USAGE;
            config.port = (int)v;
            break;
        case 't':
            if (parse_long("--threads", optarg, 1, 256, &v) != 0) return CLI_EXIT_USAGE;
            config.threads = (int)v;
            break;
        case 'P':
            if (parse_long("--pipelines", optarg, 1, 64, &v) != 0) return CLI_EXIT_USAGE;
            config.pipelines = (int)v;
            break;
        case 'b':
            if (parse_long("--max-body", optarg, 1024, 1L << 30, &v) != 0) return CLI_EXIT_USAGE;
            config.max_body = (size_t)v;
            break;
        case 'y':
            if (parse_long("--max-body-memory", optarg, 1024, 1L << 40, &v) != 0)
                return CLI_EXIT_USAGE;
            config.max_body_memory = (size_t)v;
            break;
        case 'x':
            if (parse_long("--max-pixels", optarg, 1, 400000000L, &v) != 0) return CLI_EXIT_USAGE;
            config.max_pixels = (unsigned long long)v;
            break;
        case 'f':
            if (parse_long("--max-faces", optarg, 1, 10000, &v) != 0) return CLI_EXIT_USAGE;
            config.max_faces = (int)v;
            break;
        case 'T':
            if (parse_long("--timeout", optarg, 1, 3600, &v) != 0) return CLI_EXIT_USAGE;
            config.timeout_s = (int)v;
            break;
        case 'd':
            if (parse_long("--drain", optarg, 0, 3600, &v) != 0) return CLI_EXIT_USAGE;
            config.drain_s = (int)v;
            break;
        case 'C': break; /* read by cmd_serve before this parse */
        case 'c': config.tls_cert = optarg; break;
        case 'K': config.tls_key = optarg; break;
        case 'h': usage(stdout); return CLI_EXIT_OK;
        default: usage(stderr); return CLI_EXIT_USAGE;
        }
    }
    *options_done = 1;
    if (optind != argc || (!keys_path && !config.dev)) {
        usage(stderr);
        return CLI_EXIT_USAGE;
    }
    if (cli_model_dir(model_dir_opt, model_dir, sizeof model_dir) != 0)
        return CLI_EXIT_MODEL;
    config.model_dir = model_dir;
    config.keys_path = keys_path;
    if (keys_path && fn_keyring_load(keys_path, &keys, &err) != FACENET_OK)
        return cli_report(&err);

    /* Block the stop signals before the daemon's threads start, so that
     * they inherit the mask and only sigwait() below sees them. */
    sigemptyset(&stop_signals);
    sigaddset(&stop_signals, SIGTERM);
    sigaddset(&stop_signals, SIGINT);
    sigaddset(&stop_signals, SIGHUP); /* reload the keys file */
    pthread_sigmask(SIG_BLOCK, &stop_signals, NULL);
    signal(SIGPIPE, SIG_IGN);

    if (fn_server_start(&config, &keys, &server, &err) != FACENET_OK) {
        fn_keyring_free(&keys);
        return cli_report(&err);
    }
    fprintf(stderr, "facenet serve: listening on %s://%s:%d/\n",
            config.tls_cert ? "https" : "http", config.bind, fn_server_port(server));
    while (sigwait(&stop_signals, &sig) == 0 && sig == SIGHUP)
        fn_server_reload_keys(server);
    fprintf(stderr, "facenet serve: %s, draining\n", sig == SIGTERM ? "SIGTERM" : "SIGINT");
    fn_server_stop(server);
    fprintf(stderr, "facenet serve: stopped\n");
    return CLI_EXIT_OK;
}

/* Options from the config file and the environment go before the command
 * line's, through the same parse; a bad value is then traced to its line or
 * variable. */
int cmd_serve(int argc, char **argv)
{
    fn_config_args args;
    facenet_error err;
    int rc, options_done = 0;

    if (fn_config_args_build(argc, argv, environ, serve_options, &args, &err) != FACENET_OK) {
        fprintf(stderr, "facenet serve: %s\n", err.message);
        return cli_exit_code(err.code);
    }
    rc = serve_run(args.argc, args.argv, &options_done);
    if (rc == CLI_EXIT_USAGE && !options_done && fn_config_args_origin(&args, optind - 1))
        fprintf(stderr, "facenet serve: (that option came from %s)\n",
                fn_config_args_origin(&args, optind - 1));
    fn_config_args_free(&args);
    return rc;
}
