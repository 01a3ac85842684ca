/*
 * dlib_dat.c - reader for dlib's serialised dlib_face_recognition_resnet_model_v1.dat.
 *
 * dlib writes a network by recursion, each layer serialising the layers
 * below it before its own fields. For the network in dlib_resnet.c that
 * gives this byte order:
 *
 *   loss layer:  int version (1), loss_metric_ details
 *   one int version per layer, from the top layer down (add_layer 2,
 *       tag/skip markers 1), the last one being the layer on the input (2|3)
 *   the input layer (input_rgb_image[_sized]: means, then 150 x 150)
 *   the details of each layer from the input up, each followed by that
 *       add_layer's bookkeeping (three bools, then x_grad, cached_output and
 *       params_grad or grad_final tensors, normally empty)
 *
 * Encodings (dlib/serialize.h): an int is a control byte (low nibble: byte
 * count 0..8, bit 7: negative, bits 4..6 reserved = 0) and that many
 * little-endian magnitude bytes. A string is an int length and the bytes.
 * A bool is the character '0' or '1'. A double/float is two ints: mantissa,
 * then exponent (value = mantissa * 2^exponent). A tensor (version 2) is an
 * int version, four int dims (num_samples, k, nr, nc) and then the values as
 * raw little-endian IEEE float32. An alias_tensor is version 1 + four dims.
 *
 * Parameter layouts: con_ params are [O][I][KH][KW] filters then O biases;
 * affine_ params are gamma[C] then beta[C]; fc_ (no bias) params are
 * [inputs][outputs], y = x W.
 *
 * We walk the topology's layer list and demand, field by field, what that
 * layer must hold: names, versions, sizes, strides and paddings. Every
 * length is checked against the bytes left before it is used. The file is
 * read completely (and must end exactly) before the graph is built.
 */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/error.h"
#include "nn/import/dlib_resnet.h"
#include "nn/import/import.h"

/* The per-channel means dlib's input layer subtracts; the manifest pins the
 * same values for the caller's preprocessing, so a file with other means
 * would silently give wrong embeddings. */
static const double expected_means[3] = {122.782, 117.001, 104.298};

typedef struct param_ref {
    const uint8_t *values; /* raw float32 LE in the file, or NULL */
    int has_bias;          /* con_: biases present in params      */
    int disabled;          /* affine_: folded into the conv       */
} param_ref;

typedef struct reader {
    const uint8_t *data;
    size_t size, pos;
    facenet_error *err;
    char where[96]; /* the layer being read, for messages */
} reader;

static void set_fail(reader *r, facenet_status code, const char *fmt, ...)
    FN_PRINTF(3, 4);

/* A macro around set_fail, like fn_fail, so analysers see `code` returned. */
#define fail(r, code, ...) fn_status_of((set_fail((r), (code), __VA_ARGS__), (code)))

static void set_fail(reader *r, facenet_status code, const char *fmt, ...)
{
    char msg[320];
    va_list ap;
    va_start(ap, fmt);
    (void)vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    fn_set_error(r->err, code, "dlib .dat: %s, offset %zu: %s", r->where, r->pos, msg);
}

static void set_where(reader *r, int index, int n_layers, const dlib_layer *l)
{
    if (index < 0)
        (void)snprintf(r->where, sizeof r->where, "%s", l ? l->name : "header");
    else
        (void)snprintf(r->where, sizeof r->where, "layer %d of %d (%s%s%s)", index, n_layers,
                 dlib_layer_kind_name(l->kind), l->name[0] ? " " : "", l->name);
}

/* ---- primitives --------------------------------------------------------- */

