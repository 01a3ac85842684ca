/*
 * cmd_bench.c - `facenet bench`: how fast each model runs, on each
 * backend, at batch 1 and 16, on one thread and on all of them, and how
 * that compares with the machine's fp32 peak and with peer programs
 * measured in the same run.
 *
 * Not a test: a measurement. Each configuration runs once to warm up and
 * plan memory, then `runs` times; we report the median (and the best) wall
 * time. The peak is measured, not looked up: the clock from a chain of
 * dependent integer adds (one per cycle on every x86-64 since the P6) and
 * the fp32 multiply-accumulate rate from a loop of independent FMAs, both
 * timed in thread CPU time so that other processes on a shared machine do
 * not deflate them.
 */
#include <getopt.h>
#include <jansson.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cli/cli.h"
#include "cli/cli_util.h"

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <immintrin.h>
#define BENCH_X86 1
#else
#define BENCH_X86 0
#endif

static const char bench_usage[] =
    "usage: facenet bench [OPTIONS]\n"
    "\n"
    "Time every model on every available backend, at batch 1 and 16, on one\n"
    "thread and on all CPUs, and print ms per run, ms per face, GMAC/s and the\n"
    "fraction of the measured fp32 peak. The int8 backend (avx2-int8) comes\n"
    "last, with its speed-up over avx2 in the same run (\"x1.85 vs avx2\"). Inputs: P-Net 384x288 (the first\n"
    "pyramid level of a 640x480 photo at min face 20), R-Net 24x24, O-Net\n"
    "48x48, MobileFaceNet 112x112, dlib ResNet 150x150.\n"
    "\n"
    "  --model NAME      one model only\n"
    "  --backend NAME    one backend only (reference, avx2, avx2-int8)\n"
    "  --threads N       one thread count only (default: 1 and all CPUs)\n"
    "  --batch N         one batch size only (default: 1 and 16)\n"
    "  --runs N          timed runs per configuration (default 20)\n"
    "  --peers DIR       also run the peer programs built by `make bench`\n"
    "                    (DIR/xnnpack_peer, DIR/dlib_peer) on the same inputs\n"
    "  --mtcnn           also time face detection per image (at most 10 runs;\n"
    "                    wall ms, process CPU ms and the speed-up over one\n"
    "                    thread in the same run): sample1 of $FACENET_DEMO_DIR\n"
    "                    shrunk to 640x480 and resampled to 1920x1080, at min\n"
    "                    face 40, then the photos sample1..6.jpg (1920 px\n"
    "                    wide) at min face 20\n"
    "  --json            JSON output\n"
    "  --model-dir DIR   model cache (default: facenet models path)\n";

typedef struct bench_opts {
    const char *only_model, *only_backend, *peers, *dir;
    int threads, batch, runs, json, mtcnn;
    double peak_gmacs; /* per core; 0 when unknown */
    json_t *results;
} bench_opts;

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static int compare_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* ---- the machine ---------------------------------------------------------- */

static void cpu_model(char *buf, size_t size)
{
    char line[512];
    FILE *f = fopen("/proc/cpuinfo", "r");
    snprintf(buf, size, "unknown CPU");
    if (!f)
        return;
    while (fgets(line, sizeof line, f)) {
        char *colon = strchr(line, ':');
        if (strncmp(line, "model name", 10) == 0 && colon) {
            colon += 2;
            colon[strcspn(colon, "\n")] = '\0';
            snprintf(buf, size, "%s", colon);
            break;
        }
    }
    fclose(f);
}

#if BENCH_X86
/* Thread CPU time: time slices taken by other processes do not count. */
static double cpu_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

/* GHz: 4 dependent adds per iteration, one cycle each. */
static double measure_clock_ghz(void)
{
    const long iters = 50000000;
    unsigned long v = 0;
    double t0 = cpu_ms();
    for (long i = 0; i < iters; i++)
        __asm__ __volatile__("add $1, %0\n\tadd $1, %0\n\tadd $1, %0\n\tadd $1, %0" : "+r"(v));
    double ms = cpu_ms() - t0;
    return ms > 0 ? 4.0 * (double)iters / (ms * 1e6) : 0.0;
}

/* GMAC/s of one core: 10 independent 8-wide FMA chains hide the FMA
 * latency on every AVX2 core. */
