"""``lengths=``: padded input with per-sequence lengths gives what packing gives."""

from __future__ import annotations

import itertools

import pytest
import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

import lstmkit

D64 = torch.float64
CASES = list(itertools.product((1, 2), (False, True), (0, 2), (False, True)))


def packed_oracle(theirs, x, lengths, hx, batch_first):
    """nn.LSTM on the packed batch, its output padded back to x's length."""
    packed = pack_padded_sequence(x, lengths, batch_first=batch_first, enforce_sorted=False)
    out, state = theirs(packed, hx)
    T = x.shape[1] if batch_first else x.shape[0]
    out, _ = pad_packed_sequence(out, batch_first=batch_first, total_length=T)
    return out, state


@pytest.mark.parametrize("layers, bidirectional, proj, batch_first", CASES)
def test_lengths_equal_packing(layers, bidirectional, proj, batch_first, backend) -> None:
    g = torch.Generator().manual_seed(layers * 8 + proj)
    kwargs = dict(
        num_layers=layers,
        bidirectional=bidirectional,
        proj_size=proj,
        batch_first=batch_first,
        dtype=D64,
    )
    ours = lstmkit.LSTM(3, 5, backend=backend, **kwargs)
    theirs = nn.LSTM(3, 5, **kwargs)
    theirs.load_state_dict(ours.state_dict())
    T, B, D = 7, 4, 2 if bidirectional else 1
    lengths = torch.tensor([5, 1, 3, 2])  # shorter than the padded T = 7 everywhere
    x = torch.randn(
        *((B, T) if batch_first else (T, B)), 3, generator=g, dtype=D64, requires_grad=True
    )
    hx = (
        torch.randn(layers * D, B, proj or 5, generator=g, dtype=D64, requires_grad=True),
        torch.randn(layers * D, B, 5, generator=g, dtype=D64, requires_grad=True),
    )
    results = []
    for run in (
        lambda: ours(x, hx, lengths=lengths),
        lambda: packed_oracle(theirs, x, lengths, hx, batch_first),
    ):
        out, (h, c) = run()
        w = torch.randn(out.shape, generator=torch.Generator().manual_seed(1), dtype=D64)
        loss = (out * w).sum() + h.sum() + (c * c).sum()
        params = list((ours if len(results) == 0 else theirs).parameters())
        results.append([out, h, c, *torch.autograd.grad(loss, [x, *hx, *params])])
    for a, b in zip(*results, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-10)
    out = results[0][0]
    past_end = torch.arange(T)[None, :] >= lengths[:, None]  # (B, T)
    assert (out if batch_first else out.transpose(0, 1))[past_end].abs().max() == 0


def test_zero_length_keeps_the_initial_state(backend: str) -> None:
    lstm = lstmkit.LSTM(3, 4, bidirectional=True, backend=backend)
    x, hx = torch.randn(5, 2, 3), (torch.randn(2, 2, 4), torch.randn(2, 2, 4))
    out, (h, c) = lstm(x, hx, lengths=[0, 5])
    assert out[:, 0].abs().max() == 0
    torch.testing.assert_close(h[:, 0], hx[0][:, 0])
    torch.testing.assert_close(c[:, 0], hx[1][:, 0])
    full = lstm(x[:, 1:], (hx[0][:, 1:], hx[1][:, 1:]))
    torch.testing.assert_close(out[:, 1:], full[0])


def test_unbatched_and_full_lengths_change_nothing() -> None:
    lstm = lstmkit.LSTM(3, 4, num_layers=2)
    x = torch.randn(6, 3)
    torch.testing.assert_close(lstm(x, lengths=6)[0], lstm(x)[0], rtol=0, atol=0)
    out, _ = lstm(x, lengths=torch.tensor([4]))
    torch.testing.assert_close(out[:4], lstm(x[:4])[0])
    assert out[4:].abs().max() == 0


@pytest.mark.parametrize(
    "make, error, message",
    [
        (
            lambda x: pack_padded_sequence(x, [5, 3, 2]),
            ValueError,
            "LSTM: lengths= is for padded tensor input; a PackedSequence carries its own",
        ),
        (lambda x: x, ValueError, "LSTM: lengths should have shape (3,), got (2,)"),
        (
            lambda x: x,
            ValueError,
            "LSTM: lengths should lie in [0, 5] (the padded length), got values from 1 to 6",
        ),
        (lambda x: x, TypeError, "LSTM: lengths should hold integers, got torch.float32"),
        (lambda x: x, TypeError, "LSTM: lengths should be a tensor or sequence of ints, got str"),
    ],
)
def test_lengths_errors(make, error, message) -> None:
    bad = {
        "shape (3,)": [5, 3],
        "lie in": [6, 1, 2],
        "integers": torch.tensor([5.0, 3, 2]),
        "sequence of ints": "abc",
        "PackedSequence": [5, 3, 2],
    }
    lengths = next(v for k, v in bad.items() if k in message)
    with pytest.raises(error, match=f"^{__import__('re').escape(message)}$"):
        lstmkit.LSTM(3, 4)(make(torch.randn(5, 3, 3)), lengths=lengths)
