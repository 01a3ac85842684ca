/*
 * Unit tests of the image module that need no external data: every
 * decoder on images encoded here (libjpeg, libpng, libwebp, hand-written
 * PNM), bad and hostile inputs, Exif orientation, resize/crop/warp
 * properties, PNG writing and drawing. The golden parity checks are in
 * test_image_golden.c.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <jpeglib.h>
#include <png.h>
#include <webp/decode.h>
#include <webp/encode.h>

#include "image/image.h"
#include "image/resize_internal.h"
#include "support/testutil.h"

/* ------------------------------------------------------------------------ */
/* Encoders for test inputs                                                 */
/* ------------------------------------------------------------------------ */

typedef struct jpeg_opts {
    int quality;
    int components;           /* 1 grey, 3 RGB, 4 CMYK */
    int full_chroma;          /* 4:4:4 instead of 4:2:0 */
    const uint8_t *app1;      /* optional APP1 payload */
    size_t app1_len;
    const jpeg_scan_info *scans; /* optional scan script */
    int num_scans;
} jpeg_opts;

/* Encode `pix` (components bytes per pixel, tightly packed). Free with
 * free(). */
static uint8_t *make_jpeg(const uint8_t *pix, int w, int h,
                          const jpeg_opts *o, size_t *size)
{
    struct jpeg_compress_struct c;
    struct jpeg_error_mgr jerr;
    unsigned char *buf = NULL;
    unsigned long len = 0;

    c.err = jpeg_std_error(&jerr);
    jpeg_create_compress(&c);
    jpeg_mem_dest(&c, &buf, &len);
    c.image_width = (JDIMENSION)w;
    c.image_height = (JDIMENSION)h;
    c.input_components = o->components;
    c.in_color_space = o->components == 1   ? JCS_GRAYSCALE
                       : o->components == 4 ? JCS_CMYK
                                            : JCS_RGB;
    jpeg_set_defaults(&c);
    jpeg_set_quality(&c, o->quality, TRUE);
    if (o->full_chroma && o->components == 3)
        c.comp_info[0].h_samp_factor = c.comp_info[0].v_samp_factor = 1;
    if (o->scans) {
        c.scan_info = o->scans;
        c.num_scans = o->num_scans;
    }
    jpeg_start_compress(&c, TRUE);
    if (o->app1)
        jpeg_write_marker(&c, JPEG_APP0 + 1, o->app1, (unsigned)o->app1_len);
    while (c.next_scanline < c.image_height) {
        JSAMPROW row = (JSAMPROW)(pix + (size_t)c.next_scanline * w * o->components);
        jpeg_write_scanlines(&c, &row, 1);
    }
    jpeg_finish_compress(&c);
    jpeg_destroy_compress(&c);
    *size = len;
    return buf;
}

typedef struct growbuf {
    uint8_t *data;
    size_t size, cap;
} growbuf;

static void grow_write(png_structp png, png_bytep bytes, size_t n)
{
    growbuf *g = png_get_io_ptr(png);
    if (g->size + n > g->cap) {
        g->cap = (g->size + n) * 2;
        g->data = realloc(g->data, g->cap);
        assert_non_null(g->data);
    }
    memcpy(g->data + g->size, bytes, n);
    g->size += n;
}

static void grow_flush(png_structp png)
{
    (void)png;
}

typedef struct png_opts {
    int color_type, bit_depth, interlace;
    const png_color *palette;
    int num_palette;
    const uint8_t *trns;
    int num_trns;
} png_opts;

/* Encode raw PNG rows (`rowbytes` each, in PNG's own sample layout). */
static uint8_t *make_png(const uint8_t *raw, size_t rowbytes, int w, int h,
                         const png_opts *o, size_t *size)
{
    growbuf g = {NULL, 0, 0};
    png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, NULL,
                                              NULL, NULL);
    png_infop info = png_create_info_struct(png);
    png_bytep *rows = malloc(sizeof(png_bytep) * (size_t)h);

    assert_non_null(rows);
    if (setjmp(png_jmpbuf(png)))
        fail_msg("libpng failed to encode a test image");
    png_set_write_fn(png, &g, grow_write, grow_flush);
    png_set_IHDR(png, info, (png_uint_32)w, (png_uint_32)h, o->bit_depth,
                 o->color_type,
                 o->interlace ? PNG_INTERLACE_ADAM7 : PNG_INTERLACE_NONE,
                 PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
    if (o->palette)
        png_set_PLTE(png, info, o->palette, o->num_palette);
    if (o->trns)
        png_set_tRNS(png, info, o->trns, o->num_trns, NULL);
    png_write_info(png, info);
    for (int y = 0; y < h; y++)
        rows[y] = (png_bytep)(raw + (size_t)y * rowbytes);
    png_write_image(png, rows);
    png_write_end(png, NULL);
    png_destroy_write_struct(&png, &info);
    free(rows);
    *size = g.size;
    return g.data;
}

static uint8_t *make_png_rgb(const uint8_t *rgb, int w, int h, size_t *size)
{
    png_opts o = {PNG_COLOR_TYPE_RGB, 8, 0, NULL, 0, NULL, 0};
    return make_png(rgb, (size_t)w * 3, w, h, &o, size);
}

/* A deterministic RGB test picture: smooth enough to survive JPEG. */
static uint8_t *make_rgb(int w, int h)
{
    uint8_t *p = malloc((size_t)w * h * 3);
    assert_non_null(p);
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++)
            for (int c = 0; c < 3; c++)
                p[((size_t)y * w + x) * 3 + c] = (uint8_t)tu_pattern(x, y, c);
    return p;
}

static uint32_t rng_next(uint32_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 17;
    *s ^= *s << 5;
    return *s;
}

static uint32_t crc32_of(const uint8_t *p, size_t n)
{
    uint32_t crc = 0xFFFFFFFFu;
    for (size_t i = 0; i < n; i++) {
        crc ^= p[i];
        for (int k = 0; k < 8; k++)
            crc = (crc >> 1) ^ (0xEDB88320u & (0u - (crc & 1u)));
    }
    return ~crc;
}

static void put_be32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

static const char *tmp_dir(void)
{
    const char *d = getenv("TMPDIR");
    return d && *d ? d : ".";
}

static void write_file(const char *path, const uint8_t *data, size_t size)
{
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(data, 1, size, f), size);
    assert_int_equal(fclose(f), 0);
}

static const uint8_t *px(const img_rgb8 *img, int x, int y)
{
    return img->pixels + (size_t)y * img->stride + 3 * (size_t)x;
}

/* Decode and expect a status; on success, return the image. */
static img_rgb8 *decode_expect(const uint8_t *data, size_t size,
                               const img_decode_limits *limits,
                               facenet_status want)
{
    img_rgb8 *img = (img_rgb8 *)1;
    facenet_error err;
    memset(&err, 0, sizeof err);
    facenet_status st = img_decode_memory(data, size, limits, &img, &err);
    if (st != want)
        fail_msg("decode of %zu bytes: status %d (%s), wanted %d", size,
                 (int)st, err.message, (int)want);
    if (st != FACENET_OK) {
        assert_null(img);
        assert_int_equal(err.code, want);
        assert_true(strlen(err.message) > 0);
    } else {
        assert_non_null(img);
    }
    return img;
}

/* ------------------------------------------------------------------------ */
/* Decoding valid images                                                    */
/* ------------------------------------------------------------------------ */

static void test_jpeg_rgb_decodes_close(void **state)
{
    int w = 32, h = 24;
    uint8_t *rgb = make_rgb(w, h);
    jpeg_opts o = {100, 3, 1, NULL, 0, NULL, 0};
    size_t size;
    uint8_t *jpg = make_jpeg(rgb, w, h, &o, &size);
    (void)state;

    assert_int_equal(img_detect_format(jpg, size), IMG_FORMAT_JPEG);
    img_rgb8 *img = decode_expect(jpg, size, NULL, FACENET_OK);
    assert_int_equal(img->width, w);
    assert_int_equal(img->height, h);
    /* The pattern has sharp wraps at 255 -> 0; compare the mean error. */
    double sum = 0;
    for (int y = 0; y < h; y++)
        for (int i = 0; i < w * 3; i++)
            sum += fabs((double)px(img, 0, y)[i] - rgb[((size_t)y * w) * 3 + i]);
    assert_true(sum / (w * h * 3) < 6.0);
    img_rgb8_free(img);
    free(jpg);
    free(rgb);
}

static void test_jpeg_grey_and_cmyk(void **state)
{
    uint8_t grey[16 * 16], cmyk[16 * 16 * 4];
    jpeg_opts og = {95, 1, 0, NULL, 0, NULL, 0};
    jpeg_opts oc = {100, 4, 0, NULL, 0, NULL, 0};
    size_t size;
    (void)state;

    for (int i = 0; i < 256; i++)
        grey[i] = (uint8_t)(i < 128 ? 60 : 180);
    uint8_t *jpg = make_jpeg(grey, 16, 16, &og, &size);
    img_rgb8 *img = decode_expect(jpg, size, NULL, FACENET_OK);
    for (int y = 0; y < 16; y++)
        for (int x = 0; x < 16; x++) {
            const uint8_t *p = px(img, x, y);
            assert_int_equal(p[0], p[1]);
            assert_int_equal(p[1], p[2]);
        }
    assert_true(abs(px(img, 4, 2)[0] - 60) <= 3);
    assert_true(abs(px(img, 4, 13)[0] - 180) <= 3);
    img_rgb8_free(img);
    free(jpg);

    /* libjpeg writes an Adobe marker with CMYK, so the stored values are
     * read as inverted CMYK (Photoshop's convention, which PIL follows):
     * R = C*K/255 and so on. */
    for (int i = 0; i < 256; i++) {
        cmyk[4 * i] = 255;
        cmyk[4 * i + 1] = 128;
        cmyk[4 * i + 2] = 0;
        cmyk[4 * i + 3] = 200;
    }
    jpg = make_jpeg(cmyk, 16, 16, &oc, &size);
    img = decode_expect(jpg, size, NULL, FACENET_OK);
    assert_true(abs(px(img, 5, 5)[0] - 200) <= 3);
    assert_true(abs(px(img, 5, 5)[1] - 100) <= 3);
    assert_true(px(img, 5, 5)[2] <= 3);
    img_rgb8_free(img);
    free(jpg);
}

