/* Unit tests of the `facenet serve` config file and environment parser
 * (src/server/config.c): the format, strict errors that name the line or
 * variable, precedence (file < environment < command line), and the
 * argument vector handed to getopt_long. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "server/config.h"

/* A table like `facenet serve`'s, plus names that must be refused. */
static const struct option options[] = {
    {"keys", required_argument, NULL, 'k'},     {"bind", required_argument, NULL, 'B'},
    {"port", required_argument, NULL, 'p'},     {"threads", required_argument, NULL, 't'},
    {"max-body", required_argument, NULL, 'b'}, {"model-dir", required_argument, NULL, 'M'},
    {"tls-key", required_argument, NULL, 'K'},  {"dev", no_argument, NULL, 'D'},
    {"help", no_argument, NULL, 'h'},           {"config", required_argument, NULL, 'C'},
    {"gallery-key", required_argument, NULL, 'g'},
    {"api-token", required_argument, NULL, 'a'}, {NULL, 0, NULL, 0}};

static const fn_config_entry *entry(const fn_config *cfg, const char *name)
{
    for (size_t i = 0; i < cfg->n; i++)
        if (strcmp(cfg->entries[i].option->name, name) == 0)
            return &cfg->entries[i];
    return NULL;
}

static facenet_status parse(fn_config *cfg, const char *text, facenet_error *err)
{
    return fn_config_parse(cfg, text, strlen(text), "serve.conf", options, err);
}

static void test_format(void **state)
{
    fn_config cfg = {NULL, 0};
    facenet_error err;
    const fn_config_entry *e;
    (void)state;

    assert_int_equal(parse(&cfg,
                           "# facenet serve\n"
                           "\n"
                           "   # indented comment\n"
                           "port=8081\n"
                           "  bind   =\t127.0.0.1  \r\n"
                           "max_body = 1048576\n"
                           "model-dir = /srv/models dir/a=b#c\n"
                           "dev = Yes",
                           &err),
                     FACENET_OK);
    assert_int_equal(cfg.n, 5);
    assert_string_equal(entry(&cfg, "port")->value, "8081");
    assert_string_equal(entry(&cfg, "port")->origin, "serve.conf:4");
    assert_string_equal(entry(&cfg, "bind")->value, "127.0.0.1");
    e = entry(&cfg, "max-body"); /* '_' is '-' */
    assert_non_null(e);
    assert_string_equal(e->value, "1048576");
    /* Values are verbatim: blanks inside, '=' and '#' are kept. */
    assert_string_equal(entry(&cfg, "model-dir")->value, "/srv/models dir/a=b#c");
    e = entry(&cfg, "dev");
    assert_null(e->value);
    assert_int_equal(e->on, 1);
    assert_string_equal(e->origin, "serve.conf:8");
    fn_config_free(&cfg);
    assert_int_equal(cfg.n, 0);

    /* Every spelling of a flag. */
    const char *yes[] = {"true", "yes", "on", "1", "TRUE"};
    const char *no[] = {"false", "no", "off", "0", "Off"};
    for (size_t i = 0; i < 5; i++) {
        char text[32];
        snprintf(text, sizeof text, "dev = %s\n", yes[i]);
        assert_int_equal(parse(&cfg, text, &err), FACENET_OK);
        assert_int_equal(entry(&cfg, "dev")->on, 1);
        snprintf(text, sizeof text, "dev = %s\n", no[i]);
        assert_int_equal(parse(&cfg, text, &err), FACENET_OK);
        assert_int_equal(entry(&cfg, "dev")->on, 0);
        fn_config_free(&cfg);
    }
    /* Empty and comment-only files are fine. */
    assert_int_equal(parse(&cfg, "", &err), FACENET_OK);
    assert_int_equal(parse(&cfg, "#\n\n  \n", &err), FACENET_OK);
    assert_int_equal(cfg.n, 0);
}

