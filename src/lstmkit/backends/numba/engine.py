"""The ``compiled`` engine: the hand-written BPTT of :mod:`..bptt`, its loops in numba.

One engine for every batch size: each of the two time loops of a layer-direction is one
compiled call (:mod:`.loops`), the per-step matrix products included (through
:mod:`.blas`: MKL's packed GEMM from torch's own library where it exports it, else a
compiled loop), so nothing runs in Python or torch per step. Weights are prepared (packed
or transposed) once per call, for all its steps and threads.

The cell options go to the kernels as arrays (all empty when off): the peepholes
``(3, H)``, the two clip limits and buffers where the clips record what they clamped,
the recurrent-dropout mask, the activation codes, the layer-norm gains with buffers for
the normalised values, zoneout's keep weights. float32 uses the vectorised rational
``tanh`` of :mod:`.numerics` (max error 5.1e-7); float64 uses libm. CPU only;
``unsupported`` says why a call cannot run here.
"""

from __future__ import annotations

import functools
import itertools
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, NamedTuple

import numpy as np
import torch
from torch import Tensor

from ...options import NO_TENSORS, PLAIN, CellConfig
from .. import bptt
from ..buffers import Buffers, Grads, Walk
from ..contract import valid_mask

if TYPE_CHECKING:
    from ...functional import LayerWeights

try:
    from . import blas, layer, loops, numerics, routes, team, units
except ImportError:  # numba is a dependency, but a broken install must not break lstmkit
    AVAILABLE = False
else:
    AVAILABLE = True  # numba imports, so the engine can run

#: Why the engine is missing when numba cannot be imported, and the fix.
NO_NUMBA = (
    "numba cannot be imported (it is a dependency of lstmkit: pip install 'numba>=0.59'); "
    "without it backend='auto' runs 'fused', 5-20x slower than nn.LSTM at small batches"
)


def route(dtype: torch.dtype = torch.float32) -> str:
    """How the engine's per-step products run for ``dtype`` (see :mod:`.blas`):
    ``"mkl-packed"``, ``"loops"``, or ``"unavailable"`` without numba."""
    return blas.route(dtype) if AVAILABLE else "unavailable"


def threads_route() -> str:
    """What runs a call's row ranges at once (:mod:`.team`): ``"openmp"`` (torch's own
    OpenMP team), ``"threads"`` (Python threads), or ``"unavailable"`` without numba."""
    return team.route() if AVAILABLE else "unavailable"


_NUMPY = {torch.float32: np.float32, torch.float64: np.float64}
_ARRAY_DTYPES = {**_NUMPY, torch.bool: np.bool_}  # the kernels' arrays: also clip masks
_NO_VALID = np.empty((0, 0), np.bool_)


def unsupported(xg: Tensor) -> str | None:
    """Why the compiled backend cannot run on ``xg``, or None if it can."""
    if not AVAILABLE:
        return NO_NUMBA
    if xg.device.type != "cpu":
        return f"it runs on the CPU only, got a tensor on {xg.device}"
    if xg.dtype not in _NUMPY:
        return f"it supports float32 and float64, got {xg.dtype}"
    return None


def _np(t: Tensor | None, dtype: torch.dtype, rank: int = 2) -> np.ndarray:
    """The tensor's memory as an array; ``None`` becomes an empty array of that rank
    (the kernels' "absent" marker: no projection, no lengths, no option). A buffer reused
    at every step (stride-0 time axis, inference) becomes its one step: the loops then
    write every step into it."""
    if t is None:
        return absent(dtype, rank)
    if t.dim() == 3 and t.stride(0) == 0 and t.shape[0] > 1:
        t = t[:1]
    return t.detach().numpy()


@functools.cache
def absent(dtype: torch.dtype, rank: int) -> np.ndarray:
    """The shared empty array of a dtype and rank (it has no element to write)."""
    return np.empty((0,) * rank, _ARRAY_DTYPES[dtype])


def option_arrays(
    cfg: CellConfig, ten: Mapping[str, Tensor], dtype: torch.dtype
) -> tuple[np.ndarray, ...]:
    """The kernels' option arrays: peepholes ``(3, H)`` (or empty), the two clips, and
    the activation codes."""
    peep = absent(dtype, 2)
    if cfg.peephole:
        names = ("weight_ci", "weight_cf", "weight_co")
        peep = torch.stack([ten[n].detach() for n in names]).numpy()
    return (peep, *statics(cfg, dtype))


#: The clip limits and activation codes of each configuration and dtype, as arrays.
_STATICS: dict[tuple[CellConfig, torch.dtype], tuple[np.ndarray, np.ndarray]] = {}


def statics(cfg: CellConfig, dtype: torch.dtype) -> tuple[np.ndarray, np.ndarray]:
    """The clip limits (inf: off) and the activation codes of ``cfg`` as the kernels' arrays."""
    found = _STATICS.get((cfg, dtype))
    if found is None:
        limits = [np.inf if v is None else v for v in (cfg.gate_clip, cfg.cell_clip)]
        kinds = [numerics.GATE_KINDS[cfg.recurrent_activation], numerics.CELL_KINDS[cfg.activation]]
        found = _STATICS[cfg, dtype] = (np.array(limits, _NUMPY[dtype]), np.array(kinds))
    return found


