/*
 * fuzz_tflite.c - libFuzzer target for the TFLite importer.
 *
 * Any byte string must give either a finalized graph or an error with a
 * message; never a crash, leak or out-of-bounds access. Seeds are in
 * fuzz/corpus/fuzz_tflite/ (small models written by tests/test_tflite.c).
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include "nn/import/import.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    nn_graph *g = NULL;
    facenet_error err;
    facenet_status st;

    err.message[0] = '\0';
    st = nn_import_tflite(data, size, &g, &err);
    if (st == FACENET_OK) {
        if (!g || !g->finalized)
            abort();
        nn_graph_free(g);
    } else if (g || err.code != st || err.message[0] == '\0') {
        abort();
    }
    return 0;
}
