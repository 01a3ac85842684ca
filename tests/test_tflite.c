/*
 * Tests of the TFLite importer: small models built here with a tiny
 * flatbuffer writer (test-only), malformed input (every truncation, random
 * corruption), and the four real models' graph inventory and shapes.
 *
 * Set FACENET_TFLITE_CORPUS_DIR to write the built models there (that is
 * how fuzz/corpus/fuzz_tflite/ was made).
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

#include "common/fileio.h"
#include "nn/graph.h"
#include "nn/import/import.h"
#include "support/testutil.h"

/* ======================================================================== */
/* A minimal FlatBuffers writer. It lays objects out front to back: a table */
/* is written before its children, so every uoffset points forward, and     */
/* each table's vtable sits just before it.                                 */
/* ======================================================================== */

typedef struct fbb {
    uint8_t *buf;
    size_t len, cap;
} fbb;

typedef struct fb_field {
    int size;       /* 0 absent; 1, 2, 4, 8 scalar; offsets are 4 (patched) */
    uint64_t value;
} fb_field;

#define MAX_FIELDS 12

static void fbb_grow(fbb *b, size_t n)
{
    if (b->len + n <= b->cap)
        return;
    while (b->len + n > b->cap)
        b->cap = b->cap ? b->cap * 2 : 1024;
    b->buf = realloc(b->buf, b->cap);
    assert_non_null(b->buf);
}

static size_t fbb_pad(fbb *b, size_t align)
{
    while (b->len % align != 0) {
        fbb_grow(b, 1);
        b->buf[b->len++] = 0;
    }
    return b->len;
}

static size_t fbb_put(fbb *b, const void *p, size_t n)
{
    size_t at = b->len;
    fbb_grow(b, n);
    if (p)
        memcpy(b->buf + at, p, n);
    else
        memset(b->buf + at, 0, n);
    b->len += n;
    return at;
}

static void fbb_le(fbb *b, size_t at, uint64_t v, int size)
{
    for (int i = 0; i < size; i++)
        b->buf[at + (size_t)i] = (uint8_t)(v >> (8 * i));
}

/* Store at `at` the uoffset to `target`. */
static void fbb_link(fbb *b, size_t at, size_t target)
{
    assert_true(at != 0 && target > at);
    fbb_le(b, at, target - at, 4);
}

/* Write a vtable and its table; field_pos[i] receives each present field's
 * absolute position. Returns the table's position. */
static size_t fbb_table(fbb *b, int n, const fb_field *f, size_t *field_pos)
{
    size_t off[MAX_FIELDS], inline_size = 4, vt, table;
    assert_true(n <= MAX_FIELDS);
    for (int i = 0; i < n; i++) {
        off[i] = 0;
        if (!f[i].size)
            continue;
        while (inline_size % (size_t)f[i].size)
            inline_size++;
        off[i] = inline_size;
        inline_size += (size_t)f[i].size;
    }
    while (inline_size % 4)
        inline_size++;
    vt = fbb_pad(b, 2);
    fbb_put(b, NULL, 4 + 2 * (size_t)n);
    fbb_le(b, vt, 4 + 2 * (uint64_t)n, 2);
    fbb_le(b, vt + 2, inline_size, 2);
    for (int i = 0; i < n; i++)
        fbb_le(b, vt + 4 + 2 * (size_t)i, off[i], 2);
    table = fbb_pad(b, 8);
    fbb_put(b, NULL, inline_size);
    fbb_le(b, table, table - vt, 4); /* soffset: vtable = table - soffset */
    for (int i = 0; i < n; i++) {
        field_pos[i] = 0;
        if (!f[i].size)
            continue;
        field_pos[i] = table + off[i];
        fbb_le(b, field_pos[i], f[i].value, f[i].size);
    }
    return table;
}

/* A vector of `count` elements; returns the position of its length. */
static size_t fbb_vector(fbb *b, size_t elem, size_t count, const void *data)
{
    size_t align = elem > 4 ? elem : 4;
    size_t at;
    fbb_pad(b, 4);
    while ((b->len + 4) % align)
        fbb_put(b, NULL, 4);
    at = fbb_put(b, NULL, 4);
    fbb_le(b, at, count, 4);
    fbb_put(b, data, elem * count);
    return at;
}

static size_t fbb_string(fbb *b, const char *s)
{
    size_t n = strlen(s), at = fbb_vector(b, 1, n, s);
    fbb_put(b, NULL, 1);
    return at;
}

/* ======================================================================== */
/* A TFLite model description and its serialisation                         */
/* ======================================================================== */

enum { T_F32 = 0, T_F16 = 1, T_I32 = 2, T_U8 = 3, T_I64 = 4, T_I8 = 9 };
enum {
    B_ADD = 0, B_AVG_POOL = 1, B_CONCAT = 2, B_CONV = 3, B_DWCONV = 4,
    B_DEQUANTIZE = 6, B_FC = 9, B_L2NORM = 11, B_MAX_POOL = 17, B_MUL = 18,
    B_RELU = 19, B_RELU6 = 21, B_RESHAPE = 22, B_SOFTMAX = 25, B_TANH = 28,
    B_CUSTOM = 32, B_MEAN = 40, B_SUB = 41, B_DIV = 42, B_EXP = 47,
    B_PRELU = 54, B_NEG = 59, B_SUM = 74, B_REDUCE_MAX = 82, B_ABS = 101,
    B_GELU = 150
};
enum {
    O_CONV = 1, O_DW = 2, O_POOL = 5, O_FC = 8, O_SOFTMAX = 9, O_ADD = 11,
    O_L2 = 12, O_RESHAPE = 17, O_MUL = 21, O_REDUCER = 27, O_SUB = 28,
    O_DIV = 29
};

typedef struct tm_tensor {
    const char *name;
    int type;
    int rank;
    int dims[6];
    const void *data;
    size_t nbytes;
    int n_quant;
    const float *scale;
    const int64_t *zero_point;
    int n_zero_point;
    int quant_dim;
    int external; /* data after the flatbuffer, via Buffer.offset/size */
} tm_tensor;

typedef struct tm_op {
    int code;
    int n_in, in[4];
    int n_out, out[2];
    int opt_type;
    int n_opt;
    fb_field opt[8];
    int vec_field; /* an int32 vector option field (Reshape.new_shape), or -1 */
    int n_vec;
    int32_t vec[4];
} tm_op;

typedef struct tm_model {
    int version;
    int n_tensors;
    tm_tensor t[24];
    int n_ops;
    tm_op op[24];
    int n_in, in[2];
    int n_out, out[4];
    const char *custom_name;
} tm_model;

static void tm_init(tm_model *m)
{
    memset(m, 0, sizeof *m);
    m->version = 3;
}

static int tm_tensor_add(tm_model *m, const char *name, int type, int rank,
                         const int *dims, const void *data, size_t nbytes)
{
    tm_tensor *t = &m->t[m->n_tensors];
    assert_true(m->n_tensors < 24);
    t->name = name;
    t->type = (uint8_t)type; /* a negative byte is no known type */
    t->rank = rank;
    for (int i = 0; i < rank; i++)
        t->dims[i] = dims[i];
    t->data = data;
    t->nbytes = nbytes;
    return m->n_tensors++;
}

static int tm_f32(tm_model *m, const char *name, int rank, const int *dims,
                  const float *data, size_t count)
{
    return tm_tensor_add(m, name, T_F32, rank, dims, data, count * 4);
}

static int tm_act(tm_model *m, const char *name, int rank, const int *dims)
{
    return tm_tensor_add(m, name, T_F32, rank, dims, NULL, 0);
}

static tm_op *tm_op_add(tm_model *m, int code, int n_in, const int *in,
                        int out, int opt_type)
{
    tm_op *o = &m->op[m->n_ops++];
    assert_true(m->n_ops <= 24);
    memset(o, 0, sizeof *o);
    o->code = code;
    o->n_in = n_in;
    for (int i = 0; i < n_in; i++)
        o->in[i] = in[i];
    o->n_out = 1;
    o->out[0] = out;
    o->opt_type = opt_type;
    o->vec_field = -1;
    return o;
}

