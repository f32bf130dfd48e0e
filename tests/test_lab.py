"""The main job: `lstmkit lab` walks the lab and matches nn.LSTM in every cell."""

from __future__ import annotations

import subprocess
import sys

from lstmkit.cli import main
from lstmkit.lab import TOLERANCE, run_lab


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


def test_cli_lab_exit_code(capsys) -> None:
    assert main(["lab", "--seed", "2"]) == 0
    assert "all cells match nn.LSTM" in capsys.readouterr().out


def test_python_dash_m_runs() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "lstmkit", "--help"], capture_output=True, text=True, check=True
    )
    assert "lab" in done.stdout
