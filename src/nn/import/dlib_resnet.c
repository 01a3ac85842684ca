/*
 * dlib_resnet.c - dlib's face recognition ResNet as one layer list, and the
 * interpreter that turns that list into an nn_graph.
 *
 * In dlib's C++ the network is a type:
 *
 *   ares<N>      = relu<add_prev1<block<N, 1, tag1<SUBNET>>>>
 *   ares_down<N> = relu<add_prev2<avg_pool<2,2,2,2, skip1<tag2<
 *                      block<N, 2, tag1<SUBNET>>>>>>>
 *   block<N, s>  = affine<con<N,3,3,1,1, relu<affine<con<N,3,3,s,s, ...>>>>>
 *   net = fc_no_bias<128, avg_pool_everything<
 *           ares_down<256>            (conv256_down_out)
 *           ares<256> x2, ares_down<256>
 *           ares<128> x2, ares_down<128>
 *           ares<64> x3,  ares_down<64>
 *           ares<32> x3
 *           max_pool<3,3,2,2, relu<affine<con<32,7,7,2,2, input>>>>>>
 *
 * dlib's con_ pads by kernel/2 when the stride is 1 and not at all
 * otherwise, and its pools here never pad. add_prev adds two tensors of
 * possibly different sizes into one of the larger size, reading the smaller
 * one as zero outside its extent (NN_OP_ADD_ZEXT).
 */
#include "nn/import/dlib_resnet.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/error.h"

int dlib_layer_has_params(dlib_layer_kind kind)
{
    return kind == DLIB_L_CON || kind == DLIB_L_AFFINE || kind == DLIB_L_FC;
}

int dlib_layer_is_marker(dlib_layer_kind kind)
{
    return kind == DLIB_L_TAG1 || kind == DLIB_L_TAG2 || kind == DLIB_L_SKIP1;
}

const char *dlib_layer_kind_name(dlib_layer_kind kind)
{
    switch (kind) {
    case DLIB_L_CON: return "con_";
    case DLIB_L_AFFINE: return "affine_";
    case DLIB_L_RELU: return "relu_";
    case DLIB_L_MAX_POOL: return "max_pool_";
    case DLIB_L_AVG_POOL: return "avg_pool_";
    case DLIB_L_AVG_POOL_ALL: return "avg_pool_everything";
    case DLIB_L_FC: return "fc_";
    case DLIB_L_TAG1: return "tag1";
    case DLIB_L_TAG2: return "tag2";
    case DLIB_L_SKIP1: return "skip1";
    case DLIB_L_ADD_PREV1: return "add_prev1";
    case DLIB_L_ADD_PREV2: return "add_prev2";
    }
    return "unknown";
}

/* ---- the layer list ----------------------------------------------------- */

typedef struct layer_list {
    dlib_layer *items;
    int n;
} layer_list;

static dlib_layer *push(layer_list *list, dlib_layer_kind kind, const char *name)
{
    dlib_layer *l = &list->items[list->n++];
    memset(l, 0, sizeof *l);
    l->kind = kind;
    (void)snprintf(l->name, sizeof l->name, "%s", name ? name : "");
    return l;
}

/* con + affine, the unit every block is made of. */
static void push_conv_affine(layer_list *list, const char *name, int out_c,
                             int in_c, int kernel, int stride)
{
    dlib_layer *c = push(list, DLIB_L_CON, name);
    c->out_c = out_c;
    c->in_c = in_c;
    c->kernel = kernel;
    c->stride = stride;
    c->pad = stride == 1 ? kernel / 2 : 0; /* dlib con_'s default */
    push(list, DLIB_L_AFFINE, name)->out_c = out_c;
}

