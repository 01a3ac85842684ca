/*
 * exec.c - the executor: plan memory once per input shape, then run node
 * by node: the heavy layers on the weights' backend (with a following PRELU
 * as their epilogue, and a following max pool too when the backend has
 * that fused layer: nn_backend_fused), everything else on the reference
 * kernels.
 */
#include "nn/exec.h"

#include <stdlib.h>
#include <string.h>

#include "common/error.h"
#include "nn/kernels/ref.h"

/* Offsets are rounded to 16 floats (64 bytes) so each tensor starts on a
 * cache line, which also keeps any future SIMD backend aligned. */
#define ARENA_ALIGN 16
#define NOT_IN_ARENA ((size_t)-1)

/* The PRELU node that may run as node i's epilogue, or NN_NONE. */
static int foldable_prelu(const nn_graph *g, int i, const int *readers)
{
    const nn_node *n = &g->nodes[i];
    if (n->op != NN_OP_CONV2D && n->op != NN_OP_DEPTHWISE_CONV2D &&
        n->op != NN_OP_FULLY_CONNECTED)
        return NN_NONE;
    if (readers[n->output] != 1)
        return NN_NONE;
    for (int k = 0; k < g->n_outputs; k++)
        if (g->outputs[k] == n->output)
            return NN_NONE;
    for (int j = i + 1; j < g->n_nodes; j++) {
        const nn_node *p = &g->nodes[j];
        if (p->inputs[0] != n->output && (p->n_inputs < 2 || p->inputs[1] != n->output) &&
            (p->n_inputs < 3 || p->inputs[2] != n->output))
            continue;
        /* j is the one reader */
        const nn_shape *out = &g->values[n->output].shape;
        const nn_value *alpha = p->n_inputs == 2 ? &g->values[p->inputs[1]] : NULL;
        if (p->op != NN_OP_PRELU || p->inputs[0] != n->output || !alpha || !alpha->data ||
            out->rank < 1 || nn_shape_count(&alpha->shape) != (size_t)out->dims[out->rank - 1])
            return NN_NONE;
        return j;
    }
    return NN_NONE;
}

static facenet_status plan_epilogues(const nn_graph *g, nn_weights *w, facenet_error *err)
{
    int *readers = calloc((size_t)g->n_values, sizeof *readers);
    if (!readers)
        return fn_fail(err, FACENET_ERR_NO_MEMORY, "out of memory preparing weights");
    for (int i = 0; i < g->n_nodes; i++)
        for (int k = 0; k < g->nodes[i].n_inputs; k++)
            if (g->nodes[i].inputs[k] != NN_NONE)
                readers[g->nodes[i].inputs[k]]++;
    w->n_steps = 0;
    for (int i = 0; i < g->n_nodes; i++) {
        w->epilogue[i] = NN_NONE;
        if (w->folded[i])
            continue;
        w->n_steps++;
        int j = foldable_prelu(g, i, readers);
        if (j != NN_NONE) {
            w->epilogue[i] = j;
            w->folded[j] = 1;
        }
    }
    free(readers);
    return FACENET_OK;
}

static facenet_status prepare_layer(const nn_graph *g, int i, nn_weights *w,
                                    facenet_error *err)
{
    const nn_node *n = &g->nodes[i];
    const nn_shape *ws = &g->values[n->inputs[1]].shape;
    nn_layer_params p;

    memset(&p, 0, sizeof p);
    p.op = n->op;
    p.weights = g->values[n->inputs[1]].data;
    if (n->op == NN_OP_FULLY_CONNECTED) {
        p.out_c = ws->dims[0];
        p.kernel_h = p.kernel_w = 1;
        p.in_c = ws->dims[1];
    } else if (n->op == NN_OP_DEPTHWISE_CONV2D) {
        p.out_c = p.in_c = ws->dims[3];
        p.kernel_h = ws->dims[1];
        p.kernel_w = ws->dims[2];
    } else {
        p.out_c = ws->dims[0];
        p.kernel_h = ws->dims[1];
        p.kernel_w = ws->dims[2];
        p.in_c = ws->dims[3];
    }
    if (n->n_inputs > 2 && n->inputs[2] != NN_NONE)
        p.bias = g->values[n->inputs[2]].data;
    if (w->epilogue[i] != NN_NONE)
        p.prelu = g->values[g->nodes[w->epilogue[i]].inputs[1]].data;
    w->prepared[i] = w->backend->prepare(&p);
    if (!w->prepared[i])
        return fn_fail(err, FACENET_ERR_NO_MEMORY, "out of memory preparing the weights of '%s'",
                       g->values[n->output].name ? g->values[n->output].name : "?");
    return FACENET_OK;
}

