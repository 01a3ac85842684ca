/*
 * rocplot.c - a two-panel ROC line chart (see rocplot.h).
 */
#include "verify/rocplot.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#include "common/error.h"

/* Data area of each panel, in pixels (inclusive left/top, exclusive
 * right/bottom). Margins leave room for the tick labels. */
#define PANEL_W 480
#define MARGIN_LEFT 56
#define MARGIN_RIGHT 24
#define MARGIN_TOP 16
#define MARGIN_BOTTOM 40
#define FONT_SCALE 2

typedef struct panel {
    double x0, x1, y0, y1; /* data range */
    int left, top, right, bottom;
} panel;

static panel panel_at(int index)
{
    panel p;
    p.x0 = 0.0;
    p.x1 = index == 0 ? 1.0 : 0.1;
    p.y0 = index == 0 ? 0.0 : 0.9;
    p.y1 = 1.0;
    p.left = index * PANEL_W + MARGIN_LEFT;
    p.right = (index + 1) * PANEL_W - MARGIN_RIGHT;
    p.top = MARGIN_TOP;
    p.bottom = ROC_PLOT_HEIGHT - MARGIN_BOTTOM;
    return p;
}

/* Data -> pixel, unclipped, as doubles. */
static void to_pixel(const panel *p, double fx, double fy, double *px, double *py)
{
    *px = p->left + (fx - p->x0) / (p->x1 - p->x0) * (p->right - 1 - p->left);
    *py = p->bottom - 1 - (fy - p->y0) / (p->y1 - p->y0) * (p->bottom - 1 - p->top);
}

int roc_plot_pixel(int index, double fpr, double tpr, int *x, int *y)
{
    panel p = panel_at(index == 0 ? 0 : 1);
    double px, py;
    to_pixel(&p, fpr, tpr, &px, &py);
    *x = (int)lround(px);
    *y = (int)lround(py);
    return *x >= p.left && *x < p.right && *y >= p.top && *y < p.bottom ? 0 : -1;
}

static void put(img_rgb8 *img, const panel *clip, int x, int y, const uint8_t rgb[3])
{
    if (clip && (x < clip->left || x >= clip->right || y < clip->top || y >= clip->bottom))
        return;
    if (x < 0 || y < 0 || x >= img->width || y >= img->height)
        return;
    memcpy(img->pixels + (size_t)y * img->stride + 3 * (size_t)x, rgb, 3);
}

/* A segment from (ax, ay) to (bx, by) in pixels, `width` pixels thick
 * (1 or 2), every `dash` steps on and off when dash > 0. */
static void segment(img_rgb8 *img, const panel *clip, double ax, double ay, double bx, double by,
                    int width, int dash, const uint8_t rgb[3])
{
    double dx = bx - ax, dy = by - ay;
    double len = fabs(dx) > fabs(dy) ? fabs(dx) : fabs(dy);
    int steps = (int)ceil(len);
    if (steps < 1)
        steps = 1;
    if (steps > 100000)
        steps = 100000;
    for (int s = 0; s <= steps; s++) {
        if (dash > 0 && (s / dash) % 2 == 1)
            continue;
        int x = (int)lround(ax + dx * s / steps), y = (int)lround(ay + dy * s / steps);
        put(img, clip, x, y, rgb);
        if (width > 1) {
            put(img, clip, x + 1, y, rgb);
            put(img, clip, x, y + 1, rgb);
            put(img, clip, x + 1, y + 1, rgb);
        }
    }
}

/* 3x5 glyphs, one row per entry, bit 2 = left column. */
static const unsigned char digit_font[11][5] = {
    {7, 5, 5, 5, 7}, {2, 6, 2, 2, 7}, {7, 1, 7, 4, 7}, {7, 1, 7, 1, 7},
    {5, 5, 7, 1, 1}, {7, 4, 7, 1, 7}, {7, 4, 7, 5, 7}, {7, 1, 1, 1, 1},
    {7, 5, 7, 5, 7}, {7, 5, 7, 1, 7}, {0, 0, 0, 0, 2}, /* '.' */
};

static int glyph_index(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    return c == '.' ? 10 : -1;
}

#define GLYPH_ADVANCE (4 * FONT_SCALE)

/* Draw text (digits and '.') with its top-left corner at (x, y). */
static void text(img_rgb8 *img, int x, int y, const char *s, const uint8_t rgb[3])
{
    for (; *s; s++, x += GLYPH_ADVANCE) {
        int g = glyph_index(*s);
        if (g < 0)
            continue;
        for (int row = 0; row < 5; row++)
            for (int col = 0; col < 3; col++) {
                if (!(digit_font[g][row] & (4 >> col)))
                    continue;
                for (int sy = 0; sy < FONT_SCALE; sy++)
                    for (int sx = 0; sx < FONT_SCALE; sx++)
                        put(img, NULL, x + col * FONT_SCALE + sx, y + row * FONT_SCALE + sy, rgb);
            }
    }
}

