"""The names the command line offers as choices, spelt out without importing torch (so
that ``--help`` is instant). ``tests/test_cli.py`` checks each against the library's own
table, so they cannot drift apart."""

from __future__ import annotations

#: ``backend=``: :data:`lstmkit.backends.BACKEND_NAMES`.
BACKEND_NAMES: tuple[str, ...] = ("auto", "reference", "fused", "compiled", "triton")

#: ``activation=``: the keys of :data:`lstmkit.activations.CELL_ACTIVATIONS`.
CELL_ACTIVATIONS: tuple[str, ...] = ("tanh", "relu", "softsign")

#: ``recurrent_activation=``: the keys of :data:`lstmkit.activations.GATE_ACTIVATIONS`.
GATE_ACTIVATIONS: tuple[str, ...] = ("sigmoid", "hardsigmoid")


def install_hint(extra: str) -> str:
    """``pip install 'lstmkit[extra]'`` and its from-a-clone form, for error messages."""
    return f"pip install 'lstmkit[{extra}]' (from a clone: pip install -e '.[{extra}]')"
