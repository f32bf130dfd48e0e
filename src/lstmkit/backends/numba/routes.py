"""The routes of the time loops' recurrent products, chosen by timing the loops themselves.

:func:`.blas.choose` times products back to back, each with the weight hot in the
core's caches. Inside :func:`.loops.forward` every product is followed by the cell
over all rows (inside :func:`.loops.backward`, by its derivatives), which pushes part
of the weight out of the caches before the next step; routes that time alike alone
then differ in the loop. Measured on a Zen 4 core at ``(16, 256) @ (256, 1024)``:
panels and dot-product blocks took 93 and 92 us a product alone, 96 and 114 us a step
inside the forward loop. So a float32 loop's route is chosen by running that loop (the
plain cell, no option) for a few steps on random data with each route and taking the
least in total: preparing the weights once, then ``steps`` loop steps.

Shapes: ``m`` rows (a thread's row range), ``H`` hidden, ``G = 4H``, ``P`` the width
of h (``P < H``: a projection ``W_hr (P, H)``, which the measured loop runs too, on the
same route). The forward's product is ``h (m, P) @ W_hh^T (P, G)``, the backward's
``dgates (m, G) @ W_hh (G, P)``.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import numpy as np
import torch

from . import blas

#: Steps of the loop each measurement runs (best of three, after a warm-up).
SAMPLE_STEPS = 8

#: Per (loop, rows, H, P, threads the products may use): each route's seconds to prepare
#: the weights once and to run one step of the loop, in :func:`.blas.candidates` order.
_measured: dict[tuple[str, int, int, int, int], list[tuple[float, float]]] = {}


def forward_route(rows: int, k: int, n: int, alone: bool, steps: int) -> int:
    """The route (:mod:`.blas`) for ``steps`` steps of the float32 forward loop over
    ``rows`` rows whose recurrent product is ``(rows, k) @ (k, n)`` (``k = P``,
    ``n = G``); ``alone``: a row range on its own thread (single-threaded products).
    Measured once per shape (at most :data:`.blas.MEASURED_ROWS` rows, the time scaled
    in proportion beyond) and remembered."""
    return _route("forward", rows, n // 4, k, alone, steps)


def backward_route(rows: int, k: int, n: int, alone: bool, steps: int) -> int:
    """:func:`forward_route` for the float32 backward loop, whose recurrent product is
    ``(rows, k) @ (k, n)`` (``k = G``, ``n = P``)."""
    return _route("backward", rows, k // 4, n, alone, steps)


def _route(loop: str, rows: int, H: int, P: int, alone: bool, steps: int) -> int:
    if blas.forced():
        k, n, transpose = (P, 4 * H, True) if loop == "forward" else (4 * H, P, False)
        return blas.choose(torch.float32, rows, k, n, alone, steps, transpose)
    threads = 1 if alone else torch.get_num_threads()
    sample = max(1, min(rows, blas.MEASURED_ROWS))
    key = (loop, sample, H, P, threads)
    times = _measured.get(key)
    if times is None:
        times = _measured[key] = _measure(loop, sample, H, P, alone)
    scale = steps * rows / sample
    totals = [prep + scale * step for prep, step in times]
    return blas.candidates(sample)[totals.index(min(totals))]


def _measure(loop: str, rows: int, H: int, P: int, alone: bool) -> list[tuple[float, float]]:
    """Each route's time to prepare ``W_hh`` (and ``W_hr``) and to run one step of the
    plain ``loop``, on random data from a generator of its own (the global one is not
    drawn)."""
    g = torch.Generator().manual_seed(0)
    w_hh = torch.randn(4 * H, P, generator=g) / P**0.5
    w_hr = torch.randn(P, H, generator=g) / H**0.5 if P != H else None
    run = (_forward if loop == "forward" else _backward)(rows, H, P, g)
    transpose = loop == "forward"  # the forward's x W^T, the backward's dgates W
    e2 = np.empty((0, 0), np.float32)

    def prepare(way: int) -> tuple[np.ndarray, np.ndarray]:
        hr = e2 if w_hr is None else blas.prepared(w_hr, transpose, rows, way)
        return blas.prepared(w_hh, transpose, rows, way), hr

    measured = []
    with blas.products_alone(alone):
        for way in blas.candidates(rows):
            weights = prepare(way)
            step = blas.fastest(functools.partial(run, *weights, way)) / SAMPLE_STEPS
            measured.append((blas.fastest(functools.partial(prepare, way), warm_up=False), step))
    return measured


_F32 = np.float32
_E1, _E2, _E3 = np.empty(0, _F32), np.empty((0, 0), _F32), np.empty((0, 0, 0), _F32)
_NO_MASK = np.empty((0, 0, 0), np.bool_)
_NO_VALID = np.empty((0, 0), np.bool_)
#: The plain cell's option arguments, as the engine passes them (every option off).
_PLAIN_NORM = (_E1, _E1, _E1, _E3, _E3, _E3, _E3)
_PLAIN_ZONEOUT = (_E3, _E3, _E3)
_CLIPS, _KINDS = np.array([np.inf, np.inf], _F32), np.array([0, 0])


def _randn(g: torch.Generator, *shape: int) -> np.ndarray:
    return torch.randn(*shape, generator=g).numpy()


def _forward(
    rows: int, H: int, P: int, g: torch.Generator
) -> Callable[[np.ndarray, np.ndarray, int], None]:
    """:data:`SAMPLE_STEPS` steps of :func:`.loops.forward` over random pre-activations,
    nothing kept for a backward."""
    from .loops import forward  # the compiled side; imported on first measure

    S, G = SAMPLE_STEPS, 4 * H
    xg = _randn(g, S, rows, G)
    hs, cs = np.zeros((S + 1, rows, P), _F32), np.zeros((S + 1, rows, H), _F32)
    ms = _E3 if P == H else np.empty((1, rows, H), _F32)
    acts, tanh_cs = np.empty((1, rows, G), _F32), np.empty((1, rows, H), _F32)

    def run(w_hh: np.ndarray, w_hr: np.ndarray, way: int) -> None:
        forward(xg, _NO_VALID, False, acts, cs, hs, tanh_cs, ms, _E2, _CLIPS, _NO_MASK,
                _NO_MASK, _E2, _KINDS, _PLAIN_NORM, _PLAIN_ZONEOUT, w_hh, w_hr, way, 0,
                rows)  # fmt: skip

    return run


def _backward(
    rows: int, H: int, P: int, g: torch.Generator
) -> Callable[[np.ndarray, np.ndarray, int], None]:
    """:data:`SAMPLE_STEPS` steps of :func:`.loops.backward` over random saved buffers
    (activations in (0, 1), as the forward leaves them)."""
    from .loops import backward  # the compiled side; imported on first measure

    S, G = SAMPLE_STEPS, 4 * H
    dys = _randn(g, S, rows, P)
    acts = torch.rand(S, rows, G, generator=g).numpy()
    cs, tanh_cs = _randn(g, S + 1, rows, H), torch.rand(S, rows, H, generator=g).numpy()
    dgates = np.empty((S, rows, G), _F32)
    dhs = _E3 if P == H else np.empty((S, rows, P), _F32)
    dh, dc = np.empty((rows, P), _F32), np.empty((rows, H), _F32)

    def run(w_hh: np.ndarray, w_hr: np.ndarray, way: int) -> None:
        dh[:], dc[:] = 0.0, 0.0
        backward(dys, _E3, dh, dc, _NO_VALID, False, acts, cs, tanh_cs, dgates, dhs, _E2,
                 _NO_MASK, _NO_MASK, _E2, _KINDS, _PLAIN_NORM, _PLAIN_ZONEOUT, _E3, _E3, w_hh,
                 w_hr, way, 0, rows)  # fmt: skip

    return run
