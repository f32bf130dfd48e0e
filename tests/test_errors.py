"""Bad input raises what nn.LSTM / nn.LSTMCell raise: same type, same message.

Each case runs torch's module too and compares, so the expected message is torch's own,
not one we wrote down. Where torch leaks a raw backend error, we assert our clear one.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Callable

import pytest
import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence

import lstmkit


def torch_error(fn: Callable[[], object]) -> BaseException:
    try:
        fn()
    except Exception as e:
        return e
    raise AssertionError("torch raised nothing")


def assert_same_error(ours: Callable[[], object], theirs: Callable[[], object]) -> None:
    expected = torch_error(theirs)
    with pytest.raises(type(expected), match=f"^{re.escape(str(expected))}$"):
        ours()


def pair(*args: object, **kwargs: object) -> tuple[lstmkit.LSTM, nn.LSTM]:
    ours = lstmkit.LSTM(*args, **kwargs)
    theirs = nn.LSTM(*args, **kwargs)
    theirs.load_state_dict(ours.state_dict())
    return ours, theirs


R = torch.randn

FORWARD_CASES: dict[str, tuple[tuple, dict, Callable[[], tuple]]] = {
    "4-D input": ((10, 20), {}, lambda: (R(5, 3, 2, 10),)),
    "1-D input": ((10, 20), {}, lambda: (R(10),)),
    "feature size": ((10, 20), {}, lambda: (R(5, 3, 11),)),
    "feature size unbatched": ((10, 20), {}, lambda: (R(5, 11),)),
    "h0 shape": ((10, 20, 2), {}, lambda: (R(5, 3, 10), (R(1, 3, 20), R(2, 3, 20)))),
    "c0 shape": ((10, 20, 2), {}, lambda: (R(5, 3, 10), (R(2, 3, 20), R(2, 4, 20)))),
    "h0 batch": ((10, 20), {}, lambda: (R(5, 3, 10), (R(1, 4, 20), R(1, 4, 20)))),
    "h0 proj width": (
        (10, 20),
        {"proj_size": 5},
        lambda: (R(5, 3, 10), (R(1, 3, 20), R(1, 3, 20))),
    ),
    "c0 proj width": ((10, 20), {"proj_size": 5}, lambda: (R(5, 3, 10), (R(1, 3, 5), R(1, 3, 5)))),
    "bidirectional rows": (
        (10, 20),
        {"bidirectional": True},
        lambda: (R(5, 3, 10), (R(1, 3, 20), R(1, 3, 20))),
    ),
    "batch_first batch": (
        (10, 20),
        {"batch_first": True},
        lambda: (R(3, 5, 10), (R(1, 5, 20), R(1, 5, 20))),
    ),
    "2-D hx, batched": ((10, 20), {}, lambda: (R(5, 3, 10), (R(3, 20), R(3, 20)))),
    "3-D hx, unbatched": ((10, 20), {}, lambda: (R(5, 10), (R(1, 1, 20), R(1, 1, 20)))),
    "mixed-rank hx": ((10, 20), {}, lambda: (R(5, 3, 10), (R(1, 3, 20), R(3, 20)))),
    "unbatched h0 shape": ((10, 20), {}, lambda: (R(5, 10), (R(2, 20), R(1, 20)))),
    "input dtype": ((10, 20), {}, lambda: (R(5, 3, 10, dtype=torch.float64),)),
    "integer input": ((10, 20), {}, lambda: (torch.ones(5, 3, 10, dtype=torch.long),)),
    "length 0": ((10, 20), {}, lambda: (R(0, 3, 10),)),
    "length 0 unbatched": ((10, 20), {}, lambda: (R(0, 10),)),
    "length 0 batch_first": ((10, 20), {"batch_first": True}, lambda: (R(3, 0, 10),)),
}


@pytest.mark.parametrize("case", FORWARD_CASES, ids=str)
def test_forward_errors_match_torch(case: str) -> None:
    args, kwargs, make = FORWARD_CASES[case]
    ours, theirs = pair(*args, **kwargs)
    call = make()
    assert_same_error(lambda: ours(*call), lambda: theirs(*call))


CONSTRUCTOR_CASES: dict[str, tuple[tuple, dict]] = {
    "dropout > 1": ((10, 20, 2), {"dropout": 1.5}),
    "dropout < 0": ((10, 20, 2), {"dropout": -0.1}),
    "dropout bool": ((10, 20, 2), {"dropout": True}),
    "dropout string": ((10, 20, 2), {"dropout": "0.5"}),
    "bias not bool": ((10, 20), {"bias": 1}),
    "batch_first not bool": ((10, 20), {"batch_first": "yes"}),
    "input_size float": ((10.0, 20), {}),
    "hidden_size float": ((10, 20.0), {}),
    "input_size 0": ((0, 20), {}),
    "hidden_size 0": ((10, 0), {}),
    "hidden_size negative": ((10, -3), {}),
    "num_layers 0": ((10, 20, 0), {}),
    "proj_size negative": ((10, 20), {"proj_size": -1}),
    "proj_size too big": ((10, 20), {"proj_size": 20}),
}


@pytest.mark.parametrize("case", CONSTRUCTOR_CASES, ids=str)
def test_constructor_errors_match_torch(case: str) -> None:
    args, kwargs = CONSTRUCTOR_CASES[case]
    assert_same_error(lambda: lstmkit.LSTM(*args, **kwargs), lambda: nn.LSTM(*args, **kwargs))


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"num_layers": 2.0}, "num_layers should be of type int, got: float"),
        ({"proj_size": 2.0}, "proj_size should be of type int, got: float"),
    ],
)
def test_constructor_types_torch_leaves_raw(kwargs: dict, message: str) -> None:
    with pytest.raises(TypeError, match=f"^{re.escape(message)}$"):
        lstmkit.LSTM(10, 20, **kwargs)


def test_dropout_with_one_layer_warns_like_torch() -> None:
    with warnings.catch_warnings(record=True) as theirs:
        warnings.simplefilter("always")
        nn.LSTM(10, 20, dropout=0.5)
    with pytest.warns(UserWarning) as ours:
        lstmkit.LSTM(10, 20, dropout=0.5)
    assert [str(w.message) for w in ours] == [str(w.message) for w in theirs]


def packed(features: int = 10, dtype: torch.dtype = torch.float32):
    return pack_padded_sequence(R(5, 3, features, dtype=dtype), torch.tensor([5, 3, 2]))


@pytest.mark.parametrize(
    "make, error, message",
    [
        (
            lambda: (packed(11),),
            RuntimeError,
            "input.size(-1) must be equal to input_size. Expected 10, got 11",
        ),
        (
            lambda: (packed(dtype=torch.float64),),
            ValueError,
            "RNN input dtype (torch.float64) does not match weight dtype (torch.float32). "
            "Convert input: input.to(torch.float32), or convert model: model.to(torch.float64)",
        ),
        (
            lambda: (packed(), (R(2, 4, 20), R(2, 4, 20))),
            RuntimeError,
            "Expected hidden[0] size (2, 3, 20), got [2, 4, 20]",
        ),
        (
            lambda: (packed(), (R(2, 3, 20), R(2, 3, 21))),
            RuntimeError,
            "Expected hidden[1] size (2, 3, 20), got [2, 3, 21]",
        ),
        (
            lambda: (packed(), (R(3, 20), R(3, 20))),
            RuntimeError,
            "For PackedSequence input, hx and cx should be 3-D but got (2-D, 2-D) tensors",
        ),
    ],
)
def test_packed_input_gets_clear_errors(make, error, message) -> None:
    lstm = lstmkit.LSTM(10, 20, num_layers=2)
    with pytest.raises(error, match=f"^{re.escape(message)}$"):
        lstm(*make())


@pytest.mark.parametrize(
    "hx, error, message",
    [
        (
            lambda: R(1, 3, 20),
            TypeError,
            "LSTM: hx should be a tuple (h_0, c_0) of two tensors, got Tensor",
        ),
        (
            lambda: (R(1, 3, 20),),
            TypeError,
            "LSTM: hx should be a tuple (h_0, c_0) of two tensors, got 1 items",
        ),
        (
            lambda: (R(1, 3, 20, dtype=torch.float64), R(1, 3, 20)),
            ValueError,
            "LSTM: h_0 dtype (torch.float64) does not match input dtype (torch.float32)",
        ),
    ],
)
def test_hx_errors_torch_leaves_raw(hx, error, message) -> None:
    with pytest.raises(error, match=f"^{re.escape(message)}$"):
        lstmkit.LSTM(10, 20)(R(5, 3, 10), hx())


def test_input_of_wrong_type() -> None:
    with pytest.raises(TypeError, match="input should be a Tensor or a PackedSequence, got list"):
        lstmkit.LSTM(10, 20)([[1.0] * 10])


CELL_CASES: dict[str, Callable[[], tuple]] = {
    "3-D input": lambda: (R(2, 3, 10),),
    "0-D input": lambda: (torch.tensor(1.0),),
    "3-D hx": lambda: (R(3, 10), (R(1, 3, 20), R(3, 20))),
    "3-D cx": lambda: (R(3, 10), (R(3, 20), R(1, 3, 20))),
    "feature size": lambda: (R(3, 11),),
    "feature size unbatched": lambda: (R(11),),
    "h size": lambda: (R(3, 10), (R(3, 21), R(3, 20))),
    "c size": lambda: (R(3, 10), (R(3, 20), R(3, 21))),
    "h batch": lambda: (R(3, 10), (R(4, 20), R(4, 20))),
    "c batch": lambda: (R(3, 10), (R(3, 20), R(4, 20))),
}


@pytest.mark.parametrize("case", CELL_CASES, ids=str)
def test_cell_errors_match_torch(case: str) -> None:
    ours, theirs = lstmkit.LSTMCell(10, 20), nn.LSTMCell(10, 20)
    call = CELL_CASES[case]()
    assert_same_error(lambda: ours(*call), lambda: theirs(*call))


@pytest.mark.parametrize(
    "call, message",
    [
        (
            lambda: (R(3, 10, dtype=torch.float64),),
            "LSTMCell: input dtype (torch.float64) does not match weight dtype (torch.float32)",
        ),
        (
            lambda: (R(3, 10), (R(3, 20, dtype=torch.float64), R(3, 20))),
            "LSTMCell: hx[0] dtype (torch.float64) does not match input dtype (torch.float32)",
        ),
        (
            lambda: (R(10), (R(3, 20), R(3, 20))),
            "LSTMCell: hx[0] should be 1-D like the input, got 2-D",
        ),
        (
            lambda: (R(3, 10), (R(20), R(20))),
            "LSTMCell: hx[0] should be 2-D like the input, got 1-D",
        ),
    ],
)
def test_cell_errors_torch_leaves_raw(call, message) -> None:
    with pytest.raises(RuntimeError, match=re.escape(message)):
        lstmkit.LSTMCell(10, 20)(*call())


@pytest.mark.parametrize(
    "args, kwargs, error, message",
    [
        ((10.0, 20), {}, TypeError, "input_size should be of type int, got: float"),
        ((10, 0), {}, ValueError, "hidden_size must be greater than zero"),
        ((10, 20), {"bias": "no"}, TypeError, "bias should be of type bool, got: str"),
    ],
)
def test_cell_constructor_errors(args: tuple, kwargs: dict, error: type, message: str) -> None:
    """nn.LSTMCell leaks a raw error or accepts these (hidden_size=0, bias="no");
    LSTMCell checks them like nn.LSTM's constructor does."""
    with pytest.raises(error, match=f"^{re.escape(message)}$"):
        lstmkit.LSTMCell(*args, **kwargs)
