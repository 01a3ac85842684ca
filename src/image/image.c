/*
 * image.c - image types, conversions, format detection and the decode
 * entry points. The per-format work is in decode_*.c.
 */
#include "image/image.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "common/error.h"
#include "common/fileio.h"
#include "image/decode_internal.h"

/* ------------------------------------------------------------------------ */
/* Types                                                                    */
/* ------------------------------------------------------------------------ */

static int side_ok(int side)
{
    return side >= 1 && side <= IMG_MAX_SIDE;
}

facenet_status img_rgb8_new(int width, int height, img_rgb8 **out,
                            facenet_error *err)
{
    img_rgb8 *img;

    *out = NULL;
    if (!side_ok(width) || !side_ok(height))
        return fn_fail(err, FACENET_ERR_INVALID_ARGUMENT,
                       "image size %dx%d is outside 1..%d", width, height,
                       IMG_MAX_SIDE);
    img = malloc(sizeof *img);
    if (!img)
        return fn_fail(err, FACENET_ERR_NO_MEMORY, "cannot allocate an image");
    img->width = width;
    img->height = height;
    img->stride = (size_t)width * 3;
    /* Sides <= 65535 keep this product far below SIZE_MAX on 64-bit. */
    img->pixels = calloc((size_t)height, img->stride);
    if (!img->pixels) {
        free(img);
        return fn_fail(err, FACENET_ERR_NO_MEMORY,
                       "cannot allocate a %dx%d RGB image", width, height);
    }
    *out = img;
    return FACENET_OK;
}

void img_rgb8_free(img_rgb8 *img)
{
    if (img) {
        free(img->pixels);
        free(img);
    }
}

facenet_status img_f32_new(int width, int height, int channels,
                           img_f32 **out, facenet_error *err)
{
    img_f32 *img;

    *out = NULL;
    if (!side_ok(width) || !side_ok(height) || channels < 1 || channels > 4)
        return fn_fail(err, FACENET_ERR_INVALID_ARGUMENT,
                       "float image %dx%dx%d is outside 1..%d x 1..4", width,
                       height, channels, IMG_MAX_SIDE);
    img = malloc(sizeof *img);
    if (!img)
        return fn_fail(err, FACENET_ERR_NO_MEMORY, "cannot allocate an image");
    img->width = width;
    img->height = height;
    img->channels = channels;
    img->data = calloc((size_t)width * (size_t)height * (size_t)channels,
                       sizeof(float));
    if (!img->data) {
        free(img);
        return fn_fail(err, FACENET_ERR_NO_MEMORY,
                       "cannot allocate a %dx%dx%d float image", width, height,
                       channels);
    }
    *out = img;
    return FACENET_OK;
}

void img_f32_free(img_f32 *img)
{
    if (img) {
        free(img->data);
        free(img);
    }
}

facenet_status img_rgb8_to_f32(const img_rgb8 *src, img_f32 **out,
                               facenet_error *err)
{
    facenet_status st = img_f32_new(src->width, src->height, 3, out, err);
    if (!*out) /* set exactly when st is FACENET_OK */
        return st;
    float *d = (*out)->data;
    for (int y = 0; y < src->height; y++) {
        const uint8_t *row = src->pixels + (size_t)y * src->stride;
        for (int i = 0; i < src->width * 3; i++)
            *d++ = (float)row[i];
    }
    return FACENET_OK;
}

static uint8_t to_byte(float v)
{
    if (!(v > 0.0f)) /* also catches NaN */
        return 0;
    if (v >= 255.0f)
        return 255;
    return (uint8_t)lrintf(v);
}

