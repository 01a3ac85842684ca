/*
 * resize.c - separable resize of float images (golden README 4.2).
 *
 * Each axis gets a table of taps: for every output index, the source
 * indices it reads and their weights. Area averaging when shrinking (or
 * keeping) an axis, bilinear with half-pixel centres when growing it.
 *
 * Everything resizes a *region*: a rectangle of in_w x in_h pixels whose
 * top-left pixel is image pixel (ox, oy) and which may stick out of the
 * image anywhere; pixels outside read as 0. A tap that would read outside
 * is simply left out, since it would add 0. So a crop box is never copied
 * out, and the tables are no bigger than the image plus the output.
 *
 * Float images go horizontal pass first (every source row the vertical
 * taps read), then vertical, each output a float chain 0 + w0*x0 + ... in
 * tap order. The detector's 8-bit path (img_crop_resize_rgb8_t) does the
 * same when an axis grows, but when both shrink it goes vertical first,
 * with the rows summed in exact integers (see "Area shrink of 8-bit RGB"
 * below): the horizontal taps then run over out_h rows instead of src_h,
 * and the vertical sum has three roundings whatever the shrink factor.
 *
 * Every pass has an AVX2 version (resize_avx2.c), chosen at run time, that
 * gives bit-identical results; the scalar loops here are the oracle
 * (the *_impl functions with IMG_RESIZE_SCALAR) and the fallback.
 */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common/error.h"
#include "image/image.h"
#include "image/resize_internal.h"

/* Boxes come from a detector's regression and can be silly; keep region
 * sides where double arithmetic on indices is exact. */
#define REGION_MAX_SIDE ((int64_t)1 << 40)

typedef struct axis_spec {
    int64_t offset; /* image index of region index 0 */
    int64_t in_len; /* region length */
    int src_len;    /* image length along this axis */
    int out_len;
} axis_spec;

/* The three arrays of a table share one allocation, headed by `first`. */
static void axis_taps_free(axis_taps *t)
{
    free(t->first);
    t->first = NULL;
    t->src = NULL;
    t->weight = NULL;
}

/* Add one tap (region index i) unless it reads outside the image. */
static int add_tap(const axis_spec *a, axis_taps *t, int n, int64_t i,
                   double w)
{
    int64_t s = i + a->offset;
    if (s < 0 || s >= a->src_len || w == 0.0)
        return n;
    t->src[n] = (int)s;
    t->weight[n] = (float)w;
    return n + 1;
}

/* floor and ceil of a finite x >= 0 below 2^63, without a libm call
 * (the library is not built for SSE4.1's round instruction). */
static int64_t floor_nonneg(double x)
{
    return (int64_t)x;
}

static int64_t ceil_nonneg(double x)
{
    int64_t i = (int64_t)x;
    return (double)i < x ? i + 1 : i;
}

/* Taps of output j when shrinking: region pixel i covers [i, i+1), output j
 * covers [lo, hi) = [j*scale, (j+1)*scale), computed by the caller as
 * j * in / out (so one output's hi is the next one's lo, bit for bit); the
 * weight is the overlap / scale. Only the region pixels that lie inside
 * the image are visited. lo and hi are finite and >= 0, so plain
 * comparisons give what fmin/fmax would, without their libm calls (crops
 * rebuild these tables for every box). */
static int area_taps(const axis_spec *a, axis_taps *t, int n, double lo, double hi)
{
    double scale = (double)a->in_len / a->out_len;
    int64_t i0 = floor_nonneg(lo), i1 = ceil_nonneg(hi);

    if (i0 < -a->offset)
        i0 = -a->offset;
    if (i1 > a->src_len - a->offset)
        i1 = a->src_len - a->offset;
    if (i1 > a->in_len)
        i1 = a->in_len;
    for (int64_t i = i0; i < i1; i++) {
        const double left = (double)i, right = (double)(i + 1);
        double overlap = (hi < right ? hi : right) - (lo > left ? lo : left);
        if (overlap > 0.0)
            n = add_tap(a, t, n, i, overlap / scale);
    }
    return n;
}

