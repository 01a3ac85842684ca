/*
 * avx2_int8.c - the "avx2-int8" backend: 8-bit integer convolution and
 * fully connected layers for x86-64 with AVX2 (no VNNI needed).
 *
 * Why this scheme (docs/PERFORMANCE.md, "The int8 path"): on this Zen 3
 * CPU `vpmaddubsw` (u8 x s8, 32 products per instruction) followed by
 * `vpmaddwd` with ones and `vpaddd` sustains about 30 MAC per cycle,
 * twice the fp32 FMA rate; s16 x s16 `vpmaddwd` + `vpaddd` only about 19.
 * The two multiplies are the bound, so the kernel saves one in four
 * (round 3): it adds two k-steps' `vpmaddubsw` results in 16 bits
 * (`vpaddw`) before one `vpmaddwd`.
 *
 * Saturation: `vpmaddubsw` adds its two products with signed 16-bit
 * saturation and `vpaddw` wraps around at 16 bits; neither may ever
 * overflow, so that the int32 sums are exact. Activations keep 8 bits
 * (u8, 0..255) and weights at most 7 (-63..63): one `vpmaddubsw` lane is
 * at most 2 * 255 * 63 = 32130 < 32767. A paired lane adds four
 * products, 4 * 255 * 63 in the worst case, so the weights are made to
 * fit instead: at load, quantise_channel checks, for each output channel
 * and each 16-bit lane of every pair of steps the kernel will add, that
 * the four weight codes meeting there have positive codes summing to at
 * most PAIR_CODE_SUM = 128 and negative ones to at least -128, so the
 * lane stays within 255 * 128 = 32640. A channel that fails is coded
 * again with a narrower range (62, 61, ...; 32 always fits), which only
 * channels with several large weights meeting in one lane need: codes
 * keep 8-bit activations everywhere, and the narrower weights cost far
 * less than a bit of activations would. (Tried first: 7-bit activations,
 * 0..127, with 7-bit weights moved an MTCNN box by 13% of the face's
 * width on the demo photos against 4% at 8 bits, and lowered the mean
 * MobileFaceNet cosine to fp32 on 200 LFW faces from 0.99932 to 0.99899;
 * 6-bit weights everywhere gave a lowest demo-face cosine of 0.988.)
 *
 * Quantisation:
 *   - weights (at load): symmetric, per output channel, w ~ sw[o] * q,
 *     q in -63..63 (or narrower, above); packed in panels of 16 output
 *     channels, 4 consecutive k of one channel per 32-bit lane
 *     ([k/4][16][4] bytes per panel);
 *   - activations (per call): asymmetric, x ~ sa * (u - zp), u in 0..255,
 *     the range widened to include 0 so that zp is an integer and zero
 *     padding is exact. 1x1 convolutions and fully connected layers
 *     quantise each row of the GEMM (one input pixel, one sample) with its
 *     own range, as they read it; KxK convolutions
 *     quantise their input once, one range per sample, channels stored
 *     rounded up to 4 (so a window row is whole 4-byte steps), and the
 *     kernel reads each window in place, row by row, from those bytes;
 *     only tiles whose windows hang over the padding gather them into a
 *     buffer. Either way a code depends only on its own pixel or sample,
 *     so a result never depends on the batch, the block or the thread
 *     that computed it: integer sums are exact and the epilogue is the
 *     same float arithmetic everywhere.
 *   - epilogue: y = sa * sw[o] * (sum u*q - zp * sum_k q) + bias[o], then
 *     the activation and a fused PReLU, in registers, written as float.
 *
 * Depthwise convolution and pooling (memory bound, a small share of the
 * time) run on the fp32 "avx2" kernels, called through nn_backend_avx2,
 * as do layers with at most NARROW_MAX outputs (MTCNN's box and score
 * heads: tiny, and the values the detector thresholds), KxK convolutions
 * of fewer than KXK_MIN_IN_C input channels (the first layer of every
 * network, P-Net's second) and fully connected layers longer than
 * FC_MAX_K. Such layers keep an avx2 prepared blob, and the first layers
 * of P-Net, R-Net and O-Net run fused with their max pool as on avx2
 * (nn_fused_avx2_int8).
 */
#include "nn/backend.h"
#include "nn/kernels/avx2_common.h"

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>


#define Q_MR 4   /* rows per micro tile (q_kernel_4x16)      */
#define Q_NR 16  /* output channels per panel                */
#define Q_MC 96  /* rows per task block                      */
/* Code widths (see the top of the file): activations 0..A_MAX, weights
 * at most -W_MAX..W_MAX, and in each 16-bit lane of two paired steps the
 * positive weight codes sum to at most PAIR_CODE_SUM (the negative ones
 * likewise), which quantise_channel ensures. */
#define W_MAX 63
#define A_MAX 255
#define PAIR_CODE_SUM 128
_Static_assert(2 * A_MAX * W_MAX <= 32767, "vpmaddubsw pairs could saturate");
_Static_assert(A_MAX * PAIR_CODE_SUM <= 32767, "paired s16 sums could overflow");
#define NARROW_MAX 4
/* KxK convolutions with fewer input channels than this stay fp32. Even
 * with windows read in place they lose: K is tiny (9 to 36 codes, a
 * quarter of them padding for 3 channels), so the epilogue and the
 * quantisation outweigh the multiplies (measured, best of 30 in thread
 * CPU time: P-Net's 3 -> 10 at 0.6x the fp32 speed, 10 -> 16 at 0.8x,
 * R-Net's and O-Net's 3 -> 28/32 at 0.5x to 0.8x, MobileFaceNet's 3 -> 64
 * at 0.6x; 16 -> 32, 28 -> 48, 32 -> 64 at 1.3x to 1.8x). */
#define KXK_MIN_IN_C 16
/* Fully connected layers quantise their rows on the stack (the interface
 * gives them no scratch): Q_MR rows of at most this many inputs. */
#define FC_MAX_K 4096

typedef struct q_layer {
    nn_op op;
    int out_c, k_dim, k_pad, panels; /* k_pad: k_dim rounded up to 4 */
    /* KxK convolutions: input channels rounded up to 4, so that a window
     * row (KW pixels) is a whole number of 4-byte steps in the quantised
     * tensor; the padding channels have zero weights. 1x1 and FC: in_c. */
    int kw, in_c, in_c_pad;
    int8_t *w;       /* panels of [k_pad / 4][16][4]                */
    float *wscale;   /* [panels * 16], 0 past out_c                  */
    int32_t *qsum;   /* [panels * 16]: sum over k of the codes       */
    float *bias;     /* [panels * 16]                                */
    float *alpha;    /* [panels * 16] PReLU slopes, or NULL          */
    void *fp32;      /* avx2 blob for layers not run in int8, or NULL */
} q_layer;

static void q_release(void *prepared)
{
    q_layer *l = prepared;
    if (!l)
        return;
    if (l->fp32)
        nn_backend_avx2.release(l->fp32);
    free(l->w);
    free(l->wscale);
    free(l->qsum);
    free(l->bias);
    free(l->alpha);
    free(l);
}

