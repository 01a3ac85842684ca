/*
 * verify.c - comparing embeddings.
 */
#include <math.h>

#include "facenet/facenet.h"

float facenet_similarity(const float *a, const float *b, int dim)
{
    double ab = 0, aa = 0, bb = 0;
    if (!a || !b || dim <= 0)
        return 0.0f;
    for (int i = 0; i < dim; i++) {
        ab += (double)a[i] * b[i];
        aa += (double)a[i] * a[i];
        bb += (double)b[i] * b[i];
    }
    if (aa <= 0 || bb <= 0)
        return 0.0f;
    return (float)(ab / (sqrt(aa) * sqrt(bb)));
}