static int text_width(const char *s)
{
    int n = (int)strlen(s);
    return n ? n * GLYPH_ADVANCE - FONT_SCALE : 0;
}

/* "0.25" style labels without trailing zeros ("1", "0.9", "0.02"). */
static void format_tick(double v, char *buf, size_t size)
{
    snprintf(buf, size, "%.2f", v);
    char *dot = strchr(buf, '.');
    if (!dot)
        return;
    char *end = buf + strlen(buf) - 1;
    while (end > dot && *end == '0')
        *end-- = '\0';
    if (end == dot)
        *end = '\0';
}

static void draw_axes(img_rgb8 *img, const panel *p)
{
    static const uint8_t grid[3] = {225, 225, 225}, axis[3] = {0, 0, 0}, label[3] = {60, 60, 60};
    char buf[16];

    for (int i = 0; i <= 10; i++) {
        double fx = p->x0 + (p->x1 - p->x0) * i / 10.0, fy = p->y0 + (p->y1 - p->y0) * i / 10.0;
        double px, py, qx, qy;
        to_pixel(p, fx, p->y0, &px, &py);
        to_pixel(p, fx, p->y1, &qx, &qy);
        segment(img, NULL, px, py, qx, qy, 1, 0, grid);
        segment(img, NULL, px, py, px, py + 5, 1, 0, axis); /* tick below the axis */
        if (i % 2 == 0) {
            format_tick(fx, buf, sizeof buf);
            text(img, (int)px - text_width(buf) / 2, (int)py + 9, buf, label);
        }
        to_pixel(p, p->x0, fy, &px, &py);
        to_pixel(p, p->x1, fy, &qx, &qy);
        segment(img, NULL, px, py, qx, qy, 1, 0, grid);
        segment(img, NULL, px - 5, py, px, py, 1, 0, axis);
        if (i % 2 == 0) {
            format_tick(fy, buf, sizeof buf);
            text(img, (int)px - 9 - text_width(buf), (int)py - 5 * FONT_SCALE / 2, buf, label);
        }
    }
    img_draw_rect(img, p->left - 1, p->top - 1, p->right, p->bottom, 1, axis);
}

static void draw_panel(img_rgb8 *img, int index, const double *fpr, const double *tpr, size_t n,
                       double eer)
{
    static const uint8_t curve[3] = {20, 90, 200}, chance[3] = {150, 150, 150},
                         mark[3] = {220, 30, 30};
    panel p = panel_at(index);
    double ax, ay, bx, by;

    draw_axes(img, &p);
    to_pixel(&p, 0, 0, &ax, &ay);
    to_pixel(&p, 1, 1, &bx, &by);
    segment(img, &p, ax, ay, bx, by, 1, 4, chance);
    for (size_t i = 1; i < n; i++) {
        to_pixel(&p, fpr[i - 1], tpr[i - 1], &ax, &ay);
        to_pixel(&p, fpr[i], tpr[i], &bx, &by);
        segment(img, &p, ax, ay, bx, by, 2, 0, curve);
    }
    if (isfinite(eer)) {
        int x, y;
        if (roc_plot_pixel(index, eer, 1.0 - eer, &x, &y) == 0)
            img_draw_dot(img, x, y, 4, mark);
    }
}

facenet_status roc_plot_render(const double *fpr, const double *tpr, size_t n, double eer,
                               img_rgb8 **out, facenet_error *err)
{
    img_rgb8 *img = NULL;
    facenet_status st;

    if (!out || (n && (!fpr || !tpr)))
        return fn_fail(err, FACENET_ERR_INVALID_ARGUMENT, "roc plot: curve and out are required");
    *out = NULL;
    for (size_t i = 0; i < n; i++)
        if (!isfinite(fpr[i]) || !isfinite(tpr[i]))
            return fn_fail(err, FACENET_ERR_INVALID_ARGUMENT,
                           "roc plot: point %zu is not finite", i);
    if ((st = img_rgb8_new(ROC_PLOT_WIDTH, ROC_PLOT_HEIGHT, &img, err)) != FACENET_OK)
        return st;
    memset(img->pixels, 255, img->stride * (size_t)img->height);
    draw_panel(img, 0, fpr, tpr, n, eer);
    draw_panel(img, 1, fpr, tpr, n, eer);
    *out = img;
    return FACENET_OK;
}

facenet_status roc_plot_write(const double *fpr, const double *tpr, size_t n, double eer,
                              const char *path, facenet_error *err)
{
    img_rgb8 *img = NULL;
    facenet_status st = roc_plot_render(fpr, tpr, n, eer, &img, err);
    if (st == FACENET_OK)
        st = img_write_png(img, path, err);
    img_rgb8_free(img);
    return st;
}
