"""``lstmkit train``: arguments, one run or a ``--compare`` of variants, the report.

Writes into ``--out`` (default ``runs/<task>``): ``checkpoint.safetensors`` +
``checkpoint.json`` (every epoch), ``metrics.json``, ``curves.png``,
``predictions.png`` (forecasting) or ``confusion.png`` (classification), and
``gates.png`` (one held-out sample through the trained LSTM), and ``summary.json``. With
``--compare a,b,c`` each variant trains in ``<out>/<variant>`` from the same seed and
data, and ``<out>/compare_*.png`` put all of them on one figure. With ``--seeds N`` each
run repeats with seeds ``--seed .. --seed+N-1`` (in ``.../seed<k>``, the data split fixed
by ``--seed``); the table and ``summary.json`` give the mean and standard deviation, the
figures show the first seed.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

from .._options import OPTION_DEFAULTS
from . import missing_dependencies

#: ``--compare`` names: lstmkit.LSTM options over the command line's own.
VARIANTS: dict[str, dict[str, Any]] = {
    "vanilla": {},
    "layer_norm": {"layer_norm": True},
    "zoneout": {"zoneout": 0.1},
    "recurrent_dropout": {"recurrent_dropout": 0.25},
    "peephole": {"peephole": True},
    "bidirectional": {"bidirectional": True},
    "softsign": {"activation": "softsign"},
    "hardsigmoid": {"recurrent_activation": "hardsigmoid"},
}

#: Defaults per task that finish well within two minutes on two CPU cores.
DEFAULTS: dict[str, dict[str, Any]] = {
    "co2": {"epochs": 40, "batch_size": 32, "lr": 5e-3, "hidden_size": 32, "window": 24},
    "sunspots": {"epochs": 60, "batch_size": 16, "lr": 5e-3, "hidden_size": 32, "window": 20},
    "digits": {"epochs": 15, "batch_size": 64, "lr": 5e-3, "hidden_size": 64, "window": 8},
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--task", default="co2", choices=sorted(DEFAULTS),
                        help="co2 / sunspots (forecasting), digits (classification)")  # fmt: skip
    parser.add_argument("--epochs", type=int, help="epochs in total (task default)")
    parser.add_argument("--batch-size", type=int, help="mini-batch size (task default)")
    parser.add_argument("--lr", type=float, help="Adam learning rate (task default)")
    parser.add_argument("--hidden-size", type=int, help="LSTM hidden units (task default)")
    parser.add_argument("--num-layers", type=int, default=1, help="LSTM layers (default 1)")
    parser.add_argument("--window", type=int, help="forecasting window in steps (task default)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument("--out", type=Path, help="output directory (default runs/<task>)")
    parser.add_argument("--resume", action="store_true",
                        help="continue from the checkpoint in --out up to --epochs")  # fmt: skip
    parser.add_argument("--compare", help="train these variants and compare them, e.g. "
                        f"vanilla,layer_norm,zoneout (of {', '.join(VARIANTS)})")  # fmt: skip
    parser.add_argument("--seeds", type=int, default=1,
                        help="train each run with this many seeds (--seed, --seed+1, ...) on "
                        "the same data and report mean and spread (default 1)")  # fmt: skip
    parser.add_argument("--quiet", action="store_true", help="no progress display")
    parser.add_argument("--no-plots", action="store_true", help="skip the PNG figures")
    options = parser.add_argument_group("lstmkit.LSTM options")
    options.add_argument("--bidirectional", action="store_true")
    options.add_argument("--dropout", type=float, default=0.0, help="between layers")
    options.add_argument("--proj-size", type=int, default=0)
    options.add_argument("--layer-norm", action="store_true")
    options.add_argument("--peephole", action="store_true")
    options.add_argument("--gate-clip", type=float)
    options.add_argument("--cell-clip", type=float)
    options.add_argument("--recurrent-dropout", type=float, default=0.0)
    options.add_argument("--zoneout", type=float, default=0.0)
    options.add_argument("--activation", default="tanh", help="tanh, relu or softsign")
    options.add_argument("--recurrent-activation", default="sigmoid",
                         help="sigmoid or hardsigmoid")  # fmt: skip
    options.add_argument("--forget-bias", type=float, default=0.0)
    options.add_argument("--backend", default="auto", help="auto, reference, fused, compiled")


def lstm_options(args: argparse.Namespace) -> dict[str, Any]:
    """The lstmkit.LSTM keyword arguments the command line set away from their defaults."""
    chosen = {
        "bidirectional": args.bidirectional, "dropout": args.dropout,
        "proj_size": args.proj_size, "layer_norm": args.layer_norm, "peephole": args.peephole,
        "gate_clip": args.gate_clip, "cell_clip": args.cell_clip,
        "recurrent_dropout": args.recurrent_dropout, "zoneout": args.zoneout,
        "activation": args.activation, "recurrent_activation": args.recurrent_activation,
        "forget_bias": args.forget_bias, "backend": args.backend,
    }  # fmt: skip
    defaults = {**OPTION_DEFAULTS, "bidirectional": False, "dropout": 0.0, "proj_size": 0,
                "backend": "auto"}  # fmt: skip
    return {k: v for k, v in chosen.items() if v != defaults[k]}


def config_of(args: argparse.Namespace, extra: dict[str, Any]) -> Any:
    from .loop import TrainConfig

    task = DEFAULTS[args.task]
    pick = {k: getattr(args, k) if getattr(args, k) is not None else task[k] for k in task}
    for name in ("epochs", "batch_size", "hidden_size", "window"):
        if pick[name] < 1:
            raise ValueError(f"--{name.replace('_', '-')} must be at least 1, got {pick[name]}")
    if not pick["lr"] > 0:
        raise ValueError(f"--lr must be positive, got {pick['lr']}")
    if args.task == "digits" and args.window is not None:
        raise ValueError("--window is for the forecasting tasks; digits reads its 8 rows")
    return TrainConfig(task=args.task, num_layers=args.num_layers, seed=args.seed,
                       lstm={**lstm_options(args), **extra}, **pick)  # fmt: skip


def run(args: argparse.Namespace) -> int:
    missing = missing_dependencies()
    if missing:
        print(
            f"lstmkit train needs packages that are not installed: {', '.join(missing)}.\n"
            "Install them with:  pip install 'lstmkit[train]'",
            file=sys.stderr,
        )
        return 2
    from .checkpoint import CheckpointError

    try:
        return _run(args)
    except (CheckpointError, ValueError, TypeError) as err:
        print(f"lstmkit train: error: {err}", file=sys.stderr)
        return 2


def _run(args: argparse.Namespace) -> int:
    from rich.console import Console

    from . import data as datasets
    from . import plots
    from .loop import fit

    console = Console(stderr=True, quiet=args.quiet)
    names = args.compare.split(",") if args.compare else [None]
    unknown = [n for n in names if n is not None and n not in VARIANTS]
    if unknown:
        raise ValueError(f"--compare: unknown variant(s) {unknown}; choose from {list(VARIANTS)}")
    if args.seeds < 1:
        raise ValueError(f"--seeds must be at least 1, got {args.seeds}")
    out = args.out or Path("runs") / args.task
    configs = [(name or "lstm", config_of(args, VARIANTS.get(name, {}))) for name in names]
    data = datasets.load(args.task, configs[0][1].window, args.seed)  # one split for all
    runs: dict[str, list] = {}
    for name, config in configs:
        for seed in range(args.seed, args.seed + args.seeds):
            directory = out / name if args.compare else out
            directory = directory / f"seed{seed}" if args.seeds > 1 else directory
            label = f"{args.task} {name}" + (f" seed {seed}" if args.seeds > 1 else "")
            seeded = replace(config, seed=seed)
            with _progress(console, label, seeded, len(data.y_train)) as on_batch:
                result = fit(seeded, data, directory, resume=args.resume, on_batch=on_batch)
            runs.setdefault(name, []).append(result)
            _write_metrics(directory, name, result, data)
    _report(console, runs, data)
    _write_summary(out, runs, data)
    if not args.no_plots:  # the first seed of each run
        first = [(name, results[0]) for name, results in runs.items()]
        figures = _plots(plots, first, data, out, compare=bool(args.compare))
        console.print("figures: " + ", ".join(str(p) for p in figures))
    return 0


@contextmanager
def _progress(console: Any, label: str, config: Any, samples: int) -> Iterator[Any]:
    """A rich progress bar over all batches of the run, with the loss and samples/s."""
    from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

    per_epoch = -(-samples // config.batch_size)  # batches per epoch
    columns = (TextColumn("{task.description}"), BarColumn(), TextColumn("{task.fields[info]}"),
               TimeRemainingColumn())  # fmt: skip
    with Progress(*columns, console=console, disable=console.quiet) as progress:
        task = progress.add_task(label, total=per_epoch * config.epochs, info="")
        seen = {"epoch": -1, "batch": 0, "rows": 0, "start": time.perf_counter()}

        def on_batch(epoch: int, rows: int, loss: float) -> None:
            if epoch != seen["epoch"]:
                seen.update(epoch=epoch, batch=0)
            seen["batch"] += 1
            seen["rows"] += rows
            rate = seen["rows"] / max(time.perf_counter() - seen["start"], 1e-9)
            info = f"epoch {epoch + 1}/{config.epochs}  loss {loss:.4f}  {rate:,.0f} samples/s"
            progress.update(task, completed=epoch * per_epoch + seen["batch"], info=info)

        yield on_batch


def _write_metrics(directory: Path, name: str, result: Any, data: Any) -> None:
    last = result.history[-1] if result.history else {}
    seconds = [h["seconds"] for h in result.history]
    summary = {
        "variant": name, "task": data.name, "metric": data.metric, "unit": data.unit,
        "score": result.score, "baseline": result.baseline, "final_loss": last.get("loss"),
        "seconds_per_epoch": sum(seconds) / len(seconds) if seconds else None,
        "epochs": len(result.history), "config": result.config.to_dict(),
    }  # fmt: skip
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "metrics.json").write_text(json.dumps(summary, indent=2))


def _summary(results: list, data: Any) -> dict[str, Any]:
    """Mean and sample standard deviation over seeds of a run's final numbers."""
    scores = [r.score for r in results]
    losses = [r.history[-1]["loss"] if r.history else float("nan") for r in results]
    seconds = [h["seconds"] for r in results for h in r.history] or [float("nan")]
    return {
        "score_mean": statistics.fmean(scores),
        "score_std": statistics.stdev(scores) if len(scores) > 1 else 0.0,
        "scores": scores, "final_loss_mean": statistics.fmean(losses),
        "baseline": results[0].baseline,
        "beats_baseline": all(data.better(s, results[0].baseline) for s in scores),
        "seconds_per_epoch": statistics.fmean(seconds), "seeds": [r.config.seed for r in results],
    }  # fmt: skip


