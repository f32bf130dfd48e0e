"""The registry of benchmarked implementations, all holding the same weights.

Each entry builds, for a shape, a ``forward`` (inference, no autograd) and a ``train``
(forward + backward of every parameter) closure, or only the first for a step or cell
shape (None where it has no such workload); the names are those of :mod:`.catalog`.
:func:`available` says which of them this machine can run, and why not the others.
"""

from __future__ import annotations

import importlib.util
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from ..backends import BACKENDS
from ..lstm import LSTM
from ..lstm_cell import LSTMCell
from . import catalog
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


def _module_workload(module: nn.Module, problem: Problem, load: bool = True) -> Workload:
    """The workload of a module (nn.LSTM's, lstmkit's, compiled) for the problem's kind:
    forward and training on the sequence, or ``step`` on its first step."""
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

    if problem.shape.kind == "step":
        step = getattr(module, "step", None)
        x_t = x[0]
        if step is None:  # nn.LSTM: a length-1 sequence per step
            return Workload(forward, None)

        @torch.no_grad()
        def stepped() -> object:
            return step(x_t, hx)

        return Workload(stepped, None)
    return Workload(forward, train)


def _cell_workload(cell: nn.Module, problem: Problem) -> Workload:
    """A cell (nn.LSTMCell's or lstmkit's) on the problem's first step, no autograd, with
    the weights of its layer (``weight_ih_l0`` as ``weight_ih``, ...)."""
    cell.load_state_dict({k.removesuffix("_l0"): v for k, v in problem.weights.items()})
    x_t, state = problem.x[0], (problem.hx[0][0], problem.hx[1][0])

    @torch.no_grad()
    def forward() -> object:
        return cell(x_t, state)

    return Workload(forward, None)


def torch_lstm(problem: Problem) -> Workload:
    """PyTorch's own nn.LSTM (the yardstick), built by :func:`lstmkit.interop.to_torch`;
    nn.LSTMCell for a cell shape."""
    s = problem.shape
    if s.kind == "cell":
        return _cell_workload(nn.LSTMCell(s.I, s.H), problem)
    return _module_workload(
        LSTM(s.I, s.H, s.L, bidirectional=s.bidirectional).to_torch(), problem
    )


def lstmkit_lstm(backend: str, **options: object) -> Callable[[Problem], Workload]:
    def build(problem: Problem) -> Workload:
        s = problem.shape
        if s.kind == "cell":
            cell = LSTMCell(s.I, s.H, backend=backend, **options)
            return _cell_workload(cell, problem)
        lstm = LSTM(s.I, s.H, s.L, bidirectional=s.bidirectional, backend=backend, **options)
        # the plain weights; the options' parameters (if any) keep their init
        lstm.load_state_dict(problem.weights, strict=not options)
        return _module_workload(lstm, problem, load=False)

    return build


def torch_compiled_lstm(problem: Problem) -> Workload | None:
    """lstmkit.LSTM under ``torch.compile(fullgraph=True)``; compiles on the first calls,
    whose time is recorded (forward in inference mode and forward+backward compile apart).
    None for a cell shape (not measured)."""
    s = problem.shape
    if s.kind == "cell":
        return None
    lstm = LSTM(s.I, s.H, s.L, bidirectional=s.bidirectional)
    lstm.load_state_dict(problem.weights)
    compiled = torch.compile(lstm, fullgraph=True, dynamic=False)
    work = _module_workload(compiled, problem, load=False)
    for mode, fn in (("forward", work.forward), ("train", work.train)):
        if fn is not None:
            start = time.perf_counter()
            fn()
            work.setup_seconds[f"compile {mode}"] = time.perf_counter() - start
    return work


def onnxruntime_lstm(problem: Problem) -> Workload:
    """The ONNX ``LSTM`` operator in onnxruntime (inference only; on the problem's one
    step for a step or cell shape)."""
    from .onnx_model import onnx_session

    run = onnx_session(problem)
    return Workload(run, None)


def _onnx_missing() -> str | None:
    """Why the onnxruntime row cannot run here (and the install), or None."""
    missing = [m for m in ("onnx", "onnxruntime") if importlib.util.find_spec(m) is None]
    if missing:
        return f"{' and '.join(missing)} not installed (pip install onnx onnxruntime)"
    return None


def _backend_missing(backend: str) -> str | None:
    """Why ``backend`` cannot run the benchmark's float32 CPU problems here, or None."""
    probe = torch.zeros(2, 1, 4)  # float32 on the CPU, what the benchmark runs
    return None if backend == "auto" else BACKENDS[backend].unsupported(probe)


def _builder(name: str) -> Callable[[Problem], Workload | None]:
    """The workload builder of implementation ``name``."""
    if name == catalog.TORCH:
        return torch_lstm
    if name == catalog.ONNXRUNTIME:
        return onnxruntime_lstm
    if name == catalog.COMPILE:
        return torch_compiled_lstm
    backend, _, option = name.removeprefix("lstmkit-").partition("+")
    return lstmkit_lstm(backend, **catalog.OPTIONS.get(option, {}))


def available(
    names: Sequence[str],
) -> tuple[dict[str, Callable[[Problem], Workload | None]], dict[str, str]]:
    """The builders of ``names`` (of :data:`~.catalog.ALL`) this machine can run, and for
    each one it cannot, why and what to install."""
    builders, skipped = {}, {}
    for name in names:
        if name == catalog.ONNXRUNTIME:
            reason = _onnx_missing()
        elif name in catalog.BACKEND_IMPLS:
            reason = _backend_missing(name.removeprefix("lstmkit-"))
        else:
            reason = None
        if reason is None:
            builders[name] = _builder(name)
        else:
            skipped[name] = reason
    return builders, skipped
