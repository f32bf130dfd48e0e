"""The fast engines as ``torch.library`` custom ops: what graph tracers see.

``torch.compile``, ``torch.export`` and ``torch.jit.trace`` cannot look inside the
hand-written BPTT (numba kernels, buffers filled in place). Under them each
layer-direction runs as one opaque op, ``lstmkit::recurrence``, with a shape function
for tracing and the hand-written backward as a second op, ``lstmkit::recurrence_backward``;
the numbers are the eager engine's, and the graph does not grow with ``T``::

    lstmkit::recurrence(xg, h0, c0, W_hh, W_hr?, lengths?, option tensors, config, ...)
        -> [hs (T+1, B, P), cs (T+1, B, H), h_n (B, P), c_n (B, H), *saved]
    ys, cs_t = time-ordered slots of hs, cs, zeroed past each end   (traced torch ops)

``config`` is the :class:`lstmkit.options.CellConfig` as a string (op schemas take no
objects); the option tensors are those it names (``config.tensor_names()``), in order.
``saved`` are the forward's buffers (:class:`.buffers.Buffers`, empty tensors for options
that are off), present only when a gradient may be asked for. The state slots come back
whole (not as views) because a custom op's outputs may not alias each other.

Not under torch.func transforms (``vmap``, ``grad``): the ops have no batching rule,
and ``auto`` runs the ``reference`` loop there. Double backward through a compiled graph
is refused by ``torch.compile`` itself.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor

from ..option_calls import decode
from ..options import NO_TENSORS, PLAIN, TRAINABLE, CellConfig
from . import bptt, compiled, fused
from .buffers import Buffers, Engine
from .contract import Recurrence, valid_mask
from .triton import TritonEngine

#: The engines the op can run, by the name the op is given.
ENGINES: dict[str, Engine] = {
    "fused": fused.TorchEngine(),
    "compiled": compiled.NumbaEngine(),
    "triton": TritonEngine(),
}

#: What :class:`.buffers.Buffers` holds after the state slots, in the op's output order.
_SAVED = (
    "acts", "tanh_cs", "ms", "gate_clipped", "cell_clipped", "c_new", "rec_hat", "rec_rstd",
    "c_hat", "c_rstd",
)  # fmt: skip


@torch.library.custom_op("lstmkit::recurrence", mutates_args=())
def recurrence_op(
    xg: Tensor,
    h0: Tensor,
    c0: Tensor,
    weight_hh: Tensor,
    weight_hr: Tensor | None,
    lengths: Tensor | None,
    option_tensors: list[Tensor],
    reverse: bool,
    config: str,
    engine: str,
    keep: bool,
) -> list[Tensor]:
    """One layer-direction's forward on ``engine``: the state slots, the final state and,
    with ``keep``, the buffers the backward needs."""
    cell, tensors = _options(config, option_tensors)
    (_, h_n, c_n, _), buf, _ = bptt.forward(
        ENGINES[engine], xg, h0, c0, weight_hh, weight_hr, lengths, reverse, cell, tensors,
        keep=keep,
    )  # fmt: skip
    out = [buf.hs, buf.cs, h_n, c_n]
    if keep:
        out += [xg.new_empty(0) if getattr(buf, n) is None else getattr(buf, n) for n in _SAVED]
    return out


def _options(config: str, option_tensors: list[Tensor]) -> tuple[CellConfig, dict[str, Tensor]]:
    """The op's configuration and its option tensors by name."""
    cell = decode(config)
    return cell, dict(zip(cell.tensor_names(), option_tensors))


@recurrence_op.register_fake
def _(xg, h0, c0, weight_hh, weight_hr, lengths, option_tensors, reverse, config, engine,
      keep):  # fmt: skip
    T, B, G = xg.shape
    H, P = G // 4, h0.shape[1]
    out = [xg.new_empty(T + 1, B, P), xg.new_empty(T + 1, B, H), h0.new_empty(B, P),
           c0.new_empty(B, H)]  # fmt: skip
    if keep:
        shapes = _saved_shapes(decode(config), weight_hr is not None, T, B, H)
        out += [
            xg.new_empty(0) if shape is None else xg.new_empty(shape, dtype=dtype)
            for shape, dtype in shapes
        ]
    return out


def _saved_shapes(
    config: CellConfig, projected: bool, T: int, B: int, H: int
) -> list[tuple[tuple[int, ...] | None, torch.dtype | None]]:
    """Shape (``None`` when absent) and dtype of each :data:`_SAVED` buffer."""
    G, norm = 4 * H, config.layer_norm
    return [
        ((T, B, G), None),
        ((T, B, H), None),
        ((T, B, H) if projected else None, None),
        ((T, B, G) if config.gate_clip is not None else None, torch.bool),
        ((T, B, H) if config.cell_clip is not None else None, torch.bool),
        ((T, B, H) if config.zoneout else None, None),
        ((T, B, G) if norm else None, None),
        ((T, B, 1) if norm else None, None),
        ((T, B, H) if norm else None, None),
        ((T, B, 1) if norm else None, None),
    ]


