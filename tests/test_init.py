"""forget_bias and lstmkit.init (keras_, orthogonal_recurrent_)."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

import lstmkit
from lstmkit import init


@pytest.mark.parametrize(
    "make",
    [
        lambda **k: lstmkit.LSTM(3, 8, num_layers=2, bidirectional=True, **k),
        lambda **k: lstmkit.LSTMCell(3, 8, **k),
    ],
    ids=["LSTM", "LSTMCell"],
)
def test_forget_bias_adds_to_the_forget_slice_only(make) -> None:
    torch.manual_seed(5)
    plain = make()
    torch.manual_seed(5)
    biased = make(forget_bias=1.0)
    H = 8
    for (name, a), b in zip(plain.named_parameters(), biased.parameters()):
        expected = a.clone()
        if name.startswith("bias_ih"):
            expected[H : 2 * H] += 1.0
        torch.testing.assert_close(b, expected, rtol=0, atol=0, msg=name)
    assert "forget_bias=1.0" in repr(biased)
    biased.reset_parameters()  # the forget bias survives re-initialisation
    for name, p in biased.named_parameters():
        if name.startswith("bias_ih"):
            assert p[H : 2 * H].min() > 1 - 1 / math.sqrt(H) - 1e-6


def test_forget_bias_default_keeps_torch_init() -> None:
    torch.manual_seed(0)
    ours = lstmkit.LSTM(3, 4, forget_bias=0.0)
    torch.manual_seed(0)
    theirs = nn.LSTM(3, 4)
    for a, b in zip(ours.parameters(), theirs.parameters()):
        assert torch.equal(a, b)
    assert repr(ours) == repr(theirs)


@pytest.mark.parametrize(
    "kwargs, error, message",
    [
        (dict(forget_bias=1.0, bias=False), ValueError, "forget_bias=1.0 needs bias=True"),
        (dict(forget_bias=True), TypeError, "forget_bias should be a number, got: bool"),
        (dict(forget_bias=float("inf")), ValueError, "forget_bias should be finite, got inf"),
    ],
)
def test_forget_bias_errors(kwargs, error, message) -> None:
    with pytest.raises(error, match=message):
        lstmkit.LSTM(3, 4, **kwargs)
    with pytest.raises(error, match=message):
        lstmkit.LSTMCell(3, 4, **kwargs)


@pytest.mark.parametrize(
    "make",
    [
        lambda: lstmkit.LSTM(6, 5, num_layers=2, bidirectional=True),
        lambda: lstmkit.LSTM(6, 5, proj_size=3),
        lambda: lstmkit.LSTMCell(6, 5),
    ],
    ids=["LSTM", "LSTM-proj", "LSTMCell"],
)
def test_keras_init(make) -> None:
    torch.manual_seed(2)
    module = make()
    init.keras_(module)
    H = 5
    for w in init.layer_weights(module):
        fan_in, fan_out = w.weight_ih.shape[1], w.weight_ih.shape[0]
        assert w.weight_ih.abs().max() <= math.sqrt(6 / (fan_in + fan_out)) + 1e-7
        assert w.weight_ih.abs().max() > 0.5 * math.sqrt(6 / (fan_in + fan_out))
        gram = w.weight_hh.T @ w.weight_hh  # orthonormal columns (Keras: orthonormal rows)
        torch.testing.assert_close(gram, torch.eye(gram.shape[0]), rtol=0, atol=1e-5)
        expected = torch.zeros(4 * H)
        expected[H : 2 * H] = 1.0
        torch.testing.assert_close(w.bias_ih, expected, rtol=0, atol=0)
        assert w.bias_hh.abs().max() == 0


def test_orthogonal_recurrent_changes_only_w_hh() -> None:
    lstm = lstmkit.LSTM(4, 6, num_layers=2)
    before = {n: p.clone() for n, p in lstm.named_parameters()}
    init.orthogonal_recurrent_(lstm)
    for name, p in lstm.named_parameters():
        if name.startswith("weight_hh"):
            torch.testing.assert_close(p.T @ p, torch.eye(6), rtol=0, atol=1e-5)
        else:
            assert torch.equal(p, before[name])
