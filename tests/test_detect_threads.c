/* The detector's threads: pyramid levels (the largest cut into bands of
 * P-Net cells) and crop batches spread over 1, 2 or 3 threads give the
 * same faces, byte for byte, as one thread, which runs every level whole; the
 * thread count is validated and a failed change keeps the old one. Runs
 * on the demo photos (FACENET_DEMO_DIR) and one LFW image when present,
 * else on a synthetic image. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "support/testutil.h"

static facenet_detector *detector;

/* A 640x480 version of the photo (box filter), or the photo itself. */
static facenet_image *load_photo(const char *path, int shrink_to_640)
{
    facenet_image *img = NULL, *small = NULL;
    facenet_error err;
    if (facenet_image_load(path, NULL, &img, &err) != FACENET_OK)
        return NULL;
    if (!shrink_to_640)
        return img;
    const int sw = facenet_image_width(img), sh = facenet_image_height(img);
    const int fx = sw / 640, fy = sh / 480;
    uint8_t *px = fx >= 1 && fy >= 1 ? malloc((size_t)640 * 480 * 3) : NULL;
    if (px) {
        const uint8_t *s = facenet_image_pixels(img);
        for (int y = 0; y < 480; y++)
            for (int x = 0; x < 640; x++)
                for (int c = 0; c < 3; c++) {
                    unsigned sum = 0;
                    for (int dy = 0; dy < fy; dy++)
                        for (int dx = 0; dx < fx; dx++)
                            sum += s[((size_t)(y * fy + dy) * sw + (size_t)(x * fx + dx)) * 3 + c];
                    px[((size_t)y * 640 + x) * 3 + c] = (uint8_t)(sum / (unsigned)(fx * fy));
                }
        facenet_image_from_rgb(px, 640, 480, 640 * 3, &small, NULL);
    }
    free(px);
    facenet_image_free(img);
    return small;
}

/* A synthetic photo: the test pattern, so detection runs every stage's
 * code even without the photos (it may find no face). */
static facenet_image *pattern_photo(int w, int h)
{
    uint8_t *px = malloc((size_t)w * h * 3);
    facenet_image *img = NULL;
    assert_non_null(px);
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++)
            for (int c = 0; c < 3; c++)
                px[((size_t)y * w + x) * 3 + c] = (uint8_t)tu_pattern(x, y, c);
    assert_int_equal(facenet_image_from_rgb(px, w, h, (size_t)w * 3, &img, NULL), FACENET_OK);
    free(px);
    return img;
}

/* The w x h window of `img` from (x0, y0), made through a wider row
 * stride, so the detector reads a strided image of odd size. */
static facenet_image *window(const facenet_image *img, int x0, int y0, int w, int h)
{
    const size_t stride = (size_t)facenet_image_width(img) * 3;
    facenet_image *out = NULL;
    assert_true(x0 + w <= facenet_image_width(img) && y0 + h <= facenet_image_height(img));
    assert_int_equal(facenet_image_from_rgb(facenet_image_pixels(img) + (size_t)y0 * stride +
                                                (size_t)x0 * 3,
                                            w, h, stride, &out, NULL),
                     FACENET_OK);
    return out;
}

static void detect_with(int threads, const facenet_image *img, int min_size,
                        facenet_face **faces, size_t *n)
{
    facenet_detect_options opt;
    facenet_error err;
    facenet_detect_options_default(&opt);
    opt.min_size = min_size;
    assert_int_equal(facenet_detector_set_threads(detector, threads, &err), FACENET_OK);
    assert_int_equal(facenet_detector_threads(detector), threads);
    if (facenet_detect(detector, img, &opt, faces, n, &err) != FACENET_OK)
        fail_msg("detect with %d threads: %s", threads, err.message);
}

static void check_same_faces(const facenet_image *img, int min_size, const char *what,
                             int has_faces)
{
    facenet_face *one = NULL;
    size_t n_one = 0;
    detect_with(1, img, min_size, &one, &n_one);
    if (has_faces && n_one == 0)
        fail_msg("%s: no face found", what);
    for (int threads = 2; threads <= 3; threads++) {
        facenet_face *many = NULL;
        size_t n_many = 0;
        /* Twice: the second run reuses the grown scratch buffers. */
        for (int run = 0; run < 2; run++) {
            detect_with(threads, img, min_size, &many, &n_many);
            if (n_many != n_one || (n_one && memcmp(one, many, n_one * sizeof *one) != 0))
                fail_msg("%s: %d threads found %zu faces, 1 thread %zu, or they differ", what,
                         threads, n_many, n_one);
            free(many);
        }
    }
    free(one);
}

