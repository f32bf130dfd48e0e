"""The cell's pointwise functions as Triton device functions, each with its slope.

Written out (no libdevice) so that the same lines run on the GPU and under
``TRITON_INTERPRET=1``; every slope is a function of the activation's output, as in
:mod:`lstmkit.activations` (the backward keeps only outputs)::

    code  gate activation (i, f, o)        code  cell activation (g, and c before o)
    0     sigmoid      slope y (1 - y)      0     tanh      slope 1 - y^2
    1     hardsigmoid  slope 1/6 on (0, 1)  1     relu      slope 1 where y > 0
                                            2     softsign  slope (1 - |y|)^2

The codes are :data:`.codes.GATE_CODES` and :data:`.codes.CELL_CODES`.
``tanh(x) = sign(x) (1 - e^{-2|x|}) / (1 + e^{-2|x|})``: no overflow, absolute error
about 1e-7 in float32.
"""

from __future__ import annotations

import triton
import triton.language as tl


@triton.jit
def tanh(x):
    e = tl.exp(-2.0 * tl.abs(x))
    y = (1.0 - e) / (1.0 + e)
    return tl.where(x < 0, -y, y)


@triton.jit
def gate_act(x, CODE: tl.constexpr):
    """``recurrent_activation`` of ``x`` (fp32)."""
    if CODE == 0:  # noqa: SIM108 (an if on a constexpr is resolved at compile time)
        y = tl.sigmoid(x)
    else:
        y = tl.minimum(tl.maximum(x + 3.0, 0.0), 6.0) / 6.0
    return y


@triton.jit
def gate_slope(y, CODE: tl.constexpr):
    """``d gate_act / dx`` from its output ``y``."""
    if CODE == 0:  # noqa: SIM108
        s = y * (1.0 - y)
    else:
        s = tl.where((y > 0.0) & (y < 1.0), 1.0 / 6.0, 0.0)
    return s


@triton.jit
def cell_act(x, CODE: tl.constexpr):
    """``activation`` of ``x`` (fp32)."""
    if CODE == 0:
        y = tanh(x)
    elif CODE == 1:
        y = tl.maximum(x, 0.0)
    else:
        y = x / (1.0 + tl.abs(x))
    return y


@triton.jit
def cell_slope(y, CODE: tl.constexpr):
    """``d cell_act / dx`` from its output ``y``."""
    if CODE == 0:
        s = 1.0 - y * y
    elif CODE == 1:
        s = tl.where(y > 0.0, 1.0, 0.0)
    else:
        a = 1.0 - tl.abs(y)
        s = a * a
    return s


@triton.jit
def clip(x, limit, CLIP: tl.constexpr):
    """``(clamp(x, -limit, limit), |x| > limit)`` when ``CLIP``, else ``(x, False)``."""
    if CLIP:
        hit = tl.abs(x) > limit
        x = tl.minimum(tl.maximum(x, -limit), limit)
    else:
        hit = x != x  # all False (x is finite), the shape of x
    return x, hit
