"""A layer-direction without autograd split by hidden units across threads (oneDNN's
scheme for small batches): each thread owns a range of units, all rows.

Thread ``k`` of ``n`` owns units ``u0:u1`` (:func:`unit_range`) and with them the rows
``gH + u0 : gH + u1`` of ``W_ih``, ``W_hh`` and the biases for each gate ``g`` (i, f, g,
o), gathered once per call into arrays of its own (``Hk = u1 - u0``, ``Gk = 4 Hk``)::

    xg_k    (T, B, Gk) = x W_ih,k^T + b_k                 its units' projection, all steps
    step t: wait until every other thread has finished step t - 1  (:mod:`.sync`)
            hw_k (B, Gk) = h_{t-1} W_hh,k^T                the whole h_{t-1}, its weight rows
            row b: forward_row(hw_k[b], xg_k[t, b], ...)   c_t, h_t of its units (rows.py)
            publish "step t done"

A thread reads ``W_hh`` rows for its units only: a quarter of ``W_hh`` on each of two
threads stays in the core's own cache where the whole matrix would not (a batch-1 step
reads the weight once per step and nothing else: it is bound by the cache that holds it).
Every thread then waits for the others once per step (0.1-0.3 us measured on a 2-vCPU
Zen 4 VM). Units go in whole blocks of :data:`UNIT_BLOCK` (the float32 of one cache
line), so that where ``H`` is a multiple of it and a row starts on a line, no two
threads write one line of ``h_t`` or ``c_t`` (elsewhere they share one at the border:
slower, never wrong).

Options: peepholes, clips, activations, lengths, reverse, recurrent dropout and zoneout
(each per unit or per row). Not layer normalisation (its statistics span every unit of
a row) nor a projection (``h_t`` mixes every unit): :func:`supports` says so. Only a
team whose threads run at once may run this: a thread waits for the others every step
(:func:`.team.run_shared` gives each thread its part of the team it really got).
"""

from __future__ import annotations

import numpy as np
from numba import njit

from . import blas, sync
from .layer import project
from .loops import dot_product, row_product
from .numerics import FASTMATH
from .panels import LANES
from .rows import forward_row

#: Units go to threads in whole blocks of this many (a 64-byte cache line of float32).
UNIT_BLOCK = 16

#: int64 slots between two threads' progress counters (a cache line each: no sharing).
COUNTER_STRIDE = 16


def supports(layer_norm: bool, projected: bool) -> bool:
    """Whether a layer with these options can run split by units (see the module)."""
    return not (layer_norm or projected)


