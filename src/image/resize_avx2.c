/*
 * resize_avx2.c - AVX2 versions of resize.c's two inner loops.
 *
 * The scalar horizontal loop is latency-bound: each output pixel is one
 * chain of dependent adds, one tap after another. Here one AVX2 register
 * holds the R, G, B (and one unused lane) of the same output pixel in two
 * image rows, and four registers carry eight rows at once, so eight chains
 * run side by side. The vertical loop keeps its sums in registers instead
 * of adding into memory tap by tap.
 *
 * Bit-identical to the scalar loops (see resize_internal.h): every output
 * is 0 + w0*x0 + w1*x1 + ... in tap order, with separate multiplies and
 * adds. The file is compiled for "avx2" without "fma" on purpose, so the
 * compiler cannot contract a multiply and an add into one rounding.
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

/* Pixel `off` (in bytes) of two 8-bit rows as floats: row a in lanes
 * 0..3, row b in 4..7 (4 bytes read from each, the 4th unused). */
RESIZE_AVX2 static inline __m256 load_pair8(const uint8_t *a, const uint8_t *b, size_t off)
{
    int32_t wa, wb;
    memcpy(&wa, a + off, sizeof wa);
    memcpy(&wb, b + off, sizeof wb);
    return _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_set_epi32(0, 0, wb, wa)));
}

/* 2 * G consecutive rows starting at `in` (floats, or bytes when u8; stride
 * src_stride of those) into `out` (stride out_stride floats). G and u8 are
 * constants after inlining. A stride of 0 pairs a row with itself: how a
 * last, odd row is done. */
RESIZE_AVX2 static inline __attribute__((always_inline)) void
rows_rgb(const int G, const int u8, const void *in, size_t src_stride, const axis_taps *tx,
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
                const __m256 x =
                    u8 ? load_pair8((const uint8_t *)in + row, (const uint8_t *)in + row + src_stride,
                                    off)
                       : load_pair((const float *)in + row, (const float *)in + row + src_stride,
                                   off);
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

/* Rows y0..y1 of `src` (row r at src + r * stride elements), eight, then
 * two, then one at a time. */
RESIZE_AVX2 static inline __attribute__((always_inline)) void
rows_all(const int u8, const void *src, size_t stride, int y0, int y1, const axis_taps *tx,
         int out_w, float *tmp)
{
    const size_t out_stride = (size_t)out_w * 3, elem = u8 ? 1 : sizeof(float);
    const char *base = src;
    int y = y0;
    for (; y + 8 <= y1; y += 8)
        rows_rgb(4, u8, base + (size_t)y * stride * elem, stride, tx, out_w,
                 tmp + (size_t)(y - y0) * out_stride, out_stride);
    for (; y + 2 <= y1; y += 2)
        rows_rgb(1, u8, base + (size_t)y * stride * elem, stride, tx, out_w,
                 tmp + (size_t)(y - y0) * out_stride, out_stride);
    if (y < y1) /* one row: pair it with itself and keep the low half */
        rows_rgb(1, u8, base + (size_t)y * stride * elem, 0, tx, out_w,
                 tmp + (size_t)(y - y0) * out_stride, 0);
}

RESIZE_AVX2 void img_resize_rows_rgb_avx2(const float *src, int src_w, int y0, int y1,
                                          const axis_taps *tx, int out_w, float *tmp)
{
    rows_all(0, src, (size_t)src_w * 3, y0, y1, tx, out_w, tmp);
}

RESIZE_AVX2 void img_resize_rows_rgb8_avx2(const uint8_t *src, size_t stride, int y0, int y1,
                                           const axis_taps *tx, int out_w, float *tmp)
{
    rows_all(1, src, stride, y0, y1, tx, out_w, tmp);
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

void img_resize_rows_rgb8_avx2(const uint8_t *src, size_t stride, int y0, int y1,
                               const axis_taps *tx, int out_w, float *tmp)
{
    (void)src; (void)stride; (void)y0; (void)y1; (void)tx; (void)out_w; (void)tmp;
}

void img_resize_vertical_avx2(const float *tmp, const axis_taps *ty, int row_lo, size_t row_len,
                              int out_h, float *dst)
{
    (void)tmp; (void)ty; (void)row_lo; (void)row_len; (void)out_h; (void)dst;
}

#endif
