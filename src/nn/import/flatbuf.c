#include "nn/import/flatbuf.h"

#include <string.h>

#include "common/error.h"

/* ---- raw little-endian loads (callers have checked the bounds) --------- */

static uint16_t load_u16(const uint8_t *p)
{
    return (uint16_t)(p[0] | (p[1] << 8));
}

static uint32_t load_u32(const uint8_t *p)
{
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) |
           ((uint32_t)p[3] << 24);
}

static uint64_t load_u64(const uint8_t *p)
{
    return (uint64_t)load_u32(p) | ((uint64_t)load_u32(p + 4) << 32);
}

/* 1 when [pos, pos + len) lies inside a buffer of `size` bytes. Written so
 * that no sum can overflow. */
static int in_bounds(size_t size, size_t pos, size_t len)
{
    return pos <= size && len <= size - pos;
}

/* ---- tables ------------------------------------------------------------ */

/* Validate the table at `pos` and its vtable, and fill *t. */
static facenet_status open_table(const uint8_t *buf, size_t size, size_t pos,
                                 int depth, fb_table *t, facenet_error *err)
{
    int32_t soff;
    int64_t vt;

    if (depth > FB_MAX_DEPTH)
        return fn_fail(err, FACENET_ERR_FORMAT,
                       "flatbuffer: tables nested deeper than %d at offset %zu",
                       FB_MAX_DEPTH, pos);
    if (pos % 4 != 0)
        return fn_fail(err, FACENET_ERR_FORMAT,
                       "flatbuffer: table at offset %zu is not 4-byte aligned",
                       pos);
    if (!in_bounds(size, pos, 4))
        return fn_fail(err, FACENET_ERR_FORMAT,
                       "flatbuffer: table at offset %zu lies past the end of the "
                       "buffer (%zu bytes)", pos, size);
    soff = (int32_t)load_u32(buf + pos);
    vt = (int64_t)pos - (int64_t)soff;
    if (vt < 0 || vt % 2 != 0 || !in_bounds(size, (size_t)vt, 4))
        return fn_fail(err, FACENET_ERR_FORMAT,
                       "flatbuffer: table at offset %zu has its vtable at %lld, "
                       "outside the buffer (%zu bytes) or misaligned",
                       pos, (long long)vt, size);

    memset(t, 0, sizeof *t);
    t->buf = buf;
    t->size = size;
    t->pos = pos;
    t->vtable = (size_t)vt;
    t->vtable_size = load_u16(buf + t->vtable);
    t->inline_size = load_u16(buf + t->vtable + 2);
    t->depth = depth;
    if (t->vtable_size < 4 || t->vtable_size % 2 != 0 ||
        !in_bounds(size, t->vtable, t->vtable_size))
        return fn_fail(err, FACENET_ERR_FORMAT,
                       "flatbuffer: vtable at offset %zu (of the table at %zu) "
                       "has a bad size %u", t->vtable, pos,
                       (unsigned)t->vtable_size);
    if (t->inline_size < 4 || !in_bounds(size, pos, t->inline_size))
        return fn_fail(err, FACENET_ERR_FORMAT,
                       "flatbuffer: table at offset %zu claims %u inline bytes, "
                       "past the end of the buffer (%zu bytes)",
                       pos, (unsigned)t->inline_size, size);
    return FACENET_OK;
}

facenet_status fb_root(const uint8_t *buf, size_t size, const char *ident,
                       fb_table *root, facenet_error *err)
{
    memset(root, 0, sizeof *root);
    if (!buf || size < 8)
        return fn_fail(err, FACENET_ERR_FORMAT,
                       "flatbuffer: %zu bytes is too short for a flatbuffer",
                       buf ? size : 0);
    if (ident && memcmp(buf + 4, ident, 4) != 0)
        return fn_fail(err, FACENET_ERR_FORMAT,
                       "flatbuffer: file identifier is not \"%.4s\"", ident);
    return open_table(buf, size, load_u32(buf), 0, root, err);
}

/* Offset of the field's value inside the table, or 0 when absent. */
static size_t field_offset(const fb_table *t, int field)
{
    size_t entry;
    if (field < 0)
        return 0;
    entry = 4 + 2 * (size_t)field;
    if (entry + 2 > t->vtable_size)
        return 0;
    return load_u16(t->buf + t->vtable + entry);
}

int fb_has(const fb_table *t, int field)
{
    return field_offset(t, field) != 0;
}

/* Locate a present field of `len` bytes, checking it lies in the table and
 * is aligned to `align`. *pos = 0 when absent. */
