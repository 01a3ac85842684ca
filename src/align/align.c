/*
 * align.c - similarity fit and crops.
 *
 * In 2-D the least-squares similarity without reflection has a closed
 * form: with both point sets centred, the transform is z -> (a + ib) z
 * where a = sum(dot) / sum(|s|^2) and b = sum(cross) / sum(|s|^2). This is
 * exactly what Umeyama's SVD method (as in skimage's SimilarityTransform)
 * gives, without an SVD.
 */
#include "align/align.h"

#include <math.h>
#include <string.h>

#include "common/error.h"

static const double arcface112[5][2] = {
    {38.2946, 51.6963}, {73.5318, 51.5014}, {56.0252, 71.7366},
    {41.5493, 92.3655}, {70.7299, 92.2041}};

static const double dlib150[5][2] = {
    {47.549, 46.599}, {100.476, 46.599}, {74.013, 76.562},
    {50.415, 103.023}, {97.610, 103.023}};

int align_template_size(align_template t)
{
    switch (t) {
    case ALIGN_ARCFACE_112: return 112;
    case ALIGN_DLIB_150: return 150;
    }
    return 0;
}

int align_template_from_name(const char *name, align_template *t)
{
    if (name && strcmp(name, "arcface112") == 0) {
        *t = ALIGN_ARCFACE_112;
        return 1;
    }
    if (name && strcmp(name, "dlib150") == 0) {
        *t = ALIGN_DLIB_150;
        return 1;
    }
    return 0;
}

facenet_status align_similarity(const double (*points)[2],
                                const double (*target)[2], int n,
                                double matrix[6], facenet_error *err)
{
    double ms[2] = {0, 0}, md[2] = {0, 0};
    double dot = 0, cross = 0, norm = 0;

    if (n < 2)
        return fn_fail(err, FACENET_ERR_INVALID_ARGUMENT, "need at least 2 points");
    for (int i = 0; i < n; i++) {
        if (!isfinite(points[i][0]) || !isfinite(points[i][1]))
            return fn_fail(err, FACENET_ERR_INVALID_ARGUMENT, "landmark %d is not finite", i);
        ms[0] += points[i][0] / n;
        ms[1] += points[i][1] / n;
        md[0] += target[i][0] / n;
        md[1] += target[i][1] / n;
    }
    for (int i = 0; i < n; i++) {
        double sx = points[i][0] - ms[0], sy = points[i][1] - ms[1];
        double dx = target[i][0] - md[0], dy = target[i][1] - md[1];
        dot += sx * dx + sy * dy;
        cross += sx * dy - sy * dx;
        norm += sx * sx + sy * sy;
    }
    if (!(norm > 1e-12))
        return fn_fail(err, FACENET_ERR_INVALID_ARGUMENT,
                       "landmarks are degenerate (all at one point)");
    double a = dot / norm, b = cross / norm;
    matrix[0] = a;
    matrix[1] = -b;
    matrix[2] = md[0] - (a * ms[0] - b * ms[1]);
    matrix[3] = b;
    matrix[4] = a;
    matrix[5] = md[1] - (b * ms[0] + a * ms[1]);
    return FACENET_OK;
}

facenet_status align_landmarks_matrix(const double landmarks[5][2],
                                      align_template t, double matrix[6],
                                      facenet_error *err)
{
    switch (t) {
    case ALIGN_ARCFACE_112:
        return align_similarity(landmarks, arcface112, 5, matrix, err);
    case ALIGN_DLIB_150:
        return align_similarity(landmarks, dlib150, 5, matrix, err);
    }
    return fn_fail(err, FACENET_ERR_INVALID_ARGUMENT, "unknown alignment template %d", (int)t);
}

facenet_status align_crop(const img_f32 *image, const double landmarks[5][2],
                          align_template t, float *dst, facenet_error *err)
{
    double m[6];
    int size = align_template_size(t);
    facenet_status st = align_landmarks_matrix(landmarks, t, m, err);
    if (st != FACENET_OK)
        return st;
    return img_warp_affine_into(image, m, size, size, dst, err);
}

