/*
 * cmd_gallery_bench.c - `facenet gallery bench`: how fast is 1:N search?
 *
 * Not a test: a measurement on synthetic templates (random unit vectors,
 * one subject each), so that it needs no photos and scales to millions.
 * Half of the queries are "genuine" (a stored template plus noise, at a
 * cosine similarity of about 0.6 with it, like two photos of one person),
 * half are strangers (fresh random vectors). For each gallery size we time
 * the exact float search and the int8 and int4 scans (each reranked in float),
 * and count how often their top-1 subjects agree. Resident memory is read
 * from /proc/self/status after the matrices are built.
 *
 * Optionally (--store N) it also times the durable path: enrolling N
 * templates into a real, encrypted gallery file and opening it again
 * (which decrypts every template).
 */
#include <getopt.h>
#include <jansson.h>
#include <math.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cli/cli.h"
#include "cli/cli_util.h"
#include "cli/gallery_util.h"
#include "gallery/index.h"

static const char bench_usage[] =
    "usage: facenet gallery bench [OPTIONS]\n"
    "\n"
    "Time top-k search over synthetic unit templates: exact float, and int8\n"
    "and int4 scans whose candidates are rescored in float, with their top-1\n"
    "agreement with float, and resident memory. Times are per query: median\n"
    "95th and 99th percentile wall clock, and mean CPU time (all threads).\n"
    "\n"
    "  --sizes N,N,...   gallery sizes (default 10000,100000,1000000)\n"
    "  --dim D           dimensions (default 192, MobileFaceNet)\n"
    "  --queries Q       queries per size, half genuine (default 1000)\n"
    "  -k K              subjects returned (default 5)\n"
    "  --threads T       search threads (default: all cores when large)\n"
    "  --store N         also time enrolling N templates into an encrypted\n"
    "                    gallery file and reopening it (default 0: skip)\n"
    "  --dir DIR         where --store writes its temporary gallery (default .)\n"
    "  --seed S          random seed (default 1)\n"
    "  --json            JSON output\n";

/* xorshift64* and Box-Muller: deterministic, fast, good enough here. */
typedef struct rng {
    uint64_t s;
} rng;

static double uniform(rng *r)
{
    r->s ^= r->s >> 12;
    r->s ^= r->s << 25;
    r->s ^= r->s >> 27;
    return (double)((r->s * 2685821657736338717ull) >> 11) / 9007199254740992.0;
}

static float gaussian(rng *r)
{
    double u = uniform(r), v = uniform(r);
    if (u < 1e-300)
        u = 1e-300;
    return (float)(sqrt(-2.0 * log(u)) * cos(6.283185307179586 * v));
}

static void random_unit(rng *r, float *v, int dim)
{
    for (int i = 0; i < dim; i++)
        v[i] = gaussian(r);
    gallery_normalise(v, dim);
}

/* CPU time of the whole process (every thread): on a shared machine it
 * shows what a search costs when the wall clock also counts the time other
 * jobs held the cores. */
static double cpu_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static long rss_kib(void)
{
    char line[256];
    long kib = -1;
    FILE *f = fopen("/proc/self/status", "r");
    if (!f)
        return -1;
    while (fgets(line, sizeof line, f))
        if (sscanf(line, "VmRSS: %ld kB", &kib) == 1)
            break;
    fclose(f);
    return kib;
}

static int compare_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

typedef struct timing {
    double median, p95, p99, mean;
} timing;

static timing summarise(double *ms, int n)
{
    timing t = {0, 0, 0, 0};
    qsort(ms, (size_t)n, sizeof *ms, compare_double);
    for (int i = 0; i < n; i++)
        t.mean += ms[i] / n;
    t.median = ms[n / 2];
    t.p95 = ms[(int)(0.95 * (n - 1))];
    t.p99 = ms[(int)(0.99 * (n - 1))];
    return t;
}

typedef struct bench_cfg {
    int dim, queries, k, threads;
    uint64_t seed;
} bench_cfg;

#define N_TIERS 3
static const gallery_scan tiers[N_TIERS] = {GALLERY_SCAN_FLOAT, GALLERY_SCAN_INT8,
                                            GALLERY_SCAN_INT4};
static const char *const tier_names[N_TIERS] = {"float", "int8", "int4"};

