/* Graph fusion: each pattern on a small hand-built graph gives the same
 * outputs fused and unfused, patterns whose intermediates are read
 * elsewhere are left alone, and the real models shrink as expected. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/fileio.h"
#include "nn/exec.h"
#include "nn/fuse.h"
#include "nn/graph.h"
#include "nn/import/import.h"
#include "support/testutil.h"

/* Deterministic values in [-1, 1) with both signs. */
static float *noise(size_t n, unsigned seed)
{
    float *p = malloc(n * sizeof *p);
    unsigned s = seed * 2654435761u + 1u;
    for (size_t i = 0; i < n; i++) {
        s = s * 1664525u + 1013904223u;
        p[i] = (float)(s >> 8) / (float)(1u << 23) - 1.0f;
    }
    return p;
}

/* Run g on `input` and copy output `k` into a new array of *count floats. */
static float *run(const nn_graph *g, const float *input, nn_shape shape, int k, size_t *count)
{
    nn_weights w;
    nn_exec e;
    facenet_error err;
    assert_int_equal(nn_weights_prepare(g, &w, &err), FACENET_OK);
    assert_int_equal(nn_exec_init(&e, g, &w, &err), FACENET_OK);
    assert_int_equal(nn_exec_run(&e, input, &shape, &err), FACENET_OK);
    const int id = g->outputs[k];
    *count = nn_shape_count(nn_exec_shape(&e, id));
    float *out = malloc(*count * sizeof *out);
    memcpy(out, nn_exec_value(&e, id), *count * sizeof *out);
    nn_exec_free(&e);
    nn_weights_free(&w);
    return out;
}

/* Fuse g, check the node count, and compare every output on random data
 * within `tol` (0: bit-exact). Frees g. */
static nn_fuse_stats check_fused(nn_graph *g, int expect_nodes, float tol)
{
    facenet_error err;
    nn_graph *f = NULL;
    nn_fuse_stats st;
    assert_int_equal(nn_graph_finalize(g, &err), FACENET_OK);
    assert_int_equal(nn_fuse(g, &f, &st, &err), FACENET_OK);
    assert_non_null(f);
    assert_int_equal(st.nodes_before, g->n_nodes);
    assert_int_equal(st.nodes_after, f->n_nodes);
    assert_int_equal(f->n_nodes, expect_nodes);
    assert_int_equal(f->n_outputs, g->n_outputs);

    const nn_shape in = g->values[g->input].shape;
    float *x = noise(nn_shape_count(&in), 7);
    for (int k = 0; k < g->n_outputs; k++) {
        size_t na, nb;
        float *a = run(g, x, in, k, &na);
        float *b = run(f, x, in, k, &nb);
        assert_int_equal(na, nb);
        assert_string_equal(g->values[g->outputs[k]].name, f->values[f->outputs[k]].name);
        for (size_t i = 0; i < na; i++) {
            if (tol == 0.0f)
                assert_true(a[i] == b[i]);
            else
                assert_true(fabsf(a[i] - b[i]) <= tol * (1.0f + fabsf(a[i])));
        }
        free(a);
        free(b);
    }
    free(x);
    nn_graph_free(f);
    nn_graph_free(g);
    return st;
}

static int node(nn_graph *g, nn_op op, int a, int b, const char *name)
{
    facenet_error err;
    int in[2] = {a, b};
    int id = nn_graph_add_node(g, op, in, b == NN_NONE ? 1 : 2, NULL, name, &err);
    assert_true(id >= 0);
    return id;
}

static void outputs(nn_graph *g, const int *ids, int n)
{
    facenet_error err;
    assert_int_equal(nn_graph_set_outputs(g, ids, n, &err), FACENET_OK);
}

