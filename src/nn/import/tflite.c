/*
 * tflite.c - TensorFlow Lite flatbuffer -> nn_graph.
 *
 * The importer walks subgraph 0 of a .tflite model operator by operator,
 * in the file's (execution) order, and emits the equivalent nodes with the
 * builder in graph.h. Nothing is special-cased per model: what the graph
 * says is what gets built. Schema facts used here (field numbers, enum
 * values) come from TensorFlow Lite's schema.fbs, version 3.
 *
 * What is mapped, and how:
 *   - CONV_2D, DEPTHWISE_CONV_2D (multiplier 1), MAX/AVERAGE_POOL_2D,
 *     FULLY_CONNECTED, ADD, SUB, MUL, DIV, NEG, ABS, EXP, RELU, REDUCE_MAX,
 *     SUM, MEAN, SOFTMAX, RESHAPE, L2_NORMALIZATION, PRELU: one node each
 *     (PRELU with a non-per-channel or non-constant alpha becomes
 *     relu(x) - alpha * relu(-x); SOFTMAX with beta != 1 gets a MUL first).
 *   - A RELU or RELU6 operator that is the only reader of the output of a
 *     conv/pool/FC/binary op is fused into that op's activation. RELU6
 *     cannot be expressed otherwise and is refused when it cannot be fused.
 *   - DEQUANTIZE of a constant (how float16 models store their weights) is
 *     folded: its output is the converted constant.
 *   - Constant data: float32, float16 (converted), int8/uint8 (dequantised
 *     with per-tensor or per-axis scale and zero point).
 *   - RESHAPE targets whose first dim is the declared batch size become 0
 *     ("copy from input"), so a graph stored at batch 2 runs at any batch.
 *
 * Anything else fails with FACENET_ERR_UNSUPPORTED and a message naming the
 * op or type and the operator index; anything malformed fails with
 * FACENET_ERR_FORMAT.
 */
#include "nn/import/import.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/error.h"
#include "nn/import/flatbuf.h"

/* ---- schema constants -------------------------------------------------- */

/* Field numbers (schema order). */
enum { MODEL_VERSION = 0, MODEL_OPCODES = 1, MODEL_SUBGRAPHS = 2,
       MODEL_BUFFERS = 4 };
enum { OPCODE_DEPRECATED = 0, OPCODE_CUSTOM = 1, OPCODE_BUILTIN = 3 };
enum { SUBGRAPH_TENSORS = 0, SUBGRAPH_INPUTS = 1, SUBGRAPH_OUTPUTS = 2,
       SUBGRAPH_OPERATORS = 3 };
enum { TENSOR_SHAPE = 0, TENSOR_TYPE = 1, TENSOR_BUFFER = 2, TENSOR_NAME = 3,
       TENSOR_QUANT = 4, TENSOR_SPARSITY = 6 };
enum { QUANT_SCALE = 2, QUANT_ZERO_POINT = 3, QUANT_DETAILS_TYPE = 4,
       QUANT_DIMENSION = 6 };
enum { BUFFER_DATA = 0, BUFFER_OFFSET = 1, BUFFER_SIZE = 2 };
enum { OPERATOR_OPCODE = 0, OPERATOR_INPUTS = 1, OPERATOR_OUTPUTS = 2,
       OPERATOR_OPTIONS_TYPE = 3, OPERATOR_OPTIONS = 4 };

/* TensorType */
enum { TT_FLOAT32 = 0, TT_FLOAT16 = 1, TT_INT32 = 2, TT_UINT8 = 3,
       TT_INT64 = 4, TT_INT8 = 9 };

/* BuiltinOperator codes handled here. */
enum {
    OP_ADD = 0, OP_AVERAGE_POOL_2D = 1, OP_CONV_2D = 3,
    OP_DEPTHWISE_CONV_2D = 4, OP_DEQUANTIZE = 6, OP_FULLY_CONNECTED = 9,
    OP_L2_NORMALIZATION = 11, OP_MAX_POOL_2D = 17, OP_MUL = 18, OP_RELU = 19,
    OP_RELU6 = 21, OP_RESHAPE = 22, OP_SOFTMAX = 25, OP_CUSTOM = 32,
    OP_MEAN = 40, OP_SUB = 41, OP_DIV = 42, OP_EXP = 47, OP_PRELU = 54,
    OP_NEG = 59, OP_SUM = 74, OP_REDUCE_MAX = 82, OP_ABS = 101
};

/* BuiltinOptions union member numbers. */
enum {
    OPT_CONV2D = 1, OPT_DEPTHWISE = 2, OPT_POOL2D = 5, OPT_FULLY_CONNECTED = 8,
    OPT_SOFTMAX = 9, OPT_ADD = 11, OPT_L2NORM = 12, OPT_RESHAPE = 17,
    OPT_MUL = 21, OPT_REDUCER = 27, OPT_SUB = 28, OPT_DIV = 29
};

/* ActivationFunctionType */
enum { ACT_NONE = 0, ACT_RELU = 1, ACT_RELU_N1_TO_1 = 2, ACT_RELU6 = 3,
       ACT_TANH = 4, ACT_SIGN_BIT = 5 };

static const char *const builtin_names[] = {
    "ADD", "AVERAGE_POOL_2D", "CONCATENATION", "CONV_2D", "DEPTHWISE_CONV_2D",
    "DEPTH_TO_SPACE", "DEQUANTIZE", "EMBEDDING_LOOKUP", "FLOOR",
    "FULLY_CONNECTED", "HASHTABLE_LOOKUP", "L2_NORMALIZATION", "L2_POOL_2D",
    "LOCAL_RESPONSE_NORMALIZATION", "LOGISTIC", "LSH_PROJECTION", "LSTM",
    "MAX_POOL_2D", "MUL", "RELU", "RELU_N1_TO_1", "RELU6", "RESHAPE",
    "RESIZE_BILINEAR", "RNN", "SOFTMAX", "SPACE_TO_DEPTH", "SVDF", "TANH",
    "CONCAT_EMBEDDINGS", "SKIP_GRAM", "CALL", "CUSTOM",
    "EMBEDDING_LOOKUP_SPARSE", "PAD", "UNIDIRECTIONAL_SEQUENCE_RNN", "GATHER",
    "BATCH_TO_SPACE_ND", "SPACE_TO_BATCH_ND", "TRANSPOSE", "MEAN", "SUB",
    "DIV", "SQUEEZE", "UNIDIRECTIONAL_SEQUENCE_LSTM", "STRIDED_SLICE",
    "BIDIRECTIONAL_SEQUENCE_RNN", "EXP", "TOPK_V2", "SPLIT", "LOG_SOFTMAX",
    "DELEGATE", "BIDIRECTIONAL_SEQUENCE_LSTM", "CAST", "PRELU", "MAXIMUM",
    "ARG_MAX", "MINIMUM", "LESS", "NEG", "PADV2", "GREATER", "GREATER_EQUAL",
    "LESS_EQUAL", "SELECT", "SLICE", "SIN", "TRANSPOSE_CONV",
    "SPARSE_TO_DENSE", "TILE", "EXPAND_DIMS", "EQUAL", "NOT_EQUAL", "LOG",
    "SUM", "SQRT", "RSQRT", "SHAPE", "POW", "ARG_MIN", "FAKE_QUANT",
    "REDUCE_PROD", "REDUCE_MAX", "PACK", "LOGICAL_OR", "ONE_HOT",
    "LOGICAL_AND", "LOGICAL_NOT", "UNPACK", "REDUCE_MIN", "FLOOR_DIV",
    "REDUCE_ANY", "SQUARE", "ZEROS_LIKE", "FILL", "FLOOR_MOD", "RANGE",
    "RESIZE_NEAREST_NEIGHBOR", "LEAKY_RELU", "SQUARED_DIFFERENCE",
    "MIRROR_PAD", "ABS", "SPLIT_V", "UNIQUE", "CEIL", "REVERSE_V2", "ADD_N",
    "GATHER_ND", "COS", "WHERE", "RANK", "ELU", "REVERSE_SEQUENCE",
    "MATRIX_DIAG", "QUANTIZE", "MATRIX_SET_DIAG", "ROUND", "HARD_SWISH", "IF",
    "WHILE", "NON_MAX_SUPPRESSION_V4", "NON_MAX_SUPPRESSION_V5", "SCATTER_ND",
    "SELECT_V2", "DENSIFY", "SEGMENT_SUM", "BATCH_MATMUL",
    "PLACEHOLDER_FOR_GREATER_OP_CODES", "CUMSUM", "CALL_ONCE", "BROADCAST_TO",
    "RFFT2D", "CONV_3D", "IMAG", "REAL", "COMPLEX_ABS", "HASHTABLE",
    "HASHTABLE_FIND", "HASHTABLE_IMPORT", "HASHTABLE_SIZE", "REDUCE_ALL",
    "CONV_3D_TRANSPOSE", "VAR_HANDLE", "READ_VARIABLE", "ASSIGN_VARIABLE",
    "BROADCAST_ARGS", "RANDOM_STANDARD_NORMAL", "BUCKETIZE", "RANDOM_UNIFORM",
    "MULTINOMIAL", "GELU", "DYNAMIC_UPDATE_SLICE", "RELU_0_TO_1",
    "UNSORTED_SEGMENT_PROD", "UNSORTED_SEGMENT_MAX", "UNSORTED_SEGMENT_SUM",
    "ATAN2", "UNSORTED_SEGMENT_MIN", "SIGN", "BITCAST", "BITWISE_XOR",
    "RIGHT_SHIFT",
};

