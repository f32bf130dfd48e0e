"""``LSTM.step`` and ``LSTMCell.forward`` without autograd in one compiled call per
layer (the ``compiled`` engine's :func:`~lstmkit.backends.numba.step.step_layer`): the
step of a streaming loop (generation, the lab's step-by-step inference, a loop over a
cell) without the ~20 torch calls and the Python around them that the general path
spends per layer.

It runs only where it gives exactly what the general path gives (to float rounding):
no gradient wanted, float32/float64 CPU tensors of the weights' dtype, the ``auto`` or
``compiled`` backend with numba, no graph tracer, transform or autocast, and inputs
whose shapes are right (the general path then raises nn.LSTM's errors for the others).
It draws zoneout's masks and applies inter-layer dropout in the general path's order,
so a seeded run gives the same numbers on either path.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from types import ModuleType
from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .backends import _functorch_active, compiled, tracing
from .functional import cell_inputs
from .masks import draw
from .options import CELL_OPTIONS

if TYPE_CHECKING:
    from .functional import LayerWeights
    from .lstm import LSTM
    from .lstm_cell import LSTMCell

_DTYPES = (torch.float32, torch.float64)


def plain(t: object, like: Tensor) -> bool:
    """A plain tensor (or parameter; no other subclass, batched or fake tensor) on
    ``like``'s device, of its dtype."""
    return type(t) in _PLAIN and t.dtype == like.dtype and t.device == like.device


_PLAIN = (Tensor, nn.Parameter)


def _usable(module: LSTM | LSTMCell, x_t: Tensor, masks: Sequence[Tensor | None] | None) -> bool:
    """Whether the lean step can give this call's result, its states aside (else the
    general path runs, and raises what it finds wrong)."""
    if torch.is_grad_enabled() or module.backend not in ("auto", "compiled"):
        return False
    if not compiled.AVAILABLE or tracing() or _functorch_active():  # (and forward-mode AD)
        return False
    if x_t.device.type != "cpu" or x_t.dtype not in _DTYPES or torch.is_autocast_enabled("cpu"):
        return False
    if type(x_t) is not Tensor or not all(plain(m, x_t) for m in masks or () if m is not None):
        return False
    return x_t.shape[-1] == module.input_size and not (x_t.dim() == 2 and x_t.shape[0] == 0)


def _states(hx: object, x_t: Tensor, h_shape: tuple[int, ...], c_shape: tuple[int, ...]) -> bool:
    """Whether ``hx`` is None or a pair of plain tensors like ``x_t`` of these shapes."""
    if hx is None:
        return True
    if not isinstance(hx, (tuple, list)) or len(hx) != 2:
        return False
    h, c = hx
    return plain(h, x_t) and plain(c, x_t) and h.shape == h_shape and c.shape == c_shape


def plain_weights(lstm: LSTM | LSTMCell, like: Tensor) -> list[LayerWeights] | None:
    """``lstm.layer_weights()`` when every one is a plain tensor of ``like``'s dtype and
    device (:func:`plain`), else None."""
    weights = lstm.layer_weights()
    for w in weights:
        for t in w:
            if t is not None and not plain(t, like):
                return None
    return weights


@functools.cache
def _kernel() -> tuple[frozenset[str], ModuleType]:
    """The cell options the step kernel lacks (none today) and its module
    (:mod:`lstmkit.backends.numba.step`), imported on first use."""
    from .backends.numba import step

    return CELL_OPTIONS - step.STEP_OPTIONS, step


def _served(module: LSTM | LSTMCell, like: Tensor) -> tuple[ModuleType, list[LayerWeights]] | None:
    """The step kernel's module and the weights, when the kernel implements every option
    on ``module`` and the weights are plain tensors like ``like``; else None."""
    missing, kernel = _kernel()
    if missing and missing.intersection(module.options_used()):
        return None  # an option the step kernel does not implement
    weights = plain_weights(module, like)
    return None if weights is None else (kernel, weights)


