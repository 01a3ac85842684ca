/*
 * decode_internal.h - the per-format decoders behind img_decode_memory.
 *
 * Each decoder gets the whole encoded input and limits already filled in
 * (never NULL), must check width * height against the limits before it
 * allocates pixel memory, and returns a new RGB8 image in *out (NULL on
 * failure). Messages start with the format name so the caller only adds
 * the file name.
 */
#ifndef FACENET_IMAGE_DECODE_INTERNAL_H
#define FACENET_IMAGE_DECODE_INTERNAL_H

#include "image/image.h"

facenet_status img_decode_jpeg(const uint8_t *data, size_t size,
                               const img_decode_limits *limits,
                               img_rgb8 **out, facenet_error *err);
facenet_status img_decode_png(const uint8_t *data, size_t size,
                              const img_decode_limits *limits,
                              img_rgb8 **out, facenet_error *err);
facenet_status img_decode_webp(const uint8_t *data, size_t size,
                               const img_decode_limits *limits,
                               img_rgb8 **out, facenet_error *err);
facenet_status img_decode_pnm(const uint8_t *data, size_t size,
                              const img_decode_limits *limits,
                              img_rgb8 **out, facenet_error *err);

/* FACENET_ERR_LIMIT unless 1 <= width, height <= IMG_MAX_SIDE and
 * width * height <= limits->max_pixels. A zero side is FACENET_ERR_FORMAT.
 * `what` names the format in the message. */
facenet_status img_check_size(uint64_t width, uint64_t height,
                              const img_decode_limits *limits,
                              const char *what, facenet_error *err);

#endif
