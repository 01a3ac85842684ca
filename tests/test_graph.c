/* Graph builder, validation, shape inference, memory planning and execution
 * on small hand-built graphs with hand-computed answers. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "nn/exec.h"
#include "nn/graph.h"

static float *floats(size_t n, float start, float step)
{
    float *p = malloc(n * sizeof *p);
    for (size_t i = 0; i < n; i++)
        p[i] = start + step * (float)i;
    return p;
}

static nn_attrs conv_attrs(int stride, nn_padding pad)
{
    nn_attrs a;
    memset(&a, 0, sizeof a);
    a.conv.stride_h = a.conv.stride_w = stride;
    a.conv.padding = pad;
    return a;
}

static void test_same_padding_shapes(void **state)
{
    facenet_error err;
    nn_graph *g = nn_graph_new();
    (void)state;
    int x = nn_graph_add_input(g, "x", nn_shape4(1, 112, 112, 3), &err);
    int w = nn_graph_add_const(g, "w", nn_shape4(8, 3, 3, 3), floats(8 * 27, 0, 0.01f), &err);
    nn_attrs a = conv_attrs(2, NN_PAD_SAME);
    int in[3] = {x, w, NN_NONE};
    int y = nn_graph_add_node(g, NN_OP_CONV2D, in, 3, &a, "y", &err);
    assert_true(y >= 0);
    assert_int_equal(nn_graph_set_outputs(g, &y, 1, &err), FACENET_OK);
    assert_int_equal(nn_graph_finalize(g, &err), FACENET_OK);
    assert_int_equal(g->values[y].shape.dims[1], 56);
    assert_int_equal(g->values[y].shape.dims[2], 56);
    assert_int_equal(g->values[y].shape.dims[3], 8);

    /* TF SAME on an even size with stride 2: all padding at the end. */
    int before, after, out;
    nn_resolve_padding(NN_PAD_SAME, 112, 3, 2, 0, 0, &before, &after, &out);
    assert_int_equal(before, 0);
    assert_int_equal(after, 1);
    assert_int_equal(out, 56);
    nn_resolve_padding(NN_PAD_SAME, 7, 3, 1, 0, 0, &before, &after, &out);
    assert_int_equal(before, 1);
    assert_int_equal(after, 1);
    nn_resolve_padding(NN_PAD_VALID, 150, 7, 2, 0, 0, &before, &after, &out);
    assert_int_equal(out, 72);

    /* Another input size re-infers; a wrong channel count is refused. */
    nn_shape *shapes = malloc((size_t)g->n_values * sizeof *shapes);
    nn_shape other = nn_shape4(2, 30, 41, 3);
    assert_int_equal(nn_infer_shapes(g, &other, shapes, &err), FACENET_OK);
    assert_int_equal(shapes[y].dims[0], 2);
    assert_int_equal(shapes[y].dims[1], 15);
    assert_int_equal(shapes[y].dims[2], 21);
    assert_int_equal(nn_graph_macs(g, shapes), 2LL * 15 * 21 * 8 * 27);
    other = nn_shape4(1, 30, 40, 4);
    assert_int_equal(nn_infer_shapes(g, &other, shapes, &err), FACENET_ERR_SHAPE);
    free(shapes);
    nn_graph_free(g);
}

