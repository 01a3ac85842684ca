/*
 * fuse.c - graph fusion (see fuse.h).
 *
 * The pass works on a copy of the node list. Each pattern is matched
 * backwards from its last node, the one whose output the rest of the graph
 * reads: the rewrite puts the fused node at that position with that
 * output, so every later reader is untouched and the node order stays
 * topological. The pattern's other nodes are marked dead. New constants
 * (folded weights, PReLU slopes) are kept beside the graph's own until the
 * fused graph is emitted with the ordinary builder calls, which also drops
 * the constants nobody reads any more and validates the result.
 */
#include "nn/fuse.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/error.h"

typedef struct extra_const {
    char name[160];
    nn_shape shape;
    float *data; /* owned until emitted */
} extra_const;

typedef struct fuser {
    const nn_graph *g;
    nn_node *nodes;      /* working copy of g->nodes              */
    unsigned char *dead; /* per node                              */
    int *readers;        /* per value: live readers + 1 if output */
    int *producer;       /* per value: node index or NN_NONE      */
    int n_ids;           /* g->n_values + extras                  */
    extra_const *extra;
    int n_extra, cap_extra;
    nn_fuse_stats stats;
} fuser;

/* ---- value access ------------------------------------------------------ */

static const nn_shape *vshape(const fuser *f, int id)
{
    return id < f->g->n_values ? &f->g->values[id].shape
                               : &f->extra[id - f->g->n_values].shape;
}

static const float *vdata(const fuser *f, int id)
{
    return id < f->g->n_values ? f->g->values[id].data : f->extra[id - f->g->n_values].data;
}

static const char *vname(const fuser *f, int id)
{
    const char *name = id < f->g->n_values ? f->g->values[id].name
                                           : f->extra[id - f->g->n_values].name;
    return name ? name : "";
}

static int last_dim(const nn_shape *s)
{
    return s->rank ? s->dims[s->rank - 1] : 1;
}

/* The live node producing `id` if its op is `op`, else NN_NONE. */
static int produced_by(const fuser *f, int id, nn_op op)
{
    if (id < 0 || id >= f->g->n_values)
        return NN_NONE;
    int p = f->producer[id];
    if (p == NN_NONE || f->dead[p] || f->nodes[p].op != op)
        return NN_NONE;
    return p;
}

/* An intermediate value the pattern may swallow: exactly `uses` readers,
 * all of them inside the pattern, and not a graph output. */
static int is_private(const fuser *f, int id, int uses)
{
    for (int k = 0; k < f->g->n_outputs; k++)
        if (f->g->outputs[k] == id)
            return 0;
    return f->readers[id] == uses;
}

/* A constant that scales each channel of x: [C] or [1, .., 1, C] with C
 * the last dim of x. */
static int is_channel_const(const fuser *f, int id, int channels)
{
    const nn_shape *s = vshape(f, id);
    if (!vdata(f, id) || s->rank < 1 || last_dim(s) != channels)
        return 0;
    for (int i = 0; i + 1 < s->rank; i++)
        if (s->dims[i] != 1)
            return 0;
    return 1;
}

/* Add a constant; takes ownership of data. Returns its id or NN_NONE. */
static int add_extra(fuser *f, const char *base, const char *suffix, nn_shape shape,
                     float *data)
{
    if (f->n_extra == f->cap_extra) {
        int cap = f->cap_extra ? 2 * f->cap_extra : 16;
        extra_const *p = realloc(f->extra, (size_t)cap * sizeof *p);
        if (!p) {
            free(data);
            return NN_NONE;
        }
        f->extra = p;
        f->cap_extra = cap;
        int *r = realloc(f->readers, (size_t)(f->g->n_values + cap) * sizeof *r);
        if (!r) {
            free(data);
            return NN_NONE;
        }
        f->readers = r;
    }
    extra_const *e = &f->extra[f->n_extra];
    (void)snprintf(e->name, sizeof e->name, "%s%s", base, suffix);
    e->shape = shape;
    e->data = data;
    f->readers[f->g->n_values + f->n_extra] = 0;
    f->n_ids++;
    return f->g->n_values + f->n_extra++;
}