class Arrays(NamedTuple):
    """The forward loop's output arrays (numpy views of :class:`..buffers.Buffers`, or
    fresh arrays when no backward follows); an empty array where an option is off."""

    acts: np.ndarray  # (T or 1, B, 4H)
    cs: np.ndarray  # (T + 1, B, H)
    hs: np.ndarray  # (T + 1, B, P)
    tanh_cs: np.ndarray  # (T or 1, B, H)
    ms: np.ndarray  # (T or 1, B, H) with a projection
    gate_clipped: np.ndarray  # (T or 1, B, 4H) bool
    cell_clipped: np.ndarray  # (T or 1, B, H) bool
    norm: tuple[np.ndarray, ...]  # rec_hat (.., 4H), rec_rstd (.., 1), c_hat (.., H), c_rstd
    c_new: np.ndarray  # (T or 1, B, H) with zoneout


def _norm(
    cfg: CellConfig, ten: Mapping[str, Tensor], bufs: tuple[np.ndarray, ...], dtype: torch.dtype
) -> tuple[np.ndarray, ...]:
    """Layer normalisation for the kernels: the gains and bias, then the buffers of the
    normalised values and 1/std (all empty when off)."""
    if not cfg.layer_norm:
        return (absent(dtype, 1),) * 3 + (absent(dtype, 3),) * 4
    gains = [ten[n].detach().numpy() for n in ("ln_weight_hh", "ln_weight_c", "ln_bias_c")]
    return (*gains, *bufs)


