/*
 * Tests of the dlib ResNet: its topology, the .dat and TF.js importers on
 * synthetic files (always run) and on the pinned model files (skipped when
 * absent unless FACENET_REQUIRE_MODELS=1), and golden parity through the
 * public API.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/error.h"
#include "common/fileio.h"
#include "nn/import/dlib_resnet.h"
#include "nn/import/import.h"
#include "nn/import/tfjs.h"
#include "support/dlib_writer.h"
#include "support/testutil.h"

#define DAT_FILE "dlib_face_recognition_resnet_model_v1.dat"
#define TFJS_MANIFEST "face_recognition_model-weights_manifest.json"
#define TFJS_SHARD "face_recognition_model.bin"

/* ---- helpers ------------------------------------------------------------ */

/* Skip this test (not the whole binary) when a model file is absent, or
 * fail when models are required. */
static int model_file(const char *file, char *path, size_t size)
{
    char dir[4096];
    struct stat st;
    const char *req = getenv("FACENET_REQUIRE_MODELS");
    int required = req && strcmp(req, "1") == 0;

    if (facenet_model_dir(dir, sizeof dir, NULL) == FACENET_OK) {
        (void)snprintf(path, size, "%s/%s", dir, file);
        if (stat(path, &st) == 0)
            return 1;
    }
    if (required)
        fail_msg("model file %s is required (FACENET_REQUIRE_MODELS=1)", file);
    return 0;
}

#define NEED_MODEL(file, path)                                       \
    do {                                                             \
        if (!model_file((file), (path), sizeof(path))) {             \
            skip();                                                  \
            return;                                                  \
        }                                                            \
    } while (0)

static const nn_value *find_value(const nn_graph *g, const char *name)
{
    for (int i = 0; i < g->n_values; i++)
        if (strcmp(g->values[i].name, name) == 0)
            return &g->values[i];
    fail_msg("no tensor '%s' in the graph", name);
    return NULL;
}

static nn_graph *import_dat(const uint8_t *data, size_t size)
{
    nn_graph *g = NULL;
    facenet_error err;
    facenet_status st = nn_import_dlib_dat(data, size, &g, &err);
    if (st != FACENET_OK)
        fail_msg("dlib .dat import failed: %s", err.message);
    return g;
}

/* ---- topology ------------------------------------------------------------ */

static facenet_status fill_constant(void *ctx, int index, const dlib_layer *l, float *a,
                                    float *b, facenet_error *err)
{
    int *calls = ctx;
    (void)index;
    (void)err;
    (*calls)++;
    a[0] = 1.0f;
    if (b)
        b[l->out_c - 1] = 2.0f;
    return FACENET_OK;
}

static void test_topology(void **state)
{
    dlib_layer layers[DLIB_RESNET_MAX_LAYERS];
    int n = dlib_resnet_layers(layers), con = 0, affine = 0, fc = 0, calls = 0;
    nn_graph *g = NULL;
    facenet_error err;
    (void)state;

    assert_true(n > 0 && n <= DLIB_RESNET_MAX_LAYERS);
    for (int i = 0; i < n; i++) {
        con += layers[i].kind == DLIB_L_CON;
        affine += layers[i].kind == DLIB_L_AFFINE;
        fc += layers[i].kind == DLIB_L_FC;
        if (layers[i].kind == DLIB_L_AFFINE) {
            /* every affine directly follows its conv, same name and width */
            assert_int_equal(layers[i - 1].kind, DLIB_L_CON);
            assert_string_equal(layers[i - 1].name, layers[i].name);
            assert_int_equal(layers[i - 1].out_c, layers[i].out_c);
        }
    }
    /* face-api's manifest: 29 convs x 4 tensors + fc = 117 */
    assert_int_equal(con, 29);
    assert_int_equal(affine, 29);
    assert_int_equal(fc, 1);

    assert_int_equal(dlib_resnet_build(fill_constant, &calls, &g, &err), FACENET_OK);
    assert_int_equal(calls, 59);
    assert_int_equal(g->n_outputs, 1);
    const nn_value *out = &g->values[g->outputs[0]];
    assert_string_equal(out->name, "embedding");
    assert_int_equal(out->shape.rank, 2);
    assert_int_equal(out->shape.dims[1], 128);
    /* the spatial sizes of the README: 150 -> 72 -> 35 -> 17 -> 8 -> 4 -> 2 */
    assert_int_equal(find_value(g, "conv32_down/conv")->shape.dims[1], 72);
    assert_int_equal(find_value(g, "conv32_1/conv1/conv")->shape.dims[1], 35);
    assert_int_equal(find_value(g, "conv64_down/conv1/conv")->shape.dims[1], 17);
    assert_int_equal(find_value(g, "conv128_down/conv1/conv")->shape.dims[1], 8);
    /* the 256 down block: conv path 3x3 against a 4x4 shortcut */
    assert_int_equal(find_value(g, "conv256_down/conv2/conv")->shape.dims[1], 3);
    assert_int_equal(find_value(g, "conv256_1/conv1/conv")->shape.dims[1], 4);
    assert_int_equal(find_value(g, "conv256_down_out/conv2/conv")->shape.dims[1], 1);
    assert_int_equal(find_value(g, "spatial_mean")->shape.dims[1], 256);
    /* stride-1 convs pad 1, down convs and the stem do not */
    for (int i = 0; i < g->n_nodes; i++) {
        const nn_node *node = &g->nodes[i];
        if (node->op != NN_OP_CONV2D)
            continue;
        if (node->attrs.conv.stride_h == 1) {
            assert_int_equal(node->attrs.conv.padding, NN_PAD_EXPLICIT);
            assert_int_equal(node->attrs.conv.pad_top, 1);
            assert_int_equal(node->attrs.conv.pad_right, 1);
        } else {
            assert_int_equal(node->attrs.conv.padding, NN_PAD_VALID);
        }
    }
    /* the fill's values land in the constants */
    assert_true(find_value(g, "conv64_1/conv2/conv/filters")->data[0] == 1.0f);
    assert_true(find_value(g, "conv64_1/conv2/scale/biases")->data[63] == 2.0f);
    nn_graph_free(g);
}