/* ---- node edits ---------------------------------------------------------- */

static void count_inputs(fuser *f, const nn_node *n, int delta)
{
    for (int k = 0; k < n->n_inputs; k++)
        if (n->inputs[k] != NN_NONE)
            f->readers[n->inputs[k]] += delta;
}

static void kill_node(fuser *f, int index)
{
    count_inputs(f, &f->nodes[index], -1);
    f->dead[index] = 1;
}

/* Replace node `index` by `n`, keeping its output value. */
static void replace_node(fuser *f, int index, nn_node n)
{
    count_inputs(f, &f->nodes[index], -1);
    n.output = f->nodes[index].output;
    f->nodes[index] = n;
    count_inputs(f, &f->nodes[index], +1);
}

static nn_node make_node(nn_op op, int a, int b, int c, int n_inputs)
{
    nn_node n;
    memset(&n, 0, sizeof n);
    n.op = op;
    n.n_inputs = n_inputs;
    n.inputs[0] = a;
    n.inputs[1] = b;
    n.inputs[2] = c;
    return n;
}

/* Binary node with no activation whose output has the shape of `like`:
 * the pattern must not broadcast the data tensor itself. */
static int plain_same_shape(const fuser *f, const nn_node *n, int like)
{
    return n->attrs.act == NN_ACT_NONE &&
           nn_shape_equal(vshape(f, n->output), vshape(f, like));
}

/* ---- PReLU --------------------------------------------------------------- */

/* Make the node at `root` PRELU(x, scale * c) and kill `dead[0..n)`. */
static int emit_prelu(fuser *f, int root, int x, int c, float scale, const int *dead, int n)
{
    const int channels = last_dim(vshape(f, x));
    float *alpha = malloc((size_t)channels * sizeof *alpha);
    if (!alpha)
        return -1;
    const float *src = vdata(f, c);
    for (int i = 0; i < channels; i++)
        alpha[i] = scale * src[i];
    int a = add_extra(f, vname(f, f->nodes[root].output), "/alpha", nn_shape1(channels), alpha);
    if (a == NN_NONE)
        return -1;
    for (int i = 0; i < n; i++)
        kill_node(f, dead[i]);
    replace_node(f, root, make_node(NN_OP_PRELU, x, a, NN_NONE, 2));
    f->stats.prelu++;
    return 1;
}

/* The MUL node producing `id` as (channel constant) * (data): returns the
 * node and sets *c and *data, or NN_NONE. */
static int channel_mul(const fuser *f, int id, int *c, int *data)
{
    int m = produced_by(f, id, NN_OP_MUL);
    if (m == NN_NONE || !plain_same_shape(f, &f->nodes[m], id))
        return NN_NONE;
    const nn_node *n = &f->nodes[m];
    int channels = last_dim(vshape(f, id));
    for (int k = 0; k < 2; k++) {
        if (is_channel_const(f, n->inputs[k], channels) && !vdata(f, n->inputs[1 - k])) {
            *c = n->inputs[k];
            *data = n->inputs[1 - k];
            return m;
        }
    }
    return NN_NONE;
}

