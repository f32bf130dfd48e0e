"""What a backend implements: the recurrence of one layer in one direction.

A backend is a function::

    run_recurrence(xg, h0, c0, weight_hh, weight_hr=None, *, lengths=None, reverse=False,
                   cell_states=False, options=PLAIN)
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
``options`` (:class:`CellOptions`) switches on the cell's extra options.
Everything else (layers, directions, dropout, packing, layouts) lives in
:mod:`lstmkit.functional` and the modules, once, for every backend.
"""

from __future__ import annotations

from typing import NamedTuple, Protocol

import torch
from torch import Tensor


class CellOptions(NamedTuple):
    """The cell's options beyond torch's LSTM, all off by default (see :func:`cell_step`).
    Immutable; a named tuple because one is built per layer and call (cheap to make).

    ``peephole``: ``(w_ci, w_cf, w_co)``, each ``(H,)``; ``gate_clip``: clamp every gate
    pre-activation; ``cell_clip``: clamp ``c_t`` after the update; ``recurrent_mask``:
    ``(B, P)``, multiplies ``h_{t-1}`` before ``W_hh`` at every step (variational
    recurrent dropout: sampled once per sequence, data like any input); ``zoneout``:
    ``(k_h, k_c)`` of shapes ``(T, B, P)``, ``(T, B, H)``: ``h_t = k_h h_{t-1} + (1-k_h)
    h_new`` (and c), k in {0, 1} in training (Krueger et al. 2017), the rate in eval;
    ``layer_norm``: ``(gamma_hh (4H,), gamma_c (H,), beta_c (H,))``: the recurrent product
    and the cell state before its activation are layer-normalised (the input product's
    normalisation is done with the rest of ``xg``, before the loop); ``activation``,
    ``recurrent_activation``: names in :mod:`lstmkit.activations`.
    """

    peephole: tuple[Tensor, Tensor, Tensor] | None = None
    gate_clip: float | None = None
    cell_clip: float | None = None
    recurrent_mask: Tensor | None = None
    zoneout: tuple[Tensor, Tensor] | None = None
    layer_norm: tuple[Tensor, Tensor, Tensor] | None = None
    activation: str = "tanh"
    recurrent_activation: str = "sigmoid"

    def used(self) -> tuple[str, ...]:
        """The names of the options that are on."""
        names = ("peephole", "gate_clip", "cell_clip", "recurrent_mask", "zoneout", "layer_norm")
        on = [n for n in names if getattr(self, n) is not None]
        on += ["activation"] * (self.activation != "tanh")
        on += ["recurrent_activation"] * (self.recurrent_activation != "sigmoid")
        return tuple(on)

    def cell_kwargs(self, t: int | None = None) -> dict[str, object]:
        """The keyword arguments of :func:`lstmkit.cell.cell_step` for step ``t``
        (without ``zoneout`` when ``t`` is None: it is the only one that varies by step)."""
        kwargs = {name: getattr(self, name) for name in _STEP_INVARIANT}
        if t is not None and self.zoneout is not None:
            kwargs["zoneout"] = (self.zoneout[0][t], self.zoneout[1][t])
        return kwargs

    def tensors(self) -> tuple[Tensor | None, ...]:
        """The option tensors as one flat tuple of :data:`TENSOR_SLOTS` entries (``None``
        where off), for autograd Functions that take tensors one by one."""
        return (
            *(self.peephole or (None,) * 3),
            self.recurrent_mask,
            *(self.zoneout or (None,) * 2),
            *(self.layer_norm or (None,) * 3),
        )

    def with_tensors(self, flat: tuple[Tensor | None, ...]) -> CellOptions:
        """These options with their tensors replaced by ``flat`` (as :meth:`tensors` gives)."""
        peep, zone, norm = flat[0:3], flat[4:6], flat[6:9]
        return self._replace(
            peephole=None if peep[0] is None else tuple(peep),
            recurrent_mask=flat[3],
            zoneout=None if zone[0] is None else tuple(zone),
            layer_norm=None if norm[0] is None else tuple(norm),
        )


PLAIN = CellOptions()

#: The options that are the same at every step (all but ``zoneout``).
_STEP_INVARIANT = tuple(name for name in CellOptions._fields if name != "zoneout")

#: How many entries :meth:`CellOptions.tensors` has.
TENSOR_SLOTS = 9


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
        options: CellOptions = PLAIN,
    ) -> tuple[Tensor, ...]: ...


def valid_mask(lengths: Tensor, steps: int) -> Tensor:
    """``(T, B, 1)`` bool: True where step t lies inside sequence b (t < lengths[b])."""
    t = torch.arange(steps, device=lengths.device)
    return (t[:, None] < lengths[None, :]).unsqueeze(-1)
