/*
 * flatbuf.h - a bounds-checked reader for the FlatBuffers binary format.
 *
 * The model file is untrusted, so this reader never follows an offset, reads
 * a scalar or indexes a vector without first checking that every byte it
 * touches lies inside the buffer. It knows nothing of any schema: callers
 * (the TFLite importer) say which field of which table holds what.
 *
 * Binary format, in brief (all little-endian):
 *   - The buffer starts with a uoffset (u32) to the root table, optionally
 *     followed by a 4-byte file identifier.
 *   - A table starts with an soffset (i32): its vtable is at
 *     table_pos - soffset. The vtable is a list of u16: its own size in
 *     bytes, the table's inline size in bytes, then one entry per field:
 *     the field's offset from the table start, or 0 when it is absent.
 *   - Scalars are stored inline in the table. Tables, vectors and strings
 *     are stored elsewhere and the field holds a uoffset (u32) relative to
 *     the field's own position (so it always points forward).
 *   - A vector is a u32 element count followed by the elements; a vector of
 *     tables holds uoffsets. A string is a vector of bytes plus a NUL.
 *
 * Checks on top of bounds: tables are 4-byte aligned, vtables 2-byte
 * aligned, vector/string length fields 4-byte aligned, and scalar fields
 * aligned to their size (all relative to the buffer start, which is what
 * every FlatBuffers writer guarantees); vtable sizes are even and at least
 * 4; a field must lie within its table's inline size; strings are
 * NUL-terminated; and tables nest at most FB_MAX_DEPTH deep.
 *
 * All views below borrow the caller's buffer and own nothing.
 * Failures return FACENET_ERR_FORMAT with a message giving the byte offset.
 */
#ifndef FACENET_NN_IMPORT_FLATBUF_H
#define FACENET_NN_IMPORT_FLATBUF_H

#include <stddef.h>
#include <stdint.h>

#include "facenet/facenet.h"

#define FB_MAX_DEPTH 64

typedef struct fb_table {
    const uint8_t *buf;
    size_t size;
    size_t pos;           /* offset of the table (its soffset field)   */
    size_t vtable;        /* offset of its vtable                      */
    uint16_t vtable_size; /* bytes, including the two header entries   */
    uint16_t inline_size; /* bytes of the table's inline part          */
    int depth;            /* 0 for the root table                      */
} fb_table;

typedef struct fb_vector {
    const uint8_t *buf;
    size_t size;
    size_t pos;        /* offset of element 0 (just after the count) */
    uint32_t count;    /* 0 for an absent vector                     */
    size_t elem_size;  /* bytes per element (4 for a vector of tables) */
    int depth;         /* depth of the table holding the vector       */
} fb_vector;

/* Open the root table. `ident` is the expected 4-byte file identifier, or
 * NULL to accept any. */
facenet_status fb_root(const uint8_t *buf, size_t size, const char *ident,
                       fb_table *root, facenet_error *err);

/* 1 when field `field` (0-based, in schema order) is present. */
int fb_has(const fb_table *t, int field);

/* Scalar fields: *out gets the stored value, or `def` when absent. */
facenet_status fb_u8(const fb_table *t, int field, uint8_t def, uint8_t *out,
                     facenet_error *err);
facenet_status fb_i8(const fb_table *t, int field, int8_t def, int8_t *out,
                     facenet_error *err);
facenet_status fb_i32(const fb_table *t, int field, int32_t def, int32_t *out,
                      facenet_error *err);
facenet_status fb_u32(const fb_table *t, int field, uint32_t def,
                      uint32_t *out, facenet_error *err);
facenet_status fb_u64(const fb_table *t, int field, uint64_t def,
                      uint64_t *out, facenet_error *err);
facenet_status fb_f32(const fb_table *t, int field, float def, float *out,
                      facenet_error *err);

/* Sub-table field. *present is set to 0 (and *out left zeroed) when the
 * field is absent. */
facenet_status fb_table_field(const fb_table *t, int field, fb_table *out,
                              int *present, facenet_error *err);

/* Vector field of elements of `elem_size` bytes (4 for tables/strings). An
 * absent field gives an empty vector. */
facenet_status fb_vector_field(const fb_table *t, int field, size_t elem_size,
                               fb_vector *out, facenet_error *err);

/* String field: *str points into the buffer (NUL-terminated there) and
 * *len is its length; both are NULL/0 when the field is absent. */
facenet_status fb_string_field(const fb_table *t, int field, const char **str,
                               size_t *len, facenet_error *err);

/* Element i of a vector of tables. */
facenet_status fb_vector_table(const fb_vector *v, uint32_t i, fb_table *out,
                               facenet_error *err);

/* Element i of a scalar vector. The index must be < v->count and the
 * element size must match (checked: a mismatch returns 0). */
uint8_t fb_vector_u8(const fb_vector *v, uint32_t i);
int32_t fb_vector_i32(const fb_vector *v, uint32_t i);
int64_t fb_vector_i64(const fb_vector *v, uint32_t i);
float fb_vector_f32(const fb_vector *v, uint32_t i);

/* The raw bytes of a vector (v->count * v->elem_size of them). */
const uint8_t *fb_vector_bytes(const fb_vector *v);

#endif
