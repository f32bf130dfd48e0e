"""What a drop-in for ``nn.LSTM`` needs beyond the forward: torch's public helpers and
its reparametrizations.

* :class:`LSTMCompat`: ``nn.LSTM``'s ``mode`` and its public checking helpers
  (``check_input``, ``get_expected_hidden_size``, ``get_expected_cell_size``,
  ``check_hidden_size``, ``check_forward_args``, ``permute_hidden``), with its results,
  exception types and messages. ``lstmkit.LSTM.forward`` does not call them (its checks
  live in :mod:`lstmkit._inputs` and cover ``PackedSequence`` input too); they are there
  for code written against ``nn.LSTM`` that calls them.
* :func:`recompute_hooked_weights`: torch's hook-based reparametrizations
  (``torch.nn.utils.weight_norm``, ``torch.nn.utils.spectral_norm``,
  ``torch.nn.utils.prune``) recompute a plain weight attribute in a forward pre-hook;
  ``LSTM.step`` runs those hooks itself, since it does not go through ``__call__``.
"""

from __future__ import annotations

import torch
from torch import Tensor
from torch.nn.utils.prune import BasePruningMethod
from torch.nn.utils.spectral_norm import SpectralNorm
from torch.nn.utils.weight_norm import WeightNorm

#: The forward pre-hooks that recompute a weight attribute from its underlying tensors.
WEIGHT_HOOKS = (WeightNorm, SpectralNorm, BasePruningMethod)


def recompute_hooked_weights(module: torch.nn.Module, args: tuple[object, ...]) -> None:
    """Run ``module``'s weight-recomputing forward pre-hooks (:data:`WEIGHT_HOOKS`) with
    ``args``, as ``module(*args)`` would; other hooks are left alone."""
    for hook in module._forward_pre_hooks.values():
        if isinstance(hook, WEIGHT_HOOKS):
            hook(module, args)


def _any_autocast() -> bool:
    """Whether autocast is on for any device (nn.LSTM's ``check_input`` asks this)."""
    probe = getattr(torch._C, "_is_any_autocast_enabled", None)
    return probe() if probe is not None else torch.is_autocast_enabled()


def _apply_permutation(tensor: Tensor, permutation: Tensor, dim: int = 1) -> Tensor:
    """``tensor`` with its ``dim`` reordered by ``permutation``."""
    return tensor.index_select(dim, permutation)


class LSTMCompat:
    """``nn.LSTM``'s public helpers, for a module with its sizes and ``_flat_weights_names``.

    Shapes as in :class:`lstmkit.LSTM`: ``hidden`` is ``(L*D, B, P)``, the cell state
    ``(L*D, B, H)``; ``batch_sizes`` is a ``PackedSequence``'s (its input is then the
    packed ``(N, I)`` data) or ``None`` for a padded ``(T, B, I)`` (``(B, T, I)`` with
    ``batch_first``) input.
    """

    #: ``nn.LSTM.mode``: the RNN kind, always ``"LSTM"``.
    mode: str = "LSTM"

    input_size: int
    hidden_size: int
    num_layers: int
    batch_first: bool
    bidirectional: bool
    proj_size: int
    _flat_weights_names: list[str]

    def _first_weight(self) -> Tensor:
        """``weight_ih_l0``, looked up the cheap way (a plain parameter) when it can be."""
        name = self._flat_weights_names[0]
        params = self._parameters  # type: ignore[attr-defined]
        return params[name] if name in params else getattr(self, name)

    def check_input(self, input: Tensor, batch_sizes: Tensor | None) -> None:
        """Raise as ``nn.LSTM`` does if ``input``'s dtype (outside autocast), number of
        dimensions (3, or 2 for packed data) or feature size is wrong."""
        dtype = self._first_weight().dtype
        if input.dtype != dtype and not _any_autocast():
            raise ValueError(
                f"RNN input dtype ({input.dtype}) does not match weight dtype ({dtype}). "
                f"Convert input: input.to({dtype}), or convert model: model.to({input.dtype})"
            )
        expected_input_dim = 2 if batch_sizes is not None else 3
        if input.dim() != expected_input_dim:
            raise RuntimeError(
                f"input must have {expected_input_dim} dimensions, got {input.dim()}"
            )
        if self.input_size != input.size(-1):
            raise RuntimeError(
                "input.size(-1) must be equal to input_size. "
                f"Expected {self.input_size}, got {input.size(-1)}"
            )

    def _mini_batch(self, input: Tensor, batch_sizes: Tensor | None) -> int:
        """The batch size ``B`` of a padded input, or of packed data's first step."""
        if batch_sizes is not None:
            return int(batch_sizes[0])
        return input.size(0) if self.batch_first else input.size(1)

    def get_expected_hidden_size(
        self, input: Tensor, batch_sizes: Tensor | None
    ) -> tuple[int, int, int]:
        """The shape ``h_0`` must have for ``input``: ``(L*D, B, P)``."""
        rows = self.num_layers * (2 if self.bidirectional else 1)
        width = self.proj_size if self.proj_size > 0 else self.hidden_size
        return (rows, self._mini_batch(input, batch_sizes), width)

    def get_expected_cell_size(
        self, input: Tensor, batch_sizes: Tensor | None
    ) -> tuple[int, int, int]:
        """The shape ``c_0`` must have for ``input``: ``(L*D, B, H)``."""
        rows = self.num_layers * (2 if self.bidirectional else 1)
        return (rows, self._mini_batch(input, batch_sizes), self.hidden_size)

    def check_hidden_size(
        self,
        hx: Tensor,
        expected_hidden_size: tuple[int, int, int],
        msg: str = "Expected hidden size {}, got {}",
    ) -> None:
        """``RuntimeError(msg.format(expected, actual))`` unless ``hx`` has the shape."""
        if hx.size() != expected_hidden_size:
            raise RuntimeError(msg.format(expected_hidden_size, list(hx.size())))

    def check_forward_args(
        self, input: Tensor, hidden: tuple[Tensor, Tensor], batch_sizes: Tensor | None
    ) -> None:
        """``nn.LSTM.check_forward_args``: :meth:`check_input`, then the shapes of
        ``hidden = (h_0, c_0)`` (3-D, already batched)."""
        self.check_input(input, batch_sizes)
        self.check_hidden_size(
            hidden[0],
            self.get_expected_hidden_size(input, batch_sizes),
            "Expected hidden[0] size {}, got {}",
        )
        self.check_hidden_size(
            hidden[1],
            self.get_expected_cell_size(input, batch_sizes),
            "Expected hidden[1] size {}, got {}",
        )

    def permute_hidden(
        self, hx: tuple[Tensor, Tensor], permutation: Tensor | None
    ) -> tuple[Tensor, Tensor]:
        """``(h, c)`` with the batch dimension (1) reordered by ``permutation`` (e.g. a
        ``PackedSequence``'s ``sorted_indices``); ``hx`` itself when it is ``None``."""
        if permutation is None:
            return hx
        return _apply_permutation(hx[0], permutation), _apply_permutation(hx[1], permutation)
