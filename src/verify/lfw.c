/*
 * lfw.c - pairs.txt parsing and facenet's LFW evaluation protocol.
 *
 * See lfw.h for the protocol. Counting "distance < threshold" is done on
 * sorted copies of each fold's distances (a binary search per threshold),
 * which gives the same counts as facenet's element-wise comparisons.
 */
#include "verify/lfw.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/error.h"
#include "common/fileio.h"

/* ------------------------------------------------------------------------ */
/* pairs.txt                                                                */
/* ------------------------------------------------------------------------ */

#define LFW_MAX_FIELDS 5 /* one more than a valid line has, to detect excess */

static int is_space(char c)
{
    return c == ' ' || c == '\t' || c == '\r' || c == '\v' || c == '\f';
}

/* Split a NUL-terminated line in place into at most `max` fields; returns
 * the number of fields found, counting any beyond max as max + 1. */
static int split_fields(char *line, char **fields, int max)
{
    int n = 0;
    char *p = line;
    for (;;) {
        while (is_space(*p))
            p++;
        if (!*p)
            return n;
        if (n == max)
            return max + 1;
        fields[n++] = p;
        while (*p && !is_space(*p))
            p++;
        if (!*p)
            return n;
        *p++ = '\0';
    }
}

/* A decimal integer in [lo, hi], digits only (no sign, no spaces). */
static int parse_number(const char *s, long lo, long hi, int *out)
{
    long v = 0;
    if (!*s)
        return -1;
    for (const char *p = s; *p; p++) {
        if (*p < '0' || *p > '9')
            return -1;
        v = v * 10 + (*p - '0');
        if (v > hi)
            return -1;
    }
    if (v < lo)
        return -1;
    *out = (int)v;
    return 0;
}

/* A name that is one safe path component. Returns NULL or the reason. */
static const char *name_problem(const char *name)
{
    size_t len = strlen(name);
    if (len == 0)
        return "is empty";
    if (len > LFW_MAX_NAME)
        return "is longer than 255 bytes";
    if (name[0] == '.')
        return "starts with '.'";
    for (const char *p = name; *p; p++) {
        unsigned char c = (unsigned char)*p;
        if (c == '/' || c == '\\')
            return "contains a path separator";
        if (c < 0x20 || c == 0x7f)
            return "contains a control character";
    }
    return NULL;
}

/* True when the line holds nothing but whitespace. */
static int is_blank(const char *line)
{
    while (is_space(*line))
        line++;
    return *line == '\0';
}

static facenet_status parse_pair_line(char *line, size_t line_no, const char *source,
                                      lfw_pair *pair, facenet_error *err)
{
    char *f[LFW_MAX_FIELDS];
    int nf = split_fields(line, f, LFW_MAX_FIELDS - 1);
    const char *why;

    if (nf != 3 && nf != 4)
        return fn_fail(err, FACENET_ERR_FORMAT,
                       "%s line %zu: expected 'name n1 n2' or 'name1 n1 name2 n2', found %s%d "
                       "fields",
                       source, line_no, nf > LFW_MAX_FIELDS - 1 ? "more than " : "",
                       nf > LFW_MAX_FIELDS - 1 ? LFW_MAX_FIELDS - 1 : nf);
    pair->line = line_no;
    pair->same = nf == 3;
    pair->name[0] = f[0];
    pair->name[1] = nf == 3 ? f[0] : f[2];
    const char *num[2] = {f[1], nf == 3 ? f[2] : f[3]};
    for (int k = 0; k < 2; k++) {
        if ((why = name_problem(pair->name[k])) != NULL)
            return fn_fail(err, FACENET_ERR_FORMAT, "%s line %zu: name '%.64s' %s", source,
                           line_no, pair->name[k], why);
        if (parse_number(num[k], 0, LFW_MAX_IMAGE_NUMBER, &pair->number[k]) != 0)
            return fn_fail(err, FACENET_ERR_FORMAT,
                           "%s line %zu: image number '%.32s' is not an integer in 0..%d", source,
                           line_no, num[k], LFW_MAX_IMAGE_NUMBER);
    }
    return FACENET_OK;
}

/* A first line "SETS PER_SET" of two positive integers. */
static int parse_header(const char *line, int *sets, int *per_set)
{
    char copy[64], *f[3];
    size_t len = strlen(line);
    if (len >= sizeof copy)
        return 0;
    memcpy(copy, line, len + 1);
    if (split_fields(copy, f, 2) != 2)
        return 0;
    return parse_number(f[0], 1, 1000000, sets) == 0 &&
           parse_number(f[1], 1, 100000000, per_set) == 0;
}