__attribute__((target("avx2,fma"))) static double measure_fma_gmacs(void)
{
    const long iters = 20000000;
    const __m256 m = _mm256_set1_ps(0.999f), c = _mm256_set1_ps(0.001f);
    __m256 a0 = _mm256_set1_ps(0.f), a1 = _mm256_set1_ps(1.f), a2 = _mm256_set1_ps(2.f);
    __m256 a3 = _mm256_set1_ps(3.f), a4 = _mm256_set1_ps(4.f), a5 = _mm256_set1_ps(5.f);
    __m256 a6 = _mm256_set1_ps(6.f), a7 = _mm256_set1_ps(7.f), a8 = _mm256_set1_ps(8.f);
    __m256 a9 = _mm256_set1_ps(9.f);
    double t0 = cpu_ms();
    for (long i = 0; i < iters; i++) {
        a0 = _mm256_fmadd_ps(a0, m, c); a1 = _mm256_fmadd_ps(a1, m, c);
        a2 = _mm256_fmadd_ps(a2, m, c); a3 = _mm256_fmadd_ps(a3, m, c);
        a4 = _mm256_fmadd_ps(a4, m, c); a5 = _mm256_fmadd_ps(a5, m, c);
        a6 = _mm256_fmadd_ps(a6, m, c); a7 = _mm256_fmadd_ps(a7, m, c);
        a8 = _mm256_fmadd_ps(a8, m, c); a9 = _mm256_fmadd_ps(a9, m, c);
    }
    double ms = cpu_ms() - t0;
    __m256 s = _mm256_add_ps(_mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3)),
                             _mm256_add_ps(_mm256_add_ps(a4, a5), _mm256_add_ps(a6, a7)));
    s = _mm256_add_ps(s, _mm256_add_ps(a8, a9));
    volatile float sink = _mm256_cvtss_f32(s);
    (void)sink;
    return ms > 0 ? 80.0 * (double)iters / (ms * 1e6) : 0.0;
}
#endif

/* Best of 5 trials of each: other load only ever slows a trial down. */
static void measure_peak(double *ghz, double *gmacs, const char **how)
{
    *ghz = *gmacs = 0.0;
    *how = "not measured on this architecture";
#if BENCH_X86
    for (int i = 0; i < 5; i++) {
        double g = measure_clock_ghz();
        *ghz = g > *ghz ? g : *ghz;
    }
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) {
        for (int i = 0; i < 5; i++) {
            double p = measure_fma_gmacs();
            *gmacs = p > *gmacs ? p : *gmacs;
        }
        *how = "measured: 8-wide FMA loop per core; clock from dependent adds";
    } else {
        *gmacs = *ghz * 8.0; /* SSE: 4-wide mul + add, two ports */
        *how = "estimated: clock from dependent adds x 8 MAC/cycle (SSE)";
    }
#endif
}

static void print_machine(const bench_opts *o, double ghz, const char *how)
{
    char model[256];
    cpu_model(model, sizeof model);
    const int cpus = (int)sysconf(_SC_NPROCESSORS_ONLN);
    const char *isa = "baseline";
#if BENCH_X86
    __builtin_cpu_init();
    isa = __builtin_cpu_supports("avx512f") ? "avx512f avx2 fma"
          : __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") ? "avx2 fma"
                                                                           : "sse2";
#endif
    if (o->json) {
        json_array_append_new(o->results,
                              json_pack("{s:s,s:s,s:i,s:s,s:f,s:f,s:s}", "kind", "machine", "cpu",
                                        model, "cpus", cpus, "isa", isa, "clock_ghz", ghz,
                                        "peak_gmac_per_core", o->peak_gmacs, "peak_method", how));
        return;
    }
    printf("machine: %s, %d CPUs, ISA %s\n", model, cpus, isa);
    printf("fp32 peak: %.1f GMAC/s per core at %.2f GHz (%s)\n\n", o->peak_gmacs, ghz, how);
}

/* ---- inputs ------------------------------------------------------------------- */

static void bench_input_size(const facenet_model_info *info, int *h, int *w)
{
    *h = info->input_height;
    *w = info->input_width;
    if (strcmp(info->name, "mtcnn-pnet") == 0) {
        /* Transposed, as MTCNN feeds it: [N, W, H, 3]. */
        *h = 384;
        *w = 288;
    }
}