/* relu(x) + c * (x - |x|), in either operand order: slope 2c. */
static int match_prelu_abs(fuser *f, int root)
{
    const nn_node *add = &f->nodes[root];
    if (add->op != NN_OP_ADD || !plain_same_shape(f, add, add->inputs[0]))
        return 0;
    for (int k = 0; k < 2; k++) {
        int p = add->inputs[k], m = add->inputs[1 - k], c, d;
        int relu = produced_by(f, p, NN_OP_RELU);
        int mul = channel_mul(f, m, &c, &d);
        if (relu == NN_NONE || mul == NN_NONE)
            continue;
        int x = f->nodes[relu].inputs[0];
        int sub = produced_by(f, d, NN_OP_SUB);
        if (sub == NN_NONE || !plain_same_shape(f, &f->nodes[sub], x) ||
            f->nodes[sub].inputs[0] != x)
            continue;
        int abs = produced_by(f, f->nodes[sub].inputs[1], NN_OP_ABS);
        if (abs == NN_NONE || f->nodes[abs].inputs[0] != x)
            continue;
        if (!is_private(f, p, 1) || !is_private(f, m, 1) || !is_private(f, d, 1) ||
            !is_private(f, f->nodes[abs].output, 1) ||
            !nn_shape_equal(vshape(f, x), vshape(f, add->output)))
            continue;
        const int dead[] = {relu, abs, sub, mul};
        return emit_prelu(f, root, x, c, 2.0f, dead, 4);
    }
    return 0;
}

/* relu(x) + alpha * -relu(-x) (ADD) or relu(x) - alpha * relu(-x) (SUB). */
static int match_prelu_neg(fuser *f, int root)
{
    const nn_node *top = &f->nodes[root];
    const int is_add = top->op == NN_OP_ADD;
    if ((!is_add && top->op != NN_OP_SUB) || !plain_same_shape(f, top, top->inputs[0]))
        return 0;
    for (int k = 0; k < (is_add ? 2 : 1); k++) {
        int p = top->inputs[k], m = top->inputs[1 - k], c, d;
        int relu = produced_by(f, p, NN_OP_RELU);
        int mul = channel_mul(f, m, &c, &d);
        if (relu == NN_NONE || mul == NN_NONE)
            continue;
        int x = f->nodes[relu].inputs[0];
        int outer_neg = NN_NONE;
        if (is_add) { /* d = -relu(-x) */
            outer_neg = produced_by(f, d, NN_OP_NEG);
            if (outer_neg == NN_NONE || !is_private(f, d, 1))
                continue;
            d = f->nodes[outer_neg].inputs[0];
        }
        int relu2 = produced_by(f, d, NN_OP_RELU);
        if (relu2 == NN_NONE)
            continue;
        int neg = produced_by(f, f->nodes[relu2].inputs[0], NN_OP_NEG);
        if (neg == NN_NONE || f->nodes[neg].inputs[0] != x)
            continue;
        if (!is_private(f, p, 1) || !is_private(f, m, 1) || !is_private(f, d, 1) ||
            !is_private(f, f->nodes[neg].output, 1) ||
            !nn_shape_equal(vshape(f, x), vshape(f, top->output)))
            continue;
        int dead[5] = {relu, mul, relu2, neg, NN_NONE};
        int n_dead = 4;
        if (outer_neg != NN_NONE)
            dead[n_dead++] = outer_neg;
        return emit_prelu(f, root, x, c, 1.0f, dead, n_dead);
    }
    return 0;
}

/* ---- softmax ------------------------------------------------------------- */

static int reduces_last_dim(const fuser *f, int node, int x)
{
    const nn_node *n = &f->nodes[node];
    const int rank = vshape(f, x)->rank;
    return rank >= 1 && n->inputs[0] == x && n->attrs.reduce.keep_dims &&
           n->attrs.reduce.axes_mask == 1u << (rank - 1);
}

