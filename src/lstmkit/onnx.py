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
1/6, beta 1/2). ``cell_clip``, zoneout and layer norm have no equivalent and are refused.

Needs the ``onnx`` package (``pip install onnx``); ``onnxruntime`` runs the result.
``proj_size > 0`` (the operator has no projection) exports as one ``Scan`` over time per
layer-direction, its body the cell's equations (masked per step when ``lengths`` is an
input). Unbatched input is not exported: the graph always takes a batch dimension.
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


class _Graph:
    """Nodes and initializers being collected for one ONNX graph."""

    def __init__(self) -> None:
        from onnx import helper, numpy_helper

        self.helper, self.numpy_helper = helper, numpy_helper
        self.nodes: list[Any] = []
        self.inits: list[Any] = []

    def const(self, name: str, array: np.ndarray) -> str:
        self.inits.append(self.numpy_helper.from_array(array, name))
        return name

    def node(self, op: str, inputs: list[str], outputs: list[str], **attrs: Any) -> str:
        self.nodes.append(self.helper.make_node(op, inputs, outputs, **attrs))
        return outputs[0]


def to_model(lstm: LSTM, *, with_state: bool = True, with_lengths: bool = False) -> Any:
    """The ONNX ``ModelProto`` computing ``lstm`` (float32, inference).

    Inputs: ``input`` ``(T, B, I)`` (``(B, T, I)`` with batch_first); with ``with_state``,
    ``h0`` ``(L*D, B, P)`` and ``c0`` ``(L*D, B, H)``; with ``with_lengths``, ``lengths``
    ``(B,)`` int32. Outputs: ``output`` ``(T, B, D*P)`` (or batch-first), ``h_n``, ``c_n``.
    Without projection each layer is one ONNX ``LSTM`` node; with ``proj_size > 0``
    (which the operator lacks) each layer-direction is a ``Scan`` over time whose body is
    the cell's equations, masked per step by ``lengths`` when given.
    """
    from onnx import TensorProto, helper

    if lstm.cell_clip is not None:
        raise NotImplementedError("lstmkit.onnx: cell_clip has no ONNX LSTM equivalent yet")
    if lstm.zoneout:  # eval-mode zoneout mixes states: not the operator's recurrence
        raise NotImplementedError("lstmkit.onnx: zoneout has no ONNX LSTM equivalent yet")
    if lstm.layer_norm:
        raise NotImplementedError("lstmkit.onnx: layer_norm has no ONNX LSTM equivalent yet")
    operator_only = [o for o in ("peephole", "gate_clip", "activation", "recurrent_activation")
                     if o in lstm.options_used()]  # fmt: skip
    if lstm.proj_size and operator_only:
        raise NotImplementedError(
            f"lstmkit.onnx: {', '.join(operator_only)} together with proj_size is not exported yet"
        )
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
    g = _Graph()
    x = "input"
    if lstm.batch_first:
        x = g.node("Transpose", [x], ["x_seq_first"], perm=[1, 0, 2])
    emit = _scan_layer if lstm.proj_size else _operator_layer
    valid = _valid_mask(g, x) if lstm.proj_size and with_lengths else None
    h_n, c_n = [], []
    for layer, names in enumerate(_layers(lstm)):
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


def _state_rows(g: _Graph, name: str, first: int, count: int, tag: str) -> str:
    """Rows ``first .. first+count`` of graph input ``name`` (``h0`` or ``c0``)."""
    bounds = [g.const(f"{tag}_{name}_{k}", np.array([v], np.int64))
              for k, v in enumerate((first, first + count, 0))]  # fmt: skip
    return g.node("Slice", [name, *bounds], [f"{name}_{tag}"])


def _operator_layer(g, lstm, layer, names, x, with_state, with_lengths):
    """One ONNX ``LSTM`` node for both directions: ``(T, B, D*H)``, ``h_n``, ``c_n``."""
    D = len(names)
    W = np.stack([onnx_gates(getattr(lstm, n["weight_ih"])) for n in names])
    R = np.stack([onnx_gates(getattr(lstm, n["weight_hh"])) for n in names])
    args = [x, g.const(f"W{layer}", W), g.const(f"R{layer}", R)]
    if lstm.bias:
        B = np.stack([np.concatenate([onnx_gates(getattr(lstm, n["bias_ih"])),
                                      onnx_gates(getattr(lstm, n["bias_hh"]))])
                      for n in names])  # fmt: skip
        args.append(g.const(f"B{layer}", B))
    else:
        args.append("")
    args.append("lengths" if with_lengths else "")
    if with_state:
        args += [_state_rows(g, n, layer * D, D, f"rows{layer}") for n in ("h0", "c0")]
    else:
        args += ["", ""]
    if lstm.peephole:  # P (D, 3H) in the operator's order i, o, f
        P = np.stack([np.concatenate([getattr(lstm, f"weight_c{gate}{n['suffix']}")
                                      .detach().cpu().float().numpy() for gate in "iof"])
                      for n in names])  # fmt: skip
        args.append(g.const(f"P{layer}", P))
    extra = {} if lstm.gate_clip is None else {"clip": lstm.gate_clip}  # the operator's clip
    extra |= _activations(lstm, D)
    y, h, c = f"y{layer}", f"h_n{layer}", f"c_n{layer}"
    g.node("LSTM", args, [y, h, c], hidden_size=lstm.hidden_size,
           direction="bidirectional" if D == 2 else "forward", **extra)  # fmt: skip
    g.node("Transpose", [y], [f"{y}_tbdh"], perm=[0, 2, 1, 3])  # (T, D, B, H) -> (T, B, D, H)
    shape = g.const(f"shape{layer}", np.array([0, 0, -1], np.int64))
    return g.node("Reshape", [f"{y}_tbdh", shape], [f"out{layer}"]), h, c