static void tm_opt(tm_op *o, int field, int size, uint64_t value)
{
    o->opt[field].size = size;
    o->opt[field].value = value;
    if (field + 1 > o->n_opt)
        o->n_opt = field + 1;
}

static void tm_io(tm_model *m, int input, int output)
{
    m->n_in = 1;
    m->in[0] = input;
    m->n_out = 1;
    m->out[0] = output;
}

static void write_quant(fbb *b, size_t at, const tm_tensor *t)
{
    fb_field f[7] = {{0, 0}};
    size_t pos[7], table;
    f[2].size = 4;
    if (t->n_zero_point)
        f[3].size = 4;
    f[6].size = 4;
    f[6].value = (uint32_t)t->quant_dim;
    table = fbb_table(b, 7, f, pos);
    fbb_link(b, at, table);
    fbb_link(b, pos[2], fbb_vector(b, 4, (size_t)t->n_quant, t->scale));
    if (t->n_zero_point)
        fbb_link(b, pos[3], fbb_vector(b, 8, (size_t)t->n_zero_point,
                                       t->zero_point));
}

static void write_tensor(fbb *b, size_t at, const tm_tensor *t,
                         uint32_t buffer)
{
    fb_field f[5] = {{4, 0}, {1, (uint64_t)(uint8_t)t->type}, {4, buffer},
                     {t->name ? 4 : 0, 0}, {t->n_quant ? 4 : 0, 0}};
    size_t pos[5], table = fbb_table(b, 5, f, pos);
    int32_t dims[6];
    fbb_link(b, at, table);
    for (int i = 0; i < t->rank; i++)
        dims[i] = t->dims[i];
    fbb_link(b, pos[0], fbb_vector(b, 4, (size_t)t->rank, dims));
    if (t->name)
        fbb_link(b, pos[3], fbb_string(b, t->name));
    if (t->n_quant)
        write_quant(b, pos[4], t);
}

static void write_operator(fbb *b, size_t at, const tm_op *o, uint32_t opcode)
{
    fb_field f[5] = {{4, opcode}, {4, 0}, {4, 0}, {1, (uint64_t)o->opt_type},
                     {o->opt_type ? 4 : 0, 0}};
    size_t pos[5], table = fbb_table(b, 5, f, pos);
    int32_t ins[4], outs[2];
    fbb_link(b, at, table);
    for (int i = 0; i < o->n_in; i++)
        ins[i] = o->in[i];
    for (int i = 0; i < o->n_out; i++)
        outs[i] = o->out[i];
    fbb_link(b, pos[1], fbb_vector(b, 4, (size_t)o->n_in, ins));
    fbb_link(b, pos[2], fbb_vector(b, 4, (size_t)o->n_out, outs));
    if (o->opt_type) {
        fb_field of[8];
        size_t opos[8], otable;
        int n = o->n_opt;
        memcpy(of, o->opt, sizeof of);
        if (o->vec_field >= 0) {
            of[o->vec_field].size = 4;
            if (o->vec_field + 1 > n)
                n = o->vec_field + 1;
        }
        otable = fbb_table(b, n, of, opos);
        fbb_link(b, pos[4], otable);
        if (o->vec_field >= 0)
            fbb_link(b, opos[o->vec_field],
                     fbb_vector(b, 4, (size_t)o->n_vec, o->vec));
    }
}

/* Serialise; caller frees. */
static uint8_t *tm_build(const tm_model *m, size_t *size)
{
    fbb b = {NULL, 0, 0};
    int codes[24] = {0}, n_codes = 0, opcode_of[24];
    uint32_t buffer_of[24], n_buffers = 1;
    size_t mpos[5], model, v, sg, sgpos[4];
    fb_field mf[5] = {{4, (uint64_t)m->version}, {4, 0}, {4, 0}, {0, 0},
                      {4, 0}};

    for (int i = 0; i < m->n_ops; i++) {
        int k;
        for (k = 0; k < n_codes && codes[k] != m->op[i].code; k++)
            ;
        if (k == n_codes)
            codes[n_codes++] = m->op[i].code;
        opcode_of[i] = k;
    }
    for (int i = 0; i < m->n_tensors; i++)
        buffer_of[i] = m->t[i].data ? n_buffers++ : 0;

    fbb_put(&b, NULL, 4);
    fbb_put(&b, "TFL3", 4);
    model = fbb_table(&b, 5, mf, mpos);
    fbb_le(&b, 0, model, 4);

    /* operator codes */
    v = fbb_vector(&b, 4, (size_t)n_codes, NULL);
    fbb_link(&b, mpos[1], v);
    for (int k = 0; k < n_codes; k++) {
        int c = codes[k];
        int custom = c == B_CUSTOM && m->custom_name;
        fb_field f[4] = {{1, (uint64_t)(c < 127 ? c : 127)},
                         {custom ? 4 : 0, 0}, {4, 1}, {4, (uint64_t)c}};
        size_t pos[4], t = fbb_table(&b, 4, f, pos);
        fbb_link(&b, v + 4 + 4 * (size_t)k, t);
        if (custom)
            fbb_link(&b, pos[1], fbb_string(&b, m->custom_name));
    }

    /* the subgraph */
    v = fbb_vector(&b, 4, 1, NULL);
    fbb_link(&b, mpos[2], v);
    {
        fb_field f[4] = {{4, 0}, {4, 0}, {4, 0}, {4, 0}};
        sg = fbb_table(&b, 4, f, sgpos);
        fbb_link(&b, v + 4, sg);
    }
    v = fbb_vector(&b, 4, (size_t)m->n_tensors, NULL);
    fbb_link(&b, sgpos[0], v);
    for (int i = 0; i < m->n_tensors; i++)
        write_tensor(&b, v + 4 + 4 * (size_t)i, &m->t[i], buffer_of[i]);
    {
        int32_t ins[2], outs[4];
        for (int i = 0; i < m->n_in; i++)
            ins[i] = m->in[i];
        for (int i = 0; i < m->n_out; i++)
            outs[i] = m->out[i];
        fbb_link(&b, sgpos[1], fbb_vector(&b, 4, (size_t)m->n_in, ins));
        fbb_link(&b, sgpos[2], fbb_vector(&b, 4, (size_t)m->n_out, outs));
    }
    v = fbb_vector(&b, 4, (size_t)m->n_ops, NULL);
    fbb_link(&b, sgpos[3], v);
    for (int i = 0; i < m->n_ops; i++)
        write_operator(&b, v + 4 + 4 * (size_t)i, &m->op[i],
                       (uint32_t)opcode_of[i]);

    /* buffers: 0 is the conventional empty one */
    v = fbb_vector(&b, 4, n_buffers, NULL);
    fbb_link(&b, mpos[4], v);
    {
        fb_field none[1] = {{0, 0}};
        size_t pos[1];
        fbb_link(&b, v + 4, fbb_table(&b, 1, none, pos));
    }
    size_t ext_pos[24] = {0};
    for (int i = 0; i < m->n_tensors; i++) {
        fb_field f[3] = {{4, 0}, {0, 0}, {0, 0}};
        size_t pos[3], t;
        if (!buffer_of[i])
            continue;
        if (m->t[i].external) {
            f[0].size = 0;
            f[1].size = 8; /* offset, patched below */
            f[2].size = 8;
            f[2].value = m->t[i].nbytes;
        }
        t = fbb_table(&b, 3, f, pos);
        fbb_link(&b, v + 4 + 4 * (size_t)buffer_of[i], t);
        if (m->t[i].external)
            ext_pos[i] = pos[1];
        else
            fbb_link(&b, pos[0],
                     fbb_vector(&b, 1, m->t[i].nbytes, m->t[i].data));
    }
    fbb_pad(&b, 8);
    /* Large-model layout: raw data after the flatbuffer, addressed from
     * the start of the file. */
    for (int i = 0; i < m->n_tensors; i++) {
        if (!ext_pos[i])
            continue;
        size_t at = fbb_pad(&b, 16);
        fbb_put(&b, m->t[i].data, m->t[i].nbytes);
        fbb_le(&b, ext_pos[i], at, 8);
    }
    fbb_pad(&b, 8);
    *size = b.len;
    return b.buf;
}

