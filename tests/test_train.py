"""``lstmkit train``: learns real data beyond a naive baseline, resumes exactly, refuses
bad input and bad checkpoints before any progress output, draws figures that stand alone;
and the gate trace behind the figures."""

from __future__ import annotations

import datetime
import json
from pathlib import Path

import pytest
import torch

pytest.importorskip("statsmodels")
pytest.importorskip("sklearn")
pytest.importorskip("safetensors")
pytest.importorskip("matplotlib")

import matplotlib.image
from safetensors.torch import load_file

import lstmkit
from lstmkit.cli import main
from lstmkit.trace import trace

#: small models on one thread: fast, and unhurt by other processes on the cores
TINY = ["--quiet", "--hidden-size", "16", "--threads", "1"]

#: matplotlib must get arrays, not tensors (numpy deprecates what it does with them)
pytestmark = pytest.mark.filterwarnings("error::DeprecationWarning:matplotlib.*")


def metrics(directory: Path) -> dict:
    return json.loads((directory / "metrics.json").read_text())


def assert_png(path: Path) -> None:
    image = matplotlib.image.imread(path)
    assert image.ndim == 3 and image.shape[0] > 100 and image.shape[1] > 100, path


@pytest.mark.parametrize(
    "task, epochs, hidden", [("co2", "4", "16"), ("sunspots", "4", "16"), ("digits", "4", "32")]
)
def test_tiny_budget_beats_the_naive_baseline(
    task, epochs, hidden, tmp_path: Path, figures
) -> None:
    args = ["--epochs", epochs, "--hidden-size", hidden, "--out", str(tmp_path), "--quiet",
            "--threads", "1"]  # fmt: skip
    assert main(["train", "--task", task, *args]) == 0
    m = metrics(tmp_path)
    if task != "digits":  # MAE: lower is better
        assert m["score"] < 0.8 * m["baseline"], m
    else:  # accuracy: the majority class gets about 10%
        assert m["score"] > 0.5 > m["baseline"], m
    names = ["curves.png", "gates.png"]
    names.append("confusion.png" if task == "digits" else "predictions.png")
    for name in names:
        assert_png(tmp_path / name)
    gates = matplotlib.image.imread(tmp_path / "gates.png")
    assert gates.shape[0] > gates.shape[1] > 500  # a row per quantity, not a strip
    loss_axis = figures["curves.png"].axes[0]
    assert loss_axis.get_ylabel().startswith("training loss: ")  # says which loss
    if task == "digits":
        _assert_counts_readable(figures["confusion.png"].axes[0])
    else:
        _assert_forecast_axis_is_dated(figures["predictions.png"].axes[0], task, m)


def _assert_counts_readable(ax) -> None:
    """Counts on dark cells are white, on light cells black."""
    counts = {(t.get_position(), t.get_text()): t.get_color() for t in ax.texts}
    largest = max(int(text) for _, text in counts)
    for (_, text), color in counts.items():
        assert color == ("white" if int(text) > largest / 2 else "black"), (text, color)
    assert "white" in counts.values() and "black" in counts.values()


def _assert_forecast_axis_is_dated(ax, task: str, m: dict) -> None:
    first, last = ax.lines[0].get_xdata()[[0, -1]]
    if task == "co2":  # months, to the series' last one
        assert (first, last) == (datetime.date(1993, 8, 1), datetime.date(2001, 12, 1))
    else:  # years
        assert (first, last) == (1951, 2008)
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert f"lstm ({m['metric']} {m['score']:.3g}" in labels[-1], labels


@pytest.fixture
def figures(monkeypatch: pytest.MonkeyPatch) -> dict:
    """Every figure ``lstmkit train`` saves, by file name, for looking inside."""
    from lstmkit.train import plots

    saved: dict = {}
    save = plots._save

    def keep(fig, path: Path) -> Path:
        saved[path.name] = fig
        return save(fig, path)

    monkeypatch.setattr(plots, "_save", keep)
    return saved


def test_resume_continues_exactly(tmp_path: Path) -> None:
    """2 epochs, then --resume to 4, equals 4 straight: history, weights, optimizer state.
    Zoneout and recurrent dropout draw masks from torch's RNG, which the checkpoint keeps."""
    args = ["train", "--task", "co2", "--zoneout", "0.1", "--recurrent-dropout", "0.2",
            "--no-plots", *TINY]  # fmt: skip
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    assert main([*args, "--epochs", "4", "--out", str(straight)]) == 0
    assert main([*args, "--epochs", "2", "--out", str(resumed)]) == 0
    half = json.loads((resumed / "checkpoint.json").read_text())
    assert half["epoch"] == 2
    torch.manual_seed(123)  # the resumed run must not depend on the caller's RNG
    assert main([*args, "--epochs", "4", "--out", str(resumed), "--resume"]) == 0
    a, b = metrics(straight), metrics(resumed)
    assert a["score"] == b["score"] and a["final_loss"] == b["final_loss"]
    history = [
        json.loads((d / "checkpoint.json").read_text())["history"] for d in (straight, resumed)
    ]
    for x, y in zip(*history, strict=True):
        assert (x["loss"], x["score"]) == (y["loss"], y["score"])
    ta, tb = (load_file(str(d / "checkpoint.safetensors")) for d in (straight, resumed))
    assert ta.keys() == tb.keys()
    for key in ta:
        torch.testing.assert_close(ta[key], tb[key], rtol=0, atol=0, msg=key)


