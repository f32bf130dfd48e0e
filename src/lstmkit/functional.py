"""The functional LSTM: layers and directions around the one recurrence.

For people who hold their own weights. Input is already normalised: seq-first, padded,
with optional per-sequence ``lengths``; :class:`lstmkit.LSTM` does the rest (layouts,
unbatched input, ``PackedSequence``, checks) and calls :func:`lstm`.

Shape legend: ``T`` time, ``B`` batch, ``I`` input features, ``H`` hidden units,
``P`` width of h (``proj_size`` or ``H``), ``L`` layers, ``D`` directions (1 or 2).

For layer ``l`` and direction ``d`` (index ``k = l*D + d``)::

    xg   = x W_ih^T + b_ih + b_hh                  # (T, B, 4H): one GEMM, outside the loop
    ys_k = recurrence(xg, h0[k], c0[k], W_hh, W_hr, reverse=(d == 1))   # (T, B, P)
    x    = concat_d(ys)                            # (T, B, D*P): next layer's input
    x    = dropout(x)                              # between layers, training only
"""

from __future__ import annotations

__all__ = [
    "LayerWeights", "States", "cell_inputs", "input_projection", "lstm", "recurrent_dropout_mask",
    "zoneout_masks",
]  # fmt: skip

from collections.abc import Sequence
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor

from . import _onnx_trace, backends
from ._precision import autocast_dtype, bias_sum
from .cell import layer_normalized
from .gemm import linear
from .masks import draw, recurrent_dropout_mask, zoneout_masks
from .option_calls import call_settings, cell_config
from .options import OPTIONS, TENSORS, TRAINABLE, CellConfig, beyond_onnx_operator, used


class States(NamedTuple):
    """Every step's state of every layer and direction (``k = l*D + d``).

    ``h``: ``(L*D, T, B, P)``, ``c``: ``(L*D, T, B, H)`` (seq-first; the modules return
    them in the caller's layout), zeros past each sequence's length. ``h`` of the last
    layer is the output; inner layers' ``h`` are before inter-layer dropout.
    """

    h: Tensor
    c: Tensor


class LayerWeights(NamedTuple):
    """Weights of one layer in one direction, in torch's layout and gate order i, f, g, o.

    ``weight_ih (4H, I)``, ``weight_hh (4H, P)``, ``bias_ih (4H,)``, ``bias_hh (4H,)``,
    ``weight_hr (P, H)``; biases and ``weight_hr`` may be ``None``. Options' weights,
    ``None`` when off: peepholes ``weight_ci``, ``weight_cf``, ``weight_co (H,)``; layer
    normalisation gains ``ln_weight_ih``, ``ln_weight_hh (4H,)``, ``ln_weight_c``,
    ``ln_bias_c (H,)``.
    """

    weight_ih: Tensor
    weight_hh: Tensor
    bias_ih: Tensor | None = None
    bias_hh: Tensor | None = None
    weight_hr: Tensor | None = None
    weight_ci: Tensor | None = None
    weight_cf: Tensor | None = None
    weight_co: Tensor | None = None
    ln_weight_ih: Tensor | None = None
    ln_weight_hh: Tensor | None = None
    ln_weight_c: Tensor | None = None
    ln_bias_c: Tensor | None = None

    def option_tensors(self) -> dict[str, Tensor]:
        """The options' parameters a backend receives (:data:`lstmkit.options.TENSORS`
        that are trainable), by name, for those present."""
        return {n: t for n in _TRAINABLE_FIELDS if (t := getattr(self, n)) is not None}


#: The fields of :class:`LayerWeights` a backend receives as option tensors.
_TRAINABLE_FIELDS = tuple(n for n in LayerWeights._fields if n in TRAINABLE)


def input_projection(x: Tensor, w: LayerWeights) -> Tensor:
    """``x W_ih^T + b_ih + b_hh`` for every step at once: ``(..., I) -> (..., 4H)``; with
    layer normalisation ``LN(x W_ih^T) * ln_weight_ih + b_ih + b_hh``."""
    bias = None if w.bias_ih is None or w.bias_hh is None else bias_sum(w.bias_ih, w.bias_hh)
    if w.ln_weight_ih is None:
        return linear(x, w.weight_ih, bias)
    return layer_normalized(linear(x, w.weight_ih, None), w.ln_weight_ih, bias)


def cell_inputs(
    w: LayerWeights, settings: tuple[tuple[str, object], ...], drawn: dict[str, Tensor],
) -> tuple[CellConfig, dict[str, Tensor]]:  # fmt: skip
    """What a backend receives for one layer-direction: the :class:`CellConfig` of
    ``settings`` (:func:`lstmkit.option_calls.call_settings`) and the named option tensors,
    ``w``'s (:meth:`LayerWeights.option_tensors`) and the call's random ones, ``drawn``
    (:func:`lstmkit.masks.draw`). ``ValueError`` when ``w`` holds only part of an
    option's weights (it would otherwise run without the option)."""
    tensors = w.option_tensors() | drawn
    config = cell_config(settings, frozenset(tensors), not torch.compiler.is_compiling())
    if len(config.tensor_names()) != len(tensors) or (w.ln_weight_ih is None) == config.layer_norm:
        _refuse_partial(w, tensors)
    return config, tensors