/* ======================================================================== */
/* Helpers                                                                  */
/* ======================================================================== */

static nn_graph *import_ok(const tm_model *m)
{
    size_t size;
    uint8_t *data = tm_build(m, &size);
    nn_graph *g = NULL;
    facenet_error err;
    facenet_status st = nn_import_tflite(data, size, &g, &err);
    if (st != FACENET_OK)
        fail_msg("import failed: %s", err.message);
    free(data);
    assert_non_null(g);
    assert_true(g->finalized);
    return g;
}

static facenet_status import_err(const tm_model *m, facenet_error *err)
{
    size_t size;
    uint8_t *data = tm_build(m, &size);
    nn_graph *g = (nn_graph *)&size; /* must be reset to NULL on failure */
    facenet_status st = nn_import_tflite(data, size, &g, err);
    free(data);
    assert_int_not_equal(st, FACENET_OK);
    assert_null(g);
    assert_int_equal(err->code, st);
    assert_true(strlen(err->message) > 0);
    return st;
}

static int value_named(const nn_graph *g, const char *name)
{
    for (int i = 0; i < g->n_values; i++)
        if (strcmp(g->values[i].name, name) == 0)
            return i;
    fail_msg("no value named '%s'", name);
    return -1;
}

static const nn_node *producer(const nn_graph *g, const char *name)
{
    int id = value_named(g, name);
    assert_true(g->values[id].producer >= 0);
    return &g->nodes[g->values[id].producer];
}

static void assert_shape(const nn_shape *s, int rank, int d0, int d1, int d2,
                         int d3)
{
    char buf[64];
    int want[4] = {d0, d1, d2, d3};
    int ok = s->rank == rank;
    for (int i = 0; i < rank && ok; i++)
        ok = s->dims[i] == want[i];
    if (!ok)
        fail_msg("shape %s, want rank %d [%d,%d,%d,%d]",
                 nn_shape_str(s, buf, sizeof buf), rank, d0, d1, d2, d3);
}

/* Input [1,4,4,2] -> CONV_2D 3x3 (3 filters) -> output. Weight values are
 * i * 0.25 - 2 so each one is distinct and exact. */
static float conv_w[3 * 3 * 3 * 2], conv_b[3] = {0.5f, -1.0f, 2.0f};

static void conv_model(tm_model *m, int act, int padding, int stride)
{
    static const int in_dims[4] = {1, 4, 4, 2}, w_dims[4] = {3, 3, 3, 2},
                     b_dims[1] = {3}, out_dims[4] = {1, 4, 4, 3};
    for (int i = 0; i < 54; i++)
        conv_w[i] = (float)i * 0.25f - 2.0f;
    tm_init(m);
    int x = tm_act(m, "input", 4, in_dims);
    int w = tm_f32(m, "conv/w", 4, w_dims, conv_w, 54);
    int b = tm_f32(m, "conv/b", 1, b_dims, conv_b, 3);
    int y = tm_act(m, "conv/out", 4, out_dims);
    int in[3] = {x, w, b};
    tm_op *o = tm_op_add(m, B_CONV, 3, in, y, O_CONV);
    tm_opt(o, 0, 1, (uint64_t)padding);
    tm_opt(o, 1, 4, (uint64_t)stride);
    tm_opt(o, 2, 4, (uint64_t)stride);
    tm_opt(o, 3, 1, (uint64_t)act);
    tm_io(m, x, y);
}

/* ======================================================================== */
/* Built models                                                             */
/* ======================================================================== */

static void test_conv2d(void **state)
{
    tm_model m;
    nn_graph *g;
    const nn_node *n;
    (void)state;

    conv_model(&m, 1 /* RELU */, 0 /* SAME */, 1);
    g = import_ok(&m);
    assert_int_equal(g->n_nodes, 1);
    n = producer(g, "conv/out");
    assert_int_equal(n->op, NN_OP_CONV2D);
    assert_int_equal(n->n_inputs, 3);
    assert_int_equal(n->attrs.conv.padding, NN_PAD_SAME);
    assert_int_equal(n->attrs.conv.stride_h, 1);
    assert_int_equal(n->attrs.conv.act, NN_ACT_RELU);
    assert_memory_equal(g->values[n->inputs[1]].data, conv_w, sizeof conv_w);
    assert_memory_equal(g->values[n->inputs[2]].data, conv_b, sizeof conv_b);
    assert_shape(&g->values[n->inputs[1]].shape, 4, 3, 3, 3, 2);
    assert_int_equal(g->n_outputs, 1);
    assert_int_equal(g->outputs[0], n->output);
    assert_string_equal(g->values[g->input].name, "input");
    assert_shape(&g->values[n->output].shape, 4, 1, 4, 4, 3);
    nn_graph_free(g);

    /* VALID, stride 2, no activation */
    conv_model(&m, 0, 1, 2);
    m.t[3].dims[1] = m.t[3].dims[2] = 1;
    g = import_ok(&m);
    n = producer(g, "conv/out");
    assert_int_equal(n->attrs.conv.padding, NN_PAD_VALID);
    assert_int_equal(n->attrs.conv.stride_w, 2);
    assert_int_equal(n->attrs.conv.act, NN_ACT_NONE);
    assert_shape(&g->values[n->output].shape, 4, 1, 1, 1, 3);
    nn_graph_free(g);

    /* optional bias given as -1 */
    conv_model(&m, 0, 0, 1);
    m.op[0].in[2] = -1;
    g = import_ok(&m);
    n = producer(g, "conv/out");
    assert_int_equal(n->n_inputs, 2);
    nn_graph_free(g);
}

/* Buffers of models over 2 GB live after the flatbuffer (Buffer.offset
 * and .size); the same path works for a small model. */
static void test_external_buffer(void **state)
{
    tm_model m;
    nn_graph *g;
    const nn_node *n;
    size_t size;
    uint8_t *data;
    facenet_error err;
    (void)state;

    conv_model(&m, 0, 0, 1);
    m.t[1].external = 1;
    g = import_ok(&m);
    n = producer(g, "conv/out");
    assert_memory_equal(g->values[n->inputs[1]].data, conv_w, sizeof conv_w);
    nn_graph_free(g);

    /* Cut the file inside the external data: the offset+size check fails. */
    data = tm_build(&m, &size);
    assert_int_equal(nn_import_tflite(data, size - 16, &g, &err),
                     FACENET_ERR_FORMAT);
    assert_non_null(strstr(err.message, "past the end of the file"));
    free(data);
}

static void test_conv_options_refused(void **state)
{
    tm_model m;
    facenet_error err;
    (void)state;

    conv_model(&m, 0, 0, 1);
    tm_opt(&m.op[0], 4, 4, 2); /* dilation_w_factor */
    assert_int_equal(import_err(&m, &err), FACENET_ERR_UNSUPPORTED);
    assert_non_null(strstr(err.message, "dilation"));

    conv_model(&m, 4 /* TANH */, 0, 1);
    assert_int_equal(import_err(&m, &err), FACENET_ERR_UNSUPPORTED);
    assert_non_null(strstr(err.message, "TANH"));

    conv_model(&m, 0, 0, 0); /* stride 0 */
    assert_int_equal(import_err(&m, &err), FACENET_ERR_FORMAT);

    conv_model(&m, 0, 7, 1); /* padding enum out of range */
    assert_int_equal(import_err(&m, &err), FACENET_ERR_FORMAT);

    conv_model(&m, 0, 0, 1); /* options of the wrong union type */
    m.op[0].opt_type = O_POOL;
    assert_int_equal(import_err(&m, &err), FACENET_ERR_FORMAT);

    conv_model(&m, 0, 0, 1); /* weights that do not fit the input */
    m.t[1].dims[3] = 1;
    m.t[1].nbytes = 27 * 4;
    assert_int_equal(import_err(&m, &err), FACENET_ERR_SHAPE);

    conv_model(&m, 0, 0, 1); /* constant data shorter than its shape */
    m.t[1].nbytes -= 4;
    assert_int_equal(import_err(&m, &err), FACENET_ERR_FORMAT);
    assert_non_null(strstr(err.message, "conv/w"));

    conv_model(&m, 0, 0, 1);
    m.version = 2;
    assert_int_equal(import_err(&m, &err), FACENET_ERR_UNSUPPORTED);
}

