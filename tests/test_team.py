"""The compiled engine's row ranges run at once on torch's OpenMP team
(:mod:`lstmkit.backends.numba.team`), or on Python threads where that team cannot serve:
every range exactly once, errors raised in the caller, and a forked child still works."""

from __future__ import annotations

import multiprocessing as mp
import threading

import pytest
import torch

import lstmkit
from lstmkit.backends import compiled

pytestmark = pytest.mark.skipif(not compiled.AVAILABLE, reason="numba is not importable")


@pytest.fixture(params=["openmp", "threads"])
def team(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch):
    from lstmkit.backends.numba import team

    if request.param == "threads":
        monkeypatch.setattr(team, "_LIB", None)
    elif team.route() != "openmp":
        pytest.skip("torch's OpenMP library was not found in this process")
    return team


@pytest.mark.parametrize("count", [1, 2, 5])
def test_every_call_runs_once_on_its_own_thread(team, count: int) -> None:
    ran: list[tuple[int, int]] = []
    lock = threading.Lock()

    def call(k: int) -> None:
        with lock:
            ran.append((k, threading.get_ident()))

    team.run_all([lambda k=k: call(k) for k in range(count)])
    assert sorted(k for k, _ in ran) == list(range(count))
    used = len({ident for _, ident in ran})
    assert used == count if count <= 2 else used >= 2  # at once, not one after another


def test_an_error_in_any_call_is_raised_in_the_caller(team) -> None:
    def bad() -> None:
        raise ValueError("from a range")

    with pytest.raises(ValueError, match="from a range"):
        team.run_all([lambda: None, bad])
    team.run_all([lambda: None, lambda: None])  # and the team still works


def _child(queue) -> None:  # runs in the forked child
    torch.manual_seed(0)
    lstm = lstmkit.LSTM(4, 8, backend="compiled")
    x = torch.randn(5, 32, 4)
    with torch.no_grad():
        queue.put(lstm(x)[0].sum().item())


def test_a_forked_child_runs_the_split_rows() -> None:
    """After the parent ran split rows on torch's team, a forked child (whose copy of the
    team would hang) runs them on Python threads, and gets the parent's numbers."""
    torch.manual_seed(0)
    lstm = lstmkit.LSTM(4, 8, backend="compiled")
    x = torch.randn(5, 32, 4)
    with torch.no_grad():
        want = lstm(x)[0].sum().item()
    ctx = mp.get_context("fork")
    queue = ctx.Queue()
    child = ctx.Process(target=_child, args=(queue,))
    child.start()
    child.join(120)
    if child.exitcode is None:
        child.kill()
    assert child.exitcode == 0
    assert queue.get(timeout=10) == pytest.approx(want, rel=1e-6, abs=1e-6)
