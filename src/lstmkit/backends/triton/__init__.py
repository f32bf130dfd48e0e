"""The ``triton`` backend: the hand-written BPTT of :mod:`..bptt`, its loops in Triton
kernels (CUDA; CPU tensors under ``TRITON_INTERPRET=1``).

Per step the forward runs one fused kernel (the four gates' recurrent products by
``tl.dot`` over tiles of batch rows x hidden units, the activations and the state
update, writing everything the backward keeps), plus a ``tl.dot`` kernel for the
projection or, with layer norm, for the recurrent product normalised by the cell
kernel. The backward runs the mirrored pointwise kernel and ``dh_{t-1} = dgates W_hh``;
the weight gradients are single GEMMs after the loop (:func:`..bptt.backward`). No
atomics: every output element has one writer, so results are deterministic.

Files: :mod:`.math` (activations and slopes), :mod:`.forward_kernels`,
:mod:`.backward_kernels`, :mod:`.matmul_kernels`, :mod:`.blocks` (tile sizes),
:mod:`.engine` (the loops), :mod:`.availability` (when it can run; lazy import).
Importing this package does not import triton.
"""

from __future__ import annotations

from ...options import CELL_OPTIONS
from .. import bptt
from .availability import DTYPES, INSTALL, interpreting, unsupported
from .engine import TritonEngine

#: The cell options the kernels implement (all of them).
OPTIONS = CELL_OPTIONS

#: The recurrence contract (:mod:`lstmkit.backends.contract`) on this engine.
run_recurrence = bptt.recurrence(TritonEngine())

__all__ = ["DTYPES", "INSTALL", "OPTIONS", "TritonEngine", "interpreting", "run_recurrence",
           "unsupported"]  # fmt: skip