static facenet_status read_int(reader *r, const char *what, int64_t *out)
{
    uint64_t magnitude = 0;
    *out = 0;
    if (r->pos >= r->size)
        return fail(r, FACENET_ERR_FORMAT, "truncated: %s is missing", what);
    uint8_t control = r->data[r->pos];
    unsigned n = control & 0x0F;
    if ((control & 0x70) != 0 || n > 8)
        return fail(r, FACENET_ERR_FORMAT, "%s: bad integer control byte 0x%02x", what,
                    control);
    if (r->size - r->pos - 1 < n)
        return fail(r, FACENET_ERR_FORMAT, "truncated inside %s (%u bytes needed)", what, n);
    for (unsigned i = n; i > 0; i--)
        magnitude = (magnitude << 8) | r->data[r->pos + i];
    if (magnitude > (uint64_t)INT64_MAX)
        return fail(r, FACENET_ERR_FORMAT, "%s does not fit in 64 bits", what);
    r->pos += 1 + n;
    *out = (control & 0x80) ? -(int64_t)magnitude : (int64_t)magnitude;
    return FACENET_OK;
}

static facenet_status expect_int(reader *r, const char *what, int64_t expected)
{
    int64_t v = 0;
    size_t at = r->pos;
    facenet_status st = read_int(r, what, &v);
    if (st != FACENET_OK)
        return st;
    if (v != expected) {
        r->pos = at;
        return fail(r, FACENET_ERR_FORMAT, "%s is %lld, expected %lld", what, (long long)v,
                    (long long)expected);
    }
    return FACENET_OK;
}

static facenet_status read_double(reader *r, const char *what, double *out)
{
    int64_t mantissa = 0, exponent = 0;
    facenet_status st = read_int(r, what, &mantissa);
    if (st == FACENET_OK)
        st = read_int(r, what, &exponent);
    if (st != FACENET_OK)
        return st;
    /* dlib's exponent is a short; it marks inf/nan with extreme values. */
    if (exponent < -1100 || exponent > 1100)
        return fail(r, FACENET_ERR_FORMAT, "%s is not a finite number", what);
    *out = ldexp((double)mantissa, (int)exponent);
    return FACENET_OK;
}

static facenet_status skip_doubles(reader *r, const char *what, int count)
{
    double unused;
    for (int i = 0; i < count; i++) {
        facenet_status st = read_double(r, what, &unused);
        if (st != FACENET_OK)
            return st;
    }
    return FACENET_OK;
}

static facenet_status read_bool(reader *r, const char *what, int *out)
{
    if (r->pos >= r->size)
        return fail(r, FACENET_ERR_FORMAT, "truncated: %s is missing", what);
    uint8_t c = r->data[r->pos];
    if (c != '0' && c != '1')
        return fail(r, FACENET_ERR_FORMAT, "%s: bad bool byte 0x%02x", what, c);
    r->pos++;
    *out = c == '1';
    return FACENET_OK;
}

/* A string into buf (NUL-terminated); longer than buf is a format error. */
static facenet_status read_string(reader *r, const char *what, char *buf, size_t cap)
{
    int64_t len;
    facenet_status st = read_int(r, what, &len);
    if (st != FACENET_OK)
        return st;
    if (len < 0 || (uint64_t)len >= cap)
        return fail(r, FACENET_ERR_FORMAT, "%s: length %lld is not plausible", what,
                    (long long)len);
    if (r->size - r->pos < (size_t)len)
        return fail(r, FACENET_ERR_FORMAT, "truncated inside %s (%lld bytes needed)", what,
                    (long long)len);
    memcpy(buf, r->data + r->pos, (size_t)len);
    buf[len] = '\0';
    r->pos += (size_t)len;
    return FACENET_OK;
}

/* Reads a layer's version string and checks it is one of `accepted`
 * (NULL-terminated); *which is its index. */
static facenet_status read_version(reader *r, const char *const *accepted, int *which)
{
    char name[64];
    size_t at = r->pos;
    facenet_status st = read_string(r, "layer type name", name, sizeof name);
    if (st != FACENET_OK)
        return st;
    for (int i = 0; accepted[i]; i++) {
        if (strcmp(name, accepted[i]) == 0) {
            if (which)
                *which = i;
            return FACENET_OK;
        }
    }
    r->pos = at;
    for (size_t i = 0; name[i]; i++)
        if (name[i] < 0x20 || name[i] > 0x7e)
            name[i] = '?';
    return fail(r, FACENET_ERR_FORMAT, "found a '%s' layer, expected '%s'", name,
                accepted[0]);
}

