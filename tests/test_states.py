"""``return_states=True``: every step's h and c of every layer and direction."""

from __future__ import annotations

import pytest
import torch
from torch.func import functional_call
from torch.nn.utils.rnn import pack_padded_sequence

import lstmkit

D64 = torch.float64


def by_hand(lstm: lstmkit.LSTM, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Every step's (h, c), from the LSTM equations written out here: x is (T, B, I)."""
    D = 2 if lstm.bidirectional else 1
    hs, cs, inp = [], [], x
    for layer in range(lstm.num_layers):
        outs = []
        for d in range(D):
            sfx = f"_l{layer}" + ("_reverse" if d else "")
            W, R = getattr(lstm, "weight_ih" + sfx), getattr(lstm, "weight_hh" + sfx)
            b = getattr(lstm, "bias_ih" + sfx) + getattr(lstm, "bias_hh" + sfx)
            Wr = getattr(lstm, "weight_hr" + sfx, None)
            H = lstm.hidden_size
            h = x.new_zeros(x.shape[1], R.shape[1])
            c = x.new_zeros(x.shape[1], H)
            h_steps, c_steps = [None] * x.shape[0], [None] * x.shape[0]
            order = range(x.shape[0] - 1, -1, -1) if d else range(x.shape[0])
            for t in order:
                z = inp[t] @ W.T + b + h @ R.T
                i, f = torch.sigmoid(z[:, :H]), torch.sigmoid(z[:, H : 2 * H])
                g, o = torch.tanh(z[:, 2 * H : 3 * H]), torch.sigmoid(z[:, 3 * H :])
                c = f * c + i * g
                h = o * torch.tanh(c)
                h = h @ Wr.T if Wr is not None else h
                h_steps[t], c_steps[t] = h, c
            outs.append(torch.stack(h_steps))
            hs.append(outs[-1])
            cs.append(torch.stack(c_steps))
        inp = torch.cat(outs, dim=2)
    return torch.stack(hs), torch.stack(cs)


@pytest.mark.parametrize(
    "layers, bidirectional, proj", [(1, False, 0), (2, True, 0), (2, False, 2)]
)
def test_states_equal_the_equations(layers, bidirectional, proj, backend) -> None:
    torch.manual_seed(layers + proj)
    lstm = lstmkit.LSTM(
        3, 5, layers, bidirectional=bidirectional, proj_size=proj, dtype=D64, backend=backend
    )
    x = torch.randn(6, 2, 3, dtype=D64)
    out, (h_n, c_n), states = lstm(x, return_states=True)
    h, c = by_hand(lstm, x)
    torch.testing.assert_close(states.h, h, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(states.c, c, rtol=1e-10, atol=1e-10)
    D = 2 if bidirectional else 1
    torch.testing.assert_close(out, torch.cat(list(states.h[-D:]), dim=2))
    last = [0 if k % D else -1 for k in range(layers * D)]  # reverse directions end at t = 0
    torch.testing.assert_close(h_n, torch.stack([states.h[k, t] for k, t in enumerate(last)]))
    torch.testing.assert_close(c_n, torch.stack([states.c[k, t] for k, t in enumerate(last)]))


def test_states_gradients_match_the_reference(backend: str) -> None:
    """Gradients through states.h and states.c (with lengths, both directions, projection)."""
    torch.manual_seed(0)
    ref = lstmkit.LSTM(3, 4, 2, bidirectional=True, proj_size=2, dtype=D64, backend="reference")
    ours = lstmkit.LSTM(3, 4, 2, bidirectional=True, proj_size=2, dtype=D64, backend=backend)
    ours.load_state_dict(ref.state_dict())
    x = torch.randn(5, 3, 3, dtype=D64, requires_grad=True)
    lengths = torch.tensor([5, 2, 4])
    results = []
    for model in (ref, ours):
        _, (_, c), st = model(x, lengths=lengths, return_states=True)
        g = torch.Generator().manual_seed(1)
        loss = sum(
            (t * torch.randn(t.shape, generator=g, dtype=D64)).sum() for t in (st.h, st.c, c)
        )
        results.append([st.h, st.c, *torch.autograd.grad(loss, [x, *model.parameters()])])
    for a, b in zip(*results, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-10)
    st_c = results[1][1]
    past_end = torch.arange(5)[:, None] >= lengths[None, :]  # (T, B)
    assert st_c[:, past_end].abs().max() == 0


def test_gradcheck_through_cell_states(backend: str) -> None:
    lstm = lstmkit.LSTM(2, 3, bidirectional=True, dtype=D64, backend=backend)
    names = [n for n, _ in lstm.named_parameters()]

    def f(x, *params):
        _, _, st = functional_call(
            lstm,
            dict(zip(names, params)),
            (x,),
            {"lengths": torch.tensor([3, 2]), "return_states": True},
        )
        return st.c, st.h

    x = torch.randn(3, 2, 2, dtype=D64, requires_grad=True)
    params = [p.detach().clone().requires_grad_() for p in lstm.parameters()]
    assert torch.autograd.gradcheck(f, (x, *params))


def test_states_layouts() -> None:
    lstm = lstmkit.LSTM(3, 4, 2, batch_first=True, proj_size=2)
    x = torch.randn(5, 7, 3)  # (B, T, I)
    _, _, st = lstm(x, return_states=True)
    assert st.h.shape == (2, 5, 7, 2) and st.c.shape == (2, 5, 7, 4)
    _, _, single = lstm(x[1], return_states=True)  # unbatched (T, I)
    assert single.h.shape == (2, 7, 2) and single.c.shape == (2, 7, 4)
    torch.testing.assert_close(single.c, st.c[:, 1], rtol=1e-5, atol=1e-6)
    packed = pack_padded_sequence(x, [7, 3, 5, 1, 2], batch_first=True, enforce_sorted=False)
    _, _, st_packed = lstm(packed, return_states=True)
    _, _, st_lengths = lstm(x, lengths=[7, 3, 5, 1, 2], return_states=True)
    torch.testing.assert_close(st_packed.c, st_lengths.c)
    assert isinstance(st_packed, lstmkit.States)


def test_without_return_states_the_result_is_nn_lstms() -> None:
    result = lstmkit.LSTM(3, 4)(torch.randn(2, 1, 3))
    assert len(result) == 2 and len(result[1]) == 2