/* exp(x - max(x)) / sum(exp(x - max(x))) over the last dim. */
static int match_softmax(fuser *f, int root)
{
    const nn_node *div = &f->nodes[root];
    if (div->op != NN_OP_DIV || div->attrs.act != NN_ACT_NONE)
        return 0;
    int e = div->inputs[0], s = div->inputs[1];
    int exp = produced_by(f, e, NN_OP_EXP);
    int sum = produced_by(f, s, NN_OP_REDUCE_SUM);
    if (exp == NN_NONE || sum == NN_NONE || !reduces_last_dim(f, sum, e))
        return 0;
    int d = f->nodes[exp].inputs[0];
    int sub = produced_by(f, d, NN_OP_SUB);
    if (sub == NN_NONE || f->nodes[sub].attrs.act != NN_ACT_NONE)
        return 0;
    int x = f->nodes[sub].inputs[0], m = f->nodes[sub].inputs[1];
    int max = produced_by(f, m, NN_OP_REDUCE_MAX);
    if (max == NN_NONE || !reduces_last_dim(f, max, x))
        return 0;
    if (!is_private(f, e, 2) || !is_private(f, s, 1) || !is_private(f, d, 1) ||
        !is_private(f, m, 1) || !nn_shape_equal(vshape(f, x), vshape(f, div->output)) ||
        !nn_shape_equal(vshape(f, x), vshape(f, d)))
        return 0;
    const int dead[] = {max, sub, exp, sum};
    for (int i = 0; i < 4; i++)
        kill_node(f, dead[i]);
    replace_node(f, root, make_node(NN_OP_SOFTMAX, x, NN_NONE, NN_NONE, 1));
    f->stats.softmax++;
    return 1;
}

/* ---- AFFINE into a conv -------------------------------------------------- */

/* conv(x, w, b) * scale + shift = conv(x, w * scale, b * scale + shift),
 * scale and shift per output channel. */
static int match_affine(fuser *f, int root)
{
    const nn_node *aff = &f->nodes[root];
    if (aff->op != NN_OP_AFFINE)
        return 0;
    int y = aff->inputs[0];
    int conv = produced_by(f, y, NN_OP_CONV2D);
    if (conv == NN_NONE)
        conv = produced_by(f, y, NN_OP_DEPTHWISE_CONV2D);
    if (conv == NN_NONE || f->nodes[conv].attrs.conv.act != NN_ACT_NONE || !is_private(f, y, 1))
        return 0;
    const nn_node *cn = &f->nodes[conv];
    const int depthwise = cn->op == NN_OP_DEPTHWISE_CONV2D;
    const nn_shape *ws = vshape(f, cn->inputs[1]);
    const int out_c = depthwise ? last_dim(ws) : ws->dims[0];
    const float *scale = vdata(f, aff->inputs[1]), *shift = vdata(f, aff->inputs[2]);
    const float *w = vdata(f, cn->inputs[1]);
    const int bias_id = cn->n_inputs > 2 ? cn->inputs[2] : NN_NONE;
    const float *b = bias_id != NN_NONE ? vdata(f, bias_id) : NULL;
    if (ws->rank != 4 || !w || !scale || !shift ||
        nn_shape_count(vshape(f, aff->inputs[1])) != (size_t)out_c ||
        nn_shape_count(vshape(f, aff->inputs[2])) != (size_t)out_c ||
        (bias_id != NN_NONE && (!b || nn_shape_count(vshape(f, bias_id)) != (size_t)out_c)))
        return 0;

    const size_t count = nn_shape_count(ws);
    float *nw = malloc(count * sizeof *nw);
    float *nb = malloc((size_t)out_c * sizeof *nb);
    if (!nw || !nb) {
        free(nw);
        free(nb);
        return -1;
    }
    if (depthwise) { /* [1, KH, KW, C]: channel is the fastest index */
        for (size_t i = 0; i < count; i++)
            nw[i] = w[i] * scale[i % (size_t)out_c];
    } else { /* [O, KH, KW, I]: channel is the slowest index */
        const size_t per_out = count / (size_t)out_c;
        for (size_t i = 0; i < count; i++)
            nw[i] = w[i] * scale[i / per_out];
    }
    for (int o = 0; o < out_c; o++)
        nb[o] = (b ? b[o] : 0.0f) * scale[o] + shift[o];
    const char *base = vname(f, aff->output);
    int wid = add_extra(f, base, "/folded_weights", *ws, nw);
    int bid = wid == NN_NONE ? NN_NONE : add_extra(f, base, "/folded_bias", nn_shape1(out_c), nb);
    if (wid == NN_NONE || bid == NN_NONE) {
        if (wid == NN_NONE)
            free(nb);
        return -1;
    }
    nn_node n = make_node(cn->op, cn->inputs[0], wid, bid, 3);
    n.attrs = cn->attrs;
    kill_node(f, conv);
    replace_node(f, root, n);
    f->stats.affine++;
    return 1;
}

