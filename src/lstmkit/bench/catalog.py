"""The names ``lstmkit bench`` knows, without importing torch: implementations, the cell
options ``--options`` adds, and which of them a run times by default.

``torch`` is nn.LSTM (the yardstick); ``onnxruntime`` is the ONNX ``LSTM`` operator
(inference only, when ``onnx`` and ``onnxruntime`` are installed); ``lstmkit-<backend>``
are lstmkit's backends; ``lstmkit-torch.compile`` is lstmkit under ``torch.compile``;
``lstmkit-auto+<option>`` is lstmkit with one cell option on.
"""

from __future__ import annotations

from .. import options
from ..cli_names import BACKEND_NAMES

#: ``lstmkit bench --options``: each cell option alone at its example value, on ``auto``,
#: named as in :data:`lstmkit.options.OPTIONS` (an activation by the one it switches to).
#: Modules time in training mode, so the options that draw masks per call draw them.
OPTIONS: dict[str, dict[str, object]] = {
    o.variant: {o.name: o.example} for o in options.OPTIONS if o.in_cell
}

TORCH = "torch"
ONNXRUNTIME = "onnxruntime"
COMPILE = "lstmkit-torch.compile"
BACKEND_IMPLS: tuple[str, ...] = tuple(f"lstmkit-{b}" for b in BACKEND_NAMES)
OPTION_IMPLS: tuple[str, ...] = tuple(f"lstmkit-auto+{o}" for o in OPTIONS)

#: Every implementation name, in report order.
ALL: tuple[str, ...] = (TORCH, ONNXRUNTIME, *BACKEND_IMPLS, COMPILE, *OPTION_IMPLS)


def default_names(include_compile: bool = False, include_options: bool = False) -> list[str]:
    """What a run times without ``--impls``: nn.LSTM, onnxruntime and every backend, plus
    ``torch.compile`` and the option rows when asked."""
    names = [TORCH, ONNXRUNTIME, *BACKEND_IMPLS]
    return names + [COMPILE] * include_compile + list(OPTION_IMPLS) * include_options


def parse_names(text: str) -> list[str]:
    """``--impls``: comma-separated names of :data:`ALL`; ValueError naming the unknown
    ones and the valid ones.

    >>> parse_names("torch, lstmkit-auto")
    ['torch', 'lstmkit-auto']
    """
    names = [n.strip() for n in text.split(",") if n.strip()]
    unknown = [n for n in names if n not in ALL]
    if unknown or not names:
        raise ValueError(
            f"unknown implementation(s) {', '.join(unknown) or repr(text)}; "
            f"choose from {', '.join(ALL)}"
        )
    return list(dict.fromkeys(names))  # each once, in the order given