static facenet_status fill_failing(void *ctx, int index, const dlib_layer *l, float *a,
                                   float *b, facenet_error *err)
{
    (void)ctx;
    (void)a;
    (void)b;
    if (index > 40)
        return fn_fail(err, FACENET_ERR_FORMAT, "no data for %s", l->name);
    return FACENET_OK;
}

static void test_build_passes_fill_errors_on(void **state)
{
    nn_graph *g = (nn_graph *)state; /* any non-NULL value */
    facenet_error err;
    (void)state;
    assert_int_equal(dlib_resnet_build(fill_failing, NULL, &g, &err), FACENET_ERR_FORMAT);
    assert_null(g);
    assert_non_null(strstr(err.message, "no data for conv64_"));
    /* a NULL err is allowed */
    assert_int_equal(dlib_resnet_build(fill_failing, NULL, &g, NULL), FACENET_ERR_FORMAT);
}

/* ---- .dat: synthetic files ------------------------------------------------ */

/* Check every parameter of g against dw_synthetic_value in dlib's layouts:
 * an independent statement of the OIHW -> OHWI and [I][O] -> [O][I] maps. */
static void check_synthetic_weights(const nn_graph *g)
{
    dlib_layer layers[DLIB_RESNET_MAX_LAYERS];
    int n = dlib_resnet_layers(layers);
    char name[96];

    for (int li = 0; li < n; li++) {
        const dlib_layer *l = &layers[li];
        const int o = l->out_c, in = l->in_c, k = l->kernel;
        if (l->kind == DLIB_L_CON) {
            (void)snprintf(name, sizeof name, "%s/conv/filters", l->name);
            const float *w = find_value(g, name)->data;
            for (int oc = 0; oc < o; oc++)
                for (int ic = 0; ic < in; ic++)
                    for (int y = 0; y < k; y++)
                        for (int x = 0; x < k; x++) {
                            size_t oihw = (((size_t)oc * in + ic) * k + y) * k + x;
                            size_t ohwi = (((size_t)oc * k + y) * k + x) * in + ic;
                            if (w[ohwi] != dw_synthetic_value(li, oihw))
                                fail_msg("%s: weight o=%d i=%d y=%d x=%d differs", name, oc,
                                         ic, y, x);
                        }
            (void)snprintf(name, sizeof name, "%s/conv/bias", l->name);
            const float *bias = find_value(g, name)->data;
            for (int oc = 0; oc < o; oc++)
                assert_true(bias[oc] ==
                            dw_synthetic_value(li, (size_t)o * in * k * k + (size_t)oc));
        } else if (l->kind == DLIB_L_AFFINE) {
            (void)snprintf(name, sizeof name, "%s/scale/weights", l->name);
            const float *scale = find_value(g, name)->data;
            (void)snprintf(name, sizeof name, "%s/scale/biases", l->name);
            const float *shift = find_value(g, name)->data;
            for (int c = 0; c < o; c++) {
                assert_true(scale[c] == dw_synthetic_value(li, (size_t)c));
                assert_true(shift[c] == dw_synthetic_value(li, (size_t)(o + c)));
            }
        } else if (l->kind == DLIB_L_FC) {
            const float *w = find_value(g, "fc/weights")->data;
            for (int oc = 0; oc < o; oc++)
                for (int ic = 0; ic < in; ic++)
                    assert_true(w[(size_t)oc * in + ic] ==
                                dw_synthetic_value(li, (size_t)ic * o + oc));
        }
    }
}

static dw_buf synthetic_dat(void)
{
    dw_buf b;
    dw_write_resnet(&b, dw_synthetic_params, NULL);
    return b;
}

static void test_dat_synthetic(void **state)
{
    dw_buf b = synthetic_dat();
    (void)state;
    nn_graph *g = import_dat(b.data, b.size);
    assert_true(g->finalized);
    check_synthetic_weights(g);
    nn_graph_free(g);
    dw_free(&b);
}

/* Import must fail with `code`, a message, *out NULL, and no crash. */
static void expect_dat_error(const uint8_t *data, size_t size, facenet_status code,
                             const char *needle)
{
    nn_graph *g = (nn_graph *)&g;
    facenet_error err;
    memset(&err, 0, sizeof err);
    facenet_status st = nn_import_dlib_dat(data, size, &g, &err);
    if (st != code)
        fail_msg("%zu bytes: status %d (%s), expected %d", size, st, err.message, code);
    assert_null(g);
    assert_non_null(strstr(err.message, "dlib .dat"));
    if (needle && !strstr(err.message, needle))
        fail_msg("message '%s' does not mention '%s'", err.message, needle);
}

/* Offset of the first occurrence of a byte string (the tests' landmarks). */
static size_t find_bytes(const dw_buf *b, const void *needle, size_t len, size_t from)
{
    for (size_t i = from; i + len <= b->size; i++)
        if (memcmp(b->data + i, needle, len) == 0)
            return i;
    fail_msg("landmark not found");
    return 0;
}

static void test_dat_truncations(void **state)
{
    dw_buf b = synthetic_dat();
    (void)state;
    /* Every prefix through the header, the input layer and the first con_
     * up to well inside its params tensor. */
    size_t first_params = find_bytes(&b, "con_4", 5, 0) + 5;
    for (size_t n = 0; n < first_params + 64; n++)
        expect_dat_error(b.data, n, FACENET_ERR_FORMAT, "truncated");
    /* Then points spread over the whole file, landing inside tensors,
     * inside small fields and one byte short of the end. */
    for (size_t n = first_params; n < b.size; n += b.size / 997 + 1)
        expect_dat_error(b.data, n, FACENET_ERR_FORMAT, "truncated");
    for (size_t n = b.size - 200; n < b.size; n++)
        expect_dat_error(b.data, n, FACENET_ERR_FORMAT, "truncated");
    /* And the empty input. */
    expect_dat_error(NULL, 0, FACENET_ERR_FORMAT, "truncated");
    dw_free(&b);
}

/* Overwrite `len` bytes at `at` in a copy of b; import must fail. */
static void expect_patched(const dw_buf *b, size_t at, const void *bytes, size_t len,
                           facenet_status code, const char *needle)
{
    uint8_t *copy = malloc(b->size);
    assert_non_null(copy);
    memcpy(copy, b->data, b->size);
    memcpy(copy + at, bytes, len);
    expect_dat_error(copy, b->size, code, needle);
    free(copy);
}

