"""``lstmkit.LSTMCell``: torch.nn.LSTMCell's contract on lstmkit's one cell function."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from . import init
from ._checks import check_bool, check_positive_int
from ._lean_step import lean_cell
from ._options import OptionAttributes, register_option_parameters
from .backends import check_backend_name, select
from .backends.contract import at_step
from .cell import cell_step
from .functional import LayerWeights, cell_inputs, input_projection
from .masks import draw, recurrent_dropout_mask


class LSTMCell(OptionAttributes, nn.Module):
    r"""One LSTM step, a drop-in for :class:`torch.nn.LSTMCell`.

    .. math::
        \begin{aligned}
        i &= \sigma(W_{ii} x + b_{ii} + W_{hi} h + b_{hi}) &
        f &= \sigma(W_{if} x + b_{if} + W_{hf} h + b_{hf}) \\
        g &= \tanh(W_{ig} x + b_{ig} + W_{hg} h + b_{hg}) &
        o &= \sigma(W_{io} x + b_{io} + W_{ho} h + b_{ho}) \\
        c' &= f \odot c + i \odot g & h' &= o \odot \tanh(c')
        \end{aligned}

    Shapes: input ``(B, I)`` or ``(I,)``; ``hx = (h, c)`` each ``(B, H)`` (or ``(H,)``),
    zeros when omitted; returns ``(h', c')`` of the same shapes. Parameters
    ``weight_ih (4H, I)``, ``weight_hh (4H, H)``, ``bias_ih (4H,)``, ``bias_hh (4H,)``
    (``None`` when ``bias=False``), initialised ~ U(-1/sqrt(H), 1/sqrt(H)).
    ``backend`` (keyword-only) as on :class:`lstmkit.LSTM`; ``auto`` runs the cell
    function directly, the cheapest for a single step with autograd. Without autograd
    (float32/float64 CPU tensors, ``auto`` or ``compiled``, no tracer, transform or
    autocast) a call is one compiled call of the ``compiled`` engine's step kernel, as
    :meth:`lstmkit.LSTM.step` is (:mod:`lstmkit._lean_step`): the same numbers to float
    rounding, and the same random draws.

    The keyword-only cell options are :class:`lstmkit.LSTM`'s (``layer_norm`` adds
    ``ln_weight_ih``, ``ln_weight_hh``, ``ln_weight_c``, ``ln_bias_c``). Zoneout draws
    its masks at every call. Recurrent dropout keeps one mask for a whole sequence, so
    the caller draws it once and passes it at every step::

        mask = cell.recurrent_dropout_mask(batch_size)   # None in eval mode
        for x_t in x:
            h, c = cell(x_t, (h, c), recurrent_mask=mask)

    Example:
        >>> cell = LSTMCell(10, 20)
        >>> h, c = cell(torch.randn(3, 10))
        >>> h.shape, c.shape
        (torch.Size([3, 20]), torch.Size([3, 20]))
    """

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        bias: bool = True,
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
        self.backend = check_backend_name(backend)
        check_bool("bias", bias)
        check_positive_int("input_size", input_size)
        check_positive_int("hidden_size", hidden_size)
        self._init_options(bias, dict(
            peephole=peephole, gate_clip=gate_clip, cell_clip=cell_clip,
            recurrent_dropout=recurrent_dropout, zoneout=zoneout, layer_norm=layer_norm,
            activation=activation, recurrent_activation=recurrent_activation,
            forget_bias=forget_bias,
        ))  # fmt: skip
        self.input_size = input_size
        self.hidden_size = hidden_size
        self.bias = bias
        factory = {"device": device, "dtype": dtype}
        self.weight_ih = nn.Parameter(torch.empty(4 * hidden_size, input_size, **factory))
        self.weight_hh = nn.Parameter(torch.empty(4 * hidden_size, hidden_size, **factory))
        if bias:
            self.bias_ih = nn.Parameter(torch.empty(4 * hidden_size, **factory))
            self.bias_hh = nn.Parameter(torch.empty(4 * hidden_size, **factory))
        else:
            self.register_parameter("bias_ih", None)
            self.register_parameter("bias_hh", None)
        register_option_parameters(self, hidden_size, "", factory)
        # the LayerWeights fields this cell registered (bias_ih/bias_hh even as None)
        self._layer_fields = tuple(
            n if n in self._parameters else None for n in LayerWeights._fields
        )
        self.reset_parameters()

    def layer_weights(self) -> list[LayerWeights]:
        """The parameters as one :class:`~lstmkit.functional.LayerWeights`.

        A weight that torch's parametrizations or pruning took out of ``_parameters`` is
        read as an attribute, which computes it (once per call).
        """
        params = self._parameters  # direct lookup: nn.Module.__getattr__ is slow per call
        return [LayerWeights(*[
            None if n is None else params[n] if n in params else getattr(self, n)
            for n in self._layer_fields
        ])]  # fmt: skip

    def recurrent_dropout_mask(self, batch_size: int) -> Tensor | None:
        """A recurrent-dropout mask ``(B, H)`` to pass as ``recurrent_mask=`` at every step
        of one sequence (units kept with probability ``1 - p``, scaled ``1 / (1 - p)``);
        ``None`` in eval mode or without recurrent dropout."""
        if not (self.training and self.recurrent_dropout > 0):
            return None
        like = next(self.parameters())  # computes no (parametrized) weight
        return recurrent_dropout_mask(like, batch_size, self.hidden_size,
                                      self.recurrent_dropout)  # fmt: skip

    def reset_parameters(self) -> None:
        """Every parameter ~ U(-1/sqrt(H), 1/sqrt(H)), in registration order, as torch
        does; then ``forget_bias`` is added to the forget slice of ``bias_ih``."""
        init.default_(self, self.forget_bias)

    def forward(
        self,
        input: Tensor,
        hx: tuple[Tensor, Tensor] | None = None,
        *,
        recurrent_mask: Tensor | None = None,
    ) -> tuple[Tensor, Tensor]:
        """``(h', c')`` after one step from ``hx`` on ``input``, exactly as nn.LSTMCell.

        ``recurrent_mask`` (keyword-only): ``(B, H)`` (``(H,)`` unbatched), multiplies
        ``h`` before ``W_hh``; see :meth:`recurrent_dropout_mask`. Required in training
        with ``recurrent_dropout > 0``.
        """
        if not torch.is_grad_enabled():  # one compiled call where it gives the same result
            lean = lean_cell(self, input, hx, recurrent_mask)
            if lean is not None:
                return lean
        (w,) = self.layer_weights()
        x, (h, c), batched = self._normalize(input, hx, w.weight_ih.dtype)
        xg = input_projection(x, w)  # (B, 4H)
        mask = self._check_mask(recurrent_mask, x.shape[0], batched)
        drawn = draw(x, 1, x.shape[0], (self.hidden_size,) * 2, dict(self.settings),
                     self.training, skip=("recurrent_dropout",))  # fmt: skip
        if mask is not None:  # the caller's, for the whole sequence
            drawn["recurrent_mask"] = mask
        config, tensors = cell_inputs(w, self.settings, drawn)
        if self.backend in ("auto", "reference"):  # one step: the cell itself is cheapest
            h, c = cell_step(xg, h, c, w.weight_hh, None, config, at_step(tensors, 0))
        else:  # the chosen backend's recurrence, over a sequence of length one
            run = select(self.backend, xg[None], config.used())
            _, h, c = run(xg[None], h, c, w.weight_hh, config=config, tensors=tensors)
        if not batched:
            return h.squeeze(0), c.squeeze(0)
        return h, c

    def _check_mask(self, mask: Tensor | None, batch: int, batched: bool) -> Tensor | None:
        """The recurrent mask as ``(B, H)``, after checking it (or that one is needed)."""
        if mask is None:
            if self.training and self.recurrent_dropout > 0:
                raise ValueError(
                    f"LSTMCell: recurrent_dropout={self.recurrent_dropout} in training needs "
                    "one mask for the whole sequence: draw mask = "
                    "cell.recurrent_dropout_mask(batch_size) once and pass "
                    "recurrent_mask=mask at every step"
                )
            return None
        want = (batch, self.hidden_size) if batched else (self.hidden_size,)
        if not isinstance(mask, Tensor) or tuple(mask.shape) != want:
            got = tuple(mask.shape) if isinstance(mask, Tensor) else type(mask).__name__
            raise ValueError(f"LSTMCell: recurrent_mask should have shape {want}, got {got}")
        return mask if batched else mask.unsqueeze(0)

    def _normalize(
        self, input: Tensor, hx: object, weight_dtype: torch.dtype
    ) -> tuple[Tensor, tuple[Tensor, Tensor], bool]:
        """nn.LSTMCell's checks, in its order; returns 2-D ``x``, ``(h, c)`` and batchedness."""
        if input.dim() not in (1, 2):
            raise ValueError(f"LSTMCell: Expected input to be 1D or 2D, got {input.dim()}D instead")
        batched = input.dim() == 2
        x = input if batched else input.unsqueeze(0)  # (B, I)
        if x.dtype != weight_dtype:
            raise RuntimeError(
                f"LSTMCell: input dtype ({x.dtype}) does not match weight dtype "
                f"({weight_dtype}). Convert input: input.to({weight_dtype}), "
                f"or convert model: model.to({x.dtype})"
            )
        if hx is None:
            zeros = x.new_zeros(x.shape[0], self.hidden_size)
            pair = (zeros, zeros)
        else:
            if not isinstance(hx, (tuple, list)) or len(hx) != 2:
                raise TypeError(
                    f"LSTMCell: hx should be a tuple (h, c) of two tensors, got {type(hx).__name__}"
                )
            for idx, value in enumerate(hx):
                if value.dim() not in (1, 2):
                    raise ValueError(
                        f"LSTMCell: Expected hx[{idx}] to be 1D or 2D, got {value.dim()}D instead"
                    )
                if value.dim() != input.dim():
                    raise RuntimeError(
                        f"LSTMCell: hx[{idx}] should be {input.dim()}-D like the input, "
                        f"got {value.dim()}-D"
                    )
                if value.dtype != x.dtype:
                    raise RuntimeError(
                        f"LSTMCell: hx[{idx}] dtype ({value.dtype}) does not match "
                        f"input dtype ({x.dtype})"
                    )
            pair = (hx[0], hx[1]) if batched else (hx[0].unsqueeze(0), hx[1].unsqueeze(0))
        if x.shape[1] != self.input_size:
            raise RuntimeError(
                f"input has inconsistent input_size: got {x.shape[1]} expected {self.input_size}"
            )
        for idx, value in enumerate(pair):
            if value.shape[0] != x.shape[0]:
                raise RuntimeError(
                    f"Input batch size {x.shape[0]} doesn't match hidden{idx} batch size "
                    f"{value.shape[0]}"
                )
            if value.shape[1] != self.hidden_size:
                raise RuntimeError(
                    f"hidden{idx} has inconsistent hidden_size: got {value.shape[1]}, "
                    f"expected {self.hidden_size}"
                )
        return x, pair, batched

    def extra_repr(self) -> str:
        s = f"{self.input_size}, {self.hidden_size}"
        if self.bias is not True:
            s += f", bias={self.bias}"
        s += self._options_repr()
        if self.backend != "auto":
            s += f", backend={self.backend!r}"
        return s
