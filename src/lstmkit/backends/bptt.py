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

The cell options add mirrored lines: other activations use their slopes written from
their outputs (:mod:`lstmkit.activations`) in place of ``i(1-i)`` and ``1-g^2``; with
layer normalisation ``dc`` and ``dh_{t-1}`` pass through the normalisation's backward
(``rstd (dy - mean(dy) - hat mean(dy hat))``) and the gains' gradients are one reduction
each; clips zero the gradient where they acted; zoneout sends the kept share of ``dh``,
``dc`` straight to the previous state.

Variable lengths use the validity mask of the contract: an ended sequence carries its
state (and its gradient passes through unchanged) and emits zeros.

Double backward: when ``create_graph=True`` the backward recomputes the call with the
``reference`` backend under autograd and differentiates that, so higher-order gradients
are exact on these backends too.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor

from ..options import NO_TENSORS, PLAIN, CellConfig
from . import reference
from .buffers import Buffers, Engine, Grads, Walk
from .contract import Recurrence as Recurrence_
from .contract import valid_mask


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
        config: CellConfig = PLAIN,
        tensors: Mapping[str, Tensor] = NO_TENSORS,
    ) -> tuple[Tensor, ...]:
        outputs = run(engine, xg, h0, c0, weight_hh, weight_hr, lengths, reverse, config, tensors)
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
    config: CellConfig = PLAIN,
    tensors: Mapping[str, Tensor] = NO_TENSORS,
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """``(ys, h_n, c_n, cs)`` on ``engine``: through :class:`Recurrence` when a gradient
    may be asked for, else straight through the forward loop (no autograd bookkeeping)."""
    values = [tensors[name] for name in config.tensor_names()]
    inputs = (xg, h0, c0, weight_hh, weight_hr, *values)
    if torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in inputs):
        return Recurrence.apply(
            xg, h0, c0, weight_hh, weight_hr, lengths, reverse, engine, config, *values
        )
    infer = getattr(engine, "infer", None)  # an engine's own path without autograd
    if infer is not None:
        valid = None if lengths is None else valid_mask(lengths, xg.shape[0])
        return infer(xg, h0, c0, Walk(weight_hh, weight_hr, valid, reverse), config, tensors)
    outputs, _, _ = forward(
        engine, xg, h0, c0, weight_hh, weight_hr, lengths, reverse, config, tensors, keep=False
    )
    return outputs


def forward(
    engine: Engine,
    xg: Tensor,
    h0: Tensor,
    c0: Tensor,
    weight_hh: Tensor,
    weight_hr: Tensor | None,
    lengths: Tensor | None,
    reverse: bool,
    config: CellConfig = PLAIN,
    tensors: Mapping[str, Tensor] = NO_TENSORS,
    keep: bool = True,
) -> tuple[tuple[Tensor, Tensor, Tensor, Tensor], Buffers, Tensor | None]:
    """The forward loop: ``(ys, h_n, c_n, cs)``, the buffers it filled, the validity mask.

    With ``keep=False`` (no backward will follow) the per-step buffers (gates,
    ``tanh(c)``, ...) are one step's worth, reused at every step (a stride-0 time axis),
    instead of ``T`` steps'.
    """
    T, B, G = xg.shape
    H, P = G // 4, h0.shape[1]
    valid = None if lengths is None else valid_mask(lengths, T)  # (T, B, 1)
    steps_kept = T if keep else 1

    def per_step(width: int, dtype: torch.dtype | None = None) -> Tensor:
        return xg.new_empty(steps_kept, B, width, dtype=dtype).expand(T, B, width)

    buf = Buffers(
        acts=per_step(G),
        cs=xg.new_empty(T + 1, B, H),
        hs=xg.new_empty(T + 1, B, P),
        tanh_cs=per_step(H),
        ms=per_step(H) if weight_hr is not None else None,
        config=config,
        tensors=tensors,
    )
    if config.gate_clip is not None:
        buf.gate_clipped = per_step(G, torch.bool)
    if config.cell_clip is not None:
        buf.cell_clipped = per_step(H, torch.bool)
    if config.zoneout:
        buf.c_new = per_step(H)
    if config.layer_norm:
        buf.rec_hat, buf.rec_rstd, buf.c_hat, buf.c_rstd = (
            per_step(G), per_step(1), per_step(H), per_step(1)
        )  # fmt: skip
    first = T if reverse else 0
    buf.cs[first], buf.hs[first] = c0, h0
    engine.forward(xg, Walk(weight_hh, weight_hr, valid, reverse), buf)
    return results(buf.hs, buf.cs, valid, reverse), buf, valid