/* relu(x) + c * (x - |x|): MobileFaceNet's PReLU, slope 2c. */
static nn_graph *prelu_abs_graph(int extra_reader)
{
    facenet_error err;
    nn_graph *g = nn_graph_new();
    int x = nn_graph_add_input(g, "x", nn_shape4(2, 3, 4, 5), &err);
    int c = nn_graph_add_const(g, "c", nn_shape1(5), noise(5, 1), &err);
    int p = node(g, NN_OP_RELU, x, NN_NONE, "relu");
    int a = node(g, NN_OP_ABS, x, NN_NONE, "abs");
    int d = node(g, NN_OP_SUB, x, a, "sub");
    int m = node(g, NN_OP_MUL, c, d, "mul"); /* constant first, as in the file */
    int y = node(g, NN_OP_ADD, p, m, "y");
    int outs[2] = {y, a};
    outputs(g, outs, extra_reader ? 2 : 1);
    return g;
}

static void test_prelu_abs(void **state)
{
    (void)state;
    nn_fuse_stats st = check_fused(prelu_abs_graph(0), 1, 0.0f);
    assert_int_equal(st.prelu, 1);
    /* |x| is also a graph output: nothing may be fused away. */
    st = check_fused(prelu_abs_graph(1), 5, 0.0f);
    assert_int_equal(st.prelu, 0);
}

/* MTCNN: relu(x) + alpha * -relu(-x), or relu(x) - alpha * relu(-x). */
static nn_graph *prelu_neg_graph(int use_sub, int alpha_rank4)
{
    facenet_error err;
    nn_graph *g = nn_graph_new();
    int x = nn_graph_add_input(g, "x", nn_shape4(1, 5, 6, 4), &err);
    nn_shape as = alpha_rank4 ? nn_shape4(1, 1, 1, 4) : nn_shape1(4);
    int alpha = nn_graph_add_const(g, "alpha", as, noise(4, 2), &err);
    int p = node(g, NN_OP_RELU, x, NN_NONE, "pos");
    int nx = node(g, NN_OP_NEG, x, NN_NONE, "negx");
    int r = node(g, NN_OP_RELU, nx, NN_NONE, "relu_negx");
    int y;
    if (use_sub) {
        int m = node(g, NN_OP_MUL, r, alpha, "scaled");
        y = node(g, NN_OP_SUB, p, m, "y");
    } else {
        int n2 = node(g, NN_OP_NEG, r, NN_NONE, "neg2");
        int m = node(g, NN_OP_MUL, alpha, n2, "scaled");
        y = node(g, NN_OP_ADD, m, p, "y"); /* operands swapped on purpose */
    }
    outputs(g, &y, 1);
    return g;
}

static void test_prelu_neg(void **state)
{
    (void)state;
    assert_int_equal(check_fused(prelu_neg_graph(0, 0), 1, 0.0f).prelu, 1);
    assert_int_equal(check_fused(prelu_neg_graph(1, 0), 1, 0.0f).prelu, 1);
    assert_int_equal(check_fused(prelu_neg_graph(1, 1), 1, 0.0f).prelu, 1);
}

/* A per-pixel constant is not a PReLU slope: left alone. */
static void test_prelu_needs_channel_constant(void **state)
{
    facenet_error err;
    (void)state;
    nn_graph *g = nn_graph_new();
    int x = nn_graph_add_input(g, "x", nn_shape4(1, 2, 2, 3), &err);
    int c = nn_graph_add_const(g, "c", nn_shape4(1, 2, 2, 3), noise(12, 3), &err);
    int p = node(g, NN_OP_RELU, x, NN_NONE, "relu");
    int a = node(g, NN_OP_ABS, x, NN_NONE, "abs");
    int d = node(g, NN_OP_SUB, x, a, "sub");
    int m = node(g, NN_OP_MUL, c, d, "mul");
    int y = node(g, NN_OP_ADD, p, m, "y");
    outputs(g, &y, 1);
    assert_int_equal(check_fused(g, 5, 0.0f).prelu, 0);
}

