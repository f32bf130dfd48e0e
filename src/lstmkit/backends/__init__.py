"""Backends: interchangeable implementations of the one recurrence.

Every backend implements :class:`~lstmkit.backends.contract.Recurrence` and nothing
else. ``backend="auto"`` picks the fastest backend that supports the call; an explicit
name that cannot serve the call raises ``NotImplementedError`` saying why.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import torch
import torch.autograd.forward_ad as fwAD
from torch import Tensor

from . import compiled, fused, ops, reference
from . import triton as triton_
from .contract import Recurrence


@dataclass(frozen=True)
class Backend:
    """A named recurrence and the test of whether it can serve a call.

    ``unsupported(xg)`` returns ``None`` when the backend can run on ``xg`` (its
    dtype, device and autograd state), else a short reason.
    """

    name: str
    run: Recurrence
    unsupported: Callable[[Tensor], str | None]
    options: frozenset[str] = frozenset()  # the cell options it implements (by name)


def _always(xg: Tensor) -> str | None:
    return None


def tracing() -> bool:
    """Whether a graph tracer is recording this call (torch.compile, torch.export,
    torch.jit.trace, the ONNX exporters): the fast engines then run as one custom op per
    layer-direction (:mod:`.ops`) instead of their Python-driven loops."""
    return torch.compiler.is_compiling() or torch.jit.is_tracing()


def _functorch_active() -> bool:
    """Whether a torch.func transform or forward-mode AD (tangents riding on tensors,
    ``torch.autograd.forward_ad``) is active: both need the reference loop's torch ops."""
    active = getattr(torch._C, "_are_functorch_transforms_active", lambda: False)
    return active() or fwAD._current_level >= 0


def _untransformed(xg: Tensor) -> str | None:
    """The hand-written backward (custom ops with numba calls, for ``compiled``) has no
    batching rule for torch.func and no forward-mode derivative; the reference loop,
    plain torch ops, transforms."""
    if _functorch_active():
        return (
            "torch.func transforms (vmap, grad, jacrev, ...) and forward-mode AD need "
            "backend='auto' or 'reference'"
        )
    return None


def _compiled_unsupported(xg: Tensor) -> str | None:
    return _untransformed(xg) or compiled.unsupported(xg)


def _triton_unsupported(xg: Tensor) -> str | None:
    return _untransformed(xg) or triton_.unsupported(xg)


#: Every backend by name, each with the cell options its module declares it implements.
BACKENDS: dict[str, Backend] = {
    "reference": Backend("reference", reference.run_recurrence, _always, reference.OPTIONS),
    "fused": Backend("fused", fused.run_recurrence, _untransformed, fused.OPTIONS),
    "compiled": Backend(
        "compiled", compiled.run_recurrence, _compiled_unsupported, compiled.OPTIONS
    ),
    "triton": Backend("triton", triton_.run_recurrence, _triton_unsupported, triton_.OPTIONS),
}

#: Preference order for ``backend="auto"``: the first that supports the call wins.
#: ``compiled`` is the fastest wherever it runs (float32/float64 on the CPU, numba
#: installed: see benchmarks/RESULTS.md); ``fused`` runs everywhere else (CUDA,
#: bfloat16, float16) and trains faster than ``reference``. A single time step (T = 1,
#: as in ``LSTMCell``) goes to ``reference``: with no loop to speed up, its one cell call
#: has the least fixed cost (``LSTM.step`` without autograd has its own compiled step,
#: :mod:`lstmkit._lean_step`). Under torch.compile or torch.func transforms neither applies
#: and ``auto`` runs ``reference``. ``triton`` serves CUDA tensors (float32, bfloat16,
#: float16); ``auto`` never picks it on the CPU, where it runs only interpreted (tests).
AUTO_ORDER: tuple[str, ...] = ("compiled", "triton", "fused")

BACKEND_NAMES: tuple[str, ...] = ("auto", *BACKENDS)


_warned_no_numba = False


def _warn_no_numba() -> None:
    """Say once per process that the CPU fast path is missing, what it costs and the fix."""
    global _warned_no_numba
    if not _warned_no_numba:
        _warned_no_numba = True
        warnings.warn(f"lstmkit: {compiled.NO_NUMBA}", RuntimeWarning, stacklevel=4)


def check_backend_name(backend: object) -> str:
    """Validate a ``backend=`` argument at construction time."""
    if not isinstance(backend, str) or (backend != "auto" and backend not in BACKENDS):
        raise ValueError(f"backend must be one of {['auto', *BACKENDS]}, got {backend!r}")
    return backend


def select(backend: str, xg: Tensor, options: tuple[str, ...] = ()) -> Recurrence:
    """The recurrence to run ``xg`` with (using the cell ``options`` named): ``backend``
    itself, or the best one for ``auto``. Under a graph tracer (:func:`tracing`) the
    fast engines run as their custom op."""
    if backend == "auto":
        if (not tracing() and xg.shape[0] == 1) or _functorch_active():
            return BACKENDS["reference"].run
        for name in AUTO_ORDER:
            if name == "triton" and xg.device.type != "cuda":
                continue
            chosen = BACKENDS[name]
            if chosen.unsupported(xg) is None and chosen.options.issuperset(options):
                if name != "compiled" and not compiled.AVAILABLE and xg.device.type == "cpu":
                    _warn_no_numba()
                return _traced(name)
        return BACKENDS["reference"].run
    chosen = BACKENDS[check_backend_name(backend)]
    missing = sorted(set(options) - chosen.options)
    reason = chosen.unsupported(xg) or (
        f"it does not implement {', '.join(missing)} yet" if missing else None
    )
    if reason is not None:
        raise NotImplementedError(f"backend {backend!r} cannot run this call: {reason}")
    return _traced(backend)


_PLAIN = (Tensor, torch.nn.Parameter)


def inference_layer(run: Recurrence, x: Tensor, inputs: Iterable[Tensor | None]) -> Callable | None:
    """The whole-layer path of ``run``'s engine (:func:`.compiled.infer_layer`: the input
    projection inside the compiled call, so ``x`` goes in instead of ``xg``), when it can
    serve this call: ``run`` is the ``compiled`` recurrence itself (not its custom op for
    a tracer), ``x`` is float32, and no gradient is wanted of ``x`` or of the plain
    (no subclass) tensors ``inputs``; else None."""
    if run is not compiled.run_recurrence or x.dtype != torch.float32 or type(x) is not Tensor:
        return None
    grad = torch.is_grad_enabled()
    for t in inputs:
        if t is not None and (type(t) not in _PLAIN or (grad and t.requires_grad)):
            return None
    return None if grad and x.requires_grad else compiled.infer_layer


def _traced(name: str) -> Recurrence:
    """Backend ``name``'s recurrence, as its custom op when a tracer records the call."""
    if name in ops.ENGINES and tracing():
        return ops.RECURRENCES[name]
    return BACKENDS[name].run
