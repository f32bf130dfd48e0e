"""onnxruntime's LSTM operator on a benchmark problem (inference), for comparison.

The graph is one ONNX ``LSTM`` node per layer (both directions in one node), weights
converted from torch's gate order i, f, g, o to ONNX's i, o, f, c; between layers the
output ``Y (T, D, B, H)`` is transposed and reshaped to ``(T, B, D*H)``.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from .impls import Problem

TORCH_TO_ONNX_GATES = (0, 3, 1, 2)  # ONNX (i, o, f, c) from torch's chunks (i, f, g, o)


def _gates(t: torch.Tensor) -> np.ndarray:
    """Reorder the 4H axis (dim 0) of a torch LSTM weight or bias into ONNX's order."""
    chunks = t.detach().chunk(4, dim=0)
    return torch.cat([chunks[k] for k in TORCH_TO_ONNX_GATES]).numpy()


def build_model(problem: Problem):
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    s = problem.shape
    D, H = s.directions, s.H
    suffixes = ["", "_reverse"][:D]
    nodes, inits, inputs = (
        [],
        [],
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["T", "B", s.I])],
    )
    x = "x"
    for layer in range(s.L):

        def get(name: str, layer: int = layer) -> list[torch.Tensor]:
            return [problem.weights[f"{name}_l{layer}{sfx}"] for sfx in suffixes]

        W = np.stack([_gates(t) for t in get("weight_ih")])
        R = np.stack([_gates(t) for t in get("weight_hh")])
        B = np.stack(
            [np.concatenate([_gates(a), _gates(b)]) for a, b in zip(get("bias_ih"), get("bias_hh"))]
        )
        for name, value in (("W", W), ("R", R), ("B", B)):
            inits.append(numpy_helper.from_array(value.astype(np.float32), f"{name}{layer}"))
        for name in ("h0", "c0"):
            inputs.append(
                helper.make_tensor_value_info(f"{name}_{layer}", TensorProto.FLOAT, [D, "B", H])
            )
        y = f"y{layer}"
        nodes.append(
            helper.make_node(
                "LSTM",
                [x, f"W{layer}", f"R{layer}", f"B{layer}", "", f"h0_{layer}", f"c0_{layer}"],
                [y, f"h{layer}", f"c{layer}"],
                hidden_size=H,
                direction="bidirectional" if D == 2 else "forward",
            )
        )
        nodes.append(helper.make_node("Transpose", [y], [f"{y}t"], perm=[0, 2, 1, 3]))
        inits.append(numpy_helper.from_array(np.array([0, 0, -1], np.int64), f"shape{layer}"))
        x = f"out{layer}"
        nodes.append(helper.make_node("Reshape", [f"{y}t", f"shape{layer}"], [x]))
    outputs = [helper.make_tensor_value_info(x, TensorProto.FLOAT, ["T", "B", D * H])]
    outputs += [
        helper.make_tensor_value_info(f"{k}{layer}", TensorProto.FLOAT, [D, "B", H])
        for layer in range(s.L)
        for k in ("h", "c")
    ]
    graph = helper.make_graph(nodes, "lstm", inputs, outputs, inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 14)]), onnx


def onnx_session(problem: Problem) -> Callable[[], object]:
    """A closure running the problem's forward pass in onnxruntime."""
    import onnxruntime as ort

    model, onnx = build_model(problem)
    onnx.checker.check_model(model)
    options = ort.SessionOptions()
    options.intra_op_num_threads = torch.get_num_threads()
    # no busy-waiting between runs: it would steal the CPU from the implementations timed next
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    session = ort.InferenceSession(
        model.SerializeToString(), options, providers=["CPUExecutionProvider"]
    )
    D = problem.shape.directions
    feeds = {"x": problem.x.numpy()}
    for layer in range(problem.shape.L):
        rows = slice(layer * D, (layer + 1) * D)
        feeds[f"h0_{layer}"] = problem.hx[0][rows].numpy()
        feeds[f"c0_{layer}"] = problem.hx[1][rows].numpy()
    return lambda: session.run(None, feeds)
