/* The compiled Farneback kernels of vrme.features.farneback in C: the same algorithm, loops and
 * float types as the numba kernels of vrme/features/_kernels.py (see that file for what each
 * array holds), written so that the compiler vectorizes the per-pixel loops for this CPU; the
 * bilinear sampling in matrices() is the part numba leaves scalar (gathers). Built on first use
 * by vrme.native (-O3 -march=native -ffast-math), called through ctypes by
 * vrme.features._native. Arrays are C-contiguous; expansions are (5, h, w) planes. */
#include <stdint.h>
#include <stdlib.h>
#include <math.h>

typedef int64_t i64;

static i64 imin(i64 a, i64 b) { return a < b ? a : b; }
static i64 imax(i64 a, i64 b) { return a > b ? a : b; }

/* out = img smoothed by [1 2 1] / 4 in x then y, mirrored borders. Returns 0, or 1 when out of
 * memory. */
int vrme_smooth121(const float *restrict img, float *restrict out, i64 h, i64 w) {
    float *tmp = malloc(sizeof(float) * (size_t)(h * w));
    if (!tmp) return 1;
    const float q = 0.25f;
    for (i64 y = 0; y < h; y++) {
        const float *row = img + y * w;
        float *t = tmp + y * w;
        if (w == 1) { t[0] = row[0]; continue; }
        t[0] = (row[1] + 2.0f * row[0] + row[1]) * q;
#pragma omp simd
        for (i64 x = 1; x < w - 1; x++) t[x] = (row[x - 1] + 2.0f * row[x] + row[x + 1]) * q;
        t[w - 1] = (row[w - 2] + 2.0f * row[w - 1] + row[w - 2]) * q;
    }
    for (i64 y = 0; y < h; y++) {
        if (h == 1) {
#pragma omp simd
            for (i64 x = 0; x < w; x++) out[x] = tmp[x];
            break;
        }
        const float *up = tmp + (y == 0 ? 1 : y - 1) * w;
        const float *down = tmp + (y == h - 1 ? h - 2 : y + 1) * w;
        const float *mid = tmp + y * w;
        float *o = out + y * w;
#pragma omp simd
        for (i64 x = 0; x < w; x++) o[x] = (up[x] + 2.0f * mid[x] + down[x]) * q;
    }
    free(tmp);
    return 0;
}

/* Quadratic expansion of img (h, w) into out (5, h, w), borders replicated; g, xg, xxg: n + 1
 * one-sided weights; ig: ig11, ig03, ig33, ig55. */
int vrme_expand(const float *restrict img, const float *restrict g, const float *restrict xg,
                const float *restrict xxg, const double *restrict ig, float *restrict out,
                i64 h, i64 w, i64 n) {
    float *buf = malloc(sizeof(float) * (size_t)(3 * (w + 2 * n) + 6 * w));
    if (!buf) return 1;
    float *restrict r0 = buf, *restrict r1 = r0 + (w + 2 * n), *restrict r2 = r1 + (w + 2 * n);
    float *restrict b1 = r2 + (w + 2 * n), *restrict b2 = b1 + w, *restrict b3 = b2 + w,
          *restrict b4 = b3 + w, *restrict b5 = b4 + w, *restrict b6 = b5 + w;
    const float ig11 = (float)ig[0], ig03 = (float)ig[1], ig33 = (float)ig[2],
                ig55 = (float)ig[3];
    float *restrict c0 = r0 + n, *restrict c1 = r1 + n, *restrict c2 = r2 + n;
    const float g0 = g[0];
    const i64 plane = h * w;
    for (i64 y = 0; y < h; y++) {
        const float *row = img + y * w;
#pragma omp simd
        for (i64 x = 0; x < w; x++) {
            c0[x] = row[x] * g0;
            c1[x] = 0.0f;
            c2[x] = 0.0f;
        }
        for (i64 k = 1; k <= n; k++) {
            const float *up = img + imax(y - k, 0) * w;
            const float *down = img + imin(y + k, h - 1) * w;
            const float gk = g[k], xk = xg[k], xxk = xxg[k];
#pragma omp simd
            for (i64 x = 0; x < w; x++) {
                float p = up[x] + down[x];
                c0[x] += gk * p;
                c1[x] += xk * (down[x] - up[x]);
                c2[x] += xxk * p;
            }
        }
        for (i64 i = 0; i < n; i++) {
            r0[i] = c0[0]; r1[i] = c1[0]; r2[i] = c2[0];
            r0[n + w + i] = c0[w - 1]; r1[n + w + i] = c1[w - 1]; r2[n + w + i] = c2[w - 1];
        }
#pragma omp simd
        for (i64 x = 0; x < w; x++) {
            b1[x] = c0[x] * g0;
            b3[x] = c1[x] * g0;
            b5[x] = c2[x] * g0;
            b2[x] = 0.0f;
            b4[x] = 0.0f;
            b6[x] = 0.0f;
        }
        for (i64 k = 1; k <= n; k++) {
            const float gk = g[k], xk = xg[k], xxk = xxg[k];
            const float *pa = r0 + n + k, *pb = r0 + n - k;
            const float *qa = r1 + n + k, *qb = r1 + n - k;
            const float *sa = r2 + n + k, *sb = r2 + n - k;
#pragma omp simd
            for (i64 x = 0; x < w; x++) {
                float t = pa[x] + pb[x];
                b1[x] += t * gk;
                b4[x] += t * xxk;
                b2[x] += (pa[x] - pb[x]) * xk;
                b3[x] += (qa[x] + qb[x]) * gk;
                b6[x] += (qa[x] - qb[x]) * xk;
                b5[x] += (sa[x] + sb[x]) * gk;
            }
        }
        float *o0 = out + y * w, *o1 = o0 + plane, *o2 = o1 + plane, *o3 = o2 + plane,
              *o4 = o3 + plane;
#pragma omp simd
        for (i64 x = 0; x < w; x++) {
            o0[x] = b3[x] * ig11;
            o1[x] = b2[x] * ig11;
            o2[x] = b1[x] * ig03 + b5[x] * ig33;
            o3[x] = b1[x] * ig03 + b4[x] * ig33;
            o4[x] = b6[x] * ig55;
        }
    }
    free(buf);
    return 0;
}

