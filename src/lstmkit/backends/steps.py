"""The plumbing around one cell step for an engine that loops step by step in Python
(``fused``): the recurrent and projection GEMMs, carrying ended sequences' state, and the
mirror of both in the backward. The engine supplies only the cell itself.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import Tensor

from ..gemm import StepGemm
from ..options import NO_TENSORS
from .buffers import Buffers


class ForwardSteps:
    """Per-step GEMMs and bookkeeping of a forward loop over ``buf``."""

    def __init__(
        self, w_hh: Tensor, w_hr: Tensor | None, valid: Tensor | None, buf: Buffers
    ) -> None:
        batch = buf.hs.shape[1]
        self.recurrent = StepGemm(w_hh, batch)  # h_{t-1} W_hh^T
        self.project = StepGemm(w_hr, batch) if w_hr is not None else None  # m_t W_hr^T
        self.valid, self.buf = valid, buf

    def h_in(self, prev: int) -> Tensor:
        """``h_{t-1}`` as the recurrent product sees it (masked by recurrent dropout)."""
        h = self.buf.hs[prev]
        return h * self.buf.tensors["recurrent_mask"] if self.buf.config.recurrent_dropout else h

    def finish(self, t: int, prev: int, nxt: int) -> None:
        """After the cell wrote step ``t``'s ``m`` (or ``h``): project it into ``h``, mix
        in the previous state by zoneout, and let ended sequences keep their state."""
        buf = self.buf
        if self.project is not None:
            h = self.project.mm(buf.ms[t], out=buf.hs[nxt])
            if h is not buf.hs[nxt]:
                buf.hs[nxt].copy_(h)
        if buf.config.zoneout:  # h_t = k h_{t-1} + (1 - k) h_new, likewise c
            buf.c_new[t].copy_(buf.cs[nxt])
            buf.hs[nxt].lerp_(buf.hs[prev], buf.tensors["zoneout_h"][t])
            buf.cs[nxt].lerp_(buf.cs[prev], buf.tensors["zoneout_c"][t])
        if self.valid is not None:
            torch.where(self.valid[t], buf.hs[nxt], buf.hs[prev], out=buf.hs[nxt])
            torch.where(self.valid[t], buf.cs[nxt], buf.cs[prev], out=buf.cs[nxt])


class BackwardSteps:
    """The mirror of :class:`ForwardSteps`: what comes into and out of each cell step."""

    def __init__(
        self, w_hh: Tensor, w_hr: Tensor | None, valid: Tensor | None, dys: Tensor,
        dcs: Tensor | None, dhs: Tensor | None, tensors: Mapping[str, Tensor] = NO_TENSORS,
    ) -> None:  # fmt: skip
        batch = dys.shape[1]
        self.recurrent_t = StepGemm(w_hh.t(), batch)  # dgates W_hh
        self.project_t = StepGemm(w_hr.t(), batch) if w_hr is not None else None  # dh W_hr
        self.valid, self.dys, self.dcs, self.dhs = valid, dys, dcs, dhs
        self.recurrent_mask = tensors.get("recurrent_mask")  # the options' tensors, if on
        self.keep = tensors.get("zoneout_h"), tensors.get("zoneout_c")
        self.passing: tuple[Tensor, Tensor] | None = None
        self.keeping: tuple[Tensor, Tensor] | None = None

    def enter(self, t: int, dh: Tensor, dc: Tensor) -> tuple[Tensor, Tensor]:
        """``(dm, dc)`` for step ``t`` from the gradients ``dh``, ``dc`` of its output
        state: adds the step's outputs' gradients (``y_t``, and ``c_t`` when it is an
        output); ended sequences pass theirs around the cell."""
        dc_out = dc if self.dcs is None else dc + self.dcs[t]
        if self.valid is None:
            dh, dc = dh + self.dys[t], dc_out
        else:
            v = self.valid[t]
            self.passing = dh.masked_fill(v, 0.0), dc.masked_fill(v, 0.0)
            dh = (dh + self.dys[t]).masked_fill(~v, 0.0)
            dc = dc_out.masked_fill(~v, 0.0)
        if self.keep[0] is not None:  # the kept share goes straight to the previous state
            keep_h, keep_c = self.keep[0][t], self.keep[1][t]
            self.keeping = dh * keep_h, dc * keep_c
            dh, dc = dh - self.keeping[0], dc - self.keeping[1]
        if self.project_t is None:
            return dh, dc
        self.dhs[t] = dh
        hidden = self.project_t.weight_rows
        return self.project_t.mm(dh, out=dh.new_empty(dh.shape[0], hidden)), dc

    def leave(self, dgates: Tensor, dc: Tensor) -> tuple[Tensor, Tensor]:
        """``(dh, dc)`` of the step's input state from its gate gradients and ``dc``."""
        dh = self.recurrent_t.mm(
            dgates, out=dgates.new_empty(dgates.shape[0], self.recurrent_t.weight_rows)
        )
        if self.recurrent_mask is not None:  # W_hh saw the masked h_{t-1}
            dh = dh * self.recurrent_mask
        if self.passing is not None:
            dh, dc = dh + self.passing[0], dc + self.passing[1]
        if self.keeping is not None:
            dh, dc = dh + self.keeping[0], dc + self.keeping[1]
        return dh, dc