static int bench_size(size_t n, const bench_cfg *cfg, json_t *results)
{
    gallery_index ix;
    gallery_pool *pool = NULL;
    rng r = {cfg->seed * 0x9E3779B97F4A7C15ull + n};
    float *v = malloc((size_t)cfg->dim * sizeof *v), *q = malloc((size_t)cfg->dim * sizeof *q);
    double *ms[N_TIERS], cpu[N_TIERS] = {0};
    gallery_hit *hits[N_TIERS];
    int agree[N_TIERS] = {0}, found_genuine = 0, genuine = 0, rc = CLI_EXIT_OK;
    int ok = v && q;
    for (int t = 0; t < N_TIERS; t++) {
        ms[t] = malloc((size_t)cfg->queries * sizeof *ms[t]);
        hits[t] = malloc((size_t)cfg->k * sizeof *hits[t]);
        ok = ok && ms[t] && hits[t];
    }
    if (!ok || gallery_index_init(&ix, cfg->dim, GALLERY_INDEX_INT8 | GALLERY_INDEX_INT4) != 0 ||
        gallery_index_reserve(&ix, n) != 0) {
        fprintf(stderr, "facenet gallery bench: out of memory for %zu templates\n", n);
        rc = CLI_EXIT_INTERNAL;
        goto out;
    }
    long rss0 = rss_kib();
    double t0 = gcli_now();
    for (size_t i = 0; i < n; i++) {
        random_unit(&r, v, cfg->dim);
        gallery_index_add(&ix, v, (int64_t)i + 1, (int64_t)i + 1, 1);
    }
    double build_s = gcli_now() - t0;
    /* Searches run as a gallery handle runs them: on a pool of workers. */
    if (gallery_index_threads(&ix, cfg->threads) > 1)
        pool = gallery_pool_create(gallery_index_threads(&ix, cfg->threads) - 1);
    long rss1 = rss_kib();
    for (int i = 0; i < cfg->queries; i++) {
        int is_genuine = i % 2 == 0;
        size_t target = (size_t)(uniform(&r) * (double)n) % n;
        random_unit(&r, q, cfg->dim);
        if (is_genuine) {
            /* x + noise of norm 1.33: cosine about 1/sqrt(1 + 1.33^2) = 0.6 */
            for (int d = 0; d < cfg->dim; d++)
                q[d] = ix.vec[target * (size_t)cfg->dim + (size_t)d] + 1.33f * q[d];
            gallery_normalise(q, cfg->dim);
        }
        size_t got[N_TIERS];
        for (int t = 0; t < N_TIERS; t++) {
            gallery_query gq = {q, cfg->k, 0, tiers[t], cfg->threads, pool};
            double s = gcli_now(), c = cpu_ms();
            got[t] = gallery_index_search(&ix, &gq, hits[t]);
            ms[t][i] = (gcli_now() - s) * 1e3;
            cpu[t] += cpu_ms() - c;
            if (got[t] == (size_t)-1) {
                rc = CLI_EXIT_INTERNAL;
                goto out;
            }
            agree[t] += got[t] > 0 && got[0] > 0 && hits[t][0].subject_id == hits[0][0].subject_id;
        }
        if (is_genuine) {
            genuine++;
            found_genuine += got[0] > 0 && hits[0][0].subject_id == (int64_t)target + 1;
        }
    }
    double mib = (double)gallery_index_memory(&ix) / (1 << 20);
    json_t *row = results ? json_pack("{s:I,s:i,s:i,s:f,s:f,s:f,s:I,s:I}", "templates",
                                      (json_int_t)n, "dim", cfg->dim, "k", cfg->k,
                                      "genuine_found_float",
                                      genuine ? (double)found_genuine / genuine : 0.0,
                                      "memory_mib", mib, "build_s", build_s, "rss_kib_before",
                                      (json_int_t)rss0, "rss_kib_after", (json_int_t)rss1)
                          : NULL;
    if (!results)
        printf("%10zu %4d %3d", n, cfg->dim, cfg->k);
    for (int t = 0; t < N_TIERS; t++) {
        timing tm = summarise(ms[t], cfg->queries);
        double a = (double)agree[t] / cfg->queries;
        if (row) {
            char key[64];
            snprintf(key, sizeof key, "%s_median_ms", tier_names[t]);
            json_object_set_new(row, key, json_real(tm.median));
            snprintf(key, sizeof key, "%s_p95_ms", tier_names[t]);
            json_object_set_new(row, key, json_real(tm.p95));
            snprintf(key, sizeof key, "%s_p99_ms", tier_names[t]);
            json_object_set_new(row, key, json_real(tm.p99));
            snprintf(key, sizeof key, "%s_top1_agreement", tier_names[t]);
            json_object_set_new(row, key, json_real(a));
            snprintf(key, sizeof key, "%s_cpu_ms", tier_names[t]);
            json_object_set_new(row, key, json_real(cpu[t] / cfg->queries));
        } else if (t == 0) {
            printf(" | %7.2f %7.2f %7.2f %7.2f", tm.median, tm.p95, tm.p99, cpu[t] / cfg->queries);
        } else {
            printf(" | %7.2f %7.2f %7.2f %7.2f %7.3f%%", tm.median, tm.p95, tm.p99,
                   cpu[t] / cfg->queries, 100.0 * a);
        }
    }
    if (row)
        json_array_append_new(results, row);
    else
        printf(" | %7.1f %7.1f\n", mib, (double)rss1 / 1024);
out:
    gallery_pool_free(pool);
    gallery_index_free(&ix);
    free(v);
    free(q);
    for (int t = 0; t < N_TIERS; t++) {
        free(ms[t]);
        free(hits[t]);
    }
    return rc;
}

