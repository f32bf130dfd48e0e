"""Shared fixtures: every lstmkit backend runs the same tests."""

from __future__ import annotations

import pytest
from oracle import GENERIC_BACKENDS


@pytest.fixture(params=GENERIC_BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture
def lean_calls(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """How many calls the compiled step kernel ran, each one step of every layer
    (``LSTM.step`` and ``LSTMCell`` without autograd, :mod:`lstmkit._lean_step`)."""
    from lstmkit.backends.numba import step

    calls: list[int] = []
    real = step.run_step_layers

    def counted(*args: object) -> None:
        calls.append(1)
        real(*args)

    monkeypatch.setattr(step, "run_step_layers", counted)
    return calls