/* Replace `remove` bytes at `at` with `len` new ones; import must fail. */
static void expect_spliced(const dw_buf *b, size_t at, size_t remove, const void *bytes,
                           size_t len, const char *needle)
{
    size_t size = b->size - remove + len;
    uint8_t *copy = malloc(size);
    assert_non_null(copy);
    memcpy(copy, b->data, at);
    memcpy(copy + at, bytes, len);
    memcpy(copy + at + len, b->data + at + remove, b->size - at - remove);
    expect_dat_error(copy, size, FACENET_ERR_FORMAT, needle);
    free(copy);
}

static void test_dat_corruptions(void **state)
{
    dw_buf b = synthetic_dat();
    (void)state;

    /* The length of "loss_metric_2" made huge, then slightly wrong. */
    size_t loss = find_bytes(&b, "loss_metric_2", 13, 0);
    expect_patched(&b, loss - 1, "\x7f", 1, FACENET_ERR_FORMAT, "not plausible");
    expect_patched(&b, loss - 2, "\x04\xff\xff\xff\x7f", 5, FACENET_ERR_FORMAT, "length");
    expect_patched(&b, loss - 1, "\x0c", 1, FACENET_ERR_FORMAT, "bad integer control byte");
    /* A different layer name. */
    expect_patched(&b, loss, "loss_mmse_xx", 12, FACENET_ERR_FORMAT, "loss_mmse_xx");
    /* The first layer version (fc add_layer). */
    size_t versions = loss + 13 + 12; /* two floats of 6 bytes each */
    expect_patched(&b, versions, "\x01\x07", 2, FACENET_ERR_FORMAT, "add_layer version is 7");
    /* An input mean that is not the pinned one. */
    size_t input = find_bytes(&b, "input_rgb_image_sized", 21, 0) + 21;
    expect_patched(&b, input, "\x03\x00\x00\x80", 4, FACENET_ERR_UNSUPPORTED, "avg_red");
    /* The stem conv's params tensor: length field (k) and version. */
    size_t con = find_bytes(&b, "con_4", 5, 0) + 5;
    expect_patched(&b, con, "\x01\x01", 2, FACENET_ERR_UNSUPPORTED, "tensor version 1");
    assert_memory_equal(b.data + con, "\x01\x02\x02\x80\x12\x01\x01\x01\x01\x01\x01", 11);
    expect_patched(&b, con + 5, "\x01\x02", 2, FACENET_ERR_FORMAT,
                   "params has 9472 values, expected 4736");
    expect_patched(&b, con + 5, "\x01\x00", 2, FACENET_ERR_FORMAT, "params has 0 values");
    expect_patched(&b, con + 2, "\x02\xff\xff", 3, FACENET_ERR_FORMAT,
                   "params has 65535 values");
    /* A negative dim. */
    expect_patched(&b, con + 5, "\x81\x01", 2, FACENET_ERR_FORMAT, "k = -1 is out of range");
    /* Dims whose product overflows, or exceeds the file. */
    expect_spliced(&b, con + 2, 9,
                   "\x04\x00\x00\x00\x40\x04\x00\x00\x00\x40\x04\x00\x00\x00\x40"
                   "\x04\x00\x00\x00\x40", 20, "too many");
    expect_spliced(&b, con + 2, 9, "\x04\x00\x00\x00\x40\x01\x01\x01\x01\x01\x01", 11,
                   "1073741824 floats declared");
    /* The stem conv's stride (after params, num_filters, nr, nc). */
    size_t after_params = con + 2 + 3 + 6 + 4 * (size_t)4736;
    assert_memory_equal(b.data + after_params, "\x01\x20\x01\x07\x01\x07\x01\x02", 8);
    expect_patched(&b, after_params + 6, "\x01\x01", 2, FACENET_ERR_FORMAT, "stride_y is 1");
    expect_patched(&b, after_params, "\x01\x40", 2, FACENET_ERR_FORMAT, "num_filters is 64");
    /* A bool that is not '0' or '1'. */
    size_t relu = find_bytes(&b, "relu_", 5, 0) + 5;
    expect_patched(&b, relu, "x", 1, FACENET_ERR_FORMAT, "bool");
    /* A pool with padding. */
    size_t pool = find_bytes(&b, "max_pool_2", 10, 0) + 10;
    expect_patched(&b, pool + 8, "\x01\x01", 2, FACENET_ERR_FORMAT, "padding_y is 1");
    /* A non-finite weight (NaN bits) in the first filter value. */
    expect_patched(&b, con + 11, "\x00\x00\xc0\x7f", 4, FACENET_ERR_FORMAT, "not finite");
    /* The file must end where the network ends. */
    uint8_t *longer = malloc(b.size + 1);
    assert_non_null(longer);
    memcpy(longer, b.data, b.size);
    longer[b.size] = 0;
    expect_dat_error(longer, b.size + 1, FACENET_ERR_FORMAT, "unexpected bytes");
    free(longer);
    dw_free(&b);
}

/* ---- .dat: the real file --------------------------------------------------- */

/* Turns the graph's canonical weights back into dlib's layouts. */
static void params_from_graph(void *ctx, int index, const dlib_layer *l, float *p,
                              size_t count)
{
    const nn_graph *g = ctx;
    char name[96];
    const int o = l->out_c, in = l->in_c, k = l->kernel;
    (void)index;
    (void)count;
    if (l->kind == DLIB_L_CON) {
        (void)snprintf(name, sizeof name, "%s/conv/filters", l->name);
        const float *w = find_value(g, name)->data;
        (void)snprintf(name, sizeof name, "%s/conv/bias", l->name);
        const float *bias = find_value(g, name)->data;
        for (int oc = 0; oc < o; oc++)
            for (int ic = 0; ic < in; ic++)
                for (int y = 0; y < k; y++)
                    for (int x = 0; x < k; x++)
                        p[(((size_t)oc * in + ic) * k + y) * k + x] =
                            w[(((size_t)oc * k + y) * k + x) * in + ic];
        memcpy(p + (size_t)o * in * k * k, bias, (size_t)o * sizeof *p);
    } else if (l->kind == DLIB_L_AFFINE) {
        (void)snprintf(name, sizeof name, "%s/scale/weights", l->name);
        memcpy(p, find_value(g, name)->data, (size_t)o * sizeof *p);
        (void)snprintf(name, sizeof name, "%s/scale/biases", l->name);
        memcpy(p + o, find_value(g, name)->data, (size_t)o * sizeof *p);
    } else if (l->kind == DLIB_L_FC) {
        const float *w = find_value(g, "fc/weights")->data;
        for (int oc = 0; oc < o; oc++)
            for (int ic = 0; ic < in; ic++)
                p[(size_t)ic * o + oc] = w[(size_t)oc * in + ic];
    }
}

