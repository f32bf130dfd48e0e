"""The ``compiled`` backend's entry: the hand-written BPTT of :mod:`.bptt` with its two
time loops in numba, CPU only. The engine and its numba code live in :mod:`.numba` (see
its docstring for the files); this module imports without numba, and then
:data:`AVAILABLE` is False and :func:`unsupported` says what to install.
"""

from __future__ import annotations

from ..options import CELL_OPTIONS
from .numba.engine import (
    AVAILABLE,
    NO_NUMBA,
    NumbaEngine,
    infer_layer,
    route,
    run_recurrence,
    threads_route,
    unsupported,
)

#: The cell options the engine implements (all of them).
OPTIONS = CELL_OPTIONS

__all__ = [
    "AVAILABLE", "NO_NUMBA", "OPTIONS", "NumbaEngine", "infer_layer", "route", "run_recurrence",
    "threads_route", "unsupported",
]  # fmt: skip
