/*
 * main.c - `facenet SUBCOMMAND ...`: dispatch to one file per subcommand.
 */
#include <stdio.h>
#include <string.h>

#include "cli/cli.h"

typedef struct subcommand {
    const char *name;
    int (*run)(int argc, char **argv);
    const char *summary;
} subcommand;

static const subcommand subcommands[] = {
    {"detect", cmd_detect, "find faces: boxes, scores, landmarks"},
    {"align", cmd_align, "detect and align a class-per-folder dataset"},
    {"embed", cmd_embed, "write face embeddings as JSON, CSV or .npy"},
    {"compare", cmd_compare, "similarity matrix and same/different verdicts"},
    {"validate", cmd_validate, "LFW-protocol accuracy, ROC and calibration"},
    {"enroll", cmd_enroll, "add people to an encrypted gallery"},
    {"identify", cmd_identify, "who is in a photo (1:N), or unknown"},
    {"gallery", cmd_gallery, "list, show, remove, export, rekey, bench a gallery"},
    {"cluster", cmd_cluster, "group unlabelled photos by person"},
    {"serve", cmd_serve, "the HTTP API: detect, verify, embed"},
    {"keys", cmd_keys, "create, list and revoke API keys for serve"},
    {"classify", cmd_classify, "train / apply a linear SVM (classifier.py)"},
    {"models", cmd_models, "fetch, verify and list the pinned models"},
    {"bench", cmd_bench, "time each model on one input"},
};

static void usage(FILE *out)
{
    fprintf(out, "usage: facenet SUBCOMMAND [OPTIONS]\n\nsubcommands:\n");
    for (size_t i = 0; i < sizeof subcommands / sizeof subcommands[0]; i++)
        fprintf(out, "  %-10s %s\n", subcommands[i].name, subcommands[i].summary);
    fprintf(out, "\nRun 'facenet SUBCOMMAND --help' for its options.\n"
                 "Exit codes: 0 ok, 1 problem found, 2 usage, 3 model missing or\n"
                 "altered, 4 bad input file, 5 internal or environment error.\n");
}

int cli_exit_code(facenet_status status)
{
    switch (status) {
    case FACENET_OK: return CLI_EXIT_OK;
    case FACENET_ERR_INVALID_ARGUMENT: return CLI_EXIT_USAGE;
    case FACENET_ERR_INTEGRITY:
    case FACENET_ERR_NOT_FOUND: return CLI_EXIT_MODEL;
    case FACENET_ERR_IO:
    case FACENET_ERR_FORMAT:
    case FACENET_ERR_UNSUPPORTED:
    case FACENET_ERR_LIMIT:
    case FACENET_ERR_SHAPE: return CLI_EXIT_INPUT;
    default: return CLI_EXIT_INTERNAL;
    }
}

int cli_report(const facenet_error *err)
{
    fprintf(stderr, "facenet: %s\n",
            err->message[0] ? err->message : facenet_strerror(err->code));
    return cli_exit_code(err->code);
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        usage(stderr);
        return CLI_EXIT_USAGE;
    }
    if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0 ||
        strcmp(argv[1], "help") == 0) {
        usage(stdout);
        return CLI_EXIT_OK;
    }
    if (strcmp(argv[1], "--version") == 0) {
        printf("facenet %s\n", FACENET_VERSION_STRING);
        return CLI_EXIT_OK;
    }
    for (size_t i = 0; i < sizeof subcommands / sizeof subcommands[0]; i++)
        if (strcmp(argv[1], subcommands[i].name) == 0)
            return subcommands[i].run(argc - 1, argv + 1);
    fprintf(stderr, "facenet: unknown subcommand '%s'\n", argv[1]);
    usage(stderr);
    return CLI_EXIT_USAGE;
}
