/*
 * resize_avx2.c - AVX2 versions of resize.c's two inner loops.
 *
 * The scalar horizontal loop is latency-bound: each output pixel is one
 * chain of dependent adds, one tap after another. Here one AVX2 register
 * holds the R, G, B (and one unused lane) of the same output pixel in two
 * image rows, and four registers carry eight rows at once, so eight chains
 * run side by side. From 8-bit images each pair of rows is first packed
 * to 8 bytes a pixel (both rows' R G B 0), so that a tap widens a pixel of
 * two rows with one vpmovzxbd. The vertical loop keeps its sums in
 * registers instead of adding into memory tap by tap; for the detector's
 * inputs it also normalises and writes the output transposed.
 *
 * The 8-bit area shrink (img_area_rgb8_t_avx2) goes vertical first: the
 * fully covered rows of an output row are summed as integers, 32 bytes in
 * two registers of 16 u16 lanes (up to 257 rows, then flushed to u32
 * lanes), combined with the <= 2 partial rows in float, then the
 * horizontal taps run over strips of 8 such rows, two rows per register as
 * above, and store each output pixel straight into the transposed network
 * input.
 *
 * Bit-identical to the scalar loops (see resize_internal.h): every float
 * output is 0 + w0*x0 + w1*x1 + ... in tap order (or, for the area
 * shrink's vertical sum, c*S + wt*top + wb*bottom, S an exact integer),
 * with separate multiplies and adds. The file is compiled for "avx2"
 * without "fma" on purpose, so the compiler cannot contract a multiply and
 * an add into one rounding.
 */
#include "image/resize_internal.h"

#include <string.h>

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <immintrin.h>

#define RESIZE_AVX2 __attribute__((target("avx2")))

int img_resize_have_avx2(void)
{
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx2");
}

/* Pixel `off` (in floats) of two rows: row a in lanes 0..3, row b in 4..7. */
RESIZE_AVX2 static inline __m256 load_pair(const float *a, const float *b, size_t off)
{
    return _mm256_insertf128_ps(_mm256_castps128_ps256(_mm_loadu_ps(a + off)),
                                _mm_loadu_ps(b + off), 1);
}

/* Store the 3 floats of lanes 0..2; lane 3 too when `spill` (it lands on
 * the next output pixel, which is written after this one). */
RESIZE_AVX2 static inline void store_rgb(float *p, __m128 v, int spill)
{
    if (spill) {
        _mm_storeu_ps(p, v);
        return;
    }
    _mm_storel_pi((__m64 *)(void *)p, v);
    _mm_store_ss(p + 2, _mm_movehl_ps(v, v));
}

/* 2 * G consecutive rows starting at `in` (stride src_stride floats) into
 * `out` (stride out_stride floats). G is a constant after inlining. A
 * stride of 0 pairs a row with itself: how a last, odd row is done. */
RESIZE_AVX2 static inline __attribute__((always_inline)) void
rows_rgb(const int G, const float *in, size_t src_stride, const axis_taps *tx,
         int out_w, float *out, size_t out_stride)
{
    __m256 acc[4];
    for (int j = 0; j < out_w; j++) {
        for (int g = 0; g < G; g++)
            acc[g] = _mm256_setzero_ps();
        for (int k = tx->first[j]; k < tx->first[j + 1]; k++) {
            const size_t off = (size_t)tx->src[k] * 3;
            const __m256 w = _mm256_set1_ps(tx->weight[k]);
            for (int g = 0; g < G; g++) {
                const size_t row = (size_t)(2 * g) * src_stride;
                const __m256 x = load_pair(in + row, in + row + src_stride, off);
                acc[g] = _mm256_add_ps(acc[g], _mm256_mul_ps(w, x));
            }
        }
        const int spill = j + 1 < out_w;
        for (int g = 0; g < G; g++) {
            float *o = out + (size_t)(2 * g) * out_stride + (size_t)j * 3;
            store_rgb(o, _mm256_castps256_ps128(acc[g]), spill);
            store_rgb(o + out_stride, _mm256_extractf128_ps(acc[g], 1), spill);
        }
    }
}

