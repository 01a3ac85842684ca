/*
 * embedder.c - aligned crops in, unit-length embeddings out.
 *
 * The manifest entry of the model says everything the embedder needs:
 * input size, normalisation (v - mean) * scale, alignment template and
 * embedding dimension. All faces of a call (and their mirrors, with flip)
 * run through the network as one batch.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "align/align.h"
#include "common/error.h"
#include "image/handle.h"

/* A batch larger than this is split, bounding the activation memory. */
#define EMBED_MAX_BATCH 32

struct facenet_embedder {
    const facenet_model_info *info; /* points at info_copy */
    /* The manifest entry with the thresholds resolved for this model
     * directory (thresholds.json overrides the compiled-in defaults). */
    facenet_model_info info_copy;
    facenet_thresholds thresholds;
    facenet_model *model;
    facenet_session *session;
    align_template tmpl;
    int size, dim;
    int jitters; /* 0: the crop itself; else that many jittered copies */
};

facenet_status facenet_embedder_create(const char *model_dir,
                                       const char *model_name,
                                       facenet_embedder **out,
                                       facenet_error *err)
{
    const facenet_model_info *info;
    facenet_embedder *e;
    facenet_status st;

    if (!out)
        return fn_fail(err, FACENET_ERR_INVALID_ARGUMENT, "out is NULL");
    *out = NULL;
    info = facenet_model_find(model_name ? model_name : "mobilefacenet");
    if (!info || strcmp(info->role, "embedder") != 0)
        return fn_fail(err, FACENET_ERR_NOT_FOUND, "'%s' is not an embedding model",
                       model_name ? model_name : "(null)");
    e = calloc(1, sizeof *e);
    if (!e)
        return fn_fail(err, FACENET_ERR_NO_MEMORY, "out of memory for an embedder");
    st = facenet_model_thresholds(model_dir, info, 0, &e->thresholds, err);
    if (st != FACENET_OK) {
        free(e);
        return st;
    }
    e->info_copy = *info;
    e->info_copy.threshold = e->thresholds.threshold;
    e->info_copy.threshold_strict = e->thresholds.threshold_strict;
    e->info = &e->info_copy;
    e->dim = info->embedding_dim;
    if (!align_template_from_name(info->alignment, &e->tmpl)) {
        free(e);
        return fn_fail(err, FACENET_ERR_UNSUPPORTED, "%s: unknown alignment '%s'", info->name,
                       info->alignment);
    }
    e->size = align_template_size(e->tmpl);
    if (e->size != info->input_width || e->size != info->input_height) {
        int size = e->size;
        free(e);
        return fn_fail(err, FACENET_ERR_INTERNAL, "%s: template size %d does not match input %dx%d",
                       info->name, size, info->input_width, info->input_height);
    }
    st = facenet_model_load(model_dir, info, &e->model, err);
    if (st == FACENET_OK)
        st = facenet_session_create(e->model, &e->session, err);
    if (st != FACENET_OK) {
        facenet_embedder_free(e);
        return st;
    }
    *out = e;
    return FACENET_OK;
}

void facenet_embedder_free(facenet_embedder *embedder)
{
    if (!embedder)
        return;
    facenet_session_free(embedder->session);
    facenet_model_free(embedder->model);
    free(embedder);
}

const facenet_model_info *facenet_embedder_info(const facenet_embedder *e)
{
    return e ? e->info : NULL;
}

const char *facenet_embedder_threshold_source(const facenet_embedder *e)
{
    return e ? e->thresholds.source : NULL;
}

facenet_status facenet_embedder_set_jitter(facenet_embedder *embedder, int jitters,
                                           facenet_error *err)
{
    if (!embedder)
        return fn_fail(err, FACENET_ERR_INVALID_ARGUMENT, "embedder is NULL");
    if (jitters < 0 || jitters > FACENET_MAX_JITTERS)
        return fn_fail(err, FACENET_ERR_INVALID_ARGUMENT, "jitter must be 0..%d, not %d",
                       FACENET_MAX_JITTERS, jitters);
    embedder->jitters = jitters;
    return FACENET_OK;
}

