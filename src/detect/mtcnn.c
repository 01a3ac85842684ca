/*
 * mtcnn.c - the MTCNN cascade: pyramid -> P-Net -> R-Net -> O-Net.
 *
 * The control flow follows davidsandberg/facenet's detect_face step by
 * step (golden README 4.2), with one intentional difference: facenet's
 * generateBoundingBox flips its regression maps when exactly one cell
 * passes at a scale, which is a bug we do not reproduce.
 */
#include "detect/mtcnn.h"

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common/error.h"

#define PNET_STRIDE 2
#define PNET_CELL 12
/* Coordinates beyond this are nonsense from a broken regression. */
#define MAX_COORD 1e7
#define MTCNN_MAX_OUTPUTS 4

void mtcnn_default_options(mtcnn_options *opt)
{
    opt->min_size = 20;
    opt->thresholds[0] = 0.6f;
    opt->thresholds[1] = 0.7f;
    opt->thresholds[2] = 0.7f;
    opt->factor = 0.709;
    opt->max_level_pixels = 4LL * 1000 * 1000;
}

int mtcnn_pyramid(int width, int height, const mtcnn_options *opt,
                  double *scales, int max)
{
    double m = 12.0 / opt->min_size;
    double min_side = (width < height ? width : height) * m;
    int count = 0;

    /* As facenet: the side shrinks by `factor` each level while the scale
     * itself is m * factor^k. */
    while (min_side >= 12.0) {
        if (count < max)
            scales[count] = m * pow(opt->factor, count);
        count++;
        min_side *= opt->factor;
    }
    return count;
}

/* ---- box arithmetic ------------------------------------------------------ */

static double overlap(const mtcnn_box *a, const mtcnn_box *b,
                      mtcnn_nms_mode mode)
{
    double area_a = (a->x2 - a->x1 + 1) * (a->y2 - a->y1 + 1);
    double area_b = (b->x2 - b->x1 + 1) * (b->y2 - b->y1 + 1);
    double w = fmax(0.0, fmin(a->x2, b->x2) - fmax(a->x1, b->x1) + 1);
    double h = fmax(0.0, fmin(a->y2, b->y2) - fmax(a->y1, b->y1) + 1);
    double inter = w * h;
    if (mode == MTCNN_NMS_MIN)
        return inter / fmin(area_a, area_b);
    return inter / (area_a + area_b - inter);
}

int mtcnn_nms(mtcnn_box *boxes, int n, double threshold, mtcnn_nms_mode mode,
              int *order)
{
    int kept = 0;
    mtcnn_box *out;

    if (n <= 0)
        return 0;
    /* Insertion sort of indices by descending score: stable, and n is at
     * most a few thousand. */
    for (int i = 0; i < n; i++) {
        int j = i;
        while (j > 0 && boxes[order[j - 1]].score < boxes[i].score) {
            order[j] = order[j - 1];
            j--;
        }
        order[j] = i;
    }
    out = malloc((size_t)n * sizeof *out);
    if (!out)
        return -1;
    for (int i = 0; i < n; i++) {
        const mtcnn_box *cand = &boxes[order[i]];
        int suppressed = 0;
        for (int k = 0; k < kept && !suppressed; k++)
            suppressed = overlap(&out[k], cand, mode) > threshold;
        if (!suppressed)
            out[kept++] = *cand;
    }
    memcpy(boxes, out, (size_t)kept * sizeof *boxes);
    free(out);
    return kept;
}

void mtcnn_rerec(mtcnn_box *boxes, int n)
{
    for (int i = 0; i < n; i++) {
        mtcnn_box *b = &boxes[i];
        double w = b->x2 - b->x1, h = b->y2 - b->y1;
        double l = fmax(w, h);
        b->x1 = b->x1 + w * 0.5 - l * 0.5;
        b->y1 = b->y1 + h * 0.5 - l * 0.5;
        b->x2 = b->x1 + l;
        b->y2 = b->y1 + l;
    }
}

