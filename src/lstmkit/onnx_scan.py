"""A cell beyond the ONNX ``LSTM`` operator (``proj_size``, ``cell_clip``, layer norm,
zoneout) as one ``Scan`` over time per layer-direction, for :mod:`lstmkit.onnx`.

The Scan's state is ``h (B, P)`` and ``c (B, H)``; it scans ``x (T, B, I)`` (and, when
``lengths`` is an input, the step mask ``valid (T, B, 1)``) forwards or backwards, and
emits ``y (T, B, P)``. Its body is the cell's equations with every option the module
uses, written as ONNX nodes: projection, peepholes, clips, activations, layer norm, and
zoneout as in eval mode (mixed by its rates). A layer's directions are concatenated to
``(T, B, D*P)``, its ``h_n`` ``(D, B, P)`` and ``c_n`` ``(D, B, H)``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from .cell import LN_EPS
from .onnx_graph import Graph, state_rows
from .onnx_operator import activation_op
from .option_checks import zoneout_rates

if TYPE_CHECKING:
    from .lstm import LSTM


def valid_mask(g: Graph, x: str) -> str:
    """``(T, B, 1)`` bool: step t lies inside sequence b (``t < lengths[b]``)."""
    from onnx import TensorProto

    shape = g.node("Shape", [x], ["mask_xshape"])
    axis0 = g.ints("mask_axis0", [0])
    steps = g.node("Slice", [shape, axis0, g.ints("mask_end", [1])], ["mask_steps"])  # [T]
    T = g.node("Squeeze", [steps, axis0], ["mask_T"])
    zero, one = (g.ints(f"mask_{v}", v) for v in (0, 1))
    t = g.node("Range", [zero, T, one], ["mask_t"])  # (T,)
    t = g.node("Unsqueeze", [t, g.ints("mask_axis1", [1])], ["mask_t1"])
    lengths = g.node("Cast", ["lengths"], ["mask_lengths"], to=TensorProto.INT64)
    lengths = g.node("Unsqueeze", [lengths, axis0], ["mask_lengths0"])  # (1, B)
    valid = g.node("Less", [t, lengths], ["mask_tb"])  # (T, B)
    return g.node("Unsqueeze", [valid, g.ints("mask_axis2", [2])], ["valid"])


def scan_layer(
    g: Graph,
    lstm: LSTM,
    layer: int,
    names: list[dict[str, str]],
    x: str,
    with_state: bool,
    valid: str | bool | None,
) -> tuple[str, str, str]:
    """A ``Scan`` per direction whose body is the cell (with projection); ``valid`` is
    the name of the ``(T, B, 1)`` step mask, or falsy without lengths."""
    H, P = lstm.hidden_size, lstm.proj_size
    ys, hs, cs = [], [], []
    for d, n in enumerate(names):
        k = f"l{layer}d{d}"
        if with_state:
            h0, c0 = (g.node("Squeeze", [state_rows(g, s, layer * len(names) + d, 1, k),
                                         g.ints(f"{k}_{s}_axis", [0])],
                             [f"{k}_{s}_init"]) for s in ("h0", "c0"))  # fmt: skip
        else:
            h0, c0 = (zeros(g, x, width, f"{k}_{s}_zeros") for s, width in (("h", P), ("c", H)))
        masked = isinstance(valid, str)
        body = cell_body(lstm, n, k, masked)
        h, c, y = f"{k}_h_n", f"{k}_c_n", f"{k}_y"
        scans = [x, valid] if masked else [x]
        g.node("Scan", [h0, c0, *scans], [h, c, y], body=body, num_scan_inputs=len(scans),
               scan_input_directions=[d] * len(scans), scan_output_directions=[d])  # fmt: skip
        axis = g.ints(f"{k}_unsqueeze", [0])
        hs.append(g.node("Unsqueeze", [h, axis], [f"{h}_1"]))
        cs.append(g.node("Unsqueeze", [c, axis], [f"{c}_1"]))
        ys.append(y)
    out = g.node("Concat", ys, [f"out{layer}"], axis=2) if len(ys) > 1 else ys[0]
    h = g.node("Concat", hs, [f"h_n{layer}"], axis=0)
    c = g.node("Concat", cs, [f"c_n{layer}"], axis=0)
    return out, h, c


def zeros(g: Graph, x: str, width: int, name: str) -> str:
    """A ``(B, width)`` float zero tensor, B read from ``x`` (T, B, I) at run time."""
    from onnx import TensorProto

    shape = g.node("Shape", [x], [f"{name}_xshape"])
    batch = g.node("Slice", [shape, g.ints(f"{name}_b0", [1]), g.ints(f"{name}_b1", [2])],
                   [f"{name}_batch"])  # fmt: skip
    dims = g.node("Concat", [batch, g.ints(f"{name}_w", [width])], [f"{name}_dims"], axis=0)
    fill = g.helper.make_tensor(f"{name}_value", TensorProto.FLOAT, [1], [0.0])
    return g.node("ConstantOfShape", [dims], [name], value=fill)


def cell_body(lstm: LSTM, names: dict[str, str], k: str, masked: bool = False) -> Any:
    """The Scan body: one step ``(h, c, x_t[, valid_t]) -> (h', c', y_t = h')``, the cell
    with every option the module uses (projection, peepholes, clips, activations, layer
    norm, zoneout as in eval mode: mixed by its rates); with ``valid_t`` an ended sequence
    keeps its state and emits zeros."""
    from onnx import TensorProto, helper

    H, P = lstm.hidden_size, lstm.proj_size or lstm.hidden_size
    b = Graph()

    def weight(name: str) -> np.ndarray:
        return getattr(lstm, name + names["suffix"]).detach().float().cpu().numpy()

    def const(name: str, array: np.ndarray) -> str:
        return b.const(f"{k}_{name}", np.ascontiguousarray(array, np.float32))

    def op(kind: str, inputs: list[str], out: str, **attrs: Any) -> str:
        return b.node(kind, inputs, [f"{k}_{out}"], **attrs)

    def act(name: str, x: str, out: str) -> str:
        kind, attrs = activation_op(name)
        return op(kind, [x], out, **attrs)

    def norm(x: str, gain: str, out: str, bias: str | None = None) -> str:
        """Layer normalisation over the last axis (biased variance, eps ``LN_EPS``)."""
        d = op("Sub", [x, op("ReduceMean", [x], f"{out}_mean", axes=[-1])], f"{out}_d")
        var = op("ReduceMean", [op("Mul", [d, d], f"{out}_dd")], f"{out}_var", axes=[-1])
        eps = const(f"{out}_eps", np.array(LN_EPS))
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
    b.node("Split", [z, b.ints(f"{k}_split", [H] * 4)], [i, f, g, o], axis=1)
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
    p_h, p_c = zoneout_rates(lstm.zoneout)
    if (p_h, p_c) != (0.0, 0.0):  # eval: h = h_new + p (h_prev - h_new), likewise c
        h = mix(h, f"{k}_h", p_h, "zo_h")
        c = mix(c, c_prev, p_c, "zo_c")
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