/* Rows y0..y1 of the float image `src` (row r at src + r * stride),
 * eight, then two, then one at a time. */
RESIZE_AVX2 void img_resize_rows_rgb_avx2(const float *src, int src_w, int y0, int y1,
                                          const axis_taps *tx, int out_w, float *tmp)
{
    const size_t stride = (size_t)src_w * 3, out_stride = (size_t)out_w * 3;
    int y = y0;
    for (; y + 8 <= y1; y += 8)
        rows_rgb(4, src + (size_t)y * stride, stride, tx, out_w,
                 tmp + (size_t)(y - y0) * out_stride, out_stride);
    for (; y + 2 <= y1; y += 2)
        rows_rgb(1, src + (size_t)y * stride, stride, tx, out_w,
                 tmp + (size_t)(y - y0) * out_stride, out_stride);
    if (y < y1) /* one row: pair it with itself and keep the low half */
        rows_rgb(1, src + (size_t)y * stride, 0, tx, out_w,
                 tmp + (size_t)(y - y0) * out_stride, 0);
}

/* ---- 8-bit rows through packed row pairs ---------------------------------- */

/* Pixels [c0, c1) of the 8-bit rows a and b (src_w pixels each) packed
 * pair by pixel: a's R G B 0 then b's R G B 0, 8 bytes a pixel, so that
 * one vpmovzxbd per tap widens a pixel of both rows. Reads only bytes of
 * the two rows' pixels: 16 at a time while they stay inside the row, then
 * one pixel at a time. */
RESIZE_AVX2 static void pack_pair8(const uint8_t *a, const uint8_t *b, int src_w, int c0, int c1,
                                   uint8_t *out)
{
    const __m128i spread = _mm_setr_epi8(0, 1, 2, -1, 3, 4, 5, -1, 6, 7, 8, -1, 9, 10, 11, -1);
    const __m256i spread2 = _mm256_broadcastsi128_si256(spread);
    int x = c0;
    /* 8 pixels: 4 in each 128-bit lane, the high lane loaded 12 bytes on. */
    for (; x + 8 <= c1 && 3 * x + 28 <= 3 * src_w; x += 8) {
        const __m256i ra = _mm256_inserti128_si256(
            _mm256_castsi128_si256(_mm_loadu_si128((const void *)(a + 3 * x))),
            _mm_loadu_si128((const void *)(a + 3 * x + 12)), 1);
        const __m256i rb = _mm256_inserti128_si256(
            _mm256_castsi128_si256(_mm_loadu_si128((const void *)(b + 3 * x))),
            _mm_loadu_si128((const void *)(b + 3 * x + 12)), 1);
        const __m256i va = _mm256_shuffle_epi8(ra, spread2), vb = _mm256_shuffle_epi8(rb, spread2);
        const __m256i lo = _mm256_unpacklo_epi32(va, vb), hi = _mm256_unpackhi_epi32(va, vb);
        uint8_t *o = out + (size_t)(x - c0) * 8;
        _mm256_storeu_si256((void *)o, _mm256_permute2x128_si256(lo, hi, 0x20));
        _mm256_storeu_si256((void *)(o + 32), _mm256_permute2x128_si256(lo, hi, 0x31));
    }
    for (; x + 4 <= c1 && 3 * x + 16 <= 3 * src_w; x += 4) {
        const __m128i va = _mm_shuffle_epi8(_mm_loadu_si128((const void *)(a + 3 * x)), spread);
        const __m128i vb = _mm_shuffle_epi8(_mm_loadu_si128((const void *)(b + 3 * x)), spread);
        uint8_t *o = out + (size_t)(x - c0) * 8;
        _mm_storeu_si128((void *)o, _mm_unpacklo_epi32(va, vb));
        _mm_storeu_si128((void *)(o + 16), _mm_unpackhi_epi32(va, vb));
    }
    for (; x < c1; x++) {
        uint8_t *o = out + (size_t)(x - c0) * 8;
        o[0] = a[3 * x];
        o[1] = a[3 * x + 1];
        o[2] = a[3 * x + 2];
        o[3] = 0;
        o[4] = b[3 * x];
        o[5] = b[3 * x + 1];
        o[6] = b[3 * x + 2];
        o[7] = 0;
    }
}

