/* The face pipeline against the golden reference: pyramid, similarity
 * transforms, MTCNN on real photos (same decoder: boxes within 1 px,
 * landmarks within 0.5 px, scores within 1e-3), the facenet face pick,
 * the no-face image, and embeddings from the golden landmarks (cosine >=
 * 0.9999 for MobileFaceNet, its flip variant and the dlib ResNet). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "align/align.h"
#include "detect/mtcnn.h"
#include "support/testutil.h"

static facenet_detector *detector;
static facenet_embedder *mfn, *dlib;

static const char *const golden_images[] = {
    "lfw_AJ_Cook_0001.json",       "lfw_Angela_Bassett_0003.json",
    "lfw_Benjamin_Netanyahu_0001.json", "lfw_Marilyn_Monroe_0001.json",
    "demo_sample1.json",           "demo_sample2.json",
    "demo_sample3.json",           "demo_sample4.json",
    "demo_sample5.json",           "demo_sample6.json"};

/* Where the photo of a golden file lives: LFW under FACENET_LFW_DIR, the
 * demo photos under FACENET_DEMO_DIR. Returns 0 when that dir is unset. */
static int photo_path(const json_t *g, char *path, size_t size)
{
    const char *image = json_string_value(json_object_get(g, "image"));
    const char *source = json_string_value(json_object_get(g, "source"));
    if (strncmp(source, "LFW", 3) == 0) {
        const char *lfw = getenv("FACENET_LFW_DIR");
        if (!lfw || !*lfw)
            return 0;
        size_t stem = strlen(image) - strlen("_0001.jpg");
        snprintf(path, size, "%s/%.*s/%s", lfw, (int)stem, image, image);
    } else {
        const char *demo = getenv("FACENET_DEMO_DIR");
        if (!demo || !*demo)
            return 0;
        snprintf(path, size, "%s/%s", demo, image);
    }
    return 1;
}

static void read_landmarks(const json_t *face, double lm[5][2])
{
    const json_t *l = json_object_get(face, "landmarks_xy");
    for (int k = 0; k < 5; k++) {
        lm[k][0] = json_number_value(json_array_get(json_array_get(l, k), 0));
        lm[k][1] = json_number_value(json_array_get(json_array_get(l, k), 1));
    }
}

static void test_similarity_matches_golden(void **state)
{
    (void)state;
    json_t *s = tu_golden_json("synthetic.json");
    const char *keys[2] = {"similarity_arcface112", "similarity_dlib150"};
    align_template t[2] = {ALIGN_ARCFACE_112, ALIGN_DLIB_150};
    for (int i = 0; i < 2; i++) {
        const json_t *case_ = json_object_get(s, keys[i]);
        double lm[5][2], m[6];
        float expect[6];
        read_landmarks(case_, lm);
        assert_int_equal(tu_json_floats(json_object_get(case_, "transform_2x3"), expect, 6), 6);
        assert_int_equal(align_landmarks_matrix(lm, t[i], m, NULL), FACENET_OK);
        for (int k = 0; k < 6; k++)
            assert_true(fabs(m[k] - expect[k]) <= 1e-6 * fmax(1.0, fabs(expect[k])));
    }
    json_decref(s);
}

static void test_pyramid_matches_golden(void **state)
{
    (void)state;
    json_t *g = tu_golden_json("lfw_Angela_Bassett_0003.json");
    const json_t *expect = json_object_get(json_object_get(g, "mtcnn"), "pyramid_scales");
    mtcnn_options opt;
    double scales[64];
    mtcnn_default_options(&opt);
    int n = mtcnn_pyramid(250, 250, &opt, scales, 64);
    assert_int_equal(n, (int)json_array_size(expect));
    for (int i = 0; i < n; i++)
        assert_true(fabs(scales[i] - json_number_value(json_array_get(expect, i))) < 1e-8);
    json_decref(g);
}

