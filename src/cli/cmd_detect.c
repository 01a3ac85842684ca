/*
 * cmd_detect.c - `facenet detect IMG...`: boxes, scores and landmarks.
 */
#include <getopt.h>
#include <jansson.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "cli/cli_util.h"
#include "image/handle.h"

static const char detect_usage[] =
    "usage: facenet detect [OPTIONS] IMG|DIR...\n"
    "\n"
    "Find faces with MTCNN and print each face's box (x1 y1 x2 y2, pixels),\n"
    "score and five landmarks (left eye, right eye, nose, mouth corners).\n"
    "\n"
    "  --json            one JSON document on stdout\n"
    "  --draw OUT.png    write the image with boxes and landmarks drawn\n"
    "                    (one input image only)\n"
    "  --min-size N      smallest face side in pixels (default 20)\n"
    "  --thresholds A,B,C  stage thresholds (default 0.6,0.7,0.7)\n"
    "  --model-dir DIR   model cache (default: facenet models path)\n"
    "\n"
    "Exit codes: 0 ok, 2 usage, 3 models missing or altered, 4 an image\n"
    "could not be read (the others are still processed).\n";

static int draw_faces(const facenet_image *image, const facenet_face *faces, size_t n,
                      const char *out)
{
    static const uint8_t box_rgb[3] = {0, 255, 0}, lm_rgb[3] = {255, 0, 0};
    const img_rgb8 *src = fn_image_rgb(image);
    img_rgb8 *copy = NULL;
    facenet_error err;
    int thickness = src->width > 1000 ? 3 : 2;

    if (img_rgb8_new(src->width, src->height, &copy, &err) != FACENET_OK)
        return cli_report(&err);
    for (int y = 0; y < src->height; y++)
        memcpy(copy->pixels + (size_t)y * copy->stride, src->pixels + (size_t)y * src->stride,
               (size_t)src->width * 3);
    for (size_t i = 0; i < n; i++) {
        const facenet_face *f = &faces[i];
        img_draw_rect(copy, (int)f->box[0], (int)f->box[1], (int)f->box[2], (int)f->box[3],
                      thickness, box_rgb);
        for (int k = 0; k < 5; k++)
            img_draw_dot(copy, (int)(f->landmarks[k][0] + 0.5f), (int)(f->landmarks[k][1] + 0.5f),
                         thickness, lm_rgb);
    }
    facenet_status st = img_write_png(copy, out, &err);
    img_rgb8_free(copy);
    return st == FACENET_OK ? CLI_EXIT_OK : cli_report(&err);
}

static json_t *face_json(const facenet_face *f)
{
    json_t *lm = json_array();
    for (int k = 0; k < 5; k++)
        json_array_append_new(lm, json_pack("[f,f]", f->landmarks[k][0], f->landmarks[k][1]));
    return json_pack("{s:[f,f,f,f],s:f,s:o}", "box", f->box[0], f->box[1], f->box[2],
                     f->box[3], "score", f->score, "landmarks", lm);
}

static void print_faces(const char *path, const facenet_face *faces, size_t n)
{
    printf("%s: %zu face%s\n", path, n, n == 1 ? "" : "s");
    for (size_t i = 0; i < n; i++) {
        const facenet_face *f = &faces[i];
        printf("  face %zu: box %.1f %.1f %.1f %.1f  score %.4f  landmarks", i, f->box[0],
               f->box[1], f->box[2], f->box[3], f->score);
        for (int k = 0; k < 5; k++)
            printf(" %.1f,%.1f", f->landmarks[k][0], f->landmarks[k][1]);
        printf("\n");
    }
}

static int parse_thresholds(const char *s, float t[3])
{
    char *end;
    for (int i = 0; i < 3; i++) {
        t[i] = strtof(s, &end);
        if (end == s || !(t[i] >= 0 && t[i] <= 1))
            return -1;
        if (i < 2) {
            if (*end != ',')
                return -1;
            s = end + 1;
        }
    }
    return *end == '\0' ? 0 : -1;
}

