/*
 * decode_jpeg.c - JPEG through libjpeg-turbo's libjpeg API.
 *
 * Settings match the reference decoder (PIL on libjpeg-turbo): the ISLOW
 * integer IDCT and fancy upsampling, output converted to RGB by libjpeg
 * (greyscale is replicated). CMYK/YCCK come out as CMYK and are converted
 * here the way PIL does.
 *
 * Strictness. libjpeg reports damaged data as warnings and carries on,
 * filling what is missing with grey. A face pipeline should not embed a
 * half-grey photo, so the warnings that mean "pixels are missing or wrong"
 * (premature end of file, data segment cut short, bad Huffman code, lost
 * sync) are turned into errors. Harmless warnings (stray bytes between
 * markers, odd JFIF versions) are ignored.
 *
 * Valid files this build cannot decode (12-bit, lossless, hierarchical)
 * are FACENET_ERR_UNSUPPORTED; more than JPEG_MAX_SCANS scans is
 * FACENET_ERR_LIMIT; everything else libjpeg rejects is FACENET_ERR_FORMAT.
 *
 * Errors. libjpeg's default error handler calls exit(); ours longjmps back
 * here. Everything allocated after setjmp lives in the `jpeg_job` struct,
 * never in locals, so it is valid after the jump.
 */
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jpeglib.h>
#include <jerror.h>

#include "common/error.h"
#include "image/decode_internal.h"

/* A progressive file can hold any number of scans, each a full pass over
 * the image: bound them so a small file cannot keep us busy for minutes.
 * Real encoders write about 10. */
#define JPEG_MAX_SCANS 100

typedef struct jpeg_job {
    struct jpeg_error_mgr pub; /* first: libjpeg casts err to this */
    struct jpeg_progress_mgr progress;
    jmp_buf jump;
    facenet_status status; /* what the jump reports */
    char message[JMSG_LENGTH_MAX];
    img_rgb8 *image;
    uint8_t *row; /* CMYK scanline buffer */
} jpeg_job;

/* Valid JPEG that this libjpeg build cannot decode (12-bit samples,
 * lossless or hierarchical frames), as opposed to a damaged file. */
static int is_unsupported(const struct jpeg_error_mgr *e)
{
    return (e->msg_code == JERR_BAD_PRECISION && e->msg_parm.i[0] == 12) ||
           e->msg_code == JERR_SOF_UNSUPPORTED;
}

static void on_error(j_common_ptr cinfo)
{
    jpeg_job *job = (jpeg_job *)cinfo->err;
    if (job->status == FACENET_OK)
        job->status = is_unsupported(cinfo->err) ? FACENET_ERR_UNSUPPORTED
                                                 : FACENET_ERR_FORMAT;
    if (job->message[0] == '\0')
        (*cinfo->err->format_message)(cinfo, job->message);
    longjmp(job->jump, 1);
}

static int is_damage_warning(int code)
{
    return code == JWRN_JPEG_EOF || code == JWRN_HIT_MARKER ||
           code == JWRN_HUFF_BAD_CODE || code == JWRN_MUST_RESYNC ||
           code == JWRN_NOT_SEQUENTIAL || code == JWRN_BOGUS_PROGRESSION;
}

/* msg_level -1 is a warning; >= 0 are trace messages, which we drop. */
static void on_message(j_common_ptr cinfo, int msg_level)
{
    if (msg_level == -1 && is_damage_warning(cinfo->err->msg_code))
        on_error(cinfo);
}

static void on_progress(j_common_ptr cinfo)
{
    jpeg_job *job = (jpeg_job *)cinfo->err;
    j_decompress_ptr d = (j_decompress_ptr)cinfo;
    if (d->input_scan_number > JPEG_MAX_SCANS) {
        job->status = FACENET_ERR_LIMIT;
        (void)snprintf(job->message, sizeof job->message,
                 "more than %d scans", JPEG_MAX_SCANS);
        longjmp(job->jump, 1);
    }
}

/* PIL's CMYK -> RGB: R = (255 - C) * (255 - K) / 255 (integer division by
 * 255 with rounding). Adobe files store CMYK inverted, which libjpeg passes
 * through; PIL undoes it, so do we. */
static uint8_t cmyk_channel(unsigned c, unsigned k, int inverted)
{
    unsigned nc = inverted ? c : 255 - c;
    unsigned nk = inverted ? k : 255 - k;
    unsigned t = nc * nk + 128;
    return (uint8_t)((t + (t >> 8)) >> 8);
}

static void cmyk_row_to_rgb(const uint8_t *cmyk, uint8_t *rgb, int width,
                            int inverted)
{
    for (int x = 0; x < width; x++) {
        const uint8_t *p = cmyk + 4 * x;
        rgb[3 * x] = cmyk_channel(p[0], p[3], inverted);
        rgb[3 * x + 1] = cmyk_channel(p[1], p[3], inverted);
        rgb[3 * x + 2] = cmyk_channel(p[2], p[3], inverted);
    }
}

