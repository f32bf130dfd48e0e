"""The training loop of ``lstmkit train``: Adam, mini-batches, one checkpoint per epoch.

Deterministic given the configuration: the model is initialised from ``seed``, each
epoch's batch order comes from its own generator (``seed``, epoch), and the global RNG
(dropout, the options' masks) is saved in every checkpoint, so a resumed run gives the same
numbers as an uninterrupted one.

Loss: mean squared error of the normalised change (forecasting) or cross-entropy
(classification). Gradients are clipped to norm 1.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from . import checkpoint
from .data import Dataset
from .model import SequenceModel


@dataclass
class TrainConfig:
    """Everything that defines a run (``epochs`` may grow on ``--resume``)."""

    task: str = "co2"
    epochs: int = 40
    batch_size: int = 32
    lr: float = 5e-3
    hidden_size: int = 32
    num_layers: int = 1
    window: int = 24
    seed: int = 0
    lstm: dict[str, Any] = field(default_factory=dict)  # lstmkit.LSTM options

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Result:
    """A finished run: per-epoch history, held-out predictions, the final score."""

    config: TrainConfig
    history: list[dict[str, float]]
    predicted: Tensor  # held-out predictions (normalised changes, or classes)
    score: float
    baseline: float
    model: SequenceModel


def build_model(config: TrainConfig, data: Dataset) -> SequenceModel:
    torch.manual_seed(config.seed)
    return SequenceModel(
        data.input_size, config.hidden_size, data.outputs, num_layers=config.num_layers,
        **config.lstm,
    )  # fmt: skip


def loss_of(data: Dataset, out: Tensor, y: Tensor) -> Tensor:
    if data.kind == "forecast":
        return F.mse_loss(out[:, 0], y)
    return F.cross_entropy(out, y)


@torch.no_grad()
def predict(model: SequenceModel, data: Dataset) -> Tensor:
    """Held-out predictions in eval mode: normalised changes, or classes."""
    model.eval()
    out = model(data.x_test)
    return out[:, 0] if data.kind == "forecast" else out.argmax(dim=1)


def fit(
    config: TrainConfig,
    data: Dataset,
    out_dir: Path,
    resume: bool = False,
    on_batch: Callable[[int, int, float], None] | None = None,
) -> Result:
    """Train ``config`` on ``data``, checkpointing into ``out_dir`` after every epoch;
    with ``resume``, continue from the checkpoint there. ``on_batch(epoch, samples,
    loss)`` is called after each optimizer step (for a progress display)."""
    model = build_model(config, data)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr)
    epoch, step, history = 0, 0, []
    if resume:
        state = checkpoint.load(out_dir, config.to_dict(), model, optimizer)
        epoch, step, history = state.epoch, state.step, state.history
    n = len(data.y_train)
    while epoch < config.epochs:
        start = time.perf_counter()
        order = torch.randperm(
            n, generator=torch.Generator().manual_seed(config.seed * 7919 + epoch)
        )
        model.train()
        total = 0.0
        for begin in range(0, n, config.batch_size):
            rows = order[begin : begin + config.batch_size]
            loss = loss_of(data, model(data.x_train[rows]), data.y_train[rows])
            optimizer.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            step += 1
            total += loss.item() * len(rows)
            if on_batch is not None:
                on_batch(epoch, len(rows), loss.item())
        seconds = time.perf_counter() - start
        score = data.score(predict(model, data))
        epoch += 1
        history.append({"epoch": epoch, "loss": total / n, "score": score, "seconds": seconds})
        checkpoint.save(out_dir, config.to_dict(), model, optimizer, epoch, step, history)
    predicted = predict(model, data)
    return Result(config, history, predicted, data.score(predicted), data.baseline(), model)
