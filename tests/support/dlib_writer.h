/*
 * dlib_writer.h - test helper: serialise the dlib ResNet the way dlib does.
 *
 * Used to make synthetic .dat files (no model weights needed) for parser
 * tests and fuzz seeds. test_dlib checks that, fed the real model's
 * weights, it reproduces the real file byte for byte, so what the tests
 * break is what dlib writes.
 */
#ifndef FACENET_TESTS_DLIB_WRITER_H
#define FACENET_TESTS_DLIB_WRITER_H

#include <stddef.h>
#include <stdint.h>

#include "nn/import/dlib_resnet.h"

typedef struct dw_buf {
    uint8_t *data;
    size_t size, cap;
} dw_buf;

/* Fills `params` (count floats) for parameter layer `index`, in dlib's own
 * layouts: con_ [O][I][K][K] filters then [O] biases; affine_ gamma[C] then
 * beta[C]; fc_ [inputs][outputs]. */
typedef void (*dw_params_fn)(void *ctx, int index, const dlib_layer *layer,
                             float *params, size_t count);

/* Serialise the whole network into *out (malloc'd; dw_free). Aborts on
 * allocation failure. */
void dw_write_resnet(dw_buf *out, dw_params_fn params, void *ctx);

/* Append dlib's encodings (exposed for tests that build odd files). */
void dw_put_int(dw_buf *b, int64_t v);
void dw_put_string(dw_buf *b, const char *s);

void dw_free(dw_buf *b);

/* Deterministic synthetic parameter values in [-0.01, 0.01] (a test
 * dw_params_fn; ctx unused). */
void dw_synthetic_params(void *ctx, int index, const dlib_layer *layer,
                         float *params, size_t count);
float dw_synthetic_value(int index, size_t i);

#endif