static void push_block_convs(layer_list *list, const char *block, int n,
                             int in_c, int stride)
{
    char name[DLIB_RESNET_NAME_MAX];
    (void)snprintf(name, sizeof name, "%s/conv1", block);
    push_conv_affine(list, name, n, in_c, 3, stride);
    push(list, DLIB_L_RELU, NULL);
    (void)snprintf(name, sizeof name, "%s/conv2", block);
    push_conv_affine(list, name, n, n, 3, 1);
}

static void push_residual(layer_list *list, const char *block, int n)
{
    push(list, DLIB_L_TAG1, NULL);
    push_block_convs(list, block, n, n, 1);
    push(list, DLIB_L_ADD_PREV1, NULL);
    push(list, DLIB_L_RELU, NULL);
}

static void push_residual_down(layer_list *list, const char *block, int n,
                               int in_c)
{
    push(list, DLIB_L_TAG1, NULL);
    push_block_convs(list, block, n, in_c, 2);
    push(list, DLIB_L_TAG2, NULL);
    push(list, DLIB_L_SKIP1, NULL);
    dlib_layer *pool = push(list, DLIB_L_AVG_POOL, NULL);
    pool->kernel = 2;
    pool->stride = 2;
    push(list, DLIB_L_ADD_PREV2, NULL);
    push(list, DLIB_L_RELU, NULL);
}

int dlib_resnet_layers(dlib_layer *layers)
{
    /* Levels from the input up: width, residual blocks, and whether a
     * down block comes first. */
    static const struct {
        int n, blocks, down;
    } levels[] = {{32, 3, 0}, {64, 3, 1}, {128, 2, 1}, {256, 2, 1}};
    layer_list list = {layers, 0};
    char block[DLIB_RESNET_NAME_MAX];
    int in_c = 32;

    push_conv_affine(&list, "conv32_down", 32, 3, 7, 2);
    push(&list, DLIB_L_RELU, NULL);
    dlib_layer *pool = push(&list, DLIB_L_MAX_POOL, NULL);
    pool->kernel = 3;
    pool->stride = 2;
    for (size_t i = 0; i < sizeof levels / sizeof levels[0]; i++) {
        int n = levels[i].n;
        if (levels[i].down) {
            (void)snprintf(block, sizeof block, "conv%d_down", n);
            push_residual_down(&list, block, n, in_c);
        }
        for (int b = 1; b <= levels[i].blocks; b++) {
            (void)snprintf(block, sizeof block, "conv%d_%d", n, b);
            push_residual(&list, block, n);
        }
        in_c = n;
    }
    push_residual_down(&list, "conv256_down_out", 256, 256);
    push(&list, DLIB_L_AVG_POOL_ALL, NULL);
    dlib_layer *fc = push(&list, DLIB_L_FC, "fc");
    fc->out_c = DLIB_RESNET_EMBEDDING_DIM;
    fc->in_c = DLIB_RESNET_FC_INPUTS;
    return list.n;
}

/* ---- graph building ------------------------------------------------------ */

typedef struct builder {
    nn_graph *g;
    dlib_fill_fn fill;
    void *ctx;
    int current;     /* value id flowing upwards */
    int tags[2];     /* value ids at tag1, tag2 */
    char block[DLIB_RESNET_NAME_MAX]; /* block of the last parameter layer */
    int serial;      /* numbers the unnamed nodes of a block */
} builder;

/* A name for a node without parameters: "<block>/<what><serial>". */
static const char *node_name(builder *b, const char *what, char *buf,
                             size_t size)
{
    (void)snprintf(buf, size, "%s/%s%d", b->block[0] ? b->block : "input", what,
             ++b->serial);
    return buf;
}

static void enter_block(builder *b, const char *layer_name)
{
    char block[DLIB_RESNET_NAME_MAX];
    const char *slash = strchr(layer_name, '/');
    size_t len = slash ? (size_t)(slash - layer_name) : strlen(layer_name);
    if (len >= sizeof block)
        len = sizeof block - 1;
    memcpy(block, layer_name, len);
    block[len] = '\0';
    if (strcmp(block, b->block) != 0) {
        memcpy(b->block, block, len + 1);
        b->serial = 0;
    }
}

