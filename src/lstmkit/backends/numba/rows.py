"""The compiled engine's cell for one batch row, forward and backward, with the
layer-norm row helpers; inlined into the time loops of :mod:`.loops` (``H`` hidden,
``G = 4H``; gates i, f, g, o). The activations and clips come from :mod:`.numerics`.

* :func:`forward_row`: one row of one step, from the two halves of the pre-activations
  (``h W_hh^T`` and ``x W_ih^T + b``) to ``c_t``, ``act(c_t)`` and ``m = o act(c_t)``.
* :func:`backward_row`: the matching derivatives; ``dc`` comes in as dL/dc_t (excluding
  the path through h_t) and leaves as dL/dc_{t-1}.
"""

from __future__ import annotations

import math

from numba import njit

from ...cell import LN_EPS
from .numerics import cell_act_row, cell_slope_times, clip_row, gate_act_row, gate_slope_times, one


@njit(inline="always", error_model="numpy")
def normalize_row(z, hat, rstd):
    """``hat = (z - mean) / sqrt(var + eps)`` over the row (biased variance); its
    ``1/sqrt(var + eps)`` into ``rstd[0]``. The statistics are summed in float64."""
    n = z.shape[0]
    mean = 0.0
    for j in range(n):
        mean += z[j]
    mean /= n
    var = 0.0
    for j in range(n):
        var += (z[j] - mean) * (z[j] - mean)
    rstd[0] = 1.0 / math.sqrt(var / n + LN_EPS)
    r = rstd[0]
    for j in range(n):
        hat[j] = (z[j] - mean) * r


@njit(inline="always", error_model="numpy")
def _normalize_row_backward(dy, gain, hat, rstd, out, accumulate):
    """dL/dz of ``y = hat * gain`` (:func:`normalize_row`) from ``dy``:
    ``rstd (dhat - mean(dhat) - hat mean(dhat hat))`` with ``dhat = dy gain``; added to
    ``out`` when ``accumulate``, else written."""
    n = dy.shape[0]
    a = 0.0
    b = 0.0
    for j in range(n):
        a += dy[j] * gain[j]
    for j in range(n):
        b += dy[j] * gain[j] * hat[j]
    a /= n
    b /= n
    r = rstd[0]
    if accumulate:
        for j in range(n):
            out[j] += r * (dy[j] * gain[j] - a - hat[j] * b)
    else:
        for j in range(n):
            out[j] = r * (dy[j] * gain[j] - a - hat[j] * b)


# The row kernels are split into short loops over at most four arrays each: with more,
# the compiler cannot prove the arrays do not overlap and leaves the loop scalar (5x slower).


@njit(inline="always", error_model="numpy")
def forward_row(hw, xg, c_prev, acts, c, tanh_c, m, peep, clips, gmask, cmask, kinds, norm):
    """One row of one step from ``hw = h_{t-1} W_hh^T`` (overwritten with the
    pre-activations) and ``xg = x_t W_ih^T + b``. Options: ``peep`` (3, H) = w_ci, w_cf,
    w_co or (0, 0); ``clips`` = (gate_clip, cell_clip), inf when off; ``gmask`` (4H,),
    ``cmask`` (H,) receive where a clip acted (empty when that clip is off); ``kinds`` =
    (gate, cell) activation codes; ``norm`` = (g_hh (4H,), g_c (H,), beta_c (H,), and
    this row's rec_hat (4H,), rec_rstd (1,), c_hat (H,), c_rstd (1,)), all empty
    without layer normalisation; ``tanh_c`` receives activation(c), or
    activation(LN(c) g_c + beta_c)."""
    H = c.shape[0]
    gk, ck = kinds[0], kinds[1]
    g_hh, g_c, b_c, rec_hat, rec_rstd, c_hat, c_rstd = norm
    peephole = peep.shape[0] > 0
    if g_hh.shape[0] > 0:  # xg + LN(h W_hh^T) g_hh
        normalize_row(hw, rec_hat, rec_rstd)
        for j in range(4 * H):
            hw[j] = rec_hat[j] * g_hh[j] + xg[j]
    else:
        for j in range(4 * H):
            hw[j] += xg[j]
    if peephole:  # i, f see c_{t-1}
        for j in range(H):
            hw[j] += peep[0, j] * c_prev[j]
        for j in range(H):
            hw[H + j] += peep[1, j] * c_prev[j]
    if gmask.shape[0] > 0:  # o waits for c_t when it has a peephole
        early = 3 * H if peephole else 4 * H
        clip_row(hw[:early], clips[0], gmask[:early])
    gate_act_row(hw[: 2 * H], acts[: 2 * H], gk)  # i, f
    cell_act_row(hw[2 * H : 3 * H], acts[2 * H : 3 * H], ck)  # g
    gate_act_row(hw[3 * H :], acts[3 * H :], gk)  # o (again below with a peephole)
    i, f, g, o = acts[:H], acts[H : 2 * H], acts[2 * H : 3 * H], acts[3 * H :]
    for j in range(H):
        c[j] = f[j] * c_prev[j] + i[j] * g[j]
    if cmask.shape[0] > 0:
        clip_row(c, clips[1], cmask)
    if peephole:  # o sees c_t
        zo = hw[3 * H :]
        for j in range(H):
            zo[j] += peep[2, j] * c[j]
        if gmask.shape[0] > 0:
            clip_row(zo, clips[0], gmask[3 * H :])
        gate_act_row(zo, o, gk)
    if g_c.shape[0] > 0:  # activation(LN(c_t) g_c + beta_c)
        normalize_row(c, c_hat, c_rstd)
        for j in range(H):
            tanh_c[j] = c_hat[j] * g_c[j] + b_c[j]
        cell_act_row(tanh_c, tanh_c, ck)
    else:
        cell_act_row(c, tanh_c, ck)
    for j in range(H):
        m[j] = o[j] * tanh_c[j]


