"""The ``compiled`` backend: the hand-written BPTT of :mod:`.bptt`, its loops in numba.

Two regimes, chosen per call by batch size:

* small batches (``B <= SEQUENCE_MAX_BATCH``): the whole time loop, recurrent products
  included, is one compiled kernel (:func:`.kernels.sequence_forward` /
  ``sequence_backward``), single-threaded: no per-step Python or dispatch at all;
* larger batches: each step's GEMM runs in torch (:class:`.gemm.StepGemm`) and the whole
  cell (activations, state update, or its derivatives) is one compiled kernel.

The cell options go to the kernels as arrays (all empty when off): the peepholes
``(3, H)``, the two clip limits and buffers where the clips record what they clamped,
the recurrent-dropout mask, the activation codes, the layer-norm gains with buffers for
the normalised values, zoneout's keep weights (the per-step regime mixes them in
:class:`.steps.ForwardSteps`). float32 uses the vectorised rational ``tanh`` of
:mod:`.kernels` (max error 5.1e-7); float64 uses libm. CPU only; ``unsupported`` says why
a call cannot run here.
"""

from __future__ import annotations

import functools

import numpy as np
import torch
from torch import Tensor

from . import bptt
from .bptt import Buffers, Grads, slots, steps
from .steps import BackwardSteps, ForwardSteps

try:
    from . import kernels
except ImportError:  # numba is a dependency, but a broken install must not break lstmkit
    kernels = None  # type: ignore[assignment]

#: Why the engine is missing when numba cannot be imported, and the fix.
NO_NUMBA = (
    "numba cannot be imported (it is a dependency of lstmkit: pip install 'numba>=0.59'); "
    "without it backend='auto' runs 'fused', 5-20x slower than nn.LSTM at small batches"
)

#: Largest batch for which the whole-sequence kernel beats per-step torch GEMMs (measured).
SEQUENCE_MAX_BATCH = 8

_NUMPY = {torch.float32: np.float32, torch.float64: np.float64}
_ARRAY_DTYPES = {**_NUMPY, torch.bool: np.bool_}  # the kernels' arrays: also clip masks
_NO_VALID = np.empty((0, 0), np.bool_)


def unsupported(xg: Tensor) -> str | None:
    """Why the compiled backend cannot run on ``xg``, or None if it can."""
    if kernels is None:
        return NO_NUMBA
    if xg.device.type != "cpu":
        return f"it runs on the CPU only, got a tensor on {xg.device}"
    if xg.dtype not in _NUMPY:
        return f"it supports float32 and float64, got {xg.dtype}"
    return None


def _np(t: Tensor | None, dtype: torch.dtype, rank: int = 2) -> np.ndarray:
    """The tensor's memory as an array; ``None`` becomes an empty array of that rank
    (the kernels' "absent" marker: no projection, no lengths, no option). A buffer reused
    at every step (stride-0 time axis, inference) becomes a scratch array: nobody reads
    it back."""
    if t is None:
        return _absent(dtype, rank)
    if t.dim() == 3 and t.stride(0) == 0 and t.shape[0] > 1:
        return np.empty(t.shape, _ARRAY_DTYPES[dtype])
    return t.detach().numpy()


@functools.cache
def _absent(dtype: torch.dtype, rank: int) -> np.ndarray:
    """The shared empty array of a dtype and rank (it has no element to write)."""
    return np.empty((0,) * rank, _ARRAY_DTYPES[dtype])


def _options(buf: Buffers, dtype: torch.dtype) -> tuple[np.ndarray, ...]:
    """The kernels' option arrays: peepholes ``(3, H)`` (or empty), the two clips, and
    the activation codes."""
    opt = buf.options
    peep = np.empty((0, 0), _NUMPY[dtype])
    if opt.peephole is not None:
        peep = torch.stack([w.detach() for w in opt.peephole]).numpy()
    limits = [np.inf if v is None else v for v in (opt.gate_clip, opt.cell_clip)]
    kinds = np.array(
        [kernels.GATE_KINDS[opt.recurrent_activation], kernels.CELL_KINDS[opt.activation]]
    )
    return peep, np.array(limits, _NUMPY[dtype]), kinds


def _norm(buf: Buffers, dtype: torch.dtype) -> tuple[np.ndarray, ...]:
    """Layer normalisation for the kernels: the gains and bias, then the (T, B, N)
    buffers of the normalised values and 1/std (all empty when off)."""
    gains = buf.options.layer_norm or (None, None, None)
    return (
        *(_np(None if g is None else g.detach(), dtype, 1) for g in gains),
        *(_np(x, dtype, 3) for x in (buf.rec_hat, buf.rec_rstd, buf.c_hat, buf.c_rstd)),
    )


