"""The backward time loop of a layer-direction split by hidden units across threads:
the training counterpart of :mod:`.units`, for batches one thread would run alone.

Thread ``k`` of ``n`` owns units ``u0:u1`` (:func:`.units.unit_range`; ``Hk`` units,
``Hk = u1 - u0``, the same as in the forward) and the columns ``u0:u1`` of ``W_hh``
(``(4H, Hk)``, gathered transposed once per call). Walking back, step ``t``::

    row b: dm = dL/dh_t[b, units] (+ dys[t, b, units]); dc = dL/dc_t[b, units]
           dgates[t, b, gH + units] = backward_row(dm, dc, its units' gates, ...)   (rows.py)
    publish "step t done"; wait until every other thread has published it
    dL/dh_{t-1}[:, units] = dgates[t] (B, 4H) @ W_hh[:, units]                      all gates
    dL/dc_{t-1}[:, units] = dc (backward_row leaves it there)

A unit's gate derivatives need only its own ``dL/dh_t``, ``dL/dc_t`` and forward values,
so the one exchange per step is ``dgates[t]``: each thread writes its units' columns,
and after the wait reads all of them (no thread writes step ``t`` again). A thread reads
its share of ``W_hh`` only: a quarter on each of two threads stays in the core's
nearest cache, where a batch-1 step would stream the whole matrix.

Options: peepholes, clips, activations, lengths, reverse, recurrent dropout, zoneout,
the cell states as an output (:func:`.units.supports`: not layer norm, no projection).
"""

from __future__ import annotations

import numpy as np
from numba import njit

from . import sync
from .loops import dot_product
from .numerics import FASTMATH
from .rows import backward_row
from .units import unit_range


@njit(cache=True, nogil=True, fastmath=FASTMATH, error_model="numpy")
def backward_units(
    dys, dcs, dh, dc, valid, reverse, acts, cs, tanh_cs, dgates, peep, gmasks, cmasks, rmask,
    kinds, keep_h, keep_c, w_hh, progress, part, parts,
):  # fmt: skip
    """Thread ``part`` of ``parts`` of the backward loop (see the module). ``dys``
    (T, B, H); ``dcs`` (T, B, H) or (0, 0, 0); ``dh``, ``dc`` (B, H) enter as dL/dh_n,
    dL/dc_n and leave as dL/dh_0, dL/dc_0 (each thread its units' columns); ``valid``
    (T, B) or (0, 0); the forward's ``acts`` (T, B, 4H), ``cs`` (T + 1, B, H),
    ``tanh_cs`` (T, B, H); ``dgates`` (T, B, 4H) receives dL/d pre-activations; ``peep``
    (3, H) or (0, 0); ``gmasks`` (T, B, 4H), ``cmasks`` (T, B, H) where the clips acted, or
    empty; ``rmask`` (B, H) or (0, 0); ``keep_h``, ``keep_c`` zoneout's keep weights
    (T or 1, B, H) or empty; ``w_hh`` (4H, H) in torch's layout; ``progress`` (parts,
    :data:`.units.COUNTER_STRIDE`) int64 zeros."""
    T, B, G = dgates.shape
    H = G // 4
    u0, u1 = unit_range(H, part, parts)
    Hk = u1 - u0
    dt = dgates.dtype
    wt = np.empty((Hk, G), dt)  # rows of (W_hh[:, u0:u1])^T
    for j in range(Hk):
        for g in range(G):
            wt[j, g] = w_hh[g, u0 + j]
    peep_k = np.empty((3 if peep.shape[0] > 0 else 0, Hk), dt)
    for r in range(peep_k.shape[0]):
        for j in range(Hk):
            peep_k[r, j] = peep[r, u0 + j]
    masked, cell_grads, dropped = valid.shape[0] > 0, dcs.shape[0] > 0, rmask.shape[0] > 0
    zoned, gate_clip, cell_clip = keep_h.shape[0] > 0, gmasks.shape[0] > 0, cmasks.shape[0] > 0
    dm, acts_k, dg_k = np.empty(Hk, dt), np.empty(4 * Hk, dt), np.empty(4 * Hk, dt)
    gm_k = np.empty(4 * Hk if gate_clip else 0, np.bool_)
    kept_h, kept_c = np.zeros((B, Hk), dt), np.zeros((B, Hk), dt)
    dh_new = np.empty((B, Hk), dt)
    off, off_mask = np.empty(0, dt), np.empty(0, np.bool_)
    norm = (off, off, off, off, off, off, off)
    for step in range(T):
        t = step if reverse else T - 1 - step
        prev = t + 1 if reverse else t
        for b in range(B):
            if masked and not valid[t, b]:  # an ended sequence: its gradient passes through
                for g in range(4):
                    for j in range(Hk):
                        dgates[t, b, g * H + u0 + j] = 0.0
                continue
            for j in range(Hk):
                dm[j] = dh[b, u0 + j] + dys[t, b, u0 + j]
            if cell_grads:
                for j in range(Hk):
                    dc[b, u0 + j] += dcs[t, b, u0 + j]
            if zoned:  # the kept share goes straight to the previous state
                z = t if keep_h.shape[0] > 1 else 0
                for j in range(Hk):
                    kept_h[b, j] = dm[j] * keep_h[z, b, u0 + j]
                    kept_c[b, j] = dc[b, u0 + j] * keep_c[z, b, u0 + j]
                    dm[j] -= kept_h[b, j]
                    dc[b, u0 + j] -= kept_c[b, j]
            for g in range(4):
                for j in range(Hk):
                    acts_k[g * Hk + j] = acts[t, b, g * H + u0 + j]
            if gate_clip:
                for g in range(4):
                    for j in range(Hk):
                        gm_k[g * Hk + j] = gmasks[t, b, g * H + u0 + j]
            backward_row(dm, dc[b, u0:u1], acts_k, cs[prev, b, u0:u1], tanh_cs[t, b, u0:u1],
                         dg_k, peep_k, gm_k, cmasks[t, b, u0:u1] if cell_clip else off_mask,
                         kinds, norm, off, off)  # fmt: skip
            for g in range(4):
                for j in range(Hk):
                    dgates[t, b, g * H + u0 + j] = dg_k[g * Hk + j]
        sync.publish(progress[part].ctypes, step + 1)
        for q in range(parts):  # dgates[t] complete: every thread has written its units
            if q != part:
                sync.wait_for(progress[q].ctypes, step + 1)
        dot_product(dgates[t], wt, dh_new, Hk)
        for b in range(B):
            if masked and not valid[t, b]:
                continue
            for j in range(Hk):
                v = dh_new[b, j]
                if dropped:  # W_hh saw the masked h_{t-1}
                    v *= rmask[b, u0 + j]
                if zoned:
                    v += kept_h[b, j]
                    dc[b, u0 + j] += kept_c[b, j]
                dh[b, u0 + j] = v