static facenet_status read_dims(reader *r, const char *what, int64_t dims[4])
{
    static const char *const dim_names[4] = {"num_samples", "k", "nr", "nc"};
    char field[96];
    for (int i = 0; i < 4; i++) {
        (void)snprintf(field, sizeof field, "%s %s", what, dim_names[i]);
        facenet_status st = read_int(r, field, &dims[i]);
        if (st != FACENET_OK)
            return st;
        if (dims[i] < 0 || dims[i] > (1 << 30))
            return fail(r, FACENET_ERR_FORMAT, "%s = %lld is out of range", field,
                        (long long)dims[i]);
    }
    return FACENET_OK;
}

/* A serialised tensor: its element count and where its floats start. */
static facenet_status read_tensor(reader *r, const char *what, size_t *count,
                                  const uint8_t **values)
{
    int64_t version = 0, dims[4];
    size_t at = r->pos;
    facenet_status st = read_int(r, what, &version);
    if (st != FACENET_OK)
        return st;
    if (version != 2) {
        r->pos = at;
        return fail(r, version == 1 ? FACENET_ERR_UNSUPPORTED : FACENET_ERR_FORMAT,
                    "%s: tensor version %lld (only version 2, raw float32, is read)",
                    what, (long long)version);
    }
    st = read_dims(r, what, dims);
    if (st != FACENET_OK)
        return st;
    /* Each dim is <= 2^30; multiply with an overflow check. */
    uint64_t n = 1;
    for (int i = 0; i < 4; i++) {
        n *= (uint64_t)dims[i];
        if (n > ((uint64_t)1 << 40))
            return fail(r, FACENET_ERR_FORMAT, "%s: %lld x %lld x %lld x %lld values is too many",
                        what, (long long)dims[0], (long long)dims[1], (long long)dims[2],
                        (long long)dims[3]);
    }
    if ((r->size - r->pos) / 4 < n)
        return fail(r, FACENET_ERR_FORMAT,
                    "truncated inside %s: %llu floats declared, %zu bytes left", what,
                    (unsigned long long)n, r->size - r->pos);
    *count = (size_t)n;
    *values = r->data + r->pos;
    r->pos += (size_t)n * 4;
    return FACENET_OK;
}

static facenet_status expect_tensor_count(reader *r, const char *what, size_t expected,
                                          const uint8_t **values)
{
    size_t count;
    size_t at = r->pos;
    facenet_status st = read_tensor(r, what, &count, values);
    if (st != FACENET_OK)
        return st;
    if (count != expected) {
        r->pos = at;
        return fail(r, FACENET_ERR_FORMAT, "%s has %zu values, expected %zu", what, count,
                    expected);
    }
    return FACENET_OK;
}

/* An alias_tensor: version 1 and four dims that must equal `expected`
 * (a NULL expected accepts any dims whose product is 0: an unused alias). */
static facenet_status expect_alias(reader *r, const char *what, const int64_t *expected)
{
    int64_t dims[4];
    size_t at = r->pos;
    facenet_status st = expect_int(r, what, 1);
    if (st == FACENET_OK)
        st = read_dims(r, what, dims);
    if (st != FACENET_OK)
        return st;
    int ok = 1;
    if (expected) {
        for (int i = 0; i < 4; i++)
            ok &= dims[i] == expected[i];
    } else {
        ok = dims[0] * dims[1] * dims[2] * dims[3] == 0;
    }
    if (!ok) {
        r->pos = at;
        if (expected)
            return fail(r, FACENET_ERR_FORMAT,
                        "%s is [%lld,%lld,%lld,%lld], expected [%lld,%lld,%lld,%lld]", what,
                        (long long)dims[0], (long long)dims[1], (long long)dims[2],
                        (long long)dims[3], (long long)expected[0], (long long)expected[1],
                        (long long)expected[2], (long long)expected[3]);
        return fail(r, FACENET_ERR_FORMAT, "%s should be empty", what);
    }
    return FACENET_OK;
}