/* Deterministic 8-bit pixels, normalised as the model expects; the peers
 * build the same pixels. */
static float *bench_input(const facenet_model_info *info, int n, int h, int w)
{
    const size_t count = (size_t)n * h * w * 3;
    float *x = malloc(count * sizeof *x);
    if (!x)
        return NULL;
    for (size_t i = 0; i < count; i++) {
        const float v = (float)((i * 7919) % 256);
        x[i] = (v - info->input_mean[i % 3]) * info->input_scale;
    }
    return x;
}

/* ---- one configuration ------------------------------------------------------- */

/* The backends timed: every listed one, then the int8 one, which is found
 * by name only (it is not exact, so it is never listed nor a default). */
#define INT8_BACKEND "avx2-int8"

static const char *bench_backend(int index)
{
    int listed = 0;
    while (facenet_backend_name(listed))
        listed++;
    return index < listed ? facenet_backend_name(index) : index == listed ? INT8_BACKEND : NULL;
}

typedef struct timing {
    double median_ms, best_ms;
} timing;

static facenet_status time_model(const facenet_model *model, int threads, const float *x, int n,
                                 int h, int w, int runs, timing *t, facenet_error *err)
{
    facenet_session *s = NULL;
    double *times = calloc((size_t)runs, sizeof *times);
    facenet_status st = times ? FACENET_OK : FACENET_ERR_NO_MEMORY;

    if (st == FACENET_OK)
        st = facenet_session_create(model, &s, err);
    if (st == FACENET_OK)
        st = facenet_session_set_threads(s, threads, err);
    if (st == FACENET_OK)
        st = facenet_session_run(s, x, n, h, w, 3, err); /* warm-up, plan */
    for (int r = 0; st == FACENET_OK && r < runs; r++) {
        double t0 = now_ms();
        st = facenet_session_run(s, x, n, h, w, 3, err);
        times[r] = now_ms() - t0;
    }
    if (st == FACENET_OK) {
        qsort(times, (size_t)runs, sizeof *times, compare_double);
        t->median_ms = times[runs / 2];
        t->best_ms = times[0];
    }
    facenet_session_free(s);
    free(times);
    return st;
}

/* `fp32`: the avx2 timing of the same configuration in this run, for the
 * int8 row's speed-up, or NULL. */
static void report_row(const bench_opts *o, const char *model, const char *engine, int threads,
                       int batch, const timing *t, double macs_per_face, const timing *fp32)
{
    const double speedup = fp32 && t->median_ms > 0 ? fp32->median_ms / t->median_ms : 0.0;
    const double per_face = t->median_ms / batch;
    const double gmacs = macs_per_face > 0 ? macs_per_face / (per_face * 1e6) : 0.0;
    const double peak = o->peak_gmacs * threads;
    const double frac = peak > 0 ? gmacs / peak : 0.0;
    if (o->json) {
        json_array_append_new(
            o->results,
            json_pack("{s:s,s:s,s:s,s:i,s:i,s:f,s:f,s:f,s:f,s:f,s:f}", "kind", "model", "model",
                      model, "engine", engine, "threads", threads, "batch", batch, "median_ms",
                      t->median_ms, "best_ms", t->best_ms, "ms_per_face", per_face, "mmac_per_face",
                      macs_per_face / 1e6, "gmac_per_s", gmacs, "peak_fraction", frac));
        if (speedup > 0)
            json_object_set_new(json_array_get(o->results, json_array_size(o->results) - 1),
                                "speedup_vs_avx2", json_real(speedup));
        return;
    }
    printf("%-17s %-13s %3d %5d %10.2f %9.3f %9.3f %8.1f %6.1f%%", model, engine, threads, batch,
           t->median_ms, per_face, t->best_ms / batch, gmacs, 100.0 * frac);
    if (speedup > 0)
        printf("  x%.2f vs avx2", speedup);
    printf("\n");
}

/* ---- peers --------------------------------------------------------------------- */

/* Run DIR/prog MODEL batch threads runs; it prints "name batch threads
 * median best max|v|". Returns 0 on success. */
