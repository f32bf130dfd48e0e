"""lstmkit never calls torch's own LSTM kernels.

Torch's Python entry points are replaced by functions that raise, and every aten op
dispatched during forward and backward is recorded and checked for RNN kernels.
"""

from __future__ import annotations

import re

import pytest
import torch
from oracle import LAYOUTS, Config, make_inputs, run_with_grads
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode

import lstmkit

RNN_OP = re.compile(r"lstm|rnn|gru", re.IGNORECASE)


class OpRecorder(TorchDispatchMode):
    def __init__(self) -> None:
        super().__init__()
        self.ops: set[str] = set()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.ops.add(str(func))
        return func(*args, **(kwargs or {}))


def forbid(*_args: object, **_kwargs: object) -> None:
    raise AssertionError("torch's own LSTM kernel was called")


@pytest.fixture
def no_torch_lstm(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("lstm", "cell_step", "gru", "rnn_tanh", "rnn_relu"):
        monkeypatch.setattr(torch._VF, name, forbid, raising=False)
        monkeypatch.setattr(torch, name, forbid, raising=False)
    monkeypatch.setattr(nn.LSTM, "forward", forbid)
    monkeypatch.setattr(nn.LSTMCell, "forward", forbid)


GRID = [
    Config(num_layers=layers, bidirectional=bi, proj_size=proj, layout=layout, with_hx=bool(k % 2))
    for k, (layers, bi, proj, layout) in enumerate(
        (l, b, p, lay) for l in (1, 2) for b in (False, True) for p in (0, 2) for lay in LAYOUTS
    )
]


@pytest.mark.parametrize("cfg", GRID, ids=str)
def test_lstm_uses_no_torch_rnn_kernel(cfg: Config, backend: str, no_torch_lstm: None) -> None:
    lstm = lstmkit.LSTM(**cfg.module_kwargs(), dtype=torch.float64, backend=backend)
    inputs = make_inputs(cfg)
    with OpRecorder() as rec:
        outs, grads = run_with_grads(lstm, inputs)
    assert outs[0].numel() > 0 and any(g.abs().sum() > 0 for g in grads)
    assert "aten.addmm.default" in rec.ops or "aten.mm.default" in rec.ops  # recording works
    assert not [op for op in rec.ops if RNN_OP.search(op)]


def test_cell_and_step_use_no_torch_rnn_kernel(no_torch_lstm: None) -> None:
    cell = lstmkit.LSTMCell(3, 4)
    lstm = lstmkit.LSTM(3, 4, num_layers=2)
    x = torch.randn(2, 3, requires_grad=True)
    with OpRecorder() as rec:
        h, c = cell(x)
        y, (_, c2) = lstm.step(x)
        (h.sum() + c.sum() + y.sum() + c2.sum()).backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    assert not [op for op in rec.ops if RNN_OP.search(op)]


def test_the_guard_catches_torch_kernels(no_torch_lstm: None) -> None:
    """The guard is live: nn.LSTM itself trips it."""
    with pytest.raises(AssertionError, match="torch's own LSTM kernel"):
        nn.LSTM(3, 4)(torch.randn(2, 1, 3))


def test_the_recorder_sees_torch_rnn_kernels() -> None:
    """The op check is live: nn.LSTM's oneDNN kernel shows up in the recording."""
    x = torch.randn(2, 1, 3, requires_grad=True)
    with OpRecorder() as rec:
        nn.LSTM(3, 4)(x)[0].sum().backward()
    assert [op for op in rec.ops if RNN_OP.search(op)]