static void test_errors_name_the_line(void **state)
{
    struct {
        const char *text, *message;
    } bad[] = {
        {"port = 1\n\nprot = 2\n", "serve.conf:3: unknown option 'prot'"},
        {"port = 1\nbind = x\nport = 2\n", "serve.conf:3: 'port' is already set at serve.conf:1"},
        {"max-body = 1\nmax_body = 2\n", "serve.conf:2: 'max-body' is already set"},
        {"dev = maybe\n", "serve.conf:1: 'dev' is a flag"},
        {"dev =\n", "serve.conf:1: 'dev' is a flag"},
        {"port\n", "serve.conf:1: expected 'name = value'"},
        {"port =\n", "serve.conf:1: 'port' needs a value"},
        {"port =   \t\n", "serve.conf:1: 'port' needs a value"},
        {" = 5\n", "serve.conf:1: an option name"},
        {"Port = 5\n", "serve.conf:1: an option name"},
        {"po rt = 5\n", "serve.conf:1: an option name"},
        {"--port = 5\n", "serve.conf:1: unknown option '--port'"},
        {"port = 5\x01\n", "serve.conf:1: control character"},
        {"port = 5\rbind = x\n", "serve.conf:1: control character"},
        {"config = other.conf\n", "serve.conf:1: 'config' cannot be set"},
        {"help = true\n", "serve.conf:1: 'help' cannot be set"},
        {"gallery-key = 00112233\n", "serve.conf:1: 'gallery-key' cannot be set"},
        {"api-token = abc\n", "serve.conf:1: 'api-token' cannot be set"},
        {"# ok\nkeys = fnk_0123456789ab_secret\n", "serve.conf:2: the value of 'keys' looks like"},
    };
    (void)state;

    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        fn_config cfg = {NULL, 0};
        facenet_error err;
        /* Something already set: a failing source must leave it alone. */
        assert_int_equal(parse(&cfg, "threads = 3\n", &err), FACENET_OK);
        memset(&err, 0, sizeof err);
        if (parse(&cfg, bad[i].text, &err) != FACENET_ERR_INVALID_ARGUMENT)
            fail_msg("accepted: %s", bad[i].text);
        if (!strstr(err.message, bad[i].message))
            fail_msg("for %s: message '%s' lacks '%s'", bad[i].text, err.message, bad[i].message);
        /* Errors never echo values (they might be private). */
        assert_null(strstr(err.message, "secret"));
        assert_null(strstr(err.message, "00112233"));
        assert_int_equal(cfg.n, 1);
        assert_string_equal(entry(&cfg, "threads")->value, "3");
        fn_config_free(&cfg);
    }
}

static void test_limits(void **state)
{
    fn_config cfg = {NULL, 0};
    facenet_error err;
    size_t big = FN_CONFIG_FILE_MAX + 1;
    char *text = malloc(big + 1);
    (void)state;

    assert_non_null(text);
    /* A line over FN_CONFIG_LINE_MAX. */
    memset(text, 'a', big);
    memcpy(text, "bind = ", 7);
    text[FN_CONFIG_LINE_MAX + 1] = '\0';
    assert_int_equal(parse(&cfg, text, &err), FACENET_ERR_INVALID_ARGUMENT);
    assert_non_null(strstr(err.message, "serve.conf:1: line longer"));
    /* A line of exactly the limit is fine. */
    text[FN_CONFIG_LINE_MAX] = '\0';
    assert_int_equal(parse(&cfg, text, &err), FACENET_OK);
    fn_config_free(&cfg);
    /* A whole text over the file limit: refused before it is parsed. */
    memset(text, '\n', big);
    assert_int_equal(fn_config_parse(&cfg, text, big, "serve.conf", options, &err),
                     FACENET_ERR_LIMIT);
    /* An embedded NUL is a control character, not the end of the file. */
    assert_int_equal(fn_config_parse(&cfg, "port = 1\0\nbind = x\n", 19, "serve.conf", options,
                                     &err),
                     FACENET_ERR_INVALID_ARGUMENT);
    assert_int_equal(cfg.n, 0);
    free(text);
}