static int run_peer(const bench_opts *o, const char *prog, const char *model_path, int batch,
                    int threads, timing *t, char *name, size_t name_size)
{
    char exe[PATH_MAX], cmd[3 * PATH_MAX], line[256];
    snprintf(exe, sizeof exe, "%s/%s", o->peers, prog);
    if (access(exe, X_OK) != 0)
        return -1;
    snprintf(cmd, sizeof cmd, "'%s' '%s' %d %d %d", exe, model_path, batch, threads, o->runs);
    FILE *p = popen(cmd, "r");
    if (!p)
        return -1;
    int ok = 0;
    char peer_name[64];
    int b, th;
    double peak;
    while (fgets(line, sizeof line, p))
        if (sscanf(line, "%63s %d %d %lf %lf %lf", peer_name, &b, &th, &t->median_ms, &t->best_ms,
                   &peak) == 6)
            ok = 1;
    if (pclose(p) != 0 || !ok)
        return -1;
    snprintf(name, name_size, "%s", peer_name);
    return 0;
}

static const char *peer_for(const char *model)
{
    if (strcmp(model, "mobilefacenet") == 0)
        return "xnnpack_peer";
    if (strcmp(model, "dlib-resnet") == 0)
        return "dlib_peer";
    return NULL;
}

/* ---- one model ------------------------------------------------------------------ */

static int bench_model(const bench_opts *o, const facenet_model_info *info)
{
    int h, w, rc = CLI_EXIT_OK;
    const int cpus = (int)sysconf(_SC_NPROCESSORS_ONLN);
    const int is_pnet = strcmp(info->name, "mtcnn-pnet") == 0;
    const int batches[2] = {1, 16};
    const int thread_counts[2] = {1, cpus > 1 ? cpus : 1};

    bench_input_size(info, &h, &w);
    for (int bi = 0; bi < 2; bi++) {
        const int batch = o->batch ? o->batch : batches[bi];
        if ((o->batch && bi > 0) || (is_pnet && batch > 1 && !o->batch))
            break;
        float *x = bench_input(info, batch, h, w);
        if (!x)
            return CLI_EXIT_INTERNAL;
        double macs = 0.0;
        timing fp32[2];
        int have_fp32[2] = {0, 0};
        for (int b = 0; bench_backend(b); b++) {
            const char *backend = bench_backend(b);
            facenet_model *model = NULL;
            facenet_error err;
            if (!facenet_backend_available(backend) ||
                (o->only_backend && strcmp(o->only_backend, backend) != 0))
                continue;
            if (facenet_model_load_backend(o->dir, info, backend, &model, &err) != FACENET_OK) {
                rc = cli_report(&err);
                break;
            }
            macs = (double)facenet_model_macs(model, 1, h, w, 3);
            for (int ti = 0; ti < 2; ti++) {
                const int threads = o->threads ? o->threads : thread_counts[ti];
                if ((o->threads && ti > 0) || (ti > 0 && threads == thread_counts[0]))
                    break;
                if (strcmp(backend, "reference") == 0 && threads > 1)
                    break; /* single-threaded by design */
                timing t;
                if (time_model(model, threads, x, batch, h, w, o->runs, &t, &err) != FACENET_OK) {
                    rc = cli_report(&err);
                    break;
                }
                const int is_int8 = strcmp(backend, INT8_BACKEND) == 0;
                report_row(o, info->name, backend, threads, batch, &t, macs,
                           is_int8 && have_fp32[ti] ? &fp32[ti] : NULL);
                if (strcmp(backend, "avx2") == 0) {
                    fp32[ti] = t;
                    have_fp32[ti] = 1;
                }
            }
            facenet_model_free(model);
        }
        const char *peer = o->peers ? peer_for(info->name) : NULL;
        for (int ti = 0; peer && ti < 2; ti++) {
            const int threads = o->threads ? o->threads : thread_counts[ti];
            if ((o->threads && ti > 0) || (ti > 0 && threads == thread_counts[0]))
                break;
            char path[PATH_MAX], name[64];
            timing t;
            snprintf(path, sizeof path, "%s/%s", o->dir, info->file_name);
            if (run_peer(o, peer, path, batch, threads, &t, name, sizeof name) == 0)
                report_row(o, info->name, name, threads, batch, &t, macs, NULL);
            else
                fprintf(stderr, "facenet bench: peer %s/%s did not run\n", o->peers, peer);
        }
        free(x);
    }
    return rc;
}

/* ---- MTCNN per image -------------------------------------------------------------- */

