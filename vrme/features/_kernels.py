"""Compiled kernels of :mod:`vrme.features.farneback` and :mod:`vrme.features.rois` (numba; imported
on first use only).

Arrays: images (h, w) float32; expansions (5, h, w) float32 holding, per pixel, the y and x
gradient terms, the yy and xx terms and the xy term of the local quadratic polynomial; flows
as two (h, w) float32 planes (x, y).
"""

from __future__ import annotations

import numba as nb
import numpy as np

_OPTS = dict(cache=True, fastmath=True, error_model="numpy", nogil=True)
f32 = np.float32


@nb.njit(**_OPTS)
def smooth121(img, out):  # pragma: no cover - compiled
    """``out`` = img smoothed by the [1 2 1] / 4 kernel in x then y, mirrored borders (the
    pyramid's full-resolution level)."""
    h, w = img.shape
    tmp = np.empty((h, w), f32)
    q = f32(0.25)
    for y in range(h):
        row, t = img[y], tmp[y]
        if w == 1:
            t[0] = f32(row[0])
            continue
        t[0] = (f32(row[1]) + f32(2.0) * f32(row[0]) + f32(row[1])) * q
        for x in range(1, w - 1):
            t[x] = (f32(row[x - 1]) + f32(2.0) * f32(row[x]) + f32(row[x + 1])) * q
        t[w - 1] = (f32(row[w - 2]) + f32(2.0) * f32(row[w - 1]) + f32(row[w - 2])) * q
    for y in range(h):
        if h == 1:
            out[0, :] = tmp[0]
            break
        up = tmp[1] if y == 0 else tmp[y - 1]
        down = tmp[h - 2] if y == h - 1 else tmp[y + 1]
        mid, o = tmp[y], out[y]
        for x in range(w):
            o[x] = (up[x] + f32(2.0) * mid[x] + down[x]) * q


@nb.njit(**_OPTS)
def expand(img, g, xg, xxg, ig, out):  # pragma: no cover - compiled
    """Quadratic expansion of ``img`` into ``out`` (5, h, w), borders replicated; ``g``,
    ``xg``, ``xxg``: one-sided applicability weights (index 0..n), ``ig``: the inverse Gram
    entries (ig11, ig03, ig33, ig55)."""
    h, w = img.shape
    n = g.shape[0] - 1
    r0 = np.empty(w + 2 * n, f32)
    r1 = np.empty(w + 2 * n, f32)
    r2 = np.empty(w + 2 * n, f32)
    b1 = np.empty(w, f32)
    b2 = np.empty(w, f32)
    b3 = np.empty(w, f32)
    b4 = np.empty(w, f32)
    b5 = np.empty(w, f32)
    b6 = np.empty(w, f32)
    ig11, ig03, ig33, ig55 = f32(ig[0]), f32(ig[1]), f32(ig[2]), f32(ig[3])
    c0, c1, c2 = r0[n:n + w], r1[n:n + w], r2[n:n + w]
    g0 = g[0]
    for y in range(h):
        row = img[y]
        for x in range(w):
            c0[x] = row[x] * g0
            c1[x] = 0
            c2[x] = 0
        # Column sums weighted by g, y g and y^2 g.
        for k in range(1, n + 1):
            up = img[max(y - k, 0)]
            down = img[min(y + k, h - 1)]
            gk, xk, xxk = g[k], xg[k], xxg[k]
            for x in range(w):
                p = up[x] + down[x]
                c0[x] += gk * p
                c1[x] += xk * (down[x] - up[x])
                c2[x] += xxk * p
        for i in range(n):
            r0[i], r1[i], r2[i] = c0[0], c1[0], c2[0]
            r0[n + w + i], r1[n + w + i], r2[n + w + i] = c0[w - 1], c1[w - 1], c2[w - 1]
        # Row sums of those, weighted by g, x g and x^2 g.
        for x in range(w):
            b1[x] = c0[x] * g0
            b3[x] = c1[x] * g0
            b5[x] = c2[x] * g0
            b2[x] = 0
            b4[x] = 0
            b6[x] = 0
        for k in range(1, n + 1):
            gk, xk, xxk = g[k], xg[k], xxg[k]
            pa, pb = r0[n + k:n + k + w], r0[n - k:n - k + w]
            qa, qb = r1[n + k:n + k + w], r1[n - k:n - k + w]
            sa, sb = r2[n + k:n + k + w], r2[n - k:n - k + w]
            for x in range(w):
                t = pa[x] + pb[x]
                b1[x] += t * gk
                b4[x] += t * xxk
                b2[x] += (pa[x] - pb[x]) * xk
                b3[x] += (qa[x] + qb[x]) * gk
                b6[x] += (qa[x] - qb[x]) * xk
                b5[x] += (sa[x] + sb[x]) * gk
        o0, o1, o2, o3, o4 = out[0, y], out[1, y], out[2, y], out[3, y], out[4, y]
        for x in range(w):
            o0[x] = b3[x] * ig11
            o1[x] = b2[x] * ig11
            o2[x] = b1[x] * ig03 + b5[x] * ig33
            o3[x] = b1[x] * ig03 + b4[x] * ig33
            o4[x] = b6[x] * ig55