#: lstmkit's activation names -> the ONNX LSTM operator's, with (alpha, beta) if it takes them.
_ONNX_ACTIVATIONS = {
    "sigmoid": ("Sigmoid", None), "tanh": ("Tanh", None), "relu": ("Relu", None),
    "softsign": ("Softsign", None), "hardsigmoid": ("HardSigmoid", (1 / 6, 0.5)),
}  # fmt: skip


def _activations(lstm: LSTM, directions: int) -> dict[str, Any]:
    """The operator's ``activations`` (f, g, h per direction) and their ``activation_alpha``
    / ``activation_beta`` (consumed in order by the functions that take them; torch's
    hardsigmoid is the operator's HardSigmoid with alpha 1/6, beta 1/2); none when the
    defaults (Sigmoid, Tanh, Tanh) apply."""
    if (lstm.activation, lstm.recurrent_activation) == ("tanh", "sigmoid"):
        return {}
    names = [lstm.recurrent_activation, lstm.activation, lstm.activation] * directions
    attrs: dict[str, Any] = {"activations": [_ONNX_ACTIVATIONS[n][0] for n in names]}
    params = [_ONNX_ACTIVATIONS[n][1] for n in names if _ONNX_ACTIVATIONS[n][1] is not None]
    if params:
        attrs["activation_alpha"] = [a for a, _ in params]
        attrs["activation_beta"] = [b for _, b in params]
    return attrs


def _valid_mask(g: _Graph, x: str) -> str:
    """``(T, B, 1)`` bool: step t lies inside sequence b (``t < lengths[b]``)."""
    shape = g.node("Shape", [x], ["mask_xshape"])
    axis0 = g.const("mask_axis0", np.array([0], np.int64))
    steps = g.node("Slice", [shape, axis0, g.const("mask_end", np.array([1], np.int64))],
                   ["mask_steps"])  # (1,) = [T]  # fmt: skip
    T = g.node("Squeeze", [steps, axis0], ["mask_T"])
    zero, one = (g.const(f"mask_{v}", np.array(v, np.int64)) for v in (0, 1))
    t = g.node("Range", [zero, T, one], ["mask_t"])  # (T,)
    t = g.node("Unsqueeze", [t, g.const("mask_axis1", np.array([1], np.int64))], ["mask_t1"])
    lengths = g.node("Cast", ["lengths"], ["mask_lengths"], to=7)  # int64
    lengths = g.node("Unsqueeze", [lengths, axis0], ["mask_lengths0"])  # (1, B)
    valid = g.node("Less", [t, lengths], ["mask_tb"])  # (T, B)
    return g.node("Unsqueeze", [valid, g.const("mask_axis2", np.array([2], np.int64))], ["valid"])


def _scan_layer(g, lstm, layer, names, x, with_state, valid):
    """A ``Scan`` per direction whose body is the cell (with projection); ``valid`` is
    the name of the ``(T, B, 1)`` step mask, or falsy without lengths."""
    H, P = lstm.hidden_size, lstm.proj_size
    ys, hs, cs = [], [], []
    for d, n in enumerate(names):
        k = f"l{layer}d{d}"
        if with_state:
            h0, c0 = (g.node("Squeeze", [_state_rows(g, s, layer * len(names) + d, 1, k),
                                         g.const(f"{k}_{s}_axis", np.array([0], np.int64))],
                             [f"{k}_{s}_init"]) for s in ("h0", "c0"))  # fmt: skip
        else:
            h0, c0 = (_zeros(g, x, width, f"{k}_{s}_zeros") for s, width in (("h", P), ("c", H)))
        masked = isinstance(valid, str)
        body = _cell_body(lstm, n, k, masked)
        h, c, y = f"{k}_h_n", f"{k}_c_n", f"{k}_y"
        scans = [x, valid] if masked else [x]
        g.node("Scan", [h0, c0, *scans], [h, c, y], body=body, num_scan_inputs=len(scans),
               scan_input_directions=[d] * len(scans), scan_output_directions=[d])  # fmt: skip
        axis = g.const(f"{k}_unsqueeze", np.array([0], np.int64))
        hs.append(g.node("Unsqueeze", [h, axis], [f"{h}_1"]))
        cs.append(g.node("Unsqueeze", [c, axis], [f"{c}_1"]))
        ys.append(y)
    out = g.node("Concat", ys, [f"out{layer}"], axis=2) if len(ys) > 1 else ys[0]
    h = g.node("Concat", hs, [f"h_n{layer}"], axis=0)
    c = g.node("Concat", cs, [f"c_n{layer}"], axis=0)
    return out, h, c