facenet_status img_f32_to_rgb8(const img_f32 *src, img_rgb8 **out,
                               facenet_error *err)
{
    facenet_status st;

    *out = NULL;
    if (src->channels != 1 && src->channels != 3)
        return fn_fail(err, FACENET_ERR_INVALID_ARGUMENT,
                       "cannot convert a %d-channel image to RGB",
                       src->channels);
    st = img_rgb8_new(src->width, src->height, out, err);
    if (!*out)
        return st;
    const float *s = src->data;
    for (int y = 0; y < src->height; y++) {
        uint8_t *row = (*out)->pixels + (size_t)y * (*out)->stride;
        for (int x = 0; x < src->width; x++) {
            if (src->channels == 1) {
                row[3 * x] = row[3 * x + 1] = row[3 * x + 2] = to_byte(*s++);
            } else {
                row[3 * x] = to_byte(s[0]);
                row[3 * x + 1] = to_byte(s[1]);
                row[3 * x + 2] = to_byte(s[2]);
                s += 3;
            }
        }
    }
    return FACENET_OK;
}

/* ------------------------------------------------------------------------ */
/* Format detection                                                         */
/* ------------------------------------------------------------------------ */

img_decode_limits img_default_limits(void)
{
    img_decode_limits l;
    l.max_bytes = IMG_DEFAULT_MAX_BYTES;
    l.max_pixels = IMG_DEFAULT_MAX_PIXELS;
    l.formats = IMG_FORMAT_ALL;
    l.apply_orientation = 1;
    return l;
}

typedef struct magic {
    img_format format;
    size_t offset;
    const char *bytes;
    size_t len;
} magic;

/* WebP is "RIFF" <size:4> "WEBP": two pieces at different offsets. */
static const magic magics[] = {
    {IMG_FORMAT_JPEG, 0, "\xFF\xD8\xFF", 3},
    {IMG_FORMAT_PNG, 0, "\x89PNG\r\n\x1A\n", 8},
    {IMG_FORMAT_WEBP, 0, "RIFF", 4},
    {IMG_FORMAT_WEBP, 8, "WEBP", 4},
};

static int magic_matches(const magic *m, const uint8_t *data, size_t size)
{
    return size >= m->offset + m->len &&
           memcmp(data + m->offset, m->bytes, m->len) == 0;
}

/* True if data could be the start of a file of some format, i.e. it is a
 * truncated header rather than an unknown format. */
static int is_truncated_magic(const uint8_t *data, size_t size)
{
    for (size_t i = 0; i < sizeof magics / sizeof magics[0]; i++) {
        const magic *m = &magics[i];
        if (m->offset == 0 && size < m->len &&
            memcmp(data, m->bytes, size) == 0)
            return 1;
    }
    if (size == 1 && data[0] == 'P')
        return 1;
    /* "RIFF" plus part of the size field and "WEBP". */
    if (size >= 4 && size < 12 && memcmp(data, "RIFF", 4) == 0)
        return size <= 8 || memcmp(data + 8, "WEBP", size - 8) == 0;
    return 0;
}

img_format img_detect_format(const uint8_t *data, size_t size)
{
    if (!data)
        return IMG_FORMAT_UNKNOWN;
    if (magic_matches(&magics[0], data, size))
        return IMG_FORMAT_JPEG;
    if (magic_matches(&magics[1], data, size))
        return IMG_FORMAT_PNG;
    if (magic_matches(&magics[2], data, size) &&
        magic_matches(&magics[3], data, size))
        return IMG_FORMAT_WEBP;
    /* P1..P7: the decoder tells the supported P5/P6 from the rest. */
    if (size >= 2 && data[0] == 'P' && data[1] >= '1' && data[1] <= '7')
        return IMG_FORMAT_PNM;
    return IMG_FORMAT_UNKNOWN;
}

const char *img_format_name(img_format format)
{
    switch (format) {
    case IMG_FORMAT_JPEG: return "JPEG";
    case IMG_FORMAT_PNG: return "PNG";
    case IMG_FORMAT_WEBP: return "WebP";
    case IMG_FORMAT_PNM: return "PNM";
    default: return "unknown";
    }
}

