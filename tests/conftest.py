"""Shared fixtures: every lstmkit backend runs the same tests."""

from __future__ import annotations

import pytest

from lstmkit.backends import BACKENDS


@pytest.fixture(params=sorted(BACKENDS))
def backend(request: pytest.FixtureRequest) -> str:
    return request.param
