"""``lstmkit train``'s flags: tasks and their defaults, variants, every lstmkit.LSTM option.

Light on purpose (no torch): ``lstmkit train --help`` builds this parser and nothing else.
Each flag's type checks its own value (exit status 2, naming the flag); the cell options'
flags, and the ``--compare`` variants, derive from :data:`lstmkit.options.OPTIONS` (each
value through its option's own check). Checks that need two flags or the task's defaults
are in :mod:`.command`.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from ..cli_names import BACKEND_NAMES
from ..cli_types import (
    add_threads,
    checked_number,
    nonnegative_int,
    positive_float,
    positive_int,
    unit_interval,
)
from ..options import OPTIONS, Option

#: ``--compare`` names: lstmkit.LSTM options over the command line's own. The plain LSTM,
#: each cell option alone at its example value (:data:`lstmkit.options.OPTIONS`), and
#: a bidirectional one.
VARIANTS: dict[str, dict[str, Any]] = {
    "vanilla": {},
    **{o.variant: {o.name: o.example} for o in OPTIONS if o.in_cell},
    "bidirectional": {"bidirectional": True},
}

#: Defaults per task that finish well within two minutes on two CPU cores.
DEFAULTS: dict[str, dict[str, Any]] = {
    "co2": {"epochs": 40, "batch_size": 32, "lr": 5e-3, "hidden_size": 32, "window": 24},
    "sunspots": {"epochs": 60, "batch_size": 16, "lr": 5e-3, "hidden_size": 32, "window": 20},
    "digits": {"epochs": 15, "batch_size": 64, "lr": 5e-3, "hidden_size": 64, "window": 8},
}


def _task_default(key: str) -> str:
    return ", ".join(f"{task} {values[key]}" for task, values in DEFAULTS.items())


def variant_list(text: str) -> list[str]:
    """``--compare``: comma-separated names of :data:`VARIANTS`."""
    names = [n.strip() for n in text.split(",") if n.strip()]
    unknown = [n for n in names if n not in VARIANTS]
    if unknown or not names:
        raise argparse.ArgumentTypeError(
            f"unknown variant(s) {', '.join(unknown) or repr(text)}; "
            f"choose from {', '.join(VARIANTS)}"
        )
    return names


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add every ``lstmkit train`` flag to ``parser``."""
    run = parser.add_argument_group("the run")
    run.add_argument(
        "--task",
        default="co2",
        choices=sorted(DEFAULTS),
        help="co2, sunspots (one-step forecasting, MAE) or digits "
        "(classification, accuracy); default co2",
    )
    run.add_argument(
        "--epochs",
        metavar="N",
        type=positive_int,
        help=f"epochs in total ({_task_default('epochs')})",
    )
    run.add_argument(
        "--batch-size",
        metavar="N",
        type=positive_int,
        help=f"mini-batch size ({_task_default('batch_size')})",
    )
    run.add_argument(
        "--lr", metavar="LR", type=positive_float, help="Adam's learning rate (default 5e-3)"
    )
    run.add_argument(
        "--hidden-size",
        metavar="N",
        type=positive_int,
        help=f"LSTM hidden units ({_task_default('hidden_size')})",
    )
    run.add_argument(
        "--num-layers",
        metavar="N",
        type=positive_int,
        default=1,
        help="stacked LSTM layers (default 1)",
    )
    run.add_argument(
        "--window",
        metavar="N",
        type=positive_int,
        help="forecasting only: steps of history per sample (co2 24, sunspots 20)",
    )
    run.add_argument(
        "--seed",
        metavar="N",
        type=int,
        default=0,
        help="random seed: weights, batch order, digits' split (default 0)",
    )
    run.add_argument(
        "--seeds",
        metavar="N",
        type=positive_int,
        default=1,
        help="train each run with this many seeds (--seed, --seed+1, ...) on "
        "the same data and report mean and spread (default 1)",
    )
    run.add_argument(
        "--compare",
        type=variant_list,
        metavar="V1,V2,...",
        help=f"train these variants on the same data and compare them: {', '.join(VARIANTS)}",
    )
    add_threads(run)
    files = parser.add_argument_group("output")
    files.add_argument(
        "--out", type=Path, metavar="DIR", help="output directory (default runs/<task>)"
    )
    start = files.add_mutually_exclusive_group()
    start.add_argument(
        "--resume", action="store_true", help="continue from the checkpoint in --out up to --epochs"
    )
    start.add_argument(
        "--force",
        action="store_true",
        help="overwrite a checkpoint already in --out (without it, an existing "
        "checkpoint needs --resume)",
    )
    files.add_argument("--quiet", action="store_true", help="no progress display")
    files.add_argument("--no-plots", action="store_true", help="skip the PNG figures")
    _add_lstm_options(parser.add_argument_group("lstmkit.LSTM options (defaults: the plain LSTM)"))


def _add_lstm_options(options: Any) -> None:
    options.add_argument(
        "--bidirectional",
        action="store_true",
        help="a reverse direction too; the head reads both final states",
    )
    options.add_argument(
        "--dropout",
        type=unit_interval,
        default=0.0,
        metavar="P",
        help="dropout between layers, in [0, 1] (needs --num-layers 2+)",
    )
    options.add_argument(
        "--proj-size",
        type=nonnegative_int,
        default=0,
        metavar="P",
        help="project h to P units, 0 < P < --hidden-size (default 0: off)",
    )
    for option in OPTIONS:  # the cell options, each flag from its row of the table
        _add_cell_option(options, option)
    options.add_argument(
        "--backend",
        default="auto",
        choices=BACKEND_NAMES,
        help="lstmkit's engine (default auto: the fastest that can run)",
    )


def _add_cell_option(options: Any, option: Option) -> None:
    """One cell option's flag: a switch, a choice, or a number its own check accepts."""
    if option.default is False:
        options.add_argument(option.flag, action="store_true", help=option.help)
        return
    shown = "off" if option.default is None else option.default
    kind: dict[str, Any] = (
        {"choices": option.choices}
        if option.choices
        else {"type": checked_number(option.check), "metavar": option.metavar}
    )
    options.add_argument(
        option.flag, default=option.default, help=f"{option.help} (default {shown})", **kind
    )
