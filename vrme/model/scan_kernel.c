/* The selective-scan core for CPUs, fused: vrme/model/fused.py compiles this file on first use
 * and calls it through ctypes (it needs nothing but a C compiler and libm).
 *
 * For every batch item i, channel d and state n, over time t (h_{-1} = 0):
 *
 *     h_t[d, n] = exp(delta_t[d] A[d, n]) h_{t-1}[d, n] + delta_t[d] u_t[d] B_t[n]
 *     y_t[d]    = sum_n C_t[n] h_t[d, n]
 *
 * delta must already be positive (softplus applied by the caller). Sequence tensors are
 * contiguous (batch, time, channels); B and C (batch, time, d_state); the decay rates are passed
 * transposed, A2T = (A log2 e)^T and AT = A^T, both (d_state, channels) and contiguous.
 *
 * Work is done per batch item and per block of W channels: the states of a block live in a
 * small buffer (N x W values in the forward pass, L x N x W in the backward pass) that stays in
 * the core's cache, and the innermost loops run over the W channels, contiguous in memory, so
 * the compiler vectorises them. The state over all of (batch, time, channels, d_state) is never
 * stored: backward recomputes it block by block.
 *
 * Every sum is taken in a fixed order (states n = 0..N-1, then channel blocks left to right,
 * then items in order), so a given build gives the same numbers on every call whatever the
 * number of threads the caller splits the batch over.
 */

#ifndef REAL /* first pass: common code, then this file once per type */

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* Subnormal numbers (below 2^-126 in float) make x86 arithmetic many times slower, and decays
 * exp(delta A) that small times a small state make them; they are far below float resolution
 * next to the terms they are added to. The kernels flush them to zero (MXCSR FTZ and DAZ) while
 * they run and restore the caller's mode on return. */
#if defined(__SSE__) || defined(__x86_64__)
#include <xmmintrin.h>
#define FTZ_BEGIN const unsigned int csr_saved_ = _mm_getcsr(); _mm_setcsr(csr_saved_ | 0x8040u);
#define FTZ_END _mm_setcsr(csr_saved_);
#else
#define FTZ_BEGIN
#define FTZ_END
#endif

#define W 64 /* channels per block */

/* 2^x in float: x = k + f with k an integer and |f| <= 1/2, 2^f by Cephes' degree-6
 * polynomial (relative error below 2e-7), 2^k by building the exponent bits. Results below
 * 2^-126 (where float goes subnormal) are flushed to 0, above 2^127 they saturate. Branch-free,
 * so loops calling it vectorise. */
static inline float exp2_f32(float x) {
    float xc = x < -126.0f ? -126.0f : (x > 127.0f ? 127.0f : x);
    float k = (xc + 12582912.0f) - 12582912.0f; /* round to nearest (1.5 * 2^23 trick) */
    float f = xc - k;
    float p = 1.535336188319500e-4f;
    p = p * f + 1.339887440266574e-3f;
    p = p * f + 9.618437357674640e-3f;
    p = p * f + 5.550332471162809e-2f;
    p = p * f + 2.402264791363012e-1f;
    p = p * f + 6.931472028550421e-1f;
    p = p * f + 1.0f;
    int32_t bits = ((int32_t)k + 127) << 23;
    float s;
    memcpy(&s, &bits, sizeof s);
    return x < -126.0f ? 0.0f : p * s;
}

static inline double exp2_f64(double x) { return exp2(x); }

#define REAL float
#define NAME(f) f##_f32
#define EXP2 exp2_f32
#include __FILE__
#undef REAL
#undef NAME
#undef EXP2

#define REAL double
#define NAME(f) f##_f64
#define EXP2 exp2_f64
#include __FILE__

#else /* second pass: the kernels for one type */

/* Forward over one block of w <= W channels d0.. of item i; h is an N x W buffer. Inlined
 * twice, for full blocks (w = W, a constant: the loops over channels unroll) and the last. */
