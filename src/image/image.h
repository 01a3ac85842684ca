/*
 * image.h - images in and out of the face pipeline.
 *
 * Two image types:
 *   img_rgb8  8-bit RGB, what a decoder produces and a PNG writer takes;
 *   img_f32   float H x W x C (C fastest), what resizing, warping and the
 *             networks work on. Values stay unrounded (0..255 scale).
 *
 * Decoding is strict: the format is told by magic bytes (never by a file
 * name), every size is checked against an img_decode_limits before any
 * pixel memory is allocated, and a truncated or corrupt input fails with
 * FACENET_ERR_FORMAT instead of yielding a partly grey image. An unknown
 * format, or one not in the allowed set, is FACENET_ERR_UNSUPPORTED; going
 * over a limit is FACENET_ERR_LIMIT.
 *
 * Decoded pixels follow the reference (golden README 4.1): libjpeg-turbo
 * with the ISLOW integer IDCT and fancy upsampling. Alpha is dropped, not
 * composited (as PIL's convert("RGB") does); 16-bit samples are scaled to
 * 8 bits with rounding, v * 255 / maxval.
 *
 * Ownership: every img_* returned through `**out` belongs to the caller and
 * is freed with img_rgb8_free / img_f32_free (NULL is a no-op). Functions
 * that write into a caller's buffer never keep a pointer to it. All
 * functions are reentrant; none keeps global state.
 */
#ifndef FACENET_IMAGE_IMAGE_H
#define FACENET_IMAGE_IMAGE_H

#include <stddef.h>
#include <stdint.h>

#include "facenet/facenet.h"

/* The largest width or height any function here accepts. */
#define IMG_MAX_SIDE 65535

/* An 8-bit RGB image. Row y starts at pixels + y * stride; a pixel is
 * three bytes R, G, B. Fields are read-only for users: create images with
 * img_rgb8_new. */
typedef struct img_rgb8 {
    int width, height;
    size_t stride;   /* bytes per row, >= 3 * width */
    uint8_t *pixels; /* owned by the image */
} img_rgb8;

/* A float image, dense: element (x, y, c) is data[(y * width + x) *
 * channels + c]. Read-only fields; create with img_f32_new. */
typedef struct img_f32 {
    int width, height, channels;
    float *data; /* owned by the image */
} img_f32;

/* ------------------------------------------------------------------------ */
/* Construction and conversion                                              */
/* ------------------------------------------------------------------------ */

/* Zero-filled images. Sides must be 1..IMG_MAX_SIDE; a float image has
 * 1..4 channels. */
facenet_status img_rgb8_new(int width, int height, img_rgb8 **out,
                            facenet_error *err);
void img_rgb8_free(img_rgb8 *img);

facenet_status img_f32_new(int width, int height, int channels,
                           img_f32 **out, facenet_error *err);
void img_f32_free(img_f32 *img);

/* RGB8 -> float, values 0..255 unchanged. */
facenet_status img_rgb8_to_f32(const img_rgb8 *src, img_f32 **out,
                               facenet_error *err);

/* Float (1 or 3 channels) -> RGB8, rounded to nearest and clamped to
 * 0..255; a single channel is replicated to grey. */
facenet_status img_f32_to_rgb8(const img_f32 *src, img_rgb8 **out,
                               facenet_error *err);

/* ------------------------------------------------------------------------ */
/* Decoding                                                                 */
/* ------------------------------------------------------------------------ */

typedef enum img_format {
    IMG_FORMAT_UNKNOWN = 0,
    IMG_FORMAT_JPEG = 1 << 0,
    IMG_FORMAT_PNG = 1 << 1,
    IMG_FORMAT_WEBP = 1 << 2,
    IMG_FORMAT_PNM = 1 << 3, /* binary PGM (P5) and PPM (P6) */
    IMG_FORMAT_ALL = (1 << 4) - 1
} img_format;

#define IMG_DEFAULT_MAX_BYTES ((size_t)128 << 20)
#define IMG_DEFAULT_MAX_PIXELS ((uint64_t)40000000)

/* Start from img_default_limits() and change fields: a zeroed struct
 * allows nothing (0 bytes, no format). */
typedef struct img_decode_limits {
    size_t max_bytes;    /* encoded input size                          */
    uint64_t max_pixels; /* width * height, checked from the header     */
    unsigned formats;    /* bitmask of img_format values that may decode */
    int apply_orientation; /* JPEG: rotate/flip by the Exif Orientation
                              tag (1 = yes, the default)               */
} img_decode_limits;

/* The defaults: 128 MiB, 40 megapixels, every format, orientation on. */
img_decode_limits img_default_limits(void);

/* The format that the first bytes announce, or IMG_FORMAT_UNKNOWN. */
img_format img_detect_format(const uint8_t *data, size_t size);

/* "JPEG", "PNG", "WebP", "PNM" or "unknown". Never NULL. */
const char *img_format_name(img_format format);

/* Decode an encoded image held in memory. `limits` may be NULL for the
 * defaults. On success *out is a new RGB8 image (already rotated upright
 * when the limits ask for Exif orientation). */
facenet_status img_decode_memory(const uint8_t *data, size_t size,
                                 const img_decode_limits *limits,
                                 img_rgb8 **out, facenet_error *err);

/* Read `path` (refusing files over limits->max_bytes before reading) and
 * decode it. Error messages start with the path. */
