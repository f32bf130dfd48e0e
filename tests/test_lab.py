"""The main job: `lstmkit lab` walks the lab and matches nn.LSTM in every cell."""

from __future__ import annotations

import pytest

from lstmkit.cli import main
from lstmkit.lab import TOLERANCE, engine, run_lab


def test_lab_cells_match_torch_and_print_the_labs_shapes() -> None:
    lines: list[str] = []
    lab = run_lab(seed=1, write=lines.append)
    text = "\n".join(lines)
    assert set(lab.diffs) == {
        "input formats",
        "inference",
        "length 20",
        "length 30",
        "length 50",
        "step loop",
        "exercise",
    }
    assert max(lab.diffs.values()) < TOLERANCE
    assert "LSTM(128, 64, batch_first=True)" in text
    assert "Shape of input tensor: torch.Size([4, 5, 128])" in text
    assert "shape of init_hidden: torch.Size([1, 4, 64])" in text
    assert "Shape of out: torch.Size([4, 5, 64])" in text
    for length in (20, 30, 50):
        assert f"torch.Size([4, {length}, 64])" in text
    assert "(1) output sequence: torch.Size([16, 25, 128])" in text
    assert "(2) output hidden state: torch.Size([2, 16, 128])" in text
    assert "(3) output cell state: torch.Size([2, 16, 128])" in text
    assert text.count("note:") >= 4


def test_lab_says_which_backend_ran_and_numbers_its_sections_once() -> None:
    from lstmkit.backends import compiled

    lines: list[str] = []
    run_lab(seed=1, write=lines.append)
    fastest = "compiled" if compiled.AVAILABLE else "fused"
    assert engine("auto", 5, 4, 64) == fastest and engine("auto", 1, 4, 64) == "reference"
    assert lines[0].startswith(f"lstmkit backend: auto, which runs {fastest!r} ")
    assert "'reference' for one step at a time" in lines[0]
    sections = [line.split(".")[0] for line in lines if line.startswith("\n== ")]
    assert len(sections) == len(set(sections)) == 8, sections


def test_cli_lab_with_an_explicit_backend(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["lab", "--seed", "2", "--backend", "reference"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("lstmkit backend: reference (asked for)")
    assert "all cells match nn.LSTM" in out


def test_cli_lab_refuses_a_backend_that_cannot_run(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from lstmkit.backends import compiled
    from lstmkit.backends.numba import engine

    monkeypatch.setattr(engine, "AVAILABLE", False)  # as without numba
    monkeypatch.setattr(compiled, "AVAILABLE", False)
    assert main(["lab", "--backend", "compiled"]) == 2
    out, err = capsys.readouterr()
    assert out == "" and "lstmkit lab: error: argument --backend:" in err and "numba" in err
