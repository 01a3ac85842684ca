/*
 * cluster.c - grouping unlabelled faces: Chinese Whispers and DBSCAN over
 * the graph of face pairs whose cosine similarity reaches a threshold.
 *
 * Both methods start from the same graph: every pair is compared once
 * (n^2 / 2 dot products of unit vectors, written so the compiler
 * vectorises them, with an AVX2 build picked at run time on x86-64), and
 * pairs at or above the threshold become weighted edges in a compressed
 * adjacency list.
 *
 *  - Chinese Whispers (Biemann 2006; dlib's chinese_whispers, which
 *    face_recognition uses): every face starts in its own cluster; in
 *    random order, each takes the label with the largest total edge weight
 *    among its neighbours, until nothing changes.
 *  - DBSCAN (Ester et al. 1996): a face with at least min_samples linked
 *    faces (itself included) is a core point; clusters are the connected
 *    core points plus the faces they link to; the rest is noise.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "common/error.h"
#include "facenet/facenet.h"

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define CLUSTER_X86 1
#endif

#define CLUSTER_MAX_N 200000
#define CLUSTER_MAX_EDGES ((size_t)200 * 1000 * 1000)
#define LANES 16

void facenet_cluster_options_default(facenet_cluster_options *o)
{
    memset(o, 0, sizeof *o);
    o->method = FACENET_CLUSTER_CHINESE_WHISPERS;
    o->threshold = NAN;
    o->min_samples = 3;
    o->iterations = 100;
    o->seed = 1;
}

/* ---- the graph --------------------------------------------------------------------- */

typedef struct edge {
    uint32_t a, b;
    float w;
} edge;

typedef struct edge_list {
    edge *e;
    size_t n, cap;
} edge_list;

typedef struct graph {
    size_t n;
    size_t *start; /* n + 1 offsets into nbr / w */
    uint32_t *nbr;
    float *w;
} graph;

static int push_edge(edge_list *l, uint32_t a, uint32_t b, float w)
{
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 4096;
        if (cap > CLUSTER_MAX_EDGES)
            cap = CLUSTER_MAX_EDGES;
        if (l->n == cap)
            return -1;
        edge *e = realloc(l->e, cap * sizeof *e);
        if (!e)
            return -1;
        l->e = e;
        l->cap = cap;
    }
    l->e[l->n].a = a;
    l->e[l->n].b = b;
    l->e[l->n].w = w;
    l->n++;
    return 0;
}

/* Similarities of row i with rows i+1..n-1, appended as edges. */
static inline __attribute__((always_inline)) int
link_row_body(const float *restrict v, size_t n, int dim, size_t i, float threshold,
              edge_list *out)
{
    const float *restrict a = v + i * (size_t)dim;
    int full = dim - dim % LANES;
    for (size_t j = i + 1; j < n; j++) {
        const float *restrict b = v + j * (size_t)dim;
        float acc[LANES] = {0};
        for (int d = 0; d < full; d += LANES)
            for (int k = 0; k < LANES; k++)
                acc[k] += a[d + k] * b[d + k];
        float s = 0;
        for (int d = full; d < dim; d++)
            s += a[d] * b[d];
        for (int k = 0; k < LANES; k++)
            s += acc[k];
        if (s >= threshold && push_edge(out, (uint32_t)i, (uint32_t)j, s) != 0)
            return -1;
    }
    return 0;
}

static int link_row_base(const float *v, size_t n, int dim, size_t i, float t, edge_list *out)
{
    return link_row_body(v, n, dim, i, t, out);
}

#ifdef CLUSTER_X86
__attribute__((target("avx2,fma"))) static int link_row_avx2(const float *v, size_t n, int dim,
                                                              size_t i, float t, edge_list *out)
{
    return link_row_body(v, n, dim, i, t, out);
}
#endif

static void graph_free(graph *g)
{
    free(g->start);
    free(g->nbr);
    free(g->w);
    memset(g, 0, sizeof *g);
}

static facenet_status build_graph(const float *v, size_t n, int dim, float threshold, graph *g,
                                  facenet_error *err)
{
    edge_list l = {NULL, 0, 0};
    int (*link_row)(const float *, size_t, int, size_t, float, edge_list *) = link_row_base;
#ifdef CLUSTER_X86
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))
        link_row = link_row_avx2;
