/*
 * mtcnn.h - MTCNN face detection, exactly as davidsandberg/facenet's
 * detect_face (see the golden README, section 4.2, for every convention).
 *
 * Three networks run in cascade: P-Net over an image pyramid proposes
 * boxes, R-Net refines them on 24x24 crops, O-Net on 48x48 crops gives the
 * final boxes, scores and five landmarks. Box arithmetic is in double, as
 * numpy does it, so integer `fix` steps land where the reference's do.
 *
 * The networks were trained in Caffe on column-major images, so every
 * network input is the transposed image: t[n][x][y][c] = img[y][x][c].
 */
#ifndef FACENET_DETECT_MTCNN_H
#define FACENET_DETECT_MTCNN_H

#include "facenet/facenet.h"
#include "image/image.h"
#include "nn/pool.h"

typedef struct mtcnn_options {
    int min_size;         /* smallest face side in pixels (default 20)  */
    float thresholds[3];  /* P/R/O-Net score thresholds (0.6, 0.7, 0.7) */
    double factor;        /* pyramid scale step (0.709)                 */
    /* Pyramid levels with more pixels than this are skipped, so a huge
     * photo never needs giant activations. With the default (4 MP) and
     * min_size 20 this only bites above ~11 MP, where faces smaller than
     * min_size * sqrt(pixels / 11 MP) are no longer searched for. */
    long long max_level_pixels;
} mtcnn_options;

void mtcnn_default_options(mtcnn_options *opt);

typedef struct mtcnn_face {
    double box[4];          /* x1, y1, x2, y2 in image pixels        */
    double score;           /* O-Net face probability                */
    double landmarks[5][2]; /* left eye, right eye, nose, left and
                               right mouth corner: (x, y), 0-based   */
} mtcnn_face;

/* What one thread of a detector owns: a session of each network (running
 * on that thread alone) and scratch memory that only grows, so repeated
 * detections allocate nothing for pyramid levels and crops. */
typedef struct mtcnn_worker {
    facenet_session *pnet, *rnet, *onet;
    float *scratch;        /* owned; scratch_floats floats */
    size_t scratch_floats;
} mtcnn_worker;

/* The networks of a detector, `threads` sets of them, and the pool that
 * runs them: the threads claim pyramid levels (the largest cut into bands
 * of output cells when there are several threads) and R-Net / O-Net calls
 * of a few crops as they go. Results do not depend on the thread count:
 * a band's cells equal the whole level's, and every crop is computed the
 * same way wherever it runs. */
typedef struct mtcnn_nets {
    mtcnn_worker *workers; /* [threads]; borrowed */
    int threads;           /* >= 1 */
    nn_pool *pool;         /* borrowed; NULL when threads == 1 */
} mtcnn_nets;

/* Detect faces in an 8-bit RGB image (read in place: pyramid levels and
 * crops are resampled from its bytes, bit-identical to resampling a float
 * copy). On success *faces is
 * a malloc'd array of *n_faces faces (caller frees; NULL when none), in
 * descending O-Net score order. Uses the workers' scratch: one call at a
 * time per mtcnn_nets. */
facenet_status mtcnn_detect(const mtcnn_nets *nets, const img_rgb8 *image,
                            const mtcnn_options *opt, mtcnn_face **faces,
                            int *n_faces, facenet_error *err);

/* The pyramid scales for an image of this size: writes up to max scales
 * and returns how many there are. */
int mtcnn_pyramid(int width, int height, const mtcnn_options *opt,
                  double *scales, int max);

/* ---- box arithmetic, exposed for tests ---------------------------------- */

typedef struct mtcnn_box {
    double x1, y1, x2, y2, score;
    double reg[4];          /* dx1, dy1, dx2, dy2 */
    double landmarks[10];   /* x1..x5, y1..y5 (O-Net stage only) */
} mtcnn_box;

typedef enum mtcnn_nms_mode { MTCNN_NMS_UNION, MTCNN_NMS_MIN } mtcnn_nms_mode;

/* Non-maximum suppression in place: keeps boxes in descending score order
 * (stable for ties) and drops any whose overlap with a kept box exceeds
 * `threshold`. Areas use (x2-x1+1)(y2-y1+1). Returns the new count.
 * `scratch` holds n ints. */
int mtcnn_nms(mtcnn_box *boxes, int n, double threshold, mtcnn_nms_mode mode,
              int *scratch);

/* Square each box on its longer side, keeping the centre. */
void mtcnn_rerec(mtcnn_box *boxes, int n);

/* Apply box regression; plus_one selects widths x2-x1+1 (R/O-Net) or
 * x2-x1 (P-Net). */
void mtcnn_bbreg(mtcnn_box *boxes, int n, int plus_one);

#endif
