"""The per-step matrix product ``add + x W^T``, with the fastest kernel torch exposes.

Measured on a 2-core Zen 4 (torch 2.13, fp32, ``python benchmarks/gemm_options.py``):
oneDNN's linear with a weight reordered once per call runs the recurrent product at
181-219 GFLOP/s for B >= 32, against 122-157 GFLOP/s for MKL's ``addmm``; for small
batches it carries ~15 us of fixed cost per call, so ``addmm`` into a preallocated
buffer wins there. :class:`StepGemm` picks once per call.
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
