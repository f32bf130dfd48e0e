"""The module contract: parameter names, order, shapes, init, repr, state_dict both ways."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import lstmkit

CONFIGS = [
    dict(input_size=10, hidden_size=20),
    dict(input_size=10, hidden_size=20, num_layers=3, bias=False),
    dict(input_size=10, hidden_size=20, num_layers=2, bidirectional=True, proj_size=5),
    dict(input_size=128, hidden_size=64, batch_first=True),
    dict(input_size=7, hidden_size=9, num_layers=2, dropout=0.5, batch_first=True),
    dict(input_size=4, hidden_size=6, bias=False, proj_size=2, bidirectional=True),
]


@pytest.mark.parametrize("kwargs", CONFIGS, ids=str)
def test_same_parameters_and_init_as_torch(kwargs: dict) -> None:
    torch.manual_seed(1234)
    ours = lstmkit.LSTM(**kwargs)
    torch.manual_seed(1234)
    theirs = nn.LSTM(**kwargs)
    assert [n for n, _ in ours.named_parameters()] == [n for n, _ in theirs.named_parameters()]
    assert ours._flat_weights_names == theirs._flat_weights_names
    for (name, a), b in zip(ours.named_parameters(), theirs.parameters()):
        assert a.shape == b.shape, name
        torch.testing.assert_close(a, b, rtol=0, atol=0, msg=name)
    assert [[p.shape for p in ps] for ps in ours.all_weights] == [
        [p.shape for p in ps] for ps in theirs.all_weights
    ]
    assert repr(ours) == repr(theirs)
    for attr in (
        "input_size",
        "hidden_size",
        "num_layers",
        "bias",
        "batch_first",
        "dropout",
        "bidirectional",
        "proj_size",
    ):
        assert getattr(ours, attr) == getattr(theirs, attr), attr


@pytest.mark.parametrize("kwargs", CONFIGS, ids=str)
def test_state_dict_loads_both_ways(kwargs: dict) -> None:
    ours, theirs = lstmkit.LSTM(**kwargs), nn.LSTM(**kwargs)
    ours.load_state_dict(theirs.state_dict())
    for a, b in zip(ours.state_dict().values(), theirs.state_dict().values()):
        assert torch.equal(a, b)
    ours.reset_parameters()
    theirs.load_state_dict(ours.state_dict())
    for a, b in zip(ours.state_dict().values(), theirs.state_dict().values()):
        assert torch.equal(a, b)


def test_reset_parameters_redraws_within_bound() -> None:
    lstm = lstmkit.LSTM(3, 16, num_layers=2, proj_size=4)
    before = [p.clone() for p in lstm.parameters()]
    lstm.reset_parameters()
    bound = 1 / 16**0.5
    for old, new in zip(before, lstm.parameters()):
        assert not torch.equal(old, new)
        assert new.abs().max() <= bound
        assert new.min() < -bound / 2 and new.max() > bound / 2  # spread over the interval


def test_flatten_parameters_is_a_harmless_no_op() -> None:
    lstm = lstmkit.LSTM(3, 4)
    before = [p.clone() for p in lstm.parameters()]
    assert lstm.flatten_parameters() is None
    assert all(torch.equal(a, b) for a, b in zip(before, lstm.parameters()))


def test_all_weights_are_the_parameters() -> None:
    lstm = lstmkit.LSTM(3, 4, num_layers=2, bidirectional=True)
    flat = [p for ps in lstm.all_weights for p in ps]
    assert all(a is b for a, b in zip(flat, lstm.parameters()))
    assert len(flat) == len(list(lstm.parameters())) == 16


def test_dtype_and_device_factory_kwargs_and_to() -> None:
    lstm = lstmkit.LSTM(3, 4, dtype=torch.float64, device="cpu")
    assert all(p.dtype == torch.float64 for p in lstm.parameters())
    lstm = lstm.float()
    out, (h, c) = lstm(torch.randn(2, 1, 3))
    assert out.dtype == h.dtype == c.dtype == torch.float32


def test_backend_argument_is_keyword_only_and_checked() -> None:
    with pytest.raises(TypeError):
        lstmkit.LSTM(3, 4, 1, True, False, 0.0, False, 0, None, None, "reference")
    with pytest.raises(ValueError, match="backend must be one of"):
        lstmkit.LSTM(3, 4, backend="cudnn")
    assert repr(lstmkit.LSTM(3, 4, backend="reference")) == "LSTM(3, 4, backend='reference')"


def test_cell_matches_torch_parameters_and_repr() -> None:
    for kwargs in (
        dict(input_size=10, hidden_size=20),
        dict(input_size=3, hidden_size=4, bias=False),
    ):
        torch.manual_seed(7)
        ours = lstmkit.LSTMCell(**kwargs)
        torch.manual_seed(7)
        theirs = nn.LSTMCell(**kwargs)
        assert repr(ours) == repr(theirs)
        assert list(ours.state_dict()) == list(theirs.state_dict())
        for a, b in zip(ours.parameters(), theirs.parameters()):
            assert torch.equal(a, b)
        assert (ours.bias_ih is None) == (theirs.bias_ih is None)
        theirs.load_state_dict(ours.state_dict())
        ours.load_state_dict(theirs.state_dict())


def test_no_torch_rnn_base_class() -> None:
    assert not issubclass(lstmkit.LSTM, nn.RNNBase)
    assert not issubclass(lstmkit.LSTMCell, nn.RNNCellBase)
