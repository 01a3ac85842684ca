/*
 * fuzz_fuse.c - differential libFuzzer target for graph fusion and the
 * fast backends.
 *
 * The input is read as a little program that builds a small graph with the
 * builder calls: convolutions, depthwise convolutions, pools, AFFINE,
 * RELU, residual ADDs, and the op patterns fusion looks for (both PReLU
 * spellings, softmax), with intermediate values randomly made graph
 * outputs or read twice so that fusion must sometimes refuse. The graph
 * is then run unfused on the reference backend and fused on every
 * available backend (1 and 2 threads), and the outputs must agree. Any
 * disagreement, crash or leak is a bug in fusion, the executor or a
 * kernel.
 */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "nn/backend.h"
#include "nn/exec.h"
#include "nn/fuse.h"
#include "nn/graph.h"
#include "nn/pool.h"

#include "fuzz_reader.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Values in [-scale, scale) from the input, so the fuzzer steers them. */
static float *weights(reader *r, size_t n, float scale)
{
    float *w = malloc(n * sizeof *w);
    if (!w)
        abort();
    for (size_t i = 0; i < n; i++)
        w[i] = scale * ((float)byte(r) - 128.0f) / 128.0f;
    return w;
}

typedef struct builder {
    nn_graph *g;
    reader *r;
    nn_shape input;
    nn_shape *shapes;
    int cur;                 /* the value the next op reads */
    int outputs[NN_MAX_OUTPUTS];
    int n_outputs;
    facenet_error err;
} builder;

static const nn_shape *shape_of(builder *b, int id)
{
    return &b->g->values[id].shape;
}

static int channels(builder *b)
{
    const nn_shape *s = shape_of(b, b->cur);
    return s->dims[s->rank - 1];
}

static int add(builder *b, nn_op op, const int *in, int n_in, const nn_attrs *a)
{
    int id = nn_graph_add_node(b->g, op, in, n_in, a, "v", &b->err);
    if (id < 0)
        abort(); /* every id passed in exists: a builder failure is a bug */
    return id;
}

/* Weights scaled by 1/sqrt(fan_in) keep activations near 1 through a
 * dozen layers, so rounding differences stay at rounding size. */
static int constant(builder *b, nn_shape s, int fan_in)
{
    const float scale = 1.0f / sqrtf((float)(fan_in > 0 ? fan_in : 1));
    int id = nn_graph_add_const(b->g, "c", s, weights(b->r, nn_shape_count(&s), scale), &b->err);
    if (id < 0)
        abort();
    return id;
}

