"""The Triton engine: the two time loops of :class:`..bptt.Recurrence`, one kernel
launch (two or three with layer norm or a projection) per step.

Forward, per step ``t``: (layer norm only) ``rec = (h_{t-1} * mask) W_hh^T`` by the
matmul kernel; the fused cell kernel (:mod:`.forward_kernels`: recurrent product by
``tl.dot`` unless precomputed, gates, state update, every saved buffer); (projection
only) ``h_t = m_t W_hr^T`` by the matmul kernel, with zoneout and lengths in its
epilogue. Backward, per step: (projection only) ``dm = dh W_hr``; the cell kernel
(:mod:`.backward_kernels`); ``dh_{t-1} = dgates W_hh`` by the matmul kernel. The weight
gradients are single GEMMs after the loop, in :func:`..bptt.backward`.

16-bit calls: inputs, weights and saved buffers keep the call's dtype; the kernels
compute in float32 and carry ``c`` (forward) and ``dh``, ``dc`` (backward) across steps
in float32. Shapes: ``xg (T, B, 4H)``, ``W_hh (4H, P)``, ``W_hr (P, H)``.
"""

from __future__ import annotations

import contextlib

import torch
from torch import Tensor

from ...options import CellConfig
from ..buffers import Buffers, Grads, Walk, slots, steps
from .availability import input_precision, kernels, upcast
from .blocks import cdiv, dot_tiles, pointwise_tiles, row_tiles
from .codes import CELL_CODES, GATE_CODES


def _c(t: Tensor | None) -> Tensor | None:
    return None if t is None else t.contiguous()


def _device(device: torch.device) -> contextlib.AbstractContextManager:
    """Launch on ``device``: Triton launches on the current CUDA device."""
    return torch.cuda.device(device) if device.type == "cuda" else contextlib.nullcontext()


class TritonEngine:
    """The two time loops of :class:`..bptt.Recurrence` in Triton kernels."""

    def forward(self, xg: Tensor, walk: Walk, buf: Buffers) -> None:
        w_hh, w_hr, valid, reverse = walk
        fwd, _, mm = kernels()
        T, B, G = xg.shape
        H, P = G // 4, buf.hs.shape[2]
        if B == 0:
            return
        xg, w_hh, w_hr, valid = _c(xg), _c(w_hh), _c(w_hr), _c(valid)
        cfg = buf.config
        keep = buf.acts.stride(0) != 0  # all T per-step slots, else one reused slot
        peep, norm, mask, (k_h, k_c) = _option_tensors(buf)
        carry = None  # 16-bit buffers: c carried in float32 across steps
        if xg.dtype != torch.float32:
            carry = buf.cs[T if reverse else 0].float().contiguous()
        flags = dict(
            **_option_flags(cfg), MASK=mask is not None, VALID=valid is not None,
            PROJ=w_hr is not None, CARRY=carry is not None, UPCAST=upcast(xg),
            PREC=input_precision(xg),
        )  # fmt: skip
        norm_on = flags["NORM"]
        tiles = row_tiles(B, H) if norm_on else dot_tiles(B, H, P)
        grid = (cdiv(B, tiles.rows), 1 if norm_on else cdiv(H, tiles.cols))
        rec = xg.new_empty(B, G, dtype=torch.float32) if norm_on else None
        rec_mm = _Matmul(mm, B, G, P, w_hh, stride_n=P, stride_k=1, xg=xg)
        proj_mm = _Matmul(mm, B, P, H, w_hr, stride_n=H, stride_k=1, xg=xg)
        cs, hs = buf.cs, buf.hs
        with _device(xg.device):
            for t in steps(T, reverse):
                prev, nxt = slots(t, reverse)
                ts = t if keep else 0
                if norm_on:  # rec = (h_{t-1} * mask) W_hh^T, normalised by the cell kernel
                    rec_mm(hs, rec, a_off=prev * B * P, prologue=int(mask is not None), mask=mask)
                fwd.cell_forward_kernel[grid](
                    xg, rec, w_hh, mask, hs, cs, carry,
                    buf.acts, buf.tanh_cs, buf.ms, buf.c_new, buf.gate_clipped, buf.cell_clipped,
                    buf.rec_hat, buf.rec_rstd, buf.c_hat, buf.c_rstd,
                    *peep, *norm, valid, k_h, k_c,
                    B, t, prev, nxt, ts, cfg.gate_clip or 0.0, cfg.cell_clip or 0.0,
                    H=H, P=P, BB=tiles.rows, BH=tiles.cols, BK=tiles.inner, **flags,
                )  # fmt: skip
                if w_hr is not None:  # h_t = m_t W_hr^T, then zoneout and lengths
                    proj_mm(
                        buf.ms, hs, a_off=ts * B * H, out_off=nxt * B * P, epilogue=1,
                        aux=hs, aux_off=prev * B * P, valid=valid, keep=k_h, t=t,
                    )  # fmt: skip

    def backward(
        self, dys: Tensor, dcs: Tensor | None, dh: Tensor, dc: Tensor, walk: Walk, buf: Buffers,
        grads: Grads,
    ) -> tuple[Tensor, Tensor]:  # fmt: skip
        w_hh, w_hr, valid, reverse = walk
        _, bwd, mm = kernels()
        T, B, G = grads.dgates.shape
        H, P = G // 4, dys.shape[2]
        if B == 0:
            return dh, dc
        w_hh, w_hr, valid = _c(w_hh), _c(w_hr), _c(valid)
        peep, norm, mask, (k_h, k_c) = _option_tensors(buf)
        norm = norm[:2]  # the backward needs no beta_c
        dh32 = dh.to(torch.float32, copy=True).contiguous()  # (B, P), carried across steps
        dc32 = dc.to(torch.float32, copy=True).contiguous()  # (B, H)
        norm_on = buf.config.layer_norm
        flags = dict(
            **_option_flags(buf.config), VALID=valid is not None, PROJ=w_hr is not None,
            DCS=dcs is not None,
        )  # fmt: skip
        tiles = row_tiles(B, H) if norm_on else pointwise_tiles(B, H)
        grid = (cdiv(B, tiles.rows), cdiv(H, tiles.cols))
        dm = dh32.new_empty(B, H) if w_hr is not None else None
        enter_mm = _Matmul(mm, B, H, P, w_hr, stride_n=1, stride_k=H, xg=dys)
        leave_mm = _Matmul(mm, B, P, G, w_hh, stride_n=1, stride_k=P, xg=dys)
        drec = grads.drec if norm_on else grads.dgates
        with _device(dys.device):
            for t in steps(T, reverse, backward=True):
                prev, _ = slots(t, reverse)
                if w_hr is not None:  # dm = dh_cell W_hr; dh_cell kept for dW_hr
                    enter_mm(
                        dh32, dm, prologue=2, a2=dys, a2_off=t * B * P, valid=valid, keep=k_h,
                        t=t, a_out=grads.dhs, a_out_off=t * B * P,
                    )  # fmt: skip
                bwd.cell_backward_kernel[grid](
                    dh32, dys, dm, dc32, dcs, grads.dgates, grads.drec, grads.dnorm_c,
                    buf.acts, buf.cs, buf.tanh_cs, buf.gate_clipped, buf.cell_clipped,
                    buf.rec_hat, buf.rec_rstd, buf.c_hat, buf.c_rstd,
                    *peep, *norm, valid, k_h, k_c,
                    B, t, prev,
                    H=H, BB=tiles.rows, BH=tiles.cols, **flags,
                )  # fmt: skip
                leave_mm(  # dh_{t-1} = dgates W_hh (* mask) + what passed around the cell
                    drec, dh32, a_off=t * B * G, epilogue=2, aux=dh32, mask=mask, a2=dys,
                    a2_off=t * B * P, valid=valid, keep=k_h, t=t,
                )  # fmt: skip
        return dh32.to(dh.dtype), dc32.to(dc.dtype)


