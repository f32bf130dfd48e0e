"""The recurrence as one autograd Function with a hand-written backward (BPTT).

Shared by the ``fused`` backend (time loop in torch ops) and the ``compiled`` backend
(time loop in numba kernels): an :class:`Engine` runs the two loops; everything else is
here, once. Forward saves the activated gates ``i, f, g, o``, every ``c_t`` and
``tanh(c_t)`` (and ``m_t = o * tanh(c_t)`` when projecting). Backward walks the steps in
reverse doing only pointwise derivatives and ``dh_{t-1} = dgates_t W_hh``; the weight
gradients are single GEMMs over all ``T*B`` rows afterwards, and ``dxg`` is the buffer
of gate gradients itself (the input projection's ``dW_ih``, ``db``, ``dx`` are then
single GEMMs done by autograd outside). Each backward line mirrors a forward line::

    forward (step t)                          backward (step t, in reverse)
    gates = xg_t + h_{t-1} W_hh^T             dh_{t-1} = dgates W_hh
    i, f, o = sigmoid(.), g = tanh(.)         dgates = dact * (i(1-i), f(1-f), 1-g^2, o(1-o))
    c_t = f c_{t-1} + i g                     di = dc g, df = dc c_{t-1}, dg = dc i, dc_{t-1} = dc f
    m_t = o tanh(c_t)                         do = dm tanh(c_t), dc += dm o (1 - tanh(c_t)^2)
    h_t = m_t W_hr^T (or m_t)                 dm = dh W_hr (or dh);  dW_hr = sum_t dh_t^T m_t

Variable lengths use the validity mask of the contract: an ended sequence carries its
state (and its gradient passes through unchanged) and emits zeros.

Double backward: when ``create_graph=True`` the backward recomputes the call with the
``reference`` backend under autograd and differentiates that, so higher-order gradients
are exact on these backends too.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

import torch
from torch import Tensor

from . import reference
from .contract import PLAIN, CellOptions, valid_mask
from .contract import Recurrence as Recurrence_


@dataclass
class Buffers:
    """What the forward keeps for the backward. Slot ``t`` of ``cs``/``hs`` is the state
    before step ``t`` walking forward (slot ``t + 1`` walking in reverse)."""

    acts: Tensor  # (T, B, 4H) activated gates i, f, g, o
    cs: Tensor  # (T + 1, B, H)
    hs: Tensor  # (T + 1, B, P)
    tanh_cs: Tensor  # (T, B, H)
    ms: Tensor | None  # (T, B, H) o * tanh(c) when projecting, else None (it is hs)
    options: CellOptions = PLAIN  # the cell's options (peephole weights, clips)
    gate_clipped: Tensor | None = None  # (T, B, 4H) bool: pre-activation clamped
    cell_clipped: Tensor | None = None  # (T, B, H) bool: c_t clamped
    c_new: Tensor | None = None  # (T, B, H) the cell's c_t before zoneout mixes it


class Engine(Protocol):
    """Runs the two time loops of :class:`Recurrence` (``valid`` is (T, B, 1) or None)."""

    def forward(
        self,
        xg: Tensor,
        w_hh: Tensor,
        w_hr: Tensor | None,
        valid: Tensor | None,
        reverse: bool,
        buf: Buffers,
    ) -> None:
        """Fill ``buf`` from step pre-activations ``xg``; ``buf.cs``/``buf.hs`` hold
        ``c0``/``h0`` in their first slot on entry."""

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
        """Fill ``dgates`` (and ``dhs`` = dL/dh_t when projecting) walking back from
        ``dh = dL/dh_n``, ``dc = dL/dc_n``, adding ``dys`` (dL/dy_t) and ``dcs``
        (dL/dc_t, or None) at each step; return ``(dL/dh_0, dL/dc_0)``."""


def steps(T: int, reverse: bool, backward: bool = False) -> range:
    """The order of time steps: forward walks 0..T-1 (T-1..0 in reverse); backward the opposite."""
    return range(T - 1, -1, -1) if reverse != backward else range(T)


def slots(t: int, reverse: bool) -> tuple[int, int]:
    """``(prev, next)``: the state slots read and written by step ``t``."""
    return (t + 1, t) if reverse else (t, t + 1)


def recurrence(engine: Engine) -> Recurrence_:
    """The backend entry point (:class:`.contract.Recurrence`) running on ``engine``."""

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
        options: CellOptions = PLAIN,
    ) -> tuple[Tensor, ...]:
        outputs = run(engine, xg, h0, c0, weight_hh, weight_hr, lengths, reverse, options)
        return outputs if cell_states else outputs[:3]

    return run_recurrence


def run(
    engine: Engine,
    xg: Tensor,
    h0: Tensor,
    c0: Tensor,
    weight_hh: Tensor,
    weight_hr: Tensor | None,
    lengths: Tensor | None,
    reverse: bool,
    options: CellOptions = PLAIN,
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """``(ys, h_n, c_n, cs)`` on ``engine``: through :class:`Recurrence` when a gradient
    may be asked for, else straight through the forward loop (no autograd bookkeeping)."""
    peep = options.peephole or (None, None, None)
    inputs = (xg, h0, c0, weight_hh, weight_hr, *peep)
    if torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in inputs):
        zoneout = options.zoneout or (None, None)
        return Recurrence.apply(
            *inputs, options.recurrent_mask, *zoneout, lengths, reverse, engine,
            options.gate_clip, options.cell_clip,
        )  # fmt: skip
    return forward(engine, xg, h0, c0, weight_hh, weight_hr, lengths, reverse, options, keep=False)[
        0
    ]


def forward(
    engine: Engine,
    xg: Tensor,
    h0: Tensor,
    c0: Tensor,
    weight_hh: Tensor,
    weight_hr: Tensor | None,
    lengths: Tensor | None,
    reverse: bool,
    options: CellOptions = PLAIN,
    keep: bool = True,
) -> tuple[tuple[Tensor, Tensor, Tensor, Tensor], Buffers, Tensor | None]:
    """The forward loop: ``(ys, h_n, c_n, cs)``, the buffers it filled, the validity mask.

    With ``keep=False`` (no backward will follow) the gate and ``tanh(c)`` buffers are one
    step's worth, reused at every step (a stride-0 time axis), instead of ``T`` steps'.
    """
    T, B, G = xg.shape
    H, P = G // 4, h0.shape[1]
    valid = None if lengths is None else valid_mask(lengths, T)  # (T, B, 1)
    steps_kept = T if keep else 1
    buf = Buffers(
        acts=xg.new_empty(steps_kept, B, G).expand(T, B, G),
        cs=xg.new_empty(T + 1, B, H),
        hs=xg.new_empty(T + 1, B, P),
        tanh_cs=xg.new_empty(steps_kept, B, H).expand(T, B, H),
        ms=xg.new_empty(steps_kept, B, H).expand(T, B, H) if weight_hr is not None else None,
        options=options,
    )
    if options.gate_clip is not None:
        buf.gate_clipped = xg.new_empty(steps_kept, B, G, dtype=torch.bool).expand(T, B, G)
    if options.cell_clip is not None:
        buf.cell_clipped = xg.new_empty(steps_kept, B, H, dtype=torch.bool).expand(T, B, H)
    if options.zoneout is not None:
        buf.c_new = xg.new_empty(steps_kept, B, H).expand(T, B, H)
    first = T if reverse else 0
    buf.cs[first], buf.hs[first] = c0, h0
    engine.forward(xg, weight_hh, weight_hr, valid, reverse, buf)
    ys = buf.hs[:-1] if reverse else buf.hs[1:]  # (T, B, P), time order
    cs = buf.cs[:-1] if reverse else buf.cs[1:]  # (T, B, H)
    if valid is not None:
        ys, cs = ys.masked_fill(~valid, 0.0), cs.masked_fill(~valid, 0.0)
    last = 0 if reverse else T
    return (ys, buf.hs[last].clone(), buf.cs[last].clone(), cs), buf, valid


class Recurrence(torch.autograd.Function):
    @staticmethod
    def forward(  # type: ignore[override]
        ctx: Any,
        xg: Tensor,
        h0: Tensor,
        c0: Tensor,
        weight_hh: Tensor,
        weight_hr: Tensor | None,
        w_ci: Tensor | None,
        w_cf: Tensor | None,
        w_co: Tensor | None,
        recurrent_mask: Tensor | None,
        keep_h: Tensor | None,
        keep_c: Tensor | None,
        lengths: Tensor | None,
        reverse: bool,
        engine: Engine,
        gate_clip: float | None,
        cell_clip: float | None,
    ) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        peephole = None if w_ci is None else (w_ci, w_cf, w_co)
        zoneout = None if keep_h is None else (keep_h, keep_c)
        options = CellOptions(peephole, gate_clip, cell_clip, recurrent_mask, zoneout)
        outputs, buf, valid = forward(
            engine, xg, h0, c0, weight_hh, weight_hr, lengths, reverse, options
        )
        ctx.reverse, ctx.engine, ctx.clips = reverse, engine, (gate_clip, cell_clip)
        ctx.save_for_backward(
            xg, h0, c0, weight_hh, weight_hr, w_ci, w_cf, w_co, recurrent_mask, keep_h, keep_c,
            lengths, valid, buf.acts, buf.cs, buf.hs, buf.tanh_cs, buf.ms, buf.gate_clipped,
            buf.cell_clipped, buf.c_new,
        )  # fmt: skip
        return outputs

    @staticmethod
    def backward(
        ctx: Any, dys: Tensor | None, dh_n: Tensor | None, dc_n: Tensor | None,
        dcs: Tensor | None,
    ):  # fmt: skip
        saved = ctx.saved_tensors
        if torch.is_grad_enabled():  # create_graph=True: differentiate the reference instead
            return _reference_backward(ctx, saved[:12], (dys, dh_n, dc_n, dcs))
        xg, h0, c0, weight_hh, weight_hr, w_ci, w_cf, w_co, rmask, keep_h, keep_c = saved[:11]
        valid, acts, cs, hs, tanh_cs, ms, gate_clipped, cell_clipped, c_new = saved[12:]
        peephole = None if w_ci is None else (w_ci, w_cf, w_co)
        zoneout = None if keep_h is None else (keep_h, keep_c)
        options = CellOptions(peephole, *ctx.clips, rmask, zoneout)
        buf = Buffers(acts, cs, hs, tanh_cs, ms, options, gate_clipped, cell_clipped, c_new)
        T, B, G = acts.shape
        H, P = G // 4, hs.shape[2]
        dys = xg.new_zeros(T, B, P) if dys is None else dys.contiguous()
        dcs = None if dcs is None else dcs.contiguous()
        dh = h0.new_zeros(h0.shape) if dh_n is None else dh_n.clone()  # (B, P)
        dc = c0.new_zeros(c0.shape) if dc_n is None else dc_n.clone()  # (B, H)
        dgates = xg.new_empty(T, B, G)
        dhs = xg.new_empty(T, B, P) if weight_hr is not None else None
        dh, dc = ctx.engine.backward(
            dys, dcs, dh, dc, weight_hh, weight_hr, valid, ctx.reverse, buf, dgates, dhs
        )
        dweight_hh = dweight_hr = None
        if ctx.needs_input_grad[3]:  # sum_t dgates_t^T h_{t-1}: one GEMM over T*B rows
            h_prev = hs[1:] if ctx.reverse else hs[:-1]
            if rmask is not None:  # W_hh saw the masked h_{t-1}
                h_prev = h_prev * rmask
            dweight_hh = dgates.view(T * B, G).t() @ h_prev.reshape(T * B, P)
        if weight_hr is not None and ctx.needs_input_grad[4]:  # sum_t dh_t^T m_t
            dweight_hr = dhs.view(T * B, P).t() @ ms.view(T * B, H)
        dpeep: tuple[Tensor | None, ...] = (None, None, None)
        if w_ci is not None:  # i, f see c_{t-1}; o sees c_t: one reduction each
            c_prev, c_out = (cs[1:], cs[:-1]) if ctx.reverse else (cs[:-1], cs[1:])
            c_cell = c_out if c_new is None else c_new  # o saw the cell's c_t
            dpeep = tuple(
                (dgates[:, :, k * H : (k + 1) * H] * c).sum((0, 1))
                for k, c in ((0, c_prev), (1, c_prev), (3, c_cell))
            )
        return (dgates, dh, dc, dweight_hh, dweight_hr, *dpeep, *[None] * 8)


def _reference_backward(ctx: Any, inputs: tuple, grads: tuple) -> tuple:
    """Gradients that are themselves differentiable, from the reference recurrence."""
    xg, h0, c0, weight_hh, weight_hr, w_ci, w_cf, w_co, rmask, keep_h, keep_c, lengths = inputs
    tensors = (xg, h0, c0, weight_hh, weight_hr, w_ci, w_cf, w_co)
    peephole = None if w_ci is None else (w_ci, w_cf, w_co)
    zoneout = None if keep_h is None else (keep_h, keep_c)
    options = CellOptions(peephole, *ctx.clips, rmask, zoneout)
    wanted = [k for k, x in enumerate(tensors) if ctx.needs_input_grad[k] and x is not None]
    with torch.enable_grad():
        outs = reference.run_recurrence(
            xg, h0, c0, weight_hh, weight_hr, lengths=lengths, reverse=ctx.reverse,
            cell_states=True, options=options,
        )  # fmt: skip
        pairs = [(o, g) for o, g in zip(outs, grads) if g is not None]
        got = torch.autograd.grad(
            [o for o, _ in pairs],
            [tensors[k] for k in wanted],
            [g for _, g in pairs],
            create_graph=True,
            allow_unused=True,
        )
    result: list[Tensor | None] = [None] * 16
    for k, grad in zip(wanted, got):
        result[k] = grad
    return tuple(result)
