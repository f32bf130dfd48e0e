"""Every backend against the reference: the benchmark shapes in float32, backend choice,
the compiled kernels' activations, and the oneDNN GEMM paths."""

from __future__ import annotations

import functools
import warnings

import numpy as np
import pytest
import torch
from torch import Tensor

import lstmkit
from lstmkit import backends, gemm
from lstmkit.backends import BACKENDS, compiled, select
from lstmkit.backends.numba import engine
from lstmkit.bench.shapes import SHAPES, Shape


@functools.cache
def problem(shape: Shape) -> tuple[dict[str, Tensor], Tensor, tuple[Tensor, Tensor]]:
    g = torch.Generator().manual_seed(7)
    lstm = lstmkit.LSTM(shape.I, shape.H, shape.L, bidirectional=shape.bidirectional)
    weights = {
        k: torch.rand(v.shape, generator=g) * 0.2 - 0.1 for k, v in lstm.state_dict().items()
    }
    rows = shape.L * shape.directions
    x = torch.randn(shape.T, shape.B, shape.I, generator=g)
    hx = (
        torch.randn(rows, shape.B, shape.H, generator=g),
        torch.randn(rows, shape.B, shape.H, generator=g),
    )
    return weights, x, hx


def outputs_and_grads(shape: Shape, backend: str, dtype: torch.dtype) -> list[Tensor]:
    weights, x, hx = problem(shape)
    lstm = lstmkit.LSTM(
        shape.I, shape.H, shape.L, bidirectional=shape.bidirectional, backend=backend, dtype=dtype
    )
    lstm.load_state_dict(weights)
    x = x.to(dtype).requires_grad_()
    hx = tuple(t.to(dtype).requires_grad_() for t in hx)
    out, (h, c) = lstm(x, hx)
    g = torch.Generator().manual_seed(3)
    loss = sum((t * torch.randn(t.shape, generator=g).to(dtype)).sum() for t in (out, h, c))
    grads = torch.autograd.grad(loss, [x, *hx, *lstm.parameters()])
    return [t.detach().double() for t in (out, h, c, *grads)]


@functools.cache
def float64_reference(shape: Shape) -> list[Tensor]:
    return outputs_and_grads(shape, "reference", torch.float64)


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: s.name)
def test_float32_backends_match_float64_reference(shape: Shape, backend: str) -> None:
    """Outputs and every gradient, each within 2e-4 of its own largest magnitude (float32
    sums over T*B rows; oneDNN's GEMMs round differently from MKL's)."""
    ours = outputs_and_grads(shape, backend, torch.float32)
    for k, (a, b) in enumerate(zip(ours, float64_reference(shape), strict=True)):
        scale = b.abs().max().item()
        torch.testing.assert_close(a, b, rtol=0, atol=2e-4 * max(scale, 1e-3), msg=f"tensor {k}")


def test_auto_prefers_compiled_then_fused() -> None:
    x32 = torch.zeros(2, 1, 8)
    assert select("auto", x32) is BACKENDS["compiled"].run
    assert select("auto", x32.bfloat16()) is BACKENDS["fused"].run
    assert select("auto", x32.half()) is BACKENDS["fused"].run


def test_explicit_backend_that_cannot_serve_raises() -> None:
    lstm = lstmkit.LSTM(3, 4, backend="compiled", dtype=torch.bfloat16)
    with pytest.raises(
        NotImplementedError,
        match=r"backend 'compiled' cannot run this call: "
        "it supports float32 and float64, got torch.bfloat16",
    ):
        lstm(torch.randn(2, 1, 3, dtype=torch.bfloat16))


def test_without_numba_compiled_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(engine, "AVAILABLE", False)  # as without numba
    monkeypatch.setattr(compiled, "AVAILABLE", False)
    monkeypatch.setattr(backends, "_warned_no_numba", False)
    with pytest.raises(
        NotImplementedError, match=r"numba cannot be imported .*pip install 'numba>=0.59'"
    ):
        lstmkit.LSTM(3, 4, backend="compiled")(torch.randn(2, 1, 3))
    with pytest.warns(RuntimeWarning, match=r"runs 'fused', 5-20x slower than nn.LSTM"):
        assert select("auto", torch.zeros(2, 1, 4 * 4)) is BACKENDS["fused"].run
    with warnings.catch_warnings():  # once per process
        warnings.simplefilter("error")
        select("auto", torch.zeros(2, 1, 4 * 4))


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16], ids=str)
def test_auto_serves_half_precision(dtype: torch.dtype) -> None:
    lstm = lstmkit.LSTM(3, 4, num_layers=2, dtype=dtype)
    ref = lstmkit.LSTM(3, 4, num_layers=2, dtype=torch.float64, backend="reference")
    ref.load_state_dict(lstm.state_dict())
    x = torch.randn(6, 2, 3).to(dtype)
    torch.testing.assert_close(lstm(x)[0].double(), ref(x.double())[0], rtol=0, atol=3e-2)