/* Half-precision values with exact float32 counterparts, including a
 * subnormal, the largest finite half and an infinity. */
static const uint16_t halves[6] = {0x3C00, 0xC100, 0x2E66, 0x0001, 0x7BFF,
                                   0xFC00};

static void expect_halves(const float *f)
{
    assert_true(f[0] == 1.0f);
    assert_true(f[1] == -2.5f);
    assert_true(f[2] == 0.0999755859375f);
    assert_true(f[3] == ldexpf(1.0f, -24));
    assert_true(f[4] == 65504.0f);
    assert_true(isinf(f[5]) && f[5] < 0);
}

static void test_float16_weights(void **state)
{
    static const int in_dims[4] = {1, 2, 2, 2}, w_dims[4] = {3, 1, 1, 2},
                     out_dims[4] = {1, 2, 2, 3};
    tm_model m;
    nn_graph *g;
    const nn_node *n;
    (void)state;

    /* Weights fed straight into the conv. */
    tm_init(&m);
    int x = tm_act(&m, "x", 4, in_dims);
    int w = tm_tensor_add(&m, "w16", T_F16, 4, w_dims, halves, sizeof halves);
    int y = tm_act(&m, "y", 4, out_dims);
    int in[2] = {x, w};
    tm_op *o = tm_op_add(&m, B_CONV, 2, in, y, O_CONV);
    tm_opt(o, 1, 4, 1);
    tm_opt(o, 2, 4, 1);
    tm_io(&m, x, y);
    g = import_ok(&m);
    n = producer(g, "y");
    expect_halves(g->values[n->inputs[1]].data);
    nn_graph_free(g);

    /* The float16 converter's way: DEQUANTIZE, then the conv. */
    tm_init(&m);
    x = tm_act(&m, "x", 4, in_dims);
    w = tm_tensor_add(&m, "w16", T_F16, 4, w_dims, halves, sizeof halves);
    int wf = tm_act(&m, "w32", 4, w_dims);
    y = tm_act(&m, "y", 4, out_dims);
    tm_op_add(&m, B_DEQUANTIZE, 1, &w, wf, 0);
    in[1] = wf;
    o = tm_op_add(&m, B_CONV, 2, in, y, O_CONV);
    tm_opt(o, 1, 4, 1);
    tm_opt(o, 2, 4, 1);
    tm_io(&m, x, y);
    g = import_ok(&m);
    assert_int_equal(g->n_nodes, 1);
    n = producer(g, "y");
    expect_halves(g->values[n->inputs[1]].data);
    nn_graph_free(g);
}

static void test_int8_weights(void **state)
{
    static const int in_dims[4] = {1, 2, 2, 2}, w_dims[4] = {3, 1, 1, 2},
                     out_dims[4] = {1, 2, 2, 3};
    static const int8_t q[6] = {-128, 0, 3, 127, -1, 5};
    static const uint8_t uq[6] = {0, 128, 255, 1, 130, 7};
    static const float scale1[1] = {0.5f};
    static const int64_t zp1[1] = {3};
    static const float scale3[3] = {0.5f, 0.25f, 2.0f};
    static const int64_t zp3[3] = {0, 1, -1};
    tm_model m;
    nn_graph *g;
    const float *f;
    facenet_error err;
    (void)state;

    tm_init(&m);
    int x = tm_act(&m, "x", 4, in_dims);
    int w = tm_tensor_add(&m, "w8", T_I8, 4, w_dims, q, sizeof q);
    int y = tm_act(&m, "y", 4, out_dims);
    int in[2] = {x, w};
    tm_op *o = tm_op_add(&m, B_CONV, 2, in, y, O_CONV);
    tm_opt(o, 1, 4, 1);
    tm_opt(o, 2, 4, 1);
    tm_io(&m, x, y);

    /* per tensor: 0.5 * (q - 3) */
    m.t[w].n_quant = 1;
    m.t[w].scale = scale1;
    m.t[w].zero_point = zp1;
    m.t[w].n_zero_point = 1;
    g = import_ok(&m);
    f = g->values[producer(g, "y")->inputs[1]].data;
    for (int i = 0; i < 6; i++)
        assert_true(f[i] == 0.5f * (float)(q[i] - 3));
    nn_graph_free(g);

    /* per axis along dim 0 (output channels), 2 values each */
    m.t[w].n_quant = 3;
    m.t[w].scale = scale3;
    m.t[w].zero_point = zp3;
    m.t[w].n_zero_point = 3;
    m.t[w].quant_dim = 0;
    g = import_ok(&m);
    f = g->values[producer(g, "y")->inputs[1]].data;
    for (int i = 0; i < 6; i++) {
        int c = i / 2;
        assert_true(f[i] == scale3[c] * (float)(q[i] - zp3[c]));
    }
    nn_graph_free(g);

    /* uint8, per axis, no zero points stored (0) */
    m.t[w].type = T_U8;
    m.t[w].data = uq;
    m.t[w].n_zero_point = 0;
    g = import_ok(&m);
    f = g->values[producer(g, "y")->inputs[1]].data;
    for (int i = 0; i < 6; i++)
        assert_true(f[i] == scale3[i / 2] * (float)uq[i]);
    nn_graph_free(g);

    /* scales that do not match the quantized dimension */
    m.t[w].quant_dim = 3;
    assert_int_equal(import_err(&m, &err), FACENET_ERR_FORMAT);
    /* no quantization at all */
    m.t[w].n_quant = 0;
    assert_int_equal(import_err(&m, &err), FACENET_ERR_FORMAT);
    assert_non_null(strstr(err.message, "w8"));
    /* an INT32 weight is not something we dequantise */
    m.t[w].type = T_I32;
    m.t[w].nbytes = 24;
    {
        static const int32_t i32[6] = {1, 2, 3, 4, 5, 6};
        m.t[w].data = i32;
        assert_int_equal(import_err(&m, &err), FACENET_ERR_UNSUPPORTED);
        assert_non_null(strstr(err.message, "INT32"));
    }
}

static void test_unsupported_ops_named(void **state)
{
    static const int dims[2] = {1, 4};
    tm_model m;
    facenet_error err;
    (void)state;

    tm_init(&m);
    int x = tm_act(&m, "x", 2, dims);
    int a = tm_act(&m, "a", 2, dims);
    int y = tm_act(&m, "y", 2, dims);
    tm_op_add(&m, B_ABS, 1, &x, a, 0);
    tm_op_add(&m, B_TANH, 1, &a, y, 0);
    tm_io(&m, x, y);
    assert_int_equal(import_err(&m, &err), FACENET_ERR_UNSUPPORTED);
    assert_string_equal(err.message,
                        "unsupported TFLite op TANH (28) at operator 1");

    /* A code past 127 lives only in builtin_code (the byte says 127). */
    m.op[1].code = B_GELU;
    assert_int_equal(import_err(&m, &err), FACENET_ERR_UNSUPPORTED);
    assert_string_equal(err.message,
                        "unsupported TFLite op GELU (150) at operator 1");

    m.op[1].code = B_CUSTOM;
    m.custom_name = "MyFancyOp";
    assert_int_equal(import_err(&m, &err), FACENET_ERR_UNSUPPORTED);
    assert_non_null(strstr(err.message, "MyFancyOp"));

    m.op[1].code = 250;
    assert_int_equal(import_err(&m, &err), FACENET_ERR_UNSUPPORTED);
    assert_non_null(strstr(err.message, "(250)"));

    /* RELU6 with nothing to fuse into (its input is the graph input). */
    {
        tm_model r;
        tm_init(&r);
        int rx = tm_act(&r, "x", 2, dims);
        int ry = tm_act(&r, "y", 2, dims);
        tm_op_add(&r, B_RELU6, 1, &rx, ry, 0);
        tm_io(&r, rx, ry);
        assert_int_equal(import_err(&r, &err), FACENET_ERR_UNSUPPORTED);
        assert_non_null(strstr(err.message, "RELU6"));
    }

    /* A int8 activation (fully quantised model). */
    tm_init(&m);
    x = tm_act(&m, "x", 2, dims);
    y = tm_tensor_add(&m, "yq", T_I8, 2, dims, NULL, 0);
    tm_op_add(&m, B_ABS, 1, &x, y, 0);
    tm_io(&m, x, y);
    assert_int_equal(import_err(&m, &err), FACENET_ERR_UNSUPPORTED);
    assert_non_null(strstr(err.message, "INT8"));
}

