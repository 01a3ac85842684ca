#include <stdio.h>

#include "cli/cli.h"

int cmd_models(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    for (size_t i = 0; i < facenet_model_count(); i++) {
        const facenet_model_info *m = facenet_model_at(i);
        printf("%-18s %-8s %s\n", m->name, m->license, m->package);
    }
    return CLI_EXIT_OK;
}