facenet_status img_check_size(uint64_t width, uint64_t height,
                              const img_decode_limits *limits,
                              const char *what, facenet_error *err)
{
    if (width == 0 || height == 0)
        return fn_fail(err, FACENET_ERR_FORMAT,
                       "%s header declares an empty %llux%llu image", what,
                       (unsigned long long)width, (unsigned long long)height);
    if (width > IMG_MAX_SIDE || height > IMG_MAX_SIDE)
        return fn_fail(err, FACENET_ERR_LIMIT,
                       "%s image is %llux%llu: a side exceeds %d pixels", what,
                       (unsigned long long)width, (unsigned long long)height,
                       IMG_MAX_SIDE);
    uint64_t pixels = width * height; /* both <= 65535 */
    if (pixels > limits->max_pixels)
        return fn_fail(err, FACENET_ERR_LIMIT,
                       "%s image is %llux%llu = %llu pixels, over the limit "
                       "of %llu",
                       what, (unsigned long long)width,
                       (unsigned long long)height, (unsigned long long)pixels,
                       (unsigned long long)limits->max_pixels);
    return FACENET_OK;
}

/* ------------------------------------------------------------------------ */
/* Decode entry points                                                      */
/* ------------------------------------------------------------------------ */

facenet_status img_decode_memory(const uint8_t *data, size_t size,
                                 const img_decode_limits *limits,
                                 img_rgb8 **out, facenet_error *err)
{
    img_decode_limits defaults = img_default_limits();
    img_format format;

    *out = NULL;
    if (!limits)
        limits = &defaults;
    if (!data || size == 0)
        return fn_fail(err, FACENET_ERR_FORMAT, "empty input: 0 bytes");
    if (size > limits->max_bytes)
        return fn_fail(err, FACENET_ERR_LIMIT,
                       "input of %zu bytes exceeds the limit of %zu bytes",
                       size, limits->max_bytes);
    format = img_detect_format(data, size);
    if (format == IMG_FORMAT_UNKNOWN) {
        if (is_truncated_magic(data, size))
            return fn_fail(err, FACENET_ERR_FORMAT,
                           "truncated image header (%zu bytes)", size);
        return fn_fail(err, FACENET_ERR_UNSUPPORTED,
                       "unknown image format (first bytes %02x %02x %02x %02x)",
                       data[0], size > 1 ? data[1] : 0, size > 2 ? data[2] : 0,
                       size > 3 ? data[3] : 0);
    }
    if (!(limits->formats & (unsigned)format))
        return fn_fail(err, FACENET_ERR_UNSUPPORTED,
                       "%s images are not in the allowed formats",
                       img_format_name(format));
    switch (format) {
    case IMG_FORMAT_JPEG: return img_decode_jpeg(data, size, limits, out, err);
    case IMG_FORMAT_PNG: return img_decode_png(data, size, limits, out, err);
    case IMG_FORMAT_WEBP: return img_decode_webp(data, size, limits, out, err);
    case IMG_FORMAT_PNM: return img_decode_pnm(data, size, limits, out, err);
    default: break;
    }
    return fn_fail(err, FACENET_ERR_INTERNAL, "no decoder for format %d",
                   (int)format);
}

facenet_status img_decode_file(const char *path,
                               const img_decode_limits *limits,
                               img_rgb8 **out, facenet_error *err)
{
    img_decode_limits defaults = img_default_limits();
    uint8_t *data;
    size_t size;
    facenet_status st;

    *out = NULL;
    if (!limits)
        limits = &defaults;
    st = fn_read_file(path, limits->max_bytes, &data, &size, err);
    if (st != FACENET_OK)
        return st; /* fn_read_file names the path */
    st = img_decode_memory(data, size, limits, out, err);
    free(data);
    if (st != FACENET_OK)
        fn_error_prefix(err, "%s", path);
    return st;
}

/* ------------------------------------------------------------------------ */
/* Exif orientation                                                         */
/* ------------------------------------------------------------------------ */

/* Where the stored pixel for upright pixel (x, y) is, for an upright image
 * of size ow x oh and a stored one of size sw x sh. */