static void step(builder *b)
{
    const unsigned op = byte(b->r) % 10;
    const nn_shape *xs = shape_of(b, b->cur);
    const int c = channels(b), h = xs->dims[1], w = xs->dims[2];
    nn_attrs a;
    memset(&a, 0, sizeof a);

    switch (op) {
    case 0:   /* conv */
    case 1: { /* depthwise */
        const int k = 1 + (int)(byte(b->r) % 3), s = 1 + (int)(byte(b->r) % 2);
        a.conv.stride_h = a.conv.stride_w = s;
        a.conv.padding = byte(b->r) % 2 ? NN_PAD_SAME : NN_PAD_VALID;
        a.conv.act = (nn_activation)(byte(b->r) % 3);
        if (a.conv.padding == NN_PAD_VALID && (h < k || w < k))
            a.conv.padding = NN_PAD_SAME;
        const int oc = op == 0 ? 1 + (int)(byte(b->r) % 20) : c;
        int in[3] = {b->cur,
                     constant(b, op == 0 ? nn_shape4(oc, k, k, c) : nn_shape4(1, k, k, c),
                              op == 0 ? k * k * c : k * k),
                     byte(b->r) % 2 ? constant(b, nn_shape1(oc), 1) : NN_NONE};
        b->cur = add(b, op == 0 ? NN_OP_CONV2D : NN_OP_DEPTHWISE_CONV2D, in, 3, &a);
        break;
    }
    case 2: { /* pool */
        if (h < 2 || w < 2)
            break;
        a.pool.kernel_h = a.pool.kernel_w = 2 + (int)(byte(b->r) % 2);
        a.pool.stride_h = a.pool.stride_w = 1 + (int)(byte(b->r) % 2);
        a.pool.padding = NN_PAD_SAME;
        b->cur = add(b, byte(b->r) % 2 ? NN_OP_MAX_POOL2D : NN_OP_AVG_POOL2D, &b->cur, 1, &a);
        break;
    }
    case 3: { /* affine (batch norm) */
        int in[3] = {b->cur, constant(b, nn_shape1(c), 1), constant(b, nn_shape1(c), 1)};
        b->cur = add(b, NN_OP_AFFINE, in, 3, NULL);
        break;
    }
    case 4:
        b->cur = add(b, NN_OP_RELU, &b->cur, 1, NULL);
        break;
    case 5: { /* relu(x) + c * (x - |x|) */
        const int x = b->cur, cst = constant(b, nn_shape1(c), 1);
        const int p = add(b, NN_OP_RELU, &x, 1, NULL);
        const int ab = add(b, NN_OP_ABS, &x, 1, NULL);
        int sub_in[2] = {x, ab};
        const int d = add(b, NN_OP_SUB, sub_in, 2, &a);
        int mul_in[2] = {cst, d};
        const int m = add(b, NN_OP_MUL, mul_in, 2, &a);
        int add_in[2] = {p, m};
        b->cur = add(b, NN_OP_ADD, add_in, 2, &a);
        break;
    }
    case 6: { /* relu(x) - alpha * relu(-x) */
        const int x = b->cur, cst = constant(b, nn_shape1(c), 1);
        const int p = add(b, NN_OP_RELU, &x, 1, NULL);
        const int nx = add(b, NN_OP_NEG, &x, 1, NULL);
        const int r = add(b, NN_OP_RELU, &nx, 1, NULL);
        int mul_in[2] = {r, cst};
        const int m = add(b, NN_OP_MUL, mul_in, 2, &a);
        int sub_in[2] = {p, m};
        b->cur = add(b, NN_OP_SUB, sub_in, 2, &a);
        break;
    }
    case 7: { /* softmax over channels */
        a.reduce.axes_mask = 8u;
        a.reduce.keep_dims = 1;
        const int x = b->cur;
        const int mx = add(b, NN_OP_REDUCE_MAX, &x, 1, &a);
        nn_attrs none;
        memset(&none, 0, sizeof none);
        int sub_in[2] = {x, mx};
        const int d = add(b, NN_OP_SUB, sub_in, 2, &none);
        const int e = add(b, NN_OP_EXP, &d, 1, NULL);
        const int s = add(b, NN_OP_REDUCE_SUM, &e, 1, &a);
        int div_in[2] = {e, s};
        b->cur = add(b, NN_OP_DIV, div_in, 2, &none);
        break;
    }
    case 8: { /* residual add with an earlier value of the same shape */
        for (int id = b->cur - 1; id >= 0; id--) {
            if (b->g->values[id].data || !nn_shape_equal(shape_of(b, id), xs))
                continue;
            int in[2] = {b->cur, id};
            b->cur = add(b, NN_OP_ADD, in, 2, &a);
            break;
        }
        break;
    }
    default: /* make the current value an output: fusion must keep it */
        if (b->n_outputs < NN_MAX_OUTPUTS - 1 && b->cur != b->g->input &&
            (b->n_outputs == 0 || b->outputs[b->n_outputs - 1] != b->cur))
            b->outputs[b->n_outputs++] = b->cur;
        break;
    }
    /* Shapes of the new values, as finalize would record them: the next
     * step needs them. The builder only makes graphs that fit. */
    nn_shape *s = realloc(b->shapes, (size_t)b->g->n_values * sizeof *s);
    if (!s)
        abort();
    b->shapes = s;
    if (nn_infer_shapes(b->g, &b->input, s, &b->err) != FACENET_OK)
        abort();
    for (int i = 0; i < b->g->n_values; i++)
        if (b->g->values[i].producer != NN_NONE)
            b->g->values[i].shape = s[i];
}

