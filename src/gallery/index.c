/*
 * index.c - exact top-k search over the decrypted template matrix.
 *
 * The scan is memory-bound: each query reads the whole matrix once. So the
 * kernels are simple loops the compiler vectorises (partial sums in
 * independent lanes, so float reductions need no -ffast-math), built twice
 * on x86-64 - baseline SSE2 and AVX2+FMA - and picked at run time; the
 * int4 scan, the one that has to be fastest, has an AVX2 kernel written
 * with intrinsics. Large galleries are cut into chunks that the searching
 * thread and a pool of workers claim one at a time.
 */
#include "gallery/index.h"

#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define GALLERY_X86 1
#include <immintrin.h>
#endif

#define ALIGNMENT 64
#define BLOCK_ROWS 256
#define LANES 16
/* Below this many matrix elements one thread is faster than starting more. */
#define PARALLEL_MIN_ELEMENTS (1u << 21)
#define MAX_THREADS 16

/* ---- kernels ---------------------------------------------------------------- */

/* out[r] = dot(q, rows[r]) for m rows of dim floats. */
static inline __attribute__((always_inline)) void
dot_block_f32_body(const float *restrict q, const float *restrict rows, int dim, size_t m,
                   float *restrict out)
{
    int full = dim - dim % LANES;
    for (size_t r = 0; r < m; r++) {
        const float *restrict v = rows + r * (size_t)dim;
        float acc[LANES] = {0};
        for (int d = 0; d < full; d += LANES)
            for (int j = 0; j < LANES; j++)
                acc[j] += q[d + j] * v[d + j];
        float s = 0;
        for (int d = full; d < dim; d++)
            s += q[d] * v[d];
        for (int j = 0; j < LANES / 2; j++)
            acc[j] += acc[j + LANES / 2];
        for (int j = 0; j < LANES / 2; j++)
            s += acc[j];
        out[r] = s;
    }
}

/* Integer sums are exact in any order, so the compiler vectorises the plain
 * reduction. The query is widened to int16 once, so that the loop is the
 * int16 x int16 -> int32 dot-product pattern (x86: pmaddwd, 16 products
 * per AVX2 instruction) instead of widening both sides every time. */
static inline __attribute__((always_inline)) void
dot_block_i8_body(const int16_t *restrict q, const int8_t *restrict rows, int dim, size_t m,
                  int32_t *restrict out)
{
    for (size_t r = 0; r < m; r++) {
        const int8_t *restrict v = rows + r * (size_t)dim;
        int32_t s = 0;
        for (int d = 0; d < dim; d++)
            s += (int32_t)q[d] * (int32_t)(int16_t)v[d];
        out[r] = s;
    }
}

/* The int4 rows hold value + 8 in each nibble; the query is split into
 * its even and odd dimensions (int16), so one byte of a row meets one
 * element of each. The caller subtracts 8 * sum(query) afterwards. Two
 * separate loops over the (cached) row bytes, because each is then the
 * plain int16 x int16 -> int32 reduction that gcc turns into pmaddwd; one
 * loop summing both products is not recognised and runs 1.7x slower. */
static inline __attribute__((always_inline)) void
dot_block_i4_body(const int16_t *restrict q_even, const int16_t *restrict q_odd,
                  const uint8_t *restrict rows, size_t row_bytes, size_t m, int32_t *restrict out)
{
    for (size_t r = 0; r < m; r++) {
        const uint8_t *restrict v = rows + r * row_bytes;
        int32_t low = 0, high = 0;
        for (size_t i = 0; i < row_bytes; i++)
            low += (int32_t)q_even[i] * (int32_t)(int16_t)(v[i] & 15);
        for (size_t i = 0; i < row_bytes; i++)
            high += (int32_t)q_odd[i] * (int32_t)(int16_t)(v[i] >> 4);
        out[r] = low + high;
    }
}

static void dot_block_i4_base(const int16_t *restrict qe, const int16_t *restrict qo,
                              const uint8_t *restrict rows, size_t row_bytes, size_t m,
                              int32_t *restrict out)
{
    dot_block_i4_body(qe, qo, rows, row_bytes, m, out);
}

static void dot_block_f32_base(const float *restrict q, const float *restrict rows, int dim,
                               size_t m, float *restrict out)
{
    dot_block_f32_body(q, rows, dim, m, out);
}

static void dot_block_i8_base(const int16_t *restrict q, const int8_t *restrict rows, int dim,
                              size_t m, int32_t *restrict out)
{
    dot_block_i8_body(q, rows, dim, m, out);
}

#ifdef GALLERY_X86
__attribute__((target("avx2,fma"))) static void
dot_block_f32_avx2(const float *restrict q, const float *restrict rows, int dim, size_t m,
                   float *restrict out)
{
    dot_block_f32_body(q, rows, dim, m, out);
}

__attribute__((target("avx2"))) static void
dot_block_i4_avx2(const int16_t *restrict qe, const int16_t *restrict qo,
                  const uint8_t *restrict rows, size_t row_bytes, size_t m, int32_t *restrict out)
{
    dot_block_i4_body(qe, qo, rows, row_bytes, m, out);
}