static void test_png_variants(void **state)
{
    size_t size;
    uint8_t *png;
    img_rgb8 *img;
    (void)state;

    /* 16-bit RGB, big-endian samples: scaled with rounding. */
    {
        uint16_t v[3] = {65535, 257 * 100, 12345};
        uint8_t raw[2 * 6 * 2];
        png_opts o = {PNG_COLOR_TYPE_RGB, 16, 0, NULL, 0, NULL, 0};
        for (int p = 0; p < 4; p++)
            for (int c = 0; c < 3; c++) {
                raw[p * 6 + c * 2] = (uint8_t)(v[c] >> 8);
                raw[p * 6 + c * 2 + 1] = (uint8_t)v[c];
            }
        png = make_png(raw, 12, 2, 2, &o, &size);
        img = decode_expect(png, size, NULL, FACENET_OK);
        assert_int_equal(px(img, 1, 1)[0], 255);
        assert_int_equal(px(img, 1, 1)[1], 100);
        assert_int_equal(px(img, 1, 1)[2], 48); /* 12345 / 257 = 48.03 */
        img_rgb8_free(img);
        free(png);
    }
    /* Palette, 2 bits per pixel, with a tRNS chunk (alpha is dropped). */
    {
        png_color pal[4] = {{10, 20, 30}, {200, 0, 0}, {0, 200, 0}, {1, 2, 3}};
        uint8_t trns[4] = {255, 0, 128, 255};
        uint8_t raw[2] = {0x1B, 0xE4}; /* indices 0 1 2 3 / 3 2 1 0 */
        png_opts o = {PNG_COLOR_TYPE_PALETTE, 2, 0, pal, 4, trns, 4};
        png = make_png(raw, 1, 4, 2, &o, &size);
        img = decode_expect(png, size, NULL, FACENET_OK);
        assert_memory_equal(px(img, 0, 0), "\x0a\x14\x1e", 3);
        assert_memory_equal(px(img, 1, 0), "\xc8\x00\x00", 3);
        assert_memory_equal(px(img, 2, 0), "\x00\xc8\x00", 3);
        assert_memory_equal(px(img, 0, 1), "\x01\x02\x03", 3);
        assert_memory_equal(px(img, 3, 1), "\x0a\x14\x1e", 3);
        img_rgb8_free(img);
        free(png);
    }
    /* 1-bit grey. */
    {
        uint8_t raw[2] = {0xA0, 0x50}; /* 1010 / 0101 */
        png_opts o = {PNG_COLOR_TYPE_GRAY, 1, 0, NULL, 0, NULL, 0};
        png = make_png(raw, 1, 4, 2, &o, &size);
        img = decode_expect(png, size, NULL, FACENET_OK);
        assert_memory_equal(px(img, 0, 0), "\xff\xff\xff", 3);
        assert_memory_equal(px(img, 1, 0), "\x00\x00\x00", 3);
        assert_memory_equal(px(img, 1, 1), "\xff\xff\xff", 3);
        img_rgb8_free(img);
        free(png);
    }
    /* 8-bit grey + alpha, and RGBA: colour kept, alpha dropped. */
    {
        uint8_t raw[4] = {77, 0, 150, 255};
        png_opts o = {PNG_COLOR_TYPE_GRAY_ALPHA, 8, 0, NULL, 0, NULL, 0};
        png = make_png(raw, 4, 2, 1, &o, &size);
        img = decode_expect(png, size, NULL, FACENET_OK);
        assert_memory_equal(px(img, 0, 0), "\x4d\x4d\x4d", 3);
        assert_memory_equal(px(img, 1, 0), "\x96\x96\x96", 3);
        img_rgb8_free(img);
        free(png);
    }
    {
        uint8_t raw[8] = {1, 2, 3, 0, 250, 251, 252, 7};
        png_opts o = {PNG_COLOR_TYPE_RGB_ALPHA, 8, 0, NULL, 0, NULL, 0};
        png = make_png(raw, 8, 2, 1, &o, &size);
        img = decode_expect(png, size, NULL, FACENET_OK);
        assert_memory_equal(px(img, 0, 0), "\x01\x02\x03", 3);
        assert_memory_equal(px(img, 1, 0), "\xfa\xfb\xfc", 3);
        img_rgb8_free(img);
        free(png);
    }
    /* 16-bit grey, interlaced. */
    {
        uint8_t raw[9 * 7 * 2];
        png_opts o = {PNG_COLOR_TYPE_GRAY, 16, 1, NULL, 0, NULL, 0};
        for (int i = 0; i < 9 * 7; i++) {
            raw[2 * i] = (uint8_t)(i * 3);
            raw[2 * i + 1] = 0x80;
        }
        png = make_png(raw, 18, 9, 7, &o, &size);
        img = decode_expect(png, size, NULL, FACENET_OK);
        for (int i = 0; i < 9 * 7; i++) {
            unsigned v = (unsigned)(i * 3) << 8 | 0x80;
            unsigned want = (v * 255 + 32767) / 65535;
            assert_int_equal(px(img, i % 9, i / 9)[1], want);
        }
        img_rgb8_free(img);
        free(png);
    }
}

static void test_png_interlaced_rgb_is_exact(void **state)
{
    int w = 37, h = 29;
    uint8_t *rgb = make_rgb(w, h);
    png_opts o = {PNG_COLOR_TYPE_RGB, 8, 1, NULL, 0, NULL, 0};
    size_t size;
    uint8_t *png = make_png(rgb, (size_t)w * 3, w, h, &o, &size);
    (void)state;

    img_rgb8 *img = decode_expect(png, size, NULL, FACENET_OK);
    for (int y = 0; y < h; y++)
        assert_memory_equal(px(img, 0, y), rgb + (size_t)y * w * 3, (size_t)w * 3);
    img_rgb8_free(img);
    free(png);
    free(rgb);
}

static void test_webp(void **state)
{
    int w = 23, h = 17;
    uint8_t *rgb = make_rgb(w, h);
    uint8_t *webp = NULL;
    size_t size;
    img_decode_limits lim = img_default_limits();
    (void)state;

    size = WebPEncodeLosslessRGB(rgb, w, h, w * 3, &webp);
    assert_true(size > 0);
    assert_int_equal(img_detect_format(webp, size), IMG_FORMAT_WEBP);
    img_rgb8 *img = decode_expect(webp, size, NULL, FACENET_OK);
    assert_int_equal(img->width, w);
    assert_int_equal(img->height, h);
    for (int y = 0; y < h; y++)
        assert_memory_equal(px(img, 0, y), rgb + (size_t)y * w * 3, (size_t)w * 3);
    img_rgb8_free(img);
    /* Every truncation fails cleanly. */
    for (size_t n = 1; n < size; n++)
        decode_expect(webp, n, NULL, FACENET_ERR_FORMAT);
    lim.max_pixels = (uint64_t)w * h - 1;
    decode_expect(webp, size, &lim, FACENET_ERR_LIMIT);
    WebPFree(webp);

    /* Lossy: close, not exact. */
    size = WebPEncodeRGB(rgb, w, h, w * 3, 90, &webp);
    assert_true(size > 0);
    img = decode_expect(webp, size, NULL, FACENET_OK);
    assert_int_equal(img->width, w);
    img_rgb8_free(img);
    WebPFree(webp);
    free(rgb);
}

static void test_pnm(void **state)
{
    img_rgb8 *img;
    (void)state;

    {
        static const uint8_t ppm[] = "P6\n# a comment\n3 2 # trailing\n255\n"
                                     "\x01\x02\x03\x04\x05\x06\x07\x08\x09"
                                     "\x0a\x0b\x0c\x0d\x0e\x0f\x10\x11\x12";
        size_t size = sizeof ppm - 1;
        img = decode_expect(ppm, size, NULL, FACENET_OK);
        assert_int_equal(img->width, 3);
        assert_int_equal(img->height, 2);
        assert_memory_equal(px(img, 0, 0), "\x01\x02\x03", 3);
        assert_memory_equal(px(img, 2, 1), "\x10\x11\x12", 3);
        img_rgb8_free(img);
        /* Every truncation is a format error. */
        for (size_t n = 1; n < size; n++)
            decode_expect(ppm, n, NULL, FACENET_ERR_FORMAT);
    }
    {
        /* 16-bit PGM: big-endian, scaled with rounding. */
        static const uint8_t pgm[] = "P5 2 2 65535\n"
                                     "\x00\x00\xff\xff\x64\x64\x30\x39";
        img = decode_expect(pgm, sizeof pgm - 1, NULL, FACENET_OK);
        assert_memory_equal(px(img, 0, 0), "\x00\x00\x00", 3);
        assert_memory_equal(px(img, 1, 0), "\xff\xff\xff", 3);
        assert_memory_equal(px(img, 0, 1), "\x64\x64\x64", 3);
        assert_int_equal(px(img, 1, 1)[0], 48); /* 12345 / 257 = 48.03 */
        img_rgb8_free(img);
    }
    {
        /* maxval 1000: 500 -> 127.5 -> 128. */
        static const uint8_t pgm[] = "P5\n1 1\n1000\n\x01\xf4";
        img = decode_expect(pgm, sizeof pgm - 1, NULL, FACENET_OK);
        assert_int_equal(px(img, 0, 0)[0], 128);
        img_rgb8_free(img);
    }
    {
        static const uint8_t pgm8[] = "P5\n2 1\n255\n\x07\xfe";
        img = decode_expect(pgm8, sizeof pgm8 - 1, NULL, FACENET_OK);
        assert_memory_equal(px(img, 1, 0), "\xfe\xfe\xfe", 3);
        img_rgb8_free(img);
    }
    {
        static const uint8_t over[] = "P5\n1 1\n100\n\x65";    /* 101 > 100 */
        static const uint8_t ascii[] = "P3\n1 1\n255\n1 2 3\n";
        static const uint8_t maxv0[] = "P5\n1 1\n0\n\x00";
        static const uint8_t nospace[] = "P6\n1 1\n255\x01\x02\x03";
        static const uint8_t neg[] = "P6\n-1 1\n255\n\x01\x02\x03";
        static const uint8_t zero[] = "P6\n0 1\n255\n";
        static const uint8_t huge[] = "P6\n99999999999 1\n255\n";
        static const uint8_t big[] = "P6\n65535 65535\n255\n";
        decode_expect(over, sizeof over - 1, NULL, FACENET_ERR_FORMAT);
        decode_expect(ascii, sizeof ascii - 1, NULL, FACENET_ERR_UNSUPPORTED);
        decode_expect(maxv0, sizeof maxv0 - 1, NULL, FACENET_ERR_FORMAT);
        decode_expect(nospace, sizeof nospace - 1, NULL, FACENET_ERR_FORMAT);
        decode_expect(neg, sizeof neg - 1, NULL, FACENET_ERR_FORMAT);
        decode_expect(zero, sizeof zero - 1, NULL, FACENET_ERR_FORMAT);
        decode_expect(huge, sizeof huge - 1, NULL, FACENET_ERR_FORMAT);
        decode_expect(big, sizeof big - 1, NULL, FACENET_ERR_LIMIT);
    }
}

