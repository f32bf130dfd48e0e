"""``lstmkit train``: a small sequence model on lstmkit.LSTM, trained on real data.

Datasets ship inside PyPI packages (statsmodels, scikit-learn); nothing is downloaded
at run time. The modules here: :mod:`.data` (tasks and their naive baselines),
:mod:`.model` (LSTM + linear head), :mod:`.loop` (training, evaluation),
:mod:`.checkpoint` (safetensors + JSON, resumable), :mod:`.plots` (matplotlib PNGs),
:mod:`.report` (metrics, summary, the table), :mod:`.arguments` (the flags, without
torch), :mod:`.command` (the checks, the runs, ``--compare``, the progress bar).

The optional dependencies come with ``pip install 'lstmkit[train]'`` (from a clone:
``pip install -e '.[train]'``).
"""

from __future__ import annotations

import importlib.util

#: import name -> pip name of what ``lstmkit train`` needs beyond the core.
REQUIRED = {
    "statsmodels": "statsmodels",
    "sklearn": "scikit-learn",
    "safetensors": "safetensors",
    "matplotlib": "matplotlib",
    "rich": "rich",
}


def missing_dependencies() -> list[str]:
    """The pip names of the ``train`` extra's packages that are not installed."""
    return [pip for module, pip in REQUIRED.items() if importlib.util.find_spec(module) is None]