def _zoneout(buf: Buffers, dtype: torch.dtype) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Zoneout for the sequence kernels: keep weights (T, B, P), (T, B, H) and the c_new
    buffer (empty when off)."""
    keep = buf.options.zoneout or (None, None)
    return (*(_np(None if k is None else k.contiguous(), dtype, 3) for k in keep),
            _np(buf.c_new, dtype, 3))  # fmt: skip


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
        peep, clips, kinds = _options(buf, xg.dtype)
        norm = _norm(buf, xg.dtype)
        gmasks, cmasks = (_np(m, torch.bool, 3) for m in (buf.gate_clipped, buf.cell_clipped))
        if B <= SEQUENCE_MAX_BATCH:
            kernels.sequence_forward(
                _np(xg.contiguous(), xg.dtype), _np(w_hh.contiguous(), xg.dtype),
                _np(None if w_hr is None else w_hr.contiguous(), xg.dtype), _valid(valid),
                reverse,
                *(_np(x, xg.dtype, 3) for x in (buf.acts, buf.cs, buf.hs, buf.tanh_cs, buf.ms)),
                peep, clips, gmasks, cmasks, _np(buf.options.recurrent_mask, xg.dtype), kinds, norm,
                _zoneout(buf, xg.dtype),
            )  # fmt: skip
            return
        around = ForwardSteps(w_hh, w_hr, valid, buf)
        scratch = xg.new_empty(B, xg.shape[2])
        acts, cs, hs, tanh_cs = (x.numpy() for x in (buf.acts, buf.cs, buf.hs, buf.tanh_cs))
        ms = buf.ms.numpy() if buf.ms is not None else None
        xgs = xg.detach().numpy()
        for t in steps(T, reverse):
            prev, nxt = slots(t, reverse)
            hw = around.recurrent.mm(around.h_in(prev), out=scratch).numpy()  # (B, 4H) h W_hh^T
            m = hs[nxt] if ms is None else ms[t]
            kernels.step_forward(
                hw, xgs[t], cs[prev], acts[t], cs[nxt], tanh_cs[t], m, peep, clips,
                _at(gmasks, t), _at(cmasks, t), kinds, (*norm[:3], *(_at(x, t) for x in norm[3:])),
            )  # fmt: skip
            around.finish(t, prev, nxt)

    def backward(
        self,
        dys: Tensor,
        dcs: Tensor | None,
        dh: Tensor,
        dc: Tensor,
        w_hh: Tensor,
        w_hr: Tensor | None,
        valid: Tensor | None,
        reverse: bool,
        buf: Buffers,
        grads: Grads,
    ) -> tuple[Tensor, Tensor]:
        dgates, dhs = grads.dgates, grads.dhs
        T, B, _ = dgates.shape
        dtype = dgates.dtype
        peep, _, kinds = _options(buf, dtype)
        norm = _norm(buf, dtype)
        drec, dnorm_c = (_np(x, dtype, 3) for x in (grads.drec, grads.dnorm_c))
        gmasks, cmasks = (_np(m, torch.bool, 3) for m in (buf.gate_clipped, buf.cell_clipped))
        if B <= SEQUENCE_MAX_BATCH:
            kernels.sequence_backward(
                _np(dys, dtype), _np(dcs, dtype, 3), _np(dh, dtype), _np(dc, dtype),
                _np(w_hh.contiguous(), dtype),
                _np(None if w_hr is None else w_hr.contiguous(), dtype), _valid(valid), reverse,
                *(_np(x, dtype, 3) for x in (buf.acts, buf.cs, buf.tanh_cs, dgates, dhs)),
                peep, gmasks, cmasks, _np(buf.options.recurrent_mask, dtype), kinds, norm,
                _zoneout(buf, dtype), drec, dnorm_c,
            )  # fmt: skip
            return dh, dc
        opt = buf.options
        around = BackwardSteps(w_hh, w_hr, valid, dys, dcs, dhs, opt.recurrent_mask, opt.zoneout)
        acts, cs, tanh_cs, dg = (x.numpy() for x in (buf.acts, buf.cs, buf.tanh_cs, dgates))
        for t in steps(T, reverse, backward=True):
            prev, _ = slots(t, reverse)
            dm, dc = around.enter(t, dh, dc)
            dc = dc.contiguous()  # the kernel turns it into dL/dc_{t-1} in place
            kernels.step_backward(
                dm.contiguous().numpy(), dc.numpy(), acts[t], cs[prev], tanh_cs[t], dg[t], peep,
                _at(gmasks, t), _at(cmasks, t), kinds,
                (*norm[:3], *(_at(x, t) for x in norm[3:])), _at(drec, t), _at(dnorm_c, t),
            )  # fmt: skip
            dh, dc = around.leave(dgates[t] if grads.drec is None else grads.drec[t], dc)
        return dh, dc


def _at(array: np.ndarray, t: int) -> np.ndarray:
    """Step ``t`` of a (T, B, N) array, or the (shared) empty "off" marker of its dtype."""
    return array[t] if array.shape[0] else _absent_rows(array.dtype)


@functools.cache
def _absent_rows(dtype: np.dtype) -> np.ndarray:
    """The shared empty (0, 0) array of a numpy dtype: one step of an absent option."""
    return np.empty((0, 0), dtype)


def _valid(valid: Tensor | None) -> np.ndarray:
    return _NO_VALID if valid is None else valid[:, :, 0].contiguous().numpy()


#: The recurrence contract (:mod:`lstmkit.backends.contract`) on this engine.
run_recurrence = bptt.recurrence(NumbaEngine())
