"""The projection pipelined on a second thread ahead of the time loop
(:func:`lstmkit.backends.numba.engine._pipeline`, :mod:`lstmkit.backends.numba.sync`):
the same layer as the float64 reference under every option, in blocks cut short at the
end and walked backwards; no hang with a team of one thread or a failing projection; the
choice timed once per shape without drawing from the global generator."""

from __future__ import annotations

import subprocess

import pytest
import torch
from fresh_process import run_python

import lstmkit
from lstmkit.backends import compiled

pytestmark = pytest.mark.skipif(not compiled.AVAILABLE, reason="numba is not installed")

CASES = [
    dict(),
    dict(num_layers=2, bidirectional=True, proj_size=3),
    dict(peephole=True, gate_clip=0.8, cell_clip=0.6, bias=False),
    dict(layer_norm=True, activation="softsign", recurrent_activation="hardsigmoid"),
    dict(zoneout=(0.3, 0.1), num_layers=2),
]  # fmt: skip


@pytest.fixture
def pipelined(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Every layer pipelined (the choice is otherwise timed); how many ran so."""
    from lstmkit.backends.numba import engine, layer

    runs: list[int] = []
    real = engine._pipeline

    def counted(*args: object) -> None:
        runs.append(1)
        real(*args)

    monkeypatch.setattr(engine, "_layer_plans", {})  # plans of the real choices: none
    monkeypatch.setattr(layer, "pipelined", lambda *args: True)
    monkeypatch.setattr(engine, "_ahead_wins", lambda *args: True)
    monkeypatch.setattr(engine, "_units_win", lambda *args: False)  # (tests/test_units.py)
    monkeypatch.setattr(engine, "_pipeline", counted)
    return runs


@pytest.mark.parametrize("lengths", [False, True], ids=["full", "lengths"])
@pytest.mark.parametrize("training", [False, True], ids=["eval", "train-mode"])
@pytest.mark.parametrize("options", CASES, ids=str)
def test_pipelined_layer_matches_float64_reference(
    options: dict, training: bool, lengths: bool, pipelined: list[int]
) -> None:
    """40 steps in blocks of 3 (the last one of 1), 3 rows; in train mode without
    autograd zoneout draws a mask per step (the loop gets them block by block) and the
    reference runs in float32, to draw the same masks."""
    torch.manual_seed(0)
    lstm = lstmkit.LSTM(5, 7, backend="compiled", **options).train(training)
    with torch.no_grad():
        for p in lstm.parameters():
            p.add_(torch.randn_like(p) * 0.3)
    # train mode: zoneout's masks are drawn in the module's dtype, so a float32 reference
    # draws the same ones
    dtype = torch.float32 if training else torch.float64
    ref = lstmkit.LSTM(5, 7, backend="reference", dtype=dtype, **options)
    ref.load_state_dict(lstm.state_dict())
    ref.train(training)
    T, B, D = 40, 3, 2 if lstm.bidirectional else 1
    P = lstm.proj_size or 7
    x = torch.randn(T, B, 5)
    hx = (torch.randn(lstm.num_layers * D, B, P), torch.randn(lstm.num_layers * D, B, 7))
    lens = torch.tensor([40, 17, 1]) if lengths else None
    with torch.no_grad():
        torch.manual_seed(1)  # the same zoneout masks for both
        got = lstm(x, hx, lengths=lens)
        torch.manual_seed(1)
        want = ref(x.to(dtype), tuple(s.to(dtype) for s in hx), lengths=lens)
    assert len(pipelined) == lstm.num_layers * D
    for name, a, b in zip(("output", "h_n", "c_n"), (got[0], *got[1]), (want[0], *want[1])):
        torch.testing.assert_close(
            a.double(), b.double(), rtol=1e-4, atol=2e-5, msg=lambda m, n=name: f"{n}: {m}"
        )


#: The start of every script of :func:`_run`: every layer pipelined.
_HEAD = """
        import torch, lstmkit
        from lstmkit.backends.numba import engine, layer
        layer.pipelined = lambda *args: True
        engine._ahead_wins = lambda *args: True
        engine._units_win = lambda *args: False
        torch.manual_seed(0)
        lstm = lstmkit.LSTM(6, 8, num_layers=2, backend="compiled")
        ref = lstmkit.LSTM(6, 8, num_layers=2, backend="reference", dtype=torch.float64)
        ref.load_state_dict(lstm.state_dict())
        x = torch.randn(50, 2, 6)
"""


def _run(script: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """``script`` after :data:`_HEAD` in a fresh interpreter (:func:`fresh_process.run_python`)."""
    return run_python(_HEAD, script, env)


def test_a_team_of_one_thread_runs_the_projection_then_the_loop() -> None:
    """With OpenMP allowed one thread, the team runs both calls in turn: the projection
    first (it never waits), so the loop's waits end."""
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


def test_a_failing_projection_raises_instead_of_hanging() -> None:
    run = _run(
        """
        def broken(*args):
            raise RuntimeError("projection failed")
        layer.project_ahead = broken
        try:
            with torch.no_grad():
                lstm(x)
        except RuntimeError as error:
            print("raised:", error)
        """
    )
    assert run.returncode == 0 and "raised: projection failed" in run.stdout, run.stderr[-3000:]


def test_the_choice_is_timed_once_per_shape_on_its_own_generator() -> None:
    from lstmkit.backends.numba import engine

    engine._ahead_measured.clear()
    state = torch.get_rng_state()
    answer = engine._ahead_wins(300, 2, 8, 32, 8)
    assert torch.get_rng_state().equal(state)
    key = (engine.AHEAD_MEASURED_STEPS, 2, 8, 32, 8, torch.get_num_threads())
    assert engine._ahead_measured == {key: answer}
    engine._ahead_measured[key] = not answer  # kept: the next call reads it
    assert engine._ahead_wins(500, 2, 8, 32, 8) is (not answer)
    engine._ahead_wins(40, 2, 8, 32, 8)  # shorter: timed at 32 steps, as every T of 32-63
    assert engine._ahead_measured.keys() == {key, (32, *key[1:])}
    engine._ahead_wins(63, 2, 8, 32, 8)
    assert len(engine._ahead_measured) == 2