/* Box-filter `src` down to w x h (integer factor per axis, from the
 * top-left); enough to make a 640x480 photo from a 1920-wide one. */
static facenet_image *shrink(const facenet_image *src, int w, int h)
{
    const int sw = facenet_image_width(src), sh = facenet_image_height(src);
    const int fx = sw / w, fy = sh / h;
    if (fx < 1 || fy < 1)
        return NULL;
    uint8_t *px = malloc((size_t)w * h * 3);
    if (!px)
        return NULL;
    const uint8_t *s = facenet_image_pixels(src);
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++)
            for (int c = 0; c < 3; c++) {
                unsigned sum = 0;
                for (int dy = 0; dy < fy; dy++)
                    for (int dx = 0; dx < fx; dx++)
                        sum += s[((size_t)(y * fy + dy) * sw + (size_t)(x * fx + dx)) * 3 + c];
                px[((size_t)y * w + x) * 3 + c] = (uint8_t)(sum / (unsigned)(fx * fy));
            }
    facenet_image *out = NULL;
    facenet_image_from_rgb(px, w, h, (size_t)w * 3, &out, NULL);
    free(px);
    return out;
}

/* Bilinear resample (half-pixel centres) of an RGB photo to w x h: how
 * the bench makes its 1920x1080 frame from a demo photo at run time. */
static facenet_image *resample(const facenet_image *src, int w, int h)
{
    const int sw = facenet_image_width(src), sh = facenet_image_height(src);
    const uint8_t *s = facenet_image_pixels(src);
    uint8_t *px = malloc((size_t)w * h * 3);
    if (!px)
        return NULL;
    for (int y = 0; y < h; y++) {
        double fy = ((double)y + 0.5) * sh / h - 0.5;
        fy = fy < 0 ? 0 : fy > sh - 1 ? sh - 1 : fy;
        const int y0 = (int)fy, y1 = y0 + 1 < sh ? y0 + 1 : y0;
        const double ay = fy - y0;
        for (int x = 0; x < w; x++) {
            double fx = ((double)x + 0.5) * sw / w - 0.5;
            fx = fx < 0 ? 0 : fx > sw - 1 ? sw - 1 : fx;
            const int x0 = (int)fx, x1 = x0 + 1 < sw ? x0 + 1 : x0;
            const double ax = fx - x0;
            for (int c = 0; c < 3; c++) {
                double top = s[((size_t)y0 * sw + x0) * 3 + c] * (1 - ax) +
                             s[((size_t)y0 * sw + x1) * 3 + c] * ax;
                double bottom = s[((size_t)y1 * sw + x0) * 3 + c] * (1 - ax) +
                                s[((size_t)y1 * sw + x1) * 3 + c] * ax;
                px[((size_t)y * w + x) * 3 + c] = (uint8_t)(top * (1 - ay) + bottom * ay + 0.5);
            }
        }
    }
    facenet_image *out = NULL;
    facenet_image_from_rgb(px, w, h, (size_t)w * 3, &out, NULL);
    free(px);
    return out;
}

static double process_cpu_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

/* Time detection on one image with one backend and thread count. Prints a
 * row; *median gets the median wall ms (the 1-thread one is the base of
 * the speed-up column, *base, 0 for none). */
