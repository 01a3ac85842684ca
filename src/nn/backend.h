/*
 * backend.h - the one interface every compute backend implements.
 *
 * A backend supplies the heavy layers: convolution, depthwise convolution,
 * fully connected and pooling. Everything else (element-wise ops,
 * reductions, softmax) runs on the reference kernels whatever the backend,
 * because those layers are a small share of the time.
 *
 * Each heavy layer is prepared once at model load (weights repacked into
 * whatever layout the backend's kernels want, with the bias and the slopes
 * of a PReLU that follows the layer folded in as an epilogue) and the
 * prepared blob is then immutable: sessions on any thread share it.
 *
 * Backends (nn_backend_find):
 *   "reference"  the portable C kernels of kernels/ref.h: the numeric
 *                oracle, single-threaded;
 *   "avx2"       AVX2 + FMA kernels (x86-64, chosen at run time from the
 *                CPU's features), threaded over output rows and channels;
 *   "avx2-int8"  8-bit integer convolution and fully connected layers on
 *                AVX2 (kernels/avx2_int8.c), the rest on "avx2". Not exact:
 *                it is found by name only (nn_backend_find, or a model's
 *                precision: $FACENET_PRECISION, model.c), never listed by
 *                nn_backend_at nor chosen as a default.
 * The default is the best available exact one, or $FACENET_BACKEND.
 */
#ifndef FACENET_NN_BACKEND_H
#define FACENET_NN_BACKEND_H

#include <stddef.h>

#include "nn/graph.h"
#include "nn/kernels/ref.h"
#include "nn/pool.h"

/* What prepare() gets for one CONV2D, DEPTHWISE_CONV2D or FULLY_CONNECTED
 * node. All pointers are graph constants and outlive the prepared blob. */
typedef struct nn_layer_params {
    nn_op op;
    const float *weights; /* canonical layout (graph.h); FC is [O, I]     */
    int out_c, kernel_h, kernel_w, in_c; /* FC: kernel 1x1, in_c = I       */
    const float *bias;    /* [out_c] or NULL                               */
    const float *prelu;   /* [out_c] slopes of a PRELU fused after, or NULL */
} nn_layer_params;

typedef struct nn_backend {
    const char *name;
    /* 1 if this CPU can run it. */
    int (*available)(void);
    /* Repack one layer; NULL when out of memory. */
    void *(*prepare)(const nn_layer_params *p);
    void (*release)(void *prepared);
    /* Scratch floats conv2d needs for this geometry with `threads`
     * threads (all threads together). */
    size_t (*conv2d_scratch)(const nn_conv_geom *g, int threads);
    /* y = epilogue(conv(x) + bias): g->act, then the fused PReLU if any. */
    void (*conv2d)(const nn_conv_geom *g, const float *x, const void *prepared,
                   float *scratch, float *y, nn_pool *pool);
    void (*depthwise)(const nn_conv_geom *g, const float *x, const void *prepared,
                      float *y, nn_pool *pool);
    /* x [n, in_dim] -> y [n, out_dim], then act, then the fused PReLU. */
    void (*fully_connected)(int n, int in_dim, int out_dim, nn_activation act,
                            const float *x, const void *prepared, float *y,
                            nn_pool *pool);
    /* Max (is_max) or average pooling with the semantics of
     * nn_ref_max_pool2d / nn_ref_avg_pool2d, then g->act. */
    void (*pool2d)(const nn_conv_geom *g, const float *x, float *y, int is_max,
                   nn_pool *pool);
} nn_backend;

/* Layers a backend can run fused, found by backend (nn_backend_fused):
 * kept apart from nn_backend so that a backend without them (reference)
 * needs no change and simply runs each layer alone, which gives the same
 * values. avx2-int8 fuses the layers it runs on avx2 blobs. */
typedef struct nn_fused_ops {
    /* 1 if the CONV2D of geometry g (its epilogue included) followed by
     * the MAX_POOL2D of geometry pg (whose input is the conv's output)
     * can run as one pass. */
    int (*conv_maxpool_supported)(const nn_conv_geom *g, const nn_conv_geom *pg);
    /* Scratch floats for that pass with `threads` threads. */
    size_t (*conv_maxpool_scratch)(const nn_conv_geom *g, const nn_conv_geom *pg, int threads);
    /* y = maxpool(epilogue(conv(x) + bias)), with pg's output shape,
     * bit-identical to conv2d then pool2d; the conv's output is never
     * stored. `prepared` is this backend's blob of the conv. */
    void (*conv_maxpool)(const nn_conv_geom *g, const nn_conv_geom *pg, const float *x,
                         const void *prepared, float *scratch, float *y, nn_pool *pool);
} nn_fused_ops;

/* The fused layers of `backend`, or NULL when it has none. */
const nn_fused_ops *nn_backend_fused(const nn_backend *backend);

/* Every backend compiled in, available or not, in order of preference
 * (best last); NULL past the end. */
const nn_backend *nn_backend_at(int index);

/* The backend named `name` if it is compiled in and this CPU can run it. */
const nn_backend *nn_backend_find(const char *name);

/* $FACENET_BACKEND if it names an available backend, else the best
 * available one. Fails (returning NULL, with err filled) only when
 * $FACENET_BACKEND names a backend that does not exist or cannot run. */
const nn_backend *nn_backend_default(facenet_error *err);

/* The individual backends. */
extern const nn_backend nn_backend_reference;
extern const nn_backend nn_backend_avx2;
extern const nn_backend nn_backend_avx2_int8;
extern const nn_fused_ops nn_fused_avx2;
extern const nn_fused_ops nn_fused_avx2_int8;

#endif