__attribute__((target("avx2"))) static void
dot_block_i8_avx2(const int16_t *restrict q, const int8_t *restrict rows, int dim, size_t m,
                  int32_t *restrict out)
{
    dot_block_i8_body(q, rows, dim, m, out);
}
/* The 4-bit scan is the one that has to be fast (1M templates in a few
 * milliseconds), and gcc does not find this form by itself: unsigned
 * nibbles times the signed int8 query with vpmaddubsw (32 products per
 * instruction, pairs summed into int16), for rows whose byte length is a
 * multiple of 32 (dim 64, 128, 192, 256, 512...). Bounds: a nibble is at
 * most 15 and a query value at most 127 in magnitude, so one maddubs lane
 * is at most 2 * 15 * 127 = 3810, the low and high nibbles of one 32-byte
 * chunk add to at most 7620, and four chunks (30480) still fit int16
 * before they are widened to int32 with vpmaddwd. Four rows are reduced
 * together with two levels of vphaddd. */
#define I4_CHUNK_BYTES 32
#ifndef I4_PREFETCH_BYTES
#define I4_PREFETCH_BYTES 2048
#endif

__attribute__((target("avx2"))) static inline __m256i
i4_row_avx2(const uint8_t *v, const uint8_t *q_even, const uint8_t *q_odd, size_t chunks)
{
    const __m256i nibble = _mm256_set1_epi8(0x0F), ones = _mm256_set1_epi16(1);
    __m256i acc32 = _mm256_setzero_si256();
    for (size_t c = 0; c < chunks; c += 4) {
        size_t end = c + 4 < chunks ? c + 4 : chunks;
        __m256i acc16 = _mm256_setzero_si256();
        for (size_t j = c; j < end; j++) {
            size_t at = j * I4_CHUNK_BYTES;
            __m256i b = _mm256_loadu_si256((const __m256i *)(const void *)(v + at));
            __m256i qe = _mm256_load_si256((const __m256i *)(const void *)(q_even + at));
            __m256i qo = _mm256_load_si256((const __m256i *)(const void *)(q_odd + at));
            __m256i lo = _mm256_and_si256(b, nibble);
            __m256i hi = _mm256_and_si256(_mm256_srli_epi16(b, 4), nibble);
            acc16 = _mm256_add_epi16(acc16, _mm256_maddubs_epi16(lo, qe));
            acc16 = _mm256_add_epi16(acc16, _mm256_maddubs_epi16(hi, qo));
        }
        acc32 = _mm256_add_epi32(acc32, _mm256_madd_epi16(acc16, ones));
    }
    return acc32;
}

/* out[r] = sum over the row of nibble * query (the caller subtracts
 * 8 * sum(query)); q_even / q_odd are 32-byte aligned int8 arrays of
 * row_bytes each. */
__attribute__((target("avx2"))) static void
dot_block_i4_maddubs(const int8_t *restrict q_even, const int8_t *restrict q_odd,
                     const uint8_t *restrict rows, size_t row_bytes, size_t m,
                     int32_t *restrict out)
{
    const uint8_t *qe = (const uint8_t *)q_even, *qo = (const uint8_t *)q_odd;
    size_t chunks = row_bytes / I4_CHUNK_BYTES, r = 0;
    for (; r + 4 <= m; r += 4) {
        const uint8_t *v = rows + r * row_bytes;
        for (size_t line = 0; line < 4 * row_bytes; line += 64)
            _mm_prefetch((const char *)(v + I4_PREFETCH_BYTES + line), _MM_HINT_T0);
        __m256i a0 = i4_row_avx2(v, qe, qo, chunks);
        __m256i a1 = i4_row_avx2(v + row_bytes, qe, qo, chunks);
        __m256i a2 = i4_row_avx2(v + 2 * row_bytes, qe, qo, chunks);
        __m256i a3 = i4_row_avx2(v + 3 * row_bytes, qe, qo, chunks);
        __m256i h = _mm256_hadd_epi32(_mm256_hadd_epi32(a0, a1), _mm256_hadd_epi32(a2, a3));
        __m128i sum = _mm_add_epi32(_mm256_castsi256_si128(h), _mm256_extracti128_si256(h, 1));
        _mm_storeu_si128((__m128i *)(void *)(out + r), sum);
    }
    for (; r < m; r++) {
        __m256i a = i4_row_avx2(rows + r * row_bytes, qe, qo, chunks);
        __m128i s4 = _mm_add_epi32(_mm256_castsi256_si128(a), _mm256_extracti128_si256(a, 1));
        s4 = _mm_hadd_epi32(s4, s4);
        s4 = _mm_hadd_epi32(s4, s4);
        out[r] = _mm_cvtsi128_si32(s4);
    }
}
#endif

typedef void (*dot_f32_fn)(const float *restrict, const float *restrict, int, size_t,
                           float *restrict);
typedef void (*dot_i8_fn)(const int16_t *restrict, const int8_t *restrict, int, size_t,
                          int32_t *restrict);

typedef void (*dot_i4_fn)(const int16_t *restrict, const int16_t *restrict,
                          const uint8_t *restrict, size_t, size_t, int32_t *restrict);

static int have_avx2(void)
{
#ifdef GALLERY_X86
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
#else
    return 0;
#endif
}

