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

#include "nn/graph.h"

typedef struct nn_weights {
    int n_nodes;
    float **packed; /* per node: repacked conv weights, or NULL */
} nn_weights;

facenet_status nn_weights_prepare(const nn_graph *g, nn_weights *w,
                                  facenet_error *err);
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
    float *scratch;        /* conv im2col scratch                      */
    size_t scratch_floats;
    const float *input;    /* caller's input during a run             */
} nn_exec;

/* The graph and weights must outlive the exec. */
facenet_status nn_exec_init(nn_exec *e, const nn_graph *g, const nn_weights *w,
                            facenet_error *err);
void nn_exec_free(nn_exec *e);

/* Plan (if the shape is new) and run. */
facenet_status nn_exec_run(nn_exec *e, const float *input,
                           const nn_shape *input_shape, facenet_error *err);

/* Data and shape of a value after a run (constants too). */
const float *nn_exec_value(const nn_exec *e, int id);
const nn_shape *nn_exec_shape(const nn_exec *e, int id);

/* Bytes of arena plus scratch the current plan uses. */
size_t nn_exec_memory_bytes(const nn_exec *e);

#endif
