/*
 * decode_pnm.c - binary PGM (P5) and PPM (P6), our own strict parser.
 *
 * Header: magic, then width, height and maxval as decimal numbers separated
 * by whitespace and '#' comments, then exactly one whitespace byte, then
 * the raster: 1 byte per sample when maxval < 256, else 2 bytes big-endian.
 * maxval is 1..65535; samples above it are an error; samples are scaled to
 * 0..255 as round(v * 255 / maxval). Bytes after the raster (a following
 * image in a multi-image file) are ignored. ASCII (P2/P3) and bitmap
 * (P1/P4) variants and PAM (P7) are FACENET_ERR_UNSUPPORTED.
 */
#include <stdlib.h>
#include <string.h>

#include "common/error.h"
#include "image/decode_internal.h"

typedef struct cursor {
    const uint8_t *data;
    size_t size, pos;
} cursor;

static int is_space(uint8_t c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' ||
           c == '\f';
}

static void skip_space_and_comments(cursor *c)
{
    while (c->pos < c->size) {
        if (is_space(c->data[c->pos])) {
            c->pos++;
        } else if (c->data[c->pos] == '#') {
            while (c->pos < c->size && c->data[c->pos] != '\n' &&
                   c->data[c->pos] != '\r')
                c->pos++;
        } else {
            break;
        }
    }
}

/* A decimal number of at most 9 digits (the values we accept are far
 * smaller; this only bounds the arithmetic). */
static facenet_status read_number(cursor *c, const char *what, unsigned *value,
                                  facenet_error *err)
{
    unsigned v = 0;
    int digits = 0;

    *value = 0;
    skip_space_and_comments(c);
    while (c->pos < c->size && c->data[c->pos] >= '0' &&
           c->data[c->pos] <= '9') {
        if (++digits > 9)
            return fn_fail(err, FACENET_ERR_FORMAT,
                           "PNM: %s at offset %zu has too many digits", what,
                           c->pos);
        v = v * 10 + (unsigned)(c->data[c->pos] - '0');
        c->pos++;
    }
    if (digits == 0)
        return fn_fail(err, FACENET_ERR_FORMAT,
                       c->pos >= c->size ? "PNM: header truncated before %s"
                                         : "PNM: expected %s at offset %zu",
                       what, c->pos);
    *value = v;
    return FACENET_OK;
}

static facenet_status read_header(cursor *c, unsigned *width,
                                  unsigned *height, unsigned *maxval,
                                  facenet_error *err)
{
    facenet_status st;

    if ((st = read_number(c, "the width", width, err)) != FACENET_OK ||
        (st = read_number(c, "the height", height, err)) != FACENET_OK ||
        (st = read_number(c, "maxval", maxval, err)) != FACENET_OK)
        return st;
    if (*maxval < 1 || *maxval > 65535)
        return fn_fail(err, FACENET_ERR_FORMAT,
                       "PNM: maxval %u is outside 1..65535", *maxval);
    if (c->pos >= c->size)
        return fn_fail(err, FACENET_ERR_FORMAT,
                       "PNM: truncated after the header");
    if (!is_space(c->data[c->pos]))
        return fn_fail(err, FACENET_ERR_FORMAT,
                       "PNM: byte %zu after maxval is not whitespace", c->pos);
    c->pos++;
    return FACENET_OK;
}

static unsigned sample_at(const uint8_t *p, int wide)
{
    return wide ? (unsigned)(p[0] << 8 | p[1]) : p[0];
}

static facenet_status read_raster(const uint8_t *raster, int channels,
                                  unsigned maxval, img_rgb8 *img,
                                  facenet_error *err)
{
    int wide = maxval > 255;
    size_t bytes = wide ? 2 : 1;

    if (maxval == 0) /* read_header refuses it; keep the division safe */
        return fn_fail(err, FACENET_ERR_INTERNAL, "PNM: maxval 0");

    for (int y = 0; y < img->height; y++) {
        uint8_t *row = img->pixels + (size_t)y * img->stride;
        for (int x = 0; x < img->width; x++) {
            for (int ch = 0; ch < channels; ch++) {
                unsigned v = sample_at(raster, wide);
                if (v > maxval)
                    return fn_fail(err, FACENET_ERR_FORMAT,
                                   "PNM: sample %u at pixel (%d, %d) exceeds "
                                   "maxval %u",
                                   v, x, y, maxval);
                raster += bytes;
                uint8_t b = maxval == 255
                                ? (uint8_t)v
                                : (uint8_t)((v * 255u + maxval / 2) / maxval);
                if (channels == 1)
                    row[3 * x] = row[3 * x + 1] = row[3 * x + 2] = b;
                else
                    row[3 * x + ch] = b;
            }
        }
    }
    return FACENET_OK;
}

facenet_status img_decode_pnm(const uint8_t *data, size_t size,
                              const img_decode_limits *limits,
                              img_rgb8 **out, facenet_error *err)
{
    cursor c = {data, size, 2};
    unsigned width = 0, height = 0, maxval = 0;
    int channels;
    facenet_status st;
    img_rgb8 *img;

    *out = NULL;
    if (size < 2 || data[0] != 'P')
        return fn_fail(err, FACENET_ERR_FORMAT, "PNM: bad magic");
    if (data[1] == '5')
        channels = 1;
    else if (data[1] == '6')
        channels = 3;
    else
        return fn_fail(err, FACENET_ERR_UNSUPPORTED,
                       "PNM variant P%c is not supported (only binary P5, P6)",
                       data[1]);
    if (size < 3 || !is_space(data[2]))
        return fn_fail(err, FACENET_ERR_FORMAT,
                       "PNM: no whitespace after the magic");
    st = read_header(&c, &width, &height, &maxval, err);
    if (st != FACENET_OK)
        return st;
    st = img_check_size(width, height, limits, "PNM", err);
    if (st != FACENET_OK)
        return st;
    /* Sides <= 65535, so this cannot overflow 64 bits. */
    uint64_t need = (uint64_t)width * height * (uint64_t)channels *
                    (maxval > 255 ? 2u : 1u);
    if (need > size - c.pos)
        return fn_fail(err, FACENET_ERR_FORMAT,
                       "PNM: raster truncated: %llu bytes needed at offset "
                       "%zu, %zu present",
                       (unsigned long long)need, c.pos, size - c.pos);
    st = img_rgb8_new((int)width, (int)height, &img, err);
    if (st != FACENET_OK)
        return st;
    st = read_raster(data + c.pos, channels, maxval, img, err);
    if (st != FACENET_OK) {
        img_rgb8_free(img);
        return st;
    }
    *out = img;
    return FACENET_OK;
}
