"""`lstmkit bench`: the command runs, reports every implementation and the machine, says
which rows it skipped and why, warns when the machine was busy, and its onnxruntime model
computes the same LSTM as nn.LSTM."""

from __future__ import annotations

import importlib.util
import json

import pytest
import torch
from torch import nn

from lstmkit.bench import catalog, impls, report, shapes
from lstmkit.bench.runner import run
from lstmkit.cli import main


def test_bench_quick_json(capsys: pytest.CaptureFixture[str]) -> None:
    threads = torch.get_num_threads()
    assert main(["bench", "--shapes", "S1", "--rounds", "1", "--json", "--threads", "1"]) == 0
    assert torch.get_num_threads() == threads  # --threads lasts for the command only
    out = capsys.readouterr().out
    assert out.startswith("{")  # progress went to stderr: the JSON is the whole of stdout
    report = json.loads(out)
    m = report["machine"]
    assert report["gemm_gflops"] > 0 and m["torch"] == torch.__version__
    assert m["cpu"] and m["torch_threads"] == 1
    names = {(r["impl"], r["mode"]) for r in report["rows"]}
    for impl in ("torch", "lstmkit-auto", "lstmkit-reference", "lstmkit-fused"):
        assert (impl, "forward") in names and (impl, "train") in names
    torch_rows = [r for r in report["rows"] if r["impl"] == "torch"]
    assert all(r["ratio"] == 1.0 for r in torch_rows)
    assert all(r["seconds"] > 0 and r["spread"] == 1.0 for r in report["rows"])  # one round
    assert set(report) >= {"skipped", "warnings"}