static const char *const type_names[] = {
    "FLOAT32", "FLOAT16", "INT32", "UINT8", "INT64", "STRING", "BOOL",
    "INT16", "COMPLEX64", "INT8", "FLOAT64", "COMPLEX128", "UINT64",
    "RESOURCE", "VARIANT", "UINT32", "UINT16", "INT4",
};

static const char *op_code_name(int code)
{
    if (code >= 0 && code < (int)(sizeof builtin_names / sizeof *builtin_names))
        return builtin_names[code];
    return "(unknown)";
}

static const char *type_name(int type)
{
    if (type >= 0 && type < (int)(sizeof type_names / sizeof *type_names))
        return type_names[type];
    return "(unknown type)";
}

/* ---- importer state ---------------------------------------------------- */

/* Supported ops read at most 3 inputs; a few more are allowed so that the
 * "unsupported op" message wins for ops such as CONCATENATION. Ops beyond
 * this are refused early, which also bounds the work per operator. */
#define MAX_OP_INPUTS 16

/* Constants may expand up to 4x (int8 -> float32) and the converter may
 * share one buffer between tensors; beyond this budget a file is treated
 * as hostile (many tensors aliasing one huge buffer). */
#define CONST_BUDGET_FACTOR 8
#define CONST_BUDGET_EXTRA ((size_t)64 << 20)

typedef struct op_summary {
    int code;      /* builtin code */
    int n_inputs;
    int input0;    /* first input tensor, or -1 */
    int n_outputs;
    int output0;   /* first output tensor, or -1 */
} op_summary;

typedef struct importer {
    const uint8_t *data;
    size_t size;
    fb_vector buffers, tensors, operators;
    int n_codes;
    int *codes;          /* builtin code per operator code entry         */
    const char **custom; /* custom op name per entry (in the file) or NULL */
    int n_tensors;
    int *value_of;       /* per tensor: graph value id or NN_NONE        */
    int *readers;        /* per tensor: operator inputs + graph outputs  */
    int *last_reader;    /* per tensor: last operator reading it, or -1  */
    unsigned char *is_graph_output;
    int n_ops;
    op_summary *ops;
    unsigned char *absorbed; /* per operator: fused into an earlier one  */
    int input_batch;     /* declared batch size of the graph input       */
    size_t const_bytes, const_budget;
    nn_graph *g;
    facenet_error *err;
} importer;

/* What an operator handler needs to know about its operator. */
typedef struct op_ctx {
    int index;
    int opcode_index;
    int code;
    const char *name;
    int n_inputs;
    int inputs[MAX_OP_INPUTS];
    int output;          /* output tensor index                          */
    const char *out_name;
    int options_type;
    int has_options;
    fb_table options;
} op_ctx;

typedef struct tensor_info {
    int index;
    int type;
    uint32_t buffer;
    int rank;                   /* as declared; may exceed NN_MAX_RANK   */
    int dims[NN_MAX_RANK];      /* valid when rank <= NN_MAX_RANK        */
    const char *name;           /* never NULL                            */
    char fallback_name[32];
    int has_quant;
    fb_table quant;
    int has_sparsity;
} tensor_info;

static void set_op_fail(importer *im, const op_ctx *o, facenet_status code,
                        const char *fmt, ...) FN_PRINTF(4, 5);

/* A macro around set_op_fail, like fn_fail, so analysers see `code`
 * returned. */
#define op_fail(im, o, code, ...) \
    fn_status_of((set_op_fail((im), (o), (code), __VA_ARGS__), (code)))

static void set_op_fail(importer *im, const op_ctx *o, facenet_status code,
                        const char *fmt, ...)
{
    char msg[FACENET_ERROR_MESSAGE_MAX];
    va_list ap;
    va_start(ap, fmt);
    (void)vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    fn_set_error(im->err, code, "TFLite operator %d (%s): %s", o->index, o->name, msg);
}

/* ---- tensors ----------------------------------------------------------- */

static facenet_status read_tensor(importer *im, int index, tensor_info *t)
{
    fb_table tt;
    fb_vector shape;
    size_t name_len;
    int8_t type;
    facenet_status st;

    memset(t, 0, sizeof *t);
    t->index = index;
    if (index < 0 || index >= im->n_tensors)
        return fn_fail(im->err, FACENET_ERR_FORMAT,
                       "TFLite tensor index %d out of range (%d tensors)",
                       index, im->n_tensors);
    st = fb_vector_table(&im->tensors, (uint32_t)index, &tt, im->err);
    if (st == FACENET_OK)
        st = fb_vector_field(&tt, TENSOR_SHAPE, 4, &shape, im->err);
    if (st == FACENET_OK)
        st = fb_i8(&tt, TENSOR_TYPE, TT_FLOAT32, &type, im->err);
    if (st == FACENET_OK)
        st = fb_u32(&tt, TENSOR_BUFFER, 0, &t->buffer, im->err);
    if (st == FACENET_OK)
        st = fb_string_field(&tt, TENSOR_NAME, &t->name, &name_len, im->err);
    if (st == FACENET_OK)
        st = fb_table_field(&tt, TENSOR_QUANT, &t->quant, &t->has_quant,
                            im->err);
    if (st != FACENET_OK) {
        fn_error_prefix(im->err, "TFLite tensor %d", index);
        return st;
    }
    t->type = (uint8_t)type; /* a negative byte is no known type */
    t->has_sparsity = fb_has(&tt, TENSOR_SPARSITY);
    t->rank = shape.count > 64 ? 64 : (int)shape.count;
    if (t->rank <= NN_MAX_RANK)
        for (int i = 0; i < t->rank; i++)
            t->dims[i] = fb_vector_i32(&shape, (uint32_t)i);
    if (!t->name || name_len == 0) {
        (void)snprintf(t->fallback_name, sizeof t->fallback_name, "tensor%d", index);
        t->name = t->fallback_name;
    }
    return FACENET_OK;
}

/* The bytes of a tensor's buffer; *len = 0 when it has none. */
static facenet_status tensor_bytes(importer *im, const tensor_info *t,
                                   const uint8_t **bytes, size_t *len)
{
    fb_table buf;
    fb_vector data;
    uint64_t offset, size;
    facenet_status st;

    *bytes = NULL;
    *len = 0;
    if (t->buffer >= im->buffers.count)
        return fn_fail(im->err, FACENET_ERR_FORMAT,
                       "TFLite tensor %d '%s' refers to buffer %u of %u",
                       t->index, t->name, (unsigned)t->buffer,
                       (unsigned)im->buffers.count);
    st = fb_vector_table(&im->buffers, t->buffer, &buf, im->err);
    if (st == FACENET_OK)
        st = fb_vector_field(&buf, BUFFER_DATA, 1, &data, im->err);
    if (st == FACENET_OK)
        st = fb_u64(&buf, BUFFER_OFFSET, 0, &offset, im->err);
    if (st == FACENET_OK)
        st = fb_u64(&buf, BUFFER_SIZE, 0, &size, im->err);
    if (st != FACENET_OK) {
        fn_error_prefix(im->err, "TFLite buffer %u", (unsigned)t->buffer);
        return st;
    }
    /* Models over 2 GB keep data after the flatbuffer, addressed from the
     * start of the file; offset 1 is the writers' "none" placeholder. */
    if (offset > 1) {
        if (offset > im->size || size > im->size - offset)
            return fn_fail(im->err, FACENET_ERR_FORMAT,
                           "TFLite buffer %u: data at offset %llu, size %llu "
                           "lies past the end of the file (%zu bytes)",
                           (unsigned)t->buffer, (unsigned long long)offset,
                           (unsigned long long)size, im->size);
        *bytes = im->data + offset;
        *len = (size_t)size;
        return FACENET_OK;
    }
    *bytes = fb_vector_bytes(&data);
    *len = data.count;
    return FACENET_OK;
}

/* The declared shape of a tensor as an nn_shape with every dim >= 1. */
static facenet_status static_shape(importer *im, const tensor_info *t,
                                   nn_shape *s)
{
    memset(s, 0, sizeof *s);
    if (t->rank > NN_MAX_RANK)
        return fn_fail(im->err, FACENET_ERR_UNSUPPORTED,
                       "TFLite tensor %d '%s' has rank %d; at most %d is "
                       "supported", t->index, t->name, t->rank, NN_MAX_RANK);
    s->rank = t->rank;
    for (int i = 0; i < t->rank; i++) {
        if (t->dims[i] < 1)
            return fn_fail(im->err, FACENET_ERR_FORMAT,
                           "TFLite tensor %d '%s' has dim %d = %d",
                           t->index, t->name, i, t->dims[i]);
        s->dims[i] = t->dims[i];
    }
    if (nn_shape_count(s) == 0)
        return fn_fail(im->err, FACENET_ERR_LIMIT,
                       "TFLite tensor %d '%s' is too large", t->index, t->name);
    return FACENET_OK;
}

