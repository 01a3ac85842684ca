/*
 * resample_bench.c - times the detector's resampling alone, from the
 * library's internal API: every MTCNN pyramid level of a random W x H
 * image (img_crop_resize_rgb8_t, as P-Net's input), 300 R-Net (24x24)
 * and O-Net (48x48) crops of random boxes (some past the edges), and a
 * 160x160 alignment warp. Prints the best thread-CPU ms of each and an
 * FNV hash of the outputs, so two builds can be compared for both speed
 * and identical bytes in the same run. Not built by CMake; by hand, after
 * a Release build in build/:
 *
 *   L=/usr/lib/x86_64-linux-gnu
 *   cc -O2 -Isrc -Iinclude bench/resample_bench.c build/libfacenet.a
 * $L/libjpeg.so \
 *      $L/libpng16.so $L/libwebp.so $L/libsodium.so $L/libjansson.so
 * $L/libsqlite3.so \ -lm -lpthread -o build/resample_bench build/resample_bench
 * [W H MIN_FACE REPS]     (default 250 250 20 200)
 */
#define _POSIX_C_SOURCE 200809L
#include "image/image.h"
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
static double cpu_ms(void) {
  struct timespec t;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
  return t.tv_sec * 1e3 + t.tv_nsec / 1e6;
}
int main(int argc, char **argv) {
  int W = argc > 1 ? atoi(argv[1]) : 250, H = argc > 2 ? atoi(argv[2]) : 250;
  double minf = argc > 3 ? atof(argv[3]) : 20;
  int reps = argc > 4 ? atoi(argv[4]) : 200;
  if (W < 12 || H < 12 || W > 4096 || H > 4096 || !(minf >= 12) || reps < 1) {
    fprintf(stderr, "usage: resample_bench [W H MIN_FACE REPS]: sides 12..4096, "
                    "min face >= 12, reps >= 1\n");
    return 2;
  }
  img_rgb8 img = {W, H, (size_t)W * 3, malloc((size_t)W * H * 3)};
  srand(1);
  for (size_t i = 0; i < (size_t)W * H * 3; i++)
    img.pixels[i] = rand() & 255;
  img_norm norm = {127.5f, 0.0078125f};
  double scales[64];
  int n = 0;
  double m = 12.0 / minf, ms = (W < H ? W : H) * m;
  while (ms >= 12.0) {
    scales[n] = m * pow(0.709, n);
    n++;
    ms *= 0.709;
  }
  float *t = malloc(sizeof(float) * W * H * 3 * 4 + 1000000);
  if (!img.pixels || !t) {
    fprintf(stderr, "resample_bench: out of memory\n");
    return 1;
  }
  int whole[4] = {1, 1, W, H};
  unsigned long long h = 1469598103934665603ULL;
  double best = 1e9;
  for (int r = 0; r < reps; r++) {
    double t0 = cpu_ms();
    for (int l = 0; l < n; l++) {
      int ws = (int)ceil(W * scales[l]), hs = (int)ceil(H * scales[l]);
      if (img_crop_resize_rgb8_t(&img, whole, ws, hs, 0, ws, &norm, t, NULL))
        return 1;
      if (r == 0) {
        unsigned char *b = (unsigned char *)t;
        for (size_t i = 0; i < (size_t)ws * hs * 12; i++) {
          h ^= b[i];
          h *= 1099511628211ULL;
        }
      }
    }
    double d = cpu_ms() - t0;
    if (d < best)
      best = d;
  }
  printf("pyramid %dx%d min %g levels %d: best %.3f ms hash %016llx\n", W, H,
         minf, n, best, h);
  /* crops */
  int boxes[300][4];
  for (int i = 0; i < 300; i++) {
    int s = 12 + rand() % (W / 2);
    int x = rand() % (W)-s / 4, y = rand() % (H)-s / 4;
    boxes[i][0] = x;
    boxes[i][1] = y;
    boxes[i][2] = x + s + rand() % 5;
    boxes[i][3] = y + s + rand() % 5;
  }
  for (int sz = 24; sz <= 48; sz += 24) {
    best = 1e9;
    h = 1469598103934665603ULL;
    for (int r = 0; r < reps / 10 + 1; r++) {
      double t0 = cpu_ms();
      for (int i = 0; i < 300; i++) {
        if (img_crop_resize_rgb8_t(&img, boxes[i], sz, sz, 0, sz, &norm, t,
                                   NULL))
          return 2;
        if (r == 0) {
          unsigned char *b = (unsigned char *)t;
          for (size_t k = 0; k < (size_t)sz * sz * 12; k++) {
            h ^= b[k];
            h *= 1099511628211ULL;
          }
        }
      }
      double d = cpu_ms() - t0;
      if (d < best)
        best = d;
    }
    printf("crops %d x300: best %.3f ms hash %016llx\n", sz, best, h);
  }
  /* warp */
  img_f32 *f;
  img_rgb8_to_f32(&img, &f, NULL);
  double a[6] = {0.9, 0.1, -20, -0.1, 0.9, -15};
  best = 1e9;
  h = 1469598103934665603ULL;
  for (int r = 0; r < reps; r++) {
    double t0 = cpu_ms();
    if (img_warp_affine_into(f, a, 160, 160, t, NULL))
      return 3;
    double d = cpu_ms() - t0;
    if (d < best)
      best = d;
    if (r == 0) {
      unsigned char *b = (unsigned char *)t;
      for (size_t k = 0; k < 160 * 160 * 12; k++) {
        h ^= b[k];
        h *= 1099511628211ULL;
      }
    }
  }
  printf("warp 160x160: best %.3f ms hash %016llx\n", best, h);
  return 0;
}
