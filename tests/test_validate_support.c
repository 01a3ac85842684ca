/*
 * Tests of what `facenet validate` keeps on disk or draws: the embedding
 * cache (src/verify/embcache.h), the thresholds file (thresholds.h) and
 * the ROC plot (rocplot.h).
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
#include <unistd.h>

#include "image/image.h"
#include "models/fsutil.h"
#include "verify/embcache.h"
#include "verify/rocplot.h"
#include "verify/thresholds.h"

static char tmpdir[64];

static int setup(void **state)
{
    (void)state;
    snprintf(tmpdir, sizeof tmpdir, "/tmp/facenet_vs_XXXXXX");
    return mkdtemp(tmpdir) ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    fn_remove_tree(tmpdir);
    return 0;
}

static void make_hash(uint8_t hash[32], int seed)
{
    for (int i = 0; i < 32; i++)
        hash[i] = (uint8_t)(seed * 37 + i * 11);
}

/* ---- cache ------------------------------------------------------------------ */

static void test_cache_round_trip(void **state)
{
    char path[128];
    emb_cache c;
    facenet_error err;
    uint8_t h[32];
    float v[3];
    (void)state;
    snprintf(path, sizeof path, "%s/sub/model.bin", tmpdir);
    assert_int_equal(emb_cache_open(path, "model A flip 0", 3, &c, &err), FACENET_OK);
    assert_int_equal(c.n, 0);
    assert_int_equal(c.ignored_file, 0);
    /* Insert in an order that is not sorted by hash. */
    for (int s = 9; s >= 0; s--) {
        make_hash(h, s);
        v[0] = (float)s, v[1] = (float)s * 2, v[2] = -1.0f;
        assert_int_equal(emb_cache_put(&c, h, v, &err), FACENET_OK);
    }
    make_hash(h, 4);
    v[0] = 4.0f, v[1] = 8.0f, v[2] = 42.0f;
    assert_int_equal(emb_cache_put(&c, h, v, &err), FACENET_OK); /* replace */
    assert_int_equal(c.n, 10);
    assert_int_equal(emb_cache_save(&c, &err), FACENET_OK); /* creates sub/ */
    emb_cache_free(&c);

    assert_int_equal(emb_cache_open(path, "model A flip 0", 3, &c, &err), FACENET_OK);
    assert_int_equal(c.n, 10);
    for (int s = 0; s < 10; s++) {
        make_hash(h, s);
        const float *got = emb_cache_find(&c, h);
        assert_non_null(got);
        assert_true(got[0] == (float)s && got[1] == (float)s * 2);
        assert_true(got[2] == (s == 4 ? 42.0f : -1.0f));
    }
    make_hash(h, 77);
    assert_null(emb_cache_find(&c, h));
    emb_cache_free(&c);

    /* Another key or record size: the file is not trusted. */
    assert_int_equal(emb_cache_open(path, "model A flip 1", 3, &c, &err), FACENET_OK);
    assert_int_equal(c.n, 0);
    assert_int_equal(c.ignored_file, 1);
    emb_cache_free(&c);
    assert_int_equal(emb_cache_open(path, "model A flip 0", 4, &c, &err), FACENET_OK);
    assert_int_equal(c.n, 0);
    assert_int_equal(c.ignored_file, 1);
    emb_cache_free(&c);
}