static void test_nms_by_hand(void **state)
{
    (void)state;
    /* Three boxes: b overlaps a heavily, c is apart; a and b tie on score,
     * so the stable sort keeps a (first). */
    mtcnn_box boxes[3];
    int order[3];
    memset(boxes, 0, sizeof boxes);
    boxes[0] = (mtcnn_box){.x1 = 0, .y1 = 0, .x2 = 9, .y2 = 9, .score = 0.9};
    boxes[1] = (mtcnn_box){.x1 = 1, .y1 = 1, .x2 = 10, .y2 = 10, .score = 0.9};
    boxes[2] = (mtcnn_box){.x1 = 50, .y1 = 50, .x2 = 59, .y2 = 59, .score = 0.95};
    int n = mtcnn_nms(boxes, 3, 0.5, MTCNN_NMS_UNION, order);
    assert_int_equal(n, 2);
    assert_true(boxes[0].x1 == 50 && boxes[1].x1 == 0);
    /* "Min": a small box inside a big one is suppressed at 0.7 by Min but
     * not by Union (IoU = 25/400). */
    mtcnn_box nest[2];
    memset(nest, 0, sizeof nest);
    nest[0] = (mtcnn_box){.x1 = 0, .y1 = 0, .x2 = 19, .y2 = 19, .score = 0.9};
    nest[1] = (mtcnn_box){.x1 = 5, .y1 = 5, .x2 = 9, .y2 = 9, .score = 0.8};
    mtcnn_box copy[2];
    memcpy(copy, nest, sizeof nest);
    assert_int_equal(mtcnn_nms(copy, 2, 0.7, MTCNN_NMS_UNION, order), 2);
    assert_int_equal(mtcnn_nms(nest, 2, 0.7, MTCNN_NMS_MIN, order), 1);
    /* rerec squares around the centre; bbreg scales by width (+1). */
    mtcnn_box r = {.x1 = 10, .y1 = 20, .x2 = 30, .y2 = 30};
    mtcnn_rerec(&r, 1);
    assert_true(r.x1 == 10 && r.y1 == 15 && r.x2 == 30 && r.y2 == 35);
    mtcnn_box b = {.x1 = 0, .y1 = 0, .x2 = 9, .y2 = 9, .reg = {0.1, 0.2, -0.1, 0.5}};
    mtcnn_bbreg(&b, 1, 1);
    assert_true(fabs(b.x1 - 1) < 1e-12 && fabs(b.y1 - 2) < 1e-12 && fabs(b.x2 - 8) < 1e-12 &&
                fabs(b.y2 - 14) < 1e-12);
}

static void check_detection(const json_t *g, const char *path)
{
    facenet_image *img = NULL;
    facenet_face *faces = NULL;
    size_t n = 0;
    facenet_error err;
    const json_t *gfaces = json_object_get(g, "faces");
    size_t gn = json_array_size(gfaces);

    assert_int_equal(facenet_image_load(path, NULL, &img, &err), FACENET_OK);
    assert_int_equal(facenet_image_width(img),
                     (int)json_integer_value(json_object_get(g, "decoded_width")));
    assert_int_equal(facenet_detect(detector, img, NULL, &faces, &n, &err), FACENET_OK);
    if (n != gn)
        fprintf(stderr, "%s: %zu faces, golden %zu\n", path, n, gn);
    assert_int_equal(n, gn);
    for (size_t i = 0; i < gn; i++) {
        const json_t *gf = json_array_get(gfaces, i);
        float box[4], score = (float)json_number_value(json_object_get(gf, "score"));
        double lm[5][2];
        tu_json_floats(json_object_get(gf, "box_x1y1x2y2"), box, 4);
        read_landmarks(gf, lm);
        /* Same order: descending score; match by box to be safe. */
        size_t best = 0;
        double best_d = 1e30;
        for (size_t k = 0; k < n; k++) {
            double d = fabs(faces[k].box[0] - box[0]) + fabs(faces[k].box[1] - box[1]);
            if (d < best_d) {
                best_d = d;
                best = k;
            }
        }
        const facenet_face *f = &faces[best];
        for (int k = 0; k < 4; k++) {
            if (fabsf(f->box[k] - box[k]) > 1.0f)
                fprintf(stderr, "%s face %zu box[%d]: %.3f vs golden %.3f\n", path, i, k,
                        f->box[k], box[k]);
            assert_true(fabsf(f->box[k] - box[k]) <= 1.0f);
        }
        assert_true(fabsf(f->score - score) <= 1e-3f);
        for (int k = 0; k < 5; k++) {
            assert_true(fabs(f->landmarks[k][0] - lm[k][0]) <= 0.5);
            assert_true(fabs(f->landmarks[k][1] - lm[k][1]) <= 0.5);
            /* Landmarks fall inside their boxes. */
            assert_true(f->landmarks[k][0] >= f->box[0] && f->landmarks[k][0] <= f->box[2]);
            assert_true(f->landmarks[k][1] >= f->box[1] && f->landmarks[k][1] <= f->box[3]);
        }
    }
    const json_t *picked = json_object_get(json_object_get(g, "mtcnn"), "facenet_picked_face");
    int pick = facenet_pick_face(faces, n, facenet_image_width(img), facenet_image_height(img));
    if (json_is_null(picked))
        assert_int_equal(pick, -1);
    else
        assert_int_equal(pick, (int)json_integer_value(picked));
    free(faces);
    facenet_image_free(img);
}

/* In quick mode (the sanitizer pass): the four LFW images and one demo
 * photo, which between them reach every code path. */
static size_t image_count(void)
{
    return tu_quick() ? 5 : sizeof golden_images / sizeof golden_images[0];
}

static void test_detection_matches_golden(void **state)
{
    (void)state;
    int checked = 0;
    for (size_t i = 0; i < image_count(); i++) {
        json_t *g = tu_golden_json(golden_images[i]);
        char path[4096];
        if (photo_path(g, path, sizeof path)) {
            check_detection(g, path);
            checked++;
        } else {
            fprintf(stderr, "note: no photo directory for %s\n", golden_images[i]);
        }
        json_decref(g);
    }
    /* With make check both directories are set: all ten must run. */
    const char *req = getenv("FACENET_REQUIRE_MODELS");
    if (req && strcmp(req, "1") == 0)
        assert_int_equal(checked, (int)image_count());
}

/* Embed the golden face from its golden landmarks; compare with the
 * golden vectors. */