facenet_status nn_weights_prepare_backend(const nn_graph *g, const nn_backend *backend,
                                          nn_weights *w, facenet_error *err)
{
    const size_t n = (size_t)(g->n_nodes ? g->n_nodes : 1);
    facenet_status st;

    memset(w, 0, sizeof *w);
    if (!backend || !backend->available())
        return fn_fail(err, FACENET_ERR_UNSUPPORTED, "backend '%s' cannot run on this CPU",
                       backend ? backend->name : "(none)");
    w->backend = backend;
    w->n_nodes = g->n_nodes;
    w->prepared = calloc(n, sizeof *w->prepared);
    w->epilogue = calloc(n, sizeof *w->epilogue);
    w->folded = calloc(n, 1);
    if (!w->prepared || !w->epilogue || !w->folded) {
        nn_weights_free(w);
        return fn_fail(err, FACENET_ERR_NO_MEMORY, "out of memory preparing weights");
    }
    st = plan_epilogues(g, w, err);
    for (int i = 0; st == FACENET_OK && i < g->n_nodes; i++) {
        nn_op op = g->nodes[i].op;
        if (op == NN_OP_CONV2D || op == NN_OP_DEPTHWISE_CONV2D || op == NN_OP_FULLY_CONNECTED)
            st = prepare_layer(g, i, w, err);
    }
    if (st != FACENET_OK)
        nn_weights_free(w);
    return st;
}

facenet_status nn_weights_prepare(const nn_graph *g, nn_weights *w, facenet_error *err)
{
    return nn_weights_prepare_backend(g, &nn_backend_reference, w, err);
}

void nn_weights_free(nn_weights *w)
{
    if (!w)
        return;
    if (w->prepared)
        for (int i = 0; i < w->n_nodes; i++)
            if (w->prepared[i])
                w->backend->release(w->prepared[i]);
    free(w->prepared);
    free(w->epilogue);
    free(w->folded);
    memset(w, 0, sizeof *w);
}

/* Whether batch row b of every value depends only on row b of the input,
 * so the batch can run in chunks: no reduction or reshape touches dim 0,
 * and no constant operand of an element-wise op has a batch dim. */
static int batch_separable(const nn_graph *g)
{
    if (g->values[g->input].shape.rank < 2)
        return 0;
    for (int i = 0; i < g->n_nodes; i++) {
        const nn_node *n = &g->nodes[i];
        switch (n->op) {
        case NN_OP_REDUCE_MAX:
        case NN_OP_REDUCE_SUM:
        case NN_OP_REDUCE_MEAN:
            if (n->attrs.reduce.axes_mask & 1u)
                return 0;
            break;
        case NN_OP_RESHAPE:
            if (n->attrs.reshape.rank < 1 || n->attrs.reshape.dims[0] != 0)
                return 0;
            break;
        case NN_OP_ADD:
        case NN_OP_SUB:
        case NN_OP_MUL:
        case NN_OP_DIV:
        case NN_OP_ADD_ZEXT:
            for (int k = 0; k < 2; k++) {
                const nn_value *v = &g->values[n->inputs[k]];
                const nn_shape *out = &g->values[n->output].shape;
                if (v->data && v->shape.rank == out->rank && v->shape.dims[0] != 1)
                    return 0;
            }
            break;
        default:
            break;
        }
    }
    return 1;
}

