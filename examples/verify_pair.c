/*
 * verify_pair.c - the smallest complete use of libfacenet: are the main
 * faces of two photos the same person?
 *
 *   cc verify_pair.c $(pkg-config --cflags --libs facenet) -o verify_pair
 *   ./verify_pair a.jpg b.jpg
 *
 * Models come from the cache that `facenet models fetch` fills.
 */
#include <stdio.h>
#include <stdlib.h>

#include <facenet/facenet.h>

/* Detect the main face of `path` and write its embedding into `out`. */
static int embed_main_face(facenet_detector *det, facenet_embedder *emb, const char *path,
                           float *out)
{
    facenet_image *img = NULL;
    facenet_face *faces = NULL;
    size_t n = 0;
    facenet_error err;
    int ok = 0;

    if (facenet_image_load(path, NULL, &img, &err) != FACENET_OK ||
        facenet_detect(det, img, NULL, &faces, &n, &err) != FACENET_OK) {
        fprintf(stderr, "%s\n", err.message);
    } else if (n == 0) {
        fprintf(stderr, "%s: no face found\n", path);
    } else {
        int i = facenet_pick_face(faces, n, facenet_image_width(img), facenet_image_height(img));
        if (facenet_embed(emb, img, &faces[i], 1, 0, out, &err) == FACENET_OK)
            ok = 1;
        else
            fprintf(stderr, "%s\n", err.message);
    }
    free(faces);
    facenet_image_free(img);
    return ok;
}

int main(int argc, char **argv)
{
    char dir[4096];
    facenet_error err;
    facenet_detector *det = NULL;
    facenet_embedder *emb = NULL;
    int rc = 2;

    if (argc != 3) {
        fprintf(stderr, "usage: %s IMG_A IMG_B\n", argv[0]);
        return 2;
    }
    if (facenet_model_dir(dir, sizeof dir, &err) != FACENET_OK ||
        facenet_detector_create(dir, &det, &err) != FACENET_OK ||
        facenet_embedder_create(dir, NULL, &emb, &err) != FACENET_OK) {
        fprintf(stderr, "%s\n", err.message);
        facenet_detector_free(det);
        return 3;
    }
    int dim = facenet_embedder_dim(emb);
    float *a = malloc(sizeof(float) * (size_t)dim), *b = malloc(sizeof(float) * (size_t)dim);
    if (a && b && embed_main_face(det, emb, argv[1], a) && embed_main_face(det, emb, argv[2], b)) {
        float s = facenet_similarity(a, b, dim);
        float t = facenet_embedder_info(emb)->threshold;
        printf("similarity %.4f (threshold %.2f): %s\n", s, t, s >= t ? "same person" : "different people");
        rc = s >= t ? 0 : 1;
    }
    free(a);
    free(b);
    facenet_embedder_free(emb);
    facenet_detector_free(det);
    return rc;
}