facenet_status lfw_pairs_parse(const char *text, size_t size, const char *source,
                               lfw_pairs *out, facenet_error *err)
{
    lfw_pairs p;
    size_t lines = 1, line_no = 0, last_content = 0;
    facenet_status st = FACENET_OK;

    if (!out || (!text && size))
        return fn_fail(err, FACENET_ERR_INVALID_ARGUMENT, "pairs text and output are required");
    memset(out, 0, sizeof *out);
    if (!source)
        source = "pairs";
    if (size > LFW_MAX_PAIRS_FILE_BYTES)
        return fn_fail(err, FACENET_ERR_LIMIT, "%s: %zu bytes; the limit is %zu", source, size,
                       LFW_MAX_PAIRS_FILE_BYTES);
    if (size && memchr(text, '\0', size))
        return fn_fail(err, FACENET_ERR_FORMAT, "%s: contains a NUL byte; not a text file",
                       source);
    for (size_t i = 0; i < size; i++)
        lines += text[i] == '\n';

    memset(&p, 0, sizeof p);
    p.storage_ = malloc(size + 1);
    p.pairs = malloc(lines * sizeof *p.pairs);
    if (!p.storage_ || !p.pairs) {
        lfw_pairs_free(&p);
        return fn_fail(err, FACENET_ERR_NO_MEMORY, "%s: out of memory for %zu lines", source,
                       lines);
    }
    if (size)
        memcpy(p.storage_, text, size);
    p.storage_[size] = '\0';

    /* Find the last non-blank line, so blank lines are allowed only at the
     * end of the file (a blank line inside is more likely damage). */
    {
        char *s = p.storage_;
        size_t no = 0;
        while (s) {
            char *nl = strchr(s, '\n');
            no++;
            if (nl)
                *nl = '\0';
            if (!is_blank(s))
                last_content = no;
            if (nl)
                *nl = '\n';
            s = nl ? nl + 1 : NULL;
        }
    }

    char *s = p.storage_;
    while (s && st == FACENET_OK) {
        char *nl = strchr(s, '\n');
        if (nl)
            *nl = '\0';
        line_no++;
        char *line = s;
        s = nl ? nl + 1 : NULL;
        if (line_no > last_content)
            break;
        if (is_blank(line)) {
            st = fn_fail(err, FACENET_ERR_FORMAT, "%s line %zu: empty line inside the file",
                         source, line_no);
            break;
        }
        if (line_no == 1 && parse_header(line, &p.header_sets, &p.header_per_set))
            continue;
        st = parse_pair_line(line, line_no, source, &p.pairs[p.n], err);
        if (st == FACENET_OK)
            p.n++;
    }
    if (st == FACENET_OK && p.n == 0)
        st = fn_fail(err, FACENET_ERR_FORMAT, "%s: no pairs", source);
    if (st == FACENET_OK && p.header_sets &&
        (uint64_t)p.header_sets * (uint64_t)p.header_per_set * 2 != p.n)
        st = fn_fail(err, FACENET_ERR_FORMAT,
                     "%s line 1: the header announces %d sets of %d same and %d different "
                     "pairs (%llu), but the file has %zu pairs",
                     source, p.header_sets, p.header_per_set, p.header_per_set,
                     (unsigned long long)p.header_sets * (unsigned long long)p.header_per_set * 2,
                     p.n);
    if (st != FACENET_OK) {
        lfw_pairs_free(&p);
        return st;
    }
    *out = p;
    return FACENET_OK;
}

facenet_status lfw_pairs_load(const char *path, lfw_pairs *out, facenet_error *err)
{
    uint8_t *data = NULL;
    size_t size = 0;
    facenet_status st;

    if (!path || !out)
        return fn_fail(err, FACENET_ERR_INVALID_ARGUMENT, "path and output are required");
    memset(out, 0, sizeof *out);
    st = fn_read_file(path, LFW_MAX_PAIRS_FILE_BYTES, &data, &size, err);
    if (st != FACENET_OK)
        return st;
    st = lfw_pairs_parse((const char *)data, size, path, out, err);
    free(data);
    return st;
}

void lfw_pairs_free(lfw_pairs *pairs)
{
    if (!pairs)
        return;
    free(pairs->pairs);
    free(pairs->storage_);
    memset(pairs, 0, sizeof *pairs);
}

