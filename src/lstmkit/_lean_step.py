"""``LSTM.step`` and ``LSTMCell.forward`` without autograd in one compiled call for
every layer (the ``compiled`` engine's :func:`~lstmkit.backends.numba.step.step_layers`):
the step of a streaming loop (generation, the lab's step-by-step inference, a loop over
a cell) without the ~20 torch calls and the Python around them that the general path
spends per layer. The kernel reads the weights where torch keeps them, through a table
of their addresses (:func:`_weight_rows`: each tensor checked, a contiguous copy made
of a strided one); what a call draws goes in the same table.

It runs only where it gives exactly what the general path gives (to float rounding):
no gradient wanted, float32/float64 CPU tensors of the weights' dtype, the ``auto`` or
``compiled`` backend with numba, no graph tracer, transform or autocast, and inputs
whose shapes are right (the general path then raises nn.LSTM's errors for the others).
It draws zoneout's masks and applies inter-layer dropout in the general path's order,
so a seeded run gives the same numbers on either path.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from types import ModuleType
from typing import TYPE_CHECKING

import numpy as np
import torch
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
    ``like``'s device, of its dtype, strided, without a negative bit (its memory holds
    its values)."""
    return (
        type(t) in _PLAIN and t.dtype == like.dtype and t.device == like.device
        and t.layout is torch.strided and not t.is_neg()
    )  # fmt: skip


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
    if type(x_t) is not Tensor or x_t.layout is not torch.strided or x_t.is_neg():
        return False
    if not all(plain(m, x_t) for m in masks or () if m is not None):
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


@functools.cache
def _slot() -> dict[str, int]:
    """The step kernel's table columns by name (:data:`~lstmkit.backends.numba.step.SLOTS`)."""
    return {name: k for k, name in enumerate(_kernel()[1].SLOTS)}


def lean_step(
    lstm: LSTM, x_t: Tensor, hx: tuple[Tensor, Tensor] | None,
    masks: Sequence[Tensor] | None,
) -> tuple[Tensor, tuple[Tensor, Tensor]] | None:  # fmt: skip
    """``lstm.step(x_t, hx, recurrent_masks=masks)`` (``masks`` as checked: ``(B, P)``
    each) in one compiled call for every layer, or None when it cannot run here."""
    rows = (lstm.num_layers, x_t.shape[0]) if x_t.dim() == 2 else (lstm.num_layers,)
    widths = (lstm.proj_size or lstm.hidden_size, lstm.hidden_size)
    if not _usable(lstm, x_t, masks) or not _states(
        hx, x_t, (*rows, widths[0]), (*rows, widths[1])
    ):  # fmt: skip
        return None
    batched = x_t.dim() == 2
    x = (x_t if batched else x_t[None]).detach().contiguous()  # (B, I)
    L, B, dt = lstm.num_layers, x.shape[0], _NUMPY[x.dtype]
    P, H = widths
    h_, c_ = _state_arrays(hx, batched, (L, B, P), (L, B, H), dt)
    states = _run_layers(lstm, x, h_, c_, widths, masks)
    if states is None:
        return None
    h_n_, c_n_ = states
    y_ = h_n_[L - 1].copy()  # the output apart from the state
    if not batched:
        y_, h_n_, c_n_ = y_[0], h_n_[:, 0], c_n_[:, 0]
    return torch.from_numpy(y_), (torch.from_numpy(h_n_), torch.from_numpy(c_n_))


_NUMPY = {torch.float32: np.float32, torch.float64: np.float64}


def _state_arrays(
    hx: object, batched: bool, h_shape: tuple[int, ...], c_shape: tuple[int, ...], dt: type
) -> tuple[np.ndarray, np.ndarray]:
    """``hx`` (checked by :func:`_states`) as C-contiguous arrays of ``h_shape`` and
    ``c_shape`` (a batch axis added when not ``batched``), zeros for None."""
    if hx is None:
        return np.zeros(h_shape, dt), np.zeros(c_shape, dt)
    h, c = hx[0].detach().contiguous().numpy(), hx[1].detach().contiguous().numpy()
    return (h, c) if batched else (h[..., None, :], c[..., None, :])


