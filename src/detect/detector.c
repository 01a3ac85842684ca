/*
 * detector.c - the public MTCNN detector: three verified networks, one
 * thread pool, a set of sessions per thread of the pool, and the
 * conversion from a decoded image.
 *
 * The detector's threads ($FACENET_THREADS, default 1, or
 * facenet_detector_set_threads) work on whole pyramid levels and whole
 * batches of crops, each on its own single-threaded sessions: coarse
 * pieces that need no synchronisation between layers.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common/error.h"
#include "detect/mtcnn.h"
#include "image/handle.h"
#include "nn/pool.h"

struct facenet_detector {
    facenet_model *models[3];
    mtcnn_worker *workers; /* [threads], owned */
    int threads;
    nn_pool *pool;         /* owned; NULL for one thread */
    mtcnn_nets nets;       /* views of the three fields above */
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

static void free_workers(mtcnn_worker *workers, int n)
{
    for (int t = 0; workers && t < n; t++) {
        facenet_session_free(workers[t].pnet);
        facenet_session_free(workers[t].rnet);
        facenet_session_free(workers[t].onet);
        free(workers[t].scratch);
    }
    free(workers);
}

/* One single-threaded session of `model` (whatever $FACENET_THREADS says:
 * the detector's own threads are the parallelism). */
static facenet_status single_session(const facenet_model *model, facenet_session **out,
                                     facenet_error *err)
{
    facenet_status st = facenet_session_create(model, out, err);
    if (st == FACENET_OK && facenet_session_threads(*out) != 1) {
        st = facenet_session_set_threads(*out, 1, err);
        if (st != FACENET_OK) {
            facenet_session_free(*out);
            *out = NULL;
        }
    }
    return st;
}

facenet_status facenet_detector_set_threads(facenet_detector *detector, int threads,
                                            facenet_error *err)
{
    mtcnn_worker *workers;
    nn_pool *pool = NULL;
    facenet_status st = FACENET_OK;

    if (!detector)
        return fn_fail(err, FACENET_ERR_INVALID_ARGUMENT, "detector is NULL");
    if (threads < 0 || threads > NN_POOL_MAX_THREADS)
        return fn_fail(err, FACENET_ERR_INVALID_ARGUMENT, "thread count %d is not in 0..%d",
                       threads, NN_POOL_MAX_THREADS);
    if (threads == 0)
        threads = nn_threads_from_env(1);
    if (threads == detector->threads)
        return FACENET_OK;
    workers = calloc((size_t)threads, sizeof *workers);
    if (!workers)
        return fn_fail(err, FACENET_ERR_NO_MEMORY, "out of memory for %d detector threads",
                       threads);
    for (int t = 0; t < threads && st == FACENET_OK; t++) {
        st = single_session(detector->models[0], &workers[t].pnet, err);
        if (st == FACENET_OK)
            st = single_session(detector->models[1], &workers[t].rnet, err);
        if (st == FACENET_OK)
            st = single_session(detector->models[2], &workers[t].onet, err);
    }
    if (st == FACENET_OK && threads > 1)
        st = nn_pool_create(threads, &pool, err);
    if (st != FACENET_OK) {
        free_workers(workers, threads);
        return st; /* the detector keeps its old threads */
    }
    free_workers(detector->workers, detector->threads);
    nn_pool_free(detector->pool);
    detector->workers = workers;
    detector->threads = threads;
    detector->pool = pool;
    detector->nets.workers = workers;
    detector->nets.threads = threads;
    detector->nets.pool = pool;
    return FACENET_OK;
}

int facenet_detector_threads(const facenet_detector *detector)
{
    return detector ? detector->threads : 0;
}

const char *facenet_detector_backend(const facenet_detector *detector)
{
    if (!detector)
        return NULL;
    const char *first = facenet_model_backend(detector->models[0]);
    for (int i = 1; i < 3; i++)
        if (!first || strcmp(first, facenet_model_backend(detector->models[i])) != 0)
            return "mixed";
    return first;
}

facenet_status facenet_detector_create(const char *model_dir,
                                       facenet_detector **out,
                                       facenet_error *err)
{
    facenet_detector *d;
    facenet_status st = FACENET_OK;

    if (!out)
        return fn_fail(err, FACENET_ERR_INVALID_ARGUMENT, "out is NULL");
    *out = NULL;
    d = calloc(1, sizeof *d);
    if (!d)
        return fn_fail(err, FACENET_ERR_NO_MEMORY, "out of memory for a detector");
    for (int i = 0; i < 3 && st == FACENET_OK; i++) {
        const facenet_model_info *info = facenet_model_find(net_names[i]);
        if (!info)
            st = fn_fail(err, FACENET_ERR_INTERNAL, "%s is missing from the manifest",
                         net_names[i]);
        if (st == FACENET_OK)
            st = facenet_model_load(model_dir, info, &d->models[i], err);
    }
    if (st == FACENET_OK)
        st = facenet_detector_set_threads(d, 0, err);
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
    free_workers(detector->workers, detector->threads);
    nn_pool_free(detector->pool);
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
    st = mtcnn_detect(&detector->nets, fn_image_rgb(image), &opt, &found, &n, err);
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
