"""Interleaved timing: every implementation once per round, in an order that turns each
round; every round's time is kept, so that the report can give the median and say when
rounds disagree (a busy machine)."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F


def time_call(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def interleaved(
    fns: dict[str, Callable[[], object]],
    rounds: int,
    warmup: int = 2,
    on_round: Callable[[], None] | None = None,
    min_seconds: float = 2e-3,
) -> dict[str, list[float]]:
    """Seconds per call of each function in every round, timed in turn within each round
    (the order rotated by one each round).

    A call shorter than ``min_seconds`` is repeated inside its slot (the count chosen
    during warm-up) so that timer resolution and dispatch jitter do not dominate.
    """
    repeats = {}
    for name, fn in fns.items():
        for _ in range(warmup):
            fn()
        once = max(time_call(fn), 1e-7)
        repeats[name] = max(1, int(min_seconds / once))
    samples: dict[str, list[float]] = {name: [] for name in fns}
    names = list(fns)
    for r in range(rounds):
        # the order turns each round: a call can slow the one after it (threads still
        # waking or spinning), so no implementation always follows the same one
        for name in names[r % len(names) :] + names[: r % len(names)]:
            fn, n = fns[name], repeats[name]
            start = time.perf_counter()
            for _ in range(n):
                fn()
            samples[name].append((time.perf_counter() - start) / n)
        if on_round is not None:
            on_round()
    return samples


def gemm_rate(rounds: int = 5) -> float:
    """The fp32 GEMM rate of this machine in FLOP/s: the best of MKL (``F.linear``) and
    oneDNN's prepacked linear on a (2048 x 1024) x (1024 x 1024) product."""
    x, w = torch.randn(2048, 1024), torch.randn(1024, 1024)
    fns: dict[str, Callable[[], object]] = {"mkl": lambda: F.linear(x, w)}
    if torch.backends.mkldnn.is_available() and hasattr(torch.ops.mkldnn, "_linear_pointwise"):
        packed = torch.ops.mkldnn._reorder_linear_weight(w, 2048)
        fns["onednn"] = lambda: torch.ops.mkldnn._linear_pointwise(x, packed, None, "none", [], "")
    best = min(statistics.median(s) for s in interleaved(fns, rounds).values())
    return 2 * 2048 * 1024 * 1024 / best
