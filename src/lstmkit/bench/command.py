"""``lstmkit bench`` from parsed arguments: the report on stdout (skipped rows and warnings
at its end), progress on stderr (so ``--json > file`` writes only the JSON; with
``--json`` the skipped rows and warnings are repeated on stderr)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from types import TracebackType

from ..cli_types import torch_threads
from . import catalog, shapes


def run(args: argparse.Namespace) -> int:
    """Run the benchmark that ``args`` describe; the exit status (1 if nothing could run)."""
    with torch_threads(args.threads):
        return _run(args)


def _run(args: argparse.Namespace) -> int:
    from .impls import available
    from .runner import run as run_bench

    names = args.impls or catalog.default_names(args.compile, args.options)
    if args.shapes:
        chosen_shapes = args.shapes
    elif catalog.COMPILE in names:
        chosen_shapes = shapes.find("S2")
    else:
        full = shapes.SHAPES + shapes.STEP_SHAPES + shapes.CELL_SHAPES
        chosen_shapes = shapes.QUICK if args.quick else full
    rounds = args.rounds or (3 if args.quick else 10)
    runnable, skipped = available(names)
    if not runnable:
        for impl, why in skipped.items():
            print(f"lstmkit bench: skipped {impl}: {why}", file=sys.stderr)
        print(
            "lstmkit bench: error: none of the implementations asked for can run here",
            file=sys.stderr,
        )
        return 1
    modes = sum(2 if s.kind == "sequence" else 1 for s in chosen_shapes)
    with _Progress(modes * rounds) as advance:
        results = run_bench(chosen_shapes, rounds, names, on_progress=lambda what, _: advance(what))
    if args.json:  # the table carries these lines itself
        for note in [f"skipped {i}: {why}" for i, why in skipped.items()] + results.warnings():
            print(f"lstmkit bench: {note}", file=sys.stderr)
    print(results.to_json() if args.json else results.table(markdown=args.markdown))
    return 0


class _Progress:
    """A rich progress bar on stderr when rich is installed; else one line per shape and
    mode on stderr."""

    def __init__(self, total: int) -> None:
        self.total = total
        self.bar = None
        self.last = ""

    def __enter__(self) -> Callable[[str], None]:
        try:
            from rich.console import Console
            from rich.progress import Progress
        except ImportError:
            return self._plain
        self.bar = Progress(transient=True, console=Console(stderr=True))
        self.bar.start()
        task = self.bar.add_task("benchmark", total=self.total)
        return lambda what: self.bar.update(task, advance=1, description=what)

    def _plain(self, what: str) -> None:
        if what != self.last:
            self.last = what
            print(f"lstmkit bench: timing {what}", file=sys.stderr, flush=True)

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        if self.bar is not None:
            self.bar.stop()
        sys.stderr.flush()