static float half_to_float(uint16_t h)
{
    uint32_t sign = (uint32_t)(h >> 15) << 31;
    uint32_t exp = (h >> 10) & 0x1f;
    uint32_t mant = h & 0x3ff;
    uint32_t bits;
    float f;

    if (exp == 0) {
        /* Zero or subnormal: mant * 2^-24, exact in float32. */
        f = ldexpf((float)mant, -24);
        return sign ? -f : f;
    }
    if (exp == 31)
        bits = sign | 0x7f800000u | (mant << 13); /* inf or NaN */
    else
        bits = sign | ((exp + 112) << 23) | (mant << 13);
    memcpy(&f, &bits, sizeof f);
    return f;
}

/* Per-tensor or per-axis affine quantisation: value = scale * (q - zp). */
typedef struct quant_params {
    fb_vector scale, zero_point;
    int axis;        /* -1 for per-tensor */
    int axis_size;
    size_t inner;    /* elements per step along the axis */
} quant_params;

static facenet_status read_quant(importer *im, const tensor_info *t,
                                 const nn_shape *s, quant_params *q)
{
    facenet_status st;
    uint8_t details;
    int32_t axis;

    memset(q, 0, sizeof *q);
    if (!t->has_quant)
        return fn_fail(im->err, FACENET_ERR_FORMAT,
                       "TFLite tensor %d '%s' is %s but has no quantization "
                       "parameters", t->index, t->name, type_name(t->type));
    st = fb_vector_field(&t->quant, QUANT_SCALE, 4, &q->scale, im->err);
    if (st == FACENET_OK)
        st = fb_vector_field(&t->quant, QUANT_ZERO_POINT, 8, &q->zero_point,
                             im->err);
    if (st == FACENET_OK)
        st = fb_u8(&t->quant, QUANT_DETAILS_TYPE, 0, &details, im->err);
    if (st == FACENET_OK)
        st = fb_i32(&t->quant, QUANT_DIMENSION, 0, &axis, im->err);
    if (st != FACENET_OK) {
        fn_error_prefix(im->err, "TFLite tensor %d '%s' quantization",
                        t->index, t->name);
        return st;
    }
    if (details != 0)
        return fn_fail(im->err, FACENET_ERR_UNSUPPORTED,
                       "TFLite tensor %d '%s' uses custom quantization",
                       t->index, t->name);
    if (q->scale.count == 0)
        return fn_fail(im->err, FACENET_ERR_FORMAT,
                       "TFLite tensor %d '%s' is %s but has no scale",
                       t->index, t->name, type_name(t->type));
    if (q->zero_point.count != 0 && q->zero_point.count != q->scale.count)
        return fn_fail(im->err, FACENET_ERR_FORMAT,
                       "TFLite tensor %d '%s' has %u scales but %u zero points",
                       t->index, t->name, (unsigned)q->scale.count,
                       (unsigned)q->zero_point.count);
    for (uint32_t i = 0; i < q->scale.count; i++) {
        float sc = fb_vector_f32(&q->scale, i);
        if (!isfinite(sc))
            return fn_fail(im->err, FACENET_ERR_FORMAT,
                           "TFLite tensor %d '%s' has a non-finite scale",
                           t->index, t->name);
    }
    for (uint32_t i = 0; i < q->zero_point.count; i++) {
        int64_t zp = fb_vector_i64(&q->zero_point, i);
        if (zp < -65536 || zp > 65536)
            return fn_fail(im->err, FACENET_ERR_FORMAT,
                           "TFLite tensor %d '%s' has zero point %lld",
                           t->index, t->name, (long long)zp);
    }
    q->axis = -1;
    if (q->scale.count > 1) {
        if (axis < 0 || axis >= s->rank ||
            (uint32_t)s->dims[axis] != q->scale.count)
            return fn_fail(im->err, FACENET_ERR_FORMAT,
                           "TFLite tensor %d '%s': %u scales do not fit "
                           "quantized dimension %d", t->index, t->name,
                           (unsigned)q->scale.count, (int)axis);
        q->axis = axis;
        q->axis_size = s->dims[axis];
        q->inner = 1;
        for (int i = axis + 1; i < s->rank; i++)
            q->inner *= (size_t)s->dims[i];
    }
    return FACENET_OK;
}

static float dequantize_one(const quant_params *q, size_t i, int value)
{
    uint32_t c = 0;
    int64_t zp;
    if (q->axis >= 0)
        c = (uint32_t)((i / q->inner) % (size_t)q->axis_size);
    zp = q->zero_point.count ? fb_vector_i64(&q->zero_point, c) : 0;
    return (float)((double)fb_vector_f32(&q->scale, c) *
                   (double)((int64_t)value - zp));
}

/* Convert a constant tensor's data to float32 (malloc'd, count floats). */
static facenet_status const_to_float(importer *im, const tensor_info *t,
                                     const uint8_t *bytes, size_t len,
                                     const nn_shape *s, float **out)
{
    size_t count = nn_shape_count(s), elem;
    quant_params q;
    float *f;
    facenet_status st;

    *out = NULL;
    switch (t->type) {
    case TT_FLOAT32: elem = 4; break;
    case TT_FLOAT16: elem = 2; break;
    case TT_INT8:
    case TT_UINT8: elem = 1; break;
    default:
        return fn_fail(im->err, FACENET_ERR_UNSUPPORTED,
                       "TFLite constant tensor %d '%s' has type %s (%d); only "
                       "FLOAT32, FLOAT16, INT8 and UINT8 weights are supported",
                       t->index, t->name, type_name(t->type), t->type);
    }
    if (len / elem != count || len % elem != 0)
        return fn_fail(im->err, FACENET_ERR_FORMAT,
                       "TFLite constant tensor %d '%s' holds %zu bytes; its "
                       "shape needs %zu %s values", t->index, t->name, len,
                       count, type_name(t->type));
    if (count > (im->const_budget - im->const_bytes) / sizeof(float))
        return fn_fail(im->err, FACENET_ERR_LIMIT,
                       "TFLite constant tensor %d '%s': constants exceed %zu "
                       "bytes for a %zu-byte file", t->index, t->name,
                       im->const_budget, im->size);
    if (t->type == TT_INT8 || t->type == TT_UINT8) {
        st = read_quant(im, t, s, &q);
        if (st != FACENET_OK)
            return st;
    }
    f = malloc(count * sizeof *f);
    if (!f)
        return fn_fail(im->err, FACENET_ERR_NO_MEMORY,
                       "out of memory for TFLite tensor %d '%s'", t->index,
                       t->name);
    for (size_t i = 0; i < count; i++) {
        const uint8_t *p = bytes + i * elem;
        switch (t->type) {
        case TT_FLOAT32: {
            uint32_t bits = (uint32_t)p[0] | ((uint32_t)p[1] << 8) |
                            ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
            memcpy(&f[i], &bits, sizeof bits);
            break;
        }
        case TT_FLOAT16:
            f[i] = half_to_float((uint16_t)(p[0] | (p[1] << 8)));
            break;
        case TT_INT8:
            f[i] = dequantize_one(&q, i, (int8_t)p[0]);
            break;
        default: /* TT_UINT8 */
            f[i] = dequantize_one(&q, i, p[0]);
            break;
        }
    }
    im->const_bytes += count * sizeof *f;
    *out = f;
    return FACENET_OK;
}

/* The graph value of tensor `index`: already computed, or a constant
 * converted now. */
static facenet_status tensor_value(importer *im, int index, int *id)
{
    tensor_info t;
    const uint8_t *bytes;
    size_t len;
    nn_shape s;
    float *data;
    facenet_status st;

    *id = NN_NONE;
    if (index < 0 || index >= im->n_tensors)
        return fn_fail(im->err, FACENET_ERR_FORMAT,
                       "TFLite tensor index %d out of range (%d tensors)",
                       index, im->n_tensors);
    if (im->value_of[index] != NN_NONE) {
        *id = im->value_of[index];
        return FACENET_OK;
    }
    st = read_tensor(im, index, &t);
    if (st == FACENET_OK)
        st = tensor_bytes(im, &t, &bytes, &len);
    if (st != FACENET_OK)
        return st;
    if (len == 0)
        return fn_fail(im->err, FACENET_ERR_FORMAT,
                       "TFLite tensor %d '%s' is read before any operator "
                       "computes it and holds no data", index, t.name);
    if (t.has_sparsity)
        return fn_fail(im->err, FACENET_ERR_UNSUPPORTED,
                       "TFLite tensor %d '%s' is sparse", index, t.name);
    st = static_shape(im, &t, &s);
    if (st == FACENET_OK)
        st = const_to_float(im, &t, bytes, len, &s, &data);
    if (st != FACENET_OK)
        return st;
    *id = nn_graph_add_const(im->g, t.name, s, data, im->err);
    if (*id == NN_NONE)
        return im->err ? im->err->code : FACENET_ERR_FORMAT;
    im->value_of[index] = *id;
    return FACENET_OK;
}

/* A small constant integer list (reduction axes, reshape targets): INT32
 * or INT64, rank 0 or 1, at most `max` entries. */
