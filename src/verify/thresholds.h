/*
 * thresholds.h - calibrated verification thresholds on disk.
 *
 * `facenet validate --calibrate` writes one entry per model into a small
 * JSON file (by default thresholds.json in the model directory):
 *
 *   {"schema": 1, "metric": "cosine",
 *    "models": {"mobilefacenet": {"threshold": 0.40,
 *                                 "threshold_far": 0.31, "far_target": 0.001,
 *                                 "accuracy": ..., "val": ..., "far": ...,
 *                                 "flip": false, "pairs": "pairs.txt",
 *                                 "n_pairs": 6000}}}
 *
 * Thresholds are cosine similarities (match when similarity >= threshold),
 * the library's one convention. Entries are named by model, with "+flip"
 * for runs with --flip. "threshold" is the best-accuracy one,
 * "threshold_far" the one at the target false accept rate. Writing an
 * entry keeps the other models' entries.
 */
#ifndef FACENET_VERIFY_THRESHOLDS_H
#define FACENET_VERIFY_THRESHOLDS_H

#include "facenet/facenet.h"

#define THRESHOLDS_FILE_NAME "thresholds.json"
#define THRESHOLDS_MAX_BYTES ((size_t)1 << 20)

typedef struct thresholds_entry {
    double threshold;     /* best accuracy, cosine similarity */
    double threshold_far; /* at far_target, cosine similarity  */
    double far_target;
    double accuracy, val, far; /* measured on the calibration pairs */
    int flip;
    const char *pairs;    /* the pairs file used (informational) */
    size_t n_pairs;
    /* The ensemble's dlib weight the thresholds belong to (written as
     * "ensemble_weight" when has_weight): without it an ensemble
     * threshold cannot be reproduced. */
    int has_weight;
    double weight;
} thresholds_entry;

/* Add or replace `model`'s entry in the file at `path` (created when
 * missing), writing through a temporary file and a rename. An existing
 * file that is not a thresholds file is refused (FACENET_ERR_FORMAT), not
 * overwritten. */
facenet_status thresholds_write(const char *path, const char *model,
                                const thresholds_entry *entry,
                                facenet_error *err);

/* Read `model`'s thresholds. A missing file or model is
 * FACENET_ERR_NOT_FOUND; a malformed file or out-of-range value is
 * FACENET_ERR_FORMAT naming the file. `threshold_far` may be NULL. */
facenet_status thresholds_read(const char *path, const char *model,
                               double *threshold, double *threshold_far,
                               facenet_error *err);

#endif