static inline __attribute__((always_inline)) void NAME(fwd_block)(
    const REAL *u, const REAL *delta, const REAL *A2T, const REAL *B, const REAL *C, REAL *y,
    REAL *h, int64_t i, int64_t d0, const int64_t w, int64_t L, int64_t D, int64_t N) {
    REAL x[W], dl[W], acc[W];
    memset(h, 0, sizeof(REAL) * (size_t)(N * W));
    for (int64_t t = 0; t < L; t++) {
        const int64_t row = (i * L + t) * D + d0;
        const REAL *B_t = B + (i * L + t) * N, *C_t = C + (i * L + t) * N;
        for (int64_t d = 0; d < w; d++) {
            dl[d] = delta[row + d];
            x[d] = dl[d] * u[row + d];
            acc[d] = 0;
        }
        for (int64_t n = 0; n < N; n++) {
            const REAL bn = B_t[n], cn = C_t[n];
            const REAL *a2 = A2T + n * D + d0;
            REAL *hn = h + n * W;
            #pragma omp simd
            for (int64_t d = 0; d < w; d++) {
                REAL hv = EXP2(dl[d] * a2[d]) * hn[d] + x[d] * bn;
                hn[d] = hv;
                acc[d] += cn * hv;
            }
        }
        for (int64_t d = 0; d < w; d++) y[row + d] = acc[d];
    }
}

/* y (b, L, D) for items [b0, b1). Returns 0, or -1 when out of memory. */
int NAME(scan_fwd)(const REAL *u, const REAL *delta, const REAL *A2T, const REAL *B,
                   const REAL *C, REAL *y, int64_t b0, int64_t b1, int64_t L, int64_t D,
                   int64_t N) {
    REAL *h = (REAL *)malloc(sizeof(REAL) * (size_t)(N * W));
    if (!h) return -1;
    FTZ_BEGIN
    for (int64_t i = b0; i < b1; i++) {
        for (int64_t d0 = 0; d0 < D; d0 += W) {
            if (D - d0 >= W)
                NAME(fwd_block)(u, delta, A2T, B, C, y, h, i, d0, W, L, D, N);
            else
                NAME(fwd_block)(u, delta, A2T, B, C, y, h, i, d0, D - d0, L, D, N);
        }
    }
    FTZ_END
    free(h);
    return 0;
}

/* Backward over one block of w <= W channels d0.. of item i (see fwd_block). hs holds L + 1
 * N x W blocks: h_{-1} = 0, then h_0 .. h_{L-1}; das L blocks of decays; g one block. */