static facenet_status const_int_list(importer *im, const op_ctx *o, int index,
                                     int *out, int max, int *n)
{
    tensor_info t;
    const uint8_t *bytes;
    size_t len, elem, count;
    facenet_status st;

    *n = 0;
    st = read_tensor(im, index, &t);
    if (st == FACENET_OK)
        st = tensor_bytes(im, &t, &bytes, &len);
    if (st != FACENET_OK)
        return st;
    if (len == 0)
        return op_fail(im, o, FACENET_ERR_UNSUPPORTED,
                       "tensor %d '%s' must be a constant", index, t.name);
    if (t.type != TT_INT32 && t.type != TT_INT64)
        return op_fail(im, o, FACENET_ERR_UNSUPPORTED,
                       "tensor %d '%s' has type %s; INT32 expected", index,
                       t.name, type_name(t.type));
    elem = t.type == TT_INT32 ? 4 : 8;
    count = len / elem;
    if (len % elem != 0 || t.rank > 1 ||
        (t.rank == 1 && (size_t)t.dims[0] != count) ||
        (t.rank == 0 && count != 1))
        return op_fail(im, o, FACENET_ERR_FORMAT,
                       "tensor %d '%s' holds %zu bytes, which do not fit its "
                       "shape", index, t.name, len);
    if (count > (size_t)max)
        return op_fail(im, o, FACENET_ERR_UNSUPPORTED,
                       "tensor %d '%s' has %zu entries; at most %d supported",
                       index, t.name, count, max);
    for (size_t i = 0; i < count; i++) {
        const uint8_t *p = bytes + i * elem;
        uint64_t v = 0;
        for (size_t b = 0; b < elem; b++)
            v |= (uint64_t)p[b] << (8 * b);
        int64_t sv = elem == 4 ? (int64_t)(int32_t)(uint32_t)v : (int64_t)v;
        if (sv < -(1 << 30) || sv > (1 << 30))
            return op_fail(im, o, FACENET_ERR_FORMAT,
                           "tensor %d '%s' entry %zu is out of range", index,
                           t.name, i);
        out[i] = (int)sv;
    }
    *n = (int)count;
    return FACENET_OK;
}

/* ---- operator helpers -------------------------------------------------- */

static facenet_status expect_inputs(importer *im, const op_ctx *o, int min,
                                    int max)
{
    if (o->n_inputs < min || o->n_inputs > max)
        return op_fail(im, o, FACENET_ERR_FORMAT,
                       "has %d inputs; expected %d..%d", o->n_inputs, min, max);
    for (int i = 0; i < o->n_inputs; i++)
        if (i < min && o->inputs[i] < 0)
            return op_fail(im, o, FACENET_ERR_FORMAT,
                           "required input %d is missing", i);
    return FACENET_OK;
}

/* The options table, or NULL (defaults) when the operator has none. */
static facenet_status get_options(importer *im, const op_ctx *o, int type,
                                  const fb_table **opts)
{
    *opts = NULL;
    if (o->options_type == 0 && !o->has_options)
        return FACENET_OK;
    if (o->options_type != type)
        return op_fail(im, o, FACENET_ERR_FORMAT,
                       "options are of union type %d; expected %d",
                       o->options_type, type);
    if (o->has_options)
        *opts = &o->options;
    return FACENET_OK;
}

/* Name the operator in an options-read error: the flatbuffer reader only
 * knows offsets, and "operator 12 (CONV_2D)" is what a user can act on. */
static facenet_status opt_status(importer *im, const op_ctx *o,
                                 facenet_status st)
{
    if (st != FACENET_OK)
        fn_error_prefix(im->err, "TFLite operator %d (%s) options", o->index,
                        o->name);
    return st;
}

static facenet_status opt_i32(importer *im, const op_ctx *o,
                              const fb_table *opts, int field, int32_t def,
                              int32_t *out)
{
    *out = def;
    if (!opts)
        return FACENET_OK;
    return opt_status(im, o, fb_i32(opts, field, def, out, im->err));
}

static facenet_status opt_u8(importer *im, const op_ctx *o,
                             const fb_table *opts, int field, uint8_t def,
                             uint8_t *out)
{
    *out = def;
    if (!opts)
        return FACENET_OK;
    return opt_status(im, o, fb_u8(opts, field, def, out, im->err));
}

static facenet_status map_activation(importer *im, const op_ctx *o,
                                     uint8_t act, nn_activation *out)
{
    static const char *const names[] = {"NONE", "RELU", "RELU_N1_TO_1",
                                        "RELU6", "TANH", "SIGN_BIT"};
    switch (act) {
    case ACT_NONE: *out = NN_ACT_NONE; return FACENET_OK;
    case ACT_RELU: *out = NN_ACT_RELU; return FACENET_OK;
    case ACT_RELU6: *out = NN_ACT_RELU6; return FACENET_OK;
    case ACT_RELU_N1_TO_1:
    case ACT_TANH:
    case ACT_SIGN_BIT:
        return op_fail(im, o, FACENET_ERR_UNSUPPORTED,
                       "unsupported fused activation %s", names[act]);
    default:
        return op_fail(im, o, FACENET_ERR_FORMAT,
                       "unknown fused activation %u", (unsigned)act);
    }
}

static facenet_status map_padding(importer *im, const op_ctx *o, uint8_t pad,
                                  nn_padding *out)
{
    if (pad == 0) {
        *out = NN_PAD_SAME;
        return FACENET_OK;
    }
    if (pad == 1) {
        *out = NN_PAD_VALID;
        return FACENET_OK;
    }
    return op_fail(im, o, FACENET_ERR_FORMAT, "unknown padding %u",
                   (unsigned)pad);
}

/* If the operator's output is read only by a following RELU/RELU6 (and is
 * not a graph output), and `act` is still NONE, fold that activation into
 * this operator: *act is set, the output becomes the activation's output
 * tensor, and the activation operator is skipped later. */
static void absorb_activation(importer *im, op_ctx *o, nn_activation *act)
{
    int t = o->output, k;
    const op_summary *r;
    tensor_info out;

    if (*act != NN_ACT_NONE || im->readers[t] != 1 || im->is_graph_output[t])
        return;
    k = im->last_reader[t]; /* with one reader, the only one */
    if (k <= o->index)
        return;
    r = &im->ops[k];
    if ((r->code != OP_RELU && r->code != OP_RELU6) || r->n_inputs != 1 ||
        r->input0 != t || r->n_outputs != 1 || r->output0 < 0 ||
        im->absorbed[k] || im->value_of[r->output0] != NN_NONE)
        return;
    if (read_tensor(im, r->output0, &out) != FACENET_OK ||
        out.type != TT_FLOAT32)
        return; /* the RELU itself will report the problem */
    *act = r->code == OP_RELU ? NN_ACT_RELU : NN_ACT_RELU6;
    im->absorbed[k] = 1;
    o->output = r->output0;
}

/* Add the node for this operator, named after (and bound to) its output
 * tensor. */
static facenet_status emit(importer *im, const op_ctx *o, nn_op op,
                           const int *inputs, int n, const nn_attrs *attrs)
{
    tensor_info out;
    facenet_status st = read_tensor(im, o->output, &out);
    int id;

    if (st != FACENET_OK)
        return st;
    id = nn_graph_add_node(im->g, op, inputs, n, attrs, out.name, im->err);
    if (id == NN_NONE) {
        fn_error_prefix(im->err, "TFLite operator %d (%s)", o->index, o->name);
        return im->err ? im->err->code : FACENET_ERR_FORMAT;
    }
    im->value_of[o->output] = id;
    return FACENET_OK;
}

/* An intermediate node (not bound to a tensor); *id gets its value. */
static facenet_status emit_inner(importer *im, const op_ctx *o, nn_op op,
                                 const int *inputs, int n, const char *suffix,
                                 int *id)
{
    char name[256];
    (void)snprintf(name, sizeof name, "%s/%s", o->out_name, suffix);
    *id = nn_graph_add_node(im->g, op, inputs, n, NULL, name, im->err);
    if (*id == NN_NONE) {
        fn_error_prefix(im->err, "TFLite operator %d (%s)", o->index, o->name);
        return im->err ? im->err->code : FACENET_ERR_FORMAT;
    }
    return FACENET_OK;
}

/* Values of the first n inputs; an absent optional input gives NN_NONE. */
static facenet_status input_values(importer *im, const op_ctx *o, int *ids,
                                   int n)
{
    for (int i = 0; i < n; i++) {
        ids[i] = NN_NONE;
        if (i >= o->n_inputs || o->inputs[i] < 0)
            continue;
        facenet_status st = tensor_value(im, o->inputs[i], &ids[i]);
        if (st != FACENET_OK) {
            fn_error_prefix(im->err, "TFLite operator %d (%s) input %d",
                            o->index, o->name, i);
            return st;
        }
    }
    return FACENET_OK;
}

/* ---- operator handlers ------------------------------------------------- */

