/* Verification behaviour on real photos: the same face under mild changes
 * (JPEG re-encoding, a 0.8x rescale, a small crop shift) matches at the
 * model's threshold; in a group photo each face is closest to itself; and
 * the group-photo false matches of every configuration (MobileFaceNet,
 * dlib ResNet, their ensemble, each with and without flip, the dlib
 * ResNet with dlib's jitter, at both LFW thresholds), which decide
 * compare's default operating point. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h> /* before jpeglib.h, which uses FILE */

#include <jpeglib.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "image/image.h"
#include "support/testutil.h"

static facenet_detector *detector;
static facenet_embedder *embedder;

typedef struct faces_emb {
    facenet_face *faces;
    size_t n;
    float *emb; /* n x 192 */
} faces_emb;

static void detect_embed(const facenet_image *img, faces_emb *out)
{
    facenet_error err;
    assert_int_equal(facenet_detect(detector, img, NULL, &out->faces, &out->n, &err), FACENET_OK);
    out->emb = malloc((out->n ? out->n : 1) * 192 * sizeof(float));
    assert_int_equal(facenet_embed(embedder, img, out->faces, out->n, 0, out->emb, &err),
                     FACENET_OK);
}

static void faces_emb_free(faces_emb *f)
{
    free(f->faces);
    free(f->emb);
}

static const char *demo_path(const char *name, char *buf, size_t size)
{
    const char *dir = getenv("FACENET_DEMO_DIR");
    if (!dir || !*dir) {
        const char *req = getenv("FACENET_REQUIRE_MODELS");
        if (req && strcmp(req, "1") == 0)
            fail_msg("FACENET_DEMO_DIR is required");
        fprintf(stderr, "SKIP: FACENET_DEMO_DIR is not set\n");
        exit(TEST_SKIP_CODE);
    }
    snprintf(buf, size, "%s/%s", dir, name);
    return buf;
}

/* For each face of `a` with score > 0.95, the face of `b` whose centre,
 * mapped by (scale, dx, dy), is nearest must match it. */
static void assert_same_faces(const faces_emb *a, const faces_emb *b, double scale, double dx,
                              double dy, const char *what)
{
    float threshold = facenet_embedder_info(embedder)->threshold;
    int checked = 0;
    for (size_t i = 0; i < a->n; i++) {
        if (a->faces[i].score < 0.95f)
            continue;
        double cx = (a->faces[i].box[0] + a->faces[i].box[2]) / 2 * scale + dx;
        double cy = (a->faces[i].box[1] + a->faces[i].box[3]) / 2 * scale + dy;
        size_t best = 0;
        double best_d = 1e30;
        for (size_t k = 0; k < b->n; k++) {
            double bx = (b->faces[k].box[0] + b->faces[k].box[2]) / 2;
            double by = (b->faces[k].box[1] + b->faces[k].box[3]) / 2;
            double d = hypot(bx - cx, by - cy);
            if (d < best_d) {
                best_d = d;
                best = k;
            }
        }
        assert_true(b->n > 0 && best_d < 20);
        float s = facenet_similarity(a->emb + i * 192, b->emb + best * 192, 192);
        fprintf(stderr, "%s: face %zu similarity %.4f\n", what, i, s);
        assert_true(s >= threshold);
        checked++;
    }
    assert_true(checked >= 2);
}

