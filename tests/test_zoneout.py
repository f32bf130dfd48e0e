"""Zoneout (Krueger et al. 2017): units keep their previous value, by mask or by rate."""

from __future__ import annotations

import pytest
import torch

import lstmkit
from lstmkit import functional
from lstmkit.functional import zoneout_masks

D64 = torch.float64


def by_equations(w: functional.LayerWeights, x, h, c, keep_h, keep_c):
    """One layer, forward, every step: h_t = k_h h_{t-1} + (1 - k_h) h_new (and c)."""
    H = w.weight_hh.shape[0] // 4
    ys = []
    for t, x_t in enumerate(x):
        z = x_t @ w.weight_ih.T + w.bias_ih + w.bias_hh + h @ w.weight_hh.T
        i, f = torch.sigmoid(z[:, :H]), torch.sigmoid(z[:, H : 2 * H])
        g, o = torch.tanh(z[:, 2 * H : 3 * H]), torch.sigmoid(z[:, 3 * H :])
        c_new = f * c + i * g
        h_new = o * torch.tanh(c_new)
        h = keep_h[t] * h + (1 - keep_h[t]) * h_new
        c = keep_c[t] * c + (1 - keep_c[t]) * c_new
        ys.append(h)
    return torch.stack(ys), h, c


@pytest.mark.parametrize("training", [True, False])
def test_zoneout_follows_the_equations(training: bool, backend: str) -> None:
    torch.manual_seed(0)
    lstm = lstmkit.LSTM(3, 5, dtype=D64)
    (w,) = lstm.layer_weights()
    x, h0, c0 = (torch.randn(s, dtype=D64) for s in ((6, 4, 3), (4, 5), (4, 5)))
    keep = zoneout_masks(x, 6, 4, (5, 5), (0.3, 0.6), training)
    out, (h, c) = functional.lstm(
        x, (h0[None], c0[None]), [w], backend=backend, zoneout_keep=[keep]
    )
    ys, h_ref, c_ref = by_equations(w, x, h0, c0, *keep)
    torch.testing.assert_close(out, ys, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(h[0], h_ref, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(c[0], c_ref, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("fast", ["fused", "compiled"])
@pytest.mark.parametrize("lengths", [False, True])
def test_fast_backends_match_reference_under_the_same_masks(lengths: bool, fast: str) -> None:
    torch.manual_seed(1)
    lstm = lstmkit.LSTM(
        3, 5, num_layers=2, bidirectional=True, proj_size=2, peephole=True, dtype=D64
    )
    weights = lstm.layer_weights()
    x = torch.randn(5, 6, 3, dtype=D64, requires_grad=True)
    keeps = [zoneout_masks(x, 5, 6, (2, 5), (0.4, 0.2), True) for _ in range(4)]
    lens = torch.tensor([5, 2, 4, 1, 3, 5]) if lengths else None
    results = []
    for backend in ("reference", fast):
        out, (h, c), st = functional.lstm(
            x,
            (torch.zeros(4, 6, 2, dtype=D64), torch.zeros(4, 6, 5, dtype=D64)),
            weights,
            bidirectional=True,
            lengths=lens,
            backend=backend,
            zoneout_keep=keeps,
            return_states=True,
        )
        g = torch.Generator().manual_seed(2)
        loss = sum(
            (t * torch.randn(t.shape, generator=g, dtype=D64)).sum() for t in (out, h, c, st.c)
        )
        results.append([out, h, c, st.c, *torch.autograd.grad(loss, [x, *lstm.parameters()])])
    for k, (a, b) in enumerate(zip(*results, strict=True)):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-10, msg=f"tensor {k}")


def test_gradcheck_with_zoneout(backend: str) -> None:
    torch.manual_seed(2)
    lstm = lstmkit.LSTM(2, 3, dtype=D64)
    x = torch.randn(4, 2, 2, dtype=D64, requires_grad=True)
    keep = zoneout_masks(x, 4, 2, (3, 3), (0.5, 0.5), True)
    params = [p.detach().clone().requires_grad_() for p in lstm.parameters()]

    def f(x, *p):
        w = functional.LayerWeights(*p)
        out, (_, c) = functional.lstm(
            x, (torch.zeros(1, 2, 3, dtype=D64),) * 2, [w], backend=backend, zoneout_keep=[keep]
        )
        return out, c

    assert torch.autograd.gradcheck(f, (x, *params))


def test_masks_keep_rate_fresh_per_step_and_eval_rate() -> None:
    torch.manual_seed(3)
    keep_h, keep_c = zoneout_masks(torch.empty(0), 50, 40, (30, 20), (0.25, 0.6), True)
    assert keep_h.shape == (50, 40, 30) and keep_c.shape == (50, 40, 20)
    assert abs(keep_h.mean().item() - 0.25) < 0.02 and abs(keep_c.mean().item() - 0.6) < 0.02
    assert not torch.equal(keep_h[0], keep_h[1])  # a fresh mask at every step
    eval_h, _ = zoneout_masks(torch.empty(0), 5, 4, (3, 3), (0.25, 0.6), False)
    assert torch.equal(eval_h, torch.full((5, 4, 3), 0.25))


def test_module_eval_uses_the_rate_and_training_differs() -> None:
    torch.manual_seed(4)
    lstm = lstmkit.LSTM(3, 5, zoneout=(0.3, 0.1), dtype=D64)
    (w,) = lstm.layer_weights()
    x = torch.randn(6, 2, 3, dtype=D64)
    zeros = torch.zeros(2, 5, dtype=D64)
    ys, _, _ = by_equations(
        w,
        x,
        zeros,
        zeros,
        torch.full((6, 2, 5), 0.3, dtype=D64),
        torch.full((6, 2, 5), 0.1, dtype=D64),
    )
    torch.testing.assert_close(lstm.eval()(x)[0], ys, rtol=1e-12, atol=1e-12)
    stepped = torch.stack([y for y, _ in _steps(lstm, x)])
    torch.testing.assert_close(stepped, ys, rtol=1e-12, atol=1e-12)
    assert not torch.allclose(lstm.train()(x)[0], ys)
    assert "zoneout=(0.3, 0.1)" in repr(lstm)


def _steps(lstm, x):
    state = None
    for x_t in x:
        y, state = lstm.step(x_t, state)
        yield y, state


@pytest.mark.parametrize("value", [1.0, (0.1, 1.2), (0.1, 0.2, 0.3), "0.1"])
def test_zoneout_errors(value) -> None:
    with pytest.raises((ValueError, TypeError), match="zoneout should be"):
        lstmkit.LSTM(3, 5, zoneout=value)