/* 64-byte aligned, zeroed. */
static void *alloc_zeroed(size_t bytes)
{
    bytes = round_up(bytes + 1, 64);
    void *p = aligned_alloc(64, bytes);
    if (p)
        memset(p, 0, bytes);
    return p;
}

/* 1 if the kernel's paired steps cannot overflow s16 for the codes of
 * output channel `lane` of panel w when it pairs steps s and s + 1 for
 * every even s counted from each run of seg_steps steps (the last step of
 * an odd run goes alone): in each 16-bit lane the four codes that meet
 * (two per step) must have positive codes summing to at most
 * PAIR_CODE_SUM, negative ones to at least -PAIR_CODE_SUM, so that with
 * activations 0..A_MAX the lane stays within A_MAX * PAIR_CODE_SUM. */
static int pairs_fit(const int8_t *w, int lane, int steps, int seg_steps)
{
    for (int s0 = 0; s0 < steps; s0 += seg_steps)
        for (int s = s0; s + 1 < s0 + seg_steps && s + 1 < steps; s += 2)
            for (int half = 0; half < 2; half++) {
                int pos = 0, neg = 0;
                for (int t = 0; t < 2; t++)
                    for (int i = 0; i < 2; i++) {
                        const size_t at = (size_t)(s + t) * Q_NR * 4 + (size_t)lane * 4 +
                                          (size_t)(half * 2 + i);
                        const int q = (int)w[at];
                        pos += q > 0 ? q : 0;
                        neg += q < 0 ? -q : 0;
                    }
                if (pos > PAIR_CODE_SUM || neg > PAIR_CODE_SUM)
                    return 0;
            }
    return 1;
}

/* Channel o's weights as codes -top..top into its panel; returns the sum
 * of the codes. */
static int32_t code_channel(const float *src, const q_layer *l, int o, float peak, int top)
{
    int8_t *panel = l->w + (size_t)(o / Q_NR) * l->k_pad * Q_NR;
    const int lane = o % Q_NR;
    const int src_k = l->k_dim / l->in_c_pad * l->in_c;
    const float inv = peak > 0.0f ? (float)top / peak : 0.0f;
    int32_t sum = 0;
    for (int k = 0; k < src_k; k++) {
        long q = lrintf(src[k] * inv);
        q = q > top ? top : q < -top ? -top : q;
        /* tap k / in_c, channel k % in_c: at tap * in_c_pad + channel */
        const int kk = k / l->in_c * l->in_c_pad + k % l->in_c;
        panel[(size_t)(kk / 4) * Q_NR * 4 + (size_t)lane * 4 + kk % 4] = (int8_t)q;
        sum += (int32_t)q;
    }
    return sum;
}

/* Quantise output channel o's weights into its panel (an all-zero channel
 * gets scale 0 and zero codes): in -W_MAX..W_MAX when the kernel's paired
 * steps fit (pairs_fit, for the pairings this layer's kernel calls use:
 * whole rows of k_pad / 4 steps, and a KxK window's rows read in place),
 * else in the widest narrower range that fits. Most channels keep 63; a
 * channel with a few large weights that meet in one lane gets a coarser
 * code, which costs it less than a bit of activation width would cost
 * every layer (see the top of the file). |code| <= PAIR_CODE_SUM / 4
 * always fits, so the loop ends. */
static void quantise_channel(const nn_layer_params *p, q_layer *l, int o)
{
    const float *src = p->weights + (size_t)o * p->kernel_h * p->kernel_w * p->in_c;
    const int8_t *panel = l->w + (size_t)(o / Q_NR) * l->k_pad * Q_NR;
    const int src_k = l->k_dim / l->in_c_pad * l->in_c;
    const int steps = l->k_pad / 4, window_steps = max_int(1, l->kw * l->in_c_pad / 4);
    float peak = 0.0f;
    for (int k = 0; k < src_k; k++)
        peak = fmaxf(peak, fabsf(src[k]));
    int top = W_MAX;
    int32_t sum = code_channel(src, l, o, peak, top);
    while (top > PAIR_CODE_SUM / 4 && !(pairs_fit(panel, o % Q_NR, steps, steps) &&
                                        pairs_fit(panel, o % Q_NR, steps, window_steps)))
        sum = code_channel(src, l, o, peak, --top);
    l->wscale[o] = peak / (float)top;
    l->qsum[o] = sum;
}

/* Convolutions that keep an avx2 blob (q_prepare): narrow ones, and KxK
 * ones of few input channels. */
static int conv_stays_fp32(int kernel_h, int kernel_w, int in_c, int out_c)
{
    return out_c <= NARROW_MAX || (kernel_h * kernel_w > 1 && in_c < KXK_MIN_IN_C);
}

static void *q_prepare(const nn_layer_params *p)
{
    q_layer *l = calloc(1, sizeof *l);
    if (!l)
        return NULL;
    l->op = p->op;
    l->out_c = p->out_c;
    l->kw = p->kernel_w;
    l->in_c = l->in_c_pad = p->in_c;
    if (p->op == NN_OP_CONV2D && p->kernel_h * p->kernel_w > 1)
        l->in_c_pad = (int)round_up((size_t)p->in_c, 4);
    l->k_dim = p->kernel_h * p->kernel_w * l->in_c_pad;
    if (p->op == NN_OP_DEPTHWISE_CONV2D ||
        (p->op == NN_OP_FULLY_CONNECTED && (p->out_c <= NARROW_MAX || l->k_dim > FC_MAX_K)) ||
        (p->op == NN_OP_CONV2D && conv_stays_fp32(p->kernel_h, p->kernel_w, p->in_c, p->out_c))) {
        l->fp32 = nn_backend_avx2.prepare(p);
        if (!l->fp32) {
            free(l);
            return NULL;
        }
        return l;
    }
    l->k_pad = (int)round_up((size_t)l->k_dim, 4);
    l->panels = (p->out_c + Q_NR - 1) / Q_NR;
    const size_t padded = (size_t)l->panels * Q_NR;
    l->w = alloc_zeroed(padded * (size_t)l->k_pad);
    l->wscale = alloc_zeroed(padded * sizeof(float));
    l->qsum = alloc_zeroed(padded * sizeof(int32_t));
    l->bias = alloc_zeroed(padded * sizeof(float));
    if (p->prelu)
        l->alpha = alloc_zeroed(padded * sizeof(float));
    if (!l->w || !l->wscale || !l->qsum || !l->bias || (p->prelu && !l->alpha)) {
        q_release(l);
        return NULL;
    }
    for (int o = 0; o < p->out_c; o++)
        quantise_channel(p, l, o);
    if (p->bias)
        memcpy(l->bias, p->bias, (size_t)p->out_c * sizeof(float));
    if (p->prelu)
        memcpy(l->alpha, p->prelu, (size_t)p->out_c * sizeof(float));
    return l;
}


/* Input channels as the quantised tensor of a convolution stores them
 * (q_layer.in_c_pad; the same rule as q_prepare). */
