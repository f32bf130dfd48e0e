"""One time step of one layer in one compiled call, for inference (``LSTM.step`` without
autograd): the input and recurrent products, the cell with every option and the
projection, for all rows, with no torch op in between.

Per row ``b`` (``B`` rows, ``I`` inputs, ``H`` hidden, ``G = 4H``, ``P`` width of h)::

    xg  = x_b W_ih^T                     (LN(x_b W_ih^T) g_ih with layer norm) + b_ih + b_hh
    hw  = (h_b * mask_b) W_hh^T          (the cell of :func:`.rows.forward_row` takes it on)
    c_b', m = cell(hw, xg, c_b)          every option: peepholes, clips, activations, LN
    h_b' = m W_hr^T (or m);  zoneout: h_b' += k_h (h_b - h_b'), c_b' += k_c (c_b - c_b')

The input and recurrent products run for all rows at once, over the weights in torch's
layout (nothing to prepare): float32 on the register-blocked dot-product blocks of
:mod:`.dots` (:func:`.loops.dot_product`), float64 as plain dot products. Agrees with
the time loops of :mod:`.loops` to float rounding (the same cell and activations).
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import TYPE_CHECKING

import numpy as np
from numba import njit, types
from numba.extending import overload
from torch import Tensor

from . import team
from .engine import absent, biases, option_arrays, row_ranges
from .loops import dot_product
from .numerics import FASTMATH
from .rows import forward_row, normalize_row

if TYPE_CHECKING:
    from ...functional import LayerWeights
    from ...options import CellConfig


def _products(a, w, out):
    """``out (B, N) = a (B, K) @ w^T`` for ``w (N, K)`` in torch's layout, all rows
    C-contiguous."""


@overload(_products, inline="always")
def _products_impl(a, w, out):
    if a.dtype == types.float32:  # register-blocked dot products (:func:`.loops.dot_product`)

        def blocked(a, w, out):
            dot_product(a, w, out, w.shape[0])

        return blocked

    def plain(a, w, out):  # float64: one dot product per row of ``w``
        _dots64(a, w, out)

    return plain


@njit(fastmath=FASTMATH, error_model="numpy")
def _dots64(a, w, out):
    """``out = a @ w^T`` as plain dot products (float64)."""
    for b in range(a.shape[0]):
        for j in range(w.shape[0]):
            acc = 0.0
            for k in range(w.shape[1]):
                acc += w[j, k] * a[b, k]
            out[b, j] = acc


@njit(cache=True, nogil=True, fastmath=FASTMATH, error_model="numpy")
def step_layer(
    x, h, c, w_ih, w_hh, b_ih, b_hh, w_hr, h_out, c_out, peep, clips, kinds, norm, rmask,
    keep_h, keep_c,
):  # fmt: skip
    """One step of one layer for rows ``x (B, I)`` from ``h (B, P)``, ``c (B, H)`` into
    ``h_out``, ``c_out``. Weights in torch's layout (``w_ih (G, I)``, ``w_hh (G, P)``,
    ``w_hr (P, H)`` or (0, 0)), all C-contiguous; biases ``(G,)`` or empty; ``peep``
    (3, H) or (0, 0); ``clips`` = (gate_clip, cell_clip), inf when off; ``kinds`` =
    activation codes; ``norm`` = (g_ih (G,), g_hh (G,), g_c (H,), beta_c (H,)) or four
    empties; ``rmask`` (B, P), ``keep_h`` (B, P), ``keep_c`` (B, H) or (0, 0) each."""
    B, G = x.shape[0], w_hh.shape[0]
    H, P = G // 4, w_hh.shape[1]
    dt = x.dtype
    g_ih, g_hh, g_c, b_c = norm
    norm_on = g_hh.shape[0] > 0
    xg, hw, acts = np.empty((B, G), dt), np.empty((B, G), dt), np.empty(G, dt)
    c_new, tanh_c, m = np.empty(H, dt), np.empty(H, dt), np.empty((B, H), dt)
    gmask = np.empty(G if clips[0] < np.inf else 0, np.bool_)
    cmask = np.empty(H if clips[1] < np.inf else 0, np.bool_)
    rstd = np.empty(1, dt)
    rec_hat, c_hat = np.empty(G if norm_on else 0, dt), np.empty(H if norm_on else 0, dt)
    rec_rstd, c_rstd = np.empty(1, dt), np.empty(1, dt)
    row_norm = (g_hh, g_c, b_c, rec_hat, rec_rstd, c_hat, c_rstd)
    _products(x, w_ih, xg)
    if rmask.shape[0] > 0:  # recurrent dropout: W_hh sees the masked h
        h_in = np.empty((B, P), dt)
        for b in range(B):
            for j in range(P):
                h_in[b, j] = h[b, j] * rmask[b, j]
        _products(h_in, w_hh, hw)
    else:
        _products(h, w_hh, hw)
    for b in range(B):
        row = xg[b]
        if norm_on:  # LN(x W_ih^T) g_ih
            normalize_row(row, row, rstd)
            for j in range(G):
                row[j] *= g_ih[j]
        if b_ih.shape[0] > 0:
            for j in range(G):
                row[j] += b_ih[j] + b_hh[j]
        cell_m = m[b] if w_hr.shape[0] > 0 else h_out[b]
        forward_row(hw[b], row, c[b], acts, c_new, tanh_c, cell_m, peep, clips, gmask, cmask,
                    kinds, row_norm)  # fmt: skip
        if w_hr.shape[0] > 0:
            _products(m[b : b + 1], w_hr, h_out[b : b + 1])
        if keep_h.shape[0] > 0:  # zoneout: keep a share of the previous state
            for j in range(P):
                h_out[b, j] += keep_h[b, j] * (h[b, j] - h_out[b, j])
            for j in range(H):
                c_new[j] += keep_c[b, j] * (c[b, j] - c_new[j])
        for j in range(H):  # (a loop: an array assignment compiles a shape check too)
            c_out[b, j] = c_new[j]


#: The cell options :func:`step_layer` implements (``lstmkit.LSTM.step`` runs the
#: general path for any other).
STEP_OPTIONS = frozenset({
    "peephole", "gate_clip", "cell_clip", "recurrent_dropout", "zoneout", "layer_norm",
    "activation", "recurrent_activation",
})  # fmt: skip


def run_step_layer(
    x: np.ndarray, h: np.ndarray, c: np.ndarray, w: LayerWeights, h_out: np.ndarray,
    c_out: np.ndarray, config: CellConfig, tensors: Mapping[str, Tensor],
) -> None:  # fmt: skip
    """:func:`step_layer` for the layer with weights ``w`` (CPU tensors of ``x``'s dtype)
    and the options of ``config``/``tensors`` (as a backend receives them, zoneout's keep
    weights ``(1, B, *)``): rows ``x (B, I)`` from ``h``, ``c`` into ``h_out``, ``c_out``
    (arrays, contiguous). A batch that the engine splits across threads
    (:func:`.engine.row_ranges`: 8 rows a thread at least) runs a row range on each of
    torch's threads (:func:`.team.run_all`), as the time loops do."""
    dtype = w.weight_hh.dtype
    e1, e2 = absent(dtype, 1), absent(dtype, 2)
    peep, limits, codes = option_arrays(config, tensors, dtype)
    norm = (e1, e1, e1, e1)
    if config.layer_norm:
        norm = tuple(t.detach().numpy() for t in (w.ln_weight_ih, w.ln_weight_hh,
                                                  w.ln_weight_c, w.ln_bias_c))  # fmt: skip
    rmask = tensors["recurrent_mask"].numpy() if config.recurrent_dropout else e2
    keep_h = keep_c = e2
    if config.zoneout:
        keep_h, keep_c = (tensors[n][0].contiguous().numpy() for n in ("zoneout_h", "zoneout_c"))
    b_ih, b_hh = biases(w, dtype)
    weights = (_rows(w.weight_ih), _rows(w.weight_hh), b_ih, b_hh,
               e2 if w.weight_hr is None else _rows(w.weight_hr))  # fmt: skip
    ranges = row_ranges(x.shape[0])
    if len(ranges) == 1:
        step_layer(x, h, c, *weights, h_out, c_out, peep, limits, codes, norm, rmask, keep_h,
                   keep_c)  # fmt: skip
        return

    def rows(lo: int, hi: int) -> None:  # rows are independent: a range per thread
        def cut(a: np.ndarray) -> np.ndarray:
            return a[lo:hi] if a.shape[0] > 0 else a

        step_layer(x[lo:hi], h[lo:hi], c[lo:hi], *weights, h_out[lo:hi], c_out[lo:hi], peep,
                   limits, codes, norm, cut(rmask), cut(keep_h), cut(keep_c))  # fmt: skip

    team.run_all([functools.partial(rows, lo, hi) for lo, hi in ranges])


def _rows(weight: Tensor) -> np.ndarray:
    """A weight as a C-contiguous array (the products read its rows by pointer)."""
    return weight.detach().contiguous().numpy()
