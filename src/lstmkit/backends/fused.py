"""The ``fused`` backend: the hand-written BPTT of :mod:`.bptt`, its loops in torch ops.

Runs wherever torch runs (any device, any floating dtype): each step is one GEMM
(:class:`.gemm.StepGemm`, weights prepared once per call) and a few pointwise ops
writing into preallocated buffers; the backward loop is the forward's mirror (see
:mod:`.bptt` for the equations).
"""

from __future__ import annotations

import torch
from torch import Tensor

from . import bptt
from .bptt import Buffers, slots, steps
from .gemm import StepGemm


class TorchEngine:
    """The two time loops of :class:`.bptt.Recurrence` in torch ops."""

    def forward(
        self,
        xg: Tensor,
        w_hh: Tensor,
        w_hr: Tensor | None,
        valid: Tensor | None,
        reverse: bool,
        buf: Buffers,
    ) -> None:
        T, B, G = xg.shape
        H = G // 4
        recurrent = StepGemm(w_hh, B)
        project = StepGemm(w_hr, B) if w_hr is not None else None
        scratch = xg.new_empty(B, G)
        a_t, c_s, h_s, tc_t = (x.unbind(0) for x in (buf.acts, buf.cs, buf.hs, buf.tanh_cs))
        m_t = buf.ms.unbind(0) if buf.ms is not None else None
        for t in steps(T, reverse):
            prev, nxt = slots(t, reverse)
            gates = recurrent.addmm(xg[t], h_s[prev], out=scratch)  # (B, 4H) pre-activations
            acts = a_t[t]
            torch.sigmoid(gates, out=acts)  # i, f, o (and g, overwritten next)
            torch.tanh(gates[:, 2 * H : 3 * H], out=acts[:, 2 * H : 3 * H])
            i, f, g, o = acts.chunk(4, dim=1)
            torch.mul(f, c_s[prev], out=c_s[nxt]).addcmul_(i, g)
            torch.tanh(c_s[nxt], out=tc_t[t])
            if project is None:
                torch.mul(o, tc_t[t], out=h_s[nxt])
            else:
                torch.mul(o, tc_t[t], out=m_t[t])
                h = project.mm(m_t[t], out=h_s[nxt])
                if h is not h_s[nxt]:
                    h_s[nxt].copy_(h)
            if valid is not None:  # an ended sequence keeps its state
                torch.where(valid[t], h_s[nxt], h_s[prev], out=h_s[nxt])
                torch.where(valid[t], c_s[nxt], c_s[prev], out=c_s[nxt])

    def backward(
        self,
        dys: Tensor,
        dh: Tensor,
        dc: Tensor,
        w_hh: Tensor,
        w_hr: Tensor | None,
        valid: Tensor | None,
        reverse: bool,
        buf: Buffers,
        dgates: Tensor,
        dhs: Tensor | None,
    ) -> tuple[Tensor, Tensor]:
        T, B, G = dgates.shape
        H = G // 4
        # Everything that does not depend on the step, once for all T.
        i, f, g, o = buf.acts.chunk(4, dim=2)  # (T, B, H) each
        c_prev = buf.cs[1:] if reverse else buf.cs[:-1]
        tanh_cs = buf.tanh_cs
        dgate_of_dc = torch.cat(  # d(i, f, g pre-activations) / dc, times the activation slope
            (g * i * (1 - i), c_prev * f * (1 - f), i * (1 - g * g)), dim=2
        ).view(T, B, 3, H)
        dgate_of_dm = tanh_cs * o * (1 - o)  # d(o pre-activation) / dm
        dc_of_dm = o * (1 - tanh_cs * tanh_cs)  # dc / dm through tanh(c)
        recurrent_t = StepGemm(w_hh.t(), B)  # dgates W_hh
        project_t = StepGemm(w_hr.t(), B) if w_hr is not None else None
        dg_t, dy_t, f_t = dgates.unbind(0), dys.unbind(0), f.unbind(0)
        for t in steps(T, reverse, backward=True):
            if valid is None:
                dh = dh + dy_t[t]
            else:  # ended sequences: the state's gradient passes through untouched
                dh_pass, dc_pass = dh.masked_fill(valid[t], 0.0), dc.masked_fill(valid[t], 0.0)
                dh = (dh + dy_t[t]).masked_fill(~valid[t], 0.0)
                dc = dc.masked_fill(~valid[t], 0.0)
            if project_t is None:
                dm = dh
            else:
                dhs[t] = dh
                dm = project_t.mm(dh, out=dh.new_empty(B, H))  # (B, H)
            dc = torch.addcmul(dc, dm, dc_of_dm[t])
            torch.mul(dc.unsqueeze(1), dgate_of_dc[t], out=dg_t[t][:, : 3 * H].view(B, 3, H))
            torch.mul(dm, dgate_of_dm[t], out=dg_t[t][:, 3 * H :])
            dc = dc * f_t[t]
            dh = recurrent_t.mm(dg_t[t], out=dh.new_empty(B, dh.shape[1]))
            if valid is not None:
                dh, dc = dh + dh_pass, dc + dc_pass
        return dh, dc


ENGINE = TorchEngine()


def run_recurrence(
    xg: Tensor,
    h0: Tensor,
    c0: Tensor,
    weight_hh: Tensor,
    weight_hr: Tensor | None = None,
    *,
    lengths: Tensor | None = None,
    reverse: bool = False,
) -> tuple[Tensor, Tensor, Tensor]:
    """Run one layer-direction over time; see :mod:`lstmkit.backends.contract`."""
    return bptt.run(ENGINE, xg, h0, c0, weight_hh, weight_hr, lengths, reverse)