static int stored_channels(int kernel_h, int kernel_w, int in_c)
{
    return kernel_h * kernel_w > 1 ? (int)round_up((size_t)in_c, 4) : in_c;
}

/* Per thread, in floats (64-byte multiples): the codes of one block of
 * rows, their scales and zero points. */
static size_t thread_scratch_floats(const nn_conv_geom *g)
{
    const size_t k_dim = (size_t)g->kernel_h * g->kernel_w *
                         stored_channels(g->kernel_h, g->kernel_w, g->in_c);
    const size_t bytes = Q_MC * round_up(k_dim, 4) + Q_MC * (sizeof(float) + sizeof(int32_t));
    return round_up(bytes, 64) / sizeof(float);
}

/* KxK convolutions first quantise their whole input, one scale and zero
 * point per sample (quantising each window instead costs more than the
 * layer's multiplies when it has few output channels, as in P-Net): the
 * codes, then the scales, then the zero points, in floats. */
static size_t sample_scratch_floats(const nn_conv_geom *g)
{
    if (conv_is_pointwise(g))
        return 0;
    const size_t c = (size_t)stored_channels(g->kernel_h, g->kernel_w, g->in_c);
    const size_t bytes = round_up((size_t)g->n * g->in_h * g->in_w * c, 64) +
                         round_up((size_t)g->n * (sizeof(float) + sizeof(int32_t)), 64);
    return bytes / sizeof(float);
}

static size_t q_conv2d_scratch(const nn_conv_geom *g, int threads)
{
    /* The prepared blob is not known here: enough for either path. */
    const size_t fp32 = nn_backend_avx2.conv2d_scratch(g, threads);
    const size_t int8 = sample_scratch_floats(g) + (size_t)threads * thread_scratch_floats(g);
    return fp32 > int8 ? fp32 : int8;
}

#if HAVE_AVX2

static int q_available(void)
{
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
}

/* ---- activation quantisation ------------------------------------------------ */


/* Widen [lo, hi] to cover x[0..n). Masked-off lanes load as 0, which the
 * range always includes. */
AVX2_TARGET static inline void range_update(const float *x, int n, __m256 *lo, __m256 *hi)
{
    int k = 0;
    for (; k + 8 <= n; k += 8) {
        const __m256 v = _mm256_loadu_ps(x + k);
        *lo = _mm256_min_ps(*lo, v);
        *hi = _mm256_max_ps(*hi, v);
    }
    if (k < n) {
        const __m256 v = _mm256_maskload_ps(x + k, lane_mask(n - k));
        *lo = _mm256_min_ps(*lo, v);
        *hi = _mm256_max_ps(*hi, v);
    }
}

AVX2_TARGET static inline float hmin(__m256 v)
{
    __m128 h = _mm_min_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    h = _mm_min_ps(h, _mm_movehl_ps(h, h));
    return _mm_cvtss_f32(_mm_min_ss(h, _mm_movehdup_ps(h)));
}

AVX2_TARGET static inline float hmax(__m256 v)
{
    __m128 h = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    h = _mm_max_ps(h, _mm_movehl_ps(h, h));
    return _mm_cvtss_f32(_mm_max_ss(h, _mm_movehdup_ps(h)));
}

/* 8 codes from 8 floats: round(x * inv) + z, clamped to 0..255 by the
 * saturating packs, in the low 8 bytes. _mm256_cvtps_epi32 rounds to
 * nearest even. */
AVX2_TARGET static inline uint64_t codes8(__m256 x, __m256 inv, __m256i z)
{
    const __m256i v = _mm256_add_epi32(_mm256_cvtps_epi32(_mm256_mul_ps(x, inv)), z);
    const __m128i w = _mm_packs_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
    return (uint64_t)_mm_cvtsi128_si64(_mm_packus_epi16(w, w));
}

/* Codes of x[0..n) into q[0..n). */
AVX2_TARGET static inline void quantise_run(const float *x, int n, __m256 inv, __m256i z,
                                            uint8_t *q)
{
    const __m256i order = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
    int k = 0;
    for (; k + 32 <= n; k += 32) {
        const __m256i a = _mm256_add_epi32(_mm256_cvtps_epi32(_mm256_mul_ps(_mm256_loadu_ps(x + k), inv)), z);
        const __m256i b = _mm256_add_epi32(_mm256_cvtps_epi32(_mm256_mul_ps(_mm256_loadu_ps(x + k + 8), inv)), z);
        const __m256i c = _mm256_add_epi32(_mm256_cvtps_epi32(_mm256_mul_ps(_mm256_loadu_ps(x + k + 16), inv)), z);
        const __m256i d = _mm256_add_epi32(_mm256_cvtps_epi32(_mm256_mul_ps(_mm256_loadu_ps(x + k + 24), inv)), z);
        /* Saturating packs clamp to 0..255; the permute undoes their lane
         * interleaving. */
        const __m256i ab = _mm256_packs_epi32(a, b), cd = _mm256_packs_epi32(c, d);
        const __m256i bytes = _mm256_permutevar8x32_epi32(_mm256_packus_epi16(ab, cd), order);
        _mm256_storeu_si256((__m256i *)(void *)(q + k), bytes);
    }
    for (; k + 8 <= n; k += 8) {
        const uint64_t c8 = codes8(_mm256_loadu_ps(x + k), inv, z);
        memcpy(q + k, &c8, 8);
    }
    if (k < n) {
        const uint64_t c8 = codes8(_mm256_maskload_ps(x + k, lane_mask(n - k)), inv, z);
        memcpy(q + k, &c8, (size_t)(n - k));
    }
}

/* Scale and zero point for the range [lo, hi] (which includes 0):
 * x ~ scale * (q - zp). An all-zero range (or NaN) gets scale 0 and zero
 * codes. Returns 0 in that case. */
static int range_params(float lo, float hi, float *scale, float *inv, int32_t *zp)
{
    if (!(hi > lo)) {
        *scale = *inv = 0.0f;
        *zp = 0;
        return 0;
    }
    *scale = (hi - lo) / (float)A_MAX;
    *inv = (float)A_MAX / (hi - lo);
    const long z = lrintf(-lo * *inv);
    *zp = (int32_t)(z < 0 ? 0 : z > A_MAX ? A_MAX : z);
    return 1;
}

/* Codes of `rows` rows of n floats (row r at x + r * lda) into q (row r
 * at q + r * k_pad, the tail zeroed), with their scales and zero points.
 * Rows go in groups of 8: the ranges first, then range_params' arithmetic
 * for the 8 rows at once (the same IEEE operations, so the same bits:
 * division is correctly rounded and vcvtps2dq rounds to nearest even as
 * lrintf does), then the codes. On MobileFaceNet's K = 64 and 128 rows the
 * two scalar divisions and the reductions were a large share of a row;
 * the group's rows (at most 8 x FC_MAX_K floats) stay in L1 between the
 * two passes. */
