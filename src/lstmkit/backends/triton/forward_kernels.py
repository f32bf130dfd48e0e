"""The forward cell step as one Triton kernel: recurrent product, gates, state update.

Program ``(pid_b, pid_h)`` owns batch rows ``b`` in ``[pid_b BB, pid_b BB + BB)`` and
hidden units ``j`` in ``[pid_h BH, pid_h BH + BH)``. For those it computes the four gates'
recurrent products with ``tl.dot`` over ``P`` in chunks of ``BK`` (``h_{t-1}`` tile times
the rows ``k H + j`` of ``W_hh`` for ``k = i, f, g, o``, accumulated in float32), adds
``xg_t``, and finishes the cell for its tile, writing every buffer the backward needs::

    z_k   = xg_t[b, kH + j] + sum_p (h_{t-1} * mask)[b, p] W_hh[kH + j, p]     k = i, f, g, o
    z_k   = xg_t + LN(rec)[b, kH + j] g_hh[kH + j]              (layer norm: rec precomputed)
    z_i  += w_ci c_{t-1};  z_f += w_cf c_{t-1}                  (peephole)
    i, f  = sigma(clip(z_i)), sigma(clip(z_f));  g = act(clip(z_g))
    c_t   = clip_c(f c_{t-1} + i g)
    o     = sigma(clip(z_o + w_co c_t))
    m_t   = o act(c_t)            (act(LN(c_t) g_c + beta_c) with layer norm)
    h_t   = m_t                   (without projection; else h_t = m_t W_hr^T, another kernel)
    h_t, c_t = lerp(h_t, h_{t-1}, k_h), lerp(c_t, c_{t-1}, k_c)     (zoneout)
    h_t, c_t = h_{t-1}, c_{t-1} where t >= length                   (lengths)

Shapes: ``xg (T, B, 4H)``, ``hs (T+1, B, P)``, ``cs (T+1, B, H)``, ``W_hh (4H, P)``;
per-step buffers ``(S, B, width)`` with ``S = T`` (or 1 when no backward follows, slot
``ts = 0``). With layer norm the tile spans every unit (``BH >= H``, grid ``(., 1)``),
because the statistics run over whole rows, and ``rec (B, 4H)`` comes precomputed.
"""

from __future__ import annotations

import triton
import triton.language as tl

from .math import cell_act, clip, gate_act

LN_EPS: tl.constexpr = tl.constexpr(1e-5)


@triton.jit
def _recurrent(h_ptr, w_ptr, mask_ptr, rows, units, rmask, umask, B,
               H: tl.constexpr, P: tl.constexpr, BB: tl.constexpr, BH: tl.constexpr,
               BK: tl.constexpr, MASK: tl.constexpr, UPCAST: tl.constexpr,
               PREC: tl.constexpr):  # fmt: skip
    """The four ``(BB, BH)`` tiles of ``(h * mask) W_hh^T`` for gates i, f, g, o (fp32)."""
    acc_i = tl.zeros((BB, BH), dtype=tl.float32)
    acc_f = tl.zeros((BB, BH), dtype=tl.float32)
    acc_g = tl.zeros((BB, BH), dtype=tl.float32)
    acc_o = tl.zeros((BB, BH), dtype=tl.float32)
    for k0 in range(0, P, BK):
        ks = k0 + tl.arange(0, BK)
        kmask = ks < P
        hm = rmask[:, None] & kmask[None, :]
        h = tl.load(h_ptr + rows[:, None] * P + ks[None, :], mask=hm, other=0.0)
        if MASK:
            keep = tl.load(mask_ptr + rows[:, None] * P + ks[None, :], mask=hm, other=0.0)
            h = (h.to(tl.float32) * keep.to(tl.float32)).to(h.dtype)
        wm = kmask[:, None] & umask[None, :]
        w_at = w_ptr + units[None, :] * P + ks[:, None]  # (BK, BH): W_hh^T for gate i
        w_i = tl.load(w_at, mask=wm, other=0.0)
        w_f = tl.load(w_at + H * P, mask=wm, other=0.0)
        w_g = tl.load(w_at + 2 * H * P, mask=wm, other=0.0)
        w_o = tl.load(w_at + 3 * H * P, mask=wm, other=0.0)
        if UPCAST:  # the interpreter multiplies bfloat16 wrongly; fp32 is exact for them
            h, w_i, w_f = h.to(tl.float32), w_i.to(tl.float32), w_f.to(tl.float32)
            w_g, w_o = w_g.to(tl.float32), w_o.to(tl.float32)
        if h.dtype == tl.float32:
            acc_i = tl.dot(h, w_i, acc_i, input_precision=PREC)
            acc_f = tl.dot(h, w_f, acc_f, input_precision=PREC)
            acc_g = tl.dot(h, w_g, acc_g, input_precision=PREC)
            acc_o = tl.dot(h, w_o, acc_o, input_precision=PREC)
        else:
            acc_i = tl.dot(h, w_i, acc_i)
            acc_f = tl.dot(h, w_f, acc_f)
            acc_g = tl.dot(h, w_g, acc_g)
            acc_o = tl.dot(h, w_o, acc_o)
    return acc_i, acc_f, acc_g, acc_o