static facenet_status import_conv(importer *im, op_ctx *o)
{
    const int depthwise = o->code == OP_DEPTHWISE_CONV_2D;
    const fb_table *opts;
    uint8_t pad, act;
    int32_t sw, sh, mult = 1, dw, dh;
    nn_attrs attrs;
    int ids[3];
    facenet_status st;

    memset(&attrs, 0, sizeof attrs);
    if ((st = expect_inputs(im, o, 2, 3)) != FACENET_OK ||
        (st = get_options(im, o, depthwise ? OPT_DEPTHWISE : OPT_CONV2D,
                          &opts)) != FACENET_OK)
        return st;
    /* Conv2DOptions: padding, stride_w, stride_h, act, dilation_w, _h.
     * DepthwiseConv2DOptions puts depth_multiplier before the act. */
    if ((st = opt_u8(im, o, opts, 0, 0, &pad)) != FACENET_OK ||
        (st = opt_i32(im, o, opts, 1, 0, &sw)) != FACENET_OK ||
        (st = opt_i32(im, o, opts, 2, 0, &sh)) != FACENET_OK)
        return st;
    if (depthwise) {
        if ((st = opt_i32(im, o, opts, 3, 1, &mult)) != FACENET_OK ||
            (st = opt_u8(im, o, opts, 4, 0, &act)) != FACENET_OK ||
            (st = opt_i32(im, o, opts, 5, 1, &dw)) != FACENET_OK ||
            (st = opt_i32(im, o, opts, 6, 1, &dh)) != FACENET_OK)
            return st;
    } else {
        if ((st = opt_u8(im, o, opts, 3, 0, &act)) != FACENET_OK ||
            (st = opt_i32(im, o, opts, 4, 1, &dw)) != FACENET_OK ||
            (st = opt_i32(im, o, opts, 5, 1, &dh)) != FACENET_OK)
            return st;
    }
    if (sw < 1 || sh < 1)
        return op_fail(im, o, FACENET_ERR_FORMAT, "stride %dx%d", (int)sh,
                       (int)sw);
    if (dw != 1 || dh != 1)
        return op_fail(im, o, FACENET_ERR_UNSUPPORTED,
                       "dilation %dx%d is not supported", (int)dh, (int)dw);
    if ((st = map_padding(im, o, pad, &attrs.conv.padding)) != FACENET_OK ||
        (st = map_activation(im, o, act, &attrs.conv.act)) != FACENET_OK)
        return st;
    attrs.conv.stride_h = sh;
    attrs.conv.stride_w = sw;

    if (depthwise) {
        /* The multiplier is what the shapes say: weights [1, KH, KW, C*M]
         * against C input channels. Fall back to the option field when the
         * input's channel count is not declared. */
        tensor_info x, w;
        if ((st = read_tensor(im, o->inputs[0], &x)) != FACENET_OK ||
            (st = read_tensor(im, o->inputs[1], &w)) != FACENET_OK)
            return st;
        if (x.rank == 4 && x.dims[3] > 0 && w.rank == 4 && w.dims[3] > 0) {
            if (w.dims[3] != x.dims[3])
                return op_fail(im, o, FACENET_ERR_UNSUPPORTED,
                               "depth multiplier %d (%d -> %d channels) is "
                               "not supported; only 1",
                               w.dims[3] % x.dims[3] == 0
                                   ? w.dims[3] / x.dims[3] : 0,
                               x.dims[3], w.dims[3]);
        } else if (mult != 1) {
            return op_fail(im, o, FACENET_ERR_UNSUPPORTED,
                           "depth multiplier %d is not supported; only 1",
                           (int)mult);
        }
    }
    if ((st = input_values(im, o, ids, 3)) != FACENET_OK)
        return st;
    absorb_activation(im, o, &attrs.conv.act);
    return emit(im, o, depthwise ? NN_OP_DEPTHWISE_CONV2D : NN_OP_CONV2D, ids,
                ids[2] == NN_NONE ? 2 : 3, &attrs);
}

static facenet_status import_pool(importer *im, op_ctx *o)
{
    const fb_table *opts;
    uint8_t pad, act;
    int32_t sw, sh, fw, fh;
    nn_attrs attrs;
    int x;
    facenet_status st;

    memset(&attrs, 0, sizeof attrs);
    if ((st = expect_inputs(im, o, 1, 1)) != FACENET_OK ||
        (st = get_options(im, o, OPT_POOL2D, &opts)) != FACENET_OK)
        return st;
    /* Pool2DOptions: padding, stride_w, stride_h, filter_w, filter_h, act */
    if ((st = opt_u8(im, o, opts, 0, 0, &pad)) != FACENET_OK ||
        (st = opt_i32(im, o, opts, 1, 0, &sw)) != FACENET_OK ||
        (st = opt_i32(im, o, opts, 2, 0, &sh)) != FACENET_OK ||
        (st = opt_i32(im, o, opts, 3, 0, &fw)) != FACENET_OK ||
        (st = opt_i32(im, o, opts, 4, 0, &fh)) != FACENET_OK ||
        (st = opt_u8(im, o, opts, 5, 0, &act)) != FACENET_OK)
        return st;
    if (sw < 1 || sh < 1 || fw < 1 || fh < 1)
        return op_fail(im, o, FACENET_ERR_FORMAT, "filter %dx%d, stride %dx%d",
                       (int)fh, (int)fw, (int)sh, (int)sw);
    if ((st = map_padding(im, o, pad, &attrs.pool.padding)) != FACENET_OK ||
        (st = map_activation(im, o, act, &attrs.pool.act)) != FACENET_OK)
        return st;
    attrs.pool.kernel_h = fh;
    attrs.pool.kernel_w = fw;
    attrs.pool.stride_h = sh;
    attrs.pool.stride_w = sw;
    if ((st = input_values(im, o, &x, 1)) != FACENET_OK)
        return st;
    absorb_activation(im, o, &attrs.pool.act);
    return emit(im, o,
                o->code == OP_MAX_POOL_2D ? NN_OP_MAX_POOL2D : NN_OP_AVG_POOL2D,
                &x, 1, &attrs);
}

static facenet_status import_fully_connected(importer *im, op_ctx *o)
{
    const fb_table *opts;
    uint8_t act, format, keep_dims;
    nn_attrs attrs;
    int ids[3];
    tensor_info x;
    facenet_status st;

    memset(&attrs, 0, sizeof attrs);
    if ((st = expect_inputs(im, o, 2, 3)) != FACENET_OK ||
        (st = get_options(im, o, OPT_FULLY_CONNECTED, &opts)) != FACENET_OK)
        return st;
    /* FullyConnectedOptions: act, weights_format, keep_num_dims, ... */
    if ((st = opt_u8(im, o, opts, 0, 0, &act)) != FACENET_OK ||
        (st = opt_u8(im, o, opts, 1, 0, &format)) != FACENET_OK ||
        (st = opt_u8(im, o, opts, 2, 0, &keep_dims)) != FACENET_OK)
        return st;
    if (format != 0)
        return op_fail(im, o, FACENET_ERR_UNSUPPORTED,
                       "shuffled weights format %u is not supported",
                       (unsigned)format);
    if ((st = read_tensor(im, o->inputs[0], &x)) != FACENET_OK)
        return st;
    if (keep_dims && x.rank > 2)
        return op_fail(im, o, FACENET_ERR_UNSUPPORTED,
                       "keep_num_dims on a rank-%d input is not supported",
                       x.rank);
    if ((st = map_activation(im, o, act, &attrs.act)) != FACENET_OK ||
        (st = input_values(im, o, ids, 3)) != FACENET_OK)
        return st;
    absorb_activation(im, o, &attrs.act);
    return emit(im, o, NN_OP_FULLY_CONNECTED, ids, ids[2] == NN_NONE ? 2 : 3,
                &attrs);
}

static facenet_status import_binary(importer *im, op_ctx *o)
{
    const fb_table *opts;
    uint8_t act;
    nn_attrs attrs;
    nn_op op;
    int opt_type, ids[2];
    facenet_status st;

    switch (o->code) {
    case OP_ADD: op = NN_OP_ADD; opt_type = OPT_ADD; break;
    case OP_SUB: op = NN_OP_SUB; opt_type = OPT_SUB; break;
    case OP_MUL: op = NN_OP_MUL; opt_type = OPT_MUL; break;
    default: op = NN_OP_DIV; opt_type = OPT_DIV; break;
    }
    memset(&attrs, 0, sizeof attrs);
    /* Add/Sub/Mul/DivOptions all start with the fused activation. */
    if ((st = expect_inputs(im, o, 2, 2)) != FACENET_OK ||
        (st = get_options(im, o, opt_type, &opts)) != FACENET_OK ||
        (st = opt_u8(im, o, opts, 0, 0, &act)) != FACENET_OK ||
        (st = map_activation(im, o, act, &attrs.act)) != FACENET_OK ||
        (st = input_values(im, o, ids, 2)) != FACENET_OK)
        return st;
    absorb_activation(im, o, &attrs.act);
    return emit(im, o, op, ids, 2, &attrs);
}