int lfw_image_path(const char *dir, const char *name, int number, const char *ext, char *buf,
                   size_t size)
{
    int len = snprintf(buf, size, "%s/%s/%s_%04d.%s", dir, name, name, number, ext);
    return len < 0 || (size_t)len >= size ? -1 : 0;
}

/* ------------------------------------------------------------------------ */
/* Evaluation                                                               */
/* ------------------------------------------------------------------------ */

void lfw_options_default(lfw_options *options)
{
    options->folds = 10;
    options->metric = LFW_METRIC_SQEUCLIDEAN;
    options->subtract_mean = 0;
    options->far_target = 1e-3;
}

double lfw_roc_threshold(int i)
{
    return 0.0 + i * 0.01;
}

double lfw_val_threshold(int i)
{
    return 0.0 + i * 0.001;
}

void lfw_fold_range(size_t n, int folds, int k, size_t *begin, size_t *end)
{
    /* sklearn KFold: sizes n / folds, the first n % folds one larger. */
    size_t base = n / (size_t)folds, extra = n % (size_t)folds, uk = (size_t)k;
    *begin = uk * base + (uk < extra ? uk : extra);
    *end = *begin + base + (uk < extra ? 1 : 0);
}

double lfw_distance(const float *a, const float *b, size_t dim, lfw_metric metric)
{
    if (metric == LFW_METRIC_COSINE) {
        double ab = 0, aa = 0, bb = 0;
        for (size_t i = 0; i < dim; i++) {
            ab += (double)a[i] * b[i];
            aa += (double)a[i] * a[i];
            bb += (double)b[i] * b[i];
        }
        double sim = aa > 0 && bb > 0 ? ab / (sqrt(aa) * sqrt(bb)) : 0.0;
        /* Rounding can put |sim| a hair over 1, where arccos is NaN. */
        if (sim > 1)
            sim = 1;
        if (sim < -1)
            sim = -1;
        return acos(sim) / M_PI;
    }
    double sum = 0;
    for (size_t i = 0; i < dim; i++) {
        double d = (double)a[i] - b[i];
        sum += d * d;
    }
    return sum;
}

double lfw_interp(const double *x, const double *y, size_t n, double at)
{
    if (n == 0)
        return NAN;
    if (at < x[0])
        return y[0];
    if (at > x[n - 1])
        return y[n - 1];
    /* j = the last index with x[j] <= at */
    size_t lo = 0, hi = n;
    while (hi - lo > 1) {
        size_t mid = lo + (hi - lo) / 2;
        if (x[mid] <= at)
            lo = mid;
        else
            hi = mid;
    }
    size_t j = lo;
    if (j == n - 1 || x[j] == at)
        return y[j];
    return y[j] + (y[j + 1] - y[j]) * (at - x[j]) / (x[j + 1] - x[j]);
}

double lfw_threshold_to_similarity(double threshold, lfw_metric metric)
{
    if (metric == LFW_METRIC_COSINE)
        return cos(M_PI * threshold);
    return 1.0 - threshold / 2.0;
}