static float *alloc_floats(size_t count, const char *what, facenet_error *err)
{
    float *p = calloc(count, sizeof *p);
    if (!p)
        fn_fail(err, FACENET_ERR_NO_MEMORY, "out of memory for %s (%zu floats)",
                what, count);
    return p;
}

/* Ask the source for a pair of tensors and add them as constants. */
static facenet_status add_param_pair(builder *b, int index, const dlib_layer *l,
                                     nn_shape shape_a, const char *name_a,
                                     nn_shape shape_b, const char *name_b,
                                     int *id_a, int *id_b, facenet_error *err)
{
    float *a = alloc_floats(nn_shape_count(&shape_a), name_a, err);
    float *pb = NULL;
    facenet_status st;

    if (!a)
        return FACENET_ERR_NO_MEMORY;
    if (name_b) {
        pb = alloc_floats(nn_shape_count(&shape_b), name_b, err);
        if (!pb) {
            free(a);
            return FACENET_ERR_NO_MEMORY;
        }
    }
    st = b->fill(b->ctx, index, l, a, pb, err);
    if (st != FACENET_OK) {
        free(a);
        free(pb);
        return st;
    }
    *id_a = nn_graph_add_const(b->g, name_a, shape_a, a, err);
    if (*id_a == NN_NONE) {
        free(pb);
        return err->code;
    }
    if (name_b) {
        *id_b = nn_graph_add_const(b->g, name_b, shape_b, pb, err);
        if (*id_b == NN_NONE)
            return err->code;
    }
    return FACENET_OK;
}

#define ADD_OR_FAIL(id_expr)                                   \
    do {                                                       \
        int id_ = (id_expr);                                   \
        if (id_ == NN_NONE)                                    \
            return err->code;    \
        b->current = id_;                                      \
    } while (0)

static facenet_status build_con(builder *b, int index, const dlib_layer *l,
                                facenet_error *err)
{
    char wname[DLIB_RESNET_NAME_MAX + 16], bname[DLIB_RESNET_NAME_MAX + 16];
    char oname[DLIB_RESNET_NAME_MAX + 16];
    nn_attrs attrs;
    int w, bias;

    (void)snprintf(wname, sizeof wname, "%s/conv/filters", l->name);
    (void)snprintf(bname, sizeof bname, "%s/conv/bias", l->name);
    (void)snprintf(oname, sizeof oname, "%s/conv", l->name);
    facenet_status st = add_param_pair(
        b, index, l, nn_shape4(l->out_c, l->kernel, l->kernel, l->in_c), wname,
        nn_shape1(l->out_c), bname, &w, &bias, err);
    if (st != FACENET_OK)
        return st;
    memset(&attrs, 0, sizeof attrs);
    attrs.conv.stride_h = attrs.conv.stride_w = l->stride;
    if (l->pad > 0) {
        attrs.conv.padding = NN_PAD_EXPLICIT;
        attrs.conv.pad_top = attrs.conv.pad_left = l->pad;
        attrs.conv.pad_bottom = attrs.conv.pad_right = l->pad;
    } else {
        attrs.conv.padding = NN_PAD_VALID;
    }
    int inputs[3] = {b->current, w, bias};
    ADD_OR_FAIL(nn_graph_add_node(b->g, NN_OP_CONV2D, inputs, 3, &attrs, oname, err));
    return FACENET_OK;
}

