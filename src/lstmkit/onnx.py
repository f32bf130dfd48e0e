"""ONNX export: an lstmkit.LSTM as ONNX ``LSTM`` operators (one node per layer).

The graph is built from the weights directly (no tracing): each layer is one ``LSTM``
node holding both directions, its weights converted from torch's gate order i, f, g, o
to ONNX's i, o, f, c (``W (D, 4H, I)``, ``R (D, 4H, H)``, ``B (D, 8H) = [b_ih, b_hh]``);
between layers the output ``Y (T, D, B, H)`` becomes ``(T, B, D*H)``. Inputs ``input``
(and optionally ``h0``, ``c0``, ``lengths``) and outputs ``output``, ``h_n``, ``c_n``
follow lstmkit.LSTM's shapes and layout, with the batch and the sequence length dynamic.
``lengths`` maps to the operator's ``sequence_lens``.

Needs the ``onnx`` package (``pip install onnx``); ``onnxruntime`` runs the result.
Not exported yet: ``proj_size > 0`` (the operator has no projection) and unbatched input.
"""

from __future__ import annotations

from os import PathLike
from typing import Any

import numpy as np
import torch
from torch import Tensor

from .lstm import LSTM

TORCH_TO_ONNX_GATES = (0, 3, 1, 2)  # ONNX (i, o, f, c) from torch's chunks (i, f, g, o)
OPSET = 14


def onnx_gates(t: Tensor) -> np.ndarray:
    """Reorder the 4H axis (dim 0) of a torch LSTM weight or bias into ONNX's gate order."""
    chunks = t.detach().cpu().float().chunk(4, dim=0)
    return torch.cat([chunks[k] for k in TORCH_TO_ONNX_GATES]).numpy()


def to_model(lstm: LSTM, *, with_state: bool = True, with_lengths: bool = False) -> Any:
    """The ONNX ``ModelProto`` computing ``lstm`` (float32, inference).

    Inputs: ``input`` ``(T, B, I)`` (``(B, T, I)`` with batch_first); with ``with_state``,
    ``h0`` and ``c0`` ``(L*D, B, H)``; with ``with_lengths``, ``lengths`` ``(B,)`` int32.
    Outputs: ``output`` ``(T, B, D*H)`` (or batch-first), ``h_n``, ``c_n`` ``(L*D, B, H)``.
    """
    from onnx import TensorProto, helper, numpy_helper

    if lstm.proj_size > 0:
        raise NotImplementedError(
            "lstmkit.onnx: proj_size > 0 has no ONNX LSTM operator equivalent; "
            "exporting it as a loop graph is not implemented yet"
        )
    L, H, D = lstm.num_layers, lstm.hidden_size, 2 if lstm.bidirectional else 1
    T_, B_ = "sequence", "batch"
    value = helper.make_tensor_value_info
    layout = [B_, T_] if lstm.batch_first else [T_, B_]
    inputs = [value("input", TensorProto.FLOAT, [*layout, lstm.input_size])]
    if with_state:
        inputs += [value(n, TensorProto.FLOAT, [L * D, B_, H]) for n in ("h0", "c0")]
    if with_lengths:
        inputs.append(value("lengths", TensorProto.INT32, [B_]))
    nodes, inits = [], []

    def const(name: str, array: np.ndarray) -> str:
        inits.append(numpy_helper.from_array(array, name))
        return name

    x = "input"
    if lstm.batch_first:
        nodes.append(helper.make_node("Transpose", [x], ["x_seq_first"], perm=[1, 0, 2]))
        x = "x_seq_first"
    h_n, c_n = [], []
    for layer, names in enumerate(_layers(lstm)):
        W = np.stack([onnx_gates(getattr(lstm, n["weight_ih"])) for n in names])
        R = np.stack([onnx_gates(getattr(lstm, n["weight_hh"])) for n in names])
        args = [x, const(f"W{layer}", W), const(f"R{layer}", R)]
        if lstm.bias:
            B = np.stack([np.concatenate([onnx_gates(getattr(lstm, n["bias_ih"])),
                                          onnx_gates(getattr(lstm, n["bias_hh"]))])
                          for n in names])  # fmt: skip
            args.append(const(f"B{layer}", B))
        else:
            args.append("")
        args.append("lengths" if with_lengths else "")
        if with_state:
            rows = [const(f"rows{layer}_{k}", np.array([v], np.int64))
                    for k, v in enumerate((layer * D, (layer + 1) * D, 0))]  # fmt: skip
            for name in ("h0", "c0"):
                nodes.append(helper.make_node("Slice", [name, *rows], [f"{name}_{layer}"]))
            args += [f"h0_{layer}", f"c0_{layer}"]
        y, h, c = f"y{layer}", f"h_n{layer}", f"c_n{layer}"
        nodes.append(helper.make_node(
            "LSTM", args, [y, h, c], hidden_size=H,
            direction="bidirectional" if D == 2 else "forward",
        ))  # fmt: skip
        nodes.append(helper.make_node("Transpose", [y], [f"{y}_tbdh"], perm=[0, 2, 1, 3]))
        x = f"out{layer}"  # (T, B, D*H)
        shape = const(f"shape{layer}", np.array([0, 0, -1], np.int64))
        nodes.append(helper.make_node("Reshape", [f"{y}_tbdh", shape], [x]))
        h_n.append(h)
        c_n.append(c)
    if lstm.batch_first:
        nodes.append(helper.make_node("Transpose", [x], ["output"], perm=[1, 0, 2]))
    else:
        nodes.append(helper.make_node("Identity", [x], ["output"]))
    nodes.append(helper.make_node("Concat", h_n, ["h_n"], axis=0))
    nodes.append(helper.make_node("Concat", c_n, ["c_n"], axis=0))
    outputs = [
        value("output", TensorProto.FLOAT, [*layout, D * H]),
        value("h_n", TensorProto.FLOAT, [L * D, B_, H]),
        value("c_n", TensorProto.FLOAT, [L * D, B_, H]),
    ]
    graph = helper.make_graph(nodes, "lstmkit_lstm", inputs, outputs, inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    model.producer_name = "lstmkit"
    return model


def export(
    lstm: LSTM,
    path: str | PathLike[str],
    *,
    with_state: bool = True,
    with_lengths: bool = False,
) -> None:
    """Write :func:`to_model`'s model to ``path`` (checked by ``onnx.checker`` first)."""
    import onnx

    model = to_model(lstm, with_state=with_state, with_lengths=with_lengths)
    onnx.checker.check_model(model)
    onnx.save(model, str(path))


def _layers(lstm: LSTM) -> list[list[dict[str, str]]]:
    """Per layer, per direction: the parameter names by role (``weight_ih``, ...)."""
    D = 2 if lstm.bidirectional else 1
    roles = ("weight_ih", "weight_hh", "bias_ih", "bias_hh")
    return [
        [{r: f"{r}_l{layer}" + ("_reverse" if d else "") for r in roles} for d in range(D)]
        for layer in range(lstm.num_layers)
    ]
