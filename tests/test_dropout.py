"""Inter-layer dropout: training only, fresh mask per element, never after the last layer."""

from __future__ import annotations

import warnings

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import lstmkit

D64 = torch.float64


def layer(lstm: lstmkit.LSTM, k: int, input_size: int) -> lstmkit.LSTM:
    """A one-layer LSTM holding layer ``k`` of ``lstm``."""
    single = lstmkit.LSTM(input_size, lstm.hidden_size, dtype=D64)
    single.load_state_dict(
        {
            n.replace(f"_l{k}", "_l0"): p
            for n, p in lstm.state_dict().items()
            if n.endswith(f"_l{k}")
        }
    )
    return single


def test_eval_mode_ignores_dropout_and_matches_torch() -> None:
    lstm = lstmkit.LSTM(3, 4, num_layers=3, dropout=0.5, dtype=D64).eval()
    plain = lstmkit.LSTM(3, 4, num_layers=3, dtype=D64).eval()
    plain.load_state_dict(lstm.state_dict())
    theirs = nn.LSTM(3, 4, num_layers=3, dropout=0.5, dtype=D64).eval()
    theirs.load_state_dict(lstm.state_dict())
    x = torch.randn(7, 2, 3, dtype=D64)
    for other in (plain, theirs):
        for a, b in zip(lstm(x)[0:1] + lstm(x)[1], other(x)[0:1] + other(x)[1]):
            torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)


def test_dropout_one_zeroes_the_next_layers_input_only() -> None:
    lstm = lstmkit.LSTM(3, 4, num_layers=2, dropout=1.0, dtype=D64).train()
    x = torch.randn(6, 2, 3, dtype=D64)
    h0, c0 = torch.randn(2, 2, 4, dtype=D64), torch.randn(2, 2, 4, dtype=D64)
    out, (h_n, c_n) = lstm(x, (h0, c0))
    first = layer(lstm, 0, 3)(x, (h0[:1], c0[:1]))
    second = layer(lstm, 1, 4)(torch.zeros(6, 2, 4, dtype=D64), (h0[1:], c0[1:]))
    torch.testing.assert_close(out, second[0])  # layer 2 saw zeros
    assert out.abs().min() > 0  # and its own output was not dropped
    torch.testing.assert_close(h_n, torch.cat([first[1][0], second[1][0]]))
    torch.testing.assert_close(c_n, torch.cat([first[1][1], second[1][1]]))


def test_training_mask_is_fresh_per_element_and_scaled() -> None:
    """Replaying the dropout draw with the same seed reproduces the output exactly; the
    replayed mask keeps about 1-p of the elements, differently at every (t, b, unit)."""
    p = 0.4
    lstm = lstmkit.LSTM(3, 8, num_layers=2, dropout=p, bidirectional=True, dtype=D64).train()
    x = torch.randn(50, 4, 3, dtype=D64)
    torch.manual_seed(123)
    out, _ = lstm(x)
    bi = {n: t for n, t in lstm.state_dict().items() if "_l0" in n}
    first = lstmkit.LSTM(3, 8, bidirectional=True, dtype=D64)
    first.load_state_dict(bi)
    y1 = first(x)[0]  # (T, B, 2H)
    torch.manual_seed(123)
    y1_dropped = F.dropout(y1, p, training=True)
    second = lstmkit.LSTM(16, 8, bidirectional=True, dtype=D64)
    second.load_state_dict(
        {n.replace("_l1", "_l0"): t for n, t in lstm.state_dict().items() if "_l1" in n}
    )
    torch.testing.assert_close(out, second(y1_dropped)[0], rtol=1e-12, atol=1e-12)
    keep = y1_dropped != 0
    assert abs(keep.double().mean().item() - (1 - p)) < 0.03
    torch.testing.assert_close(y1_dropped[keep], y1[keep] / (1 - p))
    assert not torch.equal(keep[0], keep[1])  # a different mask at each step
    assert not torch.equal(keep[:, 0], keep[:, 1])  # and for each sample


def test_training_differs_from_eval_with_dropout() -> None:
    lstm = lstmkit.LSTM(3, 4, num_layers=2, dropout=0.5)
    x = torch.randn(5, 2, 3)
    assert not torch.equal(lstm.train()(x)[0], lstm.eval()(x)[0])


def test_one_layer_dropout_warns_and_has_no_effect() -> None:
    with pytest.warns(UserWarning, match="non-zero dropout expects num_layers greater than 1"):
        lstm = lstmkit.LSTM(3, 4, dropout=0.5, dtype=D64)
    x = torch.randn(5, 2, 3, dtype=D64)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        a = lstm.train()(x)[0]
        b = lstm.eval()(x)[0]
    torch.testing.assert_close(a, b, rtol=0, atol=0)
