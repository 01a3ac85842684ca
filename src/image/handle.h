/*
 * handle.h - what the pipeline modules see of the public facenet_image.
 */
#ifndef FACENET_IMAGE_HANDLE_H
#define FACENET_IMAGE_HANDLE_H

#include "facenet/facenet.h"
#include "image/image.h"

/* The internal RGB image behind a public handle (borrowed). */
const img_rgb8 *fn_image_rgb(const facenet_image *image);

#endif