static void test_multi_input_refused(void **state)
{
    static const int dims[2] = {1, 4};
    tm_model m;
    facenet_error err;
    (void)state;

    tm_init(&m);
    int a = tm_act(&m, "a", 2, dims);
    int b = tm_act(&m, "b", 2, dims);
    int y = tm_act(&m, "y", 2, dims);
    int in[2] = {a, b};
    tm_op_add(&m, B_ADD, 2, in, y, O_ADD);
    m.n_in = 2;
    m.in[0] = a;
    m.in[1] = b;
    m.n_out = 1;
    m.out[0] = y;
    assert_int_equal(import_err(&m, &err), FACENET_ERR_UNSUPPORTED);
    assert_non_null(strstr(err.message, "2 inputs"));

    /* zero inputs, too */
    m.n_in = 0;
    assert_int_equal(import_err(&m, &err), FACENET_ERR_UNSUPPORTED);

    /* an output nothing computes */
    m.n_in = 1;
    m.out[0] = b;
    assert_int_equal(import_err(&m, &err), FACENET_ERR_FORMAT);
}

/* MTCNN-style graph: PReLU written as relu(x) - alpha * relu(-x), softmax
 * as max/sub/exp/sum/div over the last axis (given as -1), plus pooling,
 * a fused RELU6 and a fully connected head. */
static void softmax_model(tm_model *m)
{
    static const int x_dims[4] = {1, 4, 4, 2}, p_dims[4] = {1, 2, 2, 2},
                     c_dims[1] = {2}, ax_dims[1] = {1}, r_dims[4] = {1, 2, 2, 1},
                     fc_w_dims[2] = {2, 8}, fc_dims[2] = {1, 2};
    static const float alpha[2] = {0.25f, 0.5f};
    static const int32_t axis[1] = {-1};
    static float fc_w[16];

    for (int i = 0; i < 16; i++)
        fc_w[i] = (float)i;
    tm_init(m);
    int x = tm_act(m, "x", 4, x_dims);
    int pool = tm_act(m, "pool", 4, p_dims);
    int relu6 = tm_act(m, "pool/relu6", 4, p_dims);
    int pos = tm_act(m, "pos", 4, p_dims);
    int negx = tm_act(m, "negx", 4, p_dims);
    int rneg = tm_act(m, "rneg", 4, p_dims);
    int al = tm_f32(m, "alpha", 1, c_dims, alpha, 2);
    int sc = tm_act(m, "scaled", 4, p_dims);
    int pre = tm_act(m, "prelu", 4, p_dims);
    int ax = tm_tensor_add(m, "axis", T_I32, 1, ax_dims, axis, 4);
    int mx = tm_act(m, "max", 4, r_dims);
    int sub = tm_act(m, "sub", 4, p_dims);
    int ex = tm_act(m, "exp", 4, p_dims);
    int sum = tm_act(m, "sum", 4, r_dims);
    int prob = tm_act(m, "prob", 4, p_dims);
    int fw = tm_f32(m, "fc/w", 2, fc_w_dims, fc_w, 16);
    int fc = tm_act(m, "fc", 2, fc_dims);
    tm_op *o;

    o = tm_op_add(m, B_MAX_POOL, 1, &x, pool, O_POOL);
    tm_opt(o, 0, 1, 0);
    tm_opt(o, 1, 4, 2);
    tm_opt(o, 2, 4, 2);
    tm_opt(o, 3, 4, 2);
    tm_opt(o, 4, 4, 2);
    tm_op_add(m, B_RELU6, 1, &pool, relu6, 0);
    tm_op_add(m, B_RELU, 1, &relu6, pos, 0);
    tm_op_add(m, B_NEG, 1, &relu6, negx, 0);
    tm_op_add(m, B_RELU, 1, &negx, rneg, 0);
    {
        int in[2] = {al, rneg};
        tm_op_add(m, B_MUL, 2, in, sc, O_MUL);
    }
    {
        int in[2] = {pos, sc};
        tm_op_add(m, B_SUB, 2, in, pre, O_SUB);
    }
    {
        int in[2] = {pre, ax};
        o = tm_op_add(m, B_REDUCE_MAX, 2, in, mx, O_REDUCER);
        tm_opt(o, 0, 1, 1);
    }
    {
        int in[2] = {pre, mx};
        tm_op_add(m, B_SUB, 2, in, sub, O_SUB);
    }
    tm_op_add(m, B_EXP, 1, &sub, ex, 0);
    {
        int in[2] = {ex, ax};
        o = tm_op_add(m, B_SUM, 2, in, sum, O_REDUCER);
        tm_opt(o, 0, 1, 1);
    }
    {
        int in[2] = {ex, sum};
        tm_op_add(m, B_DIV, 2, in, prob, O_DIV);
    }
    {
        int in[3] = {prob, fw, -1};
        o = tm_op_add(m, B_FC, 3, in, fc, O_FC);
        tm_opt(o, 0, 1, 1); /* fused RELU */
    }
    m->n_in = 1;
    m->in[0] = x;
    m->n_out = 2;
    m->out[0] = prob;
    m->out[1] = fc;
}

static void test_elementwise_softmax_graph(void **state)
{
    tm_model m;
    nn_graph *g;
    const nn_node *n;
    (void)state;

    softmax_model(&m);
    g = import_ok(&m);
    /* RELU6 was fused into the pool, which now carries its name. */
    n = producer(g, "pool/relu6");
    assert_int_equal(n->op, NN_OP_MAX_POOL2D);
    assert_int_equal(n->attrs.pool.act, NN_ACT_RELU6);
    assert_int_equal(n->attrs.pool.kernel_h, 2);
    assert_int_equal(n->attrs.pool.padding, NN_PAD_SAME);
    assert_int_equal(producer(g, "pos")->op, NN_OP_RELU);
    assert_int_equal(producer(g, "negx")->op, NN_OP_NEG);
    assert_int_equal(producer(g, "scaled")->op, NN_OP_MUL);
    assert_int_equal(producer(g, "prelu")->op, NN_OP_SUB);
    n = producer(g, "max");
    assert_int_equal(n->op, NN_OP_REDUCE_MAX);
    assert_int_equal(n->attrs.reduce.axes_mask, 1u << 3);
    assert_int_equal(n->attrs.reduce.keep_dims, 1);
    assert_int_equal(producer(g, "sum")->op, NN_OP_REDUCE_SUM);
    assert_int_equal(producer(g, "exp")->op, NN_OP_EXP);
    assert_int_equal(producer(g, "prob")->op, NN_OP_DIV);
    n = producer(g, "fc");
    assert_int_equal(n->op, NN_OP_FULLY_CONNECTED);
    assert_int_equal(n->n_inputs, 2);
    assert_int_equal(n->attrs.act, NN_ACT_RELU);
    assert_int_equal(g->n_nodes, 12);
    assert_int_equal(g->n_outputs, 2);
    assert_shape(&g->values[g->outputs[0]].shape, 4, 1, 2, 2, 2);
    assert_shape(&g->values[g->outputs[1]].shape, 2, 1, 2, 0, 0);
    nn_graph_free(g);

    /* A pooled value read twice is not fused; RELU stays a node. */
    m.op[1].code = B_RELU;
    m.op[3].in[0] = 1; /* "pool" */
    g = import_ok(&m);
    assert_int_equal(producer(g, "pool")->attrs.pool.act, NN_ACT_NONE);
    assert_int_equal(producer(g, "pool/relu6")->op, NN_OP_RELU);
    nn_graph_free(g);

    /* ... and then a RELU6 there cannot be expressed. */
    m.op[1].code = B_RELU6;
    {
        facenet_error err;
        assert_int_equal(import_err(&m, &err), FACENET_ERR_UNSUPPORTED);
        assert_non_null(strstr(err.message, "operator 1 (RELU6)"));
    }
}