/* ------------------------------------------------------------------------ */
/* Hostile and broken inputs                                                */
/* ------------------------------------------------------------------------ */

static void test_empty_and_garbage(void **state)
{
    uint8_t buf[512];
    uint32_t seed = 12345;
    img_rgb8 *img = (img_rgb8 *)1;
    facenet_error err;
    (void)state;

    assert_int_equal(img_decode_memory(NULL, 0, NULL, &img, &err),
                     FACENET_ERR_FORMAT);
    assert_null(img);
    assert_non_null(strstr(err.message, "empty"));
    decode_expect(buf, 0, NULL, FACENET_ERR_FORMAT);

    /* Random bytes with no known magic: unsupported. */
    for (int round = 0; round < 50; round++) {
        for (size_t i = 0; i < sizeof buf; i++)
            buf[i] = (uint8_t)rng_next(&seed);
        buf[0] = 'x';
        decode_expect(buf, sizeof buf, NULL, FACENET_ERR_UNSUPPORTED);
    }
    /* Random bytes behind each magic: an error, never a crash. */
    static const char *const magics[] = {"\xFF\xD8\xFF", "\x89PNG\r\n\x1A\n",
                                         "RIFF\x40\x00\x00\x00WEBPVP8 ",
                                         "P6\n", "P5 4 4 255\n"};
    for (int m = 0; m < 5; m++) {
        size_t ml = strlen(magics[m]);
        for (int round = 0; round < 200; round++) {
            size_t n = ml + rng_next(&seed) % (sizeof buf - ml);
            for (size_t i = 0; i < n; i++)
                buf[i] = (uint8_t)rng_next(&seed);
            memcpy(buf, magics[m], ml);
            facenet_status st = img_decode_memory(buf, n, NULL, &img, &err);
            if (st == FACENET_OK) {
                /* Only a PGM header can make random bytes a valid image. */
                assert_int_equal(m, 4);
                img_rgb8_free(img);
            } else {
                assert_null(img);
                assert_true(st == FACENET_ERR_FORMAT ||
                            st == FACENET_ERR_UNSUPPORTED ||
                            st == FACENET_ERR_LIMIT);
            }
        }
    }
}

static void test_every_truncation_fails(void **state)
{
    int w = 20, h = 13;
    uint8_t *rgb = make_rgb(w, h);
    jpeg_opts o = {90, 3, 0, NULL, 0, NULL, 0};
    size_t jsize, psize;
    uint8_t *jpg = make_jpeg(rgb, w, h, &o, &jsize);
    uint8_t *png = make_png_rgb(rgb, w, h, &psize);
    (void)state;

    img_rgb8_free(decode_expect(jpg, jsize, NULL, FACENET_OK));
    for (size_t n = 1; n < jsize; n++)
        decode_expect(jpg, n, NULL, FACENET_ERR_FORMAT);
    img_rgb8_free(decode_expect(png, psize, NULL, FACENET_OK));
    for (size_t n = 1; n < psize; n++)
        decode_expect(png, n, NULL, FACENET_ERR_FORMAT);
    free(jpg);
    free(png);

    /* A progressive JPEG too (the whole file is read before any row). */
    {
        struct jpeg_compress_struct c;
        struct jpeg_error_mgr jerr;
        unsigned char *buf = NULL;
        unsigned long len = 0;
        c.err = jpeg_std_error(&jerr);
        jpeg_create_compress(&c);
        jpeg_mem_dest(&c, &buf, &len);
        c.image_width = (JDIMENSION)w;
        c.image_height = (JDIMENSION)h;
        c.input_components = 3;
        c.in_color_space = JCS_RGB;
        jpeg_set_defaults(&c);
        jpeg_simple_progression(&c);
        jpeg_start_compress(&c, TRUE);
        while (c.next_scanline < c.image_height) {
            JSAMPROW row = rgb + (size_t)c.next_scanline * w * 3;
            jpeg_write_scanlines(&c, &row, 1);
        }
        jpeg_finish_compress(&c);
        jpeg_destroy_compress(&c);
        img_rgb8_free(decode_expect(buf, len, NULL, FACENET_OK));
        for (size_t n = 1; n < len; n++)
            decode_expect(buf, n, NULL, FACENET_ERR_FORMAT);
        free(buf);
    }
    free(rgb);
}

/* A PNG of a few dozen bytes whose IHDR declares w x h. */
static size_t make_png_header_only(uint8_t *buf, uint32_t w, uint32_t h)
{
    static const uint8_t sig[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1A, '\n'};
    uint8_t *p = buf;
    memcpy(p, sig, 8);
    p += 8;
    put_be32(p, 13);
    memcpy(p + 4, "IHDR", 4);
    put_be32(p + 8, w);
    put_be32(p + 12, h);
    p[16] = 8; /* bit depth */
    p[17] = 2; /* RGB */
    p[18] = p[19] = p[20] = 0;
    put_be32(p + 21, crc32_of(p + 4, 17));
    p += 25;
    /* An IDAT of a few bytes and IEND, as a real bomb would have. */
    static const uint8_t idat[] = {0x78, 0x9c, 0x03, 0x00, 0x00, 0x00, 0x00, 0x01};
    put_be32(p, sizeof idat);
    memcpy(p + 4, "IDAT", 4);
    memcpy(p + 8, idat, sizeof idat);
    put_be32(p + 8 + sizeof idat, crc32_of(p + 4, 4 + sizeof idat));
    p += 12 + sizeof idat;
    put_be32(p, 0);
    memcpy(p + 4, "IEND", 4);
    put_be32(p + 8, crc32_of(p + 4, 4));
    p += 12;
    return (size_t)(p - buf);
}

static void test_decompression_bombs(void **state)
{
    uint8_t buf[128];
    size_t n;
    img_rgb8 *img;
    facenet_error err;
    clock_t t0 = clock();
    (void)state;

    /* 100000 x 100000: over the side limit. */
    n = make_png_header_only(buf, 100000, 100000);
    assert_int_equal(img_decode_memory(buf, n, NULL, &img, &err),
                     FACENET_ERR_LIMIT);
    assert_non_null(strstr(err.message, "100000x100000"));
    /* 20000 x 20000: sides fine, pixels over 40 MP. */
    n = make_png_header_only(buf, 20000, 20000);
    decode_expect(buf, n, NULL, FACENET_ERR_LIMIT);
    /* PNG forbids sides over 2^31-1: still a limit (ours comes first). */
    n = make_png_header_only(buf, 0x80000000u, 1);
    decode_expect(buf, n, NULL, FACENET_ERR_LIMIT);
    /* A zero side is malformed. */
    n = make_png_header_only(buf, 0, 5);
    decode_expect(buf, n, NULL, FACENET_ERR_FORMAT);
    /* Within limits, the tiny IDAT does not hold the declared rows. */
    n = make_png_header_only(buf, 64, 64);
    decode_expect(buf, n, NULL, FACENET_ERR_FORMAT);

    /* A JPEG whose SOF declares 65000 x 65000. */
    {
        uint8_t rgb[8 * 8 * 3] = {0};
        jpeg_opts o = {90, 3, 0, NULL, 0, NULL, 0};
        size_t size;
        uint8_t *jpg = make_jpeg(rgb, 8, 8, &o, &size);
        size_t sof = 0;
        for (size_t i = 2; i + 9 < size; i++)
            if (jpg[i] == 0xFF && jpg[i + 1] == 0xC0) {
                sof = i;
                break;
            }
        assert_true(sof > 0);
        jpg[sof + 5] = 65000 >> 8; /* height */
        jpg[sof + 6] = 65000 & 0xFF;
        jpg[sof + 7] = 65000 >> 8; /* width */
        jpg[sof + 8] = 65000 & 0xFF;
        assert_int_equal(img_decode_memory(jpg, size, NULL, &img, &err),
                         FACENET_ERR_LIMIT);
        assert_non_null(strstr(err.message, "65000x65000"));
        free(jpg);
    }
    /* All of the above must be refused without decoding anything. */
    assert_true((double)(clock() - t0) / CLOCKS_PER_SEC < 2.0);
}

static void test_corrupt_bytes(void **state)
{
    int w = 16, h = 16;
    uint8_t *rgb = make_rgb(w, h);
    jpeg_opts o = {90, 3, 0, NULL, 0, NULL, 0};
    size_t jsize, psize;
    uint8_t *jpg = make_jpeg(rgb, w, h, &o, &jsize);
    uint8_t *png = make_png_rgb(rgb, w, h, &psize);
    size_t sof = 0;
    (void)state;

    for (size_t i = 2; i + 9 < jsize; i++)
        if (jpg[i] == 0xFF && jpg[i + 1] == 0xC0) {
            sof = i;
            break;
        }
    assert_true(sof > 0);
    jpg[sof + 4] = 7; /* sample precision 7 bits: invalid */
    decode_expect(jpg, jsize, NULL, FACENET_ERR_FORMAT);
    jpg[sof + 4] = 12; /* 12 bits: valid JPEG, not for this decoder */
    decode_expect(jpg, jsize, NULL, FACENET_ERR_UNSUPPORTED);
    jpg[sof + 1] = 0xC3; /* lossless frame */
    jpg[sof + 4] = 8;
    decode_expect(jpg, jsize, NULL, FACENET_ERR_UNSUPPORTED);
    jpg[sof + 1] = 0xC0;
    jpg[sof + 4] = 8;
    jpg[sof + 9] = 9; /* 9 components */
    decode_expect(jpg, jsize, NULL, FACENET_ERR_FORMAT);
    jpg[sof + 9] = 3;
    img_rgb8_free(decode_expect(jpg, jsize, NULL, FACENET_OK));
    /* An EOI marker in the middle of the entropy-coded data. */
    jpg[jsize - 40] = 0xFF;
    jpg[jsize - 39] = 0xD9;
    {
        img_rgb8 *img;
        facenet_status st = img_decode_memory(jpg, jsize, NULL, &img, NULL);
        assert_int_equal(st, FACENET_ERR_FORMAT);
    }

    /* PNG: a flipped bit in IHDR breaks its CRC; in IDAT, the zlib data. */
    png[24] ^= 0x10; /* bit depth 8 -> 24 */
    decode_expect(png, psize, NULL, FACENET_ERR_FORMAT);
    png[24] ^= 0x10;
    png[45] ^= 0x55;
    decode_expect(png, psize, NULL, FACENET_ERR_FORMAT);
    free(jpg);
    free(png);
    free(rgb);
}

