"""Training loops split by hidden units across threads (``engine._units_forward``,
:mod:`lstmkit.backends.numba.units_backward`): outputs, states, every step's states and
every gradient equal the reference's under every option the split takes, with lengths
and both directions, at widths that leave a thread no unit; one thread and two agree;
what it cannot take never reaches it; the choice is timed once per shape."""

from __future__ import annotations

import pytest
import torch
from test_units import CASES  # the option sets the split takes

import lstmkit
from lstmkit.backends import compiled

pytestmark = pytest.mark.skipif(not compiled.AVAILABLE, reason="numba is not installed")


@pytest.fixture
def split(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every training loop that may be split by units is (the choice is otherwise timed),
    on two threads; which loops ran so."""
    from lstmkit.backends.numba import engine

    runs: list[str] = []
    forward, backward = engine._units_forward, engine._units_backward

    def counted_forward(*args: object) -> None:
        runs.append("forward")
        forward(*args)

    def counted_backward(*args: object) -> None:
        runs.append("backward")
        backward(*args)

    monkeypatch.setattr(engine, "_train_units_win", lambda *args: True)
    monkeypatch.setattr(engine, "_units_forward", counted_forward)
    monkeypatch.setattr(engine, "_units_backward", counted_backward)
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    yield runs
    torch.set_num_threads(before)


def _pair(hidden: int, options: dict) -> tuple[lstmkit.LSTM, lstmkit.LSTM]:
    """A compiled float32 module with random weights in train mode, and the reference
    with the same ones: float64, or float32 where masks are drawn (in the module's
    dtype: the same draws)."""
    torch.manual_seed(0)
    lstm = lstmkit.LSTM(5, hidden, backend="compiled", **options).train()
    with torch.no_grad():
        for p in lstm.parameters():
            p.add_(torch.randn_like(p) * 0.3)
    draws = options.get("zoneout") or options.get("recurrent_dropout")
    dtype = torch.float32 if draws else torch.float64
    ref = lstmkit.LSTM(5, hidden, backend="reference", dtype=dtype, **options).train()
    ref.load_state_dict(lstm.state_dict())
    return lstm, ref


def _grads(lstm: lstmkit.LSTM, x: torch.Tensor, hx: tuple, lengths, dtype) -> list[torch.Tensor]:
    """Output, final and every step's states, and the gradients of a loss of all of them
    with respect to the input, the initial state and every parameter, as float64."""
    torch.manual_seed(1)  # the same masks for both modules
    x = x.to(dtype, copy=True).requires_grad_()
    hx = tuple(s.to(dtype, copy=True).requires_grad_() for s in hx)
    out, (h, c), states = lstm(x, hx, lengths=lengths, return_states=True)
    loss = out.sin().sum() + (h * h).sum() + c.sum() + (states.c.cos()).sum()
    loss.backward()
    found = [out, h, c, states.c, x.grad, *(s.grad for s in hx)]
    found += [p.grad for p in lstm.parameters()]
    lstm.zero_grad()
    return [t.detach().double() for t in found]


@pytest.mark.parametrize("lengths", [False, True], ids=["full", "lengths"])
@pytest.mark.parametrize("hidden", [7, 40], ids=["H7", "H40"])
@pytest.mark.parametrize("rows", [1, 3], ids=["B1", "B3"])
@pytest.mark.parametrize("options", CASES, ids=str)
def test_training_split_by_units_matches_the_reference(
    options: dict, rows: int, hidden: int, lengths: bool, split: list[str]
) -> None:
    """H = 7 leaves the first of two threads no unit, H = 40 splits 16 + 24; outputs,
    states, every step's cell state and every gradient (input, initial state, each
    parameter), each to a tolerance scaled by its largest value."""
    lstm, ref = _pair(hidden, options)
    T, D = 37, 2 if lstm.bidirectional else 1
    x = torch.randn(T, rows, 5)
    hx = tuple(torch.randn(lstm.num_layers * D, rows, hidden) for _ in range(2))
    lens = torch.tensor([37, 9, 1][:rows]) if lengths else None
    got = _grads(lstm, x, hx, lens, torch.float32)
    want = _grads(ref, x, hx, lens, next(ref.parameters()).dtype)
    layers = lstm.num_layers * D
    assert split.count("forward") == layers and split.count("backward") == layers
    for k, (a, b) in enumerate(zip(got, want)):
        scale = b.abs().max().item() + 1e-3
        torch.testing.assert_close(a, b, rtol=0, atol=2e-5 * scale, msg=lambda m, k=k: f"#{k}: {m}")


def test_one_thread_and_two_agree(split: list[str]) -> None:
    """Each unit's arithmetic is the same on any thread: with one thread (no split) and
    with two, the gradients agree to float rounding."""
    lstm, _ = _pair(48, dict(num_layers=2))
    x, hx = torch.randn(60, 1, 5), (torch.zeros(2, 1, 48),) * 2
    two = _grads(lstm, x, hx, None, torch.float32)
    assert split
    torch.set_num_threads(1)
    split.clear()
    one = _grads(lstm, x, hx, None, torch.float32)
    assert not split
    for a, b in zip(two, one):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5 * (b.abs().max().item() + 1e-3))


@pytest.mark.parametrize(
    ("options", "rows", "dtype"),
    [(dict(layer_norm=True), 1, torch.float32), (dict(proj_size=3), 1, torch.float32),
     ({}, 1, torch.float64), ({}, 16, torch.float32)],
    ids=["layer-norm", "projection", "float64", "16-rows"],
)  # fmt: skip
def test_what_it_cannot_take_never_reaches_it(
    options: dict, rows: int, dtype: torch.dtype, split: list[str]
) -> None:
    """Layer normalisation and a projection (they mix every unit), float64 (float32
    kernels only) and batches already split by rows run the row loops, with the
    reference's gradients."""
    torch.manual_seed(0)
    lstm = lstmkit.LSTM(5, 8, backend="compiled", dtype=dtype, **options)
    ref = lstmkit.LSTM(5, 8, backend="reference", dtype=torch.float64, **options)
    ref.load_state_dict(lstm.state_dict())
    x = torch.randn(40, rows, 5)
    P = options.get("proj_size") or 8
    hx = (torch.randn(1, rows, P), torch.randn(1, rows, 8))
    got = _grads(lstm, x, hx, None, dtype)
    want = _grads(ref, x, hx, None, torch.float64)
    assert split == []
    for a, b in zip(got, want):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4 * (b.abs().max().item() + 1e-3))


def test_the_choice_is_timed_once_per_shape(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each loop's choice is timed on the first call of a shape and kept (a second call
    times nothing); short sequences time nothing at all."""
    from lstmkit.backends.numba import engine

    timed: list[tuple] = []

    def measure(*args: object) -> bool:
        timed.append(args)
        return True

    monkeypatch.setattr(engine, "_train_units_measured", {})
    monkeypatch.setattr(engine, "_measure_train_units", measure)
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        lstm = lstmkit.LSTM(5, 16, backend="compiled")
        for steps in (40, 40, 60, 8):
            lstm(torch.randn(steps, 1, 5))[0].sum().backward()
    finally:
        torch.set_num_threads(before)
    assert sorted(args[0] for args in timed) == ["backward", "forward"]  # 40 and 60: 32 steps
