"""A whole layer-direction without autograd in one compiled call per thread: the input
projection of the thread's rows, then the forward time loop of :mod:`.loops` over them.

Shapes (``T`` steps, ``B`` rows, ``I`` inputs, ``G = 4H``)::

    xg[t, b] = x[t, b] W_ih^T + b_ih + b_hh          (T, B, G), rows first:last
               (LN(x[t, b] W_ih^T) g_ih + b_ih + b_hh with layer normalisation)
    then loops.forward(xg, ...) on the same rows

The projection runs on the route :func:`.blas.choose` measured for it (as one product
over all ``T * B`` rows when the thread has every row, else one per step), so a call
makes no torch GEMM: torch's OpenMP threads, still spinning after a GEMM of theirs,
would otherwise share the cores with the loop's own threads for the first milliseconds
(measured on Zen 4: S4's forward took 57 ms with the projection in torch, 47 ms with
``OMP_WAIT_POLICY=passive``).
"""

from __future__ import annotations

import numpy as np
from numba import njit

from .loops import forward, gemm
from .numerics import FASTMATH
from .rows import normalize_row


@njit(inline="always", error_model="numpy")
def project(x, w_ih, way, b_ih, b_hh, g_ih, xg, first, last):
    """``xg[:, first:last]`` from ``x[:, first:last]`` (both C-contiguous); ``w_ih``:
    ``W_ih^T`` prepared for route ``way``; ``b_ih``, ``b_hh``, ``g_ih`` empty when off."""
    T, B, I = x.shape
    G = xg.shape[2]
    if last - first == B:  # every row: one product over T * B rows
        gemm(x.reshape(T * B, I), w_ih, xg.reshape(T * B, G), G, way)
    else:
        for t in range(T):
            gemm(x[t, first:last], w_ih, xg[t, first:last], G, way)
    norm_on, biased = g_ih.shape[0] > 0, b_ih.shape[0] > 0
    if not (norm_on or biased):
        return
    rstd = np.empty(1, xg.dtype)
    for t in range(T):
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
    project(x, w_ih, way_ih, b_ih, b_hh, g_ih, xg, first, last)
    forward(xg, valid, reverse, acts, cs, hs, tanh_cs, ms, peep, clips, gmasks, cmasks, rmask,
            kinds, norm, zoneout, w_hh, w_hr, way, first, last)  # fmt: skip
