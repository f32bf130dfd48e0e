"""Variational recurrent dropout: one mask per sequence on h_{t-1} before W_hh."""

from __future__ import annotations

import pytest
import torch

import lstmkit
from lstmkit import functional
from lstmkit.functional import recurrent_dropout_mask

D64 = torch.float64


def by_equations(w: functional.LayerWeights, x, h0, c0, mask):
    """One layer, forward: gates = x W_ih^T + b + (h_{t-1} * mask) W_hh^T, every step."""
    H = w.weight_hh.shape[0] // 4
    h, c, ys = h0, c0, []
    for x_t in x:
        z = x_t @ w.weight_ih.T + w.bias_ih + w.bias_hh + (h * mask) @ w.weight_hh.T
        i, f = torch.sigmoid(z[:, :H]), torch.sigmoid(z[:, H : 2 * H])
        g, o = torch.tanh(z[:, 2 * H : 3 * H]), torch.sigmoid(z[:, 3 * H :])
        c = f * c + i * g
        h = o * torch.tanh(c)
        ys.append(h)
    return torch.stack(ys), h, c


def test_injected_mask_follows_the_equations(backend: str) -> None:
    torch.manual_seed(0)
    lstm = lstmkit.LSTM(3, 5, dtype=D64)
    (w,) = lstm.layer_weights()
    x, h0, c0 = (torch.randn(s, dtype=D64) for s in ((6, 4, 3), (4, 5), (4, 5)))
    mask = recurrent_dropout_mask(x, 4, 5, 0.4)
    out, (h, c) = functional.lstm(
        x, (h0[None], c0[None]), [w], backend=backend, recurrent_masks=[mask]
    )
    ys, h_ref, c_ref = by_equations(w, x, h0, c0, mask)
    torch.testing.assert_close(out, ys, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(h[0], h_ref, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(c[0], c_ref, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("batch, lengths", [(4, False), (12, True)])
@pytest.mark.parametrize("fast", ["fused", "compiled"])
def test_backends_match_reference_under_the_same_masks(batch, lengths, fast) -> None:
    """Same masks through every backend (batch 12: compiled's per-step path), with
    both directions, projection, peepholes and lengths; outputs and every gradient."""
    torch.manual_seed(1)
    lstm = lstmkit.LSTM(
        3, 5, num_layers=2, bidirectional=True, proj_size=2, peephole=True, dtype=D64
    )
    weights = lstm.layer_weights()
    x = torch.randn(5, batch, 3, dtype=D64, requires_grad=True)
    hx = (torch.randn(4, batch, 2, dtype=D64), torch.randn(4, batch, 5, dtype=D64))
    masks = [recurrent_dropout_mask(x, batch, 2, 0.3) for _ in range(4)]
    lens = torch.randint(1, 6, (batch,)) if lengths else None
    results = []
    for backend in ("reference", fast):
        out, (h, c) = functional.lstm(
            x, hx, weights, bidirectional=True, lengths=lens, backend=backend, recurrent_masks=masks
        )
        g = torch.Generator().manual_seed(2)
        loss = sum((t * torch.randn(t.shape, generator=g, dtype=D64)).sum() for t in (out, h, c))
        results.append([out, h, c, *torch.autograd.grad(loss, [x, *lstm.parameters()])])
    for k, (a, b) in enumerate(zip(*results, strict=True)):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-10, msg=f"tensor {k}")


def test_mask_keep_rate_and_scale() -> None:
    torch.manual_seed(3)
    mask = recurrent_dropout_mask(torch.empty(0), 400, 250, 0.3)
    assert mask.shape == (400, 250)
    kept = mask != 0
    assert abs(kept.double().mean().item() - 0.7) < 0.01
    torch.testing.assert_close(mask[kept], torch.full_like(mask[kept], 1 / 0.7))


def test_inert_in_eval_active_in_training() -> None:
    torch.manual_seed(4)
    lstm = lstmkit.LSTM(3, 5, num_layers=2, recurrent_dropout=0.5)
    plain = lstmkit.LSTM(3, 5, num_layers=2)
    plain.load_state_dict(lstm.state_dict())
    x = torch.randn(7, 4, 3)
    torch.testing.assert_close(lstm.eval()(x)[0], plain.eval()(x)[0], rtol=0, atol=0)
    lstm.train()
    torch.manual_seed(5)
    a = lstm(x)[0]
    torch.manual_seed(5)
    b = lstm(x)[0]
    torch.testing.assert_close(a, b, rtol=0, atol=0)  # the masks come from torch's RNG
    assert not torch.allclose(a, plain(x)[0])
    assert "recurrent_dropout=0.5" in repr(lstm)


def test_step_needs_masks_in_training_with_recurrent_dropout() -> None:
    lstm = lstmkit.LSTM(3, 5, recurrent_dropout=0.2)
    with pytest.raises(ValueError, match="recurrent_dropout_masks"):
        lstm.step(torch.randn(2, 3))
    y, _ = lstm.eval().step(torch.randn(2, 3))
    assert y.shape == (2, 5)


@pytest.mark.parametrize("value, error", [(1.0, ValueError), (-0.1, ValueError), (True, TypeError)])
def test_recurrent_dropout_errors(value, error) -> None:
    with pytest.raises(error, match="recurrent_dropout should be"):
        lstmkit.LSTM(3, 5, recurrent_dropout=value)