/* The five entries G11, G12, G22, h1, h2 of one pixel, scaled by s, into out at offset. */
#define ENTRIES(r2, r3, r4, r5, r6)                                  \
    do {                                                             \
        m0[x] = (r4) * (r4) + (r6) * (r6);                           \
        m1[x] = ((r4) + (r5)) * (r6);                                \
        m2[x] = (r5) * (r5) + (r6) * (r6);                           \
        m3[x] = (r4) * (r2) + (r6) * (r3);                           \
        m4[x] = (r6) * (r2) + (r5) * (r3);                           \
    } while (0)

static void matrices(const float *restrict e0, const float *restrict e1,
                     const float *restrict fx, const float *restrict fy, float *restrict out,
                     const float *restrict wy, const float *restrict wx, i64 h, i64 w) {
    const i64 plane = h * w;
    const float *p0 = e1, *p1 = e1 + plane, *p2 = e1 + 2 * plane, *p3 = e1 + 3 * plane,
                *p4 = e1 + 4 * plane;
    if (w < 2 || h < 2) { /* every position is outside: e0's own terms */
        for (i64 y = 0; y < h; y++) {
            const float *q0r = e0 + y * w, *q1r = q0r + plane, *q2r = q1r + plane,
                        *q3r = q2r + plane, *q4r = q3r + plane;
            float *m0 = out + y * w, *m1 = m0 + plane, *m2 = m1 + plane, *m3 = m2 + plane,
                  *m4 = m3 + plane;
#pragma omp simd
            for (i64 x = 0; x < w; x++) {
                const float dx = fx[y * w + x], dy = fy[y * w + x], s = wy[y] * wx[x];
                float r4 = q2r[x], r5 = q3r[x], r6 = q4r[x] * 0.5f;
                float r2 = q0r[x] * 0.5f + r4 * dy + r6 * dx;
                float r3 = q1r[x] * 0.5f + r6 * dy + r5 * dx;
                r2 *= s; r3 *= s; r4 *= s; r5 *= s; r6 *= s;
                ENTRIES(r2, r3, r4, r5, r6);
            }
        }
        return;
    }
    /* Sampling indices are clamped into the image so that every load is valid; pixels whose
     * position falls outside use e0's own terms, as in the numba kernel. */
    const int xmax = (int)w - 2, ymax = (int)h - 2, wi = (int)w;
    for (i64 y = 0; y < h; y++) {
        const float sy = wy[y];
        const float *fxr = fx + y * w, *fyr = fy + y * w;
        const float *q0r = e0 + y * w, *q1r = q0r + plane, *q2r = q1r + plane,
                    *q3r = q2r + plane, *q4r = q3r + plane;
        float *m0 = out + y * w, *m1 = m0 + plane, *m2 = m1 + plane, *m3 = m2 + plane,
              *m4 = m3 + plane;
#pragma omp simd
        for (i64 x = 0; x < w; x++) {
            const float dx = fxr[x], dy = fyr[x];
            const float px = (float)x + dx, py = (float)y + dy;
            const float x1f = floorf(px), y1f = floorf(py);
            const float ax = px - x1f, ay = py - y1f;
            const int x1 = (int)x1f, y1 = (int)y1f;
            const int inside = (x1 >= 0) & (x1 <= xmax) & (y1 >= 0) & (y1 <= ymax);
            const int xi = x1 < 0 ? 0 : (x1 > xmax ? xmax : x1);
            const int yi = y1 < 0 ? 0 : (y1 > ymax ? ymax : y1);
            const int i = yi * wi + xi;
            const int j = i + wi, i1 = i + 1, j1 = j + 1;
            const float a00 = (1.0f - ax) * (1.0f - ay), a01 = ax * (1.0f - ay);
            const float a10 = (1.0f - ax) * ay, a11 = ax * ay;
            const float s2 = a00 * p0[i] + a01 * p0[i1] + a10 * p0[j] + a11 * p0[j1];
            const float s3 = a00 * p1[i] + a01 * p1[i1] + a10 * p1[j] + a11 * p1[j1];
            const float s4 = a00 * p2[i] + a01 * p2[i1] + a10 * p2[j] + a11 * p2[j1];
            const float s5 = a00 * p3[i] + a01 * p3[i1] + a10 * p3[j] + a11 * p3[j1];
            const float s6 = a00 * p4[i] + a01 * p4[i1] + a10 * p4[j] + a11 * p4[j1];
            const float q0 = q0r[x], q1 = q1r[x], q2 = q2r[x], q3 = q3r[x], q4 = q4r[x];
            float r2, r3, r4, r5, r6;
            if (inside) {
                r2 = s2;
                r3 = s3;
                r4 = (q2 + s4) * 0.5f;
                r5 = (q3 + s5) * 0.5f;
                r6 = (q4 + s6) * 0.25f;
            } else {
                r2 = 0.0f;
                r3 = 0.0f;
                r4 = q2;
                r5 = q3;
                r6 = q4 * 0.5f;
            }
            r2 = (q0 - r2) * 0.5f;
            r3 = (q1 - r3) * 0.5f;
            r2 += r4 * dy + r6 * dx;
            r3 += r6 * dy + r5 * dx;
            const float s = sy * wx[x];
            r2 *= s; r3 *= s; r4 *= s; r5 *= s; r6 *= s;
            ENTRIES(r2, r3, r4, r5, r6);
        }
    }
}

