/*
 * cli.h - the `facenet` command's subcommands and shared helpers.
 *
 * Exit codes (documented in README.md, the same for every subcommand):
 *   0  success
 *   1  the command ran but found a problem (e.g. verification failed,
 *      some files could not be processed)
 *   2  usage error (bad flags or arguments)
 *   3  a model is missing or fails its integrity check
 *   4  an input file is unreadable or malformed
 *   5  internal or environment error (out of memory, npm failed)
 */
#ifndef FACENET_CLI_CLI_H
#define FACENET_CLI_CLI_H

#include "facenet/facenet.h"

enum {
    CLI_EXIT_OK = 0,
    CLI_EXIT_PROBLEM = 1,
    CLI_EXIT_USAGE = 2,
    CLI_EXIT_MODEL = 3,
    CLI_EXIT_INPUT = 4,
    CLI_EXIT_INTERNAL = 5
};

/* Each subcommand: argv[0] is the subcommand name. Returns an exit code. */
int cmd_models(int argc, char **argv);
int cmd_detect(int argc, char **argv);
int cmd_compare(int argc, char **argv);
int cmd_embed(int argc, char **argv);
int cmd_align(int argc, char **argv);
int cmd_bench(int argc, char **argv);
int cmd_validate(int argc, char **argv);
int cmd_enroll(int argc, char **argv);
int cmd_identify(int argc, char **argv);
int cmd_gallery(int argc, char **argv);
int cmd_cluster(int argc, char **argv);
int cmd_serve(int argc, char **argv);
int cmd_keys(int argc, char **argv);
int cmd_classify(int argc, char **argv);

/* Print "facenet: <message>" to stderr and map the status to an exit code. */
int cli_report(const facenet_error *err);
int cli_exit_code(facenet_status status);

#endif