@nb.njit(inline="always", **_OPTS)
def _entries(r2, r3, r4, r5, r6):  # pragma: no cover - compiled
    """G11, G12, G22, h1, h2 of one pixel from its averaged linear (r2, r3) and quadratic
    (r4, r5, r6) terms."""
    return (r4 * r4 + r6 * r6, (r4 + r5) * r6, r5 * r5 + r6 * r6, r4 * r2 + r6 * r3,
            r6 * r2 + r5 * r3)


@nb.njit(**_OPTS)
def matrices(e0, e1, fx, fy, out, wy, wx):  # pragma: no cover - compiled
    """The five entries of each pixel's motion equations (G11, G12, G22, h1, h2) into ``out``
    from the expansions ``e0`` and ``e1`` and the flow (fx, fy): ``e1`` is sampled
    bilinearly at the displaced position (outside the image, ``e0``'s own terms are used);
    entries near a border are down-weighted by ``wy[y] * wx[x]``."""
    _, h, w = e0.shape
    half, quarter, one = f32(0.5), f32(0.25), f32(1.0)
    p0, p1, p2, p3, p4 = e1[0], e1[1], e1[2], e1[3], e1[4]
    for y in range(h):
        sy = wy[y]
        fxr, fyr = fx[y], fy[y]
        q0r, q1r, q2r, q3r, q4r = e0[0, y], e0[1, y], e0[2, y], e0[3, y], e0[4, y]
        m0, m1, m2, m3, m4 = out[0, y], out[1, y], out[2, y], out[3, y], out[4, y]
        for x in range(w):
            dx, dy = fxr[x], fyr[x]
            px = f32(x) + dx
            py = f32(y) + dy
            x1f, y1f = np.floor(px), np.floor(py)
            ax, ay = px - x1f, py - y1f
            x1, y1 = int(x1f), int(y1f)
            q0, q1, q2, q3, q4 = q0r[x], q1r[x], q2r[x], q3r[x], q4r[x]
            if 0 <= x1 < w - 1 and 0 <= y1 < h - 1:
                a00 = (one - ax) * (one - ay)
                a01 = ax * (one - ay)
                a10 = (one - ax) * ay
                a11 = ax * ay
                r2 = (a00 * p0[y1, x1] + a01 * p0[y1, x1 + 1] + a10 * p0[y1 + 1, x1]
                      + a11 * p0[y1 + 1, x1 + 1])
                r3 = (a00 * p1[y1, x1] + a01 * p1[y1, x1 + 1] + a10 * p1[y1 + 1, x1]
                      + a11 * p1[y1 + 1, x1 + 1])
                r4 = (a00 * p2[y1, x1] + a01 * p2[y1, x1 + 1] + a10 * p2[y1 + 1, x1]
                      + a11 * p2[y1 + 1, x1 + 1])
                r5 = (a00 * p3[y1, x1] + a01 * p3[y1, x1 + 1] + a10 * p3[y1 + 1, x1]
                      + a11 * p3[y1 + 1, x1 + 1])
                r6 = (a00 * p4[y1, x1] + a01 * p4[y1, x1 + 1] + a10 * p4[y1 + 1, x1]
                      + a11 * p4[y1 + 1, x1 + 1])
                r4 = (q2 + r4) * half
                r5 = (q3 + r5) * half
                r6 = (q4 + r6) * quarter
            else:
                r2 = f32(0.0)
                r3 = f32(0.0)
                r4, r5, r6 = q2, q3, q4 * half
            r2 = (q0 - r2) * half
            r3 = (q1 - r3) * half
            r2 += r4 * dy + r6 * dx
            r3 += r6 * dy + r5 * dx
            s = sy * wx[x]
            r2 *= s
            r3 *= s
            r4 *= s
            r5 *= s
            r6 *= s
            m0[x], m1[x], m2[x], m3[x], m4[x] = _entries(r2, r3, r4, r5, r6)


