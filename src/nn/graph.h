/*
 * graph.h - the engine's intermediate representation.
 *
 * A graph is a list of values (tensors) and a list of nodes (operations),
 * with nodes in execution order. Every importer (TFLite, dlib .dat, TF.js)
 * builds one of these with the builder calls below and nothing else, so
 * the executor and every backend see one form whatever the file was.
 *
 * Values are referred to by integer id. A value is one of:
 *   - the graph input (exactly one per graph);
 *   - a constant (weights), whose float data the graph owns;
 *   - the output of exactly one node.
 *
 * Canonical weight layouts (importers convert to these):
 *   CONV2D            weights [O, KH, KW, I]  (TFLite's OHWI), bias [O]
 *   DEPTHWISE_CONV2D  weights [1, KH, KW, C],  bias [C]  (multiplier 1)
 *   FULLY_CONNECTED   weights [O, I],          bias [O]
 *   PRELU             alpha [C]; AFFINE scale [C], shift [C]
 * Bias inputs are optional: pass NN_NONE.
 *
 * Shape inference (nn_infer_shapes) runs at load time for the declared
 * input shape, and again for each new input shape a session sees. A graph
 * whose constants do not fit its ops is refused at load.
 *
 * A graph is immutable once nn_graph_finalize() succeeds; it is then safe to
 * share between threads.
 */
#ifndef FACENET_NN_GRAPH_H
#define FACENET_NN_GRAPH_H

#include "facenet/facenet.h"
#include "nn/tensor.h"

#define NN_NONE (-1)
#define NN_MAX_INPUTS 3
#define NN_MAX_OUTPUTS 4

typedef enum nn_op {
    /* x, weights, bias?  -> y.  attrs.conv */
    NN_OP_CONV2D = 1,
    NN_OP_DEPTHWISE_CONV2D,
    /* x -> y.  attrs.pool. Max pooling pads with -inf; average pooling
     * divides by the number of in-bounds taps (TensorFlow semantics). */
    NN_OP_MAX_POOL2D,
    NN_OP_AVG_POOL2D,
    /* x [N, ...] is flattened row-major to [N, I]; weights [O, I], bias?
     * -> y [N, O].  attrs.act */
    NN_OP_FULLY_CONNECTED,
    /* a, b -> y with NumPy broadcasting (shapes aligned at the right).
     * attrs.act is applied after the op. */
    NN_OP_ADD,
    NN_OP_SUB,
    NN_OP_MUL,
    NN_OP_DIV,
    /* dlib's add_prev: both 4-D; y has the larger of each of H, W, C and the
     * smaller operand reads as zero outside its extent. N must match. */
    NN_OP_ADD_ZEXT,
    /* x -> y, element-wise */
    NN_OP_NEG,
    NN_OP_ABS,
    NN_OP_RELU,
    NN_OP_EXP,
    /* x, alpha [C] -> y = x > 0 ? x : alpha * x (C is the last dim) */
    NN_OP_PRELU,
    /* x, scale [C], shift [C] -> y = x * scale + shift */
    NN_OP_AFFINE,
    /* x -> y reduced over attrs.reduce.axes_mask (bit i = dim i). */
    NN_OP_REDUCE_MAX,
    NN_OP_REDUCE_SUM,
    NN_OP_REDUCE_MEAN,
    /* x -> y, softmax over the last dim */
    NN_OP_SOFTMAX,
    /* x -> y, same data, new shape: attrs.reshape */
    NN_OP_RESHAPE,
    /* x -> y = x / max(||x||, 1e-10) over the last dim */
    NN_OP_L2_NORM,
    NN_OP_COUNT_
} nn_op;

typedef enum nn_padding {
    NN_PAD_VALID = 0,   /* no padding */
    NN_PAD_SAME = 1,    /* TensorFlow SAME: total = max((ceil(in/s)-1)*s + k
                           - in, 0), floor(total/2) before, rest after */
    NN_PAD_EXPLICIT = 2 /* pad_* fields below, as given */
} nn_padding;

typedef enum nn_activation {
    NN_ACT_NONE = 0,
    NN_ACT_RELU = 1,
    NN_ACT_RELU6 = 2
} nn_activation;

typedef struct nn_conv_attrs {
    int stride_h, stride_w;  /* >= 1 */
    nn_padding padding;
    int pad_top, pad_left, pad_bottom, pad_right; /* NN_PAD_EXPLICIT only */
    nn_activation act;
} nn_conv_attrs;