/* Taps of output j when growing: linear interpolation at
 * (j + 0.5) * in/out - 0.5, clamped to the region. */
static int bilinear_taps(const axis_spec *a, axis_taps *t, int n, int j)
{
    double pos = ((double)j + 0.5) * (double)a->in_len / a->out_len - 0.5;
    double last = (double)(a->in_len - 1);
    int64_t i0;
    double f;

    if (pos < 0.0)
        pos = 0.0;
    if (pos > last)
        pos = last;
    i0 = (int64_t)floor(pos);
    f = pos - (double)i0;
    n = add_tap(a, t, n, i0, 1.0 - f);
    if (i0 + 1 < a->in_len)
        n = add_tap(a, t, n, i0 + 1, f);
    return n;
}

/* Taps of a whole axis, in one pass. A bound on their number: an output
 * when growing reads at most 2 pixels; when shrinking, an output reads
 * consecutive pixels and shares at most one with the next output, so the
 * taps are at most the pixels read (no more than the region or the image
 * has) plus one per output. */
static facenet_status axis_build(const axis_spec *a, axis_taps *t, facenet_error *err)
{
    const int shrink = a->out_len <= a->in_len;
    const int64_t pixels = a->in_len < a->src_len ? a->in_len : a->src_len;
    const size_t max_taps = (size_t)a->out_len * 2 + (size_t)pixels;
    const size_t n_first = (size_t)a->out_len + 1;
    char *block = malloc(sizeof(int) * (n_first + max_taps) + sizeof(float) * max_taps);
    double lo = 0.0;
    int n = 0;

    if (!block)
        return fn_fail(err, FACENET_ERR_NO_MEMORY, "resize: cannot allocate %zu taps",
                       max_taps);
    t->first = (int *)(void *)block;
    t->src = t->first + n_first;
    t->weight = (float *)(void *)(t->src + max_taps);
    for (int j = 0; j < a->out_len; j++) {
        t->first[j] = n;
        if (shrink) {
            const double hi = (double)(j + 1) * (double)a->in_len / a->out_len;
            n = area_taps(a, t, n, lo, hi);
            lo = hi;
        } else {
            n = bilinear_taps(a, t, n, j);
        }
    }
    t->first[a->out_len] = n;
    return FACENET_OK;
}

/* Both axes' taps; on failure neither is left allocated. */
static facenet_status axes_build(const axis_spec *ax, const axis_spec *ay, axis_taps *tx,
                                 axis_taps *ty, facenet_error *err)
{
    facenet_status st = axis_build(ax, tx, err);
    if (st != FACENET_OK)
        return st;
    st = axis_build(ay, ty, err);
    if (st != FACENET_OK)
        axis_taps_free(tx);
    return st;
}

/* The range of image rows that the vertical taps read: [*lo, *hi). */
static void rows_used(const axis_taps *ty, int out_h, int *lo, int *hi)
{
    int n = ty->first[out_h];
    *lo = 0;
    *hi = 0;
    for (int k = 0; k < n; k++) {
        if (k == 0 || ty->src[k] < *lo)
            *lo = ty->src[k];
        if (k == 0 || ty->src[k] + 1 > *hi)
            *hi = ty->src[k] + 1;
    }
}

/* The common case, RGB, with the channel loop unrolled: the generic loop
 * below is several times slower. */
static void horizontal_row_rgb(const float *in, const axis_taps *tx,
                               int out_w, float *out)
{
    for (int j = 0; j < out_w; j++) {
        float r = 0, g = 0, b = 0;
        for (int k = tx->first[j]; k < tx->first[j + 1]; k++) {
            const float *p = in + (size_t)tx->src[k] * 3;
            float w = tx->weight[k];
            r += w * p[0];
            g += w * p[1];
            b += w * p[2];
        }
        out[3 * j] = r;
        out[3 * j + 1] = g;
        out[3 * j + 2] = b;
    }
}