def test_bench_table_and_step_shapes(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["bench", "--shapes", "step-H64", "--rounds", "1", "--impls", "torch,lstmkit-auto"]
    assert main([*argv, "--markdown"]) == 0
    out = capsys.readouterr().out
    assert "| step-H64 (1,1,64,64,1) | lstmkit-auto | step |" in out
    header = out.splitlines()[0]
    assert header.startswith("# ") and "cores, torch " in header
    assert "fp32 GEMM rate measured" in header and torch.__version__ in header


def test_bench_cell_shapes_time_lstmcell_against_nn_lstmcell() -> None:
    """A cell shape times each implementation's cell on one step (nn.LSTMCell for
    ``torch``, lstmkit.LSTMCell for the backends, the LSTM operator on one step for
    onnxruntime) in a ``cell`` mode only; ``torch.compile`` has no cell workload."""
    cell = shapes.find("cell-B1")
    names = ["torch", "lstmkit-auto", "lstmkit-reference", "lstmkit-torch.compile"]
    results = run(cell, rounds=1, impls=names)
    assert {(r.impl, r.mode) for r in results.rows} == {
        ("torch", "cell"), ("lstmkit-auto", "cell"), ("lstmkit-reference", "cell")
    }  # fmt: skip
    problem = impls.Problem.make(cell[0])
    outs = [impls.torch_lstm(problem).forward()]
    outs += [impls.lstmkit_lstm(b)(problem).forward() for b in ("auto", "reference")]
    for h, c in outs[1:]:  # the same weights and inputs: the same step
        torch.testing.assert_close(h, outs[0][0], rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(c, outs[0][1], rtol=1e-5, atol=1e-6)


def test_bench_rejects_unknown_shapes_and_impls() -> None:
    with pytest.raises(ValueError, match=r"unknown shape.* choose from S1"):
        shapes.find("S1,nope")
    with pytest.raises(ValueError, match=r"unknown implementation.*nope; choose from torch"):
        catalog.parse_names("torch,nope")
    assert catalog.parse_names("torch,lstmkit-auto,torch") == ["torch", "lstmkit-auto"]


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
    tiny = shapes.Shape("tiny", 3, 2, 4, 4, 1)
    results = run([tiny], rounds=1, impls=["torch", "lstmkit-torch.compile"])
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


def test_bench_skips_what_this_machine_lacks_and_says_why(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from lstmkit.backends import compiled
    from lstmkit.backends.numba import engine

    monkeypatch.setattr(engine, "AVAILABLE", False)  # as without numba
    monkeypatch.setattr(compiled, "AVAILABLE", False)
    find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *a: None if name == "onnxruntime" else find_spec(name, *a),
    )
    builders, skipped = impls.available(catalog.default_names())
    assert "lstmkit-compiled" not in builders and "lstmkit-fused" in builders
    assert "pip install 'numba" in skipped["lstmkit-compiled"]
    assert skipped["onnxruntime"] == "onnxruntime not installed (pip install onnx onnxruntime)"
    argv = ["bench", "--shapes", "step-H64", "--rounds", "1"]
    assert main([*argv, "--impls", "torch,lstmkit-compiled,onnxruntime"]) == 0
    table = capsys.readouterr().out
    assert "skipped lstmkit-compiled: numba cannot be imported" in table
    assert "skipped onnxruntime: onnxruntime not installed" in table
    assert main([*argv, "--impls", "lstmkit-compiled"]) == 1  # nothing left to time
    assert "none of the implementations asked for can run here" in capsys.readouterr().err


def test_bench_options_rows() -> None:
    tiny = shapes.Shape("tiny", 3, 2, 4, 4, 1)
    results = run(
        [tiny], rounds=1, impls=["torch", "lstmkit-auto+peephole", "lstmkit-auto+cell_clip"]
    )
    assert {(r.impl, r.mode) for r in results.rows} >= {
        ("lstmkit-auto+peephole", "train"),
        ("lstmkit-auto+cell_clip", "forward"),
    }
    assert catalog.default_names(include_options=True)[-len(catalog.OPTIONS) :] == list(
        catalog.OPTION_IMPLS
    )


def _results(rounds: dict[str, list[float]]) -> report.Results:
    results = report.Results({"cpu": "x", "cores": 2, "torch_threads": 2, "torch": "t"}, 10.0)
    results.add(shapes.Shape("tiny", 3, 2, 4, 4, 1), "forward", rounds)
    return results


def test_bench_warns_when_rounds_say_the_machine_was_busy() -> None:
    calm = _results({"torch": [1.0e-3, 1.2e-3, 1.1e-3], "lstmkit-auto": [2e-3, 2.1e-3, 2e-3]})
    assert calm.warnings() == [] and "warning" not in calm.table()
    busy = _results({"torch": [0.7e-3, 0.7e-3, 63e-3], "lstmkit-auto": [2e-3, 2.1e-3, 2e-3]})
    (warning,) = busy.warnings()
    assert "tiny (3,2,4,4,1) torch forward's slowest round took 90.0x its fastest" in warning
    assert "unreliable" in warning and warning in busy.table(markdown=True)
    assert json.loads(busy.to_json())["warnings"] == [warning]
    assert busy.rows[0].seconds == 0.7e-3  # the median is what the table reports


def test_bench_names_the_cpu_engine_route_when_the_engine_reports_one(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from lstmkit.backends import compiled

    monkeypatch.delattr(compiled, "route", raising=False)
    assert "route" not in report.machine()
    monkeypatch.setattr(compiled, "route", lambda: "onednn-prepacked", raising=False)
    monkeypatch.setattr(compiled, "threads_route", lambda: "openmp", raising=False)
    machine = report.machine()
    assert machine["route"] == "onednn-prepacked" and machine["threads_route"] == "openmp"
    results = report.Results(machine, 10.0)
    assert (
        "CPU engine route: onednn-prepacked, row ranges (small batches without autograd: "
        "hidden units, where timed faster) on openmp threads"
    ) in results.header()


def test_interleaved_rounds_turn_the_order() -> None:
    """No implementation always runs right after the same one (a call can slow the next:
    threads still waking or spinning)."""
    from lstmkit.bench.timing import interleaved

    calls: list[str] = []
    fns = {name: (lambda name=name: calls.append(name)) for name in "abc"}
    samples = interleaved(fns, rounds=3, warmup=0, min_seconds=0.0)
    assert calls[3:] == list("abcbcacab")  # after one call each to size the slots
    assert all(len(times) == 3 for times in samples.values())
