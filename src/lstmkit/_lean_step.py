"""``LSTM.step`` without autograd in one compiled call per layer (the ``compiled``
engine's :func:`~lstmkit.backends.numba.step.step_layer`): the step of a streaming
loop (generation, the lab's step-by-step inference) without the ~20 torch calls and
the Python around them that the general path spends per layer.

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

_DTYPES = (torch.float32, torch.float64)


def plain(t: object, like: Tensor) -> bool:
    """A plain tensor (or parameter; no other subclass, batched or fake tensor) on
    ``like``'s device, of its dtype."""
    return type(t) in _PLAIN and t.dtype == like.dtype and t.device == like.device


_PLAIN = (Tensor, nn.Parameter)


def _usable(lstm: LSTM, x_t: Tensor, hx: object, masks: Sequence[Tensor] | None) -> bool:
    """Whether the lean step gives this call's result (else the general path runs)."""
    if torch.is_grad_enabled() or lstm.backend not in ("auto", "compiled"):
        return False
    if not compiled.AVAILABLE or tracing() or _functorch_active():  # (and forward-mode AD)
        return False
    if x_t.device.type != "cpu" or x_t.dtype not in _DTYPES or torch.is_autocast_enabled("cpu"):
        return False
    if type(x_t) is not Tensor or not all(plain(m, x_t) for m in masks or ()):
        return False
    if x_t.shape[-1] != lstm.input_size or (x_t.dim() == 2 and x_t.shape[0] == 0):
        return False
    if hx is None:
        return True
    if not isinstance(hx, (tuple, list)) or len(hx) != 2:
        return False
    h, c = hx
    if not (plain(h, x_t) and plain(c, x_t)):
        return False
    rows = (lstm.num_layers, x_t.shape[0]) if x_t.dim() == 2 else (lstm.num_layers,)
    return h.shape == (*rows, lstm.proj_size or lstm.hidden_size) and c.shape == (
        *rows, lstm.hidden_size
    )  # fmt: skip


def plain_weights(lstm: LSTM, like: Tensor) -> list[LayerWeights] | None:
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


def lean_step(
    lstm: LSTM, x_t: Tensor, hx: tuple[Tensor, Tensor] | None,
    masks: Sequence[Tensor] | None,
) -> tuple[Tensor, tuple[Tensor, Tensor]] | None:  # fmt: skip
    """``lstm.step(x_t, hx, recurrent_masks=masks)`` (``masks`` as checked: ``(B, P)``
    each) in one compiled call per layer, or None when it cannot run here."""
    if not _usable(lstm, x_t, hx, masks):
        return None
    missing, kernel = _kernel()
    if missing and missing.intersection(lstm.options_used()):
        return None  # an option the step kernel does not implement
    weights = plain_weights(lstm, x_t)
    if weights is None:
        return None
    batched = x_t.dim() == 2
    x_ = (x_t if batched else x_t[None]).detach().contiguous().numpy()  # (B, I)
    L, B, dt = lstm.num_layers, x_.shape[0], x_.dtype
    P, H = lstm.proj_size or lstm.hidden_size, lstm.hidden_size
    # arrays, wrapped as tensors at the end (an array's making and indexing cost a third
    # of a tensor's)
    if hx is None:
        h0_, c0_ = np.zeros((L, B, P), dt), np.zeros((L, B, H), dt)
    else:
        h0_, c0_ = hx[0].detach().contiguous().numpy(), hx[1].detach().contiguous().numpy()
        if not batched:
            h0_, c0_ = h0_[:, None], c0_[:, None]
    h_n_, c_n_, y_ = np.empty((L, B, P), dt), np.empty((L, B, H), dt), np.empty((B, P), dt)
    settings, training = lstm.settings, lstm.training
    zoned = dict(settings)["zoneout"] != (0.0, 0.0)
    x = None  # the layer's input as a tensor, made where dropout or zoneout need it
    for layer, w in enumerate(weights):
        drawn = {}
        if zoned:  # zoneout's masks (its rates in eval), drawn as the general path does
            x = torch.from_numpy(x_) if x is None else x
            drawn = draw(x, 1, B, (P, H), dict(settings), training, skip=("recurrent_dropout",))
        if masks is not None:
            drawn["recurrent_mask"] = masks[layer].contiguous()
        config, tensors = cell_inputs(w, settings, drawn)
        h_out = y_ if layer == L - 1 else h_n_[layer]  # the output apart from the state
        kernel.run_step_layer(x_, h0_[layer], c0_[layer], w, h_out, c_n_[layer], config, tensors)
        if layer < L - 1:
            x_, x = h_out, None
            if training and lstm.dropout > 0:
                x = F.dropout(torch.from_numpy(h_out), lstm.dropout, training=True)
                x_ = x.numpy()
    h_n_[L - 1] = y_
    if not batched:
        y_, h_n_, c_n_ = y_[0], h_n_[:, 0], c_n_[:, 0]
    return torch.from_numpy(y_), (torch.from_numpy(h_n_), torch.from_numpy(c_n_))