static facenet_status import_unary(importer *im, op_ctx *o)
{
    nn_op op;
    int x;
    facenet_status st;

    switch (o->code) {
    case OP_NEG: op = NN_OP_NEG; break;
    case OP_ABS: op = NN_OP_ABS; break;
    case OP_EXP: op = NN_OP_EXP; break;
    case OP_RELU: op = NN_OP_RELU; break;
    default:
        /* RELU6 has no node of its own: it only exists fused. */
        return op_fail(im, o, FACENET_ERR_UNSUPPORTED,
                       "RELU6 can only be fused into the conv, pool, fully "
                       "connected or element-wise op that is its input's "
                       "only producer and reader");
    }
    if ((st = expect_inputs(im, o, 1, 1)) != FACENET_OK ||
        (st = input_values(im, o, &x, 1)) != FACENET_OK)
        return st;
    return emit(im, o, op, &x, 1, NULL);
}

static facenet_status import_reduce(importer *im, op_ctx *o)
{
    const fb_table *opts;
    uint8_t keep;
    int axes[NN_MAX_RANK * 2], n_axes, x;
    tensor_info xt;
    nn_attrs attrs;
    facenet_status st;

    memset(&attrs, 0, sizeof attrs);
    if ((st = expect_inputs(im, o, 2, 2)) != FACENET_OK ||
        (st = get_options(im, o, OPT_REDUCER, &opts)) != FACENET_OK ||
        (st = opt_u8(im, o, opts, 0, 0, &keep)) != FACENET_OK ||
        (st = read_tensor(im, o->inputs[0], &xt)) != FACENET_OK ||
        (st = const_int_list(im, o, o->inputs[1], axes, NN_MAX_RANK * 2,
                             &n_axes)) != FACENET_OK)
        return st;
    if (xt.rank < 1 || xt.rank > NN_MAX_RANK)
        return op_fail(im, o, FACENET_ERR_UNSUPPORTED,
                       "input '%s' has rank %d; 1..%d needed to resolve the "
                       "axes", xt.name, xt.rank, NN_MAX_RANK);
    if (n_axes == 0)
        return op_fail(im, o, FACENET_ERR_UNSUPPORTED,
                       "reduction over no axes is not supported");
    for (int i = 0; i < n_axes; i++) {
        int a = axes[i] < 0 ? axes[i] + xt.rank : axes[i];
        if (a < 0 || a >= xt.rank)
            return op_fail(im, o, FACENET_ERR_FORMAT,
                           "axis %d is out of range for rank %d", axes[i],
                           xt.rank);
        attrs.reduce.axes_mask |= 1u << a;
    }
    attrs.reduce.keep_dims = keep != 0;
    if ((st = input_values(im, o, &x, 1)) != FACENET_OK)
        return st;
    return emit(im, o,
                o->code == OP_REDUCE_MAX ? NN_OP_REDUCE_MAX
                : o->code == OP_SUM      ? NN_OP_REDUCE_SUM
                                         : NN_OP_REDUCE_MEAN,
                &x, 1, &attrs);
}

static facenet_status import_softmax(importer *im, op_ctx *o)
{
    const fb_table *opts;
    float beta = 1.0f;
    int x;
    facenet_status st;

    if ((st = expect_inputs(im, o, 1, 1)) != FACENET_OK ||
        (st = get_options(im, o, OPT_SOFTMAX, &opts)) != FACENET_OK)
        return st;
    /* SoftmaxOptions.beta has schema default 0; a writer that leaves the
     * options out entirely means the plain softmax, beta 1. */
    if (opts && (st = fb_f32(opts, 0, 0.0f, &beta, im->err)) != FACENET_OK) {
        fn_error_prefix(im->err, "TFLite operator %d (SOFTMAX) options",
                        o->index);
        return st;
    }
    if (!isfinite(beta))
        return op_fail(im, o, FACENET_ERR_FORMAT, "beta is not finite");
    if ((st = input_values(im, o, &x, 1)) != FACENET_OK)
        return st;
    if (beta != 1.0f) {
        char name[256];
        int ins[2];
        (void)snprintf(name, sizeof name, "%s/beta", o->out_name);
        ins[0] = x;
        ins[1] = nn_graph_add_const_copy(im->g, name, nn_shape1(1), &beta,
                                         im->err);
        if (ins[1] == NN_NONE)
            return im->err ? im->err->code : FACENET_ERR_NO_MEMORY;
        if ((st = emit_inner(im, o, NN_OP_MUL, ins, 2, "scaled", &x)) !=
            FACENET_OK)
            return st;
    }
    return emit(im, o, NN_OP_SOFTMAX, &x, 1, NULL);
}

static facenet_status import_reshape(importer *im, op_ctx *o)
{
    const fb_table *opts;
    int dims[NN_MAX_RANK], rank = -1, x;
    tensor_info xt;
    nn_attrs attrs;
    facenet_status st;

    if ((st = expect_inputs(im, o, 1, 2)) != FACENET_OK ||
        (st = get_options(im, o, OPT_RESHAPE, &opts)) != FACENET_OK)
        return st;
    /* The target shape: a constant second input wins; otherwise
     * ReshapeOptions.new_shape. */
    if (o->n_inputs == 2 && o->inputs[1] >= 0) {
        tensor_info s;
        const uint8_t *bytes;
        size_t len;
        if ((st = read_tensor(im, o->inputs[1], &s)) != FACENET_OK ||
            (st = tensor_bytes(im, &s, &bytes, &len)) != FACENET_OK)
            return st;
        if (len > 0 && (st = const_int_list(im, o, o->inputs[1], dims,
                                            NN_MAX_RANK, &rank)) != FACENET_OK)
            return st;
    }
    if (rank < 0 && opts && fb_has(opts, 0)) {
        fb_vector v;
        if ((st = fb_vector_field(opts, 0, 4, &v, im->err)) != FACENET_OK) {
            fn_error_prefix(im->err, "TFLite operator %d (RESHAPE) options",
                            o->index);
            return st;
        }
        if (v.count > NN_MAX_RANK)
            return op_fail(im, o, FACENET_ERR_UNSUPPORTED,
                           "target rank %u; at most %d supported",
                           (unsigned)v.count, NN_MAX_RANK);
        rank = (int)v.count;
        for (int i = 0; i < rank; i++)
            dims[i] = fb_vector_i32(&v, (uint32_t)i);
    }
    if (rank < 1)
        return op_fail(im, o, FACENET_ERR_UNSUPPORTED,
                       "the target shape is neither a constant input nor in "
                       "the options");
    for (int i = 0; i < rank; i++)
        if (dims[i] < -1 || dims[i] == 0)
            return op_fail(im, o, FACENET_ERR_UNSUPPORTED,
                           "target dim %d is %d", i, dims[i]);
    if ((st = read_tensor(im, o->inputs[0], &xt)) != FACENET_OK)
        return st;
    memset(&attrs, 0, sizeof attrs);
    attrs.reshape.rank = rank;
    memcpy(attrs.reshape.dims, dims, (size_t)rank * sizeof *dims);
    /* A batch dim carried through: follow the runtime batch instead. */
    if (dims[0] == im->input_batch && xt.rank >= 1 && xt.rank <= NN_MAX_RANK &&
        xt.dims[0] == im->input_batch)
        attrs.reshape.dims[0] = 0;
    if ((st = input_values(im, o, &x, 1)) != FACENET_OK)
        return st;
    return emit(im, o, NN_OP_RESHAPE, &x, 1, &attrs);
}

static facenet_status import_l2_norm(importer *im, op_ctx *o)
{
    const fb_table *opts;
    uint8_t act;
    nn_activation a;
    int x;
    facenet_status st;

    if ((st = expect_inputs(im, o, 1, 1)) != FACENET_OK ||
        (st = get_options(im, o, OPT_L2NORM, &opts)) != FACENET_OK ||
        (st = opt_u8(im, o, opts, 0, 0, &act)) != FACENET_OK ||
        (st = map_activation(im, o, act, &a)) != FACENET_OK)
        return st;
    if (a == NN_ACT_RELU6)
        return op_fail(im, o, FACENET_ERR_UNSUPPORTED,
                       "fused RELU6 after L2_NORMALIZATION is not supported");
    if ((st = input_values(im, o, &x, 1)) != FACENET_OK)
        return st;
    if (a == NN_ACT_RELU) {
        if ((st = emit_inner(im, o, NN_OP_L2_NORM, &x, 1, "l2norm", &x)) !=
            FACENET_OK)
            return st;
        return emit(im, o, NN_OP_RELU, &x, 1, NULL);
    }
    return emit(im, o, NN_OP_L2_NORM, &x, 1, NULL);
}

