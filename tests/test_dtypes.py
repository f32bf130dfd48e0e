"""float32, float64, bfloat16 and float16 on CPU; CUDA when present."""

from __future__ import annotations

import pytest
import torch
from oracle import Config, assert_matches_torch, make_inputs, run_with_grads, twin_modules

LOW = {torch.bfloat16: 3e-2, torch.float16: 4e-3}


@pytest.mark.parametrize("dtype", list(LOW), ids=str)
@pytest.mark.parametrize(
    "cfg",
    [
        Config(num_layers=2, bidirectional=True, steps=6, hidden_size=8),
        Config(proj_size=3, layout="packed_unsorted", steps=5, hidden_size=8),
    ],
    ids=str,
)
def test_low_precision_close_to_float64(dtype: torch.dtype, cfg: Config) -> None:
    """Half precision outputs and gradients stay within that precision's reach of the
    float64 result for the same (rounded) weights and inputs."""
    torch.manual_seed(11)  # the weights: independent of what ran before
    ours, _ = twin_modules(cfg, torch.float64)
    low = type(ours)(**cfg.module_kwargs(), dtype=dtype)
    low.load_state_dict(ours.state_dict())
    ours.load_state_dict(low.state_dict())  # both hold the rounded weights
    inputs = make_inputs(cfg, dtype)
    outs_low, grads_low = run_with_grads(low, inputs)
    for t in inputs.leaves():
        t.data = t.data.double()
    outs_ref, grads_ref = run_with_grads(ours, inputs)
    assert all(o.dtype == dtype for o in outs_low + grads_low)
    for a, b in zip(outs_low + grads_low, outs_ref + grads_ref, strict=True):
        scale = b.abs().max().clamp_min(1.0).item()
        torch.testing.assert_close(a.double(), b, rtol=0, atol=LOW[dtype] * scale)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize(
    "cfg",
    [Config(num_layers=2, bidirectional=True), Config(layout="packed_unsorted", proj_size=2)],
    ids=str,
)
def test_cuda_matches_torch(cfg: Config) -> None:
    torch.set_default_device("cuda")
    try:
        assert_matches_torch(cfg, torch.float64)
    finally:
        torch.set_default_device("cpu")


def test_autocast_runs_in_low_precision_like_nn_lstm(backend: str) -> None:
    """Under CPU autocast nn.LSTM computes and returns bfloat16; so does lstmkit (or an
    explicit backend without bfloat16 says so)."""
    from torch import nn

    import lstmkit

    torch.manual_seed(3)
    ours = lstmkit.LSTM(8, 16, num_layers=2, bidirectional=True, backend=backend)
    theirs = nn.LSTM(8, 16, num_layers=2, bidirectional=True)
    theirs.load_state_dict(ours.state_dict())
    x = torch.randn(5, 40, 8)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        expected, _ = theirs(x)
        if backend == "compiled":
            with pytest.raises(NotImplementedError, match=r"got torch\.bfloat16"):
                ours(x)
            return
        out, (h, c) = ours(x)
        out.float().square().sum().backward()
    assert out.dtype == h.dtype == c.dtype == expected.dtype == torch.bfloat16
    torch.testing.assert_close(out.float(), ours(x)[0].detach(), rtol=0, atol=2e-2)
    assert all(p.grad is not None and p.grad.dtype == torch.float32 for p in ours.parameters())
