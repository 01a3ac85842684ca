/*
 * graph.c - building, validating and shape-inferring the engine's graphs.
 *
 * Importers call the builder; nn_graph_finalize() then checks the whole
 * graph once, so the executor can trust it: every node's inputs exist and
 * precede it, weights have the shapes their ops need, and the shapes of all
 * values are known for the declared input.
 */
#include "nn/graph.h"

#include <stdlib.h>
#include <string.h>

#include "common/error.h"

static const char *const op_names[NN_OP_COUNT_] = {
    [NN_OP_CONV2D] = "CONV2D",
    [NN_OP_DEPTHWISE_CONV2D] = "DEPTHWISE_CONV2D",
    [NN_OP_MAX_POOL2D] = "MAX_POOL2D",
    [NN_OP_AVG_POOL2D] = "AVG_POOL2D",
    [NN_OP_FULLY_CONNECTED] = "FULLY_CONNECTED",
    [NN_OP_ADD] = "ADD",
    [NN_OP_SUB] = "SUB",
    [NN_OP_MUL] = "MUL",
    [NN_OP_DIV] = "DIV",
    [NN_OP_ADD_ZEXT] = "ADD_ZEXT",
    [NN_OP_NEG] = "NEG",
    [NN_OP_ABS] = "ABS",
    [NN_OP_RELU] = "RELU",
    [NN_OP_EXP] = "EXP",
    [NN_OP_PRELU] = "PRELU",
    [NN_OP_AFFINE] = "AFFINE",
    [NN_OP_REDUCE_MAX] = "REDUCE_MAX",
    [NN_OP_REDUCE_SUM] = "REDUCE_SUM",
    [NN_OP_REDUCE_MEAN] = "REDUCE_MEAN",
    [NN_OP_SOFTMAX] = "SOFTMAX",
    [NN_OP_RESHAPE] = "RESHAPE",
    [NN_OP_L2_NORM] = "L2_NORM",
};

const char *nn_op_name(nn_op op)
{
    if ((int)op <= 0 || op >= NN_OP_COUNT_ || !op_names[op])
        return "UNKNOWN";
    return op_names[op];
}

/* Number of inputs each op takes: min and max (bias is optional). */
static void op_arity(nn_op op, int *min, int *max)
{
    switch (op) {
    case NN_OP_CONV2D:
    case NN_OP_DEPTHWISE_CONV2D:
    case NN_OP_FULLY_CONNECTED: *min = 2; *max = 3; return;
    case NN_OP_ADD:
    case NN_OP_SUB:
    case NN_OP_MUL:
    case NN_OP_DIV:
    case NN_OP_ADD_ZEXT:
    case NN_OP_PRELU: *min = 2; *max = 2; return;
    case NN_OP_AFFINE: *min = 3; *max = 3; return;
    default: *min = 1; *max = 1; return;
    }
}

nn_graph *nn_graph_new(void)
{
    nn_graph *g = calloc(1, sizeof *g);
    if (g)
        g->input = NN_NONE;
    return g;
}

void nn_graph_free(nn_graph *g)
{
    if (!g)
        return;
    for (int i = 0; i < g->n_values; i++) {
        free(g->values[i].name);
        free(g->values[i].data);
    }
    free(g->values);
    free(g->nodes);
    free(g);
}

static char *copy_name(const char *name)
{
    size_t len = name ? strlen(name) : 0;
    char *copy = malloc(len + 1);
    if (copy) {
        if (len)
            memcpy(copy, name, len);
        copy[len] = '\0';
    }
    return copy;
}

static int grow(void **items, int *cap, int need, size_t item_size)
{
    if (need <= *cap)
        return 1;
    int new_cap = *cap ? *cap * 2 : 64;
    while (new_cap < need)
        new_cap *= 2;
    void *p = realloc(*items, (size_t)new_cap * item_size);
    if (!p)
        return 0;
    *items = p;
    *cap = new_cap;
    return 1;
}