static inline __attribute__((always_inline)) void NAME(bwd_block)(
    const REAL *u, const REAL *delta, const REAL *A2T, const REAL *AT, const REAL *B,
    const REAL *C, const REAL *dy, REAL *du, REAL *ddelta, REAL *dAT, REAL *dB, REAL *dC,
    REAL *hs, REAL *das, REAL *g, int64_t i, int64_t d0, const int64_t w, int64_t L, int64_t D,
    int64_t N) {
    const int64_t block = N * W;
    REAL x[W], dl[W], dx[W], ddl[W], dyv[W];
    /* the block's states h_t and decays exp(delta_t A), all t */
    memset(hs, 0, sizeof(REAL) * (size_t)block);
    for (int64_t t = 0; t < L; t++) {
        const int64_t row = (i * L + t) * D + d0;
        const REAL *B_t = B + (i * L + t) * N;
        for (int64_t d = 0; d < w; d++) {
            dl[d] = delta[row + d];
            x[d] = dl[d] * u[row + d];
        }
        for (int64_t n = 0; n < N; n++) {
            const REAL bn = B_t[n];
            const REAL *a2 = A2T + n * D + d0;
            REAL *hn = hs + ((t + 1) * N + n) * W, *dan = das + (t * N + n) * W;
            const REAL *hp = hn - block;
            #pragma omp simd
            for (int64_t d = 0; d < w; d++) {
                REAL da = EXP2(dl[d] * a2[d]);
                dan[d] = da;
                hn[d] = da * hp[d] + x[d] * bn;
            }
        }
    }
    /* backwards in time; g = dLoss/dh_t, carried as exp(delta_{t+1} A) g_{t+1}. At t = 0 the
     * decay terms vanish (h_{-1} = 0). */
    memset(g, 0, sizeof(REAL) * (size_t)block);
    for (int64_t t = L - 1; t >= 0; t--) {
        const int64_t row = (i * L + t) * D + d0;
        const REAL *B_t = B + (i * L + t) * N, *C_t = C + (i * L + t) * N;
        REAL *dB_t = dB + (i * L + t) * N, *dC_t = dC + (i * L + t) * N;
        for (int64_t d = 0; d < w; d++) {
            dl[d] = delta[row + d];
            x[d] = dl[d] * u[row + d];
            dyv[d] = dy[row + d];
            dx[d] = 0;
            ddl[d] = 0;
        }
        for (int64_t n = 0; n < N; n++) {
            const REAL bn = B_t[n], cn = C_t[n];
            const REAL *hn = hs + ((t + 1) * N + n) * W, *hp = hn - block;
            const REAL *dan = das + (t * N + n) * W, *a = AT + n * D + d0;
            REAL *gn = g + n * W, *dA_n = dAT + n * D + d0;
            REAL sc = 0, sb = 0;
            #pragma omp simd reduction(+ : sc, sb)
            for (int64_t d = 0; d < w; d++) {
                REAL gv = gn[d] + dyv[d] * cn;
                sc += dyv[d] * hn[d];
                sb += x[d] * gv;
                dx[d] += gv * bn;
                REAL s = gv * dan[d] * hp[d];
                ddl[d] += s * a[d];
                dA_n[d] += s * dl[d];
                gn[d] = dan[d] * gv;
            }
            dC_t[n] += sc;
            dB_t[n] += sb;
        }
        for (int64_t d = 0; d < w; d++) {
            du[row + d] = dx[d] * dl[d];
            ddelta[row + d] = dx[d] * u[row + d] + ddl[d];
        }
    }
}

/* Gradients for items [b0, b1) given dy (b, L, D): du, ddelta (b, L, D) and the rows
 * b0..b1 of dB, dC (b, L, N) are written; dAT (N, D) is added to (the caller zeroes it).
 * Returns 0, or -1 when out of memory. */
int NAME(scan_bwd)(const REAL *u, const REAL *delta, const REAL *A2T, const REAL *AT,
                   const REAL *B, const REAL *C, const REAL *dy, REAL *du, REAL *ddelta,
                   REAL *dAT, REAL *dB, REAL *dC, int64_t b0, int64_t b1, int64_t L,
                   int64_t D, int64_t N) {
    const size_t block = (size_t)(N * W);
    REAL *hs = (REAL *)malloc(sizeof(REAL) * block * (size_t)(L + 1));
    REAL *das = (REAL *)malloc(sizeof(REAL) * block * (size_t)L);
    REAL *g = (REAL *)malloc(sizeof(REAL) * block);
    if (!hs || !das || !g) {
        free(hs);
        free(das);
        free(g);
        return -1;
    }
    FTZ_BEGIN
    memset(dB + b0 * L * N, 0, sizeof(REAL) * (size_t)((b1 - b0) * L * N));
    memset(dC + b0 * L * N, 0, sizeof(REAL) * (size_t)((b1 - b0) * L * N));
    for (int64_t i = b0; i < b1; i++) {
        for (int64_t d0 = 0; d0 < D; d0 += W) {
            if (D - d0 >= W)
                NAME(bwd_block)(u, delta, A2T, AT, B, C, dy, du, ddelta, dAT, dB, dC, hs, das, g,
                                i, d0, W, L, D, N);
            else
                NAME(bwd_block)(u, delta, A2T, AT, B, C, dy, du, ddelta, dAT, dB, dC, hs, das, g,
                                i, d0, D - d0, L, D, N);
        }
    }
    FTZ_END
    free(hs);
    free(das);
    free(g);
    return 0;
}

#endif