@nb.njit(**_OPTS)
def matrices_at_rest(e0, e1, out, wy, wx):  # pragma: no cover - compiled
    """:func:`matrices` for a zero flow (the coarsest level's start): ``e1`` is sampled at the
    pixel itself, which the last row and column count as outside the image."""
    _, h, w = e0.shape
    half, quarter = f32(0.5), f32(0.25)
    for y in range(h):
        sy = wy[y]
        q0, q1, q2, q3, q4 = e0[0, y], e0[1, y], e0[2, y], e0[3, y], e0[4, y]
        p0, p1, p2, p3, p4 = e1[0, y], e1[1, y], e1[2, y], e1[3, y], e1[4, y]
        m0, m1, m2, m3, m4 = out[0, y], out[1, y], out[2, y], out[3, y], out[4, y]
        inner = w - 1 if y < h - 1 else 0
        for x in range(inner):
            s = sy * wx[x]
            r2 = (q0[x] - p0[x]) * half * s
            r3 = (q1[x] - p1[x]) * half * s
            r4 = (q2[x] + p2[x]) * half * s
            r5 = (q3[x] + p3[x]) * half * s
            r6 = (q4[x] + p4[x]) * quarter * s
            m0[x], m1[x], m2[x], m3[x], m4[x] = _entries(r2, r3, r4, r5, r6)
        for x in range(inner, w):
            s = sy * wx[x]
            r2 = q0[x] * half * s
            r3 = q1[x] * half * s
            r4 = q2[x] * s
            r5 = q3[x] * s
            r6 = q4[x] * half * s
            m0[x], m1[x], m2[x], m3[x], m4[x] = _entries(r2, r3, r4, r5, r6)