/* Appends a value; takes ownership of data (freed on failure). */
static int add_value(nn_graph *g, const char *name, nn_shape shape,
                     float *data, int producer, facenet_error *err)
{
    if (g->finalized) {
        free(data);
        fn_fail(err, FACENET_ERR_INTERNAL, "graph is finalized");
        return NN_NONE;
    }
    if (shape.rank < 0 || shape.rank > NN_MAX_RANK) {
        free(data);
        fn_fail(err, FACENET_ERR_FORMAT, "tensor '%s': rank %d is not supported",
                name ? name : "?", shape.rank);
        return NN_NONE;
    }
    if (!grow((void **)&g->values, &g->cap_values, g->n_values + 1,
              sizeof *g->values)) {
        free(data);
        fn_fail(err, FACENET_ERR_NO_MEMORY, "out of memory adding a tensor");
        return NN_NONE;
    }
    nn_value *v = &g->values[g->n_values];
    v->name = copy_name(name);
    if (!v->name) {
        free(data);
        fn_fail(err, FACENET_ERR_NO_MEMORY, "out of memory adding a tensor");
        return NN_NONE;
    }
    for (int i = shape.rank; i < NN_MAX_RANK; i++)
        shape.dims[i] = 0;
    v->shape = shape;
    v->data = data;
    v->producer = producer;
    return g->n_values++;
}

int nn_graph_add_input(nn_graph *g, const char *name, nn_shape shape,
                       facenet_error *err)
{
    if (g->input != NN_NONE) {
        fn_fail(err, FACENET_ERR_UNSUPPORTED, "graph has more than one input");
        return NN_NONE;
    }
    if (shape.rank != 4 && shape.rank != 2) {
        fn_fail(err, FACENET_ERR_UNSUPPORTED,
                "input '%s' has rank %d; only NHWC (4) or [N, D] (2) inputs are supported",
                name ? name : "?", shape.rank);
        return NN_NONE;
    }
    if (nn_shape_count(&shape) == 0) {
        fn_fail(err, FACENET_ERR_FORMAT, "input '%s' has an empty or invalid shape",
                name ? name : "?");
        return NN_NONE;
    }
    int id = add_value(g, name, shape, NULL, NN_NONE, err);
    if (id != NN_NONE)
        g->input = id;
    return id;
}

int nn_graph_add_const(nn_graph *g, const char *name, nn_shape shape,
                       float *data, facenet_error *err)
{
    if (!data) {
        fn_fail(err, FACENET_ERR_INVALID_ARGUMENT, "constant '%s' has no data",
                name ? name : "?");
        return NN_NONE;
    }
    if (nn_shape_count(&shape) == 0) {
        free(data);
        fn_fail(err, FACENET_ERR_FORMAT, "constant '%s' has an empty or invalid shape",
                name ? name : "?");
        return NN_NONE;
    }
    return add_value(g, name, shape, data, NN_NONE, err);
}

int nn_graph_add_const_copy(nn_graph *g, const char *name, nn_shape shape,
                            const float *data, facenet_error *err)
{
    size_t count = nn_shape_count(&shape);
    if (count == 0) {
        fn_fail(err, FACENET_ERR_FORMAT, "constant '%s' has an empty or invalid shape",
                name ? name : "?");
        return NN_NONE;
    }
    float *copy = malloc(count * sizeof *copy);
    if (!copy) {
        fn_fail(err, FACENET_ERR_NO_MEMORY, "out of memory for constant '%s'",
                name ? name : "?");
        return NN_NONE;
    }
    memcpy(copy, data, count * sizeof *copy);
    return nn_graph_add_const(g, name, shape, copy, err);
}

