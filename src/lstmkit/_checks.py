"""Argument checks, with PyTorch's nn.LSTM exception types and messages.

Where nn.LSTM gives a clear message we give the same one, so code that catches it keeps
working; where nn.LSTM leaks a raw backend error (PackedSequence input, a mismatched hx
dtype) we give a clear one in the same style.
"""

from __future__ import annotations

import numbers
import warnings

import torch
from torch import Tensor

from .option_checks import check_bool


def check_constructor(
    input_size: object,
    hidden_size: object,
    num_layers: object,
    bias: object,
    batch_first: object,
    dropout: object,
    proj_size: object,
) -> None:
    """nn.LSTM's constructor checks, in nn.LSTM's order."""
    if (
        not isinstance(dropout, numbers.Number)
        or isinstance(dropout, bool)
        or not 0 <= dropout <= 1  # type: ignore[operator]
    ):
        raise ValueError(
            "dropout should be a number in range [0, 1] "
            "representing the probability of an element being zeroed"
        )
    if dropout > 0 and num_layers == 1:  # type: ignore[operator]
        warnings.warn(
            "dropout option adds dropout after all but last recurrent layer, so non-zero "
            "dropout expects num_layers greater than 1, but got "
            f"dropout={dropout} and num_layers={num_layers}",
            stacklevel=3,
        )
    check_bool("bias", bias)
    check_bool("batch_first", batch_first)
    check_positive_int("input_size", input_size)
    check_positive_int("hidden_size", hidden_size)
    check_positive_int("num_layers", num_layers)
    if not isinstance(proj_size, int):
        raise TypeError(f"proj_size should be of type int, got: {type(proj_size).__name__}")
    if proj_size < 0:
        raise ValueError("proj_size should be a positive integer or zero to disable projections")
    if proj_size >= hidden_size:  # type: ignore[operator]
        raise ValueError("proj_size has to be smaller than hidden_size")


def check_positive_int(name: str, value: object) -> None:
    if not isinstance(value, int):
        raise TypeError(f"{name} should be of type int, got: {type(value).__name__}")
    if value <= 0:
        raise ValueError(f"{name} must be greater than zero")


def check_input_dtype(input: Tensor, weight: Tensor) -> None:
    """nn.LSTM's dtype check (skipped under autocast, as nn.LSTM does)."""
    if input.dtype != weight.dtype and not torch.is_autocast_enabled(input.device.type):
        raise ValueError(
            f"RNN input dtype ({input.dtype}) does not match weight dtype ({weight.dtype}). "
            f"Convert input: input.to({weight.dtype}), or convert model: model.to({input.dtype})"
        )


def check_hx_pair(hx: object, what: str) -> tuple[Tensor, Tensor]:
    """``hx`` must be a pair ``(h_0, c_0)`` of tensors."""
    if (
        not isinstance(hx, (tuple, list))
        or len(hx) != 2
        or not all(isinstance(t, Tensor) for t in hx)
    ):
        got = type(hx).__name__ if not isinstance(hx, (tuple, list)) else f"{len(hx)} items"
        raise TypeError(f"{what}: hx should be a tuple (h_0, c_0) of two tensors, got {got}")
    return hx[0], hx[1]


def check_hx_dtype_device(hx: tuple[Tensor, Tensor], input: Tensor, what: str) -> None:
    """Clear messages where torch leaks raw backend errors."""
    for name, t in zip(("h_0", "c_0"), hx):
        if t.dtype != input.dtype:
            raise ValueError(
                f"{what}: {name} dtype ({t.dtype}) does not match input dtype ({input.dtype})"
            )
        if t.device != input.device:
            raise RuntimeError(f"{what}: {name} is on {t.device} but input is on {input.device}")


def check_size(t: Tensor, expected: tuple[int, ...], msg: str) -> None:
    """nn.LSTM's ``check_hidden_size``: ``msg`` formatted with expected and actual size."""
    if tuple(t.shape) != expected:
        raise RuntimeError(msg.format(expected, list(t.shape)))
