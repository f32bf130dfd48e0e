"""Normalise what callers pass into one form, and restore the caller's form afterwards.

Every forward goes through :func:`normalize` once: a plain tensor (seq-first or
batch_first, batched or unbatched) or a ``PackedSequence`` becomes a seq-first padded
``x (T, B, I)``, per-sequence ``lengths (B,)`` or ``None``, and ``(h0, c0)`` of shapes
``(L*D, B, P)`` and ``(L*D, B, H)``. ``restore`` turns the result back into the
caller's layout.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor
from torch.nn.utils.rnn import PackedSequence, pack_padded_sequence, pad_packed_sequence

from ._checks import (
    check_hx_dtype_device,
    check_hx_pair,
    check_input_dtype,
    check_size,
)


@dataclass(frozen=True)
class Sizes:
    """The sizes an input must agree with (``L*D`` rows of state, ``P`` wide h, ``H`` wide c)."""

    input_size: int
    hidden_size: int
    real_hidden_size: int  # P: proj_size if > 0 else hidden_size
    state_rows: int  # L * D
    batch_first: bool


@dataclass(frozen=True)
class Normalized:
    x: Tensor  # (T, B, I)
    hx: tuple[Tensor, Tensor]  # (L*D, B, P), (L*D, B, H)
    lengths: Tensor | None  # (B,) or None
    batched: bool  # False: the caller's input had no batch dimension
    restore: Callable[[Tensor, tuple[Tensor, Tensor]], tuple[object, tuple[Tensor, Tensor]]]


def normalize(
    input: object, hx: object, sizes: Sizes, weight: Tensor, lengths: object = None
) -> Normalized:
    """Check ``input`` and ``hx`` as nn.LSTM does and bring them to the seq-first form;
    ``lengths`` (padded input only) gives each sequence's valid length."""
    if isinstance(input, PackedSequence):
        if lengths is not None:
            raise ValueError(
                "LSTM: lengths= is for padded tensor input; a PackedSequence carries its own"
            )
        return _normalize_packed(input, hx, sizes, weight)
    if not isinstance(input, Tensor):
        raise TypeError(
            f"LSTM: input should be a Tensor or a PackedSequence, got {type(input).__name__}"
        )
    if input.dim() not in (2, 3):
        raise ValueError(f"LSTM: Expected input to be 2D or 3D, got {input.dim()}D instead")
    batched = input.dim() == 3
    if not batched:
        x = input.unsqueeze(1)  # (T, 1, I); batch_first does not apply to unbatched input
    elif sizes.batch_first:
        x = input.transpose(0, 1)  # (B, T, I) -> (T, B, I)
    else:
        x = input
    pair = None
    if hx is not None:
        pair = check_hx_pair(hx, "LSTM")
        dims = (pair[0].dim(), pair[1].dim())
        if batched and dims != (3, 3):
            raise RuntimeError(
                "For batched 3-D input, hx and cx should also be 3-D but got "
                f"({dims[0]}-D, {dims[1]}-D) tensors"
            )
        if not batched and dims != (2, 2):
            raise RuntimeError(
                "For unbatched 2-D input, hx and cx should also be 2-D but got "
                f"({dims[0]}-D, {dims[1]}-D) tensors"
            )
        if not batched:
            pair = (pair[0].unsqueeze(1), pair[1].unsqueeze(1))
    state = _checked_state(x, pair, x.shape[1], sizes, weight)
    if x.shape[0] == 0:
        raise RuntimeError("Expected sequence length to be larger than 0 in RNN")
    if lengths is not None:
        lengths = _checked_lengths(lengths, x.shape[1], x.shape[0], batched)

    def restore(out: Tensor, state: tuple[Tensor, Tensor]) -> tuple[Tensor, tuple[Tensor, Tensor]]:
        h_n, c_n = state
        if not batched:
            return out.squeeze(1), (h_n.squeeze(1), c_n.squeeze(1))
        if sizes.batch_first:
            out = out.transpose(0, 1)  # (T, B, *) -> (B, T, *)
        return out, (h_n, c_n)

    return Normalized(x, state, lengths, batched, restore)


