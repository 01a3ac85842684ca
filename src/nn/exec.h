/*
 * exec.h - running a finalized graph: weight preparation, memory planning
 * and execution.
 *
 * Two objects with different lifetimes:
 *   - nn_weights: per-model data derived from the graph once at load
 *     (weights repacked for the backend's kernels). Immutable, shared.
 *   - nn_exec: per-session state: the memory plan for the current input
 *     shape and the arena it points into. One per thread.
 *
 * The plan: shapes are inferred for the input shape, each intermediate
 * value gets an offset in one arena, and values whose last reader has run
 * give their space back (first fit), so the arena is far smaller than the
 * sum of all activations. The plan is redone only when the input shape
 * changes; the arena only grows.
 */
#ifndef FACENET_NN_EXEC_H
#define FACENET_NN_EXEC_H

#include <stddef.h>

#include "nn/backend.h"
#include "nn/graph.h"
#include "nn/pool.h"

/* A CONV2D, DEPTHWISE_CONV2D or FULLY_CONNECTED node whose output only a
 * PRELU reads (and that is no graph output) runs with that PRELU as its
 * epilogue: one pass over the output instead of two. The PRELU node is
 * then "folded": it does not run, and the layer writes the PRELU's output
 * value directly; the layer's own output value is never stored. */
typedef struct nn_weights {
    const nn_backend *backend;
    int n_nodes;
    void **prepared;       /* per node: the backend's blob, or NULL     */
    int *epilogue;         /* per node: PRELU node folded in, or NN_NONE */
    unsigned char *folded; /* per node: 1 if it runs inside another     */
    int n_steps;           /* nodes that run                            */
} nn_weights;

/* Prepare with the reference backend (the numeric oracle). */
facenet_status nn_weights_prepare(const nn_graph *g, nn_weights *w,
                                  facenet_error *err);
/* Prepare for `backend` (must be available on this CPU). */
facenet_status nn_weights_prepare_backend(const nn_graph *g,
                                          const nn_backend *backend,
                                          nn_weights *w, facenet_error *err);
void nn_weights_free(nn_weights *w);

typedef struct nn_exec {
    const nn_graph *graph;
    const nn_weights *weights;
    int planned;
    nn_shape input_shape;  /* shape the current plan is for          */
    nn_shape *shapes;      /* per value                               */
    size_t *offsets;       /* per value: float offset in the arena    */
    float *arena;
    size_t arena_floats;
    float *scratch;        /* conv im2col scratch, all threads         */
    size_t scratch_floats;
    size_t plan_floats;    /* arena floats the current plan uses      */
    int plan_threads;      /* threads the scratch was sized for       */
    /* Batch tiling (see nn_exec_run): the last run's graph outputs for
     * the whole batch, when it ran in chunks. */
    int separable;         /* the graph treats batch rows independently */
    int tiled;             /* the last run was chunked                  */
    nn_shape full_shape[NN_MAX_OUTPUTS];
    float *full_out[NN_MAX_OUTPUTS];
    size_t full_floats[NN_MAX_OUTPUTS];
    nn_shape per_image_shape; /* input shape the chunk size is for     */
    int chunk;             /* images per chunk for that shape           */
    /* Fusion for the current plan (see nn_exec_run): per node, the
     * MAX_POOL2D a CONV2D runs as its last step, or NN_NONE; and 1 for
     * such a pool node, which then does not run on its own. */
    int *pool_into;
    unsigned char *inside;
    nn_pool *pool;         /* borrowed; NULL runs on the caller only  */
    const float *input;    /* caller's input during a run             */
} nn_exec;

/* The graph and weights must outlive the exec. */
facenet_status nn_exec_init(nn_exec *e, const nn_graph *g, const nn_weights *w,
                            facenet_error *err);
void nn_exec_free(nn_exec *e);

/* Use `pool` (borrowed, may be NULL) for the next runs. It must outlive
 * the exec or be replaced first. */
void nn_exec_set_pool(nn_exec *e, nn_pool *pool);

/* Plan (if the shape is new) and run. When the backend has fused layers
 * (nn_backend_fused) and the shapes suit them, a CONV2D whose output (or
 * its folded PRELU's) only a MAX_POOL2D reads writes the pool's output
 * directly; the conv's output is then not stored (nn_exec_value gives
 * NULL for it). The values are those of the two layers run apart.
 * A large batch runs in chunks of images whose activations fit in cache (the outputs are gathered for the
 * whole batch), when the graph treats batch rows independently, as every
 * model here does: a batch of 16 faces then costs 16 single faces or less
 * instead of streaming every layer through DRAM. */
facenet_status nn_exec_run(nn_exec *e, const float *input,
                           const nn_shape *input_shape, facenet_error *err);

/* Data and shape of a value after a run (constants too). NULL for a value
 * that is not stored: a layer output folded into its PRELU. After a
 * chunked run, graph outputs cover the whole batch and other values hold
 * the last chunk. */
const float *nn_exec_value(const nn_exec *e, int id);
const nn_shape *nn_exec_shape(const nn_exec *e, int id);

/* Bytes of arena plus scratch the current plan uses. */
size_t nn_exec_memory_bytes(const nn_exec *e);

#endif