static nn_graph *softmax_graph(nn_shape shape, unsigned mask, int second_output)
{
    facenet_error err;
    nn_graph *g = nn_graph_new();
    int x = nn_graph_add_input(g, "x", shape, &err);
    nn_attrs r;
    memset(&r, 0, sizeof r);
    r.reduce.axes_mask = mask;
    r.reduce.keep_dims = 1;
    int mx = nn_graph_add_node(g, NN_OP_REDUCE_MAX, &x, 1, &r, "max", &err);
    int d = node(g, NN_OP_SUB, x, mx, "sub");
    int e = node(g, NN_OP_EXP, d, NN_NONE, "exp");
    int s = nn_graph_add_node(g, NN_OP_REDUCE_SUM, &e, 1, &r, "sum", &err);
    int y = node(g, NN_OP_DIV, e, s, "prob");
    int outs[2] = {y, e};
    outputs(g, outs, second_output ? 2 : 1);
    return g;
}

static void test_softmax(void **state)
{
    (void)state;
    assert_int_equal(check_fused(softmax_graph(nn_shape4(1, 3, 5, 2), 8u, 0), 1, 1e-6f).softmax, 1);
    assert_int_equal(check_fused(softmax_graph(nn_shape2(6, 7), 2u, 0), 1, 1e-6f).softmax, 1);
    /* Over another axis it is not our SOFTMAX. */
    assert_int_equal(check_fused(softmax_graph(nn_shape2(6, 7), 1u, 0), 5, 0.0f).softmax, 0);
    /* exp() is read outside the pattern. */
    assert_int_equal(check_fused(softmax_graph(nn_shape2(6, 7), 2u, 1), 5, 0.0f).softmax, 0);
}

/* conv -> affine -> relu, as dlib writes every layer; also a depthwise
 * conv without bias, and a relu after a pool. */
static void test_affine_and_relu(void **state)
{
    facenet_error err;
    (void)state;
    for (int depthwise = 0; depthwise < 2; depthwise++) {
        nn_graph *g = nn_graph_new();
        int x = nn_graph_add_input(g, "x", nn_shape4(2, 9, 8, 3), &err);
        nn_shape ws = depthwise ? nn_shape4(1, 3, 3, 3) : nn_shape4(4, 3, 3, 3);
        int oc = depthwise ? 3 : 4;
        int w = nn_graph_add_const(g, "w", ws, noise(nn_shape_count(&ws), 4), &err);
        int b = depthwise ? NN_NONE : nn_graph_add_const(g, "b", nn_shape1(oc), noise(oc, 5), &err);
        int sc = nn_graph_add_const(g, "scale", nn_shape1(oc), noise(oc, 6), &err);
        int sh = nn_graph_add_const(g, "shift", nn_shape1(oc), noise(oc, 8), &err);
        nn_attrs a;
        memset(&a, 0, sizeof a);
        a.conv.stride_h = a.conv.stride_w = 2;
        a.conv.padding = NN_PAD_SAME;
        int in[3] = {x, w, b};
        int y = nn_graph_add_node(g, depthwise ? NN_OP_DEPTHWISE_CONV2D : NN_OP_CONV2D, in, 3, &a,
                                  "conv", &err);
        int aff_in[3] = {y, sc, sh};
        int z = nn_graph_add_node(g, NN_OP_AFFINE, aff_in, 3, NULL, "bn", &err);
        int r = node(g, NN_OP_RELU, z, NN_NONE, "relu");
        nn_attrs pa;
        memset(&pa, 0, sizeof pa);
        pa.pool.kernel_h = pa.pool.kernel_w = 2;
        pa.pool.stride_h = pa.pool.stride_w = 1;
        int q = nn_graph_add_node(g, NN_OP_MAX_POOL2D, &r, 1, &pa, "pool", &err);
        int q2 = node(g, NN_OP_NEG, q, NN_NONE, "neg");
        int out = node(g, NN_OP_RELU, q2, NN_NONE, "out"); /* NEG has no act: stays */
        outputs(g, &out, 1);
        nn_fuse_stats st = check_fused(g, 4, 1e-5f);
        assert_int_equal(st.affine, 1);
        assert_int_equal(st.activation, 1);
    }
}

/* P-Net's head: 3x3 conv (3 -> 10), PReLU, 2x2/2 max pool (SAME), on an
 * input with odd sides so the pool pads. With pool_k 3 the pool is one the
 * fused kernel does not take; with shared, the PReLU's output is also a
 * graph output and must be stored. */