/* The durable path: enroll n synthetic templates (100 per transaction)
 * into a new encrypted gallery, then open it (decrypting everything). */
static int bench_store(size_t n, const bench_cfg *cfg, const char *dir, json_t *results)
{
    char path[4096];
    uint8_t key[FACENET_GALLERY_KEY_BYTES];
    facenet_gallery *g = NULL;
    facenet_error err;
    rng r = {cfg->seed + 77};
    const size_t per_txn = 100;
    float *rows = malloc(per_txn * (size_t)cfg->dim * sizeof *rows);
    int rc = CLI_EXIT_OK;

    snprintf(path, sizeof path, "%s/facenet-bench-%ld.gallery", dir, (long)getpid());
    randombytes_buf(key, sizeof key);
    if (!rows ||
        facenet_gallery_open(path, key, "bench@0000000000000000", cfg->dim,
                             FACENET_GALLERY_CREATE, &g, &err) != FACENET_OK) {
        rc = rows ? gcli_report(&err) : CLI_EXIT_INTERNAL;
        goto out;
    }
    double t0 = gcli_now();
    for (size_t done = 0; done < n; done += per_txn) {
        size_t m = n - done < per_txn ? n - done : per_txn;
        char name[32];
        for (size_t i = 0; i < m; i++)
            random_unit(&r, rows + i * (size_t)cfg->dim, cfg->dim);
        snprintf(name, sizeof name, "subject-%zu", done / per_txn);
        facenet_gallery_enrollment e = {NULL, name, NULL, "bench@0000000000000000", "synthetic",
                                        rows, m, NULL, 0};
        if (facenet_gallery_enroll(g, &e, NULL, &err) != FACENET_OK) {
            rc = gcli_report(&err);
            goto out;
        }
    }
    double enroll_s = gcli_now() - t0;
    facenet_gallery_close(g);
    g = NULL;
    t0 = gcli_now();
    if (facenet_gallery_open(path, key, NULL, 0, FACENET_GALLERY_INT8, &g, &err) != FACENET_OK) {
        rc = gcli_report(&err);
        goto out;
    }
    double open_s = gcli_now() - t0;
    facenet_gallery_stats st;
    if (facenet_gallery_stats_get(g, &st, &err) != FACENET_OK) {
        rc = gcli_report(&err);
        goto out;
    }
    if (results)
        json_array_append_new(results,
                              json_pack("{s:s,s:I,s:f,s:f,s:f,s:I}", "store", "sqlite", "templates",
                                        (json_int_t)n, "enroll_s", enroll_s, "enroll_per_s",
                                        (double)n / enroll_s, "open_s", open_s, "file_bytes",
                                        (json_int_t)st.file_bytes + (json_int_t)st.wal_bytes));
    else
        printf("\nstore: enrolled %zu templates (%zu per transaction, synchronous=FULL) in "
               "%.2f s (%.0f/s); reopened and decrypted in %.2f s; file %.1f MiB\n",
               n, per_txn, enroll_s, (double)n / enroll_s, open_s,
               (double)(st.file_bytes + st.wal_bytes) / (1 << 20));
out:
    facenet_gallery_close(g);
    sodium_memzero(key, sizeof key);
    free(rows);
    {
        char side[4200];
        unlink(path);
        snprintf(side, sizeof side, "%s-wal", path);
        unlink(side);
        snprintf(side, sizeof side, "%s-shm", path);
        unlink(side);
    }
    return rc;
}