static void horizontal_row(const float *in, const axis_taps *tx, int out_w,
                           int ch, float *out)
{
    for (int j = 0; j < out_w; j++) {
        float acc[4] = {0, 0, 0, 0};
        for (int k = tx->first[j]; k < tx->first[j + 1]; k++) {
            const float *p = in + (size_t)tx->src[k] * ch;
            for (int c = 0; c < ch; c++)
                acc[c] += tx->weight[k] * p[c];
        }
        for (int c = 0; c < ch; c++)
            out[(size_t)j * ch + c] = acc[c];
    }
}

static void horizontal_pass(const img_f32 *src, const axis_taps *tx,
                            int out_w, int row_lo, int row_hi, int simd,
                            float *tmp)
{
    int ch = src->channels;
    int y = row_lo;
    if (simd && ch == 3) {
        /* Every row but the image's last, whose last pixel the AVX2 loop
         * would read one float past. */
        int end = row_hi < src->height - 1 ? row_hi : src->height - 1;
        if (end > y) {
            img_resize_rows_rgb_avx2(src->data, src->width, y, end, tx, out_w, tmp);
            y = end;
        }
    }
    for (; y < row_hi; y++) {
        const float *in = src->data + (size_t)y * src->width * ch;
        float *out = tmp + (size_t)(y - row_lo) * out_w * ch;
        if (ch == 3)
            horizontal_row_rgb(in, tx, out_w, out);
        else
            horizontal_row(in, tx, out_w, ch, out);
    }
}

static void vertical_pass(const float *tmp, const axis_taps *ty, int row_lo,
                          int out_w, int out_h, int ch, float *dst)
{
    size_t row_len = (size_t)out_w * ch;
    for (int j = 0; j < out_h; j++) {
        float *out = dst + (size_t)j * row_len;
        memset(out, 0, row_len * sizeof(float));
        for (int k = ty->first[j]; k < ty->first[j + 1]; k++) {
            const float *in = tmp + (size_t)(ty->src[k] - row_lo) * row_len;
            float w = ty->weight[k];
            for (size_t i = 0; i < row_len; i++)
                out[i] += w * in[i];
        }
    }
}

static facenet_status resize_region(const img_f32 *src, int64_t ox,
                                    int64_t oy, int64_t in_w, int64_t in_h,
                                    int out_w, int out_h, float *dst,
                                    img_resize_impl impl, facenet_error *err)
{
    const int simd = impl == IMG_RESIZE_BEST && img_resize_have_avx2();
    axis_spec ax = {ox, in_w, src->width, out_w};
    axis_spec ay = {oy, in_h, src->height, out_h};
    axis_taps tx = {NULL, NULL, NULL}, ty = {NULL, NULL, NULL};
    int row_lo, row_hi;
    float *tmp;
    facenet_status st;

    if (out_w < 1 || out_h < 1 || out_w > IMG_MAX_SIDE || out_h > IMG_MAX_SIDE)
        return fn_fail(err, FACENET_ERR_INVALID_ARGUMENT,
                       "resize: output size %dx%d is outside 1..%d", out_w,
                       out_h, IMG_MAX_SIDE);
    if (in_w < 1 || in_h < 1 || in_w > REGION_MAX_SIDE ||
        in_h > REGION_MAX_SIDE)
        return fn_fail(err, FACENET_ERR_INVALID_ARGUMENT,
                       "resize: source region %lldx%lld is empty or too large",
                       (long long)in_w, (long long)in_h);
    if ((st = axes_build(&ax, &ay, &tx, &ty, err)) != FACENET_OK)
        return st;
    rows_used(&ty, out_h, &row_lo, &row_hi);
    tmp = malloc(sizeof(float) * (size_t)(row_hi - row_lo + 1) * out_w *
                 src->channels);
    if (!tmp) {
        st = fn_fail(err, FACENET_ERR_NO_MEMORY,
                     "resize: cannot allocate %d intermediate rows",
                     row_hi - row_lo);
    } else {
        horizontal_pass(src, &tx, out_w, row_lo, row_hi, simd, tmp);
        if (simd)
            img_resize_vertical_avx2(tmp, &ty, row_lo,
                                     (size_t)out_w * src->channels, out_h, dst);
        else
            vertical_pass(tmp, &ty, row_lo, out_w, out_h, src->channels, dst);
    }
    free(tmp);
    axis_taps_free(&tx);
    axis_taps_free(&ty);
    return st;
}