def lean_step(
    lstm: LSTM, x_t: Tensor, hx: tuple[Tensor, Tensor] | None,
    masks: Sequence[Tensor] | None,
) -> tuple[Tensor, tuple[Tensor, Tensor]] | None:  # fmt: skip
    """``lstm.step(x_t, hx, recurrent_masks=masks)`` (``masks`` as checked: ``(B, P)``
    each) in one compiled call per layer, or None when it cannot run here."""
    rows = (lstm.num_layers, x_t.shape[0]) if x_t.dim() == 2 else (lstm.num_layers,)
    widths = (lstm.proj_size or lstm.hidden_size, lstm.hidden_size)
    if not _usable(lstm, x_t, masks) or not _states(
        hx, x_t, (*rows, widths[0]), (*rows, widths[1])
    ):  # fmt: skip
        return None
    served = _served(lstm, x_t)
    if served is None:
        return None
    kernel, weights = served
    batched = x_t.dim() == 2
    x_ = (x_t if batched else x_t[None]).detach().contiguous().numpy()  # (B, I)
    L, B, dt = lstm.num_layers, x_.shape[0], x_.dtype
    P, H = lstm.proj_size or lstm.hidden_size, lstm.hidden_size
    # arrays, wrapped as tensors at the end (an array's making and indexing cost a third
    # of a tensor's)
    h0_, c0_ = _state_arrays(hx, batched, (L, B, P), (L, B, H), dt)
    h_n_, c_n_, y_ = np.empty((L, B, P), dt), np.empty((L, B, H), dt), np.empty((B, P), dt)
    for layer, w in enumerate(weights):
        h_out = y_ if layer == L - 1 else h_n_[layer]  # the output apart from the state
        mask = None if masks is None else masks[layer]
        _layer_step(kernel, lstm, x_, h0_[layer], c0_[layer], w, h_out, c_n_[layer], (P, H), mask)
        if layer < L - 1:
            x_ = h_out
            if lstm.training and lstm.dropout > 0:
                x_ = F.dropout(torch.from_numpy(h_out), lstm.dropout, training=True).numpy()
    h_n_[L - 1] = y_
    if not batched:
        y_, h_n_, c_n_ = y_[0], h_n_[:, 0], c_n_[:, 0]
    return torch.from_numpy(y_), (torch.from_numpy(h_n_), torch.from_numpy(c_n_))


def _state_arrays(
    hx: object, batched: bool, h_shape: tuple[int, ...], c_shape: tuple[int, ...], dt: np.dtype
) -> tuple[np.ndarray, np.ndarray]:
    """``hx`` (checked by :func:`_states`) as C-contiguous arrays of ``h_shape`` and
    ``c_shape`` (a batch axis added when not ``batched``), zeros for None."""
    if hx is None:
        return np.zeros(h_shape, dt), np.zeros(c_shape, dt)
    h, c = hx[0].detach().contiguous().numpy(), hx[1].detach().contiguous().numpy()
    return (h, c) if batched else (h[..., None, :], c[..., None, :])


def _layer_step(
    kernel: ModuleType, module: LSTM | LSTMCell, x_: np.ndarray, h: np.ndarray, c: np.ndarray,
    w: LayerWeights, h_out: np.ndarray, c_out: np.ndarray, widths: tuple[int, int],
    mask: Tensor | None,
) -> None:  # fmt: skip
    """One layer's step from ``x_ (B, I)`` into ``h_out``, ``c_out``: zoneout's masks
    drawn as the general path draws them (its rates in eval), the recurrent ``mask`` (as
    checked, ``(B, P)``), then the step kernel. ``widths`` = ``(P, H)``."""
    settings = module.settings
    drawn = {}
    if dict(settings)["zoneout"] != (0.0, 0.0):
        like = torch.from_numpy(x_)  # (the draws' dtype and device)
        drawn = draw(like, 1, x_.shape[0], widths, dict(settings), module.training,
                     skip=("recurrent_dropout",))  # fmt: skip
    if mask is not None:
        drawn["recurrent_mask"] = mask.contiguous()
    config, tensors = cell_inputs(w, settings, drawn)
    kernel.run_step_layer(x_, h, c, w, h_out, c_out, config, tensors)


def lean_cell(
    cell: LSTMCell, input: Tensor, hx: object, mask: Tensor | None
) -> tuple[Tensor, Tensor] | None:
    """``cell(input, hx, recurrent_mask=mask)`` in one compiled call (the step kernel on
    the cell's one layer), or None when it cannot run here: the conditions of
    :func:`lean_step`, with ``hx`` a pair ``(B, H)`` (``(H,)`` unbatched) or None. The
    mask is checked by the cell (its errors), once the input is known to be right."""
    if not _usable(cell, input, (mask,)) or input.dim() not in (1, 2):
        return None
    batched, H = input.dim() == 2, cell.hidden_size
    shape = (input.shape[0], H) if batched else (H,)
    if not _states(hx, input, shape, shape):
        return None
    served = _served(cell, input)
    if served is None:
        return None
    kernel, weights = served
    x = input if batched else input[None]
    mask = cell._check_mask(mask, x.shape[0], batched)
    x_ = x.detach().contiguous().numpy()  # (B, I)
    B, dt = x_.shape[0], x_.dtype
    h_, c_ = _state_arrays(hx, batched, (B, H), (B, H), dt)
    h_out, c_out = np.empty((B, H), dt), np.empty((B, H), dt)
    _layer_step(kernel, cell, x_, h_, c_, weights[0], h_out, c_out, (H, H), mask)
    if not batched:
        h_out, c_out = h_out[0], c_out[0]
    return torch.from_numpy(h_out), torch.from_numpy(c_out)
