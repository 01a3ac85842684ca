/*
 * detector.c - the public MTCNN detector: three verified networks, their
 * sessions, and the conversion from a decoded image.
 */
#include <stdlib.h>
#include <string.h>

#include "common/error.h"
#include "detect/mtcnn.h"
#include "image/handle.h"

struct facenet_detector {
    facenet_model *models[3];
    mtcnn_nets nets;
};

static const char *const net_names[3] = {"mtcnn-pnet", "mtcnn-rnet", "mtcnn-onet"};

void facenet_detect_options_default(facenet_detect_options *options)
{
    mtcnn_options o;
    mtcnn_default_options(&o);
    options->min_size = o.min_size;
    memcpy(options->thresholds, o.thresholds, sizeof options->thresholds);
    options->factor = (float)o.factor;
    options->max_level_pixels = o.max_level_pixels;
}

facenet_status facenet_detector_create(const char *model_dir,
                                       facenet_detector **out,
                                       facenet_error *err)
{
    facenet_detector *d;
    facenet_session **sessions[3];
    facenet_status st = FACENET_OK;

    if (!out)
        return fn_fail(err, FACENET_ERR_INVALID_ARGUMENT, "out is NULL");
    *out = NULL;
    d = calloc(1, sizeof *d);
    if (!d)
        return fn_fail(err, FACENET_ERR_NO_MEMORY, "out of memory for a detector");
    sessions[0] = &d->nets.pnet;
    sessions[1] = &d->nets.rnet;
    sessions[2] = &d->nets.onet;
    for (int i = 0; i < 3 && st == FACENET_OK; i++) {
        const facenet_model_info *info = facenet_model_find(net_names[i]);
        if (!info)
            st = fn_fail(err, FACENET_ERR_INTERNAL, "%s is missing from the manifest",
                         net_names[i]);
        if (st == FACENET_OK)
            st = facenet_model_load(model_dir, info, &d->models[i], err);
        if (st == FACENET_OK)
            st = facenet_session_create(d->models[i], sessions[i], err);
    }
    if (st != FACENET_OK) {
        facenet_detector_free(d);
        return st;
    }
    *out = d;
    return FACENET_OK;
}

void facenet_detector_free(facenet_detector *detector)
{
    if (!detector)
        return;
    facenet_session_free(detector->nets.pnet);
    facenet_session_free(detector->nets.rnet);
    facenet_session_free(detector->nets.onet);
    for (int i = 0; i < 3; i++)
        facenet_model_free(detector->models[i]);
    free(detector);
}

facenet_status facenet_detect(facenet_detector *detector,
                              const facenet_image *image,
                              const facenet_detect_options *options,
                              facenet_face **faces, size_t *n_faces,
                              facenet_error *err)
{
    mtcnn_options opt;
    img_f32 *f = NULL;
    mtcnn_face *found = NULL;
    int n = 0;
    facenet_status st;

    if (!faces || !n_faces)
        return fn_fail(err, FACENET_ERR_INVALID_ARGUMENT, "faces and n_faces are required");
    *faces = NULL;
    *n_faces = 0;
    if (!detector || !image)
        return fn_fail(err, FACENET_ERR_INVALID_ARGUMENT, "detector and image are required");
    mtcnn_default_options(&opt);
    if (options) {
        opt.min_size = options->min_size;
        memcpy(opt.thresholds, options->thresholds, sizeof opt.thresholds);
        opt.factor = options->factor;
        opt.max_level_pixels = options->max_level_pixels;
    }
    st = img_rgb8_to_f32(fn_image_rgb(image), &f, err);
    if (st == FACENET_OK)
        st = mtcnn_detect(&detector->nets, f, &opt, &found, &n, err);
    img_f32_free(f);
    if (st != FACENET_OK)
        return st;
    if (n > 0) {
        *faces = malloc((size_t)n * sizeof **faces);
        if (!*faces) {
            free(found);
            return fn_fail(err, FACENET_ERR_NO_MEMORY, "out of memory for faces");
        }
        for (int i = 0; i < n; i++) {
            facenet_face *o = &(*faces)[i];
            for (int k = 0; k < 4; k++)
                o->box[k] = (float)found[i].box[k];
            o->score = (float)found[i].score;
            for (int k = 0; k < 5; k++) {
                o->landmarks[k][0] = (float)found[i].landmarks[k][0];
                o->landmarks[k][1] = (float)found[i].landmarks[k][1];
            }
        }
    }
    free(found);
    *n_faces = (size_t)n;
    return FACENET_OK;
}

int facenet_pick_face(const facenet_face *faces, size_t n_faces, int width,
                      int height)
{
    int best = -1;
    double best_value = 0;
    for (size_t i = 0; i < n_faces; i++) {
        const float *b = faces[i].box;
        double area = ((double)b[2] - b[0]) * ((double)b[3] - b[1]);
        double dx = (b[0] + b[2]) / 2.0 - width / 2.0;
        double dy = (b[1] + b[3]) / 2.0 - height / 2.0;
        double value = area - 2.0 * (dx * dx + dy * dy);
        if (best < 0 || value > best_value) {
            best = (int)i;
            best_value = value;
        }
    }
    return best;
}