/* ---- layers ------------------------------------------------------------- */

static facenet_status read_con(reader *r, const dlib_layer *l, param_ref *ref)
{
    static const char *const versions[] = {"con_4", "con_5", NULL};
    const int64_t o = l->out_c, i = l->in_c, k = l->kernel;
    const int64_t filters[4] = {o, i, k, k}, biases[4] = {1, o, 1, 1};
    size_t count;
    int version, use_bias = 1;
    facenet_status st = read_version(r, versions, &version);
    if (st != FACENET_OK)
        return st;
    size_t at = r->pos;
    if ((st = read_tensor(r, "params", &count, &ref->values)) != FACENET_OK)
        return st;
    /* Sizes from the topology: small, no overflow. */
    const size_t n_filters = (size_t)(o * i * k * k), n_all = n_filters + (size_t)o;
    if (count != n_all && count != n_filters) {
        r->pos = at;
        return fail(r, FACENET_ERR_FORMAT, "params has %zu values, expected %zu", count,
                    n_all);
    }
    ref->has_bias = count == n_all;
    if ((st = expect_int(r, "num_filters", o)) != FACENET_OK ||
        (st = expect_int(r, "nr", k)) != FACENET_OK ||
        (st = expect_int(r, "nc", k)) != FACENET_OK ||
        (st = expect_int(r, "stride_y", l->stride)) != FACENET_OK ||
        (st = expect_int(r, "stride_x", l->stride)) != FACENET_OK ||
        (st = expect_int(r, "padding_y", l->pad)) != FACENET_OK ||
        (st = expect_int(r, "padding_x", l->pad)) != FACENET_OK ||
        (st = expect_alias(r, "filters", filters)) != FACENET_OK ||
        (st = expect_alias(r, "biases", ref->has_bias ? biases : NULL)) != FACENET_OK ||
        (st = skip_doubles(r, "learning rate multipliers", 4)) != FACENET_OK)
        return st;
    if (version == 1 && (st = read_bool(r, "use_bias", &use_bias)) != FACENET_OK)
        return st;
    if (use_bias != ref->has_bias)
        return fail(r, FACENET_ERR_FORMAT, "use_bias is %d but params %s biases", use_bias,
                    ref->has_bias ? "hold" : "lack");
    return FACENET_OK;
}

static facenet_status read_affine(reader *r, const dlib_layer *l, param_ref *ref)
{
    static const char *const versions[] = {"affine_", "affine_2", "bn_con2", "bn_fc2", NULL};
    const int64_t gamma[4] = {1, l->out_c, 1, 1};
    size_t count;
    int64_t mode;
    int version;
    facenet_status st = read_version(r, versions, &version);
    if (st != FACENET_OK)
        return st;
    if (version >= 2)
        return fail(r, FACENET_ERR_UNSUPPORTED,
                    "batch normalisation in training form; only affine_ layers are run");
    size_t at = r->pos;
    if ((st = read_tensor(r, "params", &count, &ref->values)) != FACENET_OK ||
        (st = expect_alias(r, "gamma", gamma)) != FACENET_OK ||
        (st = expect_alias(r, "beta", gamma)) != FACENET_OK)
        return st;
    if ((st = read_int(r, "mode", &mode)) != FACENET_OK)
        return st;
    if (mode != 0)
        return fail(r, FACENET_ERR_UNSUPPORTED, "affine mode %lld (only per-channel, 0)",
                    (long long)mode);
    if (version == 1 && (st = read_bool(r, "is_disabled", &ref->disabled)) != FACENET_OK)
        return st;
    /* A disabled affine (folded into its conv) has no params left. */
    if (count != (ref->disabled ? 0 : (size_t)(2 * l->out_c))) {
        r->pos = at;
        return fail(r, FACENET_ERR_FORMAT, "params has %zu values, expected %d", count,
                    ref->disabled ? 0 : 2 * l->out_c);
    }
    if (ref->disabled)
        ref->values = NULL;
    return FACENET_OK;
}