def test_rational_activations_accuracy() -> None:
    """The float32 kernels' tanh and sigmoid against float64, over every regime."""
    njit = pytest.importorskip("numba").njit

    from lstmkit.backends.numba import numerics

    @njit
    def apply(x, t, s):
        for j in range(x.shape[0]):
            t[j] = numerics.tanh(x[j])
            s[j] = numerics.sigmoid(x[j])

    x = np.concatenate([np.linspace(-40, 40, 400_001), np.geomspace(1e-8, 1, 10_001)])
    x = np.concatenate([x, -x]).astype(np.float32)
    t, s = np.empty_like(x), np.empty_like(x)
    apply(x, t, s)
    exact = x.astype(np.float64)
    assert np.abs(t - np.tanh(exact)).max() < 5.2e-7
    assert np.abs(s - 1 / (1 + np.exp(-exact))).max() < 2.7e-7
    assert np.all(np.abs(t) <= 1) and np.all((s >= 0) & (s <= 1))


def test_onednn_input_projection_and_its_gradients() -> None:
    """Many rows route the input projection through oneDNN; values and gradients agree
    with F.linear (and second derivatives flow)."""
    x = torch.randn(gemm.ONEDNN_MIN_ROWS + 5, 24, requires_grad=True)
    w = torch.randn(32, 24, requires_grad=True)
    b = torch.randn(32, requires_grad=True)
    y = gemm.linear(x, w, b)
    assert "OneDNNLinear" in type(y.grad_fn.next_functions[0][0]).__name__
    ref = torch.nn.functional.linear(x, w, b)
    torch.testing.assert_close(y, ref, rtol=1e-5, atol=1e-4)
    dy = torch.randn_like(y)
    for a, r in zip(torch.autograd.grad(y, [x, w, b], dy), torch.autograd.grad(ref, [x, w, b], dy)):
        torch.testing.assert_close(a, r, rtol=1e-4, atol=1e-3)
    (dx,) = torch.autograd.grad(gemm.linear(x, w, b), [x], dy, create_graph=True)
    (dw2,) = torch.autograd.grad(dx.sum(), [w])
    torch.testing.assert_close(dw2, dy.sum(0)[:, None].expand_as(w), rtol=1e-4, atol=1e-3)


def test_step_gemm_onednn_and_blas_agree() -> None:
    w = torch.randn(64, 16)
    for rows in (gemm.ONEDNN_MIN_BATCH, 2):
        x, add = torch.randn(rows, 16), torch.randn(rows, 64)
        step = gemm.StepGemm(w, rows)
        assert step.onednn == (rows >= gemm.ONEDNN_MIN_BATCH)
        out = torch.empty(rows, 64)
        torch.testing.assert_close(step.mm(x, out), x @ w.t(), rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(step.addmm(add, x, out), add + x @ w.t(), rtol=1e-5, atol=1e-5)


def test_eval_mode_backward_on_every_backend(backend: str) -> None:
    lstm = lstmkit.LSTM(3, 4, num_layers=2, dropout=0.3, backend=backend).eval()
    x = torch.randn(5, 2, 3, requires_grad=True)
    lstm(x)[0].sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=str)
def test_large_batch_paths_with_lengths_projection_and_reverse(backend: str, dtype) -> None:
    """B = 40: compiled splits the rows across threads when there are several, fused
    takes oneDNN step GEMMs in float32; here with packing-style lengths, projection, both
    directions and every-step states, against the float64 reference."""
    g = torch.Generator().manual_seed(4)
    kwargs = dict(num_layers=2, bidirectional=True, proj_size=3)
    ref = lstmkit.LSTM(5, 6, dtype=torch.float64, backend="reference", **kwargs)
    ours = lstmkit.LSTM(5, 6, dtype=dtype, backend=backend, **kwargs)
    ours.load_state_dict(ref.state_dict())
    x64 = torch.randn(7, 40, 5, generator=g, dtype=torch.float64)
    lengths = torch.randint(0, 8, (40,), generator=g)
    results = []
    for model, x in ((ref, x64), (ours, x64.to(dtype))):
        x = x.clone().requires_grad_()
        out, (h, c), st = model(x, lengths=lengths, return_states=True)
        w = torch.Generator().manual_seed(9)
        loss = sum(
            (t * torch.randn(t.shape, generator=w, dtype=torch.float64).to(dtype)).sum()
            for t in (out, h, c, st.c)
        )
        grads = torch.autograd.grad(loss, [x, *model.parameters()])
        results.append([t.detach().double() for t in (out, h, c, st.c, *grads)])
    tol = 1e-10 if dtype == torch.float64 else 2e-4
    for k, (a, b) in enumerate(zip(*results, strict=True)):
        scale = max(b.abs().max().item(), 1e-3)
        torch.testing.assert_close(a, b, rtol=0, atol=tol * scale, msg=f"tensor {k}")
