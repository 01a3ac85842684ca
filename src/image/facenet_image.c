/*
 * facenet_image.c - the public image handle over the internal img_rgb8.
 */
#include <stdlib.h>
#include <string.h>

#include "common/error.h"
#include "image/handle.h"

struct facenet_image {
    img_rgb8 *rgb;
};

void facenet_image_limits_default(facenet_image_limits *limits)
{
    img_decode_limits d = img_default_limits();
    limits->max_bytes = d.max_bytes;
    limits->max_pixels = d.max_pixels;
    limits->formats = FACENET_IMAGE_ALL;
    limits->apply_orientation = d.apply_orientation;
}

static img_decode_limits to_internal(const facenet_image_limits *limits)
{
    img_decode_limits d = img_default_limits();
    if (limits) {
        d.max_bytes = limits->max_bytes;
        d.max_pixels = limits->max_pixels;
        d.formats = 0;
        if (limits->formats & FACENET_IMAGE_JPEG) d.formats |= IMG_FORMAT_JPEG;
        if (limits->formats & FACENET_IMAGE_PNG) d.formats |= IMG_FORMAT_PNG;
        if (limits->formats & FACENET_IMAGE_WEBP) d.formats |= IMG_FORMAT_WEBP;
        if (limits->formats & FACENET_IMAGE_PNM) d.formats |= IMG_FORMAT_PNM;
        d.apply_orientation = limits->apply_orientation;
    }
    return d;
}

static facenet_status wrap(img_rgb8 *rgb, facenet_image **out, facenet_error *err)
{
    facenet_image *img = malloc(sizeof *img);
    if (!img) {
        img_rgb8_free(rgb);
        return fn_fail(err, FACENET_ERR_NO_MEMORY, "out of memory for an image");
    }
    img->rgb = rgb;
    *out = img;
    return FACENET_OK;
}

facenet_status facenet_image_decode(const void *data, size_t size,
                                    const facenet_image_limits *limits,
                                    facenet_image **out, facenet_error *err)
{
    img_rgb8 *rgb = NULL;
    img_decode_limits d = to_internal(limits);
    facenet_status st;

    if (!out)
        return fn_fail(err, FACENET_ERR_INVALID_ARGUMENT, "out is NULL");
    *out = NULL;
    if (!data && size)
        return fn_fail(err, FACENET_ERR_INVALID_ARGUMENT, "data is NULL");
    st = img_decode_memory(data, size, &d, &rgb, err);
    return st == FACENET_OK ? wrap(rgb, out, err) : st;
}

facenet_status facenet_image_load(const char *path,
                                  const facenet_image_limits *limits,
                                  facenet_image **out, facenet_error *err)
{
    img_rgb8 *rgb = NULL;
    img_decode_limits d = to_internal(limits);
    facenet_status st;

    if (!out)
        return fn_fail(err, FACENET_ERR_INVALID_ARGUMENT, "out is NULL");
    *out = NULL;
    if (!path)
        return fn_fail(err, FACENET_ERR_INVALID_ARGUMENT, "path is NULL");
    st = img_decode_file(path, &d, &rgb, err);
    return st == FACENET_OK ? wrap(rgb, out, err) : st;
}

facenet_status facenet_image_from_rgb(const uint8_t *rgb, int width,
                                      int height, size_t stride,
                                      facenet_image **out, facenet_error *err)
{
    img_rgb8 *img = NULL;
    facenet_status st;

    if (!out)
        return fn_fail(err, FACENET_ERR_INVALID_ARGUMENT, "out is NULL");
    *out = NULL;
    if (!rgb || stride < (size_t)width * 3)
        return fn_fail(err, FACENET_ERR_INVALID_ARGUMENT, "bad pixels or stride");
    st = img_rgb8_new(width, height, &img, err);
    if (st != FACENET_OK)
        return st;
    for (int y = 0; y < height; y++)
        memcpy(img->pixels + (size_t)y * img->stride, rgb + (size_t)y * stride,
               (size_t)width * 3);
    return wrap(img, out, err);
}

int facenet_image_width(const facenet_image *image)
{
    return image ? image->rgb->width : 0;
}

int facenet_image_height(const facenet_image *image)
{
    return image ? image->rgb->height : 0;
}

const uint8_t *facenet_image_pixels(const facenet_image *image)
{
    return image ? image->rgb->pixels : NULL;
}

void facenet_image_free(facenet_image *image)
{
    if (!image)
        return;
    img_rgb8_free(image->rgb);
    free(image);
}

const img_rgb8 *fn_image_rgb(const facenet_image *image)
{
    return image ? image->rgb : NULL;
}