def _write_summary(out: Path, runs: dict[str, list], data: Any) -> None:
    summary = {name: _summary(results, data) for name, results in runs.items()}
    out.mkdir(parents=True, exist_ok=True)
    (out / "summary.json").write_text(json.dumps({"task": data.name, "metric": data.metric,
                                                  "runs": summary}, indent=2))  # fmt: skip


def _report(console: Any, runs: dict[str, list], data: Any) -> None:
    from rich.table import Table

    seeds = len(next(iter(runs.values())))
    unit = f" ({data.unit})" if data.unit else ""
    over = f", mean ± std over {seeds} seeds" if seeds > 1 else ""
    table = Table(title=f"lstmkit train --task {data.name}: held-out {data.metric}{unit}{over}")
    for column in ("variant", "final loss", f"held-out {data.metric}", "naive baseline",
                   "beats naive", "s / epoch"):  # fmt: skip
        table.add_column(column, justify="left" if column == "variant" else "right")
    for name, results in runs.items():
        s = _summary(results, data)
        score = f"{s['score_mean']:.4f}" + (f" ± {s['score_std']:.4f}" if seeds > 1 else "")
        beats = "yes" if s["beats_baseline"] else "no"
        table.add_row(name, f"{s['final_loss_mean']:.4f}", score, f"{s['baseline']:.4f}", beats,
                      f"{s['seconds_per_epoch']:.2f}")  # fmt: skip
    type(console)(file=sys.stdout, width=max(console.width, 100)).print(table)


def _plots(plots: Any, results: list, data: Any, out: Path, compare: bool) -> list[Path]:
    from ..trace import trace

    prefix = "compare_" if compare else ""
    figures = [plots.curves(results, data, out / f"{prefix}curves.png")]
    if data.kind == "forecast":
        figures.append(plots.predictions(results, data, out / f"{prefix}predictions.png"))
    for name, result in results:
        directory = out / name if compare else out
        if data.kind == "classify":
            figures.append(plots.confusion(result, data, directory / "confusion.png"))
        sample = data.x_test[0]
        figures.append(plots.gates(trace(result.model.lstm, sample), directory / "gates.png",
                                   f"{data.name}, {name}: one held-out sample"))  # fmt: skip
    return figures