/* 2 * G rows, already packed into G planes of n pixels (pixel c0 first),
 * into `out` (stride out_stride floats). The unused 4th lane of a pixel
 * is 0 * w = 0 and lands on the next output pixel, written after. */
RESIZE_AVX2 static inline __attribute__((always_inline)) void
rows_packed8(const int G, const uint8_t *packed, size_t n, int c0, const axis_taps *tx,
             int out_w, float *out, size_t out_stride)
{
    __m256 acc[4];
    for (int j = 0; j < out_w; j++) {
        for (int g = 0; g < G; g++)
            acc[g] = _mm256_setzero_ps();
        for (int k = tx->first[j]; k < tx->first[j + 1]; k++) {
            const uint8_t *p = packed + (size_t)(tx->src[k] - c0) * 8;
            const __m256 w = _mm256_set1_ps(tx->weight[k]);
            for (int g = 0; g < G; g++) {
                const __m128i b8 = _mm_loadl_epi64((const void *)(p + (size_t)g * n * 8));
                const __m256 x = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(b8));
                acc[g] = _mm256_add_ps(acc[g], _mm256_mul_ps(w, x));
            }
        }
        const int spill = j + 1 < out_w;
        for (int g = 0; g < G; g++) {
            float *o = out + (size_t)(2 * g) * out_stride + (size_t)j * 3;
            store_rgb(o, _mm256_castps256_ps128(acc[g]), spill);
            store_rgb(o + out_stride, _mm256_extractf128_ps(acc[g], 1), spill);
        }
    }
}

/* The image columns the x taps read: [*c0, *c1). */
static void columns_used(const axis_taps *tx, int out_w, int *c0, int *c1)
{
    const int n = tx->first[out_w];
    *c0 = 0;
    *c1 = 0;
    for (int k = 0; k < n; k++) {
        if (k == 0 || tx->src[k] < *c0)
            *c0 = tx->src[k];
        if (k == 0 || tx->src[k] + 1 > *c1)
            *c1 = tx->src[k] + 1;
    }
}

size_t img_resize_rows_rgb8_scratch(int src_w)
{
    return (size_t)4 * 8 * (size_t)src_w;
}

RESIZE_AVX2 void img_resize_rows_rgb8_avx2(const uint8_t *src, size_t stride, int src_w, int y0,
                                           int y1, const axis_taps *tx, int out_w,
                                           uint8_t *scratch, float *tmp)
{
    const size_t out_stride = (size_t)out_w * 3;
    int c0, c1, y = y0;
    columns_used(tx, out_w, &c0, &c1);
    const size_t n = (size_t)(c1 - c0);
    if (n == 0) { /* no tap reads the image: every output is 0 */
        memset(tmp, 0, sizeof(float) * (size_t)(y1 - y0) * out_stride);
        return;
    }
    for (; y + 8 <= y1; y += 8) {
        for (int g = 0; g < 4; g++)
            pack_pair8(src + (size_t)(y + 2 * g) * stride, src + (size_t)(y + 2 * g + 1) * stride,
                       src_w, c0, c1, scratch + (size_t)g * n * 8);
        rows_packed8(4, scratch, n, c0, tx, out_w, tmp + (size_t)(y - y0) * out_stride,
                     out_stride);
    }
    for (; y + 2 <= y1; y += 2) {
        pack_pair8(src + (size_t)y * stride, src + (size_t)(y + 1) * stride, src_w, c0, c1,
                   scratch);
        rows_packed8(1, scratch, n, c0, tx, out_w, tmp + (size_t)(y - y0) * out_stride,
                     out_stride);
    }
    if (y < y1) { /* one row: pair it with itself and keep the low half */
        pack_pair8(src + (size_t)y * stride, src + (size_t)y * stride, src_w, c0, c1, scratch);
        rows_packed8(1, scratch, n, c0, tx, out_w, tmp + (size_t)(y - y0) * out_stride, 0);
    }
}