static facenet_image *reencode_jpeg(const facenet_image *img, int quality)
{
    struct jpeg_compress_struct c;
    struct jpeg_error_mgr jerr;
    unsigned char *buf = NULL;
    unsigned long size = 0;
    int w = facenet_image_width(img), h = facenet_image_height(img);
    const uint8_t *px = facenet_image_pixels(img);
    facenet_image *out = NULL;

    c.err = jpeg_std_error(&jerr);
    jpeg_create_compress(&c);
    jpeg_mem_dest(&c, &buf, &size);
    c.image_width = (JDIMENSION)w;
    c.image_height = (JDIMENSION)h;
    c.input_components = 3;
    c.in_color_space = JCS_RGB;
    jpeg_set_defaults(&c);
    jpeg_set_quality(&c, quality, TRUE);
    jpeg_start_compress(&c, TRUE);
    while (c.next_scanline < c.image_height) {
        JSAMPROW row = (JSAMPROW)(px + (size_t)c.next_scanline * w * 3);
        jpeg_write_scanlines(&c, &row, 1);
    }
    jpeg_finish_compress(&c);
    jpeg_destroy_compress(&c);
    assert_int_equal(facenet_image_decode(buf, size, NULL, &out, NULL), FACENET_OK);
    free(buf);
    return out;
}

static facenet_image *rescale(const facenet_image *img, double scale)
{
    img_rgb8 src = {facenet_image_width(img), facenet_image_height(img),
                    (size_t)facenet_image_width(img) * 3, (uint8_t *)facenet_image_pixels(img)};
    img_f32 *f = NULL, *r = NULL;
    img_rgb8 *rgb = NULL;
    facenet_image *out = NULL;
    assert_int_equal(img_rgb8_to_f32(&src, &f, NULL), FACENET_OK);
    assert_int_equal(img_resize(f, (int)(src.width * scale), (int)(src.height * scale), &r, NULL),
                     FACENET_OK);
    assert_int_equal(img_f32_to_rgb8(r, &rgb, NULL), FACENET_OK);
    assert_int_equal(facenet_image_from_rgb(rgb->pixels, rgb->width, rgb->height, rgb->stride,
                                            &out, NULL),
                     FACENET_OK);
    img_f32_free(f);
    img_f32_free(r);
    img_rgb8_free(rgb);
    return out;
}

static facenet_image *crop(const facenet_image *img, int x0, int y0)
{
    int w = facenet_image_width(img) - x0 - 31, h = facenet_image_height(img) - y0 - 17;
    facenet_image *out = NULL;
    const uint8_t *px = facenet_image_pixels(img) + ((size_t)y0 * facenet_image_width(img) + x0) * 3;
    assert_int_equal(facenet_image_from_rgb(px, w, h, (size_t)facenet_image_width(img) * 3, &out,
                                            NULL),
                     FACENET_OK);
    return out;
}

static void test_same_face_under_mild_changes(void **state)
{
    char path[4096];
    const char *photos[2] = {"sample1.jpg", "sample3.jpg"};
    (void)state;
    for (int p = 0; p < (tu_quick() ? 1 : 2); p++) {
        facenet_image *img = NULL, *changed;
        faces_emb base, other;
        assert_int_equal(facenet_image_load(demo_path(photos[p], path, sizeof path), NULL, &img,
                                            NULL),
                         FACENET_OK);
        detect_embed(img, &base);

        changed = reencode_jpeg(img, 75);
        detect_embed(changed, &other);
        assert_same_faces(&base, &other, 1.0, 0, 0, "jpeg q75");
        faces_emb_free(&other);
        facenet_image_free(changed);

        changed = rescale(img, 0.8);
        detect_embed(changed, &other);
        assert_same_faces(&base, &other, 0.8, 0, 0, "rescale 0.8");
        faces_emb_free(&other);
        facenet_image_free(changed);

        changed = crop(img, 13, 7);
        detect_embed(changed, &other);
        assert_same_faces(&base, &other, 1.0, -13, -7, "crop shift");
        faces_emb_free(&other);
        facenet_image_free(changed);

        faces_emb_free(&base);
        facenet_image_free(img);
    }
}

/* Different people in one group photo. What holds, and is asserted: each
 * face's best match among its own JPEG-re-encoded copy and the other
 * faces of the photo is its own copy, by a clear margin (closed-set
 * identification inside a group works).
 *
 * What does NOT hold, and is counted rather than hidden: at the
 * LFW-calibrated thresholds some pairs of different women in these photos
 * score as "same" (MobileFaceNet: 5 of 33 pairs at 0.40, 1 at the strict
 * 0.4435). LFW is mostly men; docs/ACCURACY.md discusses it. */
