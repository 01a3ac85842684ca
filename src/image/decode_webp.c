/*
 * decode_webp.c - WebP (lossy and lossless, still images) through libwebp.
 *
 * WebPGetFeatures reads the header first, so the size is checked before
 * any pixel memory exists. Animated files are refused. Alpha is dropped
 * (WebP's RGB output mode), as for PNG.
 */
#include <stdlib.h>

#include <webp/decode.h>

#include "common/error.h"
#include "image/decode_internal.h"

static const char *vp8_status_name(VP8StatusCode code)
{
    switch (code) {
    case VP8_STATUS_OK: return "ok";
    case VP8_STATUS_OUT_OF_MEMORY: return "out of memory";
    case VP8_STATUS_INVALID_PARAM: return "invalid parameter";
    case VP8_STATUS_BITSTREAM_ERROR: return "bitstream error";
    case VP8_STATUS_UNSUPPORTED_FEATURE: return "unsupported feature";
    case VP8_STATUS_SUSPENDED: return "suspended";
    case VP8_STATUS_USER_ABORT: return "aborted";
    case VP8_STATUS_NOT_ENOUGH_DATA: return "truncated (not enough data)";
    }
    return "unknown error";
}

facenet_status img_decode_webp(const uint8_t *data, size_t size,
                               const img_decode_limits *limits,
                               img_rgb8 **out, facenet_error *err)
{
    WebPBitstreamFeatures features;
    VP8StatusCode vs;
    img_rgb8 *image;
    facenet_status st;

    *out = NULL;
    vs = WebPGetFeatures(data, size, &features);
    if (vs != VP8_STATUS_OK)
        return fn_fail(err, FACENET_ERR_FORMAT, "WebP header: %s",
                       vp8_status_name(vs));
    if (features.has_animation)
        return fn_fail(err, FACENET_ERR_UNSUPPORTED,
                       "WebP: animated images are not supported");
    if (features.width < 0 || features.height < 0)
        return fn_fail(err, FACENET_ERR_FORMAT, "WebP: negative size");
    st = img_check_size((uint64_t)features.width, (uint64_t)features.height,
                        limits, "WebP", err);
    if (st != FACENET_OK)
        return st;
    st = img_rgb8_new(features.width, features.height, &image, err);
    if (st != FACENET_OK)
        return st;
    /* The decoder checks the header again against the buffer we give it. */
    if (!WebPDecodeRGBInto(data, size, image->pixels,
                           image->stride * (size_t)image->height,
                           (int)image->stride)) {
        img_rgb8_free(image);
        return fn_fail(err, FACENET_ERR_FORMAT,
                       "WebP: the %dx%d image data is corrupt or truncated",
                       features.width, features.height);
    }
    *out = image;
    return FACENET_OK;
}
