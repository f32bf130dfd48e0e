"""The tasks of ``lstmkit train``: real datasets that ship inside PyPI packages.

Forecasting (``co2``, ``sunspots``): from a window of the last ``W`` changes of the
series, predict the next change; the forecast is ``y_{t+1} = y_t + predicted change``,
scored by mean absolute error (MAE) on the last 20% of the series (held out, in time
order). The naive baseline repeats the last value (predicts no change).

* ``co2``: the Mauna Loa weekly CO2 record (statsmodels), averaged per month
  (gaps filled forward): 526 months, 1958-2001, in ppm.
* ``sunspots``: yearly sunspot numbers 1700-2008 (statsmodels): 309 years.

Classification (``digits``): scikit-learn's 1,797 handwritten digits, 8x8 pixels, read
as a sequence of 8 rows of 8 pixels (scaled to [0, 1]); 20% held out at random.
Scored by accuracy; the naive baseline predicts the training set's majority class.

Shapes: ``N`` samples, ``T`` steps, ``I`` features per step.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

TASKS = ("co2", "sunspots", "digits")


@dataclass
class Dataset:
    """One task's tensors and how it is scored.

    ``x_*`` are ``(N, T, I)`` float32; ``y_*`` are ``(N,)``: float32 normalised changes
    (forecasting) or int64 classes (classification). For forecasting, ``last_*`` holds
    each window's last value of the series and ``scale``/``shift`` undo the
    normalisation, so that ``value = last + (y * scale + shift)``.
    """

    name: str
    kind: str  # "forecast" or "classify"
    x_train: Tensor
    y_train: Tensor
    x_test: Tensor
    y_test: Tensor
    outputs: int  # 1 for forecasting, the number of classes for classification
    metric: str  # "MAE" (lower is better) or "accuracy" (higher is better)
    unit: str = ""
    last_test: Tensor | None = None
    scale: float = 1.0
    shift: float = 0.0
    classes: int = 0
    times_test: list[Any] | None = None  # forecasting: the date of each held-out target
    time_label: str = ""  # what ``times_test`` counts, e.g. "month"
    value_label: str = ""  # the series' quantity, e.g. "CO2 (ppm)"

    @property
    def loss_name(self) -> str:
        """The training loss, named: what the loop minimises."""
        if self.kind == "forecast":
            return "MSE of the normalised change"
        return "cross-entropy"

    @property
    def input_size(self) -> int:
        return self.x_train.shape[2]

    def baseline(self) -> float:
        """The naive baseline's held-out score: repeat the last value, or the majority
        class of the training set."""
        if self.kind == "forecast":
            return self.score(torch.full_like(self.y_test, -self.shift / self.scale))
        majority = torch.bincount(self.y_train, minlength=self.classes).argmax()
        return self.score(torch.full_like(self.y_test, int(majority)))

    def values(self, y: Tensor) -> Tensor:
        """Forecasts of the series' values from normalised changes ``y`` (held-out set)."""
        return self.last_test + y * self.scale + self.shift

    def score(self, predicted: Tensor) -> float:
        """The held-out metric of ``predicted`` (normalised changes, or classes)."""
        if self.kind == "forecast":
            truth = self.values(self.y_test)
            return float((self.values(predicted) - truth).abs().mean())
        return float((predicted == self.y_test).double().mean())

    def better(self, a: float, b: float) -> bool:
        """Whether score ``a`` beats score ``b``."""
        return a < b if self.kind == "forecast" else a > b


def load(task: str, window: int = 24, seed: int = 0) -> Dataset:
    """The dataset of ``task`` (one of :data:`TASKS`); ``window`` is the forecasting
    window ``T``; ``seed`` fixes the classification split."""
    if task == "co2":
        return _forecast("co2", *_co2(), window, "ppm", "month", "CO2 (ppm)")
    if task == "sunspots":
        return _forecast("sunspots", *_sunspots(), window, "", "year", "sunspot number")
    if task == "digits":
        return _digits(seed)
    raise ValueError(f"task must be one of {list(TASKS)}, got {task!r}")


def _co2() -> tuple[Tensor, list[Any]]:
    """Monthly means and each month's first day."""
    from statsmodels.datasets import co2

    weekly = co2.load_pandas().data["co2"]
    monthly = weekly.resample("MS").mean().ffill()
    dates = [t.date() for t in monthly.index]
    return torch.tensor(monthly.to_numpy(), dtype=torch.float64), dates


def _sunspots() -> tuple[Tensor, list[Any]]:
    """Yearly sunspot numbers and their years."""
    from statsmodels.datasets import sunspots

    table = sunspots.load_pandas().data
    years = [int(y) for y in table["YEAR"]]
    return torch.tensor(table["SUNACTIVITY"].to_numpy(), dtype=torch.float64), years


def _forecast(
    name: str, series: Tensor, times: list[Any], window: int, unit: str, time_label: str,
    value_label: str,
) -> Dataset:  # fmt: skip
    """Windows of ``window`` changes -> the next change; the last 20% of targets held out.
    ``times[k]`` is when ``series[k]`` was measured."""
    if not 2 <= window < len(series) // 3:
        raise ValueError(
            f"window must be between 2 and {len(series) // 3 - 1} for {name}, got {window}"
        )
    change = series[1:] - series[:-1]  # change[k] = y[k+1] - y[k]
    n = len(change) - window  # targets change[window:], from windows change[k : k+window]
    split = int(n * 0.8)
    train_change = change[: split + window]
    shift, scale = float(train_change.mean()), float(train_change.std())
    z = ((change - shift) / scale).float()
    x = z.unfold(0, window, 1)[:n].unsqueeze(-1)  # (n, window, 1)
    y = z[window:]  # (n,)
    last = series[window : window + n]  # y_t, the value the target change starts from
    return Dataset(
        name=name, kind="forecast", x_train=x[:split], y_train=y[:split], x_test=x[split:],
        y_test=y[split:], outputs=1, metric="MAE", unit=unit, last_test=last[split:].float(),
        scale=scale, shift=shift, times_test=times[window + 1 + split : window + 1 + n],
        time_label=time_label, value_label=value_label,
    )  # fmt: skip


def _digits(seed: int) -> Dataset:
    from sklearn.datasets import load_digits

    digits = load_digits()
    x = torch.tensor(digits.images, dtype=torch.float32) / 16.0  # (1797, 8, 8): rows as steps
    y = torch.tensor(digits.target, dtype=torch.int64)
    order = torch.randperm(len(y), generator=torch.Generator().manual_seed(seed))
    split = int(len(y) * 0.8)
    train, test = order[:split], order[split:]
    return Dataset(
        name="digits", kind="classify", x_train=x[train], y_train=y[train], x_test=x[test],
        y_test=y[test], outputs=10, metric="accuracy", classes=10,
    )  # fmt: skip