static void test_limits_and_allow_list(void **state)
{
    int w = 16, h = 16;
    uint8_t *rgb = make_rgb(w, h);
    jpeg_opts o = {90, 3, 0, NULL, 0, NULL, 0};
    size_t jsize, psize;
    uint8_t *jpg = make_jpeg(rgb, w, h, &o, &jsize);
    uint8_t *png = make_png_rgb(rgb, w, h, &psize);
    img_decode_limits lim = img_default_limits();
    img_rgb8 *img;
    facenet_error err;
    char path[4096];
    (void)state;

    lim.max_bytes = jsize - 1;
    decode_expect(jpg, jsize, &lim, FACENET_ERR_LIMIT);
    lim.max_bytes = jsize;
    img_rgb8_free(decode_expect(jpg, jsize, &lim, FACENET_OK));

    lim = img_default_limits();
    lim.max_pixels = 255;
    decode_expect(jpg, jsize, &lim, FACENET_ERR_LIMIT);
    decode_expect(png, psize, &lim, FACENET_ERR_LIMIT);
    lim.max_pixels = 256;
    img_rgb8_free(decode_expect(jpg, jsize, &lim, FACENET_OK));
    img_rgb8_free(decode_expect(png, psize, &lim, FACENET_OK));

    lim = img_default_limits();
    lim.formats = IMG_FORMAT_JPEG;
    assert_int_equal(img_decode_memory(png, psize, &lim, &img, &err),
                     FACENET_ERR_UNSUPPORTED);
    assert_non_null(strstr(err.message, "PNG"));
    img_rgb8_free(decode_expect(jpg, jsize, &lim, FACENET_OK));

    /* A PNG named .jpg decodes by its content; the file size limit holds. */
    (void)snprintf(path, sizeof path, "%s/facenet_test_%ld_png.jpg", tmp_dir(),
             (long)getpid());
    write_file(path, png, psize);
    assert_int_equal(img_decode_file(path, NULL, &img, &err), FACENET_OK);
    assert_int_equal(img->width, w);
    assert_memory_equal(px(img, 0, 0), rgb, (size_t)w * 3);
    img_rgb8_free(img);
    lim = img_default_limits();
    lim.max_bytes = psize - 1;
    assert_int_equal(img_decode_file(path, &lim, &img, &err), FACENET_ERR_LIMIT);
    assert_null(img);
    /* Errors from the decoder name the file. */
    write_file(path, png, psize / 2);
    assert_int_equal(img_decode_file(path, NULL, &img, &err), FACENET_ERR_FORMAT);
    assert_non_null(strstr(err.message, path));
    unlink(path);
    assert_int_equal(img_decode_file(path, NULL, &img, &err),
                     FACENET_ERR_NOT_FOUND);
    free(jpg);
    free(png);
    free(rgb);
}

/* A progressive script with `n` scans of a 1-component image: DC, then
 * single-coefficient AC bands, optionally with refinement passes. */
static int progressive_script(jpeg_scan_info *s, int refine)
{
    int n = 0;
    s[n++] = (jpeg_scan_info){1, {0}, 0, 0, 0, refine ? 1 : 0};
    for (int k = 1; k <= 63; k++)
        s[n++] = (jpeg_scan_info){1, {0}, k, k, 0, refine ? 1 : 0};
    if (refine) {
        s[n++] = (jpeg_scan_info){1, {0}, 0, 0, 1, 0};
        for (int k = 1; k <= 63; k++)
            s[n++] = (jpeg_scan_info){1, {0}, k, k, 1, 0};
    }
    return n;
}

static void test_jpeg_scan_limit(void **state)
{
    uint8_t grey[16 * 16];
    jpeg_scan_info scans[128];
    size_t size;
    (void)state;

    for (int i = 0; i < 256; i++)
        grey[i] = (uint8_t)(i * 7);
    jpeg_opts o = {90, 1, 0, NULL, 0, scans, progressive_script(scans, 0)};
    uint8_t *jpg = make_jpeg(grey, 16, 16, &o, &size);
    img_rgb8_free(decode_expect(jpg, size, NULL, FACENET_OK)); /* 64 scans */
    free(jpg);
    o.num_scans = progressive_script(scans, 1);
    assert_int_equal(o.num_scans, 128);
    jpg = make_jpeg(grey, 16, 16, &o, &size);
    decode_expect(jpg, size, NULL, FACENET_ERR_LIMIT);
    free(jpg);
}

/* ------------------------------------------------------------------------ */
/* Exif orientation                                                         */
/* ------------------------------------------------------------------------ */

static void put16(uint8_t *p, unsigned v, int be)
{
    p[be ? 0 : 1] = (uint8_t)(v >> 8);
    p[be ? 1 : 0] = (uint8_t)v;
}

static void put32(uint8_t *p, uint32_t v, int be)
{
    for (int i = 0; i < 4; i++)
        p[be ? i : 3 - i] = (uint8_t)(v >> (24 - 8 * i));
}

/* An APP1 payload: "Exif\0\0", TIFF header, IFD0 with a Make tag and the
 * Orientation tag. Returns its length. */
static size_t make_exif(uint8_t *buf, int be, int orientation)
{
    uint8_t *t = buf + 6;
    static const uint8_t exif_id[6] = {'E', 'x', 'i', 'f', 0, 0};
    memcpy(buf, exif_id, sizeof exif_id);
    memcpy(t, be ? "MM" : "II", 2);
    put16(t + 2, 42, be);
    put32(t + 4, 8, be);
    put16(t + 8, 2, be); /* two entries */
    put16(t + 10, 0x010F, be);
    put16(t + 12, 2, be); /* ASCII */
    put32(t + 14, 4, be);
    memcpy(t + 18, "abcd", 4);
    put16(t + 22, 0x0112, be);
    put16(t + 24, 3, be); /* SHORT */
    put32(t + 26, 1, be);
    put16(t + 30, (unsigned)orientation, be);
    t[32] = t[33] = 0;
    put32(t + 34, 0, be); /* no next IFD */
    return 6 + 38;
}

static void test_exif_parser(void **state)
{
    uint8_t buf[64];
    (void)state;

    for (int be = 0; be < 2; be++)
        for (int o = 1; o <= 8; o++) {
            size_t n = make_exif(buf, be, o);
            assert_int_equal(img_exif_orientation(buf, n), o);
            /* Any truncation: no read past the end, no made-up value. */
            for (size_t k = 0; k < n; k++) {
                uint8_t *copy = malloc(k ? k : 1);
                memcpy(copy, buf, k);
                int got = img_exif_orientation(copy, k);
                assert_true(got == 0 || got == o);
                free(copy);
            }
        }
    size_t n = make_exif(buf, 1, 9);
    assert_int_equal(img_exif_orientation(buf, n), 0);
    n = make_exif(buf, 0, 6);
    put32(buf + 6 + 4, 0xFFFFFFF0u, 0); /* IFD offset far away */
    assert_int_equal(img_exif_orientation(buf, n), 0);
    n = make_exif(buf, 0, 6);
    /* An entry count past the end: the entries that are there are read,
     * the rest are not. */
    put16(buf + 6 + 8, 0xFFFF, 0);
    assert_int_equal(img_exif_orientation(buf, n), 6);
    put16(buf + 6 + 22, 0x0113, 0); /* no orientation among them */
    assert_int_equal(img_exif_orientation(buf, n), 0);
    n = make_exif(buf, 1, 6);
    put16(buf + 6 + 24, 4, 1); /* LONG, not SHORT */
    assert_int_equal(img_exif_orientation(buf, n), 0);
    assert_int_equal(img_exif_orientation(NULL, 0), 0);
}

/* Stored 3 x 2 blocks of 8x8:  A B C / D E F. For each orientation, the
 * upright block grid (w x h blocks, row-major). */
static const struct {
    int w, h;
    const char *grid;
} upright[9] = {
    {0, 0, ""},      {3, 2, "ABCDEF"}, {3, 2, "CBAFED"},
    {3, 2, "FEDCBA"}, {3, 2, "DEFABC"}, {2, 3, "ADBECF"},
    {2, 3, "DAEBFC"}, {2, 3, "FCEBDA"}, {2, 3, "CFBEAD"},
};

static const uint8_t block_colour[6][3] = {
    {200, 40, 40}, {40, 200, 40}, {40, 40, 200},
    {200, 200, 40}, {200, 40, 200}, {40, 200, 200},
};

static void test_exif_orientation_applied(void **state)
{
    uint8_t rgb[24 * 16 * 3];
    uint8_t exif[64];
    img_decode_limits no_orient = img_default_limits();
    (void)state;

    no_orient.apply_orientation = 0;
    for (int y = 0; y < 16; y++)
        for (int x = 0; x < 24; x++)
            memcpy(rgb + (y * 24 + x) * 3, block_colour[(y / 8) * 3 + x / 8], 3);
    for (int be = 0; be < 2; be++) {
        for (int o = 1; o <= 8; o++) {
            size_t elen = make_exif(exif, be, o), size;
            jpeg_opts jo = {95, 3, 1, exif, elen, NULL, 0};
            uint8_t *jpg = make_jpeg(rgb, 24, 16, &jo, &size);
            img_rgb8 *img = decode_expect(jpg, size, NULL, FACENET_OK);

            assert_int_equal(img->width, upright[o].w * 8);
            assert_int_equal(img->height, upright[o].h * 8);
            for (int by = 0; by < upright[o].h; by++)
                for (int bx = 0; bx < upright[o].w; bx++) {
                    int label = upright[o].grid[by * upright[o].w + bx] - 'A';
                    const uint8_t *p = px(img, bx * 8 + 4, by * 8 + 4);
                    for (int c = 0; c < 3; c++)
                        assert_true(abs(p[c] - block_colour[label][c]) <= 10);
                }
            img_rgb8_free(img);
            /* With orientation off, the stored layout comes back. */
            img = decode_expect(jpg, size, &no_orient, FACENET_OK);
            assert_int_equal(img->width, 24);
            img_rgb8_free(img);
            free(jpg);
        }
    }
    /* A malformed Exif block is ignored, the pixels still decode. */
    {
        size_t elen = make_exif(exif, 1, 6), size;
        put16(exif + 6 + 2, 43, 1); /* not TIFF */
        jpeg_opts jo = {95, 3, 1, exif, elen, NULL, 0};
        uint8_t *jpg = make_jpeg(rgb, 24, 16, &jo, &size);
        img_rgb8 *img = decode_expect(jpg, size, NULL, FACENET_OK);
        assert_int_equal(img->width, 24);
        img_rgb8_free(img);
        free(jpg);
    }
}

/* ------------------------------------------------------------------------ */
/* Resize, crop, warp, mirror                                               */
/* ------------------------------------------------------------------------ */

static img_f32 *pattern_f32(int w, int h, int channels)
{
    img_f32 *img;
    assert_int_equal(img_f32_new(w, h, channels, &img, NULL), FACENET_OK);
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++)
            for (int c = 0; c < channels; c++)
                img->data[((size_t)y * w + x) * channels + c] = tu_pattern(x, y, c);
    return img;
}

