"""Shared fixtures: every lstmkit backend runs the same tests."""

from __future__ import annotations

import pytest
from oracle import GENERIC_BACKENDS


@pytest.fixture(params=GENERIC_BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return request.param