static void test_different_faces_in_a_group_differ(void **state)
{
    char path[4096], name[32];
    const facenet_model_info *info = facenet_embedder_info(embedder);
    int pairs = 0, above_default = 0, above_strict = 0;
    (void)state;
    for (int p = 1; p <= (tu_quick() ? 2 : 6); p++) {
        facenet_image *img = NULL, *copy;
        faces_emb f, g;
        snprintf(name, sizeof name, "sample%d.jpg", p);
        assert_int_equal(facenet_image_load(demo_path(name, path, sizeof path), NULL, &img, NULL),
                         FACENET_OK);
        detect_embed(img, &f);
        copy = reencode_jpeg(img, 90);
        detect_embed(copy, &g);
        assert_int_equal(f.n, g.n);
        for (size_t i = 0; i < f.n; i++) {
            float self = facenet_similarity(f.emb + i * 192, g.emb + i * 192, 192);
            for (size_t k = 0; k < f.n; k++) {
                if (k == i)
                    continue;
                float s = facenet_similarity(f.emb + i * 192, f.emb + k * 192, 192);
                assert_true(self > s + 0.3f);
                if (k < i)
                    continue;
                pairs++;
                if (s >= info->threshold) {
                    fprintf(stderr, "%s faces %zu and %zu: similarity %.4f >= %.4f\n", name, i,
                            k, s, info->threshold);
                    above_default++;
                }
                above_strict += s >= info->threshold_strict;
            }
        }
        faces_emb_free(&f);
        faces_emb_free(&g);
        facenet_image_free(copy);
        facenet_image_free(img);
    }
    fprintf(stderr, "%d pairs of different faces: %d at or above %.4f, %d at or above %.4f\n",
            pairs, above_default, info->threshold, above_strict, info->threshold_strict);
    assert_true(pairs >= (tu_quick() ? 4 : 30));
}

/* ---- every configuration on the same photos ------------------------------------ */

/* The embeddings this test compares: each model with and without the
 * mirrored face, and the dlib ResNet with dlib's num_jitters (10 jittered
 * chips; 5 with flip, as measured on LFW). */
enum { V_MFN, V_MFN_FLIP, V_DLIB, V_DLIB_FLIP, V_DLIB_JIT10, V_DLIB_FLIP_JIT5, N_VARIANTS };
static const int variant_dim[N_VARIANTS] = {192, 192, 128, 128, 128, 128};
static const int variant_flip[N_VARIANTS] = {0, 1, 0, 1, 0, 1};
static facenet_embedder *dlib_embedder, *dlib_jit10, *dlib_jit5;

static facenet_embedder *variant_embedder(int v)
{
    switch (v) {
    case V_MFN:
    case V_MFN_FLIP: return embedder;
    case V_DLIB_JIT10: return dlib_jit10;
    case V_DLIB_FLIP_JIT5: return dlib_jit5;
    default: return dlib_embedder;
    }
}

typedef struct photo_faces {
    facenet_face *faces;
    size_t n;
    float *emb[N_VARIANTS]; /* n x variant_dim[v] */
} photo_faces;

static void embed_variants(const facenet_image *img, photo_faces *p)
{
    facenet_error err;
    memset(p, 0, sizeof *p);
    assert_int_equal(facenet_detect(detector, img, NULL, &p->faces, &p->n, &err), FACENET_OK);
    for (int v = 0; v < N_VARIANTS; v++) {
        p->emb[v] = malloc((p->n ? p->n : 1) * (size_t)variant_dim[v] * sizeof(float));
        assert_non_null(p->emb[v]);
        assert_int_equal(facenet_embed(variant_embedder(v), img, p->faces, p->n,
                                       variant_flip[v], p->emb[v], &err),
                         FACENET_OK);
    }
}

static void photo_faces_free(photo_faces *p)
{
    free(p->faces);
    for (int v = 0; v < N_VARIANTS; v++)
        free(p->emb[v]);
}

