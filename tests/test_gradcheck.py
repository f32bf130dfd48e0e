"""Finite-difference checks in float64: gradients and second derivatives of everything."""

from __future__ import annotations

import pytest
import torch
from torch.func import functional_call
from torch.nn.utils.rnn import pack_padded_sequence

import lstmkit

D64 = torch.float64


def as_function(lstm: lstmkit.LSTM, packed_lengths: torch.Tensor | None = None):
    names = [n for n, _ in lstm.named_parameters()]

    def f(x, h0, c0, *params):
        inp = (
            x
            if packed_lengths is None
            else pack_padded_sequence(x, packed_lengths, enforce_sorted=False)
        )
        out, (h, c) = functional_call(lstm, dict(zip(names, params)), (inp, (h0, c0)))
        out = out if packed_lengths is None else out.data
        return out, h, c

    return f


CASES = [
    dict(num_layers=2, proj_size=0, bidirectional=False, packed=False),
    dict(num_layers=1, proj_size=2, bidirectional=True, packed=False),
    dict(num_layers=1, proj_size=0, bidirectional=True, packed=True),
]


def inputs(lstm: lstmkit.LSTM, case: dict):
    D = 2 if case["bidirectional"] else 1
    P = case["proj_size"] or lstm.hidden_size
    x = torch.randn(3, 2, 2, dtype=D64, requires_grad=True)
    h0 = torch.randn(lstm.num_layers * D, 2, P, dtype=D64, requires_grad=True)
    c0 = torch.randn(lstm.num_layers * D, 2, lstm.hidden_size, dtype=D64, requires_grad=True)
    params = [p.detach().clone().requires_grad_() for p in lstm.parameters()]
    return (x, h0, c0, *params)


def make(case: dict, backend: str) -> lstmkit.LSTM:
    return lstmkit.LSTM(
        2,
        3,
        case["num_layers"],
        proj_size=case["proj_size"],
        bidirectional=case["bidirectional"],
        dtype=D64,
        backend=backend,
    )


@pytest.mark.parametrize("case", CASES, ids=str)
def test_gradcheck(case: dict, backend: str) -> None:
    lstm = make(case, backend)
    lengths = torch.tensor([3, 2]) if case["packed"] else None
    assert torch.autograd.gradcheck(as_function(lstm, lengths), inputs(lstm, case))


@pytest.mark.parametrize("case", CASES, ids=str)
def test_gradgradcheck(case: dict, backend: str) -> None:
    lstm = make(case, backend)
    lengths = torch.tensor([3, 2]) if case["packed"] else None
    assert torch.autograd.gradgradcheck(as_function(lstm, lengths), inputs(lstm, case))


def test_cell_gradcheck_and_gradgradcheck() -> None:
    cell = lstmkit.LSTMCell(2, 3, dtype=D64)
    names = [n for n, _ in cell.named_parameters()]

    def f(x, h, c, *params):
        return functional_call(cell, dict(zip(names, params)), (x, (h, c)))

    args = (
        torch.randn(2, 2, dtype=D64, requires_grad=True),
        torch.randn(2, 3, dtype=D64, requires_grad=True),
        torch.randn(2, 3, dtype=D64, requires_grad=True),
        *[p.detach().clone().requires_grad_() for p in cell.parameters()],
    )
    assert torch.autograd.gradcheck(f, args)
    assert torch.autograd.gradgradcheck(f, args)
