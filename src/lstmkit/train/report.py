"""What ``lstmkit train`` reports: ``metrics.json`` per run, ``summary.json`` over seeds,
the table on stdout, and the score texts the figures' legends quote (the table's own).

Every loss is labelled: the training loss of a run is the mean over the batches of its
last epoch (what the table and the curves show), not the last batch's.
"""

from __future__ import annotations

import json
import statistics
import sys
from pathlib import Path
from typing import Any

from .data import Dataset
from .loop import Result


def write_metrics(directory: Path, name: str, result: Result, data: Dataset) -> None:
    """``metrics.json``: one run's final numbers and configuration."""
    last = result.history[-1] if result.history else {}
    seconds = [h["seconds"] for h in result.history]
    summary = {
        "variant": name,
        "task": data.name,
        "metric": data.metric,
        "unit": data.unit,
        "score": result.score,
        "baseline": result.baseline,
        "final_loss": last.get("loss"),
        "loss": f"{data.loss_name}, mean over the last epoch's batches",
        "seconds_per_epoch": sum(seconds) / len(seconds) if seconds else None,
        "epochs": len(result.history),
        "config": result.config.to_dict(),
    }
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "metrics.json").write_text(json.dumps(summary, indent=2))


def summarise(results: list[Result], data: Dataset) -> dict[str, Any]:
    """Mean and sample standard deviation over seeds of a run's final numbers."""
    scores = [r.score for r in results]
    losses = [r.history[-1]["loss"] if r.history else float("nan") for r in results]
    seconds = [h["seconds"] for r in results for h in r.history] or [float("nan")]
    return {
        "score_mean": statistics.fmean(scores),
        "score_std": statistics.stdev(scores) if len(scores) > 1 else 0.0,
        "scores": scores,
        "final_loss_mean": statistics.fmean(losses),
        "baseline": results[0].baseline,
        "beats_baseline": all(data.better(s, results[0].baseline) for s in scores),
        "seconds_per_epoch": statistics.fmean(seconds),
        "seeds": [r.config.seed for r in results],
    }


def write_summary(out: Path, runs: dict[str, list[Result]], data: Dataset) -> None:
    """``summary.json`` in ``--out``: every run's :func:`summarise`."""
    summary = {name: summarise(results, data) for name, results in runs.items()}
    out.mkdir(parents=True, exist_ok=True)
    (out / "summary.json").write_text(
        json.dumps({"task": data.name, "metric": data.metric, "runs": summary}, indent=2)
    )


def score_text(results: list[Result], data: Dataset) -> str:
    """The table's score of a run, with the metric's name: ``MAE 0.271 ppm``, or over
    seeds ``MAE 0.261 ± 0.014 ppm, 3 seeds``."""
    s = summarise(results, data)
    unit = f" {data.unit}" if data.unit else ""
    if len(results) == 1:
        return f"{data.metric} {s['score_mean']:.3g}{unit}"
    spread = f"{s['score_mean']:.3g} ± {s['score_std']:.2g}"
    return f"{data.metric} {spread}{unit}, {len(results)} seeds"


def table(console: Any, runs: dict[str, list[Result]], data: Dataset) -> None:
    """The results table on stdout (the progress display is on stderr)."""
    from rich.table import Table

    seeds = len(next(iter(runs.values())))
    unit = f" ({data.unit})" if data.unit else ""
    over = f", mean ± std over {seeds} seeds" if seeds > 1 else ""
    title = f"lstmkit train --task {data.name}: held-out {data.metric}{unit}{over}"
    grid = Table(
        title=title, caption=f"train loss: {data.loss_name}, mean over the last epoch's batches"
    )
    for column in (
        "variant",
        "train loss",
        f"held-out {data.metric}",
        "naive baseline",
        "beats naive",
        "s / epoch",
    ):
        grid.add_column(column, justify="left" if column == "variant" else "right")
    for name, results in runs.items():
        s = summarise(results, data)
        score = f"{s['score_mean']:.4f}" + (f" ± {s['score_std']:.4f}" if seeds > 1 else "")
        beats = "yes" if s["beats_baseline"] else "no"
        grid.add_row(
            name,
            f"{s['final_loss_mean']:.4f}",
            score,
            f"{s['baseline']:.4f}",
            beats,
            f"{s['seconds_per_epoch']:.2f}",
        )
    type(console)(file=sys.stdout, width=max(console.width, 100)).print(grid)