AVX2_TARGET static void quantise_rows(const float *x, size_t lda, int rows, int n, int k_pad,
                                      uint8_t *q, float *scale, int32_t *zp)
{
    for (int r0 = 0; r0 < rows; r0 += 8) {
        const int g = min_int(8, rows - r0);
        _Alignas(32) float lo[8] = {0}, hi[8] = {0}, inv[8];
        for (int r = 0; r < g; r++) {
            __m256 vlo = _mm256_setzero_ps(), vhi = _mm256_setzero_ps();
            range_update(x + (size_t)(r0 + r) * lda, n, &vlo, &vhi);
            lo[r] = hmin(vlo);
            hi[r] = hmax(vhi);
        }
        const __m256 vlo = _mm256_load_ps(lo), vhi = _mm256_load_ps(hi);
        const __m256 live = _mm256_cmp_ps(vhi, vlo, _CMP_GT_OQ); /* !(hi > lo): zero */
        const __m256 width = _mm256_sub_ps(vhi, vlo), top = _mm256_set1_ps((float)A_MAX);
        const __m256 vinv = _mm256_and_ps(live, _mm256_div_ps(top, width));
        const __m256 vscale = _mm256_and_ps(live, _mm256_div_ps(width, top));
        __m256i z = _mm256_cvtps_epi32(_mm256_mul_ps(_mm256_sub_ps(_mm256_setzero_ps(), vlo), vinv));
        z = _mm256_min_epi32(_mm256_max_epi32(z, _mm256_setzero_si256()), _mm256_set1_epi32(A_MAX));
        z = _mm256_and_si256(z, _mm256_castps_si256(live));
        _Alignas(32) int32_t vz[8];
        _mm256_store_ps(inv, vinv);
        _mm256_store_si256((__m256i *)(void *)vz, z);
        _Alignas(32) float vs[8];
        _mm256_store_ps(vs, vscale);
        const int live_rows = _mm256_movemask_ps(live);
        for (int r = 0; r < g; r++) {
            uint8_t *dst = q + (size_t)(r0 + r) * k_pad;
            scale[r0 + r] = vs[r];
            zp[r0 + r] = vz[r];
            if (!(live_rows >> r & 1)) { /* an all-zero (or NaN) range */
                memset(dst, 0, (size_t)k_pad);
                continue;
            }
            quantise_run(x + (size_t)(r0 + r) * lda, n, _mm256_set1_ps(inv[r]),
                         _mm256_set1_epi32(vz[r]), dst);
            if (k_pad > n)
                memset(dst + n, 0, (size_t)(k_pad - n)); /* meets zero weights */
        }
    }
}

/* ---- GEMM --------------------------------------------------------------------- */

/* The codes of a block of rows and what dequantises them. */
typedef struct q_rows {
    const uint8_t *q; /* row r at q + r * k_pad, unless in_place says */
    const float *scale;
    const int32_t *zp;
    /* KxK convolutions: where tile t (rows 4t..4t+3) reads. in_place[t]
     * set: row r's window is read from the quantised input at at[r], as
     * kernel_h runs of seg_steps 4-byte steps, seg_skip bytes apart (the
     * window lies inside the image); clear: from q (gathered). NULL for
     * 1x1 layers and FC. */
    const uint8_t *in_place;
    const uint8_t *const *at;
    int segs, seg_steps;
    long seg_skip;
} q_rows;

typedef struct q_out {
    float *c; /* the tile's first element */
    size_t ldc;
    int nr;   /* valid columns, 1..16 */
    nn_activation act;
} q_out;

/* Dequantise one vector of 8 sums and store it. */
AVX2_TARGET static inline void q_store(__m256i acc, float sa, int32_t zp, const q_layer *l,
                                       int col, nn_activation act, float *dst, int valid)
{
    const __m256i corr = _mm256_mullo_epi32(_mm256_set1_epi32(zp),
                                            _mm256_load_si256((const __m256i *)(const void *)(l->qsum + col)));
    const __m256 scale = _mm256_mul_ps(_mm256_set1_ps(sa), _mm256_load_ps(l->wscale + col));
    __m256 v = _mm256_fmadd_ps(_mm256_cvtepi32_ps(_mm256_sub_epi32(acc, corr)), scale,
                               _mm256_load_ps(l->bias + col));
    v = finish(v, act, l->alpha ? l->alpha + col : NULL);
    if (valid >= 8) {
        _mm256_storeu_ps(dst, v);
    } else if (valid > 0) {
        float tmp[8];
        _mm256_storeu_ps(tmp, v);
        memcpy(dst, tmp, (size_t)valid * sizeof(float));
    }
}

/* A panel's epilogue constants for 16 columns, loaded once per tile
 * (the stores to c could alias them as far as the compiler knows). */
typedef struct q_cols {
    __m256i qs0, qs1;  /* sum over k of the weight codes */
    __m256 ws0, ws1;   /* weight scales                  */
    __m256 b0, b1;     /* bias                           */
    __m256 al0, al1;   /* PReLU slopes (if prelu)        */
    int prelu;
    nn_activation act;
} q_cols;

AVX2_TARGET static inline q_cols q_load_cols(const q_layer *l, int col, nn_activation act)
{
    q_cols k;
    k.qs0 = _mm256_load_si256((const __m256i *)(const void *)(l->qsum + col));
    k.qs1 = _mm256_load_si256((const __m256i *)(const void *)(l->qsum + col + 8));
    k.ws0 = _mm256_load_ps(l->wscale + col);
    k.ws1 = _mm256_load_ps(l->wscale + col + 8);
    k.b0 = _mm256_load_ps(l->bias + col);
    k.b1 = _mm256_load_ps(l->bias + col + 8);
    k.prelu = l->alpha != NULL;
    k.al0 = k.prelu ? _mm256_load_ps(l->alpha + col) : _mm256_setzero_ps();
    k.al1 = k.prelu ? _mm256_load_ps(l->alpha + col + 8) : _mm256_setzero_ps();
    k.act = act;
    return k;
}

/* The epilogue of one full row of 16 columns, straight from the kernel's
 * accumulators: q_store's arithmetic (the same bytes). On MobileFaceNet's
 * K = 64 layers the epilogue is a large share of a tile's time. */
