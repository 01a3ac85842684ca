/*
 * fusion.c - the fusion scales of fusion.h, each chosen on training pairs.
 */
#include "verify/fusion.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "common/error.h"
#include "verify/lfw.h"

#define LOGISTIC_RIDGE 1e-8
#define LOGISTIC_MAX_ITERATIONS 100
#define LOGISTIC_TOLERANCE 1e-12

static const struct {
    const char *name;
    lfw_fusion method;
} fusion_names[] = {{"threshold", LFW_FUSION_THRESHOLD},
                    {"separation", LFW_FUSION_SEPARATION},
                    {"logistic", LFW_FUSION_LOGISTIC}};

int lfw_fusion_from_name(const char *name, lfw_fusion *out)
{
    for (size_t i = 0; name && i < sizeof fusion_names / sizeof fusion_names[0]; i++)
        if (strcmp(name, fusion_names[i].name) == 0) {
            *out = fusion_names[i].method;
            return 1;
        }
    return 0;
}

const char *lfw_fusion_name(lfw_fusion method)
{
    for (size_t i = 0; i < sizeof fusion_names / sizeof fusion_names[0]; i++)
        if (fusion_names[i].method == method)
            return fusion_names[i].name;
    return NULL;
}

/* Solve the 3x3 system a x = b by Gaussian elimination with partial
 * pivoting. Returns 0, or -1 when a is singular. */
static int solve3(double a[3][3], double b[3], double x[3])
{
    for (int c = 0; c < 3; c++) {
        int p = c;
        for (int r = c + 1; r < 3; r++)
            if (fabs(a[r][c]) > fabs(a[p][c]))
                p = r;
        if (!(fabs(a[p][c]) > 1e-300))
            return -1;
        for (int k = 0; k < 3; k++) {
            double t = a[c][k];
            a[c][k] = a[p][k];
            a[p][k] = t;
        }
        double t = b[c];
        b[c] = b[p];
        b[p] = t;
        for (int r = c + 1; r < 3; r++) {
            double f = a[r][c] / a[c][c];
            for (int k = c; k < 3; k++)
                a[r][k] -= f * a[c][k];
            b[r] -= f * b[c];
        }
    }
    for (int r = 2; r >= 0; r--) {
        double s = b[r];
        for (int k = r + 1; k < 3; k++)
            s -= a[r][k] * x[k];
        x[r] = s / a[r][r];
    }
    return 0;
}

/* Mean and standard deviation of the used values of x. */
static void used_mean_std(const double *x, const unsigned char *use, size_t n, double *mean,
                          double *std)
{
    double sum = 0, sq = 0;
    size_t count = 0;
    for (size_t i = 0; i < n; i++)
        if (!use || use[i]) {
            sum += x[i];
            count++;
        }
    *mean = count ? sum / (double)count : 0;
    for (size_t i = 0; i < n; i++)
        if (!use || use[i])
            sq += (x[i] - *mean) * (x[i] - *mean);
    *std = count ? sqrt(sq / (double)count) : 0;
}

facenet_status lfw_logistic_fit(const double *x0, const double *x1, const unsigned char *y,
                                const unsigned char *use, size_t n, double b[3],
                                facenet_error *err)
{
    size_t count[2] = {0, 0};
    double mean[2], sd[2], beta[3] = {0, 0, 0};

    if (!x0 || !x1 || !y || !b)
        return fn_fail(err, FACENET_ERR_INVALID_ARGUMENT, "logistic fit: missing input");
    for (size_t i = 0; i < n; i++) {
        if (use && !use[i])
            continue;
        if (!isfinite(x0[i]) || !isfinite(x1[i]))
            return fn_fail(err, FACENET_ERR_INVALID_ARGUMENT,
                           "logistic fit: feature of pair %zu is not finite", i + 1);
        count[y[i] ? 1 : 0]++;
    }
    if (count[0] < 2 || count[1] < 2)
        return fn_fail(err, FACENET_ERR_INVALID_ARGUMENT,
                       "logistic fit needs two pairs of each class (%zu and %zu)", count[0],
                       count[1]);
    /* Standardised features keep Newton's steps well conditioned whatever
     * the distances' scales. */
    used_mean_std(x0, use, n, &mean[0], &sd[0]);
    used_mean_std(x1, use, n, &mean[1], &sd[1]);
    for (int f = 0; f < 2; f++)
        if (!(sd[f] > 0))
            sd[f] = 1;
    double total = (double)(count[0] + count[1]);
    for (int it = 0; it < LOGISTIC_MAX_ITERATIONS; it++) {
        double h[3][3] = {{0}}, g[3] = {0}, step[3];
        for (size_t i = 0; i < n; i++) {
            if (use && !use[i])
                continue;
            double z[3] = {1, (x0[i] - mean[0]) / sd[0], (x1[i] - mean[1]) / sd[1]};
            double eta = beta[0] + beta[1] * z[1] + beta[2] * z[2];
            double p = 1 / (1 + exp(-eta)), w = p * (1 - p);
            for (int r = 0; r < 3; r++) {
                g[r] += ((y[i] ? 1 : 0) - p) * z[r] / total;
                for (int c = 0; c < 3; c++)
                    h[r][c] += w * z[r] * z[c] / total;
            }
        }
        for (int r = 1; r < 3; r++) { /* ridge on the slopes only */
            g[r] -= LOGISTIC_RIDGE * beta[r];
            h[r][r] += LOGISTIC_RIDGE;
        }
        if (solve3(h, g, step) != 0)
            return fn_fail(err, FACENET_ERR_INVALID_ARGUMENT, "logistic fit: singular system");
        double change = 0;
        for (int r = 0; r < 3; r++) {
            beta[r] += step[r];
            change += step[r] * step[r];
        }
        if (change < LOGISTIC_TOLERANCE)
            break;
    }
    b[1] = beta[1] / sd[0];
    b[2] = beta[2] / sd[1];
    b[0] = beta[0] - b[1] * mean[0] - b[2] * mean[1];
    for (int r = 0; r < 3; r++)
        if (!isfinite(b[r]))
            return fn_fail(err, FACENET_ERR_INVALID_ARGUMENT, "logistic fit did not converge");
    return FACENET_OK;
}