static int time_detect(const bench_opts *o, const char *label, const facenet_image *img,
                       int min_size, const char *backend, int threads, double base,
                       double *median)
{
    facenet_detector *det = NULL;
    facenet_error err;
    facenet_detect_options opts;
    /* A 1920-pixel photo takes a second or more: ten runs are plenty. */
    const int runs = o->runs < 10 ? o->runs : 10;
    double *times = calloc((size_t)runs, sizeof *times);
    double cpu = 0;
    size_t n_faces = 0;
    int rc = CLI_EXIT_OK;

    /* The detector's sessions take their backend from the environment,
     * read when it is created. */
    setenv("FACENET_BACKEND", backend, 1);
    facenet_detect_options_default(&opts);
    opts.min_size = min_size;
    if (!times || facenet_detector_create(o->dir, &det, &err) != FACENET_OK ||
        facenet_detector_set_threads(det, threads, &err) != FACENET_OK) {
        free(times);
        facenet_detector_free(det);
        return times ? cli_report(&err) : CLI_EXIT_INTERNAL;
    }
    for (int r = -1; r < runs; r++) {
        facenet_face *faces = NULL;
        double t0 = now_ms(), c0 = process_cpu_ms();
        if (facenet_detect(det, img, &opts, &faces, &n_faces, &err) != FACENET_OK) {
            rc = cli_report(&err);
            break;
        }
        if (r >= 0) {
            times[r] = now_ms() - t0;
            cpu += process_cpu_ms() - c0;
        }
        free(faces);
    }
    facenet_detector_free(det);
    if (rc == CLI_EXIT_OK) {
        qsort(times, (size_t)runs, sizeof *times, compare_double);
        const int w = facenet_image_width(img), h = facenet_image_height(img);
        const double speedup = base > 0 ? base / times[runs / 2] : 1.0;
        *median = times[runs / 2];
        if (o->json)
            json_array_append_new(
                o->results,
                json_pack("{s:s,s:s,s:i,s:i,s:i,s:s,s:i,s:I,s:f,s:f,s:f,s:f}", "kind", "mtcnn",
                          "image", label, "width", w, "height", h, "min_size", min_size,
                          "backend", backend, "threads", threads, "faces", (json_int_t)n_faces,
                          "median_ms", times[runs / 2], "best_ms", times[0], "cpu_ms",
                          cpu / runs, "speedup", speedup));
        else
            printf("%-13s %4dx%-4d %4d  %-10s %3d %5zu %10.2f %9.2f %9.2f %7.2fx\n", label, w, h,
                   min_size, backend, threads, n_faces, times[runs / 2], times[0], cpu / runs,
                   speedup);
    }
    free(times);
    return rc;
}

/* The images of --mtcnn: i == 0 is sample1 shrunk to 640x480, i == 1
 * sample1 resampled to 1920x1080 (both at min face 40), then sample1..6
 * as they are (min face 20). */
#define BENCH_MTCNN_IMAGES 8

static facenet_image *mtcnn_image(const char *demo, int i, char *label, size_t size,
                                  int *min_size, facenet_error *err)
{
    char path[PATH_MAX];
    facenet_image *img = NULL, *made = NULL;
    snprintf(path, sizeof path, "%s/sample%d.jpg", demo, i < 2 ? 1 : i - 1);
    if (facenet_image_load(path, NULL, &img, err) != FACENET_OK)
        return NULL;
    *min_size = i < 2 ? 40 : 20;
    if (i == 0)
        made = shrink(img, 640, 480);
    else if (i == 1)
        made = resample(img, 1920, 1080);
    else {
        snprintf(label, size, "sample%d", i - 1);
        return img;
    }
    snprintf(label, size, i == 0 ? "sample1-640" : "sample1-1080p");
    facenet_image_free(img);
    if (!made) {
        err->code = FACENET_ERR_NO_MEMORY;
        snprintf(err->message, sizeof err->message, "out of memory for a %s image", label);
    }
    return made;
}

static int bench_mtcnn(const bench_opts *o)
{
    const char *demo = getenv("FACENET_DEMO_DIR");
    const int cpus = (int)sysconf(_SC_NPROCESSORS_ONLN);
    int rc = CLI_EXIT_OK;

    if (!demo || !*demo) {
        fprintf(stderr, "facenet bench: --mtcnn needs FACENET_DEMO_DIR (the demo photos)\n");
        return CLI_EXIT_USAGE;
    }
    /* Each row's backend comes from FACENET_BACKEND alone: a precision
     * asked for in the caller's environment would relabel the rows. */
    unsetenv("FACENET_PRECISION");
    if (!o->json)
        printf("\n%-13s %9s %4s  %-10s %3s %5s %10s %9s %9s %8s\n", "image", "size", "minf",
               "backend", "thr", "faces", "median_ms", "best_ms", "cpu_ms", "speedup");
    for (int i = 0; i < BENCH_MTCNN_IMAGES && rc == CLI_EXIT_OK; i++) {
        char label[32];
        int min_size = 20;
        facenet_error err;
        facenet_image *img = mtcnn_image(demo, i, label, sizeof label, &min_size, &err);
        if (!img) {
            rc = cli_report(&err);
            break;
        }
        for (int b = 0; bench_backend(b) && rc == CLI_EXIT_OK; b++) {
            const char *backend = bench_backend(b);
            double base = 0, median = 0;
            if (!facenet_backend_available(backend) ||
                (o->only_backend && strcmp(o->only_backend, backend) != 0))
                continue;
            for (int ti = 0; ti < 2 && rc == CLI_EXIT_OK; ti++) {
                const int threads = o->threads ? o->threads : ti == 0 ? 1 : cpus;
                /* The reference backend is timed on the 640x480 image only
                 * (its threads help the same way: it is not the point). */
                if ((ti > 0 && (o->threads || threads == 1)) ||
                    (strcmp(backend, "reference") == 0 && (ti > 0 || i > 0)))
                    break;
                rc = time_detect(o, label, img, min_size, backend, threads, base, &median);
                if (threads == 1)
                    base = median;
            }
        }
        facenet_image_free(img);
    }
    unsetenv("FACENET_BACKEND");
    return rc;
}

