"""Weights from other frameworks' LSTM layouts into an lstmkit.LSTM (and torch's layout).

torch (and lstmkit) keep, per layer and direction, ``weight_ih (4H, I)``, ``weight_hh
(4H, H)``, ``bias_ih``, ``bias_hh`` with gates in the order i, f, g, o. Other layouts:

=========  ==========================================  ===========  =====================
source     weights                                     gate order   biases
=========  ==========================================  ===========  =====================
Keras      ``kernel (I, 4H)``, ``recurrent_kernel``    i, f, c, o   one ``bias (4H)``
           ``(H, 4H)``: transposed
ONNX       ``W (D, 4H, I)``, ``R (D, 4H, H)``          i, o, f, c   ``B (D, 8H)`` =
           (the ``LSTM`` operator's inputs)                         [Wb, Rb]
haste      ``kernel (I, 4H)``, ``recurrent_kernel``    i, g, f, o   one ``bias (4H)``
           ``(H, 4H)``: transposed; LayerNormLSTM
           adds ``gamma (2, 4H)``, ``gamma_h``,
           ``beta_h (H)``
=========  ==========================================  ===========  =====================

(Keras's ``c`` is torch's ``g``.) A single bias goes to ``bias_ih`` with ``bias_hh``
zeroed: the sum, which is all the cell uses, is the same.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from .lstm import LSTM
from .options import BY_NAME

#: For each of torch's gates i, f, g, o: its position in the source's gate order.
KERAS_ORDER = (0, 1, 2, 3)  # source i, f, c, o
ONNX_ORDER = (0, 2, 3, 1)  # source i, o, f, c
HASTE_ORDER = (0, 2, 1, 3)  # source i, g, f, o


def to_torch_gates(t: Tensor, order: Sequence[int], dim: int = 0) -> Tensor:
    """Reorder the 4H axis ``dim`` of ``t`` from a source gate order into i, f, g, o."""
    chunks = torch.as_tensor(t).chunk(4, dim=dim)
    return torch.cat([chunks[k] for k in order], dim=dim)


def load_keras(
    lstm: LSTM, kernel: Tensor, recurrent_kernel: Tensor, bias: Tensor | None = None, *,
    layer: int = 0, reverse: bool = False,
) -> None:  # fmt: skip
    """Set one layer-direction of ``lstm`` from a Keras ``LSTM``'s ``get_weights()``."""
    _load_kernels(lstm, KERAS_ORDER, kernel, recurrent_kernel, bias, layer, reverse)


def load_haste(
    lstm: LSTM, kernel: Tensor, recurrent_kernel: Tensor, bias: Tensor | None = None, *,
    gamma: Tensor | None = None, gamma_h: Tensor | None = None, beta_h: Tensor | None = None,
    layer: int = 0, reverse: bool = False,
) -> None:  # fmt: skip
    """Set one layer-direction of ``lstm`` from haste's ``LSTM`` weights, or from its
    ``LayerNormLSTM``'s (``lstm`` built with ``layer_norm=True``): ``gamma (2, 4H)``, the
    gains of the input and the recurrent product (gate order i, g, f, o), ``gamma_h`` and
    ``beta_h (H)``, the cell state's gain and bias."""
    norms = (gamma, gamma_h, beta_h)
    given = [x is not None for x in norms]
    if any(given) != lstm.layer_norm or (any(given) and not all(given)):
        raise ValueError(
            "load_haste: pass gamma, gamma_h and beta_h (haste's LayerNormLSTM) exactly when "
            f"the LSTM has layer_norm=True (it has layer_norm={lstm.layer_norm})"
        )
    _load_kernels(lstm, HASTE_ORDER, kernel, recurrent_kernel, bias, layer, reverse)
    if lstm.layer_norm:
        gains = to_torch_gates(torch.as_tensor(gamma), HASTE_ORDER, dim=1)
        suffix = f"_l{layer}" + ("_reverse" if reverse else "")
        _copy(lstm, suffix, {"ln_weight_ih": gains[0], "ln_weight_hh": gains[1],
                             "ln_weight_c": gamma_h, "ln_bias_c": beta_h})  # fmt: skip


def _load_kernels(
    lstm: LSTM, order: Sequence[int], kernel: Tensor, recurrent_kernel: Tensor,
    bias: Tensor | None, layer: int, reverse: bool,
) -> None:  # fmt: skip
    """Transposed kernels ``(I, 4H)``, ``(H, 4H)`` and one bias, gates in ``order``."""
    w_ih = to_torch_gates(kernel, order, dim=1).T
    w_hh = to_torch_gates(recurrent_kernel, order, dim=1).T
    b = None if bias is None else to_torch_gates(bias, order)
    _assign(lstm, layer, reverse, w_ih, w_hh, b, None)


