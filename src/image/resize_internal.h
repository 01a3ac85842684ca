/*
 * resize_internal.h - the inner loops of resize.c, shared with their AVX2
 * versions in resize_avx2.c, and a way for tests to pick the scalar ones.
 *
 * The AVX2 loops compute every output with the same operations in the same
 * order as the scalar loops (a multiply, then an add, tap by tap, never a
 * fused multiply-add; integer sums, which are exact in any order), only for
 * several rows or columns at once, so both give bit-identical results; the
 * scalar loops are the oracle. Two orders exist: rows first (float images,
 * and 8-bit images when an axis grows) and, for the 8-bit area shrink,
 * vertical first with exact integer row sums (img_area_*, resize.c).
 */
#ifndef FACENET_IMAGE_RESIZE_INTERNAL_H
#define FACENET_IMAGE_RESIZE_INTERNAL_H

#include "image/image.h"

/* For every output index j of one axis, the source indices it reads and
 * their weights: taps first[j] .. first[j+1]-1. */
typedef struct axis_taps {
    int *first;    /* out_len + 1 entries */
    int *src;      /* image index of each tap */
    float *weight; /* weight of each tap */
} axis_taps;

typedef enum img_resize_impl {
    IMG_RESIZE_BEST,  /* AVX2 when the CPU has it, else scalar */
    IMG_RESIZE_SCALAR /* the portable loops only (the oracle)  */
} img_resize_impl;

/* img_resize_into and img_crop_resize_into with the implementation named. */
facenet_status img_resize_into_impl(const img_f32 *src, int out_w, int out_h,
                                    float *dst, img_resize_impl impl,
                                    facenet_error *err);
facenet_status img_crop_resize_into_impl(const img_f32 *src, int x1, int y1,
                                         int x2, int y2, int out_w, int out_h,
                                         float *dst, img_resize_impl impl,
                                         facenet_error *err);

facenet_status img_crop_resize_rgb8_t_impl(const img_rgb8 *src, const int box[4],
                                           int out_w, int out_h, int col0, int col1,
                                           const img_norm *norm, float *t,
                                           img_resize_impl impl, facenet_error *err);

/* 1 if this build and CPU run the AVX2 loops. */
int img_resize_have_avx2(void);

/* Horizontal pass of an RGB image over image rows [y0, y1): row y of
 * `src` (src_w pixels) becomes row y - y0 of `tmp` (out_w pixels). The
 * AVX2 version reads 4 floats per pixel, so the caller must not pass the
 * image's last row (its last pixel has no float after it). */
void img_resize_rows_rgb_avx2(const float *src, int src_w, int y0, int y1,
                              const axis_taps *tx, int out_w, float *tmp);

/* The same over an 8-bit RGB image of src_w pixels (`stride` bytes per
 * row), any rows: each pair of rows is first packed into `scratch`
 * (img_resize_rows_rgb8_scratch(src_w) bytes), reading only the rows'
 * pixels. */
size_t img_resize_rows_rgb8_scratch(int src_w);
void img_resize_rows_rgb8_avx2(const uint8_t *src, size_t stride, int src_w, int y0, int y1,
                               const axis_taps *tx, int out_w, uint8_t *scratch, float *tmp);

/* Vertical pass: out_h rows of row_len floats from `tmp`, whose row 0 is
 * image row row_lo. */
void img_resize_vertical_avx2(const float *tmp, const axis_taps *ty, int row_lo,
                              size_t row_len, int out_h, float *dst);

/* The vertical pass of img_crop_resize_rgb8_t: out_h rows of n_cols RGB
 * pixels, each normalised ((v - mean) * scale) and written transposed,
 * t[(x * out_h + y) * 3 + c]. `row` holds n_cols * 3 + 1 floats of
 * scratch (the last pixel of a row is read 4 floats wide). */
void img_resize_vertical_t_avx2(const float *tmp, const axis_taps *ty, int row_lo, int n_cols,
                                int out_h, float mean, float scale, float *row, float *t);

/* ---- Area shrink, vertical first (img_crop_resize_rgb8_t when both axes
 * shrink; see resize.c) ---- */

/* How the vertical taps of one output split: `top` and `bottom` are the
 * taps of the partially covered first and last rows (-1 if there is none),
 * with their weights wt, wb; taps [mid0, mid1) all have the interior
 * weight c. In an area shrink a tap strictly between an output's first
 * and last has overlap exactly 1.0 (it lies inside [lo, hi)), so its
 * weight is (float)(1 / scale) = c; the first and last may have any
 * weight, and equal c only when they too are covered fully. Leaving taps
 * outside the image out removes taps, never changes a weight. */
typedef struct img_area_split {
    int top, bottom;
    int mid0, mid1;
    float wt, wb;
} img_area_split;

static inline void img_area_split_of(const axis_taps *t, int j, float c, img_area_split *s)
{
    const int k0 = t->first[j], k1 = t->first[j + 1];
    s->top = k0 < k1 && t->weight[k0] != c ? k0 : -1;
    s->mid0 = s->top >= 0 ? k0 + 1 : k0;
    s->bottom = k1 - 1 >= s->mid0 && t->weight[k1 - 1] != c ? k1 - 1 : -1;
    s->mid1 = s->bottom >= 0 ? k1 - 1 : k1;
    s->wt = s->top >= 0 ? t->weight[s->top] : 0.0f;
    s->wb = s->bottom >= 0 ? t->weight[s->bottom] : 0.0f;
}

/* Output rows are made IMG_AREA_STRIP at a time: their vertical sums (a
 * strip of floats that stays in cache), then their horizontal taps. */
#define IMG_AREA_STRIP 8

/* The AVX2 version of the area shrink, bit-identical to resize.c's
 * area_vertical_row_rgb8 + area_horizontal_row_t for every output row:
 * source columns [c0, c1) (those the `cols` taps read), vertical taps ty
 * with interior weight cy, n_cols output columns, out_h rows, into
 * column-major t. `v` is IMG_AREA_STRIP * (c1 - c0) * 3 + 1 floats of
 * scratch. */
void img_area_rgb8_t_avx2(const uint8_t *src, size_t stride, int c0, int c1,
                          const axis_taps *ty, float cy, const axis_taps *cols, int n_cols,
                          int out_h, float mean, float scale, float *v, float *t);

#endif
