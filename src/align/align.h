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

#endif