static dot_f32_fn pick_f32(void)
{
#ifdef GALLERY_X86
    if (have_avx2())
        return dot_block_f32_avx2;
#endif
    return dot_block_f32_base;
}

static dot_i8_fn pick_i8(void)
{
#ifdef GALLERY_X86
    if (have_avx2())
        return dot_block_i8_avx2;
#endif
    return dot_block_i8_base;
}

static dot_i4_fn pick_i4(void)
{
#ifdef GALLERY_X86
    if (have_avx2())
        return dot_block_i4_avx2;
#endif
    return dot_block_i4_base;
}

/* ---- rows ------------------------------------------------------------------- */

int gallery_normalise(float *v, int dim)
{
    /* Four partial sums: a single one is a chain of dependent additions. */
    double part[4] = {0, 0, 0, 0};
    int full = dim - dim % 4;
    for (int i = 0; i < full; i += 4)
        for (int j = 0; j < 4; j++)
            part[j] += (double)v[i + j] * v[i + j];
    double ss = (part[0] + part[1]) + (part[2] + part[3]);
    for (int i = full; i < dim; i++)
        ss += (double)v[i] * v[i];
    if (!(ss > 0) || !isfinite(ss))
        return -1;
    double inv = 1.0 / sqrt(ss);
    for (int i = 0; i < dim; i++)
        v[i] = (float)(v[i] * inv);
    return 0;
}

/* Opening a gallery quantises every template, so these run a million times
 * at 1M: no libm calls (fmaxf and lrintf are calls without -ffast-math).
 * Adding and subtracting 1.5 * 2^23 rounds a float to the nearest integer
 * (ties to even, as lrintf does in the default rounding mode) for
 * magnitudes below 2^22; ours are at most 127. */
#define ROUNDING_MAGIC 12582912.0f

/* Independent lanes: one running maximum would be a chain of dependent
 * max instructions (about 4 cycles per element). */
static inline float abs_max(const float *v, int dim)
{
    float lane[8] = {0};
    int full = dim - dim % 8;
    for (int i = 0; i < full; i += 8)
        for (int j = 0; j < 8; j++) {
            float a = fabsf(v[i + j]);
            lane[j] = a > lane[j] ? a : lane[j];
        }
    float m = 0;
    for (int i = full; i < dim; i++)
        m = fabsf(v[i]) > m ? fabsf(v[i]) : m;
    for (int j = 0; j < 8; j++)
        m = lane[j] > m ? lane[j] : m;
    return m;
}

static inline int round_small(float x)
{
#ifdef __FAST_MATH__
    return (int)lrintf(x); /* -ffast-math would fold the trick below away */
#else
    return (int)((x + ROUNDING_MAGIC) - ROUNDING_MAGIC);
#endif
}

void gallery_quantise(const float *v, int dim, int8_t *q, float *scale)
{
    float m = abs_max(v, dim);
    float s = m > 0 ? m / 127.0f : 1.0f;
    float inv = 1.0f / s;
    for (int i = 0; i < dim; i++) {
        int x = round_small(v[i] * inv);
        q[i] = (int8_t)(x > 127 ? 127 : x < -127 ? -127 : x);
    }
    *scale = s;
}

/* Large matrices are aligned to 2 MiB and offered to the kernel as huge
 * page candidates: a scan touches every page, and fewer TLB misses is
 * measurably more bandwidth. */
#define HUGE_PAGE (2u << 20)

void gallery_quantise4(const float *v, int dim, uint8_t *q, float *scale)
{
    int8_t x[GALLERY_INDEX_DIM_MAX + 1];
    float m = abs_max(v, dim);
    float s = m > 0 ? m / 7.0f : 1.0f;
    float inv = 1.0f / s;
    /* Two simple loops (round and clamp; pack pairs) vectorise; one loop
     * doing both does not. */
    for (int i = 0; i < dim; i++) {
        int r = round_small(v[i] * inv);
        x[i] = (int8_t)((r > 7 ? 7 : r < -7 ? -7 : r) + 8);
    }
    x[dim] = 8; /* an odd dimension pads with 8, a zero */
    for (int i = 0; i < (dim + 1) / 2; i++)
        q[i] = (uint8_t)((unsigned)x[2 * i] | (unsigned)x[2 * i + 1] << 4);
    *scale = s;
}

static void *aligned_block(size_t bytes)
{
    size_t align = bytes >= 4 * (size_t)HUGE_PAGE ? HUGE_PAGE : ALIGNMENT;
    size_t rounded = (bytes + align - 1) / align * align;
    void *p = aligned_alloc(align, rounded ? rounded : align);
#ifdef MADV_HUGEPAGE
    if (p && align == HUGE_PAGE)
        (void)madvise(p, rounded, MADV_HUGEPAGE); /* advice only */
#endif
    return p;
}

int gallery_index_init(gallery_index *ix, int dim, unsigned copies)
{
    memset(ix, 0, sizeof *ix);
    if (dim <= 0 || dim > GALLERY_INDEX_DIM_MAX)
        return -1;
    ix->dim = dim;
    ix->copies = copies & (GALLERY_INDEX_INT8 | GALLERY_INDEX_INT4);
    ix->q4_bytes = (size_t)(dim + 1) / 2;
    return 0;
}

