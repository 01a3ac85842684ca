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

/* Every network input is the transposed image normalised to about [-1, 1]:
 * t[x][y][c] = (img[y][x][c] - 127.5) * 0.0078125, written by the resize
 * itself. */
static const img_norm mtcnn_norm = {127.5f, 0.0078125f};

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

/* P-Net is 3x3 valid conv, 2x2/2 max pool (SAME: an odd row count pads one
 * row at the end), 3x3 valid, 3x3 valid, then 1x1 layers. Output cell i
 * along an axis reads input pixels 2i .. 2i+11, so the cells [a, b) of a
 * level can be computed alone from input columns [2a, 2b + 10): the band
 * starts on an even column, so it pools the same pairs as the whole level,
 * and a band that runs to the level's edge pads the same way. */
#define PNET_BAND_HALO 10

/* P-Net output cells along an axis of `len` input pixels. */
static int pnet_cells(int len)
{
    return (len - 2 + 1) / 2 - 4;
}

/* One piece of P-Net work: output cells [cell0, cell1) along x of one
 * level (the whole level when it is not split). */
typedef struct pnet_band {
    int level;
    int cell0, cell1;
    long long work; /* input pixels, for ordering */
} pnet_band;

/* One band of one level on one worker: resample the band's input columns
 * from the 8-bit image, run P-Net, and append the cells that pass to
 * `found` (empty on entry), in the order facenet enumerates them: x-major. */
static facenet_status pnet_run_band(mtcnn_worker *w, const img_rgb8 *image, double scale,
                                    const pnet_band *band, float threshold, box_list *found,
                                    facenet_error *err)
{
    const int hs = (int)ceil(image->height * scale);
    const int ws = (int)ceil(image->width * scale);
    const int whole[4] = {1, 1, image->width, image->height};
    const int col0 = PNET_STRIDE * band->cell0;
    const int last = band->cell1 == pnet_cells(ws);
    const int col1 = last ? ws : PNET_STRIDE * band->cell1 + PNET_BAND_HALO;
    float *input = worker_scratch(w, (size_t)(col1 - col0) * hs * 3);
    facenet_status st;
    int dp[4], dr[4];

    if (!input)
        return fn_fail(err, FACENET_ERR_NO_MEMORY, "out of memory for a %dx%d pyramid level",
                       ws, hs);
    st = img_crop_resize_rgb8_t(image, whole, ws, hs, col0, col1, &mtcnn_norm, input, err);
    if (st == FACENET_OK)
        st = facenet_session_run(w->pnet, input, 1, col1 - col0, hs, 3, err);
    if (st != FACENET_OK)
        return st;
    const float *prob = output_with_channels(w->pnet, 2, dp, err);
    const float *reg = output_with_channels(w->pnet, 4, dr, err);
    if (!prob || !reg)
        return FACENET_ERR_FORMAT;
    /* Output [1, W', H', C]: memory order is x-major, as facenet
     * enumerates the cells. */
    const int out_w = dp[1], out_h = dp[2];
    if (out_w != band->cell1 - band->cell0 || out_h != pnet_cells(hs))
        return fn_fail(err, FACENET_ERR_FORMAT,
                       "P-Net gave %dx%d cells for a %dx%d input, expected %dx%d", out_w, out_h,
                       col1 - col0, hs, band->cell1 - band->cell0, pnet_cells(hs));
    for (int xi = 0; xi < out_w; xi++) {
        for (int yi = 0; yi < out_h; yi++) {
            size_t cell = (size_t)xi * out_h + yi;
            float p = prob[cell * 2 + 1];
            if (!(p >= threshold))
                continue;
            const int x = band->cell0 + xi;
            mtcnn_box b;
            memset(&b, 0, sizeof b);
            b.x1 = trunc((PNET_STRIDE * x + 1) / scale);
            b.y1 = trunc((PNET_STRIDE * yi + 1) / scale);
            b.x2 = trunc((PNET_STRIDE * x + PNET_CELL) / scale);
            b.y2 = trunc((PNET_STRIDE * yi + PNET_CELL) / scale);
            b.score = p;
            for (int k = 0; k < 4; k++)
                b.reg[k] = reg[cell * 4 + k];
            if (!push_box(found, &b))
                return fn_fail(err, FACENET_ERR_NO_MEMORY, "out of memory in P-Net");
        }
    }
    return FACENET_OK;
}

/* Bands narrower than this many output cells cost more in halo (10 input
 * columns recomputed per cut) than they gain in balance. */
#define PNET_MIN_BAND_CELLS 8

/* Cut the levels into bands for `threads` threads: one band per level on
 * one thread; otherwise a level bigger than half of one thread's share
 * (total / (2 * threads) input pixels) is cut into near-equal bands of
 * about that size, so that the largest level (half of all
 * P-Net work) no longer holds one thread while the others idle. Writes the
 * bands in level order and returns how many, or -1 if they are more than
 * max. */