static facenet_status import_prelu(importer *im, op_ctx *o)
{
    int ids[2], pos, negx, neg, scaled;
    tensor_info xt;
    facenet_status st;

    if ((st = expect_inputs(im, o, 2, 2)) != FACENET_OK ||
        (st = read_tensor(im, o->inputs[0], &xt)) != FACENET_OK ||
        (st = input_values(im, o, ids, 2)) != FACENET_OK)
        return st;
    /* A constant per-channel alpha ([C], or [1, .., 1, C]) is our PRELU. */
    const float *alpha = im->g->values[ids[1]].data;
    nn_shape as = im->g->values[ids[1]].shape;
    if (alpha && as.rank >= 1 && xt.rank >= 1 && xt.rank <= NN_MAX_RANK) {
        int c = as.dims[as.rank - 1];
        int per_channel = c == xt.dims[xt.rank - 1];
        for (int i = 0; i + 1 < as.rank; i++)
            per_channel &= as.dims[i] == 1;
        if (per_channel) {
            char name[256];
            (void)snprintf(name, sizeof name, "%s/alpha", o->out_name);
            /* graph values may move as this adds one: alpha is heap data
             * of its own and stays put. */
            int a = nn_graph_add_const_copy(im->g, name, nn_shape1(c), alpha,
                                            im->err);
            if (a == NN_NONE)
                return im->err ? im->err->code : FACENET_ERR_NO_MEMORY;
            ids[1] = a;
            return emit(im, o, NN_OP_PRELU, ids, 2, NULL);
        }
    }
    /* Otherwise the exact identity relu(x) - alpha * relu(-x), which
     * broadcasts alpha like any element-wise op. */
    if ((st = emit_inner(im, o, NN_OP_RELU, &ids[0], 1, "pos", &pos)) ||
        (st = emit_inner(im, o, NN_OP_NEG, &ids[0], 1, "negx", &negx)) ||
        (st = emit_inner(im, o, NN_OP_RELU, &negx, 1, "neg", &neg)))
        return st;
    int mul_in[2] = {ids[1], neg};
    if ((st = emit_inner(im, o, NN_OP_MUL, mul_in, 2, "scaled", &scaled)))
        return st;
    int sub_in[2] = {pos, scaled};
    return emit(im, o, NN_OP_SUB, sub_in, 2, NULL);
}

static facenet_status import_dequantize(importer *im, op_ctx *o)
{
    tensor_info t;
    const uint8_t *bytes;
    size_t len;
    int id;
    facenet_status st;

    if ((st = expect_inputs(im, o, 1, 1)) != FACENET_OK ||
        (st = read_tensor(im, o->inputs[0], &t)) != FACENET_OK ||
        (st = tensor_bytes(im, &t, &bytes, &len)) != FACENET_OK)
        return st;
    if (len == 0 && im->value_of[o->inputs[0]] == NN_NONE)
        return op_fail(im, o, FACENET_ERR_FORMAT,
                       "input tensor %d '%s' has no data", t.index, t.name);
    if (im->value_of[o->inputs[0]] != NN_NONE &&
        im->g->values[im->value_of[o->inputs[0]]].producer != NN_NONE)
        return op_fail(im, o, FACENET_ERR_UNSUPPORTED,
                       "only constant inputs can be dequantized (the engine "
                       "runs float32 activations)");
    if ((st = input_values(im, o, &id, 1)) != FACENET_OK)
        return st;
    /* Folded: the float output is the converted constant itself. */
    im->value_of[o->output] = id;
    return FACENET_OK;
}

/* ---- the model --------------------------------------------------------- */

static facenet_status read_opcodes(importer *im, const fb_table *model)
{
    fb_vector v;
    facenet_status st = fb_vector_field(model, MODEL_OPCODES, 4, &v, im->err);
    if (st != FACENET_OK)
        return st;
    im->n_codes = (int)v.count;
    im->codes = calloc(v.count ? v.count : 1, sizeof *im->codes);
    im->custom = calloc(v.count ? v.count : 1, sizeof *im->custom);
    if (!im->codes || !im->custom)
        return fn_fail(im->err, FACENET_ERR_NO_MEMORY, "out of memory");
    for (uint32_t i = 0; i < v.count; i++) {
        fb_table oc;
        int8_t deprecated;
        int32_t builtin;
        size_t len;
        st = fb_vector_table(&v, i, &oc, im->err);
        if (st == FACENET_OK)
            st = fb_i8(&oc, OPCODE_DEPRECATED, 0, &deprecated, im->err);
        if (st == FACENET_OK)
            st = fb_i32(&oc, OPCODE_BUILTIN, 0, &builtin, im->err);
        if (st == FACENET_OK)
            st = fb_string_field(&oc, OPCODE_CUSTOM, &im->custom[i], &len,
                                 im->err);
        if (st != FACENET_OK) {
            fn_error_prefix(im->err, "TFLite operator code %u", (unsigned)i);
            return st;
        }
        /* Older writers fill only the byte field; newer ones fill both, or
         * put 127 (PLACEHOLDER_FOR_GREATER_OP_CODES) in the byte for codes
         * that do not fit. The larger of the two is the code. */
        im->codes[i] = deprecated > builtin ? deprecated : builtin;
        if (im->codes[i] < 0)
            return fn_fail(im->err, FACENET_ERR_FORMAT,
                           "TFLite operator code %u has builtin code %d",
                           (unsigned)i, im->codes[i]);
    }
    return FACENET_OK;
}

/* Read the operator's opcode and tensor lists. */
static facenet_status read_operator(importer *im, int index, op_ctx *o,
                                    fb_table *op_table)
{
    fb_vector ins, outs;
    uint32_t opcode;
    uint8_t opt_type;
    facenet_status st;

    memset(o, 0, sizeof *o);
    o->index = index;
    o->name = "?";
    o->output = -1;
    st = fb_vector_table(&im->operators, (uint32_t)index, op_table, im->err);
    if (st == FACENET_OK)
        st = fb_u32(op_table, OPERATOR_OPCODE, 0, &opcode, im->err);
    if (st == FACENET_OK)
        st = fb_vector_field(op_table, OPERATOR_INPUTS, 4, &ins, im->err);
    if (st == FACENET_OK)
        st = fb_vector_field(op_table, OPERATOR_OUTPUTS, 4, &outs, im->err);
    if (st == FACENET_OK)
        st = fb_u8(op_table, OPERATOR_OPTIONS_TYPE, 0, &opt_type, im->err);
    if (st != FACENET_OK) {
        fn_error_prefix(im->err, "TFLite operator %d", index);
        return st;
    }
    if (opcode >= (uint32_t)im->n_codes)
        return fn_fail(im->err, FACENET_ERR_FORMAT,
                       "TFLite operator %d uses operator code %u of %d", index,
                       (unsigned)opcode, im->n_codes);
    o->opcode_index = (int)opcode;
    o->code = im->codes[opcode];
    o->name = op_code_name(o->code);
    o->options_type = opt_type;
    if (ins.count > MAX_OP_INPUTS)
        return op_fail(im, o, FACENET_ERR_UNSUPPORTED,
                       "has %u inputs; at most %d are supported",
                       (unsigned)ins.count, MAX_OP_INPUTS);
    o->n_inputs = (int)ins.count;
    for (int i = 0; i < o->n_inputs; i++) {
        int t = fb_vector_i32(&ins, (uint32_t)i);
        if (t < -1 || t >= im->n_tensors)
            return op_fail(im, o, FACENET_ERR_FORMAT,
                           "input %d is tensor %d of %d", i, t, im->n_tensors);
        o->inputs[i] = t;
    }
    if (outs.count != 1)
        return op_fail(im, o, FACENET_ERR_UNSUPPORTED,
                       "has %u outputs; only single-output operators are "
                       "supported", (unsigned)outs.count);
    o->output = fb_vector_i32(&outs, 0);
    if (o->output < 0 || o->output >= im->n_tensors)
        return op_fail(im, o, FACENET_ERR_FORMAT, "output is tensor %d of %d",
                       o->output, im->n_tensors);
    return FACENET_OK;
}

/* First pass: summarise every operator and count the readers of every
 * tensor, which activation fusion needs to know in advance. */
static facenet_status scan_operators(importer *im)
{
    for (int i = 0; i < im->n_ops; i++) {
        op_ctx o;
        fb_table t;
        facenet_status st = read_operator(im, i, &o, &t);
        if (st != FACENET_OK)
            return st;
        im->ops[i].code = o.code;
        im->ops[i].n_inputs = o.n_inputs;
        im->ops[i].input0 = o.n_inputs ? o.inputs[0] : -1;
        im->ops[i].n_outputs = 1;
        im->ops[i].output0 = o.output;
        for (int k = 0; k < o.n_inputs; k++)
            if (o.inputs[k] >= 0) {
                im->readers[o.inputs[k]]++;
                im->last_reader[o.inputs[k]] = i;
            }
    }
    return FACENET_OK;
}