/* Grow one array, wiping the old block (it may hold decrypted rows). */
static int grow(void **p, size_t old_bytes, size_t new_bytes, int aligned)
{
    void *q = aligned ? aligned_block(new_bytes) : malloc(new_bytes);
    if (!q)
        return -1;
    if (*p) {
        memcpy(q, *p, old_bytes);
        sodium_memzero(*p, old_bytes);
        free(*p);
    }
    *p = q;
    return 0;
}

int gallery_index_reserve(gallery_index *ix, size_t n)
{
    if (n <= ix->cap)
        return 0;
    size_t d = (size_t)ix->dim;
    if (n > SIZE_MAX / (d * sizeof(float)))
        return -1;
    if (grow((void **)&ix->vec, ix->n * d * sizeof(float), n * d * sizeof(float), 1) ||
        grow((void **)&ix->template_id, ix->n * sizeof(int64_t), n * sizeof(int64_t), 0) ||
        grow((void **)&ix->subject_id, ix->n * sizeof(int64_t), n * sizeof(int64_t), 0) ||
        grow((void **)&ix->collection_id, ix->n * sizeof(int64_t), n * sizeof(int64_t), 0))
        return -1;
    if ((ix->copies & GALLERY_INDEX_INT8) &&
        (grow((void **)&ix->q8, ix->n * d, n * d, 1) ||
         grow((void **)&ix->q8_scale, ix->n * sizeof(float), n * sizeof(float), 0)))
        return -1;
    if ((ix->copies & GALLERY_INDEX_INT4) &&
        (grow((void **)&ix->q4, ix->n * ix->q4_bytes, n * ix->q4_bytes, 1) ||
         grow((void **)&ix->q4_scale, ix->n * sizeof(float), n * sizeof(float), 0)))
        return -1;
    ix->cap = n;
    return 0;
}

int gallery_index_add(gallery_index *ix, const float *v, int64_t template_id, int64_t subject_id,
                      int64_t collection_id)
{
    size_t d = (size_t)ix->dim;
    if (ix->n == ix->cap && gallery_index_reserve(ix, ix->cap ? ix->cap * 2 : 64) != 0)
        return -1;
    float *row = ix->vec + ix->n * d;
    memcpy(row, v, d * sizeof(float));
    if (gallery_normalise(row, ix->dim) != 0) {
        sodium_memzero(row, d * sizeof(float));
        return -1;
    }
    if (ix->copies & GALLERY_INDEX_INT8)
        gallery_quantise(row, ix->dim, ix->q8 + ix->n * d, &ix->q8_scale[ix->n]);
    if (ix->copies & GALLERY_INDEX_INT4)
        gallery_quantise4(row, ix->dim, ix->q4 + ix->n * ix->q4_bytes, &ix->q4_scale[ix->n]);
    ix->template_id[ix->n] = template_id;
    ix->subject_id[ix->n] = subject_id;
    ix->collection_id[ix->n] = collection_id;
    ix->n++;
    return 0;
}

static void remove_row(gallery_index *ix, size_t i)
{
    size_t d = (size_t)ix->dim, last = ix->n - 1;
    if (i != last) {
        memcpy(ix->vec + i * d, ix->vec + last * d, d * sizeof(float));
        if (ix->copies & GALLERY_INDEX_INT8) {
            memcpy(ix->q8 + i * d, ix->q8 + last * d, d);
            ix->q8_scale[i] = ix->q8_scale[last];
        }
        if (ix->copies & GALLERY_INDEX_INT4) {
            memcpy(ix->q4 + i * ix->q4_bytes, ix->q4 + last * ix->q4_bytes, ix->q4_bytes);
            ix->q4_scale[i] = ix->q4_scale[last];
        }
        ix->template_id[i] = ix->template_id[last];
        ix->subject_id[i] = ix->subject_id[last];
        ix->collection_id[i] = ix->collection_id[last];
    }
    sodium_memzero(ix->vec + last * d, d * sizeof(float));
    if (ix->copies & GALLERY_INDEX_INT8)
        sodium_memzero(ix->q8 + last * d, d);
    if (ix->copies & GALLERY_INDEX_INT4)
        sodium_memzero(ix->q4 + last * ix->q4_bytes, ix->q4_bytes);
    ix->n--;
}

size_t gallery_index_remove_subject(gallery_index *ix, int64_t subject_id)
{
    size_t removed = 0;
    for (size_t i = 0; i < ix->n;) {
        if (ix->subject_id[i] == subject_id) {
            remove_row(ix, i); /* row i now holds the former last row */
            removed++;
        } else {
            i++;
        }
    }
    return removed;
}

size_t gallery_index_remove_collection(gallery_index *ix, int64_t collection_id)
{
    size_t removed = 0;
    for (size_t i = 0; i < ix->n;) {
        if (ix->collection_id[i] == collection_id) {
            remove_row(ix, i);
            removed++;
        } else {
            i++;
        }
    }
    return removed;
}

int gallery_index_remove_template(gallery_index *ix, int64_t template_id)
{
    for (size_t i = 0; i < ix->n; i++)
        if (ix->template_id[i] == template_id) {
            remove_row(ix, i);
            return 0;
        }
    return -1;
}