static void test_resize_properties(void **state)
{
    img_f32 *src = pattern_f32(40, 30, 3), *one, *out;
    (void)state;

    /* Same size is the identity. */
    assert_int_equal(img_resize(src, 40, 30, &out, NULL), FACENET_OK);
    assert_true(tu_max_abs_diff(out->data, src->data, 40 * 30 * 3) == 0.0f);
    img_f32_free(out);

    /* Integer factor 2 down: the mean of each 2x2 block. */
    assert_int_equal(img_resize(src, 20, 15, &out, NULL), FACENET_OK);
    for (int y = 0; y < 15; y++)
        for (int x = 0; x < 20; x++)
            for (int c = 0; c < 3; c++) {
                float m = (tu_pattern(2 * x, 2 * y, c) + tu_pattern(2 * x + 1, 2 * y, c) +
                           tu_pattern(2 * x, 2 * y + 1, c) +
                           tu_pattern(2 * x + 1, 2 * y + 1, c)) / 4;
                assert_true(fabsf(out->data[(y * 20 + x) * 3 + c] - m) < 1e-4f);
            }
    img_f32_free(out);

    /* Channels are independent: channel 1 of a 3-channel resize equals a
     * 1-channel resize of the same plane, for both modes on one axis each. */
    one = pattern_f32(40, 30, 1);
    assert_int_equal(img_resize(src, 17, 45, &out, NULL), FACENET_OK);
    img_f32 *ref;
    assert_int_equal(img_resize(one, 17, 45, &ref, NULL), FACENET_OK);
    for (int i = 0; i < 17 * 45; i++)
        assert_true(fabsf(out->data[i * 3] - ref->data[i]) < 1e-4f);
    img_f32_free(ref);
    img_f32_free(out);

    /* Area averaging keeps the mean of a constant image exactly. */
    for (int i = 0; i < 40 * 30; i++)
        one->data[i] = 77.0f;
    assert_int_equal(img_resize(one, 13, 7, &out, NULL), FACENET_OK);
    for (int i = 0; i < 13 * 7; i++)
        assert_true(fabsf(out->data[i] - 77.0f) < 1e-3f);
    img_f32_free(out);
    assert_int_equal(img_resize(one, 0, 7, &out, NULL), FACENET_ERR_INVALID_ARGUMENT);
    assert_null(out);
    img_f32_free(one);
    img_f32_free(src);
}

static void test_crop_resize_matches_materialised_crop(void **state)
{
    img_f32 *src = pattern_f32(31, 23, 3);
    static const int boxes[][4] = {
        {1, 1, 31, 23},   /* the whole image */
        {-5, -3, 20, 18}, /* off the top-left */
        {10, 8, 45, 40},  /* off the bottom-right */
        {-10, -10, 50, 40}, /* larger than the image */
        {7, 9, 7, 9},     /* one pixel */
        {40, 30, 60, 50}, /* entirely outside */
    };
    static const int sizes[] = {24, 48, 12, 5};
    (void)state;

    for (size_t b = 0; b < sizeof boxes / sizeof boxes[0]; b++) {
        int x1 = boxes[b][0], y1 = boxes[b][1], x2 = boxes[b][2], y2 = boxes[b][3];
        int cw = x2 - x1 + 1, ch = y2 - y1 + 1;
        img_f32 *crop;
        assert_int_equal(img_f32_new(cw, ch, 3, &crop, NULL), FACENET_OK);
        for (int y = 0; y < ch; y++)
            for (int x = 0; x < cw; x++) {
                int sx = x + x1 - 1, sy = y + y1 - 1;
                if (sx < 0 || sy < 0 || sx >= 31 || sy >= 23)
                    continue;
                memcpy(crop->data + ((size_t)y * cw + x) * 3,
                       src->data + ((size_t)sy * 31 + sx) * 3, 3 * sizeof(float));
            }
        for (size_t s = 0; s < sizeof sizes / sizeof sizes[0]; s++) {
            int n = sizes[s];
            float *a = malloc(sizeof(float) * n * n * 3);
            float *want = malloc(sizeof(float) * n * n * 3);
            assert_int_equal(img_crop_resize_into(src, x1, y1, x2, y2, n, n, a, NULL),
                             FACENET_OK);
            assert_int_equal(img_resize_into(crop, n, n, want, NULL), FACENET_OK);
            float d = tu_max_abs_diff(a, want, (size_t)n * n * 3);
            if (d > 1e-3f)
                fail_msg("box %zu size %d: max diff %g", b, n, (double)d);
            free(a);
            free(want);
        }
        img_f32_free(crop);
    }
    /* A box billions of pixels wide costs no memory and reads as mostly 0. */
    {
        float out[24 * 24 * 3];
        assert_int_equal(img_crop_resize_into(src, -2000000000, -2000000000,
                                              2000000000, 2000000000, 24, 24,
                                              out, NULL),
                         FACENET_OK);
        assert_true(tu_max_abs(out, 24 * 24 * 3) < 1e-3f);
        assert_int_equal(img_crop_resize_into(src, 5, 5, 4, 9, 24, 24, out, NULL),
                         FACENET_ERR_INVALID_ARGUMENT);
    }
    img_f32_free(src);
}

/* Pseudo-random pixels 0..255 with fractions, so that rounding differences
 * between two implementations would show. */
static img_f32 *noise_f32(int w, int h, int channels, uint32_t seed)
{
    img_f32 *img = NULL;
    assert_int_equal(img_f32_new(w, h, channels, &img, NULL), FACENET_OK);
    for (size_t i = 0; i < (size_t)w * h * channels; i++) {
        seed = seed * 1664525u + 1013904223u;
        img->data[i] = (float)(seed >> 8) / (float)(1u << 24) * 255.0f;
    }
    return img;
}

static int bits_equal(const float *a, const float *b, size_t n)
{
    return memcmp(a, b, n * sizeof *a) == 0;
}

/* img_crop_resize_rgb8_t reads the bytes in place and writes a band of
 * output columns transposed and normalised, (v - mean) * scale of
 * img_crop_resize_into on the float copy: bit for bit when an axis grows
 * (the same rows-first arithmetic), and within 1e-6 (normalised; 1.3e-4 in
 * pixel values) when both shrink, where the 8-bit path sums the rows first
 * in integers (test_resize_area_is_closer_to_exact shows it is the more
 * accurate of the two). Both implementations must agree bit for bit, for
 * random sizes, boxes over every edge, bands and row strides wider than
 * the pixels. Each image is its own allocation of exactly height * stride
 * bytes, so the sanitizer sees any over-read. */
static void test_resize_rgb8_transposed_matches_float(void **state)
{
    const img_norm norm = {127.5f, 0.0078125f};
    uint32_t seed = 777;
    (void)state;
    for (int t = 0; t < 400; t++) {
        int v[11];
        for (int k = 0; k < 11; k++) {
            seed = seed * 1664525u + 1013904223u;
            v[k] = (int)(seed >> 16);
        }
        const int sw = 1 + v[0] % 70, sh = 1 + v[1] % 70, ow = 1 + v[2] % 60, oh = 1 + v[3] % 60;
        const int whole = t % 4 == 0;
        const int x1 = whole ? 1 : v[4] % 90 - 20, y1 = whole ? 1 : v[5] % 90 - 20;
        const int x2 = whole ? sw : x1 + v[6] % 80, y2 = whole ? sh : y1 + v[7] % 80;
        const int col0 = v[8] % ow, col1 = col0 + 1 + v[9] % (ow - col0);
        const size_t stride = (size_t)sw * 3 + (size_t)(v[10] % 3) * 5;
        const int box[4] = {x1, y1, x2, y2};
        img_rgb8 img = {sw, sh, stride, malloc(stride * sh)};
        img_f32 *f = NULL;
        const size_t n = (size_t)ow * oh * 3, nb = (size_t)(col1 - col0) * oh * 3;
        float *want = malloc(n * sizeof *want), *got = malloc(2 * nb * sizeof *got);
        assert_non_null(img.pixels);
        assert_non_null(want);
        assert_non_null(got);
        for (size_t i = 0; i < stride * sh; i++) {
            seed = seed * 1664525u + 1013904223u;
            img.pixels[i] = (uint8_t)(seed >> 24);
        }
        assert_int_equal(img_rgb8_to_f32(&img, &f, NULL), FACENET_OK);
        assert_int_equal(img_crop_resize_into_impl(f, x1, y1, x2, y2, ow, oh, want,
                                                   IMG_RESIZE_SCALAR, NULL),
                         FACENET_OK);
        const int shrink = ow <= x2 - x1 + 1 && oh <= y2 - y1 + 1;
        for (int impl = 0; impl < 2; impl++) {
            memset(got + impl * nb, 0xff, nb * sizeof *got);
            assert_int_equal(img_crop_resize_rgb8_t_impl(&img, box, ow, oh, col0, col1, &norm,
                                                         got + impl * nb,
                                                         impl ? IMG_RESIZE_SCALAR
                                                              : IMG_RESIZE_BEST,
                                                         NULL),
                             FACENET_OK);
            for (int x = col0; x < col1; x++)
                for (int y = 0; y < oh; y++)
                    for (int c = 0; c < 3; c++) {
                        const float e = (want[((size_t)y * ow + x) * 3 + c] - norm.mean) *
                                        norm.scale;
                        const float g = got[impl * nb + ((size_t)(x - col0) * oh + y) * 3 + c];
                        if (shrink ? !(fabsf(g - e) <= 1e-6f) : memcmp(&e, &g, sizeof e) != 0)
                            fail_msg("case %d (%s): %dx%d box [%d %d %d %d] -> %dx%d cols "
                                     "[%d, %d): (%d, %d, %d) is %.9g, want %.9g",
                                     t, impl ? "scalar" : "best", sw, sh, x1, y1, x2, y2, ow,
                                     oh, col0, col1, x, y, c, (double)g, (double)e);
                    }
        }
        if (!bits_equal(got, got + nb, nb))
            fail_msg("case %d: %dx%d box [%d %d %d %d] -> %dx%d: AVX2 and scalar differ", t, sw,
                     sh, x1, y1, x2, y2, ow, oh);
        free(want);
        free(got);
        img_f32_free(f);
        free(img.pixels);
    }
}

