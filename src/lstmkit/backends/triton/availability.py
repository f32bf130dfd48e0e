"""Whether the Triton engine can serve a call, and the kernels, imported on first use.

Importing lstmkit never imports triton: the kernel modules are imported by
:func:`kernels` on the engine's first call. Triton reads ``TRITON_INTERPRET`` when a
kernel is decorated (its own library functions too, when triton is imported), so that
variable must be set before triton is first imported in the process for the interpreter
to run the kernels on CPU tensors (how the tests run without a GPU).
"""

from __future__ import annotations

import importlib.util
import os
import sys
from types import ModuleType

import torch
from torch import Tensor

#: The dtypes the kernels take (float32 math and state in every case).
DTYPES = (torch.float32, torch.bfloat16, torch.float16)

INSTALL = "pip install 'lstmkit[gpu]'"


def interpreting() -> bool:
    """Whether ``TRITON_INTERPRET`` asks triton to interpret kernels (on CPU tensors)."""
    return os.environ.get("TRITON_INTERPRET", "").strip().lower() in ("1", "true", "on", "yes")


#: Whether the ``triton`` package is there (looked up once, not imported).
_INSTALLED = importlib.util.find_spec("triton") is not None


def installed() -> bool:
    """Whether the ``triton`` package can be imported."""
    return _INSTALLED


def unsupported(xg: Tensor) -> str | None:
    """Why the Triton engine cannot run on ``xg``, or None if it can."""
    cpu = xg.device.type == "cpu"
    if not (xg.device.type == "cuda" or (cpu and interpreting())):
        return (
            f"it runs on CUDA tensors (on CPU tensors only under TRITON_INTERPRET=1), "
            f"got a tensor on {xg.device}"
        )
    if xg.dtype not in DTYPES:
        return (
            f"it supports float32, bfloat16 and float16, got {xg.dtype} "
            f"(backend='fused' runs float64)"
        )
    if not installed():
        return f"triton is not installed ({INSTALL})"
    if cpu and imported_uninterpreted():
        return (
            "triton was first imported without TRITON_INTERPRET=1, so its kernels cannot "
            "run on CPU tensors in this process: set it before triton is imported"
        )
    return None


def imported_uninterpreted() -> bool:
    """Whether triton is imported in this process with its kernels compiled for a GPU
    (TRITON_INTERPRET was not set when it was imported)."""
    language = sys.modules.get("triton.language")
    return language is not None and type(language.zeros).__name__ != "InterpretedFunction"


def kernels() -> tuple[ModuleType, ModuleType, ModuleType]:
    """The kernel modules ``(forward_kernels, backward_kernels, matmul_kernels)``."""
    from . import backward_kernels, forward_kernels, matmul_kernels

    return forward_kernels, backward_kernels, matmul_kernels


def input_precision(xg: Tensor) -> str:
    """``tl.dot``'s precision for float32 operands: TF32 only where torch's own matmul
    setting allows it on CUDA, else exact float32 (``"ieee"``)."""
    if xg.device.type == "cuda" and torch.backends.cuda.matmul.allow_tf32:
        return "tf32"
    return "ieee"


def upcast(xg: Tensor) -> bool:
    """Whether the kernels multiply in float32 what they would multiply in bfloat16: under
    the interpreter, whose ``tl.dot`` gets bfloat16 wrong (numpy has no bfloat16). The
    products of bfloat16 values are exact in float32, so only the summation order differs
    from the GPU's float32-accumulated bfloat16 dot."""
    return xg.device.type == "cpu" and xg.dtype == torch.bfloat16
