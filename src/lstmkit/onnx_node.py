"""One layer of an lstmkit.LSTM as one ONNX ``LSTM`` node (both directions in it), for
:mod:`lstmkit.onnx` when the operator can express the cell.

The weights are converted from torch's gate order i, f, g, o to the operator's i, o, f, c
(:mod:`lstmkit.onnx_operator`): ``W (D, 4H, I)``, ``R (D, 4H, H)``,
``B (D, 8H) = [b_ih, b_hh]``, peepholes ``P (D, 3H)`` in the order i, o, f;
``lengths`` is the node's ``sequence_lens``, ``gate_clip`` its ``clip``. The node's
output ``Y (T, D, B, H)`` becomes the layer's ``(T, B, D*H)``; ``h_n`` and ``c_n`` are
``(D, B, H)``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
from torch import Tensor

from .onnx_graph import Graph, state_rows
from .onnx_operator import PEEPHOLE_GATES, onnx_gate_order, operator_attributes

if TYPE_CHECKING:
    from .lstm import LSTM


def onnx_gates(t: Tensor) -> np.ndarray:
    """Reorder the 4H axis (dim 0) of a torch LSTM weight or bias into ONNX's gate order."""
    return onnx_gate_order(t.detach().cpu().float()).numpy()


def operator_layer(
    g: Graph,
    lstm: LSTM,
    layer: int,
    names: list[dict[str, str]],
    x: str,
    with_state: bool,
    with_lengths: bool,
) -> tuple[str, str, str]:
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
        args += [state_rows(g, n, layer * D, D, f"rows{layer}") for n in ("h0", "c0")]
    else:
        args += ["", ""]
    if lstm.peephole:  # P (D, 3H) in the operator's order i, o, f
        P = np.stack([np.concatenate([getattr(lstm, f"weight_c{gate}{n['suffix']}")
                                      .detach().cpu().float().numpy() for gate in PEEPHOLE_GATES])
                      for n in names])  # fmt: skip
        args.append(g.const(f"P{layer}", P))
    attrs = operator_attributes(
        lstm.hidden_size, D, lstm.gate_clip, lstm.activation, lstm.recurrent_activation
    )
    y, h, c = f"y{layer}", f"h_n{layer}", f"c_n{layer}"
    g.node("LSTM", args, [y, h, c], **attrs)
    g.node("Transpose", [y], [f"{y}_tbdh"], perm=[0, 2, 1, 3])  # (T, D, B, H) -> (T, B, D, H)
    shape = g.ints(f"shape{layer}", [0, 0, -1])
    return g.node("Reshape", [f"{y}_tbdh", shape], [f"out{layer}"]), h, c
