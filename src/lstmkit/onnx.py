"""ONNX export: an lstmkit.LSTM as ONNX ``LSTM`` operators (one node per layer).

The graph is built from the weights directly (no tracing): each layer is one ``LSTM``
node holding both directions, its weights converted from torch's gate order i, f, g, o
to ONNX's i, o, f, c (``W (D, 4H, I)``, ``R (D, 4H, H)``, ``B (D, 8H) = [b_ih, b_hh]``);
between layers the output ``Y (T, D, B, H)`` becomes ``(T, B, D*H)``. Inputs ``input``
(and optionally ``h0``, ``c0``, ``lengths``) and outputs ``output``, ``h_n``, ``c_n``
follow lstmkit.LSTM's shapes and layout, with the batch and the sequence length dynamic.
``lengths`` maps to the operator's ``sequence_lens``; the cell options map to the
operator's attributes where it has them: peepholes to ``P``, ``gate_clip`` to ``clip``,
the activations to ``activations`` (torch's hardsigmoid is ``HardSigmoid`` with alpha
1/6, beta 1/2).

Needs the ``onnx`` package (``pip install onnx``); ``onnxruntime`` runs the result.
A cell beyond the operator (``proj_size``, and the options whose ``onnx`` entry in
:data:`lstmkit.options.OPTIONS` is ``None``: ``cell_clip``, zoneout, layer norm) exports
as one ``Scan`` over time per layer-direction, its body the cell's equations with every
option (masked per step when ``lengths`` is an input). The graph is for inference:
zoneout mixes by its rates (its eval mode); recurrent dropout is training-only.
Unbatched input is not exported: the graph always takes a batch dimension.

The pieces: :mod:`lstmkit.onnx_node` writes a layer as an ``LSTM`` node,
:mod:`lstmkit.onnx_scan` as ``Scan`` nodes of the cell, :mod:`lstmkit.onnx_graph` holds
the graph being built, :mod:`lstmkit.onnx_operator` the operator's layout and attributes.
"""

from __future__ import annotations

from os import PathLike
from typing import Any

from .lstm import LSTM
from .onnx_graph import Graph, layer_names, require_onnx
from .onnx_node import onnx_gates, operator_layer
from .onnx_operator import OPSET
from .onnx_scan import scan_layer, valid_mask
from .options import beyond_onnx_operator

__all__ = ["export", "onnx_gates", "to_model"]


def to_model(lstm: LSTM, *, with_state: bool = True, with_lengths: bool = False) -> Any:
    """The ONNX ``ModelProto`` computing ``lstm`` (float32, inference).

    Inputs: ``input`` ``(T, B, I)`` (``(B, T, I)`` with batch_first); with ``with_state``,
    ``h0`` ``(L*D, B, P)`` and ``c0`` ``(L*D, B, H)``; with ``with_lengths``, ``lengths``
    ``(B,)`` int32. Outputs: ``output`` ``(T, B, D*P)`` (or batch-first), ``h_n``, ``c_n``.
    Each layer is one ONNX ``LSTM`` node when the operator can express the cell; with
    ``proj_size > 0``, ``cell_clip``, layer norm or zoneout (which it lacks) each
    layer-direction is a ``Scan`` over time whose body is the cell's equations, masked
    per step by ``lengths`` when given.
    """
    require_onnx()
    from onnx import TensorProto, helper

    L, H, D = lstm.num_layers, lstm.hidden_size, 2 if lstm.bidirectional else 1
    P = lstm.proj_size or H
    T_, B_ = "sequence", "batch"
    value = helper.make_tensor_value_info
    layout = [B_, T_] if lstm.batch_first else [T_, B_]
    inputs = [value("input", TensorProto.FLOAT, [*layout, lstm.input_size])]
    if with_state:
        inputs += [value("h0", TensorProto.FLOAT, [L * D, B_, P]),
                   value("c0", TensorProto.FLOAT, [L * D, B_, H])]  # fmt: skip
    if with_lengths:
        inputs.append(value("lengths", TensorProto.INT32, [B_]))
    g = Graph()
    x = "input"
    if lstm.batch_first:
        x = g.node("Transpose", [x], ["x_seq_first"], perm=[1, 0, 2])
    scan = _needs_scan(lstm)
    emit = scan_layer if scan else operator_layer
    valid = valid_mask(g, x) if scan and with_lengths else None
    h_n, c_n = [], []
    for layer, names in enumerate(layer_names(lstm)):
        x, h, c = emit(g, lstm, layer, names, x, with_state, valid or with_lengths)
        h_n.append(h)
        c_n.append(c)
    g.node("Transpose" if lstm.batch_first else "Identity", [x], ["output"],
           **({"perm": [1, 0, 2]} if lstm.batch_first else {}))  # fmt: skip
    g.node("Concat", h_n, ["h_n"], axis=0)
    g.node("Concat", c_n, ["c_n"], axis=0)
    outputs = [
        value("output", TensorProto.FLOAT, [*layout, D * P]),
        value("h_n", TensorProto.FLOAT, [L * D, B_, P]),
        value("c_n", TensorProto.FLOAT, [L * D, B_, H]),
    ]
    graph = helper.make_graph(g.nodes, "lstmkit_lstm", inputs, outputs, g.inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    model.producer_name = "lstmkit"
    return model


def _needs_scan(lstm: LSTM) -> bool:
    """Whether the cell is beyond the ONNX ``LSTM`` operator (a projection, an option it
    lacks: :func:`lstmkit.options.beyond_onnx_operator`): each layer-direction is then a
    ``Scan`` of the cell."""
    return lstm.proj_size > 0 or bool(beyond_onnx_operator(lstm.options_used()))


def export(
    lstm: LSTM,
    path: str | PathLike[str],
    *,
    with_state: bool = True,
    with_lengths: bool = False,
) -> None:
    """Write :func:`to_model`'s model to ``path`` (checked by ``onnx.checker`` first)."""
    require_onnx()
    import onnx

    model = to_model(lstm, with_state=with_state, with_lengths=with_lengths)
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
