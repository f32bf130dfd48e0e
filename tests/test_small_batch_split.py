"""Training on a batch too small for :data:`MIN_ROWS_PER_THREAD` rows a thread, split
across threads where that was timed faster (:func:`lstmkit.backends.numba.engine._split_wins`):
the same outputs and gradients as the float64 reference, split or not; the choice timed
once per shape without drawing from the global generator."""

from __future__ import annotations

import pytest
import torch

import lstmkit
from lstmkit.backends import compiled

pytestmark = pytest.mark.skipif(not compiled.AVAILABLE, reason="numba is not installed")

CASES = [
    dict(),
    dict(num_layers=2, bidirectional=True, proj_size=3),
    dict(peephole=True, layer_norm=True, zoneout=(0.2, 0.1)),
]  # fmt: skip


@pytest.fixture
def two_threads():
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(before)


@pytest.mark.usefixtures("two_threads")
@pytest.mark.parametrize("split", [True, False], ids=["split", "one-thread"])
@pytest.mark.parametrize("options", CASES, ids=str)
def test_training_matches_float64_reference(
    options: dict, split: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """5 rows (split 2 + 3), lengths, every gradient (inputs, state, parameters); eval
    mode, so zoneout runs at its rates and both sides compute the same function."""
    from lstmkit.backends.numba import engine

    ranges: list[int] = []
    real = engine.row_ranges
    monkeypatch.setattr(engine, "_split_wins", lambda *args: split)
    monkeypatch.setattr(
        engine, "row_ranges", lambda rows, fewest=0: ranges.append(fewest) or real(rows, fewest)
    )
    torch.manual_seed(0)
    lstm = lstmkit.LSTM(4, 7, backend="compiled", **options).eval()
    ref = lstmkit.LSTM(4, 7, backend="reference", dtype=torch.float64, **options).eval()
    ref.load_state_dict(lstm.state_dict())
    D, P = 2 if lstm.bidirectional else 1, lstm.proj_size or 7
    x = torch.randn(9, 5, 4)
    hx = (torch.randn(lstm.num_layers * D, 5, P), torch.randn(lstm.num_layers * D, 5, 7))
    lengths = torch.tensor([9, 3, 7, 1, 9])
    grads = []
    for module, dtype in ((lstm, torch.float32), (ref, torch.float64)):
        inputs = [t.to(dtype).requires_grad_() for t in (x, *hx)]
        out, (h, c) = module(inputs[0], tuple(inputs[1:]), lengths=lengths)
        weights = torch.randn(out.shape, generator=torch.Generator().manual_seed(1))
        loss = (out * weights.to(dtype)).sum() + h.sum() + (c * c).sum()
        grads.append((out, h, c, *torch.autograd.grad(loss, [*inputs, *module.parameters()])))
    assert (1 in ranges) is split  # the training loops asked for one row a thread or not
    for a, b in zip(*grads):
        torch.testing.assert_close(a.double(), b.detach(), rtol=1e-4, atol=1e-4)


@pytest.mark.usefixtures("two_threads")
def test_the_choice_is_timed_once_per_shape_on_its_own_generator() -> None:
    from lstmkit.backends.numba import engine

    engine._split_measured.clear()
    state = torch.get_rng_state()
    answer = engine._split_wins(6, 32, 8)
    assert torch.get_rng_state().equal(state)
    assert engine._split_measured == {(6, 32, 8, 2): answer}
    engine._split_measured[6, 32, 8, 2] = not answer  # kept: the next call reads it
    assert engine._split_wins(6, 32, 8) is (not answer)
    engine._split_wins(6, 32, 3)  # with a projection (P < H)
    assert len(engine._split_measured) == 2
