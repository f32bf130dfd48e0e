"""lstmkit.LSTMCell equals torch.nn.LSTMCell: outputs and every gradient."""

from __future__ import annotations

import itertools

import pytest
import torch
from torch import nn

import lstmkit


@pytest.mark.parametrize(
    "bias, batch, with_hx, dtype",
    [
        (bias, batch, with_hx, dtype)
        for bias, batch, with_hx in itertools.product((True, False), (None, 0, 1, 4), (True, False))
        for dtype in (torch.float64,)
    ]
    + [(True, 4, True, torch.float32)],
)
def test_cell_matches_torch(
    bias: bool, batch: int | None, with_hx: bool, dtype, backend: str
) -> None:
    ours = lstmkit.LSTMCell(6, 5, bias=bias, dtype=dtype, backend=backend)
    theirs = nn.LSTMCell(6, 5, bias=bias, dtype=dtype)
    theirs.load_state_dict(ours.state_dict())
    g = torch.Generator().manual_seed(batch or 0)
    lead = () if batch is None else (batch,)
    x = torch.randn(*lead, 6, generator=g, dtype=dtype, requires_grad=True)
    hx = None
    leaves = [x]
    if with_hx:
        hx = tuple(
            torch.randn(*lead, 5, generator=g, dtype=dtype, requires_grad=True) for _ in "hc"
        )
        leaves += list(hx)
    results = []
    for model in (ours, theirs):
        h, c = model(x, hx)
        loss = (h * torch.linspace(-1, 2, 5, dtype=dtype)).sum() + (c * c).sum()
        grads = torch.autograd.grad(loss, leaves + list(model.parameters()))
        results.append([h, c, *grads])
    tol = {} if dtype == torch.float32 else {"rtol": 1e-10, "atol": 1e-10}
    for a, b in zip(*results, strict=True):
        assert a.shape == b.shape
        torch.testing.assert_close(a, b, **tol)


def test_cell_step_equals_one_layer_lstm() -> None:
    """The cell and the layer share one cell function: looping the cell is the layer."""
    lstm = lstmkit.LSTM(4, 3, dtype=torch.float64)
    cell = lstmkit.LSTMCell(4, 3, dtype=torch.float64)
    cell.load_state_dict({k[:-3]: v for k, v in lstm.state_dict().items()})
    x = torch.randn(6, 2, 4, dtype=torch.float64)
    h = c = torch.zeros(2, 3, dtype=torch.float64)
    outs = []
    for x_t in x:
        h, c = cell(x_t, (h, c))
        outs.append(h)
    out, (_, c_n) = lstm(x)
    torch.testing.assert_close(torch.stack(outs), out, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(c, c_n[0], rtol=1e-12, atol=1e-12)
