"""lstmkit's GPU engines against cuDNN (``torch.nn.LSTM``), in one run.

Prints, for each shape, dtype (float32, bfloat16) and pass (forward under ``no_grad``;
forward + backward), the median milliseconds and the ratio to ``nn.LSTM`` (cuDNN) for
``triton``, ``fused`` and cuDNN itself, plus ``triton`` with ``layer_norm=True`` (a cell
cuDNN does not have: its ratio is to cuDNN's plain LSTM). The dense GEMM peak of the
GPU is measured in the same run, so the numbers can be read against the machine.

    python benchmarks/gpu.py            # one CUDA GPU; under 4 minutes on an H200
    python benchmarks/gpu.py --smoke    # tiny shapes on the CPU through Triton's
                                        # interpreter: checks that the script runs

Shapes ``(T, B, I, H, L)``: S2 (25, 16, 1024, 128, 2), S4 (100, 32, 256, 256, 2),
S5 (200, 64, 512, 512, 1), S6 (S4 bidirectional), B1 (1000, 1, 256, 256, 1).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections.abc import Callable

if "--smoke" in sys.argv:  # before triton is first imported: kernels run interpreted
    os.environ["TRITON_INTERPRET"] = "1"

import torch
from torch import nn

import lstmkit
from lstmkit.bench import shapes
from lstmkit.bench.shapes import Shape

SHAPES = (
    *shapes.find("S2,S4,S5,S6"),
    Shape("B1", 1000, 1, 256, 256, 1, what="streaming, H=256"),
)
SMOKE_SHAPES = (Shape("tiny", 3, 2, 4, 16, 2, bidirectional=True),)

#: The implementations: name -> (factory of a module for a shape, dtype and device).
IMPLS: dict[str, Callable[[Shape, torch.dtype, torch.device], nn.Module]] = {
    "cudnn": lambda s, dt, dev: nn.LSTM(
        s.I, s.H, s.L, bidirectional=s.bidirectional, device=dev, dtype=dt
    ),
    "triton": lambda s, dt, dev: lstmkit.LSTM(
        s.I, s.H, s.L, bidirectional=s.bidirectional, device=dev, dtype=dt, backend="triton"
    ),
    "fused": lambda s, dt, dev: lstmkit.LSTM(
        s.I, s.H, s.L, bidirectional=s.bidirectional, device=dev, dtype=dt, backend="fused"
    ),
    "triton+layer_norm": lambda s, dt, dev: lstmkit.LSTM(
        s.I, s.H, s.L, bidirectional=s.bidirectional, device=dev, dtype=dt, backend="triton",
        layer_norm=True,
    ),
}


class Clock:
    """Milliseconds of a callable: CUDA events on the GPU, perf_counter on the CPU."""

    def __init__(self, device: torch.device) -> None:
        self.cuda = device.type == "cuda"

    def __call__(self, fn: Callable[[], object], warmup: int, reps: int) -> float:
        for _ in range(warmup):
            fn()
        times = []
        for _ in range(reps):
            if self.cuda:
                start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(True)
                start.record()
                fn()
                end.record()
                torch.cuda.synchronize()
                times.append(start.elapsed_time(end))
            else:
                t0 = time.perf_counter()
                fn()
                times.append((time.perf_counter() - t0) * 1e3)
        return statistics.median(times)


def gemm_peak(device: torch.device, dtype: torch.dtype, clock: Clock, n: int) -> float:
    """TFLOP/s of an ``n x n x n`` matmul (the machine's dense GEMM peak, roughly)."""
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    ms = clock(lambda: a @ b, warmup=2, reps=5)
    return 2 * n**3 / (ms * 1e-3) / 1e12


def workload(
    model: nn.Module, shape: Shape, dtype: torch.dtype, device: torch.device, train: bool
) -> Callable[[], object]:
    """One forward (under ``no_grad``) or forward + backward of ``model`` on fresh data."""
    x = torch.randn(shape.T, shape.B, shape.I, device=device, dtype=dtype)
    if not train:
        def forward() -> object:
            with torch.no_grad():
                return model(x)
        return forward
    x.requires_grad_()

    def step() -> object:
        out, (h_n, c_n) = model(x)
        (out.float().sum() + h_n.float().sum() + c_n.float().sum()).backward()
        return out
    return step


def timed(
    clock: Clock, model: nn.Module, shape: Shape, dtype: torch.dtype, device: torch.device,
    train: bool, warmup: int, reps: int,
) -> float | str:  # fmt: skip
    """Median ms of the workload, or the error's name when the implementation refuses."""
    try:
        return clock(workload(model, shape, dtype, device, train), warmup, reps)
    except (RuntimeError, NotImplementedError) as error:
        return type(error).__name__


def cell(ms: float | str, base: float | str) -> str:
    """``ms`` and its ratio to ``base`` (cuDNN), as one table cell."""
    if isinstance(ms, str):
        return ms
    ratio = f"{ms / base:6.2f}x" if isinstance(base, float) else "     -"
    return f"{ms:9.3f} ms {ratio}"


def cudnn_note(dtype: torch.dtype) -> str:
    """Which cuDNN RNN algorithm torch asks for (torch's heuristics pick the persistent
    kernels for float16 only; float32 and bfloat16 run CUDNN_RNN_ALGO_STANDARD)."""
    algo = "persistent heuristics apply" if dtype == torch.float16 else "CUDNN_RNN_ALGO_STANDARD"
    return f"cuDNN {torch.backends.cudnn.version()}, {algo}"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="tiny CPU run, interpreted")
    parser.add_argument("--reps", type=int, default=5, help="timed repetitions (median)")
    args = parser.parse_args(argv)
    if args.smoke:
        device, shapes, warmup, reps = torch.device("cpu"), SMOKE_SHAPES, 0, 1
    else:
        if not torch.cuda.is_available():
            raise SystemExit("benchmarks/gpu.py needs a CUDA GPU (or --smoke)")
        device, shapes, warmup, reps = torch.device("cuda"), SHAPES, 2, args.reps
    clock = Clock(device)
    started = time.perf_counter()
    name = torch.cuda.get_device_name() if device.type == "cuda" else "CPU (interpreted)"
    print(f"device: {name}; torch {torch.__version__}; TF32 matmul "
          f"{torch.backends.cuda.matmul.allow_tf32}")  # fmt: skip
    for dtype in (torch.float32, torch.bfloat16):
        peak = gemm_peak(device, dtype, clock, 256 if args.smoke else 8192)
        note = cudnn_note(dtype) if device.type == "cuda" else "nn.LSTM on the CPU"
        print(f"GEMM peak {str(dtype)[6:]}: {peak:.1f} TFLOP/s; {note}")
    print(f"{'shape':28} {'dtype':9} {'pass':9} " + " ".join(f"{n:>24}" for n in IMPLS))
    for shape in shapes:
        for dtype in (torch.float32, torch.bfloat16):
            torch.manual_seed(0)
            models = {n: make(shape, dtype, device) for n, make in IMPLS.items()}
            for train in (False, True):
                timings = {n: timed(clock, m, shape, dtype, device, train, warmup, reps)
                           for n, m in models.items()}  # fmt: skip
                cells = [cell(ms, timings["cudnn"]) for ms in timings.values()]
                pass_ = "fwd+bwd" if train else "forward"
                print(f"{shape.label():28} {str(dtype)[6:]:9} {pass_:9} "
                      + " ".join(f"{c:>24}" for c in cells), flush=True)  # fmt: skip
    print(f"total {time.perf_counter() - started:.1f} s")


if __name__ == "__main__":
    main()
