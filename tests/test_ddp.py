"""Distributed training: examples/train_ddp.py under torchrun, 2 processes on loopback."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import torch

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "train_ddp.py"


def load_example():
    spec = importlib.util.spec_from_file_location("train_ddp", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_ddp_gradients_equal_one_process_and_checkpoint_reloads(tmp_path: Path) -> None:
    out, grads_path = tmp_path / "ckpt.pt", tmp_path / "grads.pt"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            "--nproc_per_node=2",
            str(EXAMPLE),
            "--steps",
            "3",
            "--batch",
            "16",
            "--out",
            str(out),
            "--dump-first-grads",
            str(grads_path),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "(2 processes)" in done.stdout

    example = load_example()
    torch.manual_seed(0)
    model = example.Forecaster()
    x, y = example.batch(0, 16)
    loss = torch.nn.functional.mse_loss(model(x), y)
    expected = dict(
        zip(
            [n for n, _ in model.named_parameters()],
            torch.autograd.grad(loss, list(model.parameters())),
        )
    )
    got = torch.load(grads_path)
    assert got.keys() == expected.keys()
    for name, grad in expected.items():
        torch.testing.assert_close(got[name], grad, rtol=1e-5, atol=1e-6, msg=name)

    checkpoint = torch.load(out)
    fresh = example.Forecaster()
    fresh.load_state_dict(checkpoint["model"])
    with torch.no_grad():  # (the workers ran 1 thread each: the engine's product routes,
        # measured per process and thread count, may differ here at float rounding)
        torch.testing.assert_close(
            fresh(checkpoint["probe"]), checkpoint["probe_out"], rtol=1e-6, atol=1e-7
        )