def _zoneout(
    cfg: CellConfig, ten: Mapping[str, Tensor], c_new: np.ndarray, dtype: torch.dtype
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Zoneout for the sequence kernels: keep weights (T, B, P), (T, B, H) and the c_new
    buffer (empty when off). Weights that are the same at every step (eval's rates,
    expanded over time) go as their one step, not copied T times."""
    if not cfg.zoneout:
        return (absent(dtype, 3),) * 3
    h, c = ten["zoneout_h"], ten["zoneout_c"]
    if h.stride(0) == 0 and c.stride(0) == 0:
        h, c = h[:1], c[:1]
    return (_np(h.contiguous(), dtype, 3), _np(c.contiguous(), dtype, 3), c_new)


def _views(buf: Buffers, dtype: torch.dtype) -> Arrays:
    """The buffers of ``buf`` as the loops' arrays."""
    return Arrays(
        *(_np(x, dtype, 3) for x in (buf.acts, buf.cs, buf.hs, buf.tanh_cs, buf.ms)),
        *(_np(m, torch.bool, 3) for m in (buf.gate_clipped, buf.cell_clipped)),
        tuple(_np(x, dtype, 3) for x in (buf.rec_hat, buf.rec_rstd, buf.c_hat, buf.c_rstd)),
        _np(buf.c_new, dtype, 3),
    )


def _loop_args(
    walk: Walk, cfg: CellConfig, ten: Mapping[str, Tensor], out: Arrays, dtype: torch.dtype
) -> tuple:
    """:func:`.loops.forward`'s arguments after ``xg`` and before the weights."""
    peep, clips, kinds = option_arrays(cfg, ten, dtype)
    return (
        _valid(walk.valid), walk.reverse, out.acts, out.cs, out.hs, out.tanh_cs, out.ms, peep,
        clips, out.gate_clipped, out.cell_clipped, _np(ten.get("recurrent_mask"), dtype),
        kinds, _norm(cfg, ten, out.norm, dtype), _zoneout(cfg, ten, out.c_new, dtype),
    )  # fmt: skip


def _run_forward(
    xg: Tensor, walk: Walk, cfg: CellConfig, ten: Mapping[str, Tensor], out: Arrays,
    fewest: int = 0,
) -> None:  # fmt: skip
    """The forward time loop (:func:`.loops.forward`) over all rows into ``out``
    (``fewest``: as :func:`row_ranges`)."""
    weights = _weights(walk.w_hh, walk.w_hr, True, xg.dtype, xg.shape[0])
    _on_rows(
        loops.forward, xg.shape[1], weights, _np(xg.contiguous(), xg.dtype),
        *_loop_args(walk, cfg, ten, out, xg.dtype), fewest=fewest,
    )  # fmt: skip


def _scratch(
    T: int, B: int, G: int, h0: Tensor | None, c0: Tensor | None, walk: Walk, cfg: CellConfig,
    dtype: torch.dtype,
) -> Arrays:  # fmt: skip
    """Fresh arrays for a forward loop with no backward to follow: the state slots
    (h0, c0 in the first one walked; zeros for None), one step of scratch for the rest."""
    H, P, dt = G // 4, walk.w_hh.shape[1], _NUMPY[dtype]
    hs, cs = np.empty((T + 1, B, P), dt), np.empty((T + 1, B, H), dt)
    first = T if walk.reverse else 0
    hs[first] = 0.0 if h0 is None else h0.detach().numpy()
    cs[first] = 0.0 if c0 is None else c0.detach().numpy()
    acts, tanh_cs = np.empty((1, B, G), dt), np.empty((1, B, H), dt)
    if walk.w_hr is None and not _SCRATCH_OPTIONS.intersection(cfg.used()):
        return Arrays(acts, cs, hs, tanh_cs, *_no_scratch(dtype))

    def step(width: int, on: bool = True, kind: torch.dtype = dtype) -> np.ndarray:
        return np.empty((1, B, width), _ARRAY_DTYPES[kind]) if on else absent(kind, 3)

    norm = cfg.layer_norm
    return Arrays(
        acts, cs, hs, tanh_cs, step(H, walk.w_hr is not None),
        step(G, cfg.gate_clip is not None, torch.bool),
        step(H, cfg.cell_clip is not None, torch.bool),
        (step(G, norm), step(1, norm), step(H, norm), step(1, norm)), step(H, cfg.zoneout),
    )  # fmt: skip


#: The options that need scratch arrays of their own in a forward loop (a projection too).
_SCRATCH_OPTIONS = frozenset({"gate_clip", "cell_clip", "layer_norm", "zoneout"})


@functools.cache
def _no_scratch(dtype: torch.dtype) -> tuple:
    """:class:`Arrays`' fields after ``tanh_cs`` when no option needs scratch (all empty)."""
    e3, mask = absent(dtype, 3), absent(torch.bool, 3)
    return (e3, mask, mask, (e3,) * 4, e3)


def _results(out: Arrays, walk: Walk) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """:func:`..bptt.results` of the state slots, sliced as arrays when every sequence
    runs all steps (a tensor's slicing and ``clone`` cost microseconds each)."""
    hs, cs = out.hs, out.cs
    if walk.valid is not None:
        return bptt.results(torch.from_numpy(hs), torch.from_numpy(cs), walk.valid, walk.reverse)
    last = 0 if walk.reverse else hs.shape[0] - 1
    steps = slice(0, -1) if walk.reverse else slice(1, None)
    return (
        torch.from_numpy(hs[steps]), torch.from_numpy(hs[last].copy()),
        torch.from_numpy(cs[last].copy()), torch.from_numpy(cs[steps]),
    )  # fmt: skip


class NumbaEngine:
    """The two time loops of :class:`..bptt.Recurrence`, each one compiled call
    (:mod:`.loops`) with the weights prepared once per call (:func:`.blas.prepared`);
    :meth:`infer` for calls without autograd."""

    def forward(self, xg: Tensor, walk: Walk, buf: Buffers) -> None:
        fewest = _training_rows_per_thread(xg.shape[1], walk, xg.dtype)
        _run_forward(xg, walk, buf.config, buf.tensors, _views(buf, xg.dtype), fewest)

    def infer(
        self, xg: Tensor, h0: Tensor | None, c0: Tensor | None, walk: Walk,
        cfg: CellConfig, ten: Mapping[str, Tensor],
    ) -> tuple[Tensor, Tensor, Tensor, Tensor]:  # fmt: skip
        """``(ys, h_n, c_n, cs)`` of the forward loop with nothing kept for a backward:
        the state slots and one step of scratch as fresh arrays (no torch buffers, no
        autograd), the results as tensors over them."""
        out = _scratch(*xg.shape, h0, c0, walk, cfg, xg.dtype)
        _run_forward(xg, walk, cfg, ten, out)
        return _results(out, walk)

    def infer_layer(
        self, x: Tensor, w: LayerWeights, h0: Tensor | None, c0: Tensor | None, walk: Walk,
        cfg: CellConfig, ten: Mapping[str, Tensor],
    ) -> tuple[Tensor, Tensor, Tensor, Tensor]:  # fmt: skip
        """:meth:`infer` from the layer's input ``x (T, B, I)`` (float32), the input
        projection inside the compiled call (:func:`.layer.layer_forward`) on the loop's
        own threads. When one thread runs the whole loop and torch's GEMM on every
        thread makes the projection faster (:func:`.blas.project_in_loop`, measured per
        shape), torch makes it first; or, where :func:`.layer.pipelined` allows it (a
        second thread, T >= 32, a projection no larger than the loop's products) and
        :func:`_ahead_wins` times it faster, the projection runs on the second thread a
        block of steps ahead of the loop. Where one thread would run every row and the
        options allow it (:func:`.units.supports`), the layer may instead be split by
        hidden units across torch's threads (:func:`_by_units`), when
        :func:`_units_win` times that faster at this length. Which of these ways runs is
        decided once per shape (:func:`_plan`), and where one thread runs the layer with
        its projection inside, so are the products' routes."""
        T, B, I = x.shape
        G, P = w.weight_hh.shape
        splits = units.supports(cfg.layer_norm, w.weight_hr is not None)
        key = (T, B, I, G, P, splits, torch.get_num_threads())
        plan = _layer_plans.get(key)
        if plan is None:
            if len(_layer_plans) >= MAX_PLANS:  # (lengths and batch sizes that keep changing)
                _layer_plans.clear()
            plan = _layer_plans[key] = _plan(*key)
        if plan.routes is not None:
            return _one_thread(x, w, h0, c0, walk, cfg, ten, plan.routes)
        if plan.by_units:
            return _by_units(x, w, h0, c0, walk, cfg, ten, key[-1])
        return self._infer_layer(x, w, h0, c0, walk, cfg, ten, plan.alone, plan.ahead)

    def _infer_layer(
        self, x: Tensor, w: LayerWeights, h0: Tensor | None, c0: Tensor | None, walk: Walk,
        cfg: CellConfig, ten: Mapping[str, Tensor], alone: bool, ahead: bool,
    ) -> tuple[Tensor, Tensor, Tensor, Tensor]:  # fmt: skip
        """:meth:`infer_layer` with its choices made: ``alone`` (one row range),
        ``ahead`` (the projection pipelined on a second thread)."""
        T, B, I = x.shape
        G, P = w.weight_hh.shape
        if alone and not ahead:
            if blas.project_in_loop(T * B, I, G):
                return _one_thread(x, w, h0, c0, walk, cfg, ten, _one_thread_ways(T, B, I, G, P))
            from ...functional import input_projection  # (functional imports the backends)

            return self.infer(input_projection(x, w), h0, c0, walk, cfg, ten)
        out = _scratch(T, B, G, h0, c0, walk, cfg, x.dtype)
        xg = np.empty((T, B, G), np.float32)
        recurrent = _weights(walk.w_hh, walk.w_hr, True, x.dtype, T)

        @_per_call  # row ranges of one size share the weights prepared for them
        def weights(m: int, alone: bool) -> tuple:
            way = _projection_route(T, B, I, G, m, alone)
            rows = T * m if m == B else m
            return (blas.prepared(w.weight_ih, True, rows, way), way, *recurrent(m, alone))

        inputs = (_np(x.contiguous(), x.dtype), *biases(w, x.dtype),
                  _np(w.ln_weight_ih, x.dtype, 1), xg)  # fmt: skip
        loop_args = _loop_args(walk, cfg, ten, out, x.dtype)
        if ahead:
            _pipeline(inputs, loop_args, weights(B, True), walk.reverse)
        else:
            _on_rows(layer.layer_forward, B, weights, *inputs, *loop_args)
        return _results(out, walk)

    def backward(
        self, dys: Tensor, dcs: Tensor | None, dh: Tensor, dc: Tensor, walk: Walk, buf: Buffers,
        grads: Grads,
    ) -> tuple[Tensor, Tensor]:  # fmt: skip
        w_hh, w_hr, valid, reverse = walk
        dtype, B = grads.dgates.dtype, grads.dgates.shape[1]
        cfg, ten, v = buf.config, buf.tensors, _views(buf, dtype)
        peep, _, kinds = option_arrays(cfg, ten, dtype)
        _on_rows(
            loops.backward, B, _weights(w_hh, w_hr, False, dtype, dys.shape[0]),
            _np(dys, dtype),
            _np(dcs, dtype, 3), _np(dh, dtype), _np(dc, dtype), _valid(valid), reverse,
            v.acts, v.cs, v.tanh_cs, *(_np(x, dtype, 3) for x in (grads.dgates, grads.dhs)),
            peep, v.gate_clipped, v.cell_clipped, _np(ten.get("recurrent_mask"), dtype), kinds,
            _norm(cfg, ten, v.norm, dtype), _zoneout(cfg, ten, v.c_new, dtype),
            *(_np(x, dtype, 3) for x in (grads.drec, grads.dnorm_c)),
            fewest=_training_rows_per_thread(B, walk, dtype),
        )  # fmt: skip
        return dh, dc


class LayerPlan(NamedTuple):
    """How :meth:`NumbaEngine.infer_layer` runs layers of one shape (:func:`_plan`)."""

    routes: tuple[int, int] | None  # one thread, projection inside: W_ih's and W_hh's routes
    by_units: bool  # split by hidden units across the threads (:func:`_by_units`)
    alone: bool  # else: one row range (:meth:`NumbaEngine._infer_layer`)
    ahead: bool  # the projection pipelined on a second thread


#: Per (T, B, I, 4H, P, whether the options allow the units split, torch's threads): the
#: plan of :meth:`NumbaEngine.infer_layer`. Each of its choices is timed once per shape
#: and remembered where it is made; keeping their outcome here spares a call making them
#: again: all of them where one thread runs the layer with its projection inside (the
#: products' routes too: ~15 us of Python a layer-direction on a Zen 4 core, at S1 a
#: sixth of the call), the way it runs otherwise.
_layer_plans: dict[tuple[int, int, int, int, int, bool, int], LayerPlan] = {}

#: The most plans kept at once: a process that meets more shapes starts over (each plan
#: is remade from the times kept where its choices are made, a few microseconds).
MAX_PLANS = 4096


def _plan(T: int, B: int, I: int, G: int, P: int, splits: bool, threads: int) -> LayerPlan:
    """:meth:`NumbaEngine.infer_layer`'s choices for a shape (``splits``: the options
    allow the units split)."""
    alone = len(row_ranges(B)) == 1
    ahead = layer.pipelined(T, alone, I, P, threads) and _ahead_wins(T, B, I, G, P)
    if alone and threads >= 2 and splits and _units_win(T, B, I, G, ahead):
        return LayerPlan(None, True, alone, ahead)
    ways = None
    if alone and not ahead and blas.project_in_loop(T * B, I, G):
        ways = _one_thread_ways(T, B, I, G, P)
    return LayerPlan(ways, False, alone, ahead)


def _one_thread_ways(T: int, B: int, I: int, G: int, P: int) -> tuple[int, int]:
    """The routes of :func:`_one_thread`'s products: the projection's (one product over
    every step's rows) and the loop's (``T`` products of ``B`` rows)."""
    return _projection_route(T, B, I, G, B, False), routes.forward_route(B, P, G, False, T)


def _projection_route(T: int, B: int, I: int, G: int, m: int, alone: bool) -> int:
    """The route of a float32 layer's input projection inside the compiled call, for a
    range of ``m`` of its ``B`` rows (one product over all steps for all rows, else one
    per step): panels or dot-product blocks, whichever :func:`.blas.choose` times faster
    (dot-product blocks where MKL is forced: the projection has no MKL route)."""
    rows, steps = (T * m, 1) if m == B else (m, T)
    way = blas.choose(torch.float32, rows, I, G, alone, steps, among=(blas.PANELS, blas.DOTS))
    return way if way == blas.PANELS else blas.DOTS


def _one_thread(
    x: Tensor, w: LayerWeights, h0: Tensor | None, c0: Tensor | None, walk: Walk,
    cfg: CellConfig, ten: Mapping[str, Tensor], ways: tuple[int, int],
) -> tuple[Tensor, Tensor, Tensor, Tensor]:  # fmt: skip
    """A float32 layer-direction on one thread, its projection inside the compiled call
    (:func:`.layer.layer_forward`), the products on the routes ``ways`` (``W_ih``'s,
    ``W_hh``'s): the whole call for short or narrow layers, so it makes no choice and
    builds nothing it does not pass."""
    T, B, _ = x.shape
    way_ih, way = ways
    G, dt = walk.w_hh.shape[0], x.dtype
    out = _scratch(T, B, G, h0, c0, walk, cfg, x.dtype)
    hr = absent(dt, 2) if walk.w_hr is None else blas.prepared(walk.w_hr, True, B, way)
    layer.layer_forward(
        _np(x.contiguous(), dt), *biases(w, dt), _np(w.ln_weight_ih, dt, 1),
        np.empty((T, B, G), np.float32), *_loop_args(walk, cfg, ten, out, dt),
        blas.prepared(w.weight_ih, True, T * B, way_ih), way_ih,
        blas.prepared(walk.w_hh, True, B, way), hr, way, 0, B,
    )  # fmt: skip
    return _results(out, walk)


def biases(w: LayerWeights, dtype: torch.dtype) -> tuple[np.ndarray, np.ndarray]:
    """``(b_ih, b_hh)`` as arrays, or two empty ones when the layer has none."""
    if w.bias_ih is None or w.bias_hh is None:
        return absent(dtype, 1), absent(dtype, 1)
    return w.bias_ih.detach().numpy(), w.bias_hh.detach().numpy()


#: Fewest rows a thread is given by default: below it the per-call hand-off (~30 us)
#: and the small products' poor efficiency often outweigh a second core (training splits
#: smaller batches where that is timed faster: :func:`_training_rows_per_thread`).
MIN_ROWS_PER_THREAD = 8


def row_ranges(rows: int, fewest: int = 0) -> list[tuple[int, int]]:
    """How a call's rows are split across threads: ``torch.get_num_threads()`` parts at
    most, none under ``fewest`` rows (default :data:`MIN_ROWS_PER_THREAD`: one part for
    small batches)."""
    fewest = fewest or MIN_ROWS_PER_THREAD
    parts = max(1, min(torch.get_num_threads(), rows // fewest))
    bounds = [rows * k // parts for k in range(parts + 1)]
    return list(itertools.pairwise(bounds))


def _on_rows(
    kernel: Callable[..., None],
    rows: int,
    weights: Callable[[int, bool], tuple],
    *args: object,
    fewest: int = 0,
) -> None:
    """Run a time loop over all ``rows``: rows are independent sequences, so each thread
    runs the whole loop on its own row range (onnxruntime's scheme: no barrier per step),
    on torch's own OpenMP threads (:mod:`.team`), its products single-threaded.
    ``weights(m, alone)`` gives the prepared weights and their route for ranges of ``m``
    rows (``alone``: each on its own thread); ``fewest``: as :func:`row_ranges`."""
    ranges = row_ranges(rows, fewest)
    if len(ranges) == 1:
        kernel(*args, *weights(rows, False), 0, rows)
        return
    calls = [(*args, *weights(hi - lo, True), lo, hi) for lo, hi in ranges]
    team.run_all([functools.partial(kernel, *call) for call in calls])


def _training_rows_per_thread(B: int, walk: Walk, dtype: torch.dtype) -> int:
    """Fewest rows a thread is given in the training loops (forward and backward) of a
    float32 batch too small to split by :data:`MIN_ROWS_PER_THREAD`: one, where
    :func:`_split_wins` timed a split faster for the shape (measured on Zen 4, training
    at T = 100, B = 8, I = H = 256: 20.5 ms split in 4 + 4 rows against 25.2 on one
    thread); else the default (0)."""
    if dtype != torch.float32 or not 2 <= B < 2 * MIN_ROWS_PER_THREAD:
        return 0
    if torch.get_num_threads() < 2:
        return 0
    G, P = walk.w_hh.shape
    return 1 if _split_wins(B, G, P) else 0


#: Per (B, 4H, P, torch's threads): whether the forward loop ran faster with the rows
#: split across threads, one or more a thread.
_split_measured: dict[tuple[int, int, int, int], bool] = {}

#: Steps :func:`_split_wins` times the loop for.
SPLIT_MEASURED_STEPS = 16


def _split_wins(B: int, G: int, P: int) -> bool:
    """Whether the forward loop over ``B`` rows (fewer than ``2 *``
    :data:`MIN_ROWS_PER_THREAD`) runs faster split across torch's threads than on one,
    timed once per shape for :data:`SPLIT_MEASURED_STEPS` steps of the plain cell on
    random data (the projection too when ``P < H``) and kept: a split's hand-off costs a
    fixed time, and a thread's share of small products runs less efficiently, by amounts
    that depend on the CPU."""
    key = (B, G, P, torch.get_num_threads())
    found = _split_measured.get(key)
    if found is None:
        found = _split_measured[key] = _measure_split(B, G, P)
    return found


def _random(g: torch.Generator, *shape: int) -> Tensor:
    """Random data for a measurement, scaled by its last size (weights keep the gates
    out of saturation), from ``g`` (never the global generator: seeded runs repeat)."""
    return torch.randn(*shape, generator=g) / shape[-1] ** 0.5


def _measure_split(B: int, G: int, P: int) -> bool:
    g = torch.Generator().manual_seed(0)
    H, T = G // 4, SPLIT_MEASURED_STEPS
    w_hr = _random(g, P, H) if P < H else None
    walk = Walk(_random(g, G, P), w_hr, None, False)
    xg, h0, c0 = _random(g, T, B, G), _random(g, B, P), _random(g, B, H)

    def run(fewest: int) -> None:
        out = _scratch(T, B, G, h0, c0, walk, PLAIN, xg.dtype)
        _run_forward(xg, walk, PLAIN, NO_TENSORS, out, fewest)

    return blas.fastest(lambda: run(1)) < blas.fastest(lambda: run(0))


#: The most steps :func:`_ahead_wins` times a layer at (the pipeline's gain grows with T).
AHEAD_MEASURED_STEPS = 128

#: Per (steps measured, B, I, 4H, P, torch's threads): whether the pipelined layer was
#: the faster one.
_ahead_measured: dict[tuple[int, int, int, int, int, int], bool] = {}


def _ahead_wins(T: int, B: int, I: int, G: int, P: int) -> bool:
    """Whether projecting on a second thread ahead of the loop (:func:`_pipeline`) beats
    the single-threaded layer for this shape. Starting the second thread and waiting for
    the first block cost a fixed time (~0.1-0.2 ms measured on Zen 4), which a short or
    narrow layer does not repay, and its size differs by CPU: so both are timed once
    per shape on random data (plain cell, at ``T`` rounded down to a power of two, at
    most :data:`AHEAD_MEASURED_STEPS` steps: if the pipeline wins there, it wins on
    longer sequences) and the answer kept."""
    steps = min(AHEAD_MEASURED_STEPS, 1 << (T.bit_length() - 1))  # 32, 64 or 128
    key = (steps, B, I, G, P, torch.get_num_threads())
    found = _ahead_measured.get(key)
    if found is None:
        found = _ahead_measured[key] = _measure_ahead(steps, B, I, G, P)
    return found


def _random_layer(
    T: int, B: int, I: int, G: int, P: int
) -> tuple[Tensor, LayerWeights, Tensor, Tensor, Walk]:
    """A random layer (biased; projected when ``P < H``) and its input and states, for
    a measurement (:func:`_random`)."""
    from ...functional import LayerWeights  # (functional imports the backends)

    g = torch.Generator().manual_seed(0)
    H = G // 4
    w = LayerWeights(
        *(_random(g, *shape) for shape in ((G, I), (G, P), (G,), (G,))),
        _random(g, P, H) if P < H else None,
    )  # fmt: skip
    x, h0, c0 = _random(g, T, B, I), _random(g, B, P), _random(g, B, H)
    return x, w, h0, c0, Walk(w.weight_hh, w.weight_hr, None, False)


def _measure_ahead(T: int, B: int, I: int, G: int, P: int) -> bool:
    x, w, h0, c0, walk = _random_layer(T, B, I, G, P)
    run = functools.partial(_ENGINE._infer_layer, x, w, h0, c0, walk, PLAIN, NO_TENSORS, True)
    return blas.fastest(lambda: run(True)) < blas.fastest(lambda: run(False))


def _pipeline(inputs: tuple, loop_args: tuple, weights: tuple, reverse: bool) -> None:
    """Every row of a layer on two threads at once: :func:`.layer.project_ahead` into
    ``xg`` (the last of ``inputs``), a block of steps ahead of :func:`.layer.forward_behind`
    over ``xg`` (:data:`.layer.PIPELINE_BLOCKS` blocks). The projection is the first
    call: a team of one thread runs it before the loop, and it never waits, so the
    loop's waits always end. If it fails (an exception out of the compiled call), it
    marks every block done before raising, so that the loop ends too (its results are
    then discarded with the error)."""
    w_ih, way_ih, w_hh, w_hr, way = weights
    T, xg = inputs[0].shape[0], inputs[-1]
    if loop_args[2].shape[0] != 1:  # acts: the loop reuses one step of every buffer
        raise RuntimeError("the pipelined layer keeps nothing for a backward")
    per = -(-T // layer.PIPELINE_BLOCKS)
    progress = np.zeros(1, np.int64)

    def project() -> None:
        try:
            layer.project_ahead(*inputs, w_ih, way_ih, reverse, per, progress)
        except BaseException:
            progress[0] = T  # every block "done": the loop must not wait forever
            raise

    def loop() -> None:
        layer.forward_behind(xg, *loop_args, w_hh, w_hr, way, per, progress)

    team.run_all([project, loop])


def _by_units(
    x: Tensor, w: LayerWeights, h0: Tensor | None, c0: Tensor | None, walk: Walk,
    cfg: CellConfig, ten: Mapping[str, Tensor], threads: int,
) -> tuple[Tensor, Tensor, Tensor, Tensor]:  # fmt: skip
    """:meth:`NumbaEngine.infer_layer` split by hidden units across a team of
    ``threads`` (:func:`.units.forward_units`, run by :func:`_shared`: a thread that
    fails releases the others' waits before the error is raised)."""
    T, B, _ = x.shape
    out = _scratch(T, B, w.weight_hh.shape[0], h0, c0, walk, cfg, x.dtype)
    dt = x.dtype
    b_ih, b_hh = biases(w, dt)
    peep, clips, kinds = option_arrays(cfg, ten, dt)
    keep_h, keep_c, _ = _zoneout(cfg, ten, out.c_new, dt)
    args = (
        _np(x.contiguous(), dt, 3), _np(w.weight_ih.contiguous(), dt),
        _np(w.weight_hh.contiguous(), dt), b_ih, b_hh, _valid(walk.valid), walk.reverse,
        out.cs, out.hs, peep, clips, kinds, _np(ten.get("recurrent_mask"), dt), keep_h,
        keep_c,
    )  # fmt: skip
    _shared(units.forward_units, args, T, threads)
    return _results(out, walk)


def _shared(kernel: Callable[..., None], args: tuple, T: int, threads: int) -> None:
    """``kernel(*args, progress, part, parts)`` on each thread of a team of ``threads``
    (:func:`.team.run_shared`), ``progress`` their fresh step counters. When a part
    fails, every counter is set to all ``T`` steps done before the error is raised, so
    that no part waits forever (their results are then discarded with the error)."""
    progress = np.zeros((threads, units.COUNTER_STRIDE), np.int64)

    def part(k: int, parts: int) -> None:
        kernel(*args, progress, k, parts)

    def abort() -> None:
        progress[:, 0] = T

    team.run_shared(part, threads, abort)


#: The two lengths :func:`_units_win` times both ways at, to fit each a fixed cost and
#: a cost per step.
UNITS_MEASURED_STEPS = (32, 256)

#: Per (B, I, 4H, pipelined, torch's threads): the layer's fixed time and time per step
#: split by units, then as :meth:`NumbaEngine._infer_layer` runs it (seconds).
_units_measured: dict[tuple[int, int, int, bool, int], tuple[float, float, float, float]] = {}


def _units_win(T: int, B: int, I: int, G: int, ahead: bool) -> bool:
    """Whether the layer split by hidden units (:func:`_by_units`) beats the layer on
    one thread (pipelined when ``ahead``) at ``T`` steps. Its gain per step (a thread's
    share of ``W_hh`` in its core's cache, half the cell) and its fixed costs (starting
    the threads, gathering each one's weights) differ by CPU and shape: both ways are
    timed once per shape at the two lengths of :data:`UNITS_MEASURED_STEPS` (plain
    cell, random data), a line fitted through each, and compared at ``T`` (on Zen 4, at
    B = 1, I = H = 64: 0.36 against 0.32 ms at 128 steps, 1.14 against 1.37 at 1000).
    Never below the shorter length: there the lines would be extrapolated, from
    measurements whose noise is the size of the gain, where the split's fixed costs
    weigh most (nothing is timed for such a call)."""
    shortest = UNITS_MEASURED_STEPS[0]
    if shortest > T:
        return False
    key = (B, I, G, ahead, torch.get_num_threads())
    found = _units_measured.get(key)
    if found is None:
        found = _units_measured[key] = _measure_units(B, I, G, ahead)
    fixed_u, step_u, fixed_o, step_o = found
    return fixed_u + T * step_u < fixed_o + T * step_o


def _measure_units(B: int, I: int, G: int, ahead: bool) -> tuple[float, float, float, float]:
    threads = torch.get_num_threads()
    x, w, h0, c0, walk = _random_layer(UNITS_MEASURED_STEPS[1], B, I, G, G // 4)

    def run(T: int, split: bool) -> None:
        if split:
            _by_units(x[:T], w, h0, c0, walk, PLAIN, NO_TENSORS, threads)
        else:
            _ENGINE._infer_layer(x[:T], w, h0, c0, walk, PLAIN, NO_TENSORS, True, ahead)

    short, long = UNITS_MEASURED_STEPS
    lines: list[float] = []  # fixed time, time per step: split, then not
    for split in (True, False):
        times = [blas.fastest(functools.partial(run, T, split)) for T in (short, long)]
        per_step = max(0.0, (times[1] - times[0]) / (long - short))
        lines += [times[0] - short * per_step, per_step]
    return (lines[0], lines[1], lines[2], lines[3])


def _per_call(fn: Callable[[int, bool], tuple]) -> Callable[[int, bool], tuple]:
    """``fn`` remembering its results, for the life of one call: ``functools.cache``
    without its wrapper's metadata copy (making and calling it once: ~1.5 us against
    ~0.4 on a Zen 4 core; two are made per layer-direction call)."""
    memo: dict[tuple[int, bool], tuple] = {}

    def remembered(m: int, alone: bool) -> tuple:
        found = memo.get((m, alone))
        if found is None:
            found = memo[m, alone] = fn(m, alone)
        return found

    return remembered


def _weights(
    w_hh: Tensor, w_hr: Tensor | None, transpose: bool, dtype: torch.dtype, steps: int
) -> Callable[[int, bool], tuple[np.ndarray, np.ndarray, int]]:
    """For ``m`` rows (``alone``: on a thread of their own), the route of the ``steps``
    recurrent products and ``(W_hh, W_hr)`` prepared for it (transposed for the
    forward's ``x W^T``, as they are for the backward's ``dgates W``); an empty marker
    for ``W_hr`` without projection. float32 routes are timed in the loop itself
    (:mod:`.routes`), float64 has one; preparing the weights once counts."""
    k, n = (w_hh.shape[1], w_hh.shape[0]) if transpose else w_hh.shape
    timed = routes.forward_route if transpose else routes.backward_route

    @_per_call  # row ranges of one size share the weights prepared for them
    def for_rows(m: int, alone: bool) -> tuple[np.ndarray, np.ndarray, int]:
        if dtype == torch.float32:
            way = timed(m, k, n, alone, steps)
        else:
            way = blas.choose(dtype, m, k, n, alone, steps, transpose)
        hr = absent(dtype, 2) if w_hr is None else blas.prepared(w_hr, transpose, m, way)
        return blas.prepared(w_hh, transpose, m, way), hr, way

    return for_rows


def _valid(valid: Tensor | None) -> np.ndarray:
    return _NO_VALID if valid is None else valid[:, :, 0].contiguous().numpy()


_ENGINE = NumbaEngine()

#: The recurrence contract (:mod:`lstmkit.backends.contract`) on this engine.
run_recurrence = bptt.recurrence(_ENGINE)


def infer_layer(
    x: Tensor, w: LayerWeights, h0: Tensor | None, c0: Tensor | None, *,
    lengths: Tensor | None = None, reverse: bool = False, cell_states: bool = False,
    config: CellConfig = PLAIN, tensors: Mapping[str, Tensor] = NO_TENSORS,
) -> tuple[Tensor, ...]:  # fmt: skip
    """:data:`run_recurrence` from the layer's input ``x (T, B, I)`` and weights ``w``
    instead of ``xg``, for float32 calls without autograd (:meth:`NumbaEngine.infer_layer`;
    :func:`lstmkit.backends.inference_layer` says when); ``h0``, ``c0`` None for zeros."""
    valid = None if lengths is None else valid_mask(lengths, x.shape[0])
    walk = Walk(w.weight_hh, w.weight_hr, valid, reverse)
    outputs = _ENGINE.infer_layer(x, w, h0, c0, walk, config, tensors)
    return outputs if cell_states else outputs[:3]