/* ---- main --------------------------------------------------------------------------- */

int cmd_bench(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"model", required_argument, NULL, 'm'},   {"backend", required_argument, NULL, 'B'},
        {"threads", required_argument, NULL, 't'}, {"batch", required_argument, NULL, 'b'},
        {"runs", required_argument, NULL, 'r'},    {"peers", required_argument, NULL, 'p'},
        {"mtcnn", no_argument, NULL, 'd'},         {"json", no_argument, NULL, 'j'},
        {"model-dir", required_argument, NULL, 'M'}, {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0}};
    const char *model_dir_opt = NULL;
    char dir[PATH_MAX];
    bench_opts o;
    int c, rc = CLI_EXIT_OK;

    memset(&o, 0, sizeof o);
    o.runs = 20;
    optind = 1;
    while ((c = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
        switch (c) {
        case 'm': o.only_model = optarg; break;
        case 'B': o.only_backend = optarg; break;
        case 't': o.threads = atoi(optarg); if (o.threads < 1) o.threads = -1; break;
        case 'b': o.batch = atoi(optarg); if (o.batch < 1) o.batch = -1; break;
        case 'r': o.runs = atoi(optarg); break;
        case 'p': o.peers = optarg; break;
        case 'd': o.mtcnn = 1; break;
        case 'j': o.json = 1; break;
        case 'M': model_dir_opt = optarg; break;
        case 'h': fputs(bench_usage, stdout); return CLI_EXIT_OK;
        default: fputs(bench_usage, stderr); return CLI_EXIT_USAGE;
        }
    }
    if (o.runs < 1 || o.runs > 10000 || o.batch < 0 || o.batch > 256 || o.threads < 0 ||
        o.threads > 256 || optind != argc) {
        fputs(bench_usage, stderr);
        return CLI_EXIT_USAGE;
    }
    if (o.only_model && !facenet_model_find(o.only_model)) {
        fprintf(stderr, "facenet bench: no model named '%s'\n", o.only_model);
        return CLI_EXIT_USAGE;
    }
    if (o.only_backend && !facenet_backend_available(o.only_backend)) {
        fprintf(stderr, "facenet bench: backend '%s' is not available here\n", o.only_backend);
        return CLI_EXIT_USAGE;
    }
    if (cli_model_dir(model_dir_opt, dir, sizeof dir) != 0)
        return CLI_EXIT_MODEL;
    o.dir = dir;
    if (o.json)
        o.results = json_array();

    double ghz;
    const char *how;
    measure_peak(&ghz, &o.peak_gmacs, &how);
    print_machine(&o, ghz, how);
    if (!o.json)
        printf("%-17s %-13s %3s %5s %10s %9s %9s %8s %7s\n", "model", "engine", "thr", "batch",
               "median_ms", "ms/face", "best/face", "GMAC/s", "%peak");
    for (size_t i = 0; i < facenet_model_count(); i++) {
        const facenet_model_info *info = facenet_model_at(i);
        if (o.only_model && strcmp(o.only_model, info->name) != 0)
            continue;
        int r = bench_model(&o, info);
        if (r > rc)
            rc = r;
    }
    if (o.mtcnn) {
        int r = bench_mtcnn(&o);
        if (r > rc)
            rc = r;
    }
    if (o.json) {
        json_t *doc = json_pack("{s:i,s:o}", "runs", o.runs, "results", o.results);
        json_dumpf(doc, stdout, JSON_INDENT(2) | JSON_REAL_PRECISION(6));
        fputc('\n', stdout);
        json_decref(doc);
    }
    return rc;
}
