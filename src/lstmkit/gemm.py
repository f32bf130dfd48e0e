"""The LSTM's matrix products with the fastest kernel torch exposes for each shape.

Measured on a 2-core Zen 4 (torch 2.13, fp32, ``python benchmarks/gemm_options.py``):
oneDNN's linear with a weight reordered once per call runs the per-step recurrent
product at 177-219 GFLOP/s for B >= 32, against 121-157 GFLOP/s for MKL's ``addmm``; for
small batches it carries ~15 us of fixed cost per call, so ``addmm``/``mm`` into a
preallocated buffer wins there (:class:`StepGemm` picks once per call). MKL's packed GEMM
was no faster anywhere. For the input projection see :func:`linear`.
"""

from __future__ import annotations

import torch
from torch import Tensor

#: Smallest batch for which oneDNN's prepacked linear beats addmm (measured).
ONEDNN_MIN_BATCH = 32


def onednn_usable(weight: Tensor, rows: int) -> bool:
    """Whether the prepacked oneDNN path can and should serve a (rows, K) x W^T product."""
    return (
        rows >= ONEDNN_MIN_BATCH
        and weight.device.type == "cpu"
        and weight.dtype in (torch.float32, torch.bfloat16)
        and torch.backends.mkldnn.is_available()
        and hasattr(torch.ops.mkldnn, "_linear_pointwise")
    )


class StepGemm:
    """``x W^T`` (optionally ``+ add``) for a fixed ``weight (N, K)`` over many steps."""

    def __init__(self, weight: Tensor, rows: int) -> None:
        self.weight_rows = weight.shape[0]  # N: the width of the product
        self.onednn = onednn_usable(weight, rows)
        if self.onednn:
            self.packed = torch.ops.mkldnn._reorder_linear_weight(weight.contiguous(), rows)
        else:
            self.weight_t = weight.t()  # (K, N) view: BLAS takes the transpose flag

    def addmm(self, add: Tensor, x: Tensor, out: Tensor) -> Tensor:
        """``add + x W^T``; written to ``out`` when the kernel supports it, else returned."""
        if self.onednn:
            return torch.ops.mkldnn._linear_pointwise.binary(x, add, self.packed, None, "add")
        return torch.addmm(add, x, self.weight_t, out=out)

    def mm(self, x: Tensor, out: Tensor) -> Tensor:
        """``x W^T``; written to ``out`` when the kernel supports it, else returned."""
        if self.onednn:
            return torch.ops.mkldnn._linear_pointwise(x, self.packed, None, "none", [], "")
        return torch.mm(x, self.weight_t, out=out)


#: Fewest rows (T*B) for which the input projection through oneDNN wins, reorder included.
ONEDNN_MIN_ROWS = 2048


class OneDNNLinear(torch.autograd.Function):
    """``x W^T + b`` with oneDNN's prepacked linear (bias fused); the backward is the
    usual two GEMMs and a sum, in differentiable torch ops (so double backward works)."""

    @staticmethod
    def forward(ctx, x: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:  # type: ignore[override]
        ctx.save_for_backward(x, weight)
        ctx.has_bias = bias is not None
        packed = torch.ops.mkldnn._reorder_linear_weight(weight.contiguous(), x.shape[0])
        return torch.ops.mkldnn._linear_pointwise(x, packed, bias, "none", [], "")

    @staticmethod
    def backward(ctx, dy: Tensor):  # type: ignore[override]
        x, weight = ctx.saved_tensors
        dx = dy @ weight if ctx.needs_input_grad[0] else None
        dweight = dy.t() @ x if ctx.needs_input_grad[1] else None
        dbias = dy.sum(0) if ctx.has_bias and ctx.needs_input_grad[2] else None
        return dx, dweight, dbias


def linear(x: Tensor, weight: Tensor, bias: Tensor | None = None) -> Tensor:
    """``x W^T + b`` for ``x (..., K)``: oneDNN with the bias fused for many rows of
    float32/bfloat16 on CPU (13-15% faster than ``F.linear`` at 3200 x 256 x 1024 and
    12800 x 512 x 2048; ``F.linear`` first copies the bias into its output), else
    ``F.linear``."""
    if torch.compiler.is_compiling() or torch.jit.is_tracing():  # a graph keeps the plain op
        return torch.nn.functional.linear(x, weight, bias)
    rows = x.numel() // x.shape[-1] if x.shape[-1] else 0
    if (
        rows >= ONEDNN_MIN_ROWS
        and onednn_usable(weight, rows)
        and not torch.is_autocast_enabled("cpu")
    ):
        flat = x.reshape(rows, x.shape[-1])
        return OneDNNLinear.apply(flat, weight, bias).view(*x.shape[:-1], weight.shape[0])
    return torch.nn.functional.linear(x, weight, bias)