@njit(inline="always")
def unit_range(H, part, parts):
    """Units ``u0:u1`` of thread ``part`` of ``parts``: whole :data:`UNIT_BLOCK` blocks,
    as even as they go (a thread may get none when ``H`` is small)."""
    blocks = -(-H // UNIT_BLOCK)
    u0 = min(H, blocks * part // parts * UNIT_BLOCK)
    u1 = min(H, blocks * (part + 1) // parts * UNIT_BLOCK)
    return u0, u1


@njit(inline="always")
def _gather(w, H, u0, u1, out):
    """``out`` = the rows ``gH + u0 : gH + u1`` of ``w`` (a matrix's rows or a bias's
    entries) for each gate ``g``, in order."""
    k = u1 - u0
    for g in range(4):
        out[g * k : (g + 1) * k] = w[g * H + u0 : g * H + u1]


@njit(cache=True, nogil=True, fastmath=FASTMATH, error_model="numpy")
def forward_units(
    x, w_ih, w_hh, b_ih, b_hh, valid, reverse, cs, hs, peep, clips, kinds, rmask, keep_h,
    keep_c, progress, part, parts,
):  # fmt: skip
    """Thread ``part`` of ``parts`` of a layer-direction without autograd (see the
    module): ``x (T, B, I)``; ``w_ih (4H, I)``, ``w_hh (4H, H)`` in torch's layout;
    ``b_ih``, ``b_hh`` (4H,) or both empty; ``cs``, ``hs`` (T + 1, B, H) with c0, h0 in
    slot T (reverse) or 0; ``valid`` (T, B) or (0, 0); ``peep`` (3, H) or (0, 0);
    ``clips`` (2,) (inf: off), ``kinds`` the activation codes; ``rmask`` (B, H) or
    (0, 0); ``keep_h``, ``keep_c`` zoneout's keep weights (T or 1, B, H), or empty;
    ``progress`` (parts, :data:`COUNTER_STRIDE`) int64 zeros, the steps each thread has
    finished."""
    T, B, I = x.shape
    G = w_hh.shape[0]
    H = G // 4
    u0, u1 = unit_range(H, part, parts)
    Hk = u1 - u0
    Gk = 4 * Hk
    dt = x.dtype
    wi = np.empty((Gk, I), dt)
    _gather(w_ih, H, u0, u1, wi)
    wh, wt, peep_k = _recurrent(w_hh, peep, u0, u1, B)
    biased = b_ih.shape[0] > 0
    bi, bh = np.empty(Gk if biased else 0, dt), np.empty(Gk if biased else 0, dt)
    if biased:
        _gather(b_ih, H, u0, u1, bi)
        _gather(b_hh, H, u0, u1, bh)
    xg = np.empty((T, B, Gk), dt)  # its units' projection: the layer's, on dots
    project(x, wi, blas.DOTS, bi, bh, np.empty(0, dt), xg, 0, T, 0, B)

    steps(xg, wh, wt, valid, reverse, cs, hs, peep_k, clips, kinds, rmask, keep_h, keep_c,
          progress, part, parts, u0)  # fmt: skip


@njit(inline="always")
def _recurrent(w_hh, peep, u0, u1, B):
    """The forward's share of ``W_hh`` for units ``u0:u1``: their rows ``wh (Gk, P)``,
    and for fewer than :data:`.blas.ROW_BY_ROW` rows (then the product runs row by row,
    :func:`.loops.row_product`) their transpose zero-padded to whole
    vectors ``wt (P, wide)`` (else empty); the peepholes cut to the units."""
    G, P = w_hh.shape
    H, Hk = G // 4, u1 - u0
    Gk, dt = 4 * Hk, w_hh.dtype
    wh = np.empty((Gk, P), dt)
    _gather(w_hh, H, u0, u1, wh)
    by_row = B < blas.ROW_BY_ROW
    wt = np.zeros((P, -(-Gk // LANES) * LANES) if by_row else (0, 0), dt)
    if by_row:
        for j in range(Gk):
            for k in range(P):
                wt[k, j] = wh[j, k]
    peep_k = np.empty((3 if peep.shape[0] > 0 else 0, Hk), dt)
    for r in range(peep_k.shape[0]):
        peep_k[r] = peep[r, u0:u1]
    return wh, wt, peep_k


@njit(cache=True, nogil=True, fastmath=FASTMATH, error_model="numpy")
def steps(
    xg, wh, wt, valid, reverse, cs, hs, peep_k, clips, kinds, rmask, keep_h, keep_c,
    progress, part, parts, u0,
):  # fmt: skip
    """The forward time loop over units ``u0 : u0 + Hk`` from their pre-activations
    ``xg (T, B, 4 Hk)``, ``wh`` (their rows of ``W_hh``) or ``wt`` (its transpose,
    zero-padded to whole vectors: the row-by-row route, else empty); the other
    arguments as :func:`forward_units` takes them, ``peep_k`` cut to the units."""
    T, B, Gk = xg.shape
    P, Hk, dt = hs.shape[2], Gk // 4, xg.dtype
    by_row = wt.shape[0] > 0
    wide = wt.shape[1] if by_row else Gk
    masked, dropped, zoned = valid.shape[0] > 0, rmask.shape[0] > 0, keep_h.shape[0] > 0
    gate_clip, cell_clip = clips[0] < np.inf, clips[1] < np.inf
    hw, acts = np.empty((B, wide), dt), np.empty((B, Gk), dt)
    c_prev, c = np.empty((B, Hk), dt), np.empty((B, Hk), dt)
    tanh_c, m = np.empty((B, Hk), dt), np.empty((B, Hk), dt)
    h_in = np.empty((B, P) if dropped else (0, P), dt)
    gmask = np.empty((B, Gk if gate_clip else 0), np.bool_)
    cmask = np.empty((B, Hk if cell_clip else 0), np.bool_)
    off = np.empty(0, dt)
    norm = (off, off, off, off, off, off, off)
    first = T if reverse else 0
    for b in range(B):
        c_prev[b] = cs[first, b, u0 : u0 + Hk]
    for step in range(T):
        t = T - 1 - step if reverse else step
        prev, nxt = (t + 1, t) if reverse else (t, t + 1)
        if step > 0:  # h_{t-1} complete: every thread has written its units
            for q in range(parts):
                if q != part:
                    sync.wait_for(progress[q].ctypes, step)
        if dropped:  # recurrent dropout: W_hh sees the masked h_{t-1}
            for b in range(B):
                for j in range(P):
                    h_in[b, j] = hs[prev, b, j] * rmask[b, j]
        h_prev = h_in if dropped else hs[prev]
        if by_row:
            row_product(h_prev, wt, hw, hw.shape[1])
        else:
            dot_product(h_prev, wh, hw, Gk)
        for b in range(B):
            if masked and not valid[t, b]:  # an ended sequence keeps its state
                hs[nxt, b, u0 : u0 + Hk] = hs[prev, b, u0 : u0 + Hk]
                cs[nxt, b, u0 : u0 + Hk] = c_prev[b]
                continue
            forward_row(hw[b, :Gk], xg[t, b], c_prev[b], acts[b], c[b], tanh_c[b], m[b], peep_k,
                        clips, gmask[b], cmask[b], kinds, norm)  # fmt: skip
            if zoned:  # h_t = h_new + k (h_{t-1} - h_new), likewise c
                z = t if keep_h.shape[0] > 1 else 0
                for j in range(Hk):
                    c[b, j] += keep_c[z, b, u0 + j] * (c_prev[b, j] - c[b, j])
                for j in range(Hk):
                    m[b, j] += keep_h[z, b, u0 + j] * (hs[prev, b, u0 + j] - m[b, j])
            for j in range(Hk):
                hs[nxt, b, u0 + j] = m[b, j]
            for j in range(Hk):
                cs[nxt, b, u0 + j] = c[b, j]
            for j in range(Hk):
                c_prev[b, j] = c[b, j]
        sync.publish(progress[part].ctypes, step + 1)