static void test_reshape_follows_batch(void **state)
{
    static const int x_dims[4] = {2, 1, 1, 4}, y_dims[2] = {2, 4},
                     s_dims[1] = {2};
    static const int32_t shape_any[2] = {-1, 4};
    tm_model m;
    nn_graph *g;
    const nn_node *n;
    nn_shape shapes[8], in;
    facenet_error err;
    (void)state;

    /* new_shape [2, 4] in the options, declared batch 2 */
    tm_init(&m);
    int x = tm_act(&m, "x", 4, x_dims);
    int y = tm_act(&m, "y", 2, y_dims);
    tm_op *o = tm_op_add(&m, B_RESHAPE, 1, &x, y, O_RESHAPE);
    o->vec_field = 0;
    o->n_vec = 2;
    o->vec[0] = 2;
    o->vec[1] = 4;
    tm_io(&m, x, y);
    g = import_ok(&m);
    n = producer(g, "y");
    assert_int_equal(n->op, NN_OP_RESHAPE);
    assert_int_equal(n->attrs.reshape.rank, 2);
    assert_int_equal(n->attrs.reshape.dims[0], 0);
    assert_int_equal(n->attrs.reshape.dims[1], 4);
    assert_shape(&g->values[n->output].shape, 2, 2, 4, 0, 0);
    in = nn_shape4(5, 1, 1, 4);
    assert_true(g->n_values <= 8);
    assert_int_equal(nn_infer_shapes(g, &in, shapes, &err), FACENET_OK);
    assert_shape(&shapes[n->output], 2, 5, 4, 0, 0);
    nn_graph_free(g);

    /* the shape as a constant second input wins over the options */
    int s = tm_tensor_add(&m, "shape", T_I32, 1, s_dims, shape_any, 8);
    m.op[0].n_in = 2;
    m.op[0].in[1] = s;
    m.op[0].vec[0] = 3;
    g = import_ok(&m);
    n = producer(g, "y");
    assert_int_equal(n->attrs.reshape.dims[0], -1);
    nn_graph_free(g);

    /* neither: unsupported */
    m.op[0].n_in = 1;
    m.op[0].vec_field = -1;
    assert_int_equal(import_err(&m, &err), FACENET_ERR_UNSUPPORTED);
}

/* Shared with test_other_ops: tensor indices of other_ops_model(). */
enum { OT_DW_W = 1, OT_DW_OUT = 2, OT_L2 = 8, OT_AXES = 9 };
static const int32_t other_axes[2] = {1, 2};

/* depthwise (multiplier 1) -> avg pool -> PReLU per channel ->
 * PReLU with an [H, W, C] alpha -> l2 norm -> mean -> softmax(beta 2) */
static void other_ops_model(tm_model *m)
{
    static const int x_dims[4] = {1, 3, 3, 2}, dw_dims[4] = {1, 3, 3, 2},
                     y_dims[4] = {1, 3, 3, 2}, a_dims[1] = {2},
                     a3_dims[3] = {3, 3, 2}, ax_dims[1] = {2},
                     m_dims[2] = {1, 2};
    static const float w[36] = {1}, alpha[18] = {0.5f, 0.25f};
    tm_op *o;

    tm_init(m);
    int x = tm_act(m, "x", 4, x_dims);
    int dw = tm_f32(m, "dw/w", 4, dw_dims, w, 18);
    int d = tm_act(m, "dw", 4, y_dims);
    int p = tm_act(m, "avg", 4, y_dims);
    int al = tm_f32(m, "alpha", 1, a_dims, alpha, 2);
    int pr = tm_act(m, "prelu", 4, y_dims);
    int al3 = tm_f32(m, "alpha3", 3, a3_dims, alpha, 18);
    int pr3 = tm_act(m, "prelu3", 4, y_dims);
    int l2 = tm_act(m, "l2", 4, y_dims);
    int ax = tm_tensor_add(m, "axes", T_I32, 1, ax_dims, other_axes, 8);
    int mean = tm_act(m, "mean", 2, m_dims);
    int sm = tm_act(m, "softmax", 2, m_dims);
    {
        int in[2] = {x, dw};
        o = tm_op_add(m, B_DWCONV, 2, in, d, O_DW);
        tm_opt(o, 1, 4, 1);
        tm_opt(o, 2, 4, 1);
        tm_opt(o, 3, 4, 1);
    }
    o = tm_op_add(m, B_AVG_POOL, 1, &d, p, O_POOL);
    tm_opt(o, 0, 1, 1);
    tm_opt(o, 1, 4, 1);
    tm_opt(o, 2, 4, 1);
    tm_opt(o, 3, 4, 1);
    tm_opt(o, 4, 4, 1);
    {
        int in[2] = {p, al};
        tm_op_add(m, B_PRELU, 2, in, pr, 0);
    }
    {
        int in[2] = {pr, al3};
        tm_op_add(m, B_PRELU, 2, in, pr3, 0);
    }
    tm_op_add(m, B_L2NORM, 1, &pr3, l2, 0);
    {
        int in[2] = {l2, ax};
        tm_op_add(m, B_MEAN, 2, in, mean, O_REDUCER);
    }
    o = tm_op_add(m, B_SOFTMAX, 1, &mean, sm, O_SOFTMAX);
    tm_opt(o, 0, 4, 0x40000000u); /* beta = 2.0f */
    tm_io(m, x, sm);

}

static void test_other_ops(void **state)
{
    static const int y4_dims[4] = {1, 3, 3, 4};
    tm_model m;
    nn_graph *g;
    const nn_node *n;
    facenet_error err;
    (void)state;

    other_ops_model(&m);
    g = import_ok(&m);
    n = producer(g, "dw");
    assert_int_equal(n->op, NN_OP_DEPTHWISE_CONV2D);
    assert_int_equal(n->attrs.conv.padding, NN_PAD_SAME);
    n = producer(g, "avg");
    assert_int_equal(n->op, NN_OP_AVG_POOL2D);
    assert_int_equal(n->attrs.pool.padding, NN_PAD_VALID);
    n = producer(g, "prelu");
    assert_int_equal(n->op, NN_OP_PRELU);
    assert_shape(&g->values[n->inputs[1]].shape, 1, 2, 0, 0, 0);
    /* a per-position alpha becomes relu(x) - alpha * relu(-x) */
    n = producer(g, "prelu3");
    assert_int_equal(n->op, NN_OP_SUB);
    assert_int_equal(producer(g, "prelu3/scaled")->op, NN_OP_MUL);
    assert_int_equal(producer(g, "l2")->op, NN_OP_L2_NORM);
    n = producer(g, "mean");
    assert_int_equal(n->op, NN_OP_REDUCE_MEAN);
    assert_int_equal(n->attrs.reduce.axes_mask, 6u);
    assert_int_equal(n->attrs.reduce.keep_dims, 0);
    n = producer(g, "softmax");
    assert_int_equal(n->op, NN_OP_SOFTMAX);
    n = &g->nodes[g->values[n->inputs[0]].producer];
    assert_int_equal(n->op, NN_OP_MUL);
    assert_true(g->values[n->inputs[1]].data[0] == 2.0f);
    assert_shape(&g->values[g->outputs[0]].shape, 2, 1, 2, 0, 0);
    nn_graph_free(g);

    /* depth multiplier 2 is refused */
    m.t[OT_DW_W].dims[3] = 4;
    m.t[OT_DW_W].nbytes = 36 * 4;
    memcpy(m.t[OT_DW_OUT].dims, y4_dims, sizeof y4_dims);
    assert_int_equal(import_err(&m, &err), FACENET_ERR_UNSUPPORTED);
    assert_non_null(strstr(err.message, "multiplier 2"));
    m.t[OT_DW_W].dims[3] = 2;
    m.t[OT_DW_W].nbytes = 18 * 4;

    /* an axis out of range */
    {
        static const int32_t bad[2] = {1, 4};
        m.t[OT_AXES].data = bad;
        assert_int_equal(import_err(&m, &err), FACENET_ERR_FORMAT);
        assert_non_null(strstr(err.message, "axis 4"));
        m.t[OT_AXES].data = other_axes;
    }
    /* axes that are not constant */
    m.op[5].in[1] = OT_L2;
    assert_int_equal(import_err(&m, &err), FACENET_ERR_UNSUPPORTED);
}