/* A verification configuration and its two thresholds (cosine
 * similarity), both fitted on all 6,000 LFW pairs by `facenet validate
 * --calibrate` (docs/ACCURACY.md): best accuracy, and FAR 1e-3. The
 * ensemble's similarity is the cosine of the concatenated unit embeddings,
 * dlib's scaled by `weight`: (s_mfn + w^2 s_dlib) / (1 + w^2). */
typedef struct config {
    const char *name;
    int mfn, dlib; /* variants used, -1 for none */
    double weight;
    float best, strict;
} config;

static const config configs[] = {
    {"mobilefacenet", V_MFN, -1, 0, 0.400f, 0.4435f},
    {"mobilefacenet+flip", V_MFN_FLIP, -1, 0, 0.405f, 0.4245f},
    {"dlib-resnet", -1, V_DLIB, 0, 0.910f, 0.9225f},
    {"dlib-resnet+flip", -1, V_DLIB_FLIP, 0, 0.915f, 0.9235f},
    {"ensemble w=1", V_MFN, V_DLIB, 1.0, 0.660f, 0.6680f},
    {"ensemble+flip w=1", V_MFN_FLIP, V_DLIB_FLIP, 1.0, 0.660f, 0.6665f},
    /* the weights chosen on all LFW pairs, as `validate --model ensemble`
     * does for its calibration */
    {"ensemble w=2", V_MFN, V_DLIB, 2.0, 0.790f, 0.8130f},
    {"ensemble+flip w=2.1", V_MFN_FLIP, V_DLIB_FLIP, 2.1, 0.815f, 0.8255f},
    /* the weights the default fusion (separation) gives on all LFW pairs */
    {"ensemble w=2.49", V_MFN, V_DLIB, 2.486586, 0.830f, 0.8460f},
    {"ensemble+flip w=2.50", V_MFN_FLIP, V_DLIB_FLIP, 2.4970342, 0.835f, 0.8505f},
    /* dlib's num_jitters (validate --jitter 10), alone and in the ensemble
     * with the default fusion's weight on all pairs */
    {"dlib-resnet jit10", -1, V_DLIB_JIT10, 0, 0.915f, 0.9215f},
    {"ensemble jit10 w=2.48", V_MFN, V_DLIB_JIT10, 2.4777986, 0.835f, 0.8520f},
    {"ens+flip jit5 w=2.49", V_MFN_FLIP, V_DLIB_FLIP_JIT5, 2.4915793, 0.835f, 0.8535f},
};
#define N_CONFIGS (sizeof configs / sizeof configs[0])

static float config_similarity(const config *c, const photo_faces *a, size_t i,
                               const photo_faces *b, size_t k)
{
    double s = 0, wsum = 0;
    if (c->mfn >= 0) {
        s += facenet_similarity(a->emb[c->mfn] + i * 192, b->emb[c->mfn] + k * 192, 192);
        wsum += 1;
    }
    if (c->dlib >= 0) {
        double w2 = c->mfn >= 0 ? c->weight * c->weight : 1.0;
        s += w2 * facenet_similarity(a->emb[c->dlib] + i * 128, b->emb[c->dlib] + k * 128, 128);
        wsum += w2;
    }
    return (float)(s / wsum);
}

typedef struct tally {
    int cross, cross_best, cross_strict; /* different people: pairs, >= thresholds */
    int mild, mild_best, mild_strict;    /* same face, mild change: pairs, < thresholds */
    float cross_max, mild_min;
} tally;

/* The face of b nearest to face i of a after mapping a's centre by
 * (scale, dx, dy). */