def _checked_lengths(lengths: object, batch: int, steps: int, batched: bool) -> Tensor:
    """``lengths`` as a (B,) int64 tensor with values in [0, T], or a clear error."""
    try:
        got = torch.as_tensor(lengths)
    except (TypeError, ValueError, RuntimeError):
        raise TypeError(
            f"LSTM: lengths should be a tensor or sequence of ints, got {type(lengths).__name__}"
        ) from None
    if got.is_floating_point() or got.is_complex() or got.dtype == torch.bool:
        raise TypeError(f"LSTM: lengths should hold integers, got {got.dtype}")
    expected = (batch,) if batched else ((), (1,))
    if (tuple(got.shape) != expected) if batched else (tuple(got.shape) not in expected):
        want = f"({batch},)" if batched else "() or (1,) for unbatched input"
        raise ValueError(f"LSTM: lengths should have shape {want}, got {tuple(got.shape)}")
    got = got.reshape(batch).to(torch.int64)
    if torch.compiler.is_compiling() or torch.jit.is_tracing():  # values unknown: check at run
        if not torch.onnx.is_in_onnx_export():  # (onnxruntime checks sequence_lens itself)
            inside = ((got >= 0) & (got <= steps)).all()
            torch._assert_async(inside, "LSTM: lengths should lie in [0, T] (the padded length)")
        return got
    if batch and (int(got.min()) < 0 or int(got.max()) > steps):
        raise ValueError(
            f"LSTM: lengths should lie in [0, {steps}] (the padded length), "
            f"got values from {int(got.min())} to {int(got.max())}"
        )
    return got


def _normalize_packed(
    input: PackedSequence, hx: object, sizes: Sizes, weight: Tensor
) -> Normalized:
    data, batch_sizes, sorted_indices, unsorted_indices = input
    if data.dim() != 2:
        raise RuntimeError(f"input must have 2 dimensions, got {data.dim()}")
    x, lengths = pad_packed_sequence(input)  # (T, B, I) in the caller's batch order
    pair = None
    if hx is not None:
        pair = check_hx_pair(hx, "LSTM")
        dims = (pair[0].dim(), pair[1].dim())
        if dims != (3, 3):
            raise RuntimeError(
                "For PackedSequence input, hx and cx should be 3-D but got "
                f"({dims[0]}-D, {dims[1]}-D) tensors"
            )
    state = _checked_state(x, pair, int(batch_sizes[0]), sizes, weight)
    sorted_lengths = lengths if sorted_indices is None else lengths[sorted_indices.cpu()]

    def restore(
        out: Tensor, state: tuple[Tensor, Tensor]
    ) -> tuple[PackedSequence, tuple[Tensor, Tensor]]:
        if sorted_indices is not None:
            out = out.index_select(1, sorted_indices)  # the pack's (sorted) batch order
        packed = pack_padded_sequence(out, sorted_lengths, enforce_sorted=True)
        return PackedSequence(packed.data, batch_sizes, sorted_indices, unsorted_indices), state

    return Normalized(x, state, lengths, True, restore)


def _checked_state(
    x: Tensor,
    pair: tuple[Tensor, Tensor] | None,
    batch: int,
    sizes: Sizes,
    weight: Tensor,
) -> tuple[Tensor, Tensor]:
    """nn.LSTM's ``check_forward_args``; zeros when ``hx`` is omitted."""
    check_input_dtype(x, weight)
    if x.shape[-1] != sizes.input_size:
        raise RuntimeError(
            "input.size(-1) must be equal to input_size. "
            f"Expected {sizes.input_size}, got {x.shape[-1]}"
        )
    h_shape = (sizes.state_rows, batch, sizes.real_hidden_size)
    c_shape = (sizes.state_rows, batch, sizes.hidden_size)
    if pair is None:
        return x.new_zeros(h_shape), x.new_zeros(c_shape)
    check_size(pair[0], h_shape, "Expected hidden[0] size {}, got {}")
    check_size(pair[1], c_shape, "Expected hidden[1] size {}, got {}")
    check_hx_dtype_device(pair, x, "LSTM")
    return pair
