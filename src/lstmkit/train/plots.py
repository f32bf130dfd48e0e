"""PNG figures (matplotlib, drawn off-screen): training curves, held-out predictions or a
confusion matrix, a comparison of variants, and the gates of an LSTM at work."""

from __future__ import annotations

from collections.abc import Sequence
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
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    _pyplot().close(fig)
    return path


def _metric_label(data: Dataset) -> str:
    return f"held-out {data.metric}" + (f" ({data.unit})" if data.unit else "")


def curves(results: Sequence[tuple[str, Result]], data: Dataset, path: Path) -> Path:
    """Training loss and held-out metric per epoch, one line per run, baseline dashed."""
    plt = _pyplot()
    fig, (ax_loss, ax_score) = plt.subplots(1, 2, figsize=(10, 3.8))
    for name, result in results:
        epochs = [h["epoch"] for h in result.history]
        ax_loss.plot(epochs, [h["loss"] for h in result.history], label=name)
        ax_score.plot(epochs, [h["score"] for h in result.history], label=name)
    ax_score.axhline(results[0][1].baseline, color="grey", linestyle="--", label="naive baseline")
    ax_loss.set(xlabel="epoch", ylabel="training loss", title=f"{data.name}: training loss")
    ax_loss.set_yscale("log")
    ax_score.set(xlabel="epoch", ylabel=_metric_label(data), title=f"{data.name}: held-out")
    for ax in (ax_loss, ax_score):
        ax.legend(fontsize=8)
        ax.grid(alpha=0.3)
    return _save(fig, path)


def predictions(results: Sequence[tuple[str, Result]], data: Dataset, path: Path) -> Path:
    """Forecasting: held-out truth, each run's one-step forecasts and the naive one."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(10, 4))
    truth = data.values(data.y_test)
    steps = range(len(truth))
    ax.plot(steps, truth, color="black", linewidth=2, label="truth")
    ax.plot(steps, data.last_test, color="grey", linestyle="--", label="naive (repeat last)")
    for name, result in results:
        ax.plot(steps, data.values(result.predicted), label=f"{name} ({result.score:.3g})")
    ax.set(xlabel="held-out step", ylabel=data.unit or "value",
           title=f"{data.name}: one-step forecasts on the held-out 20%")  # fmt: skip
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    return _save(fig, path)


def confusion(result: Result, data: Dataset, path: Path) -> Path:
    """Classification: the held-out confusion matrix (rows: truth, columns: predicted)."""
    plt = _pyplot()
    k = data.classes
    matrix = torch.zeros(k, k, dtype=torch.int64)
    matrix.index_put_(
        (data.y_test, result.predicted), torch.ones_like(data.y_test), accumulate=True
    )
    fig, ax = plt.subplots(figsize=(5.2, 4.6))
    image = ax.imshow(matrix, cmap="Blues")
    for (r, c), value in zip(torch.cartesian_prod(torch.arange(k), torch.arange(k)).tolist(),
                             matrix.flatten().tolist()):  # fmt: skip
        if value:
            ax.text(c, r, str(value), ha="center", va="center", fontsize=7)
    ax.set(xlabel="predicted", ylabel="true", xticks=range(k), yticks=range(k),
           title=f"{data.name}: accuracy {result.score:.3f}")  # fmt: skip
    fig.colorbar(image, ax=ax)
    return _save(fig, path)


def gates(trace: Trace, path: Path, title: str = "") -> Path:
    """One sample's gates i, f, g, o, cell state c and output h over time, one row of
    panels per layer (heat maps: time across, units down; gates on [0, 1], the others
    on a scale symmetric about 0)."""
    plt = _pyplot()
    names = ("i", "f", "g", "o", "c", "h")
    layers = len(trace.layers)
    fig, axes = plt.subplots(layers, len(names), figsize=(2.6 * len(names), 2.4 * layers),
                             squeeze=False)  # fmt: skip
    for row, layer in enumerate(trace.layers):
        for col, name in enumerate(names):
            values = getattr(layer, name).T  # (units, T)
            bounded = name in ("i", "f", "o")
            ax = axes[row][col]
            limit = 1.0 if bounded else max(float(values.abs().max()), 1e-6)
            image = ax.imshow(values, aspect="auto", cmap="viridis" if bounded else "coolwarm",
                              vmin=0 if bounded else -limit, vmax=limit)  # fmt: skip
            ax.set(title=f"layer {row} {name}", xlabel="t", ylabel="unit")
            fig.colorbar(image, ax=ax)
    if title:
        fig.suptitle(title)
    return _save(fig, path)
