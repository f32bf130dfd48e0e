"""The registry of benchmarked implementations, all holding the same weights.

Each entry builds, for a shape, a ``forward`` (inference, no autograd) and a ``train``
(forward + backward of every parameter) closure. ``torch`` is nn.LSTM (the yardstick);
``onnxruntime`` is its LSTM operator when installed (inference only); ``lstmkit-<backend>``
are lstmkit's backends.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from ..backends import BACKEND_NAMES, BACKENDS
from ..lstm import LSTM
from .shapes import Shape


@dataclass
class Workload:
    forward: Callable[[], object]
    train: Callable[[], object] | None
    setup_seconds: dict[str, float] = field(default_factory=dict)  # e.g. compile times


@dataclass
class Problem:
    """One shape's weights and inputs, shared by every implementation."""

    shape: Shape
    weights: dict[str, Tensor]
    x: Tensor  # (T, B, I)
    hx: tuple[Tensor, Tensor]  # (L*D, B, H) each

    @classmethod
    def make(cls, shape: Shape, seed: int = 0) -> Problem:
        torch.manual_seed(seed)
        lstm = LSTM(shape.I, shape.H, shape.L, bidirectional=shape.bidirectional)
        rows = shape.L * shape.directions
        x = torch.randn(shape.T, shape.B, shape.I)
        hx = (torch.randn(rows, shape.B, shape.H), torch.randn(rows, shape.B, shape.H))
        return cls(shape, lstm.state_dict(), x, hx)


def _module_workload(
    module: nn.Module, problem: Problem, stepping: bool, load: bool = True
) -> Workload:
    if load:
        module.load_state_dict(problem.weights)
    params = list(module.parameters())
    x, hx = problem.x, problem.hx

    @torch.no_grad()
    def forward() -> object:
        return module(x, hx)

    def train() -> object:
        for p in params:
            p.grad = None
        out, (h, c) = module(x, hx)
        (out.sum() + h.sum() + c.sum()).backward()
        return out

    if stepping:
        step = getattr(module, "step", None)
        x_t = x[0]
        if step is None:  # nn.LSTM: a length-1 sequence per step

            @torch.no_grad()
            def forward() -> object:
                return module(x, hx)

        else:

            @torch.no_grad()
            def forward() -> object:
                return step(x_t, hx)

        return Workload(forward, None)
    return Workload(forward, train)


def torch_lstm(problem: Problem, stepping: bool) -> Workload:
    """PyTorch's own nn.LSTM (the yardstick), built by :func:`lstmkit.interop.to_torch`."""
    s = problem.shape
    return _module_workload(
        LSTM(s.I, s.H, s.L, bidirectional=s.bidirectional).to_torch(), problem, stepping
    )


def lstmkit_lstm(backend: str, **options: object) -> Callable[[Problem, bool], Workload]:
    def build(problem: Problem, stepping: bool) -> Workload:
        s = problem.shape
        lstm = LSTM(s.I, s.H, s.L, bidirectional=s.bidirectional, backend=backend, **options)
        # the plain weights; peephole weights (if any) keep their random init
        lstm.load_state_dict(problem.weights, strict=not options)
        return _module_workload(lstm, problem, stepping, load=False)

    return build


#: ``lstmkit bench --options``: each cell option alone, on ``auto``.
OPTIONS: dict[str, dict[str, object]] = {
    "peephole": {"peephole": True},
    "gate_clip": {"gate_clip": 3.0},
    "cell_clip": {"cell_clip": 10.0},
    "recurrent_dropout": {"recurrent_dropout": 0.25},  # modules time in training mode
    "zoneout": {"zoneout": 0.1},
    "layer_norm": {"layer_norm": True},
    "softsign": {"activation": "softsign"},
    "hardsigmoid": {"recurrent_activation": "hardsigmoid"},
}


def torch_compiled_lstm(problem: Problem, stepping: bool) -> Workload:
    """lstmkit.LSTM under ``torch.compile(fullgraph=True)``; compiles on the first calls,
    whose time is recorded (forward in inference mode and forward+backward compile apart)."""
    s = problem.shape
    lstm = LSTM(s.I, s.H, s.L, bidirectional=s.bidirectional)
    lstm.load_state_dict(problem.weights)
    compiled = torch.compile(lstm, fullgraph=True, dynamic=False)
    work = _module_workload(compiled, problem, stepping, load=False)
    for mode, fn in (("forward", work.forward), ("train", work.train)):
        if fn is not None:
            start = time.perf_counter()
            fn()
            work.setup_seconds[f"compile {mode}"] = time.perf_counter() - start
    return work


def onnxruntime_lstm(problem: Problem, stepping: bool) -> Workload:
    from .onnx_model import onnx_session

    run = onnx_session(problem)
    return Workload(run, None)


def registry(
    include_onnx: bool = True, include_compile: bool = False, include_options: bool = False
) -> dict[str, Callable[[Problem, bool], Workload]]:
    impls: dict[str, Callable[[Problem, bool], Workload]] = {"torch": torch_lstm}
    if include_onnx:
        try:
            import onnx  # noqa: F401
            import onnxruntime  # noqa: F401

            impls["onnxruntime"] = onnxruntime_lstm
        except ImportError:
            pass
    probe = torch.zeros(2, 1, 4)  # float32 on the CPU, what the benchmark runs
    for backend in BACKEND_NAMES:
        if backend == "auto" or BACKENDS[backend].unsupported(probe) is None:
            impls[f"lstmkit-{backend}"] = lstmkit_lstm(backend)  # e.g. no numba: no compiled
    if include_compile:
        impls["lstmkit-torch.compile"] = torch_compiled_lstm
    if include_options:
        for name, options in OPTIONS.items():
            impls[f"lstmkit-auto+{name}"] = lstmkit_lstm("auto", **options)
    return impls