@torch.library.custom_op("lstmkit::recurrence_backward", mutates_args=())
def recurrence_backward_op(
    douts: list[Tensor],
    douts_given: list[bool],
    xg: Tensor,
    h0: Tensor,
    c0: Tensor,
    weight_hh: Tensor,
    weight_hr: Tensor | None,
    lengths: Tensor | None,
    option_tensors: list[Tensor],
    saved: list[Tensor],
    reverse: bool,
    config: str,
    engine: str,
) -> list[Tensor]:
    """The hand-written backward of :func:`recurrence_op` from the gradients of its
    outputs ``douts = (dhs, dcs, dh_n, dc_n)`` (those not ``douts_given`` are unused):
    ``(dxg, dh0, dc0, dW_hh, dW_hr, *d option_tensors)``, empty tensors where an input
    has no gradient (masks and zoneout keep weights are data)."""
    cell, tensors = _options(config, option_tensors)
    hs, cs = saved[0], saved[1]
    named = {n: (None if t.numel() == 0 else t) for n, t in zip(_SAVED, saved[2:])}
    buf = Buffers(hs=hs, cs=cs, config=cell, tensors=tensors, **named)
    T = xg.shape[0]
    valid = None if lengths is None else valid_mask(lengths, T)
    dhs, dcs, dh_n, dc_n = (d if given else None for d, given in zip(douts, douts_given))
    dys = None if dhs is None else (dhs[:-1] if reverse else dhs[1:])
    dcs_t = None if dcs is None else (dcs[:-1] if reverse else dcs[1:])
    grads = bptt.backward(
        ENGINES[engine], xg, h0, c0, weight_hh, weight_hr, valid, reverse, buf,
        (dys, dh_n, dc_n, dcs_t),
    )  # fmt: skip
    dxg, dh0, dc0, dw_hh, dw_hr, dtensors = grads
    dgiven = [dtensors.get(name) for name in tensors]
    return [_or_empty(g, xg) for g in (dxg, dh0, dc0, dw_hh, dw_hr, *dgiven)]


@recurrence_backward_op.register_fake
def _(douts, douts_given, xg, h0, c0, weight_hh, weight_hr, lengths, option_tensors, saved,
      reverse, config, engine):  # fmt: skip
    like = (xg, h0, c0, weight_hh, weight_hr)
    grads = [xg.new_empty(0) if t is None else torch.empty_like(t) for t in like]
    for name, t in _options(config, option_tensors)[1].items():
        grads.append(torch.empty_like(t) if name in TRAINABLE else xg.new_empty(0))
    return grads


def _or_empty(t: Tensor | None, like: Tensor) -> Tensor:
    return like.new_empty(0) if t is None else t


def _setup_context(ctx: Any, inputs: tuple, output: list[Tensor]) -> None:
    (xg, h0, c0, weight_hh, weight_hr, lengths, option_tensors, reverse, config, engine,
     keep) = inputs  # fmt: skip
    if not keep:
        raise RuntimeError(
            "lstmkit::recurrence was traced without its backward buffers (keep=False) "
            "but a gradient is needed: trace the call with gradients enabled"
        )
    ctx.statics = (reverse, config, engine)
    ctx.has = (weight_hr is not None, lengths is not None, len(option_tensors))
    ctx.trainable = [name in TRAINABLE for name in decode(config).tensor_names()]
    present = [t for t in (weight_hr, lengths, *option_tensors) if t is not None]
    ctx.save_for_backward(xg, h0, c0, weight_hh, *present, output[0], output[1], *output[4:])


def _backward(ctx: Any, grads: list[Tensor | None]) -> tuple:
    saved = list(ctx.saved_tensors)
    xg, h0, c0, weight_hh = saved[:4]
    has_hr, has_lengths, n_options = ctx.has
    rest = iter(saved[4:])
    weight_hr = next(rest) if has_hr else None
    lengths = next(rest) if has_lengths else None
    option_tensors = [next(rest) for _ in range(n_options)]
    buffers = list(rest)
    douts = [xg.new_empty(0) if d is None else d for d in grads[:4]]
    got = recurrence_backward_op(
        douts, [d is not None for d in grads[:4]], xg, h0, c0, weight_hh, weight_hr, lengths,
        option_tensors, buffers, *ctx.statics,
    )  # fmt: skip
    dxg, dh0, dc0, dw_hh, dw_hr, *dopts = got
    dw_hr = dw_hr if has_hr else None
    dopts = [d if trainable else None for d, trainable in zip(dopts, ctx.trainable)]
    return dxg, dh0, dc0, dw_hh, dw_hr, None, dopts, *(None,) * 4


recurrence_op.register_autograd(_backward, setup_context=_setup_context)


def op_recurrence(engine: str) -> Recurrence:
    """The backend contract (:class:`.contract.Recurrence`) through :func:`recurrence_op`
    on ``engine``: what ``fused`` and ``compiled`` run as under graph tracers."""

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
        values = [tensors[name] for name in config.tensor_names()]
        inputs = (xg, h0, c0, weight_hh, weight_hr, *values)
        # keep the backward's buffers when a gradient may follow; a jit trace is recorded
        # once (and checked again without grad), so there it depends on the tensors only
        grad_mode = torch.is_grad_enabled() or torch.jit.is_tracing()
        keep = grad_mode and any(t is not None and t.requires_grad for t in inputs)
        hs, cs, *_ = out = recurrence_op(
            xg, h0, c0, weight_hh, weight_hr, lengths, values, reverse, config.encode(), engine,
            keep,
        )  # fmt: skip
        valid = None if lengths is None else valid_mask(lengths, xg.shape[0])
        ys, _, _, cs_t = bptt.results(hs, cs, valid, reverse)
        h_n, c_n = out[2], out[3]
        return (ys, h_n, c_n, cs_t) if cell_states else (ys, h_n, c_n)

    return run_recurrence


#: The traced form of each engine's backend entry point.
RECURRENCES: dict[str, Recurrence] = {name: op_recurrence(name) for name in ENGINES}
