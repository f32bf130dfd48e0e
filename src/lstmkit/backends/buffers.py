"""What an engine of :mod:`.bptt` works on: the :class:`Engine` protocol (its two time
loops), the buffers the forward fills and the backward reads (:class:`Buffers`), the
gradients the backward fills (:class:`Grads`), and the order of the steps.

Shapes: ``T`` time, ``B`` batch, ``H`` hidden units, ``P`` width of ``h``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import NamedTuple, Protocol

from torch import Tensor

from ..options import PLAIN, CellConfig


class Walk(NamedTuple):
    """What both time loops walk with: the weights ``w_hh (4H, P)`` and ``w_hr (P, H)``
    (or None), the validity mask ``valid (T, B, 1)`` (or None: every step valid), and
    the direction (``reverse``: t = T-1..0)."""

    w_hh: Tensor
    w_hr: Tensor | None
    valid: Tensor | None
    reverse: bool


@dataclass
class Buffers:
    """What the forward keeps for the backward. Slot ``t`` of ``cs``/``hs`` is the state
    before step ``t`` walking forward (slot ``t + 1`` walking in reverse)."""

    acts: Tensor  # (T, B, 4H) activated gates i, f, g, o
    cs: Tensor  # (T + 1, B, H)
    hs: Tensor  # (T + 1, B, P)
    tanh_cs: Tensor  # (T, B, H) activation(c_t) (of LN(c_t) * g_c + beta_c with layer norm)
    ms: Tensor | None  # (T, B, H) o * tanh(c) when projecting, else None (it is hs)
    config: CellConfig = PLAIN  # the cell's options
    tensors: Mapping[str, Tensor] = field(default_factory=dict)  # their tensors, by name
    gate_clipped: Tensor | None = None  # (T, B, 4H) bool: pre-activation clamped
    cell_clipped: Tensor | None = None  # (T, B, H) bool: c_t clamped
    c_new: Tensor | None = None  # (T, B, H) the cell's c_t before zoneout mixes it
    rec_hat: Tensor | None = None  # (T, B, 4H) LN(h_{t-1} W_hh^T) before its gain
    rec_rstd: Tensor | None = None  # (T, B, 1) its 1 / sqrt(var + eps)
    c_hat: Tensor | None = None  # (T, B, H) LN(c_t) before its gain and bias
    c_rstd: Tensor | None = None  # (T, B, 1)

    def saved(self) -> tuple[Tensor | None, ...]:
        """The tensors to save for the backward (rebuild with ``Buffers(*saved, ...)``)."""
        return (
            self.acts, self.cs, self.hs, self.tanh_cs, self.ms, self.gate_clipped,
            self.cell_clipped, self.c_new, self.rec_hat, self.rec_rstd, self.c_hat, self.c_rstd,
        )  # fmt: skip


@dataclass
class Grads:
    """What the backward loop fills: ``dgates`` (T, B, 4H) = dL/d pre-activations (which
    is dL/dxg), ``dhs`` (T, B, P) = dL/dh_t when projecting; with layer norm ``drec``
    (T, B, 4H) = dL/d(h_{t-1} W_hh^T) and ``dnorm_c`` (T, B, H) = dL/d(LN(c_t) g_c + beta_c)."""

    dgates: Tensor
    dhs: Tensor | None = None
    drec: Tensor | None = None
    dnorm_c: Tensor | None = None


class Engine(Protocol):
    """Runs the two time loops of :class:`.bptt.Recurrence`. An engine may also offer
    ``infer(xg, h0, c0, walk, config, tensors) -> (ys, h_n, c_n, cs)`` for calls without
    autograd (:func:`.bptt.run` then skips the buffers kept for a backward)."""

    def forward(self, xg: Tensor, walk: Walk, buf: Buffers) -> None:
        """Fill ``buf`` from step pre-activations ``xg``; ``buf.cs``/``buf.hs`` hold
        ``c0``/``h0`` in their first slot on entry."""

    def backward(
        self, dys: Tensor, dcs: Tensor | None, dh: Tensor, dc: Tensor, walk: Walk, buf: Buffers,
        grads: Grads,
    ) -> tuple[Tensor, Tensor]:  # fmt: skip
        """Fill ``grads`` walking back from ``dh = dL/dh_n``, ``dc = dL/dc_n``, adding
        ``dys`` (dL/dy_t) and ``dcs`` (dL/dc_t, or None) at each step; return
        ``(dL/dh_0, dL/dc_0)``."""


def steps(T: int, reverse: bool, backward: bool = False) -> range:
    """The order of time steps: forward walks 0..T-1 (T-1..0 in reverse); backward the opposite."""
    return range(T - 1, -1, -1) if reverse != backward else range(T)


def slots(t: int, reverse: bool) -> tuple[int, int]:
    """``(prev, next)``: the state slots read and written by step ``t``."""
    return (t + 1, t) if reverse else (t, t + 1)