static int compare_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* Number of values in sorted v[0..n) strictly below t. */
static size_t count_below(const double *v, size_t n, double t)
{
    size_t lo = 0, hi = n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (v[mid] < t)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

/* The distances of one subset of pairs, split by label and sorted. */
typedef struct split_set {
    double *same, *diff;
    size_t n_same, n_diff;
} split_set;

/* Fill s with the pairs in [0, n) that are inside [begin, end) (inside
 * = 1) or outside it (inside = 0). s->same/diff have room for n each. */
static void split_distances(const double *dist, const unsigned char *same, size_t n,
                            size_t begin, size_t end, int inside, split_set *s)
{
    s->n_same = s->n_diff = 0;
    for (size_t i = 0; i < n; i++) {
        int in = i >= begin && i < end;
        if (in != inside)
            continue;
        if (same[i])
            s->same[s->n_same++] = dist[i];
        else
            s->diff[s->n_diff++] = dist[i];
    }
    qsort(s->same, s->n_same, sizeof *s->same, compare_double);
    qsort(s->diff, s->n_diff, sizeof *s->diff, compare_double);
}

static double ratio(size_t num, size_t den)
{
    return den ? (double)num / (double)den : 0.0;
}

/* Accuracy of "same when dist < t" over a split set. */
static double set_accuracy(const split_set *s, double t)
{
    size_t tp = count_below(s->same, s->n_same, t);
    size_t tn = s->n_diff - count_below(s->diff, s->n_diff, t);
    return ratio(tp + tn, s->n_same + s->n_diff);
}

/* The first threshold of the 0.01 grid with the most correct answers. */
static int best_accuracy_index(const split_set *s)
{
    size_t best = 0;
    int best_i = 0;
    for (int i = 0; i < LFW_ROC_THRESHOLDS; i++) {
        double t = lfw_roc_threshold(i);
        size_t correct = count_below(s->same, s->n_same, t) + s->n_diff -
                         count_below(s->diff, s->n_diff, t);
        if (i == 0 || correct > best) {
            best = correct;
            best_i = i;
        }
    }
    return best_i;
}

/* facenet calculate_val's threshold: interpolated where the FAR on `s`
 * reaches `target` on the 0.001 grid; 0 when it never does. */
static double far_threshold(const split_set *s, double target, double *far_grid,
                            double *thr_grid, int *reached)
{
    double max_far = 0;
    for (int i = 0; i < LFW_VAL_THRESHOLDS; i++) {
        thr_grid[i] = lfw_val_threshold(i);
        far_grid[i] = ratio(count_below(s->diff, s->n_diff, thr_grid[i]), s->n_diff);
        if (far_grid[i] > max_far)
            max_far = far_grid[i];
    }
    *reached = max_far >= target;
    if (!*reached)
        return 0.0;
    return lfw_interp(far_grid, thr_grid, LFW_VAL_THRESHOLDS, target);
}

typedef struct eval_scratch {
    split_set train, test;
    double *far_grid, *thr_grid;
} eval_scratch;

static void scratch_free(eval_scratch *s)
{
    free(s->train.same);
    free(s->train.diff);
    free(s->test.same);
    free(s->test.diff);
    free(s->far_grid);
    free(s->thr_grid);
    memset(s, 0, sizeof *s);
}

static facenet_status scratch_alloc(eval_scratch *s, size_t n, facenet_error *err)
{
    memset(s, 0, sizeof *s);
    s->train.same = malloc(n * sizeof(double));
    s->train.diff = malloc(n * sizeof(double));
    s->test.same = malloc(n * sizeof(double));
    s->test.diff = malloc(n * sizeof(double));
    s->far_grid = malloc(LFW_VAL_THRESHOLDS * sizeof(double));
    s->thr_grid = malloc(LFW_VAL_THRESHOLDS * sizeof(double));
    if (!s->train.same || !s->train.diff || !s->test.same || !s->test.diff || !s->far_grid ||
        !s->thr_grid) {
        scratch_free(s);
        return fn_fail(err, FACENET_ERR_NO_MEMORY, "out of memory evaluating %zu pairs", n);
    }
    return FACENET_OK;
}

/* One fold: choose the thresholds on the other folds, measure on this
 * one, and add this fold's ROC to the sums in out->tpr / out->fpr. */
static void evaluate_fold(const double *dist, const unsigned char *same, size_t n,
                          const lfw_options *opt, int k, eval_scratch *sc, lfw_result *out)
{
    lfw_fold_result *f = &out->fold[k];
    int reached;

    lfw_fold_range(n, opt->folds, k, &f->begin, &f->end);
    split_distances(dist, same, n, f->begin, f->end, 0, &sc->train);
    split_distances(dist, same, n, f->begin, f->end, 1, &sc->test);

    int best = best_accuracy_index(&sc->train);
    f->threshold = lfw_roc_threshold(best);
    f->train_accuracy = set_accuracy(&sc->train, f->threshold);
    f->accuracy = set_accuracy(&sc->test, f->threshold);
    for (int i = 0; i < LFW_ROC_THRESHOLDS; i++) {
        double t = lfw_roc_threshold(i);
        out->tpr[i] += ratio(count_below(sc->test.same, sc->test.n_same, t), sc->test.n_same);
        out->fpr[i] += ratio(count_below(sc->test.diff, sc->test.n_diff, t), sc->test.n_diff);
    }

    f->val_threshold = far_threshold(&sc->train, opt->far_target, sc->far_grid, sc->thr_grid,
                                     &reached);
    f->val = ratio(count_below(sc->test.same, sc->test.n_same, f->val_threshold),
                   sc->test.n_same);
    f->far = ratio(count_below(sc->test.diff, sc->test.n_diff, f->val_threshold),
                   sc->test.n_diff);
}

/* Mean and population standard deviation (np.std) of n values. */
static void mean_std(const double *v, int n, double *mean, double *std)
{
    double sum = 0, sq = 0;
    for (int k = 0; k < n; k++)
        sum += v[k];
    *mean = sum / n;
    for (int k = 0; k < n; k++)
        sq += (v[k] - *mean) * (v[k] - *mean);
    *std = sqrt(sq / n);
}

static double eer_function(const lfw_result *r, double x)
{
    return 1.0 - x - lfw_interp(r->fpr, r->tpr, LFW_ROC_THRESHOLDS, x);
}

/* The root of 1 - x - tpr(x) on [0, 1] by bisection (facenet: brentq). */
static double equal_error_rate(const lfw_result *r)
{
    double lo = 0.0, hi = 1.0;
    double flo = eer_function(r, lo), fhi = eer_function(r, hi);
    if (flo == 0)
        return lo;
    if (fhi == 0)
        return hi;
    if ((flo > 0) == (fhi > 0) || isnan(flo) || isnan(fhi))
        return NAN;
    for (int it = 0; it < 200 && hi - lo > 1e-15; it++) {
        double mid = 0.5 * (lo + hi);
        double fmid = eer_function(r, mid);
        if (fmid == 0)
            return mid;
        if ((fmid > 0) == (flo > 0)) {
            lo = mid;
            flo = fmid;
        } else {
            hi = mid;
        }
    }
    return 0.5 * (lo + hi);
}

static void finish(lfw_result *r)
{
    double unused;
    for (int i = 0; i < LFW_ROC_THRESHOLDS; i++) {
        r->tpr[i] /= r->folds;
        r->fpr[i] /= r->folds;
    }
    double acc[LFW_MAX_FOLDS], val[LFW_MAX_FOLDS], far[LFW_MAX_FOLDS];
    for (int k = 0; k < r->folds; k++) {
        acc[k] = r->fold[k].accuracy;
        val[k] = r->fold[k].val;
        far[k] = r->fold[k].far;
    }
    mean_std(acc, r->folds, &r->accuracy_mean, &r->accuracy_std);
    mean_std(val, r->folds, &r->val_mean, &r->val_std);
    mean_std(far, r->folds, &r->far_mean, &unused);
    /* sklearn.metrics.auc: trapezoids over the (monotone) mean curve. */
    r->auc = 0;
    for (int i = 1; i < LFW_ROC_THRESHOLDS; i++)
        r->auc += (r->fpr[i] - r->fpr[i - 1]) * (r->tpr[i] + r->tpr[i - 1]) / 2.0;
    r->eer = equal_error_rate(r);
}

static facenet_status check_options(const lfw_options *opt, size_t n, facenet_error *err)
{
    if (!opt)
        return fn_fail(err, FACENET_ERR_INVALID_ARGUMENT, "options are required");
    if (opt->folds < 2 || opt->folds > LFW_MAX_FOLDS)
        return fn_fail(err, FACENET_ERR_INVALID_ARGUMENT, "folds must be 2..%d, not %d",
                       LFW_MAX_FOLDS, opt->folds);
    if (n < (size_t)opt->folds)
        return fn_fail(err, FACENET_ERR_INVALID_ARGUMENT,
                       "%zu pairs cannot be split into %d folds", n, opt->folds);
    if (!(opt->far_target > 0 && opt->far_target <= 1))
        return fn_fail(err, FACENET_ERR_INVALID_ARGUMENT, "the target FAR must be in (0, 1]");
    if (opt->metric != LFW_METRIC_SQEUCLIDEAN && opt->metric != LFW_METRIC_COSINE)
        return fn_fail(err, FACENET_ERR_INVALID_ARGUMENT, "unknown metric %d", (int)opt->metric);
    return FACENET_OK;
}

static facenet_status check_distances(const double *dist, size_t n, facenet_error *err)
{
    for (size_t i = 0; i < n; i++)
        if (!isfinite(dist[i]))
            return fn_fail(err, FACENET_ERR_INVALID_ARGUMENT,
                           "the distance of pair %zu is not a finite number", i);
    return FACENET_OK;
}

static void result_init(lfw_result *out, const lfw_options *opt)
{
    memset(out, 0, sizeof *out);
    out->folds = opt->folds;
    out->metric = opt->metric;
}

facenet_status lfw_evaluate_distances(const double *dist, const unsigned char *same, size_t n,
                                      const lfw_options *options, lfw_result *out,
                                      facenet_error *err)
{
    /* Every fold sees the same distances. */
    const double *fold_dist[LFW_MAX_FOLDS];
    for (int k = 0; k < LFW_MAX_FOLDS; k++)
        fold_dist[k] = dist;
    return lfw_evaluate_fold_distances(dist ? fold_dist : NULL, same, n, options, out, err);
}

facenet_status lfw_evaluate_fold_distances(const double *const *fold_dist,
                                           const unsigned char *same, size_t n,
                                           const lfw_options *options, lfw_result *out,
                                           facenet_error *err)
{
    eval_scratch sc;
    facenet_status st;

    if (!fold_dist || !same || !out)
        return fn_fail(err, FACENET_ERR_INVALID_ARGUMENT, "distances, labels and out are required");
    if ((st = check_options(options, n, err)) != FACENET_OK)
        return st;
    if (options->subtract_mean)
        return fn_fail(err, FACENET_ERR_INVALID_ARGUMENT,
                       "subtract_mean needs embeddings, not distances");
    for (int k = 0; k < options->folds; k++) {
        if (!fold_dist[k])
            return fn_fail(err, FACENET_ERR_INVALID_ARGUMENT, "fold %d has no distances", k + 1);
        /* An array shared with the fold before was checked there. */
        if ((k == 0 || fold_dist[k] != fold_dist[k - 1]) &&
            (st = check_distances(fold_dist[k], n, err)) != FACENET_OK)
            return st;
    }
    if ((st = scratch_alloc(&sc, n, err)) != FACENET_OK)
        return st;
    result_init(out, options);
    for (int k = 0; k < options->folds; k++)
        evaluate_fold(fold_dist[k], same, n, options, k, &sc, out);
    finish(out);
    scratch_free(&sc);
    return FACENET_OK;
}

facenet_status lfw_choose_per_fold(const double *dist, int n_candidates, const unsigned char *same,
                                   size_t n, int folds, int *chosen, double *train_accuracy,
                                   facenet_error *err)
{
    eval_scratch sc;
    facenet_status st;

    if (!dist || !same || !chosen)
        return fn_fail(err, FACENET_ERR_INVALID_ARGUMENT, "distances, labels and out are required");
    if (n_candidates < 1 || n_candidates > LFW_MAX_CANDIDATES)
        return fn_fail(err, FACENET_ERR_INVALID_ARGUMENT, "1..%d candidates, not %d",
                       LFW_MAX_CANDIDATES, n_candidates);
    if (folds < 1 || folds > LFW_MAX_FOLDS || n < (size_t)folds || n == 0)
        return fn_fail(err, FACENET_ERR_INVALID_ARGUMENT,
                       "%zu pairs cannot be split into %d folds", n, folds);
    if ((st = check_distances(dist, n * (size_t)n_candidates, err)) != FACENET_OK)
        return st;
    if ((st = scratch_alloc(&sc, n, err)) != FACENET_OK)
        return st;
    for (int k = 0; k < folds; k++) {
        size_t begin = n, end = n; /* one "fold": every pair is training */
        double best = -1;
        if (folds > 1)
            lfw_fold_range(n, folds, k, &begin, &end);
        chosen[k] = 0;
        for (int j = 0; j < n_candidates; j++) {
            split_distances(dist + (size_t)j * n, same, n, begin, end, 0, &sc.train);
            double acc = set_accuracy(&sc.train, lfw_roc_threshold(best_accuracy_index(&sc.train)));
            /* Strictly better only: ties keep the earlier (preferred) one. */
            if (acc > best) {
                best = acc;
                chosen[k] = j;
            }
        }
        if (train_accuracy)
            train_accuracy[k] = best;
    }
    scratch_free(&sc);
    return FACENET_OK;
}

/* Distances of every pair after subtracting the mean embedding of the
 * pairs outside [begin, end) (both images of each). */
static facenet_status distances_minus_mean(const float *emb1, const float *emb2, size_t dim,
                                           size_t n, size_t begin, size_t end, lfw_metric metric,
                                           double *dist, facenet_error *err)
{
    double *mean = calloc(dim, sizeof *mean);
    float *a = malloc(dim * sizeof *a), *b = malloc(dim * sizeof *b);
    size_t rows = 0;

    if (!mean || !a || !b) {
        free(mean);
        free(a);
        free(b);
        return fn_fail(err, FACENET_ERR_NO_MEMORY, "out of memory for a %zu-D mean", dim);
    }
    for (size_t i = 0; i < n; i++) {
        if (i >= begin && i < end)
            continue;
        for (size_t d = 0; d < dim; d++)
            mean[d] += (double)emb1[i * dim + d] + (double)emb2[i * dim + d];
        rows += 2;
    }
    for (size_t d = 0; d < dim; d++)
        mean[d] /= (double)rows;
    for (size_t i = 0; i < n; i++) {
        for (size_t d = 0; d < dim; d++) {
            a[d] = (float)(emb1[i * dim + d] - mean[d]);
            b[d] = (float)(emb2[i * dim + d] - mean[d]);
        }
        dist[i] = lfw_distance(a, b, dim, metric);
    }
    free(mean);
    free(a);
    free(b);
    return FACENET_OK;
}

facenet_status lfw_evaluate(const float *emb1, const float *emb2, size_t dim,
                            const unsigned char *same, size_t n, const lfw_options *options,
                            lfw_result *out, facenet_error *err)
{
    eval_scratch sc;
    double *dist;
    facenet_status st;

    if (!emb1 || !emb2 || !same || !out || dim == 0)
        return fn_fail(err, FACENET_ERR_INVALID_ARGUMENT,
                       "embeddings, labels, out and a dimension are required");
    if ((st = check_options(options, n, err)) != FACENET_OK)
        return st;
    if (n > SIZE_MAX / sizeof(double) / 4)
        return fn_fail(err, FACENET_ERR_LIMIT, "%zu pairs are too many", n);
    dist = calloc(n, sizeof *dist);
    if (!dist)
        return fn_fail(err, FACENET_ERR_NO_MEMORY, "out of memory for %zu distances", n);
    if ((st = scratch_alloc(&sc, n, err)) != FACENET_OK) {
        free(dist);
        return st;
    }
    result_init(out, options);
    if (!options->subtract_mean) {
        for (size_t i = 0; i < n; i++)
            dist[i] = lfw_distance(emb1 + i * dim, emb2 + i * dim, dim, options->metric);
        st = check_distances(dist, n, err);
    }
    for (int k = 0; st == FACENET_OK && k < options->folds; k++) {
        if (options->subtract_mean) {
            size_t begin, end;
            lfw_fold_range(n, options->folds, k, &begin, &end);
            st = distances_minus_mean(emb1, emb2, dim, n, begin, end, options->metric, dist, err);
            if (st == FACENET_OK)
                st = check_distances(dist, n, err);
        }
        if (st == FACENET_OK)
            evaluate_fold(dist, same, n, options, k, &sc, out);
    }
    if (st == FACENET_OK)
        finish(out);
    scratch_free(&sc);
    free(dist);
    return st;
}

facenet_status lfw_calibrate(const double *dist, const unsigned char *same, size_t n,
                             double far_target, lfw_calibration *out, facenet_error *err)
{
    eval_scratch sc;
    facenet_status st;

    if (!dist || !same || !out || n == 0)
        return fn_fail(err, FACENET_ERR_INVALID_ARGUMENT, "distances, labels and out are required");
    if (!(far_target > 0 && far_target <= 1))
        return fn_fail(err, FACENET_ERR_INVALID_ARGUMENT, "the target FAR must be in (0, 1]");
    if ((st = check_distances(dist, n, err)) != FACENET_OK)
        return st;
    if ((st = scratch_alloc(&sc, n, err)) != FACENET_OK)
        return st;
    memset(out, 0, sizeof *out);
    /* Every pair is "training": the empty range [n, n) is the test fold. */
    split_distances(dist, same, n, n, n, 0, &sc.train);
    out->threshold_accuracy = lfw_roc_threshold(best_accuracy_index(&sc.train));
    out->accuracy = set_accuracy(&sc.train, out->threshold_accuracy);
    out->threshold_far = far_threshold(&sc.train, far_target, sc.far_grid, sc.thr_grid,
                                       &out->far_reached);
    out->val = ratio(count_below(sc.train.same, sc.train.n_same, out->threshold_far),
                     sc.train.n_same);
    out->far = ratio(count_below(sc.train.diff, sc.train.n_diff, out->threshold_far),
                     sc.train.n_diff);
    scratch_free(&sc);
    return FACENET_OK;
}
