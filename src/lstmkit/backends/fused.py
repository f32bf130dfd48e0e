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
from .steps import BackwardSteps, ForwardSteps


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
        around = ForwardSteps(w_hh, w_hr, valid, buf)
        scratch = xg.new_empty(B, G)
        a_t, c_s, h_s, tc_t = (x.unbind(0) for x in (buf.acts, buf.cs, buf.hs, buf.tanh_cs))
        # m_t = o * tanh(c_t) goes to its own buffer when projected, else straight into h_t
        m_t = buf.ms.unbind(0) if buf.ms is not None else (h_s[:-1] if reverse else h_s[1:])
        for t in steps(T, reverse):
            prev, nxt = slots(t, reverse)
            gates = around.recurrent.addmm(xg[t], h_s[prev], out=scratch)  # (B, 4H)
            acts = a_t[t]
            torch.sigmoid(gates, out=acts)  # i, f, o (and g, overwritten next)
            torch.tanh(gates[:, 2 * H : 3 * H], out=acts[:, 2 * H : 3 * H])
            i, f, g, o = acts.chunk(4, dim=1)
            torch.mul(f, c_s[prev], out=c_s[nxt]).addcmul_(i, g)
            torch.tanh(c_s[nxt], out=tc_t[t])
            torch.mul(o, tc_t[t], out=m_t[t])  # m_t, or h_t itself without projection
            around.finish(t, prev, nxt)

    def backward(
        self,
        dys: Tensor,
        dcs: Tensor | None,
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
        around = BackwardSteps(w_hh, w_hr, valid, dys, dcs, dhs)
        dg_t, f_t = dgates.unbind(0), f.unbind(0)
        for t in steps(T, reverse, backward=True):
            dm, dc = around.enter(t, dh, dc)
            dc = torch.addcmul(dc, dm, dc_of_dm[t])
            torch.mul(dc.unsqueeze(1), dgate_of_dc[t], out=dg_t[t][:, : 3 * H].view(B, 3, H))
            torch.mul(dm, dgate_of_dm[t], out=dg_t[t][:, 3 * H :])
            dh, dc = around.leave(dg_t[t], dc * f_t[t])
        return dh, dc


#: The recurrence contract (:mod:`lstmkit.backends.contract`) on this engine.
run_recurrence = bptt.recurrence(TorchEngine())