RESIZE_AVX2 void img_resize_vertical_avx2(const float *tmp, const axis_taps *ty, int row_lo,
                                          size_t row_len, int out_h, float *dst)
{
    for (int j = 0; j < out_h; j++) {
        float *out = dst + (size_t)j * row_len;
        const int k0 = ty->first[j], k1 = ty->first[j + 1];
        size_t i = 0;
        for (; i + 16 <= row_len; i += 16) {
            __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps();
            for (int k = k0; k < k1; k++) {
                const float *in = tmp + (size_t)(ty->src[k] - row_lo) * row_len + i;
                const __m256 w = _mm256_set1_ps(ty->weight[k]);
                a0 = _mm256_add_ps(a0, _mm256_mul_ps(w, _mm256_loadu_ps(in)));
                a1 = _mm256_add_ps(a1, _mm256_mul_ps(w, _mm256_loadu_ps(in + 8)));
            }
            _mm256_storeu_ps(out + i, a0);
            _mm256_storeu_ps(out + i + 8, a1);
        }
        for (; i < row_len; i++) {
            float acc = 0;
            for (int k = k0; k < k1; k++)
                acc += ty->weight[k] * tmp[(size_t)(ty->src[k] - row_lo) * row_len + i];
            out[i] = acc;
        }
    }
}

/* Output row j of the vertical pass, normalised: (sum - mean) * scale, a
 * subtract then a multiply as store_transposed does, into row[0 .. row_len). */
RESIZE_AVX2 static void vertical_row_norm(const float *tmp, const axis_taps *ty, int row_lo,
                                          size_t row_len, int j, float mean, float scale,
                                          float *row)
{
    const int k0 = ty->first[j], k1 = ty->first[j + 1];
    const __m256 vmean = _mm256_set1_ps(mean), vscale = _mm256_set1_ps(scale);
    size_t i = 0;
    for (; i + 16 <= row_len; i += 16) {
        __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps();
        for (int k = k0; k < k1; k++) {
            const float *in = tmp + (size_t)(ty->src[k] - row_lo) * row_len + i;
            const __m256 w = _mm256_set1_ps(ty->weight[k]);
            a0 = _mm256_add_ps(a0, _mm256_mul_ps(w, _mm256_loadu_ps(in)));
            a1 = _mm256_add_ps(a1, _mm256_mul_ps(w, _mm256_loadu_ps(in + 8)));
        }
        _mm256_storeu_ps(row + i, _mm256_mul_ps(_mm256_sub_ps(a0, vmean), vscale));
        _mm256_storeu_ps(row + i + 8, _mm256_mul_ps(_mm256_sub_ps(a1, vmean), vscale));
    }
    for (; i + 8 <= row_len; i += 8) {
        __m256 a0 = _mm256_setzero_ps();
        for (int k = k0; k < k1; k++) {
            const float *in = tmp + (size_t)(ty->src[k] - row_lo) * row_len + i;
            a0 = _mm256_add_ps(a0, _mm256_mul_ps(_mm256_set1_ps(ty->weight[k]),
                                                 _mm256_loadu_ps(in)));
        }
        _mm256_storeu_ps(row + i, _mm256_mul_ps(_mm256_sub_ps(a0, vmean), vscale));
    }
    for (; i < row_len; i++) {
        float acc = 0;
        for (int k = k0; k < k1; k++)
            acc += ty->weight[k] * tmp[(size_t)(ty->src[k] - row_lo) * row_len + i];
        row[i] = (acc - mean) * scale;
    }
}

RESIZE_AVX2 void img_resize_vertical_t_avx2(const float *tmp, const axis_taps *ty, int row_lo,
                                            int n_cols, int out_h, float mean, float scale,
                                            float *row, float *t)
{
    const size_t row_len = (size_t)n_cols * 3;
    for (int y = 0; y < out_h; y++) {
        vertical_row_norm(tmp, ty, row_lo, row_len, y, mean, scale, row);
        if (y + 1 < out_h) {
            /* 4 floats a pixel: the 4th lands on (x, y + 1), written next row. */
            for (int x = 0; x < n_cols; x++)
                _mm_storeu_ps(t + ((size_t)x * out_h + y) * 3, _mm_loadu_ps(row + 3 * x));
        } else {
            for (int x = 0; x < n_cols; x++)
                memcpy(t + ((size_t)x * out_h + y) * 3, row + 3 * x, 3 * sizeof(float));
        }
    }
}

