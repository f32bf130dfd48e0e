"""A layer without autograd split by hidden units across threads
(:mod:`lstmkit.backends.numba.units`, :func:`lstmkit.backends.numba.engine._by_units`):
the float64 reference's results under every option it takes, at widths that leave a
thread few or no units, batch rows on both product routes; the same results on one
thread and two; no hang with a team of one thread or a failing thread; the options it
cannot take never reach it; the choice timed once per shape."""

from __future__ import annotations

import subprocess
import threading

import pytest
import torch
from fresh_process import run_python

import lstmkit
from lstmkit.backends import compiled

pytestmark = pytest.mark.skipif(not compiled.AVAILABLE, reason="numba is not installed")

CASES = [
    dict(),
    dict(num_layers=2, bidirectional=True),
    dict(peephole=True, gate_clip=0.8, cell_clip=0.6, bias=False),
    dict(activation="softsign", recurrent_activation="hardsigmoid"),
    dict(activation="relu", cell_clip=2.0),
    dict(zoneout=(0.3, 0.1), num_layers=2),
    dict(recurrent_dropout=0.4),
]  # fmt: skip


@pytest.fixture
def by_units(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Every layer split by units (the choice is otherwise timed); how many ran so."""
    from lstmkit.backends.numba import engine

    runs: list[int] = []
    real = engine._by_units

    def counted(*args: object) -> tuple:
        runs.append(1)
        return real(*args)

    monkeypatch.setattr(engine, "_layer_plans", {})  # plans of the real choices: none
    monkeypatch.setattr(engine, "_units_win", lambda *args: True)
    monkeypatch.setattr(engine, "_by_units", counted)
    return runs


def _perturbed(hidden: int, options: dict, training: bool) -> tuple[lstmkit.LSTM, lstmkit.LSTM]:
    """A compiled float32 layer with random weights, and the reference with the same ones
    (float64; float32 in train mode, where the masks are drawn in the module's dtype)."""
    torch.manual_seed(0)
    lstm = lstmkit.LSTM(5, hidden, backend="compiled", **options).train(training)
    with torch.no_grad():
        for p in lstm.parameters():
            p.add_(torch.randn_like(p) * 0.3)
    dtype = torch.float32 if training else torch.float64
    ref = lstmkit.LSTM(5, hidden, backend="reference", dtype=dtype, **options)
    ref.load_state_dict(lstm.state_dict())
    return lstm, ref.train(training)


#: (options, train mode): train mode only for the options that draw masks in it.
MODES = [(o, False) for o in CASES] + [
    (o, True) for o in CASES if o.get("zoneout") or o.get("recurrent_dropout")
]


@pytest.mark.parametrize("lengths", [False, True], ids=["full", "lengths"])
@pytest.mark.parametrize("hidden", [7, 40], ids=["H7", "H40"])
@pytest.mark.parametrize("rows", [1, 6], ids=["B1", "B6"])
@pytest.mark.parametrize(("options", "training"), MODES, ids=str)
def test_layer_split_by_units_matches_float64_reference(
    options: dict, training: bool, rows: int, hidden: int, lengths: bool, by_units: list[int]
) -> None:
    """H = 7 leaves the first of two threads no unit, H = 40 splits 16 + 24; one row
    runs the single-row kernels, six the 4 x 4 blocks; in train mode without autograd
    the masks are drawn per step, and the reference draws the same."""
    lstm, ref = _perturbed(hidden, options, training)
    T, B, D = 23, rows, 2 if lstm.bidirectional else 1
    dtype = next(ref.parameters()).dtype
    x = torch.randn(T, B, 5)
    hx = (torch.randn(lstm.num_layers * D, B, hidden), torch.randn(lstm.num_layers * D, B, hidden))
    lens = torch.tensor([23, 9, 1, 23, 4, 17][:B]) if lengths else None
    with torch.no_grad():
        torch.manual_seed(1)  # the same masks for both
        got = lstm(x, hx, lengths=lens)
        torch.manual_seed(1)
        want = ref(x.to(dtype), tuple(s.to(dtype) for s in hx), lengths=lens)
    assert len(by_units) == (lstm.num_layers * D if torch.get_num_threads() >= 2 else 0)
    for name, a, b in zip(("output", "h_n", "c_n"), (got[0], *got[1]), (want[0], *want[1])):
        torch.testing.assert_close(
            a.double(), b.double(), rtol=1e-4, atol=2e-5, msg=lambda m, n=name: f"{n}: {m}"
        )


@pytest.mark.parametrize("options", [dict(layer_norm=True), dict(proj_size=3)], ids=str)
def test_options_it_cannot_take_never_reach_it(options: dict, by_units: list[int]) -> None:
    """Layer normalisation (statistics over every unit) and a projection (h_t mixes every
    unit) run on the other paths, with the reference's results."""
    lstm, ref = _perturbed(8, options, False)
    x = torch.randn(30, 2, 5)
    with torch.no_grad():
        got, want = lstm(x)[0], ref(x.double())[0]
    assert by_units == []
    torch.testing.assert_close(got.double(), want, rtol=1e-4, atol=2e-5)


def test_one_thread_and_two_agree_and_two_callers_at_once(by_units: list[int]) -> None:
    """The units' results do not depend on how many threads share them, beyond float
    rounding (each unit's arithmetic is the same on any thread), nor on another Python
    thread calling the same module at the same time."""
    torch.manual_seed(0)
    lstm = lstmkit.LSTM(6, 48, num_layers=2, backend="compiled")
    x = torch.randn(60, 2, 6)
    threads = torch.get_num_threads()
    with torch.no_grad():
        try:
            torch.set_num_threads(1)
            alone = lstm(x)[0]
        finally:
            torch.set_num_threads(threads)
        shared = lstm(x)[0]
        torch.testing.assert_close(shared, alone, rtol=1e-5, atol=1e-6)
        results: list[torch.Tensor] = []

        def call() -> None:
            with torch.no_grad():
                results.append(lstm(x)[0])

        callers = [threading.Thread(target=call) for _ in range(2)]
        for caller in callers:
            caller.start()
        for caller in callers:
            caller.join()
    assert len(results) == 2
    for got in results:
        torch.testing.assert_close(got, shared, rtol=1e-5, atol=1e-6)


#: The start of every script of :func:`_run`: every layer split by units.
_HEAD = """
        import torch, lstmkit
        from lstmkit.backends.numba import engine, units
        engine._units_win = lambda *args: True
        torch.manual_seed(0)
        lstm = lstmkit.LSTM(6, 40, num_layers=2, backend="compiled")
        ref = lstmkit.LSTM(6, 40, num_layers=2, backend="reference", dtype=torch.float64)
        ref.load_state_dict(lstm.state_dict())
        x = torch.randn(50, 1, 6)
"""


def _run(script: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """``script`` after :data:`_HEAD` in a fresh interpreter (:func:`fresh_process.run_python`)."""
    return run_python(_HEAD, script, env)


def test_a_team_of_one_thread_runs_every_unit() -> None:
    """With OpenMP allowed one thread, the team it gets has one thread: that thread takes
    every unit (a part per thread the call really got), and nothing waits."""
    run = _run(
        """
        with torch.no_grad():
            got, want = lstm(x)[0], ref(x.double())[0]
        torch.testing.assert_close(got.double(), want, rtol=1e-4, atol=2e-5)
        print("ok")
        """,
        env={"OMP_THREAD_LIMIT": "1"},
    )
    assert run.returncode == 0 and "ok" in run.stdout, run.stderr[-3000:]


def test_a_failing_thread_raises_instead_of_hanging() -> None:
    """One thread's part raises before its first step: the others, waiting for it every
    step, are released and the error reaches the caller."""
    run = _run(
        """
        real = units.forward_units
        def broken(*args):
            if args[-2] == 1:
                raise RuntimeError("part failed")
            real(*args)
        units.forward_units = broken
        torch.set_num_threads(2)
        try:
            with torch.no_grad():
                lstm(x)
        except RuntimeError as error:
            print("raised:", error)
        """
    )
    assert run.returncode == 0 and "raised: part failed" in run.stdout, run.stderr[-3000:]


def test_without_openmp_each_call_has_threads_of_its_own() -> None:
    """Without torch's OpenMP team (another platform, a forked child), each call's parts
    run on threads of their own: two callers at once, each with more parts than there
    are cores, neither waits behind the other's queued parts."""
    run = _run(
        """
        import threading
        from lstmkit.backends.numba import team
        team._LIB = None
        torch.set_num_threads(4)
        xs = [torch.randn(20, 1, 6) for _ in range(2)]
        got = [None, None]
        def call(k):
            with torch.no_grad():
                got[k] = lstm(xs[k])[0]
        callers = [threading.Thread(target=call, args=(k,)) for k in range(2)]
        for c in callers:
            c.start()
        for c in callers:
            c.join()
        for k in range(2):
            want = ref(xs[k].double())[0]
            torch.testing.assert_close(got[k].double(), want, rtol=1e-4, atol=2e-5)
        print("ok")
        """
    )
    assert run.returncode == 0 and "ok" in run.stdout, run.stderr[-3000:]


def test_the_choice_is_timed_once_per_shape_on_its_own_generator() -> None:
    """Timed at two lengths, the fitted lines compared at each call's length, never
    below the shorter one (no extrapolation)."""
    from lstmkit.backends.numba import engine

    engine._units_measured.clear()
    state = torch.get_rng_state()
    engine._units_win(300, 1, 8, 64, False)
    assert torch.get_rng_state().equal(state)
    key = (1, 8, 64, False, torch.get_num_threads())
    assert list(engine._units_measured) == [key]
    fixed_u, step_u, fixed_o, step_o = engine._units_measured[key]
    assert min(step_u, step_o) >= 0 and all(abs(v) < 1 for v in (fixed_u, fixed_o))
    engine._units_measured[key] = (1.0, 0.001, 0.5, 0.002)  # kept: later calls read it
    assert not engine._units_win(100, 1, 8, 64, False)  # 1.1 against 0.7 s
    assert engine._units_win(1000, 1, 8, 64, False)  # 2.0 against 2.5 s
    engine._units_measured[key] = (0.0, 0.001, 0.5, 0.002)  # a split that would always win
    assert engine._units_win(engine.UNITS_MEASURED_STEPS[0], 1, 8, 64, False)
    assert not engine._units_win(engine.UNITS_MEASURED_STEPS[0] - 1, 1, 8, 64, False)
    engine._units_measured.clear()
    engine._units_win(5, 1, 8, 64, False)
    assert not engine._units_measured  # shorter than any length measured: nothing timed