void mtcnn_bbreg(mtcnn_box *boxes, int n, int plus_one)
{
    for (int i = 0; i < n; i++) {
        mtcnn_box *b = &boxes[i];
        double w = b->x2 - b->x1 + (plus_one ? 1 : 0);
        double h = b->y2 - b->y1 + (plus_one ? 1 : 0);
        double x1 = b->x1 + b->reg[0] * w, y1 = b->y1 + b->reg[1] * h;
        double x2 = b->x2 + b->reg[2] * w, y2 = b->y2 + b->reg[3] * h;
        b->x1 = x1;
        b->y1 = y1;
        b->x2 = x2;
        b->y2 = y2;
    }
}

static void fix_boxes(mtcnn_box *boxes, int n)
{
    for (int i = 0; i < n; i++) {
        boxes[i].x1 = trunc(boxes[i].x1);
        boxes[i].y1 = trunc(boxes[i].y1);
        boxes[i].x2 = trunc(boxes[i].x2);
        boxes[i].y2 = trunc(boxes[i].y2);
    }
}

/* Drop boxes a broken regression made empty or absurd, keeping order. */
static int drop_degenerate(mtcnn_box *boxes, int n)
{
    int kept = 0;
    for (int i = 0; i < n; i++) {
        const mtcnn_box *b = &boxes[i];
        if (!(b->x2 >= b->x1 && b->y2 >= b->y1) || fabs(b->x1) > MAX_COORD ||
            fabs(b->y1) > MAX_COORD || fabs(b->x2) > MAX_COORD || fabs(b->y2) > MAX_COORD)
            continue;
        boxes[kept++] = *b;
    }
    return kept;
}

/* ---- network plumbing ----------------------------------------------------- */

/* The output of a session with `channels` in its last dim (MTCNN outputs
 * are told apart by width: 2 = prob, 4 = regression, 10 = landmarks). */
static const float *output_with_channels(facenet_session *s, int channels,
                                         int dims[4], facenet_error *err)
{
    for (int i = 0; i < MTCNN_MAX_OUTPUTS; i++) {
        const float *data;
        int rank;
        if (facenet_session_output(s, i, &data, dims, &rank, NULL) != FACENET_OK)
            break;
        if (rank >= 1 && dims[rank - 1] == channels)
            return data;
    }
    fn_fail(err, FACENET_ERR_FORMAT, "MTCNN network has no output with %d channels",
            channels);
    return NULL;
}

/* Write img (rows y, cols x, 3 channels) transposed and normalised into
 * t[x][y][c] = (img[y][x][c] - 127.5) * 0.0078125. */
static void transpose_normalise(const float *img, int w, int h, float *t)
{
    for (int x = 0; x < w; x++)
        for (int y = 0; y < h; y++)
            for (int c = 0; c < 3; c++)
                t[((size_t)x * h + y) * 3 + c] =
                    (img[((size_t)y * w + x) * 3 + c] - 127.5f) * 0.0078125f;
}

typedef struct box_list {
    mtcnn_box *items;
    int n, cap;
} box_list;

static int push_box(box_list *l, const mtcnn_box *b)
{
    if (l->n == l->cap) {
        int cap = l->cap ? l->cap * 2 : 256;
        mtcnn_box *p = realloc(l->items, (size_t)cap * sizeof *p);
        if (!p)
            return 0;
        l->items = p;
        l->cap = cap;
    }
    l->items[l->n++] = *b;
    return 1;
}

static facenet_status nms_list(box_list *l, double threshold, mtcnn_nms_mode mode,
                               facenet_error *err)
{
    int *order;
    if (l->n == 0)
        return FACENET_OK;
    order = malloc((size_t)l->n * sizeof *order);
    int n = order ? mtcnn_nms(l->items, l->n, threshold, mode, order) : -1;
    free(order);
    if (n < 0)
        return fn_fail(err, FACENET_ERR_NO_MEMORY, "out of memory in NMS");
    l->n = n;
    return FACENET_OK;
}

/* ---- per-thread scratch ----------------------------------------------------- */

/* At least `floats` floats of the worker's scratch (contents undefined). */
static float *worker_scratch(mtcnn_worker *w, size_t floats)
{
    if (floats > w->scratch_floats) {
        float *p = floats <= SIZE_MAX / sizeof *p ? malloc(floats * sizeof *p) : NULL;
        if (!p)
            return NULL;
        free(w->scratch);
        w->scratch = p;
        w->scratch_floats = floats;
    }
    return w->scratch;
}