/* The 8-bit path's AVX2 loops against its scalar loops, bit for bit: the
 * area shrink (integer row sums 16, 8 and 1 bytes at a time, in u16 lanes
 * flushed to u32 every 257 rows; horizontal taps over strips of 8, 2 and 1
 * rows with the transposed 16-byte stores) and the rows-first path of a
 * growing axis (row pairs packed 8 and 4 pixels at a time, then pixel by
 * pixel near a row's end; the normalised transposed vertical pass), on the
 * shapes detection gives them: every MTCNN pyramid level of a 250x250
 * (LFW), a 640x480, a 1920x1080 and odd-sized images, cut into P-Net's
 * bands; crops of R-Net and O-Net sizes over every edge and past them;
 * sizes one off the output (a scale just above and below 1), images of one
 * row or column, and the special boxes below. Each image is exactly
 * 3 * width * height bytes, so the sanitizer sees any read past the last
 * pixel. */
static void test_resize_rgb8_simd_matches_scalar_on_detector_shapes(void **state)
{
    static const int sizes[][2] = {{250, 250}, {640, 480}, {1, 1},     {1, 37},
                                   {37, 1},    {29, 3},    {9, 70},    {33, 33},
                                   {641, 479}, {333, 251}, {1920, 1080}};
    const img_norm norm = {127.5f, 0.0078125f};
    uint32_t seed = 4242;
    (void)state;
    if (!img_resize_have_avx2())
        skip();
    for (size_t s = 0; s < sizeof sizes / sizeof sizes[0]; s++) {
        const int sw = sizes[s][0], sh = sizes[s][1];
        img_rgb8 img = {sw, sh, (size_t)sw * 3, malloc((size_t)sw * sh * 3)};
        /* Then the edge cases: out size = box size; an integer factor (every
         * tap fully covered); a few outputs from the whole image (hundreds
         * of rows in one integer sum when the image is tall); a box
         * billions of pixels wide (every image row in one output row); one
         * pixel; a box entirely outside. {box, out w, out h}. */
        const int special[][6] = {
            {1, 1, sw, sh, sw, sh},
            {1, 1, sw, sh, sw / 2 > 0 ? sw / 2 : 1, sh / 2 > 0 ? sh / 2 : 1},
            {1, 1, sw, sh, 3 < sw ? 3 : sw, 2 < sh ? 2 : sh},
            {-2000000000, -2000000000, 2000000000, 2000000000, 24, 24},
            {-2000000000, 1, 2000000000, sh, 48, 1},
            {3, 3, 3, 3, 1, 1},
            {sw + 5, -40, sw + 60, 15, 24, 24},
        };
        const int n_special = (int)(sizeof special / sizeof special[0]);
        assert_non_null(img.pixels);
        for (size_t i = 0; i < (size_t)sw * sh * 3; i++) {
            seed = seed * 1664525u + 1013904223u;
            img.pixels[i] = (uint8_t)(seed >> 24);
        }
        /* Boxes: pyramid levels (whole image), then crops, then the
         * special cases. */
        for (int t = 0; t < 60 + n_special; t++) {
            int box[4], ow, oh, col0 = 0, col1;
            seed = seed * 1664525u + 1013904223u;
            if (t >= 60) {
                memcpy(box, special[t - 60], sizeof box);
                ow = special[t - 60][4], oh = special[t - 60][5], col1 = ow;
            } else if (t < 12) {
                const double scale = 0.6 * pow(0.709, t);
                box[0] = 1, box[1] = 1, box[2] = sw, box[3] = sh;
                ow = (int)ceil(sw * scale), oh = (int)ceil(sh * scale);
                if (ow < 1 || oh < 1)
                    continue;
                /* Two bands cut at an even column, as P-Net does. */
                col1 = ow;
                if (ow > 24 && t % 2 == 1) {
                    col0 = (ow / 2) & ~1;
                } else if (ow > 24) {
                    col1 = (ow / 2 & ~1) + 10;
                }
            } else {
                const int side = 1 + (int)((seed >> 8) % (unsigned)(sw + 20));
                const int x1 = (int)((seed >> 4) % (unsigned)(sw + 20)) - 10;
                const int y1 = (int)((seed >> 12) % (unsigned)(sh + 20)) - 10;
                ow = oh = t % 2 ? 24 : 48;
                /* Some crops one pixel off the output side. */
                const int len = t % 5 == 0 ? ow + (int)(seed >> 28) % 3 - 1 : side;
                box[0] = x1, box[1] = y1, box[2] = x1 + len - 1;
                box[3] = y1 + len - 1 + (int)(seed >> 29);
                col1 = ow;
            }
            const size_t n = (size_t)(col1 - col0) * oh * 3;
            float *a = malloc(n * sizeof *a), *b = malloc(n * sizeof *b);
            assert_non_null(a);
            assert_non_null(b);
            memset(a, 0xff, n * sizeof *a);
            memset(b, 0x7f, n * sizeof *b);
            assert_int_equal(img_crop_resize_rgb8_t_impl(&img, box, ow, oh, col0, col1, &norm, a,
                                                         IMG_RESIZE_BEST, NULL),
                             FACENET_OK);
            assert_int_equal(img_crop_resize_rgb8_t_impl(&img, box, ow, oh, col0, col1, &norm, b,
                                                         IMG_RESIZE_SCALAR, NULL),
                             FACENET_OK);
            if (memcmp(a, b, n * sizeof *a) != 0)
                fail_msg("%dx%d image, box [%d %d %d %d] -> %dx%d cols [%d, %d): AVX2 and "
                         "scalar differ",
                         sw, sh, box[0], box[1], box[2], box[3], ow, oh, col0, col1);
            free(a);
            free(b);
        }
        free(img.pixels);
    }
}

/* One output of an area shrink in double precision, straight from the
 * definition (golden README 4.2): output j of an axis covers region
 * [j * in / out, (j + 1) * in / out), each region pixel weighs its overlap
 * / (in / out), and pixels outside the image read 0. `w` gets a weight per
 * image index [0, src_len). */
static void area_weights_double(int64_t offset, int64_t in_len, int src_len, int out_len, int j,
                                double *w)
{
    const double scale = (double)in_len / out_len;
    const double lo = j * scale, hi = (j + 1) * scale;
    for (int s = 0; s < src_len; s++) {
        const double left = (double)(s - offset), right = left + 1.0;
        const double overlap = (hi < right ? hi : right) - (lo > left ? lo : left);
        w[s] = overlap > 0.0 ? overlap / scale : 0.0;
    }
}

/* The precision argument for the 8-bit path's area shrink (vertical sums
 * in exact integers, then three float terms): against a double-precision
 * area average on random images and boxes (crops over the edges, whole
 * images as pyramid levels), its largest and mean absolute errors must be
 * no larger than those of the float tap chain it replaced, which is still
 * what img_crop_resize_into computes on the float copy. */
static void test_resize_area_is_closer_to_exact(void **state)
{
    const img_norm raw = {0.0f, 1.0f}; /* (v - 0) * 1 = v exactly */
    double max_old = 0, max_new = 0, sum_old = 0, sum_new = 0;
    size_t count = 0;
    uint32_t seed = 99;
    (void)state;
    for (int t = 0; t < 80; t++) {
        int v[8];
        for (int k = 0; k < 8; k++) {
            seed = seed * 1664525u + 1013904223u;
            v[k] = (int)(seed >> 16);
        }
        const int sw = 40 + v[0] % 280, sh = 40 + v[1] % 200;
        int box[4], ow, oh;
        if (t % 4 == 0) { /* a pyramid level */
            const double scale = 0.6 * pow(0.709, v[2] % 6);
            box[0] = 1, box[1] = 1, box[2] = sw, box[3] = sh;
            ow = (int)ceil(sw * scale), oh = (int)ceil(sh * scale);
        } else { /* a crop, maybe over an edge, to 24 or 48 */
            const int side = 50 + v[3] % 150;
            ow = oh = t % 2 ? 24 : 48;
            box[0] = v[4] % sw - side / 4, box[1] = v[5] % sh - side / 4;
            box[2] = box[0] + side - 1, box[3] = box[1] + side - 1 + v[6] % 7;
        }
        img_rgb8 img = {sw, sh, (size_t)sw * 3, malloc((size_t)sw * sh * 3)};
        img_f32 *f = NULL;
        float *old = malloc(sizeof(float) * ow * oh * 3);
        float *got = malloc(sizeof(float) * ow * oh * 3);
        double *wx = malloc(sizeof(double) * sw), *wy = malloc(sizeof(double) * sh);
        assert_non_null(img.pixels);
        assert_non_null(old);
        assert_non_null(got);
        assert_non_null(wx);
        assert_non_null(wy);
        for (size_t i = 0; i < (size_t)sw * sh * 3; i++) {
            seed = seed * 1664525u + 1013904223u;
            img.pixels[i] = (uint8_t)(seed >> 24);
        }
        assert_int_equal(img_rgb8_to_f32(&img, &f, NULL), FACENET_OK);
        assert_int_equal(img_crop_resize_into_impl(f, box[0], box[1], box[2], box[3], ow, oh, old,
                                                   IMG_RESIZE_SCALAR, NULL),
                         FACENET_OK);
        assert_int_equal(img_crop_resize_rgb8_t_impl(&img, box, ow, oh, 0, ow, &raw, got,
                                                     IMG_RESIZE_BEST, NULL),
                         FACENET_OK);
        for (int y = 0; y < oh; y++) {
            area_weights_double(box[1] - 1, box[3] - box[1] + 1, sh, oh, y, wy);
            for (int x = 0; x < ow; x++) {
                area_weights_double(box[0] - 1, box[2] - box[0] + 1, sw, ow, x, wx);
                for (int c = 0; c < 3; c++) {
                    double exact = 0;
                    for (int sy = 0; sy < sh; sy++) {
                        double row = 0;
                        if (wy[sy] == 0.0)
                            continue;
                        for (int sx = 0; sx < sw; sx++)
                            row += wx[sx] * img.pixels[((size_t)sy * sw + sx) * 3 + c];
                        exact += wy[sy] * row;
                    }
                    const double e_old = fabs(old[((size_t)y * ow + x) * 3 + c] - exact);
                    const double e_new = fabs(got[((size_t)x * oh + y) * 3 + c] - exact);
                    max_old = e_old > max_old ? e_old : max_old;
                    max_new = e_new > max_new ? e_new : max_new;
                    sum_old += e_old;
                    sum_new += e_new;
                    count++;
                }
            }
        }
        free(wx);
        free(wy);
        free(old);
        free(got);
        img_f32_free(f);
        free(img.pixels);
    }
    print_message("area shrink vs double over %zu values: float chain max %.3g mean %.3g; "
                  "integer sums max %.3g mean %.3g\n",
                  count, max_old, sum_old / (double)count, max_new, sum_new / (double)count);
    assert_true(count > 100000);
    assert_true(max_new <= max_old);
    assert_true(sum_new <= sum_old);
    /* And small in absolute terms: a few float roundings of values <= 255. */
    assert_true(max_new < 1e-4);
}

