/*
 * fuzz_reader.h - the fuzz input read as a stream of bytes, for the
 * targets that turn it into a little program (fuzz_fuse.c) or a list of
 * parameters (fuzz_resize.c). Past the end every byte reads as 0, so any
 * input, however short, is a complete case.
 */
#ifndef FACENET_FUZZ_READER_H
#define FACENET_FUZZ_READER_H

#include <stddef.h>
#include <stdint.h>

typedef struct reader {
    const uint8_t *p;
    size_t n;
} reader;

static inline unsigned byte(reader *r)
{
    if (r->n == 0)
        return 0;
    r->n--;
    return *r->p++;
}

#endif