facenet_status img_resize_into_impl(const img_f32 *src, int out_w, int out_h,
                                    float *dst, img_resize_impl impl,
                                    facenet_error *err)
{
    return resize_region(src, 0, 0, src->width, src->height, out_w, out_h,
                         dst, impl, err);
}

facenet_status img_resize_into(const img_f32 *src, int out_w, int out_h,
                               float *dst, facenet_error *err)
{
    return img_resize_into_impl(src, out_w, out_h, dst, IMG_RESIZE_BEST, err);
}

facenet_status img_resize(const img_f32 *src, int out_w, int out_h,
                          img_f32 **out, facenet_error *err)
{
    facenet_status st = img_f32_new(out_w, out_h, src->channels, out, err);
    if (st != FACENET_OK)
        return st;
    st = img_resize_into(src, out_w, out_h, (*out)->data, err);
    if (st != FACENET_OK) {
        img_f32_free(*out);
        *out = NULL;
    }
    return st;
}

/* ---- 8-bit RGB in, transposed and normalised floats out ------------------- */

/* The scalar horizontal row, reading bytes: (float)byte is exactly the
 * value the float copy of the image holds, so this is horizontal_row_rgb
 * on that copy, operation for operation. */
static void horizontal_row_rgb8(const uint8_t *in, const axis_taps *tx, int out_w,
                                float *out)
{
    for (int j = 0; j < out_w; j++) {
        float r = 0, g = 0, b = 0;
        for (int k = tx->first[j]; k < tx->first[j + 1]; k++) {
            const uint8_t *p = in + (size_t)tx->src[k] * 3;
            float w = tx->weight[k];
            r += w * (float)p[0];
            g += w * (float)p[1];
            b += w * (float)p[2];
        }
        out[3 * j] = r;
        out[3 * j + 1] = g;
        out[3 * j + 2] = b;
    }
}

/* `scratch` is img_resize_rows_rgb8_scratch(src->width) bytes, used only
 * by the AVX2 loop. */
static void horizontal_pass_rgb8(const img_rgb8 *src, const axis_taps *tx, int out_w,
                                 int row_lo, int row_hi, int simd, uint8_t *scratch, float *tmp)
{
    if (simd) {
        img_resize_rows_rgb8_avx2(src->pixels, src->stride, src->width, row_lo, row_hi, tx,
                                  out_w, scratch, tmp);
        return;
    }
    for (int y = row_lo; y < row_hi; y++)
        horizontal_row_rgb8(src->pixels + (size_t)y * src->stride, tx, out_w,
                            tmp + (size_t)(y - row_lo) * out_w * 3);
}

/* Write one output row y (n_cols RGB pixels) into column-major t. */
static void store_transposed(const float *row, int n_cols, int out_h, int y,
                             const img_norm *norm, float *t)
{
    for (int x = 0; x < n_cols; x++) {
        float *o = t + ((size_t)x * out_h + y) * 3;
        o[0] = (row[3 * x] - norm->mean) * norm->scale;
        o[1] = (row[3 * x + 1] - norm->mean) * norm->scale;
        o[2] = (row[3 * x + 2] - norm->mean) * norm->scale;
    }
}

