"""lstmkit: the LSTM layer, implemented in the open.

``lstmkit.LSTM`` and ``lstmkit.LSTMCell`` are drop-ins for PyTorch's ``nn.LSTM`` and
``nn.LSTMCell`` (same arguments, parameter names, outputs, gradients and errors),
computed by lstmkit's own code: one cell function (:mod:`lstmkit.cell`), one recurrence
(:mod:`lstmkit.backends`), layers and directions around it (:mod:`lstmkit.functional`).

The names below are imported on first use (PEP 562), so that ``import lstmkit`` and the
``lstmkit`` command's ``--help`` do not load torch; ``lstmkit.LSTM`` works as usual.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # what type checkers and IDEs see; at run time see __getattr__
    from .cell import cell_step
    from .functional import LayerWeights, States
    from .lstm import LSTM
    from .lstm_cell import LSTMCell

__all__ = ["LSTM", "LSTMCell", "LayerWeights", "States", "cell_step"]
__version__ = "0.1.0"

#: public name -> the submodule that defines it
_EXPORTS = {
    "LSTM": "lstm",
    "LSTMCell": "lstm_cell",
    "LayerWeights": "functional",
    "States": "functional",
    "cell_step": "cell",
}

#: submodules reachable as attributes after a bare ``import lstmkit``
_SUBMODULES = frozenset(
    {
        "activations",
        "backends",
        "bench",
        "cell",
        "cli",
        "functional",
        "init",
        "interop",
        "lab",
        "lstm",
        "lstm_cell",
        "onnx",
        "trace",
        "train",
    }
)


def __getattr__(name: str) -> object:
    """Import a public name or submodule of lstmkit the first time it is used."""
    if name in _EXPORTS:
        value = getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
        globals()[name] = value  # later look-ups skip this function
        return value
    if name in _SUBMODULES:
        return importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *_EXPORTS, *_SUBMODULES})