static void test_dat_real_file(void **state)
{
    char path[4096];
    uint8_t *data;
    size_t size;
    facenet_error err;
    dw_buf again;
    (void)state;

    NEED_MODEL(DAT_FILE, path);
    assert_int_equal(fn_read_file(path, (size_t)64 << 20, &data, &size, &err), FACENET_OK);
    nn_graph *g = import_dat(data, size);
    /* Writing the imported weights back the way dlib does reproduces the
     * file exactly: the reader misses nothing, and the writer the other
     * tests use is faithful to dlib. */
    dw_write_resnet(&again, params_from_graph, g);
    assert_int_equal(again.size, size);
    assert_memory_equal(again.data, data, size);
    dw_free(&again);
    nn_graph_free(g);
    /* Truncations of the real file. */
    for (size_t n = 0; n < 1024; n += 7)
        expect_dat_error(data, n, FACENET_ERR_FORMAT, "truncated");
    for (size_t n = 1024; n < size; n += size / 101)
        expect_dat_error(data, n, FACENET_ERR_FORMAT, "truncated");
    expect_dat_error(data, size - 1, FACENET_ERR_FORMAT, "truncated");
    free(data);
}

/* ---- TF.js: synthetic manifests ------------------------------------------- */

/* A manifest + shard in memory, built from the topology with a storage
 * mode per tensor, values from dw_synthetic_value. */
typedef struct tfjs_model {
    json_t *manifest;
    dw_buf shard;
} tfjs_model;

typedef struct tfjs_tensor_spec {
    char name[96];
    int rank, dims[4];
} tfjs_tensor_spec;

static int tfjs_specs(tfjs_tensor_spec *specs)
{
    dlib_layer layers[DLIB_RESNET_MAX_LAYERS];
    int n = dlib_resnet_layers(layers), count = 0;
    for (int i = 0; i < n; i++) {
        const dlib_layer *l = &layers[i];
        tfjs_tensor_spec *s = &specs[count];
        if (l->kind == DLIB_L_CON) {
            (void)snprintf(s[0].name, sizeof s[0].name, "%s/conv/filters", l->name);
            s[0].rank = 4;
            s[0].dims[0] = s[0].dims[1] = l->kernel;
            s[0].dims[2] = l->in_c;
            s[0].dims[3] = l->out_c;
            (void)snprintf(s[1].name, sizeof s[1].name, "%s/conv/bias", l->name);
            s[1].rank = 1;
            s[1].dims[0] = l->out_c;
            count += 2;
        } else if (l->kind == DLIB_L_AFFINE) {
            (void)snprintf(s[0].name, sizeof s[0].name, "%s/scale/weights", l->name);
            (void)snprintf(s[1].name, sizeof s[1].name, "%s/scale/biases", l->name);
            s[0].rank = s[1].rank = 1;
            s[0].dims[0] = s[1].dims[0] = l->out_c;
            count += 2;
        } else if (l->kind == DLIB_L_FC) {
            (void)snprintf(s[0].name, sizeof s[0].name, "fc");
            s[0].rank = 2;
            s[0].dims[0] = l->in_c;
            s[0].dims[1] = l->out_c;
            count += 1;
        }
    }
    return count;
}

static size_t spec_count(const tfjs_tensor_spec *s)
{
    size_t c = 1;
    for (int d = 0; d < s->rank; d++)
        c *= (size_t)s->dims[d];
    return c;
}

/* Storage of tensor t: float32, uint8, uint16 or float16 in turn. */
static const char *spec_storage(int t)
{
    static const char *const kinds[4] = {"float32", "uint8", "uint16", "float16"};
    return kinds[t % 4];
}

/* The value tensor t holds at stored index i, as the importer must decode
 * it (quantised values are exact: q * 2^-12 - 0.03). */
static float spec_value(int t, size_t i)
{
    const char *kind = spec_storage(t);
    if (strcmp(kind, "uint8") == 0)
        return (float)((double)(i * 37 % 256) / 4096.0 - 0.03);
    if (strcmp(kind, "uint16") == 0)
        return (float)((double)(i * 7919 % 65536) / 4096.0 - 0.03);
    if (strcmp(kind, "float16") == 0)
        return (float)((double)((int)(i % 200) - 100) / 1024.0);
    return dw_synthetic_value(t, i);
}

static void put_le(dw_buf *b, uint32_t v, int bytes)
{
    uint8_t tmp[4];
    for (int i = 0; i < bytes; i++)
        tmp[i] = (uint8_t)(v >> (8 * i));
    if (b->size + (size_t)bytes > b->cap) {
        b->cap = b->cap ? b->cap * 2 : 1 << 20;
        b->data = realloc(b->data, b->cap);
        assert_non_null(b->data);
    }
    memcpy(b->data + b->size, tmp, (size_t)bytes);
    b->size += (size_t)bytes;
}