static facenet_status read_pool(reader *r, const char *version, int kernel, int stride)
{
    const char *const versions[] = {version, NULL};
    facenet_status st = read_version(r, versions, NULL);
    if (st != FACENET_OK ||
        (st = expect_int(r, "nr", kernel)) != FACENET_OK ||
        (st = expect_int(r, "nc", kernel)) != FACENET_OK ||
        (st = expect_int(r, "stride_y", stride)) != FACENET_OK ||
        (st = expect_int(r, "stride_x", stride)) != FACENET_OK ||
        (st = expect_int(r, "padding_y", 0)) != FACENET_OK ||
        (st = expect_int(r, "padding_x", 0)) != FACENET_OK)
        return st;
    return FACENET_OK;
}

static facenet_status read_fc(reader *r, const dlib_layer *l, param_ref *ref)
{
    static const char *const versions[] = {"fc_2", "fc_3", NULL};
    const int64_t weights[4] = {l->in_c, l->out_c, 1, 1};
    int version, use_bias;
    facenet_status st = read_version(r, versions, &version);
    if (st != FACENET_OK ||
        (st = expect_int(r, "num_outputs", l->out_c)) != FACENET_OK ||
        (st = expect_int(r, "num_inputs", l->in_c)) != FACENET_OK ||
        (st = expect_tensor_count(r, "params", (size_t)l->in_c * (size_t)l->out_c,
                                  &ref->values)) != FACENET_OK ||
        (st = expect_alias(r, "weights", weights)) != FACENET_OK ||
        (st = expect_alias(r, "biases", NULL)) != FACENET_OK ||
        (st = expect_int(r, "bias_mode (1: no bias)", 1)) != FACENET_OK ||
        (st = skip_doubles(r, "learning rate multipliers", 4)) != FACENET_OK)
        return st;
    if (version == 1 && (st = read_bool(r, "use_bias", &use_bias)) != FACENET_OK)
        return st;
    return FACENET_OK;
}

static facenet_status read_details(reader *r, const dlib_layer *l, param_ref *ref)
{
    static const char *const relu[] = {"relu_", NULL};
    static const char *const add_prev[] = {"add_prev_", NULL};
    switch (l->kind) {
    case DLIB_L_CON: return read_con(r, l, ref);
    case DLIB_L_AFFINE: return read_affine(r, l, ref);
    case DLIB_L_FC: return read_fc(r, l, ref);
    case DLIB_L_RELU: return read_version(r, relu, NULL);
    case DLIB_L_MAX_POOL: return read_pool(r, "max_pool_2", l->kernel, l->stride);
    case DLIB_L_AVG_POOL: return read_pool(r, "avg_pool_2", l->kernel, l->stride);
    case DLIB_L_AVG_POOL_ALL: return read_pool(r, "avg_pool_2", 0, 1);
    case DLIB_L_ADD_PREV1:
    case DLIB_L_ADD_PREV2: return read_version(r, add_prev, NULL);
    case DLIB_L_TAG1:
    case DLIB_L_TAG2:
    case DLIB_L_SKIP1: break;
    }
    return fail(r, FACENET_ERR_INTERNAL, "layer kind %d has no details", (int)l->kind);
}

/* add_layer's own state after its details: three bools and three tensors
 * (x_grad, cached_output, then params_grad or, for the layer on the input,
 * grad_final). They are normally empty; any content is skipped. */
static facenet_status skip_bookkeeping(reader *r)
{
    static const char *const names[3] = {"x_grad", "cached_output", "params_grad"};
    size_t count;
    const uint8_t *values;
    int flag;
    for (int i = 0; i < 3; i++) {
        facenet_status st = read_bool(r, "add_layer flag", &flag);
        if (st != FACENET_OK)
            return st;
    }
    for (int i = 0; i < 3; i++) {
        facenet_status st = read_tensor(r, names[i], &count, &values);
        if (st != FACENET_OK)
            return st;
    }
    return FACENET_OK;
}

