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

from collections.abc import Sequence
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .backends import _functorch_active, compiled, tracing
from .functional import cell_inputs
from .masks import draw
from .options import CELL_OPTIONS

if TYPE_CHECKING:
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
    rows = (lstm.num_layers, x_t.shape[0]) if x_t.dim() == 2 else (lstm.num_layers,)
    widths = (lstm.proj_size or lstm.hidden_size, lstm.hidden_size)
    return all(plain(s, x_t) and tuple(s.shape) == (*rows, width) for s, width in zip(hx, widths))


def lean_step(
    lstm: LSTM, x_t: Tensor, hx: tuple[Tensor, Tensor] | None,
    masks: Sequence[Tensor] | None,
) -> tuple[Tensor, tuple[Tensor, Tensor]] | None:  # fmt: skip
    """``lstm.step(x_t, hx, recurrent_masks=masks)`` (``masks`` as checked: ``(B, P)``
    each) in one compiled call per layer, or None when it cannot run here."""
    if not _usable(lstm, x_t, hx, masks):
        return None
    from .backends.numba.step import STEP_OPTIONS, run_step_layer  # compiled on first use

    missing = CELL_OPTIONS - STEP_OPTIONS  # (none today: then nothing to look up per call)
    if missing and missing.intersection(lstm.options_used()):
        return None  # an option the step kernel does not implement
    weights = lstm.layer_weights()
    if not all(plain(t, x_t) for w in weights for t in w if t is not None):
        return None
    batched = x_t.dim() == 2
    x = (x_t if batched else x_t[None]).contiguous()  # (B, I)
    L, B = lstm.num_layers, x.shape[0]
    P, H = lstm.proj_size or lstm.hidden_size, lstm.hidden_size
    if hx is None:
        h0, c0 = x.new_zeros(L, B, P), x.new_zeros(L, B, H)
    else:
        h0, c0 = (s if batched else s[:, None] for s in hx)
        h0, c0 = h0.contiguous(), c0.contiguous()
    h_n, c_n, y = x.new_empty(L, B, P), x.new_empty(L, B, H), x.new_empty(B, P)
    settings, training = lstm.settings, lstm.training
    zoned = dict(settings)["zoneout"] != (0.0, 0.0)
    # numpy views, indexed per layer (a tensor's indexing costs ~1 us, an array's ~0.1)
    h0_, c0_, h_n_, c_n_, x_, y_ = (t.numpy() for t in (h0, c0, h_n, c_n, x, y))
    for layer, w in enumerate(weights):
        drawn = {}
        if zoned:  # zoneout's masks (its rates in eval), drawn as the general path does
            drawn = draw(x, 1, B, (P, H), dict(settings), training, skip=("recurrent_dropout",))
        if masks is not None:
            drawn["recurrent_mask"] = masks[layer].contiguous()
        config, tensors = cell_inputs(w, settings, drawn)
        h_out = y_ if layer == L - 1 else h_n_[layer]  # the output apart from the state
        run_step_layer(x_, h0_[layer], c0_[layer], w, h_out, c_n_[layer], config, tensors)
        if layer < L - 1:
            x_ = h_out
            if training and lstm.dropout > 0:
                x = F.dropout(h_n[layer], lstm.dropout, training=True)
                x_ = x.numpy()
    h_n_[L - 1] = y_
    if not batched:
        return y[0], (h_n[:, 0], c_n[:, 0])
    return y, (h_n, c_n)
