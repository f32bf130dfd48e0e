"""``torch.onnx.export`` of a whole model holding lstmkit.LSTM, with both exporters: the
graph has one ONNX ``LSTM`` node per layer and onnxruntime runs it, at batch sizes and
lengths other than the example's, equal to the model in eager mode."""

from __future__ import annotations

import io
import warnings

import numpy as np
import pytest
import torch
from torch import Tensor, nn

import lstmkit

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

OPERATOR_OPTIONS = [
    {},
    {"bidirectional": True},
    {"bidirectional": True, "peephole": True, "gate_clip": 2.0, "activation": "softsign",
     "recurrent_activation": "hardsigmoid", "bias": False},
]  # fmt: skip


class Model(nn.Module):
    """Embedding -> lstmkit.LSTM -> Linear; returns the head's output and the states."""

    def __init__(self, batch_first: bool = False, **lstm_kwargs: object) -> None:
        super().__init__()
        self.embed = nn.Embedding(11, 3)
        self.lstm = lstmkit.LSTM(3, 5, num_layers=2, batch_first=batch_first, **lstm_kwargs)
        self.head = nn.Linear(5 * (2 if self.lstm.bidirectional else 1), 4)

    def forward(self, tokens: Tensor, lengths: Tensor | None = None) -> tuple[Tensor, ...]:
        out, (h, c) = self.lstm(self.embed(tokens), lengths=lengths)
        return self.head(out), h, c


class _Bare(nn.Module):
    def __init__(self, lstm: lstmkit.LSTM) -> None:
        super().__init__()
        self.lstm = lstm

    def forward(self, tokens: Tensor) -> Tensor:
        return self.lstm(tokens)[0]


def _export(model: nn.Module, args: tuple, dynamo: bool, names: list[str]) -> bytes:
    axes = {"tokens": {0: "T", 1: "B"}, "lengths": {0: "B"}}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the exporters' deprecation and tracer notes
        if dynamo:
            T, B = torch.export.Dim("T", min=2, max=64), torch.export.Dim("B", min=2, max=64)
            shapes = {"tokens": {0: T, 1: B}, "lengths": {0: B}}
            shapes = {n: shapes[n] for n in names}
            program = torch.onnx.export(
                model, args, dynamo=True, dynamic_shapes=shapes, input_names=names,
                external_data=False,
            )  # fmt: skip
            return program.model_proto.SerializeToString()
        buffer = io.BytesIO()
        torch.onnx.export(
            model, args, buffer, dynamo=False, input_names=names,
            dynamic_axes={n: axes[n] for n in names},
        )  # fmt: skip
        return buffer.getvalue()


def _check(model: nn.Module, data: bytes, with_lengths: bool) -> None:
    nodes = [n.op_type for n in onnx.load_from_string(data).graph.node]
    assert nodes.count("LSTM") == 2  # one per layer, both directions in one node
    session = ort.InferenceSession(data)
    names = [i.name for i in session.get_inputs()]
    for steps, batch in ((9, 5), (2, 3)):
        tokens = torch.randint(0, 11, (steps, batch))
        feeds = {names[0]: tokens.numpy()}
        lengths = torch.randint(1, steps + 1, (batch,))
        if with_lengths:
            feeds[names[1]] = lengths.numpy()
        got = session.run(None, feeds)
        with torch.no_grad():
            want = model(tokens, lengths if with_lengths else None)
        for a, b in zip(got, want):
            np.testing.assert_allclose(a, b.numpy(), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("dynamo", [False, True], ids=["torchscript", "dynamo"])
@pytest.mark.parametrize("options", OPERATOR_OPTIONS, ids=["plain", "bidirectional", "options"])
def test_whole_model_exports_lstm_nodes(dynamo: bool, options: dict) -> None:
    torch.manual_seed(0)
    model = Model(**options).eval()
    data = _export(model, (torch.randint(0, 11, (6, 4)),), dynamo, ["tokens"])
    _check(model, data, with_lengths=False)


@pytest.mark.parametrize("dynamo", [False, True], ids=["torchscript", "dynamo"])
def test_whole_model_with_lengths(dynamo: bool) -> None:
    torch.manual_seed(1)
    model = Model(bidirectional=True).eval()
    args = (torch.randint(0, 11, (6, 4)), torch.tensor([6, 3, 5, 1]))
    _check(model, _export(model, args, dynamo, ["tokens", "lengths"]), with_lengths=True)


@pytest.mark.parametrize("dynamo", [False, True], ids=["torchscript", "dynamo"])
@pytest.mark.parametrize(
    ("options", "named"),
    [({"proj_size": 2}, "proj_size"), ({"layer_norm": True}, "layer_norm"),
     ({"cell_clip": 1.0}, "cell_clip"), ({"zoneout": 0.1}, "zoneout")],
)  # fmt: skip
def test_cells_beyond_the_operator_are_refused(dynamo: bool, options: dict, named: str) -> None:
    """Not a silent constant, nor a wrong graph: a clear error pointing to
    lstmkit.onnx.export, which writes these as a Scan of the cell."""
    model = _Bare(lstmkit.LSTM(3, 5, **options).eval())
    with pytest.raises(Exception, match=rf"{named}.*lstmkit\.onnx\.export"):
        _export(model, (torch.randn(4, 2, 3),), dynamo, ["tokens"])


def test_lstmkit_onnx_without_onnx_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    import lstmkit.onnx

    monkeypatch.setitem(sys.modules, "onnx", None)  # as if not installed
    with pytest.raises(ModuleNotFoundError, match=r"pip install onnx"):
        lstmkit.onnx.to_model(lstmkit.LSTM(3, 4))