@njit(inline="always", error_model="numpy")
def backward_row(dm, dc, acts, c_prev, tanh_c, dgates, peep, gmask, cmask, kinds, norm,
                 drec, dnorm_c):  # fmt: skip
    """The derivatives of :func:`forward_row`: ``dc`` enters as dL/dc_t (without the
    path through h_t) and leaves as dL/dc_{t-1}. With layer normalisation ``dnorm_c``
    receives dL/d(LN(c_t) g_c + beta_c) and ``drec`` dL/d(h_{t-1} W_hh^T)."""
    H = dc.shape[0]
    gk, ck = kinds[0], kinds[1]
    g_hh, g_c, _, rec_hat, rec_rstd, c_hat, c_rstd = norm
    i, f, g, o = acts[:H], acts[H : 2 * H], acts[2 * H : 3 * H], acts[3 * H :]
    di, df, dg, do = dgates[:H], dgates[H : 2 * H], dgates[2 * H : 3 * H], dgates[3 * H :]
    gate_slope_times(o, dm, tanh_c, do, gk)
    if gmask.shape[0] > 0:
        for j in range(H):
            do[j] = 0.0 if gmask[3 * H + j] else do[j]
    if g_c.shape[0] > 0:  # through h = o act(LN(c) g_c + beta_c)
        cell_slope_times(tanh_c, dm, o, dnorm_c, ck)
        _normalize_row_backward(dnorm_c, g_c, c_hat, c_rstd, dc, True)
    elif ck == 0:  # through h = o tanh(c), in one pass
        for j in range(H):
            dc[j] += dm[j] * o[j] * (one(tanh_c[j]) - tanh_c[j] * tanh_c[j])
    else:  # through h = o act(c); dg is scratch until it is due
        cell_slope_times(tanh_c, dm, o, dg, ck)
        for j in range(H):
            dc[j] += dg[j]
    if peep.shape[0] > 0:  # o saw c_t
        for j in range(H):
            dc[j] += do[j] * peep[2, j]
    if cmask.shape[0] > 0:  # a clamped c_t passes no gradient to its update
        for j in range(H):
            dc[j] = 0.0 if cmask[j] else dc[j]
    gate_slope_times(i, dc, g, di, gk)
    gate_slope_times(f, dc, c_prev, df, gk)
    cell_slope_times(g, dc, i, dg, ck)
    if gmask.shape[0] > 0:
        for j in range(3 * H):
            dgates[j] = 0.0 if gmask[j] else dgates[j]
    for j in range(H):
        dc[j] *= f[j]
    if peep.shape[0] > 0:  # i, f saw c_{t-1}
        for j in range(H):
            dc[j] += di[j] * peep[0, j]
        for j in range(H):
            dc[j] += df[j] * peep[1, j]
    if g_hh.shape[0] > 0:  # the recurrent product went through LN * g_hh
        _normalize_row_backward(dgates, g_hh, rec_hat, rec_rstd, drec, False)