def _refuse_partial(w: LayerWeights, tensors: dict[str, Tensor]) -> None:
    """Name the option whose weights ``w`` holds only in part."""
    for option in OPTIONS:
        names = [p.name for p in option.parameters]
        given = [n for n in names if getattr(w, n) is not None]
        if given and len(given) < len(names):
            raise ValueError(
                f"LayerWeights: {option.name} needs all of {', '.join(names)}, "
                f"got only {', '.join(given)}"
            )
    unused = sorted(set(tensors) - set(TENSORS))
    raise ValueError(f"cell inputs {unused or sorted(tensors)} do not make whole options")


def _stacked(x: Tensor, h: list[Tensor], c: list[Tensor]) -> tuple[Tensor, Tensor, Tensor]:
    return x, torch.stack(h), torch.stack(c)


def _check_onnx_exportable(
    weights: Sequence[LayerWeights], settings: dict[str, object], zoneout_given: bool,
    return_states: bool, recurrent_dropout: bool,
) -> None:  # fmt: skip
    """Refuse, inside ``torch.onnx.export``, what one ``LSTM`` node per layer cannot write."""
    w = weights[0]
    values = {**settings, "layer_norm": w.ln_weight_hh is not None}
    if zoneout_given:
        values["zoneout"] = 1.0
    beyond = ["proj_size"] * (w.weight_hr is not None) + beyond_onnx_operator(used(values))
    beyond += ["return_states=True"] * return_states
    beyond += ["recurrent dropout in training"] * recurrent_dropout
    if beyond:
        _onnx_trace.refuse(beyond)


