"""One time step of every layer in one compiled call, for inference (``LSTM.step`` and
``LSTMCell`` without autograd): the input and recurrent products, the cell with every
option, the projection and inter-layer dropout, for all rows and layers, with no torch
op in between (:func:`step_layers`; one layer: :func:`step_layer`).

Per row ``b`` (``B`` rows, ``I`` inputs, ``H`` hidden, ``G = 4H``, ``P`` width of h)::

    xg  = x_b W_ih^T                     (LN(x_b W_ih^T) g_ih with layer norm) + b_ih + b_hh
    hw  = (h_b * mask_b) W_hh^T          (the cell of :func:`.rows.forward_row` takes it on)
    c_b', m = cell(hw, xg, c_b)          every option: peepholes, clips, activations, LN
    h_b' = m W_hr^T (or m);  zoneout: h_b' += k_h (h_b - h_b'), c_b' += k_c (c_b - c_b')

Layer ``l + 1`` takes layer ``l``'s ``h_b'`` (times the dropout mask in training) as its
``x_b``. The weights are read where torch keeps them: :func:`step_layers` takes a table
of their addresses, one row per layer (a call builds no array per weight and passes no
argument per layer). The input and recurrent products run for all rows at once, over
the weights in torch's layout (nothing to prepare): float32 on the register-blocked
dot-product blocks of :mod:`.dots` (:func:`.loops.dot_product`), float64 as plain dot
products. Agrees with the time loops of :mod:`.loops` to float rounding (the same cell
and activations).
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING

import numpy as np
import torch
from numba import carray, njit, types
from numba.extending import intrinsic, overload

from . import team
from .engine import MIN_ROWS_PER_THREAD, row_ranges, statics
from .loops import dot_product
from .numerics import FASTMATH
from .rows import forward_row, normalize_row

if TYPE_CHECKING:
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

#: The columns of :func:`step_layers`' table, one row per layer: the address of each
#: tensor's first element (C-contiguous, of the input's dtype), 0 where it is absent.
#: ``dropout``: inter-layer dropout's scaled keep mask ``(B, P)`` applied to the layer's
#: output before the next layer takes it (never on the last layer).
SLOTS = (
    "weight_ih", "weight_hh", "bias_ih", "bias_hh", "weight_hr", "weight_ci", "weight_cf",
    "weight_co", "ln_weight_ih", "ln_weight_hh", "ln_weight_c", "ln_bias_c", "recurrent_mask",
    "zoneout_h", "zoneout_c", "dropout",
)  # fmt: skip


@intrinsic
def _pointer(typingctx, address, like):
    """The integer ``address`` as a pointer to elements of ``like``'s dtype."""
    pointer = types.CPointer(like.dtype)

    def codegen(context, builder, signature, args):
        return builder.inttoptr(args[0], context.get_value_type(pointer))

    return pointer(types.int64, like), codegen


@njit(inline="always")
def _matrix(address, like, rows, cols):
    """The C-contiguous ``(rows, cols)`` matrix at ``address``, or an empty ``(0, 0)`` one
    where the address is 0 (absent)."""
    if address == 0:
        rows = cols = 0
    return carray(_pointer(address, like), (rows, cols))


@njit(inline="always")
def _vector(address, like, n):
    """The ``(n,)`` vector at ``address``, or an empty one where the address is 0."""
    return carray(_pointer(address, like), (n if address != 0 else 0,))


@njit(cache=True, nogil=True, fastmath=FASTMATH, error_model="numpy")
def step_layers(x, h, c, table, h_n, c_n, clips, kinds, first, last):
    """One step of every layer, rows ``first:last``: layer ``l`` from ``h[l]``, ``c[l]``
    (``(L, B, P)``, ``(L, B, H)``) into ``h_n[l]``, ``c_n[l]``, its input ``x (B, I)``
    for the first layer, else the layer below's ``h_n`` (times its dropout mask in
    training). Layer ``l``'s weights and option tensors are at the addresses of row
    ``l`` of ``table`` (:data:`SLOTS`); ``clips``, ``kinds`` as :func:`step_layer`."""
    L, B, P = h.shape
    H = c.shape[2]
    G = 4 * H
    inp = x[first:last]
    for layer in range(L):
        at = table[layer]
        peep = np.empty((3 if at[5] != 0 else 0, H), x.dtype)  # w_ci, w_cf, w_co
        for r in range(peep.shape[0]):
            v = _vector(at[5 + r], x, H)
            for j in range(H):
                peep[r, j] = v[j]
        norm = (_vector(at[8], x, G), _vector(at[9], x, G), _vector(at[10], x, H),
                _vector(at[11], x, H))  # fmt: skip
        h_out, c_out = h_n[layer][first:last], c_n[layer][first:last]
        step_layer(
            inp, h[layer][first:last], c[layer][first:last], _matrix(at[0], x, G, inp.shape[1]),
            _matrix(at[1], x, G, P), _vector(at[2], x, G), _vector(at[3], x, G),
            _matrix(at[4], x, P, H), h_out, c_out, peep, clips, kinds, norm,
            _matrix(at[12], x, B, P)[first:last], _matrix(at[13], x, B, P)[first:last],
            _matrix(at[14], x, B, H)[first:last],
        )  # fmt: skip
        inp = h_out
        noise = _matrix(at[15], x, B, P)[first:last]
        if noise.shape[0] > 0:  # inter-layer dropout: the next layer sees h * mask
            inp = np.empty((last - first, P), x.dtype)
            for b in range(last - first):
                for j in range(P):
                    inp[b, j] = h_out[b, j] * noise[b, j]


def run_step_layers(
    x: np.ndarray, h: np.ndarray, c: np.ndarray, table: np.ndarray, h_n: np.ndarray,
    c_n: np.ndarray, config: CellConfig, dtype: torch.dtype,
) -> None:  # fmt: skip
    """:func:`step_layers` over all rows of ``x (B, I)`` with the clips and activations
    of ``config`` (arrays C-contiguous, of ``dtype``; the tensors behind ``table`` alive
    until it returns). A batch that the engine splits
    across threads (:func:`.engine.row_ranges`: 8 rows a thread at least) runs a row
    range on each of torch's threads (:func:`.team.run_all`), every layer: rows are
    independent sequences."""
    clips, kinds = statics(config, dtype)
    ranges = [(0, x.shape[0])] if x.shape[0] < MIN_ROWS_PER_THREAD * 2 else row_ranges(x.shape[0])
    if len(ranges) == 1:
        step_layers(x, h, c, table, h_n, c_n, clips, kinds, 0, x.shape[0])
        return
    team.run_all([
        functools.partial(step_layers, x, h, c, table, h_n, c_n, clips, kinds, lo, hi)
        for lo, hi in ranges
    ])  # fmt: skip