static facenet_status field_pos(const fb_table *t, int field, size_t len,
                                size_t align, size_t *pos, facenet_error *err)
{
    size_t off = field_offset(t, field);
    *pos = 0;
    if (off == 0)
        return FACENET_OK;
    if (off < 4 || off > t->inline_size || len > t->inline_size - off)
        return fn_fail(err, FACENET_ERR_FORMAT,
                       "flatbuffer: field %d of the table at offset %zu lies "
                       "outside its %u inline bytes", field, t->pos,
                       (unsigned)t->inline_size);
    if ((t->pos + off) % align != 0)
        return fn_fail(err, FACENET_ERR_FORMAT,
                       "flatbuffer: field %d of the table at offset %zu is "
                       "misaligned (offset %zu)", field, t->pos, t->pos + off);
    *pos = t->pos + off;
    return FACENET_OK;
}

facenet_status fb_u8(const fb_table *t, int field, uint8_t def, uint8_t *out,
                     facenet_error *err)
{
    size_t pos;
    facenet_status st = field_pos(t, field, 1, 1, &pos, err);
    *out = def;
    if (st == FACENET_OK && pos)
        *out = t->buf[pos];
    return st;
}

facenet_status fb_i8(const fb_table *t, int field, int8_t def, int8_t *out,
                     facenet_error *err)
{
    uint8_t v;
    facenet_status st = fb_u8(t, field, (uint8_t)def, &v, err);
    *out = (int8_t)v;
    return st;
}

facenet_status fb_u32(const fb_table *t, int field, uint32_t def,
                      uint32_t *out, facenet_error *err)
{
    size_t pos;
    facenet_status st = field_pos(t, field, 4, 4, &pos, err);
    *out = def;
    if (st == FACENET_OK && pos)
        *out = load_u32(t->buf + pos);
    return st;
}

facenet_status fb_i32(const fb_table *t, int field, int32_t def, int32_t *out,
                      facenet_error *err)
{
    uint32_t v;
    facenet_status st = fb_u32(t, field, (uint32_t)def, &v, err);
    *out = (int32_t)v;
    return st;
}

facenet_status fb_u64(const fb_table *t, int field, uint64_t def,
                      uint64_t *out, facenet_error *err)
{
    size_t pos;
    facenet_status st = field_pos(t, field, 8, 8, &pos, err);
    *out = def;
    if (st == FACENET_OK && pos)
        *out = load_u64(t->buf + pos);
    return st;
}

facenet_status fb_f32(const fb_table *t, int field, float def, float *out,
                      facenet_error *err)
{
    size_t pos;
    facenet_status st = field_pos(t, field, 4, 4, &pos, err);
    *out = def;
    if (st == FACENET_OK && pos) {
        uint32_t bits = load_u32(t->buf + pos);
        memcpy(out, &bits, sizeof *out);
    }
    return st;
}

/* Follow the uoffset stored in a field. *target = 0 when absent. */
static facenet_status follow(const fb_table *t, int field, size_t *target,
                             facenet_error *err)
{
    size_t pos;
    uint32_t rel;
    facenet_status st = field_pos(t, field, 4, 4, &pos, err);

    *target = 0;
    if (st != FACENET_OK || pos == 0)
        return st;
    rel = load_u32(t->buf + pos);
    if (rel == 0 || !in_bounds(t->size, pos, rel) || pos + rel >= t->size)
        return fn_fail(err, FACENET_ERR_FORMAT,
                       "flatbuffer: field %d of the table at offset %zu points "
                       "to %zu + %u, outside the buffer (%zu bytes)",
                       field, t->pos, pos, (unsigned)rel, t->size);
    *target = pos + rel;
    return FACENET_OK;
}

facenet_status fb_table_field(const fb_table *t, int field, fb_table *out,
                              int *present, facenet_error *err)
{
    size_t target;
    facenet_status st = follow(t, field, &target, err);

    memset(out, 0, sizeof *out);
    *present = 0;
    if (st != FACENET_OK || target == 0)
        return st;
    st = open_table(t->buf, t->size, target, t->depth + 1, out, err);
    if (st == FACENET_OK)
        *present = 1;
    return st;
}