/* Bad arguments fail with a message and write nothing. */
static void test_resize_rgb8_transposed_rejects_bad_input(void **state)
{
    const img_norm norm = {127.5f, 0.0078125f};
    static const int bad[][7] = {
        /* box x1 y1 x2 y2, out side, col0, col1 */
        {5, 5, 4, 9, 24, 0, 24},  {5, 5, 9, 4, 24, 0, 24},  {1, 1, 8, 8, 0, 0, 1},
        {1, 1, 8, 8, 24, -1, 24}, {1, 1, 8, 8, 24, 0, 25},  {1, 1, 8, 8, 24, 7, 7},
        {1, 1, 8, 8, 24, 9, 3},
    };
    img_rgb8 *img = NULL;
    float out[24 * 24 * 3];
    (void)state;
    assert_int_equal(img_rgb8_new(8, 8, &img, NULL), FACENET_OK);
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        facenet_error err;
        memset(out, 0x5a, sizeof out);
        memset(&err, 0, sizeof err);
        assert_int_equal(img_crop_resize_rgb8_t(img, bad[i], bad[i][4], bad[i][4], bad[i][5],
                                                bad[i][6], &norm, out, &err),
                         FACENET_ERR_INVALID_ARGUMENT);
        assert_true(err.message[0] != '\0');
        for (size_t k = 0; k < sizeof out; k++)
            assert_int_equal(((const unsigned char *)out)[k], 0x5a);
    }
    img_rgb8_free(img);
}

/* The AVX2 resize loops must give the scalar oracle's bytes exactly: for
 * shrinking and growing, odd sizes (the 8-, 2- and 1-row paths), crops
 * hanging over every edge, and 1- and 4-channel images. */
static void test_resize_simd_matches_scalar(void **state)
{
    static const int sizes[][4] = {
        /* src w, h -> out w, h */
        {250, 250, 150, 150}, {250, 250, 13, 13}, {640, 480, 192, 144},
        {31, 23, 17, 11},     {9, 7, 24, 24},     {1, 1, 5, 3},
        {40, 30, 41, 12},     {3, 17, 1, 1},      {100, 9, 7, 9},
    };
    static const int boxes[][4] = {
        {1, 1, 31, 23}, {-5, -3, 20, 18}, {10, 8, 45, 40}, {-10, -10, 50, 40},
        {7, 9, 7, 9},   {40, 30, 60, 50}, {31, 23, 31, 23}, {2, 22, 30, 23},
    };
    (void)state;
    if (!img_resize_have_avx2())
        skip();
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++)
        for (int c = 0; c < 3; c++) {
            const int ow = sizes[i][2], oh = sizes[i][3];
            const int channels = c == 0 ? 3 : c == 1 ? 1 : 4;
            img_f32 *src = noise_f32(sizes[i][0], sizes[i][1], channels, (uint32_t)(i + 1));
            size_t n = (size_t)ow * oh * channels;
            float *a = malloc(n * sizeof *a), *b = malloc(n * sizeof *b);
            assert_non_null(a);
            assert_non_null(b);
            assert_int_equal(img_resize_into_impl(src, ow, oh, a, IMG_RESIZE_BEST, NULL),
                             FACENET_OK);
            assert_int_equal(img_resize_into_impl(src, ow, oh, b, IMG_RESIZE_SCALAR, NULL),
                             FACENET_OK);
            if (!bits_equal(a, b, n))
                fail_msg("%dx%d -> %dx%d, %d channels: SIMD differs from scalar (max %g)",
                         sizes[i][0], sizes[i][1], ow, oh, channels,
                         (double)tu_max_abs_diff(a, b, n));
            free(a);
            free(b);
            img_f32_free(src);
        }
    /* Random sizes and crop boxes, RGB (the AVX2 row loop): each image is
     * its own allocation, so under the sanitizer a read past the last
     * pixel would be caught. */
    uint32_t seed = 12345;
    for (int t = 0; t < 300; t++) {
        int v[8];
        for (int k = 0; k < 8; k++) {
            seed = seed * 1664525u + 1013904223u;
            v[k] = (int)(seed >> 16);
        }
        const int sw = 1 + v[0] % 40, sh = 1 + v[1] % 40, ow = 1 + v[2] % 50, oh = 1 + v[3] % 50;
        const int x1 = v[4] % 60 - 20, y1 = v[5] % 60 - 20;
        const int x2 = x1 + v[6] % 50, y2 = y1 + v[7] % 50;
        img_f32 *img = noise_f32(sw, sh, 3, seed);
        const size_t n = (size_t)ow * oh * 3;
        float *a = malloc(n * sizeof *a), *b = malloc(n * sizeof *b);
        assert_non_null(a);
        assert_non_null(b);
        assert_int_equal(img_crop_resize_into_impl(img, x1, y1, x2, y2, ow, oh, a,
                                                   IMG_RESIZE_BEST, NULL),
                         FACENET_OK);
        assert_int_equal(img_crop_resize_into_impl(img, x1, y1, x2, y2, ow, oh, b,
                                                   IMG_RESIZE_SCALAR, NULL),
                         FACENET_OK);
        if (!bits_equal(a, b, n))
            fail_msg("case %d: %dx%d box [%d %d %d %d] -> %dx%d: SIMD differs", t, sw, sh, x1,
                     y1, x2, y2, ow, oh);
        free(a);
        free(b);
        img_f32_free(img);
    }
    img_f32 *src = noise_f32(31, 23, 3, 7);
    for (size_t i = 0; i < sizeof boxes / sizeof boxes[0]; i++)
        for (int size = 12; size <= 48; size += 12) {
            float a[48 * 48 * 3], b[48 * 48 * 3];
            const size_t n = (size_t)size * size * 3;
            assert_int_equal(img_crop_resize_into_impl(src, boxes[i][0], boxes[i][1],
                                                       boxes[i][2], boxes[i][3], size, size, a,
                                                       IMG_RESIZE_BEST, NULL),
                             FACENET_OK);
            assert_int_equal(img_crop_resize_into_impl(src, boxes[i][0], boxes[i][1],
                                                       boxes[i][2], boxes[i][3], size, size, b,
                                                       IMG_RESIZE_SCALAR, NULL),
                             FACENET_OK);
            if (!bits_equal(a, b, n))
                fail_msg("box %zu -> %d: SIMD differs from scalar", i, size);
        }
    img_f32_free(src);
}

static void test_warp(void **state)
{
    img_f32 *src = pattern_f32(9, 7, 3), *out;
    const double identity[6] = {1, 0, 0, 0, 1, 0};
    /* Image -> crop: crop = image shifted left by 0.5 and up by 2. */
    const double shift[6] = {1, 0, -0.5, 0, 1, -2};
    /* Crop = image scaled by 2: crop(x, y) samples image(x/2, y/2). */
    const double zoom[6] = {2, 0, 0, 0, 2, 0};
    const double singular[6] = {1, 2, 0, 2, 4, 0};
    const double nan_m[6] = {NAN, 0, 0, 0, 1, 0};
    (void)state;

    assert_int_equal(img_warp_affine(src, identity, 12, 9, &out, NULL), FACENET_OK);
    for (int y = 0; y < 9; y++)
        for (int x = 0; x < 12; x++)
            for (int c = 0; c < 3; c++) {
                float want = x < 9 && y < 7 ? tu_pattern(x, y, c) : 0.0f;
                assert_true(out->data[(y * 12 + x) * 3 + c] == want);
            }
    img_f32_free(out);

    assert_int_equal(img_warp_affine(src, shift, 9, 7, &out, NULL), FACENET_OK);
    for (int y = 0; y < 7; y++)
        for (int x = 0; x < 9; x++) {
            /* Source point (x + 0.5, y + 2): mean of two horizontal
             * neighbours; the right one is 0 past the edge. */
            int sy = y + 2;
            float l = x < 9 && sy < 7 ? tu_pattern(x, sy, 1) : 0.0f;
            float r = x + 1 < 9 && sy < 7 ? tu_pattern(x + 1, sy, 1) : 0.0f;
            assert_true(fabsf(out->data[(y * 9 + x) * 3 + 1] - (l + r) / 2) < 1e-4f);
        }
    img_f32_free(out);

    assert_int_equal(img_warp_affine(src, zoom, 18, 14, &out, NULL), FACENET_OK);
    for (int y = 0; y < 12; y++)
        for (int x = 0; x < 16; x++) {
            int x0 = x / 2, y0 = y / 2;
            float fx = (float)(x % 2) / 2, fy = (float)(y % 2) / 2;
            float want = (1 - fx) * (1 - fy) * tu_pattern(x0, y0, 2) +
                         fx * (1 - fy) * tu_pattern(x0 + 1, y0, 2) +
                         (1 - fx) * fy * tu_pattern(x0, y0 + 1, 2) +
                         fx * fy * tu_pattern(x0 + 1, y0 + 1, 2);
            assert_true(fabsf(out->data[(y * 18 + x) * 3 + 2] - want) < 1e-3f);
        }
    img_f32_free(out);

    assert_int_equal(img_warp_affine(src, singular, 4, 4, &out, NULL),
                     FACENET_ERR_INVALID_ARGUMENT);
    assert_null(out);
    assert_int_equal(img_warp_affine(src, nan_m, 4, 4, &out, NULL),
                     FACENET_ERR_INVALID_ARGUMENT);
    /* A matrix mapping everything far away gives zeros, not a crash. */
    {
        const double far[6] = {1e-9, 0, 0, 0, 1e-9, 0};
        assert_int_equal(img_warp_affine(src, far, 5, 5, &out, NULL), FACENET_OK);
        assert_true(tu_max_abs(out->data + 3, 5 * 5 * 3 - 3) == 0.0f);
        img_f32_free(out);
    }
    img_f32_free(src);
}

/* The warp as it was written first, with libm's floor and the range check
 * on the floored corner: the oracle for warp.c, which must give the same
 * bits. */
static void warp_reference(const img_f32 *src, const double a[6], int out_w, int out_h,
                           float *dst)
{
    const int ch = src->channels;
    const double det = a[0] * a[4] - a[1] * a[3];
    double inv[6];
    inv[0] = a[4] / det;
    inv[1] = -a[1] / det;
    inv[3] = -a[3] / det;
    inv[4] = a[0] / det;
    inv[2] = -(inv[0] * a[2] + inv[1] * a[5]);
    inv[5] = -(inv[3] * a[2] + inv[4] * a[5]);
    for (int y = 0; y < out_h; y++)
        for (int x = 0; x < out_w; x++) {
            const double sx = inv[0] * x + inv[1] * y + inv[2];
            const double sy = inv[3] * x + inv[4] * y + inv[5];
            float *out = dst + ((size_t)y * out_w + x) * (size_t)ch;
            const double fx0 = floor(sx), fy0 = floor(sy);
            for (int c = 0; c < ch; c++)
                out[c] = 0.0f;
            if (!(fx0 >= -1.0 && fx0 < src->width && fy0 >= -1.0 && fy0 < src->height))
                continue;
            const int x0 = (int)fx0, y0 = (int)fy0;
            const float wx = (float)(sx - fx0), wy = (float)(sy - fy0);
            const float w[4] = {(1 - wx) * (1 - wy), wx * (1 - wy), (1 - wx) * wy, wx * wy};
            for (int k = 0; k < 4; k++) {
                const int px = x0 + (k & 1), py = y0 + (k >> 1);
                if (px < 0 || py < 0 || px >= src->width || py >= src->height)
                    continue;
                const float *p = src->data + ((size_t)py * src->width + px) * ch;
                for (int c = 0; c < ch; c++)
                    out[c] += w[k] * p[c];
            }
        }
}