static int pnet_plan(const img_rgb8 *image, const double *scales, int n_levels, int threads,
                     pnet_band *bands, int max)
{
    long long total = 0;
    int n = 0;
    for (int l = 0; l < n_levels; l++)
        total += (long long)ceil(image->width * scales[l]) * (long long)ceil(image->height * scales[l]);
    for (int l = 0; l < n_levels; l++) {
        const int ws = (int)ceil(image->width * scales[l]);
        const int hs = (int)ceil(image->height * scales[l]);
        const int cells = pnet_cells(ws);
        const long long target = total / (2LL * threads);
        long long pieces = threads > 1 && target > 0 ? ((long long)ws * hs + target - 1) / target : 1;
        if (pieces > cells / PNET_MIN_BAND_CELLS)
            pieces = cells / PNET_MIN_BAND_CELLS;
        if (pieces < 1)
            pieces = 1;
        if (pieces > max - n)
            return -1;
        for (long long p = 0; p < pieces; p++) {
            pnet_band *b = &bands[n++];
            b->level = l;
            b->cell0 = (int)(cells * p / pieces);
            b->cell1 = (int)(cells * (p + 1) / pieces);
            b->work = (long long)(b->cell1 - b->cell0) * PNET_STRIDE * hs;
        }
    }
    return n;
}

typedef struct pnet_job {
    const mtcnn_nets *nets;
    const img_rgb8 *image;
    const double *scales;   /* [levels] */
    const pnet_band *bands; /* [n] in level order */
    const int *order;       /* [n] band of each task, the largest first */
    float threshold;
    box_list *found;        /* [n], per band */
    facenet_status *status; /* [n] */
    facenet_error *errors;  /* [n] */
} pnet_job;

static void pnet_task(void *ctx, int task, int thread)
{
    const pnet_job *j = ctx;
    const int b = j->order[task];
    j->status[b] = pnet_run_band(&j->nets->workers[thread], j->image,
                                 j->scales[j->bands[b].level], &j->bands[b], j->threshold,
                                 &j->found[b], &j->errors[b]);
}

/* The per-level NMS, run on a level's bands gathered in order. */
typedef struct level_nms_job {
    box_list *levels;       /* [n] */
    facenet_status *status; /* [n] */
    facenet_error *errors;  /* [n] */
} level_nms_job;

static void level_nms_task(void *ctx, int task, int thread)
{
    const level_nms_job *j = ctx;
    (void)thread;
    j->status[task] = nms_list(&j->levels[task], 0.5, MTCNN_NMS_UNION, &j->errors[task]);
}

/* Append src's boxes to dst. */
static int append_boxes(box_list *dst, const box_list *src)
{
    for (int k = 0; k < src->n; k++)
        if (!push_box(dst, &src->items[k]))
            return 0;
    return 1;
}

/* P-Net over every band of every level, claimed by the threads largest
 * first; then each level's bands joined in order and the per-level NMS,
 * and the candidates appended to `out` in level order: exactly the boxes,
 * in the order, that one thread running whole levels finds. */