/* ---- Area shrink, vertical first (see resize.c) ---------------------------- */

/* Integer sums of n_rows consecutive image rows (the first at `p`, `stride`
 * bytes apart) over 16 * G bytes: u16 lanes for up to 257 rows at a time
 * (257 * 255 = 65535 fits), added into u32 lanes (lo and hi half of each
 * 16 bytes), so any number of rows is exact. G is a constant after
 * inlining. */
RESIZE_AVX2 static inline __attribute__((always_inline)) void
sum_rows16(const int G, const uint8_t *p, size_t stride, int n_rows, __m256i *lo, __m256i *hi)
{
    for (int g = 0; g < G; g++) {
        lo[g] = _mm256_setzero_si256();
        hi[g] = _mm256_setzero_si256();
    }
    while (n_rows > 0) {
        const int chunk = n_rows > 257 ? 257 : n_rows;
        __m256i s16[2];
        for (int g = 0; g < G; g++)
            s16[g] = _mm256_setzero_si256();
        for (int r = 0; r < chunk; r++, p += stride)
            for (int g = 0; g < G; g++)
                s16[g] = _mm256_add_epi16(
                    s16[g], _mm256_cvtepu8_epi16(_mm_loadu_si128((const void *)(p + 16 * g))));
        for (int g = 0; g < G; g++) {
            lo[g] = _mm256_add_epi32(lo[g], _mm256_cvtepu16_epi32(_mm256_castsi256_si128(s16[g])));
            hi[g] = _mm256_add_epi32(hi[g],
                                     _mm256_cvtepu16_epi32(_mm256_extracti128_si256(s16[g], 1)));
        }
        n_rows -= chunk;
    }
}

/* 8 bytes of an edge row as floats. */
RESIZE_AVX2 static inline __m256 bytes8_ps(const uint8_t *p)
{
    return _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_loadl_epi64((const void *)p)));
}

/* Output row j's vertical sum, len bytes of each source row from byte b0,
 * into v[0 .. len): resize.c's area_vertical_row_rgb8, 16 then 8 bytes at
 * a time, then byte by byte. Reads only the rows' bytes [b0, b0 + len). */
/* c * S + wt * top + wb * bottom for 8 floats at v, S in u32 lanes. */
RESIZE_AVX2 static inline __attribute__((always_inline)) void
combine8(__m256i sum, const uint8_t *top, const uint8_t *bot, int has_top, int has_bot, __m256 vc,
         __m256 vwt, __m256 vwb, float *v)
{
    __m256 f = _mm256_mul_ps(vc, _mm256_cvtepi32_ps(sum));
    if (has_top)
        f = _mm256_add_ps(f, _mm256_mul_ps(vwt, bytes8_ps(top)));
    if (has_bot)
        f = _mm256_add_ps(f, _mm256_mul_ps(vwb, bytes8_ps(bot)));
    _mm256_storeu_ps(v, f);
}

/* Output row j's vertical sum, len bytes of each source row from byte b0,
 * into v[0 .. len): resize.c's area_vertical_row_rgb8, 32, 16 and 8 bytes
 * at a time, then byte by byte. The fully covered rows are consecutive
 * image rows (an output's taps are consecutive region pixels, and only
 * the ends are cut at the image's edges), so they are walked by stride.
 * Reads only the rows' bytes [b0, b0 + len). */