static facenet_status build_affine(builder *b, int index, const dlib_layer *l,
                                   facenet_error *err)
{
    char sname[DLIB_RESNET_NAME_MAX + 16], tname[DLIB_RESNET_NAME_MAX + 16];
    char oname[DLIB_RESNET_NAME_MAX + 16];
    int scale, shift;

    (void)snprintf(sname, sizeof sname, "%s/scale/weights", l->name);
    (void)snprintf(tname, sizeof tname, "%s/scale/biases", l->name);
    (void)snprintf(oname, sizeof oname, "%s/scale", l->name);
    facenet_status st = add_param_pair(b, index, l, nn_shape1(l->out_c), sname,
                                       nn_shape1(l->out_c), tname, &scale, &shift,
                                       err);
    if (st != FACENET_OK)
        return st;
    int inputs[3] = {b->current, scale, shift};
    ADD_OR_FAIL(nn_graph_add_node(b->g, NN_OP_AFFINE, inputs, 3, NULL, oname, err));
    return FACENET_OK;
}

static facenet_status build_fc(builder *b, int index, const dlib_layer *l,
                               facenet_error *err)
{
    int w, unused = NN_NONE;
    facenet_status st = add_param_pair(b, index, l, nn_shape2(l->out_c, l->in_c),
                                       "fc/weights", nn_shape1(1), NULL, &w,
                                       &unused, err);
    if (st != FACENET_OK)
        return st;
    int inputs[2] = {b->current, w};
    nn_attrs attrs;
    memset(&attrs, 0, sizeof attrs);
    attrs.act = NN_ACT_NONE;
    ADD_OR_FAIL(nn_graph_add_node(b->g, NN_OP_FULLY_CONNECTED, inputs, 2, &attrs,
                                  "embedding", err));
    return FACENET_OK;
}

static facenet_status build_pool(builder *b, nn_op op, int kernel, int stride,
                                 facenet_error *err)
{
    char name[DLIB_RESNET_NAME_MAX + 16];
    nn_attrs attrs;
    memset(&attrs, 0, sizeof attrs);
    attrs.pool.kernel_h = attrs.pool.kernel_w = kernel;
    attrs.pool.stride_h = attrs.pool.stride_w = stride;
    attrs.pool.padding = NN_PAD_VALID;
    node_name(b, op == NN_OP_MAX_POOL2D ? "max_pool" : "avg_pool", name, sizeof name);
    ADD_OR_FAIL(nn_graph_add_node(b->g, op, &b->current, 1, &attrs, name, err));
    return FACENET_OK;
}

static facenet_status build_layer(builder *b, int index, const dlib_layer *l,
                                  facenet_error *err)
{
    char name[DLIB_RESNET_NAME_MAX + 16];
    nn_attrs attrs;

    if (dlib_layer_has_params(l->kind))
        enter_block(b, l->name);
    switch (l->kind) {
    case DLIB_L_CON:
        return build_con(b, index, l, err);
    case DLIB_L_AFFINE:
        return build_affine(b, index, l, err);
    case DLIB_L_FC:
        return build_fc(b, index, l, err);
    case DLIB_L_RELU:
        node_name(b, "relu", name, sizeof name);
        ADD_OR_FAIL(nn_graph_add_node(b->g, NN_OP_RELU, &b->current, 1, NULL, name, err));
        return FACENET_OK;
    case DLIB_L_MAX_POOL:
        return build_pool(b, NN_OP_MAX_POOL2D, l->kernel, l->stride, err);
    case DLIB_L_AVG_POOL:
        return build_pool(b, NN_OP_AVG_POOL2D, l->kernel, l->stride, err);
    case DLIB_L_AVG_POOL_ALL:
        memset(&attrs, 0, sizeof attrs);
        attrs.reduce.axes_mask = (1u << 1) | (1u << 2); /* H and W */
        attrs.reduce.keep_dims = 0;
        ADD_OR_FAIL(nn_graph_add_node(b->g, NN_OP_REDUCE_MEAN, &b->current, 1, &attrs,
                                      "spatial_mean", err));
        return FACENET_OK;
    case DLIB_L_TAG1:
    case DLIB_L_TAG2:
        b->tags[l->kind == DLIB_L_TAG2] = b->current;
        return FACENET_OK;
    case DLIB_L_SKIP1:
        b->current = b->tags[0];
        return FACENET_OK;
    case DLIB_L_ADD_PREV1:
    case DLIB_L_ADD_PREV2: {
        int inputs[2] = {b->current, b->tags[l->kind == DLIB_L_ADD_PREV2]};
        if (inputs[1] == NN_NONE)
            return fn_fail(err, FACENET_ERR_INTERNAL, "dlib layer %d: add_prev before its tag",
                           index);
        node_name(b, "add", name, sizeof name);
        ADD_OR_FAIL(nn_graph_add_node(b->g, NN_OP_ADD_ZEXT, inputs, 2, NULL, name, err));
        return FACENET_OK;
    }
    }
    return fn_fail(err, FACENET_ERR_INTERNAL, "dlib layer %d: unknown kind %d", index,
                   (int)l->kind);
}

