"""The LSTM cell: one time step, as a pure function of tensors.

This is the whole of the LSTM's mathematics. Every module and backend in lstmkit
computes exactly this (the ``reference`` backend calls it; faster backends are
checked against it).

Shape legend: ``B`` batch, ``I`` input features, ``H`` hidden units, ``P`` width of
``h`` (``proj_size`` when projecting, else ``H``).

Equations, gates in torch's order ``i, f, g, o``::

    gates = x_t W_ih^T + b_ih + b_hh  +  h_{t-1} W_hh^T       # (B, 4H)
    i, f, o = sigmoid(gates_i), sigmoid(gates_f), sigmoid(gates_o)
    g       = tanh(gates_g)
    c_t = f * c_{t-1} + i * g                                  # (B, H)
    h_t = o * tanh(c_t)                                        # (B, H)
    h_t = h_t W_hr^T                      (only when proj_size > 0: (B, P))

Options, each a guarded line or two below and off by default: peepholes (``i`` and ``f``
see ``c_{t-1}``, ``o`` sees ``c_t``), ``gate_clip`` (pre-activations clamped),
``cell_clip`` (``c_t`` clamped), recurrent dropout, zoneout, other activations
(:mod:`lstmkit.activations`), and layer normalisation (Ba et al. 2016, as haste's
``LayerNormLSTM``; ``LN(z) = (z - mean(z)) / sqrt(var(z) + 1e-5)`` over the last axis)::

    gates = LN(x_t W_ih^T) * g_ih + b_ih + b_hh  +  LN(h_{t-1} W_hh^T) * g_hh
    c_t   = f * c_{t-1} + i * g                                # the raw c_t is carried
    h_t   = o * tanh(LN(c_t) * g_c + beta_c)

The input part ``x_t W_ih^T + b_ih + b_hh`` is computed for all time steps at once,
outside the time loop (:func:`lstmkit.functional.input_projection`); the cell receives
it as ``xg``.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
import torch.nn.functional as F
from torch import Tensor

from .activations import CELL_ACTIVATIONS, GATE_ACTIVATIONS
from .options import NO_TENSORS, PLAIN, CellConfig

#: The epsilon of every layer normalisation (haste's and torch's default).
LN_EPS = 1e-5


def layer_normalized(z: Tensor, weight: Tensor, bias: Tensor | None = None) -> Tensor:
    """``LN(z) * weight (+ bias)`` over the last axis, biased variance, eps ``1e-5``."""
    return F.layer_norm(z, z.shape[-1:], weight, bias, LN_EPS)


def cell_step(
    xg: Tensor,
    h: Tensor,
    c: Tensor,
    weight_hh: Tensor,
    weight_hr: Tensor | None = None,
    config: CellConfig = PLAIN,
    tensors: Mapping[str, Tensor] = NO_TENSORS,
    *,
    return_gates: bool = False,
) -> tuple[Tensor, Tensor] | tuple[Tensor, Tensor, tuple[Tensor, Tensor, Tensor, Tensor]]:
    """One LSTM step from the projected input.

    Args:
        xg: ``x_t W_ih^T + b_ih + b_hh``, shape ``(B, 4H)``.
        h: previous hidden state ``h_{t-1}``, shape ``(B, P)``.
        c: previous cell state ``c_{t-1}``, shape ``(B, H)``.
        weight_hh: recurrent weights ``W_hh``, shape ``(4H, P)``.
        weight_hr: projection weights ``W_hr``, shape ``(P, H)``, or ``None``.
        config: the options (:class:`lstmkit.options.CellConfig`), all off by default:

            * ``peephole``: ``i`` and ``f`` also see ``w_ci * c_{t-1}``, ``w_cf * c_{t-1}``,
              ``o`` sees ``w_co * c_t`` (the ONNX LSTM operator's peepholes);
            * ``gate_clip``: every gate pre-activation clamped to ``[-gate_clip,
              gate_clip]`` before its activation (the ONNX operator's ``clip``);
            * ``cell_clip``: ``c_t`` clamped to ``[-cell_clip, cell_clip]`` after the update;
            * ``recurrent_dropout``: ``h_{t-1}`` multiplied by ``recurrent_mask`` before
              ``W_hh`` (variational recurrent dropout, Gal & Ghahramani 2016: the same mask
              at every step);
            * ``zoneout`` (Krueger et al. 2017): each unit keeps its previous value by
              weight ``k``: ``h_t = k_h h_{t-1} + (1-k_h) h'`` (likewise ``c``); ``k`` in
              {0, 1} in training, the zoneout rate in eval;
            * ``layer_norm``: ``h_{t-1} W_hh^T`` becomes ``LN(h_{t-1} W_hh^T) * g_hh`` and
              ``h_t = o * act(LN(c_t) * g_c + beta_c)`` (``xg`` then already holds
              ``LN(x_t W_ih^T) * g_ih + b``);
            * ``activation``: for ``g`` and for ``c_t`` before ``o`` (``tanh``, ``relu``,
              ``softsign``); ``recurrent_activation``: for ``i, f, o`` (``sigmoid``,
              ``hardsigmoid``).
        tensors: the options' tensors by name, this step's: ``weight_ci``, ``weight_cf``,
            ``weight_co`` ``(H,)``; ``recurrent_mask`` ``(B, P)``; ``zoneout_h`` ``(B, P)``,
            ``zoneout_c`` ``(B, H)``; ``ln_weight_hh`` ``(4H,)``, ``ln_weight_c``,
            ``ln_bias_c`` ``(H,)``.
        return_gates: also return the activated gates ``(i, f, g, o)``, each ``(B, H)``
            (to look inside the cell: :mod:`lstmkit.trace`).

    Returns:
        ``(h_t, c_t)`` with shapes ``(B, P)`` and ``(B, H)``.

    Example:
        >>> B, H = 3, 5
        >>> h, c = cell_step(torch.randn(B, 4 * H), torch.zeros(B, H), torch.zeros(B, H),
        ...                  torch.randn(4 * H, H))
        >>> h.shape, c.shape
        (torch.Size([3, 5]), torch.Size([3, 5]))
    """
    sigma = GATE_ACTIVATIONS[config.recurrent_activation].fn
    act = CELL_ACTIVATIONS[config.activation].fn
    gate_clip, cell_clip = config.gate_clip, config.cell_clip
    h_prev, c_prev = h, c
    h_in = h * tensors["recurrent_mask"] if config.recurrent_dropout else h
    if config.layer_norm:
        gates = xg + layer_normalized(h_in @ weight_hh.t(), tensors["ln_weight_hh"])
    else:
        gates = torch.addmm(xg, h_in, weight_hh.t())  # (B, 4H)
    i, f, g, o = gates.chunk(4, dim=1)  # (B, H) each
    if config.peephole:
        i = i + tensors["weight_ci"] * c
        f = f + tensors["weight_cf"] * c
    if gate_clip is not None:
        i, f, g = (t.clamp(-gate_clip, gate_clip) for t in (i, f, g))
    i = sigma(i)
    f = sigma(f)
    g = act(g)
    c = f * c + i * g
    if cell_clip is not None:
        c = c.clamp(-cell_clip, cell_clip)
    if config.peephole:
        o = o + tensors["weight_co"] * c
    if gate_clip is not None:
        o = o.clamp(-gate_clip, gate_clip)
    o = sigma(o)
    c_out = c
    if config.layer_norm:
        c_out = layer_normalized(c, tensors["ln_weight_c"], tensors["ln_bias_c"])
    h = o * act(c_out)
    if weight_hr is not None:
        h = h @ weight_hr.t()  # (B, P)
    if config.zoneout:
        h = torch.lerp(h, h_prev, tensors["zoneout_h"])
        c = torch.lerp(c, c_prev, tensors["zoneout_c"])
    if return_gates:
        return h, c, (i, f, g, o)
    return h, c
