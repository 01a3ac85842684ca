#include "support/dlib_writer.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void reserve(dw_buf *b, size_t more)
{
    if (b->size + more <= b->cap)
        return;
    size_t cap = b->cap ? b->cap : 4096;
    while (cap < b->size + more)
        cap *= 2;
    uint8_t *p = realloc(b->data, cap);
    if (!p) {
        (void)fprintf(stderr, "dlib_writer: out of memory\n");
        abort();
    }
    b->data = p;
    b->cap = cap;
}

static void put_bytes(dw_buf *b, const void *p, size_t n)
{
    reserve(b, n);
    memcpy(b->data + b->size, p, n);
    b->size += n;
}

/* dlib's integer encoding: control byte (size | 0x80 if negative), then
 * the magnitude's bytes, least significant first, at least one. */
void dw_put_int(dw_buf *b, int64_t v)
{
    uint8_t buf[9];
    uint64_t mag = v < 0 ? (uint64_t)0 - (uint64_t)v : (uint64_t)v;
    uint8_t n = 0;
    do {
        buf[++n] = (uint8_t)(mag & 0xFF);
        mag >>= 8;
    } while (mag != 0 && n < 8);
    buf[0] = (uint8_t)(n | (v < 0 ? 0x80 : 0));
    put_bytes(b, buf, (size_t)n + 1);
}

void dw_put_string(dw_buf *b, const char *s)
{
    dw_put_int(b, (int64_t)strlen(s));
    put_bytes(b, s, strlen(s));
}

/* dlib's float_details: mantissa = frac * 2^digits, exponent = e - digits,
 * then whole zero low bytes of the mantissa are shifted off. `digits` is
 * 24 for float fields, 53 for double fields. */
static void put_real(dw_buf *b, double val, int digits)
{
    int e;
    double frac = frexp(val, &e);
    int64_t mantissa = (int64_t)(frac * (double)((uint64_t)1 << digits));
    int64_t exponent = e - digits;
    for (int i = 0; i < 8 && (mantissa & 0xFF) == 0; i++) {
        mantissa /= 256;
        exponent += 8;
    }
    dw_put_int(b, mantissa);
    dw_put_int(b, exponent);
}

static void put_bool(dw_buf *b, int v)
{
    uint8_t c = v ? '1' : '0';
    put_bytes(b, &c, 1);
}

static void put_dims(dw_buf *b, int64_t n, int64_t k, int64_t nr, int64_t nc)
{
    dw_put_int(b, n);
    dw_put_int(b, k);
    dw_put_int(b, nr);
    dw_put_int(b, nc);
}

static void put_tensor(dw_buf *b, const float *v, int64_t n, int64_t k, int64_t nr,
                       int64_t nc)
{
    size_t count = (size_t)(n * k * nr * nc);
    dw_put_int(b, 2);
    put_dims(b, n, k, nr, nc);
    reserve(b, count * 4);
    for (size_t i = 0; i < count; i++) {
        uint32_t bits;
        memcpy(&bits, &v[i], 4);
        for (int s = 0; s < 32; s += 8)
            b->data[b->size++] = (uint8_t)(bits >> s);
    }
}

static void put_alias(dw_buf *b, int64_t n, int64_t k, int64_t nr, int64_t nc)
{
    dw_put_int(b, 1);
    put_dims(b, n, k, nr, nc);
}

static void put_multipliers(dw_buf *b)
{
    put_real(b, 1.0, 53);
    put_real(b, 1.0, 53);
    put_real(b, 1.0, 53);
    put_real(b, 0.0, 53);
}

static size_t param_count(const dlib_layer *l)
{
    switch (l->kind) {
    case DLIB_L_CON:
        return (size_t)l->out_c * l->in_c * l->kernel * l->kernel + (size_t)l->out_c;
    case DLIB_L_AFFINE:
        return 2 * (size_t)l->out_c;
    case DLIB_L_FC:
        return (size_t)l->out_c * l->in_c;
    default:
        return 0;
    }
}