/* The first failure among n tasks, in task order, so the error reported
 * does not depend on which thread failed first. */
static facenet_status first_failure(const facenet_status *status,
                                    const facenet_error *errors, int n,
                                    facenet_error *err)
{
    for (int i = 0; i < n; i++)
        if (status[i] != FACENET_OK) {
            if (err)
                *err = errors[i];
            return status[i];
        }
    return FACENET_OK;
}

/* ---- stage 1: P-Net over the pyramid --------------------------------------- */

/* One pyramid level on one worker: its candidate boxes, after the
 * per-level NMS, go to `found` (empty on entry). */
static facenet_status pnet_level(mtcnn_worker *w, const img_f32 *image,
                                 double scale, float threshold, box_list *found,
                                 facenet_error *err)
{
    int hs = (int)ceil(image->height * scale);
    int ws = (int)ceil(image->width * scale);
    size_t floats = (size_t)hs * ws * 3;
    float *level = worker_scratch(w, 2 * floats);
    float *input = level ? level + floats : NULL;
    facenet_status st;
    int dp[4], dr[4];

    if (!level)
        return fn_fail(err, FACENET_ERR_NO_MEMORY, "out of memory for a %dx%d pyramid level",
                       ws, hs);
    st = img_resize_into(image, ws, hs, level, err);
    if (st != FACENET_OK)
        return st;
    transpose_normalise(level, ws, hs, input);
    st = facenet_session_run(w->pnet, input, 1, ws, hs, 3, err);
    if (st != FACENET_OK)
        return st;
    const float *prob = output_with_channels(w->pnet, 2, dp, err);
    const float *reg = output_with_channels(w->pnet, 4, dr, err);
    if (!prob || !reg)
        return FACENET_ERR_FORMAT;
    /* Output [1, W', H', C]: memory order is x-major, as facenet
     * enumerates the cells. */
    int out_w = dp[1], out_h = dp[2];
    for (int xi = 0; xi < out_w; xi++) {
        for (int yi = 0; yi < out_h; yi++) {
            size_t cell = (size_t)xi * out_h + yi;
            float p = prob[cell * 2 + 1];
            if (!(p >= threshold))
                continue;
            mtcnn_box b;
            memset(&b, 0, sizeof b);
            b.x1 = trunc((PNET_STRIDE * xi + 1) / scale);
            b.y1 = trunc((PNET_STRIDE * yi + 1) / scale);
            b.x2 = trunc((PNET_STRIDE * xi + PNET_CELL) / scale);
            b.y2 = trunc((PNET_STRIDE * yi + PNET_CELL) / scale);
            b.score = p;
            for (int k = 0; k < 4; k++)
                b.reg[k] = reg[cell * 4 + k];
            if (!push_box(found, &b))
                return fn_fail(err, FACENET_ERR_NO_MEMORY, "out of memory in P-Net");
        }
    }
    return nms_list(found, 0.5, MTCNN_NMS_UNION, err);
}

typedef struct level_job {
    const mtcnn_nets *nets;
    const img_f32 *image;
    const double *scales;   /* [n] the levels to run, largest first */
    float threshold;
    box_list *found;        /* [n] */
    facenet_status *status; /* [n] */
    facenet_error *errors;  /* [n] */
} level_job;

static void level_task(void *ctx, int task, int thread)
{
    const level_job *j = ctx;
    j->status[task] = pnet_level(&j->nets->workers[thread], j->image, j->scales[task],
                                 j->threshold, &j->found[task], &j->errors[task]);
}

/* P-Net over every level, the levels spread over the threads (largest
 * first, so the big ones start early), then the candidates appended to
 * `out` in level order, exactly as one thread would. */
