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
A cell beyond the operator (``proj_size``, ``cell_clip``, layer norm, zoneout) exports
as one ``Scan`` over time per layer-direction, its body the cell's equations with every
option (masked per step when ``lengths`` is an input). The graph is for inference:
zoneout mixes by its rates (its eval mode); recurrent dropout is training-only.
Unbatched input is not exported: the graph always takes a batch dimension.
"""

from __future__ import annotations

from os import PathLike
from typing import Any

import numpy as np
import torch
from torch import Tensor

from .lstm import LSTM
from .onnx_operator import OPSET, TORCH_TO_ONNX_GATES, activation_attributes, beyond_operator


def _require_onnx() -> None:
    """A clear error, with the install line, when the ``onnx`` package is missing."""
    try:
        import onnx  # noqa: F401
    except ModuleNotFoundError as error:
        raise ModuleNotFoundError(
            "lstmkit.onnx builds ONNX graphs with the onnx package, which is not installed: "
            "pip install onnx (and onnxruntime to run the graphs)",
            name="onnx",
        ) from error


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
    Each layer is one ONNX ``LSTM`` node when the operator can express the cell; with
    ``proj_size > 0``, ``cell_clip``, layer norm or zoneout (which it lacks) each
    layer-direction is a ``Scan`` over time whose body is the cell's equations, masked
    per step by ``lengths`` when given.
    """
    _require_onnx()
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
    g = _Graph()
    x = "input"
    if lstm.batch_first:
        x = g.node("Transpose", [x], ["x_seq_first"], perm=[1, 0, 2])
    scan = _needs_scan(lstm)
    emit = _scan_layer if scan else _operator_layer
    valid = _valid_mask(g, x) if scan and with_lengths else None
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


def _needs_scan(lstm: LSTM) -> bool:
    """Whether the cell is beyond the ONNX ``LSTM`` operator: a projection, ``cell_clip``,
    layer norm or zoneout (eval mixing) make each layer-direction a ``Scan`` of the cell."""
    return bool(beyond_operator(lstm.proj_size, lstm.cell_clip, lstm.layer_norm, lstm._zoneout))


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


def _activations(lstm: LSTM, directions: int) -> dict[str, Any]:
    """The operator's activation attributes for ``lstm`` (see
    :func:`lstmkit.onnx_operator.activation_attributes`)."""
    return activation_attributes(lstm.activation, lstm.recurrent_activation, directions)


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


#: lstmkit's activation names -> (ONNX op, its attributes).
_ACTIVATION_OPS = {
    "sigmoid": ("Sigmoid", {}), "tanh": ("Tanh", {}), "relu": ("Relu", {}),
    "softsign": ("Softsign", {}), "hardsigmoid": ("HardSigmoid", {"alpha": 1 / 6, "beta": 0.5}),
}  # fmt: skip


