"""The ``reference`` backend: the readable time loop; autograd does the backward.

This loop is the definition every other backend is checked against. It calls the one
cell function once per time step and handles variable lengths with a validity mask:
a sequence that has ended keeps its state and emits zeros, so the forward direction
ends at each sequence's own last step, and the reverse direction (walking t = T-1..0)
starts at each sequence's own last step.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import Tensor

from ..cell import cell_step
from ..options import CELL_OPTIONS, NO_TENSORS, PER_STEP, PLAIN, CellConfig
from .contract import at_step, valid_mask

#: The cell options this backend implements (all of them).
OPTIONS = CELL_OPTIONS


def run_recurrence(
    xg: Tensor,
    h0: Tensor,
    c0: Tensor,
    weight_hh: Tensor,
    weight_hr: Tensor | None = None,
    *,
    lengths: Tensor | None = None,
    reverse: bool = False,
    cell_states: bool = False,
    config: CellConfig = PLAIN,
    tensors: Mapping[str, Tensor] = NO_TENSORS,
) -> tuple[Tensor, ...]:
    """Run one layer-direction over time; see :mod:`lstmkit.backends.contract`."""
    steps = range(xg.shape[0] - 1, -1, -1) if reverse else range(xg.shape[0])
    xs = xg.unbind(0)  # T x (B, 4H); never xg[t] under autograd (see PERFORMANCE.md)
    valid = None if lengths is None else valid_mask(lengths, xg.shape[0]).unbind(0)
    per_step = not PER_STEP.isdisjoint(tensors)  # zoneout's keep weights: one slice a step
    h, c = h0, c0
    ys: list[Tensor] = [h0] * xg.shape[0]
    cs: list[Tensor] = [c0] * xg.shape[0]
    for t in steps:
        step = at_step(tensors, t) if per_step else tensors
        h_new, c_new = cell_step(xs[t], h, c, weight_hh, weight_hr, config, step)
        if valid is None:
            h, c = h_new, c_new
            ys[t], cs[t] = h, c
        else:
            m = valid[t]  # (B, 1): has sequence b reached step t?
            h = torch.where(m, h_new, h)
            c = torch.where(m, c_new, c)
            ys[t], cs[t] = torch.where(m, h_new, 0.0), torch.where(m, c_new, 0.0)
    if cell_states:
        return torch.stack(ys), h, c, torch.stack(cs)  # ..., (T, B, H)
    return torch.stack(ys), h, c  # (T, B, P), (B, P), (B, H)
