/*
 * backend.c - backend registry and the reference backend (see backend.h).
 */
#include "nn/backend.h"

#include <stdlib.h>
#include <string.h>

#include "common/error.h"

/* ---- reference backend: kernels/ref.h behind the interface ------------ */

typedef struct ref_layer {
    nn_layer_params p;
    float *packed; /* CONV2D: [KH*KW*I][O]; NULL otherwise */
} ref_layer;

static int ref_available(void)
{
    return 1;
}

static void *ref_prepare(const nn_layer_params *p)
{
    ref_layer *l = calloc(1, sizeof *l);
    if (!l)
        return NULL;
    l->p = *p;
    if (p->op == NN_OP_CONV2D) {
        size_t count = (size_t)p->out_c * p->kernel_h * p->kernel_w * p->in_c;
        l->packed = malloc(count * sizeof *l->packed);
        if (!l->packed) {
            free(l);
            return NULL;
        }
        nn_ref_conv2d_pack(p->weights, p->out_c, p->kernel_h, p->kernel_w, p->in_c,
                           l->packed);
    }
    return l;
}

static void ref_release(void *prepared)
{
    ref_layer *l = prepared;
    if (l)
        free(l->packed);
    free(l);
}

static size_t ref_conv2d_scratch(const nn_conv_geom *g, int threads)
{
    (void)threads;
    return nn_ref_conv2d_scratch_floats(g);
}

static void ref_epilogue(const ref_layer *l, float *y, size_t count)
{
    if (l->p.prelu)
        nn_ref_prelu(y, count, l->p.out_c, l->p.prelu, y);
}

static void ref_conv2d(const nn_conv_geom *g, const float *x, const void *prepared,
                       float *scratch, float *y, nn_pool *pool)
{
    const ref_layer *l = prepared;
    (void)pool;
    nn_ref_conv2d(g, x, l->packed, l->p.bias, scratch, y);
    ref_epilogue(l, y, (size_t)g->n * g->out_h * g->out_w * g->out_c);
}

static void ref_depthwise(const nn_conv_geom *g, const float *x, const void *prepared,
                          float *y, nn_pool *pool)
{
    const ref_layer *l = prepared;
    (void)pool;
    nn_ref_depthwise_conv2d(g, x, l->p.weights, l->p.bias, y);
    ref_epilogue(l, y, (size_t)g->n * g->out_h * g->out_w * g->out_c);
}

static void ref_fully_connected(int n, int in_dim, int out_dim, nn_activation act,
                                const float *x, const void *prepared, float *y, nn_pool *pool)
{
    const ref_layer *l = prepared;
    (void)pool;
    nn_ref_fully_connected(n, in_dim, out_dim, x, l->p.weights, l->p.bias, act, y);
    ref_epilogue(l, y, (size_t)n * out_dim);
}

static void ref_pool2d(const nn_conv_geom *g, const float *x, float *y, int is_max, nn_pool *pool)
{
    (void)pool;
    if (is_max)
        nn_ref_max_pool2d(g, x, y);
    else
        nn_ref_avg_pool2d(g, x, y);
}

const nn_backend nn_backend_reference = {
    "reference",  ref_available, ref_prepare,   ref_release,
    ref_conv2d_scratch, ref_conv2d, ref_depthwise, ref_fully_connected,
    ref_pool2d,
};

/* ---- registry ---------------------------------------------------------- */

static const nn_backend *const backends[] = {
    &nn_backend_reference,
    &nn_backend_avx2,
};

#define N_BACKENDS ((int)(sizeof backends / sizeof backends[0]))

const nn_backend *nn_backend_at(int index)
{
    return index >= 0 && index < N_BACKENDS ? backends[index] : NULL;
}

/* Found by name only: not exact, so never listed nor a default. */
static const nn_backend *const by_name_only[] = {
    &nn_backend_avx2_int8,
};

const nn_backend *nn_backend_find(const char *name)
{
    for (int i = 0; name && i < N_BACKENDS; i++)
        if (strcmp(backends[i]->name, name) == 0)
            return backends[i]->available() ? backends[i] : NULL;
    for (size_t i = 0; name && i < sizeof by_name_only / sizeof by_name_only[0]; i++)
        if (strcmp(by_name_only[i]->name, name) == 0)
            return by_name_only[i]->available() ? by_name_only[i] : NULL;
    return NULL;
}

const nn_fused_ops *nn_backend_fused(const nn_backend *backend)
{
    /* avx2-int8 has its own: its blobs are not avx2's, and it fuses only
     * the layers it keeps in fp32. */
    if (backend == &nn_backend_avx2)
        return &nn_fused_avx2;
    return backend == &nn_backend_avx2_int8 ? &nn_fused_avx2_int8 : NULL;
}

const nn_backend *nn_backend_default(facenet_error *err)
{
    const char *want = getenv("FACENET_BACKEND");
    if (want && *want) {
        const nn_backend *b = nn_backend_find(want);
        if (!b)
            fn_fail(err, FACENET_ERR_UNSUPPORTED,
                    "FACENET_BACKEND=%s: no such backend, or this CPU cannot run it", want);
        return b;
    }
    for (int i = N_BACKENDS - 1; i >= 0; i--)
        if (backends[i]->available())
            return backends[i];
    return &nn_backend_reference;
}