int nn_graph_add_node(nn_graph *g, nn_op op, const int *inputs, int n_inputs,
                      const nn_attrs *attrs, const char *name,
                      facenet_error *err)
{
    int min, max;

    if ((int)op <= 0 || op >= NN_OP_COUNT_) {
        fn_fail(err, FACENET_ERR_INTERNAL, "node '%s': bad op %d", name ? name : "?",
                (int)op);
        return NN_NONE;
    }
    op_arity(op, &min, &max);
    if (n_inputs < min || n_inputs > max) {
        fn_fail(err, FACENET_ERR_FORMAT, "node '%s' (%s): %d inputs, expected %d..%d",
                name ? name : "?", nn_op_name(op), n_inputs, min, max);
        return NN_NONE;
    }
    for (int i = 0; i < n_inputs; i++) {
        int optional = (i == 2 && max == 3 && op != NN_OP_AFFINE);
        if (inputs[i] == NN_NONE && optional)
            continue;
        if (inputs[i] < 0 || inputs[i] >= g->n_values) {
            fn_fail(err, FACENET_ERR_FORMAT, "node '%s' (%s): input %d refers to tensor %d, which does not exist yet",
                    name ? name : "?", nn_op_name(op), i, inputs[i]);
            return NN_NONE;
        }
    }
    if (!grow((void **)&g->nodes, &g->cap_nodes, g->n_nodes + 1, sizeof *g->nodes)) {
        fn_fail(err, FACENET_ERR_NO_MEMORY, "out of memory adding a node");
        return NN_NONE;
    }
    nn_shape unknown;
    memset(&unknown, 0, sizeof unknown);
    int out = add_value(g, name, unknown, NULL, g->n_nodes, err);
    if (out == NN_NONE)
        return NN_NONE;
    nn_node *node = &g->nodes[g->n_nodes++];
    memset(node, 0, sizeof *node);
    node->op = op;
    node->n_inputs = n_inputs;
    for (int i = 0; i < NN_MAX_INPUTS; i++)
        node->inputs[i] = i < n_inputs ? inputs[i] : NN_NONE;
    node->output = out;
    if (attrs)
        node->attrs = *attrs;
    return out;
}

facenet_status nn_graph_set_outputs(nn_graph *g, const int *ids, int n,
                                    facenet_error *err)
{
    if (n < 1 || n > NN_MAX_OUTPUTS)
        return fn_fail(err, FACENET_ERR_UNSUPPORTED, "graph has %d outputs; 1..%d supported",
                       n, NN_MAX_OUTPUTS);
    for (int i = 0; i < n; i++) {
        if (ids[i] < 0 || ids[i] >= g->n_values || g->values[ids[i]].producer == NN_NONE)
            return fn_fail(err, FACENET_ERR_FORMAT,
                           "graph output %d is not computed by any node", i);
        g->outputs[i] = ids[i];
    }
    g->n_outputs = n;
    return FACENET_OK;
}

/* ---- shape inference ---------------------------------------------------- */

void nn_resolve_padding(nn_padding mode, int in, int k, int stride,
                        int explicit_before, int explicit_after, int *before,
                        int *after, int *out)
{
    if (mode == NN_PAD_SAME) {
        int o = (in + stride - 1) / stride;
        int total = (o - 1) * stride + k - in;
        if (total < 0)
            total = 0;
        *before = total / 2;
        *after = total - total / 2;
        *out = o;
        return;
    }
    *before = mode == NN_PAD_EXPLICIT ? explicit_before : 0;
    *after = mode == NN_PAD_EXPLICIT ? explicit_after : 0;
    int span = in + *before + *after - k;
    *out = span < 0 ? 0 : span / stride + 1;
}

#define SHAPE_FAIL(...) return fn_fail(err, FACENET_ERR_SHAPE, __VA_ARGS__)

static const char *vname(const nn_graph *g, int id)
{
    return g->values[id].name ? g->values[id].name : "?";
}