def lstm(
    x: Tensor,
    hx: tuple[Tensor, Tensor],
    weights: Sequence[LayerWeights],
    *,
    bidirectional: bool = False,
    dropout: float = 0.0,
    training: bool = False,
    lengths: Tensor | None = None,
    backend: str = "auto",
    return_states: bool = False,
    recurrent_masks: Sequence[Tensor | None] | None = None,
    zoneout_keep: Sequence[tuple[Tensor, Tensor] | None] | None = None,
    **options: object,
) -> tuple[Tensor, tuple[Tensor, Tensor]] | tuple[Tensor, tuple[Tensor, Tensor], States]:
    """A multi-layer (optionally bidirectional) LSTM over a seq-first padded batch.

    Args:
        x: input, ``(T, B, I)``.
        hx: ``(h0, c0)`` with shapes ``(L*D, B, P)`` and ``(L*D, B, H)``.
        weights: ``L*D`` :class:`LayerWeights`, layer-major (``k = l*D + d``).
        bidirectional: run a reverse direction too (``D = 2``).
        dropout: probability of zeroing each element of a layer's output before the next
            layer (never after the last layer); applied only when ``training``.
        training: whether dropout (and recurrent dropout, zoneout's sampling) is active.
        lengths: ``(B,)`` valid length of each sequence, or ``None`` for all ``T``.
        backend: name of the recurrence backend, or ``"auto"``.
        return_states: also return every step's ``h`` and ``c`` (:class:`States`).
        recurrent_masks: ``L*D`` recurrent-dropout masks ``(B, P)`` (or ``None`` entries)
            to use instead of sampling, in any mode: randomness as data, e.g. to compare
            backends under one mask.
        zoneout_keep: ``L*D`` pairs of zoneout keep weights ``(T, B, P)``, ``(T, B, H)``
            to use instead of sampling.
        **options: the cell options a call takes as values,
            :data:`lstmkit.options.CALL_OPTIONS` (``gate_clip``, ``cell_clip``,
            ``recurrent_dropout``, ``zoneout``, ``activation``, ``recurrent_activation``),
            checked as the modules check them; the others come with the weights
            (peepholes: ``LayerWeights.weight_ci`` ...; layer normalisation:
            ``LayerWeights.ln_weight_ih`` ...). ``recurrent_dropout``: in training, one
            mask ``(B, P)`` per layer-direction and call multiplies ``h_{t-1}`` before
            ``W_hh`` at every step (:func:`recurrent_dropout_mask`); ``zoneout``: rates
            ``p`` or ``(p_h, p_c)`` (:func:`zoneout_masks`).

    Returns:
        ``(output, (h_n, c_n))``: ``(T, B, D*P)``, ``(L*D, B, P)``, ``(L*D, B, H)``;
        with ``return_states``, ``(output, (h_n, c_n), States(h, c))``.

    Example:
        >>> T, B, I, H = 5, 2, 3, 4
        >>> w = LayerWeights(torch.randn(4 * H, I), torch.randn(4 * H, H))
        >>> out, (h, c) = lstm(torch.randn(T, B, I), (torch.zeros(1, B, H),) * 2, [w])
        >>> out.shape, h.shape
        (torch.Size([5, 2, 4]), torch.Size([1, 2, 4]))
    """
    amp = autocast_dtype(x.device.type)
    if amp is not None:  # as nn.LSTM under autocast: everything in the low-precision dtype
        with torch.autocast(x.device.type, enabled=False):
            return lstm(
                x.to(amp),
                (hx[0].to(amp), hx[1].to(amp)),
                [LayerWeights(*(None if t is None else t.to(amp) for t in w)) for w in weights],
                bidirectional=bidirectional, dropout=dropout, training=training,
                lengths=lengths, backend=backend, return_states=return_states,
                recurrent_masks=None if recurrent_masks is None else [
                    None if m is None else m.to(amp) for m in recurrent_masks],
                zoneout_keep=None if zoneout_keep is None else [
                    None if z is None else (z[0].to(amp), z[1].to(amp))
                    for z in zoneout_keep],
                **options,
            )  # fmt: skip
    # checked, hashable (name, value) pairs; uncached under compile (see call_settings)
    settings = call_settings(options, not torch.compiler.is_compiling())
    rates = dict(settings)
    given = ["recurrent_dropout"] * (recurrent_masks is not None)
    given += ["zoneout"] * (zoneout_keep is not None)
    h0, c0 = hx
    num_directions = 2 if bidirectional else 1
    num_layers = len(weights) // num_directions
    if lengths is not None:
        lengths = lengths.to(device=x.device, dtype=torch.int64)
    h_n: list[Tensor] = []
    c_n: list[Tensor] = []
    every_h: list[Tensor] = []
    every_c: list[Tensor] = []

    def run_layer(x: Tensor, layer: int) -> tuple[Tensor, list[Tensor], list[Tensor]]:
        """Layer ``layer`` on ``x``: ``(T, B, D*P)``, its D final ``h`` and ``c``."""
        hs: list[Tensor] = []
        cs_n: list[Tensor] = []
        for direction in range(num_directions):
            k = layer * num_directions + direction
            w = weights[k]
            drawn = draw(x, x.shape[0], x.shape[1], (h0.shape[2], c0.shape[2]), rates,
                         training, skip=given)  # fmt: skip
            if recurrent_masks is not None and recurrent_masks[k] is not None:
                drawn["recurrent_mask"] = recurrent_masks[k]
            if zoneout_keep is not None and zoneout_keep[k] is not None:
                drawn["zoneout_h"], drawn["zoneout_c"] = zoneout_keep[k]
            config, tensors = cell_inputs(w, settings, drawn)
            run = backends.select(backend, x, config.used())
            state = (h0[k], c0[k])
            kwargs = {
                "lengths": lengths, "reverse": direction == 1, "cell_states": return_states,
                "config": config, "tensors": tensors,
            }  # fmt: skip
            whole = backends.inference_layer(run, x, (*state, *w, *tensors.values()))
            if whole is not None:  # no autograd: the projection inside the engine's call
                ys, h, c, *cs = whole(x, w, *state, **kwargs)
            else:
                xg = input_projection(x, w)  # (T, B, 4H)
                ys, h, c, *cs = run(xg, *state, w.weight_hh, w.weight_hr, **kwargs)
            # (T, B, P), (B, P), (B, H) [, (T, B, H)]
            every_h.append(ys)
            every_c.extend(cs)
            hs.append(h)
            cs_n.append(c)
        out = every_h[-num_directions:]
        out_x = out[0] if num_directions == 1 else torch.cat(out, dim=2)  # (T, B, D*P)
        return out_x, hs, cs_n

    onnx_export = _onnx_trace.exporting()
    if onnx_export:
        masked = (training and rates["recurrent_dropout"] > 0) or recurrent_masks is not None
        _check_onnx_exportable(weights, rates, zoneout_keep is not None, return_states, masked)
    for layer in range(num_layers):
        if onnx_export:  # one ONNX LSTM node per layer, computed by run_layer meanwhile
            rows = slice(layer * num_directions, (layer + 1) * num_directions)
            x, h, c = _onnx_trace.layer(
                x, h0[rows], c0[rows], weights[rows], lengths, rates["gate_clip"],
                rates["activation"], rates["recurrent_activation"],
                lambda x=x, layer=layer: _stacked(*run_layer(x, layer)),
            )  # fmt: skip
            h, c = h.unbind(0), c.unbind(0)
        else:
            x, h, c = run_layer(x, layer)
        h_n.extend(h)
        c_n.extend(c)
        if training and dropout > 0 and layer < num_layers - 1:
            x = F.dropout(x, dropout, training=True)
    if return_states:
        return (
            x,
            (torch.stack(h_n), torch.stack(c_n)),
            States(torch.stack(every_h), torch.stack(every_c)),
        )
    return x, (torch.stack(h_n), torch.stack(c_n))
