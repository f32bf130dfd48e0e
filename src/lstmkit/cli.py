"""The ``lstmkit`` command line: ``lstmkit lab``, ``lstmkit bench`` and ``lstmkit train``."""

from __future__ import annotations

import argparse
import importlib.util
import sys
from collections.abc import Sequence
from pathlib import Path


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="lstmkit", description="The LSTM layer, implemented in the open."
    )
    commands = parser.add_subparsers(dest="command", required=True)
    lab = commands.add_parser(
        "lab", help='run the lab "The LSTM layer" cell by cell, checked against nn.LSTM'
    )
    lab.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    lab.add_argument("--plot", type=Path, metavar="DIR",
                     help="also write PNGs of the exercise's gates, c and h over time into DIR "
                     "(needs matplotlib: pip install 'lstmkit[train]')")  # fmt: skip
    train = commands.add_parser(
        "train", help="train a small model on a real dataset (needs lstmkit[train])"
    )
    from .train.command import add_arguments

    add_arguments(train)
    bench = commands.add_parser(
        "bench", help="time lstmkit's backends against nn.LSTM (and onnxruntime) in one run"
    )
    bench.add_argument("--quick", action="store_true", help="small shapes, few rounds (for CI)")
    bench.add_argument("--shapes", help="comma-separated shape names, e.g. S1,S4,step-H64")
    bench.add_argument("--impls", help="comma-separated implementations (default: all)")
    bench.add_argument("--rounds", type=int, help="timed rounds per measurement (default 10)")
    bench.add_argument("--json", action="store_true", help="print JSON instead of a table")
    bench.add_argument(
        "--options",
        action="store_true",
        help="add lstmkit with each cell option on (peephole, gate_clip, cell_clip)",
    )
    bench.add_argument(
        "--compile",
        action="store_true",
        help="add lstmkit under torch.compile(fullgraph=True) and report its compile time "
        "(shapes default to S2; compiling unrolls the time loop: minutes on large shapes)",
    )
    bench.add_argument("--markdown", action="store_true", help="print a markdown table")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "lab":
        from .lab import TOLERANCE, run_lab

        if args.plot is not None and importlib.util.find_spec("matplotlib") is None:
            print("lstmkit lab --plot needs matplotlib: pip install 'lstmkit[train]'",
                  file=sys.stderr)  # fmt: skip
            return 2
        lab = run_lab(seed=args.seed, plot=args.plot)
        return 0 if max(lab.diffs.values()) < TOLERANCE else 1
    if args.command == "train":
        from .train.command import run

        return run(args)
    if args.command == "bench":
        return bench(args)
    return 2


def bench(args: argparse.Namespace) -> int:
    from . import bench as b

    if args.rounds is not None and args.rounds < 1:
        raise SystemExit(f"lstmkit bench: --rounds must be at least 1, got {args.rounds}")
    try:
        names = args.shapes or ("S2" if args.compile else None)
        shapes = b.find(names) if names else (b.QUICK if args.quick else b.SHAPES + b.STEP_SHAPES)
    except ValueError as e:
        raise SystemExit(f"lstmkit bench: {e}") from None
    rounds = args.rounds or (3 if args.quick else 10)
    impls = args.impls.split(",") if args.impls else None
    with _progress(len(shapes) * 2 * rounds) as advance:
        results = b.run(
            shapes, rounds, impls, on_progress=lambda what, _: advance(what),
            include_compile=args.compile, include_options=args.options,
        )  # fmt: skip
    if args.json:
        print(results.to_json())
    else:
        m = results.machine
        print(
            f"# {m['cpu']}, {m['cores']} cores, torch {m['torch']} ({m['torch_threads']} "
            f"threads); fp32 GEMM rate measured: {results.gemm_gflops:.0f} GFLOP/s"
        )
        print(results.table(markdown=args.markdown))
    return 0


class _progress:
    """A rich progress bar on stderr when rich is installed; silent otherwise."""

    def __init__(self, total: int) -> None:
        self.total = total
        self.bar = None

    def __enter__(self):
        try:
            from rich.progress import Progress
        except ImportError:
            return lambda what: None
        self.bar = Progress(transient=True, console=None)
        self.bar.start()
        task = self.bar.add_task("benchmark", total=self.total)
        return lambda what: self.bar.update(task, advance=1, description=what)

    def __exit__(self, *exc: object) -> None:
        if self.bar is not None:
            self.bar.stop()
        sys.stderr.flush()
