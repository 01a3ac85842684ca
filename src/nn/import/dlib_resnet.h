/*
 * dlib_resnet.h - the topology of dlib_face_recognition_resnet_model_v1,
 * shared by the .dat and the TF.js importers (internal).
 *
 * The network is described once, as dlib itself describes it: a list of
 * dlib layers from the input upwards (con, affine, relu, pools, tag/skip
 * markers, add_prev, fc). dlib_resnet_build() interprets that list into an
 * nn_graph; the .dat reader walks the same list to know what the file must
 * contain; the TF.js reader maps the same parameter layers to face-api's
 * tensor names. So the two importers cannot disagree on the network.
 *
 * Input: [1, 150, 150, 3] float32 NHWC RGB, already normalised by the
 * caller as (v - [122.782, 117.001, 104.298]) / 256.
 * Output: "embedding" [N, 128], not normalised.
 */
#ifndef FACENET_NN_IMPORT_DLIB_RESNET_H
#define FACENET_NN_IMPORT_DLIB_RESNET_H

#include "nn/graph.h"

#define DLIB_RESNET_INPUT_SIZE 150
#define DLIB_RESNET_EMBEDDING_DIM 128
#define DLIB_RESNET_FC_INPUTS 256
/* More than the layers the network has (about 170). */
#define DLIB_RESNET_MAX_LAYERS 256
#define DLIB_RESNET_NAME_MAX 48

typedef enum dlib_layer_kind {
    DLIB_L_CON = 1,      /* con_: params, then affine follows            */
    DLIB_L_AFFINE,       /* affine_ (per channel): params                */
    DLIB_L_RELU,         /* relu_                                        */
    DLIB_L_MAX_POOL,     /* max_pool_ kernel x kernel / stride, no pad   */
    DLIB_L_AVG_POOL,     /* avg_pool_ kernel x kernel / stride, no pad   */
    DLIB_L_AVG_POOL_ALL, /* avg_pool_everything: mean over H, W          */
    DLIB_L_FC,           /* fc_ with no bias: params                     */
    DLIB_L_TAG1,         /* tag1: remembers the current tensor           */
    DLIB_L_TAG2,         /* tag2                                         */
    DLIB_L_SKIP1,        /* skip1: continues from the tensor at tag1     */
    DLIB_L_ADD_PREV1,    /* add_prev_<tag1>: current + tag1, zero-extend */
    DLIB_L_ADD_PREV2     /* add_prev_<tag2>                              */
} dlib_layer_kind;

typedef struct dlib_layer {
    dlib_layer_kind kind;
    int out_c, in_c;     /* CON, AFFINE (out_c only), FC                 */
    int kernel, stride;  /* CON and pools (square)                       */
    int pad;             /* CON: padding on every side (dlib padding_y/x) */
    /* face-api's name of the conv + affine pair this layer belongs to
     * ("conv32_down", "conv64_1/conv2", ...), or "fc"; "" for the rest. */
    char name[DLIB_RESNET_NAME_MAX];
} dlib_layer;

/* Is this a layer that carries parameters (CON, AFFINE, FC)? */
int dlib_layer_has_params(dlib_layer_kind kind);

/* Is this a tag or skip marker (dlib serialises these without details)? */
int dlib_layer_is_marker(dlib_layer_kind kind);

/* dlib's name of a layer kind, as in its serialisation ("con_", ...). */
const char *dlib_layer_kind_name(dlib_layer_kind kind);

/* Fill layers[0..n) with the network from the input upwards; returns n
 * (always <= DLIB_RESNET_MAX_LAYERS). */
int dlib_resnet_layers(dlib_layer *layers);

/* Supplies the parameters of one parameter layer. The buffers are owned by
 * the builder and sized from the topology, never from file contents:
 *   CON:    a = weights [out_c][kernel][kernel][in_c] (OHWI), b = bias [out_c]
 *   AFFINE: a = scale [out_c], b = shift [out_c]
 *   FC:     a = weights [out_c][in_c] (O, I), b = NULL
 * `index` is the layer's position in dlib_resnet_layers(). */
typedef facenet_status (*dlib_fill_fn)(void *ctx, int index,
                                       const dlib_layer *layer, float *a,
                                       float *b, facenet_error *err);

/* Build and finalize the graph, asking `fill` for every parameter layer in
 * network order. On success *out is a finalized graph the caller owns; on
 * failure *out is NULL and err says why (fill's own error is passed on). */
facenet_status dlib_resnet_build(dlib_fill_fn fill, void *ctx, nn_graph **out,
                                 facenet_error *err);

#endif
