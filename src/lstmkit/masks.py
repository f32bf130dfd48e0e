"""The options' random tensors, drawn per call: recurrent dropout's mask and zoneout's
keep weights. :func:`lstmkit.functional.lstm` draws them unless given (randomness as
data: pass them to compare backends or steps under one draw).

Shapes: ``T`` time, ``B`` batch, ``H`` hidden units, ``P`` width of ``h``.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping

import torch
from torch import Tensor


def draw(
    like: Tensor, steps: int, batch: int, widths: tuple[int, int],
    settings: Mapping[str, object], training: bool, skip: Collection[str] = (),
) -> dict[str, Tensor]:  # fmt: skip
    """The random tensors a call of the recurrence takes for the options on in
    ``settings`` (checked, as :func:`lstmkit.option_calls.call_settings` gives them), by
    name: ``recurrent_mask`` ``(B, P)`` in training with recurrent dropout,
    ``zoneout_h`` ``(T, B, P)`` and ``zoneout_c`` ``(T, B, H)`` with zoneout (its rates in
    eval). ``widths`` is ``(P, H)``; options named in ``skip`` are left to the caller."""
    tensors: dict[str, Tensor] = {}
    p = settings["recurrent_dropout"]
    if training and p > 0 and "recurrent_dropout" not in skip:
        tensors["recurrent_mask"] = recurrent_dropout_mask(like, batch, widths[0], p)
    rates = settings["zoneout"]
    if rates != (0.0, 0.0) and "zoneout" not in skip:
        keep = zoneout_masks(like, steps, batch, widths, rates, training)
        tensors["zoneout_h"], tensors["zoneout_c"] = keep
    return tensors


def zoneout_masks(
    like: Tensor, steps: int, batch: int, widths: tuple[int, int], rates: tuple[float, float],
    training: bool,
) -> tuple[Tensor, Tensor]:  # fmt: skip
    """Zoneout's keep weights ``(T, B, P)`` and ``(T, B, H)`` (Krueger et al. 2017): in
    training each unit keeps its previous value with probability ``rate`` (a fresh
    Bernoulli mask per step); in eval every unit mixes by the rate itself."""
    masks = []
    for width, rate in zip(widths, rates):
        if training:
            # uniform < rate, in place: the same Bernoulli(rate), half bernoulli_'s time here
            draw = torch.rand(steps, batch, width, device=like.device, dtype=like.dtype)
            masks.append(draw.lt_(rate))
        else:
            masks.append(like.new_full((1, 1, 1), rate).expand(steps, batch, width))
    return masks[0], masks[1]


def recurrent_dropout_mask(like: Tensor, batch: int, width: int, p: float) -> Tensor:
    """A variational recurrent-dropout mask ``(B, P)``: each unit kept with probability
    ``1 - p`` and scaled by ``1 / (1 - p)``, to be reused at every step of a sequence."""
    return like.new_empty(batch, width).bernoulli_(1 - p).div_(1 - p)