static facenet_status infer_window(const nn_graph *g, const nn_node *n,
                                   const nn_shape *x, int kh, int kw,
                                   int out_c, nn_shape *y, facenet_error *err)
{
    int sh, sw, pad_t, pad_l, pad_b, pad_r;
    nn_padding mode;
    int eb_h, ea_h, eb_w, ea_w;
    int oh, ow, before, after;

    if (n->op == NN_OP_CONV2D || n->op == NN_OP_DEPTHWISE_CONV2D) {
        const nn_conv_attrs *a = &n->attrs.conv;
        sh = a->stride_h; sw = a->stride_w; mode = a->padding;
        eb_h = a->pad_top; ea_h = a->pad_bottom; eb_w = a->pad_left; ea_w = a->pad_right;
    } else {
        const nn_pool_attrs *a = &n->attrs.pool;
        sh = a->stride_h; sw = a->stride_w; mode = a->padding;
        eb_h = a->pad_top; ea_h = a->pad_bottom; eb_w = a->pad_left; ea_w = a->pad_right;
    }
    if (x->rank != 4)
        SHAPE_FAIL("node '%s' (%s): input must be 4-D NHWC", vname(g, n->output),
                   nn_op_name(n->op));
    if (sh < 1 || sw < 1 || sh > 16 || sw > 16 || kh < 1 || kw < 1 || kh > 64 || kw > 64)
        SHAPE_FAIL("node '%s' (%s): bad kernel %dx%d or stride %dx%d",
                   vname(g, n->output), nn_op_name(n->op), kh, kw, sh, sw);
    if ((unsigned)mode > NN_PAD_EXPLICIT || eb_h < 0 || ea_h < 0 || eb_w < 0 ||
        ea_w < 0 || eb_h >= kh || ea_h >= kh || eb_w >= kw || ea_w >= kw)
        SHAPE_FAIL("node '%s' (%s): bad padding", vname(g, n->output), nn_op_name(n->op));
    nn_resolve_padding(mode, x->dims[1], kh, sh, eb_h, ea_h, &pad_t, &pad_b, &oh);
    nn_resolve_padding(mode, x->dims[2], kw, sw, eb_w, ea_w, &pad_l, &pad_r, &ow);
    (void)pad_t; (void)pad_b; (void)pad_l; (void)pad_r; (void)before; (void)after;
    if (oh < 1 || ow < 1)
        SHAPE_FAIL("node '%s' (%s): input %dx%d is smaller than the %dx%d window",
                   vname(g, n->output), nn_op_name(n->op), x->dims[1], x->dims[2], kh, kw);
    *y = nn_shape4(x->dims[0], oh, ow, out_c);
    return FACENET_OK;
}

static facenet_status infer_conv(const nn_graph *g, const nn_node *n,
                                 const nn_shape *shapes, nn_shape *y,
                                 facenet_error *err)
{
    const nn_shape *x = &shapes[n->inputs[0]];
    const nn_value *w = &g->values[n->inputs[1]];
    int depthwise = n->op == NN_OP_DEPTHWISE_CONV2D;
    int out_c;

    if (!w->data || w->shape.rank != 4)
        SHAPE_FAIL("node '%s' (%s): weights must be a 4-D constant", vname(g, n->output),
                   nn_op_name(n->op));
    if (x->rank != 4)
        SHAPE_FAIL("node '%s' (%s): input must be 4-D NHWC", vname(g, n->output),
                   nn_op_name(n->op));
    if (depthwise) {
        if (w->shape.dims[0] != 1 || w->shape.dims[3] != x->dims[3])
            SHAPE_FAIL("node '%s' (DEPTHWISE_CONV2D): weights [1,KH,KW,%d] expected for %d channels",
                       vname(g, n->output), x->dims[3], x->dims[3]);
        out_c = x->dims[3];
    } else {
        if (w->shape.dims[3] != x->dims[3])
            SHAPE_FAIL("node '%s' (CONV2D): weights expect %d input channels, input has %d",
                       vname(g, n->output), w->shape.dims[3], x->dims[3]);
        out_c = w->shape.dims[0];
    }
    if (n->n_inputs > 2 && n->inputs[2] != NN_NONE) {
        const nn_value *b = &g->values[n->inputs[2]];
        if (!b->data || nn_shape_count(&b->shape) != (size_t)out_c)
            SHAPE_FAIL("node '%s' (%s): bias must be a constant of %d values",
                       vname(g, n->output), nn_op_name(n->op), out_c);
    }
    return infer_window(g, n, x, w->shape.dims[1], w->shape.dims[2], out_c, y, err);
}