static tfjs_model make_tfjs(void)
{
    tfjs_tensor_spec specs[128];
    int n = tfjs_specs(specs);
    tfjs_model m;
    json_t *weights = json_array();

    memset(&m, 0, sizeof m);
    for (int t = 0; t < n; t++) {
        const char *kind = spec_storage(t);
        json_t *shape = json_array();
        for (int d = 0; d < specs[t].rank; d++)
            json_array_append_new(shape, json_integer(specs[t].dims[d]));
        json_t *w = json_pack("{s:s, s:o, s:s}", "name", specs[t].name, "shape", shape,
                              "dtype", "float32");
        if (strcmp(kind, "float32") != 0) {
            if (strcmp(kind, "float16") == 0)
                json_object_set_new(w, "quantization", json_pack("{s:s}", "dtype", kind));
            else
                json_object_set_new(w, "quantization",
                                    json_pack("{s:s, s:f, s:f}", "dtype", kind, "scale",
                                              1.0 / 4096.0, "min", -0.03));
        }
        json_array_append_new(weights, w);
        for (size_t i = 0; i < spec_count(&specs[t]); i++) {
            if (strcmp(kind, "uint8") == 0) {
                put_le(&m.shard, (uint32_t)(i * 37 % 256), 1);
            } else if (strcmp(kind, "uint16") == 0) {
                put_le(&m.shard, (uint32_t)(i * 7919 % 65536), 2);
            } else if (strcmp(kind, "float16") == 0) {
                /* (i % 200 - 100) / 1024 as a half: exact for |v| < 2048/1024 */
                int v = (int)(i % 200) - 100;
                uint32_t h = 0;
                if (v != 0) {
                    int mag = abs(v), e = 0;
                    while ((mag << (10 - e)) >= 2048)
                        e++;
                    while ((mag << (10 - e)) < 1024)
                        e--;
                    /* value = mag * 2^-10 = (mag * 2^(10-e)) * 2^(e-20) */
                    h = (uint32_t)((e - 20 + 10 + 15) << 10) |
                        (uint32_t)((mag << (10 - e)) & 0x3FF);
                    if (v < 0)
                        h |= 0x8000;
                }
                put_le(&m.shard, h, 2);
            } else {
                float f = spec_value(t, i);
                uint32_t bits;
                memcpy(&bits, &f, 4);
                put_le(&m.shard, bits, 4);
            }
        }
    }
    m.manifest = json_pack("[{s:[s], s:o}]", "paths", "model.bin", "weights", weights);
    assert_non_null(m.manifest);
    return m;
}

static void free_tfjs(tfjs_model *m)
{
    json_decref(m->manifest);
    dw_free(&m->shard);
}

typedef struct memory_shards {
    const char *name;
    const uint8_t *data;
    size_t size;
} memory_shards;

static facenet_status load_memory(void *ctx, const char *name, uint8_t **data, size_t *size,
                                  facenet_error *err)
{
    const memory_shards *s = ctx;
    if (strcmp(name, s->name) != 0)
        return fn_fail(err, FACENET_ERR_NOT_FOUND, "no shard '%s'", name);
    *data = malloc(s->size ? s->size : 1);
    assert_non_null(*data);
    if (s->size)
        memcpy(*data, s->data, s->size);
    *size = s->size;
    return FACENET_OK;
}

static facenet_status import_tfjs_mem(const json_t *manifest, const uint8_t *shard,
                                      size_t shard_size, nn_graph **g, facenet_error *err)
{
    char *json = json_dumps(manifest, JSON_COMPACT);
    memory_shards s = {"model.bin", shard, shard_size};
    assert_non_null(json);
    facenet_status st =
        nn_import_tfjs_core((const uint8_t *)json, strlen(json), load_memory, &s, g, err);
    free(json);
    return st;
}

static void test_tfjs_synthetic(void **state)
{
    tfjs_model m = make_tfjs();
    tfjs_tensor_spec specs[128];
    int n = tfjs_specs(specs);
    nn_graph *g = NULL;
    facenet_error err;
    (void)state;

    assert_int_equal(n, 117);
    if (import_tfjs_mem(m.manifest, m.shard.data, m.shard.size, &g, &err) != FACENET_OK)
        fail_msg("%s", err.message);
    for (int t = 0; t < n; t++) {
        const tfjs_tensor_spec *s = &specs[t];
        char name[128];
        if (s->rank == 4) {
            /* HWIO in the file, OHWI in the graph */
            (void)snprintf(name, sizeof name, "%s", s->name);
            const float *w = find_value(g, name)->data;
            int k = s->dims[0], in = s->dims[2], o = s->dims[3];
            for (int y = 0; y < k; y++)
                for (int x = 0; x < k; x++)
                    for (int ic = 0; ic < in; ic++)
                        for (int oc = 0; oc < o; oc++) {
                            size_t hwio = (((size_t)y * k + x) * in + ic) * o + oc;
                            size_t ohwi = (((size_t)oc * k + y) * k + x) * in + ic;
                            if (fabsf(w[ohwi] - spec_value(t, hwio)) > 1e-7f)
                                fail_msg("%s[%zu] = %g, expected %g", name, ohwi, w[ohwi],
                                         spec_value(t, hwio));
                        }
        } else if (s->rank == 2) {
            const float *w = find_value(g, "fc/weights")->data;
            int in = s->dims[0], o = s->dims[1];
            for (int ic = 0; ic < in; ic++)
                for (int oc = 0; oc < o; oc++)
                    assert_true(fabsf(w[(size_t)oc * in + ic] -
                                      spec_value(t, (size_t)ic * o + oc)) <= 1e-7f);
        } else {
            const float *v = find_value(g, s->name)->data;
            for (int i = 0; i < s->dims[0]; i++)
                if (fabsf(v[i] - spec_value(t, (size_t)i)) > 1e-7f)
                    fail_msg("%s[%d] = %g, expected %g (%s)", s->name, i, v[i],
                             spec_value(t, (size_t)i), spec_storage(t));
        }
    }
    nn_graph_free(g);
    free_tfjs(&m);
}

/* Import must fail with `code` and a message containing `needle`. */
static void expect_tfjs_error(const json_t *manifest, const uint8_t *shard, size_t size,
                              facenet_status code, const char *needle)
{
    nn_graph *g = (nn_graph *)&g;
    facenet_error err;
    memset(&err, 0, sizeof err);
    facenet_status st = import_tfjs_mem(manifest, shard, size, &g, &err);
    if (st != code)
        fail_msg("status %d (%s), expected %d", st, err.message, code);
    assert_null(g);
    if (!strstr(err.message, needle))
        fail_msg("message '%s' does not mention '%s'", err.message, needle);
}

static json_t *weight_at(json_t *manifest, size_t i)
{
    return json_array_get(json_object_get(json_array_get(manifest, 0), "weights"), i);
}