facenet_status facenet_embedder_set_threads(facenet_embedder *embedder, int threads,
                                            facenet_error *err)
{
    if (!embedder)
        return fn_fail(err, FACENET_ERR_INVALID_ARGUMENT, "embedder is NULL");
    return facenet_session_set_threads(embedder->session, threads, err);
}

int facenet_embedder_jitter(const facenet_embedder *embedder)
{
    return embedder ? embedder->jitters : 0;
}

int facenet_embedder_dim(const facenet_embedder *embedder)
{
    return embedder ? embedder->dim : 0;
}

const char *facenet_embedder_backend(const facenet_embedder *embedder)
{
    return embedder ? facenet_model_backend(embedder->model) : NULL;
}

static void normalise_into(const facenet_model_info *info, const float *crop,
                           size_t pixels, int mirror, int size, float *dst)
{
    for (size_t p = 0; p < pixels; p++) {
        size_t src = p;
        if (mirror) {
            size_t y = p / (size_t)size, x = p % (size_t)size;
            src = y * (size_t)size + ((size_t)size - 1 - x);
        }
        for (int c = 0; c < 3; c++)
            dst[p * 3 + c] = (crop[src * 3 + c] - info->input_mean[c]) * info->input_scale;
    }
}

static void l2_normalise(float *v, int dim)
{
    double sum = 0;
    for (int i = 0; i < dim; i++)
        sum += (double)v[i] * v[i];
    double norm = sqrt(sum);
    if (norm < 1e-10)
        norm = 1e-10;
    for (int i = 0; i < dim; i++)
        v[i] = (float)(v[i] / norm);
}

/* Network inputs per face: the crop or its jittered copies, each with
 * its mirror when flip is set. */
static size_t rows_per_face(const facenet_embedder *e, int flip)
{
    size_t copies = e->jitters > 0 ? (size_t)e->jitters : 1;
    return flip ? 2 * copies : copies;
}

/* Normalise the copies of one crop into `rows` (rows_per_face rows): the
 * crop itself, or its jittered copies (the same deterministic sequence
 * for every face, as dlib's num_jitters draws from a fresh generator on
 * each call), each followed by its mirror with flip. `scratch` holds one
 * crop. */
static facenet_status fill_rows(const facenet_embedder *e, const float *crop, int flip,
                                float *scratch, float *rows, facenet_error *err)
{
    size_t pixels = (size_t)e->size * e->size, per = pixels * 3;
    uint64_t state = ALIGN_JITTER_SEED;
    int copies = e->jitters > 0 ? e->jitters : 1;

    for (int j = 0; j < copies; j++) {
        const float *src = crop;
        if (e->jitters > 0) {
            align_jitter jit;
            align_jitter_next(&state, &jit);
            facenet_status st = align_jitter_chip(crop, e->size, &jit, scratch, err);
            if (st != FACENET_OK)
                return st;
            src = scratch;
        }
        float *row = rows + (size_t)j * (flip ? 2 : 1) * per;
        normalise_into(e->info, src, pixels, 0, e->size, row);
        if (flip)
            normalise_into(e->info, src, pixels, 1, e->size, row + per);
    }
    return FACENET_OK;
}

/* Embed up to EMBED_MAX_BATCH network inputs in one network call: the
 * raw outputs of a face's rows are summed, then normalised. */