int cmd_detect(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"json", no_argument, NULL, 'j'},       {"draw", required_argument, NULL, 'd'},
        {"min-size", required_argument, NULL, 'm'}, {"thresholds", required_argument, NULL, 't'},
        {"model-dir", required_argument, NULL, 'M'}, {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0}};
    facenet_detect_options opt;
    const char *draw = NULL, *model_dir_opt = NULL;
    char model_dir[PATH_MAX];
    int json = 0, c, rc = CLI_EXIT_OK;
    cli_paths paths = {0};
    facenet_detector *det = NULL;
    facenet_error err;
    json_t *doc = NULL;

    facenet_detect_options_default(&opt);
    optind = 1;
    while ((c = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
        switch (c) {
        case 'j': json = 1; break;
        case 'd': draw = optarg; break;
        case 'M': model_dir_opt = optarg; break;
        case 'm': {
            if (cli_parse_int(optarg, 12, 100000, &opt.min_size) != 0) {
                fprintf(stderr, "facenet detect: --min-size must be 12..100000\n");
                return CLI_EXIT_USAGE;
            }
            break;
        }
        case 't':
            if (parse_thresholds(optarg, opt.thresholds) != 0) {
                fprintf(stderr, "facenet detect: --thresholds takes three values in [0,1]: A,B,C\n");
                return CLI_EXIT_USAGE;
            }
            break;
        case 'h': fputs(detect_usage, stdout); return CLI_EXIT_OK;
        default: fputs(detect_usage, stderr); return CLI_EXIT_USAGE;
        }
    }
    if (optind >= argc) {
        fputs(detect_usage, stderr);
        return CLI_EXIT_USAGE;
    }
    if (cli_collect_images(argv + optind, argc - optind, &paths) != 0) {
        cli_paths_free(&paths);
        return CLI_EXIT_INPUT;
    }
    if (draw && paths.n != 1) {
        fprintf(stderr, "facenet detect: --draw takes exactly one input image\n");
        cli_paths_free(&paths);
        return CLI_EXIT_USAGE;
    }
    if (cli_model_dir(model_dir_opt, model_dir, sizeof model_dir) != 0) {
        cli_paths_free(&paths);
        return CLI_EXIT_MODEL;
    }
    if (facenet_detector_create(model_dir, &det, &err) != FACENET_OK) {
        cli_paths_free(&paths);
        return cli_report(&err);
    }
    if (json)
        doc = json_pack("{s:[]}", "images");
    for (size_t i = 0; i < paths.n; i++) {
        facenet_image *img = NULL;
        facenet_face *faces = NULL;
        size_t n = 0;
        facenet_status st = facenet_image_load(paths.items[i], NULL, &img, &err);
        if (st == FACENET_OK)
            st = facenet_detect(det, img, &opt, &faces, &n, &err);
        if (st != FACENET_OK) {
            fprintf(stderr, "facenet detect: %s\n", err.message);
            if (json)
                json_array_append_new(json_object_get(doc, "images"),
                                      json_pack("{s:s,s:s}", "path", paths.items[i], "error",
                                                err.message));
            rc = cli_exit_code(st) > rc ? cli_exit_code(st) : rc;
            facenet_image_free(img);
            continue;
        }
        if (json) {
            json_t *list = json_array();
            for (size_t k = 0; k < n; k++)
                json_array_append_new(list, face_json(&faces[k]));
            json_array_append_new(json_object_get(doc, "images"),
                                  json_pack("{s:s,s:i,s:i,s:o}", "path", paths.items[i], "width",
                                            facenet_image_width(img), "height",
                                            facenet_image_height(img), "faces", list));
        } else {
            print_faces(paths.items[i], faces, n);
        }
        if (draw) {
            int drc = draw_faces(img, faces, n, draw);
            if (drc > rc)
                rc = drc;
        }
        free(faces);
        facenet_image_free(img);
    }
    if (json) {
        json_dumpf(doc, stdout, JSON_INDENT(2) | JSON_REAL_PRECISION(7));
        fputc('\n', stdout);
        json_decref(doc);
    }
    facenet_detector_free(det);
    cli_paths_free(&paths);
    return rc;
}
