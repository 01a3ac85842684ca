/*
 * align.h - from five landmarks to an aligned face crop.
 *
 * A least-squares similarity transform (rotation, uniform scale,
 * translation; no reflection) maps the detected landmarks onto a template,
 * then the image is warped through it (golden README 4.3). Two templates:
 *   ARCFACE_112  the 112x112 ArcFace template MobileFaceNet expects;
 *   DLIB_150     dlib's 150x150 chip with padding 0.25 (dlib ResNet).
 * And facenet's own crop-with-margin for FaceNet-style models.
 */
#ifndef FACENET_ALIGN_ALIGN_H
#define FACENET_ALIGN_ALIGN_H

#include <stdint.h>

#include "facenet/facenet.h"
#include "image/image.h"

typedef enum align_template {
    ALIGN_ARCFACE_112 = 1,
    ALIGN_DLIB_150 = 2
} align_template;

/* Output side length of a template (112 or 150), 0 if unknown. */
int align_template_size(align_template t);

/* Look a template up by its manifest name ("arcface112", "dlib150"). */
int align_template_from_name(const char *name, align_template *t);

/* Fit the similarity transform taking `points` (n >= 2 points, x then y)
 * onto `target`. Writes the 2x3 forward matrix (image -> crop). Fails
 * with INVALID_ARGUMENT when the points are degenerate (all equal). */
facenet_status align_similarity(const double (*points)[2],
                                const double (*target)[2], int n,
                                double matrix[6], facenet_error *err);

/* The matrix for five landmarks onto template t. */
facenet_status align_landmarks_matrix(const double landmarks[5][2],
                                      align_template t, double matrix[6],
                                      facenet_error *err);

/* Warp `image` to template t's size x size crop into dst (size*size*3
 * floats, unrounded). */
facenet_status align_crop(const img_f32 *image, const double landmarks[5][2],
                          align_template t, float *dst, facenet_error *err);

/* facenet's align_dataset_mtcnn crop: the box grown by margin/2 on each
 * side, clipped to the image, resized to size x size. */
facenet_status align_margin_crop(const img_f32 *image, const double box[4],
                                 int margin, int size, float *dst,
                                 facenet_error *err);

/* ------------------------------------------------------------------------ */
/* Jitter: dlib's jitter_image on an aligned chip                           */
/* ------------------------------------------------------------------------ */

/* One jittered copy of a square chip, with dlib's jitter_image ranges: the
 * chip is re-cropped around its inner square (the chip shrunk by 3 pixels
 * on each side) moved by up to 2% of its side, with that square filling a
 * fraction 0.97 .. 0.99999 of the new crop, rotated by up to 3 degrees,
 * and mirrored left-right half of the time. Pixels that fall outside the
 * chip read 0, as in dlib's extract_image_chip. */
typedef struct align_jitter {
    double angle;  /* radians, |angle| <= 3 degrees                */
    double fill;   /* 0.97 .. 0.99999: inner square / crop side     */
    double tx, ty; /* shift of the crop centre, fractions of the
                      inner square's side, |t| <= 0.02             */
    int mirror;    /* mirror the result left-right                  */
} align_jitter;

#define ALIGN_JITTER_SEED UINT64_C(0x6a69747465722121) /* "jitter!!" */

/* The next jitter from a deterministic generator (splitmix64): the same
 * *state gives the same sequence on every machine. */
void align_jitter_next(uint64_t *state, align_jitter *out);

/* The forward 2x3 matrix (chip -> jittered chip, before the mirror) of j
 * for a size x size chip. */
void align_jitter_matrix(const align_jitter *j, int size, double m[6]);

/* Write the jittered copy of `chip` (size*size*3 floats) into dst (the
 * same size, not overlapping chip). */
facenet_status align_jitter_chip(const float *chip, int size,
                                 const align_jitter *j, float *dst,
                                 facenet_error *err);

#endif