typedef struct nn_pool_attrs {
    int kernel_h, kernel_w;
    int stride_h, stride_w;
    nn_padding padding;
    int pad_top, pad_left, pad_bottom, pad_right; /* NN_PAD_EXPLICIT only */
    nn_activation act;
} nn_pool_attrs;

typedef struct nn_reduce_attrs {
    unsigned axes_mask; /* bit i set: reduce dim i */
    int keep_dims;      /* 1: reduced dims stay with size 1 */
} nn_reduce_attrs;

typedef struct nn_reshape_attrs {
    /* Target shape. One dim may be -1 (inferred). A dim of 0 means "copy
     * this dim from the input", so a reshape to [0, 192] follows the batch
     * size of whatever input the session is given. */
    int rank;
    int dims[NN_MAX_RANK];
} nn_reshape_attrs;

typedef union nn_attrs {
    nn_conv_attrs conv;
    nn_pool_attrs pool;
    nn_reduce_attrs reduce;
    nn_reshape_attrs reshape;
    nn_activation act; /* FULLY_CONNECTED and binary element-wise ops */
} nn_attrs;

typedef struct nn_value {
    char *name;     /* owned; for messages */
    nn_shape shape; /* constants and input: as declared                  */
    float *data;    /* constants only; owned by the graph; NULL otherwise */
    int producer;   /* node index, or NN_NONE for input and constants     */
} nn_value;

typedef struct nn_node {
    nn_op op;
    int n_inputs;
    int inputs[NN_MAX_INPUTS]; /* value ids; NN_NONE for an absent bias */
    int output;                /* value id */
    nn_attrs attrs;
} nn_node;

typedef struct nn_graph {
    nn_value *values;
    int n_values, cap_values;
    nn_node *nodes;
    int n_nodes, cap_nodes;
    int input;                  /* value id of the single input */
    int outputs[NN_MAX_OUTPUTS];
    int n_outputs;
    int finalized;
} nn_graph;

/* ---- building (importers) ----------------------------------------------
 * Every add call returns the new value id, or NN_NONE on failure with err
 * filled. After a failure the graph can only be freed. */

nn_graph *nn_graph_new(void);
void nn_graph_free(nn_graph *g);

int nn_graph_add_input(nn_graph *g, const char *name, nn_shape shape,
                       facenet_error *err);

/* Takes ownership of `data` (malloc'd, nn_shape_count(&shape) floats), also
 * on failure. */
int nn_graph_add_const(nn_graph *g, const char *name, nn_shape shape,
                       float *data, facenet_error *err);

/* Copies `data`. */
int nn_graph_add_const_copy(nn_graph *g, const char *name, nn_shape shape,
                            const float *data, facenet_error *err);

/* Appends a node computing a new value named `name` from `inputs`. `attrs`
 * may be NULL for ops without attributes. */
int nn_graph_add_node(nn_graph *g, nn_op op, const int *inputs, int n_inputs,
                      const nn_attrs *attrs, const char *name,
                      facenet_error *err);

facenet_status nn_graph_set_outputs(nn_graph *g, const int *ids, int n,
                                    facenet_error *err);

/* Checks that every node's inputs exist and precede it, that constants have
 * the shapes their ops need, and infers shapes for the declared input
 * shape. After success the graph must not be changed. */
facenet_status nn_graph_finalize(nn_graph *g, facenet_error *err);

/* ---- shape inference --------------------------------------------------- */

/* Fill shapes[0 .. g->n_values-1] for an input of shape `input`. Fails with
 * FACENET_ERR_SHAPE and a message naming the node when something does not
 * fit. The input's rank and channel count must match the declared input;
 * batch and spatial sizes may differ. */
facenet_status nn_infer_shapes(const nn_graph *g, const nn_shape *input,
                               nn_shape *shapes, facenet_error *err);

/* Resolved padding of a conv/pool node given its input spatial size. */
void nn_resolve_padding(nn_padding mode, int in, int k, int stride,
                        int explicit_before, int explicit_after, int *before,
                        int *after, int *out);

/* Multiply-accumulates of the graph at the given shapes (from
 * nn_infer_shapes). */
long long nn_graph_macs(const nn_graph *g, const nn_shape *shapes);

const char *nn_op_name(nn_op op);

#endif