static facenet_status infer_fc(const nn_graph *g, const nn_node *n,
                               const nn_shape *shapes, nn_shape *y,
                               facenet_error *err)
{
    const nn_shape *x = &shapes[n->inputs[0]];
    const nn_value *w = &g->values[n->inputs[1]];
    size_t total = nn_shape_count(x);

    if (!w->data || w->shape.rank != 2)
        SHAPE_FAIL("node '%s' (FULLY_CONNECTED): weights must be a 2-D constant",
                   vname(g, n->output));
    if (x->rank < 1 || total == 0 || total % (size_t)x->dims[0] != 0 ||
        total / (size_t)x->dims[0] != (size_t)w->shape.dims[1])
        SHAPE_FAIL("node '%s' (FULLY_CONNECTED): input has %zu features per row, weights expect %d",
                   vname(g, n->output), x->rank ? total / (size_t)x->dims[0] : 0,
                   w->shape.dims[1]);
    if (n->n_inputs > 2 && n->inputs[2] != NN_NONE) {
        const nn_value *b = &g->values[n->inputs[2]];
        if (!b->data || nn_shape_count(&b->shape) != (size_t)w->shape.dims[0])
            SHAPE_FAIL("node '%s' (FULLY_CONNECTED): bias must be a constant of %d values",
                       vname(g, n->output), w->shape.dims[0]);
    }
    *y = nn_shape2(x->dims[0], w->shape.dims[0]);
    return FACENET_OK;
}

static facenet_status infer_broadcast(const nn_graph *g, const nn_node *n,
                                      const nn_shape *a, const nn_shape *b,
                                      nn_shape *y, facenet_error *err)
{
    int rank = a->rank > b->rank ? a->rank : b->rank;
    memset(y, 0, sizeof *y);
    y->rank = rank;
    for (int i = 0; i < rank; i++) {
        int ia = a->rank - rank + i, ib = b->rank - rank + i;
        int da = ia >= 0 ? a->dims[ia] : 1, db = ib >= 0 ? b->dims[ib] : 1;
        if (da != db && da != 1 && db != 1)
            SHAPE_FAIL("node '%s' (%s): shapes do not broadcast (dim %d: %d vs %d)",
                       vname(g, n->output), nn_op_name(n->op), i, da, db);
        y->dims[i] = da > db ? da : db;
    }
    return FACENET_OK;
}

static facenet_status infer_channel_params(const nn_graph *g, const nn_node *n,
                                           const nn_shape *x, int first,
                                           facenet_error *err)
{
    int c = x->rank ? x->dims[x->rank - 1] : 1;
    for (int i = first; i < n->n_inputs; i++) {
        const nn_value *p = &g->values[n->inputs[i]];
        if (!p->data || nn_shape_count(&p->shape) != (size_t)c)
            SHAPE_FAIL("node '%s' (%s): parameter %d must be a constant of %d values",
                       vname(g, n->output), nn_op_name(n->op), i, c);
    }
    return FACENET_OK;
}

static facenet_status infer_reduce(const nn_graph *g, const nn_node *n,
                                   const nn_shape *x, nn_shape *y,
                                   facenet_error *err)
{
    unsigned mask = n->attrs.reduce.axes_mask;
    if (mask == 0 || (mask >> x->rank) != 0)
        SHAPE_FAIL("node '%s' (%s): reduction axes 0x%x do not fit rank %d",
                   vname(g, n->output), nn_op_name(n->op), mask, x->rank);
    memset(y, 0, sizeof *y);
    for (int i = 0; i < x->rank; i++) {
        if (!(mask & (1u << i)))
            y->dims[y->rank++] = x->dims[i];
        else if (n->attrs.reduce.keep_dims)
            y->dims[y->rank++] = 1;
    }
    return FACENET_OK;
}

