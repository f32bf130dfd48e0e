"""The names the command line offers as choices, spelt out without importing torch (so
that ``--help`` is instant). ``tests/test_cli.py`` checks each against the library's own
table, so they cannot drift apart. The activations' names are in :mod:`lstmkit.options`
(``CELL_ACTIVATIONS``, ``GATE_ACTIVATIONS``), which imports no torch either."""

from __future__ import annotations

#: ``backend=``: :data:`lstmkit.backends.BACKEND_NAMES`.
BACKEND_NAMES: tuple[str, ...] = ("auto", "reference", "fused", "compiled", "triton")


def install_hint(extra: str) -> str:
    """``pip install 'lstmkit[extra]'`` and its from-a-clone form, for error messages."""
    return f"pip install 'lstmkit[{extra}]' (from a clone: pip install -e '.[{extra}]')"