@triton.jit
def masked_sum(x, tile):
    """Sum over each row of the ``tile`` entries of a ``(BB, BH)`` block."""
    return tl.sum(tl.where(tile, x, 0.0), axis=1)


@triton.jit
def masked_sq(x, mean, tile):
    """Sum over each row of ``(x - mean)^2`` over the ``tile`` entries."""
    d = tl.where(tile, x - mean[:, None], 0.0)
    return tl.sum(d * d, axis=1)


@triton.jit(do_not_specialize=["B", "t", "prev", "nxt", "ts"])
def cell_forward_kernel(
    xg_ptr, rec_ptr, w_ptr, mask_ptr, hs_ptr, cs_ptr, carry_ptr,
    acts_ptr, tc_ptr, ms_ptr, cnew_ptr, gclip_ptr, cclip_ptr,
    rhat_ptr, rrstd_ptr, chat_ptr, crstd_ptr,
    wci_ptr, wcf_ptr, wco_ptr, ghh_ptr, gc_ptr, bc_ptr, valid_ptr, kh_ptr, kc_ptr,
    B, t, prev, nxt, ts, gate_limit, cell_limit,
    H: tl.constexpr, P: tl.constexpr, BB: tl.constexpr, BH: tl.constexpr, BK: tl.constexpr,
    PEEP: tl.constexpr, GCLIP: tl.constexpr, CCLIP: tl.constexpr, MASK: tl.constexpr,
    ZONE: tl.constexpr, NORM: tl.constexpr, VALID: tl.constexpr, PROJ: tl.constexpr,
    CARRY: tl.constexpr, GATE_ACT: tl.constexpr, CELL_ACT: tl.constexpr,
    UPCAST: tl.constexpr, PREC: tl.constexpr,
):  # fmt: skip
    """One step ``t`` of the forward for one ``(BB, BH)`` tile (see the module docstring).
    ``prev``/``nxt``: the state slots read and written; ``ts``: the per-step slot."""
    G: tl.constexpr = 4 * H
    rows = tl.program_id(0) * BB + tl.arange(0, BB)
    units = tl.program_id(1) * BH + tl.arange(0, BH)
    rmask, umask = rows < B, units < H
    tile = rmask[:, None] & umask[None, :]
    t64, ts64 = t.to(tl.int64), ts.to(tl.int64)
    prev64, nxt64 = prev.to(tl.int64), nxt.to(tl.int64)
    gate_at = rows[:, None] * G + units[None, :]  # (BB, BH) offsets of gate i in a (B, 4H)
    unit_at = rows[:, None] * H + units[None, :]  # in a (B, H)
    state_at = rows[:, None] * P + units[None, :]  # in a (B, P) (P == H when used)

    # recurrent products, then the pre-activations z_k = xg_t + rec_k
    if NORM:  # LN over the whole row of the precomputed h_{t-1} W_hh^T
        rec_i = tl.load(rec_ptr + gate_at, mask=tile, other=0.0)
        rec_f = tl.load(rec_ptr + gate_at + H, mask=tile, other=0.0)
        rec_g = tl.load(rec_ptr + gate_at + 2 * H, mask=tile, other=0.0)
        rec_o = tl.load(rec_ptr + gate_at + 3 * H, mask=tile, other=0.0)
        mean = (masked_sum(rec_i, tile) + masked_sum(rec_f, tile) + masked_sum(rec_g, tile)
                + masked_sum(rec_o, tile)) / G  # fmt: skip
        var = (masked_sq(rec_i, mean, tile) + masked_sq(rec_f, mean, tile)
               + masked_sq(rec_g, mean, tile) + masked_sq(rec_o, mean, tile)) / G  # fmt: skip
        rstd = 1.0 / tl.sqrt(var + LN_EPS)
        rec_i = (rec_i - mean[:, None]) * rstd[:, None]
        rec_f = (rec_f - mean[:, None]) * rstd[:, None]
        rec_g = (rec_g - mean[:, None]) * rstd[:, None]
        rec_o = (rec_o - mean[:, None]) * rstd[:, None]
        hat_at = rhat_ptr + ts64 * B * G + gate_at
        tl.store(hat_at, rec_i, mask=tile)
        tl.store(hat_at + H, rec_f, mask=tile)
        tl.store(hat_at + 2 * H, rec_g, mask=tile)
        tl.store(hat_at + 3 * H, rec_o, mask=tile)
        tl.store(rrstd_ptr + ts64 * B + rows, rstd, mask=rmask)
        rec_i *= tl.load(ghh_ptr + units, mask=umask, other=0.0).to(tl.float32)[None, :]
        rec_f *= tl.load(ghh_ptr + H + units, mask=umask, other=0.0).to(tl.float32)[None, :]
        rec_g *= tl.load(ghh_ptr + 2 * H + units, mask=umask, other=0.0).to(tl.float32)[None, :]
        rec_o *= tl.load(ghh_ptr + 3 * H + units, mask=umask, other=0.0).to(tl.float32)[None, :]
    else:
        rec_i, rec_f, rec_g, rec_o = _recurrent(
            hs_ptr + prev64 * B * P, w_ptr, mask_ptr, rows, units, rmask, umask, B,
            H, P, BB, BH, BK, MASK, UPCAST, PREC,
        )  # fmt: skip
    x_at = xg_ptr + t64 * B * G + gate_at
    z_i = tl.load(x_at, mask=tile, other=0.0).to(tl.float32) + rec_i
    z_f = tl.load(x_at + H, mask=tile, other=0.0).to(tl.float32) + rec_f
    z_g = tl.load(x_at + 2 * H, mask=tile, other=0.0).to(tl.float32) + rec_g
    z_o = tl.load(x_at + 3 * H, mask=tile, other=0.0).to(tl.float32) + rec_o

    # the cell
    if CARRY:  # the float32 state carried across steps (for 16-bit buffers)
        c_prev = tl.load(carry_ptr + unit_at, mask=tile, other=0.0)
    else:
        c_prev = tl.load(cs_ptr + prev64 * B * H + unit_at, mask=tile, other=0.0)
    c_prev = c_prev.to(tl.float32)
    if PEEP:
        z_i += tl.load(wci_ptr + units, mask=umask, other=0.0).to(tl.float32)[None, :] * c_prev
        z_f += tl.load(wcf_ptr + units, mask=umask, other=0.0).to(tl.float32)[None, :] * c_prev
    z_i, hit_i = clip(z_i, gate_limit, GCLIP)
    z_f, hit_f = clip(z_f, gate_limit, GCLIP)
    z_g, hit_g = clip(z_g, gate_limit, GCLIP)
    i = gate_act(z_i, GATE_ACT)
    f = gate_act(z_f, GATE_ACT)
    g = cell_act(z_g, CELL_ACT)
    c = f * c_prev + i * g
    c, hit_c = clip(c, cell_limit, CCLIP)
    if PEEP:
        z_o += tl.load(wco_ptr + units, mask=umask, other=0.0).to(tl.float32)[None, :] * c
    z_o, hit_o = clip(z_o, gate_limit, GCLIP)
    o = gate_act(z_o, GATE_ACT)
    c_out = c
    if NORM:  # LN(c_t) g_c + beta_c over the row
        c_mean = masked_sum(c, tile) / H
        c_rstd = 1.0 / tl.sqrt(masked_sq(c, c_mean, tile) / H + LN_EPS)
        c_hat = (c - c_mean[:, None]) * c_rstd[:, None]
        tl.store(chat_ptr + ts64 * B * H + unit_at, c_hat, mask=tile)
        tl.store(crstd_ptr + ts64 * B + rows, c_rstd, mask=rmask)
        gain = tl.load(gc_ptr + units, mask=umask, other=0.0).to(tl.float32)
        shift = tl.load(bc_ptr + units, mask=umask, other=0.0).to(tl.float32)
        c_out = c_hat * gain[None, :] + shift[None, :]
    tc = cell_act(c_out, CELL_ACT)
    m = o * tc

    # what the backward reads
    acts_at = acts_ptr + ts64 * B * G + gate_at
    tl.store(acts_at, i, mask=tile)
    tl.store(acts_at + H, f, mask=tile)
    tl.store(acts_at + 2 * H, g, mask=tile)
    tl.store(acts_at + 3 * H, o, mask=tile)
    tl.store(tc_ptr + ts64 * B * H + unit_at, tc, mask=tile)
    if GCLIP:
        hit_at = gclip_ptr + ts64 * B * G + gate_at
        tl.store(hit_at, hit_i, mask=tile)
        tl.store(hit_at + H, hit_f, mask=tile)
        tl.store(hit_at + 2 * H, hit_g, mask=tile)
        tl.store(hit_at + 3 * H, hit_o, mask=tile)
    if CCLIP:
        tl.store(cclip_ptr + ts64 * B * H + unit_at, hit_c, mask=tile)

    # the new state: zoneout, then ended sequences keep theirs
    if VALID:
        v = tl.load(valid_ptr + t64 * B + rows, mask=rmask, other=0) != 0
    if ZONE:
        tl.store(cnew_ptr + ts64 * B * H + unit_at, c, mask=tile)
        k_c = tl.load(kc_ptr + t64 * B * H + unit_at, mask=tile, other=0.0).to(tl.float32)
        c = c + k_c * (c_prev - c)
    if VALID:
        c = tl.where(v[:, None], c, c_prev)
    tl.store(cs_ptr + nxt64 * B * H + unit_at, c, mask=tile)
    if CARRY:
        tl.store(carry_ptr + unit_at, c, mask=tile)
    if PROJ:  # h_t = m_t W_hr^T, mixed and kept by the projection kernel
        tl.store(ms_ptr + ts64 * B * H + unit_at, m, mask=tile)
    else:
        h = m
        if ZONE or VALID:
            h_prev = tl.load(hs_ptr + prev64 * B * P + state_at, mask=tile, other=0.0)
            h_prev = h_prev.to(tl.float32)
        if ZONE:
            k_h = tl.load(kh_ptr + t64 * B * P + state_at, mask=tile, other=0.0).to(tl.float32)
            h = h + k_h * (h_prev - h)
        if VALID:
            h = tl.where(v[:, None], h, h_prev)
        tl.store(hs_ptr + nxt64 * B * P + state_at, h, mask=tile)