static void test_threads_give_identical_faces(void **state)
{
    const char *demo = getenv("FACENET_DEMO_DIR");
    const char *lfw = getenv("FACENET_LFW_DIR");
    char path[4096];
    int photos = 0;
    (void)state;

    facenet_image *pattern = pattern_photo(301, 207);
    check_same_faces(pattern, 20, "pattern", 0);
    facenet_image_free(pattern);
    if (demo && *demo) {
        snprintf(path, sizeof path, "%s/sample1.jpg", demo);
        facenet_image *img = load_photo(path, 1);
        if (img) {
            check_same_faces(img, 40, "sample1 at 640x480", 1);
            /* Odd sizes, so that with 2 and 3 threads the largest levels
             * are cut into bands whose edges fall on every parity; the
             * faces must still equal one thread's, which runs each level
             * whole. */
            static const int windows[][5] = {
                {0, 0, 639, 479, 20}, {3, 5, 517, 411, 40}, {1, 2, 601, 333, 27},
            };
            for (size_t i = 0; i < sizeof windows / sizeof windows[0]; i++) {
                const int *v = windows[i];
                char what[64];
                facenet_image *part = window(img, v[0], v[1], v[2], v[3]);
                snprintf(what, sizeof what, "sample1 window %dx%d, min face %d", v[2], v[3],
                         v[4]);
                check_same_faces(part, v[4], what, 1);
                facenet_image_free(part);
            }
            facenet_image_free(img);
            photos++;
        }
        if (!tu_quick()) {
            snprintf(path, sizeof path, "%s/sample4.jpg", demo);
            img = load_photo(path, 0);
            if (img) {
                check_same_faces(img, 20, "sample4", 1);
                facenet_image_free(img);
                photos++;
            }
        }
    }
    if (lfw && *lfw) {
        snprintf(path, sizeof path, "%s/Angela_Bassett/Angela_Bassett_0003.jpg", lfw);
        facenet_image *img = load_photo(path, 0);
        if (img) {
            check_same_faces(img, 20, "Angela_Bassett_0003", 1);
            facenet_image_free(img);
            photos++;
        }
    }
    if (photos == 0)
        fprintf(stderr, "note: no photos (FACENET_DEMO_DIR, FACENET_LFW_DIR); pattern only\n");
}

static void test_thread_count_is_validated(void **state)
{
    facenet_error err;
    (void)state;
    assert_int_equal(facenet_detector_set_threads(detector, 2, &err), FACENET_OK);
    assert_int_equal(facenet_detector_set_threads(detector, -1, &err),
                     FACENET_ERR_INVALID_ARGUMENT);
    assert_non_null(strstr(err.message, "thread count"));
    assert_int_equal(facenet_detector_set_threads(detector, 100000, &err),
                     FACENET_ERR_INVALID_ARGUMENT);
    assert_int_equal(facenet_detector_threads(detector), 2);
    assert_int_equal(facenet_detector_set_threads(NULL, 1, &err), FACENET_ERR_INVALID_ARGUMENT);
    assert_int_equal(facenet_detector_threads(NULL), 0);
    /* 0 goes back to $FACENET_THREADS. */
    setenv("FACENET_THREADS", "3", 1);
    assert_int_equal(facenet_detector_set_threads(detector, 0, &err), FACENET_OK);
    assert_int_equal(facenet_detector_threads(detector), 3);
    unsetenv("FACENET_THREADS");
    assert_int_equal(facenet_detector_set_threads(detector, 0, &err), FACENET_OK);
    assert_int_equal(facenet_detector_threads(detector), 1);
}

static int setup(void **state)
{
    facenet_error err;
    (void)state;
    unsetenv("FACENET_THREADS");
    if (facenet_detector_create(tu_model_dir(), &detector, &err) != FACENET_OK) {
        fprintf(stderr, "%s\n", err.message);
        facenet_model_free(tu_load_model("mtcnn-pnet")); /* skips or fails properly */
        return -1;
    }
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    facenet_detector_free(detector);
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_threads_give_identical_faces),
        cmocka_unit_test(test_thread_count_is_validated),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
