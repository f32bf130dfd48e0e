"""The route of the forward loop's recurrent product, chosen by timing the loop itself.

:func:`.blas.choose` times products back to back, each with the weight hot in the
core's caches. Inside :func:`.loops.forward` every product is followed by the cell
over all rows, which pushes part of the weight out of the caches before the next
step; routes that time alike alone then differ in the loop. Measured on a Zen 4 core
at ``(16, 256) @ (256, 1024)``: panels and dot-product blocks took 93 and 92 us a
product alone, 96 and 114 us a step inside the loop. So the forward's recurrent route
is chosen by running the loop (the plain cell, no option) for a few steps on random
data with each route and taking the least in total: preparing the weight once, then
``steps`` loop steps.

Shapes: ``m`` rows (a thread's row range), ``h @ W_hh^T`` with ``h (m, K)``,
``W_hh^T (K, N)``, ``N = 4H`` gates; ``K = P < H`` means a projection ``W_hr (P, H)``,
which the measured loop runs too, on the same route.
"""

from __future__ import annotations

import time

import numpy as np
import torch

from . import blas

#: Steps of the loop each measurement runs (best of three, after a warm-up).
SAMPLE_STEPS = 8

#: Per (rows, K, N, threads the products may use): each route's seconds to prepare the
#: weight once and to run one step of the loop, in :data:`.blas.CANDIDATES` order.
_measured: dict[tuple[int, int, int, int], list[tuple[float, float]]] = {}


def forward_route(rows: int, k: int, n: int, alone: bool, steps: int) -> int:
    """The route (:mod:`.blas`) for ``steps`` steps of the float32 forward loop over
    ``rows`` rows whose recurrent product is ``(rows, k) @ (k, n)``; ``alone``: a row
    range on its own thread (single-threaded products). Measured once per shape (at
    most :data:`.blas.MEASURED_ROWS` rows, the time scaled in proportion beyond) and
    remembered."""
    if blas.forced():
        return blas.choose(torch.float32, rows, k, n, alone, steps)
    threads = 1 if alone else torch.get_num_threads()
    sample = max(1, min(rows, blas.MEASURED_ROWS))
    key = (sample, k, n, threads)
    times = _measured.get(key)
    if times is None:
        times = _measured[key] = _measure(sample, k, n, alone)
    scale = steps * rows / sample
    totals = [prep + scale * step for prep, step in times]
    return blas.CANDIDATES[totals.index(min(totals))]


def _measure(rows: int, k: int, n: int, alone: bool) -> list[tuple[float, float]]:
    """Each route's time to prepare ``W_hh^T`` (and ``W_hr^T``) and to run one step of
    the plain forward loop, on random data from a generator of its own (the global one
    is not drawn)."""
    from .loops import forward  # the compiled side; imported on first measure

    g = torch.Generator().manual_seed(0)
    S, H, f32 = SAMPLE_STEPS, n // 4, np.float32
    xg = torch.randn(S, rows, n, generator=g).numpy()
    w = torch.randn(n, k, generator=g) / k**0.5
    w_hr = torch.randn(k, H, generator=g) / H**0.5 if k != H else None  # h has P = k < H
    hs, cs = np.zeros((S + 1, rows, k), f32), np.zeros((S + 1, rows, H), f32)
    e1, e2, e3 = np.empty(0, f32), np.empty((0, 0), f32), np.empty((0, 0, 0), f32)
    ms = e3 if w_hr is None else np.empty((1, rows, H), f32)
    one_step = (np.empty((1, rows, n), f32), cs, hs, np.empty((1, rows, H), f32), ms)
    no_mask = np.empty((0, 0, 0), np.bool_)
    options = (
        e2, np.array([np.inf, np.inf], f32), no_mask, no_mask, e2, np.array([0, 0]),
        (e1, e1, e1, e3, e3, e3, e3), (e3, e3, e3),
    )  # fmt: skip
    previous = blas.set_thread_products(1) if alone else None
    try:
        measured = []
        for way in blas.CANDIDATES:
            prepared = blas.prepared(w, True, rows, way)
            hr = e2 if w_hr is None else blas.prepared(w_hr, True, rows, way)

            def run(prepared: np.ndarray = prepared, hr: np.ndarray = hr, way: int = way) -> None:
                forward(xg, np.empty((0, 0), np.bool_), False, *one_step, *options, prepared,
                        hr, way, 0, rows)  # fmt: skip

            run()  # warm-up (and compile)
            prep, step = [], []
            for _ in range(3):
                start = time.perf_counter()
                blas.prepared(w, True, rows, way)
                prep.append(time.perf_counter() - start)
                start = time.perf_counter()
                run()
                step.append((time.perf_counter() - start) / S)
            measured.append((min(prep), min(step)))
    finally:
        if previous is not None:
            blas.set_thread_products(previous)
    return measured