/* The orientation from the first Exif APP1 marker that has one. */
static int find_orientation(j_decompress_ptr cinfo)
{
    for (jpeg_saved_marker_ptr m = cinfo->marker_list; m; m = m->next) {
        if (m->marker != JPEG_APP0 + 1)
            continue;
        int o = img_exif_orientation(m->data, m->data_length);
        if (o)
            return o;
    }
    return 1;
}

static facenet_status choose_output(j_decompress_ptr cinfo, int *cmyk,
                                    facenet_error *err)
{
    *cmyk = 0;
    switch (cinfo->jpeg_color_space) {
    case JCS_GRAYSCALE:
    case JCS_YCbCr:
    case JCS_RGB:
        cinfo->out_color_space = JCS_RGB;
        return FACENET_OK;
    case JCS_CMYK:
    case JCS_YCCK:
        cinfo->out_color_space = JCS_CMYK;
        *cmyk = 1;
        return FACENET_OK;
    default:
        return fn_fail(err, FACENET_ERR_UNSUPPORTED,
                       "JPEG with %d components in an unknown colour space",
                       cinfo->num_components);
    }
}

/* The part of the decode that can longjmp. Returns 0 after a jump. */
static int run_decode(struct jpeg_decompress_struct *cinfo, jpeg_job *job,
                      const uint8_t *data, size_t size,
                      const img_decode_limits *limits, facenet_error *err)
{
    int cmyk, inverted;

    if (setjmp(job->jump))
        return 0;
    jpeg_create_decompress(cinfo);
    cinfo->progress = &job->progress;
    jpeg_mem_src(cinfo, data, (unsigned long)size);
    jpeg_save_markers(cinfo, JPEG_APP0 + 1, 0xFFFF);
    jpeg_read_header(cinfo, TRUE);

    /* Check the size before jpeg_start_decompress allocates for it. */
    job->status = img_check_size(cinfo->image_width, cinfo->image_height,
                                 limits, "JPEG", err);
    if (job->status != FACENET_OK)
        return 1;
    job->status = choose_output(cinfo, &cmyk, err);
    if (job->status != FACENET_OK)
        return 1;
    inverted = cmyk && cinfo->saw_Adobe_marker;
    cinfo->dct_method = JDCT_ISLOW;
    cinfo->do_fancy_upsampling = TRUE;
    jpeg_start_decompress(cinfo);
    if (cinfo->output_components != (cmyk ? 4 : 3)) {
        job->status = fn_fail(err, FACENET_ERR_INTERNAL,
                              "JPEG decoder gave %d components",
                              cinfo->output_components);
        return 1;
    }
    job->status = img_rgb8_new((int)cinfo->output_width,
                               (int)cinfo->output_height, &job->image, err);
    if (job->status != FACENET_OK)
        return 1;
    if (cmyk) {
        job->row = malloc((size_t)cinfo->output_width * 4);
        if (!job->row) {
            job->status = fn_fail(err, FACENET_ERR_NO_MEMORY,
                                  "cannot allocate a JPEG row");
            return 1;
        }
    }
    while (cinfo->output_scanline < cinfo->output_height) {
        uint8_t *dst = job->image->pixels +
                       (size_t)cinfo->output_scanline * job->image->stride;
        JSAMPROW rows[1];
        rows[0] = cmyk ? job->row : dst;
        if (jpeg_read_scanlines(cinfo, rows, 1) != 1) {
            job->status = fn_fail(err, FACENET_ERR_FORMAT,
                                  "JPEG data ends at row %u of %u",
                                  cinfo->output_scanline,
                                  cinfo->output_height);
            return 1;
        }
        if (cmyk)
            cmyk_row_to_rgb(job->row, dst, job->image->width, inverted);
    }
    if (limits->apply_orientation) {
        job->status = img_rgb8_apply_orientation(&job->image,
                                                 find_orientation(cinfo), err);
        if (job->status != FACENET_OK)
            return 1;
    }
    /* Reads up to EOI, so a file cut after the last scanline still fails. */
    jpeg_finish_decompress(cinfo);
    return 1;
}

facenet_status img_decode_jpeg(const uint8_t *data, size_t size,
                               const img_decode_limits *limits,
                               img_rgb8 **out, facenet_error *err)
{
    struct jpeg_decompress_struct cinfo;
    jpeg_job job;

    *out = NULL;
    memset(&cinfo, 0, sizeof cinfo);
    memset(&job, 0, sizeof job);
    cinfo.err = jpeg_std_error(&job.pub);
    job.pub.error_exit = on_error;
    job.pub.emit_message = on_message;
    job.progress.progress_monitor = on_progress;
    job.status = FACENET_OK;

    if (!run_decode(&cinfo, &job, data, size, limits, err)) {
        /* We got here by longjmp: the message is libjpeg's (or ours). */
        fn_fail(err, job.status, "JPEG: %s", job.message);
    }
    jpeg_destroy_decompress(&cinfo);
    free(job.row);
    if (job.status != FACENET_OK) {
        img_rgb8_free(job.image);
        return job.status;
    }
    *out = job.image;
    return FACENET_OK;
}
