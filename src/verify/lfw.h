/*
 * lfw.h - the LFW verification protocol, exactly as davidsandberg/facenet
 * runs it (src/lfw.py evaluate() and src/facenet.py calculate_roc /
 * calculate_val), on embeddings or distances that the caller computed.
 *
 * Pure computation plus the pairs-file parser: no images, no models.
 *
 * The protocol, step by step:
 *   - Pairs stay in file order and are split into `folds` consecutive
 *     folds with no shuffling, as sklearn's KFold(shuffle=False) does: the
 *     first n % folds folds get one pair more. For LFW's 6,000 pairs and 10
 *     folds this is fold k = pairs [600k, 600(k+1)), i.e. the ten sets of
 *     pairs.txt.
 *   - Distance: squared L2 of the two embeddings (2 - 2 cos for unit
 *     vectors), or facenet's "cosine" metric arccos(similarity) / pi.
 *     A pair is predicted "same" when distance < threshold.
 *   - With subtract_mean, both embeddings of every pair are reduced by the
 *     mean of the training folds' embeddings (both images of every
 *     training pair) before the distance; nothing is renormalised (the
 *     cosine metric normalises by itself). For squared L2 this changes
 *     nothing but rounding: a translation does not change differences.
 *   - Accuracy: for each fold, the threshold in 0, 0.01, ..., 3.99 (400
 *     values) with the best accuracy on the other folds (the first such
 *     threshold, like np.argmax), then the accuracy on the fold itself.
 *   - ROC: TPR and FPR of each test fold at those 400 thresholds, averaged
 *     over folds. AUC is the trapezoidal area under that mean curve
 *     (sklearn.metrics.auc). EER is the root of 1 - x - tpr(x), with tpr(x)
 *     linear interpolation on the mean curve (np.interp rules); facenet
 *     uses brentq, we bisect the same monotone function.
 *   - VAL@FAR: for each fold, FAR on the training folds at the thresholds
 *     0, 0.001, ..., 3.999 (4,000 values); if the target FAR is reached,
 *     the threshold is interpolated linearly in (FAR, threshold) between
 *     the last threshold whose FAR is <= the target and the next one
 *     (scipy interp1d 'slinear' on the stably sorted FARs), else it is 0.
 *     VAL and FAR are then measured on the test fold at that threshold.
 *   - Means and standard deviations are over folds; the standard
 *     deviation is the population one (np.std).
 *
 * Where facenet would divide by zero (a fold with no same or no different
 * pairs) we report 0 rather than NaN.
 */
#ifndef FACENET_VERIFY_LFW_H
#define FACENET_VERIFY_LFW_H

#include <stddef.h>

#include "facenet/facenet.h"

/* ------------------------------------------------------------------------ */
/* pairs.txt                                                                */
/* ------------------------------------------------------------------------ */

/* Limits of the parser, checked before anything is allocated for them. */
#define LFW_MAX_PAIRS_FILE_BYTES ((size_t)64 << 20)
#define LFW_MAX_NAME 255        /* bytes in one person's name          */
#define LFW_MAX_IMAGE_NUMBER 99999999

typedef struct lfw_pair {
    const char *name[2]; /* person of each image; point into the set   */
    int number[2];       /* image number of each, 1-based in LFW        */
    int same;            /* 1 for a "name n1 n2" line, else 0          */
    size_t line;         /* 1-based line number in the pairs file      */
} lfw_pair;

typedef struct lfw_pairs {
    lfw_pair *pairs;
    size_t n;
    int header_sets;     /* from a "10 300" header line; 0 if none      */
    int header_per_set;
    char *storage_;      /* owns the names; free with lfw_pairs_free    */
} lfw_pairs;

/* Parse pairs in LFW format from memory. The first line may be a header
 * "SETS PAIRS_PER_SET" (then the file must hold exactly 2 * SETS *
 * PAIRS_PER_SET pairs); every other non-empty line is "name n1 n2" (same
 * person) or "name1 n1 name2 n2" (different people), separated by tabs or
 * spaces. Names must be safe single path components: no '/', '\\' or
 * control characters, not starting with '.'. `source` names the input in
 * error messages, which also give the line number. On failure *out is
 * left empty. */
facenet_status lfw_pairs_parse(const char *text, size_t size,
                               const char *source, lfw_pairs *out,
                               facenet_error *err);

/* Read and parse a pairs file. */
facenet_status lfw_pairs_load(const char *path, lfw_pairs *out,
                              facenet_error *err);

void lfw_pairs_free(lfw_pairs *pairs);

/* "DIR/name/name_NNNN.EXT" (%04d, as LFW names its files) into buf.
 * Returns 0, or -1 when buf is too small. */
int lfw_image_path(const char *dir, const char *name, int number,
                   const char *ext, char *buf, size_t size);

/* ------------------------------------------------------------------------ */
/* Evaluation                                                               */
/* ------------------------------------------------------------------------ */

#define LFW_MAX_FOLDS 100
#define LFW_ROC_THRESHOLDS 400  /* 0 .. 3.99 in steps of 0.01  */
#define LFW_VAL_THRESHOLDS 4000 /* 0 .. 3.999 in steps of 0.001 */

