"""The ``fused`` backend: the recurrence as one autograd Function with a hand-written BPTT.

Forward runs the cell equations step by step into preallocated buffers, saving the
activated gates ``i, f, g, o``, every ``c_t`` and ``tanh(c_t)``. Backward walks the steps
in reverse doing only pointwise derivatives and ``dh_{t-1} = dgates_t W_hh``; the weight
gradient is one GEMM over all ``T*B`` rows afterwards, and ``dxg`` is the buffer of gate
gradients itself (the input projection's ``dW_ih``, ``db``, ``dx`` are then single GEMMs
done by autograd outside). Each backward line mirrors a forward line::

    forward (step t)                          backward (step t, in reverse)
    gates = xg_t + h_{t-1} W_hh^T             dh_{t-1} = dgates W_hh
    i, f, o = sigmoid(.), g = tanh(.)         dgates = dact * (i(1-i), f(1-f), 1-g^2, o(1-o))
    c_t = f c_{t-1} + i g                     di = dc g, df = dc c_{t-1}, dg = dc i, dc_{t-1} = dc f
    m_t = o tanh(c_t)                         do = dm tanh(c_t), dc += dm o (1 - tanh(c_t)^2)
    h_t = m_t W_hr^T (or m_t)                 dm = dh W_hr (or dh);  dW_hr = sum_t dh_t^T m_t

Variable lengths use the validity mask of the contract: an ended sequence carries its
state (and its gradient passes through unchanged) and emits zeros.

Double backward: when ``create_graph=True`` the backward recomputes this call with the
``reference`` backend under autograd and differentiates that, so higher-order gradients
are exact on this backend too.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from . import reference
from .contract import valid_mask
from .gemm import StepGemm


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
    ys, h_n, c_n = FusedRecurrence.apply(xg, h0, c0, weight_hh, weight_hr, lengths, reverse)
    return ys, h_n, c_n


class FusedRecurrence(torch.autograd.Function):
    @staticmethod
    def forward(  # type: ignore[override]
        ctx: Any,
        xg: Tensor,
        h0: Tensor,
        c0: Tensor,
        weight_hh: Tensor,
        weight_hr: Tensor | None,
        lengths: Tensor | None,
        reverse: bool,
    ) -> tuple[Tensor, Tensor, Tensor]:
        T, B, G = xg.shape
        H, P = G // 4, h0.shape[1]
        valid = None if lengths is None else valid_mask(lengths, T)  # (T, B, 1)
        acts = xg.new_empty(T, B, G)  # activated gates i, f, g, o
        cs = xg.new_empty(T + 1, B, H)  # c before the first step, then after each step
        hs = xg.new_empty(T + 1, B, P)  # likewise h
        tanh_cs = xg.new_empty(T, B, H)
        ms = xg.new_empty(T, B, H) if weight_hr is not None else tanh_cs  # o * tanh(c)
        first = T if reverse else 0
        cs[first], hs[first] = c0, h0
        recurrent = StepGemm(weight_hh, B)
        project = StepGemm(weight_hr, B) if weight_hr is not None else None
        a_t, c_s, h_s, tc_t, m_t = (x.unbind(0) for x in (acts, cs, hs, tanh_cs, ms))
        for t in range(T - 1, -1, -1) if reverse else range(T):
            prev, nxt = (t + 1, t) if reverse else (t, t + 1)
            gates = recurrent.addmm(xg[t], h_s[prev], out=a_t[t])  # (B, 4H)
            torch.sigmoid(gates[:, : 2 * H], out=a_t[t][:, : 2 * H])
            torch.tanh(gates[:, 2 * H : 3 * H], out=a_t[t][:, 2 * H : 3 * H])
            torch.sigmoid(gates[:, 3 * H :], out=a_t[t][:, 3 * H :])
            i, f, g, o = a_t[t].chunk(4, dim=1)
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
        ys = hs[:-1] if reverse else hs[1:]  # (T, B, P), time order
        if valid is not None:
            ys = ys.masked_fill(~valid, 0.0)
        last = 0 if reverse else T
        ctx.reverse = reverse
        ctx.save_for_backward(
            xg, h0, c0, weight_hh, weight_hr, lengths, valid, acts, cs, hs, tanh_cs, ms
        )
        return ys, hs[last].clone(), cs[last].clone()

    @staticmethod
    def backward(ctx: Any, dys: Tensor | None, dh_n: Tensor | None, dc_n: Tensor | None):
        saved = ctx.saved_tensors
        xg, h0, c0, weight_hh, weight_hr, _ = saved[:6]
        if torch.is_grad_enabled():  # create_graph=True: differentiate the reference instead
            return _reference_backward(ctx, saved[:6], (dys, dh_n, dc_n))
        valid, acts, cs, hs, tanh_cs, ms = saved[6:]
        reverse = ctx.reverse
        T, B, G = acts.shape
        H = G // 4
        dys = xg.new_zeros(T, B, hs.shape[2]) if dys is None else dys
        dh = h0.new_zeros(h0.shape) if dh_n is None else dh_n.clone()  # (B, P)
        dc = c0.new_zeros(c0.shape) if dc_n is None else dc_n.clone()  # (B, H)

        # Everything that does not depend on the step, once for all T.
        i, f, g, o = acts.chunk(4, dim=2)  # (T, B, H) each
        c_prev = cs[1:] if reverse else cs[:-1]
        h_prev = hs[1:] if reverse else hs[:-1]
        dgate_of_dc = torch.cat(  # d(i, f, g pre-activations) / dc, times the activation slope
            (g * i * (1 - i), c_prev * f * (1 - f), i * (1 - g * g)), dim=2
        ).view(T, B, 3, H)
        dgate_of_dm = tanh_cs * o * (1 - o)  # d(o pre-activation) / dm
        dc_of_dm = o * (1 - tanh_cs * tanh_cs)  # dc / dm through tanh(c)

        dgates = xg.new_empty(T, B, G)
        dhs = xg.new_empty(T, B, hs.shape[2]) if weight_hr is not None else None
        recurrent_t = StepGemm(weight_hh.t(), B)  # dgates W_hh
        project_t = StepGemm(weight_hr.t(), B) if weight_hr is not None else None
        dg_t, dy_t, f_t = dgates.unbind(0), dys.unbind(0), f.unbind(0)
        for t in range(T) if reverse else range(T - 1, -1, -1):
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
            dh = recurrent_t.mm(dg_t[t], out=dh.new_empty(B, h0.shape[1]))
            if valid is not None:
                dh, dc = dh + dh_pass, dc + dc_pass

        rows = dgates.view(T * B, G)
        dweight_hh = (
            rows.t() @ h_prev.reshape(T * B, hs.shape[2]) if ctx.needs_input_grad[3] else None
        )
        dweight_hr = None
        if weight_hr is not None and ctx.needs_input_grad[4]:
            dweight_hr = dhs.view(T * B, hs.shape[2]).t() @ ms.view(T * B, H)
        return dgates, dh, dc, dweight_hh, dweight_hr, None, None


def _reference_backward(ctx: Any, inputs: tuple, grads: tuple) -> tuple:
    """Gradients that are themselves differentiable, from the reference recurrence."""
    xg, h0, c0, weight_hh, weight_hr, lengths = inputs
    tensors = (xg, h0, c0, weight_hh, weight_hr)
    wanted = [k for k, x in enumerate(tensors) if ctx.needs_input_grad[k] and x is not None]
    with torch.enable_grad():
        outs = reference.run_recurrence(
            xg, h0, c0, weight_hh, weight_hr, lengths=lengths, reverse=ctx.reverse
        )
        pairs = [(o, g) for o, g in zip(outs, grads) if g is not None]
        got = torch.autograd.grad(
            [o for o, _ in pairs],
            [tensors[k] for k in wanted],
            [g for _, g in pairs],
            create_graph=True,
            allow_unused=True,
        )
    result: list[Tensor | None] = [None] * 7
    for k, grad in zip(wanted, got):
        result[k] = grad
    return tuple(result)