/* Validate a vector (or string body) whose length field is at `pos`. */
static facenet_status open_vector(const uint8_t *buf, size_t size, size_t pos,
                                  size_t elem_size, int depth, fb_vector *v,
                                  facenet_error *err)
{
    uint32_t count;

    memset(v, 0, sizeof *v);
    if (pos % 4 != 0 || !in_bounds(size, pos, 4))
        return fn_fail(err, FACENET_ERR_FORMAT,
                       "flatbuffer: vector at offset %zu is misaligned or past "
                       "the end of the buffer (%zu bytes)", pos, size);
    count = load_u32(buf + pos);
    if (elem_size == 0 || count > (size - pos - 4) / elem_size)
        return fn_fail(err, FACENET_ERR_FORMAT,
                       "flatbuffer: vector at offset %zu claims %u elements of "
                       "%zu bytes, past the end of the buffer (%zu bytes)",
                       pos, (unsigned)count, elem_size, size);
    v->buf = buf;
    v->size = size;
    v->pos = pos + 4;
    v->count = count;
    v->elem_size = elem_size;
    v->depth = depth;
    return FACENET_OK;
}

facenet_status fb_vector_field(const fb_table *t, int field, size_t elem_size,
                               fb_vector *out, facenet_error *err)
{
    size_t target;
    facenet_status st = follow(t, field, &target, err);

    memset(out, 0, sizeof *out);
    out->buf = t->buf;
    out->size = t->size;
    out->elem_size = elem_size;
    out->depth = t->depth;
    if (st != FACENET_OK || target == 0)
        return st;
    st = open_vector(t->buf, t->size, target, elem_size, t->depth, out, err);
    if (st != FACENET_OK)
        fn_error_prefix(err, "field %d of the table at offset %zu", field,
                        t->pos);
    return st;
}

facenet_status fb_string_field(const fb_table *t, int field, const char **str,
                               size_t *len, facenet_error *err)
{
    size_t target;
    fb_vector v;
    facenet_status st = follow(t, field, &target, err);

    *str = NULL;
    *len = 0;
    if (st != FACENET_OK || target == 0)
        return st;
    st = open_vector(t->buf, t->size, target, 1, t->depth, &v, err);
    if (st != FACENET_OK)
        return st;
    /* The terminating NUL must be inside the buffer too. */
    if (v.pos + v.count >= t->size || t->buf[v.pos + v.count] != '\0')
        return fn_fail(err, FACENET_ERR_FORMAT,
                       "flatbuffer: string at offset %zu (field %d of the table "
                       "at %zu) is not NUL-terminated", target, field, t->pos);
    *str = (const char *)(t->buf + v.pos);
    *len = v.count;
    return FACENET_OK;
}

facenet_status fb_vector_table(const fb_vector *v, uint32_t i, fb_table *out,
                               facenet_error *err)
{
    size_t pos;
    uint32_t rel;

    memset(out, 0, sizeof *out);
    if (i >= v->count || v->elem_size != 4)
        return fn_fail(err, FACENET_ERR_INTERNAL,
                       "flatbuffer: table index %u out of range (%u)",
                       (unsigned)i, (unsigned)v->count);
    pos = v->pos + 4 * (size_t)i;
    rel = load_u32(v->buf + pos);
    if (rel == 0 || !in_bounds(v->size, pos, rel) || pos + rel >= v->size)
        return fn_fail(err, FACENET_ERR_FORMAT,
                       "flatbuffer: element %u of the vector at offset %zu "
                       "points outside the buffer (%zu bytes)",
                       (unsigned)i, v->pos - 4, v->size);
    return open_table(v->buf, v->size, pos + rel, v->depth + 1, out, err);
}

static const uint8_t *element(const fb_vector *v, uint32_t i, size_t size)
{
    if (i >= v->count || v->elem_size != size)
        return NULL;
    return v->buf + v->pos + (size_t)i * size;
}

uint8_t fb_vector_u8(const fb_vector *v, uint32_t i)
{
    const uint8_t *p = element(v, i, 1);
    return p ? *p : 0;
}

int32_t fb_vector_i32(const fb_vector *v, uint32_t i)
{
    const uint8_t *p = element(v, i, 4);
    return p ? (int32_t)load_u32(p) : 0;
}

int64_t fb_vector_i64(const fb_vector *v, uint32_t i)
{
    const uint8_t *p = element(v, i, 8);
    return p ? (int64_t)load_u64(p) : 0;
}

float fb_vector_f32(const fb_vector *v, uint32_t i)
{
    const uint8_t *p = element(v, i, 4);
    float f = 0.0f;
    if (p) {
        uint32_t bits = load_u32(p);
        memcpy(&f, &bits, sizeof f);
    }
    return f;
}

const uint8_t *fb_vector_bytes(const fb_vector *v)
{
    return v->buf + v->pos;
}
