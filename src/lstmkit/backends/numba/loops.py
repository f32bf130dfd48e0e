"""The ``compiled`` engine's two time loops: one compiled call per layer-direction, every
step's matrix products included (:mod:`.blas`), so no Python and no torch dispatch runs
per step at any batch size.

Shapes (``T`` steps, ``B`` rows, ``H`` hidden, ``G = 4H``, ``P`` width of h)::

    forward, step t (all rows at once, then row by row)
      hw   (B, G) = h_{t-1} W_hh^T                 one GEMM: gemm(h, W_hh^T prepared)
      row b: forward_row(hw[b], xg[t, b], ...)      gates, c_t, act(c_t), m_t (rows.py)
      h_t  (B, P) = m_t W_hr^T                      one GEMM when projecting
      row b: zoneout mixes in (h, c)_{t-1}; an ended sequence keeps its state

    backward, step t (mirrors it)
      row b: dh_in = dh + dy_t (less zoneout's kept share)
      dm   (B, H) = dh_in W_hr                      one GEMM when projecting
      row b: backward_row(dm[b], dc[b], ...)        dgates_t, dc_{t-1} (rows.py)
      dh   (B, P) = dgates_t W_hh                   one GEMM (of drec_t with layer norm)

Buffers that only the backward reads (gates, ``act(c)``, ...) have ``T`` steps when a
backward will follow and one step (reused) otherwise; ``hs``/``cs`` always have ``T + 1``
slots, the state before step ``t`` walking forward being slot ``t``.
"""

from __future__ import annotations

import numpy as np
from numba import njit, types
from numba.extending import overload

from . import blas
from .numerics import FASTMATH
from .panels import LANES, ROW_KERNELS
from .rows import backward_row, forward_row


def gemm(a, w, c, n, way):
    """``c (M, n) = a (M, K) @ w`` for ``w`` prepared for route ``way`` (:mod:`.blas`)."""


@overload(gemm, inline="always")
def _gemm(a, w, c, n, way):
    args = (blas.ROW_MAJOR, blas.NO_TRANS, blas.PACKED)
    if a.dtype == types.float64:

        def impl64(a, w, c, n, way):
            blas.dgemm_loops(*args, a.shape[0], n, a.shape[1], a.ctypes, a.shape[1], w.ctypes,
                             n, 0.0, c.ctypes, c.shape[1])  # fmt: skip

        return impl64

    def impl(a, w, c, n, way):
        if way == 0:  # blas.MKL
            blas.sgemm_mkl(*args, a.shape[0], n, a.shape[1], a.ctypes, a.shape[1], w.ctypes, n,
                           0.0, c.ctypes, c.shape[1])  # fmt: skip
        elif way == 2:  # blas.PANELS
            panel_product(a, w, c, n)
        elif way == 3:  # blas.DOTS
            dot_product(a, w, c, n)
        elif way == 4:  # blas.ROWS
            row_product(a, w, c, n)
        else:
            blas.sgemm_loops(*args, a.shape[0], n, a.shape[1], a.ctypes, a.shape[1], w.ctypes,
                             n, 0.0, c.ctypes, c.shape[1])  # fmt: skip

    return impl


@njit(fastmath=FASTMATH)
def _dot(x, y):
    """``x . y`` of two contiguous float32 rows (vectorised: the sum may reassociate)."""
    acc = np.float32(0.0)
    for k in range(x.shape[0]):
        acc += x[k] * y[k]
    return acc


#: Bytes of weight rows one pass of :func:`dot_product` keeps in the core's cache while
#: every row of ``a`` goes by (a fraction of any x86 core's L2).
DOT_CHUNK_BYTES = 1 << 17


