/*
 * draw.c - boxes and landmark marks on RGB8 images (facenet detect --draw).
 *
 * Every shape is reduced to filled axis-aligned spans clipped to the image,
 * with coordinates widened to 64 bits first, so no input (negative, huge,
 * INT_MIN) can write out of bounds or overflow.
 */
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "image/image.h"

/* Fill the inclusive rectangle [x1, x2] x [y1, y2], clipped. */
static void fill_rect(img_rgb8 *img, int64_t x1, int64_t y1, int64_t x2,
                      int64_t y2, const uint8_t rgb[3])
{
    if (x1 < 0)
        x1 = 0;
    if (y1 < 0)
        y1 = 0;
    if (x2 > img->width - 1)
        x2 = img->width - 1;
    if (y2 > img->height - 1)
        y2 = img->height - 1;
    for (int64_t y = y1; y <= y2; y++) {
        uint8_t *row = img->pixels + (size_t)y * img->stride;
        for (int64_t x = x1; x <= x2; x++)
            memcpy(row + 3 * x, rgb, 3);
    }
}

void img_draw_rect(img_rgb8 *img, int x1, int y1, int x2, int y2,
                   int thickness, const uint8_t rgb[3])
{
    int64_t l = x1 < x2 ? x1 : x2, r = x1 < x2 ? x2 : x1;
    int64_t t = y1 < y2 ? y1 : y2, b = y1 < y2 ? y2 : y1;
    int64_t th = thickness < 1 ? 1 : thickness;

    fill_rect(img, l, t, r, t + th - 1, rgb);         /* top    */
    fill_rect(img, l, b - th + 1, r, b, rgb);         /* bottom */
    fill_rect(img, l, t, l + th - 1, b, rgb);         /* left   */
    fill_rect(img, r - th + 1, t, r, b, rgb);         /* right  */
}

/* The widest dx with dx^2 + dy^2 <= r^2 (r below 2^18, so exact enough
 * in double and corrected by one step either way). */
static int64_t half_span(int64_t r, int64_t dy)
{
    int64_t d2 = r * r - dy * dy;
    int64_t dx = (int64_t)sqrt((double)d2);
    while (dx > 0 && dx * dx > d2)
        dx--;
    while ((dx + 1) * (dx + 1) <= d2)
        dx++;
    return dx;
}

void img_draw_dot(img_rgb8 *img, int cx, int cy, int radius,
                  const uint8_t rgb[3])
{
    int64_t r = radius < 0 ? 0 : radius;
    /* Beyond twice the largest side a bigger radius changes nothing. */
    if (r > 2 * (int64_t)IMG_MAX_SIDE)
        r = 2 * (int64_t)IMG_MAX_SIDE;
    for (int64_t dy = -r; dy <= r; dy++) {
        int64_t y = (int64_t)cy + dy;
        if (y < 0 || y >= img->height)
            continue;
        int64_t dx = half_span(r, dy);
        fill_rect(img, (int64_t)cx - dx, y, (int64_t)cx + dx, y, rgb);
    }
}

void img_draw_cross(img_rgb8 *img, int cx, int cy, int arm,
                    const uint8_t rgb[3])
{
    int64_t a = arm < 0 ? 0 : arm;
    fill_rect(img, (int64_t)cx - a, cy, (int64_t)cx + a, cy, rgb);
    fill_rect(img, cx, (int64_t)cy - a, cx, (int64_t)cy + a, rgb);
}
