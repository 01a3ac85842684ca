/*
 * xnnpack_peer.c - the raw XNNPACK baseline for `make bench`.
 *
 * Runs a model's fused graph (our importer and fusion pass, so both sides
 * compute exactly the same network with the same weights) with one XNNPACK
 * operator per node, and prints the median latency. This is what a careful
 * user of XNNPACK alone would get: its own convolution, depthwise, PReLU
 * and add kernels, operators set up once, one buffer per tensor.
 *
 * Built only by the `bench` target; never part of the library.
 *
 * usage: xnnpack_peer MODEL.tflite BATCH THREADS RUNS
 * prints: xnnpack <batch> <threads> <median_ms> <best_ms> <max|out|>
 */
#include <math.h>
#include <pthreadpool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <xnnpack.h>

#include "common/fileio.h"
#include "nn/fuse.h"
#include "nn/graph.h"
#include "nn/import/import.h"

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static void die(const char *what)
{
    fprintf(stderr, "xnnpack_peer: %s\n", what);
    exit(1);
}

static float act_min(nn_activation act)
{
    return act == NN_ACT_NONE ? -INFINITY : 0.0f;
}

static float act_max(nn_activation act)
{
    return act == NN_ACT_RELU6 ? 6.0f : INFINITY;
}

int main(int argc, char **argv)
{
    uint8_t *data = NULL;
    size_t size = 0;
    facenet_error err;
    nn_graph *raw = NULL, *g = NULL;

    if (argc != 5)
        die("usage: xnnpack_peer MODEL.tflite BATCH THREADS RUNS");
    const int batch = atoi(argv[2]), threads = atoi(argv[3]), runs = atoi(argv[4]);
    if (batch < 1 || threads < 1 || runs < 1)
        die("bad arguments");
    if (fn_read_file(argv[1], (size_t)1 << 30, &data, &size, &err) != FACENET_OK ||
        nn_import_tflite(data, size, &raw, &err) != FACENET_OK ||
        nn_fuse(raw, &g, NULL, &err) != FACENET_OK)
        die(err.message);
    free(data);
    nn_graph_free(raw);
    if (xnn_initialize(NULL) != xnn_status_success)
        die("xnn_initialize failed (no supported CPU?)");
    pthreadpool_t pool = threads > 1 ? pthreadpool_create((size_t)threads) : NULL;

    nn_shape in = g->values[g->input].shape;
    in.dims[0] = batch;
    nn_shape *shapes = malloc((size_t)g->n_values * sizeof *shapes);
    float **buf = calloc((size_t)g->n_values, sizeof *buf);
    xnn_operator_t *ops = calloc((size_t)g->n_nodes, sizeof *ops);
    if (!shapes || !buf || !ops || nn_infer_shapes(g, &in, shapes, &err) != FACENET_OK)
        die("cannot infer shapes");
    for (int v = 0; v < g->n_values; v++) {
        if (g->values[v].data)
            buf[v] = g->values[v].data;
        else
            buf[v] = calloc(nn_shape_count(&shapes[v]) + 16, sizeof(float));
    }
    const size_t in_count = nn_shape_count(&in);
    for (size_t i = 0; i < in_count; i++)
        buf[g->input][i] = ((float)((i * 7919) % 256) - 127.5f) / 128.0f; /* as facenet bench */

    for (int i = 0; i < g->n_nodes; i++) {
        const nn_node *n = &g->nodes[i];
        const nn_shape *xs = &shapes[n->inputs[0]], *ys = &shapes[n->output];
        enum xnn_status st = xnn_status_success;
        switch (n->op) {
        case NN_OP_CONV2D:
        case NN_OP_DEPTHWISE_CONV2D: {
            const nn_conv_attrs *a = &n->attrs.conv;
            const nn_shape *ws = &g->values[n->inputs[1]].shape;
            const int dw = n->op == NN_OP_DEPTHWISE_CONV2D;
            int top, bottom, left, right, o;
            nn_resolve_padding(a->padding, xs->dims[1], ws->dims[1], a->stride_h, a->pad_top,
                               a->pad_bottom, &top, &bottom, &o);
            nn_resolve_padding(a->padding, xs->dims[2], ws->dims[2], a->stride_w, a->pad_left,
                               a->pad_right, &left, &right, &o);
            const size_t c = (size_t)xs->dims[3];
            const float *bias = n->n_inputs > 2 && n->inputs[2] != NN_NONE
                                    ? g->values[n->inputs[2]].data : NULL;
            st = xnn_create_convolution2d_nhwc_f32(
                (uint32_t)top, (uint32_t)right, (uint32_t)bottom, (uint32_t)left,
                (uint32_t)ws->dims[1], (uint32_t)ws->dims[2], (uint32_t)a->stride_h,
                (uint32_t)a->stride_w, 1, 1, dw ? (uint32_t)c : 1, dw ? 1 : c,
                dw ? 1 : (size_t)ws->dims[0], c, (size_t)ys->dims[3],
                g->values[n->inputs[1]].data, bias, act_min(a->act), act_max(a->act),
                dw ? XNN_FLAG_DEPTHWISE_CONVOLUTION : 0, &ops[i]);
            if (st == xnn_status_success)
                st = xnn_setup_convolution2d_nhwc_f32(ops[i], (size_t)xs->dims[0],
                                                      (size_t)xs->dims[1], (size_t)xs->dims[2],
                                                      buf[n->inputs[0]], buf[n->output], pool);
            break;
        }
        case NN_OP_PRELU: {
            const size_t c = (size_t)xs->dims[xs->rank - 1];
            st = xnn_create_prelu_nc_f32(c, c, c, g->values[n->inputs[1]].data, 0, &ops[i]);
            if (st == xnn_status_success)
                st = xnn_setup_prelu_nc_f32(ops[i], nn_shape_count(xs) / c, buf[n->inputs[0]],
                                            buf[n->output], pool);
            break;
        }
        case NN_OP_ADD: {
            size_t a_dims[4], b_dims[4];
            const nn_shape *bs = &shapes[n->inputs[1]];
            for (int k = 0; k < xs->rank; k++)
                a_dims[k] = (size_t)xs->dims[k];
            for (int k = 0; k < bs->rank; k++)
                b_dims[k] = (size_t)bs->dims[k];
            st = xnn_create_add_nd_f32(act_min(n->attrs.act), act_max(n->attrs.act), 0, &ops[i]);
            if (st == xnn_status_success)
                st = xnn_setup_add_nd_f32(ops[i], (size_t)xs->rank, a_dims, (size_t)bs->rank,
                                          b_dims, buf[n->inputs[0]], buf[n->inputs[1]],
                                          buf[n->output], pool);
            break;
        }
        case NN_OP_RESHAPE:
            free(buf[n->output]);
            buf[n->output] = buf[n->inputs[0]]; /* same bytes, new shape */
            break;
        default:
            fprintf(stderr, "xnnpack_peer: op %s is not mapped\n", nn_op_name(n->op));
            return 1;
        }
        if (st != xnn_status_success) {
            fprintf(stderr, "xnnpack_peer: node %d (%s) failed: %d\n", i, nn_op_name(n->op), st);
            return 1;
        }
    }

    double *t = malloc((size_t)runs * sizeof *t);
    for (int r = -1; r < runs; r++) {
        double t0 = now_ms();
        for (int i = 0; i < g->n_nodes; i++)
            if (ops[i] && xnn_run_operator(ops[i], pool) != xnn_status_success)
                die("run failed");
        if (r >= 0)
            t[r] = now_ms() - t0;
    }
    qsort(t, (size_t)runs, sizeof *t, cmp_double);
    const int out = g->outputs[0];
    float peak = 0.0f;
    for (size_t i = 0; i < nn_shape_count(&shapes[out]); i++)
        peak = fmaxf(peak, fabsf(buf[out][i]));
    printf("xnnpack %d %d %.3f %.3f %.6g\n", batch, threads, t[runs / 2], t[0], (double)peak);
    return 0;
}
