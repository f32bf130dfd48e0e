"""``LSTM.step``: one time step of every layer at a time, for loops that feed each output
back (sampling, the lab's step-by-step loop), equal to the layer run on the sequence.

Shapes: ``B`` batch, ``I`` input_size, ``H`` hidden_size, ``P`` proj_size (or ``H``),
``L`` num_layers.
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor

from . import functional
from ._compat import recompute_hooked_weights
from ._inputs import normalize
from ._lean_step import lean_step


class Streaming:
    """Mixin of :class:`lstmkit.LSTM`: :meth:`step` and the recurrent-dropout masks it
    takes (:meth:`recurrent_dropout_masks`)."""

    def recurrent_dropout_masks(self, batch_size: int) -> list[Tensor] | None:
        """One recurrent-dropout mask ``(B, P)`` per layer, to pass to :meth:`step` as
        ``recurrent_masks=`` at every step of one sequence; ``None`` in eval mode or
        without recurrent dropout."""
        if not (self.training and self.recurrent_dropout > 0):
            return None
        width = self.proj_size or self.hidden_size
        p, like = self.recurrent_dropout, next(self.parameters())  # computes no weight
        return [
            functional.recurrent_dropout_mask(like, batch_size, width, p)
            for _ in range(self.num_layers)
        ]

    def step(
        self,
        x_t: Tensor,
        hx: tuple[Tensor, Tensor] | None = None,
        *,
        recurrent_masks: Sequence[Tensor] | None = None,
    ) -> tuple[Tensor, tuple[Tensor, Tensor]]:
        """One time step for all samples: the lab's loop over seq-first data.

        ``x_t`` is ``(B, I)`` (or ``(I,)`` unbatched) whatever ``batch_first`` says;
        ``hx``, ``h`` and ``c`` are ``(L, B, P)`` and ``(L, B, H)`` (no ``B`` when
        unbatched). Looping ``step`` over ``t`` gives ``lstm(x)``'s output and
        final state (to float rounding: without autograd each step is one compiled call
        for every layer, :mod:`lstmkit._lean_step`)::

            state = None
            masks = lstm.recurrent_dropout_masks(B)  # None unless training with it
            for x_t in x.unbind(0):            # x: (T, B, I)
                y_t, state = lstm.step(x_t, state, recurrent_masks=masks)

        ``recurrent_masks`` (keyword-only): one ``(B, P)`` mask per layer, drawn once per
        sequence (:meth:`recurrent_dropout_masks`); required in training with
        ``recurrent_dropout > 0``. Zoneout draws fresh masks at every step by itself.
        A bidirectional LSTM cannot stream (its reverse direction needs the whole
        sequence) and raises ``RuntimeError``.

        ``step`` does not go through ``__call__``, so it runs the forward pre-hooks of
        torch's hook-based reparametrizations (``torch.nn.utils.weight_norm``,
        ``spectral_norm``, ``prune``) itself; like parametrized weights
        (``torch.nn.utils.parametrize``), they are recomputed at every step (inside
        ``parametrize.cached()`` parametrized weights are computed once).
        """
        if self.bidirectional:
            raise RuntimeError(
                "LSTM.step: a bidirectional LSTM cannot run one step at a time "
                "(its reverse direction needs the whole sequence); call it on the sequence"
            )
        if not isinstance(x_t, Tensor) or x_t.dim() not in (1, 2):
            got = f"{x_t.dim()}D" if isinstance(x_t, Tensor) else type(x_t).__name__
            raise ValueError(f"LSTM.step: Expected x_t to be 1D or 2D, got {got} instead")
        masks = self._check_step_masks(recurrent_masks, x_t)
        if self._forward_pre_hooks:  # weight_norm, spectral_norm, prune: as forward would
            recompute_hooked_weights(self, (x_t, hx))
        lean = lean_step(self, x_t, hx, masks)  # no autograd: one compiled call, every layer
        if lean is not None:
            return lean
        weights = self.layer_weights()
        seq = x_t.unsqueeze(0)  # one step, seq-first: (1, B, I) or unbatched (1, I)
        batch = normalize(seq, hx, self._sizes(batch_first=False), weights[0].weight_ih)
        out, state = functional.lstm(
            batch.x,
            batch.hx,
            weights,
            dropout=self.dropout,
            training=self.training,
            backend=self.backend,
            recurrent_masks=masks,
            **self._call_options,
        )
        y, state = batch.restore(out, state)
        return y[0], state

    def _check_step_masks(self, masks: Sequence[Tensor] | None, x_t: Tensor) -> list | None:
        """``step``'s recurrent masks as ``L`` tensors ``(B, P)``, after checking them."""
        if masks is None:
            if self.training and self.recurrent_dropout > 0:
                raise ValueError(
                    f"LSTM.step: recurrent_dropout={self.recurrent_dropout} in training needs "
                    "one mask per layer for the whole sequence: draw masks = "
                    "lstm.recurrent_dropout_masks(batch_size) once and pass "
                    "recurrent_masks=masks at every step"
                )
            return None
        width = self.proj_size or self.hidden_size
        want = (x_t.shape[0], width) if x_t.dim() == 2 else (width,)
        if (
            not isinstance(masks, Sequence)
            or len(masks) != self.num_layers
            or any(not isinstance(m, Tensor) or tuple(m.shape) != want for m in masks)
        ):
            got = type(masks).__name__
            if isinstance(masks, Sequence):
                got = [tuple(m.shape) if isinstance(m, Tensor) else type(m).__name__ for m in masks]
            raise ValueError(
                f"LSTM.step: recurrent_masks should be {self.num_layers} tensors of shape "
                f"{want}, got {got}"
            )
        return [m if x_t.dim() == 2 else m.unsqueeze(0) for m in masks]