def _error(args: list[str], capsys: pytest.CaptureFixture) -> str:
    assert main(args) == 2
    return capsys.readouterr().err


def test_bad_checkpoints_are_refused_clearly(tmp_path: Path, capsys) -> None:
    args = ["train", "--task", "co2", "--epochs", "1", "--no-plots", "--out", str(tmp_path), *TINY]
    assert main(args) == 0
    resume = [*args[:4], "2", *args[5:], "--resume"]
    weights, meta = tmp_path / "checkpoint.safetensors", tmp_path / "checkpoint.json"
    good_weights, good_meta = weights.read_bytes(), meta.read_text()

    err = _error([*resume, "--hidden-size", "24"], capsys)  # another configuration
    assert "another configuration" in err and "hidden_size: checkpoint 16, this run 24" in err
    err = _error([*resume, "--layer-norm"], capsys)
    assert "another configuration" in err and "layer_norm" in err

    corrupt = bytearray(good_weights)
    corrupt[-3] ^= 0xFF  # one flipped bit in the tensor data
    weights.write_bytes(bytes(corrupt))
    assert "does not match the checksum" in _error(resume, capsys)

    weights.write_bytes(good_weights[:100])  # truncated, checksum updated to match
    import hashlib

    meta.write_text(good_meta.replace(json.loads(good_meta)["sha256"],
                                      hashlib.sha256(good_weights[:100]).hexdigest()))  # fmt: skip
    assert "cannot be read" in _error(resume, capsys)

    weights.write_bytes(good_weights)
    meta.write_text(good_meta[:50])
    assert "is not valid JSON" in _error(resume, capsys)
    meta.unlink()
    assert "missing checkpoint.json" in _error(resume, capsys)

    meta.write_text(good_meta)  # intact again: resumes
    assert main(resume) == 0
    assert json.loads(meta.read_text())["epoch"] == 2


def test_compare_trains_each_variant_on_the_same_data(tmp_path: Path, capsys, figures) -> None:
    args = ["train", "--task", "co2", "--epochs", "2", "--out", str(tmp_path), *TINY,
            "--compare", "vanilla,layer_norm,zoneout"]  # fmt: skip
    assert main(args) == 0
    table = capsys.readouterr().out
    for name in ("vanilla", "layer_norm", "zoneout"):
        assert name in table
        m = metrics(tmp_path / name)
        assert m["variant"] == name and m["baseline"] == metrics(tmp_path / "vanilla")["baseline"]
    assert metrics(tmp_path / "layer_norm")["config"]["lstm"] == {"layer_norm": True}
    assert_png(tmp_path / "compare_curves.png")
    assert_png(tmp_path / "compare_predictions.png")
    legend = [
        t.get_text() for t in figures["compare_predictions.png"].axes[0].get_legend().get_texts()
    ]
    score = metrics(tmp_path / "zoneout")["score"]
    assert f"zoneout (MAE {score:.3g} ppm)" in legend


def test_seeds_repeat_each_variant_on_the_same_split(tmp_path: Path, capsys) -> None:
    args = ["train", "--task", "digits", "--epochs", "1", "--no-plots", "--out", str(tmp_path),
            *TINY, "--compare", "vanilla,zoneout", "--seeds", "2", "--seed", "5"]  # fmt: skip
    assert main(args) == 0
    assert "mean ± std over 2 seeds" in capsys.readouterr().out
    summary = json.loads((tmp_path / "summary.json").read_text())["runs"]
    for name in ("vanilla", "zoneout"):
        runs = [metrics(tmp_path / name / f"seed{s}") for s in (5, 6)]
        assert [r["config"]["seed"] for r in runs] == [5, 6]
        scores = [r["score"] for r in runs]
        assert summary[name]["scores"] == scores and summary[name]["seeds"] == [5, 6]
        assert abs(summary[name]["score_mean"] - sum(scores) / 2) < 1e-12
        assert len({r["baseline"] for r in runs}) == 1  # one held-out split for every seed