static void matrices_at_rest(const float *restrict e0, const float *restrict e1,
                             float *restrict out, const float *restrict wy,
                             const float *restrict wx, i64 h, i64 w) {
    const i64 plane = h * w;
    for (i64 y = 0; y < h; y++) {
        const float sy = wy[y];
        const float *q0 = e0 + y * w, *q1 = q0 + plane, *q2 = q1 + plane, *q3 = q2 + plane,
                    *q4 = q3 + plane;
        const float *p0 = e1 + y * w, *p1 = p0 + plane, *p2 = p1 + plane, *p3 = p2 + plane,
                    *p4 = p3 + plane;
        float *m0 = out + y * w, *m1 = m0 + plane, *m2 = m1 + plane, *m3 = m2 + plane,
              *m4 = m3 + plane;
        const i64 inner = y < h - 1 ? w - 1 : 0;
#pragma omp simd
        for (i64 x = 0; x < inner; x++) {
            const float s = sy * wx[x];
            const float r2 = (q0[x] - p0[x]) * 0.5f * s;
            const float r3 = (q1[x] - p1[x]) * 0.5f * s;
            const float r4 = (q2[x] + p2[x]) * 0.5f * s;
            const float r5 = (q3[x] + p3[x]) * 0.5f * s;
            const float r6 = (q4[x] + p4[x]) * 0.25f * s;
            ENTRIES(r2, r3, r4, r5, r6);
        }
#pragma omp simd
        for (i64 x = inner; x < w; x++) {
            const float s = sy * wx[x];
            const float r2 = q0[x] * 0.5f * s;
            const float r3 = q1[x] * 0.5f * s;
            const float r4 = q2[x] * s;
            const float r5 = q3[x] * s;
            const float r6 = q4[x] * 0.5f * s;
            ENTRIES(r2, r3, r4, r5, r6);
        }
    }
}

/* Box sums of the matrices over (2m+1)^2 (replicated borders, running sums in double),
 * scaled, and each pixel's regularised 2 x 2 solve into (fx, fy); colsum: 5 * w doubles. */