AVX2_TARGET static inline void q_store_row(__m256i acc0, __m256i acc1, float scale, int32_t zp,
                                           const q_cols *k, float *dst)
{
    const __m256 zero = _mm256_setzero_ps(), six = _mm256_set1_ps(6.0f);
    const __m256i z = _mm256_set1_epi32(zp);
    const __m256 sa = _mm256_set1_ps(scale);
    __m256 v0 = _mm256_fmadd_ps(_mm256_cvtepi32_ps(_mm256_sub_epi32(acc0, _mm256_mullo_epi32(z, k->qs0))),
                                _mm256_mul_ps(sa, k->ws0), k->b0);
    __m256 v1 = _mm256_fmadd_ps(_mm256_cvtepi32_ps(_mm256_sub_epi32(acc1, _mm256_mullo_epi32(z, k->qs1))),
                                _mm256_mul_ps(sa, k->ws1), k->b1);
    if (k->act != NN_ACT_NONE) {
        v0 = _mm256_max_ps(v0, zero);
        v1 = _mm256_max_ps(v1, zero);
        if (k->act == NN_ACT_RELU6) {
            v0 = _mm256_min_ps(v0, six);
            v1 = _mm256_min_ps(v1, six);
        }
    }
    if (k->prelu) {
        v0 = _mm256_fmadd_ps(k->al0, _mm256_min_ps(v0, zero), _mm256_max_ps(v0, zero));
        v1 = _mm256_fmadd_ps(k->al1, _mm256_min_ps(v1, zero), _mm256_max_ps(v1, zero));
    }
    _mm256_storeu_ps(dst, v0);
    _mm256_storeu_ps(dst + 8, v1);
}

/* The int32 sums of a 4 x 16 tile over K: row r of A at a[r] (4 codes
 * per step), the panel at b (64 bytes per step), row r's sums to
 * acc[2r] (columns 0..7) and acc[2r + 1] (8..15);
 * segs runs of `steps` steps, `skip` bytes apart in A. Written in
 * assembly because gcc (12, -O3) spills accumulators of the intrinsics
 * version to the stack (it hoists every broadcast and vpmaddubsw of a step
 * before their adds), which halved the speed.
 *
 * Steps go in pairs, with the pair's 128 panel bytes in ymm8-11: per row,
 * vpbroadcastd of the first step's 4 codes, vpmaddubsw against both
 * halves of its panel step (u8 x s8 -> pairs in s16), the same for the
 * second step, vpaddw of the two steps' s16 pairs (which cannot overflow:
 * quantise_channel saw to it, see the top of the file), then one vpmaddwd
 * with ones (ymm12; -> s32) and vpaddd per 8 channels into the
 * accumulators ymm0-7: 6 multiplies per row and 8 codes instead of 8, on
 * the two multiply pipes that bound this loop. Broadcast in ymm13,
 * products in ymm13-15; with no register left to hold the second step's
 * broadcast it is loaded twice (with the panel in registers a row costs 3
 * loads per 6 multiplies). A run of an odd number of steps ends with one
 * step done alone (2 * 255 * 63 < 32768). Which steps pair (from the start
 * of each run) is what quantise_channel checks. */
AVX2_TARGET static inline __attribute__((always_inline)) void
q_kernel_4x16(const uint8_t *const a[4], const int8_t *b, int segs, int steps, long skip,
              __m256i acc[8])
{
    /* The accumulators leave the assembly in ymm0-7 as outputs, so that the
     * epilogue reads them from registers (no int32 store and reload). */
    register __m256i acc0 __asm__("ymm0"), acc1 __asm__("ymm1"), acc2 __asm__("ymm2"),
        acc3 __asm__("ymm3"), acc4 __asm__("ymm4"), acc5 __asm__("ymm5"), acc6 __asm__("ymm6"),
        acc7 __asm__("ymm7");
    static const int16_t ones[16] = {1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1};
    const uint8_t *a0 = a[0], *a1 = a[1], *a2 = a[2], *a3 = a[3];
    long n = 0, seg = segs;
    const long pairs = steps / 2, singles = steps % 2;
    if (steps <= 0)
        seg = 0;
#define Q_PAIR(ptr, acc0, acc1)                                \
    "vpbroadcastd (%[" ptr "]), %%ymm13\n\t"                   \
    "vpmaddubsw %%ymm8, %%ymm13, %%ymm14\n\t"                  \
    "vpmaddubsw %%ymm9, %%ymm13, %%ymm15\n\t"                  \
    "vpbroadcastd 4(%[" ptr "]), %%ymm13\n\t"                  \
    "vpmaddubsw %%ymm10, %%ymm13, %%ymm13\n\t"                 \
    "vpaddw %%ymm13, %%ymm14, %%ymm14\n\t"                     \
    "vpbroadcastd 4(%[" ptr "]), %%ymm13\n\t"                  \
    "vpmaddubsw %%ymm11, %%ymm13, %%ymm13\n\t"                 \
    "vpaddw %%ymm13, %%ymm15, %%ymm15\n\t"                     \
    "vpmaddwd %%ymm12, %%ymm14, %%ymm14\n\t"                   \
    "vpmaddwd %%ymm12, %%ymm15, %%ymm15\n\t"                   \
    "vpaddd %%ymm14, %%" acc0 ", %%" acc0 "\n\t"               \
    "vpaddd %%ymm15, %%" acc1 ", %%" acc1 "\n\t"
#define Q_ROW(ptr, acc0, acc1)                                 \
    "vpbroadcastd (%[" ptr "]), %%ymm13\n\t"                   \
    "vpmaddubsw %%ymm8, %%ymm13, %%ymm14\n\t"                  \
    "vpmaddubsw %%ymm9, %%ymm13, %%ymm15\n\t"                  \
    "vpmaddwd %%ymm12, %%ymm14, %%ymm14\n\t"                   \
    "vpmaddwd %%ymm12, %%ymm15, %%ymm15\n\t"                   \
    "vpaddd %%ymm14, %%" acc0 ", %%" acc0 "\n\t"               \
    "vpaddd %%ymm15, %%" acc1 ", %%" acc1 "\n\t"
    __asm__ volatile(
        "vpxor %%xmm0, %%xmm0, %%xmm0\n\t"
        "vpxor %%xmm1, %%xmm1, %%xmm1\n\t"
        "vpxor %%xmm2, %%xmm2, %%xmm2\n\t"
        "vpxor %%xmm3, %%xmm3, %%xmm3\n\t"
        "vpxor %%xmm4, %%xmm4, %%xmm4\n\t"
        "vpxor %%xmm5, %%xmm5, %%xmm5\n\t"
        "vpxor %%xmm6, %%xmm6, %%xmm6\n\t"
        "vpxor %%xmm7, %%xmm7, %%xmm7\n\t"
        "vmovdqu %[ones], %%ymm12\n\t"
        "test %[seg], %[seg]\n\t"
        "jle 2f\n\t"
        "3:\n\t"
        "mov %[pairs], %[n]\n\t"
        "test %[n], %[n]\n\t"
        "jz 4f\n\t"
        "1:\n\t"
        "vmovdqa (%[b]), %%ymm8\n\t"
        "vmovdqa 32(%[b]), %%ymm9\n\t"
        "vmovdqa 64(%[b]), %%ymm10\n\t"
        "vmovdqa 96(%[b]), %%ymm11\n\t"
        Q_PAIR("a0", "ymm0", "ymm1")
        Q_PAIR("a1", "ymm2", "ymm3")
        Q_PAIR("a2", "ymm4", "ymm5")
        Q_PAIR("a3", "ymm6", "ymm7")
        "add $8, %[a0]\n\t"
        "add $8, %[a1]\n\t"
        "add $8, %[a2]\n\t"
        "add $8, %[a3]\n\t"
        "sub $-128, %[b]\n\t"
        "dec %[n]\n\t"
        "jnz 1b\n\t"
        "4:\n\t"
        "mov %[singles], %[n]\n\t"
        "test %[n], %[n]\n\t"
        "jz 5f\n\t"
        "6:\n\t"
        "vmovdqa (%[b]), %%ymm8\n\t"
        "vmovdqa 32(%[b]), %%ymm9\n\t"
        Q_ROW("a0", "ymm0", "ymm1")
        Q_ROW("a1", "ymm2", "ymm3")
        Q_ROW("a2", "ymm4", "ymm5")
        Q_ROW("a3", "ymm6", "ymm7")
        "add $4, %[a0]\n\t"
        "add $4, %[a1]\n\t"
        "add $4, %[a2]\n\t"
        "add $4, %[a3]\n\t"
        "add $64, %[b]\n\t"
        "dec %[n]\n\t"
        "jnz 6b\n\t"
        "5:\n\t"
        /* next segment: the window's next row in the image */
        "add %[skip], %[a0]\n\t"
        "add %[skip], %[a1]\n\t"
        "add %[skip], %[a2]\n\t"
        "add %[skip], %[a3]\n\t"
        "dec %[seg]\n\t"
        "jnz 3b\n\t"
        "2:\n\t"
        : [a0] "+r"(a0), [a1] "+r"(a1), [a2] "+r"(a2), [a3] "+r"(a3), [b] "+r"(b),
          [n] "=&r"(n), [seg] "+r"(seg), "=x"(acc0), "=x"(acc1), "=x"(acc2), "=x"(acc3),
          "=x"(acc4), "=x"(acc5), "=x"(acc6), "=x"(acc7)
        : [ones] "m"(ones), [pairs] "m"(pairs), [singles] "m"(singles), [skip] "m"(skip)
        : "xmm8", "xmm9", "xmm10", "xmm11", "xmm12", "xmm13", "xmm14", "xmm15", "memory", "cc");
#undef Q_PAIR
#undef Q_ROW
    acc[0] = acc0;
    acc[1] = acc1;
    acc[2] = acc2;
    acc[3] = acc3;
    acc[4] = acc4;
    acc[5] = acc5;
    acc[6] = acc6;
    acc[7] = acc7;
}