size_t gallery_index_memory(const gallery_index *ix)
{
    size_t d = (size_t)ix->dim;
    size_t per_row = d * sizeof(float) + 3 * sizeof(int64_t);
    if (ix->copies & GALLERY_INDEX_INT8)
        per_row += d + sizeof(float);
    if (ix->copies & GALLERY_INDEX_INT4)
        per_row += ix->q4_bytes + sizeof(float);
    return ix->cap * per_row;
}

void gallery_index_free(gallery_index *ix)
{
    size_t d = (size_t)ix->dim;
    if (ix->vec)
        sodium_memzero(ix->vec, ix->cap * d * sizeof(float));
    if (ix->q8)
        sodium_memzero(ix->q8, ix->cap * d);
    if (ix->q4)
        sodium_memzero(ix->q4, ix->cap * ix->q4_bytes);
    free(ix->vec);
    free(ix->q8);
    free(ix->q8_scale);
    free(ix->q4);
    free(ix->q4_scale);
    free(ix->template_id);
    free(ix->subject_id);
    free(ix->collection_id);
    memset(ix, 0, sizeof *ix);
}

/* ---- top-k by subject ------------------------------------------------------- */

/* The best k subjects seen so far, each with its best score. A candidate no
 * better than the current minimum of a full list is dropped at once; this
 * is exact because a subject's entry only leaves the list when k others beat
 * it, and the minimum never decreases. */
typedef struct topk {
    int k, n, min_i;
    float min;
    gallery_hit *e;
} topk;

static void topk_find_min(topk *t)
{
    t->min_i = 0;
    for (int i = 1; i < t->n; i++)
        if (t->e[i].score < t->e[t->min_i].score)
            t->min_i = i;
    t->min = t->e[t->min_i].score;
}

static void topk_offer(topk *t, float score, int64_t subject, size_t row)
{
    int full = t->n == t->k;
    if (full && !(score > t->min))
        return;
    for (int i = 0; i < t->n; i++)
        if (t->e[i].subject_id == subject) {
            if (score > t->e[i].score) {
                t->e[i].score = score;
                t->e[i].row = row;
                if (full && i == t->min_i)
                    topk_find_min(t);
            }
            return;
        }
    if (!full) {
        t->e[t->n].score = score;
        t->e[t->n].subject_id = subject;
        t->e[t->n].row = row;
        t->n++;
        if (t->n == t->k)
            topk_find_min(t);
        return;
    }
    t->e[t->min_i].score = score;
    t->e[t->min_i].subject_id = subject;
    t->e[t->min_i].row = row;
    topk_find_min(t);
}

static int compare_hits(const void *a, const void *b)
{
    const gallery_hit *x = a, *y = b;
    if (x->score != y->score)
        return x->score > y->score ? -1 : 1;
    return x->subject_id < y->subject_id ? -1 : x->subject_id > y->subject_id;
}

/* ---- scanning --------------------------------------------------------------- */

/* One search, shared by the threads that work on it. The rows are cut into
 * chunks that each participant claims in turn (an atomic counter), so a
 * thread that the scheduler holds back does not hold the query back: the
 * others take its share. Each participant keeps its own top-k. */
#define CHUNK_ROWS 4096
#define MAX_PARTS MAX_THREADS

typedef struct scan_shared {
    const gallery_index *ix;
    const float *q;
    const int16_t *q16;             /* int8 query, widened                */
    const int16_t *q_even, *q_odd;  /* the same, split for int4 rows       */
    const int8_t *q_even8, *q_odd8; /* as int8, for the AVX2 int4 kernel  */
    int i4_maddubs;                 /* use it (AVX2, rows of 32n bytes)   */
    int32_t q_sum;                  /* sum of the int8 query              */
    float q_scale;
    int64_t collection_id;
    gallery_scan scan;              /* FLOAT, INT8 or INT4, resolved      */
    dot_f32_fn dot_f32;
    dot_i8_fn dot_i8;
    dot_i4_fn dot_i4;
    size_t n_chunks;
    atomic_size_t next_chunk;
    atomic_int n_parts;
    int max_parts;
    topk parts[MAX_PARTS];
} scan_shared;

/* Scores of rows b..b+m of the scanned matrix (quantised or not). */
static void block_scores(const scan_shared *job, size_t b, size_t m, float *scores)
{
    const gallery_index *ix = job->ix;
    size_t d = (size_t)ix->dim;
    int32_t dots[BLOCK_ROWS];
    if (job->scan == GALLERY_SCAN_INT8) {
        job->dot_i8(job->q16, ix->q8 + b * d, ix->dim, m, dots);
        for (size_t j = 0; j < m; j++)
            scores[j] = (float)dots[j] * job->q_scale * ix->q8_scale[b + j];
    } else if (job->scan == GALLERY_SCAN_INT4) {
#ifdef GALLERY_X86
        if (job->i4_maddubs)
            dot_block_i4_maddubs(job->q_even8, job->q_odd8, ix->q4 + b * ix->q4_bytes,
                                 ix->q4_bytes, m, dots);
        else
#endif
            job->dot_i4(job->q_even, job->q_odd, ix->q4 + b * ix->q4_bytes, ix->q4_bytes, m,
                        dots);
        int32_t offset = 8 * job->q_sum;
        for (size_t j = 0; j < m; j++)
            scores[j] = (float)(dots[j] - offset) * job->q_scale * ix->q4_scale[b + j];
    } else {
        job->dot_f32(job->q, ix->vec + b * d, ix->dim, m, scores);
    }
}