static facenet_status pnet_pyramid(const mtcnn_nets *nets, const img_rgb8 *image,
                                   const double *scales, int n_levels, float threshold,
                                   box_list *out, facenet_error *err)
{
    /* A level gets at most about 4 * threads bands (see pnet_plan). */
    const int max_bands = n_levels * (4 * nets->threads + 2);
    pnet_band *bands = malloc((size_t)max_bands * sizeof *bands);
    int *order = malloc((size_t)max_bands * sizeof *order);
    box_list *found = calloc((size_t)max_bands, sizeof *found);
    box_list *levels = calloc((size_t)n_levels, sizeof *levels);
    facenet_status *status = calloc((size_t)max_bands, sizeof *status);
    facenet_error *errors = calloc((size_t)max_bands, sizeof *errors);
    facenet_status st = FACENET_OK;
    int n = 0;

    if (!bands || !order || !found || !levels || !status || !errors) {
        st = fn_fail(err, FACENET_ERR_NO_MEMORY, "out of memory for %d pyramid levels", n_levels);
    } else {
        n = pnet_plan(image, scales, n_levels, nets->threads, bands, max_bands);
        if (n < 0)
            st = fn_fail(err, FACENET_ERR_INTERNAL, "P-Net: too many bands");
    }
    if (st == FACENET_OK) {
        /* Insertion sort, stable: the largest bands start first. */
        for (int i = 0; i < n; i++) {
            int k = i;
            while (k > 0 && bands[order[k - 1]].work < bands[i].work) {
                order[k] = order[k - 1];
                k--;
            }
            order[k] = i;
        }
        pnet_job j = {nets, image, scales, bands, order, threshold, found, status, errors};
        nn_pool_run(nets->pool, n, pnet_task, &j);
        st = first_failure(status, errors, n, err);
    }
    for (int b = 0; st == FACENET_OK && b < n; b++)
        if (!append_boxes(&levels[bands[b].level], &found[b]))
            st = fn_fail(err, FACENET_ERR_NO_MEMORY, "out of memory in P-Net");
    if (st == FACENET_OK) {
        level_nms_job j = {levels, status, errors};
        nn_pool_run(nets->pool, n_levels, level_nms_task, &j);
        st = first_failure(status, errors, n_levels, err);
    }
    for (int l = 0; st == FACENET_OK && l < n_levels; l++)
        if (!append_boxes(out, &levels[l]))
            st = fn_fail(err, FACENET_ERR_NO_MEMORY, "out of memory in P-Net");
    for (int b = 0; found && b < n; b++)
        free(found[b].items);
    for (int l = 0; levels && l < n_levels; l++)
        free(levels[l].items);
    free(bands);
    free(order);
    free(found);
    free(levels);
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
    const img_rgb8 *image;
    const mtcnn_box *boxes;
    int n, call, size, onet; /* call: crops per network call, one call per task */
    crop_outputs out;
    facenet_status *status;  /* [tasks] */
    facenet_error *errors;   /* [tasks] */
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

/* Crops [first, first + m) of the job: resample each (integer) box straight
 * from the 8-bit image into the network's input, run the network once,
 * keep its outputs. */
static facenet_status crop_call(const crop_job *j, mtcnn_worker *w, int first, int m,
                                facenet_error *err)
{
    const size_t per = (size_t)j->size * j->size * 3;
    facenet_session *net = j->onet ? w->onet : w->rnet;
    float *batch = worker_scratch(w, per * (size_t)m);
    facenet_status st = FACENET_OK;

    if (!batch)
        return fn_fail(err, FACENET_ERR_NO_MEMORY, "out of memory for %d face crops", m);
    for (int i = 0; i < m && st == FACENET_OK; i++) {
        const mtcnn_box *b = &j->boxes[first + i];
        const int box[4] = {(int)b->x1, (int)b->y1, (int)b->x2, (int)b->y2};
        st = img_crop_resize_rgb8_t(j->image, box, j->size, j->size, 0, j->size, &mtcnn_norm,
                                    batch + per * (size_t)i, err);
    }
    if (st == FACENET_OK)
        st = facenet_session_run(net, batch, m, j->size, j->size, 3, err);
    if (st == FACENET_OK)
        st = take_output(net, 2, m, j->out.prob + (size_t)first * 2, err);
    if (st == FACENET_OK)
        st = take_output(net, 4, m, j->out.reg + (size_t)first * 4, err);
    if (st == FACENET_OK && j->out.lm)
        st = take_output(net, 10, m, j->out.lm + (size_t)first * 10, err);
    return st;
}

/* One network call's crops; the threads claim calls as they finish the
 * last, so a thread slowed by another process does not hold the stage. */
static void crop_task(void *ctx, int task, int thread)
{
    const crop_job *j = ctx;
    const int first = task * j->call;
    const int m = j->n - first < j->call ? j->n - first : j->call;
    j->status[task] = crop_call(j, &j->nets->workers[thread], first, m, &j->errors[task]);
}

/* Run R-Net (size 24) or O-Net (size 48) on every box, a few crops per
 * call. */
static facenet_status run_crops(const mtcnn_nets *nets, const img_rgb8 *image,
                                const box_list *boxes, int size, crop_outputs *out,
                                facenet_error *err)
{
    const int call = size == 48 ? ONET_CALL_BATCH : RNET_CALL_BATCH;
    const int tasks = (boxes->n + call - 1) / call;
    facenet_status *status = calloc((size_t)tasks, sizeof *status);
    facenet_error *errors = calloc((size_t)tasks, sizeof *errors);
    facenet_status st;

    if (!status || !errors) {
        st = fn_fail(err, FACENET_ERR_NO_MEMORY, "out of memory for %d face crops", boxes->n);
    } else {
        crop_job j = {nets, image, boxes->items, boxes->n, call, size, size == 48, *out,
                      status, errors};
        nn_pool_run(nets->pool, tasks, crop_task, &j);
        st = first_failure(status, errors, tasks, err);
    }
    free(status);
    free(errors);
    return st;
}

/* Keep the boxes whose score passes, with the network's regression (and
 * landmarks, for O-Net) attached. */
static facenet_status refine(const mtcnn_nets *nets, const img_rgb8 *image,
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

static facenet_status check_inputs(const mtcnn_nets *nets, const img_rgb8 *image,
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
    if (image->width < 1 || image->height < 1 || !image->pixels)
        return fn_fail(err, FACENET_ERR_INVALID_ARGUMENT, "MTCNN: empty image");
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

facenet_status mtcnn_detect(const mtcnn_nets *nets, const img_rgb8 *image,
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
