#include <stdio.h>

#include "cli/cli.h"

int cmd_bench(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    fprintf(stderr, "facenet bench: not implemented yet\n");
    return CLI_EXIT_INTERNAL;
}