int cmd_gallery_bench(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"sizes", required_argument, NULL, 's'},   {"dim", required_argument, NULL, 'd'},
        {"queries", required_argument, NULL, 'q'}, {"threads", required_argument, NULL, 't'},
        {"store", required_argument, NULL, 'S'},   {"dir", required_argument, NULL, 'D'},
        {"seed", required_argument, NULL, 'r'},    {"json", no_argument, NULL, 'j'},
        {"help", no_argument, NULL, 'h'},          {NULL, 0, NULL, 0}};
    bench_cfg cfg = {192, 1000, 5, 0, 1};
    const char *sizes = "10000,100000,1000000", *dir = ".";
    long v, store = 0;
    int c, json = 0, rc = CLI_EXIT_OK;

    optind = 1;
    while ((c = getopt_long(argc, argv, "hk:", longopts, NULL)) != -1) {
        switch (c) {
        case 's': sizes = optarg; break;
        case 'D': dir = optarg; break;
        case 'j': json = 1; break;
        case 'd':
        case 'q':
        case 'k':
        case 't':
        case 'S':
        case 'r': {
            long lo = c == 't' || c == 'S' || c == 'r' ? 0 : 1;
            long hi = c == 'd' ? 4096 : c == 'k' ? GALLERY_MAX_K : c == 't' ? 16 : 100000000;
            if (cli_parse_long(optarg, lo, hi, &v) != 0) {
                fprintf(stderr, "facenet gallery bench: bad value '%s'\n", optarg);
                return CLI_EXIT_USAGE;
            }
            if (c == 'd')
                cfg.dim = (int)v;
            else if (c == 'q')
                cfg.queries = (int)v;
            else if (c == 'k')
                cfg.k = (int)v;
            else if (c == 't')
                cfg.threads = (int)v;
            else if (c == 'S')
                store = v;
            else
                cfg.seed = (uint64_t)v;
            break;
        }
        case 'h': fputs(bench_usage, stdout); return CLI_EXIT_OK;
        default: fputs(bench_usage, stderr); return CLI_EXIT_USAGE;
        }
    }
    if (optind != argc) {
        fputs(bench_usage, stderr);
        return CLI_EXIT_USAGE;
    }
    if (sodium_init() < 0)
        return CLI_EXIT_INTERNAL;
    json_t *results = json ? json_array() : NULL;
    if (!json)
        printf("%10s %4s %3s | %31s | %40s | %40s | %15s\n%10s %4s %3s | %7s %7s %7s %7s | "
               "%7s %7s %7s %7s %8s | %7s %7s %7s %7s %8s | %7s %7s\n",
               "templates", "dim", "k", "float (exact), ms", "int8 scan + float rerank, ms",
               "int4 scan + float rerank, ms", "memory MiB", "", "", "", "median", "p95", "p99",
               "cpu", "median", "p95", "p99", "cpu", "top-1", "median", "p95", "p99", "cpu",
               "top-1", "all", "RSS");
    const char *p = sizes;
    while (*p && rc == CLI_EXIT_OK) {
        char *end;
        long n = strtol(p, &end, 10);
        if (end == p || n < 1 || n > 100000000 || (*end && *end != ',')) {
            fprintf(stderr, "facenet gallery bench: bad --sizes '%s'\n", sizes);
            rc = CLI_EXIT_USAGE;
            break;
        }
        rc = bench_size((size_t)n, &cfg, results);
        p = *end ? end + 1 : end;
    }
    if (rc == CLI_EXIT_OK && store > 0)
        rc = bench_store((size_t)store, &cfg, dir, results);
    if (results) {
        json_t *doc = json_pack("{s:i,s:o}", "cpus", (int)sysconf(_SC_NPROCESSORS_ONLN),
                                "results", results);
        json_dumpf(doc, stdout, JSON_INDENT(2) | JSON_REAL_PRECISION(6));
        fputc('\n', stdout);
        json_decref(doc);
    }
    return rc;
}
