"""The backward cell step as one Triton kernel: the forward's pointwise lines reversed.

Program ``(pid_b, pid_h)`` owns a ``(BB, BH)`` tile of rows and hidden units (the whole
row with layer norm, whose backward reduces over rows). From ``dh``, ``dc`` (float32,
carried across steps; ``dc`` updated in place) and the forward's saved activations it
writes the step's gate gradients; ``dh_{t-1} = dgates W_hh`` is the matmul kernel's::

    dh, dc  += dy_t, dc_t;  ended rows (t >= length) pass both around the cell
    dh, dc  -= k dh, k dc (zoneout: the kept share goes straight to the previous state)
    dm       = dh                  (dh W_hr, by the matmul kernel, when projected)
    do       = dm act(c) sigma'(o)                              (zero where o was clipped)
    dc      += dm o act'(.)        (through LN(c) g_c + beta_c with layer norm)
    dc      += do w_co;  dc = 0 where c was clipped
    di, df, dg = dc g sigma'(i), dc c_{t-1} sigma'(f), dc i act'(g)   (zero where clipped)
    dc_{t-1} = dc f + di w_ci + df w_cf  (+ what passed around and what zoneout kept)
    drec     = LN'(dgates g_hh)                                  (layer norm only)

The slopes come from the saved outputs (:mod:`.math`). ``LN'(d) = rstd (d - mean(d) -
hat mean(d hat))`` over the row. Shapes as in :mod:`.forward_kernels`; every per-step
buffer here has all ``T`` slots.
"""

from __future__ import annotations

import triton
import triton.language as tl

from .forward_kernels import masked_sum
from .math import cell_slope, gate_slope


@triton.jit(do_not_specialize=["B", "t", "prev"])
def cell_backward_kernel(
    dh_ptr, dys_ptr, dm_ptr, dc_ptr, dcs_ptr, dg_ptr, drec_ptr, dnorm_ptr,
    acts_ptr, cs_ptr, tc_ptr, gclip_ptr, cclip_ptr,
    rhat_ptr, rrstd_ptr, chat_ptr, crstd_ptr,
    wci_ptr, wcf_ptr, wco_ptr, ghh_ptr, gc_ptr, valid_ptr, kh_ptr, kc_ptr,
    B, t, prev,
    H: tl.constexpr, BB: tl.constexpr, BH: tl.constexpr,
    PEEP: tl.constexpr, GCLIP: tl.constexpr, CCLIP: tl.constexpr, ZONE: tl.constexpr,
    NORM: tl.constexpr, VALID: tl.constexpr, PROJ: tl.constexpr, DCS: tl.constexpr,
    GATE_ACT: tl.constexpr, CELL_ACT: tl.constexpr,
):  # fmt: skip
    """One step ``t`` of the backward for one tile (see the module docstring); ``prev``:
    the slot of ``c_{t-1}`` in ``cs``."""
    G: tl.constexpr = 4 * H
    rows = tl.program_id(0) * BB + tl.arange(0, BB)
    units = tl.program_id(1) * BH + tl.arange(0, BH)
    rmask, umask = rows < B, units < H
    tile = rmask[:, None] & umask[None, :]
    t64, prev64 = t.to(tl.int64), prev.to(tl.int64)
    gate_at = rows[:, None] * G + units[None, :]
    unit_at = rows[:, None] * H + units[None, :]
    step_g, step_h = t64 * B * G, t64 * B * H

    # what comes in: the output state's gradients and the step's own outputs'
    dc_in = tl.load(dc_ptr + unit_at, mask=tile, other=0.0)
    dc = dc_in
    if DCS:
        dc += tl.load(dcs_ptr + step_h + unit_at, mask=tile, other=0.0).to(tl.float32)
    if VALID:
        v = (tl.load(valid_ptr + t64 * B + rows, mask=rmask, other=0) != 0).to(tl.float32)
        dc = dc * v[:, None]
    if ZONE:
        k_c = tl.load(kc_ptr + step_h + unit_at, mask=tile, other=0.0).to(tl.float32)
        kept_c = dc * k_c
        dc -= kept_c
    if PROJ:  # dm = dh_cell W_hr came from the matmul kernel
        dm = tl.load(dm_ptr + unit_at, mask=tile, other=0.0)
    else:  # P == H: dm is dh itself, entered here
        dm = tl.load(dh_ptr + unit_at, mask=tile, other=0.0)
        dm += tl.load(dys_ptr + step_h + unit_at, mask=tile, other=0.0).to(tl.float32)
        if VALID:
            dm = dm * v[:, None]
        if ZONE:
            dm = dm * (1.0 - tl.load(kh_ptr + step_h + unit_at, mask=tile, other=0.0).to(
                tl.float32
            ))

    # the cell, reversed
    a_at = acts_ptr + step_g + gate_at
    i = tl.load(a_at, mask=tile, other=0.0).to(tl.float32)
    f = tl.load(a_at + H, mask=tile, other=0.0).to(tl.float32)
    g = tl.load(a_at + 2 * H, mask=tile, other=0.0).to(tl.float32)
    o = tl.load(a_at + 3 * H, mask=tile, other=0.0).to(tl.float32)
    tc = tl.load(tc_ptr + step_h + unit_at, mask=tile, other=0.0).to(tl.float32)
    c_prev = tl.load(cs_ptr + prev64 * B * H + unit_at, mask=tile, other=0.0).to(tl.float32)
    d_o = dm * tc * gate_slope(o, GATE_ACT)
    dnorm = dm * o * cell_slope(tc, CELL_ACT)
    if NORM:  # through act(LN(c) g_c + beta_c)
        tl.store(dnorm_ptr + step_h + unit_at, dnorm, mask=tile)
        dhat = dnorm * tl.load(gc_ptr + units, mask=umask, other=0.0).to(tl.float32)[None, :]
        c_hat = tl.load(chat_ptr + step_h + unit_at, mask=tile, other=0.0).to(tl.float32)
        c_rstd = tl.load(crstd_ptr + t64 * B + rows, mask=rmask, other=0.0).to(tl.float32)
        mean_d = masked_sum(dhat, tile) / H
        mean_dh = masked_sum(dhat * c_hat, tile) / H
        dc += (dhat - mean_d[:, None] - c_hat * mean_dh[:, None]) * c_rstd[:, None]
    else:
        dc += dnorm
    if GCLIP:
        hit_at = gclip_ptr + step_g + gate_at
        d_o = tl.where(tl.load(hit_at + 3 * H, mask=tile, other=0) != 0, 0.0, d_o)
    if PEEP:  # o saw c_t (the cell's, before zoneout)
        dc += d_o * tl.load(wco_ptr + units, mask=umask, other=0.0).to(tl.float32)[None, :]
    if CCLIP:
        dc = tl.where(tl.load(cclip_ptr + step_h + unit_at, mask=tile, other=0) != 0, 0.0, dc)
    d_i = dc * g * gate_slope(i, GATE_ACT)
    d_f = dc * c_prev * gate_slope(f, GATE_ACT)
    d_g = dc * i * cell_slope(g, CELL_ACT)
    if GCLIP:
        d_i = tl.where(tl.load(hit_at, mask=tile, other=0) != 0, 0.0, d_i)
        d_f = tl.where(tl.load(hit_at + H, mask=tile, other=0) != 0, 0.0, d_f)
        d_g = tl.where(tl.load(hit_at + 2 * H, mask=tile, other=0) != 0, 0.0, d_g)
    dg_at = dg_ptr + step_g + gate_at
    tl.store(dg_at, d_i, mask=tile)
    tl.store(dg_at + H, d_f, mask=tile)
    tl.store(dg_at + 2 * H, d_g, mask=tile)
    tl.store(dg_at + 3 * H, d_o, mask=tile)

    # what goes out: dc_{t-1} (dh_{t-1} is the matmul kernel's)
    dc = dc * f
    if PEEP:  # i, f saw c_{t-1}
        dc += d_i * tl.load(wci_ptr + units, mask=umask, other=0.0).to(tl.float32)[None, :]
        dc += d_f * tl.load(wcf_ptr + units, mask=umask, other=0.0).to(tl.float32)[None, :]
    if VALID:
        dc += dc_in * (1.0 - v[:, None])
    if ZONE:
        dc += kept_c
    tl.store(dc_ptr + unit_at, dc, mask=tile)
    if NORM:  # the recurrent product went through LN(.) g_hh
        _norm_backward(drec_ptr + step_g + gate_at, rhat_ptr + step_g + gate_at,
                       rrstd_ptr + t64 * B + rows, ghh_ptr + units, d_i, d_f, d_g, d_o,
                       tile, rmask, umask, H)  # fmt: skip