/* The old order, kept for any growing axis: the horizontal pass over
 * every source row the vertical taps read, then the vertical pass,
 * normalised and transposed. */
static facenet_status resample_rows_first_rgb8_t(const img_rgb8 *src, const axis_taps *tx,
                                                 const axis_taps *ty, int out_h, int col0,
                                                 int col1, const img_norm *norm, float *t,
                                                 int simd, facenet_error *err)
{
    /* Only the columns asked for: the x table seen from col0 on. */
    const axis_taps cols = {tx->first + col0, tx->src, tx->weight};
    const int n_cols = col1 - col0;
    const size_t row_len = (size_t)n_cols * 3;
    int row_lo, row_hi;
    rows_used(ty, out_h, &row_lo, &row_hi);
    /* Rows, one spare, one output row (plus a float, see
     * img_resize_vertical_t_avx2). */
    const size_t tmp_floats = ((size_t)(row_hi - row_lo) + 2) * row_len + 1;
    const size_t scratch = simd ? img_resize_rows_rgb8_scratch(src->width) : 0;
    float *tmp = malloc(sizeof(float) * tmp_floats + scratch);
    float *row = tmp ? tmp + (size_t)(row_hi - row_lo + 1) * row_len : NULL;
    if (!tmp)
        return fn_fail(err, FACENET_ERR_NO_MEMORY, "resize: cannot allocate %d intermediate rows",
                       row_hi - row_lo);
    horizontal_pass_rgb8(src, &cols, n_cols, row_lo, row_hi, simd,
                         (uint8_t *)(tmp + tmp_floats), tmp);
    if (simd) {
        img_resize_vertical_t_avx2(tmp, ty, row_lo, n_cols, out_h, norm->mean, norm->scale, row,
                                   t);
    } else {
        for (int y = 0; y < out_h; y++) {
            const axis_taps one = {ty->first + y, ty->src, ty->weight};
            vertical_pass(tmp, &one, row_lo, n_cols, 1, 3, row);
            store_transposed(row, n_cols, out_h, y, norm, t);
        }
    }
    free(tmp);
    return FACENET_OK;
}

/* ---- Area shrink of 8-bit RGB: vertical first, exact integer sums --------
 *
 * When both axes shrink (every pyramid level, every crop bigger than its
 * network input), each output row j is first made from the source rows
 * its vertical taps read, over only the source columns the horizontal
 * taps read:
 *
 *     v = c * (float)S  +  wt * (float)top  +  wb * (float)bottom
 *
 * in that order, a multiply then an add per term, where S is the exact
 * integer sum of the interior rows (all of weight c = (float)(out / in),
 * see img_area_split), top and bottom the <= 2 partially covered rows
 * (absent terms are skipped; they would add +0). Then the horizontal taps
 * run over these out_h float rows only, 0 + w0 * v0 + w1 * v1 + ... in tap
 * order, and each output is normalised ((v - mean) * scale) and written
 * transposed. The old order ran the horizontal taps over every source row
 * (src_h rows instead of out_h) and chained every vertical tap in float;
 * here the vertical sum has three roundings whatever the shrink factor. */

/* One output row's vertical sum into v[0 .. len) (len bytes of each source
 * row from byte b0 on); `sum` is len integers of scratch. */