static facenet_status infer_reshape(const nn_graph *g, const nn_node *n,
                                    const nn_shape *x, nn_shape *y,
                                    facenet_error *err)
{
    const nn_reshape_attrs *a = &n->attrs.reshape;
    size_t total = nn_shape_count(x), known = 1;
    int infer_at = -1;

    if (a->rank < 1 || a->rank > NN_MAX_RANK)
        SHAPE_FAIL("node '%s' (RESHAPE): target rank %d", vname(g, n->output), a->rank);
    memset(y, 0, sizeof *y);
    y->rank = a->rank;
    for (int i = 0; i < a->rank; i++) {
        int d = a->dims[i];
        if (d == 0) {
            if (i >= x->rank)
                SHAPE_FAIL("node '%s' (RESHAPE): dim %d copies a dim the input lacks",
                           vname(g, n->output), i);
            d = x->dims[i];
        }
        if (d == -1) {
            if (infer_at >= 0)
                SHAPE_FAIL("node '%s' (RESHAPE): more than one -1", vname(g, n->output));
            infer_at = i;
            continue;
        }
        if (d < 1)
            SHAPE_FAIL("node '%s' (RESHAPE): bad dim %d", vname(g, n->output), d);
        y->dims[i] = d;
        known *= (size_t)d;
    }
    if (infer_at >= 0) {
        if (known == 0 || total % known != 0)
            SHAPE_FAIL("node '%s' (RESHAPE): %zu elements do not divide by %zu",
                       vname(g, n->output), total, known);
        y->dims[infer_at] = (int)(total / known);
        known *= total / known;
    }
    if (known != total)
        SHAPE_FAIL("node '%s' (RESHAPE): %zu elements cannot become %zu",
                   vname(g, n->output), total, known);
    return FACENET_OK;
}

static facenet_status infer_node(const nn_graph *g, const nn_node *n,
                                 const nn_shape *shapes, nn_shape *y,
                                 facenet_error *err)
{
    const nn_shape *x = &shapes[n->inputs[0]];

    switch (n->op) {
    case NN_OP_CONV2D:
    case NN_OP_DEPTHWISE_CONV2D:
        return infer_conv(g, n, shapes, y, err);
    case NN_OP_MAX_POOL2D:
    case NN_OP_AVG_POOL2D:
        return infer_window(g, n, x, n->attrs.pool.kernel_h, n->attrs.pool.kernel_w,
                            x->rank == 4 ? x->dims[3] : 0, y, err);
    case NN_OP_FULLY_CONNECTED:
        return infer_fc(g, n, shapes, y, err);
    case NN_OP_ADD:
    case NN_OP_SUB:
    case NN_OP_MUL:
    case NN_OP_DIV:
        return infer_broadcast(g, n, x, &shapes[n->inputs[1]], y, err);
    case NN_OP_ADD_ZEXT: {
        const nn_shape *b = &shapes[n->inputs[1]];
        if (x->rank != 4 || b->rank != 4 || x->dims[0] != b->dims[0])
            SHAPE_FAIL("node '%s' (ADD_ZEXT): needs two 4-D inputs with the same batch",
                       vname(g, n->output));
        *y = *x;
        for (int i = 1; i < 4; i++)
            if (b->dims[i] > y->dims[i])
                y->dims[i] = b->dims[i];
        return FACENET_OK;
    }
    case NN_OP_NEG:
    case NN_OP_ABS:
    case NN_OP_RELU:
    case NN_OP_EXP:
    case NN_OP_SOFTMAX:
    case NN_OP_L2_NORM:
        *y = *x;
        return FACENET_OK;
    case NN_OP_PRELU:
    case NN_OP_AFFINE:
        *y = *x;
        return infer_channel_params(g, n, x, 1, err);
    case NN_OP_REDUCE_MAX:
    case NN_OP_REDUCE_SUM:
    case NN_OP_REDUCE_MEAN:
        return infer_reduce(g, n, x, y, err);
    case NN_OP_RESHAPE:
        return infer_reshape(g, n, x, y, err);
    default:
        return fn_fail(err, FACENET_ERR_INTERNAL, "node '%s': unknown op",
                       vname(g, n->output));
    }
}