/* ======================================================================== */
/* Malformed input                                                          */
/* ======================================================================== */

/* Import and check the contract: OK with a graph, or an error with a
 * message and no graph. Never a crash (ASan builds check the rest). */
static int import_any(const uint8_t *data, size_t size)
{
    nn_graph *g = (nn_graph *)&size;
    facenet_error err;
    memset(&err, 0, sizeof err);
    facenet_status st = nn_import_tflite(data, size, &g, &err);
    if (st == FACENET_OK) {
        assert_non_null(g);
        nn_graph_free(g);
        return 1;
    }
    assert_null(g);
    assert_int_equal(err.code, st);
    if (strlen(err.message) == 0)
        fail_msg("empty error message for status %d at size %zu", st, size);
    return 0;
}

static void truncations(const uint8_t *data, size_t size)
{
    for (size_t len = 0; len < size; len++) {
        /* A private copy, so ASan sees any read past the truncated end. */
        uint8_t *copy = malloc(len ? len : 1);
        assert_non_null(copy);
        memcpy(copy, data, len);
        /* trailing padding may be cut off harmlessly; anything before the
         * last buffer cannot. */
        (void)import_any(copy, len);
        free(copy);
    }
    assert_int_equal(import_any(data, size), 1);
}

static uint32_t lcg(uint32_t *s)
{
    *s = *s * 1664525u + 1013904223u;
    return *s >> 8;
}

static void corruptions(const uint8_t *data, size_t size, int rounds,
                        uint32_t seed)
{
    uint8_t *copy = malloc(size);
    int ok = 0;
    assert_non_null(copy);
    for (int r = 0; r < rounds; r++) {
        int flips = 1 + (int)(lcg(&seed) % 8);
        memcpy(copy, data, size);
        for (int k = 0; k < flips; k++) {
            size_t at = lcg(&seed) % size;
            /* Bias towards the flatbuffer's structure (the first bytes
             * and offsets), with a few random bytes anywhere. */
            if (k == 0 && (lcg(&seed) & 1))
                at = lcg(&seed) % (size < 512 ? size : 512);
            copy[at] = (uint8_t)lcg(&seed);
        }
        ok += import_any(copy, size);
    }
    free(copy);
    print_message("%d of %d corrupted copies still imported\n", ok, rounds);
}

static void test_malformed_built_model(void **state)
{
    tm_model m;
    size_t size;
    uint8_t *data;
    (void)state;

    conv_model(&m, 1, 0, 1);
    data = tm_build(&m, &size);
    truncations(data, size);
    corruptions(data, size, 20000, 12345u);
    free(data);

    /* Not a flatbuffer at all / the wrong identifier. */
    {
        facenet_error err;
        nn_graph *g;
        static const uint8_t junk[16] = "0123456789abcdef";
        assert_int_equal(nn_import_tflite(junk, sizeof junk, &g, &err),
                         FACENET_ERR_FORMAT);
        assert_non_null(strstr(err.message, "TFL3"));
        assert_int_equal(nn_import_tflite(junk, 0, &g, &err),
                         FACENET_ERR_FORMAT);
    }
}

/* Hand-made structural attacks on the flatbuffer layer. */
static void test_malformed_structure(void **state)
{
    tm_model m;
    size_t size;
    uint8_t *data, *copy;
    uint32_t root;
    facenet_error err;
    nn_graph *g;
    (void)state;

    conv_model(&m, 1, 0, 1);
    data = tm_build(&m, &size);
    copy = malloc(size);
    assert_non_null(copy);
    root = data[0] | (uint32_t)data[1] << 8;

    /* root offset past the end */
    memcpy(copy, data, size);
    copy[0] = 0xff;
    copy[1] = 0xff;
    assert_int_equal(nn_import_tflite(copy, size, &g, &err), FACENET_ERR_FORMAT);
    /* misaligned root table */
    memcpy(copy, data, size);
    copy[0] = (uint8_t)(root + 1);
    assert_int_equal(nn_import_tflite(copy, size, &g, &err), FACENET_ERR_FORMAT);
    /* vtable offset pointing before the buffer */
    memcpy(copy, data, size);
    copy[root] = 0xff;
    copy[root + 1] = 0xff;
    copy[root + 2] = 0xff;
    copy[root + 3] = 0x7f;
    assert_int_equal(nn_import_tflite(copy, size, &g, &err), FACENET_ERR_FORMAT);
    /* vtable size odd / too small */
    {
        int32_t soff = (int32_t)(data[root] | data[root + 1] << 8 |
                                 data[root + 2] << 16 |
                                 (uint32_t)data[root + 3] << 24);
        size_t vt = (size_t)((int64_t)root - soff);
        memcpy(copy, data, size);
        copy[vt] = 3;
        copy[vt + 1] = 0;
        assert_int_equal(nn_import_tflite(copy, size, &g, &err),
                         FACENET_ERR_FORMAT);
        memcpy(copy, data, size);
        copy[vt + 2] = 0xff; /* inline size past the end */
        copy[vt + 3] = 0xff;
        assert_int_equal(nn_import_tflite(copy, size, &g, &err),
                         FACENET_ERR_FORMAT);
    }
    free(copy);
    free(data);
}

/* ======================================================================== */
/* The real models                                                          */
/* ======================================================================== */

/* Read a model file from the model directory; skips the test when it is
 * absent (fails when FACENET_REQUIRE_MODELS=1). */
static uint8_t *read_model(const char *file, size_t *size)
{
    char path[4096];
    uint8_t *data;
    facenet_error err;
    const char *req = getenv("FACENET_REQUIRE_MODELS");
    (void)snprintf(path, sizeof path, "%s/%s", tu_model_dir(), file);
    facenet_status st = fn_read_file(path, (size_t)64 << 20, &data, size, &err);
    if (st != FACENET_OK) {
        if (req && strcmp(req, "1") == 0)
            fail_msg("%s", err.message);
        print_message("SKIP: %s\n", err.message);
        skip();
    }
    return data;
}

static nn_graph *import_file(const char *file)
{
    size_t size;
    uint8_t *data = read_model(file, &size);
    nn_graph *g = NULL;
    facenet_error err;
    if (nn_import_tflite(data, size, &g, &err) != FACENET_OK)
        fail_msg("%s: %s", file, err.message);
    free(data);
    return g;
}

static int count_op(const nn_graph *g, nn_op op)
{
    int n = 0;
    for (int i = 0; i < g->n_nodes; i++)
        n += g->nodes[i].op == op;
    return n;
}

/* Shapes of the outputs for a given input shape. */
static void infer_outputs(const nn_graph *g, nn_shape in, nn_shape *outs)
{
    facenet_error err;
    nn_shape *shapes = malloc((size_t)g->n_values * sizeof *shapes);
    assert_non_null(shapes);
    if (nn_infer_shapes(g, &in, shapes, &err) != FACENET_OK)
        fail_msg("%s", err.message);
    for (int i = 0; i < g->n_outputs; i++)
        outs[i] = shapes[g->outputs[i]];
    free(shapes);
}