static nn_graph *conv_prelu_pool_graph(int pool_k, int shared, int *pre, int *pooled)
{
    facenet_error err;
    nn_graph *g = nn_graph_new();
    int x = nn_graph_add_input(g, "x", nn_shape4(2, 15, 20, 3), &err);
    nn_shape ws = nn_shape4(10, 3, 3, 3);
    int w = nn_graph_add_const(g, "w", ws, noise(nn_shape_count(&ws), 11), &err);
    int b = nn_graph_add_const(g, "b", nn_shape1(10), noise(10, 12), &err);
    int al = nn_graph_add_const(g, "alpha", nn_shape1(10), noise(10, 13), &err);
    nn_attrs a;
    memset(&a, 0, sizeof a);
    a.conv.stride_h = a.conv.stride_w = 1;
    a.conv.padding = NN_PAD_VALID;
    int in[3] = {x, w, b};
    int y = nn_graph_add_node(g, NN_OP_CONV2D, in, 3, &a, "conv", &err);
    *pre = node(g, NN_OP_PRELU, y, al, "prelu");
    nn_attrs pa;
    memset(&pa, 0, sizeof pa);
    pa.pool.kernel_h = pa.pool.kernel_w = pool_k;
    pa.pool.stride_h = pa.pool.stride_w = 2;
    pa.pool.padding = NN_PAD_SAME;
    *pooled = nn_graph_add_node(g, NN_OP_MAX_POOL2D, pre, 1, &pa, "pool", &err);
    int outs[2] = {*pooled, *pre};
    outputs(g, outs, shared ? 2 : 1);
    assert_int_equal(nn_graph_finalize(g, &err), FACENET_OK);
    return g;
}

/* The executor runs a conv and the max pool after it as one fused layer
 * when the backend has it (avx2), with the values of the layers run apart
 * (the reference), and only then: not for a pool the kernel cannot take,
 * nor when the conv's output is read elsewhere. */
static void test_exec_fuses_conv_and_max_pool(void **state)
{
    const nn_backend *avx2 = nn_backend_find("avx2");
    facenet_error err;
    (void)state;
    if (!avx2)
        skip();
    for (int variant = 0; variant < 3; variant++) {
        int pre, pooled;
        nn_graph *g = conv_prelu_pool_graph(variant == 1 ? 3 : 2, variant == 2, &pre, &pooled);
        const nn_shape in = g->values[g->input].shape;
        float *x = noise(nn_shape_count(&in), 14);
        nn_weights wr, wa;
        nn_exec er, ea;
        assert_int_equal(nn_weights_prepare(g, &wr, &err), FACENET_OK);
        assert_int_equal(nn_weights_prepare_backend(g, avx2, &wa, &err), FACENET_OK);
        assert_int_equal(nn_exec_init(&er, g, &wr, &err), FACENET_OK);
        assert_int_equal(nn_exec_init(&ea, g, &wa, &err), FACENET_OK);
        for (int run = 0; run < 2; run++) { /* the second run reuses the plan */
            assert_int_equal(nn_exec_run(&er, x, &in, &err), FACENET_OK);
            assert_int_equal(nn_exec_run(&ea, x, &in, &err), FACENET_OK);
            const nn_shape *os = nn_exec_shape(&ea, pooled);
            assert_int_equal(os->dims[1], 7); /* (15 - 2 + 1) / 2 */
            assert_int_equal(os->dims[2], 9); /* (20 - 2 + 1) / 2 */
            const size_t n = nn_shape_count(os);
            const float *want = nn_exec_value(&er, pooled), *got = nn_exec_value(&ea, pooled);
            for (size_t i = 0; i < n; i++)
                assert_true(fabsf(want[i] - got[i]) <= 1e-5f * (1.0f + fabsf(want[i])));
            /* Fused: the PReLU's output is never stored. */
            assert_non_null(nn_exec_value(&er, pre));
            if (variant == 0)
                assert_null(nn_exec_value(&ea, pre));
            else
                assert_non_null(nn_exec_value(&ea, pre));
        }
        nn_exec_free(&er);
        nn_exec_free(&ea);
        nn_weights_free(&wr);
        nn_weights_free(&wa);
        free(x);
        nn_graph_free(g);
    }
}