static facenet_status read_input_layer(reader *r)
{
    static const char *const versions[] = {"input_rgb_image_sized", "input_rgb_image", NULL};
    static const char *const mean_names[3] = {"avg_red", "avg_green", "avg_blue"};
    int version;
    facenet_status st = read_version(r, versions, &version);
    if (st != FACENET_OK)
        return st;
    for (int c = 0; c < 3; c++) {
        double mean;
        if ((st = read_double(r, mean_names[c], &mean)) != FACENET_OK)
            return st;
        if (fabs(mean - expected_means[c]) > 1e-3)
            return fail(r, FACENET_ERR_UNSUPPORTED,
                        "%s is %g; this network is run with the mean %g", mean_names[c], mean,
                        expected_means[c]);
    }
    if (version == 0 &&
        ((st = expect_int(r, "input rows", DLIB_RESNET_INPUT_SIZE)) != FACENET_OK ||
         (st = expect_int(r, "input columns", DLIB_RESNET_INPUT_SIZE)) != FACENET_OK))
        return st;
    return FACENET_OK;
}

static facenet_status read_loss(reader *r)
{
    static const char *const versions[] = {"loss_metric_2", "loss_metric_", NULL};
    int version;
    facenet_status st = expect_int(r, "loss layer version", 1);
    if (st == FACENET_OK)
        st = read_version(r, versions, &version);
    if (st == FACENET_OK && version == 0)
        st = skip_doubles(r, "margin and distance threshold", 2);
    return st;
}

/* The whole file: fills refs[i] for every parameter layer i. */
static facenet_status read_network(reader *r, const dlib_layer *layers, int n,
                                   param_ref *refs)
{
    int64_t input_version;
    facenet_status st;

    set_where(r, -1, n, NULL);
    if ((st = read_loss(r)) != FACENET_OK)
        return st;
    /* Versions, from the top layer down to the one above the input. */
    for (int i = n - 1; i >= 1; i--) {
        set_where(r, i, n, &layers[i]);
        st = expect_int(r, dlib_layer_is_marker(layers[i].kind) ? "tag/skip version"
                                                                 : "add_layer version",
                        dlib_layer_is_marker(layers[i].kind) ? 1 : 2);
        if (st != FACENET_OK)
            return st;
    }
    set_where(r, 0, n, &layers[0]);
    if ((st = read_int(r, "add_layer version", &input_version)) != FACENET_OK)
        return st;
    if (input_version != 2 && input_version != 3)
        return fail(r, FACENET_ERR_UNSUPPORTED, "add_layer version %lld on the input",
                    (long long)input_version);
    (void)snprintf(r->where, sizeof r->where, "input layer");
    if ((st = read_input_layer(r)) != FACENET_OK)
        return st;
    for (int i = 0; i < n; i++) {
        if (dlib_layer_is_marker(layers[i].kind))
            continue;
        set_where(r, i, n, &layers[i]);
        if ((st = read_details(r, &layers[i], &refs[i])) != FACENET_OK ||
            (st = skip_bookkeeping(r)) != FACENET_OK)
            return st;
        if (i == 0 && input_version == 3) {
            int64_t factor;
            if ((st = read_int(r, "sample_expansion_factor", &factor)) != FACENET_OK)
                return st;
        }
    }
    (void)snprintf(r->where, sizeof r->where, "end of file");
    if (r->pos != r->size)
        return fail(r, FACENET_ERR_FORMAT, "%zu unexpected bytes after the network",
                    r->size - r->pos);
    return FACENET_OK;
}

/* ---- conversion to the canonical layouts -------------------------------- */