static void scan_rows(const scan_shared *job, topk *t, size_t begin, size_t end)
{
    const gallery_index *ix = job->ix;
    float scores[BLOCK_ROWS];
    for (size_t b = begin; b < end; b += BLOCK_ROWS) {
        size_t m = end - b < BLOCK_ROWS ? end - b : BLOCK_ROWS;
        block_scores(job, b, m, scores);
        /* Almost every row fails the first test; keep it a plain compare
         * against a local so that the loop is one compare and branch. */
        float min = t->n == t->k ? t->min : -INFINITY;
        for (size_t j = 0; j < m; j++) {
            if (!(scores[j] > min))
                continue;
            if (job->collection_id && ix->collection_id[b + j] != job->collection_id)
                continue;
            topk_offer(t, scores[j], ix->subject_id[b + j], b + j);
            min = t->n == t->k ? t->min : -INFINITY;
        }
    }
}

/* Take part in a search: claim chunks until none are left. */
static void scan_participate(scan_shared *job)
{
    int me = atomic_fetch_add(&job->n_parts, 1);
    if (me >= job->max_parts)
        return;
    topk *t = &job->parts[me];
    for (;;) {
        size_t c = atomic_fetch_add(&job->next_chunk, 1);
        if (c >= job->n_chunks)
            return;
        size_t begin = c * CHUNK_ROWS;
        size_t end = begin + CHUNK_ROWS < job->ix->n ? begin + CHUNK_ROWS : job->ix->n;
        scan_rows(job, t, begin, end);
    }
}

static void *scan_thread(void *arg)
{
    scan_participate(arg);
    return NULL;
}

/* ---- worker pool -------------------------------------------------------------- */

/* Starting threads for every query costs little on an idle machine, but on
 * a busy one a new thread may wait a whole time slice to run, and the query
 * with it. The pool's workers sleep until a search posts a job; the
 * searching thread scans too, and when it has claimed the last chunk it
 * withdraws the job, so a worker that has not woken up by then is never
 * waited for. One search uses the pool at a time; a concurrent search scans
 * on its own thread (the cores are busy anyway). */
struct gallery_pool {
    pthread_mutex_t owner; /* held by the search using the pool        */
    pthread_mutex_t mu;    /* guards everything below                  */
    pthread_cond_t wake, idle;
    scan_shared *job;      /* the posted job, or NULL                  */
    uint64_t generation;   /* incremented for every job posted         */
    int active;            /* workers inside the current job           */
    int stop;
    int n_workers;
    pthread_t workers[MAX_THREADS];
};

static void *pool_worker(void *arg)
{
    gallery_pool *p = arg;
    uint64_t seen = 0;
    pthread_mutex_lock(&p->mu);
    for (;;) {
        while (!p->stop && (!p->job || p->generation == seen))
            pthread_cond_wait(&p->wake, &p->mu);
        if (p->stop)
            break;
        seen = p->generation;
        scan_shared *job = p->job;
        p->active++;
        pthread_mutex_unlock(&p->mu);
        scan_participate(job);
        pthread_mutex_lock(&p->mu);
        if (--p->active == 0)
            pthread_cond_broadcast(&p->idle);
    }
    pthread_mutex_unlock(&p->mu);
    return NULL;
}

gallery_pool *gallery_pool_create(int workers)
{
    gallery_pool *p = calloc(1, sizeof *p);
    if (!p)
        return NULL;
    if (workers > MAX_THREADS - 1)
        workers = MAX_THREADS - 1;
    pthread_mutex_init(&p->owner, NULL);
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->wake, NULL);
    pthread_cond_init(&p->idle, NULL);
    for (int i = 0; i < workers; i++) {
        if (pthread_create(&p->workers[p->n_workers], NULL, pool_worker, p) != 0)
            break; /* fewer workers: searches still work */
        p->n_workers++;
    }
    return p;
}

void gallery_pool_free(gallery_pool *p)
{
    if (!p)
        return;
    pthread_mutex_lock(&p->mu);
    p->stop = 1;
    pthread_cond_broadcast(&p->wake);
    pthread_mutex_unlock(&p->mu);
    for (int i = 0; i < p->n_workers; i++)
        pthread_join(p->workers[i], NULL);
    pthread_cond_destroy(&p->wake);
    pthread_cond_destroy(&p->idle);
    pthread_mutex_destroy(&p->mu);
    pthread_mutex_destroy(&p->owner);
    free(p);
}

int gallery_pool_size(const gallery_pool *p)
{
    return p ? p->n_workers : 0;
}

/* Run the job on this thread and the pool's workers. Returns -1 when the
 * pool is in use by another search (the caller scans alone). */