static void test_tfjs_malformed(void **state)
{
    tfjs_model m = make_tfjs();
    json_t *bad;
    (void)state;

    /* A wrong shape. */
    bad = json_deep_copy(m.manifest);
    json_array_set_new(json_object_get(weight_at(bad, 4), "shape"), 2, json_integer(31));
    expect_tfjs_error(bad, m.shard.data, m.shard.size - 4 * 9 * 32, FACENET_ERR_FORMAT,
                      "'conv32_1/conv1/conv/filters' has shape [3,3,31,32], expected [3,3,32,32]");
    json_decref(bad);
    /* A shard too short, too long, or missing. */
    expect_tfjs_error(m.manifest, m.shard.data, m.shard.size - 1, FACENET_ERR_FORMAT,
                      "truncated shard");
    expect_tfjs_error(m.manifest, m.shard.data, 0, FACENET_ERR_FORMAT, "truncated shard");
    dw_buf longer = {NULL, 0, 0};
    put_le(&longer, 0, 1);
    longer.data = realloc(longer.data, m.shard.size + 1);
    memcpy(longer.data, m.shard.data, m.shard.size);
    longer.data[m.shard.size] = 0;
    expect_tfjs_error(m.manifest, longer.data, m.shard.size + 1, FACENET_ERR_FORMAT,
                      "hold more");
    free(longer.data);
    bad = json_deep_copy(m.manifest);
    json_array_set_new(json_object_get(json_array_get(bad, 0), "paths"), 0,
                       json_string("other.bin"));
    expect_tfjs_error(bad, m.shard.data, m.shard.size, FACENET_ERR_NOT_FOUND, "other.bin");
    /* Paths that leave the directory. */
    static const char *const evil[] = {"../model.bin", "a/model.bin", "..", "", "x\\y.bin",
                                       "/etc/passwd"};
    for (size_t i = 0; i < sizeof evil / sizeof evil[0]; i++) {
        json_array_set_new(json_object_get(json_array_get(bad, 0), "paths"), 0,
                           json_string(evil[i]));
        expect_tfjs_error(bad, m.shard.data, m.shard.size, FACENET_ERR_FORMAT,
                          "not a plain file name");
    }
    json_decref(bad);
    /* Unknown dtypes. */
    bad = json_deep_copy(m.manifest);
    json_object_set_new(weight_at(bad, 0), "dtype", json_string("int32"));
    expect_tfjs_error(bad, m.shard.data, m.shard.size, FACENET_ERR_UNSUPPORTED, "int32");
    json_decref(bad);
    bad = json_deep_copy(m.manifest);
    json_object_set_new(json_object_get(weight_at(bad, 1), "quantization"), "dtype",
                        json_string("int4"));
    expect_tfjs_error(bad, m.shard.data, m.shard.size, FACENET_ERR_UNSUPPORTED, "int4");
    json_decref(bad);
    /* Quantisation without scale. */
    bad = json_deep_copy(m.manifest);
    json_object_del(json_object_get(weight_at(bad, 1), "quantization"), "scale");
    expect_tfjs_error(bad, m.shard.data, m.shard.size, FACENET_ERR_FORMAT, "scale and min");
    json_decref(bad);
    /* A missing tensor, a renamed one, a duplicate. */
    bad = json_deep_copy(m.manifest);
    json_object_set_new(weight_at(bad, 116), "name", json_string("fc2"));
    expect_tfjs_error(bad, m.shard.data, m.shard.size, FACENET_ERR_FORMAT,
                      "tensor 'fc' is missing");
    json_object_set_new(weight_at(bad, 116), "name", json_string("conv32_down/conv/bias"));
    expect_tfjs_error(bad, m.shard.data, m.shard.size, FACENET_ERR_FORMAT, "declared twice");
    json_decref(bad);
    /* An extra tensor the network does not use. */
    bad = json_deep_copy(m.manifest);
    json_array_append_new(json_object_get(json_array_get(bad, 0), "weights"),
                          json_pack("{s:s, s:[i], s:s}", "name", "extra", "shape", 1, "dtype",
                                    "float32"));
    {
        uint8_t *more = calloc(m.shard.size + 4, 1);
        assert_non_null(more);
        memcpy(more, m.shard.data, m.shard.size);
        expect_tfjs_error(bad, more, m.shard.size + 4, FACENET_ERR_FORMAT,
                          "'extra' is not part of the dlib ResNet");
        free(more);
    }
    json_decref(bad);
    /* Shapes that are nonsense or too large. */
    bad = json_deep_copy(m.manifest);
    json_array_set_new(json_object_get(weight_at(bad, 0), "shape"), 0, json_integer(-7));
    expect_tfjs_error(bad, m.shard.data, m.shard.size, FACENET_ERR_FORMAT, "dim 0");
    json_array_set_new(json_object_get(weight_at(bad, 0), "shape"), 0,
                       json_integer(2000000000));
    expect_tfjs_error(bad, m.shard.data, m.shard.size, FACENET_ERR_FORMAT, "too many values");
    json_array_set_new(json_object_get(weight_at(bad, 0), "shape"), 0, json_integer(300000));
    expect_tfjs_error(bad, m.shard.data, m.shard.size, FACENET_ERR_LIMIT, "goes past");
    json_decref(bad);
    /* Not JSON, not an array, no weights. */
    {
        nn_graph *g = NULL;
        facenet_error err;
        memory_shards s = {"model.bin", m.shard.data, m.shard.size};
        static const char *const texts[] = {"", "{", "{}", "[]", "[1]", "[{\"paths\":[]}]",
                                            "[{\"paths\":[\"model.bin\"],\"weights\":[]}]"};
        for (size_t i = 0; i < sizeof texts / sizeof texts[0]; i++) {
            facenet_status st = nn_import_tfjs_core((const uint8_t *)texts[i],
                                                    strlen(texts[i]), load_memory, &s, &g,
                                                    &err);
            assert_int_equal(st, FACENET_ERR_FORMAT);
            assert_null(g);
            assert_non_null(strstr(err.message, "TF.js manifest"));
        }
    }
    /* A NaN among float32 weights (tensor 0 is float32). */
    m.shard.data[0] = 0x00;
    m.shard.data[1] = 0x00;
    m.shard.data[2] = 0xc0;
    m.shard.data[3] = 0x7f;
    expect_tfjs_error(m.manifest, m.shard.data, m.shard.size, FACENET_ERR_FORMAT,
                      "not finite");
    free_tfjs(&m);
}

/* The directory wrapper: shards found beside the manifest, and a missing
 * shard reported with its name. */