/* img_warp_affine_into gives the reference's bits: rotations, zooms and
 * shifts that put the source point inside, on the edges (exactly -1, 0,
 * width - 1 and width), between them and far outside, for 3 channels
 * (the unrolled inside path) and 1, with negative pixel values too. */
static void test_warp_matches_reference(void **state)
{
    uint32_t seed = 99;
    (void)state;
    for (int t = 0; t < 200; t++) {
        int v[8];
        for (int k = 0; k < 8; k++) {
            seed = seed * 1664525u + 1013904223u;
            v[k] = (int)(seed >> 16);
        }
        const int w = 1 + v[0] % 40, h = 1 + v[1] % 40, ch = t % 4 == 0 ? 1 : 3;
        const int ow = 1 + v[2] % 50, oh = 1 + v[3] % 50;
        img_f32 *src = NULL;
        assert_int_equal(img_f32_new(w, h, ch, &src, NULL), FACENET_OK);
        for (size_t i = 0; i < (size_t)w * h * ch; i++) {
            seed = seed * 1664525u + 1013904223u;
            src->data[i] = (float)(int)(seed >> 24) - (t % 3 == 0 ? 100.0f : 0.0f);
        }
        double a[6];
        if (t % 5 == 0) {
            /* Integer and half shifts: sample points exactly on pixels,
             * on -1 and on the far edges. */
            a[0] = 1, a[1] = 0, a[2] = v[4] % 5 - 2 + (t % 10 == 0 ? 0.5 : 0.0);
            a[3] = 0, a[4] = 1, a[5] = v[5] % 5 - 2;
        } else {
            const double ang = v[4] % 628 / 100.0, zoom = 0.3 + v[5] % 300 / 100.0;
            a[0] = zoom * cos(ang), a[1] = -zoom * sin(ang), a[2] = v[6] % 60 - 30 + 0.25;
            a[3] = zoom * sin(ang), a[4] = zoom * cos(ang), a[5] = v[7] % 60 - 30 - 0.125;
        }
        const size_t n = (size_t)ow * oh * ch;
        float *got = malloc(n * sizeof *got), *want = malloc(n * sizeof *want);
        assert_non_null(got);
        assert_non_null(want);
        assert_int_equal(img_warp_affine_into(src, a, ow, oh, got, NULL), FACENET_OK);
        warp_reference(src, a, ow, oh, want);
        if (memcmp(got, want, n * sizeof *got) != 0)
            fail_msg("case %d: %dx%dx%d -> %dx%d differs from the reference", t, w, h, ch, ow,
                     oh);
        free(got);
        free(want);
        img_f32_free(src);
    }
}

static void test_mirror_and_conversions(void **state)
{
    img_f32 *f = pattern_f32(5, 3, 3);
    img_rgb8 *rgb;
    (void)state;

    img_f32_mirror(f);
    for (int y = 0; y < 3; y++)
        for (int x = 0; x < 5; x++)
            for (int c = 0; c < 3; c++)
                assert_true(f->data[(y * 5 + x) * 3 + c] == tu_pattern(4 - x, y, c));
    f->data[0] = -3.0f;
    f->data[1] = 300.0f;
    f->data[2] = 12.5f;
    f->data[3] = 12.49f;
    f->data[4] = NAN;
    assert_int_equal(img_f32_to_rgb8(f, &rgb, NULL), FACENET_OK);
    assert_int_equal(rgb->pixels[0], 0);
    assert_int_equal(rgb->pixels[1], 255);
    assert_int_equal(rgb->pixels[3], 12);
    assert_int_equal(rgb->pixels[4], 0);
    img_f32 *back;
    assert_int_equal(img_rgb8_to_f32(rgb, &back, NULL), FACENET_OK);
    assert_true(back->data[1] == 255.0f);
    assert_true(back->data[7] == (float)rgb->pixels[7]);
    img_f32_free(back);
    img_rgb8_free(rgb);
    img_f32_free(f);
    assert_int_equal(img_rgb8_new(0, 5, &rgb, NULL), FACENET_ERR_INVALID_ARGUMENT);
    assert_int_equal(img_rgb8_new(IMG_MAX_SIDE + 1, 5, &rgb, NULL),
                     FACENET_ERR_INVALID_ARGUMENT);
    assert_int_equal(img_f32_new(5, 5, 5, &f, NULL), FACENET_ERR_INVALID_ARGUMENT);
    img_rgb8_free(NULL);
    img_f32_free(NULL);
}

/* ------------------------------------------------------------------------ */
/* PNG writer and drawing                                                   */
/* ------------------------------------------------------------------------ */

static void test_png_writer_round_trip(void **state)
{
    img_rgb8 *img, *back;
    uint8_t *png;
    size_t size;
    char path[4096];
    facenet_error err;
    (void)state;

    assert_int_equal(img_rgb8_new(29, 11, &img, NULL), FACENET_OK);
    for (int y = 0; y < 11; y++)
        for (int x = 0; x < 29; x++)
            for (int c = 0; c < 3; c++)
                img->pixels[y * img->stride + 3 * x + c] = (uint8_t)tu_pattern(x, y, c);
    assert_int_equal(img_encode_png(img, &png, &size, NULL), FACENET_OK);
    assert_int_equal(img_detect_format(png, size), IMG_FORMAT_PNG);
    back = decode_expect(png, size, NULL, FACENET_OK);
    assert_int_equal(back->width, 29);
    assert_memory_equal(back->pixels, img->pixels, 29 * 11 * 3);
    img_rgb8_free(back);
    free(png);

    (void)snprintf(path, sizeof path, "%s/facenet_test_%ld_out.png", tmp_dir(),
             (long)getpid());
    assert_int_equal(img_write_png(img, path, &err), FACENET_OK);
    assert_int_equal(img_decode_file(path, NULL, &back, &err), FACENET_OK);
    assert_memory_equal(back->pixels, img->pixels, 29 * 11 * 3);
    img_rgb8_free(back);
    unlink(path);
    (void)snprintf(path, sizeof path, "%s/no_such_dir_%ld/x.png", tmp_dir(),
             (long)getpid());
    assert_int_equal(img_write_png(img, path, &err), FACENET_ERR_IO);
    assert_non_null(strstr(err.message, "no_such_dir"));
    img_rgb8_free(img);
}

static int count_colour(const img_rgb8 *img, const uint8_t rgb[3])
{
    int n = 0;
    for (int y = 0; y < img->height; y++)
        for (int x = 0; x < img->width; x++)
            n += memcmp(px(img, x, y), rgb, 3) == 0;
    return n;
}

static void test_drawing(void **state)
{
    static const uint8_t red[3] = {255, 0, 0}, green[3] = {0, 255, 0};
    img_rgb8 *img;
    (void)state;

    assert_int_equal(img_rgb8_new(20, 20, &img, NULL), FACENET_OK);
    img_draw_rect(img, 2, 3, 11, 9, 2, red);
    /* 10 x 7 box, 2 wide: 70 - 6 * 3 inner pixels. */
    assert_int_equal(count_colour(img, red), 70 - 18);
    assert_memory_equal(px(img, 2, 3), red, 3);
    assert_memory_equal(px(img, 3, 4), red, 3);
    assert_memory_equal(px(img, 11, 9), red, 3);
    assert_memory_equal(px(img, 4, 5), "\0\0\0", 3);
    assert_memory_equal(px(img, 12, 9), "\0\0\0", 3);

    memset(img->pixels, 0, 20 * 20 * 3);
    img_draw_dot(img, 10, 10, 2, green);
    assert_int_equal(count_colour(img, green), 13);
    memset(img->pixels, 0, 20 * 20 * 3);
    img_draw_cross(img, 0, 0, 3, green);
    assert_int_equal(count_colour(img, green), 7); /* clipped at the corner */

    /* Anything outside or absurd is clipped, never written out of bounds. */
    img_draw_rect(img, -2147483647 - 1, -5, 2147483647, 2147483647, 2147483647, red);
    img_draw_rect(img, 100, 100, 200, 200, 3, red);
    img_draw_dot(img, -2147483647 - 1, 2147483647, 2147483647, red);
    img_draw_dot(img, 10, 10, 1000000, red);
    assert_int_equal(count_colour(img, red), 400);
    img_draw_cross(img, 2147483647, -2147483647 - 1, 2147483647, green);
    img_rgb8_free(img);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_jpeg_rgb_decodes_close),
        cmocka_unit_test(test_jpeg_grey_and_cmyk),
        cmocka_unit_test(test_png_variants),
        cmocka_unit_test(test_png_interlaced_rgb_is_exact),
        cmocka_unit_test(test_webp),
        cmocka_unit_test(test_pnm),
        cmocka_unit_test(test_empty_and_garbage),
        cmocka_unit_test(test_every_truncation_fails),
        cmocka_unit_test(test_decompression_bombs),
        cmocka_unit_test(test_corrupt_bytes),
        cmocka_unit_test(test_limits_and_allow_list),
        cmocka_unit_test(test_jpeg_scan_limit),
        cmocka_unit_test(test_exif_parser),
        cmocka_unit_test(test_exif_orientation_applied),
        cmocka_unit_test(test_resize_properties),
        cmocka_unit_test(test_crop_resize_matches_materialised_crop),
        cmocka_unit_test(test_resize_simd_matches_scalar),
        cmocka_unit_test(test_resize_rgb8_transposed_matches_float),
        cmocka_unit_test(test_resize_rgb8_transposed_rejects_bad_input),
        cmocka_unit_test(test_resize_rgb8_simd_matches_scalar_on_detector_shapes),
        cmocka_unit_test(test_resize_area_is_closer_to_exact),
        cmocka_unit_test(test_warp),
        cmocka_unit_test(test_warp_matches_reference),
        cmocka_unit_test(test_mirror_and_conversions),
        cmocka_unit_test(test_png_writer_round_trip),
        cmocka_unit_test(test_drawing),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
