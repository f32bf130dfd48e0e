"""float32 calls without autograd on the ``compiled`` engine run the input projection
inside the engine's compiled call (:func:`lstmkit.backends.compiled.infer_layer`). It must
agree with a float64 ``reference`` run of the same weights for every option, layout and
row split, run exactly where it claims to, and see weight updates between calls."""

from __future__ import annotations

import contextlib

import pytest
import torch

import lstmkit
from lstmkit.backends import compiled

pytestmark = pytest.mark.skipif(not compiled.AVAILABLE, reason="numba is not importable")

CASES = [
    dict(),
    dict(num_layers=2, bidirectional=True),
    dict(bias=False, proj_size=3),
    dict(peephole=True, gate_clip=0.8, cell_clip=0.6),
    dict(activation="softsign", recurrent_activation="hardsigmoid"),
    dict(layer_norm=True, num_layers=2, proj_size=3),
    dict(layer_norm=True, bias=False),
    dict(zoneout=(0.3, 0.1), num_layers=2),
]  # fmt: skip


@pytest.fixture
def layer_calls(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """How many layer-directions ran through the whole-layer path."""
    calls: list[int] = []
    real = compiled.infer_layer

    def counted(*args: object, **kwargs: object) -> tuple[torch.Tensor, ...]:
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(compiled, "infer_layer", counted)
    return calls


@pytest.fixture
def two_threads():
    before = torch.get_num_threads()
    torch.set_num_threads(2)  # rows split across two threads from 16 rows on
    yield
    torch.set_num_threads(before)


def _oracle(
    lstm: lstmkit.LSTM, options: dict, x: torch.Tensor, hx: tuple, lengths: torch.Tensor | None
):  # fmt: skip
    """The same module in float64 on the reference backend (eval: zoneout at its rates)."""
    ref = lstmkit.LSTM(6, 7, backend="reference", dtype=torch.float64, **options).eval()
    ref.load_state_dict(lstm.state_dict())
    with torch.no_grad():
        out, (h, c) = ref(x.double(), tuple(s.double() for s in hx), lengths=lengths)
    return out, h, c


@pytest.mark.usefixtures("two_threads")
@pytest.mark.parametrize("batch", [3, 18], ids=["one-range", "two-ranges"])
@pytest.mark.parametrize("lengths", [False, True], ids=["full", "lengths"])
@pytest.mark.parametrize("options", CASES, ids=str)
def test_whole_layer_matches_float64_reference(
    options: dict, lengths: bool, batch: int, layer_calls: list[int]
) -> None:
    torch.manual_seed(0)
    lstm = lstmkit.LSTM(6, 7, backend="compiled", **options).eval()
    with torch.no_grad():
        for p in lstm.parameters():
            p.add_(torch.randn_like(p) * 0.3)
    T, D = 9, 2 if lstm.bidirectional else 1
    P = lstm.proj_size or 7
    x = torch.randn(T, batch, 6)
    hx = (torch.randn(lstm.num_layers * D, batch, P), torch.randn(lstm.num_layers * D, batch, 7))
    lens = torch.randint(1, T + 1, (batch,)) if lengths else None
    with torch.no_grad():
        got = lstm(x, hx, lengths=lens)
    assert len(layer_calls) == lstm.num_layers * D
    out, h, c = _oracle(lstm, options, x, hx, lens)
    for name, a, b in zip(("output", "h_n", "c_n"), (got[0], *got[1]), (out, h, c)):
        tol = dict(rtol=1e-4, atol=2e-5)
        torch.testing.assert_close(a.double(), b, **tol, msg=lambda m, n=name: f"{n}: {m}")


def test_whole_layer_runs_only_without_autograd(layer_calls: list[int]) -> None:
    lstm = lstmkit.LSTM(4, 5, backend="compiled")
    x = torch.randn(6, 2, 4)
    y = lstm(x)[0]  # parameters require grad: the autograd path
    assert not layer_calls and y.requires_grad
    with torch.no_grad():
        lstm(x)
    assert len(layer_calls) == 1
    with torch.no_grad():  # float64: the loop on a projection made by torch
        lstmkit.LSTM(4, 5, backend="compiled", dtype=torch.float64)(x.double())
    assert len(layer_calls) == 1


def test_whole_layer_sees_weight_updates_between_calls(layer_calls: list[int]) -> None:
    lstm = lstmkit.LSTM(4, 5, backend="compiled")
    x = torch.randn(6, 2, 4)
    with torch.no_grad():
        first = lstm(x)[0]
        lstm.weight_ih_l0.data.mul_(-1.5)  # a write that no version counter sees
        lstm.weight_hh_l0.data.mul_(0.5)
        second = lstm(x)[0]
    want = lstm(x)[0].detach()
    assert len(layer_calls) == 2 and not torch.allclose(first, second)
    torch.testing.assert_close(second, want, rtol=1e-5, atol=1e-6)


@pytest.fixture
def lean_served(monkeypatch: pytest.MonkeyPatch) -> list[bool]:
    """Whether each module call took the short inference path (:mod:`lstmkit._lean_forward`)."""
    import lstmkit.lstm as lstm_module

    served: list[bool] = []
    real = lstm_module.lean_forward

    def spy(*args: object) -> object:
        got = real(*args)
        served.append(got is not None)
        return got

    monkeypatch.setattr(lstm_module, "lean_forward", spy)
    return served


LEAN_CASES = [
    dict(num_layers=2, bidirectional=True, batch_first=True),
    dict(num_layers=3, dropout=0.4, recurrent_dropout=0.3, zoneout=(0.2, 0.1), proj_size=3),
    dict(layer_norm=True, peephole=True, gate_clip=1.0, cell_clip=0.7, activation="softsign"),
]  # fmt: skip


@pytest.mark.usefixtures("two_threads")
@pytest.mark.parametrize("layout", ["batched", "unbatched"])
@pytest.mark.parametrize("training", [False, True], ids=["eval", "train"])
@pytest.mark.parametrize("options", LEAN_CASES, ids=str)
def test_short_path_equals_the_general_path(
    options: dict, training: bool, layout: str, lean_served: list[bool]
) -> None:
    """Same numbers (and the same random masks, seeded) with and without autograd."""
    torch.manual_seed(0)
    lstm = lstmkit.LSTM(6, 7, **options).train(training)
    D = 2 if lstm.bidirectional else 1
    P, rows = lstm.proj_size or 7, lstm.num_layers * D
    batch = () if layout == "unbatched" else (17,)
    x = torch.randn(*batch, 9, 6) if lstm.batch_first else torch.randn(9, *batch, 6)
    hx = (torch.randn(rows, *batch, P), torch.randn(rows, *batch, 7))
    torch.manual_seed(3)
    want = lstm(x, hx)
    torch.manual_seed(3)
    with torch.no_grad():
        got = lstm(x, hx)
    assert lean_served == [False, True]
    for name, a, b in zip(("output", "h_n", "c_n"), (got[0], *got[1]), (want[0], *want[1])):
        assert a.shape == b.shape
        tol = dict(rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(a, b.detach(), **tol, msg=lambda m, n=name: f"{n}: {m}")


@pytest.mark.parametrize(
    "call",
    [
        lambda m, x: m(x[:1]),  # one step under auto: the reference cell
        lambda m, x: m(x, lengths=torch.tensor([3, 5])),
        lambda m, x: m(x, return_states=True),
        lambda m, x: m(x.double()),  # the general path says what is wrong
        lambda m, x: m(x, (torch.zeros(1, 2, 5), torch.zeros(2, 2, 5))),
        lambda m, x: m(x[..., :3]),
    ],
    ids=["one-step", "lengths", "states", "float64", "bad-hx", "bad-input"],
)
def test_short_path_leaves_other_calls_to_the_general_path(
    call: object, lean_served: list[bool]
) -> None:
    lstm = lstmkit.LSTM(4, 5)
    x = torch.randn(6, 2, 4)
    with torch.no_grad(), contextlib.suppress(RuntimeError, ValueError, TypeError):
        call(lstm, x)  # some raise nn.LSTM's error, from the general path
    assert True not in lean_served


@pytest.mark.usefixtures("two_threads")
@pytest.mark.parametrize("in_loop", [True, False], ids=["in-loop", "torch-projects"])
@pytest.mark.parametrize("way", ["PANELS", "DOTS"])
@pytest.mark.parametrize("batch", [3, 18], ids=["one-range", "two-ranges"])
def test_every_projection_route_matches_float64_reference(
    way: str, in_loop: bool, batch: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each projection route forced (the choice is otherwise timed), on sizes that span
    several panels and weight chunks, with layer norm and a bias."""
    from lstmkit.backends.numba import blas, engine

    real = blas.choose
    forced = getattr(blas, way)

    def choose(*args: object, among: tuple[int, ...] | None = None, **kwargs: object) -> int:
        return forced if among is not None else real(*args, among=among, **kwargs)

    monkeypatch.setattr(engine, "_layer_plans", {})  # plans of the real choices: none
    monkeypatch.setattr(blas, "choose", choose)
    monkeypatch.setattr(blas, "project_in_loop", lambda rows, k, n: in_loop)
    torch.manual_seed(1)
    options = dict(layer_norm=True, num_layers=2, bidirectional=True)
    lstm = lstmkit.LSTM(300, 70, backend="compiled", **options).eval()
    x = torch.randn(7, batch, 300)
    hx = (torch.randn(4, batch, 70), torch.randn(4, batch, 70))
    with torch.no_grad():
        out, (h, c) = lstm(x, hx)
    want = lstmkit.LSTM(300, 70, backend="reference", dtype=torch.float64, **options).eval()
    want.load_state_dict(lstm.state_dict())
    with torch.no_grad():
        w_out, (w_h, w_c) = want(x.double(), tuple(s.double() for s in hx))
    for a, b in ((out, w_out), (h, w_h), (c, w_c)):
        torch.testing.assert_close(a.double(), b, rtol=1e-4, atol=5e-5)


def test_measuring_a_new_shape_draws_nothing_from_the_global_generator() -> None:
    """The first call of a shape times the routes on random data of its own: seeded
    training calls (dropout masks) repeat, and the caller's next draw is unchanged."""
    from lstmkit.backends.numba import blas, engine, routes

    lstm = lstmkit.LSTM(6, 7, num_layers=2, dropout=0.5).train()
    x = torch.randn(9, 3, 6)
    results = []
    blas._measured.clear()  # the first call measures, the second finds the times kept
    blas._projection_measured.clear()
    routes._measured.clear()
    engine._layer_plans.clear()
    for _ in range(2):
        torch.manual_seed(3)
        with torch.no_grad():
            out = lstm(x)[0]
        results.append((out, torch.rand(1)))
    torch.testing.assert_close(results[0][0], results[1][0], rtol=0, atol=0)
    assert results[0][1] == results[1][1]


@pytest.mark.parametrize("grad", [False, True], ids=["no-grad", "grad"])
def test_an_empty_batch_gives_empty_outputs_like_nn_lstm(grad: bool) -> None:
    lstm = lstmkit.LSTM(4, 5, num_layers=2)
    ref = torch.nn.LSTM(4, 5, num_layers=2)
    x = torch.randn(6, 0, 4)
    with torch.set_grad_enabled(grad):
        out, (h, c) = lstm(x)
        w_out, (w_h, w_c) = ref(x)
    assert out.shape == w_out.shape and h.shape == w_h.shape and c.shape == w_c.shape


@pytest.mark.parametrize("way", ["PANELS", "DOTS"])
@pytest.mark.parametrize("first,last", [(0, 12), (3, 9)], ids=["all-rows", "row-range"])
@pytest.mark.parametrize("t0,t1", [(0, 50), (7, 33)], ids=["all-steps", "some-steps"])
def test_projection_blocks_agree_with_numpy(
    way: str, first: int, last: int, t0: int, t1: int
) -> None:
    """The in-call projection over several blocks of rows (all rows: 600 rows of 1030
    inputs, ~60 a block) or of steps (a range of 6 rows: ~10 steps a block), with a bias
    and a last block cut short, against numpy in float64; some steps only, as the
    pipelined projection makes them (:func:`lstmkit.backends.numba.layer.project_ahead`)."""
    import numpy as np

    from lstmkit.backends.numba import blas, layer

    g = torch.Generator().manual_seed(4)
    T, B, I, G = 50, 12, 1030, 72
    x = torch.randn(T, B, I, generator=g).numpy()
    w = torch.randn(G, I, generator=g) / I**0.5
    b_ih, b_hh = (torch.randn(G, generator=g).numpy() for _ in range(2))
    assert T * B * I * 4 > 2 * layer.ROWS_BLOCK_BYTES  # several blocks
    xg = np.full((T, B, G), np.nan, np.float32)
    way_ = getattr(blas, way)
    prepared = blas.prepared(w, True, last - first if last - first < B else T * B, way_)
    layer.project(x, prepared, way_, b_ih, b_hh, np.empty(0, np.float32), xg, t0, t1, first, last)
    want = x[t0:t1, first:last].astype(np.float64) @ w.numpy().T.astype(np.float64) + b_ih + b_hh
    got = torch.from_numpy(xg[t0:t1, first:last]).double()
    torch.testing.assert_close(got, torch.from_numpy(want), rtol=1e-4, atol=1e-4)
    xg[t0:t1, first:last] = np.nan
    assert np.isnan(xg).all()  # other rows and steps untouched


@pytest.mark.usefixtures("two_threads")
def test_a_small_shapes_choices_are_made_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """The first call of a small shape (one thread runs every row) makes its choices,
    each timed; the next calls of that shape make none of them again and give the same
    numbers, from a given state and from zeros; a new thread count is a new plan."""
    from lstmkit.backends.numba import blas, engine, routes

    monkeypatch.setattr(engine, "_layer_plans", {})
    torch.manual_seed(3)
    lstm = lstmkit.LSTM(6, 7, num_layers=2).eval()
    batch = 3
    x = torch.randn(5, batch, 6)
    hx = (torch.randn(2, batch, 7), torch.randn(2, batch, 7))
    with torch.no_grad():
        first = [lstm(x, hx), lstm(x)]
    made = len(engine._layer_plans)
    assert made == 2  # the two layers' input widths differ

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("a choice was made again")

    for module, name in ((blas, "choose"), (blas, "project_in_loop"), (routes, "forward_route"),
                         (engine, "_units_win"), (engine, "_ahead_wins")):  # fmt: skip
        monkeypatch.setattr(module, name, refuse)
    with torch.no_grad():
        again = [lstm(x, hx), lstm(x)]
    for (out, (h, c)), (out2, (h2, c2)) in zip(first, again):
        for a, b in ((out, out2), (h, h2), (c, c2)):
            torch.testing.assert_close(a, b, rtol=0, atol=0)
    want = _oracle(lstm, dict(num_layers=2), x, hx, None)
    for a, b in zip((first[0][0], *first[0][1]), want):
        torch.testing.assert_close(a.double(), b, rtol=1e-4, atol=5e-5)
    zeros = (torch.zeros(2, batch, 7),) * 2
    for a, b in zip((first[1][0], *first[1][1]), _oracle(lstm, dict(num_layers=2), x, zeros, None)):
        torch.testing.assert_close(a.double(), b, rtol=1e-4, atol=5e-5)
    torch.set_num_threads(1)
    with torch.no_grad(), pytest.raises(AssertionError, match="a choice was made again"):
        lstm(x)


def test_the_plans_are_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    """Past :data:`~lstmkit.backends.numba.engine.MAX_PLANS` shapes the plans start over
    (a process meeting ever new lengths keeps a bounded dict), and a shape whose plan
    was dropped is planned again and gives the same numbers."""
    from lstmkit.backends.numba import engine

    monkeypatch.setattr(engine, "_layer_plans", {})
    monkeypatch.setattr(engine, "MAX_PLANS", 2)
    torch.manual_seed(4)
    lstm = lstmkit.LSTM(6, 7).eval()
    xs = [torch.randn(steps, 2, 6) for steps in (3, 4, 5)]
    with torch.no_grad():
        first = [lstm(x)[0] for x in xs]
        assert len(engine._layer_plans) == 1  # the third shape found two and cleared them
        again = lstm(xs[0])[0]
    assert len(engine._layer_plans) == 2
    torch.testing.assert_close(again, first[0], rtol=0, atol=0)
    for x, got in zip(xs, first):
        want = _oracle(lstm, {}, x, (torch.zeros(1, 2, 7),) * 2, None)[0]
        torch.testing.assert_close(got.double(), want, rtol=1e-4, atol=5e-5)