facenet_status nn_exec_init(nn_exec *e, const nn_graph *g, const nn_weights *w,
                            facenet_error *err)
{
    memset(e, 0, sizeof *e);
    e->graph = g;
    e->weights = w;
    e->separable = batch_separable(g);
    e->shapes = calloc((size_t)g->n_values, sizeof *e->shapes);
    e->offsets = calloc((size_t)g->n_values, sizeof *e->offsets);
    e->pool_into = calloc((size_t)(g->n_nodes ? g->n_nodes : 1), sizeof *e->pool_into);
    e->inside = calloc((size_t)(g->n_nodes ? g->n_nodes : 1), 1);
    if (!e->shapes || !e->offsets || !e->pool_into || !e->inside) {
        nn_exec_free(e);
        return fn_fail(err, FACENET_ERR_NO_MEMORY, "out of memory creating a session");
    }
    return FACENET_OK;
}

void nn_exec_free(nn_exec *e)
{
    if (!e)
        return;
    for (int k = 0; k < NN_MAX_OUTPUTS; k++)
        free(e->full_out[k]);
    free(e->shapes);
    free(e->offsets);
    free(e->pool_into);
    free(e->inside);
    free(e->arena);
    free(e->scratch);
    memset(e, 0, sizeof *e);
}

static void conv_geom(const nn_node *n, const nn_shape *x, const nn_shape *y,
                      int kh, int kw, nn_conv_geom *geom)
{
    nn_padding mode;
    int sh, sw, eb_h, ea_h, eb_w, ea_w, after, out;

    if (n->op == NN_OP_CONV2D || n->op == NN_OP_DEPTHWISE_CONV2D) {
        const nn_conv_attrs *a = &n->attrs.conv;
        mode = a->padding; sh = a->stride_h; sw = a->stride_w;
        eb_h = a->pad_top; ea_h = a->pad_bottom; eb_w = a->pad_left; ea_w = a->pad_right;
        geom->act = a->act;
    } else {
        const nn_pool_attrs *a = &n->attrs.pool;
        mode = a->padding; sh = a->stride_h; sw = a->stride_w;
        eb_h = a->pad_top; ea_h = a->pad_bottom; eb_w = a->pad_left; ea_w = a->pad_right;
        geom->act = a->act;
    }
    geom->n = x->dims[0];
    geom->in_h = x->dims[1];
    geom->in_w = x->dims[2];
    geom->in_c = x->dims[3];
    geom->out_h = y->dims[1];
    geom->out_w = y->dims[2];
    geom->out_c = y->dims[3];
    geom->kernel_h = kh;
    geom->kernel_w = kw;
    geom->stride_h = sh;
    geom->stride_w = sw;
    nn_resolve_padding(mode, geom->in_h, kh, sh, eb_h, ea_h, &geom->pad_top, &after, &out);
    nn_resolve_padding(mode, geom->in_w, kw, sw, eb_w, ea_w, &geom->pad_left, &after, &out);
}

/* The value a node's step writes: its own output, or that of the PRELU
 * folded into it. */
static int step_output(const nn_weights *w, const nn_graph *g, int i)
{
    return w->epilogue[i] != NN_NONE ? g->nodes[w->epilogue[i]].output : g->nodes[i].output;
}

/* The same once the plan's fusion is known: a conv that runs its max pool
 * writes the pool's output. */
static int planned_output(const nn_exec *e, int i)
{
    const nn_graph *g = e->graph;
    return e->pool_into[i] != NN_NONE ? g->nodes[e->pool_into[i]].output
                                      : step_output(e->weights, g, i);
}

/* Geometries of CONV2D node i and of the MAX_POOL2D node j reading its
 * step's output, for the planned shapes. */
static void conv_pool_geoms(const nn_exec *e, int i, int j, nn_conv_geom *cg, nn_conv_geom *pg)
{
    const nn_graph *g = e->graph;
    const nn_node *c = &g->nodes[i], *p = &g->nodes[j];
    const nn_shape *w = &g->values[c->inputs[1]].shape;
    conv_geom(c, &e->shapes[c->inputs[0]], &e->shapes[c->output], w->dims[1], w->dims[2], cg);
    conv_geom(p, &e->shapes[p->inputs[0]], &e->shapes[p->output], p->attrs.pool.kernel_h,
              p->attrs.pool.kernel_w, pg);
}