/* ---- RELU into its producer ----------------------------------------------- */

static nn_activation *act_field(nn_node *n)
{
    switch (n->op) {
    case NN_OP_CONV2D:
    case NN_OP_DEPTHWISE_CONV2D: return &n->attrs.conv.act;
    case NN_OP_MAX_POOL2D:
    case NN_OP_AVG_POOL2D: return &n->attrs.pool.act;
    case NN_OP_FULLY_CONNECTED:
    case NN_OP_ADD:
    case NN_OP_SUB:
    case NN_OP_MUL:
    case NN_OP_DIV: return &n->attrs.act;
    default: return NULL;
    }
}

static int match_relu(fuser *f, int root)
{
    const nn_node *relu = &f->nodes[root];
    if (relu->op != NN_OP_RELU)
        return 0;
    int y = relu->inputs[0];
    int p = y >= 0 && y < f->g->n_values ? f->producer[y] : NN_NONE;
    if (p == NN_NONE || f->dead[p] || !is_private(f, y, 1))
        return 0;
    nn_node n = f->nodes[p];
    nn_activation *act = act_field(&n);
    if (!act || *act != NN_ACT_NONE)
        return 0;
    *act = NN_ACT_RELU;
    kill_node(f, p);
    replace_node(f, root, n);
    f->stats.activation++;
    return 1;
}

/* ---- the pass -------------------------------------------------------------- */

static int map_input(fuser *f, nn_graph *out, int *map, int id, facenet_error *err)
{
    if (id == NN_NONE || map[id] != NN_NONE)
        return id == NN_NONE ? NN_NONE : map[id];
    /* Only constants are mapped lazily; values and the input already are. */
    if (id < f->g->n_values) {
        map[id] = nn_graph_add_const_copy(out, vname(f, id), *vshape(f, id), vdata(f, id), err);
    } else {
        extra_const *e = &f->extra[id - f->g->n_values];
        map[id] = nn_graph_add_const(out, e->name, e->shape, e->data, err);
        e->data = NULL; /* the graph owns it now, also on failure */
    }
    return map[id];
}

static facenet_status emit_graph(fuser *f, nn_graph **out, facenet_error *err)
{
    const nn_graph *g = f->g;
    nn_graph *ng = nn_graph_new();
    int *map = malloc((size_t)f->n_ids * sizeof *map);
    facenet_status st = FACENET_OK;

    if (!ng || !map) {
        nn_graph_free(ng);
        free(map);
        return fn_fail(err, FACENET_ERR_NO_MEMORY, "out of memory fusing the graph");
    }
    for (int i = 0; i < f->n_ids; i++)
        map[i] = NN_NONE;
    map[g->input] = nn_graph_add_input(ng, vname(f, g->input), *vshape(f, g->input), err);
    if (map[g->input] == NN_NONE)
        st = err ? err->code : FACENET_ERR_NO_MEMORY;
    for (int i = 0; st == FACENET_OK && i < g->n_nodes; i++) {
        const nn_node *n = &f->nodes[i];
        int in[NN_MAX_INPUTS] = {NN_NONE, NN_NONE, NN_NONE};
        if (f->dead[i])
            continue;
        for (int k = 0; k < n->n_inputs && st == FACENET_OK; k++) {
            if (n->inputs[k] == NN_NONE)
                continue;
            in[k] = map_input(f, ng, map, n->inputs[k], err);
            if (in[k] == NN_NONE)
                st = err ? err->code : FACENET_ERR_INTERNAL;
        }
        if (st != FACENET_OK)
            break;
        map[n->output] = nn_graph_add_node(ng, n->op, in, n->n_inputs, &n->attrs,
                                           vname(f, n->output), err);
        if (map[n->output] == NN_NONE)
            st = err ? err->code : FACENET_ERR_NO_MEMORY;
        else
            f->stats.nodes_after++;
    }
    if (st == FACENET_OK) {
        int outs[NN_MAX_OUTPUTS];
        for (int k = 0; k < g->n_outputs; k++)
            outs[k] = map[g->outputs[k]];
        st = nn_graph_set_outputs(ng, outs, g->n_outputs, err);
    }
    if (st == FACENET_OK)
        st = nn_graph_finalize(ng, err);
    free(map);
    if (st != FACENET_OK) {
        nn_graph_free(ng);
        return st;
    }
    *out = ng;
    return FACENET_OK;
}