/* One R x 16 tile (R = 1..4 rows from r0) of panel p over the whole K,
 * then the epilogue (k: the panel's constants, when its 16 columns are
 * all valid). A tile of fewer rows runs the 4-row kernel with its last
 * row repeated and drops the copies. */
AVX2_TARGET static inline __attribute__((always_inline)) void
q_micro(int R, const q_layer *l, int p, const q_rows *a, int r0, const q_out *o,
        const q_cols *k)
{
    __m256i acc[8];
    const uint8_t *rows[Q_MR];
    const int8_t *panel = l->w + (size_t)p * l->k_pad * Q_NR;
    if (a->in_place && a->in_place[r0 / Q_MR]) {
        for (int r = 0; r < Q_MR; r++)
            rows[r] = a->at[r0 + min_int(r, R - 1)];
        q_kernel_4x16(rows, panel, a->segs, a->seg_steps, a->seg_skip, acc);
    } else {
        for (int r = 0; r < Q_MR; r++)
            rows[r] = a->q + (size_t)(r0 + min_int(r, R - 1)) * l->k_pad;
        q_kernel_4x16(rows, panel, 1, l->k_pad / 4, 0, acc);
    }
    const float *scale = a->scale + r0;
    const int32_t *zp = a->zp + r0;
    if (k) {
        /* rows unrolled, so that the accumulators stay in registers */
        q_store_row(acc[0], acc[1], scale[0], zp[0], k, o->c);
        if (R > 1)
            q_store_row(acc[2], acc[3], scale[1], zp[1], k, o->c + o->ldc);
        if (R > 2)
            q_store_row(acc[4], acc[5], scale[2], zp[2], k, o->c + 2 * o->ldc);
        if (R > 3)
            q_store_row(acc[6], acc[7], scale[3], zp[3], k, o->c + 3 * o->ldc);
        return;
    }
    for (int r = 0; r < R; r++) {
        float *cr = o->c + (size_t)r * o->ldc;
        q_store(acc[2 * r], scale[r], zp[r], l, p * Q_NR, o->act, cr, o->nr);
        q_store(acc[2 * r + 1], scale[r], zp[r], l, p * Q_NR + 8, o->act, cr + 8, o->nr - 8);
    }
}

/* Rows [0, rows) of a quantised block times panels [p0, p1) into c (row
 * stride ldc, column 0 = output channel 0). Panels are the outer loop so
 * that a panel stays in L1 while the rows sweep it. */
AVX2_TARGET static void q_block(const q_layer *l, const q_rows *a, int rows, int p0, int p1,
                                float *c, size_t ldc, nn_activation act)
{
    for (int p = p0; p < p1; p++) {
        const int nr = min_int(Q_NR, l->out_c - p * Q_NR);
        const q_cols k = q_load_cols(l, p * Q_NR, act);
        for (int m = 0; m < rows; m += Q_MR) {
            const q_out o = {c + (size_t)m * ldc + (size_t)p * Q_NR, ldc, nr, act};
            q_micro(min_int(Q_MR, rows - m), l, p, a, m, &o, nr == Q_NR ? &k : NULL);
        }
    }
}

/* ---- tasks -------------------------------------------------------------------- */

typedef struct q_job {
    const q_layer *l;
    const nn_conv_geom *g; /* KxK convolution, or NULL: A is x with stride lda */
    const float *x;
    size_t lda;
    float *y;
    nn_activation act;
    int rows, block_rows, groups;
    float *scratch;
    size_t scratch_per_thread; /* floats */
    /* KxK: the input quantised per sample. */
    const uint8_t *qx;
    const float *sample_scale;
    const int32_t *sample_zp;
} q_job;

/* Codes of a whole sample of `pixels` x in_c floats into q, in_c_pad
 * bytes per pixel (the padding channels, which meet zero weights, get the
 * zero point), with one scale and zero point for the sample. */
