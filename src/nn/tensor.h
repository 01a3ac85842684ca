/*
 * tensor.h - shapes of float32 tensors.
 *
 * Every activation in the engine is float32 in NHWC order: a 4-D tensor
 * [N, H, W, C], with C the fastest-moving index. Lower-rank tensors (the
 * [N, D] output of a fully connected layer, a [C] bias) use the same type
 * with a smaller rank. Data is always dense and row-major.
 */
#ifndef FACENET_NN_TENSOR_H
#define FACENET_NN_TENSOR_H

#include <stddef.h>

#define NN_MAX_RANK 4

typedef struct nn_shape {
    int rank;               /* 0..NN_MAX_RANK; rank 0 is a scalar        */
    int dims[NN_MAX_RANK];  /* dims[rank..] are unused and kept at 0      */
} nn_shape;

/* Build shapes without designated-initialiser noise. */
nn_shape nn_shape1(int d0);
nn_shape nn_shape2(int d0, int d1);
nn_shape nn_shape4(int n, int h, int w, int c);

/* Number of elements (1 for a scalar). Returns 0 if any dim is <= 0 or the
 * product does not fit in a size_t below 2^40, so callers can treat 0 as
 * "invalid". */
size_t nn_shape_count(const nn_shape *s);

int nn_shape_equal(const nn_shape *a, const nn_shape *b);

/* "[1,112,112,3]" into buf; returns buf. */
const char *nn_shape_str(const nn_shape *s, char *buf, size_t size);

#endif
