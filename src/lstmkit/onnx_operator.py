"""The ONNX ``LSTM`` operator's vocabulary, shared by both ways lstmkit reaches ONNX:
:mod:`lstmkit.onnx` (a graph built from the weights) and ``torch.onnx.export`` of a model
holding lstmkit modules (:mod:`lstmkit._onnx_trace`). Needs no ``onnx`` package.

The operator takes gates in the order i, o, f, c (torch's chunks are i, f, g, o),
``W (D, 4H, I)``, ``R (D, 4H, H)``, ``B (D, 8H) = [b_ih, b_hh]``, peepholes
``P (D, 3H)`` in the order i, o, f, and its ``activations`` f, g, h per direction.
The activation table here also names the single ops of the ``Scan`` body
(:mod:`lstmkit.onnx_scan`).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

#: The opset lstmkit writes (Scan with scan directions, LSTM with layout defaults).
OPSET = 14

#: ONNX (i, o, f, c) from torch's chunks (i, f, g, o).
TORCH_TO_ONNX_GATES = (0, 3, 1, 2)

#: The peephole gates in the operator's ``P (D, 3H)``: lstmkit's ``weight_c{gate}``.
PEEPHOLE_GATES = ("i", "o", "f")

#: lstmkit's activation names -> the operator's, with (alpha, beta) if it takes them
#: (torch's hardsigmoid is the operator's HardSigmoid with alpha 1/6, beta 1/2).
ONNX_ACTIVATIONS: dict[str, tuple[str, tuple[float, float] | None]] = {
    "sigmoid": ("Sigmoid", None), "tanh": ("Tanh", None), "relu": ("Relu", None),
    "softsign": ("Softsign", None), "hardsigmoid": ("HardSigmoid", (1 / 6, 0.5)),
}  # fmt: skip


def onnx_gate_order(t: Tensor) -> Tensor:
    """The 4H axis (dim 0) of a torch LSTM weight or bias in the operator's gate order."""
    chunks = t.chunk(4, dim=0)
    return torch.cat([chunks[k] for k in TORCH_TO_ONNX_GATES])


def activation_op(name: str) -> tuple[str, dict[str, float]]:
    """The single ONNX op computing lstmkit's activation ``name``, with its attributes
    (``alpha`` and ``beta`` for HardSigmoid)."""
    op, params = ONNX_ACTIVATIONS[name]
    return op, {} if params is None else dict(zip(("alpha", "beta"), params, strict=True))


def activation_attributes(activation: str, recurrent_activation: str, directions: int) -> dict:
    """The operator's ``activations`` (f, g, h per direction) and their
    ``activation_alpha`` / ``activation_beta`` (consumed in order by the functions that
    take them); none when the defaults (Sigmoid, Tanh, Tanh) apply."""
    if (activation, recurrent_activation) == ("tanh", "sigmoid"):
        return {}
    names = [recurrent_activation, activation, activation] * directions
    attrs: dict[str, Any] = {"activations": [ONNX_ACTIVATIONS[n][0] for n in names]}
    params = [ONNX_ACTIVATIONS[n][1] for n in names if ONNX_ACTIVATIONS[n][1] is not None]
    if params:
        attrs["activation_alpha"] = [a for a, _ in params]
        attrs["activation_beta"] = [b for _, b in params]
    return attrs


def operator_attributes(
    hidden_size: int,
    directions: int,
    gate_clip: float | None,
    activation: str,
    recurrent_activation: str,
) -> dict[str, Any]:
    """The ``LSTM`` node's attributes: ``hidden_size``, ``direction``, ``clip`` (the
    operator's clip is lstmkit's ``gate_clip``) and the activations."""
    direction = "bidirectional" if directions == 2 else "forward"
    attrs: dict[str, Any] = {"hidden_size": hidden_size, "direction": direction}
    if gate_clip is not None:
        attrs["clip"] = float(gate_clip)
    return attrs | activation_attributes(activation, recurrent_activation, directions)
