"""Command-line value types that say what they expect, and the usage error raised by a
check that needs more than one flag. Every refusal exits with status 2 and names the flag.

>>> unit_interval("0.25")
0.25
>>> unit_interval("1.5")
Traceback (most recent call last):
...
argparse.ArgumentTypeError: expected a number in [0, 1], got '1.5'
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager


class UsageError(Exception):
    """Bad command-line input found after parsing: ``flag`` and what is wrong with it.

    ``str(error)`` reads ``argument --flag: message``, as argparse's own errors do
    (just ``message`` when no single flag is to blame).
    """

    def __init__(self, flag: str | None, message: str) -> None:
        super().__init__(f"argument {flag}: {message}" if flag else message)
        self.flag = flag


def _number(text: str, kind: type, expected: str) -> float:
    try:
        value = kind(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}") from None
    if isinstance(value, float) and not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}")
    return value


def positive_int(text: str) -> int:
    """An integer of at least 1."""
    value = int(_number(text, int, "an integer of at least 1"))
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected an integer of at least 1, got {text!r}")
    return value


def nonnegative_int(text: str) -> int:
    """An integer of at least 0."""
    value = int(_number(text, int, "an integer of at least 0"))
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected an integer of at least 0, got {text!r}")
    return value


def positive_float(text: str) -> float:
    """A finite number above 0."""
    value = _number(text, float, "a positive number")
    if not value > 0:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}")
    return value


def unit_interval(text: str) -> float:
    """A rate in [0, 1] (``--dropout``, as nn.LSTM's ``dropout``)."""
    value = _number(text, float, "a number in [0, 1]")
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"expected a number in [0, 1], got {text!r}")
    return value


def checked_number(check: Callable[[float], object]) -> Callable[[str], object]:
    """A type that reads a number and runs a library ``check`` on it (an option's, from
    :mod:`lstmkit.options`): the check's ``TypeError``/``ValueError`` message is the
    refusal's.

    >>> from lstmkit.options import BY_NAME
    >>> checked_number(BY_NAME["recurrent_dropout"].check)("1.5")
    Traceback (most recent call last):
    ...
    argparse.ArgumentTypeError: recurrent_dropout should be in [0, 1), got 1.5
    """

    def convert(text: str) -> object:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
        try:
            return check(value)
        except (TypeError, ValueError) as error:
            raise argparse.ArgumentTypeError(str(error)) from None

    return convert


def add_threads(parser: argparse.ArgumentParser) -> None:
    """``--threads N``: torch's intra-op threads for the command."""
    parser.add_argument(
        "--threads",
        type=positive_int,
        metavar="N",
        help="torch's intra-op threads (default: torch's own choice, usually one per core); "
        "on a machine shared with other busy processes, 1 is often much faster",
    )


@contextmanager
def torch_threads(threads: int | None) -> Iterator[None]:
    """Run the block with torch's thread count set to ``threads`` (``--threads``; None:
    unchanged), and put the previous count back after it (imports torch)."""
    if threads is None:
        yield
        return
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)