def from_torch(lstm: nn.LSTM, *, backend: str = "auto") -> LSTM:
    """An lstmkit.LSTM with ``lstm``'s configuration, device, dtype, weights and mode."""
    weight = lstm.weight_ih_l0
    ours = LSTM(
        lstm.input_size, lstm.hidden_size, lstm.num_layers, lstm.bias, lstm.batch_first,
        lstm.dropout, lstm.bidirectional, lstm.proj_size, device=weight.device,
        dtype=weight.dtype, backend=backend,
    )  # fmt: skip
    ours.load_state_dict(lstm.state_dict())
    return ours.train(lstm.training)


def to_torch(lstm: LSTM) -> nn.LSTM:
    """PyTorch's own ``nn.LSTM`` with ``lstm``'s configuration, device, dtype, weights and
    mode (lstmkit-only settings such as ``backend`` or ``forget_bias`` have no place there;
    the forget bias is already in the weights). Cell options nn.LSTM cannot express are
    refused rather than dropped."""
    extra = [o for o in lstm.options_used() if BY_NAME[o].in_cell]  # not initialisations
    if extra:
        raise ValueError(f"to_torch: nn.LSTM has no {', '.join(extra)}; this LSTM uses them")
    weight = lstm.weight_ih_l0
    theirs = nn.LSTM(
        lstm.input_size, lstm.hidden_size, lstm.num_layers, lstm.bias, lstm.batch_first,
        lstm.dropout, lstm.bidirectional, lstm.proj_size, device=weight.device,
        dtype=weight.dtype,
    )  # fmt: skip
    theirs.load_state_dict(lstm.state_dict())
    return theirs.train(lstm.training)


def load_onnx(
    lstm: LSTM, W: Tensor, R: Tensor, B: Tensor | None = None, P: Tensor | None = None, *,
    layer: int = 0,
) -> None:  # fmt: skip
    """Set layer ``layer`` of ``lstm`` (every direction) from an ONNX ``LSTM`` node's
    inputs ``W``, ``R``, ``B`` and peepholes ``P (D, 3H)`` (order i, o, f; the LSTM needs
    ``peephole=True`` for them). The node's ``clip`` is lstmkit's ``gate_clip``."""
    W, R = torch.as_tensor(W), torch.as_tensor(R)
    if (P is not None) != lstm.peephole:
        raise ValueError("load_onnx: pass P exactly when the LSTM has peephole=True")
    D = 2 if lstm.bidirectional else 1
    if W.shape[0] != D:
        raise ValueError(f"load_onnx: W has {W.shape[0]} directions, the LSTM has {D}")
    for d in range(D):
        b_ih = b_hh = None
        if B is not None:
            wb, rb = torch.as_tensor(B)[d].chunk(2)
            b_ih, b_hh = to_torch_gates(wb, ONNX_ORDER), to_torch_gates(rb, ONNX_ORDER)
        _assign(lstm, layer, d == 1, to_torch_gates(W[d], ONNX_ORDER),
                to_torch_gates(R[d], ONNX_ORDER), b_ih, b_hh)  # fmt: skip
        if P is not None:
            p_i, p_o, p_f = torch.as_tensor(P)[d].chunk(3)
            suffix = f"_l{layer}" + ("_reverse" if d == 1 else "")
            with torch.no_grad():
                for gate, value in (("i", p_i), ("f", p_f), ("o", p_o)):
                    getattr(lstm, f"weight_c{gate}{suffix}").copy_(value)


def _assign(
    lstm: LSTM, layer: int, reverse: bool, w_ih: Tensor, w_hh: Tensor,
    b_ih: Tensor | None, b_hh: Tensor | None,
) -> None:  # fmt: skip
    if not 0 <= layer < lstm.num_layers:
        raise ValueError(f"layer must be in [0, {lstm.num_layers}), got {layer}")
    if reverse and not lstm.bidirectional:
        raise ValueError("reverse=True needs a bidirectional LSTM")
    if lstm.proj_size:
        raise ValueError("these layouts have no projection; the LSTM has proj_size > 0")
    suffix = f"_l{layer}" + ("_reverse" if reverse else "")
    values = {"weight_ih": w_ih, "weight_hh": w_hh}
    if lstm.bias:
        if b_ih is None:
            raise ValueError("the LSTM has biases: pass the source's bias")
        values["bias_ih"] = b_ih
        values["bias_hh"] = torch.zeros_like(b_ih) if b_hh is None else b_hh
    _copy(lstm, suffix, values)


def _copy(lstm: LSTM, suffix: str, values: dict[str, Tensor]) -> None:
    """Copy ``values`` into the parameters ``name + suffix``, checking every shape first."""
    params = {name: getattr(lstm, name + suffix) for name in values}
    for name, value in values.items():
        value = torch.as_tensor(value)
        if tuple(value.shape) != tuple(params[name].shape):
            raise ValueError(
                f"{name + suffix}: expected shape {tuple(params[name].shape)} after "
                f"conversion, got {tuple(value.shape)}"
            )
    with torch.no_grad():
        for name, value in values.items():
            params[name].copy_(torch.as_tensor(value))