static void test_cache_rejects_damaged_files(void **state)
{
    char path[128];
    emb_cache c;
    facenet_error err;
    uint8_t h[32];
    float v[2] = {1, 2};
    FILE *f;
    long size;
    (void)state;
    snprintf(path, sizeof path, "%s/damaged.bin", tmpdir);
    assert_int_equal(emb_cache_open(path, "k", 2, &c, &err), FACENET_OK);
    for (int s = 0; s < 3; s++) {
        make_hash(h, s);
        assert_int_equal(emb_cache_put(&c, h, v, &err), FACENET_OK);
    }
    assert_int_equal(emb_cache_save(&c, &err), FACENET_OK);
    emb_cache_free(&c);

    /* Truncated by one byte. */
    f = fopen(path, "rb+");
    assert_non_null(f);
    fseek(f, 0, SEEK_END);
    size = ftell(f);
    fclose(f);
    assert_int_equal(truncate(path, size - 1), 0);
    assert_int_equal(emb_cache_open(path, "k", 2, &c, &err), FACENET_OK);
    assert_int_equal(c.n, 0);
    assert_int_equal(c.ignored_file, 1);
    emb_cache_free(&c);

    /* Garbage. */
    f = fopen(path, "wb");
    assert_non_null(f);
    fputs("this is not a cache file at all", f);
    fclose(f);
    assert_int_equal(emb_cache_open(path, "k", 2, &c, &err), FACENET_OK);
    assert_int_equal(c.n, 0);
    assert_int_equal(c.ignored_file, 1);
    /* Saving replaces it with a good one. */
    make_hash(h, 5);
    assert_int_equal(emb_cache_put(&c, h, v, &err), FACENET_OK);
    assert_int_equal(emb_cache_save(&c, &err), FACENET_OK);
    emb_cache_free(&c);
    assert_int_equal(emb_cache_open(path, "k", 2, &c, &err), FACENET_OK);
    assert_int_equal(c.n, 1);
    emb_cache_free(&c);

    /* Bad arguments. */
    assert_int_equal(emb_cache_open(path, "k", 0, &c, &err), FACENET_ERR_INVALID_ARGUMENT);
    assert_int_equal(emb_cache_hash_from_hex("zz", h), -1);
    assert_int_equal(emb_cache_hash_from_hex(
                         "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad", h),
                     0);
    assert_int_equal(h[0], 0xba);
    assert_int_equal(h[31], 0xad);
}

/* ---- thresholds file ---------------------------------------------------------- */

static void test_thresholds_round_trip(void **state)
{
    char path[128];
    thresholds_entry e;
    facenet_error err;
    double t, tf;
    (void)state;
    snprintf(path, sizeof path, "%s/thresholds.json", tmpdir);
    assert_int_equal(thresholds_read(path, "mobilefacenet", &t, &tf, &err),
                     FACENET_ERR_NOT_FOUND);
    memset(&e, 0, sizeof e);
    e.threshold = 0.40;
    e.threshold_far = 0.31;
    e.far_target = 1e-3;
    e.accuracy = 0.99;
    e.pairs = "pairs.txt";
    e.n_pairs = 6000;
    assert_int_equal(thresholds_write(path, "mobilefacenet", &e, &err), FACENET_OK);
    e.threshold = 0.92;
    e.threshold_far = NAN; /* not reached: stored as -1 */
    assert_int_equal(thresholds_write(path, "dlib-resnet", &e, &err), FACENET_OK);
    assert_int_equal(thresholds_read(path, "mobilefacenet", &t, &tf, &err), FACENET_OK);
    assert_true(fabs(t - 0.40) < 1e-6 && fabs(tf - 0.31) < 1e-6);
    assert_int_equal(thresholds_read(path, "dlib-resnet", &t, NULL, &err), FACENET_OK);
    assert_true(fabs(t - 0.92) < 1e-6);
    assert_int_equal(thresholds_read(path, "ensemble", &t, NULL, &err), FACENET_ERR_NOT_FOUND);
    assert_non_null(strstr(err.message, "ensemble"));
}