static void check_embeddings(const json_t *g, const char *path)
{
    facenet_image *img = NULL;
    facenet_error err;
    const json_t *gfaces = json_object_get(g, "faces");

    assert_int_equal(facenet_image_load(path, NULL, &img, &err), FACENET_OK);
    for (size_t i = 0; i < json_array_size(gfaces); i++) {
        const json_t *gf = json_array_get(gfaces, i);
        facenet_face face;
        double lm[5][2];
        float ours[192], flip[192], dl[128];
        float want[192], raw[192], mirror[192], want_dlib[128];

        memset(&face, 0, sizeof face);
        read_landmarks(gf, lm);
        for (int k = 0; k < 5; k++) {
            face.landmarks[k][0] = (float)lm[k][0];
            face.landmarks[k][1] = (float)lm[k][1];
        }
        assert_int_equal(facenet_embed(mfn, img, &face, 1, 0, ours, &err), FACENET_OK);
        assert_int_equal(facenet_embed(mfn, img, &face, 1, 1, flip, &err), FACENET_OK);
        assert_int_equal(facenet_embed(dlib, img, &face, 1, 0, dl, &err), FACENET_OK);
        tu_json_floats(json_object_get(gf, "mobilefacenet_l2norm"), want, 192);
        tu_json_floats(json_object_get(gf, "mobilefacenet_raw"), raw, 192);
        tu_json_floats(json_object_get(gf, "mobilefacenet_raw_of_mirrored_crop"), mirror, 192);
        tu_json_floats(json_object_get(gf, "dlib_resnet_raw"), want_dlib, 128);
        for (int k = 0; k < 192; k++)
            raw[k] += mirror[k];
        double c1 = tu_cosine(ours, want, 192), c2 = tu_cosine(flip, raw, 192);
        double c3 = tu_cosine(dl, want_dlib, 128);
        if (c1 < 0.9999 || c2 < 0.9999 || c3 < 0.9999)
            fprintf(stderr, "%s face %zu: cosine mfn %.6f flip %.6f dlib %.6f\n", path, i, c1,
                    c2, c3);
        assert_true(c1 >= 0.9999);
        assert_true(c2 >= 0.9999);
        assert_true(c3 >= 0.9999);
        double norm = 0;
        for (int k = 0; k < 192; k++)
            norm += (double)ours[k] * ours[k];
        assert_true(fabs(norm - 1.0) < 1e-5);
    }
    facenet_image_free(img);
}

static void test_embeddings_from_golden_landmarks(void **state)
{
    (void)state;
    for (size_t i = 0; i < image_count(); i++) {
        json_t *g = tu_golden_json(golden_images[i]);
        char path[4096];
        if (photo_path(g, path, sizeof path))
            check_embeddings(g, path);
        json_decref(g);
    }
}

/* The label templates record: fp32 keeps the old label, int8 is named. */
static void test_preprocess_label(void **state)
{
    char buf[64], want[64];
    facenet_error err;
    (void)state;
    const char *db = facenet_detector_backend(detector), *eb = facenet_embedder_backend(dlib);
    assert_non_null(db);
    assert_non_null(eb);
    snprintf(want, sizeof want, "mtcnn%s/dlib150+flip%s",
             strcmp(db, "avx2-int8") == 0 ? "-int8" : strcmp(db, "mixed") == 0 ? "-mixed" : "",
             strcmp(eb, "avx2-int8") == 0 ? "+int8" : "");
    assert_int_equal(facenet_gallery_preprocess_label(detector, dlib, 1, buf, sizeof buf, &err),
                     FACENET_OK);
    assert_string_equal(buf, want);
    if (!getenv("FACENET_PRECISION")) { /* the default: every network in fp32 */
        assert_int_equal(facenet_gallery_preprocess_label(detector, mfn, 0, buf, sizeof buf, &err),
                         FACENET_OK);
        assert_string_equal(buf, "mtcnn/arcface112");
    }
    assert_int_equal(facenet_gallery_preprocess_label(detector, mfn, 0, buf, 8, &err),
                     FACENET_ERR_LIMIT);
    assert_int_equal(facenet_gallery_preprocess_label(NULL, mfn, 0, buf, sizeof buf, &err),
                     FACENET_ERR_INVALID_ARGUMENT);
}

static int setup(void **state)
{
    facenet_error err;
    (void)state;
    tu_golden_dir();
    if (facenet_detector_create(tu_model_dir(), &detector, &err) != FACENET_OK ||
        facenet_embedder_create(tu_model_dir(), "mobilefacenet", &mfn, &err) != FACENET_OK ||
        facenet_embedder_create(tu_model_dir(), "dlib-resnet", &dlib, &err) != FACENET_OK) {
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
    facenet_embedder_free(mfn);
    facenet_embedder_free(dlib);
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_similarity_matches_golden),
        cmocka_unit_test(test_pyramid_matches_golden),
        cmocka_unit_test(test_nms_by_hand),
        cmocka_unit_test(test_detection_matches_golden),
        cmocka_unit_test(test_embeddings_from_golden_landmarks),
        cmocka_unit_test(test_preprocess_label),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
