/*
 * testutil.h - shared helpers for the cmocka tests.
 *
 * Data-dependent tests follow one rule: when the data they need is absent
 * they exit 77 (ctest reports "skipped"), unless FACENET_REQUIRE_MODELS=1
 * (set by `make check` and CI), in which case a missing model is a failure.
 * Golden parity tests read FACENET_GOLDEN_DIR; when it is set, any
 * disagreement fails.
 */
#ifndef FACENET_TESTS_TESTUTIL_H
#define FACENET_TESTS_TESTUTIL_H

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "facenet/facenet.h"

#define TEST_SKIP_CODE 77

/* Directory of fetched models (facenet_model_dir), or exit 77 / fail. */
const char *tu_model_dir(void);

/* Load a pinned model by manifest name from tu_model_dir(); exits 77 when
 * absent (or aborts the test run when models are required). */
facenet_model *tu_load_model(const char *name);

/* $FACENET_GOLDEN_DIR or exit 77. */
const char *tu_golden_dir(void);

/* Parse golden_dir/<file> as JSON; aborts on failure. Caller decrefs. */
json_t *tu_golden_json(const char *file);

/* Read a JSON array of numbers (nested arrays are flattened in order) into
 * out[0..max); returns the count read. */
size_t tu_json_floats(const json_t *array, float *out, size_t max);

/* True when FACENET_TEST_QUICK=1: the sanitizer pass sets it so the
 * heaviest real-photo tests run the same code paths on fewer photos. */
int tu_quick(void);

/* The golden pattern: v(x, y, c) = (x*7 + y*13 + c*29) % 256. */
static inline float tu_pattern(int x, int y, int c)
{
    return (float)((x * 7 + y * 13 + c * 29) % 256);
}

double tu_cosine(const float *a, const float *b, size_t n);
float tu_max_abs_diff(const float *a, const float *b, size_t n);
float tu_max_abs(const float *a, size_t n);

/* Read a .npy float32 C-order array; returns malloc'd data and its shape.
 * Aborts on anything unexpected. */
float *tu_read_npy_f32(const char *path, int *dims, int *rank);

#endif
