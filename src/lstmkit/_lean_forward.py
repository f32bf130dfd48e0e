"""``LSTM.forward`` without autograd, float32 on the CPU, straight to the ``compiled``
engine's whole-layer call (:func:`lstmkit.backends.compiled.infer_layer`: the input
projection and the time loop of a layer-direction in one compiled call per thread).

It skips what a call that cannot need it pays for in the general path: the layout
normalisation's checks (it takes only inputs whose shapes are right), the functional
layer's options and ONNX bookkeeping, backend selection. So it repeats
:func:`lstmkit.functional.lstm`'s loop over layers and directions without them: calling
``functional.lstm`` from here measured ~20 us (~18%) more a call at S1 on a Zen 4 core.
The general path runs every other call and raises nn.LSTM's errors for bad inputs; both
give the same numbers (:mod:`tests.test_inference_layer`), draw the same random masks in
the same order, and apply inter-layer dropout alike.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import Tensor

from ._lean_step import plain, plain_weights
from .backends import _functorch_active, compiled, tracing
from .functional import cell_inputs
from .masks import draw

if TYPE_CHECKING:
    from .lstm import LSTM


def _state(
    lstm: LSTM, hx: object, x: Tensor, batched: bool
) -> tuple[Tensor | None, Tensor | None] | None:
    """``(h0, c0)`` as ``(L*D, B, *)``: ``(None, None)`` for ``hx=None`` (the engine starts
    from zeros), else ``hx`` when it is a pair of plain tensors of ``x``'s dtype and device
    with exactly the right shapes; None for anything else (the general path checks it and
    says what is wrong)."""
    if hx is None:
        return None, None
    rows = lstm.num_layers * (2 if lstm.bidirectional else 1)
    B, P, H = x.shape[1], lstm.proj_size or lstm.hidden_size, lstm.hidden_size
    if not isinstance(hx, (tuple, list)) or len(hx) != 2:
        return None
    shapes = ((rows, B, P), (rows, B, H)) if batched else ((rows, P), (rows, H))
    if not all(plain(s, x) and tuple(s.shape) == want for s, want in zip(hx, shapes)):
        return None
    if batched:
        return hx[0], hx[1]
    return hx[0].unsqueeze(1), hx[1].unsqueeze(1)


def lean_forward(
    lstm: LSTM, input: object, hx: object
) -> tuple[Tensor, tuple[Tensor, Tensor]] | None:
    """``lstm(input, hx)`` on the whole-layer path, or None when this call is not one it
    serves: grad enabled, another backend, a tracer, transform or autocast, a
    ``PackedSequence`` or ``lengths``, or anything but float32 CPU tensors of the right
    shapes (a single step under ``auto`` too: ``auto`` gives it to ``reference``)."""
    if torch.is_grad_enabled() or lstm.backend not in ("auto", "compiled"):
        return None
    if type(input) is not Tensor or input.dtype != torch.float32 or input.device.type != "cpu":
        return None
    if input.dim() not in (2, 3) or input.shape[-1] != lstm.input_size or 0 in input.shape:
        return None
    steps = input.shape[1] if input.dim() == 3 and lstm.batch_first else input.shape[0]
    if steps < 2 and lstm.backend == "auto":
        return None
    if not compiled.AVAILABLE or tracing() or _functorch_active():
        return None
    if torch.is_autocast_enabled("cpu"):
        return None
    weights = plain_weights(lstm, input)
    if weights is None:
        return None
    batched = input.dim() == 3
    x = input if not batched or not lstm.batch_first else input.transpose(0, 1)
    x = x if batched else x.unsqueeze(1)  # (T, B, I)
    state = _state(lstm, hx, x, batched)
    if state is None:
        return None
    h0, c0 = state
    T, B = x.shape[:2]
    D = 2 if lstm.bidirectional else 1
    P, H = lstm.proj_size or lstm.hidden_size, lstm.hidden_size
    settings, training = lstm.settings, lstm.training
    rates = dict(settings)
    h_n: list[Tensor] = []
    c_n: list[Tensor] = []
    for layer in range(lstm.num_layers):
        outs = []
        for direction in range(D):
            k = layer * D + direction
            drawn = draw(x, T, B, (P, H), rates, training)
            config, tensors = cell_inputs(weights[k], settings, drawn)
            ys, h, c = compiled.infer_layer(
                x, weights[k], None if h0 is None else h0[k], None if c0 is None else c0[k],
                reverse=direction == 1, config=config, tensors=tensors,
            )  # fmt: skip
            outs.append(ys)
            h_n.append(h)
            c_n.append(c)
        x = outs[0] if D == 1 else torch.cat(outs, dim=2)
        if training and lstm.dropout > 0 and layer < lstm.num_layers - 1:
            x = F.dropout(x, lstm.dropout, training=True)
    if len(h_n) == 1:  # (fresh tensors: a view of each is theirs alone)
        h_out, c_out = h_n[0].unsqueeze(0), c_n[0].unsqueeze(0)
    else:
        h_out, c_out = torch.stack(h_n), torch.stack(c_n)
    if not batched:
        return x.squeeze(1), (h_out.squeeze(1), c_out.squeeze(1))
    return (x.transpose(0, 1) if lstm.batch_first else x), (h_out, c_out)
