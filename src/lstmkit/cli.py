"""The ``lstmkit`` command line: ``lstmkit lab`` (the lab walkthrough)."""

from __future__ import annotations

import argparse
from collections.abc import Sequence


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="lstmkit", description="The LSTM layer, implemented in the open."
    )
    commands = parser.add_subparsers(dest="command", required=True)
    lab = commands.add_parser(
        "lab", help='run the lab "The LSTM layer" cell by cell, checked against nn.LSTM'
    )
    lab.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "lab":
        from .lab import TOLERANCE, run_lab

        lab = run_lab(seed=args.seed)
        return 0 if max(lab.diffs.values()) < TOLERANCE else 1
    return 2
