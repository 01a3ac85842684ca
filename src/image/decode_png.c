/*
 * decode_png.c - PNG through libpng, every colour type to 8-bit RGB.
 *
 * Palette and low-bit grey are expanded, grey is replicated to RGB,
 * 16-bit samples are scaled with rounding (png_set_scale_16: v*255/65535),
 * interlaced images are deinterlaced, and alpha (an alpha channel or a tRNS
 * chunk) is dropped: colour values are kept as stored, not composited.
 *
 * Limits. We read width and height from IHDR ourselves and check them
 * before libpng allocates anything, so a 100000 x 100000 "bomb" of a few
 * hundred bytes fails with FACENET_ERR_LIMIT at once. png_set_user_limits
 * and a chunk size cap repeat the guard inside libpng.
 *
 * Errors longjmp back to png_decode's setjmp; everything allocated after
 * it lives in the png_job struct so it survives the jump.
 */
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <png.h>

#include "common/error.h"
#include "image/decode_internal.h"

/* Ancillary chunks (text, ICC profiles) are not needed for pixels; refuse
 * to inflate huge ones. */
#define PNG_CHUNK_MALLOC_MAX ((png_alloc_size_t)4 << 20)

typedef struct png_job {
    const uint8_t *data;
    size_t size, pos;
    char message[256];
    img_rgb8 *image;
    png_bytep *rows;
} png_job;

static void on_read(png_structp png, png_bytep out, size_t length)
{
    png_job *job = png_get_io_ptr(png);
    if (length > job->size - job->pos) {
        (void)snprintf(job->message, sizeof job->message,
                 "truncated: needs %zu bytes at offset %zu of %zu", length,
                 job->pos, job->size);
        png_longjmp(png, 1);
    }
    memcpy(out, job->data + job->pos, length);
    job->pos += length;
}

static void on_error(png_structp png, png_const_charp msg)
{
    png_job *job = png_get_error_ptr(png);
    if (job->message[0] == '\0')
        (void)snprintf(job->message, sizeof job->message, "%s", msg);
    png_longjmp(png, 1);
}

static void on_warning(png_structp png, png_const_charp msg)
{
    (void)png;
    (void)msg; /* benign by libpng's own judgement: ignore */
}

static uint32_t be32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 |
           p[3];
}

/* Width and height from the IHDR that must follow the signature. */
static facenet_status peek_ihdr(const uint8_t *data, size_t size,
                                const img_decode_limits *limits,
                                facenet_error *err)
{
    /* signature 8, length 4, "IHDR" 4, width 4, height 4 */
    if (size < 24)
        return fn_fail(err, FACENET_ERR_FORMAT,
                       "PNG: truncated before the end of IHDR (%zu bytes)",
                       size);
    if (memcmp(data + 12, "IHDR", 4) != 0 || be32(data + 8) != 13)
        return fn_fail(err, FACENET_ERR_FORMAT,
                       "PNG: the first chunk is not a 13-byte IHDR");
    return img_check_size(be32(data + 16), be32(data + 20), limits, "PNG",
                          err);
}

static void set_transforms(png_structp png, png_infop info)
{
    int color = png_get_color_type(png, info);

    png_set_expand(png); /* palette -> RGB, grey < 8 bits -> 8, tRNS -> A */
    png_set_scale_16(png);
    if (color == PNG_COLOR_TYPE_GRAY || color == PNG_COLOR_TYPE_GRAY_ALPHA)
        png_set_gray_to_rgb(png);
    png_set_strip_alpha(png);
    png_set_interlace_handling(png);
    png_read_update_info(png, info);
}

/* The part that can longjmp. Returns 0 after a jump. */
static int run_decode(png_structp png, png_infop info, png_job *job,
                      const img_decode_limits *limits, facenet_status *status,
                      facenet_error *err)
{
    png_uint_32 width, height;

    if (setjmp(png_jmpbuf(png)))
        return 0;
    png_set_read_fn(png, job, on_read);
    png_set_user_limits(png, IMG_MAX_SIDE, IMG_MAX_SIDE);
    png_set_chunk_malloc_max(png, PNG_CHUNK_MALLOC_MAX);
    png_read_info(png, info);
    width = png_get_image_width(png, info);
    height = png_get_image_height(png, info);
    *status = img_check_size(width, height, limits, "PNG", err);
    if (*status != FACENET_OK)
        return 1;
    set_transforms(png, info);
    if (png_get_rowbytes(png, info) != (size_t)width * 3) {
        *status = fn_fail(err, FACENET_ERR_INTERNAL,
                          "PNG: transformed rows are %zu bytes, not %u",
                          (size_t)png_get_rowbytes(png, info), width * 3);
        return 1;
    }
    *status = img_rgb8_new((int)width, (int)height, &job->image, err);
    if (*status != FACENET_OK)
        return 1;
    job->rows = malloc(sizeof(png_bytep) * height);
    if (!job->rows) {
        *status = fn_fail(err, FACENET_ERR_NO_MEMORY,
                          "PNG: cannot allocate row pointers");
        return 1;
    }
    for (png_uint_32 y = 0; y < height; y++)
        job->rows[y] = job->image->pixels + (size_t)y * job->image->stride;
    png_read_image(png, job->rows);
    /* Reads the chunks after the image up to IEND, so a cut file fails. */
    png_read_end(png, NULL);
    return 1;
}

facenet_status img_decode_png(const uint8_t *data, size_t size,
                              const img_decode_limits *limits,
                              img_rgb8 **out, facenet_error *err)
{
    png_job job;
    png_structp png;
    png_infop info;
    facenet_status status = FACENET_OK;

    *out = NULL;
    status = peek_ihdr(data, size, limits, err);
    if (status != FACENET_OK)
        return status;
    memset(&job, 0, sizeof job);
    job.data = data;
    job.size = size;
    png = png_create_read_struct(PNG_LIBPNG_VER_STRING, &job, on_error,
                                 on_warning);
    info = png ? png_create_info_struct(png) : NULL;
    if (!info) {
        png_destroy_read_struct(&png, NULL, NULL);
        return fn_fail(err, FACENET_ERR_NO_MEMORY,
                       "PNG: cannot create the decoder");
    }
    if (!run_decode(png, info, &job, limits, &status, err))
        status = fn_fail(err, FACENET_ERR_FORMAT, "PNG: %s", job.message);
    png_destroy_read_struct(&png, &info, NULL);
    free(job.rows);
    if (status != FACENET_OK) {
        img_rgb8_free(job.image);
        return status;
    }
    *out = job.image;
    return FACENET_OK;
}