static void test_environment_and_precedence(void **state)
{
    fn_config cfg = {NULL, 0};
    facenet_error err;
    char *env[] = {"HOME=/root",
                   "FACENET_SERVE_PORT=9000",
                   "FACENET_SERVE_DEV=0",
                   "FACENET_SERVE_MAX_BODY=2048",
                   "FACENET_SERVE_CONFIG=/ignored/here",
                   "FACENET_SERVEX=1",
                   NULL};
    (void)state;

    assert_int_equal(parse(&cfg, "port = 8081\ndev = on\nbind = 0.0.0.0\n", &err), FACENET_OK);
    assert_int_equal(fn_config_parse_env(&cfg, env, options, &err), FACENET_OK);
    assert_int_equal(cfg.n, 4);
    /* The environment replaced the file's port and dev, kept its bind. */
    assert_string_equal(entry(&cfg, "port")->value, "9000");
    assert_string_equal(entry(&cfg, "port")->origin, "FACENET_SERVE_PORT");
    assert_int_equal(entry(&cfg, "dev")->on, 0);
    assert_string_equal(entry(&cfg, "bind")->origin, "serve.conf:3");
    assert_string_equal(entry(&cfg, "max-body")->value, "2048");
    fn_config_free(&cfg);

    struct {
        char *var;
        const char *message;
    } bad[] = {
        {"FACENET_SERVE_PROT=1", "FACENET_SERVE_PROT: unknown option 'prot'"},
        {"FACENET_SERVE_port=1", "malformed name"},
        {"FACENET_SERVE_=1", "malformed name"},
        {"FACENET_SERVE_PORT=", "FACENET_SERVE_PORT: 'port' needs a value"},
        {"FACENET_SERVE_DEV=sure", "FACENET_SERVE_DEV: 'dev' is a flag"},
        {"FACENET_SERVE_HELP=1", "'help' cannot be set"},
        {"FACENET_SERVE_GALLERY_KEY=00", "'gallery-key' cannot be set"},
        {"FACENET_SERVE_KEYS=fnk_x", "looks like an API key"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char *one[] = {"FACENET_SERVE_THREADS=2", bad[i].var, NULL};
        assert_int_equal(parse(&cfg, "bind = x\n", &err), FACENET_OK);
        if (fn_config_parse_env(&cfg, one, options, &err) != FACENET_ERR_INVALID_ARGUMENT)
            fail_msg("accepted %s", bad[i].var);
        if (!strstr(err.message, bad[i].message))
            fail_msg("for %s: '%s' lacks '%s'", bad[i].var, err.message, bad[i].message);
        assert_int_equal(cfg.n, 1); /* not even THREADS was added */
        fn_config_free(&cfg);
    }
    /* A variable given twice is a duplicate like in a file. */
    char *twice[] = {"FACENET_SERVE_PORT=1", "FACENET_SERVE_PORT=2", NULL};
    assert_int_equal(fn_config_parse_env(&cfg, twice, options, &err),
                     FACENET_ERR_INVALID_ARGUMENT);
    assert_int_equal(fn_config_parse_env(&cfg, NULL, options, &err), FACENET_OK);
    assert_int_equal(cfg.n, 0);
}

/* ---- the argument vector -------------------------------------------------- */

typedef struct parsed {
    const char *keys, *bind, *port, *threads, *max_body;
    int dev;
} parsed;

/* What getopt_long makes of the built vector: later options win. */
static parsed run_getopt(const fn_config_args *args)
{
    parsed p = {NULL, NULL, NULL, NULL, NULL, 0};
    int c;

    optind = 1;
    opterr = 0;
    while ((c = getopt_long(args->argc, args->argv, "h", options, NULL)) != -1) {
        switch (c) {
        case 'k': p.keys = optarg; break;
        case 'B': p.bind = optarg; break;
        case 'p': p.port = optarg; break;
        case 't': p.threads = optarg; break;
        case 'b': p.max_body = optarg; break;
        case 'D': p.dev = 1; break;
        case 'C': break;
        default: fail_msg("getopt_long refused the built arguments");
        }
    }
    assert_int_equal(optind, args->argc);
    return p;
}

static void write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    assert_int_equal(fclose(f), 0);
}

