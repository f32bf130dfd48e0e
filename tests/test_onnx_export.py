"""lstmkit.onnx: the exported model runs in onnxruntime and matches PyTorch."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import lstmkit

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
from lstmkit.onnx import export, to_model  # noqa: E402


def run(model, **feeds):
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, {k: v.numpy() for k, v in feeds.items()})


def assert_exports(lstm, model, x, hx=None, lengths=None) -> None:
    """onnxruntime's outputs of ``model`` equal ``lstm``'s (output, h_n, c_n) at 1e-5."""
    feeds = {"input": x}
    if hx is not None:
        feeds |= {"h0": hx[0], "c0": hx[1]}
    if lengths is not None:
        feeds["lengths"] = lengths
    got = run(model, **feeds)
    with torch.no_grad():
        out, (h, c) = lstm(x, hx, lengths=lengths)
    for a, b in zip(got, (out, h, c), strict=True):
        torch.testing.assert_close(torch.from_numpy(a), b, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(),
        dict(num_layers=2, bidirectional=True),
        dict(num_layers=3, bias=False),
        dict(num_layers=2, batch_first=True, bidirectional=True),
    ],
    ids=str,
)
def test_export_matches_pytorch_with_dynamic_batch_and_length(kwargs: dict) -> None:
    torch.manual_seed(0)
    lstm = lstmkit.LSTM(5, 6, **kwargs).eval()
    model = to_model(lstm)
    onnx.checker.check_model(model)
    L, D = lstm.num_layers, 2 if lstm.bidirectional else 1
    for T, B in ((4, 3), (9, 1)):  # one model, several batch sizes and lengths
        x = torch.randn(B, T, 5) if lstm.batch_first else torch.randn(T, B, 5)
        hx = (torch.randn(L * D, B, lstm.proj_size or 6), torch.randn(L * D, B, 6))
        got = run(model, input=x, h0=hx[0], c0=hx[1])
        with torch.no_grad():
            out, (h, c) = lstm(x, hx)
        for a, b in zip(got, (out, h, c)):
            torch.testing.assert_close(torch.from_numpy(a), b, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("proj", [0, 2])
def test_export_with_lengths_equals_lengths(proj: int) -> None:
    torch.manual_seed(1)
    lstm = lstmkit.LSTM(4, 5, num_layers=2, bidirectional=True, proj_size=proj).eval()
    x, lengths = torch.randn(6, 3, 4), torch.tensor([6, 2, 4])
    got = run(
        to_model(lstm, with_state=False, with_lengths=True),
        input=x,
        lengths=lengths.to(torch.int32),
    )
    with torch.no_grad():
        out, (h, c) = lstm(x, lengths=lengths)
    for a, b in zip(got, (out, h, c)):
        torch.testing.assert_close(torch.from_numpy(a), b, rtol=1e-5, atol=1e-5)


def test_export_writes_a_file(tmp_path) -> None:
    lstm = lstmkit.LSTM(3, 4)
    export(lstm, tmp_path / "lstm.onnx", with_state=False)
    model = onnx.load(str(tmp_path / "lstm.onnx"))
    assert [n.op_type for n in model.graph.node].count("LSTM") == 1
    x = torch.randn(5, 2, 3)
    (out, _, _) = run(model, input=x)
    with torch.no_grad():
        np.testing.assert_allclose(out, lstm(x)[0].numpy(), rtol=1e-5, atol=1e-5)


def test_projection_exports_as_scan_without_state_inputs() -> None:
    lstm = lstmkit.LSTM(3, 4, proj_size=2, num_layers=2).eval()
    model = to_model(lstm, with_state=False)
    assert [n.op_type for n in model.graph.node].count("Scan") == 2
    assert_exports(lstm, model, torch.randn(5, 3, 3))


@pytest.mark.parametrize(
    "options",
    [
        dict(peephole=True),
        dict(gate_clip=0.7),
        dict(peephole=True, gate_clip=0.5),
        dict(activation="softsign", recurrent_activation="hardsigmoid"),
        dict(activation="relu", peephole=True),
        dict(recurrent_activation="hardsigmoid", gate_clip=2.0),
    ],
    ids=str,
)
def test_export_cell_options_to_the_operator(options: dict) -> None:
    torch.manual_seed(2)
    lstm = lstmkit.LSTM(4, 5, num_layers=2, bidirectional=True, **options).eval()
    with torch.no_grad():
        for p in lstm.parameters():
            p.mul_(3)  # clips active
    assert_exports(lstm, to_model(lstm, with_state=False), torch.randn(6, 3, 4))


@pytest.mark.parametrize(
    "options",
    [
        dict(layer_norm=True),
        dict(cell_clip=0.5),
        dict(zoneout=(0.2, 0.4)),
        dict(proj_size=3, peephole=True, gate_clip=1.0),
        dict(layer_norm=True, peephole=True, gate_clip=1.5, cell_clip=1.0, activation="softsign",
             recurrent_activation="hardsigmoid", zoneout=0.1, proj_size=2),
    ],
    ids=str,
)  # fmt: skip
@pytest.mark.parametrize("bidirectional", [False, True])
def test_cells_beyond_the_operator_export_as_scans(options: dict, bidirectional: bool) -> None:
    """Layer norm, cell_clip, zoneout (eval) and options with a projection: a Scan of the
    cell per layer-direction, with given states and lengths, equal to PyTorch."""
    torch.manual_seed(3)
    lstm = lstmkit.LSTM(4, 5, num_layers=2, bidirectional=bidirectional, batch_first=True,
                        **options).eval()  # fmt: skip
    with torch.no_grad():
        for p in lstm.parameters():
            p.add_(0.3 * torch.randn_like(p))  # layer-norm gains and biases off 1 and 0
    model = to_model(lstm, with_state=True, with_lengths=True)
    assert any(node.op_type == "Scan" for node in model.graph.node)
    D, P = 2 if bidirectional else 1, options.get("proj_size", 0) or 5
    x, lengths = torch.randn(3, 6, 4), torch.tensor([6, 2, 4], dtype=torch.int32)
    hx = torch.randn(2 * D, 3, P), torch.randn(2 * D, 3, 5)
    assert_exports(lstm, model, x, hx, lengths)
