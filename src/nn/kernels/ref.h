/*
 * ref.h - the portable reference backend: plain C11 kernels.
 *
 * These kernels are the numeric oracle for every faster backend. They are
 * written for correctness first and for loops the compiler can vectorise
 * second: the innermost loop always runs over a contiguous channel axis.
 *
 * All tensors are float32, dense, NHWC. Kernels never allocate: callers
 * (the executor) pass any scratch memory they need, sized by the matching
 * *_scratch_floats() function. Input and output never alias unless a
 * comment says so.
 */
#ifndef FACENET_NN_KERNELS_REF_H
#define FACENET_NN_KERNELS_REF_H

#include <stddef.h>

#include "nn/graph.h"

/* Geometry of one convolution or pooling call, with padding resolved. */
typedef struct nn_conv_geom {
    int n;                 /* batch */
    int in_h, in_w, in_c;  /* input  [n, in_h, in_w, in_c]  */
    int out_h, out_w, out_c; /* output [n, out_h, out_w, out_c] */
    int kernel_h, kernel_w;
    int stride_h, stride_w;
    int pad_top, pad_left; /* padding before; padding after is implied */
    nn_activation act;
} nn_conv_geom;

/* ---- convolution (im2col + GEMM) --------------------------------------- */

/* Repack OHWI weights [O][KH][KW][I] into the GEMM's preferred layout
 * [KH*KW*I][O]. `packed` has O*KH*KW*I floats. Done once at model load. */
void nn_ref_conv2d_pack(const float *w_ohwi, int out_c, int kernel_h,
                        int kernel_w, int in_c, float *packed);

/* Scratch floats nn_ref_conv2d needs for this geometry (0 for 1x1/stride 1
 * without padding, where the input already is the im2col matrix). */
size_t nn_ref_conv2d_scratch_floats(const nn_conv_geom *g);

/* y = act(conv(x, w) + bias). `packed` from nn_ref_conv2d_pack; bias may be
 * NULL. */
void nn_ref_conv2d(const nn_conv_geom *g, const float *x, const float *packed,
                   const float *bias, float *scratch, float *y);

/* Depthwise conv, multiplier 1: weights [KH][KW][C], bias [C] or NULL.
 * g->out_c == g->in_c. */
void nn_ref_depthwise_conv2d(const nn_conv_geom *g, const float *x,
                             const float *w_hwc, const float *bias, float *y);

/* ---- pooling ----------------------------------------------------------- */

/* Max pooling: padded taps are ignored (as if -inf). Average pooling:
 * divides by the number of in-bounds taps. g->out_c == g->in_c. */
void nn_ref_max_pool2d(const nn_conv_geom *g, const float *x, float *y);
void nn_ref_avg_pool2d(const nn_conv_geom *g, const float *x, float *y);

/* ---- dense ------------------------------------------------------------- */

/* y[n][o] = act(sum_i x[n][i] * w[o][i] + bias[o]); bias may be NULL. */
void nn_ref_fully_connected(int n, int in_dim, int out_dim, const float *x,
                            const float *w_oi, const float *bias,
                            nn_activation act, float *y);

/* ---- element-wise ------------------------------------------------------ */

/* y = act(a OP b) with NumPy broadcasting. op is NN_OP_ADD, SUB, MUL or DIV.
 * Shapes are right-aligned; ys is the broadcast shape. y may alias a or b
 * when that operand has the full output shape. */
void nn_ref_binary(nn_op op, const float *a, const nn_shape *as,
                   const float *b, const nn_shape *bs, nn_activation act,
                   float *y, const nn_shape *ys);

/* dlib add_prev on 4-D tensors: ys = per-dim max of as and bs (N equal);
 * each operand reads as zero outside its own extent. */
void nn_ref_add_zext(const float *a, const nn_shape *as, const float *b,
                     const nn_shape *bs, float *y, const nn_shape *ys);

/* y = op(x) for NN_OP_NEG, ABS, RELU or EXP; y may alias x. */
void nn_ref_unary(nn_op op, const float *x, size_t count, float *y);

/* y = x > 0 ? x : alpha[c] * x, c = index % channels; y may alias x. */
void nn_ref_prelu(const float *x, size_t count, int channels,
                  const float *alpha, float *y);

/* y = x * scale[c] + shift[c], c = index % channels; y may alias x. */
void nn_ref_affine(const float *x, size_t count, int channels,
                   const float *scale, const float *shift, float *y);

/* ---- reductions and normalisation -------------------------------------- */

/* Reduce x (shape xs) over the dims set in axes_mask. op is
 * NN_OP_REDUCE_MAX, REDUCE_SUM or REDUCE_MEAN. y has the reduced element
 * count (keep_dims does not change the data layout). */
void nn_ref_reduce(nn_op op, const float *x, const nn_shape *xs,
                   unsigned axes_mask, float *y);

/* Softmax over rows of length cols, numerically stable (max-subtracted). */
void nn_ref_softmax(const float *x, size_t rows, int cols, float *y);

/* y = x / max(||x||_2, 1e-10) per row of length cols. */
void nn_ref_l2_norm(const float *x, size_t rows, int cols, float *y);

#endif
