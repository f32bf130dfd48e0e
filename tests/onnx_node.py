"""Running one ONNX ``LSTM`` node (the operator itself) as an independent oracle."""

from __future__ import annotations

import pytest


def onnx_lstm(x, W, R, B, P=None, clip=None, runtime="reference"):
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper

    D, G, _ = W.shape
    H, T, Bt = G // 4, x.shape[0], x.shape[1]
    names = ["X", "W", "R", "B", "", "", ""] + (["P"] if P is not None else [])
    attrs = dict(hidden_size=H, direction="bidirectional" if D == 2 else "forward")
    if clip is not None:
        attrs["clip"] = clip
    node = helper.make_node("LSTM", names, ["Y", "Y_h", "Y_c"], **attrs)
    feeds = {"X": x, "W": W, "R": R, "B": B} | ({"P": P} if P is not None else {})
    f = TensorProto.FLOAT
    graph = helper.make_graph(
        [node],
        "g",
        [helper.make_tensor_value_info(n, f, list(v.shape)) for n, v in feeds.items()],
        [
            helper.make_tensor_value_info("Y", f, [T, D, Bt, H]),
            helper.make_tensor_value_info("Y_h", f, [D, Bt, H]),
            helper.make_tensor_value_info("Y_c", f, [D, Bt, H]),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 14)])
    onnx.checker.check_model(model)
    if runtime == "reference":
        from onnx.reference import ReferenceEvaluator

        return ReferenceEvaluator(model).run(None, feeds)
    ort = pytest.importorskip("onnxruntime")
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, feeds)
