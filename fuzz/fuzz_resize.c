/*
 * fuzz_resize.c - differential libFuzzer target for resampling and warping.
 *
 * The detector feeds these functions boxes straight from a network's
 * regression, so any box must either fail cleanly or resample without
 * reading outside the image. The input chooses an image (1..48 pixels a
 * side, padded rows), a box that may lie partly or wholly outside it (or
 * be empty), an output size and column band, and then:
 *   - the 8-bit crop (img_crop_resize_rgb8_t_impl) and the float crop
 *     (img_crop_resize_into_impl) run with the AVX2 loops and with the
 *     scalar oracle: both must return the same status and, on success,
 *     bit-identical outputs (resize_internal.h promises this);
 *   - the affine warp runs with a matrix taken from the input (including
 *     huge, tiny, infinite and NaN entries): it must either refuse the
 *     matrix or produce values inside [0, 255], since each output is a
 *     bilinear blend, with weights summing to at most 1, of 0..255 pixels.
 * A mismatch, an out-of-range value, a crash or a sanitizer report is a bug.
 */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "image/image.h"
#include "image/resize_internal.h"

#include "fuzz_reader.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* A coordinate in [-320, 320]: boxes reach well past a 48-pixel image. */
static int coordinate(reader *r)
{
    const int v = (int)(byte(r) | byte(r) << 8);
    return v % 641 - 320;
}

/* A warp matrix entry: mostly modest values, sometimes extreme ones. */
static double matrix_entry(reader *r)
{
    const unsigned kind = byte(r) % 16, v = byte(r);
    switch (kind) {
    case 0: return INFINITY;
    case 1: return NAN;
    case 2: return 1e300 * ((double)v - 128.0);
    case 3: return 1e-300 * ((double)v - 128.0);
    case 4: return 0.0;
    default: return ((double)v - 128.0) / 16.0;
    }
}

static void *xmalloc(size_t n)
{
    void *p = malloc(n ? n : 1);
    if (!p)
        abort();
    return p;
}

static void check_crops(reader *r, const img_rgb8 *img8, const img_f32 *imgf)
{
    const int box[4] = {coordinate(r), coordinate(r), coordinate(r), coordinate(r)};
    const int out_w = 1 + (int)(byte(r) % 64), out_h = 1 + (int)(byte(r) % 64);
    const int col0 = (int)(byte(r) % (unsigned)out_w);
    const int col1 = col0 + 1 + (int)(byte(r) % (unsigned)(out_w - col0));
    const img_norm norm = {127.5f, 0.0078125f};
    const size_t n_t = (size_t)(col1 - col0) * (size_t)out_h * 3;
    const size_t n_f = (size_t)out_w * (size_t)out_h * 3;
    float *t_best = xmalloc(n_t * sizeof(float)), *t_scalar = xmalloc(n_t * sizeof(float));
    float *f_best = xmalloc(n_f * sizeof(float)), *f_scalar = xmalloc(n_f * sizeof(float));
    facenet_error err;

    facenet_status a = img_crop_resize_rgb8_t_impl(img8, box, out_w, out_h, col0, col1, &norm,
                                                   t_best, IMG_RESIZE_BEST, &err);
    facenet_status b = img_crop_resize_rgb8_t_impl(img8, box, out_w, out_h, col0, col1, &norm,
                                                   t_scalar, IMG_RESIZE_SCALAR, &err);
    if (a != b || (a == FACENET_OK && memcmp(t_best, t_scalar, n_t * sizeof(float)) != 0))
        abort();

    a = img_crop_resize_into_impl(imgf, box[0], box[1], box[2], box[3], out_w, out_h, f_best,
                                  IMG_RESIZE_BEST, &err);
    b = img_crop_resize_into_impl(imgf, box[0], box[1], box[2], box[3], out_w, out_h, f_scalar,
                                  IMG_RESIZE_SCALAR, &err);
    if (a != b || (a == FACENET_OK && memcmp(f_best, f_scalar, n_f * sizeof(float)) != 0))
        abort();
    free(t_best);
    free(t_scalar);
    free(f_best);
    free(f_scalar);
}

static void check_warp(reader *r, const img_f32 *imgf)
{
    double a[6];
    for (int i = 0; i < 6; i++)
        a[i] = matrix_entry(r);
    const int out_w = 1 + (int)(byte(r) % 64), out_h = 1 + (int)(byte(r) % 64);
    const size_t n = (size_t)out_w * (size_t)out_h * 3;
    float *out = xmalloc(n * sizeof(float));
    facenet_error err;

    if (img_warp_affine_into(imgf, a, out_w, out_h, out, &err) == FACENET_OK)
        for (size_t i = 0; i < n; i++)
            if (!(out[i] >= 0.0f && out[i] <= 255.0f * (1.0f + 1e-6f)))
                abort();
    free(out);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    reader r = {data, size};
    const int w = 1 + (int)(byte(&r) % 48), h = 1 + (int)(byte(&r) % 48);
    const size_t pad = byte(&r) % 5;
    img_rgb8 img8 = {w, h, (size_t)w * 3 + pad, NULL};
    img_f32 *imgf = NULL;
    facenet_error err;

    /* Pixels from a generator seeded by the input, so the fuzzer spends
     * its bytes on boxes and sizes; one seed in eight makes every byte
     * 255, the largest sums the loops can meet. */
    const int saturate = byte(&r) % 8 == 0;
    uint32_t state = byte(&r) | byte(&r) << 8;
    img8.pixels = xmalloc(img8.stride * (size_t)h);
    for (size_t i = 0; i < img8.stride * (size_t)h; i++) {
        state = state * 1664525u + 1013904223u;
        img8.pixels[i] = saturate ? 255 : (uint8_t)(state >> 24);
    }
    if (img_rgb8_to_f32(&img8, &imgf, &err) != FACENET_OK)
        abort();
    for (int round = 0; round < 4 && r.n > 0; round++) {
        if (byte(&r) % 4 == 0)
            check_warp(&r, imgf);
        else
            check_crops(&r, &img8, imgf);
    }
    img_f32_free(imgf);
    free(img8.pixels);
    return 0;
}