def _option_tensors(buf: Buffers) -> tuple[list, list, Tensor | None, list]:
    """The options' tensors as the kernels take them, contiguous, ``None`` when off:
    peepholes ``[w_ci, w_cf, w_co]``, layer norm ``[g_hh, g_c, beta_c]``, the recurrent
    mask, zoneout's ``[keep_h, keep_c]``."""
    ten = buf.tensors

    def named(*names: str) -> list[Tensor | None]:
        return [_c(ten.get(n)) for n in names]

    return (
        named("weight_ci", "weight_cf", "weight_co"),
        named("ln_weight_hh", "ln_weight_c", "ln_bias_c"),
        _c(ten.get("recurrent_mask")),
        named("zoneout_h", "zoneout_c"),
    )


def _option_flags(cfg: CellConfig) -> dict[str, object]:
    """The kernels' compile-time switches for ``cfg``'s options."""
    return dict(
        PEEP=cfg.peephole, GCLIP=cfg.gate_clip is not None, CCLIP=cfg.cell_clip is not None,
        ZONE=cfg.zoneout, NORM=cfg.layer_norm, GATE_ACT=GATE_CODES[cfg.recurrent_activation],
        CELL_ACT=CELL_CODES[cfg.activation],
    )  # fmt: skip


class _Matmul:
    """Launches of :func:`.matmul_kernels.matmul_kernel` for one weight and shape:
    ``out (M, N) = A (M, K) @ W^T`` with ``W[n, k]`` at ``n stride_n + k stride_k``."""

    def __init__(
        self, module, M: int, N: int, K: int, weight: Tensor | None, *, stride_n: int,
        stride_k: int, xg: Tensor,
    ) -> None:  # fmt: skip
        self.kernel, self.weight = module.matmul_kernel, weight
        self.M, self.N, self.K, self.strides = M, N, K, (stride_n, stride_k)
        self.tiles = dot_tiles(M, N, K)
        self.grid = (cdiv(M, self.tiles.rows), cdiv(N, self.tiles.cols))
        self.upcast, self.precision = upcast(xg), input_precision(xg)

    def __call__(
        self, a: Tensor, out: Tensor, *, a_off: int = 0, out_off: int = 0, prologue: int = 0,
        epilogue: int = 0, a2: Tensor | None = None, a2_off: int = 0, aux: Tensor | None = None,
        aux_off: int = 0, mask: Tensor | None = None, valid: Tensor | None = None,
        keep: Tensor | None = None, t: int = 0, a_out: Tensor | None = None,
        a_out_off: int = 0,
    ) -> None:  # fmt: skip
        tiles = self.tiles
        self.kernel[self.grid](
            a, a2, self.weight, out, aux, mask, valid, keep, a_out,
            self.M, a_off, a2_off, out_off, aux_off, a_out_off, t, *self.strides,
            N=self.N, K=self.K, BM=tiles.rows, BN=tiles.cols, BK=tiles.inner,
            PRO=prologue, EPI=epilogue, MASK=mask is not None, ZONE=keep is not None,
            VALID=valid is not None, UPCAST=self.upcast, PREC=self.precision,
        )  # fmt: skip
