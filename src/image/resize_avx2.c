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

/* 2 * G consecutive rows starting at `in` (stride src_stride floats) into
 * `out` (stride out_stride floats). G is a constant after inlining. */
RESIZE_AVX2 static inline __attribute__((always_inline)) void
rows_rgb(const int G, const float *in, size_t src_stride, const axis_taps *tx, int out_w,
         float *out, size_t out_stride)
{
    __m256 acc[4];
    for (int j = 0; j < out_w; j++) {
        for (int g = 0; g < G; g++)
            acc[g] = _mm256_setzero_ps();
        for (int k = tx->first[j]; k < tx->first[j + 1]; k++) {
            const size_t off = (size_t)tx->src[k] * 3;
            const __m256 w = _mm256_set1_ps(tx->weight[k]);
            for (int g = 0; g < G; g++) {
                const float *a = in + (size_t)(2 * g) * src_stride;
                acc[g] = _mm256_add_ps(acc[g], _mm256_mul_ps(w, load_pair(a, a + src_stride, off)));
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

/* One row, R, G, B in one 128-bit register. */
RESIZE_AVX2 static void row_rgb(const float *in, const axis_taps *tx, int out_w, float *out)
{
    for (int j = 0; j < out_w; j++) {
        __m128 acc = _mm_setzero_ps();
        for (int k = tx->first[j]; k < tx->first[j + 1]; k++)
            acc = _mm_add_ps(acc, _mm_mul_ps(_mm_set1_ps(tx->weight[k]),
                                             _mm_loadu_ps(in + (size_t)tx->src[k] * 3)));
        store_rgb(out + (size_t)j * 3, acc, j + 1 < out_w);
    }
}

RESIZE_AVX2 void img_resize_rows_rgb_avx2(const float *src, int src_w, int y0, int y1,
                                          const axis_taps *tx, int out_w, float *tmp)
{
    const size_t src_stride = (size_t)src_w * 3, out_stride = (size_t)out_w * 3;
    int y = y0;
    for (; y + 8 <= y1; y += 8)
        rows_rgb(4, src + (size_t)y * src_stride, src_stride, tx, out_w,
                 tmp + (size_t)(y - y0) * out_stride, out_stride);
    for (; y + 2 <= y1; y += 2)
        rows_rgb(1, src + (size_t)y * src_stride, src_stride, tx, out_w,
                 tmp + (size_t)(y - y0) * out_stride, out_stride);
    if (y < y1)
        row_rgb(src + (size_t)y * src_stride, tx, out_w, tmp + (size_t)(y - y0) * out_stride);
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

/* rows_rgb over 8-bit rows. */
RESIZE_AVX2 static inline __attribute__((always_inline)) void
rows_rgb8(const int G, const uint8_t *in, size_t src_stride, const axis_taps *tx, int out_w,
          float *out, size_t out_stride)
{
    __m256 acc[4];
    for (int j = 0; j < out_w; j++) {
        for (int g = 0; g < G; g++)
            acc[g] = _mm256_setzero_ps();
        for (int k = tx->first[j]; k < tx->first[j + 1]; k++) {
            const size_t off = (size_t)tx->src[k] * 3;
            const __m256 w = _mm256_set1_ps(tx->weight[k]);
            for (int g = 0; g < G; g++) {
                const uint8_t *a = in + (size_t)(2 * g) * src_stride;
                acc[g] = _mm256_add_ps(acc[g], _mm256_mul_ps(w, load_pair8(a, a + src_stride, off)));
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

RESIZE_AVX2 void img_resize_rows_rgb8_avx2(const uint8_t *src, size_t stride, int y0, int y1,
                                           const axis_taps *tx, int out_w, float *tmp)
{
    const size_t out_stride = (size_t)out_w * 3;
    int y = y0;
    for (; y + 8 <= y1; y += 8)
        rows_rgb8(4, src + (size_t)y * stride, stride, tx, out_w,
                  tmp + (size_t)(y - y0) * out_stride, out_stride);
    for (; y + 2 <= y1; y += 2)
        rows_rgb8(1, src + (size_t)y * stride, stride, tx, out_w,
                  tmp + (size_t)(y - y0) * out_stride, out_stride);
    if (y < y1) {
        /* One row: pair it with itself and keep the low half. */
        rows_rgb8(1, src + (size_t)y * stride, 0, tx, out_w, tmp + (size_t)(y - y0) * out_stride,
                  0);
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