@triton.jit
def _norm_backward(drec_at, rhat_at, rstd_at, gain_at, d_i, d_f, d_g, d_o, tile, rmask, umask,
                   H: tl.constexpr):  # fmt: skip
    """``drec = rstd (d - mean(d) - hat mean(d hat))`` over the row's four gates, with
    ``d = dgates g_hh``."""
    d_i *= tl.load(gain_at, mask=umask, other=0.0).to(tl.float32)[None, :]
    d_f *= tl.load(gain_at + H, mask=umask, other=0.0).to(tl.float32)[None, :]
    d_g *= tl.load(gain_at + 2 * H, mask=umask, other=0.0).to(tl.float32)[None, :]
    d_o *= tl.load(gain_at + 3 * H, mask=umask, other=0.0).to(tl.float32)[None, :]
    h_i = tl.load(rhat_at, mask=tile, other=0.0).to(tl.float32)
    h_f = tl.load(rhat_at + H, mask=tile, other=0.0).to(tl.float32)
    h_g = tl.load(rhat_at + 2 * H, mask=tile, other=0.0).to(tl.float32)
    h_o = tl.load(rhat_at + 3 * H, mask=tile, other=0.0).to(tl.float32)
    rstd = tl.load(rstd_at, mask=rmask, other=0.0).to(tl.float32)[:, None]
    mean_d = (masked_sum(d_i, tile) + masked_sum(d_f, tile) + masked_sum(d_g, tile)
              + masked_sum(d_o, tile)) / (4 * H)  # fmt: skip
    mean_dh = (masked_sum(d_i * h_i, tile) + masked_sum(d_f * h_f, tile)
               + masked_sum(d_g * h_g, tile) + masked_sum(d_o * h_o, tile)) / (4 * H)  # fmt: skip
    md, mdh = mean_d[:, None], mean_dh[:, None]
    tl.store(drec_at, (d_i - md - h_i * mdh) * rstd, mask=tile)
    tl.store(drec_at + H, (d_f - md - h_f * mdh) * rstd, mask=tile)
    tl.store(drec_at + 2 * H, (d_g - md - h_g * mdh) * rstd, mask=tile)
    tl.store(drec_at + 3 * H, (d_o - md - h_o * mdh) * rstd, mask=tile)