def test_seeds_figures_quote_the_tables_mean(tmp_path: Path, figures) -> None:
    """The legend gives what the table gives (mean ± std over seeds); a note says which
    seed the lines are."""
    args = ["train", "--task", "co2", "--epochs", "1", "--out", str(tmp_path), *TINY,
            "--compare", "vanilla", "--seeds", "2", "--seed", "5"]  # fmt: skip
    assert main(args) == 0
    run = json.loads((tmp_path / "summary.json").read_text())["runs"]["vanilla"]
    figure = figures["compare_predictions.png"]
    legend = [t.get_text() for t in figure.axes[0].get_legend().get_texts()]
    mean, std = run["score_mean"], run["score_std"]
    assert f"vanilla (MAE {mean:.3g} ± {std:.2g} ppm, 2 seeds)" in legend
    note = "lines: seed 5, the first of 2"
    assert std > 0 and figure.get_suptitle() == f"{note}; legend: mean ± std over the seeds"
    assert figures["compare_curves.png"].get_suptitle() == note


def test_missing_dependencies_are_named(monkeypatch, capsys) -> None:
    import lstmkit.train.command as command

    monkeypatch.setattr(command, "missing_dependencies", lambda: ["statsmodels", "safetensors"])
    err = _error(["train", "--task", "co2"], capsys)
    assert "statsmodels, safetensors" in err and "pip install 'lstmkit[train]'" in err
    assert "from a clone: pip install -e '.[train]'" in err


@pytest.mark.parametrize(
    "argv, said",
    [
        (["--proj-size", "64"], "argument --proj-size: must be smaller than --hidden-size (16)"),
        (["--dropout", "0.2"], "argument --dropout: acts between stacked layers"),
        (["--task", "digits", "--window", "4"], "argument --window: is for the forecasting"),
        (["--window", "500"], "argument --window: must be between 2 and 174 for co2, got 500"),
        (["--resume"], "argument --resume: no checkpoint in"),
    ],
)
def test_bad_arguments_are_refused_before_any_output(argv, said, tmp_path: Path, capsys) -> None:
    """Checks that need two flags, the task or the disk: status 2, the flag named, and
    nothing printed before (no progress line) or written."""
    out = tmp_path / "run"
    assert main(["train", *argv, "--hidden-size", "16", "--out", str(out)]) == 2
    stdout, err = capsys.readouterr()
    assert stdout == "" and err.startswith("lstmkit train: error: ") and said in err, err
    assert not out.exists()


def test_an_existing_checkpoint_needs_resume_or_force(tmp_path: Path, capsys) -> None:
    args = ["train", "--task", "co2", "--epochs", "1", "--no-plots", "--out", str(tmp_path), *TINY]
    assert main(args) == 0
    before = (tmp_path / "checkpoint.json").read_text()
    err = _error(args, capsys)
    assert f"argument --out: {tmp_path} already holds a checkpoint" in err
    assert "--resume" in err and "--force" in err
    assert (tmp_path / "checkpoint.json").read_text() == before  # untouched
    assert main([*args, "--force", "--seed", "1"]) == 0
    assert json.loads((tmp_path / "checkpoint.json").read_text())["config"]["seed"] == 1


def test_trace_gates_are_the_cells(tmp_path: Path) -> None:
    """The traced gates, recomputed by hand from nn.LSTM's weights and states."""
    torch.manual_seed(0)
    lstm = lstmkit.LSTM(3, 4, num_layers=2)
    oracle = lstm.to_torch()
    x = torch.randn(6, 3)
    t = trace(lstm, x)
    layer_in = x
    for k, layer in enumerate(t.layers):
        W, R = getattr(oracle, f"weight_ih_l{k}"), getattr(oracle, f"weight_hh_l{k}")
        b = getattr(oracle, f"bias_ih_l{k}") + getattr(oracle, f"bias_hh_l{k}")
        with torch.no_grad():
            sub = torch.nn.LSTM(layer_in.shape[1], 4)
            sub.load_state_dict({"weight_ih_l0": W, "weight_hh_l0": R,
                                 "bias_ih_l0": getattr(oracle, f"bias_ih_l{k}"),
                                 "bias_hh_l0": getattr(oracle, f"bias_hh_l{k}")})  # fmt: skip
            hs, _ = sub(layer_in)  # (T, H): nn.LSTM's own states for this layer
            h_prev = torch.cat([torch.zeros(1, 4), hs[:-1]])
            z = layer_in @ W.T + b + h_prev @ R.T
        torch.testing.assert_close(layer.i, torch.sigmoid(z[:, :4]))
        torch.testing.assert_close(layer.f, torch.sigmoid(z[:, 4:8]))
        torch.testing.assert_close(layer.g, torch.tanh(z[:, 8:12]))
        torch.testing.assert_close(layer.o, torch.sigmoid(z[:, 12:]))
        torch.testing.assert_close(layer.h, hs)
        layer_in = hs
    with pytest.raises(ValueError, match=r"one sequence \(T, I\)"):
        trace(lstm, torch.randn(2, 6, 3))


def test_lab_plot_writes_the_gates(tmp_path: Path, capsys) -> None:
    assert main(["lab", "--plot", str(tmp_path)]) == 0
    assert_png(tmp_path / "gates.png")
    assert "gates.png" in capsys.readouterr().out