AVX2_TARGET static void quantise_sample(const float *x, size_t pixels, int in_c, int in_c_pad,
                                        uint8_t *q, float *scale, int32_t *zp)
{
    __m256 lo = _mm256_setzero_ps(), hi = _mm256_setzero_ps();
    float inv;
    const size_t n = pixels * (size_t)in_c;
    const size_t chunk = (size_t)1 << 30; /* ints below */
    for (size_t k = 0; k < n; k += chunk)
        range_update(x + k, (int)(n - k < chunk ? n - k : chunk), &lo, &hi);
    if (!range_params(hmin(lo), hmax(hi), scale, &inv, zp)) {
        memset(q, 0, pixels * (size_t)in_c_pad);
        return;
    }
    const __m256 vinv = _mm256_set1_ps(inv);
    const __m256i vzp = _mm256_set1_epi32(*zp);
    if (in_c == in_c_pad) {
        for (size_t k = 0; k < n; k += chunk)
            quantise_run(x + k, (int)(n - k < chunk ? n - k : chunk), vinv, vzp, q + k);
        return;
    }
    if (in_c > 64) { /* runs long enough to quantise pixel by pixel */
        for (size_t i = 0; i < pixels; i++) {
            uint8_t *dst = q + i * (size_t)in_c_pad;
            quantise_run(x + i * (size_t)in_c, in_c, vinv, vzp, dst);
            memset(dst + in_c, (int)*zp, (size_t)(in_c_pad - in_c));
        }
        return;
    }
    /* Few channels (an image's 3, P-Net's 10): a run of pixels at a time
     * into a contiguous buffer, then spread out to in_c_pad per pixel. */
    enum { RUN = 256 };
    uint8_t packed[RUN * 16];
    const int run_px = RUN * 16 / in_c; /* in_c <= 64 here */
    for (size_t p0 = 0; p0 < pixels; p0 += (size_t)run_px) {
        const int px = (int)(pixels - p0 < (size_t)run_px ? pixels - p0 : (size_t)run_px);
        quantise_run(x + p0 * (size_t)in_c, px * in_c, vinv, vzp, packed);
        uint8_t *dst = q + p0 * (size_t)in_c_pad;
        for (int i = 0; i < px; i++, dst += in_c_pad) {
            memcpy(dst, packed + (size_t)i * in_c, (size_t)in_c);
            memset(dst + in_c, (int)*zp, (size_t)(in_c_pad - in_c));
        }
    }
}

/* Output pixel m's KH x KW x I window (NHWC order, in_c channels stored
 * per pixel) of the quantised input qx into dst (k_pad bytes); taps over
 * the padding are real zeros, i.e. the sample's zero point. */
static void gather_window(const nn_conv_geom *g, size_t in_c, const uint8_t *qx,
                          const int32_t *sample_zp, int m, int k_pad, uint8_t *dst)
{
    const int plane = g->out_h * g->out_w;
    const int b = m / plane, oy = m % plane / g->out_w, ox = m % g->out_w;
    const uint8_t *image = qx + (size_t)b * g->in_h * g->in_w * in_c;
    const int iy0 = oy * g->stride_h - g->pad_top, ix0 = ox * g->stride_w - g->pad_left;
    const int kx_lo = max_int(0, -ix0), kx_hi = min_int(g->kernel_w, g->in_w - ix0);
    const size_t row_len = (size_t)g->kernel_w * in_c;
    const int z = sample_zp[b];
    uint8_t *row = dst;

    for (int ky = 0; ky < g->kernel_h; ky++, row += row_len) {
        const int iy = iy0 + ky;
        if (iy < 0 || iy >= g->in_h || kx_hi <= kx_lo) {
            memset(row, z, row_len);
            continue;
        }
        if (kx_lo > 0)
            memset(row, z, (size_t)kx_lo * in_c);
        memcpy(row + (size_t)kx_lo * in_c,
               image + ((size_t)iy * g->in_w + (size_t)(ix0 + kx_lo)) * in_c,
               (size_t)(kx_hi - kx_lo) * in_c);
        if (kx_hi < g->kernel_w)
            memset(row + (size_t)kx_hi * in_c, z, (size_t)(g->kernel_w - kx_hi) * in_c);
    }
    memset(row, 0, (size_t)k_pad - (size_t)(row - dst)); /* meets zero weights */
}

/* 1 if output pixel m's window lies inside the image, with *offset where
 * it starts in the quantised input (in_c bytes per pixel); 0 if it hangs
 * over the padding. */
static int window_inside(const nn_conv_geom *g, size_t in_c, int m, size_t *offset)
{
    const int plane = g->out_h * g->out_w;
    const int b = m / plane, oy = m % plane / g->out_w, ox = m % g->out_w;
    const int iy0 = oy * g->stride_h - g->pad_top, ix0 = ox * g->stride_w - g->pad_left;
    if (iy0 < 0 || ix0 < 0 || iy0 + g->kernel_h > g->in_h || ix0 + g->kernel_w > g->in_w)
        return 0;
    *offset = ((size_t)b * g->in_h * g->in_w + (size_t)iy0 * g->in_w + (size_t)ix0) * in_c;
    return 1;
}

/* A block of rows of a KxK convolution: tiles whose six windows lie inside
 * the image are read in place (as the fp32 kernel reads float windows),
 * the others gathered into codes. Windows of a whole number of 4-byte
 * steps per image row only (always, for KxK: channels stored rounded up
 * to 4; a strided 1x1 layer of odd channels gathers). */
static void window_rows(const q_job *j, int row0, int rows, uint8_t *codes, float *scale,
                        int32_t *zp, const uint8_t **at, uint8_t *in_place, q_rows *a)
{
    const nn_conv_geom *g = j->g;
    const q_layer *l = j->l;
    const size_t in_c = (size_t)l->in_c_pad, row_bytes = (size_t)g->kernel_w * in_c;
    const int plane = g->out_h * g->out_w, steppable = row_bytes % 4 == 0;

    for (int r = 0; r < rows; r++) {
        const int b = (row0 + r) / plane;
        scale[r] = j->sample_scale[b];
        zp[r] = j->sample_zp[b];
    }
    for (int t = 0; t * Q_MR < rows; t++) {
        const int r0 = t * Q_MR, r1 = min_int(rows, r0 + Q_MR);
        int inside = steppable;
        for (int r = r0; r < r1 && inside; r++) {
            size_t offset = 0;
            inside = window_inside(g, in_c, row0 + r, &offset);
            at[r] = j->qx + offset;
        }
        in_place[t] = (uint8_t)inside;
        if (!inside)
            for (int r = r0; r < r1; r++)
                gather_window(g, in_c, j->qx, j->sample_zp, row0 + r, l->k_pad,
                              codes + (size_t)r * l->k_pad);
    }
    a->in_place = in_place;
    a->segs = g->kernel_h;
    a->seg_steps = (int)(row_bytes / 4);
    a->seg_skip = (long)((size_t)g->in_w * in_c - row_bytes);
}

/* Panels of group pg of `groups`. */
static void panel_range(const q_layer *l, int pg, int groups, int *p0, int *p1)
{
    *p0 = (int)((long long)l->panels * pg / groups);
    *p1 = (int)((long long)l->panels * (pg + 1) / groups);
}

static void q_task(void *ctx, int task, int thread)
{
    const q_job *j = ctx;
    const q_layer *l = j->l;
    const int rb = task / j->groups, pg = task % j->groups;
    const int row0 = rb * j->block_rows, rows = min_int(j->block_rows, j->rows - row0);
    uint8_t *codes = (uint8_t *)(j->scratch + (size_t)thread * j->scratch_per_thread);
    float *scale = (float *)(void *)(codes + (size_t)j->block_rows * l->k_pad);
    int32_t *zp = (int32_t *)(void *)(scale + j->block_rows);
    int p0, p1;

    const uint8_t *at[Q_MC];
    uint8_t in_place[Q_MC / Q_MR];
    q_rows a = {codes, scale, zp, NULL, at, 0, 0, 0};

    if (j->g)
        window_rows(j, row0, rows, codes, scale, zp, at, in_place, &a);
    else
        quantise_rows(j->x + (size_t)row0 * j->lda, j->lda, rows, l->k_dim, l->k_pad, codes,
                      scale, zp);
    panel_range(l, pg, j->groups, &p0, &p1);
    q_block(l, &a, rows, p0, p1, j->y + (size_t)row0 * l->out_c, (size_t)l->out_c, j->act);
}