static void fuser_free(fuser *f)
{
    for (int i = 0; i < f->n_extra; i++)
        free(f->extra[i].data);
    free(f->extra);
    free(f->nodes);
    free(f->dead);
    free(f->readers);
    free(f->producer);
}

facenet_status nn_fuse(const nn_graph *in, nn_graph **out, nn_fuse_stats *stats,
                       facenet_error *err)
{
    fuser f;
    facenet_status st;

    if (!out)
        return fn_fail(err, FACENET_ERR_INVALID_ARGUMENT, "out is NULL");
    *out = NULL;
    if (!in || !in->finalized)
        return fn_fail(err, FACENET_ERR_INVALID_ARGUMENT, "fusion needs a finalized graph");
    memset(&f, 0, sizeof f);
    f.g = in;
    f.n_ids = in->n_values;
    f.nodes = malloc((size_t)(in->n_nodes ? in->n_nodes : 1) * sizeof *f.nodes);
    f.dead = calloc((size_t)(in->n_nodes ? in->n_nodes : 1), 1);
    f.readers = calloc((size_t)in->n_values, sizeof *f.readers);
    f.producer = malloc((size_t)in->n_values * sizeof *f.producer);
    if (!f.nodes || !f.dead || !f.readers || !f.producer) {
        fuser_free(&f);
        return fn_fail(err, FACENET_ERR_NO_MEMORY, "out of memory fusing the graph");
    }
    memcpy(f.nodes, in->nodes, (size_t)in->n_nodes * sizeof *f.nodes);
    for (int i = 0; i < in->n_values; i++)
        f.producer[i] = in->values[i].producer;
    /* f.nodes is freed by fuser_free on every path below; clang 14's
     * analyzer loses track of it inside count_inputs. */
    for (int i = 0; i < in->n_nodes; i++) /* NOLINT(clang-analyzer-unix.Malloc) */
        count_inputs(&f, &f.nodes[i], +1);
    for (int k = 0; k < in->n_outputs; k++)
        f.readers[in->outputs[k]]++;
    f.stats.nodes_before = in->n_nodes;

    /* One forward sweep suffices: a rewrite only creates a node at its
     * root's position, which later roots (a RELU after a folded AFFINE)
     * then see. */
    int failed = 0;
    for (int i = 0; i < in->n_nodes && !failed; i++) {
        int r = 0;
        if (f.dead[i])
            continue;
        if (!r) r = match_prelu_abs(&f, i);
        if (!r) r = match_prelu_neg(&f, i);
        if (!r) r = match_softmax(&f, i);
        if (!r) r = match_affine(&f, i);
        if (!r) r = match_relu(&f, i);
        failed = r < 0;
    }
    if (failed) {
        fuser_free(&f);
        return fn_fail(err, FACENET_ERR_NO_MEMORY, "out of memory fusing the graph");
    }
    st = emit_graph(&f, out, err);
    if (st == FACENET_OK && stats)
        *stats = f.stats;
    fuser_free(&f);
    return st;
}
