"""What a backend implements: the recurrence of one layer in one direction.

A backend is a function::

    run_recurrence(xg, h0, c0, weight_hh, weight_hr=None, *, lengths=None, reverse=False,
                   cell_states=False, config=PLAIN, tensors=NO_TENSORS)
        -> (ys, h_n, c_n), or (ys, h_n, c_n, cs) with cell_states=True

Shapes (T time, B batch, H hidden, P width of h)::

    xg        (T, B, 4H)   x W_ih^T + b_ih + b_hh for every step, computed before the loop
    h0, c0    (B, P), (B, H)
    weight_hh (4H, P)      weight_hr (P, H) or None
    lengths   (B,) int64 on xg's device, or None (every sequence has length T)
    ys        (T, B, P)    h_t for every step; zeros where t >= lengths[b]
    h_n, c_n  (B, P), (B, H): the state after each sequence's own last step
    cs        (T, B, H)    c_t for every step; zeros where t >= lengths[b]

``reverse=True`` walks t = T-1..0, each sequence starting from its own last step.
``config`` (:class:`lstmkit.options.CellConfig`, hashable, one per module configuration)
switches on the cell's options; ``tensors`` are the options' tensors by name (see
:mod:`lstmkit.options`). A backend declares the options it implements (its ``OPTIONS``);
``select`` refuses a call that needs one it lacks.
Everything else (layers, directions, dropout, packing, layouts) lives in
:mod:`lstmkit.functional` and the modules, once, for every backend.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol

import torch
from torch import Tensor

from ..options import NO_TENSORS, PER_STEP, PLAIN, CellConfig


def at_step(tensors: Mapping[str, Tensor], t: int) -> dict[str, Tensor]:
    """The option tensors of step ``t``: those with a time axis
    (:data:`lstmkit.options.PER_STEP`) sliced at ``t``, the rest as they are."""
    return {name: x[t] if name in PER_STEP else x for name, x in tensors.items()}


class Recurrence(Protocol):
    def __call__(
        self,
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
    ) -> tuple[Tensor, ...]: ...


def valid_mask(lengths: Tensor, steps: int) -> Tensor:
    """``(T, B, 1)`` bool: True where step t lies inside sequence b (t < lengths[b])."""
    t = torch.arange(steps, device=lengths.device)
    return (t[:, None] < lengths[None, :]).unsqueeze(-1)