static void write_text(const char *path, const char *text)
{
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

static void test_thresholds_bad_files(void **state)
{
    char path[128];
    thresholds_entry e;
    facenet_error err;
    double t;
    (void)state;
    snprintf(path, sizeof path, "%s/other.json", tmpdir);
    memset(&e, 0, sizeof e);

    write_text(path, "{\"name\": \"someone else's file\"}");
    assert_int_equal(thresholds_read(path, "m", &t, NULL, &err), FACENET_ERR_FORMAT);
    assert_non_null(strstr(err.message, "not a thresholds file"));
    /* Never overwritten. */
    assert_int_equal(thresholds_write(path, "m", &e, &err), FACENET_ERR_FORMAT);

    write_text(path, "{\"schema\": 1, \"models\": {\"m\": {\"threshold\": 3.5}}}");
    assert_int_equal(thresholds_read(path, "m", &t, NULL, &err), FACENET_ERR_FORMAT);
    assert_non_null(strstr(err.message, "[-1, 1]"));

    write_text(path, "{\"schema\": 1, \"models\": {\"m\": ");
    assert_int_equal(thresholds_read(path, "m", &t, NULL, &err), FACENET_ERR_FORMAT);
    assert_non_null(strstr(err.message, path));

    /* An entry that is not an object is named as such, with the file. */
    write_text(path, "{\"schema\": 1, \"models\": {\"m\": 0.4}}");
    assert_int_equal(thresholds_read(path, "m", &t, NULL, &err), FACENET_ERR_FORMAT);
    assert_non_null(strstr(err.message, path));
    assert_non_null(strstr(err.message, "entry 'm' is not an object"));
}

/* The thresholds the pipeline uses: the manifest's, overridden by
 * MODEL_DIR/thresholds.json; a broken file is an error, never a silent
 * fallback. */
static void test_model_thresholds_resolution(void **state)
{
    char dir[128], path[192];
    facenet_thresholds t;
    facenet_error err;
    const facenet_model_info *mfn = facenet_model_find("mobilefacenet");
    const facenet_model_info *tfjs = facenet_model_find("dlib-resnet-tfjs");
    (void)state;
    assert_non_null(mfn);
    assert_non_null(tfjs);
    snprintf(dir, sizeof dir, "%s/models", tmpdir);
    assert_int_equal(fn_mkdir_p(dir, 0700, &err), FACENET_OK);
    snprintf(path, sizeof path, "%s/thresholds.json", dir);

    /* No file: the manifest's values. */
    assert_int_equal(facenet_model_thresholds(dir, mfn, 0, &t, &err), FACENET_OK);
    assert_true(t.threshold == mfn->threshold && t.threshold_strict == mfn->threshold_strict);
    assert_string_equal(t.source, "manifest");
    assert_int_equal(facenet_model_thresholds(NULL, mfn, 1, &t, &err), FACENET_OK);
    assert_string_equal(t.source, "manifest");

    /* Entries override; "+flip" is used for flipped embeddings only; a
     * FAR that was never reached (-1) means no strict threshold. */
    write_text(path, "{\"schema\": 1, \"models\": {"
                     "\"mobilefacenet\": {\"threshold\": 0.45, \"threshold_far\": 0.5,"
                     " \"pairs\": \"my_pairs.txt\", \"n_pairs\": 800},"
                     "\"mobilefacenet+flip\": {\"threshold\": 0.46, \"threshold_far\": -1}}}");
    assert_int_equal(facenet_model_thresholds(dir, mfn, 0, &t, &err), FACENET_OK);
    assert_true(fabsf(t.threshold - 0.45f) < 1e-6f && fabsf(t.threshold_strict - 0.5f) < 1e-6f);
    assert_non_null(strstr(t.source, path));
    assert_non_null(strstr(t.source, "800 pairs from my_pairs.txt"));
    assert_int_equal(facenet_model_thresholds(dir, mfn, 1, &t, &err), FACENET_OK);
    assert_true(fabsf(t.threshold - 0.46f) < 1e-6f && t.threshold_strict == 0);
    assert_non_null(strstr(t.source, "mobilefacenet+flip"));
    /* A model the file does not mention keeps the manifest's values, with
     * or without flip (tfjs has none: 0). */
    assert_int_equal(facenet_model_thresholds(dir, tfjs, 1, &t, &err), FACENET_OK);
    assert_true(t.threshold == tfjs->threshold);
    assert_string_equal(t.source, "manifest");

    /* Broken files fail, name the file and are left as they were. */
    static const char *const broken[] = {
        "{\"schema\": 1, \"models\": {\"mobilefacenet\": ",
        "{\"schema\": 2, \"models\": {}}",
        "{\"schema\": 1, \"models\": {\"mobilefacenet\": {\"threshold\": 1.5}}}",
        "{\"schema\": 1, \"models\": {\"mobilefacenet\": {\"threshold\": \"0.4\"}}}",
        "{\"schema\": 1, \"models\": {\"mobilefacenet\": {\"threshold\": 0.4,"
        " \"threshold_far\": -7}}}",
        "[1, 2, 3]"};
    for (size_t i = 0; i < sizeof broken / sizeof broken[0]; i++) {
        char before[256];
        write_text(path, broken[i]);
        t.threshold = 0.123f;
        assert_int_equal(facenet_model_thresholds(dir, mfn, 0, &t, &err), FACENET_ERR_FORMAT);
        assert_non_null(strstr(err.message, path));
        assert_true(t.threshold == 0 && t.threshold_strict == 0);
        FILE *f = fopen(path, "rb");
        assert_non_null(f);
        size_t got = fread(before, 1, sizeof before - 1, f);
        fclose(f);
        before[got] = 0;
        assert_string_equal(before, broken[i]);
    }
    unlink(path);
}

/* ---- ROC plot -------------------------------------------------------------------- */

static int is_curve_colour(const img_rgb8 *img, int x, int y)
{
    const uint8_t *p = img->pixels + (size_t)y * img->stride + 3 * (size_t)x;
    return p[0] == 20 && p[1] == 90 && p[2] == 200;
}

static void test_roc_plot_draws_the_curve(void **state)
{
    /* A perfect classifier: straight up the left edge, then along the top. */
    const double fpr[4] = {0, 0, 0.5, 1}, tpr[4] = {0, 1, 1, 1};
    img_rgb8 *img = NULL;
    facenet_error err;
    int x, y;
    char path[128];
    (void)state;
    assert_int_equal(roc_plot_render(fpr, tpr, 4, 0.0, &img, &err), FACENET_OK);
    assert_int_equal(img->width, ROC_PLOT_WIDTH);
    assert_int_equal(img->height, ROC_PLOT_HEIGHT);
    /* On the curve: the left edge halfway up, the top edge halfway across. */
    assert_int_equal(roc_plot_pixel(0, 0.0, 0.5, &x, &y), 0);
    assert_true(is_curve_colour(img, x, y));
    assert_int_equal(roc_plot_pixel(0, 0.5, 1.0, &x, &y), 0);
    assert_true(is_curve_colour(img, x, y));
    /* Off the curve: the middle of the chart (the dashed chance line may
     * pass there, but never in the curve's colour). */
    assert_int_equal(roc_plot_pixel(0, 0.7, 0.3, &x, &y), 0);
    assert_false(is_curve_colour(img, x, y));
    /* The zoom panel shows FPR 0..0.1, TPR 0.9..1. */
    assert_int_equal(roc_plot_pixel(1, 0.05, 1.0, &x, &y), 0);
    assert_true(is_curve_colour(img, x, y));
    assert_int_equal(roc_plot_pixel(1, 0.5, 0.5, &x, &y), -1);
    img_rgb8_free(img);

    snprintf(path, sizeof path, "%s/roc.png", tmpdir);
    assert_int_equal(roc_plot_write(fpr, tpr, 4, NAN, path, &err), FACENET_OK);
    assert_int_equal(img_decode_file(path, NULL, &img, &err), FACENET_OK);
    assert_int_equal(img->width, ROC_PLOT_WIDTH);
    img_rgb8_free(img);

    const double bad[2] = {0, NAN};
    assert_int_equal(roc_plot_render(bad, tpr, 2, 0.0, &img, &err), FACENET_ERR_INVALID_ARGUMENT);
    assert_null(img);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_cache_round_trip),
        cmocka_unit_test(test_cache_rejects_damaged_files),
        cmocka_unit_test(test_thresholds_round_trip),
        cmocka_unit_test(test_thresholds_bad_files),
        cmocka_unit_test(test_model_thresholds_resolution),
        cmocka_unit_test(test_roc_plot_draws_the_curve),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
