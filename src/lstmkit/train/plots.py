"""PNG figures (matplotlib, drawn off-screen) that stand alone: training curves, held-out
forecasts on a date axis or a confusion matrix, a comparison of variants, and the gates of
an LSTM at work. Every axis is labelled with its quantity, every legend entry with the
metric it quotes."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from ..trace import Trace
from .data import Dataset
from .loop import Result


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")  # files only, no display needed
    import matplotlib.pyplot as plt

    return plt


def _save(fig: Any, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    _pyplot().close(fig)
    return path


def _metric_label(data: Dataset) -> str:
    return f"held-out {data.metric}" + (f" ({data.unit})" if data.unit else "")


def curves(
    results: Sequence[tuple[str, Result]], data: Dataset, path: Path, note: str = ""
) -> Path:
    """Training loss (each epoch's mean over its batches) and held-out metric per epoch,
    one line per run, the naive baseline dashed. ``note`` goes under the title (e.g.
    which seed the lines show)."""
    plt = _pyplot()
    fig, (ax_loss, ax_score) = plt.subplots(1, 2, figsize=(10, 4), layout="constrained")
    for name, result in results:
        epochs = [h["epoch"] for h in result.history]
        ax_loss.plot(epochs, [h["loss"] for h in result.history], label=name)
        ax_score.plot(epochs, [h["score"] for h in result.history], label=name)
    ax_score.axhline(results[0][1].baseline, color="grey", linestyle="--", label="naive baseline")
    ax_loss.set(
        xlabel="epoch",
        ylabel=f"training loss: {data.loss_name}\n(mean over the epoch)",
        title=f"{data.name}: training loss",
    )
    ax_loss.set_yscale("log")
    ax_score.set(
        xlabel="epoch",
        ylabel=_metric_label(data),
        title=f"{data.name}: {_metric_label(data)} after each epoch",
    )
    from matplotlib.ticker import MaxNLocator

    for ax in (ax_loss, ax_score):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.legend(fontsize=8)
        ax.grid(alpha=0.3)
    if note:
        fig.suptitle(note, fontsize=9)
    return _save(fig, path)


def predictions(
    results: Sequence[tuple[str, Result]],
    data: Dataset,
    path: Path,
    legend: Mapping[str, str] | None = None,
    note: str = "",
) -> Path:
    """Forecasting: held-out truth, each run's one-step forecasts and the naive one, over
    the series' own dates. ``legend[name]`` is the text after each run's name (default:
    its score with the metric's name); ``note`` goes under the title."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(10, 4.2), layout="constrained")
    when = data.times_test if data.times_test is not None else list(range(len(data.y_test)))
    ax.plot(when, data.values(data.y_test).numpy(), color="black", linewidth=2, label="truth")
    naive = f"naive: repeat the last value ({data.metric} {data.baseline():.3g}{_unit(data)})"
    ax.plot(when, data.last_test.numpy(), color="grey", linestyle="--", label=naive)
    for name, result in results:
        score = f"{data.metric} {result.score:.3g}{_unit(data)}"
        label = f"{name} ({(legend or {}).get(name, score)})"
        ax.plot(when, data.values(result.predicted).numpy(), label=label)
    ax.set(
        xlabel=data.time_label if data.times_test is not None else "held-out step",
        ylabel=data.value_label or "value",
        title=f"{data.name}: one-step forecasts on the held-out last 20%",
    )
    if note:
        fig.suptitle(note, fontsize=9)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    return _save(fig, path)


def _unit(data: Dataset) -> str:
    return f" {data.unit}" if data.unit else ""


def confusion(result: Result, data: Dataset, path: Path) -> Path:
    """Classification: the held-out confusion matrix (rows: truth, columns: predicted),
    each count written in a colour that reads on its cell."""
    plt = _pyplot()
    k = data.classes
    matrix = torch.zeros(k, k, dtype=torch.int64)
    matrix.index_put_(
        (data.y_test, result.predicted), torch.ones_like(data.y_test), accumulate=True
    )
    counts = matrix.numpy()
    fig, ax = plt.subplots(figsize=(5.6, 4.8), layout="constrained")
    image = ax.imshow(counts, cmap="Blues")
    dark = counts.max() / 2
    for r in range(k):
        for c in range(k):
            if counts[r, c]:
                ax.text(
                    c,
                    r,
                    str(counts[r, c]),
                    ha="center",
                    va="center",
                    fontsize=8,
                    color="white" if counts[r, c] > dark else "black",
                )
    ax.set(
        xlabel="predicted class",
        ylabel="true class",
        xticks=range(k),
        yticks=range(k),
        title=f"{data.name}: held-out accuracy {result.score:.3f} ({len(data.y_test)} images)",
    )
    fig.colorbar(image, ax=ax, label="images")
    return _save(fig, path)


#: what each row of the gates figure shows
_QUANTITIES = (
    ("i", "input gate i"),
    ("f", "forget gate f"),
    ("g", "candidate g"),
    ("o", "output gate o"),
    ("c", "cell state c"),
    ("h", "output h"),
)


def gates(trace: Trace, path: Path, title: str = "") -> Path:
    """One sample's gates i, f, g, o, cell state c and output h over time: one row per
    quantity, one column per layer (and direction); heat maps with time across and units
    down, gates on [0, 1], c and h on a scale symmetric about 0."""
    plt = _pyplot()
    columns = len(trace.layers)
    fig, axes = plt.subplots(
        len(_QUANTITIES),
        columns,
        squeeze=False,
        sharex=True,
        figsize=(1.5 + 5.0 * columns, 11),
        layout="constrained",
    )
    for col, layer in enumerate(trace.layers):
        for row, (key, label) in enumerate(_QUANTITIES):
            values = getattr(layer, key).T.numpy()  # (units, T)
            bounded = key in ("i", "f", "o")
            limit = 1.0 if bounded else max(float(abs(values).max()), 1e-6)
            ax = axes[row][col]
            image = ax.imshow(
                values,
                aspect="auto",
                interpolation="nearest",
                cmap="viridis" if bounded else "coolwarm",
                vmin=0 if bounded else -limit,
                vmax=limit,
            )
            ax.set_ylabel(f"{label}\nunit" if col == 0 else "unit", fontsize=9)
            if row == 0:
                ax.set_title(layer.name, fontsize=10)
            fig.colorbar(image, ax=ax, pad=0.01)
        axes[-1][col].set_xlabel("time step t")
    if title:
        fig.suptitle(title)
    return _save(fig, path)