facenet_status align_margin_crop(const img_f32 *image, const double box[4],
                                 int margin, int size, float *dst,
                                 facenet_error *err)
{
    if (margin < 0 || size < 1 || size > 4096)
        return fn_fail(err, FACENET_ERR_INVALID_ARGUMENT, "bad margin %d or size %d",
                       margin, size);
    for (int i = 0; i < 4; i++)
        if (!isfinite(box[i]) || fabs(box[i]) > 1e7)
            return fn_fail(err, FACENET_ERR_INVALID_ARGUMENT, "face box is not finite");
    /* As align_dataset_mtcnn: integer box, margin/2 each side, clipped. */
    double half = margin / 2.0;
    double x1 = floor(fmax(floor(box[0]) - half, 0));
    double y1 = floor(fmax(floor(box[1]) - half, 0));
    double x2 = floor(fmin(floor(box[2]) + half, image->width));
    double y2 = floor(fmin(floor(box[3]) + half, image->height));
    if (!(x2 > x1 && y2 > y1))
        return fn_fail(err, FACENET_ERR_INVALID_ARGUMENT, "face box is outside the image");
    /* Pixels x1 .. x2-1 (0-based) are pixels x1+1 .. x2 in the MATLAB
     * convention img_crop_resize_into takes. */
    return img_crop_resize_into(image, (int)x1 + 1, (int)y1 + 1, (int)x2, (int)y2, size,
                                size, dst, err);
}

/* ------------------------------------------------------------------------ */
/* Jitter                                                                   */
/* ------------------------------------------------------------------------ */

#define JITTER_MAX_DEGREES 3.0
#define JITTER_MIN_FILL 0.97
#define JITTER_MAX_FILL 0.99999
#define JITTER_MAX_SHIFT 0.02
#define JITTER_BORDER 3 /* dlib shrinks the chip by 3 pixels per side */

static uint64_t splitmix64(uint64_t *state)
{
    uint64_t z = (*state += UINT64_C(0x9e3779b97f4a7c15));
    z = (z ^ (z >> 30)) * UINT64_C(0xbf58476d1ce4e5b9);
    z = (z ^ (z >> 27)) * UINT64_C(0x94d049bb133111eb);
    return z ^ (z >> 31);
}

/* Uniform in [lo, hi), from the top 53 bits. */
static double uniform(uint64_t *state, double lo, double hi)
{
    double u = (double)(splitmix64(state) >> 11) * (1.0 / 9007199254740992.0);
    return lo + (hi - lo) * u;
}

void align_jitter_next(uint64_t *state, align_jitter *out)
{
    /* In dlib's order: shift, scale, angle, mirror. */
    out->tx = uniform(state, -JITTER_MAX_SHIFT, JITTER_MAX_SHIFT);
    out->ty = uniform(state, -JITTER_MAX_SHIFT, JITTER_MAX_SHIFT);
    out->fill = uniform(state, JITTER_MIN_FILL, JITTER_MAX_FILL);
    out->angle = uniform(state, -JITTER_MAX_DEGREES, JITTER_MAX_DEGREES) * M_PI / 180.0;
    out->mirror = uniform(state, 0, 1) > 0.5;
}

void align_jitter_matrix(const align_jitter *j, int size, double m[6])
{
    /* Output pixel p samples the chip at C + k R(angle) (p - c): c is the
     * chip centre, C the shifted crop centre, k the crop side over the
     * chip side. The forward matrix is the inverse of that. */
    double c = (size - 1) / 2.0, inner = size - 2.0 * JITTER_BORDER;
    double cx = c + j->tx * inner, cy = c + j->ty * inner;
    double k = inner / j->fill / size;
    double cs = cos(j->angle) / k, sn = sin(j->angle) / k;
    m[0] = cs;
    m[1] = sn;
    m[2] = c - cs * cx - sn * cy;
    m[3] = -sn;
    m[4] = cs;
    m[5] = c + sn * cx - cs * cy;
}

facenet_status align_jitter_chip(const float *chip, int size,
                                 const align_jitter *j, float *dst,
                                 facenet_error *err)
{
    double m[6];
    img_f32 src;
    facenet_status st;

    if (!chip || !dst || !j || size < 2 * JITTER_BORDER + 1 || size > 4096)
        return fn_fail(err, FACENET_ERR_INVALID_ARGUMENT, "jitter: bad chip or size %d", size);
    if (!(fabs(j->angle) <= JITTER_MAX_DEGREES * M_PI / 180.0 + 1e-12) ||
        !(j->fill >= JITTER_MIN_FILL && j->fill <= JITTER_MAX_FILL) ||
        !(fabs(j->tx) <= JITTER_MAX_SHIFT && fabs(j->ty) <= JITTER_MAX_SHIFT))
        return fn_fail(err, FACENET_ERR_INVALID_ARGUMENT, "jitter: parameters out of range");
    src.width = src.height = size;
    src.channels = 3;
    src.data = (float *)(uintptr_t)chip; /* read only: the warp never writes src */
    align_jitter_matrix(j, size, m);
    st = img_warp_affine_into(&src, m, size, size, dst, err);
    if (st == FACENET_OK && j->mirror) {
        img_f32 out = {size, size, 3, dst};
        img_f32_mirror(&out);
    }
    return st;
}