/* Run g on x with `backend` and `threads`; copies output k into out. */
static void run(const nn_graph *g, const nn_backend *backend, int threads, const float *x,
                nn_shape shape, float **out, size_t *counts)
{
    nn_weights w;
    nn_exec e;
    nn_pool *pool = NULL;
    facenet_error err;
    if (nn_weights_prepare_backend(g, backend, &w, &err) != FACENET_OK ||
        nn_exec_init(&e, g, &w, &err) != FACENET_OK)
        abort();
    if (threads > 1 && nn_pool_create(threads, &pool, &err) != FACENET_OK)
        abort();
    nn_exec_set_pool(&e, pool);
    if (nn_exec_run(&e, x, &shape, &err) != FACENET_OK)
        abort();
    for (int k = 0; k < g->n_outputs; k++) {
        counts[k] = nn_shape_count(nn_exec_shape(&e, g->outputs[k]));
        out[k] = malloc(counts[k] * sizeof(float));
        memcpy(out[k], nn_exec_value(&e, g->outputs[k]), counts[k] * sizeof(float));
    }
    nn_exec_free(&e);
    nn_pool_free(pool);
    nn_weights_free(&w);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    reader r = {data, size};
    builder b;
    memset(&b, 0, sizeof b);
    b.r = &r;
    b.g = nn_graph_new();
    const nn_shape in = nn_shape4(1 + (int)(byte(&r) % 3), 1 + (int)(byte(&r) % 9),
                                  1 + (int)(byte(&r) % 9), 1 + (int)(byte(&r) % 12));
    b.input = in;
    b.cur = nn_graph_add_input(b.g, "x", in, &b.err);
    if (!b.g || b.cur < 0)
        abort();
    const int steps = 1 + (int)(byte(&r) % 12);
    for (int i = 0; i < steps; i++)
        step(&b);
    free(b.shapes);
    if (b.cur == b.g->input) {
        nn_graph_free(b.g);
        return 0;
    }
    if (b.n_outputs == 0 || b.outputs[b.n_outputs - 1] != b.cur)
        b.outputs[b.n_outputs++] = b.cur;
    if (nn_graph_set_outputs(b.g, b.outputs, b.n_outputs, &b.err) != FACENET_OK ||
        nn_graph_finalize(b.g, &b.err) != FACENET_OK)
        abort();

    nn_graph *fused = NULL;
    if (nn_fuse(b.g, &fused, NULL, &b.err) != FACENET_OK || fused->n_nodes > b.g->n_nodes)
        abort();
    float *x = weights(&r, nn_shape_count(&in), 1.0f);
    float *want[NN_MAX_OUTPUTS], *got[NN_MAX_OUTPUTS];
    size_t nw[NN_MAX_OUTPUTS], ng[NN_MAX_OUTPUTS];
    run(b.g, &nn_backend_reference, 1, x, in, want, nw);
    for (int i = 0; nn_backend_at(i); i++) {
        const nn_backend *be = nn_backend_at(i);
        if (!be->available())
            continue;
        for (int threads = 1; threads <= 2; threads++) {
            run(fused, be, threads, x, in, got, ng);
            for (int k = 0; k < b.n_outputs; k++) {
                if (nw[k] != ng[k])
                    abort();
                float peak = 0.0f;
                for (size_t j = 0; j < nw[k]; j++)
                    peak = fmaxf(peak, fabsf(want[k][j]));
                for (size_t j = 0; j < nw[k]; j++) {
                    const float d = fabsf(want[k][j] - got[k][j]);
                    /* NaN and inf from exp() overflow must match too. */
                    if (isnan(want[k][j]) != isnan(got[k][j]) ||
                        (isfinite(want[k][j]) && !(d <= 1e-4f * (1.0f + peak))))
                        abort();
                }
                free(got[k]);
            }
        }
    }
    for (int k = 0; k < b.n_outputs; k++)
        free(want[k]);
    free(x);
    nn_graph_free(fused);
    nn_graph_free(b.g);
    return 0;
}
