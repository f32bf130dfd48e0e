"""Two things torch's tools change about a call, handled as nn.LSTM handles them:
autocast's dtype, and a compiled graph's handling of the two bias gradients."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor


def autocast_dtype(device_type: str) -> torch.dtype | None:
    """The dtype autocast runs ``device_type`` ops in, or None when it is off."""
    if not torch.is_autocast_enabled(device_type):
        return None
    if hasattr(torch, "get_autocast_dtype"):  # torch >= 2.4
        return torch.get_autocast_dtype(device_type)
    return (
        torch.get_autocast_cpu_dtype() if device_type == "cpu" else torch.get_autocast_gpu_dtype()
    )


class _BiasSum(torch.autograd.Function):
    """``b_ih + b_hh`` whose two gradients are distinct tensors. A compiled graph hands
    an addition's one incoming gradient to both leaves as the same storage, so
    ``bias_ih.grad is bias_hh.grad`` and everything that then updates one in place
    (``clip_grad_norm_``, accumulation) hits both twice."""

    @staticmethod
    def forward(ctx: Any, b_ih: Tensor, b_hh: Tensor) -> Tensor:  # type: ignore[override]
        return b_ih + b_hh

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, Tensor]:  # type: ignore[override]
        return grad, grad.clone()


def bias_sum(b_ih: Tensor, b_hh: Tensor) -> Tensor:
    """``b_ih + b_hh``, with gradients that never share storage (see :class:`_BiasSum`);
    a plain addition in eager mode, where autograd already gives each leaf its own."""
    if torch.compiler.is_compiling():
        return _BiasSum.apply(b_ih, b_hh)
    return b_ih + b_hh