typedef enum lfw_metric {
    LFW_METRIC_SQEUCLIDEAN = 0, /* facenet distance_metric 0 */
    LFW_METRIC_COSINE = 1       /* facenet distance_metric 1: arccos/pi */
} lfw_metric;

typedef struct lfw_options {
    int folds;          /* 2 .. LFW_MAX_FOLDS; facenet uses 10 */
    lfw_metric metric;
    int subtract_mean;
    double far_target;  /* 1e-3 in facenet */
} lfw_options;

/* folds 10, squared L2, no mean subtraction, FAR 1e-3. */
void lfw_options_default(lfw_options *options);

/* The i-th threshold of the accuracy/ROC grid and of the VAL grid, the
 * way np.arange computes them (start + i * step). */
double lfw_roc_threshold(int i);
double lfw_val_threshold(int i);

/* Test fold k of n pairs split in `folds`: pairs [*begin, *end). */
void lfw_fold_range(size_t n, int folds, int k, size_t *begin, size_t *end);

typedef struct lfw_fold_result {
    size_t begin, end;      /* the test pairs [begin, end)                 */
    double threshold;       /* chosen on the other folds                   */
    double train_accuracy;  /* at that threshold, on the other folds       */
    double accuracy;        /* at that threshold, on this fold             */
    double val_threshold;   /* interpolated at the target FAR (0 if none)  */
    double val, far;        /* on this fold at val_threshold               */
} lfw_fold_result;

typedef struct lfw_result {
    int folds;
    lfw_metric metric;
    lfw_fold_result fold[LFW_MAX_FOLDS];
    double tpr[LFW_ROC_THRESHOLDS]; /* mean over test folds */
    double fpr[LFW_ROC_THRESHOLDS];
    double accuracy_mean, accuracy_std;
    double val_mean, val_std, far_mean;
    double auc;
    double eer; /* NaN when 1 - x - tpr(x) has no sign change on [0, 1] */
} lfw_result;

/* Evaluate n pairs: emb1 and emb2 hold n rows of dim floats (pair i is
 * emb1[i], emb2[i]), same[i] is 1 for a same-person pair. Needs n >= folds.
 * The result is written to *out (a large struct: allocate it). */
facenet_status lfw_evaluate(const float *emb1, const float *emb2, size_t dim,
                            const unsigned char *same, size_t n,
                            const lfw_options *options, lfw_result *out,
                            facenet_error *err);

/* The same protocol on precomputed distances (subtract_mean must be 0:
 * it needs embeddings). Handy for tests and for scores from elsewhere. */
facenet_status lfw_evaluate_distances(const double *dist,
                                      const unsigned char *same, size_t n,
                                      const lfw_options *options,
                                      lfw_result *out, facenet_error *err);

/* The protocol when each fold may use its own distances: fold k chooses
 * its thresholds on the other folds of fold_dist[k] (n values) and is
 * measured on its own pairs of fold_dist[k]. With every fold_dist[k] the
 * same array this is lfw_evaluate_distances. Used when something besides
 * the threshold (an ensemble weight) is chosen per fold on the training
 * folds, so that the test fold never influences its own distances. */
facenet_status lfw_evaluate_fold_distances(const double *const *fold_dist,
                                           const unsigned char *same, size_t n,
                                           const lfw_options *options,
                                           lfw_result *out, facenet_error *err);

/* Choose, for each of `folds` folds, one of n_candidates distance vectors
 * (candidate j is dist[j * n .. j * n + n)) on the training folds only:
 * the candidate whose best training accuracy (threshold on the 0.01 grid,
 * as in the protocol) is highest. Ties go to the candidate that comes
 * first, so pass them in order of preference. chosen[k] receives the
 * candidate index of fold k and train_accuracy[k] (may be NULL) its
 * training accuracy. folds == 1 chooses on all pairs (for calibration). */
#define LFW_MAX_CANDIDATES 64
facenet_status lfw_choose_per_fold(const double *dist, int n_candidates,
                                   const unsigned char *same, size_t n,
                                   int folds, int *chosen,
                                   double *train_accuracy,
                                   facenet_error *err);

/* Distance of one pair under a metric (no mean subtraction). */
double lfw_distance(const float *a, const float *b, size_t dim,
                    lfw_metric metric);

/* np.interp(at, x, y) for x non-decreasing: linear between the last
 * x[j] <= at and x[j + 1]; y[0] / y[n-1] outside; y[j] when x[j] == at. */
double lfw_interp(const double *x, const double *y, size_t n, double at);

/* Calibration on one set of pairs (no folds): the first threshold of the
 * 0.01 grid with the best accuracy over all pairs, and the threshold at
 * the target FAR by the VAL interpolation above, with the VAL and FAR it
 * gives on the same pairs. */
typedef struct lfw_calibration {
    double threshold_accuracy, accuracy;
    double threshold_far, val, far;
    int far_reached; /* 0 when no threshold reaches the target FAR */
} lfw_calibration;

facenet_status lfw_calibrate(const double *dist, const unsigned char *same,
                             size_t n, double far_target,
                             lfw_calibration *out, facenet_error *err);

/* Distance threshold -> cosine similarity threshold: squared L2 t is
 * similarity 1 - t/2; facenet's cosine metric t is cos(pi t). */
double lfw_threshold_to_similarity(double threshold, lfw_metric metric);

#endif
