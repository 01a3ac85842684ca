/*
 * Golden parity of the image module (golden README 4.1 - 4.3):
 *   - the two resize vectors of synthetic.json (<= 1e-4);
 *   - the ArcFace warp of LFW AJ_Cook_0001 against the stored float crop
 *     (<= 1e-3 per value);
 *   - decoded size and mean RGB of every golden image (LFW and the demo
 *     photos; mean within 0.01, same libjpeg-turbo ISLOW decoder).
 * Needs FACENET_GOLDEN_DIR (else exit 77). The photos come from
 * FACENET_LFW_DIR and FACENET_DEMO_DIR; tests whose photos are absent are
 * skipped.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/fileio.h"
#include "image/image.h"
#include "support/testutil.h"

static const char *env_dir(const char *name)
{
    const char *d = getenv(name);
    return d && *d ? d : NULL;
}

static void check_resize(const char *key, int in_w, int in_h, int out_w,
                         int out_h)
{
    json_t *root = tu_golden_json("synthetic.json");
    json_t *entry = json_object_get(root, key);
    size_t n = (size_t)out_w * out_h;
    float *want = malloc(n * sizeof(float));
    float *got = malloc(n * 3 * sizeof(float));
    img_f32 *one, *three;

    assert_non_null(entry);
    assert_int_equal(tu_json_floats(json_object_get(entry, "output_channel0_HxW"),
                                    want, n),
                     n);
    assert_int_equal(img_f32_new(in_w, in_h, 1, &one, NULL), FACENET_OK);
    assert_int_equal(img_f32_new(in_w, in_h, 3, &three, NULL), FACENET_OK);
    for (int y = 0; y < in_h; y++)
        for (int x = 0; x < in_w; x++) {
            one->data[y * in_w + x] = tu_pattern(x, y, 0);
            for (int c = 0; c < 3; c++)
                three->data[(y * in_w + x) * 3 + c] = tu_pattern(x, y, c);
        }
    /* One channel... */
    assert_int_equal(img_resize_into(one, out_w, out_h, got, NULL), FACENET_OK);
    float d1 = tu_max_abs_diff(got, want, n);
    /* ...and channel 0 of the RGB pattern, as MTCNN's pyramid uses it. */
    assert_int_equal(img_resize_into(three, out_w, out_h, got, NULL), FACENET_OK);
    for (size_t i = 0; i < n; i++)
        got[i] = got[3 * i];
    float d3 = tu_max_abs_diff(got, want, n);
    (void)fprintf(stderr, "%s: max abs diff %.3g (1 channel), %.3g (RGB)\n", key,
            (double)d1, (double)d3);
    assert_true(d1 <= 1e-4f);
    assert_true(d3 <= 1e-4f);
    img_f32_free(one);
    img_f32_free(three);
    free(want);
    free(got);
    json_decref(root);
}

static void test_resize_area_golden(void **state)
{
    (void)state;
    check_resize("resize_area_30x40_to_17x23", 40, 30, 23, 17);
}

static void test_resize_bilinear_golden(void **state)
{
    (void)state;
    check_resize("resize_bilinear_10x10_to_24x24", 10, 10, 24, 24);
}

static void test_warp_aj_cook_golden(void **state)
{
    const char *lfw = env_dir("FACENET_LFW_DIR");
    char path[4096];
    json_t *root, *m;
    double a[6];
    img_rgb8 *rgb;
    img_f32 *src, *crop;
    int dims[4], rank;
    facenet_error err;
    (void)state;

    if (!lfw) {
        (void)fprintf(stderr, "SKIP: FACENET_LFW_DIR is not set\n");
        skip();
    }
    (void)snprintf(path, sizeof path, "%s/AJ_Cook/AJ_Cook_0001.jpg", lfw);
    if (img_decode_file(path, NULL, &rgb, &err) != FACENET_OK)
        fail_msg("%s", err.message);
    root = tu_golden_json("lfw_AJ_Cook_0001.json");
    m = json_object_get(json_array_get(json_object_get(root, "faces"), 0),
                        "arcface112_transform_2x3");
    for (int r = 0; r < 2; r++)
        for (int c = 0; c < 3; c++)
            a[r * 3 + c] = json_number_value(json_array_get(json_array_get(m, r), c));
    assert_true(a[0] != 0.0);

    assert_int_equal(img_rgb8_to_f32(rgb, &src, NULL), FACENET_OK);
    assert_int_equal(img_warp_affine(src, a, 112, 112, &crop, &err), FACENET_OK);
    (void)snprintf(path, sizeof path, "%s/lfw_AJ_Cook_0001_face0_aligned112_f32.npy",
             tu_golden_dir());
    float *want = tu_read_npy_f32(path, dims, &rank);
    assert_int_equal(rank, 3);
    assert_int_equal(dims[0], 112);
    assert_int_equal(dims[1], 112);
    assert_int_equal(dims[2], 3);
    float d = tu_max_abs_diff(crop->data, want, 112 * 112 * 3);
    (void)fprintf(stderr, "AJ_Cook warp: max abs diff %.3g\n", (double)d);
    assert_true(d <= 1e-3f);

    /* The mirrored crop is crop[:, ::-1]. */
    img_f32_mirror(crop);
    for (int y = 0; y < 112; y += 37)
        for (int x = 0; x < 112; x += 5)
            assert_true(fabsf(crop->data[(y * 112 + x) * 3 + 1] -
                              want[(y * 112 + (111 - x)) * 3 + 1]) <= 1e-3f);
    free(want);
    img_f32_free(crop);
    img_f32_free(src);
    img_rgb8_free(rgb);
    json_decref(root);
}

