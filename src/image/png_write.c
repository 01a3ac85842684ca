/*
 * png_write.c - RGB8 images to PNG with libpng (for --draw output and
 * saved crops). Encoding goes to memory first, so a failure never leaves a
 * half-written file from libpng's side; the file write is checked too.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <png.h>

#include "common/error.h"
#include "image/image.h"

typedef struct png_sink {
    uint8_t *data;
    size_t size, capacity;
    int out_of_memory;
    char message[256];
} png_sink;

static void sink_write(png_structp png, png_bytep bytes, size_t length)
{
    png_sink *s = png_get_io_ptr(png);
    if (length > s->capacity - s->size) {
        size_t cap = s->capacity ? s->capacity : 4096;
        while (cap - s->size < length) {
            if (cap > SIZE_MAX / 2) {
                cap = 0;
                break;
            }
            cap *= 2;
        }
        uint8_t *grown = cap ? realloc(s->data, cap) : NULL;
        if (!grown) {
            s->out_of_memory = 1;
            png_error(png, "out of memory");
        }
        s->data = grown;
        s->capacity = cap;
    }
    memcpy(s->data + s->size, bytes, length);
    s->size += length;
}

static void sink_flush(png_structp png)
{
    (void)png;
}

static void on_error(png_structp png, png_const_charp msg)
{
    png_sink *s = png_get_error_ptr(png);
    if (s->message[0] == '\0')
        (void)snprintf(s->message, sizeof s->message, "%s", msg);
    png_longjmp(png, 1);
}

static void on_warning(png_structp png, png_const_charp msg)
{
    (void)png;
    (void)msg;
}

/* The part that can longjmp. Returns 0 after a jump. */
static int run_encode(png_structp png, png_infop info, const img_rgb8 *img,
                      png_sink *sink)
{
    if (setjmp(png_jmpbuf(png)))
        return 0;
    png_set_write_fn(png, sink, sink_write, sink_flush);
    png_set_IHDR(png, info, (png_uint_32)img->width, (png_uint_32)img->height,
                 8, PNG_COLOR_TYPE_RGB, PNG_INTERLACE_NONE,
                 PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
    png_write_info(png, info);
    for (int y = 0; y < img->height; y++)
        png_write_row(png, img->pixels + (size_t)y * img->stride);
    png_write_end(png, NULL);
    return 1;
}

facenet_status img_encode_png(const img_rgb8 *img, uint8_t **data,
                              size_t *size, facenet_error *err)
{
    png_sink sink;
    png_structp png;
    png_infop info;
    int ok;

    *data = NULL;
    *size = 0;
    if (!img || img->width < 1 || img->height < 1 || !img->pixels)
        return fn_fail(err, FACENET_ERR_INVALID_ARGUMENT,
                       "PNG encode: no image");
    memset(&sink, 0, sizeof sink);
    png = png_create_write_struct(PNG_LIBPNG_VER_STRING, &sink, on_error,
                                  on_warning);
    info = png ? png_create_info_struct(png) : NULL;
    if (!info) {
        png_destroy_write_struct(&png, NULL);
        return fn_fail(err, FACENET_ERR_NO_MEMORY,
                       "PNG encode: cannot create the encoder");
    }
    ok = run_encode(png, info, img, &sink);
    png_destroy_write_struct(&png, &info);
    if (!ok) {
        free(sink.data);
        return fn_fail(err,
                       sink.out_of_memory ? FACENET_ERR_NO_MEMORY
                                          : FACENET_ERR_INTERNAL,
                       "PNG encode: %s", sink.message);
    }
    *data = sink.data;
    *size = sink.size;
    return FACENET_OK;
}

facenet_status img_write_png(const img_rgb8 *img, const char *path,
                             facenet_error *err)
{
    uint8_t *data;
    size_t size;
    FILE *f;
    facenet_status st = img_encode_png(img, &data, &size, err);

    if (st != FACENET_OK) {
        fn_error_prefix(err, "%s", path);
        return st;
    }
    f = fopen(path, "wb");
    if (!f) {
        st = fn_fail(err, FACENET_ERR_IO, "%s: %s", path, strerror(errno));
        free(data);
        return st;
    }
    size_t written = fwrite(data, 1, size, f);
    int write_failed = written != size || ferror(f);
    /* fclose flushes: its failure (disk full) is a write failure too. */
    if (fclose(f) != 0)
        write_failed = 1;
    free(data);
    if (write_failed)
        return fn_fail(err, FACENET_ERR_IO, "%s: write failed", path);
    return FACENET_OK;
}