static size_t node_scratch(const nn_exec *e, int i, int threads)
{
    const nn_node *n = &e->graph->nodes[i];
    if (n->op != NN_OP_CONV2D)
        return 0;
    nn_conv_geom geom, pg;
    if (e->pool_into[i] != NN_NONE) {
        conv_pool_geoms(e, i, e->pool_into[i], &geom, &pg);
        return nn_backend_fused(e->weights->backend)->conv_maxpool_scratch(&geom, &pg, threads);
    }
    const nn_shape *w = &e->graph->values[n->inputs[1]].shape;
    conv_geom(n, &e->shapes[n->inputs[0]], &e->shapes[n->output], w->dims[1], w->dims[2], &geom);
    return e->weights->backend->conv2d_scratch(&geom, threads);
}

/* The one node reading value `id` if it is a MAX_POOL2D reading it as its
 * data input and `id` is no graph output, else NN_NONE. */
static int sole_max_pool_reader(const nn_graph *g, int id)
{
    int reader = NN_NONE;
    for (int k = 0; k < g->n_outputs; k++)
        if (g->outputs[k] == id)
            return NN_NONE;
    for (int j = 0; j < g->n_nodes; j++)
        for (int k = 0; k < g->nodes[j].n_inputs; k++)
            if (g->nodes[j].inputs[k] == id) {
                if (reader != NN_NONE || k != 0 || g->nodes[j].op != NN_OP_MAX_POOL2D)
                    return NN_NONE;
                reader = j;
            }
    return reader;
}

/* Which convs run their max pool, for the shapes just inferred. */
static void plan_fusion(nn_exec *e)
{
    const nn_graph *g = e->graph;
    const nn_weights *w = e->weights;
    const nn_fused_ops *ops = nn_backend_fused(w->backend);

    for (int i = 0; i < g->n_nodes; i++) {
        e->pool_into[i] = NN_NONE;
        e->inside[i] = 0;
    }
    for (int i = 0; ops && i < g->n_nodes; i++) {
        if (w->folded[i] || g->nodes[i].op != NN_OP_CONV2D)
            continue;
        const int j = sole_max_pool_reader(g, step_output(w, g, i));
        nn_conv_geom cg, pg;
        if (j == NN_NONE || w->folded[j])
            continue;
        conv_pool_geoms(e, i, j, &cg, &pg);
        if (ops->conv_maxpool_supported(&cg, &pg)) {
            e->pool_into[i] = j;
            e->inside[j] = 1;
        }
    }
}

typedef struct block {
    size_t offset, size;
    int value;
} block;

/* First fit: the lowest offset where `size` floats fit between live
 * blocks (kept sorted by offset). */
static size_t first_fit(const block *live, int n_live, size_t size)
{
    size_t candidate = 0;
    for (int i = 0; i < n_live; i++) {
        if (live[i].offset >= candidate + size)
            break;
        if (live[i].offset + live[i].size > candidate)
            candidate = live[i].offset + live[i].size;
    }
    return candidate;
}

static void insert_sorted(block *live, int *n_live, block b)
{
    int i = *n_live;
    while (i > 0 && live[i - 1].offset > b.offset) {
        live[i] = live[i - 1];
        i--;
    }
    live[i] = b;
    (*n_live)++;
}

static void remove_value(block *live, int *n_live, int value)
{
    for (int i = 0; i < *n_live; i++) {
        if (live[i].value == value) {
            memmove(&live[i], &live[i + 1], (size_t)(*n_live - i - 1) * sizeof *live);
            (*n_live)--;
            return;
        }
    }
}