#endif
    memset(g, 0, sizeof *g);
    for (size_t i = 0; i < n; i++)
        if (link_row(v, n, dim, i, threshold, &l) != 0) {
            free(l.e);
            return fn_fail(err, l.n >= CLUSTER_MAX_EDGES ? FACENET_ERR_LIMIT : FACENET_ERR_NO_MEMORY,
                           "cluster: more than %zu linked pairs at threshold %.3f: raise the "
                           "threshold",
                           l.n, (double)threshold);
        }
    g->n = n;
    g->start = calloc(n + 1, sizeof *g->start);
    g->nbr = malloc((2 * l.n + 1) * sizeof *g->nbr);
    g->w = malloc((2 * l.n + 1) * sizeof *g->w);
    if (!g->start || !g->nbr || !g->w) {
        free(l.e);
        graph_free(g);
        return fn_fail(err, FACENET_ERR_NO_MEMORY, "cluster: out of memory for %zu links", l.n);
    }
    for (size_t e = 0; e < l.n; e++) {
        g->start[l.e[e].a + 1]++;
        g->start[l.e[e].b + 1]++;
    }
    for (size_t i = 0; i < n; i++)
        g->start[i + 1] += g->start[i];
    size_t *fill = malloc((n + 1) * sizeof *fill);
    if (!fill) {
        free(l.e);
        graph_free(g);
        return fn_fail(err, FACENET_ERR_NO_MEMORY, "cluster: out of memory");
    }
    memcpy(fill, g->start, (n + 1) * sizeof *fill);
    for (size_t e = 0; e < l.n; e++) {
        size_t a = l.e[e].a, b = l.e[e].b;
        g->nbr[fill[a]] = (uint32_t)b;
        g->w[fill[a]++] = l.e[e].w;
        g->nbr[fill[b]] = (uint32_t)a;
        g->w[fill[b]++] = l.e[e].w;
    }
    free(fill);
    free(l.e);
    return FACENET_OK;
}

/* ---- Chinese Whispers ---------------------------------------------------------------- */

static uint64_t next_random(uint64_t *s)
{
    *s ^= *s >> 12;
    *s ^= *s << 25;
    *s ^= *s >> 27;
    return *s * 2685821657736338717ull;
}

static facenet_status chinese_whispers(const graph *g, int iterations, uint64_t seed,
                                       int *labels, facenet_error *err)
{
    size_t n = g->n;
    size_t *order = malloc(n * sizeof *order);
    float *acc = calloc(n, sizeof *acc);
    int *touched = malloc(n * sizeof *touched);
    uint64_t state = seed ? seed : 1;
    if (!order || !acc || !touched) {
        free(order);
        free(acc);
        free(touched);
        return fn_fail(err, FACENET_ERR_NO_MEMORY, "cluster: out of memory");
    }
    for (size_t i = 0; i < n; i++) {
        labels[i] = (int)i;
        order[i] = i;
    }
    for (int it = 0; it < iterations; it++) {
        size_t changed = 0;
        for (size_t i = n; i > 1; i--) { /* Fisher-Yates */
            size_t j = (size_t)(next_random(&state) % i);
            size_t t = order[i - 1];
            order[i - 1] = order[j];
            order[j] = t;
        }
        for (size_t k = 0; k < n; k++) {
            size_t node = order[k];
            if (g->start[node] == g->start[node + 1])
                continue; /* alone: keeps its own label */
            size_t n_touched = 0;
            /* Its neighbours vote, not itself: a self vote of weight 1 would
             * outweigh any single neighbour and nothing would ever merge. */
            for (size_t e = g->start[node]; e < g->start[node + 1]; e++) {
                int l = labels[g->nbr[e]];
                if (acc[l] == 0.0f)
                    touched[n_touched++] = l;
                acc[l] += g->w[e];
            }
            if (n_touched == 0)
                continue;
            int best = touched[0];
            for (size_t t = 1; t < n_touched; t++) {
                int l = touched[t];
                if (acc[l] > acc[best] || (l < best && acc[l] == acc[best]))
                    best = l;
            }
            for (size_t t = 0; t < n_touched; t++)
                acc[touched[t]] = 0.0f;
            if (best != labels[node]) {
                labels[node] = best;
                changed++;
            }
        }
        if (changed == 0)
            break;
    }
    free(order);
    free(acc);
    free(touched);
    return FACENET_OK;
}

/* ---- DBSCAN ---------------------------------------------------------------------------- */

static facenet_status dbscan(const graph *g, int min_samples, int *labels, facenet_error *err)
{
    enum { UNSEEN = -2, NOISE = -1 };
    size_t n = g->n, *queue = malloc((n ? n : 1) * sizeof *queue);
    int cluster = 0;
    if (!queue)
        return fn_fail(err, FACENET_ERR_NO_MEMORY, "cluster: out of memory");
    for (size_t i = 0; i < n; i++)
        labels[i] = UNSEEN;
    for (size_t i = 0; i < n; i++) {
        if (labels[i] != UNSEEN || g->start[i + 1] - g->start[i] + 1 < (size_t)min_samples)
            continue;
        size_t head = 0, tail = 0;
        labels[i] = cluster;
        queue[tail++] = i;
        while (head < tail) {
            size_t p = queue[head++];
            if (g->start[p + 1] - g->start[p] + 1 < (size_t)min_samples)
                continue; /* a border point: in the cluster, does not extend it */
            for (size_t e = g->start[p]; e < g->start[p + 1]; e++) {
                size_t q = g->nbr[e];
                if (labels[q] == UNSEEN || labels[q] == NOISE) {
                    if (labels[q] == UNSEEN)
                        queue[tail++] = q;
                    labels[q] = cluster;
                }
            }
        }
        cluster++;
    }
    for (size_t i = 0; i < n; i++)
        if (labels[i] == UNSEEN)
            labels[i] = NOISE;
    free(queue);
    return FACENET_OK;
}