static void oriented_source(int orientation, int x, int y, int sw, int sh,
                            int *sx, int *sy)
{
    switch (orientation) {
    case 2: *sx = sw - 1 - x; *sy = y; break;          /* mirror H    */
    case 3: *sx = sw - 1 - x; *sy = sh - 1 - y; break; /* rotate 180  */
    case 4: *sx = x; *sy = sh - 1 - y; break;          /* mirror V    */
    case 5: *sx = y; *sy = x; break;                   /* transpose   */
    case 6: *sx = y; *sy = sh - 1 - x; break;          /* rotate 90 CW */
    case 7: *sx = sw - 1 - y; *sy = sh - 1 - x; break; /* transverse  */
    case 8: *sx = sw - 1 - y; *sy = x; break;          /* rotate 90 CCW */
    default: *sx = x; *sy = y; break;
    }
}

facenet_status img_rgb8_apply_orientation(img_rgb8 **img, int orientation,
                                          facenet_error *err)
{
    const img_rgb8 *src = *img;
    img_rgb8 *dst = NULL;
    int swap = orientation >= 5 && orientation <= 8;
    facenet_status st;

    if (orientation < 2 || orientation > 8)
        return FACENET_OK;
    st = img_rgb8_new(swap ? src->height : src->width,
                      swap ? src->width : src->height, &dst, err);
    if (!dst)
        return st;
    for (int y = 0; y < dst->height; y++) {
        uint8_t *out = dst->pixels + (size_t)y * dst->stride;
        for (int x = 0; x < dst->width; x++) {
            int sx, sy;
            oriented_source(orientation, x, y, src->width, src->height, &sx,
                            &sy);
            memcpy(out + 3 * x,
                   src->pixels + (size_t)sy * src->stride + 3 * (size_t)sx, 3);
        }
    }
    img_rgb8_free(*img);
    *img = dst;
    return FACENET_OK;
}

static unsigned read_u16(const uint8_t *p, int big_endian)
{
    return big_endian ? (unsigned)(p[0] << 8 | p[1])
                      : (unsigned)(p[1] << 8 | p[0]);
}

static uint32_t read_u32(const uint8_t *p, int big_endian)
{
    return big_endian ? (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 |
                            (uint32_t)p[2] << 8 | p[3]
                      : (uint32_t)p[3] << 24 | (uint32_t)p[2] << 16 |
                            (uint32_t)p[1] << 8 | p[0];
}

int img_exif_orientation(const uint8_t *app1, size_t size)
{
    const uint8_t *tiff;
    size_t len;
    int be;
    uint32_t ifd;
    unsigned count;

    if (!app1 || size < 6 || memcmp(app1, "Exif\0\0", 6) != 0)
        return 0;
    /* Offsets inside Exif are relative to the TIFF header after "Exif\0\0". */
    tiff = app1 + 6;
    len = size - 6;
    if (len < 8)
        return 0;
    if (memcmp(tiff, "MM", 2) == 0)
        be = 1;
    else if (memcmp(tiff, "II", 2) == 0)
        be = 0;
    else
        return 0;
    if (read_u16(tiff + 2, be) != 42)
        return 0;
    ifd = read_u32(tiff + 4, be);
    if (ifd > len || len - ifd < 2)
        return 0;
    count = read_u16(tiff + ifd, be);
    for (unsigned i = 0; i < count; i++) {
        size_t entry = (size_t)ifd + 2 + (size_t)i * 12;
        if (entry + 12 > len)
            return 0;
        if (read_u16(tiff + entry, be) != 0x0112)
            continue;
        /* Orientation is one SHORT (type 3), stored in the value field. */
        if (read_u16(tiff + entry + 2, be) != 3 ||
            read_u32(tiff + entry + 4, be) < 1)
            return 0;
        unsigned value = read_u16(tiff + entry + 8, be);
        return value >= 1 && value <= 8 ? (int)value : 0;
    }
    return 0;
}