static facenet_status pnet_pyramid(const mtcnn_nets *nets, const img_f32 *image,
                                   const double *scales, int n, float threshold,
                                   box_list *out, facenet_error *err)
{
    box_list *found = calloc((size_t)n, sizeof *found);
    facenet_status *status = calloc((size_t)n, sizeof *status);
    facenet_error *errors = calloc((size_t)n, sizeof *errors);
    facenet_status st = FACENET_OK;

    if (!found || !status || !errors) {
        st = fn_fail(err, FACENET_ERR_NO_MEMORY, "out of memory for %d pyramid levels", n);
    } else {
        level_job j = {nets, image, scales, threshold, found, status, errors};
        nn_pool_run(nets->pool, n, level_task, &j);
        st = first_failure(status, errors, n, err);
    }
    for (int i = 0; st == FACENET_OK && i < n; i++)
        for (int k = 0; k < found[i].n && st == FACENET_OK; k++)
            if (!push_box(out, &found[i].items[k]))
                st = fn_fail(err, FACENET_ERR_NO_MEMORY, "out of memory in P-Net");
    for (int i = 0; found && i < n; i++)
        free(found[i].items);
    free(found);
    free(status);
    free(errors);
    return st;
}

/* ---- stages 2 and 3: crops through R-Net / O-Net ------------------------------ */

/* The network outputs of every crop, gathered from the batches. */
typedef struct crop_outputs {
    float *prob; /* [n][2] */
    float *reg;  /* [n][4] */
    float *lm;   /* [n][10], or NULL when the stage has no landmarks */
} crop_outputs;

typedef struct crop_job {
    const mtcnn_nets *nets;
    const img_f32 *image;
    const mtcnn_box *boxes;
    int n, batches, size, onet;
    crop_outputs out;
    facenet_status *status; /* [batches] */
    facenet_error *errors;  /* [batches] */
} crop_job;

/* Copy output `channels` of a batch of n crops into dst[n][channels]. */
static facenet_status take_output(facenet_session *net, int channels, int n, float *dst,
                                  facenet_error *err)
{
    int dims[4];
    const float *src = output_with_channels(net, channels, dims, err);
    if (!src)
        return FACENET_ERR_FORMAT;
    if (dims[0] != n)
        return fn_fail(err, FACENET_ERR_FORMAT, "MTCNN output has batch %d, expected %d",
                       dims[0], n);
    memcpy(dst, src, (size_t)n * channels * sizeof *dst);
    return FACENET_OK;
}

/* Crops per network call. Batches whose activations outgrow the L2 cache
 * (512 KiB per core here) run far slower per crop: `facenet bench`
 * measured O-Net at 0.39 ms per crop in batches of 1 or 2 and 1.56 ms in
 * batches of 4 or more, R-Net at 0.046 ms per crop in batches of 4 or 8,
 * 0.075 ms in batches of 32. O-Net's first activation is 270 KB a crop. */
#define RNET_CALL_BATCH 4
#define ONET_CALL_BATCH 1

/* Crop every (integer) box of the batch, resize to size x size, run the
 * network, keep its outputs; a few crops per network call. */
static facenet_status crop_batch(const crop_job *j, mtcnn_worker *w, int first, int count,
                                 facenet_error *err)
{
    const size_t per = (size_t)j->size * j->size * 3;
    const int call = j->onet ? ONET_CALL_BATCH : RNET_CALL_BATCH;
    facenet_session *net = j->onet ? w->onet : w->rnet;
    float *crop = worker_scratch(w, per * ((size_t)call + 1));
    float *batch = crop ? crop + per : NULL;
    facenet_status st = FACENET_OK;

    if (!crop)
        return fn_fail(err, FACENET_ERR_NO_MEMORY, "out of memory for %d face crops", count);
    for (int c0 = first; c0 < first + count && st == FACENET_OK; c0 += call) {
        const int m = first + count - c0 < call ? first + count - c0 : call;
        for (int i = 0; i < m && st == FACENET_OK; i++) {
            const mtcnn_box *b = &j->boxes[c0 + i];
            st = img_crop_resize_into(j->image, (int)b->x1, (int)b->y1, (int)b->x2,
                                      (int)b->y2, j->size, j->size, crop, err);
            if (st == FACENET_OK)
                transpose_normalise(crop, j->size, j->size, batch + per * (size_t)i);
        }
        if (st == FACENET_OK)
            st = facenet_session_run(net, batch, m, j->size, j->size, 3, err);
        if (st == FACENET_OK)
            st = take_output(net, 2, m, j->out.prob + (size_t)c0 * 2, err);
        if (st == FACENET_OK)
            st = take_output(net, 4, m, j->out.reg + (size_t)c0 * 4, err);
        if (st == FACENET_OK && j->out.lm)
            st = take_output(net, 10, m, j->out.lm + (size_t)c0 * 10, err);
    }
    return st;
}