facenet_status nn_infer_shapes(const nn_graph *g, const nn_shape *input,
                               nn_shape *shapes, facenet_error *err)
{
    const nn_shape *declared;
    char a[64], b[64];

    if (g->input == NN_NONE)
        return fn_fail(err, FACENET_ERR_FORMAT, "graph has no input");
    declared = &g->values[g->input].shape;
    if (input->rank != declared->rank ||
        input->dims[input->rank - 1] != declared->dims[declared->rank - 1] ||
        nn_shape_count(input) == 0)
        return fn_fail(err, FACENET_ERR_SHAPE, "input shape %s does not fit the model's %s",
                       nn_shape_str(input, a, sizeof a),
                       nn_shape_str(declared, b, sizeof b));
    for (int i = 0; i < g->n_values; i++)
        shapes[i] = g->values[i].shape;
    shapes[g->input] = *input;
    for (int i = 0; i < g->n_nodes; i++) {
        const nn_node *n = &g->nodes[i];
        nn_shape y;
        facenet_status st = infer_node(g, n, shapes, &y, err);
        if (st != FACENET_OK)
            return st;
        if (nn_shape_count(&y) == 0)
            SHAPE_FAIL("node '%s' (%s): output shape %s is empty or too large",
                       vname(g, n->output), nn_op_name(n->op), nn_shape_str(&y, a, sizeof a));
        shapes[n->output] = y;
    }
    return FACENET_OK;
}

facenet_status nn_graph_finalize(nn_graph *g, facenet_error *err)
{
    if (g->finalized)
        return FACENET_OK;
    if (g->input == NN_NONE)
        return fn_fail(err, FACENET_ERR_FORMAT, "graph has no input");
    if (g->n_outputs == 0)
        return fn_fail(err, FACENET_ERR_FORMAT, "graph has no outputs");
    /* Inputs precede their node by construction (add_node checks ids), but
     * a node must not read a value produced later or by itself. */
    for (int i = 0; i < g->n_nodes; i++) {
        const nn_node *n = &g->nodes[i];
        for (int k = 0; k < n->n_inputs; k++) {
            int id = n->inputs[k];
            if (id == NN_NONE)
                continue;
            if (g->values[id].producer >= i)
                return fn_fail(err, FACENET_ERR_FORMAT,
                               "node '%s' reads a tensor computed later",
                               vname(g, n->output));
            /* Weight inputs must be constants; data inputs must not. */
            if (k > 0 && (n->op == NN_OP_CONV2D || n->op == NN_OP_DEPTHWISE_CONV2D ||
                          n->op == NN_OP_FULLY_CONNECTED || n->op == NN_OP_PRELU ||
                          n->op == NN_OP_AFFINE) && !g->values[id].data)
                return fn_fail(err, FACENET_ERR_UNSUPPORTED,
                               "node '%s' (%s): parameter %d must be a constant",
                               vname(g, n->output), nn_op_name(n->op), k);
        }
    }
    nn_shape *shapes = malloc((size_t)g->n_values * sizeof *shapes);
    if (!shapes)
        return fn_fail(err, FACENET_ERR_NO_MEMORY, "out of memory checking the graph");
    facenet_status st = nn_infer_shapes(g, &g->values[g->input].shape, shapes, err);
    if (st == FACENET_OK) {
        /* Remember the declared-input shapes: handy for messages and tests. */
        for (int i = 0; i < g->n_values; i++)
            if (g->values[i].producer != NN_NONE)
                g->values[i].shape = shapes[i];
        g->finalized = 1;
    }
    free(shapes);
    return st;
}

long long nn_graph_macs(const nn_graph *g, const nn_shape *shapes)
{
    long long macs = 0;
    for (int i = 0; i < g->n_nodes; i++) {
        const nn_node *n = &g->nodes[i];
        const nn_shape *y = &shapes[n->output];
        const nn_shape *w = n->n_inputs > 1 ? &g->values[n->inputs[1]].shape : NULL;
        long long outputs = (long long)nn_shape_count(y);
        if (!w)
            continue;
        switch (n->op) {
        case NN_OP_CONV2D:
            macs += outputs * w->dims[1] * w->dims[2] * w->dims[3];
            break;
        case NN_OP_DEPTHWISE_CONV2D:
            macs += outputs * w->dims[1] * w->dims[2];
            break;
        case NN_OP_FULLY_CONNECTED:
            macs += outputs * w->dims[1];
            break;
        default:
            break;
        }
    }
    return macs;
}
