"""LSTM.step: looping one time step over a sequence gives exactly lstm(x)."""

from __future__ import annotations

import pytest
import torch

import lstmkit


@pytest.mark.parametrize("num_layers", [1, 2, 3])
@pytest.mark.parametrize("proj_size", [0, 2])
@pytest.mark.parametrize("batched", [True, False])
@pytest.mark.parametrize("with_hx", [True, False])
def test_step_loop_equals_forward(num_layers, proj_size, batched, with_hx) -> None:
    torch.manual_seed(num_layers * 10 + proj_size)
    lstm = lstmkit.LSTM(
        3, 5, num_layers, proj_size=proj_size, batch_first=True, dtype=torch.float64
    )
    T, B, P = 6, 2, proj_size or 5
    lead = (B,) if batched else ()
    x = torch.randn(T, *lead, 3, dtype=torch.float64)  # seq-first for stepping
    hx = None
    if with_hx:
        hx = (
            torch.randn(num_layers, *lead, P, dtype=torch.float64),
            torch.randn(num_layers, *lead, 5, dtype=torch.float64),
        )
    state, ys = hx, []
    for x_t in x.unbind(0):
        y_t, state = lstm.step(x_t, state)
        ys.append(y_t)
    whole = x.transpose(0, 1) if batched else x  # the module is batch_first
    out, (h_n, c_n) = lstm(whole, hx)
    out = out.transpose(0, 1) if batched else out
    torch.testing.assert_close(torch.stack(ys), out, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(state[0], h_n, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(state[1], c_n, rtol=1e-12, atol=1e-12)


def test_step_gradients_flow_to_parameters_and_state() -> None:
    lstm = lstmkit.LSTM(3, 4, 2, dtype=torch.float64)
    x = torch.randn(5, 2, 3, dtype=torch.float64, requires_grad=True)
    state, total = None, 0.0
    for x_t in x.unbind(0):
        y, state = lstm.step(x_t, state)
        total = total + y.sum()
    grads = torch.autograd.grad(total, [x, *lstm.parameters()])
    ref = torch.autograd.grad(lstm(x)[0].sum(), [x, *lstm.parameters()])
    for a, b in zip(grads, ref):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)


def test_bidirectional_cannot_step() -> None:
    lstm = lstmkit.LSTM(3, 4, bidirectional=True)
    with pytest.raises(RuntimeError, match="bidirectional LSTM cannot run one step at a time"):
        lstm.step(torch.randn(2, 3))


@pytest.mark.parametrize("shape", [(), (5, 2, 3)])
def test_step_input_rank(shape) -> None:
    with pytest.raises(ValueError, match=f"Expected x_t to be 1D or 2D, got {len(shape)}D"):
        lstmkit.LSTM(3, 4).step(torch.randn(shape))


def test_step_checks_state_shape() -> None:
    lstm = lstmkit.LSTM(3, 4, num_layers=2)
    with pytest.raises(
        RuntimeError, match=r"Expected hidden\[0\] size \(2, 5, 4\), got \[1, 5, 4\]"
    ):
        lstm.step(torch.randn(5, 3), (torch.zeros(1, 5, 4), torch.zeros(2, 5, 4)))