static facenet_status import_operator(importer *im, int index)
{
    op_ctx o;
    fb_table t;
    tensor_info out;
    facenet_status st;

    if (im->absorbed[index])
        return FACENET_OK;
    st = read_operator(im, index, &o, &t);
    if (st != FACENET_OK)
        return st;
    st = fb_table_field(&t, OPERATOR_OPTIONS, &o.options, &o.has_options,
                        im->err);
    if (st != FACENET_OK) {
        fn_error_prefix(im->err, "TFLite operator %d (%s) options", index,
                        o.name);
        return st;
    }
    if (o.code == OP_CUSTOM)
        return fn_fail(im->err, FACENET_ERR_UNSUPPORTED,
                       "unsupported TFLite custom op '%s' at operator %d",
                       im->custom[o.opcode_index] ? im->custom[o.opcode_index]
                                                  : "?",
                       index);
    if ((st = read_tensor(im, o.output, &out)) != FACENET_OK)
        return st;
    o.out_name = out.name;
    if (im->value_of[o.output] != NN_NONE)
        return op_fail(im, &o, FACENET_ERR_FORMAT,
                       "writes tensor %d '%s', which already has a value",
                       o.output, out.name);
    if (out.type != TT_FLOAT32 && o.code != OP_DEQUANTIZE)
        return op_fail(im, &o, FACENET_ERR_UNSUPPORTED,
                       "output tensor '%s' is %s; only float32 activations "
                       "are supported", out.name, type_name(out.type));

    switch (o.code) {
    case OP_CONV_2D:
    case OP_DEPTHWISE_CONV_2D: return import_conv(im, &o);
    case OP_MAX_POOL_2D:
    case OP_AVERAGE_POOL_2D: return import_pool(im, &o);
    case OP_FULLY_CONNECTED: return import_fully_connected(im, &o);
    case OP_ADD:
    case OP_SUB:
    case OP_MUL:
    case OP_DIV: return import_binary(im, &o);
    case OP_NEG:
    case OP_ABS:
    case OP_EXP:
    case OP_RELU:
    case OP_RELU6: return import_unary(im, &o);
    case OP_REDUCE_MAX:
    case OP_SUM:
    case OP_MEAN: return import_reduce(im, &o);
    case OP_SOFTMAX: return import_softmax(im, &o);
    case OP_RESHAPE: return import_reshape(im, &o);
    case OP_L2_NORMALIZATION: return import_l2_norm(im, &o);
    case OP_PRELU: return import_prelu(im, &o);
    case OP_DEQUANTIZE: return import_dequantize(im, &o);
    default:
        return fn_fail(im->err, FACENET_ERR_UNSUPPORTED,
                       "unsupported TFLite op %s (%d) at operator %d", o.name,
                       o.code, index);
    }
}

static facenet_status import_input(importer *im, const fb_vector *inputs)
{
    tensor_info t;
    nn_shape s;
    int index, id;
    facenet_status st;

    if (inputs->count != 1)
        return fn_fail(im->err, FACENET_ERR_UNSUPPORTED,
                       "TFLite graph has %u inputs; exactly one is supported",
                       (unsigned)inputs->count);
    index = fb_vector_i32(inputs, 0);
    if ((st = read_tensor(im, index, &t)) != FACENET_OK)
        return st;
    if (t.type != TT_FLOAT32)
        return fn_fail(im->err, FACENET_ERR_UNSUPPORTED,
                       "TFLite graph input '%s' is %s; only float32 inputs "
                       "are supported", t.name, type_name(t.type));
    if ((st = static_shape(im, &t, &s)) != FACENET_OK)
        return st;
    if (s.rank < 1)
        return fn_fail(im->err, FACENET_ERR_UNSUPPORTED,
                       "TFLite graph input '%s' is a scalar", t.name);
    id = nn_graph_add_input(im->g, t.name, s, im->err);
    if (id == NN_NONE)
        return im->err ? im->err->code : FACENET_ERR_FORMAT;
    im->value_of[index] = id;
    im->input_batch = s.dims[0];
    return FACENET_OK;
}

static facenet_status import_outputs(importer *im, const fb_vector *outputs)
{
    int ids[NN_MAX_OUTPUTS];

    if (outputs->count < 1 || outputs->count > NN_MAX_OUTPUTS)
        return fn_fail(im->err, FACENET_ERR_UNSUPPORTED,
                       "TFLite graph has %u outputs; 1..%d are supported",
                       (unsigned)outputs->count, NN_MAX_OUTPUTS);
    for (uint32_t i = 0; i < outputs->count; i++) {
        int t = fb_vector_i32(outputs, i);
        if (t < 0 || t >= im->n_tensors)
            return fn_fail(im->err, FACENET_ERR_FORMAT,
                           "TFLite graph output %u is tensor %d of %d",
                           (unsigned)i, t, im->n_tensors);
        if (im->value_of[t] == NN_NONE)
            return fn_fail(im->err, FACENET_ERR_FORMAT,
                           "TFLite graph output %u (tensor %d) is never "
                           "computed", (unsigned)i, t);
        ids[i] = im->value_of[t];
    }
    return nn_graph_set_outputs(im->g, ids, (int)outputs->count, im->err);
}

/* Allocate the per-tensor and per-operator tables. */
static facenet_status alloc_tables(importer *im)
{
    size_t nt = im->n_tensors ? (size_t)im->n_tensors : 1;
    size_t no = im->n_ops ? (size_t)im->n_ops : 1;

    im->value_of = malloc(nt * sizeof *im->value_of);
    im->readers = calloc(nt, sizeof *im->readers);
    im->last_reader = malloc(nt * sizeof *im->last_reader);
    im->is_graph_output = calloc(nt, 1);
    im->ops = calloc(no, sizeof *im->ops);
    im->absorbed = calloc(no, 1);
    if (!im->value_of || !im->readers || !im->last_reader ||
        !im->is_graph_output || !im->ops || !im->absorbed)
        return fn_fail(im->err, FACENET_ERR_NO_MEMORY,
                       "out of memory for %d tensors", im->n_tensors);
    for (size_t i = 0; i < nt; i++) {
        im->value_of[i] = NN_NONE;
        im->last_reader[i] = -1;
    }
    return FACENET_OK;
}

static void free_tables(importer *im)
{
    free(im->codes);
    free(im->custom);
    free(im->value_of);
    free(im->readers);
    free(im->last_reader);
    free(im->is_graph_output);
    free(im->ops);
    free(im->absorbed);
}

static facenet_status import_model(importer *im)
{
    fb_table model, subgraph;
    fb_vector subgraphs, inputs, outputs;
    uint32_t version;
    facenet_status st;

    if (im->size >= 8 && memcmp(im->data + 4, "TFL3", 4) != 0)
        return fn_fail(im->err, FACENET_ERR_FORMAT,
                       "not a TFLite model (no \"TFL3\" file identifier)");
    if ((st = fb_root(im->data, im->size, "TFL3", &model, im->err)) ||
        (st = fb_u32(&model, MODEL_VERSION, 0, &version, im->err)))
        return st;
    if (version != 3)
        return fn_fail(im->err, FACENET_ERR_UNSUPPORTED,
                       "TFLite schema version %u; only version 3 is supported",
                       (unsigned)version);
    if ((st = fb_vector_field(&model, MODEL_SUBGRAPHS, 4, &subgraphs,
                              im->err)) ||
        (st = fb_vector_field(&model, MODEL_BUFFERS, 4, &im->buffers,
                              im->err)) ||
        (st = read_opcodes(im, &model)))
        return st;
    if (subgraphs.count < 1)
        return fn_fail(im->err, FACENET_ERR_FORMAT, "TFLite model has no subgraph");
    if ((st = fb_vector_table(&subgraphs, 0, &subgraph, im->err)) ||
        (st = fb_vector_field(&subgraph, SUBGRAPH_TENSORS, 4, &im->tensors,
                              im->err)) ||
        (st = fb_vector_field(&subgraph, SUBGRAPH_INPUTS, 4, &inputs,
                              im->err)) ||
        (st = fb_vector_field(&subgraph, SUBGRAPH_OUTPUTS, 4, &outputs,
                              im->err)) ||
        (st = fb_vector_field(&subgraph, SUBGRAPH_OPERATORS, 4,
                              &im->operators, im->err))) {
        fn_error_prefix(im->err, "TFLite subgraph 0");
        return st;
    }
    im->n_tensors = (int)im->tensors.count;
    im->n_ops = (int)im->operators.count;
    if ((st = alloc_tables(im)) != FACENET_OK)
        return st;
    for (uint32_t i = 0; i < outputs.count; i++) {
        int t = fb_vector_i32(&outputs, i);
        if (t >= 0 && t < im->n_tensors) {
            im->is_graph_output[t] = 1;
            im->readers[t]++;
        }
    }
    if ((st = scan_operators(im)) || (st = import_input(im, &inputs)))
        return st;
    for (int i = 0; i < im->n_ops; i++)
        if ((st = import_operator(im, i)) != FACENET_OK)
            return st;
    if ((st = import_outputs(im, &outputs)))
        return st;
    return nn_graph_finalize(im->g, im->err);
}

facenet_status nn_import_tflite(const uint8_t *data, size_t size,
                                nn_graph **out, facenet_error *err)
{
    importer im;
    facenet_status st;

    *out = NULL;
    memset(&im, 0, sizeof im);
    im.data = data;
    im.size = size;
    im.err = err;
    im.const_budget = size <= (SIZE_MAX - CONST_BUDGET_EXTRA) /
                                  CONST_BUDGET_FACTOR
                          ? size * CONST_BUDGET_FACTOR + CONST_BUDGET_EXTRA
                          : SIZE_MAX;
    if (!data)
        return fn_fail(err, FACENET_ERR_INVALID_ARGUMENT, "no TFLite data");
    im.g = nn_graph_new();
    if (!im.g)
        return fn_fail(err, FACENET_ERR_NO_MEMORY, "out of memory");
    st = import_model(&im);
    free_tables(&im);
    if (st != FACENET_OK) {
        nn_graph_free(im.g);
        return st;
    }
    *out = im.g;
    return FACENET_OK;
}