static void run_job(q_job *j, nn_pool *pool)
{
    pool = pool_for(pool, (double)j->rows * j->l->k_dim * j->l->out_c);
    const int blocks = (j->rows + j->block_rows - 1) / j->block_rows;
    j->groups = panel_groups(blocks, j->l->panels, nn_pool_threads(pool));
    nn_pool_run(pool, blocks * j->groups, q_task, j);
}

static void q_conv2d(const nn_conv_geom *g, const float *x, const void *prepared,
                     float *scratch, float *y, nn_pool *pool)
{
    const q_layer *l = prepared;
    if (l->fp32) {
        nn_backend_avx2.conv2d(g, x, l->fp32, scratch, y, pool);
        return;
    }
    q_job j;
    memset(&j, 0, sizeof j);
    j.l = l;
    j.g = conv_is_pointwise(g) ? NULL : g;
    j.x = x;
    j.lda = (size_t)g->in_c;
    j.y = y;
    j.act = g->act;
    j.rows = g->n * g->out_h * g->out_w;
    j.block_rows = Q_MC;
    j.scratch = scratch;
    j.scratch_per_thread = thread_scratch_floats(g);
    if (j.g) {
        const size_t pixels = (size_t)g->in_h * g->in_w;
        const size_t image = pixels * (size_t)l->in_c_pad;
        uint8_t *qx = (uint8_t *)scratch;
        float *sample_scale = (float *)(void *)(qx + round_up((size_t)g->n * image, 64));
        int32_t *sample_zp = (int32_t *)(void *)(sample_scale + g->n);
        for (int b = 0; b < g->n; b++)
            quantise_sample(x + (size_t)b * pixels * g->in_c, pixels, g->in_c, l->in_c_pad,
                            qx + (size_t)b * image, sample_scale + b, sample_zp + b);
        j.qx = qx;
        j.sample_scale = sample_scale;
        j.sample_zp = sample_zp;
        j.scratch = scratch + sample_scratch_floats(g);
    }
    run_job(&j, pool);
}

/* Fully connected: Q_MR rows per task, their codes on the stack. */
typedef struct fc_job {
    const q_layer *l;
    const float *x;
    size_t lda;
    float *y;
    nn_activation act;
    int rows, groups;
} fc_job;

static void fc_task(void *ctx, int task, int thread)
{
    const fc_job *j = ctx;
    const q_layer *l = j->l;
    const int rb = task / j->groups, pg = task % j->groups;
    const int row0 = rb * Q_MR, rows = min_int(Q_MR, j->rows - row0);
    _Alignas(64) uint8_t codes[Q_MR * FC_MAX_K];
    float scale[Q_MR];
    int32_t zp[Q_MR];
    int p0, p1;
    (void)thread;

    quantise_rows(j->x + (size_t)row0 * j->lda, j->lda, rows, l->k_dim, l->k_pad, codes, scale,
                  zp);
    const q_rows a = {codes, scale, zp, NULL, NULL, 0, 0, 0};
    panel_range(l, pg, j->groups, &p0, &p1);
    q_block(l, &a, rows, p0, p1, j->y + (size_t)row0 * l->out_c, (size_t)l->out_c, j->act);
}

static void q_fully_connected(int n, int in_dim, int out_dim, nn_activation act,
                              const float *x, const void *prepared, float *y, nn_pool *pool)
{
    const q_layer *l = prepared;
    if (l->fp32) {
        nn_backend_avx2.fully_connected(n, in_dim, out_dim, act, x, l->fp32, y, pool);
        return;
    }
    fc_job j = {l, x, (size_t)in_dim, y, act, n, 1};
    pool = pool_for(pool, (double)n * l->k_dim * l->out_c);
    const int blocks = (n + Q_MR - 1) / Q_MR;
    j.groups = panel_groups(blocks, l->panels, nn_pool_threads(pool));
    nn_pool_run(pool, blocks * j.groups, fc_task, &j);
}

#else /* !HAVE_AVX2 */

static int q_available(void)
{
    return 0;
}

static void q_conv2d(const nn_conv_geom *g, const float *x, const void *prepared,
                     float *scratch, float *y, nn_pool *pool)
{
    (void)g; (void)x; (void)prepared; (void)scratch; (void)y; (void)pool;
}

static void q_fully_connected(int n, int in_dim, int out_dim, nn_activation act,
                              const float *x, const void *prepared, float *y, nn_pool *pool)
{
    (void)n; (void)in_dim; (void)out_dim; (void)act; (void)x; (void)prepared; (void)y;
    (void)pool;
}

#endif

static void q_depthwise(const nn_conv_geom *g, const float *x, const void *prepared, float *y,
                        nn_pool *pool)
{
    const q_layer *l = prepared;
    nn_backend_avx2.depthwise(g, x, l->fp32, y, pool);
}

static void q_pool2d(const nn_conv_geom *g, const float *x, float *y, int is_max, nn_pool *pool)
{
    nn_backend_avx2.pool2d(g, x, y, is_max, pool);
}

/* The fused conv + max pool of the layers that stay fp32 (the first
 * layers of P-Net, R-Net and O-Net): the avx2 backend's own, on the avx2
 * blob, so the values are those of the layers run apart here. */
static int q_conv_maxpool_supported(const nn_conv_geom *g, const nn_conv_geom *pg)
{
    return conv_stays_fp32(g->kernel_h, g->kernel_w, g->in_c, g->out_c) &&
           nn_fused_avx2.conv_maxpool_supported(g, pg);
}

static size_t q_conv_maxpool_scratch(const nn_conv_geom *g, const nn_conv_geom *pg, int threads)
{
    return nn_fused_avx2.conv_maxpool_scratch(g, pg, threads);
}

static void q_conv_maxpool(const nn_conv_geom *g, const nn_conv_geom *pg, const float *x,
                           const void *prepared, float *scratch, float *y, nn_pool *pool)
{
    const q_layer *l = prepared;
    nn_fused_avx2.conv_maxpool(g, pg, x, l->fp32, scratch, y, pool);
}

const nn_fused_ops nn_fused_avx2_int8 = {
    q_conv_maxpool_supported,
    q_conv_maxpool_scratch,
    q_conv_maxpool,
};

const nn_backend nn_backend_avx2_int8 = {
    "avx2-int8",      q_available, q_prepare,   q_release,
    q_conv2d_scratch, q_conv2d,    q_depthwise, q_fully_connected,
    q_pool2d,
};