static facenet_status plan(nn_exec *e, const nn_shape *input, facenet_error *err)
{
    const nn_graph *g = e->graph;
    const nn_weights *w = e->weights;
    const int threads = nn_pool_threads(e->pool);
    facenet_status st;
    int *last_use = NULL;
    block *live = NULL;
    int n_live = 0;
    size_t arena = 0, scratch = 0;

    e->planned = 0;
    st = nn_infer_shapes(g, input, e->shapes, err);
    if (st != FACENET_OK)
        return st;
    plan_fusion(e);
    last_use = malloc((size_t)g->n_values * sizeof *last_use);
    live = malloc((size_t)g->n_values * sizeof *live);
    if (!last_use || !live) {
        free(last_use);
        free(live);
        return fn_fail(err, FACENET_ERR_NO_MEMORY, "out of memory planning");
    }
    for (int i = 0; i < g->n_values; i++) {
        last_use[i] = -1;
        e->offsets[i] = NOT_IN_ARENA;
    }
    for (int i = 0; i < g->n_nodes; i++)
        for (int k = 0; k < g->nodes[i].n_inputs && !w->folded[i] && !e->inside[i]; k++)
            if (g->nodes[i].inputs[k] != NN_NONE)
                last_use[g->nodes[i].inputs[k]] = i;
    for (int k = 0; k < g->n_outputs; k++)
        last_use[g->outputs[k]] = g->n_nodes; /* live to the end */

    for (int i = 0; i < g->n_nodes; i++) {
        const nn_node *n = &g->nodes[i];
        if (w->folded[i] || e->inside[i])
            continue;
        const int out_id = planned_output(e, i);
        size_t count = nn_shape_count(&e->shapes[out_id]);
        size_t size = (count + ARENA_ALIGN - 1) / ARENA_ALIGN * ARENA_ALIGN;
        block b = {first_fit(live, n_live, size), size, out_id};
        insert_sorted(live, &n_live, b);
        e->offsets[out_id] = b.offset;
        if (b.offset + size > arena)
            arena = b.offset + size;
        size_t s = node_scratch(e, i, threads);
        if (s > scratch)
            scratch = s;
        /* Inputs read for the last time here give their space back; so
         * does an output nobody reads. */
        for (int k = 0; k < n->n_inputs; k++) {
            int id = n->inputs[k];
            if (id != NN_NONE && last_use[id] == i && e->offsets[id] != NOT_IN_ARENA)
                remove_value(live, &n_live, id);
        }
        if (last_use[out_id] < 0)
            remove_value(live, &n_live, out_id);
    }
    free(last_use);
    free(live);

    if (arena > e->arena_floats) {
        float *p = realloc(e->arena, arena * sizeof(float));
        if (!p)
            return fn_fail(err, FACENET_ERR_NO_MEMORY, "cannot allocate %zu bytes of activations",
                           arena * sizeof(float));
        e->arena = p;
        e->arena_floats = arena;
    }
    if (scratch > e->scratch_floats) {
        float *p = realloc(e->scratch, scratch * sizeof(float));
        if (!p)
            return fn_fail(err, FACENET_ERR_NO_MEMORY, "cannot allocate %zu bytes of scratch",
                           scratch * sizeof(float));
        e->scratch = p;
        e->scratch_floats = scratch;
    }
    e->input_shape = *input;
    e->plan_floats = arena;
    e->plan_threads = threads;
    e->planned = 1;
    return FACENET_OK;
}

void nn_exec_set_pool(nn_exec *e, nn_pool *pool)
{
    e->pool = pool;
}

/* Index of `id` among the graph outputs after a chunked run, else -1. */
static int tiled_output(const nn_exec *e, int id)
{
    if (!e->tiled)
        return -1;
    for (int k = 0; k < e->graph->n_outputs; k++)
        if (e->graph->outputs[k] == id)
            return k;
    return -1;
}

const float *nn_exec_value(const nn_exec *e, int id)
{
    if (id < 0 || id >= e->graph->n_values)
        return NULL;
    const int k = tiled_output(e, id);
    if (k >= 0)
        return e->full_out[k];
    if (e->graph->values[id].data)
        return e->graph->values[id].data;
    if (id == e->graph->input)
        return e->input;
    if (e->offsets[id] == NOT_IN_ARENA)
        return NULL;
    return e->arena + e->offsets[id];
}

const nn_shape *nn_exec_shape(const nn_exec *e, int id)
{
    const int k = tiled_output(e, id);
    return k >= 0 ? &e->full_shape[k] : &e->shapes[id];
}

size_t nn_exec_memory_bytes(const nn_exec *e)
{
    return (e->arena_floats + e->scratch_floats) * sizeof(float);
}

