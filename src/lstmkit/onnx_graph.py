"""The graph-building helpers of :mod:`lstmkit.onnx`: a collector of nodes and
initializers (:class:`Graph`, used for the model's graph and for each ``Scan`` body), the
check that the ``onnx`` package is installed, the rows of a state input, and the
parameter names of each layer-direction.

Shapes: the state inputs ``h0`` ``(L*D, B, P)`` and ``c0`` ``(L*D, B, H)`` are sliced by
rows (a layer's ``D`` rows for an ``LSTM`` node, one row for a ``Scan``). The ``onnx``
package is imported only when a graph is built, so lstmkit imports without it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from .lstm import LSTM


def require_onnx() -> None:
    """A clear error, with the install line, when the ``onnx`` package is missing."""
    try:
        import onnx  # noqa: F401
    except ModuleNotFoundError as error:
        raise ModuleNotFoundError(
            "lstmkit.onnx builds ONNX graphs with the onnx package, which is not installed: "
            "pip install onnx (and onnxruntime to run the graphs)",
            name="onnx",
        ) from error


class Graph:
    """Nodes and initializers being collected for one ONNX graph."""

    def __init__(self) -> None:
        from onnx import helper, numpy_helper

        self.helper, self.numpy_helper = helper, numpy_helper
        self.nodes: list[Any] = []
        self.inits: list[Any] = []

    def const(self, name: str, array: np.ndarray) -> str:
        self.inits.append(self.numpy_helper.from_array(array, name))
        return name

    def ints(self, name: str, values: int | Sequence[int]) -> str:
        """An int64 initializer: a scalar for an int, a vector for a sequence."""
        return self.const(name, np.array(values, np.int64))

    def node(self, op: str, inputs: list[str], outputs: list[str], **attrs: Any) -> str:
        self.nodes.append(self.helper.make_node(op, inputs, outputs, **attrs))
        return outputs[0]


def state_rows(g: Graph, name: str, first: int, count: int, tag: str) -> str:
    """Rows ``first .. first+count`` of graph input ``name`` (``h0`` or ``c0``)."""
    bounds = [g.ints(f"{tag}_{name}_{k}", [v]) for k, v in enumerate((first, first + count, 0))]
    return g.node("Slice", [name, *bounds], [f"{name}_{tag}"])


def layer_names(lstm: LSTM) -> list[list[dict[str, str]]]:
    """Per layer, per direction: the parameter names by role (``weight_ih``, ...)."""
    D = 2 if lstm.bidirectional else 1
    roles = ("weight_ih", "weight_hh", "bias_ih", "bias_hh", "weight_hr")
    suffixes = [[f"_l{layer}" + ("_reverse" if d else "") for d in range(D)]
                for layer in range(lstm.num_layers)]  # fmt: skip
    return [[{"suffix": sfx} | {r: r + sfx for r in roles} for sfx in layer] for layer in suffixes]