RESIZE_AVX2 static void area_vertical_row(const uint8_t *src, size_t stride, size_t b0,
                                          size_t len, const axis_taps *ty, int j, float c,
                                          float *v)
{
    img_area_split s;
    img_area_split_of(ty, j, c, &s);
    /* An absent row is never read; its pointer is the first row's. */
    const int has_top = s.top >= 0, has_bot = s.bottom >= 0, n_mid = s.mid1 - s.mid0;
    const uint8_t *top = src + (has_top ? (size_t)ty->src[s.top] * stride : 0) + b0;
    const uint8_t *bot = src + (has_bot ? (size_t)ty->src[s.bottom] * stride : 0) + b0;
    const uint8_t *mid = src + (n_mid > 0 ? (size_t)ty->src[s.mid0] * stride : 0) + b0;
    const __m256 vc = _mm256_set1_ps(c), vwt = _mm256_set1_ps(s.wt), vwb = _mm256_set1_ps(s.wb);
    __m256i lo[2], hi[2];
    size_t i = 0;
    for (; i + 32 <= len; i += 32) {
        sum_rows16(2, mid + i, stride, n_mid, lo, hi);
        for (int g = 0; g < 2; g++) {
            const size_t o = i + 16 * (size_t)g;
            combine8(lo[g], top + o, bot + o, has_top, has_bot, vc, vwt, vwb, v + o);
            combine8(hi[g], top + o + 8, bot + o + 8, has_top, has_bot, vc, vwt, vwb, v + o + 8);
        }
    }
    for (; i + 16 <= len; i += 16) {
        sum_rows16(1, mid + i, stride, n_mid, lo, hi);
        combine8(lo[0], top + i, bot + i, has_top, has_bot, vc, vwt, vwb, v + i);
        combine8(hi[0], top + i + 8, bot + i + 8, has_top, has_bot, vc, vwt, vwb, v + i + 8);
    }
    for (; i + 8 <= len; i += 8) {
        __m256i a = _mm256_setzero_si256();
        const uint8_t *p = mid + i;
        for (int r = 0; r < n_mid; r++, p += stride)
            a = _mm256_add_epi32(a, _mm256_cvtepu8_epi32(_mm_loadl_epi64((const void *)p)));
        combine8(a, top + i, bot + i, has_top, has_bot, vc, vwt, vwb, v + i);
    }
    for (; i < len; i++) {
        uint32_t sum = 0;
        for (int r = 0; r < n_mid; r++)
            sum += mid[(size_t)r * stride + i];
        float f = c * (float)sum;
        if (has_top)
            f = f + s.wt * (float)top[i];
        if (has_bot)
            f = f + s.wb * (float)bot[i];
        v[i] = f;
    }
}

/* The horizontal taps over 2 * G rows of vertical sums (stride v_stride
 * floats; pixel 0 is image column c0), or over one row when `single`
 * (v_stride 0 pairs it with itself), normalised, into rows y.. of
 * column-major t. A column's rows are consecutive in t, so each pixel is
 * one 16-byte store whose 4th float lands on the next row's pixel, written
 * after; the group's last pixel spills only if that next row lies below
 * (a later group writes it), never into the next column, written before. */
RESIZE_AVX2 static inline __attribute__((always_inline)) void
area_rows_t(const int G, const int single, const float *v, size_t v_stride, int c0,
            const axis_taps *tx, int n_cols, float *t, int y, int out_h, __m256 vmean,
            __m256 vscale)
{
    const int rows = single ? 1 : 2 * G;
    const int spill_last = y + rows < out_h;
    __m256 acc[4];
    for (int x = 0; x < n_cols; x++) {
        for (int g = 0; g < G; g++)
            acc[g] = _mm256_setzero_ps();
        for (int k = tx->first[x]; k < tx->first[x + 1]; k++) {
            const size_t off = (size_t)(tx->src[k] - c0) * 3;
            const __m256 w = _mm256_set1_ps(tx->weight[k]);
            for (int g = 0; g < G; g++) {
                const float *a = v + (size_t)(2 * g) * v_stride;
                acc[g] = _mm256_add_ps(acc[g], _mm256_mul_ps(w, load_pair(a, a + v_stride, off)));
            }
        }
        float *o = t + ((size_t)x * out_h + y) * 3;
        for (int g = 0; g < G; g++) {
            const __m256 n = _mm256_mul_ps(_mm256_sub_ps(acc[g], vmean), vscale);
            if (single) {
                store_rgb(o, _mm256_castps256_ps128(n), spill_last);
            } else {
                store_rgb(o + 6 * g, _mm256_castps256_ps128(n), 1);
                store_rgb(o + 6 * g + 3, _mm256_extractf128_ps(n, 1), g + 1 < G || spill_last);
            }
        }
    }
}