def _run_layers(
    module: LSTM | LSTMCell, x: Tensor, h: np.ndarray, c: np.ndarray,
    widths: tuple[int, int], masks: Sequence[Tensor | None] | None,
    checked_mask: Callable[[], Tensor | None] | None = None,
) -> tuple[np.ndarray, np.ndarray] | None:  # fmt: skip
    """Every layer's step from ``x (B, I)`` (contiguous) and the states ``h (L, B, P)``,
    ``c (L, B, H)``: the new states as fresh arrays, or None (having drawn nothing)
    when the step kernel cannot run the module's options or weights (the general path
    then runs, and raises what it finds wrong). Zoneout's masks (its rates in eval) and
    inter-layer dropout's are drawn as the general path draws them, layer by layer;
    ``masks``: the recurrent-dropout masks, ``(B, P)`` each, as checked; or
    ``checked_mask()`` gives the one layer's (it raises the general path's error for a
    wrong one), called once the weights are known right, as the general path checks
    them first."""
    missing, kernel = _kernel()
    if missing and missing.intersection(module.options_used()):
        return None  # an option the step kernel does not implement
    weights = module.layer_weights()
    keep: list[Tensor] = []  # contiguous copies the table points into
    rows = _weight_rows(weights, x, widths, keep)
    if rows is None:
        return None
    if checked_mask is not None:
        mask = checked_mask()
        masks = None if mask is None else (mask,)
    settings = module.settings
    drawn = _draws(module, len(weights), x, widths, masks)
    if drawn is None:
        return None
    cell_drawn = {name: t for name, t in drawn[0].items() if name != "dropout"}
    config, _ = cell_inputs(weights[0], settings, cell_drawn)  # (checks layer 0's options)
    B, (P, H) = x.shape[0], widths
    for row, layer_drawn in zip(rows, drawn):
        for name, t in layer_drawn.items():
            shape = (B, H) if name == "zoneout_c" else (B, P)
            row[_slot()[name]] = _address(t, shape, x, keep)
    L = len(weights)
    h_n, c_n = np.empty((L, B, P), h.dtype), np.empty((L, B, H), h.dtype)
    table = np.array(rows, np.int64)
    kernel.run_step_layers(x.numpy(), h, c, table, h_n, c_n, config, x.dtype)
    return h_n, c_n


def _weight_rows(
    weights: Sequence[LayerWeights], x: Tensor, widths: tuple[int, int], keep: list[Tensor]
) -> list[list[int]] | None:
    """The rows of the step kernel's table (:data:`~lstmkit.backends.numba.step.SLOTS`)
    with every layer's weights in place (the drawn slots 0), or None where a weight is
    not a plain tensor like ``x`` (:func:`plain`) of the layer's shape, or the layers do
    not hold the same options in whole (the general path says what is wrong)."""
    P, H = widths
    G = 4 * H
    present = [t is not None for t in weights[0]]
    w_ih, w_hh, b_ih, b_hh, w_hr, ci, cf, co, ln_ih, ln_hh, ln_c, ln_b = present
    if not (w_ih and w_hh and w_hr == (P != H)):  # the kernel's shapes come from these
        return None
    if not (b_ih == b_hh and ci == cf == co and ln_ih == ln_hh == ln_c == ln_b):
        return None  # an option held in part
    upper = ((G, P), (G, P), (G,), (G,), (P, H), (H,), (H,), (H,), (G,), (G,), (H,), (H,))
    shapes = ((G, x.shape[1]), *upper[1:])
    drawn = [0] * (len(_slot()) - len(upper))
    rows = []
    for w in weights:
        row = []
        for t, shape, there in zip(w, shapes, present):
            if (t is not None) != there:
                return None
            address = 0 if t is None else _address(t, shape, x, keep)
            if there and address == 0:
                return None
            row.append(address)
        rows.append(row + drawn)
        shapes = upper
    return rows