static size_t nearest_face(const photo_faces *a, size_t i, const photo_faces *b, double scale,
                           double dx, double dy)
{
    double cx = (a->faces[i].box[0] + a->faces[i].box[2]) / 2 * scale + dx;
    double cy = (a->faces[i].box[1] + a->faces[i].box[3]) / 2 * scale + dy;
    size_t best = 0;
    double best_d = 1e30;
    for (size_t k = 0; k < b->n; k++) {
        double d = hypot((b->faces[k].box[0] + b->faces[k].box[2]) / 2 - cx,
                         (b->faces[k].box[1] + b->faces[k].box[3]) / 2 - cy);
        if (d < best_d) {
            best_d = d;
            best = k;
        }
    }
    assert_true(b->n > 0 && best_d < 20);
    return best;
}

static void count_mild(const photo_faces *a, const photo_faces *b, double scale, double dx,
                       double dy, tally *t)
{
    for (size_t i = 0; i < a->n; i++) {
        if (a->faces[i].score < 0.95f)
            continue;
        size_t k = nearest_face(a, i, b, scale, dx, dy);
        for (size_t c = 0; c < N_CONFIGS; c++) {
            float s = config_similarity(&configs[c], a, i, b, k);
            t[c].mild++;
            t[c].mild_best += s < configs[c].best;
            t[c].mild_strict += s < configs[c].strict;
            if (s < t[c].mild_min)
                t[c].mild_min = s;
        }
    }
}

/* sample4's face with the lowest score (0.961, a box on clothing) is the
 * detector's one false positive (golden README): it is nobody, so pairs
 * with it say nothing about telling people apart. */
static int is_non_face(int photo, const photo_faces *p, size_t i)
{
    if (photo != 4)
        return 0;
    size_t lowest = 0;
    for (size_t k = 1; k < p->n; k++)
        if (p->faces[k].score < p->faces[lowest].score)
            lowest = k;
    assert_true(p->faces[lowest].score < 0.97f);
    return i == lowest;
}

/* The measurement behind docs/ACCURACY.md's group-photo table: for every
 * configuration, the pairs of different people in the six group photos
 * that reach each threshold, and the same faces under mild changes
 * (JPEG q75, 0.8x, a crop shift; sample1 and sample3) that fall below it.
 * What is asserted is the product decision (see DECISION below). */
