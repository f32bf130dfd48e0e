"""The ``lstmkit`` command line: ``lstmkit lab``, ``lstmkit bench`` and ``lstmkit train``.

Building the parser imports no torch, so ``--help`` and ``--version`` answer at once;
each command imports what it needs when it runs. Exit status: 0 done, 1 a check failed
(the lab found a mismatch, nothing could be benchmarked), 2 a usage error (a bad flag
value, flags that contradict each other, a missing optional dependency), with a message
naming the flag, what was expected and what came.
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
from collections.abc import Sequence
from pathlib import Path

from . import __version__
from .bench.arguments import add_arguments as add_bench_arguments
from .cli_names import BACKEND_NAMES, install_hint
from .train.arguments import add_arguments as add_train_arguments


def build_parser() -> argparse.ArgumentParser:
    """The parser of every command (imports no torch)."""
    parser = argparse.ArgumentParser(
        prog="lstmkit", description="The LSTM layer, implemented in the open."
    )
    parser.add_argument("--version", action="version", version=f"lstmkit {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    lab = commands.add_parser(
        "lab",
        help='run the lab "The LSTM layer" cell by cell, checked against nn.LSTM',
        description='Run the lab "The LSTM layer" cell by cell with lstmkit.LSTM, checking '
        "every cell against nn.LSTM holding the same weights. Exit status 1 on a mismatch.",
    )
    lab.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    lab.add_argument(
        "--backend",
        default="auto",
        choices=BACKEND_NAMES,
        help="lstmkit's engine (default auto: the fastest that can run; the "
        "first line says which ran)",
    )
    lab.add_argument(
        "--plot",
        type=Path,
        metavar="DIR",
        help="also write DIR/gates.png: the exercise's gates, c and h over time "
        f"(needs matplotlib: {install_hint('train')})",
    )
    train = commands.add_parser(
        "train",
        help="train a small model on a real dataset (needs the train extra)",
        description="Train an lstmkit.LSTM model on a real dataset that ships in a PyPI "
        f"package, with checkpoints, a results table and figures. Needs: {install_hint('train')}",
    )
    add_train_arguments(train)
    bench = commands.add_parser(
        "bench",
        help="time lstmkit's backends against nn.LSTM (and onnxruntime) in one run",
        description="Time nn.LSTM, onnxruntime's LSTM operator and lstmkit's backends in one\n"
        "process, interleaved: the median of the rounds, forward (no grad) and\n"
        "forward+backward, as ratios to nn.LSTM and shares of the machine's GEMM rate.",
    )
    add_bench_arguments(bench)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status (``--help`` and ``--version``: 0,
    a usage error: 2)."""
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as done:  # argparse: --help, --version, or a usage error (2)
        return done.code if isinstance(done.code, int) else 0 if done.code is None else 2
    if args.command == "lab":
        return lab(args)
    if args.command == "train":
        from .train.command import run

        return run(args)
    from .bench.command import run as bench

    return bench(args)


def lab(args: argparse.Namespace) -> int:
    """``lstmkit lab``: 0 when every cell matches nn.LSTM, 1 otherwise."""
    if args.plot is not None and importlib.util.find_spec("matplotlib") is None:
        print(
            f"lstmkit lab: error: argument --plot: needs matplotlib: {install_hint('train')}",
            file=sys.stderr,
        )
        return 2
    from .lab import TOLERANCE, run_lab

    try:
        walk = run_lab(seed=args.seed, plot=args.plot, backend=args.backend)
    except NotImplementedError as err:
        print(f"lstmkit lab: error: argument --backend: {err}", file=sys.stderr)
        return 2
    return 0 if max(walk.diffs.values()) < TOLERANCE else 1
