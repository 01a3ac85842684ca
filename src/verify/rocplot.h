/*
 * rocplot.h - the ROC curve of `facenet validate` as a PNG line chart.
 *
 * Two panels side by side, drawn with our own code into an RGB8 image:
 *   left:  the whole curve, FPR and TPR from 0 to 1, with the chance
 *          diagonal;
 *   right: the corner that matters on LFW, FPR 0..0.1 and TPR 0.9..1.
 * Grid lines every tenth of each axis; tick labels in a 3x5 pixel digit
 * font; the EER point (where TPR = 1 - FPR) marked with a red dot.
 */
#ifndef FACENET_VERIFY_ROCPLOT_H
#define FACENET_VERIFY_ROCPLOT_H

#include <stddef.h>

#include "facenet/facenet.h"
#include "image/image.h"

#define ROC_PLOT_WIDTH 960
#define ROC_PLOT_HEIGHT 480

/* Pixel of the point (fpr, tpr) in panel 0 (full) or 1 (zoom). Returns 0
 * when the point is inside the panel's data area, -1 outside. Exposed for
 * tests. */
int roc_plot_pixel(int panel, double fpr, double tpr, int *x, int *y);

/* Render the curve of n points (fpr[i], tpr[i]), in order. `eer` may be
 * NaN (no marker). */
facenet_status roc_plot_render(const double *fpr, const double *tpr, size_t n,
                               double eer, img_rgb8 **out, facenet_error *err);

/* Render and write as PNG. */
facenet_status roc_plot_write(const double *fpr, const double *tpr, size_t n,
                              double eer, const char *path, facenet_error *err);

#endif