def results(
    hs: Tensor, cs: Tensor, valid: Tensor | None, reverse: bool
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """``(ys, h_n, c_n, cs)`` from the state slots ``hs (T + 1, B, P)``, ``cs (T + 1, B,
    H)`` a forward loop filled: every step's state in time order, zeros past each
    sequence's end, and the state after the last step."""
    ys_t = hs[:-1] if reverse else hs[1:]  # (T, B, P), time order
    cs_t = cs[:-1] if reverse else cs[1:]  # (T, B, H)
    if valid is not None:
        ys_t, cs_t = ys_t.masked_fill(~valid, 0.0), cs_t.masked_fill(~valid, 0.0)
    last = 0 if reverse else hs.shape[0] - 1
    return ys_t, hs[last].clone(), cs[last].clone(), cs_t


class Recurrence(torch.autograd.Function):
    """The recurrence under autograd. ``config`` holds the options; their tensors follow
    one by one, in the order of ``config.tensor_names()``, so autograd sees each."""

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
        engine: Engine,
        config: CellConfig,
        *values: Tensor,
    ) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        tensors = dict(zip(config.tensor_names(), values))
        outputs, buf, valid = forward(
            engine, xg, h0, c0, weight_hh, weight_hr, lengths, reverse, config, tensors
        )
        ctx.reverse, ctx.engine, ctx.config = reverse, engine, config
        ctx.save_for_backward(
            xg, h0, c0, weight_hh, weight_hr, lengths, valid, *buf.saved(), *values
        )
        return outputs

    @staticmethod
    def backward(
        ctx: Any, dys: Tensor | None, dh_n: Tensor | None, dc_n: Tensor | None,
        dcs: Tensor | None,
    ):  # fmt: skip
        saved = ctx.saved_tensors
        xg, h0, c0, weight_hh, weight_hr, lengths, valid = saved[:7]
        names = ctx.config.tensor_names()
        tensors = dict(zip(names, saved[len(saved) - len(names) :]))
        if torch.is_grad_enabled():  # create_graph=True: differentiate the reference instead
            inputs = (xg, h0, c0, weight_hh, weight_hr, lengths)
            return _reference_backward(ctx, inputs, tensors, (dys, dh_n, dc_n, dcs))
        buffers = saved[7 : len(saved) - len(names)]
        buf = Buffers(*buffers[:5], ctx.config, tensors, *buffers[5:])
        got = backward(
            ctx.engine, xg, h0, c0, weight_hh, weight_hr, valid, ctx.reverse, buf,
            (dys, dh_n, dc_n, dcs), ctx.needs_input_grad[3], ctx.needs_input_grad[4],
        )  # fmt: skip
        dxg, dh, dc, dweight_hh, dweight_hr, dtensors = got
        return (
            dxg, dh, dc, dweight_hh, dweight_hr, None, None, None, None,
            *(dtensors.get(name) for name in names),
        )  # fmt: skip


