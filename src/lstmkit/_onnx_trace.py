"""lstmkit layers inside ``torch.onnx.export`` of a whole model: one ONNX ``LSTM`` node
per layer (both directions in one node), as ``nn.LSTM`` exports.

Both exporters are served. The dynamo exporter (``dynamo=True``) records
``torch.onnx.ops.symbolic_multi_out("LSTM", ...)``, which it writes as that node; the
TorchScript exporter (``dynamo=False``) traces an autograd Function (:func:`_lstm_node`)
that computes the layer with lstmkit's engine and whose ``symbolic`` writes the node. The
weights go in converted to the operator's layout by traced torch ops
(:mod:`lstmkit.onnx_operator`): ``W (D, 4H, I)``, ``R (D, 4H, H)``, ``B (D, 8H)``,
``P (D, 3H)``, ``sequence_lens`` from ``lengths``.

A cell the operator cannot express (projection, ``cell_clip``, layer norm, zoneout),
recurrent dropout in training and ``return_states`` are refused with an error that
points to :func:`lstmkit.onnx.export`, which writes those as a ``Scan`` of the cell.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

from .onnx_operator import OPSET, onnx_gate_order, operator_attributes

if TYPE_CHECKING:
    from .functional import LayerWeights

LayerResult = tuple[Tensor, Tensor, Tensor]  # (T, B, D*H), (D, B, H), (D, B, H)


def exporting() -> bool:
    """Whether ``torch.onnx.export`` is capturing the model. Under dynamo (the dynamo
    exporter's capture, and torch.compile) ``torch.onnx.is_in_onnx_export`` is folded to
    False and the TorchScript exporter's flag may not be read (dynamo skips that module's
    functions), so there the dynamo exporter's own flag is read directly; only the
    TorchScript exporter runs outside dynamo."""
    if torch.compiler.is_compiling():
        try:
            from torch.onnx._internal.exporter import _flags
        except ImportError:  # another torch layout: the public test
            return torch.onnx.is_in_onnx_export()
        return bool(_flags._is_onnx_exporting)
    return torch.onnx.is_in_onnx_export()


def refuse(beyond: Sequence[str]) -> None:
    """Raise for what ``torch.onnx.export`` cannot write as ``LSTM`` nodes."""
    raise NotImplementedError(
        f"torch.onnx.export of an lstmkit LSTM with {', '.join(beyond)}: the ONNX LSTM "
        "operator cannot express it; export the LSTM itself with lstmkit.onnx.export "
        "(a Scan of the full cell) and compose the graphs"
    )


def layer(
    x: Tensor,
    h0: Tensor,
    c0: Tensor,
    weights: Sequence[LayerWeights],
    lengths: Tensor | None,
    gate_clip: float | None,
    activation: str,
    recurrent_activation: str,
    compute: Callable[[], LayerResult],
) -> LayerResult:
    """One layer as one ONNX ``LSTM`` node: ``x (T, B, I)``, ``h0 (D, B, H)``, ``c0 (D,
    B, H)`` -> ``(T, B, D*H)``, ``h_n``, ``c_n``. ``compute`` runs the layer in lstmkit
    (what the TorchScript exporter's trace sees as the node's values)."""
    D = len(weights)
    T, B, H = x.shape[0], x.shape[1], c0.shape[2]
    W = torch.stack([onnx_gate_order(w.weight_ih) for w in weights])  # (D, 4H, I)
    R = torch.stack([onnx_gate_order(w.weight_hh) for w in weights])  # (D, 4H, H)
    bias = None
    if weights[0].bias_ih is not None:
        bias = torch.stack(
            [torch.cat([onnx_gate_order(w.bias_ih), onnx_gate_order(w.bias_hh)]) for w in weights]
        )  # (D, 8H)
    peep = None
    if weights[0].weight_ci is not None:  # (D, 3H), the operator's order i, o, f
        peep = torch.stack([torch.cat([w.weight_ci, w.weight_co, w.weight_cf]) for w in weights])
    lens = None if lengths is None else lengths.to(torch.int32)
    attrs = operator_attributes(H, D, gate_clip, activation, recurrent_activation)
    inputs = (x, W, R, bias, lens, h0, c0, peep)
    if torch.jit.is_tracing():  # the TorchScript exporter
        y, h_n, c_n = _lstm_node(inputs, attrs, lambda: _as_operator(*compute(), D))
    else:  # the dynamo exporter
        y, h_n, c_n = torch.onnx.ops.symbolic_multi_out(
            "LSTM", list(inputs), attrs, dtypes=[x.dtype] * 3,
            shapes=[(T, D, B, H), (D, B, H), (D, B, H)], version=OPSET,
        )  # fmt: skip
    return y.transpose(1, 2).reshape(T, B, D * H), h_n, c_n  # (T, D, B, H) -> (T, B, D*H)


def _as_operator(out: Tensor, h_n: Tensor, c_n: Tensor, directions: int) -> LayerResult:
    """lstmkit's layer result in the operator's layout: ``Y (T, D, B, H)``."""
    T, B, _ = out.shape
    return out.reshape(T, B, directions, -1).transpose(1, 2).contiguous(), h_n, c_n


def _lstm_node(
    inputs: Sequence[Tensor | None], attrs: dict[str, Any], compute: Callable[[], LayerResult]
) -> LayerResult:
    """The layer for the TorchScript exporter: an autograd Function whose forward is
    lstmkit's computation and whose ``symbolic`` writes the ``LSTM`` node. The tracer
    takes tensors only, so the omitted inputs, attributes and computation are closed over."""
    given = [t is not None for t in inputs]

    class LSTMNode(torch.autograd.Function):
        @staticmethod
        def forward(ctx: Any, *tensors: Tensor) -> LayerResult:  # type: ignore[override]
            # the node's values, computed untraced: the symbolic below is what is recorded
            state = torch._C._get_tracing_state()
            torch._C._set_tracing_state(None)
            try:
                return compute()
            finally:
                torch._C._set_tracing_state(state)

        @staticmethod
        def symbolic(g: Any, *values: Any) -> Any:
            present = iter(values)
            args = [next(present) if on else _omitted(g) for on in given]
            if not given[-1]:  # no peepholes: the last optional input is left out
                args.pop()
            typed = {f"{k}_{_ATTR_TYPES[k]}": v for k, v in attrs.items()}
            return g.op("LSTM", *args, outputs=3, **typed)

    with torch.no_grad():  # an export is inference; with autograd on the tracer refuses
        return LSTMNode.apply(*(t for t in inputs if t is not None))


def _omitted(g: Any) -> Any:
    """An omitted optional input in the TorchScript exporter's graph (what its own
    symbolics write: a None constant typed as an optional tensor)."""
    node = g.op("prim::Constant")
    node.setType(torch._C.OptionalType.ofTensor())
    return node


#: The TorchScript exporter's attribute type suffixes.
_ATTR_TYPES = {"hidden_size": "i", "direction": "s", "clip": "f", "activations": "s",
               "activation_alpha": "f", "activation_beta": "f"}  # fmt: skip
