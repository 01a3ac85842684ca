/*
 * fuzz_dlib_dat - libFuzzer target for the dlib .dat reader.
 *
 * The input is taken as a whole .dat file. A valid network is 22 MB, so
 * the fuzzer mostly explores the header, the per-layer versions, the input
 * layer and the first layers' fields and tensor headers: the parts where
 * every length and count comes from the file. Seeds (fuzz/corpus/
 * fuzz_dlib_dat/) are prefixes of a synthetic file written the way dlib
 * writes (tests/support/dlib_writer.c), with synthetic weights.
 */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "nn/import/import.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    nn_graph *g = NULL;
    facenet_error err;
    facenet_status st = nn_import_dlib_dat(data, size, &g, &err);
    if (st == FACENET_OK)
        nn_graph_free(g);
    else if (g != NULL || err.message[0] == '\0')
        __builtin_trap(); /* failures must leave no graph and say why */
    return 0;
}
