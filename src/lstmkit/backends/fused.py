"""The ``fused`` backend: the hand-written BPTT of :mod:`.bptt`, its loops in torch ops.

Runs wherever torch runs (any device, any floating dtype): each step is one GEMM
(:class:`lstmkit.gemm.StepGemm`, weights prepared once per call) and a few pointwise ops
writing into preallocated buffers; the backward loop is the forward's mirror (see
:mod:`.bptt` for the equations).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from ..activations import CELL_ACTIVATIONS, GATE_ACTIVATIONS
from ..cell import LN_EPS
from ..options import CELL_OPTIONS
from . import bptt
from .buffers import Buffers, Grads, Walk, slots, steps
from .steps import BackwardSteps, ForwardSteps

#: The cell options this backend implements (all of them).
OPTIONS = CELL_OPTIONS


class TorchEngine:
    """The two time loops of :class:`.bptt.Recurrence` in torch ops."""

    def forward(self, xg: Tensor, walk: Walk, buf: Buffers) -> None:
        w_hh, w_hr, valid, reverse = walk
        T, B, G = xg.shape
        H = G // 4
        around = ForwardSteps(w_hh, w_hr, valid, buf)
        scratch = xg.new_empty(B, G)
        a_t, c_s, h_s, tc_t = (x.unbind(0) for x in (buf.acts, buf.cs, buf.hs, buf.tanh_cs))
        # m_t = o * tanh(c_t) goes to its own buffer when projected, else straight into h_t
        m_t = buf.ms.unbind(0) if buf.ms is not None else (h_s[:-1] if reverse else h_s[1:])
        cfg, ten = buf.config, buf.tensors
        sigma = GATE_ACTIVATIONS[cfg.recurrent_activation].fn
        act = CELL_ACTIVATIONS[cfg.activation].fn
        # with a peephole, o waits for c_t; otherwise all four gates are clipped at once
        early = 3 * H if cfg.peephole else G
        for t in steps(T, reverse):
            prev, nxt = slots(t, reverse)
            if cfg.layer_norm:  # xg_t + LN(h_{t-1} W_hh^T) * g_hh
                rec = around.recurrent.mm(around.h_in(prev), out=scratch)
                rec_hat = _normalize(rec, buf.rec_hat[t], buf.rec_rstd[t])
                gates = torch.addcmul(xg[t], rec_hat, ten["ln_weight_hh"], out=scratch)
            else:
                gates = around.recurrent.addmm(xg[t], around.h_in(prev), out=scratch)  # (B, 4H)
            if cfg.peephole:  # i, f see c_{t-1}
                gates[:, :H].addcmul_(ten["weight_ci"], c_s[prev])
                gates[:, H : 2 * H].addcmul_(ten["weight_cf"], c_s[prev])
            if cfg.gate_clip is not None:
                _clip_(gates[:, :early], cfg.gate_clip, buf.gate_clipped[t][:, :early])
            acts = a_t[t]
            _apply(sigma, gates, acts)  # i, f, o (and g, overwritten next)
            _apply(act, gates[:, 2 * H : 3 * H], acts[:, 2 * H : 3 * H])
            i, f, g, o = acts.chunk(4, dim=1)
            torch.mul(f, c_s[prev], out=c_s[nxt]).addcmul_(i, g)
            if cfg.cell_clip is not None:
                _clip_(c_s[nxt], cfg.cell_clip, buf.cell_clipped[t])
            if cfg.peephole:  # o sees c_t
                zo = torch.addcmul(gates[:, 3 * H :], ten["weight_co"], c_s[nxt])
                if cfg.gate_clip is not None:
                    _clip_(zo, cfg.gate_clip, buf.gate_clipped[t][:, 3 * H :])
                _apply(sigma, zo, o)
            c_out = c_s[nxt]
            if cfg.layer_norm:  # LN(c_t) * g_c + beta_c
                c_hat = _normalize(c_out, buf.c_hat[t], buf.c_rstd[t])
                c_out = torch.addcmul(ten["ln_bias_c"], c_hat, ten["ln_weight_c"])
            _apply(act, c_out, tc_t[t])
            torch.mul(o, tc_t[t], out=m_t[t])  # m_t, or h_t itself without projection
            around.finish(t, prev, nxt)

    def backward(
        self, dys: Tensor, dcs: Tensor | None, dh: Tensor, dc: Tensor, walk: Walk, buf: Buffers,
        grads: Grads,
    ) -> tuple[Tensor, Tensor]:  # fmt: skip
        w_hh, w_hr, valid, reverse = walk
        dgates = grads.dgates
        T, B, G = dgates.shape
        H = G // 4
        cfg, ten = buf.config, buf.tensors
        sigma = GATE_ACTIVATIONS[cfg.recurrent_activation].slope
        act = CELL_ACTIVATIONS[cfg.activation].slope
        # Everything that does not depend on the step, once for all T.
        i, f, g, o = buf.acts.chunk(4, dim=2)  # (T, B, H) each
        c_prev = buf.cs[1:] if reverse else buf.cs[:-1]
        tanh_cs = buf.tanh_cs
        dgate_of_dc = torch.cat(  # d(i, f, g pre-activations) / dc, times the activation slope
            (g * sigma(i), c_prev * sigma(f), i * act(g)), dim=2
        ).view(T, B, 3, H)
        dgate_of_dm = tanh_cs * sigma(o)  # d(o pre-activation) / dm
        dc_of_dm = o * act(tanh_cs)  # dc (or d(LN(c) g + beta) with layer norm) / dm
        if cfg.gate_clip is not None:  # a clamped pre-activation passes no gradient
            kept = ~buf.gate_clipped
            dgate_of_dc = dgate_of_dc * kept[..., : 3 * H].view(T, B, 3, H)
            dgate_of_dm = dgate_of_dm * kept[..., 3 * H :]
        c_kept = None if cfg.cell_clip is None else (~buf.cell_clipped).to(dc.dtype)
        around = BackwardSteps(w_hh, w_hr, valid, dys, dcs, grads.dhs, ten)
        dg_t, f_t = dgates.unbind(0), f.unbind(0)
        for t in steps(T, reverse, backward=True):
            dm, dc = around.enter(t, dh, dc)
            dzo = torch.mul(dm, dgate_of_dm[t], out=dg_t[t][:, 3 * H :])
            if cfg.layer_norm:  # through h = o act(LN(c) g_c + beta_c)
                dnorm = torch.mul(dm, dc_of_dm[t], out=grads.dnorm_c[t])
                dnorm = dnorm * ten["ln_weight_c"]
                dc = dc + _normalize_backward(dnorm, buf.c_hat[t], buf.c_rstd[t])
            else:
                dc = torch.addcmul(dc, dm, dc_of_dm[t])
            if cfg.peephole:  # o saw c_t
                dc = dc.addcmul_(dzo, ten["weight_co"])
            if c_kept is not None:  # a clamped c_t passes no gradient to its update
                dc = dc * c_kept[t]
            torch.mul(dc.unsqueeze(1), dgate_of_dc[t], out=dg_t[t][:, : 3 * H].view(B, 3, H))
            dc = dc * f_t[t]
            if cfg.peephole:  # i, f saw c_{t-1}
                dc.addcmul_(dg_t[t][:, :H], ten["weight_ci"])
                dc.addcmul_(dg_t[t][:, H : 2 * H], ten["weight_cf"])
            drec = dg_t[t]
            if cfg.layer_norm:  # the recurrent product went through LN * g_hh
                drec = grads.drec[t]
                drec.copy_(_normalize_backward(dg_t[t] * ten["ln_weight_hh"], buf.rec_hat[t],
                                               buf.rec_rstd[t]))  # fmt: skip
            dh, dc = around.leave(drec, dc)
        return dh, dc


#: The recurrence contract (:mod:`lstmkit.backends.contract`) on this engine.
run_recurrence = bptt.recurrence(TorchEngine())


def _apply(activation: Callable[[Tensor], Tensor], x: Tensor, out: Tensor) -> None:
    """``out = activation(x)``, without a temporary for torch's sigmoid and tanh."""
    if activation is torch.sigmoid or activation is torch.tanh:
        activation(x, out=out)
    else:
        out.copy_(activation(x))