static void test_tfjs_directory(void **state)
{
    tfjs_model m = make_tfjs();
    const char *tmp = getenv("TMPDIR");
    char dir[4096], path[4200];
    nn_graph *g = NULL;
    facenet_error err;
    (void)state;

    (void)snprintf(dir, sizeof dir, "%s/facenet_tfjs_XXXXXX", tmp && *tmp ? tmp : "/tmp");
    assert_non_null(mkdtemp(dir));
    char *json = json_dumps(m.manifest, JSON_COMPACT);
    assert_non_null(json);

    assert_int_equal(nn_import_tfjs((const uint8_t *)json, strlen(json), dir, &g, &err),
                     FACENET_ERR_NOT_FOUND);
    assert_null(g);
    assert_non_null(strstr(err.message, "model.bin"));

    (void)snprintf(path, sizeof path, "%s/model.bin", dir);
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(m.shard.data, 1, m.shard.size, f), m.shard.size);
    assert_int_equal(fclose(f), 0);
    if (nn_import_tfjs((const uint8_t *)json, strlen(json), dir, &g, &err) != FACENET_OK)
        fail_msg("%s", err.message);
    assert_non_null(g);
    nn_graph_free(g);
    g = NULL;
    assert_int_equal(nn_import_tfjs((const uint8_t *)json, strlen(json), NULL, &g, &err),
                     FACENET_ERR_INVALID_ARGUMENT);
    unlink(path);
    rmdir(dir);
    free(json);
    free_tfjs(&m);
}

/* ---- TF.js: the real files ------------------------------------------------- */

/* The real TF.js weights are the .dat's, quantised: every tensor agrees
 * with the .dat within its quantisation step. */
static void test_tfjs_real_matches_dat(void **state)
{
    char dat_path[4096], manifest_path[4096], shard_path[4096];
    uint8_t *data;
    size_t size;
    facenet_error err;
    nn_graph *dat, *tfjs = NULL;
    (void)state;

    NEED_MODEL(DAT_FILE, dat_path);
    NEED_MODEL(TFJS_MANIFEST, manifest_path);
    NEED_MODEL(TFJS_SHARD, shard_path);
    assert_int_equal(fn_read_file(dat_path, (size_t)64 << 20, &data, &size, &err), FACENET_OK);
    dat = import_dat(data, size);
    free(data);
    assert_int_equal(fn_read_file(manifest_path, 1 << 20, &data, &size, &err), FACENET_OK);
    char *dir = strdup(manifest_path);
    *strrchr(dir, '/') = '\0';
    if (nn_import_tfjs(data, size, dir, &tfjs, &err) != FACENET_OK)
        fail_msg("%s", err.message);
    /* The scales per tensor, from the manifest itself. */
    json_t *root = json_loadb((const char *)data, size, 0, NULL);
    assert_non_null(root);
    assert_int_equal(dat->n_values, tfjs->n_values);
    int exact = 0, quantised = 0;
    size_t i;
    json_t *w;
    json_array_foreach(json_object_get(json_array_get(root, 0), "weights"), i, w) {
        const char *name = json_string_value(json_object_get(w, "name"));
        char graph_name[128];
        (void)snprintf(graph_name, sizeof graph_name, "%s%s", name,
                 strcmp(name, "fc") == 0 ? "/weights" : "");
        const nn_value *a = find_value(dat, graph_name), *b = find_value(tfjs, graph_name);
        json_t *q = json_object_get(w, "quantization");
        double step = q ? json_number_value(json_object_get(q, "scale")) : 0;
        size_t count = nn_shape_count(&a->shape);
        assert_true(nn_shape_equal(&a->shape, &b->shape));
        float diff = tu_max_abs_diff(a->data, b->data, count);
        if (diff > step * 0.5 + 1e-6 * tu_max_abs(a->data, count))
            fail_msg("%s: differs by %g, quantisation step %g", name, diff, step);
        if (q)
            quantised++;
        else
            exact++;
    }
    assert_int_equal(quantised, 109);
    assert_int_equal(exact, 8);
    json_decref(root);
    free(dir);
    free(data);
    nn_graph_free(dat);
    nn_graph_free(tfjs);
}


/* ---- through the public API ------------------------------------------------ */

#define SIDE 150
#define PIXELS (SIDE * SIDE * 3)

/* NHWC input from 8-bit-range values v(x, y, c), normalised with the
 * manifest's mean and scale (dlib: (v - mean) / 256). */
static void make_input(const char *model, float (*v)(int x, int y, int c), float *out)
{
    const facenet_model_info *info = facenet_model_find(model);
    assert_non_null(info);
    assert_true(info->input_scale == 1.0f / 256.0f);
    for (int y = 0; y < SIDE; y++)
        for (int x = 0; x < SIDE; x++)
            for (int c = 0; c < 3; c++)
                out[(y * SIDE + x) * 3 + c] = (v(x, y, c) - info->input_mean[c]) * info->input_scale;
}

static float smooth_image(int x, int y, int c)
{
    return 128.0f + 100.0f * sinf((float)x / 17.0f + (float)c) * cosf((float)y / 23.0f);
}

static float face_like_image(int x, int y, int c)
{
    /* a bright oval with two dark eyes and a mouth, on grey */
    float dx = ((float)x - 74.0f) / 48.0f, dy = ((float)y - 80.0f) / 62.0f;
    float v = dx * dx + dy * dy < 1.0f ? 190.0f - 20.0f * (float)c : 90.0f;
    if ((abs(y - 60) < 5 && (abs(x - 50) < 9 || abs(x - 98) < 9)) ||
        (abs(y - 110) < 4 && abs(x - 74) < 20))
        v = 40.0f;
    return v;
}

static float pattern_image(int x, int y, int c)
{
    return tu_pattern(x, y, c);
}

/* Run one or more 150x150 inputs; returns the [n, 128] output (copied). */
static float *embed(facenet_model *model, const float *input, int n)
{
    facenet_session *s = NULL;
    facenet_error err;
    const float *data;
    int dims[4], rank;
    float *copy;

    assert_int_equal(facenet_session_create(model, &s, &err), FACENET_OK);
    if (facenet_session_run(s, input, n, SIDE, SIDE, 3, &err) != FACENET_OK)
        fail_msg("run: %s", err.message);
    assert_int_equal(facenet_session_output(s, 0, &data, dims, &rank, &err), FACENET_OK);
    assert_int_equal(rank, 2);
    assert_int_equal(dims[0], n);
    assert_int_equal(dims[1], 128);
    copy = malloc((size_t)n * 128 * sizeof *copy);
    assert_non_null(copy);
    memcpy(copy, data, (size_t)n * 128 * sizeof *copy);
    facenet_session_free(s);
    return copy;
}