static void put_details(dw_buf *b, const dlib_layer *l, const float *params)
{
    int64_t count = (int64_t)param_count(l);
    switch (l->kind) {
    case DLIB_L_CON:
        dw_put_string(b, "con_4");
        put_tensor(b, params, count, 1, 1, 1);
        dw_put_int(b, l->out_c);
        dw_put_int(b, l->kernel);
        dw_put_int(b, l->kernel);
        dw_put_int(b, l->stride);
        dw_put_int(b, l->stride);
        dw_put_int(b, l->pad);
        dw_put_int(b, l->pad);
        put_alias(b, l->out_c, l->in_c, l->kernel, l->kernel);
        put_alias(b, 1, l->out_c, 1, 1);
        put_multipliers(b);
        break;
    case DLIB_L_AFFINE:
        dw_put_string(b, "affine_");
        put_tensor(b, params, count, 1, 1, 1);
        put_alias(b, 1, l->out_c, 1, 1);
        put_alias(b, 1, l->out_c, 1, 1);
        dw_put_int(b, 0);
        break;
    case DLIB_L_FC:
        dw_put_string(b, "fc_2");
        dw_put_int(b, l->out_c);
        dw_put_int(b, l->in_c);
        put_tensor(b, params, l->in_c, l->out_c, 1, 1);
        put_alias(b, l->in_c, l->out_c, 1, 1);
        put_alias(b, 0, 0, 0, 0);
        dw_put_int(b, 1);
        put_multipliers(b);
        break;
    case DLIB_L_RELU:
        dw_put_string(b, "relu_");
        break;
    case DLIB_L_MAX_POOL:
    case DLIB_L_AVG_POOL:
    case DLIB_L_AVG_POOL_ALL: {
        int all = l->kind == DLIB_L_AVG_POOL_ALL;
        dw_put_string(b, l->kind == DLIB_L_MAX_POOL ? "max_pool_2" : "avg_pool_2");
        dw_put_int(b, all ? 0 : l->kernel);
        dw_put_int(b, all ? 0 : l->kernel);
        dw_put_int(b, all ? 1 : l->stride);
        dw_put_int(b, all ? 1 : l->stride);
        dw_put_int(b, 0);
        dw_put_int(b, 0);
        break;
    }
    case DLIB_L_ADD_PREV1:
    case DLIB_L_ADD_PREV2:
        dw_put_string(b, "add_prev_");
        break;
    default:
        break;
    }
}

void dw_write_resnet(dw_buf *out, dw_params_fn params, void *ctx)
{
    dlib_layer layers[DLIB_RESNET_MAX_LAYERS];
    int n = dlib_resnet_layers(layers);
    const float empty = 0;

    memset(out, 0, sizeof *out);
    dw_put_int(out, 1);
    dw_put_string(out, "loss_metric_2");
    put_real(out, 0.04f, 24);
    put_real(out, 0.6f, 24);
    for (int i = n - 1; i >= 1; i--)
        dw_put_int(out, dlib_layer_is_marker(layers[i].kind) ? 1 : 2);
    dw_put_int(out, 3);
    dw_put_string(out, "input_rgb_image_sized");
    put_real(out, 122.782f, 24);
    put_real(out, 117.001f, 24);
    put_real(out, 104.298f, 24);
    dw_put_int(out, 150);
    dw_put_int(out, 150);
    for (int i = 0; i < n; i++) {
        const dlib_layer *l = &layers[i];
        size_t count = param_count(l);
        float *p = NULL;
        if (dlib_layer_is_marker(l->kind))
            continue;
        if (count) {
            p = calloc(count, sizeof *p);
            if (!p)
                abort();
            params(ctx, i, l, p, count);
        }
        put_details(out, l, p);
        free(p);
        /* dlib marks a layer whose output an in-place relu overwrites. */
        int overwritten = (l->kind == DLIB_L_AFFINE || l->kind == DLIB_L_ADD_PREV1 ||
                           l->kind == DLIB_L_ADD_PREV2) &&
                          i + 1 < n && layers[i + 1].kind == DLIB_L_RELU;
        put_bool(out, 1);
        put_bool(out, 1);
        put_bool(out, overwritten);
        for (int t = 0; t < 3; t++)
            put_tensor(out, &empty, 0, 0, 0, 0);
        if (i == 0)
            dw_put_int(out, 1); /* sample_expansion_factor */
    }
}

void dw_free(dw_buf *b)
{
    free(b->data);
    memset(b, 0, sizeof *b);
}

float dw_synthetic_value(int index, size_t i)
{
    uint32_t h = (uint32_t)index * 2654435761u ^ (uint32_t)i * 2246822519u;
    h ^= h >> 15;
    h *= 2246822519u;
    h ^= h >> 13;
    return ((float)(h % 2001u) - 1000.0f) * 1e-5f;
}

void dw_synthetic_params(void *ctx, int index, const dlib_layer *layer, float *params,
                         size_t count)
{
    (void)ctx;
    (void)layer;
    for (size_t i = 0; i < count; i++)
        params[i] = dw_synthetic_value(index, i);
}
