"""The activations' codes as the kernels take them (a ``tl.constexpr`` each), by the
names of :mod:`lstmkit.activations`; the functions are in :mod:`.math`."""

from __future__ import annotations

GATE_CODES: dict[str, int] = {"sigmoid": 0, "hardsigmoid": 1}
CELL_CODES: dict[str, int] = {"tanh": 0, "relu": 1, "softsign": 2}
