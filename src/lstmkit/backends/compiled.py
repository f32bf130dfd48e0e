"""The ``compiled`` backend: the hand-written BPTT of :mod:`.bptt`, its loops in numba.

Two regimes, chosen per call by batch size:

* small batches (``B <= SEQUENCE_MAX_BATCH``): the whole time loop, recurrent products
  included, is one compiled kernel (:func:`.kernels.sequence_forward` /
  ``sequence_backward``), single-threaded: no per-step Python or dispatch at all;
* larger batches: each step's GEMM runs in torch (:class:`.gemm.StepGemm`) and the whole
  cell (activations, state update, or its derivatives) is one compiled kernel.

float32 uses the vectorised rational ``tanh`` of :mod:`.kernels` (max error 5.1e-7);
float64 uses libm. CPU only; ``unsupported`` says why a call cannot run here.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from . import bptt
from .bptt import Buffers, slots, steps
from .gemm import StepGemm

try:
    from . import kernels
except ImportError:  # numba is an optional dependency
    kernels = None  # type: ignore[assignment]

#: Largest batch for which the whole-sequence kernel beats per-step torch GEMMs (measured).
SEQUENCE_MAX_BATCH = 8

_NUMPY = {torch.float32: np.float32, torch.float64: np.float64}
_NO_VALID = np.empty((0, 0), np.bool_)


def unsupported(xg: Tensor) -> str | None:
    """Why the compiled backend cannot run on ``xg``, or None if it can."""
    if kernels is None:
        return "numba is not installed (pip install 'lstmkit[fast]')"
    if xg.device.type != "cpu":
        return f"it runs on the CPU only, got a tensor on {xg.device}"
    if xg.dtype not in _NUMPY:
        return f"it supports float32 and float64, got {xg.dtype}"
    return None


def _np(t: Tensor | None, dtype: torch.dtype, rank: int = 2) -> np.ndarray:
    """The tensor's memory as an array; ``None`` becomes an empty array of that rank
    (the kernels' "absent" marker: no projection, no lengths). A buffer reused at every
    step (stride-0 time axis, inference) becomes a scratch array: nobody reads it back."""
    if t is None:
        return np.empty((0,) * rank, _NUMPY[dtype])
    if t.dim() == 3 and t.stride(0) == 0 and t.shape[0] > 1:
        return np.empty(t.shape, _NUMPY[dtype])
    return t.detach().numpy()


class NumbaEngine:
    """The two time loops of :class:`.bptt.Recurrence` in compiled kernels."""

    def forward(
        self,
        xg: Tensor,
        w_hh: Tensor,
        w_hr: Tensor | None,
        valid: Tensor | None,
        reverse: bool,
        buf: Buffers,
    ) -> None:
        T, B, _ = xg.shape
        if B <= SEQUENCE_MAX_BATCH:
            kernels.sequence_forward(
                _np(xg.contiguous(), xg.dtype), _np(w_hh.contiguous(), xg.dtype),
                _np(None if w_hr is None else w_hr.contiguous(), xg.dtype), _valid(valid),
                reverse,
                *(_np(x, xg.dtype, 3) for x in (buf.acts, buf.cs, buf.hs, buf.tanh_cs, buf.ms)),
            )  # fmt: skip
            return
        recurrent = StepGemm(w_hh, B)
        project = StepGemm(w_hr, B) if w_hr is not None else None
        scratch = xg.new_empty(B, xg.shape[2])
        acts, cs, hs, tanh_cs = (x.numpy() for x in (buf.acts, buf.cs, buf.hs, buf.tanh_cs))
        ms = buf.ms.numpy() if buf.ms is not None else None
        xgs = xg.detach().numpy()
        for t in steps(T, reverse):
            prev, nxt = slots(t, reverse)
            hw = recurrent.mm(buf.hs[prev], out=scratch).numpy()  # (B, 4H) h_{t-1} W_hh^T
            m = hs[nxt] if ms is None else ms[t]
            kernels.step_forward(hw, xgs[t], cs[prev], acts[t], cs[nxt], tanh_cs[t], m)
            if project is not None:
                h = project.mm(buf.ms[t], out=buf.hs[nxt])
                if h is not buf.hs[nxt]:
                    buf.hs[nxt].copy_(h)
            if valid is not None:  # an ended sequence keeps its state
                torch.where(valid[t], buf.hs[nxt], buf.hs[prev], out=buf.hs[nxt])
                torch.where(valid[t], buf.cs[nxt], buf.cs[prev], out=buf.cs[nxt])

    def backward(
        self,
        dys: Tensor,
        dh: Tensor,
        dc: Tensor,
        w_hh: Tensor,
        w_hr: Tensor | None,
        valid: Tensor | None,
        reverse: bool,
        buf: Buffers,
        dgates: Tensor,
        dhs: Tensor | None,
    ) -> tuple[Tensor, Tensor]:
        T, B, G = dgates.shape
        dtype = dgates.dtype
        if B <= SEQUENCE_MAX_BATCH:
            kernels.sequence_backward(
                _np(dys, dtype), _np(dh, dtype), _np(dc, dtype), _np(w_hh.contiguous(), dtype),
                _np(None if w_hr is None else w_hr.contiguous(), dtype), _valid(valid), reverse,
                *(_np(x, dtype, 3) for x in (buf.acts, buf.cs, buf.tanh_cs, dgates, dhs)),
            )  # fmt: skip
            return dh, dc
        recurrent_t = StepGemm(w_hh.t(), B)  # dgates W_hh
        project_t = StepGemm(w_hr.t(), B) if w_hr is not None else None
        acts, cs, tanh_cs, dg = (x.numpy() for x in (buf.acts, buf.cs, buf.tanh_cs, dgates))
        for t in steps(T, reverse, backward=True):
            prev, _ = slots(t, reverse)
            if valid is None:
                dh = dh + dys[t]
            else:  # ended sequences: the state's gradient passes through untouched
                dh_pass, dc_pass = dh.masked_fill(valid[t], 0.0), dc.masked_fill(valid[t], 0.0)
                dh = (dh + dys[t]).masked_fill(~valid[t], 0.0)
                dc = dc.masked_fill(~valid[t], 0.0)
            if project_t is None:
                dm = dh
            else:
                dhs[t] = dh
                dm = project_t.mm(dh, out=dh.new_empty(B, G // 4))  # (B, H)
            dc = dc.contiguous()
            kernels.step_backward(
                dm.contiguous().numpy(), dc.numpy(), acts[t], cs[prev], tanh_cs[t], dg[t]
            )
            dh = recurrent_t.mm(dgates[t], out=dh.new_empty(B, dh.shape[1]))
            if valid is not None:
                dh, dc = dh + dh_pass, dc + dc_pass
        return dh, dc


def _valid(valid: Tensor | None) -> np.ndarray:
    return _NO_VALID if valid is None else valid[:, :, 0].contiguous().numpy()


ENGINE = NumbaEngine()


def run_recurrence(
    xg: Tensor,
    h0: Tensor,
    c0: Tensor,
    weight_hh: Tensor,
    weight_hr: Tensor | None = None,
    *,
    lengths: Tensor | None = None,
    reverse: bool = False,
) -> tuple[Tensor, Tensor, Tensor]:
    """Run one layer-direction over time; see :mod:`lstmkit.backends.contract`."""
    return bptt.run(ENGINE, xg, h0, c0, weight_hh, weight_hr, lengths, reverse)
