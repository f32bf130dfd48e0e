"""``lstmkit train``: check the whole request, then one run or a ``--compare`` of variants.

Writes into ``--out`` (default ``runs/<task>``): ``checkpoint.safetensors`` +
``checkpoint.json`` (every epoch), ``metrics.json``, ``curves.png``,
``predictions.png`` (forecasting) or ``confusion.png`` (classification), and
``gates.png`` (one held-out sample through the trained LSTM), and ``summary.json``. With
``--compare a,b,c`` each variant trains in ``<out>/<variant>`` from the same seed and
data, and ``<out>/compare_*.png`` put all of them on one figure. With ``--seeds N`` each
run repeats with seeds ``--seed .. --seed+N-1`` (in ``.../seed<k>``, the data split fixed
by ``--seed``); the table and ``summary.json`` give the mean and standard deviation, the
figures show the first seed and quote the table's numbers.

Everything that can be refused is refused before the first progress line: bad values,
flags that contradict each other, a missing or mismatched checkpoint for ``--resume``, an
existing checkpoint without ``--resume`` or ``--force``. Refusals exit with status 2.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..cli_names import install_hint
from ..cli_types import UsageError, torch_threads
from ..options import OPTIONS
from . import missing_dependencies
from .arguments import DEFAULTS, VARIANTS

if TYPE_CHECKING:  # torch-heavy: imported when a run starts
    from .data import Dataset
    from .loop import Result, TrainConfig

#: lstmkit.LSTM's defaults for the options the command line sets: its own, then every
#: cell option's (:data:`lstmkit.options.OPTIONS`).
LSTM_DEFAULTS: dict[str, Any] = {
    "bidirectional": False,
    "dropout": 0.0,
    "proj_size": 0,
    **{o.name: o.default for o in OPTIONS},
    "backend": "auto",
}


@dataclass(frozen=True)
class Planned:
    """One training run of the request: its name, configuration and directory."""

    name: str
    config: TrainConfig
    directory: Path
    label: str


def lstm_options(args: argparse.Namespace) -> dict[str, Any]:
    """The lstmkit.LSTM keyword arguments the command line set away from their defaults."""
    chosen = {key: getattr(args, key) for key in LSTM_DEFAULTS}
    return {k: v for k, v in chosen.items() if v != LSTM_DEFAULTS[k]}


def config_of(args: argparse.Namespace, extra: dict[str, Any]) -> TrainConfig:
    """The run's :class:`~.loop.TrainConfig`; :class:`UsageError` for flags that do not
    fit together or with the task."""
    from .loop import TrainConfig

    task = DEFAULTS[args.task]
    pick = {k: getattr(args, k) if getattr(args, k) is not None else task[k] for k in task}
    if args.task == "digits" and args.window is not None:
        raise UsageError(
            "--window", "is for the forecasting tasks (co2, sunspots); digits reads its 8 rows"
        )
    if args.proj_size and args.proj_size >= pick["hidden_size"]:
        raise UsageError(
            "--proj-size",
            f"must be smaller than --hidden-size ({pick['hidden_size']}), got {args.proj_size}",
        )
    if args.dropout > 0 and args.num_layers == 1:
        raise UsageError(
            "--dropout", "acts between stacked layers: it needs --num-layers 2 or more, got 1"
        )
    return TrainConfig(
        task=args.task,
        num_layers=args.num_layers,
        seed=args.seed,
        lstm={**lstm_options(args), **extra},
        **pick,
    )


def run(args: argparse.Namespace) -> int:
    """Run ``lstmkit train`` with parsed ``args``; the exit status."""
    missing = missing_dependencies()
    if missing:
        print(
            f"lstmkit train needs packages that are not installed: {', '.join(missing)}.\n"
            f"Install them with:  {install_hint('train')}",
            file=sys.stderr,
        )
        return 2
    from .checkpoint import CheckpointError

    try:
        with torch_threads(args.threads):
            return _run(args)
    except (CheckpointError, UsageError) as err:
        print(f"lstmkit train: error: {err}", file=sys.stderr)
        return 2


def plan(args: argparse.Namespace, data: Dataset) -> list[Planned]:
    """Every run of the request, checked: each model builds, each checkpoint is resumable
    (``--resume``) or absent (unless ``--force``)."""
    from . import checkpoint
    from .loop import build_model

    out = args.out or Path("runs") / args.task
    if out.exists() and not out.is_dir():
        raise UsageError("--out", f"{out} exists and is not a directory")
    runs = []
    for name in args.compare or [None]:
        config = config_of(args, VARIANTS.get(name, {}))
        try:
            build_model(config, data)
        except (ValueError, TypeError) as err:
            variant = f" (variant {name})" if name else ""
            raise UsageError(None, f"lstmkit.LSTM refused these options{variant}: {err}") from err
        for seed in range(args.seed, args.seed + args.seeds):
            directory = out / name if name else out
            directory = directory / f"seed{seed}" if args.seeds > 1 else directory
            seeded = replace(config, seed=seed)
            if args.resume:
                try:
                    checkpoint.check(directory, seeded.to_dict())
                except checkpoint.CheckpointError as err:
                    raise UsageError("--resume", str(err)) from err
            elif checkpoint.exists(directory) and not args.force:
                raise UsageError(
                    "--out",
                    f"{directory} already holds a checkpoint; add "
                    "--resume to continue it, or --force to train anew over it",
                )
            label = f"{args.task} {name or 'lstm'}" + (f" seed {seed}" if args.seeds > 1 else "")
            runs.append(Planned(name or "lstm", seeded, directory, label))
    return runs


def _run(args: argparse.Namespace) -> int:
    from rich.console import Console

    from . import data as datasets
    from . import plots, report
    from .loop import fit

    config_of(args, {})  # the flags' own checks, before loading anything
    window = args.window if args.window is not None else DEFAULTS[args.task]["window"]
    try:
        data = datasets.load(args.task, window, args.seed)  # one split for all runs
    except ValueError as err:
        raise UsageError("--window", str(err).removeprefix("window ")) from err
    planned = plan(args, data)
    console = Console(stderr=True, quiet=args.quiet)
    runs: dict[str, list[Result]] = {}
    for p in planned:
        with _progress(console, p.label, p.config, len(data.y_train)) as on_batch:
            result = fit(p.config, data, p.directory, resume=args.resume, on_batch=on_batch)
        runs.setdefault(p.name, []).append(result)
        report.write_metrics(p.directory, p.name, result, data)
    report.table(console, runs, data)
    out = args.out or Path("runs") / args.task
    report.write_summary(out, runs, data)
    if not args.no_plots:
        figures = _plots(plots, runs, data, out, compare=bool(args.compare))
        console.print("figures: " + ", ".join(str(p) for p in figures))
    return 0


@contextmanager
def _progress(
    console: Any, label: str, config: TrainConfig, samples: int
) -> Iterator[Callable[[int, int, float], None]]:
    """A rich progress bar (stderr) over all batches of the run: the epoch, the mean
    training loss of the epoch so far, samples/s."""
    from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

    per_epoch = -(-samples // config.batch_size)  # batches per epoch
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.fields[info]}"),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=console, disable=console.quiet) as progress:
        task = progress.add_task(label, total=per_epoch * config.epochs, info="")
        seen = {"epoch": -1, "batch": 0, "rows": 0, "loss": 0.0, "start": time.perf_counter()}

        def on_batch(epoch: int, rows: int, loss: float) -> None:
            if epoch != seen["epoch"]:
                seen.update(epoch=epoch, batch=0, epoch_rows=0, loss=0.0)
            seen["batch"] += 1
            seen["rows"] += rows
            seen["epoch_rows"] += rows
            seen["loss"] += loss * rows
            rate = seen["rows"] / max(time.perf_counter() - seen["start"], 1e-9)
            mean = seen["loss"] / seen["epoch_rows"]
            info = (
                f"epoch {epoch + 1}/{config.epochs}  loss {mean:.4f} (epoch mean)  "
                f"{rate:,.0f} samples/s"
            )
            progress.update(task, completed=epoch * per_epoch + seen["batch"], info=info)

        yield on_batch


def _plots(
    plots: Any, runs: dict[str, list[Result]], data: Dataset, out: Path, compare: bool
) -> list[Path]:
    """The figures of the first seed of each run; legends quote the table's scores."""
    from ..trace import trace
    from .report import score_text

    first = [(name, results[0]) for name, results in runs.items()]
    seeds = len(next(iter(runs.values())))
    seed = first[0][1].config.seed
    note = f"lines: seed {seed}, the first of {seeds}" if seeds > 1 else ""
    scores_note = f"{note}; legend: mean ± std over the seeds" if seeds > 1 else ""
    legend = {name: score_text(results, data) for name, results in runs.items()}
    prefix = "compare_" if compare else ""
    figures = [plots.curves(first, data, out / f"{prefix}curves.png", note=note)]
    if data.kind == "forecast":
        figures.append(
            plots.predictions(
                first, data, out / f"{prefix}predictions.png", legend=legend, note=scores_note
            )
        )
    for name, result in first:
        directory = out / name if compare else out
        if data.kind == "classify":
            figures.append(plots.confusion(result, data, directory / "confusion.png"))
        sample = data.x_test[0]
        figures.append(
            plots.gates(
                trace(result.model.lstm, sample),
                directory / "gates.png",
                f"{data.name}, {name}: one held-out sample",
            )
        )
    return figures