static void test_validation_errors(void **state)
{
    facenet_error err;
    (void)state;

    /* Conv weights with the wrong input-channel count. */
    nn_graph *g = nn_graph_new();
    int x = nn_graph_add_input(g, "x", nn_shape4(1, 8, 8, 3), &err);
    int w = nn_graph_add_const(g, "w", nn_shape4(4, 3, 3, 5), floats(4 * 45, 0, 1), &err);
    nn_attrs a = conv_attrs(1, NN_PAD_VALID);
    int in[3] = {x, w, NN_NONE};
    int y = nn_graph_add_node(g, NN_OP_CONV2D, in, 3, &a, "bad_conv", &err);
    nn_graph_set_outputs(g, &y, 1, &err);
    assert_int_equal(nn_graph_finalize(g, &err), FACENET_ERR_SHAPE);
    assert_non_null(strstr(err.message, "bad_conv"));
    nn_graph_free(g);

    /* A node referring to a tensor that does not exist. */
    g = nn_graph_new();
    x = nn_graph_add_input(g, "x", nn_shape4(1, 8, 8, 3), &err);
    int bad[2] = {x, 42};
    assert_int_equal(nn_graph_add_node(g, NN_OP_ADD, bad, 2, NULL, "add", &err), NN_NONE);
    assert_int_equal(err.code, FACENET_ERR_FORMAT);
    /* Wrong arity. */
    assert_int_equal(nn_graph_add_node(g, NN_OP_RELU, bad, 2, NULL, "relu", &err), NN_NONE);
    /* Reshape that changes the element count. */
    nn_attrs r;
    memset(&r, 0, sizeof r);
    r.reshape.rank = 2;
    r.reshape.dims[0] = 0;
    r.reshape.dims[1] = 100;
    y = nn_graph_add_node(g, NN_OP_RESHAPE, &x, 1, &r, "reshape", &err);
    nn_graph_set_outputs(g, &y, 1, &err);
    assert_int_equal(nn_graph_finalize(g, &err), FACENET_ERR_SHAPE);
    assert_non_null(strstr(err.message, "reshape"));
    nn_graph_free(g);

    /* Broadcasting mismatch; a conv whose weights are not constant. */
    g = nn_graph_new();
    x = nn_graph_add_input(g, "x", nn_shape4(1, 4, 4, 3), &err);
    int c = nn_graph_add_const(g, "c", nn_shape1(4), floats(4, 1, 0), &err);
    int pair[2] = {x, c};
    y = nn_graph_add_node(g, NN_OP_MUL, pair, 2, NULL, "mul", &err);
    nn_graph_set_outputs(g, &y, 1, &err);
    assert_int_equal(nn_graph_finalize(g, &err), FACENET_ERR_SHAPE);
    nn_graph_free(g);

    g = nn_graph_new();
    x = nn_graph_add_input(g, "x", nn_shape4(1, 4, 4, 3), &err);
    int self[3] = {x, x, NN_NONE};
    y = nn_graph_add_node(g, NN_OP_CONV2D, self, 3, &a, "conv", &err);
    nn_graph_set_outputs(g, &y, 1, &err);
    assert_int_equal(nn_graph_finalize(g, &err), FACENET_ERR_UNSUPPORTED);
    nn_graph_free(g);

    /* A pooling window larger than its input. */
    g = nn_graph_new();
    x = nn_graph_add_input(g, "x", nn_shape4(1, 2, 2, 3), &err);
    nn_attrs p;
    memset(&p, 0, sizeof p);
    p.pool.kernel_h = p.pool.kernel_w = 3;
    p.pool.stride_h = p.pool.stride_w = 2;
    y = nn_graph_add_node(g, NN_OP_MAX_POOL2D, &x, 1, &p, "pool", &err);
    nn_graph_set_outputs(g, &y, 1, &err);
    assert_int_equal(nn_graph_finalize(g, &err), FACENET_ERR_SHAPE);
    nn_graph_free(g);
}

/* x[1,2,2,2] -> conv 1x1 (swap channels, bias) -> relu -> reshape [0,-1]
 * -> fc -> softmax, every value computed by hand below. */