/* The spatial sizes the README and dlib agree on, checked after shape
 * inference at: the stem conv, the max pool, and each down block's sum. */
static facenet_status check_sizes(const nn_graph *g, facenet_error *err)
{
    static const int expected[] = {72, 35, 17, 8, 4, 2};
    size_t next = 0;
    for (int i = 0; i < g->n_nodes; i++) {
        const nn_node *n = &g->nodes[i];
        const nn_value *y = &g->values[n->output];
        int checkpoint = (n->op == NN_OP_CONV2D && i == 0) || n->op == NN_OP_MAX_POOL2D ||
                         (n->op == NN_OP_ADD_ZEXT &&
                          g->values[n->inputs[0]].producer != NN_NONE &&
                          g->nodes[g->values[n->inputs[0]].producer].op == NN_OP_AVG_POOL2D);
        if (!checkpoint)
            continue;
        if (next >= sizeof expected / sizeof expected[0] || y->shape.rank != 4 ||
            y->shape.dims[1] != expected[next] || y->shape.dims[2] != expected[next])
            return fn_fail(err, FACENET_ERR_INTERNAL,
                           "dlib ResNet: '%s' has the wrong spatial size (checkpoint %zu)",
                           y->name, next);
        next++;
    }
    if (next != sizeof expected / sizeof expected[0])
        return fn_fail(err, FACENET_ERR_INTERNAL, "dlib ResNet: %zu of 6 size checkpoints seen",
                       next);
    return FACENET_OK;
}

facenet_status dlib_resnet_build(dlib_fill_fn fill, void *ctx, nn_graph **out,
                                 facenet_error *err)
{
    dlib_layer layers[DLIB_RESNET_MAX_LAYERS];
    int n_layers = dlib_resnet_layers(layers);
    builder b;
    facenet_status st = FACENET_OK;
    facenet_error local;

    /* Builder calls report through err; keep their codes even if the
     * caller passed none. */
    if (!err)
        err = &local;
    *out = NULL;
    memset(&b, 0, sizeof b);
    b.fill = fill;
    b.ctx = ctx;
    b.tags[0] = b.tags[1] = NN_NONE;
    b.g = nn_graph_new();
    if (!b.g)
        return fn_fail(err, FACENET_ERR_NO_MEMORY, "out of memory creating a graph");
    b.current = nn_graph_add_input(
        b.g, "input",
        nn_shape4(1, DLIB_RESNET_INPUT_SIZE, DLIB_RESNET_INPUT_SIZE, 3), err);
    if (b.current == NN_NONE)
        st = err->code;
    for (int i = 0; i < n_layers && st == FACENET_OK; i++)
        st = build_layer(&b, i, &layers[i], err);
    if (st == FACENET_OK)
        st = nn_graph_set_outputs(b.g, &b.current, 1, err);
    if (st == FACENET_OK)
        st = nn_graph_finalize(b.g, err);
    if (st == FACENET_OK)
        st = check_sizes(b.g, err);
    if (st != FACENET_OK) {
        nn_graph_free(b.g);
        return st;
    }
    *out = b.g;
    return FACENET_OK;
}
