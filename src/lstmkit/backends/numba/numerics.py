"""The compiled engine's numerics: activation codes, tanh and sigmoid, the activations
and their slopes over a row, the clips; called from :mod:`.rows`.

The row functions are compiled once per dtype and called, not inlined into every call
site (numba's inlining types each site again): a cold process compiled the float32 and
float64 loops and step kernels in 53 s instead of 78 on Zen 4, and the loops ran as
fast (S3 inference 1.18-1.23 ms against 1.33-1.59, interleaved with nn.LSTM; one call
per row and step, each a vectorised loop over the row).

``tanh`` is resolved by argument type: libm's for float64 (exact), and for float32 a
rational form the compiler vectorises (libm calls are scalar). The rational form

    tanh(x) = x P(x^2) / Q(x^2)  for |x| <= 9, else sign(x);  sigmoid(x) = (1 + tanh(x/2)) / 2

has coefficients fitted by ``tools/fit_tanh.py``; its largest error against float64
``tanh``, evaluated in float32, is 5.1e-7 (2e-8 in exact arithmetic; the rest is
float32 rounding), and ``tests/test_backends.py`` checks it.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit, types
from numba.extending import overload

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


@njit(error_model="numpy", fastmath=FASTMATH)
def gate_act_row(z, out, kind):
    """``out = recurrent_activation(z)``: sigmoid (0) or torch's hardsigmoid (1). The
    branch is outside the loops so that each loop vectorises."""
    if kind == 0:
        for j in range(z.shape[0]):
            out[j] = sigmoid(z[j])
    else:
        # constants in z's dtype: float32 arithmetic must stay float32 (no float64 mixing)
        zero = one(z[0]) - one(z[0])
        three = one(z[0]) + one(z[0]) + one(z[0])
        six = three + three
        for j in range(z.shape[0]):
            out[j] = min(max(z[j] + three, zero), six) / six


@njit(error_model="numpy", fastmath=FASTMATH)
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


@njit(error_model="numpy", fastmath=FASTMATH)
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


@njit(error_model="numpy", fastmath=FASTMATH)
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


@njit(error_model="numpy", fastmath=FASTMATH)
def clip_row(z, limit, clipped):
    """Clamp ``z`` to ``[-limit, limit]`` in place, recording where it was clamped."""
    for j in range(z.shape[0]):
        clipped[j] = abs(z[j]) > limit
    for j in range(z.shape[0]):
        z[j] = min(max(z[j], -limit), limit)
