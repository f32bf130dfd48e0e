"""The per-step matrix products other than the fused one, as one Triton ``tl.dot`` kernel
with a pointwise prologue on its left operand and an epilogue on its result.

``out (M, N) = epilogue(prologue(A) (M, K) @ W^T)``, ``W`` read as ``(N, K)`` through
strides ``(w_sn, w_sk)`` so either orientation of a weight serves. Program ``(pid_m,
pid_n)`` owns a ``(BM, BN)`` tile of ``out`` and loops over ``K`` in ``BK`` chunks,
accumulating in float32. The uses, per step (``v`` = step t inside the sequence,
``k_h`` = zoneout's keep weight, ``a2``, ``aux`` = second inputs)::

    PRO   prologue on A                               used for
    0     A                                           m_t W_hr^T, dgates W_hh, drec W_hh
    1     A * mask                                    LN's (h_{t-1} * mask) W_hh^T
    2     (A + a2) v (1 - k_h), stored to a_out       dm = dh_cell W_hr (backward, projected)

    EPI   epilogue on acc = A' W^T                    used for
    0     acc                                         LN's recurrent product, dm
    1     where(v, lerp(acc, aux, k_h), aux)          h_t = m_t W_hr^T, zoneout, lengths
                                                      (aux = h_{t-1})
    2     acc * mask + aux (1 - v) + (aux + a2) v k_h dh_{t-1} (aux = dh_t, in place)

Offsets ``*_off`` (elements) select a step's slot in the larger buffers.
"""

from __future__ import annotations

import triton
import triton.language as tl


@triton.jit(do_not_specialize=["M", "a_off", "a2_off", "out_off", "aux_off", "aout_off", "t"])
def matmul_kernel(
    a_ptr, a2_ptr, w_ptr, out_ptr, aux_ptr, mask_ptr, valid_ptr, kh_ptr, aout_ptr,
    M, a_off, a2_off, out_off, aux_off, aout_off, t, w_sn, w_sk,
    N: tl.constexpr, K: tl.constexpr, BM: tl.constexpr, BN: tl.constexpr, BK: tl.constexpr,
    PRO: tl.constexpr, EPI: tl.constexpr, MASK: tl.constexpr, ZONE: tl.constexpr,
    VALID: tl.constexpr, UPCAST: tl.constexpr, PREC: tl.constexpr,
):  # fmt: skip
    """One ``(BM, BN)`` tile of ``out`` (see the module docstring)."""
    rows = tl.program_id(0) * BM + tl.arange(0, BM)
    cols = tl.program_id(1) * BN + tl.arange(0, BN)
    rmask, cmask = rows < M, cols < N
    t64 = t.to(tl.int64)
    if VALID:
        v = (tl.load(valid_ptr + t64 * M + rows, mask=rmask, other=0) != 0).to(tl.float32)
    acc = tl.zeros((BM, BN), dtype=tl.float32)
    for k0 in range(0, K, BK):
        ks = k0 + tl.arange(0, BK)
        kmask = ks < K
        am = rmask[:, None] & kmask[None, :]
        a_at = rows[:, None] * K + ks[None, :]
        a = tl.load(a_ptr + a_off + a_at, mask=am, other=0.0)
        if PRO == 1:
            keep = tl.load(mask_ptr + a_at, mask=am, other=0.0)
            a = (a.to(tl.float32) * keep.to(tl.float32)).to(w_ptr.dtype.element_ty)
        elif PRO == 2:
            a = a.to(tl.float32) + tl.load(a2_ptr + a2_off + a_at, mask=am, other=0.0).to(
                tl.float32
            )
            if VALID:
                a = a * v[:, None]
            if ZONE:
                a = a * (1.0 - tl.load(kh_ptr + t64 * M * K + a_at, mask=am, other=0.0).to(
                    tl.float32
                ))
            if tl.program_id(1) == 0:
                tl.store(aout_ptr + aout_off + a_at, a, mask=am)
            a = a.to(w_ptr.dtype.element_ty)
        else:
            a = a.to(w_ptr.dtype.element_ty)
        w = tl.load(
            w_ptr + cols[None, :] * w_sn + ks[:, None] * w_sk,
            mask=kmask[:, None] & cmask[None, :], other=0.0,
        )  # (BK, BN)
        if UPCAST:  # the interpreter multiplies bfloat16 wrongly; fp32 is exact for them
            a, w = a.to(tl.float32), w.to(tl.float32)
        if a.dtype == tl.float32:
            acc = tl.dot(a, w, acc, input_precision=PREC)
        else:
            acc = tl.dot(a, w, acc)
    tile = rmask[:, None] & cmask[None, :]
    out_at = rows[:, None] * N + cols[None, :]
    if EPI == 1:  # h_t from m_t W_hr^T: zoneout mixes h_{t-1} in, ended rows keep it
        h_prev = tl.load(aux_ptr + aux_off + out_at, mask=tile, other=0.0).to(tl.float32)
        if ZONE:
            k_h = tl.load(kh_ptr + t64 * M * N + out_at, mask=tile, other=0.0).to(tl.float32)
            acc = acc + k_h * (h_prev - acc)
        if VALID:
            acc = tl.where(v[:, None] != 0, acc, h_prev)
    elif EPI == 2:  # dh_{t-1}: through W_hh (and the mask), plus what passed around the cell
        if MASK:
            acc = acc * tl.load(mask_ptr + out_at, mask=tile, other=0.0).to(tl.float32)
        if VALID or ZONE:
            dh = tl.load(aux_ptr + aux_off + out_at, mask=tile, other=0.0).to(tl.float32)
            dy = tl.load(a2_ptr + a2_off + out_at, mask=tile, other=0.0).to(tl.float32)
            kept = tl.zeros((BM, BN), dtype=tl.float32)
            if ZONE:
                kept = tl.load(kh_ptr + t64 * M * N + out_at, mask=tile, other=0.0).to(
                    tl.float32
                )
            if VALID:
                acc += dh * (1.0 - v[:, None]) + (dh + dy) * v[:, None] * kept
            else:
                acc += (dh + dy) * kept
    tl.store(out_ptr + out_off + out_at, acc, mask=tile)