static int last_dim(const nn_shape *s)
{
    return s->rank ? s->dims[s->rank - 1] : 1;
}

static void run_node(nn_exec *e, int index)
{
    const nn_graph *g = e->graph;
    const nn_weights *w = e->weights;
    const nn_node *n = &g->nodes[index];
    const float *x = nn_exec_value(e, n->inputs[0]);
    const nn_shape *xs = &e->shapes[n->inputs[0]];
    float *y = e->arena + e->offsets[planned_output(e, index)];
    const nn_shape *ys = &e->shapes[n->output];
    const float *in1 = n->n_inputs > 1 && n->inputs[1] != NN_NONE ? nn_exec_value(e, n->inputs[1]) : NULL;
    const float *in2 = n->n_inputs > 2 && n->inputs[2] != NN_NONE ? nn_exec_value(e, n->inputs[2]) : NULL;
    size_t count = nn_shape_count(ys);
    nn_conv_geom geom;

    switch (n->op) {
    case NN_OP_CONV2D: {
        const nn_shape *ws = &g->values[n->inputs[1]].shape;
        if (e->pool_into[index] != NN_NONE) {
            nn_conv_geom pg;
            conv_pool_geoms(e, index, e->pool_into[index], &geom, &pg);
            nn_backend_fused(w->backend)->conv_maxpool(&geom, &pg, x, w->prepared[index],
                                                      e->scratch, y, e->pool);
            break;
        }
        conv_geom(n, xs, ys, ws->dims[1], ws->dims[2], &geom);
        w->backend->conv2d(&geom, x, w->prepared[index], e->scratch, y, e->pool);
        break;
    }
    case NN_OP_DEPTHWISE_CONV2D: {
        const nn_shape *ws = &g->values[n->inputs[1]].shape;
        conv_geom(n, xs, ys, ws->dims[1], ws->dims[2], &geom);
        w->backend->depthwise(&geom, x, w->prepared[index], y, e->pool);
        break;
    }
    case NN_OP_MAX_POOL2D:
    case NN_OP_AVG_POOL2D:
        conv_geom(n, xs, ys, n->attrs.pool.kernel_h, n->attrs.pool.kernel_w, &geom);
        w->backend->pool2d(&geom, x, y, n->op == NN_OP_MAX_POOL2D, e->pool);
        break;
    case NN_OP_FULLY_CONNECTED: {
        const nn_shape *ws = &g->values[n->inputs[1]].shape;
        w->backend->fully_connected(xs->dims[0], ws->dims[1], ws->dims[0], n->attrs.act, x,
                                    w->prepared[index], y, e->pool);
        break;
    }
    case NN_OP_ADD:
    case NN_OP_SUB:
    case NN_OP_MUL:
    case NN_OP_DIV:
        nn_ref_binary(n->op, x, xs, in1, &e->shapes[n->inputs[1]], n->attrs.act, y, ys);
        break;
    case NN_OP_ADD_ZEXT:
        nn_ref_add_zext(x, xs, in1, &e->shapes[n->inputs[1]], y, ys);
        break;
    case NN_OP_NEG:
    case NN_OP_ABS:
    case NN_OP_RELU:
    case NN_OP_EXP:
        nn_ref_unary(n->op, x, count, y);
        break;
    case NN_OP_PRELU:
        nn_ref_prelu(x, count, last_dim(ys), in1, y);
        break;
    case NN_OP_AFFINE:
        nn_ref_affine(x, count, last_dim(ys), in1, in2, y);
        break;
    case NN_OP_REDUCE_MAX:
    case NN_OP_REDUCE_SUM:
    case NN_OP_REDUCE_MEAN:
        nn_ref_reduce(n->op, x, xs, n->attrs.reduce.axes_mask, y);
        break;
    case NN_OP_SOFTMAX:
        nn_ref_softmax(x, count / (size_t)last_dim(ys), last_dim(ys), y);
        break;
    case NN_OP_L2_NORM:
        nn_ref_l2_norm(x, count / (size_t)last_dim(ys), last_dim(ys), y);
        break;
    case NN_OP_RESHAPE:
        memcpy(y, x, count * sizeof *y);
        break;
    default:
        break; /* rejected at finalize */
    }
}