def backward(
    engine: Engine,
    xg: Tensor,
    h0: Tensor,
    c0: Tensor,
    weight_hh: Tensor,
    weight_hr: Tensor | None,
    valid: Tensor | None,
    reverse: bool,
    buf: Buffers,
    douts: tuple[Tensor | None, Tensor | None, Tensor | None, Tensor | None],
    need_weight_hh: bool = True,
    need_weight_hr: bool = True,
) -> tuple[Any, ...]:
    """The hand-written backward of :func:`forward`, from ``douts = (dys, dh_n, dc_n,
    dcs)`` (``None`` where no gradient came): ``(dxg, dh0, dc0, dweight_hh, dweight_hr,
    dtensors)``, ``None`` for weights whose gradient is not needed; ``dtensors`` has the
    gradients of the trainable option tensors by name (peepholes, layer-norm gains)."""
    dys, dh_n, dc_n, dcs = douts
    config, tensors = buf.config, buf.tensors
    T, B, G = buf.acts.shape
    H, P = G // 4, buf.hs.shape[2]
    norm = config.layer_norm
    dys = xg.new_zeros(T, B, P) if dys is None else dys.contiguous()
    dcs = None if dcs is None else dcs.contiguous()
    dh = h0.new_zeros(h0.shape) if dh_n is None else dh_n.clone()  # (B, P)
    dc = c0.new_zeros(c0.shape) if dc_n is None else dc_n.clone()  # (B, H)
    grads = Grads(
        dgates=xg.new_empty(T, B, G),
        dhs=xg.new_empty(T, B, P) if weight_hr is not None else None,
        drec=xg.new_empty(T, B, G) if norm else None,
        dnorm_c=xg.new_empty(T, B, H) if norm else None,
    )
    walk = Walk(weight_hh, weight_hr, valid, reverse)
    dh, dc = engine.backward(dys, dcs, dh, dc, walk, buf, grads)
    dgates = grads.dgates
    dweight_hh = dweight_hr = None
    if need_weight_hh:  # sum_t drec_t^T h_{t-1}: one GEMM over T*B rows
        h_prev = buf.hs[1:] if reverse else buf.hs[:-1]
        if config.recurrent_dropout:  # W_hh saw the masked h_{t-1}
            h_prev = h_prev * tensors["recurrent_mask"]
        drec = grads.drec if norm else dgates
        dweight_hh = drec.view(T * B, G).t() @ h_prev.reshape(T * B, P)
    if weight_hr is not None and need_weight_hr:  # sum_t dh_t^T m_t
        dweight_hr = grads.dhs.view(T * B, P).t() @ buf.ms.view(T * B, H)
    dtensors: dict[str, Tensor] = {}
    if config.peephole:  # i, f see c_{t-1}; o sees c_t: one reduction each
        cs = buf.cs
        c_prev, c_out = (cs[1:], cs[:-1]) if reverse else (cs[:-1], cs[1:])
        c_cell = c_out if buf.c_new is None else buf.c_new  # o saw the cell's c_t
        for name, k, c in (("weight_ci", 0, c_prev), ("weight_cf", 1, c_prev),
                           ("weight_co", 3, c_cell)):  # fmt: skip
            dtensors[name] = (dgates[:, :, k * H : (k + 1) * H] * c).sum((0, 1))
    if norm:  # gains and bias: one reduction each
        dtensors["ln_weight_hh"] = (dgates * buf.rec_hat).sum((0, 1))
        dtensors["ln_weight_c"] = (grads.dnorm_c * buf.c_hat).sum((0, 1))
        dtensors["ln_bias_c"] = grads.dnorm_c.sum((0, 1))
    return (dgates, dh, dc, dweight_hh, dweight_hr, dtensors)


def _reference_backward(
    ctx: Any, inputs: tuple, tensors: dict[str, Tensor], grads: tuple
) -> tuple[Tensor | None, ...]:
    """Gradients that are themselves differentiable, from the reference recurrence."""
    xg, h0, c0, weight_hh, weight_hr, lengths = inputs
    state = (xg, h0, c0, weight_hh, weight_hr)
    every = (*state, None, None, None, None, *tensors.values())  # as Recurrence's inputs
    wanted = [k for k, x in enumerate(every) if x is not None and ctx.needs_input_grad[k]]
    with torch.enable_grad():
        outs = reference.run_recurrence(
            xg, h0, c0, weight_hh, weight_hr, lengths=lengths, reverse=ctx.reverse,
            cell_states=True, config=ctx.config, tensors=tensors,
        )  # fmt: skip
        pairs = [(o, g) for o, g in zip(outs, grads) if g is not None]
        got = torch.autograd.grad(
            [o for o, _ in pairs],
            [every[k] for k in wanted],
            [g for _, g in pairs],
            create_graph=True,
            allow_unused=True,
        )
    result: list[Tensor | None] = [None] * len(every)
    for k, grad in zip(wanted, got):
        result[k] = grad
    return tuple(result)