/* The ratio on the pairs with use[i] != 0. */
static facenet_status ratio_on(lfw_fusion method, const double *d0, const double *d1,
                               const unsigned char *same, const unsigned char *use, size_t n,
                               const double threshold[2], double *ratio, facenet_error *err)
{
    double a[2];
    if (method == LFW_FUSION_THRESHOLD) {
        a[0] = threshold[0] > 0 ? 1 / threshold[0] : -1;
        a[1] = threshold[1] > 0 ? 1 / threshold[1] : -1;
    } else if (method == LFW_FUSION_SEPARATION) {
        double sum[2][2] = {{0, 0}, {0, 0}};
        size_t count[2] = {0, 0};
        for (size_t i = 0; i < n; i++) {
            if (!use[i])
                continue;
            int s = same[i] ? 1 : 0;
            sum[0][s] += d0[i];
            sum[1][s] += d1[i];
            count[s]++;
        }
        for (int m = 0; m < 2; m++) {
            double gap = count[0] && count[1]
                             ? sum[m][0] / (double)count[0] - sum[m][1] / (double)count[1]
                             : 0;
            a[m] = gap > 0 ? 1 / gap : -1;
        }
    } else {
        unsigned char *different = malloc(n ? n : 1);
        double b[3];
        if (!different)
            return fn_fail(err, FACENET_ERR_NO_MEMORY, "out of memory for %zu labels", n);
        for (size_t i = 0; i < n; i++)
            different[i] = !same[i];
        facenet_status st = lfw_logistic_fit(d0, d1, different, use, n, b, err);
        free(different);
        if (st != FACENET_OK)
            return st;
        a[0] = b[1];
        a[1] = b[2];
    }
    if (!(a[0] > 0) || !(a[1] > 0) || !isfinite(a[1] / a[0]))
        return fn_fail(err, FACENET_ERR_FORMAT,
                       "%s fusion gives no positive weight for both models on these pairs",
                       lfw_fusion_name(method));
    *ratio = a[1] / a[0];
    return FACENET_OK;
}

/* The protocol's training-fold thresholds of one model's distances:
 * per fold from lfw_evaluate_distances, or on all pairs. */
static facenet_status training_thresholds(const double *d, const unsigned char *same, size_t n,
                                          int folds, double *threshold, facenet_error *err)
{
    if (folds == 1) {
        lfw_calibration cal;
        facenet_status st = lfw_calibrate(d, same, n, 1e-3, &cal, err);
        if (st == FACENET_OK)
            threshold[0] = cal.threshold_accuracy;
        return st;
    }
    lfw_options opt;
    lfw_result *r = malloc(sizeof *r);
    if (!r)
        return fn_fail(err, FACENET_ERR_NO_MEMORY, "out of memory for a result");
    lfw_options_default(&opt);
    opt.folds = folds;
    facenet_status st = lfw_evaluate_distances(d, same, n, &opt, r, err);
    for (int k = 0; st == FACENET_OK && k < folds; k++)
        threshold[k] = r->fold[k].threshold;
    free(r);
    return st;
}

facenet_status lfw_fusion_ratio(lfw_fusion method, const double *d0, const double *d1,
                                const unsigned char *same, size_t n, int folds, double *ratio,
                                facenet_error *err)
{
    double thr[2][LFW_MAX_FOLDS] = {{0}};
    facenet_status st = FACENET_OK;

    if (!d0 || !d1 || !same || !ratio || !lfw_fusion_name(method))
        return fn_fail(err, FACENET_ERR_INVALID_ARGUMENT, "fusion: bad arguments");
    if (folds < 1 || folds > LFW_MAX_FOLDS || n < (size_t)folds || n == 0)
        return fn_fail(err, FACENET_ERR_INVALID_ARGUMENT,
                       "%zu pairs cannot be split into %d folds", n, folds);
    for (size_t i = 0; i < n; i++)
        if (!isfinite(d0[i]) || !isfinite(d1[i]))
            return fn_fail(err, FACENET_ERR_INVALID_ARGUMENT,
                           "fusion: distance of pair %zu is not finite", i + 1);
    if (method == LFW_FUSION_THRESHOLD &&
        ((st = training_thresholds(d0, same, n, folds, thr[0], err)) != FACENET_OK ||
         (st = training_thresholds(d1, same, n, folds, thr[1], err)) != FACENET_OK))
        return st;
    unsigned char *use = malloc(n ? n : 1);
    if (!use)
        return fn_fail(err, FACENET_ERR_NO_MEMORY, "out of memory for %zu flags", n);
    for (int k = 0; st == FACENET_OK && k < folds; k++) {
        size_t begin = n, end = n; /* one "fold": every pair is training */
        if (folds > 1)
            lfw_fold_range(n, folds, k, &begin, &end);
        for (size_t i = 0; i < n; i++)
            use[i] = i < begin || i >= end;
        double t[2] = {thr[0][k], thr[1][k]};
        st = ratio_on(method, d0, d1, same, use, n, t, &ratio[k], err);
    }
    free(use);
    return st;
}
