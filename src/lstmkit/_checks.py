"""Argument checks, with PyTorch's nn.LSTM exception types and messages.

Where nn.LSTM gives a clear message we give the same one, so code that catches it keeps
working; where nn.LSTM leaks a raw backend error (PackedSequence input, a mismatched hx
dtype) we give a clear one in the same style.
"""

from __future__ import annotations

import math
import numbers
import warnings

import torch
from torch import Tensor


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


def check_forget_bias(forget_bias: object, bias: object) -> float:
    """``forget_bias``: a finite number, nonzero only with ``bias=True``."""
    if not isinstance(forget_bias, (int, float)) or isinstance(forget_bias, bool):
        raise TypeError(f"forget_bias should be a number, got: {type(forget_bias).__name__}")
    if not math.isfinite(forget_bias):
        raise ValueError(f"forget_bias should be finite, got {forget_bias}")
    if forget_bias and bias is not True:
        raise ValueError(
            f"forget_bias={forget_bias} needs bias=True: it is added to bias_ih's forget slice"
        )
    return float(forget_bias)


def check_clip(name: str, value: object) -> float | None:
    """A clip: ``None`` (off) or a positive finite number."""
    if value is None:
        return None
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        raise TypeError(f"{name} should be a positive number or None, got: {type(value).__name__}")
    if not (math.isfinite(value) and value > 0):
        raise ValueError(f"{name} should be a positive finite number or None, got {value}")
    return float(value)


def check_probability(name: str, value: object) -> float:
    """A dropout-like probability in ``[0, 1)``."""
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        raise TypeError(f"{name} should be a number in [0, 1), got: {type(value).__name__}")
    if not 0 <= value < 1:
        raise ValueError(f"{name} should be in [0, 1), got {value}")
    return float(value)


def check_zoneout(value: object) -> tuple[float, float]:
    """``zoneout``: one rate for h and c, or a pair ``(p_h, p_c)``, each in ``[0, 1)``."""
    pair = value if isinstance(value, (tuple, list)) else (value, value)
    if len(pair) != 2:
        raise ValueError(f"zoneout should be a rate or a pair (p_h, p_c), got {value!r}")
    return check_probability("zoneout", pair[0]), check_probability("zoneout", pair[1])


def check_bool(name: str, value: object) -> None:
    if not isinstance(value, bool):
        raise TypeError(f"{name} should be of type bool, got: {type(value).__name__}")


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