def _normalize(z: Tensor, hat: Tensor, rstd: Tensor) -> Tensor:
    """``hat = (z - mean(z)) * rstd`` over the last axis, ``rstd = 1/sqrt(var(z) + eps)``
    (biased variance), both written into the given buffers; returns ``hat``."""
    var, mean = torch.var_mean(z, dim=1, keepdim=True, correction=0)
    torch.rsqrt(var.add_(LN_EPS), out=rstd)
    return torch.sub(z, mean, out=hat).mul_(rstd)


def _normalize_backward(dhat: Tensor, hat: Tensor, rstd: Tensor) -> Tensor:
    """dL/dz from ``dhat = dL/dhat`` of :func:`_normalize`:
    ``rstd * (dhat - mean(dhat) - hat * mean(dhat * hat))``."""
    mean_d = dhat.mean(dim=1, keepdim=True)
    mean_dh = (dhat * hat).mean(dim=1, keepdim=True)
    return (dhat - mean_d).sub_(hat * mean_dh).mul_(rstd)


def _clip_(x: Tensor, limit: float, clipped: Tensor) -> None:
    """Clamp ``x`` to ``[-limit, limit]`` in place, recording where it was clamped."""
    torch.gt(x.abs(), limit, out=clipped)
    x.clamp_(-limit, limit)
