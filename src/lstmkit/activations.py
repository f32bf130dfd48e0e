"""The activations a cell may use, each with its derivative written from its output.

``recurrent_activation`` squashes the gates ``i, f, o``; ``activation`` squashes the
candidate ``g`` and the cell state before ``o`` (``h = o * activation(c)``). The
hand-written backward passes need ``dy/dx`` and keep only ``y``, so every entry gives
its slope as a function of the output::

    sigmoid      y = 1 / (1 + e^-x)          dy/dx = y (1 - y)
    hardsigmoid  y = clamp(x / 6 + 1/2, 0, 1) dy/dx = 1/6 where 0 < y < 1, else 0
    tanh         y = tanh(x)                  dy/dx = 1 - y^2
    relu         y = max(x, 0)                dy/dx = 1 where y > 0, else 0
    softsign     y = x / (1 + |x|)            dy/dx = (1 - |y|)^2

``hardsigmoid`` is torch's function (``F.hardsigmoid``: slope 1/6, not Keras's 0.2),
written out so that its autograd slope is exactly 1/6 in float64 (torch's own backward
kernel multiplies by a float32 1/6). The piecewise slopes are zero at the kinks.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor


@dataclass(frozen=True)
class Activation:
    """A pointwise activation ``fn`` and its slope ``dy/dx`` computed from ``y = fn(x)``."""

    name: str
    fn: Callable[[Tensor], Tensor]
    slope: Callable[[Tensor], Tensor]


def _hardsigmoid(x: Tensor) -> Tensor:
    return (x + 3).clamp(0, 6) / 6


def _hardsigmoid_slope(y: Tensor) -> Tensor:
    return ((y > 0) & (y < 1)).to(y.dtype) / 6


#: Choices for ``recurrent_activation`` (gates i, f, o).
GATE_ACTIVATIONS: dict[str, Activation] = {
    "sigmoid": Activation("sigmoid", torch.sigmoid, lambda y: y * (1 - y)),
    "hardsigmoid": Activation("hardsigmoid", _hardsigmoid, _hardsigmoid_slope),
}

#: Choices for ``activation`` (candidate g, and the cell state before o).
CELL_ACTIVATIONS: dict[str, Activation] = {
    "tanh": Activation("tanh", torch.tanh, lambda y: 1 - y * y),
    "relu": Activation("relu", torch.relu, lambda y: (y > 0).to(y.dtype)),
    "softsign": Activation("softsign", F.softsign, lambda y: (1 - y.abs()).square()),
}
