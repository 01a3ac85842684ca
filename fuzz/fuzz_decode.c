/*
 * fuzz_decode.c - libFuzzer target for img_decode_memory.
 *
 * Default limits except a 1 MP / 1 MiB cap, so that one input can neither
 * run the fuzzer out of memory nor take long (a 1 MP image decodes in
 * milliseconds). Besides crashes and leaks, it checks the contract: a
 * status is one of the documented codes with a message, *out is NULL on
 * failure, and a decoded image has sane fields whose every byte is
 * readable.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "image/image.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    img_decode_limits limits = img_default_limits();
    img_rgb8 *img = NULL;
    facenet_error err;
    facenet_status st;

    limits.max_pixels = (uint64_t)1 << 20;
    limits.max_bytes = (size_t)1 << 20;
    memset(&err, 0, sizeof err);
    st = img_decode_memory(data, size, &limits, &img, &err);
    if (st != FACENET_OK) {
        if (img != NULL || err.code != st || err.message[0] == '\0')
            abort();
        if (st != FACENET_ERR_FORMAT && st != FACENET_ERR_UNSUPPORTED &&
            st != FACENET_ERR_LIMIT && st != FACENET_ERR_NO_MEMORY)
            abort();
        return 0;
    }
    if (!img || img->width < 1 || img->height < 1 ||
        (uint64_t)img->width * (uint64_t)img->height > limits.max_pixels ||
        img->stride < (size_t)img->width * 3)
        abort();
    /* Read every pixel so ASan sees any short allocation. */
    unsigned sum = 0;
    for (int y = 0; y < img->height; y++) {
        const uint8_t *row = img->pixels + (size_t)y * img->stride;
        for (size_t i = 0; i < (size_t)img->width * 3; i++)
            sum += row[i];
    }
    if (sum == 0xFFFFFFFFu) /* keeps the loop from being optimised out */
        abort();
    img_rgb8_free(img);
    return 0;
}