def _address(t: Tensor, shape: tuple[int, ...], like: Tensor, keep: list[Tensor]) -> int:
    """The address of ``t``'s first element (a contiguous copy kept in ``keep`` where it
    is strided), or 0 unless it is :func:`plain` like ``like`` (a CPU tensor) and of
    ``shape``."""
    if not plain(t, like) or t.shape != shape:
        return 0
    if not t.is_contiguous():
        t = t.contiguous()
        keep.append(t)
    return t.data_ptr()


def _draws(
    module: LSTM | LSTMCell, layers: int, like: Tensor, widths: tuple[int, int],
    masks: Sequence[Tensor | None] | None,
) -> list[dict[str, Tensor]] | None:  # fmt: skip
    """Each layer's random tensors, in the general path's order: zoneout's keep masks
    ``(B, P)``, ``(B, H)`` (its rates in eval), then (below the top layer, in training)
    inter-layer dropout's scaled keep mask ``(B, P)``, as ``F.dropout`` draws it; and
    the layer's recurrent-dropout mask from ``masks``. None (drawing nothing) for a
    dropout probability outside [0, 1]."""
    B, L = like.shape[0], layers
    try:
        p = float(module.dropout) if L > 1 and module.training else 0.0  # (a cell: one layer)
    except (TypeError, ValueError):
        return None  # (the general path says what is wrong)
    if not 0.0 <= p <= 1.0:
        return None
    zoned = _zoned(module.settings)
    if not zoned and masks is None and p == 0:
        return [{}] * L  # (never written to)
    out = []
    for layer in range(L):
        drawn: dict[str, Tensor] = {}
        if zoned:  # (1, B, *): this step's
            keep = draw(like, 1, B, widths, dict(module.settings), module.training,
                        skip=("recurrent_dropout",))  # fmt: skip
            drawn = {name: t[0] for name, t in keep.items()}
        if masks is not None and masks[layer] is not None:
            drawn["recurrent_mask"] = masks[layer]
        if p > 0 and layer < L - 1:
            drawn["dropout"] = _dropout_mask(like, (B, widths[0]), p)
        out.append(drawn)
    return out


@functools.lru_cache(maxsize=64)
def _zoned(settings: tuple[tuple[str, object], ...]) -> bool:
    """Whether call settings (hashable, :func:`lstmkit.option_calls.call_settings`) have
    zoneout on."""
    return dict(settings)["zoneout"] != (0.0, 0.0)


def _dropout_mask(like: Tensor, shape: tuple[int, int], p: float) -> Tensor:
    """What ``F.dropout(h, p, training=True)`` multiplies a CPU tensor ``h`` of ``shape``
    by, drawn as it draws it: Bernoulli(1 - p) divided by 1 - p (zeros, with no draw,
    for p = 1)."""
    if p == 1:
        return like.new_zeros(shape)
    return like.new_empty(shape).bernoulli_(1 - p).div_(1 - p)


def lean_cell(
    cell: LSTMCell, input: Tensor, hx: object, mask: Tensor | None
) -> tuple[Tensor, Tensor] | None:
    """``cell(input, hx, recurrent_mask=mask)`` in one compiled call (the step kernel on
    the cell's one layer), or None when it cannot run here: the conditions of
    :func:`lean_step`, with ``hx`` a pair ``(B, H)`` (``(H,)`` unbatched) or None. The
    mask is checked by the cell (its errors), once the input and the weights are known
    to be right (the general path's order)."""
    if not _usable(cell, input, (mask,)) or input.dim() not in (1, 2):
        return None
    batched, H = input.dim() == 2, cell.hidden_size
    shape = (input.shape[0], H) if batched else (H,)
    if not _states(hx, input, shape, shape):
        return None
    x = (input if batched else input[None]).detach().contiguous()  # (B, I)
    h_, c_ = _state_arrays(hx, batched, (x.shape[0], H), (x.shape[0], H), _NUMPY[x.dtype])
    states = _run_layers(cell, x, h_[None], c_[None], (H, H), None,
                         lambda: cell._check_mask(mask, x.shape[0], batched))  # fmt: skip
    if states is None:
        return None
    h_out, c_out = states[0][0], states[1][0]
    if not batched:
        h_out, c_out = h_out[0], c_out[0]
    return torch.from_numpy(h_out), torch.from_numpy(c_out)