static void test_group_photos_by_configuration(void **state)
{
    char path[4096], name[32];
    tally t[N_CONFIGS];
    (void)state;
    memset(t, 0, sizeof t);
    for (size_t c = 0; c < N_CONFIGS; c++) {
        t[c].cross_max = -2;
        t[c].mild_min = 2;
    }
    for (int p = 1; p <= (tu_quick() ? 2 : 6); p++) {
        facenet_image *img = NULL;
        photo_faces f;
        snprintf(name, sizeof name, "sample%d.jpg", p);
        assert_int_equal(facenet_image_load(demo_path(name, path, sizeof path), NULL, &img, NULL),
                         FACENET_OK);
        embed_variants(img, &f);
        for (size_t i = 0; i < f.n; i++)
            for (size_t k = i + 1; k < f.n; k++) {
                if (is_non_face(p, &f, i) || is_non_face(p, &f, k))
                    continue;
                for (size_t c = 0; c < N_CONFIGS; c++) {
                    float s = config_similarity(&configs[c], &f, i, &f, k);
                    t[c].cross++;
                    t[c].cross_best += s >= configs[c].best;
                    t[c].cross_strict += s >= configs[c].strict;
                    if (s > t[c].cross_max)
                        t[c].cross_max = s;
                }
            }
        if (p == 1 || p == 3) {
            facenet_image *changed[3] = {reencode_jpeg(img, 75), rescale(img, 0.8),
                                         crop(img, 13, 7)};
            const double map[3][3] = {{1.0, 0, 0}, {0.8, 0, 0}, {1.0, -13, -7}};
            for (int ch = 0; ch < 3; ch++) {
                photo_faces g;
                embed_variants(changed[ch], &g);
                count_mild(&f, &g, map[ch][0], map[ch][1], map[ch][2], t);
                photo_faces_free(&g);
                facenet_image_free(changed[ch]);
            }
        }
        photo_faces_free(&f);
        facenet_image_free(img);
    }
    fprintf(stderr, "%-20s %8s %9s %9s %8s %9s %9s %9s %9s\n", "configuration", "best",
            "cross>=", "mild<", "strict", "cross>=", "mild<", "cross max", "mild min");
    for (size_t c = 0; c < N_CONFIGS; c++)
        fprintf(stderr, "%-20s %8.4f %5d/%-3d %5d/%-3d %8.4f %5d/%-3d %5d/%-3d %9.4f %9.4f\n",
                configs[c].name, configs[c].best, t[c].cross_best, t[c].cross, t[c].mild_best,
                t[c].mild, configs[c].strict, t[c].cross_strict, t[c].cross, t[c].mild_strict,
                t[c].mild, t[c].cross_max, t[c].mild_min);
    for (size_t c = 0; c < N_CONFIGS; c++) {
        assert_true(t[c].cross >= (tu_quick() ? 4 : 29));
        assert_true(t[c].mild >= (tu_quick() ? 6 : 12));
    }
    /* DECISION: `facenet compare` judges at the model's strict (FAR 1e-3)
     * threshold by default, and MobileFaceNet without flip stays the
     * default model. What it rests on, asserted so that a change to the
     * models or the pipeline that undoes it fails here:
     *   - of the 26 operating points, MobileFaceNet at its strict
     *     threshold lets the fewest pairs of different people through
     *     (1 of 29; 5 at its best-accuracy threshold): neither flip nor
     *     the ensembles do better on these photos;
     *   - it still matches every face under the mild changes.
     * The shipped thresholds are the ones measured here. */
    const facenet_model_info *mfn_info = facenet_model_find("mobilefacenet");
    const tally *mfn = &t[0];
    assert_true(configs[0].best == mfn_info->threshold);
    assert_true(configs[0].strict == mfn_info->threshold_strict);
    assert_true(configs[2].best == facenet_model_find("dlib-resnet")->threshold);
    assert_true(configs[2].strict == facenet_model_find("dlib-resnet")->threshold_strict);
    assert_int_equal(mfn->mild_strict, 0);
    for (size_t c = 0; c < N_CONFIGS; c++) {
        assert_true(mfn->cross_strict <= t[c].cross_strict);
        assert_true(mfn->cross_strict <= t[c].cross_best);
    }
    if (!tu_quick()) {
        assert_true(mfn->cross_strict <= 1);
        assert_true(mfn->cross_best >= mfn->cross_strict + 3);
    }
}

static int setup(void **state)
{
    facenet_error err;
    (void)state;
    facenet_model_free(tu_load_model("mobilefacenet")); /* skip or fail if absent */
    facenet_model_free(tu_load_model("dlib-resnet"));
    if (facenet_detector_create(tu_model_dir(), &detector, &err) != FACENET_OK ||
        facenet_embedder_create(tu_model_dir(), "mobilefacenet", &embedder, &err) != FACENET_OK ||
        facenet_embedder_create(tu_model_dir(), "dlib-resnet", &dlib_embedder, &err) !=
            FACENET_OK ||
        facenet_embedder_create(tu_model_dir(), "dlib-resnet", &dlib_jit10, &err) != FACENET_OK ||
        facenet_embedder_set_jitter(dlib_jit10, 10, &err) != FACENET_OK ||
        facenet_embedder_create(tu_model_dir(), "dlib-resnet", &dlib_jit5, &err) != FACENET_OK ||
        facenet_embedder_set_jitter(dlib_jit5, 5, &err) != FACENET_OK) {
        fprintf(stderr, "%s\n", err.message);
        return -1;
    }
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    facenet_detector_free(detector);
    facenet_embedder_free(embedder);
    facenet_embedder_free(dlib_embedder);
    facenet_embedder_free(dlib_jit10);
    facenet_embedder_free(dlib_jit5);
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_same_face_under_mild_changes),
        cmocka_unit_test(test_different_faces_in_a_group_differ),
        cmocka_unit_test(test_group_photos_by_configuration),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
