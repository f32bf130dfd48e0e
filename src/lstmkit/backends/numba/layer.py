"""A whole layer-direction without autograd in one compiled call per thread: the input
projection of the thread's rows, then the forward time loop of :mod:`.loops` over them.

Shapes (``T`` steps, ``B`` rows, ``I`` inputs, ``G = 4H``)::

    xg[t, b] = x[t, b] W_ih^T + b_ih + b_hh          (T, B, G), rows first:last
               (LN(x[t, b] W_ih^T) g_ih + b_ih + b_hh with layer normalisation)
    then loops.forward(xg, ...) on the same rows

The projection is register-blocked dot products over the weight in torch's own layout
(:mod:`.dots`: nothing to prepare, ~100 GFLOP/s a Zen 4 core), so a call makes no torch
GEMM: torch's OpenMP threads, still spinning after a GEMM of theirs,
would otherwise share the cores with the loop's own threads for the first milliseconds
(measured on Zen 4: S4's forward took 57 ms with the projection in torch, 47 ms with
``OMP_WAIT_POLICY=passive``).
"""

from __future__ import annotations

import numpy as np
from numba import njit

from .loops import chunk_rows, dot_columns, dot_product, forward
from .numerics import FASTMATH
from .rows import normalize_row


@njit(inline="always", error_model="numpy")
def project(x, w_ih, b_ih, b_hh, g_ih, xg, first, last):
    """``xg[:, first:last]`` from ``x[:, first:last]`` (both C-contiguous) and ``w_ih
    (G, I)`` in torch's layout; ``b_ih``, ``b_hh``, ``g_ih`` empty when off. Dot-product
    blocks (:func:`.loops.dot_columns`), a chunk of weight rows at a time over every
    step, so the weight is read from memory once per call."""
    T, B, I = x.shape
    G = xg.shape[2]
    if last - first == B:  # every row: one product over T * B rows
        dot_product(x.reshape(T * B, I), w_ih, xg.reshape(T * B, G), G)
    else:
        step = chunk_rows(w_ih)
        for j0 in range(0, G, step):
            for t in range(T):
                dot_columns(x[t, first:last], w_ih, xg[t, first:last], j0, min(G, j0 + step))
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
    cmasks, rmask, kinds, norm, zoneout, w_ih, w_hh, w_hr, way, first, last,
):  # fmt: skip
    """Rows ``first:last`` of one layer-direction: :func:`project` into ``xg``, then
    :func:`.loops.forward` (whose arguments follow ``xg``)."""
    project(x, w_ih, b_ih, b_hh, g_ih, xg, first, last)
    forward(xg, valid, reverse, acts, cs, hs, tanh_cs, ms, peep, clips, gmasks, cmasks, rmask,
            kinds, norm, zoneout, w_hh, w_hr, way, first, last)  # fmt: skip
