"""onnxruntime's LSTM operator on a benchmark problem (inference), for comparison: the
problem's weights exported by :mod:`lstmkit.onnx` (one ``LSTM`` node per layer)."""

from __future__ import annotations

from collections.abc import Callable

import torch

from ..lstm import LSTM
from ..onnx import to_model
from .impls import Problem


def onnx_session(problem: Problem) -> Callable[[], object]:
    """A closure running the problem's forward pass in onnxruntime."""
    import onnxruntime as ort

    s = problem.shape
    lstm = LSTM(s.I, s.H, s.L, bidirectional=s.bidirectional)
    lstm.load_state_dict(problem.weights)
    options = ort.SessionOptions()
    options.intra_op_num_threads = torch.get_num_threads()
    # no busy-waiting between runs: it would steal the CPU from the implementations timed next
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    session = ort.InferenceSession(
        to_model(lstm).SerializeToString(), options, providers=["CPUExecutionProvider"]
    )
    feeds = {"input": problem.x.numpy(), "h0": problem.hx[0].numpy(), "c0": problem.hx[1].numpy()}
    return lambda: session.run(None, feeds)