def _cell_body(lstm: LSTM, names: dict[str, str], k: str, masked: bool = False) -> Any:
    """The Scan body: one step ``(h, c, x_t[, valid_t]) -> (h', c', y_t = h')``, the cell
    with every option the module uses (projection, peepholes, clips, activations, layer
    norm, zoneout as in eval mode: mixed by its rates); with ``valid_t`` an ended sequence
    keeps its state and emits zeros."""
    from onnx import TensorProto, helper

    H, P = lstm.hidden_size, lstm.proj_size or lstm.hidden_size
    b = _Graph()

    def weight(name: str) -> np.ndarray:
        return getattr(lstm, name + names["suffix"]).detach().float().cpu().numpy()

    def const(name: str, array: np.ndarray) -> str:
        return b.const(f"{k}_{name}", np.ascontiguousarray(array, np.float32))

    def op(kind: str, inputs: list[str], out: str, **attrs: Any) -> str:
        return b.node(kind, inputs, [f"{k}_{out}"], **attrs)

    def act(name: str, x: str, out: str) -> str:
        kind, attrs = _ACTIVATION_OPS[name]
        return op(kind, [x], out, **attrs)

    def norm(x: str, gain: str, out: str, bias: str | None = None) -> str:
        """Layer normalisation over the last axis (biased variance, eps 1e-5)."""
        d = op("Sub", [x, op("ReduceMean", [x], f"{out}_mean", axes=[-1])], f"{out}_d")
        var = op("ReduceMean", [op("Mul", [d, d], f"{out}_dd")], f"{out}_var", axes=[-1])
        eps = const(f"{out}_eps", np.array(1e-5))
        std = op("Sqrt", [op("Add", [var, eps], f"{out}_ve")], f"{out}_std")
        y = op("Mul", [op("Div", [d, std], f"{out}_hat"), gain], f"{out}_g")
        return op("Identity" if bias is None else "Add", [y] if bias is None else [y, bias], out)

    def mix(new: str, prev: str, rate: float, out: str) -> str:
        """Zoneout in eval mode: ``new + rate (prev - new)``."""
        diff = op("Sub", [prev, new], f"{out}_d")
        kept = op("Mul", [const(f"{out}_p", np.array(rate)), diff], f"{out}_m")
        return op("Add", [new, kept], out)

    def clip(x: str, limit: float | None, out: str) -> str:
        if limit is None:
            return x
        bounds = [const(f"{out}_lo", np.array(-limit)), const(f"{out}_hi", np.array(limit))]
        return op("Clip", [x, *bounds], out)

    xw = op("MatMul", [f"{k}_x", const("Wt", weight("weight_ih").T)], "xw")
    h_in = op("MatMul", [f"{k}_h", const("Rt", weight("weight_hh").T)], "hr")
    if lstm.layer_norm:
        xw = norm(xw, const("ln_ih", weight("ln_weight_ih")), "xw_ln")
        h_in = norm(h_in, const("ln_hh", weight("ln_weight_hh")), "hr_ln")
    z = op("Add", [xw, h_in], "z0")
    if lstm.bias:
        z = op("Add", [z, const("b", weight("bias_ih") + weight("bias_hh"))], "z")
    i, f, g, o = (f"{k}_{gate}_pre" for gate in "ifgo")
    b.node("Split", [z, b.const(f"{k}_split", np.array([H] * 4, np.int64))], [i, f, g, o], axis=1)
    c_prev = f"{k}_c"
    if lstm.peephole:  # i, f see c_{t-1}
        i = op("Add", [i, op("Mul", [const("pi", weight("weight_ci")), c_prev], "pic")], "i_peep")
        f = op("Add", [f, op("Mul", [const("pf", weight("weight_cf")), c_prev], "pfc")], "f_peep")
    i, f, g = (clip(t, lstm.gate_clip, f"{n}_clip") for t, n in ((i, "i"), (f, "f"), (g, "g")))
    i, f = act(lstm.recurrent_activation, i, "i"), act(lstm.recurrent_activation, f, "f")
    g = act(lstm.activation, g, "g")
    c = op("Add", [op("Mul", [f, c_prev], "fc"), op("Mul", [i, g], "ig")], "c_cell0")
    c = clip(c, lstm.cell_clip, "c_cell")
    if lstm.peephole:  # o sees c_t
        o = op("Add", [o, op("Mul", [const("po", weight("weight_co")), c], "poc")], "o_peep")
    o = act(lstm.recurrent_activation, clip(o, lstm.gate_clip, "o_clip"), "o")
    c_out = c
    if lstm.layer_norm:
        c_out = norm(c, const("ln_c", weight("ln_weight_c")), "c_ln",
                     const("ln_cb", weight("ln_bias_c")))  # fmt: skip
    h = op("Mul", [o, act(lstm.activation, c_out, "act_c")], "m")
    if lstm.proj_size:
        h = op("MatMul", [h, const("WRt", weight("weight_hr").T)], "h_proj")
    if lstm._zoneout != (0.0, 0.0):  # eval: h = h_new + p (h_prev - h_new), likewise c
        h = mix(h, f"{k}_h", lstm._zoneout[0], "zo_h")
        c = mix(c, c_prev, lstm._zoneout[1], "zo_c")
    b.node("Identity", [c], [f"{k}_c_new" if masked else f"{k}_c_out"])
    b.node("Identity", [h], [f"{k}_h_new" if masked else f"{k}_h_out"])
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
        b.node("Where", [v, f"{k}_c_new", f"{k}_c"], [f"{k}_c_out"])
        b.node("Where", [v, f"{k}_h_new", f"{k}_h"], [f"{k}_h_out"])
        b.node("Where", [v, f"{k}_h_new", b.const(f"{k}_zero", np.zeros((), np.float32))],
               [f"{k}_y_t"])  # fmt: skip
    else:
        b.node("Identity", [f"{k}_h_out"], [f"{k}_y_t"])
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
    _require_onnx()
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