RESIZE_AVX2 void img_area_rgb8_t_avx2(const uint8_t *src, size_t stride, int c0, int c1,
                                      const axis_taps *ty, float cy, const axis_taps *cols,
                                      int n_cols, int out_h, float mean, float scale, float *v,
                                      float *t)
{
    const size_t b0 = (size_t)c0 * 3, len = (size_t)(c1 - c0) * 3;
    const __m256 vmean = _mm256_set1_ps(mean), vscale = _mm256_set1_ps(scale);
    for (int y = 0; y < out_h; y += IMG_AREA_STRIP) {
        const int rows = out_h - y < IMG_AREA_STRIP ? out_h - y : IMG_AREA_STRIP;
        int r;
        for (r = 0; r < rows; r++)
            area_vertical_row(src, stride, b0, len, ty, y + r, cy, v + (size_t)r * len);
        /* The last pixel of row rows - 1 is read 4 floats wide: its 4th
         * float, the first of the next (unused) row or the padding float,
         * goes into a lane that is thrown away, but must not be garbage
         * (uninitialised, or a NaN or denormal slowing the multiply). */
        v[(size_t)rows * len] = 0.0f;
        r = 0;
        if (rows == 8) { /* IMG_AREA_STRIP: four row pairs at once */
            area_rows_t(4, 0, v, len, c0, cols, n_cols, t, y, out_h, vmean, vscale);
            r = 8;
        }
        for (; r + 2 <= rows; r += 2)
            area_rows_t(1, 0, v + (size_t)r * len, len, c0, cols, n_cols, t, y + r, out_h, vmean,
                        vscale);
        if (r < rows)
            area_rows_t(1, 1, v + (size_t)r * len, 0, c0, cols, n_cols, t, y + r, out_h, vmean,
                        vscale);
    }
}

#else

int img_resize_have_avx2(void)
{
    return 0;
}

void img_resize_rows_rgb_avx2(const float *src, int src_w, int y0, int y1, const axis_taps *tx,
                              int out_w, float *tmp)
{
    (void)src; (void)src_w; (void)y0; (void)y1; (void)tx; (void)out_w; (void)tmp;
}

size_t img_resize_rows_rgb8_scratch(int src_w)
{
    (void)src_w;
    return 0;
}

void img_resize_rows_rgb8_avx2(const uint8_t *src, size_t stride, int src_w, int y0, int y1,
                               const axis_taps *tx, int out_w, uint8_t *scratch, float *tmp)
{
    (void)src; (void)stride; (void)src_w; (void)y0; (void)y1; (void)tx; (void)out_w;
    (void)scratch; (void)tmp;
}

void img_resize_vertical_avx2(const float *tmp, const axis_taps *ty, int row_lo, size_t row_len,
                              int out_h, float *dst)
{
    (void)tmp; (void)ty; (void)row_lo; (void)row_len; (void)out_h; (void)dst;
}

void img_resize_vertical_t_avx2(const float *tmp, const axis_taps *ty, int row_lo, int n_cols,
                                int out_h, float mean, float scale, float *row, float *t)
{
    (void)tmp; (void)ty; (void)row_lo; (void)n_cols; (void)out_h; (void)mean; (void)scale;
    (void)row; (void)t;
}

void img_area_rgb8_t_avx2(const uint8_t *src, size_t stride, int c0, int c1,
                          const axis_taps *ty, float cy, const axis_taps *cols, int n_cols,
                          int out_h, float mean, float scale, float *v, float *t)
{
    (void)src; (void)stride; (void)c0; (void)c1; (void)ty; (void)cy; (void)cols; (void)n_cols;
    (void)out_h; (void)mean; (void)scale; (void)v; (void)t;
}

#endif