static int run_on_pool(gallery_pool *p, scan_shared *job)
{
    if (pthread_mutex_trylock(&p->owner) != 0)
        return -1;
    pthread_mutex_lock(&p->mu);
    p->job = job;
    p->generation++;
    pthread_cond_broadcast(&p->wake);
    pthread_mutex_unlock(&p->mu);
    scan_participate(job);
    pthread_mutex_lock(&p->mu);
    p->job = NULL; /* late workers find nothing to do */
    while (p->active > 0)
        pthread_cond_wait(&p->idle, &p->mu);
    pthread_mutex_unlock(&p->mu);
    pthread_mutex_unlock(&p->owner);
    return 0;
}

/* Run the job on this thread and n - 1 threads started for it. */
static void run_on_threads(scan_shared *job, int n)
{
    pthread_t tids[MAX_THREADS];
    int started[MAX_THREADS] = {0};
    for (int i = 1; i < n; i++)
        started[i] = pthread_create(&tids[i], NULL, scan_thread, job) == 0;
    scan_participate(job);
    for (int i = 1; i < n; i++)
        if (started[i])
            pthread_join(tids[i], NULL);
}

int gallery_index_threads(const gallery_index *ix, int requested)
{
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    int t = requested > 0 ? requested
            : (ix->n * (size_t)ix->dim >= PARALLEL_MIN_ELEMENTS && cpus > 1) ? (int)cpus
                                                                              : 1;
    if (t > MAX_THREADS)
        t = MAX_THREADS;
    if ((size_t)t > ix->n / CHUNK_ROWS + 1)
        t = (int)(ix->n / CHUNK_ROWS + 1);
    return t < 1 ? 1 : t;
}

static gallery_scan resolve_scan(const gallery_index *ix, gallery_scan want)
{
    int has8 = (ix->copies & GALLERY_INDEX_INT8) != 0, has4 = (ix->copies & GALLERY_INDEX_INT4) != 0;
    switch (want) {
    case GALLERY_SCAN_INT8: return has8 ? GALLERY_SCAN_INT8 : GALLERY_SCAN_FLOAT;
    case GALLERY_SCAN_INT4: return has4 ? GALLERY_SCAN_INT4 : GALLERY_SCAN_FLOAT;
    case GALLERY_SCAN_AUTO:
        return has4 ? GALLERY_SCAN_INT4 : has8 ? GALLERY_SCAN_INT8 : GALLERY_SCAN_FLOAT;
    default: return GALLERY_SCAN_FLOAT;
    }
}

/* The quantised query: int8 (as int16), its even/odd halves for int4 rows
 * (as int16 for the portable kernel, as int8 for the AVX2 one), and its
 * sum. One block, wiped and freed by the caller. */
typedef struct query_q {
    int16_t *q16, *even, *odd;
    int8_t *even8, *odd8; /* 32-byte aligned, zero-padded to 32 bytes */
    int32_t sum;
    float scale;
    void *block;
    size_t block_bytes;
} query_q;

static size_t round_up(size_t n, size_t to)
{
    return (n + to - 1) / to * to;
}

static int quantise_query(const gallery_index *ix, const float *v, query_q *qq)
{
    size_t d = (size_t)ix->dim, half = ix->q4_bytes;
    size_t wide = round_up((d + 2 * half) * sizeof(int16_t), 32), narrow = round_up(half, 32);
    int8_t *q8 = malloc(d);
    memset(qq, 0, sizeof *qq);
    qq->block_bytes = wide + 2 * narrow;
    qq->block = aligned_block(qq->block_bytes);
    if (!q8 || !qq->block) {
        free(q8);
        free(qq->block);
        qq->block = NULL;
        return -1;
    }
    memset(qq->block, 0, qq->block_bytes);
    qq->q16 = qq->block;
    qq->even = qq->q16 + d;
    qq->odd = qq->even + half;
    qq->even8 = (int8_t *)qq->block + wide;
    qq->odd8 = qq->even8 + narrow;
    gallery_quantise(v, ix->dim, q8, &qq->scale);
    for (size_t i = 0; i < d; i++) {
        qq->q16[i] = q8[i]; /* NOLINT(bugprone-signed-char-misuse): a signed value, widened */
        if (i % 2) {
            qq->odd[i / 2] = q8[i]; /* NOLINT(bugprone-signed-char-misuse) */
            qq->odd8[i / 2] = q8[i];
        } else {
            qq->even[i / 2] = q8[i]; /* NOLINT(bugprone-signed-char-misuse) */
            qq->even8[i / 2] = q8[i];
        }
        qq->sum += q8[i];
    }
    sodium_memzero(q8, d);
    free(q8);
    return 0;
}

static void job_init(scan_shared *job, const gallery_index *ix, const gallery_query *q,
                     gallery_scan scan, const query_q *qq, int k_scan, int max_parts,
                     gallery_hit *pool)
{
    job->ix = ix;
    job->q = q->vector;
    job->q16 = qq->q16;
    job->q_even = qq->even;
    job->q_odd = qq->odd;
    job->q_even8 = qq->even8;
    job->q_odd8 = qq->odd8;
    job->i4_maddubs = have_avx2() && ix->q4_bytes % I4_CHUNK_BYTES == 0;
    job->q_sum = qq->sum;
    job->q_scale = qq->scale;
    job->collection_id = q->collection_id;
    job->scan = scan;
    job->dot_f32 = pick_f32();
    job->dot_i8 = pick_i8();
    job->dot_i4 = pick_i4();
    job->n_chunks = (ix->n + CHUNK_ROWS - 1) / CHUNK_ROWS;
    atomic_init(&job->next_chunk, 0);
    atomic_init(&job->n_parts, 0);
    job->max_parts = max_parts;
    for (int i = 0; i < max_parts; i++) {
        job->parts[i].k = k_scan;
        job->parts[i].n = 0;
        job->parts[i].min = 0;
        job->parts[i].min_i = 0;
        job->parts[i].e = pool + (size_t)i * (size_t)k_scan;
    }
}