facenet_status img_decode_file(const char *path,
                               const img_decode_limits *limits,
                               img_rgb8 **out, facenet_error *err);

/* The Exif Orientation (1..8) stored in a JPEG APP1 payload (starting at
 * "Exif\0\0"), or 0 if the payload has none or is malformed. Exposed for
 * tests; every read is bounds-checked. */
int img_exif_orientation(const uint8_t *app1, size_t size);

/* Turn an image stored with Exif orientation `orientation` (1..8) upright.
 * Orientations 5..8 swap width and height. *img is replaced (the old image
 * is freed) only on success; orientation 1 and unknown values leave it. */
facenet_status img_rgb8_apply_orientation(img_rgb8 **img, int orientation,
                                          facenet_error *err);

/* ------------------------------------------------------------------------ */
/* Resampling (golden README 4.2 and 4.3)                                    */
/* ------------------------------------------------------------------------ */

/* Separable resize of every channel to out_w x out_h. Per axis: exact area
 * averaging when out <= in (output j covers [j*in/out, (j+1)*in/out),
 * weights are overlap / (in/out)); bilinear with half-pixel centres when
 * out > in (src = (j+0.5)*in/out - 0.5 clamped to [0, in-1]). `dst` holds
 * out_h * out_w * src->channels floats. */
facenet_status img_resize_into(const img_f32 *src, int out_w, int out_h,
                               float *dst, facenet_error *err);
facenet_status img_resize(const img_f32 *src, int out_w, int out_h,
                          img_f32 **out, facenet_error *err);

/* Crop the integer box [x1, y1, x2, y2] in MATLAB convention - 0-based
 * pixels x1-1 .. x2-1 and y1-1 .. y2-1, so (x2-x1+1) x (y2-y1+1) pixels,
 * reading 0 outside the image - and resize it like img_resize_into. The
 * crop is never materialised, so a box far larger than the image costs no
 * more memory than the image. Requires x2 >= x1, y2 >= y1. */
facenet_status img_crop_resize_into(const img_f32 *src, int x1, int y1,
                                    int x2, int y2, int out_w, int out_h,
                                    float *dst, facenet_error *err);

/* Normalisation of a network input: t = (v - mean) * scale, in float. */
typedef struct img_norm {
    float mean, scale;
} img_norm;

/* img_crop_resize_into on the float copy of an 8-bit RGB image, without
 * the copy, written the way MTCNN's networks read their input: only output
 * columns [col0, col1) (a band, 0 <= col0 < col1 <= out_w), transposed and
 * normalised, t[((x - col0) * out_h + y) * 3 + c] = (v(x, y, c) - mean) *
 * scale. `box` is x1, y1, x2, y2 as for img_crop_resize_into ({1, 1, w, h}
 * is the whole image). v is what img_crop_resize_into gives on
 * img_rgb8_to_f32's copy of `src`: bit-identical when an axis grows; when
 * both shrink (pyramid levels, most crops) the rows are summed first in
 * exact integers, which differs in the last bits and is closer to the exact
 * area average (resize.c). `t` holds (col1 - col0) * out_h * 3 floats. */
facenet_status img_crop_resize_rgb8_t(const img_rgb8 *src, const int box[4], int out_w,
                                      int out_h, int col0, int col1, const img_norm *norm,
                                      float *t, facenet_error *err);

/* Affine warp. `a` is the forward 2x3 matrix, row-major, mapping image
 * coordinates to output coordinates: (u, v) = (a0 x + a1 y + a2,
 * a3 x + a4 y + a5). out[y][x] is the bilinear sample of src at
 * A^-1 (x, y), with pixel centres at integers and neighbours outside the
 * image reading 0. `dst` holds out_h * out_w * src->channels floats. A
 * singular or non-finite matrix is FACENET_ERR_INVALID_ARGUMENT. */
facenet_status img_warp_affine_into(const img_f32 *src, const double a[6],
                                    int out_w, int out_h, float *dst,
                                    facenet_error *err);
facenet_status img_warp_affine(const img_f32 *src, const double a[6],
                               int out_w, int out_h, img_f32 **out,
                               facenet_error *err);

/* Mirror left-right in place: x -> width - 1 - x. */
void img_f32_mirror(img_f32 *img);

/* ------------------------------------------------------------------------ */
/* Output and drawing                                                       */
/* ------------------------------------------------------------------------ */

/* Encode as an 8-bit RGB PNG into a new malloc'd buffer (caller frees). */
facenet_status img_encode_png(const img_rgb8 *img, uint8_t **data,
                              size_t *size, facenet_error *err);

/* Write `img` as a PNG file at `path` (created or truncated). */
facenet_status img_write_png(const img_rgb8 *img, const char *path,
                             facenet_error *err);

/* Drawing clips to the image, so any coordinates are safe. */

/* Outline of the box with corners (x1, y1) and (x2, y2), both inclusive,
 * `thickness` pixels wide growing inwards from the box edge. */
void img_draw_rect(img_rgb8 *img, int x1, int y1, int x2, int y2,
                   int thickness, const uint8_t rgb[3]);

/* Filled disc of `radius` pixels (0 = one pixel) centred at (cx, cy). */
void img_draw_dot(img_rgb8 *img, int cx, int cy, int radius,
                  const uint8_t rgb[3]);

/* A '+' with arms of `arm` pixels from the centre, one pixel wide. */
void img_draw_cross(img_rgb8 *img, int cx, int cy, int arm,
                    const uint8_t rgb[3]);

#endif
