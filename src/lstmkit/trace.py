"""Look inside a trained LSTM: every gate, cell state and output of one sample.

:func:`trace` runs the module (eval mode) on one unbatched sequence with
``return_states=True``, then, for every layer and direction, feeds each step's input
and the previous step's state back through the one cell function
(:func:`lstmkit.cell.cell_step` with ``return_gates=True``) to read the gates ``i, f, g,
o`` the forward pass used. The ``h`` and ``c`` of the trace are the module's own
states.

Shapes: ``T`` time, ``I`` input features, ``H`` hidden units, ``P`` width of ``h``.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor

from .backends.contract import at_step
from .cell import cell_step
from .functional import cell_inputs, input_projection
from .lstm import LSTM
from .masks import draw


class LayerTrace(NamedTuple):
    """One layer-direction over time: gates ``(T, H)`` each, ``c (T, H)``, ``h (T, P)``."""

    name: str
    i: Tensor
    f: Tensor
    g: Tensor
    o: Tensor
    c: Tensor
    h: Tensor


class Trace(NamedTuple):
    layers: list[LayerTrace]


@torch.no_grad()
def trace(lstm: LSTM, x: Tensor) -> Trace:
    """The gates and states of ``lstm`` on one unbatched sequence ``x`` of shape ``(T, I)``.

    Example:
        >>> lstm = LSTM(3, 4, num_layers=2)
        >>> t = trace(lstm, torch.randn(6, 3))
        >>> [layer.name for layer in t.layers], t.layers[0].f.shape
        (['layer 0', 'layer 1'], torch.Size([6, 4]))
    """
    if x.dim() != 2:
        raise ValueError(f"trace: x should be one sequence (T, I), got shape {tuple(x.shape)}")
    training = lstm.training
    lstm.eval()
    try:
        _, _, states = lstm(x, return_states=True)  # h: (L*D, T, P), c: (L*D, T, H)
    finally:
        lstm.train(training)
    D = 2 if lstm.bidirectional else 1
    T, P, H = x.shape[0], states.h.shape[-1], lstm.hidden_size
    layers, layer_in = [], x
    for k, w in enumerate(lstm.layer_weights()):
        layer, reverse = divmod(k, D)
        drawn = draw(x, 1, 1, (P, H), dict(lstm.settings), training=False)  # eval mode's
        config, tensors = cell_inputs(w, lstm.settings, drawn)
        xg = input_projection(layer_in, w)  # (T, 4H)
        gates = []
        for t in range(T):
            before = t + 1 if reverse else t - 1
            h = states.h[k, before] if 0 <= before < T else x.new_zeros(P)
            c = states.c[k, before] if 0 <= before < T else x.new_zeros(H)
            *_, step_gates = cell_step(xg[t : t + 1], h[None], c[None], w.weight_hh, w.weight_hr,
                                       config, at_step(tensors, 0), return_gates=True)  # fmt: skip
            gates.append(torch.cat(step_gates))  # (4, H)
        i, f, g, o = torch.stack(gates).unbind(1)  # (T, H) each
        name = f"layer {layer}" + (" reverse" if reverse else "")
        layers.append(LayerTrace(name, i, f, g, o, states.c[k], states.h[k]))
        if reverse == D - 1:
            layer_in = torch.cat([states.h[j] for j in range(k - D + 1, k + 1)], dim=1)
    return Trace(layers)
