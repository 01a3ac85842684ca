/*
 * fusion.h - how much say each of two models gets in a score fusion,
 * chosen on training pairs only.
 *
 * The ensemble scores a pair by a linear fusion a0 d0 + a1 d1 of the two
 * models' squared L2 distances. Concatenating the unit embeddings with the
 * second scaled by w (and renormalising) gives exactly that up to a
 * constant factor, with w^2 = a1 / a0, so a method only has to give the
 * ratio a1 / a0; the protocol then chooses the threshold on the fused
 * distances as for any model. Offsets do not matter (they move the
 * threshold only), so every method below is a choice of scales:
 *
 *   THRESHOLD   divide each model's distance by its own threshold, the
 *               one the protocol chooses on the training pairs (the 0.01
 *               grid, best accuracy): a0 = 1 / t0, a1 = 1 / t1.
 *   SEPARATION  divide each model's distance by the gap between its mean
 *               distance over different-person and over same-person
 *               training pairs (z-normalisation by the two class means):
 *               a_m = 1 / (mean_diff_m - mean_same_m).
 *   LOGISTIC    logistic regression of "different person" on (d0, d1),
 *               fitted by maximum likelihood (Newton / IRLS) on the
 *               training pairs: a_m are its two coefficients. A smooth
 *               objective over every training pair, unlike a grid search
 *               on accuracy that a handful of pairs can decide.
 *
 * Pure computation: no images, no models.
 */
#ifndef FACENET_VERIFY_FUSION_H
#define FACENET_VERIFY_FUSION_H

#include <stddef.h>

#include "facenet/facenet.h"

typedef enum lfw_fusion {
    LFW_FUSION_THRESHOLD = 1,
    LFW_FUSION_SEPARATION = 2,
    LFW_FUSION_LOGISTIC = 3
} lfw_fusion;

/* "threshold", "separation", "logistic" <-> the method; 0 / NULL when
 * unknown. */
int lfw_fusion_from_name(const char *name, lfw_fusion *out);
const char *lfw_fusion_name(lfw_fusion method);

/* For each of `folds` folds (lfw_fold_range), the ratio a1 / a0 that
 * `method` gives on the fold's training pairs (every pair outside it);
 * folds == 1 uses all pairs (calibration). d0 and d1 are the two models'
 * distances of the n pairs, same[i] 1 for a same-person pair. ratio[k]
 * receives fold k's ratio. Fails (FACENET_ERR_INVALID_ARGUMENT) on bad
 * arguments or non-finite distances, and (FACENET_ERR_FORMAT) when a
 * method has no positive answer on some fold's training pairs (a zero
 * threshold, no gap between the classes, a non-positive coefficient):
 * such a fusion would not be a weighting of the two models. */
facenet_status lfw_fusion_ratio(lfw_fusion method, const double *d0,
                                const double *d1, const unsigned char *same,
                                size_t n, int folds, double *ratio,
                                facenet_error *err);

/* Logistic regression of y (0/1) on two features, on the pairs with
 * use[i] != 0 (use may be NULL: all): P(y = 1) = 1 / (1 + exp(-(b[0] +
 * b[1] x0 + b[2] x1))). Newton's method on the log-likelihood with a tiny
 * ridge (1e-8, on standardised features) so that separable data still
 * converge. Fails when fewer than two pairs of each class are used. */
facenet_status lfw_logistic_fit(const double *x0, const double *x1,
                                const unsigned char *y,
                                const unsigned char *use, size_t n,
                                double b[3], facenet_error *err);

#endif