static void area_vertical_row_rgb8(const img_rgb8 *src, const axis_taps *ty, int j, float c,
                                   size_t b0, size_t len, uint32_t *sum, float *v)
{
    img_area_split s;
    img_area_split_of(ty, j, c, &s);
    memset(sum, 0, len * sizeof *sum);
    for (int k = s.mid0; k < s.mid1; k++) {
        const uint8_t *in = src->pixels + (size_t)ty->src[k] * src->stride + b0;
        for (size_t i = 0; i < len; i++)
            sum[i] += in[i];
    }
    for (size_t i = 0; i < len; i++)
        v[i] = c * (float)sum[i];
    if (s.top >= 0) {
        const uint8_t *in = src->pixels + (size_t)ty->src[s.top] * src->stride + b0;
        for (size_t i = 0; i < len; i++)
            v[i] = v[i] + s.wt * (float)in[i];
    }
    if (s.bottom >= 0) {
        const uint8_t *in = src->pixels + (size_t)ty->src[s.bottom] * src->stride + b0;
        for (size_t i = 0; i < len; i++)
            v[i] = v[i] + s.wb * (float)in[i];
    }
}

/* The horizontal taps over one vertical-sum row v (its pixel 0 is image
 * column c0), normalised, into output row y of column-major t. */
static void area_horizontal_row_t(const float *v, int c0, const axis_taps *tx, int n_cols,
                                  int out_h, int y, const img_norm *norm, float *t)
{
    for (int x = 0; x < n_cols; x++) {
        float r = 0, g = 0, b = 0;
        for (int k = tx->first[x]; k < tx->first[x + 1]; k++) {
            const float *p = v + (size_t)(tx->src[k] - c0) * 3;
            const float w = tx->weight[k];
            r += w * p[0];
            g += w * p[1];
            b += w * p[2];
        }
        float *o = t + ((size_t)x * out_h + y) * 3;
        o[0] = (r - norm->mean) * norm->scale;
        o[1] = (g - norm->mean) * norm->scale;
        o[2] = (b - norm->mean) * norm->scale;
    }
}

/* The image columns [*c0, *c1) that the taps of outputs [0, n) read. */
static void columns_read(const axis_taps *tx, int n, int *c0, int *c1)
{
    const int k0 = tx->first[0], k1 = tx->first[n];
    *c0 = 0;
    *c1 = 0;
    for (int k = k0; k < k1; k++) {
        if (k == k0 || tx->src[k] < *c0)
            *c0 = tx->src[k];
        if (k == k0 || tx->src[k] + 1 > *c1)
            *c1 = tx->src[k] + 1;
    }
}

static facenet_status resample_area_rgb8_t(const img_rgb8 *src, const axis_taps *tx,
                                           const axis_taps *ty, float cy, int out_h, int col0,
                                           int col1, const img_norm *norm, float *t, int simd,
                                           facenet_error *err)
{
    const axis_taps cols = {tx->first + col0, tx->src, tx->weight};
    const int n_cols = col1 - col0;
    int c0, c1;
    columns_read(&cols, n_cols, &c0, &c1);
    const size_t b0 = (size_t)c0 * 3, len = (size_t)(c1 - c0) * 3;
    /* A strip of IMG_AREA_STRIP vertical-sum rows, a float of padding (the
     * AVX2 loop reads a pixel 4 floats wide), and len integers for the
     * scalar sums. */
    const size_t v_floats = (size_t)IMG_AREA_STRIP * len + 1;
    float *v = malloc(sizeof(float) * v_floats + sizeof(uint32_t) * len);
    if (!v)
        return fn_fail(err, FACENET_ERR_NO_MEMORY,
                       "resize: cannot allocate %zu bytes of row sums", len);
    if (simd) {
        img_area_rgb8_t_avx2(src->pixels, src->stride, c0, c1, ty, cy, &cols, n_cols, out_h,
                             norm->mean, norm->scale, v, t);
    } else {
        uint32_t *sum = (uint32_t *)(void *)(v + v_floats);
        for (int y = 0; y < out_h; y++) {
            area_vertical_row_rgb8(src, ty, y, cy, b0, len, sum, v);
            area_horizontal_row_t(v, c0, &cols, n_cols, out_h, y, norm, t);
        }
    }
    free(v);
    return FACENET_OK;
}

/* The weight of a tap that overlaps its output fully (overlap 1.0), as
 * area_taps and add_tap compute it. */