size_t gallery_index_score_subject(const gallery_index *ix, const float *v, int64_t subject_id,
                                   gallery_hit *best)
{
    /* The kernel the search's float rescoring uses, so both report the
     * same score for the same template. */
    const dot_f32_fn dot = pick_f32();
    size_t found = 0;
    for (size_t i = 0; i < ix->n; i++) {
        if (ix->subject_id[i] != subject_id)
            continue;
        float score;
        dot(v, ix->vec + i * (size_t)ix->dim, ix->dim, 1, &score);
        if (found == 0 || score > best->score) {
            best->score = score;
            best->row = i;
            best->subject_id = subject_id;
        }
        found++;
    }
    return found;
}

int gallery_index_scan_scores(const gallery_index *ix, const float *v, gallery_scan scan,
                              int portable, float *scores)
{
    scan_shared *job = malloc(sizeof *job);
    query_q qq = {0};
    gallery_query q = {v, 1, 0, scan, 1, NULL};
    int rc = -1;
    scan = resolve_scan(ix, scan);
    if (job && (scan == GALLERY_SCAN_FLOAT || quantise_query(ix, v, &qq) == 0)) {
        job_init(job, ix, &q, scan, &qq, 1, 0, NULL);
        if (portable) {
            job->i4_maddubs = 0;
            job->dot_f32 = dot_block_f32_base;
            job->dot_i8 = dot_block_i8_base;
            job->dot_i4 = dot_block_i4_base;
        }
        for (size_t b = 0; b < ix->n; b += BLOCK_ROWS)
            block_scores(job, b, ix->n - b < BLOCK_ROWS ? ix->n - b : BLOCK_ROWS, scores + b);
        rc = 0;
    }
    if (qq.block) {
        sodium_memzero(qq.block, qq.block_bytes);
        free(qq.block);
    }
    free(job);
    return rc;
}

size_t gallery_index_search(const gallery_index *ix, const gallery_query *q, gallery_hit *hits)
{
    scan_shared *job = NULL;
    query_q qq = {0};
    size_t result = (size_t)-1;
    gallery_scan scan = resolve_scan(ix, q->scan);
    /* A quantised scan keeps spare candidates for the float rescoring. */
    int k_scan = scan == GALLERY_SCAN_INT8   ? (q->k * 4 > 32 ? q->k * 4 : 32)
                 : scan == GALLERY_SCAN_INT4 ? (q->k * 8 > 64 ? q->k * 8 : 64)
                                             : q->k;
    int n_threads = gallery_index_threads(ix, q->threads);
    gallery_hit *pool = NULL;
    topk merged;

    if (q->k < 1 || q->k > GALLERY_MAX_K)
        return (size_t)-1;
    if (ix->n == 0)
        return 0;
    job = malloc(sizeof *job);
    pool = malloc(sizeof *pool * (size_t)k_scan * (MAX_PARTS + 1));
    if (!job || !pool)
        goto done;
    if (scan != GALLERY_SCAN_FLOAT && quantise_query(ix, q->vector, &qq) != 0)
        goto done;
    job_init(job, ix, q, scan, &qq, k_scan, MAX_PARTS, pool);
    if (n_threads > 1 && q->pool && gallery_pool_size(q->pool) > 0) {
        if (run_on_pool(q->pool, job) != 0)
            scan_participate(job); /* the pool is busy with another search */
    } else {
        run_on_threads(job, n_threads);
    }
    merged.k = k_scan;
    merged.n = 0;
    merged.min = 0;
    merged.min_i = 0;
    merged.e = pool + (size_t)MAX_PARTS * (size_t)k_scan;
    int parts = atomic_load(&job->n_parts);
    if (parts > MAX_PARTS)
        parts = MAX_PARTS;
    for (int i = 0; i < parts; i++)
        for (int e = 0; e < job->parts[i].n; e++)
            topk_offer(&merged, job->parts[i].e[e].score, job->parts[i].e[e].subject_id,
                       job->parts[i].e[e].row);
    if (scan != GALLERY_SCAN_FLOAT) {
        /* Exact float scores for the candidates, then the final order. */
        for (int e = 0; e < merged.n; e++)
            job->dot_f32(q->vector, ix->vec + merged.e[e].row * (size_t)ix->dim, ix->dim, 1,
                         &merged.e[e].score);
    }
    qsort(merged.e, (size_t)merged.n, sizeof *merged.e, compare_hits);
    result = (size_t)(merged.n < q->k ? merged.n : q->k);
    memcpy(hits, merged.e, result * sizeof *hits);
done:
    if (qq.block) {
        sodium_memzero(qq.block, qq.block_bytes);
        free(qq.block);
    }
    free(job);
    free(pool);
    return result;
}
