/*
 * fuzz_tfjs - libFuzzer target for the TF.js weights reader.
 *
 * The input is split at its first NUL byte: before it, the manifest JSON;
 * after it, the bytes of the weight shard (empty when there is no NUL).
 * The in-memory core (nn_import_tfjs_core) gets the shard for any name the
 * manifest lists, so the fuzzer explores the JSON validation, path checks,
 * size accounting and dequantisation without touching the file system.
 * Seeds (fuzz/corpus/fuzz_tfjs/) are synthetic: the ResNet's 117 tensor
 * names and shapes with made-up quantisation and a short shard, a small
 * manifest using every storage type with an exact shard, and a two-group
 * manifest without shard bytes.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common/error.h"
#include "nn/import/tfjs.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

typedef struct shard {
    const uint8_t *data;
    size_t size;
} shard;

static facenet_status load_shard(void *ctx, const char *name, uint8_t **data, size_t *size,
                                 facenet_error *err)
{
    const shard *s = ctx;
    /* The core promises plain file names only. */
    if (!tfjs_shard_name_ok(name))
        __builtin_trap();
    *data = malloc(s->size ? s->size : 1);
    if (!*data)
        return fn_fail(err, FACENET_ERR_NO_MEMORY, "out of memory");
    if (s->size)
        memcpy(*data, s->data, s->size);
    *size = s->size;
    return FACENET_OK;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const uint8_t *nul = memchr(data, 0, size);
    size_t json_size = nul ? (size_t)(nul - data) : size;
    shard s = {nul ? nul + 1 : data + size, nul ? size - json_size - 1 : 0};
    nn_graph *g = NULL;
    facenet_error err;

    facenet_status st = nn_import_tfjs_core(data, json_size, load_shard, &s, &g, &err);
    if (st == FACENET_OK)
        nn_graph_free(g);
    else if (g != NULL || err.message[0] == '\0')
        __builtin_trap(); /* failures must leave no graph and say why */
    return 0;
}
