"""Initialisations for lstmkit.LSTM and lstmkit.LSTMCell (in place, like ``torch.nn.init``).

* :func:`default_`: torch's: every parameter ~ U(-1/sqrt(H), 1/sqrt(H)) in registration
  order (so the same seed gives nn.LSTM's weights; layer-norm gains 1 and biases 0),
  then ``forget_bias`` added to the forget slice ``[H:2H]`` of every ``bias_ih``
  (Jozefowicz et al. 2015 use 1.0).
* :func:`keras_`: Keras's LSTM: Glorot-uniform input (and projection) weights,
  orthogonal recurrent weights, zero biases, a unit forget bias.
* :func:`orthogonal_recurrent_`: orthogonal recurrent weights, the rest untouched.
"""

from __future__ import annotations

import math
import re

import torch
from torch import nn

from .functional import LayerWeights
from .options import PARAMETERS

#: The option parameters with a constant initial value (layer-norm gains 1, biases 0).
_CONSTANT_INIT = {p.name: p.init for p in PARAMETERS if p.init is not None}


def layer_weights(module: nn.Module) -> list[LayerWeights]:
    """Every layer-direction's weights of an lstmkit.LSTM, or the one of an LSTMCell."""
    return module.layer_weights()


@torch.no_grad()
def default_(module: nn.Module, forget_bias: float = 0.0) -> None:
    """torch's initialisation, then ``forget_bias`` on every ``bias_ih``'s forget slice."""
    stdv = 1.0 / math.sqrt(module.hidden_size)
    for name, weight in module.named_parameters():
        constant = _CONSTANT_INIT.get(re.sub(r"_l\d+(_reverse)?$", "", name))
        if constant is None:
            nn.init.uniform_(weight, -stdv, stdv)
        else:
            nn.init.constant_(weight, constant)
    if forget_bias:
        add_forget_bias_(module, forget_bias)


@torch.no_grad()
def add_forget_bias_(module: nn.Module, value: float) -> None:
    """Add ``value`` to the forget-gate slice ``[H:2H]`` of every ``bias_ih``."""
    H = module.hidden_size
    for w in layer_weights(module):
        if w.bias_ih is None:
            raise ValueError("a forget bias needs bias=True (it lives in bias_ih)")
        w.bias_ih[H : 2 * H] += value


@torch.no_grad()
def keras_(module: nn.Module) -> None:
    """Keras's LSTM initialisation (``glorot_uniform``, ``orthogonal``, zeros,
    ``unit_forget_bias=True``), in torch's layout."""
    for w in layer_weights(module):
        nn.init.xavier_uniform_(w.weight_ih)
        _orthogonal_rows_(w.weight_hh)
        if w.weight_hr is not None:
            nn.init.xavier_uniform_(w.weight_hr)
        for b in (w.bias_ih, w.bias_hh):
            if b is not None:
                b.zero_()
    if module.bias:
        add_forget_bias_(module, 1.0)


@torch.no_grad()
def orthogonal_recurrent_(module: nn.Module) -> None:
    """Orthogonal recurrent weights ``W_hh``; every other parameter is left as it is."""
    for w in layer_weights(module):
        _orthogonal_rows_(w.weight_hh)


def _orthogonal_rows_(weight: torch.Tensor) -> None:
    """Keras's ``orthogonal`` on the recurrent kernel ``(P, 4H) = W_hh^T``: orthonormal
    rows of the kernel are orthonormal columns of ``W_hh (4H, P)``."""
    nn.init.orthogonal_(weight)
