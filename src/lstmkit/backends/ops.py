"""The fast engines as ``torch.library`` custom ops: what graph tracers see.

``torch.compile``, ``torch.export`` and ``torch.jit.trace`` cannot look inside the
hand-written BPTT (numba kernels, buffers filled in place). Under them each
layer-direction runs as one opaque op, ``lstmkit::recurrence``, with a shape function
for tracing and the hand-written backward as a second op, ``lstmkit::recurrence_backward``;
the numbers are the eager engine's, and the graph does not grow with ``T``::

    lstmkit::recurrence(xg, h0, c0, W_hh, W_hr?, lengths?, option tensors, statics)
        -> [hs (T+1, B, P), cs (T+1, B, H), h_n (B, P), c_n (B, H), *saved]
    ys, cs_t = time-ordered slots of hs, cs, zeroed past each end   (traced torch ops)

``saved`` are the forward's buffers (:class:`.bptt.Buffers`, empty tensors for options
that are off), present only when a gradient may be asked for. The state slots come back
whole (not as views) because a custom op's outputs may not alias each other.

Not under torch.func transforms (``vmap``, ``grad``): the ops have no batching rule,
and ``auto`` runs the ``reference`` loop there. Double backward through a compiled graph
is refused by ``torch.compile`` itself.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from . import bptt, compiled, fused
from .contract import PLAIN, TENSOR_SLOTS, CellOptions, Recurrence, valid_mask
from .triton import TritonEngine

#: The engines the op can run, by the name the op is given.
ENGINES: dict[str, bptt.Engine] = {
    "fused": fused.TorchEngine(), "compiled": compiled.NumbaEngine(), "triton": TritonEngine()
}

#: What :class:`.bptt.Buffers` holds after the state slots, in the op's output order.
_SAVED = (
    "acts", "tanh_cs", "ms", "gate_clipped", "cell_clipped", "c_new", "rec_hat", "rec_rstd",
    "c_hat", "c_rstd",
)  # fmt: skip


def _statics(
    gate_clip: float | None, cell_clip: float | None, activation: str, recurrent_activation: str,
    option_tensors: Sequence[Tensor], option_slots: Sequence[int],
) -> CellOptions:  # fmt: skip
    """The cell options from the op's arguments: the option tensors that are on, each at
    its slot of :meth:`.contract.CellOptions.tensors` (op schemas take no list of
    optional tensors that ``torch.jit.trace`` can record)."""
    flat: list[Tensor | None] = [None] * TENSOR_SLOTS
    for slot, t in zip(option_slots, option_tensors):
        flat[slot] = t
    return PLAIN._replace(
        gate_clip=gate_clip, cell_clip=cell_clip, activation=activation,
        recurrent_activation=recurrent_activation,
    ).with_tensors(tuple(flat))  # fmt: skip


@torch.library.custom_op("lstmkit::recurrence", mutates_args=())
def recurrence_op(
    xg: Tensor,
    h0: Tensor,
    c0: Tensor,
    weight_hh: Tensor,
    weight_hr: Tensor | None,
    lengths: Tensor | None,
    option_tensors: list[Tensor],
    option_slots: list[int],
    reverse: bool,
    gate_clip: float | None,
    cell_clip: float | None,
    activation: str,
    recurrent_activation: str,
    engine: str,
    keep: bool,
) -> list[Tensor]:
    """One layer-direction's forward on ``engine``: the state slots, the final state and,
    with ``keep``, the buffers the backward needs."""
    options = _statics(
        gate_clip, cell_clip, activation, recurrent_activation, option_tensors, option_slots
    )
    (_, h_n, c_n, _), buf, _ = bptt.forward(
        ENGINES[engine], xg, h0, c0, weight_hh, weight_hr, lengths, reverse, options, keep=keep
    )
    out = [buf.hs, buf.cs, h_n, c_n]
    if keep:
        out += [xg.new_empty(0) if getattr(buf, n) is None else getattr(buf, n) for n in _SAVED]
    return out


@recurrence_op.register_fake
def _(xg, h0, c0, weight_hh, weight_hr, lengths, option_tensors, option_slots, reverse,
      gate_clip, cell_clip, activation, recurrent_activation, engine, keep):  # fmt: skip
    T, B, G = xg.shape
    H, P = G // 4, h0.shape[1]
    out = [xg.new_empty(T + 1, B, P), xg.new_empty(T + 1, B, H), h0.new_empty(B, P),
           c0.new_empty(B, H)]  # fmt: skip
    if keep:
        options = _statics(
            gate_clip, cell_clip, activation, recurrent_activation, option_tensors, option_slots
        )
        shapes = _saved_shapes(options, weight_hr is not None, T, B, H)
        out += [
            xg.new_empty(0) if shape is None else xg.new_empty(shape, dtype=dtype)
            for shape, dtype in shapes
        ]
    return out


def _saved_shapes(
    options: CellOptions, projected: bool, T: int, B: int, H: int
) -> list[tuple[tuple[int, ...] | None, torch.dtype | None]]:
    """Shape (``None`` when absent) and dtype of each :data:`_SAVED` buffer."""
    G, norm = 4 * H, options.layer_norm is not None
    return [
        ((T, B, G), None),
        ((T, B, H), None),
        ((T, B, H) if projected else None, None),
        ((T, B, G) if options.gate_clip is not None else None, torch.bool),
        ((T, B, H) if options.cell_clip is not None else None, torch.bool),
        ((T, B, H) if options.zoneout is not None else None, None),
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
    option_slots: list[int],
    saved: list[Tensor],
    reverse: bool,
    gate_clip: float | None,
    cell_clip: float | None,
    activation: str,
    recurrent_activation: str,
    engine: str,
) -> list[Tensor]:
    """The hand-written backward of :func:`recurrence_op` from the gradients of its
    outputs ``douts = (dhs, dcs, dh_n, dc_n)`` (those not ``douts_given`` are unused):
    ``(dxg, dh0, dc0, dW_hh, dW_hr, *d option_tensors)``, empty tensors where an input
    has no gradient (masks and zoneout keep weights are data)."""
    options = _statics(
        gate_clip, cell_clip, activation, recurrent_activation, option_tensors, option_slots
    )
    hs, cs = saved[0], saved[1]
    named = {n: (None if t.numel() == 0 else t) for n, t in zip(_SAVED, saved[2:])}
    buf = bptt.Buffers(hs=hs, cs=cs, options=options, **named)
    T = xg.shape[0]
    valid = None if lengths is None else valid_mask(lengths, T)
    dhs, dcs, dh_n, dc_n = (d if given else None for d, given in zip(douts, douts_given))
    dys = None if dhs is None else (dhs[:-1] if reverse else dhs[1:])
    dcs_t = None if dcs is None else (dcs[:-1] if reverse else dcs[1:])
    grads = bptt.backward(
        ENGINES[engine], xg, h0, c0, weight_hh, weight_hr, valid, reverse, buf,
        (dys, dh_n, dc_n, dcs_t),
    )  # fmt: skip
    dxg, dh0, dc0, dw_hh, dw_hr, *dopts = grads
    # every slot's gradient, in CellOptions.tensors() order (peepholes, mask, zoneout
    # keep weights, layer-norm gains); then those of the tensors given
    by_slot = [*dopts[:3], None, None, None, *dopts[3:]]
    dgiven = [by_slot[slot] for slot in option_slots]
    return [_or_empty(g, xg) for g in (dxg, dh0, dc0, dw_hh, dw_hr, *dgiven)]


@recurrence_backward_op.register_fake
def _(douts, douts_given, xg, h0, c0, weight_hh, weight_hr, lengths, option_tensors,
      option_slots, saved, reverse, gate_clip, cell_clip, activation, recurrent_activation,
      engine):  # fmt: skip
    like = (xg, h0, c0, weight_hh, weight_hr)
    grads = [xg.new_empty(0) if t is None else torch.empty_like(t) for t in like]
    for slot, t in zip(option_slots, option_tensors):
        differentiable = slot in _DIFFERENTIABLE_SLOTS
        grads.append(torch.empty_like(t) if differentiable else xg.new_empty(0))
    return grads


#: The option slots that are parameters (peepholes, layer-norm gains); the others are data.
_DIFFERENTIABLE_SLOTS = frozenset((0, 1, 2, 6, 7, 8))


def _or_empty(t: Tensor | None, like: Tensor) -> Tensor:
    return like.new_empty(0) if t is None else t


def _setup_context(ctx: Any, inputs: tuple, output: list[Tensor]) -> None:
    (xg, h0, c0, weight_hh, weight_hr, lengths, option_tensors, option_slots, reverse,
     gate_clip, cell_clip, activation, recurrent_activation, engine, keep) = inputs  # fmt: skip
    if not keep:
        raise RuntimeError(
            "lstmkit::recurrence was traced without its backward buffers (keep=False) "
            "but a gradient is needed: trace the call with gradients enabled"
        )
    ctx.statics = (reverse, gate_clip, cell_clip, activation, recurrent_activation, engine)
    ctx.has = (weight_hr is not None, lengths is not None, len(option_tensors))
    ctx.option_slots = list(option_slots)
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
        option_tensors, ctx.option_slots, buffers, *ctx.statics,
    )  # fmt: skip
    dxg, dh0, dc0, dw_hh, dw_hr, *dopts = got
    dw_hr = dw_hr if has_hr else None
    dopts = [d if s in _DIFFERENTIABLE_SLOTS else None for d, s in zip(dopts, ctx.option_slots)]
    # torch.library's input structure: an empty list stays a list, a list of ints is a leaf
    dslots = None if ctx.option_slots else []
    return dxg, dh0, dc0, dw_hh, dw_hr, None, dopts, dslots, *(None,) * 7


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
        options: CellOptions = PLAIN,
    ) -> tuple[Tensor, ...]:
        tensors = options.tensors()
        inputs = (xg, h0, c0, weight_hh, weight_hr, *tensors)
        # keep the backward's buffers when a gradient may follow; a jit trace is recorded
        # once (and checked again without grad), so there it depends on the tensors only
        grad_mode = torch.is_grad_enabled() or torch.jit.is_tracing()
        keep = grad_mode and any(t is not None and t.requires_grad for t in inputs)
        slots = [k for k, t in enumerate(tensors) if t is not None]
        hs, cs, *_ = out = recurrence_op(
            xg, h0, c0, weight_hh, weight_hr, lengths, [tensors[k] for k in slots], slots,
            reverse,
            options.gate_clip, options.cell_clip, options.activation,
            options.recurrent_activation, engine, keep,
        )  # fmt: skip
        valid = None if lengths is None else valid_mask(lengths, xg.shape[0])
        ys, _, _, cs_t = bptt.results(hs, cs, valid, reverse)
        h_n, c_n = out[2], out[3]
        return (ys, h_n, c_n, cs_t) if cell_states else (ys, h_n, c_n)

    return run_recurrence



#: The traced form of each engine's backend entry point.
RECURRENCES: dict[str, Recurrence] = {name: op_recurrence(name) for name in ENGINES}