def _zeros(g: _Graph, x: str, width: int, name: str) -> str:
    """A ``(B, width)`` float zero tensor, B read from ``x`` (T, B, I) at run time."""
    from onnx import TensorProto, helper

    shape = g.node("Shape", [x], [f"{name}_xshape"])
    batch = g.node("Slice", [shape, g.const(f"{name}_b0", np.array([1], np.int64)),
                             g.const(f"{name}_b1", np.array([2], np.int64))],
                   [f"{name}_batch"])  # fmt: skip
    dims = g.node("Concat", [batch, g.const(f"{name}_w", np.array([width], np.int64))],
                  [f"{name}_dims"], axis=0)  # fmt: skip
    fill = helper.make_tensor(f"{name}_value", TensorProto.FLOAT, [1], [0.0])
    return g.node("ConstantOfShape", [dims], [name], value=fill)


def _cell_body(lstm: LSTM, names: dict[str, str], k: str, masked: bool = False) -> Any:
    """The Scan body: one step ``(h, c, x_t[, valid_t]) -> (h', c', y_t = h')`` with
    projection; with ``valid_t`` an ended sequence keeps its state and emits zeros."""
    from onnx import TensorProto, helper

    H, P = lstm.hidden_size, lstm.proj_size
    b = _Graph()

    def weight(role: str) -> Tensor:
        return getattr(lstm, names[role])

    w_ih = b.const(f"{k}_Wt", weight("weight_ih").detach().float().T.contiguous().numpy())
    w_hh = b.const(f"{k}_Rt", weight("weight_hh").detach().float().T.contiguous().numpy())
    w_hr = b.const(f"{k}_WRt", weight("weight_hr").detach().float().T.contiguous().numpy())
    z = b.node("Add", [b.node("MatMul", [f"{k}_x", w_ih], [f"{k}_xw"]),
                       b.node("MatMul", [f"{k}_h", w_hh], [f"{k}_hr"])], [f"{k}_z0"])  # fmt: skip
    if lstm.bias:
        bias = (weight("bias_ih") + weight("bias_hh")).detach().float().numpy()
        z = b.node("Add", [z, b.const(f"{k}_b", bias)], [f"{k}_z"])
    split = b.const(f"{k}_split", np.array([H] * 4, np.int64))
    i, f, gg, o = (f"{k}_{gate}_pre" for gate in "ifgo")
    b.node("Split", [z, split], [i, f, gg, o], axis=1)
    i, f, o = (b.node("Sigmoid", [t], [t[:-4]]) for t in (i, f, o))
    gg = b.node("Tanh", [gg], [gg[:-4]])
    c = b.node("Add", [b.node("Mul", [f, f"{k}_c"], [f"{k}_fc"]),
                       b.node("Mul", [i, gg], [f"{k}_ig"])],
               [f"{k}_c_new" if masked else f"{k}_c_out"])  # fmt: skip
    m = b.node("Mul", [o, b.node("Tanh", [c], [f"{k}_tanh_c"])], [f"{k}_m"])
    h = b.node("MatMul", [m, w_hr], [f"{k}_h_new" if masked else f"{k}_h_out"])
    value = helper.make_tensor_value_info
    f32 = TensorProto.FLOAT
    inputs = [
        value(f"{k}_h", f32, ["batch", P]),
        value(f"{k}_c", f32, ["batch", H]),
        value(f"{k}_x", f32, ["batch", lstm.input_size if k.startswith("l0") else None]),
    ]
    if masked:  # keep the state where the sequence has ended; emit zeros there
        v = f"{k}_valid"
        inputs.append(value(v, TensorProto.BOOL, ["batch", 1]))
        b.node("Where", [v, c, f"{k}_c"], [f"{k}_c_out"])
        b.node("Where", [v, h, f"{k}_h"], [f"{k}_h_out"])
        b.node("Where", [v, h, b.const(f"{k}_zero", np.zeros((), np.float32))], [f"{k}_y_t"])
    else:
        b.node("Identity", [h], [f"{k}_y_t"])
    return helper.make_graph(
        b.nodes, f"{k}_cell", inputs,
        [value(f"{k}_h_out", f32, ["batch", P]), value(f"{k}_c_out", f32, ["batch", H]),
         value(f"{k}_y_t", f32, ["batch", P])],
        b.inits,
    )  # fmt: skip


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
    roles = ("weight_ih", "weight_hh", "bias_ih", "bias_hh", "weight_hr")
    suffixes = [[f"_l{layer}" + ("_reverse" if d else "") for d in range(D)]
                for layer in range(lstm.num_layers)]  # fmt: skip
    return [[{"suffix": sfx} | {r: r + sfx for r in roles} for sfx in layer] for layer in suffixes]