static void crop_task(void *ctx, int task, int thread)
{
    const crop_job *j = ctx;
    const int first = (int)((long long)j->n * task / j->batches);
    const int last = (int)((long long)j->n * (task + 1) / j->batches);
    j->status[task] = last > first ? crop_batch(j, &j->nets->workers[thread], first,
                                                last - first, &j->errors[task])
                                   : FACENET_OK;
}

/* Run R-Net (size 24) or O-Net (size 48) on every box: one batch per
 * thread. */
static facenet_status run_crops(const mtcnn_nets *nets, const img_f32 *image,
                                const box_list *boxes, int size, crop_outputs *out,
                                facenet_error *err)
{
    const int batches = boxes->n < nets->threads ? boxes->n : nets->threads;
    facenet_status *status = calloc((size_t)batches, sizeof *status);
    facenet_error *errors = calloc((size_t)batches, sizeof *errors);
    facenet_status st;

    if (!status || !errors) {
        st = fn_fail(err, FACENET_ERR_NO_MEMORY, "out of memory for %d face crops", boxes->n);
    } else {
        crop_job j = {nets, image, boxes->items, boxes->n, batches, size, size == 48, *out,
                      status, errors};
        nn_pool_run(nets->pool, batches, crop_task, &j);
        st = first_failure(status, errors, batches, err);
    }
    free(status);
    free(errors);
    return st;
}

/* Keep the boxes whose score passes, with the network's regression (and
 * landmarks, for O-Net) attached. */
static facenet_status refine(const mtcnn_nets *nets, const img_f32 *image,
                             box_list *boxes, int size, float threshold,
                             int with_landmarks, facenet_error *err)
{
    const size_t n = (size_t)boxes->n;
    crop_outputs out = {malloc(n * 2 * sizeof(float)), malloc(n * 4 * sizeof(float)),
                        with_landmarks ? malloc(n * 10 * sizeof(float)) : NULL};
    int kept = 0;
    facenet_status st;

    if (!out.prob || !out.reg || (with_landmarks && !out.lm))
        st = fn_fail(err, FACENET_ERR_NO_MEMORY, "out of memory for %d face crops", boxes->n);
    else
        st = run_crops(nets, image, boxes, size, &out, err);
    for (int i = 0; st == FACENET_OK && i < boxes->n; i++) {
        mtcnn_box b = boxes->items[i];
        float p = out.prob[(size_t)i * 2 + 1];
        if (!(p > threshold))
            continue;
        b.score = p;
        for (int k = 0; k < 4; k++)
            b.reg[k] = out.reg[(size_t)i * 4 + k];
        if (out.lm) {
            /* Fractions of the integer box before regression. */
            const float *lm = out.lm + (size_t)i * 10;
            double w = b.x2 - b.x1 + 1, h = b.y2 - b.y1 + 1;
            for (int k = 0; k < 5; k++) {
                b.landmarks[k] = b.x1 - 1 + lm[k] * w;
                b.landmarks[5 + k] = b.y1 - 1 + lm[5 + k] * h;
            }
        }
        boxes->items[kept++] = b;
    }
    if (st == FACENET_OK)
        boxes->n = kept;
    free(out.prob);
    free(out.reg);
    free(out.lm);
    return st;
}

