/*
 * warp.c - affine warp and mirror of float images (golden README 4.3).
 *
 * out[y][x] = bilinear sample of the source at A^-1 (x, y). Pixel centres
 * are at integer coordinates, and each of the four neighbours that falls
 * outside the image contributes 0 (not a clamped edge pixel), so a crop
 * that reaches past the border fades to black exactly like the reference.
 */
#include <math.h>
#include <string.h>

#include "common/error.h"
#include "image/image.h"

/* Invert the 2x3 affine map (a0 a1 a2; a3 a4 a5). Returns 0 if singular
 * or not finite. */
static int invert_affine(const double a[6], double inv[6])
{
    double det = a[0] * a[4] - a[1] * a[3];
    /* Singular relative to the size of the terms, so that a tiny but
     * well-conditioned scale is still accepted. */
    double scale = fmax(fabs(a[0] * a[4]), fabs(a[1] * a[3]));
    for (int i = 0; i < 6; i++)
        if (!isfinite(a[i]))
            return 0;
    if (!isfinite(det) || !(fabs(det) > 1e-10 * scale))
        return 0;
    inv[0] = a[4] / det;
    inv[1] = -a[1] / det;
    inv[3] = -a[3] / det;
    inv[4] = a[0] / det;
    inv[2] = -(inv[0] * a[2] + inv[1] * a[5]);
    inv[5] = -(inv[3] * a[2] + inv[4] * a[5]);
    for (int i = 0; i < 6; i++)
        if (!isfinite(inv[i]))
            return 0;
    return 1;
}

/* floor(x) for x in [-1, INT_MAX), without a libm call (the library is
 * not built for SSE4.1's round instruction): truncation, one down for a
 * negative fraction. */
static int floor_small(double x)
{
    int i = (int)x;
    return (double)i > x ? i - 1 : i;
}

/* Bilinear sample of every channel at (sx, sy); out-of-image neighbours
 * read 0. */
static void sample(const img_f32 *src, double sx, double sy, float *out)
{
    const int ch = src->channels;

    for (int c = 0; c < ch; c++)
        out[c] = 0.0f;
    /* Far outside (this also keeps the int conversions below in range):
     * floor(s) >= -1 and floor(s) < side exactly when s >= -1 and s < side,
     * the side being an integer; NaN fails both. */
    if (!(sx >= -1.0 && sx < src->width && sy >= -1.0 && sy < src->height))
        return;
    const int x0 = floor_small(sx), y0 = floor_small(sy);
    const float wx = (float)(sx - x0), wy = (float)(sy - y0);
    const float w[4] = {(1 - wx) * (1 - wy), wx * (1 - wy), (1 - wx) * wy, wx * wy};
    if (ch == 3 && x0 >= 0 && y0 >= 0 && x0 + 1 < src->width && y0 + 1 < src->height) {
        /* All four neighbours inside: the loop below, unrolled. */
        const size_t row = (size_t)src->width * 3;
        const float *p = src->data + (size_t)y0 * row + (size_t)x0 * 3;
        const float *q[4] = {p, p + 3, p + row, p + row + 3};
        for (int k = 0; k < 4; k++) {
            out[0] += w[k] * q[k][0];
            out[1] += w[k] * q[k][1];
            out[2] += w[k] * q[k][2];
        }
        return;
    }
    for (int k = 0; k < 4; k++) {
        int x = x0 + (k & 1), y = y0 + (k >> 1);
        if (x < 0 || y < 0 || x >= src->width || y >= src->height)
            continue;
        const float *n = src->data + ((size_t)y * src->width + x) * ch;
        for (int c = 0; c < ch; c++)
            out[c] += w[k] * n[c];
    }
}

facenet_status img_warp_affine_into(const img_f32 *src, const double a[6],
                                    int out_w, int out_h, float *dst,
                                    facenet_error *err)
{
    double inv[6];

    if (out_w < 1 || out_h < 1 || out_w > IMG_MAX_SIDE || out_h > IMG_MAX_SIDE)
        return fn_fail(err, FACENET_ERR_INVALID_ARGUMENT,
                       "warp: output size %dx%d is outside 1..%d", out_w,
                       out_h, IMG_MAX_SIDE);
    if (!invert_affine(a, inv))
        return fn_fail(err, FACENET_ERR_INVALID_ARGUMENT,
                       "warp: the matrix [%g %g %g; %g %g %g] is singular or "
                       "not finite",
                       a[0], a[1], a[2], a[3], a[4], a[5]);
    for (int y = 0; y < out_h; y++) {
        for (int x = 0; x < out_w; x++) {
            double sx = inv[0] * x + inv[1] * y + inv[2];
            double sy = inv[3] * x + inv[4] * y + inv[5];
            sample(src, sx, sy,
                   dst + ((size_t)y * out_w + x) * (size_t)src->channels);
        }
    }
    return FACENET_OK;
}

facenet_status img_warp_affine(const img_f32 *src, const double a[6],
                               int out_w, int out_h, img_f32 **out,
                               facenet_error *err)
{
    facenet_status st = img_f32_new(out_w, out_h, src->channels, out, err);
    if (st != FACENET_OK)
        return st;
    st = img_warp_affine_into(src, a, out_w, out_h, (*out)->data, err);
    if (st != FACENET_OK) {
        img_f32_free(*out);
        *out = NULL;
    }
    return st;
}

void img_f32_mirror(img_f32 *img)
{
    int ch = img->channels;
    for (int y = 0; y < img->height; y++) {
        float *row = img->data + (size_t)y * img->width * ch;
        for (int l = 0, r = img->width - 1; l < r; l++, r--) {
            for (int c = 0; c < ch; c++) {
                float t = row[l * ch + c];
                row[l * ch + c] = row[r * ch + c];
                row[r * ch + c] = t;
            }
        }
    }
}
