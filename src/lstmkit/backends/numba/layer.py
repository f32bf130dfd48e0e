"""A whole layer-direction without autograd in one compiled call per thread: the input
projection of the thread's rows, then the forward time loop of :mod:`.loops` over them.

Shapes (``T`` steps, ``B`` rows, ``I`` inputs, ``G = 4H``)::

    xg[t, b] = x[t, b] W_ih^T + b_ih + b_hh          (T, B, G), rows first:last
               (LN(x[t, b] W_ih^T) g_ih + b_ih + b_hh with layer normalisation)
    then loops.forward(xg, ...) on the same rows

The projection runs on panels (:mod:`.panels`) or dot-product blocks over torch's own
layout (:mod:`.dots`: nothing to prepare), whichever :func:`.blas.choose` measures
faster for the call, preparation included. The call makes no torch GEMM: torch's OpenMP
threads, spinning for milliseconds after a GEMM of theirs, would share the cores with
the loop (measured on Zen 4: S4's forward took 57 ms with the projection in torch, 47 ms
with ``OMP_WAIT_POLICY=passive``). When one thread runs every row, a large projection
is left to torch's GEMM on every core (:func:`.blas.project_in_loop`).

When one thread would run every row (small batches) and a second is free, the
projection can instead run on that second thread, a block of steps ahead of the loop
(:func:`project_ahead` publishes each finished block through :mod:`.sync`,
:func:`forward_behind` waits for it): when the two threads run at once, they overlap
and the loop waits for the first block only (a team of one thread runs them in
turn). The engine times both ways once per shape and keeps the faster
(:func:`.engine._ahead_wins`); on Zen 4 at T = 200, B = 4, I = H = 128 the layer took
2.0 against 2.5 ms.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from . import sync
from .blas import PANELS
from .loops import DOT_CHUNK_BYTES, chunk_rows, dot_columns, forward, panel_columns
from .numerics import FASTMATH
from .rows import normalize_row

#: Bytes of input rows the projection keeps in the core's L2 while every chunk of the
#: weight goes by (a quarter of the 1 MiB or more an x86 server core has): without
#: blocking, a whole-layer projection of 1600 rows of 256 read them all once per chunk
#: (Zen 4, (1600, 256) x (256, 1024) on panels: 101 GFLOP/s, 114 at 256 rows).
ROWS_BLOCK_BYTES = 1 << 18


@njit(inline="always")
def _chunked(a, w_ih, way, c, t0, t1, lo, hi):
    """``c[t, lo:hi] = a[t, lo:hi] @ W`` for steps ``t0:t1``, a chunk of the weight at a
    time over all of them (so each chunk is read from memory once per block)."""
    I, G = a.shape[2], c.shape[2]
    if way == PANELS:
        count = w_ih.shape[0] // I
        per = max(1, DOT_CHUNK_BYTES // (4 * I * w_ih.shape[1]))  # panels per chunk
        for p0 in range(0, count, per):
            for t in range(t0, t1):
                panel_columns(a[t, lo:hi], w_ih, c[t, lo:hi], G, p0, min(count, p0 + per))
    else:
        step = chunk_rows(w_ih)
        for j0 in range(0, G, step):
            for t in range(t0, t1):
                dot_columns(a[t, lo:hi], w_ih, c[t, lo:hi], j0, min(G, j0 + step))


@njit(inline="always", error_model="numpy")
def project(x, w_ih, way, b_ih, b_hh, g_ih, xg, t0, t1, first, last):
    """``xg[t0:t1, first:last]`` from ``x[t0:t1, first:last]`` (both C-contiguous) and
    ``w_ih`` prepared for route ``way`` (:data:`.blas.PANELS`: panels of ``W_ih^T``; else
    :data:`.blas.DOTS`: torch's layout); ``b_ih``, ``b_hh``, ``g_ih`` empty when off.
    Blocks of :data:`ROWS_BLOCK_BYTES` of input rows, each taking a chunk of the weight
    at a time (:func:`.loops.panel_columns`, :func:`.loops.dot_columns`): the block stays
    in the core's cache while the weight goes by, and each chunk of the weight stays
    there while the block's rows go by."""
    B, I = x.shape[1], x.shape[2]
    G = xg.shape[2]
    rows = max(4, ROWS_BLOCK_BYTES // (4 * I) // 4 * 4)
    if last - first == B:  # every row: one product over the steps' rows, a block at a time
        n = (t1 - t0) * B
        a, c = x[t0:t1].reshape(1, n, I), xg[t0:t1].reshape(1, n, G)
        for r0 in range(0, n, rows):
            _chunked(a, w_ih, way, c, 0, 1, r0, min(n, r0 + rows))
    else:  # a row range: blocks of steps
        steps = max(1, rows // (last - first))
        for s0 in range(t0, t1, steps):
            _chunked(x, w_ih, way, xg, s0, min(t1, s0 + steps), first, last)
    norm_on, biased = g_ih.shape[0] > 0, b_ih.shape[0] > 0
    if not (norm_on or biased):
        return
    rstd = np.empty(1, xg.dtype)
    for t in range(t0, t1):
        for b in range(first, last):
            row = xg[t, b]
            if norm_on:
                normalize_row(row, row, rstd)
                for j in range(G):
                    row[j] *= g_ih[j]
            if biased:
                for j in range(G):
                    row[j] += b_ih[j] + b_hh[j]


@njit(cache=True, nogil=True, fastmath=FASTMATH, error_model="numpy")
def layer_forward(
    x, b_ih, b_hh, g_ih, xg, valid, reverse, acts, cs, hs, tanh_cs, ms, peep, clips, gmasks,
    cmasks, rmask, kinds, norm, zoneout, w_ih, way_ih, w_hh, w_hr, way, first, last,
):  # fmt: skip
    """Rows ``first:last`` of one layer-direction: :func:`project` into ``xg``, then
    :func:`.loops.forward` (whose arguments follow ``xg``)."""
    project(x, w_ih, way_ih, b_ih, b_hh, g_ih, xg, 0, x.shape[0], first, last)
    forward(xg, valid, reverse, acts, cs, hs, tanh_cs, ms, peep, clips, gmasks, cmasks, rmask,
            kinds, norm, zoneout, w_hh, w_hr, way, first, last)  # fmt: skip


#: Blocks of steps the projection hands to the loop (:func:`project_ahead`,
#: :func:`forward_behind`): on two threads at once, the loop waits for the first block
#: only, a sixteenth of the projection.
PIPELINE_BLOCKS = 16


def pipelined(steps: int, rows_alone: bool, inputs: int, width: int, threads: int) -> bool:
    """Whether a layer's projection runs on a second thread, a block of steps ahead of the
    time loop: when every row runs on one thread (``rows_alone``), a second thread is
    free, there are two steps a block or more, and a step's projection ``(B, I) x (I, 4H)``
    is no larger than its recurrent product ``(B, P) x (P, 4H)`` (``inputs <= width``),
    so the projection keeps ahead of the loop (streaming shapes: S3)."""
    return rows_alone and threads >= 2 and steps >= 2 * PIPELINE_BLOCKS and inputs <= width


@njit(inline="always")
def _block(k, T, per, reverse):
    """Steps ``t0:t1`` of the ``k``-th block of ``per`` steps in walking order (from the
    end when ``reverse``)."""
    if reverse:
        return max(0, T - (k + 1) * per), T - k * per
    return k * per, min(T, (k + 1) * per)


@njit(cache=True, nogil=True, fastmath=FASTMATH, error_model="numpy")
def project_ahead(x, b_ih, b_hh, g_ih, xg, w_ih, way_ih, reverse, per, progress):
    """:func:`project` of every row, ``per`` steps at a time in the loop's walking
    order, publishing in ``progress[0]`` how many blocks are done (:mod:`.sync`)."""
    T = x.shape[0]
    for k in range(-(-T // per)):
        t0, t1 = _block(k, T, per, reverse)
        project(x, w_ih, way_ih, b_ih, b_hh, g_ih, xg, t0, t1, 0, x.shape[1])
        sync.publish(progress.ctypes, k + 1)


@njit(cache=True, nogil=True, fastmath=FASTMATH, error_model="numpy")
def forward_behind(
    xg, valid, reverse, acts, cs, hs, tanh_cs, ms, peep, clips, gmasks, cmasks, rmask, kinds,
    norm, zoneout, w_hh, w_hr, way, per, progress,
):  # fmt: skip
    """:func:`.loops.forward` over every row, a block of ``per`` steps at a time, each
    once :func:`project_ahead` has published it. The step buffers (``acts``, ...) hold
    one step (nothing kept for a backward); ``valid`` and zoneout's keep weights are
    cut to the block when they have ``T`` steps."""
    T = xg.shape[0]
    keep_h, keep_c, c_new = zoneout
    stepwise = keep_h.shape[0] > 1
    for k in range(-(-T // per)):
        t0, t1 = _block(k, T, per, reverse)
        sync.wait_for(progress.ctypes, k + 1)
        v = valid[t0:t1] if valid.shape[0] > 0 else valid
        kh = keep_h[t0:t1] if stepwise else keep_h
        kc = keep_c[t0:t1] if stepwise else keep_c
        # the first row as an int64, not a literal 0: the loop compiled for the other
        # callers serves here too (a literal would compile the whole loop a second time)
        forward(xg[t0:t1], v, reverse, acts, cs[t0 : t1 + 1], hs[t0 : t1 + 1], tanh_cs, ms,
                peep, clips, gmasks, cmasks, rmask, kinds, norm, (kh, kc, c_new), w_hh, w_hr,
                way, np.int64(0), xg.shape[1])  # fmt: skip