/* A conv whose raw output is also a graph output keeps its AFFINE. */
static void test_affine_kept_when_shared(void **state)
{
    facenet_error err;
    (void)state;
    nn_graph *g = nn_graph_new();
    int x = nn_graph_add_input(g, "x", nn_shape4(1, 4, 4, 2), &err);
    int w = nn_graph_add_const(g, "w", nn_shape4(3, 1, 1, 2), noise(6, 9), &err);
    int sc = nn_graph_add_const(g, "scale", nn_shape1(3), noise(3, 10), &err);
    int sh = nn_graph_add_const(g, "shift", nn_shape1(3), noise(3, 11), &err);
    nn_attrs a;
    memset(&a, 0, sizeof a);
    a.conv.stride_h = a.conv.stride_w = 1;
    int in[3] = {x, w, NN_NONE};
    int y = nn_graph_add_node(g, NN_OP_CONV2D, in, 2, &a, "conv", &err);
    int aff_in[3] = {y, sc, sh};
    int z = nn_graph_add_node(g, NN_OP_AFFINE, aff_in, 3, NULL, "bn", &err);
    int outs[2] = {z, y};
    outputs(g, outs, 2);
    assert_int_equal(check_fused(g, 2, 0.0f).affine, 0);
}

/* ---- the real models ------------------------------------------------------ */

static nn_graph *import_model(const char *name)
{
    const facenet_model_info *info = facenet_model_find(name);
    char path[4096];
    uint8_t *data = NULL;
    size_t size = 0;
    nn_graph *g = NULL;
    facenet_error err;

    assert_non_null(info);
    (void)snprintf(path, sizeof path, "%s/%s", tu_model_dir(), info->file_name);
    if (access(path, R_OK) != 0) {
        tu_load_model(name); /* skips, or fails when models are required */
        return NULL;
    }
    assert_int_equal(fn_read_file(path, (size_t)1 << 30, &data, &size, &err), FACENET_OK);
    facenet_status st = info->format == FACENET_FORMAT_TFLITE
                            ? nn_import_tflite(data, size, &g, &err)
                            : nn_import_dlib_dat(data, size, &g, &err);
    free(data);
    assert_int_equal(st, FACENET_OK);
    return g;
}

typedef struct model_case {
    const char *name;
    int nodes_before, nodes_after, prelu, softmax, affine;
    float tol;
} model_case;

static void test_real_models(void **state)
{
    static const model_case cases[] = {
        {"mtcnn-pnet", 29, 10, 3, 1, 0, 1e-6f},
        {"mtcnn-rnet", 37, 13, 4, 1, 0, 1e-6f},
        {"mtcnn-onet", 46, 17, 5, 1, 0, 1e-6f},
        {"mobilefacenet", 230, 98, 33, 0, 0, 0.0f},
        {"dlib-resnet", 108, 64, 0, 0, 29, 1e-4f},
    };
    (void)state;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const model_case *c = &cases[i];
        nn_graph *g = import_model(c->name);
        if (!g)
            continue;
        assert_int_equal(g->n_nodes, c->nodes_before);
        nn_fuse_stats st = check_fused(g, c->nodes_after, c->tol);
        assert_int_equal(st.prelu, c->prelu);
        assert_int_equal(st.softmax, c->softmax);
        assert_int_equal(st.affine, c->affine);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_prelu_abs),
        cmocka_unit_test(test_prelu_neg),
        cmocka_unit_test(test_prelu_needs_channel_constant),
        cmocka_unit_test(test_softmax),
        cmocka_unit_test(test_affine_and_relu),
        cmocka_unit_test(test_affine_kept_when_shared),
        cmocka_unit_test(test_exec_fuses_conv_and_max_pool),
        cmocka_unit_test(test_real_models),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