static float area_interior_weight(const axis_spec *a)
{
    const double scale = (double)a->in_len / a->out_len;
    return (float)(1.0 / scale);
}

facenet_status img_crop_resize_rgb8_t_impl(const img_rgb8 *src, const int box[4],
                                           int out_w, int out_h, int col0, int col1,
                                           const img_norm *norm, float *t,
                                           img_resize_impl impl, facenet_error *err)
{
    const int simd = impl == IMG_RESIZE_BEST && img_resize_have_avx2();
    const int64_t in_w = (int64_t)box[2] - box[0] + 1, in_h = (int64_t)box[3] - box[1] + 1;
    axis_spec ax = {(int64_t)box[0] - 1, in_w, src->width, out_w};
    axis_spec ay = {(int64_t)box[1] - 1, in_h, src->height, out_h};
    axis_taps tx = {NULL, NULL, NULL}, ty = {NULL, NULL, NULL};
    facenet_status st;

    if (box[2] < box[0] || box[3] < box[1])
        return fn_fail(err, FACENET_ERR_INVALID_ARGUMENT, "crop box [%d, %d, %d, %d] is empty",
                       box[0], box[1], box[2], box[3]);
    if (out_w < 1 || out_h < 1 || out_w > IMG_MAX_SIDE || out_h > IMG_MAX_SIDE)
        return fn_fail(err, FACENET_ERR_INVALID_ARGUMENT,
                       "resize: output size %dx%d is outside 1..%d", out_w, out_h,
                       IMG_MAX_SIDE);
    if (col0 < 0 || col1 > out_w || col1 <= col0)
        return fn_fail(err, FACENET_ERR_INVALID_ARGUMENT,
                       "resize: output columns [%d, %d) are not inside [0, %d)", col0, col1,
                       out_w);
    if ((st = axes_build(&ax, &ay, &tx, &ty, err)) != FACENET_OK)
        return st;
    if (out_w <= in_w && out_h <= in_h)
        st = resample_area_rgb8_t(src, &tx, &ty, area_interior_weight(&ay), out_h, col0, col1,
                                  norm, t, simd, err);
    else
        st = resample_rows_first_rgb8_t(src, &tx, &ty, out_h, col0, col1, norm, t, simd, err);
    axis_taps_free(&tx);
    axis_taps_free(&ty);
    return st;
}

facenet_status img_crop_resize_rgb8_t(const img_rgb8 *src, const int box[4], int out_w,
                                      int out_h, int col0, int col1, const img_norm *norm,
                                      float *t, facenet_error *err)
{
    return img_crop_resize_rgb8_t_impl(src, box, out_w, out_h, col0, col1, norm, t,
                                       IMG_RESIZE_BEST, err);
}

facenet_status img_crop_resize_into_impl(const img_f32 *src, int x1, int y1,
                                         int x2, int y2, int out_w, int out_h,
                                         float *dst, img_resize_impl impl,
                                         facenet_error *err)
{
    if (x2 < x1 || y2 < y1)
        return fn_fail(err, FACENET_ERR_INVALID_ARGUMENT,
                       "crop box [%d, %d, %d, %d] is empty", x1, y1, x2, y2);
    /* MATLAB convention: the box covers 0-based pixels x1-1 .. x2-1. */
    return resize_region(src, (int64_t)x1 - 1, (int64_t)y1 - 1,
                         (int64_t)x2 - x1 + 1, (int64_t)y2 - y1 + 1, out_w,
                         out_h, dst, impl, err);
}

facenet_status img_crop_resize_into(const img_f32 *src, int x1, int y1,
                                    int x2, int y2, int out_w, int out_h,
                                    float *dst, facenet_error *err)
{
    return img_crop_resize_into_impl(src, x1, y1, x2, y2, out_w, out_h, dst,
                                     IMG_RESIZE_BEST, err);
}