static int have_golden(void)
{
    const char *g = getenv("FACENET_GOLDEN_DIR");
    return g && *g;
}

/* The golden dlib_pattern: max abs <= 1e-4 * max|v|, cosine >= 0.99999. */
static void test_dat_golden_pattern(void **state)
{
    char path[4096];
    float golden[128];
    (void)state;

    NEED_MODEL(DAT_FILE, path);
    if (!have_golden()) {
        skip();
        return;
    }
    json_t *root = tu_golden_json("synthetic.json");
    json_t *entry = json_object_get(root, "dlib_pattern");
    assert_int_equal(tu_json_floats(json_object_get(entry, "output_raw"), golden, 128), 128);
    json_decref(root);

    facenet_model *model = tu_load_model("dlib-resnet");
    float *input = malloc(PIXELS * sizeof *input);
    assert_non_null(input);
    make_input("dlib-resnet", pattern_image, input);
    float *out = embed(model, input, 1);
    float tol = 1e-4f * tu_max_abs(golden, 128);
    float diff = tu_max_abs_diff(out, golden, 128);
    double cos = tu_cosine(out, golden, 128);
    print_message("dlib .dat vs golden pattern: max abs diff %.3g (tolerance %.3g), "
                  "cosine 1 - %.3g\n", diff, tol, 1.0 - cos);
    assert_true(diff <= tol);
    assert_true(cos >= 0.99999);
    assert_int_equal(facenet_model_output_count(model), 1);
    assert_string_equal(facenet_model_output_name(model, 0), "embedding");
    free(out);
    free(input);
    facenet_model_free(model);
}

/* The quantised TF.js weights give nearly the same embeddings as the .dat,
 * on the golden pattern and two other inputs; and a batch of three equals
 * three single runs. */
static void test_tfjs_agrees_with_dat(void **state)
{
    char path[4096];
    float (*const images[3])(int, int, int) = {pattern_image, smooth_image, face_like_image};
    static const char *const image_names[3] = {"pattern", "smooth", "face-like"};
    (void)state;

    NEED_MODEL(DAT_FILE, path);
    NEED_MODEL(TFJS_MANIFEST, path);
    NEED_MODEL(TFJS_SHARD, path);
    facenet_model *dat = tu_load_model("dlib-resnet");
    facenet_model *tfjs = tu_load_model("dlib-resnet-tfjs");
    float *batch = malloc(3 * PIXELS * sizeof *batch);
    assert_non_null(batch);
    for (int i = 0; i < 3; i++)
        make_input("dlib-resnet", images[i], batch + (size_t)i * PIXELS);

    float *dat_batch = embed(dat, batch, 3);
    for (int i = 0; i < 3; i++) {
        float *a = embed(dat, batch + (size_t)i * PIXELS, 1);
        float *b = embed(tfjs, batch + (size_t)i * PIXELS, 1);
        double cos = tu_cosine(a, b, 128);
        print_message("%s: cosine(.dat, TF.js) = %.6f\n", image_names[i], cos);
        assert_true(cos >= 0.995);
        /* batching does not change a sample's result */
        assert_true(tu_max_abs_diff(a, dat_batch + i * 128, 128) <=
                    1e-5f * tu_max_abs(a, 128));
        free(a);
        free(b);
    }
    /* different inputs give different embeddings (the net is not constant) */
    assert_true(tu_cosine(dat_batch, dat_batch + 128, 128) < 0.99);
    free(dat_batch);
    free(batch);
    facenet_model_free(dat);
    facenet_model_free(tfjs);
}

/* Loading through the public API with the format given explicitly, and
 * a wrong pin refused before parsing. */
static void test_load_file_errors(void **state)
{
    char path[4096];
    facenet_model *model = (facenet_model *)&model;
    facenet_error err;
    (void)state;

    NEED_MODEL(DAT_FILE, path);
    assert_int_equal(facenet_model_load_file(path, FACENET_FORMAT_DLIB_DAT,
                                             "0000000000000000000000000000000000000000000000000000000000000000",
                                             &model, &err),
                     FACENET_ERR_INTEGRITY);
    assert_null(model);
    /* The .dat is not a TF.js manifest: a clean error, no crash. */
    assert_int_equal(facenet_model_load_file(path, FACENET_FORMAT_TFJS, NULL, &model, &err),
                     FACENET_ERR_FORMAT);
    assert_null(model);
    assert_non_null(strstr(err.message, "TF.js manifest"));
    assert_int_equal(facenet_model_load_file(path, FACENET_FORMAT_DLIB_DAT, NULL, &model, &err),
                     FACENET_OK);
    /* By hand, conv by conv: stem 72*72*32*49*3; 6 convs 35*35*32*9*32;
     * 17*17*64*9*32 + 7 x 17*17*64*9*64; 8*8*128*9*64 + 5 x 8*8*128*9*128;
     * 3*3*256*9*128 + 3*3*256*9*256 + 4 x 4*4*256*9*256; 2 x 256*9*256;
     * fc 256*128. */
    assert_int_equal(facenet_model_macs(model, 1, SIDE, SIDE, 3), 270854144);
    facenet_model_free(model);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_topology),
        cmocka_unit_test(test_build_passes_fill_errors_on),
        cmocka_unit_test(test_dat_synthetic),
        cmocka_unit_test(test_dat_truncations),
        cmocka_unit_test(test_dat_corruptions),
        cmocka_unit_test(test_dat_real_file),
        cmocka_unit_test(test_tfjs_synthetic),
        cmocka_unit_test(test_tfjs_malformed),
        cmocka_unit_test(test_tfjs_directory),
        cmocka_unit_test(test_tfjs_real_matches_dat),
        cmocka_unit_test(test_dat_golden_pattern),
        cmocka_unit_test(test_tfjs_agrees_with_dat),
        cmocka_unit_test(test_load_file_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