static void test_execute_small_graph(void **state)
{
    facenet_error err;
    nn_graph *g = nn_graph_new();
    nn_weights wts;
    nn_exec ex;
    (void)state;

    int x = nn_graph_add_input(g, "x", nn_shape4(1, 2, 2, 2), &err);
    float wdata[4] = {0, 1, 1, 0}; /* O=2, I=2: out0 = in1, out1 = in0 */
    float bdata[2] = {-1, 0};
    int w = nn_graph_add_const_copy(g, "w", nn_shape4(2, 1, 1, 2), wdata, &err);
    int b = nn_graph_add_const_copy(g, "b", nn_shape1(2), bdata, &err);
    nn_attrs a = conv_attrs(1, NN_PAD_VALID);
    int in[3] = {x, w, b};
    int conv = nn_graph_add_node(g, NN_OP_CONV2D, in, 3, &a, "conv", &err);
    int relu = nn_graph_add_node(g, NN_OP_RELU, &conv, 1, NULL, "relu", &err);
    nn_attrs r;
    memset(&r, 0, sizeof r);
    r.reshape.rank = 2;
    r.reshape.dims[0] = 0;
    r.reshape.dims[1] = -1;
    int flat = nn_graph_add_node(g, NN_OP_RESHAPE, &relu, 1, &r, "flat", &err);
    float fw[2 * 8] = {1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0};
    int fcw = nn_graph_add_const_copy(g, "fcw", nn_shape2(2, 8), fw, &err);
    int fin[3] = {flat, fcw, NN_NONE};
    nn_attrs none;
    memset(&none, 0, sizeof none);
    int fc = nn_graph_add_node(g, NN_OP_FULLY_CONNECTED, fin, 3, &none, "fc", &err);
    int sm = nn_graph_add_node(g, NN_OP_SOFTMAX, &fc, 1, NULL, "prob", &err);
    int outs[2] = {sm, relu};
    assert_int_equal(nn_graph_set_outputs(g, outs, 2, &err), FACENET_OK);
    assert_int_equal(nn_graph_finalize(g, &err), FACENET_OK);
    assert_int_equal(nn_weights_prepare(g, &wts, &err), FACENET_OK);
    assert_int_equal(nn_exec_init(&ex, g, &wts, &err), FACENET_OK);

    float input[8] = {1, 2, 3, 4, -5, 6, 0.5f, 0.25f};
    nn_shape s = nn_shape4(1, 2, 2, 2);
    assert_int_equal(nn_exec_run(&ex, input, &s, &err), FACENET_OK);
    /* conv: (in1 - 1, in0) per pixel; relu clamps. */
    const float expect_relu[8] = {1, 1, 3, 3, 5, 0, 0, 0.5f};
    const float *got = nn_exec_value(&ex, relu);
    for (int i = 0; i < 8; i++)
        assert_float_equal(got[i], expect_relu[i], 1e-6);
    /* fc: [sum, 0] = [13.5, 0]; softmax. */
    const float *prob = nn_exec_value(&ex, sm);
    double e = exp(13.5);
    assert_float_equal(prob[0], e / (e + 1), 1e-6);
    assert_float_equal(prob[1], 1 / (e + 1), 1e-6);

    /* Batch 3 through the same session: rows are independent. */
    float in3[24];
    for (int i = 0; i < 24; i++)
        in3[i] = input[i % 8];
    s = nn_shape4(3, 2, 2, 2);
    assert_int_equal(nn_exec_run(&ex, in3, &s, &err), FACENET_OK);
    assert_int_equal(nn_exec_shape(&ex, sm)->dims[0], 3);
    prob = nn_exec_value(&ex, sm);
    for (int k = 0; k < 3; k++)
        assert_float_equal(prob[2 * k], e / (e + 1), 1e-6);

    nn_exec_free(&ex);
    nn_weights_free(&wts);
    nn_graph_free(g);
}

/* A chain of 20 element-wise nodes needs only two live buffers. */
static void test_memory_plan_reuses_space(void **state)
{
    facenet_error err;
    nn_graph *g = nn_graph_new();
    nn_weights wts;
    nn_exec ex;
    (void)state;
    int v = nn_graph_add_input(g, "x", nn_shape4(1, 16, 16, 4), &err);
    for (int i = 0; i < 20; i++)
        v = nn_graph_add_node(g, i % 2 ? NN_OP_NEG : NN_OP_ABS, &v, 1, NULL, "n", &err);
    nn_graph_set_outputs(g, &v, 1, &err);
    assert_int_equal(nn_graph_finalize(g, &err), FACENET_OK);
    assert_int_equal(nn_weights_prepare(g, &wts, &err), FACENET_OK);
    assert_int_equal(nn_exec_init(&ex, g, &wts, &err), FACENET_OK);
    float *in = floats(1024, -3, 0.01f);
    nn_shape s = nn_shape4(1, 16, 16, 4);
    assert_int_equal(nn_exec_run(&ex, in, &s, &err), FACENET_OK);
    assert_true(ex.arena_floats <= 2 * 1024);
    const float *out = nn_exec_value(&ex, v);
    for (int i = 0; i < 1024; i++)
        assert_float_equal(out[i], -fabsf(in[i]), 0);
    free(in);
    nn_exec_free(&ex);
    nn_weights_free(&wts);
    nn_graph_free(g);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_same_padding_shapes),
        cmocka_unit_test(test_validation_errors),
        cmocka_unit_test(test_execute_small_graph),
        cmocka_unit_test(test_memory_plan_reuses_space),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