/* LFW images live in <lfw>/<Person_Name>/<Person_Name>_0001.jpg. */
static int lfw_path(const char *lfw, const char *image, char *path, size_t size)
{
    const char *us = strrchr(image, '_');
    if (!us)
        return 0;
    (void)snprintf(path, size, "%s/%.*s/%s", lfw, (int)(us - image), image, image);
    return 1;
}

static const char *const golden_images[] = {
    "lfw_AJ_Cook_0001.json", "lfw_Angela_Bassett_0003.json",
    "lfw_Benjamin_Netanyahu_0001.json", "lfw_Marilyn_Monroe_0001.json",
    "demo_sample1.json", "demo_sample2.json", "demo_sample3.json",
    "demo_sample4.json", "demo_sample5.json", "demo_sample6.json",
};

static void test_decoded_size_and_mean(void **state)
{
    const char *lfw = env_dir("FACENET_LFW_DIR");
    const char *demo = env_dir("FACENET_DEMO_DIR");
    int checked = 0;
    (void)state;

    for (size_t i = 0; i < sizeof golden_images / sizeof golden_images[0]; i++) {
        json_t *root = tu_golden_json(golden_images[i]);
        const char *image = json_string_value(json_object_get(root, "image"));
        const char *sha = json_string_value(json_object_get(root, "sha256"));
        int is_lfw = strncmp(golden_images[i], "lfw_", 4) == 0;
        char path[4096], hex[65];
        img_rgb8 *img;
        facenet_error err;
        double sum[3] = {0, 0, 0};
        float want[3];

        assert_non_null(image);
        if (is_lfw ? !lfw : !demo) {
            json_decref(root);
            continue;
        }
        if (is_lfw)
            assert_true(lfw_path(lfw, image, path, sizeof path));
        else
            (void)snprintf(path, sizeof path, "%s/%s", demo, image);
        /* Same file as the reference used, or the comparison means nothing. */
        assert_int_equal(fn_sha256_file(path, hex, &err), FACENET_OK);
        assert_string_equal(hex, sha);
        if (img_decode_file(path, NULL, &img, &err) != FACENET_OK)
            fail_msg("%s", err.message);
        assert_int_equal(img->width,
                         json_integer_value(json_object_get(root, "decoded_width")));
        assert_int_equal(img->height,
                         json_integer_value(json_object_get(root, "decoded_height")));
        for (int y = 0; y < img->height; y++) {
            const uint8_t *row = img->pixels + (size_t)y * img->stride;
            for (int x = 0; x < img->width; x++)
                for (int c = 0; c < 3; c++)
                    sum[c] += row[3 * x + c];
        }
        assert_int_equal(tu_json_floats(json_object_get(root, "decoded_rgb_mean"),
                                        want, 3),
                         3);
        double worst = 0;
        for (int c = 0; c < 3; c++) {
            double mean = sum[c] / ((double)img->width * img->height);
            if (fabs(mean - want[c]) > 0.01)
                fail_msg("%s channel %d: mean %.6f, golden %.6f", image, c, mean,
                         (double)want[c]);
            worst = fmax(worst, fabs(mean - want[c]));
        }
        (void)fprintf(stderr, "%s: %dx%d, mean RGB within %.2g\n", image, img->width,
                img->height, worst);
        checked++;
        img_rgb8_free(img);
        json_decref(root);
    }
    if (checked == 0) {
        (void)fprintf(stderr, "SKIP: neither FACENET_LFW_DIR nor FACENET_DEMO_DIR is set\n");
        skip();
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_resize_area_golden),
        cmocka_unit_test(test_resize_bilinear_golden),
        cmocka_unit_test(test_warp_aj_cook_golden),
        cmocka_unit_test(test_decoded_size_and_mean),
    };
    tu_golden_dir(); /* exits 77 when the golden data is absent */
    return cmocka_run_group_tests(tests, NULL, NULL);
}
