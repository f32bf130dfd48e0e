"""A script in a fresh Python interpreter, for what cannot be undone in this one (thread
limits read at start-up, monkeypatched engine choices) or might hang."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap


def run_python(
    head: str, script: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess:
    """``head`` then ``script`` (each dedented) in a fresh interpreter with this one's
    environment plus ``env``; killed after 120 s, so that a hang fails the calling test
    instead of stalling the suite."""
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(head) + textwrap.dedent(script)],
        capture_output=True, text=True, timeout=120, env={**os.environ, **(env or {})},
    )  # fmt: skip
