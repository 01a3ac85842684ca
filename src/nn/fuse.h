/*
 * fuse.h - graph fusion: rewrite the op patterns that model files expand
 * into the single ops the engine runs faster.
 *
 * Patterns are recognised by structure, never by tensor names:
 *   - PReLU written as relu(x) + c * (x - |x|)          (slope 2c; the
 *     MobileFaceNet .tflite), as relu(x) + alpha * -relu(-x) or as
 *     relu(x) - alpha * relu(-x)                         (MTCNN): PRELU;
 *   - softmax written as REDUCE_MAX / SUB / EXP / REDUCE_SUM / DIV over
 *     the last dim: SOFTMAX;
 *   - AFFINE (batch norm, dlib's scale layer) after a CONV2D or
 *     DEPTHWISE_CONV2D with no activation: folded into the conv's weights
 *     and bias;
 *   - RELU after an op that carries an activation (convs, fully connected,
 *     pools, binary element-wise ops): that op's activation.
 * A pattern is only rewritten when none of its intermediate values has a
 * reader outside the pattern or is a graph output, so every value the
 * caller can see keeps its meaning. Every rewrite is exact in real
 * arithmetic; in float32 the PReLU rewrites are bit-exact and the others
 * differ by rounding only (a few ulp).
 */
#ifndef FACENET_NN_FUSE_H
#define FACENET_NN_FUSE_H

#include "nn/graph.h"

typedef struct nn_fuse_stats {
    int prelu;        /* PReLU patterns folded into PRELU          */
    int softmax;      /* softmax patterns folded into SOFTMAX      */
    int affine;       /* AFFINE nodes folded into a conv           */
    int activation;   /* RELU nodes folded into their producer     */
    int nodes_before, nodes_after;
} nn_fuse_stats;

/* Build a fused copy of the finalized graph `in`. On success *out is a new
 * finalized graph the caller owns (the same inputs and outputs, by name and
 * by meaning) and `stats` (may be NULL) says what was done; `in` is not
 * changed. On failure *out is NULL. */
facenet_status nn_fuse(const nn_graph *in, nn_graph **out,
                       nn_fuse_stats *stats, facenet_error *err);

#endif
