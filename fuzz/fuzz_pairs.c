/*
 * fuzz_pairs.c - libFuzzer target for lfw_pairs_parse (LFW pairs files).
 *
 * Besides crashes and leaks it checks the contract: a failure is
 * FACENET_ERR_FORMAT (or NO_MEMORY) with a message and an empty result;
 * a success has at least one pair, and every pair has names that are safe
 * path components, numbers in range, line numbers that increase, and
 * same-person pairs with one name.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "verify/lfw.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    lfw_pairs p;
    facenet_error err;
    char path[600];
    memset(&err, 0, sizeof err);
    facenet_status st = lfw_pairs_parse((const char *)data, size, "fuzz", &p, &err);
    if (st != FACENET_OK) {
        if (p.pairs || p.n || err.code != st || !err.message[0])
            abort();
        if (st != FACENET_ERR_FORMAT && st != FACENET_ERR_NO_MEMORY)
            abort();
        return 0;
    }
    if (p.n == 0)
        abort();
    for (size_t i = 0; i < p.n; i++) {
        const lfw_pair *q = &p.pairs[i];
        if (i > 0 && q->line <= p.pairs[i - 1].line)
            abort();
        if (q->same && strcmp(q->name[0], q->name[1]) != 0)
            abort();
        for (int k = 0; k < 2; k++) {
            size_t len = strlen(q->name[k]);
            if (len == 0 || len > LFW_MAX_NAME || q->name[k][0] == '.' ||
                strchr(q->name[k], '/') || q->number[k] < 0 ||
                q->number[k] > LFW_MAX_IMAGE_NUMBER)
                abort();
            if (lfw_image_path("d", q->name[k], q->number[k], "jpg", path, sizeof path) != 0)
                abort();
        }
    }
    lfw_pairs_free(&p);
    return 0;
}