static void solve(const float *restrict mats, float *restrict fx, float *restrict fy, i64 h,
                  i64 w, i64 m, double scale, double *restrict colsum) {
    const i64 plane = h * w;
    for (int c = 0; c < 5; c++) {
        double *s = colsum + c * w;
        const float *r = mats + c * plane;
#pragma omp simd
        for (i64 x = 0; x < w; x++) s[x] = (double)r[x] * (double)(m + 1);
        for (i64 d = 1; d <= m; d++) {
            r = mats + c * plane + imin(d, h - 1) * w;
#pragma omp simd
            for (i64 x = 0; x < w; x++) s[x] += r[x];
        }
    }
    double *s0 = colsum, *s1 = colsum + w, *s2 = colsum + 2 * w, *s3 = colsum + 3 * w,
           *s4 = colsum + 4 * w;
    for (i64 y = 0; y < h; y++) {
        if (y > 0) {
            const i64 ia = imin(y + m, h - 1), ib = imax(y - m - 1, 0);
            for (int c = 0; c < 5; c++) {
                double *s = colsum + c * w;
                const float *ra = mats + c * plane + ia * w, *rb = mats + c * plane + ib * w;
#pragma omp simd
                for (i64 x = 0; x < w; x++) s[x] += (double)ra[x] - (double)rb[x];
            }
        }
        double h0 = s0[0] * (double)(m + 1), h1 = s1[0] * (double)(m + 1),
               h2 = s2[0] * (double)(m + 1), h3 = s3[0] * (double)(m + 1),
               h4 = s4[0] * (double)(m + 1);
        for (i64 d = 1; d <= m; d++) {
            const i64 j = imin(d, w - 1);
            h0 += s0[j]; h1 += s1[j]; h2 += s2[j]; h3 += s3[j]; h4 += s4[j];
        }
        float *ox = fx + y * w, *oy = fy + y * w;
        for (i64 x = 0; x < w; x++) {
            if (x > 0) {
                const i64 a = imin(x + m, w - 1), b = imax(x - m - 1, 0);
                h0 += s0[a] - s0[b];
                h1 += s1[a] - s1[b];
                h2 += s2[a] - s2[b];
                h3 += s3[a] - s3[b];
                h4 += s4[a] - s4[b];
            }
            const double g11 = h0 * scale, g12 = h1 * scale, g22 = h2 * scale;
            const double b1 = h3 * scale, b2 = h4 * scale;
            const double idet = 1.0 / (g11 * g22 - g12 * g12 + 1e-3);
            ox[x] = (float)((g11 * b2 - g12 * b1) * idet);
            oy[x] = (float)((g22 * b1 - g12 * b2) * idet);
        }
    }
}

/* One pyramid level (see level_flow in _kernels.py): expand img, then `iterations` rounds of
 * solve, the matrices recomputed after each but the last; (fx, fy) updated in place. */
int vrme_level_flow(const float *restrict e0, const float *restrict img,
                    const float *restrict g, const float *restrict xg,
                    const float *restrict xxg, const double *restrict ig, float *restrict fx,
                    float *restrict fy, i64 h, i64 w, i64 n, i64 m, double scale,
                    i64 iterations, const float *restrict wy, const float *restrict wx,
                    int at_rest) {
    const size_t plane = (size_t)(h * w);
    float *e1 = malloc(sizeof(float) * 10 * plane);
    double *colsum = malloc(sizeof(double) * 5 * (size_t)w);
    if (!e1 || !colsum) {
        free(e1);
        free(colsum);
        return 1;
    }
    float *mats = e1 + 5 * plane;
    int rc = vrme_expand(img, g, xg, xxg, ig, e1, h, w, n);
    if (rc == 0) {
        if (at_rest)
            matrices_at_rest(e0, e1, mats, wy, wx, h, w);
        else
            matrices(e0, e1, fx, fy, mats, wy, wx, h, w);
        for (i64 i = 0; i < iterations; i++) {
            solve(mats, fx, fy, h, w, m, scale, colsum);
            if (i < iterations - 1) matrices(e0, e1, fx, fy, mats, wy, wx, h, w);
        }
    }
    free(e1);
    free(colsum);
    return rc;
}

/* vrme_level_flow at full resolution from the raw image (smoothed here), from rest. */
int vrme_full_level_flow(const float *restrict e0, const float *restrict img,
                         const float *restrict g, const float *restrict xg,
                         const float *restrict xxg, const double *restrict ig,
                         float *restrict fx, float *restrict fy, i64 h, i64 w, i64 n, i64 m,
                         double scale, i64 iterations, const float *restrict wy,
                         const float *restrict wx) {
    float *lv = malloc(sizeof(float) * (size_t)(h * w));
    if (!lv) return 1;
    int rc = vrme_smooth121(img, lv, h, w);
    if (rc == 0)
        rc = vrme_level_flow(e0, lv, g, xg, xxg, ig, fx, fy, h, w, n, m, scale, iterations, wy,
                             wx, 1);
    free(lv);
    return rc;
}