/* ---- numbering by size --------------------------------------------------------------------- */

typedef struct cluster_size {
    int label;
    size_t size, first;
} cluster_size;

static int by_size(const void *a, const void *b)
{
    const cluster_size *x = a, *y = b;
    if (x->size != y->size)
        return x->size > y->size ? -1 : 1;
    return x->first < y->first ? -1 : x->first > y->first;
}

/* Renumber labels 0.. by decreasing cluster size (ties: first member). */
static facenet_status renumber(int *labels, size_t n, size_t *n_clusters, facenet_error *err)
{
    cluster_size *c = calloc(n ? n : 1, sizeof *c);
    int *map = malloc((n ? n : 1) * sizeof *map);
    size_t k = 0;
    if (!c || !map) {
        free(c);
        free(map);
        return fn_fail(err, FACENET_ERR_NO_MEMORY, "cluster: out of memory");
    }
    for (size_t i = 0; i < n; i++)
        map[i] = -1;
    for (size_t i = 0; i < n; i++) {
        if (labels[i] < 0)
            continue;
        int l = labels[i];
        if (map[l] < 0) {
            map[l] = (int)k;
            c[k].label = l;
            c[k].first = i;
            k++;
        }
        c[map[l]].size++;
    }
    qsort(c, k, sizeof *c, by_size);
    for (size_t j = 0; j < k; j++)
        map[c[j].label] = (int)j;
    for (size_t i = 0; i < n; i++)
        if (labels[i] >= 0)
            labels[i] = map[labels[i]];
    *n_clusters = k;
    free(c);
    free(map);
    return FACENET_OK;
}

facenet_status facenet_cluster(const float *embeddings, size_t n, int dim,
                               const facenet_cluster_options *options, int *labels,
                               size_t *n_clusters, facenet_error *err)
{
    facenet_cluster_options o;
    graph g;
    facenet_status st;

    if (!n_clusters || (n > 0 && (!embeddings || !labels)) || dim < 1 || dim > 4096)
        return fn_fail(err, FACENET_ERR_INVALID_ARGUMENT, "cluster: missing argument or bad "
                                                          "dimension");
    *n_clusters = 0;
    if (options)
        o = *options;
    else
        facenet_cluster_options_default(&o);
    if (!(o.threshold >= -1 && o.threshold <= 1))
        return fn_fail(err, FACENET_ERR_INVALID_ARGUMENT,
                       "cluster: the threshold must be a cosine similarity in [-1, 1]");
    if (o.method != FACENET_CLUSTER_CHINESE_WHISPERS && o.method != FACENET_CLUSTER_DBSCAN)
        return fn_fail(err, FACENET_ERR_INVALID_ARGUMENT, "cluster: unknown method %d",
                       (int)o.method);
    if (o.min_samples < 1 || o.iterations < 1 || o.iterations > 100000)
        return fn_fail(err, FACENET_ERR_INVALID_ARGUMENT,
                       "cluster: min_samples and iterations must be positive");
    if (n > CLUSTER_MAX_N)
        return fn_fail(err, FACENET_ERR_LIMIT, "cluster: %zu faces; at most %d", n, CLUSTER_MAX_N);
    if (n == 0)
        return FACENET_OK;
    float *v = malloc(n * (size_t)dim * sizeof *v);
    if (!v)
        return fn_fail(err, FACENET_ERR_NO_MEMORY, "cluster: out of memory");
    memcpy(v, embeddings, n * (size_t)dim * sizeof *v);
    for (size_t i = 0; i < n; i++) {
        float *row = v + i * (size_t)dim;
        double ss = 0;
        for (int d = 0; d < dim; d++)
            ss += (double)row[d] * row[d];
        if (!(ss > 0) || !isfinite(ss)) {
            free(v);
            return fn_fail(err, FACENET_ERR_INVALID_ARGUMENT,
                           "cluster: embedding %zu is zero or not finite", i);
        }
        for (int d = 0; d < dim; d++)
            row[d] = (float)(row[d] / sqrt(ss));
    }
    st = build_graph(v, n, dim, o.threshold, &g, err);
    free(v);
    if (st != FACENET_OK)
        return st;
    if (o.method == FACENET_CLUSTER_CHINESE_WHISPERS)
        st = chinese_whispers(&g, o.iterations, o.seed, labels, err);
    else
        st = dbscan(&g, o.min_samples, labels, err);
    graph_free(&g);
    if (st == FACENET_OK)
        st = renumber(labels, n, n_clusters, err);
    return st;
}
