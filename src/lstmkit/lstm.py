"""``lstmkit.LSTM``: PyTorch's ``nn.LSTM`` contract, computed by lstmkit's own recurrence.

The module owns parameters (torch's names, shapes, order and initialisation) and
plumbing; the mathematics lives in :mod:`lstmkit.cell`, the loop in
:mod:`lstmkit.backends`, layers and directions in :mod:`lstmkit.functional`.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn
from torch.nn.utils.rnn import PackedSequence

from . import functional, init
from ._checks import check_constructor
from ._compat import LSTMCompat
from ._inputs import Sizes, normalize
from ._lean_forward import lean_forward
from ._options import OptionAttributes, register_option_parameters
from .backends import check_backend_name
from .lstm_step import Streaming


class LSTM(Streaming, OptionAttributes, LSTMCompat, nn.Module):
    r"""A multi-layer LSTM, a drop-in for PyTorch's ``nn.LSTM``.

    For each layer and each element of the input sequence, in gate order i, f, g, o:

    .. math::
        \begin{aligned}
        i_t &= \sigma(W_{ii} x_t + b_{ii} + W_{hi} h_{t-1} + b_{hi}) \\
        f_t &= \sigma(W_{if} x_t + b_{if} + W_{hf} h_{t-1} + b_{hf}) \\
        g_t &= \tanh(W_{ig} x_t + b_{ig} + W_{hg} h_{t-1} + b_{hg}) \\
        o_t &= \sigma(W_{io} x_t + b_{io} + W_{ho} h_{t-1} + b_{ho}) \\
        c_t &= f_t \odot c_{t-1} + i_t \odot g_t \\
        h_t &= o_t \odot \tanh(c_t) \qquad (h_t = W_{hr}(o_t \odot \tanh(c_t))
               \text{ when proj\_size} > 0)
        \end{aligned}

    Layer ``l > 0`` takes the (dropout-ed, in training) output of layer ``l - 1`` as
    its input. Arguments, parameters, outputs and errors are those of ``nn.LSTM``, so
    ``load_state_dict`` works both ways.

    Shapes: ``T`` time, ``B`` batch, ``I`` input_size, ``H`` hidden_size, ``P`` proj_size
    (or ``H``), ``L`` num_layers, ``D`` 2 if bidirectional else 1.

    * input ``(T, B, I)``, ``(B, T, I)`` with ``batch_first``, ``(T, I)`` unbatched, or a
      ``PackedSequence``;
    * ``hx = (h_0, c_0)``: ``(L*D, B, P)`` and ``(L*D, B, H)`` (no ``B`` when unbatched),
      zeros when omitted;
    * output ``(T, B, D*P)`` (same layout as the input), ``h_n (L*D, B, P)``,
      ``c_n (L*D, B, H)``.

    Args:
        input_size, hidden_size, num_layers, bias, batch_first, dropout, bidirectional,
        proj_size, device, dtype: as in PyTorch's ``nn.LSTM``.
        peephole, gate_clip, cell_clip, recurrent_dropout, zoneout, layer_norm, activation,
            recurrent_activation, forget_bias: keyword-only cell options, all off by
            default, declared in :data:`lstmkit.options.OPTIONS` (equations in
            :func:`lstmkit.cell.cell_step` and the README's options table); each is an
            attribute, checked when set. ``peephole`` adds ``weight_ci_l{k}``,
            ``weight_cf_l{k}``, ``weight_co_l{k}`` (H); ``layer_norm`` adds
            ``ln_weight_ih_l{k}``, ``ln_weight_hh_l{k}`` (4H), ``ln_weight_c_l{k}``,
            ``ln_bias_c_l{k}`` (H), initialised 1, 1, 1, 0.
        backend: keyword-only; which recurrence backend runs the time loop
            (``"auto"`` picks the fastest that supports the call).

    Example:
        >>> lstm = LSTM(128, 64, batch_first=True)
        >>> out, (h_n, c_n) = lstm(torch.randn(4, 5, 128))
        >>> out.shape, h_n.shape
        (torch.Size([4, 5, 64]), torch.Size([1, 4, 64]))
    """

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        bias: bool = True,
        batch_first: bool = False,
        dropout: float = 0.0,
        bidirectional: bool = False,
        proj_size: int = 0,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
        *,
        peephole: bool = False,
        gate_clip: float | None = None,
        cell_clip: float | None = None,
        recurrent_dropout: float = 0.0,
        zoneout: float | tuple[float, float] = 0.0,
        layer_norm: bool = False,
        activation: str = "tanh",
        recurrent_activation: str = "sigmoid",
        forget_bias: float = 0.0,
        backend: str = "auto",
    ) -> None:
        super().__init__()
        check_constructor(
            input_size, hidden_size, num_layers, bias, batch_first, dropout, proj_size
        )
        self._init_options(bias, dict(
            peephole=peephole, gate_clip=gate_clip, cell_clip=cell_clip,
            recurrent_dropout=recurrent_dropout, zoneout=zoneout, layer_norm=layer_norm,
            activation=activation, recurrent_activation=recurrent_activation,
            forget_bias=forget_bias,
        ))  # fmt: skip
        self.input_size = input_size
        self.hidden_size = hidden_size
        self.num_layers = num_layers
        self.bias = bias
        self.batch_first = batch_first
        self.dropout = float(dropout)
        self.bidirectional = bidirectional
        self.proj_size = proj_size
        self.backend = check_backend_name(backend)

        factory = {"device": device, "dtype": dtype}
        num_directions = 2 if bidirectional else 1
        real_hidden_size = proj_size if proj_size > 0 else hidden_size
        self._flat_weights_names: list[str] = []
        self._all_weights: list[list[str]] = []
        self._layer_fields: list[tuple[str | None, ...]] = []  # LayerWeights order, per k
        for layer in range(num_layers):
            layer_input_size = input_size if layer == 0 else real_hidden_size * num_directions
            for direction in range(num_directions):
                suffix = f"_l{layer}" + ("_reverse" if direction == 1 else "")
                shapes = {
                    "weight_ih": (4 * hidden_size, layer_input_size),
                    "weight_hh": (4 * hidden_size, real_hidden_size),
                }
                if bias:
                    shapes |= {"bias_ih": (4 * hidden_size,), "bias_hh": (4 * hidden_size,)}
                if proj_size > 0:
                    shapes["weight_hr"] = (proj_size, hidden_size)
                names = [name + suffix for name in shapes]
                for name, shape in zip(names, shapes.values()):
                    self.register_parameter(name, nn.Parameter(torch.empty(shape, **factory)))
                names += register_option_parameters(self, hidden_size, suffix, factory)
                self._flat_weights_names.extend(names)
                self._all_weights.append(names)
                self._layer_fields.append(
                    tuple(
                        f"{field}{suffix}" if f"{field}{suffix}" in names else None
                        for field in functional.LayerWeights._fields
                    )
                )
        self.reset_parameters()

    @classmethod
    def from_torch(cls, lstm: nn.LSTM, *, backend: str = "auto") -> LSTM:
        """An lstmkit.LSTM with ``lstm``'s configuration, device, dtype, weights and mode."""
        from .interop import from_torch

        return from_torch(lstm, backend=backend)

    def to_torch(self) -> nn.LSTM:
        """PyTorch's ``nn.LSTM`` with this module's configuration, device, dtype, weights
        and mode."""
        from .interop import to_torch

        return to_torch(self)

    def reset_parameters(self) -> None:
        """Every parameter ~ U(-1/sqrt(H), 1/sqrt(H)), in registration order, as torch
        does (layer-norm gains 1 and bias 0, drawing nothing); then ``forget_bias`` is
        added to the forget slice of ``bias_ih``."""
        init.default_(self, self.forget_bias)

    def flatten_parameters(self) -> None:
        """No-op, for nn.LSTM compatibility (lstmkit keeps no flat weight buffer)."""

    @property
    def all_weights(self) -> list[list[nn.Parameter]]:
        """Parameters grouped per layer-direction, as in ``nn.LSTM.all_weights``."""
        return [[getattr(self, name) for name in names] for names in self._all_weights]

    @property
    def _flat_weights(self) -> list[Tensor]:
        return [getattr(self, name) for name in self._flat_weights_names]

    def layer_weights(self) -> list[functional.LayerWeights]:
        """The parameters as ``L*D`` :class:`~lstmkit.functional.LayerWeights`, layer-major.

        A weight that torch's parametrizations or pruning took out of ``_parameters``
        (``register_parametrization``, ``weight_norm``, ``spectral_norm``, ``prune``) is
        read as an attribute, which computes it from its underlying tensors; each is
        computed once per call.
        """
        params = self._parameters  # direct lookup: nn.Module.__getattr__ is slow per call
        return [
            functional.LayerWeights(*[
                None if n is None else params[n] if n in params else getattr(self, n)
                for n in names
            ])
            for names in self._layer_fields
        ]  # fmt: skip

    def _sizes(self, batch_first: bool | None = None) -> Sizes:
        return Sizes(
            input_size=self.input_size,
            hidden_size=self.hidden_size,
            real_hidden_size=self.proj_size if self.proj_size > 0 else self.hidden_size,
            state_rows=self.num_layers * (2 if self.bidirectional else 1),
            batch_first=self.batch_first if batch_first is None else batch_first,
        )

    def forward(
        self,
        input: Tensor | PackedSequence,
        hx: tuple[Tensor, Tensor] | None = None,
        *,
        lengths: Tensor | Sequence[int] | None = None,
        return_states: bool = False,
    ) -> (
        tuple[Tensor | PackedSequence, tuple[Tensor, Tensor]]
        | tuple[Tensor | PackedSequence, tuple[Tensor, Tensor], functional.States]
    ):
        """``(output, (h_n, c_n))`` for ``input`` from state ``hx``, exactly as nn.LSTM.

        ``lengths`` (keyword-only, padded tensor input): each sequence's valid length,
        shape ``(B,)`` with values in ``[0, T]``. The result is what packing the batch
        would give, without packing: ``h_n``/``c_n`` at each sequence's own last step,
        the reverse direction starting there, and zeros in ``output`` past each end.

        ``return_states=True`` (keyword-only) adds a third result, every step's state of
        every layer and direction: ``states.h`` of shape ``(L*D, T, B, P)`` and
        ``states.c`` of shape ``(L*D, T, B, H)`` (``(L*D, B, T, *)`` with
        ``batch_first``, no ``B`` when unbatched, padded and in the caller's batch order
        for a ``PackedSequence``), zeros past each sequence's end; gradients flow
        through them.
        """
        if lengths is None and not return_states:
            lean = lean_forward(self, input, hx)  # float32 CPU inference: the short path
            if lean is not None:
                return lean
        weights = self.layer_weights()
        batch = normalize(input, hx, self._sizes(), weights[0].weight_ih, lengths)
        out, state, *states = functional.lstm(
            batch.x,
            batch.hx,
            weights,
            bidirectional=self.bidirectional,
            dropout=self.dropout,
            training=self.training,
            lengths=batch.lengths,
            backend=self.backend,
            return_states=return_states,
            **self._call_options,
        )
        if not return_states:
            return batch.restore(out, state)
        h, c = states[0]  # (L*D, T, B, *)
        if not batch.batched:
            h, c = h.squeeze(2), c.squeeze(2)
        elif self.batch_first:
            h, c = h.transpose(1, 2), c.transpose(1, 2)
        return (*batch.restore(out, state), functional.States(h, c))

    def extra_repr(self) -> str:
        s = f"{self.input_size}, {self.hidden_size}"
        if self.proj_size != 0:
            s += f", proj_size={self.proj_size}"
        if self.num_layers != 1:
            s += f", num_layers={self.num_layers}"
        if self.bias is not True:
            s += f", bias={self.bias}"
        if self.batch_first is not False:
            s += f", batch_first={self.batch_first}"
        if self.dropout != 0:
            s += f", dropout={self.dropout}"
        if self.bidirectional is not False:
            s += f", bidirectional={self.bidirectional}"
        s += self._options_repr()
        if self.backend != "auto":
            s += f", backend={self.backend!r}"
        return s