static facenet_status embed_batch(facenet_embedder *e, const float *crops,
                                  size_t n, int flip, float *out,
                                  facenet_error *err)
{
    size_t per = (size_t)e->size * e->size * 3;
    size_t each = rows_per_face(e, flip), rows = n * each;
    float *batch = malloc((rows + 1) * per * sizeof *batch);
    const float *raw;
    int dims[4], rank;
    facenet_status st = FACENET_OK;

    if (!batch)
        return fn_fail(err, FACENET_ERR_NO_MEMORY, "out of memory for %zu crops", n);
    for (size_t i = 0; i < n && st == FACENET_OK; i++)
        st = fill_rows(e, crops + i * per, flip, batch + rows * per, batch + i * each * per, err);
    if (st == FACENET_OK)
        st = facenet_session_run(e->session, batch, (int)rows, e->size, e->size, 3, err);
    free(batch);
    if (st != FACENET_OK)
        return st;
    st = facenet_session_output(e->session, 0, &raw, dims, &rank, err);
    if (st != FACENET_OK)
        return st;
    if ((size_t)dims[0] != rows || rank != 2 || dims[1] != e->dim)
        return fn_fail(err, FACENET_ERR_SHAPE, "%s: output is not [%zu, %d]", e->info->name,
                       rows, e->dim);
    for (size_t i = 0; i < n; i++) {
        float *v = out + i * (size_t)e->dim;
        for (int k = 0; k < e->dim; k++) {
            float sum = 0.0f;
            for (size_t r = 0; r < each; r++)
                sum += raw[(i * each + r) * (size_t)e->dim + k];
            v[k] = sum;
        }
        l2_normalise(v, e->dim);
    }
    return FACENET_OK;
}

facenet_status facenet_embed_aligned(facenet_embedder *embedder,
                                     const float *crops, size_t n, int flip,
                                     float *out, facenet_error *err)
{
    size_t per;

    if (!embedder || (!crops && n) || (!out && n))
        return fn_fail(err, FACENET_ERR_INVALID_ARGUMENT, "embedder, crops and out are required");
    per = (size_t)embedder->size * embedder->size * 3;
    /* Bound the rows of one network call, not the faces: with jitter and
     * flip one face is up to 2 * FACENET_MAX_JITTERS rows. */
    size_t max_faces = EMBED_MAX_BATCH / rows_per_face(embedder, flip);
    if (max_faces < 1)
        max_faces = 1;
    for (size_t done = 0; done < n;) {
        size_t chunk = n - done < max_faces ? n - done : max_faces;
        facenet_status st = embed_batch(embedder, crops + done * per, chunk, flip,
                                        out + done * (size_t)embedder->dim, err);
        if (st != FACENET_OK)
            return st;
        done += chunk;
    }
    return FACENET_OK;
}

facenet_status facenet_embed(facenet_embedder *embedder,
                             const facenet_image *image,
                             const facenet_face *faces, size_t n_faces,
                             int flip, float *out, facenet_error *err)
{
    img_f32 *f = NULL;
    float *crops = NULL;
    size_t per;
    facenet_status st;

    if (!embedder || !image || (!faces && n_faces) || (!out && n_faces))
        return fn_fail(err, FACENET_ERR_INVALID_ARGUMENT,
                       "embedder, image, faces and out are required");
    if (n_faces == 0)
        return FACENET_OK;
    if (n_faces > 4096)
        return fn_fail(err, FACENET_ERR_LIMIT, "%zu faces in one call; the limit is 4096",
                       n_faces);
    per = (size_t)embedder->size * embedder->size * 3;
    crops = malloc(n_faces * per * sizeof *crops);
    if (!crops)
        return fn_fail(err, FACENET_ERR_NO_MEMORY, "out of memory for %zu crops", n_faces);
    st = img_rgb8_to_f32(fn_image_rgb(image), &f, err);
    for (size_t i = 0; st == FACENET_OK && i < n_faces; i++) {
        double lm[5][2];
        for (int k = 0; k < 5; k++) {
            lm[k][0] = faces[i].landmarks[k][0];
            lm[k][1] = faces[i].landmarks[k][1];
        }
        st = align_crop(f, lm, embedder->tmpl, crops + i * per, err);
    }
    img_f32_free(f);
    if (st == FACENET_OK)
        st = facenet_embed_aligned(embedder, crops, n_faces, flip, out, err);
    free(crops);
    return st;
}
