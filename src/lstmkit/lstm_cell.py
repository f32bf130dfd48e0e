"""``lstmkit.LSTMCell``: torch.nn.LSTMCell's contract on lstmkit's one cell function."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from . import init
from ._checks import check_bool, check_clip, check_forget_bias, check_positive_int
from .backends import check_backend_name, select
from .cell import cell_step
from .functional import LayerWeights, input_projection


class LSTMCell(nn.Module):
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
    function directly, the cheapest for a single step.

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
        forget_bias: float = 0.0,
        backend: str = "auto",
    ) -> None:
        super().__init__()
        self.backend = check_backend_name(backend)
        check_bool("bias", bias)
        check_positive_int("input_size", input_size)
        check_positive_int("hidden_size", hidden_size)
        check_bool("peephole", peephole)
        self.peephole = peephole
        self.gate_clip = check_clip("gate_clip", gate_clip)
        self.cell_clip = check_clip("cell_clip", cell_clip)
        self.forget_bias = check_forget_bias(forget_bias, bias)
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
        if peephole:
            for gate in "ifo":
                self.register_parameter(
                    f"weight_c{gate}", nn.Parameter(torch.empty(hidden_size, **factory))
                )
        self.reset_parameters()

    def layer_weights(self) -> list[LayerWeights]:
        """The parameters as one :class:`~lstmkit.functional.LayerWeights`."""
        peep = [getattr(self, f"weight_c{g}") if self.peephole else None for g in "ifo"]
        return [LayerWeights(self.weight_ih, self.weight_hh, self.bias_ih, self.bias_hh,
                             None, *peep)]  # fmt: skip

    def reset_parameters(self) -> None:
        """Every parameter ~ U(-1/sqrt(H), 1/sqrt(H)), in registration order, as torch
        does; then ``forget_bias`` is added to the forget slice of ``bias_ih``."""
        init.default_(self, self.forget_bias)

    def forward(
        self, input: Tensor, hx: tuple[Tensor, Tensor] | None = None
    ) -> tuple[Tensor, Tensor]:
        """``(h', c')`` after one step from ``hx`` on ``input``, exactly as nn.LSTMCell."""
        x, (h, c), batched = self._normalize(input, hx)
        (w,) = self.layer_weights()
        xg = input_projection(x, w)  # (B, 4H)
        options = w.options(self.gate_clip, self.cell_clip)
        if self.backend in ("auto", "reference"):  # one step: the cell itself is cheapest
            h, c = cell_step(xg, h, c, self.weight_hh, peephole=options.peephole,
                             gate_clip=self.gate_clip, cell_clip=self.cell_clip)  # fmt: skip
        else:  # the chosen backend's recurrence, over a sequence of length one
            run = select(self.backend, xg[None], options.used())
            _, h, c = run(xg[None], h, c, self.weight_hh, options=options)
        if not batched:
            return h.squeeze(0), c.squeeze(0)
        return h, c

    def _normalize(self, input: Tensor, hx: object) -> tuple[Tensor, tuple[Tensor, Tensor], bool]:
        """nn.LSTMCell's checks, in its order; returns 2-D ``x``, ``(h, c)`` and batchedness."""
        if input.dim() not in (1, 2):
            raise ValueError(f"LSTMCell: Expected input to be 1D or 2D, got {input.dim()}D instead")
        batched = input.dim() == 2
        x = input if batched else input.unsqueeze(0)  # (B, I)
        if x.dtype != self.weight_ih.dtype:
            raise RuntimeError(
                f"LSTMCell: input dtype ({x.dtype}) does not match weight dtype "
                f"({self.weight_ih.dtype}). Convert input: input.to({self.weight_ih.dtype}), "
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
        for option in ("peephole", "gate_clip", "cell_clip", "forget_bias"):
            if getattr(self, option):
                s += f", {option}={getattr(self, option)}"
        if self.backend != "auto":
            s += f", backend={self.backend!r}"
        return s