static void test_real_pnet(void **state)
{
    nn_graph *g = import_file("pnet.tflite");
    nn_shape outs[4];
    (void)state;

    /* 3 convs + 2 heads; 3 PReLUs of relu/neg/relu/neg/mul/add; one pool;
     * the softmax as max/sub/exp/sum/div. */
    assert_int_equal(count_op(g, NN_OP_CONV2D), 5);
    assert_int_equal(count_op(g, NN_OP_MAX_POOL2D), 1);
    assert_int_equal(count_op(g, NN_OP_RELU), 6);
    assert_int_equal(count_op(g, NN_OP_NEG), 6);
    assert_int_equal(count_op(g, NN_OP_REDUCE_MAX), 1);
    assert_int_equal(count_op(g, NN_OP_REDUCE_SUM), 1);
    assert_int_equal(count_op(g, NN_OP_EXP), 1);
    assert_int_equal(count_op(g, NN_OP_DIV), 1);
    assert_int_equal(g->n_outputs, 2);
    assert_int_equal(g->values[g->input].shape.dims[3], 3);
    /* The MTCNN input is transposed: a 30 (H) x 40 (W) image is fed as
     * [1, 40, 30, 3] and the maps come back as [1, 15, 10, C]. */
    infer_outputs(g, nn_shape4(1, 40, 30, 3), outs);
    assert_shape(&outs[0], 4, 1, 15, 10, 2);
    assert_shape(&outs[1], 4, 1, 15, 10, 4);
    infer_outputs(g, nn_shape4(3, 12, 12, 3), outs);
    assert_shape(&outs[0], 4, 3, 1, 1, 2);
    nn_graph_free(g);
}

static void test_real_rnet_onet(void **state)
{
    nn_graph *g = import_file("rnet.tflite");
    nn_shape outs[4];
    (void)state;

    assert_int_equal(count_op(g, NN_OP_CONV2D), 3);
    assert_int_equal(count_op(g, NN_OP_FULLY_CONNECTED), 3);
    assert_int_equal(count_op(g, NN_OP_MAX_POOL2D), 2);
    assert_int_equal(g->n_outputs, 2);
    infer_outputs(g, nn_shape4(7, 24, 24, 3), outs);
    assert_shape(&outs[0], 2, 7, 2, 0, 0);
    assert_shape(&outs[1], 2, 7, 4, 0, 0);
    nn_graph_free(g);

    g = import_file("onet.tflite");
    assert_int_equal(count_op(g, NN_OP_CONV2D), 4);
    assert_int_equal(count_op(g, NN_OP_FULLY_CONNECTED), 4);
    assert_int_equal(count_op(g, NN_OP_MAX_POOL2D), 3);
    assert_int_equal(g->n_outputs, 3);
    infer_outputs(g, nn_shape4(1, 48, 48, 3), outs);
    assert_shape(&outs[0], 2, 1, 2, 0, 0);
    assert_shape(&outs[1], 2, 1, 4, 0, 0);
    assert_shape(&outs[2], 2, 1, 10, 0, 0);
    nn_graph_free(g);
}

static void test_real_mobilefacenet(void **state)
{
    nn_graph *g = import_file("MobileFaceNet.tflite");
    nn_shape outs[4];
    const nn_node *last;
    (void)state;

    assert_true(count_op(g, NN_OP_CONV2D) > 20);
    assert_true(count_op(g, NN_OP_DEPTHWISE_CONV2D) > 10);
    assert_int_equal(count_op(g, NN_OP_RESHAPE), 1);
    /* PReLU as relu(x) + c * (x - |x|): one ABS per PReLU */
    assert_int_equal(count_op(g, NN_OP_ABS), count_op(g, NN_OP_RELU));
    assert_int_equal(g->n_outputs, 1);
    assert_string_equal(g->values[g->outputs[0]].name, "embeddings");
    /* stored at batch 2 ... */
    assert_int_equal(g->values[g->input].shape.dims[0], 2);
    last = &g->nodes[g->values[g->outputs[0]].producer];
    assert_int_equal(last->op, NN_OP_RESHAPE);
    assert_int_equal(last->attrs.reshape.dims[0], 0);
    /* ... and runs at any batch */
    infer_outputs(g, nn_shape4(1, 112, 112, 3), outs);
    assert_shape(&outs[0], 2, 1, 192, 0, 0);
    infer_outputs(g, nn_shape4(16, 112, 112, 3), outs);
    assert_shape(&outs[0], 2, 16, 192, 0, 0);
    nn_graph_free(g);
}

static void test_real_pnet_malformed(void **state)
{
    size_t size;
    uint8_t *data = read_model("pnet.tflite", &size);
    (void)state;
    truncations(data, size);
    corruptions(data, size, 3000, 777u);
    free(data);
}

/* ======================================================================== */
/* Seed corpus for the fuzzer                                               */
/* ======================================================================== */

static void write_seed(const char *dir, const char *name, const tm_model *m)
{
    char path[4096];
    size_t size;
    uint8_t *data = tm_build(m, &size);
    FILE *f;
    (void)snprintf(path, sizeof path, "%s/%s", dir, name);
    f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(data, 1, size, f), size);
    assert_int_equal(fclose(f), 0);
    free(data);
}

static void test_write_corpus(void **state)
{
    const char *dir = getenv("FACENET_TFLITE_CORPUS_DIR");
    static const int dims[2] = {1, 4};
    tm_model m;
    (void)state;
    if (!dir || !*dir)
        skip();
    conv_model(&m, 1, 0, 1);
    write_seed(dir, "conv_relu_same.tflite", &m);
    conv_model(&m, 0, 1, 2);
    m.t[3].dims[1] = m.t[3].dims[2] = 1;
    write_seed(dir, "conv_valid_s2.tflite", &m);
    softmax_model(&m);
    write_seed(dir, "pool_prelu_softmax_fc.tflite", &m);
    other_ops_model(&m);
    write_seed(dir, "dw_avg_prelu_l2_mean.tflite", &m);
    {
        /* the conv with int8 per-axis and float16 weights */
        static int8_t q[54];
        static uint16_t h[54];
        static const float scale[3] = {0.5f, 0.25f, 2.0f};
        static const int64_t zp[3] = {0, 1, -1};
        for (int i = 0; i < 54; i++) {
            q[i] = (int8_t)(i * 5 - 128);
            h[i] = halves[i % 6];
        }
        conv_model(&m, 0, 0, 1);
        m.t[1].type = T_I8;
        m.t[1].data = q;
        m.t[1].nbytes = sizeof q;
        m.t[1].n_quant = 3;
        m.t[1].scale = scale;
        m.t[1].zero_point = zp;
        m.t[1].n_zero_point = 3;
        write_seed(dir, "conv_int8_per_axis.tflite", &m);
        conv_model(&m, 0, 0, 1);
        m.t[1].type = T_F16;
        m.t[1].data = h;
        m.t[1].nbytes = sizeof h;
        write_seed(dir, "conv_float16.tflite", &m);
    }
    tm_init(&m);
    int x = tm_act(&m, "x", 2, dims);
    int a = tm_act(&m, "a", 2, dims);
    int y = tm_act(&m, "y", 2, dims);
    tm_op_add(&m, B_ABS, 1, &x, a, 0);
    tm_op_add(&m, B_TANH, 1, &a, y, 0);
    tm_io(&m, x, y);
    write_seed(dir, "unsupported_tanh.tflite", &m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_conv2d),
        cmocka_unit_test(test_external_buffer),
        cmocka_unit_test(test_conv_options_refused),
        cmocka_unit_test(test_float16_weights),
        cmocka_unit_test(test_int8_weights),
        cmocka_unit_test(test_unsupported_ops_named),
        cmocka_unit_test(test_multi_input_refused),
        cmocka_unit_test(test_elementwise_softmax_graph),
        cmocka_unit_test(test_reshape_follows_batch),
        cmocka_unit_test(test_other_ops),
        cmocka_unit_test(test_malformed_built_model),
        cmocka_unit_test(test_malformed_structure),
        cmocka_unit_test(test_real_pnet),
        cmocka_unit_test(test_real_rnet_onet),
        cmocka_unit_test(test_real_mobilefacenet),
        cmocka_unit_test(test_real_pnet_malformed),
        cmocka_unit_test(test_write_corpus),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