static void test_args_build(void **state)
{
    char dir[] = "/tmp/facenet_config_XXXXXX", path[64], missing[80], env_config[96];
    fn_config_args args;
    facenet_error err;
    parsed p;
    (void)state;

    assert_non_null(mkdtemp(dir));
    snprintf(path, sizeof path, "%s/serve.conf", dir);
    snprintf(missing, sizeof missing, "%s/missing.conf", dir);
    snprintf(env_config, sizeof env_config, "FACENET_SERVE_CONFIG=%s", path);
    write_file(path, "# deploy\nkeys = /etc/facenet/keys.json\nbind = 0.0.0.0\nport = 1\n"
                     "threads = 2\ndev = true\n");

    /* file < environment < command line */
    {
        char *argv[] = {"serve", "--port", "3", "--config", path, NULL};
        char *env[] = {"FACENET_SERVE_PORT=2", "FACENET_SERVE_THREADS=7",
                       "FACENET_SERVE_DEV=false", NULL};
        char origin[96];
        assert_int_equal(fn_config_args_build(5, argv, env, options, &args, &err), FACENET_OK);
        /* keys and bind from the file, port and threads from the
         * environment; dev switched off emits nothing; then the command
         * line's own arguments, borrowed. */
        assert_int_equal(args.n_config, 4);
        assert_int_equal(args.argc, 4 + 5);
        assert_string_equal(args.argv[0], "serve");
        assert_string_equal(args.argv[1], "--keys=/etc/facenet/keys.json");
        assert_string_equal(args.argv[2], "--bind=0.0.0.0");
        assert_string_equal(args.argv[3], "--port=2");
        assert_string_equal(args.argv[4], "--threads=7");
        snprintf(origin, sizeof origin, "%s:2", path);
        assert_string_equal(fn_config_args_origin(&args, 1), origin);
        assert_string_equal(fn_config_args_origin(&args, 3), "FACENET_SERVE_PORT");
        assert_ptr_equal(args.argv[5], argv[1]);
        assert_null(args.argv[args.argc]);
        assert_null(fn_config_args_origin(&args, 0));
        assert_null(fn_config_args_origin(&args, 5));
        p = run_getopt(&args);
        assert_string_equal(p.keys, "/etc/facenet/keys.json");
        assert_string_equal(p.bind, "0.0.0.0");
        assert_string_equal(p.port, "3");
        assert_string_equal(p.threads, "7");
        assert_int_equal(p.dev, 0);
        fn_config_args_free(&args);
        assert_null(args.argv);
    }
    /* $FACENET_SERVE_CONFIG names the file when the command line does not;
     * an abbreviated --conf on the command line wins over it. */
    {
        char *argv[] = {"serve", NULL};
        char *env[] = {env_config, NULL};
        assert_int_equal(fn_config_args_build(1, argv, env, options, &args, &err), FACENET_OK);
        p = run_getopt(&args);
        assert_string_equal(p.port, "1");
        assert_int_equal(p.dev, 1);
        fn_config_args_free(&args);

        char *abbreviated[] = {"serve", "--conf", missing, NULL};
        assert_int_equal(fn_config_args_build(3, abbreviated, env, options, &args, &err),
                         FACENET_ERR_IO);
        assert_non_null(strstr(err.message, "missing.conf"));
        assert_null(args.argv);
    }
    /* "--config" as the value of another option is not a config file. */
    {
        char *argv[] = {"serve", "--bind", "--config", NULL};
        assert_int_equal(fn_config_args_build(3, argv, NULL, options, &args, &err), FACENET_OK);
        assert_int_equal(args.n_config, 0);
        p = run_getopt(&args);
        assert_string_equal(p.bind, "--config");
        fn_config_args_free(&args);
    }
    /* No config at all: the command line unchanged. */
    {
        char *argv[] = {"serve", "--dev", "-h", NULL};
        assert_int_equal(fn_config_args_build(3, argv, NULL, options, &args, &err), FACENET_OK);
        assert_int_equal(args.argc, 3);
        assert_int_equal(args.n_config, 0);
        assert_string_equal(args.argv[1], "--dev");
        assert_string_equal(args.argv[2], "-h");
        fn_config_args_free(&args);
    }
    /* Errors in the file or the environment: nothing built. */
    {
        char *argv[] = {"serve", "--config", path, NULL};
        char *env[] = {"FACENET_SERVE_PROT=1", NULL};
        char *empty[] = {"serve", "--config=", NULL};
        assert_int_equal(fn_config_args_build(3, argv, env, options, &args, &err),
                         FACENET_ERR_INVALID_ARGUMENT);
        assert_non_null(strstr(err.message, "FACENET_SERVE_PROT"));
        assert_null(args.argv);
        assert_int_equal(fn_config_args_build(2, empty, NULL, options, &args, &err),
                         FACENET_ERR_INVALID_ARGUMENT);
        write_file(path, "port = 1\nthreads = 2\nkeys = fnk_0123456789ab_x\n");
        assert_int_equal(fn_config_args_build(3, argv, NULL, options, &args, &err),
                         FACENET_ERR_INVALID_ARGUMENT);
        assert_non_null(strstr(err.message, "serve.conf:3"));
        assert_null(args.argv);
    }
    unlink(path);
    rmdir(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_format),
        cmocka_unit_test(test_errors_name_the_line),
        cmocka_unit_test(test_limits),
        cmocka_unit_test(test_environment_and_precedence),
        cmocka_unit_test(test_args_build),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
