"""`lstmkit bench`: the command runs, reports every implementation, and its onnxruntime
model computes the same LSTM as nn.LSTM."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from lstmkit.bench import impls, shapes
from lstmkit.cli import main


def test_bench_quick_json(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bench", "--shapes", "S1", "--rounds", "1", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["gemm_gflops"] > 0 and report["machine"]["torch"] == torch.__version__
    names = {(r["impl"], r["mode"]) for r in report["rows"]}
    for impl in ("torch", "lstmkit-auto", "lstmkit-reference", "lstmkit-fused"):
        assert (impl, "forward") in names and (impl, "train") in names
    torch_rows = [r for r in report["rows"] if r["impl"] == "torch"]
    assert all(r["ratio"] == 1.0 for r in torch_rows)
    assert all(r["seconds"] > 0 for r in report["rows"])


def test_bench_table_and_step_shapes(capsys: pytest.CaptureFixture[str]) -> None:
    assert (
        main(
            [
                "bench",
                "--shapes",
                "step-H64",
                "--rounds",
                "1",
                "--impls",
                "torch,lstmkit-auto",
                "--markdown",
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "| step-H64 (1,1,64,64,1) | lstmkit-auto | step |" in out
    assert "fp32 GEMM rate measured" in out


def test_bench_rejects_unknown_shapes() -> None:
    with pytest.raises(SystemExit, match="unknown shape"):
        main(["bench", "--shapes", "S9"])
    with pytest.raises(ValueError, match="choose from"):
        shapes.find("S1,nope")


def test_gemm_flops_counts_every_layer_and_direction() -> None:
    s = shapes.Shape("x", T=2, B=3, I=5, H=7, L=2, bidirectional=True)
    per_step = 2 * 3 * 4 * 7
    assert s.gemm_flops() == 2 * 2 * per_step * ((5 + 7) + (14 + 7))


@pytest.mark.parametrize("name", ["S1", "S6"])
def test_onnxruntime_model_matches_torch(name: str) -> None:
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    from lstmkit.bench.onnx_model import onnx_session

    (shape,) = shapes.find(name)
    small = shapes.Shape(shape.name, 7, 3, shape.I, shape.H, shape.L, shape.bidirectional)
    problem = impls.Problem.make(small)
    y, h_n, c_n = onnx_session(problem)()
    oracle = nn.LSTM(small.I, small.H, small.L, bidirectional=small.bidirectional)
    oracle.load_state_dict(problem.weights)
    with torch.no_grad():
        out, (h, c) = oracle(problem.x, problem.hx)
    for got, want in ((y, out), (h_n, h), (c_n, c)):
        torch.testing.assert_close(torch.from_numpy(got), want, rtol=1e-5, atol=1e-5)


def test_bench_reports_torch_compile_and_its_compile_time() -> None:
    from lstmkit.bench import run

    tiny = shapes.Shape("tiny", 3, 2, 4, 4, 1)
    results = run([tiny], rounds=1, impls=["torch", "lstmkit-torch.compile"], include_compile=True)
    assert {(r.impl, r.mode) for r in results.rows} >= {
        ("lstmkit-torch.compile", "forward"),
        ("lstmkit-torch.compile", "train"),
    }
    assert set(results.setup) == {
        "tiny lstmkit-torch.compile compile forward",
        "tiny lstmkit-torch.compile compile train",
    }
    assert all(s > 0 for s in results.setup.values())
    assert "compile forward:" in results.table()


def test_bench_leaves_out_backends_this_machine_lacks(monkeypatch: pytest.MonkeyPatch) -> None:
    from lstmkit.backends import compiled

    monkeypatch.setattr(compiled, "kernels", None)  # as without numba
    names = impls.registry(include_onnx=False)
    assert "lstmkit-compiled" not in names and "lstmkit-fused" in names


def test_bench_options_rows() -> None:
    from lstmkit.bench import run

    tiny = shapes.Shape("tiny", 3, 2, 4, 4, 1)
    results = run(
        [tiny],
        rounds=1,
        impls=["torch", "lstmkit-auto+peephole", "lstmkit-auto+cell_clip"],
        include_options=True,
    )
    assert {(r.impl, r.mode) for r in results.rows} >= {
        ("lstmkit-auto+peephole", "train"),
        ("lstmkit-auto+cell_clip", "forward"),
    }