static facenet_status check_inputs(const mtcnn_nets *nets, const img_f32 *image,
                                   const mtcnn_options *opt, facenet_error *err)
{
    if (!nets || !nets->workers || nets->threads < 1 || !image || !opt)
        return fn_fail(err, FACENET_ERR_INVALID_ARGUMENT, "MTCNN: missing networks or image");
    if (nn_pool_threads(nets->pool) != nets->threads)
        return fn_fail(err, FACENET_ERR_INVALID_ARGUMENT,
                       "MTCNN: a pool of %d threads for %d sets of networks",
                       nn_pool_threads(nets->pool), nets->threads);
    for (int t = 0; t < nets->threads; t++) {
        const mtcnn_worker *w = &nets->workers[t];
        if (!w->pnet || !w->rnet || !w->onet)
            return fn_fail(err, FACENET_ERR_INVALID_ARGUMENT, "MTCNN: missing networks");
    }
    if (image->channels != 3)
        return fn_fail(err, FACENET_ERR_INVALID_ARGUMENT, "MTCNN needs an RGB image");
    if (opt->min_size < 12 || opt->min_size > 100000)
        return fn_fail(err, FACENET_ERR_INVALID_ARGUMENT,
                       "min face size %d is outside 12..100000", opt->min_size);
    if (!(opt->factor > 0.1 && opt->factor < 0.95))
        return fn_fail(err, FACENET_ERR_INVALID_ARGUMENT,
                       "pyramid factor %g is outside (0.1, 0.95)", opt->factor);
    for (int i = 0; i < 3; i++)
        if (!(opt->thresholds[i] >= 0 && opt->thresholds[i] <= 1))
            return fn_fail(err, FACENET_ERR_INVALID_ARGUMENT,
                           "threshold %d is outside [0, 1]", i + 1);
    return FACENET_OK;
}

facenet_status mtcnn_detect(const mtcnn_nets *nets, const img_f32 *image,
                            const mtcnn_options *opt, mtcnn_face **faces,
                            int *n_faces, facenet_error *err)
{
    double scales[64], run[64];
    box_list boxes = {0};
    facenet_status st;
    int n_scales, n_run = 0;

    *faces = NULL;
    *n_faces = 0;
    st = check_inputs(nets, image, opt, err);
    if (st != FACENET_OK)
        return st;
    n_scales = mtcnn_pyramid(image->width, image->height, opt, scales, 64);
    if (n_scales > 64)
        n_scales = 64;

    for (int i = 0; i < n_scales; i++) {
        double hs = ceil(image->height * scales[i]), ws = ceil(image->width * scales[i]);
        if (hs * ws <= (double)opt->max_level_pixels)
            run[n_run++] = scales[i];
    }
    if (n_run > 0)
        st = pnet_pyramid(nets, image, run, n_run, opt->thresholds[0], &boxes, err);
    if (st == FACENET_OK)
        st = nms_list(&boxes, 0.7, MTCNN_NMS_UNION, err);
    if (st == FACENET_OK && boxes.n > 0) {
        mtcnn_bbreg(boxes.items, boxes.n, 0);
        mtcnn_rerec(boxes.items, boxes.n);
        fix_boxes(boxes.items, boxes.n);
        boxes.n = drop_degenerate(boxes.items, boxes.n);
    }
    if (st == FACENET_OK && boxes.n > 0)
        st = refine(nets, image, &boxes, 24, opt->thresholds[1], 0, err);
    if (st == FACENET_OK && boxes.n > 0) {
        st = nms_list(&boxes, 0.7, MTCNN_NMS_UNION, err);
        mtcnn_bbreg(boxes.items, boxes.n, 1);
        mtcnn_rerec(boxes.items, boxes.n);
        fix_boxes(boxes.items, boxes.n);
        boxes.n = drop_degenerate(boxes.items, boxes.n);
    }
    if (st == FACENET_OK && boxes.n > 0)
        st = refine(nets, image, &boxes, 48, opt->thresholds[2], 1, err);
    if (st == FACENET_OK && boxes.n > 0) {
        mtcnn_bbreg(boxes.items, boxes.n, 1);
        st = nms_list(&boxes, 0.7, MTCNN_NMS_MIN, err);
    }
    if (st == FACENET_OK && boxes.n > 0) {
        *faces = malloc((size_t)boxes.n * sizeof **faces);
        if (!*faces) {
            st = fn_fail(err, FACENET_ERR_NO_MEMORY, "out of memory for faces");
        } else {
            for (int i = 0; i < boxes.n; i++) {
                const mtcnn_box *b = &boxes.items[i];
                mtcnn_face *f = &(*faces)[i];
                f->box[0] = b->x1;
                f->box[1] = b->y1;
                f->box[2] = b->x2;
                f->box[3] = b->y2;
                f->score = b->score;
                for (int k = 0; k < 5; k++) {
                    f->landmarks[k][0] = b->landmarks[k];
                    f->landmarks[k][1] = b->landmarks[5 + k];
                }
            }
            *n_faces = boxes.n;
        }
    }
    free(boxes.items);
    return st;
}
