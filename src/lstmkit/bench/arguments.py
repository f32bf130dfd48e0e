"""``lstmkit bench``'s flags, with the shapes and implementations listed in ``--help``.

Light on purpose (no torch). ``--shapes`` and ``--impls`` are checked while parsing: an
unknown name exits with status 2 and the list of valid ones.
"""

from __future__ import annotations

import argparse

from ..cli_types import add_threads, positive_int
from . import catalog, shapes


def shape_list(text: str) -> tuple[shapes.Shape, ...]:
    """``--shapes``: comma-separated shape names."""
    try:
        return shapes.find(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def impl_list(text: str) -> list[str]:
    """``--impls``: comma-separated implementation names."""
    try:
        return catalog.parse_names(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


EPILOG = f"""\
shapes (T, B, I, H, L: steps, batch, input, hidden, layers):
{shapes.describe()}
  default: S1-S6, the step and the cell shapes; --quick: S1, S2, S3q; --compile: S2

implementations:
  {catalog.TORCH:<24} nn.LSTM (nn.LSTMCell on cell shapes), the yardstick (every ratio is to it)
  {catalog.ONNXRUNTIME:<24} the ONNX LSTM operator (inference; needs onnx and onnxruntime)
  {", ".join(catalog.BACKEND_IMPLS)}
  {"":<24} lstmkit's backends (compiled needs numba)
  {catalog.COMPILE:<24} lstmkit under torch.compile (with --compile)
  lstmkit-auto+<option>    one cell option on (with --options), <option> one of:
  {"":<24} {", ".join(list(catalog.OPTIONS)[:4])},
  {"":<24} {", ".join(list(catalog.OPTIONS)[4:])}
  A row this machine cannot run is skipped with a line saying why and what to install.

The report (stdout) starts with the machine: CPU, cores, torch and its threads. Progress
and warnings go to stderr, so --json > file writes only the JSON."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add every ``lstmkit bench`` flag to ``parser`` (and list the names in its epilog)."""
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = EPILOG
    parser.add_argument(
        "--quick",
        action="store_true",
        help="small shapes (S1, S2, S3q) and 3 rounds, for a fast check",
    )
    parser.add_argument(
        "--shapes",
        type=shape_list,
        metavar="S1,S4,...",
        help="comma-separated shape names (listed below)",
    )
    parser.add_argument(
        "--impls",
        type=impl_list,
        metavar="NAME,...",
        help="comma-separated implementations (listed below; default: torch, "
        "onnxruntime and every lstmkit backend)",
    )
    parser.add_argument(
        "--rounds",
        type=positive_int,
        metavar="N",
        help="timed rounds per measurement (default 10; 3 with --quick)",
    )
    parser.add_argument(
        "--options",
        action="store_true",
        help=f"add lstmkit with each cell option on, one at a time: {', '.join(catalog.OPTIONS)}",
    )
    parser.add_argument(
        "--compile",
        action="store_true",
        help="add lstmkit under torch.compile(fullgraph=True) and report its "
        "compile time (shapes default to S2; minutes on large shapes)",
    )
    add_threads(parser)
    output = parser.add_mutually_exclusive_group()
    output.add_argument("--json", action="store_true", help="print JSON instead of a table")
    output.add_argument("--markdown", action="store_true", help="print a markdown table")
