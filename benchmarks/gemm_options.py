"""Measure the GEMM options torch exposes for an LSTM's products on this machine.

    python benchmarks/gemm_options.py

Per-step recurrent product ``h (B, P) x W_hh^T (P, 4H)`` for the benchmark shapes' batch
sizes, and the input projection ``x (T*B, I) x W_ih^T`` for the large ones: MKL
``addmm``/``mm`` into a preallocated output, ``F.linear``, oneDNN's linear with the
weight reordered once (``torch.ops.mkldnn._linear_pointwise``), and MKL's packed GEMM
(``torch.ops.mkl._mkl_linear``). lstmkit's ``lstmkit/gemm.py`` picks from these.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F


def micros(fn: Callable[[], object], calls: int = 200) -> float:
    for _ in range(10):
        fn()
    samples = []
    for _ in range(7):
        start = time.perf_counter()
        for _ in range(calls):
            fn()
        samples.append((time.perf_counter() - start) / calls)
    return statistics.median(samples) * 1e6


def options(x: torch.Tensor, w: torch.Tensor) -> dict[str, Callable[[], object]]:
    rows = x.shape[0]
    out, w_t = torch.empty(rows, w.shape[0]), w.t()
    bias = torch.randn(rows, w.shape[0])
    fns: dict[str, Callable[[], object]] = {
        "addmm out=": lambda: torch.addmm(bias, x, w_t, out=out),
        "mm out=": lambda: torch.mm(x, w_t, out=out),
        "F.linear": lambda: F.linear(x, w),
    }
    if torch.backends.mkldnn.is_available():
        packed = torch.ops.mkldnn._reorder_linear_weight(w, rows)
        fns["oneDNN prepacked"] = lambda: torch.ops.mkldnn._linear_pointwise(
            x, packed, None, "none", [], ""
        )
    if hasattr(torch.ops.mkl, "_mkl_reorder_linear_weight"):
        mkl_packed = torch.ops.mkl._mkl_reorder_linear_weight(w, rows)
        fns["MKL packed"] = lambda: torch.ops.mkl._mkl_linear(x, mkl_packed, w, None, rows)
    return fns


def main() -> None:
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    cases = [("step", b, p, 4 * p) for b, p in ((1, 64), (4, 64), (16, 128), (32, 256), (64, 512))]
    cases += [("input projection", 3200, 256, 1024), ("input projection", 12800, 512, 2048)]
    for what, rows, k, n in cases:
        x, w = torch.randn(rows, k), torch.randn(n, k)
        calls = 200 if rows * k * n < 1e9 else 5
        flops = 2 * rows * k * n
        cells = [
            f"{name} {micros(fn, calls):.1f} us ({flops / micros(fn, calls) / 1e3:.0f} GFLOP/s)"
            for name, fn in options(x, w).items()
        ]
        print(f"{what} {rows}x{k} @ {k}x{n}: " + "; ".join(cells))


if __name__ == "__main__":
    main()