static float load_f32le(const uint8_t *p)
{
    uint32_t bits = (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
                    (uint32_t)p[3] << 24;
    float f;
    memcpy(&f, &bits, sizeof f);
    return f;
}

typedef struct fill_ctx {
    const param_ref *refs;
    int n_layers;
} fill_ctx;

static facenet_status check_finite(const float *v, size_t n, int index, int n_layers,
                                   const dlib_layer *l, facenet_error *err)
{
    for (size_t i = 0; i < n; i++)
        if (!isfinite(v[i]))
            return fn_fail(err, FACENET_ERR_FORMAT,
                           "dlib .dat: layer %d of %d (%s %s): value %zu is not finite",
                           index, n_layers, dlib_layer_kind_name(l->kind), l->name, i);
    return FACENET_OK;
}

static facenet_status fill_from_dat(void *ctx, int index, const dlib_layer *l, float *a,
                                    float *b, facenet_error *err)
{
    const fill_ctx *fc = ctx;
    const param_ref *ref = &fc->refs[index];
    const int o = l->out_c, in = l->in_c, k = l->kernel;

    switch (l->kind) {
    case DLIB_L_CON: {
        /* OIHW -> OHWI */
        size_t wcount = (size_t)o * (size_t)in * (size_t)k * (size_t)k;
        for (int oc = 0; oc < o; oc++)
            for (int ic = 0; ic < in; ic++)
                for (int y = 0; y < k; y++)
                    for (int x = 0; x < k; x++) {
                        size_t src = (((size_t)oc * in + ic) * k + y) * k + x;
                        size_t dst = (((size_t)oc * k + y) * k + x) * in + ic;
                        a[dst] = load_f32le(ref->values + 4 * src);
                    }
        for (int oc = 0; oc < o; oc++)
            b[oc] = ref->has_bias ? load_f32le(ref->values + 4 * (wcount + (size_t)oc)) : 0.0f;
        facenet_status st = check_finite(a, wcount, index, fc->n_layers, l, err);
        return st != FACENET_OK ? st : check_finite(b, (size_t)o, index, fc->n_layers, l, err);
    }
    case DLIB_L_AFFINE:
        for (int c = 0; c < o; c++) {
            a[c] = ref->disabled ? 1.0f : load_f32le(ref->values + 4 * (size_t)c);
            b[c] = ref->disabled ? 0.0f : load_f32le(ref->values + 4 * (size_t)(o + c));
        }
        if (check_finite(a, (size_t)o, index, fc->n_layers, l, err) != FACENET_OK)
            return FACENET_ERR_FORMAT;
        return check_finite(b, (size_t)o, index, fc->n_layers, l, err);
    case DLIB_L_FC:
        /* [I][O] (y = x W) -> [O][I] */
        for (int oc = 0; oc < o; oc++)
            for (int ic = 0; ic < in; ic++)
                a[(size_t)oc * in + ic] = load_f32le(ref->values + 4 * ((size_t)ic * o + oc));
        return check_finite(a, (size_t)o * in, index, fc->n_layers, l, err);
    default:
        return fn_fail(err, FACENET_ERR_INTERNAL, "dlib .dat: layer %d has no parameters",
                       index);
    }
}

facenet_status nn_import_dlib_dat(const uint8_t *data, size_t size, nn_graph **out,
                                  facenet_error *err)
{
    dlib_layer layers[DLIB_RESNET_MAX_LAYERS];
    param_ref refs[DLIB_RESNET_MAX_LAYERS];
    facenet_error local;
    reader r;

    if (!err)
        err = &local;
    if (!out)
        return fn_fail(err, FACENET_ERR_INVALID_ARGUMENT, "dlib .dat: out is NULL");
    *out = NULL;
    if (!data && size > 0)
        return fn_fail(err, FACENET_ERR_INVALID_ARGUMENT, "dlib .dat: data is NULL");
    int n = dlib_resnet_layers(layers);
    memset(refs, 0, sizeof refs);
    memset(&r, 0, sizeof r);
    r.data = data;
    r.size = size;
    r.err = err;
    facenet_status st = read_network(&r, layers, n, refs);
    if (st != FACENET_OK)
        return st;
    fill_ctx ctx = {refs, n};
    return dlib_resnet_build(fill_from_dat, &ctx, out, err);
}