@nb.njit(**_OPTS)
def solve(mats, fx, fy, m, scale, colsum):  # pragma: no cover - compiled
    """Sum the matrices over (2m+1)^2 boxes (replicated borders; running sums in float64),
    scale the sums by ``scale`` and solve each pixel's 2 x 2 system (regularised by 1e-3) into
    (fx, fy). ``colsum`` (5, w) float64: scratch for the column sums."""
    _, h, w = mats.shape
    s0, s1, s2, s3, s4 = colsum[0], colsum[1], colsum[2], colsum[3], colsum[4]
    for c in range(5):
        s = colsum[c]
        r = mats[c, 0]
        for x in range(w):
            s[x] = np.float64(r[x]) * (m + 1)
        for d in range(1, m + 1):
            r = mats[c, min(d, h - 1)]
            for x in range(w):
                s[x] += r[x]
    for y in range(h):
        if y > 0:
            ia, ib = min(y + m, h - 1), max(y - m - 1, 0)
            for c in range(5):
                s, ra, rb = colsum[c], mats[c, ia], mats[c, ib]
                for x in range(w):
                    s[x] += np.float64(ra[x]) - np.float64(rb[x])
        # Row sums of the column sums, slid along x, and the solve.
        h0 = s0[0] * (m + 1)
        h1 = s1[0] * (m + 1)
        h2 = s2[0] * (m + 1)
        h3 = s3[0] * (m + 1)
        h4 = s4[0] * (m + 1)
        for d in range(1, m + 1):
            j = min(d, w - 1)
            h0 += s0[j]
            h1 += s1[j]
            h2 += s2[j]
            h3 += s3[j]
            h4 += s4[j]
        ox, oy = fx[y], fy[y]
        for x in range(w):
            if x > 0:
                a, b = min(x + m, w - 1), max(x - m - 1, 0)
                h0 += s0[a] - s0[b]
                h1 += s1[a] - s1[b]
                h2 += s2[a] - s2[b]
                h3 += s3[a] - s3[b]
                h4 += s4[a] - s4[b]
            g11, g12, g22 = h0 * scale, h1 * scale, h2 * scale
            b1, b2 = h3 * scale, h4 * scale
            idet = 1.0 / (g11 * g22 - g12 * g12 + 1e-3)
            ox[x] = (g11 * b2 - g12 * b1) * idet
            oy[x] = (g22 * b1 - g12 * b2) * idet


@nb.njit(**_OPTS)
def level_flow(e0, img, g, xg, xxg, ig, fx, fy, m, scale, iterations, wy, wx,
               at_rest):  # pragma: no cover - compiled
    """One pyramid level: expand ``img`` (the level's float image), then ``iterations``
    rounds of solve (the matrices recomputed after each but the last), starting from the
    flow in (fx, fy), which is updated in place (``at_rest``: it is zero)."""
    _, h, w = e0.shape
    e1 = np.empty((5, h, w), f32)
    expand(img, g, xg, xxg, ig, e1)
    mats = np.empty((5, h, w), f32)
    colsum = np.empty((5, w), np.float64)
    if at_rest:
        matrices_at_rest(e0, e1, mats, wy, wx)
    else:
        matrices(e0, e1, fx, fy, mats, wy, wx)
    for i in range(iterations):
        solve(mats, fx, fy, m, scale, colsum)
        if i < iterations - 1:
            matrices(e0, e1, fx, fy, mats, wy, wx)


@nb.njit(**_OPTS)
def full_level_flow(e0, img, g, xg, xxg, ig, fx, fy, m, scale, iterations, wy,
                    wx):  # pragma: no cover - compiled
    """:func:`level_flow` at full resolution from the raw image (smoothed here)."""
    h, w = img.shape
    lv = np.empty((h, w), f32)
    smooth121(img, lv)
    level_flow(e0, lv, g, xg, xxg, ig, fx, fy, m, scale, iterations, wy, wx, True)


@nb.njit(**_OPTS)
def top_sums(fx, fy, mag, skip):  # pragma: no cover - compiled
    """(count, sum of fx, sum of fy) over the pixels whose ``mag`` is at or above the
    ``skip``-th smallest magnitude (all three (h, w) arrays, any strides)."""
    h, w = mag.shape
    flat = np.empty(h * w, mag.dtype)
    i = 0
    for y in range(h):
        for x in range(w):
            flat[i] = mag[y, x]
            i += 1
    threshold = np.partition(flat, skip)[skip]
    count = 0
    sx = 0.0
    sy = 0.0
    for y in range(h):
        for x in range(w):
            if mag[y, x] >= threshold:
                count += 1
                sx += fx[y, x]
                sy += fy[y, x]
    return count, sx, sy