/* Plan if needed, then run every node once. */
static facenet_status run_whole(nn_exec *e, const float *input, const nn_shape *input_shape,
                                facenet_error *err)
{
    if (!e->planned || !nn_shape_equal(&e->input_shape, input_shape) ||
        e->plan_threads != nn_pool_threads(e->pool)) {
        facenet_status st = plan(e, input_shape, err);
        if (st != FACENET_OK)
            return st;
    }
    e->input = input;
    for (int i = 0; i < e->graph->n_nodes; i++)
        if (!e->weights->folded[i] && !e->inside[i])
            run_node(e, i);
    e->input = NULL;
    return FACENET_OK;
}

/* Activations of one chunk should stay in the last-level cache. */
#define CHUNK_BUDGET_FLOATS ((size_t)5 << 18) /* 5 MiB: measured best for MobileFaceNet and dlib */

/* Images per chunk for this input shape: plans one image once per shape. */
static facenet_status chunk_size(nn_exec *e, const nn_shape *input, int *chunk,
                                 facenet_error *err)
{
    nn_shape one = *input;
    one.dims[0] = 1;
    if (!nn_shape_equal(&one, &e->per_image_shape) || e->chunk < 1) {
        facenet_status st = plan(e, &one, err);
        if (st != FACENET_OK)
            return st;
        size_t per_image = e->plan_floats ? e->plan_floats : 1;
        size_t c = CHUNK_BUDGET_FLOATS / per_image;
        e->chunk = c < 1 ? 1 : c > 65536 ? 65536 : (int)c;
        e->per_image_shape = one;
    }
    *chunk = e->chunk;
    return FACENET_OK;
}

static facenet_status run_chunked(nn_exec *e, const float *input, const nn_shape *shape,
                                  int chunk, facenet_error *err)
{
    const nn_graph *g = e->graph;
    const int n = shape->dims[0];
    const size_t in_per_image = nn_shape_count(shape) / (size_t)n;

    for (int b0 = 0; b0 < n; b0 += chunk) {
        nn_shape sub = *shape;
        sub.dims[0] = n - b0 < chunk ? n - b0 : chunk;
        facenet_status st = run_whole(e, input + (size_t)b0 * in_per_image, &sub, err);
        if (st != FACENET_OK)
            return st;
        for (int k = 0; k < g->n_outputs; k++) {
            const int id = g->outputs[k];
            const size_t per_image = nn_shape_count(&e->shapes[id]) / (size_t)sub.dims[0];
            if (b0 == 0) {
                const size_t total = per_image * (size_t)n;
                if (total > e->full_floats[k]) {
                    float *p = realloc(e->full_out[k], total * sizeof *p);
                    if (!p)
                        return fn_fail(err, FACENET_ERR_NO_MEMORY,
                                       "cannot allocate %zu bytes of outputs",
                                       total * sizeof *p);
                    e->full_out[k] = p;
                    e->full_floats[k] = total;
                }
                e->full_shape[k] = e->shapes[id];
                e->full_shape[k].dims[0] = n;
            }
            memcpy(e->full_out[k] + (size_t)b0 * per_image, nn_exec_value(e, id),
                   per_image * sub.dims[0] * sizeof(float));
        }
    }
    e->tiled = 1;
    return FACENET_OK;
}

facenet_status nn_exec_run(nn_exec *e, const float *input,
                           const nn_shape *input_shape, facenet_error *err)
{
    if (!input)
        return fn_fail(err, FACENET_ERR_INVALID_ARGUMENT, "no input data");
    e->tiled = 0;
    if (e->separable && input_shape->rank >= 2 && input_shape->dims[0] > 1) {
        int chunk;
        facenet_status st = chunk_size(e, input_shape, &chunk, err);
        if (st != FACENET_OK)
            return st;
        if (chunk < input_shape->dims[0])
            return run_chunked(e, input, input_shape, chunk, err);
    }
    return run_whole(e, input, input_shape, err);
}
