"""Compiled (numba) kernels for the LSTM cell, forward and backward.

The cell math is written once, per row; numba compiles it per dtype. ``tanh`` is
resolved by argument type: libm's for float64 (exact), and for float32 a rational form
the compiler vectorises (libm calls are scalar). The rational form

    tanh(x) = x P(x^2) / Q(x^2)  for |x| <= 9, else sign(x);  sigmoid(x) = (1 + tanh(x/2)) / 2

has coefficients fitted by ``tools/fit_tanh.py``; its largest error against float64
``tanh``, evaluated in float32, is 5.1e-7 (2e-8 in exact arithmetic; the rest is
float32 rounding), and ``tests/test_compiled.py`` checks it.

Row kernels (``H`` hidden, ``G = 4H``; gates i, f, g, o), inlined into the time loops
of :mod:`.loops`:

* :func:`forward_row`: one row of one step, from the two halves of the pre-activations
  (``h W_hh^T`` and ``x W_ih^T + b``) to ``c_t``, ``act(c_t)`` and ``m = o act(c_t)``.
* :func:`backward_row`: the matching derivatives; ``dc`` comes in as dL/dc_t (excluding
  the path through h_t) and leaves as dL/dc_{t-1}.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit, types
from numba.extending import overload

from ..cell import LN_EPS

CLAMP = 9.0
P = (
    0.9999999318770489, -0.15887455503783432, 0.031426218043484805, 0.007945183908984663,
    0.00022510029853324405, 1.3282961851049877e-06, 8.351921495244597e-10,
)  # fmt: skip
Q = (
    1.0, 0.17445837659825755, -0.04375360931075541, 0.024067153630390966,
    0.0016273889632431315, 2.1284225283508403e-05, 4.949763984816894e-08,
)  # fmt: skip
_P32 = tuple(np.float32(c) for c in P)
_Q32 = tuple(np.float32(c) for c in Q)
_CLAMP32 = np.float32(CLAMP)


def tanh(x):
    """tanh, by type: rational for float32, libm for float64 (inside compiled code)."""
    return math.tanh(x)


def one(x):
    """1 in the type of ``x``, so float32 arithmetic stays float32."""
    return 1.0


@overload(tanh, inline="always")
def _tanh(x):
    if x == types.float32:
        p, q, clamp, unit = _P32, _Q32, _CLAMP32, np.float32(1.0)

        def rational(x):
            x = min(max(x, -clamp), clamp)
            s = x * x
            num = (((((p[6] * s + p[5]) * s + p[4]) * s + p[3]) * s + p[2]) * s + p[1]) * s + p[0]
            den = (((((q[6] * s + q[5]) * s + q[4]) * s + q[3]) * s + q[2]) * s + q[1]) * s + q[0]
            y = x * num / den
            return min(max(y, -unit), unit)  # |tanh| <= 1 exactly

        return rational
    return lambda x: math.tanh(x)


@overload(one, inline="always")
def _one(x):
    if x == types.float32:
        unit = np.float32(1.0)
        return lambda x: unit
    return lambda x: 1.0


@njit(inline="always", error_model="numpy")
def sigmoid(x):
    half = one(x) / (one(x) + one(x))
    return half * tanh(half * x) + half


# reorder sums (the dot products, the layer-norm statistics) so they vectorise, fuse
# multiply-adds; error_model="numpy" (no Python ZeroDivisionError check) lets the
# compiler vectorise the rational tanh's division.
FASTMATH = {"reassoc", "contract"}

#: Activation codes the kernels take (see :mod:`lstmkit.activations`).
GATE_KINDS = {"sigmoid": 0, "hardsigmoid": 1}
CELL_KINDS = {"tanh": 0, "relu": 1, "softsign": 2}


@njit(inline="always", error_model="numpy")
def gate_act_row(z, out, kind):
    """``out = recurrent_activation(z)``: sigmoid (0) or torch's hardsigmoid (1). The
    branch is outside the loops so that each loop vectorises."""
    if kind == 0:
        for j in range(z.shape[0]):
            out[j] = sigmoid(z[j])
    else:
        three = one(z[0]) + one(z[0]) + one(z[0])
        for j in range(z.shape[0]):
            out[j] = min(max(z[j] + three, three - three), three + three) / (three + three)


@njit(inline="always", error_model="numpy")
def cell_act_row(z, out, kind):
    """``out = activation(z)``: tanh (0), relu (1) or softsign (2)."""
    if kind == 0:
        for j in range(z.shape[0]):
            out[j] = tanh(z[j])
    elif kind == 1:
        for j in range(z.shape[0]):
            out[j] = max(z[j], z[j] - z[j])
    else:
        for j in range(z.shape[0]):
            out[j] = z[j] / (one(z[j]) + abs(z[j]))


@njit(inline="always", error_model="numpy")
def gate_slope_times(y, a, b, out, kind):
    """``out = a * b * d recurrent_activation / dx``, the slope from the output ``y``."""
    u = one(y[0])
    if kind == 0:
        for j in range(y.shape[0]):
            out[j] = a[j] * b[j] * y[j] * (u - y[j])
    else:
        for j in range(y.shape[0]):
            u = one(y[j])
            inside = y[j] > u - u and y[j] < u
            out[j] = a[j] * b[j] / (u + u + u + u + u + u) if inside else u - u


@njit(inline="always", error_model="numpy")
def cell_slope_times(y, a, b, out, kind):
    """``out = a * b * d activation / dx``, the slope from the output ``y``."""
    u = one(y[0])
    if kind == 0:
        for j in range(y.shape[0]):
            out[j] = a[j] * b[j] * (u - y[j] * y[j])
    elif kind == 1:
        for j in range(y.shape[0]):
            out[j] = a[j] * b[j] if y[j] > 0 else y[j] - y[j]
    else:
        for j in range(y.shape[0]):
            s = one(y[j]) - abs(y[j])
            out[j] = a[j] * b[j] * s * s


@njit(inline="always", error_model="numpy")
def _normalize_row(z, hat, rstd):
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
    """dL/dz of ``y = hat * gain`` (:func:`_normalize_row`) from ``dy``:
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
def _clip_row(z, limit, clipped):
    """Clamp ``z`` to ``[-limit, limit]`` in place, recording where it was clamped."""
    for j in range(z.shape[0]):
        clipped[j] = abs(z[j]) > limit
    for j in range(z.shape[0]):
        z[j] = min(max(z[j], -limit), limit)


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
        _normalize_row(hw, rec_hat, rec_rstd)
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
        _clip_row(hw[:early], clips[0], gmask[:early])
    gate_act_row(hw[: 2 * H], acts[: 2 * H], gk)  # i, f
    cell_act_row(hw[2 * H : 3 * H], acts[2 * H : 3 * H], ck)  # g
    gate_act_row(hw[3 * H :], acts[3 * H :], gk)  # o (again below with a peephole)
    i, f, g, o = acts[:H], acts[H : 2 * H], acts[2 * H : 3 * H], acts[3 * H :]
    for j in range(H):
        c[j] = f[j] * c_prev[j] + i[j] * g[j]
    if cmask.shape[0] > 0:
        _clip_row(c, clips[1], cmask)
    if peephole:  # o sees c_t
        zo = hw[3 * H :]
        for j in range(H):
            zo[j] += peep[2, j] * c[j]
        if gmask.shape[0] > 0:
            _clip_row(zo, clips[0], gmask[3 * H :])
        gate_act_row(zo, o, gk)
    if g_c.shape[0] > 0:  # activation(LN(c_t) g_c + beta_c)
        _normalize_row(c, c_hat, c_rstd)
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