@njit(inline="always")
def chunk_rows(wt):
    """How many rows of ``wt`` (a multiple of 4) make one pass of :func:`dot_product`."""
    return max(4, DOT_CHUNK_BYTES // (4 * max(1, wt.shape[1])) // 4 * 4)


@njit(nogil=True, fastmath=FASTMATH)
def dot_columns(a, wt, c, j0, j1):
    """``c[:, j0:j1] = a @ W[:, j0:j1]`` with ``wt (n, K)`` the rows of ``W^T`` (torch's
    layout for ``x W^T``): blocks of dot products (:mod:`.dots`), 4 x 4 while four rows
    remain, then 1 x 16 for each last row, plain dot products for the last columns."""
    M, K = a.shape
    ldc = c.shape[1]
    rows = M - M % 4
    for i in range(0, rows, 4):
        for j in range(j0, j1 - (j1 - j0) % 4, 4):
            blas.sdots4x4(a[i:].ctypes, K, wt[j:].ctypes, K, c[i:, j:].ctypes, ldc, K)
        for j in range(j1 - (j1 - j0) % 4, j1):
            for r in range(i, i + 4):
                c[r, j] = _dot(a[r], wt[j])
    wide = j1 - (j1 - j0) % 16
    for r in range(rows, M):
        for j in range(j0, wide, 16):
            blas.sdots1x16(a[r:].ctypes, K, wt[j:].ctypes, K, c[r, j:].ctypes, ldc, K)
        for j in range(wide, j1):
            c[r, j] = _dot(a[r], wt[j])


@njit(inline="always")
def dot_product(a, wt, c, n):
    """``c[:, :n] = a @ W`` (:func:`dot_columns`), a chunk of :func:`chunk_rows` rows of
    ``wt`` at a time: each weight row is read from memory once per product, not once per
    four rows of ``a``."""
    step = chunk_rows(wt)
    for j0 in range(0, n, step):
        dot_columns(a, wt, c, j0, min(n, j0 + step))


@njit(nogil=True, fastmath=FASTMATH)
def row_product(a, w, c, n):
    """``c[:, :n] = a @ w[:, :n]`` for ``w (K, N >= n)`` row-major, row by row: strips
    of ``8 V``, then ``V`` columns on the single-row kernels (:data:`.panels.ROW_KERNELS`:
    the strip in registers over the whole ``K``; ``V`` = :data:`.panels.LANES`, 16 with
    AVX-512, else 8), the last ``n % V`` columns as plain sums."""
    B, K = a.shape
    N = w.shape[1]
    wide = ROW_KERNELS[0][1] * LANES
    full = n - n % LANES
    strips = full - full % wide
    for b in range(B):
        for j in range(0, strips, wide):
            blas.srow8(a[b].ctypes, K, w[0, j:].ctypes, N, c[b, j:].ctypes, N, K)
        for j in range(strips, full, LANES):
            blas.srow1(a[b].ctypes, K, w[0, j:].ctypes, N, c[b, j:].ctypes, N, K)
        for j in range(full, n):
            acc = c.dtype.type(0.0)
            for k in range(K):
                acc += a[b, k] * w[k, j]
            c[b, j] = acc


@njit(inline="always")
def panel_product(a, wp, c, n):
    """``c[:, :n] = a @ W`` with ``W`` prepared as panels of ``C_W`` columns ``wp
    (panels * K, C_W)`` (:func:`.blas.prepared`, ``C_W`` = :data:`.panels.COLUMNS`): every
    panel (:func:`panel_columns`)."""
    panel_columns(a, wp, c, n, 0, wp.shape[0] // a.shape[1])


@njit(nogil=True, fastmath=FASTMATH)
def panel_columns(a, wp, c, n, p0, p1):
    """The columns of panels ``p0:p1`` of ``c[:, :n] = a @ W`` (see :func:`panel_product`),
    4 x ``C_W`` blocks at a time (:mod:`.panels`); the last rows and columns go through a
    zero-padded scratch block."""
    M, K = a.shape
    ldc = c.shape[1]
    full = M - M % 4
    cw = wp.shape[1]  # the panel width, as prepared (a cached kernel may outlive the CPU)
    block = np.empty((4, cw), np.float32)
    tail = np.zeros((4 if full < M else 0, K), np.float32)
    for r in range(full, M):
        tail[r - full] = a[r]
    for p in range(p0, p1):
        n0 = p * cw
        width = min(cw, n - n0)
        panel = wp[p * K : (p + 1) * K]
        for i in range(0, full, 4):
            if width == cw:
                blas.sblock(a[i:].ctypes, K, panel.ctypes, cw, c[i:, n0:].ctypes, ldc, K)
            else:
                blas.sblock(a[i:].ctypes, K, panel.ctypes, cw, block.ctypes, cw, K)
                for r in range(4):
                    c[i + r, n0 : n0 + width] = block[r, :width]
        if full < M:
            blas.sblock(tail.ctypes, K, panel.ctypes, cw, block.ctypes, cw, K)
            for r in range(M - full):
                c[full + r, n0 : n0 + width] = block[r, :width]


@njit(cache=True, nogil=True, fastmath=FASTMATH)
def products(a, w, c, way, reps):
    """``reps`` times ``c = a @ w`` on route ``way`` (what :func:`.blas.choose` times)."""
    for _ in range(reps):
        gemm(a, w, c, c.shape[1], way)


@njit(inline="always")
def _norm_row(norm, s, b, off):
    """Row ``b`` of step slot ``s`` of the layer-norm tuple (``off`` rows when it is off)."""
    g_hh, g_c, b_c, rec_hat, rec_rstd, c_hat, c_rstd = norm
    if g_hh.shape[0] == 0:
        return (g_hh, g_c, b_c, off, off, off, off)
    return (g_hh, g_c, b_c, rec_hat[s, b], rec_rstd[s, b], c_hat[s, b], c_rstd[s, b])


@njit(inline="always")
def _mask_row(masks, s, b, off):
    return masks[s, b] if masks.shape[0] > 0 else off


@njit(cache=True, nogil=True, fastmath=FASTMATH, error_model="numpy")
def forward(
    xg, valid, reverse, acts, cs, hs, tanh_cs, ms, peep, clips, gmasks, cmasks, rmask, kinds,
    norm, zoneout, w_hh, w_hr, way, first, last,
):  # fmt: skip
    """The forward time loop over rows ``first:last`` (rows are independent sequences:
    disjoint ranges can run at once on different threads). ``cs``, ``hs`` hold c0, h0 in
    slot T (reverse) or 0 on entry. ``w_hh``: ``W_hh^T`` prepared for ``last - first``
    rows on route ``way``; ``w_hr``: ``W_hr^T`` prepared, or empty without projection;
    ``valid``: (T, B)
    or (0, 0) when every sequence has length T; ``rmask``: the recurrent-dropout mask
    (B, P) or (0, 0); ``norm`` = (g_hh, g_c, beta_c, rec_hat, rec_rstd, c_hat, c_rstd);
    ``zoneout`` = (keep_h (T, B, P), keep_c (T, B, H), c_new), the keep weights with one
    step when every step has the same (eval: the rates); each empty when off.
    See :func:`.rows.forward_row`."""
    T, G, P = xg.shape[0], xg.shape[2], hs.shape[2]
    B = last - first
    kept = acts.shape[0] == T  # T steps of backward buffers, or one reused
    project, masked = w_hr.shape[0] > 0, valid.shape[0] > 0
    keep_h, keep_c, c_new = zoneout
    zoned, norm_on = keep_h.shape[0] > 0, norm[0].shape[0] > 0
    hw = np.empty((B, G), xg.dtype)
    h_in = np.empty((B, P), xg.dtype)
    h_proj = np.empty((B, P) if project else (0, P), xg.dtype)
    off, off_mask = np.empty(0, xg.dtype), np.empty(0, np.bool_)  # an option's absent row
    for step in range(T):
        t = T - 1 - step if reverse else step
        prev, nxt = (t + 1, t) if reverse else (t, t + 1)
        s = t if kept else 0
        if rmask.shape[0] > 0:  # recurrent dropout: W_hh sees the masked h_{t-1}
            for r in range(B):
                h_in[r] = hs[prev, first + r] * rmask[first + r]
            gemm(h_in, w_hh, hw, G, way)
        else:
            gemm(hs[prev, first:last], w_hh, hw, G, way)
        for r in range(B):
            b = first + r
            if masked and not valid[t, b]:  # an ended sequence keeps its state
                hs[nxt, b] = hs[prev, b]
                cs[nxt, b] = cs[prev, b]
                # buffers the backward's reductions read (times a zero gradient): no NaN
                if project:
                    ms[s, b] = 0.0
                if norm_on:
                    norm[3][s, b] = 0.0
                    norm[5][s, b] = 0.0
                if zoned:
                    c_new[s, b] = 0.0
                continue
            m = ms[s, b] if project else hs[nxt, b]
            forward_row(hw[r], xg[t, b], cs[prev, b], acts[s, b], cs[nxt, b], tanh_cs[s, b], m,
                        peep, clips, _mask_row(gmasks, s, b, off_mask),
                        _mask_row(cmasks, s, b, off_mask), kinds,
                        _norm_row(norm, s, b, off))  # fmt: skip
        if project:
            gemm(ms[s, first:last], w_hr, h_proj, P, way)
        if project or zoned:
            for r in range(B):
                b = first + r
                if masked and not valid[t, b]:
                    continue
                if project:
                    hs[nxt, b] = h_proj[r]
                if zoned:  # h_t = h_new + k (h_{t-1} - h_new), likewise c
                    c_new[s, b] = cs[nxt, b]
                    z = t if keep_h.shape[0] > 1 else 0  # one step: the same at every step
                    _lerp_row(cs[nxt, b], cs[prev, b], keep_c[z, b])
                    _lerp_row(hs[nxt, b], hs[prev, b], keep_h[z, b])


@njit(inline="always", error_model="numpy")
def _lerp_row(new, old, keep):
    """``new += keep (old - new)`` in place (torch.lerp(new, old, keep))."""
    for j in range(new.shape[0]):
        new[j] += keep[j] * (old[j] - new[j])


@njit(cache=True, nogil=True, fastmath=FASTMATH, error_model="numpy")
def backward(
    dys, dcs, dh, dc, valid, reverse, acts, cs, tanh_cs, dgates, dhs, peep, gmasks, cmasks,
    rmask, kinds, norm, zoneout, drec, dnorm_c, w_hh, w_hr, way, first, last,
):  # fmt: skip
    """The backward time loop over rows ``first:last``; ``dh``, ``dc`` enter as
    dL/dh_n, dL/dc_n and leave as dL/dh_0, dL/dc_0. ``dcs``: dL/dc_t (T, B, H), or
    (0, 0, 0) when the cell states are not an output. ``w_hh``: ``W_hh`` prepared;
    ``w_hr``: ``W_hr`` prepared or empty.
    ``dhs`` receives dL/dh_t (for dW_hr) when projecting; with layer normalisation
    ``drec`` and ``dnorm_c`` receive the gradients of the recurrent product and of the
    normalised cell state (see :func:`.rows.backward_row`)."""
    T, G, P = dgates.shape[0], dgates.shape[2], dh.shape[1]
    H, B = G // 4, last - first
    project, masked, cell_grads = w_hr.shape[0] > 0, valid.shape[0] > 0, dcs.shape[0] > 0
    keep_h, keep_c, _ = zoneout
    zoned, norm_on = keep_h.shape[0] > 0, norm[0].shape[0] > 0
    off, off_mask = np.empty(0, dgates.dtype), np.empty(0, np.bool_)
    dh_in = np.empty((B, P), dgates.dtype)
    dm = np.empty((B, H) if project else (0, H), dgates.dtype)
    dh_new = np.empty((B, P), dgates.dtype)
    kept_h = np.zeros((B, P), dgates.dtype)
    kept_c = np.zeros((B, H), dgates.dtype)
    for step in range(T):
        t = step if reverse else T - 1 - step
        prev = t + 1 if reverse else t
        for r in range(B):
            b = first + r
            if masked and not valid[t, b]:  # an ended sequence: its gradient passes through
                dgates[t, b] = 0.0
                if project:
                    dhs[t, b] = 0.0
                if norm_on:
                    drec[t, b] = 0.0
                    dnorm_c[t, b] = 0.0
                continue
            dh_in[r] = dh[b] + dys[t, b]
            if cell_grads:
                dc[b] += dcs[t, b]
            if zoned:  # the kept share goes straight to the previous state
                z = t if keep_h.shape[0] > 1 else 0  # one step: the same at every step
                kept_h[r] = dh_in[r] * keep_h[z, b]
                kept_c[r] = dc[b] * keep_c[z, b]
                dh_in[r] -= kept_h[r]
                dc[b] -= kept_c[r]
            if project:
                dhs[t, b] = dh_in[r]
        if project:
            gemm(dh_in, w_hr, dm, H, way)
        for r in range(B):
            b = first + r
            if masked and not valid[t, b]:
                continue
            backward_row(dm[r] if project else dh_in[r], dc[b], acts[t, b], cs[prev, b],
                         tanh_cs[t, b], dgates[t, b], peep, _mask_row(gmasks, t, b, off_mask),
                         _mask_row(cmasks, t, b, off_mask), kinds, _norm_row(norm, t, b, off),
                         drec[t, b] if norm_on else off,
                         dnorm_c[t, b] if norm_on else off)  # fmt: skip
        gemm(drec[t, first:last] if norm_on else dgates[t, first:last], w_hh, dh_new, P, way)
        for r in range(B):
            b = first + r
            if masked and not valid[t, b]:
                continue
            dh[b] = dh_new[r]
            if rmask.shape[0] > 0:  # W_hh saw the masked h_{t-1}
                dh[b] *= rmask[b]
            if zoned:
                dh[b] += kept_h[r]
                dc[b] += kept_c[r]
